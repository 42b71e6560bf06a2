"""DeepSpeed's launcher across two hosts (network namespaces), through megagrow-launch: per host with
--no_ssh, and from one host over pdsh + ssh (the default). ZeRO-2, 1 rank per host; the losses equal a
1-process run with the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system import cluster
from tests.system.launches import finish, hostfile, launch
from tests.system.train import CONFIG, PYTHON, STEPS, small_args, train_env, train_records

pytestmark = pytest.mark.system


def test_deepspeed_no_ssh_two_hosts_zero2(hosts, tmp_path: Path, text_data: Path, reference: list[float],
                                          port: int) -> None:
    hf = hostfile(tmp_path)
    args = small_args(tmp_path, "ds", text_data, steps=STEPS, micro=4, zero=2)
    procs, logs = {}, {}
    for rank, host in enumerate(("node1", "node2")):
        logs[host] = tmp_path / f"{host}.log"
        procs[host] = launch(host, [PYTHON, "-m", "megagrow.launch", "deepspeed", "--no-ssh", "--node-rank",
                                     str(rank), "--hostfile", str(hf), "--master-addr", "node1", "--master-port",
                                     str(port), "--workdir", str(tmp_path), str(CONFIG), *args],
                              tmp_path, train_env(), logs[host])
    finish(procs, logs)
    got = train_records(tmp_path / "ds")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in got] == pytest.approx(reference, rel=1e-4)
    log = logs["node1"].read_text()
    assert "2 rank(s) from the launcher environment" in log, log[-3000:]


def test_deepspeed_pdsh_two_hosts_zero2(hosts, ssh: cluster.Ssh, tmp_path: Path, text_data: Path,
                                        reference: list[float], port: int) -> None:
    """The default launcher: node1 starts both hosts' ranks over pdsh/ssh; the variables training needs reach
    node2 through the generated .deepspeed_env (DS_ACCELERATOR, OMP_NUM_THREADS and a user value)."""
    hf = hostfile(tmp_path)
    (tmp_path / ".deepspeed_env").write_text("MEGAGROW_SYSTEST_MARK=from-deepspeed-env\n")
    args = small_args(tmp_path, "pdsh", text_data, steps=STEPS, micro=4, zero=2)
    env = train_env(PATH=f"{ssh.bin}:{train_env()['PATH']}")
    log = tmp_path / "node1.log"
    p = launch("node1", [PYTHON, "-m", "megagrow.launch", "deepspeed", "--hostfile", str(hf), "--master-addr",
                          "node1", "--master-port", str(port), "--workdir", str(tmp_path),
                          "--each-rank-log", str(tmp_path / "ranks"), str(CONFIG), *args], tmp_path, env, log)
    finish({"node1": p}, {"node1": log})
    got = train_records(tmp_path / "pdsh")
    assert [r["loss"] for r in got] == pytest.approx(reference, rel=1e-4)
    env_file = next(tmp_path.glob(".deepspeed_env.*")).read_text()
    assert "DS_ACCELERATOR=cpu" in env_file and "MEGAGROW_SYSTEST_MARK=from-deepspeed-env" in env_file
    rank_logs = sorted((tmp_path / "ranks").glob("*.log"))
    assert len(rank_logs) == 2, f"one log per rank expected in {tmp_path / 'ranks'}: {rank_logs}"
