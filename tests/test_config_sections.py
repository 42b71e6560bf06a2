"""Per-method option sections (``growth.<method>:``) and the translation of older configs' flat growth keys:
every config committed with a result still loads, to the same options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megagrow.checkpointing.resume import rule_for
from megagrow.config import ConfigError, config_from_meta, load_config, warnings_for
from megagrow.growth.config import LEGACY_KEYS, SECTIONS, GrowthConfig, translate_legacy

ROOT = Path(__file__).resolve().parents[1]
RESULT_CONFIGS = sorted((ROOT / "benchmarks" / "results").rglob("config.yaml"))


def test_results_hold_configs_to_check() -> None:
    assert len(RESULT_CONFIGS) > 100  # every committed run keeps its resolved config.yaml


@pytest.mark.parametrize("path", RESULT_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "benchmarks" / "results")))
def test_every_committed_result_config_loads_with_its_options(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path)
    flat = raw.get("growth", {})
    for old, (section, key) in LEGACY_KEYS.items():
        if old in flat:  # the old value lands in its section
            assert getattr(getattr(cfg.growth, section), key) == flat[old], (old, section, key)
    if any(old in flat for old in LEGACY_KEYS):
        assert any("read as the new keys" in w for w in warnings_for(cfg))


def test_old_flat_key_as_override_still_overrides_a_new_style_file() -> None:
    # configs/plans/apollo.yaml writes growth.apollo.layer_map: stacking; the suites' old override still wins
    cfg = load_config(ROOT / "configs" / "plans" / "apollo.yaml",
                      ["--model.size=gpt-tiny", "--growth.layer_map=interpolation"])
    assert cfg.growth.apollo.layer_map == "interpolation"
    assert any("growth.layer_map -> growth.apollo.layer_map" in w for w in warnings_for(cfg))


def test_new_keys_load_without_a_note() -> None:
    cfg = load_config(ROOT / "configs" / "plans" / "multilevel.yaml",
                      ["--model.size=gpt-tiny", "--growth.multilevel.alpha=0.1"])
    assert cfg.growth.multilevel.alpha == 0.1 and cfg.growth.multilevel.levels == 2
    assert not any("read as the new keys" in w for w in warnings_for(cfg))


def test_old_and_new_key_set_differently_in_one_source_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"growth.alpha=0.1.*growth.multilevel.alpha=0.3"):
        load_config(None, ["--growth.plan=multilevel", "--growth.alpha=0.1", "--growth.multilevel.alpha=0.3"])
    tree, notes, problems = translate_legacy({"growth": {"alpha": 0.2, "multilevel": {"alpha": 0.2}}})
    assert tree["growth"] == {"multilevel": {"alpha": 0.2}} and notes and not problems


def test_checkpoint_configs_of_older_versions_keep_their_options() -> None:
    old = {"growth": {"plan": "msg", "msg_ramp_steps": 25, "b2b_method": "fpi"}}
    cfg = config_from_meta(old)
    assert cfg.growth.msg.ramp_steps == 25 and cfg.growth.bert2bert.method == "fpi"


def test_unknown_section_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"growth.multilevel.alpah.*did you mean 'growth.multilevel.alpha'"):
        load_config(None, ["--growth.multilevel.alpah=0.1"])


def test_each_section_checks_its_own_values() -> None:
    with pytest.raises(ConfigError, match=r"growth.ligo.steps=-1: must be >= 0"):
        load_config(None, ["--growth.ligo.steps=-1"])
    with pytest.raises(ConfigError, match=r"growth.multilevel.levels=4: must be 2 or 3"):
        load_config(None, ["--model.size=gpt-tiny", "--growth.plan=multilevel", "--growth.boundaries=0.1,0.5",
                           "--growth.multilevel.levels=4"])


def test_sections_are_the_plans_own_and_resume_classifies_their_fields() -> None:
    import dataclasses

    from megagrow.growth.plans import PLANS

    assert set(GrowthConfig().sections()) == set(SECTIONS)
    assert {c.section for c in PLANS.values() if c.section} == set(SECTIONS)
    for key, cls in SECTIONS.items():
        owner = next(c for c in PLANS.values() if c.section == key)
        assert cls.__module__ == owner.__module__ or key in owner.__mro__[1].__module__  # defined in its plan file
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"growth.{key}.{f.name} has no help"
    assert rule_for("growth.msg.ramp_steps").kind == "honoured"
    assert rule_for("growth.multilevel.coarse_lr_mult").kind == "allowable"
    assert rule_for("growth.multilevel.alpha").kind == "incompatible"
