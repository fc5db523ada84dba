//! The sparse indexes kept next to each segment, in Kafka's file formats: the offset index
//! (`.index`, 8-byte entries: relative offset u32 BE, file position u32 BE) and the time index
//! (`.timeindex`, 12-byte entries: timestamp i64 BE, relative offset u32 BE). They are small (one entry
//! per `index.interval.bytes` of log), so each is held in memory and its file only appended to; the
//! log data itself is never held in memory.
//!
//! What must stay true: an index only speeds up a scan, it never decides an answer. A lookup returns
//! a batch at or before the one wanted and the segment scans forward from there, so an index that is
//! short (entries lost in a crash) is still correct; one that is damaged (wrong size, not monotonic,
//! pointing past the log) is detected by [`OffsetIndex::check`]/[`TimeIndex::check`] and rebuilt from
//! the log by the segment. Offset entries name a batch's base offset and its position; a time entry
//! `(T, O)` says the batch at `O` is the first in the segment whose MaxTimestamp reached `T`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{io_error, Result};
use super::file_cache::{CachedFile, Durability, FileCache, FileHandle};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// A file of fixed-size entries that is only appended to or cut. Its descriptor is opened on the
/// first write, not before: the entries are in memory, so the index of a segment that takes no
/// writes (every idle partition, and every segment but the active one) holds no descriptor, and a
/// broker's descriptors grow with its busy partitions, not with all of them (issue #18). Once written,
/// it is kept open by the broker-wide [`FileCache`], which closes it again when it is idle, fsynced or
/// not ([`Durability::Hint`]: an index never decides an answer, see the module).
#[derive(Debug)]
struct EntryFile {
    path: PathBuf,
    /// Set once something was written or cut through it; open while the cache keeps it so.
    file: Option<CachedFile>,
    entry_bytes: usize,
    entries: usize,
    /// The file holds exactly `entries` entries: nothing torn or extra to cut.
    exact: bool,
}

impl EntryFile {
    /// Opens (creating if missing), reads the raw contents and closes it again.
    fn open(path: &Path, entry_bytes: usize) -> Result<(Self, Vec<u8>)> {
        let mut file = Self::open_file(path)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)
            .map_err(io_error("read index", path))?;
        let entries = raw.len() / entry_bytes;
        Ok((
            EntryFile {
                path: path.to_path_buf(),
                file: None,
                entry_bytes,
                entries,
                exact: raw.len() == entries * entry_bytes,
            },
            raw,
        ))
    }

    /// The file of a new segment's index, not created until its first write (one inode less per new
    /// log: creating files is most of what creating a partition costs, issue #18). Whatever a file of
    /// the same name holds is cut by that first write.
    fn create(path: &Path, entry_bytes: usize) -> EntryFile {
        EntryFile {
            path: path.to_path_buf(),
            file: None,
            entry_bytes,
            entries: 0,
            exact: false,
        }
    }

    fn open_file(path: &Path) -> Result<File> {
        FileCache::global()
            .with_room(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
            })
            .map_err(io_error("open index", path))
    }

    /// The handle to write through, opened on first use (and reopened after the cache closed it).
    fn writable(&mut self) -> Result<Arc<FileHandle>> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let opened = Self::open_file(&self.path)?;
                CachedFile::with_open(FileCache::global(), &self.path, opened, Durability::Hint)
            }
        };
        let handle = file.handle().map_err(io_error("open index", &self.path));
        self.file = Some(file);
        handle
    }

    fn append(&mut self, entry: &[u8]) -> Result<()> {
        if !self.exact {
            self.truncate_entries(self.entries)?;
        }
        let at = (self.entries * self.entry_bytes) as u64;
        let path = self.path.clone();
        self.writable()?
            .write_all_at(entry, at)
            .map_err(io_error("write index", &path))?;
        self.entries += 1;
        Ok(())
    }

    fn truncate_entries(&mut self, entries: usize) -> Result<()> {
        if self.exact && entries == self.entries {
            return Ok(());
        }
        let (path, len) = (self.path.clone(), (entries * self.entry_bytes) as u64);
        self.writable()?
            .set_len(len)
            .map_err(io_error("truncate index", &path))?;
        self.entries = entries;
        self.exact = true;
        Ok(())
    }

    /// fsyncs what was written through the open handle. A file never written since it was read has
    /// nothing of ours to make durable, and writes through a handle the cache closed unsynced are
    /// the kernel's to write back: after a power loss they may be missing, which an index tolerates
    /// (it never decides an answer and a damaged one is rebuilt, see the module).
    fn sync(&self) -> Result<()> {
        match &self.file {
            Some(file) => file
                .sync_data()
                .map_err(io_error("fsync index", &self.path)),
            None => Ok(()),
        }
    }
}

