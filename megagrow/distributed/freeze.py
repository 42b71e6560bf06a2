"""Weight slots that no micro-batch of an optimizer step runs do not move in that step.

One-process PyTorch leaves a parameter whose ``grad`` is None alone: AdamW applies neither weight decay
nor momentum to it and keeps its moments. DeepSpeed 0.19.8 does not:

* ZeRO 0/1/2 give unused parameters **zero** gradients, so AdamW still moves them (weight decay, and the
  momentum of earlier steps) and decays their moments;
* ZeRO-3 keeps each parameter's gradient partition between steps and overwrites it only at the first
  micro-batch that uses the parameter: an unused parameter gets the **previous step's gradient again**
  (which also enters the clipping norm), and one first used in a later micro-batch accumulates onto it.

:class:`SkippedSlots` restores the PyTorch behaviour for one optimizer step, from the step's layer maps:

1. ZeRO-3, right after the first micro-batch's backward: zero the local gradient partitions of the
   parameters that micro-batch did not use. DeepSpeed *copies* gradients at the first micro-batch and
   *accumulates* at later ones, so afterwards every partition holds exactly this step's gradient (zero
   for parameters no micro-batch uses), and the clipping norm is PyTorch's.
2. At the accumulation boundary, when a slot ran in no micro-batch: copy the local pieces of its
   parameters before ``engine.step()`` — the module tensor (whole under ZeRO 0/1/2, the partition under
   ZeRO-3), the fp32 master (fragment) and its ``exp_avg``/``exp_avg_sq`` (fragments) — and write them
   back afterwards.

Both are local: no collective, and every rank does the same because every rank runs the same layer
maps (:mod:`megagrow.distributed.scheduler`). When every slot runs in the first micro-batch (Apollo's
interpolation and stacking maps, StackBERT, multi-level, MSG, scratch) nothing is done at all.

One deliberate difference from PyTorch: AdamW's step counter. Under ZeRO 1-3 it belongs to a param
group's flat partition holding many parameters (the engine splits groups only by the step counts a state
brings in at a transition or resume, see :mod:`megagrow.distributed.full_state`), so it advances for every
parameter of the group, skipped or not; it is not restored here, and it also advances for skipped slots
under ZeRO-0 (DeepSpeed gives them zero gradients): every stage computes the same numbers. A skipped slot
that runs again is bias-corrected with its group's step, not with the count of steps it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from deepspeed.utils import (
    safe_get_local_fp32_param,
    safe_get_local_optimizer_state,
    safe_set_local_fp32_param,
    safe_set_local_grad,
    safe_set_local_optimizer_state,
)
from torch import nn

from megagrow.distributed.full_state import master_params, torch_optimizer
from megagrow.state import MOMENTS

__all__ = ["SkippedSlots", "Snapshot", "snapshot_params", "unused_slot_params", "zero_local_grads"]

Reader = Callable[[], torch.Tensor | None]
Writer = Callable[[torch.Tensor], None]


def unused_slot_params(slots: Sequence[nn.Module], executed: set[int]) -> list[nn.Parameter]:
    """Parameters of the slots not in ``executed`` (a parameter shared with an executed slot is excluded)."""
    running = {id(p) for k in executed if 0 <= k < len(slots) for p in slots[k].parameters()}
    out: list[nn.Parameter] = []
    seen: set[int] = set()
    for k, slot in enumerate(slots):
        if k in executed:
            continue
        for p in slot.parameters():
            if p.requires_grad and id(p) not in running and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


@dataclass
class _Piece:
    """One local tensor of the training state: how to read it (None: does not exist yet) and write it."""

    read: Reader
    write: Writer
    saved: torch.Tensor | None = None


def _view(get: Reader) -> _Piece:
    """A piece that is a tensor view into the engine's storage (re-fetched at every access)."""

    def write(value: torch.Tensor) -> None:
        target = get()
        if target is not None:
            target.data.copy_(value)

    return _Piece(get, write)


@dataclass
class Snapshot:
    """Copies of local state pieces; :meth:`restore` writes them back. A piece that did not exist at
    snapshot time (AdamW creates its moments at the first step) is zeroed instead: "no state yet"."""

    pieces: list[_Piece] = field(default_factory=list)

    def take(self) -> Snapshot:
        for piece in self.pieces:
            value = piece.read()
            piece.saved = None if value is None else value.detach().clone()
        return self

    @torch.no_grad()
    def restore(self) -> None:
        for piece in self.pieces:
            if piece.saved is not None:
                piece.write(piece.saved)
            else:
                current = piece.read()
                if current is not None:
                    piece.write(torch.zeros_like(current))


def _pieces_zero0(engine, params: Sequence[nn.Parameter]) -> list[_Piece]:
    """ZeRO-0: the parameter, its fp32 master copy (bf16) and ``optimizer.state[master]``."""
    opt = torch_optimizer(engine)
    names = {id(p): n for n, p in engine.module.named_parameters()}
    masters = master_params(engine)
    out: list[_Piece] = []
    for p in params:
        master = masters[names[id(p)]]
        out.append(_view(lambda p=p: p.data))
        if master is not p:
            out.append(_view(lambda m=master: m.data))
        for key in MOMENTS:
            out.append(_view(lambda m=master, key=key: opt.state.get(m, {}).get(key)))
    return out


