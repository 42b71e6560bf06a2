"""Hugging Face model directories on disk: read (``config.json`` + safetensors) and write atomically.

Only safetensors are read: a directory holding nothing but ``pytorch_model.bin`` (a pickle) is refused, since
unpickling a file can execute code. Writes go to a temporary sibling directory that is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def read_hf_dir(path: Path | str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config.json, tensors)`` of a local Hugging Face model directory (``model.safetensors`` or the shards
    named by ``model.safetensors.index.json``). FileNotFoundError/ValueError name the file and what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected a Hugging Face model directory with "
                                f"{CONFIG} and {WEIGHTS})")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG} (expected a Hugging Face model directory)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    if (path / WEIGHTS).is_file():
        return config, load_file(str(path / WEIGHTS))
    if (path / INDEX).is_file():
        index = json.loads((path / INDEX).read_text())
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise ValueError(f"{path / INDEX}: no 'weight_map' object")
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = path / shard
            if not shard_path.is_file():
                raise FileNotFoundError(f"{path / INDEX} names {shard}, which is missing")
            tensors.update(load_file(str(shard_path)))
        return config, tensors
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
    if pickles:
        raise ValueError(f"{path}: only pickled weights ({', '.join(pickles)}); megagrow never unpickles. Re-save "
                         "the model with save_pretrained(dir, safe_serialization=True) to get model.safetensors")
    raise FileNotFoundError(f"{path}: no {WEIGHTS} (nor {INDEX})")


def usual_mode(path: Path) -> None:
    """Give ``path`` the mode a plain ``open()`` would (0666 less the umask): safetensors creates its files 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_hf_dir(out: Path | str, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                 files: Mapping[str, bytes | str] | None = None, overwrite: bool = False) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``files`` (name -> content) into ``out`` atomically: into
    ``.<name>.tmp`` next to it, then renamed. An existing ``out`` is an error unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another directory (or --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / CONFIG).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS), metadata={"format": "pt"})
        usual_mode(tmp / WEIGHTS)  # safetensors writes 0600; the rest of the export is 0644 (umask)
        for name, content in (files or {}).items():
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = ["CONFIG", "INDEX", "WEIGHTS", "read_hf_dir", "write_hf_dir"]
