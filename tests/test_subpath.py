"""The subpath plan (progressive sub-paths, RaPTr; issue 27's Apollo without a growth event)."""

from __future__ import annotations

from pathlib import Path

import pytest

from megagrow.config import load_config
from megagrow.growth.plans import build_plan
from megagrow.growth.plans.subpath import sub_path
from megagrow.planner.show import summarize
from tests.trainutil import records, run, tiny_config


def test_a_sub_path_keeps_the_first_and_last_layer_in_order_and_is_a_pure_function() -> None:
    for d in range(2, 12):
        p = sub_path(12, d, seed=7, step=3, micro_step=1)
        assert len(p) == d and p[0] == 0 and p[-1] == 11 and list(p) == sorted(set(p))
        assert p == sub_path(12, d, seed=7, step=3, micro_step=1)
    assert sub_path(12, 12, 7, 3, 1) == tuple(range(12)) and sub_path(12, 1, 7, 3, 1) == (0,)
    draws = {sub_path(12, 6, 7, s, 0) for s in range(50)}
    assert len(draws) > 20  # different steps draw different paths
    with pytest.raises(ValueError, match="depth=13"):
        sub_path(12, 13, 0, 0, 0)


def test_the_plan_runs_the_whole_model_with_growing_paths_and_evaluates_all_layers() -> None:
    cfg = load_config("configs/plans/subpath.yaml", ["--train.max_steps=100"])
    plan = build_plan("subpath", 12, cfg.growth, seed=1, max_steps=100)
    assert plan.arch_at(0) == {"n_layers": 12} and plan.transition(20) is None
    assert [plan.decide(s, 0).depth for s in (0, 19, 20, 40, 60, 99)] == [4, 4, 6, 9, 12, 12]
    assert plan.eval_layer_map(0) == tuple(range(12))
    lvps = build_plan("subpath", 12, load_config("configs/plans/subpath.yaml", ["--growth.sampler=lvps"]).growth,
                      seed=1, max_steps=100)
    assert {lvps.decide(5, m).depth for m in range(200)} > {4, 5}  # LVPS: mostly short, a tail up to 12


def test_plan_show_prices_the_sub_paths() -> None:
    s = summarize(load_config("configs/plans/subpath.yaml", ["--train.max_steps=100"]))
    assert [p.expected_depth for p in s.phases] == [4, 6, 9, 12]
    assert 0.5 < s.flops_ratio < 0.9


def _params(run_dir: Path, step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoints" / f"step_{step:08d}" / "params-00000-of-00001.safetensors")


def test_a_subpath_run_trains_the_paths_and_never_touches_a_layer_off_every_path(tmp_path: Path,
                                                                                  text_data: Path) -> None:
    """3 layers, paths of length 2 for the first 4 steps: always layers 0 and 2, so layer 1 keeps its initial
    weights (no gradient, no weight decay, no moment) until the paths grow to 3."""
    grow = ("--growth.plan=subpath", "--growth.stages=[2,3]", "--growth.boundaries=[0.5]", "--growth.sampler=live")
    early = run(tiny_config("gpt", tmp_path, "early", *grow, "--train.exit_at_step=1", data_path=text_data))
    res = run(tiny_config("gpt", tmp_path, "sp", *grow, "--train.exit_at_step=4", data_path=text_data))
    a, b = _params(early.run_dir, 1), _params(res.run_dir, 4)
    assert all(a[k].equal(b[k]) for k in a if k.startswith("blocks.1."))
    assert not all(a[k].equal(b[k]) for k in a if k.startswith("blocks.0."))
    res = run(tiny_config("gpt", tmp_path, "sp", *grow, data_path=text_data))
    recs = records(res.run_dir)
    assert res.step == 8 and [r["depth"] for r in recs] == [2, 2, 2, 2, 3, 3, 3, 3]
    per_step = [b["flops"] - a["flops"] for a, b in zip(recs, recs[1:], strict=False)]
    assert per_step[0] < per_step[-1]  # a 2-layer path costs less than the whole model
    c = _params(res.run_dir, 8)
    assert not all(b[k].equal(c[k]) for k in b if k.startswith("blocks.1."))  # on the path from step 5 on
