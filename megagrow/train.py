"""The training loop: plan decision → data → forward/backward → step → metrics → checkpoint.

Orchestration only: the math lives in models/, flops.py, schedule.py; the state handling in
distributed/ and checkpoint.py; the growth decisions in growth/plans.
"""

from __future__ import annotations

import hashlib
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from megagrow.checkpoint import load_checkpoint, save_checkpoint
from megagrow.config import Config, deepspeed_config
from megagrow.data.factory import build_data
from megagrow.data.loader import EvalLoader, GlobalBatchLoader
from megagrow.distributed.engine import all_reduce_sum, barrier, build_engine, init_distributed, set_lr
from megagrow.distributed.state import gather_full_state, scatter_full_state
from megagrow.flops import train_flops
from megagrow.growth.plans import build_plan
from megagrow.metrics import MetricsWriter, Progress, peak_flops_per_device, throughput_fields
from megagrow.models import build_model
from megagrow.rundir import RunDir
from megagrow.schedule import lr_at


@dataclass
class Counters:
    """Cumulative progress; saved in every checkpoint so it survives resume."""

    step: int = 0
    samples: int = 0
    tokens: int = 0
    flops: int = 0
    wall_s: float = 0.0


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    val_loss: float | None
    tokens_per_s: float | None
    stopped_early: bool


