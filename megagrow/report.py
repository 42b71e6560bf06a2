"""``megagrow report``: time-to-target against a baseline, savings, the equal-FLOPs gap, tables and plots.

The method is both papers' (Apollo, Multi-level): the target is the baseline's **final validation loss**
L*; for every run, the FLOPs / tokens / wall time at which its validation loss **first** reaches L* are
found on its evaluation points, linearly interpolated between the two evaluations that bracket the
crossing, and reported as a saving ``1 - x_run / x_baseline_total`` (the baseline's cost of its whole run).
A run that never gets to L* is "never reached" (savings null). The **equal-FLOPs gap** is the run's
final validation loss minus the baseline's validation loss at the run's total FLOPs (interpolated on the
baseline's curve; null when the run spent more FLOPs than the baseline has evaluations for).

Raw evaluation points are the default: every evaluation uses the same fixed held-out set, so the points
carry no sampling noise from evaluation to evaluation, and an EMA would only delay the crossing (biasing
savings down by up to a few evaluation intervals). ``--ema A`` smooths the curves (``s_i = A s_{i-1} + (1 - A)
l_i``) for runs whose evaluations are noisy (small eval sets); the same smoothing is applied to the
baseline, whose final smoothed loss is then L*.

For diagnosis, every run also gets its **gap curve** (its validation loss minus the baseline's at the same
FLOPs, at each of its evaluations) and, for every phase change of a growth plan, the gap at the last
evaluation before it and ``lag_steps`` after it (the LAG observation: the loss right after a growth step is
a poor predictor of the final result, the loss a short lag later a good one).

Pure functions over :class:`RunCurves` (read from ``metrics.jsonl``) do the arithmetic; :func:`write_outputs`
writes ``report.json``, ``report.md`` and the PNGs. Keep the ``report.json`` names: other tools read them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megagrow.step_costs import StepCosts, load_step_costs

METRICS = ("flops", "tokens", "wall_s")
SAVING_KEY = {"flops": "flops_saving", "tokens": "tokens_saving", "wall_s": "wall_saving"}


@dataclass(frozen=True)
class Point:
    """One evaluation: cumulative cost at that step and the validation loss."""

    step: int
    flops: float
    tokens: float
    wall_s: float
    val_loss: float

    def cost(self, metric: str) -> float:
        return float(getattr(self, metric))


@dataclass
class RunCurves:
    """A run as the report sees it: its evaluation points and its logged steps."""

    name: str
    path: Path
    plan: str
    seed: int | None
    points: list[Point]  # evaluation points, by step
    records: list[dict[str, Any]] = field(default_factory=list)  # every logged record (depth/width over steps)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final_val_loss(self) -> float:
        return self.points[-1].val_loss

    @property
    def total(self) -> dict[str, float]:
        """The whole run's cost: the last logged record (the last evaluation is at the last step)."""
        last = self.records[-1] if self.records else None
        return {m: float(last[m]) if last else self.points[-1].cost(m) for m in METRICS}


