"""Resume compatibility: one table classifies every config difference between a checkpoint and the run resuming
it; incompatible changes are refused naming each field, honoured ones proceed and go to config.history.yaml."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from megagrow.checkpointing.resume import (
    DERIVED,
    Kind,
    ResumeRefused,
    compare,
    flatten,
    history_entry,
    lr_line,
    refusal_message,
    resume_view,
    rule_for,
)
from megagrow.checkpointing.rundir import RunDir, current_config, read_history
from megagrow.config import Config, ConfigError, config_from_meta, load_config
from tests.trainutil import records, run, tiny_config


def _view(world: int = 1, schedule: str | None = "phase starts [0]", **changes: object) -> dict:
    """The resume view of a default config with dotted ``changes`` (``optim__lr`` for ``optim.lr``)."""
    tree = dataclasses.asdict(Config())
    for key, value in changes.items():
        section, name = key.split("__")
        assert name in tree[section], key
        tree[section][name] = value
    return resume_view(tree, world, schedule)


def test_every_config_field_and_derived_key_is_classified() -> None:
    keys = [*flatten(dataclasses.asdict(Config())), *DERIVED]
    unclassified = [k for k in keys if rule_for(k).pattern == "*"]
    assert not unclassified
    assert rule_for("model.hidden").kind is Kind.INCOMPATIBLE and rule_for("optim.lr").kind is Kind.HONOURED
    assert rule_for("run.out_dir").kind is Kind.NEUTRAL and rule_for("optim.beta2").kind is Kind.ALLOWABLE


def test_architecture_plan_and_global_batch_are_refused_naming_each_field() -> None:
    old = _view()
    new = _view(model__n_layers=6, growth__plan="apollo", data__micro_batch_size=16, schedule="phase starts [0, 5]")
    v = compare(old, new)
    assert {c.key for c in v.refused} == {"model.n_layers", "growth.plan", "train.global_batch", "growth.schedule"}
    assert [c.key for c in v.honoured] == ["data.micro_batch_size"]  # the per-rank part alone is honourable
    msg = refusal_message(v, "runs/x", "runs/x/checkpoints/step_00000010")
    assert "model.n_layers: 12 -> 6 (model architecture)" in msg
    assert 'growth.plan: "scratch" -> "apollo"' in msg
    assert "train.global_batch: 8 -> 16" in msg
    assert "growth.schedule: phase starts [0] -> phase starts [0, 5]" in msg
    assert "--run.name=NEW" in msg and "allow_changes" not in msg  # none of these can be allowed


def test_lr_max_steps_and_world_size_are_honoured() -> None:
    old = _view(world=2, data__micro_batch_size=8)
    new = _view(world=1, data__micro_batch_size=16, optim__lr=5e-4, train__max_steps=2000, distributed__zero_stage=3,
                train__eval_every=50)
    v = compare(old, new)
    assert not v.refused and v.lr_changed
    assert [c.key for c in v.honoured] == ["data.micro_batch_size", "distributed.world_size",
                                           "distributed.zero_stage", "optim.lr", "train.eval_every",
                                           "train.max_steps"]


def test_neutral_changes_say_nothing() -> None:
    new = _view(run__out_dir="elsewhere", run__name="other", logging__progress="off", checkpoint__resume="never",
                train__exit_at_step=7, data__path="/moved/data", distributed__backend="gloo", optim__fused="off")
    assert compare(_view(), new).changes == ()
    assert compare(_view(optim__lr=1e-3), _view(optim__lr=0.001)).changes == ()  # equal values, any spelling


def test_allowable_changes_need_checkpoint_allow_changes() -> None:
    old, new = _view(), _view(optim__weight_decay=0.1, train__precision="bf16")
    v = compare(old, new)
    assert {c.key for c in v.refused} == {"optim.weight_decay", "train.precision"}
    assert "--checkpoint.allow_changes=[optim.weight_decay,train.precision]" in refusal_message(v, "r", "c")
    ok = compare(old, new, allow=["optim.weight_decay", "train.precision"])
    assert not ok.refused and all(c.allowed for c in ok.honoured)
    assert "allowed by checkpoint.allow_changes" in ok.honoured[0].line()


def test_fraction_boundaries_moving_with_max_steps_are_refused_with_the_way_out() -> None:
    growth = {"growth__plan": "apollo", "growth__stages": [1, 3], "growth__boundaries": [0.5]}
    old = _view(schedule="phase starts [0, 50]", train__max_steps=100, **growth)
    moved = _view(schedule="phase starts [0, 100]", train__max_steps=200, **growth)
    v = compare(old, moved)
    assert [c.key for c in v.refused] == ["growth.schedule"]
    assert "growth.boundary_unit=steps" in refusal_message(v, "r", "c")
    kept = _view(schedule="phase starts [0, 50]", train__max_steps=200,
                 **{**growth, "growth__boundaries": [50], "growth__boundary_unit": "steps"})
    assert not compare(old, kept).refused  # the same phases, written in steps: honoured


def test_allow_list_is_validated() -> None:
    with pytest.raises(ConfigError, match="'model.n_layers' .*can never change within a run"):
        load_config(None, ["--checkpoint.allow_changes=model.n_layers"])
    with pytest.raises(ConfigError, match="unknown key 'optim.wd'"):
        load_config(None, ["--checkpoint.allow_changes=optim.wd"])
    cfg = load_config(None, ["--checkpoint.allow_changes=[optim.weight_decay,train.precision]"])
    assert cfg.checkpoint.allow_changes == ["optim.weight_decay", "train.precision"]


def test_lr_line_states_the_lr_at_the_resume_step() -> None:
    assert lr_line(1200, 3.2e-4, 6.1e-4, "cosine to 0.1x", 2000, "continue") == (
        "LR: cosine to 0.1x over train.max_steps=2000 (growth.lr_policy continue): the LR at step 1200 jumps from "
        "0.00032 to 0.00061")
    assert "drops from" in lr_line(5, 2.0, 1.0, "linear", 10, "reset")
    assert "stays 0.001" in lr_line(5, 1e-3, 1e-3, "constant", 10, "continue")


def test_config_from_meta_is_lenient_across_versions() -> None:
    tree = dataclasses.asdict(Config())
    tree["optim"]["lr"] = 0.5
    tree["optim"]["a_field_from_the_future"] = 1
    del tree["optim"]["decay_fraction"]
    cfg = config_from_meta(tree)
    assert cfg.optim.lr == 0.5 and cfg.optim.decay_fraction == Config().optim.decay_fraction


def test_history_is_appended_atomically_and_rewound_with_the_checkpoint(tmp_path: Path) -> None:
    cfg = Config()
    run_dir = RunDir(tmp_path / "r")
    run_dir.prepare(cfg, {}, None)
    original = (run_dir.path / "config.yaml").read_text()
    v = compare(_view(), _view(optim__lr=5e-4))
    run_dir.prepare(cfg, {}, 100, changes=history_entry(v, 100, "step_00000100", "t0"))
    run_dir.prepare(cfg, {}, 200, changes=history_entry(compare(_view(), _view(train__max_steps=9)), 200, "s", "t1"))
    assert [e["step"] for e in read_history(run_dir.path)] == [100, 200]
    assert read_history(run_dir.path)[0]["changes"] == {"optim.lr": {"old": 1e-3, "new": 5e-4, "class": "honoured"}}
    assert current_config(run_dir.path)["optim"]["lr"] == 5e-4
    assert current_config(run_dir.path)["train"]["max_steps"] == 9
    run_dir.prepare(cfg, {}, 150)  # back to an older checkpoint: the entry at 200 belonged to a discarded timeline
    assert [e["step"] for e in read_history(run_dir.path)] == [100]
    assert (run_dir.path / "config.yaml").read_text() == original
    assert not list(run_dir.path.glob("*.tmp"))
    run_dir.prepare(cfg, {}, None)  # a fresh start forgets the history
    assert not run_dir.history.exists()
    aside = list(tmp_path.glob("r.previous-*"))
    assert len(aside) == 1 and (aside[0] / "config.history.yaml").exists()  # ... moved aside, not deleted


def test_fresh_start_moves_the_previous_run_aside_never_deletes_it(tmp_path: Path, capsys) -> None:
    """checkpoint.resume=never (the way out every refusal offers) used to delete the run's checkpoints, metrics and
    TensorBoard logs at once; now they move to a timestamped sibling, and the console says where."""
    first = run(_deit(tmp_path, "--train.max_steps=2"))
    ckpts = sorted(p.name for p in (first.run_dir / "checkpoints").iterdir())
    metrics = (first.run_dir / "metrics.jsonl").read_text()
    second = run(_deit(tmp_path, "--train.max_steps=2", "--checkpoint.resume=never"))
    assert second.run_dir == first.run_dir
    aside = list(tmp_path.glob("r.previous-*"))
    assert len(aside) == 1
    assert sorted(p.name for p in (aside[0] / "checkpoints").iterdir()) == ckpts
    assert (aside[0] / "metrics.jsonl").read_text() == metrics and (aside[0] / "tb").is_dir()
    assert (aside[0] / "config.yaml").is_file()
    assert f"moved to {aside[0]}" in capsys.readouterr().out
    run(_deit(tmp_path, "--train.max_steps=2", "--checkpoint.resume=never"))  # twice in one second: a new sibling
    assert len(list(tmp_path.glob("r.previous-*"))) == 2


# ----------------------------------------------------------------- the trainer


def _deit(tmp_path: Path, *extra: str):
    return tiny_config("deit", tmp_path, "r", "--train.max_steps=4", *extra)


def test_resume_with_another_architecture_plan_or_global_batch_is_refused(tmp_path: Path) -> None:
    cut = run(_deit(tmp_path, "--train.exit_at_step=2"))
    assert cut.stopped_early and cut.stop_reason == "train.exit_at_step=2"
    config_yaml = (cut.run_dir / "config.yaml").read_text()
    with pytest.raises(ResumeRefused) as e:
        run(_deit(tmp_path, "--model.n_layers=2", "--data.micro_batch_size=16", "--growth.plan=stackbert",
                  "--growth.stages=1,2", "--growth.boundaries=0.25"))
    msg = str(e.value)
    for line in ("model.n_layers: 3 -> 2", "train.global_batch: 8 -> 16", 'growth.plan: "scratch" -> "stackbert"',
                 "growth.schedule: phase starts [0] -> phase starts [0, 1]", "step_00000002", "--run.name=NEW"):
        assert line in msg, (line, msg)
    assert (cut.run_dir / "config.yaml").read_text() == config_yaml
    assert not (cut.run_dir / "config.history.yaml").exists()
    assert [r["step"] for r in records(cut.run_dir)] == [1, 2]  # nothing was touched


def test_allowed_changes_proceed_and_are_recorded(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cut = run(_deit(tmp_path, "--train.exit_at_step=2"))
    config_yaml = (cut.run_dir / "config.yaml").read_text()
    # pretend the checkpoint was written by 2 ranks x 4 samples: the same global batch as 1 rank x 8
    meta_path = cut.run_dir / "checkpoints" / "step_00000002" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["world_size"], meta["config"]["data"]["micro_batch_size"] = 2, 4
    meta_path.write_text(json.dumps(meta))
    capfd.readouterr()
    done = run(_deit(tmp_path, "--optim.lr=1e-3", "--train.max_steps=6"))
    err = capfd.readouterr().err
    assert done.step == 6 and [r["step"] for r in records(done.run_dir)] == list(range(1, 7))
    assert "resuming from" in err and "step_00000002" in err and "step 2 of 6, phase scratch, deit 3 layers" in err
    assert "optim.lr: 0.003 -> 0.001" in err and "distributed.world_size: 2 -> 1" in err
    assert "LR: cosine to 0.1x over train.max_steps=6 (growth.lr_policy continue): the LR at step 2 drops" in err
    assert (done.run_dir / "config.yaml").read_text() == config_yaml  # the original survives
    (entry,) = read_history(done.run_dir)
    assert entry["step"] == 2 and entry["checkpoint"] == "step_00000002"
    assert set(entry["changes"]) == {"optim.lr", "train.max_steps", "distributed.world_size", "data.micro_batch_size"}
    assert entry["changes"]["train.max_steps"] == {"old": 4, "new": 6, "class": "honoured"}
    now = current_config(done.run_dir)
    assert (now["optim"]["lr"], now["train"]["max_steps"]) == (1e-3, 6)
    assert yaml.safe_load(config_yaml)["train"]["max_steps"] == 4
    # the whole run's tokens/s: all its tokens over all its training time (the resumed part included)
    last = records(done.run_dir)[-1]
    assert done.tokens_per_s == pytest.approx(last["tokens"] / last["wall_s"])


def test_a_phase_not_started_yet_may_move_and_the_resumed_run_equals_a_run_started_with_it(
        tmp_path: Path, text_data: Path) -> None:
    """Growth points after the checkpoint are honoured (megagrow plan tune forks probes this way): a run cut at
    step 3 with its growth planned at step 6, resumed with the growth at step 3, is the run grown at 3 from the
    start, loss for loss and weight for weight; a phase start before the checkpoint stays refused."""
    grow = ("--growth.plan=stackbert", "--growth.stages=[1,3]", "--growth.boundary_unit=steps",
            "--optim.schedule=wsd")
    late = tiny_config("gpt", tmp_path, "fork", *grow, "--growth.boundaries=[6]", "--train.exit_at_step=3",
                       data_path=text_data)
    assert run(late).stopped_early
    forked = run(tiny_config("gpt", tmp_path, "fork", *grow, "--growth.boundaries=[3]", data_path=text_data))
    direct = run(tiny_config("gpt", tmp_path, "direct", *grow, "--growth.boundaries=[3]", data_path=text_data))
    assert [r["loss"] for r in records(forked.run_dir)] == [r["loss"] for r in records(direct.run_dir)]
    history = read_history(forked.run_dir)
    assert any("growth.schedule_ahead" in json.dumps(h) for h in history)
    with pytest.raises(ResumeRefused) as e:  # the run is at step 8: a growth at step 2 would rewrite the past
        run(tiny_config("gpt", tmp_path, "fork", *grow, "--growth.boundaries=[2]", "--train.max_steps=10",
                        data_path=text_data))
    assert "growth.schedule: phase starts [0, 3] -> phase starts [0, 2]" in str(e.value)


def test_schedule_split_cuts_at_the_resume_step() -> None:
    from megagrow.checkpointing.resume import schedule_split

    class P:
        starts = [0, 30, 60]

        def schedule_extras(self) -> str:
            return ""

    assert schedule_split(P(), 30) == ("phase starts [0]", "phase starts from step 30: [30, 60]")
    assert schedule_split(P(), 31) == ("phase starts [0, 30]", "phase starts from step 31: [60]")
