"""Universal checkpoints: a :class:`FullState` in safetensors plus JSON metadata.

Layout of ``<run>/checkpoints/``::

    step_00000100/
        params.safetensors     fp32 parameters, keyed by stable parameter name
        optimizer.safetensors  exp_avg.<name>, exp_avg_sq.<name>
        plan.safetensors       the growth plan's tensors, if it keeps any (e.g. a V-cycle snapshot)
        meta.json              step, counters, loader cursor, plan state, architecture, adam_step
    latest                     name of the newest complete checkpoint directory

Nothing is pickled: loading a checkpoint from an untrusted source cannot execute code. A checkpoint
is written to ``step_XXXXXXXX.tmp`` and renamed into place, then ``latest`` is replaced atomically,
so a crash never leaves ``latest`` pointing at partial data. Because the state is full and unsharded,
the same checkpoint resumes on any world size and ZeRO stage.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from megagrow.state import FullState

FORMAT = "megagrow-checkpoint"
VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(ckpt_root: Path, step: int, state: FullState, meta: dict[str, Any], keep_last: int,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint (call on one rank only) and prune to the newest ``keep_last``.
    ``extra_tensors`` (a growth plan's state, e.g. a snapshot to interpolate with) go to ``plan.safetensors``."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in state.params.items()}, str(tmp / "params.safetensors"))
    opt = {f"{m}.{k}": v.contiguous() for m in ("exp_avg", "exp_avg_sq") for k, v in getattr(state, m).items()}
    if opt:
        save_file(opt, str(tmp / "optimizer.safetensors"))
    if extra_tensors:
        save_file({k: v.contiguous() for k, v in extra_tensors.items()}, str(tmp / "plan.safetensors"))
    full_meta = {"format": FORMAT, "version": VERSION, "step": step, "adam_step": state.adam_step, **meta}
    (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    _prune(ckpt_root, keep_last)
    return final


def _prune(ckpt_root: Path, keep_last: int) -> None:
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / "latest"
    if not pointer.is_file():
        return None
    path = ckpt_root / pointer.read_text().strip()
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def load_checkpoint(path: Path) -> tuple[FullState, dict[str, Any]]:
    """Read a checkpoint directory written by :func:`save_checkpoint`."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a megagrow checkpoint (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')!r}, "
                         f"expected {FORMAT!r} v{VERSION}")
    params = load_file(str(path / "params.safetensors"))
    moments: dict[str, dict[str, torch.Tensor]] = {"exp_avg": {}, "exp_avg_sq": {}}
    opt_path = path / "optimizer.safetensors"
    if opt_path.is_file():
        for key, t in load_file(str(opt_path)).items():
            m, _, name = key.partition(".")
            if m not in moments:
                raise ValueError(f"{opt_path}: unexpected tensor {key!r}")
            moments[m][name] = t
    state = FullState(params, moments["exp_avg"], moments["exp_avg_sq"], int(meta.get("adam_step", 0)))
    return state, meta


def load_plan_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The growth plan's tensors saved with a checkpoint (empty when it has none)."""
    f = path / "plan.safetensors"
    return load_file(str(f)) if f.is_file() else {}