def load_run(run_dir: str | Path) -> RunCurves:
    """Read ``<run_dir>/metrics.jsonl`` (and ``config.yaml`` for the plan and seed); clear errors otherwise."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl (is this a megagrow run directory?)")
    records: list[dict[str, Any]] = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from e
        missing = [k for k in ("step", *METRICS) if k not in rec]
        if missing:
            raise ValueError(f"{path}:{i}: record lacks {missing}")
        records.append(rec)
    records.sort(key=lambda r: r["step"])
    points = [Point(int(r["step"]), float(r["flops"]), float(r["tokens"]), float(r["wall_s"]), float(r["val_loss"]))
              for r in records if r.get("val_loss") is not None]
    if not points:
        raise ValueError(f"{path}: no evaluation records (val_loss) yet; the report needs at least one")
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        from megagrow.checkpointing.rundir import current_config

        config = current_config(run_dir)  # config.yaml with the changes of later resumes applied
    plan = (config.get("growth") or {}).get("plan", "?")
    seed = (config.get("run") or {}).get("seed")
    return RunCurves(run_dir.name, run_dir, plan, seed, points, records, config)


# --------------------------------------------------------------------------------------------------
# the arithmetic (pure)


def ema(losses: list[float], alpha: float) -> list[float]:
    """Exponential moving average, started at the first value (no zero-init bias)."""
    if not 0 <= alpha < 1:
        raise ValueError(f"ema alpha={alpha}: must be in [0, 1)")
    out: list[float] = []
    for x in losses:
        out.append(x if not out else alpha * out[-1] + (1 - alpha) * x)
    return out


def smoothed(points: list[Point], alpha: float | None) -> list[Point]:
    if not alpha:
        return list(points)
    vals = ema([p.val_loss for p in points], alpha)
    return [Point(p.step, p.flops, p.tokens, p.wall_s, v) for p, v in zip(points, vals, strict=True)]


def first_crossing(points: list[Point], target: float) -> dict[str, float] | None:
    """Cost (flops, tokens, wall_s, step) at which the loss first reaches ``target``, linearly interpolated
    between the two evaluations that bracket the crossing; None if it never does. A first evaluation that
    is already at or below the target is the crossing itself (nothing earlier was measured)."""
    for i, p in enumerate(points):
        if p.val_loss <= target:
            if i == 0:
                return {"step": float(p.step), **{m: p.cost(m) for m in METRICS}}
            q = points[i - 1]
            frac = (q.val_loss - target) / (q.val_loss - p.val_loss)
            out = {m: q.cost(m) + frac * (p.cost(m) - q.cost(m)) for m in METRICS}
            out["step"] = q.step + frac * (p.step - q.step)
            return out
    return None


def loss_at(points: list[Point], metric: str, x: float) -> float | None:
    """The curve's loss at cost ``x`` of ``metric`` (linear between evaluations); None outside its range."""
    xs = [p.cost(metric) for p in points]
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for i in range(1, len(points)):
        if x <= xs[i]:
            a, b = points[i - 1], points[i]
            span = xs[i] - xs[i - 1]
            t = 0.0 if span == 0 else (x - xs[i - 1]) / span
            return a.val_loss + t * (b.val_loss - a.val_loss)
    return points[-1].val_loss


def gap_curve(run_pts: list[Point], base_pts: list[Point]) -> list[tuple[int, float, float]]:
    """(step, flops, run loss - baseline loss at the same FLOPs) at each evaluation of the run that lies within
    the baseline's evaluated FLOPs range."""
    out = []
    for p in run_pts:
        b = loss_at(base_pts, "flops", p.flops)
        if b is not None:
            out.append((p.step, p.flops, p.val_loss - b))
    return out


def phase_changes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where the logged ``phase`` changes. ``step`` = the optimizer steps completed when the new phase began: exact
    where the trainer recorded the old phase's last step (``phase_end``, every transition since it does), else the
    first logged step of the new phase (within ``log_every``; ``exact`` False)."""
    out = []
    for prev, rec in zip(records, records[1:], strict=False):
        if rec.get("phase") != prev.get("phase"):
            exact = bool(prev.get("phase_end"))
            out.append({"step": int(prev["step"] if exact else rec["step"]), "from": prev.get("phase"),
                        "to": rec.get("phase"), "flops": float(prev["flops"]), "exact": exact})
    return out


def transition_gaps(run: RunCurves, gaps: list[tuple[int, float, float]], lag_steps: int) -> list[dict[str, Any]]:
    """Each phase change with the equal-FLOPs gap at the last evaluation before it and ``lag_steps`` after."""
    out = []
    for t in phase_changes(run.records):
        before = [g for g in gaps if g[0] < t["step"]]
        after = [g for g in gaps if g[0] >= t["step"] + lag_steps]
        out.append({**t, "gap_before": before[-1][2] if before else None,
                    "gap_after_lag": after[0][2] if after else None, "lag_steps": lag_steps})
    return out


def phase_costs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per contiguous phase: steps, FLOPs, wall time and seconds per TFLOP, from the cumulative counters of
    consecutive records (an interval is charged to the phase logged at its end)."""
    out: list[dict[str, Any]] = []
    prev = {"step": 0, "flops": 0.0, "wall_s": 0.0}
    for rec in records:
        d = {k: float(rec[k]) - float(prev[k]) for k in ("step", "flops", "wall_s")}
        if not out or out[-1]["phase"] != rec.get("phase"):
            out.append({"phase": rec.get("phase"), "steps": 0, "flops": 0.0, "wall_s": 0.0})
        cur = out[-1]
        cur["steps"] += int(d["step"])
        cur["flops"] += d["flops"]
        cur["wall_s"] += d["wall_s"]
        prev = rec
    for c in out:
        c["s_per_tflop"] = c["wall_s"] / (c["flops"] / 1e12) if c["flops"] else None
    return out


