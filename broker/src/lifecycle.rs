//! `BrokerLifecycleManager` (after KRaft's class of the same name): registers this broker process with
//! the controller quorum, heartbeats for as long as the process runs, and hands its leaderships over in
//! a controlled shutdown. `BrokerStatus` is what it knows, published on a watch channel so HTTP handlers,
//! metrics and tests read it without locking.
//!
//! What must stay true:
//! - Each process start registers under a fresh incarnation id; the broker epoch the controller returns
//!   goes with every heartbeat, and a `STALE_BROKER_EPOCH` or `BROKER_ID_NOT_REGISTERED` answer means the
//!   registration is gone: register again (a new epoch), never carry on with the old one.
//! - The broker asks to be unfenced (`want_fence = false`) only once its metadata has reached its own
//!   registration, i.e. it knows at least as much as the controller did when it registered.
//! - Only this task sends heartbeats, so a controlled shutdown is never interleaved with ordinary ones.
//! - A controlled shutdown ends, one way or the other, within its timeout.
//! - Every heartbeat carries the log directories the `LogManager` has seen fail (KIP-858's
//!   `OfflineLogDirs`), so the controller moves this broker's replicas away while it stays up.
//! - For as long as a registration lasts, controlled shutdown included, a `BrokerSession` stream is
//!   held open on the active controller and reopened at once when it ends: the controller fences a
//!   broker whose stream stays closed past a short grace (a dead process), so a live one must never
//!   leave it closed for long. It is dropped when the registration is lost or the process stops.
//! - A leader whose listener refused this broker's replica fetcher is reported to the controller once
//!   per registration of that leader (`run_unreachable_reports`): evidence it combines with the
//!   leader's own closed session stream, never a verdict.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::convert::{endpoint_to_proto, feature_ranges_to_proto};
use chronik_metadata::features;
use chronik_metadata::ResponseError;
use chronik_metadata::{BrokerId, Endpoint};
use chronik_proto::v1::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerSessionRequest, RegisterBrokerRequest,
    ReportUnreachableBrokerRequest,
};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::controller_client::ControllerClient;
use crate::error::{BrokerError, ControllerCallError};
use crate::log::LogManager;
use crate::metadata::MetadataCache;
use crate::replica::ReplicaManager;
use crate::status::{BrokerState, BrokerStatus};

/// Used when a controller answers a registration without a heartbeat interval.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(2000);
/// How often a controlled shutdown asks whether it may finish.
const CONTROLLED_SHUTDOWN_POLL: Duration = Duration::from_millis(200);
const INITIAL_REGISTER_BACKOFF: Duration = Duration::from_millis(100);
const MAX_REGISTER_BACKOFF: Duration = Duration::from_secs(1);
/// Between attempts to reopen the session stream: short, since the controller's grace (300 ms by
/// default) is what a reconnect has.
const INITIAL_SESSION_STREAM_BACKOFF: Duration = Duration::from_millis(20);
const MAX_SESSION_STREAM_BACKOFF: Duration = Duration::from_millis(100);

/// What the lifecycle manager registers and how long it waits on shutdown.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    pub broker_id: BrokerId,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub controlled_shutdown_timeout: Duration,
    /// The data directory's id (`LogManager::dir_id`).
    pub log_dir_id: Uuid,
}

/// A registration held with the controller.
#[derive(Clone, Copy, Debug)]
struct Session {
    broker_epoch: i64,
    heartbeat_interval: Duration,
}

/// Why a session's heartbeat loop stopped.
enum SessionEnd {
    /// The controller no longer knows this registration: register again.
    Lost,
    /// A controlled shutdown was requested.
    ShutdownRequested,
    Cancelled,
}

pub struct BrokerLifecycleManager {
    config: LifecycleConfig,
    client: Arc<ControllerClient>,
    metadata: Arc<MetadataCache>,
    status: watch::Sender<BrokerStatus>,
    /// Where offline log dirs are learned from; `None` in tests without logs.
    logs: Option<Arc<LogManager>>,
}

