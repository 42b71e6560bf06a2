"""Streaming a growth operator: trace it once on symbolic tensors, then compute any one output tensor from only
the source tensors it reads.

Growth operators are plain functions ``FullState -> FullState`` (:mod:`megagrow.growth.ops`). To transition a
model whose state does not fit one host, :func:`trace` runs the operator on a ``FullState`` of *symbolic* source
tensors (:class:`Sym`: a shape and a dtype, no data). Every torch operation the operator performs is recorded
on a tape (an ``aten`` op with its arguments) instead of being computed, so the result is a ``FullState`` of
symbolic outputs plus the step counts, which operators compute from metadata only. Then, for each output:

- :meth:`Trace.sources` — the source tensors (``(table, name)``: ``("params", "blocks.3.attn.qkv.weight")``,
  ``("exp_avg", ...)``) it depends on;
- :meth:`Trace.compute` — its value, replaying only the tape entries it depends on with the real sources
  (fetched on demand, dropped after their last use). The same kernels run on the same inputs as when the
  operator runs on a real state, so the result is bit-identical;
- :meth:`Trace.local_plan` — whether it is *elementwise* in its sources (a depth copy, an average of layers of
  the same shape, an interpolation): then any contiguous slice of the output is the same ops on the same slice
  of each source (:meth:`Trace.compute_slice`), which is what lets a ZeRO-3 rank compute its own partition of
  the new tensor from its own partitions of the old ones, with no communication. Only ops that round each
  element the same way whatever the slice are admitted (IEEE ``+ - * /``, ``sqrt``, squaring, copies).

What the tracer cannot follow raises :class:`NotStreamable` naming the op: reading a value of the state into
Python (``.item()``, ``.tolist()``, ``if t.any()``), or writing a value computed from the state into a tensor
created outside the operator. Random draws (``generator=``) run for real at trace time, so the generator
advances as without tracing: integer draws (unit maps, permutations) stay real constants the operator may read,
floating-point ones (a fresh layer's initialization) are redrawn at replay from the generator state saved
before them. Factories (``torch.zeros``...) are deferred like any other op.

Only torch here (no distribution): :mod:`megagrow.distributed.streamed` walks the new model's tensors and feeds
:meth:`Trace.compute` with gathered or local shards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from megagrow.state import MOMENTS, FullState, with_steps

aten = torch.ops.aten

#: ``(table, name)``: table ``params``, ``exp_avg`` or ``exp_avg_sq``; or any key a caller gives :func:`leaf`.
Key = tuple[str, str]
TABLES = ("params", *MOMENTS)

# Ops whose result reads no value of their tensor argument, only its shape (a zero moment must not make
# the output depend on the parameter it is shaped like).
_LIKE = {aten.zeros_like.default, aten.empty_like.default, aten.ones_like.default, aten.full_like.default,
         aten.rand_like.default, aten.randn_like.default}
_NEW = {aten.new_zeros.default, aten.new_empty.default, aten.new_ones.default, aten.new_full.default}

# Ops that move a tensor's value into Python: the traced operator would branch on data it does not have.
_READS = {aten._local_scalar_dense.default, aten.equal.default, aten.is_nonzero.default}

# Elementwise ops whose every output element depends only on the same element of each input and is rounded
# the same way wherever it sits in the tensor (so a slice computed alone equals that slice of the whole).
_ELEMENTWISE = {
    aten.add.Tensor, aten.add.Scalar, aten.sub.Tensor, aten.sub.Scalar, aten.mul.Tensor, aten.mul.Scalar,
    aten.div.Tensor, aten.div.Scalar, aten.neg.default, aten.sqrt.default, aten.rsub.Scalar, aten.rsub.Tensor,
    aten.add_.Tensor, aten.add_.Scalar, aten.sub_.Tensor, aten.mul_.Tensor, aten.mul_.Scalar, aten.div_.Tensor,
    aten.div_.Scalar, aten.sqrt_.default, aten.neg_.default,
    aten.clone.default, aten.detach.default, aten.alias.default, aten._to_copy.default, aten.copy_.default,
    aten.zero_.default, aten.fill_.Scalar, aten.lift_fresh.default,
}
_SQUARE = {aten.pow.Tensor_Scalar, aten.pow_.Scalar}  # elementwise when the exponent is 2 (x * x)


class NotStreamable(RuntimeError):
    """The operator does something a trace cannot defer (named in the message)."""


class Sym(torch.Tensor):
    """A symbolic tensor of a trace: shape, strides and dtype (a meta tensor) and the id of the value it
    stands for; no data. Any op on it outside its trace is an error."""

    __torch_function__ = torch._C._disabled_torch_function_impl
    meta: torch.Tensor
    vid: int
    storage_id: int
    trace: Trace

    @staticmethod
    def __new__(cls, meta: torch.Tensor, vid: int, storage_id: int, trace: Trace) -> Sym:
        r = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, meta.shape, strides=meta.stride(), storage_offset=meta.storage_offset(), dtype=meta.dtype,
            device=torch.device("cpu"), requires_grad=False)
        r.meta, r.vid, r.storage_id, r.trace = meta, vid, storage_id, trace
        return r

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        raise NotStreamable(f"{func} on a traced tensor outside its trace (a symbolic tensor escaped the "
                            "operator; compute it with Trace.compute)")

    def data_ptr(self) -> int:  # type: ignore[override]
        """Distinct per traced storage and offset, so aliasing checks (``data_ptr`` + shape + strides) work."""
        return (self.storage_id << 40) + self.storage_offset() * self.element_size() + 1

    def __repr__(self) -> str:  # type: ignore[override]
        return f"Sym(v{self.vid}, shape={tuple(self.shape)}, dtype={self.dtype})"


def partition_size(numel: int, world: int) -> int:
    """Elements of one rank's partition of a ``numel``-element tensor in ZeRO-3's layout (flattened, padded with
    zeros to a multiple of ``world``, rank ``r`` holding elements ``[r * part, (r + 1) * part)``)."""
    return -(-numel // world)


def partition_of(full: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s partition of ``full`` (1-D, zero-padded), a new tensor."""
    part = partition_size(full.numel(), world)
    flat = full.detach().reshape(-1)
    local = torch.zeros(part, dtype=full.dtype)
    start = min(part * rank, flat.numel())
    mine = flat[start:start + part]
    local[: mine.numel()] = mine
    return local


