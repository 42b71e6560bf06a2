"""Helpers for tests that run the real trainer in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

from megagrow.config import Config, load_config
from megagrow.trainer.loop import TrainResult, train

TINY = {
    "gpt": ["--model.size=gpt-tiny", "--model.n_layers=3", "--model.hidden=64", "--model.n_heads=2",
            "--data.seq_len=32", "--model.max_seq_len=32"],
    "bert": ["--model.size=bert-tiny", "--model.n_layers=3", "--model.hidden=64", "--model.n_heads=2",
             "--data.seq_len=32", "--model.max_seq_len=32"],
    "deit": ["--model.size=deit-tiny", "--model.n_layers=3", "--model.hidden=48", "--model.n_heads=2",
             "--model.image_size=16", "--data.kind=synthetic-images", "--data.synthetic_train_samples=4096"],
}


def tiny_config(family: str, out_dir: Path, name: str, *extra: str, data_path: Path | None = None) -> Config:
    args = [*TINY[family], f"--run.out_dir={out_dir}", f"--run.name={name}", "--data.micro_batch_size=8",
            "--data.eval_samples=32", "--train.max_steps=8", "--train.eval_every=4", "--logging.log_every=1",
            "--logging.progress=off", "--optim.warmup_steps=2", "--optim.lr=3e-3", "--checkpoint.every=0"]
    if data_path is not None:
        args.append(f"--data.path={data_path}")
    return load_config(None, [*args, *extra])


def run(cfg: Config) -> TrainResult:
    return train(cfg)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def clean_env() -> dict[str, str]:
    """Environment for a child ``megagrow`` process: without the rank variables this test process set."""
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "DS_ACCELERATOR": "cpu"}