impl BrokerLifecycleManager {
    /// A manager for a new incarnation of the broker (a fresh random incarnation id).
    pub fn new(
        config: LifecycleConfig,
        client: Arc<ControllerClient>,
        metadata: Arc<MetadataCache>,
    ) -> Self {
        let status = BrokerStatus::new(config.broker_id, Uuid::new_v4());
        let (status, _) = watch::channel(status);
        BrokerLifecycleManager {
            config,
            client,
            metadata,
            status,
            logs: None,
        }
    }

    /// Reports the offline directories of `logs` in every heartbeat (KIP-858).
    pub fn with_log_manager(mut self, logs: Arc<LogManager>) -> Self {
        self.logs = Some(logs);
        self
    }

    /// The broker's status, updated on every change.
    pub fn status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.subscribe()
    }

    /// Registers and heartbeats until `shutdown` (then hands leaderships over in a controlled shutdown)
    /// or `cancel` (then stops at once). Fails only when the controller rejects this broker for good.
    pub async fn run(
        self,
        cancel: CancellationToken,
        shutdown: CancellationToken,
    ) -> Result<(), BrokerError> {
        let result = self.run_sessions(&cancel, &shutdown).await;
        self.update(|s| s.state = BrokerState::Stopped);
        info!(
            broker_id = self.config.broker_id,
            "broker lifecycle stopped"
        );
        result
    }

    async fn run_sessions(
        &self,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), BrokerError> {
        loop {
            let session = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                // Not registered: there are no leaderships to hand over.
                _ = shutdown.cancelled() => return Ok(()),
                session = self.register() => session?,
            };
            let stream = self.hold_session_stream(session);
            tokio::pin!(stream);
            let end = tokio::select! {
                end = self.heartbeat_session(session, cancel, shutdown) => end,
                never = &mut stream => match never {},
            };
            match end {
                SessionEnd::Lost => continue,
                SessionEnd::Cancelled => return Ok(()),
                SessionEnd::ShutdownRequested => {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = self.controlled_shutdown(session) => {}
                        never = &mut stream => match never {},
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Registers this incarnation, retrying until it succeeds or is rejected for good.
    async fn register(&self) -> Result<Session, BrokerError> {
        let mut backoff = INITIAL_REGISTER_BACKOFF;
        let mut failures = 0u32;
        let mut waiting_for_previous = false;
        loop {
            let status = self.status.borrow().clone();
            let request = RegisterBrokerRequest {
                broker_id: self.config.broker_id,
                incarnation_id: status.incarnation_id.to_string(),
                endpoints: self
                    .config
                    .endpoints
                    .iter()
                    .map(endpoint_to_proto)
                    .collect(),
                rack: self.config.rack.clone(),
                cluster_id: status.cluster_id.clone().unwrap_or_default(),
                // A controller refuses a broker that cannot serve a finalized level (UNSUPPORTED_VERSION,
                // retried below: the level may be downgraded, or the controller be of this release).
                supported_features: feature_ranges_to_proto(&features::supported_features()),
                log_dir_id: self.config.log_dir_id.to_string(),
            };
            match self.client.register_broker(request).await {
                Ok(reply) => {
                    return self.registered(
                        &status,
                        reply.broker_epoch,
                        reply.cluster_id,
                        reply.heartbeat_interval_ms,
                    )
                }
                Err(e) if e.is(ResponseError::DuplicateBrokerRegistration) => {
                    if !waiting_for_previous {
                        waiting_for_previous = true;
                        info!(broker_id = self.config.broker_id,
                            "broker id still held by a previous incarnation; waiting for its session to expire");
                    }
                }
                Err(e)
                    if e.is(ResponseError::InconsistentClusterId)
                        || e.is(ResponseError::InvalidRequest) =>
                {
                    return Err(BrokerError::Rejected {
                        broker_id: self.config.broker_id,
                        source: e,
                    });
                }
                Err(e) => {
                    log_repeated(
                        failures,
                        "cannot register with the controller; retrying",
                        &e,
                    );
                    failures += 1;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_REGISTER_BACKOFF);
        }
    }

    fn registered(
        &self,
        before: &BrokerStatus,
        broker_epoch: i64,
        cluster_id: String,
        heartbeat_interval_ms: u32,
    ) -> Result<Session, BrokerError> {
        if let Some(known) = before.cluster_id.as_deref() {
            if !cluster_id.is_empty() && known != cluster_id {
                return Err(BrokerError::Rejected {
                    broker_id: self.config.broker_id,
                    source: ControllerCallError::Refused {
                        address: self.client.active_controller().unwrap_or_default(),
                        kafka_error: Some(ResponseError::InconsistentClusterId),
                        code: tonic::Code::FailedPrecondition,
                        message: format!(
                            "joined cluster {known}, now answered by cluster {cluster_id}"
                        ),
                    },
                });
            }
        }
        let heartbeat_interval = match heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL,
            ms => Duration::from_millis(u64::from(ms)),
        };
        info!(
            broker_id = self.config.broker_id,
            broker_epoch,
            cluster_id = %cluster_id,
            heartbeat_interval_ms = heartbeat_interval.as_millis() as u64,
            "registered with the controller"
        );
        self.update(|s| {
            s.broker_epoch = Some(broker_epoch);
            if !cluster_id.is_empty() {
                s.cluster_id = Some(cluster_id);
            }
            s.fenced = true;
        });
        Ok(Session {
            broker_epoch,
            heartbeat_interval,
        })
    }

    /// Heartbeats every interval, and at once when the metadata catches up to the registration, until
    /// the session is lost, shutdown is requested or the task is cancelled.
    async fn heartbeat_session(
        &self,
        session: Session,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let mut ticker = tokio::time::interval(session.heartbeat_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut images = self.metadata.subscribe();
        let mut asked_to_unfence = false;
        let mut failures = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                _ = shutdown.cancelled() => return SessionEnd::ShutdownRequested,
                _ = ticker.tick() => {}
                // Reaching the registration offset is worth a heartbeat right away: it unfences us.
                changed = images.changed(), if !asked_to_unfence => {
                    if changed.is_err() || !self.caught_up(session) {
                        continue;
                    }
                }
            }
            let request = self.heartbeat_request(session, false);
            let want_fence = request.want_fence;
            let reply = tokio::select! {
                biased;
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                _ = shutdown.cancelled() => return SessionEnd::ShutdownRequested,
                reply = self.client.broker_heartbeat(request) => reply,
            };
            match reply {
                Ok(reply) => {
                    if failures > 0 {
                        info!("heartbeats answered again");
                    }
                    failures = 0;
                    asked_to_unfence |= !want_fence;
                    self.on_heartbeat(&reply);
                }
                Err(e)
                    if e.is(ResponseError::StaleBrokerEpoch)
                        || e.is(ResponseError::BrokerIdNotRegistered) =>
                {
                    warn!(broker_epoch = session.broker_epoch, error = %e,
                        "the controller no longer knows this registration; registering again");
                    self.update(|s| {
                        s.broker_epoch = None;
                        s.fenced = true;
                        if s.state == BrokerState::Running {
                            s.state = BrokerState::Fenced;
                        }
                    });
                    return SessionEnd::Lost;
                }
                Err(e) => {
                    log_repeated(failures, "heartbeat failed; retrying", &e);
                    failures += 1;
                }
            }
        }
    }

    /// Keeps a `BrokerSession` stream of `session` open on the active controller, reopening it as soon as
    /// it ends (the controller lost leadership, the connection broke). Runs until dropped.
    async fn hold_session_stream(&self, session: Session) -> std::convert::Infallible {
        let request = BrokerSessionRequest {
            broker_id: self.config.broker_id,
            broker_epoch: session.broker_epoch,
        };
        let mut backoff = INITIAL_SESSION_STREAM_BACKOFF;
        let mut failures = 0u32;
        loop {
            match self.client.open_broker_session(request).await {
                Ok((address, opened, mut events)) => {
                    debug!(controller = %address, term = opened.term, grace_ms = opened.grace_ms,
                        "session stream open");
                    if failures > 0 {
                        info!(controller = %address, "session stream open again");
                    }
                    failures = 0;
                    let opened_at = Instant::now();
                    // Nothing more is sent; the stream ends with the controller's leadership or the
                    // connection.
                    loop {
                        match events.message().await {
                            Ok(Some(_)) => continue,
                            Ok(None) => break,
                            Err(status) => {
                                debug!(controller = %address, %status, "session stream broke");
                                self.client.report_failure(&address);
                                break;
                            }
                        }
                    }
                    // Reopen at once, the grace runs from now; but never spin on a controller that
                    // keeps closing it.
                    if opened_at.elapsed() >= MAX_SESSION_STREAM_BACKOFF {
                        backoff = INITIAL_SESSION_STREAM_BACKOFF;
                        continue;
                    }
                }
                Err(e) => {
                    log_repeated(failures, "cannot open the session stream; retrying", &e);
                    failures += 1;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_SESSION_STREAM_BACKOFF);
        }
    }

    /// Moves the state on what a heartbeat answer says.
    fn on_heartbeat(&self, reply: &BrokerHeartbeatResponse) {
        let before = self.status.borrow().state;
        let after = match (before, reply.is_fenced) {
            (BrokerState::Starting | BrokerState::Fenced, false) => BrokerState::Running,
            (BrokerState::Running, true) => BrokerState::Fenced,
            (state, _) => state,
        };
        if after != before {
            let epoch = self.status.borrow().broker_epoch.unwrap_or(-1);
            match after {
                BrokerState::Running => info!(broker_epoch = epoch, "unfenced; broker is running"),
                _ => warn!(broker_epoch = epoch, "fenced by the controller"),
            }
        }
        self.update(|s| {
            s.state = after;
            s.fenced = reply.is_fenced;
        });
    }

    /// Asks the controller to move this broker's leaderships away, heartbeating `want_shut_down` until it
    /// says the broker may stop or the timeout passes.
    async fn controlled_shutdown(&self, session: Session) {
        let timeout = self.config.controlled_shutdown_timeout;
        info!(
            broker_epoch = session.broker_epoch,
            timeout_ms = timeout.as_millis() as u64,
            "starting controlled shutdown"
        );
        self.update(|s| s.state = BrokerState::PendingControlledShutdown);
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "controlled shutdown did not finish in time; stopping anyway"
                );
                return;
            }
            let request = self.heartbeat_request(session, true);
            match tokio::time::timeout(remaining, self.client.broker_heartbeat(request)).await {
                Ok(Ok(reply)) if reply.should_shut_down => {
                    info!("controlled shutdown complete: the controller released this broker");
                    self.update(|s| s.fenced = reply.is_fenced);
                    return;
                }
                Ok(Ok(reply)) => {
                    debug!(
                        in_controlled_shutdown = reply.in_controlled_shutdown,
                        "waiting for leaderships to move away"
                    );
                }
                Ok(Err(e))
                    if e.is(ResponseError::StaleBrokerEpoch)
                        || e.is(ResponseError::BrokerIdNotRegistered) =>
                {
                    info!(error = %e, "registration already gone; nothing to hand over");
                    return;
                }
                Ok(Err(e)) => debug!(error = %e, "controlled shutdown heartbeat failed"),
                Err(_) => {}
            }
            tokio::time::sleep(CONTROLLED_SHUTDOWN_POLL.min(remaining)).await;
        }
    }

    fn heartbeat_request(&self, session: Session, want_shut_down: bool) -> BrokerHeartbeatRequest {
        let offline = self
            .logs
            .as_ref()
            .map(|logs| logs.offline_log_dirs())
            .unwrap_or_default();
        if offline != self.status.borrow().offline_log_dirs {
            for dir in &offline {
                warn!(dir = %dir.dir, reason = %dir.reason,
                    "log directory offline; asking the controller to move its replicas away");
            }
            let reported = offline.clone();
            self.update(|s| s.offline_log_dirs = reported);
        }
        BrokerHeartbeatRequest {
            broker_id: self.config.broker_id,
            broker_epoch: session.broker_epoch,
            current_metadata_offset: self.metadata.offset(),
            want_fence: !self.caught_up(session),
            want_shut_down,
            offline_log_dirs: offline.into_iter().map(|d| d.dir).collect(),
        }
    }

    /// The metadata has reached this broker's own registration record.
    fn caught_up(&self, session: Session) -> bool {
        self.metadata.offset() >= session.broker_epoch.max(0) as u64
    }

    fn update(&self, change: impl FnOnce(&mut BrokerStatus)) {
        self.status.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
    }
}

