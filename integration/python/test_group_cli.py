"""`chronikctl group` against live consumer groups of confluent-kafka (librdkafka) consumers.

- list/describe show a live group: its members with their real assignments (as each consumer reports
  it), and per partition the committed offset, log end offset, lag and owner after the consumers
  committed known offsets;
- reset-offsets and delete are refused while the group has members; once the consumers have closed,
  reset-offsets moves the offsets to earliest, latest, a clamped offset and a datetime (dry run first,
  which commits nothing), a new consumer of the group starts exactly at the reset positions, and
  delete removes the group;
- errors read as one clear line: unknown group, unknown topic, unknown partition, bad datetime.

Every wait has a deadline; consumers are closed in `finally`.
"""

from __future__ import annotations

import datetime
import time
import uuid

import confluent_kafka as ck
import pytest

from chronik_cluster import ChronikctlError, wait_until
from clients import LIBRDKAFKA_BASE, Rec, ck_produce

pytestmark = [pytest.mark.confluent, pytest.mark.groups]

RECORDS_PER_PARTITION = 10


def unique_group(label: str) -> str:
    return f"cli-{label}-{uuid.uuid4().hex[:8]}"


def group_consumer(bootstrap: str, group: str, client_id: str) -> ck.Consumer:
    return ck.Consumer({
        **LIBRDKAFKA_BASE,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        "enable.partition.eof": False,
    })


