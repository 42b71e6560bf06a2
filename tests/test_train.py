"""The real trainer (DeepSpeed, gloo, CPU) on tiny models: metrics, TensorBoard, resume, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from megagrow.checkpointing.store import latest_checkpoint, load_checkpoint
from megagrow.metrics import REQUIRED_KEYS
from tests.trainutil import clean_env, records, run, tiny_config


def test_metrics_jsonl_and_tensorboard(tmp_path: Path) -> None:
    cfg = tiny_config("deit", tmp_path, "m")
    result = run(cfg)
    assert result.step == 8 and not result.stopped_early
    recs = records(result.run_dir)
    assert [r["step"] for r in recs] == list(range(1, 9))
    for r in recs:
        assert set(REQUIRED_KEYS) <= set(r), set(REQUIRED_KEYS) - set(r)
        assert r["depth"] == 3 and r["hidden"] == 48 and r["phase"] == "scratch"
        assert "gflops_per_s" in r
    assert [r["step"] for r in recs if "val_loss" in r] == [4, 8]
    assert all(b["flops"] > a["flops"] and b["wall_s"] > a["wall_s"] for a, b in zip(recs, recs[1:], strict=False))
    assert recs[-1]["samples"] == 64 and recs[-1]["tokens"] == 64 * (16 + 2)  # 4x4 patches + cls + dist
    run_dir = result.run_dir
    assert (run_dir / "config.yaml").is_file() and (run_dir / "deepspeed.json").is_file()
    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    for key in ("loss", "lr", "flops", "tokens_per_s", "depth", "wall_s"):
        assert f"train/{key}" in tags
    assert "val/val_loss" in tags
    losses = [e.value for e in ea.Scalars("train/loss")]
    assert losses == pytest.approx([r["loss"] for r in recs])


@pytest.mark.parametrize(("family", "zero_stage", "extra"),
                         [("deit", 0, ()), ("deit", 1, ()), ("deit", 2, ()), ("deit", 3, ()), ("gpt", 0, ()),
                          ("gpt", 2, ()), ("bert", 1, ()), ("deit", 0, ("--data.mixup=0.8", "--data.cutmix=1.0"))])
def test_resume_reproduces_uninterrupted_losses(tmp_path: Path, text_data: Path, family: str,
                                                 zero_stage: int, extra: tuple[str, ...]) -> None:
    """Interrupted at step 3 and resumed from its checkpoint: the same per-step losses, bit for bit
    (CPU fp32, dropout on: its RNG is a pure function of (seed, step, micro-step, rank); so is mixup's)."""
    common = [f"--distributed.zero_stage={zero_stage}", "--model.dropout=0.1", *extra]
    data = text_data if family != "deit" else None
    full = run(tiny_config(family, tmp_path, "full", *common, data_path=data))
    cut = run(tiny_config(family, tmp_path, "cut", *common, "--train.exit_at_step=3", data_path=data))
    assert cut.stopped_early and cut.step == 3
    ckpt = latest_checkpoint(cut.run_dir / "checkpoints")
    assert ckpt is not None and ckpt.name == "step_00000003"
    resumed = run(tiny_config(family, tmp_path, "cut", *common, data_path=data))
    assert resumed.step == 8
    a, b = records(full.run_dir), records(resumed.run_dir)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bitwise: fp32 CPU
    val_b = {r["step"]: r["val_loss"] for r in b if "val_loss" in r}
    assert sorted(val_b) == [3, 4, 8]  # the interrupted run also evaluated when it stopped at step 3
    assert all(val_b[r["step"]] == r["val_loss"] for r in a if "val_loss" in r)
    assert [(r["flops"], r["tokens"], r["samples"]) for r in a] == [(r["flops"], r["tokens"], r["samples"])
                                                                   for r in b]
    assert b[-1]["wall_s"] > b[2]["wall_s"]  # cumulative wall time continues from the checkpoint
    sa, _ = load_checkpoint(latest_checkpoint(full.run_dir / "checkpoints"))
    sb, _ = load_checkpoint(latest_checkpoint(resumed.run_dir / "checkpoints"))
    assert sa.adam_step == sb.adam_step == 8
    for name, t in sa.params.items():
        assert t.equal(sb.params[name]), name


def test_sigterm_checkpoints_and_exits_zero(tmp_path: Path) -> None:
    args = ["--model.size=deit-tiny", "--model.n_layers=2", "--model.hidden=48", "--model.n_heads=2",
            "--model.image_size=16", f"--run.out_dir={tmp_path}", "--run.name=sig", "--train.max_steps=100000",
            "--logging.log_every=1", "--logging.progress=off", "--data.eval_samples=32",
            "--data.micro_batch_size=8"]
    exe = Path(sys.executable).parent / "megagrow"
    proc = subprocess.Popen([str(exe), "train", str(Path(__file__).parents[1] / "configs/deit-tiny.yaml"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=clean_env())
    metrics = tmp_path / "sig" / "metrics.jsonl"
    deadline = time.time() + 120
    while (time.time() < deadline and proc.poll() is None
           and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2)):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped early" in out
    last_step = records(tmp_path / "sig")[-1]["step"]
    ckpt = latest_checkpoint(tmp_path / "sig" / "checkpoints")
    assert ckpt is not None and ckpt.name == f"step_{last_step:08d}"


def test_grad_accumulation_matches_larger_micro_batch(tmp_path: Path, text_data: Path) -> None:
    big = run(tiny_config("gpt", tmp_path, "big", "--data.micro_batch_size=8", "--train.max_steps=4",
                          data_path=text_data))
    acc = run(tiny_config("gpt", tmp_path, "acc", "--data.micro_batch_size=4", "--train.grad_accum=2",
                          "--train.max_steps=4", data_path=text_data))
    a, b = records(big.run_dir), records(acc.run_dir)
    assert [r["samples"] for r in a] == [r["samples"] for r in b] == [8, 16, 24, 32]
    assert [r["flops"] for r in a] == [r["flops"] for r in b]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5)


@pytest.mark.parametrize(("zero_stage", "precision"), [(0, "bf16"), (2, "bf16"), (0, "bf16-autocast"),
                                                       (2, "bf16-autocast")])
def test_bf16_trains_and_resumes(tmp_path: Path, text_data: Path, zero_stage: int, precision: str) -> None:
    common = [f"--train.precision={precision}", f"--distributed.zero_stage={zero_stage}", "--train.max_steps=12"]
    cut = run(tiny_config("gpt", tmp_path, "bf16", *common, "--train.exit_at_step=6", data_path=text_data))
    assert cut.step == 6
    state, _ = load_checkpoint(latest_checkpoint(cut.run_dir / "checkpoints"))
    assert all(t.dtype == torch.float32 for t in state.params.values())  # fp32 master weights are saved
    done = run(tiny_config("gpt", tmp_path, "bf16", *common, data_path=text_data))
    recs = records(done.run_dir)
    assert [r["step"] for r in recs] == list(range(1, 13))
    assert recs[-1]["loss"] < recs[0]["loss"]


def test_resume_refuses_different_data_unless_allowed(tmp_path: Path, text_data: Path) -> None:
    from data_prep.build import BuildSettings, build_dataset
    from tests.conftest import make_text_corpus

    other = tmp_path / "other"
    build_dataset([make_text_corpus(tmp_path / "books2", n_docs=30, seed=1)], other,  # other text, same tokenizer
                  BuildSettings(vocab_size=400, val_fraction=0.2, min_chars=50, workers=1,
                                tokenizer=text_data / "tokenizer.model"), progress=False)
    cut = run(tiny_config("gpt", tmp_path, "fp", "--train.exit_at_step=2", data_path=text_data))
    assert cut.step == 2
    with pytest.raises(ValueError, match="fingerprint") as e:
        run(tiny_config("gpt", tmp_path, "fp", data_path=other))
    msg = str(e.value)  # in the config's words, not the loader's (GlobalBatchLoader.load_state_dict ...)
    assert f"data.path={other}" in msg and "--data.allow_fingerprint_change=true" in msg
    assert "GlobalBatchLoader" not in msg and "allow_fingerprint_change=True" not in msg
    done = run(tiny_config("gpt", tmp_path, "fp", "--data.allow_fingerprint_change=true", data_path=other))
    assert done.step == 8
    assert [r["step"] for r in records(done.run_dir)] == list(range(1, 9))
