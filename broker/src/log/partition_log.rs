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
//! - `flushed_offset` never claims an offset whose bytes were not fsynced: a flush snapshots the LEO,
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
//!   LEO) and after an open that had to replay headers.
//!
//! Locking: one `RwLock` around the state (appends, truncation and retention take it for writing;
//! reads, lookups and getters for reading) and a mutex that lets one fsync run at a time. The type is
//! `Send + Sync`; share it as `Arc<PartitionLog>` and call its blocking methods from
//! `spawn_blocking` (appends and reads are page-cache work and may also run in short critical
//! sections; `flush_to` waits for the disk).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::batch::{BatchError, BatchHeader, Batches, RecordBatch, TimestampType, NO_TIMESTAMP};
use super::checkpoint;
use super::config::LogConfig;
use super::epoch::{EpochEntry, LeaderEpochCache};
use super::error::{io_error, LogError, Result};
use super::now_ms;
use super::producer_state::{self, Admission, ProducerState, PRODUCER_ID_EXPIRATION_MS};
use super::segment::{
    parse_segment_file, LogSegment, TimestampOffset, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

mod cleaner;

pub use cleaner::CleanStats;

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const HIGH_WATERMARK_CHECKPOINT: &str = "high-watermark-checkpoint";
/// Written by `close`, removed by `open`: its absence at open means the last run did not shut down
/// cleanly and the active segment must be recovered.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Where deleted partition directories go before they are removed (so a crash mid-removal never
/// leaves a half-deleted partition that looks real).
pub const TRASH_DIR: &str = ".trash";

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
}

/// A segment removed by retention.
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
    /// Idempotent producers' state for the batches below the LEO.
    producers: ProducerState,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    /// The value in the high watermark checkpoint file, when known.
    checkpointed_high_watermark: Option<i64>,
    /// Every offset below this is on disk.
    flushed_offset: i64,
    last_flush_ms: i64,
    /// A segment file was created since the directory was last fsynced.
    dir_dirty: bool,
    /// Bumped by every truncation, so a flush that started before one does not claim offsets.
    truncations: u64,
    /// fsyncs of data done by `flush_to` (observability and tests).
    fsyncs: u64,
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
    /// Serializes high-watermark checkpoint writes.
    checkpoint_lock: Mutex<()>,
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

fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<()> {
    checkpoint::write_atomically(
        &dir.join(PARTITION_METADATA_FILE),
        format!("version: 0\ntopic_id: {topic_id}\n").as_bytes(),
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
        self.active_mut()?.seal()?;
        if let Err(e) = producer_state::write_snapshot(dir, base_offset, &self.producers) {
            // Only recovery time depends on it: a missing snapshot means replaying more headers.
            warn!(dir = %dir.display(), base_offset, error = %e, "cannot write producer state snapshot");
        }
        let segment = LogSegment::create(dir, base_offset)?;
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
            for h in &headers[i..j] {
                self.producers.update(h, now_ms);
            }
            self.log_end_offset = headers[j - 1].next_offset();
            at += run_bytes;
            i = j;
        }
        Ok(())
    }
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir` for the topic `topic_id`, recovering it after an
    /// unclean shutdown: the active segment (and any segment whose tail does not frame) is
    /// re-validated batch by batch and cut at the first invalid byte, later segments after a corrupt
    /// point are deleted, the epoch cache is rebuilt from batch headers if its checkpoint is missing
    /// or corrupt, and the log start offset and high watermark checkpoints are loaded, capped at the
    /// LEO. A directory recorded for another topic id is [`LogError::InconsistentTopicId`].
    pub fn open(dir: &Path, topic_id: Uuid, config: LogConfig) -> Result<Self> {
        let created = !dir.exists();
        fs::create_dir_all(dir).map_err(io_error("create partition directory", dir))?;
        if created {
            if let Some(parent) = dir.parent() {
                checkpoint::fsync_dir(parent)?;
            }
        }
        match read_partition_metadata(dir)? {
            Some(found) if found != topic_id => {
                return Err(LogError::InconsistentTopicId {
                    dir: dir.to_path_buf(),
                    expected: topic_id,
                    found,
                })
            }
            Some(_) => {}
            None => write_partition_metadata(dir, topic_id)?,
        }

        // From here on a crash must look unclean.
        let clean = checkpoint::remove_if_exists(&dir.join(CLEAN_SHUTDOWN_FILE))?;
        if clean {
            checkpoint::fsync_dir(dir)?;
        }

        let bases = scan_dir(dir)?;
        let mut segments = BTreeMap::new();
        for (i, base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            segments.insert(*base, LogSegment::open(dir, *base, next, &config)?);
        }

        let (mut epochs, epoch_problem) = LeaderEpochCache::open(dir)?;
        let mut recovered_epochs: Vec<(i32, i64)> = Vec::new();
        let first_to_recover = segments
            .iter()
            .find(|(_, s)| s.tail_damage().is_some())
            .map(|(base, _)| *base)
            .or_else(|| {
                (!clean)
                    .then(|| segments.keys().next_back().copied())
                    .flatten()
            });
        if let Some(from) = first_to_recover {
            info!(dir = %dir.display(), from_segment = from, clean, "recovering log");
            let mut corrupt_at: Option<i64> = None;
            for (base, segment) in segments.range_mut(from..) {
                if corrupt_at.is_some() {
                    break;
                }
                let cut = segment.recover(&config, &mut |h| {
                    let higher = recovered_epochs
                        .last()
                        .is_none_or(|(epoch, _)| h.partition_leader_epoch > *epoch);
                    if h.partition_leader_epoch >= 0 && higher {
                        recovered_epochs.push((h.partition_leader_epoch, h.base_offset));
                    }
                })?;
                if cut > 0 {
                    corrupt_at = Some(*base);
                }
            }
            if let Some(corrupt) = corrupt_at {
                let later: Vec<i64> = segments.range(corrupt + 1..).map(|(b, _)| *b).collect();
                for base in later.into_iter().rev() {
                    if let Some(segment) = segments.remove(&base) {
                        error!(dir = %dir.display(), base_offset = base,
                            "deleting segment after a corrupt point");
                        segment.delete_files()?;
                    }
                }
            }
        }

        let log_start_checkpoint = checkpoint::read_offset(&dir.join(LOG_START_OFFSET_CHECKPOINT))
            .unwrap_or_else(|e| {
                warn!(dir = %dir.display(), error = %e, "ignoring log start offset checkpoint");
                None
            });
        if segments.is_empty() {
            let base = log_start_checkpoint.unwrap_or(0).max(0);
            segments.insert(base, LogSegment::create(dir, base)?);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments
            .values()
            .next_back()
            .map(|s| s.next_offset())
            .unwrap_or(first_base);
        let log_start_offset = log_start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);

        // Segments wholly below the log start (retention crashed between checkpoint and deletion).
        let below: Vec<i64> = segments
            .iter()
            .filter(|(_, s)| s.next_offset() <= log_start_offset)
            .map(|(b, _)| *b)
            .filter(|b| Some(*b) != segments.keys().next_back().copied())
            .collect();
        for base in below {
            if let Some(segment) = segments.remove(&base) {
                info!(dir = %dir.display(), base_offset = base, "deleting segment below the log start offset");
                segment.delete_files()?;
            }
        }

        match epoch_problem {
            Some(problem) => {
                // A new, empty log has no checkpoint yet; only a log with data missing it is news.
                if log_end_offset > log_start_offset {
                    warn!(dir = %dir.display(), %problem, "rebuilding leader epoch cache from the log");
                } else {
                    tracing::debug!(dir = %dir.display(), %problem, "new leader epoch cache");
                }
                for segment in segments.values() {
                    segment.for_each_batch(&mut |h| {
                        epochs.assign_in_memory(h.partition_leader_epoch, h.base_offset);
                    })?;
                }
                epochs.persist()?;
            }
            None => {
                let mut changed = false;
                for (epoch, offset) in recovered_epochs {
                    changed |= epochs.assign_in_memory(epoch, offset);
                }
                if changed {
                    epochs.persist()?;
                }
            }
        }
        // Entries past the recovered end (their data was lost) go; one starting exactly at the LEO is
        // a leadership that has not written yet and stays.
        epochs.truncate_from_end(log_end_offset + 1)?;
        epochs.truncate_from_start(log_start_offset)?;

        let (producers, replayed) = load_producer_state(dir, &segments, log_end_offset)?;
        if replayed > 0 {
            info!(dir = %dir.display(), batches = replayed, producers = producers.len(),
                "rebuilt producer state from the log");
            if let Err(e) = producer_state::write_snapshot(dir, log_end_offset, &producers) {
                warn!(dir = %dir.display(), error = %e, "cannot write producer state snapshot");
            }
        }

        let high_watermark = checkpoint::read_offset(&dir.join(HIGH_WATERMARK_CHECKPOINT))
            .unwrap_or_else(|e| {
                warn!(dir = %dir.display(), error = %e, "ignoring high watermark checkpoint");
                None
            })
            .unwrap_or(log_start_offset)
            .min(log_end_offset)
            .max(log_start_offset);

        checkpoint::fsync_dir(dir)?;
        info!(dir = %dir.display(), log_start_offset, log_end_offset, high_watermark,
            segments = segments.len(), clean, "opened partition log");
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            topic_id,
            state: RwLock::new(LogState {
                dir: dir.to_path_buf(),
                config,
                segments,
                epochs,
                producers,
                log_start_offset,
                log_end_offset,
                high_watermark,
                checkpointed_high_watermark: None,
                flushed_offset: log_end_offset,
                last_flush_ms: now_ms(),
                dir_dirty: false,
                truncations: 0,
                fsyncs: 0,
                status: Status::Open,
            }),
            flush_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
        })
    }

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
    /// batch, size against `max.message.bytes`), gives it offsets from the LEO, stamps `leader_epoch`
    /// (and the append time for LogAppendTime topics), records a new epoch in the epoch cache, rolls
    /// the segment when `segment.bytes`/`segment.ms` say so, and writes it. Not yet fsynced: see
    /// [`AppendInfo::flush_required`].
    ///
    /// An idempotent producer's batch first passes the producer state checks (KIP-98), under the
    /// same lock as the append: a stale epoch or a sequence gap is [`LogError::Producer`]; a retry of a
    /// batch still in the producer's last five is not written again and returns the original's
    /// offsets with [`AppendInfo::duplicate`] set.
    pub fn append_as_leader(&self, batch: Bytes, leader_epoch: i32) -> Result<AppendInfo> {
        let size = batch.len();
        let mut batch = RecordBatch::parse(batch)?;
        batch.validate_client_batch()?;
        let mut state = self.write_state()?;
        if size as u64 > state.config.max_message_bytes {
            return Err(LogError::MessageTooLarge {
                size,
                max: state.config.max_message_bytes,
            });
        }
        if let Some(latest) = state.epochs.latest_epoch() {
            if leader_epoch < latest {
                return Err(LogError::StaleLeaderEpoch {
                    epoch: leader_epoch,
                    latest,
                });
            }
        }
        if let Admission::Duplicate(original) = state.producers.check(batch.header())? {
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
    /// batches ending below `upper_bound_offset` (the high watermark for consumers, the LEO for
    /// followers). [`LogError::OffsetOutOfRange`] below the log start or above the LEO; empty records
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
        let bound = upper_bound_offset.min(state.log_end_offset);
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
    /// is not above the latest).
    pub fn assign_leader_epoch(&self, leader_epoch: i32) -> Result<bool> {
        let mut state = self.write_state()?;
        let leo = state.log_end_offset;
        state
            .epochs
            .assign(leader_epoch, leo)
            .map_err(|e| state.fail(&self.dir, e))
    }

    pub fn log_end_offset(&self) -> i64 {
        self.peek().log_end_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.peek().log_start_offset
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
        let (target, file, sync_dir, truncations) = {
            let mut state = self.write_state()?;
            if state.flushed_offset >= offset.min(state.log_end_offset) {
                return Ok(state.flushed_offset);
            }
            let sync_dir = std::mem::take(&mut state.dir_dirty);
            (
                state.log_end_offset,
                state.active()?.data_file(),
                sync_dir,
                state.truncations,
            )
        };
        let result = file
            .sync_data()
            .map_err(io_error("fsync segment", &self.dir))
            .and_then(|_| {
                if sync_dir {
                    checkpoint::fsync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                state.fsyncs += 1;
                state.last_flush_ms = now_ms();
                if state.truncations == truncations {
                    state.flushed_offset = state.flushed_offset.max(target);
                }
                Ok(state.flushed_offset)
            }
            Err(e) => {
                state.dir_dirty |= sync_dir;
                Err(state.fail(&self.dir, e))
            }
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
        let (producers, replayed) = load_producer_state(&self.dir, &state.segments, leo)?;
        tracing::debug!(dir = %self.dir.display(), batches = replayed, producers = producers.len(),
            "reloaded producer state after truncation");
        state.producers = producers;
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower whose log is entirely below the
    /// leader's log start). The log start, LEO and high watermark all become `offset`.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let mut state = self.write_state()?;
        let result = (|| {
            state.truncations += 1;
            checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), offset)?;
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            for base in bases.into_iter().rev() {
                if let Some(segment) = state.segments.remove(&base) {
                    segment.delete_files()?;
                }
            }
            state
                .segments
                .insert(offset, LogSegment::create(&self.dir, offset)?);
            checkpoint::fsync_dir(&self.dir)?;
            state.epochs.clear()?;
            producer_state::delete_all_snapshots(&self.dir)?;
            state.producers = ProducerState::default();
            state.log_start_offset = offset;
            state.log_end_offset = offset;
            state.high_watermark = offset;
            state.flushed_offset = offset;
            info!(dir = %self.dir.display(), offset, "log emptied and restarted");
            Ok(())
        })();
        result.map_err(|e| state.fail(&self.dir, e))
    }

    /// Deletes whole segments past `retention.ms` (by each segment's largest timestamp, against
    /// `now_ms`) and then past `retention.bytes`, oldest first. Never the active segment, and never a
    /// segment holding offsets at or above the high watermark. The new log start offset is
    /// checkpointed before any file is removed.
    pub fn apply_retention(&self, now_ms: i64) -> Result<Vec<DeletedSegment>> {
        let mut state = self.write_state()?;
        let expired = state
            .producers
            .remove_expired(now_ms, PRODUCER_ID_EXPIRATION_MS);
        if expired > 0 {
            info!(dir = %self.dir.display(), expired, "forgot expired producer ids");
        }
        let config = state.config.clone();
        if !config.cleanup_delete {
            // A compact-only topic keeps every segment; the cleaner shrinks them instead.
            return Ok(Vec::new());
        }
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        let mut doomed: Vec<(i64, RetentionReason)> = Vec::new();
        // Candidates: all but the active segment, whose successor starts at or below the HW.
        let candidates: Vec<(i64, i64)> = bases
            .windows(2)
            .map(|w| (w[0], w[1]))
            .take_while(|(_, next)| *next <= state.high_watermark)
            .collect();
        let mut remaining_bytes = state.size_in_bytes();
        for (base, _) in &candidates {
            let Some(segment) = state.segments.get(base) else {
                break;
            };
            let too_old = config
                .retention_ms
                .is_some_and(|ms| now_ms.saturating_sub(segment.largest_timestamp()) > ms);
            let too_big = config
                .retention_bytes
                .is_some_and(|max| remaining_bytes.saturating_sub(segment.size()) >= max);
            // The time rule deletes a prefix first; the size rule continues the same prefix.
            let reason = if too_old && doomed.iter().all(|(_, r)| *r == RetentionReason::Time) {
                RetentionReason::Time
            } else if too_big {
                RetentionReason::Size
            } else {
                break;
            };
            remaining_bytes -= segment.size();
            doomed.push((*base, reason));
        }
        let Some(new_start) = doomed
            .last()
            .and_then(|(base, _)| candidates.iter().find(|(b, _)| b == base))
            .map(|(_, next)| *next)
        else {
            return Ok(Vec::new());
        };
        let log_start_offset = state.log_start_offset.max(new_start);
        let result = (|| {
            checkpoint::write_offset(
                &self.dir.join(LOG_START_OFFSET_CHECKPOINT),
                log_start_offset,
            )?;
            state.log_start_offset = log_start_offset;
            state.high_watermark = state.high_watermark.max(log_start_offset);
            state.epochs.truncate_from_start(log_start_offset)?;
            let mut deleted = Vec::new();
            for (base, reason) in &doomed {
                if let Some(segment) = state.segments.remove(base) {
                    segment.delete_files()?;
                    deleted.push(DeletedSegment {
                        base_offset: *base,
                        next_offset: segment.next_offset(),
                        size_bytes: segment.size(),
                        reason: *reason,
                    });
                }
            }
            // Producer state outlives the data (KIP-360), so only the snapshots go, not the entries.
            producer_state::delete_snapshots_below(&self.dir, log_start_offset)?;
            Ok(deleted)
        })();
        match result {
            Ok(deleted) => {
                info!(dir = %self.dir.display(), segments = deleted.len(), log_start_offset,
                    "retention deleted segments");
                Ok(deleted)
            }
            Err(e) => Err(state.fail(&self.dir, e)),
        }
    }

    /// Clean shutdown: flush, seal the active segment, write the checkpoints and the clean-shutdown
    /// marker. Further calls fail with [`LogError::Closed`]. Closing twice is a no-op.
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
            checkpoint::write_offset(
                &self.dir.join(LOG_START_OFFSET_CHECKPOINT),
                state.log_start_offset,
            )?;
            state.epochs.persist()?;
            producer_state::write_snapshot(&self.dir, state.log_end_offset, &state.producers)?;
            checkpoint::write_atomically(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
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
    pub fn delete(&self) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.status = Status::Closed;
        drop(state);
        let Some(parent) = self.dir.parent() else {
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
}

/// The producer state of the batches below `log_end_offset`: the newest snapshot at or below it plus
/// the batch headers after it (headers only, no records are decoded). Snapshots above it are deleted
/// first (their batches are gone). Returns the state and how many headers were replayed.
fn load_producer_state(
    dir: &Path,
    segments: &BTreeMap<i64, LogSegment>,
    log_end_offset: i64,
) -> Result<(ProducerState, usize)> {
    producer_state::delete_snapshots_above(dir, log_end_offset)?;
    let (from, mut state) = producer_state::load_latest_snapshot(dir, log_end_offset)?
        .unwrap_or((i64::MIN, ProducerState::default()));
    let mut replayed = 0;
    let now = now_ms();
    if from < log_end_offset {
        let floor = segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in segments.range(floor..).map(|(_, s)| s) {
            segment.for_each_batch(&mut |h| {
                if h.base_offset >= from && h.base_offset < log_end_offset {
                    state.update(h, now);
                    replayed += 1;
                }
            })?;
        }
    }
    Ok((state, replayed))
}

/// Lists the segment base offsets in `dir` and clears leftovers: temp checkpoint files and index files
/// whose log file is gone.
fn scan_dir(dir: &Path) -> Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list partition directory", dir))? {
        let entry = entry.map_err(io_error("list partition directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = parse_segment_file(&name, LOG_SUFFIX) {
            logs.push(base);
        } else if parse_segment_file(&name, INDEX_SUFFIX).is_some()
            || parse_segment_file(&name, TIME_INDEX_SUFFIX).is_some()
        {
            indexes.push(name);
        } else if name.ends_with(".tmp") {
            checkpoint::remove_if_exists(&entry.path())?;
        }
    }
    logs.sort_unstable();
    for name in indexes {
        let base = parse_segment_file(&name, INDEX_SUFFIX)
            .or_else(|| parse_segment_file(&name, TIME_INDEX_SUFFIX));
        if base.is_some_and(|b| logs.binary_search(&b).is_err()) {
            warn!(dir = %dir.display(), file = %name, "removing index without a segment");
            checkpoint::remove_if_exists(&dir.join(&name))?;
        }
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::batch::test_support::*;
    use crate::log::batch::BatchErrorKind;
    use crate::log::producer_state::{snapshot_offsets, snapshot_path, ProducerStateError};

    const DAY_MS: i64 = 24 * 60 * 60 * 1000;

    fn topic_id() -> Uuid {
        Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
    }

    fn small_config() -> LogConfig {
        LogConfig {
            segment_bytes: 1000,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    fn open(dir: &Path, config: LogConfig) -> PartitionLog {
        PartitionLog::open(&dir.join("orders-0"), topic_id(), config).unwrap()
    }

    /// Appends `batches` producer batches of `per` records, record timestamps `ts0 + offset`.
    fn produce(
        log: &PartitionLog,
        batches: usize,
        per: usize,
        ts0: i64,
        epoch: i32,
    ) -> Vec<AppendInfo> {
        (0..batches)
            .map(|_| {
                let leo = log.log_end_offset();
                let timestamps: Vec<i64> = (0..per as i64).map(|i| ts0 + leo + i).collect();
                log.append_as_leader(client_batch(&timestamps, 50), epoch)
                    .unwrap()
            })
            .collect()
    }

    /// Reads the whole log from `from` as parsed batches, checking contiguity.
    fn read_all(log: &PartitionLog, from: i64) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        let mut offset = from;
        while offset < log.log_end_offset() {
            let read = log.read(offset, 700, i64::MAX).unwrap();
            assert!(!read.records.is_empty(), "no progress at {offset}");
            for batch in Batches::new(read.records) {
                let batch = batch.unwrap();
                assert!(batch.base_offset() <= offset.max(batch.base_offset()));
                offset = batch.last_offset() + 1;
                out.push(batch);
            }
        }
        out
    }

    #[test]
    fn append_and_read_across_rolled_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let infos = produce(&log, 40, 2, 1000, 3);
        assert_eq!(infos[0].base_offset, 0);
        assert_eq!(infos[39].last_offset, 79);
        assert_eq!(log.log_end_offset(), 80);
        assert!(log.segment_count() > 5, "segments: {}", log.segment_count());

        let batches = read_all(&log, 0);
        assert_eq!(batches.len(), 40);
        for (i, batch) in batches.iter().enumerate() {
            assert_eq!(batch.base_offset(), 2 * i as i64);
            assert_eq!(batch.partition_leader_epoch(), 3);
        }
        // Every offset, including ones in the middle of a batch and of a segment, finds its batch.
        for offset in 0..80 {
            let read = log.read(offset, 1, i64::MAX).unwrap();
            let batch = RecordBatch::parse(read.records).unwrap();
            assert!(batch.base_offset() <= offset && offset <= batch.last_offset());
        }
        // The payload is the producer's, byte for byte after the header patches.
        let decoded =
            kafka_protocol::records::RecordBatchDecoder::decode(&mut batches[7].as_bytes().clone())
                .unwrap();
        assert_eq!(decoded.records.len(), 2);
        assert_eq!(decoded.records[1].offset, 15);
        assert_eq!(decoded.records[1].key.as_deref(), Some(&b"key-1"[..]));
    }

    #[test]
    fn reads_respect_bounds_and_kip74() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        produce(&log, 5, 4, 0, 0);
        let first = log.read(0, 1, i64::MAX).unwrap().records;
        assert_eq!(
            RecordBatch::parse(first.clone()).unwrap().last_offset(),
            3,
            "KIP-74"
        );
        let two = log.read(0, first.len() * 2 + 1, i64::MAX).unwrap().records;
        assert_eq!(two.len(), first.len() * 2);

        assert!(matches!(
            log.read(21, 100, i64::MAX),
            Err(LogError::OffsetOutOfRange {
                offset: 21,
                log_start_offset: 0,
                log_end_offset: 20
            })
        ));
        assert!(log.read(20, 100, i64::MAX).unwrap().records.is_empty());
        // A consumer bound (the high watermark) stops before a batch that crosses it.
        assert!(log.maybe_increment_high_watermark(10));
        let read = log.read(0, 1 << 20, log.high_watermark()).unwrap();
        assert_eq!(read.high_watermark, 10);
        assert_eq!(read.records.len(), first.len() * 2);
        assert!(log.read(12, 1 << 20, 10).unwrap().records.is_empty());
    }

    #[test]
    fn finds_offsets_by_timestamp_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 30, 2, 10_000, 1);
        let found = log.offset_for_timestamp(10_041).unwrap().unwrap();
        assert_eq!(
            (found.offset, found.timestamp, found.leader_epoch),
            (41, 10_041, Some(1))
        );
        assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
        assert_eq!(log.offset_for_timestamp(10_060).unwrap(), None);
        let max = log.offset_of_max_timestamp().unwrap().unwrap();
        assert_eq!((max.offset, max.timestamp), (59, 10_059));
    }

    #[test]
    fn retention_by_time_moves_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: Some(7 * DAY_MS),
            ..small_config()
        };
        let log = open(dir.path(), config.clone());
        let now = now_ms();
        produce(&log, 20, 2, now - 10 * DAY_MS, 0);
        produce(&log, 20, 2, now, 0);
        let segments_before = log.segment_count();

        // Nothing is deleted above the high watermark.
        assert!(log.apply_retention(now).unwrap().is_empty());
        log.maybe_increment_high_watermark(log.log_end_offset());
        let deleted = log.apply_retention(now).unwrap();
        assert!(!deleted.is_empty());
        assert!(deleted.iter().all(|d| d.reason == RetentionReason::Time));
        assert_eq!(log.segment_count(), segments_before - deleted.len());
        let start = log.log_start_offset();
        assert_eq!(start, deleted.last().unwrap().next_offset);
        assert!(
            start > 0 && start <= 40,
            "only old segments go: start {start}"
        );
        assert!(matches!(
            log.read(start - 1, 100, i64::MAX),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(!log.read(start, 100, i64::MAX).unwrap().records.is_empty());
        assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, start);
        assert!(log.apply_retention(now).unwrap().is_empty(), "idempotent");

        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(log.log_start_offset(), start, "checkpointed");
    }

    #[test]
    fn retention_by_size_keeps_the_newest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: None,
            retention_bytes: Some(2500),
            ..small_config()
        };
        let log = open(dir.path(), config);
        produce(&log, 40, 2, now_ms(), 0);
        log.maybe_increment_high_watermark(log.log_end_offset());
        let deleted = log.apply_retention(now_ms()).unwrap();
        assert!(!deleted.is_empty());
        assert!(deleted.iter().all(|d| d.reason == RetentionReason::Size));
        assert!(log.size_in_bytes() >= 2500 - 1000, "no more than needed");
        assert!(log.size_in_bytes() < 2500 + 1000);
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        assert_eq!(log.log_end_offset(), 80);
        assert!(matches!(
            log.read(log.log_start_offset() - 1, 100, i64::MAX),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn rolls_when_the_active_segment_is_older_than_segment_ms() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            dir.path(),
            LogConfig {
                segment_ms: 60_000,
                ..LogConfig::default()
            },
        );
        let now = now_ms();
        log.append_as_leader(client_batch(&[now - 120_000], 10), 0)
            .unwrap();
        log.append_as_leader(client_batch(&[now - 119_000], 10), 0)
            .unwrap();
        assert_eq!(
            log.segment_count(),
            1,
            "within segment.ms of the first batch"
        );
        log.append_as_leader(client_batch(&[now], 10), 0).unwrap();
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    }

    /// A small deterministic generator (no extra crate; failures replay exactly).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn never_panics_on_random_bytes_from_disk() {
        let mut opened = 0;
        for seed in 1..40u64 {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), small_config());
            produce(&log, 8, 2, 0, 1);
            let bases = log.segment_base_offsets();
            let clean = seed % 2 == 0;
            if clean {
                log.close().unwrap();
            }
            drop(log);
            let part = dir.path().join("orders-0");
            let victim = bases[seed as usize % bases.len()];
            let suffix = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX][seed as usize % 3];
            let path = super::super::segment::segment_file(&part, victim, suffix);
            let mut bytes = fs::read(&path).unwrap();
            let at = noise(seed, 1)[0] as usize % bytes.len().max(1);
            let junk = noise(seed * 7919, 1 + seed as usize * 3);
            bytes.truncate(at);
            bytes.extend_from_slice(&junk);
            fs::write(&path, &bytes).unwrap();
            for name in ["leader-epoch-checkpoint", HIGH_WATERMARK_CHECKPOINT] {
                if seed % 5 == 0 {
                    fs::write(part.join(name), noise(seed, 20)).unwrap();
                }
            }

            // Opening may refuse a log it cannot trust, but must not panic; if it opens, every read
            // within its bounds works and returns whole, valid batches.
            let log = match PartitionLog::open(&part, topic_id(), small_config()) {
                Ok(log) => log,
                Err(e) => {
                    eprintln!("seed {seed}: refused: {e}");
                    continue;
                }
            };
            opened += 1;
            let mut offset = log.log_start_offset();
            while offset < log.log_end_offset() {
                let records = log.read(offset, 300, i64::MAX).unwrap().records;
                let mut progressed = false;
                for batch in Batches::new(records) {
                    offset = batch.unwrap().last_offset() + 1;
                    progressed = true;
                }
                assert!(progressed, "seed {seed}: stuck at {offset}");
            }
            let _ = log.offset_for_timestamp(5);
            let _ = log.offset_of_max_timestamp();
            log.append_as_leader(client_batch(&[1], 10), 1).unwrap();
        }
        // Recovery and index rebuilds handle damage to one file; refusing is for worse than that.
        assert_eq!(opened, 39);
    }

    fn active_log_file(log: &PartitionLog) -> PathBuf {
        let base = *log.segment_base_offsets().last().unwrap();
        super::super::segment::segment_file(log.dir(), base, LOG_SUFFIX)
    }

    #[test]
    fn recovers_a_torn_tail_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let infos = produce(&log, 12, 2, 0, 2);
        let path = active_log_file(&log);
        drop(log); // no close: an unclean shutdown
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 7)
            .unwrap();

        let log = open(dir.path(), small_config());
        assert_eq!(
            log.log_end_offset(),
            infos[11].base_offset,
            "back to the last whole batch"
        );
        assert_eq!(read_all(&log, 0).len(), 11);
        let next = log.append_as_leader(client_batch(&[5], 10), 2).unwrap();
        assert_eq!(next.base_offset, infos[11].base_offset);
    }

    #[test]
    fn recovers_from_garbage_after_the_last_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 12, 2, 0, 2);
        let path = active_log_file(&log);
        drop(log);
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, &[0x5a; 333]).unwrap();
        drop(file);

        let log = open(dir.path(), small_config());
        assert_eq!(log.log_end_offset(), 24);
        assert_eq!(read_all(&log, 0).len(), 12);
    }

    #[test]
    fn epoch_cache_tracks_appends_and_is_rebuilt_when_lost() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 3, 2, 0, 1); // 0..6
        assert!(log.assign_leader_epoch(3).unwrap()); // a new leader at LEO 6
        produce(&log, 3, 2, 0, 3); // 6..12
        produce(&log, 3, 2, 0, 5); // 12..18
        assert!(matches!(
            log.append_as_leader(client_batch(&[1], 10), 4),
            Err(LogError::StaleLeaderEpoch {
                epoch: 4,
                latest: 5
            })
        ));
        let expected = vec![
            EpochEntry {
                epoch: 1,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 6,
            },
            EpochEntry {
                epoch: 5,
                start_offset: 12,
            },
        ];
        assert_eq!(log.epoch_entries(), expected);
        let eo = |e| log.end_offset_for_epoch(e).unwrap();
        assert_eq!(
            eo(5),
            EpochEndOffset {
                leader_epoch: 5,
                end_offset: 18
            }
        );
        assert_eq!(
            eo(4),
            EpochEndOffset {
                leader_epoch: 3,
                end_offset: 12
            }
        );
        assert_eq!(
            eo(1),
            EpochEndOffset {
                leader_epoch: 1,
                end_offset: 6
            }
        );
        assert_eq!(
            eo(0),
            EpochEndOffset {
                leader_epoch: 0,
                end_offset: 0
            }
        );
        assert_eq!(
            eo(6),
            EpochEndOffset {
                leader_epoch: -1,
                end_offset: -1
            }
        );
        log.close().unwrap();

        let checkpoint = dir
            .path()
            .join("orders-0")
            .join(super::super::epoch::CHECKPOINT_FILE);
        fs::remove_file(&checkpoint).unwrap();
        let log = open(dir.path(), small_config());
        assert_eq!(log.epoch_entries(), expected, "rebuilt from batch headers");
        log.close().unwrap();

        fs::write(&checkpoint, "0\n7\n1 0\n").unwrap();
        let log = open(dir.path(), small_config());
        assert_eq!(
            log.epoch_entries(),
            expected,
            "rebuilt from a corrupt checkpoint"
        );
    }

    #[test]
    fn truncation_cuts_data_indexes_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 4, 5, 0, 1); // 0..20
        produce(&log, 4, 5, 0, 2); // 20..40
        produce(&log, 4, 5, 0, 3); // 40..60
        log.maybe_increment_high_watermark(50);
        let segments = log.segment_count();
        assert!(segments > 3);

        assert!(log.truncate_to(25).unwrap());
        assert_eq!(log.log_end_offset(), 25);
        assert_eq!(log.high_watermark(), 25);
        assert!(log.flushed_offset() <= 25);
        assert!(log.segment_count() < segments);
        assert_eq!(
            log.epoch_entries(),
            vec![
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 20
                }
            ]
        );
        assert_eq!(read_all(&log, 0).len(), 5);
        assert!(matches!(
            log.read(26, 1, i64::MAX),
            Err(LogError::OffsetOutOfRange { .. })
        ));

        // Mid-batch: the whole batch holding the offset goes.
        assert!(log.truncate_to(22).unwrap());
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(
            log.epoch_entries(),
            vec![EpochEntry {
                epoch: 1,
                start_offset: 0
            }]
        );
        assert!(!log.truncate_to(30).unwrap(), "nothing above the LEO");

        // A follower continues from the new end.
        let info = log
            .append_as_follower(leader_batch(20, 4, &[1, 2]))
            .unwrap()
            .unwrap();
        assert_eq!((info.base_offset, info.last_offset), (20, 21));
        assert_eq!(log.latest_epoch(), Some(4));
        drop(log);
        let log = open(dir.path(), small_config());
        assert_eq!(log.log_end_offset(), 22);
        assert_eq!(read_all(&log, 0).len(), 5);
    }

    #[test]
    fn truncation_never_goes_below_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 10, 5, 0, 1);
        log.truncate_fully_and_start_at(100).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.high_watermark()
            ),
            (100, 100, 100)
        );
        assert_eq!(log.segment_base_offsets(), vec![100]);
        assert!(log.epoch_entries().is_empty());
        assert!(matches!(
            log.truncate_to(99),
            Err(LogError::TruncateBelowLogStart {
                offset: 99,
                log_start_offset: 100
            })
        ));
        log.append_as_follower(leader_batch(100, 7, &[1])).unwrap();
        drop(log);
        let log = open(dir.path(), small_config());
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 101));
    }

    #[test]
    fn reopening_after_close_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 25, 2, 5000, 2);
        log.maybe_increment_high_watermark(40);
        let before = read_all(&log, 0);
        let bases = log.segment_base_offsets();
        log.close().unwrap();
        assert!(log.dir().join(CLEAN_SHUTDOWN_FILE).exists());
        assert!(matches!(
            log.append_as_leader(client_batch(&[1], 1), 2),
            Err(LogError::Closed { .. })
        ));
        log.close().unwrap(); // idempotent
        drop(log);

        let log = open(dir.path(), small_config());
        assert!(
            !log.dir().join(CLEAN_SHUTDOWN_FILE).exists(),
            "a crash from now on is unclean"
        );
        assert_eq!(log.log_end_offset(), 50);
        assert_eq!(log.high_watermark(), 40);
        assert_eq!(log.segment_base_offsets(), bases);
        assert_eq!(log.latest_epoch(), Some(2));
        assert_eq!(read_all(&log, 0), before);
        assert_eq!(log.offset_for_timestamp(5033).unwrap().unwrap().offset, 33);
        assert_eq!(log.offset_of_max_timestamp().unwrap().unwrap().offset, 49);
    }

    #[test]
    fn a_directory_of_another_topic_incarnation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), LogConfig::default()).close().unwrap();
        let other = Uuid::from_u128(7);
        match PartitionLog::open(&dir.path().join("orders-0"), other, LogConfig::default()) {
            Err(LogError::InconsistentTopicId {
                expected, found, ..
            }) => {
                assert_eq!((expected, found), (other, topic_id()));
            }
            other => panic!("expected InconsistentTopicId, got {other:?}"),
        }
    }

    #[test]
    fn leader_appends_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            dir.path(),
            LogConfig {
                max_message_bytes: 300,
                ..LogConfig::default()
            },
        );
        assert!(matches!(
            log.append_as_leader(client_batch(&[1, 2, 3], 200), 0),
            Err(LogError::MessageTooLarge { max: 300, .. })
        ));
        let mut corrupt = client_batch(&[1], 10).to_vec();
        let n = corrupt.len();
        corrupt[n - 1] ^= 1;
        match log.append_as_leader(Bytes::from(corrupt), 0) {
            Err(LogError::InvalidBatch(e)) => assert_eq!(e.kind(), BatchErrorKind::CorruptMessage),
            other => panic!("expected a corrupt batch error, got {other:?}"),
        }
        let mut two = client_batch(&[1], 10).to_vec();
        two.extend_from_slice(&client_batch(&[1], 10));
        match log.append_as_leader(Bytes::from(two), 0) {
            Err(LogError::InvalidBatch(e)) => assert_eq!(e.kind(), BatchErrorKind::InvalidRecord),
            other => panic!("expected an invalid record error, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), 0, "nothing was appended");
    }

    #[test]
    fn log_append_time_topics_stamp_the_broker_clock() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            dir.path(),
            LogConfig {
                message_timestamp_type: TimestampType::LogAppendTime,
                ..LogConfig::default()
            },
        );
        let before = now_ms();
        let info = log.append_as_leader(client_batch(&[1, 2], 10), 0).unwrap();
        assert!(info.log_append_time_ms >= before);
        let batch = RecordBatch::parse(log.read(0, 1, i64::MAX).unwrap().records).unwrap();
        assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(batch.max_timestamp(), info.log_append_time_ms);
        let found = log.offset_for_timestamp(before).unwrap().unwrap();
        assert_eq!(
            (found.offset, found.timestamp),
            (0, info.log_append_time_ms)
        );
    }

    #[test]
    fn follower_appends_keep_the_leaders_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let mut fetched = leader_batch(0, 1, &[1, 2, 3]).to_vec();
        fetched.extend_from_slice(&leader_batch(3, 2, &[4]));
        let partial = leader_batch(4, 2, &[5]);
        fetched.extend_from_slice(&partial[..partial.len() - 10]);
        let info = log
            .append_as_follower(Bytes::from(fetched))
            .unwrap()
            .unwrap();
        assert_eq!(
            (info.base_offset, info.last_offset, info.batches),
            (0, 3, 2)
        );
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(
            log.epoch_entries(),
            vec![
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 3
                }
            ]
        );
        assert!(matches!(
            log.append_as_follower(leader_batch(2, 2, &[1])),
            Err(LogError::UnexpectedAppendOffset {
                base_offset: 2,
                expected_at_least: 4
            })
        ));
        let mut bad = leader_batch(4, 2, &[1]).to_vec();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        assert!(matches!(
            log.append_as_follower(Bytes::from(bad)),
            Err(LogError::InvalidBatch(BatchError::CrcMismatch { .. }))
        ));
        assert_eq!(log.append_as_follower(partial.slice(..20)).unwrap(), None);
        assert_eq!(log.log_end_offset(), 4);
        // Many batches in one call roll segments as they go.
        let mut many = Vec::new();
        for i in 0..30 {
            many.extend_from_slice(&leader_batch(4 + i * 2, 2, &[1, 2]));
        }
        log.append_as_follower(Bytes::from(many)).unwrap();
        assert_eq!(log.log_end_offset(), 64);
        assert!(log.segment_count() > 1);
        assert_eq!(read_all(&log, 0).len(), 32);
    }

    #[test]
    fn one_fsync_covers_every_append_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        let a = log.append_as_leader(client_batch(&[1], 10), 0).unwrap();
        let b = log.append_as_leader(client_batch(&[2], 10), 0).unwrap();
        assert!(a.flush_required && b.flush_required);
        assert_eq!(log.flushed_offset(), 0);
        assert_eq!(log.flush_to(a.next_offset()).unwrap(), 2, "covers b too");
        assert_eq!(log.fsync_count(), 1);
        assert_eq!(log.flush_to(b.next_offset()).unwrap(), 2);
        assert_eq!(log.fsync_count(), 1, "b needed no fsync of its own");

        // Concurrent appenders: every one is covered when flush_to returns, with at most one fsync each.
        let log = Arc::new(log);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let info = log.append_as_leader(client_batch(&[3], 10), 0).unwrap();
                        let flushed = log.flush_to(info.next_offset()).unwrap();
                        assert!(flushed >= info.next_offset());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(log.flushed_offset(), 162);
        assert!(log.fsync_count() <= 161);
    }

    /// Appends `batches` idempotent batches of `per` records of producer `pid`, epoch 0, sequences
    /// from `seq0`.
    fn produce_idempotent(
        log: &PartitionLog,
        pid: i64,
        seq0: i32,
        batches: usize,
        per: usize,
    ) -> Vec<AppendInfo> {
        (0..batches)
            .map(|i| {
                let seq = seq0 + (i * per) as i32;
                let info = log
                    .append_as_leader(producer_batch(pid, 0, seq, per), 1)
                    .unwrap();
                assert!(
                    !info.duplicate,
                    "batch {i} of producer {pid} was taken for a retry"
                );
                info
            })
            .collect()
    }

    /// What a retry of `batch` gets: `Ok((base offset, last offset))` of a duplicate, else the error.
    fn retry(log: &PartitionLog, batch: Bytes) -> std::result::Result<(i64, i64), LogError> {
        let leo = log.log_end_offset();
        let info = log.append_as_leader(batch, 1)?;
        assert!(info.duplicate, "appended at {} instead", info.base_offset);
        assert_eq!(log.log_end_offset(), leo, "a duplicate writes nothing");
        Ok((info.base_offset, info.last_offset))
    }

    #[test]
    fn idempotent_producers_get_dedup_gaps_and_fencing() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        log.append_as_leader(client_batch(&[1, 2], 10), 1).unwrap(); // 0..2, not idempotent
        let a = log.append_as_leader(producer_batch(7, 0, 0, 3), 1).unwrap(); // 2..5
        let b = log.append_as_leader(producer_batch(7, 0, 3, 2), 1).unwrap(); // 5..7
        assert_eq!((a.base_offset, b.base_offset), (2, 5));
        assert_eq!(retry(&log, producer_batch(7, 0, 0, 3)).unwrap(), (2, 4));
        assert_eq!(retry(&log, producer_batch(7, 0, 3, 2)).unwrap(), (5, 6));
        // Non-idempotent batches are never deduplicated.
        let again = log.append_as_leader(client_batch(&[1, 2], 10), 1).unwrap();
        assert_eq!(again.base_offset, 7);
        assert!(matches!(
            log.append_as_leader(producer_batch(7, 0, 6, 1), 1),
            Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
                expected: 5,
                found: 6,
                ..
            }))
        ));
        // A bumped epoch restarts at 0 and fences the old one.
        assert!(matches!(
            log.append_as_leader(producer_batch(7, 1, 5, 1), 1),
            Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
                expected: 0,
                ..
            }))
        ));
        assert_eq!(
            log.append_as_leader(producer_batch(7, 1, 0, 1), 1)
                .unwrap()
                .base_offset,
            9
        );
        assert!(matches!(
            log.append_as_leader(producer_batch(7, 0, 5, 1), 1),
            Err(LogError::Producer(
                ProducerStateError::InvalidProducerEpoch {
                    epoch: 0,
                    current_epoch: 1,
                    ..
                }
            ))
        ));
        assert!(matches!(
            log.append_as_leader(producer_batch(8, 0, -1, 1), 1),
            Err(LogError::Producer(
                ProducerStateError::InvalidSequence { .. }
            ))
        ));
        // A producer never seen starts at any sequence.
        assert_eq!(
            log.append_as_leader(producer_batch(9, 3, 500, 2), 1)
                .unwrap()
                .base_offset,
            10
        );
        assert_eq!(log.log_end_offset(), 12);
        assert!(log.is_open(), "refusals do not take the log offline");
    }

    #[test]
    fn concurrent_retries_of_one_batch_append_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path(), LogConfig::default()));
        produce_idempotent(&log, 7, 0, 1, 2);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let info = log.append_as_leader(producer_batch(7, 0, 2, 3), 1).unwrap();
                    (info.base_offset, info.duplicate)
                })
            })
            .collect();
        let results: Vec<(i64, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(results.iter().all(|(base, _)| *base == 2), "{results:?}");
        assert_eq!(results.iter().filter(|(_, dup)| !dup).count(), 1);
        assert_eq!(log.log_end_offset(), 5);
    }

    #[test]
    fn producer_state_survives_restarts_and_corrupt_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let infos = produce_idempotent(&log, 7, 0, 30, 2);
        produce_idempotent(&log, 8, 100, 3, 1);
        assert!(log.segment_count() > 3);
        let snapshots = snapshot_offsets(log.dir()).unwrap();
        assert_eq!(
            snapshots,
            log.segment_base_offsets()[1..].to_vec(),
            "one snapshot per roll"
        );
        let last = infos[29].clone();
        log.close().unwrap();
        assert!(snapshot_path(log.dir(), log.log_end_offset()).exists());
        drop(log);

        // Clean restart: the snapshot at the LEO.
        let log = open(dir.path(), small_config());
        assert_eq!(
            retry(&log, producer_batch(7, 0, 58, 2)).unwrap(),
            (last.base_offset, last.last_offset)
        );
        assert_eq!(
            retry(&log, producer_batch(7, 0, 50, 2)).unwrap().0,
            infos[25].base_offset
        );
        produce_idempotent(&log, 7, 60, 2, 2);
        let leo = log.log_end_offset();
        drop(log); // a crash: no snapshot at the LEO

        // Unclean restart: the latest roll snapshot plus the headers after it.
        let log = open(dir.path(), small_config());
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(retry(&log, producer_batch(7, 0, 62, 2)).unwrap().1, leo - 1);
        assert!(matches!(
            log.append_as_leader(producer_batch(7, 0, 66, 1), 1),
            Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
                expected: 64,
                ..
            }))
        ));
        log.close().unwrap();
        drop(log);

        // Every snapshot corrupt: all ignored, the state is rebuilt from the whole log.
        for offset in snapshot_offsets(&dir.path().join("orders-0")).unwrap() {
            let path = snapshot_path(&dir.path().join("orders-0"), offset);
            let mut bytes = fs::read(&path).unwrap();
            let n = bytes.len();
            bytes[n - 1] ^= 0x01;
            fs::write(&path, bytes).unwrap();
        }
        let log = open(dir.path(), small_config());
        assert_eq!(retry(&log, producer_batch(7, 0, 62, 2)).unwrap().1, leo - 1);
        assert_eq!(retry(&log, producer_batch(8, 0, 102, 1)).unwrap().0, 62);
        assert_eq!(
            snapshot_offsets(log.dir()).unwrap(),
            vec![leo],
            "corrupt snapshots deleted; one written after the replay"
        );
    }

    #[test]
    fn a_follower_copies_producer_state_so_a_new_leader_deduplicates() {
        let dir = tempfile::tempdir().unwrap();
        let leader = open(dir.path(), small_config());
        let infos = produce_idempotent(&leader, 7, 0, 12, 2);
        let follower =
            PartitionLog::open(&dir.path().join("orders-1"), topic_id(), small_config()).unwrap();
        let mut offset = 0;
        while offset < leader.log_end_offset() {
            let read = leader.read(offset, 300, i64::MAX).unwrap();
            let info = follower.append_as_follower(read.records).unwrap().unwrap();
            offset = info.last_offset + 1;
        }
        assert_eq!(follower.log_end_offset(), 24);
        // After a failover the follower leads; the producer's retries of in-flight batches find their
        // original offsets, and the next new batch continues the sequence.
        for (i, original) in infos.iter().enumerate().skip(7) {
            assert_eq!(
                retry(&follower, producer_batch(7, 0, (i * 2) as i32, 2)).unwrap(),
                (original.base_offset, original.last_offset)
            );
        }
        assert_eq!(
            follower
                .append_as_leader(producer_batch(7, 0, 24, 2), 2)
                .unwrap()
                .base_offset,
            24
        );
    }

    #[test]
    fn truncation_rebuilds_producer_state() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let infos = produce_idempotent(&log, 7, 0, 40, 2); // seq 2i at offset 2i
        assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
        // Batches 0..=24 stay: the last five (20..=24) are the window again, though 25..=39 had
        // pushed them out.
        assert!(log.truncate_to(infos[25].base_offset).unwrap());
        assert_eq!(log.log_end_offset(), 50);
        assert!(snapshot_offsets(log.dir())
            .unwrap()
            .iter()
            .all(|o| *o <= log.log_end_offset()));
        assert_eq!(retry(&log, producer_batch(7, 0, 40, 2)).unwrap().0, 40);
        assert_eq!(retry(&log, producer_batch(7, 0, 48, 2)).unwrap().0, 48);
        assert!(matches!(
            log.append_as_leader(producer_batch(7, 0, 52, 2), 1),
            Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
                expected: 50,
                ..
            }))
        ));
        assert_eq!(
            log.append_as_leader(producer_batch(7, 0, 50, 2), 1)
                .unwrap()
                .base_offset,
            50,
            "the truncated batch is written again, not taken for a duplicate"
        );
        drop(log);
        let log = open(dir.path(), small_config());
        assert_eq!(retry(&log, producer_batch(7, 0, 50, 2)).unwrap().0, 50);

        log.truncate_fully_and_start_at(100).unwrap();
        assert!(snapshot_offsets(log.dir()).unwrap().is_empty());
        assert_eq!(
            log.append_as_leader(producer_batch(7, 0, 30, 2), 1)
                .unwrap()
                .base_offset,
            100,
            "an emptied log forgets its producers"
        );
    }

    #[test]
    fn retention_deletes_old_snapshots_but_keeps_producers() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: None,
            retention_bytes: Some(1500),
            ..small_config()
        };
        let log = open(dir.path(), config);
        produce_idempotent(&log, 8, 0, 1, 1); // producer 8's only batch, soon deleted by retention
        produce_idempotent(&log, 7, 0, 40, 2);
        log.maybe_increment_high_watermark(log.log_end_offset());
        let deleted = log.apply_retention(now_ms()).unwrap();
        assert!(!deleted.is_empty());
        let start = log.log_start_offset();
        assert!(start > 1, "producer 8's batch is gone: start {start}");
        let snapshots = snapshot_offsets(log.dir()).unwrap();
        assert!(!snapshots.is_empty());
        assert!(
            snapshots.iter().all(|o| *o >= start),
            "{snapshots:?} below {start}"
        );
        assert_eq!(retry(&log, producer_batch(8, 0, 0, 1)).unwrap().0, 0);
        drop(log);
        let log = open(dir.path(), LogConfig::default());
        assert_eq!(retry(&log, producer_batch(8, 0, 0, 1)).unwrap().0, 0);
    }

    #[test]
    fn batches_not_due_for_flush_wait_for_the_timer() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            dir.path(),
            LogConfig {
                flush_messages: 10,
                flush_ms: Some(1000),
                ..LogConfig::default()
            },
        );
        let info = log.append_as_leader(client_batch(&[1, 2], 10), 0).unwrap();
        assert!(!info.flush_required);
        assert!(!log.flush_if_due(now_ms()).unwrap(), "not yet due");
        assert!(log.flush_if_due(now_ms() + 1000).unwrap());
        assert_eq!(log.flushed_offset(), 2);
        let info = log.append_as_leader(client_batch(&[0; 10], 10), 0).unwrap();
        assert!(info.flush_required, "10 unflushed records");
    }
}
