"""megagrow.step_costs and ``megagrow report --step-costs``: a run's wall time priced at side-by-side step costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megagrow.cli import main
from megagrow.report import build_report, load_run
from megagrow.step_costs import StepCosts, load_step_costs, step_costs

FULL = (56, 12.0)
COSTS = StepCosts({FULL: 1.0, (56, 6.0): 0.6, (56, 3.0): 0.4, (56, 1.0): 0.25, (28, 6.0): 0.3}, FULL, "t", "tcmalloc")


def test_price_measured_interpolated_and_fallback() -> None:
    assert COSTS.price((28, 6.0)) == (0.3, "28x6")
    s, name = COSTS.price((56, 9.0))  # an Apollo interval's mean sampled depth
    assert s == pytest.approx(0.8) and name == "56x9 (interpolated)"
    assert COSTS.price((56, 2.0))[0] == pytest.approx(0.325)
    assert COSTS.price((28, 7.5)) == (1.0, "28x7.5 (priced as full)")  # an MSG ramp's masked model


def test_wall_charges_each_interval_to_its_shape_up_to_a_fractional_crossing() -> None:
    recs = [{"step": 10, "hidden": 28, "depth": 6}, {"step": 20, "hidden": 28, "depth": 6},
            {"step": 30, "hidden": 56, "depth": 12}, {"step": 40, "hidden": 56, "depth": 12}]
    assert COSTS.wall(recs, 35.0) == {"28x6": pytest.approx(20 * 0.3), "56x12": pytest.approx(15 * 1.0)}
    assert sum(COSTS.wall(recs, 40.0).values()) == pytest.approx(26.0)


def _row(alloc: str, overrides: list[str], s: float) -> dict:
    return {"allocator": alloc, "overrides": overrides, "s_per_step": s}


HALF = ["--model.n_layers=6", "--model.hidden=28"]


def test_step_costs_from_a_phase_cost_file(tmp_path: Path) -> None:
    pc = {"rows": [_row("tcmalloc", [], 0.1), _row("tcmalloc", HALF, 0.04),
                   _row("tcmalloc", [*HALF, "--data.micro_batch_size=32"], 0.07), _row("system", [], 0.2)]}
    assert step_costs(pc, "tcmalloc", FULL).prices == {FULL: 0.1, (28, 6.0): 0.04}  # other batches skipped
    with pytest.raises(ValueError, match=r"no row for the full model 56x12 under allocator 'jemalloc' .*system"):
        step_costs(pc, "jemalloc", FULL)
    with pytest.raises(FileNotFoundError, match="phase_cost.py writes it"):
        load_step_costs(tmp_path / "absent.json", "tcmalloc", FULL)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json is not JSON"):
        load_step_costs(tmp_path / "bad.json", "tcmalloc", FULL)


def _run(root: Path, name: str, plan: str, recs: list[dict]) -> Path:
    d = root / name
    d.mkdir()
    (d / "config.yaml").write_text(f"run: {{name: {name}, seed: 1}}\ngrowth: {{plan: {plan}}}\n")
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def _rec(step: int, hidden: int, depth: int, flops: float, val: float) -> dict:
    return {"step": step, "flops": flops, "tokens": step * 10.0, "wall_s": step * 2.0, "hidden": hidden,
            "depth": depth, "loss": val, "val_loss": val}


def test_report_prices_the_steps_to_the_crossing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = _run(tmp_path, "scratch", "scratch", [_rec(s, 56, 12, s * 1.0, 5.0 - s / 10) for s in (10, 20, 30, 40)])
    # half width for 20 steps (0.2 FLOPs each), then full; reaches L* = 1.0 halfway between steps 30 and 40
    plan = _run(tmp_path, "msg", "msg", [_rec(10, 28, 6, 2.0, 3.0), _rec(20, 28, 6, 4.0, 2.0),
                                         _rec(30, 56, 12, 14.0, 1.5), _rec(40, 56, 12, 24.0, 0.5)])
    never = _run(tmp_path, "late", "msg", [_rec(s, 56, 12, s * 1.0, 6.0 - s / 10) for s in (10, 20, 30, 40)])
    pc = tmp_path / "pc.json"
    pc.write_text(json.dumps({"rows": [_row("tcmalloc", [], 1.0), _row("tcmalloc", HALF, 0.3)]}))
    report = build_report([load_run(d) for d in (base, plan, never)], "scratch", step_cost_file=pc)
    r = report["runs"]["msg"]
    assert r["flops_saving"] == pytest.approx(1 - 19.0 / 40.0)
    assert r["priced_wall_s_at_target"] == {"28x6": pytest.approx(6.0), "56x12": pytest.approx(15.0)}
    assert r["priced_wall_saving"] == pytest.approx(1 - 21.0 / 40.0)
    assert report["runs"]["late"]["priced_wall_saving"] is None
    assert report["runs"]["scratch"]["priced_wall_saving"] == pytest.approx(0.0)
    assert report["step_costs"] == {"source": str(pc), "allocator": "tcmalloc",
                                    "s_per_step": {"28x6": 0.3, "56x12": 1.0}}
    # the command: a column of its own; without --step-costs the table is as before
    assert main(["report", str(plan), "--baseline", str(base), "--step-costs", str(pc)]) == 0
    out = capsys.readouterr().out
    assert "wall saving (priced)" in out and "+47.5%" in out
    assert main(["report", str(plan), "--baseline", str(base)]) == 0
    assert "priced" not in capsys.readouterr().out
    assert main(["report", str(plan), "--baseline", str(base), "--step-costs", str(pc),
                 "--step-costs-allocator", "system"]) == 2
    assert "allocator 'system'" in capsys.readouterr().err
