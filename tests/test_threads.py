"""Each rank of a multi-rank CPU run gets its share of the cores when the launcher did not say (deepspeed)."""

from __future__ import annotations

import pytest
import torch

from megagrow.distributed.env import local_world_size, resolve_dist_env, slurm_tasks_on_node
from megagrow.distributed.threads import apply_cpu_threads, available_cores, intra_op_threads


@pytest.mark.parametrize(("cores", "local", "env", "accel", "expected"), [
    (2, 2, {}, False, 1),  # the deepspeed 2-rank run on 2 cores
    (16, 4, {}, False, 4),
    (6, 4, {}, False, 1),
    (2, 8, {}, False, 1),  # never 0
    (16, 1, {}, False, None),  # one rank: torch's default
    (16, 4, {"OMP_NUM_THREADS": "3"}, False, None),  # the user (or torchrun) chose
    (16, 4, {}, True, None),  # a GPU machine
    (64, 4, {"SLURM_CPUS_PER_TASK": "8"}, False, 8),  # Slurm's per-task allotment
])
def test_intra_op_threads(cores: int, local: int, env: dict, accel: bool, expected: int | None) -> None:
    assert intra_op_threads(cores, local, env, accel) == expected


def test_local_world_size_from_every_launcher() -> None:
    assert local_world_size({"LOCAL_WORLD_SIZE": "4"}, "launcher") == 4  # torchrun
    assert local_world_size({"LOCAL_SIZE": "2"}, "launcher") == 2  # deepspeed
    assert local_world_size({}, "launcher") == 1
    assert local_world_size({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}, "slurm") == 1
    assert local_world_size({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "1"}, "slurm") == 2
    assert local_world_size({"OMPI_COMM_WORLD_LOCAL_SIZE": "8"}, "mpi") == 8
    assert local_world_size({"MPI_LOCALNRANKS": "3"}, "mpi") == 3
    assert local_world_size({"LOCAL_SIZE": "2"}, "single") == 1
    assert slurm_tasks_on_node("4", 0) == 4
    with pytest.raises(ValueError, match="SLURM_TASKS_PER_NODE='x'"):
        slurm_tasks_on_node("x", 0)
    d = resolve_dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_SIZE": "2"})
    assert d.local_world_size == 2
    assert resolve_dist_env({}).local_world_size == 1


def test_apply_cpu_threads_sets_torch_and_logs_once() -> None:
    before = torch.get_num_threads()
    lines: list[str] = []
    try:
        n = apply_cpu_threads(2, False, lines.append, env={}, load=lambda: 0.0)
        assert n == max(1, available_cores() // 2) and torch.get_num_threads() == n
        assert lines == [f"2 ranks on this node share {available_cores()} cores: {n} intra-op thread(s) per rank "
                         "(OMP_NUM_THREADS is unset; set it to choose)"]
        torch.set_num_threads(before)
        assert apply_cpu_threads(2, False, lines.append, env={"OMP_NUM_THREADS": "1"}, load=lambda: 0.0) is None
        assert apply_cpu_threads(2, False, None, env={}) == n  # other ranks: no line
        assert torch.get_num_threads() == n and len(lines) == 1
    finally:
        torch.set_num_threads(before)


def test_a_busy_cpu_is_said_at_the_start() -> None:
    """On a CPU shared with other jobs two threads per rank ran a 20-step job ~25x slower than one, silently."""
    from megagrow.distributed.threads import busy_cpu_note

    note = busy_cpu_note(cores=2, threads=2, local_world_size=1, load=2.1)
    assert note is not None and "load average 2.1 on 2 cores" in note and "OMP_NUM_THREADS=1" in note
    assert busy_cpu_note(cores=2, threads=2, local_world_size=1, load=0.3) is None  # an idle machine
    assert busy_cpu_note(cores=2, threads=1, local_world_size=1, load=4.0) is None  # one thread: nothing to cut
    assert busy_cpu_note(cores=64, threads=8, local_world_size=4, load=10.0) is None  # room left
    assert busy_cpu_note(cores=2, threads=2, local_world_size=1, load=None) is None
    lines: list[str] = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        apply_cpu_threads(1, False, lines.append, env={"OMP_NUM_THREADS": "2"}, load=lambda: 50.0)
    finally:
        torch.set_num_threads(before)
    assert len(lines) == 1 and lines[0].startswith("warning: this CPU is busy")  # the run's first lines say it
