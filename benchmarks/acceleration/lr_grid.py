"""The peak-LR tuning grid: each plan's final loss at every peak LR it ran, beside scratch's sweep.

    python -m benchmarks.acceleration.lr_grid benchmarks/results/acceleration-gpt \\
        benchmarks/results/studies/plan-lr --out benchmarks/results/studies/plan-lr/lr-grid

Issue 12 asks that each plan get the same tuning effort as scratch: its peak LR on scratch's sweep grid. This
collects the grid from finished results directories (an acceleration suite's and its studies'): each
``report.json`` gives a run's final loss and savings against the suite's target L*, and the run's resolved
``runs/<name>/config.yaml`` its peak LR and budget. A run's plan is its name less a ``-s<seed>`` and then an
``-lr<tag>`` suffix (``msg-lr4e-3`` -> ``msg``; the suite's ``msg`` ran at the suite's LR); its budget
(``train.max_steps``) is listed beside it. Left out, and listed: probes (``train.exit_at_step`` > 0, unless the
run's ``metrics.jsonl`` reaches ``train.max_steps``: a probe continued to the end), whose last loss is not a final
one. Writes ``<out>.json``, ``<out>.md`` and
``<out>.png`` (final loss against peak LR, one line per plan; filled markers reached L*).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

_SEED = re.compile(r"-s(\d+)$")
_LR = re.compile(r"-lr\d+(?:\.\d+)?e-?\d+$")


@dataclass(frozen=True)
class GridPoint:
    plan: str
    run: str
    source: str  # the results directory
    lr: float
    max_steps: int
    seed: int
    final_val_loss: float
    reached: bool
    flops_saving: float | None
    priced_wall_saving: float | None


def plan_of(run: str) -> str:
    """The plan a run belongs to: its name less a seed suffix, then less an LR suffix."""
    return _LR.sub("", _SEED.sub("", run))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"lr_grid: {path} is missing: pass a finished results directory (with report.json)") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"lr_grid: {path} is not valid JSON: {e}") from None


def _run_config(dirs: list[Path], report: Path, run: str) -> tuple[Path, dict]:
    """The results directory holding ``run`` (a study's report also lists the suite runs it compares against,
    whose files are in the suite's directory) and the run's LR and budget."""
    found = [d for d in dirs if (d / "runs" / run / "config.yaml").is_file()]
    if not found:
        raise SystemExit(
            f"lr_grid: run {run} of {report} has no runs/{run}/config.yaml in "
            + ", ".join(map(str, dirs))
            + ": pass the suite's results directory too"
        )
    path = found[0] / "runs" / run / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    try:
        out = {
            "lr": float(cfg["optim"]["lr"]),
            "max_steps": int(cfg["train"]["max_steps"]),
            "exit_at_step": int(cfg["train"].get("exit_at_step") or 0),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"lr_grid: {path}: expected optim.lr and train.max_steps ({e!r})") from None
    # a probe continued to the end of its budget keeps the probe's config: its metrics say it is a full run
    last = _last_step(found[0] / "runs" / run / "metrics.jsonl")
    if out["exit_at_step"] and last is not None and last >= out["max_steps"]:
        out["exit_at_step"] = 0
    return found[0], out


def _last_step(metrics: Path) -> int | None:
    """The last logged step of a run's metrics.jsonl; None without the file."""
    if not metrics.is_file():
        return None
    last = None
    for line in metrics.read_text().splitlines():
        if line.strip():
            try:
                last = int(json.loads(line)["step"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise SystemExit(f"lr_grid: {metrics}: a line without a step: {line[:80]!r}") from None
    return last


def collect(dirs: list[Path]) -> tuple[dict, list[GridPoint], list[dict]]:
    """The grid points of the results directories, and the runs left out. All reports must share the baseline
    and target L*."""
    head: dict | None = None
    points: list[GridPoint] = []
    left_out: list[dict] = []
    seen: set[str] = set()
    for d in dirs:
        rep = _read_json(d / "report.json")
        if head is None:
            head = {"baseline": rep["baseline"], "target_loss": rep["target_loss"]}
        elif (rep["baseline"], rep["target_loss"]) != (head["baseline"], head["target_loss"]):
            raise SystemExit(
                f"lr_grid: {d / 'report.json'} has baseline {rep['baseline']} (L* = "
                f"{rep['target_loss']}), but {dirs[0] / 'report.json'} has {head['baseline']} "
                f"(L* = {head['target_loss']}): pass results of one suite"
            )
        for run, r in rep["runs"].items():
            if run in seen:  # a study's report repeats the suite runs it compares against
                continue
            seen.add(run)
            src, cfg = _run_config(dirs, d / "report.json", run)
            if cfg["exit_at_step"]:
                left_out.append({"run": run, "plan": plan_of(run), "source": str(src),
                                 "why": f"probe (stops at step {cfg['exit_at_step']})"})
                continue
            points.append(
                GridPoint(
                    plan_of(run),
                    run,
                    str(src),
                    cfg["lr"],
                    cfg["max_steps"],
                    int(r["seed"]),
                    float(r["final_val_loss"]),
                    bool(r["reached"]),
                    r.get("flops_saving"),
                    r.get("priced_wall_saving"),
                )
            )
    assert head is not None
    return head, points, left_out


def summarize(points: list[GridPoint], baseline: str) -> dict[str, dict]:
    """Per plan and budget: its points (LR ascending, then seed), the best LR of its first seed, and whether that
    best LR is inside the grid it ran (not at an edge of 3 or more LRs). A plan that ran at several budgets gets
    one entry per budget, labelled ``plan@steps``."""
    budgets: dict[str, set[int]] = {}
    for p in points:
        budgets.setdefault(p.plan, set()).add(p.max_steps)
    plans: dict[str, dict] = {}
    for plan, steps in sorted((p.plan, p.max_steps) for p in points):
        label = plan if len(budgets[plan]) == 1 else f"{plan}@{steps}"
        if label in plans:
            continue
        pts = sorted((p for p in points if (p.plan, p.max_steps) == (plan, steps)), key=lambda p: (p.lr, p.seed))
        first_seed = min(p.seed for p in pts)
        main = [p for p in pts if p.seed == first_seed]
        best = min(main, key=lambda p: p.final_val_loss)
        lrs = sorted({p.lr for p in main})
        plans[label] = {
            "max_steps": steps,
            "points": [asdict(p) for p in pts],
            "seed": first_seed,
            "lrs": lrs,
            "best_lr": best.lr,
            "best": asdict(best),
            "best_interior": len(lrs) >= 3 and lrs[0] < best.lr < lrs[-1],
            "baseline": any(p.run == baseline for p in pts),
        }
    return plans


def _cell(p: dict, baseline: str) -> str:
    s = f"{p['final_val_loss']:.3f}"
    if p["run"] == baseline:
        return s + " (L*)"
    if p["reached"] and p["flops_saving"] is not None:
        s += f" ({100 * p['flops_saving']:.1f} %)"
    return s


def markdown(head: dict, plans: dict[str, dict], left_out: list[dict], command: str) -> str:
    lrs = sorted({p["lr"] for v in plans.values() for p in v["points"]})
    lines = [
        f"# Peak-LR grid against {head['baseline']} (L* = {head['target_loss']:.4f})",
        "",
        "Final validation loss per plan and peak LR (first seed; other seeds after a slash), with the FLOPs "
        "saving where the run reached L*. **Bold**: the plan's best LR; *edge*: the best LR is at the edge of "
        "the 3 or more LRs that plan ran. Steps: the run's budget.",
        "",
        "```sh",
        command,
        "```",
        "",
        "| plan | steps | " + " | ".join(f"{lr:g}" for lr in lrs) + " | best LR |",
        "|---|---:|" + "---:|" * len(lrs) + "---|",
    ]
    for plan, v in plans.items():
        cells = []
        for lr in lrs:
            at = [p for p in v["points"] if p["lr"] == lr]
            first = [p for p in at if p["seed"] == v["seed"]]
            text = " / ".join(_cell(p, head["baseline"]) for p in first + [p for p in at if p["seed"] != v["seed"]])
            cells.append(f"**{text}**" if first and lr == v["best_lr"] and len(v["lrs"]) > 1 else text)
        n = len(v["lrs"])
        where = "interior" if v["best_interior"] else ("*edge*" if n >= 3 else f"{n} LR{'s' if n > 1 else ''}")
        lines.append(f"| {plan} | {v['max_steps']} | " + " | ".join(cells) + f" | {v['best_lr']:g} ({where}) |")
    if left_out:
        lines += ["", "Left out:", ""] + [f"- `{x['run']}` ({x['source']}): {x['why']}" for x in left_out]
    return "\n".join(lines) + "\n"


def plot(head: dict, plans: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    base_steps = next((v["max_steps"] for v in plans.values() if v["baseline"]), None)
    colors = iter(plt.get_cmap("tab20").colors * 2)  # distinct colours for up to 40 lines
    for plan, v in plans.items():
        if len(v["lrs"]) < 2:
            continue
        main = [p for p in v["points"] if p["seed"] == v["seed"]]
        (line,) = ax.plot(
            [p["lr"] for p in main],
            [p["final_val_loss"] for p in main],
            "-" if v["max_steps"] == base_steps else "--",  # dashed: another budget (scratch's FLOPs)
            lw=2.4 if v["baseline"] else 1.4,
            color="black" if v["baseline"] else next(colors),
            label=plan if v["max_steps"] == base_steps else f"{plan} ({v['max_steps']} steps)",
        )
        for p in v["points"]:
            ax.plot(
                p["lr"],
                p["final_val_loss"],
                "o" if p["seed"] == v["seed"] else "x",
                color=line.get_color(),
                mfc=line.get_color() if p["reached"] else "white",
            )
    ax.axhline(head["target_loss"], color="grey", ls=":", lw=1, label=f"L* = {head['target_loss']:.3f}")
    # a run left on a plateau or diverged would squash the grid: clip the axis, and write such losses at its top
    top = head["target_loss"] + 0.45
    drawn = [v for v in plans.values() if len(v["lrs"]) >= 2]
    lows = [p["final_val_loss"] for v in drawn for p in v["points"] if math.isfinite(p["final_val_loss"])]
    if lows and max(lows) > top:
        ax.set_ylim(min(lows) - 0.02, top)
        for v in drawn:
            for p in v["points"]:
                if not math.isfinite(p["final_val_loss"]) or p["final_val_loss"] > top:
                    ax.annotate(f"{p['final_val_loss']:.2f} ↑", (p["lr"], top), textcoords="offset points",
                                xytext=(0, -12), ha="center", fontsize=7)
    ax.set_xscale("log", base=2)
    ticks = sorted({p["lr"] for v in plans.values() for p in v["points"]})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("peak LR")
    ax.set_ylabel("final validation loss")
    ax.set_title("peak-LR grid: filled = reached L*, x = second seed, dashed = another budget")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceleration.lr_grid", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="results directories of one suite (report.json, runs/)")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix (.json, .md, .png)")
    a = ap.parse_args(argv)
    command = "python -m benchmarks.acceleration.lr_grid " + " ".join(map(str, a.results)) + f" --out {a.out}"
    head, points, left_out = collect(a.results)
    if not points:
        raise SystemExit("lr_grid: no full-budget runs in " + ", ".join(map(str, a.results)))
    plans = summarize(points, head["baseline"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    _write(
        a.out.with_suffix(".json"),
        json.dumps({**head, "command": command, "plans": plans, "left_out": left_out}, indent=1) + "\n",
    )
    _write(a.out.with_suffix(".md"), markdown(head, plans, left_out, command))
    plot(head, plans, a.out.with_suffix(".png"))
    for plan, v in plans.items():
        b = v["best"]
        print(
            f"{plan:>20}: best LR {b['lr']:g} -> {b['final_val_loss']:.4f}"
            + (f", {100 * b['flops_saving']:.1f} % FLOPs saved" if b["reached"] and b["flops_saving"] else "")
            + ("" if math.isfinite(b["final_val_loss"]) else " (diverged)")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
