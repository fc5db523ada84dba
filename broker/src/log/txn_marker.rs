//! Transaction markers (KIP-98; Kafka's `EndTransactionMarker` and `ControlRecordType`): the control
//! batch a partition leader writes when the transaction coordinator ends a producer's transaction,
//! and its parse when the batch comes back from the log or from a leader.
//!
//! A marker is a v2 batch with the transactional and control attribute bits set, the producer's id
//! and epoch, base sequence -1 and exactly one uncompressed record, whose key is
//! `version i16 = 0 | type i16` (0 ABORT, 1 COMMIT) and whose value is
//! `version i16 = 0 | coordinator_epoch i32`.
//!
//! What must stay true: [`EndTxnMarker::parse`] never panics on any bytes (a follower parses what a
//! leader sent); a key or value version above 0 is read by its known prefix, as Kafka does.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2};

const TRANSACTIONAL_AND_CONTROL: i16 = 0x10 | 0x20;
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// What a COMMIT or ABORT marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

impl EndTxnMarker {
    /// The marker batch for `producer_id`/`producer_epoch`, at base offset 0 (the log assigns
    /// offsets) with `timestamp_ms` as its timestamps.
    pub fn encode(&self, producer_id: i64, producer_epoch: i16, timestamp_ms: i64) -> Bytes {
        let mut record = BytesMut::with_capacity(16);
        record.put_i8(0); // attributes
        record.put_u8(0); // timestamp delta, zigzag varint 0
        record.put_u8(0); // offset delta
        record.put_u8(zigzag_byte(4)); // key length
        record.put_i16(0); // key version
        record.put_i16(if self.commit { COMMIT } else { ABORT });
        record.put_u8(zigzag_byte(6)); // value length
        record.put_i16(0); // value version
        record.put_i32(self.coordinator_epoch);
        record.put_u8(0); // header count
        let mut records = BytesMut::with_capacity(1 + record.len());
        records.put_u8(zigzag_byte(record.len() as i8));
        records.extend_from_slice(&record);

        let mut batch = BytesMut::with_capacity(HEADER_BYTES + records.len());
        batch.put_i64(0); // base offset
        batch.put_i32((HEADER_BYTES - LOG_OVERHEAD + records.len()) as i32);
        batch.put_i32(-1); // partition leader epoch, stamped on append
        batch.put_i8(MAGIC_V2);
        batch.put_u32(0); // crc, below
        batch.put_i16(TRANSACTIONAL_AND_CONTROL);
        batch.put_i32(0); // last offset delta
        batch.put_i64(timestamp_ms);
        batch.put_i64(timestamp_ms);
        batch.put_i64(producer_id);
        batch.put_i16(producer_epoch);
        batch.put_i32(-1); // base sequence
        batch.put_i32(1); // record count
        batch.extend_from_slice(&records);
        // CRC-32C from the attributes to the end (offset 21).
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch.freeze()
    }

    /// The marker carried by a control batch (`bytes` starts with the batch), `None` when the bytes
    /// are not a well-formed COMMIT or ABORT marker.
    pub fn parse(bytes: &[u8]) -> Option<EndTxnMarker> {
        let header = BatchHeader::parse(bytes).ok()?;
        if !header.is_control() || header.record_count < 1 {
            return None;
        }
        let end = header.total_size().min(bytes.len());
        let mut r = VarReader {
            bytes: bytes.get(HEADER_BYTES..end)?,
            at: 0,
        };
        let _length = r.varint()?;
        let _attributes = r.take(1)?;
        let _timestamp_delta = r.varint()?;
        let _offset_delta = r.varint()?;
        let key_len = usize::try_from(r.varint()?).ok()?;
        let key = r.take(key_len)?;
        let value_len = usize::try_from(r.varint()?).ok()?;
        let value = r.take(value_len)?;
        let kind = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
        let commit = match kind {
            COMMIT => true,
            ABORT => false,
            _ => return None,
        };
        let coordinator_epoch = i32::from_be_bytes(value.get(2..6)?.try_into().ok()?);
        Some(EndTxnMarker {
            commit,
            coordinator_epoch,
        })
    }
}

fn zigzag_byte(v: i8) -> u8 {
    ((v << 1) ^ (v >> 7)) as u8
}

struct VarReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> VarReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let chunk = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(chunk)
    }

    /// A zigzag varint of at most 5 bytes.
    fn varint(&mut self) -> Option<i32> {
        let mut raw: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            raw |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(((raw >> 1) as i32) ^ -((raw & 1) as i32));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::RecordBatch;

    #[test]
    fn a_marker_round_trips_and_is_a_valid_control_batch() {
        for marker in [
            EndTxnMarker {
                commit: true,
                coordinator_epoch: 7,
            },
            EndTxnMarker {
                commit: false,
                coordinator_epoch: i32::MAX,
            },
        ] {
            let bytes = marker.encode(42, 3, 1_000);
            let batch = RecordBatch::parse(bytes.clone()).expect("CRC and framing hold");
            assert!(batch.is_control() && batch.is_transactional());
            assert_eq!(
                (batch.producer_id(), batch.producer_epoch()),
                (42, 3),
                "producer fields"
            );
            assert_eq!(batch.base_sequence(), -1);
            assert_eq!(batch.record_count(), 1);
            assert_eq!(EndTxnMarker::parse(&bytes), Some(marker));
        }
    }

    #[test]
    fn the_kafka_protocol_crate_reads_our_marker() {
        let bytes = EndTxnMarker {
            commit: true,
            coordinator_epoch: 5,
        }
        .encode(9, 1, 2_000);
        let mut buf = bytes.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        let record = &set.records[0];
        assert!(record.control && record.transactional);
        assert_eq!(record.key.as_deref(), Some(&[0, 0, 0, 1][..]));
        assert_eq!(record.value.as_deref(), Some(&[0, 0, 0, 0, 0, 5][..]));
    }

    #[test]
    fn garbage_is_not_a_marker() {
        let bytes = EndTxnMarker {
            commit: false,
            coordinator_epoch: 1,
        }
        .encode(1, 0, 0);
        for len in 0..bytes.len() {
            let _ = EndTxnMarker::parse(&bytes[..len]);
        }
        let mut other_type = bytes.to_vec();
        other_type[HEADER_BYTES + 8] = 9;
        assert_eq!(EndTxnMarker::parse(&other_type), None);
        let mut data = bytes.to_vec();
        data[22] = 0x10; // transactional only, not control
        assert_eq!(EndTxnMarker::parse(&data), None);
    }
}
