"""kafka-python (pure Python, its own protocol code) producing to and consuming from Chronik brokers.

The same promises as the confluent suite, through a second independent implementation of the
protocol: every codec (with python-snappy, lz4 and zstandard installed), keys, headers and timestamps,
order and exactly-once per partition for 1 and 6 partitions, offsets_for_times and seeking. Plus the
producer as kafka-python 3 ships it (idempotent by default), which needs InitProducerId.
"""

from __future__ import annotations

import struct
import time

import kafka as kp
import pytest

import kafka_wire
from chronik_cluster import CODECS, assert_stored_batches
from clients import (Rec, assert_same_records, kp_consume, kp_consumer, kp_poll, kp_produce, payload,
                     seq_of)

pytestmark = pytest.mark.kafka_python


@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_round_trip(shared_cluster, topic_name, codec):
    shared_cluster.create_topic(topic_name, partitions=1)
    records = [Rec(value=payload(i, 300), key=f"key-{i % 7}".encode()) for i in range(400)]

    delivered = kp_produce(shared_cluster.bootstrap_servers, topic_name, records,
                           compression_type=None if codec == "none" else codec, linger_ms=50)

    assert sorted(d.offset for d in delivered) == list(range(400))
    assert [d.offset for d in delivered] == list(range(400)), "offsets acknowledged out of order"
    consumed = kp_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 400, quiet_after=0.5)
    assert_same_records(delivered, consumed)
    batches = assert_stored_batches(shared_cluster, topic_name, 0, codec, 400)
    assert max(b.record_count for b in batches) > 1, "the producer never batched: linger too small?"


def test_keys_headers_timestamps_round_trip(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    base_ts = 1_600_000_000_000
    records = [
        Rec(value=b"no key", key=None, timestamp=base_ts),
        Rec(value=b"", key=b"", timestamp=base_ts + 1),
        Rec(value=bytes(range(256))[::-1], key=bytes(range(256)), timestamp=base_ts + 2),
        Rec(value=None, key=b"tombstone", timestamp=base_ts + 3),
        Rec(value=b"headers", key=b"h",
            headers=[("dup", b"1"), ("dup", b"2"), ("empty", b""), ("utf8-ключ", "значение".encode())],
            timestamp=base_ts + 4),
        Rec(value=b"old timestamp", key=b"t", timestamp=1_000_000_000_000),
        Rec(value=b"x" * 100_000, key=b"big", timestamp=base_ts + 5),
    ]
    before_ms = int(time.time() * 1000)
    delivered = kp_produce(shared_cluster.bootstrap_servers, topic_name,
                           records + [Rec(value=b"client clock", key=b"now")])
    after_ms = int(time.time() * 1000)

    consumed = kp_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, len(records) + 1,
                          quiet_after=0.5)
    consumed.sort(key=lambda c: c.offset)
    assert_same_records(delivered, consumed)
    assert [c.offset for c in consumed] == list(range(len(records) + 1))
    assert consumed[3].value is None, "a null value came back as an empty one"
    assert consumed[1].key == b"" and consumed[0].key is None
    last = consumed[-1]
    assert last.timestamp_type == "create" and before_ms - 1000 <= last.timestamp <= after_ms + 1000, \
        f"default timestamp {last.timestamp} not within the send call ({before_ms}..{after_ms})"


@pytest.mark.parametrize("partitions", [1, 6])
def test_order_within_partition_and_exactly_once(shared_cluster, topic_name, partitions):
    shared_cluster.create_topic(topic_name, partitions=partitions)
    count = 1200
    records = [Rec(value=payload(i), key=f"user-{i % 97}".encode()) for i in range(count)]

    delivered = kp_produce(shared_cluster.bootstrap_servers, topic_name, records, linger_ms=5)

    used = {d.partition for d in delivered}
    assert used == set(range(partitions)), f"keys spread over partitions {sorted(used)} only"
    for p in range(partitions):
        mine = [d for d in delivered if d.partition == p]
        assert sorted(d.offset for d in mine) == list(range(len(mine))), \
            f"partition {p}: acknowledged offsets are not 0..{len(mine) - 1}"
        in_offset_order = [seq_of(d.rec.value) for d in sorted(mine, key=lambda d: d.offset)]
        assert in_offset_order == sorted(in_offset_order), \
            f"partition {p}: the broker appended records in another order than they were sent"

    consumed = kp_consume(shared_cluster.bootstrap_servers,
                          {(topic_name, p): 0 for p in range(partitions)}, count, quiet_after=1.0)
    assert_same_records(delivered, consumed)
    for p in range(partitions):
        seqs = [seq_of(c.value) for c in consumed if c.partition == p]
        assert seqs == sorted(seqs), f"partition {p} was consumed out of order"

    consumer = kp_consumer(shared_cluster.bootstrap_servers)
    try:
        tps = [kp.TopicPartition(topic_name, p) for p in range(partitions)]
        assert consumer.beginning_offsets(tps, timeout_ms=10000) == {tp: 0 for tp in tps}
        assert consumer.end_offsets(tps, timeout_ms=10000) == {
            tp: sum(1 for d in delivered if d.partition == tp.partition) for tp in tps}
    finally:
        consumer.close()


