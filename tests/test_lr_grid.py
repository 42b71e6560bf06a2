"""benchmarks/acceleration/lr_grid.py: the peak-LR tuning grid gathered from a suite's and a study's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.acceleration import lr_grid as lg


def _results(d: Path, runs: dict[str, tuple], baseline: str = "scratch-lr8e-3", target: float = 4.36) -> Path:
    """A results directory: ``runs`` maps name -> (lr, final loss, reached, saving, seed, max_steps, exit_at_step);
    a run given as ``None`` is listed in report.json but has no files here (a study's comparator)."""
    rep = {"baseline": baseline, "target_loss": target, "runs": {}}
    for name, spec in runs.items():
        if spec is None:
            rep["runs"][name] = {"final_val_loss": 9.0, "reached": False, "flops_saving": None, "seed": 1234}
            continue
        lr, loss, reached, saving, seed, steps, exit_at = spec
        rep["runs"][name] = {"final_val_loss": loss, "reached": reached, "flops_saving": saving, "seed": seed,
                             "priced_wall_saving": saving}
        (d / "runs" / name).mkdir(parents=True)
        (d / "runs" / name / "config.yaml").write_text(
            f"optim:\n  lr: {lr}\ntrain:\n  max_steps: {steps}\n  exit_at_step: {exit_at}\n")
    d.mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(json.dumps(rep))
    return d


@pytest.fixture
def dirs(tmp_path: Path) -> list[Path]:
    suite = _results(tmp_path / "suite", {
        "scratch-lr4e-3": (0.004, 4.44, False, None, 1234, 3400, 0),
        "scratch-lr8e-3": (0.008, 4.36, True, 0.0, 1234, 3400, 0),
        "scratch-lr8e-3-s1235": (0.008, 4.60, False, None, 1235, 3400, 0),
        "scratch-lr1.6e-2": (0.016, 4.60, False, None, 1234, 3400, 0),
        "msg": (0.008, 4.42, False, None, 1234, 3400, 0),
        "gstack": (0.008, 4.45, False, None, 1234, 3400, 0),
    })
    study = _results(tmp_path / "study", {
        "scratch-lr8e-3": None, "msg": None, "gstack": None,
        "msg-lr4e-3": (0.004, 4.30, True, 0.21, 1234, 3400, 0),
        "msg-lr1.6e-2": (0.016, 4.50, False, None, 1234, 3400, 0),
        "gstack-lr1.6e-2": (0.016, 4.40, False, None, 1234, 3400, 0),
        "gstack-lr4e-3": (0.004, 4.50, False, None, 1234, 3400, 0),
        "msg-equal-flops": (0.008, 4.31, True, 0.26, 1234, 4450, 0),
        "multilevel-lr4e-3": (0.004, 5.0, False, None, 1234, 3400, 2170),
    })
    return [suite, study]


def test_plan_of_strips_seed_then_lr() -> None:
    assert lg.plan_of("scratch-lr8e-3-s1235") == "scratch"
    assert lg.plan_of("apollo-stacking-lr1.6e-2") == "apollo-stacking"
    assert lg.plan_of("msg-equal-flops") == "msg-equal-flops"
    assert lg.plan_of("msg-equal-flops-lr4e-3") == "msg-equal-flops"


def test_grid_groups_runs_by_plan_finds_the_best_lr_and_whether_it_is_interior(dirs: list[Path]) -> None:
    head, points, left_out = lg.collect(dirs)
    assert head == {"baseline": "scratch-lr8e-3", "target_loss": 4.36}
    # the study's comparators come from the suite's directory, once; the probe is left out with its reason
    assert sorted(p.run for p in points if p.plan == "msg") == ["msg", "msg-lr1.6e-2", "msg-lr4e-3"]
    assert [x["run"] for x in left_out] == ["multilevel-lr4e-3"] and "probe" in left_out[0]["why"]
    plans = lg.summarize(points, head["baseline"])
    assert plans["msg"]["best_lr"] == 0.004 and not plans["msg"]["best_interior"]  # at the grid's edge
    assert plans["scratch"]["best_lr"] == 0.008 and plans["scratch"]["best_interior"]  # seed 1235 is not the grid
    assert plans["gstack"]["best_lr"] == 0.016 and plans["gstack"]["lrs"] == [0.004, 0.008, 0.016]
    assert plans["msg-equal-flops"]["max_steps"] == 4450 and plans["scratch"]["baseline"]
    md = lg.markdown(head, plans, left_out, "cmd")
    row = next(line for line in md.splitlines() if line.startswith("| msg |"))
    assert "**4.300 (21.0 %)**" in row and "*edge*" in row
    assert "4.360 (L*) / 4.600" in md and "`multilevel-lr4e-3`" in md


def test_a_probe_continued_to_the_end_of_its_budget_is_a_full_run(tmp_path: Path) -> None:
    d = _results(tmp_path / "s", {
        "scratch-lr8e-3": (0.008, 4.36, True, 0.0, 1234, 3400, 0),
        "ml-probe": (0.008, 5.0, False, None, 1234, 3400, 2170),
        "ml-full": (0.008, 4.5, False, None, 1234, 3400, 2170),  # continued from the probe: the probe's config
    })
    (d / "runs" / "ml-probe" / "metrics.jsonl").write_text('{"step": 10}\n{"step": 2170}\n')
    (d / "runs" / "ml-full" / "metrics.jsonl").write_text('{"step": 2170}\n{"step": 3400}\n\n')
    _, points, left_out = lg.collect([d])
    assert [x["run"] for x in left_out] == ["ml-probe"] and "ml-full" in {p.run for p in points}
    (d / "runs" / "ml-full" / "metrics.jsonl").write_text('{"loss": 1}\n')
    with pytest.raises(SystemExit, match="a line without a step"):
        lg.collect([d])


def test_main_writes_json_markdown_and_plot(dirs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "lr-grid"
    assert lg.main([*map(str, dirs), "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["plans"]["msg"]["best"]["run"] == "msg-lr4e-3" and data["command"].endswith(f"--out {out}")
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".md").is_file()


def test_reports_of_different_suites_or_missing_runs_are_refused(tmp_path: Path) -> None:
    a = _results(tmp_path / "a", {"scratch-lr8e-3": (0.008, 4.36, True, 0.0, 1234, 3400, 0)})
    b = _results(tmp_path / "b", {"scratch-lr4e-3": (0.004, 4.33, True, 0.0, 1234, 3400, 0)},
                 baseline="scratch-lr4e-3", target=4.33)
    with pytest.raises(SystemExit, match="pass results of one suite"):
        lg.collect([a, b])
    c = _results(tmp_path / "c", {"scratch-lr8e-3": None, "msg": None})
    with pytest.raises(SystemExit, match="no runs/scratch-lr8e-3/config.yaml"):
        lg.collect([c])
    with pytest.raises(SystemExit, match="report.json is missing"):
        lg.collect([tmp_path / "nowhere"])
