"""Record validation on produce, as Kafka's `LogValidator` does it, seen by unmodified clients:

- a compacted topic refuses keyless records one by one (INVALID_RECORD with KIP-467 record errors):
  librdkafka fails exactly those records, and the rest of their batch as collateral; nothing keyless
  is stored;
- CreateTime bounds (KIP-937 `message.timestamp.before.max.ms` / `after.max.ms`, topic value, else the
  cluster-wide default, else Kafka's): the Java producer gets InvalidTimestampException and kafka-python
  InvalidTimestampError for a record outside them, records inside are written;
- a LogAppendTime topic stamps the leader's clock: the produce response carries it (librdkafka's
  delivery report, and Produce v8 on the wire), consumers see LogAppendTime timestamps, and every
  replica stores the leader's stamped bytes unchanged;
- hand-made compressed batches (gzip, snappy raw and xerial, lz4, zstd) whose header lies about their
  records, or whose inner offsets have gaps, are refused (INVALID_RECORD; undecodable bytes
  CORRUPT_MESSAGE) and nothing of them is stored.
"""

from __future__ import annotations

import gzip
import struct
import time

import confluent_kafka as ck
import kafka.errors as kp_errors
import lz4.frame
import pytest
import snappy
import zstandard

import kafka_wire
from chronik_cluster import wait_until
from clients import ck_consume, ck_producer, kp_producer
from conftest import unique_topic
from test_java_client import java_classpath, run_java  # noqa: F401 - java_classpath is a fixture

INVALID_RECORD = 87
INVALID_TIMESTAMP = 32
CORRUPT_MESSAGE = 2
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def produce_with_reports(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]],
                         config: dict, timestamp: int | None = None) -> list[tuple[int | None, int, tuple]]:
    """Produces `(key, value)` records to partition 0 and returns, per record, its delivery report:
    (error code or None, offset, msg.timestamp())."""
    producer = ck_producer(bootstrap, config)
    reports: list = [None] * len(records)

    def report(index: int):
        def on_delivery(err, msg):
            reports[index] = (None if err is None else err.code(), msg.offset(), msg.timestamp())
        return on_delivery

    for i, (key, value) in enumerate(records):
        kwargs = {"key": key, "value": value, "partition": 0, "on_delivery": report(i)}
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        producer.produce(topic, **kwargs)
    assert producer.flush(60) == 0, "delivery reports did not all arrive within 60 s"
    assert all(r is not None for r in reports)
    return reports


def produce_led(conn: kafka_wire.KafkaConnection, topic: str, batch: bytes, version: int = 8,
                timeout: float = 15.0) -> kafka_wire.ProduceResult:
    """Produce to partition 0, retried while the broker has not yet taken up the leadership its
    metadata already shows (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE): nothing is appended then."""
    deadline = time.monotonic() + timeout
    while True:
        result = conn.produce(topic, 0, batch, version=version)
        if result.error_code not in (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE) or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def stored_records(cluster, topic: str, partition: int = 0) -> int:
    leader = cluster.leaders(topic)[partition]
    return sum(b.record_count for b in cluster.stored_batches(leader, topic, partition))


