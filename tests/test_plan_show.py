"""``megagrow plan show``: phases, depth pmfs and expected FLOPs of a growth plan, without training."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from megagrow.cli import main
from megagrow.config import load_config
from megagrow.growth.plans import PLANS
from megagrow.planner.show import compact_pmf, summarize

APOLLO = "configs/gpt-tiny-apollo.yaml"
SMALL = ["--model.family=gpt", "--model.n_layers=4", "--model.hidden=16", "--model.n_heads=2", "--model.ffn=64",
         "--model.vocab_size=100", "--data.seq_len=8", "--data.micro_batch_size=2", "--train.grad_accum=3",
         "--train.max_steps=10"]


def _json(capsys, *argv: str) -> dict:
    assert main(["plan", "show", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_apollo_json_has_pmf_and_ratio(capsys) -> None:
    out = _json(capsys, APOLLO, "--model.vocab_size=8000")
    assert out["plan"] == "apollo" and out["max_steps"] == 1000 and out["global_batch"] == 16
    assert out["target"]["n_layers"] == 12 and out["tokens"] == 1000 * 16 * 128
    phases = out["phases"]
    assert [p["n_layers"] for p in phases] == [1, 3, 6, 12]
    assert [(p["start_step"], p["end_step"]) for p in phases] == [(0, 50), (50, 100), (100, 250), (250, 1000)]
    n3 = phases[1]
    assert n3["sampler"] == "lvps" and set(n3["pmf"]) == {str(d) for d in range(3, 13)}
    assert n3["pmf"]["3"] == pytest.approx(0.637, abs=1e-3)
    assert n3["pmf"]["12"] == pytest.approx(0.016, abs=1e-3)
    assert sum(n3["pmf"].values()) == pytest.approx(1.0, abs=1e-12)
    assert n3["expected_depth"] == pytest.approx(sum(int(d) * p for d, p in n3["pmf"].items()))
    assert phases[-1]["pmf"] == {"12": 1.0}
    assert [t["step"] for t in out["transitions"]] == [50, 100, 250]
    assert out["transitions"][0]["arch"] == {"n_layers": 3}
    assert 0 < out["flops_ratio"] < 1
    assert out["flops"] == pytest.approx(sum(p["flops"] for p in phases))
    assert out["flops_ratio"] == pytest.approx(out["flops"] / out["scratch_flops"])


def test_scratch_ratio_is_exactly_one(capsys) -> None:
    out = _json(capsys, "configs/gpt-tiny.yaml", "--model.vocab_size=8000")
    assert out["flops_ratio"] == 1.0 and out["flops"] == out["scratch_flops"]
    assert len(out["phases"]) == 1 and out["phases"][0]["pmf"] == {"12": 1.0} and out["transitions"] == []


def test_stackbert_ratio_by_hand(capsys) -> None:
    out = _json(capsys, *SMALL, "--growth.plan=stackbert", "--growth.stages=2,4", "--growth.boundaries=4",
                "--growth.boundary_unit=steps")
    # d=16, f=64, T=8, V=100, global batch 2*3=6 samples -> 48 tokens and 48 predictions (GPT) per step.
    tokens = 6 * 8
    layer = tokens * (2 * (4 * 16 * 16 + 2 * 16 * 64) + 4 * 16 * 8)  # one layer, forward
    head = tokens * 2 * 16 * 100
    step = {d: 3 * (d * layer + head) for d in (2, 4)}
    assert [p["flops"] for p in out["phases"]] == [4 * step[2], 6 * step[4]]
    assert out["scratch_flops"] == 10 * step[4]
    assert out["flops_ratio"] == pytest.approx((4 * step[2] + 6 * step[4]) / (10 * step[4]), rel=1e-12)


def test_bert_head_counts_masked_positions(capsys) -> None:
    out = _json(capsys, *SMALL, "--model.family=bert", "--data.mask_prob=0.25")
    tokens = 6 * 8
    layer = tokens * (2 * (4 * 16 * 16 + 2 * 16 * 64) + 4 * 16 * 8)
    head = 0.25 * tokens * 2 * (16 * 16 + 16 * 100)
    assert out["scratch_flops"] == pytest.approx(10 * 3 * (4 * layer + head), rel=1e-12)


PLAN_SETTINGS = {  # every registered plan must appear here (a new plan adds its line)
    "scratch": [],
    "apollo": ["--growth.stages=1,2,4", "--growth.boundaries=0.2,0.5"],
    "stackbert": ["--growth.stages=1,2,4", "--growth.boundaries=0.2,0.5"],
    "gstack": ["--growth.stages=1,4", "--growth.boundaries=0.3"],
    "multilevel": ["--growth.multilevel.levels=2", "--growth.boundaries=0.2,0.5"],
    "bert2bert": ["--growth.boundaries=0.3"],
    "msg": ["--growth.boundaries=0.3"],
    "apollo+multilevel": ["--growth.multilevel.levels=2", "--growth.boundaries=0.2,0.5"],
    "ligo": ["--growth.boundaries=0.3", "--growth.ligo.steps=1"],
    "subpath": ["--growth.stages=2,3,4", "--growth.boundaries=0.2,0.5", "--growth.sampler=live"],
}


def test_every_plan_has_settings() -> None:
    assert set(PLAN_SETTINGS) == set(PLANS)


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_registered_plan(plan: str) -> None:
    cfg = load_config(None, [*SMALL, f"--growth.plan={plan}", *PLAN_SETTINGS[plan]])
    s = summarize(cfg)
    assert s.phases[0].start_step == 0 and s.phases[-1].end_step == cfg.train.max_steps
    assert all(a.end_step == b.start_step for a, b in zip(s.phases, s.phases[1:], strict=False))
    assert all(sum(p.pmf.values()) == pytest.approx(1.0) for p in s.phases)
    assert 0 < s.flops_ratio <= 1.0 + 1e-12


def test_generic_scan_without_starts(monkeypatch) -> None:
    """A plan whose ``starts`` do not describe its phases (empty) is scanned step by step; 100k steps stay fast."""
    cfg = load_config(None, [*SMALL, "--growth.plan=stackbert", "--growth.stages=2,4", "--growth.boundaries=0.3",
                             "--train.max_steps=100000"])
    with_starts = summarize(cfg)
    import megagrow.planner.show as ps

    real = ps._segments

    def scanned(plan, max_steps):
        class NoStarts:
            def __getattr__(self, k):
                return [] if k == "starts" else getattr(plan, k)

        return real(NoStarts(), max_steps)

    monkeypatch.setattr(ps, "_segments", scanned)
    t0 = time.perf_counter()
    scanned_summary = summarize(cfg)
    assert time.perf_counter() - t0 < 2.0
    assert [(p.start_step, p.end_step, p.n_layers) for p in scanned_summary.phases] == \
        [(p.start_step, p.end_step, p.n_layers) for p in with_starts.phases] == [(0, 30000, 2), (30000, 100000, 4)]
    assert scanned_summary.flops_ratio == with_starts.flops_ratio


@pytest.mark.parametrize("family", ["gpt", "bert", "deit"])
def test_arch_matches_model(family: str) -> None:
    import torch

    from megagrow.models import build_model

    cfg = load_config(None, [f"--model.size={family}-tiny", "--model.vocab_size=100", "--model.n_layers=2",
                             *(["--data.kind=synthetic-images"] if family == "deit" else [])])
    with torch.device("meta"):
        model = build_model(cfg.model)
    assert cfg.model.arch() == model.arch()


def test_table_prints(capsys) -> None:
    assert main(["plan", "show", APOLLO]) == 0
    out = capsys.readouterr().out
    assert "apollo-N3" in out and "3:0.637 4:0.104 … 12:0.0158" in out
    assert "[50, 100)" in out and "ratio 0." in out and "global batch of 16 samples" in out


def test_compact_pmf() -> None:
    assert compact_pmf({3: 1.0}) == "3:1"
    assert compact_pmf({3: 0.0, 4: 1.0}) == "4:1"
    assert compact_pmf({1: 0.5, 2: 0.25, 3: 0.125, 4: 0.0625, 5: 0.0625}) == "1:0.5 2:0.25 … 5:0.0625"


@pytest.mark.parametrize("argv", [
    ["configs/nope.yaml"],
    [APOLLO, "--growth.plan=nosuchplan"],
    [APOLLO, "--model.n_layerz=3"],
    [APOLLO, "--growth.boundaries=0.5,0.6,1.5"],
])
def test_bad_config_exits_2(argv: list[str], capsys) -> None:
    assert main(["plan", "show", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("megagrow: ")


def test_report_compares_runs(tmp_path, capsys) -> None:
    import json

    from megagrow.cli import main

    for name, flops, wall in (("base", 100, 10.0), ("grown", 60, 7.0)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text("growth:\n  plan: " + ("scratch" if name == "base" else "apollo") + "\n")
        recs = [{"step": s, "samples": 8 * s, "tokens": 256 * s, "flops": flops * s, "loss": 5.0 - s / 10,
                 "wall_s": wall * s / 2, "val_loss": 5.5 - s / 10} for s in (1, 2)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "grown")]) == 0
    out = capsys.readouterr().out.splitlines()
    grown = next(line for line in out if line.startswith("| grown "))
    # reaches the baseline's 5.3 at its last step: 120 of 200 FLOPs, 7 of 10 s
    assert "apollo" in grown and " 0.600 " in grown and " 0.700 " in grown and "5.3000" in grown
    assert "+40.0%" in grown and "+30.0%" in grown
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_boundaries_in_tokens_become_steps() -> None:
    """2 samples x 3 micro-batches x 8 tokens = 48 tokens per step: 250 tokens have been seen when step 6 starts
    (288 tokens), not yet at step 5 (240)."""
    cfg = load_config(None, [*SMALL, "--growth.plan=stackbert", "--growth.stages=2,4", "--growth.boundaries=250",
                             "--growth.boundary_unit=tokens"])
    s = summarize(cfg)
    assert [p.start_step for p in s.phases] == [0, 6]


def test_ligo_operator_cost_is_charged(capsys) -> None:
    """A learned transition's steps (a global batch each through the target model) and the operator's own
    FLOPs are in the plan's total, and the extra tokens are named."""
    from megagrow.growth.ops.ligo import LigoShape, materialize_flops
    from megagrow.models import build_model
    from megagrow.models.dims import Dims

    out = _json(capsys, *SMALL, "--growth.plan=ligo", "--growth.boundaries=0.5", "--growth.ligo.steps=7")
    (tr,) = out["transitions"]
    small, big = out["phases"]
    assert tr["step"] == 5 and tr["fit_steps"] == 7 and tr["fit_tokens"] == 7 * 6 * 8
    target = load_config(None, SMALL).model
    small_model = dataclasses.replace(target, n_layers=2, hidden=8, n_heads=1, ffn=32)
    shapes = {n: tuple(p.shape) for n, p in build_model(small_model).named_parameters()}
    op = 3 * materialize_flops(shapes, LigoShape("gpt", Dims.of(small_model), Dims.of(target)))
    assert tr["fit_operator_flops"] == 7 * 3 * op  # 3 micro-batches per step
    assert tr["fit_flops"] == pytest.approx(7 * big["flops_per_step"] + 7 * 3 * op, rel=1e-12)
    assert out["flops"] == pytest.approx(small["flops"] + big["flops"] + tr["fit_flops"], rel=1e-12)
    assert any("tokens beyond" in n for n in out["notes"])


