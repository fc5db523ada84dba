"""The client side of Kafka-protocol security with real processes: `chronikctl local up --security`,
the client properties file it prints, `chronikctl -C`, `chronikctl user`, and replication between
secured brokers.

- `test_user_commands_round_trip`: `user create` (given, file and generated passwords), `user list`
  (DescribeUserScramCredentials on a broker) and `user delete` (one mechanism, then every one) on a
  plaintext cluster: the controller path needs no Kafka user.
- `test_sasl_ssl_cluster`: `local up --security sasl_ssl` with 3 brokers; confluent-kafka with exactly
  the printed properties produces and consumes an RF 3 topic, every replica joins the ISR (the brokers
  replicate as `User:broker` over SASL_SSL), a leader killed with kill -9 loses no acknowledged record;
  `chronikctl -C` produces and consumes; a user created with `chronikctl user create` logs in with
  confluent-kafka, a wrong password is refused with the broker's message, and `user delete` removes it.
- `test_sasl_plaintext_cluster_with_short_sessions`: the same over SASL_PLAINTEXT with 2 s SASL sessions
  (`--connections-max-reauth-ms`): followers renew their connections and the ISR stays whole while
  acks=all writes (min ISR 2) go on.
- `test_ssl_mutual_tls_cluster`: `local up --security ssl` (client certificates required, principals
  from them): the properties file works as it is with confluent-kafka and `chronikctl -C`, and the
  replicas of an RF 2 topic stay in sync.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from chronik_cluster import (ChronikCluster, ChronikctlError, bin_dir, down_in, log_tails_in,
                             parse_json_output, run_chronikctl, wait_until)
from clients import LIBRDKAFKA_BASE


def read_properties(path: str) -> dict[str, str]:
    """A librdkafka properties file as confluent-kafka's config dict, exactly as written."""
    properties = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if line and not line.startswith("#"):
                key, value = line.split("=", 1)
                properties[key.strip()] = value.strip()
    return properties


@pytest.fixture
def secured_cluster(tmp_path_factory, monkeypatch):
    """`start(security, brokers)`: `chronikctl local up --security ...`, which secures the control plane
    too; chronikctl then reaches the controllers with the CA and admin token it prints (set in the
    environment for the test). Every cluster is taken down."""
    started = []

    def start(security: str, brokers: int, broker_args: tuple[str, ...] = ()) -> ChronikCluster:
        directory = tmp_path_factory.mktemp(f"cluster-{security}-")
        args = ["local", "up", "--security", security, "--controllers", "1", "--brokers", str(brokers),
                "--dir", str(directory), "--output", "json"]
        args += [f"--broker-arg={arg}" for arg in broker_args]
        started.append(directory)
        try:
            doc = parse_json_output(run_chronikctl(args, 120))
        except BaseException as error:
            raise AssertionError(f"secured cluster did not come up: {error}\n"
                                 f"{log_tails_in(directory)}") from None
        cluster = ChronikCluster(directory.name, directory, doc)
        control_plane = doc["control_plane"]
        monkeypatch.setenv("CHRONIK_CONTROLLER_TLS_CA", control_plane["controller_tls_ca"])
        monkeypatch.setenv("CHRONIK_ADMIN_TOKEN_FILE", control_plane["admin_token_file"])
        wait_until(lambda: cluster.ctl_json("cluster", "status").get("cluster_id"), 30,
                   "the controller quorum to bootstrap")
        return cluster

    yield start
    for directory in started:
        down_in(directory)
    monkeypatch.undo()


def wait_in_sync(cluster: ChronikCluster, topic: str, replicas: int, timeout: float = 60.0) -> None:
    """Until every partition of `topic` has a leader and all `replicas` in its ISR (controller view)."""
    def in_sync() -> bool:
        partitions = cluster.describe_topic(topic)["partitions"]
        return all(p["leader"] >= 0 and len(p["isr"]) == replicas for p in partitions)

    wait_until(in_sync, timeout, f"every replica of {topic} in the ISR")


