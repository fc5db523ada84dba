"""Broker faults under a real client, each on a cluster of its own.

- kill -9 of the leader of a replication-factor-1 partition while a confluent producer (acks=all, no
  idempotence) writes to it, then a restart: every record the producer was told is acknowledged is
  read back at exactly the offset it was acknowledged at (acknowledged means on the log, with Chronik's
  default fsync-per-batch policy), and producing goes on after the restart.
- a torn segment tail: a cleanly stopped broker's last segment loses its last few bytes; after the
  restart the partition is readable, holds exactly the whole batches that were left (a prefix of what
  was produced, no corrupt record), and new records go right after them.
"""

from __future__ import annotations

import os
import threading

import confluent_kafka as ck
import pytest

from chronik_cluster import read_batch_headers, wait_until
from clients import Rec, ck_consume, ck_consumer, ck_produce, ck_producer, payload

pytestmark = pytest.mark.fault


@pytest.mark.confluent
@pytest.mark.timeout(240)
def test_kill_9_of_the_leader_loses_no_acknowledged_record(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=2)
    cluster.create_topic(topic_name, partitions=1)
    leader = cluster.leaders(topic_name)[0]

    acked: list[tuple[bytes, int, int]] = []  # (value, partition, offset) per delivery report
    failed: list[str] = []
    produced = 0
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.value(), msg.partition(), msg.offset()))
        else:
            failed.append(str(err))

    def produce_until_stopped():
        nonlocal produced
        producer = ck_producer(cluster.bootstrap_servers, {
            "acks": "all", "enable.idempotence": False, "linger.ms": 2,
            "message.timeout.ms": 90000, "request.timeout.ms": 5000,
            "queue.buffering.max.messages": 20000})
        while not stop.is_set():
            for _ in range(20):
                try:
                    producer.produce(topic_name, value=payload(produced, 40), on_delivery=on_delivery)
                    produced += 1
                except BufferError:
                    break
            producer.poll(0.01)  # serves delivery reports and paces the loop (about 2000 records/s)
        left = producer.flush(120)
        if left:
            failed.append(f"{left} records neither acknowledged nor failed after flush")

    thread = threading.Thread(target=produce_until_stopped, name="producer", daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 2000, 60, "2000 acknowledged records before the kill")
        produced_at_kill = produced
        cluster.kill_broker(leader)
        acked_at_kill = len(acked)
        wait_until(lambda: produced >= produced_at_kill + 500, 30, "the producer to go on while the leader is dead")
        cluster.start_broker(leader)
        wait_until(lambda: len(acked) >= acked_at_kill + 1000, 90,
                   "1000 more acknowledged records after the restart")
    finally:
        stop.set()
        thread.join(150)
    assert not thread.is_alive(), "the producer did not finish flushing"

    assert acked, "nothing was acknowledged"
    assert all(p == 0 for _, p, _ in acked)
    by_offset = {}
    for value, _, offset in acked:
        assert by_offset.setdefault(offset, value) == value, f"offset {offset} acknowledged for two values"

    consumer = ck_consumer(cluster.bootstrap_servers)
    try:
        low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic_name, 0), timeout=15)
    finally:
        consumer.close()
    assert low == 0 and high > max(by_offset), f"watermarks {(low, high)}, highest acknowledged {max(by_offset)}"
    consumed = ck_consume(cluster.bootstrap_servers, {(topic_name, 0): 0}, high, timeout=90)
    assert [c.offset for c in consumed] == list(range(high)), "the log has holes or repeats"
    stored = {c.offset: c.value for c in consumed}
    lost = [o for o, v in by_offset.items() if stored.get(o) != v]
    assert not lost, (f"{len(lost)} of {len(by_offset)} acknowledged records are missing or changed, "
                      f"first offsets {sorted(lost)[:10]}; {len(failed)} deliveries failed: {failed[:3]}")


@pytest.mark.confluent
def test_torn_segment_tail_recovers_to_the_last_whole_batch(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=1)
    cluster.create_topic(topic_name, partitions=1)
    bootstrap = cluster.bootstrap_servers
    values = [payload(i, 200) for i in range(300)]
    # Three produce calls of 100 records: several batches, and the last one is a whole batch of its own.
    for chunk in range(3):
        ck_produce(bootstrap, topic_name, [Rec(value=v) for v in values[chunk * 100:(chunk + 1) * 100]])

    cluster.stop_broker(1)
    segments = cluster.segments(1, topic_name, 0)
    assert segments, f"no segment files in {cluster.partition_dir(1, topic_name, 0)}"
    last = segments[-1]
    size = last.stat().st_size
    os.truncate(last, size - 7)
    whole, torn_bytes = read_batch_headers(last)
    assert torn_bytes > 0, "the truncation did not tear a batch"
    expected_end = whole[-1].next_offset if whole else int(last.stem)
    assert expected_end < len(values)

    cluster.start_broker(1)
    cluster.wait_topic_ready(topic_name, 1)

    consumed = ck_consume(bootstrap, {(topic_name, 0): 0}, expected_end, quiet_after=1.0)
    assert [c.offset for c in consumed] == list(range(expected_end))
    assert [c.value for c in consumed] == values[:expected_end], "recovered records differ from what was produced"
    consumer = ck_consumer(bootstrap)
    try:
        watermarks = consumer.get_watermark_offsets(ck.TopicPartition(topic_name, 0), timeout=15)
    finally:
        consumer.close()
    assert watermarks == (0, expected_end), f"recovered to {watermarks}, the last whole batch ends at {expected_end}"

    more = [Rec(value=f"after recovery {i}".encode()) for i in range(10)]
    delivered = ck_produce(bootstrap, topic_name, more)
    assert [d.offset for d in delivered] == list(range(expected_end, expected_end + 10)), \
        "producing did not continue at the recovered end"
    tail = ck_consume(bootstrap, {(topic_name, 0): expected_end}, 10, quiet_after=0.5)
    assert [c.value for c in tail] == [r.value for r in more]

    batches = []
    trailing = 0
    for segment in cluster.segments(1, topic_name, 0):
        found, trailing = read_batch_headers(segment)
        batches.extend(found)
    offsets_covered = [o for b in batches for o in range(b.base_offset, b.next_offset)]
    assert offsets_covered == list(range(expected_end + 10)), "the log on disk is not one contiguous run"
    assert trailing == 0, "the active segment still holds torn bytes after recovery"
