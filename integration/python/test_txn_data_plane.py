"""The data plane of Kafka transactions (KIP-98) on partition leaders and followers: transactional
batches, transaction markers (WriteTxnMarkers), the last stable offset (LSO) and the aborted
transactions a read_committed consumer needs.

The transaction coordinator is not part of these tests: the raw protocol client (`kafka_wire`) plays
both the transactional producer (an idempotent InitProducerId for a producer id, batches with the
transactional bit set, a transactional id on the Produce) and the coordinator (WriteTxnMarkers to
the partition leaders). The brokers run with `--transaction-partition-verification-enable=false`, since
no coordinator could confirm the partitions (KIP-890).

- `test_read_committed_through_leader_kill_and_full_restart`: 3 brokers, 3 partitions at RF 3.
  Transactions interleaved with plain records on every partition; some committed, some aborted, one
  left open, with committed data after its start. A confluent-kafka read_committed consumer sees
  exactly the plain and committed records below the open transaction, in order (and so does a
  kafka-python one); a read_uncommitted
  one sees every data record; ListOffsets READ_COMMITTED answers the LSO (the open transaction's
  first offset) and READ_UNCOMMITTED the high watermark; a raw read_committed Fetch lists the aborted
  transactions. After a kill -9 of a partition leader the new leader gives the same answers, the
  open transaction still blocking; after a restart of every broker, too. Committing the open
  transaction then releases everything to a read_committed consumer that was already waiting.
- `test_an_unverified_transaction_is_not_written`: with verification on (the default), a
  transaction's first batch is refused and not written when no coordinator confirms the partition:
  NOT_ENOUGH_REPLICAS (19, retriable) while there is no coordinator to ask, INVALID_TXN_STATE (48)
  from one that does not know the transaction.
- `test_a_batch_of_an_aborted_transaction_is_not_a_retry`: the next transaction's batch with the
  sequence of a batch an abort ended is OUT_OF_ORDER_SEQUENCE_NUMBER (45), not NONE at the aborted
  record's offset (librdkafka reuses the sequences of the records an abort purged, even when an
  earlier send of one reached the log: the chaos harness lost a committed record to this); a retry
  inside the open transaction is still answered with its original offset.
- `test_write_txn_markers_errors`: a marker from an older coordinator epoch is
  TRANSACTION_COORDINATOR_FENCED (52), from an older producer epoch INVALID_PRODUCER_EPOCH (47), to
  an unknown partition UNKNOWN_TOPIC_OR_PARTITION (3), to a non-leader NOT_LEADER_OR_FOLLOWER (6); a
  plain batch inside an open transaction is INVALID_TXN_STATE (48).
"""

from __future__ import annotations

import time

import confluent_kafka as ck
import pytest

import kafka_wire
from chronik_cluster import ChronikCluster, wait_until
from clients import ck_consumer, ck_poll, kp_consume
from kafka_wire import Marker
from test_replication import CONTROLLER_ARGS, describe_now, wait_full_isr, wait_new_leaders

pytestmark = [pytest.mark.wire, pytest.mark.confluent]

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
TRANSACTION_COORDINATOR_FENCED = 52
# Worth another try at the current leader: leadership moving, the ISR catching up, a new leader's
# high watermark not yet at its epoch's start (OFFSET_NOT_AVAILABLE, KIP-207).
RETRIABLE = {5, 6, 7, 14, 15, 19, 20, 78}

PARTITIONS = 3
BROKER_ARGS = ["--transaction-partition-verification-enable=false"]


