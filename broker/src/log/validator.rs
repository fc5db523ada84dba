//! The record checks a leader makes on a producer's batch after its header has passed (Kafka's
//! `LogValidator.validateMessagesAndAssignOffsets`): the records are walked, decompressing them when
//! the batch is compressed, and
//! - there must be exactly RecordCount of them, with offset deltas 0..n-1 in order, each record's
//!   fields filling exactly its length (else the whole batch is INVALID_RECORD, no record errors);
//! - on a compacted topic every record needs a key (INVALID_RECORD for that record);
//! - on a CreateTime topic every record's timestamp must lie within
//!   `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]` (KIP-937), and a
//!   producer may not mark its batch LogAppendTime (INVALID_TIMESTAMP for that record).
//!
//! Per-record failures are all collected and refuse the whole batch together ([`RecordsRejected`],
//! Kafka's `RecordValidationException`): the Produce response lists each one (KIP-467), so clients
//! fail exactly those records and the rest of the batch with a "different record" error.
//!
//! What must stay true: nothing here panics or allocates without bound on hostile bytes. Compressed
//! records are streamed: only the decoder's buffers are held (plus one snappy block, itself bounded by
//! the block's compressed size), keys and values are skipped, never copied. A batch is never
//! rewritten here; the caller patches only MaxTimestamp.
//!
//! One deliberate difference: a compressed batch whose inner offset deltas are not 0..n-1 is refused
//! (INVALID_RECORD), where Kafka would re-compress it with fresh offsets for the sake of pre-0.11
//! clients. Chronik keeps producers' bytes as they are, and no v2 client writes such batches.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};

use thiserror::Error;

use super::batch::{
    BatchError, BatchHeader, Compression, RecordBatch, TimestampType, NO_TIMESTAMP,
};
use super::config::LogConfig;
use super::error::LogError;

/// What a topic asks of a producer's records (the `LogConfig` fields Kafka's `LogValidator` reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRules {
    /// `cleanup.policy` has `compact`: every record needs a key.
    pub compacted: bool,
    pub timestamp_type: TimestampType,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

impl RecordRules {
    pub fn of(config: &LogConfig) -> Self {
        RecordRules {
            compacted: config.cleanup_compact,
            timestamp_type: config.message_timestamp_type,
            timestamp_before_max_ms: config.message_timestamp_before_max_ms,
            timestamp_after_max_ms: config.message_timestamp_after_max_ms,
        }
    }
}

/// The Kafka error one refused record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordErrorKind {
    /// INVALID_RECORD (87).
    InvalidRecord,
    /// INVALID_TIMESTAMP (32).
    InvalidTimestamp,
}

/// One refused record: its index in the batch and why (KIP-467's `BatchIndexAndErrorMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub kind: RecordErrorKind,
    pub message: String,
}

/// A batch refused because some of its records are (Kafka's `RecordValidationException`). Nothing of
/// it was appended. The error is INVALID_TIMESTAMP if any record has a bad timestamp, else
/// INVALID_RECORD; the message is Kafka's.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}", self.message())]
pub struct RecordsRejected {
    pub errors: Vec<RecordError>,
}

impl RecordsRejected {
    pub fn kind(&self) -> RecordErrorKind {
        if self
            .errors
            .iter()
            .any(|e| e.kind == RecordErrorKind::InvalidTimestamp)
        {
            RecordErrorKind::InvalidTimestamp
        } else {
            RecordErrorKind::InvalidRecord
        }
    }

    fn message(&self) -> String {
        if self.kind() == RecordErrorKind::InvalidTimestamp {
            return "One or more records have been rejected due to invalid timestamp".to_string();
        }
        let mut shown = String::new();
        for (i, e) in self.errors.iter().take(3).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                shown,
                "{sep}RecordError(batchIndex={}, message='{}')",
                e.batch_index, e.message
            );
        }
        format!(
            "One or more records have been rejected due to {} record errors in total, and only \
             showing the first three errors at most: [{shown}]",
            self.errors.len()
        )
    }
}

/// What the walk learned about an accepted batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validated {
    /// The largest record timestamp (-1 when no record has one): Kafka writes it into the header of
    /// a CreateTime batch rather than trust the producer's.
    pub max_timestamp: i64,
}

