//! One partition of the offsets topic that this broker leads: the groups hashed to it, their committed
//! offsets, and the single writer that appends the shard's records in the order they were decided.
//!
//! What must stay true: state visible to clients changes only after its record is committed (offsets
//! are applied when their write completes; a group's SyncGroup answers wait for its write); records
//! reach the log in the order the shard decided them (one writer task appends them one at a time,
//! while their durability waits overlap); and a committed offset is replaced only by one written
//! later in the log, whatever order concurrent writes complete in.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::Record;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::classic_group::{ClassicGroup, GroupState};
use super::consumer_group::ConsumerGroup;
use super::consumer_records::ConsumerRecord;
use super::records::{GroupValue, OffsetKey, OffsetValue, OffsetsRecord};
use super::OFFSETS_TOPIC;
use crate::coordinator_runtime::{replay_log, Replayed as LogItem};
use crate::log::batch::{encode_plain_batch, plain_record};
use crate::log::now_ms;
use crate::log::txn_marker::EndTxnMarker;
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

/// Offsets a transactional producer committed with TxnOffsetCommit (KIP-98), each with where its record
/// is in the log, waiting for the transaction's marker.
pub type PendingTxnOffsets = Vec<(OffsetKey, OffsetValue, i64)>;

#[derive(Default)]
pub struct ShardState {
    pub groups: HashMap<String, ClassicGroup>,
    /// Groups of the KIP-848 consumer protocol. A group id is in at most one of the two maps.
    pub consumer_groups: HashMap<String, ConsumerGroup>,
    pub offsets: HashMap<String, GroupOffsets>,
    /// Transactional offsets by producer id, until the producer's COMMIT (applied) or ABORT
    /// (dropped) marker is committed to this partition.
    pub pending_txn: HashMap<i64, PendingTxnOffsets>,
    /// Set when leadership moved away: a request that found the shard just before must not act on
    /// it (nothing would ever complete a member parked here).
    pub unloaded: bool,
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

    /// Ends producer `producer_id`'s transaction here: its pending offsets are applied on a commit
    /// (unless a later record replaced them) and dropped on an abort.
    pub fn complete_transaction(&mut self, producer_id: i64, commit: bool) {
        let Some(pending) = self.pending_txn.remove(&producer_id) else {
            return;
        };
        if commit {
            for (key, value, log_offset) in pending {
                self.apply_offset(key, Some(value), log_offset);
            }
        }
    }

    /// Whether a transaction has offsets pending for the group's partition (OffsetFetch with
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT for it, KIP-447).
    pub fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn
            .values()
            .flatten()
            .any(|(k, _, _)| k.group == group && k.topic == topic && k.partition == partition)
    }

    /// Applies a consumer group record (live or replayed); a group appears with its first record
    /// and goes with its metadata tombstone.
    pub fn apply_consumer(&mut self, record: &ConsumerRecord, now: Instant, session: Duration) {
        let id = record.group();
        if let ConsumerRecord::GroupMetadata { value: None, .. } = record {
            self.consumer_groups.remove(id);
            return;
        }
        if record.is_tombstone() && !self.consumer_groups.contains_key(id) {
            return;
        }
        self.consumer_groups
            .entry(id.to_owned())
            .or_insert_with(|| ConsumerGroup::new(id.to_owned()))
            .replay(record, now, session);
    }

    /// Every group id known here: with a group record, members, or only committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .groups
            .keys()
            .chain(self.consumer_groups.keys())
            .chain(self.offsets.keys())
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Offsets past `offsets.retention.minutes` (Kafka's rules): in an Empty group, all of them once
    /// the group has been empty that long (or, for an offset committed since, that long after the
    /// commit); in a group with no membership record (commits from outside group management), each
    /// offset that long after its commit. Groups with members keep theirs. Also returns the Empty groups
    /// left with no offsets, which are then gone.
    pub fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> (Vec<OffsetKey>, Vec<String>) {
        let mut expired = Vec::new();
        let mut emptied = Vec::new();
        for (group_id, offsets) in &self.offsets {
            // A consumer group's offsets go by their commit time once it has no members.
            if self
                .consumer_groups
                .get(group_id)
                .is_some_and(|g| !g.is_empty())
            {
                continue;
            }
            let since = match self.groups.get(group_id) {
                Some(g) if g.state() == GroupState::Empty => Some(g.state_timestamp_ms()),
                Some(_) => continue,
                None => None,
            };
            let before = expired.len();
            for ((topic, partition), committed) in offsets {
                let from = since.map_or(committed.value.commit_timestamp_ms, |s| {
                    s.max(committed.value.commit_timestamp_ms)
                });
                if now_ms.saturating_sub(from) >= retention_ms {
                    expired.push(OffsetKey {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    });
                }
            }
            if expired.len() - before == offsets.len() && since.is_some() {
                emptied.push(group_id.clone());
            }
        }
        (expired, emptied)
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
        if self
            .consumer_groups
            .get(group_id)
            .is_some_and(|g| g.is_unused())
        {
            self.consumer_groups.remove(group_id);
        }
    }
}

