"""A small cluster on one machine for the system tests: "hosts" are network namespaces joined by a veth pair
(10.200.0.0/24, no route anywhere else), each with its own host name (UTS namespace) and a shared hosts file
(private mount namespace); daemons (munged, slurmctld/slurmd, sshd, dockerd) run "on" them.

Everything this module starts is recorded in a PID file under STATE and stopped by that PID; namespaces are
deleted by name. :func:`cleanup_leftovers` does both for an earlier run that was killed before its teardown.
A PID is killed only while its command line still names the recorded program (PIDs are reused).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STATE = Path(os.environ.get("MEGAGROW_SYSTEST_STATE", "/tmp/megagrow-systest"))
SUBNET = "10.200.0.0/24"
IFACE = "eth0"  # the veth's name inside each namespace (GLOO_SOCKET_IFNAME)


@dataclass(frozen=True)
class Host:
    name: str  # host name inside its namespace, resolvable on every host
    netns: str
    addr: str


HOSTS = (Host("node1", "mgsys1", "10.200.0.1"), Host("node2", "mgsys2", "10.200.0.2"))
HOST = {h.name: h for h in HOSTS}


def sh(argv: Sequence[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command to completion (captured text output); raise with its output when it fails."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def hosts_file() -> Path:
    return STATE / "hosts"


def on(host: str, argv: Sequence[str], hosts: Path | None = None) -> list[str]:
    """``argv`` run "on" ``host``: in its network namespace, with its host name (own UTS namespace) and the
    shared hosts file bind-mounted over /etc/hosts (own mount namespace; nothing outside changes)."""
    h = HOST[host]
    return ["nsenter", f"--net=/run/netns/{h.netns}", "unshare", "--uts", "--mount", "--propagation", "private",
            "bash", "-c", 'hostname "$0"; mount --bind "$1" /etc/hosts; shift 2; exec "$@"', h.name,
            str(hosts or hosts_file()), "_", *map(str, argv)]


# ---------------------------------------------------------------------------------------------- PIDs
def _pid_alive_as(pid: int, program: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return program in cmdline


def record_pid(name: str, pid: int, program: str) -> None:
    d = STATE / "pids"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(f"{pid} {program}\n")


def kill_recorded(name_filter: Callable[[str], bool] = lambda n: True, wait: float = 10) -> None:
    """SIGTERM every recorded PID still running its program, then SIGKILL what is left after ``wait`` s."""
    d = STATE / "pids"
    if not d.is_dir():
        return
    alive = []
    for f in sorted(d.iterdir()):
        if not name_filter(f.name):
            continue
        try:
            pid_s, program = f.read_text().split(maxsplit=1)
            pid = int(pid_s)
        except (OSError, ValueError):
            f.unlink(missing_ok=True)
            continue
        program = program.strip()
        if _pid_alive_as(pid, program):
            try:
                os.kill(pid, signal.SIGTERM)
                alive.append((pid, program))
            except ProcessLookupError:
                pass
        f.unlink(missing_ok=True)
    deadline = time.monotonic() + wait
    while alive and time.monotonic() < deadline:
        alive = [(p, prog) for p, prog in alive if _pid_alive_as(p, prog) and not _zombie(p)]
        time.sleep(0.1)
    for pid, prog in alive:
        if _pid_alive_as(pid, prog):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def pid_from_file(path: Path, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"{path}: no PID written within {timeout} s")


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready within {timeout} s")


# ------------------------------------------------------------------------------------------ network
def netns_up() -> None:
    """Two namespaces joined by a veth pair (eth0 in each), lo up, addresses on SUBNET, the shared hosts file."""
    a, b = HOSTS
    STATE.mkdir(parents=True, exist_ok=True)
    hosts_file().write_text("127.0.0.1 localhost\n" + "".join(f"{h.addr} {h.name}\n" for h in HOSTS))
    sh(["ip", "netns", "add", a.netns])
    sh(["ip", "netns", "add", b.netns])
    sh(["ip", "link", "add", f"{a.netns}-v", "type", "veth", "peer", "name", f"{b.netns}-v"])
    for h in HOSTS:
        sh(["ip", "link", "set", f"{h.netns}-v", "netns", h.netns])
        sh(["ip", "-n", h.netns, "link", "set", f"{h.netns}-v", "name", IFACE])
        sh(["ip", "-n", h.netns, "addr", "add", f"{h.addr}/24", "dev", IFACE])
        sh(["ip", "-n", h.netns, "link", "set", "lo", "up"])
        sh(["ip", "-n", h.netns, "link", "set", IFACE, "up"])


def netns_down() -> None:
    for h in HOSTS:
        if Path(f"/run/netns/{h.netns}").exists():
            sh(["ip", "netns", "del", h.netns], check=False)
        if Path(f"/sys/class/net/{h.netns}-v").exists():  # a veth end not yet moved when setup was cut short
            sh(["ip", "link", "del", f"{h.netns}-v"], check=False)


def cleanup_leftovers() -> None:
    """Stop what an earlier, killed run left: recorded daemons, containers, namespaces."""
    from tests.system import docker_env

    kill_recorded()
    docker_env.remove_containers_of_earlier_runs()
    kill_recorded()
    netns_down()


# -------------------------------------------------------------------------------------------- munge
def munge_up() -> Path:
    """A private munged (own key and socket under STATE): the machine's /etc/munge is not touched."""
    d = STATE / "munge"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    key = d / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = d / "munge.sock"
    pidf = d / "munged.pid"
    pidf.unlink(missing_ok=True)
    sh(["/usr/sbin/munged", "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={pidf}",
        f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'seed'}"])
    record_pid("munged", pid_from_file(pidf), "munged")
    wait_for(lambda: sh(["munge", "-S", str(sock), "-n"], check=False).returncode == 0, 10, "munged")
    return sock


# --------------------------------------------------------------------------------------------- sshd
@dataclass(frozen=True)
class Ssh:
    dir: Path
    bin: Path  # put first on PATH: an `ssh` that uses the test key and config (pdsh, mpirun, deepspeed use it)


def sshd_up() -> Ssh:
    """An sshd on every host (own host key, authorized key, config under STATE; root's ~/.ssh untouched)."""
    k = STATE / "ssh"
    (k / "bin").mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    for name in ("hostkey", "id"):
        if not (k / name).exists():
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k / name)])
    shutil.copy(k / "id.pub", k / "authorized_keys")
    (k / "sshd_config").write_text(
        f"HostKey {k}/hostkey\nAuthorizedKeysFile {k}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"ListenAddress 0.0.0.0\nPermitUserEnvironment no\n")
    (k / "ssh_config").write_text(
        f"Host *\n  User root\n  IdentityFile {k}/id\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n  BatchMode yes\n  ConnectTimeout 10\n")
    wrapper = k / "bin" / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {k}/ssh_config "$@"\n')
    wrapper.chmod(0o755)
    for h in HOSTS:
        pidf = k / f"sshd-{h.name}.pid"
        pidf.unlink(missing_ok=True)
        sh(on(h.name, ["/usr/sbin/sshd", "-f", str(k / "sshd_config"), "-o", f"PidFile={pidf}"]))
        record_pid(f"sshd-{h.name}", pid_from_file(pidf), "sshd")
    env = {**os.environ, "PATH": f"{k / 'bin'}:{os.environ['PATH']}"}
    wait_for(lambda: sh(on("node1", ["ssh", "node2", "hostname"]), check=False, env=env).stdout.strip() == "node2",
             20, "ssh node1 -> node2")
    return Ssh(k, k / "bin")


# -------------------------------------------------------------------------------------------- slurm
@dataclass(frozen=True)
class Slurm:
    dir: Path
    conf: Path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if base is None else base), "SLURM_CONF": str(self.conf)}

    def cmd(self, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command run on node1 (the controller's host)."""
        return sh(on("node1", argv), timeout=timeout, check=check, env=self.env())

    def job(self, jid: str) -> dict[str, str]:
        r = self.cmd(["scontrol", "show", "job", jid, "-o"], check=False)
        out = {}
        for tok in r.stdout.split():
            k, sep, v = tok.partition("=")
            if sep and k not in out:
                out[k] = v
        return out


SLURM_CONF = """\
ClusterName=megagrow-systest
SlurmctldHost=node1(10.200.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock},cred_expire=20
MailProg=/bin/true
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=30
JobRequeue=1
SchedulerParameters=sched_interval=2
NodeName=node1 NodeAddr=10.200.0.1 CPUs=1 State=UNKNOWN
NodeName=node2 NodeAddr=10.200.0.2 CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def slurm_up(munge_sock: Path) -> Slurm:
    """slurmctld + slurmd on node1, slurmd on node2 (started with nsenter: `ip netns exec` remounts /sys,
    which breaks slurmd's cgroup probe); ready when both nodes are idle."""
    d = STATE / "slurm"
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("state", "log", "spool/node1", "spool/node2"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(d=d, sock=munge_sock))
    s = Slurm(d, conf)
    sh(on("node1", ["/usr/sbin/slurmctld", "-f", str(conf), "-i"]), env=s.env())
    record_pid("slurmctld", pid_from_file(d / "slurmctld.pid"), "slurmctld")
    for h in HOSTS:
        sh(on(h.name, ["/usr/sbin/slurmd", "-f", str(conf)]), env=s.env())
        record_pid(f"slurmd-{h.name}", pid_from_file(d / f"slurmd-{h.name}.pid"), "slurmd")
    wait_for(lambda: s.cmd(["sinfo", "-h", "-t", "idle", "-o", "%D"], check=False).stdout.strip() == "2", 30,
             "two idle Slurm nodes")
    return s
