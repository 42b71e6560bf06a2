"""``megagrow-launch``: start ``megagrow train`` on several hosts with the usual launchers.

    megagrow-launch hostfile [--nodelist LIST] [--slots N] [-o FILE]
        A DeepSpeed hostfile ("<host> slots=<n>" per line) from a Slurm allocation (SLURM_JOB_NODELIST).
    megagrow-launch deepspeed [--hostfile FILE] [--no-ssh --node-rank N] [--master-addr A] [--master-port P]
                              [--launcher pdsh|openmpi|slurm] [--env VAR ...] CONFIG.yaml [--section.key=value ...]
        DeepSpeed's launcher: by default pdsh over ssh from one host to all; with --no-ssh one call per host.
        The variables training needs on every host go through a generated .deepspeed_env (DS_ENV_FILE).
    megagrow-launch torchrun [--nnodes N] [--node-rank R] [--nproc-per-node K] [--master-addr A]
                             [--master-port P] CONFIG.yaml [--section.key=value ...]
        One host's share of a torchrun job; under ``srun`` (one task per node) every value comes from Slurm.

Every subcommand prints the command it runs (``--dry-run``: prints it and exits) and then replaces itself
with it, so signals from the scheduler reach the launcher directly. Templates that use it: launcher/.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from megagrow.distributed.env import expand_slurm_nodelist

# Variables every rank needs, forwarded to the other hosts (pdsh/ssh starts a clean environment there):
# exact names, and prefixes (NCCL_*, MEGAGROW_*, ...).
FORWARD_NAMES = ("DS_ACCELERATOR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME",
                 "CUDA_VISIBLE_DEVICES", "HF_HOME", "TORCH_EXTENSIONS_DIR", "LD_LIBRARY_PATH", "PATH")
FORWARD_PREFIXES = ("NCCL_", "MEGAGROW_", "TORCH_NCCL_", "FI_", "UCX_")

_HOSTFILE_LINE = re.compile(r"^(?P<host>[A-Za-z0-9_.:-]+)\s+slots=(?P<slots>\d+)\s*$")


def slurm_hostfile(nodelist: str, slots: int) -> str:
    """DeepSpeed hostfile text for a Slurm node list: one ``<host> slots=<slots>`` line per node."""
    if slots < 1:
        raise ValueError(f"--slots={slots}: expected at least 1 (ranks per node)")
    return "".join(f"{h} slots={slots}\n" for h in expand_slurm_nodelist(nodelist))


def read_hostfile(path: Path) -> list[tuple[str, int]]:
    """``[(host, slots), ...]`` of a DeepSpeed hostfile; blank lines and ``#`` comments are skipped. Raises
    ValueError naming the file and line when a line is not ``<host> slots=<n>`` or a host repeats."""
    if not path.is_file():
        raise ValueError(f"hostfile {path}: not found (expected lines '<host> slots=<n>')")
    hosts: list[tuple[str, int]] = []
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _HOSTFILE_LINE.match(line)
        if not m or int(m["slots"]) < 1:
            raise ValueError(f"hostfile {path}, line {no}: {raw!r}: expected '<host> slots=<n>' with n >= 1")
        if any(h == m["host"] for h, _ in hosts):
            raise ValueError(f"hostfile {path}, line {no}: host {m['host']!r} is listed twice")
        hosts.append((m["host"], int(m["slots"])))
    if not hosts:
        raise ValueError(f"hostfile {path}: no hosts (expected lines '<host> slots=<n>')")
    return hosts


def check_hosts_resolve(hosts: Sequence[tuple[str, int]], path: Path) -> None:
    """Refuse a hostfile naming a host this host cannot resolve (pdsh/mpirun would fail on it only after the
    other hosts' ranks started and waited for the missing one until the timeout)."""
    bad = []
    for host, _ in hosts:
        try:
            socket.getaddrinfo(host, None)
        except socket.gaierror as e:
            bad.append(f"{host!r} ({e.strerror})")
    if bad:
        raise ValueError(f"hostfile {path}: host(s) {', '.join(bad)} do not resolve on this host; expected names "
                         "or addresses of the job's hosts")


def _slots_from_slurm(env: Mapping[str, str]) -> int:
    """Ranks per node in a Slurm job: GPUs per node, else tasks per node, else 1."""
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE", "SLURM_NTASKS_PER_NODE"):
        v = env.get(key, "").split(":")[-1]
        if v.isdigit() and int(v) > 0:
            return int(v)
    return 1


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (a .deepspeed_env); blank lines and ``#`` comments skipped."""
    out: dict[str, str] = {}
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, val = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}, line {no}: {raw!r}: expected KEY=VALUE")
        out[key] = val
    return out


