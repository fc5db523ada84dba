"""Consumer groups with real clients, each member a process of its own (`group_member.py`).

- A group of three confluent-kafka consumers and a group of three kafka-python consumers share a
  6-partition topic: in each group every partition is owned by exactly one member; when a member
  leaves (closes) or is killed (SIGKILL, so its session must expire) the others take its partitions
  over, and every record is consumed by each group.
- Committed offsets: after every member of a group stops and new members start, they resume exactly
  at the committed offsets (no record consumed twice, none skipped).
- The coordinator's broker is killed: the group finds the new coordinator (the new leader of its
  `__consumer_offsets` partition), its committed offsets are still there, consumption goes on, and
  members restarted afterwards resume exactly at the offsets committed through the new coordinator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import confluent_kafka as ck
import pytest

from chronik_cluster import wait_until
from clients import LIBRDKAFKA_BASE, unique_group

MEMBER_SCRIPT = Path(__file__).with_name("group_member.py")
PARTITIONS = 6


class GroupMember:
    """A running `group_member.py` and what it reported so far."""

    def __init__(self, client: str, bootstrap: str, group: str, topic: str, name: str,
                 log_dir: Path, instance_id: str = ""):
        self.name = name
        self.lock = threading.Lock()
        self.assignment: set[int] = set()
        self.assignments_seen = 0
        self.records: list[tuple[int, int, str]] = []
        self.committed: dict[int, int] = {}
        self.commit_failures: list[str] = []
        self.closed = False
        self.stderr_path = log_dir / f"{name}.stderr"
        argv = [sys.executable, str(MEMBER_SCRIPT), client, bootstrap, group, topic,
                "--client-id", name]
        if instance_id:
            argv += ["--instance-id", instance_id]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"),
                                        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                kind = event["event"]
                if kind == "assigned":
                    self.assignment = set(event["partitions"])
                    self.assignments_seen += 1
                elif kind == "added":
                    self.assignment |= set(event["partitions"])
                    self.assignments_seen += 1
                elif kind == "revoked":
                    self.assignment -= set(event["partitions"])
                elif kind == "records":
                    self.records.extend(tuple(r) for r in event["records"])
                elif kind == "committed":
                    self.committed.update({int(p): o for p, o in event["offsets"].items()})
                elif kind == "commit_failed":
                    self.commit_failures.append(event["error"])
                elif kind == "closed":
                    self.closed = True

    def snapshot(self) -> tuple[set[int], list[tuple[int, int, str]]]:
        with self.lock:
            return set(self.assignment), list(self.records)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the member closes its consumer (leaving the group) and exits."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.name} did not close within {timeout}s:\n{self.stderr_tail()}")
        self.reader.join(5)
        with self.lock:
            self.assignment = set()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        self.reader.join(5)
        with self.lock:
            self.assignment = set()

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def members(tmp_path):
    """Starts members; every one still running is killed after the test."""
    started: list[GroupMember] = []

    def start(client: str, bootstrap: str, group: str, topic: str, instance_id: str = "") -> GroupMember:
        member = GroupMember(client, bootstrap, group, topic, f"{client}-{len(started)}", tmp_path,
                             instance_id)
        started.append(member)
        return member

    yield start
    for member in started:
        member.kill()


def produce(bootstrap: str, topic: str, start: int, count: int) -> dict[int, list[str]]:
    """`count` records per partition, values "p{partition}-{n}" from `start`; returns them per partition."""
    producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "acks": "all",
                            "linger.ms": 5})
    failed: list[str] = []
    values = {p: [f"p{p}-{n}" for n in range(start, start + count)] for p in range(PARTITIONS)}
    for n in range(count):
        for p in range(PARTITIONS):
            producer.produce(topic, value=values[p][n].encode(), partition=p,
                             on_delivery=lambda err, _msg: err and failed.append(str(err)))
    assert producer.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not failed, f"delivery failures: {failed[:5]}"
    return values


def wait_owned_exactly_once(group: list[GroupMember], what: str, timeout: float = 60.0) -> None:
    """Until the live members' assignments partition the topic's partitions: each owned exactly once."""
    def partitioned():
        owned = [p for m in group if m.alive() for p in m.snapshot()[0]]
        return sorted(owned) == list(range(PARTITIONS))

    def describe():
        return {m.name: sorted(m.snapshot()[0]) for m in group if m.alive()}

    try:
        wait_until(partitioned, timeout, what)
    except AssertionError as error:
        raise AssertionError(f"{error}; assignments: {describe()}\n"
                             + "\n".join(m.stderr_tail() for m in group)) from None


def consumed_values(group: list[GroupMember]) -> dict[int, list[str]]:
    """Every value the group's members consumed, per partition, in offset order (duplicates kept)."""
    out: dict[int, list[tuple[int, str]]] = {p: [] for p in range(PARTITIONS)}
    for m in group:
        for partition, offset, value in m.snapshot()[1]:
            out[partition].append((offset, value))
    return {p: [v for _, v in sorted(rows)] for p, rows in out.items()}


