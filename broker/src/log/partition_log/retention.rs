//! Segments leaving the log from its start. Retention (Kafka's `UnifiedLog.deleteOldSegments`)
//! deletes whole closed segments wholly below the log start offset, then past `retention.ms` or
//! `retention.bytes`, oldest first, never at or above the high watermark. DeleteRecords on a leader,
//! and the leader's log start on a follower, move the log start offset itself (Kafka's
//! `UnifiedLog.maybeIncrementLogStartOffset`), possibly into the middle of a segment, and the closed
//! segments wholly below it go. Both move the start through one path, `LogState::advance_log_start`.
//!
//! What must stay true: the log start offset only moves forward and never past the high watermark; it
//! is checkpointed before any file is removed, so a crash in between leaves only segments below the
//! start, which `open` deletes; the active segment always stays, even when wholly below the start (it
//! goes at a retention run after it rolled); the leader-epoch cache keeps no entry that starts below
//! the log start; producer entries outlive the data (KIP-360), only their snapshots below the start go.

use super::*;

impl PartitionLog {
    /// Deletes whole segments wholly below the log start offset (whatever the cleanup policy), then,
    /// for `cleanup.policy=delete`, past `retention.ms` (by each segment's largest timestamp, against
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
        let candidates = state.closed_segments_below(state.high_watermark);
        let mut remaining_bytes = state.size_in_bytes();
        let mut doomed: Vec<(i64, RetentionReason)> = Vec::new();
        for (base, next) in &candidates {
            if *next > state.log_start_offset {
                break;
            }
            remaining_bytes -= state.segments.get(base).map_or(0, |s| s.size());
            doomed.push((*base, RetentionReason::LogStartOffset));
        }
        // A compact-only topic keeps its other segments; the cleaner shrinks them instead.
        if config.cleanup_delete {
            for (base, _) in candidates.iter().skip(doomed.len()) {
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
                let reason = if too_old && doomed.iter().all(|(_, r)| *r != RetentionReason::Size) {
                    RetentionReason::Time
                } else if too_big {
                    RetentionReason::Size
                } else {
                    break;
                };
                remaining_bytes -= segment.size();
                doomed.push((*base, reason));
            }
        }
        let Some(new_start) = doomed
            .last()
            .and_then(|(base, _)| candidates.iter().find(|(b, _)| b == base))
            .map(|(_, next)| *next)
        else {
            return Ok(Vec::new());
        };
        match state.advance_log_start(&self.dir, new_start, &doomed) {
            Ok(deleted) => {
                info!(dir = %self.dir.display(), segments = deleted.len(),
                    log_start_offset = state.log_start_offset, "retention deleted segments");
                Ok(deleted)
            }
            Err(e) => Err(state.fail(&self.dir, e)),
        }
    }

    /// Moves the log start offset up to `offset` (Kafka's `UnifiedLog.maybeIncrementLogStartOffset`:
    /// DeleteRecords on a leader, the leader's log start on a follower) and deletes the closed segments
    /// wholly below it. Records below it are gone for readers at once: reads there answer
    /// [`LogError::OffsetOutOfRange`]. Never backwards: an offset at or below the current start
    /// changes nothing and returns `false`. Above the high watermark it is
    /// [`LogError::LogStartBeyondHighWatermark`] (OFFSET_OUT_OF_RANGE). The new start is checkpointed
    /// before any file is removed, so it holds across a restart.
    pub fn maybe_increment_log_start_offset(&self, offset: i64) -> Result<bool> {
        // Followers call this on every fetch response: the usual "nothing to do" takes no write lock
        // (the start is at most the high watermark, so an offset at or below it is not refused).
        if offset <= self.read_state()?.log_start_offset {
            return Ok(false);
        }
        let mut state = self.write_state()?;
        if offset > state.high_watermark {
            return Err(LogError::LogStartBeyondHighWatermark {
                offset,
                high_watermark: state.high_watermark,
            });
        }
        if offset <= state.log_start_offset {
            return Ok(false);
        }
        let doomed: Vec<(i64, RetentionReason)> = state
            .closed_segments_below(offset)
            .into_iter()
            .map(|(base, _)| (base, RetentionReason::LogStartOffset))
            .collect();
        match state.advance_log_start(&self.dir, offset, &doomed) {
            Ok(deleted) => {
                info!(dir = %self.dir.display(), log_start_offset = offset,
                    segments_deleted = deleted.len(), "incremented the log start offset");
                Ok(true)
            }
            Err(e) => Err(state.fail(&self.dir, e)),
        }
    }
}

impl LogState {
    /// `(base, next base)` of the closed segments, oldest first, whose successor starts at or below
    /// `offset`: those holding no offset at or above it.
    fn closed_segments_below(&self, offset: i64) -> Vec<(i64, i64)> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        bases
            .windows(2)
            .map(|w| (w[0], w[1]))
            .take_while(|(_, next)| *next <= offset)
            .collect()
    }

    /// Moves the log start offset up to `log_start_offset` (never down) and deletes the `doomed`
    /// segments (oldest first, each wholly below it, with why). The new start is checkpointed before
    /// any file goes; the epoch cache drops what starts below it; producer snapshots below it go, the
    /// producer entries stay (KIP-360).
    fn advance_log_start(
        &mut self,
        dir: &Path,
        log_start_offset: i64,
        doomed: &[(i64, RetentionReason)],
    ) -> Result<Vec<DeletedSegment>> {
        let log_start_offset = self.log_start_offset.max(log_start_offset);
        if log_start_offset > self.log_start_offset {
            checkpoint::write_offset(&dir.join(LOG_START_OFFSET_CHECKPOINT), log_start_offset)?;
            self.checkpointed_log_start = Some(log_start_offset);
            self.log_start_offset = log_start_offset;
            self.high_watermark = self.high_watermark.max(log_start_offset);
            self.epochs.truncate_from_start(log_start_offset)?;
        }
        let mut deleted = Vec::new();
        for (base, reason) in doomed {
            if let Some(segment) = self.segments.remove(base) {
                segment.delete_files()?;
                deleted.push(DeletedSegment {
                    base_offset: *base,
                    next_offset: segment.next_offset(),
                    size_bytes: segment.size(),
                    reason: *reason,
                });
            }
        }
        producer_state::delete_snapshots_below(dir, log_start_offset)?;
        // The aborted transactions went with their segments' `.txnindex` files.
        if let Some(&first) = self.segments.keys().next() {
            self.aborted_txns = self.aborted_txns.split_off(&first);
        }
        Ok(deleted)
    }
}
