//! Tests of the partition log: appends, reads, retention, recovery, truncation and producer state.

use std::sync::Arc;

use super::*;
use crate::log::batch::test_support::*;
use crate::log::batch::BatchErrorKind;
use crate::log::producer_state::{snapshot_offsets, snapshot_path, ProducerStateError};
use crate::log::txn_index;
use kafka_protocol::error::ResponseError;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn topic_id() -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(&dir.join("orders-0"), topic_id(), config).unwrap()
}

/// Appends `batches` producer batches of `per` records, record timestamps `ts0 + offset`.
fn produce(
    log: &PartitionLog,
    batches: usize,
    per: usize,
    ts0: i64,
    epoch: i32,
) -> Vec<AppendInfo> {
    (0..batches)
        .map(|_| {
            let leo = log.log_end_offset();
            let timestamps: Vec<i64> = (0..per as i64).map(|i| ts0 + leo + i).collect();
            log.append_as_leader(client_batch(&timestamps, 50), epoch)
                .unwrap()
        })
        .collect()
}

/// Reads the whole log from `from` as parsed batches, checking contiguity.
fn read_all(log: &PartitionLog, from: i64) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let read = log.read(offset, 700, i64::MAX).unwrap();
        assert!(!read.records.is_empty(), "no progress at {offset}");
        for batch in Batches::new(read.records) {
            let batch = batch.unwrap();
            assert!(batch.base_offset() <= offset.max(batch.base_offset()));
            offset = batch.last_offset() + 1;
            out.push(batch);
        }
    }
    out
}

#[test]
fn append_and_read_across_rolled_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let infos = produce(&log, 40, 2, 1000, 3);
    assert_eq!(infos[0].base_offset, 0);
    assert_eq!(infos[39].last_offset, 79);
    assert_eq!(log.log_end_offset(), 80);
    assert!(log.segment_count() > 5, "segments: {}", log.segment_count());

    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 40);
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch.base_offset(), 2 * i as i64);
        assert_eq!(batch.partition_leader_epoch(), 3);
    }
    // Every offset, including ones in the middle of a batch and of a segment, finds its batch.
    for offset in 0..80 {
        let read = log.read(offset, 1, i64::MAX).unwrap();
        let batch = RecordBatch::parse(read.records).unwrap();
        assert!(batch.base_offset() <= offset && offset <= batch.last_offset());
    }
    // The payload is the producer's, byte for byte after the header patches.
    let decoded =
        kafka_protocol::records::RecordBatchDecoder::decode(&mut batches[7].as_bytes().clone())
            .unwrap();
    assert_eq!(decoded.records.len(), 2);
    assert_eq!(decoded.records[1].offset, 15);
    assert_eq!(decoded.records[1].key.as_deref(), Some(&b"key-1"[..]));
}

#[test]
fn an_append_that_would_roll_the_segment_is_told_beforehand() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let batch = client_batch(&[1000, 1001], 50);
    // An empty active segment takes any batch without a roll.
    assert!(!log.append_would_roll(batch.len(), |leo| leo + 1, 1001));
    // Fill the segment up to less than one more batch of its 1000 bytes.
    while log.size_in_bytes() + 2 * batch.len() as u64 <= 1000 {
        produce(&log, 1, 2, 1000, 0);
    }
    let segments = log.segment_count();
    assert!(!log.append_would_roll(batch.len(), |leo| leo + 1, 1001));
    log.append_as_leader(batch.clone(), 0).unwrap();
    assert_eq!(log.segment_count(), segments, "the batch fitted");
    assert!(log.append_would_roll(batch.len(), |leo| leo + 1, 1001));
    log.append_as_leader(batch.clone(), 0).unwrap();
    assert_eq!(
        log.segment_count(),
        segments + 1,
        "the batch rolled the segment"
    );
    // Age counts too (`segment.ms`): a batch far newer than the segment's first.
    assert!(log.append_would_roll(
        batch.len(),
        |leo| leo + 1,
        1001 + LogConfig::default().segment_ms + 1
    ));
}

/// Issue #15: a follower's append that rolls the segment fsyncs on its fetcher's task unless it is
/// told beforehand, from the batch headers alone, and the append goes to the blocking pool.
#[test]
fn a_follower_append_that_would_roll_the_segment_is_told_beforehand() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let len = leader_batch(0, 0, &[1000, 1000]).len() as u64;
    let mut offset = 0;
    let mut next = |count: i64| {
        let batch = leader_batch(offset, 0, &vec![1000; count as usize]);
        offset += count;
        batch
    };
    // Room for one more batch of the segment's 1000 bytes, not two.
    while log.size_in_bytes() + 2 * len <= 1000 {
        let batch = next(2);
        assert!(!log.follower_append_would_roll(&batch));
        log.append_as_follower(batch).unwrap();
    }
    let segments = log.segment_count();
    let (first, second) = (next(2), next(2));
    assert!(!log.follower_append_would_roll(&first));
    // A response that ends in a partial batch: only the whole ones are appended, and they fit.
    let partial = [first.as_ref(), &second[..second.len() / 2]].concat();
    assert!(!log.follower_append_would_roll(&partial));
    // Both batches in one response: the second would not fit.
    let both = [first.as_ref(), second.as_ref()].concat();
    assert!(log.follower_append_would_roll(&both));
    log.append_as_follower(Bytes::from(both)).unwrap();
    assert_eq!(
        log.segment_count(),
        segments + 1,
        "the response rolled the segment"
    );
    // Nothing whole, nothing to roll.
    assert!(!log.follower_append_would_roll(&second[..10]));
    assert!(!log.follower_append_would_roll(&[]));
}

#[test]
fn reads_respect_bounds_and_kip74() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    produce(&log, 5, 4, 0, 0);
    let first = log.read(0, 1, i64::MAX).unwrap().records;
    assert_eq!(
        RecordBatch::parse(first.clone()).unwrap().last_offset(),
        3,
        "KIP-74"
    );
    let two = log.read(0, first.len() * 2 + 1, i64::MAX).unwrap().records;
    assert_eq!(two.len(), first.len() * 2);

    assert!(matches!(
        log.read(21, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange {
            offset: 21,
            log_start_offset: 0,
            log_end_offset: 20
        })
    ));
    assert!(log.read(20, 100, i64::MAX).unwrap().records.is_empty());
    // A consumer bound (the high watermark) stops before a batch that crosses it.
    assert!(log.maybe_increment_high_watermark(10));
    let read = log.read(0, 1 << 20, log.high_watermark()).unwrap();
    assert_eq!(read.high_watermark, 10);
    assert_eq!(read.records.len(), first.len() * 2);
    assert!(log.read(12, 1 << 20, 10).unwrap().records.is_empty());
}

#[test]
fn finds_offsets_by_timestamp_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 30, 2, 10_000, 1);
    let found = log.offset_for_timestamp(10_041).unwrap().unwrap();
    assert_eq!(
        (found.offset, found.timestamp, found.leader_epoch),
        (41, 10_041, Some(1))
    );
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
    assert_eq!(log.offset_for_timestamp(10_060).unwrap(), None);
    let max = log.offset_of_max_timestamp().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (59, 10_059));
}

