//! Sends the ISR changes partition leaders ask for to the controller (AlterPartition, KIP-497), one
//! in flight per partition, every change waiting at the time in one request (Kafka's
//! `AlterPartitionManager` batches the same way); the controller checks each partition's leader and
//! partition epochs on its own and answers each with its own error code. The controller's answer is
//! applied through the metadata log like any other change; the in-flight slot is released once this
//! broker's image shows the result (or the change was refused), so the next change is computed from
//! the new ISR. While a change that adds a replica is in flight, and after it was accepted until the
//! image shows it, the added replica counts toward the high watermark (KIP-497's maximal ISR, see
//! [`super::Partition`]). A request that got no answer may have been committed, so its changes keep
//! counting and are asked again (a compare-and-set on the partition epoch: a second attempt cannot
//! apply twice) until an answer or the image settles them; only a change the controller refused as
//! it stands stops counting at once (Kafka's `Partition.handleAlterPartitionError`). The same path
//! carries a leader's LeaderRecoveryState=RECOVERED after an unclean election (KIP-704).
//!
//! [`run_isr_shrinker`] proposes the shrinks, by two rules:
//! - **lag** (Kafka's `replica.lag.time.max.ms`, `--replica-lag-time-max-ms`, 30 s): a follower that
//!   fetches but has not caught up with the leader's log end for that long;
//! - **stall** (`--replica-fetch-stall-ms`, 1 s): a follower that has sent no fetch at all for that
//!   long (stopped, cut off, its fetcher wedged), so one bad link stalls acks=all writes for about a
//!   second rather than for the lag time (issue #12). It applies only to a follower that this broker
//!   has heard from since it started: one that has not started following (a broker still opening the
//!   logs of a large metadata change, or just started) leaves by the lag rule (issue #18, see
//!   `ReplicaManager::check_isr`).
//!
//! Why 1 s cannot drop a healthy follower: a follower always has a fetch outstanding except while it
//! handles the previous answer. The leader holds a fetch for at most 500 ms (the followers' long poll,
//! `fetcher::MAX_WAIT_MS`) and records it when it arrives and again each time it rereads it, the
//! last time when it answers; so a follower's silence is its own handling of one answer (an append
//! and, under `flush.messages=1`, one fsync) plus the round trip, which leaves a healthy follower
//! 1 s, twice the long poll, of headroom. A late answer from the leader is not the follower's
//! silence, and a leader that itself stood still counts silence only from when it resumed. A
//! follower silent for 1 s misses two answers in a row; dropping it costs little (it rejoins once it
//! has caught up) while keeping it stalls every acks=all write. Neither rule changes what
//! acknowledges a write: the high watermark still needs the whole ISR and stands still below
//! `min.insync.replicas`, and a shrink counts only once the controller has committed it. The ISR
//! never shrinks below the leader itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::convert::topic_id_to_bytes;
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::manager::IsrChange;
use super::ReplicaManager;
use crate::controller_client::ControllerClient;
use crate::error::ControllerCallError;
use crate::metrics::metrics;
use crate::status::BrokerStatus;

/// How long to wait for the metadata to show an accepted change before allowing the next one.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// The wait before asking again for changes whose request got no answer, doubling up to the max.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Most partitions one AlterPartition request carries (a few hundred KB; the controller writes them
/// as one Raft entry).
const MAX_BATCH: usize = 5_000;
/// Larger batches are logged as one line rather than one per partition.
const LOGGED_ONE_BY_ONE: usize = 20;

