"""Replication under faults: acknowledged writes survive leader kills, pauses and controller failover.

Every test runs 3 controllers and 3 brokers of its own, with a topic of replication factor 3 and
`min.insync.replicas` 2 (see "Durability" in the README), 3 partitions unless said otherwise. A
confluent-kafka producer (acks=all, no idempotence, retries on) writes unique values round-robin to the
partitions from a background thread and records every (value, partition, offset) a delivery report
acknowledged, while the test injures the cluster:

- `test_leader_kills_lose_no_acknowledged_write`: ten times, kill -9 the broker that leads the most
  partitions, wait for new leaders, let the producer go on, restart the broker and wait until it is back
  in every ISR.
- `test_paused_leader_cannot_acknowledge`: SIGSTOP a partition's leader for longer than the broker
  session timeout; the partition gets a new leader with a higher leader epoch meanwhile, then SIGCONT.
- `test_controller_failover_during_broker_failover`: kill -9 the leader broker and, right after, the
  active controller; the broker's partitions still get new leaders within 15 s.
- `test_new_leader_exposes_nothing_a_lagging_isr_member_lacks` (no background producer): the preferred
  replica takes leadership back while another ISR member is paused and lacks the latest records; the new
  leader must not let a consumer read them until that member has them (issue #11, item 1: a new leader
  used to set its high watermark to its log end).
- `test_follower_that_has_not_started_keeps_its_isr_place` (no background producer): a broker paused
  while a topic is created, so it never fetched from its leaders, must not be dropped from the ISRs by
  the stall rule (issue #18: at 100,000 partitions the leaders dropped the slowest broker, still opening
  its logs, from every partition it followed).
- `test_follower_below_the_leaders_log_start_rejoins` (no background producer): a follower comes back
  with an empty partition directory after retention removed the leader's first segments; it must
  restart its log at the leader's log start and rejoin the ISR (issue #11, item 4: it used to fetch
  offset 0 forever, answered OFFSET_OUT_OF_RANGE).
- `test_a_controller_that_lost_its_disk_does_not_vote_committed_metadata_away` (no producer): a
  controller that lost its data directory holds its vote until it has caught up, so a lagging
  controller cannot be elected without a topic the lost directory had committed.
- `test_leader_that_wrote_nothing_in_its_epoch_rejoins_after_restart` (no background producer): a
  broker elected leader and killed before any record reached it must catch up and rejoin the ISR after
  a restart, although its leader-epoch cache names an epoch no batch carries (a broker bug this test
  found, fixed in d633076: it looped on DivergingEpoch and never rejoined the ISR).

After every fault the producer must make progress on every partition (2 of 3 replicas alive is enough
for min ISR 2), and the restarted broker must be back in every ISR within 30 s.

Then every test checks the same invariants (`verify_run`):

- the producer was told about no offset twice with two different values;
- a consumer reading each partition from 0 to its high watermark finds every offset exactly once, and
  every acknowledged value exactly at its acknowledged (partition, offset);
- after `chronikctl local down`, the three replicas of each partition hold byte-identical record batches
  below that high watermark (base offset, length, leader epoch, CRC and records), read from the segment
  files on disk.

A failure names the lost or changed offsets, what the log holds there and where else the value is, with
a timeline of the faults relative to the acknowledgements.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka as ck
import pytest

from chronik_cluster import ChronikCluster, read_batch_headers, wait_until
from clients import CK_TRANSIENT, Rec, ck_consumer, ck_produce, ck_producer

pytestmark = [pytest.mark.fault, pytest.mark.confluent]

PARTITIONS = 3
BROKERS = 3
CONTROLLERS = 3
# Chronik's defaults (RF 3, min ISR 2), passed explicitly so the test does not depend on them.
CONTROLLER_ARGS = ["--default-replication-factor=3", "--default-min-insync-replicas=2"]

PRODUCER_CONFIG = {
    "acks": "all",
    "enable.idempotence": False,
    "retries": 2147483647,
    "retry.backoff.ms": 100,
    "linger.ms": 5,
    "message.timeout.ms": 60000,
    "request.timeout.ms": 5000,
    "queue.buffering.max.messages": 100000,
    "log_level": 2,  # connection failures are expected here; error_cb counts them
}


# ----- the producer in the background -----

@dataclass(frozen=True)
class Ack:
    value: bytes
    partition: int
    offset: int
    at: float  # seconds since the run started, when the delivery report arrived


@dataclass
class Timeline:
    """What the test did, with times relative to the start of the run (shown under failures)."""

    start: float = field(default_factory=time.monotonic)
    events: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.start

    def note(self, text: str) -> None:
        self.events.append(f"{self.now():7.2f}s {text}")

    def text(self, last: int = 60) -> str:
        shown = self.events[-last:]
        skipped = len(self.events) - len(shown)
        return "\n".join(([f"   ... {skipped} earlier events"] if skipped else []) + [f"   {e}" for e in shown])


class ChaosProducer:
    """Writes unique values round-robin over the partitions, at about `rate` records/s, until stopped."""

    def __init__(self, bootstrap: str, topic: str, timeline: Timeline, tag: str, rate: int = 800,
                 config: dict | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeline = timeline
        self.tag = tag
        self.rate = rate
        self.config = {**PRODUCER_CONFIG, **(config or {})}
        self.acked: list[Ack] = []
        self.acked_per_partition: collections.Counter[int] = collections.Counter()
        self.sent_at: list[float] = []  # by sequence number
        self.latencies: list[float] = []  # produce() to delivery report, of acknowledged records
        self.delivery_errors: collections.Counter[str] = collections.Counter()
        self.client_errors: collections.Counter[str] = collections.Counter()
        self.produced = 0
        self.unflushed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{topic}", daemon=True)
        self._crash: BaseException | None = None

    def start(self) -> "ChaosProducer":
        self._thread.start()
        return self

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            now = time.monotonic()
            self.acked.append(Ack(msg.value(), msg.partition(), msg.offset(), now - self.timeline.start))
            self.acked_per_partition[msg.partition()] += 1
            self.latencies.append(now - self.sent_at[int(msg.value().split(b":")[1])])
        else:
            self.delivery_errors[err.name()] += 1

    def _on_error(self, err) -> None:
        self.client_errors[err.name()] += 1

    def _run(self) -> None:
        try:
            producer = ck_producer(self.bootstrap, {**self.config, "error_cb": self._on_error})
            burst = 8
            next_at = time.monotonic()
            while not self._stop.is_set():
                for _ in range(burst):
                    value = f"{self.tag}:{self.produced:09d}:".encode() + b"x" * 40
                    self.sent_at.append(time.monotonic())
                    try:
                        producer.produce(self.topic, value=value, partition=self.produced % PARTITIONS,
                                         on_delivery=self._on_delivery)
                    except BufferError:
                        self.sent_at.pop()
                        break
                    self.produced += 1
                next_at += burst / self.rate
                while (delay := next_at - time.monotonic()) > 0:
                    producer.poll(delay)
                producer.poll(0)
                if time.monotonic() - next_at > 1.0:  # far behind (a stall): do not burst to catch up
                    next_at = time.monotonic()
            self.unflushed = producer.flush(120)
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self._crash = error

    def wait_acks_each(self, more: int, timeout: float, what: str) -> None:
        """Until every partition has `more` acknowledged records beyond its current count."""
        targets = {p: self.acked_per_partition[p] + more for p in range(PARTITIONS)}

        def lagging() -> list[int]:
            return [p for p, n in targets.items() if self.acked_per_partition[p] < n]

        try:
            wait_until(lambda: not lagging(), timeout, "", interval=0.05)
        except AssertionError:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {more} more acknowledged records on every "
                f"partition ({what}): partitions {lagging()} lag; acks per partition "
                f"{dict(sorted(self.acked_per_partition.items()))}; delivery errors "
                f"{dict(self.delivery_errors)}, client errors {dict(self.client_errors)}") from None

    def stop(self) -> None:
        """Stops producing and flushes; every record is then acknowledged or failed."""
        self._stop.set()
        self._thread.join(150)
        assert not self._thread.is_alive(), "the producer did not finish flushing in 150 s"
        assert self._crash is None, f"the producer thread failed: {self._crash!r}"
        assert self.unflushed == 0, f"{self.unflushed} records neither acknowledged nor failed after flush"

    def abandon(self) -> None:
        """Failure path: stop without waiting long."""
        self._stop.set()
        self._thread.join(5)

    def summary(self) -> str:
        errors = sum(self.delivery_errors.values())
        lat = sorted(self.latencies)
        latency = (f"ack latency p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
                   f"p99 {lat[len(lat) * 99 // 100] * 1000:.0f} ms, max {lat[-1]:.1f} s" if lat else "no acks")
        return (f"produced {self.produced}, acked {len(self.acked)} ({latency}), delivery errors {errors}"
                f"{' ' + str(dict(self.delivery_errors)) if errors else ''}, client errors "
                f"{dict(self.client_errors) or '{}'}")


# ----- the cluster as the controllers see it -----

def describe(cluster: ChronikCluster, topic: str) -> dict[int, dict]:
    """{partition: {"leader", "leader_epoch", "replicas", "isr"}} from `chronikctl topic describe`."""
    return {p["partition"]: p for p in cluster.describe_topic(topic)["partitions"]}


def describe_now(cluster: ChronikCluster, topic: str, timeout: float = 20.0) -> dict[int, dict]:
    """`describe`, retried while the controllers cannot answer (a controller failover)."""
    return wait_until(lambda: describe(cluster, topic), timeout, f"a description of {topic}")


def busiest_leader(parts: dict[int, dict], kills: collections.Counter) -> int:
    """The broker leading the most partitions; ties go to the one killed least often."""
    led = collections.Counter(p["leader"] for p in parts.values() if p["leader"] in range(1, BROKERS + 1))
    return min(led, key=lambda b: (-led[b], kills[b], b))


def led_by(parts: dict[int, dict], broker: int) -> list[int]:
    return sorted(p for p, d in parts.items() if d["leader"] == broker)


def wait_new_leaders(cluster: ChronikCluster, topic: str, old: dict[int, dict], dead: int,
                     timeout: float, what: str) -> dict[int, dict]:
    """Until every partition `dead` led has another leader with a higher leader epoch."""
    mine = led_by(old, dead)
    seen: list[dict[int, dict]] = []

    def moved():
        parts = describe(cluster, topic)
        seen[:] = [parts]
        for p in mine:
            now = parts[p]
            if now["leader"] in (dead, None, -1) or now["leader_epoch"] <= old[p]["leader_epoch"]:
                return None
        return parts

    try:
        return wait_until(moved, timeout, f"new leaders for partitions {mine} of broker {dead} ({what})")
    except AssertionError as error:
        raise AssertionError(f"{error}; before: {fmt_parts(old)}; last seen: "
                             f"{fmt_parts(seen[0]) if seen else 'nothing'}") from None


def wait_full_isr(cluster: ChronikCluster, topic: str, timeout: float, what: str) -> dict[int, dict]:
    """Until every broker is in the ISR of every partition."""
    seen: list[dict[int, dict]] = []

    def full():
        parts = describe(cluster, topic)
        seen[:] = [parts]
        return parts if all(sorted(p["isr"]) == list(range(1, BROKERS + 1)) for p in parts.values()) else None

    try:
        return wait_until(full, timeout, f"every broker back in every ISR of {topic} ({what})", interval=0.2)
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {fmt_parts(seen[0]) if seen else 'nothing'}") from None


def fmt_parts(parts: dict[int, dict]) -> str:
    return " ".join(f"p{p}:L{d['leader']}/e{d['leader_epoch']}/isr{d['isr']}" for p, d in sorted(parts.items()))


def active_controller(cluster: ChronikCluster) -> int:
    status = cluster.ctl_json("cluster", "status")
    leaders = [c["node_id"] for c in status["controllers"] if c.get("role") == "leader"]
    assert len(leaders) == 1, f"not one active controller: {status['controllers']}"
    return leaders[0]


def node_pid(cluster: ChronikCluster, kind: str, node_id: int) -> int:
    for node in cluster.status()["nodes"]:
        if node["kind"] == kind and node["id"] == node_id:
            assert node.get("pid"), f"{kind} {node_id} is not running: {node}"
            return node["pid"]
    raise KeyError(f"no {kind} {node_id}")


def start_cluster(cluster_factory, topic: str) -> ChronikCluster:
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=BROKERS, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic, partitions=PARTITIONS, replication_factor=3,
                         configs={"min.insync.replicas": "2"})
    wait_full_isr(cluster, topic, 30, "after creation")
    return cluster


# ----- the checks after a run -----

def read_partitions(bootstrap: str, topic: str, hws: dict[int, int],
                    timeout: float = 90.0) -> tuple[dict[int, dict[int, bytes]], list[str]]:
    """Every record of every partition below its high watermark: ({partition: {offset: value}}, problems)."""
    found: dict[int, dict[int, bytes]] = {p: {} for p in hws}
    problems: list[str] = []
    todo = {p for p, hw in hws.items() if hw > 0}
    if not todo:
        return found, problems
    consumer = ck_consumer(bootstrap, {"fetch.max.bytes": 8 * 1024 * 1024})
    transient: list[str] = []
    try:
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in sorted(todo)])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"reading {topic} to its high watermarks {hws}: still missing partitions {sorted(todo)} "
                    f"after {timeout:.0f}s (read {[len(found[p]) for p in sorted(found)]}); "
                    f"transient errors {transient[-5:]}")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                err = msg.error()
                if err.code() in CK_TRANSIENT or err.retriable():
                    transient.append(str(err))
                    continue
                raise AssertionError(f"reading {topic}: consumer error {err}")
            p, o = msg.partition(), msg.offset()
            if o >= hws[p]:
                todo.discard(p)
                continue
            if o in found[p]:
                problems.append(f"p{p}@{o} returned twice by the consumer")
            found[p][o] = msg.value()
            if o == hws[p] - 1:
                todo.discard(p)
    finally:
        consumer.close()
    for p, hw in hws.items():
        holes = [o for o in range(hw) if o not in found[p]]
        if holes:
            problems.append(f"p{p}: {len(holes)} offsets below the high watermark {hw} never returned, "
                            f"first {holes[:10]}")
    return found, problems


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = ck_consumer(bootstrap)
    try:
        out = {}
        for p in range(partitions):
            out[p] = wait_until(
                lambda: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=5), 30,
                f"the watermarks of {topic}-{p}")
        for p, (low, _) in out.items():
            assert low == 0, f"{topic}-{p} starts at {low}, not 0"
        return {p: high for p, (_, high) in out.items()}
    finally:
        consumer.close()


def replica_batches(cluster: ChronikCluster, broker: int, topic: str, partition: int,
                    hw: int) -> list[tuple[int, int, int, bytes]]:
    """(base offset, next offset, leader epoch, whole batch bytes) of every batch below `hw` on disk."""
    out = []
    for segment in cluster.segments(broker, topic, partition):
        data = segment.read_bytes()
        headers, _ = read_batch_headers(segment)
        for h in headers:
            if h.next_offset <= hw:
                out.append((h.base_offset, h.next_offset, h.partition_leader_epoch,
                            data[h.position:h.end_position]))
    return out


def compare_replicas(cluster: ChronikCluster, topic: str, hws: dict[int, int]) -> list[str]:
    """The replicas' batches below the high watermark, byte for byte; a list of disagreements."""
    problems = []
    for p, hw in sorted(hws.items()):
        logs = {b: replica_batches(cluster, b, topic, p, hw) for b in range(1, BROKERS + 1)}
        for b, batches in logs.items():
            ends = [n for _, n, _, _ in batches]
            starts = [s for s, _, _, _ in batches]
            if hw and (not batches or starts[0] != 0 or ends[-1] != hw or starts[1:] != ends[:-1]):
                covered = f"{starts[0]}..{ends[-1]}" if batches else "nothing"
                gaps = [(e, s) for e, s in zip(ends[:-1], starts[1:]) if e != s][:5]
                problems.append(f"p{p} broker {b}: batches below the high watermark {hw} cover {covered} "
                                f"in {len(batches)} batches (gaps/overlaps {gaps}) - committed records are "
                                f"missing from this replica ({cluster.partition_dir(b, topic, p)})")
        reference_broker = 1
        reference = logs[reference_broker]
        for b in range(2, BROKERS + 1):
            other = logs[b]
            if other == reference:
                continue
            for i, (x, y) in enumerate(zip(reference, other)):
                if x != y:
                    byte = next((j for j, (u, v) in enumerate(zip(x[3], y[3])) if u != v), None)
                    problems.append(
                        f"p{p}: brokers {reference_broker} and {b} differ at batch #{i}: "
                        f"[{x[0]}, {x[1]}) epoch {x[2]} {len(x[3])} B vs [{y[0]}, {y[1]}) epoch {y[2]} "
                        f"{len(y[3])} B, first differing byte at {byte}")
                    break
            else:
                problems.append(f"p{p}: brokers {reference_broker} and {b} hold {len(reference)} and "
                                f"{len(other)} batches below {hw}")
    return problems


