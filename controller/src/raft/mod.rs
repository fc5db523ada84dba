//! The controller's Raft layer: openraft 0.9 wired to sled storage and the gRPC transport. It owns the
//! type configuration, the one sled database a node keeps its Raft state in (`data_dir/raft`: the log,
//! the vote, the committed log id and the latest snapshot), and the timing defaults of the quorum.
//! What must stay true: a replicated entry is a `Request` (the records of one command) and is applied
//! only through `StateMachineStore`, whose sole output is `AppliedMetadata`; a store that cannot be
//! read is an error at `open`, never an empty store.

// openraft's `StorageError` and `ConfigError` are large, and they are what its traits and `validate`
// return; boxing them in our helpers would only be undone at the trait boundary.
#![allow(clippy::result_large_err)]

pub mod departure;
pub mod log_store;
pub mod network;
pub mod progress;
pub mod service;
pub mod state_machine;
pub mod vote_hold;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ConfigError, SnapshotPolicy, StorageError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::applied::AppliedMetadata;
use crate::state::Record;

pub use log_store::LogStore;
use log_store::FORMAT_VERSION;
pub use network::{NetworkConnection, NetworkFactory};
pub use service::{raft_service, RaftGrpc};
pub use state_machine::StateMachineStore;

/// A controller's id in the quorum.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Chronik's Raft types: entries carry metadata records, nodes are gRPC addresses (`host:port`).
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type ChronikRaft = openraft::Raft<TypeConfig>;

/// One replicated command: the records it appends, applied together at one log index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Request {
    pub records: Vec<Record>,
}

/// What applying an entry returns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The log index the entry was applied at: its metadata offset.
    pub offset: u64,
}

pub const DEFAULT_HEARTBEAT_MS: u64 = 200;
pub const DEFAULT_ELECTION_MIN_MS: u64 = 600;
pub const DEFAULT_ELECTION_MAX_MS: u64 = 1200;
/// Applied entries between two snapshots.
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 1000;
/// Entries kept in the log behind a snapshot, so a follower slightly behind catches up from the log
/// instead of receiving a whole snapshot.
const LOGS_KEPT_BEHIND_SNAPSHOT: u64 = 100;
/// Time allowed for one snapshot chunk to be sent and acknowledged.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 5000;
/// Most entries one AppendEntries carries. openraft 0.9 gives every AppendEntries the heartbeat
/// interval as its timeout, and at 100,000 partitions an entry of ten 1,000-partition topics is
/// about 1.5 MB: with openraft's default of 300, a controller that restarted behind asked for tens
/// of megabytes at once, timed out at 200 ms every time and never caught up (nor did the quorum
/// while two were behind). A few entries per request keep each one well inside the timeout.
const MAX_PAYLOAD_ENTRIES: u64 = 4;

/// Largest entry (its JSON, as AppendEntries carries it) a command may write: `MAX_PAYLOAD_ENTRIES`
/// of them, with room for the message around them, fit one Raft message, so no follower is ever
/// sent an AppendEntries it must refuse. At about 150 bytes a partition change this is some 350,000
/// partitions in one command; user commands are bounded far below it (`MAX_PARTITIONS_PER_REQUEST`).
pub const MAX_ENTRY_BYTES: usize = service::MAX_MESSAGE_BYTES / (MAX_PAYLOAD_ENTRIES as usize + 1);

/// The Raft configuration of a controller quorum on a LAN. After hearing from a leader, an openraft
/// 0.9 follower waits a leader lease (`election_max_ms`) plus its randomized election timeout before
/// it campaigns, checked every 1.5 heartbeats: with the defaults a leader that goes silent (paused,
/// cut off) is replaced in about 2–3 s, within 5 s even after a split vote. One whose process died
/// is replaced at once (`departure.rs`). The log is purged behind every snapshot (taken each
/// `snapshot_logs` entries), so it does not grow without bound.
pub fn raft_config(
    heartbeat_ms: u64,
    election_min_ms: u64,
    election_max_ms: u64,
    snapshot_logs: u64,
) -> Result<Config, ConfigError> {
    Config {
        cluster_name: "chronik-controller".to_string(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: election_min_ms,
        election_timeout_max: election_max_ms,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_logs),
        max_in_snapshot_log_to_keep: LOGS_KEPT_BEHIND_SNAPSHOT,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        ..Config::default()
    }
    .validate()
}

