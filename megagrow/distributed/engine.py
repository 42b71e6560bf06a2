"""Process group and DeepSpeed engine: build, destroy, and the small collectives the loop needs."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta

import torch

from megagrow.config import Config, deepspeed_config
from megagrow.distributed.direct import DirectStep, direct_step_applies, trainable_params
from megagrow.distributed.env import DistEnv, check_reachable, rendezvous_failure, resolve_dist_env
from megagrow.distributed.threads import apply_cpu_threads
from megagrow.trainer.faults import RendezvousFailed
from megagrow.trainer.precision import concrete

_NO_DECAY_SUFFIXES = ("bias", "cls_token", "dist_token", "pos_embed")


def choose_deepspeed_accelerator() -> None:
    """Pick DeepSpeed's accelerator from what torch sees, unless DS_ACCELERATOR says otherwise: a DeepSpeed
    installed on a machine without a GPU records ``accelerator_name='cpu'`` and would otherwise keep the model on
    the CPU of a GPU machine (its first broadcast then fails: "No backend type associated with device type cpu").
    Must run before the first ``import deepspeed`` of the process (DeepSpeed picks its accelerator once)."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")


def init_distributed(cfg: Config) -> DistEnv:
    """Resolve rank/world from any launcher, give each rank its share of the CPU cores (see
    :mod:`~megagrow.distributed.threads`) and initialise torch.distributed through DeepSpeed."""
    choose_deepspeed_accelerator()
    env = resolve_dist_env()
    apply_cpu_threads(env.local_world_size, torch.cuda.is_available(), _main_log if env.is_main else None)
    import deepspeed
    import deepspeed.comm.torch  # noqa: F401  (module object fetched from sys.modules below)

    # On the CPU accelerator DeepSpeed JIT-compiles a shared-memory op (37-88 s with gcc) at init;
    # it serves inference all-reduce only, never training. Skip the build.
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    backend = cfg.distributed.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    check_reachable(env, backend)  # a multi-host job on loopback: a clear error now, not a hang later
    if env.is_main and env.world_size > 1:
        iface = " ".join(f"{k}={os.environ[k]}" for k in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
                         if k in os.environ)
        _main_log(f"distributed: {env.describe()}; backend {backend}" + (f", {iface}" if iface else ""))
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
    timeout = timedelta(minutes=cfg.distributed.timeout_minutes)
    if not torch.distributed.is_initialized():
        try:
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, timeout=timeout)
        except (RuntimeError, OSError) as e:  # DistStoreError / DistNetworkError are RuntimeErrors
            if env.world_size == 1:
                raise
            raise RendezvousFailed(rendezvous_failure(env, cfg.distributed.timeout_minutes, e)) from e
    _default_group_timeout(timeout)
    return env


def _main_log(line: str) -> None:
    print(f"[megagrow] {line}", file=sys.stderr, flush=True)


def _default_group_timeout(timeout: timedelta) -> None:
    """DeepSpeed builds its data-parallel groups with ``new_group(ranks)`` and no timeout, which torch fills in
    from a module default (30 min), not from the world group's timeout: a rank blocked on a hung peer inside
    ``deepspeed.initialize`` (its parameter broadcast) would wait 30 minutes. Make every later group inherit
    ``distributed.timeout_minutes``."""
    import torch.distributed.distributed_c10d as c10d

    c10d.default_pg_timeout = timeout
    if getattr(c10d, "default_pg_nccl_timeout", None) is not None:
        c10d.default_pg_nccl_timeout = timeout


GROUP_NAMES = "megagrow_names"  # the parameter names of an optimizer param group (the params become flat)


def param_groups(model: torch.nn.Module, weight_decay: float, steps: Mapping[str, int] | None = None) -> list[dict]:
    """AdamW groups: decay on weight matrices and embeddings; none on biases, norms and special tokens.

    ``steps`` (parameter name -> AdamW step count) further splits each kind by step: under ZeRO 1-3
    DeepSpeed flattens a group into one tensor with ONE step count, so parameters that must be
    bias-corrected with different steps (one that joined late starts at 0) need groups of their own.
    A name not in ``steps`` belongs with the other unlisted ones (they share the state's ``adam_step``).
    Groups: decay before no-decay, larger steps first, unlisted last; without ``steps`` (or when every
    parameter shares a step) exactly the two groups decay / no-decay. Empty groups are left out (DeepSpeed
    drops them anyway). Each group lists its parameter names under :data:`GROUP_NAMES`, in model order."""
    steps = steps or {}
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim < 2 or name.endswith(_NO_DECAY_SUFFIXES))
        key = (decay, int(steps.get(name, -1)))  # -1: not listed
        group = groups.setdefault(key, {"params": [], "weight_decay": weight_decay if decay else 0.0,
                                        GROUP_NAMES: []})
        group["params"].append(p)
        group[GROUP_NAMES].append(name)
    order = sorted(groups, key=lambda k: (not k[0], k[1] == -1, -k[1]))
    return [groups[k] for k in order]


def _fused_supported() -> bool:
    """torch's fused AdamW kernel exists for CUDA and (since 2.4) CPU tensors."""
    return hasattr(torch, "_fused_adamw_")


