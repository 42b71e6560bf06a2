"""What does a growth transition cost under DeepSpeed, next to a training step? (2 ranks, ZeRO-2 vs ZeRO-3)

A transition (``megagrow/trainer/transition.py::apply_transition``) gathers the full training state
(``gather_full_state``, a collective), destroys the engine, builds the new model, maps the state with the
plan's operator, loads it and builds + fills a new engine (``build_engine`` + ``scatter_full_state``).
Where the full state lives is ``distributed.full_state``: ``replicated`` (every rank holds and maps it;
the default under ZeRO 0-2) or ``rank0`` (only rank 0 holds and maps it, the new model is built already
partitioned by ``deepspeed.zero.Init`` under ZeRO-3, and rank 0 broadcasts the result one tensor at a
time; the default under ZeRO-3). Variants ``z2`` (replicated), ``z3`` (rank0) and ``z3-replicated`` are
measured side by side. This
benchmark runs the trainer's own ``apply_transition`` in 2 spawned gloo ranks and times its parts by
wrapping the functions it calls (the wrappers only time and sample memory, then call the real function):

* **gather** = ``gather_full_state``; **map** = the plan's ``Transition.operator``;
* **rebuild** = ``destroy_engine`` + ``build_model`` + ``load_state_dict`` (replicated) + ``build_engine`` +
  ``scatter_full_state`` (with rank0: the broadcast) + ``engine.train()`` (everything else in
  ``apply_transition``). Rank 1 of a rank0 chain runs no operator: its map time is 0.

Each chain starts from Apollo's first stage and applies three real transitions of two plans, with
training steps before and after each: Apollo ``N/2 -> N`` (``expand_depth``), then Multi-Level coalesce
``L0 -> L1`` (half width, half depth) and de-coalesce + interpolate ``L1 -> L0``. A step is
forward + backward + ``engine.step()`` of one micro-batch per rank running the model's own layers
(layer map ``range(n_layers)``), preceded by the rank-0 scheduler broadcast (``StepScheduler.decisions``)
of the phase's plan, timed separately; the broadcast is also timed in a tight loop (its pure cost).

Memory per rank is read from ``/proc/self/status``: ``VmRSS`` (resident now) and ``VmHWM`` (peak resident),
whose peak is reset by writing ``5`` to ``/proc/self/clear_refs`` right before what is measured (Linux >= 4.0;
the result records whether the reset worked). Steady state = the peak over the timed steps of a phase
(after a warm-up step has created gradients and AdamW moments); transition = the peak from just before
``apply_transition`` to its end, with the peak after each part recorded too. Before each reset the garbage
is collected and glibc's free memory handed back (``malloc_trim(0)``), so the RSS a region starts from is
close to the live bytes; inside the region, memory freed but kept by the allocator still counts (an upper
bound of the live bytes, as a real run would see it).

The variants' chains alternate inside each repetition (order flipped every repetition) so both see the
same machine noise; figures are medians over repetitions (and steps), taking the slower rank of each
measurement.

    python -m benchmarks.transition_cost --out benchmarks/results/transition-cost-cpu.json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import megagrow.trainer.transition as transition_mod  # noqa: E402
from benchmarks import command  # noqa: E402
from megagrow.checkpointing.rundir import RunDir  # noqa: E402
from megagrow.config import Config, load_config  # noqa: E402
from megagrow.distributed.engine import barrier, build_engine, init_distributed  # noqa: E402
from megagrow.distributed.env import DistEnv, free_port  # noqa: E402
from megagrow.distributed.scheduler import StepScheduler  # noqa: E402
from megagrow.growth.plans import Plan, Transition, build_plan  # noqa: E402
from megagrow.models import ModelConfig, build_model  # noqa: E402
from megagrow.state import FullState  # noqa: E402
from megagrow.trainer.run_state import Counters  # noqa: E402

MB = 2**20
# model name -> config overrides of the *target* model (the last Apollo stage, Multi-Level's level 0)
MODELS: dict[str, list[str]] = {
    "gpt-tiny": ["--model.size=gpt-tiny", "--model.vocab_size=8000"],  # configs/gpt-tiny.yaml, BPE 8000 vocab
    "gpt-110m": ["--model.size=gpt-base", "--model.vocab_size=32000"],  # 12 x 768, 12 heads, tied head
    # 24 layers, gpt-base's FFN (3072) kept: the largest shapes whose ZeRO-3 state fits this 23 GiB host
    "gpt-286m": ["--model.size=gpt-base", "--model.vocab_size=32000", "--model.n_layers=24", "--model.hidden=1024",
                 "--model.n_heads=16"],
    "gpt-504m": ["--model.size=gpt-base", "--model.vocab_size=32000", "--model.n_layers=24", "--model.hidden=1536",
                 "--model.n_heads=16"],
    "gpt-1.3b": ["--model.size=gpt-base", "--model.vocab_size=32000", "--model.n_layers=24", "--model.hidden=2048",
                 "--model.n_heads=16", "--model.ffn=8192"],  # GPT-3 1.3B's shape (does not fit this host)
}
LARGE_BATCH = {"gpt-286m": 1, "gpt-504m": 1, "gpt-1.3b": 1}  # micro-batch per rank (else --large-batch)
# Apollo step 1 (stage N/2 -> N); Multi-Level steps 2 (coalesce) and 3 (de-coalesce): one chain, 4 phases
APOLLO_STEP, COARSEN_STEP, REFINE_STEP, MAX_STEPS = 1, 2, 3, 10


# --------------------------------------------------------------------------------------------------
# memory (/proc/self/status) and timing of the parts of apply_transition


def mem_kb() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in kB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def _malloc_trim() -> None:
    """Hand glibc's cached free memory back to the kernel, so that RSS is (nearly) the live bytes."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def reset_peak() -> bool:
    """Collect garbage, trim the allocator, then reset ``VmHWM`` to the current RSS (``/proc/self/clear_refs``
    = 5); returns whether the kernel allowed the reset."""
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    m = mem_kb()
    return m["VmHWM"] <= m["VmRSS"] + 1024