/// Walks `batch`'s records under `rules` at broker time `now_ms`. `topic_partition` (`<topic>-<n>`)
/// only names the partition in messages. A structural problem is [`LogError::InvalidBatch`]; records
/// that break a rule are [`LogError::RecordsRejected`].
pub fn validate_records(
    batch: &RecordBatch,
    rules: &RecordRules,
    topic_partition: &str,
    now_ms: i64,
) -> Result<Validated, LogError> {
    let header = batch.header();
    let mut check = RecordCheck {
        header,
        rules,
        topic_partition,
        now_ms,
        max_timestamp: NO_TIMESTAMP,
        errors: Vec::new(),
    };
    let bytes = batch.records_bytes();
    let codec = header.compression();
    let decode_error = |e: io::Error| BatchError::Decompression {
        codec,
        reason: e.to_string(),
    };
    // Decoder output is read through a buffer so the walk's byte-at-a-time reads stay cheap.
    const CHUNK: usize = 16 * 1024;
    let walked = match codec {
        Compression::None => walk(bytes, header, &mut check),
        Compression::Gzip => walk(
            BufReader::with_capacity(CHUNK, flate2::read::MultiGzDecoder::new(bytes)),
            header,
            &mut check,
        ),
        Compression::Snappy => walk(
            BufReader::with_capacity(CHUNK, SnappyReader::new(bytes)),
            header,
            &mut check,
        ),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(bytes).map_err(decode_error)?;
            walk(BufReader::with_capacity(CHUNK, decoder), header, &mut check)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(bytes).map_err(decode_error)?;
            walk(BufReader::with_capacity(CHUNK, decoder), header, &mut check)
        }
        Compression::Unknown(codec) => return Err(BatchError::UnknownCompression { codec }.into()),
    };
    match walked {
        Ok(()) => {}
        Err(WalkError::Invalid(reason)) => {
            return Err(BatchError::RecordsMismatch { reason }.into())
        }
        Err(WalkError::Io(e)) => return Err(decode_error(e).into()),
    }
    if !check.errors.is_empty() {
        return Err(RecordsRejected {
            errors: check.errors,
        }
        .into());
    }
    Ok(Validated {
        max_timestamp: check.max_timestamp,
    })
}

/// The per-record rules (Kafka's `validateKey` and `validateTimestamp`) and what they collect.
struct RecordCheck<'a> {
    header: &'a BatchHeader,
    rules: &'a RecordRules,
    topic_partition: &'a str,
    now_ms: i64,
    max_timestamp: i64,
    errors: Vec<RecordError>,
}

impl RecordCheck<'_> {
    fn record(&mut self, index: i32, timestamp_delta: i64, has_key: bool) {
        let h = self.header;
        let refuse = |kind, message| RecordError {
            batch_index: index,
            kind,
            message,
        };
        if self.rules.compacted && !has_key {
            self.errors.push(refuse(
                RecordErrorKind::InvalidRecord,
                format!(
                    "Compacted topic cannot accept message without key in topic partition {}",
                    self.topic_partition
                ),
            ));
            return;
        }
        let timestamp = match h.timestamp_type() {
            TimestampType::LogAppendTime => h.max_timestamp,
            TimestampType::CreateTime => h.base_timestamp.wrapping_add(timestamp_delta),
        };
        self.max_timestamp = self.max_timestamp.max(timestamp);
        if self.rules.timestamp_type == TimestampType::CreateTime && timestamp != NO_TIMESTAMP {
            let too_old =
                self.now_ms.saturating_sub(timestamp) > self.rules.timestamp_before_max_ms;
            let too_new = timestamp.saturating_sub(self.now_ms) > self.rules.timestamp_after_max_ms;
            if too_old || too_new {
                self.errors.push(refuse(
                    RecordErrorKind::InvalidTimestamp,
                    format!(
                        "Timestamp {timestamp} of message with offset {} is out of range. The \
                         timestamp should be within [{}, {}]",
                        h.base_offset.wrapping_add(i64::from(index)),
                        self.now_ms
                            .saturating_sub(self.rules.timestamp_before_max_ms),
                        self.now_ms
                            .saturating_add(self.rules.timestamp_after_max_ms),
                    ),
                ));
            }
        } else if h.timestamp_type() == TimestampType::LogAppendTime {
            self.errors.push(refuse(
                RecordErrorKind::InvalidTimestamp,
                "Invalid timestamp type in message. Producer should not set timestamp type to \
                 LogAppendTime."
                    .to_string(),
            ));
        }
    }
}

