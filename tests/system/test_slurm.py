"""The shipped sbatch templates on a real 2-node Slurm cluster (one slurmd per network namespace): gpt-tiny with
the Apollo plan across both nodes through its transitions, in both patterns (one task per node running the
launcher, one task per rank via srun), and preemption end to end: signal -> checkpoint -> scontrol requeue ->
the requeued job resumes and ends with the uninterrupted run's losses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.system import cluster
from tests.system.train import APOLLO_CONFIG, ROOT, apollo_args, train_env, train_records

pytestmark = pytest.mark.system

STEPS = 24  # Apollo 1 -> 2 -> 4 layers: transitions at steps 6 and 12
# The shipped templates ask for 8 GPUs per node and 24 h; the test cluster has 1 CPU per node and no GPUs.
SMALL_JOB = ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0", "--time=10"]


def _submit(slurm: cluster.Slurm, template: str, workdir: Path, args: list[str], **env: str) -> str:
    job_env = slurm.env(train_env(MEGAGROW_VENV=str(Path(cluster.PYTHON).parent.parent), LOG_DIR=str(workdir / "logs"),
                                  GPUS_PER_NODE="1", **env))
    r = cluster.sh(cluster.on("node1", ["sbatch", "--parsable", *SMALL_JOB, f"--chdir={workdir}",
                                        f"--output={workdir}/slurm-%j.out", str(ROOT / "launcher" / template),
                                        str(APOLLO_CONFIG), *args]), env=job_env)
    return r.stdout.strip().split(";")[0]


def _job_log(workdir: Path, jid: str) -> str:
    out = workdir / f"slurm-{jid}.out"
    text = out.read_text() if out.exists() else "(no job output)"
    for f in sorted((workdir / "logs").rglob("*.log")):
        text += f"\n--- {f.relative_to(workdir)}\n{f.read_text()[-2500:]}"
    return text


def _wait_done(slurm: cluster.Slurm, jid: str, workdir: Path, timeout: float = 400) -> dict[str, str]:
    """Poll (not `sbatch --wait`, whose interval grows to 32 s) until the job is over; cancel it on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = slurm.job(jid)
        if job.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                                   "BOOT_FAIL", "DEADLINE", "PREEMPTED"):
            return job
        time.sleep(0.5)
    slurm.cmd(["scancel", jid], check=False)
    raise AssertionError(f"job {jid} not done after {timeout} s: {slurm.job(jid)}\n{_job_log(workdir, jid)}")


def _check_apollo(run_dir: Path) -> list[dict]:
    recs = train_records(run_dir)
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1)), [r["step"] for r in recs]
    phases = [r["phase"] for r in recs]
    assert phases[0] == "apollo-N1" and phases[-1] == "apollo-N4", phases
    assert "apollo-N2" in phases and phases.index("apollo-N2") == 6 and phases.index("apollo-N4") == 12, phases
    return recs


@pytest.fixture(scope="module")
def uninterrupted(slurm: cluster.Slurm, shared_dir: Path, text_data: Path) -> list[dict]:
    """launcher/slurm-per-node.sbatch (srun: one `megagrow-launch torchrun` per node), not interrupted."""
    work = shared_dir / "slurm-per-node"
    work.mkdir()
    jid = _submit(slurm, "slurm-per-node.sbatch", work, apollo_args(work, "apollo", text_data, steps=STEPS))
    job = _wait_done(slurm, jid, work)
    assert job["JobState"] == "COMPLETED", f"{job}\n{_job_log(work, jid)}"
    recs = _check_apollo(work / "apollo")
    log = _job_log(work, jid)
    assert "2 rank(s) from the launcher environment" in log, log
    assert list((work / "logs" / jid).glob("node-*.log")), "one log per node expected"
    return recs


def test_slurm_one_task_per_node_trains_apollo_across_both_nodes(uninterrupted: list[dict]) -> None:
    assert uninterrupted[-1]["loss"] < uninterrupted[0]["loss"]


def test_slurm_one_task_per_rank_preempted_requeued_and_resumed(slurm: cluster.Slurm, shared_dir: Path,
                                                               text_data: Path, uninterrupted: list[dict]) -> None:
    """launcher/slurm.sbatch (srun: one task per rank). While the ranks pause in the step-6 transition (fault
    injection), the batch shell gets USR1, as --signal=B:USR1@300 delivers it before the time limit; the
    template asks the ranks to stop, they checkpoint, it requeues the job; the second run resumes and
    finishes with the losses of the uninterrupted run."""
    work = shared_dir / "slurm-per-rank"
    work.mkdir()
    jid = _submit(slurm, "slurm.sbatch", work, apollo_args(work, "apollo", text_data, steps=STEPS),
                  MEGAGROW_FAULT="transition:6:20")
    rank0 = work / "logs" / jid / "rank-0.log"
    cluster.wait_for(lambda: rank0.exists() and "pausing in transition at step 6" in rank0.read_text(), 300,
                     f"job {jid} reaching the step-6 transition\n{_job_log(work, jid)}", interval=0.5)
    slurm.cmd(["scancel", "--batch", "--signal=USR1", jid])
    job = _wait_done(slurm, jid, work)
    log = _job_log(work, jid)
    assert job["JobState"] == "COMPLETED", f"{job}\n{log}"
    assert job.get("Restarts") == "1", f"the job should have been requeued once: {job}\n{log}"
    assert "requeueing job" in log and "restart 1" in log, log
    recs = _check_apollo(work / "apollo")
    assert "resum" in log.lower(), log
    assert [r["loss"] for r in recs] == pytest.approx([r["loss"] for r in uninterrupted], rel=1e-4)


def test_slurm_one_task_per_node_time_limit_requeued_and_resumed(slurm: cluster.Slurm, shared_dir: Path,
                                                                 text_data: Path, uninterrupted: list[dict]) -> None:
    """launcher/slurm-per-node.sbatch under the time-limit warning (USR1 to the batch shell): SIGTERM reaches
    torchrun's agent and the ranks, the agent forwards another copy (ignored as a duplicate), the ranks
    checkpoint, the job is requeued, waits out Slurm's hold on requeued jobs (AuthInfo cred_expire, 20 s on the
    test cluster; not hurried: a relaunch within the old credential's revocation fails the job with "Job
    credential revoked"), resumes and ends with the uninterrupted losses."""
    work = shared_dir / "slurm-per-node-requeued"
    work.mkdir()
    jid = _submit(slurm, "slurm-per-node.sbatch", work, apollo_args(work, "apollo", text_data, steps=STEPS),
                  MEGAGROW_FAULT="transition:6:20")
    cluster.wait_for(lambda: "pausing in transition at step 6" in _job_log(work, jid), 300,
                     f"job {jid} reaching the step-6 transition", interval=0.5)
    slurm.cmd(["scancel", "--batch", "--signal=USR1", jid])
    job = _wait_done(slurm, jid, work)
    log = _job_log(work, jid)
    assert job["JobState"] == "COMPLETED" and job.get("Restarts") == "1", f"{job}\n{log}"
    assert "USR1 (time limit near or preemption)" in log and "restart 1" in log, log
    recs = _check_apollo(work / "apollo")
    assert [r["loss"] for r in recs] == pytest.approx([r["loss"] for r in uninterrupted], rel=1e-4)
