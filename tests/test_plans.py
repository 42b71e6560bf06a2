"""Growth plans through the real trainer: transitions rebuild the engine from the full state."""

from __future__ import annotations

from pathlib import Path

import pytest

from megagrow.config import load_config
from megagrow.growth.plans import PLANS, build_plan
from tests.trainutil import records, run, tiny_config

MULTILEVEL = ["--growth.plan=multilevel", "--growth.levels=2", "--growth.boundaries=4,12",
              "--growth.boundary_unit=steps", "--model.n_layers=4", "--model.n_heads=4", "--model.ln_eps=1e-12"]
STAGED = {
    "apollo": ["--growth.plan=apollo", "--growth.stages=1,2,4", "--growth.boundaries=6,12",
               "--growth.boundary_unit=steps", "--model.n_layers=4"],
    "stackbert": ["--growth.plan=stackbert", "--growth.stages=1,2,4", "--growth.boundaries=6,12",
                  "--growth.boundary_unit=steps", "--model.n_layers=4"],
}


def test_registry_and_schedule() -> None:
    assert {"scratch", "apollo", "stackbert"} <= set(PLANS)
    cfg = load_config(None, ["--model.size=gpt-tiny", *STAGED["apollo"], "--train.max_steps=20"])
    plan = build_plan("apollo", 4, cfg.growth, seed=0, max_steps=20)
    assert [plan.arch_at(s)["n_layers"] for s in (0, 5, 6, 11, 12, 19)] == [1, 1, 2, 2, 4, 4]
    assert [s for s in range(20) if plan.transition(s) is not None] == [6, 12]
    for step in range(20):
        for micro in range(2):
            d = plan.decide(step, micro)
            n = plan.arch_at(step)["n_layers"]
            assert n <= d.depth <= 4 and set(d.layer_map) == set(range(n))
            assert d == plan.decide(step, micro)  # a pure function of (seed, step, micro-step)
    assert plan.eval_layer_map(3) == (0, 0, 0, 0)


