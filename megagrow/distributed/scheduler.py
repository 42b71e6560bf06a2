"""Rank-0 stage scheduler: every rank executes the layer maps that rank 0's plan chose.

Plans are pure functions of (seed, step, micro-step), so every rank *should* compute the same decisions;
the scheduler makes that a guarantee instead of an assumption. Once per optimizer step, rank 0 asks the
plan for the decisions of all micro-batches and broadcasts their layer maps in one small int64 tensor
(:func:`encode_layer_maps`); every rank decodes it and runs exactly those maps. The other fields of a
:class:`~megagrow.growth.plans.base.Decision` (the phase name, ``extras`` such as MSG's growth masks) are
computed locally from the plan, which is cheap and keeps arbitrary extras out of the collective. With one
rank nothing is communicated.

The debug agreement check (``distributed.check_decisions``) costs one more collective per step: it
all-reduces the minimum and the maximum of a 62-bit hash of each rank's *own* decision (phase, layer map,
extras) and of the layer map it *executes*, per micro-batch, and raises :class:`DecisionMismatchError`
naming the step, the micro-batch and every rank's decision where they differ. Rank-dependent plan output
is a bug even though the broadcast hides it from the layer maps: locally computed extras would no longer
match the executed map.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from megagrow.growth.plans.base import Decision, Plan

__all__ = ["DecisionMismatchError", "StepScheduler", "decode_layer_maps", "encode_layer_maps"]

PAD = -1
_HASH_BITS = 62  # non-negative and still representable after negation: min and -max in one all-reduce(MIN)


class DecisionMismatchError(RuntimeError):
    """Ranks computed different growth decisions (``distributed.check_decisions``)."""


def encode_layer_maps(maps: Sequence[Sequence[int]], capacity: int) -> torch.Tensor:
    """int64 ``[1 + n_micro, 1 + capacity]``: a header row ``[longest map, n_micro, -1...]``, then one row
    per micro-batch ``[length, slot_0, ..., slot_{length-1}, -1...]``. A map longer than ``capacity`` is
    not written (only the header says how long it is: :meth:`StepScheduler` then resizes and resends)."""
    if capacity < 1:
        raise ValueError(f"capacity={capacity}: must be >= 1")
    longest = max((len(m) for m in maps), default=0)
    out = torch.full((1 + len(maps), 1 + capacity), PAD, dtype=torch.int64)
    out[0, 0], out[0, 1] = longest, len(maps)
    if longest > capacity:
        return out
    for i, m in enumerate(maps, start=1):
        out[i, 0] = len(m)
        if m:
            out[i, 1:1 + len(m)] = torch.tensor([int(k) for k in m], dtype=torch.int64)
    return out


def decode_layer_maps(encoded: torch.Tensor) -> list[tuple[int, ...]]:
    """The layer maps of :func:`encode_layer_maps` (raises if the tensor is malformed or truncated)."""
    rows = encoded.cpu().tolist()
    longest, n_micro = rows[0][0], rows[0][1]
    capacity = len(rows[0]) - 1
    if n_micro != len(rows) - 1 or longest > capacity:
        raise ValueError(f"encoded layer maps: header says {n_micro} micro-batches and a longest map of {longest}, "
                         f"the tensor has {len(rows) - 1} rows of capacity {capacity}")
    return [tuple(row[1:1 + row[0]]) for row in rows[1:]]


def _canonical(value: Any) -> str:
    """A deterministic text form of decision extras (tensors by value), for hashing."""
    if isinstance(value, torch.Tensor):
        return f"T({value.dtype},{tuple(value.shape)},{value.detach().cpu().tolist()})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = ",".join(f"{f.name}={_canonical(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({inner})"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k!r}:{_canonical(value[k])}" for k in sorted(value, key=repr)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    return repr(value)


def _hash(text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - _HASH_BITS)


def decision_hash(d: Decision) -> int:
    """62-bit hash of a whole decision: phase, layer map and extras."""
    return _hash(f"{d.phase}|{tuple(d.layer_map)}|{_canonical(d.extras)}")


def layer_map_hash(layer_map: Sequence[int]) -> int:
    """62-bit hash of a layer map alone."""
    return _hash(repr(tuple(int(k) for k in layer_map)))


class StepScheduler:
    """Decisions of one optimizer step, identical on every rank (rank 0's layer maps).

    ``capacity`` is the longest layer map the broadcast tensor holds without resizing; pass the target
    depth (``model.n_layers``, the same on every rank). A longer map costs one extra broadcast in that
    step and raises the capacity for the rest of the run, on every rank alike. ``seconds`` is the time the
    last :meth:`decisions` call spent in the broadcast (0 with one rank), for the ``sched_s`` metric.
    """

    def __init__(self, plan: Plan, rank: int, world_size: int, capacity: int, check: bool = False,
                 device: torch.device | str | None = None) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} / world size {world_size}: need 0 <= rank < world_size")
        self.plan, self.rank, self.world_size = plan, rank, world_size
        self.capacity = max(1, int(capacity))
        self.check = check
        self._device = None if device is None else torch.device(device)
        self.seconds = 0.0

    @property
    def device(self) -> torch.device:
        """Where the collectives' tensors live: the current CUDA device under NCCL, else the CPU."""
        if self._device is None:
            nccl = torch.distributed.is_initialized() and torch.distributed.get_backend() == "nccl"
            self._device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        return self._device

    def decisions(self, step: int, n_micro: int) -> list[Decision]:
        """The decisions of the ``n_micro`` micro-batches of optimizer step ``step``: the local plan's,
        with rank 0's layer maps. COLLECTIVE when the world size is above 1: every rank calls it every step."""
        local = [self.plan.decide(step, micro) for micro in range(n_micro)]
        if self.world_size == 1:
            self.seconds = 0.0
            return local
        t0 = time.perf_counter()
        maps = self._broadcast_maps([d.layer_map for d in local])
        self.seconds = time.perf_counter() - t0
        executed = [d if tuple(d.layer_map) == m else replace(d, layer_map=m) for d, m in zip(local, maps, strict=True)]
        if self.check:
            self.check_agreement(step, local, executed)
        return executed

    def _broadcast_maps(self, local_maps: list[Sequence[int]]) -> list[tuple[int, ...]]:
        # Only rank 0's maps are encoded; the others' buffers (same shape) are overwritten by the broadcast.
        source = local_maps if self.rank == 0 else [()] * len(local_maps)
        buf = encode_layer_maps(source, self.capacity).to(self.device)
        torch.distributed.broadcast(buf, src=0)
        longest = int(buf[0, 0])
        if longest > self.capacity:  # rank 0 needs a wider tensor: every rank resizes, rank 0 resends
            self.capacity = longest
            buf = encode_layer_maps(source, self.capacity).to(self.device)
            torch.distributed.broadcast(buf, src=0)
        return decode_layer_maps(buf)

    def check_agreement(self, step: int, local: Sequence[Decision], executed: Sequence[Decision]) -> None:
        """COLLECTIVE. Raise :class:`DecisionMismatchError` unless every rank computed the same decisions
        (``local``) and executes the same layer maps (``executed``), micro-batch by micro-batch."""
        codes = torch.tensor([[decision_hash(d) for d in local], [layer_map_hash(d.layer_map) for d in executed]],
                             dtype=torch.int64)
        both = torch.cat([codes, -codes]).to(self.device)
        torch.distributed.all_reduce(both, op=torch.distributed.ReduceOp.MIN)
        lo, hi = both[:2].cpu(), -both[2:].cpu()
        if torch.equal(lo, hi):
            return
        # Every rank sees the same reduced values, so every rank takes this branch: the gather is safe.
        views: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(
            views, [(d.phase, tuple(d.layer_map), tuple(e.layer_map)) for d, e in zip(local, executed, strict=True)])
        kind, micro = next((k, m) for k in (1, 0) for m in range(lo.shape[1]) if lo[k, m] != hi[k, m])
        what = "execute different layer maps" if kind == 1 else "computed different decisions"
        per_rank = "; ".join(
            f"rank {r}: phase {v[micro][0]!r}, own layer map {v[micro][1]}, executed {v[micro][2]}"
            for r, v in enumerate(views))
        raise DecisionMismatchError(
            f"ranks {what} at step {step}, micro-batch {micro} (hashes min {int(lo[kind, micro])}, "
            f"max {int(hi[kind, micro])}): {per_rank}. A plan's decide() must be a pure function of "
            f"(seed, step, micro-step) and the config (distributed.check_decisions=true found this)")