def state_bytes(state: FullState) -> int:
    """Bytes of a full state: parameters plus AdamW moments (the step counter is negligible)."""
    return sum(t.numel() * t.element_size() for d in (state.params, state.exp_avg, state.exp_avg_sq)
               for t in d.values())


class PartTimer:
    """Seconds and the peak RSS after each wrapped call, collected into the open :meth:`record`."""

    def __init__(self) -> None:
        self.current: dict[str, Any] | None = None

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            dt = time.perf_counter() - t0
            if self.current is not None:
                self.current["parts_s"][part] = self.current["parts_s"].get(part, 0.0) + dt
                self.current["hwm_after_kb"][part] = mem_kb()["VmHWM"]
                if part == "stream":  # what the streamed executor did (StreamStats)
                    self.current["stream"] = asdict(result)
            return result

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    @contextmanager
    def record(self) -> Iterator[dict[str, Any]]:
        self.current = {"parts_s": {}, "hwm_after_kb": {}}
        try:
            yield self.current
        finally:
            self.current = None


TIMER = PartTimer()


def instrument_apply_transition() -> None:
    """Time the functions ``apply_transition`` calls (its module's names; the real functions run)."""
    for name, part in (("gather_full_state", "gather"), ("destroy_engine", "destroy"), ("build_model", "build_model"),
                       ("build_engine", "build_engine"), ("scatter_full_state", "scatter"),
                       ("copy_out_partitions", "copy_out"), ("stream_into", "stream"), ("realize_kept", "realize")):
        real = getattr(transition_mod, name)
        setattr(transition_mod, name, TIMER.wrap(part, getattr(real, "__wrapped__", real)))


def timed_operator(t: Transition, rec: dict[str, Any]) -> Transition:
    """``t`` with its operator timed as the ``map`` part; records the full-state bytes in and out."""

    def op(state: FullState) -> FullState:
        rec["state_in_bytes"] = state_bytes(state)
        rec["params_before"] = sum(v.numel() for v in state.params.values())
        out = TIMER.wrap("map", t.operator)(state)
        rec["state_out_bytes"] = state_bytes(out)
        rec["params_after"] = sum(v.numel() for v in out.params.values())
        return out

    return replace(t, operator=op)


# --------------------------------------------------------------------------------------------------
# one rank


@dataclass
class Session:
    """The part of the trainer's session that ``apply_transition`` reads and replaces (duck-typed there)."""

    cfg: Config
    env: DistEnv
    model_cfg: ModelConfig
    model: torch.nn.Module
    engine: Any
    run: RunDir
    plan: Any = None  # the plan whose transition runs (a streamed transition keeps its state in partitions)
    counters: Counters = field(default_factory=Counters)
    log: Callable[[str], None] = lambda _m: None


