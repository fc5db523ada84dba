//! Legacy message sets (magic 0, and magic 1 with timestamps from KIP-32), as Produce v0–v2 carries
//! them, up-converted to the one v2 record batch the log stores (Kafka's `LogValidator`
//! `convertAndAssignOffsetsNonCompressed`, and its compressed path that re-encodes the wrapper's inner
//! messages).
//!
//! A legacy message set is a run of entries `offset i64, size i32, crc i32, magic i8, attributes i8,
//! [timestamp i64 (magic 1)], key bytes, value bytes`, the CRC-32 (IEEE) covering magic to the end. A
//! compressed entry (codec in attribute bits 0–2) is a wrapper whose value is another message set,
//! compressed; its inner messages may not be compressed again. Offsets in the set are the client's
//! and are ignored: the batch gets offset deltas 0..n-1 and the log assigns the real ones.
//!
//! What must stay true: nothing here panics on arbitrary bytes; a set converts whole or not at all;
//! every refusal is a [`LegacyError`] whose Kafka code `LogError::kafka_error` picks. The batch is
//! CreateTime with producer id -1 (legacy producers are never idempotent). Magic 0 messages carry no
//! timestamp, so their records get NO_TIMESTAMP (-1), as in Kafka; a LogAppendTime topic stamps the
//! batch on append like any other. The attribute's timestamp-type bit is not trusted (the topic's
//! `message.timestamp.type` decides, as for v2 batches). The batch is compressed with the codec of the
//! last compressed wrapper, or not at all: what the producer sent, which is Kafka's
//! `compression.type=producer`.
//!
//! Codecs are `kafka-protocol`'s. LZ4 wrappers of magic 0 carry the frame-descriptor checksum Kafka
//! computed wrongly before KIP-57 (over the frame magic too, KAFKA-3160); Kafka ignores it for magic 0,
//! and so does [`repair_lz4_header_checksum`] by rewriting it before the frame is decoded.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy};
use kafka_protocol::records::{Compression as WireCompression, Record};
use thiserror::Error;

use super::batch::{
    encode_batch, plain_record, BatchErrorKind, Compression, MAGIC_V2, NO_TIMESTAMP,
};

/// Offset (8) + size (4): the part of an entry its size does not count.
const LOG_OVERHEAD: usize = 12;
/// Where the magic byte sits in an entry, in every format (v2 included).
const MAGIC_AT: usize = 16;
/// CRC (4), magic, attributes, key length (4), value length (4).
const MIN_SIZE_V0: usize = 14;
/// [`MIN_SIZE_V0`] and the timestamp (8).
const MIN_SIZE_V1: usize = 22;

/// Why a legacy message set was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LegacyError {
    #[error("empty message set")]
    Empty,
    #[error("legacy message truncated at byte {at}: {available} bytes, need {needed}")]
    Truncated {
        at: usize,
        needed: usize,
        available: usize,
    },
    #[error("legacy message size {size} is below the {min}-byte minimum")]
    SizeTooSmall { size: i32, min: usize },
    #[error("legacy message CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("legacy message {field} length {length} does not fit its message")]
    BadLength { field: &'static str, length: i32 },
    #[error("legacy message has {trailing} bytes after its value")]
    TrailingBytes { trailing: usize },
    #[error("cannot decompress a {codec:?} wrapper message: {reason}")]
    Decompress { codec: Compression, reason: String },
    #[error("message magic {magic} in a legacy message set")]
    UnsupportedMagic { magic: i8 },
    #[error("legacy message has invalid timestamp {timestamp}")]
    InvalidTimestamp { timestamp: i64 },
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },
    #[error("zstd needs the v2 record format")]
    ZstdNeedsV2,
    #[error("compressed wrapper message has a null value")]
    NullWrapperValue,
    #[error("compressed wrapper message holds no messages")]
    EmptyWrapper,
    #[error("compressed inner messages are not allowed (nested compression)")]
    NestedCompression,
    #[error("inner message magic {inner} differs from its wrapper's magic {wrapper}")]
    InnerMagicMismatch { inner: i8, wrapper: i8 },
    #[error("cannot encode the up-converted batch: {0}")]
    Encode(String),
}

