"""train.loss_chunk: the chunked (fused) output head + cross-entropy equals the materialised one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megagrow.config import ConfigError, load_config
from megagrow.models import chunked_loss
from megagrow.models.chunked_loss import linear_cross_entropy
from megagrow.models.core import IGNORE_INDEX, cross_entropy
from tests.test_models import make_batch, model_for

N, D, V = 37, 16, 53


def inputs(seed: int = 0, ignored: slice | None = slice(3, 9)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g)
    weight = torch.randn(V, D, generator=g) * 0.3
    labels = torch.randint(0, V, (N,), generator=g)
    if ignored is not None:
        labels[ignored] = IGNORE_INDEX
    return hidden, weight, labels


def loss_and_grads(
    fn, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor | None = None,
    autocast: bool = False,
) -> tuple[torch.Tensor, ...]:
    leaves = [t.clone().requires_grad_(True) for t in (hidden, weight) + (() if bias is None else (bias,))]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = fn(*leaves[:2], labels, *leaves[2:])
    (loss * 0.7).backward()  # a grad_output != 1
    return (loss.detach(), *(t.grad for t in leaves))


def reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    return cross_entropy(F.linear(hidden, weight, bias), labels)


def chunked(chunk: int):
    def fn(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
        return linear_cross_entropy(hidden, weight, labels, chunk, bias=bias)
    return fn


@pytest.mark.parametrize("chunk", [1, 8, 10, 37, 100])  # divides N or not, one chunk, chunk > N
def test_fp32_loss_and_grads_match_reference(chunk: int) -> None:
    hidden, weight, labels = inputs()
    want = loss_and_grads(reference, hidden, weight, labels)
    got = loss_and_grads(chunked(chunk), hidden, weight, labels)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_bias_gets_its_gradient() -> None:
    hidden, weight, labels = inputs()
    bias = torch.randn(V) * 0.1
    want = loss_and_grads(reference, hidden, weight, labels, bias)
    got = loss_and_grads(chunked(10), hidden, weight, labels, bias)
    assert len(got) == 4
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [8, 10])
def test_bf16_autocast_matches_reference(chunk: int) -> None:
    hidden, weight, labels = inputs()
    bias = torch.randn(V) * 0.1
    want = loss_and_grads(reference, hidden, weight, labels, bias, autocast=True)
    got = loss_and_grads(chunked(chunk), hidden, weight, labels, bias, autocast=True)
    # the leaves are fp32: their gradients come back in fp32, as through autocast's casts
    assert all(g.dtype == torch.float32 for g in got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=2e-2, atol=2e-3)
    # the matmul ran in bf16, as F.linear under autocast: the loss differs from the fp32 one by bf16 rounding
    fp32 = loss_and_grads(chunked(chunk), hidden, weight, labels, bias)[0]
    assert got[0] != fp32


def test_all_ignored_gives_zero_loss_and_zero_grads() -> None:
    hidden, weight, labels = inputs(ignored=slice(None))
    loss, grad_h, grad_w = loss_and_grads(chunked(8), hidden, weight, labels)
    assert loss.item() == 0.0
    assert torch.count_nonzero(grad_h) == 0 and torch.count_nonzero(grad_w) == 0
    empty = linear_cross_entropy(torch.zeros(0, D, requires_grad=True), weight, labels[:0], 4)
    assert empty.item() == 0.0 and empty.requires_grad


def test_without_autograd_matches_and_skips_gradients() -> None:
    hidden, weight, labels = inputs()
    with torch.no_grad():
        got = linear_cross_entropy(hidden, weight, labels, 10)
    torch.testing.assert_close(got, reference(hidden, weight, labels), rtol=1e-6, atol=1e-6)
    assert not got.requires_grad


def test_frozen_weight_gets_no_gradient() -> None:
    hidden, weight, labels = inputs()
    h = hidden.clone().requires_grad_(True)
    linear_cross_entropy(h, weight, labels, 10).backward()
    assert h.grad is not None and weight.grad is None


def test_bad_arguments_are_refused() -> None:
    hidden, weight, labels = inputs()
    with pytest.raises(ValueError, match="chunk=0"):
        linear_cross_entropy(hidden, weight, labels, 0)
    with pytest.raises(ValueError, match="labels"):
        linear_cross_entropy(hidden, weight, labels[:-1], 4)


def test_no_projection_larger_than_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forward never computes more than ``chunk`` rows of logits at once (the full [N, V] never exists)."""
    rows: list[int] = []
    real = F.linear

    def spy(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        out = real(x, w, b)
        if w.shape[0] == V:
            rows.append(out.reshape(-1, V).shape[0])
        return out

    monkeypatch.setattr(chunked_loss.F, "linear", spy)
    hidden, weight, labels = inputs()
    loss_and_grads(chunked(10), hidden, weight, labels)
    assert rows == [10, 10, 10, 7]
    rows.clear()
    with torch.no_grad():
        linear_cross_entropy(hidden, weight, labels, 8)
    assert rows == [8, 8, 8, 8, 5]


# ---------------------------------------------------------------- the models


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["gpt", "bert"])
@pytest.mark.parametrize("autocast", [False, True])
def test_model_with_loss_chunk_matches_materialised_head(family: str, autocast: bool) -> None:
    batch = make_batch(model_for(family).cfg, batch_size=3, seq_len=8)
    outs, all_grads = [], []
    for chunk in (0, 5):
        model = model_for(family, dropout=0.0, attn_dropout=0.0)
        model.loss_chunk = chunk
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(batch, model.full_layer_map())
        out.loss.backward()
        outs.append(out)
        all_grads.append(grads(model))
    ref, got = outs
    tol = {"rtol": 2e-2, "atol": 2e-3} if autocast else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(got.loss, ref.loss, **tol)
    assert got.n_predictions == ref.n_predictions
    assert got.logits.numel() == 0 and ref.logits.numel() > 0  # the contract: no logits when chunked
    assert all_grads[0].keys() == all_grads[1].keys()
    assert "embed.tokens.weight" in all_grads[1]  # the tied head weight: embedding + projection gradients
    for name, want in all_grads[0].items():
        torch.testing.assert_close(all_grads[1][name], want, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_gpt_masked_path_matches() -> None:
    from megagrow.models.masks import GrowthMasks

    masks = GrowthMasks(hidden=torch.cat([torch.ones(24), torch.full((8,), 0.5)]), layers=(1.0, 0.5, 1.0))
    batch = make_batch(model_for("gpt").cfg)
    losses, all_grads = [], []
    for chunk in (0, 7):
        model = model_for("gpt", dropout=0.0, attn_dropout=0.0)
        model.loss_chunk = chunk
        out = model(batch, model.full_layer_map(), masks)
        out.loss.backward()
        losses.append(out.loss)
        all_grads.append(grads(model))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for name, want in all_grads[0].items():
        torch.testing.assert_close(all_grads[1][name], want, rtol=1e-5, atol=1e-6)


def test_negative_loss_chunk_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["--train.loss_chunk=-1"])
    assert "train.loss_chunk=-1" in str(e.value) and ">= 0" in str(e.value)
    assert load_config(None, ["--train.loss_chunk=4096"]).train.loss_chunk == 4096
    assert load_config(None, []).train.loss_chunk == 0


def test_compiled_gpt_with_loss_chunk_matches_eager() -> None:
    from megagrow.distributed.engine import compile_in_place

    eager, compiled = model_for("gpt"), model_for("gpt")
    eager.loss_chunk = compiled.loss_chunk = 5
    compile_in_place(compiled)
    batch = make_batch(eager.cfg)
    want, got = eager(batch, [0, 1, 2]).loss, compiled(batch, [0, 1, 2]).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    want.backward()
    got.backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
