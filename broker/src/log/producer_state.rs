//! Producer state of one partition (Kafka `ProducerStateManager`; KIP-98, KIP-360): for every producer
//! id seen in the log, its current epoch, the metadata of its last [`NUM_BATCHES_TO_RETAIN`] batches,
//! the first offset of its open transaction and the coordinator epoch of its last transaction marker.
//! That is what lets a leader recognise a retried batch (and answer with the original offsets instead
//! of writing it twice), refuse a gap in the sequence numbers, refuse a producer fenced by a newer
//! epoch of the same id, refuse a plain batch inside an open transaction (INVALID_TXN_STATE), refuse a
//! marker from a fenced coordinator, and know the first offset of the earliest open transaction, from
//! which the last stable offset follows.
//!
//! What must stay true:
//! - the state is a function of the batch headers in the log: replaying the headers of the log in
//!   order, from empty or from a snapshot, gives the state the log's owner has. Leaders update it from
//!   the batches they append (after [`ProducerState::check`], under the log's write lock, so a check
//!   and its update are one step), followers from the batches they copy (no checks: the leader made
//!   them), and recovery and truncation rebuild it from a snapshot plus the headers after it;
//! - a snapshot `<offset>.snapshot` holds the state of exactly the batches below `offset` (Kafka's
//!   name and meaning). It carries a CRC-32C; a snapshot that fails it, or does not parse, is ignored
//!   and deleted, and the state is rebuilt by replaying more of the log;
//! - batches with producer id -1 (not idempotent) are neither checked nor recorded;
//! - a producer has an open transaction from its first transactional data batch after its last
//!   marker up to its next marker (COMMIT or ABORT); `ongoing` indexes exactly the open ones by
//!   first offset, and a producer with one never expires.
//!
//! Snapshot format (big-endian), version 2 (written), which adds the transaction fields and allows
//! a producer known only from a marker (no batches); version 1 (read only) has neither:
//!
//! ```text
//! version i16 = 2 | crc u32 (CRC-32C of every byte after it) | producer_count i32 |
//! producer_count × { producer_id i64 | producer_epoch i16 | last_update_ms i64 |
//!                    coordinator_epoch i32 | current_txn_first_offset i64 (-1: none)   <- v2 only
//!                    batch_count i16 (v1: 1..=5, v2: 0..=5) |
//!                    batch_count × { first_seq i32 | last_seq i32 | last_offset i64 |
//!                                    offset_delta i32 | timestamp i64 } }
//! ```
//!
//! Unlike Kafka's snapshot (which keeps only each producer's last batch) it keeps all retained
//! batches, so a retry of any of the last five in-flight batches is still recognised after a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::warn;

use super::batch::BatchHeader;
use super::checkpoint;
use super::error::{io_error, Result};
use super::segment::{parse_segment_file, segment_file};
use super::txn_marker::EndTxnMarker;

/// Batches remembered per producer (Kafka `NUM_BATCHES_TO_RETAIN`; matches the clients' default of at
/// most five requests in flight per connection).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// Kafka's `producer.id.expiration.ms` default: a producer this replica has not seen a batch of for
/// this long is forgotten (its next batch is then accepted with any sequence). Measured on this
/// replica's clock, not by batch timestamps: a producer writing old CreateTime timestamps must not
/// lose its state at once.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

const SNAPSHOT_VERSION: i16 = 2;
const SNAPSHOT_VERSION_V1: i16 = 1;
/// version + crc + producer_count.
const SNAPSHOT_HEADER_BYTES: usize = 2 + 4 + 4;
const PRODUCER_BYTES: usize = 8 + 2 + 8 + 4 + 8 + 2;
const BATCH_BYTES: usize = 4 + 4 + 8 + 4 + 8;

/// What is remembered of one appended batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub last_offset: i64,
    /// `last_offset - base_offset` of the batch.
    pub offset_delta: i32,
    /// The batch's MaxTimestamp (the append time on LogAppendTime topics).
    pub timestamp: i64,
}

impl BatchMetadata {
    /// The batch's base offset.
    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// One producer id's state in a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_epoch: i16,
    /// This replica's wall clock when it last recorded a batch of the producer (appended, copied or
    /// replayed), for expiration.
    pub last_update_ms: i64,
    /// The coordinator epoch of the last transaction marker written for the producer (-1: none).
    pub coordinator_epoch: i32,
    /// The first offset of the producer's open transaction here, if one is open.
    pub current_txn_first_offset: Option<i64>,
    /// Oldest first; at most [`NUM_BATCHES_TO_RETAIN`], all of `producer_epoch`; empty only for a
    /// producer known from a marker alone (or whose epoch a marker bumped).
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    pub fn batches(&self) -> impl Iterator<Item = &BatchMetadata> {
        self.batches.iter()
    }

