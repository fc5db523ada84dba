//! The vote of a controller that started with an empty Raft store.
//!
//! An empty store does not mean a new node: it may be a voter whose data directory was lost. Before
//! the loss that voter may have acknowledged entries that, besides it, only a leader now down held;
//! if it voted at once, a candidate lacking such an entry could win with its vote, and a committed
//! entry would be gone (openraft's FAQ, "Can I wipe out the data of ONE node": N3 erased, N1
//! crashed, N5 elected by N3 and N4). Kafka closes this with directory ids (KIP-853): a replaced
//! disk is a new voter until the operator adds it. Our voters are static, so the node holds its vote
//! instead.
//!
//! While the hold lasts, the node refuses every candidate whose log goes beyond the initial
//! membership entry (index 0). It ends when the node has applied an entry of the term of the leader
//! it follows. That leader was elected before the loss or without this node's vote, so its log holds
//! every committed entry; the entry of its own term comes after all of them, and our log matches its
//! log up to there. A new quorum still forms, because its candidates hold only the initial
//! membership. What no node can tell apart on its own: a candidate that never received anything
//! beyond that entry while this node's lost log was the only other copy of the data; the hold does not
//! cover that double loss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftMetrics};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ChronikRaft, NodeId};

/// Whether this node holds back its vote; shared by the Raft service and the release task.
#[derive(Debug, Default)]
pub struct VoteHold {
    held: AtomicBool,
}

impl VoteHold {
    /// A hold that lasts until `release_when_caught_up` sees this node caught up; `held` is whether
    /// the node started with an empty store.
    pub fn new(held: bool) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicBool::new(held),
        })
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The refusal to send instead of asking Raft, or `None` when Raft decides. `metrics` gives the
    /// vote the refusal carries: a candidate whose vote is lower steps down, as for any refusal.
    pub fn refusal(
        &self,
        request: &VoteRequest<NodeId>,
        metrics: &RaftMetrics<NodeId, BasicNode>,
    ) -> Option<VoteResponse<NodeId>> {
        if !self.is_held() || request.last_log_id.is_none_or(|id| id.index == 0) {
            return None;
        }
        warn!(
            candidate = request.vote.leader_id().voted_for(),
            term = request.vote.leader_id().term,
            "refusing a vote: this controller started with an empty Raft log and has not caught up \
             with a leader yet (docs/architecture.md, \"Controller storage\")"
        );
        Some(VoteResponse::new(metrics.vote, None, false))
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
}

/// Whether this node has applied an entry of the term of the leader it follows (or leads).
pub fn caught_up(metrics: &RaftMetrics<NodeId, BasicNode>) -> bool {
    metrics.current_leader.is_some()
        && metrics
            .last_applied
            .is_some_and(|applied| applied.leader_id.term == metrics.vote.leader_id().term)
}

/// Ends the hold once the node caught up; returns at once when nothing is held.
pub async fn release_when_caught_up(
    raft: ChronikRaft,
    hold: Arc<VoteHold>,
    shutdown: CancellationToken,
) {
    if !hold.is_held() {
        return;
    }
    let mut metrics = raft.metrics();
    loop {
        let current = metrics.borrow_and_update().clone();
        if caught_up(&current) {
            hold.release();
            info!(
                leader = current.current_leader,
                term = current.current_term,
                applied = current.last_applied.map(|a| a.index),
                "caught up with the leader after starting with an empty Raft log: voting again"
            );
            return;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::*;

    fn log_id(term: u64, leader: NodeId, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    fn request(term: u64, candidate: NodeId, last: Option<LogId<NodeId>>) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, candidate), last)
    }

    #[test]
    fn a_held_vote_refuses_only_candidates_with_a_log() {
        let metrics = RaftMetrics::new_initial(3);
        let hold = VoteHold::new(true);
        let refused = hold
            .refusal(&request(5, 2, Some(log_id(4, 1, 17))), &metrics)
            .expect("a candidate with a log is refused");
        assert!(!refused.vote_granted);
        assert_eq!(refused.vote, metrics.vote);
        // A new quorum forms: its candidates hold only the initial membership entry.
        assert!(hold
            .refusal(&request(1, 2, Some(log_id(0, 0, 0))), &metrics)
            .is_none());
        assert!(hold.refusal(&request(1, 2, None), &metrics).is_none());

        let released = VoteHold::new(false);
        assert!(released
            .refusal(&request(5, 2, Some(log_id(4, 1, 17))), &metrics)
            .is_none());
    }

    #[test]
    fn caught_up_means_an_entry_of_the_leaders_term_is_applied() {
        let mut metrics = RaftMetrics::new_initial(3);
        assert!(!caught_up(&metrics));
        metrics.vote = Vote::new_committed(4, 1);
        metrics.current_term = 4;
        metrics.current_leader = Some(1);
        // Entries of an older term: the leader's log may hold committed ones after them.
        metrics.last_applied = Some(log_id(3, 2, 40));
        assert!(!caught_up(&metrics));
        metrics.last_applied = Some(log_id(4, 1, 41));
        assert!(caught_up(&metrics));
        // A candidate of a later term knows no leader.
        metrics.vote = Vote::new(5, 3);
        metrics.current_term = 5;
        metrics.current_leader = None;
        assert!(!caught_up(&metrics));
    }
}