def _dropout_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Dropout RNG seed of one micro-batch: a pure function, so resume needs no RNG state."""
    h = hashlib.blake2b(f"{seed}/{step}/{micro}/{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class _StopFlag:
    """SIGTERM/SIGINT ask the loop to checkpoint and exit cleanly after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def train(cfg: Config) -> TrainResult:
    env = init_distributed(cfg)
    seed = cfg.run.seed
    torch.manual_seed(seed)
    data = build_data(cfg.data, cfg.model, seed)
    if cfg.model.family in ("bert", "gpt"):
        if cfg.model.vocab_size == 0:
            cfg.model.vocab_size = data.vocab_size
        elif cfg.model.vocab_size < data.vocab_size:
            raise ValueError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                             f"vocabulary ({data.vocab_size}) of data.path={cfg.data.path}")
    model = build_model(cfg.model)
    plan = build_plan(cfg.growth.plan, model.n_slots, seed)
    run = RunDir(Path(cfg.run.out_dir) / cfg.run.name)
    resume_from = run.resume_source(cfg.checkpoint.resume)
    counters = Counters()
    loader = GlobalBatchLoader(data.train, cfg.data.micro_batch_size, env.world_size, env.rank, seed)
    full_state = None
    if resume_from is not None:
        full_state, meta = load_checkpoint(resume_from)
        model.load_state_dict(full_state.params, strict=True)  # module weights (bf16 copies follow)
        counters = Counters(**meta["counters"])
        loader.load_state_dict(meta["loader"])
        plan.load_state_dict(meta["plan"])
    ds_cfg = deepspeed_config(cfg, env.world_size)
    if env.is_main:
        run.prepare(cfg, ds_cfg, counters.step if resume_from else None)
    barrier()
    engine = build_engine(model, cfg, env.world_size)
    if full_state is not None:
        scatter_full_state(engine, full_state)
        del full_state

    n_eval = min(cfg.data.eval_samples, len(data.validation))
    n_eval -= n_eval % (cfg.data.micro_batch_size * env.world_size)
    if n_eval <= 0:
        raise ValueError(f"data.eval_samples={cfg.data.eval_samples}: the validation split has "
                         f"{len(data.validation)} samples, fewer than one global micro-batch")
    eval_loader = EvalLoader(data.validation, cfg.data.micro_batch_size, n_eval, env.world_size, env.rank,
                             key_offset=data.eval_key_offset)

    writer = MetricsWriter(run.path, cfg.logging.tensorboard) if env.is_main else None
    show = cfg.logging.progress == "on" or (cfg.logging.progress == "auto" and _stderr_is_tty())
    progress = Progress(cfg.train.max_steps, counters.step, bar=show, main=env.is_main)
    peak = peak_flops_per_device(cfg.train.precision)
    stop = _StopFlag()
    arch = model.arch()
    G = cfg.global_batch_size(env.world_size)
    device = engine.device
    last = {"loss": None, "val_loss": None, "tokens_per_s": None}
    interval = {"tokens": 0, "flops": 0, "wall": 0.0, "loss": 0.0, "n": 0, "depth": 0.0}
    o = cfg.optim

    def evaluate(step: int) -> float:
        engine.eval()
        total = 0.0
        with torch.no_grad():
            for batch in eval_loader:
                out = engine({k: v.to(device) for k, v in batch.items()}, plan.eval_layer_map(step))
                total += float(out.loss)
        engine.train()
        s, n = all_reduce_sum([total, float(len(eval_loader))], device)
        return s / n

    engine.train()
    stopped = False
    while counters.step < cfg.train.max_steps:
        t0 = time.perf_counter()
        step = counters.step
        set_lr(engine, lr_at(step, peak=o.lr, warmup_steps=o.warmup_steps, total_steps=cfg.train.max_steps,
                             schedule=o.schedule, min_lr_ratio=o.min_lr_ratio))
        loss_sum, flops, depth_sum, phase = 0.0, 0, 0, ""
        for micro in range(cfg.train.grad_accum):
            decision = plan.decide(step, micro)
            batch = {k: v.to(device) for k, v in loader.next_micro_batch().items()}
            torch.manual_seed(_dropout_seed(seed, step, micro, env.rank))
            out = engine(batch, decision.layer_map)
            engine.backward(out.loss)
            engine.step()
            loss_sum += float(out.loss.detach())
            flops += train_flops(arch, decision.depth, cfg.data.micro_batch_size, data.seq_len, out.n_predictions)
            depth_sum += decision.depth
            phase = decision.phase
        exit_now = stop.requested or counters.step + 1 == cfg.train.exit_at_step
        g_loss, g_flops, g_stop = all_reduce_sum([loss_sum, float(flops), float(exit_now)], device)
        dt = time.perf_counter() - t0
        counters.step += 1
        counters.samples += G
        counters.tokens += G * data.seq_len
        counters.flops += int(g_flops)
        counters.wall_s += dt
        interval["tokens"] += G * data.seq_len
        interval["flops"] += int(g_flops)
        interval["wall"] += dt
        interval["loss"] += g_loss / (cfg.train.grad_accum * env.world_size)
        interval["n"] += 1
        interval["depth"] += depth_sum / cfg.train.grad_accum
        done = counters.step == cfg.train.max_steps or g_stop > 0
        is_eval = (cfg.train.eval_every and counters.step % cfg.train.eval_every == 0) or done
        if counters.step % cfg.logging.log_every == 0 or is_eval:
            tps = interval["tokens"] / max(interval["wall"], 1e-9)
            depth = interval["depth"] / interval["n"]
            record = {**asdict(counters), "loss": interval["loss"] / interval["n"],
                      "lr": engine.optimizer.param_groups[0]["lr"], "depth": int(depth) if depth.is_integer()
                      else depth, "hidden": cfg.model.hidden, "phase": phase, "tokens_per_s": tps,
                      **throughput_fields(interval["flops"] / max(interval["wall"], 1e-9), peak, env.world_size)}
            if is_eval:
                record["val_loss"] = last["val_loss"] = evaluate(counters.step)
                progress.write(f"step {counters.step}: loss {record['loss']:.4f}  val_loss {record['val_loss']:.4f}")
            last["loss"], last["tokens_per_s"] = record["loss"], tps
            if writer:
                writer.write(record)
            interval = dict.fromkeys(interval, 0)
            speed = f"{record['mfu']:.1%} MFU" if "mfu" in record else f"{record['gflops_per_s']:.1f} GFLOP/s"
            progress.update(0, loss=f"{record['loss']:.3f}", tok_s=f"{tps:,.0f}", speed=speed)
        progress.update(1)
        if g_stop > 0:
            stopped = True
            break
        if cfg.checkpoint.every and counters.step % cfg.checkpoint.every == 0 and not done:
            _checkpoint(engine, run, counters, loader, plan, cfg, env.is_main)
    if stopped or cfg.checkpoint.save_final:
        _checkpoint(engine, run, counters, loader, plan, cfg, env.is_main)
    stop.restore()
    progress.close()
    if writer:
        writer.close()
    return TrainResult(run.path, counters.step, last["loss"], last["val_loss"], last["tokens_per_s"], stopped)


def _checkpoint(engine, run: RunDir, counters: Counters, loader, plan, cfg: Config, is_main: bool) -> None:
    state = gather_full_state(engine)  # collective
    if is_main:
        meta = {"counters": asdict(counters), "loader": loader.state_dict(), "plan": plan.state_dict(),
                "model": asdict(cfg.model)}
        save_checkpoint(run.checkpoints, counters.step, state, meta, cfg.checkpoint.keep_last)
    barrier()


def _stderr_is_tty() -> bool:
    import sys

    return sys.stderr.isatty()
