//! One segment of a partition log: `<20-digit base offset>.log` holding whole v2 batches exactly as they
//! are served, plus its `.index` and `.timeindex` (see [`super::index`]). Batches arrive already
//! carrying their final offsets; the segment appends them, finds them again by offset (index lookup,
//! then a forward scan of batch headers with positioned reads) or by timestamp, cuts itself at an
//! offset, and re-validates itself batch by batch after a crash.
//!
//! What must stay true: `size` is the end of the last whole, valid batch and nothing is ever read past
//! it; reads return whole batches only (the first one even when it exceeds the byte budget, KIP-74);
//! the data is never held in memory beyond one read's buffer; `max_timestamp` is the segment's largest
//! batch MaxTimestamp (retention trusts it), so a segment that stops being active gets a final time
//! index entry carrying it. The `.log` file is open only while the broker-wide
//! [`super::file_cache::FileCache`] keeps it so: every operation takes its handle for its own duration
//! (reopening the file if the cache closed it), and the group commit's fsync outside the log's lock
//! holds the handle it syncs, which the cache therefore cannot close under it.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use tracing::warn;

use super::batch::{
    self, BatchError, BatchHeader, RecordBatch, TimestampType, HEADER_BYTES, NO_TIMESTAMP,
};
use super::config::LogConfig;
use super::error::{io_error, LogError, Result};
use super::file_cache::{CachedFile, Durability, FileCache, FileHandle};
use super::index::{relative_offset, OffsetIndex, TimeIndex};
use super::now_ms;

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// `<dir>/<20-digit base offset><suffix>`.
pub fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// The base offset named by a segment file name with `suffix`, if it is one.
pub fn parse_segment_file(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().filter(|o: &i64| *o >= 0)
}

/// A record found by timestamp or the record with the largest timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
    /// The leader epoch of the batch holding the record (`None` for an unstamped batch).
    pub leader_epoch: Option<i32>,
}

/// What reading a batch header at a position found.
enum HeaderAt {
    Batch(BatchHeader),
    /// Exactly at the end.
    End,
    /// Fewer bytes than a whole batch before the end.
    Partial,
    Invalid(BatchError),
}

#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// The `.log` file, open only while the broker-wide [`FileCache`] keeps it open.
    file: CachedFile,
    /// Bytes of whole, valid batches; the file is never read past this.
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Offset after the last batch (`base_offset` when empty).
    next_offset: i64,
    /// Largest batch MaxTimestamp, and the base offset of the first batch carrying it.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// MaxTimestamp of the first batch: the segment's age for `segment.ms`.
    first_batch_timestamp: Option<i64>,
    /// Wall-clock creation (or load) time, used for age when the first batch has no timestamp.
    created_ms: i64,
    bytes_since_last_index_entry: u64,
    /// Why the end of the file could not be read as whole batches at open (needs recovery).
    tail_damage: Option<String>,
}

