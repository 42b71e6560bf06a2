"""``megagrow plan tune``: train the probes, score them, pick, write the config (thin orchestration over
:mod:`.probes`, :mod:`.curves` and :mod:`.choice`)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megagrow.checkpointing.store import atomic_write_text
from megagrow.config import Config, dump_yaml
from megagrow.planner.choice import ProbeResult, pick, steps_needed
from megagrow.planner.curves import Curve, Lead, fit_power_law, lead, loss_at
from megagrow.planner.probes import (
    Candidate,
    Ledger,
    PlanChoice,
    candidates,
    growth_steps,
    prefix_end,
    stable_end,
)

MakeConfig = Callable[[Sequence[str]], Config]  # the user's config with these overrides on top of theirs


@dataclass
class TuneSpec:
    plans: list[PlanChoice]
    points: list[float]  # growth points: fractions of the run (< 1) or steps
    out: Path
    lrs: list[float] | None = None  # None: the config's optim.lr
    lag: int = 300  # steps a probe trains past its growth
    probe_budget: float = 1.0  # the probes' FLOPs cap, in scratch runs (of the budget's length)
    budget: float | None = None  # scratch's FLOPs; None: the config's train.max_steps


@dataclass
class _Runs:
    """The probe runs on disk and their curves."""

    root: Path
    common: list[str]
    make: MakeConfig
    step: dict[str, int] = field(default_factory=dict)

    def cfg(self, name: str, overrides: Sequence[str], exit_at: int) -> Config:
        return self.make([*self.common, f"--run.name={name}", *overrides, f"--train.exit_at_step={exit_at}"])

    def current(self, name: str) -> int:
        """The step run ``name`` has checkpointed (0 if none): a re-run of the same tune continues from there."""
        if name not in self.step:
            latest = self.root / name / "checkpoints" / "latest"
            meta = self.root / name / "checkpoints" / latest.read_text().strip() / "meta.json" \
                if latest.is_file() else None
            self.step[name] = int(json.loads(meta.read_text())["counters"]["step"]) if meta and meta.is_file() else 0
        return self.step[name]

    def advance(self, name: str, overrides: Sequence[str], to_step: int) -> float:
        """Train run ``name`` up to ``to_step`` (resuming where it stopped); returns the FLOPs it spent."""
        from megagrow.trainer.loop import train

        before = self.curve_flops(name)
        if self.current(name) < to_step:
            res = train(self.cfg(name, overrides, to_step))
            self.step[name] = res.step
        return self.curve_flops(name) - before

    def fork(self, src: str, dst: str, at: int) -> None:
        """A copy of run ``src`` (at step ``at``) as run ``dst`` (checkpoint, metrics, config): resuming it continues
        exactly. A fork already made (a re-run of the same tune) is kept."""
        if self.current(dst) >= at:
            return
        if self.current(src) != at:
            raise RuntimeError(f"{self.root / src} is at step {self.current(src)}, not {at}: cannot fork {dst} from it "
                               f"(remove {self.root / dst} and {self.root / src} to probe them again)")
        if (self.root / dst).exists():
            shutil.rmtree(self.root / dst)
        shutil.copytree(self.root / src, self.root / dst)
        self.step[dst] = self.current(src)

    def records(self, name: str) -> list[dict[str, Any]]:
        path = self.root / name / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    def curve_flops(self, name: str) -> float:
        recs = self.records(name)
        return float(recs[-1]["flops"]) if recs else 0.0

    def curve(self, name: str, x: str = "flops") -> Curve:
        """The run's validation loss against its cumulative FLOPs (``x="flops"``) or its step (``x="step"``)."""
        pts = {float(r[x]): float(r["val_loss"]) for r in self.records(name) if "val_loss" in r}
        return Curve.of(list(pts.items()))

    def at(self, name: str, step: int) -> tuple[float, float]:
        """(FLOPs, validation loss) of run ``name``'s evaluation at ``step``."""
        for r in self.records(name):
            if r["step"] == step and "val_loss" in r:
                return float(r["flops"]), float(r["val_loss"])
        raise RuntimeError(f"{self.root / name}: no evaluation at step {step}")


