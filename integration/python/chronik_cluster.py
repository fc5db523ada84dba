"""A Chronik cluster of real processes, driven through `chronikctl local` and `chronikctl topic`.

`ChronikCluster.up` runs `chronikctl local up` (which starts controllers and brokers on free loopback
ports and returns once every node is ready); `down` runs `chronikctl local down` and is what every
fixture calls in its teardown, failure or not. In between the cluster kills, stops and restarts single
brokers, creates and describes topics through the controllers, waits until every running broker's own
metadata shows a topic with leaders, and reads the partition logs a broker keeps on disk
(`<data_dir>/<topic>-<partition>/<20-digit base offset>.log`, whole v2 record batches).

Waiting is always `wait_until(condition, timeout)`: a poll with a deadline, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import kafka_wire

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")

# Partitions of a topic created without a count (auto-created ones included) in the suite's clusters:
# visibly not Kafka's 1.
DEFAULT_NUM_PARTITIONS = 3

# Replication factor 1 unless a test asks otherwise, and min ISR 1 to match it (Chronik's defaults are
# 3 and 2).
RF1_CONTROLLER_ARGS = [
    "--default-replication-factor=1",
    "--default-min-insync-replicas=1",
    f"--default-num-partitions={DEFAULT_NUM_PARTITIONS}",
]


def bin_dir() -> Path:
    """Where `chronikctl`, `chronik-controller` and `chronik-broker` are."""
    configured = os.environ.get("CHRONIK_BIN_DIR")
    return Path(configured) if configured else REPO_ROOT / "target" / "debug"


def chronikctl_path() -> Path:
    return bin_dir() / "chronikctl"


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Calls `condition` until it returns something truthy and returns that; fails after `timeout` s.

    An exception from `condition` counts as "not yet"; the last one is named in the failure."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - any failure of a probe means "not yet"
            last_error = error
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


class ChronikctlError(RuntimeError):
    """`chronikctl` exited non-zero; carries its output."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"`{shlex.join(argv)}` exited {returncode}\nstdout:\n{stdout.strip()}\nstderr:\n{stderr.strip()}")


