"""KIP-848's consumer group protocol (`group.protocol=consumer`: ConsumerGroupHeartbeat and
ConsumerGroupDescribe), with librdkafka (confluent-kafka) and the Java client:

- members join and leave one at a time, and a partition moves to its new owner only after its old
  owner revoked it: the rebalance callbacks of members polled in one thread never see a partition
  owned twice, and every record is consumed;
- commits are checked against the member epoch and land where the members consumed; ListGroups shows
  the group's type, ConsumerGroupDescribe its epochs, assignor and members; DeleteGroups refuses it
  while it has members;
- a member process killed leaves when its session ends (the coordinator's
  `--group-consumer-session-timeout-ms`) and its partitions go to the others;
- the coordinator's broker killed: the members carry on with the new coordinator without a
  rebalance (their epochs and assignments were in `__consumer_offsets`), and consume what follows;
- what the offsets topic cannot take changes nothing: a member's leave or an admin's LeaveGroup while
  its in-sync replicas are below min.insync.replicas (the admin is told COORDINATOR_NOT_AVAILABLE), a
  join whose record is larger than its max.message.bytes (the partition is reloaded from its log); a
  new coordinator finds no member that left; a LeaveGroup naming an unknown member is answered
  UNKNOWN_MEMBER_ID either way;
- the Java client (kafka-clients 4.x) consumes and commits through the protocol, and its Admin client
  describes the group as a `Consumer` group;
- a group of one protocol with members refuses members of the other;
- members subscribing by regular expression get the matching topics, and new ones as they appear;
  with the standard authorizer only those their principal may DESCRIBE (again once an ACL allows
  more), and ConsumerGroupDescribe describes a group whose assignments hold a topic the caller may
  not DESCRIBE by TOPIC_AUTHORIZATION_FAILED alone;
- an empty consumer group without committed offsets is removed at the next offsets cleanup.
"""

from __future__ import annotations

import time

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient

import kafka_wire
from chronik_cluster import ChronikctlError, run_chronikctl, wait_until
from clients import LIBRDKAFKA_BASE, unique_group
from test_groups import (PARTITIONS, committed_offsets, consumed_values, coordinator_of, kill_coordinator,  # noqa: F401
                         members, produce, wait_consumed, wait_owned_exactly_once)
from test_java_client import java_classpath, run_java  # noqa: F401
from test_security_client import read_properties, secured_cluster  # noqa: F401 - a fixture

HEARTBEAT_MS = 300
SESSION_MS = 6_000
BROKER_ARGS = [f"--group-consumer-heartbeat-interval-ms={HEARTBEAT_MS}",
               f"--group-consumer-session-timeout-ms={SESSION_MS}",
               "--offsets-retention-check-interval-ms=1000"]


def cluster_with_topic(factory, topic: str):
    cluster = factory(controllers=1, brokers=3, broker_args=BROKER_ARGS)
    cluster.create_topic(topic, partitions=PARTITIONS, replication_factor=3,
                         configs={"min.insync.replicas": "2"})
    return cluster


class Owners:
    """Who owns each partition, from the members' rebalance callbacks (all run in this thread)."""

    def __init__(self):
        self.owner: dict[int, str] = {}
        self.twice: list[str] = []

    def listen(self, consumer: ck.Consumer, name: str, topic: str) -> None:
        def assigned(_c, partitions):
            for p in partitions:
                held = self.owner.get(p.partition)
                if held is not None and held != name:
                    self.twice.append(f"{name} got {p.partition} while {held} still owned it")
                self.owner[p.partition] = name

        def revoked(_c, partitions):
            for p in partitions:
                if self.owner.get(p.partition) == name:
                    del self.owner[p.partition]

        consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def of(self, name: str) -> set[int]:
        return {p for p, n in self.owner.items() if n == name}


def member(bootstrap: str, group: str, name: str) -> ck.Consumer:
    return ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": group,
                        "group.protocol": "consumer", "client.id": name, "auto.offset.reset": "earliest",
                        "enable.auto.commit": False, "fetch.wait.max.ms": 100})


COORDINATOR_NOT_AVAILABLE = 15
LEAVE_GROUP = 13