def parse_variant(variant: str) -> tuple[int, str]:
    """``z3`` -> (3, "auto"); ``z3-replicated`` -> (3, "replicated"); ``z2-rank0`` -> (2, "rank0");
    ``z3-streamed-memory`` -> (3, "streamed") with the old partitions kept in memory (see :func:`model_config`)."""
    stage, _, where = variant.partition("-")
    where = where.removesuffix("-memory")
    if (not stage.startswith("z") or not stage[1:].isdigit()
            or where not in ("", "auto", "replicated", "rank0", "streamed")):
        raise SystemExit(f"--variants: {variant!r} is not z<stage>[-auto|-replicated|-rank0|-streamed[-memory]]")
    return int(stage[1:]), where or "auto"


def model_config(name: str, variant: str, args: argparse.Namespace) -> Config:
    """The target model's config (growth fields are filled in by :func:`plans`)."""
    batch = args.tiny_batch if name == "gpt-tiny" else LARGE_BATCH.get(name, args.large_batch)
    zero, where = parse_variant(variant)
    spill = "memory" if variant.endswith("-memory") else "disk"
    return load_config(None, [*MODELS[name], f"--data.seq_len={args.seq_len}", f"--data.micro_batch_size={batch}",
                              f"--distributed.zero_stage={zero}", f"--distributed.full_state={where}",
                              f"--distributed.stream_spill={spill}", f"--distributed.bucket_elements={args.bucket}",
                              "--train.precision=fp32", "--train.grad_accum=1", f"--train.max_steps={MAX_STEPS}"])


