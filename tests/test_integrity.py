"""Shard integrity while training (data.verify): a shard changed in place is named in one line, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import megagrow.trainer.loop as train_mod
from megagrow.cli import main
from megagrow.data.integrity import DataCorrupt, Expected, ShardVerifier
from megagrow.data.manifest import sha256_file
from tests.trainutil import TINY, run, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _corrupted_copy(text_data: Path, tmp_path: Path) -> Path:
    """The dataset with two bytes flipped in the middle of its training shard: same size, so the open passes."""
    data = tmp_path / "data"
    shutil.copytree(text_data, data)
    shard = data / "train-00000.arrow"
    raw = bytearray(shard.read_bytes())
    size = len(raw)
    for i in (size // 2, size // 2 + 1):
        raw[i] ^= 0xFF
    shard.write_bytes(bytes(raw))
    assert shard.stat().st_size == size
    return data


def test_a_shard_changed_in_place_stops_training_with_one_line(text_data: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = _corrupted_copy(text_data, tmp_path)
    argv = ["train", str(ROOT / "configs/gpt-tiny.yaml"), *TINY["gpt"], f"--data.path={data}",
            f"--run.out_dir={tmp_path}", "--run.name=c", "--train.max_steps=20", "--data.micro_batch_size=4",
            "--logging.progress=off", "--data.eval_samples=8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("megagrow: error:")]
    assert "train-00000.arrow does not match manifest.json" in line
    assert f"megagrow-prep inspect {data} --verify" in line
    assert "Traceback" not in err


def test_a_reader_crash_on_a_corrupt_shard_is_reported_as_the_corruption(text_data: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader failing on garbage (the IndexError of the issue) waits for the check's verdict and raises it."""
    data = _corrupted_copy(text_data, tmp_path)

    def garbage(self):
        raise IndexError("index 4017 is out of bounds for axis 0 with size 62")

    monkeypatch.setattr(train_mod.GlobalBatchLoader, "next_micro_batch", garbage)
    with pytest.raises(DataCorrupt, match="train-00000.arrow does not match"):
        run(tiny_config("gpt", tmp_path, "r", data_path=data))
    monkeypatch.setattr(train_mod.GlobalBatchLoader, "next_micro_batch", garbage)
    with pytest.raises(IndexError):  # an intact dataset: the reader's own error goes through
        run(tiny_config("gpt", tmp_path, "r2", data_path=text_data))


def test_verifier_states(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"x" * 1000)
    bad.write_bytes(b"y" * 1000)
    ok = ShardVerifier(tmp_path, [Expected(good, sha256_file(good))])
    assert ok.wait(10) is None and ok.done and ok.seconds is not None
    ok.raise_if_bad()
    wrong = ShardVerifier(tmp_path, [Expected(good, sha256_file(good)), Expected(bad, sha256_file(good))])
    assert "bad.bin does not match manifest.json" in (wrong.wait(10) or "")
    with pytest.raises(DataCorrupt):
        wrong.raise_if_bad()
    gone = ShardVerifier(tmp_path, [Expected(tmp_path / "missing.bin", "0" * 64)])
    assert "missing.bin cannot be read" in (gone.wait(10) or "")


def test_verify_off_skips_the_check(text_data: Path, tmp_path: Path) -> None:
    from megagrow.data.factory import build_data

    cfg = tiny_config("gpt", tmp_path, "off", "--data.verify=off", data_path=text_data)
    assert build_data(cfg.data, cfg.model, 0).verifier is None
    cfg = tiny_config("gpt", tmp_path, "on", data_path=text_data)
    v = build_data(cfg.data, cfg.model, 0).verifier
    assert v is not None and v.wait(30) is None and len(v.files) == 3  # train, validation, tokenizer
