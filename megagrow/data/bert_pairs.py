"""BERT sentence-pair samples ``[CLS] A [SEP] B [SEP] PAD...`` from a corpus's sentence index.

Google BERT's ``create_instances_from_document`` / Megatron's ``build_mapping`` + ``build_training_sample``:

*Layout* (fixed, computed once from ``seed`` — :func:`build_pair_layout`): walking each document's
sentences in order, a sample accumulates consecutive sentences until their tokens reach a target
length, which is ``seq_len - 3`` or, with probability ``short_seq_prob``, uniform in
``[2, seq_len - 3]`` (re-drawn after every sample). A sample is only closed early if at least two
sentences remain for the next one, so every sample has >= 2 sentences; documents with fewer than two
(non-empty) sentences are skipped. Sample ``i`` is ``(doc[i], first[i], stop[i])``, a sentence range.

*Per draw* (dynamic, from ``Generator(PCG64([seed, key]))``, ``key`` from the loader, i.e. keyed by
(seed, epoch, index)): A is the first ``k`` sentences of the range (``k`` uniform in
``[1, n_sentences - 1]``) and B the rest. With ``nsp=True``, half of the time B is replaced by
consecutive sentences of another random document (starting at a random sentence, up to the remaining
length) and ``nsp_labels`` is 1 (0 = B really follows A, Google's ``next_sentence_labels``). Then the
longer side is truncated one token at a time, from the front or the back with probability 1/2 each,
until ``len(A) + len(B) <= seq_len - 3``, and the tokens are masked by
:class:`megagrow.data.masking.Masker` (special tokens, hence CLS/SEP/PAD, are never masked).

Fields: ``input_ids``, ``token_type_ids`` (0 for ``[CLS] A [SEP]`` and padding, 1 for ``B [SEP]``),
``attention_mask`` (1 real token, 0 padding), ``labels`` (:data:`IGNORE_INDEX` but at masked
positions) and, with ``nsp=True`` only, ``nsp_labels`` (a scalar; the models do not use it yet).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from megagrow.data.corpus import TokenCorpus
from megagrow.data.masking import Masker, MaskingConfig

_LAYOUT_STREAM = 0
_SAMPLE_STREAM = 1


def sentence_bounds(corpus: TokenCorpus, doc: int) -> np.ndarray:
    """Token offsets ``[s_0 = 0, s_1, ..., len(doc)]`` of the non-empty sentences of ``doc`` (int64).

    Raises a ValueError when the corpus has no sentence index or the index of ``doc`` is malformed.
    """
    starts = corpus.sentence_starts(doc)
    if starts is None:
        raise ValueError(
            "BERTPairDataset: the corpus has no sentence index (sentence_starts() returned None); prepare "
            "the data with sentence splitting or use BERTDataset"
        )
    length = int(corpus.doc_lengths[doc])
    starts = np.asarray(starts, dtype=np.int64)
    if length == 0:
        return np.zeros(1, dtype=np.int64)
    if starts.ndim != 1 or starts.size == 0 or starts[0] != 0 or (np.diff(starts) < 0).any() or starts[-1] > length:
        raise ValueError(
            f"BERTPairDataset: sentence_starts({doc}) must be ascending offsets starting at 0 and <= the "
            f"document length {length}, got {starts[:8].tolist()}{'...' if starts.size > 8 else ''}"
        )
    return np.unique(np.append(starts, length))  # drops empty sentences (repeated offsets)


@dataclass(frozen=True)
class PairLayout:
    """Sample ``i`` = sentences ``[first[i], stop[i])`` of document ``doc[i]``; ``target[i]`` is the
    token target its sentences were accumulated to (< ``seq_len - 3`` for a short sample)."""

    doc: np.ndarray  # int64
    first: np.ndarray  # int64
    stop: np.ndarray  # int64
    target: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.doc.size)

    def digest(self) -> str:
        h = hashlib.sha256()
        for a in (self.doc, self.first, self.stop, self.target):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def build_pair_layout(corpus: TokenCorpus, max_tokens: int, short_seq_prob: float, seed: int) -> PairLayout:
    """The fixed sample layout (see the module docstring); ``max_tokens = seq_len - 3``."""
    rng = np.random.Generator(np.random.PCG64([seed, _LAYOUT_STREAM]))

    def draw_target() -> int:
        if rng.random() < short_seq_prob:
            return int(rng.integers(2, max_tokens + 1))
        return max_tokens

    docs: list[int] = []
    firsts: list[int] = []
    stops: list[int] = []
    targets: list[int] = []
    target = draw_target()
    for d in range(len(corpus.doc_lengths)):
        sizes = np.diff(sentence_bounds(corpus, d)).tolist()
        n = len(sizes)
        if n < 2:
            continue
        start, length = 0, 0
        for s, size in enumerate(sizes):
            length += size
            remaining = n - s - 1
            if (length >= target and remaining > 1 and s + 1 - start >= 2) or remaining == 0:
                docs.append(d)
                firsts.append(start)
                stops.append(s + 1)
                targets.append(target)
                start, length = s + 1, 0
                target = draw_target()
    as_array = lambda v: np.asarray(v, dtype=np.int64)
    return PairLayout(as_array(docs), as_array(firsts), as_array(stops), as_array(targets))


def truncated_lengths(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Lengths after Google's rule: drop one token from the longer side (B on ties) until they fit."""
    excess = len_a + len_b - max_tokens
    if excess <= 0:
        return len_a, len_b
    gap = abs(len_a - len_b)
    if excess <= gap:
        return (len_a - excess, len_b) if len_a > len_b else (len_a, len_b - excess)
    even = min(len_a, len_b)
    rest = excess - gap
    return even - rest // 2, even - (rest + 1) // 2