def plans(cfg: Config) -> tuple[Plan, Plan]:
    """Apollo with stages ``[N/2, N]`` growing at :data:`APOLLO_STEP`, and a 2-level Multi-Level V-cycle
    coarsening at :data:`COARSEN_STEP` and refining at :data:`REFINE_STEP` (plan defaults otherwise)."""
    n = cfg.model.n_layers
    apollo_growth = replace(cfg.growth, plan="apollo", stages=[n // 2, n], boundaries=[APOLLO_STEP],
                            boundary_unit="steps")
    ml_growth = replace(cfg.growth, plan="multilevel", multilevel=replace(cfg.growth.multilevel, levels=2),
                        boundaries=[COARSEN_STEP, REFINE_STEP],
                        boundary_unit="steps")
    return (build_plan("apollo", n, apollo_growth, cfg.run.seed, MAX_STEPS, model=cfg.model),
            build_plan("multilevel", n, ml_growth, cfg.run.seed, MAX_STEPS, model=cfg.model))


def n_params(model: torch.nn.Module) -> int:
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def steady(s: Session, sched: StepScheduler, plan_step: int, batch: dict[str, torch.Tensor],
           n_steps: int, warm_up: bool = True) -> dict[str, Any]:
    """One warm-up step, then ``n_steps`` timed steps, each after the scheduler broadcast of ``plan_step``
    (``warm_up=False`` and no steps: only the resident memory of the engine as it stands, for models this host
    cannot train)."""
    layer_map = tuple(range(s.model_cfg.n_layers))

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        sched.decisions(plan_step, s.cfg.train.grad_accum)  # collective, as in _train_step
        t1 = time.perf_counter()
        out = s.engine(batch, layer_map)
        s.engine.backward(out.loss)
        s.engine.step()
        return time.perf_counter() - t1, t1 - t0, sched.seconds

    first = step()[0] if warm_up else None
    peak_ok = reset_peak()
    rss0 = mem_kb()["VmRSS"]
    steps, calls, bcasts = zip(*(step() for _ in range(n_steps)), strict=True) if n_steps else ((), (), ())
    return {"n_layers": s.model_cfg.n_layers, "hidden": s.model_cfg.hidden, "params": n_params(s.model),
            "first_step_s": first, "step_s": list(steps), "sched_call_s": list(calls), "sched_bcast_s": list(bcasts),
            "rss_start_kb": rss0, "peak_kb": mem_kb()["VmHWM"], "peak_reset_ok": peak_ok}


def sched_loop(sched: StepScheduler, plan_step: int, n_micro: int, calls: int) -> dict[str, list[float]]:
    """``calls`` back-to-back ``decisions`` calls (after a barrier): the broadcast's own cost."""
    barrier()
    call_s, bcast_s = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        sched.decisions(plan_step, n_micro)
        call_s.append(time.perf_counter() - t0)
        bcast_s.append(sched.seconds)
    return {"call_s": call_s, "bcast_s": bcast_s}


def transition(s: Session, t: Transition, step: int) -> dict[str, Any]:
    """The trainer's ``apply_transition`` at ``step``, timed by part, with the peak RSS around it."""
    s.counters.step = step
    barrier()
    peak_ok = reset_peak()
    before = mem_kb()["VmRSS"]
    with TIMER.record() as rec:
        t0 = time.perf_counter()
        transition_mod.apply_transition(s, timed_operator(t, rec), _no_batches)
        rec["total_s"] = time.perf_counter() - t0
    rec.update(name=t.name, rss_before_kb=before, peak_kb=mem_kb()["VmHWM"], rss_after_kb=mem_kb()["VmRSS"],
               peak_reset_ok=peak_ok)
    parts = rec["parts_s"]
    rec["gather_s"] = parts.get("gather", 0.0) + parts.get("copy_out", 0.0)  # streamed: its partitions out
    rec["rebuild_s"] = rec["total_s"] - rec["gather_s"] - parts.get("map", 0.0)
    return rec


def _no_batches(key: int) -> tuple[dict[str, torch.Tensor], int]:
    raise RuntimeError("only learned transitions (LiGO) read training data; this benchmark runs none")


def chain(name: str, zero: str, env: DistEnv, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Apollo stage 1 -> (Apollo growth) -> full model -> (coalesce) -> coarse -> (de-coalesce) -> full."""
    cfg = model_config(name, zero, args)
    apollo, multilevel = plans(cfg)
    gen = torch.Generator().manual_seed(1000 + env.rank)
    ids = torch.randint(0, cfg.model.vocab_size, (cfg.data.micro_batch_size, args.seq_len + 1), generator=gen)
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    torch.manual_seed(cfg.run.seed)
    model_cfg = replace(cfg.model, **apollo.arch_at(0))
    t0 = time.perf_counter()
    model = build_model(model_cfg)
    s = Session(cfg, env, model_cfg, model, build_engine(model, cfg, env.world_size), RunDir(Path(args.spill_dir)))
    s.engine.train()
    build_s = time.perf_counter() - t0
    scheds = {id(p): StepScheduler(p, env.rank, env.world_size, cfg.model.n_layers) for p in (apollo, multilevel)}
    train = name not in args.no_train.split(",")  # else: one step to create the AdamW state, then transitions only
    phases = [steady(s, scheds[id(apollo)], 0, batch, args.steps if train else 0)]
    log(f"{phases[-1]['n_layers']} layers: first step {phases[-1]['first_step_s']:.3f} s")
    transitions, loop = [], {}
    for plan, step in ((apollo, APOLLO_STEP), (multilevel, COARSEN_STEP), (multilevel, REFINE_STEP)):
        t = plan.transition(step)
        if t is None:
            raise RuntimeError(f"plan {plan.name} has no transition at step {step}")
        s.plan = plan
        transitions.append(transition(s, t, step))
        phases.append(steady(s, scheds[id(plan)], step, batch, args.steps if train else 0, warm_up=train))
        tr, ph = transitions[-1], phases[-1]
        then = f"; then step {statistics.median(ph['step_s']):.3f} s" if ph["step_s"] else ""
        log(f"{tr['name']}: gather {tr['gather_s']:.3f} map {tr['parts_s'].get('map', 0.0):.3f} "
            f"rebuild {tr['rebuild_s']:.3f} s{then}")
        if plan is apollo:  # the full model: time the scheduler's broadcast on its own
            loop = sched_loop(scheds[id(apollo)], step, cfg.train.grad_accum, args.sched_calls)
    transition_mod.destroy_engine(s.engine)
    return {"model": name, "zero": zero, "first_build_s": build_s, "phases": phases, "transitions": transitions,
            "sched_loop": loop}


def rank_main(rank: int, world: int, port: int, args: argparse.Namespace, out_dir: str) -> None:
    """One rank: every (repetition, model, ZeRO stage) chain in order; writes ``rank{rank}.json``."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    os.environ.pop("MEGAGROW_FAULT", None)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        if rank == 0:
            print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    models = [m for m in args.models.split(",") if m]
    stages = [v for v in args.variants.split(",") if v]
    for v in stages:
        parse_variant(v)
    env = init_distributed(model_config(models[0], stages[0], args))
    instrument_apply_transition()
    records: list[dict[str, Any]] = []
    error = None
    skip = {tuple(pair.split(":", 1)) for pair in args.skip.split(",") if pair}
    plan = [(rep, name, zero) for rep in range(max(args.tiny_reps, args.large_reps)) for name in models
            if rep < (args.tiny_reps if name == "gpt-tiny" else args.large_reps)
            for zero in (stages if rep % 2 == 0 else stages[::-1]) if (name, zero) not in skip]
    took: dict[str, list[float]] = {}  # seconds per chain, by model: the ETA of the chains left
    try:
        for k, (rep, name, zero) in enumerate(plan):
            left = [n for _, n, _ in plan[k:]]
            eta = (f", ETA {sum(statistics.mean(took[n]) for n in left):.0f} s" if all(n in took for n in left)
                   else "")
            log(f"chain {k + 1}/{len(plan)}{eta}: rep {rep + 1}: {name} {zero}")
            t_chain = time.perf_counter()
            rec = chain(name, zero, env, args, lambda m, p=f"  {name} {zero} ": log(p + m))
            took.setdefault(name, []).append(time.perf_counter() - t_chain)
            records.append({"rep": rep, **rec})
            gc.collect()
    except Exception:
        error = traceback.format_exc()
        log(error)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"records": records, "error": error,
                                                             "seconds": time.perf_counter() - t_start}))