class Wire:
    """The raw client pointed at whichever broker leads each partition of `topic` now."""

    def __init__(self, cluster: ChronikCluster, topic: str):
        self.cluster = cluster
        self.topic = topic

    def leader(self, partition: int) -> int:
        def led() -> int | None:
            running = self.cluster.running_broker_ids()
            for broker in running:
                try:
                    with kafka_wire.KafkaConnection(self.cluster.broker_addr(broker), timeout=5) as c:
                        t = c.metadata([self.topic]).topics.get(self.topic)
                except OSError:
                    continue
                p = t.partitions.get(partition) if t else None
                if p and p.error_code == 0 and p.leader in running:
                    return p.leader
            return None

        return wait_until(led, 60, f"a live leader of {self.topic}-{partition}")

    def at_leader(self, partition: int, call, what: str, timeout: float = 60.0):
        """`call(connection)` at the partition's leader until it answers without a retriable error;
        `call` returns (error code, result)."""
        last = []

        def attempt():
            try:
                with kafka_wire.KafkaConnection(self.cluster.broker_addr(self.leader(partition))) as c:
                    error, result = call(c)
            except (OSError, ValueError) as e:
                last[:] = [repr(e)]
                return None
            last[:] = [error]
            return None if error in RETRIABLE else (error, result)

        try:
            return wait_until(attempt, timeout, what, interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; last answer {last}") from None

    def produce(self, partition: int, batch: bytes, transactional_id: str | None) -> int:
        """Produces one batch (acks=all) and returns its base offset; fails on any final error."""
        def call(c):
            r = c.produce(self.topic, partition, batch, transactional_id=transactional_id)
            return r.error_code, r.base_offset

        error, offset = self.at_leader(partition, call, f"produce to {self.topic}-{partition}")
        assert error == NONE, f"produce to {self.topic}-{partition}: error {error}"
        return offset

    def end_txn(self, pid: int, commit: bool, partitions: list[int], coordinator_epoch: int = 0,
                epoch: int = 0) -> dict[int, int]:
        """WriteTxnMarkers for `pid` to each partition's leader: {partition: final error}."""
        out = {}
        for p in partitions:
            marker = Marker(pid, epoch, commit, coordinator_epoch, {self.topic: [p]})
            out[p], _ = self.at_leader(
                p, lambda c, m=marker, p=p: (c.write_txn_markers([m])[(pid, self.topic, p)], None),
                f"marker for producer {pid} on {self.topic}-{p}")
        return out

    def list_offset(self, partition: int, isolation_level: int) -> int:
        error, offset = self.at_leader(
            partition, lambda c: c.list_offsets(self.topic, partition, -1, isolation_level),
            f"ListOffsets of {self.topic}-{partition}")
        assert error == NONE
        return offset

    def fetch(self, partition: int, isolation_level: int,
              offset: int = 0) -> kafka_wire.FetchedPartition:
        def call(c):
            f = c.fetch(self.topic, partition, offset, isolation_level)
            return f.error_code, f

        return self.at_leader(partition, call, f"Fetch of {self.topic}-{partition}")[1]

    def aborted_below(self, partition: int, end: int) -> set[tuple[int, int]]:
        """The aborted transactions read_committed fetches from 0 up to `end` return, fetch after
        fetch (one returns at most a segment)."""
        offset, aborted = 0, set()
        while offset < end:
            fetched = self.fetch(partition, kafka_wire.READ_COMMITTED, offset)
            aborted |= set(fetched.aborted or [])
            next_offset = fetched.next_offset()
            assert next_offset is not None and next_offset > offset, f"no progress at {offset}"
            offset = next_offset
        return aborted


def new_producer_id(cluster: ChronikCluster) -> int:
    with kafka_wire.KafkaConnection(cluster.brokers[0]["addr"]) as c:
        error, pid, epoch = c.init_producer_id()
    assert (error, epoch) == (NONE, 0)
    return pid


class TxnProducer:
    """A transactional producer by hand: its own producer id, sequences per partition."""

    def __init__(self, wire: Wire, name: str):
        self.wire = wire
        self.name = name
        self.pid = new_producer_id(wire.cluster)
        self.seq = {p: 0 for p in range(PARTITIONS)}
        self.first_offset: dict[int, int] = {}
        self.values: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}

    def send(self, partition: int, count: int) -> None:
        values = [f"{self.name}-p{partition}-{self.seq[partition] + i}".encode() for i in range(count)]
        batch = kafka_wire.record_batch(values, self.pid, 0, self.seq[partition],
                                        attributes=kafka_wire.TRANSACTIONAL)
        offset = self.wire.produce(partition, batch, f"tid-{self.name}")
        self.first_offset.setdefault(partition, offset)
        self.seq[partition] += count
        self.values[partition] += values


