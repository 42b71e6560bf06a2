"""The contract between prepared data and the loaders.

A *token corpus* is an ordered list of documents, each a 1-D array of token ids, plus the ids of the
special tokens. Prepared shards (:mod:`megagrow.data.shards`) implement it with memory-mapped Arrow
files; tests implement it in memory. Loaders only ever see this protocol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens of a tokenizer (all distinct, all < vocab_size)."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    eos: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int], where: str = "special_tokens") -> SpecialTokens:
        names = [f for f in cls.__dataclass_fields__]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"{where}: missing special token id(s) {missing}; expected keys {names}")
        return cls(**{n: int(d[n]) for n in names})

    def ids(self) -> list[int]:
        return [self.pad, self.unk, self.cls, self.sep, self.mask, self.eos]


@runtime_checkable
class TokenCorpus(Protocol):
    """What a loader needs from a split of prepared data."""

    special: SpecialTokens
    vocab_size: int

    @property
    def doc_lengths(self) -> np.ndarray:
        """int64 array, number of tokens of each document, in corpus order."""
        ...

    def doc(self, i: int) -> np.ndarray:
        """Token ids (int32, 1-D) of document ``i``; a read-only view where possible."""
        ...

    def fingerprint(self) -> str:
        """A stable hash of the data and tokenizer; a resumed run refuses a different one."""
        ...

    def sentence_starts(self, i: int) -> np.ndarray | None:
        """Token offsets within document ``i`` where its sentences start (int32, ascending, the first is
        0), or None when the data has no sentence index (BERT sentence pairs need one)."""
        ...

    def word_starts(self) -> np.ndarray | None:
        """A bool array over the vocabulary: True for tokens that begin a word (SentencePiece's ``▁``
        prefix; special tokens count as word starts), or None if unknown (whole-word masking needs it)."""
        ...


class InMemoryCorpus:
    """A :class:`TokenCorpus` over Python/numpy arrays (tests, synthetic data)."""

    def __init__(self, docs: Sequence[Sequence[int]], special: SpecialTokens, vocab_size: int,
                 sentence_starts: Sequence[Sequence[int]] | None = None, word_starts: np.ndarray | None = None):
        self._docs = [np.asarray(d, dtype=np.int32) for d in docs]
        if not self._docs:
            raise ValueError("InMemoryCorpus: at least one document is required")
        self.special = special
        self.vocab_size = int(vocab_size)
        self._lengths = np.array([len(d) for d in self._docs], dtype=np.int64)
        if sentence_starts is not None and len(sentence_starts) != len(self._docs):
            raise ValueError(f"InMemoryCorpus: {len(sentence_starts)} sentence index entries for "
                             f"{len(self._docs)} documents")
        self._sentences = None if sentence_starts is None else [np.asarray(s, dtype=np.int32)
                                                                for s in sentence_starts]
        if word_starts is not None and word_starts.shape != (self.vocab_size,):
            raise ValueError(f"InMemoryCorpus: word_starts has shape {word_starts.shape}, "
                             f"expected ({self.vocab_size},)")
        self._word_starts = word_starts

    @property
    def doc_lengths(self) -> np.ndarray:
        return self._lengths

    def doc(self, i: int) -> np.ndarray:
        return self._docs[i]

    def sentence_starts(self, i: int) -> np.ndarray | None:
        return None if self._sentences is None else self._sentences[i]

    def word_starts(self) -> np.ndarray | None:
        return self._word_starts

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for d in self._docs:
            h.update(np.int64(len(d)).tobytes())
            h.update(d.tobytes())
        h.update(repr(sorted(self.special.as_dict().items())).encode())
        return "mem-" + h.hexdigest()[:16]
