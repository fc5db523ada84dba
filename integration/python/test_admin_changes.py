"""Issue #13: the Kafka admin APIs that change a cluster, through confluent-kafka's AdminClient and
kafka-python's KafkaAdminClient against real processes: CreatePartitions, IncrementalAlterConfigs and
AlterConfigs (topics, the cluster-wide broker defaults and one broker's `cordoned.log.dirs`),
UnregisterBroker (the Java Admin's) and ElectLeaders (preferred and unclean).

Each change is checked by what it does, not only by its answer: new partitions take writes and are
read back, a cluster-wide default changes what a topic does (a record above the new
`message.max.bytes` is refused), a preferred election hands leadership back, an unclean one gives a
leaderless partition a leader. The error cases come back as the Kafka codes clients map to exceptions.
"""

from __future__ import annotations

from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

from chronik_cluster import ChronikctlError, wait_until
from clients import LIBRDKAFKA_BASE, Rec, ck_consume, ck_produce
from test_java_client import java_classpath, run_java  # noqa: F401 (a fixture)

pytestmark = pytest.mark.admin

# A controller that never moves leaders back on its own, so only ElectLeaders does.
NO_AUTO_REBALANCE = ["--leader-rebalance-interval-ms=3600000"]


def admin_for(cluster) -> AdminClient:
    return AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": cluster.bootstrap_servers})


def error_of(future, timeout: float = 45) -> ck.KafkaError:
    with pytest.raises(ck.KafkaException) as raised:
        future.result(timeout=timeout)
    return raised.value.args[0]


def describe(admin: AdminClient, resource: ConfigResource) -> dict:
    return admin.describe_configs([resource], request_timeout=30)[resource].result(timeout=45)


# ----- CreatePartitions -----

@pytest.mark.confluent
def test_create_partitions_adds_partitions_that_take_writes(shared_cluster, topic_name):
    admin = admin_for(shared_cluster)
    shared_cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    grown = NewPartitions(topic_name, 5)
    admin.create_partitions([grown], operation_timeout=15, request_timeout=30)[topic_name].result(timeout=45)
    shared_cluster.wait_topic_ready(topic_name, 5)
    assert len(shared_cluster.describe_topic(topic_name)["partitions"]) == 5

    records = [Rec(value=f"p{p}".encode(), partition=p) for p in range(5)]
    delivered = ck_produce(shared_cluster.bootstrap_servers, topic_name, records)
    assert sorted((d.partition, d.offset) for d in delivered) == [(p, 0) for p in range(5)]
    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, p): 0 for p in range(5)}, 5)
    assert sorted(c.value for c in consumed) == [r.value for r in records]

    # By hand: the new partition's replicas as given (one replica, on broker 3).
    placed = NewPartitions(topic_name, 6, replica_assignment=[[3]])
    admin.create_partitions([placed], operation_timeout=15, request_timeout=30)[topic_name].result(timeout=45)
    shared_cluster.wait_topic_ready(topic_name, 6)
    p5 = shared_cluster.describe_topic(topic_name)["partitions"][5]
    assert (p5["replicas"], p5["leader"]) == ([3], 3), p5


@pytest.mark.confluent
def test_create_partitions_refusals(shared_cluster, topic_name):
    admin = admin_for(shared_cluster)
    shared_cluster.create_topic(topic_name, partitions=3, replication_factor=1)
    cases = [
        (NewPartitions(topic_name, 3), ck.KafkaError.INVALID_PARTITIONS, "already has 3"),
        (NewPartitions(topic_name, 2), ck.KafkaError.INVALID_PARTITIONS, "would not be an increase"),
        (NewPartitions(topic_name + "-missing", 4), ck.KafkaError.UNKNOWN_TOPIC_OR_PART, ""),
        (NewPartitions(topic_name, 4, replica_assignment=[[1, 2]]), ck.KafkaError.INVALID_REPLICA_ASSIGNMENT,
         "not consistent with previous partitions"),
        (NewPartitions(topic_name, 4, replica_assignment=[[99]]), ck.KafkaError.INVALID_REPLICA_ASSIGNMENT,
         "99"),
    ]
    for request, code, words in cases:
        future = admin.create_partitions([request], request_timeout=30)[request.topic]
        error = error_of(future)
        assert error.code() == code, f"{request}: {error}"
        assert words in error.str(), f"{request}: {error}"
    validated = NewPartitions(topic_name, 8)
    admin.create_partitions([validated], validate_only=True, request_timeout=30)[topic_name].result(timeout=45)
    assert len(shared_cluster.describe_topic(topic_name)["partitions"]) == 3, "validate_only changed the topic"


