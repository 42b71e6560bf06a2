"""FLOPs formula: hand-computed cases and an exact cross-check against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from megagrow.flops import Arch, deit_seq_len, forward_flops, train_flops
from megagrow.models import SIZES, ModelConfig, build_model

# d=4, f=16: per token per layer the matmuls are 2·(4·16 + 2·4·16) = 384 forward FLOPs.
GPT = Arch(family="gpt", hidden=4, n_heads=2, ffn=16, vocab_size=10)
BERT = Arch(family="bert", hidden=4, n_heads=2, ffn=16, vocab_size=10)
DEIT = Arch(
    family="deit",
    hidden=4,
    n_heads=2,
    ffn=16,
    vocab_size=0,
    num_classes=3,
    patch_size=2,
    in_chans=1,
    n_prefix_tokens=2,
)


def test_hand_computed_gpt() -> None:
    # T=3: attention 4·4·3 = 48 -> 432 per token per layer; x 3 tokens x 2 layers = 2592.
    # LM head: 2·4·10 = 80 per position x 3 = 240. Forward 2832, training 3x.
    assert forward_flops(GPT, depth=2, batch_size=1, seq_len=3, n_predictions=3) == 2832
    assert train_flops(GPT, depth=2, batch_size=1, seq_len=3, n_predictions=3) == 8496


def test_hand_computed_bert() -> None:
    # Same blocks (2592); MLM head 2·(4·4 + 4·10) = 112 per masked position, one masked position.
    assert train_flops(BERT, depth=2, batch_size=1, seq_len=3, n_predictions=1) == 3 * (2592 + 112)
    # Two samples, five masked positions: blocks scale with B, the head with the masked count.
    assert train_flops(BERT, depth=2, batch_size=2, seq_len=3, n_predictions=5) == 3 * (2 * 2592 + 5 * 112)


def test_hand_computed_deit() -> None:
    # 4x4 image, patch 2 -> 4 patches + 2 prefix tokens = 6 tokens.
    assert deit_seq_len(image_size=4, patch_size=2, n_prefix=2) == 6
    # Per token per layer 384 + 4·4·6 = 480, x 6 tokens = 2880; heads 2·4·3 x 2 predictions = 48;
    # patch embedding 2·(1·2·2)·4 = 32 per patch x 4 = 128, trained at 2x (no image gradient).
    assert forward_flops(DEIT, depth=1, batch_size=1, seq_len=6, n_predictions=2) == 2880 + 48 + 128
    assert train_flops(DEIT, depth=1, batch_size=1, seq_len=6, n_predictions=2) == 3 * (2880 + 48) + 2 * 128


def test_paper_scale_sanity() -> None:
    """GPT-2 124M at T=1024: ~6·N + 12·L·d·T per token, N = non-embedding + tied head parameters."""
    arch = Arch(family="gpt", hidden=768, n_heads=12, ffn=3072, vocab_size=50257)
    per_token = train_flops(arch, depth=12, batch_size=1, seq_len=1024, n_predictions=1024) / 1024
    n_matmul = 12 * 12 * 768**2 + 768 * 50257
    assert per_token == 6 * n_matmul + 12 * 12 * 768 * 1024
    assert deit_seq_len(224, 16, 2) == 198


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="depth=0"):
        train_flops(GPT, depth=0, batch_size=1, seq_len=3, n_predictions=3)
    with pytest.raises(ValueError, match="n_predictions=-1"):
        train_flops(GPT, depth=1, batch_size=1, seq_len=3, n_predictions=-1)
    with pytest.raises(ValueError, match="not divisible"):
        deit_seq_len(30, 4, 1)
    with pytest.raises(ValueError, match="Arch.family='t5'"):
        Arch(family="t5", hidden=4, n_heads=1, ffn=4, vocab_size=1)


# ---------------------------------------------------------------- cross-check with FlopCounterMode

BATCH, SEQ, VOCAB = 2, 32, 1000


def tiny_model(family: str):
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**SIZES[f"{family}-tiny"], "n_layers": 3, "vocab_size": VOCAB}))


def tiny_batch(family: str, cfg: ModelConfig, padded: bool = False) -> tuple[dict, int]:
    """A batch and its sequence length as seen by the blocks."""
    g = torch.Generator().manual_seed(0)
    if family == "deit":
        images = torch.randn(BATCH, cfg.in_chans, cfg.image_size, cfg.image_size, generator=g)
        batch = {"images": images, "labels": torch.randint(0, cfg.num_classes, (BATCH,), generator=g)}
        return batch, deit_seq_len(cfg.image_size, cfg.patch_size, cfg.n_prefix_tokens)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    labels = ids.clone()
    if family == "bert":
        labels[:, 3:] = -100
        labels[1, 10] = ids[1, 10]  # 3 + 4 = 7 masked positions
    batch = {"input_ids": ids, "labels": labels}
    if padded:
        batch["attention_mask"] = torch.ones(BATCH, SEQ, dtype=torch.long)
        batch["attention_mask"][0, 20:] = 0
    return batch, SEQ


def measure(model, batch: dict, layer_map: list[int]) -> tuple[int, int]:
    """(FLOPs counted by FlopCounterMode over forward + backward, n_predictions)."""
    with FlopCounterMode(display=False) as counter:
        out = model(batch, layer_map)
        out.loss.backward()
    return counter.get_total_flops(), out.n_predictions


@pytest.mark.parametrize("family", ["gpt", "bert", "deit"])
@pytest.mark.parametrize("layer_map", [[0, 1, 2], [0, 0, 1], [2, 2, 0, 0, 1]], ids=str)
def test_matches_flop_counter(family: str, layer_map: list[int]) -> None:
    """Exact agreement (tolerance 0) when attention runs on the math path, which the counter sees."""
    model = tiny_model(family)
    batch, seq_len = tiny_batch(family, model.cfg)
    with sdpa_kernel(SDPBackend.MATH):
        measured, n_predictions = measure(model, batch, layer_map)
    if family == "bert":
        assert n_predictions == 7
    predicted = train_flops(model.arch(), len(layer_map), BATCH, seq_len, n_predictions)
    ratio = measured / predicted
    print(f"\n{family} {layer_map}: FlopCounterMode {measured:,} / train_flops {predicted:,} = {ratio}")
    assert measured == predicted


def test_bert_padded_batch_matches_flop_counter() -> None:
    """Padding is not discounted: padded positions run through the blocks like any other."""
    model = tiny_model("bert")
    batch, seq_len = tiny_batch("bert", model.cfg, padded=True)
    with sdpa_kernel(SDPBackend.MATH):
        measured, n_predictions = measure(model, batch, [0, 1])
    assert measured == train_flops(model.arch(), 2, BATCH, seq_len, n_predictions)


def test_cpu_default_sdpa_is_invisible_to_the_counter() -> None:
    """torch 2.13 quirk (see megagrow.flops): the default CPU SDPA kernel has no flop formula, so the
    counter misses exactly the 12·d·T attention term. If this fails, torch started counting it."""
    model = tiny_model("gpt")
    batch, seq_len = tiny_batch("gpt", model.cfg)
    measured, n_predictions = measure(model, batch, [0, 1])
    attention = 2 * BATCH * seq_len * 12 * model.cfg.hidden * seq_len
    assert measured == train_flops(model.arch(), 2, BATCH, seq_len, n_predictions) - attention