def verify_run(cluster: ChronikCluster, topic: str, acked: list[Ack], producer_summary: str,
               timeline: Timeline) -> dict:
    """The invariants of the module doc; the cluster is down afterwards. Returns figures for the summary."""
    parts = wait_full_isr(cluster, topic, 30, "before reading")
    timeline.note(f"verify: {fmt_parts(parts)}")
    hws = watermarks(cluster.bootstrap_servers, topic, len(parts))
    timeline.note(f"verify: high watermarks {hws}")

    def failure(headline: str, lines: list[str]) -> str:
        return (f"{headline}\n" + "\n".join(f"  {line}" for line in lines[:40])
                + (f"\n  ... {len(lines) - 40} more" if len(lines) > 40 else "")
                + f"\n  producer: {producer_summary}\n  high watermarks: {hws}\n  timeline:\n{timeline.text()}")

    # 1. the producer heard of each offset for one value only
    by_position: dict[tuple[int, int], Ack] = {}
    conflicts = []
    for a in acked:
        first = by_position.setdefault((a.partition, a.offset), a)
        if first.value != a.value:
            conflicts.append(f"p{a.partition}@{a.offset}: acked for {first.value[:20]!r} at {first.at:.2f}s "
                             f"and for {a.value[:20]!r} at {a.at:.2f}s")
    assert not conflicts, failure(f"{len(conflicts)} offsets acknowledged for two different values", conflicts)

    # 2. the log below the high watermark holds every acknowledged value at its offset
    too_high = [f"p{a.partition}@{a.offset} acked at {a.at:.2f}s, high watermark {hws[a.partition]}"
                for a in acked if a.offset >= hws[a.partition]]
    assert not too_high, failure(f"{len(too_high)} acknowledged offsets at or above the high watermark", too_high)
    found, read_problems = read_partitions(cluster.bootstrap_servers, topic, hws)
    assert not read_problems, failure("the partitions cannot be read back whole", read_problems)
    where: dict[bytes, list[str]] = collections.defaultdict(list)
    for p, records in found.items():
        for o, v in records.items():
            where[v].append(f"p{p}@{o}")
    lost = []
    for a in sorted(by_position.values(), key=lambda a: (a.partition, a.offset)):
        there = found[a.partition].get(a.offset)
        if there != a.value:
            elsewhere = [w for w in where.get(a.value, []) if w != f"p{a.partition}@{a.offset}"]
            lost.append(f"p{a.partition}@{a.offset}: acked {a.value[:20]!r} at {a.at:.2f}s; the log holds "
                        f"{there[:20] if there is not None else None!r} there; the value is "
                        f"{'also at ' + ', '.join(elsewhere[:5]) if elsewhere else 'nowhere else'}")
    assert not lost, failure(f"{len(lost)} of {len(by_position)} acknowledged records are lost or changed", lost)
    duplicates = sum(len(ws) - 1 for ws in where.values() if len(ws) > 1)

    # 3. the replicas agree on disk below the high watermark
    cluster.down()
    timeline.note("verify: cluster down")
    disagreements = compare_replicas(cluster, topic, hws)
    assert not disagreements, failure("the replicas differ below the high watermark", disagreements)
    return {"hws": hws, "records": sum(hws.values()), "duplicates": duplicates}


