"""Who am I in the job? One resolution function for every launcher.

Order: torchrun / deepspeed launcher (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) → Slurm
(``SLURM_PROCID``…, one task per GPU) → OpenMPI / MPICH (``OMPI_COMM_WORLD_*`` / ``PMI_*``) → a single
process on loopback with a free port. The result is written back into the standard variables, so
``deepspeed.init_distributed`` never falls back to its mpi4py discovery (which picks the first
non-loopback address).

The number of ranks on this node (:func:`local_world_size`) comes from ``LOCAL_WORLD_SIZE`` (torchrun),
``LOCAL_SIZE`` (the deepspeed launcher), ``SLURM_TASKS_PER_NODE``, ``OMPI_COMM_WORLD_LOCAL_SIZE`` or
``MPI_LOCALNRANKS`` (MPICH); 1 when none says.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # "launcher" | "slurm" | "mpi" | "single"
    local_world_size: int = 1  # ranks on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_slurm_host(nodelist: str) -> str:
    """First hostname of a Slurm node list such as ``gpu[003-005,009],login1`` → ``gpu003``."""
    m = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot parse a host name")
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def slurm_tasks_on_node(tasks_per_node: str, node_id: int) -> int:
    """This node's entry of ``SLURM_TASKS_PER_NODE`` such as ``2(x3),1`` (nodes 0-2: 2 tasks, node 3: 1)."""
    counts: list[int] = []
    for part in tasks_per_node.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise ValueError(f"SLURM_TASKS_PER_NODE={tasks_per_node!r}: expected e.g. '2(x3),1'")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if not 0 <= node_id < len(counts):
        raise ValueError(f"SLURM_NODEID={node_id} is outside SLURM_TASKS_PER_NODE={tasks_per_node!r}")
    return counts[node_id]


def local_world_size(env: Mapping[str, str], source: str) -> int:
    """Ranks on this node, as the launcher says (see the module docstring); 1 when it does not say."""
    keys = {"launcher": ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"), "mpi": ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")}
    for key in keys.get(source, ()):
        if key in env:
            return max(1, _int(env, key))
    if source == "slurm" and "SLURM_TASKS_PER_NODE" in env:
        node = _int(env, "SLURM_NODEID") if "SLURM_NODEID" in env else 0
        return max(1, slurm_tasks_on_node(env["SLURM_TASKS_PER_NODE"], node))
    return 1


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={env[key]!r}: expected an integer") from None


def resolve_dist_env(env: MutableMapping[str, str] | None = None) -> DistEnv:
    """Resolve rank/world/master from the environment and write the standard variables back."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        source = "launcher"
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        source = "slurm"
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        addr = env.get("MASTER_ADDR") or first_slurm_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1"))
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500
    elif "OMPI_COMM_WORLD_RANK" in env or "PMI_RANK" in env:
        source = "mpi"
        if "OMPI_COMM_WORLD_RANK" in env:
            rank, world = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
            local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") if "OMPI_COMM_WORLD_LOCAL_RANK" in env else rank
        else:
            rank, world = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
            local = _int(env, "MPI_LOCALRANKID") if "MPI_LOCALRANKID" in env else rank
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500
    else:
        source = "single"
        rank, world, local = 0, 1, 0
        addr = "127.0.0.1"
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else free_port()
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside world size {world} (from {source} environment)")
    env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local), MASTER_ADDR=addr,
               MASTER_PORT=str(port))
    return DistEnv(rank, world, local, addr, port, source, local_world_size(env, source))
