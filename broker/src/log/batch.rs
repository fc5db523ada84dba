//! RecordBatch v2 as raw bytes: the log never re-encodes a producer's batch, it only reads and patches the
//! 61-byte header (Kafka's `DefaultRecordBatch`). [`BatchHeader`] is a parsed copy of that header (what
//! the segment scans read from disk); [`RecordBatch`] is a zero-copy view over one whole batch in a
//! [`Bytes`]; [`Batches`] walks concatenated batches and stops cleanly at a partial trailing batch.
//!
//! What must stay true: nothing here panics on arbitrary bytes, from a socket or from disk. Every
//! length is checked before it is used; every failure is a [`BatchError`], whose [`BatchErrorKind`]
//! tells the Kafka layer INVALID_RECORD from CORRUPT_MESSAGE. The base offset and the partition leader
//! epoch lie outside the CRC and are patched without recomputing it; anything inside the CRC (the
//! LogAppendTime patch) recomputes it.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Bytes of the v2 header, up to and including RecordCount.
pub const HEADER_BYTES: usize = 61;
/// BaseOffset (8) + BatchLength (4): the part of a batch that BatchLength does not count.
pub const LOG_OVERHEAD: usize = 12;
/// The only record format the log stores.
pub const MAGIC_V2: i8 = 2;
/// Smallest legal BatchLength: the header after the BatchLength field.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_BYTES - LOG_OVERHEAD) as i32;
/// Timestamp of a batch or record that has none.
pub const NO_TIMESTAMP: i64 = -1;
/// PartitionLeaderEpoch of a batch no leader has stamped (what clients send).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Which Kafka error a bad batch maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchErrorKind {
    /// Well-framed but not acceptable: INVALID_RECORD (87).
    InvalidRecord,
    /// Framing or checksum damage: CORRUPT_MESSAGE (2).
    CorruptMessage,
}

/// Why bytes are not an acceptable record batch.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record batch truncated: {available} bytes, need {needed}")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {batch_length} is below the {MIN_BATCH_LENGTH}-byte header")]
    InvalidBatchLength { batch_length: i32 },
    #[error("record batch of {batch_bytes} bytes followed by {trailing} more bytes (expected exactly one batch)")]
    TrailingBytes { batch_bytes: usize, trailing: usize },
    #[error("record batch magic {magic} is not supported (only v2)")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch has {record_count} records but last offset delta {last_offset_delta}")]
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("record batch last offset delta {last_offset_delta} is negative")]
    NegativeLastOffsetDelta { last_offset_delta: i32 },
    #[error("clients may not write control batches")]
    ControlBatchFromClient,
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },
    #[error("records do not match the batch header: {reason}")]
    RecordsMismatch { reason: &'static str },
    #[error("{codec:?} records cannot be decompressed: {reason}")]
    Decompression { codec: Compression, reason: String },
}

impl BatchError {
    pub fn kind(&self) -> BatchErrorKind {
        match self {
            BatchError::Truncated { .. }
            | BatchError::InvalidBatchLength { .. }
            | BatchError::CrcMismatch { .. }
            | BatchError::Decompression { .. } => BatchErrorKind::CorruptMessage,
            BatchError::TrailingBytes { .. }
            | BatchError::UnsupportedMagic { .. }
            | BatchError::RecordCountMismatch { .. }
            | BatchError::NegativeLastOffsetDelta { .. }
            | BatchError::ControlBatchFromClient
            | BatchError::UnknownCompression { .. }
            | BatchError::RecordsMismatch { .. } => BatchErrorKind::InvalidRecord,
        }
    }
}

/// Compression codec from attribute bits 0–2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codec ids 5–7, which no Kafka version defines.
    Unknown(u8),
}