def summary_line(test: str, producer: ChaosProducer, figures: dict, started: float, **extra) -> str:
    details = " ".join(f"{k}={v}" for k, v in extra.items())
    return (f"[replication] {test}: {details} {producer.summary()}; log records {figures['records']} "
            f"(retry duplicates {figures['duplicates']}), high watermarks {figures['hws']}; "
            f"{time.monotonic() - started:.0f}s")


# ----- the tests -----

@pytest.mark.timeout(230)
def test_leader_kills_lose_no_acknowledged_write(cluster_factory, topic_name):
    kills_wanted = 10
    started = time.monotonic()
    cluster = start_cluster(cluster_factory, topic_name)
    timeline = Timeline()
    producer = ChaosProducer(cluster.bootstrap_servers, topic_name, timeline, "kills").start()
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
            t_kill = time.monotonic()
            parts = wait_new_leaders(cluster, topic_name, parts, victim, 20, f"kill {k}")
            timeline.note(f"kill {k}: new leaders after {time.monotonic() - t_kill:.1f}s: {fmt_parts(parts)}")
            producer.wait_acks_each(100, 20, f"with broker {victim} dead (kill {k})")
            cluster.start_broker(victim)
            timeline.note(f"kill {k}: broker {victim} restarted; acks {len(producer.acked)}")
            parts = wait_full_isr(cluster, topic_name, 30, f"broker {victim} after kill {k}")
            timeline.note(f"kill {k}: full ISR again: {fmt_parts(parts)}")
        producer.wait_acks_each(100, 20, "after the last restart")
        producer.stop()
        timeline.note(f"producer stopped: {producer.summary()}")
    except BaseException:
        producer.abandon()
        print(f"timeline of the failed run:\n{timeline.text()}")
        raise
    figures = verify_run(cluster, topic_name, producer.acked, producer.summary(), timeline)
    print(summary_line("leader kills", producer, figures, started, kills=sum(kills.values()),
                       per_broker=dict(sorted(kills.items()))))