/// A write of records to the shard's partition; `done` gets the base offset once committed.
/// `producer` makes it a transactional batch of that producer id and epoch (TxnOffsetCommit).
struct WriteRequest {
    records: Vec<OffsetsRecord>,
    producer: Option<(i64, i16)>,
    /// Memory already holds what the records say: if they do not reach the log, the shard is
    /// poisoned.
    applied: bool,
    done: oneshot::Sender<Result<i64, ResponseError>>,
}

pub struct Shard {
    pub partition_index: i32,
    pub leader_epoch: i32,
    state: Mutex<ShardState>,
    writes: mpsc::UnboundedSender<WriteRequest>,
    /// Set when records memory already held failed to reach the log (`write_applied`): memory is
    /// ahead of the log, so nothing more is written and the coordinator reloads the partition.
    poisoned: Arc<AtomicBool>,
    partition: Arc<Partition>,
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
        let poisoned = Arc::new(AtomicBool::new(false));
        let shard = Arc::new(Shard {
            partition_index: partition.index,
            leader_epoch,
            state: Mutex::new(state),
            writes,
            poisoned: poisoned.clone(),
            partition: partition.clone(),
        });
        tracker.spawn(run_writer(
            partition,
            leader_epoch,
            replicas,
            requests,
            commit_timeout,
            poisoned,
            tracker.clone(),
            cancel,
        ));
        shard
    }

    /// Whether the partition must be reloaded from its log (see `poisoned`).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, for a client request: NOT_COORDINATOR once the shard was unloaded.
    pub fn lock_live(&self) -> Result<MutexGuard<'_, ShardState>, ResponseError> {
        let state = self.lock();
        if state.unloaded {
            return Err(ResponseError::NotCoordinator);
        }
        Ok(state)
    }

    /// Queues records for the log (in call order) and waits until they are committed.
    pub async fn write(&self, records: Vec<OffsetsRecord>) -> Result<i64, ResponseError> {
        self.write_as(records, None).await
    }

    /// [`Shard::write`] as a transactional batch of `producer` (id, epoch).
    pub async fn write_as(
        &self,
        records: Vec<OffsetsRecord>,
        producer: Option<(i64, i16)>,
    ) -> Result<i64, ResponseError> {
        let (done, result) = oneshot::channel();
        self.writes
            .send(WriteRequest {
                records,
                producer,
                applied: false,
                done,
            })
            .map_err(|_| ResponseError::NotCoordinator)?;
        result.await.unwrap_or(Err(ResponseError::NotCoordinator))
    }

    /// Queues records and returns at once; the receiver gets the outcome.
    pub fn write_then(
        &self,
        records: Vec<OffsetsRecord>,
    ) -> oneshot::Receiver<Result<i64, ResponseError>> {
        self.queue(records, false)
    }

    /// [`Shard::write_then`] of records memory already holds (consumer group decisions, deletions):
    /// if they fail to reach the log the shard is poisoned and reloaded, so memory does not stay
    /// ahead of the log.
    pub fn write_applied(
        &self,
        records: Vec<OffsetsRecord>,
    ) -> oneshot::Receiver<Result<i64, ResponseError>> {
        self.queue(records, true)
    }

    fn queue(
        &self,
        records: Vec<OffsetsRecord>,
        applied: bool,
    ) -> oneshot::Receiver<Result<i64, ResponseError>> {
        let (done, result) = oneshot::channel();
        if let Err(e) = self.writes.send(WriteRequest {
            records,
            producer: None,
            applied,
            done,
        }) {
            let _ = e.0.done.send(Err(ResponseError::NotCoordinator));
        }
        result
    }

    /// Whether a write would be taken now: the partition's in-sync replicas are at least its
    /// `min.insync.replicas` (appends are refused below it, before anything is written).
    pub fn writable(&self) -> bool {
        let state = self.partition.state();
        state.isr.len() >= state.min_insync_replicas
    }
}