/// [`raft_config`] with the default timings and snapshot interval.
#[cfg(test)]
pub fn default_raft_config() -> Config {
    raft_config(
        DEFAULT_HEARTBEAT_MS,
        DEFAULT_ELECTION_MIN_MS,
        DEFAULT_ELECTION_MAX_MS,
        DEFAULT_SNAPSHOT_LOGS,
    )
    .expect("the default timings are valid")
}

/// How long `open` waits for sled's lock on the store. sled releases it a moment after the last
/// handle is dropped, so a node restarted within one process can briefly find it still held.
const LOCK_WAIT: Duration = Duration::from_secs(2);

async fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::open(path) {
            Err(e) if is_locked(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            opened => return opened,
        }
    }
}

/// sled 0.34 reports a held lock only as an `Other` I/O error with this message.
fn is_locked(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(e) if e.kind() == ErrorKind::Other
        && e.to_string().starts_with("could not acquire lock"))
}

/// Why the Raft store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the Raft store at {}: {source}", path.display())]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("the Raft store at {} is in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("the Raft store at {} is unreadable: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: StorageError<NodeId>,
    },
    /// sled recovers a database it cannot read as an empty one; a node that then voted and acked
    /// entries as if it had none could break the quorum's guarantees.
    #[error(
        "the Raft store at {} exists but holds no Raft data: it is damaged (or the node crashed \
         while creating it); refusing to start with an empty log",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error(
        "the Raft store at {} has format version {found}, this build reads {FORMAT_VERSION}",
        path.display()
    )]
    UnknownFormat { path: PathBuf, found: u32 },
}

