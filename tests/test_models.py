"""Models: shapes, the layer registry (layer maps, weight sharing), names, sizes, config validation."""

from __future__ import annotations

import copy

import pytest
import torch

from megagrow.models import SIZES, ModelConfig, ModelOutput, build_model

VOCAB = 50
SMALL = {"n_layers": 3, "hidden": 32, "n_heads": 2, "vocab_size": VOCAB, "max_seq_len": 16}
FAMILIES = ("bert", "gpt", "deit")


def small_cfg(family: str, **overrides: object) -> ModelConfig:
    deit = {"image_size": 8, "patch_size": 4, "in_chans": 3, "num_classes": 5} if family == "deit" else {}
    return ModelConfig(family=family, **{**SMALL, **deit, **overrides})


def make_batch(cfg: ModelConfig, batch_size: int = 3, seq_len: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    if cfg.family == "deit":
        images = torch.randn(batch_size, cfg.in_chans, cfg.image_size, cfg.image_size, generator=g)
        return {"images": images, "labels": torch.randint(0, cfg.num_classes, (batch_size,), generator=g)}
    ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), generator=g)
    labels = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), generator=g)
    if cfg.family == "bert":
        labels[:, 1::3] = -100  # a known pattern: positions 1, 4, 7 are not predicted
        labels[:, 0::3] = -100
    return {"input_ids": ids, "labels": labels}


def model_for(family: str, seed: int = 0, **overrides: object):
    torch.manual_seed(seed)
    return build_model(small_cfg(family, **overrides))


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("family", FAMILIES)
def test_output_shapes(family: str) -> None:
    model = model_for(family)
    batch = make_batch(model.cfg)
    out = model(batch, model.full_layer_map())
    assert isinstance(out, ModelOutput)
    assert out.loss.shape == () and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    expected = {
        "gpt": ((3, 8, VOCAB), 3 * 8),
        "bert": ((3 * 2, VOCAB), 3 * 2),  # positions 2 and 5 of each row are masked
        "deit": ((3, 5), 3 * 2),  # class + distillation head
    }[family]
    assert tuple(out.logits.shape) == expected[0]
    assert out.n_predictions == expected[1]


def test_vit_without_distillation_token() -> None:
    model = model_for("deit", distill_token=False)
    out = model(make_batch(model.cfg), [0])
    assert out.n_predictions == 3 and tuple(out.logits.shape) == (3, 5)
    assert model.pos_embed.shape == (1, 4 + 1, 32)
    assert not any("dist" in n for n, _ in model.named_parameters())


def test_deit_casts_images_to_weight_dtype() -> None:
    model = model_for("deit").to(torch.bfloat16)
    out = model(make_batch(model.cfg), [0, 1])
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32


def test_bert_token_types_and_padding_mask() -> None:
    """Pad tokens behind an attention mask do not change the loss of the real tokens."""
    model = model_for("bert").eval()
    batch = make_batch(model.cfg, seq_len=6)
    batch["token_type_ids"] = torch.tensor([[0, 0, 0, 1, 1, 1]] * 3)
    ref = model(batch, [0, 1, 2])
    padded = {
        "input_ids": torch.cat([batch["input_ids"], torch.zeros(3, 2, dtype=torch.long)], dim=1),
        "token_type_ids": torch.cat([batch["token_type_ids"], torch.zeros(3, 2, dtype=torch.long)], dim=1),
        "labels": torch.cat([batch["labels"], torch.full((3, 2), -100)], dim=1),
        "attention_mask": torch.cat([torch.ones(3, 6), torch.zeros(3, 2)], dim=1).long(),
    }
    out = model(padded, [0, 1, 2])
    torch.testing.assert_close(out.loss, ref.loss)
    assert out.n_predictions == ref.n_predictions
    unmasked = model(dict(padded, attention_mask=None), [0, 1, 2])
    assert not torch.allclose(unmasked.logits, ref.logits)


