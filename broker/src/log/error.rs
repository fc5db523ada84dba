//! The log's typed errors, each mapped to its Kafka error code in one function (`LogError::kafka_error`,
//! see `crate::error` for the others); the variants are chosen so that mapping needs no string matching: a bad batch carries its
//! [`BatchErrorKind`](super::batch::BatchErrorKind), an out-of-range read carries the bounds, an I/O
//! failure carries the file it happened on.

use std::io;
use std::path::{Path, PathBuf};

use kafka_protocol::error::ResponseError;
use thiserror::Error;
use uuid::Uuid;

use super::batch::{BatchError, BatchErrorKind};
use super::legacy::LegacyError;
use super::producer_state::ProducerStateError;
use super::validator::{RecordErrorKind, RecordsRejected};

#[derive(Debug, Error)]
pub enum LogError {
    /// The batch failed validation (INVALID_RECORD or CORRUPT_MESSAGE, see `BatchError::kind`).
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    /// Records of the batch refused by the topic's rules (INVALID_RECORD or INVALID_TIMESTAMP, with one
    /// error per refused record).
    #[error(transparent)]
    RecordsRejected(#[from] RecordsRejected),
    /// A legacy message set (Produce v0–v2) that cannot be up-converted: CORRUPT_MESSAGE or
    /// INVALID_RECORD (see `LegacyError::kind`), UNSUPPORTED_COMPRESSION_TYPE for zstd.
    #[error(transparent)]
    LegacyMessageSet(#[from] LegacyError),
    /// An idempotent producer's batch refused by the producer state checks (KIP-98, KIP-360):
    /// INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_RECORD, INVALID_TXN_STATE or
    /// TRANSACTION_COORDINATOR_FENCED, see the variant.
    #[error(transparent)]
    Producer(#[from] ProducerStateError),
    /// MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u64 },
    /// OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A log start offset above the high watermark (DeleteRecords past what is committed):
    /// OFFSET_OUT_OF_RANGE, as Kafka's `UnifiedLog.maybeIncrementLogStartOffset` refuses it.
    #[error(
        "cannot move the log start offset to {offset}, above the high watermark {high_watermark}"
    )]
    LogStartBeyondHighWatermark { offset: i64, high_watermark: i64 },
    /// A leader append with an epoch older than one the log already holds: the caller is a deposed
    /// leader.
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleLeaderEpoch { epoch: i32, latest: i32 },
    /// Follower batches that do not continue the log: the first must start at or after the log end
    /// offset and each must start after the previous one.
    #[error("batch at offset {base_offset} does not follow offset {expected_at_least}")]
    UnexpectedAppendOffset {
        base_offset: i64,
        expected_at_least: i64,
    },
    /// A truncation below the log start offset (use `truncate_fully_and_start_at`).
    #[error("cannot truncate to {offset}, below the log start offset {log_start_offset}")]
    TruncateBelowLogStart { offset: i64, log_start_offset: i64 },
    /// The partition directory belongs to another incarnation of the topic (deleted and recreated).
    #[error("partition directory {dir} holds topic id {found}, expected {expected}")]
    InconsistentTopicId {
        dir: PathBuf,
        expected: Uuid,
        found: Uuid,
    },
    /// A topic name that cannot name a partition directory (Kafka's rule: 1–249 of `[a-zA-Z0-9._-]`,
    /// not `.` or `..`).
    #[error("invalid topic name {topic:?}")]
    InvalidTopicName { topic: String },
    /// A file the log cannot interpret and cannot rebuild (for instance `partition.metadata`).
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A topic config value the log cannot use.
    #[error("invalid log config {key}={value}")]
    InvalidConfig { key: String, value: String },
    /// An earlier write or fsync failed, so what is on disk is unknown; the log refuses further
    /// writes until it is reopened (which runs recovery).
    #[error("log {dir} is offline after an I/O failure")]
    Offline { dir: PathBuf },
    /// The cleaner could not rewrite a batch (the segment is left as it was).
    #[error("log cleaner: {0}")]
    Cleaner(String),
    /// The log was closed or deleted.
    #[error("log {dir} is closed")]
    Closed { dir: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LogError {
    /// True for failures of the storage itself (the Kafka layer answers KAFKA_STORAGE_ERROR).
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            LogError::Io { .. } | LogError::Offline { .. } | LogError::Corrupt { .. }
        )
    }

    /// The Kafka error a client is answered with when the log refuses or fails its request.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            LogError::InvalidBatch(b) => match b.kind() {
                BatchErrorKind::CorruptMessage => ResponseError::CorruptMessage,
                BatchErrorKind::InvalidRecord => ResponseError::InvalidRecord,
            },
            LogError::LegacyMessageSet(LegacyError::ZstdNeedsV2) => {
                ResponseError::UnsupportedCompressionType
            }
            LogError::LegacyMessageSet(LegacyError::Encode(_)) => ResponseError::UnknownServerError,
            LogError::LegacyMessageSet(e) => match e.kind() {
                BatchErrorKind::CorruptMessage => ResponseError::CorruptMessage,
                BatchErrorKind::InvalidRecord => ResponseError::InvalidRecord,
            },
            LogError::RecordsRejected(r) => match r.kind() {
                RecordErrorKind::InvalidRecord => ResponseError::InvalidRecord,
                RecordErrorKind::InvalidTimestamp => ResponseError::InvalidTimestamp,
            },
            LogError::Producer(p) => match p {
                ProducerStateError::InvalidProducerEpoch { .. } => {
                    ResponseError::InvalidProducerEpoch
                }
                ProducerStateError::OutOfOrderSequence { .. } => {
                    ResponseError::OutOfOrderSequenceNumber
                }
                ProducerStateError::InvalidSequence { .. } => ResponseError::InvalidRecord,
                ProducerStateError::InvalidTxnState { .. }
                | ProducerStateError::NotVerified { .. } => ResponseError::InvalidTxnState,
                ProducerStateError::CoordinatorFenced { .. } => {
                    ResponseError::TransactionCoordinatorFenced
                }
            },
            LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            LogError::OffsetOutOfRange { .. } | LogError::LogStartBeyondHighWatermark { .. } => {
                ResponseError::OffsetOutOfRange
            }
            // The partition moved on (a newer leader epoch) or is being closed: the client looks up
            // the leader again.
            LogError::StaleLeaderEpoch { .. } | LogError::Closed { .. } => {
                ResponseError::NotLeaderOrFollower
            }
            e if e.is_storage_failure() => ResponseError::KafkaStorageError,
            _ => ResponseError::UnknownServerError,
        }
    }
}

/// `map_err` helper that names the operation and the file.
pub(crate) fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
