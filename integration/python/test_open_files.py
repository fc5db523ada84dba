"""File descriptors (issue #18): every partition holds its active segment open (and its index files
once it writes an index entry), so a broker started from a shell with the common soft limit of 1,024
descriptors used to run out after a few hundred partitions, and the partitions that could not open
never accepted a write.

The broker raises its soft RLIMIT_NOFILE to the hard limit at start. Here the test process lowers its own
soft limit to 256 before starting the cluster (the broker inherits it, as from a shell), creates 400
partitions on one broker (at least 400 descriptors, well over 256), and writes one acknowledged record
to every partition with confluent-kafka. `/metrics` reports descriptors in use against the limit.

A broker may also serve far more partitions than it may hold descriptors: segment and index files
are kept open by a bounded cache (`log/file_cache.rs`, three quarters of the limit) and reopened on
demand. The second test starts a broker whose hard limit is 300 (it cannot raise it), creates 1,000
partitions, writes one acks=all record to each, reads them all back, kills the broker with SIGKILL,
starts it again under the same limit and reads them all again.
"""

from __future__ import annotations

import resource
import urllib.request
from pathlib import Path

from chronik_cluster import bin_dir, wait_until
from clients import Rec, ck_consume, ck_produce

PARTITIONS = 400
LOW_SOFT_LIMIT = 256


def limits_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files line in /proc/{pid}/limits")


def metrics_of(broker: dict) -> str:
    with urllib.request.urlopen(f"http://{broker['http_addr']}/metrics", timeout=10) as response:
        return response.read().decode()


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_a_broker_started_with_a_low_soft_limit_serves_hundreds_of_partitions(cluster_factory, topic_name):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 4 * PARTITIONS, f"the hard limit {hard} leaves no room for this test"
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))
    try:
        cluster = cluster_factory(controllers=1, brokers=1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    broker = cluster.broker(1)
    assert limits_of(broker["pid"]) == (hard, hard), "the broker did not raise its soft limit"

    cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=1)
    cluster.wait_topic_ready(topic_name, PARTITIONS, timeout=120)
    records = [Rec(value=f"p{p}".encode(), partition=p) for p in range(PARTITIONS)]
    delivered = ck_produce(cluster.bootstrap_servers, topic_name, records, timeout=120)
    assert sorted(d.partition for d in delivered) == list(range(PARTITIONS))
    assert all(d.offset == 0 for d in delivered)

    with urllib.request.urlopen(f"http://{broker['http_addr']}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert gauge(metrics, "chronik_broker_max_open_files") == hard
    # More descriptors in use than the soft limit the broker was started with: it raised it.
    assert gauge(metrics, "chronik_broker_open_files") > max(LOW_SOFT_LIMIT, PARTITIONS)
    assert gauge(metrics, "chronik_broker_unopened_partition_logs") == 0


HARD_LIMIT = 300
MANY_PARTITIONS = 1_000


def limited_bin_dir(directory: Path, limit: int) -> Path:
    """A bin dir whose `chronik-broker` runs the real one under `prlimit --nofile=limit:limit` (same
    pid: the script and prlimit exec), so only the brokers get the low hard limit."""
    directory.mkdir()
    real = bin_dir().resolve()
    for name in ("chronikctl", "chronik-controller"):
        (directory / name).symlink_to(real / name)
    broker = directory / "chronik-broker"
    broker.write_text(f'#!/bin/sh\nexec prlimit --nofile={limit}:{limit} "{real}/chronik-broker" "$@"\n')
    broker.chmod(0o755)
    return directory


def test_a_broker_serves_more_partitions_than_it_may_hold_descriptors(cluster_factory, topic_name,
                                                                       tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONIK_BIN_DIR", str(limited_bin_dir(tmp_path / "bin", HARD_LIMIT)))
    cluster = cluster_factory(controllers=1, brokers=1)
    broker = cluster.broker(1)
    assert limits_of(broker["pid"]) == (HARD_LIMIT, HARD_LIMIT)

    cluster.create_topic(topic_name, partitions=MANY_PARTITIONS, replication_factor=1)
    cluster.wait_topic_ready(topic_name, MANY_PARTITIONS, timeout=180)
    records = [Rec(value=f"p{p}".encode(), partition=p) for p in range(MANY_PARTITIONS)]
    delivered = ck_produce(cluster.bootstrap_servers, topic_name, records, timeout=180)
    assert sorted((d.partition, d.offset) for d in delivered) == [(p, 0) for p in range(MANY_PARTITIONS)]

    def read_all(what: str) -> None:
        start = {(topic_name, p): 0 for p in range(MANY_PARTITIONS)}
        consumed = ck_consume(cluster.bootstrap_servers, start, MANY_PARTITIONS, timeout=180)
        got = sorted((c.partition, c.offset, c.value) for c in consumed)
        assert got == [(p, 0, f"p{p}".encode()) for p in range(MANY_PARTITIONS)], what

    read_all("read back")
    metrics = metrics_of(broker)
    assert gauge(metrics, "chronik_broker_max_open_files") == HARD_LIMIT
    assert gauge(metrics, "chronik_broker_open_files") < HARD_LIMIT
    assert gauge(metrics, "chronik_broker_unopened_partition_logs") == 0
    capacity = gauge(metrics, "chronik_broker_segment_files_capacity")
    assert 0 < capacity < HARD_LIMIT
    assert gauge(metrics, "chronik_broker_segment_files_open") <= capacity
    assert gauge(metrics, "chronik_broker_segment_file_evictions_total") > 0

    # A crash, then a restart that recovers every log under the same limit.
    cluster.kill_broker(1)
    cluster.start_broker(1)
    pid = next(n["pid"] for n in cluster.status()["nodes"] if n["kind"] == "broker")
    assert limits_of(pid) == (HARD_LIMIT, HARD_LIMIT)
    cluster.wait_topic_ready(topic_name, MANY_PARTITIONS, timeout=180)
    wait_until(lambda: gauge(metrics_of(broker), "chronik_broker_unopened_partition_logs") == 0, 180,
               "every partition log open again after the restart")
    read_all("read after a kill -9 and a restart")
    assert gauge(metrics_of(broker), "chronik_broker_open_files") < HARD_LIMIT
