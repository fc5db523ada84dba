"""The read-only admin APIs a broker answers from its own state, through the clients that have them, and
the `chronikctl` commands over them:

- DescribeLogDirs (kafka-python `describe_log_dirs`, the Java Admin `describeLogDirs`, `chronikctl cluster
  logdirs`): each broker's absolute data dir, its filesystem's total/usable bytes (statvfs), and per
  partition replica the size of its segments on disk and lag 0; partitions not asked or not hosted are
  left out; an offline (full) data dir answers KAFKA_STORAGE_ERROR and nothing else;
- DescribeProducers (kafka-python `describe_producers`, the Java Admin `describeProducers`): the
  idempotent producers of a partition with their last sequence and timestamp, from the leader and from
  a follower alike; UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER from a broker without a replica,
  KAFKA_STORAGE_ERROR from an offline dir;
- ListGroups v5 type and state filters and DescribeGroups / DescribeCluster authorized operations
  (confluent-kafka, kafka-python, Java), and the ApiVersions features (metadata.version 3.3-IV3 and
  transaction.version 2, a new cluster's level; no group.version);
- `chronikctl topic describe` with each partition's log start offset, high watermark and size from its
  leader, and the error cases: unknown topic, a broker down, a full disk.

confluent-kafka 2.16.1 has no describe_log_dirs or describe_producers; kafka-python and the Java client
cover those. The Java parts are left out (saying why) when Java or the kafka-clients jars are missing; the
rest of each test still runs.
"""

from __future__ import annotations

import json
import os
import struct
import time

import confluent_kafka as ck
import kafka.errors as kp_errors
import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType, TopicPartition
from confluent_kafka.admin import AclOperation, AdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient

from chronik_cluster import (RF1_CONTROLLER_ARGS, ChronikCluster, ChronikctlError, down_in, read_batch_headers,
                             wait_until)
from clients import LIBRDKAFKA_BASE, Rec, ck_produce, unique_group
from test_full_disk import fill, mount_tmpfs, unmount
from test_java_client import java_classpath, run_java  # noqa: F401 - java_classpath is a fixture

pytestmark = pytest.mark.admin

KAFKA_STORAGE_ERROR = 56
GROUP_OPERATIONS = {"READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
CLUSTER_OPERATIONS = {"CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
                      "IDEMPOTENT_WRITE"}
IDEMPOTENT = {"enable.idempotence": True, "acks": "all"}


@pytest.fixture(scope="module")
def java(request) -> str | None:
    """The Java client's classpath, or None (the Java parts of a test are then left out)."""
    try:
        return request.getfixturevalue("java_classpath")
    except pytest.skip.Exception as skipped:
        print(f"the Java client parts are left out: {skipped}")
        return None


def kp_admin(cluster: ChronikCluster) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=15000)


def segment_bytes(cluster: ChronikCluster, broker: int, topic: str, partition: int) -> int:
    return sum(p.stat().st_size for p in cluster.segments(broker, topic, partition))


def data_dir(cluster: ChronikCluster, broker: int) -> str:
    return os.path.abspath(cluster.broker(broker)["data_dir"])


def producer_ids(cluster: ChronikCluster, broker: int, topic: str, partition: int) -> set[int]:
    """The producer ids of the batches on disk."""
    ids = set()
    for segment in cluster.segments(broker, topic, partition):
        data = segment.read_bytes()
        for batch in read_batch_headers(segment)[0]:
            ids.add(struct.unpack_from(">q", data, batch.position + 43)[0])
    return ids


def logdirs_json(cluster: ChronikCluster, *args: str) -> tuple[dict, int, str]:
    """`chronikctl cluster logdirs -o json`: the report, the exit status and stderr (it prints the report
    before failing when a broker could not be asked)."""
    try:
        done = cluster.ctl("cluster", "logdirs", *args, "--output", "json")
        return json.loads(done.stdout), 0, done.stderr
    except ChronikctlError as error:
        return (json.loads(error.stdout) if error.stdout.strip() else {}), error.returncode, error.stderr


