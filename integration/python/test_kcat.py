"""kcat, the Debian package: an older librdkafka (Debian 12 ships kcat 1.7.1 on librdkafka 2.0.2)
whose features hang on the exact ApiVersions ranges a broker advertises (librdkafka before 2.11.1, fixed
by its #5130; KAFKA-18659): gzip/snappy/lz4 need Produce v0 in range, lz4 also FindCoordinator v0, zstd
Produce 7 and Fetch 10.
A missing range does not fail: the client quietly sends uncompressed batches. So next to reading the
data back, every codec test checks the batches on the leader's disk carry the codec kcat was asked for.

`-L` lists the brokers and the topic's leaders as the controller has them; `-P` produces keys, values,
headers and explicit partitions; `-C -e` consumes from the beginning or an offset to the end.
All runs pass `-X api.version.request=true` (kcat's default, made explicit).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from chronik_cluster import CODECS, assert_stored_batches

pytestmark = pytest.mark.kcat

BASE_ARGS = ["-X", "api.version.request=true", "-X", "broker.address.family=v4",
             "-X", "socket.timeout.ms=10000"]


def run_kcat(kcat: str, bootstrap: str, args: list[str], stdin: str | None = None,
             timeout: float = 60) -> str:
    argv = [kcat, "-b", bootstrap, *BASE_ARGS, *args]
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"`{' '.join(argv)}` did not finish in {timeout}s; stderr:\n{error.stderr}") \
            from None
    assert done.returncode == 0, f"`{' '.join(argv)}` exited {done.returncode}; stderr:\n{done.stderr}"
    return done.stdout


def test_kcat_lists_metadata(kcat, shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=3)

    listing = json.loads(run_kcat(kcat, shared_cluster.bootstrap_servers,
                                  ["-L", "-J", "-m", "15", "-t", topic_name]))

    brokers = {b["id"]: b["name"] for b in listing["brokers"]}
    assert brokers == {b["id"]: b["addr"] for b in shared_cluster.brokers}, listing["brokers"]
    [topic] = [t for t in listing["topics"] if t["topic"] == topic_name]
    assert topic.get("error") is None, topic
    leaders = {p["partition"]: p["leader"] for p in topic["partitions"]}
    assert leaders == shared_cluster.leaders(topic_name)
    for p in topic["partitions"]:
        assert [r["id"] for r in p["replicas"]] == [p["leader"]], p
        assert [r["id"] for r in p["isrs"]] == [p["leader"]], p


@pytest.mark.parametrize("codec", list(CODECS))
def test_kcat_produce_and_consume(kcat, shared_cluster, topic_name, codec):
    shared_cluster.create_topic(topic_name, partitions=1)
    bootstrap = shared_cluster.bootstrap_servers
    lines = [f"key-{i % 5}:value-{i:05d}-{'abc' * 20}" for i in range(300)]

    run_kcat(kcat, bootstrap, ["-P", "-t", topic_name, "-p", "0", "-K", ":", "-z", codec,
                               "-X", "linger.ms=50"], stdin="\n".join(lines) + "\n")

    out = run_kcat(kcat, bootstrap, ["-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e",
                                     "-f", "%o|%k:%s\n"])
    assert out.splitlines() == [f"{i}|{line}" for i, line in enumerate(lines)]
    assert_stored_batches(shared_cluster, topic_name, 0, codec, len(lines))


def test_kcat_headers_partitions_and_offsets(kcat, shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=3)
    bootstrap = shared_cluster.bootstrap_servers
    values = [f"v{i}" for i in range(10)]

    run_kcat(kcat, bootstrap, ["-P", "-t", topic_name, "-p", "2", "-k", "the-key",
                               "-H", "trace=abc", "-H", "origin=kcat"], stdin="\n".join(values) + "\n")

    out = run_kcat(kcat, bootstrap, ["-C", "-t", topic_name, "-p", "2", "-o", "0", "-e",
                                     "-f", "%p|%o|%k|%s|%h\n"])
    assert out.splitlines() == [f"2|{i}|the-key|{v}|trace=abc,origin=kcat" for i, v in enumerate(values)]

    out = run_kcat(kcat, bootstrap, ["-C", "-t", topic_name, "-p", "2", "-o", "5", "-c", "3",
                                     "-f", "%o:%s\n"])
    assert out.splitlines() == ["5:v5", "6:v6", "7:v7"]

    for empty in (0, 1):
        out = run_kcat(kcat, bootstrap, ["-C", "-t", topic_name, "-p", str(empty), "-o", "beginning",
                                         "-e", "-f", "%o:%s\n"])
        assert out == "", f"partition {empty} should be empty, kcat read {out!r}"


@pytest.mark.timeout(120)
def test_kcat_balanced_consumer_group_reads_and_commits(kcat, shared_cluster, topic_name):
    """`kcat -G`: librdkafka 2.0.2's classic group protocol, gated on the v0 group API ranges."""
    shared_cluster.create_topic(topic_name, partitions=3)
    bootstrap = shared_cluster.bootstrap_servers
    # Keyed, so the records spread over every partition (keyless ones from one kcat run all go to one
    # partition: the sticky partitioner, KIP-480).
    lines = [f"key-{i:03d}:value-{i:03d}" for i in range(90)]
    run_kcat(kcat, bootstrap, ["-P", "-K", ":", "-t", topic_name], stdin="\n".join(lines) + "\n")
    leaders = shared_cluster.leaders(topic_name)
    assert all(shared_cluster.stored_batches(leaders[p], topic_name, p) for p in range(3)), \
        "the keyed records did not reach every partition"
    group = f"kcat-{topic_name}"

    consumed = run_kcat(kcat, bootstrap, ["-G", group, "-o", "beginning", "-c", "90", "-q",
                                          "-X", "enable.auto.commit=true",
                                          "-X", "auto.commit.interval.ms=100", topic_name])
    assert sorted(consumed.split()) == sorted(line.split(":")[1] for line in lines)

    # The group committed what it read on every partition: a second run of the group starts at the
    # commits and finds only the records produced after it. A partition without a commit would start
    # at its beginning (auto.offset.reset=earliest) and hand back old records.
    later = [f"later-{i:03d}" for i in range(9)]
    run_kcat(kcat, bootstrap, ["-P", "-t", topic_name], stdin="\n".join(later) + "\n")
    consumed = run_kcat(kcat, bootstrap, ["-G", group, "-c", "9", "-q",
                                          "-X", "auto.offset.reset=earliest", topic_name])
    assert sorted(consumed.split()) == later
