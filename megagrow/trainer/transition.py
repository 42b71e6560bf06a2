"""Transitions inside a running trainer: gather the full state, map it (training the operator first when
the transition is learned, e.g. LiGO), build the new model and engine, scatter the state into it — or, under
ZeRO-3 by default, stream it (:mod:`megagrow.distributed.streamed`: no rank holds the whole state).

The engine's AdamW param groups are split by the mapped state's per-parameter step counts (a parameter the
operator gave zero moments starts at step 0, like a fresh AdamW parameter), so they are known before the
engine is built: from the state itself, or broadcast from rank 0 when only rank 0 holds it.

Orchestration only: the operators are the plan's (:mod:`megagrow.growth`), the state movement is
:mod:`megagrow.distributed.full_state`'s and :mod:`megagrow.distributed.streamed`'s. The trainer's session is
duck-typed (``s.engine``, ``s.model``, ``s.model_cfg``, ``s.cfg``, ``s.env``, ``s.counters``, ``s.log``; a streamed
transition also ``s.plan``, whose kept state it partitions, and ``s.run``, where it spills) to keep the import
one-way.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch.func import functional_call

from megagrow.distributed.engine import build_engine, destroy_engine, partitioned_init, state_placement
from megagrow.distributed.full_state import broadcast_param_steps, gather_full_state, only_on, scatter_full_state
from megagrow.distributed.streamed import (
    copy_out_partitions,
    realize_kept,
    stream_into,
    trace_operator,
    trim_memory,
)
from megagrow.flops import train_flops
from megagrow.growth.plans import Transition
from megagrow.growth.plans.base import FitContext
from megagrow.models import build_model
from megagrow.trainer.faults import fault
from megagrow.trainer.run_state import dropout_seed

# (micro key, ) -> (this rank's micro-batch on the engine's device, its real token count)
NextBatch = Callable[[int], tuple[dict[str, torch.Tensor], int]]


@dataclass
class Charge:
    """Work a transition did on this rank that the step must account for (learned operators' data)."""

    flops: int = 0
    tokens: int = 0
    micro_batches: int = 0


def apply_transition(s: Any, t: Transition, next_batch: NextBatch) -> Charge:
    """Replace ``s.engine``/``s.model``/``s.model_cfg`` by the transition's; collective (every rank calls it)."""
    charge = Charge()
    # Learned operators train on every rank's data, so they need the state everywhere.
    placement = state_placement(s.cfg, s.env.world_size) if t.fit is None else "replicated"
    if placement == "streamed":
        _apply_streamed(s, t)
        return charge
    on_rank0 = placement == "rank0"
    state = gather_full_state(s.engine, keep=only_on(s.env.rank, 0) if on_rank0 else None)
    device = s.engine.device
    _release(s)  # the old engine is gone before the new model exists: one model's memory at a time
    fault("transition", s.counters.step, s.env.rank)
    s.model_cfg = replace(s.model_cfg, **t.arch)
    if on_rank0:
        state = t.operator(state) if s.env.rank == 0 else None
        with partitioned_init(s.cfg, s.env.world_size):
            s.model = build_model(s.model_cfg)
        steps = broadcast_param_steps(s.model, state, 0, device)  # the param groups follow rank 0's step counts
        s.engine = build_engine(s.model, s.cfg, s.env.world_size, steps=steps)
        scatter_full_state(s.engine, state, src=0)
    else:
        s.model = build_model(s.model_cfg)
        if t.fit is None:
            state = t.operator(state)
        else:
            state = t.fit(state, _fit_context(s, device, charge, next_batch))
        s.model.load_state_dict(state.params, strict=True)
        s.engine = build_engine(s.model, s.cfg, s.env.world_size, steps=state.param_steps)
        scatter_full_state(s.engine, state)
    del state
    s.engine.train()
    if s.env.is_main:
        s.log(f"step {s.counters.step}: transition {t.name} -> {t.arch}")
    return charge


@dataclass(frozen=True)
class ReleasedEngine:
    """What ``s.engine`` is between the old engine's release and the new engine: its device only (a learned
    operator's batches are moved there)."""

    device: torch.device


def _release(s: Any) -> None:
    """Destroy the old engine and drop the session's references to it and its model, then collect: DeepSpeed's
    engine and module hold reference cycles (hooks, closures), so without a collection their memory stays resident
    while the new engine is built (measured: the old model's whole ZeRO-3 state, 2.8 GB per rank at 277M)."""
    device = s.engine.device
    destroy_engine(s.engine)
    s.engine, s.model = ReleasedEngine(device), None
    gc.collect()
    trim_memory()


def _apply_streamed(s: Any, t: Transition) -> None:
    """``distributed.full_state=streamed`` (:mod:`megagrow.distributed.streamed`): this rank's partitions out, the
    old engine gone, the operator traced, the new engine built partitioned, each new tensor streamed into it; state
    the operator kept for a later transition (a snapshot) kept as this rank's partitions."""
    spill = s.run.path / ".transition" if s.cfg.distributed.stream_spill == "disk" else None
    old = copy_out_partitions(s.engine, spill)
    _release(s)
    fault("transition", s.counters.step, s.env.rank)
    traced = trace_operator(t.operator, old)
    assert traced.result is not None
    s.model_cfg = replace(s.model_cfg, **t.arch)
    with partitioned_init(s.cfg, s.env.world_size):
        s.model = build_model(s.model_cfg)
    s.engine = build_engine(s.model, s.cfg, s.env.world_size, steps=traced.result.steps())
    trim_memory()  # zero.Init's per-parameter partitions, copied into DeepSpeed's flat buffers and freed
    stats = stream_into(s.engine, traced, old)
    s.plan.load_state_tensors(realize_kept(traced, s.plan.state_tensors(), old, s.engine.device))
    old.close()
    s.engine.train()
    if s.env.is_main:
        s.log(f"step {s.counters.step}: transition {t.name} -> {t.arch}, streamed: {stats.tensors} tensors "
              f"({stats.local} from this rank's partitions alone, {stats.gathered_sources} sources gathered)")


def _fit_context(s: Any, device: torch.device, charge: Charge, next_batch: NextBatch) -> FitContext:
    cfg, model = s.cfg, s.model.to(device)
    model.train()
    layer_map = tuple(range(s.model_cfg.n_layers))
    accum, step, seq = cfg.train.grad_accum, s.counters.step, s.data.seq_len

    def loss(params: dict[str, torch.Tensor], fit_step: int, micro: int) -> torch.Tensor:
        key = accum * (1 + fit_step) + micro  # micro keys >= accum: never one of the step's own micro-batches
        batch, tokens = next_batch(key)
        torch.manual_seed(dropout_seed(cfg.run.seed, step, key, s.env.rank))
        out = functional_call(model, params, (batch, layer_map, None))
        charge.flops += train_flops(model.arch(), len(layer_map), cfg.data.micro_batch_size, seq, out.n_predictions)
        charge.tokens += tokens
        charge.micro_batches += 1
        return out.loss

    def charge_flops(n: int) -> None:
        charge.flops += n

    def all_reduce_mean(tensors: list[torch.Tensor]) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for g in tensors:
                dist.all_reduce(g)
                g.div_(dist.get_world_size())

    o = cfg.optim
    return FitContext(loss=loss, grad_accum=accum, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, device=device,
                      charge_flops=charge_flops, all_reduce_mean=all_reduce_mean,
                      log=s.log if s.env.is_main else (lambda _m: None))
