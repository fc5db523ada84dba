//! `LogStore`: the Raft log, the vote, the committed log id and the last purged log id, in two trees
//! of the node's sled database (`log`: entries keyed by big-endian index so sled's order is log
//! order; `meta`: the small values and the store's format version). What must stay true: anything
//! openraft needs durable (appended entries, the vote, a truncation, a purge) is flushed to disk
//! before it is acknowledged — an append's `LogFlushed` callback fires only after the flush — and the
//! log never has a hole: a purge records the new last purged id before it deletes the entries it
//! covers.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{NodeId, TypeConfig};

const LOG_TREE: &str = "log";
const META_TREE: &str = "meta";
const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";
const FORMAT_KEY: &[u8] = b"format";
/// The layout of the trees; stored when a store is created.
pub(super) const FORMAT_VERSION: u32 = 1;

/// The Raft log of one node. Cloning is cheap and shares the same trees (the clone is the log reader
/// replication tasks use).
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// The last committed index saved (0: none), published for readers outside Raft.
    committed_index: Arc<AtomicU64>,
}

/// The part of a stored entry that `get_log_state` needs.
#[derive(Deserialize)]
struct StoredLogId {
    log_id: LogId<NodeId>,
}

impl LogStore {
    /// Opens the log trees of `db` and reads every value openraft reads at start, so a damaged log is
    /// reported here.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError<NodeId>> {
        let open_tree = |name| db.open_tree(name).map_err(|e| StorageIOError::read(&e));
        let store = Self {
            db: db.clone(),
            log: open_tree(LOG_TREE)?,
            meta: open_tree(META_TREE)?,
            committed_index: Arc::default(),
        };
        store.vote()?;
        let committed = store.meta_log_id(COMMITTED_KEY)?;
        store.publish_committed(committed);
        store.meta_log_id(LAST_PURGED_KEY)?;
        store.last_entry_log_id()?;
        Ok(store)
    }

    /// The last committed log index this node has saved (0 until one is), kept up to date as the
    /// store saves newer ones.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    fn publish_committed(&self, committed: Option<LogId<NodeId>>) {
        let index = committed.map_or(0, |log_id| log_id.index);
        self.committed_index.store(index, Ordering::Release);
    }

    /// The format version recorded when the store was created; `None` for a store with no data.
    pub(super) fn format_version(&self) -> Result<Option<u32>, StorageError<NodeId>> {
        read_json(&self.meta, FORMAT_KEY).map_err(|e| StorageIOError::read(&e).into())
    }

    /// Marks a new store as created, durably: from now on an empty store at this path is damage.
    pub(super) async fn record_format_version(&self) -> Result<(), StorageError<NodeId>> {
        self.write_meta(FORMAT_KEY, Some(&FORMAT_VERSION))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }

    fn vote(&self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        read_json(&self.meta, VOTE_KEY).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    fn meta_log_id(&self, key: &[u8]) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        read_json(&self.meta, key).map_err(|e| StorageIOError::read(&e).into())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let Some((_, value)) = self.log.last().map_err(|e| StorageIOError::read_logs(&e))? else {
            return Ok(None);
        };
        let stored: StoredLogId =
            serde_json::from_slice(&value).map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(Some(stored.log_id))
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: Option<&T>,
    ) -> Result<(), StorageError<NodeId>> {
        let result = match value {
            Some(value) => {
                let bytes = serde_json::to_vec(value).map_err(|e| StorageIOError::write(&e))?;
                self.meta.insert(key, bytes).map(drop)
            }
            None => self.meta.remove(key).map(drop),
        };
        result.map_err(|e| StorageIOError::write(&e).into())
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        flush(&self.db).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let Some((first, last)) = inclusive_bounds(&range) else {
            return Ok(Vec::new());
        };
        self.log
            .range(first.to_be_bytes()..=last.to_be_bytes())
            .values()
            .map(|value| {
                let value = value.map_err(|e| StorageIOError::read_logs(&e))?;
                serde_json::from_slice(&value).map_err(|e| StorageIOError::read_logs(&e).into())
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.meta_log_id(LAST_PURGED_KEY)?;
        // Entries at or below the last purged id may survive a crash in the middle of a purge; the
        // purged id still bounds the log from below.
        let last_log_id = self.last_entry_log_id()?.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(VOTE_KEY, Some(vote))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.vote()
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_meta(COMMITTED_KEY, committed.as_ref())?;
        self.flush().await.map_err(|e| StorageIOError::write(&e))?;
        self.publish_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.meta_log_id(COMMITTED_KEY)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let value = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), value);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e.into()));
                Err(error.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_entries(log_id.index.to_be_bytes()..).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point durably first: a crash between the two steps then leaves extra
        // entries below it, never a hole above it.
        self.write_meta(LAST_PURGED_KEY, Some(&log_id))?;
        self.flush().await.map_err(|e| StorageIOError::write(&e))?;
        self.remove_entries(..=log_id.index.to_be_bytes()).await
    }
}

