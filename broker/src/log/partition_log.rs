//! `PartitionLog`: the segmented log of one partition in its directory `<topic>-<partition>/` (Kafka
//! `UnifiedLog`, local part only). It owns the segments, the leader-epoch cache, the log start offset,
//! the log end offset (LEO), the high watermark the replication layer hands it, and the files that
//! persist them.
//!
//! What must stay true:
//! - offsets in the log only increase; the LEO is the end of the last whole batch on disk;
//! - every segment but the active one is fsynced (data and indexes) before the next is created, so
//!   after a crash only the active segment can hold a torn tail, and recovery re-validates it;
//! - the high watermark only moves forward ([`PartitionLog::maybe_increment_high_watermark`] is an
//!   atomic max), except that truncation caps it at the new LEO;
//! - `flushed_offset` never claims an offset before the log's creation is durable (its first flush
//!   syncs `partition.metadata` and the directory entries first), nor one whose bytes were not
//!   fsynced: a flush snapshots the LEO,
//!   fsyncs outside the lock (appends go on meanwhile, so concurrent appenders share one fsync) and is
//!   discarded if a truncation happened in between;
//! - reads come from the files (positioned reads into a buffer of at most the asked bytes, plus one
//!   oversize first batch); nothing caches log data;
//! - after an I/O failure on a write or fsync the log is offline until reopened (what reached the disk
//!   is unknown, so it must go through recovery);
//! - the producer state (idempotent producers, [`super::producer_state`]) always describes exactly the
//!   batches below the LEO: a leader's check and update happen under the write lock with the append,
//!   every appended batch (leader or follower) updates it, truncation reloads it from a snapshot at
//!   or below the new LEO plus the headers after it, and open does the same after recovery. A
//!   snapshot is written at every segment roll (at the new segment's base offset), at close (at the
//!   LEO) and after an open that had to replay headers;
//! - transactions (KIP-98): the producer state knows the open ones, `unreplicated_txns` those whose
//!   marker is not yet below the high watermark, and the last stable offset (LSO) is the first offset
//!   of the earliest of either, or the high watermark when there is none, never above the high
//!   watermark nor below the log start;
//! - `aborted_txns` holds exactly the aborted transactions whose ABORT marker is below the LEO in a
//!   segment of the log, as the segments' `.txnindex` files do (see [`super::txn_index`]): appended
//!   with the marker, cut by truncation, dropped with their segment, rebuilt at open.
//!
//! Locking: one `RwLock` around the state (appends, truncation, retention and moves of the log start
//! take it for writing; reads, lookups and getters for reading) and a mutex that lets one fsync run at
//! a time. The type is `Send + Sync`; share it as `Arc<PartitionLog>` and call its blocking methods
//! from `spawn_blocking` (appends and reads are page-cache work and may also run in short critical
//! sections; `flush_to` waits for the disk). An async caller waits for durability with
//! [`PartitionLog::flushed_to`] instead, which runs the fsyncs on one flusher task per log.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::batch::{BatchError, BatchHeader, Batches, RecordBatch, TimestampType, NO_TIMESTAMP};
use super::checkpoint::{self, DirSync};
use super::config::LogConfig;
use super::epoch::{EpochEntry, LeaderEpochCache};
use super::error::{io_error, LogError, Result};
use super::now_ms;
use super::producer_state::{
    self, Admission, CompletedTxn, ProducerState, ProducerStateError, PRODUCER_ID_EXPIRATION_MS,
};
use super::segment::{
    parse_segment_file, LogSegment, TimestampOffset, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use super::txn_index::{self, txn_index_path, AbortedTxn};
use super::txn_marker::EndTxnMarker;
use super::validator::{validate_records, RecordRules};

mod cleaner;
mod flusher;
mod recovery;
use recovery::load_producer_state;
mod retention;

pub use cleaner::CleanStats;

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const HIGH_WATERMARK_CHECKPOINT: &str = "high-watermark-checkpoint";
/// The clean-shutdown marker (Kafka's `.kafka_cleanshutdown`): in the data directory, written by
/// [`super::LogManager::close_all`] once every log of the directory is closed and durable, and
/// removed (durably) when the manager opens the directory, before any log is opened. Its absence
/// at open means the last run did not shut down cleanly and every log's active segment is
/// recovered. Brokers before it wrote one per partition directory at each log's `close`: such a
/// marker still counts for its own log, once (see [`PartitionLog::open_in_after`]).
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Where deleted partition directories go before they are removed (so a crash mid-removal never
/// leaves a half-deleted partition that looks real).
pub const TRASH_DIR: &str = ".trash";
/// The `upper_bound_offset` of [`PartitionLog::read`] that means the last stable offset (a
/// read_committed consumer's bound).
pub const READ_COMMITTED: i64 = i64::MIN;

/// A verification in progress for a producer's next transaction in a partition (KIP-890; Kafka's
/// `VerificationGuard`): obtained before asking the coordinator, required by the append after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerificationGuard(u64);

impl VerificationGuard {
    /// Matches no verification (Kafka's `VerificationGuard.SENTINEL`): what an append passes when
    /// verification is on but it asked none because the transaction looked open. If a marker
    /// closed it meanwhile, the batch is refused rather than opening an unverified transaction.
    pub const SENTINEL: VerificationGuard = VerificationGuard(0);
}

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest batch MaxTimestamp appended (after any LogAppendTime patch).
    pub max_timestamp: i64,
    /// Base offset of the batch carrying `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// The append time written into the batch for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub batches: usize,
    pub size_bytes: usize,
    /// The topic's `flush.messages` requires an fsync before this append is acknowledged: call
    /// [`PartitionLog::flush_to`]`(info.next_offset())` (outside any lock of the caller's, so other
    /// appends can join the same fsync).
    pub flush_required: bool,
    /// A leader append that was an idempotent producer's retry of a batch already in the log: nothing
    /// was written and the offsets are the original batch's (which may not be committed yet).
    pub duplicate: bool,
}

impl AppendInfo {
    /// The LEO right after this append: what `flush_to` must cover.
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// Whole batches read from the log, with the offsets at the time of the read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated whole batches; the first may start before the asked offset (it holds it).
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// The last stable offset at the time of the read (see the module docs).
    pub last_stable_offset: i64,
}

/// Where a follower fetches a log from (see [`PartitionLog::fetch_position`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPosition {
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    pub latest_epoch: Option<i32>,
}

/// The answer to "where does this leader epoch end" (KIP-101, KIP-279).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest epoch ≤ the one asked (or the asked one when below all), -1 when unknown.
    pub leader_epoch: i32,
    /// The offset where that epoch ends, -1 when unknown.
    pub end_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionReason {
    /// Older than `retention.ms`.
    Time,
    /// Beyond `retention.bytes`.
    Size,
    /// Wholly below the log start offset, which DeleteRecords (or, on a follower, the leader's log
    /// start) moved (Kafka's `StartOffsetBreach`).
    LogStartOffset,
}