# ----- DescribeLogDirs -----

@pytest.mark.kafka_python
def test_describe_log_dirs_reports_dirs_filesystems_and_replica_sizes(shared_cluster, topic_name, java):
    shared_cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    ck_produce(shared_cluster.bootstrap_servers, topic_name,
               [Rec(value=b"v" * 200, partition=i % 3) for i in range(150)])
    brokers = sorted(b["id"] for b in shared_cluster.brokers)
    # Followers copy asynchronously: wait until every replica holds every batch.
    ends = {p: 50 for p in range(3)}
    wait_until(lambda: all(sum(b.record_count for b in shared_cluster.stored_batches(b_id, topic_name, p)) == n
                           for b_id in brokers for p, n in ends.items()), 30, "every replica to hold 50 records")
    on_disk = {(b, p): segment_bytes(shared_cluster, b, topic_name, p) for b in brokers for p in range(3)}

    admin = kp_admin(shared_cluster)
    try:
        answers = {a["broker"]: a["log_dirs"] for a in admin.describe_log_dirs({topic_name: [0, 1, 2, 9]})}
        only_p1 = {a["broker"]: a["log_dirs"] for a in admin.describe_log_dirs({topic_name: [1]})}
    finally:
        admin.close()
    assert sorted(answers) == brokers
    for broker, dirs in answers.items():
        [d] = dirs
        assert d["error_code"] == 0
        assert d["log_dir"] == data_dir(shared_cluster, broker) and os.path.isabs(d["log_dir"])
        st = os.statvfs(d["log_dir"])
        assert d["total_bytes"] == st.f_blocks * st.f_frsize
        assert 0 < d["usable_bytes"] <= d["total_bytes"]
        [topic] = [t for t in d["topics"] if t["name"] == topic_name]
        sizes = {p["partition_index"]: (p["partition_size"], p["offset_lag"], p["is_future_key"])
                 for p in topic["partitions"]}
        # Partition 9 does not exist: left out, like every partition without a replica here.
        assert sizes == {p: (on_disk[(broker, p)], 0, False) for p in range(3)}, broker
        [d1] = only_p1[broker]
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in d1["topics"]] == \
            [(topic_name, [1])]

    if java:
        # The Java Admin asks with a null topic list: every replica of every topic on the broker.
        events = run_java(java, "logdirs", shared_cluster.bootstrap_servers, ",".join(map(str, brokers)))
        dirs = {e["broker"]: e for e in events if "dir" in e}
        assert {b: (d["dir"], d["error"]) for b, d in dirs.items()} == \
            {b: (data_dir(shared_cluster, b), None) for b in brokers}
        assert all(d["total"] > 0 and 0 < d["usable"] <= d["total"] for d in dirs.values())
        replicas = {(e["broker"], e["partition"]): (e["size"], e["lag"], e["future"])
                    for e in events if e.get("topic") == topic_name}
        assert replicas == {k: (size, 0, False) for k, size in on_disk.items()}

    # chronikctl: every live broker, limited to the topic.
    report, status, stderr = logdirs_json(shared_cluster, "--topic", topic_name)
    assert status == 0, stderr
    assert report["failed_brokers"] == []
    got = {(d["broker_id"], r["partition"]): r["size_bytes"]
           for d in report["log_dirs"] for r in d["replicas"]}
    assert got == on_disk
    assert all(r["topic"] == topic_name for d in report["log_dirs"] for r in d["replicas"])
    assert {d["broker_id"]: d["path"] for d in report["log_dirs"]} == {b: data_dir(shared_cluster, b) for b in brokers}
    table = shared_cluster.ctl("cluster", "logdirs", "--topic", topic_name).stdout
    assert "online" in table and topic_name in table, table

    with pytest.raises(ChronikctlError) as unknown:
        shared_cluster.ctl("cluster", "logdirs", "--topic", f"{topic_name}-missing")
    assert unknown.value.stderr.strip() == f"error: topic '{topic_name}-missing' does not exist"