impl Compression {
    pub(crate) fn from_attributes(attributes: i16) -> Self {
        match (attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
}

/// What a batch's timestamps mean (attribute bit 3), and the topic setting `message.timestamp.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps.
    #[default]
    CreateTime,
    /// The leader's clock at append; every record's timestamp is the batch MaxTimestamp.
    LogAppendTime,
}

/// The parsed 61-byte v2 header. Parsing checks only what is needed to frame the batch (length and
/// magic); the CRC needs the whole batch and is checked by [`RecordBatch::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which may hold more than the header).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_BYTES {
            // Report the length field's view when it is readable: a short read of a header is a
            // truncated batch either way.
            return Err(BatchError::Truncated {
                needed: HEADER_BYTES,
                available: buf.len(),
            });
        }
        let header = BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET_AT),
            batch_length: i32_at(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: u32_at(buf, CRC_AT),
            attributes: i16_at(buf, ATTRIBUTES_AT),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP_AT),
            producer_id: i64_at(buf, PRODUCER_ID_AT),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH_AT),
            base_sequence: i32_at(buf, BASE_SEQUENCE_AT),
            record_count: i32_at(buf, RECORD_COUNT_AT),
        };
        if header.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidBatchLength {
                batch_length: header.batch_length,
            });
        }
        if header.magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic {
                magic: header.magic,
            });
        }
        Ok(header)
    }

    /// Reads only the ProducerId field of a batch starting at `buf`: `None` when the bytes are too
    /// short to hold a batch header (the full parse says what is wrong with them).
    pub fn peek_producer_id(buf: &[u8]) -> Option<i64> {
        (buf.len() >= HEADER_BYTES).then(|| i64_at(buf, PRODUCER_ID_AT))
    }

    /// Reads only the BatchLength field of a batch starting at `buf` and returns the batch's total size,
    /// or `None` when fewer than 12 bytes are there or the length is impossible.
    pub fn peek_total_size(buf: &[u8]) -> Option<usize> {
        if buf.len() < LOG_OVERHEAD {
            return None;
        }
        let batch_length = i32_at(buf, BATCH_LENGTH_AT);
        (batch_length >= MIN_BATCH_LENGTH).then(|| batch_length as usize + LOG_OVERHEAD)
    }

    /// Bytes of the whole batch, header included.
    pub fn total_size(&self) -> usize {
        // batch_length >= MIN_BATCH_LENGTH > 0 was checked at parse.
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the batch's last record (saturating, so a hostile delta cannot overflow).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset right after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The leader epoch stamped into the batch, `None` for an unstamped (-1) batch.
    pub fn leader_epoch(&self) -> Option<i32> {
        (self.partition_leader_epoch >= 0).then_some(self.partition_leader_epoch)
    }
}

