"""Who am I in the job? One resolution function for every launcher.

Order: torchrun / deepspeed launcher (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) → Slurm
(``SLURM_PROCID``…, one task per GPU; the master is the first host of ``SLURM_STEP_NODELIST``, else of
``SLURM_JOB_NODELIST``) → OpenMPI / MPICH / Intel MPI / MVAPICH (``OMPI_COMM_WORLD_*``, ``PMI_*``,
``MV2_COMM_WORLD_*``; through ``mpi4py`` when it is installed, which also tells every rank rank 0's address
when ``MASTER_ADDR`` is unset) → a single process on loopback with a free port. The result is written back
into the standard variables, so ``deepspeed.init_distributed`` never falls back to its own mpi4py discovery.

A job spread over several hosts must not rendezvous on a loopback address: :func:`check_reachable` refuses
a ``MASTER_ADDR`` that resolves to loopback, and (gloo) a host name that resolves to loopback without
``GLOO_SOCKET_IFNAME`` — gloo would advertise 127.0.0.1 to the other hosts and they would hang until the
timeout. The error names the variable to set.

The number of ranks on this node (:func:`local_world_size`) comes from ``LOCAL_WORLD_SIZE`` (torchrun),
``LOCAL_SIZE`` (the deepspeed launcher), ``SLURM_TASKS_PER_NODE``, ``OMPI_COMM_WORLD_LOCAL_SIZE`` or
``MPI_LOCALNRANKS`` (MPICH); 1 when none says.
"""

from __future__ import annotations

import ipaddress
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
    local_world_size: int = 1  # ranks on this node (1 when the launcher does not say: see local_world_known)
    local_world_known: bool = False  # the launcher said how many ranks share this host
    node: int | None = None  # this host's index in the job (0 = rank 0's host), when the launcher says

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def multi_host(self) -> bool:
        """The job certainly spans several hosts (the launcher said fewer ranks are on this host than in all)."""
        return self.local_world_known and self.world_size > self.local_world_size

    def describe(self) -> str:
        """One line for the job's log: where the ranks came from and what they resolved to."""
        local = f"{self.local_world_size}" if self.local_world_known else "? (not given by the launcher)"
        return (f"{self.world_size} rank(s) from the {self.source} environment; rank {self.rank}, local rank "
                f"{self.local_rank} of {local} on this host; master {self.master_addr}:{self.master_port}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``a1,b[2-3]`` -> ``['a1', 'b[2-3]']``."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ']'")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ValueError("unbalanced '['")
    return [*parts, cur]


def _expand_host(item: str) -> list[str]:
    """``rack[1-2]-n[01-02]`` -> rack1-n01, rack1-n02, rack2-n01, rack2-n02 (zero padding kept)."""
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if not m:
        return [item]
    prefix, ranges, rest = m.groups()
    values: list[str] = []
    for r in ranges.split(","):
        lo, _, hi = r.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"bad range {r!r}")
        width = len(lo)
        for v in range(int(lo), int(hi or lo) + 1):
            values.append(str(v).zfill(width))
    return [prefix + v + tail for v in values for tail in _expand_host(rest)]


def expand_slurm_nodelist(nodelist: str) -> list[str]:
    """All host names of a Slurm node list, in order: ``gpu[003-005,009],login1`` -> gpu003, gpu004, gpu005,
    gpu009, login1; ``a1,b[2-3]`` -> a1, b2, b3."""
    try:
        hosts = [h for item in _split_top(nodelist.strip()) if item for h in _expand_host(item.strip())]
    except ValueError as e:
        raise ValueError(f"node list {nodelist!r}: cannot parse ({e}); expected e.g. 'node[01-04]' or "
                         "'a1,b[2-3]'") from None
    if not hosts:
        raise ValueError(f"node list {nodelist!r}: no host names")
    return hosts


def first_slurm_host(nodelist: str) -> str:
    """First hostname of a Slurm node list such as ``gpu[003-005,009],login1`` → ``gpu003``."""
    return expand_slurm_nodelist(nodelist)[0]


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
    n = _local_world_size(env, source)
    return 1 if n is None else n