/// A segment removed by retention or because the log start offset passed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeletedSegment {
    pub base_offset: i64,
    /// The offset after its last batch.
    pub next_offset: i64,
    pub size_bytes: u64,
    pub reason: RetentionReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Open,
    Offline,
    Closed,
}

#[derive(Debug)]
struct LogState {
    dir: PathBuf,
    config: LogConfig,
    /// By base offset; never empty (the last one is the active segment).
    segments: BTreeMap<i64, LogSegment>,
    epochs: LeaderEpochCache,
    /// Idempotent and transactional producers' state for the batches below the LEO.
    producers: ProducerState,
    /// Aborted transactions by ABORT marker offset (what the `.txnindex` files hold).
    aborted_txns: BTreeMap<i64, AbortedTxn>,
    /// Completed transactions whose marker is at or above the high watermark: first offset → marker
    /// offset. They still hold the LSO back (Kafka's `unreplicatedTxns`).
    unreplicated_txns: BTreeMap<i64, i64>,
    /// KIP-890 verification guards: producer id → (producer epoch, guard), from the start of a
    /// verification until the transaction opens here or a marker for the producer arrives (Kafka's
    /// `VerificationStateEntry`). In memory only: after a restart a producer is verified again.
    verification_guards: HashMap<i64, (i16, VerificationGuard)>,
    next_verification_guard: u64,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    /// The value in the high watermark checkpoint file, when known.
    checkpointed_high_watermark: Option<i64>,
    /// The log start offset the checkpoint file holds (or that its absence reads as).
    checkpointed_log_start: Option<i64>,
    /// Every offset below this is on disk.
    flushed_offset: i64,
    last_flush_ms: i64,
    /// A segment file was created since the directory was last fsynced.
    dir_dirty: bool,
    /// The log's creation is not known durable yet: its `partition.metadata`, the directory's
    /// entries and the directory's own entry in the data directory. Set at every open (a log made
    /// before a crash of the process may still sit in the page cache only), cleared by the first
    /// successful flush, which syncs them before it reports any offset durable.
    creation_unsynced: bool,
    /// Bumped by every truncation, so a flush that started before one does not claim offsets.
    truncations: u64,
    /// fsyncs of data done by `flush_to` (observability and tests).
    fsyncs: u64,
    /// The active segment's (base offset, size) at the last fsync of `flush_to`: the bytes the next
    /// one covers are the ones past it (the `log_flush_bytes` metric).
    flushed_position: (i64, u64),
    status: Status,
}

/// The log of one partition. See the module docs.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    topic_id: Uuid,
    state: RwLock<LogState>,
    /// One fsync at a time; appenders queue here and usually find their offset already covered.
    flush_lock: Mutex<()>,
    /// Runs `flush_to` for the appends waiting in [`PartitionLog::flushed_to`].
    flusher: flusher::Flusher,
    /// The fsync of the data directory, shared with the logs created beside this one.
    parent_sync: Arc<DirSync>,
    /// Serializes high-watermark checkpoint writes.
    checkpoint_lock: Mutex<()>,
    /// Makes the next data fsync fail as EIO would (tests of what a failed fsync leaves behind).
    #[cfg(test)]
    fail_next_fsync: std::sync::atomic::AtomicBool,
    /// Holds the next data fsync until the test lets it go (tests of what happens meanwhile).
    #[cfg(test)]
    fsync_gate: Mutex<Option<Gate>>,
    /// Holds the flusher after its next round has woken its waiters, before it decides whether to
    /// go on.
    #[cfg(test)]
    round_gate: Mutex<Option<Gate>>,
}

/// The two sides of a point where a test holds the flusher: it says it has reached the point, then
/// waits to go on.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Gate {
    pub reached: std::sync::mpsc::Sender<()>,
    pub proceed: std::sync::mpsc::Receiver<()>,
}

#[cfg(test)]
impl Gate {
    /// Passes the gate in `slot`, if one is set (once).
    fn pass(slot: &Mutex<Option<Gate>>) {
        if let Some(gate) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = gate.reached.send(());
            let _ = gate.proceed.recv();
        }
    }
}

/// Reads the topic id recorded in a partition directory, `None` when the file is missing.
pub fn read_partition_metadata(dir: &Path) -> Result<Option<Uuid>> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let Some(text) = checkpoint::read_optional(&path)? else {
        return Ok(None);
    };
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version:") {
            version = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("topic_id:") {
            topic_id = Uuid::parse_str(v.trim()).ok();
        }
    }
    match (version.as_deref(), topic_id) {
        (Some("0"), Some(id)) => Ok(Some(id)),
        _ => Err(LogError::Corrupt {
            path,
            reason: "expected `version: 0` and a `topic_id:` line".into(),
        }),
    }
}

fn partition_metadata(topic_id: Uuid) -> String {
    format!("version: 0\ntopic_id: {topic_id}\n")
}

/// Written before the directory's own fsync, which the caller does.
fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<()> {
    checkpoint::write_atomically_before_dir_sync(
        &dir.join(PARTITION_METADATA_FILE),
        partition_metadata(topic_id).as_bytes(),
    )
}

impl LogState {
    /// The last segment. The map is never empty while the log is open; a failure half-way through
    /// replacing every segment would leave it so, and takes the log offline.
    fn active(&self) -> Result<&LogSegment> {
        self.segments
            .values()
            .next_back()
            .ok_or_else(|| LogError::Offline {
                dir: self.dir.clone(),
            })
    }