def plain(wire: Wire, partition: int, label: str) -> bytes:
    value = f"plain-{label}-p{partition}".encode()
    wire.produce(partition, kafka_wire.record_batch([value]), None)
    return value


def consume(cluster: ChronikCluster, topic: str, expected: dict[int, list[bytes]], isolation: str,
            what: str) -> None:
    """A confluent-kafka consumer from offset 0 of every partition gets exactly `expected`, in order
    per partition (then nothing more for 2 s)."""
    consumer = ck_consumer(cluster.bootstrap_servers, {"isolation.level": isolation})
    try:
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in expected])
        count = sum(len(v) for v in expected.values())
        got = ck_poll(consumer, count, 60, what, quiet_after=2.0)
    finally:
        consumer.close()
    by_partition = {p: [c.value for c in got if c.partition == p] for p in expected}
    assert by_partition == expected, f"{what}: {by_partition}"


def check_everything(cluster: ChronikCluster, wire: Wire, committed: dict[int, list[bytes]],
                     everything: dict[int, list[bytes]], lso: dict[int, int], ends: dict[int, int],
                     aborted: dict[int, list[tuple[int, int]]], what: str) -> None:
    for p in range(PARTITIONS):
        assert wire.list_offset(p, kafka_wire.READ_COMMITTED) == lso[p], f"{what}: LSO of {p}"
        assert wire.list_offset(p, kafka_wire.READ_UNCOMMITTED) == ends[p], f"{what}: HW of {p}"
        fetched = wire.fetch(p, kafka_wire.READ_COMMITTED)
        assert (fetched.high_watermark, fetched.last_stable_offset) == (ends[p], lso[p]), what
        assert wire.aborted_below(p, lso[p]) == set(aborted[p]), f"{what}: aborted of {p}"
        uncommitted = wire.fetch(p, kafka_wire.READ_UNCOMMITTED)
        assert uncommitted.aborted is None and uncommitted.last_stable_offset == lso[p], what
    consume(cluster, wire.topic, committed, "read_committed", f"read_committed consumer ({what})")
    consume(cluster, wire.topic, everything, "read_uncommitted", f"read_uncommitted consumer ({what})")


