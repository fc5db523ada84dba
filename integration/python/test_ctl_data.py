"""`chronikctl topic produce|consume`, `group offset-delete`, `--output yaml`, `completion` and
`election unclean` against real clusters, checked with confluent-kafka (librdkafka) on the other end.

- produce: keys (`--format`, `--key-delimiter`, `--key`), headers (`-H`), `--partition`, codecs and
  acks; what chronikctl reports (partition, offset) is what confluent-kafka reads back, and keyed
  records land where librdkafka's murmur2 partitioner puts the same keys; a record that does not match
  the format fails alone and makes the exit status non-zero; a producer whose leader stops half way
  follows it to the new leader and writes every record once, in order;
- consume: records produced by confluent-kafka printed through `--format`, as JSON lines (compared
  exactly, binary values in base64) and as YAML documents; `--offset` start/end/N/-N/@timestamp,
  `--partition`, `--num`; `--follow` prints a record produced after it started and is terminated;
  `--group` resumes where its last run stopped and takes its range share beside a confluent member;
- group offset-delete: refused per partition (GROUP_SUBSCRIBED_TO_TOPIC) while a member consumes the
  topic, done once the group is empty;
- `--output yaml` is the JSON document as YAML; completion scripts load in their shells;
- errors: unknown topic, bad offset spec, bad partition, a broker that is down.

Every wait has a deadline; processes started here are terminated in `finally`.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import yaml

from chronik_cluster import ChronikctlError, chronikctl_path, wait_until
from clients import Rec, ck_consume, ck_produce
from test_group_cli import group_consumer

pytestmark = [pytest.mark.confluent]

# No automatic preferred-leader elections while a test arranges leadership by hand.
NO_AUTO_REBALANCE = ["--leader-rebalance-interval-ms=3600000"]


def unique(label: str) -> str:
    return f"ctl-{label}-{uuid.uuid4().hex[:8]}"


def ctl_run(cluster, *args: str, stdin: bytes = b"", timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs chronikctl against `cluster` with `stdin`; returns the finished process, whatever its status."""
    argv = [str(chronikctl_path()), "--controllers", cluster.controllers, *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


def ctl_ok(cluster, *args: str, stdin: bytes = b"", timeout: float = 60.0) -> bytes:
    done = ctl_run(cluster, *args, stdin=stdin, timeout=timeout)
    assert done.returncode == 0, (f"chronikctl {' '.join(args)} exited {done.returncode}\n"
                                  f"stdout: {done.stdout[-2000:]!r}\nstderr: {done.stderr[-2000:]!r}")
    return done.stdout


def ctl_fails(cluster, *args: str, stdin: bytes = b"", timeout: float = 60.0) -> subprocess.CompletedProcess:
    done = ctl_run(cluster, *args, stdin=stdin, timeout=timeout)
    assert done.returncode != 0, f"chronikctl {' '.join(args)} succeeded: {done.stdout[-2000:]!r}"
    return done


def json_lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def consume_json(cluster, topic: str, *args: str) -> list[dict]:
    return json_lines(ctl_ok(cluster, "topic", "consume", topic, "--output", "json", *args))


def record_view(topic: str, partition: int, offset: int, rec: Rec, timestamp: int) -> dict:
    """What `topic consume --output json` must print for `rec` (see cli/src/output/record.rs)."""

    def text(data: bytes | None) -> tuple[str | None, str | None]:
        if data is None:
            return None, None
        try:
            return data.decode("utf-8"), "utf8"
        except UnicodeDecodeError:
            return base64.b64encode(data).decode(), "base64"

    key, key_encoding = text(rec.key)
    value, value_encoding = text(rec.value)
    headers = []
    for name, data in rec.headers or []:
        header_value, header_encoding = text(data)
        headers.append({"key": name, "value": header_value, "value_encoding": header_encoding})
    return {"topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp,
            "timestamp_type": "create", "key": key, "key_encoding": key_encoding, "value": value,
            "value_encoding": value_encoding, "headers": headers}


# ----- produce -----

@pytest.mark.timeout(180)
def test_produce_keys_headers_and_partitions_read_back_by_confluent(shared_cluster):
    cluster = shared_cluster
    topic = unique("produce")
    cluster.create_topic(topic, partitions=3)
    keys = [f"user-{i}" for i in range(12)]
    lines = "".join(f"{key}\tvalue {i} with\ttab\n" for i, key in enumerate(keys)).encode()
    report = json.loads(ctl_ok(cluster, "topic", "produce", topic, "--format", r"%k\t%v",
                               "-H", "source=ctl", "-H", "empty=", "--output", "json", stdin=lines))
    assert report["produced"] == 12 and report["failed"] == 0, report
    assert report["idempotent"] is True and report["acks"] == "all", report
    assert [r["record"] for r in report["records"]] == list(range(1, 13))

    # librdkafka's murmur2 partitioner (Kafka's default) puts the same keys on the same partitions.
    delivered = ck_produce(cluster.bootstrap_servers, topic,
                           [Rec(value=b"probe", key=k.encode()) for k in keys],
                           config={"partitioner": "murmur2_random"})
    for rec, produced in zip(delivered, report["records"]):
        assert produced["partition"] == rec.partition, (rec.rec.key, produced)

    start = {(topic, p): 0 for p in range(3)}
    read = ck_consume(cluster.bootstrap_servers, start, count=24)
    by_position = {(c.partition, c.offset): c for c in read}
    for i, produced in enumerate(report["records"]):
        consumed = by_position[(produced["partition"], produced["offset"])]
        assert consumed.key == keys[i].encode()
        assert consumed.value == f"value {i} with\ttab".encode()
        assert consumed.headers == (("source", b"ctl"), ("empty", b""))
        assert consumed.timestamp_type == "create"

    # --partition, --key-delimiter, a codec, acks=1 (not idempotent), a custom record delimiter.
    report = json.loads(ctl_ok(cluster, "topic", "produce", topic, "--partition", "2", "--key-delimiter", "::",
                               "--compression", "zstd", "--acks", "1", "--delimiter", r"\0",
                               "--output", "json", stdin=b"a::1\0b::2\0no-key\0"))
    assert report["idempotent"] is False and report["acks"] == "1"
    assert [r["partition"] for r in report["records"]] == [2, 2, 2]
    base = report["records"][0]["offset"]
    assert [r["offset"] for r in report["records"]] == [base, base + 1, base + 2]
    read = ck_consume(cluster.bootstrap_servers, {(topic, 2): base}, count=3)
    assert [(c.key, c.value) for c in read] == [(b"a", b"1"), (b"b", b"2"), (None, b"no-key")]

    # acks=0: nothing is answered, so no offsets; the records are there all the same.
    report = json.loads(ctl_ok(cluster, "topic", "produce", topic, "-p", "1", "--acks", "0", "--output", "json",
                               stdin=b"fire\nforget\n"))
    assert [(r["partition"], r["offset"], r["error"]) for r in report["records"]] == [(1, None, None)] * 2
    assert report["produced"] == 2 and report["idempotent"] is False
    assert [r["value"] for r in consume_json(cluster, topic, "-p", "1", "--offset", "-2")] == ["fire", "forget"]

    # --key for every record; table output names every record.
    text = ctl_ok(cluster, "topic", "produce", topic, "--key", "fixed", "--compression", "gzip",
                  stdin=b"x\ny\n").decode()
    assert "RECORD" in text and "Produced 2 record(s)" in text and "0 failed" in text, text


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_produce_follows_the_leader_when_it_stops_and_writes_each_record_once(cluster_factory):
    """A running `topic produce` whose leader stops between two halves of its input: the second half
    goes to the new leader (NOT_LEADER_OR_FOLLOWER or a lost connection, then fresh metadata), and
    every record is in the log once, in input order."""
    cluster = cluster_factory(controllers=1, brokers=2, controller_args=[
        "--default-replication-factor=2", "--default-min-insync-replicas=1", *NO_AUTO_REBALANCE])
    topic = unique("produce-failover")
    cluster.create_topic(topic, partitions=1, replication_factor=2)
    leader = cluster.leaders(topic)[0]
    argv = [str(chronikctl_path()), "--controllers", cluster.controllers, "topic", "produce", topic,
            "--output", "json", "--retry-timeout-ms", "30000"]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(b"".join(f"first-{i}\n".encode() for i in range(100)))
        process.stdin.flush()
        wait_until(lambda: len(consume_json(cluster, topic)) == 100, 30, "the first half to be written")
        cluster.stop_broker(leader)
        out, err = process.communicate(b"".join(f"second-{i}\n".encode() for i in range(100)), timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    report = json.loads(out)
    assert (report["produced"], report["failed"]) == (200, 0), report
    offsets = [r["offset"] for r in report["records"]]
    assert offsets == list(range(200)), offsets
    assert cluster.leaders(topic)[0] != leader
    values = [r["value"] for r in consume_json(cluster, topic)]
    assert values == [f"first-{i}" for i in range(100)] + [f"second-{i}" for i in range(100)]


@pytest.mark.timeout(120)
def test_produce_reports_each_failed_record_and_exits_non_zero(shared_cluster):
    cluster = shared_cluster
    topic = unique("produce-bad")
    cluster.create_topic(topic, partitions=1)
    done = ctl_fails(cluster, "topic", "produce", topic, "--format", "%k=%v", "--output", "json",
                     stdin=b"a=1\nno separator\nc=3\n")
    report = json.loads(done.stdout)
    assert report["produced"] == 2 and report["failed"] == 1, report
    bad = report["records"][1]
    assert bad["record"] == 2 and bad["offset"] is None and "does not match the format" in bad["error"]
    assert "1 of 3 record(s) failed; the first, record 2" in done.stderr.decode()
    read = ck_consume(cluster.bootstrap_servers, {(topic, 0): 0}, count=2)
    assert [(c.key, c.value) for c in read] == [(b"a", b"1"), (b"c", b"3")]


# ----- consume -----

@pytest.fixture(scope="module")
def written(shared_cluster):
    """A 2-partition topic written by confluent-kafka: 10 records per partition with keys, headers,
    a binary value and timestamps t0 + i s; returns (topic, records by partition, t0)."""
    topic = unique("consume")
    shared_cluster.create_topic(topic, partitions=2)
    t0 = int(time.time() * 1000) - 3_600_000
    by_partition: dict[int, list[Rec]] = {}
    records = []
    for p in range(2):
        for i in range(10):
            rec = Rec(value=f"p{p}-v{i}".encode() if i != 3 else b"\xff\x00\x01binary",
                      key=None if i == 5 else f"k{i}".encode(),
                      headers=[("i", str(i).encode()), ("bin", b"\xfe")] if i % 2 == 0 else None,
                      timestamp=t0 + i * 1000, partition=p)
            records.append(rec)
            by_partition.setdefault(p, []).append(rec)
    ck_produce(shared_cluster.bootstrap_servers, topic, records)
    return topic, by_partition, t0


@pytest.mark.timeout(120)
def test_consume_prints_json_lines_format_strings_and_yaml_exactly(shared_cluster, written):
    cluster = shared_cluster
    topic, by_partition, t0 = written
    lines = consume_json(cluster, topic)
    expected = [record_view(topic, p, i, rec, t0 + i * 1000)
                for p, recs in by_partition.items() for i, rec in enumerate(recs)]
    key = lambda r: (r["partition"], r["offset"])  # noqa: E731 - partitions interleave by leader
    assert sorted(lines, key=key) == sorted(expected, key=key)
    for p in (0, 1):
        offsets = [r["offset"] for r in lines if r["partition"] == p]
        assert offsets == sorted(offsets), f"partition {p} out of order: {offsets}"
    binary = next(r for r in lines if r["partition"] == 0 and r["offset"] == 3)
    assert binary["value_encoding"] == "base64"
    assert base64.b64decode(binary["value"]) == b"\xff\x00\x01binary"

    out = ctl_ok(cluster, "topic", "consume", topic, "--partition", "1", "--format",
                 r"%t|%p|%o|%k|%v|%h|%T|%K|%S\n")
    rows = out.split(b"\n")[:-1]
    assert len(rows) == 10
    for i, (row, rec) in enumerate(zip(rows, by_partition[1])):
        headers = b",".join(k.encode() + b"=" + v for k, v in rec.headers or [])
        key = rec.key or b""
        assert row == b"|".join([topic.encode(), b"1", str(i).encode(), key, rec.value, headers,
                                 str(t0 + i * 1000).encode(), str(len(rec.key) if rec.key else -1).encode(),
                                 str(len(rec.value)).encode()]), row

    # The default table output is each value on a line, raw.
    out = ctl_ok(cluster, "topic", "consume", topic, "--partition", "0")
    assert out.split(b"\n")[:-1] == [rec.value for rec in by_partition[0]]

    documents = list(yaml.safe_load_all(ctl_ok(cluster, "topic", "consume", topic, "--partition", "1",
                                               "--output", "yaml")))
    assert documents == [record_view(topic, 1, i, rec, t0 + i * 1000)
                         for i, rec in enumerate(by_partition[1])]


@pytest.mark.timeout(120)
def test_consume_offsets_partitions_and_num(shared_cluster, written):
    cluster = shared_cluster
    topic, _, t0 = written
    positions = lambda lines: [(r["partition"], r["offset"]) for r in lines]  # noqa: E731
    assert positions(consume_json(cluster, topic, "-p", "1", "--offset", "start")) == [(1, i) for i in range(10)]
    assert consume_json(cluster, topic, "--offset", "end") == []
    assert positions(consume_json(cluster, topic, "-p", "0", "--offset", "7")) == [(0, 7), (0, 8), (0, 9)]
    assert positions(consume_json(cluster, topic, "-p", "1", "--offset", "-2")) == [(1, 8), (1, 9)]
    assert positions(consume_json(cluster, topic, "-p", "0", "--offset", f"@{t0 + 6500}")) == \
        [(0, 7), (0, 8), (0, 9)]
    assert consume_json(cluster, topic, "-p", "0", "--offset", f"@{t0 + 3_600_000 * 2}") == []
    both = consume_json(cluster, topic, "-p", "0", "-p", "1", "--offset", "-1")
    assert sorted(positions(both)) == [(0, 9), (1, 9)]
    assert positions(consume_json(cluster, topic, "-p", "1", "--num", "3")) == [(1, 0), (1, 1), (1, 2)]
    assert len(consume_json(cluster, topic, "--num", "15")) == 15
    # An offset past the end reads nothing; below the start reads from the start.
    assert consume_json(cluster, topic, "-p", "0", "--offset", "500") == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("group", [False, True], ids=["assigned", "in-a-group"])
def test_consume_follow_prints_a_record_produced_after_it_started(shared_cluster, group):
    cluster = shared_cluster
    topic = unique("follow")
    group_id = unique("follow-group")
    cluster.create_topic(topic, partitions=1)
    ck_produce(cluster.bootstrap_servers, topic, [Rec(value=b"before")])
    argv = [str(chronikctl_path()), "--controllers", cluster.controllers, "topic", "consume", topic,
            "--follow", "--output", "json", "--fetch-max-wait-ms", "200"]
    if group:
        argv += ["--group", group_id]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        # The first line proves it runs and has read up to the end; the next record comes after.
        first = json.loads(process.stdout.readline())
        assert (first["offset"], first["value"]) == (0, "before")
        ck_produce(cluster.bootstrap_servers, topic, [Rec(value=b"after", key=b"late")])
        line = wait_until(process.stdout.readline, 30, "the record produced after the start")
        second = json.loads(line)
        assert (second["offset"], second["key"], second["value"]) == (1, "late", "after")
        assert process.poll() is None, "--follow must keep running"
        # SIGTERM ends it cleanly: exit 0, and a group member commits what it printed and leaves.
        process.terminate()
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    if group:
        described = cluster.ctl_json("group", "describe", group_id)
        assert described["state"] == "Empty" and described["members"] == [], described
        assert [(p["partition"], p["committed_offset"]) for p in described["partitions"]] == [(0, 2)]


def topic_and_group(cluster, label: str, per_partition: int) -> tuple[str, str]:
    """A new 2-partition topic holding `per_partition` records in each partition, and a new group id."""
    topic = unique(label)
    cluster.create_topic(topic, partitions=2)
    ck_produce(cluster.bootstrap_servers, topic,
               [Rec(value=f"{p}-{i}".encode(), partition=p) for p in (0, 1) for i in range(per_partition)])
    return topic, unique(f"{label}-group")


@pytest.mark.timeout(180)
def test_consume_in_a_group_resumes_where_the_last_run_stopped(shared_cluster):
    cluster = shared_cluster
    topic, group = topic_and_group(cluster, "group-consume", per_partition=5)
    first = consume_json(cluster, topic, "--group", group, "--num", "4")
    assert len(first) == 4
    described = cluster.ctl_json("group", "describe", group)
    assert described["state"] == "Empty" and described["members"] == [], described
    committed = {p["partition"]: p["committed_offset"] for p in described["partitions"]}
    printed = {p: sum(1 for r in first if r["partition"] == p) for p in (0, 1)}
    assert committed == printed, (committed, first)

    rest = consume_json(cluster, topic, "--group", group)
    positions = sorted((r["partition"], r["offset"]) for r in first + rest)
    assert positions == [(p, i) for p in (0, 1) for i in range(5)], "every record exactly once"
    assert consume_json(cluster, topic, "--group", group) == []
    described = cluster.ctl_json("group", "describe", group)
    assert {p["partition"]: p["committed_offset"] for p in described["partitions"]} == {0: 5, 1: 5}
    # A new group without commits starts where --offset says.
    assert [r["offset"] for r in consume_json(cluster, topic, "--group", unique("g2"), "--offset", "-1")] \
        == [4, 4]
    done = ctl_fails(cluster, "topic", "consume", topic, "--group", group, "--partition", "0")
    assert done.returncode == 2 and "cannot be used with" in done.stderr.decode()


@pytest.mark.timeout(180)
def test_consume_in_a_group_shares_partitions_with_a_confluent_member(shared_cluster):
    cluster = shared_cluster
    topic, group = topic_and_group(cluster, "group-share", per_partition=3)
    consumer = group_consumer(cluster.bootstrap_servers, group, "ctl-share")
    try:
        consumer.subscribe([topic])
        wait_until(lambda: consumer.poll(0.2) is None and len(consumer.assignment()) == 2, 60,
                   "the confluent member to own both partitions")
        argv = [str(chronikctl_path()), "--controllers", cluster.controllers, "topic", "consume", topic,
                "--group", group, "--output", "json"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL)
        try:
            # The confluent member keeps polling (and so rejoining) while chronikctl joins.
            owned: list[set[int]] = []

            def pumped_until_exit() -> bool:
                consumer.poll(0.1)
                owned.append({tp.partition for tp in consumer.assignment()})
                return process.poll() is not None

            wait_until(pumped_until_exit, 60, "chronikctl to read its share of the partitions and exit")
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        assert process.returncode == 0, err
        lines = json_lines(out)
        mine = {r["partition"] for r in lines}
        assert len(mine) == 1, lines
        assert {0, 1} - mine in owned, f"the confluent member never owned the other partition: {owned}"
        assert [r["offset"] for r in lines] == [0, 1, 2]
    finally:
        consumer.close()


# ----- group offset-delete -----

@pytest.mark.timeout(180)
def test_offset_delete_is_refused_while_subscribed_and_works_once_empty(shared_cluster):
    cluster = shared_cluster
    topic, group = topic_and_group(cluster, "offdel", per_partition=3)
    consumer = group_consumer(cluster.bootstrap_servers, group, "ctl-offset-delete")
    try:
        consumer.subscribe([topic])
        seen = []

        def read_all() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                seen.append(msg)
            return len(seen) == 6

        wait_until(read_all, 60, "the group member to read the 6 records")
        consumer.commit(asynchronous=False)
        done = ctl_fails(cluster, "group", "offset-delete", group, "--topic", topic, "--output", "json")
        refused = json.loads(done.stdout)
        assert refused["partitions"] == [
            {"partition": p, "deleted": False, "error": "GROUP_SUBSCRIBED_TO_TOPIC"} for p in (0, 1)]
        assert "GROUP_SUBSCRIBED_TO_TOPIC" in done.stderr.decode()
        described = cluster.ctl_json("group", "describe", group)
        assert {p["partition"]: p["committed_offset"] for p in described["partitions"]} == {0: 3, 1: 3}
    finally:
        consumer.close()

    wait_until(lambda: cluster.ctl_json("group", "describe", group)["state"] == "Empty", 30,
               f"group {group} to be empty")
    deleted = json.loads(ctl_ok(cluster, "group", "offset-delete", group, "--topic", topic,
                                "--partition", "1", "--output", "json"))
    assert deleted == {"group_id": group, "topic": topic,
                       "partitions": [{"partition": 1, "deleted": True, "error": None}]}
    described = cluster.ctl_json("group", "describe", group)
    assert {p["partition"]: p["committed_offset"] for p in described["partitions"]} == {0: 3}
    text = ctl_ok(cluster, "group", "offset-delete", group, "--topic", topic).decode()
    assert "deleted" in text and "PARTITION" in text, text

    missing = ctl_fails(cluster, "group", "offset-delete", unique("no-group"), "--topic", topic)
    assert "does not exist" in missing.stderr.decode()
    bad = ctl_fails(cluster, "group", "offset-delete", group, "--topic", topic, "--partition", "7")
    assert "has no partition 7" in bad.stderr.decode()


# ----- yaml, completion, unclean election -----

@pytest.mark.timeout(120)
def test_yaml_output_is_the_json_document(shared_cluster):
    cluster = shared_cluster
    topic = unique("yaml")
    cluster.create_topic(topic, partitions=2)
    for args in (["cluster", "status"], ["broker", "list"], ["topic", "describe", topic, "--metadata-only"],
                 ["topic", "list"], ["cluster", "config", "get"]):
        as_json = json.loads(ctl_ok(cluster, *args, "--output", "json"))
        as_yaml = yaml.safe_load(ctl_ok(cluster, *args, "--output", "yaml"))
        if args[:2] == ["cluster", "status"]:
            for doc in (as_json, as_yaml):  # figures that move between the two calls
                for controller in doc["controllers"]:
                    controller.pop("commit_index")
                    controller.pop("applied_index")
        assert as_yaml == as_json, args
    produced = yaml.safe_load(ctl_ok(cluster, "topic", "produce", topic, "-p", "0", "-o", "yaml", stdin=b"y\n"))
    assert produced["records"] == [{"record": 1, "partition": 0, "offset": 0, "error": None}]


def test_completion_scripts_load_in_their_shells(tmp_path):
    for shell, marker in (("bash", "complete"), ("zsh", "#compdef chronikctl"), ("fish", "complete -c chronikctl"),
                          ("powershell", "Register-ArgumentCompleter")):
        done = subprocess.run([str(chronikctl_path()), "completion", shell], capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout.decode(), f"{shell}: {done.stdout[:300]!r}"
        (tmp_path / f"chronikctl.{shell}").write_bytes(done.stdout)
    script = tmp_path / "chronikctl.bash"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    loaded = subprocess.run(["bash", "-c", f"source {script} && complete -p chronikctl"],
                            capture_output=True, text=True, timeout=30)
    assert loaded.returncode == 0 and "chronikctl" in loaded.stdout, loaded
    # The words bash offers after `chronikctl topic ` include the new commands.
    words = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=(chronikctl topic ''); COMP_CWORD=2; "
                       f"COMP_LINE='chronikctl topic '; COMP_POINT=${{#COMP_LINE}}; "
                       f"_chronikctl chronikctl '' topic; printf '%s\\n' \"${{COMPREPLY[@]}}\""],
        capture_output=True, text=True, timeout=30)
    assert {"produce", "consume"} <= set(words.stdout.split()), words
    for shell in ("zsh", "fish"):
        if shutil.which(shell):
            flag = "-n" if shell == "zsh" else "--no-execute"
            subprocess.run([shell, flag, str(tmp_path / f"chronikctl.{shell}")], check=True, timeout=30)


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_election_unclean_gives_a_leaderless_partition_a_live_replica(cluster_factory):
    """Both replicas stop, the one outside the ISR comes back: `election preferred` cannot help,
    `election unclean` makes that replica the leader."""
    cluster = cluster_factory(controllers=1, brokers=2, controller_args=[
        "--default-replication-factor=2", "--default-min-insync-replicas=1", *NO_AUTO_REBALANCE])
    topic = unique("unclean-offline")
    cluster.create_topic(topic, partitions=1, replication_factor=2)
    state = lambda: cluster.describe_topic(topic)["partitions"][0]  # noqa: E731
    leader, follower = state()["replicas"]
    cluster.stop_broker(follower)
    wait_until(lambda: state()["isr"] == [leader], 30, f"the ISR to shrink to [{leader}]")
    cluster.stop_broker(leader)
    wait_until(lambda: state()["leader"] == -1, 30, "the partition to lose its leader")
    cluster.start_broker(follower)

    done = ctl_fails(cluster, "election", "preferred", topic, "--output", "json")
    assert json.loads(done.stdout)[0]["error"] == "PREFERRED_LEADER_NOT_AVAILABLE"
    assert state()["leader"] == -1, "elected without being asked to"
    results = json.loads(ctl_ok(cluster, "election", "unclean", topic, "--partition", "0", "--output", "json"))
    assert [(r["partition"], r["result"], r["leader"]) for r in results] == [(0, "elected", follower)]
    assert (state()["leader"], state()["isr"]) == (follower, [follower])
    cluster.wait_leader(topic, 0, follower)
    report = json.loads(ctl_ok(cluster, "topic", "produce", topic, "--output", "json", stdin=b"after\n"))
    assert report["produced"] == 1


@pytest.mark.timeout(120)
def test_election_unclean_leaves_led_partitions_alone(shared_cluster):
    cluster = shared_cluster
    topic = unique("unclean")
    cluster.create_topic(topic, partitions=2)
    results = cluster.ctl_json("election", "unclean", topic)
    assert [(r["partition"], r["result"]) for r in results] == [(0, "not_needed"), (1, "not_needed")]
    results = cluster.ctl_json("election", "unclean", topic, "--partition", "1")
    assert [(r["partition"], r["result"]) for r in results] == [(1, "not_needed")]


# ----- errors -----

@pytest.mark.timeout(120)
def test_errors_read_as_one_clear_line(shared_cluster):
    cluster = shared_cluster
    topic = unique("errors")
    cluster.create_topic(topic, partitions=2)
    missing = unique("missing")
    for args, stdin in ((["topic", "produce", missing], b"x\n"), (["topic", "consume", missing], b"")):
        done = ctl_fails(cluster, *args, stdin=stdin)
        assert f"topic '{missing}' does not exist" in done.stderr.decode(), done.stderr
    for bad in ("soon", "--3", "@yesterday", "1.5"):
        done = ctl_fails(cluster, "topic", "consume", topic, "--offset", bad)
        assert done.returncode == 2 and "is not an offset" in done.stderr.decode(), done.stderr
    done = ctl_fails(cluster, "topic", "consume", topic, "--partition", "5")
    assert f"topic '{topic}' has no partition 5 (it has 2 partition(s))" in done.stderr.decode()
    done = ctl_fails(cluster, "topic", "produce", topic, "--partition", "2", stdin=b"x\n")
    assert f"topic '{topic}' has no partition 2 (it has 2 partition(s))" in done.stderr.decode()
    done = ctl_fails(cluster, "topic", "consume", topic, "--partition", "-1")
    assert done.returncode == 2
    done = ctl_fails(cluster, "topic", "consume", topic, "--format", "%q")
    assert "unknown format field '%q'" in done.stderr.decode()
    done = ctl_fails(cluster, "topic", "produce", topic, "--format", "%k%v", stdin=b"x\n")
    assert "side by side" in done.stderr.decode()
    done = ctl_fails(cluster, "group", "offset-delete", "g", "--topic", missing)
    assert "does not exist" in done.stderr.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_commands_fail_clearly_when_the_broker_is_down(cluster_factory):
    cluster = cluster_factory(controllers=1, brokers=1)
    topic = unique("down")
    cluster.create_topic(topic, partitions=1)
    ctl_ok(cluster, "topic", "produce", topic, stdin=b"before\n")
    dead = f"127.0.0.1:{free_port()}"
    for args in (["topic", "produce", topic], ["topic", "consume", topic]):
        done = ctl_fails(cluster, *args, "--bootstrap-servers", dead, stdin=b"x\n")
        assert f"cannot connect to {dead}" in done.stderr.decode(), done.stderr

    address = cluster.broker_addr(1)
    cluster.stop_broker(1)
    for args in (["topic", "produce", topic], ["topic", "consume", topic]):
        started = time.monotonic()
        done = ctl_fails(cluster, *args, "--bootstrap-servers", address, "--retry-timeout-ms", "3000",
                         stdin=b"x\n")
        assert time.monotonic() - started < 30
        assert f"cannot connect to {address}" in done.stderr.decode(), done.stderr
    # Through the controllers: the stopped broker is fenced, so there is no live broker to ask.
    for args in (["topic", "produce", topic], ["topic", "consume", topic]):
        done = ctl_fails(cluster, *args, "--retry-timeout-ms", "3000", stdin=b"x\n")
        assert "no live broker with a Kafka endpoint" in done.stderr.decode(), done.stderr
    done = ctl_fails(cluster, "group", "offset-delete", "g", "--topic", topic, "--retry-timeout-ms", "3000")
    assert "no live broker with a Kafka endpoint" in done.stderr.decode(), done.stderr

    cluster.start_broker(1)
    cluster.wait_topic_ready(topic, 1)
    lines = wait_until(lambda: consume_json(cluster, topic), 30, "the record written before the stop")
    assert [r["value"] for r in lines] == ["before"]
