"""Multi-Level operators (megagrow.growth.ops.multilevel): exact round trips, function preservation,
interpolation and optimizer-moment mapping, on states of real ``build_model`` instances.

Deviations are relative max-abs: ``max|a - b| / max|b|``. Run with ``-s`` to see the measured values.
"""

from __future__ import annotations

import pytest
import torch

from megagrow.growth.ops.grouping import Grouping, apply_axis, pair_grouping
from megagrow.growth.ops.multilevel import (
    coalesce,
    coalesce_depth,
    coalesce_width,
    decoalesce,
    decoalesce_depth,
    decoalesce_width,
    depth_layer_map,
    interpolate,
)
from megagrow.models import ModelConfig, build_model
from megagrow.models.dims import Dims
from megagrow.state import FullState

FINE = dict(n_layers=4, hidden=32, n_heads=4, ffn=128)
COARSE = dict(n_layers=2, hidden=16, n_heads=2, ffn=64)
FINE_DIMS, COARSE_DIMS = Dims(**FINE), Dims(**COARSE)


def fam(family: str) -> str:
    """The model family of a test id: ``bert-preln`` is BERT with ``model.bert_pre_ln``, ``bert-local`` BERT with
    ``model.attn_local_bias``."""
    return "bert" if family.startswith("bert") else family


def cfg(family: str, **kw) -> ModelConfig:
    base = dict(family=fam(family), bert_pre_ln=family == "bert-preln",
                attn_local_bias=0.5 if family == "bert-local" else 0.0,
                vocab_size=64, max_seq_len=16, image_size=16, patch_size=4, num_classes=10)
    base.update(kw)
    return ModelConfig(**base)


def random_state(family: str, seed: int = 0, moments: bool = False, **kw) -> FullState:
    """A model's state with every parameter perturbed (so LN/bias are not trivially 1/0)."""
    torch.manual_seed(seed)
    model = build_model(cfg(family, **kw))
    g = torch.Generator().manual_seed(seed + 1)
    params = {n: (p.detach().float() + 0.05 * torch.randn(p.shape, generator=g)).clone()
              for n, p in model.named_parameters()}
    state = FullState(params=params)
    if moments:
        state.exp_avg = {n: 1e-3 * torch.randn(p.shape, generator=g) for n, p in params.items()}
        state.exp_avg_sq = {n: 1e-6 * torch.rand(p.shape, generator=g) for n, p in params.items()}
        state.adam_step = 17
    return state


