"""Topic administration through the Kafka admin API (CreateTopics, DeleteTopics, Metadata,
DescribeConfigs) of confluent-kafka's AdminClient and kafka-python's KafkaAdminClient.

Proves the broker forwards these to the controller and answers like Kafka: a created topic is listed
with its partitions and led, its configs (the given ones and the defaults) are described, a deleted
topic disappears everywhere and its name can be reused for a new, empty topic with a new id; and
the error cases come back as the Kafka error codes clients map to exceptions: TOPIC_ALREADY_EXISTS
(36), INVALID_TOPIC_EXCEPTION (17), INVALID_REPLICATION_FACTOR (38), INVALID_PARTITIONS (37),
UNKNOWN_TOPIC_OR_PARTITION (3).
"""

from __future__ import annotations

import confluent_kafka as ck
import kafka.errors as kp_errors
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

from chronik_cluster import wait_until
from clients import LIBRDKAFKA_BASE, Rec, ck_consumer, ck_produce, kp_consume, kp_produce

pytestmark = pytest.mark.admin

RETENTION_MS = "3600000"
INVALID_NAMES = ["has space", "x" * 250, "..", "slash/name"]


# ----- confluent-kafka AdminClient -----

@pytest.fixture
def ck_admin(shared_cluster):
    return AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": shared_cluster.bootstrap_servers})


def ck_create(admin: AdminClient, topic: NewTopic) -> None:
    admin.create_topics([topic], operation_timeout=15, request_timeout=30)[topic.topic].result(timeout=45)


def ck_error_code(call) -> int:
    with pytest.raises(ck.KafkaException) as raised:
        call()
    return raised.value.args[0].code()


@pytest.mark.confluent
def test_confluent_admin_topic_lifecycle(ck_admin, shared_cluster, topic_name):
    ck_create(ck_admin, NewTopic(topic_name, num_partitions=3, replication_factor=1,
                                 config={"retention.ms": RETENTION_MS}))

    def listed():
        meta = ck_admin.list_topics(topic=topic_name, timeout=10).topics.get(topic_name)
        return meta if meta and meta.error is None and len(meta.partitions) == 3 and all(
            p.leader >= 0 for p in meta.partitions.values()) else None

    wait_until(listed, 30, f"list_topics to show {topic_name} with 3 led partitions")
    assert topic_name in ck_admin.list_topics(timeout=10).topics, "missing from the all-topics listing"
    described = shared_cluster.describe_topic(topic_name)
    assert len(described["partitions"]) == 3
    assert all(len(p["replicas"]) == 1 for p in described["partitions"])
    old_id = described["topic_id"]

    resource = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = ck_admin.describe_configs([resource], request_timeout=30)[resource].result(timeout=45)
    assert configs["retention.ms"].value == RETENTION_MS
    assert not configs["retention.ms"].is_default
    assert "cleanup.policy" in configs, f"default configs are not described: {sorted(configs)}"

    ck_produce(shared_cluster.bootstrap_servers, topic_name, [Rec(value=b"before delete", partition=0)])

    ck_admin.delete_topics([topic_name], operation_timeout=15, request_timeout=30)[topic_name].result(45)
    wait_until(lambda: topic_name not in ck_admin.list_topics(timeout=10).topics, 30,
               f"{topic_name} to leave list_topics")
    assert not shared_cluster.topic_exists(topic_name), "the controller still knows the deleted topic"
    code = ck_error_code(lambda: ck_admin.delete_topics(
        [topic_name], operation_timeout=15, request_timeout=30)[topic_name].result(45))
    assert code == ck.KafkaError.UNKNOWN_TOPIC_OR_PART

    # The name can be reused: a new topic, with a new id and none of the old data.
    ck_create(ck_admin, NewTopic(topic_name, num_partitions=1, replication_factor=1))
    shared_cluster.wait_topic_ready(topic_name, 1)
    assert shared_cluster.describe_topic(topic_name)["topic_id"] != old_id, "a recreated topic kept its id"
    consumer = ck_consumer(shared_cluster.bootstrap_servers)
    try:
        watermarks = consumer.get_watermark_offsets(ck.TopicPartition(topic_name, 0), timeout=10)
    finally:
        consumer.close()
    assert watermarks == (0, 0), f"the recreated topic has watermarks {watermarks}: old data survived"