def test_each_phase_shows_its_lr_multiplier_and_policy(capsys) -> None:
    out = _json(capsys, "configs/gpt-tiny-multilevel.yaml", "--model.vocab_size=8000")
    assert [p["lr_mult"] for p in out["phases"]] == [1.0, 4.0, 1.0]  # the coarse level's 4x
    assert [p["lr_policy"] for p in out["phases"]] == ["warmup 50", "reset (fresh schedule)", "reset (fresh schedule)"]
    assert out["lr"]["lr_policy"] == "auto" and out["lr"]["effective_policy"] == "reset"
    assert out["phases"][1]["lr_start"] == pytest.approx(4 * 1e-3)  # a fresh schedule at the peak, times 4
    assert main(["plan", "show", "configs/gpt-tiny-apollo.yaml", "--growth.lr_policy=rewarm"]) == 0
    table = capsys.readouterr().out
    assert "LR x" in table and "LR policy" in table and "rewarm 50" in table
    assert "at transitions growth.lr_policy rewarm" in table


def test_plan_file_alone_says_which_model_it_assumed(capsys) -> None:
    assert main(["plan", "show", "configs/plans/apollo.yaml"]) == 0
    assert "assumed the default model (gpt, 12 layers, hidden 256" in capsys.readouterr().out
    out = _json(capsys, "configs/plans/apollo.yaml")
    assert out["model_source"] == "defaults" and "assumed the default model" in out["notes"][0]
    assert main(["plan", "show", "configs/bert-tiny-apollo.yaml"]) == 0
    table = capsys.readouterr().out
    assert "target bert 12 layers, hidden 256" in table and "assumed the default model" not in table
    assert _json(capsys, "configs/plans/apollo.yaml", "--model.size=bert-tiny")["model_source"] == "config"


@pytest.mark.parametrize("plan", ["bert2bert", "msg"])
def test_transitions_name_their_target_once(plan: str, capsys) -> None:
    assert main(["plan", "show", f"configs/plans/{plan}.yaml"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("transition at step")]
    assert line.count("'hidden': 256") == 1, line


def test_a_warmup_longer_than_its_phase_is_warned(capsys) -> None:
    """Apollo's first phase is 50 steps; a 400-step warmup used to be shown without a word."""
    assert main(["plan", "show", APOLLO, "--model.vocab_size=8000", "--optim.warmup_steps=400"]) == 0
    text = capsys.readouterr().out
    assert ("warning: optim.warmup_steps=400 is longer than phase apollo-N1 (steps 0-50, 50 steps) whose start warms "
            "up: the LR is still warming up when apollo-N3 starts at step 50") in text
    assert main(["plan", "show", APOLLO, "--model.vocab_size=8000", "--optim.warmup_steps=40"]) == 0
    assert "warning:" not in capsys.readouterr().out