@pytest.mark.fault
def test_read_committed_through_leader_kill_and_full_restart(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=CONTROLLER_ARGS,
                              broker_args=BROKER_ARGS)
    cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=3)
    wait_full_isr(cluster, topic_name, 60, "after creation")
    wire = Wire(cluster, topic_name)
    everything: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    committed: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}

    def record(p: int, values: list[bytes], visible: bool) -> None:
        everything[p] += values
        if visible:
            committed[p] += values

    # Interleaved: plain records, then transactions a (commit), b (abort), c (commit) whose batches
    # alternate, then d (abort) and open o, then committed e and plain records after o started.
    a, b, c = (TxnProducer(wire, n) for n in "abc")
    for p in range(PARTITIONS):
        record(p, [plain(wire, p, "first")], True)
        for round_ in range(2):
            for txn in (a, b, c):
                before = len(txn.values[p])
                txn.send(p, 2 + round_)
                record(p, txn.values[p][before:], txn is not b)
    assert set(wire.end_txn(a.pid, True, list(range(PARTITIONS))).values()) == {NONE}
    assert set(wire.end_txn(b.pid, False, list(range(PARTITIONS))).values()) == {NONE}
    assert set(wire.end_txn(c.pid, True, list(range(PARTITIONS))).values()) == {NONE}
    d, o, e = (TxnProducer(wire, n) for n in "doe")
    for p in range(PARTITIONS):
        d.send(p, 3)
        record(p, d.values[p], False)
        o.send(p, 2)
        record(p, o.values[p], False)  # open: not visible while it is
        e.send(p, 1)
        record(p, e.values[p], False)  # committed, but after o's start
        record(p, [plain(wire, p, "late")], False)
    assert set(wire.end_txn(d.pid, False, list(range(PARTITIONS))).values()) == {NONE}
    assert set(wire.end_txn(e.pid, True, list(range(PARTITIONS))).values()) == {NONE}

    lso = {p: o.first_offset[p] for p in range(PARTITIONS)}
    # Every data record, five markers (a, b, c, d, e) per partition, all committed to the ISR.
    ends = {p: len(everything[p]) + 5 for p in range(PARTITIONS)}
    aborted = {p: [(b.pid, b.first_offset[p]), (d.pid, d.first_offset[p])] for p in range(PARTITIONS)}
    for p in range(PARTITIONS):
        assert lso[p] < ends[p]
    check_everything(cluster, wire, committed, everything, lso, ends, aborted, "before any fault")
    # Another client's reading of the aborted transactions: kafka-python, read_committed.
    got = kp_consume(cluster.bootstrap_servers, {(topic_name, p): 0 for p in range(PARTITIONS)},
                     sum(len(v) for v in committed.values()), quiet_after=2.0,
                     isolation_level="read_committed")
    assert {p: [g.value for g in got if g.partition == p] for p in range(PARTITIONS)} == committed

    # kill -9 of partition 0's leader: its successor rebuilt the same state from the replicated log.
    before = describe_now(cluster, topic_name)
    victim = before[0]["leader"]
    cluster.kill_broker(victim)
    wait_new_leaders(cluster, topic_name, before, victim, 60, f"after killing broker {victim}")
    check_everything(cluster, wire, committed, everything, lso, ends, aborted,
                     f"after kill -9 of leader {victim}")
    cluster.start_broker(victim)
    wait_full_isr(cluster, topic_name, 90, f"broker {victim} back")

    # Every broker restarted: state from snapshots, .txnindex files and the logs.
    for broker in cluster.running_broker_ids():
        cluster.stop_broker(broker)
    for broker in (1, 2, 3):
        cluster.start_broker(broker)
    wait_full_isr(cluster, topic_name, 120, "after restarting every broker")
    check_everything(cluster, wire, committed, everything, lso, ends, aborted,
                     "after restarting every broker")

    # A read_committed consumer parked at the LSO gets the rest as soon as o commits.
    consumer = ck_consumer(cluster.bootstrap_servers, {"isolation.level": "read_committed"})
    try:
        consumer.assign([ck.TopicPartition(topic_name, p, lso[p]) for p in range(PARTITIONS)])
        assert consumer.poll(1.0) is None, "nothing is readable above the LSO yet"
        started = time.monotonic()
        assert set(wire.end_txn(o.pid, True, list(range(PARTITIONS))).values()) == {NONE}
        rest = {p: [v for v in everything[p]
                    if v not in committed[p] + b.values[p] + d.values[p]] for p in range(PARTITIONS)}
        got = ck_poll(consumer, sum(len(v) for v in rest.values()), 30, "the parked consumer")
        assert time.monotonic() - started < 15
    finally:
        consumer.close()
    assert {p: [g.value for g in got if g.partition == p] for p in range(PARTITIONS)} == rest
    for p in range(PARTITIONS):
        assert wire.list_offset(p, kafka_wire.READ_COMMITTED) == ends[p] + 1, "o's marker too"


