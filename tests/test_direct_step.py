"""The GPU-speed step: precision auto, megagrow's own ZeRO-0 step (DirectStep), statistics kept on the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import megagrow.distributed.engine as engine_mod
import megagrow.trainer.loop as train_mod
from megagrow.checkpointing.store import latest_checkpoint, load_checkpoint
from megagrow.config import load_config
from megagrow.distributed.direct import DirectStep
from megagrow.trainer.faults import NonFiniteStop
from megagrow.trainer.precision import DeviceFacts, resolve_precision
from tests.trainutil import records, run, tiny_config

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- precision: auto


def test_auto_is_fp32_on_cpu_and_bf16_autocast_on_a_cuda_bf16_device() -> None:
    cpu = resolve_precision("auto", DeviceFacts(cuda=False))
    assert (cpu.precision, cpu.tf32) == ("fp32", False)
    h200 = resolve_precision("auto", DeviceFacts(cuda=True, bf16=True, name="NVIDIA H200"))
    assert (h200.precision, h200.tf32) == ("bf16-autocast", True)
    assert "auto -> train.precision=bf16-autocast" in h200.line("auto") and "H200" in h200.line("auto")
    old = resolve_precision("auto", DeviceFacts(cuda=True, bf16=False, name="Tesla V100"))
    assert (old.precision, old.tf32) == ("fp32", True)
    assert resolve_precision("fp32", DeviceFacts(cuda=True, bf16=True)).tf32  # TF32 for fp32 on CUDA
    assert resolve_precision("bf16", DeviceFacts(cuda=True, bf16=True)).precision == "bf16"  # as configured
    with pytest.raises(ValueError, match="no bf16 support"):
        resolve_precision("bf16-autocast", DeviceFacts(cuda=True, bf16=False))
    with pytest.raises(ValueError, match="train.precision='fp16'"):
        resolve_precision("fp16", DeviceFacts(cuda=False))


def test_device_probe_reads_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    assert DeviceFacts.probe() == DeviceFacts(cuda=True, bf16=True, name="NVIDIA H200")
    assert resolve_precision("auto", DeviceFacts.probe()).precision == "bf16-autocast"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", DeviceFacts.probe()).precision == "fp32"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_loads_with_auto(path: str) -> None:
    assert load_config(ROOT / path).train.precision == "auto"


def test_run_says_what_auto_resolved_to_and_records_it(tmp_path: Path, text_data: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config("gpt", tmp_path, "auto", "--train.max_steps=2", data_path=text_data)
    assert cfg.train.precision == "auto"
    run(cfg)
    err = capsys.readouterr().err
    assert "[megagrow] precision: auto -> train.precision=fp32 (no CUDA device" in err
    assert "precision: fp32" in (tmp_path / "auto" / "config.yaml").read_text()


# ------------------------------------------------------------------------- DirectStep against DeepSpeed's step


def _final(run_dir: Path) -> dict[str, torch.Tensor]:
    state, _ = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    return {**{f"p/{k}": v for k, v in state.params.items()}, **{f"m/{k}": v for k, v in state.exp_avg.items()},
            **{f"v/{k}": v for k, v in state.exp_avg_sq.items()}}


@pytest.mark.parametrize(("family", "precision", "plan"), [("gpt", "fp32", "apollo"), ("bert", "bf16-autocast",
                                                                                       "scratch")])
def test_direct_step_is_bit_identical_to_deepspeeds(family: str, precision: str, plan: str, tmp_path: Path,
                                                     text_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradient accumulation, a non-finite step (skipped), sampled depths: the same losses and the same final
    weights and moments, bit for bit, with megagrow's step and with DeepSpeed's engine."""
    monkeypatch.setenv("MEGAGROW_FAULT", "nan:3")
    extra = ["--train.grad_accum=2", f"--train.precision={precision}", f"--growth.plan={plan}", "--train.max_steps=6",
             "--logging.log_every=2", "--train.eval_every=3"]
    direct = run(tiny_config(family, tmp_path, "direct", *extra, data_path=text_data))
    seen: list[bool] = []
    real = engine_mod.build_engine

    def spy(*a, **k):
        e = real(*a, **k)
        seen.append(isinstance(e, DirectStep))
        return e

    monkeypatch.setattr(train_mod, "build_engine", spy)
    monkeypatch.setattr(engine_mod, "direct_step_applies", lambda *a: False)
    ds = run(tiny_config(family, tmp_path, "deepspeed", *extra, data_path=text_data))
    assert seen and not any(seen)  # the second run really used DeepSpeed's engine
    a, b = records(direct.run_dir), records(ds.run_dir)
    assert [r["step"] for r in a] == [2, 3, 4, 6]
    assert [(r["loss"], r.get("val_loss"), r["skipped_steps"]) for r in a] == \
        [(r["loss"], r.get("val_loss"), r["skipped_steps"]) for r in b]
    assert a[-1]["skipped_steps"] == 1
    fa, fb = _final(direct.run_dir), _final(ds.run_dir)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k


# ------------------------------------------------------------------------------ statistics kept on the device