/// Appends each request's batch in turn (so log order is decision order); the waits for the ISR run
/// concurrently, so one slow commit does not hold back the next append. Once records memory already
/// held (`write_applied`) fail to reach the log, no later batch (decided on top of them) is appended:
/// the shard is poisoned until the coordinator reloads it. A batch is appended only while this broker
/// leads the partition in `leader_epoch`, the epoch the shard was loaded for: once it leads again in a
/// later epoch, a newer shard has loaded the log and this one's queued writes fail (NOT_COORDINATOR).
#[allow(clippy::too_many_arguments)]
async fn run_writer(
    partition: Arc<Partition>,
    leader_epoch: i32,
    replicas: Arc<ReplicaManager>,
    mut requests: mpsc::UnboundedReceiver<WriteRequest>,
    commit_timeout: Duration,
    poisoned: Arc<AtomicBool>,
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
        if poisoned.load(Ordering::Acquire) {
            let _ = request
                .done
                .send(Err(ResponseError::CoordinatorNotAvailable));
            continue;
        }

        let encoded = match request.producer {
            None => encode_batch(&request.records),
            Some((producer_id, epoch)) => {
                let sequence = next_sequence(&partition.log, producer_id, epoch);
                encode_transactional_batch(&request.records, producer_id, epoch, sequence)
            }
        };
        let batch = match encoded {
            Ok(batch) => batch,
            Err(error) => {
                if request.applied {
                    poisoned.store(true, Ordering::Release);
                }
                let _ = request.done.send(Err(error));
                continue;
            }
        };
        match replicas
            .append_as_coordinator(&partition, batch, leader_epoch)
            .await
        {
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
                if request.applied {
                    warn!(
                        partition = partition.index,
                        "records already applied did not reach the log ({e}): reloading the partition"
                    );
                    poisoned.store(true, Ordering::Release);
                }
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
        // A TxnOffsetCommit from a producer epoch the partition has seen bumped: a zombie.
        AppendError::Log(LogError::Producer(
            crate::log::producer_state::ProducerStateError::InvalidProducerEpoch { .. },
        )) => ResponseError::ProducerFenced,
        AppendError::Log(_) | AppendError::Storage(_) => {
            warn!("offsets topic write failed: {e}");
            ResponseError::NotCoordinator
        }
    }
}

/// The sequence a coordinator-written batch of `producer_id` continues with: after the last batch the
/// partition's producer state holds for that epoch, else 0. Only this shard's writer appends data
/// batches of a transactional producer to the offsets topic, one at a time, so the state it reads is
/// the one its append is checked against.
fn next_sequence(log: &PartitionLog, producer_id: i64, epoch: i16) -> i32 {
    log.active_producers()
        .into_iter()
        .find(|(id, _)| *id == producer_id)
        .filter(|(_, entry)| entry.producer_epoch == epoch)
        .and_then(|(_, entry)| entry.last_batch().map(|b| b.last_seq.wrapping_add(1)))
        .map_or(0, |s| if s < 0 { 0 } else { s })
}

/// The records as one transactional batch of `producer_id`/`epoch` from `base_sequence`, as Kafka's
/// group coordinator writes TxnOffsetCommit (`MemoryRecords.withTransactionalRecords`).
fn encode_transactional_batch(
    records: &[OffsetsRecord],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, ResponseError> {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    let now = now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            let mut record = plain_record(i as i64, now, Some(key), value);
            record.transactional = true;
            record.producer_id = producer_id;
            record.producer_epoch = epoch;
            record.sequence = base_sequence.wrapping_add(i as i32);
            record
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        warn!("cannot encode transactional offsets: {e}");
        ResponseError::UnknownServerError
    })?;
    Ok(buf.freeze())
}

fn encode_batch(records: &[OffsetsRecord]) -> Result<Bytes, ResponseError> {
    let now = now_ms();
    let mut records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            plain_record(i as i64, now, Some(key), value)
        })
        .collect();
    encode_plain_batch(&mut records).map_err(|e| {
        warn!("cannot encode offsets topic records: {e}");
        ResponseError::UnknownServerError
    })
}

