"""Client quotas (KIP-546 AlterClientQuotas and DescribeClientQuotas; the byte-rate quotas of KIP-13 and
KIP-55 as Kafka enforces them, with KIP-219's throttle_time_ms): set and described with the Apache Kafka
Java Admin (`ChronikJavaClient quotas`, what `kafka-configs.sh --entity-type users|clients` uses), and
enforced against confluent-kafka (librdkafka) producers and consumers, which report each throttle in
their `throttle_cb`.

The brokers run with `--quota-window-num 3` (1 s windows): a new client's rate is measured over at least
2 s, so it may send two seconds' worth at once before it is throttled (Kafka's default of 11 windows
allows ten).
"""

from __future__ import annotations

import json
import time
import urllib.request

import confluent_kafka as ck
import pytest

from chronik_cluster import ChronikctlError, parse_json_output, run_chronikctl, wait_until

from test_java_client import java_classpath, run_java  # noqa: F401 - java_classpath is a fixture
from test_security_client import read_properties, secured_cluster  # noqa: F401 - a fixture

pytestmark = [pytest.mark.admin, pytest.mark.confluent]

RATE = 200 * 1024
RECORD = b"q" * 1024
RECORDS = 2048  # 2 MiB: at 200 KiB/s after a burst of 400 KiB, about 8 s


def normalized(entries: list) -> list:
    """Described entries in a stable order (the Admin returns a map)."""
    return sorted(entries, key=lambda e: json.dumps(e[0], sort_keys=True))


def quotas(classpath: str, bootstrap: str, *ops: str) -> dict[str, dict]:
    return {line["op"]: line for line in run_java(classpath, "quotas", bootstrap, *ops)}


@pytest.mark.timeout(240)
def test_java_admin_sets_describes_and_removes_client_quotas(cluster_factory, java_classpath):
    """Kafka's entity rules, filters and errors: quotas of a user and client id, of a user, of the
    default client id; `validateOnly` stores nothing; a key Chronik does not enforce, a rate that is not
    a positive whole number and an ip entity are refused with InvalidRequestException and change
    nothing; filters match exactly, by default and by type (named or default), strictly or not; a
    removal leaves the entity's other quota and removing its last one removes the entity; every broker
    answers alike."""
    cluster = cluster_factory(controllers=1, brokers=2)
    bootstrap = cluster.bootstrap_servers
    done = quotas(
        java_classpath, bootstrap,
        "set:user=alice+client-id=app:producer_byte_rate=1024,consumer_byte_rate=2048",
        "set:user=alice:producer_byte_rate=4096",
        "set:client-id=<default>:consumer_byte_rate=8192",
        "validate:user=carol:producer_byte_rate=10",
        "set:user=bob:request_percentage=50",
        "set:user=bob:producer_byte_rate=1.5",
        "set:user=bob:producer_byte_rate=0",
        "set:ip=<default>:connection_creation_rate=10",
        "describe:all",
    )
    for op in list(done)[:4]:
        assert done[op]["error"] is None, done[op]
    for op in list(done)[4:8]:
        assert done[op]["error"] == "InvalidRequestException", done[op]
    assert "does not enforce request_percentage" in done["set:user=bob:request_percentage=50"]["message"]
    assert "positive whole number" in done["set:user=bob:producer_byte_rate=1.5"]["message"]
    assert "ip entities" in done["set:ip=<default>:connection_creation_rate=10"]["message"]
    assert normalized(done["describe:all"]["entries"]) == normalized([
        [{"client-id": None}, {"consumer_byte_rate": 8192.0}],
        [{"client-id": "app", "user": "alice"}, {"consumer_byte_rate": 2048.0, "producer_byte_rate": 1024.0}],
        [{"user": "alice"}, {"producer_byte_rate": 4096.0}],
    ]), done["describe:all"]

    # Every broker follows the same metadata: the other broker answers alike once it has applied it.
    # A type filter (`*`) matches named and default entities, as Kafka's ClientQuotasImage does.
    other = cluster.brokers[1]["addr"]
    expected = {
        "describe:user=alice": [{"client-id": "app", "user": "alice"}, {"user": "alice"}],
        "describe:strict/user=alice": [{"user": "alice"}],
        "describe:client-id=<default>": [{"client-id": None}],
        "describe:user=*": [{"client-id": "app", "user": "alice"}, {"user": "alice"}],
        "describe:strict/client-id=*": [{"client-id": None}],
        "describe:user=nobody": [],
    }

    def described() -> dict:
        answers = quotas(java_classpath, other, *expected)
        return {op: [e[0] for e in normalized(d["entries"] or [])] for op, d in answers.items()}

    wait_until(lambda: described() == expected, 30, f"broker 2 to describe {expected}")

    removed = quotas(java_classpath, bootstrap,
                     "remove:user=alice+client-id=app:producer_byte_rate",
                     "remove:user=alice:producer_byte_rate",
                     "remove:user=nobody:producer_byte_rate",
                     "describe:user=alice")
    assert all(r["error"] is None for r in removed.values()), removed
    assert removed["describe:user=alice"]["entries"] == [
        [{"client-id": "app", "user": "alice"}, {"consumer_byte_rate": 2048.0}],
    ], removed


