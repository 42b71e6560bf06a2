"""The training loop: plan decision → data → forward/backward → step → metrics → checkpoint.

Orchestration only: the math lives in models/, flops.py, trainer/lr_schedule.py; the state handling in
distributed/ and checkpointing/; the growth decisions in growth/plans.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megagrow.checkpointing.resume import (
    ResumeRefused,
    Verdict,
    compare,
    history_entry,
    lr_line,
    refusal_message,
    resume_view,
    schedule_split,
)
from megagrow.checkpointing.rundir import RunDir
from megagrow.checkpointing.store import (
    begin_checkpoint,
    checkpoint_steps,
    finalize_checkpoint,
    load_checkpoint,
    load_checkpoint_meta,
    load_plan_tensors,
    step_dir_name,
    write_plan_shard,
    write_shard,
)
from megagrow.config import Config, config_from_meta, deepspeed_config, warnings_for
from megagrow.data.factory import DataBundle, build_data
from megagrow.data.loader import EvalLoader, GlobalBatchLoader
from megagrow.data.tokenizer_identity import checkpoint_tokenizer, mismatch
from megagrow.distributed.compile_stats import compile_stats
from megagrow.distributed.direct import DirectStep
from megagrow.distributed.engine import (
    all_reduce_sum,
    barrier,
    build_engine,
    fill_missing_grads,
    full_state_on_rank0,
    fused_adamw,
    init_distributed,
    partitioned_init,
    set_lr,
    state_placement,
)
from megagrow.distributed.env import DistEnv
from megagrow.distributed.freeze import SkippedSlots
from megagrow.distributed.full_state import gather_full_state, scatter_full_state, torch_optimizer
from megagrow.distributed.scheduler import StepScheduler
from megagrow.distributed.streamed import gather_kept, shard_kept
from megagrow.flops import train_flops
from megagrow.growth.config import translate_legacy
from megagrow.growth.plans import Plan, build_plan
from megagrow.growth.trace import Shard
from megagrow.metrics import MetricsWriter, Progress, peak_flops_per_device, progress_mode
from megagrow.models import ModelConfig, build_model
from megagrow.trainer.allocator import describe_active, unmet_request
from megagrow.trainer.eta import CostProfile, eta_seconds, format_seconds
from megagrow.trainer.evaluation import eval_layout
from megagrow.trainer.faults import NonFiniteGuard, NonFiniteStop, clip_owned, fault, local_bad, owns_step
from megagrow.trainer.lr_schedule import phase_lr
from megagrow.trainer.phase_batching import MERGING_FAMILIES, merge_factor, merge_groups
from megagrow.trainer.precision import DeviceFacts, apply_matmul_settings, resolve_precision
from megagrow.trainer.profiling import StepProfiler, phase
from megagrow.trainer.run_state import Counters, Interval, StopFlag, dropout_seed
from megagrow.trainer.step_stats import DeferredStats, deferred_applies
from megagrow.trainer.transition import Charge, apply_transition


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    val_loss: float | None
    tokens_per_s: float | None  # the whole run's: its tokens over its training wall time (resumes included)
    stopped_early: bool
    stop_reason: str | None = None  # why it stopped early: the signal, or train.exit_at_step


@dataclass
class _Session:
    """Everything a run holds once it is set up."""

    cfg: Config
    env: DistEnv
    data: DataBundle
    model_cfg: ModelConfig  # the architecture in effect now (cfg.model is the plan's target)
    model: torch.nn.Module
    plan: Plan
    engine: Any
    run: RunDir
    loader: GlobalBatchLoader
    eval_loader: EvalLoader | None  # None: no evaluation (data.eval_samples 0, or no validation split)
    scheduler: StepScheduler  # rank 0's layer maps on every rank
    counters: Counters = field(default_factory=Counters)
    guard: NonFiniteGuard = field(default_factory=lambda: NonFiniteGuard("skip", 5))
    log: Callable[[str], None] = print  # console lines (main rank); the progress bar's writer once it exists
    stats: DeferredStats | None = None  # statistics kept on the device between flushes, where that applies
    merge_cache: dict[tuple[int, int, int], int] = field(default_factory=dict)  # (layers, hidden, depth) -> k


def _setup(cfg: Config) -> _Session:
    env = init_distributed(cfg)
    requested = cfg.train.precision
    precision = resolve_precision(requested, DeviceFacts.probe())
    cfg.train.precision = precision.precision  # what config.yaml records and a resume compares
    apply_matmul_settings(precision)
    seed = cfg.run.seed
    torch.manual_seed(seed)
    data = build_data(cfg.data, cfg.model, seed)
    if cfg.model.family in ("bert", "gpt"):
        if cfg.model.vocab_size == 0:
            cfg.model.vocab_size = data.vocab_size
        elif cfg.model.vocab_size < data.vocab_size:
            raise ValueError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                             f"vocabulary ({data.vocab_size}) of data.path={cfg.data.path}; set model.vocab_size=0 "
                             f"(taken from the tokenizer) or at least {data.vocab_size}")
    plan = _plan_of(cfg, env.world_size, data.seq_len)
    run = RunDir(Path(cfg.run.out_dir) / cfg.run.name)
    resume_from = run.resume_source(cfg.checkpoint.resume)
    counters = Counters()
    loader = GlobalBatchLoader(data.train, cfg.data.micro_batch_size, env.world_size, env.rank, seed)
    full_state = None
    model_cfg = replace(cfg.model, **plan.arch_at(0))
    on_rank0 = resume_from is not None and full_state_on_rank0(cfg, env.world_size)
    verdict, notes = Verdict(()), [precision.line(requested)]
    if resume_from is not None:
        meta = load_checkpoint_meta(resume_from)
        verdict, notes = _check_resume(cfg, env.world_size, data.seq_len, plan, meta, run, resume_from)  # or refuse
        if not (on_rank0 and not env.is_main):  # else rank 0 reads the tensors and broadcasts them
            full_state, meta = load_checkpoint(resume_from)
        model_cfg = ModelConfig(**meta["model"])  # the architecture the checkpoint was written with
        kept = load_plan_tensors(resume_from)
        if state_placement(cfg, env.world_size) == "streamed":  # kept as partitions, as a streamed transition does
            kept = shard_kept(kept, env.rank, env.world_size)
        plan.load_state_tensors(kept)
        del kept
    with partitioned_init(cfg, env.world_size) if on_rank0 else contextlib.nullcontext():
        model = build_model(model_cfg)
    if resume_from is None and model_cfg.init_from:  # start weights; a checkpoint (resume) takes precedence
        from megagrow.interchange.hf_init import init_params

        model.load_state_dict(init_params(model_cfg.init_from, model_cfg, data.tokenizer_sha256,
                                          f"data.path={cfg.data.path}"), strict=True)
        notes.append(f"[megagrow] start weights: {model_cfg.init_from} ({model_cfg.family}, {model_cfg.n_layers} "
                     f"layers, hidden {model_cfg.hidden})")
    if resume_from is not None:
        if not on_rank0:
            model.load_state_dict(full_state.params, strict=True)  # module weights (bf16 copies follow)
        counters = Counters(**meta["counters"])
        _check_same_tokenizer(meta, data.tokenizer_sha256, cfg, resume_from)
        _check_same_data(cfg, meta["loader"], loader.state_dict(), resume_from)
        warning = loader.load_state_dict(meta["loader"], allow_fingerprint_change=cfg.data.allow_fingerprint_change)
        if warning and env.is_main:
            print(f"[megagrow] warning: {warning}", file=sys.stderr, flush=True)
        plan.load_state_dict(meta["plan"])
    if env.is_main:
        entry = None
        if (allocator := describe_active(os.environ)) is not None:
            notes.append(f"[megagrow] host allocator: {allocator}")
        if (unmet := unmet_request(cfg.train.allocator, os.environ)) is not None:
            notes.append(f"[megagrow] warning: {unmet}")
        if resume_from is None and notes:
            print("\n".join(notes), file=sys.stderr, flush=True)
        if resume_from is not None:
            lines = [_resume_line(resume_from, meta, counters.step, cfg, plan, model_cfg), *notes]
            print("\n".join(lines), file=sys.stderr, flush=True)
            entry = history_entry(verdict, counters.step, resume_from.name,
                                  datetime.now(UTC).isoformat(timespec="seconds"))
        for w in warnings_for(cfg):
            print(f"[megagrow] warning: {w}", file=sys.stderr, flush=True)
        run.prepare(cfg, deepspeed_config(cfg, env.world_size), counters.step if resume_from else None,
                    original=meta["config"] if resume_from is not None else None, changes=entry)
    barrier()
    steps = checkpoint_steps(meta)[1] if resume_from is not None else None  # every rank has the meta
    engine = build_engine(model, cfg, env.world_size, steps=steps)
    if resume_from is not None:
        scatter_full_state(engine, full_state, src=0 if on_rank0 else None)
        del full_state
    layout = eval_layout(cfg.data.eval_samples, len(data.validation) if data.validation is not None else None,
                         cfg.data.micro_batch_size, env.world_size, cfg.data.path)
    if layout.note and env.is_main:
        print(f"[megagrow] note: {layout.note}", file=sys.stderr, flush=True)
    eval_loader = None
    if layout.enabled and data.validation is not None:
        eval_loader = EvalLoader(data.validation, layout.micro_batch_size, layout.n_samples, env.world_size,
                                 env.rank, key_offset=data.eval_key_offset)
    guard = NonFiniteGuard(cfg.train.nonfinite, cfg.train.max_consecutive_skips)
    scheduler = StepScheduler(plan, env.rank, env.world_size, cfg.model.n_layers, cfg.distributed.check_decisions)
    deferred = deferred_applies(owns_step(cfg.distributed.zero_stage, cfg.train.precision), fused_adamw(cfg),
                                cfg.train.nonfinite)
    stats = DeferredStats(torch.device(engine.device), env.world_size) if deferred else None
    return _Session(cfg, env, data, model_cfg, model, plan, engine, run, loader, eval_loader, scheduler, counters,
                    guard, stats=stats)


def _check_same_tokenizer(meta: dict[str, Any], ours: str | None, cfg: Config, ckpt: Path) -> None:
    """Refuse a resume on a dataset tokenized with another tokenizer, even with data.allow_fingerprint_change (which
    accepts other data, not other token ids)."""
    theirs = checkpoint_tokenizer(meta)
    if theirs is not None and ours is not None and theirs != ours:
        raise ResumeRefused(mismatch(str(ckpt), theirs, f"data.path={cfg.data.path}", ours))


def _check_same_data(cfg: Config, old: dict[str, Any], new: dict[str, Any], ckpt: Path) -> None:
    """Refuse, in the config's words, a resume over another dataset than the checkpoint's (its fingerprint or
    sample count differs): the order of the samples would change from here on."""
    changed = [k for k in ("fingerprint", "n_samples") if k in old and old[k] != new[k]]
    if not changed or cfg.data.allow_fingerprint_change:
        return
    what = ", ".join(f"{k} {old[k]!r} -> {new[k]!r}" for k in changed)
    raise ResumeRefused(
        f"{ckpt} was trained on other data than data.path={cfg.data.path} ({what}); resuming would change the order "
        "of the samples from here on. Ways out: point --data.path at the dataset the run trained on; or "
        "--data.allow_fingerprint_change=true to go on with this one (its sample order from here on is new); or "
        "start afresh (--checkpoint.resume=never, or a new --run.name)")


def _plan_of(cfg: Config, world_size: int, seq_len: int) -> Plan:
    return build_plan(cfg.growth.plan, cfg.model.n_layers, cfg.growth, cfg.run.seed, cfg.train.max_steps,
                      model=cfg.model, tokens_per_step=cfg.global_batch_size(world_size) * seq_len)


def _lr_policy(cfg: Config, plan: Plan) -> str:
    return plan.lr_policy if cfg.growth.lr_policy == "auto" else cfg.growth.lr_policy


def _scheduled_lr(cfg: Config, plan: Plan, step: int) -> float:
    """The LR of optimizer step ``step``: the plan's multiplier times the (phase-aware) schedule."""
    o = cfg.optim
    return plan.lr_scale(step) * phase_lr(step, starts=plan.starts, max_steps=cfg.train.max_steps,
                                          policy=_lr_policy(cfg, plan), peak=o.lr, warmup_steps=o.warmup_steps,
                                          schedule=o.schedule, min_lr_ratio=o.min_lr_ratio,
                                          decay_fraction=o.decay_fraction, wsd_decay_shape=o.wsd_decay_shape)