/// What a partition of the offsets topic holds, replayed (consumer groups in `offsets`, their
/// deadlines to be restarted by `into_state`).
#[derive(Default)]
pub struct Replayed {
    pub groups: HashMap<String, GroupValue>,
    pub offsets: ShardState,
    pub records: usize,
    pub unreadable: usize,
}

impl Replayed {
    pub fn into_state(self, now: Instant, session_timeout: Duration) -> ShardState {
        let mut state = self.offsets;
        for group in state.consumer_groups.values_mut() {
            group.restart_sessions(now, session_timeout);
        }
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
    let mut replayed = Replayed::default();
    replayed.unreadable = replay_log(log, end, OFFSETS_TOPIC, |item| match item {
        // A transaction marker ends the producer's pending offsets (KIP-98).
        LogItem::Control { header, batch } => {
            if let Some(marker) = EndTxnMarker::parse(batch) {
                replayed
                    .offsets
                    .complete_transaction(header.producer_id, marker.commit);
            }
        }
        LogItem::Record { header, record } => {
            replayed.records += 1;
            match OffsetsRecord::decode(record.key.as_ref(), record.value.as_ref()) {
                Ok(OffsetsRecord::Offset {
                    key,
                    value: Some(value),
                }) if header.is_transactional() => replayed
                    .offsets
                    .pending_txn
                    .entry(header.producer_id)
                    .or_default()
                    .push((key, value, record.offset)),
                Ok(OffsetsRecord::Offset { key, value }) => {
                    replayed.offsets.apply_offset(key, value, record.offset)
                }
                // A group id is of one kind at a time: the later record's kind wins (a conversion
                // writes the other kind's tombstones first, but this also holds if they are lost).
                Ok(OffsetsRecord::Consumer(record)) => {
                    if !record.is_tombstone() {
                        replayed.groups.remove(record.group());
                    }
                    replayed
                        .offsets
                        .apply_consumer(&record, Instant::now(), Duration::ZERO)
                }
                Ok(OffsetsRecord::Group { group, value }) => match value {
                    Some(value) => {
                        replayed.offsets.consumer_groups.remove(&group);
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
    })?;
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::{GroupValue, MemberValue};
    use crate::log::LogConfig;

    fn offset(group: &str, partition: i32, value: Option<i64>) -> OffsetsRecord {
        OffsetsRecord::Offset {
            key: OffsetKey {
                group: group.into(),
                topic: "t".into(),
                partition,
            },
            value: value.map(|offset| OffsetValue {
                offset,
                leader_epoch: 0,
                metadata: String::new(),
                commit_timestamp_ms: 1,
            }),
        }
    }

    fn group(id: &str, members: usize) -> OffsetsRecord {
        OffsetsRecord::Group {
            group: id.into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 4,
                protocol: Some("range".into()),
                leader: Some("m-0".into()),
                state_timestamp_ms: 1,
                members: (0..members)
                    .map(|i| MemberValue {
                        member_id: format!("m-{i}"),
                        group_instance_id: None,
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 60_000,
                        session_timeout_ms: 10_000,
                        subscription: Bytes::new(),
                        assignment: Bytes::from_static(b"a"),
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn replay_rebuilds_groups_and_offsets_with_tombstones_and_later_records_winning() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), LogConfig::default()).unwrap();
        let batches = [
            vec![
                offset("g", 0, Some(5)),
                offset("g", 1, Some(7)),
                group("g", 2),
            ],
            vec![
                offset("g", 0, Some(9)),
                offset("gone", 0, Some(1)),
                group("gone", 0),
            ],
            vec![
                offset("gone", 0, None),
                OffsetsRecord::Group {
                    group: "gone".into(),
                    value: None,
                },
            ],
            vec![offset("g", 1, None)],
        ];
        for records in &batches {
            let info = log
                .append_as_leader(encode_batch(records).unwrap(), 0)
                .unwrap();
            assert_eq!(
                info.last_offset - info.base_offset + 1,
                records.len() as i64,
                "one batch"
            );
        }
        let end = log.log_end_offset();
        assert_eq!(end, 9);
        let replayed = replay(&log, end).unwrap();
        assert_eq!((replayed.records, replayed.unreadable), (9, 0));
        let state = replayed.into_state(Instant::now(), Duration::from_secs(45));
        assert_eq!(state.group_ids(), vec!["g".to_string()]);
        let g = &state.offsets["g"];
        assert_eq!(g.len(), 1);
        assert_eq!(g[&("t".to_string(), 0)].value.offset, 9);
        assert_eq!(g[&("t".to_string(), 0)].log_offset, 3);
        let summary = state.groups["g"].summary();
        assert_eq!(
            (summary.state, summary.members.len()),
            (crate::group::GroupState::Stable, 2)
        );

        // Replay stops at the bound it is given (the log end when leadership began).
        let partial = replay(&log, 3)
            .unwrap()
            .into_state(Instant::now(), Duration::from_secs(45));
        assert_eq!(partial.offsets["g"][&("t".to_string(), 0)].value.offset, 5);
    }

    #[test]
    fn transactional_offsets_wait_for_their_marker_in_replay_and_live() {
        use crate::log::txn_marker::EndTxnMarker;
        let dir = tempfile::tempdir().unwrap();
        let log =
            PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), LogConfig::default()).unwrap();
        let marker = |commit| EndTxnMarker {
            commit,
            coordinator_epoch: 0,
        };
        // A plain commit at 5, then producer 7's transaction commits 9 (committed), producer 8's
        // commits 11 (aborted), producer 9's commits 13 (no marker yet).
        log.append_as_leader(encode_batch(&[offset("g", 0, Some(5))]).unwrap(), 0)
            .unwrap();
        for (producer_id, value) in [(7, 9), (8, 11), (9, 13)] {
            let sequence = next_sequence(&log, producer_id, 0);
            assert_eq!(sequence, 0, "a producer new to the partition starts at 0");
            let batch = encode_transactional_batch(
                &[offset("g", 0, Some(value))],
                producer_id,
                0,
                sequence,
            )
            .unwrap();
            log.append_as_leader(batch, 0).unwrap();
        }
        // A second batch of producer 7 continues its sequence.
        assert_eq!(next_sequence(&log, 7, 0), 1);
        assert_eq!(next_sequence(&log, 7, 1), 0, "another epoch starts again");
        log.append_marker_as_leader(7, 0, marker(true), 0).unwrap();
        log.append_marker_as_leader(8, 0, marker(false), 0).unwrap();

        let state = replay(&log, log.log_end_offset())
            .unwrap()
            .into_state(Instant::now(), Duration::from_secs(45));
        assert_eq!(state.offsets["g"][&("t".to_string(), 0)].value.offset, 9);
        assert_eq!(state.pending_txn.keys().collect::<Vec<_>>(), vec![&9]);
        assert!(state.has_pending_txn_offset("g", "t", 0));
        assert!(!state.has_pending_txn_offset("g", "t", 1));

        // Live: producer 9's marker arrives; an abort of an unknown producer changes nothing.
        let mut state = state;
        state.complete_transaction(42, true);
        assert_eq!(state.offsets["g"][&("t".to_string(), 0)].value.offset, 9);
        state.complete_transaction(9, true);
        assert_eq!(state.offsets["g"][&("t".to_string(), 0)].value.offset, 13);
        assert!(state.pending_txn.is_empty());
    }

    #[test]
    fn a_fenced_transactional_offset_commit_is_producer_fenced() {
        use crate::log::producer_state::ProducerStateError;
        let fenced = AppendError::Log(LogError::Producer(
            ProducerStateError::InvalidProducerEpoch {
                producer_id: 7,
                epoch: 0,
                current_epoch: 1,
            },
        ));
        assert_eq!(coordinator_error(&fenced), ResponseError::ProducerFenced);
        assert_eq!(
            coordinator_error(&AppendError::NotLeader),
            ResponseError::NotCoordinator
        );
    }

    #[test]
    fn an_older_write_completing_late_does_not_replace_a_newer_offset() {
        let mut state = ShardState::default();
        let key = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        let value = |offset| OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        state.apply_offset(key.clone(), Some(value(20)), 11);
        state.apply_offset(key.clone(), Some(value(10)), 10);
        assert_eq!(state.offsets["g"][&("t".to_string(), 0)].value.offset, 20);
        state.apply_offset(key, None, 12);
        assert!(state.offsets.is_empty());
    }

    #[test]
    fn offsets_expire_only_without_members_and_after_the_retention() {
        let t0 = Instant::now();
        let mut state = ShardState::default();
        let commit = |state: &mut ShardState, group: &str, at_ms: i64| {
            let key = OffsetKey {
                group: group.into(),
                topic: "t".into(),
                partition: 0,
            };
            let value = OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: at_ms,
            };
            state.apply_offset(key, Some(value), at_ms);
        };
        // An empty group (empty since its creation, just now): its offsets wait for the retention
        // from when it became empty.
        let empty = ClassicGroup::new("empty".into());
        let now = empty.state_timestamp_ms();
        state.groups.insert("empty".into(), empty);
        commit(&mut state, "empty", now - 5_000);
        // Committed from outside group management long ago, and recently.
        commit(&mut state, "standalone-old", now - 5_000);
        commit(&mut state, "standalone-new", now + 500);
        // A group with a member keeps everything.
        commit(&mut state, "active", now - 5_000);
        let mut active = ClassicGroup::new("active".into());
        let _ = active.join(
            crate::group::classic_group::JoinRequest {
                member_id: String::new(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: String::new(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::new())],
                require_known_member_id: false,
            },
            &crate::group::GroupConfig::default(),
            t0,
        );
        state.groups.insert("active".into(), active);

        let (expired, emptied) = state.expired_offsets(now, 1_000);
        let groups: Vec<&str> = expired.iter().map(|k| k.group.as_str()).collect();
        assert_eq!(groups, vec!["standalone-old"]);
        assert!(emptied.is_empty());

        // Once the empty group has been empty for the retention, its offsets go and so does it.
        let later = now + 1_000;
        let (expired, emptied) = state.expired_offsets(later, 1_000);
        let mut groups: Vec<&str> = expired.iter().map(|k| k.group.as_str()).collect();
        groups.sort();
        assert_eq!(groups, vec!["empty", "standalone-old"]);
        assert_eq!(emptied, vec!["empty".to_string()]);
    }

    #[test]
    fn a_converted_group_replays_as_a_consumer_group_and_keeps_its_offsets_while_it_has_members() {
        use crate::group::consumer_group::{ConsumerGroupConfig, Heartbeat, TopicSource};
        use crate::group::consumer_records::TopicPartitions;

        struct OneTopic;
        impl TopicSource for OneTopic {
            fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
                (name == "t").then_some((uuid::Uuid::from_u128(1), 2))
            }
            fn topic_names(&self) -> Vec<String> {
                vec!["t".into()]
            }
            fn describable(&self, _name: &str) -> bool {
                true
            }
            fn version(&self) -> u64 {
                1
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let log =
            PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), LogConfig::default()).unwrap();
        // A classic group that emptied, with an old offset; then a consumer-protocol member joins
        // (the classic group's tombstone first, as the coordinator writes it).
        let mut consumer = ConsumerGroup::new("g".into());
        let (_, records) = consumer
            .heartbeat(
                Heartbeat {
                    member_id: "m".into(),
                    member_epoch: 0,
                    rebalance_timeout_ms: 1_000,
                    subscribed_topic_names: Some(vec!["t".into()]),
                    owned: Some(TopicPartitions::new()),
                    ..Heartbeat::default()
                },
                &OneTopic,
                &ConsumerGroupConfig::default(),
                Instant::now(),
            )
            .unwrap();
        let mut converted = vec![OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        }];
        converted.extend(records.into_iter().map(OffsetsRecord::Consumer));
        for batch in [vec![group("g", 0), offset("g", 0, Some(3))], converted] {
            log.append_as_leader(encode_batch(&batch).unwrap(), 0)
                .unwrap();
        }
        let replayed = replay(&log, log.log_end_offset()).unwrap();
        assert_eq!(replayed.unreadable, 0);
        let state = replayed.into_state(Instant::now(), Duration::from_secs(45));
        assert!(!state.groups.contains_key("g"), "no longer a classic group");
        let g = &state.consumer_groups["g"];
        assert_eq!(g.members()["m"].current, consumer.members()["m"].current);
        assert_eq!((g.epoch(), g.assignment_epoch()), (1, 1));
        assert_eq!(state.group_ids(), vec!["g".to_string()]);
        // Its member keeps the offsets however old; without members they go by their commit time.
        let (expired, _) = state.expired_offsets(i64::MAX, 1);
        assert!(expired.is_empty());
        let mut state = state;
        let (records, _) = state.consumer_groups.get_mut("g").unwrap().expire(
            Instant::now() + Duration::from_secs(46),
            Duration::from_secs(45),
        );
        assert!(!records.is_empty());
        let (expired, _) = state.expired_offsets(i64::MAX, 1);
        assert_eq!(expired.len(), 1);
    }
}
