"""BERT masked-LM corruption: token-level or whole-word masking with the 80/10/10 replacement rule.

:class:`Masker` turns a sample's token ids into ``(input_ids, labels)`` with a caller-supplied
``numpy.random.Generator``; the datasets seed that generator from ``(seed, key)`` where the loader's
``key`` identifies (epoch, dataset index) (see :func:`megagrow.data.loader.sample_key`), so masks
are dynamic across epochs yet reproducible.

* *Candidates* are the positions holding a non-special token (never PAD/UNK/CLS/SEP/MASK/EOS).
* The *budget* is ``max(1, floor(mask_prob * n_candidates + 0.5))`` tokens (0 without candidates).
* Token-level masking chooses exactly ``budget`` candidates without replacement.
* Whole-word masking (Google BERT's ``--do_whole_word_mask``) groups candidates into words — a word
  starts at a candidate whose token is a word start (``corpus.word_starts()``, SentencePiece's ``▁``)
  or whose predecessor is not a candidate — shuffles the words and takes them greedily, skipping a
  word that would overflow the budget, so all pieces of a chosen word are masked together and the
  budget still counts tokens.
* Every chosen position independently becomes MASK with probability ``replace_mask``, a token drawn
  uniformly from the non-special vocabulary with probability ``replace_random``, else stays.

``labels`` holds the original id at chosen positions and :data:`IGNORE_INDEX` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from megagrow.data.corpus import SpecialTokens

IGNORE_INDEX = -100
"""Label value of positions that do not contribute to the loss (PyTorch's cross-entropy default)."""


@dataclass(frozen=True)
class MaskingConfig:
    """How a BERT sample is corrupted; every field is part of the dataset fingerprint."""

    mask_prob: float = 0.15
    replace_mask: float = 0.8
    replace_random: float = 0.1
    whole_word: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"MaskingConfig: mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.replace_mask < 0.0 or self.replace_random < 0.0 or self.replace_mask + self.replace_random > 1.0:
            raise ValueError(
                f"MaskingConfig: replace_mask={self.replace_mask} and replace_random={self.replace_random} must "
                "be non-negative with a sum <= 1"
            )


class Masker:
    """Applies a :class:`MaskingConfig` to 1-D int64 token arrays (see the module docstring)."""

    def __init__(
        self,
        config: MaskingConfig,
        special: SpecialTokens,
        vocab_size: int,
        word_starts: np.ndarray | None = None,
        where: str = "Masker",
    ):
        self.config = config
        self.special = special
        self._special_ids = np.array(sorted(special.ids()), dtype=np.int64)
        self._normal_ids = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), self._special_ids)
        if self._normal_ids.size == 0:
            raise ValueError(f"{where}: vocab_size={vocab_size} leaves no non-special token")
        self._word_starts: np.ndarray | None = None
        if config.whole_word:
            if word_starts is None:
                raise ValueError(
                    f"{where}: whole_word_masking=True needs corpus.word_starts() (a bool mask over the "
                    "vocabulary of word-initial pieces) but this corpus has none; re-prepare the data with a "
                    "word index or disable whole-word masking"
                )
            word_starts = np.asarray(word_starts)
            if word_starts.shape != (vocab_size,) or word_starts.dtype != np.bool_:
                raise ValueError(
                    f"{where}: word_starts must be a bool array of shape ({vocab_size},), got dtype "
                    f"{word_starts.dtype} and shape {word_starts.shape}"
                )
            self._word_starts = word_starts

    def fingerprint_parts(self) -> tuple[object, ...]:
        """What of the masking changes the samples (the word-start table only when it is used)."""
        c = self.config
        words = None if self._word_starts is None else np.packbits(self._word_starts).tobytes().hex()
        return (c.mask_prob, c.replace_mask, c.replace_random, c.whole_word, words)

    def candidates(self, ids: np.ndarray) -> np.ndarray:
        """Bool mask of the positions that may be masked (non-special tokens)."""
        return ~np.isin(ids, self._special_ids)

    def budget(self, n_candidates: int) -> int:
        """Number of tokens to mask among ``n_candidates``."""
        if n_candidates == 0:
            return 0
        return max(1, int(self.config.mask_prob * n_candidates + 0.5))

    def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(corrupted ids, labels)``; ``ids`` (int64) is not modified."""
        ids = np.array(ids, dtype=np.int64, copy=True)
        labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
        is_candidate = self.candidates(ids)
        n_mask = self.budget(int(is_candidate.sum()))
        if n_mask == 0:
            return ids, labels
        if self._word_starts is None:
            chosen = rng.choice(np.flatnonzero(is_candidate), size=n_mask, replace=False)
        else:
            chosen = self._choose_words(ids, is_candidate, n_mask, rng)
        labels[chosen] = ids[chosen]
        u = rng.random(chosen.size)
        c = self.config
        to_mask = chosen[u < c.replace_mask]
        to_random = chosen[(u >= c.replace_mask) & (u < c.replace_mask + c.replace_random)]
        ids[to_mask] = self.special.mask
        ids[to_random] = self._normal_ids[rng.integers(0, self._normal_ids.size, size=to_random.size)]
        return ids, labels

    def word_spans(self, ids: np.ndarray, is_candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, lengths)`` of the words among the candidate positions (maximal runs of a word-start
        candidate followed by non-word-start candidates)."""
        assert self._word_starts is not None
        prev_candidate = np.concatenate(([False], is_candidate[:-1]))
        begins = is_candidate & (self._word_starts[ids] | ~prev_candidate)
        starts = np.flatnonzero(begins)
        # A word runs until the next word start or the first non-candidate position after it.
        boundary = np.flatnonzero(begins | ~is_candidate)
        nxt = np.searchsorted(boundary, starts, side="right")
        ends = np.where(nxt < boundary.size, boundary[np.minimum(nxt, boundary.size - 1)], ids.size)
        return starts, ends - starts

    def _choose_words(
        self, ids: np.ndarray, is_candidate: np.ndarray, n_mask: int, rng: np.random.Generator
    ) -> np.ndarray:
        starts, lengths = self.word_spans(ids, is_candidate)
        order = rng.permutation(starts.size)
        lengths_shuffled = lengths[order]
        # Greedy in shuffled order, skipping words that overflow: a vectorised prefix, then the tail.
        total = np.cumsum(lengths_shuffled)
        n_prefix = int(np.searchsorted(total, n_mask, side="right"))
        taken = list(order[:n_prefix])
        left = n_mask - (int(total[n_prefix - 1]) if n_prefix else 0)
        for w in order[n_prefix:]:
            if left == 0:
                break
            if lengths[w] <= left:
                taken.append(w)
                left -= int(lengths[w])
        if not taken:
            return np.empty(0, dtype=np.int64)
        taken_arr = np.asarray(taken, dtype=np.int64)
        sel_starts, sel_lengths = starts[taken_arr], lengths[taken_arr]
        # Expand spans to positions: start repeated, plus 0..length-1 within each span.
        offsets = np.arange(int(sel_lengths.sum())) - np.repeat(np.cumsum(sel_lengths) - sel_lengths, sel_lengths)
        return np.repeat(sel_starts, sel_lengths) + offsets