    fn active_mut(&mut self) -> Result<&mut LogSegment> {
        let dir = &self.dir;
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| LogError::Offline { dir: dir.clone() })
    }

    fn check_open(&self, dir: &Path) -> Result<()> {
        match self.status {
            Status::Open => Ok(()),
            Status::Offline => Err(LogError::Offline {
                dir: dir.to_path_buf(),
            }),
            Status::Closed => Err(LogError::Closed {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Takes an error from a storage operation; storage failures take the log offline.
    fn fail(&mut self, dir: &Path, e: LogError) -> LogError {
        if e.is_storage_failure() && self.status == Status::Open {
            error!(dir = %dir.display(), error = %e, "partition log goes offline");
            self.status = Status::Offline;
        }
        e
    }

    fn size_in_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    fn flush_required(&self) -> bool {
        u64::try_from(self.log_end_offset - self.flushed_offset)
            .is_ok_and(|unflushed| unflushed >= self.config.flush_messages)
    }

    /// Seals the active segment and starts a new one at `base_offset`, snapshotting the producer state
    /// there (it then covers exactly the batches below `base_offset`).
    fn roll(&mut self, dir: &Path, base_offset: i64) -> Result<()> {
        // Past the roll, recovery no longer reads the sealed segment's headers: the epochs of its
        // batches must be in the checkpoint.
        self.epochs.persist_if_unsynced()?;
        self.active_mut()?.seal()?;
        txn_index::sync(&txn_index_path(dir, self.active()?.base_offset()))?;
        if let Err(e) = producer_state::write_snapshot(dir, base_offset, &self.producers) {
            // Only recovery time depends on it: a missing snapshot means replaying more headers.
            warn!(dir = %dir.display(), base_offset, error = %e, "cannot write producer state snapshot");
        }
        let segment = LogSegment::create(dir, base_offset)?;
        // Present from the start, so a missing one at open means it must be rebuilt.
        txn_index::write_all(&txn_index_path(dir, base_offset), [])?;
        info!(dir = %dir.display(), base_offset, "rolled new segment");
        self.segments.insert(base_offset, segment);
        self.dir_dirty = true;
        Ok(())
    }

    /// Appends batches (bytes concatenated in `data`, headers in order, offsets already final),
    /// rolling segments as needed, and moves the LEO.
    fn append_batches(
        &mut self,
        dir: &Path,
        data: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<()> {
        let config = self.config.clone();
        let mut i = 0;
        let mut at = 0usize;
        while i < headers.len() {
            let first = &headers[i];
            if self.active()?.should_roll(
                0,
                first.total_size(),
                first.last_offset(),
                first.max_timestamp,
                now_ms,
                &config,
            ) {
                self.roll(dir, first.base_offset)?;
            }
            // Extend the run while the batches would not roll the segment, then write it at once.
            let segment = self.active()?;
            let mut run_bytes = first.total_size();
            let mut j = i + 1;
            while let Some(h) = headers.get(j) {
                let would_roll = segment.should_roll(
                    run_bytes as u64,
                    h.total_size(),
                    h.last_offset(),
                    h.max_timestamp,
                    now_ms,
                    &config,
                );
                if would_roll {
                    break;
                }
                run_bytes += h.total_size();
                j += 1;
            }
            let run = data.get(at..at + run_bytes).ok_or(LogError::InvalidBatch(
                BatchError::Truncated {
                    needed: at + run_bytes,
                    available: data.len(),
                },
            ))?;
            self.active_mut()?.append(run, &headers[i..j], &config)?;
            let mut pos = 0usize;
            for h in &headers[i..j] {
                let bytes = run.get(pos..pos + h.total_size()).unwrap_or_default();
                self.record_batch(dir, h, bytes, now_ms)?;
                pos += h.total_size();
            }
            self.log_end_offset = headers[j - 1].next_offset();
            at += run_bytes;
            i = j;
        }
        Ok(())
    }
}

impl LogState {
    /// The LSO: see the module docs (Kafka's `UnifiedLog.lastStableOffset`).
    fn last_stable_offset(&self) -> i64 {
        let mut lso = self.high_watermark;
        if let Some(first) = self.producers.first_open_txn_offset() {
            lso = lso.min(first);
        }
        if let Some((&first, _)) = self.unreplicated_txns.iter().next() {
            lso = lso.min(first);
        }
        lso.max(self.log_start_offset)
    }

    /// What a batch just written (`bytes`, offsets final) does to the producer state and, for a
    /// marker, to the transactions.
    fn record_batch(
        &mut self,
        dir: &Path,
        h: &BatchHeader,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        if !(h.is_control() && h.producer_id >= 0) {
            self.producers.update(h, now_ms);
            return Ok(());
        }
        // A marker ends what a verification was for: an append still holding its guard must not open
        // a transaction the coordinator already ended.
        self.verification_guards.remove(&h.producer_id);
        match EndTxnMarker::parse(bytes) {
            Some(marker) => {
                let completed = self.producers.apply_marker(h, marker, now_ms);
                self.complete_txn(dir, completed)
            }
            None => {
                warn!(dir = %dir.display(), offset = h.base_offset, producer_id = h.producer_id,
                    "control batch is not a transaction marker; ignored");
                Ok(())
            }
        }
    }

    /// A marker ended a transaction: it holds the LSO until the high watermark passes the marker, and
    /// an aborted one goes into the index of the segment holding the marker.
    fn complete_txn(&mut self, dir: &Path, completed: CompletedTxn) -> Result<()> {
        if completed.last_offset >= self.high_watermark {
            self.unreplicated_txns
                .insert(completed.first_offset, completed.last_offset);
        }
        if !completed.aborted {
            return Ok(());
        }
        let entry = AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            last_stable_offset: self
                .producers
                .first_open_txn_offset()
                .unwrap_or(completed.last_offset + 1),
        };
        self.aborted_txns.insert(entry.last_offset, entry);
        let base = self
            .segments
            .range(..=entry.last_offset)
            .next_back()
            .map_or(entry.last_offset, |(base, _)| *base);
        txn_index::append(&txn_index_path(dir, base), &entry)
    }

    /// Rewrites the `.txnindex` of the segment at `base` from `aborted_txns`.
    fn rewrite_txn_index(&self, dir: &Path, base: i64) -> Result<()> {
        let end = self
            .segments
            .range(base + 1..)
            .next()
            .map_or(i64::MAX, |(next, _)| *next);
        txn_index::write_all(
            &txn_index_path(dir, base),
            self.aborted_txns.range(base..end).map(|(_, e)| e),
        )
    }
}

impl PartitionLog {
    fn read_state(&self) -> Result<RwLockReadGuard<'_, LogState>> {
        let state = self.state.read().map_err(|_| LogError::Offline {
            dir: self.dir.clone(),
        })?;
        state.check_open(&self.dir)?;
        Ok(state)
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, LogState>> {
        let state = self.state.write().map_err(|_| LogError::Offline {
            dir: self.dir.clone(),
        })?;
        state.check_open(&self.dir)?;
        Ok(state)
    }

    /// For getters: numbers stay meaningful even if a panic poisoned the lock.
    fn peek(&self) -> RwLockReadGuard<'_, LogState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a producer's batch as leader: validates it (framing, CRC, header counts, no control
    /// batch, size against `max.message.bytes`, then its records against the topic's rules, see
    /// [`super::validator`]; a CreateTime batch's MaxTimestamp is set to its largest record
    /// timestamp, as Kafka does), gives it offsets from the LEO, stamps `leader_epoch`
    /// (and the append time for LogAppendTime topics), records a new epoch in the epoch cache, rolls
    /// the segment when `segment.bytes`/`segment.ms` say so, and writes it. Not yet fsynced: see
    /// [`AppendInfo::flush_required`].
    ///
    /// An idempotent producer's batch first passes the producer state checks (KIP-98), under the
    /// same lock as the append: a stale epoch or a sequence gap is [`LogError::Producer`]; a retry of a
    /// batch still in the producer's last five is not written again and returns the original's
    /// offsets with [`AppendInfo::duplicate`] set.
    pub fn append_as_leader(&self, batch: Bytes, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_as_leader_verified(batch, leader_epoch, None)
    }

    /// Whether a transactional batch of `producer_id`/`producer_epoch` needs the coordinator's
    /// verification (KIP-890): not when the producer's transaction is already open here in this
    /// epoch, which is what makes it one round trip per partition and transaction.
    pub fn needs_verification(&self, producer_id: i64, producer_epoch: i16) -> bool {
        !self.peek().producers.get(producer_id).is_some_and(|entry| {
            entry.producer_epoch == producer_epoch && entry.current_txn_first_offset.is_some()
        })
    }

    /// The guard of the producer's verification in this epoch, started now unless one is (Kafka's
    /// `maybeStartTransactionVerification`).
    pub fn verification_guard(&self, producer_id: i64, producer_epoch: i16) -> VerificationGuard {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((epoch, guard)) = state.verification_guards.get(&producer_id) {
            if *epoch == producer_epoch {
                return *guard;
            }
        }
        state.next_verification_guard += 1;
        let guard = VerificationGuard(state.next_verification_guard);
        state
            .verification_guards
            .insert(producer_id, (producer_epoch, guard));
        guard
    }

    /// [`PartitionLog::append_as_leader`] of a batch whose transaction the coordinator verified under
    /// `guard` (KIP-890): a transactional batch that would open a transaction is refused with
    /// INVALID_TXN_STATE unless the guard is still the producer's (a marker in between removes it).
    pub fn append_as_leader_verified(
        &self,
        batch: Bytes,
        leader_epoch: i32,
        guard: Option<VerificationGuard>,
    ) -> Result<AppendInfo> {
        let size = batch.len();
        let mut batch = RecordBatch::parse(batch)?;
        batch.validate_client_batch()?;
        let (max_message_bytes, rules) = {
            let state = self.read_state()?;
            (
                state.config.max_message_bytes,
                RecordRules::of(&state.config),
            )
        };
        if size as u64 > max_message_bytes {
            return Err(LogError::MessageTooLarge {
                size,
                max: max_message_bytes,
            });
        }
        // The records are walked (decompressed if need be) outside the lock: appends to this
        // partition go on meanwhile.
        let validated = validate_records(&batch, &rules, &self.topic_partition_name(), now_ms())?;
        if rules.timestamp_type == TimestampType::CreateTime {
            batch.set_max_timestamp(TimestampType::CreateTime, validated.max_timestamp);
        }
        let mut state = self.write_state()?;
        if let Some(latest) = state.epochs.latest_epoch() {
            if leader_epoch < latest {
                return Err(LogError::StaleLeaderEpoch {
                    epoch: leader_epoch,
                    latest,
                });
            }
        }
        let admission = match state.producers.check(batch.header()) {
            Ok(admission) => admission,
            Err(e) => {
                // What a client does next on these (an idempotent producer bumps its epoch and
                // sends its unacknowledged records again) is worth a line when it happens.
                let h = batch.header();
                let known = state.producers.get(h.producer_id);
                tracing::info!(dir = %self.dir.display(), producer_id = h.producer_id,
                    producer_epoch = h.producer_epoch, base_sequence = h.base_sequence,
                    last_sequence = h.base_sequence.wrapping_add(h.last_offset_delta),
                    known_epoch = known.map(|k| k.producer_epoch),
                    known_batches = ?known.map(|k| k.batches().map(|b| (b.first_seq, b.last_seq, b.last_offset)).collect::<Vec<_>>()),
                    "producer batch refused: {e}");
                return Err(e.into());
            }
        };
        if let Some(known) = state.producers.get(batch.header().producer_id) {
            if batch.header().producer_epoch > known.producer_epoch {
                tracing::info!(dir = %self.dir.display(),
                    producer_id = batch.header().producer_id,
                    from_epoch = known.producer_epoch,
                    to_epoch = batch.header().producer_epoch,
                    "producer epoch bumped");
            }
        }
        if let Admission::Duplicate(original) = admission {
            crate::metrics::metrics().producer_duplicate();
            let h = batch.header();
            tracing::debug!(dir = %self.dir.display(), producer_id = h.producer_id,
                producer_epoch = h.producer_epoch, base_sequence = h.base_sequence,
                base_offset = original.first_offset(), "duplicate batch not appended");
            let next_offset = original.last_offset + 1;
            return Ok(AppendInfo {
                base_offset: original.first_offset(),
                last_offset: original.last_offset,
                max_timestamp: original.timestamp,
                offset_of_max_timestamp: original.first_offset(),
                log_append_time_ms: match state.config.message_timestamp_type {
                    TimestampType::LogAppendTime => original.timestamp,
                    TimestampType::CreateTime => NO_TIMESTAMP,
                },
                log_start_offset: state.log_start_offset,
                batches: 0,
                size_bytes: 0,
                // The original may still wait for its fsync; the retry is acknowledged only after it.
                flush_required: state.flushed_offset < next_offset && state.flush_required(),
                duplicate: true,
            });
        }
        // After the duplicate check, as Kafka's `analyzeAndValidateProducerState`: a retry is
        // answered whatever happened since.
        if let Some(guard) = guard {
            let h = batch.header();
            let open = state.producers.get(h.producer_id).is_some_and(|entry| {
                entry.producer_epoch == h.producer_epoch && entry.current_txn_first_offset.is_some()
            });
            let current = state.verification_guards.get(&h.producer_id).copied();
            if h.is_transactional() && !open && current != Some((h.producer_epoch, guard)) {
                return Err(ProducerStateError::NotVerified {
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                }
                .into());
            }
        }
        let now = now_ms();
        let base_offset = state.log_end_offset;
        batch.set_base_offset(base_offset);
        batch.set_partition_leader_epoch(leader_epoch);
        let log_append_time_ms = match state.config.message_timestamp_type {
            TimestampType::LogAppendTime => {
                batch.set_log_append_time(now);
                now
            }
            TimestampType::CreateTime => NO_TIMESTAMP,
        };
        let header = *batch.header();
        let result = state
            .epochs
            .assign(leader_epoch, base_offset)
            .and_then(|_| state.append_batches(&self.dir, batch.as_bytes(), &[header], now));
        if let Err(e) = result {
            return Err(state.fail(&self.dir, e));
        }
        if header.is_transactional() {
            // The transaction is open here now: later batches need no verification.
            state.verification_guards.remove(&header.producer_id);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            offset_of_max_timestamp: base_offset,
            log_append_time_ms,
            log_start_offset: state.log_start_offset,
            batches: 1,
            size_bytes: size,
            flush_required: state.flush_required(),
            duplicate: false,
        })
    }

    /// Appends batches fetched from the leader as they are (offsets, epochs, timestamps kept). Every
    /// batch must pass its CRC; the first must start at or after the LEO and each after the previous
    /// one. A partial trailing batch (legal at the end of a fetch response) is ignored. Returns `None`
    /// when there was no whole batch.
    pub fn append_as_follower(&self, batches: Bytes) -> Result<Option<AppendInfo>> {
        let mut headers = Vec::new();
        let mut whole = 0usize;
        for batch in Batches::new(batches.clone()) {
            let batch = batch?;
            if batch.last_offset_delta() < 0 {
                return Err(BatchError::NegativeLastOffsetDelta {
                    last_offset_delta: batch.last_offset_delta(),
                }
                .into());
            }
            whole += batch.size_in_bytes();
            headers.push(*batch.header());
        }
        let (Some(first), Some(last)) = (headers.first().copied(), headers.last().copied()) else {
            return Ok(None);
        };
        let mut state = self.write_state()?;
        let mut expected = state.log_end_offset;
        for h in &headers {
            if h.base_offset < expected {
                return Err(LogError::UnexpectedAppendOffset {
                    base_offset: h.base_offset,
                    expected_at_least: expected,
                });
            }
            expected = h.next_offset();
        }
        let mut epochs_changed = false;
        for h in &headers {
            if h.partition_leader_epoch >= 0
                && state
                    .epochs
                    .latest_epoch()
                    .is_some_and(|latest| h.partition_leader_epoch < latest)
            {
                warn!(dir = %self.dir.display(), epoch = h.partition_leader_epoch,
                    offset = h.base_offset, "follower batch carries an epoch older than the latest");
            }
            epochs_changed |= state
                .epochs
                .assign_in_memory(h.partition_leader_epoch, h.base_offset);
        }
        let mut max_timestamp = NO_TIMESTAMP;
        let mut offset_of_max_timestamp = first.base_offset;
        for h in &headers {
            if h.max_timestamp > max_timestamp {
                max_timestamp = h.max_timestamp;
                offset_of_max_timestamp = h.base_offset;
            }
        }
        let now = now_ms();
        let result = (if epochs_changed {
            state.epochs.persist()
        } else {
            Ok(())
        })
        .and_then(|_| state.append_batches(&self.dir, &batches[..whole], &headers, now));
        if let Err(e) = result {
            return Err(state.fail(&self.dir, e));
        }
        Ok(Some(AppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            max_timestamp,
            offset_of_max_timestamp,
            log_append_time_ms: NO_TIMESTAMP,
            log_start_offset: state.log_start_offset,
            batches: headers.len(),
            size_bytes: whole,
            flush_required: state.flush_required(),
            duplicate: false,
        }))
    }

    /// Reads whole batches from `offset`: at most `max_bytes` (but always the first batch, KIP-74), only
    /// batches ending below `upper_bound_offset` (the high watermark for read_uncommitted consumers,
    /// the LEO for followers, [`READ_COMMITTED`] for the LSO as of the read). [`LogError::OffsetOutOfRange`] below the log start or above the LEO; empty records
    /// at the LEO or when the bound stops the first batch.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound_offset: i64,
    ) -> Result<ReadResult> {
        let state = self.read_state()?;
        if offset < state.log_start_offset || offset > state.log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset,
                log_end_offset: state.log_end_offset,
            });
        }
        let bound = match upper_bound_offset {
            READ_COMMITTED => state.last_stable_offset(),
            bound => bound,
        }
        .min(state.log_end_offset);
        let mut records = Bytes::new();
        if offset < bound {
            let floor = state
                .segments
                .range(..=offset)
                .next_back()
                .map(|(base, _)| *base)
                .unwrap_or(i64::MIN);
            for segment in state.segments.range(floor..).map(|(_, s)| s) {
                if let Some(bytes) = segment.read(offset, max_bytes, bound)? {
                    records = bytes;
                    break;
                }
            }
        }
        Ok(ReadResult {
            records,
            log_start_offset: state.log_start_offset,
            log_end_offset: state.log_end_offset,
            high_watermark: state.high_watermark,
            last_stable_offset: state.last_stable_offset(),
        })
    }

    /// The first record at or after the log start whose timestamp is ≥ `timestamp` (ListOffsets by
    /// time), via each segment's time index then a batch scan. Exact for uncompressed and
    /// LogAppendTime batches; for a compressed CreateTime batch it is the batch's first offset. The
    /// caller filters by high watermark.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let state = self.read_state()?;
        for segment in state.segments.values() {
            if segment.next_offset() <= state.log_start_offset
                || segment.max_timestamp() < timestamp
            {
                continue;
            }
            if let Some(found) =
                segment.find_offset_by_timestamp(timestamp, state.log_start_offset)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp in the log (ListOffsets MAX_TIMESTAMP), the earliest one
    /// on ties.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let state = self.read_state()?;
        let mut best: Option<&LogSegment> = None;
        for segment in state.segments.values() {
            if segment.is_empty() || segment.next_offset() <= state.log_start_offset {
                continue;
            }
            if best.is_none_or(|b| segment.max_timestamp() > b.max_timestamp()) {
                best = Some(segment);
            }
        }
        match best {
            Some(segment) => segment.offset_of_max_timestamp(),
            None => Ok(None),
        }
    }

    /// OffsetForLeaderEpoch / Fetch divergence answer for `leader_epoch` (KIP-101, KIP-279).
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Result<EpochEndOffset> {
        let state = self.read_state()?;
        let (leader_epoch, end_offset) = state
            .epochs
            .end_offset_for(leader_epoch, state.log_end_offset);
        Ok(EpochEndOffset {
            leader_epoch,
            end_offset,
        })
    }

    /// The latest leader epoch in the epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.peek().epochs.latest_epoch()
    }

    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.peek().epochs.entries().to_vec()
    }

    /// A new leader records that `leader_epoch` starts at the LEO before it writes anything (KIP-101;
    /// Kafka's `maybeAssignEpochStartOffset`). Returns whether the cache changed (false when the epoch
    /// is not above the latest). Not fsynced here: see [`LeaderEpochCache::assign_unsynced`].
    pub fn assign_leader_epoch(&self, leader_epoch: i32) -> Result<bool> {
        let mut state = self.write_state()?;
        let leo = state.log_end_offset;
        Ok(state.epochs.assign_unsynced(leader_epoch, leo))
    }

    pub fn log_end_offset(&self) -> i64 {
        self.peek().log_end_offset
    }

    /// Whether appending `bytes` bytes would roll the active segment ([`LogSegment::should_roll`]:
    /// its size, age, index or offset range), the last batch ending at `last_offset(LEO)` with
    /// `max_timestamp`. A roll fsyncs the sealed segment, its indexes and a producer-state snapshot,
    /// milliseconds of disk waits that callers on a runtime thread hand to the blocking pool. A
    /// guess: another append may roll first.
    pub fn append_would_roll(
        &self,
        bytes: usize,
        last_offset: impl FnOnce(i64) -> i64,
        max_timestamp: i64,
    ) -> bool {
        let state = self.peek();
        let Ok(active) = state.active() else {
            return false;
        };
        active.should_roll(
            0,
            bytes,
            last_offset(state.log_end_offset),
            max_timestamp,
            super::now_ms(),
            &state.config,
        )
    }

    /// Whether appending a leader's `records` (whole batches at their offsets, as a follower's fetch
    /// returns them) would roll the active segment: [`Self::append_would_roll`] for the last whole
    /// batch's offset and the batches' latest timestamp. Reads only the batch headers.
    pub fn follower_append_would_roll(&self, records: &[u8]) -> bool {
        let mut rest = records;
        let (mut last_offset, mut max_timestamp) = (None, i64::MIN);
        while let Ok(header) = BatchHeader::parse(rest) {
            let Some(after) = rest.get(header.total_size()..) else {
                break; // a partial trailing batch, which the append skips
            };
            last_offset = Some(header.last_offset());
            max_timestamp = max_timestamp.max(header.max_timestamp);
            rest = after;
        }
        last_offset.is_some_and(|last| {
            self.append_would_roll(records.len() - rest.len(), |_| last, max_timestamp)
        })
    }

    /// The idempotent producers this replica knows (Kafka's `UnifiedLog.activeProducers`): each
    /// producer id with its state, by producer id.
    pub fn active_producers(&self) -> Vec<(i64, producer_state::ProducerEntry)> {
        let mut producers: Vec<(i64, producer_state::ProducerEntry)> = self
            .peek()
            .producers
            .iter()
            .map(|(id, entry)| (id, entry.clone()))
            .collect();
        producers.sort_by_key(|(id, _)| *id);
        producers
    }

    pub fn log_start_offset(&self) -> i64 {
        self.peek().log_start_offset
    }

    /// The last stable offset (see the module docs).
    pub fn last_stable_offset(&self) -> i64 {
        self.peek().last_stable_offset()
    }

    /// The aborted transactions a read_committed fetch of `[fetch_offset, upper_bound_offset)` must
    /// return (Kafka's `collectAbortedTxns`): those ending at or after `fetch_offset` and starting
    /// below `upper_bound_offset`, by marker offset.
    pub fn aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        self.peek()
            .aborted_txns
            .range(fetch_offset..)
            .map(|(_, e)| *e)
            .filter(|e| e.first_offset < upper_bound_offset)
            .collect()
    }

    /// Appends a transaction marker as leader (WriteTxnMarkers; Kafka's `appendAsLeader` with origin
    /// COORDINATOR): checks it against the producer state (a stale producer epoch is
    /// INVALID_PRODUCER_EPOCH, a stale coordinator epoch TRANSACTION_COORDINATOR_FENCED), gives it
    /// the next offset, stamps `leader_epoch`, and writes it, ending the producer's transaction.
    pub fn append_marker_as_leader(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let now = now_ms();
        let mut batch = RecordBatch::parse(marker.encode(producer_id, producer_epoch, now))?;
        let mut state = self.write_state()?;
        if let Some(latest) = state.epochs.latest_epoch() {
            if leader_epoch < latest {
                return Err(LogError::StaleLeaderEpoch {
                    epoch: leader_epoch,
                    latest,
                });
            }
        }
        state
            .producers
            .check_marker(producer_id, producer_epoch, marker.coordinator_epoch)?;
        let base_offset = state.log_end_offset;
        batch.set_base_offset(base_offset);
        batch.set_partition_leader_epoch(leader_epoch);
        let log_append_time_ms = match state.config.message_timestamp_type {
            TimestampType::LogAppendTime => {
                batch.set_log_append_time(now);
                now
            }
            TimestampType::CreateTime => NO_TIMESTAMP,
        };
        let header = *batch.header();
        let result = state
            .epochs
            .assign(leader_epoch, base_offset)
            .and_then(|_| state.append_batches(&self.dir, batch.as_bytes(), &[header], now));
        if let Err(e) = result {
            return Err(state.fail(&self.dir, e));
        }
        info!(dir = %self.dir.display(), producer_id, producer_epoch, commit = marker.commit,
            coordinator_epoch = marker.coordinator_epoch, offset = base_offset, "wrote transaction marker");
        Ok(AppendInfo {
            base_offset,
            last_offset: base_offset,
            max_timestamp: header.max_timestamp,
            offset_of_max_timestamp: base_offset,
            log_append_time_ms,
            log_start_offset: state.log_start_offset,
            batches: 1,
            size_bytes: header.total_size(),
            flush_required: state.flush_required(),
            duplicate: false,
        })
    }

    pub fn high_watermark(&self) -> i64 {
        self.peek().high_watermark
    }

    /// Raises the high watermark to `high_watermark` (the replication layer decides it), clamped to
    /// `[log start, LEO]`, and never lowers it: the comparison and the store happen under the state
    /// lock, so of two callers that computed different values the larger stays, whatever their order
    /// (Kafka's `UnifiedLog.maybeIncrementHighWatermark`). Only truncation lowers it. Returns whether
    /// it moved. Persisted by [`PartitionLog::checkpoint_high_watermark`] and `close`.
    pub fn maybe_increment_high_watermark(&self, high_watermark: i64) -> bool {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let allowed = high_watermark
            .min(state.log_end_offset)
            .max(state.log_start_offset);
        if allowed <= state.high_watermark {
            return false;
        }
        state.high_watermark = allowed;
        state
            .unreplicated_txns
            .retain(|_, marker| *marker >= allowed);
        true
    }

    /// Writes the high watermark checkpoint if it changed since the last write.
    pub fn checkpoint_high_watermark(&self) -> Result<()> {
        let _serial = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (high_watermark, written) = {
            let state = self.read_state()?;
            (state.high_watermark, state.checkpointed_high_watermark)
        };
        if written == Some(high_watermark) {
            return Ok(());
        }
        checkpoint::write_offset(&self.dir.join(HIGH_WATERMARK_CHECKPOINT), high_watermark)?;
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .checkpointed_high_watermark = Some(high_watermark);
        Ok(())
    }

    /// Every offset below this is fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.peek().flushed_offset
    }

    /// Data fsyncs done so far by `flush_to` (each may cover many appends).
    pub fn fsync_count(&self) -> u64 {
        self.peek().fsyncs
    }

    /// Makes every offset below `offset` (capped at the LEO) durable and returns the flushed offset.
    /// Group commit: one caller fsyncs up to the LEO it sees while later appends continue; callers
    /// whose offsets that fsync covered return without another.
    pub fn flush_to(&self, offset: i64) -> Result<i64> {
        {
            let state = self.read_state()?;
            if state.flushed_offset >= offset.min(state.log_end_offset) {
                return Ok(state.flushed_offset);
            }
        }
        let _serial = self.flush_lock.lock().map_err(|_| LogError::Offline {
            dir: self.dir.clone(),
        })?;
        let (target, file, sync_dir, sync_creation, truncations, position) = {
            let mut state = self.write_state()?;
            if state.flushed_offset >= offset.min(state.log_end_offset) {
                return Ok(state.flushed_offset);
            }
            let sync_dir = std::mem::take(&mut state.dir_dirty);
            let sync_creation = std::mem::take(&mut state.creation_unsynced);
            let active = state.active()?;
            (
                state.log_end_offset,
                active.data_file(),
                sync_dir,
                sync_creation,
                state.truncations,
                (active.base_offset(), active.size()),
            )
        };
        #[cfg(test)]
        Gate::pass(&self.fsync_gate);
        #[cfg(test)]
        let file_sync = if self
            .fail_next_fsync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            Err(std::io::Error::from_raw_os_error(5))
        } else {
            // A file the cache closed had nothing left to fsync (see `log::file_cache`).
            file.map_or(Ok(()), |f| f.sync_data())
        };
        #[cfg(not(test))]
        let file_sync = {
            let started = std::time::Instant::now();
            // A file the cache closed had nothing left to fsync (see `log::file_cache`).
            let synced = file.map_or(Ok(()), |f| f.sync_data());
            let previous = self.peek().flushed_position;
            // A segment rolled since the last flush was fsynced at its roll; this one covers the
            // new active segment from its start.
            let bytes = if previous.0 == position.0 {
                position.1.saturating_sub(previous.1)
            } else {
                position.1
            };
            crate::metrics::metrics().log_flushed(started.elapsed(), bytes);
            synced
        };
        let result = file_sync
            .map_err(io_error("fsync segment", &self.dir))
            .and_then(|_| {
                if sync_creation {
                    self.sync_creation()
                } else if sync_dir {
                    checkpoint::fsync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                state.fsyncs += 1;
                state.flushed_position = position;
                state.last_flush_ms = now_ms();
                if state.truncations == truncations {
                    state.flushed_offset = state.flushed_offset.max(target);
                }
                Ok(state.flushed_offset)
            }
            Err(e) => {
                state.dir_dirty |= sync_dir;
                state.creation_unsynced |= sync_creation;
                Err(state.fail(&self.dir, e))
            }
        }
    }

    /// Makes the log's creation durable: `partition.metadata`, then the directory (every file
    /// created in it), then the directory's entry in the data directory (one fsync shared with the
    /// logs doing the same at the same time). Until this has succeeded once, a crash may leave the
    /// directory missing or partial, which is why no offset counts as flushed before it.
    fn sync_creation(&self) -> Result<()> {
        checkpoint::fsync_file(&self.dir.join(PARTITION_METADATA_FILE))?;
        checkpoint::fsync_dir(&self.dir)?;
        match self.dir.parent() {
            Some(parent) => self.parent_sync.sync(parent),
            None => Ok(()),
        }
    }

    /// Flushes everything written so far.
    pub fn flush(&self) -> Result<i64> {
        let leo = self.log_end_offset();
        self.flush_to(leo)
    }

    /// Flushes if `flush.ms` has passed since the last flush and something is unflushed (the
    /// manager's timer calls this).
    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool> {
        let due = {
            let state = self.read_state()?;
            state.config.flush_ms.is_some_and(|interval| {
                now_ms.saturating_sub(state.last_flush_ms) >= interval
                    && state.flushed_offset < state.log_end_offset
            })
        };
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// Cuts the log so that it ends before `offset` (a follower's truncation after divergence). Whole
    /// batches only: the batch holding `offset` goes too, so the new LEO may be below `offset`. Trims
    /// the indexes and the epoch cache, caps the high watermark, and fsyncs before returning. Never
    /// below the log start ([`LogError::TruncateBelowLogStart`]). Returns whether anything was cut.
    pub fn truncate_to(&self, offset: i64) -> Result<bool> {
        let mut state = self.write_state()?;
        if offset < state.log_start_offset {
            return Err(LogError::TruncateBelowLogStart {
                offset,
                log_start_offset: state.log_start_offset,
            });
        }
        if offset >= state.log_end_offset {
            if offset == state.log_end_offset {
                // Nothing to cut from the data, but an epoch this replica began as leader without
                // writing a batch (an entry starting at the log end) is not the leader's history:
                // drop it, or the next fetch would name it as the last fetched epoch again.
                if let Err(e) = state.epochs.truncate_from_end(offset) {
                    return Err(state.fail(&self.dir, e));
                }
            }
            return Ok(false);
        }
        let result = self.truncate_locked(&mut state, offset);
        result.map(|_| true).map_err(|e| state.fail(&self.dir, e))
    }

    fn truncate_locked(&self, state: &mut LogState, offset: i64) -> Result<()> {
        state.truncations += 1;
        let later: Vec<i64> = state
            .segments
            .range(offset + 1..)
            .map(|(b, _)| *b)
            .collect();
        for base in later.into_iter().rev() {
            // Keep the floor segment; `offset` ≥ log start ≥ the first base guarantees one.
            if state.segments.len() == 1 {
                break;
            }
            if let Some(segment) = state.segments.remove(&base) {
                segment.delete_files()?;
            }
        }
        state.active_mut()?.truncate_to(offset)?;
        checkpoint::fsync_dir(&self.dir)?;
        let leo = state.active()?.next_offset();
        info!(dir = %self.dir.display(), from = state.log_end_offset, to = leo, "truncated log");
        state.log_end_offset = leo;
        state.epochs.truncate_from_end(leo)?;
        state.high_watermark = state.high_watermark.min(leo);
        state.flushed_offset = state.flushed_offset.min(leo);
        // Batches the truncated ones had pushed out of a producer's window come back with a reload.
        let loaded = load_producer_state(&self.dir, &state.segments, leo, leo)?;
        tracing::debug!(dir = %self.dir.display(), batches = loaded.replayed,
            producers = loaded.producers.len(), "reloaded producer state after truncation");
        state.producers = loaded.producers;
        // Markers at or above the new LEO are gone; the transactions they ended are open again.
        let cut = state.aborted_txns.split_off(&leo);
        state.unreplicated_txns.retain(|_, marker| *marker < leo);
        let high_watermark = state.high_watermark;
        state.unreplicated_txns.extend(
            loaded
                .completed
                .iter()
                .filter(|t| t.last_offset >= high_watermark)
                .map(|t| (t.first_offset, t.last_offset)),
        );
        if !cut.is_empty() {
            let active = state.active()?.base_offset();
            state.rewrite_txn_index(&self.dir, active)?;
        }
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower whose log is entirely below the
    /// leader's log start). The log start, LEO and high watermark all become `offset`.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let mut state = self.write_state()?;
        let result = (|| {
            state.truncations += 1;
            checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), offset)?;
            state.checkpointed_log_start = Some(offset);
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            for base in bases.into_iter().rev() {
                if let Some(segment) = state.segments.remove(&base) {
                    segment.delete_files()?;
                }
            }
            state
                .segments
                .insert(offset, LogSegment::create(&self.dir, offset)?);
            // The new log start is reported durable below (`flushed_offset`): so must the log be.
            if std::mem::take(&mut state.creation_unsynced) {
                self.sync_creation()?;
            } else {
                checkpoint::fsync_dir(&self.dir)?;
            }
            state.epochs.clear()?;
            producer_state::delete_all_snapshots(&self.dir)?;
            state.producers = ProducerState::default();
            state.aborted_txns.clear();
            state.unreplicated_txns.clear();
            txn_index::write_all(&txn_index_path(&self.dir, offset), [])?;
            state.log_start_offset = offset;
            state.log_end_offset = offset;
            state.high_watermark = offset;
            state.flushed_offset = offset;
            info!(dir = %self.dir.display(), offset, "log emptied and restarted");
            Ok(())
        })();
        result.map_err(|e| state.fail(&self.dir, e))
    }

    /// Clean shutdown: flush, seal the active segment, write the checkpoints that changed and a
    /// producer-state snapshot at the log end unless one is there already (as Kafka's
    /// `ProducerStateManager.takeSnapshot`). Everything is durable when it returns; the
    /// clean-shutdown marker is the log manager's, one per data directory (see
    /// [`CLEAN_SHUTDOWN_FILE`]). Further calls fail with [`LogError::Closed`]. Closing twice is a
    /// no-op.
    pub fn close(&self) -> Result<()> {
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if state.status == Status::Closed {
                return Ok(());
            }
            state.check_open(&self.dir)?;
        }
        self.flush()?;
        self.checkpoint_high_watermark()?;
        let mut state = self.write_state()?;
        let result = (|| {
            state.active_mut()?.seal()?;
            txn_index::sync(&txn_index_path(&self.dir, state.active()?.base_offset()))?;
            // What is on disk already need not be written again (30,000 logs close in a
            // supervisor's stop timeout only if each does few fsyncs).
            if state.checkpointed_log_start != Some(state.log_start_offset) {
                checkpoint::write_offset(
                    &self.dir.join(LOG_START_OFFSET_CHECKPOINT),
                    state.log_start_offset,
                )?;
                state.checkpointed_log_start = Some(state.log_start_offset);
            }
            state.epochs.persist_if_unsynced()?;
            // An idle log's snapshot at its log end is already on disk, and an empty log has
            // nothing to replay without one: writing it cost a temp file, two fsyncs and a rename
            // per log at every shutdown (issue #18).
            let empty =
                state.log_end_offset == state.log_start_offset && state.producers.is_empty();
            let snapshot = producer_state::snapshot_path(&self.dir, state.log_end_offset);
            if !empty && !snapshot.exists() {
                producer_state::write_snapshot(&self.dir, state.log_end_offset, &state.producers)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                state.status = Status::Closed;
                info!(dir = %self.dir.display(), log_end_offset = state.log_end_offset, "closed partition log");
                Ok(())
            }
            Err(e) => Err(state.fail(&self.dir, e)),
        }
    }

    /// Removes the partition directory. It is first renamed into the data directory's `.trash/` (one
    /// atomic step, so a crash cannot leave a half-deleted partition that looks real), then removed.
    ///
    /// The log's files close on the removing thread too. Closing the last descriptor of an unlinked
    /// file frees its blocks: for a file of a gigabyte the kernel takes up to a second (its page
    /// cache, its extents, the discards of a disk mounted with `discard`), and whoever dropped the
    /// log last paid it. That was often the replica fetcher letting go of a deleted partition, on a
    /// runtime thread: deleting a large topic stalled every broker's requests, heartbeats and ISR
    /// checks for about a second (Kafka's `LogManager.asyncDelete` likewise closes the log's
    /// handlers before its files are deleted in the background).
    pub fn delete(&self) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.status = Status::Closed;
        let segments = std::mem::take(&mut state.segments);
        drop(state);
        let Some(parent) = self.dir.parent() else {
            drop(segments);
            return fs::remove_dir_all(&self.dir).map_err(io_error("remove partition", &self.dir));
        };
        let trash = parent.join(TRASH_DIR);
        fs::create_dir_all(&trash).map_err(io_error("create trash", &trash))?;
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = trash.join(format!("{name}.{}", Uuid::new_v4().simple()));
        fs::rename(&self.dir, &target).map_err(io_error("move partition to trash", &self.dir))?;
        checkpoint::fsync_dir(parent)?;
        // Freeing the space of a large log takes seconds; the partition is already gone from its place
        // (and `.trash` is emptied at the next start if this is cut short), so do it off this thread.
        let spawned = std::thread::Builder::new()
            .name("log-delete".into())
            .spawn(move || {
                drop(segments);
                if let Err(e) = fs::remove_dir_all(&target) {
                    warn!(dir = %target.display(), "cannot remove deleted partition: {e}");
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start a thread to remove a deleted partition (left in .trash): {e}");
        }
        info!(dir = %self.dir.display(), "deleted partition log");
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<topic>-<partition>`, the directory's name: how Kafka's messages name a partition.
    fn topic_partition_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    pub fn config(&self) -> LogConfig {
        self.peek().config.clone()
    }

    /// Applies changed topic configs; they take effect on the next append, roll or retention run.
    pub fn update_config(&self, config: LogConfig) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .config = config;
    }

    /// Bytes of all segments.
    pub fn size_in_bytes(&self) -> u64 {
        self.peek().size_in_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.peek().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.peek().segments.keys().copied().collect()
    }

    pub fn is_open(&self) -> bool {
        self.peek().status == Status::Open
    }

    /// Where a follower of this log fetches from, read at once: the log end, the log start and the
    /// latest leader epoch; `None` unless the log is open.
    pub fn fetch_position(&self) -> Option<FetchPosition> {
        let state = self.peek();
        (state.status == Status::Open).then(|| FetchPosition {
            log_end_offset: state.log_end_offset,
            log_start_offset: state.log_start_offset,
            latest_epoch: state.epochs.latest_epoch(),
        })
    }

    /// Taken offline by an I/O failure (not merely closed); stays so until the process restarts.
    pub fn is_offline(&self) -> bool {
        self.peek().status == Status::Offline
    }

    /// The next data fsync fails with EIO.
    #[cfg(test)]
    pub(crate) fn fail_next_fsync(&self) {
        self.fail_next_fsync
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next data fsync waits at `gate`.
    #[cfg(test)]
    pub(crate) fn hold_next_fsync(&self, gate: Gate) {
        *self
            .fsync_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(gate);
    }

    /// The flusher waits at `gate` after its next round has woken its waiters.
    #[cfg(test)]
    pub(crate) fn hold_after_next_round(&self, gate: Gate) {
        *self
            .round_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(gate);
    }
}

#[cfg(test)]
mod tests;
