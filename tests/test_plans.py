"""Growth plans through the real trainer: transitions rebuild the engine from the full state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from megagrow.config import load_config
from megagrow.growth.plans import PLANS, build_plan
from tests.trainutil import records, run, tiny_config

MULTILEVEL = ["--growth.plan=multilevel", "--growth.multilevel.levels=2", "--growth.boundaries=4,12",
              "--growth.boundary_unit=steps", "--model.n_layers=4", "--model.n_heads=4", "--model.ln_eps=1e-12"]
STAGED = {
    "apollo": ["--growth.plan=apollo", "--growth.stages=1,2,4", "--growth.boundaries=6,12",
               "--growth.boundary_unit=steps", "--model.n_layers=4"],
    "stackbert": ["--growth.plan=stackbert", "--growth.stages=1,2,4", "--growth.boundaries=6,12",
                  "--growth.boundary_unit=steps", "--model.n_layers=4"],
}


def assert_loss_falls_after_every_transition(recs: list[dict]) -> None:
    """Inside every phase that starts at a transition, the mean loss of its last two steps is below that of its
    first two: training goes on from each transition, it does not just survive it."""
    runs: list[tuple[str, list[float]]] = []  # consecutive steps of one phase (a V-cycle revisits a level)
    for r in recs:
        assert r["loss"] == r["loss"] and abs(r["loss"]) != float("inf"), r  # finite
        if not runs or runs[-1][0] != r["phase"]:
            runs.append((r["phase"], []))
        runs[-1][1].append(r["loss"])
    assert len(runs) >= 2, runs
    for name, losses in runs[1:]:
        assert len(losses) >= 4, (name, losses)
        assert sum(losses[-2:]) < sum(losses[:2]), f"phase {name}: loss did not fall: {losses}"


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
    assert_loss_falls_after_every_transition(recs)


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
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert_loss_falls_after_every_transition(recs)


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
    "bert2bert-fpi": ["--growth.plan=bert2bert", "--growth.bert2bert.method=fpi", "--growth.boundaries=8",
                      "--growth.boundary_unit=steps", "--model.n_layers=4", "--model.n_heads=4",
                      "--model.ln_eps=1e-12"],
    "gstack": ["--growth.plan=gstack", "--growth.stages=1,4", "--growth.boundaries=8",
               "--growth.boundary_unit=steps", "--model.n_layers=4"],
    "ligo": ["--growth.plan=ligo", "--growth.boundaries=8", "--growth.boundary_unit=steps", "--growth.ligo.steps=4",
             "--model.n_layers=4", "--model.n_heads=4"],
    "msg": ["--growth.plan=msg", "--growth.boundaries=8", "--growth.boundary_unit=steps", "--growth.msg.ramp_steps=4",
            "--model.n_layers=4", "--model.n_heads=4", "--model.ln_eps=1e-12"],
}


@pytest.mark.parametrize("plan", sorted(ONE_STEP_GROWTH))
@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_one_step_growth_plans_train(plan: str, family: str, tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config(family, tmp_path, f"{plan}-{family}", *ONE_STEP_GROWTH[plan], "--train.max_steps=20",
                      "--train.eval_every=10", "--optim.warmup_steps=2", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert all(r["loss"] == r["loss"] for r in recs)
    assert len({r["phase"] for r in recs}) == 2
    assert [r["depth"] for r in recs][7:9] == ([2, 4] if plan.startswith(("bert2bert", "msg", "ligo")) else [1, 4])
    if plan.startswith(("bert2bert", "msg", "ligo")):
        assert [r["hidden"] for r in recs][7:9] == [32, 64]
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert_loss_falls_after_every_transition(recs)


@pytest.mark.parametrize("plan", ["apollo", "stackbert", "multilevel", *sorted(ONE_STEP_GROWTH)])
def test_pre_ln_bert_trains_through_every_plan(plan: str, tmp_path: Path, text_data: Path) -> None:
    """``model.bert_pre_ln`` (a final LayerNorm the post-LN BERT lacks) through every plan's transitions."""
    args = {**STAGED, **ONE_STEP_GROWTH, "multilevel": MULTILEVEL}[plan]
    cfg = tiny_config("bert", tmp_path, f"{plan}-preln", *args, "--model.bert_pre_ln=true", "--train.max_steps=20",
                      "--train.eval_every=10", "--optim.warmup_steps=2", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert_loss_falls_after_every_transition(recs)


@pytest.mark.parametrize("plan", ["multilevel", "msg", "bert2bert"])
def test_local_bias_bert_trains_through_width_growth(plan: str, tmp_path: Path, text_data: Path) -> None:
    """``model.attn_local_bias`` (one slope for every head) through the plans that change the number of heads."""
    args = {**ONE_STEP_GROWTH, "multilevel": MULTILEVEL}[plan]
    cfg = tiny_config("bert", tmp_path, f"{plan}-local", *args, "--model.attn_local_bias=0.5",
                      "--train.max_steps=20", "--train.eval_every=10", "--optim.warmup_steps=2", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert_loss_falls_after_every_transition(recs)


def test_bert2bert_fpi_transition_preserves_the_loss(tmp_path: Path, text_data: Path) -> None:
    """FPI is function preserving: the first target-model step starts from (nearly) the small model's loss."""
    cfg = tiny_config("bert", tmp_path, "fpi", *ONE_STEP_GROWTH["bert2bert-fpi"], "--train.max_steps=10",
                      "--optim.lr=1e-4", "--optim.warmup_steps=1", "--optim.schedule=constant", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert abs(recs[8]["loss"] - recs[7]["loss"]) < 0.25 * abs(recs[7]["loss"])


def test_msg_plan_schedule() -> None:
    cfg = load_config(None, ["--model.size=gpt-tiny", *ONE_STEP_GROWTH["msg"], "--train.max_steps=20"])
    plan = build_plan("msg", 4, cfg.growth, seed=0, max_steps=20, model=cfg.model)
    assert [s for s in range(20) if plan.transition(s) is not None] == [8]
    assert [plan.mask_value(s) for s in (0, 7, 8, 9, 10, 12, 19)] == [1.0, 1.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert [("masks" in plan.decide(s, 0).extras) for s in (7, 8, 11, 12)] == [False, True, True, False]
    m = plan.decide(9, 1).extras["masks"]
    assert m == plan.decide(9, 0).extras["masks"]  # a pure function of the step
    h = cfg.model.hidden
    assert m.hidden.tolist() == [1.0] * (h // 2) + [0.25] * (h // 2) and m.layers == (1.0, 1.0, 0.25, 0.25)
    assert plan.eval_masks(11) == plan.decide(11, 0).extras["masks"] and plan.eval_masks(12) is None
    # default ramp: a tenth of the run
    cfg = load_config(None, ["--model.size=gpt-tiny", "--growth.plan=msg", "--growth.boundaries=0.3",
                             "--model.n_layers=4", "--model.n_heads=4", "--train.max_steps=100"])
    assert build_plan("msg", 4, cfg.growth, seed=0, max_steps=100, model=cfg.model).ramp == 10


def test_msg_growth_preserves_the_function(tmp_path: Path, text_data: Path) -> None:
    """At mask 0 the grown model is the small model: the validation loss right after the growth step (taken
    before any target-model update would move it much: lr ~0) equals the one right before it."""
    args = [*ONE_STEP_GROWTH["msg"], "--train.max_steps=10", "--train.eval_every=1", "--optim.warmup_steps=1",
            "--optim.schedule=constant"]
    cfg = tiny_config("bert", tmp_path, "msg-fp", *args, "--optim.lr=1e-9", data_path=text_data)
    recs = records(run(cfg).run_dir)
    # step 8 ran the grown model at mask 0 with an lr too small to move it: same function as after step 7
    assert recs[8]["val_loss"] == pytest.approx(recs[7]["val_loss"], rel=1e-5)
    assert recs[8]["hidden"] == 2 * recs[7]["hidden"] and recs[8]["depth"] == 2 * recs[7]["depth"]
    # and the training loss of the first grown step starts from the small model's level
    cfg = tiny_config("gpt", tmp_path, "msg-fp-gpt", *args, "--optim.lr=1e-4", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert abs(recs[8]["loss"] - recs[7]["loss"]) < 0.05 * abs(recs[7]["loss"])


@pytest.mark.parametrize("stop", [8, 10], ids=["at-growth", "mid-ramp"])
def test_msg_resume_during_the_ramp_is_exact(stop: int, tmp_path: Path, text_data: Path) -> None:
    """Growth at step 8, masks ramp over steps 8..11: resuming at the growth step or mid-ramp is exact."""
    args = [*ONE_STEP_GROWTH["msg"], "--train.max_steps=14", "--model.dropout=0.1", "--train.eval_every=5"]
    full = run(tiny_config("gpt", tmp_path, "full", *args, data_path=text_data))
    cut = run(tiny_config("gpt", tmp_path, "cut", *args, f"--train.exit_at_step={stop}", data_path=text_data))
    assert cut.step == stop
    resumed = run(tiny_config("gpt", tmp_path, "cut", *args, data_path=text_data))
    a, b = records(full.run_dir), records(resumed.run_dir)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [(r["depth"], r["flops"]) for r in a] == [(r["depth"], r["flops"]) for r in b]
    evals = [(r["step"], r["val_loss"]) for r in a if r.get("val_loss") is not None and r["step"] in (5, 10)]
    assert len(evals) == 2  # step 10: evaluated mid-ramp, under the masks of step 9
    assert evals == [(r["step"], r["val_loss"]) for r in b if r.get("val_loss") is not None and r["step"] in (5, 10)]


def test_ligo_charges_its_operator_training(tmp_path: Path, text_data: Path) -> None:
    """The growth step also trains the operator for ligo_steps global batches: they are charged as samples,
    tokens and FLOPs (the target model's forward+backward plus the operator's own), and read real data."""
    from megagrow.growth.plans.ligo import _fit_flops
    from megagrow.models import build_model

    args = [*ONE_STEP_GROWTH["ligo"], "--train.max_steps=10"]
    cfg = tiny_config("gpt", tmp_path, "ligo", *args, data_path=text_data)
    recs = records(run(cfg).run_dir)
    d = [{k: b[k] - a[k] for k in ("samples", "tokens", "flops")} for a, b in zip(recs, recs[1:], strict=False)]
    assert d[6]["samples"] == 8 and d[7]["samples"] == 8 * 5 and d[8]["samples"] == 8  # step 9 = growth + 4 fit
    assert d[7]["tokens"] == 5 * d[8]["tokens"]
    plan = build_plan("ligo", 4, cfg.growth, 0, 10, model=cfg.model)
    small = build_model(dataclasses.replace(cfg.model, **plan.dims(True)))  # cfg.model.vocab_size: set by the run
    op = _fit_flops({n: tuple(p.shape) for n, p in small.named_parameters()}, plan.shape())
    assert d[7]["flops"] == 5 * d[8]["flops"] + 4 * op + op // 3


@pytest.mark.parametrize("stop", [8, 9], ids=["just-before-growth", "just-after-growth"])
def test_ligo_resume_across_the_learned_transition_is_exact(stop: int, tmp_path: Path, text_data: Path) -> None:
    args = [*ONE_STEP_GROWTH["ligo"], "--train.max_steps=11", "--model.dropout=0.1"]
    full = run(tiny_config("gpt", tmp_path, "full", *args, data_path=text_data))
    run(tiny_config("gpt", tmp_path, "cut", *args, f"--train.exit_at_step={stop}", data_path=text_data))
    resumed = run(tiny_config("gpt", tmp_path, "cut", *args, data_path=text_data))
    a, b = records(full.run_dir), records(resumed.run_dir)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [(r["samples"], r["flops"]) for r in a] == [(r["samples"], r["flops"]) for r in b]


APOLLO_ML = ["--growth.plan=apollo+multilevel", "--growth.multilevel.levels=2", "--growth.boundaries=4,12",
             "--growth.boundary_unit=steps", "--model.n_layers=4", "--model.n_heads=4", "--model.ln_eps=1e-12"]


@pytest.mark.parametrize("family", ["gpt", "bert", "deit"])
def test_apollo_multilevel_trains(family: str, tmp_path: Path, text_data: Path) -> None:
    """The coarse level (2 slots, half width) runs LVPS-sampled depths 2..4 through the interpolation map."""
    steps = 30 if family == "deit" else 20  # synthetic images: a larger batch and more steps to beat the noise
    batch = ["--data.micro_batch_size=16"] if family == "deit" else ["--train.grad_accum=2",
                                                                      "--data.micro_batch_size=4"]
    cfg = tiny_config(family, tmp_path, f"aml-{family}", *APOLLO_ML, f"--train.max_steps={steps}",
                      "--train.eval_every=10", *batch, data_path=text_data if family != "deit" else None)
    recs = records(run(cfg).run_dir)
    hidden = cfg.model.hidden
    assert [r["hidden"] for r in recs] == [hidden] * 4 + [hidden // 2] * 8 + [hidden] * (steps - 12)
    coarse = [r["depth"] for r in recs[4:12]]
    assert all(2 <= d <= 4 for d in coarse) and len(set(coarse)) > 1  # sampled per micro-batch
    assert [r["depth"] for r in recs[12:]] == [4] * (steps - 12) and [r["depth"] for r in recs[:4]] == [4] * 4
    assert [r["phase"] for r in recs][4] == "apollo+multilevel-L1"
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert_loss_falls_after_every_transition(recs)


def test_apollo_multilevel_resume_inside_the_coarse_level_is_exact(tmp_path: Path, text_data: Path) -> None:
    args = [*APOLLO_ML, "--train.max_steps=16"]
    full = run(tiny_config("gpt", tmp_path, "full", *args, data_path=text_data))
    run(tiny_config("gpt", tmp_path, "cut", *args, "--train.exit_at_step=7", data_path=text_data))
    resumed = run(tiny_config("gpt", tmp_path, "cut", *args, data_path=text_data))
    a, b = records(full.run_dir), records(resumed.run_dir)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [(r["depth"], r["flops"]) for r in a] == [(r["depth"], r["flops"]) for r in b]


def test_multilevel_function_preserving_decoalescing_options_reach_the_transition() -> None:
    """growth.multilevel.depth_decoalesce=zero and growth.multilevel.residual_scale=true with alpha 0: the model after
    the V-cycle's de-coalescing computes what the coarse model computed (pre-LN GPT; the ops tests check the
    operators)."""
    from megagrow.models import build_model
    from megagrow.state import FullState

    args = ["--model.size=gpt-tiny", *MULTILEVEL, "--train.max_steps=16", "--growth.multilevel.alpha=0",
            "--model.dropout=0", "--model.vocab_size=64", "--model.attn_dropout=0"]
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids}

    def out(model_cfg, state: FullState) -> torch.Tensor:
        model = build_model(model_cfg).eval()
        model.load_state_dict(state.params, strict=True)
        with torch.no_grad():
            return model(batch, model.full_layer_map()).logits

    devs = {}
    for extra in ([], ["--growth.multilevel.depth_decoalesce=zero", "--growth.multilevel.residual_scale=true"]):
        cfg = load_config(None, [*args, *extra])
        plan = build_plan("multilevel", 4, cfg.growth, seed=0, max_steps=16, model=cfg.model)
        torch.manual_seed(0)
        fine = FullState(params={n: p.detach().clone() for n, p in build_model(cfg.model).named_parameters()})
        coarse = plan.transition(4).operator(fine)
        coarse_cfg = dataclasses.replace(cfg.model, **plan.dims(1))
        up = plan.transition(12).operator(coarse)
        devs[bool(extra)] = float((out(cfg.model, up) - out(coarse_cfg, coarse)).abs().max())
    print(f"\nde-coalesced vs coarse logits, max abs: paper {devs[False]:.2e}, function-preserving {devs[True]:.2e}")
    assert devs[True] < 1e-4 < devs[False]
    with pytest.raises(ValueError, match="residual_scale=true: only for model.family='gpt'"):
        load_config(None, ["--model.size=bert-tiny", *MULTILEVEL, "--growth.multilevel.residual_scale=true"])
