//! HTTP for operators and orchestrators: `/healthz` (the process is up), `/readyz` (this node is in a
//! quorum with a known leader, and votes: `raft::vote_hold`), `/metrics` (Prometheus text),
//! `/api/v1/cluster` (the cluster as JSON),
//! and the web console at `/` with its APIs (`crate::console`).
//!
//! The first three stay open whatever the security settings (orchestrators probe them; the metrics are
//! counts, with no names, addresses or ids); `/api/v1/cluster` and the console reveal the cluster's
//! brokers, controllers, topics and records and pass `Authenticator::check` (a token, in a header or
//! the console's cookie, or a verified client certificate).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::auth::Authenticator;
use super::{cluster_view, partition_health};
use crate::console::{self, Console};
use crate::quorum::Quorum;

pub fn router(quorum: Arc<Quorum>, auth: Arc<Authenticator>, console: Arc<Console>) -> Router {
    let protected = Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route_layer(middleware::from_fn_with_state(
            auth.clone(),
            console::session::require_for_apis,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(protected)
        .with_state(quorum)
        .merge(console::api::router(console, auth))
}

async fn readyz(State(quorum): State<Arc<Quorum>>) -> Response {
    let metrics = quorum.raft().metrics().borrow().clone();
    match (&metrics.running_state, metrics.current_leader) {
        (Err(fatal), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        )
            .into_response(),
        (Ok(()), None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no controller leader known\n",
        )
            .into_response(),
        // A node that holds its vote is not yet a voter the quorum can count on: an orchestrator that
        // waits for ready before restarting the next controller keeps a majority of votes.
        (Ok(()), Some(leader)) if quorum.vote_held() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "leader {leader}; started with an empty Raft log and not caught up with the other \
                 controllers yet: holding its vote\n"
            ),
        )
            .into_response(),
        (Ok(()), Some(leader)) => {
            (StatusCode::OK, format!("ready; leader {leader}\n")).into_response()
        }
    }
}

async fn cluster(State(quorum): State<Arc<Quorum>>) -> Response {
    Json(cluster_view(&quorum)).into_response()
}

async fn metrics(State(quorum): State<Arc<Quorum>>) -> Response {
    let m = quorum.raft().metrics().borrow().clone();
    let image = quorum.applied().image();
    let (partitions, leaderless, under_replicated) = partition_health(&image);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, i64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |v: i64| vec![(String::new(), v)];
    gauge(
        "chronik_controller_raft_term",
        "Current Raft term.",
        &plain(m.current_term as i64),
    );
    gauge(
        "chronik_controller_raft_commit_index",
        "Last committed Raft log index.",
        &plain(quorum.committed_index().map_or(0, |c| c as i64)),
    );
    gauge(
        "chronik_controller_raft_applied_index",
        "Last applied Raft log index.",
        &plain(m.last_applied.map_or(0, |l| l.index as i64)),
    );
    gauge(
        "chronik_controller_raft_vote_held",
        "1 while this controller, started with an empty Raft log, refuses candidates that have a log \
         because it has not caught up with the other controllers yet.",
        &plain(i64::from(quorum.vote_held())),
    );
    gauge(
        "chronik_controller_is_leader",
        "1 if this node is the active controller.",
        &plain(i64::from(m.current_leader == Some(quorum.node_id()))),
    );
    let states = ["unfenced", "fenced", "controlled_shutdown"];
    let by_state: Vec<(String, i64)> = states
        .iter()
        .map(|s| {
            let n = image
                .brokers
                .values()
                .filter(|b| super::broker_state(b) == *s)
                .count();
            (format!("{{state=\"{s}\"}}"), n as i64)
        })
        .collect();
    gauge(
        "chronik_controller_brokers",
        "Registered brokers by state.",
        &by_state,
    );
    gauge(
        "chronik_controller_topics",
        "Topics.",
        &plain(image.topics.len() as i64),
    );
    gauge(
        "chronik_controller_partitions",
        "Partitions.",
        &plain(partitions as i64),
    );
    gauge(
        "chronik_controller_leaderless_partitions",
        "Partitions without a leader.",
        &plain(leaderless as i64),
    );
    gauge(
        "chronik_controller_under_replicated_partitions",
        "Partitions whose ISR is smaller than their replica set.",
        &plain(under_replicated as i64),
    );
    let last_log = m.last_log_index.unwrap_or(0);
    let purged = m.purged.map_or(0, |l| l.index + 1);
    gauge(
        "chronik_controller_raft_last_log_index",
        "Last index in this controller's Raft log.",
        &plain(last_log as i64),
    );
    gauge(
        "chronik_controller_raft_log_entries",
        "Raft log entries this controller keeps (not yet purged behind a snapshot).",
        &plain(
            last_log
                .saturating_sub(purged)
                .saturating_add(u64::from(m.last_log_index.is_some())) as i64,
        ),
    );
    gauge(
        "chronik_controller_raft_snapshot_index",
        "Raft log index of the latest snapshot (-1: none yet).",
        &plain(m.snapshot.map_or(-1, |l| l.index as i64)),
    );
    crate::metrics::metrics().render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
