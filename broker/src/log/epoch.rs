//! The leader-epoch cache (Kafka `LeaderEpochFileCache`): ordered `(epoch, start_offset)` entries saying
//! at which offset each leader epoch began, persisted in `leader-epoch-checkpoint` in Kafka's text
//! format (`0`, the entry count, then `epoch start_offset` lines). It answers OffsetForLeaderEpoch and
//! Fetch divergence checks (KIP-101, KIP-279) and is cut when the log is truncated at either end.
//!
//! What must stay true: epochs strictly increase and start offsets never decrease along the entries;
//! an entry is added only for an epoch above the latest one; every change is on disk (temp file,
//! fsync, rename) before the method returns, so the checkpoint never lacks an entry the log relies on,
//! except an entry added by [`LeaderEpochCache::assign_unsynced`] (a leadership starting at the log
//! end, before it wrote anything): it is written by the next persist, which the log does before it
//! seals the segment its first batch went into, so until then that batch is in the active segment,
//! where recovery after a crash finds the entry again in the batch headers. When the file is missing
//! or corrupt the log rebuilds the cache from its batch headers.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::checkpoint;
use super::error::{LogError, Result};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// OffsetForLeaderEpoch's "unknown" epoch and offset.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
    /// An entry of `assign_unsynced` is not in the file yet.
    unsynced: bool,
}

impl LeaderEpochCache {
    /// Loads `<dir>/leader-epoch-checkpoint`. Returns the cache and, when the file was missing or did
    /// not parse, why (the cache is then empty and the caller rebuilds it from the log).
    pub fn open(dir: &Path) -> Result<(Self, Option<String>)> {
        let path = dir.join(CHECKPOINT_FILE);
        let (entries, problem) = match checkpoint::read_optional(&path) {
            Ok(Some(text)) => match parse(&text) {
                Ok(entries) => (entries, None),
                Err(reason) => (Vec::new(), Some(format!("corrupt: {reason}"))),
            },
            Ok(None) => (Vec::new(), Some("missing".to_string())),
            Err(LogError::Corrupt { reason, .. }) => {
                (Vec::new(), Some(format!("corrupt: {reason}")))
            }
            Err(e) => return Err(e),
        };
        Ok((
            LeaderEpochCache {
                path,
                entries,
                unsynced: false,
            },
            problem,
        ))
    }

    /// Records that `epoch` starts at `start_offset`, if `epoch` is above the latest epoch. Entries
    /// starting at or after `start_offset` are dropped first (they never got data, or the log was cut
    /// below them). Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        if !self.assign_in_memory(epoch, start_offset) {
            return Ok(false);
        }
        info!(path = %self.path.display(), epoch, start_offset, "new leader epoch");
        self.persist()?;
        Ok(true)
    }

    /// [`LeaderEpochCache::assign`] of a leadership that has written nothing yet, without writing
    /// the file: a new leader of thousands of partitions would otherwise wait on two fsyncs for each
    /// before it serves. The entry is written by the next persist (see the module docs for why
    /// losing it in a crash before then is harmless); [`LeaderEpochCache::persist_if_unsynced`]
    /// forces one.
    pub fn assign_unsynced(&mut self, epoch: i32, start_offset: i64) -> bool {
        let changed = self.assign_in_memory(epoch, start_offset);
        if changed {
            info!(path = %self.path.display(), epoch, start_offset, "new leader epoch");
            self.unsynced = true;
        }
        changed
    }

    /// Writes the file if an entry of [`LeaderEpochCache::assign_unsynced`] is not in it yet.
    pub fn persist_if_unsynced(&mut self) -> Result<()> {
        if self.unsynced {
            self.persist()?;
        }
        Ok(())
    }

    /// [`LeaderEpochCache::assign`] without writing the file (for bulk rebuilds; call
    /// [`LeaderEpochCache::persist`] after).
    pub(crate) fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|e| e.start_offset >= start_offset)
        {
            if let Some(dropped) = self.entries.pop() {
                if dropped.start_offset != start_offset {
                    warn!(path = %self.path.display(), ?dropped, epoch, start_offset,
                        "new epoch entry replaces a conflicting one");
                }
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// `(epoch', end_offset)` for OffsetForLeaderEpoch and Fetch divergence (Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`):
    /// - the latest epoch ends at the log end offset;
    /// - an epoch below every cached one reports itself, ending where the first cached epoch starts;
    /// - an epoch between cached ones reports the largest cached epoch ≤ it, ending where the next
    ///   cached epoch starts;
    /// - an undefined epoch, or one above all cached, is `(-1, -1)`.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested, next.start_offset),
        }
    }

    /// Drops the entries starting at or after `end_offset` (the log was cut there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        if end_offset < 0 {
            return Ok(());
        }
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.persist()
    }

    /// The log now starts at `start_offset`: entries wholly below it go, and the epoch in force at
    /// `start_offset` is moved to start there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if below == 0 {
            return Ok(());
        }
        let in_force = self.entries[below - 1];
        if below == 1 && in_force.start_offset == start_offset {
            return Ok(());
        }
        self.entries.drain(..below - 1);
        self.entries[0] = EpochEntry {
            epoch: in_force.epoch,
            start_offset,
        };
        self.persist()
    }

    /// Removes every entry (the log was emptied).
    pub fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.persist()
    }

    /// The epoch of the batch holding `offset`, as far as the cache knows.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let idx = self.entries.partition_point(|e| e.start_offset <= offset);
        idx.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn persist(&mut self) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        checkpoint::write_atomically(&self.path, text.as_bytes())?;
        self.unsynced = false;
        Ok(())
    }
}

