//! Small state files next to a partition's segments, written so that a crash leaves either the old or
//! the new contents, never a torn file: write a temp file, fsync it, rename it over the old one, fsync
//! the directory. Single-offset checkpoints (log start offset, high watermark) use Kafka's text style:
//! a version line `0` then the value.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::error::{io_error, LogError, Result};

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
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(io_error("create checkpoint", tmp))?;
    file.write_all(contents)
        .map_err(io_error("write checkpoint", tmp))?;
    file.sync_all().map_err(io_error("fsync checkpoint", tmp))?;
    fs::rename(tmp, path).map_err(io_error("rename checkpoint", path))
}

/// Makes file creations, renames and removals in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
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
