"""Named model sizes: partial ``ModelConfig`` dicts, applied by the config loader before explicit fields.

The vocabulary is deliberately absent: it comes from the data's tokenizer (``vocab_size: 0``). With the
original vocabularies the paper sizes have the usual parameter counts (BERT-Base ~110M with 30522
tokens, GPT-Base ~124M with 50257, DeiT-B ~87M), see ``tests/test_models.py``.

Sources (see docs/methods/): BERT-Base/Large and GPT-Base are the targets of
Apollo and Multi-Level (bert-base-uncased, gpt2 configs); DeiT-B is Multi-Level's vision target and
DeiT-S the standard smaller DeiT. BERT-Small is LiGO's start model (6 layers, hidden 512), the
growth baseline both papers compare against. GPT-Small mirrors it (6 layers, hidden 512) as the small
GPT in the growth literature; it is NOT OpenAI's "GPT-2 small" (124M), which is our ``gpt-base``.
"""

from __future__ import annotations

_BERT_PAPER: dict[str, object] = {
    "family": "bert",
    "max_seq_len": 512,
    "type_vocab_size": 2,
    "dropout": 0.1,
    "attn_dropout": 0.1,
    "ln_eps": 1e-12,
}
_GPT_PAPER: dict[str, object] = {
    "family": "gpt",
    "max_seq_len": 1024,
    "dropout": 0.1,
    "attn_dropout": 0.1,
    "ln_eps": 1e-5,
}
# DeiT trains with stochastic depth and no dropout; we have no drop-path, so dropout stays 0.
_DEIT_PAPER: dict[str, object] = {
    "family": "deit",
    "image_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "num_classes": 1000,
    "distill_token": True,
    "dropout": 0.0,
    "attn_dropout": 0.0,
    "ln_eps": 1e-6,
}
_TINY: dict[str, object] = {"dropout": 0.0, "attn_dropout": 0.0, "max_seq_len": 128}


def _shape(n_layers: int, hidden: int, n_heads: int) -> dict[str, object]:
    return {"n_layers": n_layers, "hidden": hidden, "n_heads": n_heads, "ffn": 4 * hidden}


SIZES: dict[str, dict[str, object]] = {
    "bert-small": {**_BERT_PAPER, **_shape(6, 512, 8)},
    "bert-base": {**_BERT_PAPER, **_shape(12, 768, 12)},
    "bert-large": {**_BERT_PAPER, **_shape(24, 1024, 16)},
    "gpt-small": {**_GPT_PAPER, **_shape(6, 512, 8)},
    "gpt-base": {**_GPT_PAPER, **_shape(12, 768, 12)},
    "deit-s": {**_DEIT_PAPER, **_shape(12, 384, 6)},
    "deit-b": {**_DEIT_PAPER, **_shape(12, 768, 12)},
    "bert-tiny": {"family": "bert", **_TINY, **_shape(12, 256, 4), "ln_eps": 1e-12},
    "gpt-tiny": {"family": "gpt", **_TINY, **_shape(12, 256, 4)},
    # The acceleration suites (benchmarks/acceleration): 12 layers so Apollo's 1/3/6/12 stages exist, hidden and
    # heads divisible by 4 for a 3-level V-cycle, small enough for a full-horizon run in minutes on 2 CPU cores.
    "gpt-bench": {"family": "gpt", **_TINY, **_shape(12, 56, 4)},
    "bert-bench": {"family": "bert", **_TINY, **_shape(12, 56, 4), "ln_eps": 1e-12},
    "deit-bench": {
        "family": "deit",
        **_shape(12, 56, 4),
        "image_size": 32,
        "patch_size": 8,  # 16 patches + CLS + distillation = 18 tokens: ~10 epochs of MNIST fit the budget
        "in_chans": 3,
        "num_classes": 10,
        "distill_token": True,
        "dropout": 0.0,
        "attn_dropout": 0.0,
    },
    "deit-tiny": {
        "family": "deit",
        **_shape(12, 192, 3),
        "image_size": 32,
        "patch_size": 4,
        "in_chans": 3,
        "num_classes": 10,
        "distill_token": True,
        "dropout": 0.0,
        "attn_dropout": 0.0,
    },
}