/// Logs a retried failure at warn the first time and at debug after that.
fn log_repeated(failures: u32, message: &'static str, error: &ControllerCallError) {
    if failures == 0 {
        warn!(error = %error, "{message}");
    } else {
        debug!(error = %error, "{message}");
    }
}

/// Reports each leader registration whose listener refused this broker's replica fetcher to the
/// active controller, once (issue #12): with the leader's session stream closed too, the controller
/// fences it without waiting out the rest of the grace. A report that cannot be delivered is not
/// retried: the grace and the session timeout still fence a dead leader.
pub async fn run_unreachable_reports(
    replicas: Arc<ReplicaManager>,
    client: Arc<ControllerClient>,
    status: watch::Receiver<BrokerStatus>,
    cancel: CancellationToken,
) {
    let mut changes = replicas.refusal_changes();
    let mut reported: HashSet<(BrokerId, i64)> = HashSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let Some(broker_epoch) = status.borrow().broker_epoch else {
            continue;
        };
        let refused = replicas.refused_leaders();
        reported.retain(|r| refused.contains(r));
        for (leader, leader_epoch) in refused {
            if !reported.insert((leader, leader_epoch)) {
                continue;
            }
            let request = ReportUnreachableBrokerRequest {
                broker_id: replicas.broker_id(),
                broker_epoch,
                unreachable_broker_id: leader,
                unreachable_broker_epoch: leader_epoch,
            };
            match client.report_unreachable_broker(request).await {
                Ok(_) => debug!(
                    leader,
                    leader_epoch, "reported the leader's listener refusing"
                ),
                Err(e) => debug!(
                    leader,
                    leader_epoch, "could not report an unreachable leader: {e}"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: BrokerState, epoch: Option<i64>, fenced: bool) -> BrokerStatus {
        BrokerStatus {
            state,
            broker_epoch: epoch,
            fenced,
            ..BrokerStatus::new(1, Uuid::new_v4())
        }
    }

    #[test]
    fn ready_only_when_registered_unfenced_and_caught_up() {
        assert!(status(BrokerState::Starting, None, true)
            .not_ready_reason(0)
            .is_some_and(|r| r.contains("not registered")));
        assert!(status(BrokerState::Starting, Some(5), true)
            .not_ready_reason(5)
            .is_some_and(|r| r.contains("fenced")));
        assert!(status(BrokerState::Running, Some(5), false)
            .not_ready_reason(4)
            .is_some_and(|r| r.contains("behind")));
        assert_eq!(
            status(BrokerState::Running, Some(5), false).not_ready_reason(5),
            None
        );
        assert!(
            status(BrokerState::PendingControlledShutdown, Some(5), false)
                .not_ready_reason(9)
                .is_some_and(|r| r.contains("shutting down"))
        );
    }
}
