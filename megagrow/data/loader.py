"""Deterministic, world-size-independent batching: one global sample order and a cursor.

Global sample position ``g = 0, 1, 2, ...`` maps to epoch ``g // N`` and dataset index
``perm_epoch[g % N]`` with ``perm_epoch = Generator(PCG64([seed, epoch])).permutation(N)`` (identity
without shuffling); the sample is drawn with ``key = sample_key(epoch, index, N) = epoch * N + index``,
a bijection of (epoch, dataset index), so dataset randomness (BERT masks) is keyed by
(seed, epoch, index): reproducible, independent of ranks and resumes, and different every epoch.

A *global micro-batch* is the next ``micro_batch_size * world_size`` positions after the cursor;
rank ``r`` takes the ``r``-th contiguous slice of ``micro_batch_size``
(Megatron's ``MegatronPretrainingSampler``, OLMo's global indices).

An optimizer step with gradient accumulation ``A`` consumes ``A`` global micro-batches, i.e. the
global batch ``G = micro_batch_size * world_size * A`` consecutive positions. The samples of step
``s`` are therefore positions ``[s * G, (s + 1) * G)`` whatever the split of ``G`` into
micro-batch size, ranks and accumulation, and the checkpointed cursor (samples consumed) is a
global quantity: **resume on a different world size is exact as long as the global batch size is
unchanged** (with a changed ``G`` nothing is skipped or repeated, only the grouping into steps
differs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from megagrow.data.datasets import SampleDataset

log = logging.getLogger(__name__)


def sample_key(epoch: np.ndarray | int, index: np.ndarray | int, n_samples: int) -> np.ndarray | int:
    """The ``key`` a dataset draws sample ``index`` of ``epoch`` with: ``epoch * n_samples + index``.

    Unique per (epoch, index) and invertible (``divmod(key, n_samples)``); with the dataset's seed it
    makes every random choice of a sample a function of (seed, epoch, index).
    """
    return epoch * n_samples + index


def collate(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples field by field into tensors with a leading batch dimension."""
    if not samples:
        raise ValueError("collate: no samples")
    keys = samples[0].keys()
    for i, s in enumerate(samples):
        if s.keys() != keys:
            raise ValueError(f"collate: sample {i} has fields {sorted(s)} but sample 0 has {sorted(keys)}")
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in keys}


