"""librdkafka's own regression suite (`tests/` of confluentinc/librdkafka 2.8.0, built by
`integration/librdkafka/build.sh`) against a Chronik cluster: the conformance bar as librdkafka's
authors test a broker. Each test is their `test-runner` with `TESTS=<number>` and a `test.conf` naming
the cluster, in full (not quick) mode, and must exit 0:

- 0011 produce_batch: batches to one partition and through the partitioner (100,000 messages each),
  per-message partitions, and records refused by a compacted topic (INVALID_RECORD for the keyless
  records, KIP-467 per-record errors; the batch's other records fail with
  _INVALID_DIFFERENT_RECORD);
- 0044 partition_cnt: a producer keeps producing while CreatePartitions doubles the topic;
- 0052 msg_timestamps: CreateTime and LogAppendTime topics (created with Kafka's `kafka-topics.sh`
  command line, see `integration/librdkafka/kafka/bin`), plain and gzip;
- 0054 offset_time: offsetsForTimes;
- 0069 consumer_add_parts: a subscribed consumer gets partitions added to its topic;
- 0081 admin: every admin API librdkafka has, through a producer and a consumer handle.

The cluster is 1 controller and 3 brokers; `TEST_KAFKA_VERSION` is the Kafka version whose APIs
Chronik serves, which is what librdkafka's suite gates its expectations on. The runner's whole output
is kept in the test's temp dir; a failure shows its last lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chronik_cluster import RF1_CONTROLLER_ARGS

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "integration" / "librdkafka" / "build.sh"
KAFKA_PATH = REPO / "integration" / "librdkafka" / "kafka"

# The Kafka release whose protocol Chronik serves (ApiVersions ranges, metadata.version 3.3-IV3).
KAFKA_VERSION = "3.3.0"

# (test number, the sub-test filter librdkafka's runner takes in SUBTESTS: a substring of the sub-test
# names, which start with the function that runs them). 0081 runs one admin API at a time, so a failure
# names the API and each run stays short.
SUITE = [
    ("0011", None),
    ("0044", None),
    ("0052", None),
    ("0054", None),
    ("0069", None),
    *(("0081", api) for api in [
        "CreateTopics", "DeleteTopics", "CreatePartitions",
        "CreateAcls", "DescribeAcls", "DeleteAcls",
        "AlterConfigs",  # and IncrementalAlterConfigs
        "DescribeConfigs", "DeleteRecords",
        "ListConsumerGroups", "DescribeConsumerGroups", "DeleteGroups",
        "DeleteConsumerGroupOffsets", "AlterConsumerGroupOffsets", "ListConsumerGroupOffsets",
        "ListOffsets", "DescribeTopics", "DescribeCluster",
        "UserScramCredentials",
    ]),
]


@pytest.fixture(scope="module")
def test_runner() -> Path:
    if shutil.which("curl") is None:
        pytest.skip("curl is needed to fetch librdkafka's source")
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        if "Could not resolve host" in done.stderr or "Failed to connect" in done.stderr:
            pytest.skip(f"librdkafka's source could not be fetched:\n{done.stderr[-2000:]}")
        pytest.fail(f"building librdkafka's test suite failed:\n{done.stderr[-4000:]}")
    return (REPO / done.stdout.strip().splitlines()[-1]).resolve()


@pytest.fixture(scope="module")
def suite_cluster(module_cluster_factory):
    # As librdkafka's own test clusters (trivup) are set up: auto-created topics get 4 partitions
    # (0054 asks for partition 3 of one); replication factor 1 unless a test asks for more; an
    # authorizer that allows what no ACL names (0081 creates, describes and deletes ACLs, which a
    # broker without one refuses with SECURITY_DISABLED).
    return module_cluster_factory(controllers=1, brokers=3, broker_args=[
        "--authorizer=standard", "--allow-everyone-if-no-acl-found"], controller_args=[
        *(a for a in RF1_CONTROLLER_ARGS if not a.startswith("--default-num-partitions")),
        "--default-num-partitions=4"])


@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("number", "subtests"), SUITE,
                         ids=[n if s is None else f"{n}-{s}" for n, s in SUITE])
def test_librdkafka_regression(test_runner, suite_cluster, number, subtests, tmp_path):
    conf = tmp_path / "test.conf"
    conf.write_text(
        f"bootstrap.servers={suite_cluster.bootstrap_servers}\n"
        "broker.address.family=v4\n"
        "test.topic.random=true\n")
    env = {
        **os.environ,
        "TESTS": number,
        "RDKAFKA_TEST_CONF": str(conf),
        "TEST_KAFKA_VERSION": KAFKA_VERSION,
        # test_kafka_topics() runs $KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server $BROKERS.
        "KAFKA_PATH": str(KAFKA_PATH),
        "BROKERS": suite_cluster.bootstrap_servers,
        # The suite's own librdkafka, not Debian's librdkafka1 (2.0.2) that kcat brought.
        "LD_LIBRARY_PATH": f"{test_runner.parent.parent / 'src'}:{test_runner.parent.parent / 'src-cpp'}",
        "TEST_LEVEL": "2",
    }
    if subtests is not None:
        env["SUBTESTS"] = subtests
    output = tmp_path / f"{number}.log"
    with output.open("w") as sink:
        done = subprocess.run([str(test_runner)], cwd=tmp_path, env=env, stdout=sink,
                              stderr=subprocess.STDOUT, timeout=1100)
    text = re.sub(r"\x1b\[[0-9;]*m", "", output.read_text(errors="replace"))
    assert done.returncode == 0, (
        f"librdkafka test {number} failed (exit {done.returncode}); last lines of {output}:\n"
        + "\n".join(text.splitlines()[-80:]))
    assert f"Test {number}_" in text and "PASSED" in text, f"test {number} did not run:\n{text[-2000:]}"
    if subtests is not None:
        # A filter that matches nothing would pass without testing anything.
        ran = [line for line in text.splitlines() if f"do_test_{subtests}" in line and ": PASS (" in line]
        assert ran, f"no sub-test of {number} matching {subtests!r} ran:\n{text[-2000:]}"
