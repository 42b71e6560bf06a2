"""Streamed transitions under ZeRO-3 (``distributed.full_state: streamed``): no rank ever holds the whole state.

1. Every rank keeps its own partitions of the old state (fp32 master weights and both AdamW moments, ZeRO-3's
   layout: :func:`~megagrow.growth.trace.partition_of`) — spilled to an unlinked file on local disk by default
   (``distributed.stream_spill``), so they take no memory while the new engine exists — then the old engine is
   destroyed.
2. The operator is traced (:mod:`megagrow.growth.trace`) on every rank: a tape, no values.
3. The new model is built already partitioned (``deepspeed.zero.Init``) and its engine created with the traced
   step counts.
4. For every new parameter, in order, and for its weights and each moment: if the output is elementwise in
   sources of its own shape (a depth copy, a layer average, an interpolation), each rank computes its partition
   from its own partitions of the sources — no communication; otherwise every rank all-gathers the sources it
   needs (one tensor at a time), computes the tensor and keeps its partition. The partition is written into the
   new engine (module shard, fp32 master, moments) and everything else is dropped before the next tensor.

Peak memory above the larger engine's: the sources of one new tensor plus the tensor (with the old partitions
spilled; in memory they add 12 bytes per old parameter / W). The results are
bit-identical to the operator applied to the full state (the same kernels on the same values), so to ``rank0``
and ``replicated``. State the operator keeps for a later transition (multi-level's snapshot) is kept as
:class:`~megagrow.growth.trace.Shard` partitions (:func:`realize_kept`).

COLLECTIVE throughout: every rank traces the same operator, so every rank takes the same branch for every tensor
and joins the same gathers in the same order.
"""

from __future__ import annotations

import ctypes
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from deepspeed.utils import (
    safe_get_local_fp32_param,
    safe_get_local_optimizer_state,
    safe_set_local_fp32_param,
    safe_set_local_optimizer_state,
)

from megagrow.distributed.full_state import (
    agreed_steps,
    local_param_steps,
    partition_rank,
    relink_optimizer_state,
    seed_adam_state,
)
from megagrow.growth.trace import Key, Shard, Sym, Trace, partition_of, partition_size, symbolic_state, trace
from megagrow.state import MOMENTS, FullState

__all__ = ["OldPartitions", "StreamStats", "copy_out_partitions", "gather_kept", "gather_whole", "realize_kept",
           "shard_kept", "stream_into", "trace_operator", "trim_memory"]


class OldPartitions:
    """This rank's partitions of the old state, keyed like a trace's sources (``("params", name)``, moments): in
    memory, or spilled to an unlinked file on local disk (``spill_dir``) and read back one tensor at a time with
    plain reads (not mapped, so what was read is not kept resident), so that the old state does not occupy memory
    while the new engine exists."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], steps: dict[str, int], with_moments: bool, rank: int,
                 world: int, spill_dir: Path | None) -> None:
        self.shapes, self.steps, self.with_moments, self.rank, self.world = shapes, steps, with_moments, rank, world
        self._mem: dict[Key, torch.Tensor] = {}
        self._where: dict[Key, tuple[int, int, torch.dtype]] = {}  # key -> (byte offset, numel, dtype)
        self._file = None
        if spill_dir is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=spill_dir, prefix=f"transition-rank{rank}-")  # noqa: SIM115

    def put(self, key: Key, t: torch.Tensor) -> None:
        if self._file is None:
            self._mem[key] = t.detach()  # a view of the old engine's flat group: kept alive, not copied
            return
        t = t.detach().contiguous().cpu()
        self._where[key] = (self._file.tell(), t.numel(), t.dtype)
        t.numpy().tofile(self._file)

    def get(self, key: Key) -> torch.Tensor:
        """This rank's partition of source ``key`` (a tensor the caller may keep or drop)."""
        if self._file is None:
            return self._mem[key]
        offset, numel, dtype = self._where[key]
        out = torch.empty(numel, dtype=dtype)
        self._file.seek(offset)
        view = memoryview(out.numpy()).cast("B")
        if self._file.readinto(view) != len(view):
            raise OSError(f"streamed transition: short read of {key} from the spill file")
        return out

    def numel(self, key: Key) -> int:
        return self._mem[key].numel() if self._file is None else self._where[key][1]

    def close(self) -> None:
        self._mem.clear()
        if self._file is not None:
            self._file.close()  # unlinked already: the space is freed now (or when the process dies)
            self._file = None


