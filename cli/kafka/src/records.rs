//! Record batches (RecordBatch v2, Kafka's `DefaultRecordBatch`) as this client writes and reads them,
//! shared by `topic produce`, `topic consume` and `bench`: [`encode_batch`] turns records into one
//! batch (CRC-32C, any codec) with [`RecordBatchEncoder`], [`tally_batches`] walks batch headers
//! without decompressing anything, and [`decode_batches`] decodes the whole batches of a Fetch answer
//! with every codec through [`RecordBatchDecoder`].
//!
//! What must stay true: one call of [`encode_batch`] yields exactly one batch (the encoder starts a new
//! batch whenever `offset - sequence`, the producer or the epoch changes, so [`batch_record`] keeps
//! them constant); a Fetch answer may end in a partial batch (Kafka allows it), which is left for the
//! next Fetch rather than treated as an error; control records (transaction markers) never reach a
//! caller. The protocol crate keeps a record's headers in a map, so a header key repeated within one
//! record keeps only its last value, on both paths.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH,
};

/// Bytes of the RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before a batch's length field ends: base offset (8) and batch length (4).
const LOG_OVERHEAD_BYTES: usize = 12;
/// Where the header fields read here start.
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;
/// The attribute bit of control batches.
const CONTROL_BIT: i16 = 1 << 5;

/// Who writes a batch: an idempotent producer's id and epoch, or none (-1, -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// The producer id from InitProducerId, or -1.
    pub producer_id: i64,
    /// Its epoch, or -1.
    pub producer_epoch: i16,
}

impl ProducerIdentity {
    /// A producer without idempotence.
    pub const NONE: ProducerIdentity = ProducerIdentity {
        producer_id: -1,
        producer_epoch: -1,
    };
}

/// Record `offset_delta` of a batch whose first record has sequence `base_sequence` (-1 without
/// idempotence), ready for [`encode_batch`].
pub fn batch_record(
    producer: ProducerIdentity,
    base_sequence: i32,
    offset_delta: i32,
    timestamp_ms: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: &[(String, Option<Bytes>)],
) -> Record {
    let mut record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: i64::from(offset_delta),
        // Without idempotence the base sequence is -1 and the deltas still keep `offset - sequence`
        // constant, which is what keeps the records in one batch.
        sequence: base_sequence.wrapping_add(offset_delta),
        timestamp: timestamp_ms,
        key,
        value,
        headers: Default::default(),
    };
    for (name, value) in headers {
        record
            .headers
            .insert(StrBytes::from_string(name.clone()), value.clone());
    }
    record
}

/// Encodes `records` (from [`batch_record`], offset deltas 0..n) as one batch into `buffer`.
pub fn encode_batch(
    buffer: &mut BytesMut,
    records: &[Record],
    compression: Compression,
) -> Result<(), String> {
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(buffer, records.iter(), &options)
        .map_err(|e| format!("cannot encode a record batch: {e}"))
}

/// What the whole batches of a fetched `records` blob hold, read from their headers only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchTally {
    /// Whole batches.
    pub batches: u64,
    /// Their records (control batches excluded).
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The offset after the last whole batch.
    pub next_offset: Option<i64>,
    /// Bytes of a partial batch at the end (legal in a Fetch answer; it is fetched again).
    pub partial_bytes: usize,
}

/// Walks the RecordBatch v2 headers of `records`.
pub fn tally_batches(records: &[u8]) -> Result<BatchTally, String> {
    let mut tally = BatchTally::default();
    let mut at = 0usize;
    while records.len() - at >= LOG_OVERHEAD_BYTES {
        let batch = &records[at..];
        let base_offset = i64::from_be_bytes(array(batch, 0));
        let batch_length = i32::from_be_bytes(array(batch, 8));
        let total = usize::try_from(batch_length)
            .ok()
            .map(|len| len + LOG_OVERHEAD_BYTES)
            .filter(|total| *total >= BATCH_HEADER_BYTES)
            .ok_or_else(|| format!("batch at offset {base_offset} has length {batch_length}"))?;
        if batch.len() < total {
            break;
        }
        if batch[MAGIC_AT] != 2 {
            return Err(format!(
                "batch at offset {base_offset} has magic {}",
                batch[MAGIC_AT]
            ));
        }
        let attributes = i16::from_be_bytes(array(batch, ATTRIBUTES_AT));
        let last_offset_delta = i32::from_be_bytes(array(batch, LAST_OFFSET_DELTA_AT));
        let record_count = i32::from_be_bytes(array(batch, RECORD_COUNT_AT));
        if record_count < 0 {
            return Err(format!(
                "batch at offset {base_offset} has record count {record_count}"
            ));
        }
        if attributes & CONTROL_BIT == 0 {
            tally.records += record_count as u64;
        }
        tally.batches += 1;
        tally.bytes += total as u64;
        tally.next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        at += total;
    }
    tally.partial_bytes = records.len() - at;
    Ok(tally)
}

/// The records of the whole batches of a Fetch answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodedBatches {
    /// The data records, in offset order (control records left out).
    pub records: Vec<Record>,
    /// The offset after the last whole batch; `None` when there was none.
    pub next_offset: Option<i64>,
    /// Bytes of a partial batch at the end, fetched again next time.
    pub partial_bytes: usize,
}