# ----- DescribeProducers -----

@pytest.mark.kafka_python
@pytest.mark.confluent
def test_describe_producers_from_leader_and_follower(shared_cluster, topic_name, java):
    shared_cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    t0 = int(time.time() * 1000) - 60_000
    bootstrap = shared_cluster.bootstrap_servers
    # Two idempotent producers: A writes 30 records to partition 0; B 20 to partition 0 and 10 to 1.
    ck_produce(bootstrap, topic_name, [Rec(value=b"a", partition=0, timestamp=t0 + i) for i in range(30)],
               config=IDEMPOTENT)
    ck_produce(bootstrap, topic_name, [Rec(value=b"b", partition=i % 2, timestamp=t0 + 100 + i)
                                       for i in range(30)], config=IDEMPOTENT)
    leaders = shared_cluster.leaders(topic_name)
    pids = producer_ids(shared_cluster, leaders[0], topic_name, 0)
    assert len(pids) == 2
    [pid_b] = producer_ids(shared_cluster, leaders[1], topic_name, 1)
    [pid_a] = pids - {pid_b}
    expected = {
        0: {pid_a: (0, 29, t0 + 29), pid_b: (0, 14, t0 + 128)},
        1: {pid_b: (0, 14, t0 + 129)},
    }

    def as_map(states) -> dict[int, dict[int, tuple[int, int, int]]]:
        out = {}
        for tp, state in states.items():
            for p in state.active_producers:
                assert (p.coordinator_epoch, p.current_transaction_start_offset) == (-1, -1)
            out[tp.partition] = {p.producer_id: (p.producer_epoch, p.last_sequence, p.last_timestamp)
                                 for p in state.active_producers}
        return out

    partitions = [KpTopicPartition(topic_name, 0), KpTopicPartition(topic_name, 1)]
    follower = next(b["id"] for b in shared_cluster.brokers if b["id"] != leaders[0])
    admin = kp_admin(shared_cluster)
    try:
        assert as_map(admin.describe_producers(partitions)) == expected
        # Any replica answers from its own log once it has copied the batches.
        wait_until(lambda: as_map(admin.describe_producers(partitions[:1], broker_id=follower)) ==
                   {0: expected[0]}, 30, f"follower {follower} to list the producers of partition 0")
        with pytest.raises(kp_errors.UnknownTopicOrPartitionError):
            admin.describe_producers([KpTopicPartition(f"{topic_name}-missing", 0)], broker_id=follower)
        with pytest.raises(kp_errors.UnknownTopicOrPartitionError):
            admin.describe_producers([KpTopicPartition(topic_name, 7)], broker_id=follower)
    finally:
        admin.close()

    if java:
        events = run_java(java, "producers", bootstrap, topic_name, "0,1")
        seen: dict[int, dict[int, tuple[int, int, int]]] = {}
        for e in events:
            if "producer_id" in e:
                assert (e["coordinator_epoch"], e["txn_start"]) == (-1, -1)
                seen.setdefault(e["partition"], {})[e["producer_id"]] = (e["epoch"], e["last_sequence"],
                                                                         e["last_timestamp"])
        assert seen == expected
        assert {e["partition"] for e in events if e.get("ok")} == {0, 1}


@pytest.mark.kafka_python
def test_describe_producers_needs_a_replica_on_the_broker(shared_cluster, topic_name, java):
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    ck_produce(shared_cluster.bootstrap_servers, topic_name, [Rec(value=b"x", partition=0)], config=IDEMPOTENT)
    leader = shared_cluster.leaders(topic_name)[0]
    other = next(b["id"] for b in shared_cluster.brokers if b["id"] != leader)
    admin = kp_admin(shared_cluster)
    try:
        with pytest.raises(kp_errors.NotLeaderForPartitionError):
            admin.describe_producers([KpTopicPartition(topic_name, 0)], broker_id=other)
        [state] = admin.describe_producers([KpTopicPartition(topic_name, 0)], broker_id=leader).values()
        assert [p.last_sequence for p in state.active_producers] == [0]
    finally:
        admin.close()
    if java:
        events = run_java(java, "producers", shared_cluster.bootstrap_servers, topic_name, "0", str(other))
        assert events == [{"partition": 0, "error": "NotLeaderOrFollowerException"}]


