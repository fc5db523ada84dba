"""File descriptors (issue #18): every partition holds its active segment open (and its index files
once it writes an index entry), so a broker started from a shell with the common soft limit of 1,024
descriptors used to run out after a few hundred partitions, and the partitions that could not open
never accepted a write.

The broker raises its soft RLIMIT_NOFILE to the hard limit at start. Here the test process lowers its own
soft limit to 256 before starting the cluster (the broker inherits it, as from a shell), creates 400
partitions on one broker (at least 400 descriptors, well over 256), and writes one acknowledged record
to every partition with confluent-kafka. `/metrics` reports descriptors in use against the limit.
"""

from __future__ import annotations

import resource
import urllib.request
from pathlib import Path

from clients import Rec, ck_produce

PARTITIONS = 400
LOW_SOFT_LIMIT = 256


def limits_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files line in /proc/{pid}/limits")


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