impl LegacyError {
    /// CORRUPT_MESSAGE for damaged bytes, INVALID_RECORD for well-framed but unacceptable ones
    /// (`LogError::kafka_error` answers zstd and encoding failures itself).
    pub fn kind(&self) -> BatchErrorKind {
        match self {
            LegacyError::Truncated { .. }
            | LegacyError::SizeTooSmall { .. }
            | LegacyError::CrcMismatch { .. }
            | LegacyError::BadLength { .. }
            | LegacyError::TrailingBytes { .. }
            | LegacyError::Decompress { .. } => BatchErrorKind::CorruptMessage,
            _ => BatchErrorKind::InvalidRecord,
        }
    }
}

/// Whether `records` is a legacy message set (magic 0 or 1) rather than a v2 batch.
pub fn is_legacy(records: &[u8]) -> bool {
    records.get(MAGIC_AT).is_none_or(|&m| (m as i8) < MAGIC_V2)
}

/// Converts a whole legacy message set into one v2 batch (base offset 0, uncompressed or compressed
/// with the wrappers' codec).
pub fn up_convert(records: &Bytes) -> Result<Bytes, LegacyError> {
    let mut converted = Vec::new();
    let mut codec = Compression::None;
    for message in parse_message_set(records)? {
        if message.codec == Compression::None {
            converted.push(message);
            continue;
        }
        codec = message.codec;
        let value = message.value.ok_or(LegacyError::NullWrapperValue)?;
        let inner = decompress(message.codec, message.magic, value)?;
        if inner.is_empty() {
            return Err(LegacyError::EmptyWrapper);
        }
        for m in parse_message_set(&inner)? {
            if m.codec != Compression::None {
                return Err(LegacyError::NestedCompression);
            }
            if m.magic != message.magic {
                return Err(LegacyError::InnerMagicMismatch {
                    inner: m.magic,
                    wrapper: message.magic,
                });
            }
            converted.push(m);
        }
    }
    let mut batch: Vec<Record> = converted
        .into_iter()
        .enumerate()
        .map(|(i, m)| plain_record(i as i64, m.timestamp, m.key, m.value))
        .collect();
    let compression = match codec {
        Compression::Gzip => WireCompression::Gzip,
        Compression::Snappy => WireCompression::Snappy,
        Compression::Lz4 => WireCompression::Lz4,
        _ => WireCompression::None,
    };
    encode_batch(&mut batch, compression).map_err(LegacyError::Encode)
}