def test_gpt_is_causal() -> None:
    model = model_for("gpt").eval()
    batch = make_batch(model.cfg)
    changed = dict(batch, input_ids=batch["input_ids"].clone())
    changed["input_ids"][:, 5:] = (changed["input_ids"][:, 5:] + 1) % VOCAB
    a, b = model(batch, [0, 1]).logits, model(changed, [0, 1]).logits
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_sequence_longer_than_positions_raises() -> None:
    model = model_for("gpt")
    with pytest.raises(ValueError, match="max_seq_len=16"):
        model(make_batch(model.cfg, seq_len=17), [0])


def test_missing_batch_key_raises() -> None:
    model = model_for("deit")
    with pytest.raises(KeyError, match="images"):
        model({"labels": torch.zeros(2, dtype=torch.long)}, [0])


def test_bert_without_masked_positions_has_zero_loss() -> None:
    model = model_for("bert")
    batch = make_batch(model.cfg)
    batch["labels"].fill_(-100)
    out = model(batch, [0])
    assert out.n_predictions == 0 and out.loss.item() == 0.0
    out.loss.backward()  # still attached to the graph (every rank must be able to run backward)


# ---------------------------------------------------------------- the layer registry


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_slot_accumulates_gradients(family: str) -> None:
    """Map [0, 0] == two distinct slots holding identical weights, with their gradients summed."""
    shared = model_for(family)
    twin = copy.deepcopy(shared)
    twin.blocks[1].load_state_dict(twin.blocks[0].state_dict())
    batch = make_batch(shared.cfg)
    out_shared, out_twin = shared(batch, [0, 0]), twin(batch, [0, 1])
    torch.testing.assert_close(out_shared.loss, out_twin.loss)
    out_shared.loss.backward()
    out_twin.loss.backward()
    twin_0, twin_1 = twin.blocks[0].parameters(), twin.blocks[1].parameters()
    for (name, p), p0, p1 in zip(shared.blocks[0].named_parameters(), twin_0, twin_1, strict=True):
        torch.testing.assert_close(p.grad, p0.grad + p1.grad, msg=name)
    assert all(p.grad is None for p in shared.blocks[1].parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_short_map_runs_only_its_slots(family: str) -> None:
    model = model_for(family)
    model(make_batch(model.cfg), [1]).loss.backward()
    for k, block in enumerate(model.blocks):
        grads = [p.grad for p in block.parameters()]
        assert all(g is None for g in grads) if k != 1 else all(g is not None for g in grads)


def test_long_map_with_repeats_runs() -> None:
    model = model_for("gpt")
    out = model(make_batch(model.cfg), [0, 0, 0, 1, 1, 2, 2])
    assert torch.isfinite(out.loss)


def test_registry_helpers() -> None:
    model = model_for("bert")
    assert model.n_slots == 3 and model.full_layer_map() == [0, 1, 2]
    arch = model.arch()
    assert (arch.family, arch.hidden, arch.ffn, arch.vocab_size) == ("bert", 32, 128, VOCAB)
    deit = model_for("deit").arch()
    assert (deit.num_classes, deit.patch_size, deit.in_chans, deit.n_prefix_tokens) == (5, 4, 3, 2)


@pytest.mark.parametrize(
    ("layer_map", "message"),
    [
        ([], "layer_map is empty"),
        ([0, 3], r"layer_map\[1\]=3 is out of range: this model has 3 slots \(valid 0..2\)"),
        ([-1], r"layer_map\[0\]=-1 is out of range"),
        ([0, 1.5], r"layer_map\[1\]=1.5 is not an integer slot index"),
        ([True], r"layer_map\[0\]=True is not an integer slot index"),
        ("01", "must be a sequence of slot indices"),
        (None, "must be a sequence of slot indices"),
    ],
)
def test_invalid_layer_map_raises(layer_map: object, message: str) -> None:
    model = model_for("gpt")
    with pytest.raises(ValueError, match=message):
        model(make_batch(model.cfg), layer_map)


def test_layer_map_accepts_ranges_and_tuples() -> None:
    model = model_for("gpt").eval()
    batch = make_batch(model.cfg)
    ref = model(batch, [0, 1, 2]).loss
    torch.testing.assert_close(model(batch, range(3)).loss, ref)
    torch.testing.assert_close(model(batch, (0, 1, 2)).loss, ref)


# ---------------------------------------------------------------- names, tying, init

BLOCK_NAMES = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.fc_in.weight",
    "mlp.fc_in.bias",
    "mlp.fc_out.weight",
    "mlp.fc_out.bias",
]