def _check_resume(cfg: Config, world: int, seq_len: int, plan: Plan, meta: dict[str, Any], run: RunDir,
                  ckpt: Path) -> tuple[Verdict, list[str]]:
    """Compare the run's resolved config with the checkpoint's (:mod:`megagrow.checkpointing.resume`): raise
    :class:`ResumeRefused` naming every change that cannot be honoured, else return the verdict and the
    lines that state the honoured ones (with the LR's behaviour at the resume step when it changes)."""
    old_world = int(meta.get("world_size", 1))
    old_cfg = config_from_meta(meta["config"])
    try:
        old_plan = _plan_of(old_cfg, old_world, seq_len)
    except ValueError:
        old_plan = None  # cannot be rebuilt here: its schedule is not compared (the plan name still is)
    step = int(meta["counters"]["step"])
    old_split = schedule_split(old_plan, step) if old_plan is not None else (None, None)
    old = resume_view(translate_legacy(meta["config"])[0], old_world, *old_split)
    new = resume_view(asdict(cfg), world, *schedule_split(plan, step))
    verdict = compare(old, new, cfg.checkpoint.allow_changes)
    if verdict.refused:
        raise ResumeRefused(refusal_message(verdict, str(run.path), str(ckpt)))
    if not verdict.honoured:
        return verdict, []
    lines = [f"[megagrow] resume: honouring {len(verdict.honoured)} config change(s), recorded in {run.history}:"]
    lines += [f"  - {c.line()}" for c in verdict.honoured]
    if verdict.lr_changed and old_plan is not None:
        o = cfg.optim
        schedule = o.schedule + ("" if o.schedule == "constant" else f" to {o.min_lr_ratio:g}x")
        lines.append("  - " + lr_line(step, _scheduled_lr(old_cfg, old_plan, step), _scheduled_lr(cfg, plan, step),
                                      schedule, cfg.train.max_steps, _lr_policy(cfg, plan)))
    return verdict, lines