def _local_world_size(env: Mapping[str, str], source: str) -> int | None:
    keys = {"launcher": ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"),
            "mpi": ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")}
    for key in keys.get(source, ()):
        if key in env:
            return max(1, _int(env, key))
    if source == "slurm" and "SLURM_TASKS_PER_NODE" in env:
        node = _int(env, "SLURM_NODEID") if "SLURM_NODEID" in env else 0
        return max(1, slurm_tasks_on_node(env["SLURM_TASKS_PER_NODE"], node))
    return None


def _node_index(env: Mapping[str, str], source: str) -> int | None:
    """This host's index in the job where the launcher says it (torchrun GROUP_RANK, deepspeed's NODE_RANK /
    CROSS_RANK, Slurm SLURM_NODEID, OpenMPI OMPI_COMM_WORLD_NODE_RANK)."""
    keys = {"launcher": ("GROUP_RANK", "NODE_RANK", "CROSS_RANK"), "slurm": ("SLURM_NODEID",),
            "mpi": ("OMPI_COMM_WORLD_NODE_RANK",)}
    for key in keys.get(source, ()):
        if key in env:
            return _int(env, key)
    return None


_MPI_RANK_KEYS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def _mpi_from_env(env: Mapping[str, str]) -> tuple[int, int, int]:
    """(rank, world, local rank) from OpenMPI / MPICH-Hydra / PMIx / MVAPICH variables."""
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, world = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") if "OMPI_COMM_WORLD_LOCAL_RANK" in env else rank
    elif "MV2_COMM_WORLD_RANK" in env:
        rank, world = _int(env, "MV2_COMM_WORLD_RANK"), _int(env, "MV2_COMM_WORLD_SIZE")
        local = _int(env, "MV2_COMM_WORLD_LOCAL_RANK") if "MV2_COMM_WORLD_LOCAL_RANK" in env else rank
    elif "PMI_RANK" in env:
        rank, world = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
        local = _int(env, "MPI_LOCALRANKID") if "MPI_LOCALRANKID" in env else rank
    else:
        raise ValueError("PMIX_RANK is set but no world size variable this code knows: install mpi4py "
                         "(pip install megagrow[mpi]) so that the ranks are read from MPI itself")
    return rank, world, local


def _mpi_from_mpi4py(env: MutableMapping[str, str]) -> tuple[int, int, int, int, str, int] | None:
    """(rank, world, local rank, local size, master addr, master port) through mpi4py, or None when it is not
    installed. Rank 0 tells every rank its address (:func:`host_address`) unless MASTER_ADDR is set."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    local_comm = comm.Split_type(MPI.COMM_TYPE_SHARED)
    rank, world = comm.Get_rank(), comm.Get_size()
    local, local_size = local_comm.Get_rank(), local_comm.Get_size()
    local_comm.Free()
    addr = env.get("MASTER_ADDR") or comm.bcast(host_address(env) if rank == 0 else None, root=0)
    port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else comm.bcast(29500, root=0)
    return rank, world, local, local_size, addr, port


def resolves_to_loopback(host: str) -> tuple[bool, str]:
    """(whether every address ``host`` resolves to is a loopback address, the first address). Raises ValueError
    when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"host name {host!r} does not resolve on this host ({e})") from None
    addrs = [i[4][0] for i in infos]
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs), addrs[0]


def _interface_address(ifname: str) -> str | None:
    """The IPv4 address of a network interface (Linux ioctl), or None."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", ifname[:15].encode()))  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def host_address(env: Mapping[str, str]) -> str:
    """An address of this host that other hosts can reach: the address of GLOO_SOCKET_IFNAME /
    NCCL_SOCKET_IFNAME when set, else the host name's address when it is not loopback, else the host name."""
    for key in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        for name in env.get(key, "").split(","):
            name = name.strip().lstrip("=^")
            if name and (addr := _interface_address(name)):
                return addr
    name = socket.gethostname()
    try:
        loop, addr = resolves_to_loopback(name)
    except ValueError:
        return name
    return name if loop else addr


