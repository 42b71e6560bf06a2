"""benchmarks/acceleration/tuned.py: every plan at its best peak LR, chosen from the LR grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.acceleration import lr_grid as lg
from benchmarks.acceleration import tuned


def _pt(run: str, lr: float, loss: float, seed: int = 1234, steps: int = 3400) -> object:
    return lg.GridPoint(lg.plan_of(run), run, "res", lr, steps, seed, loss, False, None, None)


def _grid(points: list, left_out: list[dict] | None = None) -> dict:
    return {"baseline": "scratch-lr8e-3", "target_loss": 4.36,
            "plans": lg.summarize(points, "scratch-lr8e-3"), "left_out": left_out or []}


def test_each_plan_at_its_best_lr_and_equal_flops_runs_at_their_plans_best_lr() -> None:
    grid = _grid([
        _pt("scratch-lr4e-3", 0.004, 4.44), _pt("scratch-lr8e-3", 0.008, 4.36),
        _pt("scratch-lr8e-3-s1235", 0.008, 4.60, seed=1235), _pt("scratch-lr1.6e-2", 0.016, 4.60),
        _pt("scratch-lr4e-3-s1235", 0.004, 4.43, seed=1235),
        _pt("stackbert-lr2e-3", 0.002, 4.54), _pt("stackbert-lr4e-3", 0.004, 4.40), _pt("stackbert", 0.008, 4.45),
        # given scratch's FLOPs: at the plan's best LR (both seeds), and at another LR (not picked)
        _pt("stackbert-equal-flops", 0.008, 4.35, steps=4141),
        _pt("stackbert-equal-flops-lr4e-3", 0.004, 4.30, steps=4141),
        _pt("stackbert-equal-flops-lr4e-3-s1235", 0.004, 4.31, seed=1235, steps=4141),
        # never run at bert2bert's best LR given scratch's FLOPs: left out, said why
        _pt("bert2bert", 0.008, 4.48), _pt("bert2bert-lr1.6e-2", 0.016, 4.46),
        _pt("bert2bert-equal-flops", 0.008, 4.34, steps=4450),
        # tuned at scratch's FLOPs itself (two LRs): its own best, not its plan's (0.008)
        _pt("msg", 0.008, 4.42), _pt("msg-equal-flops", 0.008, 4.31, steps=4450),
        _pt("msg-equal-flops-lr4e-3", 0.004, 4.30, steps=4450),
        # a variant of a plan (other boundaries) given scratch's FLOPs: at the plan's best LR
        _pt("stackbert-late-equal-flops-lr4e-3", 0.004, 4.28, steps=4620),
        _pt("multilevel", 0.008, 4.74),
        _pt("half", 0.008, 4.49, steps=16009),
        _pt("orphan-equal-flops", 0.008, 4.3, steps=4000), _pt("stray-equal-flops-lr4e-3", 0.004, 4.3, steps=4000),
    ], left_out=[{"run": "multilevel-lr4e-3", "plan": "multilevel", "why": "probe"},
                 {"run": "multilevel-lr1.6e-2", "plan": "multilevel", "why": "probe"}])
    picks, left_out = tuned.select(grid)
    runs = {p.run: p for p in picks}
    # the baseline first, with its other seed at its LR (not the other seed at another LR)
    assert [p.run for p in picks[:2]] == ["scratch-lr8e-3", "scratch-lr8e-3-s1235"]
    assert {p.role for p in picks[:2]} == {"baseline"} and "scratch-lr4e-3-s1235" not in runs
    assert "stackbert-lr4e-3" in runs and "stackbert" not in runs and runs["stackbert-lr4e-3"].tuned == "interior"
    assert {"stackbert-equal-flops-lr4e-3", "stackbert-equal-flops-lr4e-3-s1235"} <= runs.keys()
    assert "stackbert-equal-flops" not in runs
    assert runs["stackbert-equal-flops-lr4e-3"].role == "scratch's FLOPs"
    assert runs["stackbert-late-equal-flops-lr4e-3"].tuned == "interior"
    assert runs["bert2bert-lr1.6e-2"].tuned == "2 LRs"
    assert "msg-equal-flops-lr4e-3" in runs and "msg-equal-flops" not in runs
    assert runs["msg-equal-flops-lr4e-3"].tuned == "2 LRs"
    assert runs["multilevel"].tuned == "1 LR + 2 LR probes"
    why = {x["plan"]: x["why"] for x in left_out}
    assert "ran at 0.008" in why["bert2bert-equal-flops"]
    # no run of its plan at the suite's budget: at scratch's LR, said so; left out at another LR
    assert runs["orphan-equal-flops"].tuned == "scratch's LR" and "ran at 0.004" in why["stray-equal-flops"]
    assert "16009" in why["half"] and "not run at its plan's best LR 0.016" in why["bert2bert-equal-flops"]
    md = tuned.markdown(grid, picks, left_out, "cmd", [["megagrow", "report"]])
    assert "| stackbert-lr4e-3 | stackbert | own budget | 0.004 |" in md and "`bert2bert-equal-flops`" in md


def test_a_grid_without_its_baseline_is_refused() -> None:
    grid = _grid([_pt("msg", 0.008, 4.4)])
    with pytest.raises(SystemExit, match="no plan holding its baseline scratch-lr8e-3"):
        tuned.select(grid)


def test_main_runs_the_report_over_the_picks_and_writes_the_selection(tmp_path: Path) -> None:
    import json

    res = tmp_path / "res"
    points = [_pt("scratch-lr8e-3", 0.008, 4.36), _pt("msg", 0.008, 4.40)]
    points = [lg.GridPoint(p.plan, p.run, str(res), p.lr, p.max_steps, p.seed, p.final_val_loss, False, None, None)
              for p in points]
    grid = tmp_path / "lr-grid.json"
    grid.write_text(json.dumps(_grid(points)))
    out = tmp_path / "tuned"
    with pytest.raises(SystemExit, match="runs/scratch-lr8e-3 is missing"):
        tuned.main([str(grid), "--out", str(out), "--megagrow", "true"])
    for run in ("scratch-lr8e-3", "msg"):
        (res / "runs" / run).mkdir(parents=True)
    assert tuned.main([str(grid), "--out", str(out), "--megagrow", "true"]) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert [p["run"] for p in sel["picks"]] == ["scratch-lr8e-3", "msg"]
    assert sel["report_commands"][0][-2:] == ["--out", str(out)] and (out / "selection.md").is_file()
    # against a stronger baseline too: the same runs, that baseline first, into vs-<its name>/
    wsd = res / "runs" / "scratch-wsd"
    with pytest.raises(SystemExit, match="expected a run directory with metrics.jsonl"):
        tuned.main([str(grid), "--out", str(out), "--megagrow", "true", "--vs", str(wsd)])
    wsd.mkdir()
    (wsd / "metrics.jsonl").write_text("")
    assert tuned.main([str(grid), "--out", str(out), "--megagrow", "true", "--vs", str(wsd)]) == 0
    vs = json.loads((out / "selection.json").read_text())["report_commands"][1]
    assert vs[2:5] == [str(wsd), str(res / "runs" / "scratch-lr8e-3"), str(res / "runs" / "msg")]
    assert vs[vs.index("--baseline") + 1] == str(wsd) and (out / "vs-scratch-wsd").is_dir()
    with pytest.raises(SystemExit, match="megagrow report failed"):
        tuned.main([str(grid), "--out", str(out), "--megagrow", "false"])
