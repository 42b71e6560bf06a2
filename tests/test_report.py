"""``megagrow report`` on synthetic ``metrics.jsonl`` files with known crossings, gaps and savings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megagrow.cli import main
from megagrow.report import build_report, ema, first_crossing, load_run, loss_at, write_outputs

FLOPS_PER_STEP = 1e9
TOKENS_PER_STEP = 1000


def write_run(root: Path, name: str, evals: dict[int, float], *, flops_per_step: float = FLOPS_PER_STEP,
              wall_per_step: float = 0.1, plan: str = "scratch", seed: int = 1234, log_every: int = 10,
              depth: int = 12, phase_from: dict[int, str] | None = None) -> Path:
    """A run directory whose records every ``log_every`` steps carry the exact cumulative costs; the steps
    in ``evals`` also carry ``val_loss``."""
    d = root / name
    d.mkdir(parents=True)
    last = max(evals)
    steps = sorted(set(range(log_every, last + 1, log_every)) | set(evals))
    lines = []
    for s in steps:
        rec = {"step": s, "samples": s * 8, "tokens": s * TOKENS_PER_STEP, "flops": s * flops_per_step,
               "loss": 5.0, "lr": 1e-3, "depth": depth, "hidden": 64, "wall_s": s * wall_per_step,
               "phase": max(((k, v) for k, v in (phase_from or {0: plan}).items() if k <= s))[1],
               "tokens_per_s": TOKENS_PER_STEP / wall_per_step}
        if s in evals:
            rec["val_loss"] = evals[s]
        lines.append(json.dumps(rec))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (d / "config.yaml").write_text(f"run:\n  seed: {seed}\ngrowth:\n  plan: {plan}\n")
    return d


@pytest.fixture()
def runs(tmp_path: Path) -> dict[str, Path]:
    # baseline: 100 steps, final val loss 3.0 (L*)
    base = write_run(tmp_path, "scratch", {20: 5.0, 40: 4.0, 60: 3.5, 80: 3.2, 100: 3.0})
    # crosses 3.0 between step 60 (3.2) and 80 (2.8): exactly half way -> step 70; half the FLOPs per step
    fast = write_run(tmp_path, "apollo", {20: 4.5, 40: 3.8, 60: 3.2, 80: 2.8, 100: 2.7}, flops_per_step=0.5e9,
                     wall_per_step=0.06, plan="apollo", depth=6)
    # never reaches 3.0; runs 80 steps at full cost: the baseline at 80e9 FLOPs has 3.2
    slow = write_run(tmp_path, "stackbert", {20: 5.5, 40: 4.5, 60: 3.9, 80: 3.5}, plan="stackbert", seed=7)
    return {"scratch": base, "apollo": fast, "stackbert": slow}


def test_crossing_savings_and_gap(runs: dict[str, Path]) -> None:
    loaded = [load_run(p) for p in runs.values()]
    rep = build_report(loaded, "scratch")
    assert rep["baseline"] == "scratch" and rep["target_loss"] == 3.0
    a = rep["runs"]["apollo"]
    assert a["reached"] is True and a["plan"] == "apollo" and a["seed"] == 1234
    assert a["at_target"]["step"] == pytest.approx(70.0)
    # at step 70: 35e9 FLOPs of the baseline's 100e9, 70k of 100k tokens, 4.2 s of 10 s
    assert a["flops_saving"] == pytest.approx(1 - 35e9 / 100e9)
    assert a["tokens_saving"] == pytest.approx(1 - 70 / 100)
    assert a["wall_saving"] == pytest.approx(1 - 4.2 / 10.0)
    # equal-FLOPs gap: apollo ends at 50e9 FLOPs = the baseline's step 50: (4.0 + 3.5) / 2 = 3.75
    assert a["equal_flops_gap"] == pytest.approx(2.7 - 3.75)
    assert a["total"]["flops"] == pytest.approx(50e9) and a["total_vs_baseline"]["flops"] == pytest.approx(0.5)
    s = rep["runs"]["stackbert"]
    assert s["reached"] is False and s["seed"] == 7
    assert s["flops_saving"] is None and s["wall_saving"] is None and s["tokens_saving"] is None
    assert s["equal_flops_gap"] == pytest.approx(3.5 - 3.2)
    b = rep["runs"]["scratch"]
    assert b["reached"] and b["flops_saving"] == pytest.approx(0.0) and b["equal_flops_gap"] == pytest.approx(0.0)


def test_a_run_given_the_baselines_flops_is_compared_at_its_end_despite_rounding(tmp_path: Path) -> None:
    """A run budgeted at "scratch's FLOPs" rounds its steps: ending 0.05 % past the baseline's curve it is still
    compared with the baseline's final loss; 1 % past it, there is no baseline to compare with (n/a)."""
    base = load_run(write_run(tmp_path, "scratch", {50: 4.0, 100: 3.0}))
    hair = load_run(write_run(tmp_path, "hair", {50: 3.5, 100: 2.9}, flops_per_step=1.0005e9, plan="stackbert"))
    far = load_run(write_run(tmp_path, "far", {50: 3.5, 100: 2.9}, flops_per_step=1.01e9, plan="stackbert"))
    rep = build_report([base, hair, far], "scratch")
    assert rep["runs"]["hair"]["equal_flops_gap"] == pytest.approx(2.9 - 3.0)
    assert rep["runs"]["far"]["equal_flops_gap"] is None