def _resume_line(ckpt: Path, meta: dict[str, Any], step: int, cfg: Config, plan: Plan, arch: ModelConfig) -> str:
    """One line: the checkpoint, its step, phase and architecture."""
    phase = plan.decide(max(0, step - 1), 0).phase
    target = cfg.model
    shape = f"{arch.family} {arch.n_layers} layers, hidden {arch.hidden}"
    if (arch.n_layers, arch.hidden) != (target.n_layers, target.hidden):
        shape += f" (target {target.n_layers} layers, hidden {target.hidden})"
    ranks = int(meta.get("world_size", 1))
    return (f"[megagrow] resuming from {ckpt} (written by {ranks} rank{'s' if ranks != 1 else ''}): step {step} of "
            f"{cfg.train.max_steps}, phase {phase}, {shape}")


def _evaluate(s: _Session) -> float:
    s.engine.eval()
    total = torch.zeros((), dtype=torch.float64, device=s.engine.device)  # read back once, in the all-reduce
    layer_map = s.plan.eval_layer_map(s.counters.step - 1)  # the model as it stands after the last step
    masks = s.plan.eval_masks(s.counters.step - 1)  # growth masks (msg) in effect after the last step, if any
    with torch.no_grad(), _corrupt_data_said(s):
        for batch in s.eval_loader:
            out = s.engine(to_device(batch, s.engine.device), layer_map, masks)
            total += out.loss.detach().double()
    s.engine.train()
    loss_sum, n = all_reduce_sum([total, float(len(s.eval_loader))], s.engine.device)
    return loss_sum / n


