"""bert2BERT (FPI / AKI width growth + stacking) and MSG (masked structural growth) operators, on states
of real ``build_model`` instances. Deviations are relative max-abs ``max|a - b| / max|b|`` (``-s`` prints them).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from megagrow.growth.ops.bert2bert import aki_width, bert2bert, fpi_width, unit_map, width_maps
from megagrow.growth.ops.msg import MsgMasks, msg_grow, msg_layernorm, msg_mask
from megagrow.models import ModelConfig, build_model
from megagrow.models.dims import Dims
from megagrow.state import FullState
from tests.msg_reference import msg_block_forward, msg_forward

SMALL = dict(n_layers=2, hidden=16, n_heads=2, ffn=64)
WIDE = dict(n_layers=2, hidden=32, n_heads=4, ffn=128)
SMALL_DIMS, WIDE_DIMS = Dims(**SMALL), Dims(**WIDE)
GROWN_DIMS = Dims(n_layers=3, hidden=32, n_heads=4, ffn=128)  # WIDE_DIMS one layer deeper


def fam(family: str) -> str:
    """The model family of a test id: ``bert-preln`` is BERT with ``model.bert_pre_ln``, ``bert-local`` BERT with
    ``model.attn_local_bias``."""
    return "bert" if family.startswith("bert") else family


def local(family: str) -> float:
    return LOCAL_BIAS if family == "bert-local" else 0.0


LOCAL_BIAS = 0.5


def cfg(family: str, **kw) -> ModelConfig:
    base = dict(family=fam(family), bert_pre_ln=family == "bert-preln", attn_local_bias=local(family),
                vocab_size=64, max_seq_len=16, ln_eps=1e-12, image_size=16, patch_size=4, num_classes=10)
    base.update(kw)
    return ModelConfig(**base)


def small_state(family: str, seed: int = 0, moments: bool = False) -> FullState:
    torch.manual_seed(seed)
    model = build_model(cfg(family, **SMALL))
    g = torch.Generator().manual_seed(seed + 1)
    params = {n: (p.detach() + 0.05 * torch.randn(p.shape, generator=g)).clone() for n, p in model.named_parameters()}
    state = FullState(params=params)
    if moments:
        state.exp_avg = {n: 1e-3 * torch.randn(p.shape, generator=g) for n, p in params.items()}
        state.exp_avg_sq = {n: 1e-6 * torch.rand(p.shape, generator=g) + 1e-8 for n, p in params.items()}
        state.adam_step = 9
    return state


def load(family: str, state: FullState, **kw):
    model = build_model(cfg(family, **kw)).eval()
    model.load_state_dict(state.params, strict=True)
    return model


def batch(family: str, seed: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if family == "deit":
        return {"images": torch.randn(3, 3, 16, 16, generator=g), "labels": torch.tensor([1, 2, 3])}
    ids = torch.randint(0, 64, (3, 12), generator=g)
    labels = ids.clone()
    if fam(family) == "bert":
        labels[:, ::2] = -100
    return {"input_ids": ids, "labels": labels}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def logits(model, b) -> torch.Tensor:
    with torch.no_grad():
        return model(b, model.full_layer_map()).logits


# ------------------------------------------------------------------------------------------------ maps


def test_unit_map_balanced_and_uniform():
    gen = torch.Generator().manual_seed(0)
    m = unit_map(4, 12, gen, "balanced")
    assert m.group_of[:4] == (0, 1, 2, 3) and m.sizes() == [3, 3, 3, 3]
    u = unit_map(4, 12, torch.Generator().manual_seed(0), "uniform")
    assert u.group_of[:4] == (0, 1, 2, 3) and len(u.group_of) == 12
    e, heads, ffns = width_maps(SMALL_DIMS, WIDE_DIMS, seed=3)
    assert e.n_fine == 32 and heads[0].n_fine == 32 and ffns[1].n_fine == 128
    # whole heads: channel c of a new head maps to the same offset of one old head
    for g in heads:
        for h in range(4):
            src = {g.group_of[h * 8 + o] - o for o in range(8)}
            assert len(src) == 1 and next(iter(src)) % 8 == 0
    with pytest.raises(ValueError, match="head size"):
        fpi_width(small_state("bert"), "bert", SMALL_DIMS, Dims(2, 32, 2, 128))


# ------------------------------------------------------------------------------------------------- FPI


@pytest.mark.parametrize("family", ["bert", "bert-preln", "bert-local", "gpt", "deit"])
def test_fpi_preserves_function(family):
    state = small_state(family)
    wide = fpi_width(state, fam(family), SMALL_DIMS, WIDE_DIMS, seed=0)
    b = batch(family)
    ref = logits(load(family, state, **SMALL), b)
    dev = rel(logits(load(family, wide, **WIDE), b), ref)
    print(f"\nFPI {family} balanced 16->32: rel dev {dev:.2e}")
    assert dev < 1e-5
    # tied head stays tied: a single embed.tokens.weight, no decoder/head entry
    if family != "deit":
        assert not any("decoder" in n or n == "lm_head.weight" for n in wide.params)
        assert set(wide.params) == set(state.params)


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_fpi_uniform_sampling_ln_effect(family):
    """i.i.d. sampling gives unequal hidden copy counts: the LayerNorms change the function (notes §3.2)."""
    state = small_state(family)
    wide = fpi_width(state, family, SMALL_DIMS, WIDE_DIMS, seed=0, sampling="uniform")
    b = batch(family)
    dev = rel(logits(load(family, wide, **WIDE), b), logits(load(family, state, **SMALL), b))
    print(f"\nFPI {family} uniform 16->32: rel dev {dev:.2e}")
    assert 1e-4 < dev < 1.0
    # FFN-only growth does not touch any LayerNorm: preserved even with uniform sampling
    ffn_only = fpi_width(state, family, SMALL_DIMS, replace(SMALL_DIMS, ffn=96), seed=0, sampling="uniform")
    dev2 = rel(logits(load(family, ffn_only, **{**SMALL, "ffn": 96}), b), logits(load(family, state, **SMALL), b))
    assert dev2 < 1e-5


def test_fpi_moments_copy_rule():
    state = small_state("bert", moments=True)
    wide = fpi_width(state, "bert", SMALL_DIMS, WIDE_DIMS, seed=0)
    e, heads, ffns = width_maps(SMALL_DIMS, WIDE_DIMS, seed=0)
    assert wide.adam_step == 9
    c_f = torch.tensor(ffns[0].sizes(), dtype=torch.float32)
    gf = torch.tensor(ffns[0].group_of)
    ge = torch.tensor(e.group_of)
    w_old = w_new = "blocks.0.mlp.fc_out.weight"
    m = state.exp_avg[w_old][ge][:, gf] / c_f[gf]
    v = state.exp_avg_sq[w_old][ge][:, gf]
    torch.testing.assert_close(wide.exp_avg[w_new], m, rtol=0, atol=0)
    torch.testing.assert_close(wide.exp_avg_sq[w_new], v, rtol=0, atol=0)
    # Adam's update ratio maps like the parameter: m'/sqrt(v') == D(m/sqrt(v))
    ratio_old = state.exp_avg[w_old] / state.exp_avg_sq[w_old].sqrt()
    ratio_new = wide.exp_avg[w_new] / wide.exp_avg_sq[w_new].sqrt()
    torch.testing.assert_close(ratio_new, ratio_old[ge][:, gf] / c_f[gf])
    # tied LN before the decoder: split
    c_e = torch.tensor(e.sizes(), dtype=torch.float32)[ge]
    torch.testing.assert_close(wide.params["mlm.ln.weight"], state.params["mlm.ln.weight"][ge] / c_e)
    torch.testing.assert_close(wide.exp_avg["mlm.ln.bias"], state.exp_avg["mlm.ln.bias"][ge] / c_e)
    reset = fpi_width(state, "bert", SMALL_DIMS, WIDE_DIMS, seed=0, moments="reset")
    assert not reset.exp_avg and not reset.exp_avg_sq and reset.adam_step == 0


# ------------------------------------------------------------------------------------------------- AKI


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_aki_shapes_determinism_and_deviation(family):
    state = small_state(family, moments=True)
    a1 = aki_width(state, family, SMALL_DIMS, WIDE_DIMS, seed=4)
    a2 = aki_width(state, family, SMALL_DIMS, WIDE_DIMS, seed=4)
    fpi = fpi_width(state, family, SMALL_DIMS, WIDE_DIMS, seed=4)
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in build_model(cfg(family, **WIDE)).named_parameters()}
    a1.check_against(shapes, "aki")
    assert all(torch.equal(a1.params[n], a2.params[n]) for n in a1.params)
    assert all(torch.equal(a1.exp_avg[n], a2.exp_avg[n]) for n in a1.params)
    # old output units and the top layer are FPI; new output units of layer 0 come from layer 1
    top = [n for n in a1.params if n.startswith("blocks.1.")]
    assert all(torch.equal(a1.params[n], fpi.params[n]) for n in top)
    w = "blocks.0.mlp.fc_in.weight"
    assert torch.equal(a1.params[w][:64], fpi.params[w][:64])
    assert not torch.equal(a1.params[w][64:], fpi.params[w][64:])
    assert torch.equal(a1.params[w][64:], fpi.params["blocks.1.mlp.fc_in.weight"][64:])
    assert torch.equal(a1.params["embed.tokens.weight"], fpi.params["embed.tokens.weight"])
    b = batch(family)
    dev = rel(logits(load(family, a1, **WIDE), b), logits(load(family, state, **SMALL), b))
    print(f"\nAKI {family} 16->32: rel dev {dev:.2e} (not function preserving)")
    assert dev > 1e-3


def test_bert2bert_width_then_stack():
    state = small_state("bert", moments=True)
    grown = bert2bert(state, "bert", SMALL_DIMS, Dims(5, 32, 4, 128), method="fpi", seed=1)
    wide = fpi_width(state, "bert", SMALL_DIMS, WIDE_DIMS, seed=1)
    src = [0, 1, 0, 1, 1]  # stacking_map(2, 5), remainder from the top
    for j, s in enumerate(src):
        assert torch.equal(grown.params[f"blocks.{j}.attn.qkv.weight"], wide.params[f"blocks.{s}.attn.qkv.weight"])
        assert torch.equal(grown.exp_avg[f"blocks.{j}.ln_1.bias"], wide.exp_avg[f"blocks.{s}.ln_1.bias"])
    load("bert", grown, **{**WIDE, "n_layers": 5})
    fresh = bert2bert(state, "bert", SMALL_DIMS, Dims(4, 32, 4, 128), moments="reset")
    assert not fresh.exp_avg and fresh.adam_step == 0


# ------------------------------------------------------------------------------------------------- MSG


def test_msg_mask_ramp():
    assert msg_mask(0, 10, 100) == 0.0
    assert msg_mask(10, 10, 100) == 0.0
    assert msg_mask(35, 10, 100) == 0.25
    assert msg_mask(110, 10, 100) == 1.0
    assert msg_mask(500, 10, 100) == 1.0
    assert msg_mask(10, 10, 0) == 1.0 and msg_mask(9, 10, 0) == 0.0
    m = MsgMasks((16, 32), (2, 4), (64, 128), (2, 3))
    assert m.hidden_mask(0.5)[15].item() == 1.0 and m.hidden_mask(0.5)[16].item() == 0.5
    assert m.layer_mask(0.3) == [1.0, 1.0, 0.3]


def test_msg_layernorm():
    x = torch.randn(4, 10)
    w, b = torch.randn(10), torch.randn(10)
    torch.testing.assert_close(
        msg_layernorm(x, w, b, torch.ones(10), 1e-5), torch.nn.functional.layer_norm(x, (10,), w, b, 1e-5)
    )
    mask = torch.tensor([1.0] * 6 + [0.0] * 4)
    y = msg_layernorm(x + 100 * mask.logical_not(), w, b, mask, 1e-5)[:, :6]  # new channels ignored
    torch.testing.assert_close(y, torch.nn.functional.layer_norm(x[:, :6], (6,), w[:6], b[:6], 1e-5))


@pytest.mark.parametrize("family", ["bert", "gpt", "deit"])
def test_msg_block_exact_at_zero(family):
    """A real block of the small model vs its MSG-grown block run by the reference forward at c=0."""
    state = small_state(family)
    grown, masks = msg_grow(state, family, SMALL_DIMS, WIDE_DIMS, seed=2)
    small = load(family, state, **SMALL)
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        ref = small.blocks[1](x)
    blk = {n.split(".", 2)[2]: t for n, t in grown.params.items() if n.startswith("blocks.1.")}
    xw = torch.cat([x, torch.randn(2, 7, 16)], dim=-1) * masks.hidden_mask(0.0)  # new channels are 0 at c=0
    y = msg_block_forward(
        xw,
        blk,
        n_heads=4,
        pre_ln=family != "bert",
        eps=1e-12,
        gelu_approximate="tanh" if family == "gpt" else "none",
        causal=family == "gpt",
        hidden_mask=masks.hidden_mask(0.0),
        head_mask=masks.head_mask(0.0),
        ffn_mask=masks.ffn_mask(0.0),
    )
    dev = rel(y[..., :16], ref)
    print(f"\nMSG block {family} c=0: rel dev {dev:.2e}")
    assert dev < 1e-6
    if family == "bert":  # post-LN: the block output's new channels are masked too
        assert torch.equal(y[..., 16:], torch.zeros_like(y[..., 16:]))


@pytest.mark.parametrize("family", ["bert", "bert-preln", "bert-local", "gpt", "deit"])
@pytest.mark.parametrize("new_layer_init", ["copy", "random"])
def test_msg_model_preservation_and_mask_one(family, new_layer_init):
    state = small_state(family, moments=True)
    grown, masks = msg_grow(state, fam(family), SMALL_DIMS, GROWN_DIMS, seed=7, new_layer_init=new_layer_init)
    b = batch(family)
    small = logits(load(family, state, **SMALL), b)
    with torch.no_grad():
        at0 = msg_forward(grown.params, fam(family), 4, b, masks, c=0.0, eps=1e-12, local_bias=local(family))
        at1 = msg_forward(grown.params, fam(family), 4, b, masks, c=1.0, eps=1e-12, local_bias=local(family))
        half = msg_forward(grown.params, fam(family), 4, b, masks, c=0.5, eps=1e-12, local_bias=local(family))
    plain = logits(load(family, grown, **{**WIDE, "n_layers": 3}), b)
    d0, d1 = rel(at0, small), rel(at1, plain)
    print(
        f"\nMSG {family} ({new_layer_init}) c=0 vs small: {d0:.2e}; c=1 vs plain grown: {d1:.2e}; "
        f"c=0.5 vs small: {rel(half, small):.2e}"
    )
    assert d0 < 1e-5 and d1 < 1e-5
    assert rel(half, small) > 1e-4
    # reference forward without masks == the model (the reference itself is right)
    with torch.no_grad():
        plain_small = msg_forward(state.params, fam(family), 2, b, None, eps=1e-12, local_bias=local(family))
        assert rel(plain_small, small) < 1e-6


def test_msg_state_layout_and_moments():
    state = small_state("bert", moments=True)
    grown, masks = msg_grow(state, "bert", SMALL_DIMS, GROWN_DIMS, seed=1)
    assert masks == MsgMasks((16, 32), (2, 4), (64, 128), (2, 3))
    q = "blocks.0.attn.qkv.weight"
    old = state.params[q].view(3, 16, 16)
    new = grown.params[q].view(3, 32, 32)
    assert torch.equal(new[:, :16, :16], old)
    assert torch.equal(grown.exp_avg[q].view(3, 32, 32)[:, :16, :16], state.exp_avg[q].view(3, 16, 16))
    assert grown.exp_avg[q].view(3, 32, 32)[:, 16:].abs().sum() == 0
    assert torch.equal(grown.params["blocks.1.ln_1.weight"][16:], torch.ones(16))
    assert torch.equal(grown.params["blocks.1.attn.proj.bias"][16:], torch.zeros(16))
    assert torch.equal(grown.params["blocks.2.mlp.fc_in.weight"], grown.params["blocks.1.mlp.fc_in.weight"])
    assert grown.exp_avg_sq["blocks.2.mlp.fc_in.weight"].abs().sum() == 0
    assert grown.adam_step == 9
    assert torch.equal(grown.params["mlm.bias"], state.params["mlm.bias"])
    assert set(grown.params) == set(state.params) | {
        n.replace("blocks.0.", "blocks.2.") for n in state.params if n.startswith("blocks.0.")
    }
    # determinism
    again, _ = msg_grow(state, "bert", SMALL_DIMS, GROWN_DIMS, seed=1)
    assert all(torch.equal(again.params[n], grown.params[n]) for n in grown.params)
    reset, _ = msg_grow(state, "bert", SMALL_DIMS, replace(SMALL_DIMS, ffn=96), moments="reset")
    assert not reset.exp_avg and reset.adam_step == 0 and reset.params["blocks.0.mlp.fc_in.weight"].shape == (96, 16)


@pytest.mark.parametrize("family", ["bert", "bert-preln", "bert-local", "gpt", "deit"])
def test_model_masks_match_the_reference_forward(family):
    """The real model's ``forward(batch, layer_map, masks)`` is ``msg_forward`` of the same parameters, and at
    mask 0 it is the small model; ``masks=None`` is untouched (the plain grown model, bit for bit)."""
    from megagrow.models import GrowthMasks

    state = small_state(family)
    grown, mm = msg_grow(state, fam(family), SMALL_DIMS, GROWN_DIMS, seed=7)
    b = batch(family)
    model = load(family, grown, **{**WIDE, "n_layers": 3})
    small = logits(load(family, state, **SMALL), b)
    with torch.no_grad():
        for c in (0.0, 0.3, 1.0):
            out = model(b, model.full_layer_map(), mm.growth_masks(c)).logits
            ref = msg_forward(grown.params, fam(family), 4, b, mm, c=c, eps=1e-12, local_bias=local(family))
            assert rel(out, ref) < 1e-5, c
        at0 = model(b, model.full_layer_map(), mm.growth_masks(0.0)).logits
        assert rel(at0, small) < 1e-5
        plain = model(b, model.full_layer_map()).logits
        assert torch.equal(plain, model(b, model.full_layer_map(), None).logits)
        assert rel(model(b, model.full_layer_map(), GrowthMasks()).logits, plain) < 1e-6
        # a layer map that repeats a slot still gets that slot's factor
        lm = [0, 1, 2, 2]
        assert rel(model(b, lm, mm.growth_masks(0.0)).logits, small) < 1e-5
    assert mm.growth_masks(0.5) == mm.growth_masks(0.5) and mm.growth_masks(0.5) != mm.growth_masks(0.4)


def test_models_do_not_import_growth():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "megagrow" / "models"
    for f in root.glob("*.py"):
        for line in f.read_text().splitlines():
            assert not (line.lstrip().startswith(("import ", "from ")) and "megagrow.growth" in line), (f, line)