def fused_adamw(cfg: Config) -> bool:
    """Whether the run's AdamW is torch's fused kernel (``optim.fused``)."""
    return cfg.optim.fused == "on" or (cfg.optim.fused == "auto" and _fused_supported())


COMPILE_BACKEND = "inductor"  # torch.compile backend of train.compile; CPU tests swap in eager-like ones (no codegen)
# Compiled variants dynamo keeps per code object. Every compiled block runs the one code object ``Block.forward``,
# so its cache holds one entry per block shape x mode (training / evaluation under no_grad) x masks or not (MSG's
# ramp): Apollo and StackBERT 2 entries, multilevel 4, MSG 6. Past the default limit (8) dynamo would silently run
# further variants eager; 64 leaves room for any plan (and a partial last batch, a new shape under dynamic=False).
COMPILE_VARIANTS = 64


def compile_in_place(model: torch.nn.Module) -> None:
    """Regional ``torch.compile`` for ``train.compile``: each transformer block is compiled on its own
    (``nn.Module.compile`` per ``model.blocks[i]``, in place: parameter names, state dicts and checkpoints are
    unchanged), while the loop over the layer map (:meth:`~megagrow.models.core.MegagrowModel.run_blocks`), the
    embeddings and the heads stay eager.

    Why per block: compiling the whole model made dynamo guard on the layer map, so every sampled depth, every new
    layer map and every transition (a new model object) recompiled the whole model. A block's compiled code depends
    only on its shapes and mode: dynamo inlines ``nn.Module``s and takes their parameters as graph inputs, so all
    blocks of one shape share ONE compiled graph (guards: tensor shapes/dtypes/devices, ``training``, grad mode,
    which mask fields are ``None``), across blocks, layer maps, depths and the new models of depth transitions;
    a width transition compiles the new block shape once. Growth masks (:class:`~megagrow.models.masks.GrowthMasks`)
    are graph inputs too: a ramping mask value reuses the graph (a masked forward is one more variant per shape, not
    one per value). Activation checkpointing wraps the compiled block (non-reentrant), its recomputation calls the
    same compiled code. Count what was compiled with :func:`~megagrow.distributed.compile_stats.compile_stats`.

    A model without ``blocks`` (not a :class:`~megagrow.models.core.MegagrowModel`) is compiled whole."""
    import torch._dynamo

    limit = max(int(torch._dynamo.config.recompile_limit), COMPILE_VARIANTS)
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.config.accumulated_recompile_limit = max(int(torch._dynamo.config.accumulated_recompile_limit),
                                                           4 * limit)
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        model.compile(dynamic=False, backend=COMPILE_BACKEND)
        return
    for block in blocks:
        block.compile(dynamic=False, backend=COMPILE_BACKEND)
    if getattr(model, "compiles_head", False):  # GPT: the output head + cross-entropy (fp32 upcast fused)
        from megagrow.models.core import head_loss

        model.head_loss_fn = torch.compile(head_loss, dynamic=False, backend=COMPILE_BACKEND)


def build_engine(model: torch.nn.Module, cfg: Config, world_size: int, steps: Mapping[str, int] | None = None):
    """``deepspeed.initialize`` with torch AdamW (fused where supported) and the generated config.

    ``steps``: the AdamW step count of the parameters of the state that will be scattered into the engine
    (``FullState.param_steps``, or every parameter's); parameters with different steps get different param
    groups (:func:`param_groups`), so that each can be seeded with its own step. Every rank must pass the
    same map (see :func:`~megagrow.distributed.full_state.broadcast_param_steps`)."""
    import deepspeed

    o = cfg.optim
    fused = fused_adamw(cfg)
    if torch.cuda.is_available():
        model = model.cuda()
    model.activation_checkpointing = cfg.train.activation_checkpointing
    model.loss_chunk = cfg.train.loss_chunk
    if cfg.train.compile:
        compile_in_place(model)
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay, steps), lr=o.lr, betas=(o.beta1, o.beta2),
                                  eps=o.eps, fused=fused)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer,
                                      config=deepspeed_config(cfg, world_size))
    if world_size == 1 and cfg.distributed.zero_stage == 0:
        # one rank has nothing to all-reduce, but DeepSpeed's ZeRO-0 still flattens every gradient into a bucket,
        # "all-reduces" it and copies it back after each backward (2.5 ms of a 13 ms step of a small model on CPU);
        # fill_missing_grads does the one thing of it that changes the numbers
        engine.enable_backward_allreduce = False
    precision = concrete(cfg.train.precision)
    if direct_step_applies(cfg.distributed.zero_stage, world_size, precision):
        return DirectStep(engine, cfg.train.grad_accum, torch.bfloat16 if precision == "bf16-autocast" else None)
    return engine


