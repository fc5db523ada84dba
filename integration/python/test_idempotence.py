"""The idempotent producer (KIP-98, KIP-360): InitProducerId, and per-partition producer state that turns
a retried batch into its original offsets instead of a second copy.

- `test_idempotent_producer_through_leader_kills`: a confluent-kafka producer with
  `enable.idempotence=true` (acks=all) writes unique values round-robin to 3 partitions (RF 3, min ISR
  2) while the broker leading the most partitions is killed with SIGKILL, repeatedly. A batch the dead
  leader had already replicated but not acknowledged is retried at the new leader, which must know it
  from the batches it copied as a follower. Per partition, the log below the high watermark must hold
  exactly the acknowledged values, each once, at their acknowledged offsets, in the producer's order:
  no duplicates and no gaps.
- `test_wire_duplicate_gap_and_fenced_epoch`: hand-made batches at one leader. A retried batch gets
  NONE and its original base offset; a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER (45); a batch of
  an epoch older than the producer's latest gets INVALID_PRODUCER_EPOCH (47); a transactional
  InitProducerId goes to the id's transaction coordinator (NOT_COORDINATOR (16) from other brokers).
- `test_wire_duplicate_recognised_after_a_crash`: the same retry after the broker was killed and
  restarted (producer state rebuilt from snapshots and the log) still gets its original offset.
"""

from __future__ import annotations

import collections
import time

import pytest

import kafka_wire
from chronik_cluster import ChronikCluster, wait_until
from clients import ck_consume
from test_replication import (CONTROLLER_ARGS, PARTITIONS, ChaosProducer, Timeline, busiest_leader,
                              compare_replicas, describe_now, fmt_parts, led_by, read_partitions,
                              wait_full_isr, wait_new_leaders, watermarks)

NONE = 0
INVALID_RECORD = 87
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
COORDINATOR_LOAD_IN_PROGRESS = 14
NOT_COORDINATOR = 16

IDEMPOTENT = {"enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5}


def value_seq(value: bytes) -> int:
    """The producer's sequence number in a ChaosProducer value `<tag>:<9 digits>:xxx`."""
    return int(value.split(b":")[1])


@pytest.mark.fault
@pytest.mark.confluent
@pytest.mark.timeout(240)
def test_idempotent_producer_through_leader_kills(cluster_factory, topic_name):
    kills_wanted = 4
    started = time.monotonic()
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=3,
                         configs={"min.insync.replicas": "2"})
    wait_full_isr(cluster, topic_name, 30, "after creation")
    timeline = Timeline()
    producer = ChaosProducer(cluster.bootstrap_servers, topic_name, timeline, "idem", rate=1000,
                             config=IDEMPOTENT).start()
    kills: collections.Counter[int] = collections.Counter()
    try:
        producer.wait_acks_each(150, 30, "before the first kill")
        for k in range(1, kills_wanted + 1):
            parts = describe_now(cluster, topic_name)
            victim = busiest_leader(parts, kills)
            timeline.note(f"kill {k}: broker {victim} leads {led_by(parts, victim)}; {fmt_parts(parts)}; "
                          f"acks {len(producer.acked)}")
            cluster.kill_broker(victim)
            kills[victim] += 1
            parts = wait_new_leaders(cluster, topic_name, parts, victim, 20, f"kill {k}")
            timeline.note(f"kill {k}: new leaders {fmt_parts(parts)}")
            producer.wait_acks_each(100, 30, f"with broker {victim} dead (kill {k})")
            cluster.start_broker(victim)
            parts = wait_full_isr(cluster, topic_name, 30, f"broker {victim} after kill {k}")
            timeline.note(f"kill {k}: full ISR again: {fmt_parts(parts)}")
        producer.wait_acks_each(100, 30, "after the last restart")
        producer.stop()
        timeline.note(f"producer stopped: {producer.summary()}")
    except BaseException:
        producer.abandon()
        print(f"timeline of the failed run:\n{timeline.text()}")
        raise

    def failure(headline: str, lines: list[str]) -> str:
        return (f"{headline}\n" + "\n".join(f"  {line}" for line in lines[:30])
                + f"\n  producer: {producer.summary()}\n  timeline:\n{timeline.text()}")

    assert not producer.delivery_errors, failure("an idempotent producer must not fail deliveries",
                                                 [str(dict(producer.delivery_errors))])
    hws = watermarks(cluster.bootstrap_servers, topic_name, PARTITIONS)
    found, problems = read_partitions(cluster.bootstrap_servers, topic_name, hws)
    assert not problems, failure("the partitions cannot be read back whole", problems)
    acked_by_partition: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for a in producer.acked:
        acked_by_partition[a.partition].append(a)
    problems = []
    for p in range(PARTITIONS):
        acked = sorted(acked_by_partition[p], key=lambda a: a.offset)
        log = [found[p][o] for o in sorted(found[p])]
        counts = collections.Counter(log)
        duplicates = [f"p{p}: {v[:16]!r} at offsets {[o for o, x in found[p].items() if x == v]}"
                      for v, n in counts.items() if n > 1]
        problems += duplicates
        if [a.offset for a in acked] != list(range(hws[p])):
            problems.append(f"p{p}: acknowledged offsets are not exactly 0..{hws[p]}: "
                            f"{len(acked)} acks, first gaps "
                            f"{sorted(set(range(hws[p])) - {a.offset for a in acked})[:10]}")
        mismatched = [f"p{p}@{a.offset}: acked {a.value[:16]!r}, log holds {found[p].get(a.offset, b'')[:16]!r}"
                      for a in acked if found[p].get(a.offset) != a.value]
        problems += mismatched
        seqs = [value_seq(v) for v in log]
        if seqs != sorted(seqs):
            problems.append(f"p{p}: values out of the producer's order")
    assert not problems, failure("the log does not hold exactly the acknowledged values, once each, in order",
                                 problems)
    cluster.down()
    disagreements = compare_replicas(cluster, topic_name, hws)
    assert not disagreements, failure("the replicas differ below the high watermark", disagreements)
    print(f"[idempotence] leader kills={sum(kills.values())} {producer.summary()}; log records "
          f"{sum(hws.values())} = acks, no duplicates; {time.monotonic() - started:.0f}s")


