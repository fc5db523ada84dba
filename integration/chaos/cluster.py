"""Controllers and brokers as real processes, each inside its own network namespace (see `network`).

Every node binds its host's address with fixed ports (the address is private to the run, so two runs
never collide). A broker's data dir is a tmpfs of its own (`--disk-mb`), so the full-disk fault can
fill it without touching the machine's disk. The process handle of a node is the node itself:
`ip netns exec` execs the binary under the same pid, so kill -9, SIGSTOP and SIGCONT reach it.

The methods that talk to the cluster (readiness, `chronikctl`) open sockets, so they must run in the
client namespace: `run.py` moves its own process there once the network exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from network import Network, run
from security import ChaosSecurity

CONTROLLER_GRPC_PORT = 9093
CONTROLLER_HTTP_PORT = 8093
BROKER_KAFKA_PORT = 9092
BROKER_HTTP_PORT = 8092


@dataclass
class Node:
    kind: str  # "controller" or "broker"
    id: int
    host: str  # network host name: c1, b2
    ns: str
    addr: str
    binary: Path
    args: list[str]
    data_dir: Path
    log_file: Path
    security: ChaosSecurity | None = None
    proc: subprocess.Popen | None = None
    paused: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind[0]}{self.id}"

    def start(self) -> None:
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        log.write(f"\n===== {time.strftime('%H:%M:%S')} start {self.name} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, str(self.binary), *self.args],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env={**os.environ, "RUST_LOG": os.environ.get("CHAOS_RUST_LOG", "info")},
                                     start_new_session=True)
        log.close()
        self.paused = False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        self.paused = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout: float) -> None:
        if not self.running():
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def http_get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        port = CONTROLLER_HTTP_PORT if self.kind == "controller" else BROKER_HTTP_PORT
        scheme = self.security.http_scheme(self.kind) if self.security else "http"
        context = self.security.http_context() if self.security else None
        try:
            with urllib.request.urlopen(f"{scheme}://{self.addr}:{port}{path}", timeout=timeout,
                                        context=context) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, ""

    def ready(self) -> bool:
        try:
            return self.http_get("/readyz")[0] == 200
        except OSError:
            return False


class ChaosCluster:
    def __init__(self, net: Network, run_dir: Path, bin_dir: Path, controllers: int, brokers: int,
                 disk_mb: int, controller_args: list[str], broker_args: list[str], security: ChaosSecurity):
        self.net = net
        self.security = security
        self.dir = run_dir
        self.bin_dir = bin_dir
        self.disk_mb = disk_mb
        self.mounts: list[Path] = []
        c_hosts = [net.hosts[f"c{i}"] for i in range(1, controllers + 1)]
        b_hosts = [net.hosts[f"b{i}"] for i in range(1, brokers + 1)]
        security.generate({**{f"controller-{i}": h.addr for i, h in enumerate(c_hosts, 1)},
                           **{f"broker-{i}": h.addr for i, h in enumerate(b_hosts, 1)}})
        quorum = ",".join(f"{i}@{h.addr}:{CONTROLLER_GRPC_PORT}" for i, h in enumerate(c_hosts, 1))
        self.controllers_arg = ",".join(f"{h.addr}:{CONTROLLER_GRPC_PORT}" for h in c_hosts)
        self.controllers: list[Node] = []
        for i, h in enumerate(c_hosts, 1):
            data = run_dir / f"controller-{i}"
            self.controllers.append(Node(
                "controller", i, h.name, h.ns, h.addr, bin_dir / "chronik-controller",
                ["--node-id", str(i), "--data-dir", str(data),
                 "--listen", f"{h.addr}:{CONTROLLER_GRPC_PORT}",
                 "--http-listen", f"{h.addr}:{CONTROLLER_HTTP_PORT}",
                 "--quorum", quorum, *security.controller_args(i), *controller_args],
                data, run_dir / f"controller-{i}.log", security))
        self.brokers: list[Node] = []
        for i, h in enumerate(b_hosts, 1):
            data = run_dir / f"broker-{i}"
            self.brokers.append(Node(
                "broker", i, h.name, h.ns, h.addr, bin_dir / "chronik-broker",
                ["--broker-id", str(i), "--data-dir", str(data),
                 *security.broker_args(i, h.addr, BROKER_KAFKA_PORT),
                 "--http-listen", f"{h.addr}:{BROKER_HTTP_PORT}",
                 "--controllers", self.controllers_arg, *broker_args],
                data, run_dir / f"broker-{i}.log", security))
        security.write_client_properties(self.bootstrap)

    @property
    def nodes(self) -> list[Node]:
        return self.controllers + self.brokers

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{b.addr}:{BROKER_KAFKA_PORT}" for b in self.brokers)

    def broker(self, broker_id: int) -> Node:
        return self.brokers[broker_id - 1]

    def controller(self, node_id: int) -> Node:
        return self.controllers[node_id - 1]

    # ----- lifecycle -----

    def mount_disks(self) -> None:
        """A tmpfs of `disk_mb` MiB as every broker's data dir."""
        for b in self.brokers:
            b.data_dir.mkdir(parents=True, exist_ok=True)
            run("mount", "-t", "tmpfs", "-o", f"size={self.disk_mb}m", "tmpfs", str(b.data_dir))
            self.mounts.append(b.data_dir)

    def start(self, timeout: float = 60.0) -> None:
        """Controllers first; once they answer, the SCRAM users the brokers and clients need (secured
        runs); then the brokers."""
        self.mount_disks()
        for node in self.controllers:
            node.start()
        self.wait(lambda: all(n.ready() for n in self.controllers), timeout, "every controller ready")
        self.create_users(timeout)
        for node in self.brokers:
            node.start()
        self.wait(lambda: all(n.ready() for n in self.nodes), timeout, "every node ready")

    def create_users(self, timeout: float) -> None:
        """`chronikctl user create` with the admin token for each SCRAM user of the security mode,
        retried until the quorum has a leader that takes it."""
        for user in self.security.users:
            self.wait(lambda: self.ctl("user", "create", user, "--mechanism", "SCRAM-SHA-512",
                                       "--password-file", self.security.path(f"{user}.password"),
                                       json_output=False) or True,
                      timeout, f"the SCRAM user {user}")

    def stop(self) -> None:
        for node in self.brokers:
            node.terminate(20)
        for node in self.controllers:
            node.terminate(10)

    def kill_all(self) -> None:
        for node in self.nodes:
            try:
                node.kill()
            except Exception:  # noqa: BLE001 - best effort during cleanup
                pass

    def unmount_disks(self) -> None:
        for path in self.mounts:
            run("umount", "-l", str(path), check=False)
        self.mounts.clear()

    # ----- the controllers' view -----

    def ctl(self, *args: str, timeout: float = 15.0, json_output: bool = True):
        """`chronikctl *args` with the security mode's credentials; its JSON answer."""
        argv = [str(self.bin_dir / "chronikctl"), "--controllers", self.controllers_arg,
                *self.security.ctl_args(), *args, "--output", "json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"chronikctl {' '.join(args)}: {done.stderr.strip()[-300:]}")
        return json.loads(done.stdout) if json_output else done.stdout

    def describe(self, topic: str) -> dict[int, dict]:
        """{partition: {"leader", "leader_epoch", "replicas", "isr", ...}}."""
        # --metadata-only: the controllers' view; asking a paused or cut-off leader would only stall.
        return {p["partition"]: p for p in self.ctl("topic", "describe", topic, "--metadata-only")["partitions"]}

    def try_describe(self, topic: str, timeout: float = 20.0) -> dict[int, dict] | None:
        try:
            return self.wait(lambda: self.describe(topic), timeout, f"a description of {topic}")
        except TimeoutError:
            return None

    def active_controller(self) -> int | None:
        try:
            status = self.ctl("cluster", "status", timeout=10)
        except Exception:  # noqa: BLE001
            return None
        leaders = [c["node_id"] for c in status.get("controllers", []) if c.get("role") == "leader"]
        return leaders[0] if len(leaders) == 1 else (status.get("leader_id") or None)

    def full_isr(self, topic: str) -> dict[int, dict] | None:
        parts = self.describe(topic)
        ids = sorted(b.id for b in self.brokers)
        ok = all(sorted(p["isr"]) == ids and p["leader"] in ids for p in parts.values())
        return parts if ok else None

    @staticmethod
    def wait(condition, timeout: float, what: str, interval: float = 0.25):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = condition()
                if value:
                    return value
            except Exception as error:  # noqa: BLE001 - "not yet"
                last = error
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                                   + (f" (last error: {last})" if last else ""))
            time.sleep(interval)

    def log_tails(self, lines: int = 30) -> str:
        out = []
        for node in self.nodes:
            try:
                text = node.log_file.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"----- {node.log_file} -----")
            out.extend(text[-lines:])
        return "\n".join(out)