@dataclass
class StreamStats:
    """What one streamed transition did on this rank."""

    tensors: int = 0  # new tensors written (weights and moments)
    local: int = 0  # of which computed from this rank's partitions alone
    gathered_sources: int = 0  # source tensors all-gathered
    # the largest source group one new tensor needed on this rank: whole sources on its owner, or this rank's
    # partitions of them for an elementwise tensor
    peak_group_bytes: int = 0


_TRIM_EVERY = 256 * 2**20  # bytes of partitions streamed between two hand-backs of freed memory


def trim_memory() -> None:
    """Hand the allocator's cached free memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere). Blocks
    freed during a transition — the partitions read, computed and dropped one after another, the per-parameter
    partitions ``zero.Init`` allocates and DeepSpeed copies into its flat buffers — are mostly too small for glibc
    to unmap on free, and would otherwise stay resident (measured: 1.6 GB per rank growing a 277M GPT to 504M)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def copy_out_partitions(engine, spill_dir: Path | None = None) -> OldPartitions:
    """COLLECTIVE (the step counts). This rank's fp32 partitions of every parameter and moment of a ZeRO-3 engine,
    copied out so that they outlive it: into memory, or (``spill_dir``) into an unlinked file there."""
    if engine.zero_optimization_stage() != 3:
        raise ValueError("distributed.full_state=streamed needs ZeRO-3 (distributed.zero_stage=3): the other stages "
                         "keep whole parameters on every rank, so there is nothing to stream")
    rank, world = _world()
    steps = agreed_steps(local_param_steps(engine), engine.device)
    with_moments = max((s for s in steps.values() if s is not None), default=0) > 0
    if with_moments:
        relink_optimizer_state(engine)
    shapes = {name: tuple(p.ds_shape) for name, p in engine.module.named_parameters()}
    old = OldPartitions(shapes, {n: 0 if s is None else s for n, s in steps.items()}, with_moments, rank, world,
                        spill_dir)
    for name, p in engine.module.named_parameters():
        _check_layout(name, p, world)
        old.put(("params", name), safe_get_local_fp32_param(p).float())  # views of the flat groups
        if with_moments:
            for m in MOMENTS:
                old.put((m, name), safe_get_local_optimizer_state(p, m).float())
    return old


def _check_layout(name: str, p: torch.nn.Parameter, world: int) -> None:
    """ZeRO-3 must hold the layout :func:`partition_of` assumes (no hierarchical partitioning)."""
    part = partition_size(p.ds_numel, world)
    if p.ds_tensor.ds_numel != part or partition_rank(p) != dist.get_rank():
        raise RuntimeError(f"streamed transition: {name} is partitioned as {p.ds_tensor.ds_numel} elements on "
                           f"partition {partition_rank(p)}, expected {part} on rank {dist.get_rank()} (ZeRO-3 with "
                           "zero_hpz_partition_size > 1 is not supported; use distributed.full_state=rank0)")


def trace_operator(operator: Callable[[FullState], FullState], old: OldPartitions) -> Trace:
    """The operator traced on the old state's shapes, moments and step counts (every rank, no communication)."""
    return trace(operator, lambda t: symbolic_state(t, old.shapes, old.with_moments, old.steps))