def _train_step(s: _Session, interval: Interval, stop_requested: bool) -> bool:
    """One optimizer step over ``grad_accum`` micro-batches; returns whether any rank asked to stop."""
    cfg, step = s.cfg, s.counters.step
    t0 = time.perf_counter()
    if s.data.verifier is not None:
        s.data.verifier.raise_if_bad()  # a shard that does not match its manifest: stop before this step
    transition = s.plan.transition(step)
    charge = Charge()
    if transition is not None:
        with phase("transition"):
            charge = apply_transition(s, transition, lambda key: _next_batch(s, step, key))
    with phase("plan"):
        engine = s.engine
        set_lr(engine, _scheduled_lr(cfg, s.plan, step))
        decisions = s.scheduler.decisions(step, cfg.train.grad_accum)  # collective: rank 0's layer maps
        frozen = SkippedSlots(engine, s.model.blocks, [d.layer_map for d in decisions])  # slots no micro-batch runs
    flops, depth_sum, tokens = charge.flops, 0, charge.tokens
    loss_sum: torch.Tensor | None = None  # on the device: read back at the step's sync, or at the next flush
    groups = _micro_groups(s, decisions)
    for g, (micro, count) in enumerate(groups):  # count > 1: micro-batches merged (train.phase_batching)
        decision = decisions[micro]
        with phase("data"):
            batch, n_tokens = _next_batch(s, step, micro) if count == 1 else _merged_batch(s, step, micro, count)
        tokens += n_tokens
        if s.model_cfg.dropout or s.model_cfg.attn_dropout:  # reseeding costs ~1 ms of host time: only when used
            torch.manual_seed(dropout_seed(cfg.run.seed, step, micro, s.env.rank))
        with phase("forward"):
            out = engine(batch, decision.layer_map, decision.extras.get("masks"))
        loss = out.loss * float("nan") if fault("nan", step, s.env.rank) else out.loss
        with phase("backward"):
            frozen.backward(loss, micro, count)
        if g < len(groups) - 1:
            with phase("optimizer"):
                engine.step()  # the last one is the optimizer step: after the ranks agree it is finite
        micro_loss = loss.detach().float() * count if count != 1 else loss.detach().float()
        loss_sum = micro_loss if loss_sum is None else loss_sum + micro_loss
        flops += train_flops(s.model.arch(), decision.depth, cfg.data.micro_batch_size * count, s.data.seq_len,
                             out.n_predictions)
        depth_sum += decision.depth * count
        interval.phase = decision.phase
    exit_now = stop_requested or step + 1 == cfg.train.exit_at_step
    with phase("clip"):
        fill_missing_grads(engine)  # one rank at ZeRO-0: what DeepSpeed's (skipped) all-reduce would do
        grad_norm = clip_owned(engine, cfg.optim.grad_clip)  # None where DeepSpeed's optimizer clips and checks
        bad = local_bad(loss_sum, grad_norm)
    if s.stats is not None:
        return _finish_deferred(s, interval, frozen, step, t0, loss_sum, bad, flops, tokens, depth_sum, charge,
                                exit_now)
    with phase("sync"):
        g_loss, g_flops, g_stop, g_tokens, g_extra, g_bad = all_reduce_sum(  # the step's one host sync
            [loss_sum, float(flops), float(exit_now), float(tokens), float(charge.micro_batches), bad], engine.device)
    with phase("optimizer"):
        skipped = frozen.step(lambda: s.guard.step(engine, g_bad > 0, step))  # skipped slots restored around it
    dt = time.perf_counter() - t0
    tokens = int(g_tokens)  # real tokens: padding of BERT sentence pairs is not counted
    c = s.counters
    samples = cfg.global_batch_size(s.env.world_size) + int(g_extra) * cfg.data.micro_batch_size  # + learned ops'
    c.step, c.samples, c.tokens = step + 1, c.samples + samples, c.tokens + tokens
    c.flops += int(g_flops)
    c.skipped_steps += int(skipped)
    c.wall_s += dt
    interval.tokens += tokens
    interval.flops += int(g_flops)
    interval.wall += dt
    interval.sched += s.scheduler.seconds
    interval.loss += g_loss / (cfg.train.grad_accum * s.env.world_size) if not skipped else 0.0
    interval.skipped += int(skipped)
    interval.depth += depth_sum / cfg.train.grad_accum
    interval.steps += 1
    return g_stop > 0


