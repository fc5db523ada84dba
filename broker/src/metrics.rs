//! The broker's counters and histograms, in the spirit of Kafka's `RequestMetrics`,
//! `BrokerTopicMetrics` and `LogFlushStats`: requests by API and version with their latency, bytes and
//! records in and out by topic, connections by listener, and fsync latency. They live in one process-wide
//! registry, as Kafka's Yammer metrics do, and `/metrics` renders them after the gauges read at scrape
//! time (see `http`). Names follow Prometheus conventions (`_total`, `_seconds`, `_bytes`); label values
//! are bounded by the APIs, topics and listeners that exist.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.1 ms to 10 s: Kafka clients care about the low milliseconds, and a Fetch
/// long poll or an acks=all Produce under a fault reaches seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Propagation buckets from 0.25 ms to 10 s, fine around the 100 ms target (issue #18) so that a p99
/// read from them is within a few milliseconds.
const PROPAGATION_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct BrokerMetrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    connections_accepted: IntCounterVec,
    connections_closed: IntCounterVec,
    connections_open: IntGaugeVec,
    bytes_in: IntCounterVec,
    records_in: IntCounterVec,
    bytes_out: IntCounterVec,
    replication_bytes_in: IntCounterVec,
    log_flush_duration: HistogramVec,
    metadata_propagation: HistogramVec,
}

/// Kafka's name of an API (`Produce`, `Fetch`…): the `api` label of the request metrics.
pub fn api_name(key: ApiKey) -> &'static str {
    static NAMES: LazyLock<HashMap<ApiKey, String>> =
        LazyLock::new(|| ApiKey::iter().map(|k| (k, format!("{k:?}"))).collect());
    NAMES.get(&key).map_or("Unknown", String::as_str)
}

/// The process's metrics.
pub fn metrics() -> &'static BrokerMetrics {
    static METRICS: LazyLock<BrokerMetrics> = LazyLock::new(BrokerMetrics::new);
    &METRICS
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry
        .register(Box::new(counter.clone()))
        .expect("registered once");
    counter
}