def pump(consumers: list[ck.Consumer], seen: dict[tuple[int, int], bytes], rounds: int = 5) -> None:
    """Polls every consumer a few times (which drives its rebalances), keeping what arrives."""
    for _ in range(rounds):
        for consumer in consumers:
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                if msg.error().retriable() or msg.error().code() in (
                        ck.KafkaError._TRANSPORT, ck.KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            seen[(msg.partition(), msg.offset())] = msg.value()


def produce(cluster, topic: str, partitions: int, t0: int | None = None) -> None:
    """RECORDS_PER_PARTITION records to each partition; record i has timestamp t0 + i s when given."""
    records = [Rec(value=f"p{p}-{i}".encode(), partition=p,
                   timestamp=None if t0 is None else t0 + i * 1000)
               for p in range(partitions) for i in range(RECORDS_PER_PARTITION)]
    ck_produce(cluster.bootstrap_servers, topic, records)


def group_json(cluster, *args: str, timeout: float = 60.0):
    return cluster.ctl_json("group", *args, timeout=timeout)


def group_fails(cluster, *args: str) -> ChronikctlError:
    """Runs a group command that must fail; returns the failure (exit status and output)."""
    with pytest.raises(ChronikctlError) as failure:
        cluster.ctl("group", *args, "--retry-timeout-ms", "5000", timeout=60)
    return failure.value


def committed(description: dict, topic: str) -> dict[int, int | None]:
    return {p["partition"]: p["committed_offset"]
            for p in description["partitions"] if p["topic"] == topic}


def rfc3339(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def close_all(consumers: list[ck.Consumer]) -> None:
    for consumer in consumers:
        try:
            consumer.close()
        except RuntimeError:
            pass  # already closed


def wait_group_state(cluster, group: str, state: str, timeout: float = 30.0) -> dict:
    return wait_until(lambda: (d := group_json(cluster, "describe", group))["state"] == state and d,
                      timeout, f"group {group} to be {state}")


@pytest.mark.timeout(180)
def test_list_and_describe_show_a_live_group_with_its_lag(shared_cluster):
    cluster = shared_cluster
    topic = unique_group("topic")
    group = unique_group("live")
    cluster.create_topic(topic, partitions=3)
    produce(cluster, topic, 3)

    consumers = [group_consumer(cluster.bootstrap_servers, group, f"cli-test-{i}") for i in (1, 2)]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        seen: dict[tuple[int, int], bytes] = {}

        def settled() -> bool:
            pump(consumers, seen)
            owned = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
            return (all(owned) and sorted(sum(owned, [])) == [0, 1, 2]
                    and len(seen) == 3 * RECORDS_PER_PARTITION)

        wait_until(settled, 60, "two consumers sharing the 3 partitions and every record read")
        # Commit a known offset per partition from its owner: partition p is p records behind.
        owner_of: dict[int, ck.Consumer] = {}
        for consumer in consumers:
            mine = [tp.partition for tp in consumer.assignment()]
            consumer.commit(offsets=[ck.TopicPartition(topic, p, RECORDS_PER_PARTITION - p) for p in mine],
                            asynchronous=False)
            owner_of.update({p: consumer for p in mine})

        description = wait_group_state(cluster, group, "Stable")
        assert description["group_id"] == group
        assert description["protocol_type"] == "consumer"
        assert description["protocol"] in ("range", "roundrobin", "cooperative-sticky"), description
        members = {m["client_id"]: m for m in description["members"]}
        assert sorted(members) == ["cli-test-1", "cli-test-2"], description["members"]
        for i, consumer in enumerate(consumers, start=1):
            member = members[f"cli-test-{i}"]
            assert member["member_id"] == consumer.memberid()
            assert member["assignment_error"] is None
            assigned = {p for a in member["assignment"] if a["topic"] == topic for p in a["partitions"]}
            assert assigned == {tp.partition for tp in consumer.assignment()}, member
            assert member["host"], member

        rows = {p["partition"]: p for p in description["partitions"] if p["topic"] == topic}
        assert sorted(rows) == [0, 1, 2], description["partitions"]
        for p, row in rows.items():
            assert row["committed_offset"] == RECORDS_PER_PARTITION - p, row
            assert row["log_end_offset"] == RECORDS_PER_PARTITION, row
            assert row["lag"] == p, row
            assert row["member_id"] == owner_of[p].memberid(), row
        assert description["notes"] == []

        listed = group_json(cluster, "list")
        assert listed["failed_brokers"] == []
        mine = [g for g in listed["groups"] if g["group_id"] == group]
        assert len(mine) == 1, listed
        assert mine[0]["state"] == "Stable"
        assert mine[0]["protocol_type"] == "consumer"
        assert mine[0]["group_type"] == "classic"
        assert mine[0]["coordinator"] == description["coordinator"]

        # The table shows the same figures.
        text = cluster.ctl("group", "describe", group).stdout
        assert f"Group:        {group}" in text, text
        assert "State:        Stable" in text, text
        lag_rows = [line.split() for line in text.splitlines() if line.startswith(topic)]
        assert [row[1:5] for row in lag_rows] == [
            [str(p), str(RECORDS_PER_PARTITION - p), str(RECORDS_PER_PARTITION), str(p)] for p in range(3)
        ], text
        assert group in cluster.ctl("group", "list").stdout
    finally:
        close_all(consumers)


@pytest.mark.timeout(240)
def test_reset_offsets_and_delete_wait_for_an_empty_group(shared_cluster):
    cluster = shared_cluster
    topic = unique_group("topic")
    group = unique_group("reset")
    cluster.create_topic(topic, partitions=2)
    t0 = (int(time.time()) - 3600) * 1000  # an hour ago: record i at t0 + i s
    produce(cluster, topic, 2, t0)

    consumer = group_consumer(cluster.bootstrap_servers, group, "cli-reset")
    try:
        consumer.subscribe([topic])
        seen: dict[tuple[int, int], bytes] = {}
        wait_until(lambda: pump([consumer], seen) or len(seen) == 2 * RECORDS_PER_PARTITION, 60,
                   "the consumer to read every record")
        consumer.commit(offsets=[ck.TopicPartition(topic, p, RECORDS_PER_PARTITION) for p in (0, 1)],
                        asynchronous=False)
        wait_group_state(cluster, group, "Stable")

        # While the consumer is a member, nothing may move its offsets or delete the group.
        for extra in ([], ["--dry-run"]):
            refused = group_fails(cluster, "reset-offsets", group, "--topic", topic, "--to-earliest", *extra)
            assert "1 member(s)" in refused.stderr and "stop its consumers" in refused.stderr, refused
        refused = group_fails(cluster, "delete", group)
        assert "still has members" in refused.stderr and "NON_EMPTY_GROUP" in refused.stderr, refused
        assert committed(group_json(cluster, "describe", group), topic) == {0: 10, 1: 10}
    finally:
        consumer.close()

    wait_group_state(cluster, group, "Empty")

    # A dry run shows the plan and commits nothing.
    plan = group_json(cluster, "reset-offsets", group, "--topic", topic, "--to-earliest", "--dry-run")
    assert plan["dry_run"] is True
    assert [(p["partition"], p["previous_offset"], p["new_offset"], p["log_start_offset"],
             p["log_end_offset"]) for p in plan["partitions"]] == [(0, 10, 0, 0, 10), (1, 10, 0, 0, 10)]
    assert committed(group_json(cluster, "describe", group), topic) == {0: 10, 1: 10}

    def reset(*args: str) -> dict[int, tuple[int | None, int]]:
        done = group_json(cluster, "reset-offsets", group, "--topic", topic, *args)
        assert done["dry_run"] is False
        return {p["partition"]: (p["previous_offset"], p["new_offset"]) for p in done["partitions"]}

    assert reset("--to-earliest") == {0: (10, 0), 1: (10, 0)}
    assert committed(group_json(cluster, "describe", group), topic) == {0: 0, 1: 0}
    assert reset("--to-latest") == {0: (0, 10), 1: (0, 10)}
    assert reset("--to-offset", "7", "--partitions", "0") == {0: (10, 7)}
    assert reset("--to-offset", "1000") == {0: (7, 10), 1: (10, 10)}  # clamped to the log end
    assert reset("--to-datetime", rfc3339(t0 + 4000)) == {0: (10, 4), 1: (10, 4)}
    assert reset("--to-datetime", rfc3339(t0 + 4500)) == {0: (4, 5), 1: (4, 5)}
    future = rfc3339(int(time.time() + 86400) * 1000)
    assert reset("--to-datetime", future) == {0: (5, 10), 1: (5, 10)}  # nothing that recent: log end
    described = group_json(cluster, "describe", group)
    assert described["state"] == "Empty" and described["members"] == []
    assert {p["partition"]: p["lag"] for p in described["partitions"]} == {0: 0, 1: 0}

    # The table names old and new offsets.
    text = cluster.ctl("group", "reset-offsets", group, "--topic", topic, "--to-offset", "3",
                       "--partitions", "0").stdout
    assert f"Reset the offsets of group '{group}' on topic '{topic}' to offset 3." in text, text
    assert text.splitlines()[-1].split() == ["0", "10", "3", "0", "10"], text
    assert reset("--to-datetime", rfc3339(t0 + 6000), "--partitions", "1") == {1: (10, 6)}

    # A new member of the group starts exactly where the reset put it.
    consumer = group_consumer(cluster.bootstrap_servers, group, "cli-after-reset")
    try:
        consumer.subscribe([topic])
        seen = {}
        wait_until(lambda: pump([consumer], seen) or len(seen) == (10 - 3) + (10 - 6), 60,
                   "the new consumer to read from the reset positions")
        first = {p: min(o for (q, o) in seen if q == p) for p in (0, 1)}
        assert first == {0: 3, 1: 6}, sorted(seen)
        assert seen[(0, 3)] == b"p0-3" and seen[(1, 6)] == b"p1-6"
    finally:
        consumer.close()

    wait_group_state(cluster, group, "Empty")
    deleted = group_json(cluster, "delete", group)
    assert deleted == {"group_id": group}
    gone = group_fails(cluster, "describe", group)
    assert f"group '{group}' does not exist" in gone.stderr, gone
    assert group not in [g["group_id"] for g in group_json(cluster, "list")["groups"]]


def test_errors_read_as_one_clear_line(shared_cluster):
    cluster = shared_cluster
    topic = unique_group("topic")
    cluster.create_topic(topic, partitions=2)
    missing = unique_group("missing")

    for args in (["describe", missing], ["delete", missing]):
        failure = group_fails(cluster, *args)
        assert failure.returncode == 1
        assert failure.stderr.strip() == f"error: group '{missing}' does not exist", failure

    failure = group_fails(cluster, "reset-offsets", missing, "--topic", f"{topic}-nope", "--to-earliest")
    assert failure.stderr.strip() == f"error: topic '{topic}-nope' does not exist", failure

    failure = group_fails(cluster, "reset-offsets", missing, "--topic", topic, "--partitions", "0,9",
                          "--to-latest")
    assert failure.stderr.strip() == f"error: topic '{topic}' has no partition 9 (it has 2 partition(s))"

    # Argument errors come from the command line parser (exit status 2) before any request.
    failure = group_fails(cluster, "reset-offsets", missing, "--topic", topic, "--to-datetime", "yesterday")
    assert failure.returncode == 2
    assert "not an RFC 3339 date-time" in failure.stderr, failure
    failure = group_fails(cluster, "reset-offsets", missing, "--topic", topic)
    assert failure.returncode == 2, failure
    failure = group_fails(cluster, "reset-offsets", missing, "--topic", topic, "--to-earliest", "--to-latest")
    assert failure.returncode == 2, failure

    # A reset of a group that has never existed creates its offsets (as Kafka's tool does).
    done = group_json(cluster, "reset-offsets", missing, "--topic", topic, "--to-latest")
    assert [(p["partition"], p["previous_offset"], p["new_offset"]) for p in done["partitions"]] == [
        (0, None, 0), (1, None, 0)]
    assert group_json(cluster, "describe", missing)["state"] == "Empty"
    group_json(cluster, "delete", missing)


@pytest.mark.fault
@pytest.mark.timeout(240)
def test_group_commands_follow_the_coordinator_after_it_is_killed(cluster_factory):
    """Right after a kill -9 of the coordinator, FindCoordinator may still name it (the controller
    has not fenced it yet) and the new one may still be loading: the commands retry until they reach
    the new coordinator, which has the offsets committed before the kill."""
    cluster = cluster_factory(controllers=1, brokers=3)
    topic = unique_group("topic")
    group = unique_group("moved")
    cluster.create_topic(topic, partitions=2, replication_factor=3, configs={"min.insync.replicas": "2"})
    produce(cluster, topic, 2)

    done = group_json(cluster, "reset-offsets", group, "--topic", topic, "--to-offset", "4")
    assert [p["new_offset"] for p in done["partitions"]] == [4, 4]
    before = group_json(cluster, "describe", group)
    assert before["state"] == "Empty" and committed(before, topic) == {0: 4, 1: 4}

    cluster.kill_broker(before["coordinator"])
    after = group_json(cluster, "describe", group, "--retry-timeout-ms", "60000", timeout=120)
    assert after["coordinator"] != before["coordinator"]
    assert committed(after, topic) == {0: 4, 1: 4}
    assert [p["log_end_offset"] for p in after["partitions"]] == [10, 10]

    done = group_json(cluster, "reset-offsets", group, "--topic", topic, "--to-latest",
                      "--retry-timeout-ms", "60000", timeout=120)
    assert [(p["previous_offset"], p["new_offset"]) for p in done["partitions"]] == [(4, 10), (4, 10)]
    assert committed(group_json(cluster, "describe", group), topic) == {0: 10, 1: 10}
