//! The log cleaner for `cleanup.policy=compact` (Kafka's `LogCleaner`, one pass over one partition):
//! every closed segment wholly below the last stable offset (so below the high watermark, and below
//! every open transaction) is rewritten to keep, per key, only the latest record among those
//! segments. Offsets never change, so readers, followers and committed
//! positions are unaffected; a reader may still see an older value of a key, never lose the latest.
//!
//! What must stay true:
//! - the active segment and anything at or above the high watermark are never touched;
//! - each segment keeps its last record, so segments stay contiguous and a segment is never empty;
//! - a record is removed only when a later record with the same key was read in this pass; a batch
//!   that cannot be decoded is kept whole, and so is a batch of an idempotent producer that still has
//!   records (its header carries the producer's sequence range);
//! - tombstones (null values) go once they are older than `delete.retention.ms`;
//! - transactions (KIP-98): records of aborted transactions (by the aborted-transactions index) never
//!   count as a key's latest and are removed; a transaction marker (COMMIT or ABORT) goes once it is
//!   older than `delete.retention.ms` and no batch of its transaction is left, as Kafka's cleaner
//!   does (a replay of the log must never find a transaction without its end), unless it is its
//!   segment's last batch;
//! - a crash at any point leaves either the old or the new data file in place: the cleaned segment
//!   is written and fsynced under `.cleaning/`, the old indexes are removed, then the data file is
//!   renamed over the old one; indexes missing at open are rebuilt from the data.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder, TimestampType as RecordTimestampType};
use tracing::{info, warn};

use super::{LogSegment, PartitionLog};
use crate::log::batch::{encode_plain_batch, BatchHeader, Batches, RecordBatch};
use crate::log::error::{io_error, LogError, Result};
use crate::log::segment::{segment_file, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use crate::log::txn_index::AbortedTxn;
use crate::log::txn_marker::EndTxnMarker;

/// Where cleaned segments are written before they replace the originals.
const CLEANING_DIR: &str = ".cleaning";

/// What one cleaning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Everything below this offset was cleaned (the end of the last closed segment cleaned).
    pub cleaned_through: i64,
    pub segments_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
}

/// A closed segment to clean, as found under the read lock.
struct Candidate {
    base_offset: i64,
    next_base: i64,
    size: u64,
    data: Bytes,
}

impl PartitionLog {
    /// One cleaning pass (blocking), if segments became cleanable since `cleaned_through` (the
    /// `cleaned_through` of the previous pass's stats; 0 the first time). `None` when the topic is not
    /// compacted or nothing new is cleanable. Appends and reads go on meanwhile (only the final swap
    /// takes the write lock).
    pub fn clean(&self, now_ms: i64, cleaned_through: i64) -> Result<Option<CleanStats>> {
        let (ranges, config, aborted) = {
            let state = self.read_state()?;
            if !state.config.cleanup_compact {
                return Ok(None);
            }
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            // Kafka's first uncleanable offset: the LSO (at most the high watermark).
            let stable = state.last_stable_offset();
            let ranges: Vec<(i64, i64)> = bases
                .windows(2)
                .map(|w| (w[0], w[1]))
                .take_while(|(_, next_base)| *next_base <= stable)
                .collect();
            let aborted = Aborted::of(state.aborted_txns.values());
            (ranges, state.config.clone(), aborted)
        };
        let through = ranges.last().map_or(0, |(_, next_base)| *next_base);
        if through <= cleaned_through {
            return Ok(None);
        }
        // One segment at a time under the read lock, so appends wait for one read at most.
        let mut candidates = Vec::with_capacity(ranges.len());
        for (base_offset, next_base) in ranges {
            let state = self.read_state()?;
            if let Some(segment) = state.segments.get(&base_offset) {
                candidates.push(Candidate {
                    base_offset,
                    next_base,
                    size: segment.size(),
                    data: segment.read_all()?,
                });
            }
        }
        let latest = latest_offsets(&candidates, &aborted);
        // Producers with a batch of their current transaction left, which keeps its marker.
        let mut unfinished = HashSet::new();
        let cleaning = self.dir.join(CLEANING_DIR);
        let _ = fs::remove_dir_all(&cleaning);
        fs::create_dir_all(&cleaning).map_err(io_error("create cleaning dir", &cleaning))?;
        let mut stats = CleanStats {
            cleaned_through: through,
            ..CleanStats::default()
        };
        for candidate in &candidates {
            let (batches, headers, removed) = clean_segment(
                candidate,
                &latest,
                &aborted,
                &mut unfinished,
                now_ms,
                config.delete_retention_ms,
            )?;
            stats.bytes_before += candidate.size;
            if removed == 0 {
                stats.bytes_after += candidate.size;
                continue;
            }
            let mut segment = LogSegment::create(&cleaning, candidate.base_offset)?;
            segment.append(&batches, &headers, &config)?;
            segment.seal()?;
            drop(segment);
            if self.swap_in(&cleaning, candidate)? {
                stats.segments_rewritten += 1;
                stats.records_removed += removed;
                stats.bytes_after += batches.len() as u64;
            } else {
                stats.bytes_after += candidate.size;
            }
        }
        let _ = fs::remove_dir_all(&cleaning);
        if stats.segments_rewritten > 0 {
            info!(dir = %self.dir.display(), segments = stats.segments_rewritten,
                bytes_before = stats.bytes_before, bytes_after = stats.bytes_after,
                records_removed = stats.records_removed, "compacted log");
        }
        Ok(Some(stats))
    }