#[test]
fn retention_by_time_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(7 * DAY_MS),
        ..small_config()
    };
    let log = open(dir.path(), config.clone());
    let now = now_ms();
    produce(&log, 20, 2, now - 10 * DAY_MS, 0);
    produce(&log, 20, 2, now, 0);
    let segments_before = log.segment_count();

    // Nothing is deleted above the high watermark.
    assert!(log.apply_retention(now).unwrap().is_empty());
    log.maybe_increment_high_watermark(log.log_end_offset());
    let deleted = log.apply_retention(now).unwrap();
    assert!(!deleted.is_empty());
    assert!(deleted.iter().all(|d| d.reason == RetentionReason::Time));
    assert_eq!(log.segment_count(), segments_before - deleted.len());
    let start = log.log_start_offset();
    assert_eq!(start, deleted.last().unwrap().next_offset);
    assert!(
        start > 0 && start <= 40,
        "only old segments go: start {start}"
    );
    assert!(matches!(
        log.read(start - 1, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(!log.read(start, 100, i64::MAX).unwrap().records.is_empty());
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, start);
    assert!(log.apply_retention(now).unwrap().is_empty(), "idempotent");

    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.log_start_offset(), start, "checkpointed");
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: None,
        retention_bytes: Some(2500),
        ..small_config()
    };
    let log = open(dir.path(), config);
    produce(&log, 40, 2, now_ms(), 0);
    log.maybe_increment_high_watermark(log.log_end_offset());
    let deleted = log.apply_retention(now_ms()).unwrap();
    assert!(!deleted.is_empty());
    assert!(deleted.iter().all(|d| d.reason == RetentionReason::Size));
    assert!(log.size_in_bytes() >= 2500 - 1000, "no more than needed");
    assert!(log.size_in_bytes() < 2500 + 1000);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert_eq!(log.log_end_offset(), 80);
    assert!(matches!(
        log.read(log.log_start_offset() - 1, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

/// DeleteRecords (Kafka's `UnifiedLog.maybeIncrementLogStartOffset`): the start moves into the middle
/// of a segment, the closed segments wholly below it go, reads below it are out of range, and the
/// new start survives a restart, clean or not.
#[test]
fn moving_the_log_start_deletes_the_segments_below_and_is_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 20, 2, now_ms(), 0);
    produce(&log, 20, 2, now_ms(), 1);
    log.maybe_increment_high_watermark(60);
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 4, "small segments: {bases:?}");
    // Inside a segment and inside a batch (batches hold two records: 30..=31).
    let target = 31;
    let holding = *bases.iter().rfind(|b| **b <= target).unwrap();
    assert!(holding < target);
    assert!(log.maybe_increment_log_start_offset(target).unwrap());
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(
        log.segment_base_offsets()[0],
        holding,
        "only whole segments go"
    );
    assert!(log.segment_base_offsets().iter().all(|b| bases.contains(b)));
    for base in bases.iter().filter(|b| **b < holding) {
        let file =
            super::super::segment::segment_file(&dir.path().join("orders-0"), *base, LOG_SUFFIX);
        assert!(!file.exists(), "{} still there", file.display());
    }
    assert!(matches!(
        log.read(target - 1, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange {
            log_start_offset: 31,
            ..
        })
    ));
    let read = log.read(target, 100, i64::MAX).unwrap();
    let first = Batches::new(read.records).next().unwrap().unwrap();
    assert_eq!(
        first.base_offset(),
        30,
        "the batch holding the start, whole"
    );
    assert_eq!(read.log_start_offset, target);
    assert!(log.offset_for_timestamp(0).unwrap().unwrap().offset >= target);
    assert_eq!(
        log.epoch_entries()
            .first()
            .map(|e| (e.epoch, e.start_offset)),
        Some((0, target)),
        "no epoch entry starts below the log start"
    );
    assert_eq!(log.high_watermark(), 60);

    // Never backwards, and never past the high watermark.
    assert!(!log.maybe_increment_log_start_offset(10).unwrap());
    assert!(!log.maybe_increment_log_start_offset(target).unwrap());
    assert_eq!(log.log_start_offset(), target);
    let beyond = log.maybe_increment_log_start_offset(61).unwrap_err();
    assert!(matches!(
        beyond,
        LogError::LogStartBeyondHighWatermark {
            offset: 61,
            high_watermark: 60
        }
    ));
    assert_eq!(beyond.kafka_error(), ResponseError::OffsetOutOfRange);
    assert!(log.is_open(), "a refused move is no storage failure");

    // Checkpointed at once: an unclean stop keeps it, and so does a clean one.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segment_base_offsets()[0], holding);
    assert!(log.read(target - 1, 100, i64::MAX).is_err());
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), target);
    // Up to the high watermark (DeleteRecords -1): the active segment stays, wholly below it.
    let leo = log.log_end_offset();
    log.maybe_increment_high_watermark(leo);
    assert!(log.maybe_increment_log_start_offset(leo).unwrap());
    assert_eq!(log.segment_count(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (leo, leo));
    assert!(log.read(leo, 100, i64::MAX).unwrap().records.is_empty());
}

/// A segment that was active when the log start passed it goes at the first retention run after it
/// rolled, also on a compact-only topic (Kafka's `deleteLogStartOffsetBreachedSegments` runs
/// whatever the cleanup policy).
#[test]
fn retention_deletes_segments_the_log_start_passed_once_they_rolled() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: None,
        cleanup_delete: false,
        cleanup_compact: true,
        ..small_config()
    };
    let log = open(dir.path(), config.clone());
    produce(&log, 3, 2, now_ms(), 0);
    log.maybe_increment_high_watermark(6);
    assert!(log.maybe_increment_log_start_offset(6).unwrap());
    assert_eq!(log.segment_base_offsets(), vec![0]);
    // The next batch rolls the segment: it ends exactly at the log start.
    log.update_config(LogConfig {
        segment_bytes: log.size_in_bytes(),
        ..config
    });
    produce(&log, 30, 2, now_ms(), 0);
    log.maybe_increment_high_watermark(log.log_end_offset());
    assert!(log.segment_count() > 2);
    let deleted = log.apply_retention(now_ms()).unwrap();
    assert_eq!(
        deleted
            .iter()
            .map(|d| (d.base_offset, d.reason))
            .collect::<Vec<_>>(),
        vec![(0, RetentionReason::LogStartOffset)]
    );
    assert_eq!(log.log_start_offset(), 6);
    assert!(log.segment_base_offsets()[0] <= 6);
    assert!(
        log.apply_retention(now_ms()).unwrap().is_empty(),
        "compact-only keeps the rest"
    );
}

#[test]
fn rolls_when_the_active_segment_is_older_than_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_ms: 60_000,
            ..LogConfig::default()
        },
    );
    let now = now_ms();
    log.append_as_leader(client_batch(&[now - 120_000], 10), 0)
        .unwrap();
    log.append_as_leader(client_batch(&[now - 119_000], 10), 0)
        .unwrap();
    assert_eq!(
        log.segment_count(),
        1,
        "within segment.ms of the first batch"
    );
    log.append_as_leader(client_batch(&[now], 10), 0).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

/// A small deterministic generator (no extra crate; failures replay exactly).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn never_panics_on_random_bytes_from_disk() {
    let mut opened = 0;
    for seed in 1..40u64 {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        produce(&log, 8, 2, 0, 1);
        let bases = log.segment_base_offsets();
        let clean = seed % 2 == 0;
        if clean {
            log.close().unwrap();
        }
        drop(log);
        let part = dir.path().join("orders-0");
        let victim = bases[seed as usize % bases.len()];
        let suffix = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX][seed as usize % 3];
        let path = super::super::segment::segment_file(&part, victim, suffix);
        let mut bytes = fs::read(&path).unwrap();
        let at = noise(seed, 1)[0] as usize % bytes.len().max(1);
        let junk = noise(seed * 7919, 1 + seed as usize * 3);
        bytes.truncate(at);
        bytes.extend_from_slice(&junk);
        fs::write(&path, &bytes).unwrap();
        for name in ["leader-epoch-checkpoint", HIGH_WATERMARK_CHECKPOINT] {
            if seed % 5 == 0 {
                fs::write(part.join(name), noise(seed, 20)).unwrap();
            }
        }

        // Opening may refuse a log it cannot trust, but must not panic; if it opens, every read
        // within its bounds works and returns whole, valid batches.
        let log = match PartitionLog::open(&part, topic_id(), small_config()) {
            Ok(log) => log,
            Err(e) => {
                eprintln!("seed {seed}: refused: {e}");
                continue;
            }
        };
        opened += 1;
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let records = log.read(offset, 300, i64::MAX).unwrap().records;
            let mut progressed = false;
            for batch in Batches::new(records) {
                offset = batch.unwrap().last_offset() + 1;
                progressed = true;
            }
            assert!(progressed, "seed {seed}: stuck at {offset}");
        }
        let _ = log.offset_for_timestamp(5);
        let _ = log.offset_of_max_timestamp();
        log.append_as_leader(client_batch(&[1], 10), 1).unwrap();
    }
    // Recovery and index rebuilds handle damage to one file; refusing is for worse than that.
    assert_eq!(opened, 39);
}

fn active_log_file(log: &PartitionLog) -> PathBuf {
    let base = *log.segment_base_offsets().last().unwrap();
    super::super::segment::segment_file(log.dir(), base, LOG_SUFFIX)
}

