"""The host memory allocator of a training process (``train.allocator``).

glibc's malloc hands large blocks (logits, their gradients, activations: megabytes each) back to the kernel
when they are freed and maps fresh pages for the next step's, so every step pays a page fault per 4 KiB of
every large tensor it writes. On the suites' CPU GPT (12 x 56, 2,048 tokens x 2,048 classes per step) the
cross-entropy's zero-fill and log-softmax alone spent ~60 ms of a ~175 ms step faulting pages in.
tcmalloc keeps freed memory for reuse; PyTorch's CPU performance guide and ``torch.backends.xeon.run_cpu``
recommend it. Measured side by side: ``benchmarks/phase_cost.py`` (results/phase-cost-cpu.json).

An allocator must be loaded before the process starts (``LD_PRELOAD``), so ``megagrow train`` re-executes
itself once, before any work, with the library preloaded; :data:`ACTIVE_ENV` marks the new process so it never
loops, and tells the run which allocator it has (recorded in ``train.log`` and ``run_info.json``).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

CHOICES = ("auto", "tcmalloc", "jemalloc", "system")
ACTIVE_ENV = "MEGAGROW_ALLOCATOR_ACTIVE"

#: Library file names, best first.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}
#: The Debian/Ubuntu packages that hold them (for the error message).
PACKAGES = {"tcmalloc": "libgoogle-perftools4 (or libtcmalloc-minimal4)", "jemalloc": "libjemalloc2"}


def search_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where a preloadable allocator is looked for: LD_LIBRARY_PATH, the Python prefix (venv, conda), then the
    system library directories."""
    dirs = [Path(d) for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    for prefix in (env.get("CONDA_PREFIX"), env.get("VIRTUAL_ENV"), sys.prefix, sys.base_prefix):
        if prefix:
            dirs.append(Path(prefix) / "lib")
    multiarch = sysconfig.get_config_var("MULTIARCH")
    for root in ("/usr/local/lib", "/usr/lib", "/lib"):
        if multiarch:
            dirs.append(Path(root) / str(multiarch))
        dirs.append(Path(root))
    dirs += [Path("/usr/local/lib64"), Path("/usr/lib64")]
    seen: set[Path] = set()
    return [d for d in dirs if not (d in seen or seen.add(d))]


def find_library(name: str, env: Mapping[str, str]) -> Path | None:
    """The first file of ``LIBRARIES[name]`` in :func:`search_dirs`, else what the dynamic loader knows."""
    for d in search_dirs(env):
        for lib in LIBRARIES[name]:
            if (d / lib).is_file():
                return d / lib
    found = ctypes.util.find_library(name)  # e.g. 'libtcmalloc.so.4' from ldconfig's cache
    return Path(found) if found else None


def preloaded(env: Mapping[str, str]) -> str | None:
    """The allocator already named in LD_PRELOAD, if any."""
    for entry in env.get("LD_PRELOAD", "").replace(" ", ":").split(":"):
        for name in LIBRARIES:
            if name in Path(entry).name:
                return name
    return None


def plan_exec(choice: str, env: Mapping[str, str], on_cpu: bool) -> tuple[dict[str, str] | None, str]:
    """Decide how the process should run: ``(new_env, note)``. ``new_env`` is the environment to re-execute
    with (None: go on as is); ``note`` says which allocator the run has and why.

    ``auto``: tcmalloc on CPU runs when it is installed, else the system's (a note says how to install it);
    on a GPU the host allocator barely matters and the system's is kept. ``tcmalloc``/``jemalloc``: required,
    a clear error where missing. ``system``: glibc malloc."""
    if choice not in CHOICES:
        raise ValueError(f"train.allocator: {choice!r} is not one of {', '.join(CHOICES)}")
    active = env.get(ACTIVE_ENV)
    if active:
        return None, active
    already = preloaded(env)
    if already:
        return None, f"{already} (LD_PRELOAD, set outside megagrow)"
    if choice == "system" or (choice == "auto" and not on_cpu):
        return None, "system (glibc malloc)" + (" (auto: not a CPU run)" if choice == "auto" else "")
    name = "tcmalloc" if choice == "auto" else choice
    lib = find_library(name, env)
    if lib is None:
        where = ", ".join(str(d) for d in search_dirs(env))
        if choice == "auto":
            return None, (f"system (glibc malloc; auto: tcmalloc not found; install {PACKAGES[name]} for faster "
                          "CPU steps)")
        raise ValueError(f"train.allocator: {name} requested but none of {', '.join(LIBRARIES[name])} was found "
                         f"in {where} or the loader's cache; install {PACKAGES[name]}, or set train.allocator to "
                         "auto or system")
    new_env = dict(env)
    new_env["LD_PRELOAD"] = ":".join(x for x in (str(lib), env.get("LD_PRELOAD", "")) if x)
    note = f"{name} ({lib})"
    new_env[ACTIVE_ENV] = note
    if name == "tcmalloc":  # tcmalloc reports every allocation above 1 GiB on stderr: only noise here
        new_env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    return new_env, note


def mapped(name: str, maps: Path = Path("/proc/self/maps")) -> bool | None:
    """Whether a library of allocator ``name`` is mapped into this process (None where /proc is absent)."""
    try:
        text = maps.read_text()
    except OSError:
        return None
    return any(lib.split(".so")[0] + ".so" in text for lib in LIBRARIES[name])


def describe_active(env: Mapping[str, str]) -> str | None:
    """The allocator line of a run: the note :func:`plan_exec` left, checked against the process's mappings."""
    note = env.get(ACTIVE_ENV)
    if not note:
        return None
    name = note.split(" ")[0]
    if name in LIBRARIES and mapped(name) is False:
        return f"{note} requested, but the library is not mapped into this process: running on glibc malloc"
    return note


def unmet_request(choice: str, env: Mapping[str, str]) -> str | None:
    """A warning when ``train.allocator`` names a library this process does not have mapped: the run was not
    started by the ``megagrow train`` command (which preloads it), e.g. ``megagrow.trainer.loop.train`` called as a
    library, so it runs on glibc's malloc."""
    if choice not in LIBRARIES or mapped(choice) is not False or env.get(ACTIVE_ENV):
        return None
    return (f"train.allocator={choice} is not in effect: this process runs on glibc's malloc (only the "
            f"`megagrow train` command preloads the library; called as a library, start Python with "
            f"LD_PRELOAD=<path to {LIBRARIES[choice][0]}>)")


def reexec(new_env: dict[str, str], argv: Sequence[str]) -> None:
    """Replace this process by the same command under ``new_env`` (same pid: launchers keep tracking it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], new_env)
