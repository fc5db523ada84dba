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
//! of the voters, counting only the others, answered `LogState` and this node has either applied up
//! to the longest of their logs or holds a log at least as up to date as each of theirs (Raft's
//! comparison: last term, then last index) (`may_release`). Every entry committed before the loss is
//! in the log of one of them (a commit needs a majority, and two majorities of the voters share a
//! node other than this one), and a log at least as up to date as one holding a committed entry holds
//! it too (Raft's leader completeness). After that the node still refuses every candidate of a term
//! up to the highest they reported (its vote floor), since it may have voted in those terms before
//! the loss: each of them is at most one of theirs (the same argument over the votes that elected a
//! leader). The floor covers its own candidacy too: openraft starts a campaign from the node's own
//! term, and its vote for itself in a term at or below the floor could be its second vote in that
//! term. So it asks nobody for a vote in such a term (`own_candidacy`): the refusal it gives itself
//! carries a vote in the floor's term, which openraft adopts, and its next campaign is above the
//! floor. A new quorum still forms: its candidates hold only the initial membership, and once its
//! first leader has written, every voter's log is as up to date as the others'.
//!
//! The hold and the floor are persisted (`vote_held` and `vote_floor` in the node's meta file), so a
//! restart does not end them. It covers one lost data directory at a time: a second voter whose
//! directory was lost too answers with the log it has now, and with five voters, two lost
//! directories and a third copy of an entry that does not answer, that entry can still be lost.
//!
//! What must stay true: a held node never grants a vote to a candidate with a log beyond index 0,
//! never campaigns with one, and is released only by `may_release`; no node grants a vote in a term
//! at or below its floor, to another node or to itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronik_control_auth::{AuthChannel, ClientCredentials};
use chronik_proto::v1::raft_service_client::RaftServiceClient;
use chronik_proto::v1::{LogStateRequest, LogStateResponse};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::storage::RaftLogStorage;
use openraft::{LogId, Vote};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{ChronikRaft, LogStore, NodeId};

/// How often a held node asks the others for their logs.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one answer may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether this node holds back its vote; shared by the Raft service, the departure watch and the
/// release task.
#[derive(Debug, Default)]
pub struct VoteHold {
    held: AtomicBool,
    /// No vote is granted in a term at or below this one.
    floor: AtomicU64,
}

impl VoteHold {
    pub fn new(held: bool, floor: u64) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicBool::new(held),
            floor: AtomicU64::new(floor),
        })
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Starts holding: for a node that learns only once its store is open that it must.
    pub fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// The refusal this node gives itself instead of asking a peer for a vote in a term at or below
    /// its floor, or `None` when the request may go out; also what a grant becomes when the floor rose
    /// while the request was out. Nobody is asked, so nobody grants: the node is never elected in such
    /// a term. The refusal's vote is in the floor's term for the lowest node id: for a candidate below
    /// the floor it is greater than its own, so openraft adopts it (and any leader of the floor's
    /// term is above it); a candidate in the floor's term keeps its own until its next election
    /// timeout. Either way its next campaign is above the floor. Its node id 0 is no node's vote:
    /// the departure watch of a node that adopted it waits a few turns before campaigning.
    pub fn own_candidacy(&self, request: &VoteRequest<NodeId>) -> Option<VoteResponse<NodeId>> {
        let term = request.vote.leader_id().term;
        let floor = self.floor.load(Ordering::Acquire);
        if term > floor {
            return None;
        }
        info!(
            term,
            floor,
            "not campaigning in this term: this controller may have voted in it before it lost its \
             log; campaigning above it next"
        );
        Some(VoteResponse::new(Vote::new(floor, 0), None, false))
    }

    /// The refusal to send instead of asking Raft, or `None` when Raft decides. The refusal carries
    /// this node's `vote`, as any refusal does.
    pub fn refusal(
        &self,
        request: &VoteRequest<NodeId>,
        vote: impl FnOnce() -> Vote<NodeId>,
    ) -> Option<VoteResponse<NodeId>> {
        let candidate = request.vote.leader_id().voted_for();
        let term = request.vote.leader_id().term;
        if self.is_held() && request.last_log_id.is_some_and(|id| id.index > 0) {
            warn!(
                candidate,
                term,
                "refusing a vote: this controller started with an empty Raft log and has not caught \
                 up with the other controllers yet (docs/architecture.md, \"Controller storage\")"
            );
        } else if term <= self.floor.load(Ordering::Acquire) {
            warn!(
                candidate,
                term,
                floor = self.floor.load(Ordering::Acquire),
                "refusing a vote: this controller may have voted in this term before it lost its log"
            );
        } else {
            return None;
        }
        Some(VoteResponse::new(vote(), None, false))
    }

    fn release(&self, floor: u64) {
        self.floor.store(floor, Ordering::Release);
        self.held.store(false, Ordering::Release);
    }
}