def produce(properties: dict, topic: str, values: list[str]) -> set[str]:
    """acks=all, idempotent; returns the values the cluster acknowledged."""
    acked: set[str] = set()

    def report(error, message):
        if error is None:
            acked.add(message.value().decode())

    producer = Producer({**LIBRDKAFKA_BASE, **properties, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 30000})
    for value in values:
        producer.produce(topic, value=value.encode(), on_delivery=report)
        producer.poll(0)
    assert producer.flush(60) == 0, "records still in flight"
    return acked


def consume_all(properties: dict, topic: str, partitions: int, expected: int,
                timeout: float = 60.0) -> set[str]:
    consumer = Consumer({**LIBRDKAFKA_BASE, **properties, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: set[str] = set()
    try:
        def enough() -> bool:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen.add(message.value().decode())
            return len(seen) >= expected
        wait_until(enough, timeout, f"{expected} records of {topic}", interval=0)
    finally:
        consumer.close()
    return seen


def test_user_commands_round_trip(cluster_factory, tmp_path):
    cluster = cluster_factory(controllers=1, brokers=1)
    password_file = tmp_path / "bob.password"
    password_file.write_text("bob-secret\n")
    created = cluster.ctl_json("user", "create", "alice", "--password", "pw-alice",
                               "--mechanism", "SCRAM-SHA-256", "--iterations", "4096")
    assert created["credentials"] == [{"user": "alice", "mechanism": "SCRAM-SHA-256",
                                       "iterations": 4096}]
    assert "generated_password" not in created
    cluster.ctl_json("user", "create", "alice", "--password-file", str(password_file))
    generated = cluster.ctl_json("user", "create", "carol")
    assert len(generated["generated_password"]) >= 24
    table = cluster.ctl("user", "create", "dave").stdout
    assert "generated password (shown only now):" in table, table

    listed = cluster.ctl_json("user", "list")["credentials"]
    assert {(c["user"], c["mechanism"]) for c in listed} == {
        ("alice", "SCRAM-SHA-256"), ("alice", "SCRAM-SHA-512"), ("carol", "SCRAM-SHA-512"),
        ("dave", "SCRAM-SHA-512")}
    assert next(c for c in listed if c["user"] == "carol")["iterations"] == 8192

    deleted = cluster.ctl_json("user", "delete", "alice", "--mechanism", "SCRAM-SHA-256")
    assert [c["mechanism"] for c in deleted["credentials"]] == ["SCRAM-SHA-256"]
    cluster.ctl_json("user", "delete", "carol")
    with pytest.raises(ChronikctlError) as refused:
        cluster.ctl("user", "delete", "carol")
    assert "carol has no SCRAM credential" in refused.value.stderr, refused.value.stderr
    listed = cluster.ctl_json("user", "list")["credentials"]
    assert {(c["user"], c["mechanism"]) for c in listed} == {
        ("alice", "SCRAM-SHA-512"), ("dave", "SCRAM-SHA-512")}
    with pytest.raises(ChronikctlError) as bad:
        cluster.ctl("user", "create", "eve", "--password", "x", "--iterations", "100")
    assert "4096..=16384" in bad.value.stderr


def test_sasl_plaintext_cluster_with_short_sessions(secured_cluster):
    # Sessions of 2 s (KIP-368): the followers replace their connections before each expires, so
    # replication never stops; the ISR stays whole through several session lifetimes.
    cluster = secured_cluster("sasl_plaintext", brokers=2,
                              broker_args=("--connections-max-reauth-ms=2000",))
    properties = read_properties(cluster.doc["client_properties"])
    assert properties["security.protocol"] == "SASL_PLAINTEXT" and "ssl.ca.location" not in properties
    topic = f"saslpt-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(topic, partitions=2, replication_factor=2,
                         configs={"min.insync.replicas": "2"}, wait=False)
    acked = produce(properties, topic, [f"p{i}" for i in range(100)])
    assert len(acked) == 100
    wait_in_sync(cluster, topic, 2)
    deadline = time.monotonic() + 7
    round_number = 0
    while time.monotonic() < deadline:
        acked |= produce(properties, topic, [f"r{round_number}-{i}" for i in range(20)])
        partitions = cluster.describe_topic(topic)["partitions"]
        assert all(len(p["isr"]) == 2 for p in partitions), partitions
        round_number += 1
    assert len(acked) == 100 + 20 * round_number
    assert consume_all(properties, topic, 2, len(acked)) >= acked


def test_sasl_ssl_cluster(secured_cluster, tmp_path):
    cluster = secured_cluster("sasl_ssl", brokers=3)
    path = cluster.doc["client_properties"]
    table = cluster.local("status").stdout
    assert f"client properties: {path}" in table, table
    properties = read_properties(path)
    assert properties["security.protocol"] == "SASL_SSL"
    assert properties["sasl.mechanism"] == "SCRAM-SHA-512"

    topic = f"secure-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(topic, partitions=3, replication_factor=3,
                         configs={"min.insync.replicas": "2"}, wait=False)
    acked = produce(properties, topic, [f"r{i}" for i in range(300)])
    assert len(acked) == 300
    wait_in_sync(cluster, topic, 3)
    assert consume_all(properties, topic, 3, 300) >= acked

    # A leader killed with kill -9: nothing acknowledged is lost, the others go on replicating.
    leader = cluster.leaders(topic)[0]
    cluster.kill_broker(leader)
    acked |= produce(properties, topic, [f"after-kill-{i}" for i in range(200)])
    cluster.start_broker(leader)
    wait_in_sync(cluster, topic, 3, timeout=90)
    assert consume_all(properties, topic, 3, len(acked)) >= acked

    # chronikctl with the same file.
    ctl = ["--controllers", cluster.controllers, "-C", path]
    done = subprocess.run([str(bin_dir() / "chronikctl"), *ctl, "topic", "produce", topic, "-p", "1"],
                          input="from-chronikctl\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    consumed = run_chronikctl([*ctl, "topic", "consume", topic, "-p", "1", "-o", "json"], 60).stdout
    assert "from-chronikctl" in {json.loads(line)["value"] for line in consumed.splitlines()}

    # A user of chronikctl's making logs in; a wrong password is refused with the broker's words.
    run_chronikctl([*ctl, "user", "create", "alice", "--password", "alice-pw"], 30)
    listed = parse_json_output(run_chronikctl([*ctl, "user", "list", "-o", "json"], 30))
    assert {"admin", "broker", "alice"} <= {c["user"] for c in listed["credentials"]}
    alice = {**properties, "sasl.username": "alice", "sasl.password": "alice-pw"}
    AdminClient({**LIBRDKAFKA_BASE, **alice}).list_topics(timeout=20)
    wrong = {**properties, "sasl.username": "alice", "sasl.password": "not-it"}
    with pytest.raises(KafkaException):
        AdminClient({**LIBRDKAFKA_BASE, **wrong}).list_topics(timeout=10)
    with pytest.raises(ChronikctlError) as refused:
        run_chronikctl([*ctl, "--sasl-username", "alice", "--sasl-password", "not-it",
                        "topic", "consume", topic, "-p", "1"], 30)
    assert "SASL authentication failed" in refused.value.stderr, refused.value.stderr
    assert "not-it" not in refused.value.stderr
    run_chronikctl([*ctl, "user", "delete", "alice"], 30)
    listed = parse_json_output(run_chronikctl([*ctl, "user", "list", "-o", "json"], 30))
    assert "alice" not in {c["user"] for c in listed["credentials"]}


def test_ssl_mutual_tls_cluster(secured_cluster):
    cluster = secured_cluster("ssl", brokers=2)
    path = cluster.doc["client_properties"]
    properties = read_properties(path)
    assert properties["security.protocol"] == "SSL" and "ssl.certificate.location" in properties
    topic = f"mtls-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(topic, partitions=2, replication_factor=2,
                         configs={"min.insync.replicas": "2"}, wait=False)
    acked = produce(properties, topic, [f"m{i}" for i in range(100)])
    assert len(acked) == 100
    wait_in_sync(cluster, topic, 2)
    assert consume_all(properties, topic, 2, 100) >= acked
    consumed = run_chronikctl(["--controllers", cluster.controllers, "-C", path, "topic", "consume",
                               topic, "-o", "json"], 60).stdout
    assert len(consumed.splitlines()) == 100
    # Without a client certificate the brokers refuse the connection.
    no_cert = {k: v for k, v in properties.items() if not k.startswith("ssl.certificate")
               and not k.startswith("ssl.key")}
    with pytest.raises(KafkaException):
        AdminClient({**LIBRDKAFKA_BASE, **no_cert}).list_topics(timeout=10)