# a run whose total FLOPs is within this fraction of the baseline's last evaluation is compared with the baseline's
# final loss (a budget set to "scratch's FLOPs" rounds its steps, landing a hair past the baseline's curve)
EQUAL_FLOPS_RTOL = 1e-3


def compare(run: RunCurves, baseline: RunCurves, ema_alpha: float | None = None,
            lag_steps: int = 200, costs: StepCosts | None = None) -> dict[str, Any]:
    """One run against the baseline: crossing, savings, equal-FLOPs gap and totals (``report.json``); with
    ``costs``, also the wall-time saving priced at side-by-side step costs (``priced_wall_saving``)."""
    base_pts, run_pts = smoothed(baseline.points, ema_alpha), smoothed(run.points, ema_alpha)
    target = base_pts[-1].val_loss
    base_total = baseline.total
    total = run.total
    cross = first_crossing(run_pts, target)
    final = run_pts[-1].val_loss
    base_at = loss_at(base_pts, "flops", total["flops"])
    end = base_pts[-1].flops if base_pts else 0.0
    if base_at is None and end and abs(total["flops"] - end) <= EQUAL_FLOPS_RTOL * end:
        base_at = base_pts[-1].val_loss  # "given scratch's FLOPs": its steps rounded past the baseline's total
    out: dict[str, Any] = {
        "plan": run.plan,
        "final_val_loss": final,
        "reached": cross is not None,
        **{SAVING_KEY[m]: None if cross is None else 1.0 - cross[m] / base_total[m] for m in METRICS},
        "equal_flops_gap": None if base_at is None else final - base_at,
        "seed": run.seed,
        "at_target": None if cross is None else {"step": cross["step"], **{m: cross[m] for m in METRICS}},
        "total": total,
        "total_vs_baseline": {m: total[m] / base_total[m] if base_total[m] else None for m in METRICS},
        "min_val_loss": min(p.val_loss for p in run_pts),
    }
    if costs is not None:
        base_wall = sum(costs.wall(baseline.records, float(baseline.records[-1]["step"])).values())
        parts = costs.wall(run.records, cross["step"]) if cross is not None else None
        out["priced_wall_saving"] = None if parts is None else 1.0 - sum(parts.values()) / base_wall
        out["priced_wall_s_at_target"] = parts
    gaps = gap_curve(run_pts, base_pts)
    out["transitions"] = transition_gaps(run, gaps, lag_steps)
    out["gap_curve"] = [{"step": st, "flops": f, "gap": g} for st, f, g in gaps]
    out["phases"] = phase_costs(run.records)
    return out


# Fields that must agree for two runs' validation losses to be comparable at all (the same task, the same
# held-out samples); and fields where a difference is legitimate but worth a flag (a different budget).
MUST_MATCH = ("model.family", "data.path", "data.kind", "data.seq_len", "data.eval_samples", "data.mask_prob",
              "model.vocab_size", "model.num_classes", "model.image_size", "model.patch_size")