    pub fn last_batch(&self) -> Option<&BatchMetadata> {
        self.batches.back()
    }

    /// The batch this one repeats, if it is a retry. A transactional batch can only repeat a batch of
    /// the producer's open transaction: a producer ends a transaction only once each of its sends
    /// has been answered or given up, so a batch of an ended transaction is never retried. Matching
    /// one anyway would lose data: on an abort librdkafka reuses the sequences of the records it
    /// purged (`rd_kafka_toppar_purge_queues` moves the epoch's base msgid back over them) even when
    /// an earlier send of one reached the log, and answering the new batch with the aborted
    /// original's offsets would acknowledge a record no read_committed consumer ever sees. Such a
    /// batch falls through to the sequence check instead: OUT_OF_ORDER_SEQUENCE_NUMBER, which
    /// librdkafka takes for a fatal desynchronization, so the application starts a new producer.
    fn find_duplicate(
        &self,
        first_seq: i32,
        last_seq: i32,
        transactional: bool,
    ) -> Option<BatchMetadata> {
        let from_offset = if transactional {
            self.current_txn_first_offset?
        } else {
            i64::MIN
        };
        self.batches
            .iter()
            .find(|b| {
                b.first_seq == first_seq
                    && b.last_seq == last_seq
                    && b.first_offset() >= from_offset
            })
            .copied()
    }
}

/// What a leader does with a producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: do not append; answer with the original's offsets.
    Duplicate(BatchMetadata),
}

/// A transaction a marker ended in this partition (Kafka's `CompletedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    /// The transaction's first offset here (the marker's own offset when it had no data here).
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// Why a leader refuses a producer's batch (each maps to one Kafka error code).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProducerStateError {
    /// INVALID_PRODUCER_EPOCH (47): a newer epoch of this producer id has written (the client was
    /// fenced, or this is a zombie).
    #[error(
        "producer {producer_id}: epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45): a gap, or a sequence from before the retained batches.
    #[error(
        "producer {producer_id} epoch {epoch}: base sequence {found} is out of order (expected {expected})"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        found: i32,
    },
    /// INVALID_TXN_STATE (48): a non-transactional batch from a producer with an open transaction.
    #[error("producer {producer_id} sent a non-transactional batch while its transaction from offset {txn_first_offset} is open")]
    InvalidTxnState {
        producer_id: i64,
        txn_first_offset: i64,
    },
    /// TRANSACTION_COORDINATOR_FENCED (52): a marker from a coordinator older than the last one.
    #[error("marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    /// INVALID_TXN_STATE (48): a transactional batch that would open a transaction whose
    /// verification by the coordinator (KIP-890) is no longer current (a marker came in between).
    #[error("producer {producer_id} epoch {producer_epoch}: the partition's addition to the transaction is not verified")]
    NotVerified {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// INVALID_RECORD (87): an idempotent batch must carry a sequence.
    #[error("producer {producer_id} sent a batch with negative base sequence {base_sequence}")]
    InvalidSequence {
        producer_id: i64,
        base_sequence: i32,
    },
}

/// `seq + increment`, wrapping past `i32::MAX` to 0 (Kafka `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(seq: i32, increment: i32) -> i32 {
    if seq > i32::MAX - increment {
        increment - (i32::MAX - seq) - 1
    } else {
        seq + increment
    }
}

/// The state of every producer of a partition. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// The open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
}

impl ProducerState {
    /// The leader's checks on a producer's batch, in the order of Kafka's `ProducerAppendInfo`. The
    /// header's offsets are not used (a producer's batch has none yet).
    pub fn check(&self, h: &BatchHeader) -> Result<Admission, ProducerStateError> {
        let producer_id = h.producer_id;
        if producer_id < 0 {
            return Ok(Admission::Append);
        }
        if h.base_sequence < 0 {
            return Err(ProducerStateError::InvalidSequence {
                producer_id,
                base_sequence: h.base_sequence,
            });
        }
        // Unknown (new, or expired): any sequence starts it.
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(Admission::Append);
        };
        let epoch = h.producer_epoch;
        if epoch < entry.producer_epoch {
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        let first_seq = h.base_sequence;
        let out_of_order = |expected| ProducerStateError::OutOfOrderSequence {
            producer_id,
            epoch,
            expected,
            found: first_seq,
        };
        if epoch > entry.producer_epoch {
            // A bumped epoch (KIP-360) restarts the sequence.
            return if first_seq == 0 {
                Ok(Admission::Append)
            } else {
                Err(out_of_order(0))
            };
        }
        let last_seq = increment_sequence(first_seq, h.last_offset_delta);
        if let Some(original) = entry.find_duplicate(first_seq, last_seq, h.is_transactional()) {
            return Ok(Admission::Duplicate(original));
        }
        if let Some(last) = entry.last_batch() {
            if first_seq != increment_sequence(last.last_seq, 1) {
                return Err(out_of_order(increment_sequence(last.last_seq, 1)));
            }
        }
        Self::check_txn_state(entry, h)
    }