    /// Replaces a segment by its cleaned copy, unless it changed since it was read (retention or a
    /// truncation removed it). Returns whether it was replaced.
    fn swap_in(&self, cleaning: &Path, candidate: &Candidate) -> Result<bool> {
        let mut state = self.write_state()?;
        let unchanged = state
            .segments
            .get(&candidate.base_offset)
            .is_some_and(|s| s.size() == candidate.size)
            && state.segments.contains_key(&candidate.next_base);
        if !unchanged {
            return Ok(false);
        }
        let base = candidate.base_offset;
        let result = (|| {
            // Old indexes first: a crash before the rename leaves the old data with rebuilt indexes.
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let path = segment_file(&self.dir, base, suffix);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_error("remove index", &path)(e))
                    }
                    _ => {}
                }
            }
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let from = segment_file(cleaning, base, suffix);
                let to = segment_file(&self.dir, base, suffix);
                match fs::rename(&from, &to) {
                    // An index that took no entry was never created.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && suffix != LOG_SUFFIX => {}
                    renamed => renamed.map_err(io_error("install cleaned segment", &to))?,
                }
            }
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("fsync partition directory", &self.dir))?;
            LogSegment::open(&self.dir, base, Some(candidate.next_base), &state.config)
        })();
        match result {
            Ok(segment) => {
                state.segments.insert(base, segment);
                Ok(true)
            }
            Err(e) => Err(state.fail(&self.dir, e)),
        }
    }
}

/// The aborted transactions of the log by producer: `(first offset, marker offset)`.
struct Aborted(HashMap<i64, Vec<(i64, i64)>>);

impl Aborted {
    fn of<'a>(txns: impl Iterator<Item = &'a AbortedTxn>) -> Self {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in txns {
            by_producer
                .entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        Aborted(by_producer)
    }

    /// The marker offset of the aborted transaction holding this data batch, if it is in one.
    fn transaction_of(&self, batch: &RecordBatch) -> Option<i64> {
        if !batch.is_transactional() || batch.is_control() {
            return None;
        }
        self.0
            .get(&batch.producer_id())?
            .iter()
            .find_map(|(first, last)| {
                (*first <= batch.base_offset() && batch.base_offset() < *last).then_some(*last)
            })
    }
}

/// The offset of the last record of every key in the candidates (aborted records do not count).
fn latest_offsets(candidates: &[Candidate], aborted: &Aborted) -> HashMap<Bytes, i64> {
    let mut latest = HashMap::new();
    for candidate in candidates {
        for batch in Batches::new(candidate.data.clone()).flatten() {
            if batch.is_control() || aborted.transaction_of(&batch).is_some() {
                continue;
            }
            if let Some(records) = decode(&batch) {
                for r in records {
                    if let Some(key) = r.key {
                        latest.insert(key, r.offset);
                    }
                }
            }
        }
    }
    latest
}

fn decode(batch: &RecordBatch) -> Option<Vec<Record>> {
    let mut raw = batch.as_bytes().clone();
    match RecordBatchDecoder::decode(&mut raw) {
        Ok(set) => Some(set.records),
        Err(e) => {
            warn!(
                offset = batch.base_offset(),
                "cleaner keeps a batch it cannot decode: {e}"
            );
            None
        }
    }
}

