"""A private Docker engine for the system tests: dockerd with its own data root and socket under STATE, no
bridge, no iptables (containers get `--network none` and a hand-made veth pair), a Debian base image made
locally with mmdebstrap (`make systest-deps`) and tagged with the name the Dockerfiles use, since image
registries are out of reach here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.system import cluster

DIR = cluster.STATE / "docker"
SOCK = DIR / "docker.sock"
BASE_TAR = Path(os.environ.get("MEGAGROW_SYSTEST_BASE_TAR", "/var/cache/megagrow-systest/debian-bookworm.tar"))
LABEL = "megagrow-systest=1"
CONTAINERS = ("mgsys-c1", "mgsys-c2")


def docker_bin() -> str:
    """Debian's client matches Debian's engine (the classic builder); else whatever is on PATH."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def env() -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{SOCK}", "DOCKER_BUILDKIT": "0"}


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return cluster.sh([docker_bin(), *args], timeout=timeout, check=check, env=env())


def dockerd_up() -> None:
    DIR.mkdir(parents=True, exist_ok=True)
    log = (DIR / "dockerd.log").open("w")
    p = subprocess.Popen(["dockerd", "--data-root", str(DIR / "root"), "--exec-root", str(DIR / "exec"),
                          "--pidfile", str(DIR / "dockerd.pid"), "-H", f"unix://{SOCK}", "--bridge=none",
                          "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                          "--userland-proxy=false", "--storage-driver=overlay2"],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster.record_pid("dockerd", p.pid, "dockerd")
    cluster.wait_for(lambda: docker("version", check=False).returncode == 0 or p.poll() is not None, 60, "dockerd")
    if p.poll() is not None:
        raise RuntimeError(f"dockerd exited {p.returncode}:\n{(DIR / 'dockerd.log').read_text()[-3000:]}")


def dockerd_down() -> None:
    if SOCK.exists():
        for name in CONTAINERS:
            docker("rm", "-f", name, check=False, timeout=60)
    cluster.kill_recorded(lambda n: n == "dockerd", wait=30)
    netns_mount = DIR / "exec" / "netns" / "default"
    if netns_mount.exists():
        subprocess.run(["umount", str(netns_mount)], capture_output=True, check=False)


def remove_containers_of_earlier_runs() -> None:
    """An earlier run's dockerd still running: remove its containers, then stop it."""
    if (cluster.STATE / "pids" / "dockerd").exists():
        dockerd_down()


def import_base(tags: list[str]) -> None:
    """The mmdebstrap Debian tarball as an image, tagged ``tags`` (the Dockerfiles' FROM names)."""
    docker("import", str(BASE_TAR), "megagrow-systest/debian:bookworm", timeout=300)
    for t in tags:
        docker("tag", "megagrow-systest/debian:bookworm", t)


def build_context(dest: Path, wheels: list[Path]) -> Path:
    """This checkout's files (tracked and untracked, not ignored), ``wheels`` in docker/wheels/ and this
    machine's extra CA certificates in docker/certs/ (PyPI is reached through a TLS-inspecting proxy here)."""
    files = cluster.sh(["git", "ls-files", "-co", "--exclude-standard"], cwd=cluster.ROOT).stdout.splitlines()
    for f in files:
        src = cluster.ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    (dest / "docker" / "wheels").mkdir(parents=True, exist_ok=True)
    for w in wheels:
        shutil.copy2(w, dest / "docker" / "wheels" / w.name)
    (dest / "docker" / "certs").mkdir(parents=True, exist_ok=True)
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):  # this machine's extra CAs (a proxy's)
        shutil.copy2(crt, dest / "docker" / "certs" / crt.name)
    return dest


def container_pid(name: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())


def join_by_veth(a: str, b: str, addr_a: str, addr_b: str) -> None:
    """A veth pair between two running containers (`--network none`): eth0 with ``addr_a`` / ``addr_b``."""
    cluster.sh(["ip", "link", "add", "mgsys-cv1", "type", "veth", "peer", "name", "mgsys-cv2"])
    for name, end, addr in ((a, "mgsys-cv1", addr_a), (b, "mgsys-cv2", addr_b)):
        pid = str(container_pid(name))
        cluster.sh(["ip", "link", "set", end, "netns", pid])
        cluster.sh(["nsenter", "-t", pid, "-n", "ip", "link", "set", end, "name", "eth0"])
        cluster.sh(["nsenter", "-t", pid, "-n", "ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
        cluster.sh(["nsenter", "-t", pid, "-n", "ip", "link", "set", "eth0", "up"])