def _flops_until(make: MakeConfig, overrides: Sequence[str], step: int) -> float:
    """Expected training FLOPs of the config's first ``step`` steps (megagrow plan show's model)."""
    from megagrow.planner.show import summarize

    s = summarize(make(list(overrides)))
    total = sum(p.flops_per_step * max(0, min(step, p.start_step + p.steps) - p.start_step) for p in s.phases)
    return total + sum(t.get("fit_flops", 0) for t in s.transitions if t["step"] < step)


def _spent_on_disk(runs: _Runs, cands: Sequence[Candidate]) -> float:
    """FLOPs the probe runs already on disk trained (a re-run of the same tune): every run's FLOPs, less what each
    fork copied from its prefix."""
    spent = 0.0
    for name in {"scratch", *(c.prefix for c in cands), *(c.name for c in cands)}:
        spent += runs.curve_flops(name)
    for c in cands:
        for r in runs.records(c.name):
            if r["step"] == c.growth_step:
                spent -= float(r["flops"])
                break
    return spent


def _check_base(cfg: Config) -> None:
    problems = []
    if cfg.growth.plan != "scratch":
        problems.append(f"growth.plan={cfg.growth.plan}: plan tune starts from the scratch config (the candidates "
                        "come from --plans); keep only method options (e.g. growth.moments) in its growth section")
    if cfg.optim.schedule != "wsd":
        problems.append(f"optim.schedule={cfg.optim.schedule}: plan tune probes in the stable phase of a "
                        "warmup-stable-decay schedule (optim.schedule=wsd), where a probe is exactly the start of "
                        "its full run")
    if cfg.growth.lr_policy not in ("auto", "continue"):
        problems.append(f"growth.lr_policy={cfg.growth.lr_policy}: probes share one global LR schedule "
                        "(auto or continue)")
    if problems:
        raise ValueError("plan tune: " + "; ".join(problems))