fn u32_be(raw: &[u8]) -> u32 {
    raw.try_into().map(u32::from_be_bytes).unwrap_or(0)
}

fn i64_be(raw: &[u8]) -> i64 {
    raw.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// The relative offset stored for `offset`, or `None` when it does not fit (the segment must roll
/// before such an offset is appended).
pub fn relative_offset(base_offset: i64, offset: i64) -> Option<u32> {
    offset
        .checked_sub(base_offset)
        .and_then(|rel| i32::try_from(rel).ok())
        .and_then(|rel| u32::try_from(rel).ok())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Absolute base offset of the indexed batch.
    pub offset: i64,
    /// Its byte position in the segment's log file.
    pub position: u32,
}

/// The `.index` file of one segment.
#[derive(Debug)]
pub struct OffsetIndex {
    file: EntryFile,
    base_offset: i64,
    entries: Vec<OffsetEntry>,
    /// The file's length was not a whole number of entries.
    torn: bool,
}

impl OffsetIndex {
    /// The empty index of a new segment; its file is created by the first entry.
    pub fn create(path: &Path, base_offset: i64) -> Self {
        OffsetIndex {
            file: EntryFile::create(path, OFFSET_ENTRY_BYTES),
            base_offset,
            entries: Vec::new(),
            torn: false,
        }
    }

    pub fn open(path: &Path, base_offset: i64) -> Result<Self> {
        let (file, raw) = EntryFile::open(path, OFFSET_ENTRY_BYTES)?;
        let entries = raw
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .map(|e| OffsetEntry {
                offset: base_offset + i64::from(u32_be(&e[0..4])),
                position: u32_be(&e[4..8]),
            })
            .collect();
        Ok(OffsetIndex {
            file,
            base_offset,
            entries,
            torn: raw.len() % OFFSET_ENTRY_BYTES != 0,
        })
    }

    /// Why this index cannot be trusted for a log of `log_bytes` whose offsets end before
    /// `next_segment_base` (when known), or `None` when it looks sound.
    pub fn check(&self, log_bytes: u64, next_segment_base: Option<i64>) -> Option<String> {
        if self.torn {
            return Some("size is not a multiple of 8 bytes".into());
        }
        let mut previous: Option<OffsetEntry> = None;
        for e in &self.entries {
            if u64::from(e.position) >= log_bytes {
                return Some(format!(
                    "entry for offset {} points at byte {} past the log end {log_bytes}",
                    e.offset, e.position
                ));
            }
            if next_segment_base.is_some_and(|next| e.offset >= next) {
                return Some(format!(
                    "entry for offset {} belongs to the next segment",
                    e.offset
                ));
            }
            if let Some(p) = previous {
                if e.offset <= p.offset || e.position <= p.position {
                    return Some(format!("entries not increasing at offset {}", e.offset));
                }
            }
            previous = Some(*e);
        }
        None
    }

    /// Adds an entry; entries that would not increase are ignored (they add nothing to a lookup).
    pub fn append(&mut self, offset: i64, position: u32) -> Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|l| offset <= l.offset || position <= l.position)
        {
            return Ok(());
        }
        let Some(rel) = relative_offset(self.base_offset, offset) else {
            return Ok(());
        };
        let mut raw = [0u8; OFFSET_ENTRY_BYTES];
        raw[0..4].copy_from_slice(&rel.to_be_bytes());
        raw[4..8].copy_from_slice(&position.to_be_bytes());
        self.file.append(&raw)?;
        self.entries.push(OffsetEntry { offset, position });
        Ok(())
    }

    /// The last entry whose offset is ≤ `offset`, or the segment start.
    pub fn lookup(&self, offset: i64) -> OffsetEntry {
        let idx = self.entries.partition_point(|e| e.offset <= offset);
        match idx {
            0 => OffsetEntry {
                offset: self.base_offset,
                position: 0,
            },
            i => self.entries[i - 1],
        }
    }

    /// Drops the entries for offsets ≥ `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(keep);
        self.file.truncate_entries(keep)
    }

    pub fn reset(&mut self) -> Result<()> {
        self.entries.clear();
        self.torn = false;
        self.file.truncate_entries(0)
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// The segment's largest timestamp up to and including the batch at `offset`.
    pub timestamp: i64,
    /// Absolute base offset of the first batch that reached `timestamp`.
    pub offset: i64,
}

