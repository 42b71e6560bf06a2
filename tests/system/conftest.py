"""Fixtures of the system tests (``make systest``): two network-namespace hosts, sshd on each, a 2-node Slurm
cluster, all torn down by PID and by name at the end, also when a test fails; a killed earlier run's leftovers
are removed first. Each fixture skips, with the reason, only where this machine cannot provide it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system import cluster
from tests.system.train import STEPS, losses, one_process, small_args


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (run `make systest-deps`)")


@pytest.fixture(scope="session")
def hosts() -> Iterator[tuple[cluster.Host, ...]]:
    """node1 (10.200.0.1) and node2 (10.200.0.2), each a network namespace; see tests/system/cluster.py."""
    if os.geteuid() != 0:
        pytest.skip("system tests need root (network namespaces, daemons)")
    _need("ip", "nsenter", "unshare")
    cluster.cleanup_leftovers()
    try:
        cluster.netns_up()
    except RuntimeError as e:
        cluster.netns_down()
        pytest.skip(f"cannot create network namespaces here: {e}")
    try:
        yield cluster.HOSTS
    finally:
        cluster.kill_recorded()
        cluster.netns_down()


@pytest.fixture(scope="session")
def ssh(hosts) -> Iterator[cluster.Ssh]:
    """An sshd on both hosts and an `ssh` wrapper (test key, no host-key prompts) to put first on PATH."""
    _need("/usr/sbin/sshd", "pdsh")
    s = cluster.sshd_up()
    try:
        yield s
    finally:
        cluster.kill_recorded(lambda n: n.startswith("sshd-"))


@pytest.fixture(scope="session")
def slurm(hosts) -> Iterator[cluster.Slurm]:
    """A 2-node Slurm cluster: slurmctld + slurmd on node1, slurmd on node2, a private munged."""
    _need("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "sbatch")
    sock = cluster.munge_up()
    try:
        yield cluster.slurm_up(sock)
    finally:
        cluster.kill_recorded(lambda n: n.startswith(("slurm", "munged")))


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every "host" sees (they share this machine's file system)."""
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="session")
def reference(shared_dir: Path, text_data: Path) -> list[float]:
    """Losses of 1 process x micro-batch 8: the global batch of 2 ranks x 4 (tests/system/train.py)."""
    out = shared_dir / "reference"
    out.mkdir()
    run = one_process(out, "one", small_args(out, "one", text_data, steps=STEPS, micro=8, zero=0))
    got = losses(run)
    assert len(got) == STEPS
    return got


_port = iter(range(29610, 29700))


@pytest.fixture
def port() -> int:
    """A distinct MASTER_PORT per test (the hosts' namespaces are fresh, so only this session uses them)."""
    return next(_port)