# ----- IncrementalAlterConfigs / AlterConfigs on topics -----

@pytest.mark.confluent
def test_incremental_alter_configs_sets_appends_subtracts_and_deletes(shared_cluster, topic_name):
    admin = admin_for(shared_cluster)
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    resource = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([resource], request_timeout=30)[resource].result(timeout=45)
    configs = describe(admin, ConfigResource(ResourceType.TOPIC, topic_name))
    assert configs["retention.ms"].value == "120000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "delete,compact"

    resource = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
    ])
    admin.incremental_alter_configs([resource], request_timeout=30)[resource].result(timeout=45)
    configs = describe(admin, ConfigResource(ResourceType.TOPIC, topic_name))
    assert configs["retention.ms"].is_default, configs["retention.ms"]
    assert configs["cleanup.policy"].value == "compact"
    assert shared_cluster.describe_topic(topic_name)["configs"] == {"cleanup.policy": "compact"}

    for entry, code in [
        (ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
         ck.KafkaError.INVALID_CONFIG),
        (ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
         ck.KafkaError.INVALID_CONFIG),
        (ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND),
         ck.KafkaError.INVALID_CONFIG),
        (ConfigEntry("min.insync.replicas", "2", incremental_operation=AlterConfigOpType.SET),
         ck.KafkaError.INVALID_CONFIG),
    ]:
        bad = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[entry])
        error = error_of(admin.incremental_alter_configs([bad], request_timeout=30)[bad])
        assert error.code() == code, f"{entry}: {error}"
    missing = ConfigResource(ResourceType.TOPIC, topic_name + "-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    error = error_of(admin.incremental_alter_configs([missing], request_timeout=30)[missing])
    assert error.code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART, error
    assert shared_cluster.describe_topic(topic_name)["configs"] == {"cleanup.policy": "compact"}, \
        "a refused change altered the topic"


@pytest.mark.confluent
def test_legacy_alter_configs_replaces_the_whole_topic_config(shared_cluster, topic_name):
    """The legacy AlterConfigs (confluent-kafka's deprecated alter_configs): the given configs become
    the topic's whole explicit config, every other one falls back to its default."""
    admin = admin_for(shared_cluster)
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1,
                                configs={"retention.ms": "60000", "segment.ms": "600000"})
    resource = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.ms": "90000"})
    admin.alter_configs([resource], request_timeout=30)[resource].result(timeout=45)
    assert shared_cluster.describe_topic(topic_name)["configs"] == {"retention.ms": "90000"}
    bad = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.ms": "-5"})
    error = error_of(admin.alter_configs([bad], request_timeout=30)[bad])
    assert error.code() == ck.KafkaError.INVALID_CONFIG, error
    assert shared_cluster.describe_topic(topic_name)["configs"] == {"retention.ms": "90000"}


@pytest.mark.kafka_python
def test_kafka_python_alters_topic_configs_both_ways(shared_cluster, topic_name):
    """kafka-python's alter_configs: IncrementalAlterConfigs by default (ApiVersions lists it), the
    legacy AlterConfigs when asked, for which it re-sends the other dynamic configs it described."""
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1,
                                configs={"retention.ms": "60000", "segment.ms": "600000"})
    admin = KafkaAdminClient(bootstrap_servers=shared_cluster.bootstrap_servers, request_timeout_ms=30000)
    try:
        result = admin.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, topic_name,
                                                       configs={"retention.ms": "90000"})])
        assert result == {"topic": {topic_name: "OK"}}, result
        assert shared_cluster.describe_topic(topic_name)["configs"] == {
            "retention.ms": "90000", "segment.ms": "600000"}
        result = admin.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, topic_name,
                                                       configs={"segment.ms": "700000"})], incremental=False)
        assert result == {"topic": {topic_name: "OK"}}, result
        assert shared_cluster.describe_topic(topic_name)["configs"] == {
            "retention.ms": "90000", "segment.ms": "700000"}
        result = admin.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, topic_name,
                                                       configs={"retention.ms": "-5"})])
        assert "InvalidConfig" in result["topic"][topic_name], result
    finally:
        admin.close()
    assert shared_cluster.describe_topic(topic_name)["configs"]["retention.ms"] == "90000"


