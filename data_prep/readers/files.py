"""Inputs that are a file or a directory of files: listing, a hash over the whole tree, and
:class:`FileTreeSource`, the base of the readers of such inputs."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.errors import PrepError
from data_prep.readers.base import Document
from megagrow.data.manifest import sha256_file

__all__ = ["FileTreeSource", "TreeHash", "list_files"]


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


class FileTreeSource(ABC):
    """A :class:`~data_prep.readers.base.Source` reading a file, or the accepted files of a directory
    tree in sorted relative-path order, each with :meth:`_file`.

    Other files of the directory are counted in ``skipped[other_files]`` (when named); :attr:`sha256`
    is the :class:`TreeHash` of the files read.
    """

    kind: str

    def __init__(self, path: Path, accept: Callable[[Path], bool], what: str, other_files: str | None = None):
        self.path = path
        self.skipped: Counter[str] = Counter()
        self.replaced: Counter[str] = Counter()
        self._files, self._root, others = list_files(path, accept, what)
        if others and other_files:
            self.skipped[other_files] = others
        self._sha256: str | None = None

    @property
    def sha256(self) -> str | None:
        return self._sha256

    def _rel(self, file: Path) -> str:
        """``file``'s path relative to the input's directory (its name for a single file)."""
        return file.relative_to(self._root).as_posix()

    def documents(self) -> Iterator[Document]:
        tree = TreeHash(single=not self.path.is_dir())
        for file in self._files:
            yield from self._file(file)
            tree.add(self._rel(file), sha256_file(file))
        self._sha256 = tree.hexdigest()

    @abstractmethod
    def _file(self, file: Path) -> Iterator[Document]:
        """The documents of one file of the input."""
