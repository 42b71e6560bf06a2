"""Throughput: megagrow's training step against a plain PyTorch loop, interleaved, per model size.

    python -m benchmarks.throughput.run --sizes bench tiny 100m --rounds 3            # CPU, fp32
    python -m benchmarks.throughput.run --device cuda --precision bf16 --sizes gpt-base \\
        --variants plain plain-compile megagrow-z0 megagrow-z0-compile megagrow-z2 --data DIR   # one GPU

Variants (each a fresh process, so that no variant inherits another's allocator or compiled state):

* ``plain``: a training loop written here over megagrow's model modules (the same math and shapes), the same
  samples (collated up front), torch AdamW (fused) over the same parameter groups, the same gradient clipping;
  bf16 through ``torch.autocast`` with fp32 weights (the plain PyTorch way). It reads the loss back only at the end:
  the floor a hand-written loop reaches.
* ``plain-compile``: the same with ``torch.compile`` of the model.
* ``plain-tcmalloc`` (CPU): the plain loop with tcmalloc preloaded, the allocator ``megagrow train`` preloads on CPU
  runs (``train.allocator: auto``): megagrow's step against the same loop on the same allocator.
* ``megagrow-z0`` / ``-z2``: the real ``megagrow train`` path (config loading, the plan, the data loader, the
  DeepSpeed engine at ZeRO-0 / ZeRO-2, the per-step bookkeeping and metrics) on one rank; bf16 is DeepSpeed's bf16
  (bf16 weights and activations, fp32 master weights). Its tokens/s are read from ``metrics.jsonl`` over the steps
  after the warmup.
* ``megagrow-z0-compile``: ``megagrow train`` with ``train.compile=true``.
* ``megagrow-z0-ckpt``: ``megagrow train`` with ``train.activation_checkpointing=true`` (the price of recomputing
  every block in the backward pass; the memory it saves: ``activation_memory.py``).
* ``megagrow-z0-autocast`` / ``-z2-autocast`` / ``-z0-autocast-compile`` (with ``--precision bf16``): ``megagrow train``
  with ``train.precision=bf16-autocast`` (fp32 weights, bf16 matmuls under torch.autocast, the optimizer is torch
  AdamW itself) instead of DeepSpeed's bf16 optimizer wrapper.
* ``megagrow-auto`` / ``-auto-compile``: ``megagrow train`` at ZeRO-0 with no ``train.precision`` override, i.e. the
  trainer's default ``auto`` (bf16-autocast on a CUDA GPU with bf16, fp32 elsewhere): what a user gets. The
  precision it resolved to is recorded (``resolved_precision``).
* ``-chunk`` (``megagrow-auto-chunk``, ``megagrow-auto-compile-chunk``): with ``train.loss_chunk=--loss-chunk``
  (the LM head and cross-entropy N positions at a time).
* ``-pb`` (``megagrow-auto-compile-pb``): for the sizes that measure a growth plan's small first phase
  (``*-msg-half``), with ``train.phase_batching=auto`` (the phase's micro-batches merged); the other variants run
  those sizes with ``phase_batching=off``. Skipped (recorded as ``skipped``) where the trainer has no
  ``train.phase_batching``. The plain loop has no growth plan and skips those sizes.

Per megagrow variant the JSON also records the ``compile_*`` statistics the trainer writes to ``metrics.jsonl``
(where it writes any) and each measurement's start and end (``t``, Unix seconds: ``--merge --gpu-memory-csv``
matches them against an ``nvidia-smi`` memory log).

Every variant runs ``--warmup`` steps, then ``--steps`` timed steps; ``--rounds`` repeats the whole set of variants
in turn (interleaved: A B C A B C ...) so that a noisy machine slows every variant alike. Reported: the median
tokens/s of each variant over the rounds, its ratio to ``plain``'s median (the overhead is ``1 - ratio``), the
achieved model FLOP/s (megagrow.flops, the convention of the rest of megagrow) as a fraction of a large matmul's
FLOP/s measured here (the practical peak) and, on a GPU with a datasheet entry, of the datasheet peak (MFU).
Results go to ``--out`` (JSON, rewritten after every measurement) and a PNG beside it. ``--merge A.json B.json ...
--out C.json`` merges the results of several invocations (e.g. one per size with its own variants:
``gpu-check.sh``) into one JSON, PNG and table.

The GPU sizes ``gpt-base-fill`` and ``gpt-medium`` take their micro-batch (and ``gpt-medium`` its shape) from the GPU
presets ``configs/gpu/gpt-base.yaml`` / ``gpt-medium.yaml``; ``--loss-chunk`` defaults to the GPT-Base preset's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import command

ROOT = Path(__file__).resolve().parents[2]  # the checkout: on the workers' PYTHONPATH (its megagrow, this package)
BASE = ROOT / "benchmarks" / "throughput" / "configs" / "gpt.yaml"
GPU_PRESETS = ROOT / "configs" / "gpu"
_NO_DROPOUT = ("--model.dropout=0", "--model.attn_dropout=0")


def preset(name: str) -> dict:
    """The raw tree of the GPU preset ``configs/gpu/<name>.yaml`` (with its includes, unvalidated)."""
    from megagrow.config import config_tree

    return config_tree(GPU_PRESETS / f"{name}.yaml")


_GPT_BASE = preset("gpt-base")
_GPT_MEDIUM = preset("gpt-medium")
_BASE_MB, _MEDIUM_MB = _GPT_BASE["data"]["micro_batch_size"], _GPT_MEDIUM["data"]["micro_batch_size"]
_GPT_MEDIUM_SHAPE = tuple(f"--model.{k}={_GPT_MEDIUM['model'][k]}" for k in ("n_layers", "hidden", "n_heads", "ffn"))


@dataclass(frozen=True)
class Size:
    overrides: tuple[str, ...]
    note: str
    # a growth plan whose FIRST phase is measured: the plan's growth step is placed after the measured steps and the
    # run stops at the last measured step (train.exit_at_step); the plain loop skips such a size
    plan: str | None = None


SIZES: dict[str, Size] = {
    "micro": Size(("--model.n_layers=12", "--model.hidden=32", "--model.n_heads=2", "--model.ffn=64",
                   "--data.seq_len=16", "--data.micro_batch_size=2"),
                  "a host-overhead probe: GPT 12 x 32, 2 x 16 tokens per step; the model's math is negligible, so a "
                  "step's time is what a GPU step costs the host (Python, dispatch, DeepSpeed, bookkeeping)"),
    "bench": Size((), "the acceleration suites' GPT (gpt-bench, 12 x 56), vocab 2048, 16 x 128 tokens per step"),
    "bench-half": Size(("--model.n_layers=6", "--model.hidden=28", "--model.n_heads=2", "--model.ffn=112"),
                       "the half-width, half-depth gpt-bench (6 x 28): Multi-level's coarse model, bert2bert's start "
                       "and the credibility check's model; its time per FLOP against bench's is what a small phase "
                       "costs"),
    "tiny": Size(("--model.size=gpt-tiny", *_NO_DROPOUT),
                 "gpt-tiny (12 x 256), vocab 2048, 16 x 128 tokens per step"),
    "100m": Size(("--model.size=gpt-base", *_NO_DROPOUT, "--data.seq_len=256", "--data.micro_batch_size=4"),
                 "GPT 12 x 768 (gpt-base; 87M parameters with vocab 2048), 4 x 256 tokens per step"),
    "gpt-base": Size(("--model.size=gpt-base", *_NO_DROPOUT, "--data.seq_len=1024", "--data.micro_batch_size=16"),
                     "GPT-Base 12 x 768, seq 1024, 16 x 1024 tokens per step (GPU; --data a 32k-vocab dataset)"),
    "gpt-base-half": Size(("--model.size=gpt-base", *_NO_DROPOUT, "--model.n_layers=6", "--model.hidden=384",
                           "--model.n_heads=6", "--model.ffn=1536", "--data.seq_len=1024",
                           "--data.micro_batch_size=16"),
                          "GPT-Base's half-width, half-depth model (6 x 384: Multi-level's coarse model, MSG's and "
                          "bert2bert's start), the same 16 x 1024 tokens per step; its time per FLOP against "
                          "gpt-base's is what a small phase costs on a GPU"),
    "gpt-base-half-x4": Size(("--model.size=gpt-base", *_NO_DROPOUT, "--model.n_layers=6", "--model.hidden=384",
                              "--model.n_heads=6", "--model.ffn=1536", "--data.seq_len=1024",
                              "--data.micro_batch_size=64"),
                             "gpt-base-half with 4x the tokens per step (64 x 1024): about the full model's FLOPs "
                             "per step; does a small phase's time per FLOP recover with a larger batch?"),
    "gpt-base-fill": Size(("--model.size=gpt-base", *_NO_DROPOUT, "--data.seq_len=1024",
                           f"--data.micro_batch_size={_BASE_MB}"),
                          f"GPT-Base 12 x 768, seq 1024, at the GPU preset's micro-batch ({_BASE_MB} x 1024 tokens "
                          "per step, configs/gpu/gpt-base.yaml)"),
    "gpt-medium": Size(("--model.size=gpt-base", *_NO_DROPOUT, *_GPT_MEDIUM_SHAPE, "--data.seq_len=1024",
                        f"--data.micro_batch_size={_MEDIUM_MB}"),
                       f"GPT-Medium 24 x 1024, seq 1024, at the GPU preset's micro-batch ({_MEDIUM_MB} x 1024 tokens "
                       "per step, configs/gpu/gpt-medium.yaml)"),
    "gpt-base-msg-half": Size(("--model.size=gpt-base", *_NO_DROPOUT, "--data.seq_len=1024",
                               "--data.micro_batch_size=16", "--train.grad_accum=4"),
                              "GPT-Base under MSG, measured in its first stage (the half-width, half-depth 6 x 384 "
                              "model, gpt-base-half's), 4 micro-batches of 16 x 1024 per step: with -pb "
                              "(train.phase_batching=auto) they run merged as one of 64 x 1024", plan="msg"),
    "micro-msg-half": Size(("--model.n_layers=12", "--model.hidden=32", "--model.n_heads=2", "--model.ffn=64",
                            "--data.seq_len=16", "--data.micro_batch_size=2", "--train.grad_accum=4"),
                           "micro under MSG, measured in its first stage (6 x 16), 4 micro-batches of 2 x 16 per "
                           "step (the plumbing of gpt-base-msg-half on a CPU)", plan="msg"),
}
VARIANTS = ("plain", "plain-tcmalloc", "plain-compile", "megagrow-z0", "megagrow-z2", "megagrow-z0-compile",
            "megagrow-z0-autocast",
            "megagrow-z2-autocast", "megagrow-z0-autocast-compile", "megagrow-z0-ckpt", "megagrow-auto",
            "megagrow-auto-compile", "megagrow-auto-chunk", "megagrow-auto-compile-chunk", "megagrow-auto-compile-pb")


class Skipped(RuntimeError):
    """A variant that does not apply here (recorded as ``skipped``, not as a failure)."""


def variant_parts(variant: str) -> set[str]:
    """``megagrow-auto-compile-chunk`` -> {"auto", "compile", "chunk"}."""
    return set(variant.split("-")[1:])


def size_overrides(size: str, data: str | None, precision: str | None) -> list[str]:
    """The size's overrides, ``--train.precision`` unless ``precision`` is None (the base config's: auto)."""
    out = [*SIZES[size].overrides, *([f"--train.precision={precision}"] if precision else [])]
    if data:
        out.append(f"--data.path={data}")
    return out


def has_train_field(name: str) -> bool:
    """Whether this megagrow's TrainConfig has ``train.<name>`` (features that land later are skipped, not failed)."""
    import dataclasses

    from megagrow.config import TrainConfig

    return name in {f.name for f in dataclasses.fields(TrainConfig)}


