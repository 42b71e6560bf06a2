"""``FullState``: name-keyed fp32 parameters + AdamW moments + step counts, independent of sharding.

It is what a universal checkpoint holds and what growth operators transform. The engine side is
two functions: :func:`gather_full_state` (a collective: every rank calls it, parameters in the same
order) and :func:`scatter_full_state` (local, no communication). Under ZeRO 1/2/3 they go through
DeepSpeed's ``safe_*`` API (fp32 master weights, never the bf16 copies); under ZeRO-0 the parameters
(or DeepSpeed's fp32 master copies, with bf16) and ``optimizer.state`` are read and written directly.

AdamW step counts are per parameter (:meth:`FullState.step_of`). Under ZeRO 1-3 DeepSpeed steps one flat
tensor per param group, with one step count, so :func:`~megagrow.distributed.engine.build_engine` splits the
groups by step (its ``steps``) and :func:`scatter_full_state` seeds each group's state with its step; within
a phase every parameter of a group advances together, and the next transition or checkpoint reads the
per-group counts back. ZeRO-0 keeps a step per parameter anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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

from megagrow.distributed.engine import GROUP_NAMES
from megagrow.state import MOMENTS, FullState, with_steps

__all__ = ["FullState", "agreed_steps", "broadcast_param_steps", "gather_full_state", "local_param_steps",
           "master_params", "only_on", "partition_rank", "relink_optimizer_state", "scatter_full_state",
           "seed_adam_state", "torch_optimizer"]


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


def _step_value(st: dict) -> int | None:
    """The step count in one tensor's AdamW state (None: no state yet)."""
    return int(float(st["step"])) if "step" in st else None


def _group_flats(engine) -> list[tuple[int, torch.Tensor]]:
    """ZeRO 1-3: ``(param group index, flat fp32 tensor the optimizer steps)``, one per group (ZeRO 1/2 and
    DeepSpeed's bf16 optimizer: this rank's partition) or per sub-group (ZeRO-3, where the torch groups hold
    their flat only during the step)."""
    if engine.zero_optimization_stage() == 3:
        inner = engine.optimizer
        return [(inner.sub_group_to_group_id[i], f) for i, f in enumerate(inner.fp32_partitioned_groups_flat)]
    return [(i, f) for i, g in enumerate(torch_optimizer(engine).param_groups) for f in g["params"]]


def _group_of(engine) -> dict[str, int]:
    """Parameter name -> index of its optimizer param group (the names :func:`build_engine` records)."""
    groups = torch_optimizer(engine).param_groups
    return {name: i for i, g in enumerate(groups) for name in g.get(GROUP_NAMES, ())}


def local_param_steps(engine) -> dict[str, int | None]:
    """Every parameter's AdamW step count as this rank's optimizer state has it (None: no state yet).
    ZeRO-0: the parameter's own state; ZeRO 1-3: its param group's flat tensor(s)."""
    opt = torch_optimizer(engine)
    names = [n for n, _ in engine.module.named_parameters()]
    if _direct(engine):
        masters = master_params(engine)
        return {n: _step_value(opt.state.get(masters[n], {})) for n in names}
    group_steps: dict[int, int] = {}
    for gid, flat in _group_flats(engine):
        step = _step_value(opt.state.get(flat, {}))
        if step is not None:
            group_steps[gid] = max(step, group_steps.get(gid, step))
    group_of = _group_of(engine)
    fallback = max(group_steps.values(), default=None)  # an engine not built by build_engine: one step
    return {n: group_steps.get(group_of[n]) if n in group_of else fallback for n in names}