#[test]
fn recovers_a_torn_tail_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let infos = produce(&log, 12, 2, 0, 2);
    let path = active_log_file(&log);
    drop(log); // no close: an unclean shutdown
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let log = open(dir.path(), small_config());
    assert_eq!(
        log.log_end_offset(),
        infos[11].base_offset,
        "back to the last whole batch"
    );
    assert_eq!(read_all(&log, 0).len(), 11);
    let next = log.append_as_leader(client_batch(&[5], 10), 2).unwrap();
    assert_eq!(next.base_offset, infos[11].base_offset);
}

#[test]
fn recovers_from_garbage_after_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 12, 2, 0, 2);
    let path = active_log_file(&log);
    drop(log);
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, &[0x5a; 333]).unwrap();
    drop(file);

    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(read_all(&log, 0).len(), 12);
}

#[test]
fn epoch_cache_tracks_appends_and_is_rebuilt_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 3, 2, 0, 1); // 0..6
    assert!(log.assign_leader_epoch(3).unwrap()); // a new leader at LEO 6
    produce(&log, 3, 2, 0, 3); // 6..12
    produce(&log, 3, 2, 0, 5); // 12..18
    assert!(matches!(
        log.append_as_leader(client_batch(&[1], 10), 4),
        Err(LogError::StaleLeaderEpoch {
            epoch: 4,
            latest: 5
        })
    ));
    let expected = vec![
        EpochEntry {
            epoch: 1,
            start_offset: 0,
        },
        EpochEntry {
            epoch: 3,
            start_offset: 6,
        },
        EpochEntry {
            epoch: 5,
            start_offset: 12,
        },
    ];
    assert_eq!(log.epoch_entries(), expected);
    let eo = |e| log.end_offset_for_epoch(e).unwrap();
    assert_eq!(
        eo(5),
        EpochEndOffset {
            leader_epoch: 5,
            end_offset: 18
        }
    );
    assert_eq!(
        eo(4),
        EpochEndOffset {
            leader_epoch: 3,
            end_offset: 12
        }
    );
    assert_eq!(
        eo(1),
        EpochEndOffset {
            leader_epoch: 1,
            end_offset: 6
        }
    );
    assert_eq!(
        eo(0),
        EpochEndOffset {
            leader_epoch: 0,
            end_offset: 0
        }
    );
    assert_eq!(
        eo(6),
        EpochEndOffset {
            leader_epoch: -1,
            end_offset: -1
        }
    );
    log.close().unwrap();

    let checkpoint = dir
        .path()
        .join("orders-0")
        .join(super::super::epoch::CHECKPOINT_FILE);
    fs::remove_file(&checkpoint).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.epoch_entries(), expected, "rebuilt from batch headers");
    log.close().unwrap();

    fs::write(&checkpoint, "0\n7\n1 0\n").unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(
        log.epoch_entries(),
        expected,
        "rebuilt from a corrupt checkpoint"
    );
}

#[test]
fn truncation_cuts_data_indexes_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 4, 5, 0, 1); // 0..20
    produce(&log, 4, 5, 0, 2); // 20..40
    produce(&log, 4, 5, 0, 3); // 40..60
    log.maybe_increment_high_watermark(50);
    let segments = log.segment_count();
    assert!(segments > 3);

    assert!(log.truncate_to(25).unwrap());
    assert_eq!(log.log_end_offset(), 25);
    assert_eq!(log.high_watermark(), 25);
    assert!(log.flushed_offset() <= 25);
    assert!(log.segment_count() < segments);
    assert_eq!(
        log.epoch_entries(),
        vec![
            EpochEntry {
                epoch: 1,
                start_offset: 0
            },
            EpochEntry {
                epoch: 2,
                start_offset: 20
            }
        ]
    );
    assert_eq!(read_all(&log, 0).len(), 5);
    assert!(matches!(
        log.read(26, 1, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    // Mid-batch: the whole batch holding the offset goes.
    assert!(log.truncate_to(22).unwrap());
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(
        log.epoch_entries(),
        vec![EpochEntry {
            epoch: 1,
            start_offset: 0
        }]
    );
    assert!(!log.truncate_to(30).unwrap(), "nothing above the LEO");

    // A follower continues from the new end.
    let info = log
        .append_as_follower(leader_batch(20, 4, &[1, 2]))
        .unwrap()
        .unwrap();
    assert_eq!((info.base_offset, info.last_offset), (20, 21));
    assert_eq!(log.latest_epoch(), Some(4));
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 22);
    assert_eq!(read_all(&log, 0).len(), 5);
}

#[test]
fn truncation_never_goes_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 10, 5, 0, 1);
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (100, 100, 100)
    );
    assert_eq!(log.segment_base_offsets(), vec![100]);
    assert!(log.epoch_entries().is_empty());
    assert!(matches!(
        log.truncate_to(99),
        Err(LogError::TruncateBelowLogStart {
            offset: 99,
            log_start_offset: 100
        })
    ));
    log.append_as_follower(leader_batch(100, 7, &[1])).unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 101));
}

#[test]
fn reopening_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    produce(&log, 25, 2, 5000, 2);
    log.maybe_increment_high_watermark(40);
    let before = read_all(&log, 0);
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    assert!(
        !log.dir().join(CLEAN_SHUTDOWN_FILE).exists(),
        "the marker is the data directory's (LogManager::close_all)"
    );
    assert!(matches!(
        log.append_as_leader(client_batch(&[1], 1), 2),
        Err(LogError::Closed { .. })
    ));
    log.close().unwrap(); // idempotent
    drop(log);

    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(log.high_watermark(), 40);
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.offset_for_timestamp(5033).unwrap().unwrap().offset, 33);
    assert_eq!(log.offset_of_max_timestamp().unwrap().unwrap().offset, 49);
}

#[test]
fn a_directory_of_another_topic_incarnation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), LogConfig::default()).close().unwrap();
    let other = Uuid::from_u128(7);
    match PartitionLog::open(&dir.path().join("orders-0"), other, LogConfig::default()) {
        Err(LogError::InconsistentTopicId {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (other, topic_id()));
        }
        other => panic!("expected InconsistentTopicId, got {other:?}"),
    }
}

#[test]
fn leader_appends_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 300,
            ..LogConfig::default()
        },
    );
    assert!(matches!(
        log.append_as_leader(client_batch(&[1, 2, 3], 200), 0),
        Err(LogError::MessageTooLarge { max: 300, .. })
    ));
    let mut corrupt = client_batch(&[1], 10).to_vec();
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    match log.append_as_leader(Bytes::from(corrupt), 0) {
        Err(LogError::InvalidBatch(e)) => assert_eq!(e.kind(), BatchErrorKind::CorruptMessage),
        other => panic!("expected a corrupt batch error, got {other:?}"),
    }
    let mut two = client_batch(&[1], 10).to_vec();
    two.extend_from_slice(&client_batch(&[1], 10));
    match log.append_as_leader(Bytes::from(two), 0) {
        Err(LogError::InvalidBatch(e)) => assert_eq!(e.kind(), BatchErrorKind::InvalidRecord),
        other => panic!("expected an invalid record error, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was appended");
}

#[test]
fn log_append_time_topics_stamp_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    let before = now_ms();
    let info = log.append_as_leader(client_batch(&[1, 2], 10), 0).unwrap();
    assert!(info.log_append_time_ms >= before);
    let batch = RecordBatch::parse(log.read(0, 1, i64::MAX).unwrap().records).unwrap();
    assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(batch.max_timestamp(), info.log_append_time_ms);
    let found = log.offset_for_timestamp(before).unwrap().unwrap();
    assert_eq!(
        (found.offset, found.timestamp),
        (0, info.log_append_time_ms)
    );
}

#[test]
fn log_append_time_patches_only_the_header_of_a_compressed_batch() {
    use kafka_protocol::records::Compression as Wire;
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    let sent = keyed_batch(&[(Some("a"), 1_000), (Some("b"), 1_007)], Wire::Zstd);
    let info = log.append_as_leader(sent.clone(), 3).unwrap();
    let stored = log.read(0, 1 << 20, i64::MAX).unwrap().records;
    let batch = RecordBatch::parse(stored.clone()).unwrap();
    assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(batch.max_timestamp(), info.log_append_time_ms);
    // BaseTimestamp and the compressed records are the producer's bytes.
    assert_eq!(batch.base_timestamp(), 1_000);
    assert_eq!(stored[61..], sent[61..]);
}