@pytest.mark.confluent
def test_replication_factor_one_takes_default_acks_all_writes(ck_admin, shared_cluster, topic_name):
    """Issue #13: a new user's first topic, replication factor 1 on a 3-broker cluster whose
    min.insync.replicas default is 2, and a producer with librdkafka's defaults (acks=all): the
    write is acknowledged, because a topic that does not set min.insync.replicas gets at most its
    replication factor. An explicit value above the replication factor is refused, saying why."""
    ck_create(ck_admin, NewTopic(topic_name, num_partitions=1, replication_factor=1))
    shared_cluster.wait_topic_ready(topic_name, 1)
    producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": shared_cluster.bootstrap_servers,
                            "message.timeout.ms": 20000})
    outcome = []
    producer.produce(topic_name, b"first", on_delivery=lambda err, msg: outcome.append(err))
    assert producer.flush(30) == 0
    assert outcome == [None], f"the default acks=all write failed: {outcome}"

    resource = ConfigResource(ResourceType.TOPIC, topic_name)
    entries = ck_admin.describe_configs([resource])[resource].result(timeout=30)
    assert entries["min.insync.replicas"].value == "1"

    strict = NewTopic(topic_name + "-strict", num_partitions=1, replication_factor=2,
                      config={"min.insync.replicas": "3"})
    with pytest.raises(ck.KafkaException) as refused:
        ck_create(ck_admin, strict)
    error = refused.value.args[0]
    assert error.code() == ck.KafkaError.INVALID_CONFIG, error
    assert "above the replication factor" in error.str(), error
    assert not shared_cluster.topic_exists(strict.topic)


@pytest.mark.confluent
def test_kafka_streams_internal_topic_configs_are_accepted_and_reported(ck_admin, shared_cluster, topic_name):
    """Issue #13: topic configs Kafka 4.x knows but Chronik does not act on (as Kafka Streams and
    tools set them) are stored and reported, not refused; bad values are refused as Kafka refuses
    them."""
    changelog = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                 "max.compaction.lag.ms": "86400000", "message.timestamp.type": "CreateTime",
                 "segment.jitter.ms": "1000", "preallocate": "false", "min.cleanable.dirty.ratio": "0.3"}
    ck_create(ck_admin, NewTopic(topic_name, num_partitions=2, replication_factor=1, config=changelog))
    shared_cluster.wait_topic_ready(topic_name, 2)
    resource = ConfigResource(ResourceType.TOPIC, topic_name)
    entries = ck_admin.describe_configs([resource])[resource].result(timeout=30)
    for key, value in changelog.items():
        assert entries[key].value == value, key
    assert entries["message.timestamp.before.max.ms"].value == "9223372036854775807"

    bad = NewTopic(topic_name + "-bad", num_partitions=1, replication_factor=1,
                   config={"min.cleanable.dirty.ratio": "1.5"})
    assert ck_error_code(lambda: ck_create(ck_admin, bad)) == ck.KafkaError.INVALID_CONFIG


@pytest.mark.confluent
def test_manual_replica_assignment_places_every_partition_as_given(ck_admin, shared_cluster, topic_name):
    """Issue #13: CreateTopics with `replica_assignment` (kafka-topics --replica-assignment,
    librdkafka's admin tests) places each partition on the brokers named, the first leading;
    an assignment naming an unknown broker is refused with INVALID_REPLICA_ASSIGNMENT."""
    brokers = sorted(node["id"] for node in shared_cluster.brokers)[:3]
    a, b, c = brokers
    assignment = [[b, c], [c, a], [a, b]]
    ck_create(ck_admin, NewTopic(topic_name, num_partitions=len(assignment), replica_assignment=assignment))
    shared_cluster.wait_topic_ready(topic_name, 3)
    described = shared_cluster.describe_topic(topic_name)
    assert [p["replicas"] for p in described["partitions"]] == assignment
    assert [p["leader"] for p in described["partitions"]] == [r[0] for r in assignment]
    delivered = ck_produce(shared_cluster.bootstrap_servers, topic_name,
                           [Rec(value=b"placed", partition=p) for p in range(3)])
    assert len(delivered) == 3

    unknown = NewTopic(topic_name + "-unknown", num_partitions=1, replica_assignment=[[a, 999]])
    assert ck_error_code(lambda: ck_create(ck_admin, unknown)) == ck.KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert not shared_cluster.topic_exists(unknown.topic)


