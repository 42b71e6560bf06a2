"""Starting and awaiting launches "on" the test hosts, always under `timeout`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.system import cluster
from tests.system.train import LAUNCH_TIMEOUT


def hostfile(d: Path, text: str = "node1 slots=1\nnode2 slots=1\n") -> Path:
    hf = d / "hostfile"
    hf.write_text(text)
    return hf


def launch(host: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path,
           limit: float = LAUNCH_TIMEOUT, hosts: Path | None = None) -> subprocess.Popen:
    """``argv`` on ``host`` under `timeout` (SIGTERM at ``limit`` s, SIGKILL 10 s later), output to ``log``;
    ``hosts``: another /etc/hosts for it than the shared one."""
    with log.open("w") as f:
        return subprocess.Popen(cluster.on(host, ["timeout", "-k", "10", str(limit), *argv], hosts), cwd=cwd, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def wait(p: subprocess.Popen, limit: float = LAUNCH_TIMEOUT) -> int:
    try:
        return p.wait(timeout=limit + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def finish(procs: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    """Wait for every launch; fail with every log's tail unless all exited 0."""
    for p in procs.values():
        wait(p)
    bad = {h: p.returncode for h, p in procs.items() if p.returncode != 0}
    assert not bad, f"exit codes {bad}\n" + "\n".join(f"--- {h}\n{logs[h].read_text()[-4000:]}" for h in logs)