class Shard(torch.Tensor):
    """A full tensor of which this rank holds one partition (:func:`partition_of`): state a streamed transition
    keeps across phases (multi-level's pre-coalescing snapshot) without any rank holding all of it. A trace
    reads it as a source (key ``("shard", ...)``); anything else must gather it first."""

    __torch_function__ = torch._C._disabled_torch_function_impl
    local: torch.Tensor
    rank: int
    world: int

    @staticmethod
    def __new__(cls, local: torch.Tensor, shape: tuple[int, ...], rank: int, world: int) -> Shard:
        numel = 1
        for d in shape:
            numel *= d
        if local.dim() != 1 or local.numel() != partition_size(numel, world):
            raise ValueError(f"Shard: a partition of a {tuple(shape)} tensor over {world} ranks has "
                             f"{partition_size(numel, world)} elements, got {tuple(local.shape)}")
        r = torch.Tensor._make_wrapper_subclass(cls, shape, dtype=local.dtype, device=torch.device("cpu"),  # type: ignore[attr-defined]
                                                requires_grad=False)
        r.local, r.rank, r.world = local, rank, world
        return r

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        raise NotStreamable(f"{func} on a sharded tensor (this rank holds one partition); gather it first")

    def __repr__(self) -> str:  # type: ignore[override]
        return f"Shard(shape={tuple(self.shape)}, rank {self.rank} of {self.world})"