/// One parsed message of either legacy format.
#[derive(Debug)]
struct LegacyMessage {
    magic: i8,
    codec: Compression,
    /// NO_TIMESTAMP for magic 0.
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Every entry of a message set; a partial entry anywhere refuses the whole set.
fn parse_message_set(set: &Bytes) -> Result<Vec<LegacyMessage>, LegacyError> {
    if set.is_empty() {
        return Err(LegacyError::Empty);
    }
    let mut messages = Vec::new();
    let mut at = 0;
    while at < set.len() {
        let header = slice(set, at, LOG_OVERHEAD)?;
        let size = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let body_len = usize::try_from(size)
            .ok()
            .filter(|&s| s >= MIN_SIZE_V0)
            .ok_or(LegacyError::SizeTooSmall {
                size,
                min: MIN_SIZE_V0,
            })?;
        let body = slice(set, at + LOG_OVERHEAD, body_len)?;
        messages.push(parse_message(body)?);
        at += LOG_OVERHEAD + body_len;
    }
    Ok(messages)
}

/// `len` bytes of `buf` from `at`, or how far they run past its end.
fn slice(buf: &Bytes, at: usize, len: usize) -> Result<Bytes, LegacyError> {
    if buf.len() - at < len {
        return Err(LegacyError::Truncated {
            at,
            needed: len,
            available: buf.len() - at,
        });
    }
    Ok(buf.slice(at..at + len))
}

/// One message from its CRC to its end (at least [`MIN_SIZE_V0`] bytes).
fn parse_message(body: Bytes) -> Result<LegacyMessage, LegacyError> {
    let stored = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let magic = body[4] as i8;
    let min = match magic {
        0 => MIN_SIZE_V0,
        1 => MIN_SIZE_V1,
        magic => return Err(LegacyError::UnsupportedMagic { magic }),
    };
    if body.len() < min {
        return Err(LegacyError::SizeTooSmall {
            size: body.len() as i32,
            min,
        });
    }
    let computed = crc32fast::hash(&body[4..]);
    if computed != stored {
        return Err(LegacyError::CrcMismatch { stored, computed });
    }
    let codec = match Compression::from_attributes(i16::from(body[5])) {
        Compression::Zstd => return Err(LegacyError::ZstdNeedsV2),
        Compression::Unknown(codec) => return Err(LegacyError::UnknownCompression { codec }),
        codec => codec,
    };
    let mut at = 6;
    let mut timestamp = NO_TIMESTAMP;
    if magic == 1 {
        timestamp = i64::from_be_bytes(array_at(&body, at));
        at += 8;
        if timestamp < NO_TIMESTAMP {
            return Err(LegacyError::InvalidTimestamp { timestamp });
        }
    }
    let key = length_prefixed(&body, &mut at, "key")?;
    let value = length_prefixed(&body, &mut at, "value")?;
    if at != body.len() {
        return Err(LegacyError::TrailingBytes {
            trailing: body.len() - at,
        });
    }
    Ok(LegacyMessage {
        magic,
        codec,
        timestamp,
        key,
        value,
    })
}

/// Reads `i32 length, bytes` (length -1: null) at `*at`, which the caller has checked holds the
/// length field, and moves `*at` past it.
fn length_prefixed(
    body: &Bytes,
    at: &mut usize,
    field: &'static str,
) -> Result<Option<Bytes>, LegacyError> {
    let length = i32::from_be_bytes(array_at(body, *at));
    *at += 4;
    if length == -1 {
        return Ok(None);
    }
    // The value's length field follows the key, so it must fit too.
    let after = if field == "key" { 4 } else { 0 };
    let len = usize::try_from(length)
        .ok()
        .filter(|&len| body.len() - *at >= len + after)
        .ok_or(LegacyError::BadLength { field, length })?;
    let bytes = body.slice(*at..*at + len);
    *at += len;
    Ok(Some(bytes))
}

/// The `N` bytes at `at`; callers have checked the length.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// The inner message set of a compressed wrapper.
fn decompress(codec: Compression, magic: i8, value: Bytes) -> Result<Bytes, LegacyError> {
    let mut input = value;
    let inner = match codec {
        Compression::Gzip => Gzip::decompress(&mut input, |out| Ok(std::mem::take(out))),
        // Raw snappy and the xerial framing of the Java clients both decode.
        Compression::Snappy => Snappy::decompress(&mut input, |out| Ok(std::mem::take(out))),
        Compression::Lz4 => {
            if magic == 0 {
                input = repair_lz4_header_checksum(input);
            }
            Lz4::decompress(&mut input, |out| Ok(std::mem::take(out)))
        }
        // Not a wrapper (None), or refused by parse_message (zstd, unknown codecs).
        Compression::None | Compression::Zstd | Compression::Unknown(_) => return Ok(input),
    };
    inner.map_err(|e| LegacyError::Decompress {
        codec,
        reason: format!("{e:#}"),
    })
}

/// An LZ4 frame with its frame-descriptor checksum (HC) recomputed, as Kafka's
/// `KafkaLZ4BlockInputStream` ignores it for magic 0 (KAFKA-3160). Frames too short to hold one are
/// returned as they are for the decoder to refuse.
pub(crate) fn repair_lz4_header_checksum(frame: Bytes) -> Bytes {
    // magic (4), FLG, BD, content size (8, FLG bit 3), dictionary id (4, FLG bit 0), HC.
    let Some(&flg) = frame.get(4) else {
        return frame;
    };
    let hc_at = 6 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    if frame.len() <= hc_at {
        return frame;
    }
    let mut fixed = BytesMut::from(&frame[..]);
    fixed[hc_at] = (xxh32_short(&frame[4..hc_at]) >> 8) as u8;
    fixed.freeze()
}

/// XXH32 with seed 0 of fewer than 16 bytes (an LZ4 frame descriptor is at most 14), the only case
/// the header checksum needs.
fn xxh32_short(input: &[u8]) -> u32 {
    const P1: u32 = 0x9E37_79B1;
    const P2: u32 = 0x85EB_CA77;
    const P3: u32 = 0xC2B2_AE3D;
    const P4: u32 = 0x27D4_EB2F;
    const P5: u32 = 0x1656_67B1;
    debug_assert!(input.len() < 16);
    let mut h = P5.wrapping_add(input.len() as u32);
    let mut words = input.chunks_exact(4);
    for word in &mut words {
        let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        h = h
            .wrapping_add(w.wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
    }
    for &b in words.remainder() {
        h = h
            .wrapping_add(u32::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use kafka_protocol::compression::Compressor;
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::log::batch::RecordBatch;

    const GZIP: i8 = 1;
    const SNAPPY: i8 = 2;
    const LZ4: i8 = 3;

    /// One message-set entry, CRC and size computed: offset, size, crc, magic, attributes,
    /// [timestamp], key, value.
    fn entry(
        offset: i64,
        magic: i8,
        attributes: i8,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = vec![magic as u8, attributes as u8];
        if magic == 1 {
            body.extend_from_slice(&timestamp.to_be_bytes());
        }
        for field in [key, value] {
            match field {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    body.extend_from_slice(b);
                }
            }
        }
        let mut out = offset.to_be_bytes().to_vec();
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Three keyed messages of `magic` with timestamps 1000, 1001, 1002 (magic 1), offsets as a
    /// client numbers them inside a wrapper.
    fn three(magic: i8) -> Vec<u8> {
        (0..3)
            .flat_map(|i| {
                entry(
                    i,
                    magic,
                    0,
                    1_000 + i,
                    Some(format!("k{i}").as_bytes()),
                    Some(format!("v{i}").as_bytes()),
                )
            })
            .collect()
    }

    fn compress(codec: i8, inner: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let fill = |buf: &mut BytesMut| {
            buf.put_slice(inner);
            Ok(())
        };
        match codec {
            GZIP => Gzip::compress(&mut out, fill),
            SNAPPY => Snappy::compress(&mut out, fill),
            LZ4 => Lz4::compress(&mut out, fill),
            _ => unreachable!("test codec"),
        }
        .expect("compress");
        out.to_vec()
    }

    fn wrapper(magic: i8, codec: i8, inner: &[u8]) -> Vec<u8> {
        entry(2, magic, codec, 1_002, None, Some(&compress(codec, inner)))
    }

    /// The converted batch, checked the way the log checks a producer's batch, and its records.
    fn convert(set: Vec<u8>) -> (RecordBatch, Vec<Record>) {
        let bytes = up_convert(&Bytes::from(set)).expect("converts");
        let batch = RecordBatch::parse(bytes.clone()).expect("a valid v2 batch");
        batch
            .validate_client_batch()
            .expect("acceptable from a client");
        let records = RecordBatchDecoder::decode(&mut bytes.clone())
            .expect("decodes")
            .records;
        (batch, records)
    }

    fn refusal(set: Vec<u8>) -> LegacyError {
        up_convert(&Bytes::from(set)).expect_err("refused")
    }

    fn keys_and_values(records: &[Record]) -> Vec<(Option<Bytes>, Option<Bytes>)> {
        records
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect()
    }

    fn expected_three() -> Vec<(Option<Bytes>, Option<Bytes>)> {
        (0..3)
            .map(|i| {
                (
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(format!("v{i}"))),
                )
            })
            .collect()
    }

    #[test]
    fn uncompressed_magic_0_becomes_a_batch_without_timestamps() {
        // Client offsets are ignored: the batch numbers its records 0..n-1.
        let mut set = entry(7, 0, 0, 0, Some(b"k0"), Some(b"v0"));
        set.extend(entry(7, 0, 0, 0, Some(b"k1"), Some(b"v1")));
        set.extend(entry(7, 0, 0, 0, Some(b"k2"), Some(b"v2")));
        let (batch, records) = convert(set);
        assert_eq!(batch.compression(), Compression::None);
        assert_eq!((batch.base_offset(), batch.last_offset_delta()), (0, 2));
        assert_eq!((batch.producer_id(), batch.base_sequence()), (-1, -1));
        assert_eq!(batch.max_timestamp(), NO_TIMESTAMP);
        assert_eq!(keys_and_values(&records), expected_three());
        assert!(records.iter().all(|r| r.timestamp == NO_TIMESTAMP));
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn uncompressed_magic_1_keeps_create_times() {
        let (batch, records) = convert(three(1));
        assert_eq!(batch.compression(), Compression::None);
        assert_eq!(
            batch.timestamp_type(),
            crate::log::TimestampType::CreateTime
        );
        assert_eq!(
            (batch.base_timestamp(), batch.max_timestamp()),
            (1_000, 1_002)
        );
        assert_eq!(
            records.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            [1_000, 1_001, 1_002]
        );
        assert_eq!(keys_and_values(&records), expected_three());
    }

    #[test]
    fn null_keys_and_values_stay_null_and_empty_ones_empty() {
        let mut set = entry(0, 1, 0, 5, None, None);
        set.extend(entry(1, 1, 0, 6, Some(b""), Some(b"")));
        let (_, records) = convert(set);
        assert_eq!(
            keys_and_values(&records),
            [(None, None), (Some(Bytes::new()), Some(Bytes::new()))]
        );
    }

    #[test]
    fn compressed_wrappers_convert_with_their_codec() {
        for (codec, expected) in [
            (GZIP, Compression::Gzip),
            (SNAPPY, Compression::Snappy),
            (LZ4, Compression::Lz4),
        ] {
            for magic in [0, 1] {
                let (batch, records) = convert(wrapper(magic, codec, &three(magic)));
                assert_eq!(batch.compression(), expected, "codec {codec} magic {magic}");
                assert_eq!(batch.last_offset_delta(), 2);
                assert_eq!(keys_and_values(&records), expected_three());
                let timestamps: Vec<i64> = records.iter().map(|r| r.timestamp).collect();
                if magic == 0 {
                    assert_eq!(timestamps, [NO_TIMESTAMP; 3]);
                } else {
                    assert_eq!(timestamps, [1_000, 1_001, 1_002]);
                }
            }
        }
    }

    #[test]
    fn raw_snappy_as_librdkafka_sends_it_converts() {
        // Raw snappy of one literal: varint length, tag 60<<2 (a one-byte length - 1 follows), bytes.
        let inner = three(1);
        assert!(inner.len() > 60 && inner.len() <= 256);
        let mut raw = Vec::new();
        let mut n = inner.len();
        while n >= 0x80 {
            raw.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        raw.extend([n as u8, 60 << 2, (inner.len() - 1) as u8]);
        raw.extend_from_slice(&inner);
        let (batch, records) = convert(entry(2, 1, SNAPPY, 1_002, None, Some(&raw)));
        assert_eq!(batch.compression(), Compression::Snappy);
        assert_eq!(keys_and_values(&records), expected_three());
    }

    /// The frame-descriptor checksum Kafka wrote before KIP-57: over the frame magic too.
    fn break_lz4_header_checksum(frame: &mut [u8]) {
        // kafka-protocol's frames have no content size and no dictionary id: FLG, BD, HC.
        assert_eq!(frame[4] & 0x09, 0);
        frame[6] = (xxh32_short(&frame[0..6]) >> 8) as u8;
    }

    #[test]
    fn magic_0_lz4_with_kafkas_broken_header_checksum_converts_but_magic_1_does_not() {
        let mut frame = compress(LZ4, &three(0));
        break_lz4_header_checksum(&mut frame);
        let (_, records) = convert(entry(2, 0, LZ4, 0, None, Some(&frame)));
        assert_eq!(keys_and_values(&records), expected_three());

        let mut frame = compress(LZ4, &three(1));
        break_lz4_header_checksum(&mut frame);
        let err = refusal(entry(2, 1, LZ4, 1_002, None, Some(&frame)));
        assert!(matches!(err, LegacyError::Decompress { .. }), "{err}");
        assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);
    }

    #[test]
    fn xxh32_matches_the_reference_vectors() {
        assert_eq!(xxh32_short(b""), 0x02CC_5D05);
        assert_eq!(xxh32_short(b"a"), 0x550D_7456);
        assert_eq!(xxh32_short(b"abc"), 0x32D1_53FF);
    }

    #[test]
    fn wrappers_and_plain_messages_mix_and_the_last_codec_wins() {
        let mut set = entry(0, 1, 0, 999, Some(b"plain"), Some(b"p"));
        set.extend(wrapper(1, GZIP, &three(1)));
        let (batch, records) = convert(set);
        assert_eq!(batch.compression(), Compression::Gzip);
        assert_eq!(records.len(), 4);
        assert_eq!(batch.base_timestamp(), 999);
    }

    #[test]
    fn a_bad_crc_is_corrupt() {
        let mut set = three(1);
        let last = set.len() - 1;
        set[last] ^= 0xff;
        let err = refusal(set);
        assert!(matches!(err, LegacyError::CrcMismatch { .. }), "{err}");
        assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);
    }

    #[test]
    fn truncated_entries_are_corrupt() {
        let set = three(0);
        // Cut inside the second entry's header, inside its body, and one byte short of the end.
        for cut in [set.len() / 3 + 5, set.len() / 3 + 20, set.len() - 1] {
            let err = refusal(set[..cut].to_vec());
            assert!(
                matches!(err, LegacyError::Truncated { .. }),
                "cut {cut}: {err}"
            );
            assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);
        }
    }

    #[test]
    fn a_size_beyond_the_buffer_or_below_the_minimum_is_corrupt() {
        let mut set = entry(0, 0, 0, 0, Some(b"k"), Some(b"v"));
        set[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            refusal(set.clone()),
            LegacyError::Truncated { .. }
        ));
        for size in [-1, 0, 13] {
            set[8..12].copy_from_slice(&i32::to_be_bytes(size));
            let err = refusal(set.clone());
            assert!(matches!(err, LegacyError::SizeTooSmall { .. }), "{err}");
            assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);
        }
    }