FLAG_IF_DIFFERENT = ("train.max_steps", "data.micro_batch_size", "train.grad_accum", "model.n_layers",
                     "model.hidden")


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def comparability(run: RunCurves, baseline: RunCurves) -> tuple[list[str], list[str]]:
    """``(problems, flags)`` of ``run`` against ``baseline`` from their ``config.yaml``: problems make the losses
    incomparable (another task or evaluation set), flags are legitimate differences worth saying (budget,
    target shape). Runs without a config (hand-made metrics) are not checked."""
    if not run.config or not baseline.config:
        return [], []
    problems = [f"{k}: {_get(baseline.config, k)!r} (baseline) vs {_get(run.config, k)!r}" for k in MUST_MATCH
                if _get(run.config, k) != _get(baseline.config, k)]
    flags = [f"{k}: {_get(baseline.config, k)!r} (baseline) vs {_get(run.config, k)!r}" for k in FLAG_IF_DIFFERENT
             if _get(run.config, k) != _get(baseline.config, k)]
    base_tokens, tokens = baseline.total["tokens"], run.total["tokens"]
    if base_tokens and abs(tokens / base_tokens - 1) > 0.01:
        flags.append(f"tokens budget: {base_tokens:,.0f} (baseline) vs {tokens:,.0f}")
    return problems, flags


def build_report(runs: list[RunCurves], baseline: str, ema_alpha: float | None = None,
                 lag_steps: int = 200, allow_mismatch: bool = False, step_cost_file: str | Path | None = None,
                 allocator: str = "tcmalloc") -> dict[str, Any]:
    """``report.json``: the baseline, L*, and every run compared with it (the baseline included).

    ``step_cost_file`` (a ``benchmarks/phase_cost.py`` result; its ``allocator`` rows): also price every run's
    steps at those step costs (:mod:`megagrow.step_costs`), the wall saving a quiet machine would show.

    A run whose config makes its losses incomparable with the baseline's (another family, dataset, sequence
    length or evaluation set: :data:`MUST_MATCH`) is refused with every mismatch named, unless
    ``allow_mismatch``; legitimate differences (budget, shape) are recorded as ``flags``."""
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"runs with the same name {dup}: the report keys runs by directory name; rename one")
    by_name = {r.name: r for r in runs}
    if baseline not in by_name:
        raise ValueError(f"baseline {baseline!r} is not among the runs {names}")
    base = by_name[baseline]
    checks = {r.name: comparability(r, base) for r in runs}
    bad = {n: p for n, (p, _) in checks.items() if p}
    if bad and not allow_mismatch:
        lines = [f"  {n}: " + "; ".join(p) for n, p in bad.items()]
        raise ValueError("runs not comparable with the baseline " + repr(baseline) + " (different task or "
                         "evaluation set; pass --allow-mismatch to report them anyway):\n" + "\n".join(lines))
    target = smoothed(base.points, ema_alpha)[-1].val_loss
    costs = None
    if step_cost_file is not None:
        if not base.records or "hidden" not in base.records[-1]:
            raise ValueError(f"step costs need the baseline's logged shapes (hidden, depth): {base.path} has none")
        costs = load_step_costs(step_cost_file, allocator, (int(base.records[-1]["hidden"]),
                                                            float(base.records[-1]["depth"])))
    report = {
        "baseline": baseline,
        "target_loss": target,
        "method": {
            "target": "the baseline's final validation loss",
            "crossing": "first evaluation at or below the target, linearly interpolated with the one before",
            "smoothing": f"ema alpha={ema_alpha}" if ema_alpha else "none (raw evaluation points)",
            "saving": "1 - cost to the crossing / baseline's total cost (flops, tokens, wall_s)",
            "equal_flops_gap": "final val loss - baseline val loss at the run's total FLOPs (interpolated)",
            "transitions": f"equal-FLOPs gap at the last evaluation before each phase change and the first one "
                           f"{lag_steps} steps after it",
        },
        "runs": {r.name: compare(r, base, ema_alpha, lag_steps, costs) for r in runs},
    }
    if costs is not None:
        report["method"]["priced_wall"] = (
            f"1 - the run's steps to the crossing, each priced at its shape's step time, / the baseline's steps so "
            f"priced; step times from {costs.source} ({costs.allocator}), evaluation excluded")
        report["step_costs"] = {"source": costs.source, "allocator": costs.allocator,
                                "s_per_step": {f"{h}x{d:g}": v for (h, d), v in sorted(costs.prices.items())}}
    for name, (problems, flags) in checks.items():
        report["runs"][name]["flags"] = [*(f"NOT COMPARABLE: {p}" for p in problems), *flags]
    return report


