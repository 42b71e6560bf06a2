"""What every reader shares: the :class:`Document` it yields, the :class:`Source` protocol, and
byte-level helpers (transparent bz2, hashing while reading, UTF-8 decoding that counts replacements).

Undecodable bytes never stop a build and are never dropped silently: each invalid UTF-8 sequence
becomes U+FFFD, is counted in the source's ``replaced["invalid_utf8"]`` (a manifest counter) and the
first one of each file is logged with the file name and byte offset.
"""

from __future__ import annotations

import bz2
import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from data_prep.errors import PrepError

__all__ = [
    "Document",
    "HashingReader",
    "Source",
    "decode_counting",
    "iter_lines",
    "open_maybe_bz2",
    "sniff",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    """One document before cleaning: a corpus-unique id and its plain text."""

    doc_id: str
    text: str


class Source(Protocol):
    """A reader of one input (a file or a directory)."""

    path: Path
    kind: str
    skipped: Counter[str]
    """Inputs not turned into documents, by reason (merged into the manifest's ``dropped``)."""
    replaced: Counter[str]
    """Repairs made while reading, e.g. ``invalid_utf8`` sequences replaced by U+FFFD."""

    @property
    def sha256(self) -> str | None:
        """Hash of the input's bytes once :meth:`documents` has run to the end, if defined."""
        ...

    def documents(self) -> Iterator[Document]: ...


class HashingReader:
    """A read-only binary stream that hashes the bytes read through it."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        return data

    def readable(self) -> bool:
        return True


def is_bz2(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(3) == b"BZh"


def open_maybe_bz2(path: Path) -> tuple[BinaryIO, HashingReader, BinaryIO]:
    """Open ``path`` for reading, decompressing bz2 (by its magic bytes) transparently.

    Returns ``(stream, hashing, raw)``: read from ``stream``; ``hashing.sha256`` hashes the stored
    bytes; close ``raw`` when done.
    """
    raw = open(path, "rb")
    compressed = raw.read(3) == b"BZh"
    raw.seek(0)
    hashing = HashingReader(raw)
    stream: BinaryIO = bz2.BZ2File(hashing) if compressed else hashing  # type: ignore[assignment]
    return stream, hashing, raw


def sniff(path: Path, n: int = 512) -> bytes:
    """The first ``n`` bytes of the (decompressed) file; empty when it cannot be read."""
    try:
        stream, _, raw = open_maybe_bz2(path)
        try:
            return stream.read(n)
        finally:
            raw.close()
    except (OSError, EOFError):
        return b""


def decode_counting(data: bytes, replaced: Counter[str], where: str, offset: int = 0) -> str:
    """``data`` decoded as UTF-8; each invalid sequence becomes U+FFFD and is counted in ``replaced``.

    ``where`` (the file name, maybe a line) and ``offset`` (of ``data`` in the file) name the first
    bad byte in a warning.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        log.warning("%s: invalid UTF-8 at byte %d; replacing undecodable bytes with U+FFFD", where, offset + e.start)
    parts: list[str] = []
    pos = 0
    while pos < len(data):
        try:
            parts.append(data[pos:].decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            parts.append(data[pos : pos + e.start].decode("utf-8"))
            parts.append("\ufffd")
            replaced["invalid_utf8"] += 1
            pos += e.end
    return "".join(parts)


def iter_lines(path: Path, replaced: Counter[str]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a (maybe bz2) text file, decoded with :func:`decode_counting`.

    A corrupt or truncated bz2 stream raises a :class:`PrepError` naming the file, the last line read
    and the decompressed byte where the unreadable line starts.
    """
    lineno = 0
    offset = 0
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(3) == b"BZh"
            raw.seek(0)
            stream: BinaryIO = bz2.BZ2File(raw) if compressed else raw  # type: ignore[assignment]
            for lineno, line in enumerate(stream, start=1):  # noqa: B007
                text = decode_counting(line, replaced, f"{path} line {lineno}", offset)
                offset += len(line)
                if lineno == 1:
                    text = text.lstrip("\ufeff")
                yield lineno, text.rstrip("\r\n")
    except (OSError, EOFError) as e:
        raise PrepError(
            f"{path}: cannot read past line {lineno} (decompressed byte {offset}): {e}; "
            "the file is corrupt or truncated"
        ) from e