def test_seek_by_offset_and_by_timestamp(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    t0 = (int(time.time()) - 3600) * 1000
    records = [Rec(value=payload(i), timestamp=t0 + i * 1000) for i in range(100)]
    kp_produce(shared_cluster.bootstrap_servers, topic_name, records, linger_ms=50)
    tp = kp.TopicPartition(topic_name, 0)

    consumer = kp_consumer(shared_cluster.bootstrap_servers)
    try:
        def lookup(ts: int):
            found = consumer.offsets_for_times({tp: ts}, timeout_ms=10000)[tp]
            return None if found is None else (found.offset, found.timestamp)

        assert lookup(t0 - 60_000) == (0, t0)
        assert lookup(t0 + 50_000) == (50, t0 + 50_000)
        assert lookup(t0 + 50_500) == (51, t0 + 51_000), "the first record with a timestamp >= the target"
        assert lookup(t0 + 99_000) == (99, t0 + 99_000)
        assert lookup(t0 + 100_000) is None, "no record that late"
        assert consumer.end_offsets([tp], timeout_ms=10000) == {tp: 100}

        consumer.assign([tp])
        consumer.seek(tp, lookup(t0 + 70_000)[0])
        [first] = kp_poll(consumer, 1, 30, "consumer seeked to the offset for a time")
        assert (first.offset, seq_of(first.value), first.timestamp) == (70, 70, t0 + 70_000)

        consumer.seek(tp, 20)
        after_seek = sorted(kp_poll(consumer, 5, 30, "consumer after seek(20)"), key=lambda c: c.offset)
        assert [c.offset for c in after_seek] == [20, 21, 22, 23, 24]
        assert [seq_of(c.value) for c in after_seek] == [20, 21, 22, 23, 24]

        consumer.seek_to_beginning(tp)
        assert consumer.position(tp, timeout_ms=10000) == 0
        consumer.seek_to_end(tp)
        assert consumer.position(tp, timeout_ms=10000) == 100
    finally:
        consumer.close()


def test_default_idempotent_producer(shared_cluster, topic_name):
    """kafka-python 3 producers are idempotent unless told otherwise (KIP-679), so they send
    InitProducerId first; a broker that does not serve it cannot take their writes."""
    with kafka_wire.KafkaConnection(shared_cluster.brokers[0]["addr"]) as conn:
        assert kafka_wire.API_INIT_PRODUCER_ID in conn.api_versions(), "InitProducerId (22) not advertised"
    shared_cluster.create_topic(topic_name, partitions=1)
    producer = kp.KafkaProducer(bootstrap_servers=shared_cluster.bootstrap_servers,
                                request_timeout_ms=15000, max_block_ms=30000, delivery_timeout_ms=45000)
    try:
        futures = [producer.send(topic_name, value=payload(i)) for i in range(50)]
        producer.flush(timeout=60)
        offsets = [f.get(timeout=1).offset for f in futures]
    finally:
        producer.close(timeout=10)
    assert offsets == list(range(50))
    consumed = kp_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 50, quiet_after=0.5)
    assert [seq_of(c.value) for c in consumed] == list(range(50))
    # The batches on disk carry the producer id InitProducerId gave (idempotence was really on).
    leader = shared_cluster.leaders(topic_name)[0]
    data = shared_cluster.segments(leader, topic_name, 0)[0].read_bytes()
    producer_id, producer_epoch, base_sequence = struct.unpack_from(">qhi", data, 43)
    assert producer_id >= 0 and producer_epoch == 0 and base_sequence == 0, (producer_id, producer_epoch)
