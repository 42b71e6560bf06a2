"""LR schedule (pure function of the step), checkpoint files, fused AdamW selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from megagrow.checkpointing.store import latest_checkpoint, load_checkpoint, save_checkpoint
from megagrow.config import load_config
from megagrow.distributed.engine import build_engine, init_distributed, param_groups
from megagrow.models import build_model
from megagrow.state import FullState
from megagrow.trainer.lr_schedule import lr_at


def test_warmup_then_cosine_and_linear() -> None:
    kw = dict(peak=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(9, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(10, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(60, schedule="cosine", **kw) == pytest.approx(0.55)
    assert lr_at(110, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(500, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(60, schedule="linear", **kw) == pytest.approx(0.55)
    assert lr_at(35, schedule="linear", **kw) == pytest.approx(1.0 - 0.9 * 0.25)
    assert lr_at(77, schedule="constant", **kw) == 1.0
    with pytest.raises(ValueError, match="optim.schedule='step'"):
        lr_at(50, schedule="step", **kw)


def _state(scale: float) -> FullState:
    p = {"a.weight": torch.full((2, 3), scale), "b": torch.arange(4.0)}
    return FullState(p, {k: v * 0.1 for k, v in p.items()}, {k: v * 0.01 for k, v in p.items()}, adam_step=7)


def test_checkpoint_round_trip_keep_last_and_latest(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    for step in (1, 2, 3):
        save_checkpoint(root, step, _state(step), {"counters": {"step": step}}, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002", "step_00000003"]
    path = latest_checkpoint(root)
    assert path is not None and path.name == "step_00000003"
    state, meta = load_checkpoint(path)
    assert meta["step"] == 3 and meta["adam_step"] == 7 and meta["counters"] == {"step": 3}
    assert state.params["a.weight"].equal(torch.full((2, 3), 3.0))
    assert state.exp_avg_sq["b"].equal(torch.arange(4.0) * 0.01)
    assert not list(root.glob("*.tmp"))
    # nothing is pickled: only safetensors + JSON on disk
    assert {p.suffix for p in path.iterdir()} == {".safetensors", ".json"}
    json.loads((path / "meta.json").read_text())


def test_latest_pointing_at_partial_checkpoint_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    save_checkpoint(root, 5, _state(1), {}, keep_last=3)
    (root / "latest").write_text("step_00000009\n")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        latest_checkpoint(root)


def test_param_groups_and_fused_adamw() -> None:
    cfg = load_config(None, ["--model.size=gpt-tiny", "--model.n_layers=2", "--model.vocab_size=64"])
    model = build_model(cfg.model)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim == 2 for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"blocks.0.attn.qkv.bias", "blocks.1.ln_2.weight"}
    init_distributed(cfg)
    engine = build_engine(model, cfg, world_size=1)
    assert engine.optimizer.defaults["fused"] is True  # torch's fused AdamW kernel runs on CPU too
    assert [g["weight_decay"] for g in engine.optimizer.param_groups] == [cfg.optim.weight_decay, 0.0]


def test_phase_lr_policies() -> None:
    from megagrow.trainer.lr_schedule import phase_lr

    kw = dict(starts=[0, 10, 30], max_steps=50, peak=1.0, warmup_steps=4, schedule="linear", min_lr_ratio=0.0)
    cont = [phase_lr(s, policy="continue", **kw) for s in range(50)]
    assert cont == [lr_at(s, peak=1.0, warmup_steps=4, total_steps=50, schedule="linear", min_lr_ratio=0.0)
                    for s in range(50)]
    rewarm = [phase_lr(s, policy="rewarm", **kw) for s in range(50)]
    assert rewarm[:10] == cont[:10]
    assert rewarm[10] == pytest.approx(cont[10] / 4) and rewarm[13] == pytest.approx(cont[13])
    reset = [phase_lr(s, policy="reset", **kw) for s in range(50)]
    assert reset[0] == pytest.approx(0.25) and reset[3] == pytest.approx(1.0)  # warmup in the first phase only
    assert reset[10] == pytest.approx(1.0) and reset[30] == pytest.approx(1.0)  # later phases restart at the peak
    assert reset[29] == pytest.approx(1.0 / 20) and reset[49] == pytest.approx(1.0 / 20)  # decayed over each phase
    with pytest.raises(ValueError, match="lr_policy='cyclic'"):
        phase_lr(5, policy="cyclic", **kw)


def test_wsd_schedule() -> None:
    """Warmup, then the peak until the last decay_fraction of the run, then one decay to the floor."""
    kw = dict(peak=2.0, warmup_steps=10, total_steps=100, min_lr_ratio=0.1, schedule="wsd", decay_fraction=0.2)
    assert lr_at(0, **kw) == pytest.approx(0.2)
    assert lr_at(9, **kw) == pytest.approx(2.0)
    assert all(lr_at(s, **kw) == 2.0 for s in range(10, 80))  # stable phase
    assert lr_at(80, **kw) == pytest.approx(2.0)  # decay starts at 100 - 20
    assert lr_at(90, **kw) == pytest.approx(0.2 + 1.8 * 0.5)  # linear: half way
    assert lr_at(100, **kw) == pytest.approx(0.2) and lr_at(150, **kw) == pytest.approx(0.2)
    lrs = [lr_at(s, **kw) for s in range(80, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # monotone decay
    assert lr_at(95, **kw, wsd_decay_shape="1-sqrt") == pytest.approx(0.2 + 1.8 * (1 - 0.75 ** 0.5))
    assert lr_at(90, **kw, wsd_decay_shape="cosine") == pytest.approx(0.2 + 1.8 * 0.5)
    assert lr_at(85, **kw, wsd_decay_shape="cosine") > lr_at(85, **kw)  # cosine starts slower than linear
    with pytest.raises(ValueError, match="wsd_decay_shape='exp'"):
        lr_at(90, **kw, wsd_decay_shape="exp")


def test_growth_under_wsd_decays_once() -> None:
    """continue/rewarm: transitions in the stable phase keep the peak and the run decays once at its end;
    reset: each phase a WSD of its own."""
    from megagrow.trainer.lr_schedule import phase_lr

    kw = dict(starts=[0, 20, 50], max_steps=100, peak=1.0, warmup_steps=5, schedule="wsd", min_lr_ratio=0.0,
              decay_fraction=0.2)
    cont = [phase_lr(s, policy="continue", **kw) for s in range(100)]
    assert cont[5:80] == [1.0] * 75  # through both transitions at the peak
    assert cont[80] == 1.0 and cont[99] == pytest.approx(0.05)
    rewarm = [phase_lr(s, policy="rewarm", **kw) for s in range(100)]
    assert rewarm[20] == pytest.approx(0.2) and rewarm[24] == 1.0 and rewarm[50] == pytest.approx(0.2)
    assert rewarm[80:] == cont[80:]
    reset = [phase_lr(s, policy="reset", **kw) for s in range(100)]
    # phase [20, 50): 30 steps, its decay over the last 6 of them
    assert reset[20] == 1.0 and reset[43] == 1.0 and reset[44] == 1.0 and reset[49] < 0.2
    assert reset[50] == 1.0  # the next phase restarts at the peak (no warmup after the first)


def test_wsd_config_validation(tmp_path) -> None:
    from megagrow.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"optim.decay_fraction=1.5: must be in \(0, 1\]"):
        load_config(None, ["--optim.schedule=wsd", "--optim.decay_fraction=1.5"])
    cfg = load_config(None, ["--optim.schedule=wsd", "--optim.decay_fraction=0.1", "--optim.wsd_decay_shape=1-sqrt"])
    assert cfg.optim.schedule == "wsd" and cfg.optim.decay_fraction == 0.1 and cfg.optim.wsd_decay_shape == "1-sqrt"