def test_transition_gaps(runs: dict[str, Path], tmp_path: Path) -> None:
    """The equal-FLOPs gap before each phase change and a lag after it, and the gap curve."""
    grown = write_run(tmp_path, "grown", {20: 5.5, 40: 4.6, 60: 3.4, 80: 3.1}, plan="stackbert",
                      phase_from={0: "stack-3", 35: "stack-6"})
    rep = build_report([load_run(runs["scratch"]), load_run(grown)], "scratch", lag_steps=20)
    g = rep["runs"]["grown"]
    (t,) = g["transitions"]
    assert t["step"] == 40 and t["from"] == "stack-3" and t["to"] == "stack-6"  # first logged step of the phase
    assert t["gap_before"] == pytest.approx(5.5 - 5.0)  # eval at step 20 (the last before 40)
    assert t["gap_after_lag"] == pytest.approx(3.4 - 3.5)  # eval at step 60 = 40 + 20
    assert [x["step"] for x in g["gap_curve"]] == [20, 40, 60, 80]
    assert rep["runs"]["scratch"]["transitions"] == []
    ph = g["phases"]  # logged every 10 steps: the record at step 40 is the first of stack-6
    assert [(p["phase"], p["steps"]) for p in ph] == [("stack-3", 30), ("stack-6", 50)]
    assert ph[0]["flops"] == pytest.approx(30e9) and ph[0]["s_per_tflop"] == pytest.approx(3.0 / 0.03)


def test_crossing_edge_cases() -> None:
    from megagrow.report import Point

    pts = [Point(10, 1.0, 10, 1.0, 2.0), Point(20, 2.0, 20, 2.0, 1.0)]
    assert first_crossing(pts, 2.5)["step"] == 10  # already below at the first evaluation
    assert first_crossing(pts, 1.0)["flops"] == pytest.approx(2.0)  # exactly at an evaluation
    assert first_crossing(pts, 0.9) is None
    # first crossing, not the last: a run that dips below, comes back up and crosses again
    wavy = [Point(s, float(s), s, s, v) for s, v in ((1, 3.0), (2, 1.0), (3, 3.0), (4, 0.5))]
    assert first_crossing(wavy, 2.0)["step"] == pytest.approx(1.5)
    assert loss_at(pts, "flops", 1.5) == pytest.approx(1.5)
    assert loss_at(pts, "flops", 0.5) is None and loss_at(pts, "flops", 2.5) is None  # no extrapolation


def test_ema_option(runs: dict[str, Path]) -> None:
    assert ema([1.0, 3.0, 3.0], 0.5) == [1.0, 2.0, 2.5]
    with pytest.raises(ValueError, match="alpha"):
        ema([1.0], 1.0)
    loaded = [load_run(p) for p in runs.values()]
    raw, smooth = build_report(loaded, "scratch"), build_report(loaded, "scratch", ema_alpha=0.5)
    assert smooth["target_loss"] > raw["target_loss"]  # the smoothed curve lags the decreasing loss
    assert "ema alpha=0.5" in smooth["method"]["smoothing"]


def test_outputs_written(runs: dict[str, Path], tmp_path: Path) -> None:
    loaded = [load_run(p) for p in runs.values()]
    rep = build_report(loaded, "scratch")
    out = tmp_path / "out"
    files = write_outputs(rep, loaded, out)
    names = {f.name for f in files}
    assert {"report.json", "report.md", "loss_vs_flops.png", "loss_vs_wall.png", "loss_vs_tokens.png",
            "gap_vs_flops.png", "arch_over_steps.png"} <= names
    for f in files:
        assert f.stat().st_size > 0
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    for r in data["runs"].values():  # the schema other tools read
        assert {"plan", "final_val_loss", "reached", "flops_saving", "wall_saving", "tokens_saving",
                "equal_flops_gap", "seed"} <= set(r)
    md = (out / "report.md").read_text()
    assert "never reached" in md and "+65.0%" in md and "loss_vs_flops.png" in md