def forwarded_env(env: Mapping[str, str], extra: Sequence[str] = ()) -> dict[str, str]:
    """The variables of ``env`` that the other hosts need (see FORWARD_NAMES / FORWARD_PREFIXES) plus ``extra``
    names. Values with a newline cannot go through .deepspeed_env and are refused."""
    out = {}
    for k, v in env.items():
        if k in FORWARD_NAMES or k in extra or k.startswith(FORWARD_PREFIXES):
            if "\n" in v:
                raise ValueError(f"environment variable {k} contains a newline: it cannot be forwarded")
            out[k] = v
    missing = [k for k in extra if k not in env]
    if missing:
        raise ValueError(f"--env {' '.join(missing)}: not set in this environment, so there is nothing to forward")
    return out


def write_deepspeed_env(values: Mapping[str, str], user_file: Path | None, out: Path) -> Path:
    """Write ``out``: the user's .deepspeed_env (when given) with ``values`` for keys it does not set."""
    merged = dict(values)
    if user_file is not None and user_file.is_file():
        merged.update(parse_env_file(user_file))  # the user's file wins
    out.write_text("".join(f"{k}={v}\n" for k, v in sorted(merged.items())))
    return out


def _train_args(config: str, overrides: Sequence[str]) -> list[str]:
    if not Path(config).is_file():
        raise ValueError(f"config {config}: not found")
    return ["--module", "megagrow.cli", "train", config, *overrides]