/// The `.timeindex` file of one segment.
#[derive(Debug)]
pub struct TimeIndex {
    file: EntryFile,
    base_offset: i64,
    entries: Vec<TimeEntry>,
    torn: bool,
}

impl TimeIndex {
    /// The empty index of a new segment; its file is created by the first entry.
    pub fn create(path: &Path, base_offset: i64) -> Self {
        TimeIndex {
            file: EntryFile::create(path, TIME_ENTRY_BYTES),
            base_offset,
            entries: Vec::new(),
            torn: false,
        }
    }

    pub fn open(path: &Path, base_offset: i64) -> Result<Self> {
        let (file, raw) = EntryFile::open(path, TIME_ENTRY_BYTES)?;
        let entries = raw
            .chunks_exact(TIME_ENTRY_BYTES)
            .map(|e| TimeEntry {
                timestamp: i64_be(&e[0..8]),
                offset: base_offset + i64::from(u32_be(&e[8..12])),
            })
            .collect();
        Ok(TimeIndex {
            file,
            base_offset,
            entries,
            torn: raw.len() % TIME_ENTRY_BYTES != 0,
        })
    }

    /// Why this index cannot be trusted (see [`OffsetIndex::check`]), or `None`.
    pub fn check(&self, log_bytes: u64, next_segment_base: Option<i64>) -> Option<String> {
        if self.torn {
            return Some("size is not a multiple of 12 bytes".into());
        }
        if log_bytes == 0 && !self.entries.is_empty() {
            return Some("entries for an empty log".into());
        }
        let mut previous: Option<TimeEntry> = None;
        for e in &self.entries {
            if next_segment_base.is_some_and(|next| e.offset >= next) {
                return Some(format!(
                    "entry for offset {} belongs to the next segment",
                    e.offset
                ));
            }
            if let Some(p) = previous {
                if e.timestamp <= p.timestamp || e.offset < p.offset {
                    return Some(format!("entries not increasing at offset {}", e.offset));
                }
            }
            previous = Some(*e);
        }
        None
    }

