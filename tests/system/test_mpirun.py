"""launcher/mpirun.sh: Open MPI's mpirun starts 2 ranks on two hosts over ssh; megagrow reads the OMPI_*
variables; ZeRO-2 losses equal the 1-process run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system import cluster
from tests.system.launches import finish, hostfile, launch
from tests.system.train import CONFIG, ROOT, STEPS, small_args, train_env, train_records

pytestmark = pytest.mark.system


def test_mpirun_two_ranks_on_two_hosts(hosts, ssh: cluster.Ssh, tmp_path: Path, text_data: Path,
                                       reference: list[float], port: int) -> None:
    if not Path("/usr/bin/mpirun").exists():
        pytest.skip("mpirun not installed (run `make systest-deps`)")
    hf = hostfile(tmp_path)
    env = train_env(PATH=f"{ssh.bin}:{train_env()['PATH']}", MEGAGROW_VENV=str(Path(cluster.PYTHON).parent.parent),
                    NETWORK=cluster.SUBNET, MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                    MPIRUN_ARGS="--allow-run-as-root")
    log = tmp_path / "mpirun.log"
    p = launch("node1", ["bash", str(ROOT / "launcher/mpirun.sh"), str(hf), str(CONFIG),
                         *small_args(tmp_path, "mpi", text_data, steps=STEPS, micro=4, zero=2)], tmp_path, env, log)
    finish({"node1": p}, {"node1": log})
    text = log.read_text()
    assert "2 rank(s) from the mpi environment" in text, text[-3000:]
    got = train_records(tmp_path / "mpi")
    assert [r["loss"] for r in got] == pytest.approx(reference, rel=1e-4)