def fill_missing_grads(engine) -> None:
    """Give every trainable parameter without a gradient a zero one, as DeepSpeed's ZeRO-0 all-reduce does at the
    accumulation boundary; call it there where that all-reduce is off (one rank, :func:`build_engine`). AdamW then
    advances every parameter's step alike on one rank and on many (see :mod:`megagrow.distributed.freeze`)."""
    if engine.zero_optimization_stage() != 0 or engine.enable_backward_allreduce:
        return
    for p in trainable_params(engine):
        if p.grad is None:
            p.grad = torch.zeros_like(p)


def state_placement(cfg: Config, world_size: int) -> str:
    """Where a transition keeps the training state (``distributed.full_state``, ``auto`` resolved): ``replicated``,
    ``rank0`` or ``streamed``; one rank has nothing to place (``replicated``)."""
    mode = cfg.distributed.full_state
    if mode == "auto":
        mode = "streamed" if cfg.distributed.zero_stage == 3 else "replicated"
    return mode if world_size > 1 else "replicated"


def full_state_on_rank0(cfg: Config, world_size: int) -> bool:
    """Whether checkpoint loads (and ``rank0`` transitions) keep the full state on rank 0 only: ``rank0`` and
    ``streamed`` (a checkpoint holds whole tensors; rank 0 reads them and broadcasts one at a time)."""
    return state_placement(cfg, world_size) in ("rank0", "streamed")


def partitioned_init(cfg: Config, world_size: int) -> contextlib.AbstractContextManager:
    """Build a model inside this to have it partitioned as it is constructed (``deepspeed.zero.Init``) under
    ZeRO-3 when the state is placed on rank 0 or streamed: no rank materializes the whole model. Its weights are
    then meaningless until the state is scattered or streamed into it."""
    if cfg.distributed.zero_stage != 3 or not full_state_on_rank0(cfg, world_size):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.Init(config_dict_or_path=deepspeed_config(cfg, world_size))


def destroy_engine(engine) -> None:
    """Release an engine completely. Under ZeRO-3 DeepSpeed keeps retired engines reachable in three ways: its
    forward-module stack, per-module autograd.Function closures and ``_z3_optimizer``/``ds_tensor`` on every
    parameter, and a class-level ``lru_cache`` keyed by coordinator and sub-module (see
    :func:`_clear_class_level_caches`); tests/test_engine_release.py checks nothing survives. The old module is
    unusable afterwards: its parameters are emptied."""
    module = engine.module
    engine.destroy()
    for m in module.modules():
        for attr in ("pre_bwd_fn", "post_bwd_fn"):
            m.__dict__.pop(attr, None)
        m.__dict__.pop("_external_params", None)
    for p in module.parameters():
        for attr in ("_z3_optimizer", "ds_tensor"):
            if attr in p.__dict__:
                delattr(p, attr)
        p.data = torch.empty(0, dtype=p.dtype, device=p.device)
        p.grad = None
    del module
    try:
        import deepspeed.runtime.zero.parameter_offload as po

        po.FWD_MODULE_STACK.clear()
    except (ImportError, AttributeError):
        pass
    _clear_class_level_caches()
    gc.collect()


def _clear_class_level_caches() -> None:
    """DeepSpeed's ZeRO-3 coordinator memoizes ``__params_to_release(self, submodule, step)`` with a class-level
    ``functools.lru_cache(maxsize=None)``: its keys hold every coordinator and sub-module ever used, so without
    this every retired ZeRO-3 engine (model, optimizer, partitions) stays alive (measured with gpt-tiny: RSS
    grew ~600 MB per chain of 4 engines; flat at ~900 MB with this). Clearing it only costs a recomputation
    on the live engine's next release."""
    try:
        from deepspeed.runtime.zero.partitioned_param_coordinator import PartitionedParameterCoordinator
    except ImportError:
        return
    for fn in vars(PartitionedParameterCoordinator).values():
        stack, seen = [fn], set()
        while stack:
            f = stack.pop()
            if id(f) in seen:
                continue
            seen.add(id(f))
            if hasattr(f, "cache_clear"):
                f.cache_clear()
            for cell in getattr(f, "__closure__", None) or ():
                try:
                    if callable(cell.cell_contents):
                        stack.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
            if hasattr(f, "__wrapped__"):
                stack.append(f.__wrapped__)


def set_lr(engine, lr: float) -> None:
    """Set the learning rate of every param group (there is one per weight-decay kind and step count)."""
    for g in engine.optimizer.param_groups:
        g["lr"] = lr


def all_reduce_sum(values: Sequence[float | torch.Tensor], device: torch.device) -> list[float]:
    """Sum small scalars over ranks (one collective, one host sync). Values may be Python numbers or 0-d tensors
    still being computed on the device (the step's loss, its non-finite flag): they are read back only here."""
    host = [float(v) for v in values if not isinstance(v, torch.Tensor)]
    t = torch.tensor(host, dtype=torch.float64, device=device)
    dev = [v.detach().reshape(1).to(device=device, dtype=torch.float64) for v in values if isinstance(v, torch.Tensor)]
    if dev:
        t = torch.cat([t, *dev])
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(t)
    flat = t.tolist()
    it_host, it_dev = iter(flat[: len(host)]), iter(flat[len(host):])
    return [next(it_dev) if isinstance(v, torch.Tensor) else next(it_host) for v in values]


def barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()
