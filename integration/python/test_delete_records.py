"""DeleteRecords (Kafka API key 21): a partition's records below an offset are deleted on every replica,
through confluent-kafka's `AdminClient.delete_records`, the Java Admin client's `deleteRecords`
(`integration/java/ChronikJavaClient.java`) and `chronikctl topic trim-prefix`.

- `test_delete_records_moves_the_log_start_on_every_replica` (shared cluster, replication factor 3):
  the answer's low watermark is the offset (or the high watermark for -1); ListOffsets EARLIEST gives
  it, a consumer from the beginning starts there, one below it gets OFFSET_OUT_OF_RANGE, and every
  replica has checkpointed it (`log-start-offset-checkpoint`) by the time the answer comes.
- `test_delete_records_errors`: an offset above the high watermark (OFFSET_OUT_OF_RANGE), a compact-only
  topic (POLICY_VIOLATION), a partition the topic does not have (librdkafka fails it before asking a
  broker; sent anyway with kafka-python, UNKNOWN_TOPIC_OR_PARTITION) and a follower asked
  (NOT_LEADER_OR_FOLLOWER).
- `test_java_admin_delete_records`: the Java client, its success and OffsetOutOfRangeException.
- `test_chronikctl_trim_prefix`: selected partitions, `--offset -1`, table and JSON output, and its
  failures: an unknown topic, a partition the topic does not have, an offset above the high watermark
  (printed per partition, exit status non-zero).
- `test_trimmed_offset_survives_leader_kill_and_restart` (a cluster of its own): the leader that
  deleted is killed; the new leader's earliest offset is the trimmed one (it moved its own log start
  while following), and after the old leader is back and leads again, so is its.
"""

from __future__ import annotations

import json

import confluent_kafka as ck
import kafka as kp
import kafka.admin as kp_admin
import kafka.errors as kp_errors
import pytest
from confluent_kafka.admin import AdminClient

from chronik_cluster import ChronikCluster, ChronikctlError, run_chronikctl, wait_until
from clients import LIBRDKAFKA_BASE, Rec, ck_consume, ck_consumer, ck_produce
from test_java_client import java_classpath, run_java  # noqa: F401 - java_classpath is a fixture

pytestmark = pytest.mark.admin

RF3 = {"min.insync.replicas": "2"}
PRODUCER = {"acks": "all"}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap})


def produce(cluster: ChronikCluster, topic: str, partition: int, count: int) -> None:
    records = [Rec(value=f"{partition}:{i}".encode(), partition=partition) for i in range(count)]
    delivered = ck_produce(cluster.bootstrap_servers, topic, records, config=PRODUCER)
    assert sorted(d.offset for d in delivered) == list(range(count))


def delete_records(bootstrap: str, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], object]:
    """{(topic, partition): low watermark, or the KafkaError the future raised}."""
    client = admin(bootstrap)  # kept alive until the futures are done
    futures = client.delete_records(
        [ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()], request_timeout=30,
        operation_timeout=20)
    results: dict[tuple[str, int], object] = {}
    for tp, future in futures.items():
        try:
            results[(tp.topic, tp.partition)] = future.result(timeout=40).low_watermark
        except ck.KafkaException as error:
            results[(tp.topic, tp.partition)] = error.args[0]
    return results


def earliest(bootstrap: str, topic: str, partition: int) -> int:
    """ListOffsets EARLIEST on the leader (the low side of the watermarks)."""
    consumer = ck_consumer(bootstrap)
    try:
        low, _ = consumer.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=10)
        return low
    finally:
        consumer.close()


def log_start_checkpoint(cluster: ChronikCluster, broker: int, topic: str, partition: int) -> int | None:
    path = cluster.partition_dir(broker, topic, partition) / "log-start-offset-checkpoint"
    if not path.exists():
        return None
    version, value = path.read_text().split()
    assert version == "0", path
    return int(value)


def first_offset_from_beginning(bootstrap: str, topic: str, partition: int) -> int:
    [record] = ck_consume(bootstrap, {(topic, partition): ck.OFFSET_BEGINNING}, 1)
    return record.offset


