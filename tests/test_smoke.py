"""Each family trains for a few dozen steps through the real trainer and its loss goes down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainutil import records, run, tiny_config


@pytest.mark.parametrize("family", ["gpt", "bert", "deit"])
def test_family_smoke_training_reduces_loss(family: str, tmp_path: Path, text_data: Path) -> None:
    cfg = tiny_config(family, tmp_path, f"smoke-{family}", "--train.max_steps=40", "--train.eval_every=20",
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
