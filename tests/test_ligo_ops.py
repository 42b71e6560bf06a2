"""LiGO operator (growth-algorithms notes 3.3): structure, tying, init, FLOPs, and that training it helps."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from megagrow.growth.ops.ligo import (
    LigoShape,
    expander,
    fit_operator,
    init_operator,
    materialize,
    materialize_flops,
)
from megagrow.growth.ops.stacking import stack_depth
from megagrow.models import ModelConfig, build_model
from megagrow.models.dims import Dims
from megagrow.state import FullState

FAMILIES = ["gpt", "bert", "deit"]


def _model(family: str, n_layers: int, hidden: int, heads: int, ffn: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    kw = {"vocab_size": 50, "max_seq_len": 16} if family != "deit" else {"image_size": 8, "patch_size": 4,
                                                                          "num_classes": 5}
    return build_model(ModelConfig(family=family, n_layers=n_layers, hidden=hidden, n_heads=heads, ffn=ffn,
                                   dropout=0.0, **kw)).eval()


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def _batch(family: str, n: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if family == "deit":
        return {"images": torch.randn(n, 3, 8, 8, generator=g), "labels": torch.randint(5, (n,), generator=g)}
    ids = torch.randint(5, 50, (n, 16), generator=g)
    labels = ids.clone() if family == "gpt" else torch.where(torch.rand(n, 16, generator=g) < 0.3, ids, -100)
    return {"input_ids": ids, "labels": labels}


SMALL = Dims(n_layers=2, hidden=16, n_heads=2, ffn=32)  # the sizes of _model(family, 2, 16, 2, 32)
TARGET = Dims(n_layers=4, hidden=32, n_heads=4, ffn=64)
SHAPE = {f: LigoShape(f, SMALL, TARGET) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_same_size_no_noise_is_the_identity(family: str) -> None:
    small = _params(_model(family, 2, 16, 2, 32))
    shape = LigoShape(family, SMALL, SMALL)
    out, _ = materialize(small, init_operator(small, shape, depth_noise=0.0), shape)
    assert set(out) == set(small) and all(torch.equal(out[n], small[n]) for n in small)


@pytest.mark.parametrize("family", FAMILIES)
def test_depth_only_init_without_noise_is_stacking(family: str) -> None:
    """The depth init is StackBERT-style (one-hot on l mod L_s): without noise it stacks exactly."""
    small = _params(_model(family, 2, 16, 2, 32))
    shape = LigoShape(family, SMALL, replace(SMALL, n_layers=4))
    out, _ = materialize(small, init_operator(small, shape, depth_noise=0.0), shape)
    ref = stack_depth(FullState(small), 2, 4).params
    assert set(out) == set(ref) and all(torch.equal(out[n], ref[n]) for n in ref)


@pytest.mark.parametrize("family", FAMILIES)
def test_grown_shapes_tying_and_old_units_kept(family: str) -> None:
    small = _params(_model(family, 2, 16, 2, 32))
    big = _model(family, 4, 32, 4, 64)
    op = init_operator(small, SHAPE[family], seed=3)
    out, _ = materialize(small, op, SHAPE[family])
    assert {n: tuple(t.shape) for n, t in out.items()} == {n: tuple(p.shape) for n, p in big.named_parameters()}
    big.load_state_dict(out, strict=False)  # loads (tied output follows the embedding table)
    # [I; E]: the first units of every expanded dimension are the old ones (before depth blending)
    for name in small:
        if not name.startswith("blocks."):
            sl = tuple(slice(0, s) for s in small[name].shape)
            assert torch.equal(out[name][sl], small[name]), name
    # rand init: every new unit is a convex combination of old units; depth rows sum to one
    assert torch.allclose(op["width.emb"].sum(1), torch.ones(16)) and (op["width.emb"] >= 0).all()
    assert all(torch.allclose(v.sum(1), torch.ones(v.shape[0])) for k, v in op.items() if k.startswith("depth."))
    # per-layer Q, K, V, FFN expanders and separate depth coefficients for weight and bias
    assert {"width.1.q", "width.1.k", "width.1.v", "width.1.ffn", "depth.attn.qkv.weight",
            "depth.attn.qkv.bias"} <= set(op)
    sel = init_operator(small, SHAPE[family], width_init="sel", seed=3)["width.0.q"]
    assert set(sel.sum(1).tolist()) == {1.0} and set(sel.unique().tolist()) == {0.0, 1.0}


def test_o_input_uses_v_expander_and_fc_out_uses_fc_in_expander() -> None:
    """Changing V's expander of layer 0 changes attn.proj's grown input columns; Q's does not."""
    small = _params(_model("gpt", 2, 16, 2, 32))
    shape = LigoShape("gpt", SMALL, replace(TARGET, n_layers=2))
    op = init_operator(small, shape, depth_noise=0.0)
    base, _ = materialize(small, op, shape)
    for key, changes in (("width.0.v", True), ("width.0.q", False), ("width.0.ffn", None)):
        op2 = {**op, key: op[key] + 0.1}
        out, _ = materialize(small, op2, shape)
        proj = not torch.equal(out["blocks.0.attn.proj.weight"], base["blocks.0.attn.proj.weight"])
        if changes is not None:
            assert proj == changes, key
        else:
            assert not torch.equal(out["blocks.0.mlp.fc_out.weight"], base["blocks.0.mlp.fc_out.weight"])
            assert torch.equal(out["blocks.0.mlp.fc_out.weight"][:, :32], base["blocks.0.mlp.fc_out.weight"][:, :32])