@pytest.mark.confluent
def test_confluent_admin_errors(ck_admin, shared_cluster, topic_name):
    ck_create(ck_admin, NewTopic(topic_name, num_partitions=1, replication_factor=1))

    assert ck_error_code(lambda: ck_create(ck_admin, NewTopic(topic_name, 1, 1))) \
        == ck.KafkaError.TOPIC_ALREADY_EXISTS
    for name in INVALID_NAMES:
        assert ck_error_code(lambda: ck_create(ck_admin, NewTopic(name, 1, 1))) \
            == ck.KafkaError.TOPIC_EXCEPTION, f"topic name {name!r}"
    too_many = f"{topic_name}-rf"
    assert ck_error_code(lambda: ck_create(ck_admin, NewTopic(too_many, 1, len(shared_cluster.brokers) + 1))) \
        == ck.KafkaError.INVALID_REPLICATION_FACTOR
    assert not shared_cluster.topic_exists(too_many), "a refused topic was created anyway"
    assert shared_cluster.describe_topic(topic_name)["partitions"][0]["leader"] >= 0, \
        "the failed re-create disturbed the existing topic"


# ----- kafka-python KafkaAdminClient -----

@pytest.fixture
def kp_admin(shared_cluster):
    admin = KafkaAdminClient(bootstrap_servers=shared_cluster.bootstrap_servers, request_timeout_ms=30000)
    yield admin
    admin.close()


def kp_create(admin: KafkaAdminClient, name: str, partitions: int, replication_factor: int,
              configs: dict | None = None) -> None:
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": replication_factor,
                                "configs": configs or {}}}, timeout_ms=15000)


@pytest.mark.kafka_python
def test_kafka_python_admin_topic_lifecycle(kp_admin, shared_cluster, topic_name):
    kp_create(kp_admin, topic_name, 3, 1, {"retention.ms": RETENTION_MS})

    wait_until(lambda: topic_name in kp_admin.list_topics(), 30, f"list_topics to show {topic_name}")
    [described] = kp_admin.describe_topics([topic_name])
    assert described["error_code"] == 0 and len(described["partitions"]) == 3, described
    assert len(shared_cluster.describe_topic(topic_name)["partitions"]) == 3

    resource = KpConfigResource(ConfigResourceType.TOPIC, topic_name)
    configs = kp_admin.describe_configs([resource], config_filter="all")["topic"][topic_name]
    assert configs["retention.ms"]["value"] == RETENTION_MS, configs["retention.ms"]
    assert "cleanup.policy" in configs, f"default configs are not described: {sorted(configs)}"
    modified = kp_admin.describe_configs([resource])["topic"][topic_name]
    assert "retention.ms" in modified and "cleanup.policy" not in modified, \
        f"config sources wrong: the modified-only view is {sorted(modified)}"

    delivered = kp_produce(shared_cluster.bootstrap_servers, topic_name, [Rec(value=b"v", partition=2)])
    assert kp_consume(shared_cluster.bootstrap_servers, {(topic_name, 2): 0}, 1)[0].value == b"v"
    assert delivered[0].offset == 0

    kp_admin.delete_topics([topic_name], timeout_ms=15000)
    wait_until(lambda: topic_name not in kp_admin.list_topics(), 30, f"{topic_name} to leave list_topics")
    assert not shared_cluster.topic_exists(topic_name)
    with pytest.raises(kp_errors.UnknownTopicOrPartitionError):
        kp_admin.delete_topics([topic_name], timeout_ms=15000)


@pytest.mark.kafka_python
def test_kafka_python_admin_errors(kp_admin, shared_cluster, topic_name):
    kp_create(kp_admin, topic_name, 1, 1)

    with pytest.raises(kp_errors.TopicAlreadyExistsError):
        kp_create(kp_admin, topic_name, 1, 1)
    for name in INVALID_NAMES:
        with pytest.raises(kp_errors.InvalidTopicError):
            kp_create(kp_admin, name, 1, 1)
    with pytest.raises(kp_errors.InvalidReplicationFactorError):
        kp_create(kp_admin, f"{topic_name}-rf", 1, len(shared_cluster.brokers) + 1)
    with pytest.raises(kp_errors.InvalidPartitionsError):
        kp_create(kp_admin, f"{topic_name}-p0", 0, 1)
    assert not shared_cluster.topic_exists(f"{topic_name}-rf")
    assert not shared_cluster.topic_exists(f"{topic_name}-p0")