@pytest.mark.timeout(150)
def test_paused_leader_cannot_acknowledge(cluster_factory, topic_name):
    pause_s = 8.0
    started = time.monotonic()
    cluster = start_cluster(cluster_factory, topic_name)
    timeline = Timeline()
    # Requests to the paused leader stay awaited until after SIGCONT (30 s > the pause), so whatever
    # it answers then reaches the producer: an acknowledgement it had no right to give would count.
    producer = ChaosProducer(cluster.bootstrap_servers, topic_name, timeline, "pause",
                             config={"request.timeout.ms": 30000}).start()
    paused_pid = None
    try:
        producer.wait_acks_each(300, 30, "before the pause")
        before = describe_now(cluster, topic_name)
        victim = before[0]["leader"]
        mine = led_by(before, victim)
        paused_pid = node_pid(cluster, "broker", victim)
        timeline.note(f"SIGSTOP broker {victim} (pid {paused_pid}, leads {mine}); {fmt_parts(before)}; "
                      f"acks {len(producer.acked)}")
        os.kill(paused_pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        acks_at_stop = len(producer.acked)
        after = wait_new_leaders(cluster, topic_name, before, victim, pause_s + 7, "while paused")
        elected_after = time.monotonic() - t_stop
        timeline.note(f"new leaders after {elected_after:.1f}s: {fmt_parts(after)}")
        time.sleep(max(0.0, pause_s - (time.monotonic() - t_stop)))  # the pause itself: nothing to poll
        assert describe(cluster, topic_name)[0]["leader"] != victim, "the paused broker leads partition 0 again"
        os.kill(paused_pid, signal.SIGCONT)
        paused_pid = None
        timeline.note(f"SIGCONT broker {victim} after {time.monotonic() - t_stop:.1f}s; "
                      f"acks during the pause {len(producer.acked) - acks_at_stop}")
        for p in mine:
            assert after[p]["leader"] != victim and after[p]["leader_epoch"] > before[p]["leader_epoch"], \
                f"p{p}: {before[p]} -> {after[p]}"
        parts = wait_full_isr(cluster, topic_name, 30, f"broker {victim} after SIGCONT")
        timeline.note(f"full ISR again: {fmt_parts(parts)}")
        producer.wait_acks_each(300, 30, "after the pause")
        producer.stop()
        timeline.note(f"producer stopped: {producer.summary()}")
    except BaseException:
        if paused_pid is not None:
            os.kill(paused_pid, signal.SIGCONT)
        producer.abandon()
        print(f"timeline of the failed run:\n{timeline.text()}")
        raise
    figures = verify_run(cluster, topic_name, producer.acked, producer.summary(), timeline)
    print(summary_line("paused leader", producer, figures, started, paused=f"broker {victim} {pause_s:.0f}s",
                       elected_after=f"{elected_after:.1f}s"))


@pytest.mark.timeout(150)
def test_controller_failover_during_broker_failover(cluster_factory, topic_name):
    started = time.monotonic()
    cluster = start_cluster(cluster_factory, topic_name)
    timeline = Timeline()
    producer = ChaosProducer(cluster.bootstrap_servers, topic_name, timeline, "ctlfail").start()
    try:
        producer.wait_acks_each(300, 30, "before the kills")
        parts = describe_now(cluster, topic_name)
        victim = busiest_leader(parts, collections.Counter())
        controller = active_controller(cluster)
        timeline.note(f"kill broker {victim} (leads {led_by(parts, victim)}) then active controller "
                      f"{controller}; {fmt_parts(parts)}; acks {len(producer.acked)}")
        cluster.kill_broker(victim)
        t_kill = time.monotonic()
        cluster.local("kill", "controller", str(controller))
        parts = wait_new_leaders(cluster, topic_name, parts, victim, 15, "controller failed over too")
        elected_after = time.monotonic() - t_kill
        new_controller = wait_until(lambda: active_controller(cluster), 10, "an active controller")
        assert new_controller != controller
        timeline.note(f"new leaders after {elected_after:.1f}s: {fmt_parts(parts)}; "
                      f"active controller {new_controller}")
        producer.wait_acks_each(150, 20, f"with broker {victim} and controller {controller} dead")
        cluster.local("start", "controller", str(controller), timeout=120)
        cluster.start_broker(victim)
        timeline.note(f"controller {controller} and broker {victim} restarted; acks {len(producer.acked)}")
        parts = wait_full_isr(cluster, topic_name, 30, f"broker {victim} restarted")
        timeline.note(f"full ISR again: {fmt_parts(parts)}")
        producer.wait_acks_each(150, 20, "after the restarts")
        producer.stop()
        timeline.note(f"producer stopped: {producer.summary()}")
    except BaseException:
        producer.abandon()
        print(f"timeline of the failed run:\n{timeline.text()}")
        raise
    figures = verify_run(cluster, topic_name, producer.acked, producer.summary(), timeline)
    print(summary_line("controller failover", producer, figures, started,
                       killed=f"broker {victim} + controller {controller}", elected_after=f"{elected_after:.1f}s"))


@pytest.mark.timeout(120)
def test_leader_that_wrote_nothing_in_its_epoch_rejoins_after_restart(cluster_factory, topic_name):
    """Two leader changes with no write between them. Broker N is elected for epoch 1 and killed before any
    record reaches it, so its epoch cache ends with (1, X) but no batch of epoch 1 exists anywhere; M leads
    epoch 2 from X. Restarted, N fetches with LastFetchedEpoch 1, the leader (which never saw epoch 1)
    answers DivergingEpoch(0, X), and N must drop its (1, X) entry even though its log already ends at X,
    catch up, and rejoin the ISR. Records acknowledged before and after are all read back, and the
    replicas agree on disk."""
    started = time.monotonic()
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=BROKERS, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    wait_full_isr(cluster, topic_name, 30, "after creation")
    timeline = Timeline()
    acked: list[Ack] = []

    def produce(label: str, count: int) -> None:
        records = [Rec(value=f"{label}:{i:09d}:".encode(), partition=0) for i in range(count)]
        for d in ck_produce(cluster.bootstrap_servers, topic_name, records, config=PRODUCER_CONFIG, timeout=60):
            acked.append(Ack(d.rec.value, d.partition, d.offset, timeline.now()))
        timeline.note(f"{count} records acknowledged, offsets up to {acked[-1].offset}")

    produce("before", 20)
    epoch0 = describe_now(cluster, topic_name)
    first = epoch0[0]["leader"]
    cluster.kill_broker(first)
    timeline.note(f"killed broker {first}: {fmt_parts(epoch0)}")
    epoch1 = wait_new_leaders(cluster, topic_name, epoch0, first, 20, "first kill")
    second = epoch1[0]["leader"]
    cluster.kill_broker(second)  # before any record reaches it: its epoch stays empty
    timeline.note(f"new leader {fmt_parts(epoch1)}; killed broker {second} at once")
    epoch2 = wait_new_leaders(cluster, topic_name, epoch1, second, 20, "second kill")
    timeline.note(f"new leader {fmt_parts(epoch2)}")
    cluster.start_broker(first)
    cluster.start_broker(second)
    timeline.note(f"brokers {first} and {second} restarted")
    produce("after", 20)
    try:
        parts = wait_full_isr(cluster, topic_name, 20, f"broker {second}, which led epoch "
                                                      f"{epoch1[0]['leader_epoch']} without writing")
    except AssertionError as error:
        log = Path(cluster.broker(second)["log_file"]).read_text(errors="replace")
        loops = log.count("truncated to the leader's history")
        checkpoint = cluster.partition_dir(second, topic_name, 0) / "leader-epoch-checkpoint"
        raise AssertionError(
            f"{error}\n  now {fmt_parts(describe(cluster, topic_name))}; broker {second} logged "
            f"'truncated to the leader's history' {loops} times; its leader-epoch-checkpoint: "
            f"{checkpoint.read_text().split() if checkpoint.exists() else 'missing'}\n  timeline:\n"
            f"{timeline.text()}") from None
    timeline.note(f"full ISR: {fmt_parts(parts)}")
    figures = verify_run(cluster, topic_name, acked, f"{len(acked)} records acknowledged", timeline)
    print(f"[replication] empty leader epoch: brokers {first} then {second} killed; {len(acked)} acks; "
          f"high watermark {figures['hws']}; {time.monotonic() - started:.0f}s")


def isr_shrinks(cluster: ChronikCluster) -> dict[int, int]:
    """{broker: chronik_broker_isr_shrinks_total}: the ISR shrinks of partitions it leads, as committed."""
    shrinks = {}
    for broker in cluster.brokers:
        with urllib.request.urlopen(f"http://{broker['http_addr']}/metrics", timeout=10) as response:
            text = response.read().decode()
        found = re.search(r"^chronik_broker_isr_shrinks_total (\S+)$", text, re.MULTILINE)
        assert found, f"broker {broker['id']} exports no chronik_broker_isr_shrinks_total"
        shrinks[broker["id"]] = int(float(found.group(1)))
    return shrinks


def test_follower_that_has_not_started_keeps_its_isr_place(cluster_factory, topic_name):
    """A broker paused (SIGSTOP, shorter than the broker session timeout) while a topic is created has never
    fetched from the other brokers: it has not started following, as a broker still opening the logs of a
    large metadata change has not (issue #18). Its leaders must not drop it from the ISRs by the stall
    rule (`--replica-fetch-stall-ms`, for followers that stop fetching); at 100,000 partitions that
    proposed 81,853 removals in 8 s and doubled the controllers' Raft log. Once resumed it catches up,
    acks=all writes go through, and no broker counted an ISR shrink. The cluster is fresh: no partition
    existed before, so no leader has heard from the paused broker."""
    # A long session timeout: the pause and the chronikctl calls around it must not get the paused
    # broker fenced (which would take it out of every ISR for another reason).
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=BROKERS,
                              controller_args=CONTROLLER_ARGS + ["--broker-session-timeout-ms=20000"])
    late = BROKERS
    pid = node_pid(cluster, "broker", late)
    assert sum(isr_shrinks(cluster).values()) == 0
    timeline = Timeline()
    os.kill(pid, signal.SIGSTOP)
    try:
        timeline.note(f"SIGSTOP broker {late}")
        cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=3,
                             configs={"min.insync.replicas": "2"}, wait=False)
        parts = describe_now(cluster, topic_name)
        timeline.note(f"created: {fmt_parts(parts)}")
        followed = [p for p, d in parts.items() if d["leader"] != late and late in d["isr"]]
        assert followed, f"broker {late} follows no partition: {fmt_parts(parts)}"
        # Held for three times the stall time (the old rule proposed the removal one stall time
        # after the leaders started), watching the ISRs all along.
        dropped: list[int] = []
        until = time.monotonic() + 3.0
        while time.monotonic() < until and not dropped:
            parts = describe_now(cluster, topic_name)
            dropped = [p for p in followed if late not in parts[p]["isr"]]
            time.sleep(0.2)
        timeline.note(f"held paused: {fmt_parts(parts)}")
    finally:
        os.kill(pid, signal.SIGCONT)
    timeline.note(f"SIGCONT broker {late}")
    assert not dropped, (f"broker {late}, which had not started following, was dropped from the ISR of "
                         f"partitions {dropped}:\n{timeline.text()}")
    cluster.wait_topic_ready(topic_name, PARTITIONS)
    records = [Rec(value=f"after:{i:09d}:".encode(), partition=i % PARTITIONS) for i in range(30)]
    delivered = ck_produce(cluster.bootstrap_servers, topic_name, records, config=PRODUCER_CONFIG, timeout=60)
    assert len(delivered) == len(records)
    parts = wait_full_isr(cluster, topic_name, 30, f"broker {late} resumed")
    shrinks = isr_shrinks(cluster)
    assert sum(shrinks.values()) == 0, (f"ISR shrinks by leader {shrinks} ({fmt_parts(parts)}):\n"
                                        f"{timeline.text()}")