    /// Kafka's `ProducerAppendInfo.appendDataBatch`: inside an open transaction only transactional
    /// batches may follow.
    fn check_txn_state(
        entry: &ProducerEntry,
        h: &BatchHeader,
    ) -> Result<Admission, ProducerStateError> {
        match entry.current_txn_first_offset {
            Some(txn_first_offset) if !h.is_transactional() => {
                Err(ProducerStateError::InvalidTxnState {
                    producer_id: h.producer_id,
                    txn_first_offset,
                })
            }
            _ => Ok(Admission::Append),
        }
    }

    /// The leader's checks on a marker for `producer_id` (Kafka's `ProducerAppendInfo.appendEndTxnMarker`):
    /// a stale producer epoch is INVALID_PRODUCER_EPOCH, a stale coordinator epoch
    /// TRANSACTION_COORDINATOR_FENCED. A producer this partition does not know passes.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerStateError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.producer_epoch {
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id,
                epoch: producer_epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerStateError::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker now in the log at `h.base_offset` (leader or follower alike): the producer's
    /// transaction ends, its coordinator epoch is the marker's, and a marker of a newer producer epoch
    /// starts its batch history anew. Returns the transaction it completed.
    pub fn apply_marker(
        &mut self,
        h: &BatchHeader,
        marker: EndTxnMarker,
        now_ms: i64,
    ) -> CompletedTxn {
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: h.producer_epoch,
                last_update_ms: now_ms,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
                batches: VecDeque::new(),
            });
        entry.last_update_ms = entry.last_update_ms.max(now_ms);
        if entry.producer_epoch != h.producer_epoch {
            entry.producer_epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        let first_offset = match entry.current_txn_first_offset.take() {
            Some(first) => {
                self.ongoing.remove(&first);
                first
            }
            None => h.base_offset,
        };
        CompletedTxn {
            producer_id: h.producer_id,
            first_offset,
            last_offset: h.base_offset,
            aborted: !marker.commit,
        }
    }

    /// The first offset of the earliest open transaction (Kafka's `firstUnstableOffset`, before the
    /// completed transactions that are not yet replicated).
    pub fn first_open_txn_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Every open transaction as (first offset, producer id), earliest first.
    pub fn open_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(&first, &pid)| (first, pid))
    }

    /// Records a data batch now in the log (offsets final), leader or follower alike, at `now_ms`; no
    /// checks. A batch of another epoch than the producer's current one starts its history anew; a
    /// transactional batch opens the producer's transaction if none is open. Control batches are
    /// recorded by [`ProducerState::apply_marker`] instead.
    pub fn update(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        let batch = BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: increment_sequence(h.base_sequence, h.last_offset_delta),
            last_offset: h.last_offset(),
            offset_delta: h.last_offset_delta,
            timestamp: h.max_timestamp,
        };
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: h.producer_epoch,
                last_update_ms: now_ms,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
                batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
            });
        entry.last_update_ms = entry.last_update_ms.max(now_ms);
        if entry.producer_epoch != h.producer_epoch {
            entry.producer_epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == NUM_BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer with its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, entry)| (id, entry))
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Forgets producers last updated `expiration_ms` or more before `now_ms` and with no open
    /// transaction (Kafka's `isProducerExpired`); returns how many.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_update_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The snapshot bytes (see the module docs); producers in id order, so equal states encode equally.
    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let mut body = Vec::with_capacity(4 + ids.len() * (PRODUCER_BYTES + BATCH_BYTES));
        body.extend_from_slice(&(ids.len() as i32).to_be_bytes());
        for id in ids {
            let Some(entry) = self.producers.get(&id) else {
                continue;
            };
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.producer_epoch.to_be_bytes());
            body.extend_from_slice(&entry.last_update_ms.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.extend_from_slice(&(entry.batches.len() as i16).to_be_bytes());
            for b in &entry.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.offset_delta.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses snapshot bytes; the error says what is wrong with them.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err(format!("{} bytes is too short for a snapshot", bytes.len()));
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.i16()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_V1 {
            return Err(format!("unknown snapshot version {version}"));
        }
        let v2 = version == SNAPSHOT_VERSION;
        let stored = r.u32()?;
        let computed = crc32c::crc32c(&bytes[6..]);
        if stored != computed {
            return Err(format!(
                "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let count = r.i32()?;
        let count = usize::try_from(count).map_err(|_| format!("producer count {count}"))?;
        let mut producers = HashMap::with_capacity(count.min(bytes.len() / PRODUCER_BYTES));
        let mut ongoing = BTreeMap::new();
        for _ in 0..count {
            let producer_id = r.i64()?;
            let producer_epoch = r.i16()?;
            let last_update_ms = r.i64()?;
            let (coordinator_epoch, current_txn_first_offset) = if v2 {
                let epoch = r.i32()?;
                let first = r.i64()?;
                (epoch, (first >= 0).then_some(first))
            } else {
                (-1, None)
            };
            let batches = r.i16()?;
            let least = if v2 { 0 } else { 1 };
            if producer_id < 0 || !(least..=NUM_BATCHES_TO_RETAIN as i16).contains(&batches) {
                return Err(format!("producer {producer_id} with {batches} batches"));
            }
            if let Some(first) = current_txn_first_offset {
                if ongoing.insert(first, producer_id).is_some() {
                    return Err(format!("two transactions start at offset {first}"));
                }
            }
            let mut entry = ProducerEntry {
                producer_epoch,
                last_update_ms,
                coordinator_epoch,
                current_txn_first_offset,
                batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
            };
            for _ in 0..batches {
                entry.batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    last_offset: r.i64()?,
                    offset_delta: r.i32()?,
                    timestamp: r.i64()?,
                });
            }
            if producers.insert(producer_id, entry).is_some() {
                return Err(format!("producer {producer_id} appears twice"));
            }
        }
        if r.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - r.at));
        }
        Ok(ProducerState { producers, ongoing })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let chunk = self
            .bytes
            .get(self.at..self.at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        self.at += N;
        Ok(chunk)
    }

    fn i16(&mut self) -> std::result::Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> std::result::Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> std::result::Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