# ----- cluster-wide broker defaults -----

@pytest.mark.confluent
def test_cluster_wide_broker_defaults_are_dynamic_and_take_effect(cluster_factory, topic_name):
    """`chronikctl cluster config set` (IncrementalAlterConfigs on the cluster-wide default, as
    `kafka-configs --entity-type brokers --entity-default` sends it): the default is stored in the
    metadata log, described as DYNAMIC_DEFAULT_BROKER_CONFIG, and applies at once to topics that do
    not set the config themselves."""
    cluster = cluster_factory(controllers=1, brokers=1)
    admin = admin_for(cluster)
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    changed = cluster.ctl_json("cluster", "config", "set", "message.max.bytes=2000", "num.partitions=4")
    assert {c["name"]: (c["value"], c["source"]) for c in changed} == {
        "message.max.bytes": ("2000", "dynamic_default"), "num.partitions": ("4", "dynamic_default")}
    listed = {c["name"]: c for c in cluster.ctl_json("cluster", "config", "get")}
    assert listed["log.retention.ms"]["source"] == "default"
    assert listed["message.max.bytes"]["value"] == "2000"

    own = describe(admin, ConfigResource(ResourceType.BROKER, "1"))
    assert own["message.max.bytes"].value == "2000"
    assert own["message.max.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert own["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    topic = describe(admin, ConfigResource(ResourceType.TOPIC, topic_name))
    assert topic["max.message.bytes"].value == "2000"
    assert topic["max.message.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value

    def produce_one(size: int) -> ck.KafkaError | None:
        producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": cluster.bootstrap_servers,
                                "message.timeout.ms": 20000, "compression.type": "none"})
        outcome = []
        producer.produce(topic_name, b"x" * size, on_delivery=lambda err, msg: outcome.append(err))
        assert producer.flush(30) == 0
        return outcome[0]

    refused = produce_one(5000)
    assert refused is not None and refused.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE, refused
    assert produce_one(500) is None

    # A topic created without a partition count takes the new default.
    admin.create_topics([NewTopic(topic_name + "-defaulted", replication_factor=1)],
                        operation_timeout=15)[topic_name + "-defaulted"].result(timeout=45)
    assert len(cluster.describe_topic(topic_name + "-defaulted")["partitions"]) == 4

    cluster.ctl("cluster", "config", "delete", "message.max.bytes")
    assert cluster.ctl_json("cluster", "config", "get", "message.max.bytes")[0]["source"] == "default"
    assert produce_one(5000) is None

    # Topic names are not broker-level names.
    with pytest.raises(ChronikctlError) as refused_name:
        cluster.ctl("cluster", "config", "set", "retention.ms=1")
    assert "not a cluster-wide default" in refused_name.value.stderr, refused_name.value
    assert "retention.ms" not in listed, "topic names are listed as cluster-wide defaults"
    with pytest.raises(ChronikctlError) as unknown_get:
        cluster.ctl("cluster", "config", "get", "no.such.default")
    assert "not a cluster-wide default" in unknown_get.value.stderr, unknown_get.value

    # One broker's own dynamic configs (BROKER "1"): Kafka's per-broker settings are stored and
    # described as DYNAMIC_BROKER_CONFIG, passwords never shown; log defaults stay cluster-wide.
    per_broker = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    error = error_of(admin.incremental_alter_configs([per_broker], request_timeout=30)[per_broker])
    assert error.code() == ck.KafkaError.INVALID_CONFIG, error
    assert "cluster-wide default" in error.str(), error
    own_settings = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("num.io.threads", "4", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("ssl.keystore.password", "s3cret", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([own_settings], request_timeout=30)[own_settings].result(timeout=45)
    own = describe(admin, ConfigResource(ResourceType.BROKER, "1"))
    assert own["num.io.threads"].value == "4"
    assert own["num.io.threads"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert own["ssl.keystore.password"].is_sensitive
    assert own["ssl.keystore.password"].value is None
    assert own["ssl.keystore.password"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    unknown = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)])
    error = error_of(admin.incremental_alter_configs([unknown], request_timeout=30)[unknown])
    assert error.code() == ck.KafkaError.INVALID_CONFIG, error


# ----- Cordoned brokers (KIP-1066) -----

def replicas_of(cluster, topic: str) -> list[list[int]]:
    return [p["replicas"] for p in cluster.describe_topic(topic)["partitions"]]


def cordoned(cluster) -> dict[int, bool]:
    return {b["broker_id"]: b["cordoned"] for b in cluster.ctl_json("broker", "list")}


@pytest.mark.confluent
def test_a_cordoned_broker_gets_no_new_replicas(cluster_factory, topic_name):
    """`cordoned.log.dirs` on one broker, set as `kafka-configs --entity-type brokers` sets it (a
    BROKER resource the client sends to that broker): new topics and partitions place no replica on
    it, its existing replicas stay, a directory it does not have is refused, and `chronikctl broker
    uncordon` makes it placeable again."""
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=NO_AUTO_REBALANCE)
    admin = admin_for(cluster)
    before = topic_name + "-before"
    cluster.create_topic(before, partitions=6, replication_factor=2)
    hosted = replicas_of(cluster, before)
    assert any(2 in r for r in hosted), hosted

    def cordon(value: str):
        resource = ConfigResource(ResourceType.BROKER, "2", incremental_configs=[
            ConfigEntry("cordoned.log.dirs", value, incremental_operation=AlterConfigOpType.SET)])
        return admin.incremental_alter_configs([resource], request_timeout=30)[resource]

    error = error_of(cordon("/no/such/dir"))
    assert error.code() == ck.KafkaError.INVALID_CONFIG, error
    assert "not a log directory of broker 2" in error.str(), error
    assert cordoned(cluster) == {1: False, 2: False, 3: False}
    data_dir = str(Path(cluster.broker(2)["data_dir"]).absolute())
    cordon(data_dir).result(timeout=45)
    own = describe(admin, ConfigResource(ResourceType.BROKER, "2"))
    assert own["cordoned.log.dirs"].value == data_dir
    assert own["cordoned.log.dirs"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert cordoned(cluster) == {1: False, 2: True, 3: False}
    assert replicas_of(cluster, before) == hosted, "a cordon moved existing replicas"

    placed = NewTopic(topic_name, num_partitions=8, replication_factor=2)
    admin.create_topics([placed], operation_timeout=15, request_timeout=30)[topic_name].result(timeout=45)
    cluster.wait_topic_ready(topic_name, 8)
    assert all(2 not in r and len(r) == 2 for r in replicas_of(cluster, topic_name)), \
        replicas_of(cluster, topic_name)
    grown = NewPartitions(before, 10)
    admin.create_partitions([grown], operation_timeout=15, request_timeout=30)[before].result(timeout=45)
    cluster.wait_topic_ready(before, 10)
    assert all(2 not in r for r in replicas_of(cluster, before)[6:]), replicas_of(cluster, before)
    wide = NewTopic(topic_name + "-wide", num_partitions=1, replication_factor=3)
    error = error_of(admin.create_topics([wide], operation_timeout=15,
                                         request_timeout=30)[topic_name + "-wide"])
    assert error.code() == ck.KafkaError.INVALID_REPLICATION_FACTOR, error
    assert "cordoned broker(s) 2 take" in error.str(), error
    delivered = ck_produce(cluster.bootstrap_servers, topic_name,
                           [Rec(value=f"p{p}".encode(), partition=p) for p in range(8)])
    assert sorted(d.partition for d in delivered) == list(range(8))
    # The internal topics are first created now, with one broker of three cordoned: they take the
    # two placeable brokers rather than being refused (a transactional producer and a group's
    # offset commit would otherwise wait for a coordinator that never comes).
    producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": cluster.bootstrap_servers,
                            "transactional.id": f"{topic_name}-txn"})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic_name, b"in a transaction", partition=0)
    producer.commit_transaction(60)
    consumer = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": cluster.bootstrap_servers,
                            "group.id": f"{topic_name}-group", "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    for internal in ("__transaction_state", "__consumer_offsets"):
        assert all(r and 2 not in r for r in replicas_of(cluster, internal)), (internal, replicas_of(cluster, internal))

    listed = {b["broker_id"]: b for b in cluster.ctl_json("broker", "uncordon", "2")}
    assert not listed[2]["cordoned"], listed
    # Broker 2 answers DescribeConfigs from its own copy of the metadata, which follows the
    # controller's.
    wait_until(lambda: describe(admin, ConfigResource(ResourceType.BROKER, "2"))["cordoned.log.dirs"].source
               != ConfigSource.DYNAMIC_BROKER_CONFIG.value, 30, "broker 2 to see the cordon cleared")
    admin.create_topics([wide], operation_timeout=15, request_timeout=30)[topic_name + "-wide"].result(timeout=45)
    with pytest.raises(ChronikctlError) as unknown:
        cluster.ctl("broker", "cordon", "9")
    assert "not registered" in unknown.value.stderr, unknown.value