def _finish_deferred(s: _Session, interval: Interval, frozen: SkippedSlots, step: int, t0: float,
                     loss_sum: torch.Tensor, bad: torch.Tensor, flops: int, tokens: int, depth_sum: int, charge: Charge,
                     exit_now: bool) -> bool:
    """The end of a step whose statistics stay on the device (:mod:`megagrow.trainer.step_stats`): the optimizer step,
    skipped on the device when a rank saw a non-finite value, and the counters; read back only at a flush step.
    Returns whether any rank asked to stop (known at flush steps only)."""
    cfg, engine, stats = s.cfg, s.engine, s.stats
    with phase("optimizer"):
        found_inf = stats.add_step(loss_sum, bad)
        opt = torch_optimizer(engine)
        opt.found_inf = found_inf  # fused AdamW: no parameter, moment or step count moves where it is 1
        try:
            frozen.step(engine.step)  # skipped slots restored around it
        finally:
            opt.found_inf = None
    stats.add_host(tokens, flops, charge.micro_batches)
    c, gas, world = s.counters, cfg.train.grad_accum, s.env.world_size
    c.step = step + 1
    c.samples += cfg.global_batch_size(world)
    interval.sched += s.scheduler.seconds
    interval.depth += depth_sum / gas
    interval.steps += 1
    stop = False
    if _flush_due(cfg, s.plan, step + 1, exit_now, world):
        with phase("sync"):
            f = stats.flush(exit_now)
        c.tokens += f.tokens
        c.flops += f.flops
        c.skipped_steps += f.skipped
        c.samples += f.extra_micro_batches * cfg.data.micro_batch_size  # learned operators' samples
        interval.tokens += f.tokens
        interval.flops += f.flops
        interval.loss += f.loss / (gas * world)
        interval.skipped += f.skipped
        s.guard.observe(f.run, f.longest)
        stop = f.stop
    dt = time.perf_counter() - t0  # host time; a flush waits for the device, so the sum over a window is exact
    c.wall_s += dt
    interval.wall += dt
    return stop