def test_follower_below_the_leaders_log_start_rejoins(cluster_factory, topic_name):
    """A follower stopped while retention removes the leader's first segments, and restarted with its
    partition directory gone: it is entirely below the leader's log start, so it must empty its log,
    restart it there, catch up and rejoin the ISR; what was acknowledged after the restart is read back
    at its offsets. Checked against the replicas' log start offsets, not `verify_run` (the records
    below the log start are gone by design)."""
    started = time.monotonic()
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=BROKERS, controller_args=CONTROLLER_ARGS,
                              broker_args=["--log-retention-check-interval-ms=200"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=3,
                         configs={"min.insync.replicas": "2", "segment.bytes": "4096",
                                  "retention.bytes": "8192"})
    wait_full_isr(cluster, topic_name, 30, "after creation")
    timeline = Timeline()
    acked: list[Ack] = []

    def produce(label: str, count: int) -> None:
        records = [Rec(value=f"{label}:{i:09d}:".encode() + b"x" * 100, partition=0) for i in range(count)]
        # Small batches, so that the 4 KiB segments roll often and retention has whole ones to drop.
        config = {**PRODUCER_CONFIG, "batch.size": 2000}
        for d in ck_produce(cluster.bootstrap_servers, topic_name, records, config=config, timeout=60):
            acked.append(Ack(d.rec.value, d.partition, d.offset, timeline.now()))
        timeline.note(f"{count} records acknowledged, offsets up to {acked[-1].offset}")

    produce("first", 20)
    parts = describe_now(cluster, topic_name)
    follower = next(b for b in parts[0]["replicas"] if b != parts[0]["leader"])
    cluster.stop_broker(follower)
    timeline.note(f"stopped broker {follower}: {fmt_parts(parts)}")
    produce("while-away", 600)
    consumer = ck_consumer(cluster.bootstrap_servers)
    try:
        def log_start() -> int | None:
            low, _ = consumer.get_watermark_offsets(ck.TopicPartition(topic_name, 0), timeout=5)
            return low if low > 20 else None
        leader_log_start = wait_until(log_start, 30, "retention to move the leader's log start past the "
                                                     "records the follower had")
    finally:
        consumer.close()
    timeline.note(f"leader's log start {leader_log_start}")
    shutil.rmtree(cluster.partition_dir(follower, topic_name, 0))
    cluster.start_broker(follower)
    timeline.note(f"broker {follower} restarted with an empty partition directory")
    try:
        parts = wait_full_isr(cluster, topic_name, 30, f"broker {follower}, below the leader's log start")
    except AssertionError as error:
        log = Path(cluster.broker(follower)["log_file"]).read_text(errors="replace")
        restarts = log.count("leader's log start: restarted there")
        raise AssertionError(f"{error}\n  broker {follower} restarted its log {restarts} times\n"
                             f"  timeline:\n{timeline.text()}") from None
    timeline.note(f"full ISR: {fmt_parts(parts)}")
    before = len(acked)
    produce("after", 20)
    consumer = ck_consumer(cluster.bootstrap_servers)
    try:
        first = acked[before].offset
        consumer.assign([ck.TopicPartition(topic_name, 0, first)])
        got: dict[int, bytes] = {}
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got[msg.offset()] = msg.value()
    finally:
        consumer.close()
    missing = [a for a in acked[before:] if got.get(a.offset) != a.value]
    assert not missing, f"{len(missing)} acknowledged records not read back at their offsets:\n{timeline.text()}"
    print(f"[replication] follower below the log start: broker {follower} restarted empty at leader log start "
          f"{leader_log_start}; {len(acked)} acks; {time.monotonic() - started:.0f}s")