@pytest.mark.parametrize("family", FAMILIES)
def test_flops_match_flop_counter(family: str) -> None:
    small = _params(_model(family, 2, 16, 2, 32))
    op = init_operator(small, SHAPE[family])
    with FlopCounterMode(display=False) as fc:
        _, flops = materialize(small, op, SHAPE[family])
    assert flops == fc.get_total_flops() > 0
    assert materialize_flops({n: tuple(t.shape) for n, t in small.items()}, SHAPE[family]) == flops


def test_expander_and_errors() -> None:
    e = torch.rand(3, 2)
    assert torch.equal(expander(e), torch.cat([torch.eye(2), e]))
    with pytest.raises(ValueError, match="target must be >="):
        LigoShape("gpt", replace(TARGET, n_layers=2), replace(SMALL, n_layers=4, ffn=64))
    small = _params(_model("gpt", 2, 16, 2, 32))
    with pytest.raises(ValueError, match="width init 'x'"):
        init_operator(small, SHAPE["gpt"], width_init="x")
    with pytest.raises(ValueError, match="expected small blocks 0..2"):
        materialize(small, init_operator(small, SHAPE["gpt"]), LigoShape("gpt", replace(SMALL, n_layers=3), TARGET))


@pytest.mark.parametrize("family", ["gpt", "deit"])
def test_training_the_operator_lowers_the_grown_models_loss(family: str) -> None:
    """fit_operator with the grown model's loss: the loss after 30 steps is below the untrained operator's,
    the small weights are untouched, and it is deterministic."""
    small_model = _model(family, 2, 16, 2, 32)
    small = FullState(_params(small_model))
    before = {n: t.clone() for n, t in small.params.items()}
    big = _model(family, 4, 32, 4, 64)
    batch = _batch(family)
    layer_map = (0, 1, 2, 3)

    def loss_fn(params, step, micro):
        return torch.func.functional_call(big, params, (batch, layer_map, None)).loss

    r0 = fit_operator(small, SHAPE[family], loss_fn, steps=0, seed=5)
    r = fit_operator(small, SHAPE[family], loss_fn, steps=30, grad_accum=2, lr=1e-2, seed=5)
    with torch.no_grad():
        l0 = float(loss_fn(r0.state.params, 0, 0))
        l1 = float(loss_fn(r.state.params, 0, 0))
    assert l1 < l0 - 0.05
    assert len(r.losses) == 30 and r.losses[-1] < r.losses[0]
    assert all(torch.equal(small.params[n], before[n]) for n in before)
    assert not r.state.exp_avg and r.state.adam_step == 0  # fresh optimizer for the grown model
    assert r.flops == 30 * 2 * 3 * r0.flops + r0.flops  # 3x forward per micro-batch + the final materialization
    again = fit_operator(small, SHAPE[family], loss_fn, steps=30, grad_accum=2, lr=1e-2, seed=5)
    assert all(torch.equal(again.state.params[n], r.state.params[n]) for n in r.state.params)