def _flush_due(cfg: Config, plan: Plan, n: int, exit_now: bool, world: int) -> bool:
    """Whether the statistics must be read back after step ``n`` (1-based): a metrics record (a log step or the last
    step of a phase), an evaluation, a checkpoint, the last step, ``train.exit_at_step``; a stop signal on one rank
    (several ranks agree at the next regular flush)."""
    every = (cfg.logging.log_every, cfg.train.eval_every, cfg.checkpoint.every)
    return (any(k and n % k == 0 for k in every) or n >= cfg.train.max_steps or n == cfg.train.exit_at_step
            or (exit_now and world == 1) or _phase_ends(plan, n))


def _phase_ends(plan: Plan, n: int) -> bool:
    """Whether the step after ``n`` completed steps starts with a transition: step ``n`` is its phase's last, and
    gets a metrics record of its own (``phase_end``), so reports place the transition at its exact step and charge
    each phase exactly its own steps, FLOPs and wall time."""
    return plan.transition(n) is not None


def _micro_groups(s: _Session, decisions: list) -> list[tuple[int, int]]:
    """``(first micro-batch, count)`` of each forward of the step: one each, or merged where
    ``train.phase_batching`` applies (:mod:`megagrow.trainer.phase_batching`)."""
    cfg = s.cfg
    if (cfg.train.phase_batching == "off" or len(decisions) == 1 or not isinstance(s.engine, DirectStep)
            or s.model_cfg.family not in MERGING_FAMILIES):
        return [(i, 1) for i in range(len(decisions))]
    seq, depth = s.data.seq_len, decisions[0].depth
    key = (s.model_cfg.n_layers, s.model_cfg.hidden, depth)
    k = s.merge_cache.get(key)
    if k is None:
        full = train_flops(cfg.model.arch(), cfg.model.n_layers, 1, seq, seq)
        k = s.merge_cache[key] = merge_factor(len(decisions), full, train_flops(s.model.arch(), depth, 1, seq, seq))
    return merge_groups(decisions, k)


