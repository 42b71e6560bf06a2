"""Input sources: turn a path given on the command line into a stream of plain-text documents.

Kinds understood so far:

* ``wiki_xml``: a MediaWiki XML dump (``*.xml``, ``*.xml.bz2``, a split ``*.bz2`` part). Each
  article is a document ``<dbname>:<page id>`` (e.g. ``enwiki:12``) whose text is the title
  followed by the article converted with :func:`~data_prep.wikitext.wikitext_to_text`.
* ``books``: a ``.txt``/``.md`` file, or a directory searched recursively for them. Each file is
  a document whose id is its path relative to the directory (its name for a single file);
  ``.md`` files are read as iambic play markdown, ``.txt`` as plain text.

A new reader is a class with ``path``, ``kind``, ``documents()``, ``sha256`` and ``skipped``
(see :class:`Source`) plus a line in :func:`open_source`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from data_prep.books import markdown_play_to_text, plain_book_to_text
from data_prep.errors import PrepError
from data_prep.wiki_xml import WikiDumpReader, is_wiki_dump_path
from data_prep.wikitext import wikitext_to_text

__all__ = ["BOOK_SUFFIXES", "BookSource", "Document", "Source", "WikiDumpSource", "open_source"]

BOOK_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    """One document before cleaning: a corpus-unique id and its plain text."""

    doc_id: str
    text: str


class Source(Protocol):
    path: Path
    kind: str
    skipped: Counter[str]
    """Inputs not turned into documents, by reason (merged into the manifest's ``dropped``)."""

    @property
    def sha256(self) -> str | None:
        """Hash of the input's bytes once :meth:`documents` has run to the end, if defined."""
        ...

    def documents(self) -> Iterator[Document]: ...


class WikiDumpSource:
    kind = "wiki_xml"

    def __init__(self, path: Path):
        self.path = path
        self._reader = WikiDumpReader(path)
        self.skipped = self._reader.skipped

    @property
    def sha256(self) -> str | None:
        return self._reader.sha256

    def documents(self) -> Iterator[Document]:
        for page in self._reader:
            body = wikitext_to_text(page.wikitext)
            yield Document(f"{self._reader.dbname or 'wiki'}:{page.page_id}", f"{page.title}\n\n{body}")


class BookSource:
    """Book files; :attr:`sha256` hashes the sorted ``(relative path, file SHA-256)`` list."""

    kind = "books"

    def __init__(self, path: Path):
        self.path = path
        self.skipped: Counter[str] = Counter()
        self._sha256: str | None = None
        if path.is_dir():
            files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
            self._files = [p for p in files if p.suffix.lower() in BOOK_SUFFIXES]
            if len(files) > len(self._files):
                self.skipped["book_dir_other_files"] = len(files) - len(self._files)
            if not self._files:
                raise PrepError(f"--input {path}: no {' or '.join(BOOK_SUFFIXES)} files in this directory")
            self._root = path
        else:
            self._files = [path]
            self._root = path.parent

    @property
    def sha256(self) -> str | None:
        return self._sha256

    def documents(self) -> Iterator[Document]:
        tree = hashlib.sha256()
        file_sha = ""
        for file in self._files:
            doc_id = file.relative_to(self._root).as_posix()
            try:
                data = file.read_bytes()
            except OSError as e:
                raise PrepError(f"{file}: cannot read ({e})") from e
            file_sha = hashlib.sha256(data).hexdigest()
            tree.update(f"{doc_id}\0{file_sha}\n".encode())
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise PrepError(f"{file}: not UTF-8 text ({e}); expected a UTF-8 .txt or .md book") from e
            convert = markdown_play_to_text if file.suffix.lower() == ".md" else plain_book_to_text
            yield Document(doc_id, convert(text))
        self._sha256 = tree.hexdigest() if self.path.is_dir() else file_sha


def open_source(path: Path) -> Source:
    """The reader for ``path``, chosen by its type and name; a :class:`PrepError` if none fits."""
    path = Path(path)
    if not path.exists():
        raise PrepError(f"--input {path}: no such file or directory")
    if path.is_dir():
        return BookSource(path)
    if is_wiki_dump_path(path):
        return WikiDumpSource(path)
    if path.suffix.lower() in BOOK_SUFFIXES:
        return BookSource(path)
    raise PrepError(
        f"--input {path}: unrecognized input; expected a MediaWiki XML dump (.xml, .xml.bz2, .bz2), "
        f"a .txt/.md book file, or a directory of them"
    )
