"""train.activation_checkpointing: each block recomputed in the backward pass gives the same losses and gradients
(weight-shared layer maps, growth masks, dropout) and keeps fewer tensors for the backward pass."""

from __future__ import annotations

import copy

import pytest
import torch

from megagrow.config import load_config
from megagrow.models.masks import GrowthMasks
from tests.test_models import FAMILIES, make_batch, model_for


def _loss_and_grads(model: torch.nn.Module, batch: dict, layer_map: list[int], masks: GrowthMasks | None,
                    seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks in both models' forward passes
    out = model(batch, layer_map) if masks is None else model(batch, layer_map, masks)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_bytes(model: torch.nn.Module, batch: dict, layer_map: list[int]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch, layer_map).loss.backward()
    return sum(seen.values())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer_map", [[0, 1, 2], [0, 0, 1, 1, 2, 2], [2, 0]])  # full, Apollo-style sharing, shallow
def test_checkpointed_blocks_give_the_same_loss_and_gradients(family: str, layer_map: list[int]) -> None:
    plain = model_for(family, dropout=0.1, attn_dropout=0.1)
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing = True
    plain.train()
    ckpt.train()
    batch = make_batch(plain.cfg)
    want_loss, want = _loss_and_grads(plain, batch, layer_map, None, seed=7)
    got_loss, got = _loss_and_grads(ckpt, batch, layer_map, None, seed=7)
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=0)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-7, msg=name)


def test_checkpointed_blocks_with_growth_masks() -> None:
    # MSG's ramp: hidden/head/FFN masks and per-slot layer factors pass through the checkpointed call
    plain = model_for("gpt")
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing = True
    d, ffn = plain.cfg.hidden, plain.blocks[0].mlp.fc_in.out_features
    masks = GrowthMasks(hidden=torch.linspace(0.2, 1.0, d), heads=torch.tensor([1.0, 0.5]),
                        ffn=torch.linspace(0.1, 1.0, ffn), layers=(1.0, 0.3, 0.7))
    batch = make_batch(plain.cfg)
    want_loss, want = _loss_and_grads(plain, batch, [0, 1, 2], masks, seed=0)
    got_loss, got = _loss_and_grads(ckpt, batch, [0, 1, 2], masks, seed=0)
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=0)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpointing_keeps_fewer_tensors_for_backward(family: str) -> None:
    plain = model_for(family, n_layers=6)
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing = True
    batch = make_batch(plain.cfg, batch_size=8)
    full, kept = _saved_bytes(plain, batch, list(range(6))), _saved_bytes(ckpt, batch, list(range(6)))
    assert kept < 0.6 * full, (kept, full)


def test_checkpointing_is_off_in_eval_and_under_no_grad() -> None:
    model = model_for("gpt")
    model.activation_checkpointing = True
    batch = make_batch(model.cfg)
    calls: list[int] = []
    orig = torch.utils.checkpoint.checkpoint

    def counting(*a: object, **k: object) -> torch.Tensor:
        calls.append(1)
        return orig(*a, **k)

    torch.utils.checkpoint.checkpoint = counting  # type: ignore[assignment]
    try:
        with torch.no_grad():
            model(batch, [0, 1, 2])
        model.eval()
        model(batch, [0, 1, 2])
        assert calls == []
        model.train()
        model(batch, [0, 1, 2])
        assert len(calls) == 3
    finally:
        torch.utils.checkpoint.checkpoint = orig  # type: ignore[assignment]


def test_config_field_defaults_off() -> None:
    assert load_config("configs/gpt-tiny.yaml").train.activation_checkpointing is False
    on = load_config("configs/gpt-tiny.yaml", ["--train.activation_checkpointing=true"])
    assert on.train.activation_checkpointing is True


@pytest.mark.parametrize("zero_stage", [0, 3])
def test_training_through_growth_is_unchanged(tmp_path, text_data, zero_stage: int) -> None:
    # the real trainer: Apollo's sampled depths and two growths (engines rebuilt), ZeRO-0 and ZeRO-3 (whose module
    # hooks gather the parameters again for the recomputation)
    from tests.trainutil import records, run, tiny_config

    common = ["--growth.plan=apollo", "--growth.stages=[1,2,3]", "--growth.boundaries=[0.25,0.5]",
              f"--distributed.zero_stage={zero_stage}", "--model.dropout=0.1"]
    run(tiny_config("gpt", tmp_path, "plain", *common, data_path=text_data))
    run(tiny_config("gpt", tmp_path, "ckpt", *common, "--train.activation_checkpointing=true", data_path=text_data))
    want = [(r["step"], r["loss"]) for r in records(tmp_path / "plain") if "loss" in r]
    got = [(r["step"], r["loss"]) for r in records(tmp_path / "ckpt") if "loss" in r]
    assert len(want) == 8 and [s for s, _ in got] == [s for s, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
