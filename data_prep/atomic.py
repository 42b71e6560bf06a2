"""Atomic file writes: write under a temporary name in the same directory, flush to disk, rename.

A reader never sees a half-written file under its final name: after a crash there is either the
old file, the new one, or a stray ``*.tmp`` that the next build removes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from megagrow.data.manifest import sha256_file  # re-exported: data_prep hashes as the readers check

__all__ = ["TMP_SUFFIX", "atomic_path", "sha256_file", "write_bytes_atomic", "write_json_atomic"]

TMP_SUFFIX = ".tmp"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it replaces ``final``, on error it is removed."""
    tmp = final.with_name(final.name + TMP_SUFFIX)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