@pytest.mark.confluent
def test_confluent_compacted_topic_fails_exactly_the_keyless_records(shared_cluster, topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1, configs={"cleanup.policy": "compact"})
    bootstrap = cluster.bootstrap_servers
    records = [(None if i % 5 == 0 else f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    keyed = [r for r in records if r[0] is not None]

    # One record per batch (librdkafka's own test 0011, variation 1): only the keyless ones fail.
    alone = produce_with_reports(bootstrap, topic_name, records, {"batch.size": 1, "linger.ms": 0})
    for (key, _), (err, _, _) in zip(records, alone):
        assert err == (ck.KafkaError.INVALID_RECORD if key is None else None), (key, err)
    assert sorted(off for err, off, _ in alone if err is None) == list(range(len(keyed)))

    # All in one batch: the keyless ones fail with INVALID_RECORD, the others as collateral.
    together = produce_with_reports(bootstrap, topic_name, records,
                                    {"linger.ms": 1000, "batch.num.messages": 1000})
    for (key, _), (err, _, _) in zip(records, together):
        expected = ck.KafkaError.INVALID_RECORD if key is None else ck.KafkaError._INVALID_DIFFERENT_RECORD
        assert err == expected, (key, err)

    # Nothing keyless, and nothing of the refused batch, was stored.
    consumed = ck_consume(bootstrap, {(topic_name, 0): 0}, len(keyed), quiet_after=1.0)
    assert [(c.key, c.value) for c in consumed] == keyed
    assert stored_records(cluster, topic_name) == len(keyed)


@pytest.mark.wire
def test_wire_record_errors_name_each_refused_record(shared_cluster, topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1, configs={"cleanup.policy": "compact"})
    leader = cluster.leaders(topic_name)[0]
    now = now_ms()
    records = [(b"a", b"1", now), (None, b"2", now), (b"c", b"3", now), (None, b"4", now)]
    with kafka_wire.KafkaConnection(cluster.broker_addr(leader)) as conn:
        for codec, compress in [(0, None), (1, gzip.compress)]:
            batch = kafka_wire.custom_batch(records, codec=codec, compress=compress)
            result = produce_led(conn, topic_name, batch, version=8)
            assert result.error_code == INVALID_RECORD
            assert [i for i, _ in result.record_errors] == [1, 3]
            assert all(m == f"Compacted topic cannot accept message without key in topic partition "
                            f"{topic_name}-0" for _, m in result.record_errors)
            assert result.error_message.startswith(
                "One or more records have been rejected due to 2 record errors in total")
            # Produce v7 predates record errors: the same refusal, without the list.
            v7 = produce_led(conn, topic_name, batch, version=7)
            assert v7.error_code == INVALID_RECORD and v7.record_errors == []
        # A producer's batch must start at offset 0 (BaseOffset lies outside the CRC).
        keyed = kafka_wire.custom_batch([(b"a", b"1", now)])
        moved = struct.pack(">q", 5) + keyed[8:]
        refused = produce_led(conn, topic_name, moved, version=8)
        assert refused.error_code == INVALID_RECORD and refused.record_errors == []
        assert refused.error_message == (f"The baseOffset of the record batch in the append to "
                                         f"{topic_name}-0 should be 0, but it is 5")
    assert stored_records(cluster, topic_name) == 0


@pytest.mark.timeout(240)
def test_java_producer_gets_invalid_timestamp_outside_the_bounds(java_classpath, shared_cluster,  # noqa: F811
                                                                 topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1, configs={"message.timestamp.before.max.ms": str(HOUR_MS)})
    now = now_ms()
    # Too old for the topic's one hour; inside; too new for Kafka's default one hour ahead; inside.
    stamps = [now - 2 * HOUR_MS, now, now + 2 * HOUR_MS, now - HOUR_MS // 2]
    events = run_java(java_classpath, "produce-at", cluster.bootstrap_servers, topic_name,
                      ",".join(map(str, stamps)))
    assert [e["timestamp"] for e in events] == stamps
    for refused in (events[0], events[2]):
        assert refused.get("error") == "InvalidTimestampException", refused
        assert "is out of range" in refused["message"], refused
    assert [events[1].get("offset"), events[3].get("offset")] == [0, 1], events
    consumed = ck_consume(cluster.bootstrap_servers, {(topic_name, 0): 0}, 2, quiet_after=1.0)
    assert [(c.timestamp, c.timestamp_type) for c in consumed] == [(now, "create"), (stamps[3], "create")]


@pytest.mark.kafka_python
def test_kafka_python_bounds_from_the_cluster_default_and_the_topic(cluster_factory):
    cluster = cluster_factory(controllers=1, brokers=1)
    # The cluster-wide default (Kafka's broker name), then a topic that overrides it.
    cluster.ctl_json("cluster", "config", "set", "log.message.timestamp.before.max.ms=60000")
    by_default, overridden = unique_topic("ts-default"), unique_topic("ts-topic")
    cluster.create_topic(by_default, partitions=1)
    cluster.create_topic(overridden, partitions=1, configs={"message.timestamp.before.max.ms": str(HOUR_MS)})
    producer = kp_producer(cluster.bootstrap_servers, retries=0)
    try:
        old = now_ms() - 5 * 60_000
        with pytest.raises(kp_errors.InvalidTimestampError):
            producer.send(by_default, key=b"k", value=b"old", partition=0, timestamp_ms=old).get(timeout=30)
        fresh = producer.send(by_default, key=b"k", value=b"fresh", partition=0).get(timeout=30)
        assert fresh.offset == 0
        kept = producer.send(overridden, key=b"k", value=b"old", partition=0, timestamp_ms=old).get(timeout=30)
        assert kept.offset == 0
    finally:
        producer.close(timeout=10)
    assert stored_records(cluster, by_default) == 1


def read_stored(cluster, broker_id: int, topic: str) -> bytes:
    """The whole batches of partition 0 on one broker, concatenated."""
    data = b""
    for segment in cluster.segments(broker_id, topic, 0):
        raw = segment.read_bytes()
        pos = 0
        while pos + 61 <= len(raw):
            length = struct.unpack_from(">i", raw, pos + 8)[0]
            if length < 49 or pos + 12 + length > len(raw):
                break
            data += raw[pos:pos + 12 + length]
            pos += 12 + length
    return data


def batch_timestamps(stored: bytes) -> list[tuple[int, int, int]]:
    """(attributes, base timestamp, max timestamp) of each batch in `stored`."""
    out, pos = [], 0
    while pos < len(stored):
        length = struct.unpack_from(">i", stored, pos + 8)[0]
        attributes, = struct.unpack_from(">h", stored, pos + 21)
        base_ts, max_ts = struct.unpack_from(">qq", stored, pos + 27)
        out.append((attributes, base_ts, max_ts))
        pos += 12 + length
    return out


@pytest.mark.confluent
def test_log_append_time_is_stamped_once_by_the_leader(shared_cluster, topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1, replication_factor=3,
                         configs={"message.timestamp.type": "LogAppendTime"})
    bootstrap = cluster.bootstrap_servers
    producer_ts = 1_000_000  # 1970: the producer's timestamp, which the topic ignores
    before = now_ms()
    reports = []
    for codec in ("none", "zstd"):
        records = [(f"{codec}-k{i}".encode(), f"{codec}-v{i}".encode()) for i in range(5)]
        reports += produce_with_reports(bootstrap, topic_name, records,
                                        {"compression.type": codec, "linger.ms": 50}, timestamp=producer_ts)
    after = now_ms()
    for err, _, (kind, ts) in reports:
        assert err is None
        assert kind == ck.TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after, (kind, ts)

    consumed = ck_consume(bootstrap, {(topic_name, 0): 0}, len(reports), quiet_after=0.5)
    reported = {off: ts for _, off, (_, ts) in reports}
    assert [(c.timestamp_type, c.timestamp) for c in consumed] == \
        [("append", reported[c.offset]) for c in consumed]

    # Produce v8 on the wire: the append time in the response; -1 on a CreateTime topic.
    leader = cluster.leaders(topic_name)[0]
    create_time_topic = unique_topic("create-time")
    cluster.create_topic(create_time_topic, partitions=1)
    batch = kafka_wire.custom_batch([(b"k", b"wire", producer_ts)], codec=3, compress=lz4.frame.compress)
    with kafka_wire.KafkaConnection(cluster.broker_addr(leader)) as conn:
        sent_at = now_ms()
        stamped = produce_led(conn, topic_name, batch, version=8)
        assert stamped.error_code == 0 and sent_at <= stamped.log_append_time <= now_ms()
    with kafka_wire.KafkaConnection(cluster.broker_addr(cluster.leaders(create_time_topic)[0])) as conn:
        plain = produce_led(conn, create_time_topic, batch)
        assert plain.error_code == 0 and plain.log_append_time == -1

    # Every replica holds the leader's stamped bytes: the same batches, byte for byte.
    replicas = [b["id"] for b in cluster.brokers]
    expected_batches = 3  # at least: one per codec, and the wire batch (librdkafka may split more)

    def agreed() -> bytes | None:
        copies = {r: read_stored(cluster, r, topic_name) for r in replicas}
        leader_copy = copies[leader]
        if len(batch_timestamps(leader_copy)) < expected_batches:
            return None
        return leader_copy if all(c == leader_copy for c in copies.values()) else None

    stored = wait_until(agreed, 30, f"the replicas of {topic_name}-0 to hold the same batches")
    headers = batch_timestamps(stored)
    assert all(attributes & 0x08 for attributes, _, _ in headers), headers
    assert all(base_ts == producer_ts for _, base_ts, _ in headers), "only MaxTimestamp is rewritten"
    assert {max_ts for _, _, max_ts in headers} >= set(reported.values()) | {stamped.log_append_time}


def xerial(data: bytes) -> bytes:
    """Snappy in the xerial framing the Java client writes."""
    return b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", len(c := snappy.compress(data))) + c


CODECS = [
    ("gzip", 1, gzip.compress),
    ("snappy-raw", 2, snappy.compress),
    ("snappy-xerial", 2, xerial),
    ("lz4", 3, lz4.frame.compress),
    ("zstd", 4, zstandard.ZstdCompressor().compress),
]


@pytest.mark.wire
@pytest.mark.parametrize("name,codec,compress", CODECS, ids=[c[0] for c in CODECS])
def test_lying_compressed_batches_are_refused_and_not_stored(shared_cluster, topic_name, name, codec,
                                                              compress):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1)
    leader = cluster.leaders(topic_name)[0]
    now = now_ms()
    records = [(f"k{i}".encode(), f"{name}-{i}".encode(), now + i) for i in range(3)]
    cases = [
        # The header claims one record more than the batch holds (count and last offset delta agree).
        ("one record more", dict(record_count=4, last_offset_delta=3), INVALID_RECORD, "fewer records"),
        ("one record fewer", dict(record_count=2, last_offset_delta=1), INVALID_RECORD, "more records"),
        # Inner offset deltas 0, 2, 3 under a header of 3 records.
        ("gaps", dict(offset_deltas=[0, 2, 3]), INVALID_RECORD, "offset deltas"),
    ]
    with kafka_wire.KafkaConnection(cluster.broker_addr(leader)) as conn:
        for what, lies, code, message in cases:
            batch = kafka_wire.custom_batch(records, codec=codec, compress=compress, **lies)
            result = produce_led(conn, topic_name, batch, version=8)
            assert result.error_code == code, what
            assert message in (result.error_message or ""), (what, result.error_message)
            assert result.record_errors == [], what
        garbage = kafka_wire.custom_batch(records, codec=codec, compress=lambda _: b"\x01not compressed" * 4)
        assert produce_led(conn, topic_name, garbage, version=8).error_code == CORRUPT_MESSAGE
        assert stored_records(cluster, topic_name) == 0
        honest = produce_led(conn, topic_name, kafka_wire.custom_batch(records, codec=codec, compress=compress),
                              version=8)
        assert (honest.error_code, honest.base_offset) == (0, 0)
    consumed = ck_consume(cluster.bootstrap_servers, {(topic_name, 0): 0}, 3, quiet_after=0.5)
    assert [(c.key, c.value, c.timestamp) for c in consumed] == records
    assert stored_records(cluster, topic_name) == 3