@pytest.mark.timeout(240)
def test_java_admin_cordons_a_broker(java_classpath, cluster_factory, topic_name):
    """The Java Admin client, as `kafka-configs --entity-type brokers --entity-name 3 --add-config
    cordoned.log.dirs=*` drives it (and as Kafka's CordonedLogDirsIntegrationTest checks KIP-1066):
    with one broker of three cordoned a topic of three replicas is refused with
    InvalidReplicationFactorException; once the cordon is deleted the same topic is created."""
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=NO_AUTO_REBALANCE)
    events = run_java(java_classpath, "cordon", cluster.bootstrap_servers, topic_name, "3", "3")
    calls = {e["call"]: e["error"] for e in events if "call" in e}
    assert calls == {
        "cordon": None,
        "createTopics-cordoned": "InvalidReplicationFactorException",
        "uncordon": None,
        "createTopics": None,
    }, events
    assert [e["cordoned"] for e in events if "cordoned" in e] == ["*", ""], events
    assert sorted(cluster.describe_topic(topic_name)["partitions"][0]["replicas"]) == [1, 2, 3]


# ----- UnregisterBroker -----

def broker_ids(cluster) -> list[int]:
    return [b["broker_id"] for b in cluster.ctl_json("broker", "list")]


@pytest.mark.timeout(300)
def test_a_stopped_broker_is_unregistered_and_may_come_back(java_classpath, cluster_factory, topic_name):
    """UnregisterBroker (KIP-631) from the Java Admin, as `kafka-cluster.sh unregister --id 3` sends it:
    an id that is not registered is refused with BrokerIdNotRegisteredException and a broker that is
    still alive with InvalidRequestException. Stopped, broker 3 is listed as fenced by a
    describeCluster that includes fenced brokers, and is unregistered: describeCluster
    and `chronikctl broker list` leave it out, it is in no ISR (its replicas stay assigned) and leads
    nothing, and acks=all writes go on with the two left. Started again it registers anew and rejoins
    every ISR. `chronikctl broker unregister` refuses it alive, and unregisters it after a kill -9
    once its session has ended."""
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=NO_AUTO_REBALANCE)
    cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    bootstrap = cluster.bootstrap_servers
    first = [Rec(value=f"before-{p}".encode(), partition=p) for p in range(3)]
    ck_produce(bootstrap, topic_name, first)

    refused = run_java(java_classpath, "unregister", bootstrap, "9,3")
    assert [(e["unregister"], e["error"]) for e in refused[:2]] == \
        [(9, "BrokerIdNotRegisteredException"), (3, "InvalidRequestException")], refused
    assert "Broker ID 9 is not currently registered" in refused[0]["message"], refused
    assert "stop it before unregistering it" in refused[1]["message"], refused
    assert refused[2] == {"nodes": [1, 2, 3], "fenced": []}, refused

    # Stopped, it is fenced: listed only when fenced brokers are asked for (KIP-1073, as
    # `kafka-cluster.sh list-endpoints --include-fenced-brokers` finds a broker that is gone).
    cluster.stop_broker(3)
    wait_until(lambda: run_java(java_classpath, "unregister", bootstrap, "-") ==
               [{"nodes": [1, 2, 3], "fenced": [3]}], 30, "broker 3 to be listed as fenced")
    done = run_java(java_classpath, "unregister", bootstrap, "3")
    assert done == [{"unregister": 3, "error": None, "message": None}, {"nodes": [1, 2], "fenced": []}], done
    assert broker_ids(cluster) == [1, 2]
    for p in cluster.describe_topic(topic_name)["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3] and sorted(p["isr"]) == [1, 2], p
        assert p["leader"] in (1, 2), p
    second = [Rec(value=f"after-{p}".encode(), partition=p) for p in range(3)]
    delivered = ck_produce(bootstrap, topic_name, second)
    assert sorted((d.partition, d.offset) for d in delivered) == [(p, 1) for p in range(3)]

    # The same id registers again (a new epoch) and catches up into every ISR.
    cluster.start_broker(3)
    wait_until(lambda: all(sorted(p["isr"]) == [1, 2, 3] for p in cluster.describe_topic(topic_name)["partitions"]),
               60, "broker 3 to rejoin every ISR")
    assert broker_ids(cluster) == [1, 2, 3]
    with pytest.raises(ChronikctlError) as alive:
        cluster.ctl("broker", "unregister", "3")
    assert "broker 3 is alive" in alive.value.stderr, alive.value

    # Killed: refused until its session has ended (its session stream closed, then a short grace).
    cluster.kill_broker(3)

    def unregistered() -> bool:
        try:
            cluster.ctl("broker", "unregister", "3")
        except ChronikctlError as error:
            assert "broker 3 is alive" in error.stderr, error
            return False
        return True

    wait_until(unregistered, 30, "chronikctl to unregister the killed broker 3")
    assert broker_ids(cluster) == [1, 2]
    with pytest.raises(ChronikctlError) as unknown:
        cluster.ctl("broker", "unregister", "3")
    assert "Broker ID 3 is not currently registered" in unknown.value.stderr, unknown.value
    consumed = ck_consume(bootstrap, {(topic_name, p): 0 for p in range(3)}, 6)
    assert sorted(c.value for c in consumed) == sorted(r.value for r in first + second)


# ----- ElectLeaders -----

def partition_state(cluster, topic: str) -> dict:
    return cluster.describe_topic(topic)["partitions"][0]


@pytest.mark.confluent
def test_preferred_election_hands_leadership_back(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=3, controller_args=[
        "--default-replication-factor=3", "--default-min-insync-replicas=2", *NO_AUTO_REBALANCE])
    admin = admin_for(cluster)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3)
    preferred = partition_state(cluster, topic_name)["replicas"][0]
    cluster.stop_broker(preferred)
    moved = wait_until(lambda: (p := partition_state(cluster, topic_name))["leader"] not in (-1, preferred)
                       and p["leader"], 30, "leadership to move off the stopped broker")
    cluster.start_broker(preferred)
    wait_until(lambda: preferred in partition_state(cluster, topic_name)["isr"], 60,
               f"broker {preferred} back in the ISR")
    assert partition_state(cluster, topic_name)["leader"] == moved, "leadership moved back by itself"

    tp = TopicPartition(topic_name, 0)
    outcome = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=45)
    assert [(k.topic, k.partition) for k in outcome] == [(topic_name, 0)]
    assert outcome[tp] is None, outcome
    assert partition_state(cluster, topic_name)["leader"] == preferred
    cluster.wait_leader(topic_name, 0, preferred)
    delivered = ck_produce(cluster.bootstrap_servers, topic_name, [Rec(value=b"after election")],
                           config={"enable.idempotence": True})
    assert delivered[0].offset >= 0

    again = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=45)
    assert again[tp] is not None and again[tp].code() == ck.KafkaError.ELECTION_NOT_NEEDED, again
    missing = TopicPartition(topic_name, 7)
    unknown = admin.elect_leaders(ElectionType.PREFERRED, [missing]).result(timeout=45)
    assert unknown[missing].code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART, unknown


