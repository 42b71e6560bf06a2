"""train.compile (torch.compile in place) and the choice of DeepSpeed's accelerator."""

from __future__ import annotations

import os

import pytest
import torch

from megagrow.config import ConfigError, load_config
from megagrow.distributed.engine import choose_deepspeed_accelerator, compile_in_place
from tests.test_models import make_batch, model_for


def test_compiled_model_matches_eager_and_keeps_names_across_layer_maps() -> None:
    eager = model_for("gpt")
    compiled = model_for("gpt")
    names = [n for n, _ in compiled.named_parameters()]
    compile_in_place(compiled)
    assert [n for n, _ in compiled.named_parameters()] == names  # checkpoints and param groups unchanged
    assert list(compiled.state_dict()) == list(eager.state_dict())
    batch = make_batch(eager.cfg)
    for layer_map in ([0, 1, 2], [0, 0], [2, 1, 0, 1], [0, 1, 2]):  # sampled depths, weight sharing, a repeat
        want = eager(batch, layer_map).loss
        got = compiled(batch, layer_map).loss
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    assert all(p.grad is not None for p in compiled.parameters())


def test_compile_with_zero3_is_refused_naming_both_fields() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("configs/gpt-tiny.yaml", ["--train.compile=true", "--distributed.zero_stage=3"])
    assert "train.compile" in str(e.value) and "zero_stage=3" in str(e.value)
    assert load_config("configs/gpt-tiny.yaml", ["--train.compile=true", "--distributed.zero_stage=2"]).train.compile


def test_deepspeed_accelerator_follows_torch_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # a DeepSpeed installed without a GPU records accelerator_name='cpu'; megagrow must pick cuda where torch sees a
    # GPU (found on an H200: every megagrow run there trained on the CPU accelerator and failed at its first broadcast)
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    choose_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "cuda"
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choose_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    monkeypatch.setenv("DS_ACCELERATOR", "xpu")  # the user's choice wins
    choose_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "xpu"