class _Sources:
    """Source tensors for one trace on this rank: its own partitions, or whole tensors gathered to one rank.

    Collectives run on ``device`` (the engine's: NCCL needs device tensors); the replay runs on the CPU."""

    def __init__(self, t: Trace, old: OldPartitions, stats: StreamStats, device: torch.device) -> None:
        self.t, self.old, self.stats, self.device = t, old, stats, device

    def local(self, key: Key) -> torch.Tensor:
        if key[0] == "shard":
            return self.t.shards[key].local
        return self.old.get(key)

    def local_numel(self, key: Key) -> int:
        return self.t.shards[key].local.numel() if key[0] == "shard" else self.old.numel(key)

    def gather_to(self, key: Key, owner: int) -> torch.Tensor | None:
        """COLLECTIVE: the whole source tensor on rank ``owner`` (None on the others), from every rank's
        partition."""
        whole = gather_whole(self.local(key), tuple(self.t.leaves[key].shape), owner, self.old.rank, self.old.world,
                             self.device)
        if whole is not None:
            self.stats.gathered_sources += 1
        return whole


def gather_whole(local: torch.Tensor, shape: tuple[int, ...], owner: int, rank: int, world: int,
                 device: torch.device) -> torch.Tensor | None:
    """COLLECTIVE: the whole fp32 tensor of ``shape`` on rank ``owner`` (a CPU tensor; None on the others) from
    every rank's partition ``local`` (:func:`~megagrow.growth.trace.partition_of`'s layout), gathered on
    ``device``."""
    local = local.to(device, torch.float32).contiguous()
    mine = rank == owner
    bufs = [torch.empty_like(local) for _ in range(world)] if mine else None
    if world > 1:
        dist.gather(local, bufs, dst=owner)
    elif bufs is not None:
        bufs = [local]
    if bufs is None:
        return None
    return torch.cat(bufs)[: math.prod(shape)].view(shape).cpu()