@pytest.mark.confluent
def test_unclean_election_gives_a_leaderless_partition_a_live_replica(cluster_factory, topic_name):
    """Both replicas of a partition stop, the one outside the ISR comes back first: without
    unclean.leader.election.enable the partition stays leaderless until an operator asks for an
    UNCLEAN election, which makes that replica the leader."""
    cluster = cluster_factory(controllers=1, brokers=2, controller_args=[
        "--default-replication-factor=2", "--default-min-insync-replicas=1", *NO_AUTO_REBALANCE])
    admin = admin_for(cluster)
    cluster.create_topic(topic_name, partitions=1, replication_factor=2)
    replicas = partition_state(cluster, topic_name)["replicas"]
    leader, follower = replicas[0], replicas[1]
    cluster.stop_broker(follower)
    wait_until(lambda: partition_state(cluster, topic_name)["isr"] == [leader], 30,
               f"the ISR to shrink to [{leader}]")
    cluster.stop_broker(leader)
    wait_until(lambda: partition_state(cluster, topic_name)["leader"] == -1, 30, "the partition to lose its leader")
    cluster.start_broker(follower)

    tp = TopicPartition(topic_name, 0)
    preferred = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=45)
    assert preferred[tp] is not None and preferred[tp].code() == ck.KafkaError.PREFERRED_LEADER_NOT_AVAILABLE, \
        preferred
    assert partition_state(cluster, topic_name)["leader"] == -1, "elected without being asked to"

    unclean = admin.elect_leaders(ElectionType.UNCLEAN, [tp]).result(timeout=45)
    assert unclean[tp] is None, unclean
    state = partition_state(cluster, topic_name)
    assert (state["leader"], state["isr"]) == (follower, [follower]), state
    cluster.wait_leader(topic_name, 0, follower)
    ck_produce(cluster.bootstrap_servers, topic_name, [Rec(value=b"after unclean election")])
    again = admin.elect_leaders(ElectionType.UNCLEAN, [tp]).result(timeout=45)
    assert again[tp].code() == ck.KafkaError.ELECTION_NOT_NEEDED, again


