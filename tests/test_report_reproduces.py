"""The committed reports are reproducible: ``megagrow report`` over the committed run directories writes the
committed ``report.json`` (and ``report.md``) of the gpt suite and of its wsd-v2 standings.

gpt suite (``benchmarks/results/acceleration-gpt/report.json``): written by ``benchmarks/acceleration/run.py gpt``
(``write_report``): ``megagrow.report.build_report`` over every finished run of the suite, in name order, against
the best scratch-sweep run, with the suite's step-cost file, plus the suite's summary (``suite``): what
``megagrow report RUN... --suite --step-costs benchmarks/results/phase-cost-cpu.json`` writes from the published
run directories (``runs/<name>/``: metrics.jsonl, config.yaml, run.json).

wsd-v2 (``benchmarks/results/acceleration-gpt/wsd-v2/report.json``): the ``megagrow report`` command line of its
``command.txt``, run as written from the repository root with only ``--out`` redirected.

The comparison is exact (floats bit for bit, key order included). One field is normalised, on both sides: the path
of the step-cost file (``step_costs.source``, quoted again in ``method.priced_wall``), which the report records as
it was given, so it names the checkout that made the report (run.py passes an absolute one:
``/work/main/benchmarks/...``); it is reduced to its part from ``benchmarks/`` on, and that part must still agree.
The file's contents are compared in full (``step_costs.s_per_step``). Nothing else in report.json depends on the
machine, the time or the megagrow version.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
from pathlib import Path
from typing import Any

import pytest

from megagrow.cli import main

REPO = Path(__file__).resolve().parents[1]
GPT = REPO / "benchmarks" / "results" / "acceleration-gpt"
WSD_V2 = GPT / "wsd-v2"
STEP_COSTS = "benchmarks/results/phase-cost-cpu.json"


def _repo_relative(path: str) -> str:
    """A path as given to ``--step-costs`` (relative, or absolute into some checkout) from ``benchmarks/`` on."""
    parts = Path(path).parts
    return str(Path(*parts[parts.index("benchmarks"):])) if "benchmarks" in parts else path


def normalise(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with the step-cost file's path made checkout-independent (see the module docstring)."""
    out = copy.deepcopy(report)
    costs = out.get("step_costs")
    if costs is not None:
        source = costs["source"]
        costs["source"] = _repo_relative(source)
        method = out["method"]["priced_wall"]
        assert source in method, "method.priced_wall no longer quotes the step-cost file"
        out["method"]["priced_wall"] = method.replace(source, costs["source"])
    return out


def json_diff(want: Any, got: Any, where: str = "") -> list[str]:
    """Every difference between two JSON values, by path: values (floats exactly), types, key order, lengths."""
    if type(want) is not type(got):
        return [f"{where or '/'}: {want!r} ({type(want).__name__}) != {got!r} ({type(got).__name__})"]
    if isinstance(want, dict):
        out = []
        if list(want) != list(got):
            missing, extra = [k for k in want if k not in got], [k for k in got if k not in want]
            out.append(f"{where or '/'}: keys differ (missing {missing}, extra {extra}"
                       + (", order differs)" if not missing and not extra else ")"))
        for k in want:
            if k in got:
                out += json_diff(want[k], got[k], f"{where}/{k}")
        return out
    if isinstance(want, list):
        out = [] if len(want) == len(got) else [f"{where}: {len(want)} items != {len(got)}"]
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            out += json_diff(a, b, f"{where}[{i}]")
        return out
    if isinstance(want, float) and math.isnan(want) and math.isnan(got):
        return []
    return [] if want == got else [f"{where}: {want!r} != {got!r}"]


def assert_reproduced(committed: Path, produced: Path) -> None:
    want = normalise(json.loads((committed / "report.json").read_text()))
    got = normalise(json.loads((produced / "report.json").read_text()))
    diffs = json_diff(want, got)
    assert not diffs, f"{len(diffs)} differences from {committed / 'report.json'}:\n" + "\n".join(diffs[:40])
    assert got["step_costs"]["source"] == STEP_COSTS
    # report.md is rendered from report.json alone (no paths in it): the committed one must come out too
    assert (produced / "report.md").read_text() == (committed / "report.md").read_text()