def test_deferred_statistics_match_a_sync_every_step(tmp_path: Path, text_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Read back every 4 steps instead of every step: the same weights bit for bit, the same counters, the same
    metrics to rounding (a window's losses are summed before the division by the micro-batch count)."""
    monkeypatch.setenv("MEGAGROW_FAULT", "nan:5")
    extra = ["--train.max_steps=8", "--logging.log_every=4", "--train.eval_every=0", "--train.grad_accum=2"]
    deferred = run(tiny_config("gpt", tmp_path, "deferred", *extra, data_path=text_data))
    monkeypatch.setattr(train_mod, "deferred_applies", lambda *a: False)
    sync = run(tiny_config("gpt", tmp_path, "sync", *extra, data_path=text_data))
    a, b = records(deferred.run_dir), records(sync.run_dir)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b, strict=True):
        for key in ("step", "samples", "tokens", "flops", "skipped_steps", "depth", "phase"):
            assert ra[key] == rb[key], key
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-12)
    assert a[-1]["skipped_steps"] == 1
    fa, fb = _final(deferred.run_dir), _final(sync.run_dir)
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k


def test_deferred_consecutive_skips_stop_at_the_next_flush(tmp_path: Path, text_data: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps 2-7 non-finite, max 3 in a row, read back every 4 steps: the run stops after step 4 (the flush that
    sees the run reach 3) with the state of step 1 checkpointed."""
    monkeypatch.setenv("MEGAGROW_FAULT", "nan:1-7")
    cfg = tiny_config("gpt", tmp_path, "skips", "--train.max_steps=12", "--logging.log_every=4",
                      "--train.eval_every=0", "--train.max_consecutive_skips=3", data_path=text_data)
    with pytest.raises(NonFiniteStop, match="3 consecutive non-finite steps"):
        run(cfg)
    state, meta = load_checkpoint(latest_checkpoint(tmp_path / "skips" / "checkpoints"))
    assert meta["counters"]["step"] == 4 and meta["counters"]["skipped_steps"] == 3
    assert state.adam_step == 1


# ------------------------------------------------------------------------------------ train.phase_batching


def test_merge_factor_and_groups() -> None:
    from megagrow.growth.plans.base import Decision
    from megagrow.trainer.phase_batching import merge_factor, merge_groups

    assert merge_factor(8, 100.0, 21.6) == 4  # GPT-Base's half model: 0.216x the FLOPs -> 4 micro-batches merged
    assert merge_factor(6, 100.0, 21.6) == 3 and merge_factor(5, 100.0, 21.6) == 1  # divisors of grad_accum only
    assert merge_factor(4, 100.0, 100.0) == 1 and merge_factor(1, 100.0, 1.0) == 1
    a, b, m = Decision("x", (0, 1)), Decision("x", (0,)), Decision("x", (0, 1), {"masks": object()})
    assert merge_groups([a, a, a, a], 4) == [(0, 4)]
    assert merge_groups([a, a, a, a], 2) == [(0, 2), (2, 2)]
    assert merge_groups([a, b, b, a, a], 4) == [(0, 1), (1, 2), (3, 2)]  # only the same layer map merges
    assert merge_groups([m, m, a], 4) == [(0, 1), (1, 1), (2, 1)]  # growth masks never merge


def test_phase_batching_gives_the_same_losses_to_rounding(tmp_path: Path, text_data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Multi-level's coarse phase (half width and depth) with grad_accum 4: its micro-batches merge 4 at a time (one
    forward per step instead of four); every step's loss and the final weights match the unmerged run to rounding."""
    merged: list[int] = []
    real = train_mod._merged_batch

    def spy(s, step, micro, count):
        merged.append(count)
        return real(s, step, micro, count)

    monkeypatch.setattr(train_mod, "_merged_batch", spy)
    extra = ["--growth.plan=multilevel", "--growth.multilevel.levels=2", "--growth.boundaries=2,6",
             "--growth.boundary_unit=steps",
             "--model.n_layers=4", "--model.n_heads=4", "--train.grad_accum=4", "--data.micro_batch_size=2",
             "--train.max_steps=8", "--logging.log_every=1", "--train.eval_every=0"]
    on = records(run(tiny_config("gpt", tmp_path, "on", *extra, data_path=text_data)).run_dir)
    assert merged and set(merged) == {4} and len(merged) == 4  # the 4 coarse steps (3-6), nothing else
    off = records(run(tiny_config("gpt", tmp_path, "off", *extra, "--train.phase_batching=off",
                                  data_path=text_data)).run_dir)
    assert len(merged) == 4
    assert [r["phase"] for r in on] == [r["phase"] for r in off]
    for ra, rb in zip(on, off, strict=True):
        assert (ra["tokens"], ra["samples"], ra["flops"]) == (rb["tokens"], rb["samples"], rb["flops"])
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5, abs=1e-6)
    fa, fb = _final(tmp_path / "on"), _final(tmp_path / "off")
    # AdamW moves a weight by ~lr whatever its gradient's size, so where a gradient is ~0 a rounding difference can
    # flip its sign: a few elements differ by up to ~lr (3e-3), the rest by rounding
    for k in (k for k in fa if k.startswith("p/")):
        d = (fa[k] - fb[k]).abs()
        assert float(d.max()) < 3e-3 and float(d.mean()) < 1e-6, (k, float(d.max()), float(d.mean()))
