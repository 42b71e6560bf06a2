"""Evaluation on the data a user has: a plain .txt trains end to end with validation; evaluation can be off
(data.eval_samples 0, or a dataset without a validation split) with a note, not an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.cli import main as prep
from megagrow.trainer.evaluation import EvalLayout, eval_layout
from tests.test_split import notes_file
from tests.trainutil import records, run, tiny_config


def test_eval_layout_plain_off_and_small() -> None:
    assert eval_layout(256, 1000, 8, 2) == EvalLayout(256, 8)
    assert eval_layout(100, 1000, 8, 2) == EvalLayout(96, 8)  # whole global micro-batches
    off = eval_layout(0, 1000, 8, 1)
    assert not off.enabled and "evaluation off (data.eval_samples=0)" in off.note
    none = eval_layout(256, None, 8, 1, "data/notes")
    assert not none.enabled and "data.path=data/notes has no validation split" in none.note
    assert "--val-fraction above 0" in none.note
    small = eval_layout(256, 13, 8, 2, "data/notes")  # fewer samples than one global micro-batch (16)
    assert small.n_samples == 12 and small.micro_batch_size == 6
    assert "micro-batches of 6 per rank" in small.note and "holds 13 samples" in small.note
    few = eval_layout(4, 1000, 8, 1)
    assert (few.n_samples, few.micro_batch_size) == (4, 4) and "data.eval_samples=4" in few.note


def test_eval_layout_errors_name_a_fix() -> None:
    with pytest.raises(ValueError, match=r"has 1 samples, fewer than one per rank \(2 ranks\); rebuild it with a "
                                         r"larger --val-fraction .*data.eval_samples=0"):
        eval_layout(256, 1, 8, 2, "data/notes")
    with pytest.raises(ValueError, match="set data.eval_samples to at least 2"):
        eval_layout(1, 100, 8, 2)


def _build(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "data"
    argv = ["-q", "build", "--input", str(notes_file(tmp_path)), "--out", str(out), "--vocab-size", "300",
            "--workers", "1", *extra]
    assert prep(argv) == 0
    return out


def test_plain_text_file_trains_with_validation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """megagrow-prep build --input notes.txt, then a few steps of a tiny GPT: val_loss in the metrics."""
    data = _build(tmp_path)  # the default --val-fraction 0.01: one block of the one document in validation
    result = run(tiny_config("gpt", tmp_path, "notes", "--train.max_steps=4", "--train.eval_every=2",
                             "--data.micro_batch_size=32", data_path=data))
    assert result.step == 4 and result.val_loss is not None
    vals = [r for r in records(result.run_dir) if "val_loss" in r]
    assert [r["step"] for r in vals] == [2, 4] and all(r["val_loss"] > 0 for r in vals)
    err = capsys.readouterr().err
    assert "per rank, fewer than data.micro_batch_size=32 (the validation split of data.path=" in err


def test_eval_samples_zero_trains_without_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     text_data: Path) -> None:
    result = run(tiny_config("gpt", tmp_path, "off", "--data.eval_samples=0", "--train.max_steps=4",
                             data_path=text_data))
    assert result.step == 4 and result.val_loss is None and result.loss is not None
    recs = records(result.run_dir)
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and not any("val_loss" in r for r in recs)
    assert "[megagrow] note: evaluation off (data.eval_samples=0): the metrics have no val_loss" in (
        capsys.readouterr().err)


def test_dataset_without_validation_split_trains_without_evaluation(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    data = _build(tmp_path, "--val-fraction", "0")
    result = run(tiny_config("gpt", tmp_path, "noval", "--train.max_steps=2", data_path=data))
    assert result.step == 2 and result.val_loss is None
    assert not any("val_loss" in r for r in records(result.run_dir))
    assert f"evaluation off: data.path={data} has no validation split" in capsys.readouterr().err


def test_error_fixes_that_work(tmp_path: Path, text_data: Path) -> None:
    with pytest.raises(ValueError, match=r"smaller than the tokenizer's vocabulary \(400\).*set model.vocab_size=0 "
                                         r"\(taken from the tokenizer\) or at least 400"):
        run(tiny_config("gpt", tmp_path, "vocab", "--model.vocab_size=100", data_path=text_data))
    from megagrow.data.shards import ShardedCorpus, ShardError

    with pytest.raises(ShardError, match=f"`megagrow-prep build --input TEXT --out {tmp_path / 'none'}`"):
        ShardedCorpus.open(tmp_path / "none", "train")
