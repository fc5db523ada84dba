//! Broker liveness, tracked by the active controller only and in memory only (heartbeats write nothing
//! to the log unless a broker's state changes). A broker whose last heartbeat is older than the session
//! timeout is fenced, one broker at a time so each fencing's effects land before the next. A controller
//! that becomes active gives every registered broker a fresh session rather than fencing it for the
//! time leadership took to move.
//!
//! Contact is recorded when a heartbeat of the broker's current registration arrives
//! (`record_heartbeat`), before its outcome goes through the quorum: a slow quorum delays the reply,
//! not the proof that the broker is alive (Kafka's `BrokerHeartbeatManager` likewise touches the
//! session before queueing the request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::quorum::Quorum;
use crate::state::cluster::{evict_inactive_broker, fence_broker};
use crate::state::topics::elect_preferred_leaders;
use crate::state::{BrokerId, ControllerResult, MetadataImage};

#[derive(Clone, Copy, Debug)]
struct Session {
    broker_epoch: i64,
    last_contact: Instant,
    metadata_offset: u64,
}

#[derive(Default)]
struct Sessions {
    /// The Raft term these sessions belong to; sessions from an earlier term are discarded.
    term: u64,
    by_broker: HashMap<BrokerId, Session>,
    /// Offset of each broker's controlled-shutdown record.
    shutdown_offsets: HashMap<BrokerId, u64>,
}

pub struct Liveness {
    session_timeout: Duration,
    sessions: Mutex<Sessions>,
}

