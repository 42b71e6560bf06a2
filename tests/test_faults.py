"""Faults: non-finite steps, kill -9 at any point, dead or hung ranks, resume on another world size / ZeRO stage."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from megagrow.checkpointing.store import latest_checkpoint, load_checkpoint
from megagrow.cli import main
from megagrow.distributed.env import free_port
from megagrow.trainer.faults import EXIT_NONFINITE, EXIT_PEER
from tests.trainutil import TINY, clean_env, records, run, tiny_config

ROOT = Path(__file__).resolve().parents[1]
GPT = str(ROOT / "configs/gpt-tiny.yaml")


# ------------------------------------------------------------------------------------------ non-finite steps


@pytest.mark.parametrize(("zero", "precision"), [(0, "fp32"), (1, "fp32"), (2, "fp32"), (3, "fp32"), (0, "bf16"),
                                                 (2, "bf16")])
def test_nonfinite_step_is_skipped(zero: int, precision: str, tmp_path: Path, monkeypatch) -> None:
    """A NaN loss at step index 3: the step moves no parameter, moment or Adam step; it is counted and the run
    goes on with finite losses."""
    monkeypatch.setenv("MEGAGROW_FAULT", "nan:3")
    cfg = tiny_config("deit", tmp_path, "nan", f"--distributed.zero_stage={zero}", f"--train.precision={precision}",
                      "--train.max_steps=6", "--checkpoint.every=1", "--checkpoint.keep_last=10",
                      "--optim.weight_decay=0.1")
    recs = records(run(cfg).run_dir)
    assert [r["skipped_steps"] for r in recs] == [0, 0, 0, 1, 1, 1]
    assert recs[3]["loss"] != recs[3]["loss"] and all(r["loss"] == r["loss"] for r in recs[4:])
    ckpt = tmp_path / "nan" / "checkpoints"
    a, _ = load_checkpoint(ckpt / "step_00000003")
    b, _ = load_checkpoint(ckpt / "step_00000004")
    assert a.adam_step == b.adam_step
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name
        assert torch.equal(a.exp_avg[name], b.exp_avg[name]) and torch.equal(a.exp_avg_sq[name], b.exp_avg_sq[name])
    c, _ = load_checkpoint(ckpt / "step_00000005")
    assert not torch.equal(b.params["blocks.0.attn.qkv.weight"], c.params["blocks.0.attn.qkv.weight"])


def _cli(tmp_path: Path, name: str, *extra: str) -> list[str]:
    args = [*TINY["deit"], f"--run.out_dir={tmp_path}", f"--run.name={name}", "--data.micro_batch_size=8",
            "--data.eval_samples=32", "--train.eval_every=4", "--logging.log_every=1", "--logging.progress=off",
            "--optim.warmup_steps=2", "--optim.lr=3e-3", "--checkpoint.every=0", *extra]
    return ["train", str(ROOT / "configs/deit-tiny.yaml"), *args]


def test_nonfinite_stop_policy_checkpoints_and_exits_3(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MEGAGROW_FAULT", "nan:3")
    assert main(_cli(tmp_path, "stop", "--train.nonfinite=stop", "--train.max_steps=8")) == EXIT_NONFINITE
    assert "non-finite" in capsys.readouterr().err
    path = latest_checkpoint(tmp_path / "stop" / "checkpoints")
    assert path is not None and path.name == "step_00000004"  # the skipped step 4 left the state of step 3


def test_too_many_consecutive_skips_stop(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MEGAGROW_FAULT", "nan:2-7")
    code = main(_cli(tmp_path, "many", "--train.max_consecutive_skips=3", "--train.max_steps=10"))
    assert code == EXIT_NONFINITE and "3 consecutive" in capsys.readouterr().err
    assert [r["skipped_steps"] for r in records(tmp_path / "many")] == [0, 0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------- kill -9

APOLLO = ["--growth.plan=apollo", "--growth.stages=1,2,4", "--growth.boundaries=4,7", "--growth.boundary_unit=steps",
          "--model.n_layers=4"]


def _args(tmp_path: Path, name: str, data: Path, *extra: str) -> list[str]:
    return [*TINY["gpt"], f"--run.out_dir={tmp_path}", f"--run.name={name}", "--data.micro_batch_size=8",
            "--data.eval_samples=32", "--train.eval_every=5", "--logging.log_every=1", "--logging.progress=off",
            "--optim.warmup_steps=2", "--optim.lr=3e-3", f"--data.path={data}", "--train.max_steps=10",
            "--model.dropout=0.1", "--checkpoint.every=1", "--checkpoint.keep_last=3", *APOLLO, *extra]


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "megagrow.cli", "train", GPT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**clean_env(), "OMP_NUM_THREADS": "1",
                                                                       **(env or {})})


def _wait_for(proc: subprocess.Popen, pred, timeout: float = 180) -> str:
    """Read the child's output until ``pred(line)``; returns that line."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited with {proc.returncode} before the expected point")
        if pred(line):
            return line
    raise AssertionError("timed out waiting for the child")


def _finish(args: list[str]) -> None:
    """Run to the end in a child (one thread, like the killed children: the same float summation order)."""
    proc = _start(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, text_data: Path) -> list[dict]:
    out = tmp_path_factory.mktemp("ref")
    _finish(_args(out, "ref", text_data))
    return records(out / "ref")


def _resume_and_compare(tmp_path: Path, name: str, text_data: Path, reference: list[dict]) -> None:
    _finish(_args(tmp_path, name, text_data))
    resumed = records(tmp_path / name)
    assert [r["step"] for r in resumed] == list(range(1, 11))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in reference]
    assert [(r["flops"], r["tokens"], r["depth"]) for r in resumed] == [(r["flops"], r["tokens"], r["depth"])
                                                                        for r in reference]