#[test]
fn refused_records_leave_the_log_untouched() {
    use crate::log::validator::RecordErrorKind;
    use kafka_protocol::records::Compression as Wire;
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            cleanup_compact: true,
            message_timestamp_before_max_ms: DAY_MS,
            ..LogConfig::default()
        },
    );
    let now = now_ms();
    let keyless = keyed_batch(&[(Some("a"), now), (None, now)], Wire::Gzip);
    match log.append_as_leader(keyless, 0) {
        Err(e @ LogError::RecordsRejected(_)) => {
            assert_eq!(e.kafka_error(), ResponseError::InvalidRecord);
            let LogError::RecordsRejected(r) = e else {
                unreachable!()
            };
            assert_eq!(r.errors.len(), 1);
            assert_eq!(r.errors[0].batch_index, 1);
            assert!(r.errors[0].message.ends_with("in topic partition orders-0"));
        }
        other => panic!("expected records rejected, got {other:?}"),
    }
    let old = keyed_batch(&[(Some("a"), now - 2 * DAY_MS)], Wire::None);
    match log.append_as_leader(old, 0) {
        Err(LogError::RecordsRejected(r)) => {
            assert_eq!(r.kind(), RecordErrorKind::InvalidTimestamp);
            assert_eq!(
                LogError::RecordsRejected(r).kafka_error(),
                ResponseError::InvalidTimestamp
            );
        }
        other => panic!("expected records rejected, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was appended");
    log.append_as_leader(keyed_batch(&[(Some("a"), now)], Wire::Lz4), 0)
        .unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn a_create_time_batch_carries_its_largest_record_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let sent = client_batch(&[1_000, 1_009, 1_004], 10);
    // A producer's header claiming an older MaxTimestamp than its records hold.
    let mut lying = sent.to_vec();
    lying[35..43].copy_from_slice(&1_001i64.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let info = log.append_as_leader(Bytes::from(lying), 0).unwrap();
    assert_eq!(info.max_timestamp, 1_009);
    let batch = RecordBatch::parse(log.read(0, 1 << 20, i64::MAX).unwrap().records).unwrap();
    assert_eq!(batch.max_timestamp(), 1_009);
}

#[test]
fn follower_appends_keep_the_leaders_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut fetched = leader_batch(0, 1, &[1, 2, 3]).to_vec();
    fetched.extend_from_slice(&leader_batch(3, 2, &[4]));
    let partial = leader_batch(4, 2, &[5]);
    fetched.extend_from_slice(&partial[..partial.len() - 10]);
    let info = log
        .append_as_follower(Bytes::from(fetched))
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (0, 3, 2)
    );
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(
        log.epoch_entries(),
        vec![
            EpochEntry {
                epoch: 1,
                start_offset: 0
            },
            EpochEntry {
                epoch: 2,
                start_offset: 3
            }
        ]
    );
    assert!(matches!(
        log.append_as_follower(leader_batch(2, 2, &[1])),
        Err(LogError::UnexpectedAppendOffset {
            base_offset: 2,
            expected_at_least: 4
        })
    ));
    let mut bad = leader_batch(4, 2, &[1]).to_vec();
    let n = bad.len();
    bad[n - 3] ^= 0xff;
    assert!(matches!(
        log.append_as_follower(Bytes::from(bad)),
        Err(LogError::InvalidBatch(BatchError::CrcMismatch { .. }))
    ));
    assert_eq!(log.append_as_follower(partial.slice(..20)).unwrap(), None);
    assert_eq!(log.log_end_offset(), 4);
    // Many batches in one call roll segments as they go.
    let mut many = Vec::new();
    for i in 0..30 {
        many.extend_from_slice(&leader_batch(4 + i * 2, 2, &[1, 2]));
    }
    log.append_as_follower(Bytes::from(many)).unwrap();
    assert_eq!(log.log_end_offset(), 64);
    assert!(log.segment_count() > 1);
    assert_eq!(read_all(&log, 0).len(), 32);
}

#[test]
fn one_fsync_covers_every_append_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let a = log.append_as_leader(client_batch(&[1], 10), 0).unwrap();
    let b = log.append_as_leader(client_batch(&[2], 10), 0).unwrap();
    assert!(a.flush_required && b.flush_required);
    assert_eq!(log.flushed_offset(), 0);
    assert_eq!(log.flush_to(a.next_offset()).unwrap(), 2, "covers b too");
    assert_eq!(log.fsync_count(), 1);
    assert_eq!(log.flush_to(b.next_offset()).unwrap(), 2);
    assert_eq!(log.fsync_count(), 1, "b needed no fsync of its own");

    // Concurrent appenders: every one is covered when flush_to returns, with at most one fsync each.
    let log = Arc::new(log);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let info = log.append_as_leader(client_batch(&[3], 10), 0).unwrap();
                    let flushed = log.flush_to(info.next_offset()).unwrap();
                    assert!(flushed >= info.next_offset());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.flushed_offset(), 162);
    assert!(log.fsync_count() <= 161);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_waiters_share_the_flushers_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for _ in 0..20 {
                    let info = log.append_as_leader(client_batch(&[3], 10), 0).unwrap();
                    let flushed = log.flushed_to(info.next_offset()).await.unwrap();
                    assert!(flushed >= info.next_offset());
                    assert!(log.flushed_offset() >= info.next_offset());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.flushed_offset(), 160);
    assert!(log.fsync_count() <= 160, "{} fsyncs", log.fsync_count());
    // Already durable: no fsync, no flusher.
    assert_eq!(log.flushed_to(100).await.unwrap(), 160);
    let fsyncs = log.fsync_count();
    assert_eq!(log.flushed_to(160).await.unwrap(), 160);
    assert_eq!(log.fsync_count(), fsyncs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_reaches_every_async_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let next = log
        .append_as_leader(client_batch(&[1], 10), 0)
        .unwrap()
        .next_offset();
    log.fail_next_fsync();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.flushed_to(next).await })
        })
        .collect();
    for waiter in waiters {
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("a waiter was left waiting")
            .unwrap();
        assert!(result.is_err(), "acknowledged without an fsync: {result:?}");
    }
    assert!(log.is_offline());
    assert_eq!(log.flushed_offset(), 0);
    assert!(log.flushed_to(next).await.is_err());
}

/// A truncation while the flusher fsyncs (a leader that became a follower and cut its log to the
/// new leader's) makes that round count for nothing. Its waiters, and appends after the cut waited
/// for at offsets no higher than the round had been asked for, must still get an fsync. Before, a
/// waiter woken by that round that asked again before the flusher decided whether to go on added
/// nothing to what the flusher had been asked, so the flusher stopped and the waiter waited for a
/// round that never came (a follower's fetcher, stuck in its flush, would never fetch again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_cut_short_by_a_truncation_leaves_no_waiter_without_an_fsync() {
    fn gate() -> (
        Gate,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (reached, reached_rx) = std::sync::mpsc::channel();
        let (proceed_tx, proceed) = std::sync::mpsc::channel();
        (Gate { reached, proceed }, reached_rx, proceed_tx)
    }
    async fn reached(rx: std::sync::mpsc::Receiver<()>) {
        tokio::task::spawn_blocking(move || rx.recv().unwrap())
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    for _ in 0..3 {
        log.append_as_leader(client_batch(&[1], 10), 0).unwrap();
    }
    let (in_fsync, fsync_reached, fsync_proceed) = gate();
    let (after_round, round_reached, round_proceed) = gate();
    log.hold_next_fsync(in_fsync);
    log.hold_after_next_round(after_round);
    let waiter = |offset: i64| {
        let log = Arc::clone(&log);
        tokio::spawn(async move { log.flushed_to(offset).await })
    };
    let first = waiter(3);
    reached(fsync_reached).await;
    // The fsync of offsets 0-2 is under way: cut the log to 1 and append up to 2.
    assert!(log.truncate_to(1).unwrap());
    let next = log
        .append_as_leader(client_batch(&[2], 10), 1)
        .unwrap()
        .next_offset();
    assert_eq!(next, 2);
    fsync_proceed.send(()).unwrap();
    // The round is over and has woken the first waiter, which asks again (the round did not count);
    // a second waiter asks meanwhile.
    reached(round_reached).await;
    let second = waiter(next);
    // Let go from a thread of its own: the waiters may block the runtime's workers on the lock the
    // held flusher keeps.
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        round_proceed.send(()).unwrap();
    });
    for waiter in [first, second] {
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("a waiter was left without an fsync")
            .unwrap()
            .unwrap();
        assert_eq!(flushed, 2);
    }
    release.join().unwrap();
    assert_eq!(log.flushed_offset(), 2);
}