def admin_leave(address: str, group: str, member_id: str) -> tuple[int, list[tuple[str, int]]]:
    """LeaveGroup v5 as an admin sends it (Kafka's `removeMembersFromConsumerGroup`), to the group's
    coordinator: the group's error code and (member id, error code) per member."""
    member = (kafka_wire.compact_string(member_id) + b"\x00"  # no group instance id
              + b"\x00" + b"\x00")  # no reason; no tagged fields
    body = kafka_wire.compact_string(group) + kafka_wire.compact_array([member]) + b"\x00"
    with kafka_wire.KafkaConnection(address) as conn:
        r = kafka_wire._Reader(conn.request(LEAVE_GROUP, 5, body, flexible=True))
    r.int32()  # throttle

    def member_result() -> tuple[str, int]:
        mid, _instance, code = r.compact_string(), r.compact_string(), r.int16()
        r.tagged_fields()
        return mid, code

    error = r.int16()
    return error, r.compact_array(member_result)


def first_error(consumer: ck.Consumer, timeout: float = 30.0) -> ck.KafkaError | None:
    """Polls until the consumer reports an error; None if none came within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error():
            return msg.error()
    return None


def poll_all(consumers: dict[str, ck.Consumer], seen: dict[str, list[tuple[int, int]]],
             until, timeout: float, what: str, owners: Owners) -> None:
    """Polls every member in turn (each commits what it got) until `until()` holds."""
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s; owners {owners.owner}; errors {errors[-5:]}")
        for name, consumer in consumers.items():
            messages = consumer.consume(num_messages=100, timeout=0.05)
            got = [(m.partition(), m.offset()) for m in messages if not m.error()]
            errors += [str(m.error()) for m in messages if m.error()]
            if got:
                seen.setdefault(name, []).extend(got)
                try:
                    consumer.commit(asynchronous=False)
                except ck.KafkaException as error:
                    errors.append(f"{name} commit: {error}")


@pytest.mark.confluent
@pytest.mark.timeout(240)
def test_members_join_and_leave_and_no_partition_is_ever_owned_twice(module_cluster_factory, topic_name):
    cluster = cluster_with_topic(module_cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group = unique_group()
    produce(bootstrap, topic_name, 0, 50)
    owners = Owners()
    consumers: dict[str, ck.Consumer] = {}
    seen: dict[str, list[tuple[int, int]]] = {}
    try:
        for name in ("a", "b", "c"):
            consumers[name] = member(bootstrap, group, name)
            owners.listen(consumers[name], name, topic_name)
            poll_all(consumers, seen,
                     lambda: sorted(owners.owner) == list(range(PARTITIONS))
                     and all(len(owners.of(n)) == PARTITIONS // len(consumers) for n in consumers),
                     60, f"{len(consumers)} members to share the partitions evenly", owners)
        assert not owners.twice, owners.twice
        poll_all(consumers, seen, lambda: len({r for rs in seen.values() for r in rs}) == 50 * PARTITIONS,
                 60, "every record to be consumed", owners)
        ends = {p: 50 for p in range(PARTITIONS)}
        wait_until(lambda: committed_offsets(bootstrap, group, topic_name) == ends, 30, "the commits")

        # What the protocol shows: the group's type and state, its epochs and members.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=30).valid}
        assert listed[group].type == ck.ConsumerGroupType.CONSUMER, listed[group]
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert described.type == ck.ConsumerGroupType.CONSUMER
        assert described.state == ck.ConsumerGroupState.STABLE
        assert sorted(m.client_id for m in described.members) == ["a", "b", "c"]
        assert sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions) == \
            list(range(PARTITIONS))
        # chronikctl describes it through ConsumerGroupDescribe (DescribeGroups says Dead).
        ctl = cluster.ctl_json("group", "describe", group)
        assert (ctl["state"], ctl["protocol_type"], ctl["protocol"]) == ("Stable", "consumer", "uniform"), ctl
        owned = sorted((t["topic"], p) for m in ctl["members"] for t in m["assignment"] for p in t["partitions"])
        assert owned == [(topic_name, p) for p in range(PARTITIONS)], ctl
        assert all(p["lag"] == 0 and p["member_id"] for p in ctl["partitions"]), ctl
        listed = [g for g in cluster.ctl_json("group", "list")["groups"] if g["group_id"] == group]
        assert [(g["group_type"], g["state"]) for g in listed] == [("consumer", "Stable")], listed
        with pytest.raises(ChronikctlError) as refused:
            cluster.ctl("group", "reset-offsets", group, "--topic", topic_name, "--to-earliest", timeout=60)
        assert "3 member(s)" in refused.value.stderr, refused.value
        # A group with members is not deleted.
        [deleted] = admin.delete_consumer_groups([group]).values()
        with pytest.raises(ck.KafkaException, match="NON_EMPTY_GROUP"):
            deleted.result(timeout=30)

        # One leaves (close sends epoch -1): the others take its partitions once it revoked them.
        consumers.pop("c").close()
        for p in list(owners.of("c")):
            del owners.owner[p]
        poll_all(consumers, seen,
                 lambda: sorted(owners.owner) == list(range(PARTITIONS))
                 and {len(owners.of("a")), len(owners.of("b"))} == {PARTITIONS // 2}, 60,
                 "the two left to share every partition", owners)
        assert not owners.twice, owners.twice
        # And new records reach them at the offsets the group committed.
        produce(bootstrap, topic_name, 50, 10)
        poll_all(consumers, seen, lambda: len({r for rs in seen.values() for r in rs}) == 60 * PARTITIONS,
                 60, "the new records to be consumed", owners)
        ends = {p: 60 for p in range(PARTITIONS)}
        wait_until(lambda: committed_offsets(bootstrap, group, topic_name) == ends, 30, "the last commits")
        assert not owners.twice, owners.twice
    finally:
        for consumer in consumers.values():
            consumer.close()


@pytest.mark.confluent
@pytest.mark.fault
@pytest.mark.timeout(300)
def test_a_killed_member_leaves_after_its_session_and_the_coordinator_fails_over_without_a_rebalance(
        cluster_factory, topic_name, members):  # noqa: F811
    cluster = cluster_with_topic(cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group_id = unique_group()
    first = produce(bootstrap, topic_name, 0, 40)
    group = [members("confluent-consumer", bootstrap, group_id, topic_name) for _ in range(3)]
    wait_owned_exactly_once(group, "three members to share the topic")
    wait_consumed(group, first, "the members to consume the first records")

    # SIGKILL: no leave. Its partitions move once the coordinator's session timeout ends it.
    group[2].kill()
    killed_at = time.monotonic()
    wait_owned_exactly_once(group, "the two left to own every partition", timeout=60)
    assert time.monotonic() - killed_at >= SESSION_MS / 1000 - 1, "moved before the session ended"
    second = produce(bootstrap, topic_name, 40, 20)
    wait_consumed(group, second, "the two left to consume new records")
    wait_until(lambda: committed_offsets(bootstrap, group_id, topic_name) == {p: 60 for p in range(PARTITIONS)},
               30, "the members' commits")
    before = {m.name: (m.snapshot()[0], m.assignments_seen) for m in group[:2]}

    # The coordinator's broker dies: the new coordinator replays the group from the offsets topic.
    kill_coordinator(cluster, group_id)
    third = produce(bootstrap, topic_name, 60, 20)
    wait_consumed(group[:2], third, "the members to consume records after the coordinator moved", timeout=90)
    wait_until(lambda: committed_offsets(bootstrap, group_id, topic_name) == {p: 80 for p in range(PARTITIONS)},
               60, "the members' commits through the new coordinator")
    # No rebalance: the same assignments, and no new assignment callbacks.
    after = {m.name: (m.snapshot()[0], m.assignments_seen) for m in group[:2]}
    assert after == before, f"the members were rebalanced: {before} -> {after}"
    got = consumed_values(group)
    for p in range(PARTITIONS):
        assert set(got[p]) == set(first[p] + second[p] + third[p]), f"partition {p}"
    for m in group[:2]:
        m.stop()
        assert not m.commit_failures, m.commit_failures


@pytest.mark.confluent
@pytest.mark.timeout(180)
def test_a_group_with_members_keeps_its_protocol_and_an_empty_one_changes(module_cluster_factory, topic_name):
    cluster = cluster_with_topic(module_cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group = unique_group()
    produce(bootstrap, topic_name, 0, 5)
    modern = member(bootstrap, group, "modern")
    classic = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": group,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        modern.subscribe([topic_name])
        got: list = []
        wait_until(lambda: got.extend(m for m in modern.consume(num_messages=100, timeout=0.2) if not m.error())
                   or len(got) == 5 * PARTITIONS, 60, "the consumer-protocol member to read every record")
        modern.commit(asynchronous=False)
        classic.subscribe([topic_name])
        error = first_error(classic)
        assert error is not None and error.code() == ck.KafkaError.INCONSISTENT_GROUP_PROTOCOL, error
    finally:
        modern.close()
        classic.close()
    # Empty now: a classic member may take the group over, and finds the offsets committed.
    again = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "latest", "enable.auto.commit": False})
    try:
        again.subscribe([topic_name])
        produce(bootstrap, topic_name, 5, 1)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < PARTITIONS and time.monotonic() < deadline:
            msg = again.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg.value().decode())
        assert sorted(got) == sorted(f"p{p}-5" for p in range(PARTITIONS)), got
    finally:
        again.close()


@pytest.mark.timeout(240)
def test_the_java_client_consumes_through_the_consumer_protocol(java_classpath, module_cluster_factory,  # noqa: F811
                                                               topic_name):
    cluster = cluster_with_topic(module_cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group = unique_group()
    produce(bootstrap, topic_name, 0, 20)
    events = run_java(java_classpath, "consume", bootstrap, topic_name, group, str(20 * PARTITIONS), "consumer")
    values = [e for e in events if "value" in e]
    assert sorted({(e["partition"], e["offset"]) for e in values}) == \
        [(p, o) for p in range(PARTITIONS) for o in range(20)]
    committed = {e["committed_partition"]: e["committed_offset"] for e in events if "committed_partition" in e}
    assert committed == {p: 20 for p in range(PARTITIONS)}, committed
    # Its Admin client sees a consumer group (ConsumerGroupDescribe) that is empty now.
    described = run_java(java_classpath, "describe", bootstrap, group)
    [kind] = [e["group_type"] for e in described if "group_type" in e]
    assert kind == "Consumer", described
    assert {e["consumer_type"] for e in described if "consumer_type" in e} >= {group}


@pytest.mark.confluent
@pytest.mark.timeout(180)
def test_a_regex_subscription_follows_new_topics_and_an_unused_group_is_cleaned_up(module_cluster_factory,
                                                                                   topic_name):
    cluster = cluster_with_topic(module_cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    prefix = f"rx-{unique_group()[-8:]}"
    cluster.create_topic(f"{prefix}-a", partitions=2, replication_factor=1)
    cluster.create_topic(f"other-{prefix}", partitions=1, replication_factor=1)
    group = unique_group()
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def listed() -> set[str]:
        return {g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid}

    consumer = member(bootstrap, group, "regex")
    try:
        consumer.subscribe([f"^{prefix}-.*"])

        def assignment() -> set[tuple[str, int]]:
            consumer.consume(num_messages=10, timeout=0.1)
            return {(tp.topic, tp.partition) for tp in consumer.assignment()}

        wait_until(lambda: assignment() == {(f"{prefix}-a", 0), (f"{prefix}-a", 1)}, 60,
                   "the matching topic's partitions")
        cluster.create_topic(f"{prefix}-b", partitions=1, replication_factor=1)
        wait_until(lambda: assignment() == {(f"{prefix}-a", 0), (f"{prefix}-a", 1), (f"{prefix}-b", 0)}, 60,
                   "the new matching topic's partition too")
        assert group in listed()
    finally:
        consumer.close()
    # It left and never committed: the next offsets cleanup (every second here) removes the group.
    wait_until(lambda: group not in listed(), 30, "the unused group to be removed")


@pytest.mark.confluent
@pytest.mark.timeout(240)
def test_a_regex_matches_only_topics_the_member_may_describe_and_a_description_hides_the_rest(
        secured_cluster, topic_name):  # noqa: F811 - a fixture
    """SASL users and the standard authorizer (strict: no ACL, no access). alice may read the group
    and `<t>-open`; `<t>-hidden` matches her regex too, but she may not DESCRIBE it, so the group
    assigns her `<t>-open` alone (Kafka resolves a regex with the ACLs of the member whose heartbeat
    refreshes it). bob may DESCRIBE the group but not `<t>-open`: his ConsumerGroupDescribe gets
    TOPIC_AUTHORIZATION_FAILED and no member. Once an ACL lets alice read `<t>-hidden` (a metadata
    change), her regex is resolved again and she gets it too."""
    cluster = secured_cluster("sasl_plaintext", brokers=1, broker_args=tuple(BROKER_ARGS))
    path = cluster.doc["client_properties"]
    properties = read_properties(path)
    ctl = ["--controllers", cluster.controllers, "-C", path]
    for user in ("alice", "bob"):
        run_chronikctl([*ctl, "user", "create", user, "--password", f"{user}-pw"], 30)
    opened, hidden = f"{topic_name}-open", f"{topic_name}-hidden"
    cluster.create_topic(opened, partitions=2, replication_factor=1, wait=False)
    cluster.create_topic(hidden, partitions=1, replication_factor=1, wait=False)
    group = unique_group()

    def allow(user: str, operation: str, resource_type: str, name: str) -> None:
        run_chronikctl([*ctl, "acl", "create", "--principal", f"User:{user}", "--operation", operation,
                        "--permission", "allow", "--resource-type", resource_type, "--resource-name", name], 30)

    allow("alice", "read", "group", group)
    allow("alice", "read", "topic", opened)
    allow("bob", "describe", "group", group)

    def as_user(user: str) -> dict:
        return {**properties, "sasl.username": user, "sasl.password": f"{user}-pw"}

    admin = AdminClient(properties)

    def described() -> set[tuple[str, int]]:
        group_info = admin.describe_consumer_groups([group])[group].result(timeout=30)
        return {(tp.topic, tp.partition) for m in group_info.members for tp in m.assignment.topic_partitions}

    alice = ck.Consumer({**as_user("alice"), "group.id": group, "group.protocol": "consumer",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        alice.subscribe([f"^{topic_name}-.*"])

        def assignment() -> set[tuple[str, int]]:
            alice.consume(num_messages=10, timeout=0.1)
            return {(tp.topic, tp.partition) for tp in alice.assignment()}

        def now_holds(expected: set[tuple[str, int]]) -> bool:
            mine, theirs = assignment(), described()
            assert mine == theirs == expected, f"alice has {sorted(mine)}, the group says {sorted(theirs)}"
            return True

        only_open = {(opened, 0), (opened, 1)}
        wait_until(lambda: now_holds(only_open), 60, "alice to be assigned the topic she may describe")
        for _ in range(10):  # a few heartbeats (300 ms here): nothing more comes
            assert assignment() == only_open and described() == only_open
            time.sleep(0.3)

        bob = AdminClient(as_user("bob"))
        with pytest.raises(ck.KafkaException) as refused:
            bob.describe_consumer_groups([group])[group].result(timeout=30)
        assert refused.value.args[0].code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, refused.value

        allow("alice", "read", "topic", hidden)
        everything = only_open | {(hidden, 0)}
        wait_until(lambda: now_holds(everything), 60, "alice to get the topic an ACL now lets her describe")
    finally:
        alice.close()


@pytest.mark.confluent
@pytest.mark.timeout(180)
def test_group_version_0_turns_the_protocol_off_and_1_back_on(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=1, broker_args=BROKER_ARGS)
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    bootstrap = cluster.bootstrap_servers
    down = cluster.ctl_json("cluster", "features", "downgrade", "group.version=0")
    assert [f["finalized_level"] for f in down["features"] if f["name"] == "group.version"] == [0], down

    consumer = member(bootstrap, unique_group(), "off")
    try:
        consumer.subscribe([topic_name])
        error = first_error(consumer)
        assert error is not None and error.code() == ck.KafkaError._FATAL, error
        assert "API version not supported: ConsumerGroupHeartbeat" in error.str(), error
    finally:
        consumer.close()

    cluster.ctl_json("cluster", "features", "upgrade", "group.version=1")
    consumer = member(bootstrap, unique_group(), "on")
    try:
        consumer.subscribe([topic_name])
        wait_until(lambda: consumer.consume(num_messages=10, timeout=0.2) is not None and consumer.assignment(),
                   60, "a member to be assigned once group.version is 1 again")
    finally:
        consumer.close()


@pytest.mark.confluent
@pytest.mark.fault
@pytest.mark.timeout(300)
def test_a_decision_the_offsets_topic_refuses_is_undone_and_leaves_no_ghost_after_failover(
        cluster_factory, topic_name):
    """A member's leave the offsets topic cannot take (its in-sync replicas fell below
    min.insync.replicas) changes nothing: the coordinator refuses what it cannot write (and would
    reload from the log had the replicas fallen between deciding and writing), so what it shows is
    what a failover would find. Once the replicas are back the member's session ends it for good, and
    a new coordinator after a kill knows only the member that stayed."""
    cluster = cluster_with_topic(cluster_factory, topic_name)
    bootstrap = cluster.bootstrap_servers
    group = unique_group()
    produce(bootstrap, topic_name, 0, 10)
    owners = Owners()
    consumers = {name: member(bootstrap, group, name) for name in ("a", "b")}
    for name, consumer in consumers.items():
        owners.listen(consumer, name, topic_name)
    seen: dict[str, list[tuple[int, int]]] = {}
    poll_all(consumers, seen, lambda: len(owners.of("a")) == len(owners.of("b")) == PARTITIONS // 2, 60,
             "the members to share the topic", owners)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def members() -> list[str]:
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        return sorted(m.client_id for m in described.members)

    offsets_partition, coordinator = coordinator_of(cluster, group)
    others = [b for b in cluster.running_broker_ids() if b != coordinator]
    for broker in others:
        cluster.kill_broker(broker)

    def offsets_isr() -> list[int]:
        return sorted(cluster.describe_topic("__consumer_offsets")["partitions"][offsets_partition]["isr"])

    wait_until(lambda: offsets_isr() == [coordinator], 60, "the offsets partition's ISR to shrink to one")
    consumers.pop("b").close()  # its leave cannot be written
    # Nor can an admin's LeaveGroup: refused, not answered as done and then undone.
    a_id = next(m.member_id for m in admin.describe_consumer_groups([group])[group].result(timeout=30).members
                if m.client_id == "a")
    assert admin_leave(cluster.broker_addr(coordinator), group, a_id) == (COORDINATOR_NOT_AVAILABLE, [])
    # A member it does not know is answered as such, whatever the replicas (Kafka writes nothing).
    assert admin_leave(cluster.broker_addr(coordinator), group, "no-such-member") == (0, [("no-such-member", 25)])
    time.sleep(2)
    assert members() == ["a", "b"], "the leaves that could not be written changed nothing"

    for broker in others:
        cluster.start_broker(broker)
    wait_until(lambda: len(offsets_isr()) == 3, 90, "the offsets partition's ISR to be whole again")
    # b's session ends now that it can be written, and a takes everything.
    poll_all(consumers, seen, lambda: sorted(owners.of("a")) == list(range(PARTITIONS)), 60,
             "a to own every partition", owners)
    assert members() == ["a"]

    kill_coordinator(cluster, group)
    assert wait_until(lambda: members(), 60, "the new coordinator to describe the group") == ["a"]
    # With the replicas whole an admin's LeaveGroup is taken (a, still running, then joins again).
    _, coordinator = coordinator_of(cluster, group)
    a_id = next(m.member_id for m in admin.describe_consumer_groups([group])[group].result(timeout=30).members)
    assert admin_leave(cluster.broker_addr(coordinator), group, a_id) == (0, [(a_id, 0)])
    assert admin_leave(cluster.broker_addr(coordinator), group, "no-such-member") == (0, [("no-such-member", 25)])
    consumers["a"].close()


@pytest.mark.confluent
@pytest.mark.timeout(180)
def test_a_decision_whose_records_do_not_fit_the_offsets_topic_is_undone(cluster_factory, topic_name):
    """Records the offsets topic refuses once they are decided (here: larger than its
    max.message.bytes) poison the coordinator's partition, which reloads from its log: the member
    whose join could not be written is not in the group, and the member already there carries on."""
    cluster = cluster_factory(controllers=1, brokers=1, broker_args=BROKER_ARGS)
    cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=1)
    bootstrap = cluster.bootstrap_servers
    group = unique_group()
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def members() -> list[str]:
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        return sorted(m.client_id for m in described.members)

    stays = member(bootstrap, group, "stays")
    stays.subscribe([topic_name])
    wait_until(lambda: stays.consume(num_messages=10, timeout=0.1) is not None
               and len(stays.assignment()) == PARTITIONS, 60, "the first member to own every partition")
    cluster.ctl("topic", "alter-config", "__consumer_offsets", "--set", "max.message.bytes=2000")
    # Its subscription alone makes the joining member's metadata record larger than that.
    too_big = member(bootstrap, group, "too-big")
    try:
        too_big.subscribe([topic_name] + [f"{'x' * 60}-{i}" for i in range(50)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            too_big.poll(0.1)
            stays.poll(0.1)
    finally:
        too_big.close()
    assert wait_until(lambda: members(), 30, "the group to be described") == ["stays"]
    produce(bootstrap, topic_name, 0, 3)
    got = []
    wait_until(lambda: got.extend(m for m in stays.consume(num_messages=10, timeout=0.1) if not m.error())
               or len(got) == 3 * PARTITIONS, 60, "the member that stayed to read new records")
    assert len(stays.assignment()) == PARTITIONS
    stays.close()