@pytest.mark.confluent
def test_delete_records_moves_the_log_start_on_every_replica(shared_cluster, topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=2, replication_factor=3, configs=RF3)
    produce(cluster, topic_name, 0, 100)
    produce(cluster, topic_name, 1, 30)
    bootstrap = cluster.bootstrap_servers

    results = delete_records(bootstrap, {(topic_name, 0): 40, (topic_name, 1): ck.OFFSET_END})
    assert results == {(topic_name, 0): 40, (topic_name, 1): 30}, results

    assert earliest(bootstrap, topic_name, 0) == 40
    assert earliest(bootstrap, topic_name, 1) == 30
    assert first_offset_from_beginning(bootstrap, topic_name, 0) == 40
    consumed = ck_consume(bootstrap, {(topic_name, 0): ck.OFFSET_BEGINNING}, 60)
    assert [c.offset for c in consumed] == list(range(40, 100))
    assert consumed[0].value == b"0:40"
    # Below the log start: OFFSET_OUT_OF_RANGE (the suite's consumers never reset silently).
    with pytest.raises(AssertionError, match="OFFSET_OUT_OF_RANGE|Offset out of range"):
        ck_consume(bootstrap, {(topic_name, 0): 39}, 1, timeout=10)
    # The low watermark answered means every live replica moved its log start, on disk.
    replicas = cluster.describe_topic(topic_name)["partitions"]
    for p in replicas:
        starts = {b: log_start_checkpoint(cluster, b, topic_name, p["partition"]) for b in p["replicas"]}
        assert set(starts.values()) == {[40, 30][p["partition"]]}, (p, starts)
    # Never backwards: a smaller offset changes nothing and answers the current low watermark.
    assert delete_records(bootstrap, {(topic_name, 0): 10}) == {(topic_name, 0): 40}
    assert earliest(bootstrap, topic_name, 0) == 40


@pytest.mark.confluent
def test_delete_records_errors(shared_cluster, topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs=RF3)
    compacted = f"{topic_name}-compacted"
    cluster.create_topic(compacted, partitions=1, replication_factor=3,
                         configs={**RF3, "cleanup.policy": "compact"})
    produce(cluster, topic_name, 0, 10)
    records = [Rec(key=b"k", value=b"v", partition=0)]
    ck_produce(cluster.bootstrap_servers, compacted, records, config=PRODUCER)

    results = delete_records(cluster.bootstrap_servers, {(topic_name, 0): 11, (compacted, 0): 1})
    assert results[(topic_name, 0)].code() == ck.KafkaError.OFFSET_OUT_OF_RANGE, results
    assert results[(compacted, 0)].code() == ck.KafkaError.POLICY_VIOLATION, results
    assert earliest(cluster.bootstrap_servers, topic_name, 0) == 0, "nothing was deleted"

    # A partition the topic does not have: librdkafka finds no leader for it and fails it itself.
    [missing] = delete_records(cluster.bootstrap_servers, {(topic_name, 5): 1}).values()
    assert isinstance(missing, ck.KafkaError) and missing.code() == ck.KafkaError._NOENT, missing
    # Sent to a broker anyway (kafka-python's `partition_leader_id` skips the leader lookup), the
    # broker answers UNKNOWN_TOPIC_OR_PARTITION; a follower answers NOT_LEADER_OR_FOLLOWER.
    [p0] = cluster.describe_topic(topic_name)["partitions"]
    follower = next(b for b in p0["replicas"] if b != p0["leader"])
    client = kp_admin.KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=15000)
    try:
        with pytest.raises(kp_errors.UnknownTopicOrPartitionError):
            client.delete_records({kp.TopicPartition(topic_name, 5): 1}, partition_leader_id=p0["leader"])
        with pytest.raises(kp_errors.NotLeaderForPartitionError):
            client.delete_records({kp.TopicPartition(topic_name, 0): 1}, partition_leader_id=follower)
        [answer] = client.delete_records({kp.TopicPartition(topic_name, 0): 3},
                                         partition_leader_id=p0["leader"]).values()
        assert (answer["error_code"], answer["low_watermark"]) == (0, 3), answer
    finally:
        client.close()


def test_java_admin_delete_records(java_classpath, shared_cluster, topic_name):  # noqa: F811
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs=RF3)
    produce(cluster, topic_name, 0, 20)
    bootstrap = cluster.bootstrap_servers
    assert run_java(java_classpath, "delete-records", bootstrap, topic_name, "0", "7") == \
        [{"partition": 0, "low_watermark": 7}]
    assert earliest(bootstrap, topic_name, 0) == 7
    assert run_java(java_classpath, "delete-records", bootstrap, topic_name, "0", "21") == \
        [{"partition": 0, "error": "OffsetOutOfRangeException"}]
    assert run_java(java_classpath, "delete-records", bootstrap, topic_name, "0", "-1") == \
        [{"partition": 0, "low_watermark": 20}]
    assert earliest(bootstrap, topic_name, 0) == 20


def trim(cluster: ChronikCluster, *args: str) -> dict:
    return cluster.ctl_json("topic", "trim-prefix", *args, "--retry-timeout-ms", "10000")


