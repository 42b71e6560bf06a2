"""Issue 27's standings: every wsd-v2 study run against WSD scratch at 4e-3, paired by seed.

    python -m benchmarks.acceleration.wsd_v2

Collects the finished full runs of the ``wsd-v2-*`` studies (probes, stopped before the end of their schedule, are
left out), and runs ``megagrow report`` over them against WSD scratch at peak LR 4e-3 of the same seed (seed 1234:
``studies/wsd/runs/scratch-wsd-lr4e-3``, 4.271; seed 1235: ``studies/wsd-v2-baseline/runs/scratch-wsd-lr4e-3-s1235``,
4.283), with cosine scratch and WSD scratch at 8e-3 as reference lines. Writes the instrument's report (report.json,
report.md, plots) into ``benchmarks/results/acceleration-gpt/wsd-v2/`` (seed 1234) and ``.../wsd-v2/seed-1235/``,
and ``standings.md`` / ``standings.json`` beside them: per recipe, its FLOPs and priced wall saving for each seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
STUDIES = RESULTS / "studies"
BASELINES = {1234: STUDIES / "wsd" / "runs" / "scratch-wsd-lr4e-3",
             1235: STUDIES / "wsd-v2-baseline" / "runs" / "scratch-wsd-lr4e-3-s1235"}
REFERENCES = {1234: [RESULTS / "acceleration-gpt" / "runs" / "scratch-lr8e-3",
                     STUDIES / "wsd" / "runs" / "scratch-wsd"],
              1235: [STUDIES / "wsd" / "runs" / "scratch-wsd-s1235"]}
# WSD plans of the earlier wsd study (issue 12), scored here against the same baseline: StackBERT's chain 3 -> 6 -> 12
# at 15 / 35 % (4e-3; at its own budget, with 0.85x the steps, given scratch's FLOPs) and MSG given scratch's FLOPs
EARLIER = {1234: [STUDIES / "wsd" / "runs" / n for n in ("stackbert-wsd-lr4e-3", "stackbert-wsd-steps0.85-lr4e-3",
                                                        "stackbert-wsd-equal-flops-lr4e-3", "msg-wsd-equal-flops")],
           1235: [STUDIES / "wsd" / "runs" / n for n in ("stackbert-wsd-lr4e-3-s1235", "msg-wsd-equal-flops-s1235")]}
STEP_COSTS = RESULTS / "phase-cost-cpu.json"


def _megagrow(cmd: list[str]) -> None:
    """Run ``megagrow ...`` with this interpreter's megagrow (no activated venv needed)."""
    subprocess.run([sys.executable, "-m", "megagrow.cli", *cmd[1:]], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _last_step(run: Path) -> int:
    lines = [x for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return int(json.loads(lines[-1])["step"]) if lines else 0


def full_runs(studies: Path = STUDIES) -> dict[int, list[Path]]:
    """Finished full runs of the wsd-v2 studies (not the baseline study), by seed."""
    out: dict[int, list[Path]] = {}
    for run in sorted(studies.glob("wsd-v2-*/runs/*")):
        if run.parent.parent.name in ("wsd-v2-baseline", "wsd-v2-scaling") or not (run / "metrics.jsonl").is_file():
            continue
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        if _last_step(run) < int(cfg["train"]["max_steps"]):
            continue  # a probe
        out.setdefault(int(cfg["run"]["seed"]), []).append(run)
    for seed, runs in EARLIER.items():
        out.setdefault(seed, []).extend(r for r in runs if (r / "metrics.jsonl").is_file())
    return out


def report(seed: int, runs: list[Path], out: Path) -> dict:
    refs = [r for r in REFERENCES.get(seed, []) if (r / "metrics.jsonl").is_file()]
    cmd = ["megagrow", "report", *map(str, [BASELINES[seed], *refs, *runs]), "--baseline", str(BASELINES[seed]),
           "--step-costs", str(STEP_COSTS), "--out", str(out)]
    _megagrow(cmd)
    (out / "command.txt").write_text(" ".join(c if not c.startswith(str(ROOT)) else str(Path(c).relative_to(ROOT))
                                             for c in cmd) + "\n")
    return json.loads((out / "report.json").read_text())


def standings(reports: dict[int, dict], studies_of: dict[str, str]) -> list[dict]:
    rows: dict[str, dict] = {}
    for seed, rep in reports.items():
        for name, r in rep["runs"].items():
            if name == rep["baseline"]:
                continue
            recipe = name.removesuffix("-s1235").removesuffix("-full").replace("-lr4e-3-s1235", "-lr4e-3")
            row = rows.setdefault(recipe, {"recipe": recipe, "study": studies_of.get(name, "reference"),
                                           "seeds": {}})
            row["seeds"][seed] = {
                "run": name, "final_val_loss": r["final_val_loss"], "reached": r["reached"],
                "flops_saving": r["flops_saving"] if r["reached"] else None,
                "priced_wall_saving": r.get("priced_wall_saving") if r["reached"] else None,
                "flops_vs_baseline": r["total_vs_baseline"]["flops"], "target": rep["target_loss"]}
    return sorted(rows.values(), key=lambda x: -min((s["flops_saving"] if s["flops_saving"] is not None else -9)
                                                   for s in x["seeds"].values()))


def _pct(v: float | None) -> str:
    return "never" if v is None else f"{v:.1%}"


def render(rows: list[dict]) -> str:
    lines = ["# Issue 27 standings: against WSD scratch at 4e-3 (paired by seed)", "",
             "Each run against WSD scratch of its own seed (1234: 4.271, 1235: 4.283); saving = 1 - FLOPs (priced wall "
             "time) at which its validation loss first reaches that run's final loss / scratch's total. `never`: it "
             "does not reach it within its budget. Made by `python -m benchmarks.acceleration.wsd_v2`.", "",
             "| recipe | study | seed 1234: final / FLOPs / wall | seed 1235: final / FLOPs / wall |",
             "|---|---|---|---|"]
    for r in rows:
        cells = []
        for seed in (1234, 1235):
            s = r["seeds"].get(seed)
            cells.append("—" if s is None else f"{s['final_val_loss']:.4f} / {_pct(s['flops_saving'])} / "
                         f"{_pct(s['priced_wall_saving'])}")
        lines.append(f"| {r['recipe']} | {r['study']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


# the scaling study: per width, WSD scratch and the finalist (one growth 6 -> 12 at 40 %) at each peak LR run there
# (12 x 56 is the suite's own pair, at 4e-3)
SCALING = STUDIES / "wsd-v2-scaling" / "runs"
PAIRS: dict[int, dict[float, tuple[Path, Path]]] = {
    h: {lr: (SCALING / f"s{h}-scratch-lr{tag}", SCALING / f"s{h}-late6-lr{tag}") for lr, tag in lrs}
    for h, lrs in ((32, ((4e-3, "4e-3"), (8e-3, "8e-3"))), (44, ((4e-3, "4e-3"), (8e-3, "8e-3"))),
                   (72, ((4e-3, "4e-3"),)))}
PAIRS[56] = {4e-3: (BASELINES[1234], STUDIES / "wsd-v2-late" / "runs" / "late6-t0.4")}


def _finished(run: Path) -> bool:
    return (run / "metrics.jsonl").is_file() and _last_step(run) >= int(
        yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"])


def _final(run: Path) -> float:
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"val_loss"' in x]
    return float(evals[-1]["val_loss"])


def scaling(out: Path) -> list[dict]:
    """Per width: the finalist's FLOPs saving (``megagrow report``) against WSD scratch of that width at the same
    peak LR, and against that width's best scratch over the LRs run there (the tuned baseline: the finalist at its
    own best LR against it); a plot of saving against non-embedding parameters."""
    rows = []
    for h, by_lr in sorted(PAIRS.items()):
        done = {lr: pair for lr, pair in by_lr.items() if all(_finished(r) for r in pair)}
        if not done:
            continue
        best_scratch = min((pair[0] for pair in done.values()), key=_final)
        for lr, (base, plan) in sorted(done.items()):
            same = report_pair(base, [plan], out / f"width-{h}" / f"lr{lr:g}")["runs"][plan.name]
            tuned = same if best_scratch == base else report_pair(
                best_scratch, [plan], out / f"width-{h}" / f"lr{lr:g}-vs-best")["runs"][plan.name]
            rows.append({"width": h, "lr": lr, "non_embedding_params": 144 * h * h, "run": plan.name,
                         "final_val_loss": same["final_val_loss"],
                         "scratch": base.name, "scratch_final": _final(base),
                         "flops_saving": same["flops_saving"] if same["reached"] else None,
                         "best_scratch": best_scratch.name, "best_scratch_final": _final(best_scratch),
                         "flops_saving_vs_best_scratch": tuned["flops_saving"] if tuned["reached"] else None})
    if rows:
        _plot_scaling(rows, out / "scaling.png")
        (out / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def _plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    series = {f"same LR {lr:g}": [(r["non_embedding_params"], r["flops_saving"]) for r in rows if r["lr"] == lr]
              for lr in sorted({r["lr"] for r in rows})}
    best = {}
    for r in rows:  # per width, the finalist at its best LR against that width's best scratch
        if r["width"] not in best or r["final_val_loss"] < best[r["width"]]["final_val_loss"]:
            best[r["width"]] = r
    series["both at their best LR"] = [(r["non_embedding_params"], r["flops_saving_vs_best_scratch"])
                                       for _, r in sorted(best.items())]
    for (label, pts), style in zip(series.items(), ("o-", "s--", "^-."), strict=False):
        xs = [p for p, v in pts if v is not None]
        ax.plot(xs, [100 * v for p, v in pts if v is not None], style, label=label)
        ax.scatter([p for p, v in pts if v is None], [0] * sum(v is None for _, v in pts), marker="x", color="red")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters (12 layers, width " + " / ".join(str(h) for h in sorted(best)) + ")")
    ax.set_ylabel("FLOPs saving vs WSD scratch (%)")
    ax.set_title("one growth 6 -> 12 at 40 %, same tokens per parameter (x: never)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_pair(base: Path, runs: list[Path], out: Path) -> dict:
    cmd = ["megagrow", "report", str(base), *map(str, runs), "--baseline", str(base), "--out", str(out)]
    _megagrow(cmd)
    return json.loads((out / "report.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.acceleration.wsd_v2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(RESULTS / "acceleration-gpt" / "wsd-v2"))
    args = p.parse_args(argv)
    out = Path(args.out)
    by_seed = full_runs()
    if not by_seed:
        print("wsd_v2: no finished wsd-v2 study run yet", file=sys.stderr)
        return 1
    reports = {}
    for seed, runs in sorted(by_seed.items()):
        reports[seed] = report(seed, runs, out if seed == 1234 else out / f"seed-{seed}")
    studies_of = {run.name: run.parent.parent.name for runs in by_seed.values() for run in runs}
    studies_of.update({r.name: "wsd (issue 12)" for runs in EARLIER.values() for r in runs})
    rows = standings(reports, studies_of)
    (out / "standings.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "standings.md").write_text(render(rows))
    print(render(rows))
    for r in scaling(out):
        print(f"width {r['width']} at {r['lr']:g}: {r['run']} {r['final_val_loss']:.4f} vs {r['scratch_final']:.4f}: "
              f"{_pct(r['flops_saving'])} fewer FLOPs; vs {r['best_scratch']} ({r['best_scratch_final']:.4f}): "
              f"{_pct(r['flops_saving_vs_best_scratch'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