/// The cleaned bytes of one segment, their batch headers, and how many records were removed.
fn clean_segment(
    candidate: &Candidate,
    latest: &HashMap<Bytes, i64>,
    aborted: &Aborted,
    unfinished: &mut HashSet<i64>,
    now_ms: i64,
    delete_retention_ms: i64,
) -> Result<(Vec<u8>, Vec<BatchHeader>, u64)> {
    let mut out = Vec::with_capacity(candidate.size as usize);
    let mut headers = Vec::new();
    let mut removed = 0u64;
    let batches: Vec<RecordBatch> = Batches::new(candidate.data.clone())
        .collect::<std::result::Result<_, _>>()
        .map_err(LogError::from)?;
    let last_offset = batches.last().map(|b| b.last_offset());
    for batch in &batches {
        let keep_whole = |out: &mut Vec<u8>, headers: &mut Vec<BatchHeader>| {
            out.extend_from_slice(batch.as_bytes());
            headers.push(*batch.header());
        };
        if batch.is_control() {
            // The marker ends the producer's transaction: whatever it kept is accounted for.
            let kept_data = unfinished.remove(&batch.producer_id());
            let droppable = EndTxnMarker::parse(batch.as_bytes()).is_some()
                && now_ms.saturating_sub(batch.max_timestamp()) >= delete_retention_ms
                && Some(batch.last_offset()) != last_offset
                && !kept_data;
            if droppable {
                removed += 1;
            } else {
                keep_whole(&mut out, &mut headers);
            }
            continue;
        }
        let transactional = batch.is_transactional();
        let mut keep_whole = |out: &mut Vec<u8>, headers: &mut Vec<BatchHeader>| {
            if transactional {
                unfinished.insert(batch.producer_id());
            }
            keep_whole(out, headers);
        };
        if aborted.transaction_of(batch).is_some() {
            // Aborted: gone, unless it holds the segment's last offset (segments stay contiguous).
            if Some(batch.last_offset()) == last_offset {
                keep_whole(&mut out, &mut headers);
            } else {
                removed += batch.record_count().max(0) as u64;
            }
            continue;
        }
        let Some(records) = decode(batch) else {
            keep_whole(&mut out, &mut headers);
            continue;
        };
        let total = records.len();
        let retained: Vec<Record> = records
            .into_iter()
            .filter(|r| {
                Some(r.offset) == last_offset
                    || match &r.key {
                        None => true,
                        Some(key) => {
                            latest.get(key) == Some(&r.offset)
                                && (r.value.is_some()
                                    || now_ms.saturating_sub(r.timestamp) < delete_retention_ms)
                        }
                    }
            })
            .collect();
        if retained.len() == total {
            keep_whole(&mut out, &mut headers);
        } else if retained.is_empty() {
            removed += total as u64;
        } else if batch.producer_id() >= 0 {
            keep_whole(&mut out, &mut headers);
        } else {
            removed += (total - retained.len()) as u64;
            let rewritten = reencode(batch, retained)?;
            out.extend_from_slice(rewritten.as_bytes());
            headers.push(*rewritten.header());
        }
    }
    Ok((out, headers, removed))
}