def wait_consumed(group: list[GroupMember], expected: dict[int, list[str]], what: str,
                  timeout: float = 60.0) -> None:
    """Until the group has consumed every expected value of every partition (at least once)."""
    def done():
        got = consumed_values(group)
        return all(set(expected[p]) <= set(got[p]) for p in range(PARTITIONS))

    try:
        wait_until(done, timeout, what)
    except AssertionError as error:
        got = consumed_values(group)
        missing = {p: len(set(expected[p]) - set(got[p])) for p in range(PARTITIONS)}
        raise AssertionError(f"{error}; missing per partition: {missing}") from None


def committed_offsets(bootstrap: str, group: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """The group's committed offsets, read by a consumer of the group that never joins it."""
    consumer = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": group,
                            "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                parts = consumer.committed([ck.TopicPartition(topic, p) for p in range(PARTITIONS)],
                                           timeout=10)
                return {tp.partition: tp.offset for tp in parts}
            except ck.KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def coordinator_gauges(cluster) -> dict[str, int]:
    """chronik_broker_groups and chronik_broker_group_members summed over every broker's /metrics."""
    totals = {"chronik_broker_groups": 0, "chronik_broker_group_members": 0}
    for broker in cluster.brokers:
        with urllib.request.urlopen(f"http://{broker['http_addr']}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name in totals:
                    totals[name] += int(value)
    return totals


def three_broker_cluster(cluster_factory, topic: str):
    cluster = cluster_factory(controllers=1, brokers=3)
    cluster.create_topic(topic, partitions=PARTITIONS, replication_factor=3,
                         configs={"min.insync.replicas": "2"})
    return cluster


@pytest.mark.confluent
@pytest.mark.kafka_python
@pytest.mark.timeout(300)
def test_groups_share_partitions_and_take_over_when_a_member_leaves_or_dies(
        cluster_factory, topic_name, members):
    cluster = three_broker_cluster(cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    first = produce(bootstrap, topic_name, 0, 100)

    ck_group, kp_group = unique_group(), unique_group()
    confluent = [members("confluent", bootstrap, ck_group, topic_name) for _ in range(3)]
    python = [members("kafka-python", bootstrap, kp_group, topic_name) for _ in range(3)]
    for group, name in ((confluent, "confluent"), (python, "kafka-python")):
        wait_owned_exactly_once(group, f"the {name} group to give each member a share")
        assert all(m.snapshot()[0] for m in group), f"a {name} member got nothing: " \
            f"{[sorted(m.snapshot()[0]) for m in group]}"
        wait_consumed(group, first, f"the {name} group to consume the first records")
    # The coordinators' gauges count both groups and their six members.
    assert coordinator_gauges(cluster) == {"chronik_broker_groups": 2, "chronik_broker_group_members": 6}

    # One member of each group leaves cleanly, one more of each is killed.
    confluent[0].stop()
    python[0].stop()
    wait_owned_exactly_once(confluent, "the confluent members to take over a leaver's partitions")
    wait_owned_exactly_once(python, "the kafka-python members to take over a leaver's partitions")
    confluent[1].kill()
    python[1].kill()
    wait_owned_exactly_once(confluent, "the last confluent member to take over a dead member's share")
    wait_owned_exactly_once(python, "the last kafka-python member to take over a dead member's share")
    assert confluent[2].snapshot()[0] == set(range(PARTITIONS))
    assert python[2].snapshot()[0] == set(range(PARTITIONS))

    second = produce(bootstrap, topic_name, 100, 50)
    wait_consumed(confluent, second, "the confluent group to consume records after the takeover")
    wait_consumed(python, second, "the kafka-python group to consume records after the takeover")
    for group in (confluent, python):
        got = consumed_values(group)
        for p in range(PARTITIONS):
            assert set(got[p]) == set(first[p]) | set(second[p]), f"partition {p}: unexpected records"
            assert not any(m.commit_failures for m in group if m.name != group[1].name), \
                [m.commit_failures for m in group]


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
@pytest.mark.timeout(300)
def test_members_resume_at_the_committed_offsets_after_every_member_restarts(
        cluster_factory, topic_name, members, client):
    cluster = three_broker_cluster(cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group_id = unique_group()
    first = produce(bootstrap, topic_name, 0, 80)

    before = [members(client, bootstrap, group_id, topic_name) for _ in range(3)]
    wait_owned_exactly_once(before, "the group's first members to share the topic")
    wait_consumed(before, first, "the first members to consume everything")
    wait_until(lambda: committed_offsets(bootstrap, group_id, topic_name) == {p: 80 for p in range(PARTITIONS)},
               30, "the commits of the first members")
    for m in before:
        m.stop()
    assert consumed_values(before) == first, "each record consumed exactly once before the restart"

    second = produce(bootstrap, topic_name, 80, 40)
    after = [members(client, bootstrap, group_id, topic_name) for _ in range(3)]
    wait_owned_exactly_once(after, "the restarted members to share the topic")
    wait_consumed(after, second, "the restarted members to consume the new records")
    got = consumed_values(after)
    assert got == second, "the restarted members read exactly the records after the committed offsets"
    for m in after:
        for partition, offset, _ in m.snapshot()[1]:
            assert offset >= 80, f"{m.name} re-read {partition}@{offset}, below the committed offset 80"


@pytest.mark.confluent
@pytest.mark.fault
@pytest.mark.timeout(300)
def test_committed_offsets_survive_the_coordinator_broker_being_killed(
        cluster_factory, topic_name, members):
    cluster = three_broker_cluster(cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group_id = unique_group()
    first = produce(bootstrap, topic_name, 0, 60)

    group = [members("confluent", bootstrap, group_id, topic_name) for _ in range(2)]
    wait_owned_exactly_once(group, "the members to share the topic")
    wait_consumed(group, first, "the members to consume the first records")
    wait_until(lambda: committed_offsets(bootstrap, group_id, topic_name) == {p: 60 for p in range(PARTITIONS)},
               30, "the members' commits")

    kill_coordinator(cluster, group_id)

    # The new coordinator has the offsets committed before the kill.
    assert committed_offsets(bootstrap, group_id, topic_name, timeout=60) == {p: 60 for p in range(PARTITIONS)}

    # And the group goes on: new records are consumed and committed through the new coordinator.
    second = produce(bootstrap, topic_name, 60, 30)
    wait_owned_exactly_once(group, "the members to own every partition after the coordinator moved")
    wait_consumed(group, second, "the members to consume records after the coordinator moved", timeout=90)
    wait_until(lambda: committed_offsets(bootstrap, group_id, topic_name) == {p: 90 for p in range(PARTITIONS)},
               60, "the members' commits through the new coordinator")
    got = consumed_values(group)
    for p in range(PARTITIONS):
        assert set(got[p]) == set(first[p]) | set(second[p])

    # Every member restarts after the coordinator moved: the new ones resume exactly at the offsets
    # committed through the new coordinator.
    for m in group:
        m.stop()
    third = produce(bootstrap, topic_name, 90, 10)
    restarted = [members("confluent", bootstrap, group_id, topic_name) for _ in range(2)]
    wait_owned_exactly_once(restarted, "the restarted members to share the topic")
    wait_consumed(restarted, third, "the restarted members to consume the newest records")
    assert consumed_values(restarted) == third, "resumed exactly at the committed offsets"


def coordinator_of(cluster, group_id: str) -> tuple[int, int]:
    """The group's offsets partition (of 50) and the broker leading it, its coordinator."""
    offsets_partition = java_partition_for(group_id, 50)
    return offsets_partition, cluster.leaders("__consumer_offsets")[offsets_partition]


def kill_coordinator(cluster, group_id: str) -> None:
    """Kills the group's coordinator's broker and waits until another leads its offsets partition."""
    offsets_partition, coordinator = coordinator_of(cluster, group_id)
    cluster.kill_broker(coordinator)
    wait_until(lambda: cluster.leaders("__consumer_offsets")[offsets_partition] not in (coordinator, -1),
               30, "a new leader for the group's offsets partition")


def java_partition_for(group_id: str, partitions: int) -> int:
    """Kafka's `abs(groupId.hashCode()) % partitions` (Chronik places groups the same way)."""
    h = 0
    data = group_id.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 2 ** 31:
        h -= 2 ** 32
    return 0 if h == -2 ** 31 else abs(h) % partitions


@pytest.mark.confluent
@pytest.mark.timeout(240)
def test_a_static_member_restarting_within_its_session_keeps_its_partitions_without_a_rebalance(
        cluster_factory, topic_name, members):
    cluster = three_broker_cluster(cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group_id = unique_group()
    first = produce(bootstrap, topic_name, 0, 20)

    a = members("confluent", bootstrap, group_id, topic_name, instance_id="instance-a")
    b = members("confluent", bootstrap, group_id, topic_name, instance_id="instance-b")
    wait_owned_exactly_once([a, b], "the static members to share the topic")
    wait_consumed([a, b], first, "the static members to consume")
    a_partitions, b_partitions = a.snapshot()[0], b.snapshot()[0]
    assert a_partitions and b_partitions

    # A static member does not leave the group when it closes: its partitions wait for it.
    a.stop()
    restarted = members("confluent", bootstrap, group_id, topic_name, instance_id="instance-a")
    wait_until(lambda: restarted.snapshot()[0] == a_partitions, 30,
               f"the restarted static member to get its partitions {sorted(a_partitions)} back")
    second = produce(bootstrap, topic_name, 20, 10)
    wait_consumed([restarted, b], second, "the group to consume after the restart")
    with b.lock:
        assert (b.assignment, b.assignments_seen) == (b_partitions, 1), \
            "the other member was never rebalanced"
    # b was assigned once and never revoked: its record stream never restarted from a commit.
    assert set(v for p, _, v in b.snapshot()[1]) == {v for p in b_partitions for v in first[p] + second[p]}
