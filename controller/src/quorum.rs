//! `Quorum`: the single writer. Every command runs here, one at a time, on the active controller: wait
//! until this leader has applied the first entry of its term (so the applied image includes everything
//! committed before), evaluate the pure command against that image, propose its records, and wait
//! until they are committed and applied; a command that writes nothing confirms leadership with the
//! quorum instead (a linearizable read). Because commands are serialized and each waits for its own
//! apply, the next command always sees the effects of the previous one.
//!
//! What must stay true: a command is never evaluated while an entry this node proposed may still
//! commit. A caller stops waiting after `write_timeout`, but openraft keeps the entry, and it can
//! commit later (issue #11, defect 3). So a write that timed out stays pending here, and the next
//! command first waits until it is applied or fails, or until this node stops leading (then the
//! entry is truncated or committed before the first entry of any later term of this node, which
//! `caught_up_as_leader` waits for). Partition changes are additionally compare-and-set on the
//! partition epoch at replay (`PartitionChangeRecord::expected_partition_epoch`), so a stale one could
//! never undo a newer one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use tokio::sync::{Mutex, MutexGuard};

use crate::applied::AppliedMetadata;
use crate::error::{ApiError, ControllerError, ResponseError, Result};
use crate::metrics::{metrics, RecordCounts};
use crate::raft::progress::FollowerProgress;
use crate::raft::vote_hold::VoteHold;
use crate::raft::{ChronikRaft, NodeId, Request, TypeConfig, MAX_ENTRY_BYTES};
use crate::state::{ControllerResult, MetadataImage};

type WriteResult = std::result::Result<
    ClientWriteResponse<TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
>;

/// A proposed entry whose outcome nobody has seen yet: it resolves once the entry is applied, or
/// fails when openraft gives up on it.
type PendingWrite = Pin<Box<dyn Future<Output = WriteResult> + Send>>;

pub struct Quorum {
    raft: ChronikRaft,
    applied: Arc<AppliedMetadata>,
    node_id: u64,
    /// Every voter's gRPC address, from `--quorum`.
    voters: BTreeMap<u64, String>,
    /// The last committed log index, as persisted by the log store (0: none yet).
    committed: Arc<AtomicU64>,
    /// Serializes commands; holds the entry of a command that timed out before it was applied.
    write_lock: Mutex<Option<PendingWrite>>,
    write_timeout: Duration,
    /// The followers' contact times, recorded by this node's Raft transport.
    progress: Arc<FollowerProgress>,
    /// Largest entry a command may write (`raft::MAX_ENTRY_BYTES`; lower in tests).
    max_entry_bytes: AtomicUsize,
    /// Whether this node holds back its vote after starting with an empty log (`raft::vote_hold`).
    vote_hold: Arc<VoteHold>,
}

impl Quorum {
    pub fn new(
        raft: ChronikRaft,
        applied: Arc<AppliedMetadata>,
        node_id: u64,
        voters: BTreeMap<u64, String>,
        committed: Arc<AtomicU64>,
        write_timeout: Duration,
    ) -> Self {
        Self {
            raft,
            applied,
            node_id,
            voters,
            committed,
            write_lock: Mutex::new(None),
            write_timeout,
            progress: Arc::default(),
            max_entry_bytes: AtomicUsize::new(MAX_ENTRY_BYTES),
            vote_hold: Arc::default(),
        }
    }

    /// The followers' contact times, as the `NetworkFactory` given the same tracker records them.
    pub fn with_follower_progress(mut self, progress: Arc<FollowerProgress>) -> Self {
        self.progress = progress;
        self
    }

    /// The vote hold the Raft service of this node consults.
    pub fn with_vote_hold(mut self, hold: Arc<VoteHold>) -> Self {
        self.vote_hold = hold;
        self
    }

    pub fn vote_held(&self) -> bool {
        self.vote_hold.is_held()
    }

    pub fn follower_progress(&self) -> &FollowerProgress {
        &self.progress
    }

    pub fn raft(&self) -> &ChronikRaft {
        &self.raft
    }