def tune(make: MakeConfig, spec: TuneSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the probes of ``spec`` for the config ``make([])`` and return the probe report (also written, with
    the picked config ``plan.yaml``, under ``spec.out``)."""
    from megagrow.planner.show import summarize

    base = make([])
    _check_base(base)
    per_step = summarize(base).scratch_flops_per_step
    steps = base.train.max_steps if spec.budget is None else max(1, round(spec.budget / per_step))
    scratch_flops = per_step * steps
    o = base.optim
    points = growth_steps(spec.points, steps, spec.lag, o.decay_fraction, o.warmup_steps)
    lrs = spec.lrs or [o.lr]
    cands = candidates(spec.plans, lrs, points)
    n_layers = base.model.n_layers
    root = spec.out / "probes"
    runs = _Runs(root, [f"--run.out_dir={root}", f"--train.max_steps={steps}", "--checkpoint.every=0",
                        "--checkpoint.keep_last=1", "--checkpoint.resume=auto", "--logging.progress=off",
                        "--logging.tensorboard=false", "--growth.boundary_unit=steps"], make)
    ledger = Ledger(spec.probe_budget * scratch_flops, spent=_spent_on_disk(runs, cands))
    end = stable_end(steps, o.decay_fraction)
    chunk = base.train.eval_every or spec.lag  # the reference grows an evaluation at a time
    scratch_over = ["--growth.plan=scratch"]
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        spent = ledger.spent / scratch_flops
        elapsed = time.perf_counter() - t_start
        eta = f", ETA {elapsed * (spec.probe_budget / spent - 1) / 60:.0f} min at most" if spent > 0.02 else ""
        log(f"[plan tune] {msg} (probes so far: {spent:.2f} of {spec.probe_budget:g} scratch runs' FLOPs{eta})")

    def scratch_lead(flops: float, loss: float, reserve: float = 0.0) -> Lead:
        """The lead of (``flops``, ``loss``) over scratch: the reference is extended until it covers ``flops`` (its
        stable phase and the probe budget allowing, ``reserve`` kept for what is already approved), measured where
        scratch reaches ``loss``, else from its power law fitted after the warmup (a little extrapolation: scratch
        is trained only as far as the probes' FLOPs, never to where it matches a probe that is far ahead)."""
        while runs.curve("scratch").end < flops and runs.current("scratch") < end:
            to = min(end, runs.current("scratch") + chunk)
            cost = _flops_until(make, [*runs.common, *scratch_over], to) - runs.curve_flops("scratch")
            if not ledger.affords(cost + reserve):
                break
            ledger.charge(runs.advance("scratch", scratch_over, to))
        cur = runs.curve("scratch")
        warm = _flops_until(make, [*runs.common, *scratch_over], 2 * o.warmup_steps)
        return lead(cur, flops, loss, fit_power_law(cur, from_flops=warm))

    def scratch_covers_step(step: int) -> None:
        """Extend the reference to ``step`` (stable phase and budget allowing): a probe's per-step gap needs it."""
        while runs.current("scratch") < min(step, end):
            to = min(end, runs.current("scratch") + chunk)
            cost = _flops_until(make, [*runs.common, *scratch_over], to) - runs.curve_flops("scratch")
            if not ledger.affords(cost):
                break
            ledger.charge(runs.advance("scratch", scratch_over, to))

    probes: list[dict[str, Any]] = []
    results: list[ProbeResult] = []
    pruned: dict[str, str] = {}
    for i, c in enumerate(cands, 1):
        g = c.growth_step
        entry: dict[str, Any] = {"name": c.name, "plan": c.choice.plan, "small": c.choice.small, "lr": c.lr,
                                 "growth_step": g, "probe_end": g + spec.lag}
        probes.append(entry)
        if c.prefix in pruned:
            entry["status"] = pruned[c.prefix]
            continue
        own = [*c.choice.overrides(n_layers), f"--optim.lr={c.lr:g}"]
        prefix_over = [*own, f"--growth.boundaries=[{prefix_end(cands, c.prefix)}]"]
        fork_over = [*own, f"--growth.boundaries=[{g}]"]
        fork_cost = (_flops_until(make, [*runs.common, *fork_over], g + spec.lag)
                     - _flops_until(make, [*runs.common, *fork_over], g)) if runs.current(c.name) < g + spec.lag else 0
        prefix_cost = max(0.0, _flops_until(make, [*runs.common, *prefix_over], g) - runs.curve_flops(c.prefix))
        # scratch's reference must reach the probe's end step (its per-step gap): it covers the probe's FLOPs too
        ref_cost = max(0.0, _flops_until(make, [*runs.common, *scratch_over], min(end, g + spec.lag))
                       - runs.curve_flops("scratch"))
        if not ledger.affords(prefix_cost + fork_cost + ref_cost):
            entry["status"] = "not probed: over the probe budget"
            say(f"{i}/{len(cands)} {c.name}: skipped, its {(prefix_cost + fork_cost + ref_cost) / scratch_flops:.2f} "
                "scratch runs would pass the cap")
            continue
        scratch_covers_step(g + spec.lag)
        ledger.charge(runs.advance(c.prefix, prefix_over, g))
        f_pre, l_pre = runs.at(c.prefix, g)
        pre = scratch_lead(f_pre, l_pre, reserve=fork_cost)
        entry.update(pre_flops=f_pre, pre_loss=l_pre, pre_lead=pre.flops, pre_lead_bound=pre.bound,
                     pre_lead_extrapolated=pre.extrapolated)
        if pre.flops <= 0:
            pruned[c.prefix] = (f"not probed: the small model fell behind scratch at step {g} (a later growth "
                                "cannot be ahead)")
            entry["status"] = "pruned: the small model is behind scratch at its growth point"
            say(f"{i}/{len(cands)} {c.name}: pruned, the small model is {-pre.flops / scratch_flops:.1%} of "
                "scratch's FLOPs behind it")
            continue
        runs.fork(c.prefix, c.name, g)
        ledger.charge(runs.advance(c.name, fork_over, g + spec.lag))
        f, v = runs.at(c.name, g + spec.lag)
        ahead = scratch_lead(f, v)
        results.append(ProbeResult(c, f, v, ahead, pre))
        entry.update(status="probed", flops=f, loss=v, lead=ahead.flops, lead_bound=ahead.bound,
                     lead_extrapolated=ahead.extrapolated, lead_share=ahead.flops / scratch_flops)
        how = " (scratch's fitted curve)" if ahead.extrapolated else ""
        say(f"{i}/{len(cands)} {c.name}: val loss {v:.4f} {spec.lag} steps after growing; lead "
            f"{'>= ' if ahead.bound else ''}{ahead.flops / scratch_flops:+.1%} of scratch's FLOPs{how}")

    report: dict[str, Any] = {
        "config": {"max_steps": steps, "scratch_flops": scratch_flops, "lr": o.lr,
                   "decay_fraction": o.decay_fraction, "stable_end": end},
        "spec": {"plans": [c.tag for c in spec.plans], "points": points, "lrs": lrs, "lag": spec.lag,
                 "probe_budget": spec.probe_budget},
        "probes": probes,
        "probe_flops": ledger.spent, "probe_share": ledger.spent / scratch_flops,
        "curves": {n: {"flops": list(c.flops), "loss": list(c.loss)}
                   for n in sorted(runs.step) if (c := runs.curve(n)).flops},
    }
    # every lead and gap against the final scratch reference (and its fits): the same numbers whatever order the
    # reference grew in (a re-run of the tune, with the reference already long, reports what the first run did)
    final = runs.curve("scratch")
    law = fit_power_law(final, from_flops=_flops_until(make, [*runs.common, *scratch_over], 2 * o.warmup_steps))
    by_step = runs.curve("scratch", x="step")
    step_law = fit_power_law(by_step, from_flops=2 * o.warmup_steps)
    slope = step_law.b * step_law.c * end ** (-step_law.c - 1) if step_law is not None else 0.0
    report["config"]["scratch_slope_per_step"] = slope
    by_name = {e["name"]: e for e in probes}
    for k, r in enumerate(results):
        e, c = by_name[r.candidate.name], r.candidate
        pre = lead(final, e["pre_flops"], e["pre_loss"], law)
        ahead = lead(final, r.flops, r.loss, law)
        at = loss_at(by_step, c.growth_step + spec.lag)
        gap = None if at is None else r.loss - at
        need = saving = None
        if gap is not None and (gap <= 0 or slope > 0):
            need = steps_needed(gap, slope, steps)
            if need <= 2 * steps:
                saving = 1 - _flops_until(make, [*_own(c, n_layers), f"--train.max_steps={need}"], need) / scratch_flops
        results[k] = ProbeResult(c, r.flops, r.loss, ahead, pre, gap, need, saving)
        e.update(pre_lead=pre.flops, pre_lead_bound=pre.bound, pre_lead_extrapolated=pre.extrapolated,
                 lead=ahead.flops, lead_bound=ahead.bound, lead_extrapolated=ahead.extrapolated,
                 lead_share=ahead.flops / scratch_flops, step_gap=gap, predicted_steps=need,
                 predicted_saving=saving)
    best = pick(results)
    report["pick"] = None if best is None else _write_pick(make, spec, best, base, steps, scratch_flops)
    from megagrow.planner.report import write_report

    write_report(report, spec.out)
    return report


def _own(c: Candidate, n_layers: int) -> list[str]:
    """The candidate's plan, LR and growth point as config overrides (the growth in steps: it stays where the probe
    grew whatever the run's length)."""
    return [*c.choice.overrides(n_layers), f"--optim.lr={c.lr:g}", "--growth.boundary_unit=steps",
            f"--growth.boundaries=[{c.growth_step}]"]


def _write_pick(make: MakeConfig, spec: TuneSpec, best: ProbeResult, base: Config, steps: int,
                scratch_flops: float) -> dict[str, Any]:
    """The picked candidate's run, decaying at the steps the model says it needs: ``plan.yaml``."""
    c = best.candidate
    own = _own(c, base.model.n_layers)
    max_steps = int(best.steps)
    name = f"{base.run.name or 'run'}-tuned"
    final = make([*own, f"--train.max_steps={max_steps}", f"--run.name={name}"])
    flops = _flops_until(make, [*own, f"--train.max_steps={max_steps}"], max_steps)
    path = spec.out / "plan.yaml"
    atomic_write_text(path, f"# megagrow plan tune: {c.name}, grown at step {c.growth_step}, decaying at "
                            f"{max_steps} steps ({flops / scratch_flops:.3f}x scratch's FLOPs); probes and report "
                            "beside this file\n" + dump_yaml(final))
    return {"name": c.name, "plan": c.choice.plan, "small": c.choice.small, "lr": c.lr,
            "growth_step": c.growth_step, "lead": best.lead.flops, "lead_bound": best.lead.bound,
            "step_gap": best.step_gap, "max_steps": max_steps, "flops": flops, "flops_ratio": flops / scratch_flops,
            "predicted_saving": 1 - flops / scratch_flops, "config": str(path),
            "resume_from_probe": str(spec.out / "probes" / c.name)}


__all__ = ["Lead", "TuneSpec", "tune"]