/// Issue #15: a deferred fsync starts only once a follower reports a copy of the first deferred
/// append, and then covers every deferred append in one fsync; a waiter that needs it first still
/// gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_flush_starts_when_a_follower_has_a_copy_and_covers_every_deferral() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let first = log.append_as_leader(client_batch(&[1], 10), 0).unwrap();
    log.defer_flush(first.next_offset());
    let second = log.append_as_leader(client_batch(&[2], 10), 0).unwrap();
    log.defer_flush(second.next_offset());
    // A follower below the first deferred append: nothing starts.
    log.flush_deferred(first.base_offset);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!((log.fsync_count(), log.flushed_offset()), (0, 0));
    log.flush_deferred(first.next_offset());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.flushed_offset() < second.next_offset() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deferred fsync never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(log.fsync_count(), 1, "one fsync for both deferred appends");
    // Covered: a later report asks for nothing more.
    log.flush_deferred(second.next_offset());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(log.fsync_count(), 1);
    // With no follower report, whoever needs it durable asks for the fsync itself.
    let third = log.append_as_leader(client_batch(&[3], 10), 0).unwrap();
    log.defer_flush(third.next_offset());
    assert_eq!(
        log.flushed_to(third.next_offset()).await.unwrap(),
        third.next_offset()
    );
    assert_eq!(log.fsync_count(), 2);
}

/// Appends `batches` idempotent batches of `per` records of producer `pid`, epoch 0, sequences
/// from `seq0`.
fn produce_idempotent(
    log: &PartitionLog,
    pid: i64,
    seq0: i32,
    batches: usize,
    per: usize,
) -> Vec<AppendInfo> {
    (0..batches)
        .map(|i| {
            let seq = seq0 + (i * per) as i32;
            let info = log
                .append_as_leader(producer_batch(pid, 0, seq, per), 1)
                .unwrap();
            assert!(
                !info.duplicate,
                "batch {i} of producer {pid} was taken for a retry"
            );
            info
        })
        .collect()
}

/// What a retry of `batch` gets: `Ok((base offset, last offset))` of a duplicate, else the error.
fn retry(log: &PartitionLog, batch: Bytes) -> std::result::Result<(i64, i64), LogError> {
    let leo = log.log_end_offset();
    let info = log.append_as_leader(batch, 1)?;
    assert!(info.duplicate, "appended at {} instead", info.base_offset);
    assert_eq!(log.log_end_offset(), leo, "a duplicate writes nothing");
    Ok((info.base_offset, info.last_offset))
}

#[test]
fn idempotent_producers_get_dedup_gaps_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append_as_leader(client_batch(&[1, 2], 10), 1).unwrap(); // 0..2, not idempotent
    let a = log.append_as_leader(producer_batch(7, 0, 0, 3), 1).unwrap(); // 2..5
    let b = log.append_as_leader(producer_batch(7, 0, 3, 2), 1).unwrap(); // 5..7
    assert_eq!((a.base_offset, b.base_offset), (2, 5));
    assert_eq!(retry(&log, producer_batch(7, 0, 0, 3)).unwrap(), (2, 4));
    assert_eq!(retry(&log, producer_batch(7, 0, 3, 2)).unwrap(), (5, 6));
    // Non-idempotent batches are never deduplicated.
    let again = log.append_as_leader(client_batch(&[1, 2], 10), 1).unwrap();
    assert_eq!(again.base_offset, 7);
    assert!(matches!(
        log.append_as_leader(producer_batch(7, 0, 6, 1), 1),
        Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
            expected: 5,
            found: 6,
            ..
        }))
    ));
    // A bumped epoch restarts at 0 and fences the old one.
    assert!(matches!(
        log.append_as_leader(producer_batch(7, 1, 5, 1), 1),
        Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
            expected: 0,
            ..
        }))
    ));
    assert_eq!(
        log.append_as_leader(producer_batch(7, 1, 0, 1), 1)
            .unwrap()
            .base_offset,
        9
    );
    assert!(matches!(
        log.append_as_leader(producer_batch(7, 0, 5, 1), 1),
        Err(LogError::Producer(
            ProducerStateError::InvalidProducerEpoch {
                epoch: 0,
                current_epoch: 1,
                ..
            }
        ))
    ));
    assert!(matches!(
        log.append_as_leader(producer_batch(8, 0, -1, 1), 1),
        Err(LogError::Producer(
            ProducerStateError::InvalidSequence { .. }
        ))
    ));
    // A producer never seen starts at any sequence.
    assert_eq!(
        log.append_as_leader(producer_batch(9, 3, 500, 2), 1)
            .unwrap()
            .base_offset,
        10
    );
    assert_eq!(log.log_end_offset(), 12);
    assert!(log.is_open(), "refusals do not take the log offline");
}

#[test]
fn concurrent_retries_of_one_batch_append_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    produce_idempotent(&log, 7, 0, 1, 2);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let info = log.append_as_leader(producer_batch(7, 0, 2, 3), 1).unwrap();
                (info.base_offset, info.duplicate)
            })
        })
        .collect();
    let results: Vec<(i64, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|(base, _)| *base == 2), "{results:?}");
    assert_eq!(results.iter().filter(|(_, dup)| !dup).count(), 1);
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn producer_state_survives_restarts_and_corrupt_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let infos = produce_idempotent(&log, 7, 0, 30, 2);
    produce_idempotent(&log, 8, 100, 3, 1);
    assert!(log.segment_count() > 3);
    let snapshots = snapshot_offsets(log.dir()).unwrap();
    assert_eq!(
        snapshots,
        log.segment_base_offsets()[1..].to_vec(),
        "one snapshot per roll"
    );
    let last = infos[29].clone();
    log.close().unwrap();
    assert!(snapshot_path(log.dir(), log.log_end_offset()).exists());
    drop(log);

    // Clean restart: the snapshot at the LEO.
    let log = open(dir.path(), small_config());
    assert_eq!(
        retry(&log, producer_batch(7, 0, 58, 2)).unwrap(),
        (last.base_offset, last.last_offset)
    );
    assert_eq!(
        retry(&log, producer_batch(7, 0, 50, 2)).unwrap().0,
        infos[25].base_offset
    );
    produce_idempotent(&log, 7, 60, 2, 2);
    let leo = log.log_end_offset();
    drop(log); // a crash: no snapshot at the LEO

    // Unclean restart: the latest roll snapshot plus the headers after it.
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(retry(&log, producer_batch(7, 0, 62, 2)).unwrap().1, leo - 1);
    assert!(matches!(
        log.append_as_leader(producer_batch(7, 0, 66, 1), 1),
        Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
            expected: 64,
            ..
        }))
    ));
    log.close().unwrap();
    drop(log);

    // Every snapshot corrupt: all ignored, the state is rebuilt from the whole log.
    for offset in snapshot_offsets(&dir.path().join("orders-0")).unwrap() {
        let path = snapshot_path(&dir.path().join("orders-0"), offset);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x01;
        fs::write(&path, bytes).unwrap();
    }
    let log = open(dir.path(), small_config());
    assert_eq!(retry(&log, producer_batch(7, 0, 62, 2)).unwrap().1, leo - 1);
    assert_eq!(retry(&log, producer_batch(8, 0, 102, 1)).unwrap().0, 62);
    assert_eq!(
        snapshot_offsets(log.dir()).unwrap(),
        vec![leo],
        "corrupt snapshots deleted; one written after the replay"
    );
}

