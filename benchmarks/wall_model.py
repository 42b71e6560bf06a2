"""A plan's wall-time saving, from step costs measured side by side instead of from one noisy run.

A single run's wall clock on a shared machine moves by 5-10 % from run to run (the same model's step time,
measured minutes apart), as much as the effect to be measured. So besides the wall time a run logged, this
prices every step a run spent before it reached the baseline's final loss L* at the step time of its shape
(full model, half-width phase, ...) taken from ``benchmarks/phase_cost.py``'s interleaved rounds, and the
baseline's steps at the full model's: the wall saving the run would show on a quiet machine, evaluation excluded.

    python benchmarks/wall_model.py RUN [RUN ...] --baseline RUN --phase-cost benchmarks/results/phase-cost-cpu.json \\
        [--allocator tcmalloc] [--out FILE.json]

A logged interval belongs to the shape (hidden width, executed depth) recorded at its end; a depth between two
measured depths of its width (an Apollo interval's mean sampled depth) is interpolated linearly, and a shape the
phase-cost file cannot price (an MSG mask ramp's masked full model) is priced as the full model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from megagrow.checkpoint import atomic_write_text  # noqa: E402
from megagrow.report import first_crossing, load_run  # noqa: E402


def _shape_of(overrides: list[str], full: tuple[int, float]) -> tuple[int, float, int]:
    """(hidden, depth, micro-batch multiplier) of a phase-cost shape, from its overrides."""
    vals = dict(o[2:].split("=", 1) for o in overrides)
    hidden = int(vals.get("model.hidden", full[0]))
    depth = float(vals.get("model.n_layers", full[1]))
    return hidden, depth, 1 if "data.micro_batch_size" not in vals else 0


def step_prices(phase_cost: dict, allocator: str, full: tuple[int, float]) -> dict[tuple[int, float], float]:
    """Seconds per step by (hidden, depth), for the shapes measured at the suite's own batch."""
    prices = {}
    for row in phase_cost["rows"]:
        if row["allocator"] != allocator:
            continue
        hidden, depth, same_batch = _shape_of(row["overrides"], full)
        if same_batch:
            prices[(hidden, depth)] = row["s_per_step"]
    if full not in prices:
        raise SystemExit(f"wall_model: the phase-cost file has no full-model row ({full}) for allocator {allocator!r}")
    return prices


def price(key: tuple[int, float], prices: dict[tuple[int, float], float],
          full: tuple[int, float]) -> tuple[float, str]:
    """Seconds per step of a (hidden, executed depth) and how it was found: measured; interpolated linearly in
    depth between the two nearest measured depths of that width (an Apollo interval's mean sampled depth; a step's
    cost is a fixed part plus a part per layer); else the full model's price (an upper bound)."""
    name = f"{key[0]}x{key[1]:g}"
    if key in prices:
        return prices[key], name
    depths = sorted(d for h, d in prices if h == key[0])
    lo = max((d for d in depths if d <= key[1]), default=None)
    hi = min((d for d in depths if d >= key[1]), default=None)
    if lo is not None and hi is not None and lo != hi:
        f = (key[1] - lo) / (hi - lo)
        return prices[(key[0], lo)] + f * (prices[(key[0], hi)] - prices[(key[0], lo)]), name + " (interpolated)"
    return prices[full], name + " (priced as full)"


def priced_wall(records: list[dict], until_step: float, prices: dict[tuple[int, float], float],
                full: tuple[int, float]) -> dict[str, float]:
    """Seconds to run ``until_step`` steps (fractional: the crossing), each interval at its shape's price."""
    out: dict[str, float] = {}
    prev = 0.0
    for rec in records:
        lo, hi = prev, min(float(rec["step"]), until_step)
        if hi > lo:
            s_per_step, name = price((int(rec["hidden"]), float(rec["depth"])), prices, full)
            out[name] = out.get(name, 0.0) + (hi - lo) * s_per_step
        prev = float(rec["step"])
        if prev >= until_step:
            break
    return out


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--phase-cost", type=Path, default=ROOT / "benchmarks/results/phase-cost-cpu.json")
    p.add_argument("--allocator", default="tcmalloc", help="which allocator's step times to use")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    pc = json.loads(args.phase_cost.read_text())
    base = load_run(args.baseline)
    target = base.final_val_loss
    full = (int(base.records[-1]["hidden"]), float(base.records[-1]["depth"]))
    prices = step_prices(pc, args.allocator, full)
    base_wall = sum(priced_wall(base.records, float(base.records[-1]["step"]), prices, full).values())
    rows = []
    for path in args.runs:
        run = load_run(path)
        cross = first_crossing(run.points, target)
        base_flops = float(base.records[-1]["flops"])
        row = {"run": run.name, "plan": run.plan, "final_val_loss": run.final_val_loss, "reached": cross is not None}
        if cross is not None:
            parts = priced_wall(run.records, cross["step"], prices, full)
            wall = sum(parts.values())
            row.update(step_at_target=cross["step"], flops_saving=1 - cross["flops"] / base_flops,
                       logged_wall_saving=1 - cross["wall_s"] / float(base.records[-1]["wall_s"]),
                       priced_wall_s=wall, priced_wall_by_shape_s=parts, priced_wall_saving=1 - wall / base_wall)
            row["priced_wall_over_flops_saving"] = (row["priced_wall_saving"] / row["flops_saving"]
                                                    if row["flops_saving"] > 0 else None)
        rows.append(row)
    result = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "baseline": base.name, "target_loss": target, "allocator": args.allocator,
              "phase_cost": {"file": _rel(args.phase_cost), "date": pc.get("date"),
                             "s_per_step": {f"{h}x{d:g}": s for (h, d), s in prices.items()}},
              "baseline_priced_wall_s": base_wall, "runs": rows}
    print(f"baseline {base.name}: L* = {target:.4f}, priced wall {base_wall:.0f} s ({args.allocator} step times)")
    print(f"{'run':<40} {'FLOPs saving':>12} {'logged wall':>11} {'priced wall':>11} {'priced/FLOPs':>12}")
    for r in rows:
        if not r["reached"]:
            print(f"{r['run']:<40} {'never reached':>12}")
            continue
        print(f"{r['run']:<40} {r['flops_saving']:>12.1%} {r['logged_wall_saving']:>11.1%} "
              f"{r['priced_wall_saving']:>11.1%} {r['priced_wall_over_flops_saving'] or 0:>12.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