def test_write_txn_markers_errors(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=CONTROLLER_ARGS,
                              broker_args=BROKER_ARGS)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3)
    wait_full_isr(cluster, topic_name, 60, "after creation")
    wire = Wire(cluster, topic_name)
    txn = TxnProducer(wire, "x")
    txn.send(0, 2)

    leader = wire.leader(0)
    with kafka_wire.KafkaConnection(cluster.broker_addr(leader)) as c:
        plain_inside = kafka_wire.record_batch([b"plain"], txn.pid, 0, 2)
        assert c.produce(topic_name, 0, plain_inside).error_code == INVALID_TXN_STATE
        assert c.api_versions()[kafka_wire.API_WRITE_TXN_MARKERS] == (1, 1)
        results = c.write_txn_markers([
            Marker(txn.pid, 0, True, 5, {topic_name: [0], "no-such-topic": [0]}),
            Marker(txn.pid, 0, True, 5, {topic_name: [7]}),
        ])
        assert results == {(txn.pid, topic_name, 0): NONE,
                           (txn.pid, "no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION,
                           (txn.pid, topic_name, 7): UNKNOWN_TOPIC_OR_PARTITION}
        stale = c.write_txn_markers([Marker(txn.pid, 0, False, 4, {topic_name: [0]})])
        assert stale == {(txn.pid, topic_name, 0): TRANSACTION_COORDINATOR_FENCED}
        old_epoch = c.write_txn_markers([Marker(txn.pid, -1, False, 5, {topic_name: [0]})])
        assert old_epoch == {(txn.pid, topic_name, 0): INVALID_PRODUCER_EPOCH}
    follower = next(b for b in (1, 2, 3) if b != leader)
    with kafka_wire.KafkaConnection(cluster.broker_addr(follower)) as c:
        assert c.write_txn_markers([Marker(txn.pid, 0, True, 5, {topic_name: [0]})]) == {
            (txn.pid, topic_name, 0): NOT_LEADER_OR_FOLLOWER}
    # The committed transaction is visible to read_committed; its marker moved the LSO past it.
    assert wire.list_offset(0, kafka_wire.READ_COMMITTED) == 3
    consume(cluster, topic_name, {0: txn.values[0]}, "read_committed", "read_committed consumer")


def test_a_batch_of_an_aborted_transaction_is_not_a_retry(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=1, broker_args=BROKER_ARGS)
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    wire = Wire(cluster, topic_name)
    pid = new_producer_id(cluster)

    def batch(value: bytes, seq: int) -> bytes:
        return kafka_wire.record_batch([value], pid, 0, seq, attributes=kafka_wire.TRANSACTIONAL)

    assert wire.produce(0, batch(b"aborted", 0), "tid-reuse") == 0
    assert wire.end_txn(pid, False, [0]) == {0: NONE}
    with kafka_wire.KafkaConnection(cluster.broker_addr(wire.leader(0))) as c:
        reused = c.produce(topic_name, 0, batch(b"reused", 0), transactional_id="tid-reuse")
        assert (reused.error_code, reused.base_offset) == (OUT_OF_ORDER_SEQUENCE_NUMBER, -1), reused
        assert c.list_offsets(topic_name, 0) == (NONE, 2), "only the aborted record and its marker"
        first = c.produce(topic_name, 0, batch(b"next", 1), transactional_id="tid-reuse")
        retry = c.produce(topic_name, 0, batch(b"next", 1), transactional_id="tid-reuse")
        assert (first.error_code, first.base_offset) == (NONE, 2), first
        assert (retry.error_code, retry.base_offset) == (NONE, 2), retry
    assert wire.end_txn(pid, True, [0]) == {0: NONE}
    consume(cluster, topic_name, {0: [b"next"]}, "read_committed", "read_committed consumer")


def test_an_unverified_transaction_is_not_written(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    wire = Wire(shared_cluster, topic_name)
    pid = new_producer_id(shared_cluster)
    batch = kafka_wire.record_batch([b"unverified"], pid, 0, 0, attributes=kafka_wire.TRANSACTIONAL)
    with kafka_wire.KafkaConnection(shared_cluster.broker_addr(wire.leader(0))) as c:
        result = c.produce(topic_name, 0, batch, transactional_id="tid-never-added")
        assert result.error_code in (NOT_ENOUGH_REPLICAS, INVALID_TXN_STATE), result
        assert c.list_offsets(topic_name, 0) == (NONE, 0), "nothing was written"
