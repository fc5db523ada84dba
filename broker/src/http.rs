//! The broker's HTTP endpoint for operators and orchestrators: `/healthz` (the process is up), `/readyz`
//! (the broker may serve clients: registered, unfenced, metadata caught up, no offline log directory;
//! otherwise 503 with the reason) and `/metrics` (Prometheus
//! text). `router` takes the shared state and builds the routes, so handlers are tested without a
//! socket; the server task in `server` only binds and serves it. Handlers only read: they never block on
//! the controller.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::metadata::{partition_counts, MetadataCache};
use crate::status::{BrokerState, BrokerStatus};

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub status: watch::Receiver<BrokerStatus>,
    pub metadata: Arc<MetadataCache>,
    /// The group coordinator, for its gauges (absent in tests of the other endpoints).
    pub groups: Option<Arc<crate::group::GroupCoordinator>>,
    /// The partitions, for their gauges and logs that could not be opened (absent in tests of the
    /// other endpoints).
    pub replicas: Option<Arc<crate::replica::ReplicaManager>>,
    /// The fetch sessions, for their gauges (absent in tests of the other endpoints).
    pub fetch_sessions: Option<Arc<crate::fetch_session::FetchSessionCache>>,
    /// Whether `/metrics` has series per partition (`--partition-metrics`).
    pub partition_metrics: bool,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let status = state.status.borrow().clone();
    let reason = status
        .not_ready_reason(state.metadata.offset())
        .or_else(|| state.replicas.as_deref().and_then(unopened_reason));
    match reason {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// Why partitions this broker replicates cannot be served: their logs did not open.
fn unopened_reason(replicas: &crate::replica::ReplicaManager) -> Option<String> {
    let unopened = replicas.unopened_logs();
    let first = unopened.first()?;
    Some(format!(
        "{} partition log(s) cannot be opened, e.g. {}-{}: {} (retrying)",
        unopened.len(),
        first.topic,
        first.partition,
        first.error
    ))
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let status = state.status.borrow().clone();
    let image = state.metadata.current();
    let counts = partition_counts(&image, status.broker_id);
    let mut out = String::new();
    gauge(
        &mut out,
        "chronik_broker_id",
        "This broker's id.",
        status.broker_id,
    );
    gauge(
        &mut out,
        "chronik_broker_epoch",
        "Epoch of the current registration with the controller (-1 when not registered).",
        status.broker_epoch.unwrap_or(-1),
    );
    let _ = writeln!(
        out,
        "# HELP chronik_broker_state The broker's lifecycle state (1 for the current one)."
    );
    let _ = writeln!(out, "# TYPE chronik_broker_state gauge");
    for state in BrokerState::ALL {
        let _ = writeln!(
            out,
            "chronik_broker_state{{state=\"{}\"}} {}",
            state.name(),
            u8::from(state == status.state)
        );
    }
    gauge(
        &mut out,
        "chronik_broker_offline_log_dirs",
        "Log directories offline after an I/O failure (the broker must be restarted to bring them back).",
        status.offline_log_dirs.len(),
    );
    gauge(
        &mut out,
        "chronik_broker_metadata_offset",
        "Offset of the metadata log this broker has applied.",
        image.offset,
    );
    gauge(
        &mut out,
        "chronik_broker_topics",
        "Topics in the metadata image.",
        image.topics.len(),
    );
    gauge(
        &mut out,
        "chronik_broker_partitions",
        "Partitions in the metadata image.",
        counts.partitions,
    );
    gauge(
        &mut out,
        "chronik_broker_leader_partitions",
        "Partitions this broker leads.",
        counts.led,
    );
    gauge(
        &mut out,
        "chronik_broker_leaderless_partitions",
        "Partitions without a leader (offline).",
        counts.leaderless,
    );
    if let Some(replicas) = &state.replicas {
        gauge(
            &mut out,
            "chronik_broker_unopened_partition_logs",
            "Partitions this broker replicates whose log could not be opened (retried).",
            replicas.unopened_logs().len(),
        );
        gauge(
            &mut out,
            "chronik_broker_replica_partitions",
            "Partitions the metadata image makes this broker a replica of.",
            counts.replicated,
        );
        gauge(
            &mut out,
            "chronik_broker_hosted_partitions",
            "Partitions this broker hosts: their logs are open.",
            replicas.hosted_partitions(),
        );
        partition_gauges(
            &mut out,
            replicas,
            status.broker_id,
            state.partition_metrics,
        );
    }
    if let Some(open) = crate::fds::open_files() {
        gauge(
            &mut out,
            "chronik_broker_open_files",
            "File descriptors this broker has open.",
            open,
        );
    }
    if let Some(limit) = crate::fds::open_files_limit() {
        gauge(
            &mut out,
            "chronik_broker_max_open_files",
            "The broker's limit on open file descriptors (soft RLIMIT_NOFILE).",
            limit,
        );
    }
    let files = crate::log::file_cache::FileCache::global().stats();
    gauge(
        &mut out,
        "chronik_broker_segment_files_open",
        "Segment and index files the descriptor cache holds open (log::file_cache).",
        files.open,
    );
    gauge(
        &mut out,
        "chronik_broker_segment_files_capacity",
        "Segment and index files the descriptor cache keeps open at most while they are idle \
         and fsynced (from the open files limit, leaving room for sockets).",
        files.capacity,
    );
    counter(
        &mut out,
        "chronik_broker_segment_file_opens_total",
        "Segment and index files opened by the descriptor cache (first opens and reopens).",
        files.opens,
    );
    counter(
        &mut out,
        "chronik_broker_segment_file_evictions_total",
        "Idle, fsynced segment and index files the descriptor cache closed to stay within its \
         capacity.",
        files.evictions,
    );
    counter(
        &mut out,
        "chronik_broker_segment_file_pinned_total",
        "Times the descriptor cache, over capacity, could not close a file because it was in use \
         or held writes not yet fsynced.",
        files.pinned_skips,
    );
    if let Some(sessions) = &state.fetch_sessions {
        gauge(
            &mut out,
            "chronik_broker_incremental_fetch_sessions",
            "Fetch sessions cached (KIP-227; Kafka's NumIncrementalFetchSessions).",
            sessions.sessions(),
        );
        gauge(
            &mut out,
            "chronik_broker_incremental_fetch_partitions_cached",
            "Partitions over every cached fetch session (Kafka's \
             NumIncrementalFetchPartitionsCached).",
            sessions.cached_partitions(),
        );
    }
    if let Some(groups) = &state.groups {
        let stats = groups.stats();
        gauge(
            &mut out,
            "chronik_broker_offsets_partitions_loaded",
            "Offsets topic partitions this broker coordinates (loaded).",
            stats.loaded_partitions,
        );
        gauge(
            &mut out,
            "chronik_broker_offsets_partitions_loading",
            "Offsets topic partitions this broker leads but is still loading.",
            stats.loading_partitions,
        );
        gauge(
            &mut out,
            "chronik_broker_groups",
            "Consumer groups this broker coordinates.",
            stats.groups,
        );
        gauge(
            &mut out,
            "chronik_broker_group_members",
            "Members of the consumer groups this broker coordinates.",
            stats.members,
        );
        group_gauges(&mut out, &groups.snapshot(), state.partition_metrics);
    }
    if let Some(seconds) = crate::metrics::process_cpu_seconds() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
        );
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total {seconds}");
    }
    crate::metrics::metrics().render(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Per-group gauges of the groups this broker coordinates: members and state always, committed offsets
/// per partition with `per_partition`. A group's lag on a partition is its high watermark (reported by
/// the leader's `chronik_broker_partition_high_watermark`) minus the committed offset:
///
/// ```text
/// max by (topic, partition) (chronik_broker_partition_high_watermark)
///   - on (topic, partition) group_right
///   chronik_broker_consumer_group_committed_offset
/// ```
fn group_gauges(out: &mut String, groups: &[crate::group::GroupSnapshot], per_partition: bool) {
    family(
        out,
        "chronik_broker_consumer_group_members",
        "Members of each group this broker coordinates.",
        groups.iter().map(|g| {
            (
                format!("group=\"{}\"", escape_label(&g.group_id)),
                g.members,
            )
        }),
    );
    family(
        out,
        "chronik_broker_consumer_group_state",
        "The state of each group (1 for the current one).",
        groups.iter().map(|g| {
            (
                format!(
                    "group=\"{}\",state=\"{}\"",
                    escape_label(&g.group_id),
                    g.state
                ),
                1,
            )
        }),
    );
    if !per_partition {
        return;
    }
    family(
        out,
        "chronik_broker_consumer_group_committed_offset",
        "The offset each group committed on each partition.",
        groups.iter().flat_map(|g| {
            g.offsets.iter().map(|((topic, partition), offset)| {
                (
                    format!(
                        "group=\"{}\",topic=\"{}\",partition=\"{partition}\"",
                        escape_label(&g.group_id),
                        escape_label(topic)
                    ),
                    *offset,
                )
            })
        }),
    );
}

/// One gauge family: its HELP and TYPE lines, then a sample per (labels, value).
fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped (group ids are any string).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One hosted partition's row of per-partition gauges.
struct PartitionRow {
    labels: String,
    log_end_offset: i64,
    high_watermark: i64,
    size: u64,
    segments: usize,
}

/// Gauges of the partitions this broker hosts, read at scrape time: totals always, and one series per
/// partition when `per_partition` (Kafka's `Log` and `Partition` metrics: `LogEndOffset`, `Size`,
/// `NumLogSegments`, `UnderReplicated`, `UnderMinIsr`).
fn partition_gauges(
    out: &mut String,
    replicas: &crate::replica::ReplicaManager,
    broker_id: i32,
    per_partition: bool,
) {
    let partitions = replicas.partitions();
    let (mut under_replicated, mut under_min_isr, mut size) = (0usize, 0usize, 0u64);
    let mut rows = Vec::with_capacity(if per_partition { partitions.len() } else { 0 });
    // (labels, records behind the leader's log end) of each follower of a partition led here.
    let mut follower_lag: Vec<(String, i64)> = Vec::new();
    for partition in &partitions {
        let state = partition.state();
        if state.leader == broker_id {
            under_replicated += usize::from(state.isr.len() < state.replicas.len());
            under_min_isr += usize::from(state.isr.len() < state.min_insync_replicas);
            if per_partition {
                let leo = partition.log.log_end_offset();
                for &follower in state.replicas.iter().filter(|&&r| r != broker_id) {
                    // A follower that has not fetched since this leader took over is as far
                    // behind as the whole log, as far as the leader knows.
                    let fetched = partition.follower(follower).map_or(0, |f| f.log_end_offset);
                    follower_lag.push((
                        format!(
                            "topic=\"{}\",partition=\"{}\",follower=\"{follower}\"",
                            partition.topic, partition.index
                        ),
                        (leo - fetched).max(0),
                    ));
                }
            }
        }
        let bytes = partition.log.size_in_bytes();
        size += bytes;
        if per_partition {
            rows.push(PartitionRow {
                labels: format!(
                    "topic=\"{}\",partition=\"{}\"",
                    partition.topic, partition.index
                ),
                log_end_offset: partition.log.log_end_offset(),
                high_watermark: partition.log.high_watermark(),
                size: bytes,
                segments: partition.log.segment_count(),
            });
        }
    }
    gauge(
        out,
        "chronik_broker_under_replicated_partitions",
        "Partitions this broker leads whose ISR is smaller than their replica set.",
        under_replicated,
    );
    gauge(
        out,
        "chronik_broker_under_min_isr_partitions",
        "Partitions this broker leads whose ISR is below min.insync.replicas (acks=all is refused).",
        under_min_isr,
    );
    gauge(
        out,
        "chronik_broker_log_size_bytes",
        "Bytes of every partition log this broker hosts.",
        size,
    );
    if !per_partition {
        return;
    }
    rows.sort_by(|a, b| a.labels.cmp(&b.labels));
    family(
        out,
        "chronik_broker_partition_log_end_offset",
        "The offset after the last record of the partition's log here.",
        rows.iter().map(|r| (r.labels.clone(), r.log_end_offset)),
    );
    family(
        out,
        "chronik_broker_partition_high_watermark",
        "The partition's high watermark as this broker knows it.",
        rows.iter().map(|r| (r.labels.clone(), r.high_watermark)),
    );
    family(
        out,
        "chronik_broker_partition_log_size_bytes",
        "Bytes of the partition's log here.",
        rows.iter().map(|r| (r.labels.clone(), r.size)),
    );
    family(
        out,
        "chronik_broker_partition_log_segments",
        "Segments of the partition's log here.",
        rows.iter().map(|r| (r.labels.clone(), r.segments)),
    );
    follower_lag.sort();
    family(
        out,
        "chronik_broker_follower_lag_records",
        "Records a follower of a partition this broker leads is behind the leader's log end, as \
         of its last fetch (Kafka's per-replica lag; the ISR rules are in replica::isr).",
        follower_lag,
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::tests::{register, topic, update};
    use axum::body::Body;
    use axum::http::Request;
    use chronik_metadata::NO_LEADER;
    use tower::ServiceExt;
    use uuid::Uuid;

    fn state(status: BrokerStatus) -> (HttpState, watch::Sender<BrokerStatus>) {
        let (tx, rx) = watch::channel(status);
        let state = HttpState {
            status: rx,
            metadata: Arc::new(MetadataCache::new()),
            groups: None,
            replicas: None,
            fetch_sessions: None,
            partition_metrics: true,
        };
        (state, tx)
    }

    fn starting() -> BrokerStatus {
        BrokerStatus {
            broker_id: 1,
            incarnation_id: Uuid::new_v4(),
            state: BrokerState::Starting,
            broker_epoch: None,
            cluster_id: None,
            fenced: true,
            offline_log_dirs: Vec::new(),
        }
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let code = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn group_ids_are_escaped_in_label_values() {
        let mut out = String::new();
        let groups = [crate::group::GroupSnapshot {
            group_id: "a\"b\\c\nd".to_owned(),
            state: "Stable",
            members: 2,
            offsets: vec![(("t".to_owned(), 0), 42)],
        }];
        group_gauges(&mut out, &groups, true);
        assert!(
            out.contains("chronik_broker_consumer_group_members{group=\"a\\\"b\\\\c\\nd\"} 2"),
            "{out}"
        );
        assert!(out.contains(
            "chronik_broker_consumer_group_committed_offset{group=\"a\\\"b\\\\c\\nd\",topic=\"t\",partition=\"0\"} 42"
        ), "{out}");
        let mut out = String::new();
        group_gauges(&mut out, &groups, false);
        assert!(!out.contains("committed_offset{"), "{out}");
    }

    #[tokio::test]
    async fn healthz_is_ok_while_the_process_runs() {
        let (state, _tx) = state(starting());
        assert_eq!(get(router(state), "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_registered_unfenced_and_caught_up() {
        let (state, tx) = state(starting());
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not registered"), "{body}");

        tx.send_modify(|s| {
            s.broker_epoch = Some(3);
            s.fenced = false;
            s.state = BrokerState::Running;
        });
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(
            code,
            StatusCode::SERVICE_UNAVAILABLE,
            "metadata is behind the registration"
        );
        assert!(body.contains("behind"), "{body}");

        state
            .metadata
            .apply(&[update(3, true, &[register(1, 9092)])])
            .expect("applies");
        assert_eq!(
            get(router(state.clone()), "/readyz").await.0,
            StatusCode::OK
        );

        tx.send_modify(|s| s.state = BrokerState::PendingControlledShutdown);
        assert_eq!(
            get(router(state), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// Issue #11 (6): a broker whose log dir went offline stays up but says why it is not ready, and
    /// a gauge counts its offline dirs.
    #[tokio::test]
    async fn an_offline_log_dir_makes_the_broker_unready_with_the_reason_and_a_gauge() {
        let (state, tx) = state(starting());
        state
            .metadata
            .apply(&[update(3, true, &[register(1, 9092)])])
            .expect("applies");
        tx.send_modify(|s| {
            s.broker_epoch = Some(3);
            s.fenced = false;
            s.state = BrokerState::Running;
        });
        assert_eq!(
            get(router(state.clone()), "/readyz").await.0,
            StatusCode::OK
        );
        let (_, metrics) = get(router(state.clone()), "/metrics").await;
        assert!(
            metrics.contains("chronik_broker_offline_log_dirs 0"),
            "{metrics}"
        );

        tx.send_modify(|s| {
            s.offline_log_dirs = vec![crate::log::OfflineLogDir {
                dir: "/data/broker-1".into(),
                reason: "No space left on device".into(),
                offline_partitions: 2,
            }]
        });
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("/data/broker-1 is offline") && body.contains("No space left"),
            "{body}"
        );
        let (_, metrics) = get(router(state), "/metrics").await;
        assert!(
            metrics.contains("chronik_broker_offline_log_dirs 1"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn metrics_report_state_epoch_and_partitions() {
        let (state, tx) = state(starting());
        let mut records = vec![register(1, 9092), register(2, 9093)];
        records.extend(topic("orders", Uuid::new_v4(), &[1, 2, NO_LEADER]));
        state
            .metadata
            .apply(&[update(8, true, &records)])
            .expect("applies");
        tx.send_modify(|s| {
            s.broker_epoch = Some(4);
            s.fenced = false;
            s.state = BrokerState::Running;
        });
        let (code, body) = get(router(state), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        for line in [
            "chronik_broker_id 1",
            "chronik_broker_epoch 4",
            "chronik_broker_state{state=\"running\"} 1",
            "chronik_broker_state{state=\"starting\"} 0",
            "chronik_broker_metadata_offset 8",
            "chronik_broker_topics 1",
            "chronik_broker_partitions 3",
            "chronik_broker_leader_partitions 1",
            "chronik_broker_leaderless_partitions 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing '{line}' in:\n{body}"
            );
        }
    }
}
