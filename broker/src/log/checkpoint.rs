//! Small state files next to a partition's segments, written so that a crash leaves either the old or
//! the new contents, never a torn file: write a temp file, fsync it, rename it over the old one, fsync
//! the directory. Single-offset checkpoints (log start offset, high watermark) use Kafka's text style:
//! a version line `0` then the value.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

use super::error::{io_error, LogError, Result};
use super::file_cache::FileCache;

const VERSION: &str = "0";

/// Replaces `path` with `contents` atomically and durably.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomically_before_dir_sync(path, contents)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Replaces `path` with `contents` atomically, durable once the caller fsyncs its directory (a new
/// partition directory writes several files, then fsyncs itself once).
pub fn write_atomically_before_dir_sync(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let mut file = FileCache::global()
        .with_room(|| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(tmp)
        })
        .map_err(io_error("create checkpoint", tmp))?;
    file.write_all(contents)
        .map_err(io_error("write checkpoint", tmp))?;
    #[cfg(test)]
    synced::record(path);
    file.sync_all().map_err(io_error("fsync checkpoint", tmp))?;
    fs::rename(tmp, path).map_err(io_error("rename checkpoint", path))
}

/// Writes a new file in place, not fsynced: for a file whose loss or truncation by a crash is one of
/// the states its reader recovers from (a new partition's `partition.metadata`, made durable by the
/// log's first flush, see `partition_log`).
pub fn write_unsynced(path: &Path, contents: &[u8]) -> Result<()> {
    FileCache::global()
        .with_room(|| fs::write(path, contents))
        .map_err(io_error("write", path))
}

/// Makes file creations, renames and removals in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    open_and_sync(dir, "fsync directory")
}

/// fsyncs an existing file's data and size (one that was written unsynced).
pub fn fsync_file(path: &Path) -> Result<()> {
    open_and_sync(path, "fsync")
}

fn open_and_sync(path: &Path, what: &'static str) -> Result<()> {
    #[cfg(test)]
    synced::record(path);
    FileCache::global()
        .with_room(|| File::open(path))
        .and_then(|f| f.sync_all())
        .map_err(io_error(what, path))
}

/// Group commit of one directory's fsync: a caller that needs the directory's entries durable waits
/// for an fsync that started after it asked; one caller runs it and every caller that asked before
/// it started returns with it. When many partitions make their creation durable at once (their
/// first flushes), one fsync of the data directory covers all of them instead of one each.
#[derive(Debug, Default)]
pub struct DirSync {
    /// (requests so far, requests the last successful fsync covered, an fsync is running).
    state: Mutex<(u64, u64, bool)>,
    done: Condvar,
}

impl DirSync {
    pub fn sync(&self, dir: &Path) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 += 1;
        let mine = state.0;
        loop {
            if state.1 >= mine {
                return Ok(());
            }
            if !state.2 {
                state.2 = true;
                let covers = state.0;
                drop(state);
                let result = fsync_dir(dir);
                state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.2 = false;
                if result.is_ok() {
                    state.1 = state.1.max(covers);
                }
                self.done.notify_all();
                // A failure is this caller's; the others run their own fsync.
                result?;
                continue;
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The paths fsynced through this module on the current thread (tests assert when creation becomes
/// durable, which no file on disk shows short of a power cut).
#[cfg(test)]
pub(crate) mod synced {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(path: &Path) {
        SYNCED.with(|s| s.borrow_mut().push(path.to_path_buf()));
    }

    /// The paths fsynced on this thread since the last call.
    pub(crate) fn take() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }
}

/// Reads a file, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(LogError::Corrupt {
            path: path.to_path_buf(),
            reason: "not UTF-8".into(),
        }),
        Err(e) => Err(io_error("read checkpoint", path)(e)),
    }
}

/// Reads a single-offset checkpoint; `None` when missing. A file that does not parse is corrupt.
pub fn read_offset(path: &Path) -> Result<Option<i64>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next(), lines.next()) {
        (Some(VERSION), Some(value), None) => value.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| LogError::Corrupt {
        path: path.to_path_buf(),
        reason: "not a single-offset checkpoint".into(),
    })
}

pub fn write_offset(path: &Path, offset: i64) -> Result<()> {
    write_atomically(path, format!("{VERSION}\n{offset}\n").as_bytes())
}

/// Removes a file if present.
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("high-watermark-checkpoint");
        assert_eq!(read_offset(&path).unwrap(), None);
        write_offset(&path, 42).unwrap();
        assert_eq!(read_offset(&path).unwrap(), Some(42));
        write_offset(&path, 43).unwrap();
        assert_eq!(read_offset(&path).unwrap(), Some(43));
        assert!(!dir.path().join("high-watermark-checkpoint.tmp").exists());
        fs::write(&path, "0\nforty\n").unwrap();
        assert!(matches!(read_offset(&path), Err(LogError::Corrupt { .. })));
        fs::write(&path, "1\n40\n").unwrap();
        assert!(read_offset(&path).is_err());
    }
}