    #[test]
    fn key_and_value_lengths_must_fit_their_message() {
        // Key (at 2) and value (after the 1-byte key) lengths that do not fit, CRC recomputed.
        for (length_at, length) in [(2, 1_000), (2, -2), (2 + 4 + 1, 100)] {
            let mut set = entry(0, 0, 0, 0, Some(b"k"), Some(b"v"));
            let body_at = LOG_OVERHEAD + 4;
            set[body_at + length_at..body_at + length_at + 4]
                .copy_from_slice(&i32::to_be_bytes(length));
            let crc = crc32fast::hash(&set[body_at..]);
            set[LOG_OVERHEAD..body_at].copy_from_slice(&crc.to_be_bytes());
            let err = refusal(set);
            assert!(matches!(err, LegacyError::BadLength { .. }), "{err}");
            assert_eq!(err.kind(), BatchErrorKind::CorruptMessage);
        }
    }

    #[test]
    fn nested_compression_is_refused_as_kafka_does() {
        let inner_wrapper = wrapper(1, GZIP, &three(1));
        let err = refusal(wrapper(1, GZIP, &inner_wrapper));
        assert_eq!(err, LegacyError::NestedCompression);
        assert_eq!(err.kind(), BatchErrorKind::InvalidRecord);
    }

    #[test]
    fn wrapper_refusals() {
        assert_eq!(
            refusal(wrapper(1, GZIP, &three(0))),
            LegacyError::InnerMagicMismatch {
                inner: 0,
                wrapper: 1
            }
        );
        assert_eq!(
            refusal(entry(0, 1, GZIP, 0, None, None)),
            LegacyError::NullWrapperValue
        );
        assert_eq!(refusal(wrapper(1, GZIP, &[])), LegacyError::EmptyWrapper);
        let err = refusal(entry(0, 1, GZIP, 0, None, Some(b"not gzip")));
        assert!(matches!(err, LegacyError::Decompress { .. }), "{err}");
        assert_eq!(refusal(Vec::new()), LegacyError::Empty);
    }