enum WalkError {
    /// The records do not match the header or their own lengths: INVALID_RECORD.
    Invalid(&'static str),
    /// The decoder failed: the compressed bytes are damaged.
    Io(io::Error),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

/// Reads the records (Kafka's `DefaultRecord`: length, attributes, timestamp delta, offset delta,
/// key, value, headers) one by one and hands each to `check`. Keys, values and headers are skipped
/// by their lengths.
fn walk<R: BufRead>(
    mut input: R,
    header: &BatchHeader,
    check: &mut RecordCheck<'_>,
) -> Result<(), WalkError> {
    for index in 0..header.record_count.max(0) {
        let mut record = Record {
            input: &mut input,
            left: 5,
        };
        let Some(length) = record.optional_varint()? else {
            return Err(WalkError::Invalid(
                "fewer records than RecordCount (premature end of the records)",
            ));
        };
        let Ok(length) = u64::try_from(length) else {
            return Err(WalkError::Invalid("negative record length"));
        };
        record.left = length;
        record.byte()?; // attributes: unused in v2
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varint()?;
        if offset_delta != index {
            return Err(WalkError::Invalid(
                "record offset deltas are not 0..RecordCount-1",
            ));
        }
        let key_length = record.varint()?;
        record.skip_bytes(key_length)?;
        let value_length = record.varint()?;
        record.skip_bytes(value_length)?;
        let headers = record.varint()?;
        if headers < 0 {
            return Err(WalkError::Invalid("negative record header count"));
        }
        for _ in 0..headers {
            let key_length = record.varint()?;
            if key_length < 0 {
                return Err(WalkError::Invalid("negative record header key length"));
            }
            record.skip_bytes(key_length)?;
            let value_length = record.varint()?;
            record.skip_bytes(value_length)?;
        }
        if record.left != 0 {
            return Err(WalkError::Invalid(
                "record fields do not fill the record length",
            ));
        }
        check.record(index, timestamp_delta, key_length >= 0);
    }
    if !input.fill_buf()?.is_empty() {
        return Err(WalkError::Invalid(
            "more records than RecordCount (bytes after the last record)",
        ));
    }
    Ok(())
}

/// One record's bytes: reads never go past `left`.
struct Record<'a, R> {
    input: &'a mut R,
    left: u64,
}

impl<R: BufRead> Record<'_, R> {
    /// The next byte, `None` at the end of the input.
    fn next_byte(&mut self) -> Result<Option<u8>, WalkError> {
        if self.left == 0 {
            return Err(WalkError::Invalid(
                "record fields run past the record length",
            ));
        }
        let Some(&byte) = self.input.fill_buf()?.first() else {
            return Ok(None);
        };
        self.input.consume(1);
        self.left -= 1;
        Ok(Some(byte))
    }

    fn byte(&mut self) -> Result<u8, WalkError> {
        self.next_byte()?.ok_or(WalkError::Invalid(
            "records end inside a record (premature end of the records)",
        ))
    }

    /// An unsigned LEB128 of at most `max_bytes`; `None` if the input ends before its first byte.
    fn unsigned(&mut self, max_bytes: u32) -> Result<Option<u64>, WalkError> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let byte = match self.next_byte()? {
                Some(b) => b,
                None if i == 0 => return Ok(None),
                None => {
                    return Err(WalkError::Invalid(
                        "records end inside a varint (premature end of the records)",
                    ))
                }
            };
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(WalkError::Invalid("varint longer than its type allows"))
    }

    fn optional_varint(&mut self) -> Result<Option<i32>, WalkError> {
        Ok(self.unsigned(5)?.map(|raw| {
            let raw = raw as u32;
            ((raw >> 1) as i32) ^ -((raw & 1) as i32)
        }))
    }

    fn varint(&mut self) -> Result<i32, WalkError> {
        self.optional_varint()?
            .ok_or(WalkError::Invalid("records end inside a record"))
    }

    fn varlong(&mut self) -> Result<i64, WalkError> {
        let raw = self
            .unsigned(10)?
            .ok_or(WalkError::Invalid("records end inside a record"))?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Skips a length-prefixed field's bytes: -1 is null (nothing follows), below that is invalid.
    fn skip_bytes(&mut self, length: i32) -> Result<(), WalkError> {
        if length < -1 {
            return Err(WalkError::Invalid("negative field length"));
        }
        let mut n = u64::try_from(length).unwrap_or(0);
        if n > self.left {
            return Err(WalkError::Invalid("field runs past the record length"));
        }
        self.left -= n;
        while n > 0 {
            let available = self.input.fill_buf()?.len() as u64;
            if available == 0 {
                return Err(WalkError::Invalid(
                    "records end inside a field (premature end of the records)",
                ));
            }
            let step = available.min(n);
            self.input.consume(step as usize);
            n -= step;
        }
        Ok(())
    }
}