def test_chronikctl_trim_prefix(shared_cluster, topic_name):
    cluster = shared_cluster
    cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs=RF3)
    for partition in range(3):
        produce(cluster, topic_name, partition, 20 + partition)
    bootstrap = cluster.bootstrap_servers

    report = trim(cluster, topic_name, "--offset", "5", "--partitions", "0,2")
    assert report == {"topic": topic_name, "offset": 5, "partitions": [
        {"partition": 0, "low_watermark": 5, "error": None},
        {"partition": 2, "low_watermark": 5, "error": None}]}, report
    assert [earliest(bootstrap, topic_name, p) for p in range(3)] == [5, 0, 5]

    table = cluster.ctl("topic", "trim-prefix", topic_name, "--offset=-1").stdout
    assert f"Deleted the records of topic '{topic_name}' below each partition's high watermark." in table
    rows = [line.split() for line in table.splitlines()[2:]]
    assert rows[0] == ["PARTITION", "LOW", "WATERMARK", "ERROR"]
    assert rows[1:] == [["0", "20"], ["1", "21"], ["2", "22"]], table
    assert [earliest(bootstrap, topic_name, p) for p in range(3)] == [20, 21, 22]

    # Above the high watermark: that partition's error, the others done, exit status non-zero.
    with pytest.raises(ChronikctlError) as failed:
        trim(cluster, topic_name, "--offset", "22")
    assert failed.value.returncode != 0
    report = json.loads(failed.value.stdout)
    assert report["partitions"] == [
        {"partition": 0, "low_watermark": None, "error": "OFFSET_OUT_OF_RANGE"},
        {"partition": 1, "low_watermark": None, "error": "OFFSET_OUT_OF_RANGE"},
        {"partition": 2, "low_watermark": 22, "error": None}], report
    assert "the records of 2 of 3 partition(s)" in failed.value.stderr

    with pytest.raises(ChronikctlError) as failed:
        trim(cluster, topic_name, "--offset", "1", "--partitions", "0,7")
    assert f"topic '{topic_name}' has no partition 7" in failed.value.stderr
    with pytest.raises(ChronikctlError) as failed:
        trim(cluster, f"{topic_name}-missing", "--offset", "1")
    assert "does not exist" in failed.value.stderr, failed.value.stderr
    with pytest.raises(ChronikctlError):
        run_chronikctl(["--controllers", cluster.controllers, "topic", "trim-prefix", topic_name,
                        "--offset", "-2"], timeout=30)


@pytest.mark.fault
@pytest.mark.confluent
@pytest.mark.timeout(180)
def test_trimmed_offset_survives_leader_kill_and_restart(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=[
        "--default-replication-factor=3", "--default-min-insync-replicas=2"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs=RF3)
    produce(cluster, topic_name, 0, 50)
    bootstrap = cluster.bootstrap_servers
    assert delete_records(bootstrap, {(topic_name, 0): 30}) == {(topic_name, 0): 30}

    old_leader = cluster.leaders(topic_name)[0]
    cluster.kill_broker(old_leader)
    new_leader = wait_until(lambda: (lambda l: l if l not in (-1, old_leader) else None)(
        cluster.leaders(topic_name)[0]), 30, "a new leader")
    cluster.wait_leader(topic_name, 0, new_leader)
    assert wait_until(lambda: earliest(bootstrap, topic_name, 0) == 30, 30,
                      f"the new leader {new_leader} to answer ListOffsets EARLIEST")
    assert first_offset_from_beginning(bootstrap, topic_name, 0) == 30
    produce_more = [Rec(value=b"after", partition=0)]
    [delivered] = ck_produce(bootstrap, topic_name, produce_more, config=PRODUCER)
    assert delivered.offset == 50

    # The killed leader comes back with its checkpointed start, catches up, and leads again.
    cluster.start_broker(old_leader)
    assert log_start_checkpoint(cluster, old_leader, topic_name, 0) == 30
    wait_until(lambda: old_leader in cluster.describe_topic(topic_name)["partitions"][0]["isr"], 30,
               f"broker {old_leader} back in the ISR")
    preferred = cluster.describe_topic(topic_name)["partitions"][0]["replicas"][0]
    assert preferred == old_leader, "a new topic is led by its preferred replica"
    cluster.ctl("election", "preferred", topic_name)
    cluster.wait_leader(topic_name, 0, old_leader)
    assert earliest(bootstrap, topic_name, 0) == 30
    consumed = ck_consume(bootstrap, {(topic_name, 0): ck.OFFSET_BEGINNING}, 21)
    assert [c.offset for c in consumed] == list(range(30, 51))