def _merged_batch(s: _Session, step: int, micro: int, count: int) -> tuple[dict[str, torch.Tensor], int]:
    """Micro-batches ``micro .. micro + count - 1`` as one (the same samples in the same order) and their tokens."""
    parts = [_next_batch(s, step, micro + j) for j in range(count)]
    return {k: torch.cat([b[k] for b, _ in parts]) for k in parts[0][0]}, sum(n for _, n in parts)


def _next_batch(s: _Session, step: int, micro: int) -> tuple[dict[str, torch.Tensor], int]:
    """This rank's next micro-batch on the engine's device and its real token count (BERT padding excluded)."""
    with _corrupt_data_said(s):
        batch = s.loader.next_micro_batch()
    if s.cfg.data.mixup or s.cfg.data.cutmix:
        batch = _mix(s, batch, step, micro)
    mask = batch.get("attention_mask")
    n = int(mask.sum()) if mask is not None else s.cfg.data.micro_batch_size * s.data.seq_len
    return to_device(batch, s.engine.device), n


@contextlib.contextmanager
def _corrupt_data_said(s: _Session) -> Iterator[None]:
    """An error while reading data: if the background shard check finds (or found) a file that does not match its
    manifest, that is what is raised (one line, the file, the way to re-verify), not the reader's traceback."""
    try:
        yield
    except Exception:
        if s.data.verifier is not None and s.data.verifier.wait(timeout=600) is not None:
            s.data.verifier.raise_if_bad()
        raise


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """A host batch on ``device``: on a GPU pinned and copied without blocking the host (queued on the stream, so the
    host runs ahead to the next step's work instead of waiting for the copy); unchanged on a CPU."""
    if torch.device(device).type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def _mix(s: _Session, batch: dict[str, torch.Tensor], step: int, micro: int) -> dict[str, torch.Tensor]:
    """Mixup/cutmix of this rank's micro-batch, its randomness a pure function of (seed, step, micro, rank)."""
    from megagrow.data.images import mix_batch

    d = s.cfg.data
    rng = np.random.Generator(np.random.PCG64([s.cfg.run.seed, 7, step, micro, s.env.rank]))
    return mix_batch(batch, s.cfg.model.num_classes, d.mixup, d.cutmix, rng, d.mix_switch_prob, d.label_smoothing)


def _checkpoint(s: _Session) -> None:
    """Sharded universal checkpoint: every rank writes its share (parameter i -> rank i mod W); collective."""
    rank, world = s.env.rank, s.env.world_size
    state = gather_full_state(s.engine, keep=lambda i, _name: i % world == rank)
    ckpt = s.run.checkpoints
    tmp = begin_checkpoint(ckpt, s.counters.step) if s.env.is_main else ckpt / (step_dir_name(s.counters.step) + ".tmp")
    barrier()
    write_shard(tmp, rank, world, state)
    kept = s.plan.state_tensors()
    sharded = gather_kept(kept, s.engine.device)  # kept in partitions (streamed): a share per rank
    if sharded:
        write_plan_shard(tmp, rank, world, sharded)
    del sharded
    barrier()
    if s.env.is_main:
        meta = {"counters": asdict(s.counters), "loader": s.loader.state_dict(), "plan": s.plan.state_dict(),
                "model": asdict(s.model_cfg), "config": asdict(s.cfg), "world_size": world,
                "tokenizer_sha256": s.data.tokenizer_sha256}
        finalize_checkpoint(ckpt, tmp, s.counters.step, state.adam_step, meta, s.cfg.checkpoint.keep_last, world,
                            extra_tensors={k: v for k, v in kept.items() if not isinstance(v, Shard)},
                            param_steps=state.param_steps)
    barrier()


def _cost_profile(cfg: Config, world: int) -> CostProfile | None:
    """Expected FLOPs per step over the run (``megagrow plan show``'s numbers) for a growth-aware ETA."""
    from megagrow.planner.show import summarize

    try:
        return CostProfile.from_summary(summarize(cfg, world_size=world))
    except ValueError:
        return None  # the ETA falls back to the step rate


