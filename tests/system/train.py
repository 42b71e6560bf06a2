"""What the system tests train: gpt-tiny shrunk to seconds (4 layers, hidden 64, sequence 32) on the made-up
corpus of tests/conftest.py, and the 1-process reference its multi-host runs must match."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.system.cluster import PYTHON, ROOT

CONFIG = ROOT / "configs/gpt-tiny.yaml"
APOLLO_CONFIG = ROOT / "configs/gpt-tiny-apollo.yaml"
STEPS = 10  # the multi-host runs compared with the 1-process reference
LAUNCH_TIMEOUT = 420  # seconds: every launch runs under `timeout`; a hang fails the test, never the session


def small_args(out_dir: Path, name: str, data: Path, *, steps: int = 12, micro: int = 4, zero: int = 2,
               timeout_minutes: float = 3) -> list[str]:
    """Overrides of gpt-tiny for a few-second run. ``micro`` is per rank: 2 ranks x 4 = 1 rank x 8."""
    return ["--model.n_layers=4", "--model.hidden=64", "--model.n_heads=2", "--data.seq_len=32",
            "--model.max_seq_len=32", f"--data.micro_batch_size={micro}", "--data.eval_samples=32",
            f"--train.max_steps={steps}", f"--train.eval_every={steps}", "--logging.log_every=1",
            "--logging.progress=off", "--optim.warmup_steps=2", "--optim.lr=3e-3", "--checkpoint.every=0",
            f"--distributed.zero_stage={zero}", f"--distributed.timeout_minutes={timeout_minutes}",
            f"--run.out_dir={out_dir}", f"--run.name={name}", f"--data.path={data}"]


def apollo_args(out_dir: Path, name: str, data: Path, *, steps: int = 24, micro: int = 4) -> list[str]:
    """Apollo 1 -> 2 -> 4 live layers with transitions at steps 6 and 12 (of 24), checkpoints every 4 steps."""
    args = small_args(out_dir, name, data, steps=steps, micro=micro, zero=0)
    args = [a for a in args if not a.startswith("--checkpoint.every")]
    return [*args, "--growth.stages=1,2,4", "--growth.boundaries=0.25,0.5", "--checkpoint.every=4",
            "--checkpoint.keep_last=2"]


def train_env(**extra: str) -> dict[str, str]:
    """A child's environment: this checkout first on PYTHONPATH, CPU DeepSpeed, 1 thread per rank, no rank
    variables of this process."""
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("SLURM_", "OMPI_", "PMI"))}
    pp = env.get("PYTHONPATH")
    env.update(PYTHONPATH=f"{ROOT}:{pp}" if pp else str(ROOT), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def train_records(run_dir: Path) -> list[dict]:
    """The per-step training records (those with a loss and a step)."""
    return [r for r in records(run_dir) if "loss" in r and "step" in r]


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in train_records(run_dir)]


def one_process(out_dir: Path, name: str, args: list[str], config: Path = CONFIG) -> Path:
    """A plain 1-process run (no launcher) of ``config`` with ``args``; returns its run dir."""
    cmd = ["timeout", str(LAUNCH_TIMEOUT), PYTHON, "-m", "megagrow.cli", "train", str(config), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT + 30,
                       env=train_env(OMP_NUM_THREADS="2"), cwd=out_dir)
    assert r.returncode == 0, f"reference run failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out_dir / name
