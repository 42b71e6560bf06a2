"""The acceleration suites and studies as declared: every run's config is valid; the runner's bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.acceleration import run, suites
from megagrow.config import load_config


def _all_runs():
    for s in suites.SUITES.values():
        for p in s.plans:
            yield s, p
    for st in suites.STUDIES.values():
        for p in st.runs:
            yield suites.SUITES[st.suite], p


@pytest.mark.parametrize(("suite", "plan"), list(_all_runs()), ids=lambda x: getattr(x, "name", ""))
def test_every_declared_run_is_a_valid_config(tmp_path: Path, suite, plan) -> None:
    r = run.Runner(suite, tmp_path / "runs", tmp_path / "results", threads=1)
    entry = r.entry_config(plan.name, plan.plan_file)
    cfg = load_config(str(entry), [*suite.extra_overrides, "--optim.lr=0.004", *plan.overrides])
    if plan.plan_file:
        assert cfg.growth.plan != "scratch", plan.name
    if plan.stop_at:
        assert 0 < plan.stop_at < cfg.train.max_steps


def test_studies_name_their_runs_apart_from_their_references() -> None:
    for st in suites.STUDIES.values():
        suite = suites.SUITES[st.suite]
        names = [p.name for p in st.runs]
        assert len(set(names)) == len(names), st.name
        assert not set(names) & set(st.references), st.name
        assert set(st.references) <= {p.name for p in suite.plans}, st.name


def test_lr_tags_are_lossless_to_two_digits() -> None:
    assert [run.lr_tag(x) for x in (0.004, 0.016, 0.002, 0.0008)] == ["4e-3", "1.6e-2", "2e-3", "8e-4"]


def test_a_run_or_probe_is_finished_only_at_its_last_step_with_a_validation_loss(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.yaml").write_text("train:\n  max_steps: 100\n")
    recs = [{"step": 50, "loss": 3.0, "val_loss": 3.1}]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in recs) + "\n")
    assert run._finished(d, stop_at=50) and not run._finished(d)
    recs += [{"step": 100, "loss": 2.0}]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in recs) + "\n")
    assert not run._finished(d)  # no validation loss at the last step
    recs[-1]["val_loss"] = 2.1
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in recs) + "\n")
    assert run._finished(d)


def test_commands_are_shown_from_the_results_repository(tmp_path: Path) -> None:
    # a suite run from a worktree of a fixed commit writes into the main checkout: commands.md must not show paths
    # that only work from the worktree
    repo, tree = tmp_path / "main", tmp_path / "bench-tree"
    (repo / ".git").mkdir(parents=True)
    tree.mkdir()
    results = repo / "benchmarks" / "results" / "acceleration-gpt"
    results.mkdir(parents=True)
    cmd = ("megagrow train ../main/benchmarks/results/acceleration-gpt/configs/msg.yaml --run.name=msg "
           "--run.out_dir=../main/runs/acceleration-gpt --optim.lr=0.008")
    want = ("megagrow train benchmarks/results/acceleration-gpt/configs/msg.yaml --run.name=msg "
            "--run.out_dir=runs/acceleration-gpt --optim.lr=0.008")
    assert run.repo_command(cmd, results, str(tree)) == want
    assert run.repo_command(cmd, results, None) == want  # an older record without its cwd
    assert run.repo_command(want, results, str(repo)) == want  # run from the results' own checkout


def test_a_full_run_of_a_probe_is_declared_with_the_probes_plan_and_overrides() -> None:
    for st in suites.STUDIES.values():
        by_name = {p.name: p for p in st.runs}
        for p in st.runs:
            if p.continues is None:
                continue
            probe = by_name.get(p.continues)
            assert probe is not None and probe.stop_at, (st.name, p.name)  # a probe of the same study
            assert p.stop_at is None, (st.name, p.name)
            assert (probe.plan_file, probe.overrides) == (p.plan_file, p.overrides), (st.name, p.name)


def _probe(tmp_path: Path, text_data: Path, stop: int) -> tuple[list, Path]:
    from tests.trainutil import run as train_run
    from tests.trainutil import tiny_config

    args = ["--growth.plan=apollo", "--growth.stages=1,2,4", "--growth.boundaries=4,8", "--growth.boundary_unit=steps",
            "--model.n_layers=4", "--train.max_steps=12"]
    probe_dir = train_run(tiny_config("gpt", tmp_path, "probe", *args, f"--train.exit_at_step={stop}",
                                      data_path=text_data)).run_dir
    (probe_dir / "run.json").write_text(json.dumps({"status": "done", "stop_at": stop}))
    return args, probe_dir


def test_the_full_run_of_a_probe_continues_it_exactly(tmp_path: Path, text_data: Path) -> None:
    from tests.trainutil import records, tiny_config
    from tests.trainutil import run as train_run

    args, probe_dir = _probe(tmp_path, text_data, 6)
    seeded = run.seed_from_probe(probe_dir, tmp_path / "continued")
    assert seeded == {"run": "probe", "step": 6}
    assert [r["step"] for r in records(tmp_path / "continued")] == list(range(1, 7))
    continued = train_run(tiny_config("gpt", tmp_path, "continued", *args, data_path=text_data))
    assert continued.step == 12
    straight = train_run(tiny_config("gpt", tmp_path, "straight", *args, data_path=text_data))
    a, b = records(straight.run_dir), records(continued.run_dir)
    assert [(r["step"], r["loss"], r["flops"], r["depth"]) for r in a] == \
        [(r["step"], r["loss"], r["flops"], r["depth"]) for r in b]
    assert run._finished(continued.run_dir)


def test_a_probe_that_has_not_finished_cannot_be_continued(tmp_path: Path, text_data: Path) -> None:
    args, probe_dir = _probe(tmp_path, text_data, 6)
    (probe_dir / "run.json").write_text(json.dumps({"status": "running", "stop_at": 6}))
    with pytest.raises(RuntimeError, match="has not finished as a probe"):
        run.seed_from_probe(probe_dir, tmp_path / "continued")
    (probe_dir / "run.json").write_text(json.dumps({"status": "done", "stop_at": 7}))  # no checkpoint at step 7
    with pytest.raises(RuntimeError, match="no checkpoint at its stop step 7"):
        run.seed_from_probe(probe_dir, tmp_path / "continued")
    assert not (tmp_path / "continued").exists()