def check_reachable(d: DistEnv, backend: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse, with the variable to set, a multi-host job that would rendezvous or talk over loopback (it would
    hang until the timeout instead): a MASTER_ADDR that resolves to loopback on a host other than rank 0's, and,
    with gloo, a host name that resolves to loopback without GLOO_SOCKET_IFNAME. Silent on single-host jobs and
    where the launcher does not say how many ranks share a host."""
    env = os.environ if env is None else env
    if not d.multi_host:
        return
    where = (f"this job spans several hosts ({d.world_size} ranks, {d.local_world_size} on this one, from the "
             f"{d.source} environment)")
    on_master_host = d.node == 0 if d.node is not None else d.rank < d.local_world_size
    loop, addr = resolves_to_loopback(d.master_addr)
    if loop and not on_master_host:
        raise ValueError(f"MASTER_ADDR={d.master_addr} resolves to the loopback address {addr} on this host, but "
                         f"{where}: set MASTER_ADDR to an address of rank 0's host that every host reaches "
                         "(e.g. its IP on the cluster network)")
    if backend == "gloo" and not env.get("GLOO_SOCKET_IFNAME"):
        host = socket.gethostname()
        # gloo binds the *first* address the host name resolves to: Debian's "127.0.1.1 <hostname>" line
        # before the host's real entry makes it advertise loopback although another address follows.
        _, addr = resolves_to_loopback(host)
        if ipaddress.ip_address(addr.split("%")[0]).is_loopback:
            raise ValueError(f"this host's name {host!r} resolves to the loopback address {addr} and "
                             f"GLOO_SOCKET_IFNAME is not set, but {where}: gloo would advertise {addr} to the other "
                             "hosts, which then wait until the timeout. Set GLOO_SOCKET_IFNAME to the network "
                             "interface the hosts share (`ip -br addr` lists them), or make the host name resolve "
                             "to that interface's address")


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
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        addr = env.get("MASTER_ADDR") or (first_slurm_host(nodes) if nodes else "127.0.0.1")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500
    elif any(k in env for k in _MPI_RANK_KEYS):
        source = "mpi"
        via = _mpi_from_mpi4py(env) if env is os.environ else None  # MPI itself describes this process only
        if via is not None:
            rank, world, local, local_size, addr, port = via
            env.setdefault("MPI_LOCALNRANKS", str(local_size))
        else:
            rank, world, local = _mpi_from_env(env)
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
    known = _local_world_size(env, source)
    return DistEnv(rank, world, local, addr, port, source, 1 if known is None else known, known is not None,
                   _node_index(env, source))


def rendezvous_failure(d: DistEnv, timeout_minutes: float, e: BaseException) -> str:
    """A message for a failed ``init_process_group``: who waited for what, for how long, and what to check.
    ``e`` is torch's error: the store's "N/M clients joined" (rank 0), a client that cannot connect to
    MASTER_ADDR:MASTER_PORT, or gloo's full-mesh connect."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    where = f"MASTER_ADDR={d.master_addr} MASTER_PORT={d.master_port}"
    head = f"rank {d.rank} of {d.world_size}: the rendezvous at {where} failed ({type(e).__name__}: {first}). "
    text = str(e).lower()
    if "clients joined" in text or "waiting for clients" in text:
        return head + (f"Not every rank joined within distributed.timeout_minutes={timeout_minutes:g}: a rank was "
                       "not started, crashed before joining, or cannot reach this host at MASTER_ADDR; check every "
                       "host's launch log and that MASTER_PORT is open on rank 0's host.")
    if "gloo" in text or "connectfullmesh" in text:
        return head + ("The ranks reached the rendezvous but not each other: gloo connects to the address each "
                       "host advertises; set GLOO_SOCKET_IFNAME to the interface the hosts share (`ip -br addr`), "
                       "and make sure no firewall blocks the ranks' ports.")
    return head + (f"This rank could not reach rank 0's store within distributed.timeout_minutes={timeout_minutes:g}: "
                   "is rank 0 running, is MASTER_ADDR its address on a network this host shares, and is "
                   "MASTER_PORT the port rank 0 listens on?")