def _value(t: Trace, sym: torch.Tensor, src: _Sources, part: int, owner: int, need_full: bool
           ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(whole tensor when need_full else None, this rank's partition)`` of output ``sym``.

    Elementwise in sources of its own layout: every rank computes its partition from its own partitions. Else rank
    ``owner`` gathers the sources (one at a time, in replay order, each dropped after its last use), computes the
    tensor and scatters the partitions (``need_full``: every rank gets the whole tensor instead)."""
    rank, world = src.old.rank, src.old.world
    numel = sym.numel()
    plan = t.local_plan(sym) if isinstance(sym, Sym) and not need_full else None
    if plan is not None and all(src.local_numel(k) == part for k in plan.sources):
        held = sum(src.local_numel(k) for k in plan.sources) * 4  # this rank's partitions of the sources
        src.stats.peak_group_bytes = max(src.stats.peak_group_bytes, held)
        value = t.compute_slice(sym, plan, src.local, part)
        valid = max(0, min(part, numel - rank * part))
        local = torch.zeros(part, dtype=torch.float32)  # the padding of the last partitions: zeros, as rank0's
        local[:valid] = value[:valid]
        src.stats.local += 1
        return None, local
    keys = t.sources(sym)
    whole: torch.Tensor | None = None
    if rank == owner:
        group = sum(src.local_numel(k) * world * 4 for k in keys)  # fp32, held at most at once
        src.stats.peak_group_bytes = max(src.stats.peak_group_bytes, group)
        whole = t.compute(sym, lambda k: src.gather_to(k, owner)).to(torch.float32).contiguous()
    else:
        for k in keys:  # the owner's replay gathers them in this order
            src.gather_to(k, owner)
    if need_full:
        buf = whole.to(src.device) if whole is not None else torch.empty(tuple(sym.shape), device=src.device)
        if world > 1:
            dist.broadcast(buf, owner)
        whole = buf.cpu()
        return whole, partition_of(whole, rank, world)
    out = torch.empty(part, dtype=torch.float32, device=src.device)
    parts = ([partition_of(whole, r, world).to(src.device) for r in range(world)] if whole is not None else None)
    if world > 1:
        dist.scatter(out, parts, src=owner)
    else:
        out.copy_(parts[0])
    del whole, parts
    return None, out.cpu()


@torch.no_grad()
def stream_into(engine, t: Trace, old: OldPartitions) -> StreamStats:
    """COLLECTIVE. Write the traced result into ``engine`` (ZeRO-3, built partitioned with the result's steps), one
    new tensor at a time (see the module docstring)."""
    assert t.result is not None
    result = t.result
    shapes = {n: tuple(p.ds_shape) for n, p in engine.module.named_parameters()}
    result.check_against(shapes, "streamed transition")
    stats = StreamStats()
    src = _Sources(t, old, stats, engine.device)
    with_moments = result.has_optimizer_state()
    index = 0  # the owner of the k-th gathered tensor is rank k mod W
    streamed = 0
    if with_moments:
        seed_adam_state(engine, result.steps())
    for name, p in engine.module.named_parameters():
        _check_layout(name, p, old.world)
        part = p.ds_tensor.ds_numel
        persistent = p.data.numel() == p.ds_numel  # materialized whole on every rank (small, persistent)
        for table in ("params", *MOMENTS) if with_moments else ("params",):
            sym = getattr(result, table)[name]
            full, local = _value(t, sym, src, part, index % old.world, need_full=persistent and table == "params")
            index += 1
            if table == "params":
                p.ds_tensor.data.copy_(local.to(p.ds_tensor.dtype))
                if persistent:
                    assert full is not None
                    p.data.copy_(full.view_as(p.data))
                safe_set_local_fp32_param(p, local)
            else:
                safe_set_local_optimizer_state(p, local, table)
            stats.tensors += 1
            streamed += part * 4
            if streamed >= _TRIM_EVERY:
                trim_memory()
                streamed = 0
            del full, local
    return stats


@torch.no_grad()
def realize_kept(t: Trace, kept: Mapping[str, torch.Tensor], old: OldPartitions,
                 device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """COLLECTIVE. Plan state the traced operator kept (``kept``: the plan's tensors; symbolic ones are of this
    trace) as :class:`Shard` partitions of this rank; other entries unchanged. Call it after :func:`stream_into`
    (the sources are the same partitions)."""
    src = _Sources(t, old, StreamStats(), device or torch.device("cpu"))
    out: dict[str, torch.Tensor] = {}
    for index, (key, value) in enumerate(kept.items()):
        if isinstance(value, Sym) and value.trace is t:
            part = partition_size(value.numel(), old.world)
            _, local = _value(t, value, src, part, index % old.world, need_full=False)
            out[key] = Shard(local, tuple(value.shape), old.rank, old.world)
        else:
            out[key] = value
    return out


@torch.no_grad()
def gather_kept(kept: Mapping[str, torch.Tensor], device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """COLLECTIVE. This rank's share of the whole values of the :class:`Shard` entries of ``kept`` (sorted by key;
    the ``i``-th goes to rank ``i mod W``, as a checkpoint's parameters), gathered one at a time."""
    device = device or torch.device("cpu")
    out: dict[str, torch.Tensor] = {}
    shards = sorted(((k, v) for k, v in kept.items() if isinstance(v, Shard)), key=lambda kv: kv[0])
    for index, (key, shard) in enumerate(shards):
        whole = gather_whole(shard.local, tuple(shard.shape), index % shard.world, shard.rank, shard.world, device)
        if whole is not None:
            out[key] = whole
    return out


def shard_kept(kept: Mapping[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """Whole plan tensors (read from a checkpoint) as this rank's :class:`Shard` partitions."""
    return {k: Shard(partition_of(v.float() if v.is_floating_point() else v, rank, world), tuple(v.shape), rank,
                     world) for k, v in kept.items()}
