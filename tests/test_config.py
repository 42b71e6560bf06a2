"""Config tree: YAML + includes + presets + dotted overrides, validation messages, DeepSpeed JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from megagrow.cli import main as cli_main
from megagrow.config import (
    Config,
    ConfigError,
    deepspeed_config,
    describe,
    dump_yaml,
    load_config,
    parse_overrides,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.run.name
    assert cfg.model.family in ("bert", "gpt", "deit")


def test_preset_then_explicit_fields_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  size: gpt-tiny\n  hidden: 128\noptim:\n  lr: 3e-4\n")
    cfg = load_config(f, ["--model.n_layers=6", "--optim.warmup_steps", "7", "--train.precision=bf16"])
    assert (cfg.model.family, cfg.model.hidden, cfg.model.n_layers) == ("gpt", 128, 6)
    assert cfg.model.n_heads == 4  # from the preset
    assert cfg.optim.lr == pytest.approx(3e-4)  # PyYAML reads 3e-4 as a string; coerced by field type
    assert cfg.optim.warmup_steps == 7
    assert cfg.train.precision == "bf16"
    assert cfg.run.name == "c"


def test_include_is_merged_underneath(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("model: {size: bert-tiny}\ntrain: {max_steps: 5, eval_every: 2}\n")
    (tmp_path / "exp.yaml").write_text("include: base.yaml\ntrain: {max_steps: 9}\n")
    cfg = load_config(tmp_path / "exp.yaml")
    assert (cfg.model.family, cfg.train.max_steps, cfg.train.eval_every) == ("bert", 9, 2)


def _problems(path: Path | None, overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return str(e.value)


def test_bad_float_names_field_and_value() -> None:
    msg = _problems(ROOT / "configs/bert-tiny.yaml", ["--optim.lr=abc"])
    assert "optim.lr='abc'" in msg and "expected a number" in msg


def test_unknown_key_suggests_close_match() -> None:
    msg = _problems(ROOT / "configs/bert-tiny.yaml", ["--model.n_layrs=3"])
    assert "unknown config key 'model.n_layrs'" in msg
    assert "did you mean 'model.n_layers'?" in msg


def test_unknown_section_and_bad_choices() -> None:
    msg = _problems(None, ["--optimizer.lr=1", "--train.precision=fp16", "--distributed.zero_stage=4"])
    assert "unknown config key 'optimizer'" in msg and "did you mean 'optim'?" in msg
    assert "train.precision='fp16': expected one of ['auto', 'fp32', 'bf16', 'bf16-autocast']" in msg
    msg = _problems(None, ["--distributed.zero_stage=4"])
    assert "distributed.zero_stage=4: must be one of 0, 1, 2, 3" in msg


def test_cross_field_validation_lists_every_problem() -> None:
    msg = _problems(None, ["--model.size=gpt-tiny", "--model.hidden=250", "--data.seq_len=4096",
                           "--optim.beta2=1.5", "--growth.plan=apolo"])
    assert "250" in msg and "n_heads" in msg
    assert "data.seq_len=4096: must be <= model.max_seq_len=128" in msg
    assert "optim.beta2=1.5: must be in [0, 1)" in msg
    assert "growth.plan='apolo'" in msg


def test_unknown_model_size_suggests() -> None:
    msg = _problems(None, ["--model.size=gpt-tny"])
    assert "model.size='gpt-tny'" in msg and "did you mean 'gpt-tiny'?" in msg


def test_integer_field_rejects_fraction_and_bool() -> None:
    assert "expected an integer" in _problems(None, ["--train.max_steps=2.5"])
    assert "expected a boolean" in _problems(None, ["--checkpoint.save_final=maybe"])


def test_override_syntax_errors() -> None:
    with pytest.raises(ConfigError, match="missing value"):
        parse_overrides(["--optim.lr"])
    with pytest.raises(ConfigError, match="expected --section.key=value"):
        parse_overrides(["optim.lr=1"])


def test_resolved_yaml_round_trips(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/gpt-tiny.yaml", ["--optim.lr=2e-4"])
    again = tmp_path / "resolved.yaml"
    again.write_text(dump_yaml(cfg))
    cfg2 = load_config(again)
    assert cfg2.to_dict() == cfg.to_dict()
    assert yaml.safe_load(again.read_text())["optim"]["lr"] == pytest.approx(2e-4)


def test_deepspeed_json_is_generated_from_the_tree() -> None:
    cfg = load_config(None, ["--model.size=gpt-tiny", "--data.micro_batch_size=4", "--train.grad_accum=3",
                             "--distributed.zero_stage=2", "--train.precision=bf16", "--optim.grad_clip=0.5"])
    ds = deepspeed_config(cfg, world_size=8)
    assert ds["train_batch_size"] == 4 * 3 * 8
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 3
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["bf16"]["enabled"] is True and ds["fp16"]["enabled"] is False
    assert ds["torch_autocast"]["enabled"] is False
    assert ds["gradient_clipping"] == 0.5
    auto = deepspeed_config(load_config(None, ["--model.size=gpt-tiny", "--train.precision=bf16-autocast"]), 1)
    assert auto["bf16"]["enabled"] is False and auto["torch_autocast"] == {"enabled": True, "dtype": "torch.bfloat16"}


def test_bucket_elements_set_deepspeeds_buckets() -> None:
    z3 = deepspeed_config(load_config(None, ["--distributed.zero_stage=3", "--distributed.bucket_elements=1000"]), 2)
    zero = z3["zero_optimization"]
    assert (zero["reduce_bucket_size"], zero["allgather_bucket_size"], zero["stage3_prefetch_bucket_size"]) == \
        (1000, 1000, 1000)
    assert zero["stage3_max_live_parameters"] == zero["stage3_max_reuse_distance"] == 4000
    default = deepspeed_config(load_config(None, ["--distributed.zero_stage=3"]), 2)["zero_optimization"]
    assert "reduce_bucket_size" not in default  # DeepSpeed's own defaults
    with pytest.raises(ConfigError, match="bucket_elements=-1"):
        load_config(None, ["--distributed.bucket_elements=-1"])


def test_streamed_transitions_need_zero3() -> None:
    from megagrow.distributed.engine import state_placement

    with pytest.raises(ConfigError, match="full_state=streamed with distributed.zero_stage=2"):
        load_config(None, ["--distributed.zero_stage=2", "--distributed.full_state=streamed"])
    z3 = load_config(None, ["--distributed.zero_stage=3"])
    assert state_placement(z3, 2) == "streamed" and state_placement(z3, 1) == "replicated"
    assert state_placement(load_config(None, ["--distributed.zero_stage=2"]), 4) == "replicated"
    assert state_placement(load_config(None, ["--distributed.zero_stage=3", "--distributed.full_state=rank0"]), 2) \
        == "rank0"


def test_every_field_is_documented() -> None:
    lines = describe(Config)
    fields = [ln for ln in lines if ln.startswith("  --")]
    assert len(fields) > 40
    undocumented = [ln for ln in fields if ln.rstrip().endswith("):")]
    assert not undocumented, undocumented


def test_cli_config_errors_exit_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["train", str(ROOT / "configs/bert-tiny.yaml"), "--optim.lr=abc"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr='abc'" in err
    assert cli_main(["train", str(ROOT / "configs/bert-tiny.yaml"), "--model.n_layrs=3"]) == 2
    assert "did you mean 'model.n_layers'?" in capsys.readouterr().err


def test_console_script_reports_errors() -> None:
    exe = Path(sys.executable).parent / "megagrow"
    r = subprocess.run([str(exe), "train", str(ROOT / "configs/bert-tiny.yaml"), "--model.n_layrs=3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "did you mean 'model.n_layers'?" in r.stderr
    assert "Traceback" not in r.stderr


def test_msg_settings_are_validated() -> None:
    msg = _problems(None, ["--model.size=gpt-tiny", "--growth.plan=msg", "--growth.boundaries=0.2,0.5",
                           "--growth.msg.ramp_steps=2.5", "--model.n_layers=3"])
    assert "msg needs exactly one (the growth step)" in msg
    assert "model.n_layers=3: msg starts from half the target; must be even" in msg
    assert "growth.msg.ramp_steps=2.5" in msg
    assert "growth.msg.ramp_steps=-1" in _problems(None, ["--growth.msg.ramp_steps=-1"])
    cfg = load_config(ROOT / "configs/plans/msg.yaml", ["--model.size=gpt-tiny"])
    assert cfg.growth.plan == "msg" and cfg.growth.msg.ramp_steps == pytest.approx(0.1)


def test_malformed_yaml_names_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  size: gpt-tiny\n   hidden: 3\n")
    msg = _problems(bad, [])
    assert f"{bad}:3:" in msg and "not valid YAML" in msg and "'hidden: 3'" in msg
    (tmp_path / "exp.yaml").write_text("include: bad.yaml\n")
    msg = _problems(tmp_path / "exp.yaml", [])
    assert f"{bad}:3:" in msg and f"included from {tmp_path / 'exp.yaml'}" in msg
    bad.write_text("optim:\n  lr: [1e-3\ntrain:\n  max_steps: 5\n")
    assert "(started at line 2)" in _problems(bad, [])


def test_train_help_explains_overrides_and_include(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--section.key=value" in out and "megagrow config --docs" in out
    assert "include: [gpt-tiny.yaml, plans/apollo.yaml]" in out and "checkpoint.allow_changes" in out


def test_config_comments_name_only_real_flags() -> None:
    """A ``--flag`` in a shipped config's comments is a real field's override or a real ``megagrow`` option."""
    import re

    from megagrow.checkpointing.resume import flatten

    fields = set(flatten(Config().to_dict()))
    known = fields | {"docs", "deepspeed", "world-size", "json", "help"}
    for path in [*CONFIGS, *sorted((ROOT / "configs/plans").glob("*.yaml"))]:
        for line in path.read_text().splitlines():
            comment = line.partition("#")[2]
            for flag in re.findall(r"--([\w.-]+)", comment):
                assert flag.rstrip(".") in known, f"{path.name}: comment names --{flag}, which megagrow does not have"


def test_cli_output_into_a_closed_pipe_is_not_an_error() -> None:
    """`megagrow config --docs | head -1`: the reader leaves before the output is written; exit 0, no traceback."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # the reader is gone before megagrow writes anything
    p = subprocess.run([sys.executable, "-m", "megagrow.cli", "config", "--docs"], stdout=w, stderr=subprocess.PIPE,
                       text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    os.close(w)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr


def test_overriding_a_presets_width_warns_that_its_ffn_stays() -> None:
    """--model.hidden over a preset kept the preset's ffn (4 x ITS hidden) without a word."""
    from megagrow.config import warnings_for

    (w,) = warnings_for(load_config("configs/gpt-tiny.yaml", ["--model.hidden=64", "--model.n_heads=2"]))
    assert "model.ffn stays the preset's 1024" in w and "--model.ffn=256" in w
    assert warnings_for(load_config("configs/gpt-tiny.yaml", ["--model.hidden=64", "--model.n_heads=2",
                                                              "--model.ffn=1024"])) == []  # explicit: meant
    assert warnings_for(load_config("configs/gpt-tiny.yaml")) == []


def test_one_default_apollo_layer_map() -> None:
    """growth.apollo.layer_map defaulted to interpolation while configs/plans/apollo.yaml shipped stacking: two
    defaults."""
    from megagrow.config import GrowthConfig

    shipped = yaml.safe_load(Path("configs/plans/apollo.yaml").read_text())["growth"]["apollo"]["layer_map"]
    assert GrowthConfig().apollo.layer_map == shipped == "stacking"
