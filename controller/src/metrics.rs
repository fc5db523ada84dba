//! The controller's counters and histograms, after Kafka's `ControllerStats` and `QuorumControllerMetrics`:
//! metadata writes and their commit latency, leader elections (clean and unclean) and partitions left
//! leaderless, broker fencings by cause, and changes of the active controller. One process-wide
//! registry; `/metrics` renders it after the gauges read at scrape time (see `api::http`).

use std::sync::LazyLock;
use std::time::Duration;

use chronik_metadata::{Record, NO_LEADER};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct ControllerMetrics {
    registry: Registry,
    writes: IntCounter,
    write_duration: Histogram,
    elections: IntCounterVec,
    partitions_offline: IntCounter,
    fencings: IntCounterVec,
    leader_changes: IntCounter,
    snapshot_bytes: IntGauge,
    snapshot_timestamp: Gauge,
    snapshot_duration: Histogram,
    heartbeats_answered: GaugeVec,
}

/// The process's metrics.
pub fn metrics() -> &'static ControllerMetrics {
    static METRICS: LazyLock<ControllerMetrics> = LazyLock::new(ControllerMetrics::new);
    &METRICS
}

impl ControllerMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry
                .register(c)
                .expect("each metric is registered once")
        };
        let writes = IntCounter::new(
            "chronik_controller_metadata_writes_total",
            "Metadata record batches this controller wrote to the Raft log as the active controller.",
        )
        .expect("valid counter");
        register(Box::new(writes.clone()));
        let write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "chronik_controller_metadata_write_duration_seconds",
                "From proposing a batch of metadata records to its commit and apply on this controller \
                 (Kafka's EventQueueProcessingTimeMs plus commit).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid histogram");
        register(Box::new(write_duration.clone()));
        let elections = IntCounterVec::new(
            Opts::new(
                "chronik_controller_leader_elections_total",
                "Partition leaders elected by this controller: clean (from the ISR) or unclean \
                 (Kafka's UncleanLeaderElectionsPerSec).",
            ),
            &["kind"],
        )
        .expect("valid counter");
        register(Box::new(elections.clone()));
        let partitions_offline = IntCounter::new(
            "chronik_controller_partitions_offline_total",
            "Partitions this controller left without a leader (no eligible replica).",
        )
        .expect("valid counter");
        register(Box::new(partitions_offline.clone()));
        let fencings = IntCounterVec::new(
            Opts::new(
                "chronik_controller_broker_fencings_total",
                "Brokers this controller fenced, by cause.",
            ),
            &["cause"],
        )
        .expect("valid counter");
        register(Box::new(fencings.clone()));
        let leader_changes = IntCounter::new(
            "chronik_controller_leader_changes_total",
            "Changes of the active controller this node has seen (Raft leader changes).",
        )
        .expect("valid counter");
        register(Box::new(leader_changes.clone()));
        let snapshot_bytes = IntGauge::new(
            "chronik_controller_snapshot_bytes",
            "Size of the last Raft snapshot this controller built or installed.",
        )
        .expect("valid gauge");
        register(Box::new(snapshot_bytes.clone()));
        let snapshot_timestamp = Gauge::new(
            "chronik_controller_snapshot_timestamp_seconds",
            "When (Unix time) this controller last built or installed a Raft snapshot; its age is \
             `time() - chronik_controller_snapshot_timestamp_seconds` (0 until the first one).",
        )
        .expect("valid gauge");
        register(Box::new(snapshot_timestamp.clone()));
        let snapshot_duration = Histogram::with_opts(
            HistogramOpts::new(
                "chronik_controller_snapshot_build_duration_seconds",
                "Building and storing one Raft snapshot of the metadata image.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid histogram");
        register(Box::new(snapshot_duration.clone()));
        let heartbeats_answered = GaugeVec::new(
            Opts::new(
                "chronik_controller_broker_heartbeat_timestamp_seconds",
                "When (Unix time) this controller, as the active controller, last answered a heartbeat \
                 of the broker: after a change of active controller, every broker has switched to \
                 this one once each of these is past the change.",
            ),
            &["broker"],
        )
        .expect("valid gauge");
        register(Box::new(heartbeats_answered.clone()));
        Self {
            registry,
            writes,
            write_duration,
            elections,
            partitions_offline,
            fencings,
            leader_changes,
            snapshot_bytes,
            snapshot_timestamp,
            snapshot_duration,
            heartbeats_answered,
        }
    }

    /// A batch of records committed, with the time from proposal to apply.
    pub fn wrote(&self, records: &RecordCounts, took: Duration) {
        self.writes.inc();
        self.write_duration.observe(took.as_secs_f64());
        self.elections
            .with_label_values(&["clean"])
            .inc_by(records.clean_elections);
        self.elections
            .with_label_values(&["unclean"])
            .inc_by(records.unclean_elections);
        self.partitions_offline.inc_by(records.offline);
    }

    pub fn fenced(&self, cause: &str) {
        self.fencings.with_label_values(&[cause]).inc();
    }

    /// This controller answered a heartbeat of `broker_id` as the active controller.
    pub fn heartbeat_answered(&self, broker_id: i32) {
        self.heartbeats_answered
            .with_label_values(&[&broker_id.to_string()])
            .set(unix_now());
    }

    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// A snapshot of `bytes` was built in `took`.
    pub fn snapshot_built(&self, bytes: usize, took: Duration) {
        self.snapshot_bytes.set(bytes as i64);
        self.snapshot_timestamp.set(unix_now());
        self.snapshot_duration.observe(took.as_secs_f64());
    }

    /// A snapshot of `bytes` was installed from the leader or loaded at start.
    pub fn snapshot_installed(&self, bytes: usize) {
        self.snapshot_bytes.set(bytes as i64);
        self.snapshot_timestamp.set(unix_now());
    }

    /// Appends every metric in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        if let Ok(text) = TextEncoder::new().encode_to_string(&self.registry.gather()) {
            out.push_str(&text);
        }
    }
}

