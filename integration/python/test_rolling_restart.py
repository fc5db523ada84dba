"""A rolling restart under load: every broker in turn gets SIGTERM (a controlled shutdown: its
leaderships move away before it exits), starts again, catches up and rejoins every ISR, while a
confluent producer writes with acks=all to a replication-factor-3 topic (min.insync.replicas 2).

Nothing acknowledged is lost (each acknowledged record is read back at its acknowledged offset), no
produce fails with anything but retriable errors (the producer retries them), every broker is back in
every ISR at the end, and preferred leadership returns (the controller restores preferred leaders
once they are in sync again).
"""

from __future__ import annotations

import threading
import time

import pytest

from chronik_cluster import wait_until
from clients import ck_consume, ck_producer, payload

pytestmark = pytest.mark.fault

PARTITIONS = 3


@pytest.mark.confluent
@pytest.mark.timeout(300)
def test_rolling_restart_under_load_loses_nothing(cluster_factory, topic_name):
    # Chronik's own defaults: replication factor 3, min.insync.replicas 2.
    cluster = cluster_factory(controllers=3, brokers=3, controller_args=[])
    cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=3)

    acked: list[tuple[bytes, int, int]] = []
    failed: list[str] = []
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.value(), msg.partition(), msg.offset()))
        else:
            failed.append(str(err))

    def produce_until_stopped():
        producer = ck_producer(cluster.bootstrap_servers, {
            "acks": "all", "enable.idempotence": False, "linger.ms": 2,
            "message.timeout.ms": 120000, "request.timeout.ms": 10000})
        i = 0
        while not stop.is_set():
            try:
                producer.produce(topic_name, value=payload(i, 40), on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.002)
        left = producer.flush(120)
        if left:
            failed.append(f"{left} records neither acknowledged nor failed after flush")

    def in_every_isr(broker: int) -> bool:
        return all(broker in p["isr"] for p in cluster.describe_topic(topic_name)["partitions"])

    thread = threading.Thread(target=produce_until_stopped)
    thread.start()
    try:
        wait_until(lambda: len(acked) > 200, 30, "the producer to get going")
        for broker in (1, 2, 3):
            before = len(acked)
            cluster.stop_broker(broker)  # SIGTERM: controlled shutdown, waits for the exit
            described = cluster.describe_topic(topic_name)
            assert all(p["leader"] != broker for p in described["partitions"]), described
            assert all(p["leader"] != -1 for p in described["partitions"]), described
            wait_until(lambda: len(acked) > before + 200, 60,
                       f"acknowledged writes while broker {broker} is down")
            cluster.start_broker(broker)
            wait_until(lambda: in_every_isr(broker), 60, f"broker {broker} back in every ISR")
        wait_until(lambda: all(p["leader"] == p["replicas"][0]
                               for p in cluster.describe_topic(topic_name)["partitions"]),
                   60, "preferred leaders restored")
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=180)

    assert not failed, f"produces failed for good: {sorted(set(failed))[:5]}"
    by_partition: dict[int, int] = {}
    for _, partition, offset in acked:
        by_partition[partition] = max(by_partition.get(partition, -1), offset)
    found: dict[tuple[int, int], bytes] = {}
    for partition, last in by_partition.items():
        # Offsets are contiguous from 0, so the records up to the last acknowledged one number last+1.
        consumed = ck_consume(cluster.bootstrap_servers, {(topic_name, partition): 0}, count=last + 1,
                              timeout=120)
        found.update({(c.partition, c.offset): c.value for c in consumed})
    missing = [(p, o, v[:9]) for v, p, o in acked if found.get((p, o)) != v]
    assert not missing, f"{len(missing)} acknowledged records not at their offsets, e.g. {missing[:5]}"
    print(f"rolling restart: {len(acked)} acknowledged records, all read back")