def agreed_steps(local: dict[str, int | None], device: torch.device) -> dict[str, int | None]:
    """COLLECTIVE (with several ranks): the largest step each parameter has on any rank — every rank then
    holds the same counts, whatever part of the optimizer state it owns."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return local
    buf = torch.tensor([-1 if s is None else s for s in local.values()], dtype=torch.int64, device=device)
    dist.all_reduce(buf, op=dist.ReduceOp.MAX)
    return {n: None if s < 0 else int(s) for n, s in zip(local, buf.tolist(), strict=True)}


@torch.no_grad()
def gather_full_state(engine, keep: Callable[[int, str], bool] | None = None) -> FullState:
    """COLLECTIVE. Full fp32 params, AdamW moments and per-parameter step counts of ``engine`` on every rank
    (CPU tensors).

    ``keep(index, name)`` limits what this rank *holds* (a checkpoint shard): every rank still joins the
    gather of every parameter, one at a time, so peak memory is this rank's share plus one parameter. The
    step counts (a few integers) cover every parameter on every rank, also those ``keep`` leaves out.
    A parameter without AdamW state while others have some (ZeRO-0) gets zero moments and step 0."""
    opt = torch_optimizer(engine)
    params: dict[str, torch.Tensor] = {}
    moments: dict[str, dict[str, torch.Tensor]] = {m: {} for m in MOMENTS}
    steps = agreed_steps(local_param_steps(engine), engine.device)
    with_opt = max((s for s in steps.values() if s is not None), default=0) > 0
    direct = _direct(engine)
    if with_opt:
        relink_optimizer_state(engine)
    masters = master_params(engine) if direct else {}
    for index, (name, p) in enumerate(engine.module.named_parameters()):
        mine = keep is None or keep(index, name)
        if direct:
            if not mine:
                continue
            master = masters[name]
            params[name] = master.detach().float().cpu().clone()
            st = opt.state.get(master, {})
            if with_opt:
                for m in MOMENTS:
                    moments[m][name] = (st[m].detach().float().cpu().clone() if m in st
                                        else torch.zeros_like(params[name]))
        else:
            full = safe_get_full_fp32_param(p)  # collective
            if mine:
                params[name] = full.detach().float().cpu().clone()
            del full
            if with_opt:
                for m in MOMENTS:
                    full = safe_get_full_optimizer_state(p, m)  # collective
                    if mine:
                        moments[m][name] = full.detach().float().cpu().clone()
                    del full
    return with_steps(params, moments["exp_avg"], moments["exp_avg_sq"],
                      {n: 0 if s is None else s for n, s in steps.items()})


def _group_steps(engine, steps: Mapping[str, int]) -> dict[int, int]:
    """The step count of every optimizer param group: the one step its parameters share (``steps``: every
    parameter's). Under ZeRO 1-3 a group is one flat tensor with one step count, so a group whose
    parameters have different steps is an error: the engine must be built with these steps
    (:func:`~megagrow.distributed.engine.build_engine`'s ``steps``)."""
    out: dict[int, int] = {}
    for gid, g in enumerate(torch_optimizer(engine).param_groups):
        names = g.get(GROUP_NAMES, list(steps))  # not built by build_engine: every parameter must share a step
        distinct = sorted({int(steps[n]) for n in names})
        if len(distinct) > 1:
            raise ValueError(
                f"scatter_full_state: optimizer param group {gid} holds parameters with different AdamW step "
                f"counts {distinct[:4]}; build the engine with build_engine(..., steps=state.param_steps) so that "
                "each step count gets its own group")
        out[gid] = distinct[0] if distinct else 0
    return out


def seed_adam_state(engine, steps: Mapping[str, int]) -> None:
    """Create AdamW state for every optimizer tensor (torch creates it lazily at the first step): zero
    moments and the step count of its parameters (``steps``: every parameter's). ZeRO-0 seeds each
    parameter with its own step; ZeRO 1-3 each param group's flat tensor with the group's step."""
    opt = torch_optimizer(engine)
    if _direct(engine):
        name_of = {id(m): n for n, m in master_params(engine).items()}
        targets = [(f, int(steps[name_of[id(f)]])) for g in opt.param_groups for f in g["params"]]
    else:
        group_steps = _group_steps(engine, steps)
        targets = [(f, group_steps[gid]) for gid, f in _group_flats(engine)]
    fused = bool(opt.defaults.get("fused"))
    for f, step in targets:
        opt.state[f] = {
            "step": torch.tensor(float(step), dtype=torch.float32, device=f.device if fused else "cpu"),
            "exp_avg": torch.zeros_like(f, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(f, memory_format=torch.preserve_format),
        }
    relink_optimizer_state(engine)


def relink_optimizer_state(engine) -> None:
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

    AdamW state is seeded with each parameter's step count; under ZeRO 1-3 the engine must have been built
    with the state's steps (``build_engine(..., steps=...)``), else a param group mixing steps is an error.
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
        seed_adam_state(engine, state.steps())
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
    rank = partition_rank(p)
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
    header = torch.zeros(2, dtype=torch.float64, device=device)  # [ok, with optimizer state]; steps follow
    error: Exception | None = None
    if rank == src:
        try:
            if state is None:
                raise ValueError(f"scatter_full_state: rank {src} is the source but has no state")
            state.check_against(shapes, "scatter_full_state")
            header = torch.tensor([1.0, float(state.has_optimizer_state())], dtype=torch.float64, device=device)
        except ValueError as e:
            error = e
    dist.broadcast(header, src)
    if header[0].item() != 1.0:
        raise error or RuntimeError(f"scatter_full_state: rank {src} could not provide the full state (see its log)")
    with_opt = bool(header[1].item())
    if with_opt:
        seed_adam_state(engine, _broadcast_steps(list(shapes), state if rank == src else None, src, device))
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


def _broadcast_steps(names: list[str], state: FullState | None, src: int, device: torch.device) -> dict[str, int]:
    """COLLECTIVE: rank ``src``'s step count of every name in ``names`` (the others pass ``state=None``)."""
    values = [state.step_of(n) for n in names] if state is not None else [0] * len(names)
    buf = torch.tensor(values, dtype=torch.int64, device=device)
    dist.broadcast(buf, src)
    return dict(zip(names, (int(v) for v in buf.tolist()), strict=True))


def broadcast_param_steps(model: torch.nn.Module, state: FullState | None, src: int,
                          device: torch.device) -> dict[str, int]:
    """COLLECTIVE: every parameter's AdamW step count in rank ``src``'s ``state`` (the other ranks pass None),
    on every rank — what :func:`~megagrow.distributed.engine.build_engine` needs (``steps``) to form its param
    groups when only rank ``src`` holds the state that :func:`scatter_full_state` will broadcast."""
    names = [n for n, _ in model.named_parameters()]
    return _broadcast_steps(names, state if dist.get_rank() == src else None, src, device)


def _set_module_weight(p: torch.nn.Parameter, value: torch.Tensor) -> None:
    """The module's own copy of a parameter (the compute dtype): whole under ZeRO 1/2; under ZeRO-3 this
    rank's partition, plus the whole tensor where it is materialized (persistent small parameters)."""
    if not hasattr(p, "ds_id"):
        p.data.copy_(value.view_as(p))
        return
    part = p.ds_tensor.numel()
    flat = value.flatten()
    start = min(part * partition_rank(p), flat.numel())
    mine = flat[start:start + part]
    p.ds_tensor.data[: mine.numel()].copy_(mine)
    if p.data.numel() == flat.numel():
        p.data.copy_(value.view_as(p.data))


def partition_rank(p: torch.nn.Parameter) -> int:
    return p._z3_optimizer._get_param_partition_rank(p)