/// One whole, CRC-checked v2 batch over shared bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl RecordBatch {
    /// Parses exactly one batch: `bytes` must hold the whole batch and nothing after it. Checks framing,
    /// magic and CRC.
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        let batch = Self::parse_prefix(&bytes)?;
        if batch.bytes.len() < bytes.len() {
            return Err(BatchError::TrailingBytes {
                batch_bytes: batch.bytes.len(),
                trailing: bytes.len() - batch.bytes.len(),
            });
        }
        Ok(batch)
    }

    /// Parses the batch at the start of `bytes`, which may be followed by more bytes.
    fn parse_prefix(bytes: &Bytes) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(bytes)?;
        let total = header.total_size();
        if bytes.len() < total {
            return Err(BatchError::Truncated {
                needed: total,
                available: bytes.len(),
            });
        }
        let computed = crc32c::crc32c(&bytes[ATTRIBUTES_AT..total]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        Ok(RecordBatch {
            bytes: bytes.slice(..total),
            header,
        })
    }

    /// The header checks a leader makes on a producer's batch beyond framing and CRC (Kafka's
    /// `LogValidator.validateBatch`): one record per offset, no control batch, a known codec. The
    /// records themselves are walked by [`super::validator`].
    pub fn validate_client_batch(&self) -> Result<(), BatchError> {
        let h = &self.header;
        if h.last_offset_delta < 0 {
            return Err(BatchError::NegativeLastOffsetDelta {
                last_offset_delta: h.last_offset_delta,
            });
        }
        if i64::from(h.record_count) != i64::from(h.last_offset_delta) + 1 {
            return Err(BatchError::RecordCountMismatch {
                record_count: h.record_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        if h.is_control() {
            return Err(BatchError::ControlBatchFromClient);
        }
        if let Compression::Unknown(codec) = h.compression() {
            return Err(BatchError::UnknownCompression { codec });
        }
        Ok(())
    }

    /// The bytes after the 61-byte header: the records, compressed as the attributes say.
    pub fn records_bytes(&self) -> &[u8] {
        self.bytes.get(HEADER_BYTES..).unwrap_or(&[])
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    pub fn last_offset_delta(&self) -> i32 {
        self.header.last_offset_delta
    }

    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        self.header.partition_leader_epoch
    }

    pub fn attributes(&self) -> i16 {
        self.header.attributes
    }

    pub fn compression(&self) -> Compression {
        self.header.compression()
    }

    pub fn timestamp_type(&self) -> TimestampType {
        self.header.timestamp_type()
    }

    pub fn is_transactional(&self) -> bool {
        self.header.is_transactional()
    }

    pub fn is_control(&self) -> bool {
        self.header.is_control()
    }

    pub fn base_timestamp(&self) -> i64 {
        self.header.base_timestamp
    }

    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    pub fn producer_id(&self) -> i64 {
        self.header.producer_id
    }

    pub fn producer_epoch(&self) -> i16 {
        self.header.producer_epoch
    }

    pub fn base_sequence(&self) -> i32 {
        self.header.base_sequence
    }

    pub fn record_count(&self) -> i32 {
        self.header.record_count
    }

    /// Bytes of the whole batch.
    pub fn size_in_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Sets BaseOffset. Outside the CRC: no recomputation.
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.patch(BASE_OFFSET_AT, &base_offset.to_be_bytes());
        self.header.base_offset = base_offset;
    }

    /// Sets PartitionLeaderEpoch. Outside the CRC: no recomputation.
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.patch(PARTITION_LEADER_EPOCH_AT, &epoch.to_be_bytes());
        self.header.partition_leader_epoch = epoch;
    }

    /// Marks the batch LogAppendTime with MaxTimestamp = `now_ms`, as Kafka's `LogValidator` does (only
    /// the header changes: the records keep their timestamp deltas, which readers ignore).
    pub fn set_log_append_time(&mut self, now_ms: i64) {
        self.set_max_timestamp(TimestampType::LogAppendTime, now_ms);
    }

    /// Sets the timestamp type bit and MaxTimestamp (Kafka's `DefaultRecordBatch.setMaxTimestamp`):
    /// a no-op when both already hold, else both are patched and, being inside the CRC, the CRC is
    /// recomputed.
    pub fn set_max_timestamp(&mut self, timestamp_type: TimestampType, max_timestamp: i64) {
        let attributes = match timestamp_type {
            TimestampType::LogAppendTime => self.header.attributes | TIMESTAMP_TYPE_BIT,
            TimestampType::CreateTime => self.header.attributes & !TIMESTAMP_TYPE_BIT,
        };
        if attributes == self.header.attributes && max_timestamp == self.header.max_timestamp {
            return;
        }
        self.patch(ATTRIBUTES_AT, &attributes.to_be_bytes());
        self.patch(MAX_TIMESTAMP_AT, &max_timestamp.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        self.patch(CRC_AT, &crc.to_be_bytes());
        self.header.attributes = attributes;
        self.header.max_timestamp = max_timestamp;
        self.header.crc = crc;
    }

    /// Writes `data` at `at`, in place when these bytes are not shared, else on a private copy.
    fn patch(&mut self, at: usize, data: &[u8]) {
        let bytes = std::mem::take(&mut self.bytes);
        let mut owned = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        // The header was parsed from these bytes, so every header field offset is in range.
        if let Some(slot) = owned.get_mut(at..at + data.len()) {
            slot.copy_from_slice(data);
        }
        self.bytes = owned.freeze();
    }

    /// `(offset, timestamp)` of every record, read from the record headers, for an uncompressed
    /// batch; `None` for a compressed one (reads do not decompress). LogAppendTime batches report
    /// MaxTimestamp for every record. Stops at the first malformed record.
    pub fn record_timestamps(&self) -> Option<Vec<(i64, i64)>> {
        record_timestamps(&self.header, self.bytes.get(HEADER_BYTES..)?)
    }
}

/// See [`RecordBatch::record_timestamps`]; `records` are the bytes after the header.
pub(crate) fn record_timestamps(header: &BatchHeader, records: &[u8]) -> Option<Vec<(i64, i64)>> {
    if header.compression() != Compression::None {
        return None;
    }
    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut out = Vec::new();
    let mut cursor = Cursor {
        buf: records,
        at: 0,
    };
    for _ in 0..header.record_count.max(0) {
        let Some(length) = cursor.varint() else { break };
        let start = cursor.at;
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|end| *end <= records.len())
        else {
            break;
        };
        let fields = (|| {
            cursor.skip(1)?; // attributes
            let timestamp_delta = cursor.varlong()?;
            let offset_delta = cursor.varint()?;
            Some((timestamp_delta, offset_delta))
        })();
        let Some((timestamp_delta, offset_delta)) = fields else {
            break;
        };
        if cursor.at > end {
            break;
        }
        let offset = header.base_offset.saturating_add(i64::from(offset_delta));
        let timestamp = if log_append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(timestamp_delta)
        };
        out.push((offset, timestamp));
        cursor.at = end;
    }
    Some(out)
}