    #[test]
    fn codecs_and_magics_the_legacy_formats_do_not_have_are_refused() {
        assert_eq!(
            refusal(entry(0, 1, 4, 0, None, Some(b"x"))),
            LegacyError::ZstdNeedsV2
        );
        assert_eq!(
            refusal(entry(0, 1, 5, 0, None, Some(b"x"))),
            LegacyError::UnknownCompression { codec: 5 }
        );
        let mut set = entry(0, 0, 0, 0, Some(b"k"), Some(b"v"));
        set[LOG_OVERHEAD + 4] = 3;
        assert_eq!(refusal(set), LegacyError::UnsupportedMagic { magic: 3 });
        assert_eq!(
            refusal(entry(0, 1, 0, -5, None, Some(b"x"))),
            LegacyError::InvalidTimestamp { timestamp: -5 }
        );
    }

    #[test]
    fn v2_batches_are_not_legacy() {
        let v2 = up_convert(&Bytes::from(three(1))).expect("converts");
        assert!(!is_legacy(&v2));
        assert!(is_legacy(&three(0)) && is_legacy(&three(1)) && is_legacy(&[]));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let set = wrapper(1, GZIP, &three(1));
        for i in 0..set.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = set.clone();
                damaged[i] ^= flip;
                let _ = up_convert(&Bytes::from(damaged));
            }
            let _ = up_convert(&Bytes::copy_from_slice(&set[..i]));
        }
    }
}