def shapes_of(family: str, **kw) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(cfg(family, **kw))
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def load(family: str, state: FullState, **kw):
    model = build_model(cfg(family, **kw)).eval()
    model.load_state_dict(state.params, strict=True)
    return model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def batch(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if family == "deit":
        return {"images": torch.randn(3, 3, 16, 16, generator=g), "labels": torch.tensor([1, 2, 3])}
    ids = torch.randint(0, 64, (2, 16), generator=g)
    labels = torch.full_like(ids, -100)
    if fam(family) == "bert":
        labels[:, ::3] = ids[:, ::3]  # some masked positions
        mask = torch.ones_like(ids)
        mask[1, 12:] = 0  # padding on the second row
        return {"input_ids": ids, "labels": labels, "attention_mask": mask,
                "token_type_ids": (torch.arange(16) >= 8).long().expand(2, 16).contiguous()}
    labels[:, :-1] = ids[:, 1:]
    return {"input_ids": ids, "labels": labels}


def logits(family: str, state: FullState, layer_map=None, **kw) -> torch.Tensor:
    model = load(family, state, **kw)
    with torch.no_grad():
        return model(batch(family), layer_map if layer_map is not None else model.full_layer_map()).logits


def assert_states_equal(a: FullState, b: FullState, exact_sq: bool = True) -> None:
    assert a.params.keys() == b.params.keys()
    for n in a.params:
        assert torch.equal(a.params[n], b.params[n]), n
    assert a.exp_avg.keys() == b.exp_avg.keys()
    for n in a.exp_avg:
        assert torch.equal(a.exp_avg[n], b.exp_avg[n]), n
    assert a.exp_avg_sq.keys() == b.exp_avg_sq.keys()
    for n in a.exp_avg_sq:
        if exact_sq:
            assert torch.equal(a.exp_avg_sq[n], b.exp_avg_sq[n]), n
        else:  # sqrt -> map -> square: measured <= 1 ulp (relative error <= float32 eps)
            torch.testing.assert_close(a.exp_avg_sq[n], b.exp_avg_sq[n], rtol=torch.finfo(torch.float32).eps, atol=0)
    assert a.adam_step == b.adam_step


# ---------------------------------------------------------------------------------------- groupings


def test_grouping_matrices() -> None:
    for pairing in ("half", "adjacent"):
        grp = pair_grouping(8, pairing)
        a, s = grp.average_matrix(), grp.merge_matrix()
        assert torch.equal(a @ s.T, torch.eye(4, dtype=torch.float64))
        x = torch.randn(8, 3, dtype=torch.float64)
        assert torch.allclose(apply_axis(x, 0, grp, "avg"), a @ x)
        assert torch.allclose(apply_axis(x, 0, grp, "sum"), s @ x)
        y = torch.randn(4, 3, dtype=torch.float64)
        assert torch.allclose(apply_axis(y, 0, grp, "dup"), s.T @ y)
        assert torch.allclose(apply_axis(y, 0, grp, "split"), a.T @ y)
    assert pair_grouping(6, "half").group_of == (0, 1, 2, 0, 1, 2)
    assert pair_grouping(6, "adjacent").group_of == (0, 0, 1, 1, 2, 2)
    # heads j <-> j + H/2 as blocks of head_dim channels
    assert pair_grouping(4, "half").expand(2).group_of == (0, 1, 2, 3, 0, 1, 2, 3)
    assert pair_grouping(4, "adjacent").expand(2).group_of == (0, 1, 0, 1, 2, 3, 2, 3)
    with pytest.raises(ValueError):
        pair_grouping(5)
    with pytest.raises(ValueError):
        Grouping((0, 2), 2)
    assert depth_layer_map(3, "adjacent") == [0, 0, 1, 1, 2, 2]
    assert depth_layer_map(3, "half") == [0, 1, 2, 0, 1, 2]


# ------------------------------------------------------------------------------ exact round trips


@pytest.mark.parametrize("family_id", ["bert", "bert-preln", "gpt", "deit"])
@pytest.mark.parametrize("width_pairing", ["half", "adjacent"])
@pytest.mark.parametrize("depth_pairing", ["adjacent", "half"])
def test_round_trip_exact(family_id: str, width_pairing: str, depth_pairing: str) -> None:
    """coalesce(decoalesce(θ')) == θ' bit for bit (torch.equal): width, depth and both; moments mapped."""
    coarse = random_state(family_id, moments=True, **COARSE)
    family = fam(family_id)
    kw = dict(pairing=width_pairing, moments="map")
    fine_w = decoalesce_width(coarse, family, COARSE_DIMS, **kw)
    fine_w.check_against(shapes_of(family_id, **{**COARSE, **{k: FINE[k] for k in ("hidden", "n_heads", "ffn")}}), "w")
    assert_states_equal(coalesce_width(fine_w, family, FINE_DIMS, **kw), coarse, exact_sq=False)

    fine_d = decoalesce_depth(coarse, 2, depth_pairing, moments="map")
    fine_d.check_against(shapes_of(family_id, **{**COARSE, "n_layers": 4}), "d")
    assert_states_equal(coalesce_depth(fine_d, 4, depth_pairing, moments="map"), coarse, exact_sq=False)

    both = dict(width_pairing=width_pairing, depth_pairing=depth_pairing, moments="map")
    fine = decoalesce(coarse, family, COARSE_DIMS, **both)
    fine.check_against(shapes_of(family_id, **FINE), "both")
    assert_states_equal(coalesce(fine, family, FINE_DIMS, **both), coarse, exact_sq=False)
    # params-only round trip with the default moments="reset"
    back = coalesce(decoalesce(coarse, family, COARSE_DIMS), family, FINE_DIMS)
    assert all(torch.equal(back.params[n], coarse.params[n]) for n in coarse.params)
    if family == "gpt":
        opt = dict(gpt_residual_scale=True)
        back = coalesce(decoalesce(coarse, family, COARSE_DIMS, **opt), family, FINE_DIMS, **opt)
        assert all(torch.equal(back.params[n], coarse.params[n]) for n in coarse.params)


@pytest.mark.parametrize("family", ["bert", "gpt", "deit"])
def test_coalesce_shapes_and_values(family: str) -> None:
    fine = random_state(family, **FINE)
    coarse = coalesce(fine, family, FINE_DIMS)
    coarse.check_against(shapes_of(family, **COARSE), "coalesce")
    p, c = fine.params, coarse.params
    # adjacent depth pairing + [I|I] width pairing, checked by hand on a few entries
    qkv = p["blocks.0.attn.qkv.weight"], p["blocks.1.attn.qkv.weight"]
    w = [(q[32 + 3, 5] + q[32 + 3 + 16, 5] + q[32 + 3, 5 + 16] + q[32 + 3 + 16, 5 + 16]) / 2 for q in qkv]  # K row 3
    torch.testing.assert_close(c["blocks.0.attn.qkv.weight"][16 + 3, 5], (w[0] + w[1]) / 2)
    fc_out = p["blocks.2.mlp.fc_out.weight"], p["blocks.3.mlp.fc_out.weight"]
    w = [(f[1, 7] + f[1, 7 + 64] + f[17, 7] + f[17, 7 + 64]) / 2 for f in fc_out]
    torch.testing.assert_close(c["blocks.1.mlp.fc_out.weight"][1, 7], (w[0] + w[1]) / 2)
    ln = p["blocks.0.ln_1.weight"], p["blocks.1.ln_1.weight"]
    torch.testing.assert_close(c["blocks.0.ln_1.weight"][2], (ln[0][2] + ln[0][18] + ln[1][2] + ln[1][18]) / 4)
    if family in ("bert", "gpt"):
        e = p["embed.tokens.weight"]
        torch.testing.assert_close(c["embed.tokens.weight"][:, 3], e[:, 3] + e[:, 19])  # averaged x 2
    if family == "bert":
        assert torch.equal(c["mlm.bias"], p["mlm.bias"])
    if family == "deit":
        h = p["head.weight"]
        torch.testing.assert_close(c["head.weight"], h[:, :16] + h[:, 16:])
        assert torch.equal(c["head.bias"], p["head.bias"])
        torch.testing.assert_close(c["pos_embed"], (p["pos_embed"][..., :16] + p["pos_embed"][..., 16:]) / 2)


def test_moments_reset_default_and_map_keeps_step() -> None:
    fine = random_state("bert", moments=True, **FINE)
    reset = coalesce(fine, "bert", FINE_DIMS)
    assert reset.exp_avg == {} and reset.exp_avg_sq == {} and reset.adam_step == 0
    mapped = coalesce(fine, "bert", FINE_DIMS, moments="map")
    assert mapped.adam_step == 17 and mapped.exp_avg.keys() == mapped.params.keys()
    assert all((v >= 0).all() for v in mapped.exp_avg_sq.values())
    up = decoalesce(mapped, "bert", COARSE_DIMS, moments="map")
    assert all((v >= 0).all() for v in up.exp_avg_sq.values())


# ------------------------------------------------------------------------ function preservation

EXACT_LN = dict(ln_eps=1e-12)  # the BERT presets' epsilon; the embedding LN sees a 0.5-scaled input


@pytest.mark.parametrize("family_id", ["bert", "bert-preln", "bert-local"])
def test_bert_width_decoalesce_preserves_logits(family_id: str) -> None:
    coarse = random_state(family_id, **COARSE, **EXACT_LN)
    fine = decoalesce_width(coarse, "bert", COARSE_DIMS)
    wide = {**COARSE, "hidden": 32, "n_heads": 4, "ffn": 128}
    ref = logits(family_id, coarse, **COARSE, **EXACT_LN)
    dev = rel(logits(family_id, fine, **wide, **EXACT_LN), ref)
    print(f"\nbert width de-coalesce, ln_eps=1e-12: rel dev {dev:.2e}")
    assert dev <= 1e-5
    dev_eps = rel(logits(family_id, fine, **wide), logits(family_id, coarse, **COARSE))
    print(f"bert width de-coalesce, ln_eps=1e-5 (embedding-LN epsilon effect): rel dev {dev_eps:.2e}")
    for pairing in ("adjacent",):
        fine_a = decoalesce_width(coarse, "bert", COARSE_DIMS, pairing=pairing)
        assert rel(logits(family_id, fine_a, **wide, **EXACT_LN), ref) <= 1e-5


@pytest.mark.parametrize("pairing", ["adjacent", "half"])
def test_bert_depth_decoalesce_equals_coarse_layer_map(pairing: str) -> None:
    """Depth de-coalescing duplicates layers: the fine model = the coarse one run with [0,0,1,1] /
    [0,1,0,1] (exactly the same ops), not the plain coarse model."""
    coarse = random_state("bert", **COARSE, **EXACT_LN)
    fine = decoalesce_depth(coarse, 2, pairing)
    deep = {**COARSE, "n_layers": 4}
    out = logits("bert", fine, **deep, **EXACT_LN)
    dev = rel(out, logits("bert", coarse, depth_layer_map(2, pairing), **COARSE, **EXACT_LN))
    plain = rel(out, logits("bert", coarse, **COARSE, **EXACT_LN))
    print(f"\nbert depth de-coalesce ({pairing}): vs coarse layer map {dev:.2e}; vs plain coarse {plain:.2e}")
    assert dev <= 1e-6
    assert plain > 1e-3  # documented: not the same function as the L/2-layer model


def test_bert_width_and_depth_decoalesce() -> None:
    coarse = random_state("bert", **COARSE, **EXACT_LN)
    fine = decoalesce(coarse, "bert", COARSE_DIMS)
    out = logits("bert", fine, **FINE, **EXACT_LN)
    dev = rel(out, logits("bert", coarse, depth_layer_map(2), **COARSE, **EXACT_LN))
    print(f"\nbert width+depth de-coalesce vs coarse with layer map [0,0,1,1]: rel dev {dev:.2e}")
    assert dev <= 1e-5


def test_bert_coalescing_a_symmetric_model_preserves_function() -> None:
    """A fine model whose paired units / layers are identical (a de-coalesced one) and its coalesced
    model compute the same function (depth: the coarse model run along the coarse layer map)."""
    fine = decoalesce(random_state("bert", seed=3, **COARSE, **EXACT_LN), "bert", COARSE_DIMS)
    fine = FullState(params={n: t.clone() for n, t in fine.params.items()})
    coarse = coalesce(fine, "bert", FINE_DIMS)
    ref = logits("bert", fine, **FINE, **EXACT_LN)
    dev = rel(logits("bert", coarse, depth_layer_map(2), **COARSE, **EXACT_LN), ref)
    print(f"\nbert coalesce of a symmetric fine model (width+depth): rel dev {dev:.2e}")
    assert dev <= 1e-5
    narrow = coalesce_width(fine, "bert", FINE_DIMS)
    dev_w = rel(logits("bert", narrow, **{**FINE, **{k: COARSE[k] for k in ("hidden", "n_heads", "ffn")}},
                       **EXACT_LN), ref)
    print(f"bert coalesce of a symmetric fine model (width only): rel dev {dev_w:.2e}")
    assert dev_w <= 1e-5


def test_gpt_width_decoalesce_not_preserving_unless_residual_scaled() -> None:
    coarse = random_state("gpt", **COARSE, **EXACT_LN)
    wide = {**COARSE, "hidden": 32, "n_heads": 4, "ffn": 128}
    ref = logits("gpt", coarse, **COARSE, **EXACT_LN)
    dev_ref = rel(logits("gpt", decoalesce_width(coarse, "gpt", COARSE_DIMS), **wide, **EXACT_LN), ref)
    fixed = decoalesce_width(coarse, "gpt", COARSE_DIMS, gpt_residual_scale=True)
    dev_fix = rel(logits("gpt", fixed, **wide, **EXACT_LN), ref)
    dev_fix_eps = rel(logits("gpt", fixed, **wide), logits("gpt", coarse, **COARSE))
    print(f"\ngpt width de-coalesce: reference x0.5 embeddings {dev_ref:.2e}; "
          f"gpt_residual_scale {dev_fix:.2e} (ln_eps=1e-12), {dev_fix_eps:.2e} (ln_eps=1e-5)")
    assert dev_ref > 1e-2  # documented non-preservation (notes §1.2, Q4)
    assert dev_fix <= 1e-5


def test_deit_width_decoalesce_preserves_logits() -> None:
    coarse = random_state("deit", **COARSE)
    fine = decoalesce(coarse, "deit", COARSE_DIMS)
    dev = rel(logits("deit", fine, **FINE), logits("deit", coarse, depth_layer_map(2), **COARSE))
    print(f"\ndeit width+depth de-coalesce vs coarse with layer map: rel dev {dev:.2e}")
    assert dev <= 1e-5


def test_width_moment_map_is_the_coarse_gradient() -> None:
    """Coalescing maps exp_avg like a gradient: for a de-coalesced BERT, mapping the fine model's gradient
    gives the coarse model's gradient."""
    coarse = random_state("bert", seed=5, **COARSE, **EXACT_LN)
    fine = decoalesce_width(coarse, "bert", COARSE_DIMS)
    wide = {**COARSE, "hidden": 32, "n_heads": 4, "ffn": 128}

    def grads(state: FullState, **kw) -> dict[str, torch.Tensor]:
        model = load("bert", state, **kw, **EXACT_LN)
        model(batch("bert"), model.full_layer_map()).loss.backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    g_fine, g_coarse = grads(fine, **wide), grads(coarse, **COARSE)
    sq = {n: g * g for n, g in g_fine.items()}
    mapped = coalesce_width(FullState(fine.params, g_fine, sq, adam_step=1), "bert", FINE_DIMS, moments="map")
    worst = max(rel(mapped.exp_avg[n], g_coarse[n]) for n in g_coarse)
    worst_sq = max(rel(mapped.exp_avg_sq[n], g_coarse[n] ** 2) for n in g_coarse)
    print(f"\nwidth moment map vs coarse gradient: exp_avg {worst:.2e}, exp_avg_sq {worst_sq:.2e}")
    assert worst <= 1e-4 and worst_sq <= 1e-4


# -------------------------------------------------------------------------------------- interpolate


def test_interpolate() -> None:
    coarse = random_state("bert", **COARSE)
    dec = decoalesce(coarse, "bert", COARSE_DIMS)
    before = random_state("bert", seed=9, **FINE)
    at0 = interpolate(dec, before, 0.0)
    assert all(torch.equal(at0.params[n], dec.params[n]) for n in dec.params)
    at1 = interpolate(dec, before, 1.0)
    assert all(torch.equal(at1.params[n], before.params[n]) for n in dec.params)
    half = interpolate(dec, before, 0.25)
    at1.check_against(shapes_of("bert", **FINE), "interp")
    for n in dec.params:
        assert half.params[n].shape == dec.params[n].shape
        torch.testing.assert_close(half.params[n], 0.75 * dec.params[n] + 0.25 * before.params[n])
    assert half.exp_avg == {} and half.adam_step == 0
    at0.params["embed.ln.weight"][0] = 123.0  # results are copies, not aliases
    assert dec.params["embed.ln.weight"][0] != 123.0
    with pytest.raises(ValueError):
        interpolate(dec, coarse, 0.5)
    with pytest.raises(ValueError):
        interpolate(dec, before, 1.5)


# ----------------------------------------------------------------------------------------- bad input


def test_bad_input() -> None:
    fine = random_state("bert", **FINE)
    with pytest.raises(ValueError, match="hidden"):
        coalesce_width(fine, "bert", Dims(4, 64, 4, 128))
    with pytest.raises(ValueError, match="family"):
        coalesce_width(fine, "llama", FINE_DIMS)
    with pytest.raises(ValueError, match="moments"):
        coalesce_width(fine, "bert", FINE_DIMS, moments="keep")
    with pytest.raises(ValueError, match="gpt"):
        coalesce_width(fine, "bert", FINE_DIMS, gpt_residual_scale=True)
    with pytest.raises(ValueError, match="unknown"):
        coalesce_width(fine, "gpt", FINE_DIMS)  # bert names are not gpt's
    with pytest.raises(ValueError, match="blocks"):
        coalesce_depth(fine, 6)
    with pytest.raises(ValueError, match="pairing"):
        coalesce_depth(fine, 4, "stack")
    odd = random_state("gpt", n_layers=3, hidden=32, n_heads=4, ffn=128)
    with pytest.raises(ValueError, match="even"):
        coalesce_depth(odd, 3)
    with pytest.raises(ValueError, match="even"):
        coalesce_width(random_state("gpt", n_layers=1, hidden=24, n_heads=3, ffn=96), "gpt", Dims(1, 24, 3, 96))


@pytest.mark.parametrize("family_id", ["gpt", "bert-preln"])
def test_depth_decoalesce_zero_preserves_a_pre_ln_models_function(family_id: str) -> None:
    """``new="zero"``: the second block of each pair writes nothing into the residual stream, so the 2L'-layer
    model computes the plain L'-layer coarse model (with ``"copy"`` it computes the coarse layer map [0,0,1,1])."""
    coarse = random_state(family_id, **COARSE, **EXACT_LN)
    deep = {**COARSE, "n_layers": 4}
    plain = logits(family_id, coarse, **COARSE, **EXACT_LN)
    for pairing in ("adjacent", "half"):
        fine = decoalesce_depth(coarse, 2, pairing, new="zero")
        assert rel(logits(family_id, fine, **deep, **EXACT_LN), plain) <= 1e-6
        copied = decoalesce_depth(coarse, 2, pairing)
        assert rel(logits(family_id, copied, **deep, **EXACT_LN), plain) > 1e-3
        second = 1 if pairing == "adjacent" else 2
        assert not fine.params[f"blocks.{second}.mlp.fc_out.weight"].any()
        assert torch.equal(fine.params[f"blocks.{second}.mlp.fc_in.weight"], coarse.params["blocks.0.mlp.fc_in.weight"])
        assert torch.equal(fine.params["blocks.0.attn.proj.weight"], coarse.params["blocks.0.attn.proj.weight"])


def test_gpt_decoalesce_preserves_the_function_with_zero_depth_and_residual_scale() -> None:
    """Width (``gpt_residual_scale``) and depth (``depth_new="zero"``) together: de-coalescing a pre-LN GPT is
    function preserving (the reference's is not on either axis)."""
    coarse = random_state("gpt", **COARSE, **EXACT_LN)
    ref = logits("gpt", coarse, **COARSE, **EXACT_LN)
    fine = decoalesce(coarse, "gpt", COARSE_DIMS, gpt_residual_scale=True, depth_new="zero")
    dev = rel(logits("gpt", fine, **FINE, **EXACT_LN), ref)
    paper = rel(logits("gpt", decoalesce(coarse, "gpt", COARSE_DIMS), **FINE, **EXACT_LN), ref)
    print(f"\ngpt de-coalesce vs the plain coarse model: zero depth + residual scale {dev:.2e}; paper {paper:.2e}")
    assert dev <= 1e-5 and paper > 1e-2
    with pytest.raises(ValueError, match="new='stack'"):
        decoalesce_depth(coarse, 2, new="stack")