def _stop_reason(stop: StopFlag, step: int, cfg: Config) -> str:
    if cfg.train.exit_at_step and step == cfg.train.exit_at_step:
        return f"train.exit_at_step={step}"
    if stop.requested:
        return f"{stop.signal_name or 'a signal'} received"
    return "another rank received a stop signal"


def train(cfg: Config) -> TrainResult:
    s = _setup(cfg)
    main = s.env.is_main
    writer = MetricsWriter(s.run.path, cfg.logging.tensorboard) if main else None
    progress = Progress(cfg.train.max_steps, s.counters.step, progress_mode(cfg.logging.progress, sys.stderr.isatty()),
                        main=main)
    s.log = progress.write
    profile = _cost_profile(cfg, s.env.world_size) if main else None
    peak = peak_flops_per_device(cfg.train.precision)
    profiler = StepProfiler(cfg.logging.profile_steps, s.run.path, main)
    last: dict[str, float | None] = {"loss": None, "val_loss": None}
    stop = StopFlag()
    stopped = False
    reason = None
    try:
        s.engine.train()
        interval = Interval()
        while s.counters.step < cfg.train.max_steps and not stopped:
            profiler.before(s.counters.step + 1)
            stopped = _train_step(s, interval, stop.requested)
            step = s.counters.step
            profiler.after(step)
            why = s.guard.verdict(step)  # non-finite steps: stop after this step's record and a checkpoint
            done = step == cfg.train.max_steps or stopped or why is not None
            is_eval = s.eval_loader is not None and (
                bool(cfg.train.eval_every and step % cfg.train.eval_every == 0) or done)
            phase_end = step < cfg.train.max_steps and _phase_ends(s.plan, step)
            if step % cfg.logging.log_every == 0 or is_eval or phase_end:
                rec = interval.record(s.counters, s.engine.optimizer.param_groups[0]["lr"], s.model_cfg.hidden, peak,
                                      s.env.world_size)
                if phase_end:
                    rec["phase_end"] = True  # the last step of its phase: the next one starts with a transition
                if cfg.train.compile:  # cumulative: graphs compiled, recompiles, seconds spent compiling
                    rec.update({k if k.startswith("compile") else f"compile_{k}": v
                                for k, v in compile_stats().items()})
                if is_eval:
                    rec["val_loss"] = last["val_loss"] = _evaluate(s)
                    progress.write(f"step {step}: loss {rec['loss']:.4f}  val_loss {rec['val_loss']:.4f}")
                last["loss"] = rec["loss"]
                if writer:
                    writer.write(rec)
                eta = eta_seconds(profile, interval.wall, (step - interval.steps, step), step, cfg.train.max_steps)
                interval = Interval()
                speed = f"{rec['mfu']:.1%} MFU" if "mfu" in rec else f"{rec['gflops_per_s']:.1f} GFLOP/s"
                progress.report(step, {"loss": f"{rec['loss']:.3f}", "tok/s": f"{rec['tokens_per_s']:,.0f}",
                                       "speed": speed, "phase": str(rec["phase"]), "eta": format_seconds(eta)})
            progress.update(1)
            if stopped:
                reason = _stop_reason(stop, step, cfg)
                progress.write(f"step {step}: stopping ({reason}); writing a checkpoint")
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and not done:
                _checkpoint(s)
            if why is not None:
                _checkpoint(s)
                raise NonFiniteStop(why)
        if stopped or cfg.checkpoint.save_final:
            _checkpoint(s)
    finally:
        stop.restore()
        progress.close()
        if writer:
            writer.close()
    c = s.counters
    if cfg.train.compile and main:
        st = compile_stats()
        share = f" ({st['compile_s'] / c.wall_s:.1%} of the training wall time)" if c.wall_s > 0 else ""
        print(f"[megagrow] torch.compile: {st['graphs']} graphs, {st['recompiles']} recompiles, {st['graph_breaks']} "
              f"graph breaks, {st['compile_s']:.1f} s compiling{share}", file=sys.stderr, flush=True)
    tokens_per_s = c.tokens / c.wall_s if c.wall_s > 0 else None
    return TrainResult(s.run.path, c.step, last["loss"], last["val_loss"], tokens_per_s, stopped, reason)
