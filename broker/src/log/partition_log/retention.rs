//! Retention (Kafka's `UnifiedLog.deleteOldSegments`): whole closed segments past `retention.ms` or
//! `retention.bytes` leave the log, oldest first, never at or above the high watermark.

use super::*;

impl PartitionLog {
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
}
