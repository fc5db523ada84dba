//! The partition log: each partition's replica stored as a segmented log of raw Kafka v2 record
//! batches, in Kafka's on-disk layout (its `UnifiedLog` and `LogSegment` files). It knows batches and
//! files, never Kafka requests: the replica layer decides who may append and what the high watermark
//! is; the handlers map [`LogError`] to Kafka error codes.
//!
//! Layers, bottom up: [`batch`] (the 61-byte header, validation and patches over `Bytes`), [`index`]
//! (sparse offset and time indexes), [`segment`] (one `.log` file with its indexes, recovery),
//! [`validator`] (a producer's records against the topic's rules), [`txn_marker`] (transaction
//! markers), [`txn_index`] (each segment's aborted transactions), [`legacy`] (magic 0/1 message
//! sets up-converted to one v2 batch for Produce v0–v2), [`epoch`] (the leader-epoch cache and its
//! checkpoint), [`producer_state`] (idempotent and transactional producers'
//! state and its snapshots), [`partition_log`] (one partition directory),
//! [`manager`] (all partitions of a data directory, retention and flush timers), with [`config`] the
//! topic settings, [`checkpoint`] the atomic small-file writes and [`file_cache`] the bounded set of
//! open segment and index files shared by every partition (an idle partition holds no descriptor).
//!
//! # On-disk layout
//!
//! ```text
//! <data dir>/
//!   <topic>-<partition>/
//!     00000000000000000000.log        batches exactly as served (base offset in the name, 20 digits)
//!     00000000000000000000.index      offset index: (relative offset u32, position u32) BE
//!     00000000000000000000.timeindex  time index: (timestamp i64, relative offset u32) BE
//!     00000000000000000000.txnindex   aborted transactions whose ABORT marker is in the segment
//!     …more segments…
//!     leader-epoch-checkpoint         "0", count, then "epoch start_offset" lines
//!     partition.metadata              "version: 0", "topic_id: <uuid>"
//!     log-start-offset-checkpoint     "0", offset
//!     high-watermark-checkpoint       "0", offset
//!     00000000000000000040.snapshot   producer state of the batches below offset 40 (with a CRC)
//!   .clean-shutdown                   present only while every log of the directory is cleanly closed
//!   .trash/                           partitions being deleted
//!   .quarantine/                      partition directories that failed to open, kept for an operator
//! ```
//!
//! # Durability
//!
//! An append writes the batch into the page cache and returns; whether it must be fsynced before it
//! is acknowledged is the topic's `flush.messages` (records not yet fsynced that force one) and
//! `flush.ms` (longest time written data may wait). [`AppendInfo::flush_required`] tells the caller,
//! which then calls [`PartitionLog::flush_to`] outside its own locks. That is a group commit: one
//! caller fsyncs up to the log end offset it sees while appends continue, and every append that fsync
//! covered returns without another (`flushed_offset` tracks the frontier). Followers should report a
//! fetch offset to the leader only once it is flushed, so the high watermark counts durable copies.
//!
//! - **Chronik's default, `flush.messages = 1`**: every batch is fsynced before it is acknowledged.
//!   A process crash loses nothing acknowledged (the page cache survives it anyway). A power loss or
//!   kernel crash loses nothing acknowledged either: acknowledged offsets were fsynced, and recovery
//!   cuts only a torn, unacknowledged tail.
//! - **`flush.messages = N > 1` and/or a finite `flush.ms`** (Kafka's style, whose default is never to
//!   fsync): a process crash still loses nothing (the kernel writes the page cache back); a power
//!   loss loses up to the last N records or `flush.ms` of writes on this replica, and correctness
//!   relies on other replicas holding them (acks=all, min.insync.replicas ≥ 2). A correlated power
//!   loss of the whole ISR can then lose acknowledged data.
//!
//! Creating a log fsyncs nothing (thousands of partitions open in a second, issue #18): the log's
//! first flush that has an offset to report makes its `partition.metadata`, its directory and the data
//! directory's entry durable first, once per log and process. A crash before then may leave a
//! directory missing, empty or with a missing or torn `partition.metadata`: it held nothing
//! acknowledged, and the manager removes it at start for the replica layer to create again.
//!
//! Independent of the setting: a segment is fsynced with its indexes when it is rolled, so only the
//! active segment can be torn; checkpoints are written to a temp file, fsynced and renamed; the epoch
//! cache is on disk before a batch of a new epoch is written (a leadership's entry before its first batch
//! is sealed: see [`epoch`]); truncation is fsynced before it
//! returns; the high watermark checkpoint is written every few seconds by the manager and at close, and
//! a stale one is harmless (it is only a lower bound, capped at the recovered LEO). After a crash,
//! [`LogManager::open`] finds no `.clean-shutdown` marker in the data directory (it removes the
//! marker durably before opening any log) and every log re-validates its active segment batch by
//! batch (length, magic, CRC, increasing offsets), cutting it at the first invalid byte.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod epoch;
pub mod error;
pub mod file_cache;
pub mod index;
pub mod legacy;
pub mod manager;
pub mod partition_log;
pub mod producer_state;
pub mod segment;
pub mod txn_index;
pub mod txn_marker;
pub mod validator;

pub use batch::{BatchError, BatchErrorKind, BatchHeader, Batches, RecordBatch, TimestampType};
pub use config::LogConfig;
pub use epoch::{EpochEntry, LeaderEpochCache};
pub use error::LogError;
pub use manager::{LogManager, LogManagerConfig, OfflineLogDir, TopicPartition};
pub use partition_log::{
    AppendInfo, DeletedSegment, EpochEndOffset, FetchPosition, PartitionLog, ReadResult,
    RetentionReason, VerificationGuard,
};
pub use segment::{LogSegment, TimestampOffset};

/// Wall-clock milliseconds since the epoch (Kafka timestamps).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