/// Snappy as Kafka's clients write it: the xerial stream (a 16-byte magic header, then blocks of a
/// 4-byte length and raw snappy), or one raw snappy block (what librdkafka writes). Decompresses one
/// block at a time.
struct SnappyReader<'a> {
    rest: &'a [u8],
    /// Raw snappy without the xerial framing: `rest` is one block.
    raw: bool,
    block: Vec<u8>,
    at: usize,
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

impl<'a> SnappyReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let xerial = bytes.starts_with(XERIAL_MAGIC) && bytes.len() >= XERIAL_HEADER_BYTES;
        SnappyReader {
            rest: if xerial {
                &bytes[XERIAL_HEADER_BYTES..]
            } else {
                bytes
            },
            raw: !xerial,
            block: Vec::new(),
            at: 0,
        }
    }

    /// Decompresses the next block into `self.block`; false when there is none.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let compressed = if self.raw {
            std::mem::take(&mut self.rest)
        } else {
            let (len, rest) = self
                .rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid_data("truncated xerial block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > rest.len() {
                return Err(invalid_data("xerial block runs past the batch"));
            }
            let (block, rest) = rest.split_at(len);
            self.rest = rest;
            block
        };
        let len = snap::raw::decompress_len(compressed).map_err(invalid_data)?;
        // A snappy copy element of 3 bytes yields at most 64: a block claiming more than that ratio
        // is damaged, and must not make us allocate what it claims.
        if len > compressed.len().saturating_mul(22).max(64) {
            return Err(invalid_data("snappy block claims an impossible length"));
        }
        self.block.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(invalid_data)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn invalid_data(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression as Wire;

    use super::*;
    use crate::log::batch::test_support::*;
    use crate::log::batch::BatchErrorKind;

    const CODECS: [Wire; 5] = [Wire::None, Wire::Gzip, Wire::Snappy, Wire::Lz4, Wire::Zstd];
    const NOW: i64 = 1_700_000_000_000;

    fn rules() -> RecordRules {
        RecordRules::of(&LogConfig::default())
    }

    fn compacted() -> RecordRules {
        RecordRules {
            compacted: true,
            ..rules()
        }
    }

    fn validate(bytes: Bytes, rules: &RecordRules) -> Result<Validated, LogError> {
        let batch = RecordBatch::parse(bytes).unwrap();
        batch.validate_client_batch().unwrap();
        validate_records(&batch, rules, "t-0", NOW)
    }

    fn rejected(result: Result<Validated, LogError>) -> RecordsRejected {
        match result {
            Err(LogError::RecordsRejected(r)) => r,
            other => panic!("expected records rejected, got {other:?}"),
        }
    }

    fn invalid_batch(result: Result<Validated, LogError>) -> BatchError {
        match result {
            Err(LogError::InvalidBatch(e)) => e,
            other => panic!("expected an invalid batch, got {other:?}"),
        }
    }

    use bytes::Bytes;

    #[test]
    fn a_compacted_topic_refuses_exactly_the_keyless_records_in_every_codec() {
        let records = [(Some("a"), NOW), (None, NOW), (Some("b"), NOW), (None, NOW)];
        for codec in CODECS {
            let bytes = keyed_batch(&records, codec);
            validate(bytes.clone(), &rules()).unwrap();
            let r = rejected(validate(bytes, &compacted()));
            assert_eq!(r.kind(), RecordErrorKind::InvalidRecord, "{codec:?}");
            assert_eq!(
                r.errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
                vec![1, 3],
                "{codec:?}"
            );
            assert_eq!(
                r.errors[0].message,
                "Compacted topic cannot accept message without key in topic partition t-0"
            );
            assert!(r.to_string().starts_with(
                "One or more records have been rejected due to 2 record errors in total"
            ));
            let keyed = keyed_batch(&[(Some("a"), NOW), (Some(""), NOW)], codec);
            validate(keyed, &compacted()).unwrap();
        }
    }

    #[test]
    fn create_time_bounds_refuse_records_outside_them() {
        let bounded = RecordRules {
            timestamp_before_max_ms: 60_000,
            timestamp_after_max_ms: 1_000,
            ..rules()
        };
        for codec in CODECS {
            let bytes = keyed_batch(
                &[
                    (Some("old"), NOW - 60_001),
                    (Some("edge"), NOW - 60_000),
                    (Some("new"), NOW + 1_001),
                    (Some("none"), NO_TIMESTAMP),
                    (Some("edge"), NOW + 1_000),
                ],
                codec,
            );
            let r = rejected(validate(bytes.clone(), &bounded));
            assert_eq!(r.kind(), RecordErrorKind::InvalidTimestamp);
            assert_eq!(
                r.errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
                vec![0, 2],
                "{codec:?}"
            );
            assert_eq!(
                r.errors[0].message,
                format!(
                    "Timestamp {} of message with offset 0 is out of range. The timestamp should \
                     be within [{}, {}]",
                    NOW - 60_001,
                    NOW - 60_000,
                    NOW + 1_000
                )
            );
            assert_eq!(
                r.to_string(),
                "One or more records have been rejected due to invalid timestamp"
            );
            // Kafka's defaults: no lower bound, one hour ahead.
            validate(bytes, &rules()).unwrap();
            let ahead = keyed_batch(&[(Some("k"), NOW + 3_600_001)], codec);
            assert_eq!(
                rejected(validate(ahead, &rules())).kind(),
                RecordErrorKind::InvalidTimestamp
            );
            // LogAppendTime topics ignore the producer's timestamps.
            let log_append_time = RecordRules {
                timestamp_type: TimestampType::LogAppendTime,
                ..bounded
            };
            let ancient = keyed_batch(&[(Some("k"), 1), (Some("k"), NOW + 10_000_000)], codec);
            validate(ancient, &log_append_time).unwrap();
        }
    }

    #[test]
    fn a_producer_may_not_mark_its_batch_log_append_time() {
        let bytes = keyed_batch(&[(Some("k"), NOW)], Wire::Lz4);
        let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 1 << 3;
        let marked = with_header(&bytes, None, None, Some(attributes));
        let log_append_time = RecordRules {
            timestamp_type: TimestampType::LogAppendTime,
            ..rules()
        };
        let r = rejected(validate(marked.clone(), &log_append_time));
        assert_eq!(r.kind(), RecordErrorKind::InvalidTimestamp);
        // On a CreateTime topic its records carry MaxTimestamp, which is checked against the bounds.
        validate(marked, &rules()).unwrap();
    }

    #[test]
    fn the_largest_record_timestamp_is_reported_whatever_the_header_says() {
        for codec in CODECS {
            let bytes = keyed_batch(&[(Some("a"), NOW - 5), (Some("b"), NOW - 9)], codec);
            assert_eq!(
                validate(bytes, &rules()).unwrap().max_timestamp,
                NOW - 5,
                "{codec:?}"
            );
        }
        let none = keyed_batch(&[(Some("a"), NO_TIMESTAMP)], Wire::None);
        assert_eq!(
            validate(none, &rules()).unwrap().max_timestamp,
            NO_TIMESTAMP
        );
    }

    #[test]
    fn record_counts_and_offset_deltas_must_match_the_header_in_every_codec() {
        let records = [(Some("a"), NOW), (Some("b"), NOW), (Some("c"), NOW)];
        for codec in CODECS {
            let bytes = keyed_batch(&records, codec);
            // The header claims one record more, or one fewer, than the batch holds.
            for (count, expected) in [(4, "fewer records"), (2, "more records")] {
                let lying = with_header(&bytes, Some(count), Some(count - 1), None);
                let e = invalid_batch(validate(lying, &rules()));
                assert_eq!(e.kind(), BatchErrorKind::InvalidRecord, "{codec:?}");
                assert!(e.to_string().contains(expected), "{codec:?}: {e}");
            }
            // Inner offsets 0, 2, 3 under a header that says 3 records, last delta 2.
            let gappy = batch_at_offsets(&records, &[0, 2, 3], codec);
            let gappy = with_header(&gappy, None, Some(2), None);
            let e = invalid_batch(validate(gappy, &rules()));
            assert_eq!(e.kind(), BatchErrorKind::InvalidRecord, "{codec:?}");
            assert!(e.to_string().contains("offset deltas"), "{codec:?}: {e}");
        }
    }

    /// Uncompressed records of a batch, re-compressed by hand.
    fn plain_records(records: &[(Option<&str>, i64)]) -> (Bytes, Vec<u8>) {
        let plain = keyed_batch(records, Wire::None);
        let inner = RecordBatch::parse(plain.clone())
            .unwrap()
            .records_bytes()
            .to_vec();
        (plain, inner)
    }

    #[test]
    fn raw_snappy_as_librdkafka_writes_it_is_read_too() {
        let (plain, inner) = plain_records(&[(Some("a"), NOW), (None, NOW)]);
        let raw = snap::raw::Encoder::new().compress_vec(&inner).unwrap();
        let bytes = with_records(&plain, &raw, 2);
        assert_eq!(
            RecordBatch::parse(bytes.clone()).unwrap().compression(),
            Compression::Snappy
        );
        validate(bytes.clone(), &rules()).unwrap();
        let r = rejected(validate(bytes, &compacted()));
        assert_eq!(r.errors[0].batch_index, 1);
    }

    #[test]
    fn damaged_compressed_records_are_corrupt_messages() {
        let (plain, inner) = plain_records(&[(Some("a"), NOW)]);
        for codec in [1i16, 2, 3, 4] {
            let bytes = with_records(&plain, &inner, codec); // not compressed at all
            let e = invalid_batch(validate(bytes, &rules()));
            assert_eq!(
                e.kind(),
                BatchErrorKind::CorruptMessage,
                "codec {codec}: {e}"
            );
        }
        // A raw snappy block claiming 4 GiB from a handful of bytes is refused before any allocation.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let e = invalid_batch(validate(with_records(&plain, &bomb, 2), &rules()));
        assert_eq!(e.kind(), BatchErrorKind::CorruptMessage);
    }

    #[test]
    fn record_fields_must_fill_each_record_exactly() {
        let (plain, inner) = plain_records(&[(Some("a"), NOW)]);
        // The record's length varint (first byte) one larger: its fields end before it does.
        let mut longer = inner.clone();
        longer[0] += 2; // zigzag: +1
        longer.push(0);
        let e = invalid_batch(validate(with_records(&plain, &longer, 0), &rules()));
        assert!(e.to_string().contains("do not fill"), "{e}");
        let mut shorter = inner.clone();
        shorter[0] -= 2;
        let e = invalid_batch(validate(with_records(&plain, &shorter, 0), &rules()));
        assert_eq!(e.kind(), BatchErrorKind::InvalidRecord, "{e}");
    }

    #[test]
    fn never_panics_on_damaged_records_in_any_codec() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let records = [(Some("key"), NOW), (None, NOW - 7), (Some(""), NOW + 3)];
        let goods: Vec<Bytes> = CODECS.iter().map(|c| keyed_batch(&records, *c)).collect();
        for round in 0..3000 {
            let good = &goods[round % goods.len()];
            let mut inner = good[61..].to_vec();
            for _ in 0..1 + rng.next() % 3 {
                let at = rng.next() as usize % inner.len();
                inner[at] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(4) {
                inner.truncate(rng.next() as usize % inner.len());
            }
            let codec = i16::from_be_bytes([good[21], good[22]]) & 0x07;
            let bytes = with_records(good, &inner, codec);
            let batch = RecordBatch::parse(bytes).unwrap();
            let _ = validate_records(&batch, &compacted(), "t-0", NOW);
        }
    }
}