/// What another voter reported of its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLog {
    /// The term of its vote.
    pub term: u64,
    /// Its last entry's (term, index).
    pub last_log: Option<(u64, u64)>,
}

/// Whether a held node may vote again: a majority of the `voters`, this node not counted, answered
/// (`peers`), and this node applied up to the longest of their logs (`applied`) or its log, ending at
/// `last_log` (term, index), is at least as up to date as each of theirs.
pub fn may_release(
    last_log: Option<(u64, u64)>,
    applied: Option<u64>,
    peers: &[PeerLog],
    voters: usize,
) -> bool {
    let majority = voters / 2 + 1;
    if peers.len() < majority.min(voters.saturating_sub(1)) {
        return false;
    }
    let longest = peers
        .iter()
        .filter_map(|p| p.last_log.map(|(_, i)| i))
        .max();
    let newest = peers.iter().filter_map(|p| p.last_log).max();
    longest.is_none_or(|longest| applied.is_some_and(|a| a >= longest)) || last_log >= newest
}

/// The vote floor a released node keeps: the highest term the others reported.
pub fn vote_floor(peers: &[PeerLog]) -> u64 {
    peers.iter().map(|p| p.term).max().unwrap_or(0)
}

/// What this node answers to `LogState`.
pub async fn log_state(raft: &ChronikRaft, log: &LogStore) -> LogStateResponse {
    let term = raft.metrics().borrow().vote.leader_id().term;
    let last_log = last_log(log).await;
    LogStateResponse {
        term,
        last_log_index: last_log.map(|(_, index)| index),
        last_log_term: last_log.map(|(term, _)| term),
    }
}

/// The (term, index) of the last entry in this node's log.
async fn last_log(log: &LogStore) -> Option<(u64, u64)> {
    let state = log.clone().get_log_state().await.ok()?;
    state
        .last_log_id
        .map(|id: LogId<NodeId>| (id.leader_id.term, id.index))
}

