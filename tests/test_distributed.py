"""Real multi-process runs on CPU (gloo): torchrun with 2 ranks gives the losses of 1 rank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from megagrow.distributed.env import first_slurm_host, free_port, resolve_dist_env
from tests.trainutil import clean_env, records, run, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_env_resolution_order() -> None:
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    d = resolve_dist_env(env)
    assert (d.rank, d.world_size, d.local_rank, d.master_addr, d.source) == (3, 8, 1, "gpu07", "slurm")
    assert env["RANK"] == "3" and env["WORLD_SIZE"] == "8"
    d = resolve_dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "SLURM_PROCID": "9",
                          "SLURM_NTASKS": "16", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"})
    assert (d.rank, d.world_size, d.source, d.master_port) == (1, 2, "launcher", 1234)
    d = resolve_dist_env({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"})
    assert (d.rank, d.world_size, d.local_rank, d.master_addr, d.source) == (1, 2, 1, "127.0.0.1", "mpi")
    d = resolve_dist_env({})
    assert (d.rank, d.world_size, d.source) == (0, 1, "single") and d.master_port > 0
    with pytest.raises(ValueError, match="RANK='x'"):
        resolve_dist_env({"RANK": "x", "WORLD_SIZE": "2"})


@pytest.mark.parametrize(("nodelist", "first"), [("n1", "n1"), ("gpu[003-005,009],login1", "gpu003"),
                                                  ("a-b[10,12]", "a-b10")])
def test_first_slurm_host(nodelist: str, first: str) -> None:
    assert first_slurm_host(nodelist) == first


@pytest.mark.slow
def test_two_ranks_match_one_rank(tmp_path: Path, text_data: Path) -> None:
    """Same global batch (8) as 2 ranks x 4 under ZeRO-2 and as 1 rank x 8: the same samples per step,
    so the same losses up to float summation order."""
    one = run(tiny_config("gpt", tmp_path, "one", "--data.micro_batch_size=8", "--train.max_steps=6",
                          data_path=text_data))
    args = ["--model.size=gpt-tiny", "--model.n_layers=3", "--model.hidden=64", "--model.n_heads=2",
            "--data.seq_len=32", "--model.max_seq_len=32", f"--run.out_dir={tmp_path}", "--run.name=two",
            "--data.micro_batch_size=4", "--data.eval_samples=32", "--train.max_steps=6", "--train.eval_every=4",
            "--logging.log_every=1", "--logging.progress=off", "--optim.warmup_steps=2", "--optim.lr=3e-3",
            "--checkpoint.every=0", "--distributed.zero_stage=2", f"--data.path={text_data}"]
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "megagrow.cli",
                        "train", str(ROOT / "configs/gpt-tiny.yaml"), *args],
                       capture_output=True, text=True, timeout=240, env={**clean_env(), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a, b = records(one.run_dir), records(tmp_path / "two")
    assert [x["step"] for x in b] == [1, 2, 3, 4, 5, 6]
    assert [x["samples"] for x in a] == [x["samples"] for x in b]
    assert [x["flops"] for x in a] == [x["flops"] for x in b]
    assert [x["loss"] for x in b] == pytest.approx([x["loss"] for x in a], rel=1e-4)
