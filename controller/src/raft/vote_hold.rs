//! The vote of a controller that started with an empty Raft store.
//!
//! An empty store does not mean a new node: it may be a voter whose data directory was lost. Before
//! the loss it may have acknowledged entries that, besides it, only a controller now down holds, and
//! it may have voted in terms it no longer remembers. If it voted at once, a candidate lacking such an
//! entry could win with its vote and a committed entry would be gone (openraft's FAQ, "Can I wipe out
//! the data of ONE node": N3 erased, N1 crashed, N5 elected by N3 and N4), or it could vote twice in
//! one term. Kafka closes this with directory ids (KIP-853): a replaced disk is a new voter until the
//! operator adds it. Our voters are static, so the node holds its vote instead.
//!
//! While the hold lasts, the node refuses every candidate whose log goes beyond the initial
//! membership entry (index 0), and stops campaigning once its own log does. It ends when a majority
//! of the voters, counting only the others, answered `LogState` and the node has applied every entry
//! the longest of their logs holds and votes in a term at least as high as any of theirs
//! (`may_release`). Every entry committed before the loss is in the log of one of them (a commit
//! needs a majority, and two majorities of the voters share a node other than this one), and every
//! term this node voted in is at most one of theirs (the same argument over the votes that elected
//! a leader). So the node votes again with every committed entry it helped commit and in no term it
//! may have voted in. A new quorum still forms: its candidates hold only the initial membership, and
//! its voters release each other as soon as they all answer.
//!
//! The hold is persisted (`vote_held` in the node's meta file), so a restart before the release
//! does not end it. It covers one lost data directory at a time: a second voter whose directory was
//! lost too answers with the log it has now, and with five voters, two lost directories and a third
//! copy of an entry that does not answer, that entry can still be lost.
//!
//! What must stay true: a held node never grants a vote to a candidate with a log beyond index 0,
//! never campaigns with one, and is released only by `may_release`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronik_control_auth::{AuthChannel, ClientCredentials};
use chronik_proto::v1::raft_service_client::RaftServiceClient;
use chronik_proto::v1::{LogStateRequest, LogStateResponse};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftMetrics, Vote};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{ChronikRaft, NodeId};

/// How often a held node asks the others for their logs.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one answer may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether this node holds back its vote; shared by the Raft service, the departure watch and the
/// release task.
#[derive(Debug, Default)]
pub struct VoteHold {
    held: AtomicBool,
}

impl VoteHold {
    pub fn new(held: bool) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicBool::new(held),
        })
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The refusal to send instead of asking Raft, or `None` when Raft decides. The refusal carries
    /// this node's `vote`, as any refusal does.
    pub fn refusal(
        &self,
        request: &VoteRequest<NodeId>,
        vote: impl FnOnce() -> Vote<NodeId>,
    ) -> Option<VoteResponse<NodeId>> {
        if !self.is_held() || request.last_log_id.is_none_or(|id| id.index == 0) {
            return None;
        }
        warn!(
            candidate = request.vote.leader_id().voted_for(),
            term = request.vote.leader_id().term,
            "refusing a vote: this controller started with an empty Raft log and has not caught up \
             with the other controllers yet (docs/architecture.md, \"Controller storage\")"
        );
        Some(VoteResponse::new(vote(), None, false))
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
}

/// What another voter reported of its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLog {
    pub term: u64,
    pub last_log_index: Option<u64>,
}

/// Whether a held node may vote again: a majority of the `voters`, this node not counted, answered
/// (`peers`), this node applied up to the longest of their logs, and its vote's term is at least
/// each of theirs.
pub fn may_release(own: &RaftMetrics<NodeId, BasicNode>, peers: &[PeerLog], voters: usize) -> bool {
    let majority = voters / 2 + 1;
    if peers.len() < majority.min(voters.saturating_sub(1)) {
        return false;
    }
    let longest = peers.iter().filter_map(|p| p.last_log_index).max();
    let highest_term = peers.iter().map(|p| p.term).max().unwrap_or(0);
    let applied = own.last_applied.map(|a| a.index);
    longest.is_none_or(|longest| applied.is_some_and(|a| a >= longest))
        && own.vote.leader_id().term >= highest_term
}

/// What this node answers to `LogState`.
pub fn log_state(metrics: &RaftMetrics<NodeId, BasicNode>) -> LogStateResponse {
    LogStateResponse {
        term: metrics.vote.leader_id().term,
        last_log_index: metrics.last_log_index,
    }
}

