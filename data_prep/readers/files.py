"""Inputs that are a file or a directory of files: listing, and a hash over the whole tree."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from data_prep.errors import PrepError

__all__ = ["TreeHash", "list_files"]


def list_files(path: Path, accept: Callable[[Path], bool], what: str) -> tuple[list[Path], Path, int]:
    """Files of ``path`` (itself, or a directory searched recursively, in sorted relative-path order)
    that ``accept`` takes; also the root ids are relative to, and how many other files were seen.

    A directory without any accepted file is a :class:`PrepError` naming ``what`` was expected.
    """
    if not path.is_dir():
        return [path], path.parent, 0
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    kept = [p for p in files if accept(p)]
    if not kept:
        raise PrepError(f"--source {path}: no {what} in this directory")
    return kept, path, len(files) - len(kept)


class TreeHash:
    """SHA-256 of the sorted ``(relative path, file SHA-256)`` list; a single file's own hash."""

    def __init__(self, single: bool):
        self._single = single
        self._tree = hashlib.sha256()
        self._last = ""

    def add(self, rel: str, file_sha256: str) -> None:
        self._tree.update(f"{rel}\0{file_sha256}\n".encode())
        self._last = file_sha256

    def hexdigest(self) -> str:
        return self._last if self._single else self._tree.hexdigest()