# ----------------------------------------------------------------------------------------------- the plain loop


def plain_worker(args: argparse.Namespace) -> dict:
    import torch

    from megagrow.config import load_config
    from megagrow.data.factory import build_data
    from megagrow.data.loader import GlobalBatchLoader
    from megagrow.distributed.engine import compile_in_place, param_groups
    from megagrow.flops import train_flops
    from megagrow.models import build_model
    from megagrow.trainer.profiling import StepProfiler, phase

    cfg = load_config(str(BASE), size_overrides(args.size, args.data, args.precision))
    torch.manual_seed(cfg.run.seed)
    data = build_data(cfg.data, cfg.model, cfg.run.seed)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = data.vocab_size
    device = torch.device(args.device)
    model = build_model(cfg.model).to(device)
    if args.worker == "plain-compile":
        compile_in_place(model)
    o = cfg.optim
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                            fused=True)
    params = [p for p in model.parameters() if p.requires_grad]
    loader = GlobalBatchLoader(data.train, cfg.data.micro_batch_size, 1, 0, cfg.run.seed)
    n = args.warmup + args.steps
    pin = device.type == "cuda"
    batches = [{k: (v.pin_memory() if pin else v) for k, v in loader.next_micro_batch().items()} for _ in range(n)]
    layer_map = model.full_layer_map()
    bf16 = args.precision.startswith("bf16")

    def step(batch: dict) -> torch.Tensor:
        with phase("data"):
            b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with phase("forward"), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(b, layer_map)
        with phase("backward"):
            out.loss.backward()
        with phase("clip"):
            if o.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        with phase("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        return out.loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    for b in batches[: args.warmup]:
        step(b)
    sync()
    if args.profile:
        with tempfile.TemporaryDirectory() as d:
            prof = StepProfiler([args.warmup + 1, args.warmup + args.steps], Path(d), True)
            for i, b in enumerate(batches[args.warmup:], start=args.warmup + 1):
                prof.before(i)
                step(b)
                prof.after(i)
            return {"profile": json.loads((Path(d) / "profile.json").read_text())}
    t0 = time.perf_counter()
    losses = [step(b) for b in batches[args.warmup:]]
    sync()
    wall = time.perf_counter() - t0
    tokens = args.steps * cfg.data.micro_batch_size * data.seq_len
    flops = train_flops(model.arch(), len(layer_map), cfg.data.micro_batch_size, data.seq_len,
                        cfg.data.micro_batch_size * data.seq_len)
    out = {"tokens_per_s": tokens / wall, "flops_per_step": flops, "steps": args.steps, "wall_s": wall,
           "final_loss": float(losses[-1]), "params": sum(p.numel() for p in params)}
    if device.type == "cuda":
        out["max_memory_allocated"] = torch.cuda.max_memory_allocated()
        out["max_memory_reserved"] = torch.cuda.max_memory_reserved()
    return out


# ------------------------------------------------------------------------------------------- the megagrow path


def megagrow_profile(args: argparse.Namespace, variant: str, tmp: Path) -> dict:
    """The step breakdown of a megagrow variant (logging.profile_steps over the steps after the warmup)."""
    name = f"{args.size}-{variant}-profile"
    window = f"--logging.profile_steps=[{args.warmup + 1},{args.warmup + args.profile_steps}]"
    megagrow_run(args, variant, tmp, name=name, extra=[window], steps=args.profile_steps)
    return json.loads((tmp / name / "profile.json").read_text())


def megagrow_run(args: argparse.Namespace, variant: str, tmp: Path, name: str | None = None,
                 extra: list[str] | None = None, steps: int | None = None) -> dict:
    """``megagrow train`` as a user runs it; tokens/s and FLOPs from its metrics.jsonl after the warmup."""
    parts = variant_parts(variant)
    zero = 2 if "z2" in parts else 0
    name = name or f"{args.size}-{variant}"
    steps = steps or args.steps
    precision: str | None = args.precision
    if "auto" in parts:
        precision = None  # the base config's train.precision: auto
    elif "autocast" in parts:
        if precision == "fp32":
            raise RuntimeError(f"{variant}: needs --precision bf16")
        precision = "bf16-autocast"
    variant_args = []
    if "chunk" in parts:
        variant_args.append(f"--train.loss_chunk={args.loss_chunk}")
    size = SIZES[args.size]
    if "pb" in parts and not has_train_field("phase_batching"):
        raise Skipped(f"{variant}: this megagrow has no train.phase_batching")
    if size.plan:
        # the plan's first phase over the whole measurement: growth one step after it, the run stopped before it
        last = args.warmup + steps
        variant_args += [f"--growth.plan={size.plan}", "--growth.boundary_unit=steps",
                         f"--growth.boundaries=[{last + 1}]", f"--train.exit_at_step={last}",
                         "--checkpoint.save_final=false"]
        if has_train_field("phase_batching"):
            variant_args.append(f"--train.phase_batching={'auto' if 'pb' in parts else 'off'}")
        max_steps = last + 2
    else:
        max_steps = args.warmup + steps
    cmd = [sys.executable, "-m", "megagrow.cli", "train", str(BASE), f"--run.out_dir={tmp}", f"--run.name={name}",
           *size_overrides(args.size, args.data, precision), f"--distributed.zero_stage={zero}",
           f"--train.max_steps={max_steps}", f"--logging.log_every={args.log_every}",
           f"--train.compile={'true' if 'compile' in parts else 'false'}",
           f"--train.activation_checkpointing={'true' if 'ckpt' in parts else 'false'}", *variant_args, *(extra or [])]
    proc = _run(cmd, args)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: megagrow train exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    all_records = [json.loads(line) for line in (tmp / name / "metrics.jsonl").read_text().splitlines()
                   if line.strip()]
    records = [r for r in all_records if "tokens_per_s" in r]
    steps_wanted = steps
    prev_tokens, tokens, wall, flops, steps = 0, 0, 0.0, 0, 0
    last: dict = {}
    for r in records:
        d_tokens = r["tokens"] - prev_tokens
        if r["step"] > args.warmup:
            tokens += d_tokens
            wall += d_tokens / r["tokens_per_s"]
            flops += r["flops"] - last.get("flops", 0)
            steps += r["step"] - last.get("step", 0)
        prev_tokens, last = r["tokens"], r
    if steps != (n_expected := steps_wanted):
        raise RuntimeError(f"{name}: metrics.jsonl covers {steps} steps after the warmup, expected {n_expected} "
                           f"(--warmup and --steps must be multiples of --log-every)")
    out = {"tokens_per_s": tokens / wall, "flops_per_step": flops // steps, "steps": steps, "wall_s": wall,
           "final_loss": last["loss"]}
    # compile statistics, where the trainer writes them (cumulative: the last value of each key)
    compile_stats = {k: v for r in all_records for k, v in r.items() if k.startswith("compile_")}
    if compile_stats:
        out["compile_stats"] = compile_stats
    try:
        import yaml

        out["resolved_precision"] = yaml.safe_load((tmp / name / "config.yaml").read_text())["train"]["precision"]
    except (OSError, KeyError, TypeError):
        pass
    return out


# ------------------------------------------------------------------------------------------------- the peak


def matmul_peak(device: str, precision: str, threads: int) -> dict:
    """FLOP/s of a large square matmul in the training precision: the practical peak of this machine."""
    import torch

    torch.set_num_threads(threads)
    n = 8192 if device == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device == "cuda" else 5
    times = []
    for _ in range(3 + reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times[3:])
    return {"n": n, "dtype": str(dtype), "flops_per_s": 2 * n**3 / t}


# ---------------------------------------------------------------------------------------------------- driver


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    if args.device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _run(cmd: list[str], args: argparse.Namespace, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env or _env(args), capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timed out after {args.timeout} s: {shlex.join(cmd)}") from e


def measure(args: argparse.Namespace, variant: str, tmp: Path) -> dict:
    if variant.startswith("megagrow"):
        return megagrow_run(args, variant, tmp)
    if SIZES[args.size].plan:
        raise Skipped(f"{args.size}: the plain loop has no growth plan")
    env = None
    if variant.endswith("-tcmalloc"):  # the plain loop with the allocator megagrow's train.allocator=auto preloads
        from megagrow.trainer.allocator import plan_exec

        env, _note = plan_exec("tcmalloc", _env(args), on_cpu=True)
        variant = variant.removesuffix("-tcmalloc")
    cmd = [sys.executable, "-m", "benchmarks.throughput.run", "--worker", variant, "--size", args.size,
           "--device", args.device, "--precision", args.precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), *(["--data", args.data] if args.data else []),
           *(["--profile"] if getattr(args, "profile", False) else [])]
    proc = _run(cmd, args, env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant}: worker exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def machine(args: argparse.Namespace) -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "device": args.device, "threads": args.threads, "cpus": os.cpu_count()}
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def summarize(result: dict, peak: dict, datasheet: float | None) -> None:
    for size_res in result["sizes"].values():
        runs = size_res["variants"]
        base = statistics.median(runs["plain"]["tokens_per_s"]) if runs.get("plain", {}).get("tokens_per_s") else None
        for v in runs.values():
            if not v["tokens_per_s"]:
                continue
            med = statistics.median(v["tokens_per_s"])
            v["median_tokens_per_s"] = med
            v["ratio_to_plain"] = med / base if base else None
            # the same round's measurements side by side: the machine's drift between rounds cancels in each ratio
            plain_runs = runs.get("plain", {}).get("tokens_per_s", [])
            paired = [x / b for x, b in zip(v["tokens_per_s"], plain_runs, strict=False)]
            v["paired_ratios"] = paired
            v["paired_ratio_to_plain"] = statistics.median(paired) if paired else None
            same_alloc = runs.get("plain-tcmalloc", {}).get("tokens_per_s", [])
            if same_alloc:  # against the plain loop on megagrow's CPU allocator (tcmalloc), round by round
                v["paired_ratio_to_plain_tcmalloc"] = statistics.median(
                    x / b for x, b in zip(v["tokens_per_s"], same_alloc, strict=False))
            flops_per_s = med / v.get("tokens_per_step", size_res["tokens_per_step"]) * v["flops_per_step"]
            v["model_flops_per_s"] = flops_per_s
            v["fraction_of_matmul_peak"] = flops_per_s / peak["flops_per_s"]
            v["mfu"] = flops_per_s / datasheet if datasheet else None