def _truncate(tokens: np.ndarray, new_len: int, rng: np.random.Generator) -> np.ndarray:
    removed = tokens.size - new_len
    if removed == 0:
        return tokens
    front = int(rng.binomial(removed, 0.5))  # each removal is from the front with probability 1/2
    return tokens[front : front + new_len]


class BERTPairDataset:
    """``[CLS] A [SEP] B [SEP]`` masked-LM samples over a corpus with a sentence index (module docstring)."""

    def __init__(
        self,
        corpus: TokenCorpus,
        seq_len: int,
        masking: MaskingConfig | None = None,
        short_seq_prob: float = 0.1,
        nsp: bool = False,
        seed: int = 0,
    ):
        if seq_len < 5:
            raise ValueError(f"BERTPairDataset: seq_len must be >= 5 ([CLS] A [SEP] B [SEP]), got {seq_len}")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ValueError(f"BERTPairDataset: short_seq_prob must be in [0, 1], got {short_seq_prob}")
        if seed < 0:
            raise ValueError(f"BERTPairDataset: seed must be >= 0, got {seed}")
        self.corpus = corpus
        self.special = corpus.special
        self.seq_len = int(seq_len)
        self.max_tokens = self.seq_len - 3
        self.masking = masking if masking is not None else MaskingConfig()
        self.short_seq_prob = float(short_seq_prob)
        self.nsp = bool(nsp)
        self.seed = int(seed)
        word_starts = corpus.word_starts() if self.masking.whole_word else None
        self.masker = Masker(self.masking, corpus.special, corpus.vocab_size, word_starts, where="BERTPairDataset")
        self.layout = build_pair_layout(corpus, self.max_tokens, self.short_seq_prob, self.seed)
        if len(self.layout) == 0:
            raise ValueError(
                "BERTPairDataset: no document has two or more non-empty sentences, so no sentence pair can be built"
            )
        self._nonempty_docs = np.flatnonzero(np.asarray(corpus.doc_lengths) > 0)
        if self.nsp and self._nonempty_docs.size < 2:
            raise ValueError("BERTPairDataset: nsp=True needs at least two non-empty documents for random B")
        parts = (corpus.fingerprint(), self.seq_len, self.short_seq_prob, self.nsp, self.seed, self.layout.digest())
        self._fingerprint = hashlib.sha256(
            repr(("bert-pairs-v1", *parts, *self.masker.fingerprint_parts())).encode()
        ).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.layout)

    def fingerprint(self) -> str:
        return self._fingerprint

    def _random_b(self, doc: int, target: int, rng: np.random.Generator) -> np.ndarray:
        """Consecutive sentences of a random other document, from a random sentence, >= ``target`` tokens
        where the document allows."""
        pool = self._nonempty_docs
        j = int(rng.integers(0, pool.size - 1))
        k = int(np.searchsorted(pool, doc))
        if k < pool.size and pool[k] == doc and j >= k:
            j += 1
        other = int(pool[j])
        bounds = sentence_bounds(self.corpus, other)
        first = int(rng.integers(0, bounds.size - 1))
        # The first sentence end at or past first-start + target, else the document end.
        stop = min(int(np.searchsorted(bounds, bounds[first] + target, side="left")), bounds.size - 1)
        return np.asarray(self.corpus.doc(other)[bounds[first] : bounds[stop]], dtype=np.int64)

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self.layout):
            raise IndexError(f"BERTPairDataset: index {index} out of range [0, {len(self.layout)})")
        if key < 0:
            raise ValueError(f"BERTPairDataset: key must be >= 0, got {key}")
        doc = int(self.layout.doc[index])
        first, stop = int(self.layout.first[index]), int(self.layout.stop[index])
        bounds = sentence_bounds(self.corpus, doc)
        tokens = np.asarray(self.corpus.doc(doc), dtype=np.int64)
        rng = np.random.Generator(np.random.PCG64([self.seed, _SAMPLE_STREAM, key]))

        split = first + int(rng.integers(1, stop - first))
        a = tokens[bounds[first] : bounds[split]]
        is_random = self.nsp and rng.random() < 0.5
        if is_random:
            b = self._random_b(doc, max(1, self.max_tokens - a.size), rng)
        else:
            b = tokens[bounds[split] : bounds[stop]]
        len_a, len_b = truncated_lengths(a.size, b.size, self.max_tokens)
        a, b = _truncate(a, len_a, rng), _truncate(b, len_b, rng)

        s = self.special
        n_real = a.size + b.size + 3
        ids = np.full(self.seq_len, s.pad, dtype=np.int64)
        ids[0] = s.cls
        ids[1 : 1 + a.size] = a
        ids[1 + a.size] = s.sep
        ids[2 + a.size : 2 + a.size + b.size] = b
        ids[n_real - 1] = s.sep
        token_types = np.zeros(self.seq_len, dtype=np.int64)
        token_types[2 + a.size : n_real] = 1
        attention = np.zeros(self.seq_len, dtype=np.int64)
        attention[:n_real] = 1
        ids, labels = self.masker(ids, rng)
        out = {"input_ids": ids, "token_type_ids": token_types, "attention_mask": attention, "labels": labels}
        if self.nsp:
            out["nsp_labels"] = np.array(int(is_random), dtype=np.int64)
        return out