def _pieces_zero12(engine, params: Sequence[nn.Parameter]) -> list[_Piece]:
    """ZeRO 1/2 (and DeepSpeed's bf16 optimizer): the whole module parameter (every rank holds it) and,
    where this rank's flat fp32 partition holds a fragment of it, that fragment of the master weights and
    of both moments (the moments read straight from ``optimizer.state[flat partition]``, so they do not
    depend on DeepSpeed's lazily linked per-parameter views)."""
    opt = torch_optimizer(engine)
    out: list[_Piece] = []
    for p in params:
        out.append(_view(lambda p=p: p.data))
        mapping = getattr(p, "_hp_mapping", None)
        if mapping is None:
            continue  # no fragment of this parameter in this rank's partition
        flat = opt.param_groups[mapping.param_group_index]["params"][0]
        addr = mapping.get_hp_fragment_address()
        out.append(_view(lambda f=flat, a=addr: f.data.narrow(0, a.start, a.numel)))
        for key in MOMENTS:
            def moment(f=flat, a=addr, key=key) -> torch.Tensor | None:
                state = opt.state.get(f, {})
                return state[key].narrow(0, a.start, a.numel) if key in state else None

            out.append(_view(moment))
    return out


def _pieces_zero3(engine, params: Sequence[nn.Parameter]) -> list[_Piece]:
    """ZeRO-3: the module parameter's local partition (and the whole tensor of a persistent parameter),
    and the local partitions of the fp32 master and both moments through DeepSpeed's local API."""
    opt = torch_optimizer(engine)
    out: list[_Piece] = []
    for p in params:
        out.append(_view(lambda p=p: p.ds_tensor.data))
        if getattr(p, "ds_persist", False):
            out.append(_view(lambda p=p: p.data))
        out.append(_Piece(lambda p=p: safe_get_local_fp32_param(p), lambda v, p=p: safe_set_local_fp32_param(p, v)))
        for key in MOMENTS:
            out.append(_Piece(lambda p=p, key=key: safe_get_local_optimizer_state(p, key) if opt.state else None,
                              lambda v, p=p, key=key: safe_set_local_optimizer_state(p, v, key)))
    return out


def snapshot_params(engine, params: Sequence[nn.Parameter]) -> Snapshot:
    """Copy this rank's pieces of ``params``' training state (no communication)."""
    stage = engine.zero_optimization_stage()
    if stage == 0:
        pieces = _pieces_zero0(engine, params)
    elif stage in (1, 2):
        pieces = _pieces_zero12(engine, params)
    elif stage == 3:
        pieces = _pieces_zero3(engine, params)
    else:
        raise ValueError(f"ZeRO stage {stage}: expected 0, 1, 2 or 3")
    return Snapshot(pieces).take()


@torch.no_grad()
def zero_local_grads(params: Sequence[nn.Parameter]) -> None:
    """ZeRO-3: zero this rank's gradient partitions of ``params`` (between backward and step)."""
    for p in params:
        safe_set_local_grad(p, torch.zeros(p.ds_tensor.numel(), dtype=torch.float32, device=p.ds_tensor.device))


T = TypeVar("T")


class SkippedSlots:
    """Backward and step of one optimizer step's micro-batches, keeping slots that no micro-batch runs
    exactly as they were (see the module docstring). ``slots`` are the model's weight slots
    (``model.blocks``), ``layer_maps`` the maps of every micro-batch of the step, in order."""

    def __init__(self, engine, slots: Sequence[nn.Module], layer_maps: Sequence[Sequence[int]]) -> None:
        if not layer_maps:
            raise ValueError("SkippedSlots needs the layer maps of at least one micro-batch")
        self.engine = engine
        executed = {int(k) for m in layer_maps for k in m}
        self.frozen = unused_slot_params(slots, executed) if len(executed) < len(slots) else []
        first = {int(k) for k in layer_maps[0]}
        stale = len(first) < len(slots) and engine.zero_optimization_stage() == 3
        self._zero_after_first = unused_slot_params(slots, first) if stale else []

    def backward(self, loss: torch.Tensor, micro: int, micro_batches: int = 1) -> None:
        """``engine.backward(loss)`` for micro-batch ``micro`` (ZeRO-3: then clear stale partitions);
        ``micro_batches`` > 1: the loss of that many merged micro-batches (megagrow's own step only)."""
        if micro_batches != 1:
            self.engine.backward(loss, micro_batches=micro_batches)
        else:
            self.engine.backward(loss)
        if micro == 0 and self._zero_after_first:
            zero_local_grads(self._zero_after_first)

    def step(self, do_step: Callable[[], T]) -> T:
        """Run ``do_step`` (whatever calls ``engine.step()``); at the accumulation boundary the skipped slots
        are snapshotted before and restored after, so the optimizer step cannot move them."""
        if self.frozen and self.engine.is_gradient_accumulation_boundary():
            saved = snapshot_params(self.engine, self.frozen)
            result = do_step()
            saved.restore()
            return result
        return do_step()

    def backward_and_step(self, loss: torch.Tensor, micro: int) -> None:
        """``engine.backward(loss)`` and ``engine.step()`` for micro-batch ``micro`` of the step."""
        self.backward(loss, micro)
        self.step(self.engine.step)
