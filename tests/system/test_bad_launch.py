"""Launches that cannot work end with a clear error, within distributed.timeout_minutes, never a hang: a
malformed or wrong hostfile, an unreachable master, a rank that never joins, and the multi-host gloo job
whose host name resolves to loopback (gloo would advertise 127.0.0.1 to the other host)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.system import cluster
from tests.system.launches import hostfile, launch, wait
from tests.system.train import CONFIG, PYTHON, small_args, train_env

pytestmark = pytest.mark.system

TIMEOUT_MIN = 0.5  # distributed.timeout_minutes of these launches: 30 s
LIMIT = 180  # the outer `timeout`; every launch must end well before it


def _run(host: str, argv: list[str], tmp_path: Path, name: str, env: dict[str, str] | None = None
         ) -> tuple[int, str, float]:
    log = tmp_path / f"{name}.log"
    t0 = time.monotonic()
    rc = wait(launch(host, argv, tmp_path, env or train_env(), log, limit=LIMIT), LIMIT)
    return rc, log.read_text(), time.monotonic() - t0


def _train(tmp_path: Path, text_data: Path, name: str) -> list[str]:
    return [str(CONFIG), *small_args(tmp_path, name, text_data, steps=4, zero=0, timeout_minutes=TIMEOUT_MIN)]


def test_malformed_hostfile_is_refused_naming_the_line(hosts, tmp_path: Path, text_data: Path) -> None:
    hf = hostfile(tmp_path, "node1 slots=1\nnode2 slots two\n")
    rc, out, took = _run("node1", [PYTHON, "-m", "megagrow.launch", "deepspeed", "--hostfile", str(hf),
                                   *_train(tmp_path, text_data, "bad")], tmp_path, "malformed")
    assert rc == 2 and f"hostfile {hf}, line 2: 'node2 slots two': expected '<host> slots=<n>'" in out, out
    assert took < 30


def test_hostfile_with_an_unknown_host_fails_fast(hosts, ssh: cluster.Ssh, tmp_path: Path, text_data: Path,
                                                  port: int) -> None:
    hf = hostfile(tmp_path, "node1 slots=1\nnode9 slots=1\n")
    env = train_env(PATH=f"{ssh.bin}:{train_env()['PATH']}")
    rc, out, took = _run("node1", [PYTHON, "-m", "megagrow.launch", "deepspeed", "--hostfile", str(hf),
                                   "--master-port", str(port), "--workdir", str(tmp_path),
                                   *_train(tmp_path, text_data, "unknown")], tmp_path, "unknown", env)
    assert rc == 2 and took < 30, (rc, took, out[-3000:])
    assert f"hostfile {hf}: host(s) 'node9'" in out and "do not resolve" in out, out[-3000:]


def test_unreachable_master_fails_within_the_timeout(hosts, tmp_path: Path, text_data: Path, port: int) -> None:
    """Rank 1 on node2 with MASTER_ADDR = an address nobody has (10.200.0.9)."""
    env = train_env(RANK="1", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="10.200.0.9", MASTER_PORT=str(port))
    rc, out, took = _run("node2", [PYTHON, "-m", "megagrow.cli", "train", *_train(tmp_path, text_data, "unreach")],
                         tmp_path, "unreachable", env)
    assert rc == 4 and took < LIMIT - 30, (rc, took, out[-3000:])
    assert "megagrow: error: rank 1 of 2: the rendezvous at MASTER_ADDR=10.200.0.9" in out, out[-3000:]
    assert "could not reach rank 0's store within distributed.timeout_minutes=0.5" in out, out[-3000:]


def test_rank_that_never_joins_fails_within_the_timeout(hosts, tmp_path: Path, text_data: Path, port: int) -> None:
    """Rank 0 of 2 on node1; rank 1 is never started."""
    env = train_env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="node1", MASTER_PORT=str(port))
    rc, out, took = _run("node1", [PYTHON, "-m", "megagrow.cli", "train", *_train(tmp_path, text_data, "alone")],
                         tmp_path, "alone", env)
    assert rc == 4 and took < LIMIT - 30, (rc, took, out[-3000:])
    assert "megagrow: error: rank 0 of 2: the rendezvous at MASTER_ADDR=node1" in out, out[-3000:]
    assert "1/2 clients joined" in out and "Not every rank joined within distributed.timeout_minutes=0.5" in out


def test_host_name_on_loopback_is_refused_naming_gloo_socket_ifname(hosts, tmp_path: Path, text_data: Path,
                                                                    port: int) -> None:
    """Debian's default /etc/hosts maps the host's own name to 127.0.1.1: gloo would advertise it to the other
    host, which then waits until the timeout. megagrow refuses at once and names GLOO_SOCKET_IFNAME."""
    bad_hosts = tmp_path / "hosts"
    bad_hosts.write_text("127.0.0.1 localhost\n127.0.1.1 node1 node2\n10.200.0.1 node1\n10.200.0.2 node2\n")
    hf = hostfile(tmp_path)
    procs, logs = {}, {}
    for rank, host in enumerate(("node1", "node2")):
        logs[host] = tmp_path / f"loop-{host}.log"
        argv = [PYTHON, "-m", "megagrow.launch", "deepspeed", "--no-ssh", "--node-rank", str(rank), "--hostfile",
                str(hf), "--master-addr", "10.200.0.1", "--master-port", str(port), "--workdir", str(tmp_path),
                *_train(tmp_path, text_data, "loop")]
        procs[host] = launch(host, argv, tmp_path, train_env(), logs[host], limit=LIMIT, hosts=bad_hosts)
    t0 = time.monotonic()
    rcs = {h: wait(p, LIMIT) for h, p in procs.items()}
    took = time.monotonic() - t0
    out = "\n".join(f"--- {h}\n{logs[h].read_text()[-3000:]}" for h in logs)
    assert all(rc != 0 for rc in rcs.values()) and took < 60, (rcs, took, out)
    assert "'node1' resolves to the loopback address 127.0.1.1 and GLOO_SOCKET_IFNAME is not set" in out, out
    assert "'node2' resolves to the loopback address 127.0.1.1 and GLOO_SOCKET_IFNAME is not set" in out, out