fn parse(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(format!("unknown version line {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("missing entry count")?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for line in lines.by_ref().take(count) {
        let mut parts = line.split_whitespace();
        let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("bad entry line {line:?}"));
        };
        let entry = EpochEntry {
            epoch: epoch.parse().map_err(|_| format!("bad epoch {epoch:?}"))?,
            start_offset: offset
                .parse()
                .map_err(|_| format!("bad offset {offset:?}"))?,
        };
        if entry.epoch < 0 || entry.start_offset < 0 {
            return Err(format!("negative entry {line:?}"));
        }
        if let Some(prev) = entries.last() {
            if entry.epoch <= prev.epoch || entry.start_offset < prev.start_offset {
                return Err(format!("entries out of order at {line:?}"));
            }
        }
        entries.push(entry);
    }
    if entries.len() != count {
        return Err(format!("expected {count} entries, found {}", entries.len()));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("trailing lines".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, entries: &[(i32, i64)]) -> LeaderEpochCache {
        let (mut cache, _) = LeaderEpochCache::open(dir).unwrap();
        for (epoch, offset) in entries {
            assert!(cache.assign(*epoch, *offset).unwrap());
        }
        cache
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn end_offsets_follow_the_offset_for_leader_epoch_rules() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), &[(2, 10), (4, 30), (7, 55)]);
        let leo = 80;
        // The latest epoch ends at the log end.
        assert_eq!(cache.end_offset_for(7, leo), (7, 80));
        // Exactly a cached epoch: ends where the next one starts.
        assert_eq!(cache.end_offset_for(2, leo), (2, 30));
        assert_eq!(cache.end_offset_for(4, leo), (4, 55));
        // Between cached epochs: the largest epoch below it, ending at the next start.
        assert_eq!(cache.end_offset_for(3, leo), (2, 30));
        assert_eq!(cache.end_offset_for(6, leo), (4, 55));
        // Below every cached epoch: itself, ending where the first epoch starts.
        assert_eq!(cache.end_offset_for(1, leo), (1, 10));
        assert_eq!(cache.end_offset_for(0, leo), (0, 10));
        // Above all, or undefined.
        assert_eq!(cache.end_offset_for(8, leo), (-1, -1));
        assert_eq!(cache.end_offset_for(-1, leo), (-1, -1));
        // Empty cache.
        let empty_dir = tempfile::tempdir().unwrap();
        let (empty, _) = LeaderEpochCache::open(empty_dir.path()).unwrap();
        assert_eq!(empty.end_offset_for(0, leo), (-1, -1));
    }

    #[test]
    fn assign_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = cache(dir.path(), &[(1, 0), (3, 20)]);
        assert!(!cache.assign(3, 25).unwrap(), "same epoch");
        assert!(!cache.assign(2, 30).unwrap(), "lower epoch");
        assert!(!cache.assign(-1, 30).unwrap(), "unstamped batch");
        // A new leader at the same start offset replaces an epoch that never got data.
        assert!(cache.assign(5, 20).unwrap());
        assert_eq!(pairs(&cache), vec![(1, 0), (5, 20)]);
        assert_eq!(cache.epoch_for_offset(19), Some(1));
        assert_eq!(cache.epoch_for_offset(20), Some(5));
        assert_eq!(cache.latest_epoch(), Some(5));
    }

    #[test]
    fn truncation_from_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = cache(dir.path(), &[(1, 0), (2, 10), (4, 30), (7, 55)]);
        cache.truncate_from_end(55).unwrap();
        assert_eq!(pairs(&cache), vec![(1, 0), (2, 10), (4, 30)]);
        cache.truncate_from_end(31).unwrap();
        assert_eq!(pairs(&cache), vec![(1, 0), (2, 10), (4, 30)]);
        cache.truncate_from_start(15).unwrap();
        assert_eq!(pairs(&cache), vec![(2, 15), (4, 30)]);
        cache.truncate_from_start(30).unwrap();
        assert_eq!(pairs(&cache), vec![(4, 30)]);
        cache.truncate_from_start(10).unwrap();
        assert_eq!(pairs(&cache), vec![(4, 30)]);
        let (reloaded, problem) = LeaderEpochCache::open(dir.path()).unwrap();
        assert_eq!(problem, None);
        assert_eq!(pairs(&reloaded), vec![(4, 30)]);
    }

    #[test]
    fn checkpoint_is_kafkas_text_format_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path(), &[(0, 0), (3, 17)]);
        let path = dir.path().join(CHECKPOINT_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n2\n0 0\n3 17\n");
        let (loaded, problem) = LeaderEpochCache::open(dir.path()).unwrap();
        assert_eq!(problem, None);
        assert_eq!(pairs(&loaded), vec![(0, 0), (3, 17)]);

        for garbage in [
            "0\n3\n0 0\n3 17\n",
            "1\n0\n",
            "0\n2\n3 17\n0 0\n",
            "0\n1\nx y\n",
            "",
        ] {
            std::fs::write(&path, garbage).unwrap();
            let (loaded, problem) = LeaderEpochCache::open(dir.path()).unwrap();
            assert!(problem.is_some(), "{garbage:?} must be reported");
            assert!(loaded.entries().is_empty());
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            LeaderEpochCache::open(dir.path()).unwrap().1.as_deref(),
            Some("missing")
        );
    }
}
