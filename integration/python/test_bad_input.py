"""Bad bytes at the Kafka socket: each closes only the connection that sent them.

A raw TCP client sends one bad frame: a size of 2 GiB (far above the 100 MiB request cap; the broker
must refuse it before reading, not allocate it), a negative size, an HTTP request, a frame shorter
than a request header, random bytes, a known API with a garbage body, an unknown API key and an
unsupported version of a known API (Kafka closes the connection for these: it cannot frame a reply).
The broker must close that connection, keep answering a connection that was open all along, accept new
connections, and take a real producer's records afterwards.
"""

from __future__ import annotations

import random
import struct

import pytest

import kafka_wire
from clients import Rec, ck_produce

pytestmark = pytest.mark.wire

_rng = random.Random(20240611)

BAD_FRAMES = {
    "frame-claiming-2GiB": struct.pack(">i", 0x7FFFFFFF) + struct.pack(">hhi", 18, 0, 1),
    "negative-frame-size": struct.pack(">i", -5) + b"\x00" * 8,
    "http-request": b"GET / HTTP/1.1\r\nHost: chronik\r\n\r\n",
    "frame-shorter-than-a-header": struct.pack(">i", 3) + b"\x00\x12\x00",
    "garbage-frame": struct.pack(">i", 64) + bytes([0x7E, 0x5A]) + _rng.randbytes(62),
    "garbage-body": kafka_wire.request_frame(
        kafka_wire.API_METADATA, 4, 7, body=struct.pack(">i", 0x7FFFFFF0) + _rng.randbytes(40)),
    "unknown-api-key": kafka_wire.request_frame(9999, 0, 7),
    "unsupported-version": kafka_wire.request_frame(kafka_wire.API_METADATA, 999, 7),
}


@pytest.fixture(scope="module")
def wire_cluster(module_cluster_factory):
    return module_cluster_factory(controllers=1, brokers=1)


@pytest.fixture
def live_wire_cluster(wire_cluster):
    """The module's cluster with its broker running: a case that crashed it fails on its own and the
    next case starts from a restarted broker instead of failing in its wake."""
    broker = next(n for n in wire_cluster.status()["nodes"] if n["kind"] == "broker")
    if not broker.get("pid") or not broker.get("ready"):
        print(f"broker 1 is not serving before this case (status {broker}); restarting it")
        # A crashed broker can linger as a zombie that `local status` still lists with its pid:
        # `local kill` makes sure it is gone before `local start`.
        wire_cluster.kill_broker(1)
        wire_cluster.start_broker(1)
    return wire_cluster


@pytest.fixture(scope="module")
def wire_topic(wire_cluster):
    name = "wire-after-bad-input"
    wire_cluster.create_topic(name, partitions=1)
    return name


@pytest.mark.parametrize("case", list(BAD_FRAMES))
@pytest.mark.confluent
def test_bad_frame_closes_only_its_connection(live_wire_cluster, wire_topic, case):
    wire_cluster = live_wire_cluster
    address = wire_cluster.broker_addr(1)
    with kafka_wire.KafkaConnection(address) as bystander:
        assert kafka_wire.API_API_VERSIONS in bystander.api_versions()

        with kafka_wire.KafkaConnection(address) as bad:
            bad.send_raw(BAD_FRAMES[case])
            closed, received = bad.wait_closed_by_peer(timeout=10)
        assert closed, f"the broker kept the connection open 10s after {case} (sent back {received[:64]!r})"

        try:
            assert kafka_wire.API_API_VERSIONS in bystander.api_versions()
        except OSError as error:
            broker = next(n for n in wire_cluster.status()["nodes"] if n["kind"] == "broker")
            raise AssertionError(
                f"after {case}, a connection that was open all along stopped being served ({error!r}); "
                f"the broker now reports ready={broker.get('ready')} (see its log below)") from None

    with kafka_wire.KafkaConnection(address) as fresh:
        assert wire_topic in fresh.metadata([wire_topic]).topics
    [delivered] = ck_produce(wire_cluster.bootstrap_servers, wire_topic, [Rec(value=case.encode())])
    assert delivered.offset >= 0
