"""Streaming reader of MediaWiki XML dumps (``pages-articles``), plain or bz2-compressed.

Memory stays bounded whatever the dump size: pages are parsed one at a time with
:func:`xml.etree.ElementTree.iterparse` and cleared once read. Tags are matched by their local
name, so every export schema version (0.10 in older dumps, 0.11 in current ones) is accepted.
``bz2.open`` also reads the concatenated streams of ``-multistream`` dumps. A corrupt or truncated bz2
stream is a :class:`WikiDumpError` naming the file and the position: the decompressed byte where
reading stopped and the compressed byte reached.
"""

from __future__ import annotations

import bz2
import hashlib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from data_prep.errors import PrepError

__all__ = ["WikiDumpError", "WikiDumpReader", "WikiPage", "is_wiki_dump_path"]


class WikiDumpError(PrepError):
    """The file is not a readable MediaWiki XML dump."""


class WikiPage(NamedTuple):
    """An article of the main namespace: its page id, title and raw wikitext."""

    page_id: int
    title: str
    wikitext: str


def is_wiki_dump_path(path: Path) -> bool:
    """Whether the file name looks like a dump: ``*.xml``, ``*.xml.bz2`` or a split ``*.bz2`` part."""
    return path.name.endswith((".xml", ".bz2"))


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


class _HashingReader:
    """A read-only binary stream that hashes and counts the bytes read through it."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.n_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        self.n_read += len(data)
        return data


class _CountingReader:
    """A read-only binary stream that counts the bytes read through it (the decompressed position).

    A :class:`bz2.BZ2File` is read with ``read1`` (what one compressed chunk gives), so the bytes
    decompressed before a truncation reach the parser and the count, rather than being dropped with the
    rest of a larger ``read``."""

    def __init__(self, raw: _HashingReader | bz2.BZ2File):
        self._read = raw.read1 if isinstance(raw, bz2.BZ2File) else raw.read
        self.n_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._read(size)
        self.n_read += len(data)
        return data


class WikiDumpReader:
    """Iterate over the articles of a dump.

    Yields :class:`WikiPage` for pages in namespace 0 that are not redirects and have text.
    Every other page is counted in :attr:`skipped` by reason: ``wiki_redirect``,
    ``wiki_other_namespace`` or ``wiki_no_text``. After a full iteration :attr:`sha256` holds
    the hash of the file as stored (computed while reading, no second pass) and :attr:`dbname`
    the wiki's database name from ``<siteinfo>`` (e.g. ``enwiki``), if present.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.skipped: Counter[str] = Counter()
        self.n_pages = 0
        self.dbname: str | None = None
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[WikiPage]:
        hashing: _HashingReader | None = None
        counting: _CountingReader | None = None
        compressed = False
        try:
            with open(self.path, "rb") as raw:
                compressed = raw.read(3) == b"BZh"
                raw.seek(0)
                hashing = _HashingReader(raw)
                counting = _CountingReader(bz2.BZ2File(hashing) if compressed else hashing)
                yield from self._pages(counting)
                self.sha256 = hashing.sha256.hexdigest()
        except ET.ParseError as e:
            raise WikiDumpError(f"{self.path}: not well-formed XML ({e}); expected a MediaWiki XML dump") from e
        except (OSError, EOFError) as e:
            if not compressed or hashing is None or counting is None:
                raise WikiDumpError(f"{self.path}: cannot read ({e})") from e
            raise WikiDumpError(
                f"{self.path}: cannot read past decompressed byte {counting.n_read:,} (compressed byte "
                f"{hashing.n_read:,} of {self.path.stat().st_size:,}): {e}; the bz2 stream is corrupt or truncated"
            ) from e

    def _pages(self, stream: _CountingReader) -> Iterator[WikiPage]:
        events = ET.iterparse(stream, events=("start", "end"))
        _, root = next(events)
        if _local(root.tag) != "mediawiki":
            raise WikiDumpError(
                f"{self.path}: root element is <{_local(root.tag)}>, expected <mediawiki> (a MediaWiki XML dump)"
            )
        for event, elem in events:
            if event != "end":
                continue
            name = _local(elem.tag)
            if name == "dbname" and self.dbname is None:
                self.dbname = (elem.text or "").strip() or None
            elif name == "page":
                page = self._page(elem)
                root.clear()  # drop the finished page (and the siteinfo) from the tree
                if page is not None:
                    yield page

    def _page(self, page: ET.Element) -> WikiPage | None:
        self.n_pages += 1
        fields: dict[str, str] = {}
        redirect = False
        for child in page:
            name = _local(child.tag)
            if name == "redirect":
                redirect = True
            elif name in ("title", "ns", "id"):
                fields[name] = child.text or ""
            elif name == "revision":
                for rev_child in child:
                    if _local(rev_child.tag) == "text":
                        fields["text"] = rev_child.text or ""
        text = fields.get("text", "")
        if fields.get("ns", "0").strip() != "0":
            self.skipped["wiki_other_namespace"] += 1
            return None
        if redirect or text.lstrip()[:9].lower() == "#redirect":
            self.skipped["wiki_redirect"] += 1
            return None
        if not text.strip():
            self.skipped["wiki_no_text"] += 1
            return None
        try:
            page_id = int(fields.get("id", ""))
        except ValueError:
            raise WikiDumpError(
                f"{self.path}: page {fields.get('title', '?')!r} has no integer <id> (found {fields.get('id')!r})"
            ) from None
        return WikiPage(page_id, fields.get("title", ""), text)