def _check_layout(micro_batch_size: int, world_size: int, rank: int, where: str) -> None:
    if micro_batch_size < 1:
        raise ValueError(f"{where}: micro_batch_size must be >= 1, got {micro_batch_size}")
    if world_size < 1:
        raise ValueError(f"{where}: world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"{where}: rank must be in [0, {world_size}), got {rank}")


class GlobalBatchLoader:
    """This rank's micro-batches of the global sample order; an infinite iterator (epochs repeat)."""

    def __init__(
        self,
        dataset: SampleDataset,
        micro_batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        shuffle: bool = True,
        cursor: int = 0,
    ):
        _check_layout(micro_batch_size, world_size, rank, "GlobalBatchLoader")
        if seed < 0:
            raise ValueError(f"GlobalBatchLoader: seed must be >= 0, got {seed}")
        if cursor < 0:
            raise ValueError(f"GlobalBatchLoader: cursor must be >= 0, got {cursor}")
        self.dataset = dataset
        self.micro_batch_size = int(micro_batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.cursor = int(cursor)
        self.n_samples = len(dataset)
        if self.n_samples < 1:
            raise ValueError("GlobalBatchLoader: the dataset is empty")
        self._fingerprint = dataset.fingerprint()
        self._perms: dict[int, np.ndarray] = {}

    @property
    def global_micro_batch_size(self) -> int:
        """Samples consumed by one call of :meth:`next_micro_batch` across all ranks."""
        return self.micro_batch_size * self.world_size

    @property
    def epoch(self) -> int:
        """Epoch of the next global position to be read."""
        return self.cursor // self.n_samples

    def _permutation(self, epoch: int) -> np.ndarray:
        """Dataset order of ``epoch``; keeps at most the two most recent epochs (a batch may straddle)."""
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(self.n_samples)
            self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1}
            self._perms[epoch] = perm
        return perm

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """Dataset indices of global sample positions (int64 array in, int64 array out)."""
        positions = np.asarray(positions, dtype=np.int64)
        offsets = positions % self.n_samples
        if not self.shuffle:
            return offsets
        epochs = positions // self.n_samples
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self._permutation(int(epoch))[offsets[sel]]
        return out

    def rank_positions(self) -> np.ndarray:
        """Global positions of this rank's next micro-batch."""
        first = self.cursor + self.rank * self.micro_batch_size
        return np.arange(first, first + self.micro_batch_size, dtype=np.int64)

    def next_micro_batch(self) -> dict[str, torch.Tensor]:
        """Collate this rank's slice of the next global micro-batch and advance the cursor past it."""
        positions = self.rank_positions()
        indices = self.indices(positions)
        keys = sample_key(positions // self.n_samples, indices, self.n_samples)
        samples = [self.dataset.get(int(i), int(k)) for i, k in zip(indices, keys, strict=True)]
        self.cursor += self.global_micro_batch_size
        return collate(samples)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_micro_batch()

    def state_dict(self) -> dict[str, Any]:
        """Global, world-size-independent loader state: samples consumed plus what must not change."""
        return {
            "cursor": self.cursor,
            "seed": self.seed,
            "fingerprint": self._fingerprint,
            "n_samples": self.n_samples,
        }

    def load_state_dict(self, state: dict[str, Any], allow_fingerprint_change: bool = False) -> str | None:
        """Resume at ``state["cursor"]``; refuses a state saved over different data or seed.

        With ``allow_fingerprint_change=True`` a different dataset (``fingerprint`` and/or
        ``n_samples``) is accepted: the cursor (samples consumed) is kept, so training continues at the
        same global position of the *new* data order, and a warning is logged and returned. A different
        seed is always refused. Returns None when nothing changed.
        """
        expected = {"seed": self.seed, "fingerprint": self._fingerprint, "n_samples": self.n_samples}
        missing = [k for k in ("cursor", *expected) if k not in state]
        if missing:
            raise ValueError(f"GlobalBatchLoader.load_state_dict: missing key(s) {missing}")
        cursor = int(state["cursor"])
        if cursor < 0:
            raise ValueError(f"GlobalBatchLoader.load_state_dict: cursor must be >= 0, got {cursor}")
        changed = [name for name, ours in expected.items() if state[name] != ours]
        tolerated = ("fingerprint", "n_samples") if allow_fingerprint_change else ()
        for name in changed:
            if name not in tolerated:
                hint = (
                    "; pass allow_fingerprint_change=True (config data.allow_fingerprint_change) to resume "
                    "on the new data anyway"
                    if name != "seed"
                    else ""
                )
                raise ValueError(
                    f"GlobalBatchLoader.load_state_dict: checkpoint {name}={state[name]!r} but this loader "
                    f"has {name}={expected[name]!r}; resuming would change the data order (different dataset, "
                    f"preprocessing or seed){hint}"
                )
        self.cursor = cursor
        if not changed:
            return None
        details = ", ".join(f"{n}: checkpoint {state[n]!r} -> now {expected[n]!r}" for n in changed)
        warning = (
            f"GlobalBatchLoader: resuming on different data ({details}) because allow_fingerprint_change=True; "
            f"keeping the cursor at {cursor} samples consumed, but the sample order from here on is not the "
            "one of the checkpointed run"
        )
        log.warning(warning)
        return warning


class EvalLoader:
    """The first ``n_samples`` of a (validation) dataset, unshuffled, as this rank's micro-batches.

    Sample ``i`` is drawn with ``key = key_offset + i`` so e.g. BERT eval masks are identical at every
    evaluation. Sharded like :class:`GlobalBatchLoader` (global micro-batch ``j`` = samples
    ``[j * mbs * world, (j + 1) * mbs * world)``, rank ``r`` its ``r``-th slice), so the union over
    ranks is the same set on any world size. ``n_samples`` must be a multiple of
    ``micro_batch_size * world_size``: every rank then runs the same number of micro-batches and no
    sample is dropped or duplicated. Re-iterable; samples are re-read each time (not cached).
    """

    def __init__(
        self,
        dataset: SampleDataset,
        micro_batch_size: int,
        n_samples: int,
        world_size: int,
        rank: int,
        key_offset: int = 0,
    ):
        _check_layout(micro_batch_size, world_size, rank, "EvalLoader")
        if not 1 <= n_samples <= len(dataset):
            raise ValueError(
                f"EvalLoader: n_samples must be in [1, {len(dataset)}] (the dataset size), got {n_samples}"
            )
        per_step = micro_batch_size * world_size
        if n_samples % per_step:
            raise ValueError(
                f"EvalLoader: n_samples={n_samples} is not a multiple of micro_batch_size * world_size = "
                f"{micro_batch_size} * {world_size} = {per_step}"
            )
        if key_offset < 0:
            raise ValueError(f"EvalLoader: key_offset must be >= 0, got {key_offset}")
        self.dataset = dataset
        self.micro_batch_size = int(micro_batch_size)
        self.n_samples = int(n_samples)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.key_offset = int(key_offset)

    def __len__(self) -> int:
        """Number of micro-batches on each rank."""
        return self.n_samples // (self.micro_batch_size * self.world_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        per_step = self.micro_batch_size * self.world_size
        for step in range(len(self)):
            first = step * per_step + self.rank * self.micro_batch_size
            indices = range(first, first + self.micro_batch_size)
            yield collate([self.dataset.get(i, self.key_offset + i) for i in indices])