/// `<dir>/<20-digit offset>.snapshot`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    segment_file(dir, offset, SNAPSHOT_SUFFIX)
}

/// The offsets of the snapshot files in `dir`, ascending.
pub fn snapshot_offsets(dir: &Path) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list partition directory", dir))? {
        let entry = entry.map_err(io_error("list partition directory", dir))?;
        if let Some(offset) =
            parse_segment_file(&entry.file_name().to_string_lossy(), SNAPSHOT_SUFFIX)
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes `state` as the snapshot at `offset` (atomically: temp file, fsync, rename).
pub fn write_snapshot(dir: &Path, offset: i64, state: &ProducerState) -> Result<()> {
    checkpoint::write_atomically(&snapshot_path(dir, offset), &state.encode())
}

/// The newest snapshot at or below `at_most` that parses, with its offset. Snapshots that do not
/// parse are deleted with a warning (the caller replays more of the log instead).
pub fn load_latest_snapshot(dir: &Path, at_most: i64) -> Result<Option<(i64, ProducerState)>> {
    for offset in snapshot_offsets(dir)?.into_iter().rev() {
        if offset > at_most {
            continue;
        }
        let path = snapshot_path(dir, offset);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("read producer state snapshot", &path)(e)),
        };
        match ProducerState::decode(&bytes) {
            Ok(state) => return Ok(Some((offset, state))),
            Err(reason) => {
                warn!(snapshot = %path.display(), %reason,
                    "ignoring corrupt producer state snapshot; rebuilding the state from the log");
                checkpoint::remove_if_exists(&path)?;
            }
        }
    }
    Ok(None)
}

/// Deletes the snapshots above `offset` (their batches were truncated away); returns how many.
pub fn delete_snapshots_above(dir: &Path, offset: i64) -> Result<usize> {
    let mut deleted = 0;
    for o in snapshot_offsets(dir)?.into_iter().filter(|o| *o > offset) {
        deleted += usize::from(checkpoint::remove_if_exists(&snapshot_path(dir, o))?);
    }
    Ok(deleted)
}

/// Deletes the snapshots below `offset` (the log start after retention), always keeping the newest
/// one; returns how many.
pub fn delete_snapshots_below(dir: &Path, offset: i64) -> Result<usize> {
    let offsets = snapshot_offsets(dir)?;
    let newest = offsets.last().copied();
    let mut deleted = 0;
    for o in offsets
        .into_iter()
        .filter(|o| *o < offset && Some(*o) != newest)
    {
        deleted += usize::from(checkpoint::remove_if_exists(&snapshot_path(dir, o))?);
    }
    Ok(deleted)
}