@dataclass(frozen=True)
class _Ref:
    """A traced value in a recorded node's arguments."""

    vid: int


@dataclass
class _Node:
    func: Any  # an aten OpOverload; None for a leaf
    args: Any = ()  # pytree of arguments, Sym replaced by _Ref
    kwargs: Any = field(default_factory=dict)
    outs: tuple[int, ...] = ()  # value ids produced (an in-place op: the written argument's)
    deps: frozenset[int] = frozenset()  # indexes of the nodes whose results it reads
    leaf: Key | None = None
    gen_state: torch.Tensor | None = None  # a random draw: the generator state before it


@dataclass(frozen=True)
class LocalPlan:
    """How to compute any contiguous slice of one output elementwise: the nodes to replay, in order."""

    nodes: tuple[int, ...]
    sources: tuple[Key, ...]


class Trace:
    """The tape of one traced operator and its symbolic result (:func:`trace`)."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.meta: dict[int, torch.Tensor] = {}  # value id -> meta tensor (shape, strides, dtype)
        self.storage: dict[int, int] = {}  # value id -> storage id
        self.producer: dict[int, int] = {}  # value id -> node index
        self.last_writer: dict[int, int] = {}  # storage id -> last node that wrote it (so far)
        self.leaves: dict[Key, Sym] = {}
        self.shards: dict[Key, Shard] = {}  # sharded inputs the operator read (plan state), by leaf key
        self.leaf_storages: set[int] = set()
        self.result: FullState | None = None
        self._vids = itertools.count()
        self._storages = itertools.count(1)

    # ------------------------------------------------------------------------------------------- recording

    def leaf(self, key: Key, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Sym:
        """A source tensor (``key``, its full shape): fetched from the caller at replay."""
        if key in self.leaves:
            return self.leaves[key]
        sym = self._new_value(torch.empty(shape, dtype=dtype, device="meta"), None)
        self._record(_Node(None, outs=(sym.vid,), leaf=key), (sym,), writes=())
        self.leaves[key] = sym
        self.leaf_storages.add(sym.storage_id)
        return sym

    def _new_value(self, meta: torch.Tensor, storage: int | None) -> Sym:
        vid = next(self._vids)
        sid = next(self._storages) if storage is None else storage
        self.meta[vid], self.storage[vid] = meta, sid
        return Sym(meta, vid, sid, self)

    def _record(self, node: _Node, outs: tuple[Sym, ...], writes: tuple[Sym, ...], reads: tuple[Sym, ...] = ()
                ) -> None:
        deps = {self.producer[s.vid] for s in reads}
        deps |= {self.last_writer[s.storage_id] for s in reads if s.storage_id in self.last_writer}
        node.deps = frozenset(deps)
        index = len(self.nodes)
        self.nodes.append(node)
        for s in outs:
            self.producer.setdefault(s.vid, index)
        for s in writes:
            self.last_writer[s.storage_id] = index

    # ---------------------------------------------------------------------------------------------- queries

    def outputs(self) -> Iterator[tuple[str, str, torch.Tensor]]:
        """``(table, name, tensor)`` of the result, tables in :data:`TABLES` order; a tensor is a :class:`Sym`,
        or a real constant the operator made without reading the state."""
        assert self.result is not None
        for table in TABLES:
            for name, t in getattr(self.result, table).items():
                yield table, name, t

    def _final_nodes(self, sym: Sym) -> set[int]:
        start = {self.producer[sym.vid]}
        if sym.storage_id in self.last_writer:
            start.add(self.last_writer[sym.storage_id])
        needed: set[int] = set()
        stack = list(start)
        while stack:
            i = stack.pop()
            if i not in needed:
                needed.add(i)
                stack.extend(self.nodes[i].deps)
        return needed

    def sources(self, t: torch.Tensor) -> list[Key]:
        """The source tensors output ``t`` depends on (tape order); none for a constant."""
        if not isinstance(t, Sym):
            return []
        return [n.leaf for i in sorted(self._final_nodes(t)) if (n := self.nodes[i]).leaf is not None]

    def compute(self, t: torch.Tensor, fetch: Callable[[Key], torch.Tensor]) -> torch.Tensor:
        """The value of output ``t``; ``fetch(key)`` gives a source tensor (full, as its leaf's shape)."""
        if not isinstance(t, Sym):
            return t
        order = sorted(self._final_nodes(t))
        return self._replay(order, t.vid, lambda node: fetch(node.leaf))

    def local_plan(self, t: torch.Tensor) -> LocalPlan | None:
        """If ``t`` is elementwise in its sources (see the module docstring), how to compute a slice of it."""
        if not isinstance(t, Sym) or not self.meta[t.vid].is_contiguous():
            return None
        shape = tuple(self.meta[t.vid].shape)
        order = sorted(self._final_nodes(t))
        for i in order:
            if not self._elementwise(self.nodes[i], shape):
                return None
        return LocalPlan(tuple(order), tuple(self.nodes[i].leaf for i in order if self.nodes[i].leaf is not None))

    def compute_slice(self, t: Sym, plan: LocalPlan, fetch: Callable[[Key], torch.Tensor], numel: int
                      ) -> torch.Tensor:
        """A 1-D slice of ``numel`` elements of output ``t`` from the same slice of each source
        (``fetch(key)``: that slice of the source, 1-D)."""
        local = torch.empty(numel, dtype=self.meta[t.vid].dtype, device="meta")
        shapes = {tuple(self.meta[t.vid].shape)}

        def shrink(x: Any) -> Any:
            if isinstance(x, torch.Tensor) and x.device.type == "meta" and tuple(x.shape) in shapes:
                return local.to(x.dtype)
            return x

        return self._replay(list(plan.nodes), t.vid, lambda node: fetch(node.leaf), rewrite=shrink)

    def _elementwise(self, node: _Node, shape: tuple[int, ...]) -> bool:
        if node.leaf is not None:
            return tuple(self.meta[node.outs[0]].shape) == shape and self.meta[node.outs[0]].is_contiguous()
        if node.gen_state is not None:
            return False
        func = node.func
        if func in _LIKE:
            return tuple(node.args[0].shape) == shape and node.args[0].is_contiguous()
        if func in _SQUARE:
            if node.args[1] != 2:
                return False
        elif func not in _ELEMENTWISE:
            return False
        flat, _ = tree_flatten((node.args, node.kwargs))
        for x in flat:
            if isinstance(x, _Ref):
                m = self.meta[x.vid]
                if tuple(m.shape) != shape or not m.is_contiguous():
                    return False
            elif isinstance(x, torch.Tensor) and x.dim() > 0:
                return False  # a real constant of more than one element (a bias vector broadcast, an index)
            elif isinstance(x, torch.memory_format) and x not in (torch.preserve_format, torch.contiguous_format):
                return False
        return all(tuple(self.meta[v].shape) == shape and self.meta[v].is_contiguous() for v in node.outs)

    # ----------------------------------------------------------------------------------------------- replay

    def _replay(self, order: list[int], target: int, leaf_value: Callable[[_Node], torch.Tensor],
                rewrite: Callable[[Any], Any] | None = None) -> torch.Tensor:
        last_use: dict[int, int] = {}
        for i in order:
            flat, _ = tree_flatten((self.nodes[i].args, self.nodes[i].kwargs))
            for x in flat:
                if isinstance(x, _Ref):
                    last_use[x.vid] = i
        env: dict[int, torch.Tensor] = {}
        for i in order:
            node = self.nodes[i]
            if node.leaf is not None:
                env[node.outs[0]] = leaf_value(node)
            else:
                args, kwargs = node.args, node.kwargs
                if rewrite is not None:
                    args, kwargs = tree_map(rewrite, (args, kwargs))
                args, kwargs = tree_map(lambda x: env[x.vid] if isinstance(x, _Ref) else x, (args, kwargs))
                if node.gen_state is not None:
                    gen = torch.Generator()
                    gen.set_state(node.gen_state)
                    kwargs = {**kwargs, "generator": gen}
                out = node.func(*args, **kwargs)
                outs = list(out) if isinstance(out, (tuple, list)) else [out]
                for vid, value in zip(node.outs, (o for o in outs if isinstance(o, torch.Tensor)), strict=True):
                    env[vid] = value
            for vid in [v for v, last in last_use.items() if last == i and v != target]:
                env.pop(vid, None)
        return env[target]


class _Recorder(TorchDispatchMode):
    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.t = trace

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206, C901
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if any(isinstance(x, Shard) or (isinstance(x, Sym) and x.trace is not self.t) for x in flat):
            args, kwargs = tree_map(self._source, (args, kwargs))
            flat, _ = tree_flatten((args, kwargs))
        syms = tuple(x for x in flat if isinstance(x, Sym))
        if func in _READS and syms:
            raise NotStreamable(f"the operator reads the value of a traced tensor into Python ({func}); it cannot "
                                "be streamed")
        if not syms:
            return self._untraced(func, flat, args, kwargs)
        if func in _LIKE or func in _NEW:  # shape only: a factory, no dependency on the argument's values
            margs = tree_map(lambda x: x.meta if isinstance(x, Sym) else x, args)
            mkw = {**kwargs, "device": torch.device("meta")}
            out = self.t._new_value(func(*margs, **mkw), None)
            self.t._record(_Node(func, margs, {**kwargs, "device": torch.device("cpu")}, outs=(out.vid,)),
                           (out,), writes=(out,))
            return out
        return self._traced(func, syms, args, kwargs)

    def _source(self, x: Any) -> Any:
        """A sharded input becomes a source of this trace; a symbolic tensor of another trace is an error."""
        if isinstance(x, Shard):
            key = ("shard", str(id(x)))
            self.t.shards[key] = x
            return self.t.leaf(key, tuple(x.shape), x.dtype)
        if isinstance(x, Sym) and x.trace is not self.t:
            raise NotStreamable("the operator reads a symbolic tensor of another trace (state kept from an "
                                "earlier transition must be realized, e.g. as a Shard)")
        return x

    def _untraced(self, func, flat, args, kwargs):  # noqa: ANN001, ANN202
        if any(isinstance(x, torch.Tensor) for x in flat):
            return func(*args, **kwargs)  # ops on real constants (index maps, counts) stay real
        returns = func._schema.returns
        if len(returns) != 1 or str(returns[0].type) != "Tensor":
            return func(*args, **kwargs)
        gen = kwargs.get("generator")
        if gen is not None:  # a random draw runs for real: the generator advances as without tracing
            state = gen.get_state()
            out = func(*args, **kwargs)
            if not out.is_floating_point():
                return out  # integer draws (permutations, unit maps) are read by the operator: real constants
            sym = self.t._new_value(out.to("meta"), None)
            del out  # redrawn at replay from the saved state
            self.t._record(_Node(func, args, {k: v for k, v in kwargs.items() if k != "generator"},
                                 outs=(sym.vid,), gen_state=state), (sym,), writes=(sym,))
            return sym
        # a factory (zeros, empty, full, ones): deferred, so a value of the state can be written into it
        meta = func(*args, **{**kwargs, "device": torch.device("meta")})
        sym = self.t._new_value(meta, None)
        self.t._record(_Node(func, args, kwargs, outs=(sym.vid,)), (sym,), writes=(sym,))
        return sym

    def _traced(self, func, syms, args, kwargs):  # noqa: ANN001, ANN202
        schema = func._schema
        written: list[Sym] = []
        for i, a in enumerate(schema.arguments):
            if a.alias_info is not None and a.alias_info.is_write:
                value = args[i] if i < len(args) else kwargs.get(a.name)
                if isinstance(value, torch.Tensor) and not isinstance(value, Sym):
                    raise NotStreamable(f"{func} writes a value computed from the state into a tensor created "
                                        "outside the operator; create it inside (e.g. torch.zeros_like)")
                if isinstance(value, Sym):
                    if value.storage_id in self.t.leaf_storages:
                        raise NotStreamable(f"{func} modifies the operator's input in place; an operator must "
                                            "return new tensors")
                    written.append(value)

        def to_meta(x: Any) -> Any:
            if isinstance(x, Sym):
                return x.meta
            if isinstance(x, torch.Tensor):
                return x.to("meta")
            if isinstance(x, torch.device):
                return torch.device("meta")
            return x

        margs, mkw = tree_map(to_meta, (args, kwargs))
        mout = func(*margs, **mkw)
        single = not isinstance(mout, (tuple, list))
        mouts = [mout] if single else list(mout)
        outs: list[Any] = []
        for j, m in enumerate(mouts):
            if not isinstance(m, torch.Tensor):
                outs.append(m)
                continue
            ret = schema.returns[min(j, len(schema.returns) - 1)]
            alias = ret.alias_info
            if alias is not None and alias.is_write:  # in-place / out=: the written argument itself
                target = self._argument_with(schema, args, kwargs, alias)
                outs.append(written[0] if target is None else target)
                continue
            storage = None
            if alias is not None:  # a view: shares the aliased argument's storage
                base = self._argument_with(schema, args, kwargs, alias)
                storage = base.storage_id if isinstance(base, Sym) else None
                if base is not None and not isinstance(base, Sym):
                    raise NotStreamable(f"{func}: a view of a tensor created outside the operator")
            outs.append(self.t._new_value(m, storage))
        rec_args = tree_map(lambda x: _Ref(x.vid) if isinstance(x, Sym) else x, (args, kwargs))
        self.t._record(_Node(func, rec_args[0], rec_args[1], outs=tuple(o.vid for o in outs if isinstance(o, Sym))),
                       tuple(o for o in outs if isinstance(o, Sym)), writes=tuple(written), reads=syms)
        return outs[0] if single else type(mout)(outs)

    @staticmethod
    def _argument_with(schema, args, kwargs, alias) -> Any:  # noqa: ANN001
        for i, a in enumerate(schema.arguments):
            if a.alias_info is not None and a.alias_info.before_set == alias.before_set:
                return args[i] if i < len(args) else kwargs.get(a.name)
        return None


def symbolic_state(t: Trace, shapes: dict[str, tuple[int, ...]], with_moments: bool, steps: dict[str, int]
                   ) -> FullState:
    """A ``FullState`` of source leaves: ``shapes`` (every parameter's full shape), the moments when
    ``with_moments``, and every parameter's step count."""
    params = {n: t.leaf(("params", n), s) for n, s in shapes.items()}
    moments = {m: {n: t.leaf((m, n), s) for n, s in shapes.items()} if with_moments else {} for m in MOMENTS}
    return with_steps(params, moments["exp_avg"], moments["exp_avg_sq"], steps)


def trace(operator: Callable[[FullState], FullState], source: FullState | Callable[[Trace], FullState]) -> Trace:
    """Run ``operator`` on symbolic tensors and record it. ``source``: a state whose tensors are this trace's
    leaves — a callable building it on the trace (e.g. ``lambda t: symbolic_state(t, ...)``)."""
    t = Trace()
    state = source(t) if callable(source) else source
    with _Recorder(t):
        result = operator(state)
    if not isinstance(result, FullState):
        raise TypeError(f"trace: the operator returned {type(result).__name__}, not a FullState")
    t.result = result
    return t


__all__ = ["Key", "LocalPlan", "NotStreamable", "Shard", "Sym", "TABLES", "Trace", "partition_of", "partition_size",
           "symbolic_state", "trace"]
