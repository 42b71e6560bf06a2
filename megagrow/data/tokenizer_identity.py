"""Tokenizer identity end to end: the SHA-256 of the SentencePiece model a text dataset was tokenized with.

Two tokenizers of the same vocabulary size map the same ids to different pieces: a model trained with one and fed
the other's ids computes a meaningless loss (8.20 where it had trained to 4.3), and comparing vocabulary sizes
catches nothing. The hash travels with everything that holds token ids or weights trained on them: a dataset's
manifest (``tokenizer.sha256``), a checkpoint's meta (``tokenizer_sha256``), an HF export's
``megagrow_export.json``; resume, ``megagrow eval --data`` and ``model.init_from`` refuse a different one, naming
both. Pure lookups here; the refusals are where the data meet the model (train, use, hf_init).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megagrow.data.manifest import MANIFEST_NAME, sha256_file


def dataset_tokenizer(data_dir: Path | str) -> str | None:
    """The tokenizer hash recorded in a prepared text dataset's manifest (None: no such dataset, or images)."""
    path = Path(data_dir) / MANIFEST_NAME
    try:
        tok = json.loads(path.read_text()).get("tokenizer")
    except (OSError, ValueError):
        return None
    sha = tok.get("sha256") if isinstance(tok, dict) else None
    return sha if isinstance(sha, str) else None


def checkpoint_tokenizer(meta: dict[str, Any]) -> str | None:
    """The tokenizer a checkpoint's weights were trained with: its meta's record, or (checkpoints from before the
    record) the manifest of the dataset its config names, if that dataset is still there."""
    if isinstance(meta.get("tokenizer_sha256"), str):
        return meta["tokenizer_sha256"]
    data = (meta.get("config") or {}).get("data") or {}
    if data.get("kind", "text") != "text" or not data.get("path"):
        return None
    from megagrow.config import expand_path

    return dataset_tokenizer(expand_path(data["path"]))


def hf_dir_tokenizer(hf_dir: Path | str) -> str | None:
    """The tokenizer of an HF directory: megagrow's export record, else the hash of its ``tokenizer.model``."""
    d = Path(hf_dir)
    try:
        sha = json.loads((d / "megagrow_export.json").read_text()).get("tokenizer_sha256")
        if isinstance(sha, str):
            return sha
    except (OSError, ValueError):
        pass
    return sha256_file(d / "tokenizer.model") if (d / "tokenizer.model").is_file() else None


def mismatch(what: str, theirs: str, data_what: str, ours: str) -> str:
    """One line naming both tokenizers."""
    return (f"{what} was trained with another tokenizer than {data_what}: tokenizer.model SHA-256 {theirs[:16]}... "
            f"against {ours[:16]}... (the same ids mean other pieces, so its loss there means nothing); use a "
            "dataset built with the same tokenizer (megagrow-prep build --tokenizer THAT.model)")


__all__ = ["checkpoint_tokenizer", "dataset_tokenizer", "hf_dir_tokenizer", "mismatch"]