/// What a batch of records does to partition leadership.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub clean_elections: u64,
    pub unclean_elections: u64,
    pub offline: u64,
}

impl RecordCounts {
    /// Counts the leader changes in `records`: a new leader is an election, unclean when the change
    /// also marks the partition recovering (only an unclean election does); no leader is offline.
    pub fn of(records: &[Record]) -> Self {
        let mut counts = Self::default();
        for record in records {
            let Record::PartitionChange(change) = record else {
                continue;
            };
            match change.leader {
                Some(NO_LEADER) => counts.offline += 1,
                Some(_) if change.recovering == Some(true) => counts.unclean_elections += 1,
                Some(_) => counts.clean_elections += 1,
                None => {}
            }
        }
        counts
    }
}

/// Seconds since the Unix epoch, as Prometheus timestamps are.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_metadata::records::PartitionChangeRecord;
    use uuid::Uuid;

    fn change(leader: Option<i32>, recovering: Option<bool>) -> Record {
        Record::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::new_v4(),
            partition: 0,
            leader,
            recovering,
            ..Default::default()
        })
    }

    #[test]
    fn leader_changes_are_counted_by_kind() {
        let counts = RecordCounts::of(&[
            change(Some(2), None),
            change(Some(3), Some(true)),
            change(Some(NO_LEADER), None),
            change(None, None),
            change(Some(1), Some(false)),
        ]);
        assert_eq!(
            counts,
            RecordCounts {
                clean_elections: 2,
                unclean_elections: 1,
                offline: 1
            }
        );
        let m = ControllerMetrics::new();
        m.wrote(&counts, Duration::from_millis(4));
        m.fenced("session_timed_out");
        m.leader_changed();
        m.snapshot_built(4096, Duration::from_millis(3));
        m.heartbeat_answered(7);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "chronik_controller_metadata_writes_total 1",
            "chronik_controller_metadata_write_duration_seconds_count 1",
            "chronik_controller_leader_elections_total{kind=\"clean\"} 2",
            "chronik_controller_leader_elections_total{kind=\"unclean\"} 1",
            "chronik_controller_partitions_offline_total 1",
            "chronik_controller_broker_fencings_total{cause=\"session_timed_out\"} 1",
            "chronik_controller_leader_changes_total 1",
            "chronik_controller_snapshot_bytes 4096",
            "chronik_controller_snapshot_build_duration_seconds_count 1",
            "chronik_controller_broker_heartbeat_timestamp_seconds{broker=\"7\"} ",
        ] {
            assert!(out.contains(line), "missing {line} in:\n{out}");
        }
        let stamp: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("chronik_controller_snapshot_timestamp_seconds "))
            .and_then(|v| v.parse().ok())
            .expect("the snapshot's time");
        assert!((unix_now() - stamp).abs() < 60.0, "{stamp}");
    }
}
