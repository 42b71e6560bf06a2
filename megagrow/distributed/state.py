"""``FullState``: name-keyed fp32 parameters + AdamW moments + step, independent of sharding.

It is what a universal checkpoint holds and what growth operators transform. The engine side is
two functions: :func:`gather_full_state` (a collective: every rank calls it, parameters in the same
order) and :func:`scatter_full_state` (local, no communication). Under ZeRO 1/2/3 they go through
DeepSpeed's ``safe_*`` API (fp32 master weights, never the bf16 copies); under ZeRO-0 the parameters
(or DeepSpeed's fp32 master copies, with bf16) and ``optimizer.state`` are read and written directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from deepspeed.utils import (
    safe_get_full_fp32_param,
    safe_get_full_optimizer_state,
    safe_set_full_fp32_param,
    safe_set_full_optimizer_state,
    safe_set_local_fp32_param,
    safe_set_local_optimizer_state,
)

from megagrow.state import MOMENTS, FullState

__all__ = ["FullState", "gather_full_state", "master_params", "scatter_full_state", "torch_optimizer"]


def torch_optimizer(engine) -> torch.optim.Optimizer:
    """The torch optimizer inside DeepSpeed's wrapper (the wrapper itself under plain ZeRO-0 fp32)."""
    opt = engine.optimizer
    return getattr(opt, "optimizer", opt)


def _direct(engine) -> bool:
    """ZeRO-0: the torch optimizer steps unsharded tensors we can read and write directly."""
    return engine.zero_optimization_stage() == 0


def master_params(engine) -> dict[str, torch.Tensor]:
    """ZeRO-0: the fp32 tensor the optimizer steps for each module parameter — the parameter itself in
    fp32, DeepSpeed's fp32 master copy (``fp32_groups``, parallel to ``fp16_groups``) in bf16."""
    opt = engine.optimizer
    copies: dict[int, torch.Tensor] = {}
    if hasattr(opt, "fp16_groups") and hasattr(opt, "fp32_groups"):
        for low, high in zip(opt.fp16_groups, opt.fp32_groups, strict=True):
            copies.update({id(lp): hp for lp, hp in zip(low, high, strict=True)})
    return {n: copies.get(id(p), p) for n, p in engine.module.named_parameters()}


def _adam_step(opt: torch.optim.Optimizer) -> int:
    steps = [float(s["step"]) for s in opt.state.values() if "step" in s]
    return int(max(steps)) if steps else 0


@torch.no_grad()
def gather_full_state(engine, keep: Callable[[int, str], bool] | None = None) -> FullState:
    """COLLECTIVE. Full fp32 params and AdamW moments of ``engine`` on every rank (CPU tensors).

    ``keep(index, name)`` limits what this rank *holds* (a checkpoint shard): every rank still joins the
    gather of every parameter, one at a time, so peak memory is this rank's share plus one parameter."""
    opt = torch_optimizer(engine)
    params: dict[str, torch.Tensor] = {}
    moments: dict[str, dict[str, torch.Tensor]] = {m: {} for m in MOMENTS}
    step = _adam_step(opt)
    direct = _direct(engine)
    if step > 0:
        _relink_optimizer_state(engine)
    masters = master_params(engine) if direct else {}
    for index, (name, p) in enumerate(engine.module.named_parameters()):
        mine = keep is None or keep(index, name)
        if direct:
            if not mine:
                continue
            master = masters[name]
            params[name] = master.detach().float().cpu().clone()
            st = opt.state.get(master, {})
            for m in MOMENTS:
                if m in st:
                    moments[m][name] = st[m].detach().float().cpu().clone()
        else:
            full = safe_get_full_fp32_param(p)  # collective
            if mine:
                params[name] = full.detach().float().cpu().clone()
            del full
            if step > 0:
                for m in MOMENTS:
                    full = safe_get_full_optimizer_state(p, m)  # collective
                    if mine:
                        moments[m][name] = full.detach().float().cpu().clone()
                    del full
    return FullState(params, moments["exp_avg"], moments["exp_avg_sq"], step)