# ----- groups, cluster operations, features -----

@pytest.mark.confluent
@pytest.mark.kafka_python
def test_group_types_states_and_authorized_operations(shared_cluster, topic_name, java):
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    bootstrap = shared_cluster.bootstrap_servers
    ck_produce(bootstrap, topic_name, [Rec(value=b"x", partition=0)])
    stable, empty = unique_group(), unique_group()
    # `empty` only has a committed offset (a classic group without members).
    committer = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": empty,
                             "enable.auto.commit": False})
    try:
        # The first group of the suite may find the offsets topic still being created and loaded.
        wait_until(lambda: committer.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False),
                   30, f"a commit for {empty}")
    finally:
        committer.close()
    member = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": stable,
                          "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                          "heartbeat.interval.ms": 500})
    ck_admin = AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap})
    try:
        member.subscribe([topic_name])
        wait_until(lambda: member.poll(0.2) is not None or member.assignment(), 30, "an assignment")

        def listed(**filters) -> dict[str, tuple]:
            result = ck_admin.list_consumer_groups(request_timeout=15, **filters).result(timeout=30)
            return {g.group_id: (g.type, g.state) for g in result.valid if g.group_id in (stable, empty)}

        wait_until(lambda: listed(states={ConsumerGroupState.STABLE}) == {
            stable: (ConsumerGroupType.CLASSIC, ConsumerGroupState.STABLE)}, 30, f"{stable} to be Stable")
        assert listed(types={ConsumerGroupType.CLASSIC}) == {
            stable: (ConsumerGroupType.CLASSIC, ConsumerGroupState.STABLE),
            empty: (ConsumerGroupType.CLASSIC, ConsumerGroupState.EMPTY)}
        assert listed(types={ConsumerGroupType.CONSUMER}) == {}
        assert listed(types={ConsumerGroupType.CLASSIC}, states={ConsumerGroupState.EMPTY}) == {
            empty: (ConsumerGroupType.CLASSIC, ConsumerGroupState.EMPTY)}

        described = ck_admin.describe_consumer_groups([stable], include_authorized_operations=True,
                                                      request_timeout=15)[stable].result(timeout=30)
        assert {op.name for op in described.authorized_operations} == GROUP_OPERATIONS
        plain = ck_admin.describe_consumer_groups([stable], request_timeout=15)[stable].result(timeout=30)
        assert plain.authorized_operations is None
        cluster = ck_admin.describe_cluster(include_authorized_operations=True, request_timeout=15).result(30)
        assert {op.name for op in cluster.authorized_operations} == CLUSTER_OPERATIONS
        assert AclOperation.CLUSTER_ACTION in cluster.authorized_operations

        admin = kp_admin(shared_cluster)
        try:
            groups = {g["group_id"]: g for g in admin.list_groups(types_filter=["classic"])}
            assert groups[stable]["group_type"] == "classic" and groups[stable]["group_state"] == "Stable"
            assert stable not in {g["group_id"] for g in admin.list_groups(types_filter=["consumer"])}
            assert {g["group_id"] for g in admin.list_groups(states_filter=["empty"])} & {stable, empty} == {empty}
            # ApiVersions v3+ features: metadata.version 3.3-IV3, transaction.version 2 and
            # group.version 1 (KIP-848's protocol served), the broker's metadata offset as epoch.
            features = admin.describe_features()
            assert set(features) == {"metadata.version", "transaction.version", "group.version"}, features
            group_version = features["group.version"]
            assert (group_version["supported"], group_version["finalized"]) == ((0, 1), (1, 1))
            version = features["metadata.version"]
            assert (version["supported"], version["finalized"]) == ((7, 7), (7, 7))
            assert version["finalized_epoch"] > 0
            txn = features["transaction.version"]
            assert (txn["supported"], txn["finalized"]) == ((0, 2), (2, 2)), txn
        finally:
            admin.close()

        if java:
            events = run_java(java, "describe", bootstrap, stable)
            ours = {e["listed"]: (e["type"], e["state"]) for e in events if e.get("listed") in (stable, empty)}
            assert ours == {stable: ("Classic", "Stable"), empty: ("Classic", "Empty")}
            assert {stable, empty} <= {e["classic"] for e in events if "classic" in e}
            assert not [e for e in events if "consumer_type" in e]
            [group] = [e for e in events if "group_ops" in e]
            assert group["group_type"] == "Classic" and set(group["group_ops"]) == GROUP_OPERATIONS
            [cluster_ops] = [e["cluster_ops"] for e in events if "cluster_ops" in e]
            assert set(cluster_ops) == CLUSTER_OPERATIONS
            # ApiVersions features: metadata.version 3.3-IV3, transaction.version 2, group.version 1.
            assert sorted((e["supported"], e["min"], e["max"]) for e in events if "supported" in e) == \
                [("group.version", 0, 1), ("metadata.version", 7, 7), ("transaction.version", 0, 2)]
            assert sorted((e["finalized"], e["min"], e["max"]) for e in events if "finalized" in e) == \
                [("group.version", 1, 1), ("metadata.version", 7, 7), ("transaction.version", 2, 2)]
            [epoch] = [e["features_epoch"] for e in events if "features_epoch" in e]
            assert epoch > 0
    finally:
        member.close()