/// While held: keeps this node (`me`) from campaigning once its log goes beyond index 0, asks the other
/// voters (`peers`: id → address) for their logs every `PROBE_INTERVAL`, and ends the hold once
/// `may_release` says so and `persist` recorded that; returns at once when nothing is held.
pub async fn release_when_caught_up(
    raft: ChronikRaft,
    me: NodeId,
    hold: Arc<VoteHold>,
    peers: BTreeMap<NodeId, String>,
    credentials: ClientCredentials,
    persist: impl Fn() -> Result<(), String> + Send,
    shutdown: CancellationToken,
) {
    if !hold.is_held() {
        return;
    }
    let voters = peers.len() + 1;
    let clients: Vec<Option<RaftServiceClient<AuthChannel>>> = peers
        .values()
        .map(|address| {
            credentials
                .endpoint(address)
                .ok()
                .map(|e| e.connect_timeout(PROBE_TIMEOUT).connect_lazy())
                .map(|channel| RaftServiceClient::new(credentials.authorize(channel)))
        })
        .collect();
    let mut metrics = raft.metrics();
    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    let mut may_campaign = None;
    loop {
        let current = metrics.borrow_and_update().clone();
        // A node with entries it may have lost others' copies of must not lead either.
        let campaign = current.last_log_index.is_none_or(|i| i == 0);
        if may_campaign != Some(campaign) {
            raft.runtime_config().elect(campaign);
            may_campaign = Some(campaign);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = probe.tick() => {}
        }
        let asks = clients.iter().flatten().map(|c| ask(me, c.clone()));
        let answers = futures::future::join_all(asks).await;
        let answers: Vec<PeerLog> = answers.into_iter().flatten().collect();
        let current = raft.metrics().borrow().clone();
        if !may_release(&current, &answers, voters) {
            continue;
        }
        if let Err(e) = persist() {
            error!("cannot record the end of the vote hold: {e}");
            continue;
        }
        hold.release();
        raft.runtime_config().elect(true);
        info!(
            term = current.vote.leader_id().term,
            applied = current.last_applied.map(|a| a.index),
            "caught up with the other controllers after starting with an empty Raft log: voting again"
        );
        return;
    }
}

async fn ask(me: NodeId, mut client: RaftServiceClient<AuthChannel>) -> Option<PeerLog> {
    let mut request = tonic::Request::new(LogStateRequest { node_id: me });
    request.set_timeout(PROBE_TIMEOUT);
    let answer = tokio::time::timeout(PROBE_TIMEOUT, client.log_state(request))
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some(PeerLog {
        term: answer.term,
        last_log_index: answer.last_log_index,
    })
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn log_id(term: u64, leader: NodeId, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    fn request(term: u64, candidate: NodeId, last: Option<LogId<NodeId>>) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, candidate), last)
    }

    #[test]
    fn a_held_vote_refuses_only_candidates_with_a_log() {
        let mine = Vote::new_committed(3, 1);
        let hold = VoteHold::new(true);
        let refused = hold
            .refusal(&request(5, 2, Some(log_id(4, 1, 17))), || mine)
            .expect("a candidate with a log is refused");
        assert!(!refused.vote_granted);
        assert_eq!(refused.vote, mine);
        // A new quorum forms: its candidates hold only the initial membership entry.
        assert!(hold
            .refusal(&request(1, 2, Some(log_id(0, 0, 0))), || mine)
            .is_none());
        assert!(hold.refusal(&request(1, 2, None), || mine).is_none());

        let released = VoteHold::new(false);
        assert!(released
            .refusal(&request(5, 2, Some(log_id(4, 1, 17))), || mine)
            .is_none());
    }

    fn metrics(term: u64, applied: Option<u64>) -> RaftMetrics<NodeId, BasicNode> {
        let mut m = RaftMetrics::new_initial(3);
        m.vote = Vote::new_committed(term, 1);
        m.current_term = term;
        m.last_applied = applied.map(|i| log_id(term, 1, i));
        m
    }

    fn peer(term: u64, last: Option<u64>) -> PeerLog {
        PeerLog {
            term,
            last_log_index: last,
        }
    }

    /// The review's case: the wiped node has applied entries of the current leader's term, but not
    /// the entries up to the leader's log end that were committed with its lost copy.
    #[test]
    fn entries_of_the_leaders_term_are_not_enough_its_whole_log_is() {
        let wiped = metrics(5, Some(60));
        // Three voters: both others must answer; the leader's log ends at 100.
        assert!(!may_release(
            &wiped,
            &[peer(5, Some(100)), peer(5, Some(50))],
            3
        ));
        assert!(
            !may_release(&wiped, &[peer(5, Some(50))], 3),
            "one answer of two"
        );
        let caught_up = metrics(5, Some(100));
        assert!(may_release(
            &caught_up,
            &[peer(5, Some(100)), peer(5, Some(50))],
            3
        ));
        // A term it may have voted in before the loss is one of theirs.
        assert!(!may_release(
            &caught_up,
            &[peer(7, Some(100)), peer(5, Some(50))],
            3
        ));
        // Five voters: three of the other four.
        let answers = [peer(5, Some(100)), peer(5, Some(90)), peer(5, Some(80))];
        assert!(may_release(&caught_up, &answers, 5));
        assert!(!may_release(&caught_up, &answers[..2], 5));
        assert!(!may_release(&metrics(5, Some(95)), &answers, 5));
    }

    #[test]
    fn a_new_quorum_releases_at_once() {
        // Nothing but the initial membership anywhere (or no log at all yet).
        let fresh = metrics(0, None);
        assert!(may_release(&fresh, &[peer(0, None), peer(0, None)], 3));
        let first = metrics(1, Some(1));
        assert!(may_release(
            &first,
            &[peer(1, Some(1)), peer(1, Some(0))],
            3
        ));
    }
}