def read_from(bootstrap: str, topic: str, offset: int, seconds: float) -> dict[int, bytes]:
    """{offset: value} a consumer of partition 0 reads from `offset` within `seconds`."""
    consumer = ck_consumer(bootstrap)
    got: dict[int, bytes] = {}
    try:
        consumer.assign([ck.TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got[msg.offset()] = msg.value()
    finally:
        consumer.close()
    return got


@pytest.mark.timeout(150)
def test_new_leader_exposes_nothing_a_lagging_isr_member_lacks(cluster_factory, topic_name):
    """Replicas [P, X, Y]: X leads (P was restarted), Y is paused while still in the ISR (the session
    timeout is long), X takes acks=1 records that P copies and Y does not. A preferred election makes P
    leader: P must keep the high watermark it had as a follower, so a consumer reads none of the new
    records while Y lacks them, and all of them once Y is back. Then `verify_run`. A paused follower
    sends no fetch, so its leader would drop it from the ISR after `--replica-fetch-stall-ms` (1 s,
    issue #12); a long stall time keeps Y in the ISR for the whole check, the case this test is about."""
    started = time.monotonic()
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=BROKERS,
                              controller_args=CONTROLLER_ARGS + ["--broker-session-timeout-ms=20000",
                                                                 "--leader-rebalance-interval-ms=3600000"],
                              broker_args=["--replica-fetch-stall-ms=20000"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    wait_full_isr(cluster, topic_name, 30, "after creation")
    timeline = Timeline()
    acked: list[Ack] = []

    def produce(label: str, count: int, acks: str = "all") -> None:
        records = [Rec(value=f"{label}:{i:09d}:".encode(), partition=0) for i in range(count)]
        config = {**PRODUCER_CONFIG, "acks": acks}
        for d in ck_produce(cluster.bootstrap_servers, topic_name, records, config=config, timeout=60):
            acked.append(Ack(d.rec.value, d.partition, d.offset, timeline.now()))
        timeline.note(f"{count} records acknowledged (acks={acks}), offsets up to {acked[-1].offset}")

    produce("committed", 20)
    parts = describe_now(cluster, topic_name)
    preferred, x, y = parts[0]["replicas"]
    cluster.stop_broker(preferred)
    parts = wait_new_leaders(cluster, topic_name, parts, preferred, 20, "controlled shutdown")
    cluster.start_broker(preferred)
    parts = wait_full_isr(cluster, topic_name, 30, f"broker {preferred} restarted")
    assert parts[0]["leader"] == x, fmt_parts(parts)
    timeline.note(f"broker {preferred} restarted: {fmt_parts(parts)}")
    paused = node_pid(cluster, "broker", y)
    os.kill(paused, signal.SIGSTOP)
    try:
        timeline.note(f"SIGSTOP broker {y}")
        produce("uncommitted", 30, acks="1")
        end = acked[-1].offset + 1
        wait_until(lambda: max(b.next_offset for b in cluster.stored_batches(preferred, topic_name, 0)) >= end,
                   10, f"broker {preferred} to copy offsets up to {end}")
        cluster.ctl("election", "preferred", topic_name)
        parts = wait_until(lambda: (lambda d: d if d[0]["leader"] == preferred else None)(
            describe(cluster, topic_name)), 10, f"broker {preferred} to lead again")
        assert y in parts[0]["isr"], f"broker {y} left the ISR too early: {fmt_parts(parts)}"
        timeline.note(f"preferred election: {fmt_parts(parts)}")
        exposed = read_from(cluster.bootstrap_servers, topic_name, 20, 2.0)
        timeline.note(f"read {len(exposed)} records from offset 20 while broker {y} is paused")
        assert not exposed, (f"the new leader served offsets {min(exposed)}..{max(exposed)} that ISR member "
                             f"{y} does not have:\n{timeline.text()}")
    finally:
        os.kill(paused, signal.SIGCONT)
    timeline.note(f"SIGCONT broker {y}")
    got = read_from(cluster.bootstrap_servers, topic_name, 20, 5.0)
    assert len(got) >= 30, f"only {len(got)} of 30 records readable once broker {y} is back:\n{timeline.text()}"
    produce("after", 20)
    figures = verify_run(cluster, topic_name, acked, f"{len(acked)} records acknowledged", timeline)
    print(f"[replication] new leader with a lagging ISR member: {len(acked)} acks; high watermark "
          f"{figures['hws']}; {time.monotonic() - started:.0f}s")


@pytest.mark.timeout(150)
def test_a_controller_that_lost_its_disk_rejoins_without_breaking_the_leader(cluster_factory, topic_name):
    """A follower controller whose data directory is lost (stopped, emptied, started again) rejoins the
    quorum as the same voter, so the active controller sees that follower's log go back to nothing and
    must replicate everything to it again (openraft's `loosen-follower-log-revert`). Before, the
    leader's Raft core panicked on it in debug builds (a `debug_assert`; release builds instead never
    caught the follower up): the old leader kept claiming leadership with a dead core while the other
    two elected a new one. Now every controller agrees on one leader in one term, the emptied one
    applies everything, a topic created afterwards commits, and no controller logged a panic."""
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=1, controller_args=["--default-replication-factor=1"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    leader = active_controller(cluster)
    wiped = next(c for c in range(1, CONTROLLERS + 1) if c != leader)
    node = next(n for n in cluster.doc["nodes"] if n["kind"] == "controller" and n["id"] == wiped)
    cluster.local("stop", "controller", str(wiped))
    for entry in Path(node["data_dir"]).iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    cluster.local("start", "controller", str(wiped), timeout=120)

    def settled() -> dict | None:
        controllers = cluster.ctl_json("cluster", "status")["controllers"]
        leaders = [c for c in controllers if c["role"] == "leader"]
        terms = {c["term"] for c in controllers}
        if len(leaders) != 1 or len(terms) != 1:
            return None
        applied = {c["node_id"]: c["applied_index"] for c in controllers}
        return leaders[0] if applied[wiped] >= applied[leaders[0]["node_id"]] > 0 else None

    wait_until(settled, 60, f"one leader every controller agrees on, and controller {wiped} caught up")
    cluster.create_topic(topic_name + "-after", partitions=1, replication_factor=1)
    wait_until(settled, 30, f"controller {wiped} to apply the topic created afterwards")
    panics = [n["log_file"] for n in cluster.doc["nodes"]
              if n["kind"] == "controller" and "panicked" in Path(n["log_file"]).read_text(errors="replace")]
    assert panics == [], f"controllers that panicked: {panics}"


def controller_metric(cluster: ChronikCluster, controller: int, name: str) -> int | None:
    """One plain gauge from a controller's /metrics; None when the controller does not answer."""
    node = next(n for n in cluster.doc["nodes"] if n["kind"] == "controller" and n["id"] == controller)
    try:
        with urllib.request.urlopen(f"http://{node['http_addr']}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    found = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    assert found, f"controller {controller} exports no {name}"
    return int(found.group(1))


@pytest.mark.timeout(240)
def test_a_controller_that_lost_its_disk_does_not_vote_committed_metadata_away(cluster_factory, topic_name):
    """openraft's FAQ case ("Can I wipe out the data of ONE node"), with real processes: a topic is
    created while controller B is paused, so it commits on the active controller A and on C only; A is
    killed and C loses its data directory and starts again; then B resumes. Before C held its vote, B
    (which lacks the topic) was elected within about a second with the emptied C's vote, and the topic
    was gone for good. Now B campaigns term after term and nobody is elected until A is back; then C
    catches up and votes again, and after A is killed once more, B and C elect a leader that has the
    topic, and every controller applies a topic created afterwards."""
    cluster = cluster_factory(controllers=CONTROLLERS, brokers=1, controller_args=["--default-replication-factor=1"])
    a = active_controller(cluster)
    b, c = [n for n in range(1, CONTROLLERS + 1) if n != a]
    for node in (a, b, c):
        wait_until(lambda: controller_metric(cluster, node, "chronik_controller_raft_vote_held") == 0, 30,
                   f"controller {node} to vote")
    timeline = Timeline()
    b_pid = node_pid(cluster, "controller", b)
    os.kill(b_pid, signal.SIGSTOP)
    try:
        timeline.note(f"SIGSTOP controller {b}")
        # Through A alone: a paused controller accepts connections and never answers.
        through_a = through(cluster, a)
        through_a.create_topic(topic_name, partitions=1, replication_factor=1)
        timeline.note(f"created {topic_name} on controllers {a} and {c}")
        cluster.local("kill", "controller", str(a))
        timeline.note(f"kill -9 controller {a}")
        node = next(n for n in cluster.doc["nodes"] if n["kind"] == "controller" and n["id"] == c)
        cluster.local("stop", "controller", str(c))
        for entry in Path(node["data_dir"]).iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        cluster.local("start", "controller", str(c), "--no-wait")
        timeline.note(f"controller {c} emptied and started again")
    finally:
        os.kill(b_pid, signal.SIGCONT)
    timeline.note(f"SIGCONT controller {b}")

    wait_until(lambda: controller_metric(cluster, c, "chronik_controller_raft_vote_held") == 1, 30,
               f"the emptied controller {c} to serve its metrics")
    # B campaigns (its term rises by three) and neither B nor C is ever elected meanwhile.
    campaigns_from = controller_metric(cluster, b, "chronik_controller_raft_term")
    deadline = time.monotonic() + 60
    while controller_metric(cluster, b, "chronik_controller_raft_term") < campaigns_from + 3:
        leaders = [n for n in (b, c) if controller_metric(cluster, n, "chronik_controller_is_leader") == 1]
        assert leaders == [], f"controller {leaders} elected without the topic:\n{timeline.text()}"
        assert time.monotonic() < deadline, f"controller {b} did not campaign:\n{timeline.text()}"
        time.sleep(0.1)
    assert controller_metric(cluster, c, "chronik_controller_raft_vote_held") == 1

    cluster.local("start", "controller", str(a), timeout=120)
    timeline.note(f"controller {a} started again")
    wait_until(lambda: controller_metric(cluster, c, "chronik_controller_raft_vote_held") == 0, 60,
               f"controller {c} to catch up with the restarted controller {a}")

    cluster.local("kill", "controller", str(a))
    timeline.note(f"kill -9 controller {a} again")
    new = wait_until(lambda: next((n for n in (b, c)
                                   if controller_metric(cluster, n, "chronik_controller_is_leader") == 1), None),
                     30, f"controllers {b} and {c} to elect a leader without {a}")
    through(cluster, new).create_topic(topic_name + "-after", partitions=1, replication_factor=1)
    for node in (b, c):
        # Each controller's own image (a topic describe is answered from the controller asked).
        for topic in (topic_name, topic_name + "-after"):
            wait_until(lambda: through(cluster, node).topic_exists(topic), 30,
                       f"controller {node} to have {topic} (leader {new}):\n{timeline.text()}")


def through(cluster: ChronikCluster, controller: int) -> ChronikCluster:
    """The cluster as seen through one controller only."""
    addr = next(n["addr"] for n in cluster.doc["nodes"] if n["kind"] == "controller" and n["id"] == controller)
    return ChronikCluster(cluster.name, cluster.dir, {**cluster.doc, "controllers": addr})


@pytest.mark.timeout(240)
def test_a_last_isr_member_that_lost_its_disk_does_not_lead_its_empty_log(cluster_factory, topic_name):
    """Replicas [L, A, C], min.insync.replicas 2, acks=all. A is killed (ISR [L, C]), then C (ISR [L]:
    C left it below min.insync.replicas, so no write was acknowledged without it since: an eligible
    leader replica, KIP-966), then L, the ISR's last member, whose data directory is then emptied. A
    and C come back, then L with an empty log and a new directory id. L kept its ISR place while down
    (a broker that crashed still holds what it acknowledged), so it used to be elected as it came
    back, and A and C truncated their logs to its empty one: every acknowledged record was gone. Now
    L leaves the ISR as it registers with another directory, C leads, every acknowledged record is
    read back, and L catches up from C."""
    cluster = cluster_factory(controllers=1, brokers=BROKERS, controller_args=CONTROLLER_ARGS)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    wait_full_isr(cluster, topic_name, 30, "after creation")
    bootstrap = cluster.bootstrap_servers
    acked = ck_produce(bootstrap, topic_name, [Rec(f"full-{i}".encode()) for i in range(300)])
    leader = describe(cluster, topic_name)[0]["leader"]
    first, last = [b for b in range(1, BROKERS + 1) if b != leader]

    def isr_is(members: list[int]) -> bool:
        return sorted(describe(cluster, topic_name)[0]["isr"]) == sorted(members)

    cluster.kill_broker(first)
    wait_until(lambda: isr_is([leader, last]), 60, f"broker {first} out of the ISR")
    acked += ck_produce(bootstrap, topic_name, [Rec(f"two-{i}".encode()) for i in range(100)])
    cluster.kill_broker(last)
    wait_until(lambda: isr_is([leader]), 60, f"broker {last} out of the ISR")
    cluster.kill_broker(leader)
    wait_until(lambda: describe(cluster, topic_name)[0]["leader"] in (-1, None), 60, "no leader")
    data_dir = Path(cluster.broker(leader)["data_dir"])
    shutil.rmtree(data_dir)
    data_dir.mkdir()

    cluster.start_broker(first)
    cluster.start_broker(last)
    time.sleep(2)  # any election among the two would have happened by now
    assert describe(cluster, topic_name)[0]["leader"] in (-1, None), describe(cluster, topic_name)
    cluster.start_broker(leader)
    wait_until(lambda: describe(cluster, topic_name)[0]["leader"] not in (-1, None), 60, "a leader")
    parts = describe(cluster, topic_name)
    assert parts[0]["leader"] == last, fmt_parts(parts)

    expected = {d.offset: d.rec.value for d in acked}
    got: dict[int, bytes] = {}
    consumer = ck_consumer(bootstrap)
    try:
        consumer.assign([ck.TopicPartition(topic_name, 0, 0)])

        def read_all() -> bool:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got[message.offset()] = message.value()
            return len(got) >= len(expected)

        wait_until(read_all, 60, f"{len(expected)} acknowledged records", interval=0)
    finally:
        consumer.close()
    assert got == expected
    wait_full_isr(cluster, topic_name, 90, "the emptied broker caught up")