#[test]
fn a_follower_copies_producer_state_so_a_new_leader_deduplicates() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(dir.path(), small_config());
    let infos = produce_idempotent(&leader, 7, 0, 12, 2);
    let follower =
        PartitionLog::open(&dir.path().join("orders-1"), topic_id(), small_config()).unwrap();
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let read = leader.read(offset, 300, i64::MAX).unwrap();
        let info = follower.append_as_follower(read.records).unwrap().unwrap();
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.log_end_offset(), 24);
    // After a failover the follower leads; the producer's retries of in-flight batches find their
    // original offsets, and the next new batch continues the sequence.
    for (i, original) in infos.iter().enumerate().skip(7) {
        assert_eq!(
            retry(&follower, producer_batch(7, 0, (i * 2) as i32, 2)).unwrap(),
            (original.base_offset, original.last_offset)
        );
    }
    assert_eq!(
        follower
            .append_as_leader(producer_batch(7, 0, 24, 2), 2)
            .unwrap()
            .base_offset,
        24
    );
}

#[test]
fn truncation_rebuilds_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let infos = produce_idempotent(&log, 7, 0, 40, 2); // seq 2i at offset 2i
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    // Batches 0..=24 stay: the last five (20..=24) are the window again, though 25..=39 had
    // pushed them out.
    assert!(log.truncate_to(infos[25].base_offset).unwrap());
    assert_eq!(log.log_end_offset(), 50);
    assert!(snapshot_offsets(log.dir())
        .unwrap()
        .iter()
        .all(|o| *o <= log.log_end_offset()));
    assert_eq!(retry(&log, producer_batch(7, 0, 40, 2)).unwrap().0, 40);
    assert_eq!(retry(&log, producer_batch(7, 0, 48, 2)).unwrap().0, 48);
    assert!(matches!(
        log.append_as_leader(producer_batch(7, 0, 52, 2), 1),
        Err(LogError::Producer(ProducerStateError::OutOfOrderSequence {
            expected: 50,
            ..
        }))
    ));
    assert_eq!(
        log.append_as_leader(producer_batch(7, 0, 50, 2), 1)
            .unwrap()
            .base_offset,
        50,
        "the truncated batch is written again, not taken for a duplicate"
    );
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(retry(&log, producer_batch(7, 0, 50, 2)).unwrap().0, 50);

    log.truncate_fully_and_start_at(100).unwrap();
    assert!(snapshot_offsets(log.dir()).unwrap().is_empty());
    assert_eq!(
        log.append_as_leader(producer_batch(7, 0, 30, 2), 1)
            .unwrap()
            .base_offset,
        100,
        "an emptied log forgets its producers"
    );
}

#[test]
fn retention_deletes_old_snapshots_but_keeps_producers() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: None,
        retention_bytes: Some(1500),
        ..small_config()
    };
    let log = open(dir.path(), config);
    produce_idempotent(&log, 8, 0, 1, 1); // producer 8's only batch, soon deleted by retention
    produce_idempotent(&log, 7, 0, 40, 2);
    log.maybe_increment_high_watermark(log.log_end_offset());
    let deleted = log.apply_retention(now_ms()).unwrap();
    assert!(!deleted.is_empty());
    let start = log.log_start_offset();
    assert!(start > 1, "producer 8's batch is gone: start {start}");
    let snapshots = snapshot_offsets(log.dir()).unwrap();
    assert!(!snapshots.is_empty());
    assert!(
        snapshots.iter().all(|o| *o >= start),
        "{snapshots:?} below {start}"
    );
    assert_eq!(retry(&log, producer_batch(8, 0, 0, 1)).unwrap().0, 0);
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(retry(&log, producer_batch(8, 0, 0, 1)).unwrap().0, 0);
}

#[test]
fn batches_not_due_for_flush_wait_for_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 10,
            flush_ms: Some(1000),
            ..LogConfig::default()
        },
    );
    let info = log.append_as_leader(client_batch(&[1, 2], 10), 0).unwrap();
    assert!(!info.flush_required);
    assert!(!log.flush_if_due(now_ms()).unwrap(), "not yet due");
    assert!(log.flush_if_due(now_ms() + 1000).unwrap());
    assert_eq!(log.flushed_offset(), 2);
    let info = log.append_as_leader(client_batch(&[0; 10], 10), 0).unwrap();
    assert!(info.flush_required, "10 unflushed records");
}

/// Transactions (KIP-98): a transactional batch of `count` records from `pid` at `seq`, as leader.
fn txn_append(log: &PartitionLog, pid: i64, seq: i32, count: usize) -> AppendInfo {
    log.append_as_leader(transactional_batch(pid, 0, seq, count), 0)
        .unwrap()
}

fn marker(log: &PartitionLog, pid: i64, commit: bool) -> AppendInfo {
    log.append_marker_as_leader(
        pid,
        0,
        EndTxnMarker {
            commit,
            coordinator_epoch: 0,
        },
        0,
    )
    .unwrap()
}

fn aborted(log: &PartitionLog) -> Vec<(i64, i64, i64)> {
    log.aborted_transactions(0, i64::MAX)
        .iter()
        .map(|t| (t.producer_id, t.first_offset, t.last_offset))
        .collect()
}

#[test]
fn the_last_stable_offset_stops_at_the_first_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    produce(&log, 1, 2, 0, 0); // 0..2 plain
    txn_append(&log, 7, 0, 2); // 2..4 open
    txn_append(&log, 8, 0, 1); // 4 open
    txn_append(&log, 7, 2, 1); // 5
    assert_eq!(log.log_end_offset(), 6);
    log.maybe_increment_high_watermark(6);
    assert_eq!(log.last_stable_offset(), 2);
    // A read_committed read stops there.
    let read = log.read(0, 1 << 20, READ_COMMITTED).unwrap();
    assert_eq!(read.last_stable_offset, 2);
    let batches: Vec<i64> = Batches::new(read.records)
        .map(|b| b.unwrap().last_offset())
        .collect();
    assert_eq!(batches, vec![1]);
    assert!(log
        .read(2, 1 << 20, READ_COMMITTED)
        .unwrap()
        .records
        .is_empty());

    // Producer 7 commits at 6: the LSO waits for the high watermark to pass the marker.
    assert_eq!(marker(&log, 7, true).base_offset, 6);
    assert_eq!(log.last_stable_offset(), 2, "marker not yet replicated");
    log.maybe_increment_high_watermark(7);
    assert_eq!(
        log.last_stable_offset(),
        4,
        "now producer 8's transaction holds it"
    );
    // Producer 8 aborts at 7.
    marker(&log, 8, false);
    log.maybe_increment_high_watermark(8);
    assert_eq!(log.last_stable_offset(), 8);
    assert_eq!(aborted(&log), vec![(8, 4, 7)]);
    // Only transactions overlapping the fetched range are returned.
    assert!(log.aborted_transactions(8, 100).is_empty());
    assert_eq!(log.aborted_transactions(0, 4).len(), 0);
    assert_eq!(log.aborted_transactions(0, 5).len(), 1);
    // Never above the high watermark.
    produce(&log, 1, 1, 0, 0);
    assert_eq!(log.last_stable_offset(), 8);
    let producers = log.active_producers();
    assert_eq!(
        producers
            .iter()
            .find(|(id, _)| *id == 7)
            .unwrap()
            .1
            .current_txn_first_offset,
        None
    );
}

#[test]
fn a_plain_batch_inside_a_transaction_and_a_fenced_marker_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    txn_append(&log, 7, 0, 1);
    let plain = log.append_as_leader(producer_batch(7, 0, 1, 1), 0);
    assert!(matches!(
        plain,
        Err(LogError::Producer(
            ProducerStateError::InvalidTxnState { .. }
        ))
    ));
    assert_eq!(
        plain.unwrap_err().kafka_error(),
        ResponseError::InvalidTxnState
    );
    let end = |coordinator_epoch| EndTxnMarker {
        commit: true,
        coordinator_epoch,
    };
    log.append_marker_as_leader(7, 0, end(4), 0).unwrap();
    let stale = log.append_marker_as_leader(7, 0, end(3), 0).unwrap_err();
    assert_eq!(
        stale.kafka_error(),
        ResponseError::TransactionCoordinatorFenced
    );
    let old_epoch = log.append_marker_as_leader(7, -1, end(4), 0).unwrap_err();
    assert_eq!(old_epoch.kafka_error(), ResponseError::InvalidProducerEpoch);
    assert_eq!(log.log_end_offset(), 2, "refused markers are not written");
}