/// Opens (or creates) the node's Raft store at `data_dir/raft` and loads its latest snapshot into
/// `applied`. Everything already stored is read once here, so a damaged store fails now rather than
/// after the node has started voting; an existing store that comes back empty is refused.
pub async fn open(
    data_dir: &Path,
    applied: Arc<AppliedMetadata>,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    let path = data_dir.join("raft");
    let existed = std::fs::read_dir(&path).is_ok_and(|mut files| files.next().is_some());
    let db = open_db(&path).await.map_err(|source| match source {
        source if is_locked(&source) => OpenError::Locked { path: path.clone() },
        source => OpenError::Sled {
            path: path.clone(),
            source,
        },
    })?;
    let unreadable = |source| OpenError::Unreadable {
        path: path.clone(),
        source,
    };
    let log_store = LogStore::open(&db).map_err(unreadable)?;
    match log_store.format_version().map_err(unreadable)? {
        Some(FORMAT_VERSION) => {}
        Some(found) => return Err(OpenError::UnknownFormat { path, found }),
        None if existed => return Err(OpenError::Empty { path }),
        None => log_store
            .record_format_version()
            .await
            .map_err(unreadable)?,
    }
    let state_machine = StateMachineStore::open(&db, applied).map_err(unreadable)?;
    Ok((log_store, state_machine))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
        RaftSnapshotBuilder, StorageIOError, Vote,
    };
    use tempfile::TempDir;

    use super::*;

    /// Opens a fresh store in its own temp dir, which lives as long as the test that uses it.
    struct TempStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
            let dir = TempDir::new().map_err(|e| StorageIOError::write(&e))?;
            let (log_store, state_machine) = open(dir.path(), Arc::default())
                .await
                .map_err(|e| StorageIOError::write(&e))?;
            Ok((dir, log_store, state_machine))
        }
    }

    #[test]
    fn stores_pass_the_openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(TempStoreBuilder)
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// Entry 1 makes node 1 the only voter; entries 2.. each hand out a block of producer ids, entry 2
    /// also sets the cluster id.
    fn entries(indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry<TypeConfig>> {
        indexes
            .map(|index| {
                let payload = if index == 1 {
                    EntryPayload::Membership(Membership::new(
                        vec![BTreeSet::from([1])],
                        BTreeMap::from([(1, openraft::BasicNode::new("127.0.0.1:1"))]),
                    ))
                } else {
                    let mut records = vec![Record::ProducerIds {
                        broker_id: 1,
                        broker_epoch: 1,
                        next_producer_id: index as i64 * 1000,
                    }];
                    if index == 2 {
                        records.push(Record::ClusterId {
                            cluster_id: "restart-test".to_string(),
                        });
                    }
                    EntryPayload::Normal(Request { records })
                };
                Entry {
                    log_id: log_id(2, index),
                    payload,
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn reopened_store_restores_snapshot_vote_and_committed_log() {
        let dir = TempDir::new().unwrap();
        let vote = Vote::new_committed(2, 1);
        let applied = Arc::new(AppliedMetadata::new());
        let snapshot_image = {
            let (mut log_store, mut state_machine) =
                open(dir.path(), applied.clone()).await.unwrap();
            log_store.save_vote(&vote).await.unwrap();
            log_store.blocking_append(entries(1..=6)).await.unwrap();
            log_store.save_committed(Some(log_id(2, 6))).await.unwrap();

            let responses = state_machine.apply(entries(1..=4)).await.unwrap();
            let offsets: Vec<u64> = responses.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [1, 2, 3, 4]);
            let snapshot = state_machine
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, 4)));
            let snapshot_image = applied.image();
            state_machine.apply(entries(5..=6)).await.unwrap();
            log_store.purge(log_id(2, 4)).await.unwrap();
            snapshot_image
        };
        assert_eq!(snapshot_image.offset, 4);
        assert_eq!(snapshot_image.next_producer_id, 4000);

        let reopened = Arc::new(AppliedMetadata::new());
        let (mut log_store, mut state_machine) = open(dir.path(), reopened.clone()).await.unwrap();
        assert_eq!(reopened.image(), snapshot_image);
        assert_eq!(reopened.offset(), 4);
        assert_eq!(log_store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(
            log_store.read_committed().await.unwrap(),
            Some(log_id(2, 6))
        );
        assert_eq!(
            log_store
                .committed_index()
                .load(std::sync::atomic::Ordering::Acquire),
            6
        );
        let log_state = log_store.get_log_state().await.unwrap();
        assert_eq!(log_state.last_purged_log_id, Some(log_id(2, 4)));
        assert_eq!(log_state.last_log_id, Some(log_id(2, 6)));
        let (last_applied, membership) = state_machine.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(2, 4)));
        assert_eq!(membership.log_id(), &Some(log_id(2, 1)));

        // What openraft does at start: re-apply the committed entries after the snapshot.
        let unapplied = log_store.try_get_log_entries(5..=6).await.unwrap();
        assert_eq!(unapplied.len(), 2);
        state_machine.apply(unapplied).await.unwrap();
        assert_eq!(reopened.image(), applied.image());
        assert_eq!(reopened.image().next_producer_id, 6000);
    }

    #[tokio::test]
    async fn a_store_path_that_is_not_a_database_is_an_error() {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("raft"), b"not a sled database").unwrap();
        let error = open(dir.path(), Arc::default()).await.err().unwrap();
        assert!(matches!(error, OpenError::Sled { .. }), "{error}");
        assert!(error.to_string().contains("raft"), "{error}");
    }

    /// Creates a store holding a vote, and returns the path of its sled data file.
    async fn store_with_a_vote(dir: &TempDir) -> PathBuf {
        let (mut log_store, _) = open(dir.path(), Arc::default()).await.unwrap();
        log_store.save_vote(&Vote::new(3, 1)).await.unwrap();
        dir.path().join("raft").join("db")
    }

    #[tokio::test]
    async fn a_damaged_database_is_an_error_not_an_empty_store() {
        let dir = TempDir::new().unwrap();
        let db_file = store_with_a_vote(&dir).await;
        let mut bytes = std::fs::read(&db_file).unwrap();
        bytes.iter_mut().for_each(|b| *b ^= 0x5a);
        std::fs::write(&db_file, bytes).unwrap();

        let error = open(dir.path(), Arc::default()).await.err().unwrap();
        assert!(
            matches!(error, OpenError::Sled { .. } | OpenError::Empty { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_database_that_sled_recovers_empty_is_refused() {
        let dir = TempDir::new().unwrap();
        let db_file = store_with_a_vote(&dir).await;
        std::fs::write(&db_file, b"").unwrap();

        let error = open(dir.path(), Arc::default()).await.err().unwrap();
        assert!(matches!(error, OpenError::Empty { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_store_in_use_is_reported_as_locked() {
        let dir = TempDir::new().unwrap();
        let _in_use = open(dir.path(), Arc::default()).await.unwrap();
        let error = open(dir.path(), Arc::default()).await.err().unwrap();
        assert!(matches!(error, OpenError::Locked { .. }), "{error}");
    }

    #[test]
    fn default_timings_validate_and_bad_ones_do_not() {
        let config = default_raft_config();
        assert_eq!(config.heartbeat_interval, DEFAULT_HEARTBEAT_MS);
        assert!(matches!(
            config.snapshot_policy,
            SnapshotPolicy::LogsSinceLast(1000)
        ));
        assert!(raft_config(200, 1200, 600, 1000).is_err());
        assert!(raft_config(900, 600, 1200, 1000).is_err());
    }
}