# ----- the Java Admin client -----

@pytest.mark.admin
def test_java_admin_changes(java_classpath, shared_cluster, topic_name):
    """The Java Admin client: createPartitions, incrementalAlterConfigs on a topic and on the
    cluster-wide default (`ConfigResource(BROKER, "")`, which only it can address among our clients),
    describeConfigs of both, and electLeaders."""
    shared_cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    events = run_java(java_classpath, "admin-changes", shared_cluster.bootstrap_servers, topic_name)
    calls = {e["call"]: e["error"] for e in events if "call" in e}
    assert calls == {
        "createPartitions": None,
        "createPartitions-again": "InvalidPartitionsException",
        "incrementalAlterConfigs": None,
        "incrementalAlterConfigs-bad": "InvalidConfigurationException",
        "deleteClusterDefault": None,
    }, events
    assert {"partitions": 4} in events
    described = {(e["resource"], e["name"]): (e["value"], e["source"]) for e in events if "resource" in e}
    assert described[("TOPIC", "retention.ms")] == ("7200000", "DYNAMIC_TOPIC_CONFIG"), described
    assert described[("BROKER", "log.retention.ms")] == ("3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG"), described
    assert {"election": "ElectionNotNeededException"} in events
    assert "log.retention.ms" not in {c["name"] for c in shared_cluster.ctl_json("cluster", "config", "get")
                                      if c["source"] != "default"}