pub async fn run_isr_changes(
    replicas: Arc<ReplicaManager>,
    controller: Arc<ControllerClient>,
    status: watch::Receiver<BrokerStatus>,
    mut changes: mpsc::UnboundedReceiver<IsrChange>,
    cancel: CancellationToken,
) {
    // Changes whose request got no answer, asked again after `backoff`.
    let mut unanswered: Vec<IsrChange> = Vec::new();
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        let mut batch = Vec::new();
        if unanswered.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                change = changes.recv() => match change {
                    Some(change) => batch.push(change),
                    None => return,
                },
            }
        } else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            for change in unanswered.drain(..) {
                if is_current(&replicas, &change) {
                    batch.push(change);
                } else {
                    // The image moved on from the state the change was computed from; whatever
                    // became of it, the image is what counts now.
                    change.partition.end_isr_change(true);
                }
            }
        }
        // Everything else already waiting goes in the same request: a broker that comes back leads
        // thousands of partitions whose ISRs all grow at once.
        while batch.len() < MAX_BATCH {
            match changes.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let Some(broker_epoch) = status.borrow().broker_epoch else {
            for change in &batch {
                change.partition.end_isr_change(false);
            }
            continue;
        };
        let request = alter_partition_request(replicas.broker_id(), broker_epoch, &batch);
        // Read before asking: the image may show the committed change before the answer arrives.
        let isr_before: Vec<usize> = batch
            .iter()
            .map(|c| c.partition.state().isr.len())
            .collect();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = controller.alter_partition(request) => result,
        };
        let mut answers: HashMap<(Vec<u8>, i32), pb::AlterPartitionResult> = HashMap::new();
        let unknown = match result {
            Ok(response) => {
                for topic in response.topics {
                    for r in topic.partitions {
                        answers.insert((topic.topic_id.clone(), r.partition_index), r);
                    }
                }
                false
            }
            Err(
                e @ (ControllerCallError::Refused { .. }
                | ControllerCallError::InvalidAddress { .. }),
            ) => {
                // A controller's refusal of the whole request (a stale broker epoch, say) comes
                // before any partition is looked at: nothing of it was applied.
                warn!(partitions = batch.len(), "ISR change refused: {e}");
                false
            }
            Err(e) => {
                warn!(
                    partitions = batch.len(),
                    "ISR change unanswered, asking again: {e}"
                );
                true
            }
        };
        let verbose = batch.len() <= LOGGED_ONE_BY_ONE;
        let (mut accepted, mut refused) = (0usize, 0usize);
        let outcomes: Vec<Outcome> = batch
            .iter()
            .zip(&isr_before)
            .map(|(change, &isr_before)| {
                if unknown {
                    return Outcome::Unknown;
                }
                let partition = &change.partition;
                let key = (topic_id_to_bytes(partition.topic_id), partition.index);
                // A partition the answer leaves out was not applied: the controller answers each
                // partition it changed.
                let Some(r) = answers.remove(&key) else {
                    return Outcome::NotApplied;
                };
                let outcome = Outcome::of(r.error_code, r.partition_epoch);
                if let Outcome::Accepted(_) = outcome {
                    accepted += 1;
                    if verbose {
                        info!(topic = %partition.topic, partition = partition.index, isr = ?r.isr, "ISR changed");
                    }
                    if r.isr.len() != isr_before {
                        metrics().isr_changed(r.isr.len() < isr_before);
                    }
                } else {
                    refused += 1;
                    if verbose {
                        warn!(topic = %partition.topic, partition = partition.index, error_code = r.error_code, ?outcome, "ISR change refused");
                    }
                }
                outcome
            })
            .collect();
        if !verbose && !unknown {
            info!(
                partitions = batch.len(),
                accepted, refused, "ISR changes answered in one AlterPartition"
            );
        }
        if !unknown {
            backoff = RETRY_BACKOFF_MIN;
        }
        // The partition epoch the image must reach before the next change of a partition is computed.
        let awaited: Vec<Option<i32>> = batch
            .iter()
            .zip(&outcomes)
            .map(|(change, outcome)| match outcome {
                Outcome::Accepted(epoch) => Some(*epoch),
                Outcome::Superseded => Some(change.partition_epoch + 1),
                Outcome::NotApplied | Outcome::Unknown => None,
            })
            .collect();
        if awaited.iter().any(Option::is_some) {
            let mut data = replicas.subscribe_data();
            let shown = || {
                batch.iter().zip(&awaited).all(|(c, epoch)| {
                    epoch.is_none_or(|e| c.partition.state().partition_epoch >= e)
                })
            };
            let _ = tokio::time::timeout(APPLY_WAIT, async {
                while !shown() {
                    if data.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
        }
        let mut ended = Vec::with_capacity(batch.len());
        for (change, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Unknown => unanswered.push(change),
                Outcome::NotApplied => {
                    change.partition.end_isr_change(false);
                    ended.push(change.partition);
                }
                Outcome::Accepted(_) | Outcome::Superseded => {
                    change.partition.end_isr_change(true);
                    ended.push(change.partition);
                }
            }
        }
        // An ISR change in flight counts its members toward the high watermark: its end may let
        // waits on these partitions finish.
        replicas.roles_changed(ended);
    }
}

