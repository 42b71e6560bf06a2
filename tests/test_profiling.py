"""logging.profile_steps: the step breakdown a run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megagrow.config import ConfigError, load_config
from megagrow.trainer.profiling import PHASES
from tests.trainutil import run, tiny_config


def test_profile_window_writes_a_breakdown_of_the_step(tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config("gpt", tmp_path, "prof", "--train.max_steps=6", "--logging.profile_steps=[3,5]",
                      data_path=text_data)  # not the sample corpus in the user's cache: a clean machine has none
    result = run(cfg)
    prof = json.loads((result.run_dir / "profile.json").read_text())
    assert prof["steps"] == [3, 5] and prof["n_steps"] == 3
    phases = prof["phases_s_per_step"]
    assert set(phases) == set(PHASES)
    assert phases["forward"] > 0 and phases["backward"] > 0 and phases["optimizer"] > 0 and phases["data"] > 0
    assert sum(phases.values()) <= prof["step_wall_s"] * 1.05  # ranges nest inside the step
    assert (result.run_dir / "profile_trace.json").stat().st_size > 0


@pytest.mark.parametrize("window", ["[3]", "[5,3]", "[0,2]"])
def test_bad_profile_window_is_named(window: str) -> None:
    with pytest.raises(ConfigError, match="logging.profile_steps"):
        load_config("configs/gpt-tiny.yaml", [f"--logging.profile_steps={window}"])
