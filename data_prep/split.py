"""How a build divides its text into the train and validation splits.

By **document** (the default, :func:`~data_prep.shards.split_of`): a document goes to validation when a
hash of its id, read as a fraction, is below ``--val-fraction``; stable as the corpus grows.

By **paragraph blocks**, when the corpus has too few documents for that: fewer than
``1 / val_fraction`` of them (a single notes file, a handful of files), or a document split that
leaves the validation or the train split empty. Every document is cut into blocks
(:func:`paragraph_blocks`: runs of whole paragraphs of at least ``block_chars`` characters; a longer
paragraph is cut between sentences, and a sentence longer than twice that at spaces), each block is
a row of the shards with the id ``<doc id>@<start>-<end>`` (its character range in the cleaned
text), and the ``max(1, round(val_fraction * n_blocks))`` blocks with the lowest hash of their id go
to validation (:func:`validation_blocks`), at least one block staying in train. The manifest's
``settings.split`` records which rule was used and why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from data_prep.errors import PrepError
from data_prep.sentences import sentence_spans

__all__ = [
    "BLOCK_CHARS",
    "Block",
    "SplitInfo",
    "block_hash",
    "needs_blocks",
    "paragraph_blocks",
    "validation_blocks",
]

BLOCK_CHARS = 1000
"""Default minimum size of a block (characters): a few paragraphs, a few hundred tokens."""


@dataclass(frozen=True)
class Block:
    """A run of a document's text: ``text[start:end]`` of the cleaned document."""

    start: int
    end: int
    text: str

    def block_id(self, doc_id: str) -> str:
        return f"{doc_id}@{self.start}-{self.end}"


@dataclass(frozen=True)
class SplitInfo:
    """Which rule split the build, as recorded in the manifest's ``settings.split``."""

    by: str  # "document" or "paragraph_blocks"
    reason: str = ""
    block_chars: int = 0
    n_blocks: int = 0
    n_validation_blocks: int = 0

    def recorded(self) -> dict[str, object]:
        if self.by == "document":
            return {"by": "document"}
        return {
            "by": self.by,
            "reason": self.reason,
            "block_chars": self.block_chars,
            "n_blocks": self.n_blocks,
            "n_validation_blocks": self.n_validation_blocks,
        }


def needs_blocks(n_docs: int, n_validation_docs: int, val_fraction: float) -> str | None:
    """Why the document split does not fit (the reason to split by blocks), or None when it does."""
    if val_fraction <= 0:
        return None
    if n_docs * val_fraction < 1:
        return f"{n_docs} document(s), fewer than 1 / val_fraction = {1 / val_fraction:g}"
    if n_validation_docs == 0:
        return f"none of the {n_docs} documents hashed below val_fraction {val_fraction}"
    if n_validation_docs == n_docs:
        return f"all {n_docs} documents hashed below val_fraction {val_fraction}"
    return None


def _cut_at_spaces(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into pieces of about ``size`` characters at spaces (never inside a word)."""
    pieces: list[tuple[int, int]] = []
    while end - start > 2 * size:
        cut = text.rfind(" ", start + 1, start + size + 1)
        if cut <= start:
            cut = text.find(" ", start + size)
            if cut < 0 or cut >= end:
                break
        pieces.append((start, cut))
        start = cut + 1
    pieces.append((start, end))
    return pieces


def _units(text: str, size: int) -> list[tuple[int, int]]:
    """The text's paragraphs (non-empty lines) as ``(start, end)``; one longer than ``size`` as its
    sentences, and a sentence longer than ``2 * size`` cut at spaces."""
    units: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if not line.strip():
            continue
        if len(line) <= size:
            units.append((start, end))
            continue
        for a, b in sentence_spans(line):
            units.extend(_cut_at_spaces(text, start + a, start + b, size))
    return units


def paragraph_blocks(text: str, block_chars: int = BLOCK_CHARS) -> list[Block]:
    """``text`` cut into consecutive blocks of whole units (see :func:`_units`), each at least
    ``block_chars`` characters long but the last, which is merged into the one before when shorter.
    Pure; blocks are exact slices of ``text`` in order and cover all its non-space text."""
    if block_chars < 1:
        raise ValueError(f"block_chars must be >= 1, got {block_chars}")
    units = _units(text, block_chars)
    spans: list[tuple[int, int]] = []
    first: int | None = None
    for a, b in units:
        if first is None:
            first = a
        if b - first >= block_chars:
            spans.append((first, b))
            first = None
    if first is not None:
        last_end = units[-1][1]
        if spans:
            spans[-1] = (spans[-1][0], last_end)
        else:
            spans.append((first, last_end))
    return [Block(a, b, text[a:b]) for a, b in spans]


def block_hash(block_id: str) -> int:
    """A stable 64-bit hash of a block id."""
    return int.from_bytes(hashlib.sha256(block_id.encode("utf-8")).digest()[:8], "big")


def validation_blocks(hashes: Sequence[int], val_fraction: float, block_chars: int = BLOCK_CHARS) -> set[int]:
    """The hashes of the blocks that go to validation: the ``max(1, round(val_fraction * n))`` lowest,
    at most ``n - 1`` (train keeps at least one). Fewer than 2 blocks is a :class:`PrepError`."""
    n = len(hashes)
    if n < 2:
        raise PrepError(
            f"too little text for a validation split: {n} block(s) of paragraphs (a block is at least "
            f"{block_chars} characters); add more text, or build without validation (--val-fraction 0)"
        )
    k = min(n - 1, max(1, round(val_fraction * n)))
    return set(sorted(hashes)[:k])