# ----- chronikctl topic describe -----

def test_topic_describe_shows_offsets_and_sizes_from_the_leaders(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=3, replication_factor=1)
    ck_produce(shared_cluster.bootstrap_servers, topic_name,
               [Rec(value=b"z" * 64, partition=p) for p in range(3) for _ in range(10 * (p + 1))])
    described = shared_cluster.ctl_json("topic", "describe", topic_name)
    assert described["notes"] == []
    for p in described["partitions"]:
        index, leader = p["partition"], p["leader"]
        assert (p["log_start_offset"], p["high_watermark"]) == (0, 10 * (index + 1)), p
        assert p["size_bytes"] == segment_bytes(shared_cluster, leader, topic_name, index), p
    table = shared_cluster.ctl("topic", "describe", topic_name).stdout
    assert "HIGH WATERMARK" in table and "SIZE" in table, table
    metadata_only = shared_cluster.ctl_json("topic", "describe", topic_name, "--metadata-only")
    assert all(p["high_watermark"] is None and p["size_bytes"] is None for p in metadata_only["partitions"])
    assert "HIGH WATERMARK" not in shared_cluster.ctl("topic", "describe", topic_name, "--metadata-only").stdout

    with pytest.raises(ChronikctlError) as unknown:
        shared_cluster.ctl("topic", "describe", f"{topic_name}-missing")
    assert unknown.value.returncode != 0
    assert unknown.value.stderr.strip() == f"error: topic '{topic_name}-missing' does not exist"


