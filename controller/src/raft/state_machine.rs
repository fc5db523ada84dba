//! `StateMachineStore`: applies committed entries to `AppliedMetadata` and keeps the latest snapshot
//! in the `snapshot` tree of the node's sled database. The image lives only in `AppliedMetadata`; this
//! store adds the Raft bookkeeping (last applied log id, last membership) and snapshots, which hold
//! `{last_applied, last_membership, image}` as JSON. What must stay true: every applied entry — normal,
//! blank or membership — reaches `AppliedMetadata::apply` at its log index, so the metadata offset is
//! the last applied index; the state is not persisted on apply but every snapshot is, flushed, and a
//! restart loads it and lets openraft re-apply the committed log after it; a stored snapshot is never
//! replaced by an older one.

use std::error::Error;
use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::log_store::{flush, read_json};
use super::{NodeId, Response, TypeConfig};
use crate::applied::AppliedMetadata;
use crate::state::MetadataImage;

const SNAPSHOT_TREE: &str = "snapshot";
const META_KEY: &[u8] = b"meta";
const DATA_KEY: &[u8] = b"data";

type Meta = SnapshotMeta<NodeId, BasicNode>;
type Membership = StoredMembership<NodeId, BasicNode>;

/// The bytes of a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotContent {
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
    image: MetadataImage,
}

impl SnapshotContent {
    fn decode(meta: &Meta, data: &[u8]) -> Result<Self, StorageError<NodeId>> {
        serde_json::from_slice(data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e).into())
    }
}

pub struct StateMachineStore {
    applied: Arc<AppliedMetadata>,
    snapshots: SnapshotStore,
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
}

impl StateMachineStore {
    /// Opens the snapshot tree of `db` and restores `applied` from the stored snapshot, if any.
    pub(crate) fn open(
        db: &sled::Db,
        applied: Arc<AppliedMetadata>,
    ) -> Result<Self, StorageError<NodeId>> {
        let tree = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let mut state_machine = Self {
            applied,
            snapshots: SnapshotStore {
                db: db.clone(),
                tree,
                write_lock: Arc::default(),
            },
            last_applied: None,
            last_membership: Membership::default(),
        };
        match state_machine.snapshots.load()? {
            Some((meta, data)) => {
                let content = SnapshotContent::decode(&meta, &data)?;
                state_machine.restore(&meta, content.image);
            }
            None => state_machine.applied.install(MetadataImage::default()),
        }
        Ok(state_machine)
    }