/// While held: keeps this node (`me`) from campaigning once its log goes beyond index 0, asks the other
/// voters (`peers`: id → address) for their logs every `PROBE_INTERVAL`, and ends the hold once
/// `may_release` says so and `persist` recorded that; returns at once when nothing is held.
#[allow(clippy::too_many_arguments)]
pub async fn release_when_caught_up(
    raft: ChronikRaft,
    log: LogStore,
    me: NodeId,
    hold: Arc<VoteHold>,
    peers: BTreeMap<NodeId, String>,
    credentials: ClientCredentials,
    persist: impl Fn(u64) -> Result<(), String> + Send,
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
        let applied = raft.metrics().borrow().last_applied.map(|a| a.index);
        let last = last_log(&log).await;
        if !may_release(last, applied, &answers, voters) {
            continue;
        }
        let floor = vote_floor(&answers);
        if let Err(e) = persist(floor) {
            error!("cannot record the end of the vote hold: {e}");
            continue;
        }
        hold.release(floor);
        raft.runtime_config().elect(true);
        info!(
            ?last,
            applied,
            floor,
            "caught up with the other controllers after starting with an empty Raft log: voting \
             again, in terms above {floor}"
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
        last_log: answer.last_log_term.zip(answer.last_log_index),
    })
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, leader: NodeId, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    fn request(term: u64, candidate: NodeId, last: Option<LogId<NodeId>>) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, candidate), last)
    }

    #[test]
    fn a_held_vote_refuses_only_candidates_with_a_log_and_then_terms_up_to_its_floor() {
        let mine = Vote::new_committed(3, 1);
        let hold = VoteHold::new(true, 0);
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

        hold.release(7);
        let candidate = Some(log_id(4, 1, 17));
        assert!(hold.refusal(&request(7, 2, candidate), || mine).is_some());
        assert!(hold.refusal(&request(8, 2, candidate), || mine).is_none());
    }

    #[test]
    fn a_node_asks_for_no_vote_at_or_below_its_floor_and_moves_above_it() {
        let hold = VoteHold::new(false, 7);
        let refusal = hold
            .own_candidacy(&request(5, 2, Some(log_id(4, 1, 17))))
            .expect("a campaign below the floor is answered here");
        assert!(!refusal.vote_granted);
        // Greater than the candidate's own vote, so openraft adopts it; below any leader of term 7.
        assert!(refusal.vote > Vote::new(5, 2));
        assert!(refusal.vote < Vote::new_committed(7, 1));
        assert!(hold.own_candidacy(&request(7, 2, None)).is_some());
        assert!(hold.own_candidacy(&request(8, 2, None)).is_none());
    }

    fn peer(term: u64, last: Option<(u64, u64)>) -> PeerLog {
        PeerLog {
            term,
            last_log: last,
        }
    }

    /// The first review's case: the emptied node has applied entries of the current leader's term,
    /// but not the entries up to the leader's log end that were committed with its lost copy.
    #[test]
    fn entries_of_the_leaders_term_are_not_enough_its_whole_log_is() {
        let peers = [peer(5, Some((5, 100))), peer(5, Some((4, 50)))];
        assert!(!may_release(Some((5, 60)), Some(60), &peers, 3));
        assert!(
            !may_release(Some((5, 100)), Some(60), &peers[..1], 3),
            "one answer of two"
        );
        assert!(
            may_release(Some((5, 100)), Some(60), &peers, 3),
            "as up to date"
        );
        assert!(
            may_release(Some((5, 90)), Some(100), &peers, 3),
            "applied as far"
        );
        assert_eq!(vote_floor(&[peer(7, Some((5, 100))), peer(5, None)]), 7);
        // Five voters: three of the other four.
        let answers = [
            peer(5, Some((5, 100))),
            peer(5, Some((5, 90))),
            peer(5, Some((5, 80))),
        ];
        assert!(may_release(Some((5, 100)), None, &answers, 5));
        assert!(!may_release(Some((5, 100)), None, &answers[..2], 5));
        assert!(!may_release(Some((5, 95)), Some(95), &answers, 5));
    }

    /// The full suite's case: in a new quorum, the first leader was deposed by a campaign of a voter
    /// it had not reached yet before anyone had applied its first entry. Every voter held, those with
    /// the entry refused each other's candidacies and no one could be elected. Now a voter whose log
    /// is as up to date as the others' votes again.
    #[test]
    fn a_new_quorum_releases_once_its_first_entry_is_anywhere() {
        assert!(may_release(None, None, &[peer(0, None), peer(0, None)], 3));
        let peers = [peer(1, Some((1, 1))), peer(14, Some((0, 0)))];
        assert!(may_release(Some((1, 1)), None, &peers, 3));
        assert!(!may_release(Some((0, 0)), None, &peers, 3));
        assert_eq!(vote_floor(&peers), 14);
    }
}