    pub fn applied(&self) -> &Arc<AppliedMetadata> {
        &self.applied
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn voters(&self) -> &BTreeMap<u64, String> {
        &self.voters
    }

    /// The last log index this node knows to be committed.
    pub fn committed_index(&self) -> Option<u64> {
        Some(self.committed.load(Ordering::Acquire)).filter(|&c| c > 0)
    }

    /// The active controller as this node believes it: `(id, address)`.
    pub fn leader(&self) -> Option<(u64, String)> {
        let leader = self.raft.metrics().borrow().current_leader?;
        let address = self.voters.get(&leader).cloned().unwrap_or_default();
        Some((leader, address))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// The Raft term this node leads in, if it leads.
    pub fn leading_term(&self) -> Option<u64> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        (m.current_leader == Some(self.node_id)).then_some(m.current_term)
    }

    /// Resolves once this node no longer leads in `term`.
    pub async fn leadership_ended(&self, term: u64) {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.current_term != term || m.current_leader != Some(self.node_id) {
                    return;
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn not_controller(&self) -> ControllerError {
        ControllerError::NotController {
            leader: self.leader().filter(|(id, _)| *id != self.node_id),
        }
    }

    /// Runs a command on the active controller and returns the metadata offset its records were applied
    /// at (the current offset when it wrote nothing) with its reply. On a timeout the command's records
    /// may still be applied later, but no other command runs before they are or cannot be.
    pub async fn run<T>(
        &self,
        command: impl FnOnce(&MetadataImage) -> std::result::Result<ControllerResult<T>, ApiError>,
    ) -> Result<(u64, T)> {
        let timeout = tokio::time::sleep(self.write_timeout);
        tokio::pin!(timeout);
        let mut pending = tokio::select! {
            guard = self.write_lock.lock() => guard,
            _ = &mut timeout => return Err(self.timed_out()),
        };
        tokio::select! {
            outcome = self.run_serialized(&mut pending, command) => outcome,
            _ = &mut timeout => Err(self.timed_out()),
        }
    }

    async fn run_serialized<T>(
        &self,
        pending: &mut MutexGuard<'_, Option<PendingWrite>>,
        command: impl FnOnce(&MetadataImage) -> std::result::Result<ControllerResult<T>, ApiError>,
    ) -> Result<(u64, T)> {
        if let Some(earlier) = pending.as_mut() {
            // Its outcome was reported (as a timeout) already; only that it is settled matters. Once
            // this node no longer leads, it need not be: the entry is then either truncated or ahead
            // of the first entry of this node's next term, which `caught_up_as_leader` waits for.
            let mut metrics = self.raft.metrics();
            let node_id = self.node_id;
            let leadership_lost = async {
                loop {
                    if metrics.borrow().current_leader != Some(node_id) {
                        return;
                    }
                    if metrics.changed().await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = earlier => {}
                _ = leadership_lost => {}
            }
            **pending = None;
        }
        self.caught_up_as_leader().await?;
        let ControllerResult { records, reply } = self.applied.with_image(command)?;
        if records.is_empty() {
            // Nothing will commit to prove this node still led when it evaluated the command: ask
            // the quorum (after the evaluation: a quorum that still follows this node now had no
            // other leader then).
            self.raft
                .ensure_linearizable()
                .await
                .map_err(|e| self.map_read_error(e))?;
            return Ok((self.applied.offset(), reply));
        }
        let request = Request { records };
        self.check_entry_size(&request)?;
        let counts = RecordCounts::of(&request.records);
        let proposed = Instant::now();
        let raft = self.raft.clone();
        let write = pending.insert(Box::pin(async move { raft.client_write(request).await }));
        let response = write.await;
        **pending = None;
        let response = response.map_err(|e| self.map_write_error(e))?;
        metrics().wrote(&counts, proposed.elapsed());
        Ok((response.data.offset, reply))
    }

    /// Resolves once this node leads and has applied the first entry of its term, so its image holds
    /// everything committed before it led (Raft's leader completeness) and everything it wrote since
    /// (commands wait for their own apply). No message to the quorum: a command that writes records
    /// is confirmed by their commit, which a deposed leader cannot get (KRaft's active controller
    /// likewise evaluates commands on its in-memory state and learns it was deposed from the log).
    /// Asking the quorum first, as `ensure_linearizable` does, is a round trip bounded by one Raft
    /// heartbeat interval; on a loaded machine it failed often enough with 50 ms heartbeats
    /// ("not enough for a quorum") to hold a new active controller's first writes back by seconds.
    async fn caught_up_as_leader(&self) -> Result<()> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.current_leader != Some(self.node_id) {
                    return Err(self.not_controller());
                }
                if m.last_applied
                    .is_some_and(|applied| applied.leader_id.term == m.current_term)
                {
                    return Ok(());
                }
            }
            if metrics.changed().await.is_err() {
                return Err(ControllerError::Unavailable("Raft has stopped".to_string()));
            }
        }
    }

    /// Refuses an entry larger than one Raft message may carry with its neighbours (see
    /// `raft::MAX_ENTRY_BYTES`): written, it could never reach a follower that needs it, and with
    /// two such followers the quorum could commit nothing more.
    fn check_entry_size(&self, request: &Request) -> Result<()> {
        let limit = self.max_entry_bytes.load(Ordering::Relaxed);
        let mut counter = ByteCounter::default();
        serde_json::to_writer(&mut counter, request)
            .map_err(|e| ControllerError::Unavailable(format!("cannot encode an entry: {e}")))?;
        if counter.0 > limit {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!(
                    "the change is {} records in {} bytes, more than one metadata log entry may \
                     hold ({limit} bytes): send it in smaller requests",
                    request.records.len(),
                    counter.0
                ),
            )
            .into());
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_max_entry_bytes(&self, bytes: usize) {
        self.max_entry_bytes.store(bytes, Ordering::Relaxed);
    }

    fn timed_out(&self) -> ControllerError {
        ControllerError::Unavailable(format!(
            "no quorum answered within {} ms",
            self.write_timeout.as_millis()
        ))
    }

    /// Holds every command back until the guard is dropped, as a slow quorum would.
    #[cfg(test)]
    pub(crate) async fn hold_writes(&self) -> MutexGuard<'_, Option<PendingWrite>> {
        self.write_lock.lock().await
    }

