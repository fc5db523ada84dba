//! The aborted-transactions index of a segment, `<base offset>.txnindex` (Kafka's `TransactionIndex`):
//! one entry per transaction aborted by a marker in the segment, which read_committed fetches return
//! as `AbortedTransactions` so consumers drop the aborted records.
//!
//! Entry format (big-endian, 34 bytes, Kafka's `AbortedTxn`):
//!
//! ```text
//! version i16 = 0 | producer_id i64 | first_offset i64 | last_offset i64 | last_stable_offset i64
//! ```
//!
//! `last_offset` is the offset of the ABORT marker, so an entry belongs to the segment holding its
//! marker; `last_stable_offset` is the partition's LSO right after the marker was appended.
//!
//! What must stay true: the files are derived data. The partition log keeps every entry in memory,
//! appends to the active segment's file when a marker aborts a transaction, rewrites a file whole
//! (atomically) when truncation or a rebuild changes it, and deletes it with its segment. A file
//! that is missing or does not parse is rebuilt from the log at open (see
//! `partition_log::recovery`), so an unflushed append lost in a crash costs only a rebuild.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::checkpoint;
use super::error::{io_error, Result};
use super::file_cache::FileCache;
use super::segment::segment_file;

pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
const VERSION: i16 = 0;
pub const ENTRY_BYTES: usize = 2 + 8 + 8 + 8 + 8;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }
}

/// `<dir>/<20-digit base offset>.txnindex`.
pub fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    segment_file(dir, base_offset, TXN_INDEX_SUFFIX)
}

/// The entries of an index file: `Ok(None)` when there is no file, `Err` with the reason when it
/// does not parse (a torn entry, an unknown version).
pub fn read(path: &Path) -> Result<Option<std::result::Result<Vec<AbortedTxn>, String>>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read transaction index", path)(e)),
    };
    Ok(Some(parse(&bytes)))
}

fn parse(bytes: &[u8]) -> std::result::Result<Vec<AbortedTxn>, String> {
    if !bytes.len().is_multiple_of(ENTRY_BYTES) {
        return Err(format!(
            "{} bytes is not a whole number of entries",
            bytes.len()
        ));
    }
    let be64 = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    bytes
        .chunks_exact(ENTRY_BYTES)
        .map(|e| {
            let version = i16::from_be_bytes([e[0], e[1]]);
            if version != VERSION {
                return Err(format!("unknown entry version {version}"));
            }
            let entry = AbortedTxn {
                producer_id: be64(&e[2..10]),
                first_offset: be64(&e[10..18]),
                last_offset: be64(&e[18..26]),
                last_stable_offset: be64(&e[26..34]),
            };
            if entry.first_offset > entry.last_offset {
                return Err(format!(
                    "entry ends at {} before it starts at {}",
                    entry.last_offset, entry.first_offset
                ));
            }
            Ok(entry)
        })
        .collect()
}

/// Appends one entry to the file (created if missing). Not fsynced: the segment's roll fsyncs it,
/// and a crash before that makes open rebuild it.
pub fn append(path: &Path, entry: &AbortedTxn) -> Result<()> {
    let mut bytes = Vec::with_capacity(ENTRY_BYTES);
    entry.encode(&mut bytes);
    FileCache::global()
        .with_room(|| OpenOptions::new().create(true).append(true).open(path))
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(io_error("append to transaction index", path))
}

/// Replaces the file with exactly `entries` (atomically: temp file, fsync, rename).
pub fn write_all<'a>(path: &Path, entries: impl IntoIterator<Item = &'a AbortedTxn>) -> Result<()> {
    let mut bytes = Vec::new();
    for entry in entries {
        entry.encode(&mut bytes);
    }
    checkpoint::write_atomically(path, &bytes)
}

/// fsyncs the file if it exists (at a segment roll).
pub fn sync(path: &Path) -> Result<()> {
    match FileCache::global().with_room(|| fs::File::open(path)) {
        Ok(f) => f
            .sync_all()
            .map_err(io_error("fsync transaction index", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("open transaction index", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn entries_append_rewrite_and_read_back_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = txn_index_path(dir.path(), 40);
        assert!(path.ends_with("00000000000000000040.txnindex"));
        assert_eq!(read(&path).unwrap(), None, "no file");
        append(&path, &entry(7, 40, 45)).unwrap();
        append(&path, &entry(1 << 40, 41, 50)).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 2 * ENTRY_BYTES);
        // Kafka's layout: version 0, then the four longs.
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &45i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &46i64.to_be_bytes());
        assert_eq!(
            read(&path).unwrap(),
            Some(Ok(vec![entry(7, 40, 45), entry(1 << 40, 41, 50)]))
        );
        write_all(&path, &[entry(7, 40, 45)]).unwrap();
        assert_eq!(read(&path).unwrap(), Some(Ok(vec![entry(7, 40, 45)])));
        sync(&path).unwrap();
    }

    #[test]
    fn a_torn_or_foreign_file_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = txn_index_path(dir.path(), 0);
        append(&path, &entry(7, 0, 5)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..ENTRY_BYTES - 3]).unwrap();
        assert!(matches!(read(&path).unwrap(), Some(Err(_))), "torn entry");
        bytes[1] = 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(&path).unwrap(), Some(Err(_))), "version 1");
    }
}
