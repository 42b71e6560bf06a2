"""A plan's wall-time saving, from step costs measured side by side instead of from one noisy run (the same
pricing as ``megagrow report --step-costs``, :mod:`megagrow.step_costs`; this prints the breakdown by shape).

A single run's wall clock on a shared machine moves by 5-10 % from run to run (the same model's step time,
measured minutes apart), as much as the effect to be measured. So besides the wall time a run logged, this
prices every step a run spent before it reached the baseline's final loss L* at the step time of its shape
(full model, half-width phase, ...) taken from ``benchmarks/phase_cost.py``'s interleaved rounds, and the
baseline's steps at the full model's: the wall saving the run would show on a quiet machine, evaluation excluded.

    python -m benchmarks.wall_model RUN [RUN ...] --baseline RUN --phase-cost benchmarks/results/phase-cost-cpu.json \\
        [--allocator tcmalloc] [--out FILE.json]

How intervals are priced: megagrow/step_costs.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import command
from megagrow.checkpointing.store import atomic_write_text
from megagrow.report import first_crossing, load_run
from megagrow.step_costs import load_step_costs

ROOT = Path(__file__).resolve().parents[1]


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.wall_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    costs = load_step_costs(args.phase_cost, args.allocator, full)
    base_wall = sum(costs.wall(base.records, float(base.records[-1]["step"])).values())
    rows = []
    for path in args.runs:
        run = load_run(path)
        cross = first_crossing(run.points, target)
        base_flops = float(base.records[-1]["flops"])
        row = {"run": run.name, "plan": run.plan, "final_val_loss": run.final_val_loss, "reached": cross is not None}
        if cross is not None:
            parts = costs.wall(run.records, cross["step"])
            wall = sum(parts.values())
            row.update(step_at_target=cross["step"], flops_saving=1 - cross["flops"] / base_flops,
                       logged_wall_saving=1 - cross["wall_s"] / float(base.records[-1]["wall_s"]),
                       priced_wall_s=wall, priced_wall_by_shape_s=parts, priced_wall_saving=1 - wall / base_wall)
            row["priced_wall_over_flops_saving"] = (row["priced_wall_saving"] / row["flops_saving"]
                                                    if row["flops_saving"] > 0 else None)
        rows.append(row)
    result = {"command": command("benchmarks.wall_model"),
              "baseline": base.name, "target_loss": target, "allocator": args.allocator,
              "phase_cost": {"file": _rel(args.phase_cost), "date": pc.get("date"),
                             "s_per_step": {f"{h}x{d:g}": s for (h, d), s in costs.prices.items()}},
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