def test_megagrow_report_reproduces_the_gpt_suite_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    runs = sorted(str(d.relative_to(REPO)) for d in (GPT / "runs").iterdir() if (d / "metrics.jsonl").is_file())
    assert len(runs) == 20
    # no --baseline: --suite picks the best scratch-sweep run, as run.py does (the committed baseline is checked)
    assert main(["report", *runs, "--suite", "--step-costs", STEP_COSTS, "--out", str(tmp_path)]) == 0
    assert_reproduced(GPT, tmp_path)


def test_megagrow_report_reproduces_the_wsd_v2_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    argv = shlex.split((WSD_V2 / "command.txt").read_text())
    assert argv[:2] == ["megagrow", "report"]
    at = argv.index("--out")
    assert Path(argv[at + 1]) == WSD_V2.relative_to(REPO)
    argv[at + 1] = str(tmp_path)
    assert main(argv[1:]) == 0
    assert_reproduced(WSD_V2, tmp_path)


def test_run_py_writes_the_same_suite_summary(tmp_path: Path) -> None:
    """benchmarks/acceleration/run.py's write_report (run.json from its runs directory, else the published copy)
    computes the suite summary with the same function: the committed one again."""
    import importlib.util
    import sys

    from megagrow.report import best_sweep_run, load_run, run_status

    here = REPO / "benchmarks" / "acceleration"
    sys.path.insert(0, str(here))
    try:
        spec = importlib.util.spec_from_file_location("accel_run_reproduces", here / "run.py")
        run = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = run  # dataclasses look their module up
        spec.loader.exec_module(run)
    finally:
        sys.path.remove(str(here))
    runner = run.Runner(run.SUITES["gpt"], tmp_path / "no-local-runs", GPT, threads=1)
    runs = [load_run(d) for d in sorted((GPT / "runs").iterdir())]
    baseline = best_sweep_run(runs, {r.name: run_status(r) for r in runs})
    committed = json.loads((GPT / "report.json").read_text())
    assert json_diff(committed["suite"], run.suite_summary(runner, runs, baseline)) == []


def test_the_comparison_fails_on_any_change() -> None:
    """The reproduction tests can fail: one ulp in one float, a dropped key, reordered keys, a changed path."""
    report = json.loads((GPT / "report.json").read_text())
    assert json_diff(normalise(report), normalise(report)) == []
    nudged = copy.deepcopy(report)
    gap = nudged["runs"]["msg"]["equal_flops_gap"]
    nudged["runs"]["msg"]["equal_flops_gap"] = math.nextafter(gap, math.inf)
    assert json_diff(normalise(report), normalise(nudged)) == [
        f"/runs/msg/equal_flops_gap: {gap!r} != {math.nextafter(gap, math.inf)!r}"]
    dropped = copy.deepcopy(report)
    del dropped["runs"]["apollo"]["transitions"][0]["exact"]
    assert json_diff(report, dropped) == ["/runs/apollo/transitions[0]: keys differ (missing ['exact'], extra [])"]
    reordered = copy.deepcopy(report)
    reordered["suite"] = dict(reversed(list(report["suite"].items())))
    assert json_diff(report, reordered) == ["/suite: keys differ (missing [], extra [], order differs)"]
    other = copy.deepcopy(report)
    other["step_costs"]["source"] = "/elsewhere/benchmarks/results/phase-cost-cpu-bert.json"
    other["method"]["priced_wall"] = report["method"]["priced_wall"].replace(
        report["step_costs"]["source"], other["step_costs"]["source"])
    assert len(json_diff(normalise(report), normalise(other))) == 2
    # only the checkout part of the path is normalised
    moved = copy.deepcopy(report)
    moved["step_costs"]["source"] = "/elsewhere/" + _repo_relative(report["step_costs"]["source"])
    moved["method"]["priced_wall"] = report["method"]["priced_wall"].replace(
        report["step_costs"]["source"], moved["step_costs"]["source"])
    assert json_diff(normalise(report), normalise(moved)) == []