    fn restore(&mut self, meta: &Meta, image: MetadataImage) {
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.applied.install(image);
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut responses = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let offset = entry.log_id.index;
            let records = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(request) => request.records,
                EntryPayload::Membership(membership) => {
                    self.last_membership = Membership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            self.applied.apply(offset, records);
            self.last_applied = Some(entry.log_id);
            responses.push(Response { offset });
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Taken between two applies, so the copy matches `last_applied` exactly.
        SnapshotBuilder {
            content: Arc::new(SnapshotContent {
                last_applied: self.last_applied,
                last_membership: self.last_membership.clone(),
                image: self.applied.image(),
            }),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        // Decoded on the blocking pool, as a snapshot is built (see `build_snapshot`).
        let decode_meta = meta.clone();
        let (content, data) = tokio::task::spawn_blocking(move || {
            SnapshotContent::decode(&decode_meta, &data).map(|content| (content, data))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))??;
        self.snapshots.save(meta, &data).await?;
        crate::metrics::metrics().snapshot_installed(data.len());
        self.restore(meta, content.image);
        tracing::info!(snapshot = %meta, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.snapshots.load()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot from a copy of the state taken by `get_snapshot_builder`, on its own task while
/// the state machine goes on applying.
pub struct SnapshotBuilder {
    content: Arc<SnapshotContent>,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let started = std::time::Instant::now();
        let meta = Meta {
            last_log_id: self.content.last_applied,
            last_membership: self.content.last_membership.clone(),
            snapshot_id: snapshot_id(self.content.last_applied),
        };
        // Encoding the image takes 0.1-0.25 s at 100,000 partitions (issue #18): on the blocking
        // pool, not on a runtime thread that Raft's heartbeats and the brokers' streams wait for.
        let content = Arc::clone(&self.content);
        let data = tokio::task::spawn_blocking(move || serde_json::to_vec(&*content))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.snapshots.save(&meta, &data).await?;
        crate::metrics::metrics().snapshot_built(data.len(), started.elapsed());
        tracing::info!(snapshot = %meta, bytes = data.len(), took_ms = started.elapsed().as_millis() as u64, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Unique even for two snapshots at the same log id (they may differ in bytes).
fn snapshot_id(last_applied: Option<LogId<NodeId>>) -> String {
    let unique = Uuid::new_v4().simple();
    match last_applied {
        Some(log_id) => format!("{}-{}-{unique}", log_id.leader_id.term, log_id.index),
        None => format!("none-{unique}"),
    }
}

/// The latest snapshot: its meta and data under two keys, written together in one batch.
#[derive(Clone)]
struct SnapshotStore {
    db: sled::Db,
    tree: sled::Tree,
    /// Makes "compare with the stored snapshot, then replace it" atomic between the state machine
    /// and builders running on other tasks.
    write_lock: Arc<Mutex<()>>,
}

impl SnapshotStore {
    fn load(&self) -> Result<Option<(Meta, Vec<u8>)>, StorageError<NodeId>> {
        let meta: Option<Meta> =
            read_json(&self.tree, META_KEY).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let unreadable = |e: &(dyn Error + 'static)| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::from_dyn(e, None))
        };
        let data = self.tree.get(DATA_KEY).map_err(|e| unreadable(&e))?;
        match data {
            Some(data) => Ok(Some((meta, data.to_vec()))),
            None => Err(unreadable(&MissingSnapshotData).into()),
        }
    }

    /// Stores the snapshot, flushed, unless a newer one is already stored.
    async fn save(&self, meta: &Meta, data: &[u8]) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &(dyn Error + 'static)| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::from_dyn(e, None))
        };
        {
            let _guard = self
                .write_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let stored: Option<Meta> = read_json(&self.tree, META_KEY).map_err(|e| failed(&e))?;
            if stored.is_some_and(|stored| stored.last_log_id > meta.last_log_id) {
                return Ok(());
            }
            let mut batch = sled::Batch::default();
            batch.insert(META_KEY, serde_json::to_vec(meta).map_err(|e| failed(&e))?);
            batch.insert(DATA_KEY, data);
            self.tree.apply_batch(batch).map_err(|e| failed(&e))?;
        }
        flush(&self.db).await.map_err(|e| failed(&e))?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("snapshot meta is stored without its data")]
struct MissingSnapshotData;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::raft::Request;
    use crate::state::Record;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    #[tokio::test]
    async fn every_applied_entry_moves_the_metadata_offset() {
        let dir = tempfile::TempDir::new().unwrap();
        let applied = Arc::new(AppliedMetadata::new());
        let (_, mut state_machine) = crate::raft::open(dir.path(), applied.clone())
            .await
            .unwrap();
        let mut offsets = applied.subscribe();

        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]),
        );
        let responses = state_machine
            .apply([entry(1, EntryPayload::Blank)])
            .await
            .unwrap();
        assert_eq!(responses, [Response { offset: 1 }]);
        assert_eq!(*offsets.borrow_and_update(), 1);

        let responses = state_machine
            .apply([
                entry(2, EntryPayload::Membership(membership.clone())),
                entry(
                    3,
                    EntryPayload::Normal(Request {
                        records: vec![Record::ClusterId {
                            cluster_id: "offsets".to_string(),
                        }],
                    }),
                ),
                entry(4, EntryPayload::Blank),
            ])
            .await
            .unwrap();
        let offsets_applied: Vec<u64> = responses.iter().map(|r| r.offset).collect();
        assert_eq!(offsets_applied, [2, 3, 4]);
        assert_eq!(applied.offset(), 4);
        assert_eq!(applied.image().offset, 4);
        assert_eq!(applied.image().cluster_id.as_deref(), Some("offsets"));
        let (last_applied, last_membership) = state_machine.applied_state().await.unwrap();
        assert_eq!(last_applied.map(|l| l.index), Some(4));
        assert_eq!(last_membership.membership(), &membership);
    }

    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let applied = Arc::new(AppliedMetadata::new());
        let (_, mut state_machine) = crate::raft::open(dir.path(), applied).await.unwrap();
        state_machine
            .apply([entry(1, EntryPayload::Blank)])
            .await
            .unwrap();
        let mut older = state_machine.get_snapshot_builder().await;
        state_machine
            .apply([entry(2, EntryPayload::Blank)])
            .await
            .unwrap();
        let newer = state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // The builder taken first finishes last, as it may when builds run on their own tasks.
        older.build_snapshot().await.unwrap();

        let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, newer.meta);
    }
}