/// What the controller's answer to one change, or the lack of one, says about it (Kafka's
/// `Partition.handleAlterPartitionError`). Only a change known never to apply stops counting its
/// added members toward the high watermark at once: the controller may have committed one whose
/// answer was lost, and elect an added member that lacks records the leader then acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Committed, at this partition epoch.
    Accepted(i32),
    /// The controller holds a newer state of the partition than the change was computed from
    /// (INVALID_UPDATE_VERSION, FENCED_LEADER_EPOCH), or none (deleted): an earlier attempt of this
    /// very change may be what moved it. The image will show which.
    Superseded,
    /// Refused as it stands, by the controller's current state of the partition
    /// (INELIGIBLE_REPLICA, INVALID_REQUEST): nothing was applied.
    NotApplied,
    /// No answer (a timeout, a connection broken mid-request), or a controller behind the change's
    /// epochs (NOT_CONTROLLER): asked again while the image shows the state it was computed from.
    Unknown,
}

impl Outcome {
    fn of(error_code: i32, partition_epoch: i32) -> Self {
        let code = i16::try_from(error_code).unwrap_or(i16::MAX);
        match ResponseError::try_from_code(code) {
            None => Outcome::Accepted(partition_epoch),
            Some(
                ResponseError::InvalidUpdateVersion
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownTopicId
                | ResponseError::UnknownTopicOrPartition,
            ) => Outcome::Superseded,
            Some(ResponseError::NotController) => Outcome::Unknown,
            Some(_) => Outcome::NotApplied,
        }
    }
}

/// Whether the image still shows the partition led here in the state `change` was computed from.
fn is_current(replicas: &ReplicaManager, change: &IsrChange) -> bool {
    let state = change.partition.state();
    state.leader == replicas.broker_id()
        && state.leader_epoch == change.leader_epoch
        && state.partition_epoch == change.partition_epoch
        && change.partition.is_hosted()
}

/// One AlterPartition request for every change of `batch` (at most one per partition: a partition
/// has one change in flight at a time), grouped by topic.
fn alter_partition_request(
    broker_id: i32,
    broker_epoch: i64,
    batch: &[IsrChange],
) -> pb::AlterPartitionRequest {
    let mut topics: Vec<pb::AlterPartitionTopic> = Vec::new();
    let mut topic_slots: HashMap<Uuid, usize> = HashMap::new();
    for change in batch {
        let partition = &change.partition;
        let slot = *topic_slots.entry(partition.topic_id).or_insert_with(|| {
            topics.push(pb::AlterPartitionTopic {
                topic_id: topic_id_to_bytes(partition.topic_id),
                partitions: Vec::new(),
            });
            topics.len() - 1
        });
        topics[slot].partitions.push(pb::AlterPartitionItem {
            partition_index: partition.index,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change
                .new_isr
                .iter()
                .map(|&(broker_id, broker_epoch)| pb::IsrMember {
                    broker_id,
                    broker_epoch,
                })
                .collect(),
            leader_recovery_state: change.leader_recovery_state.map(|s| s.code()),
        });
    }
    pb::AlterPartitionRequest {
        broker_id,
        broker_epoch,
        topics,
    }
}

/// Asks to drop ISR members that have not caught up for `lag` or have sent no fetch for `stall`,
/// checking every quarter of the stall time, so a stalled follower is proposed within 1.25 `stall`
/// of its last fetch.
///
/// A check that comes late by more than half the stall time means this broker itself stood still
/// (SIGSTOP, a starved host): its followers' fetches may be waiting unread in its sockets, so their
/// silence is counted only from the moment it resumed.
pub async fn run_isr_shrinker(
    replicas: Arc<ReplicaManager>,
    lag: Duration,
    stall: Duration,
    cancel: CancellationToken,
) {
    let period = (lag / 2).min(stall / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut watched_since = Instant::now();
    let mut last_check = watched_since;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        if now - last_check > period + stall / 2 {
            warn!(
                late_ms = (now - last_check).as_millis() as u64,
                "the ISR check ran late; counting follower silence from now"
            );
            watched_since = now;
        }
        last_check = now;
        replicas.shrink_lagging_isrs(lag, stall, watched_since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(error: ResponseError) -> Outcome {
        Outcome::of(i32::from(error.code()), 7)
    }

    #[test]
    fn only_a_refusal_of_the_change_as_it_stands_means_it_never_applied() {
        assert_eq!(Outcome::of(0, 7), Outcome::Accepted(7));
        for error in [
            ResponseError::InvalidUpdateVersion,
            ResponseError::FencedLeaderEpoch,
            ResponseError::UnknownTopicId,
            ResponseError::UnknownTopicOrPartition,
        ] {
            assert_eq!(outcome(error), Outcome::Superseded, "{error:?}");
        }
        assert_eq!(outcome(ResponseError::NotController), Outcome::Unknown);
        for error in [
            ResponseError::IneligibleReplica,
            ResponseError::InvalidRequest,
        ] {
            assert_eq!(outcome(error), Outcome::NotApplied, "{error:?}");
        }
    }
}