@pytest.mark.parametrize("plan", ["apollo", "stackbert"])
@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_staged_plan_trains_through_transitions(plan: str, family: str, tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config(family, tmp_path, f"{plan}-{family}", *STAGED[plan], "--train.max_steps=20",
                      "--train.eval_every=10", "--optim.warmup_steps=2", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert all(r["loss"] == r["loss"] and r["loss"] < 20 for r in recs)  # finite
    phases = [r["phase"] for r in recs]
    assert len(set(phases)) == 3  # three stages ran
    if plan == "apollo":
        assert len({r["depth"] for r in recs}) > 2  # sampled depths vary
        assert all(r["depth"] >= 1 for r in recs[:6]) and all(r["depth"] == 4 for r in recs[12:])
    else:
        assert [r["depth"] for r in recs] == [1] * 6 + [2] * 6 + [4] * 8
    assert recs[-1]["loss"] < recs[0]["loss"]
    # loss keeps going down inside the last stage, after the final transition
    assert sum(r["loss"] for r in recs[-3:]) < sum(r["loss"] for r in recs[12:15])


@pytest.mark.parametrize("stop", [6, 7], ids=["just-before-boundary", "just-after-boundary"])
def test_resume_across_a_transition_is_exact(stop: int, tmp_path: Path, text_data: Path) -> None:
    """Stage 2 starts at step index 6: stop after 6 steps (transition not yet applied) or after 7."""
    args = [*STAGED["apollo"], "--train.max_steps=14", "--model.dropout=0.1"]
    full = run(tiny_config("gpt", tmp_path, "full", *args, data_path=text_data))
    cut = run(tiny_config("gpt", tmp_path, "cut", *args, f"--train.exit_at_step={stop}", data_path=text_data))
    assert cut.step == stop
    resumed = run(tiny_config("gpt", tmp_path, "cut", *args, data_path=text_data))
    a, b = records(full.run_dir), records(resumed.run_dir)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [(r["depth"], r["flops"]) for r in a] == [(r["depth"], r["flops"]) for r in b]


@pytest.mark.parametrize("family", ["gpt", "bert", "deit"])
def test_multilevel_v_cycle_trains(family: str, tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config(family, tmp_path, f"ml-{family}", *MULTILEVEL, "--train.max_steps=20", "--train.eval_every=10",
                      "--optim.warmup_steps=2", data_path=text_data if family != "deit" else None)
    recs = records(run(cfg).run_dir)
    hidden = cfg.model.hidden
    assert [r["hidden"] for r in recs] == [hidden] * 4 + [hidden // 2] * 8 + [hidden] * 8
    assert [r["depth"] for r in recs] == [4] * 4 + [2] * 8 + [4] * 8
    assert [r["phase"] for r in recs][4] == "multilevel-L1"
    # lr_policy auto = reset for multilevel: each phase restarts at the peak (x4 on the coarse level), no warmup
    assert recs[4]["lr"] == pytest.approx(4 * cfg.optim.lr) and recs[12]["lr"] == pytest.approx(cfg.optim.lr)
    # the coarse phase costs less per step
    step_flops = [b["flops"] - a["flops"] for a, b in zip(recs, recs[1:], strict=False)]
    assert max(step_flops[4:10]) < 0.5 * min(step_flops[:3])
    assert all(r["loss"] == r["loss"] for r in recs)
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert sum(r["loss"] for r in recs[-3:]) < sum(r["loss"] for r in recs[12:15])


@pytest.mark.parametrize("stop", [4, 8, 12], ids=["at-coalesce", "inside-coarse-phase", "at-decoalesce"])
def test_multilevel_resume_is_exact(stop: int, tmp_path: Path, text_data: Path) -> None:
    """The pre-coalescing snapshot is checkpointed as plan state, so resuming inside the cycle is exact."""
    args = [*MULTILEVEL, "--train.max_steps=16"]
    full = run(tiny_config("gpt", tmp_path, "full", *args, data_path=text_data))
    run(tiny_config("gpt", tmp_path, "cut", *args, f"--train.exit_at_step={stop}", data_path=text_data))
    resumed = run(tiny_config("gpt", tmp_path, "cut", *args, data_path=text_data))
    a, b = records(full.run_dir), records(resumed.run_dir)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


ONE_STEP_GROWTH = {
    "bert2bert": ["--growth.plan=bert2bert", "--growth.boundaries=8", "--growth.boundary_unit=steps",
                  "--model.n_layers=4", "--model.n_heads=4", "--model.ln_eps=1e-12"],
    "bert2bert-fpi": ["--growth.plan=bert2bert", "--growth.b2b_method=fpi", "--growth.boundaries=8",
                      "--growth.boundary_unit=steps", "--model.n_layers=4", "--model.n_heads=4",
                      "--model.ln_eps=1e-12"],
    "gstack": ["--growth.plan=gstack", "--growth.stages=1,4", "--growth.boundaries=8",
               "--growth.boundary_unit=steps", "--model.n_layers=4"],
}


@pytest.mark.parametrize("plan", sorted(ONE_STEP_GROWTH))
@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_one_step_growth_plans_train(plan: str, family: str, tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config(family, tmp_path, f"{plan}-{family}", *ONE_STEP_GROWTH[plan], "--train.max_steps=20",
                      "--train.eval_every=10", "--optim.warmup_steps=2", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert all(r["loss"] == r["loss"] for r in recs)
    assert len({r["phase"] for r in recs}) == 2
    assert [r["depth"] for r in recs][7:9] == ([2, 4] if plan.startswith("bert2bert") else [1, 4])
    if plan.startswith("bert2bert"):
        assert [r["hidden"] for r in recs][7:9] == [32, 64]
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert sum(r["loss"] for r in recs[-3:]) < sum(r["loss"] for r in recs[8:11])


def test_bert2bert_fpi_transition_preserves_the_loss(tmp_path: Path, text_data: Path) -> None:
    """FPI is function preserving: the first target-model step starts from (nearly) the small model's loss."""
    cfg = tiny_config("bert", tmp_path, "fpi", *ONE_STEP_GROWTH["bert2bert-fpi"], "--train.max_steps=10",
                      "--optim.lr=1e-4", "--optim.warmup_steps=1", "--optim.schedule=constant", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert abs(recs[8]["loss"] - recs[7]["loss"]) < 0.25 * abs(recs[7]["loss"])