@pytest.mark.slow
def test_kill_9_at_a_random_step(tmp_path: Path, text_data: Path, reference: list[dict]) -> None:
    k = random.Random(os.getpid()).randint(2, 8)
    proc = _start(_args(tmp_path, "k", text_data))
    latest = tmp_path / "k" / "checkpoints" / "latest"
    deadline = time.monotonic() + 180
    while not (latest.is_file() and latest.read_text().strip() >= f"step_{k:08d}") and proc.poll() is None:
        assert time.monotonic() < deadline, "the child never reached the step"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _resume_and_compare(tmp_path, "k", text_data, reference)


@pytest.mark.slow
def test_kill_9_during_a_transition(tmp_path: Path, text_data: Path, reference: list[dict]) -> None:
    """The 2 -> 4 stage transition at step index 7: killed after the old engine is gone, before the new one."""
    proc = _start(_args(tmp_path, "t", text_data), {"MEGAGROW_FAULT": "transition:7:600"})
    _wait_for(proc, lambda ln: "pausing in transition at step 7" in ln)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(tmp_path / "t" / "checkpoints").name == "step_00000007"
    _resume_and_compare(tmp_path, "t", text_data, reference)


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write(tmp_path: Path, text_data: Path, reference: list[dict]) -> None:
    """Killed with step 5's shards written but not renamed: resume takes step 4 and never the partial one."""
    proc = _start(_args(tmp_path, "c", text_data), {"MEGAGROW_FAULT": "checkpoint:5:600"})
    _wait_for(proc, lambda ln: "pausing in checkpoint at step 5" in ln)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = tmp_path / "c" / "checkpoints"
    assert (ckpt / "step_00000005.tmp").is_dir() and not (ckpt / "step_00000005").exists()
    assert latest_checkpoint(ckpt).name == "step_00000004"
    _resume_and_compare(tmp_path, "c", text_data, reference)
    assert not (ckpt / "step_00000005.tmp").exists()


# ----------------------------------------------------------------------------------- dead and hung ranks


def _two_ranks(tmp_path: Path, text_data: Path, fault: str, timeout_min: float) -> list[subprocess.Popen]:
    port = free_port()
    args = [*_args(tmp_path, "dead", text_data, f"--distributed.timeout_minutes={timeout_min}",
                   "--distributed.zero_stage=2", "--checkpoint.every=0"), "--data.micro_batch_size=4"]
    procs = []
    for rank in range(2):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "MEGAGROW_FAULT": fault, "MEGAGROW_FAULT_RANK": "1"}
        procs.append(_start(args, env))
    return procs


@pytest.mark.slow
@pytest.mark.parametrize("how", ["killed", "hung"])
def test_survivor_exits_nonzero_within_the_timeout(how: str, tmp_path: Path, text_data: Path) -> None:
    """Rank 1 stops inside the step-4 transition; rank 0 goes on into the next collective. Killed: rank 0 fails
    at once; hung: rank 0 fails when the collective timeout (0.25 min) expires. Either way exit code 4 and a
    message that names the cause, instead of hanging."""
    timeout_min = 0.25
    procs = _two_ranks(tmp_path, text_data, "transition:4:600", timeout_min)
    try:
        _wait_for(procs[1], lambda ln: "pausing in transition at step 4" in ln)
        t0 = time.monotonic()
        if how == "killed":
            procs[1].send_signal(signal.SIGKILL)
        out, _ = procs[0].communicate(timeout=timeout_min * 60 + 60)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == EXIT_PEER, out[-3000:]
    assert "a collective failed" in out and "distributed.timeout_minutes=0.25" in out
    assert waited < timeout_min * 60 + 45


# ----------------------------------------------------------------- resume on another world size / ZeRO stage


def _torchrun(n: int, args: list[str]) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--nproc_per_node", str(n), "--master_port", str(free_port()), "-m",
                        "megagrow.cli", "train", GPT, *args], capture_output=True, text=True, timeout=600,
                       env={**clean_env(), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_resume_a_2_rank_zero2_checkpoint_on_1_and_3_ranks_and_zero3(tmp_path: Path, text_data: Path) -> None:
    """Global batch 12 throughout: 2 ranks x 6 (ZeRO-2) stop after step 5 (inside the 2-slot Apollo stage, the
    4-slot transition still ahead); the checkpoint resumes on 1 rank x 12 (ZeRO-0) and on 3 ranks x 4
    (ZeRO-3). Both continue with the losses of an uninterrupted 1-rank run, within 1e-4 relative (fp32; the
    gradient all-reduce sums in a different order on a different number of ranks)."""
    from megagrow.config import load_config

    base = [a for a in _args(tmp_path, "w", text_data, "--model.dropout=0.0") if not a.startswith("--run.name")]
    ref = records(run(load_config(GPT, [*base, "--run.name=ref", "--data.micro_batch_size=12"])).run_dir)
    _torchrun(2, [*base, "--run.name=two", "--data.micro_batch_size=6", "--distributed.zero_stage=2",
                  "--train.exit_at_step=5"])
    for name, ranks, mb, zero in (("one", 1, 12, 0), ("three", 3, 4, 3)):
        import shutil

        shutil.copytree(tmp_path / "two", tmp_path / name)
        more = [*base, f"--run.name={name}", f"--data.micro_batch_size={mb}", f"--distributed.zero_stage={zero}"]
        if ranks == 1:
            run(load_config(GPT, more))
        else:
            _torchrun(ranks, more)
        got = records(tmp_path / name)
        assert [r["step"] for r in got] == list(range(1, 11))
        assert [r["samples"] for r in got] == [r["samples"] for r in ref]
        assert [r["flops"] for r in got] == [r["flops"] for r in ref]
        assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in ref], rel=1e-4)
