"""Helpers for tests that run the real trainer in-process."""

from __future__ import annotations

import json
import os
import time
import traceback
import warnings
from pathlib import Path

import pytest
import torch

from megagrow.config import Config, load_config
from megagrow.distributed.env import free_port
from megagrow.growth.plans import PLANS
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


Jobs = list[tuple[str, list[str]]]  # (job name, config overrides), trained one after another on every rank


def _rank_jobs(rank: int, world: int, port: int, jobs: Jobs, out: str, plans: dict[str, type]) -> None:
    """One spawned rank of :func:`launch_jobs`: every job in order; a failing job is recorded (with its error) and
    the rank goes on with the next one (the error is raised on every rank alike or the job hangs until
    ``distributed.timeout_minutes``). ``plans``: test plans registered for the jobs."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    status: dict[str, dict] = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, cls in plans.items():
            mp.setitem(PLANS, name, cls)
        for name, args in jobs:
            t0 = time.perf_counter()
            try:
                train(load_config(None, [*args, "--distributed.timeout_minutes=2"]))
                status[name] = {"ok": True, "seconds": time.perf_counter() - t0}
            except Exception as e:  # recorded for the test to assert on
                status[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "type": type(e).__name__,
                                "trace": traceback.format_exc()[-3000:], "seconds": time.perf_counter() - t0}
            (Path(out) / f"rank{rank}.json").write_text(json.dumps(status, indent=1))


def launch_jobs(root: Path, jobs: Jobs, world: int, timeout_s: float, plans: dict[str, type] | None = None
                ) -> list[dict]:
    """Train ``jobs`` in ONE spawned launch of ``world`` gloo ranks (the ~10 s start-up paid once); every rank's
    ``{job: {"ok", "seconds", "error", "trace"}}``."""
    ctx = torch.multiprocessing.start_processes(_rank_jobs, args=(world, free_port(), jobs, str(root), plans or {}),
                                                nprocs=world, join=False, start_method="spawn")
    deadline = time.time() + timeout_s
    try:
        while not ctx.join(timeout=5):
            if time.time() > deadline:
                raise TimeoutError(f"the {world}-rank launch did not finish in {timeout_s:.0f} s; status so far in "
                                   f"{root}")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [json.loads((root / f"rank{r}.json").read_text()) for r in range(world)]


def assert_job_ok(status: list[dict], name: str) -> None:
    for rank, st in enumerate(status):
        assert name in st, f"job {name} did not run on rank {rank}"
        assert st[name]["ok"], f"rank {rank}, job {name}: {st[name]['trace']}"
