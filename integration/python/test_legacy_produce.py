"""Produce v0–v2 with legacy message sets (magic 0 and 1, KIP-32), up-converted to v2 batches.

Clients told to speak to an old broker write the old formats: librdkafka with
`api.version.request=false` and `broker.version.fallback=0.9.0.0` (as librdkafka's own regression
test 0052-msg_timestamps does) sends Produce v1 with magic 0 messages, kafka-python pinned to
`api_version=(0, 10, 0)` Produce v2 with magic 1, `(0, 9)` Produce v1 and `(0, 8, 2)` Produce v0. The
broker converts each message set to one v2 batch, keeping the producer's codec (none, gzip, snappy in
the xerial framing and raw, lz4 with magic 0's broken header checksum, KAFKA-3160), so a normal consumer
reads every record back: keys, values, order, magic 1's CreateTime timestamps as sent and magic 0
records with no timestamp (-1, as Kafka stores them). On a LogAppendTime topic both get the broker's
append time; acks=0 works as for v3+. Debian's kcat (an older librdkafka) produces the same way. On the
raw wire a corrupt legacy message gets CORRUPT_MESSAGE, nested compression INVALID_RECORD, nothing of a
refused set is stored, and each version's response has its own fields. Consumers of the legacy formats
(Fetch v0–v3) stay unserved.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import time

import pytest

import kafka_wire
from chronik_cluster import assert_stored_batches
from clients import Rec, ck_consume, ck_produce, kp_produce

pytestmark = [pytest.mark.confluent, pytest.mark.kafka_python]

# The legacy producers: (client, its version setting) -> the message format it writes. librdkafka
# with api.version.request=false and broker.version.fallback=0.9.0.0 sends Produce v1, magic 0; it
# queries ApiVersions anyway for a 0.10+ fallback (and then writes v2 batches), so magic 1 comes from
# kafka-python pinned with api_version=(0, 10, 0) (Produce v2); (0, 9) is Produce v1 and (0, 8, 2)
# Produce v0, both magic 0.
PRODUCERS = {
    "librdkafka-0.9": 0,
    "kafka-python-0.10": 1,
    "kafka-python-0.9": 0,
    "kafka-python-0.8.2": 0,
}
KP_API_VERSIONS = {"kafka-python-0.10": (0, 10, 0), "kafka-python-0.9": (0, 9),
                   "kafka-python-0.8.2": (0, 8, 2)}
CASES = [(producer, codec) for producer in PRODUCERS for codec in ["none", "gzip", "snappy", "lz4"]
         # kafka-python needs the xxhash module (not in requirements.txt) to write magic 0 lz4 with
         # the old header checksum; librdkafka covers it. Produce v0 is exercised once.
         if not (producer in ("kafka-python-0.9", "kafka-python-0.8.2") and codec == "lz4")
         and not (producer == "kafka-python-0.8.2" and codec != "none")]
CORRUPT_MESSAGE = 2
INVALID_RECORD = 87


def librdkafka_0_9_config(codec: str) -> dict:
    return {"api.version.request": False, "broker.version.fallback": "0.9.0.0",
            "compression.type": codec, "linger.ms": 50, "batch.num.messages": 50}


def legacy_produce(producer: str, bootstrap: str, topic: str, records: list[Rec], codec: str,
                   acks: int | str = "all") -> list:
    if producer == "librdkafka-0.9":
        return ck_produce(bootstrap, topic, records, {**librdkafka_0_9_config(codec), "acks": acks})
    return kp_produce(bootstrap, topic, records, api_version=KP_API_VERSIONS[producer],
                      compression_type=None if codec == "none" else codec, linger_ms=50,
                      batch_size=4096, acks=acks)


def keyed_records(count: int, base_ts: int) -> list[Rec]:
    return [Rec(value=f"value-{i:04d}-{'x' * 40}".encode(), key=f"key-{i % 7}".encode(),
                timestamp=base_ts + i, partition=0) for i in range(count)]


@pytest.mark.parametrize("producer,codec", CASES)
def test_legacy_producer_records_read_back(shared_cluster, topic_name, producer, codec):
    shared_cluster.create_topic(topic_name, partitions=1)
    base_ts = int(time.time() * 1000) - 60_000
    records = keyed_records(200, base_ts)

    delivered = legacy_produce(producer, shared_cluster.bootstrap_servers, topic_name, records, codec)

    assert [d.offset for d in delivered] == list(range(200)), "offsets acknowledged out of order"
    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 200, quiet_after=0.5)
    assert [(c.offset, c.key, c.value) for c in consumed] == \
        [(i, r.key, r.value) for i, r in enumerate(records)]
    if PRODUCERS[producer] == 1:
        assert [(c.timestamp_type, c.timestamp) for c in consumed] == \
            [("create", r.timestamp) for r in records]
    else:
        # Magic 0 has no timestamp field: Kafka stores NO_TIMESTAMP (-1) in a CreateTime batch.
        assert {(c.timestamp_type, c.timestamp) for c in consumed} == {("create", -1)}, consumed[:3]
    # Stored as v2 batches with the codec the producer used (several records per batch).
    batches = assert_stored_batches(shared_cluster, topic_name, 0, codec, 200)
    assert max(b.record_count for b in batches) > 1, "the producer never batched"


@pytest.mark.parametrize("producer", ["librdkafka-0.9", "kafka-python-0.10"])
def test_legacy_records_get_the_append_time_on_a_log_append_time_topic(shared_cluster, topic_name,
                                                                       producer):
    shared_cluster.create_topic(topic_name, partitions=1,
                                configs={"message.timestamp.type": "LogAppendTime"})
    records = keyed_records(20, 1_000_000)  # far in the past: the broker's time must replace it
    before = int(time.time() * 1000)

    legacy_produce(producer, shared_cluster.bootstrap_servers, topic_name, records, "gzip")

    after = int(time.time() * 1000)
    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 20)
    assert [c.value for c in consumed] == [r.value for r in records]
    assert {c.timestamp_type for c in consumed} == {"append"}, consumed[:3]
    assert all(before <= c.timestamp <= after for c in consumed), \
        [(c.timestamp, before, after) for c in consumed[:3]]


@pytest.mark.parametrize("producer", ["librdkafka-0.9", "kafka-python-0.10"])
def test_legacy_acks_0_producer(shared_cluster, topic_name, producer):
    shared_cluster.create_topic(topic_name, partitions=1)
    records = keyed_records(50, 1_700_000_000_000)

    legacy_produce(producer, shared_cluster.bootstrap_servers, topic_name, records, "none", acks=0)

    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 50, quiet_after=0.5)
    assert [(c.key, c.value) for c in consumed] == [(r.key, r.value) for r in records]


@pytest.mark.kcat
@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_kcat_with_a_0_9_broker_fallback(kcat, shared_cluster, topic_name, codec):
    shared_cluster.create_topic(topic_name, partitions=1)
    bootstrap = shared_cluster.bootstrap_servers
    lines = [f"key-{i % 5}:value-{i:04d}" for i in range(100)]
    base = ["-b", bootstrap, "-X", "broker.address.family=v4", "-X", "socket.timeout.ms=10000"]

    produce = [kcat, *base, "-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0.1",
               "-P", "-t", topic_name, "-p", "0", "-K", ":", "-z", codec]
    done = subprocess.run(produce, input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"kcat -P exited {done.returncode}: {done.stderr}"

    consume = [kcat, *base, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e",
               "-f", "%o|%k:%s\n"]
    done = subprocess.run(consume, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kcat -C exited {done.returncode}: {done.stderr}"
    assert done.stdout.splitlines() == [f"{i}|{line}" for i, line in enumerate(lines)]
    assert_stored_batches(shared_cluster, topic_name, 0, codec, len(lines))


def gzip_wrapper(inner: bytes, magic: int = 1) -> bytes:
    """A magic `magic` message whose value is the gzip-compressed message set `inner`."""
    return kafka_wire.legacy_message(None, gzip.compress(inner), magic=magic, attributes=1)


@pytest.mark.wire
def test_raw_legacy_produce_versions_and_refusals(shared_cluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=1)
    leader = shared_cluster.leaders(topic_name)[0]
    good_v0 = b"".join(kafka_wire.legacy_message(f"k{i}".encode(), f"v{i}".encode(), magic=0)
                       for i in range(3))
    bad_crc = bytearray(kafka_wire.legacy_message(b"k3", b"v3"))
    bad_crc[-1] ^= 0xFF
    nested = gzip_wrapper(gzip_wrapper(kafka_wire.legacy_message(b"k", b"v")))

    with kafka_wire.KafkaConnection(shared_cluster.broker_addr(leader)) as conn:
        # Refusals first, on the same connection: the whole set is refused, nothing is stored.
        result, _, _ = conn.produce_legacy(2, topic_name, 0, kafka_wire.legacy_message(b"ok", b"ok")
                                           + bytes(bad_crc))
        assert result.error_code == CORRUPT_MESSAGE, result
        truncated = good_v0[:-3]
        result, _, _ = conn.produce_legacy(1, topic_name, 0, truncated)
        assert result.error_code == CORRUPT_MESSAGE, result
        result, _, _ = conn.produce_legacy(2, topic_name, 0, nested)
        assert result.error_code == INVALID_RECORD, result
        assert shared_cluster.stored_batches(leader, topic_name, 0) == []

        # Each version's response has its own fields: v0 none after the partitions, v1 the throttle
        # time, v2 also the log append time (-1 on a CreateTime topic).
        result, append_time, throttle = conn.produce_legacy(0, topic_name, 0, good_v0, acks=1)
        assert (result.error_code, result.base_offset, append_time, throttle) == (0, 0, None, None)
        result, append_time, throttle = conn.produce_legacy(1, topic_name, 0, good_v0)
        assert (result.error_code, result.base_offset, append_time, throttle) == (0, 3, None, 0)
        magic_1 = kafka_wire.legacy_message(b"k6", None, timestamp=1_700_000_000_006) \
            + gzip_wrapper(kafka_wire.legacy_message(None, b"v7", timestamp=1_700_000_000_007))
        result, append_time, throttle = conn.produce_legacy(2, topic_name, 0, magic_1)
        assert (result.error_code, result.base_offset, append_time, throttle) == (0, 6, -1, 0)

    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, 0): 0}, 8, quiet_after=0.5)
    expected = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(3)] * 2 \
        + [(b"k6", None), (None, b"v7")]
    assert [(c.key, c.value) for c in consumed] == expected
    assert [c.timestamp for c in consumed[6:]] == [1_700_000_000_006, 1_700_000_000_007]
    # The mixed set of a plain message and a gzip wrapper is one batch, gzip (the wrapper's codec).
    batches = shared_cluster.stored_batches(leader, topic_name, 0)
    assert [(b.magic, b.compression, b.record_count) for b in batches] == \
        [(2, 0, 3), (2, 0, 3), (2, 1, 2)]


@pytest.mark.wire
def test_fetch_below_v4_is_still_refused(shared_cluster):
    """Consumers of the legacy formats are not served: Fetch v3 closes the connection."""
    with kafka_wire.KafkaConnection(shared_cluster.broker_addr(shared_cluster.brokers[0]["id"])) as conn:
        assert conn.api_versions()[kafka_wire.API_PRODUCE] == (0, 12)
        conn.send_raw(kafka_wire.request_frame(1, 3, 1, struct.pack(">iiii", -1, 100, 1, 0)))
        closed, received = conn.wait_closed_by_peer(10)
        assert closed and received == b"", received