impl LogStore {
    /// Deletes the entries whose keys fall in `range` and flushes.
    async fn remove_entries(
        &self,
        range: impl RangeBounds<[u8; 8]>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(range).keys() {
            batch.remove(key.map_err(|e| StorageIOError::read_logs(&e))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// Makes everything written to `db` durable. Not `Db::flush_async`: in sled 0.34 concurrent
/// `flush_async` calls can deadlock sled's own thread pool (spacejam/sled#1308), and flushes do run
/// concurrently here (log writes, snapshot builds, several nodes in one test process).
pub(super) async fn flush(db: &sled::Db) -> Result<(), sled::Error> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(flushed) => flushed.map(drop),
        Err(e) => Err(sled::Error::Io(std::io::Error::other(e))),
    }
}

/// Reads and decodes one JSON value of `tree`.
pub(super) fn read_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, ReadError> {
    match tree.get(key)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// A stored value that could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("undecodable value: {0}")]
    Json(#[from] serde_json::Error),
}

/// The first and last index of `range`, or `None` when it is empty.
fn inclusive_bounds(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let first = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let last = match range.end_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (first <= last).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusive_bounds_cover_every_range_shape() {
        assert_eq!(inclusive_bounds(&(3..7)), Some((3, 6)));
        assert_eq!(inclusive_bounds(&(3..=7)), Some((3, 7)));
        assert_eq!(inclusive_bounds(&(3..)), Some((3, u64::MAX)));
        assert_eq!(inclusive_bounds(&(..2)), Some((0, 1)));
        assert_eq!(inclusive_bounds(&(..)), Some((0, u64::MAX)));
        assert_eq!(inclusive_bounds(&(5..5)), None);
        assert_eq!(inclusive_bounds(&(..0)), None);
        assert_eq!(
            inclusive_bounds(&(Bound::Excluded(u64::MAX), Bound::Unbounded)),
            None
        );
    }

    #[tokio::test]
    async fn an_undecodable_vote_fails_open_instead_of_starting_empty() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("raft");
        {
            let db = sled::open(&path).unwrap();
            let mut store = LogStore::open(&db).unwrap();
            store.save_vote(&Vote::new(3, 1)).await.unwrap();
            store
                .meta
                .insert(VOTE_KEY, b"{not json".as_slice())
                .unwrap();
            flush(&db).await.unwrap();
        }
        let error = crate::raft::open(dir.path(), Default::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(error, crate::raft::OpenError::Unreadable { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("Vote"), "{error}");
    }

    #[tokio::test]
    async fn an_undecodable_entry_fails_open() {
        let dir = tempfile::TempDir::new().unwrap();
        {
            let db = sled::open(dir.path().join("raft")).unwrap();
            let store = LogStore::open(&db).unwrap();
            store
                .log
                .insert(7u64.to_be_bytes(), b"garbage".as_slice())
                .unwrap();
            flush(&db).await.unwrap();
        }
        let error = crate::raft::open(dir.path(), Default::default())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("unreadable"), "{error}");
    }
}
