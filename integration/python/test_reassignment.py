"""Issue #13: replica movement (KIP-455) with real processes under an acks=all load: the Java Admin
client's alterPartitionReassignments / listPartitionReassignments, kafka-python's, `chronikctl
partition move`, `reassignment list|cancel` and `broker decommission`.

What is checked is what a user relies on: while an idempotent acks=all producer keeps writing, a
partition's replicas (its leader among them) move to other brokers; the new replicas are added
before the old ones leave; the moved-away brokers delete their copy; and every acknowledged record
is read back afterwards, once, in order. A move towards a stopped broker never completes and is
cancelled back to where it was.
"""

from __future__ import annotations

import threading
import time

import confluent_kafka as ck
import pytest
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient

from chronik_cluster import ChronikctlError, wait_until
from clients import LIBRDKAFKA_BASE, ck_consume
from test_java_client import java_classpath, run_java  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.admin, pytest.mark.fault]

CONTROLLER_ARGS = ["--default-replication-factor=3", "--default-min-insync-replicas=2",
                   "--leader-rebalance-interval-ms=3600000"]


class Load:
    """An idempotent acks=all producer writing `seq` values round robin over the partitions until
    stopped; every acknowledged (partition, offset, value) is kept."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self.acked: list[tuple[int, int, bytes]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "acks": "all",
                                      "enable.idempotence": True, "linger.ms": 5,
                                      "message.timeout.ms": 60000})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            try:
                self._producer.produce(self.topic, f"seq-{seq}".encode(), partition=seq % self.partitions,
                                       on_delivery=self._on_delivery)
                seq += 1
            except BufferError:
                pass
            self._producer.poll(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        left = self._producer.flush(60)
        assert left == 0, f"{left} records still undelivered"

    def wait_for(self, count: int, timeout: float = 30) -> None:
        wait_until(lambda: len(self.acked) >= count, timeout, f"{count} acknowledged records")


def assert_everything_read_back(bootstrap: str, load: Load) -> None:
    assert not load.errors, f"delivery errors under reassignment: {load.errors[:5]}"
    per_partition: dict[int, list[tuple[int, bytes]]] = {}
    for partition, offset, value in load.acked:
        per_partition.setdefault(partition, []).append((offset, value))
    consumed = ck_consume(bootstrap, {(load.topic, p): 0 for p in per_partition}, len(load.acked), timeout=90)
    got: dict[int, list[tuple[int, bytes]]] = {}
    for c in consumed:
        got.setdefault(c.partition, []).append((c.offset, c.value))
    for partition, acked in per_partition.items():
        assert sorted(got.get(partition, [])) == sorted(acked), f"partition {partition}: acknowledged records lost"


def partitions_of(cluster, topic: str) -> list[dict]:
    return cluster.describe_topic(topic)["partitions"]


def no_reassignments(cluster) -> bool:
    return cluster.ctl_json("reassignment", "list") == []


@pytest.mark.timeout(240)
def test_moves_under_acks_all_load_lose_nothing(java_classpath, cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=4, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    before = partitions_of(cluster, topic_name)
    bootstrap = cluster.bootstrap_servers
    with Load(bootstrap, topic_name, 3) as load:
        load.wait_for(300)
        # p0 with the Java Admin client: away from its leader, onto the spare broker.
        p0 = before[0]
        spare0 = next(b for b in range(1, 5) if b not in p0["replicas"])
        target0 = [spare0] + [b for b in p0["replicas"] if b != p0["leader"]]
        events = run_java(java_classpath, "reassign", bootstrap, topic_name, "0", ",".join(map(str, target0)))
        assert {"call": "alterPartitionReassignments", "error": None} in events, events
        assert events[-1] == {"done": True}, events
        seen = [e for e in events if "adding" in e]
        assert not seen or seen[0]["adding"] == [spare0], f"the move must add {spare0} first: {seen}"
        load.wait_for(len(load.acked) + 300)

        # p1 with kafka-python.
        p1 = before[1]
        spare1 = next(b for b in range(1, 5) if b not in p1["replicas"])
        target1 = [p1["replicas"][0], p1["replicas"][1], spare1]
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
        try:
            tp1 = KpTopicPartition(topic_name, 1)
            assert admin.alter_partition_reassignments({tp1: target1}) == {tp1: None}
            wait_until(lambda: not admin.list_partition_reassignments([tp1]), 60, "p1's move to complete")
        finally:
            admin.close()

        # p2 with chronikctl, waiting for completion.
        p2 = before[2]
        spare2 = next(b for b in range(1, 5) if b not in p2["replicas"])
        target2 = [spare2, p2["replicas"][2], p2["replicas"][0]]
        moved = cluster.ctl_json("partition", "move", topic_name, "2", "--replicas", ",".join(map(str, target2)),
                                 timeout=90)
        assert moved["completed"] is True and moved["moved"][0]["to"] == target2, moved
        load.wait_for(len(load.acked) + 300)

    after = partitions_of(cluster, topic_name)
    assert [p["replicas"] for p in after] == [target0, target1, target2], after
    for p, target in zip(after, [target0, target1, target2]):
        assert sorted(p["isr"]) == sorted(target), p
    assert after[0]["leader"] != p0["leader"], "p0's leader was moved away and must have changed"
    assert no_reassignments(cluster)
    # The brokers a partition left delete their copy.
    for index, (old, new) in enumerate(zip(before, after)):
        for gone in set(old["replicas"]) - set(new["replicas"]):
            wait_until(lambda: not cluster.partition_dir(gone, topic_name, index).exists(), 30,
                       f"broker {gone} to delete {topic_name}-{index}")
    assert_everything_read_back(bootstrap, load)


@pytest.mark.timeout(180)
def test_a_move_that_cannot_complete_is_listed_and_cancelled(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=4, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3)
    before = partitions_of(cluster, topic_name)[0]
    spare = next(b for b in range(1, 5) if b not in before["replicas"])
    cluster.stop_broker(spare)
    target = [before["replicas"][0], before["replicas"][1], spare]
    report = cluster.ctl_json("partition", "move", topic_name, "0", "--replicas", ",".join(map(str, target)),
                              "--no-wait")
    assert report["completed"] is False and len(report["pending"]) == 1, report
    [listed] = cluster.ctl_json("reassignment", "list", "--topic", topic_name)
    assert (listed["adding"], listed["removing"]) == ([spare], [before["replicas"][2]]), listed
    assert spare not in listed["isr"]
    # Waiting on it runs out and says so in the exit status.
    with pytest.raises(ChronikctlError) as waited:
        cluster.ctl("partition", "move", topic_name, "0", "--replicas", ",".join(map(str, target)),
                    "--wait-secs", "2")
    assert "still under way" in waited.value.stderr, waited.value

    cluster.ctl("reassignment", "cancel", topic_name, "0")
    assert no_reassignments(cluster)
    after = partitions_of(cluster, topic_name)[0]
    assert after["replicas"] == before["replicas"], after
    with pytest.raises(ChronikctlError) as again:
        cluster.ctl("reassignment", "cancel", topic_name, "0")
    assert "NO_REASSIGNMENT_IN_PROGRESS" in again.value.stderr, again.value
    for bad, words in [(["--replicas", "1,1"], "duplicate"), (["--replicas", "9"], "no such broker")]:
        with pytest.raises(ChronikctlError) as refused:
            cluster.ctl("partition", "move", topic_name, "0", *bad)
        assert "INVALID_REPLICA_ASSIGNMENT" in refused.value.stderr and words in refused.value.stderr, \
            refused.value
    with pytest.raises(ChronikctlError) as missing:
        cluster.ctl("partition", "move", topic_name, "7", "--replicas", "1,2,3")
    assert "does not exist" in missing.value.stderr, missing.value


@pytest.mark.timeout(240)
def test_broker_decommission_under_load(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=4, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic_name, partitions=4, replication_factor=3)
    other = topic_name + "-rf2"
    cluster.create_topic(other, partitions=2, replication_factor=2)
    hosted = [(topic_name, p["partition"]) for p in partitions_of(cluster, topic_name) if 4 in p["replicas"]]
    hosted += [(other, p["partition"]) for p in partitions_of(cluster, other) if 4 in p["replicas"]]
    assert hosted, "broker 4 hosts nothing to move"
    bootstrap = cluster.bootstrap_servers
    with Load(bootstrap, topic_name, 4) as load:
        load.wait_for(300)
        report = cluster.ctl_json("broker", "decommission", "4", timeout=180)
        load.wait_for(len(load.acked) + 300)
    assert report["completed"] is True, report
    assert sorted((m["topic"], m["partition"]) for m in report["moved"]) == sorted(hosted)
    for topic in (topic_name, other):
        for p in partitions_of(cluster, topic):
            assert 4 not in p["replicas"] and 4 not in p["isr"], p
            assert len(p["replicas"]) == (3 if topic == topic_name else 2), p
    for topic, partition in hosted:
        wait_until(lambda: not cluster.partition_dir(4, topic, partition).exists(), 30,
                   f"broker 4 to delete {topic}-{partition}")
    # The decommission left broker 4 cordoned: the read-back creates __consumer_offsets now, and
    # places none of it there (before cordoning, most of its partitions had a replica on broker 4).
    assert {b["broker_id"]: b["cordoned"] for b in cluster.ctl_json("broker", "list")}[4] is True
    assert_everything_read_back(bootstrap, load)
    offsets = partitions_of(cluster, "__consumer_offsets")
    assert offsets and all(4 not in p["replicas"] for p in offsets), offsets
    # Broker 4 is cordoned, so an RF 3 partition on 1, 2 and 3 has nowhere to go: the refused
    # decommission of broker 1 leaves it uncordoned.
    with pytest.raises(ChronikctlError) as no_room:
        cluster.ctl("broker", "decommission", "1")
    assert "no other live broker can take one" in no_room.value.stderr, no_room.value
    assert {b["broker_id"]: b["cordoned"] for b in cluster.ctl_json("broker", "list")} == \
        {1: False, 2: False, 3: False, 4: True}
    with pytest.raises(ChronikctlError) as unknown:
        cluster.ctl("broker", "decommission", "9")
    assert "not registered" in unknown.value.stderr, unknown.value
