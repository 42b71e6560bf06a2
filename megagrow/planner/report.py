"""The planner's probe report: ``probes.json`` (every probe, its lead, the pick), ``report.md`` and
``probes.png`` (the probes' validation loss against FLOPs, over the scratch reference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megagrow.checkpointing.store import atomic_write_text


def _mark(p: dict[str, Any], key: str) -> str:
    return ">= " if p.get(f"{key}_bound") else ("~ " if p.get(f"{key}_extrapolated") else "")


def render_md(report: dict[str, Any]) -> str:
    cfg, spec = report["config"], report["spec"]
    lines = ["# megagrow plan tune: probe report", "",
             f"Scratch: {cfg['max_steps']} steps, {cfg['scratch_flops']:.3e} FLOPs, WSD (decay over the last "
             f"{cfg['decay_fraction']:.0%}, from step {cfg['stable_end']}). Plans {', '.join(spec['plans'])}; "
             f"growth points {spec['points']}; LRs {spec['lrs']}; each probe trains {spec['lag']} steps past its "
             f"growth. Probes spent {report['probe_share']:.2f} scratch runs' FLOPs (cap {spec['probe_budget']:g}).",
             "", "Per-step gap: the probe's validation loss minus scratch's at the same step (the model: the grown "
             "model carries it to the end, megagrow/planner/choice.py); it sets the steps the run needs and so its "
             "predicted FLOPs saving. Lead: the FLOPs scratch needs beyond the probe's to reach the probe's loss, as a "
             "share of scratch's budget (~ : from scratch's fitted power law; >= : a lower bound).", "",
             "| probe | growth step | pre-growth lead | val loss at probe end | lead | per-step gap | steps needed "
             "| predicted saving | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    total = cfg["scratch_flops"]
    for p in report["probes"]:
        pre = (f"{_mark(p, 'pre_lead')}{p['pre_lead'] / total:+.1%}" if "pre_lead" in p else "")
        ld = f"{_mark(p, 'lead')}{p['lead'] / total:+.1%}" if "lead" in p else ""
        loss = f"{p['loss']:.4f}" if "loss" in p else ""
        gap = f"{p['step_gap']:+.4f}" if p.get("step_gap") is not None else ""
        need = str(p["predicted_steps"]) if p.get("predicted_steps") is not None else ""
        sav = f"{p['predicted_saving']:.1%}" if p.get("predicted_saving") is not None else ""
        lines.append(f"| {p['name']} | {p['growth_step']} | {pre} | {loss} | {ld} | {gap} | {need} | {sav} "
                     f"| {p['status']} |")
    pick = report.get("pick")
    lines.append("")
    if pick is None:
        lines.append("**No probe predicts a saving: train scratch** (no config written).")
    else:
        lines += [f"**Pick: {pick['name']}**: grow at step {pick['growth_step']}, run {pick['max_steps']} steps "
                  f"({pick['flops_ratio']:.3f}x scratch's FLOPs: {pick['predicted_saving']:.1%} predicted saving). "
                  f"Config: `{pick['config']}`.", "",
                  f"Its first {pick['growth_step'] + spec['lag']} steps are the probe `{pick['resume_from_probe']}`: "
                  "copy that directory to the config's run directory to resume from it instead of step 0 (exact)."]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = report["config"]["scratch_flops"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, c in report["curves"].items():
        if not c["flops"]:
            continue
        style = {"color": "black", "lw": 2} if name == "scratch" else {"lw": 1}
        ax.plot([f / total for f in c["flops"]], c["loss"], label=name, **style)
    for p in report["probes"]:
        if "loss" in p:
            ax.scatter([p["flops"] / total], [p["loss"]], s=25, zorder=3)
    pick = report.get("pick")
    if pick is not None:
        hit = next(p for p in report["probes"] if p["name"] == pick["name"])
        ax.scatter([hit["flops"] / total], [hit["loss"]], s=120, facecolors="none", edgecolors="red", zorder=4,
                   label=f"pick {pick['name']}")
    ax.set_xlabel("training FLOPs (share of scratch's budget)")
    ax.set_ylabel("validation loss")
    ax.set_title("plan tune probes (WSD stable phase)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "probes.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report.md", render_md(report))
    plot(report, out / "probes.png")