def test_cli(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(["report", str(runs["apollo"]), str(runs["stackbert"]), "--baseline", str(runs["scratch"]),
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "target L* = 3.0000" in text and "never reached" in text
    assert json.loads((out / "report.json").read_text())["baseline"] == "scratch"
    # no --baseline: the first run is the baseline (the demo's usage)
    assert main(["report", str(runs["scratch"]), str(runs["apollo"])]) == 0
    # --suite needs the runs' run.json (benchmarks/acceleration/run.py's) to find the suite's sweep
    assert main(["report", str(runs["scratch"]), str(runs["apollo"]), "--suite"]) == 2
    assert "no finished scratch-sweep run" in capsys.readouterr().err


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    d = tmp_path / "noval"
    d.mkdir()
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "flops": 1, "tokens": 1, "wall_s": 1}) + "\n")
    assert main(["report", str(d)]) == 2
    assert "no evaluation records" in capsys.readouterr().err
    (d / "metrics.jsonl").write_text("{not json\n")
    assert main(["report", str(d)]) == 2
    assert "metrics.jsonl:1: not valid JSON" in capsys.readouterr().err
    a = write_run(tmp_path / "x", "same", {10: 1.0})
    b = write_run(tmp_path / "y", "same", {10: 2.0})
    with pytest.raises(ValueError, match="same name"):
        build_report([load_run(a), load_run(b)], "same")


def test_incomparable_runs_are_refused_and_differences_flagged(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def cfg(d: Path, path: str, steps: int, family: str = "gpt") -> None:
        (d / "config.yaml").write_text(f"run: {{seed: 1}}\ngrowth: {{plan: scratch}}\nmodel: {{family: {family}}}\n"
                                       f"data: {{path: {path}, eval_samples: 256}}\ntrain: {{max_steps: {steps}}}\n")

    base = write_run(tmp_path, "base", {10: 3.0, 20: 2.0})
    other = write_run(tmp_path, "other-data", {10: 3.0, 20: 1.5})
    longer = write_run(tmp_path, "longer", {10: 3.0, 20: 2.5, 30: 1.9})
    cfg(base, "data/a", 20)
    cfg(other, "data/b", 20, family="bert")
    cfg(longer, "data/a", 30)
    with pytest.raises(ValueError, match=r"other-data: model.family: 'gpt' \(baseline\) vs 'bert'; data.path"):
        build_report([load_run(base), load_run(other)], "base")
    assert main(["report", str(base), str(other)]) == 2
    assert "--allow-mismatch" in capsys.readouterr().err
    rep = build_report([load_run(base), load_run(other), load_run(longer)], "base", allow_mismatch=True)
    assert rep["runs"]["other-data"]["flags"][0].startswith("NOT COMPARABLE: model.family")
    assert rep["runs"]["longer"]["flags"] == ["train.max_steps: 20 (baseline) vs 30",
                                              "tokens budget: 20,000 (baseline) vs 30,000"]
    assert rep["runs"]["base"]["flags"] == []
    assert main(["report", str(base), str(longer)]) == 0
    out = capsys.readouterr().out
    assert "longer ⚑" in out and "tokens budget" in out
    assert "| 2e+10 |" in out or "| 2e+10 " in out  # total FLOPs printed with their digits


def test_gaps_are_flagged_against_the_smallest_seed_band() -> None:
    from megagrow.report import flag_band

    suite = {"noise_band": 0.246, "seeds_by_lr": {"0.008": {"1234": 4.359, "1235": 4.605},
                                                   "0.004": {"1234": 4.440, "1235": 4.435}}}
    assert flag_band(suite) == pytest.approx(0.005)
    assert flag_band({"noise_band": 0.01}) == 0.01 and flag_band({}) is None


def test_transitions_between_log_steps_are_reported_at_their_exact_steps(tmp_path: Path, text_data: Path) -> None:
    """Apollo's transitions at steps 6 and 12 with a record every 4 steps: the trainer records each phase's last step
    (``phase_end``), so the report places the transitions at 6 and 12 (not at the next log steps 8 and 16) and
    charges each phase exactly its own steps, FLOPs and wall time."""
    from tests.test_plans import STAGED
    from tests.trainutil import records, run, tiny_config

    grown = run(tiny_config("gpt", tmp_path, "apollo", *STAGED["apollo"], "--train.max_steps=16",
                            "--logging.log_every=4", "--train.eval_every=4", data_path=text_data)).run_dir
    recs = records(grown)
    assert [r["step"] for r in recs] == [4, 6, 8, 12, 16]
    assert [r["step"] for r in recs if r.get("phase_end")] == [6, 12]
    base = run(tiny_config("gpt", tmp_path, "scratch", "--model.n_layers=4", "--train.max_steps=16",
                           "--logging.log_every=4", "--train.eval_every=4", data_path=text_data)).run_dir
    rep = build_report([load_run(base), load_run(grown)], "scratch", lag_steps=4)
    ts = rep["runs"]["apollo"]["transitions"]
    assert [(t["step"], t["exact"]) for t in ts] == [(6, True), (12, True)]
    phases = rep["runs"]["apollo"]["phases"]
    assert [p["steps"] for p in phases] == [6, 6, 4]
    assert phases[0]["flops"] == pytest.approx(recs[1]["flops"])  # phase 1 is exactly its 6 steps' FLOPs