/// Deletes every snapshot (the log was emptied).
pub fn delete_all_snapshots(dir: &Path) -> Result<usize> {
    delete_snapshots_above(dir, i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::MAGIC_V2;

    /// A batch header of `records` records from `pid`/`epoch` starting at sequence `seq`, at
    /// `base_offset` (what matters to the producer state).
    fn batch(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: MAGIC_V2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1_000 + base_offset,
            max_timestamp: 1_000 + base_offset,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    /// Checks then records, as a leader does: returns the admission.
    fn leader_append(
        state: &mut ProducerState,
        h: BatchHeader,
    ) -> Result<Admission, ProducerStateError> {
        let admission = state.check(&h)?;
        if admission == Admission::Append {
            state.update(&h, 5_000);
        }
        Ok(admission)
    }

    #[test]
    fn in_order_batches_are_appended_and_remembered() {
        let mut state = ProducerState::default();
        assert_eq!(
            leader_append(&mut state, batch(7, 0, 0, 3, 0)),
            Ok(Admission::Append)
        );
        assert_eq!(
            leader_append(&mut state, batch(7, 0, 3, 2, 3)),
            Ok(Admission::Append)
        );
        let entry = state.get(7).unwrap();
        assert_eq!(entry.producer_epoch, 0);
        let last = *entry.last_batch().unwrap();
        assert_eq!(
            last,
            BatchMetadata {
                first_seq: 3,
                last_seq: 4,
                last_offset: 4,
                offset_delta: 1,
                timestamp: 1_003
            }
        );
        assert_eq!(last.first_offset(), 3);
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_original_offsets() {
        let mut state = ProducerState::default();
        for i in 0..5 {
            leader_append(&mut state, batch(7, 1, i * 2, 2, 100 + i64::from(i) * 2)).unwrap();
        }
        // Any of the five retained batches, retried, is recognised.
        for i in 0..5 {
            match state.check(&batch(7, 1, i * 2, 2, 0)) {
                Ok(Admission::Duplicate(original)) => {
                    assert_eq!(original.first_offset(), 100 + i64::from(i) * 2);
                    assert_eq!(original.last_offset, 101 + i64::from(i) * 2);
                }
                other => panic!("batch {i}: expected a duplicate, got {other:?}"),
            }
        }
        // Same first sequence but another length is not the same batch: out of order.
        assert!(matches!(
            state.check(&batch(7, 1, 8, 1, 0)),
            Err(ProducerStateError::OutOfOrderSequence {
                expected: 10,
                found: 8,
                ..
            })
        ));
        // A sixth batch evicts the oldest; its retry is then out of order, not a duplicate.
        leader_append(&mut state, batch(7, 1, 10, 2, 110)).unwrap();
        assert_eq!(
            state.get(7).unwrap().batches().count(),
            NUM_BATCHES_TO_RETAIN
        );
        assert!(matches!(
            state.check(&batch(7, 1, 0, 2, 0)),
            Err(ProducerStateError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            state.check(&batch(7, 1, 2, 2, 0)),
            Ok(Admission::Duplicate(_))
        ));
    }

    #[test]
    fn a_gap_or_a_repeat_is_out_of_order() {
        let mut state = ProducerState::default();
        leader_append(&mut state, batch(7, 0, 0, 5, 0)).unwrap();
        assert_eq!(
            state.check(&batch(7, 0, 6, 1, 0)),
            Err(ProducerStateError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                expected: 5,
                found: 6
            })
        );
        assert!(state.check(&batch(7, 0, 4, 1, 0)).is_err(), "overlap");
        assert_eq!(state.check(&batch(7, 0, 5, 1, 0)), Ok(Admission::Append));
    }

    #[test]
    fn epochs_fence_old_producers_and_a_bump_restarts_the_sequence() {
        let mut state = ProducerState::default();
        leader_append(&mut state, batch(7, 3, 0, 4, 0)).unwrap();
        assert_eq!(
            state.check(&batch(7, 2, 4, 1, 0)),
            Err(ProducerStateError::InvalidProducerEpoch {
                producer_id: 7,
                epoch: 2,
                current_epoch: 3
            })
        );
        // An old epoch is refused even for a batch that would have been a duplicate.
        assert!(matches!(
            state.check(&batch(7, 2, 0, 4, 0)),
            Err(ProducerStateError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(
            state.check(&batch(7, 4, 4, 1, 0)),
            Err(ProducerStateError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 4,
                expected: 0,
                found: 4
            })
        );
        assert_eq!(
            leader_append(&mut state, batch(7, 4, 0, 1, 4)),
            Ok(Admission::Append)
        );
        let entry = state.get(7).unwrap();
        assert_eq!(entry.producer_epoch, 4);
        assert_eq!(
            entry.batches().count(),
            1,
            "the old epoch's batches are gone"
        );
        assert!(matches!(
            state.check(&batch(7, 3, 4, 1, 0)),
            Err(ProducerStateError::InvalidProducerEpoch { .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
        let mut state = ProducerState::default();
        // Records i32::MAX-1, i32::MAX, 0: the batch's last sequence is 0.
        leader_append(&mut state, batch(7, 0, i32::MAX - 1, 3, 0)).unwrap();
        assert_eq!(state.get(7).unwrap().last_batch().unwrap().last_seq, 0);
        assert!(matches!(
            state.check(&batch(7, 0, i32::MAX - 1, 3, 0)),
            Ok(Admission::Duplicate(_))
        ));
        assert_eq!(state.check(&batch(7, 0, 1, 1, 0)), Ok(Admission::Append));
        // A batch ending exactly at i32::MAX is followed by 0.
        let mut state = ProducerState::default();
        leader_append(&mut state, batch(8, 0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(state.check(&batch(8, 0, 0, 1, 2)), Ok(Admission::Append));
        assert!(state.check(&batch(8, 0, i32::MAX, 1, 2)).is_err());
    }

    #[test]
    fn unknown_producers_start_anywhere_and_plain_batches_are_ignored() {
        let mut state = ProducerState::default();
        assert_eq!(
            leader_append(&mut state, batch(9, 5, 1234, 2, 0)),
            Ok(Admission::Append)
        );
        assert_eq!(state.check(&batch(9, 5, 1236, 1, 2)), Ok(Admission::Append));
        for _ in 0..3 {
            assert_eq!(
                leader_append(&mut state, batch(-1, -1, -1, 4, 0)),
                Ok(Admission::Append)
            );
        }
        assert_eq!(state.len(), 1, "producer id -1 is not tracked");
        assert_eq!(
            state.check(&batch(10, 0, -1, 1, 0)),
            Err(ProducerStateError::InvalidSequence {
                producer_id: 10,
                base_sequence: -1
            })
        );
    }

    #[test]
    fn a_follower_replaying_the_leaders_batches_recognises_retries() {
        let mut leader = ProducerState::default();
        let mut headers = Vec::new();
        let mut offset = 0;
        for (pid, epoch, seq, n) in [(1, 0, 0, 2), (2, 0, 0, 1), (1, 0, 2, 3), (2, 1, 0, 2)] {
            let h = batch(pid, epoch, seq, n, offset);
            assert_eq!(leader_append(&mut leader, h), Ok(Admission::Append));
            headers.push(h);
            offset += i64::from(n);
        }
        let mut follower = ProducerState::default();
        for h in &headers {
            follower.update(h, 5_000);
        }
        assert_eq!(follower, leader);
        // As the new leader, it answers a retry of the last batch with its original offsets.
        match follower.check(&batch(1, 0, 2, 3, 0)) {
            Ok(Admission::Duplicate(original)) => assert_eq!(original.first_offset(), 3),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        assert!(matches!(
            follower.check(&batch(2, 0, 1, 1, 0)),
            Err(ProducerStateError::InvalidProducerEpoch { .. })
        ));
    }

    #[test]
    fn expired_producers_are_forgotten() {
        let mut state = ProducerState::default();
        state.update(&batch(1, 0, 0, 1, 0), 1_000);
        // Batch timestamps do not matter, the replica's clock at the update does.
        state.update(&batch(2, 0, 0, 1, -1_000_000), 51_000);
        assert_eq!(state.remove_expired(41_000, 40_000), 1);
        assert!(state.get(1).is_none() && state.get(2).is_some());
        assert_eq!(state.check(&batch(1, 0, 77, 1, 0)), Ok(Admission::Append));
    }

    fn sample_state() -> ProducerState {
        let mut state = ProducerState::default();
        let mut offset = 0;
        for i in 0..8 {
            state.update(&batch(1, 2, i * 3, 3, offset), 7_000 + offset);
            offset += 3;
        }
        state.update(&batch(5, 0, i32::MAX, 2, offset), 9_000);
        state.update(&batch(1 << 40, i16::MAX, 0, 1, offset + 2), 9_001);
        state
    }

    #[test]
    fn snapshots_round_trip() {
        let state = sample_state();
        let bytes = state.encode();
        assert_eq!(ProducerState::decode(&bytes), Ok(state.clone()));
        assert_eq!(bytes, ProducerState::decode(&bytes).unwrap().encode());
        let empty = ProducerState::default();
        assert_eq!(ProducerState::decode(&empty.encode()), Ok(empty));

        let dir = tempfile::tempdir().unwrap();
        write_snapshot(dir.path(), 30, &state).unwrap();
        write_snapshot(dir.path(), 10, &ProducerState::default()).unwrap();
        assert_eq!(snapshot_offsets(dir.path()).unwrap(), vec![10, 30]);
        assert!(snapshot_path(dir.path(), 30).ends_with("00000000000000000030.snapshot"));
        assert_eq!(
            load_latest_snapshot(dir.path(), 100).unwrap(),
            Some((30, state))
        );
        assert_eq!(
            load_latest_snapshot(dir.path(), 29).unwrap(),
            Some((10, ProducerState::default()))
        );
        assert_eq!(load_latest_snapshot(dir.path(), 9).unwrap(), None);
    }

    #[test]
    fn corrupt_snapshots_are_refused_and_skipped() {
        let bytes = sample_state().encode();
        for at in [0, 3, 7, 12, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(ProducerState::decode(&bad).is_err(), "byte {at} flipped");
        }
        for len in [0, 5, 10, bytes.len() - 1] {
            assert!(
                ProducerState::decode(&bytes[..len]).is_err(),
                "cut at {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ProducerState::decode(&longer).is_err());

        let dir = tempfile::tempdir().unwrap();
        write_snapshot(dir.path(), 10, &ProducerState::default()).unwrap();
        write_snapshot(dir.path(), 20, &sample_state()).unwrap();
        let newest = snapshot_path(dir.path(), 20);
        let mut torn = fs::read(&newest).unwrap();
        torn.truncate(torn.len() / 2);
        fs::write(&newest, torn).unwrap();
        assert_eq!(
            load_latest_snapshot(dir.path(), 100).unwrap(),
            Some((10, ProducerState::default())),
            "falls back to the older snapshot"
        );
        assert!(!newest.exists(), "the corrupt snapshot is deleted");
    }

    /// A transactional data batch (KIP-98).
    fn txn(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..batch(pid, epoch, seq, records, base_offset)
        }
    }

    /// A marker batch header at `offset`.
    fn marker_at(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            base_sequence: -1,
            ..batch(pid, epoch, 0, 1, offset)
        }
    }

    fn end(commit: bool, coordinator_epoch: i32) -> EndTxnMarker {
        EndTxnMarker {
            commit,
            coordinator_epoch,
        }
    }

    #[test]
    fn a_transaction_opens_with_its_first_batch_and_closes_with_its_marker() {
        let mut state = ProducerState::default();
        assert_eq!(
            leader_append(&mut state, txn(7, 0, 0, 2, 10)),
            Ok(Admission::Append)
        );
        assert_eq!(
            leader_append(&mut state, txn(8, 0, 0, 1, 12)),
            Ok(Admission::Append)
        );
        assert_eq!(
            leader_append(&mut state, txn(7, 0, 2, 2, 13)),
            Ok(Admission::Append)
        );
        assert_eq!(state.get(7).unwrap().current_txn_first_offset, Some(10));
        assert_eq!(state.first_open_txn_offset(), Some(10));
        assert_eq!(
            state.open_txns().collect::<Vec<_>>(),
            vec![(10, 7), (12, 8)]
        );
        // A plain batch inside the open transaction is refused; a retry of a transactional one is
        // still a duplicate.
        assert_eq!(
            state.check(&batch(7, 0, 4, 1, 0)),
            Err(ProducerStateError::InvalidTxnState {
                producer_id: 7,
                txn_first_offset: 10
            })
        );
        assert!(matches!(
            state.check(&txn(7, 0, 2, 2, 0)),
            Ok(Admission::Duplicate(_))
        ));
        assert_eq!(state.check_marker(7, 0, 3), Ok(()));
        let done = state.apply_marker(&marker_at(7, 0, 15), end(false, 3), 6_000);
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 7,
                first_offset: 10,
                last_offset: 15,
                aborted: true
            }
        );
        let entry = state.get(7).unwrap();
        assert_eq!(
            (entry.current_txn_first_offset, entry.coordinator_epoch),
            (None, 3)
        );
        assert_eq!(
            entry.batches().count(),
            2,
            "a marker of the same epoch keeps the batches"
        );
        assert_eq!(state.first_open_txn_offset(), Some(12));
        // After the marker a plain batch is fine again, and continues the sequence.
        assert_eq!(state.check(&batch(7, 0, 4, 1, 0)), Ok(Admission::Append));
        // A marker with no transaction here completes an empty one at its own offset.
        let empty = state.apply_marker(&marker_at(9, 0, 16), end(true, 1), 6_000);
        assert_eq!(
            (empty.first_offset, empty.last_offset, empty.aborted),
            (16, 16, false)
        );
        assert_eq!(state.get(9).unwrap().batches().count(), 0);
    }

    #[test]
    fn a_batch_of_an_ended_transaction_is_not_a_duplicate() {
        // The chaos run's lost commit: a record of an aborted transaction reached the log, the
        // client purged it on the abort and sent its sequence again in the next transaction.
        let mut state = ProducerState::default();
        assert_eq!(
            leader_append(&mut state, txn(7, 0, 0, 1, 10)),
            Ok(Admission::Append)
        );
        state.apply_marker(&marker_at(7, 0, 11), end(false, 0), 6_000);
        assert_eq!(
            state.check(&txn(7, 0, 0, 1, 0)),
            Err(ProducerStateError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                expected: 1,
                found: 0
            }),
            "the aborted batch's sequence again is refused, not answered with offset 10"
        );
        // The next transaction continues the sequence; within it a retry is still a duplicate,
        // and so is the retry of a plain idempotent batch after a marker.
        assert_eq!(
            leader_append(&mut state, txn(7, 0, 1, 2, 12)),
            Ok(Admission::Append)
        );
        match state.check(&txn(7, 0, 1, 2, 0)) {
            Ok(Admission::Duplicate(original)) => assert_eq!(original.first_offset(), 12),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        state.apply_marker(&marker_at(7, 0, 14), end(true, 0), 6_000);
        assert_eq!(
            leader_append(&mut state, batch(7, 0, 3, 1, 15)),
            Ok(Admission::Append)
        );
        assert!(matches!(
            state.check(&batch(7, 0, 3, 1, 0)),
            Ok(Admission::Duplicate(_))
        ));
    }

    #[test]
    fn markers_from_a_stale_coordinator_or_producer_epoch_are_fenced() {
        let mut state = ProducerState::default();
        leader_append(&mut state, txn(7, 2, 0, 1, 0)).unwrap();
        state.apply_marker(&marker_at(7, 2, 1), end(true, 5), 6_000);
        assert_eq!(
            state.check_marker(7, 2, 4),
            Err(ProducerStateError::CoordinatorFenced {
                producer_id: 7,
                coordinator_epoch: 4,
                current: 5
            })
        );
        assert!(matches!(
            state.check_marker(7, 1, 5),
            Err(ProducerStateError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(state.check_marker(7, 2, 5), Ok(()));
        assert_eq!(state.check_marker(99, 0, 0), Ok(()), "unknown producer");
        // A marker of a bumped epoch starts the producer's history anew.
        state.apply_marker(&marker_at(7, 3, 2), end(false, 6), 6_000);
        let entry = state.get(7).unwrap();
        assert_eq!((entry.producer_epoch, entry.batches().count()), (3, 0));
    }

    #[test]
    fn producers_with_an_open_transaction_do_not_expire() {
        let mut state = ProducerState::default();
        state.update(&txn(1, 0, 0, 1, 0), 1_000);
        state.update(&batch(2, 0, 0, 1, 1), 1_000);
        assert_eq!(state.remove_expired(100_000, 40_000), 1);
        assert!(state.get(1).is_some() && state.get(2).is_none());
    }

    #[test]
    fn snapshots_carry_open_transactions_and_v1_snapshots_still_load() {
        let mut state = sample_state();
        state.update(&txn(11, 1, 0, 2, 100), 9_500);
        state.apply_marker(&marker_at(12, 4, 102), end(true, 9), 9_600);
        let bytes = state.encode();
        assert_eq!(&bytes[..2], &2i16.to_be_bytes(), "written as version 2");
        let decoded = ProducerState::decode(&bytes).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.first_open_txn_offset(), Some(100));
        assert_eq!(decoded.get(12).unwrap().coordinator_epoch, 9);

        // A version 1 snapshot, as the previous release wrote it: one producer, one batch.
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&7i64.to_be_bytes());
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&5_000i64.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        for v in [0i32, 4] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        body.extend_from_slice(&4i64.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&1_004i64.to_be_bytes());
        let mut v1 = 1i16.to_be_bytes().to_vec();
        v1.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        v1.extend_from_slice(&body);
        let old = ProducerState::decode(&v1).unwrap();
        let entry = old.get(7).unwrap();
        assert_eq!((entry.producer_epoch, entry.coordinator_epoch), (3, -1));
        assert_eq!(entry.current_txn_first_offset, None);
        assert_eq!(entry.last_batch().unwrap().last_offset, 4);
        assert_eq!(old.first_open_txn_offset(), None);
        assert_eq!(old.check(&batch(7, 3, 5, 1, 0)), Ok(Admission::Append));
    }

    #[test]
    fn snapshots_are_deleted_above_a_truncation_and_below_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        for o in [0, 10, 20, 30] {
            write_snapshot(dir.path(), o, &ProducerState::default()).unwrap();
        }
        assert_eq!(delete_snapshots_above(dir.path(), 20).unwrap(), 1);
        assert_eq!(snapshot_offsets(dir.path()).unwrap(), vec![0, 10, 20]);
        assert_eq!(delete_snapshots_below(dir.path(), 10).unwrap(), 1);
        assert_eq!(snapshot_offsets(dir.path()).unwrap(), vec![10, 20]);
        assert_eq!(delete_snapshots_below(dir.path(), 50).unwrap(), 1);
        assert_eq!(
            snapshot_offsets(dir.path()).unwrap(),
            vec![20],
            "the newest stays"
        );
        assert_eq!(delete_all_snapshots(dir.path()).unwrap(), 1);
        assert!(snapshot_offsets(dir.path()).unwrap().is_empty());
    }
}