def deepspeed_command(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """The deepspeed launcher command; also sets DS_ENV_FILE in ``env`` (pdsh/openmpi modes) or loads the
    .deepspeed_env into ``env`` (--no-ssh: the ranks are this process's children)."""
    if args.hostfile:
        hostfile = Path(args.hostfile)
    elif env.get("SLURM_JOB_NODELIST"):
        hostfile = Path(args.workdir) / f"hostfile.{env.get('SLURM_JOB_ID', os.getpid())}"
        hostfile.write_text(slurm_hostfile(env["SLURM_JOB_NODELIST"], args.slots or _slots_from_slurm(env)))
    else:
        raise ValueError("no hostfile: pass --hostfile FILE (lines '<host> slots=<n>') or run inside a Slurm "
                         "allocation (SLURM_JOB_NODELIST)")
    hosts = read_hostfile(hostfile)
    master = args.master_addr or env.get("MASTER_ADDR") or hosts[0][0]
    port = str(args.master_port or env.get("MASTER_PORT") or 29500)
    cmd = [sys.executable, "-u", "-m", "deepspeed.launcher.runner", "--hostfile", str(hostfile),
           "--master_addr", master, "--master_port", port]
    user_env = Path(".deepspeed_env")
    values = forwarded_env(env, args.env)
    if args.no_ssh:
        node_rank = args.node_rank if args.node_rank is not None else env.get("SLURM_NODEID")
        if node_rank is None:
            raise ValueError("--no-ssh needs --node-rank N (this host's index in the hostfile) or SLURM_NODEID")
        if not 0 <= int(node_rank) < len(hosts):
            raise ValueError(f"--node-rank {node_rank}: outside the {len(hosts)} host(s) of hostfile {hostfile}")
        if user_env.is_file():
            env.update(parse_env_file(user_env))
        cmd += ["--no_ssh", f"--node_rank={node_rank}"]
    else:
        check_hosts_resolve(hosts, hostfile)
        env_file = Path(args.workdir) / f".deepspeed_env.{env.get('SLURM_JOB_ID', os.getpid())}"
        write_deepspeed_env(values, user_env, env_file)
        env["DS_ENV_FILE"] = str(env_file.resolve())  # deepspeed joins it to ~ and ., an absolute path wins
        if args.launcher != "pdsh":
            cmd += ["--launcher", args.launcher]
        if args.launcher == "slurm":
            cmd += ["--no_ssh_check"]
        if args.launcher_args:
            cmd += ["--launcher_args", args.launcher_args]
    if args.each_rank_log:
        # Created here, absolute: DeepSpeed's per-host launcher checks `exists` and then calls `makedirs`
        # without exist_ok, so hosts sharing a filesystem race for it and the loser fails the job at start.
        log_dir = Path(args.each_rank_log).resolve()
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--each-rank-log {args.each_rank_log}: cannot create the directory ({e})") from e
        cmd += [f"--enable_each_rank_log={log_dir}"]
    return cmd + _train_args(args.config, args.overrides)


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (``localhost``, ``127.x.x.x``, ``::1``)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def torchrun_command(args: argparse.Namespace, env: Mapping[str, str]) -> list[str]:
    """This host's torchrun command; unset values come from Slurm (one task per node) or the defaults."""
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    nnodes = args.nnodes or env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or "1"
    node_rank = args.node_rank if args.node_rank is not None else env.get("SLURM_NODEID", "0")
    master = args.master_addr or env.get("MASTER_ADDR") or (expand_slurm_nodelist(nodelist)[0] if nodelist
                                                             else None)
    port = str(args.master_port or env.get("MASTER_PORT") or 29500)
    nproc = args.nproc_per_node or env.get("SLURM_GPUS_ON_NODE") or "1"
    if not 0 <= int(node_rank) < int(nnodes):
        raise ValueError(f"--node-rank {node_rank}: outside --nnodes {nnodes}")
    if int(nnodes) > 1:  # every host must reach rank 0's rendezvous: a loopback default would wait there forever
        if master is None:
            raise ValueError(f"--nnodes {nnodes}: give --master-addr (the address of the host with --node-rank 0, "
                             "reachable from every host) or set MASTER_ADDR; there is no Slurm allocation to take it "
                             "from, and 127.0.0.1 would make every other host wait for a rendezvous that never comes")
        if _loopback(master):
            raise ValueError(f"--master-addr {master}: a loopback address cannot be reached from the other "
                             f"{int(nnodes) - 1} host(s) of --nnodes {nnodes}; give rank 0's cluster address")
    master = master or "127.0.0.1"
    cmd = [sys.executable, "-u", "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node_rank",
           str(node_rank), "--nproc_per_node", str(nproc), "--master_addr", master, "--master_port", port]
    if args.log_dir:  # one stdout/stderr pair per rank under it; "{node}" is this host's index
        cmd += ["--log_dir", args.log_dir.replace("{node}", str(node_rank)), "--redirects", "3"]
    return cmd + ["-m", "megagrow.cli", "train", *_train_args(args.config, args.overrides)[3:]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megagrow-launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hostfile", help="write a DeepSpeed hostfile from a Slurm allocation")
    h.add_argument("--nodelist", default=None, help="Slurm node list; default SLURM_JOB_NODELIST")
    h.add_argument("--slots", type=int, default=None, help="ranks per node; default GPUs/tasks per node from Slurm")
    h.add_argument("-o", "--output", default="-", help="file to write; default stdout")
    for name in ("deepspeed", "torchrun"):
        s = sub.add_parser(name, help=f"run megagrow train under the {name} launcher")
        s.add_argument("--master-addr", default=None, help="rank 0's host; default MASTER_ADDR or the first host")
        s.add_argument("--master-port", type=int, default=None, help="default MASTER_PORT or 29500")
        s.add_argument("--node-rank", type=int, default=None, help="this host's index (default SLURM_NODEID)")
        s.add_argument("--dry-run", action="store_true", help="print the command and exit")
        s.add_argument("config", help="megagrow YAML config")
        s.add_argument("overrides", nargs=argparse.REMAINDER, help="--section.key=value overrides")
        if name == "deepspeed":
            s.add_argument("--hostfile", default=None, help="DeepSpeed hostfile; default: made from the Slurm job")
            s.add_argument("--slots", type=int, default=None, help="ranks per node for a hostfile made from Slurm")
            s.add_argument("--no-ssh", action="store_true", help="launch this host's ranks only (one call per host)")
            s.add_argument("--launcher", choices=("pdsh", "openmpi", "slurm"), default="pdsh",
                           help="how deepspeed reaches the other hosts (default pdsh over ssh)")
            s.add_argument("--launcher-args", default=None, help="extra arguments for pdsh/mpirun/srun")
            s.add_argument("--env", action="append", default=[], metavar="VAR",
                           help="also forward this variable to every rank (repeatable)")
            s.add_argument("--each-rank-log", default=None, metavar="DIR", help="one log file per rank in DIR")
            s.add_argument("--workdir", default=None, help="where the generated hostfile and env file go "
                           "(default: a temp dir)")
        else:
            s.add_argument("--nnodes", default=None, help="number of hosts (default SLURM_JOB_NUM_NODES or 1)")
            s.add_argument("--nproc-per-node", default=None, help="ranks on this host (default GPUs here, or 1)")
            s.add_argument("--log-dir", default=None,
                           help="one log file per rank under DIR (torchrun --log_dir); {node}: this host's index")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    try:
        if args.command == "hostfile":
            nodelist = args.nodelist or env.get("SLURM_JOB_NODELIST")
            if not nodelist:
                raise ValueError("no node list: pass --nodelist or run inside a Slurm allocation (SLURM_JOB_NODELIST)")
            text = slurm_hostfile(nodelist, args.slots or _slots_from_slurm(env))
            if args.output == "-":
                sys.stdout.write(text)
            else:
                Path(args.output).write_text(text)
            return 0
        if args.command == "deepspeed":
            args.workdir = args.workdir or tempfile.mkdtemp(prefix="megagrow-launch-")
            cmd = deepspeed_command(args, env)
        else:
            if args.nproc_per_node is None and "SLURM_GPUS_ON_NODE" not in env:
                import torch

                args.nproc_per_node = str(max(1, torch.cuda.device_count()))
            cmd = torchrun_command(args, env)
    except ValueError as e:
        print(f"megagrow-launch: error: {e}", file=sys.stderr)
        return 2
    print(f"megagrow-launch: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    os.execve(cmd[0], cmd, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