impl Liveness {
    pub fn new(session_timeout: Duration) -> Self {
        Self {
            session_timeout,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts fresh sessions for every registered broker when this node's term changes.
    pub fn on_term(&self, term: u64, image: &MetadataImage) {
        let mut sessions = self.lock();
        if sessions.term == term {
            return;
        }
        let now = Instant::now();
        sessions.term = term;
        sessions.shutdown_offsets.clear();
        sessions.by_broker = image
            .brokers
            .values()
            .map(|b| {
                let session = Session {
                    broker_epoch: b.broker_epoch,
                    last_contact: now,
                    metadata_offset: 0,
                };
                (b.broker_id, session)
            })
            .collect();
    }

    /// Records a heartbeat (or registration) from a broker.
    pub fn touch(&self, broker_id: BrokerId, broker_epoch: i64, metadata_offset: u64) {
        self.lock().by_broker.insert(
            broker_id,
            Session {
                broker_epoch,
                last_contact: Instant::now(),
                metadata_offset,
            },
        );
    }

    /// Records a heartbeat as it arrives. Only a heartbeat of the broker's current registration in
    /// `image` counts: one from a previous incarnation must not refresh (or replace) its session.
    pub fn record_heartbeat(
        &self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        metadata_offset: u64,
    ) {
        let current = image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| b.broker_epoch == broker_epoch);
        if current {
            self.touch(broker_id, broker_epoch, metadata_offset);
        }
    }

    pub fn remove(&self, broker_id: BrokerId) {
        let mut sessions = self.lock();
        sessions.by_broker.remove(&broker_id);
        sessions.shutdown_offsets.remove(&broker_id);
    }

    /// Whether the broker's current registration heartbeats in time.
    pub fn has_live_session(&self, broker_id: BrokerId) -> bool {
        self.lock()
            .by_broker
            .get(&broker_id)
            .is_some_and(|s| s.last_contact.elapsed() <= self.session_timeout)
    }

    pub fn note_controlled_shutdown(&self, broker_id: BrokerId, offset: u64) {
        self.lock()
            .shutdown_offsets
            .entry(broker_id)
            .or_insert(offset);
    }

    /// Whether every other active broker with a session has applied metadata past the broker's
    /// controlled-shutdown record (as Kafka's `BrokerHeartbeatManager` requires), so clients and
    /// followers already know the new leaders.
    pub fn others_caught_up(&self, image: &MetadataImage, broker_id: BrokerId) -> bool {
        let sessions = self.lock();
        let target = sessions
            .shutdown_offsets
            .get(&broker_id)
            .copied()
            .unwrap_or(image.offset);
        image
            .active_brokers()
            .filter(|b| b.broker_id != broker_id)
            .all(|b| {
                sessions
                    .by_broker
                    .get(&b.broker_id)
                    .is_none_or(|s| s.broker_epoch != b.broker_epoch || s.metadata_offset >= target)
            })
    }

    /// The first broker that is not fenced but whose session expired.
    pub fn next_expired(&self, image: &MetadataImage) -> Option<(BrokerId, i64)> {
        let sessions = self.lock();
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .find(|b| {
                sessions
                    .by_broker
                    .get(&b.broker_id)
                    .filter(|s| s.broker_epoch == b.broker_epoch)
                    .is_none_or(|s| s.last_contact.elapsed() > self.session_timeout)
            })
            .map(|b| (b.broker_id, b.broker_epoch))
    }
}

/// The active controller's periodic duties: fence brokers whose sessions expired, move partitions off
/// a fenced broker should a stale (skipped) change have left them there, and, every
/// `rebalance_interval`, move leadership back to preferred replicas that are in sync again.
pub async fn run_liveness(
    quorum: Arc<Quorum>,
    liveness: Arc<Liveness>,
    check_interval: Duration,
    rebalance_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rebalance = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (term, is_leader) = {
            let metrics = quorum.raft().metrics();
            let m = metrics.borrow();
            (m.current_term, m.current_leader == Some(quorum.node_id()))
        };
        if !is_leader {
            continue;
        }
        let image = quorum.applied().image();
        liveness.on_term(term, &image);
        if let Some((broker_id, broker_epoch)) = liveness.next_expired(&image) {
            let result = quorum
                .run(|image| {
                    // Re-check against the image the command runs on: the broker may have come back.
                    let still_expired = image
                        .brokers
                        .get(&broker_id)
                        .is_some_and(|b| b.broker_epoch == broker_epoch && !b.fenced)
                        && !liveness.has_live_session(broker_id);
                    let records = if still_expired {
                        fence_broker(image, broker_id)
                    } else {
                        Vec::new()
                    };
                    Ok(ControllerResult::new(records, still_expired))
                })
                .await;
            match result {
                Ok((offset, true)) => {
                    info!(
                        broker_id,
                        broker_epoch, offset, "fenced broker: session expired"
                    )
                }
                Ok((_, false)) => {}
                Err(e) => warn!(broker_id, "could not fence broker: {e}"),
            }
            continue;
        }
        if !evict_inactive_broker(&image).is_empty() {
            match quorum
                .run(|image| Ok(ControllerResult::new(evict_inactive_broker(image), ())))
                .await
            {
                Ok((offset, ())) => {
                    warn!(
                        offset,
                        "moved partitions off an inactive broker a stale change had left them on"
                    )
                }
                Err(e) => warn!("could not move partitions off an inactive broker: {e}"),
            }
            continue;
        }
        if last_rebalance.elapsed() >= rebalance_interval {
            last_rebalance = Instant::now();
            let needs_election = image.partitions().any(|(_, _, p)| {
                p.preferred_leader().is_some_and(|b| {
                    b != p.leader && p.isr.contains(&b) && image.is_active_broker(b)
                })
            });
            if needs_election {
                match quorum
                    .run(|image| elect_preferred_leaders(image, None))
                    .await
                {
                    Ok((offset, outcomes)) => {
                        let moved = outcomes.iter().filter(|(_, _, r)| r.is_ok()).count();
                        if moved > 0 {
                            info!(moved, offset, "restored preferred leaders");
                        }
                    }
                    Err(e) => warn!("preferred leader election failed: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::tests::cluster;

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_after_the_timeout_and_a_new_term_refreshes_them() {
        let image = cluster(&[1, 2], 1, 1);
        let liveness = Liveness::new(Duration::from_secs(5));
        liveness.on_term(3, &image);
        assert_eq!(liveness.next_expired(&image), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        liveness.touch(2, image.brokers[&2].broker_epoch, image.offset);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            liveness.next_expired(&image),
            Some((1, image.brokers[&1].broker_epoch))
        );
        assert!(liveness.has_live_session(2));
        assert!(!liveness.has_live_session(1));
        // Leadership moved: everyone gets a fresh session instead of being fenced.
        liveness.on_term(4, &image);
        assert_eq!(liveness.next_expired(&image), None);
        assert!(liveness.has_live_session(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_of_an_older_incarnation_does_not_count() {
        let image = cluster(&[1], 1, 1);
        let liveness = Liveness::new(Duration::from_secs(5));
        liveness.on_term(1, &image);
        liveness.touch(1, image.brokers[&1].broker_epoch - 1, 0);
        assert_eq!(
            liveness.next_expired(&image),
            Some((1, image.brokers[&1].broker_epoch))
        );
    }
}
