"""Retired engines are freed: a transition must not leave the old model, optimizer or partitions alive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainutil import clean_env

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import gc, os, sys, weakref
from megagrow.distributed.env import free_port
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
import torch
from megagrow.config import load_config
from megagrow.distributed.engine import build_engine, destroy_engine, init_distributed
from megagrow.models.build import build_model
from dataclasses import replace

stage = int(sys.argv[1])
cfg = load_config(None, ["--model.size=gpt-tiny", "--model.n_layers=2", "--model.hidden=32", "--model.n_heads=2",
                         "--model.max_seq_len=16", "--data.seq_len=16", "--data.micro_batch_size=2",
                         f"--distributed.zero_stage={stage}", "--train.precision=fp32"])
cfg = replace(cfg, model=replace(cfg.model, vocab_size=64))
init_distributed(cfg)
refs = []
for i in range(3):
    torch.manual_seed(i)
    engine = build_engine(build_model(cfg.model), cfg, 1)
    ids = torch.randint(0, 64, (2, 16))
    for _ in range(2):
        out = engine({"input_ids": ids, "labels": ids}, [0, 1])
        engine.backward(out.loss)
        engine.step()
    refs += [weakref.ref(engine), weakref.ref(engine.module), weakref.ref(engine.optimizer)]
    destroy_engine(engine)
    del engine, out
gc.collect()
alive = [type(r()).__name__ for r in refs if r() is not None]
print("ALIVE", alive)
sys.exit(1 if alive else 0)
"""


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_destroyed_engines_are_freed(zero_stage: int) -> None:
    """Under ZeRO-3 DeepSpeed keeps every coordinator and sub-module in a class-level lru_cache; without
    ``destroy_engine`` clearing it every retired engine (weights, optimizer, partitions) stays in memory."""
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(zero_stage)], capture_output=True, text=True,
                       timeout=240, cwd=ROOT, env={**clean_env(), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ALIVE []" in r.stdout