/// Decodes (and decompresses, with any codec) the whole batches of `records`; every batch's CRC is
/// checked.
pub fn decode_batches(records: &Bytes) -> Result<DecodedBatches, String> {
    let tally = tally_batches(records)?;
    let whole = usize::try_from(tally.bytes).map_err(|e| e.to_string())?;
    let mut prefix = records.slice(..whole);
    let sets = RecordBatchDecoder::decode_all(&mut prefix)
        .map_err(|e| format!("bad record batch: {e}"))?;
    Ok(DecodedBatches {
        records: sets
            .into_iter()
            .flat_map(|set| set.records)
            .filter(|record| !record.control)
            .collect(),
        next_offset: tally.next_offset,
        partial_bytes: tally.partial_bytes,
    })
}

/// `N` bytes of `bytes` from `at`; the caller has checked the length.
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Batches for tests, encoded here and laid out as a log would return them: for this crate's tests
/// and (with the `testing` feature) its users' tests.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use bytes::BufMut;

    pub fn batch(
        count: usize,
        codec: Compression,
        producer: ProducerIdentity,
        base_sequence: i32,
    ) -> BytesMut {
        let records: Vec<Record> = (0..count)
            .map(|i| {
                batch_record(
                    producer,
                    base_sequence,
                    i as i32,
                    1_700_000_000_000 + i as i64,
                    (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(format!("value-{i}-{}", "x".repeat(40)))),
                    &[("h".to_owned(), Some(Bytes::from(vec![0xff, i as u8])))],
                )
            })
            .collect();
        let mut buffer = BytesMut::new();
        encode_batch(&mut buffer, &records, codec).expect("encodes");
        buffer
    }

    /// Batches as a log returns them: base offsets assigned one after the other.
    pub fn log(counts: &[usize], codec: Compression) -> BytesMut {
        let mut log = BytesMut::new();
        let mut base = 0i64;
        for count in counts {
            let mut batch = batch(*count, codec, ProducerIdentity::NONE, -1);
            batch[..8].copy_from_slice(&base.to_be_bytes());
            log.put(batch);
            base += *count as i64;
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{batch, log};
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn one_encode_is_one_batch_with_the_producer_and_sequence() {
        let producer = ProducerIdentity {
            producer_id: 42,
            producer_epoch: 3,
        };
        for codec in CODECS {
            let encoded = batch(20, codec, producer, 7).freeze();
            let info = RecordBatchDecoder::decode_batch_info(&mut encoded.clone()).expect("header");
            assert_eq!(info.len(), 1, "{codec:?}");
            assert_eq!(info[0].record_count, 20);
            assert_eq!(info[0].base_sequence, 7);
            assert_eq!((info[0].producer_id, info[0].producer_epoch), (42, 3));
            assert_eq!(info[0].compression, codec);
            let plain = batch(3, codec, ProducerIdentity::NONE, -1).freeze();
            let info = RecordBatchDecoder::decode_batch_info(&mut plain.clone()).expect("header");
            assert_eq!((info.len(), info[0].base_sequence), (1, -1), "{codec:?}");
            assert_eq!(info[0].producer_id, -1);
        }
    }

    #[test]
    fn every_codec_decodes_to_what_was_encoded() {
        for codec in CODECS {
            let decoded = decode_batches(&log(&[3, 4], codec).freeze()).expect("decodes");
            assert_eq!(decoded.records.len(), 7, "{codec:?}");
            assert_eq!(decoded.next_offset, Some(7));
            assert_eq!(decoded.partial_bytes, 0);
            let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [0, 1, 2, 3, 4, 5, 6]);
            // The third record of the second batch.
            let record = &decoded.records[5];
            assert_eq!(record.key.as_deref(), Some(&b"k2"[..]));
            assert!(decoded.records[4].key.is_none());
            assert_eq!(record.timestamp, 1_700_000_000_002);
            assert_eq!(
                record.headers.get(&StrBytes::from_static_str("h")),
                Some(&Some(Bytes::from_static(&[0xff, 2])))
            );
        }
    }

    #[test]
    fn a_corrupt_batch_fails_its_crc() {
        let mut log = log(&[3], Compression::None);
        let last = log.len() - 1;
        log[last] ^= 0x55;
        let error = decode_batches(&log.freeze()).expect_err("bad CRC");
        assert!(error.contains("Cyclic redundancy check"), "{error}");
    }

    #[test]
    fn records_are_counted_from_headers_for_every_codec() {
        for codec in CODECS {
            let log = log(&[3, 10, 1], codec);
            let tally = tally_batches(&log).expect("valid");
            assert_eq!(tally.batches, 3, "{codec:?}");
            assert_eq!(tally.records, 14, "{codec:?}");
            assert_eq!(tally.bytes, log.len() as u64);
            assert_eq!(tally.next_offset, Some(14));
            assert_eq!(tally.partial_bytes, 0);
        }
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let log = log(&[5, 5], Compression::None).freeze();
        let cut = log.slice(..log.len() - 7);
        let tally = tally_batches(&cut).expect("valid");
        assert_eq!((tally.batches, tally.records), (1, 5));
        assert_eq!(tally.next_offset, Some(5));
        assert!(tally.partial_bytes > 0);
        let decoded = decode_batches(&cut).expect("the whole batch decodes");
        assert_eq!(decoded.records.len(), 5);
        assert_eq!(decoded.partial_bytes, tally.partial_bytes);
        // Less than a batch header: nothing whole.
        let tally = tally_batches(&log[..20]).expect("valid");
        assert_eq!((tally.batches, tally.next_offset), (0, None));
        assert_eq!(tally_batches(&[]).expect("empty"), BatchTally::default());
    }

    #[test]
    fn garbage_is_an_error_not_a_count() {
        let mut log = log(&[2], Compression::None);
        log[MAGIC_AT] = 1;
        assert!(tally_batches(&log).is_err());
        let mut short = log.clone();
        short[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(tally_batches(&short).is_err());
    }
}