@pytest.mark.fault
def test_a_broker_down_is_named_and_fails_logdirs_only(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=2)
    cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    ck_produce(cluster.bootstrap_servers, topic_name, [Rec(value=b"d", partition=p) for p in range(2)])
    leaders = cluster.leaders(topic_name)
    assert sorted(leaders.values()) == [1, 2], leaders
    cluster.kill_broker(2)

    report, status, stderr = logdirs_json(cluster)
    assert status != 0
    assert stderr.strip().startswith("error: broker(s) 2 could not be asked or did not answer"), stderr
    assert [d["broker_id"] for d in report["log_dirs"]] == [1]
    assert [f["broker_id"] for f in report["failed_brokers"]] == [2]

    # topic describe still does its job: broker 1's partition has its figures, broker 2's none.
    described = cluster.ctl_json("topic", "describe", topic_name)
    parts = {p["partition"]: p for p in described["partitions"]}
    [alive] = [parts[i] for i, b in leaders.items() if b == 1]
    [dead] = [parts[i] for i, b in leaders.items() if b == 2]
    assert (alive["log_start_offset"], alive["high_watermark"]) == (0, 1)
    assert alive["size_bytes"] == segment_bytes(cluster, 1, topic_name, alive["partition"])
    assert (dead["log_start_offset"], dead["high_watermark"], dead["size_bytes"]) == (None, None, None)
    # Led by the dead broker until it is fenced (a note says it did not answer), then by nobody.
    assert dead["leader"] in (2, -1)
    if dead["leader"] == 2:
        assert any(n.startswith("broker 2 (leader) did not answer") for n in described["notes"]), described


@pytest.mark.fault
@pytest.mark.kafka_python
@pytest.mark.timeout(180)
def test_a_full_disk_is_a_storage_error(tmp_path, topic_name):
    directory = tmp_path / "cluster"
    disk = directory / "broker-2"
    mount_tmpfs(disk)
    cluster: ChronikCluster | None = None
    try:
        cluster = ChronikCluster.up(name=directory.name, directory=directory, controllers=1, brokers=2,
                                    controller_args=RF1_CONTROLLER_ARGS)
        cluster.create_topic(topic_name, partitions=4, replication_factor=1)
        on_2 = [p for p, b in cluster.leaders(topic_name).items() if b == 2]
        assert on_2, "no partition on broker 2"
        fill(disk, 64 * 1024)
        producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": cluster.bootstrap_servers,
                                "acks": 1, "message.timeout.ms": 5000, "linger.ms": 5})

        def offline() -> bool:
            for _ in range(50):
                producer.produce(topic_name, value=b"f" * 4000, partition=on_2[0])
            producer.flush(5)
            report, _, _ = logdirs_json(cluster)
            return any(d["broker_id"] == 2 and d["error"] == "KAFKA_STORAGE_ERROR" for d in report["log_dirs"])

        wait_until(offline, 60, "broker 2's data dir to go offline")
        report, status, stderr = logdirs_json(cluster)
        # The broker answered: an offline dir is reported, not a failure of the command.
        assert status == 0, stderr
        [dir2] = [d for d in report["log_dirs"] if d["broker_id"] == 2]
        assert (dir2["replicas"], dir2["total_bytes"], dir2["usable_bytes"]) == ([], None, None)
        assert dir2["path"] == data_dir(cluster, 2)

        admin = kp_admin(cluster)
        try:
            [answer] = admin.describe_log_dirs({topic_name: on_2}, brokers=[2])
            [d] = answer["log_dirs"]
            assert (d["error_code"], d["topics"]) == (KAFKA_STORAGE_ERROR, [])
            with pytest.raises(kp_errors.KafkaStorageError):
                admin.describe_producers([KpTopicPartition(topic_name, on_2[0])], broker_id=2)
        finally:
            admin.close()
    finally:
        if cluster is not None:
            cluster.down()
        else:
            down_in(directory)
        unmount(disk)


# ----- DescribeQuorum -----

def active_controller(cluster: ChronikCluster) -> int | None:
    leaders = [c["node_id"] for c in cluster.ctl_json("cluster", "status")["controllers"]
               if c.get("role") == "leader"]
    return leaders[0] if len(leaders) == 1 else None