#[test]
fn the_txn_index_survives_restarts_and_is_rebuilt_when_missing_or_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let log = open(dir.path(), config.clone());
    let mut expected = Vec::new();
    for pid in 0..12 {
        let first = txn_append(&log, pid, 0, 3).base_offset;
        let commit = pid % 3 == 0;
        let end = marker(&log, pid, commit).base_offset;
        if !commit {
            expected.push((pid, first, end));
        }
    }
    txn_append(&log, 100, 0, 2); // stays open
    log.maybe_increment_high_watermark(log.log_end_offset());
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    assert_eq!(aborted(&log), expected);
    let lso = log.last_stable_offset();
    let pdir = log.dir().to_path_buf();
    log.close().unwrap();

    let log = open(dir.path(), config.clone());
    assert_eq!(aborted(&log), expected, "read from the files");
    assert_eq!(
        log.last_stable_offset(),
        lso,
        "the open transaction came back from the snapshot"
    );
    log.close().unwrap();

    // Delete one index, tear another and drop every snapshot: open rebuilds them from the log.
    let bases = log.segment_base_offsets();
    fs::remove_file(txn_index_path(&pdir, bases[1])).unwrap();
    let torn = txn_index_path(&pdir, bases[2]);
    fs::write(&torn, [0u8; 5]).unwrap();
    for offset in snapshot_offsets(&pdir).unwrap() {
        fs::remove_file(snapshot_path(&pdir, offset)).unwrap();
    }
    let log = open(dir.path(), config.clone());
    assert_eq!(aborted(&log), expected, "rebuilt");
    assert_eq!(log.last_stable_offset(), lso);
    assert!(txn_index_path(&pdir, bases[1]).exists());
    assert_eq!(
        txn_index::read(&torn).unwrap().unwrap().unwrap().len(),
        expected
            .iter()
            .filter(|(_, _, last)| *last >= bases[2] && *last < bases[3])
            .count()
    );

    // Truncation cuts the entries of markers it removes, and reopens their transactions.
    let (pid, first, last) = *expected.last().unwrap();
    log.truncate_to(last).unwrap();
    let mut cut = expected.clone();
    cut.pop();
    assert_eq!(aborted(&log), cut);
    let entry = log
        .active_producers()
        .into_iter()
        .find(|(id, _)| *id == pid)
        .unwrap()
        .1;
    assert_eq!(entry.current_txn_first_offset, Some(first));
    assert_eq!(log.last_stable_offset(), first.min(log.high_watermark()));
    log.close().unwrap();
    let log = open(dir.path(), config);
    assert_eq!(aborted(&log), cut, "the truncated file holds the rest");
}

#[test]
fn a_follower_builds_the_same_transactions_from_the_leaders_batches() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(dir.path(), LogConfig::default());
    txn_append(&leader, 1, 0, 2);
    txn_append(&leader, 2, 0, 2);
    marker(&leader, 1, false);
    txn_append(&leader, 3, 0, 1);
    marker(&leader, 2, true);
    let fdir = tempfile::tempdir().unwrap();
    let follower = PartitionLog::open(
        &fdir.path().join("orders-0"),
        topic_id(),
        LogConfig::default(),
    )
    .unwrap();
    // Fetched as a follower does, one read (at most a segment) at a time.
    while follower.log_end_offset() < leader.log_end_offset() {
        let read = leader
            .read(follower.log_end_offset(), 1 << 20, i64::MAX)
            .unwrap();
        follower.append_as_follower(read.records).unwrap();
    }
    for log in [&leader, &follower] {
        log.maybe_increment_high_watermark(log.log_end_offset());
    }
    assert_eq!(aborted(&follower), aborted(&leader));
    assert_eq!(aborted(&leader), vec![(1, 0, 4)]);
    assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
    assert_eq!(leader.last_stable_offset(), 5, "producer 3 is open");
}

#[test]
fn retention_drops_the_aborted_transactions_of_deleted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for pid in 0..10 {
        txn_append(&log, pid, 0, 3);
        marker(&log, pid, false);
    }
    log.maybe_increment_high_watermark(log.log_end_offset());
    let before = aborted(&log).len();
    let bases = log.segment_base_offsets();
    log.maybe_increment_log_start_offset(bases[2]).unwrap();
    log.apply_retention(0).unwrap();
    let after = aborted(&log);
    assert!(after.len() < before);
    assert!(after.iter().all(|(_, _, last)| *last >= bases[2]));
    assert!(!txn_index_path(log.dir(), bases[0]).exists());
}

#[test]
fn a_verification_guard_holds_until_the_transaction_opens_and_a_marker_voids_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert!(log.needs_verification(7, 0));
    let guard = log.verification_guard(7, 0);
    assert_eq!(
        log.verification_guard(7, 0),
        guard,
        "one verification per epoch"
    );
    // A marker for the producer arrives while the coordinator is asked: the answer is void.
    marker(&log, 7, false);
    let refused = log
        .append_as_leader_verified(transactional_batch(7, 0, 0, 1), 0, Some(guard))
        .unwrap_err();
    assert_eq!(refused.kafka_error(), ResponseError::InvalidTxnState);
    // A fresh verification opens the transaction; from then on none is needed in this epoch.
    let guard = log.verification_guard(7, 0);
    log.append_as_leader_verified(transactional_batch(7, 0, 0, 1), 0, Some(guard))
        .unwrap();
    assert!(!log.needs_verification(7, 0));
    assert!(
        log.needs_verification(7, 1),
        "another epoch is another transaction"
    );
    log.append_as_leader_verified(transactional_batch(7, 0, 1, 1), 0, Some(guard))
        .unwrap();
    // Without a guard of its own a batch may continue the open transaction, never open one.
    log.append_as_leader_verified(
        transactional_batch(7, 0, 2, 1),
        0,
        Some(VerificationGuard::SENTINEL),
    )
    .unwrap();
    marker(&log, 7, true);
    assert!(
        log.needs_verification(7, 0),
        "the next transaction is verified again"
    );
    // The ended transaction's last batch again is not a retry (`ProducerEntry::find_duplicate`):
    // its sequence is out of order, whatever the verification would say.
    let reused = log
        .append_as_leader_verified(
            transactional_batch(7, 0, 2, 1),
            0,
            Some(VerificationGuard::SENTINEL),
        )
        .unwrap_err();
    assert_eq!(
        reused.kafka_error(),
        ResponseError::OutOfOrderSequenceNumber
    );
    let unverified = log
        .append_as_leader_verified(
            transactional_batch(7, 0, 3, 1),
            0,
            Some(VerificationGuard::SENTINEL),
        )
        .unwrap_err();
    assert_eq!(unverified.kafka_error(), ResponseError::InvalidTxnState);
}

/// Issue #18: more partition logs than the descriptor cache may hold open. Every log appends,
/// reads, rolls and reopens with its files closed under it between operations, and writes not yet
/// fsynced keep their file open until the flush covers them. (The cache is the broker-wide one,
/// shrunk for the test: other tests running meanwhile only see more reopens.)
#[test]
fn logs_outnumber_the_open_files_the_cache_allows() {
    use crate::log::file_cache::FileCache;
    let cache = FileCache::global();
    let capacity = cache.stats().capacity as usize;
    cache.set_capacity(4);
    let dir = tempfile::tempdir().unwrap();
    let lazy = LogConfig {
        flush_messages: u64::MAX,
        ..small_config()
    };
    let logs: Vec<PartitionLog> = (0..24)
        .map(|p| {
            PartitionLog::open(
                &dir.path().join(format!("orders-{p}")),
                topic_id(),
                lazy.clone(),
            )
            .unwrap()
        })
        .collect();
    let before = cache.stats();
    // Several segments each (segment.bytes is 1,000), not fsynced by the appends.
    let written: Vec<Vec<AppendInfo>> = logs.iter().map(|log| produce(log, 30, 2, 0, 0)).collect();
    assert!(logs.iter().all(|log| log.segment_count() > 1));
    let dirty = cache.stats();
    assert!(
        dirty.open >= logs.len() as u64,
        "an active segment with unsynced writes stays open: {dirty:?}"
    );
    for log in &logs {
        assert!(
            log.flushed_offset() < log.log_end_offset(),
            "nothing fsynced yet"
        );
        log.flush().unwrap();
    }
    // Fsynced now: reading them all back closes the idle files again.
    for (log, infos) in logs.iter().zip(&written) {
        let batches = read_all(log, 0);
        assert_eq!(batches.len(), infos.len());
        assert_eq!(
            batches.last().unwrap().last_offset(),
            infos.last().unwrap().last_offset
        );
    }
    let after = cache.stats();
    assert!(after.evictions > before.evictions, "{before:?} → {after:?}");
    assert!(after.open <= dirty.open);
    for log in &logs {
        log.close().unwrap();
    }
    drop(logs);
    let reopened: Vec<PartitionLog> = (0..24)
        .map(|p| {
            PartitionLog::open(
                &dir.path().join(format!("orders-{p}")),
                topic_id(),
                lazy.clone(),
            )
            .unwrap()
        })
        .collect();
    for (log, infos) in reopened.iter().zip(&written) {
        assert_eq!(read_all(log, 0).len(), infos.len());
        // An append after the active segment's file was closed lands at its end.
        let info = produce(log, 1, 1, 0, 0).remove(0);
        assert_eq!(info.base_offset, infos.last().unwrap().last_offset + 1);
        log.flush().unwrap();
        assert_eq!(read_all(log, 0).len(), infos.len() + 1);
    }
    cache.set_capacity(capacity);
}