# --------------------------------------------------------------------------------------------------
# an acceleration suite's summary (benchmarks/acceleration/run.py): report.json's "suite"


def run_status(run: RunCurves) -> dict[str, Any]:
    """The run's ``run.json`` (benchmarks/acceleration/run.py writes it: group, quiet, ...); {} where it has none."""
    path = run.path / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def best_sweep_run(runs: list[RunCurves], status: dict[str, dict[str, Any]]) -> RunCurves:
    """A suite's baseline: its finished scratch-sweep run (``group`` sweep) with the lowest final val loss."""
    sweep = [r for r in runs if status[r.name].get("group") == "sweep" and status[r.name].get("status") == "done"]
    if not sweep:
        raise ValueError("no finished scratch-sweep run (run.json group 'sweep', status 'done') among the runs")
    return min(sweep, key=lambda x: x.final_val_loss)


def suite_summary(runs: list[RunCurves], baseline: RunCurves, status: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The suite's LR sweep, seed bands, token budget, quiet wall times and credibility check (``report.json``'s
    ``suite``), from each run's ``run.json`` (``status``: name -> its contents; ``group`` sweep / seed / credibility
    and ``quiet``) and the baseline's config (its LR; its model for the non-embedding parameter count)."""
    from megagrow.config import config_from_meta
    from megagrow.models import build_model
    from megagrow.models.spec import ModelConfig

    by_group: dict[str, list[RunCurves]] = {}
    for x in runs:
        by_group.setdefault(status[x.name].get("group", ""), []).append(x)
    sweep_table = {str(x.config["optim"]["lr"]): x.final_val_loss for x in by_group.get("sweep", [])}
    best_lr = baseline.config["optim"]["lr"]
    seeds = [baseline, *[x for x in by_group.get("seed", []) if x.config["optim"]["lr"] == best_lr]]
    seed_losses = {str(x.seed): x.final_val_loss for x in seeds}
    band = max(seed_losses.values()) - min(seed_losses.values()) if len(seed_losses) > 1 else None
    by_lr: dict[str, dict[str, float]] = {}  # every LR trained with several seeds: is the best one robust?
    for x in [*by_group.get("sweep", []), *by_group.get("seed", [])]:
        by_lr.setdefault(str(x.config["optim"]["lr"]), {})[str(x.seed)] = x.final_val_loss
    model = build_model(config_from_meta(baseline.config["model"], ModelConfig))
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embed"))
    half = by_group.get("credibility", [])
    best_half = min(half, key=lambda x: x.final_val_loss) if half else None
    lrs = [float(k) for k in sweep_table]
    return {
        "best_lr": best_lr,
        "sweep": sweep_table,
        "best_lr_interior": bool(lrs) and min(lrs) < best_lr < max(lrs),
        "seed_val_losses": seed_losses,
        "noise_band": band,
        "seeds_by_lr": {lr: v for lr, v in by_lr.items() if len(v) > 1},
        "non_embedding_params": non_embedding,
        "tokens": baseline.points[-1].tokens,
        "tokens_per_non_embedding_param": baseline.points[-1].tokens / non_embedding,
        "wall_quiet": {x.name: bool(status[x.name].get("quiet")) for x in runs},
        "credibility": None if best_half is None else {
            "run": best_half.name, "half_val_loss": best_half.final_val_loss,
            "half_flops": best_half.points[-1].flops, "scratch_val_loss": baseline.final_val_loss,
            "scratch_flops": baseline.points[-1].flops,
            "scratch_beats_half": baseline.final_val_loss < best_half.final_val_loss,
            "all": {x.name: x.final_val_loss for x in half}},
    }


# --------------------------------------------------------------------------------------------------
# output


def _pct(x: float | None) -> str:
    return "never reached" if x is None else f"{100 * x:+.1f}%"


