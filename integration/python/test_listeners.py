"""Brokers with two named Kafka listeners (`--listeners INTERNAL://...,EXTERNAL://...`), as in
docker-compose.yml where containers and the host reach the brokers at different addresses.

Every broker's Metadata answer on a listener names every broker at its address ON THAT LISTENER, so a
client only ever learns addresses it can reach; and followers replicate through the inter-broker
listener (INTERNAL here; there is no PLAINTEXT listener at all), which acks=all writes with
min.insync.replicas=2 depend on.
"""

from __future__ import annotations

import pytest

from chronik_cluster import wait_until
import kafka_wire
from clients import Rec, assert_same_records, ck_consume, ck_produce, payload

LISTENERS = ["INTERNAL", "EXTERNAL"]
RECORDS = 2_000


def listener_addresses(cluster, name: str) -> dict[int, str]:
    """{broker id: "127.0.0.1:port"} of one named listener, as `chronikctl local status` reports it."""
    out = {}
    for broker in cluster.brokers:
        by_name = {listener["name"]: listener["addr"] for listener in broker["listeners"]}
        assert set(by_name) == set(LISTENERS), f"broker {broker['id']} listeners: {broker['listeners']}"
        out[broker["id"]] = by_name[name]
    return out


@pytest.mark.confluent
def test_metadata_on_each_listener_names_that_listeners_addresses(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=3, listeners=LISTENERS)
    internal = listener_addresses(cluster, "INTERNAL")
    external = listener_addresses(cluster, "EXTERNAL")
    assert set(internal.values()).isdisjoint(external.values()), "each listener has its own port"

    cluster.create_topic(topic_name, partitions=3, replication_factor=3,
                         configs={"min.insync.replicas": "2"})
    for name, addresses in (("INTERNAL", internal), ("EXTERNAL", external)):
        for broker_id, address in addresses.items():
            def answer():
                with kafka_wire.KafkaConnection(address, timeout=5) as conn:
                    meta = conn.metadata([topic_name])
                topic = meta.topics.get(topic_name)
                led = topic is not None and len(topic.partitions) == 3 and all(
                    p.leader >= 0 for p in topic.partitions.values())
                return meta if led else None

            meta = wait_until(answer, 30, f"broker {broker_id} to serve {topic_name} on {name}")
            advertised = {node_id: f"{host}:{port}" for node_id, (host, port) in meta.brokers.items()}
            assert advertised == addresses, \
                f"Metadata from broker {broker_id} on {name} must name the {name} addresses"

    # Produced through EXTERNAL, replicated through INTERNAL (acks=all needs two in-sync replicas),
    # consumed through INTERNAL.
    records = [Rec(value=payload(i), key=str(i % 7).encode()) for i in range(RECORDS)]
    delivered = ck_produce(",".join(external.values()), topic_name, records, {"acks": "all"})
    starts = {(topic_name, p): 0 for p in range(3)}
    consumed = ck_consume(",".join(internal.values()), starts, RECORDS, quiet_after=0.5)
    assert_same_records(delivered, consumed)

    def fully_replicated():
        partitions = cluster.describe_topic(topic_name)["partitions"]
        return all(sorted(p["isr"]) == [1, 2, 3] for p in partitions)

    wait_until(fully_replicated, 30, f"every replica of {topic_name} in sync through INTERNAL")
