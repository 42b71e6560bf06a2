"""Does a small growth phase cost its FLOPs share of wall time? Seconds per FLOP of each phase's shape against the
full model's, under each host allocator (``train.allocator``), measured side by side.

Each measurement is a real ``megagrow train`` process on a suite's config (the same data, optimizer and step
as a suite run) with one shape: the full model, the half-width half-depth model of Multi-level's coarse phase
and MSG's / bert2bert's small phase, full-width models of 1, 3 and 6 layers (Apollo's, StackBERT's and G_stack's
stages), and whatever else ``--shapes`` names. The step time is the median of the
logged intervals after the warm-up. Shapes and allocators are interleaved round by round, so every
configuration sees the same machine noise; losses are printed to show the allocator leaves the math unchanged.

    python -m benchmarks.phase_cost --out benchmarks/results/phase-cost-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import command
from megagrow.checkpointing.store import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

#: name -> overrides of the suite config.
SHAPES: dict[str, list[str]] = {
    "full": [],
    "half": ["--model.n_layers=6", "--model.hidden=28", "--model.n_heads=2", "--model.ffn=112"],
    "half-batch2x": ["--model.n_layers=6", "--model.hidden=28", "--model.n_heads=2", "--model.ffn=112",
                     "--data.micro_batch_size=32"],
    # depth-only phases at full width (Apollo's stages, StackBERT's and G_stack's small models)
    "depth1": ["--model.n_layers=1"],
    "depth3": ["--model.n_layers=3"],
    "depth6": ["--model.n_layers=6"],
}


def _run(config: Path, shape: str, allocator: str, args: argparse.Namespace, out_dir: Path, tag: str) -> dict:
    name = f"{shape}-{allocator}-{tag}"
    cmd = [str(Path(sys.executable).parent / "megagrow"), "train", str(config), *SHAPES[shape],
           f"--run.out_dir={out_dir}", f"--run.name={name}", f"--train.max_steps={args.steps}",
           "--train.eval_every=0", "--checkpoint.every=0", "--checkpoint.save_final=false",
           f"--logging.log_every={args.log_every}", "--logging.progress=off", "--logging.tensorboard=false",
           f"--train.allocator={allocator}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DS_ACCELERATOR": "cpu"}
    env.pop("MEGAGROW_ALLOCATOR_ACTIVE", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"phase_cost: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    note = next((ln.split("host allocator: ", 1)[1] for ln in proc.stderr.splitlines() if "host allocator:" in ln),
                "system (glibc malloc)")
    recs = [json.loads(ln) for ln in (out_dir / name / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    timed = [r for r in recs if r["step"] >= args.warmup]
    per_step = [(b["wall_s"] - a["wall_s"]) / (b["step"] - a["step"]) for a, b in zip(timed, timed[1:], strict=False)]
    return {"s_per_step": statistics.median(per_step), "flops_per_step": recs[-1]["flops"] / recs[-1]["step"],
            "tokens_per_step": recs[-1]["tokens"] / recs[-1]["step"], "loss": recs[-1]["loss"], "allocator": note}


def _plot(rows: list[dict], allocators: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    w = 0.8 / len(allocators)
    for i, a in enumerate(allocators):
        sel = {r["shape"]: r for r in rows if r["allocator"] == a}
        xs = [j + i * w for j in range(len(shapes))]
        axes[0].bar(xs, [sel[s]["s_per_step"] * 1e3 for s in shapes], w, label=a)
        axes[1].bar(xs, [sel[s]["s_per_flop_vs_full"] for s in shapes], w, label=a)
    titles = ("step time (ms)", "seconds per FLOP / the full model's (same allocator)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xticks([j + w * (len(allocators) - 1) / 2 for j in range(len(shapes))], shapes)
        ax.set_title(title)
        ax.legend()
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.phase_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "benchmarks/acceleration/configs/gpt.yaml")
    p.add_argument("--shapes", default="full,half,half-batch2x,depth1,depth3,depth6",
                   help=f"comma-separated of {', '.join(SHAPES)}")
    p.add_argument("--allocators", default="system,tcmalloc", help="comma-separated train.allocator values")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20, help="steps before timing starts")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/phase-cost-cpu.json")
    args = p.parse_args()
    shapes, allocators = args.shapes.split(","), args.allocators.split(",")
    for s in shapes:
        if s not in SHAPES:
            raise SystemExit(f"phase_cost: --shapes: unknown shape {s!r}; known: {', '.join(SHAPES)}")
    samples: dict[tuple[str, str], list[dict]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="phase-cost-") as tmp:
        for r in range(args.rounds):
            for a in allocators:
                for s in shapes:
                    samples.setdefault((s, a), []).append(_run(args.config, s, a, args, Path(tmp), str(r)))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{s}/{a} {samples[(s, a)][-1]['s_per_step'] * 1e3:.1f} ms" for a in allocators for s in shapes),
                file=sys.stderr, flush=True)
    rows = []
    for a in allocators:
        for s in shapes:
            xs = samples[(s, a)]
            rows.append({"shape": s, "allocator": a, "allocator_loaded": xs[0]["allocator"],
                         "overrides": SHAPES[s], "s_per_step": statistics.median(x["s_per_step"] for x in xs),
                         "s_per_step_rounds": [x["s_per_step"] for x in xs], "flops_per_step": xs[0]["flops_per_step"],
                         "tokens_per_step": xs[0]["tokens_per_step"], "final_loss": xs[0]["loss"]})
    for row in rows:
        full = next(r for r in rows if r["shape"] == "full" and r["allocator"] == row["allocator"])
        base = next((r for r in rows if r["shape"] == row["shape"] and r["allocator"] == allocators[0]), row)
        row["flops_ratio"] = row["flops_per_step"] / full["flops_per_step"]
        row["time_ratio"] = row["s_per_step"] / full["s_per_step"]
        row["s_per_flop_vs_full"] = row["time_ratio"] / row["flops_ratio"]
        row[f"speedup_vs_{allocators[0]}"] = base["s_per_step"] / row["s_per_step"]
    result = {
        "benchmark": "phase_cost", "command": command("benchmarks.phase_cost"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0]},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    _plot(rows, allocators, args.out.with_suffix(".png"))
    print(f"{'shape':<14} {'allocator':<9} {'ms/step':>8} {'FLOPs ratio':>11} {'time ratio':>10} "
          f"{'s/FLOP vs full':>14} {'speedup':>8} {'loss':>8}")
    for r in rows:
        print(f"{r['shape']:<14} {r['allocator']:<9} {r['s_per_step'] * 1e3:>8.1f} {r['flops_ratio']:>11.3f} "
              f"{r['time_ratio']:>10.3f} {r['s_per_flop_vs_full']:>14.2f} {r[f'speedup_vs_{allocators[0]}']:>8.2f} "
              f"{r['final_loss']:>8.4f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