/// Issue #18: creating a log fsyncs nothing; its first flush makes `partition.metadata`, its
/// directory and the data directory's entry durable, and only then reports an offset durable.
#[test]
fn creating_a_log_fsyncs_nothing_and_its_first_flush_makes_the_creation_durable() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().join("orders-0");
    checkpoint::synced::take();
    let log =
        PartitionLog::open_in(&dir, topic_id(), LogConfig::default(), Arc::default()).unwrap();
    assert!(log.assign_leader_epoch(0).unwrap());
    let info = log.append_as_leader(client_batch(&[1, 2], 20), 0).unwrap();
    assert_eq!(checkpoint::synced::take(), Vec::<PathBuf>::new());
    assert_eq!(log.fsync_count(), 0);
    assert!(info.flush_required);
    // Nor creates an index file before it has an entry (a file created is an inode allocated).
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "00000000000000000000.log",
            "00000000000000000000.txnindex",
            "partition.metadata"
        ]
    );

    assert_eq!(log.flush_to(info.next_offset()).unwrap(), 2);
    let synced = checkpoint::synced::take();
    for path in [
        dir.join(PARTITION_METADATA_FILE),
        dir.clone(),
        data_dir.path().to_path_buf(),
    ] {
        assert!(synced.contains(&path), "{path:?} not in {synced:?}");
    }

    // Once is enough: later flushes fsync the data only.
    let info = log.append_as_leader(client_batch(&[3], 20), 0).unwrap();
    log.flush_to(info.next_offset()).unwrap();
    assert_eq!(checkpoint::synced::take(), Vec::<PathBuf>::new());
    assert_eq!(log.fsync_count(), 2);
}

/// A first flush whose creation cannot be made durable reports nothing durable (and the log goes
/// offline, as after any failed fsync).
#[test]
fn a_first_flush_that_cannot_make_the_creation_durable_reports_nothing() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().join("orders-0");
    let log =
        PartitionLog::open_in(&dir, topic_id(), LogConfig::default(), Arc::default()).unwrap();
    let info = log.append_as_leader(client_batch(&[1, 2], 20), 0).unwrap();
    fs::remove_file(dir.join(PARTITION_METADATA_FILE)).unwrap();
    assert!(log.flush_to(info.next_offset()).is_err());
    assert_eq!(log.flushed_offset(), 0);
    assert!(log.is_offline());
}

/// A leadership's epoch entry is not fsynced when the leadership starts; a crash before its first
/// batch is sealed finds it again in the active segment, and a roll writes it first.
#[test]
fn an_unsynced_leader_epoch_survives_a_crash_and_is_written_before_a_roll() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint_file = dir
        .path()
        .join("orders-0")
        .join(super::super::epoch::CHECKPOINT_FILE);
    let entry = |epoch, start_offset| EpochEntry {
        epoch,
        start_offset,
    };
    {
        let log = open(dir.path(), small_config());
        produce(&log, 1, 2, 0, 1); // 0..2, epoch 1 written by the append
        assert!(log.assign_leader_epoch(4).unwrap());
        let on_disk = fs::read_to_string(&checkpoint_file).unwrap();
        assert_eq!(on_disk, "0\n1\n1 0\n", "epoch 4 not written yet");
        let info = produce(&log, 1, 2, 0, 4).pop().unwrap(); // 2..4
        log.flush_to(info.next_offset()).unwrap();
        // Dropped without close: a crash.
    }
    let log = open(dir.path(), small_config());
    assert_eq!(log.epoch_entries(), vec![entry(1, 0), entry(4, 2)]);
    drop(log);

    let log = open(dir.path(), small_config());
    assert!(log.assign_leader_epoch(6).unwrap());
    let leo = log.log_end_offset();
    let segments = log.segment_count();
    while log.segment_count() == segments {
        produce(&log, 1, 2, 0, 6);
    }
    let on_disk = fs::read_to_string(&checkpoint_file).unwrap();
    assert!(
        on_disk.ends_with(&format!("6 {leo}\n")),
        "written at the roll: {on_disk:?}"
    );
}

/// A log of 3 batches of 2 records, flushed and closed cleanly: its data dir and partition dir.
fn closed_log_of_six_records() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let info = produce(&log, 3, 2, 0, 1).pop().unwrap();
    log.flush_to(info.next_offset()).unwrap();
    log.close().unwrap();
    let partition = dir.path().join("orders-0");
    (dir, partition)
}

/// A broker restart opens every log: a log that holds the per-log clean-shutdown marker of an
/// earlier broker version opens clean, with one directory fsync (the marker's removal); after a
/// crash, one for what recovery changed.
#[test]
fn reopening_a_log_fsyncs_its_directory_once_clean_or_not() {
    let (dir, partition) = closed_log_of_six_records();
    let dir_syncs = |synced: Vec<PathBuf>| synced.iter().filter(|p| **p == partition).count();

    fs::write(partition.join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
    checkpoint::synced::take();
    let log = open(dir.path(), small_config());
    assert_eq!(dir_syncs(checkpoint::synced::take()), 1, "clean");
    assert!(!partition.join(CLEAN_SHUTDOWN_FILE).exists(), "read once");
    assert_eq!(log.log_end_offset(), 6);
    drop(log); // a crash

    let log = open(dir.path(), small_config());
    assert_eq!(dir_syncs(checkpoint::synced::take()), 1, "after a crash");
    assert_eq!(log.log_end_offset(), 6);
}

/// Closing a log rewrites only the checkpoints that changed: a broker closes every log at shutdown,
/// and 30,000 logs must close within a supervisor's stop timeout.
#[test]
fn closing_an_idle_log_rewrites_no_unchanged_checkpoint() {
    let (dir, partition) = closed_log_of_six_records();

    let log = open(dir.path(), small_config());
    checkpoint::synced::take();
    log.close().unwrap();
    let synced = checkpoint::synced::take();
    for unchanged in [
        LOG_START_OFFSET_CHECKPOINT,
        super::super::epoch::CHECKPOINT_FILE,
    ] {
        assert!(
            !synced.contains(&partition.join(unchanged)),
            "{unchanged} in {synced:?}"
        );
    }
    assert!(
        synced.is_empty(),
        "no checkpoint, snapshot or marker rewritten: {synced:?}"
    );
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 6));
    assert_eq!(log.epoch_entries().len(), 1);
}

/// An empty log closes without a producer-state snapshot (nothing to replay without one: 30,000 new
/// logs wrote 30,000 snapshots at their first shutdown); a log with data writes one at its end.
#[test]
fn closing_writes_a_producer_snapshot_only_where_one_saves_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let empty = open(&dir.path().join("empty-0"), small_config());
    empty.close().unwrap();
    assert_eq!(snapshot_offsets(empty.dir()).unwrap(), Vec::<i64>::new());
    let reopened = open(&dir.path().join("empty-0"), small_config());
    assert_eq!(reopened.log_end_offset(), 0);

    let written = open(&dir.path().join("written-0"), small_config());
    produce(&written, 3, 2, 5000, 0);
    written.close().unwrap();
    assert_eq!(snapshot_offsets(written.dir()).unwrap(), vec![6]);
}
