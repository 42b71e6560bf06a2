"""``train.allocator``: which allocator a run gets, the re-execution that preloads it, and the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from megagrow.config import ConfigError, load_config
from megagrow.trainer.allocator import (
    ACTIVE_ENV,
    describe_active,
    find_library,
    mapped,
    plan_exec,
    preloaded,
    unmet_request,
)
from tests.trainutil import TINY, clean_env

ROOT = Path(__file__).resolve().parents[1]


def _libdir(tmp_path: Path, *names: str) -> dict[str, str]:
    d = tmp_path / "lib"
    d.mkdir()
    for n in names:
        (d / n).write_bytes(b"")
    return {"LD_LIBRARY_PATH": str(d), "PATH": "/usr/bin"}


def test_auto_preloads_tcmalloc_on_cpu(tmp_path: Path) -> None:
    env = _libdir(tmp_path, "libtcmalloc_minimal.so.4", "libjemalloc.so.2")
    new_env, note = plan_exec("auto", env, on_cpu=True)
    lib = str(tmp_path / "lib" / "libtcmalloc_minimal.so.4")
    assert new_env is not None and new_env["LD_PRELOAD"] == lib
    assert new_env[ACTIVE_ENV] == note == f"tcmalloc ({lib})"
    assert new_env["PATH"] == "/usr/bin"  # the rest of the environment is kept
    # an existing LD_PRELOAD is kept behind it
    new_env, _ = plan_exec("auto", {**env, "LD_PRELOAD": "/x/libfoo.so"}, on_cpu=True)
    assert new_env is not None and new_env["LD_PRELOAD"] == f"{lib}:/x/libfoo.so"


def test_explicit_choice_and_what_keeps_the_process(tmp_path: Path) -> None:
    env = _libdir(tmp_path, "libtcmalloc_minimal.so.4", "libjemalloc.so.2")
    new_env, note = plan_exec("jemalloc", env, on_cpu=False)  # asked for: also on a GPU machine
    assert new_env is not None and new_env["LD_PRELOAD"].endswith("libjemalloc.so.2") and note.startswith("jemalloc")
    assert plan_exec("system", env, on_cpu=True) == (None, "system (glibc malloc)")
    assert plan_exec("auto", env, on_cpu=False)[0] is None  # auto leaves GPU runs alone
    # the re-executed process (or a process the user preloaded) never re-executes again
    assert plan_exec("auto", {**env, ACTIVE_ENV: "tcmalloc (x)"}, on_cpu=True) == (None, "tcmalloc (x)")
    new_env, note = plan_exec("tcmalloc", {**env, "LD_PRELOAD": "/opt/libjemalloc.so.2"}, on_cpu=True)
    assert new_env is None and note.startswith("jemalloc (LD_PRELOAD")
    assert preloaded({"LD_PRELOAD": "/a/libc_extra.so /b/libtcmalloc.so.4"}) == "tcmalloc"


def test_missing_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("megagrow.trainer.allocator.search_dirs", lambda env: [tmp_path])
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    assert find_library("tcmalloc", {}) is None
    new_env, note = plan_exec("auto", {}, on_cpu=True)
    assert new_env is None and "tcmalloc not found" in note and "libgoogle-perftools4" in note
    with pytest.raises(ValueError, match=r"train.allocator: jemalloc requested .* libjemalloc2"):
        plan_exec("jemalloc", {}, on_cpu=True)
    with pytest.raises(ValueError, match="'mimalloc' is not one of"):
        plan_exec("mimalloc", {}, on_cpu=True)


def test_config_rejects_an_unknown_allocator() -> None:
    assert load_config(None, []).train.allocator == "auto"
    with pytest.raises(ConfigError, match="allocator"):
        load_config(None, ["--train.allocator=mimalloc"])


def test_mapped_reads_the_process_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n")
    assert mapped("tcmalloc", maps) is True and mapped("jemalloc", maps) is False
    assert mapped("tcmalloc", tmp_path / "absent") is None
    # a note whose library is not in this process (pytest runs on glibc malloc) says so
    if mapped("tcmalloc") is False:
        assert "not mapped" in str(describe_active({ACTIVE_ENV: "tcmalloc (/x/libtcmalloc_minimal.so.4)"}))
    assert describe_active({}) is None


@pytest.mark.skipif(find_library("tcmalloc", clean_env()) is None, reason="tcmalloc is not installed here "
                    "(Debian: libtcmalloc-minimal4; `make systest` installs it)")
def test_train_command_runs_under_tcmalloc(tmp_path: Path, text_data: Path) -> None:
    """The real command, as the console script and as ``python -m``: it re-executes itself with tcmalloc
    preloaded, the new process has it mapped, and the run finishes."""
    args = [str(ROOT / "configs/gpt-tiny.yaml"), *TINY["gpt"], f"--data.path={text_data}", f"--run.out_dir={tmp_path}",
            "--data.micro_batch_size=4", "--data.eval_samples=8", "--train.max_steps=2", "--train.eval_every=0",
            "--logging.progress=off", "--checkpoint.every=0", "--checkpoint.save_final=false"]
    script = [str(Path(sys.executable).parent / "megagrow"), "train"]
    module = [sys.executable, "-m", "megagrow.cli", "train"]
    for name, cmd, expect in (("auto", [*script, *args], "tcmalloc ("),
                              ("explicit", [*module, *args, "--train.allocator=tcmalloc"], "tcmalloc ("),
                              ("system", [*module, *args, "--train.allocator=system"], "system (glibc malloc)")):
        out = subprocess.run([*cmd, f"--run.name={name}"], capture_output=True, text=True, timeout=240, cwd=ROOT,
                             env={**clean_env(), "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-2000:]
        line = next(ln for ln in out.stderr.splitlines() if "host allocator:" in ln)
        assert expect in line and "not mapped" not in line, line
        assert '"step": 2,' in (tmp_path / name / "metrics.jsonl").read_text()  # the run finished


def test_an_explicit_request_the_process_cannot_honour_is_warned(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                                  text_data: Path) -> None:
    """Called as a library (no re-execution), an explicitly requested allocator is not in effect: said, not hidden."""
    if mapped("tcmalloc") is not False:
        pytest.skip("this test process already has tcmalloc mapped")
    assert unmet_request("tcmalloc", {}) is not None and "LD_PRELOAD" in str(unmet_request("tcmalloc", {}))
    assert unmet_request("auto", {}) is None and unmet_request("system", {}) is None
    from tests.trainutil import run, tiny_config

    run(tiny_config("gpt", tmp_path, "lib", "--train.allocator=tcmalloc", "--train.max_steps=1", "--train.eval_every=0",
                    data_path=text_data))
    assert "train.allocator=tcmalloc is not in effect" in capsys.readouterr().err