def run_chronikctl(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    argv = [str(chronikctl_path()), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise ChronikctlError(argv, -1, str(error.stdout or ""),
                              f"{error.stderr or ''}\n(killed after {timeout}s)") from None
    if done.returncode != 0:
        raise ChronikctlError(argv, done.returncode, done.stdout, done.stderr)
    return done


def parse_json_output(done: subprocess.CompletedProcess) -> Any:
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise AssertionError(
            f"`{shlex.join(done.args)}` did not print one JSON document ({error}):\n{done.stdout}") from None


@dataclass
class BatchHeader:
    """The fields of a v2 record batch header this suite checks (Kafka's DefaultRecordBatch)."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    attributes: int
    last_offset_delta: int
    record_count: int
    position: int  # byte position of the batch in its segment file

    @property
    def compression(self) -> int:
        """0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd."""
        return self.attributes & 0x7

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def end_position(self) -> int:
        return self.position + 12 + self.batch_length


def read_batch_headers(segment: Path) -> tuple[list[BatchHeader], int]:
    """The whole batches of one segment file, and how many trailing bytes do not form a whole batch."""
    data = segment.read_bytes()
    batches: list[BatchHeader] = []
    pos = 0
    while pos + 61 <= len(data):
        base_offset, batch_length, epoch, magic = struct.unpack_from(">qiib", data, pos)
        if batch_length < 49 or pos + 12 + batch_length > len(data):
            break
        attributes, last_offset_delta = struct.unpack_from(">hi", data, pos + 21)
        record_count = struct.unpack_from(">i", data, pos + 57)[0]
        batches.append(BatchHeader(base_offset, batch_length, epoch, magic, attributes,
                                   last_offset_delta, record_count, pos))
        pos += 12 + batch_length
    return batches, len(data) - pos


class ChronikCluster:
    """One running local cluster (see the module doc)."""

    def __init__(self, name: str, directory: Path, doc: dict):
        self.name = name
        self.dir = directory
        self.doc = doc

    # ----- lifecycle -----

    @classmethod
    def up(cls, name: str, directory: Path, controllers: int, brokers: int,
           controller_args: list[str] = (), broker_args: list[str] = (),
           listeners: list[str] = (), timeout: float = 120.0) -> "ChronikCluster":
        """`chronikctl local up`; on failure runs `local down`, then raises with the nodes' log tails.

        `listeners` names the brokers' Kafka listeners (`--listener`); default one PLAINTEXT."""
        args = ["local", "up", "--controllers", str(controllers), "--brokers", str(brokers),
                "--dir", str(directory)]
        args += [f"--listener={name}" for name in listeners]
        args += [f"--controller-arg={a}" for a in controller_args]
        args += [f"--broker-arg={a}" for a in broker_args]
        args += ["--output", "json"]
        try:
            doc = parse_json_output(run_chronikctl(args, timeout))
            cluster = cls(name, directory, doc)
            # `local up` returns once every node's /readyz answers, which can be before the active
            # controller has committed the cluster id and the cluster defaults (the
            # --default-* flags); a topic created in between gets the built-in defaults (RF 3).
            # Wait for that bootstrap, visible as the cluster id.
            wait_until(lambda: cluster.ctl_json("cluster", "status").get("cluster_id"), 30,
                       "the controller quorum to bootstrap the cluster (cluster id and defaults)")
        except BaseException as error:
            tails = log_tails_in(directory)
            down_in(directory)
            raise AssertionError(f"cluster {name} did not come up: {error}\n{tails}") from None
        return cluster

    def down(self) -> None:
        pids = [n.get("pid") for n in self.doc.get("nodes", [])]
        try:
            pids = [n.get("pid") for n in self.status()["nodes"]]  # restarted nodes have new pids
        except Exception:  # noqa: BLE001 - fall back to the pids reported at start
            pass
        down_in(self.dir, pids)

    def local(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
        return run_chronikctl(["local", *args, "--dir", str(self.dir)], timeout)

    def status(self) -> dict:
        return parse_json_output(self.local("status", "--output", "json", timeout=30))

    def kill_broker(self, broker_id: int) -> None:
        """SIGKILL (`chronikctl local kill`)."""
        self.local("kill", "broker", str(broker_id))

    def stop_broker(self, broker_id: int) -> None:
        """SIGTERM and wait for the exit (`chronikctl local stop`)."""
        self.local("stop", "broker", str(broker_id), timeout=120)

    def start_broker(self, broker_id: int) -> None:
        """Start again with the same ports and data dir; returns once ready (`chronikctl local start`)."""
        self.local("start", "broker", str(broker_id), timeout=120)

    # ----- where things are -----

    @property
    def bootstrap_servers(self) -> str:
        return self.doc["bootstrap_servers"]

    @property
    def controllers(self) -> str:
        return self.doc["controllers"]

    @property
    def brokers(self) -> list[dict]:
        return [n for n in self.doc["nodes"] if n["kind"] == "broker"]

    def broker(self, broker_id: int) -> dict:
        for node in self.brokers:
            if node["id"] == broker_id:
                return node
        raise KeyError(f"no broker {broker_id} in cluster {self.name}")

    def broker_addr(self, broker_id: int) -> str:
        return self.broker(broker_id)["addr"]

    def running_broker_ids(self) -> list[int]:
        return [n["id"] for n in self.status()["nodes"] if n["kind"] == "broker" and n.get("pid")]

    # ----- topics through the controllers -----

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return run_chronikctl(["--controllers", self.controllers, *args], timeout)

    def ctl_json(self, *args: str, timeout: float = 30.0) -> Any:
        return parse_json_output(self.ctl(*args, "--output", "json", timeout=timeout))

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int | None = None,
                     configs: dict[str, str] | None = None, wait: bool = True) -> dict:
        """`chronikctl topic create`, then (by default) wait until every running broker serves it."""
        args = ["topic", "create", name, "--partitions", str(partitions)]
        if replication_factor is not None:
            args += ["--replication-factor", str(replication_factor)]
        for key, value in (configs or {}).items():
            args += ["--config", f"{key}={value}"]
        created = self.ctl_json(*args)
        if wait:
            self.wait_topic_ready(name, partitions)
        return created

    def describe_topic(self, name: str) -> dict:
        """`chronikctl topic describe --metadata-only`: {"name","topic_id","configs","partitions":[{"partition",
        "leader",...}]} as the controllers know it (no broker is asked, so a stopped leader cannot slow it)."""
        return self.ctl_json("topic", "describe", name, "--metadata-only")

    def topic_exists(self, name: str) -> bool:
        try:
            self.describe_topic(name)
            return True
        except ChronikctlError:
            return False

    def leaders(self, topic: str) -> dict[int, int]:
        """{partition: leader broker id} as the controller sees it."""
        return {p["partition"]: p["leader"] for p in self.describe_topic(topic)["partitions"]}

    def broker_metadata(self, broker_id: int, topics: list[str] | None) -> kafka_wire.Metadata:
        """What one broker answers to Metadata v4 (without auto-creation)."""
        with kafka_wire.KafkaConnection(self.broker_addr(broker_id), timeout=5) as conn:
            return conn.metadata(topics)

    def wait_topic_ready(self, topic: str, partitions: int, timeout: float = 30.0) -> None:
        """Until every running broker's metadata has `topic` with `partitions` partitions, each led."""
        running = self.running_broker_ids()

        def ready_everywhere() -> bool:
            for broker_id in running:
                meta = self.broker_metadata(broker_id, [topic]).topics.get(topic)
                if meta is None or meta.error_code != 0 or len(meta.partitions) != partitions:
                    return False
                if any(p.error_code != 0 or p.leader < 0 for p in meta.partitions.values()):
                    return False
            return True

        wait_until(ready_everywhere, timeout, f"topic {topic} with {partitions} led partitions "
                                              f"in the metadata of every running broker")

    def wait_leader(self, topic: str, partition: int, leader: int, timeout: float = 60.0) -> None:
        """Until every running broker's metadata names `leader` as the partition's leader."""
        running = self.running_broker_ids()

        def agreed() -> bool:
            for broker_id in running:
                meta = self.broker_metadata(broker_id, [topic]).topics.get(topic)
                p = meta.partitions.get(partition) if meta else None
                if p is None or p.error_code != 0 or p.leader != leader:
                    return False
            return True

        wait_until(agreed, timeout, f"every running broker to name {leader} leader of {topic}-{partition}")

    # ----- the partition logs on disk -----

    def partition_dir(self, broker_id: int, topic: str, partition: int) -> Path:
        return Path(self.broker(broker_id)["data_dir"]) / f"{topic}-{partition}"

    def segments(self, broker_id: int, topic: str, partition: int) -> list[Path]:
        """The partition's `.log` segment files on one broker, by base offset."""
        directory = self.partition_dir(broker_id, topic, partition)
        return sorted(p for p in directory.glob("*.log") if len(p.stem) == 20 and p.stem.isdigit())

    def stored_batches(self, broker_id: int, topic: str, partition: int) -> list[BatchHeader]:
        batches: list[BatchHeader] = []
        for segment in self.segments(broker_id, topic, partition):
            batches.extend(read_batch_headers(segment)[0])
        return batches

    # ----- diagnostics -----

    def log_tails(self, lines: int = 40) -> str:
        return log_tails_in(self.dir, lines)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
BACKTRACE_FRAME = re.compile(r"^\s+(\d+: |at )")


def log_tails_in(directory: Path, lines: int = 40) -> str:
    """The last `lines` lines of every node log file under `directory`."""
    out = []
    for log_file in sorted(Path(directory).glob("**/*.log")):
        if len(log_file.stem) == 20 and log_file.stem.isdigit():
            continue  # a partition segment, not a node log
        try:
            text = ANSI_ESCAPE.sub("", log_file.read_text(errors="replace")).splitlines()
        except OSError as error:
            text = [f"(cannot read: {error})"]
        frames = sum(1 for line in text if BACKTRACE_FRAME.match(line))
        if frames:  # a Rust backtrace would push the lines that matter out of the tail
            text = [line for line in text if not BACKTRACE_FRAME.match(line)]
            text.append(f"({frames} backtrace lines left out; see the file)")
        out.append(f"----- {log_file} (last {lines} lines) -----")
        out.extend(text[-lines:])
    return "\n".join(out) if out else f"(no node log files under {directory})"


def down_in(directory: Path, pids: list[int | None] = ()) -> None:
    """`chronikctl local down`; if that fails, SIGKILL the pids the cluster reported at start."""
    try:
        run_chronikctl(["local", "down", "--dir", str(directory)], timeout=90)
        return
    except (ChronikctlError, OSError) as error:
        print(f"chronikctl local down failed, killing the cluster's processes: {error}")
    for pid in pids:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except OSError as error:
                print(f"cannot kill {pid}: {error}")


CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def assert_stored_batches(cluster: ChronikCluster, topic: str, partition: int, codec: str,
                          records: int) -> list[BatchHeader]:
    """The partition's log on its leader holds `records` records in contiguous magic-2 batches, every
    one compressed with `codec` exactly as the client sent it (the broker stores batches as-is)."""
    leader = cluster.leaders(topic)[partition]
    batches = cluster.stored_batches(leader, topic, partition)
    where = f"{topic}-{partition} on broker {leader} ({cluster.partition_dir(leader, topic, partition)})"
    assert batches, f"no batches stored for {where}"
    assert all(b.magic == 2 for b in batches), f"{where}: magic {[b.magic for b in batches]}"
    codecs = sorted({b.compression for b in batches})
    assert codecs == [CODECS[codec]], \
        f"{where}: stored batches use codecs {codecs}, the client was asked for {codec} ({CODECS[codec]})"
    for before, after in zip(batches, batches[1:]):
        assert after.base_offset == before.next_offset, \
            f"{where}: batch at {after.base_offset} follows one ending at {before.next_offset}"
    assert batches[0].base_offset == 0, f"{where}: first batch at {batches[0].base_offset}"
    assert sum(b.record_count for b in batches) == records, \
        f"{where}: {sum(b.record_count for b in batches)} records stored, {records} produced"
    return batches
