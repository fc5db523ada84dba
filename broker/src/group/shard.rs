//! One partition of the offsets topic that this broker leads: the groups hashed to it, their committed
//! offsets, and the single writer that appends the shard's records in the order they were decided.
//!
//! What must stay true: state visible to clients changes only after its record is committed (offsets
//! are applied when their write completes; a group's SyncGroup answers wait for its write); records
//! reach the log in the order the shard decided them (one writer task appends them one at a time,
//! while their durability waits overlap); and a committed offset is replaced only by one written
//! later in the log, whatever order concurrent writes complete in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::classic_group::ClassicGroup;
use super::records::{GroupValue, OffsetKey, OffsetValue, OffsetsRecord};
use crate::log::batch::Batches;
use crate::log::{LogError, PartitionLog};
use crate::replica::{AppendError, Partition, ReplicaManager};

/// A committed offset and where its record is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub value: OffsetValue,
    pub log_offset: i64,
}

/// Offsets of one group, by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

#[derive(Default)]
pub struct ShardState {
    pub groups: HashMap<String, ClassicGroup>,
    pub offsets: HashMap<String, GroupOffsets>,
}

impl ShardState {
    /// Applies a committed offset unless a later record already replaced it.
    pub fn apply_offset(&mut self, key: OffsetKey, value: Option<OffsetValue>, log_offset: i64) {
        let offsets = self.offsets.entry(key.group.clone()).or_default();
        let slot = (key.topic, key.partition);
        if offsets
            .get(&slot)
            .is_some_and(|c| c.log_offset > log_offset)
        {
            return;
        }
        match value {
            Some(value) => {
                offsets.insert(slot, CommittedOffset { value, log_offset });
            }
            None => {
                offsets.remove(&slot);
            }
        }
        if offsets.is_empty() {
            self.offsets.remove(&key.group);
        }
    }

    /// Every group id known here: with a group record, members, or only committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .groups
            .keys()
            .chain(self.offsets.keys())
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Forgets a group with no members, no pending members and no offsets left.
    pub fn drop_if_unused(&mut self, group_id: &str) {
        let unused = self
            .groups
            .get(group_id)
            .is_none_or(|g| g.is_empty() && g.generation() == 0)
            && !self.offsets.contains_key(group_id);
        if unused {
            self.groups.remove(group_id);
        }
    }
}

/// A write of records to the shard's partition; `done` gets the base offset once committed.
struct WriteRequest {
    records: Vec<OffsetsRecord>,
    done: oneshot::Sender<Result<i64, ResponseError>>,
}

pub struct Shard {
    pub partition_index: i32,
    pub leader_epoch: i32,
    state: Mutex<ShardState>,
    writes: mpsc::UnboundedSender<WriteRequest>,
}

impl Shard {
    /// A loaded shard and its writer task (which ends when the shard is dropped).
    pub fn start(
        partition: Arc<Partition>,
        leader_epoch: i32,
        state: ShardState,
        replicas: Arc<ReplicaManager>,
        commit_timeout: Duration,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Shard> {
        let (writes, requests) = mpsc::unbounded_channel();
        let shard = Arc::new(Shard {
            partition_index: partition.index,
            leader_epoch,
            state: Mutex::new(state),
            writes,
        });
        tracker.spawn(run_writer(
            partition,
            replicas,
            requests,
            commit_timeout,
            tracker.clone(),
            cancel,
        ));
        shard
    }

    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues records for the log (in call order) and waits until they are committed.
    pub async fn write(&self, records: Vec<OffsetsRecord>) -> Result<i64, ResponseError> {
        let (done, result) = oneshot::channel();
        self.writes
            .send(WriteRequest { records, done })
            .map_err(|_| ResponseError::NotCoordinator)?;
        result.await.unwrap_or(Err(ResponseError::NotCoordinator))
    }

    /// Queues records and returns at once; `on_done` runs with the outcome.
    pub fn write_then(
        &self,
        records: Vec<OffsetsRecord>,
    ) -> oneshot::Receiver<Result<i64, ResponseError>> {
        let (done, result) = oneshot::channel();
        if let Err(e) = self.writes.send(WriteRequest { records, done }) {
            let _ = e.0.done.send(Err(ResponseError::NotCoordinator));
        }
        result
    }
}

/// Appends each request's batch in turn (so log order is decision order); the waits for the ISR run
/// concurrently, so one slow commit does not hold back the next append.
async fn run_writer(
    partition: Arc<Partition>,
    replicas: Arc<ReplicaManager>,
    mut requests: mpsc::UnboundedReceiver<WriteRequest>,
    commit_timeout: Duration,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            _ = cancel.cancelled() => return,
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
        };
        let batch = match encode_batch(&request.records) {
            Ok(batch) => batch,
            Err(error) => {
                let _ = request.done.send(Err(error));
                continue;
            }
        };
        match replicas.append_as_leader(&partition, batch, -1).await {
            Ok(pending) => {
                let replicas = replicas.clone();
                tracker.spawn(async move {
                    let result = replicas
                        .complete_append(pending, -1, commit_timeout)
                        .await
                        .map(|info| info.base_offset)
                        .map_err(|e| coordinator_error(&e));
                    let _ = request.done.send(result);
                });
            }
            Err(e) => {
                let _ = request.done.send(Err(coordinator_error(&e)));
            }
        }
    }
}