impl BrokerMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "chronik_broker_request_duration_seconds",
                "Time from a request's arrival (decoded) to its response being ready to send, by API \
                 (Kafka's TotalTimeMs; a Fetch includes its long poll).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["api"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("registered once");
        let log_flush_duration = HistogramVec::new(
            HistogramOpts::new(
                "chronik_broker_log_flush_duration_seconds",
                "fsync of a partition log's active segment (Kafka's LogFlushRateAndTimeMs).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &[],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(log_flush_duration.clone()))
            .expect("registered once");
        let metadata_propagation = HistogramVec::new(
            HistogramOpts::new(
                "chronik_broker_metadata_propagation_seconds",
                "From the controller's commit of a metadata log entry to this broker publishing the \
                 image that contains it (the controller's clock against this broker's).",
            )
            .buckets(PROPAGATION_BUCKETS.to_vec()),
            &[],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(metadata_propagation.clone()))
            .expect("registered once");
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "chronik_broker_connections",
                "Kafka connections open, by listener.",
            ),
            &["listener"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(connections_open.clone()))
            .expect("registered once");
        Self {
            requests: counter(
                &registry,
                "chronik_broker_requests_total",
                "Kafka requests handled, by API and version.",
                &["api", "version"],
            ),
            request_duration,
            connections_accepted: counter(
                &registry,
                "chronik_broker_connections_accepted_total",
                "Kafka connections accepted, by listener.",
                &["listener"],
            ),
            connections_closed: counter(
                &registry,
                "chronik_broker_connections_closed_total",
                "Kafka connections closed, by listener.",
                &["listener"],
            ),
            connections_open,
            bytes_in: counter(
                &registry,
                "chronik_broker_bytes_in_total",
                "Record batch bytes appended from producers, by topic (Kafka's BytesInPerSec).",
                &["topic"],
            ),
            records_in: counter(
                &registry,
                "chronik_broker_records_in_total",
                "Records appended from producers, by topic (Kafka's MessagesInPerSec).",
                &["topic"],
            ),
            bytes_out: counter(
                &registry,
                "chronik_broker_bytes_out_total",
                "Record batch bytes returned to consumers, by topic (Kafka's BytesOutPerSec; follower \
                 fetches are not counted).",
                &["topic"],
            ),
            replication_bytes_in: counter(
                &registry,
                "chronik_broker_replication_bytes_in_total",
                "Record batch bytes this broker appended as a follower, by topic (Kafka's \
                 ReplicationBytesInPerSec).",
                &["topic"],
            ),
            log_flush_duration,
            metadata_propagation,
            registry,
        }
    }

    /// One request handled, with how long it took.
    pub fn request(&self, api: &str, version: i16, took: Duration) {
        self.requests
            .with_label_values(&[api, &version.to_string()])
            .inc();
        self.request_duration
            .with_label_values(&[api])
            .observe(took.as_secs_f64());
    }

    pub fn connection_opened(&self, listener: &str) {
        self.connections_accepted
            .with_label_values(&[listener])
            .inc();
        self.connections_open.with_label_values(&[listener]).inc();
    }

    pub fn connection_closed(&self, listener: &str) {
        self.connections_closed.with_label_values(&[listener]).inc();
        self.connections_open.with_label_values(&[listener]).dec();
    }

    /// A producer's batch appended by the leader.
    pub fn produced(&self, topic: &str, bytes: usize, records: u64) {
        self.bytes_in
            .with_label_values(&[topic])
            .inc_by(bytes as u64);
        self.records_in.with_label_values(&[topic]).inc_by(records);
    }

    /// Record bytes in a Fetch response to a consumer.
    pub fn fetched(&self, topic: &str, bytes: usize) {
        if bytes > 0 {
            self.bytes_out
                .with_label_values(&[topic])
                .inc_by(bytes as u64);
        }
    }

    /// Record bytes a follower appended.
    pub fn replicated(&self, topic: &str, bytes: usize) {
        if bytes > 0 {
            self.replication_bytes_in
                .with_label_values(&[topic])
                .inc_by(bytes as u64);
        }
    }

    pub fn log_flushed(&self, took: Duration) {
        self.log_flush_duration
            .with_label_values::<&str>(&[])
            .observe(took.as_secs_f64());
    }

    /// A metadata entry committed by the controller `took` ago is now in the published image.
    pub fn metadata_propagated(&self, took: Duration) {
        self.metadata_propagation
            .with_label_values::<&str>(&[])
            .observe(took.as_secs_f64());
    }

    /// Drops the series of a deleted topic, so deleted topics do not pile up.
    pub fn forget_topic(&self, topic: &str) {
        for family in [
            &self.bytes_in,
            &self.records_in,
            &self.bytes_out,
            &self.replication_bytes_in,
        ] {
            let _ = family.remove_label_values(&[topic]);
        }
    }

    /// Appends every metric in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        if let Ok(text) = TextEncoder::new().encode_to_string(&self.registry.gather()) {
            out.push_str(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_rendered_with_their_labels() {
        let m = BrokerMetrics::new();
        m.request("Produce", 9, Duration::from_millis(3));
        m.request("Produce", 9, Duration::from_millis(30));
        m.connection_opened("PLAINTEXT");
        m.connection_opened("PLAINTEXT");
        m.connection_closed("PLAINTEXT");
        m.produced("orders", 1000, 10);
        m.fetched("orders", 0);
        m.fetched("orders", 400);
        m.log_flushed(Duration::from_micros(700));
        m.metadata_propagated(Duration::from_micros(1500));
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "chronik_broker_requests_total{api=\"Produce\",version=\"9\"} 2",
            "chronik_broker_request_duration_seconds_count{api=\"Produce\"} 2",
            "chronik_broker_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 1",
            "chronik_broker_connections_accepted_total{listener=\"PLAINTEXT\"} 2",
            "chronik_broker_connections{listener=\"PLAINTEXT\"} 1",
            "chronik_broker_bytes_in_total{topic=\"orders\"} 1000",
            "chronik_broker_records_in_total{topic=\"orders\"} 10",
            "chronik_broker_bytes_out_total{topic=\"orders\"} 400",
            "chronik_broker_log_flush_duration_seconds_count 1",
            "chronik_broker_metadata_propagation_seconds_bucket{le=\"0.002\"} 1",
            "chronik_broker_metadata_propagation_seconds_bucket{le=\"0.001\"} 0",
        ] {
            assert!(out.contains(line), "missing {line} in:\n{out}");
        }
        m.forget_topic("orders");
        let mut out = String::new();
        m.render(&mut out);
        assert!(!out.contains("topic=\"orders\""), "{out}");
    }
}
