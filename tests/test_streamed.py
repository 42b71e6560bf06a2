"""Streamed transitions (``distributed.full_state=streamed``, ZeRO-3) are bit-identical to ``rank0``: the same
per-step losses and the same final weights, AdamW moments and step counts, for every plan with transitions, on
2 and 3 ranks; a resume from a checkpoint taken between streamed transitions (multi-level's snapshot kept in
partitions, written as per-rank plan shards), on 2 and 3 ranks, and a kill -9 inside one give the uninterrupted
run's losses.

Every configuration of a world size trains in ONE spawned launch (the ~10 s start-up paid once per world size).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from megagrow.distributed.env import free_port
from tests.trainutil import assert_job_ok, clean_env, launch_jobs, records

STEPS = 8
GPT_TINY = Path(__file__).parents[1] / "configs" / "gpt-tiny.yaml"
COMMON = ["--model.size=gpt-tiny", "--model.n_layers=4", "--model.hidden=64", "--model.n_heads=4",
          "--data.seq_len=32", "--model.max_seq_len=32", "--data.eval_samples=32", f"--train.max_steps={STEPS}",
          "--train.eval_every=0", "--logging.log_every=1", "--logging.progress=off", "--logging.tensorboard=false",
          "--optim.warmup_steps=2", "--optim.lr=3e-3", "--checkpoint.every=0", "--checkpoint.save_final=true",
          "--distributed.zero_stage=3", "--data.micro_batch_size=4", "--model.ln_eps=1e-12"]
# every plan with a transition (subpath and scratch have none; LiGO's learned operator uses replicated)
PLANS = {
    "apollo": ["--growth.plan=apollo", "--growth.stages=1,2,4", "--growth.boundaries=2,4",
               "--growth.boundary_unit=steps", "--train.grad_accum=2"],
    "stackbert": ["--growth.plan=stackbert", "--growth.stages=1,2,4", "--growth.boundaries=2,4",
                  "--growth.boundary_unit=steps"],
    "gstack": ["--growth.plan=gstack", "--growth.stages=1,4", "--growth.boundaries=3",
               "--growth.boundary_unit=steps"],
    "multilevel": ["--growth.plan=multilevel", "--growth.multilevel.levels=2", "--growth.boundaries=2,5",
                   "--growth.boundary_unit=steps", "--growth.moments=copy"],
    "multilevel-3": ["--growth.plan=multilevel", "--growth.multilevel.levels=3", "--growth.boundaries=2,3,5,6",
                     "--growth.boundary_unit=steps"],
    "apollo+multilevel": ["--growth.plan=apollo+multilevel", "--growth.multilevel.levels=2",
                          "--growth.boundaries=2,5", "--growth.boundary_unit=steps"],
    "bert2bert": ["--growth.plan=bert2bert", "--growth.boundaries=3", "--growth.boundary_unit=steps"],
    "bert2bert-fpi": ["--growth.plan=bert2bert", "--growth.bert2bert.method=fpi", "--growth.boundaries=3",
                      "--growth.boundary_unit=steps"],
    "msg": ["--growth.plan=msg", "--growth.boundaries=3", "--growth.boundary_unit=steps",
            "--growth.msg.ramp_steps=2"],
}
PLACEMENTS = ("rank0", "streamed")


def _args(root: Path, name: str, plan: str, data: Path, *extra: str) -> list[str]:
    return [*COMMON, *PLANS[plan], f"--run.out_dir={root}", f"--run.name={name}", f"--data.path={data}", *extra]


def _jobs(root: Path, data: Path, world: int) -> list[tuple[str, list[str]]]:
    jobs = [(f"{plan}-{where}", _args(root, f"{plan}-{where}", plan, data, f"--distributed.full_state={where}"))
            for plan in PLANS for where in PLACEMENTS]
    # resume between the coalescing and the de-coalescing: the snapshot comes from the per-rank plan shards
    for plan in ("multilevel", "apollo"):
        name = f"{plan}-resumed"
        args = _args(root, name, plan, data, "--distributed.full_state=streamed", "--checkpoint.every=3",
                     "--checkpoint.keep_last=10")
        jobs += [(f"{name}-first", [*args, "--train.exit_at_step=3"]), (name, args)]
    return jobs


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, text_data: Path):
    world = request.param
    root = tmp_path_factory.mktemp(f"streamed{world}")
    return world, root, launch_jobs(root, _jobs(root, text_data, world), world, timeout_s=900)


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    out: dict[str, torch.Tensor] = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        out.update({f"{f.name.split('-')[0]}:{k}": v for k, v in load_file(str(f)).items()})
    meta = json.loads((ckpt / "meta.json").read_text())
    out["steps"] = torch.tensor([meta["adam_step"], *sorted(meta["param_steps"].values())])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_streamed_is_bit_identical_to_rank0(plan: str, runs) -> None:
    world, root, status = runs
    for where in PLACEMENTS:
        assert_job_ok(status, f"{plan}-{where}")
    a, b = records(root / f"{plan}-rank0"), records(root / f"{plan}-streamed")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [(r["loss"], r["flops"], r["phase"]) for r in b] == [(r["loss"], r["flops"], r["phase"]) for r in a]
    ref, got = _final_state(root / f"{plan}-rank0"), _final_state(root / f"{plan}-streamed")
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    assert len({r["phase"] for r in b}) > 1  # the run went through its transitions


@pytest.mark.slow
@pytest.mark.parametrize("plan", ["multilevel", "apollo"])
def test_resume_between_streamed_transitions(plan: str, runs) -> None:
    world, root, status = runs
    assert_job_ok(status, f"{plan}-resumed-first")
    assert_job_ok(status, f"{plan}-resumed")
    whole, resumed = records(root / f"{plan}-streamed"), records(root / f"{plan}-resumed")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]
    if plan == "multilevel":  # the snapshot was written by every rank, a share each
        ckpt = root / f"{plan}-resumed" / "checkpoints" / "step_00000003"
        assert sorted(p.name for p in ckpt.glob("plan-*")) == [f"plan-0000{r}-of-0000{world}.safetensors"
                                                               for r in range(world)]


def _ranks(args: list[str], env: dict[str, str], log: Path) -> list[subprocess.Popen]:
    """2 ranks of ``megagrow train`` started directly (not under torchrun, whose workers a kill of the launcher
    would leave running), their output appended to ``log``."""
    port = free_port()
    procs = []
    with log.open("a") as out:
        for rank in range(2):
            rank_env = {**env, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            procs.append(subprocess.Popen([sys.executable, "-m", "megagrow.cli", "train", str(GPT_TINY), *args],
                                          env=rank_env, stdout=out, stderr=subprocess.STDOUT))
    return procs


def _finish(procs: list[subprocess.Popen], log: Path) -> None:
    for p in procs:
        assert p.wait(timeout=600) == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_kill_during_a_streamed_transition_resumes_exactly(tmp_path: Path, text_data: Path) -> None:
    """kill -9 of both ranks while a streamed transition runs (step 5: the de-coalescing, after a checkpoint at
    step 3 inside the coarse phase); the relaunch resumes from step 3 with the uninterrupted run's losses."""
    args = _args(tmp_path, "killed", "multilevel", text_data, "--distributed.full_state=streamed",
                 "--checkpoint.every=3")
    env = {**clean_env(), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"
    procs = _ranks(args, {**env, "MEGAGROW_FAULT": "transition:5:600"}, log)
    try:
        deadline = time.time() + 300
        while log.read_text().count("pausing in transition at step 5") < 2:  # both ranks inside it
            if any(p.poll() is not None for p in procs) or time.time() > deadline:
                pytest.fail(f"the run never paused in the transition: {log.read_text()[-3000:]}")
            time.sleep(0.5)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    run = tmp_path / "killed"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000003"
    _finish(_ranks(args, env, log), log)
    _finish(_ranks(_args(tmp_path, "whole", "multilevel", text_data, "--distributed.full_state=streamed"), env, log),
            log)
    got = {r["step"]: r["loss"] for r in records(run)}
    assert [got[s] for s in range(1, STEPS + 1)] == [r["loss"] for r in records(tmp_path / "whole")]