/// Kafka's mapping of a failed offsets-topic write to what group clients understand
/// (`GroupMetadataManager`): lost leadership is NOT_COORDINATOR, a missing quorum or a timeout is
/// COORDINATOR_NOT_AVAILABLE (both make the client look the coordinator up again), an oversize
/// record is INVALID_COMMIT_OFFSET_SIZE.
fn coordinator_error(e: &AppendError) -> ResponseError {
    match e {
        AppendError::NotLeader => ResponseError::NotCoordinator,
        AppendError::NotEnoughReplicas { .. }
        | AppendError::NotEnoughReplicasAfterAppend
        | AppendError::TimedOut => ResponseError::CoordinatorNotAvailable,
        AppendError::Log(LogError::MessageTooLarge { .. }) => {
            ResponseError::InvalidCommitOffsetSize
        }
        AppendError::Log(_) | AppendError::Storage(_) => {
            warn!("offsets topic write failed: {e}");
            ResponseError::NotCoordinator
        }
    }
}

fn encode_batch(records: &[OffsetsRecord]) -> Result<Bytes, ResponseError> {
    let now = now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // No producer id, so the batch's base sequence must be -1; the encoder keeps records
                // in one batch only while offset - sequence stays the same.
                sequence: i as i32 - 1,
                timestamp: now,
                key: Some(key),
                value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        warn!("cannot encode offsets topic records: {e}");
        ResponseError::UnknownServerError
    })?;
    Ok(buf.freeze())
}

/// What a partition of the offsets topic holds, replayed.
#[derive(Default)]
pub struct Replayed {
    pub groups: HashMap<String, GroupValue>,
    pub offsets: ShardState,
    pub records: usize,
    pub unreadable: usize,
}

impl Replayed {
    pub fn into_state(self, now: Instant) -> ShardState {
        let mut state = self.offsets;
        for (id, value) in self.groups {
            state
                .groups
                .insert(id.clone(), ClassicGroup::from_record(id, value, now));
        }
        state
    }
}

/// Reads the partition from its log start to `end` (the log end when leadership began) and rebuilds
/// its groups and offsets. Runs on a blocking thread.
pub fn replay(log: &PartitionLog, end: i64) -> Result<Replayed, LogError> {
    const CHUNK: usize = 1 << 20;
    let mut replayed = Replayed::default();
    let mut offset = log.log_start_offset();
    while offset < end {
        let read = log.read(offset, CHUNK, end)?;
        if read.records.is_empty() {
            break;
        }
        let mut next = offset;
        for batch in Batches::new(read.records) {
            let batch = batch.map_err(LogError::from)?;
            let header = *batch.header();
            next = next.max(header.next_offset());
            if header.next_offset() <= offset || batch.is_control() {
                continue;
            }
            let mut raw = batch.as_bytes().clone();
            let set = match RecordBatchDecoder::decode(&mut raw) {
                Ok(set) => set,
                Err(e) => {
                    warn!(
                        offset = header.base_offset,
                        "unreadable offsets topic batch: {e}"
                    );
                    replayed.unreadable += 1;
                    continue;
                }
            };
            for record in set.records {
                if record.offset < offset || record.offset >= end {
                    continue;
                }
                replayed.records += 1;
                match OffsetsRecord::decode(record.key.as_ref(), record.value.as_ref()) {
                    Ok(OffsetsRecord::Offset { key, value }) => {
                        replayed.offsets.apply_offset(key, value, record.offset)
                    }
                    Ok(OffsetsRecord::Group { group, value }) => match value {
                        Some(value) => {
                            replayed.groups.insert(group, value);
                        }
                        None => {
                            replayed.groups.remove(&group);
                        }
                    },
                    Err(e) => {
                        warn!(
                            offset = record.offset,
                            "unreadable offsets topic record: {e}"
                        );
                        replayed.unreadable += 1;
                    }
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(replayed)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