def table(result: dict) -> str:
    sw = max([10, *map(len, result["sizes"])])
    vw = max([21, *(len(n) for sr in result["sizes"].values() for n in sr["variants"])])
    lines = [f"{'size':<{sw}} {'variant':<{vw}} {'tokens/s':>12} {'vs plain':>9} {'paired':>7} {'GFLOP/s':>10} "
             f"{'of matmul':>10} {'MFU':>6}  rounds"]
    for size, sr in result["sizes"].items():
        for name, v in sr["variants"].items():
            if "median_tokens_per_s" not in v:
                state = "failed" if v.get("error") else "skipped" if v.get("skipped") else "-"
                lines.append(f"{size:<{sw}} {name:<{vw}} {state:>12}")
                continue
            ratio = f"{v['ratio_to_plain']:.3f}" if v["ratio_to_plain"] else "-"
            mfu = f"{v['mfu']:.1%}" if v.get("mfu") else "-"
            rounds = " ".join(f"{x:,.0f}" for x in v["tokens_per_s"])
            paired = f"{v['paired_ratio_to_plain']:.3f}" if v.get("paired_ratio_to_plain") else "-"
            lines.append(f"{size:<{sw}} {name:<{vw}} {v['median_tokens_per_s']:>12,.0f} {ratio:>9} {paired:>7} "
                         f"{v['model_flops_per_s'] / 1e9:>10,.1f} {v['fraction_of_matmul_peak']:>10.1%} {mfu:>6}  "
                         f"{rounds}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(result["sizes"])
    variants = [v for v in VARIANTS if any(v in result["sizes"][s]["variants"] for s in sizes)]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(sizes), 4))
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        ys = [result["sizes"][s]["variants"].get(v, {}).get("ratio_to_plain") or 0.0 for s in sizes]
        ax.bar([j + i * width for j in range(len(sizes))], ys, width, label=v)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.95, color="r", lw=0.8, ls="--", label="5% overhead")
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(sizes))], sizes)
    ax.set_ylabel("tokens/s relative to the plain PyTorch loop")
    m = result["machine"]
    ax.set_title(f"megagrow step vs plain loop ({m.get('gpu', 'CPU')}, {result['precision']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gpu_memory_peaks(result: dict, csv_path: str) -> None:
    """Each variant's peak ``memory.used`` (MiB) in an nvidia-smi log during its measurements (``t``)."""
    import datetime

    samples = []
    for line in Path(csv_path).read_text().splitlines():
        fields = [x.strip() for x in line.split(",")]
        try:
            stamp = datetime.datetime.strptime(fields[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            samples.append((stamp, float(fields[1].split()[0])))
        except (ValueError, IndexError):
            continue  # a header or a cut line
    for sr in result["sizes"].values():
        for v in sr["variants"].values():
            used = [mib for t0, t1 in v.get("t", []) for t, mib in samples if t0 <= t <= t1]
            if used:
                v["gpu_memory_used_peak_mib"] = max(used)


def merge_results(paths: list[Path], out: Path, memory_csv: str | None = None) -> dict:
    """Several invocations' results as one: the first file's machine and peak, every size and variant (the rounds of a
    variant measured in several files appended), summarized again; JSON, PNG and table as after a run."""
    parts = []
    for path in paths:
        try:
            parts.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            print(f"merge: {path} left out ({e})", flush=True)
    if not parts:
        raise SystemExit("merge: no result file to merge")
    result = {k: v for k, v in parts[0].items() if k not in ("sizes", "command")}
    result["commands"] = [p.get("command") for p in parts]
    result["merged_from"] = [str(x) for x in paths]
    result["sizes"] = {}
    list_keys = ("tokens_per_s", "final_loss", "t", "compile_stats", "max_memory_allocated", "max_memory_reserved")
    for part in parts:
        for size, sr in part["sizes"].items():
            dst = result["sizes"].setdefault(size, {k: v for k, v in sr.items() if k != "variants"} | {"variants": {}})
            for k in ("tokens_per_step", "params"):
                if k in sr:
                    dst[k] = sr[k]
            for name, v in sr["variants"].items():
                if name not in dst["variants"]:
                    dst["variants"][name] = json.loads(json.dumps(v))
                    continue
                d = dst["variants"][name]
                for k, val in v.items():
                    if k in list_keys:
                        d.setdefault(k, []).extend(val)
                    elif k not in d or k in ("error", "skipped", "flops_per_step", "tokens_per_step"):
                        d[k] = val
    if memory_csv and Path(memory_csv).is_file():
        gpu_memory_peaks(result, memory_csv)
    summarize(result, result["matmul_peak"], result.get("datasheet_peak_flops_per_s"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["bench", "tiny", "100m"], choices=sorted(SIZES))
    p.add_argument("--variants", nargs="+", default=["plain", "megagrow-z0", "megagrow-z2"], choices=VARIANTS)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--data", default=None, help="dataset directory (default: the base config's data.path)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement (multiple of --log-every)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (multiple of --log-every)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every variant (CPU)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one measurement may take")
    p.add_argument("--breakdown", action="store_true",
                   help="after the timed rounds, profile --profile-steps steps of each variant (torch.profiler: time "
                        "per phase of the step; megagrow's from logging.profile_steps)")
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--loss-chunk", type=int, default=int(_GPT_BASE["train"]["loss_chunk"]),
                   help="train.loss_chunk of the -chunk variants (default: configs/gpu/gpt-base.yaml's)")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/throughput-<device>.json)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="merge these result files (of earlier invocations) into --out, its PNG and table; no runs")
    p.add_argument("--gpu-memory-csv", default=None, metavar="CSV",
                   help="with --merge: an `nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits "
                        "-l 1` log taken during the runs; each variant gets the peak memory.used during its runs")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.merge:
        if not args.out:
            p.error("--merge needs --out")
        merge_results([Path(x) for x in args.merge], Path(args.out), args.gpu_memory_csv)
        return 0
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(plain_worker(args)), flush=True)
        return 0
    if args.steps % args.log_every or args.warmup % args.log_every or args.profile_steps % args.log_every:
        p.error(f"--steps {args.steps}, --warmup {args.warmup} and --profile-steps {args.profile_steps} must be "
                f"multiples of --log-every {args.log_every}")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"throughput-{args.device}.json")
    from megagrow.metrics import peak_flops_per_device

    peak = matmul_peak(args.device, args.precision, args.threads)
    datasheet = peak_flops_per_device(args.precision) if args.device == "cuda" else None
    result = {"command": command("benchmarks.throughput.run", argv),
              "machine": machine(args), "precision": args.precision, "steps": args.steps, "warmup": args.warmup,
              "rounds": args.rounds, "matmul_peak": peak, "datasheet_peak_flops_per_s": datasheet,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sizes": {}}
    print(f"matmul peak: {peak['flops_per_s'] / 1e9:,.1f} GFLOP/s ({peak['dtype']}, n={peak['n']})", flush=True)
    with tempfile.TemporaryDirectory(prefix="megagrow-throughput-") as tmp_s:
        tmp = Path(tmp_s)
        for size in args.sizes:
            args.size = size
            sr = result["sizes"].setdefault(size, {"note": SIZES[size].note, "variants": {}})
            for r in range(args.rounds):
                for variant in args.variants:
                    v = sr["variants"].setdefault(variant, {"tokens_per_s": []})
                    t0 = time.time()
                    try:
                        m = measure(args, variant, tmp)
                    except Skipped as e:
                        v["skipped"] = str(e)
                        print(f"[{size} round {r + 1}] {variant}: skipped ({e})", flush=True)
                        continue
                    except RuntimeError as e:
                        v["error"] = str(e)[-4000:]
                        print(f"[{size} round {r + 1}] {variant}: FAILED\n{e}", flush=True)
                        continue
                    v["tokens_per_s"].append(m["tokens_per_s"])
                    v["flops_per_step"] = m["flops_per_step"]
                    v.setdefault("final_loss", []).append(m["final_loss"])
                    v.setdefault("t", []).append([round(t0, 1), round(time.time(), 1)])
                    v["tokens_per_step"] = sr["tokens_per_step"] = m["tokens_per_s"] * m["wall_s"] / m["steps"]
                    for key in ("compile_stats", "max_memory_allocated", "max_memory_reserved"):
                        if key in m:
                            v.setdefault(key, []).append(m[key])
                    if "resolved_precision" in m:
                        v["resolved_precision"] = m["resolved_precision"]
                    if "params" in m:
                        sr["params"] = m["params"]
                    print(f"[{size} round {r + 1}] {variant}: {m['tokens_per_s']:,.0f} tokens/s "
                          f"({time.time() - t0:.0f} s)", flush=True)
                    summarize(result, peak, datasheet)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    tmp_out = out.with_suffix(".json.tmp")
                    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
                    tmp_out.replace(out)
        if args.breakdown:
            for size in args.sizes:
                args.size = size
                for variant in args.variants:
                    if "compile" in variant_parts(variant) or "pb" in variant_parts(variant):
                        continue
                    try:
                        if variant.startswith("megagrow"):
                            prof = megagrow_profile(args, variant, tmp)
                        else:
                            a2 = argparse.Namespace(**{**vars(args), "profile": True, "steps": args.profile_steps})
                            prof = measure(a2, variant, tmp)["profile"]
                    except (RuntimeError, OSError, KeyError) as e:
                        print(f"[{size}] {variant} breakdown FAILED: {e}", flush=True)
                        continue
                    sr = result["sizes"].setdefault(size, {"note": SIZES[size].note, "variants": {}})
                    sr["variants"].setdefault(variant, {"tokens_per_s": []})["breakdown"] = prof
                    print(f"[{size}] {variant} breakdown (ms/step): " + ", ".join(
                        f"{k} {v * 1e3:.2f}" for k, v in prof["phases_s_per_step"].items() if v) +
                          f", other {prof['other_s_per_step'] * 1e3:.2f}, step {prof['step_wall_s'] * 1e3:.2f}",
                          flush=True)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    summarize(result, peak, datasheet)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