@pytest.mark.timeout(240)
def test_java_admin_describes_the_metadata_quorum_and_a_dead_controllers_lag(cluster_factory, java_classpath,
                                                                            topic_name):
    """DescribeQuorum (KIP-595) from the Java Admin's `describeMetadataQuorum`, which
    `kafka-metadata-quorum.sh describe --status --replication` prints: the active controller leads,
    the three controllers are the voters (with their addresses as CONTROLLER endpoints) and the
    three brokers the observers, each recently in contact and caught up. A follower controller
    killed with SIGKILL falls behind: its last fetch and catch-up stay where they were while the
    leader's log grows past its end offset, and the live follower keeps up. Restarted, it is caught
    up again. `chronikctl cluster quorum` reports the same, with the lags worked out."""
    cluster = cluster_factory(controllers=3, brokers=3)
    leader = wait_until(lambda: active_controller(cluster), 30, "an active controller")

    def quorum() -> dict:
        [described] = run_java(java_classpath, "quorum", cluster.bootstrap_servers)
        return described

    def recent(ms: int, within_s: float) -> bool:
        return time.time() * 1000 - within_s * 1000 <= ms <= time.time() * 1000 + 1000

    def settled() -> dict | None:
        # Right after the start a broker's first heartbeat may not have reported its offset yet.
        described = quorum()
        ends = [v[1] for v in described["voters"]] + [o[1] for o in described["observers"]]
        return described if len(described["observers"]) == 3 and all(end > 0 for end in ends) else None

    described = wait_until(settled, 60, "every voter and observer to report its log end")
    assert (described["leader"], described["epoch"] > 0, described["hw"] > 0) == (leader, True, True), described
    voters = {v[0]: v for v in described["voters"]}
    assert sorted(voters) == [1, 2, 3], described
    leader_end = voters[leader][1]
    assert leader_end >= described["hw"], described
    for replica_id, end, fetched, caught_up in described["voters"]:
        assert 0 < end <= leader_end, described
        assert recent(fetched, 10) and recent(caught_up, 10), (replica_id, described)
    assert sorted(o[0] for o in described["observers"]) == [1, 2, 3], described
    for broker_id, end, fetched, caught_up in described["observers"]:
        assert 0 < end <= described["hw"], described
        assert recent(fetched, 10) and recent(caught_up, 10), (broker_id, described)
    addresses = {n["id"]: n["addr"] for n in cluster.doc["nodes"] if n["kind"] == "controller"}
    assert described["nodes"] == {str(i): [f"CONTROLLER://{a}"] for i, a in addresses.items()}, described

    dead, alive = [c for c in (1, 2, 3) if c != leader]
    cluster.local("kill", "controller", str(dead))
    killed_at = time.time() * 1000
    # The leader's log grows past the dead follower's end.
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    time.sleep(2)
    behind = quorum()
    voters = {v[0]: v for v in behind["voters"]}
    assert behind["leader"] == leader, behind
    assert voters[dead][1] < voters[leader][1] and voters[dead][2] <= killed_at + 500, behind
    assert voters[dead][3] <= killed_at + 500, behind
    assert recent(voters[alive][2], 1.5) and recent(voters[alive][3], 1.5), behind
    assert voters[alive][1] > voters[dead][1], behind
    report = cluster.ctl_json("cluster", "quorum")
    rows = {(r["node_id"], r["role"]): r for r in report["replicas"]}
    assert sorted(rows) == sorted([(leader, "leader"), (dead, "follower"), (alive, "follower"),
                                   (1, "observer"), (2, "observer"), (3, "observer")]), report
    assert report["leader_id"] == leader and report["max_follower_lag"] >= 1, report
    assert rows[(dead, "follower")]["lag"] == report["max_follower_lag"], report
    assert rows[(dead, "follower")]["last_caught_up_ms_ago"] >= 1500, report
    assert report["max_follower_lag_ms"] == rows[(dead, "follower")]["last_caught_up_ms_ago"], report
    assert rows[(alive, "follower")]["last_fetch_ms_ago"] < 1500, report

    cluster.local("start", "controller", str(dead), timeout=120)

    def caught_up_again() -> bool:
        voters = {v[0]: v for v in quorum()["voters"]}
        return voters[dead][1] == voters[leader][1] and recent(voters[dead][3], 2)

    wait_until(caught_up_again, 60, f"controller {dead} to be caught up again")