def _num(x: float | None, fmt: str = "{:+.4f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def format_table(report: dict[str, Any], noise_band: float | None = None) -> str:
    """Markdown table of every run, sorted by final validation loss."""
    priced = any("priced_wall_saving" in r for r in report["runs"].values())
    head = ("| run | plan | seed | final val loss | FLOPs saving | wall saving | "
            + ("wall saving (priced) | " if priced else "")
            + "tokens saving | equal-FLOPs gap | FLOPs | FLOPs vs base | wall vs base |")
    rows = [head, "|" + "---|" * (12 if priced else 11)]
    for name, r in sorted(report["runs"].items(), key=lambda kv: kv[1]["final_val_loss"]):
        gap = r["equal_flops_gap"]
        gap_s = _num(gap)
        if gap is not None and noise_band is not None and abs(gap) <= noise_band:
            gap_s += " (within noise)"
        tv = r["total_vs_baseline"]
        mark = " **(baseline)**" if name == report["baseline"] else ""
        mark += " ⚑" if r.get("flags") else ""
        rows.append(f"| {name}{mark} | {r['plan']} | {r['seed']} | {r['final_val_loss']:.4f} | "
                    f"{_pct(r['flops_saving'])} | {_pct(r['wall_saving'])} | "
                    + (f"{_pct(r.get('priced_wall_saving'))} | " if priced else "") +
                    f"{_pct(r['tokens_saving'])} | {gap_s} | "
                    f"{r['total']['flops']:.4g} | {_num(tv['flops'], '{:.3f}')} | {_num(tv['wall_s'], '{:.3f}')} |")
    flagged = [(n, r["flags"]) for n, r in sorted(report["runs"].items()) if r.get("flags")]
    if flagged:
        rows += ["", "⚑ differs from the baseline: " + "; ".join(f"{n}: {', '.join(f)}" for n, f in flagged)]
    return "\n".join(rows)


def seed_bands(suite: dict[str, Any]) -> dict[str, float]:
    """LR -> the spread of the final val loss over its seeds, for every LR trained with several seeds."""
    return {lr: max(v.values()) - min(v.values()) for lr, v in (suite.get("seeds_by_lr") or {}).items() if len(v) > 1}


def flag_band(suite: dict[str, Any]) -> float | None:
    """The band gaps are called "within noise" against: the smallest seed band measured. A wider band at the best
    LR is then a seed that stalled at the edge of stability (shown in the summary), not evaluation noise."""
    bands = list(seed_bands(suite).values())
    if suite.get("noise_band") is not None:
        bands.append(suite["noise_band"])
    return min(bands) if bands else None


def render_markdown(report: dict[str, Any], plots: list[str]) -> str:
    suite = report.get("suite") or {}
    band = flag_band(suite)
    lines = [f"# Acceleration report: baseline `{report['baseline']}`", "",
             f"Target L* = the baseline's final validation loss = **{report['target_loss']:.4f}**. "
             "Savings are `1 - cost to first reach L* / baseline's total cost`, the crossing linearly interpolated "
             f"between the two evaluations that bracket it; smoothing: {report['method']['smoothing']}. "
             "The equal-FLOPs gap is a run's final validation loss minus the baseline's at the run's total FLOPs "
             "(negative = better than the baseline at the same FLOPs).", ""]
    if suite:
        lines += _suite_lines(suite, priced="step_costs" in report)
    lines += [format_table(report, band), ""]
    lines += transitions_table(report)
    lines += phase_cost_table(report)
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def transitions_table(report: dict[str, Any]) -> list[str]:
    """Per phase change: the equal-FLOPs gap before it and a lag after it (where a plan loses ground)."""
    rows = []
    for name, r in sorted(report["runs"].items()):
        for t in r.get("transitions", []):
            rows.append(f"| {name} | {t['step']} | {t['from']} → {t['to']} | {_num(t['gap_before'])} | "
                        f"{_num(t['gap_after_lag'])} |")
    if not rows:
        return []
    lag = next(t["lag_steps"] for r in report["runs"].values() for t in r.get("transitions", []))
    return ["## Where plans gain or lose ground", "",
            f"Equal-FLOPs gap (run − baseline at the same FLOPs; negative = ahead) at the last evaluation before each "
            f"phase change and at the first evaluation {lag} steps after it.", "",
            "| run | step | phase change | gap before | gap after lag |", "|---|---|---|---|---|", *rows, ""]


def phase_cost_table(report: dict[str, Any]) -> list[str]:
    """Wall time per FLOP of every phase against the baseline's: does wall time follow FLOPs?"""
    base_phases = report["runs"][report["baseline"]].get("phases") or []
    base = sum(p["wall_s"] for p in base_phases) / max(1e-9, sum(p["flops"] for p in base_phases) / 1e12)
    rows = []
    for name, r in sorted(report["runs"].items()):
        phases = r.get("phases") or []
        if name == report["baseline"] or len(phases) < 2:
            continue
        for p in phases:
            rel = p["s_per_tflop"] / base if p["s_per_tflop"] and base else None
            rows.append(f"| {name} | {p['phase']} | {p['steps']} | {p['flops'] / 1e12:.2f} | {p['wall_s']:.0f} | "
                        f"{_num(p['s_per_tflop'], '{:.1f}')} | {_num(rel, '{:.2f}')} |")
    if not rows:
        return []
    return ["## Does wall time follow FLOPs?", "",
            f"Seconds per TFLOP of each phase of each growth run against the baseline's whole run ({base:.1f} "
            "s/TFLOP); above 1 = the phase's steps cost more time than their FLOPs share (meaningful only for runs "
            "timed on a quiet machine).", "",
            "| run | phase | steps | TFLOP | wall s | s/TFLOP | vs baseline |", "|---|---|---|---|---|---|---|",
            *rows, ""]


def _suite_lines(s: dict[str, Any], priced: bool = False) -> list[str]:
    out = ["## Baseline and credibility", ""]
    sweep = ", ".join(f"{float(k):g} → {v:.4f}" for k, v in sorted(s["sweep"].items(), key=lambda kv: float(kv[0])))
    out.append(f"- Scratch LR sweep (final val loss): {sweep}; best LR **{s['best_lr']:g}** "
               f"({'interior' if s['best_lr_interior'] else 'AT AN EDGE of the sweep'}).")
    seeds = ", ".join(f"seed {k}: {v:.4f}" for k, v in s["seed_val_losses"].items())
    band = s.get("noise_band")
    fb = flag_band(s)
    narrower = band is not None and fb is not None and fb < band
    out.append(f"- Seeds of the best LR: {seeds}; noise band {_num(band, '{:.4f}')}" +
               ("." if narrower else " (a saving or gap smaller than this is within noise)."))
    for lr, per_seed in sorted((s.get("seeds_by_lr") or {}).items(), key=lambda kv: float(kv[0])):
        if float(lr) != float(s["best_lr"]):
            vals = ", ".join(f"seed {k}: {v:.4f}" for k, v in per_seed.items())
            spread = max(per_seed.values()) - min(per_seed.values())
            out.append(f"- Seeds at LR {float(lr):g}: {vals}; band {spread:.4f}.")
    if narrower:
        lr = min(seed_bands(s).items(), key=lambda kv: kv[1])[0]
        out.append(f"- The best LR's band ({band:.4f}) is wider than the band at LR {float(lr):g} ({fb:.4f}): there a "
                   "seed trains alike, at the best LR one seed did not (the edge of stability). Gaps are marked "
                   f"\"within noise\" against the smaller band, {fb:.4f}.")
    out.append(f"- Budget: {s['tokens']:,.0f} tokens for {s['non_embedding_params']:,} non-embedding parameters = "
               f"**{s['tokens_per_non_embedding_param']:.1f} tokens per non-embedding parameter**.")
    quiet = s.get("wall_quiet")
    if quiet is not None:
        loud = sorted(n for n, q in quiet.items() if not q)
        out.append("- Wall time: " + ("every run had the machine to itself." if not loud else
                   f"{len(loud)} of {len(quiet)} runs shared the machine (their logged wall savings are not "
                   f"comparable until re-timed alone" + ("; the priced column is: its step times were measured "
                                                        "alone" if priced else "") + f"): {', '.join(loud)}."))
    c = s.get("credibility")
    if c:
        verdict = "scratch beats it: the budget is long enough" if c["scratch_beats_half"] else \
            "scratch does NOT beat it: the budget is too short for the target model, savings mean little"
        out.append(f"- Credibility check: the half-width, half-depth model for the same FLOPs "
                   f"({c['half_flops']:.3g} vs {c['scratch_flops']:.3g}) ends at {c['half_val_loss']:.4f} vs "
                   f"scratch {c['scratch_val_loss']:.4f}: {verdict}.")
    else:
        out.append("- Credibility check: not run yet.")
    return [*out, ""]


def plot(report: dict[str, Any], runs: list[RunCurves], out_dir: Path) -> list[str]:
    """Validation loss vs FLOPs (with L*), vs wall time, vs tokens; executed depth and width over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = report["target_loss"]
    base = report["baseline"]
    ordered = sorted(runs, key=lambda r: (r.name != base, r.name))
    cmap = plt.get_cmap("tab20")
    colors = {r.name: ("black" if r.name == base else cmap(i % 20)) for i, r in enumerate(ordered)}
    lo = min(min(p.val_loss for p in r.points) for r in runs)
    files = []
    for metric, label, fname in (("flops", "cumulative training FLOPs", "loss_vs_flops.png"),
                                 ("wall_s", "training wall time (s)", "loss_vs_wall.png"),
                                 ("tokens", "training tokens", "loss_vs_tokens.png")):
        fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
        for ax, zoom in zip(axes, (False, True), strict=True):
            for r in ordered:
                ax.plot([p.cost(metric) for p in r.points], [p.val_loss for p in r.points], label=r.name,
                        color=colors[r.name], lw=2.2 if r.name == base else 1.1)
            ax.axhline(target, color="red", ls="--", lw=1, label=f"L* = {target:.3f}")
            ax.set_xlabel(label)
            ax.set_ylabel("validation loss")
            ax.grid(alpha=0.3)
            if zoom:
                ax.set_ylim(lo - 0.05, target + 0.6)
                ax.set_title("near the target")
            else:
                ax.set_title(f"validation loss vs {label}")
        axes[1].legend(fontsize=7, loc="upper right", ncol=2)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        files.append(fname)
    fig, ax = plt.subplots(figsize=(11, 5))
    for r in ordered:
        info = report["runs"][r.name]
        g = info.get("gap_curve") or []
        if r.name == base or not g:
            continue
        ax.plot([x["flops"] for x in g], [x["gap"] for x in g], label=r.name, color=colors[r.name], lw=1.1)
        for t in info.get("transitions", []):
            ax.axvline(t["flops"], color=colors[r.name], ls=":", lw=0.6)
    ax.axhline(0.0, color="black", lw=1.2, label=f"baseline ({base})")
    ax.set_xlabel("cumulative training FLOPs (dotted: a run's phase changes)")
    ax.set_ylabel("val loss - baseline's at the same FLOPs")
    ax.set_title("equal-FLOPs gap (negative = ahead of the baseline)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "gap_vs_flops.png", dpi=110)
    plt.close(fig)
    files.append("gap_vs_flops.png")
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.5))
    for r in ordered:
        steps = [rec["step"] for rec in r.records]
        axes[0].plot(steps, [rec.get("depth", float("nan")) for rec in r.records], label=r.name, color=colors[r.name])
        axes[1].plot(steps, [rec.get("hidden", float("nan")) for rec in r.records], label=r.name, color=colors[r.name])
    axes[0].set_ylabel("executed depth (mean over the logged steps)")
    axes[1].set_ylabel("width (hidden)")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "arch_over_steps.png", dpi=110)
    plt.close(fig)
    files.append("arch_over_steps.png")
    return files


def write_outputs(report: dict[str, Any], runs: list[RunCurves], out_dir: str | Path) -> list[Path]:
    """``report.json``, ``report.md`` and the PNGs into ``out_dir`` (written atomically)."""
    from megagrow.checkpointing.store import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(report, runs, out)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report.md", render_markdown(report, plots))
    return [out / "report.json", out / "report.md", *(out / p for p in plots)]
