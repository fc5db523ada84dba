"""Automatic topic creation, on (the shared cluster, as Kafka's default) and off
(`--auto-create-topics=false`).

On: a producer of either client writing to a topic nobody created gets it created with the cluster
defaults (the suite's clusters default to 3 partitions, replication factor 1) and the data reads back;
a Metadata request that does not allow auto-creation does not create anything. Off: producing to an
unknown topic fails with UNKNOWN_TOPIC_OR_PARTITION in the client and no topic appears, while known
topics keep working.
"""

from __future__ import annotations

import confluent_kafka as ck
import kafka.errors as kp_errors
import pytest

from chronik_cluster import DEFAULT_NUM_PARTITIONS
from clients import (Rec, assert_same_records, ck_consume, ck_producer, ck_produce, kp_consume,
                     kp_producer, kp_produce, payload)

CLIENTS = [
    pytest.param("confluent", marks=pytest.mark.confluent),
    pytest.param("kafka-python", marks=pytest.mark.kafka_python),
]


@pytest.mark.parametrize("client", CLIENTS)
def test_producing_to_an_unknown_topic_creates_it(shared_cluster, topic_name, client):
    assert not shared_cluster.topic_exists(topic_name)
    records = [Rec(value=payload(i), key=f"k{i}".encode()) for i in range(60)]
    bootstrap = shared_cluster.bootstrap_servers

    if client == "confluent":
        delivered = ck_produce(bootstrap, topic_name, records)
    else:
        delivered = kp_produce(bootstrap, topic_name, records)

    described = shared_cluster.describe_topic(topic_name)
    assert len(described["partitions"]) == DEFAULT_NUM_PARTITIONS, \
        f"auto-created with {len(described['partitions'])} partitions, the cluster default is " \
        f"{DEFAULT_NUM_PARTITIONS}"
    assert all(len(p["replicas"]) == 1 for p in described["partitions"]), described
    start = {(topic_name, p): 0 for p in range(DEFAULT_NUM_PARTITIONS)}
    if client == "confluent":
        consumed = ck_consume(bootstrap, start, len(records), quiet_after=0.5)
    else:
        consumed = kp_consume(bootstrap, start, len(records), quiet_after=0.5)
    assert_same_records(delivered, consumed)


def test_metadata_that_disallows_auto_creation_creates_nothing(shared_cluster, topic_name):
    meta = shared_cluster.broker_metadata(shared_cluster.brokers[0]["id"], [topic_name])
    assert topic_name in meta.topics, "Metadata left out a topic it was asked about"
    assert meta.topics[topic_name].error_code == 3, "expected UNKNOWN_TOPIC_OR_PARTITION (3)"
    assert not shared_cluster.topic_exists(topic_name), \
        "Metadata v4 with AllowAutoTopicCreation=false created the topic"


# ----- auto-creation off -----

@pytest.fixture(scope="module")
def no_auto_create_cluster(module_cluster_factory):
    return module_cluster_factory(controllers=1, brokers=1, broker_args=["--auto-create-topics=false"])


@pytest.mark.confluent
def test_confluent_unknown_topic_errors_when_auto_create_is_off(no_auto_create_cluster, topic_name):
    cluster = no_auto_create_cluster
    producer = ck_producer(cluster.bootstrap_servers, {
        "topic.metadata.propagation.max.ms": 2000, "message.timeout.ms": 10000})
    errors = []
    try:
        producer.produce(topic_name, value=b"nobody created me",
                         on_delivery=lambda err, msg: errors.append(err))
        assert producer.flush(30) == 0
    except ck.KafkaException as raised:  # librdkafka may already know the topic does not exist
        errors.append(raised.args[0])
    assert len(errors) == 1 and errors[0] is not None, "the record to an unknown topic was delivered"
    assert errors[0].code() in (ck.KafkaError.UNKNOWN_TOPIC_OR_PART, ck.KafkaError._UNKNOWN_TOPIC), errors[0]
    assert not cluster.topic_exists(topic_name), "the topic was created although auto-creation is off"
    answer = cluster.broker_metadata(1, [topic_name]).topics.get(topic_name)
    assert answer is not None and answer.error_code == 3, f"Metadata answered {answer}"
    _known_topics_still_work(cluster, f"{topic_name}-known")


@pytest.mark.kafka_python
def test_kafka_python_unknown_topic_errors_when_auto_create_is_off(no_auto_create_cluster, topic_name):
    cluster = no_auto_create_cluster
    producer = kp_producer(cluster.bootstrap_servers, max_block_ms=5000)
    try:
        with pytest.raises((kp_errors.KafkaTimeoutError, kp_errors.UnknownTopicOrPartitionError)):
            producer.send(topic_name, value=b"nobody created me").get(timeout=30)
    finally:
        producer.close(timeout=10)
    assert not cluster.topic_exists(topic_name), "the topic was created although auto-creation is off"
    _known_topics_still_work(cluster, f"{topic_name}-known")


def _known_topics_still_work(cluster, topic: str) -> None:
    cluster.create_topic(topic, partitions=1)
    delivered = ck_produce(cluster.bootstrap_servers, topic, [Rec(value=b"known")])
    assert delivered[0].offset == 0
