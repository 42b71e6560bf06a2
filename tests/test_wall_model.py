"""benchmarks/wall_model.py: pricing a run's steps at side-by-side step costs (the wall-time saving of a plan)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "wall_model.py"
_spec = importlib.util.spec_from_file_location("wall_model", _PATH)
assert _spec is not None and _spec.loader is not None
wall_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wall_model)

FULL = (56, 12.0)
PRICES = {FULL: 1.0, (56, 6.0): 0.6, (56, 3.0): 0.4, (56, 1.0): 0.25, (28, 6.0): 0.3}


def test_price_measured_interpolated_and_fallback() -> None:
    assert wall_model.price((28, 6.0), PRICES, FULL) == (0.3, "28x6")
    s, name = wall_model.price((56, 9.0), PRICES, FULL)  # an Apollo interval's mean sampled depth
    assert s == pytest.approx(0.8) and name == "56x9 (interpolated)"
    s, _ = wall_model.price((56, 2.0), PRICES, FULL)
    assert s == pytest.approx(0.325)
    assert wall_model.price((28, 7.5), PRICES, FULL) == (1.0, "28x7.5 (priced as full)")  # a masked ramp


def test_priced_wall_charges_each_interval_to_its_shape_up_to_a_fractional_crossing() -> None:
    recs = [{"step": 10, "hidden": 28, "depth": 6}, {"step": 20, "hidden": 28, "depth": 6},
            {"step": 30, "hidden": 56, "depth": 12}, {"step": 40, "hidden": 56, "depth": 12}]
    parts = wall_model.priced_wall(recs, 35.0, PRICES, FULL)
    assert parts == {"28x6": pytest.approx(20 * 0.3), "56x12": pytest.approx(15 * 1.0)}
    assert sum(wall_model.priced_wall(recs, 40.0, PRICES, FULL).values()) == pytest.approx(26.0)


def test_step_prices_need_the_full_model_and_skip_other_batches() -> None:
    pc = {"rows": [{"allocator": "tcmalloc", "overrides": [], "s_per_step": 0.1},
                   {"allocator": "tcmalloc", "overrides": ["--model.n_layers=6", "--model.hidden=28"],
                    "s_per_step": 0.04},
                   {"allocator": "tcmalloc", "overrides": ["--model.n_layers=6", "--model.hidden=28",
                                                            "--data.micro_batch_size=32"], "s_per_step": 0.07},
                   {"allocator": "system", "overrides": [], "s_per_step": 0.2}]}
    assert wall_model.step_prices(pc, "tcmalloc", FULL) == {FULL: 0.1, (28, 6.0): 0.04}
    with pytest.raises(SystemExit, match="no full-model row"):
        wall_model.step_prices(pc, "jemalloc", FULL)


def test_main_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def run(name: str, plan: str, recs: list[dict]) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text(f"run: {{name: {name}, seed: 1}}\ngrowth: {{plan: {plan}}}\n"
                                       "train: {max_steps: 40}\n")
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return d

    def rec(step: int, hidden: int, depth: int, flops: float, val: float) -> dict:
        return {"step": step, "flops": flops, "tokens": step * 10.0, "wall_s": step * 2.0, "hidden": hidden,
                "depth": depth, "loss": val, "val_loss": val}

    base = run("scratch", "scratch", [rec(s, 56, 12, s * 1.0, 5.0 - s / 10) for s in (10, 20, 30, 40)])
    # half width for 20 steps (0.2 FLOPs each), then full; reaches L* = 1.0 between steps 30 and 40
    plan = run("msg", "msg", [rec(10, 28, 6, 2.0, 3.0), rec(20, 28, 6, 4.0, 2.0), rec(30, 56, 12, 14.0, 1.5),
                              rec(40, 56, 12, 24.0, 0.5)])
    pc = tmp_path / "pc.json"
    pc.write_text(json.dumps({"rows": [{"allocator": "tcmalloc", "overrides": [], "s_per_step": 1.0},
                                       {"allocator": "tcmalloc", "overrides": ["--model.n_layers=6",
                                                                               "--model.hidden=28"],
                                        "s_per_step": 0.3}]}))
    out = tmp_path / "wm.json"
    monkeypatch.setattr(sys, "argv", ["wall_model.py", str(plan), "--baseline", str(base), "--phase-cost", str(pc),
                                      "--out", str(out)])
    wall_model.main()
    r = json.loads(out.read_text())["runs"][0]
    assert r["reached"] and r["step_at_target"] == pytest.approx(35.0)
    assert r["flops_saving"] == pytest.approx(1 - 19.0 / 40.0)
    assert r["priced_wall_s"] == pytest.approx(20 * 0.3 + 15 * 1.0)
    assert r["priced_wall_saving"] == pytest.approx(1 - 21.0 / 40.0)
    assert "msg" in capsys.readouterr().out
