"""The brokers' Prometheus metrics under a real load (issue #17): a confluent-kafka producer writes to a
replicated topic and a consumer reads it back, then every broker's `/metrics` is parsed with Prometheus'
own text-format parser (`prometheus_client.parser`) and its series checked against what the clients did:
requests by API with latency histograms (and the same time split into Kafka's request phases), bytes
and records in and out by topic, replication bytes, connections, fsync latency, per-partition log end
offsets and high watermarks, every follower's lag reaching 0, and no under-replicated partition. A
refused Produce is counted under its Kafka error name; a broker killed and restarted is counted back
into the ISRs as expansions. A consumer group's committed offsets appear on its coordinator, and its lag (the leaders' high
watermark minus the committed offset, the PromQL join documented in `broker/src/http.rs`) grows with
unread records and drops to 0 when the group catches up. A broker started with
`--partition-metrics false` has the totals but no per-partition series.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from chronik_cluster import ChronikCluster, wait_until

from clients import Rec, ck_consume, ck_consumer, ck_poll, ck_produce, payload, unique_group

RECORDS = 600
VALUE_BYTES = 200


def scrape(broker: dict) -> dict[str, list]:
    """Every sample of a broker's /metrics by sample name: [(labels, value), ...]."""
    with urllib.request.urlopen(f"http://{broker['http_addr']}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(scrapes: list[dict], name: str, **labels: str) -> float:
    return sum(value for samples in scrapes for got, value in samples.get(name, [])
               if all(got.get(k) == v for k, v in labels.items()))


def test_metrics_follow_a_produce_and_consume_load(shared_cluster: ChronikCluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    shared_cluster.wait_topic_ready(topic_name, 3)
    records = [Rec(value=payload(i, VALUE_BYTES), partition=i % 3) for i in range(RECORDS)]
    delivered = ck_produce(shared_cluster.bootstrap_servers, topic_name, records)
    assert len(delivered) == RECORDS
    consumed = ck_consume(shared_cluster.bootstrap_servers, {(topic_name, p): 0 for p in range(3)}, RECORDS)
    assert len(consumed) == RECORDS

    scrapes = [scrape(b) for b in shared_cluster.brokers]
    assert total(scrapes, "chronik_broker_requests_total", api="Produce") > 0
    assert total(scrapes, "chronik_broker_requests_total", api="Fetch") > 0
    assert total(scrapes, "chronik_broker_requests_total", api="ApiVersions") > 0
    assert total(scrapes, "chronik_broker_requests_total", api="Metadata") > 0
    # The histogram counts each request once, and its +Inf bucket holds them all.
    assert (total(scrapes, "chronik_broker_request_duration_seconds_count", api="Produce")
            == total(scrapes, "chronik_broker_requests_total", api="Produce"))
    assert (total(scrapes, "chronik_broker_request_duration_seconds_bucket", api="Produce", le="+Inf")
            == total(scrapes, "chronik_broker_request_duration_seconds_count", api="Produce"))
    assert total(scrapes, "chronik_broker_request_duration_seconds_sum", api="Produce") > 0

    # Leaders counted every record once; bytes include batch headers, so they exceed the values.
    assert total(scrapes, "chronik_broker_records_in_total", topic=topic_name) == RECORDS
    assert total(scrapes, "chronik_broker_bytes_in_total", topic=topic_name) > RECORDS * VALUE_BYTES
    assert total(scrapes, "chronik_broker_bytes_out_total", topic=topic_name) > RECORDS * VALUE_BYTES
    # Two followers per partition copied every byte the leaders took in.
    assert (total(scrapes, "chronik_broker_replication_bytes_in_total", topic=topic_name)
            >= 2 * total(scrapes, "chronik_broker_bytes_in_total", topic=topic_name))

    assert total(scrapes, "chronik_broker_connections_accepted_total") > 0
    assert total(scrapes, "chronik_broker_connections") >= 0
    assert total(scrapes, "chronik_broker_log_flush_duration_seconds_count") > 0
    # Every fsync also says how many bytes it made durable: together at least what was replicated.
    assert (total(scrapes, "chronik_broker_log_flush_bytes_count")
            == total(scrapes, "chronik_broker_log_flush_duration_seconds_count"))
    assert total(scrapes, "chronik_broker_log_flush_bytes_sum") >= total(scrapes, "chronik_broker_bytes_in_total",
                                                                         topic=topic_name)
    assert total(scrapes, "chronik_broker_under_replicated_partitions") == 0
    assert total(scrapes, "chronik_broker_under_min_isr_partitions") == 0

    # Each replica of each partition reports its log end; all three replicas hold every record.
    ends = [(labels["partition"], value) for samples in scrapes
            for labels, value in samples.get("chronik_broker_partition_log_end_offset", [])
            if labels["topic"] == topic_name]
    assert len(ends) == 9
    assert sum(value for _, value in ends) == 3 * RECORDS
    # Followers learn the high watermark from their next fetch (within their long poll, 500 ms).
    wait_until(lambda: sum(total([scrape(b)], "chronik_broker_partition_high_watermark", topic=topic_name)
                           for b in shared_cluster.brokers) == 3 * RECORDS, 10,
               "every replica to report the high watermark at the log end")
    assert total(scrapes, "chronik_broker_partition_log_size_bytes", topic=topic_name) > 3 * RECORDS * VALUE_BYTES

    # Each request's phases (Kafka's queue, local, remote, response queue and send times): one
    # observation per phase per request written, so every phase counts as many Produce requests as
    # the total-time histogram of the same scrape; the replicas' acks=all wait is remote time.
    for phase in ("queue", "local", "remote", "response_queue", "send"):
        assert (total(scrapes, "chronik_broker_request_phase_seconds_count", api="Produce", phase=phase)
                == total(scrapes, "chronik_broker_request_duration_seconds_count", api="Produce")), phase
    assert total(scrapes, "chronik_broker_request_phase_seconds_sum", api="Produce", phase="remote") > 0

    # Each leader reports how far behind each of its followers is: two followers per partition, and
    # once their next fetch arrived they are caught up.
    lags = [labels for samples in scrapes for labels, _ in samples.get("chronik_broker_follower_lag_records", [])
            if labels["topic"] == topic_name]
    assert len(lags) == 6 and all(labels["follower"] != "" for labels in lags)
    wait_until(lambda: total([scrape(b) for b in shared_cluster.brokers], "chronik_broker_follower_lag_records",
                             topic=topic_name) == 0, 10, "every follower to be caught up")


def test_errors_are_counted_by_kafka_error_name(shared_cluster: ChronikCluster, topic_name):
    """A Produce to a partition the topic does not have is refused per partition with
    UNKNOWN_TOPIC_OR_PARTITION; the broker that answered counts it under Kafka's error name."""
    from kafka_wire import KafkaConnection, record_batch

    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    shared_cluster.wait_topic_ready(topic_name, 1)
    before = total([scrape(b) for b in shared_cluster.brokers], "chronik_broker_request_errors_total",
                   api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION")
    with KafkaConnection(shared_cluster.bootstrap_servers.split(",")[0]) as conn:
        result = conn.produce(topic_name, 7, record_batch([b"nowhere"]))
    assert result.error_code == 3
    after = total([scrape(b) for b in shared_cluster.brokers], "chronik_broker_request_errors_total",
                  api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION")
    assert after == before + 1


def test_partition_series_can_be_switched_off(module_cluster_factory, topic_name):
    cluster = module_cluster_factory(controllers=1, brokers=1, broker_args=["--partition-metrics=false"])
    cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    cluster.wait_topic_ready(topic_name, 2)
    ck_produce(cluster.bootstrap_servers, topic_name, [Rec(value=b"x", partition=p) for p in range(2)])
    samples = scrape(cluster.brokers[0])
    assert "chronik_broker_partition_log_end_offset" not in samples
    assert total([samples], "chronik_broker_records_in_total", topic=topic_name) == 2
    assert total([samples], "chronik_broker_log_size_bytes") > 0


def group_lag(cluster: ChronikCluster, group: str, topic: str) -> dict[int, float]:
    """Lag per partition as a dashboard computes it from the brokers' series."""
    scrapes = [scrape(b) for b in cluster.brokers]
    high = {}
    for samples in scrapes:
        for labels, value in samples.get("chronik_broker_partition_high_watermark", []):
            if labels["topic"] == topic:
                p = int(labels["partition"])
                high[p] = max(high.get(p, 0), value)
    committed = {int(labels["partition"]): value for samples in scrapes
                 for labels, value in samples.get("chronik_broker_consumer_group_committed_offset", [])
                 if labels["group"] == group and labels["topic"] == topic}
    return {p: high[p] - committed[p] for p in committed}


def test_consumer_group_lag_grows_and_drops_to_zero(shared_cluster: ChronikCluster, topic_name):
    shared_cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    shared_cluster.wait_topic_ready(topic_name, 2)
    bootstrap = shared_cluster.bootstrap_servers
    ck_produce(bootstrap, topic_name, [Rec(value=payload(i), partition=i % 2) for i in range(40)])
    group = unique_group()
    consumer = ck_consumer(bootstrap, {"group.id": group, "auto.offset.reset": "earliest",
                                          "enable.auto.offset.store": True})
    try:
        consumer.subscribe([topic_name])
        ck_poll(consumer, 40, 60, "group consumer, first 40")
        consumer.commit(asynchronous=False)
        wait_until(lambda: group_lag(shared_cluster, group, topic_name) == {0: 0, 1: 0}, 15,
                   "the group's lag to be 0 on both partitions after its commit")
        scrapes = [scrape(b) for b in shared_cluster.brokers]
        assert total(scrapes, "chronik_broker_consumer_group_members", group=group) == 1
        assert total(scrapes, "chronik_broker_consumer_group_state", group=group, state="Stable") == 1

        ck_produce(bootstrap, topic_name, [Rec(value=payload(i), partition=0) for i in range(15)])
        wait_until(lambda: group_lag(shared_cluster, group, topic_name) == {0: 15, 1: 0}, 15,
                   "the lag on partition 0 to show the 15 unread records")

        ck_poll(consumer, 15, 60, "group consumer, 15 more")
        consumer.commit(asynchronous=False)
        wait_until(lambda: group_lag(shared_cluster, group, topic_name) == {0: 0, 1: 0}, 15,
                   "the lag to drop to 0 once the group caught up")
    finally:
        consumer.close()


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "chronik-brokers.json"


def test_the_grafana_dashboard_queries_only_series_the_brokers_export(shared_cluster: ChronikCluster,
                                                                       topic_name):
    """Every metric a panel of `docs/grafana/chronik-brokers.json` queries exists on a live cluster that
    has seen produce, fetch, a group commit and a refused request (Prometheus and Grafana are not on
    any registry here)."""
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=3)
    shared_cluster.wait_topic_ready(topic_name, 1)
    bootstrap = shared_cluster.bootstrap_servers
    ck_produce(bootstrap, topic_name, [Rec(value=payload(i)) for i in range(5)])
    consumer = ck_consumer(bootstrap, {"group.id": unique_group(), "auto.offset.reset": "earliest",
                                       "enable.auto.offset.store": True})
    try:
        consumer.subscribe([topic_name])
        ck_poll(consumer, 5, 60, "group consumer")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    # And one refused request, so the errors counter has a series.
    from kafka_wire import KafkaConnection, record_batch

    with KafkaConnection(bootstrap.split(",")[0]) as conn:
        assert conn.produce(topic_name, 5, record_batch([b"nowhere"])).error_code == 3
    exported = set()
    for broker in shared_cluster.brokers:
        exported |= set(scrape(broker))

    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']} has no query"
        for target in panel["targets"]:
            names = set(re.findall(r"\bchronik_[a-z_]+\b", target["expr"]))
            assert names, f"panel {panel['title']}: no Chronik metric in {target['expr']}"
            queried |= names
    missing = sorted(queried - exported)
    assert not missing, f"the dashboard queries series no broker exports: {missing}"


def test_controller_metrics_count_writes_fencings_and_elections(cluster_factory, topic_name):
    """kill -9 of a broker that leads partitions: the controller fences it (session timeout or lost
    session stream) and elects new leaders from the ISR, and its counters say so."""
    cluster = cluster_factory(controllers=1, brokers=3)
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    cluster.wait_topic_ready(topic_name, 3)
    controller = next(n for n in cluster.doc["nodes"] if n["kind"] == "controller")
    before = scrape(controller)
    assert total([before], "chronik_controller_metadata_writes_total") > 0
    assert total([before], "chronik_controller_metadata_write_duration_seconds_count") > 0
    assert total([before], "chronik_controller_raft_log_entries") > 0

    victim = cluster.leaders(topic_name)[0]
    led = sum(1 for leader in cluster.leaders(topic_name).values() if leader == victim)
    cluster.kill_broker(victim)
    wait_until(lambda: total([scrape(controller)], "chronik_controller_broker_fencings_total") == 1, 30,
               "the controller to count one fencing")
    after = scrape(controller)
    assert (total([after], "chronik_controller_leader_elections_total", kind="clean")
            >= total([before], "chronik_controller_leader_elections_total", kind="clean") + led)
    assert total([after], "chronik_controller_leader_elections_total", kind="unclean") == 0
    assert total([after], "chronik_controller_brokers", state="fenced") == 1

    # The killed broker comes back and catches up: the leaders add it back to their ISRs
    # (AlterPartition), each counting an expansion.
    expands_before = total([scrape(b) for b in cluster.brokers if b["id"] != victim],
                           "chronik_broker_isr_expands_total")
    cluster.start_broker(victim)

    def full_isr() -> bool:
        return all(len(p["isr"]) == 3 for p in cluster.describe_topic(topic_name)["partitions"])

    wait_until(full_isr, 60, "the restarted broker back in every ISR")
    expands_after = total([scrape(b) for b in cluster.brokers if b["id"] != victim],
                          "chronik_broker_isr_expands_total")
    assert expands_after >= expands_before + 3