def _seed_adam_state(engine, step: int) -> None:
    """Create AdamW state for every optimizer tensor (torch creates it lazily at the first step)."""
    opt = torch_optimizer(engine)
    stage = engine.zero_optimization_stage()
    if stage == 3:
        flats = list(engine.optimizer.fp32_partitioned_groups_flat)
    else:
        flats = [f for g in opt.param_groups for f in g["params"]]
    fused = bool(opt.defaults.get("fused"))
    for f in flats:
        opt.state[f] = {
            "step": torch.tensor(float(step), dtype=torch.float32, device=f.device if fused else "cpu"),
            "exp_avg": torch.zeros_like(f, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(f, memory_format=torch.preserve_format),
        }
    _relink_optimizer_state(engine)


def _relink_optimizer_state(engine) -> None:
    """ZeRO-1/2 and bf16 link per-parameter views into the optimizer state once, after the first
    step of the *first* param group, when later groups have no state yet (DeepSpeed 0.19.8 then links
    them to an empty dict that torch replaces). Re-link now that every group's state exists."""
    inner = engine.optimizer
    if not _direct(engine) and hasattr(inner, "_lazy_init_hp_params_optimizer_state"):
        inner._hp_optimizer_states_linked = False
        inner._lazy_init_hp_params_optimizer_state()


@torch.no_grad()
def scatter_full_state(engine, state: FullState) -> None:
    """Write ``state`` into ``engine`` (no communication). Every rank passes the same full state."""
    shapes = {n: tuple(p.ds_shape if hasattr(p, "ds_shape") else p.shape)
              for n, p in engine.module.named_parameters()}
    state.check_against(shapes, "scatter_full_state")
    with_opt = state.has_optimizer_state()
    if with_opt:
        _seed_adam_state(engine, state.adam_step)
    opt = torch_optimizer(engine)
    direct = _direct(engine)
    masters = master_params(engine) if direct else {}
    for name, p in engine.module.named_parameters():
        if direct:
            master = masters[name]
            master.data.copy_(state.params[name].to(master.device, master.dtype))
            p.data.copy_(state.params[name].to(p.device, p.dtype))
            if with_opt:
                for m in MOMENTS:
                    opt.state[master][m].copy_(getattr(state, m)[name].to(master.device))
        else:
            _set_full(engine, p, state.params[name])
            if with_opt:
                for m in MOMENTS:
                    _set_full(engine, p, getattr(state, m)[name], m)


def _set_full(engine, p: torch.nn.Parameter, value: torch.Tensor, moment: str | None = None) -> None:
    """Write the full fp32 ``value`` of ``p`` (its master weights, or moment ``moment``) into this rank's share.

    ZeRO-3 pads every parameter to ``W * partition`` elements, and DeepSpeed 0.19's ``set_full_hp_param``
    narrows the *unpadded* value with the padded partition size, so the last rank fails whenever ``W`` does
    not divide the parameter's size (e.g. 3 ranks). Cut this rank's partition ourselves, zero-padded, and
    write it with the local API."""
    value = value.to(torch.float32)
    if not hasattr(p, "ds_id"):
        if moment is None:
            safe_set_full_fp32_param(p, value)
        else:
            safe_set_full_optimizer_state(p, value, moment)
        return
    part = p.ds_tensor.numel()
    rank = engine.optimizer._get_param_partition_rank(p)
    flat = value.flatten()
    start = min(part * rank, flat.numel())
    local = torch.zeros(part, dtype=torch.float32, device=p.ds_tensor.device)
    mine = flat[start:start + part]
    local[: mine.numel()] = mine.to(local.device)
    if moment is None:
        safe_set_local_fp32_param(p, local)
    else:
        safe_set_local_optimizer_state(p, local, moment)