impl LogSegment {
    /// Creates an empty segment (its files are created or emptied).
    pub fn create(dir: &Path, base_offset: i64) -> Result<Self> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let file = FileCache::global()
            .with_room(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&log_path)
            })
            .map_err(io_error("create segment", &log_path))?;
        let file = CachedFile::with_open(FileCache::global(), &log_path, file, Durability::Data);
        let offset_index =
            OffsetIndex::create(&segment_file(dir, base_offset, INDEX_SUFFIX), base_offset);
        let time_index = TimeIndex::create(
            &segment_file(dir, base_offset, TIME_INDEX_SUFFIX),
            base_offset,
        );
        Ok(LogSegment {
            base_offset,
            log_path,
            file,
            size: 0,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms: now_ms(),
            bytes_since_last_index_entry: 0,
            tail_damage: None,
        })
    }

    /// Opens an existing segment. Damaged or missing indexes are rebuilt from the log; a tail that is
    /// not whole batches is reported by [`LogSegment::tail_damage`] (the caller runs
    /// [`LogSegment::recover`]). `next_segment_base` bounds the index checks.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        next_segment_base: Option<i64>,
        config: &LogConfig,
    ) -> Result<Self> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let time_index_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        let indexes_existed = index_path.exists() && time_index_path.exists();
        let file = FileCache::global()
            .with_room(|| OpenOptions::new().read(true).write(true).open(&log_path))
            .map_err(io_error("open segment", &log_path))?;
        let size = file
            .metadata()
            .map_err(io_error("stat segment", &log_path))?
            .len();
        let file = CachedFile::with_open(FileCache::global(), &log_path, file, Durability::Data);
        let mut segment = LogSegment {
            base_offset,
            log_path,
            file,
            size,
            offset_index: OffsetIndex::open(&index_path, base_offset)?,
            time_index: TimeIndex::open(&time_index_path, base_offset)?,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms: now_ms(),
            bytes_since_last_index_entry: 0,
            tail_damage: None,
        };
        let damage = if !indexes_existed && size > 0 {
            Some("index files missing".to_string())
        } else if segment.time_index.is_empty() && !segment.offset_index.is_empty() {
            Some("time index empty but offset index is not".to_string())
        } else {
            segment
                .offset_index
                .check(size, next_segment_base)
                .or_else(|| segment.time_index.check(size, next_segment_base))
        };
        match damage {
            Some(reason) => {
                if indexes_existed {
                    warn!(segment = %segment.log_path.display(), %reason, "rebuilding segment indexes");
                } else {
                    // An index file is created by its first entry: a segment whose data has not
                    // reached `index.interval.bytes` has none, and scanning it is short.
                    tracing::debug!(segment = %segment.log_path.display(), %reason, "rebuilding segment indexes");
                }
                // A bad tail stops the rebuild there; cutting it is recovery's business.
                segment.tail_damage = segment.rebuild(config, false, &mut |_| {})?;
            }
            None => segment.load_tail()?,
        }
        if segment.size > 0 {
            let file = segment.handle()?;
            if let HeaderAt::Batch(h) = segment.header_at(&file, 0, segment.size)? {
                segment.first_batch_timestamp = Some(h.max_timestamp);
            }
        }
        Ok(segment)
    }

    /// Recomputes the end offset, max timestamp and index cadence from the last offset index entry
    /// to the end of the data (a bounded scan), noting a damaged tail.
    fn load_tail(&mut self) -> Result<()> {
        // One handle for the scan: the cache's lock is taken once, not per batch header.
        let file = self.handle()?;
        let start = self.offset_index.last();
        let mut pos = start.map(|e| u64::from(e.position)).unwrap_or(0);
        if let Some(t) = self.time_index.last() {
            self.max_timestamp = t.timestamp;
            self.offset_of_max_timestamp = t.offset;
        }
        self.next_offset = self.base_offset;
        self.tail_damage = None;
        loop {
            match self.header_at(&file, pos, self.size)? {
                HeaderAt::Batch(h) => {
                    self.observe_timestamp(&h);
                    self.next_offset = h.next_offset();
                    pos += h.total_size() as u64;
                }
                HeaderAt::End => break,
                HeaderAt::Partial => {
                    self.tail_damage = Some(format!("partial batch at byte {pos}"));
                    self.size = pos;
                    break;
                }
                HeaderAt::Invalid(e) => {
                    self.tail_damage = Some(format!("invalid batch at byte {pos}: {e}"));
                    self.size = pos;
                    break;
                }
            }
        }
        // Bytes indexed since the last entry: the entry's batch onward (Kafka restarts the count; this
        // keeps the cadence close to what an uninterrupted append would have produced).
        self.bytes_since_last_index_entry =
            pos.saturating_sub(start.map(|e| u64::from(e.position)).unwrap_or(0));
        Ok(())
    }

    fn observe_timestamp(&mut self, h: &BatchHeader) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
    }

    /// Reads and frames the batch header at `pos`, never past `limit`.
    fn header_at(&self, file: &FileHandle, pos: u64, limit: u64) -> Result<HeaderAt> {
        if pos >= limit {
            return Ok(HeaderAt::End);
        }
        if limit - pos < HEADER_BYTES as u64 {
            return Ok(HeaderAt::Partial);
        }
        let mut raw = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut raw, pos)
            .map_err(io_error("read segment", &self.log_path))?;
        Ok(match BatchHeader::parse(&raw) {
            Ok(h) if pos + h.total_size() as u64 > limit => HeaderAt::Partial,
            Ok(h) => HeaderAt::Batch(h),
            Err(e) => HeaderAt::Invalid(e),
        })
    }

    fn corrupt(&self, pos: u64, reason: impl std::fmt::Display) -> LogError {
        LogError::Corrupt {
            path: self.log_path.clone(),
            reason: format!("at byte {pos}: {reason}"),
        }
    }

    /// The open data file, reopened if the cache closed it; held for one operation.
    fn handle(&self) -> Result<Arc<FileHandle>> {
        self.file
            .handle()
            .map_err(io_error("open segment", &self.log_path))
    }

    fn read_at(&self, file: &FileHandle, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, pos)
            .map_err(io_error("read segment", &self.log_path))?;
        Ok(buf)
    }

    /// Resets the indexes and re-reads the log from the start: frames every batch (and checks its CRC
    /// when `check_crc`), requires offsets to increase and fit the segment, rebuilds both indexes and
    /// hands each valid header to `on_batch`. Stops at the first bad byte and returns why; `size` is
    /// then the end of the last good batch.
    fn rebuild(
        &mut self,
        config: &LogConfig,
        check_crc: bool,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<Option<String>> {
        let file = self.handle()?;
        let file_len = file
            .metadata()
            .map_err(io_error("stat segment", &self.log_path))?
            .len();
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.next_offset = self.base_offset;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = self.base_offset;
        self.first_batch_timestamp = None;
        self.bytes_since_last_index_entry = 0;
        let mut pos = 0u64;
        let stop = loop {
            let h = match self.header_at(&file, pos, file_len)? {
                HeaderAt::Batch(h) => h,
                HeaderAt::End => break None,
                HeaderAt::Partial => break Some(format!("partial batch at byte {pos}")),
                HeaderAt::Invalid(e) => break Some(format!("invalid batch at byte {pos}: {e}")),
            };
            if h.base_offset < self.next_offset
                || h.last_offset_delta < 0
                || relative_offset(self.base_offset, h.last_offset()).is_none()
            {
                break Some(format!(
                    "batch at byte {pos} has offsets {}..={} out of order after {}",
                    h.base_offset,
                    h.last_offset(),
                    self.next_offset
                ));
            }
            if check_crc {
                let raw = Bytes::from(self.read_at(&file, pos, h.total_size())?);
                if let Err(e) = RecordBatch::parse(raw) {
                    break Some(format!("invalid batch at byte {pos}: {e}"));
                }
            }
            self.index_batch(&h, pos, config)?;
            on_batch(&h);
            self.next_offset = h.next_offset();
            pos += h.total_size() as u64;
        };
        self.size = pos;
        Ok(stop)
    }

    /// Crash recovery (Kafka `LogSegment.recover`): re-validates every batch (length, magic, CRC,
    /// increasing offsets), rebuilds the indexes, cuts the file at the first invalid byte and fsyncs.
    /// `on_batch` sees each valid batch (the epoch cache is rebuilt from it). Returns the number of
    /// bytes cut off.
    pub fn recover(
        &mut self,
        config: &LogConfig,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<u64> {
        let file = self.handle()?;
        let file_len = file
            .metadata()
            .map_err(io_error("stat segment", &self.log_path))?
            .len();
        let stop = self.rebuild(config, true, on_batch)?;
        let cut = file_len.saturating_sub(self.size);
        if cut > 0 {
            warn!(
                segment = %self.log_path.display(),
                valid_bytes = self.size,
                cut_bytes = cut,
                reason = stop.as_deref().unwrap_or("trailing bytes"),
                "truncating segment at the first invalid byte"
            );
            file.set_len(self.size)
                .map_err(io_error("truncate segment", &self.log_path))?;
        }
        if self.size > 0 {
            if let HeaderAt::Batch(h) = self.header_at(&file, 0, self.size)? {
                self.first_batch_timestamp = Some(h.max_timestamp);
            }
        }
        self.tail_damage = None;
        self.flush()?;
        Ok(cut)
    }

    /// Updates the indexes for a batch written at `pos`.
    fn index_batch(&mut self, h: &BatchHeader, pos: u64, config: &LogConfig) -> Result<()> {
        self.observe_timestamp(h);
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(h.max_timestamp);
        }
        if self.bytes_since_last_index_entry > config.index_interval_bytes {
            // Positions fit in u32: segments roll before 2 GiB.
            let position = u32::try_from(pos).unwrap_or(u32::MAX);
            self.offset_index.append(h.base_offset, position)?;
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.total_size() as u64;
        Ok(())
    }

    /// Whether a batch of `batch_bytes` ending at `last_offset` with MaxTimestamp `max_timestamp` must
    /// go to a new segment, when `pending_bytes` are about to be appended before it. An empty segment
    /// never rolls.
    pub fn should_roll(
        &self,
        pending_bytes: u64,
        batch_bytes: usize,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
        config: &LogConfig,
    ) -> bool {
        if self.size + pending_bytes == 0 {
            return false;
        }
        let new_size = self.size + pending_bytes + batch_bytes as u64;
        // Kafka's rule: age is the incoming batch's timestamp minus the first batch's, or wall-clock
        // time since creation when the first batch has none.
        let age_ms = match self.first_batch_timestamp {
            Some(first) if first >= 0 => max_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        };
        new_size > config.segment_bytes
            || new_size > i32::MAX as u64
            || age_ms > config.segment_ms
            || self.offset_index.len() >= config.max_index_entries()
            || relative_offset(self.base_offset, last_offset).is_none()
    }

    /// Appends whole batches (their bytes concatenated in `data`, their parsed headers in `headers`,
    /// in order) at the end of the segment. On a failed write the file is cut back so no partial batch
    /// stays visible.
    pub fn append(
        &mut self,
        data: &[u8],
        headers: &[BatchHeader],
        config: &LogConfig,
    ) -> Result<()> {
        let start = self.size;
        let file = self.handle()?;
        if let Err(e) = file.write_all_at(data, start) {
            let _ = file.set_len(start);
            return Err(io_error("write segment", &self.log_path)(e));
        }
        let mut pos = start;
        for h in headers {
            self.index_batch(h, pos, config)?;
            pos += h.total_size() as u64;
            self.next_offset = h.next_offset();
        }
        self.size = start + data.len() as u64;
        Ok(())
    }

    /// Calls `f` with every batch header, in order.
    pub fn for_each_batch(&self, f: &mut dyn FnMut(&BatchHeader)) -> Result<()> {
        let file = self.handle()?;
        let mut pos = 0;
        loop {
            match self.header_at(&file, pos, self.size)? {
                HeaderAt::Batch(h) => {
                    f(&h);
                    pos += h.total_size() as u64;
                }
                HeaderAt::End => return Ok(()),
                HeaderAt::Partial => return Err(self.corrupt(pos, "partial batch")),
                HeaderAt::Invalid(e) => return Err(self.corrupt(pos, e)),
            }
        }
    }

    /// The first batch whose last offset is ≥ `offset`, with its position, or `None` when the segment
    /// ends before `offset`.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let file = self.handle()?;
        self.find_batch_in(&file, offset)
    }

    fn find_batch_in(&self, file: &FileHandle, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let start = u64::from(self.offset_index.lookup(offset).position);
        match self.scan_for(file, offset, start) {
            Err(LogError::Corrupt { reason, .. }) if start > 0 => {
                // The index pointed somewhere that is not a batch boundary: scan from the start.
                warn!(segment = %self.log_path.display(), %reason, "offset index misled a scan; rescanning");
                self.scan_for(file, offset, 0)
            }
            other => other,
        }
    }

    fn scan_for(
        &self,
        file: &FileHandle,
        offset: i64,
        mut pos: u64,
    ) -> Result<Option<(u64, BatchHeader)>> {
        loop {
            match self.header_at(file, pos, self.size)? {
                HeaderAt::Batch(h) if h.last_offset() >= offset => return Ok(Some((pos, h))),
                HeaderAt::Batch(h) => pos += h.total_size() as u64,
                HeaderAt::End => return Ok(None),
                HeaderAt::Partial => return Err(self.corrupt(pos, "partial batch")),
                HeaderAt::Invalid(e) => return Err(self.corrupt(pos, e)),
            }
        }
    }

    /// Whole batches starting with the one holding `offset`: as many as fit in `max_bytes`, but always
    /// the first (KIP-74), and only batches that end below `upper_bound_offset`. `None` when the
    /// segment ends before `offset`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound_offset: i64,
    ) -> Result<Option<Bytes>> {
        let file = self.handle()?;
        let Some((pos, first)) = self.find_batch_in(&file, offset)? else {
            return Ok(None);
        };
        if first.last_offset() >= upper_bound_offset {
            return Ok(Some(Bytes::new()));
        }
        let want = (max_bytes.max(first.total_size()) as u64).min(self.size - pos) as usize;
        let mut buf = self.read_at(&file, pos, want)?;
        // Cut at the last whole batch below the bound.
        let mut cut = 0usize;
        while let Some(total) = buf.get(cut..).and_then(BatchHeader::peek_total_size) {
            if cut + total > buf.len() {
                break;
            }
            match BatchHeader::parse(&buf[cut..]) {
                Ok(h) if h.last_offset() < upper_bound_offset => cut += total,
                _ => break,
            }
        }
        buf.truncate(cut);
        Ok(Some(Bytes::from(buf)))
    }

    /// The first record at or after `min_offset` whose timestamp is ≥ `timestamp`: the time index
    /// gives a starting batch, then batch headers are scanned. Within an uncompressed batch the
    /// record headers give the exact record; within a compressed batch the answer is the batch's
    /// first offset (reads do not decompress) with the batch MaxTimestamp.
    pub fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<TimestampOffset>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let from = self
            .time_index
            .lookup(timestamp)
            .map(|e| e.offset)
            .unwrap_or(self.base_offset)
            .max(min_offset);
        let file = self.handle()?;
        let Some((mut pos, mut h)) = self.find_batch_in(&file, from)? else {
            return Ok(None);
        };
        loop {
            if h.max_timestamp >= timestamp && h.last_offset() >= min_offset {
                if let Some(found) =
                    self.record_in_batch(&file, pos, &h, min_offset, |ts| ts >= timestamp)?
                {
                    return Ok(Some(found));
                }
            }
            pos += h.total_size() as u64;
            match self.header_at(&file, pos, self.size)? {
                HeaderAt::Batch(next) => h = next,
                HeaderAt::End => return Ok(None),
                HeaderAt::Partial => return Err(self.corrupt(pos, "partial batch")),
                HeaderAt::Invalid(e) => return Err(self.corrupt(pos, e)),
            }
        }
    }

    /// The record carrying the segment's largest timestamp.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        if self.size == 0 || self.max_timestamp == NO_TIMESTAMP {
            return Ok(None);
        }
        let file = self.handle()?;
        let Some((pos, h)) = self.find_batch_in(&file, self.offset_of_max_timestamp)? else {
            return Ok(None);
        };
        let max = self.max_timestamp;
        self.record_in_batch(&file, pos, &h, h.base_offset, |ts| ts == max)
    }

    /// The first record of the batch at `pos` at or after `min_offset` whose timestamp satisfies
    /// `wanted`. Compressed and LogAppendTime batches answer at batch level (see
    /// [`LogSegment::find_offset_by_timestamp`]).
    fn record_in_batch(
        &self,
        file: &FileHandle,
        pos: u64,
        h: &BatchHeader,
        min_offset: i64,
        wanted: impl Fn(i64) -> bool,
    ) -> Result<Option<TimestampOffset>> {
        let found = |offset: i64, timestamp: i64| TimestampOffset {
            offset,
            timestamp,
            leader_epoch: h.leader_epoch(),
        };
        let batch_level = || {
            let offset = h.base_offset.max(min_offset);
            (offset <= h.last_offset() && wanted(h.max_timestamp))
                .then(|| found(offset, h.max_timestamp))
        };
        if h.timestamp_type() == TimestampType::LogAppendTime {
            return Ok(batch_level());
        }
        let raw = self.read_at(file, pos, h.total_size())?;
        match batch::record_timestamps(h, raw.get(HEADER_BYTES..).unwrap_or(&[])) {
            Some(records) => Ok(records
                .into_iter()
                .find(|(off, ts)| *off >= min_offset && wanted(*ts))
                .map(|(off, ts)| found(off, ts))),
            None => Ok(batch_level()),
        }
    }

    /// Cuts the segment before the batch holding `offset` (whole batches only) and fsyncs. Returns the
    /// bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let Some((pos, h)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.handle()?
            .set_len(pos)
            .map_err(io_error("truncate segment", &self.log_path))?;
        self.size = pos;
        self.offset_index.truncate_to(h.base_offset)?;
        self.time_index.truncate_to(h.base_offset)?;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = self.base_offset;
        self.load_tail()?;
        if self.size == 0 {
            self.first_batch_timestamp = None;
        }
        self.flush()?;
        Ok(removed)
    }

    /// The segment stops being the active one: record its final max timestamp in the time index and
    /// make data and indexes durable.
    pub fn seal(&mut self) -> Result<()> {
        if self.size > 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
        }
        self.flush()
    }

    /// fsyncs data and indexes.
    pub fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(io_error("fsync segment", &self.log_path))?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Every whole batch of the segment (the cleaner reads closed segments whole).
    pub fn read_all(&self) -> Result<Bytes> {
        let file = self.handle()?;
        Ok(Bytes::from(self.read_at(&file, 0, self.size as usize)?))
    }

    /// The data file, for an fsync outside the log's lock (group commit); `None` when the cache
    /// closed it, which it does only to a file with nothing left to fsync.
    pub fn data_file(&self) -> Option<Arc<FileHandle>> {
        self.file.open_handle()
    }

    /// Removes the segment's files (its aborted-transactions index too).
    pub fn delete_files(&self) -> Result<()> {
        let txn_index = self.log_path.with_extension("txnindex");
        for path in [
            self.offset_index.path(),
            self.time_index.path(),
            txn_index.as_path(),
            self.log_path.as_path(),
        ] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("delete segment file", path)(e)),
            }
        }
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The timestamp retention compares with `retention.ms`: the largest batch timestamp, or the file's
    /// modification time when no batch carries one (Kafka's rule).
    pub fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp > NO_TIMESTAMP {
            return self.max_timestamp;
        }
        // From the path: an idle segment's file need not be opened for it.
        fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or_else(now_ms)
    }

    pub fn tail_damage(&self) -> Option<&str> {
        self.tail_damage.as_deref()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    #[cfg(test)]
    pub(crate) fn index_entries(&self) -> (usize, usize) {
        (self.offset_index.len(), self.time_index.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_support::*;

    fn small_index_config() -> LogConfig {
        LogConfig {
            index_interval_bytes: 200,
            ..LogConfig::default()
        }
    }

    /// Appends `count` leader batches of `per` records each with increasing timestamps starting at
    /// `ts0`; returns the bytes of each batch.
    fn fill(
        segment: &mut LogSegment,
        config: &LogConfig,
        count: usize,
        per: usize,
        ts0: i64,
    ) -> Vec<Bytes> {
        let mut out = Vec::new();
        for _ in 0..count {
            let base = segment.next_offset();
            let timestamps: Vec<i64> = (0..per as i64).map(|i| ts0 + base + i).collect();
            let bytes = leader_batch(base, 1, &timestamps);
            let h = BatchHeader::parse(&bytes).unwrap();
            segment.append(&bytes, &[h], config).unwrap();
            out.push(bytes);
        }
        out
    }

    #[test]
    fn file_names() {
        let dir = Path::new("/x");
        let path = segment_file(dir, 42, LOG_SUFFIX);
        assert_eq!(path, Path::new("/x/00000000000000000042.log"));
        assert_eq!(
            parse_segment_file("00000000000000000042.log", LOG_SUFFIX),
            Some(42)
        );
        assert_eq!(
            parse_segment_file("00000000000000000042.index", LOG_SUFFIX),
            None
        );
        assert_eq!(parse_segment_file("42.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_segment_file("0000000000000000004x.log", LOG_SUFFIX),
            None
        );
    }

    #[test]
    fn reads_from_the_middle_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_index_config();
        let mut segment = LogSegment::create(dir.path(), 0).unwrap();
        let batches = fill(&mut segment, &config, 40, 3, 1000);
        assert_eq!(segment.next_offset(), 120);
        let (entries, _) = segment.index_entries();
        assert!(entries > 5, "the index must be used, got {entries} entries");

        // Offset 61 is inside batch 20 (offsets 60..=62).
        let bytes = segment.read(61, 1, i64::MAX).unwrap().unwrap();
        assert_eq!(
            bytes, batches[20],
            "KIP-74: one whole batch even past max_bytes"
        );
        let bytes = segment
            .read(60, batches[20].len() * 3 + 10, i64::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(bytes.len(), batches[20].len() * 3, "only whole batches");
        // The upper bound excludes a batch that crosses it.
        let bytes = segment.read(60, 1 << 20, 66).unwrap().unwrap();
        assert_eq!(bytes.len(), batches[20].len() * 2);
        assert_eq!(segment.read(60, 1 << 20, 61).unwrap().unwrap().len(), 0);
        assert_eq!(segment.read(120, 1 << 20, i64::MAX).unwrap(), None);
    }

    #[test]
    fn finds_offsets_by_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_index_config();
        let mut segment = LogSegment::create(dir.path(), 0).unwrap();
        // Two records per batch; the record at offset o has timestamp 1000 + o.
        fill(&mut segment, &config, 30, 2, 1000);
        let found = segment.find_offset_by_timestamp(1031, 0).unwrap().unwrap();
        assert_eq!(
            (found.offset, found.timestamp, found.leader_epoch),
            (31, 1031, Some(1))
        );
        let found = segment.find_offset_by_timestamp(0, 0).unwrap().unwrap();
        assert_eq!(found.offset, 0);
        let found = segment.find_offset_by_timestamp(0, 7).unwrap().unwrap();
        assert_eq!(found.offset, 7, "never below the minimum offset");
        assert_eq!(segment.find_offset_by_timestamp(5000, 0).unwrap(), None);
        let max = segment.offset_of_max_timestamp().unwrap().unwrap();
        assert_eq!((max.offset, max.timestamp), (59, 1059));
    }

    #[test]
    fn reopens_with_and_without_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_index_config();
        let mut segment = LogSegment::create(dir.path(), 100).unwrap();
        // Base offsets start at 100.
        for i in 0..20 {
            let bytes = leader_batch(100 + i * 2, 1, &[5000 + i, 5000 + i]);
            let h = BatchHeader::parse(&bytes).unwrap();
            segment.append(&bytes, &[h], &config).unwrap();
        }
        segment.seal().unwrap();
        let entries = segment.index_entries();
        drop(segment);

        let segment = LogSegment::open(dir.path(), 100, None, &config).unwrap();
        assert_eq!(segment.next_offset(), 140);
        assert_eq!(segment.max_timestamp(), 5019);
        assert_eq!(segment.index_entries(), entries);
        assert!(segment.tail_damage().is_none());
        drop(segment);

        // Missing index: rebuilt from the log.
        fs::remove_file(segment_file(dir.path(), 100, INDEX_SUFFIX)).unwrap();
        let segment = LogSegment::open(dir.path(), 100, None, &config).unwrap();
        assert_eq!(segment.next_offset(), 140);
        assert_eq!(segment.index_entries().0, entries.0);
        drop(segment);

        // Damaged index (an entry pointing past the log end): rebuilt.
        let index = segment_file(dir.path(), 100, INDEX_SUFFIX);
        let mut raw = fs::read(&index).unwrap();
        let n = raw.len();
        raw[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        fs::write(&index, &raw).unwrap();
        let segment = LogSegment::open(dir.path(), 100, None, &config).unwrap();
        assert_eq!(segment.index_entries().0, entries.0);
        let found = segment.read(131, 1, i64::MAX).unwrap().unwrap();
        assert_eq!(BatchHeader::parse(&found).unwrap().base_offset, 130);
    }

    #[test]
    fn recovery_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_index_config();
        let mut segment = LogSegment::create(dir.path(), 0).unwrap();
        let batches = fill(&mut segment, &config, 10, 2, 0);
        let good = segment.size();
        drop(segment);
        let path = segment_file(dir.path(), 0, LOG_SUFFIX);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(good - 5).unwrap();
        drop(file);

        let mut segment = LogSegment::open(dir.path(), 0, None, &config).unwrap();
        assert!(segment.tail_damage().is_some());
        let mut seen = Vec::new();
        let cut = segment
            .recover(&config, &mut |h| seen.push(h.base_offset))
            .unwrap();
        let last_len = batches[9].len() as u64;
        assert_eq!(cut, last_len - 5);
        assert_eq!(segment.size(), good - last_len);
        assert_eq!(segment.next_offset(), 18);
        assert_eq!(seen.len(), 9);
        assert_eq!(fs::metadata(&path).unwrap().len(), good - last_len);
    }

    #[test]
    fn recovery_cuts_garbage_and_bad_crc() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_index_config();
        let mut segment = LogSegment::create(dir.path(), 0).unwrap();
        let batches = fill(&mut segment, &config, 6, 2, 0);
        let good = segment.size();
        drop(segment);
        let path = segment_file(dir.path(), 0, LOG_SUFFIX);

        // A well-framed batch whose payload is damaged, then noise.
        let mut raw = fs::read(&path).unwrap();
        let mut bad = leader_batch(12, 1, &[1, 2]).to_vec();
        let n = bad.len();
        bad[n - 2] ^= 0x55;
        raw.extend_from_slice(&bad);
        raw.extend_from_slice(&[0xab; 100]);
        fs::write(&path, &raw).unwrap();

        let mut segment = LogSegment::open(dir.path(), 0, None, &config).unwrap();
        let cut = segment.recover(&config, &mut |_| {}).unwrap();
        assert_eq!(cut, (bad.len() + 100) as u64);
        assert_eq!(segment.size(), good);
        assert_eq!(segment.next_offset(), 12);
        assert_eq!(segment.read(10, 1, i64::MAX).unwrap().unwrap(), batches[5]);
    }

    #[test]
    fn truncation_cuts_whole_batches_and_trims_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_index_config();
        let mut segment = LogSegment::create(dir.path(), 0).unwrap();
        let batches = fill(&mut segment, &config, 30, 2, 0);
        let removed = segment.truncate_to(21).unwrap();
        // Offset 21 is in the batch 20..=21: it goes too.
        assert_eq!(segment.next_offset(), 20);
        let kept: usize = batches[..10].iter().map(|b| b.len()).sum();
        assert_eq!(segment.size(), kept as u64);
        assert_eq!(
            removed as usize,
            batches[10..].iter().map(|b| b.len()).sum::<usize>()
        );
        assert_eq!(segment.max_timestamp(), 19);
        assert_eq!(segment.read(20, 1 << 20, i64::MAX).unwrap(), None);
        assert_eq!(
            segment.read(18, 1 << 20, i64::MAX).unwrap().unwrap(),
            batches[9]
        );
        drop(segment);
        let segment = LogSegment::open(dir.path(), 0, None, &config).unwrap();
        assert_eq!(segment.next_offset(), 20);
        assert!(segment.tail_damage().is_none());
    }

    #[test]
    fn rolls_on_size_age_and_offset_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1000,
            segment_ms: 60_000,
            ..LogConfig::default()
        };
        let mut segment = LogSegment::create(dir.path(), 0).unwrap();
        assert!(
            !segment.should_roll(0, 5000, 0, 0, 0, &config),
            "empty segments never roll"
        );
        assert!(
            segment.should_roll(600, 600, 1, 0, 0, &config),
            "pending bytes count"
        );
        let bytes = leader_batch(0, 1, &[1_000_000]);
        segment
            .append(&bytes, &[BatchHeader::parse(&bytes).unwrap()], &config)
            .unwrap();
        assert!(!segment.should_roll(0, 100, 1, 1_000_000, 0, &config));
        assert!(
            segment.should_roll(0, 1000, 1, 1_000_000, 0, &config),
            "size"
        );
        assert!(
            segment.should_roll(0, 100, 1, 1_000_000 + 60_001, 0, &config),
            "age"
        );
        assert!(
            segment.should_roll(0, 100, i64::from(i32::MAX) + 1, 1_000_000, 0, &config),
            "offsets"
        );
    }
}