def block_names(k_slots: int) -> set[str]:
    return {f"blocks.{k}.{n}" for k in range(k_slots) for n in BLOCK_NAMES}


EXPECTED_NAMES = {
    "gpt": {"embed.tokens.weight", "embed.positions.weight", "final_ln.weight", "final_ln.bias"},
    "bert": {
        "embed.tokens.weight",
        "embed.positions.weight",
        "embed.token_types.weight",
        "embed.ln.weight",
        "embed.ln.bias",
        "mlm.dense.weight",
        "mlm.dense.bias",
        "mlm.ln.weight",
        "mlm.ln.bias",
        "mlm.bias",
    },
    "deit": {
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "cls_token",
        "dist_token",
        "pos_embed",
        "final_ln.weight",
        "final_ln.bias",
        "head.weight",
        "head.bias",
        "head_dist.weight",
        "head_dist.bias",
    },
}


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_names(family: str) -> None:
    model = model_for(family)
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_NAMES[family] | block_names(3)
    assert set(model.state_dict()) == set(names)  # no buffers, no second copy of a tied weight


def test_qkv_shapes() -> None:
    block = model_for("gpt").blocks[0]
    assert block.attn.qkv.weight.shape == (3 * 32, 32)
    assert block.mlp.fc_in.weight.shape == (128, 32) and block.mlp.fc_out.weight.shape == (32, 128)


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_output_projection_is_tied_to_token_embedding(family: str) -> None:
    """Tokens absent from the input get embedding gradient only through the (tied) output projection."""
    model = model_for(family)
    batch = make_batch(model.cfg)
    batch["input_ids"] = batch["input_ids"] % 10  # tokens 10.. never appear in the input
    model(batch, [0]).loss.backward()
    grad = model.embed.tokens.weight.grad
    assert grad[10:].abs().sum() > 0
    vocab_by_hidden = [n for n, p in model.named_parameters() if p.shape == (VOCAB, 32)]
    assert vocab_by_hidden == ["embed.tokens.weight"]


def test_init() -> None:
    torch.manual_seed(0)
    gpt = build_model(ModelConfig(family="gpt", n_layers=8, hidden=256, n_heads=4, vocab_size=100))
    block = gpt.blocks[0]
    assert abs(block.attn.qkv.weight.std().item() - 0.02) < 1e-3
    assert abs(block.attn.proj.weight.std().item() - 0.02 / 4) < 3e-4  # 0.02 / sqrt(2 * 8)
    assert abs(block.mlp.fc_out.weight.std().item() - 0.02 / 4) < 3e-4
    assert torch.all(block.attn.qkv.bias == 0) and torch.all(block.ln_1.weight == 1)
    bert = model_for("bert", hidden=256, n_heads=4)
    assert abs(bert.blocks[0].attn.proj.weight.std().item() - 0.02) < 1e-3
    assert torch.all(bert.mlm.bias == 0)


# ---------------------------------------------------------------- sizes


