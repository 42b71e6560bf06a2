"""Intra-op threads per rank on a CPU-only machine.

torch uses every core of the machine in each process by default. ``torchrun`` sets ``OMP_NUM_THREADS=1``
when it starts several processes per node, but the ``deepspeed`` launcher, Slurm and mpirun do not: two
ranks on two cores then each run two threads and fight over the cores (a 2-rank ``deepspeed`` run was
16x slower than the same run under ``torchrun``). So when ``OMP_NUM_THREADS`` is unset, there is no
GPU and the node runs several ranks, each rank takes its share of the cores:
``torch.set_num_threads(max(1, cores // local_world_size))``. An explicit ``OMP_NUM_THREADS`` always
wins (as does ``SLURM_CPUS_PER_TASK``, Slurm's own per-task allotment).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

__all__ = ["apply_cpu_threads", "available_cores", "busy_cpu_note", "intra_op_threads"]


def busy_cpu_note(cores: int, threads: int, local_world_size: int, load: float | None) -> str | None:
    """A warning when the machine is already busy (pure): other jobs hold more than the cores this run does not
    use, so every intra-op thread of every rank contends with them and a step can be many times slower (measured:
    a 20-step job with 2 threads per rank ran ~25x slower than with 1 on a shared 2-core CPU). ``load`` is the
    1-minute load average before this run's work started (None: unknown)."""
    if load is None or threads <= 1 or load < 1.0 or load + threads * local_world_size <= 1.5 * cores:
        return None
    return (f"warning: this CPU is busy (load average {load:.1f} on {cores} cores) and this run starts {threads} "
            f"intra-op threads per rank: they contend with the other jobs, which can make steps many times slower; "
            "if it is slow, set OMP_NUM_THREADS=1 (or fewer ranks)")


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def intra_op_threads(cores: int, local_world_size: int, env: Mapping[str, str], accelerator: bool) -> int | None:
    """Threads each rank should use, or None to leave torch's default (pure).

    None when ``OMP_NUM_THREADS`` is set (the user or launcher chose), on a machine with an accelerator,
    or with a single rank on the node.
    """
    if "OMP_NUM_THREADS" in env or accelerator or local_world_size <= 1:
        return None
    per_task = env.get("SLURM_CPUS_PER_TASK", "")
    if per_task.isdigit() and int(per_task) > 0:
        return int(per_task)
    return max(1, cores // local_world_size)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which cgroups and taskset restrict), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def apply_cpu_threads(local_world_size: int, accelerator: bool, log: Callable[[str], None] | None,
                      env: Mapping[str, str] | None = None,
                      load: Callable[[], float | None] | None = None) -> int | None:
    """Set torch's intra-op threads per :func:`intra_op_threads`; ``log`` (the main rank's) gets one line, and one
    more when the CPU is already busy (:func:`busy_cpu_note`; ``load`` reads the load average, os.getloadavg)."""
    import torch

    env = os.environ if env is None else env
    cores = available_cores()
    threads = intra_op_threads(cores, local_world_size, env, accelerator)
    if log is not None and not accelerator:
        note = busy_cpu_note(cores, threads or torch.get_num_threads(), local_world_size, (load or _load_average)())
        if note:
            log(note)
    if threads is None:
        return None
    torch.set_num_threads(threads)
    if log is not None:
        log(f"{local_world_size} ranks on this node share {cores} cores: {threads} intra-op thread(s) per rank "
            "(OMP_NUM_THREADS is unset; set it to choose)")
    return threads
