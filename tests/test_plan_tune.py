"""megagrow plan tune: the probe arithmetic (pure), the choice on synthetic curves, and a tiny end-to-end tune whose
forked probes equal runs started with their growth point, whose probes stay within their FLOPs cap, and whose
written config is the pick's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megagrow.config import load_config
from megagrow.planner.choice import ProbeResult, pick, steps_needed
from megagrow.planner.curves import Curve, Lead, flops_to_reach, lead, loss_at
from megagrow.planner.probes import Candidate, Ledger, PlanChoice, candidates, growth_steps, stable_end
from tests.trainutil import TINY, records, run, tiny_config

# --- curves -------------------------------------------------------------------------------------------------------


def test_flops_to_reach_interpolates_between_evaluations_and_says_never() -> None:
    c = Curve.of([(100.0, 5.0), (200.0, 4.0), (300.0, 3.5)])
    assert flops_to_reach(c, 4.5) == pytest.approx(150.0)
    assert flops_to_reach(c, 6.0) == 100.0  # already below at the first evaluation
    assert flops_to_reach(c, 3.0) is None
    assert loss_at(c, 250.0) == pytest.approx(3.75) and loss_at(c, 50.0) is None


def test_lead_is_scratchs_extra_flops_and_a_bound_when_scratch_ends_first() -> None:
    scratch = Curve.of([(100.0, 5.0), (200.0, 4.0), (300.0, 3.5)])
    assert lead(scratch, 120.0, 4.5) == Lead(30.0)  # scratch needs 150 for 4.5: 30 more than the probe
    assert lead(scratch, 250.0, 4.5) == Lead(-100.0)  # behind
    assert lead(scratch, 200.0, 3.0) == Lead(100.0, bound=True)  # at least 300 - 200


def test_a_fitted_power_law_extrapolates_scratch_a_little_and_bounds_beyond() -> None:
    from megagrow.planner.curves import PowerLaw, fit_power_law

    true = PowerLaw(3.0, 40.0, 0.3)
    seen = Curve.of([(f, true.loss(f)) for f in range(1000, 20001, 1000)])
    law = fit_power_law(seen)
    assert law is not None and law.flops_at(true.loss(30000.0)) == pytest.approx(30000.0, rel=0.02)
    ahead = lead(seen, 15000.0, true.loss(30000.0), law)  # scratch needs 30000: 10000 past its measured end
    assert ahead.extrapolated and not ahead.bound and ahead.flops == pytest.approx(15000.0, rel=0.05)
    far = lead(seen, 15000.0, true.loss(1e6), law)  # beyond 2x the measured range: only a bound
    assert far.bound and far.flops == pytest.approx(40000.0 - 15000.0)
    assert fit_power_law(Curve.of([(1.0, 3.0), (2.0, 2.0)])) is None  # too few points


def test_a_curve_refuses_flops_that_do_not_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        Curve((1.0, 1.0), (3.0, 2.0))


# --- probes -------------------------------------------------------------------------------------------------------


def test_growth_points_resolve_to_steps_inside_the_stable_phase() -> None:
    assert stable_end(3400, 0.2) == 2720
    assert growth_steps([0.2, 0.4, 1000], 3400, 300, 0.2, 100) == [680, 1000, 1360]
    with pytest.raises(ValueError, match=r"must end by step 2720"):
        growth_steps([0.75], 3400, 300, 0.2, 100)  # 2550 + 300 runs into the decay
    with pytest.raises(ValueError, match="after the warmup"):
        growth_steps([50], 3400, 300, 0.2, 100)
    with pytest.raises(ValueError, match="same step twice"):
        growth_steps([0.2, 680], 3400, 300, 0.2, 100)


def test_plan_choices_parse_with_clear_errors() -> None:
    assert PlanChoice.parse("stackbert:6") == PlanChoice("stackbert", 6)
    assert PlanChoice.parse("msg").overrides(12) == ("--growth.plan=msg",)
    assert PlanChoice("gstack", 3).overrides(12) == ("--growth.plan=gstack", "--growth.stages=[3,12]")
    for bad in ("scratch", "stackbert:x", ":6"):
        with pytest.raises(ValueError, match="--plans"):
            PlanChoice.parse(bad)


def test_candidates_go_earliest_growth_first_and_share_a_prefix_per_plan_and_lr() -> None:
    a, b = PlanChoice("stackbert", 6), PlanChoice("stackbert", 3)
    cs = candidates([a, b], [4e-3], [1360, 680])
    assert [c.name for c in cs] == ["stackbert6-lr0.004-g680", "stackbert3-lr0.004-g680",
                                    "stackbert6-lr0.004-g1360", "stackbert3-lr0.004-g1360"]
    assert len({c.prefix for c in cs}) == 2


def test_the_ledger_refuses_what_passes_the_cap() -> None:
    led = Ledger(cap=10.0)
    assert led.affords(10.0)
    led.charge(7.0)
    assert led.affords(3.0) and not led.affords(3.5)


# --- the choice on synthetic curves -------------------------------------------------------------------------------


def _result(g: int, saving: float | None, lead_flops: float = 0.0) -> ProbeResult:
    return ProbeResult(Candidate(PlanChoice("stackbert", 6), 4e-3, g), 0.0, 0.0, Lead(lead_flops), None, 0.0, 100,
                       saving)


def test_pick_takes_the_largest_predicted_saving_and_nothing_when_none_saves() -> None:
    assert pick([_result(680, 0.12), _result(1360, 0.17), _result(2040, 0.05)]).candidate.growth_step == 1360
    assert pick([_result(680, 0.1), _result(1360, 0.1)]).candidate.growth_step == 680  # a tie: the earlier
    assert pick([_result(680, -0.01), _result(1360, None)]) is None


def test_token_parity_prices_a_per_step_gap_in_steps() -> None:
    assert steps_needed(-0.02, 1e-4, 3400) == 3400  # ahead of scratch per step: scratch's own budget
    assert steps_needed(0.0, 0.0, 3400) == 3400
    assert steps_needed(0.01, 1e-4, 3400) == 3500  # 0.01 nats behind at 1e-4 per step: 100 more steps
    with pytest.raises(ValueError, match="descent per step"):
        steps_needed(0.01, 0.0, 3400)


def test_the_pick_on_synthetic_curves_is_the_growth_point_with_the_largest_saving() -> None:
    """Scratch L(s) = 2 + 10 s^-0.3 per step, 1 FLOP per full-model step, 0.5 per small-model step. An early
    growth is ahead per step but saved little; a late one saved most but is far behind per step and needs many
    more steps; the middle one wins."""
    steps = 1000

    def scratch(s: float) -> float:
        return 2 + 10 * s ** -0.3

    slope = 10 * 0.3 * 800 ** -1.3  # scratch's descent per step where its stable phase ends
    gaps = {100: -0.01, 400: 0.0, 700: 0.2}  # the probes' loss minus scratch's at their step
    results = []
    for g, gap in gaps.items():
        need = steps_needed(gap, slope, steps)
        saving = 1 - (0.5 * g + (need - g)) / steps
        results.append(ProbeResult(Candidate(PlanChoice("stackbert", 6), 4e-3, g), g, scratch(g + 30) + gap,
                                   Lead(0.0), None, gap, need, saving))
    by_g = {r.candidate.growth_step: r.saving for r in results}
    assert by_g[400] > by_g[100] > 0 > by_g[700], by_g
    assert pick(results).candidate.growth_step == 400


# --- end to end ---------------------------------------------------------------------------------------------------


def _base(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [*TINY["gpt"], f"--data.path={data}", "--data.micro_batch_size=8", "--data.eval_samples=32",
            "--train.max_steps=40", "--train.eval_every=4", "--logging.log_every=4", "--optim.warmup_steps=2",
            "--optim.lr=3e-3", "--optim.schedule=wsd", "--optim.decay_fraction=0.2", f"--run.out_dir={tmp_path}",
            "--run.name=base", *extra]


def test_tune_end_to_end_on_a_tiny_gpt(tmp_path: Path, text_data: Path) -> None:
    from megagrow.planner.tune import TuneSpec, tune

    args = _base(tmp_path, text_data)
    out = tmp_path / "tune"
    spec = TuneSpec(plans=[PlanChoice("stackbert", 1)], points=[8, 16], out=out, lag=6, probe_budget=1.5)
    report = tune(lambda extra: load_config(None, [*args, *extra]), spec, log=lambda m: None)
    by = {p["name"]: p for p in report["probes"]}
    assert set(by) == {"stackbert1-lr0.003-g8", "stackbert1-lr0.003-g16"}
    assert report["probe_flops"] <= 1.5 * report["config"]["scratch_flops"] * (1 + 1e-9)
    probed = [p for p in report["probes"] if p["status"] == "probed"]
    assert probed, report["probes"]
    # a forked probe is exactly the run started with its growth point (the fork resumes a shared prefix)
    p = probed[0]
    direct = run(tiny_config("gpt", tmp_path, "direct", "--growth.plan=stackbert", "--growth.stages=[1,3]",
                             "--growth.boundary_unit=steps", f"--growth.boundaries=[{p['growth_step']}]",
                             "--train.max_steps=40", "--train.eval_every=4", "--logging.log_every=4",
                             "--optim.schedule=wsd", "--optim.decay_fraction=0.2",
                             f"--train.exit_at_step={p['probe_end']}", data_path=text_data))
    ref = {r["step"]: r["val_loss"] for r in records(direct.run_dir) if "val_loss" in r}
    assert ref[p["probe_end"]] == p["loss"]
    # the report and the written config
    saved = json.loads((out / "probes.json").read_text())
    assert saved["probes"] == report["probes"]
    assert (out / "report.md").is_file() and (out / "probes.png").stat().st_size > 0
    if report["pick"] is None:
        assert not (out / "plan.yaml").exists()
        return
    cfg = load_config(out / "plan.yaml")
    pk = report["pick"]
    assert (cfg.growth.plan, cfg.growth.stages, cfg.growth.boundaries) == ("stackbert", [1, 3], [pk["growth_step"]])
    assert cfg.growth.boundary_unit == "steps" and cfg.train.max_steps == pk["max_steps"] >= 40
    probe = next(p for p in report["probes"] if p["name"] == pk["name"])
    assert probe["predicted_saving"] == pk["predicted_saving"] > 0 and probe["step_gap"] is not None
    assert (probe["step_gap"] <= 0) == (pk["max_steps"] == 40)  # behind per step: more steps than scratch


def test_tune_skips_what_the_probe_budget_cannot_pay_for(tmp_path: Path, text_data: Path) -> None:
    from megagrow.planner.tune import TuneSpec, tune

    args = _base(tmp_path, text_data)
    spec = TuneSpec(plans=[PlanChoice("stackbert", 1)], points=[8, 16], out=tmp_path / "t", lag=6,
                    probe_budget=0.05)
    report = tune(lambda extra: load_config(None, [*args, *extra]), spec, log=lambda m: None)
    assert all(p["status"].startswith("not probed: over the probe budget") for p in report["probes"])
    assert report["pick"] is None and report["probe_flops"] == 0


def test_tune_refuses_a_config_it_cannot_probe(tmp_path: Path, text_data: Path) -> None:
    from megagrow.planner.tune import TuneSpec, tune

    spec = TuneSpec(plans=[PlanChoice("stackbert", 1)], points=[8], out=tmp_path / "t", lag=6)
    args = _base(tmp_path, text_data, "--optim.schedule=cosine", "--growth.plan=apollo", "--growth.stages=[1,3]",
                 "--growth.boundaries=[0.5]")
    with pytest.raises(ValueError) as e:
        tune(lambda extra: load_config(None, [*args, *extra]), spec, log=lambda m: None)
    assert "growth.plan=apollo" in str(e.value) and "optim.schedule=cosine" in str(e.value)


def test_a_second_tune_continues_from_the_probes_on_disk(tmp_path: Path, text_data: Path) -> None:
    """Re-running the same tune trains nothing already trained and gives the same report (resumable)."""
    from megagrow.planner.tune import TuneSpec, tune

    args = _base(tmp_path, text_data)
    spec = TuneSpec(plans=[PlanChoice("stackbert", 1)], points=[8, 16], out=tmp_path / "t", lag=6, probe_budget=1.5)
    first = tune(lambda extra: load_config(None, [*args, *extra]), spec, log=lambda m: None)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "t" / "probes").rglob("metrics.jsonl")}
    second = tune(lambda extra: load_config(None, [*args, *extra]), spec, log=lambda m: None)
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # no run trained again
    assert second["probes"] == first["probes"] and second["pick"] == first["pick"]
    assert second["probe_flops"] == pytest.approx(first["probe_flops"])
