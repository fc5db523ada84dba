"""The chaos run's private network: one network namespace per controller and broker, one for the
client, and one holding the bridge that joins them, so packets between any two hosts can be dropped.

Layout of a run (`chx<pid>` is the run's prefix, unique per process):

    chx<pid>-br   bridge `br0`; one veth end per host, enslaved to br0 (named after the host: c1, b2, cl)
    chx<pid>-c1   controller 1, `eth0` = 198.18.x.11/24   (controllers .11, .12, ...)
    chx<pid>-b1   broker 1,     `eth0` = 198.18.x.21/24   (brokers .21, .22, ...)
    chx<pid>-cl   the client (workload, checker, chronikctl), `eth0` = 198.18.x.100/24

The addresses come from 198.18.0.0/15 (the benchmarking range, RFC 2544), one /24 per run derived from
the pid. They exist only inside the run's namespaces: nothing is created in the root namespace and no
packet leaves the bridge namespace. A cut is an iptables DROP (INPUT from the peer and OUTPUT to the
peer) inside one host's namespace, a lossy link a DROP of a random share of the host's packets;
healing flushes every host's rules.

What must stay true: every namespace of a run carries the run's prefix, so `remove_prefix` (and
`--cleanup`) finds whatever a crashed run left; deleting a namespace destroys its veth ends and rules,
and the processes inside it are killed first (by the pids `ip netns pids` lists).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from dataclasses import dataclass, field

PREFIX = "chx"
CLONE_NEWNET = 0x40000000


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def subnet_for(pid: int) -> str:
    """The run's /24 inside 198.18.0.0/15 (512 of them), as its first three octets."""
    index = pid % 512
    return f"198.{18 + index // 256}.{index % 256}"


def list_namespaces() -> list[str]:
    done = run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    done = run("ip", "netns", "pids", ns, check=False)
    return [int(x) for x in done.stdout.split() if x.isdigit()]


def kill_and_delete(ns: str) -> None:
    """SIGKILL every process inside `ns` (all started by the run that owns it), then delete it."""
    for pid in namespace_pids(ns):
        if pid == os.getpid():  # the runner itself lives in its client namespace
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    run("ip", "netns", "delete", ns, check=False)


def remove_prefix(prefix: str = PREFIX, skip_live_runs: bool = True) -> list[str]:
    """Deletes the namespaces of runs whose owning process is gone (or all, with
    `skip_live_runs=False`); returns their names. The owner's pid is in the name: `chx<pid>-...`."""
    removed = []
    for ns in list_namespaces():
        if not ns.startswith(prefix) or "-" not in ns:
            continue
        owner = ns[len(prefix):].split("-", 1)[0]
        if not owner.isdigit():
            continue
        if skip_live_runs and int(owner) != os.getpid() and _alive(int(owner)):
            continue
        kill_and_delete(ns)
        removed.append(ns)
    return removed


def _alive(pid: int) -> bool:
    return run_owner_alive(pid)


def run_owner_alive(pid: int) -> bool:
    """Whether `pid` is a live chaos runner (not a zombie, not a reused pid of another program)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and b"run.py" in cmdline


@dataclass
class Host:
    name: str  # c1, b2, cl
    ns: str
    addr: str


@dataclass
class Network:
    """The namespaces and addresses of one run (see the module doc)."""

    prefix: str
    subnet: str  # first three octets
    hosts: dict[str, Host] = field(default_factory=dict)
    cuts: set[tuple[str, str]] = field(default_factory=set)
    # Hosts whose links drop a random share of packets (`lossy`).
    lossy_hosts: set[str] = field(default_factory=set)

    @classmethod
    def for_run(cls, controllers: int, brokers: int, pid: int | None = None) -> "Network":
        pid = os.getpid() if pid is None else pid
        net = cls(prefix=f"{PREFIX}{pid}", subnet=subnet_for(pid))
        for i in range(1, controllers + 1):
            net.hosts[f"c{i}"] = Host(f"c{i}", f"{net.prefix}-c{i}", f"{net.subnet}.{10 + i}")
        for i in range(1, brokers + 1):
            net.hosts[f"b{i}"] = Host(f"b{i}", f"{net.prefix}-b{i}", f"{net.subnet}.{20 + i}")
        net.hosts["cl"] = Host("cl", f"{net.prefix}-cl", f"{net.subnet}.100")
        return net

    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}-br"

    def create(self) -> None:
        run("ip", "netns", "add", self.bridge_ns)
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "lo", "up")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for host in self.hosts.values():
            run("ip", "netns", "add", host.ns)
            run("ip", "-n", self.bridge_ns, "link", "add", host.name, "type", "veth",
                "peer", "name", "eth0", "netns", host.ns)
            run("ip", "-n", self.bridge_ns, "link", "set", host.name, "master", "br0")
            run("ip", "-n", self.bridge_ns, "link", "set", host.name, "up")
            run("ip", "-n", host.ns, "link", "set", "lo", "up")
            run("ip", "-n", host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
            run("ip", "-n", host.ns, "link", "set", "eth0", "up")

    def destroy(self) -> None:
        for host in self.hosts.values():
            kill_and_delete(host.ns)
        kill_and_delete(self.bridge_ns)

    def enter(self, host: str) -> None:
        """Moves the calling thread (call it before any other thread starts, so all inherit it) into
        `host`'s network namespace. Namespace files and iptables are still reached by name."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.hosts[host].ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the client namespace failed")
        finally:
            os.close(fd)

    # ----- faults -----

    def cut(self, a: str, b: str) -> None:
        """Drops every packet between hosts `a` and `b` (both directions), at `a`."""
        if (a, b) in self.cuts or (b, a) in self.cuts:
            return
        ns, peer = self.hosts[a].ns, self.hosts[b].addr
        run("ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-s", peer, "-j", "DROP")
        run("ip", "netns", "exec", ns, "iptables", "-w", "-A", "OUTPUT", "-d", peer, "-j", "DROP")
        self.cuts.add((a, b))

    def cut_between(self, side_a: list[str], side_b: list[str]) -> None:
        for a in side_a:
            for b in side_b:
                if a != b:
                    self.cut(a, b)

    def lossy(self, host: str, probability: float) -> None:
        """Drops each packet into or out of `host` (its `eth0`) with `probability`, at random (the
        iptables `statistic` match): a flaky link rather than a cut, so connections stay up but lose
        segments, retransmit and stall. `netem` is not used: the kernel may not have it."""
        ns = self.hosts[host].ns
        for chain, direction in (("INPUT", "-i"), ("OUTPUT", "-o")):
            run("ip", "netns", "exec", ns, "iptables", "-w", "-A", chain, direction, "eth0", "-m", "statistic",
                "--mode", "random", "--probability", f"{probability:.3f}", "-j", "DROP")
        self.lossy_hosts.add(host)

    def heal(self) -> None:
        for a in {a for a, _ in self.cuts} | self.lossy_hosts:
            run("ip", "netns", "exec", self.hosts[a].ns, "iptables", "-w", "-F", check=False)
        self.cuts.clear()
        self.lossy_hosts.clear()
