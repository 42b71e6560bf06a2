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
import torch.distributed as dist
from deepspeed.utils import (
    safe_get_full_fp32_param,
    safe_get_full_optimizer_state,
    safe_set_full_fp32_param,
    safe_set_full_optimizer_state,
    safe_set_local_fp32_param,
    safe_set_local_optimizer_state,
)

from megagrow.state import MOMENTS, FullState

__all__ = ["FullState", "gather_full_state", "master_params", "only_on", "scatter_full_state", "torch_optimizer"]


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


def only_on(rank: int, src: int) -> Callable[[int, str], bool]:
    """``keep`` for :func:`gather_full_state`: rank ``src`` holds the full state, the others nothing."""
    return lambda _index, _name: rank == src


@torch.no_grad()
def scatter_full_state(engine, state: FullState | None, src: int | None = None) -> None:
    """Write ``state`` into ``engine``.

    ``src=None``: every rank passes the same full state; no communication. The module weights are expected
    to be loaded already (``load_state_dict`` before the engine was built); this fills the optimizer's side.
    ``src=r``: COLLECTIVE; only rank ``r`` has the state (the others pass None). It is broadcast one tensor
    at a time and each rank keeps its share — module weights (its ZeRO-3 partition) and fp32 master and
    moments — so no other rank holds more than one full tensor at once.
    """
    if src is not None:
        _broadcast_full_state(engine, state, src)
        return
    if state is None:
        raise ValueError("scatter_full_state: state is None but no source rank was given")
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
            _set_full(p, state.params[name])
            if with_opt:
                for m in MOMENTS:
                    _set_full(p, getattr(state, m)[name], m)


def _set_full(p: torch.nn.Parameter, value: torch.Tensor, moment: str | None = None) -> None:
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
    rank = _partition_rank(p)
    flat = value.flatten()
    start = min(part * rank, flat.numel())
    local = torch.zeros(part, dtype=torch.float32, device=p.ds_tensor.device)
    mine = flat[start:start + part]
    local[: mine.numel()] = mine.to(local.device)
    if moment is None:
        safe_set_local_fp32_param(p, local)
    else:
        safe_set_local_optimizer_state(p, local, moment)


def _param_shapes(engine) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.ds_shape if hasattr(p, "ds_shape") else p.shape) for n, p in engine.module.named_parameters()}


def _broadcast_full_state(engine, state: FullState | None, src: int) -> None:
    rank = dist.get_rank()
    device = engine.device
    shapes = _param_shapes(engine)
    header = torch.zeros(3, dtype=torch.float64, device=device)
    error: Exception | None = None
    if rank == src:
        try:
            if state is None:
                raise ValueError(f"scatter_full_state: rank {src} is the source but has no state")
            state.check_against(shapes, "scatter_full_state")
            header = torch.tensor([1.0, float(state.has_optimizer_state()), float(state.adam_step)],
                                  dtype=torch.float64, device=device)
        except ValueError as e:
            error = e
    dist.broadcast(header, src)
    if header[0].item() != 1.0:
        raise error or RuntimeError(f"scatter_full_state: rank {src} could not provide the full state (see its log)")
    with_opt, adam_step = bool(header[1].item()), int(header[2].item())
    if with_opt:
        _seed_adam_state(engine, adam_step)
    direct = _direct(engine)
    masters = master_params(engine) if direct else {}
    opt = torch_optimizer(engine)
    for name, p in engine.module.named_parameters():
        for moment in (None, *MOMENTS) if with_opt else (None,):
            if rank == src:
                assert state is not None
                full = state.params[name] if moment is None else getattr(state, moment)[name]
                buf = full.to(device=device, dtype=torch.float32).contiguous()
            else:
                buf = torch.empty(shapes[name], dtype=torch.float32, device=device)
            dist.broadcast(buf, src)
            if direct:
                master = masters[name]
                if moment is None:
                    p.data.copy_(buf.view_as(p))
                    if master is not p:
                        master.data.copy_(buf.view_as(master))
                else:
                    opt.state[master][moment].copy_(buf.view_as(master))
            else:
                if moment is None:
                    _set_module_weight(p, buf)
                _set_full(p, buf, moment)
            del buf


def _set_module_weight(p: torch.nn.Parameter, value: torch.Tensor) -> None:
    """The module's own copy of a parameter (the compute dtype): whole under ZeRO 1/2; under ZeRO-3 this
    rank's partition, plus the whole tensor where it is materialized (persistent small parameters)."""
    if not hasattr(p, "ds_id"):
        p.data.copy_(value.view_as(p))
        return
    part = p.ds_tensor.numel()
    flat = value.flatten()
    start = min(part * _partition_rank(p), flat.numel())
    mine = flat[start:start + part]
    p.ds_tensor.data[: mine.numel()].copy_(mine)
    if p.data.numel() == flat.numel():
        p.data.copy_(value.view_as(p.data))


def _partition_rank(p: torch.nn.Parameter) -> int:
    return p._z3_optimizer._get_param_partition_rank(p)