def throttled_producer(bootstrap: str, client_id: str, throttles: list[float]) -> ck.Producer:
    return ck.Producer({
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "acks": "1",
        "linger.ms": 5,
        "batch.size": 16 * 1024,
        "throttle_cb": lambda event: throttles.append(event.throttle_time),
    })


def produce_all(producer: ck.Producer, topic: str) -> float:
    """Seconds to have every record acknowledged."""
    errors: list[str] = []
    started = time.monotonic()
    for _ in range(RECORDS):
        while True:
            try:
                producer.produce(topic, RECORD, partition=0,
                                 on_delivery=lambda err, _m: err and errors.append(str(err)))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    return time.monotonic() - started


@pytest.mark.timeout(240)
def test_byte_rate_quotas_throttle_producers_and_consumers(cluster_factory, java_classpath, topic_name):
    """A producer whose client id has a producer_byte_rate of 200 KiB/s takes several seconds to write
    2 MiB (about 8 s at that rate after its first burst; asserted as at least 4) and is told to wait
    (throttle_time_ms, which librdkafka reports); the same producer code with another client id is not
    throttled. A consumer whose client id has a consumer_byte_rate of 200 KiB/s reads those 2 MiB back
    as slowly, throttled too. The brokers count the throttles."""
    cluster = cluster_factory(controllers=1, brokers=1, broker_args=["--quota-window-num=3"],
                              controller_args=["--default-replication-factor=1"])
    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    set_quotas = quotas(java_classpath, bootstrap,
                        f"set:client-id=slow-writer:producer_byte_rate={RATE}",
                        f"set:client-id=slow-reader:consumer_byte_rate={RATE}")
    assert all(r["error"] is None for r in set_quotas.values()), set_quotas

    free: list[float] = []
    produce_all(throttled_producer(bootstrap, "fast-writer", free), topic_name)
    assert free == [] or max(free) == 0, f"a client without a quota was throttled: {free}"

    throttles: list[float] = []
    took = produce_all(throttled_producer(bootstrap, "slow-writer", throttles), topic_name)
    assert took >= 4.0, f"2 MiB at {RATE} B/s in {took:.2f} s"
    assert took < 60
    assert any(t > 0 for t in throttles), throttles

    reader_throttles: list[float] = []
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap,
        "client.id": "slow-reader",
        "group.id": f"{topic_name}-reader",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024,
        "max.partition.fetch.bytes": 64 * 1024,
        "message.max.bytes": 64 * 1024,
        "throttle_cb": lambda event: reader_throttles.append(event.throttle_time),
    })
    try:
        # The slow writer's records: the second half of the partition.
        consumer.assign([ck.TopicPartition(topic_name, 0, RECORDS)])
        started, read = time.monotonic(), 0
        while read < RECORDS:
            assert time.monotonic() - started < 90, f"read {read} records"
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                read += 1
        took = time.monotonic() - started
    finally:
        consumer.close()
    assert took >= 4.0, f"2 MiB read at {RATE} B/s in {took:.2f} s"
    assert any(t > 0 for t in reader_throttles), reader_throttles

    def throttled(kind: str) -> float:
        with urllib.request.urlopen(f"http://{cluster.broker(1)['http_addr']}/metrics", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(f'chronik_broker_quota_throttled_requests_total{{kind="{kind}"}}'):
                return float(line.split()[-1])
        return 0.0

    assert throttled("produce") > 0 and throttled("fetch") > 0


@pytest.mark.timeout(300)
def test_user_quotas_follow_the_sasl_principal_and_spare_replication(secured_cluster, topic_name):
    """Quotas of SASL users, set and listed with `chronikctl quota`: every user's fetches are limited to
    200 KiB/s (`--user <default>`, which covers the brokers' own `User:broker` too) and alice's writes
    as well. bob writes 4 MiB with acks=all to an RF 3 topic with min.insync.replicas=3, so every
    record waits for both followers' fetches: it takes well under the 18 s those fetches would need at
    200 KiB/s (replication is exempt) and the ISR stays whole. alice, with the same client id as bob,
    is throttled: 2 MiB with acks=all take several seconds and librdkafka reports throttle_time_ms.
    With acks=0, where no answer can carry a throttle time, her records still reach the log at the
    quota's pace: the broker stops reading her connection until the throttle has passed."""
    cluster = secured_cluster("sasl_plaintext", brokers=3, broker_args=("--quota-window-num=3",))
    path = cluster.doc["client_properties"]
    properties = read_properties(path)
    ctl = ["--controllers", cluster.controllers, "-C", path]

    def ctl_json(*args: str):
        return parse_json_output(run_chronikctl([*ctl, *args, "--output", "json"], 30))

    for user in ("alice", "bob"):
        run_chronikctl([*ctl, "user", "create", user, "--password", f"{user}-pw"], 30)
    run_chronikctl([*ctl, "acl", "create", "--principal", "User:*", "--operation", "all",
                    "--permission", "allow", "--resource-type", "topic", "--resource-name", "*"], 30)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3,
                         configs={"min.insync.replicas": "3"}, wait=False)

    assert ctl_json("quota", "set", "--user", "<default>", f"consumer_byte_rate={RATE}") == {
        "action": "set", "entries": [{"entity": {"user": None}, "quotas": {"consumer_byte_rate": RATE}}]}
    ctl_json("quota", "set", "--user", "alice", f"producer_byte_rate={RATE}")
    with pytest.raises(ChronikctlError) as refused:
        run_chronikctl([*ctl, "quota", "set", "--user", "bob", "request_percentage=50"], 30)
    assert "does not enforce request_percentage" in refused.value.stderr, refused.value.stderr
    expected = [
        {"entity": {"user": None}, "quotas": {"consumer_byte_rate": RATE}},
        {"entity": {"user": "alice"}, "quotas": {"producer_byte_rate": RATE}},
    ]
    wait_until(lambda: ctl_json("quota", "list")["entries"] == expected, 30,
               "a broker to list both quotas")
    assert ctl_json("quota", "list", "--user", "alice")["entries"] == expected[1:]

    def producer(user: str, acks: str, throttles: list[float]) -> ck.Producer:
        return ck.Producer({**properties, "sasl.username": user, "sasl.password": f"{user}-pw",
                            "client.id": "shared-app", "acks": acks, "linger.ms": 5,
                            "batch.size": 16 * 1024,
                            "throttle_cb": lambda event: throttles.append(event.throttle_time)})

    bob_throttles: list[float] = []
    bob = producer("bob", "all", bob_throttles)
    took = produce_all(bob, topic_name) + produce_all(bob, topic_name)
    assert took < 9.0, f"4 MiB at acks=all took {took:.2f} s: were the followers throttled?"
    assert bob_throttles == [] or max(bob_throttles) == 0, bob_throttles
    partitions = cluster.describe_topic(topic_name)["partitions"]
    assert len(partitions[0]["isr"]) == 3, partitions

    alice_throttles: list[float] = []
    took = produce_all(producer("alice", "all", alice_throttles), topic_name)
    assert took >= 4.0, f"alice wrote 2 MiB at {RATE} B/s in {took:.2f} s"
    assert any(t > 0 for t in alice_throttles), alice_throttles

    watcher = ck.Consumer({**properties, "group.id": f"{topic_name}-watch"})
    partition = ck.TopicPartition(topic_name, 0)

    def log_end() -> int:
        return watcher.get_watermark_offsets(partition, timeout=10)[1]

    try:
        start = log_end()
        assert start == 3 * RECORDS
        fire_and_forget = producer("alice", "0", [])
        started = time.monotonic()
        for _ in range(RECORDS):
            while True:
                try:
                    fire_and_forget.produce(topic_name, RECORD, partition=0)
                    break
                except BufferError:
                    fire_and_forget.poll(0.05)
        assert fire_and_forget.flush(60) == 0
        wait_until(lambda: log_end() == start + RECORDS, 60, "alice's acks=0 records in the log",
                   interval=0.2)
        took = time.monotonic() - started
    finally:
        watcher.close()
    assert took >= 4.0, f"alice's 2 MiB with acks=0 reached the log in {took:.2f} s"