# --------------------------------------------------------------------------------------------------
# aggregation (parent process)


def _med(values: list[float]) -> float:
    return statistics.median(values)


def summarize(ranks: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (model, ZeRO stage, transition): medians over repetitions of the slower rank."""
    groups: dict[tuple[str, str], list[tuple[dict, ...]]] = {}
    for recs in zip(*ranks, strict=True):  # the same chain on every rank
        groups.setdefault((recs[0]["model"], recs[0]["zero"]), []).append(recs)
    rows = []
    for (model, zero), runs in groups.items():
        n_tr = len(runs[0][0]["transitions"])

        def step_s(phase: int, runs: list[tuple[dict, ...]] = runs) -> float | None:
            # per timed step the slower rank, then the median over steps and repetitions (None: not trained)
            values = [max(r["phases"][phase]["step_s"][i] for r in recs) for recs in runs
                      for i in range(len(recs[0]["phases"][phase]["step_s"]))]
            return _med(values) if values else None

        loop_bcast = _med([max(r["sched_loop"]["bcast_s"][i] for r in recs) for recs in runs
                           for i in range(len(recs[0]["sched_loop"]["bcast_s"]))])
        loop_call = _med([max(r["sched_loop"]["call_s"][i] for r in recs) for recs in runs
                          for i in range(len(recs[0]["sched_loop"]["call_s"]))])
        insitu = _med([max(r["phases"][p]["sched_bcast_s"][i] for r in recs) for recs in runs
                       for p in range(len(recs[0]["phases"])) for i in range(len(recs[0]["phases"][p]["step_s"]))]
                      or [float("nan")])
        for k in range(n_tr):
            def part(key: str, k: int = k, runs: list[tuple[dict, ...]] = runs) -> float:
                return _med([max(r["transitions"][k]["parts_s"].get(key, 0.0) for r in recs) for recs in runs])

            def tr(key: str, k: int = k, runs: list[tuple[dict, ...]] = runs) -> float:
                return _med([max(r["transitions"][k][key] for r in recs) for recs in runs])

            first = runs[0][0]["transitions"][k]
            before, after = step_s(k), step_s(k + 1)
            trained = after is not None and before is not None
            first_after = (_med([max(r["phases"][k + 1]["first_step_s"] for r in recs) for recs in runs])
                           if trained else None)
            full_step = (after if first["params_after"] >= first["params_before"] else before) if trained else None
            total = tr("total_s")
            n_ranks = len(runs[0])
            peak_tr = [_med([recs[r]["transitions"][k]["peak_kb"] for recs in runs]) / 1024 for r in range(n_ranks)]
            rss_before = [_med([recs[r]["transitions"][k]["rss_before_kb"] for recs in runs]) / 1024
                          for r in range(n_ranks)]
            steady_start = [max(_med([recs[r]["phases"][p]["rss_start_kb"] for recs in runs]) for p in (k, k + 1))
                            / 1024 for r in range(n_ranks)]
            peak_steady = [max(_med([recs[r]["phases"][p]["peak_kb"] for recs in runs]) for p in (k, k + 1)) / 1024
                           for r in range(n_ranks)]
            hwm_parts = {p: _med([recs[0]["transitions"][k]["hwm_after_kb"][p] for recs in runs]) / 1024
                         for p in first["hwm_after_kb"]}
            streams = [[r["transitions"][k].get("stream") for r in recs] for recs in runs]
            group_mb = [max((st[r] or {}).get("peak_group_bytes", 0) for st in streams) / MB for r in range(n_ranks)]
            target = [st + 2 * g for st, g in zip(peak_steady, group_mb, strict=True)]
            rows.append({
                "model": model, "zero": zero, "ranks": n_ranks, "transition": first["name"],
                "params_before": first["params_before"], "params_after": first["params_after"],
                "layers": [runs[0][0]["phases"][k]["n_layers"], runs[0][0]["phases"][k + 1]["n_layers"]],
                "hidden": [runs[0][0]["phases"][k]["hidden"], runs[0][0]["phases"][k + 1]["hidden"]],
                "step_before_s": before, "step_after_s": after, "first_step_after_s": first_after,
                "gather_s": tr("gather_s"), "map_s": part("map"), "rebuild_s": tr("rebuild_s"),
                "rebuild_parts_s": {p: part(p) for p in ("destroy", "build_model", "build_engine", "scatter", "stream",
                                                         "realize")},
                "transition_s": total, "transition_per_step_after": total / after if trained else None,
                "state_in_mb": first["state_in_bytes"] / MB, "state_out_mb": first["state_out_bytes"] / MB,
                "sched_bcast_ms": loop_bcast * 1e3, "sched_call_ms": loop_call * 1e3,
                "sched_bcast_in_step_ms": insitu * 1e3, "sched_share_of_step": loop_bcast / after if trained else None,
                "peak_rss_transition_mb": peak_tr, "rss_before_transition_mb": rss_before,
                "transition_extra_mb": [pk - b for pk, b in zip(peak_tr, rss_before, strict=True)],
                "peak_rss_steady_mb": peak_steady,
                "rss_steady_start_mb": steady_start, "rank0_peak_after_part_mb": hwm_parts,
                "peak_reset_ok": all(r["transitions"][k]["peak_reset_ok"] for recs in runs for r in recs),
                "stream": streams[0][0], "largest_source_group_mb": group_mb,
                # issue 29's target: peak <= steady-state training peak + 2x the largest source group, and the
                # transition within 2 steps of the full model
                "target_peak_mb": target,
                "meets_memory_target": all(pk <= tg for pk, tg in zip(peak_tr, target, strict=True)),
                "meets_time_target": total <= 2 * full_step if full_step else None,
                "repetitions": len(runs),
            })
    return rows


def _fmt_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<9} {'variant':<13} {'transition':<34} {'params':>13} {'step s':>11} {'gather':>6} {'map':>6} "
            f"{'rebuild':>7} {'total':>6} {'/full':>6} {'bcast ms':>8} {'share':>6} {'peak tr MB':>11} "
            f"{'extra MB':>11} {'steady MB':>11} {'state MB':>11}")
    lines = [head]

    def num(v: float | None, fmt: str) -> str:
        return format(v, fmt) if v is not None else "-".rjust(len(format(0.0, fmt)))

    for r in rows:
        full = full_model_step_s(r)
        lines.append(
            f"{r['model']:<9} {r['zero']:<13} {r['transition'][:34]:<34} "
            f"{r['params_before'] / 1e6:5.1f}->{r['params_after'] / 1e6:5.1f}M "
            f"{num(r['step_before_s'], '5.2f')}->{num(r['step_after_s'], '<5.2f')} {r['gather_s']:6.2f} "
            f"{r['map_s']:6.2f} {r['rebuild_s']:7.2f} {r['transition_s']:6.2f} "
            f"{num(r['transition_s'] / full if full else None, '6.2f')} "
            f"{r['sched_bcast_ms']:8.3f} {num(r['sched_share_of_step'], '6.2%')} "
            f"{'/'.join(f'{v:.0f}' for v in r['peak_rss_transition_mb']):>11} "
            f"{'/'.join(f'{v:.0f}' for v in r['transition_extra_mb']):>11} "
            f"{'/'.join(f'{v:.0f}' for v in r['peak_rss_steady_mb']):>11} "
            f"{r['state_in_mb']:5.0f}->{r['state_out_mb']:<5.0f}")
    return "\n".join(lines)


def full_model_step_s(row: dict[str, Any]) -> float | None:
    """The step time of the larger model of a transition (docs/usage.md: "full-model step"): after a growth, before
    a coalescing."""
    return row["step_after_s"] if row["params_after"] >= row["params_before"] else row["step_before_s"]


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """Per model: stacked gather/map/rebuild bars in units of the full-model step's time (top) and each rank's
    peak RSS during the transition next to its steady-state training peak (bottom); one legend per row, right of
    the plots, kept inside the saved image; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(2, len(models), figsize=(7.5 * len(models) + 2.5, 9), squeeze=False)
    for col, model in enumerate(models):
        sub = [r for r in rows if r["model"] == model]
        labels = [f"{r['zero']} {r['transition'].split(' (')[0].replace(' + interpolate', '')}" for r in sub]
        ax = axes[0][col]
        bottom = [0.0] * len(sub)
        for key, color in (("gather_s", "tab:blue"), ("map_s", "tab:orange"), ("rebuild_s", "tab:green")):
            vals = [r[key] / (full_model_step_s(r) or float("nan")) for r in sub]
            ax.barh(labels, vals, left=bottom, color=color, label=key.removesuffix("_s"))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_title(f"{model}: transition time in full-model steps")
        ax.set_xlabel("seconds / step time of the full model (12 layers, full width)")
        ax.invert_yaxis()
        ax = axes[1][col]
        ys = list(range(len(sub)))
        for rank, (off, color) in enumerate(((-0.2, "tab:purple"), (0.2, "tab:cyan"))):
            ax.barh([y + off for y in ys], [r["peak_rss_transition_mb"][rank] for r in sub], height=0.4,
                    color=color, label=f"rank {rank}: peak in transition")
            ax.scatter([r["peak_rss_steady_mb"][rank] for r in sub], [y + off for y in ys], marker="|", s=120,
                       color="black", label="steady-state training peak" if rank == 0 else None, zorder=3)
        ax.set_yticks(ys, labels)
        ax.set_title(f"{model}: peak resident memory per rank (MB)")
        ax.set_xlabel("MB (VmHWM)")
        ax.invert_yaxis()
    for row in axes:
        handles, names = row[0].get_legend_handles_labels()
        row[-1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
    fig.suptitle("growth transitions under DeepSpeed, 2 gloo ranks on a 2-core CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return True


def _kind(transition: str) -> str:
    return transition.split(" ")[0].split("-")[0] if not transition.startswith("de-") else "de-coalesce"


def plot_sizes(rows: list[dict[str, Any]], path: Path) -> bool:
    """Peak resident memory during each kind of transition (the busier rank) against the model's size, one line
    per placement, with the steady-state training peak and issue 29's target (steady + 2x the largest source
    group) of the streamed rows; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from matplotlib.ticker import ScalarFormatter

    kinds = list(dict.fromkeys(_kind(r["transition"]) for r in rows))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds) + 2, 4.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        sub = [r for r in rows if _kind(r["transition"]) == kind]
        for variant in dict.fromkeys(r["zero"] for r in sub):
            pts = sorted((max(r["params_before"], r["params_after"]) / 1e6, max(r["peak_rss_transition_mb"]) / 1024)
                         for r in sub if r["zero"] == variant)
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{variant}: peak in transition")
        ref = [r for r in sub if "streamed" in r["zero"]] or sub
        for key, style, label in (("peak_rss_steady_mb", "k--", "steady state (training peak; x: the engine's "
                                                                 "resident memory, untrainable here)"),
                                  ("target_peak_mb", "k:", "target: steady + 2 x largest source group")):
            pts = sorted((max(r["params_before"], r["params_after"]) / 1e6, max(r[key]) / 1024) for r in ref)
            ax.plot(*zip(*pts, strict=True), style, label=label)
            untrained = [(max(r["params_before"], r["params_after"]) / 1e6, max(r[key]) / 1024) for r in ref
                         if r["step_after_s"] is None or r["step_before_s"] is None]
            if untrained and key == "peak_rss_steady_mb":
                ax.scatter(*zip(*untrained, strict=True), marker="x", color="black", zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.set_title(kind)
        ax.set_xlabel("parameters of the larger model (M)")
        ax.set_ylabel("GB per rank (VmHWM, busier rank)")
    handles, names = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
    ranks = sorted({r.get("ranks", 2) for r in rows})
    fig.suptitle("peak memory of a growth transition against model size, ZeRO-3, "
                 f"{'/'.join(map(str, ranks))} gloo ranks on one CPU host")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return True


def sizes_plot(paths: list[Path], out: Path) -> None:
    """The memory-vs-size plot of the rows of several result files (e.g. the trainable sizes and a --no-train one)."""
    rows = [r for p in paths for r in json.loads(p.read_text())["rows"]]
    print(f"wrote {out}" if plot_sizes(rows, out) else "matplotlib is not installed")


def replot(json_path: Path) -> None:
    """Re-draw the PNG (and print the table) of a result file without re-running the benchmark."""
    rows = json.loads(json_path.read_text())["rows"]
    print(_fmt_table(rows))
    png = json_path.with_suffix(".png")
    print(f"wrote {png}" if plot(rows, png) else "matplotlib is not installed")
    sizes = json_path.with_name(json_path.stem + "-sizes.png")
    if len({r["model"] for r in rows}) > 1 and plot_sizes(rows, sizes):
        print(f"wrote {sizes}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.transition_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="gpt-tiny,gpt-110m", help=f"comma list of {sorted(MODELS)}")
    p.add_argument("--variants", default="z2,z3-rank0,z3-replicated,z3-streamed",
                   help="ZeRO stage and distributed.full_state, measured side by side: "
                        "z<stage>[-replicated|-rank0|-streamed[-memory]] (default placement: streamed under ZeRO-3, "
                        "replicated otherwise; -memory: the old partitions kept in RAM instead of spilled)")
    p.add_argument("--skip", default="", help="comma list of model:variant pairs not to run (those that cannot fit)")
    p.add_argument("--world", type=int, default=2, help="ranks (gloo, one thread each)")
    p.add_argument("--bucket", type=int, default=0, help="distributed.bucket_elements (0: DeepSpeed's defaults)")
    p.add_argument("--no-train", default="", help="comma list of models this host cannot train: one step creates "
                   "the AdamW state, then only transitions (steady state = the engine's resident memory)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--tiny-batch", type=int, default=16, help="gpt-tiny micro-batch per rank (configs/gpt-tiny.yaml)")
    p.add_argument("--large-batch", type=int, default=2, help="gpt-110m micro-batch per rank")
    p.add_argument("--tiny-reps", type=int, default=3, help="repetitions of every gpt-tiny chain")
    p.add_argument("--large-reps", type=int, default=2, help="repetitions of every gpt-110m chain")
    p.add_argument("--steps", type=int, default=2, help="timed steps per phase (after 1 warm-up step)")
    p.add_argument("--sched-calls", type=int, default=200, help="back-to-back scheduler calls timed per chain")
    p.add_argument("--timeout", type=float, default=1500, help="seconds before the ranks are killed")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/transition-cost-cpu.json")
    p.add_argument("--replot", type=Path, help="only re-draw the PNG of this result JSON")
    p.add_argument("--sizes-plot", type=Path, nargs="+", metavar=("OUT.png", "RESULT.json"),
                   help="only draw the memory-vs-size plot of these result files into OUT.png")
    args = p.parse_args()
    if args.replot:
        replot(args.replot)
        return
    if args.sizes_plot:
        sizes_plot(args.sizes_plot[1:], args.sizes_plot[0])
        return
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="transition-cost-") as tmp:
        args.spill_dir = str(Path(tmp) / "run")  # streamed transitions spill the old partitions under .transition/
        ctx = torch.multiprocessing.start_processes(rank_main, args=(args.world, free_port(), args, tmp),
                                                    nprocs=args.world,
                                                    join=False, start_method="spawn")
        deadline = time.time() + args.timeout
        try:
            while not ctx.join(timeout=5):
                if time.time() > deadline:
                    raise TimeoutError(f"the {args.world} ranks did not finish in {args.timeout:.0f} s")
        finally:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
        outs = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(args.world)]
    errors = [o["error"] for o in outs if o["error"]]
    if errors:
        raise SystemExit("\n".join(f"rank {r} failed:\n{o['error']}" for r, o in enumerate(outs) if o["error"]))
    rows = summarize([o["records"] for o in outs])
    png = args.out.with_suffix(".png")
    result = {
        "benchmark": "transition_cost",
        "command": command("benchmarks.transition_cost"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "ranks": args.world, "threads_per_rank": 1, "backend": "gloo",
                    "loadavg_start": load0, "loadavg_end": os.getloadavg()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": time.perf_counter() - t0,
        "memory_note": "RSS from /proc/self/status; peaks = VmHWM after resetting it (/proc/self/clear_refs = 5) "
                       "right before the measured region; glibc-cached freed memory counts as resident",
        "rows": rows,
        "raw": {f"rank{r}": o["records"] for r, o in enumerate(outs)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(args.out)
    print(_fmt_table(rows))
    print(f"wrote {args.out}" + (f" and {png}" if plot(rows, png) else " (no PNG: matplotlib is not installed)"))
    sizes = args.out.with_name(args.out.stem + "-sizes.png")
    if len({r["model"] for r in rows}) > 1 and plot_sizes(rows, sizes):
        print(f"wrote {sizes}")
    print(f"wall {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
