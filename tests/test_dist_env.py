"""Rank discovery: Slurm node lists, launcher variables, and the multi-host loopback checks."""

from __future__ import annotations

import os
import socket

import pytest

from megagrow.distributed.env import check_reachable, expand_slurm_nodelist, rendezvous_failure, resolve_dist_env


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("n1", ["n1"]),
    ("node[01-04]", ["node01", "node02", "node03", "node04"]),
    ("a1,b[2-3]", ["a1", "b2", "b3"]),
    ("gpu[003-005,009],login1", ["gpu003", "gpu004", "gpu005", "gpu009", "login1"]),
    ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
    ("a-b[10,12]", ["a-b10", "a-b12"]),
])
def test_slurm_node_lists_expand(nodelist: str, hosts: list[str]) -> None:
    assert expand_slurm_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["a[1-", "a]1", "", "a[x-2]"])
def test_bad_node_list_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match="node list"):
        expand_slurm_nodelist(bad)


def test_slurm_step_node_list_wins_over_the_job_one() -> None:
    d = resolve_dist_env({"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_NODEID": "1",
                          "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_JOB_NODELIST": "a1,b[2-3]",
                          "SLURM_STEP_NODELIST": "b[2-3]"})
    assert (d.master_addr, d.local_world_size, d.local_world_known, d.node, d.multi_host) == ("b2", 2, True, 1, True)
    assert "4 rank(s) from the slurm environment" in d.describe() and "master b2:29500" in d.describe()


def test_mvapich_and_unknown_local_size() -> None:
    d = resolve_dist_env({"MV2_COMM_WORLD_RANK": "3", "MV2_COMM_WORLD_SIZE": "4", "MV2_COMM_WORLD_LOCAL_RANK": "1"})
    assert (d.rank, d.world_size, d.local_rank, d.source) == (3, 4, 1, "mpi")
    assert not d.local_world_known and not d.multi_host  # nothing said how many ranks share the host: no check
    assert "not given by the launcher" in d.describe()


def _two_hosts(node: int, master: str) -> dict[str, str]:
    return {"RANK": str(2 * node), "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": str(node), "MASTER_ADDR": master, "MASTER_PORT": "29511"}


def test_loopback_master_on_another_host_is_an_error_naming_master_addr() -> None:
    d = resolve_dist_env(_two_hosts(1, "127.0.0.1"))
    with pytest.raises(ValueError, match=r"MASTER_ADDR=127\.0\.0\.1 resolves to the loopback address"):
        check_reachable(d, "nccl", {})
    check_reachable(resolve_dist_env(_two_hosts(0, "127.0.0.1")), "nccl", {})  # rank 0's own host: fine
    single = resolve_dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"})
    check_reachable(single, "gloo", {})  # one host: loopback is right


def test_gloo_on_a_host_named_loopback_needs_gloo_socket_ifname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")
    d = resolve_dist_env(_two_hosts(0, "127.0.0.1"))
    with pytest.raises(ValueError, match="GLOO_SOCKET_IFNAME is not set"):
        check_reachable(d, "gloo", {})
    check_reachable(d, "gloo", {"GLOO_SOCKET_IFNAME": "eth0"})
    check_reachable(d, "nccl", {})  # NCCL picks a non-loopback interface itself


def test_unresolvable_master_is_named() -> None:
    d = resolve_dist_env(_two_hosts(1, "no-such-host.invalid"))
    with pytest.raises(ValueError, match="no-such-host.invalid' does not resolve"):
        check_reachable(d, "nccl", {})


def test_gloo_host_name_whose_first_address_is_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the 2-host system test: Debian's "127.0.1.1 <hostname>" line before the host's cluster entry.
    The name resolves to [127.0.1.1, 10.200.0.1]; gloo binds the first and advertises loopback."""
    real = socket.getaddrinfo

    def fake(host, *args, **kw):
        if host == "node1":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in ("127.0.1.1", "10.200.0.1")]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "gethostname", lambda: "node1")
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    d = resolve_dist_env(_two_hosts(0, "10.200.0.1"))
    with pytest.raises(ValueError, match=r"'node1' resolves to the loopback address 127\.0\.1\.1"):
        check_reachable(d, "gloo", {})
    check_reachable(d, "gloo", {"GLOO_SOCKET_IFNAME": "eth0"})


@pytest.mark.parametrize(("error", "hint"), [
    ("Timed out after 31 seconds waiting for clients. 1/2 clients joined.", "Not every rank joined within "
     "distributed.timeout_minutes=0.5"),
    ("The client socket has failed to connect to any network address of (10.200.0.9, 29611).",
     "could not reach rank 0's store"),
    ("Gloo connectFullMesh failed with [pair.cc:152] timed out connecting", "set GLOO_SOCKET_IFNAME"),
])
def test_rendezvous_failures_say_what_to_check(error: str, hint: str) -> None:
    d = resolve_dist_env(_two_hosts(1, "10.200.0.9"))
    msg = rendezvous_failure(d, 0.5, RuntimeError(error))
    assert msg.startswith("rank 2 of 4: the rendezvous at MASTER_ADDR=10.200.0.9 MASTER_PORT=29511 failed")
    assert error[:40] in msg and hint in msg


class _FakeComm:
    def __init__(self, rank: int, size: int, local_rank: int, local_size: int) -> None:
        self.r, self.s, self.lr, self.ls = rank, size, local_rank, local_size
        self.bcasts: list[object] = []

    def Get_rank(self) -> int:  # noqa: N802 (mpi4py's names)
        return self.r

    def Get_size(self) -> int:  # noqa: N802
        return self.s

    def Split_type(self, kind: int) -> _FakeComm:  # noqa: N802
        return _FakeComm(self.lr, self.ls, self.lr, self.ls)

    def Free(self) -> None:  # noqa: N802
        pass

    def bcast(self, value: object, root: int = 0) -> object:
        self.bcasts.append(value)
        return "10.200.0.1" if isinstance(value, str) or value is None else value  # rank 0's answer


def test_mpi_ranks_and_master_come_from_mpi4py_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    comm = _FakeComm(rank=3, size=4, local_rank=1, local_size=2)
    fake = types.ModuleType("mpi4py")
    fake.MPI = types.SimpleNamespace(COMM_WORLD=comm, COMM_TYPE_SHARED=1)
    monkeypatch.setitem(sys.modules, "mpi4py", fake)
    # the process environment, replaced for this test (resolve_dist_env writes RANK etc. back into it): an MPI
    # without the variables this code reads, so mpi4py answers
    monkeypatch.setattr(os, "environ", {"PATH": os.environ.get("PATH", ""), "PMIX_RANK": "3"})
    d = resolve_dist_env()
    assert (d.rank, d.world_size, d.local_rank, d.local_world_size, d.source) == (3, 4, 1, 2, "mpi")
    assert d.master_addr == "10.200.0.1" and d.master_port == 29500 and d.multi_host
    assert comm.bcasts[0] is None  # not rank 0: it receives the address
