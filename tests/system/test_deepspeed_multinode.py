"""DeepSpeed's launcher across two hosts (network namespaces), through megagrow-launch: per host with
--no_ssh, and from one host over pdsh + ssh (the default). ZeRO-2, 1 rank per host; the losses equal a
1-process run with the same global batch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.system import cluster
from tests.system.train import CONFIG, LAUNCH_TIMEOUT, PYTHON, losses, one_process, small_args, train_env, train_records

pytestmark = pytest.mark.system

STEPS = 10


@pytest.fixture(scope="module")
def reference(shared_dir: Path, text_data: Path) -> list[float]:
    """Losses of 1 process x micro-batch 8: the global batch of 2 ranks x 4."""
    out = shared_dir / "ds-reference"
    out.mkdir()
    run = one_process(out, "one", small_args(out, "one", text_data, steps=STEPS, micro=8, zero=0))
    got = losses(run)
    assert len(got) == STEPS
    return got


def _hostfile(d: Path) -> Path:
    hf = d / "hostfile"
    hf.write_text("node1 slots=1\nnode2 slots=1\n")
    return hf


def _launch(host: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as f:
        return subprocess.Popen(cluster.on(host, ["timeout", "-k", "10", str(LAUNCH_TIMEOUT), *argv]), cwd=cwd,
                                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(procs: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    for p in procs.values():
        try:
            p.wait(timeout=LAUNCH_TIMEOUT + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    bad = {h: p.returncode for h, p in procs.items() if p.returncode != 0}
    assert not bad, f"exit codes {bad}\n" + "\n".join(f"--- {h}\n{logs[h].read_text()[-4000:]}" for h in logs)


def test_deepspeed_no_ssh_two_hosts_zero2(hosts, tmp_path: Path, text_data: Path, reference: list[float],
                                          port: int) -> None:
    hf = _hostfile(tmp_path)
    args = small_args(tmp_path, "ds", text_data, steps=STEPS, micro=4, zero=2)
    procs, logs = {}, {}
    for rank, host in enumerate(("node1", "node2")):
        logs[host] = tmp_path / f"{host}.log"
        procs[host] = _launch(host, [PYTHON, "-m", "megagrow.launch", "deepspeed", "--no-ssh", "--node-rank",
                                     str(rank), "--hostfile", str(hf), "--master-addr", "node1", "--master-port",
                                     str(port), "--workdir", str(tmp_path), str(CONFIG), *args],
                              tmp_path, train_env(), logs[host])
    _finish(procs, logs)
    got = train_records(tmp_path / "ds")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in got] == pytest.approx(reference, rel=1e-4)
    log = logs["node1"].read_text()
    assert "2 rank(s) from the launcher environment" in log, log[-3000:]


def test_deepspeed_pdsh_two_hosts_zero2(hosts, ssh: cluster.Ssh, tmp_path: Path, text_data: Path,
                                        reference: list[float], port: int) -> None:
    """The default launcher: node1 starts both hosts' ranks over pdsh/ssh; the variables training needs reach
    node2 through the generated .deepspeed_env (DS_ACCELERATOR, OMP_NUM_THREADS and a user value)."""
    hf = _hostfile(tmp_path)
    (tmp_path / ".deepspeed_env").write_text("MEGAGROW_SYSTEST_MARK=from-deepspeed-env\n")
    args = small_args(tmp_path, "pdsh", text_data, steps=STEPS, micro=4, zero=2)
    env = train_env(PATH=f"{ssh.bin}:{train_env()['PATH']}")
    log = tmp_path / "node1.log"
    p = _launch("node1", [PYTHON, "-m", "megagrow.launch", "deepspeed", "--hostfile", str(hf), "--master-addr",
                          "node1", "--master-port", str(port), "--workdir", str(tmp_path),
                          "--each-rank-log", str(tmp_path / "ranks"), str(CONFIG), *args], tmp_path, env, log)
    _finish({"node1": p}, {"node1": log})
    got = train_records(tmp_path / "pdsh")
    assert [r["loss"] for r in got] == pytest.approx(reference, rel=1e-4)
    env_file = next(tmp_path.glob(".deepspeed_env.*")).read_text()
    assert "DS_ACCELERATOR=cpu" in env_file and "MEGAGROW_SYSTEST_MARK=from-deepspeed-env" in env_file
    rank_logs = sorted((tmp_path / "ranks").glob("*.log"))
    assert len(rank_logs) == 2, f"one log per rank expected in {tmp_path / 'ranks'}: {rank_logs}"
