"""megagrow-launch without launching: hostfiles, forwarded variables, the commands it would run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from megagrow import launch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/gpt-tiny.yaml")


def test_hostfile_from_a_slurm_node_list() -> None:
    assert launch.slurm_hostfile("gpu[01-02],login1", 8) == "gpu01 slots=8\ngpu02 slots=8\nlogin1 slots=8\n"
    with pytest.raises(ValueError, match="--slots=0"):
        launch.slurm_hostfile("a1", 0)


@pytest.mark.parametrize(("text", "error"), [
    ("node1 slots=1\nnode2 slots two\n", r"line 2: 'node2 slots two': expected '<host> slots=<n>'"),
    ("node1 slots=1\nnode1 slots=2\n", "line 2: host 'node1' is listed twice"),
    ("# nothing\n\n", "no hosts"),
    ("node1 slots=0\n", "line 1"),
])
def test_bad_hostfiles_name_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    hf = tmp_path / "hostfile"
    hf.write_text(text)
    with pytest.raises(ValueError, match=error):
        launch.read_hostfile(hf)
    assert launch.read_hostfile(_write(tmp_path, "a slots=2  # comment\n\nb slots=1\n")) == [("a", 2), ("b", 1)]


def _write(d: Path, text: str, name: str = "ok") -> Path:
    (d / name).write_text(text)
    return d / name


def test_forwarded_variables_and_the_users_deepspeed_env_wins(tmp_path: Path) -> None:
    env = {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "NCCL_DEBUG": "INFO", "HOME": "/root", "MINE": "x"}
    got = launch.forwarded_env(env, ["MINE"])
    assert got == {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "NCCL_DEBUG": "INFO", "MINE": "x"}
    with pytest.raises(ValueError, match="--env NOPE: not set"):
        launch.forwarded_env(env, ["NOPE"])
    user = _write(tmp_path, "# mine\nOMP_NUM_THREADS=4\n", ".deepspeed_env")
    out = launch.write_deepspeed_env(got, user, tmp_path / "generated")
    assert "OMP_NUM_THREADS=4\n" in out.read_text() and "DS_ACCELERATOR=cpu\n" in out.read_text()
    with pytest.raises(ValueError, match="line 1: 'bad line': expected KEY=VALUE"):
        launch.parse_env_file(_write(tmp_path, "bad line\n", "bad"))


def test_deepspeed_pdsh_command_from_a_slurm_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("MASTER_ADDR", "MASTER_PORT"):  # other tests of this process resolve ranks into os.environ
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "localhost")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    assert launch.main(["deepspeed", "--dry-run", "--workdir", str(tmp_path), "--each-rank-log", "logs/ranks", CONFIG,
                        "--train.max_steps=5"]) == 0
    cmd = capsys.readouterr().err
    # made before launching, absolute: DeepSpeed's per-host `exists` + `makedirs` races on a shared filesystem
    assert (tmp_path / "logs/ranks").is_dir() and f"--enable_each_rank_log={tmp_path}/logs/ranks " in cmd
    assert f"{sys.executable} -u -m deepspeed.launcher.runner --hostfile {tmp_path}/hostfile.77" in cmd
    assert "--master_addr localhost --master_port 29500 " in cmd and " --module megagrow.cli train " in cmd
    assert cmd.strip().endswith("--train.max_steps=5")
    assert (tmp_path / "hostfile.77").read_text() == "localhost slots=2\n"
    assert "DS_ACCELERATOR=cpu" in (tmp_path / ".deepspeed_env.77").read_text()


def test_deepspeed_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    monkeypatch.delenv("SLURM_NODEID", raising=False)
    assert launch.main(["deepspeed", "--dry-run", CONFIG]) == 2
    assert "no hostfile: pass --hostfile" in capsys.readouterr().err
    hf = _write(tmp_path, "localhost slots=1\nhost-that-does-not-resolve.invalid slots=1\n", "hostfile")
    assert launch.main(["deepspeed", "--dry-run", "--hostfile", str(hf), CONFIG]) == 2
    assert "host(s) 'host-that-does-not-resolve.invalid'" in capsys.readouterr().err
    assert launch.main(["deepspeed", "--dry-run", "--no-ssh", "--hostfile", str(hf), CONFIG]) == 2
    assert "--no-ssh needs --node-rank" in capsys.readouterr().err
    assert launch.main(["deepspeed", "--dry-run", "--no-ssh", "--node-rank", "2", "--hostfile", str(hf), CONFIG]) == 2
    assert "outside the 2 host(s)" in capsys.readouterr().err
    assert launch.main(["deepspeed", "--dry-run", "--hostfile", str(hf), "missing.yaml"]) == 2
    _write(tmp_path, "", "a-file")
    assert launch.main(["deepspeed", "--dry-run", "--no-ssh", "--node-rank", "0", "--hostfile", str(hf),
                        "--each-rank-log", str(tmp_path / "a-file" / "ranks"), CONFIG]) == 2
    assert "--each-rank-log" in capsys.readouterr().err


def test_torchrun_per_node_from_slurm(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for k, v in {"SLURM_JOB_NODELIST": "node[1-2]", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert launch.main(["torchrun", "--dry-run", "--nproc-per-node", "4", "--log-dir", "/l/node{node}", CONFIG]) == 0
    cmd = capsys.readouterr().err
    assert ("-m torch.distributed.run --nnodes 2 --node_rank 1 --nproc_per_node 4 --master_addr node1 "
            "--master_port 29500 --log_dir /l/node1 --redirects 3 -m megagrow.cli train") in cmd


@pytest.mark.parametrize(("extra", "error"), [
    ((), "--nnodes 2: give --master-addr"),
    (("--master-addr", "127.0.0.1"), "--master-addr 127.0.0.1: a loopback address"),
    (("--master-addr", "localhost"), "--master-addr localhost: a loopback address"),
])
def test_torchrun_multi_node_without_a_reachable_master_is_refused(
    extra: tuple[str, ...], error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside Slurm, --nnodes 2 without --master-addr defaulted to 127.0.0.1: node 1 waited for a rendezvous on its
    own loopback and hung silently. Refused before anything starts, naming the flag."""
    for k in ("MASTER_ADDR", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NODEID"):
        monkeypatch.delenv(k, raising=False)
    assert launch.main(["torchrun", "--dry-run", "--nnodes", "2", "--node-rank", "1", *extra, CONFIG]) == 2
    assert error in capsys.readouterr().err
    assert launch.main(["torchrun", "--dry-run", "--nnodes", "2", "--node-rank", "1", "--master-addr", "node1",
                        CONFIG]) == 0
    assert launch.main(["torchrun", "--dry-run", CONFIG]) == 0  # one host: loopback is right
    assert "--master_addr 127.0.0.1" in capsys.readouterr().err