def param_count(name: str, vocab_size: int = 0) -> int:
    cfg = ModelConfig(**{**SIZES[name], "vocab_size": vocab_size})
    assert cfg.validate() == []
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def test_named_sizes_exist_and_are_valid() -> None:
    expected = {"bert-small", "bert-base", "bert-large", "gpt-small", "gpt-base", "deit-s", "deit-b"}
    assert expected | {"bert-tiny", "gpt-tiny", "deit-tiny"} <= set(SIZES)
    for name, preset in SIZES.items():
        assert "family" in preset and name.startswith(str(preset["family"]))
        assert ModelConfig(**{**preset, "vocab_size": 1000}).validate() == [], name
    for name in ("bert-tiny", "gpt-tiny", "deit-tiny"):
        cfg = ModelConfig(**SIZES[name])
        assert cfg.n_layers == 12 and 128 <= cfg.hidden <= 256 and cfg.dropout == 0.0


def test_paper_parameter_counts() -> None:
    assert param_count("bert-base", 30522) == 109_514_298  # HF BertForMaskedLM (no pooler), ~110M
    assert param_count("bert-large", 30522) == 335_174_458  # ~335M
    assert param_count("gpt-base", 50257) == 124_439_808  # HF GPT2LMHeadModel "gpt2"
    assert param_count("deit-b") == 87_338_192  # timm deit_base_distilled_patch16_224, 87.3M
    assert param_count("deit-s") == 22_436_432  # timm deit_small_distilled_patch16_224, 22.4M


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden": 250}, "model.hidden=250: must be divisible by model.n_heads=4"),
        ({"family": "t5"}, "model.family='t5': must be one of bert, gpt, deit"),
        ({"n_layers": 0}, "model.n_layers=0: must be a positive integer"),
        ({"ffn": -1}, "model.ffn=-1: must be >= 0"),
        ({"dropout": 1.0}, "model.dropout=1.0: must be in [0, 1)"),
        ({"attn_dropout": -0.1}, "model.attn_dropout=-0.1: must be in [0, 1)"),
        ({"ln_eps": 0.0}, "model.ln_eps=0.0: must be > 0"),
        ({"size": "gpt-huge"}, "model.size='gpt-huge': unknown preset"),
        ({"family": "deit", "patch_size": 5}, "model.patch_size=5: must divide model.image_size=32"),
        ({"family": "deit", "num_classes": 0}, "model.num_classes=0: must be a positive integer"),
        ({"family": "bert", "type_vocab_size": 0}, "model.type_vocab_size=0: must be >= 1 for bert"),
        ({"family": "gpt", "bert_pre_ln": True}, "model.bert_pre_ln=true: only for family bert"),
        ({"family": "gpt", "attn_local_bias": 0.5}, "model.attn_local_bias=0.5: only for family bert"),
        ({"family": "bert", "attn_local_bias": -1.0}, "model.attn_local_bias=-1.0: must be >= 0"),
    ],
)
def test_validate_messages(overrides: dict, message: str) -> None:
    problems = ModelConfig(**overrides).validate()
    assert any(p.startswith(message) for p in problems), problems


def test_config_defaults_and_help() -> None:
    cfg = ModelConfig()
    assert cfg.validate() == [] and cfg.ffn_dim == 4 * cfg.hidden
    assert ModelConfig(ffn=300).ffn_dim == 300
    for f in ModelConfig.__dataclass_fields__.values():
        assert f.metadata.get("help"), f.name


