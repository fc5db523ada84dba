"""confluent-kafka (librdkafka 2.x) producing to and consuming from Chronik brokers.

Proves, with a client nobody here wrote: every compression codec goes through and is stored as the
client sent it; keys, headers, null values and timestamps round-trip; records keep their order within a
partition and arrive exactly once at the offsets the broker acknowledged, for 1 and 6 partitions;
offsets can be looked up by time (ListOffsets with a timestamp) and consumers seek by offset, to the
beginning and to the end.
"""

from __future__ import annotations

import time

import confluent_kafka as ck
import pytest

from chronik_cluster import CODECS, assert_stored_batches
from clients import (Rec, assert_same_records, ck_consume, ck_consumer, ck_poll, ck_produce, payload,
                     seq_of)

pytestmark = pytest.mark.confluent


@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_round_trip(shared_cluster, topic_name, codec):
    shared_cluster.create_topic(topic_name, partitions=1)
    records = [Rec(value=payload(i, 300), key=f"key-{i % 7}".encode()) for i in range(400)]

    delivered = ck_produce(shared_cluster.bootstrap_servers, topic_name, records,
                           {"compression.type": codec, "linger.ms": 50, "batch.num.messages": 100})

    assert [d.offset for d in delivered] == list(range(400)), "offsets acknowledged out of order"
    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 400, quiet_after=0.5)
    assert_same_records(delivered, consumed)
    batches = assert_stored_batches(shared_cluster, topic_name, 0, codec, 400)
    assert max(b.record_count for b in batches) > 1, "the producer never batched: linger too small?"


def test_keys_headers_timestamps_round_trip(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    base_ts = 1_600_000_000_000
    records = [
        Rec(value=b"no key", key=None, timestamp=base_ts),
        Rec(value=b"", key=b"", timestamp=base_ts + 1),  # empty, not null
        Rec(value=bytes(range(256))[::-1], key=bytes(range(256)), timestamp=base_ts + 2),
        Rec(value=None, key=b"tombstone", timestamp=base_ts + 3),
        Rec(value=b"headers", key=b"h",
            headers=[("dup", b"1"), ("dup", b"2"), ("empty", b""), ("null", None),
                     ("utf8-ключ", "значение".encode())],
            timestamp=base_ts + 4),
        Rec(value=b"old timestamp", key=b"t", timestamp=1_000_000_000_000),  # 2001, before the others
        Rec(value=b"later timestamp", key=b"t", timestamp=base_ts + 10**9),
        Rec(value=b"x" * 100_000, key=b"big", timestamp=base_ts + 5),
    ]
    before_ms = int(time.time() * 1000)
    delivered = ck_produce(shared_cluster.bootstrap_servers, topic_name,
                           records + [Rec(value=b"client clock", key=b"now")])
    after_ms = int(time.time() * 1000)

    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, len(records) + 1,
                          quiet_after=0.5)
    assert_same_records(delivered, consumed)
    assert [c.offset for c in consumed] == list(range(len(records) + 1))
    assert consumed[3].value is None, "a null value came back as an empty one"
    assert consumed[1].key == b"" and consumed[0].key is None
    last = consumed[-1]
    assert last.timestamp_type == "create" and before_ms - 1000 <= last.timestamp <= after_ms + 1000, \
        f"default timestamp {last.timestamp} not within the produce call ({before_ms}..{after_ms})"