def leader_connection(cluster: ChronikCluster, topic: str) -> kafka_wire.KafkaConnection:
    def leader() -> int | None:
        with kafka_wire.KafkaConnection(cluster.brokers[0]["addr"]) as conn:
            t = conn.metadata([topic]).topics.get(topic)
            p = t.partitions.get(0) if t else None
            return p.leader if p and p.error_code == 0 and p.leader >= 0 else None

    return kafka_wire.KafkaConnection(cluster.broker_addr(wait_until(leader, 30, f"a leader of {topic}")))


def values(label: str, first: int, count: int) -> list[bytes]:
    return [f"{label}-{i}".encode() for i in range(first, first + count)]


@pytest.mark.wire
@pytest.mark.confluent
def test_wire_duplicate_gap_and_fenced_epoch(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    shared_cluster.wait_topic_ready(topic_name, 1)
    with leader_connection(shared_cluster, topic_name) as conn:
        assert conn.api_versions()[kafka_wire.API_INIT_PRODUCER_ID] == (0, 5)
        error, pid, epoch = conn.init_producer_id()
        assert (error, epoch) == (NONE, 0) and pid >= 0
        error, other_pid, _ = conn.init_producer_id()
        assert error == NONE and other_pid != pid, "every InitProducerId gets a fresh id"
        # A transactional id is its coordinator's business (test_transactions.py): this broker answers
        # only if it leads the id's `__transaction_state` partition.
        assert conn.init_producer_id("txn-1")[0] in (NONE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS)

        def produce(vals, seq, epoch=0, producer_id=pid):
            return conn.produce(topic_name, 0, kafka_wire.record_batch(vals, producer_id, epoch, seq))

        first = kafka_wire.record_batch(values("a", 0, 3), pid, 0, 0)
        assert conn.produce(topic_name, 0, first) == kafka_wire.ProduceResult(NONE, 0, 0)
        assert produce(values("a", 3, 2), 3).base_offset == 3
        # Retries of either batch: NONE with the original base offset, nothing written.
        assert conn.produce(topic_name, 0, first) == kafka_wire.ProduceResult(NONE, 0, 0)
        assert produce(values("a", 3, 2), 3) == kafka_wire.ProduceResult(NONE, 3, 0)
        # A gap (sequence 5 is next).
        assert produce(values("gap", 0, 1), 9).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        # A new epoch starts at sequence 0 and fences the old one.
        assert produce(values("bumped", 0, 1), 4, epoch=1).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert produce(values("b", 0, 1), 0, epoch=1).base_offset == 5
        assert produce(values("zombie", 0, 1), 5, epoch=0).error_code == INVALID_PRODUCER_EPOCH
        # A producer id without a sequence.
        assert produce(values("noseq", 0, 1), -1).error_code == INVALID_RECORD
        # Another producer id, and a non-idempotent batch, are unaffected.
        assert produce(values("o", 0, 1), 0, producer_id=other_pid).base_offset == 6
        plain = kafka_wire.record_batch(values("plain", 0, 1))
        assert conn.produce(topic_name, 0, plain).base_offset == 7
        assert conn.produce(topic_name, 0, plain).base_offset == 8, "no dedup without a producer id"

    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 9)
    assert [c.value for c in consumed] == (values("a", 0, 5) + values("b", 0, 1) + values("o", 0, 1)
                                           + values("plain", 0, 1) * 2)


@pytest.mark.wire
@pytest.mark.fault
@pytest.mark.confluent
def test_wire_duplicate_recognised_after_a_crash(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=1)
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    cluster.wait_topic_ready(topic_name, 1)
    with leader_connection(cluster, topic_name) as conn:
        error, pid, _ = conn.init_producer_id()
        assert error == NONE
        batches = [kafka_wire.record_batch(values("c", 2 * i, 2), pid, 0, 2 * i) for i in range(8)]
        assert [conn.produce(topic_name, 0, b).base_offset for b in batches] == list(range(0, 16, 2))
    cluster.kill_broker(1)
    cluster.start_broker(1)
    cluster.wait_topic_ready(topic_name, 1)
    with leader_connection(cluster, topic_name) as conn:
        # The last five batches are remembered across the crash; older ones are out of the window.
        for i in range(3, 8):
            assert conn.produce(topic_name, 0, batches[i]) == kafka_wire.ProduceResult(NONE, 2 * i, 0)
        assert conn.produce(topic_name, 0, batches[2]).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        nxt = kafka_wire.record_batch(values("c", 16, 1), pid, 0, 16)
        assert conn.produce(topic_name, 0, nxt).base_offset == 16
    consumed = ck_consume(cluster.bootstrap_servers, {(topic_name, 0): 0}, 17)
    assert [c.value for c in consumed] == values("c", 0, 17)