    /// Adds `(timestamp, offset)` if `timestamp` is above the last entry's.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|l| timestamp <= l.timestamp || offset < l.offset)
        {
            return Ok(());
        }
        let Some(rel) = relative_offset(self.base_offset, offset) else {
            return Ok(());
        };
        let mut raw = [0u8; TIME_ENTRY_BYTES];
        raw[0..8].copy_from_slice(&timestamp.to_be_bytes());
        raw[8..12].copy_from_slice(&rel.to_be_bytes());
        self.file.append(&raw)?;
        self.entries.push(TimeEntry { timestamp, offset });
        Ok(())
    }

    /// Where a search for the first record with timestamp ≥ `timestamp` may start: the last entry with
    /// a smaller timestamp (every batch before its offset is older than `timestamp`), or `None` for
    /// the segment start.
    pub fn lookup(&self, timestamp: i64) -> Option<TimeEntry> {
        let idx = self.entries.partition_point(|e| e.timestamp < timestamp);
        idx.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops the entries for offsets ≥ `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(keep);
        self.file.truncate_entries(keep)
    }

    pub fn reset(&mut self) -> Result<()> {
        self.entries.clear();
        self.torn = false;
        self.file.truncate_entries(0)
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new segment's index creates no file until its first entry, and that entry starts the file
    /// afresh whatever a stale file of the same name held.
    #[test]
    fn a_new_index_creates_its_file_at_the_first_entry_and_cuts_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let index = OffsetIndex::create(&path, 100);
        index.sync().unwrap();
        assert!(!path.exists());
        drop(index);

        std::fs::write(&path, [7u8; 8 * 5 + 3]).unwrap();
        let mut index = OffsetIndex::create(&path, 100);
        index.append(110, 4096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        let reopened = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened.check(5000, None), None);
    }

    #[test]
    fn offset_index_lookup_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut index = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(
            index.lookup(150),
            OffsetEntry {
                offset: 100,
                position: 0
            }
        );
        index.append(110, 4000).unwrap();
        index.append(120, 8100).unwrap();
        index.append(120, 9000).unwrap(); // not increasing: ignored
        index.append(135, 12500).unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.lookup(105).position, 0);
        assert_eq!(index.lookup(110).position, 4000);
        assert_eq!(index.lookup(134).position, 8100);
        assert_eq!(index.lookup(1000).position, 12500);
        drop(index);

        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        let mut index = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.check(20_000, Some(200)), None);
        assert!(
            index.check(12_000, None).is_some(),
            "points past the log end"
        );
        assert!(
            index.check(20_000, Some(130)).is_some(),
            "belongs to the next segment"
        );
        index.truncate_to(120).unwrap();
        assert_eq!(
            index.last(),
            Some(OffsetEntry {
                offset: 110,
                position: 4000
            })
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    }

    #[test]
    fn damaged_offset_indexes_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.index");
        std::fs::write(&path, [0u8; 13]).unwrap();
        assert!(OffsetIndex::open(&path, 0)
            .unwrap()
            .check(1 << 20, None)
            .is_some());

        let mut raw = Vec::new();
        for (rel, pos) in [(10u32, 500u32), (5, 900)] {
            raw.extend_from_slice(&rel.to_be_bytes());
            raw.extend_from_slice(&pos.to_be_bytes());
        }
        std::fs::write(&path, &raw).unwrap();
        let index = OffsetIndex::open(&path, 0).unwrap();
        assert!(index
            .check(1 << 20, None)
            .unwrap()
            .contains("not increasing"));
    }

    #[test]
    fn time_index_lookup_is_strictly_below_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut index = TimeIndex::open(&path, 0).unwrap();
        index.maybe_append(1000, 0).unwrap();
        index.maybe_append(900, 5).unwrap(); // lower timestamp: ignored
        index.maybe_append(2000, 10).unwrap();
        index.maybe_append(3000, 20).unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.lookup(500), None);
        assert_eq!(index.lookup(1000), None);
        assert_eq!(index.lookup(1001).map(|e| e.offset), Some(0));
        assert_eq!(index.lookup(2500).map(|e| e.offset), Some(10));
        assert_eq!(index.lookup(9999).map(|e| e.offset), Some(20));
        drop(index);

        let mut index = TimeIndex::open(&path, 0).unwrap();
        assert_eq!(
            index.last(),
            Some(TimeEntry {
                timestamp: 3000,
                offset: 20
            })
        );
        assert_eq!(index.check(100, None), None);
        assert!(index.check(100, Some(15)).is_some());
        index.truncate_to(10).unwrap();
        assert_eq!(
            index.last(),
            Some(TimeEntry {
                timestamp: 1000,
                offset: 0
            })
        );
        index.reset().unwrap();
        assert!(index.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn relative_offsets_must_fit_in_an_int32() {
        assert_eq!(relative_offset(100, 100), Some(0));
        assert_eq!(relative_offset(100, 99), None);
        assert_eq!(
            relative_offset(0, i64::from(i32::MAX)),
            Some(i32::MAX as u32)
        );
        assert_eq!(relative_offset(0, i64::from(i32::MAX) + 1), None);
    }
}
