"""What does not shrink in a small growth phase? Host time per step by kind of op, for each shape against the
full model, from torch.profiler traces of real ``megagrow train`` processes (``logging.profile_steps``).

``benchmarks/phase_cost.py`` says *that* the half-width phase costs more seconds per FLOP than the full model;
this says *where*: each op's self time (its trace duration minus its children's) is summed per step into
categories (:data:`CATEGORIES`), and each category's time ratio to the full model's is set against the
shape's FLOPs ratio. A category whose time ratio is far above the FLOPs ratio is what does not shrink.

    python -m benchmarks.phase_ops --out benchmarks/results/phase-ops-cpu.json

Run it with the machine otherwise idle (absolute times); the ratios are what the result is about.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import command
from benchmarks.phase_cost import SHAPES
from megagrow.checkpointing.store import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

#: category -> op-name pattern (first match wins; ``other`` for the rest). Self times, so a composite op
#: (``aten::linear``) counts only what it does itself, its kernels count under their own names.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("matmul", r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_addmm_activation)$"),
    ("vocab softmax + loss", r"log_softmax|nll_loss|cross_entropy"),
    ("attention", r"scaled_dot_product|flash_attention|_softmax$|softmax_backward"),
    ("optimizer", r"_foreach_|adamw|^Optimizer\.|_fused_adam"),
    ("layer norm", r"layer_norm"),
    ("gelu", r"gelu"),
    ("embedding", r"embedding"),
    ("copies, fills, views", r"^aten::(copy_|fill_|zero_|zeros|empty|empty_like|clone|contiguous|cat|stack|view|"
                             r"reshape|transpose|permute|t|expand|select|slice|unsqueeze|squeeze|as_strided|"
                             r"split|chunk|narrow|to|_to_copy|detach|index_select|gather)$"),
    ("elementwise", r"^aten::(add|add_|mul|mul_|sub|div|div_|addcmul_|addcdiv_|sqrt|rsqrt|neg|pow|sum|mean|"
                    r"norm|linalg_vector_norm|clamp|where|dropout|native_dropout|masked_fill|abs|exp|lerp_)"),
)


def categorize(name: str) -> str:
    for cat, pattern in CATEGORIES:
        if re.search(pattern, name):
            return cat
    return "other"


def self_times(trace: dict) -> Counter:
    """Self time (µs) per op name over a Chrome trace: each complete event's duration minus its direct children's,
    per thread (events nest by time on a thread)."""
    out: Counter = Counter()
    by_thread: dict[tuple, list[dict]] = {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and e.get("cat") == "cpu_op":
            by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        child = [0.0] * len(evs)
        stack: list[int] = []  # indices of the open events, innermost last
        for i, e in enumerate(evs):
            while stack and e["ts"] >= evs[stack[-1]]["ts"] + evs[stack[-1]]["dur"]:
                stack.pop()
            if stack:
                child[stack[-1]] += e["dur"]
            stack.append(i)
        for i, e in enumerate(evs):
            out[e["name"]] += max(0.0, e["dur"] - child[i])
    return out


def _run(config: Path, shape: str, args: argparse.Namespace, out_dir: Path) -> dict:
    first, last = args.warmup + 1, args.warmup + args.steps
    cmd = [str(Path(sys.executable).parent / "megagrow"), "train", str(config), *SHAPES[shape],
           f"--run.out_dir={out_dir}", f"--run.name={shape}", f"--train.max_steps={last}",
           "--train.eval_every=0", "--checkpoint.every=0", "--checkpoint.save_final=false", "--logging.log_every=10",
           "--logging.progress=off", "--logging.tensorboard=false", f"--logging.profile_steps=[{first},{last}]"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DS_ACCELERATOR": "cpu"}
    env.pop("MEGAGROW_ALLOCATOR_ACTIVE", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"phase_ops: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    run_dir = out_dir / shape
    profile = json.loads((run_dir / "profile.json").read_text())
    ops = self_times(json.loads((run_dir / "profile_trace.json").read_text()))
    n = profile["n_steps"]
    cats: Counter = Counter()
    for name, us in ops.items():
        cats[categorize(name)] += us / n / 1e3
    # the step's wall time that no op accounts for: the training loop, Python, the profiler's own records
    cats["outside ops"] = max(0.0, profile["step_wall_s"] * 1e3 - sum(cats.values()))
    recs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:25]
    return {"step_ms": profile["step_wall_s"] * 1e3, "flops_per_step": recs[-1]["flops"] / recs[-1]["step"],
            "categories_ms": {k: round(v, 3) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
            "top_ops_ms": {k: round(v / n / 1e3, 3) for k, v in top}}


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = result["shapes"]["full"]
    cats = list(full["categories_ms"])
    shapes = [s for s in result["shapes"] if s != "full"]
    fig, ax = plt.subplots(figsize=(10, 4))
    w = 0.8 / len(shapes)
    for i, s in enumerate(shapes):
        row = result["shapes"][s]
        ax.bar([j + i * w for j in range(len(cats))], [row["time_ratio_by_category"].get(c, 0) for c in cats], w,
               label=f"{s} (FLOPs ratio {row['flops_ratio']:.2f})")
        ax.axhline(row["flops_ratio"], color=f"C{i}", lw=0.8, ls="--")
    ax.set_xticks([j + w * (len(shapes) - 1) / 2 for j in range(len(cats))], cats, rotation=25, ha="right")
    ax.set_ylabel("time / the full model's")
    ax.set_title("host time per step by kind of op, against the full model (dashed: the FLOPs ratio)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.phase_ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "benchmarks/acceleration/configs/gpt.yaml")
    p.add_argument("--shapes", default="full,half", help=f"comma-separated of {', '.join(SHAPES)}; 'full' first")
    p.add_argument("--steps", type=int, default=10, help="profiled steps")
    p.add_argument("--warmup", type=int, default=10, help="steps before the profiled window")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (with 2, the profiler's own cost dominated the step here: 3.4 s vs 0.12 s)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/phase-ops-cpu.json")
    args = p.parse_args()
    shapes = args.shapes.split(",")
    if shapes[0] != "full" or any(s not in SHAPES for s in shapes):
        raise SystemExit(f"phase_ops: --shapes must start with 'full' and name shapes of {', '.join(SHAPES)}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="phase-ops-") as tmp:
        rows = {s: _run(args.config, s, args, Path(tmp)) for s in shapes}
    full = rows["full"]
    for row in rows.values():
        row["flops_ratio"] = row["flops_per_step"] / full["flops_per_step"]
        row["time_ratio"] = row["step_ms"] / full["step_ms"]
        row["time_ratio_by_category"] = {c: round(row["categories_ms"].get(c, 0.0) / ms, 3)
                                         for c, ms in full["categories_ms"].items() if ms > 0}
    result = {
        "benchmark": "phase_ops", "command": command("benchmarks.phase_ops"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0]},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "shapes": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    _plot(result, args.out.with_suffix(".png"))
    for s, row in rows.items():
        print(f"{s}: {row['step_ms']:.1f} ms/step, FLOPs x{row['flops_ratio']:.3f}, time x{row['time_ratio']:.3f}")
        for c, ms in row["categories_ms"].items():
            print(f"  {c:24s} {ms:8.2f} ms  x{row['time_ratio_by_category'].get(c, float('nan')):.2f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