/// Reads zigzag varints (the record encoding of Kafka's `DefaultRecord`) without ever indexing out of
/// range.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.buf.len()).then(|| self.at = end)
    }

    fn unsigned(&mut self, max_bytes: usize) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let byte = *self.buf.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        let raw = self.unsigned(5)? as u32;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Option<i64> {
        let raw = self.unsigned(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }
}

/// Iterates concatenated batches. Yields each whole batch (framing, magic and CRC checked); stops with
/// `None` at a partial trailing batch (legal at the end of a fetch) and after the first error (framing
/// cannot continue past a bad batch).
#[derive(Clone, Debug)]
pub struct Batches {
    rest: Bytes,
    failed: bool,
}

impl Batches {
    pub fn new(bytes: Bytes) -> Self {
        Batches {
            rest: bytes,
            failed: false,
        }
    }

    /// Bytes not yet yielded: after the iterator ends cleanly, the partial trailing batch (if any).
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        // A trailing batch that is not all there is the normal end, not an error. A length field that
        // is impossible is damage, even when the rest is short.
        if self.rest.len() < LOG_OVERHEAD {
            return None;
        }
        let batch_length = i32_at(&self.rest, BATCH_LENGTH_AT);
        if batch_length >= MIN_BATCH_LENGTH
            && self.rest.len() < batch_length as usize + LOG_OVERHEAD
        {
            return None;
        }
        match RecordBatch::parse_prefix(&self.rest) {
            Ok(batch) => {
                let _ = self.rest.split_to(batch.size_in_bytes());
                Some(Ok(batch))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

// Callers check lengths first; these read fixed-size big-endian fields and return 0 rather than panic
// if a slice were ever short.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

fn i16_at(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(array_at(buf, at))
}

fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(array_at(buf, at))
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array_at(buf, at))
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(array_at(buf, at))
}

/// Builders of real batches for the log's tests, encoded by the `kafka-protocol` crate.
/// Encodes records the broker writes itself (the group coordinator's records, the cleaner's rewritten
/// batches) as one uncompressed v2 batch with no producer id. Each record keeps its offset (gaps are
/// fine), timestamp, timestamp type and leader epoch; the batch takes the first record's.
pub fn encode_plain_batch(
    records: &mut [kafka_protocol::records::Record],
) -> Result<Bytes, String> {
    encode_batch(records, kafka_protocol::records::Compression::None)
}

/// A CreateTime record without headers for [`encode_plain_batch`] and [`encode_batch`] (which set
/// its producer fields).
pub fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
) -> kafka_protocol::records::Record {
    kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// [`encode_plain_batch`] with the records compressed by `compression` (the legacy up-conversion
/// keeps the producer's codec).
pub fn encode_batch(
    records: &mut [kafka_protocol::records::Record],
    compression: kafka_protocol::records::Compression,
) -> Result<Bytes, String> {
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
    let first = records.first().map(|r| r.offset).unwrap_or_default();
    for r in records.iter_mut() {
        r.producer_id = -1;
        r.producer_epoch = -1;
        // The batch's base sequence must be -1, and the encoder keeps records in one batch only
        // while offset - sequence stays the same.
        r.sequence = (r.offset - first) as i32 - 1;
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod test_support {
    /// A small deterministic generator, so the fuzz tests need no extra crate and replay exactly.
    pub struct XorShift(pub u64);
    impl XorShift {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression as WireCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType as WireTimestampType,
    };

    /// A producer's batch (base offset 0, epoch -1) of `count` records with the given timestamps and
    /// values of `value_bytes` bytes each.
    pub fn client_batch(timestamps: &[i64], value_bytes: usize) -> Bytes {
        encode(0, -1, timestamps, value_bytes, WireCompression::None)
    }

    pub fn client_batch_compressed(timestamps: &[i64], value_bytes: usize) -> Bytes {
        encode(0, -1, timestamps, value_bytes, WireCompression::Gzip)
    }

    /// A producer's batch of records `(key, timestamp)` at offsets 0..n-1 with `compression`.
    pub fn keyed_batch(records: &[(Option<&str>, i64)], compression: WireCompression) -> Bytes {
        let offsets: Vec<i64> = (0..records.len() as i64).collect();
        batch_at_offsets(records, &offsets, compression)
    }

    /// Like [`keyed_batch`] with the given record offsets (the encoder takes the smallest as the
    /// base and counts LastOffsetDelta from it).
    pub fn batch_at_offsets(
        records: &[(Option<&str>, i64)],
        offsets: &[i64],
        compression: WireCompression,
    ) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .zip(offsets)
            .map(|((key, ts), offset)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: WireTimestampType::Creation,
                offset: *offset,
                sequence: *offset as i32 - 1,
                timestamp: *ts,
                key: key.map(|k| Bytes::from(k.to_string())),
                value: Some(Bytes::from(format!("value-{offset}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode test batch");
        buf.freeze()
    }

    /// `bytes` with header fields rewritten (RecordCount, LastOffsetDelta, Attributes) and the CRC
    /// recomputed, so only the checks after the CRC can fail.
    pub fn with_header(
        bytes: &Bytes,
        record_count: Option<i32>,
        last_offset_delta: Option<i32>,
        attributes: Option<i16>,
    ) -> Bytes {
        let mut v = bytes.to_vec();
        let mut put = |at: usize, data: &[u8]| v[at..at + data.len()].copy_from_slice(data);
        if let Some(n) = record_count {
            put(super::RECORD_COUNT_AT, &n.to_be_bytes());
        }
        if let Some(d) = last_offset_delta {
            put(super::LAST_OFFSET_DELTA_AT, &d.to_be_bytes());
        }
        if let Some(a) = attributes {
            put(super::ATTRIBUTES_AT, &a.to_be_bytes());
        }
        fix_crc(v)
    }

    /// `bytes`' header over new `records` bytes, with BatchLength, the codec bits of Attributes and
    /// the CRC to match (for records compressed by hand).
    pub fn with_records(bytes: &Bytes, records: &[u8], codec: i16) -> Bytes {
        let mut v = bytes[..super::HEADER_BYTES].to_vec();
        v.extend_from_slice(records);
        let length = (v.len() - super::LOG_OVERHEAD) as i32;
        v[super::BATCH_LENGTH_AT..super::BATCH_LENGTH_AT + 4]
            .copy_from_slice(&length.to_be_bytes());
        let at = super::ATTRIBUTES_AT;
        let attributes =
            (i16::from_be_bytes([v[at], v[at + 1]]) & !super::COMPRESSION_MASK) | codec;
        v[at..at + 2].copy_from_slice(&attributes.to_be_bytes());
        fix_crc(v)
    }

    fn fix_crc(mut v: Vec<u8>) -> Bytes {
        let crc = crc32c::crc32c(&v[super::ATTRIBUTES_AT..]);
        v[super::CRC_AT..super::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(v)
    }

    /// A leader-stamped batch at `base_offset` with `epoch`, as a follower receives it.
    pub fn leader_batch(base_offset: i64, epoch: i32, timestamps: &[i64]) -> Bytes {
        encode(base_offset, epoch, timestamps, 16, WireCompression::None)
    }

    /// An idempotent producer's batch (base offset 0, epoch -1) of `count` records with sequences
    /// from `base_sequence`.
    pub fn producer_batch(
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        count: usize,
    ) -> Bytes {
        producer_batch_of(producer_id, producer_epoch, base_sequence, count, false)
    }

    /// [`producer_batch`] with the transactional bit set (KIP-98).
    pub fn transactional_batch(
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        count: usize,
    ) -> Bytes {
        producer_batch_of(producer_id, producer_epoch, base_sequence, count, true)
    }

    fn producer_batch_of(
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        count: usize,
        transactional: bool,
    ) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: WireTimestampType::Creation,
                offset: i as i64,
                sequence: base_sequence + i as i32,
                timestamp: 1_000 + i as i64,
                key: None,
                value: Some(Bytes::from(format!(
                    "p{producer_id}-e{producer_epoch}-s{}",
                    base_sequence + i as i32
                ))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: WireCompression::None,
            },
        )
        .expect("encode test batch");
        buf.freeze()
    }

    pub fn encode(
        base_offset: i64,
        epoch: i32,
        timestamps: &[i64],
        value_bytes: usize,
        compression: WireCompression,
    ) -> Bytes {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: epoch,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: WireTimestampType::Creation,
                offset: base_offset + i as i64,
                // The encoder keeps records in one batch while offset - sequence is constant; this
                // yields BaseSequence -1 (not idempotent).
                sequence: i as i32 - 1,
                timestamp: *ts,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'v'; value_bytes])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode test batch");
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn with_byte(bytes: &Bytes, at: usize, value: u8) -> Bytes {
        let mut v = bytes.to_vec();
        v[at] = value;
        Bytes::from(v)
    }

    #[test]
    fn parses_a_real_batch() {
        let bytes = client_batch(&[1000, 1005, 1002], 10);
        let batch = RecordBatch::parse(bytes.clone()).unwrap();
        assert_eq!(batch.size_in_bytes(), bytes.len());
        assert_eq!(batch.base_offset(), 0);
        assert_eq!(batch.last_offset_delta(), 2);
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.partition_leader_epoch(), -1);
        assert_eq!(batch.max_timestamp(), 1005);
        assert_eq!(batch.base_timestamp(), 1000);
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.compression(), Compression::None);
        assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
        assert!(!batch.is_control() && !batch.is_transactional());
        batch.validate_client_batch().unwrap();
        assert_eq!(
            batch.record_timestamps().unwrap(),
            vec![(0, 1000), (1, 1005), (2, 1002)]
        );
    }

    #[test]
    fn compressed_batches_report_no_record_timestamps() {
        let batch = RecordBatch::parse(client_batch_compressed(&[1, 2], 100)).unwrap();
        assert_eq!(batch.compression(), Compression::Gzip);
        assert_eq!(batch.record_timestamps(), None);
    }

    #[test]
    fn rejects_bad_crc_magic_and_length() {
        let bytes = client_batch(&[1, 2], 8);
        let last = bytes.len() - 1;
        let err = RecordBatch::parse(with_byte(&bytes, last, bytes[last] ^ 0xff)).unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }));
        assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);

        let err = RecordBatch::parse(with_byte(&bytes, MAGIC_AT, 1)).unwrap_err();
        assert_eq!(err, BatchError::UnsupportedMagic { magic: 1 });
        assert_eq!(err.kind(), BatchErrorKind::InvalidRecord);

        let err = RecordBatch::parse(bytes.slice(..bytes.len() - 3)).unwrap_err();
        assert!(matches!(err, BatchError::Truncated { .. }));
        assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);

        let mut two = bytes.to_vec();
        two.extend_from_slice(&bytes);
        let err = RecordBatch::parse(Bytes::from(two)).unwrap_err();
        assert!(matches!(err, BatchError::TrailingBytes { .. }));
        assert_eq!(err.kind(), BatchErrorKind::InvalidRecord);

        let mut short_len = bytes.to_vec();
        short_len[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        let err = RecordBatch::parse(Bytes::from(short_len)).unwrap_err();
        assert_eq!(err, BatchError::InvalidBatchLength { batch_length: 10 });
    }

    /// Patches a field inside the CRC and recomputes the CRC, so only the semantic check can fail.
    fn with_field(bytes: &Bytes, at: usize, data: &[u8]) -> RecordBatch {
        let mut v = bytes.to_vec();
        v[at..at + data.len()].copy_from_slice(data);
        let crc = crc32c::crc32c(&v[ATTRIBUTES_AT..]);
        v[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        RecordBatch::parse(Bytes::from(v)).unwrap()
    }

    #[test]
    fn client_validation() {
        let bytes = client_batch(&[1, 2, 3], 8);
        let bad_count = with_field(&bytes, RECORD_COUNT_AT, &7i32.to_be_bytes());
        assert_eq!(
            bad_count.validate_client_batch(),
            Err(BatchError::RecordCountMismatch {
                record_count: 7,
                last_offset_delta: 2
            })
        );
        let control = with_field(&bytes, ATTRIBUTES_AT, &CONTROL_BIT.to_be_bytes());
        assert_eq!(
            control.validate_client_batch(),
            Err(BatchError::ControlBatchFromClient)
        );
        let codec = with_field(&bytes, ATTRIBUTES_AT, &6i16.to_be_bytes());
        assert_eq!(
            codec.validate_client_batch(),
            Err(BatchError::UnknownCompression { codec: 6 })
        );
        // The header alone is checked here: a header claiming 4 records over 3 passes (the validator
        // walks the records).
        let mut four = with_field(&bytes, LAST_OFFSET_DELTA_AT, &3i32.to_be_bytes()).into_bytes();
        four = with_field(&four, RECORD_COUNT_AT, &4i32.to_be_bytes()).into_bytes();
        RecordBatch::parse(four)
            .unwrap()
            .validate_client_batch()
            .unwrap();
        let negative = with_field(&bytes, LAST_OFFSET_DELTA_AT, &(-1i32).to_be_bytes());
        assert!(matches!(
            negative.validate_client_batch(),
            Err(BatchError::NegativeLastOffsetDelta { .. })
        ));
    }

    #[test]
    fn patches_keep_the_crc_valid() {
        let bytes = client_batch(&[10, 20], 8);
        let mut batch = RecordBatch::parse(bytes.clone()).unwrap();
        batch.set_base_offset(42);
        batch.set_partition_leader_epoch(7);
        let reparsed = RecordBatch::parse(batch.as_bytes().clone()).unwrap();
        assert_eq!(reparsed.base_offset(), 42);
        assert_eq!(reparsed.last_offset(), 43);
        assert_eq!(reparsed.partition_leader_epoch(), 7);
        assert_eq!(
            reparsed.header().crc,
            RecordBatch::parse(bytes.clone()).unwrap().header().crc
        );
        // The caller's copy of the shared bytes is untouched.
        assert_eq!(i64_at(&bytes, 0), 0);

        // Same values: nothing changes, not even the CRC.
        let crc = batch.header().crc;
        batch.set_max_timestamp(TimestampType::CreateTime, 20);
        assert_eq!(batch.header().crc, crc);
        batch.set_max_timestamp(TimestampType::CreateTime, 25);
        let reparsed = RecordBatch::parse(batch.as_bytes().clone()).unwrap();
        assert_eq!(reparsed.max_timestamp(), 25);
        assert_eq!(reparsed.timestamp_type(), TimestampType::CreateTime);

        batch.set_log_append_time(99_000);
        let reparsed = RecordBatch::parse(batch.into_bytes()).unwrap();
        assert_eq!(reparsed.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(reparsed.max_timestamp(), 99_000);
        assert_eq!(
            reparsed.record_timestamps().unwrap(),
            vec![(42, 99_000), (43, 99_000)]
        );
    }

    #[test]
    fn iterator_stops_at_a_partial_trailing_batch() {
        let a = leader_batch(0, 1, &[1, 2]);
        let b = leader_batch(2, 1, &[3]);
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        all.extend_from_slice(&a[..30]);
        let mut it = Batches::new(Bytes::from(all));
        assert_eq!(it.next().unwrap().unwrap().base_offset(), 0);
        assert_eq!(it.next().unwrap().unwrap().base_offset(), 2);
        assert!(it.next().is_none());
        assert_eq!(it.remaining().len(), 30);
    }

    #[test]
    fn iterator_reports_corruption_once() {
        let a = leader_batch(0, 1, &[1, 2]);
        let mut all = a.to_vec();
        let mut bad = a.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        all.extend_from_slice(&bad);
        all.extend_from_slice(&a);
        let results: Vec<_> = Batches::new(Bytes::from(all)).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn never_panics_on_random_or_damaged_bytes() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let good = leader_batch(5, 3, &[1, 2, 3, 4]);
        for round in 0..5000 {
            let bytes: Vec<u8> = match round % 3 {
                // Pure noise of random length.
                0 => (0..rng.next() % 200).map(|_| rng.next() as u8).collect(),
                // A real batch cut short.
                1 => good[..(rng.next() as usize % good.len())].to_vec(),
                // A real batch with a few bytes flipped (lengths and counts included).
                _ => {
                    let mut v = good.to_vec();
                    for _ in 0..1 + rng.next() % 4 {
                        let at = rng.next() as usize % v.len();
                        v[at] = rng.next() as u8;
                    }
                    v
                }
            };
            let bytes = Bytes::from(bytes);
            let _ = BatchHeader::parse(&bytes);
            let _ = BatchHeader::peek_total_size(&bytes);
            if let Ok(batch) = RecordBatch::parse(bytes.clone()) {
                let _ = batch.validate_client_batch();
                let _ = batch.record_timestamps();
                let _ = batch.last_offset();
            }
            for batch in Batches::new(bytes.clone()).flatten() {
                let _ = batch.record_timestamps();
            }
            if let Ok(header) = BatchHeader::parse(&bytes) {
                let _ = record_timestamps(&header, bytes.get(HEADER_BYTES..).unwrap_or(&[]));
            }
        }
    }
}