/// The retained records of a non-idempotent batch as one uncompressed batch, with their offsets,
/// timestamps and the batch's leader epoch.
fn reencode(batch: &RecordBatch, mut records: Vec<Record>) -> Result<RecordBatch> {
    for r in &mut records {
        r.partition_leader_epoch = batch.partition_leader_epoch();
        r.timestamp_type = match batch.timestamp_type() {
            crate::log::TimestampType::LogAppendTime => RecordTimestampType::LogAppend,
            crate::log::TimestampType::CreateTime => RecordTimestampType::Creation,
        };
    }
    let bytes = encode_plain_batch(&mut records).map_err(|e| {
        LogError::Cleaner(format!(
            "cannot re-encode batch at {}: {e}",
            batch.base_offset()
        ))
    })?;
    Ok(RecordBatch::parse(bytes)?)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

    use super::*;
    use crate::log::LogConfig;

    const DAY_MS: i64 = 24 * 60 * 60 * 1000;

    fn compact_config() -> LogConfig {
        LogConfig {
            segment_bytes: 400,
            cleanup_compact: true,
            cleanup_delete: false,
            retention_ms: None,
            ..LogConfig::default()
        }
    }

    /// One batch of (key, value) records; `producer_id` -1 for a plain producer.
    fn batch(records: &[(&str, Option<&str>)], timestamp: i64, producer_id: i64) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: RecordTimestampType::Creation,
                offset: i as i64,
                sequence: if producer_id >= 0 {
                    i as i32
                } else {
                    i as i32 - 1
                },
                timestamp,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    /// Every (offset, key, value) readable from the log start.
    fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let end = log.log_end_offset();
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < end {
            let read = log.read(offset, 1 << 20, end).unwrap();
            let mut next = offset;
            for b in Batches::new(read.records) {
                let b = b.unwrap();
                next = b.header().next_offset();
                for r in decode(&b).unwrap() {
                    if r.offset >= offset {
                        out.push((
                            r.offset,
                            String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                            r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        ));
                    }
                }
            }
            assert!(next > offset, "no progress at {offset}");
            offset = next;
        }
        out
    }

    #[test]
    fn keeps_the_latest_record_per_key_in_closed_committed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), compact_config()).unwrap();
        let now = 10 * DAY_MS;
        for round in 0..6 {
            let value = format!("v{round}");
            log.append_as_leader(
                batch(
                    &[
                        ("a", Some(&value)),
                        ("b", Some(&value)),
                        ("c", Some(&value)),
                    ],
                    now,
                    -1,
                ),
                0,
            )
            .unwrap();
        }
        // An old tombstone for b, a fresh one for c, then more rounds of a so segments roll on.
        log.append_as_leader(batch(&[("b", None)], now - 2 * DAY_MS, -1), 0)
            .unwrap();
        log.append_as_leader(batch(&[("c", None)], now, -1), 0)
            .unwrap();
        for round in 6..12 {
            let value = format!("v{round}");
            log.append_as_leader(batch(&[("a", Some(&value)), ("x", Some("1"))], now, -1), 0)
                .unwrap();
        }
        let end = log.log_end_offset();
        assert!(log.segment_count() >= 4, "the test needs several segments");
        let before = contents(&log);
        // Nothing above the high watermark is cleaned: with HW 0 nothing is.
        assert!(log.clean(now, 0).unwrap().is_none());
        log.maybe_increment_high_watermark(end);
        let stats = log.clean(now, 0).unwrap().expect("a pass");
        assert!(
            stats.segments_rewritten > 0 && stats.records_removed > 0,
            "{stats:?}"
        );
        assert!(stats.bytes_after < stats.bytes_before);
        assert_eq!(log.log_end_offset(), end, "offsets never change");
        let after = contents(&log);

        // Every record left was in the log at the same offset.
        for record in &after {
            assert!(before.contains(record), "{record:?} was not in the log");
        }
        // The latest value of every key is still there; b's old tombstone and c's older values
        // are gone, c's fresh tombstone stays.
        let latest = |key: &str| {
            before
                .iter()
                .rev()
                .find(|(_, k, _)| k == key)
                .cloned()
                .unwrap()
        };
        for key in ["a", "c", "x"] {
            assert!(after.contains(&latest(key)), "latest {key} kept");
        }
        let cleaned_through = stats.cleaned_through;
        let in_cleaned: Vec<_> = after
            .iter()
            .filter(|(o, _, _)| *o < cleaned_through)
            .collect();
        let b_left = in_cleaned.iter().filter(|(_, k, _)| k == "b").count();
        let a_left = in_cleaned.iter().filter(|(_, k, _)| k == "a").count();
        let segments = log.segment_count();
        assert!(
            b_left <= segments,
            "at most one b per segment (its last record): {b_left}"
        );
        assert!(a_left <= segments + 1, "a superseded values went: {a_left}");

        // Nothing new to clean until another segment closes; a reopen reads the same log.
        assert!(log.clean(now, cleaned_through).unwrap().is_none());
        log.close().unwrap();
        let reopened = PartitionLog::open(dir.path(), log.topic_id(), compact_config()).unwrap();
        assert_eq!(contents(&reopened), after);
        assert_eq!(reopened.log_end_offset(), end);
        assert!(!dir.path().join(CLEANING_DIR).exists());
    }

    #[test]
    fn idempotent_batches_with_survivors_are_kept_whole_and_delete_topics_are_not_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), compact_config()).unwrap();
        let now = DAY_MS;
        log.append_as_leader(batch(&[("k", Some("old")), ("keep", Some("1"))], now, 7), 0)
            .unwrap();
        for i in 0..20 {
            log.append_as_leader(batch(&[("k", Some(&format!("new{i}")))], now, -1), 0)
                .unwrap();
        }
        log.maybe_increment_high_watermark(log.log_end_offset());
        let before = contents(&log);
        log.clean(now, 0).unwrap().expect("a pass");
        let after = contents(&log);
        assert_eq!(
            after[0], before[0],
            "the idempotent batch keeps its superseded record"
        );
        assert_eq!(after[1], before[1]);

        let dir = tempfile::tempdir().unwrap();
        let plain =
            PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), LogConfig::default()).unwrap();
        plain
            .append_as_leader(batch(&[("k", Some("v"))], now, -1), 0)
            .unwrap();
        assert!(plain.clean(now, 0).unwrap().is_none());
    }

    /// [`batch`] as a transactional batch of `producer_id` (epoch 0) from sequence `seq`.
    fn txn_batch(
        records: &[(&str, Option<&str>)],
        timestamp: i64,
        producer_id: i64,
        seq: i32,
    ) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: 0,
                timestamp_type: RecordTimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn aborted_records_go_and_open_transactions_stay_uncleaned() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), uuid::Uuid::new_v4(), compact_config()).unwrap();
        let now = crate::log::now_ms();
        let end = |log: &PartitionLog, pid, commit| {
            let marker = EndTxnMarker {
                commit,
                coordinator_epoch: 0,
            };
            log.append_marker_as_leader(pid, 0, marker, 0)
                .unwrap()
                .base_offset
        };
        // A committed transaction whose only record a later one supersedes.
        let superseded = log
            .append_as_leader(txn_batch(&[("k", Some("superseded"))], now, 10, 0), 0)
            .unwrap()
            .last_offset;
        let superseded_commit_at = end(&log, 10, true);
        log.append_as_leader(batch(&[("k", Some("committed"))], now, -1), 0)
            .unwrap();
        let aborted = log
            .append_as_leader(
                txn_batch(&[("k", Some("aborted")), ("j", Some("aborted"))], now, 5, 0),
                0,
            )
            .unwrap()
            .last_offset;
        let abort_at = end(&log, 5, false);
        log.append_as_leader(txn_batch(&[("m", Some("c6"))], now, 6, 0), 0)
            .unwrap();
        let commit_at = end(&log, 6, true);
        for i in 0..12 {
            log.append_as_leader(batch(&[(&format!("f{i}"), Some("x"))], now, -1), 0)
                .unwrap();
        }
        let open_at = log
            .append_as_leader(txn_batch(&[("open", Some("x"))], now, 8, 0), 0)
            .unwrap()
            .base_offset;
        for i in 0..12 {
            log.append_as_leader(batch(&[("k", Some(&format!("after-open{i}")))], now, -1), 0)
                .unwrap();
        }
        log.maybe_increment_high_watermark(log.log_end_offset());
        assert_eq!(log.last_stable_offset(), open_at);
        assert!(log.segment_count() >= 4, "the test needs several segments");
        let later = now + 2 * DAY_MS;
        log.clean(later, 0).unwrap().expect("a pass");
        let after = contents(&log);
        let values = |key: &str| -> Vec<Option<String>> {
            after
                .iter()
                .filter(|(_, k, _)| k == key)
                .map(|(_, _, v)| v.clone())
                .collect()
        };
        // A batch that ends its segment stays whatever it holds (segments stay contiguous).
        let bases = log.segment_base_offsets();
        let ends_segment = |last: i64| bases.contains(&(last + 1));
        // The aborted write of k neither survives nor shadows the committed one; records at and
        // above the LSO are untouched although they supersede k.
        assert_eq!(
            values("j").is_empty(),
            !ends_segment(aborted),
            "aborted records go"
        );
        let k: Vec<String> = values("k").into_iter().flatten().collect();
        let mut expected = Vec::new();
        if ends_segment(superseded) {
            expected.push("superseded".to_string());
        }
        expected.push("committed".to_string());
        if ends_segment(aborted) {
            expected.push("aborted".to_string());
        }
        expected.extend((0..12).map(|i| format!("after-open{i}")));
        assert_eq!(k, expected);
        assert_eq!(values("m"), vec![Some("c6".to_string())]);
        assert_eq!(values("open"), vec![Some("x".to_string())]);
        let controls: Vec<i64> = {
            let mut out = Vec::new();
            let mut offset = 0;
            while offset < log.log_end_offset() {
                let read = log.read(offset, 1 << 20, i64::MAX).unwrap();
                for b in Batches::new(read.records) {
                    let b = b.unwrap();
                    if b.is_control() {
                        out.push(b.base_offset());
                    }
                    offset = b.last_offset() + 1;
                }
            }
            out
        };
        assert!(
            controls.contains(&commit_at),
            "a marker whose transaction has records left stays"
        );
        // An expired marker goes unless it ends its segment or a batch of its transaction stayed.
        for (marker, data, what) in [
            (abort_at, aborted, "ABORT"),
            (superseded_commit_at, superseded, "COMMIT"),
        ] {
            assert_eq!(
                controls.contains(&marker),
                ends_segment(marker) || ends_segment(data),
                "{what} marker at {marker}"
            );
        }
        assert!(
            !controls.contains(&abort_at) || !controls.contains(&superseded_commit_at),
            "this layout drops at least one marker"
        );
        assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
    }
}
