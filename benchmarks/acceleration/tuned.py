"""The tuned standings: every plan at its best peak LR, against the tuned scratch, in one acceleration report.

    python -m benchmarks.acceleration.tuned benchmarks/results/studies/plan-lr/lr-grid.json \\
        --out benchmarks/results/acceleration-gpt/tuned --step-costs benchmarks/results/phase-cost-cpu.json

Issue 12 asks for the tuned results beside the suite's: each plan tuned as scratch was. ``lr_grid.py`` finds each
plan's best peak LR (its first seed's lowest final loss at the suite's budget); this picks, from that grid:

- the baseline (the tuned scratch), with its other seeds at its LR;
- per plan run at the suite's budget: its runs at its best LR (every seed);
- per ``<plan>-equal-flops`` entry (the plan given scratch's FLOPs): its runs at its own best LR where it ran at two
  LRs or more (tuned at that budget), else at the best LR of ``<plan>`` (of the
  plan it is a variant of, ``stackbert-late`` -> ``stackbert``); where it never ran at that LR it is left out and
  listed (the tuned question is not answered by a run at another LR); one whose plan never ran at the suite's
  budget, at scratch's tuned LR;

and runs ``megagrow report`` over them (the instrument's report.json, report.md and plots), baseline first; with
``--vs RUN`` (scratch under WSD, say) the same runs again against that stronger baseline, into ``vs-<RUN>/``. Writes
``selection.md`` and ``selection.json`` beside them: the runs chosen, each plan's grid (the LRs it ran, whether the
best is interior) and what was left out and why. Plans run at one LR only are kept, marked untuned.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

EQUAL_FLOPS = "-equal-flops"


@dataclass(frozen=True)
class Pick:
    label: str  # the grid's plan label
    run: str
    source: str  # the results directory holding runs/<run>
    lr: float
    seed: int
    max_steps: int
    tuned: str  # "interior" / "edge" / "N LRs" of the plan whose LR it uses
    role: str  # "baseline" / "own budget" / "scratch's FLOPs"


def _tuning(v: dict, probes: int = 0) -> str:
    n = len(v["lrs"])
    where = "interior" if v["best_interior"] else ("edge" if n >= 3 else f"{n} LR{'s' if n > 1 else ''}")
    return where + (f" + {probes} LR probe{'s' if probes > 1 else ''}" if probes else "")


def _points_at(v: dict, lr: float) -> list[dict]:
    return sorted((p for p in v["points"] if p["lr"] == lr), key=lambda p: p["seed"])


def _pick(label: str, p: dict, tuned: str, role: str) -> Pick:
    return Pick(label, p["run"], p["source"], p["lr"], p["seed"], p["max_steps"], tuned, role)


def _base_plan(name: str, plans: dict[str, dict]) -> str | None:
    """The plan whose best LR a run given scratch's FLOPs uses: ``name`` itself, else its longest ``-``-separated
    prefix in the grid (``stackbert-late`` -> ``stackbert``: a variant of the plan, at the plan's tuned LR)."""
    parts = name.split("-")
    for n in range(len(parts), 0, -1):
        if "-".join(parts[:n]) in plans:
            return "-".join(parts[:n])
    return None


def select(grid: dict) -> tuple[list[Pick], list[dict]]:
    """The runs of the tuned standings (baseline first) and the grid entries left out, each with why."""
    plans: dict[str, dict] = grid["plans"]
    base_label = next((k for k, v in plans.items() if v["baseline"]), None)
    if base_label is None:
        raise SystemExit(f"tuned: the grid has no plan holding its baseline {grid['baseline']}")
    base_steps = plans[base_label]["max_steps"]
    base_lr = next(p["lr"] for p in plans[base_label]["points"] if p["run"] == grid["baseline"])
    picks = [
        _pick(base_label, p, _tuning(plans[base_label]), "baseline")
        for p in sorted(_points_at(plans[base_label], base_lr), key=lambda p: p["run"] != grid["baseline"])
    ]
    probes: dict[str, int] = {}
    for x in grid.get("left_out", []):
        if "plan" in x:
            probes[x["plan"]] = probes.get(x["plan"], 0) + 1
    left_out: list[dict] = []
    for label, v in plans.items():
        if label == base_label:
            continue
        if label.endswith(EQUAL_FLOPS):
            base = _base_plan(label[: -len(EQUAL_FLOPS)], plans)
            if len(v["lrs"]) >= 2:  # tuned at scratch's FLOPs itself: its own best LR
                lr, how, whose = v["best_lr"], _tuning(v), "its own best"
            elif base is None:  # no run of its plan at the suite's budget: scratch's tuned LR is the one it has
                lr, how, whose = base_lr, "scratch's LR", "scratch's"
            else:
                lr, how, whose = plans[base]["best_lr"], _tuning(plans[base], probes.get(base, 0)), "its plan's best"
            at = _points_at(v, lr)
            if not at:
                left_out.append({"plan": label, "why": f"not run at {whose} LR {lr:g} (ran at "
                                 + ", ".join(f"{x:g}" for x in v["lrs"]) + ")"})
                continue
            picks += [_pick(label, p, how, "scratch's FLOPs") for p in at]
        elif v["max_steps"] != base_steps:
            left_out.append({"plan": label, "why": f"budget {v['max_steps']} steps, not the suite's {base_steps}"})
        else:
            how = _tuning(v, probes.get(label, 0))
            picks += [_pick(label, p, how, "own budget") for p in _points_at(v, v["best_lr"])]
    return picks, left_out


def markdown(grid: dict, picks: list[Pick], left_out: list[dict], command: str, report_cmds: list[list[str]]) -> str:
    lines = [
        f"# Tuned standings against {grid['baseline']} (L* = {grid['target_loss']:.4f})",
        "",
        "Every plan at its best peak LR from the grid (`lr_grid.py`); a plan given scratch's FLOPs at its own best LR "
        "there where it ran at two LRs or more, else at the best LR of the plan at the suite's budget (else "
        "scratch's). *Tuning*: where that best LR lies among the LRs the plan ran (interior = "
        "tuned as scratch was; 1 LR = untuned). The savings are in `report.md` (and, against a stronger "
        "baseline, in `vs-<its name>/report.md`).",
        "",
        "```sh",
        command,
        *(" ".join(c) for c in report_cmds),
        "```",
        "",
        "| run | plan | role | peak LR | seed | steps | tuning |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    lines += [f"| {p.run} | {p.label} | {p.role} | {p.lr:g} | {p.seed} | {p.max_steps} | {p.tuned} |" for p in picks]
    if left_out:
        lines += ["", "Left out:", ""] + [f"- `{x['plan']}`: {x['why']}" for x in left_out]
    return "\n".join(lines) + "\n"


def _report_cmd(run_dirs: list[str], baseline: str, out: Path, step_costs: Path | None) -> list[str]:
    cmd = ["megagrow", "report", *run_dirs, "--baseline", baseline, "--out", str(out)]
    return cmd + (["--step-costs", str(step_costs)] if step_costs else [])


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceleration.tuned", description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", type=Path, help="lr_grid.py's JSON")
    ap.add_argument("--out", type=Path, required=True, help="the report's directory")
    ap.add_argument("--step-costs", type=Path, help="passed to megagrow report (the priced wall saving)")
    ap.add_argument("--vs", type=Path, help="a stronger baseline's run directory (scratch under WSD): the same runs "
                    "are also reported against it, into <out>/vs-<its name>/")
    ap.add_argument("--megagrow", default="megagrow", help="the megagrow command (default: megagrow on PATH)")
    a = ap.parse_args(argv)
    try:
        grid = json.loads(a.grid.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise SystemExit(f"tuned: {a.grid}: expected lr_grid.py's JSON ({e})") from None
    picks, left_out = select(grid)
    run_dirs = [str(Path(p.source) / "runs" / p.run) for p in picks]
    for d in run_dirs:
        if not Path(d).is_dir():
            raise SystemExit(f"tuned: {d} is missing: run from the repository root the grid was made in")
    report_cmds = [_report_cmd(run_dirs, run_dirs[0], a.out, a.step_costs)]
    if a.vs:
        if not (a.vs / "metrics.jsonl").is_file():
            raise SystemExit(f"tuned: --vs {a.vs}: expected a run directory with metrics.jsonl")
        others = [d for d in run_dirs if Path(d).resolve() != a.vs.resolve()]
        report_cmds.append(_report_cmd([str(a.vs), *others], str(a.vs), a.out / f"vs-{a.vs.name}", a.step_costs))
    for cmd in report_cmds:
        Path(cmd[cmd.index("--out") + 1]).mkdir(parents=True, exist_ok=True)
        rc = subprocess.run([a.megagrow, *cmd[1:]]).returncode
        if rc:
            raise SystemExit(f"tuned: megagrow report failed (exit {rc}): {' '.join(cmd)}")
    command = f"python -m benchmarks.acceleration.tuned {a.grid} --out {a.out}" + (
        f" --step-costs {a.step_costs}" if a.step_costs else "") + (f" --vs {a.vs}" if a.vs else "")
    _write(a.out / "selection.json", json.dumps(
        {"grid": str(a.grid), "baseline": grid["baseline"], "target_loss": grid["target_loss"], "command": command,
         "report_commands": report_cmds, "picks": [asdict(p) for p in picks], "left_out": left_out}, indent=1) + "\n")
    _write(a.out / "selection.md", markdown(grid, picks, left_out, command, report_cmds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
