"""A client that only knows a broker which does not lead its partition still ends up at the leader.

3 brokers, a 1-partition topic with replication factor 1, and clients bootstrapped with ONLY the
address of a broker that is not the leader: the broker's Metadata answer must name every broker at its
advertised address and the true leader, so produce and consume work, and the data is on the leader's
disk (and nowhere else).
"""

from __future__ import annotations

import pytest

from chronik_cluster import assert_stored_batches
from clients import Rec, assert_same_records, ck_consume, ck_produce, kp_consume, kp_produce, payload

CLIENTS = [
    pytest.param("confluent", marks=pytest.mark.confluent),
    pytest.param("kafka-python", marks=pytest.mark.kafka_python),
]


@pytest.mark.parametrize("client", CLIENTS)
def test_bootstrap_on_a_non_leader_reaches_the_leader(shared_cluster, topic_name, client):
    shared_cluster.create_topic(topic_name, partitions=1)
    leader = shared_cluster.leaders(topic_name)[0]
    others = [b["id"] for b in shared_cluster.brokers if b["id"] != leader]
    bootstrap = shared_cluster.broker_addr(others[0])

    meta = shared_cluster.broker_metadata(others[0], [topic_name])
    advertised = {node_id: f"{host}:{port}" for node_id, (host, port) in meta.brokers.items()}
    assert advertised == {b["id"]: b["addr"] for b in shared_cluster.brokers}, \
        "a broker's Metadata must list every broker at its advertised address"
    assert meta.topics[topic_name].partitions[0].leader == leader, \
        "the non-leader names another leader than the controller"

    records = [Rec(value=payload(i), key=b"k") for i in range(50)]
    if client == "confluent":
        delivered = ck_produce(bootstrap, topic_name, records)
        consumed = ck_consume(bootstrap, {(topic_name, 0): 0}, 50, quiet_after=0.5)
    else:
        delivered = kp_produce(bootstrap, topic_name, records)
        consumed = kp_consume(bootstrap, {(topic_name, 0): 0}, 50, quiet_after=0.5)
    assert_same_records(delivered, consumed)

    assert shared_cluster.leaders(topic_name)[0] == leader, "leadership moved during the test"
    assert_stored_batches(shared_cluster, topic_name, 0, "none", 50)
    for other in others:
        assert shared_cluster.stored_batches(other, topic_name, 0) == [], \
            f"broker {other}, not a replica, stored data of {topic_name}-0"
