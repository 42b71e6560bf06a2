"""Map-style sample datasets: GPT packing, BERT dynamic masking, synthetic images.

Every dataset has ``__len__``, ``fingerprint()`` and ``get(index, key)``. ``key`` is a per-draw
integer chosen by the loader: ``epoch * len(dataset) + index`` (:func:`megagrow.data.loader.sample_key`),
so a sample's randomness is keyed by (seed, epoch, index). All the randomness of a sample comes from
``key`` (and the dataset's own seed), never from global RNG state, so any sample can be reproduced on
any rank after any resume.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import numpy as np

from megagrow.data.corpus import TokenCorpus
from megagrow.data.masking import IGNORE_INDEX, Masker, MaskingConfig
from megagrow.data.stream import TokenStream

__all__ = ["IGNORE_INDEX", "BERTDataset", "GPTDataset", "SampleDataset", "SyntheticImageDataset"]


@runtime_checkable
class SampleDataset(Protocol):
    """What :class:`megagrow.data.loader.GlobalBatchLoader` needs from a dataset."""

    def __len__(self) -> int: ...

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        """Sample ``index`` (``0 <= index < len``), randomised (if at all) by ``key`` only."""
        ...

    def fingerprint(self) -> str:
        """Stable hash of the data and of every parameter that changes the samples."""
        ...


def _hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _check_index(name: str, index: int, n: int) -> None:
    if not 0 <= index < n:
        raise IndexError(f"{name}: index {index} out of range [0, {n})")


class GPTDataset:
    """Concat-then-split packing over the EOS-separated stream (Megatron/OLMo style).

    Sample ``i`` is the stream window ``[i * seq_len, i * seq_len + seq_len + 1)``; ``input_ids`` is
    its first ``seq_len`` tokens and ``labels`` its last ``seq_len`` (the next-token targets).
    Consecutive samples overlap by one token so every stream token is a target exactly once.
    Deterministic: ``key`` is unused.
    """

    def __init__(self, corpus: TokenCorpus, seq_len: int):
        if seq_len < 1:
            raise ValueError(f"GPTDataset: seq_len must be >= 1, got {seq_len}")
        self.seq_len = int(seq_len)
        self.stream = TokenStream(corpus, corpus.special.eos)
        self._n = (len(self.stream) - 1) // self.seq_len
        if self._n < 1:
            raise ValueError(
                f"GPTDataset: the corpus has {len(self.stream)} tokens (EOS separators included) but one "
                f"sample of seq_len={self.seq_len} needs at least {self.seq_len + 1}"
            )
        self._fingerprint = _hash("gpt", corpus.fingerprint(), self.seq_len)

    def __len__(self) -> int:
        return self._n

    def fingerprint(self) -> str:
        return self._fingerprint

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        _check_index("GPTDataset", index, self._n)
        x = self.stream.read(index * self.seq_len, self.seq_len + 1)
        return {"input_ids": x[:-1], "labels": x[1:]}


class BERTDataset:
    """Masked-LM samples: the SEP-separated stream cut into ``[CLS] chunk [SEP]`` (no padding).

    Chunks are ``seq_len - 2`` stream tokens (RoBERTa "full-sentences"; a trailing partial chunk is
    dropped). Masking (:class:`megagrow.data.masking.Masker`: token-level, or whole-word with
    ``whole_word=True``, which needs ``corpus.word_starts()``) draws from
    ``Generator(PCG64([seed, key]))``, so masks are dynamic across epochs (the key differs) yet
    reproducible. Fields: ``input_ids``, ``token_type_ids`` (zeros), ``labels``.
    """

    def __init__(
        self,
        corpus: TokenCorpus,
        seq_len: int,
        mask_prob: float = 0.15,
        replace_mask: float = 0.8,
        replace_random: float = 0.1,
        seed: int = 0,
        whole_word: bool = False,
    ):
        if seq_len < 3:
            raise ValueError(f"BERTDataset: seq_len must be >= 3 ([CLS] + tokens + [SEP]), got {seq_len}")
        if seed < 0:
            raise ValueError(f"BERTDataset: seed must be >= 0, got {seed}")
        try:
            masking = MaskingConfig(mask_prob, replace_mask, replace_random, whole_word)
        except ValueError as e:
            raise ValueError(f"BERTDataset: {e}") from None
        self.seq_len = int(seq_len)
        self.masking = masking
        self.seed = int(seed)
        self.special = corpus.special
        self.stream = TokenStream(corpus, corpus.special.sep)
        self._chunk = self.seq_len - 2
        self._n = len(self.stream) // self._chunk
        if self._n < 1:
            raise ValueError(
                f"BERTDataset: the corpus has {len(self.stream)} tokens (SEP separators included) but one "
                f"sample of seq_len={self.seq_len} needs at least {self._chunk}"
            )
        word_starts = corpus.word_starts() if whole_word else None
        self.masker = Masker(masking, corpus.special, corpus.vocab_size, word_starts, where="BERTDataset")
        self._fingerprint = _hash(
            "bert", corpus.fingerprint(), self.seq_len, self.seed, *self.masker.fingerprint_parts()
        )

    @property
    def mask_prob(self) -> float:
        return self.masking.mask_prob

    def __len__(self) -> int:
        return self._n

    def fingerprint(self) -> str:
        return self._fingerprint

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        _check_index("BERTDataset", index, self._n)
        if key < 0:
            raise ValueError(f"BERTDataset: key must be >= 0, got {key}")
        ids = np.empty(self.seq_len, dtype=np.int64)
        ids[0] = self.special.cls
        ids[1:-1] = self.stream.read(index * self._chunk, self._chunk)
        ids[-1] = self.special.sep
        ids, labels = self.masker(ids, np.random.Generator(np.random.PCG64([self.seed, key])))
        return {"input_ids": ids, "token_type_ids": np.zeros(self.seq_len, dtype=np.int64), "labels": labels}


class SyntheticImageDataset:
    """A learnable stand-in for an image dataset (until real images are prepared).

    Class ``c`` has a fixed smooth prototype (a random ``grid x grid`` field per channel, bilinearly
    upsampled and standardised, seeded by ``(seed, c)``). Sample ``index`` has label
    ``index % num_classes`` and image = its prototype shifted by up to 2 pixels (cyclically) plus
    Gaussian noise of std ``noise_std``, both drawn from ``key``, scaled to unit variance.
    Prototypes are recomputed per sample (cheap) so memory does not grow with ``num_classes``.
    """

    _PROTOTYPE_STREAM = 0
    _SAMPLE_STREAM = 1
    _MAX_SHIFT = 2

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        in_chans: int,
        n_samples: int,
        seed: int = 0,
        noise_std: float = 1.0,
        grid: int = 6,
    ):
        for name, value, low in (
            ("num_classes", num_classes, 1),
            ("image_size", image_size, 4),
            ("in_chans", in_chans, 1),
            ("n_samples", n_samples, 1),
            ("seed", seed, 0),
            ("grid", grid, 2),
        ):
            if value < low:
                raise ValueError(f"SyntheticImageDataset: {name} must be >= {low}, got {value}")
        if noise_std < 0:
            raise ValueError(f"SyntheticImageDataset: noise_std must be >= 0, got {noise_std}")
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.in_chans = int(in_chans)
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.noise_std = float(noise_std)
        self.grid = int(grid)
        # Linear interpolation weights from `grid` control points to `image_size` pixels (rows sum to 1).
        x = np.linspace(0.0, grid - 1, self.image_size)
        self._interp = np.maximum(0.0, 1.0 - np.abs(x[:, None] - np.arange(grid)[None, :]))
        self._fingerprint = _hash(
            "synthetic-images",
            self.num_classes,
            self.image_size,
            self.in_chans,
            self.n_samples,
            self.seed,
            self.noise_std,
            self.grid,
        )

    def __len__(self) -> int:
        return self.n_samples

    def fingerprint(self) -> str:
        return self._fingerprint

    def prototype(self, label: int) -> np.ndarray:
        """The smooth, standardised float64 [C, H, W] prototype of class ``label``."""
        rng = np.random.Generator(np.random.PCG64([self.seed, self._PROTOTYPE_STREAM, label]))
        field = rng.standard_normal((self.in_chans, self.grid, self.grid))
        img = np.einsum("hi,cij,wj->chw", self._interp, field, self._interp)
        return (img - img.mean()) / img.std()

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        _check_index("SyntheticImageDataset", index, self.n_samples)
        label = index % self.num_classes
        rng = np.random.Generator(np.random.PCG64([self.seed, self._SAMPLE_STREAM, key]))
        shift = rng.integers(-self._MAX_SHIFT, self._MAX_SHIFT + 1, size=2)
        img = np.roll(self.prototype(label), shift=(int(shift[0]), int(shift[1])), axis=(1, 2))
        img += self.noise_std * rng.standard_normal(img.shape)
        img /= np.sqrt(1.0 + self.noise_std**2)
        return {"images": img.astype(np.float32), "labels": np.array(label, dtype=np.int64)}
