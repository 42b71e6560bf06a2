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
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
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


# the scaling study: per width, scratch and the finalist at the same LR (12 x 56 is the suite's own pair)
SCALING = STUDIES / "wsd-v2-scaling" / "runs"
WIDTHS = {32: ("s32-scratch-lr4e-3", "s32-late6-lr4e-3"), 44: ("s44-scratch-lr4e-3", "s44-late6-lr4e-3"),
          56: (str(BASELINES[1234]), str(STUDIES / "wsd-v2-late" / "runs" / "late6-t0.4"))}


def scaling(out: Path) -> list[dict]:
    """Per width: the finalist's FLOPs saving against WSD scratch of that width (``megagrow report``), and a plot of
    saving against non-embedding parameters."""
    rows = []
    for h, (base, plan) in sorted(WIDTHS.items()):
        base_dir, plan_dir = (Path(x) if Path(x).is_absolute() else SCALING / x for x in (base, plan))
        if not ((base_dir / "metrics.jsonl").is_file() and (plan_dir / "metrics.jsonl").is_file()):
            continue
        cfg = yaml.safe_load((plan_dir / "config.yaml").read_text())
        if _last_step(plan_dir) < int(cfg["train"]["max_steps"]) or _last_step(base_dir) < int(
                yaml.safe_load((base_dir / "config.yaml").read_text())["train"]["max_steps"]):
            continue
        rep = report_pair(base_dir, plan_dir, out / f"width-{h}")
        r = rep["runs"][plan_dir.name]
        rows.append({"width": h, "non_embedding_params": 144 * h * h, "baseline": base_dir.name, "run": plan_dir.name,
                     "target": rep["target_loss"], "final_val_loss": r["final_val_loss"], "reached": r["reached"],
                     "flops_saving": r["flops_saving"] if r["reached"] else None,
                     "flops_vs_baseline": r["total_vs_baseline"]["flops"]})
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        pts = [(r["non_embedding_params"], r["flops_saving"]) for r in rows if r["flops_saving"] is not None]
        ax.plot([p for p, _ in pts], [100 * v for _, v in pts], "o-")
        for r in rows:
            if r["flops_saving"] is None:
                ax.scatter([r["non_embedding_params"]], [0], marker="x", color="red")
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters (12 layers, width 32 / 44 / 56)")
        ax.set_ylabel("FLOPs saving vs WSD scratch (%)")
        ax.set_title("one growth 6 -> 12 at 40 %, same tokens per parameter (x: never reached)")
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=110)
        plt.close(fig)
        (out / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def report_pair(base: Path, run: Path, out: Path) -> dict:
    cmd = ["megagrow", "report", str(base), str(run), "--baseline", str(base), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
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
        print(f"width {r['width']}: {r['run']} {r['final_val_loss']:.4f} vs {r['target']:.4f}: "
              f"{_pct(r['flops_saving'])} fewer FLOPs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