def test_bert_pre_ln_is_pre_ln_with_a_final_layernorm() -> None:
    """``model.bert_pre_ln``: every block pre-LN, a final LayerNorm before the MLM head, GPT-2's residual init;
    the same parameters otherwise, so the two differ only in where the LayerNorms sit."""
    post, pre = model_for("bert"), model_for("bert", bert_pre_ln=True)
    assert all(not b.pre_ln for b in post.blocks) and all(b.pre_ln for b in pre.blocks)
    assert post.final_ln is None and isinstance(pre.final_ln, torch.nn.LayerNorm)
    assert set(dict(pre.named_parameters())) - set(dict(post.named_parameters())) == {"final_ln.weight",
                                                                                       "final_ln.bias"}
    batch = make_batch(small_cfg("bert"))
    pre.load_state_dict({**post.state_dict(), "final_ln.weight": torch.ones(32), "final_ln.bias": torch.zeros(32)})
    with torch.no_grad():
        a, b = post(batch, post.full_layer_map()), pre(batch, pre.full_layer_map())
    assert a.logits.shape == b.logits.shape and not torch.allclose(a.logits, b.logits)
    # the pre-LN forward by hand: blocks as GPT's, then final_ln, then the MLM head
    with torch.no_grad():
        x = pre.embed(batch["input_ids"], batch.get("token_type_ids"))
        for block in pre.blocks:
            x = x + block.attn(block.ln_1(x), None)
            x = x + block.mlp(block.ln_2(x))
        h = pre.final_ln(x)[batch["labels"] != -100]
        ref = pre.mlm(h, pre.embed.tokens.weight)
    torch.testing.assert_close(b.logits, ref)


def test_bert_attention_local_bias() -> None:
    """``model.attn_local_bias`` m: every head's logits get -m * |i - j| (padded keys still never attended);
    m = 0 is the original BERT bit for bit, the same parameters either way."""
    torch.manual_seed(0)
    cfg = small_cfg("bert")
    batch = {**make_batch(cfg, seq_len=10), "attention_mask": torch.ones(3, 10, dtype=torch.long)}
    batch["attention_mask"][1, 7:] = 0
    plain = model_for("bert")
    local = model_for("bert", attn_local_bias=0.7)
    local.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(batch, plain.full_layer_map()).logits, local(batch, local.full_layer_map()).logits
        assert torch.equal(a, model_for("bert", attn_local_bias=0.0)(batch, plain.full_layer_map()).logits)
        assert not torch.allclose(a, b)
        # by hand: the same blocks with the bias added to the attention logits
        seen = []

        def capture(mod, args, kwargs):
            seen.append(args[1] if len(args) > 1 else kwargs.get("attn_mask"))

        hook = local.blocks[0].attn.register_forward_pre_hook(capture, with_kwargs=True)
        local(batch, [0])
        hook.remove()
        bias = seen[0]
        assert bias.shape == (3, 1, 10, 10) and bias.dtype == torch.float32
        assert bias[0, 0, 2, 5] == -0.7 * 3 and bias[0, 0, 4, 4] == 0
        assert torch.isinf(bias[1, 0, :, 7:]).all() and torch.isfinite(bias[1, 0, :, :7]).all()
        # padded tokens do not change the outputs of the real ones
        other = {**batch, "input_ids": batch["input_ids"].clone()}
        other["input_ids"][1, 7:] = (other["input_ids"][1, 7:] + 1) % VOCAB
        where = (batch["labels"] != -100).nonzero()  # the logits' rows: (sequence, position) in row-major order
        real = ~((where[:, 0] == 1) & (where[:, 1] >= 7))
        assert ((where[:, 0] == 1) & real).sum() == 2  # row 1's predicted real positions 2 and 5 are compared
        torch.testing.assert_close(local(other, local.full_layer_map()).logits[real], b[real])


def test_build_model_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="model.vocab_size=0: must be set for bert/gpt"):
        build_model(ModelConfig(family="gpt"))
    with pytest.raises(ValueError, match="model.hidden=30"):
        build_model(ModelConfig(family="gpt", hidden=30, vocab_size=10))
    assert build_model(ModelConfig(family="deit", n_layers=1, hidden=32)).n_slots == 1


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("family", FAMILIES)
def test_adamw_reduces_loss(family: str) -> None:
    model = model_for(family)
    batch = make_batch(model.cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(20):
        out = model(batch, [0, 1, 2] if step % 2 else [0, 0])  # full depth and a shared-slot map
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    final = model(batch, [0, 1, 2]).loss.item()
    assert final < 0.5 * losses[0], losses