@pytest.mark.parametrize("partitions", [1, 6])
def test_order_within_partition_and_exactly_once(shared_cluster, topic_name, partitions):
    shared_cluster.create_topic(topic_name, partitions=partitions)
    count = 1200
    records = [Rec(value=payload(i), key=f"user-{i % 97}".encode()) for i in range(count)]

    delivered = ck_produce(shared_cluster.bootstrap_servers, topic_name, records, {"linger.ms": 5})

    used = {d.partition for d in delivered}
    assert used == set(range(partitions)), f"keys spread over partitions {sorted(used)} only"
    for p in range(partitions):
        mine = [d for d in delivered if d.partition == p]
        assert sorted(d.offset for d in mine) == list(range(len(mine))), \
            f"partition {p}: acknowledged offsets are not 0..{len(mine) - 1}"
        in_offset_order = [seq_of(d.rec.value) for d in sorted(mine, key=lambda d: d.offset)]
        assert in_offset_order == sorted(in_offset_order), \
            f"partition {p}: the broker appended records in another order than they were sent"

    consumed = ck_consume(shared_cluster.bootstrap_servers,
                          {(topic_name, p): 0 for p in range(partitions)}, count, quiet_after=1.0)
    assert_same_records(delivered, consumed)
    for p in range(partitions):
        seqs = [seq_of(c.value) for c in consumed if c.partition == p]
        assert seqs == sorted(seqs), f"partition {p} was consumed out of order"

    consumer = ck_consumer(shared_cluster.bootstrap_servers)
    try:
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic_name, p), timeout=10)
            expected = sum(1 for d in delivered if d.partition == p)
            assert (low, high) == (0, expected), f"partition {p} watermarks {(low, high)}"
    finally:
        consumer.close()


def test_seek_by_offset_and_by_timestamp(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    t0 = (int(time.time()) - 3600) * 1000
    records = [Rec(value=payload(i), timestamp=t0 + i * 1000) for i in range(100)]
    # Several records per batch, so time lookups must find a record inside a batch.
    ck_produce(shared_cluster.bootstrap_servers, topic_name, records, {"linger.ms": 50})
    bootstrap = shared_cluster.bootstrap_servers

    consumer = ck_consumer(bootstrap)
    try:
        def lookup(ts: int) -> int:
            [tp] = consumer.offsets_for_times([ck.TopicPartition(topic_name, 0, ts)], timeout=10)
            assert tp.error is None, f"offsets_for_times({ts}): {tp.error}"
            return tp.offset

        assert lookup(t0 - 60_000) == 0
        assert lookup(t0) == 0
        assert lookup(t0 + 50_000) == 50
        assert lookup(t0 + 50_500) == 51, "the first record with a timestamp >= the target"
        assert lookup(t0 + 99_000) == 99
        assert lookup(t0 + 100_000) == -1, "no record that late: offset -1 (end)"
        assert consumer.get_watermark_offsets(ck.TopicPartition(topic_name, 0), timeout=10) == (0, 100)

        consumer.assign([ck.TopicPartition(topic_name, 0, lookup(t0 + 70_000))])
        first = ck_poll(consumer, 1, 30, "consumer assigned at the offset for a time")[0]
        assert (first.offset, seq_of(first.value), first.timestamp) == (70, 70, t0 + 70_000)

        consumer.seek(ck.TopicPartition(topic_name, 0, 20))
        after_seek = ck_poll(consumer, 5, 30, "consumer after seek(20)")
        assert [c.offset for c in after_seek] == [20, 21, 22, 23, 24]
        assert [seq_of(c.value) for c in after_seek] == [20, 21, 22, 23, 24]

        consumer.seek(ck.TopicPartition(topic_name, 0, ck.OFFSET_BEGINNING))
        assert ck_poll(consumer, 1, 30, "consumer after seek(beginning)")[0].offset == 0
    finally:
        consumer.close()

    # A consumer starting at the end sees only what is produced after it started. When its fetcher has
    # resolved OFFSET_END is not observable, so keep producing until the first record arrives.
    consumer = ck_consumer(bootstrap)
    try:
        consumer.assign([ck.TopicPartition(topic_name, 0, ck.OFFSET_END)])
        deadline = time.monotonic() + 30
        first = None
        sent = 0
        while first is None:
            assert time.monotonic() < deadline, "a consumer assigned at OFFSET_END received nothing"
            ck_produce(bootstrap, topic_name, [Rec(value=f"late-{sent}".encode())])
            sent += 1
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                first = msg
        assert first.offset() >= 100, f"a consumer at the end got old offset {first.offset()}"
        assert first.value() == f"late-{first.offset() - 100}".encode()
    finally:
        consumer.close()