    /// Leaves `write` pending, as a command whose wait for its entry timed out does.
    #[cfg(test)]
    pub(crate) async fn leave_pending(&self, write: PendingWrite) {
        *self.write_lock.lock().await = Some(write);
    }

    /// Waits, bounded, until this node has applied at least `offset`.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn map_read_error(
        &self,
        e: RaftError<u64, CheckIsLeaderError<u64, openraft::BasicNode>>,
    ) -> ControllerError {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => self.not_controller(),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                ControllerError::Unavailable(q.to_string())
            }
            RaftError::Fatal(f) => ControllerError::Unavailable(f.to_string()),
        }
    }

    fn map_write_error(
        &self,
        e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>,
    ) -> ControllerError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => self.not_controller(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ControllerError::Unavailable(c.to_string())
            }
            RaftError::Fatal(f) => ControllerError::Unavailable(f.to_string()),
        }
    }
}

/// Counts what is written to it (the size of an encoding, without keeping it).
#[derive(Default)]
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Quorums of one voter over a real Raft store, for the tests of what runs on a quorum (the only
/// voter needs no network).
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::{BasicNode, Raft};

    use super::Quorum;
    use crate::applied::AppliedMetadata;
    use crate::raft::{default_raft_config, open, NetworkFactory};
    use crate::state::{ControllerResult, Record};

    /// The address the only voter is registered under; nothing is ever sent to it.
    const NOWHERE: &str = "127.0.0.1:1";

    /// A quorum whose Raft store in `dir` was never initialized: no leader, nothing applied, as a
    /// follower is before the log reaches it.
    pub async fn uninitialized(dir: &Path) -> Arc<Quorum> {
        let applied = Arc::new(AppliedMetadata::new());
        let (log_store, state_machine) = open(dir, applied.clone()).await.unwrap();
        let committed = log_store.committed_index();
        let config = default_raft_config();
        let raft = Raft::new(
            1,
            Arc::new(config),
            NetworkFactory::new(1),
            log_store,
            state_machine,
        )
        .await
        .unwrap();
        Arc::new(Quorum::new(
            raft,
            applied,
            1,
            BTreeMap::from([(1, NOWHERE.to_string())]),
            committed,
            Duration::from_secs(5),
        ))
    }

    /// The only voter of a quorum in `dir`, leading itself, bootstrapped with `cluster_id`.
    pub async fn single_voter(dir: &Path, cluster_id: &str) -> Arc<Quorum> {
        let quorum = uninitialized(dir).await;
        let raft = quorum.raft().clone();
        raft.initialize(BTreeMap::from([(1, BasicNode::new(NOWHERE))]))
            .await
            .unwrap();
        raft.wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.current_leader == Some(1), "the only voter leads")
            .await
            .unwrap();
        let cluster_id = cluster_id.to_string();
        quorum
            .run(move |_| {
                let records = vec![Record::ClusterId { cluster_id }];
                Ok(ControllerResult::new(records, ()))
            })
            .await
            .unwrap();
        quorum
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::state::records::PartitionChangeRecord;
    use crate::state::Record;

    /// A command whose entry would be larger than a Raft message may carry with its neighbours is
    /// refused before anything is written (written, no follower could ever receive it), and the
    /// quorum goes on committing.
    #[tokio::test]
    async fn an_entry_too_large_for_a_raft_message_is_refused_and_the_quorum_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let quorum = test_support::single_voter(dir.path(), "entry-size").await;
        let change = |partition| {
            Record::PartitionChange(PartitionChangeRecord {
                topic_id: Uuid::nil(),
                partition,
                leader: Some(2),
                isr: Some(vec![2, 3]),
                replicas: None,
                recovering: None,
                expected_partition_epoch: Some(1),
                adding_replicas: None,
                removing_replicas: None,
                elr: None,
            })
        };
        let one = serde_json::to_vec(&Request {
            records: vec![change(0)],
        })
        .unwrap()
        .len();
        quorum.set_max_entry_bytes(100 * one);
        let before = quorum.applied().offset();
        let refused = quorum
            .run(|_| Ok(ControllerResult::new((0..200).map(change).collect(), ())))
            .await
            .unwrap_err();
        match refused {
            ControllerError::Api(e) => {
                assert_eq!(e.code, ResponseError::PolicyViolation);
                assert!(e.message.contains("200 records"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(quorum.applied().offset(), before, "nothing was written");
        let (offset, ()) = quorum
            .run(|_| Ok(ControllerResult::new((0..50).map(change).collect(), ())))
            .await
            .unwrap();
        assert!(offset > before);
    }
}
