//! The records of the transaction state topic (`__transaction_state`), in Kafka's own layout (its
//! `TransactionLogKey` and `TransactionLogValue` schemas), so Kafka tooling reads them:
//!
//! - key v0 `{ TransactionalId string }`;
//! - value v0 `{ ProducerId int64, ProducerEpoch int16, TransactionTimeoutMs int32,
//!   TransactionStatus int8, TransactionPartitions nullable [ { Topic string, PartitionIds [int32] } ],
//!   TransactionLastUpdateTimestampMs int64, TransactionStartTimestampMs int64 }`.
//!
//! - value v1, flexible (KIP-482 compact strings and arrays, tagged fields), the same fields plus the
//!   tagged `PreviousProducerId` (tag 0), `NextProducerId` (tag 1) and `ClientTransactionVersion`
//!   (tag 2) that transaction version 2 needs (KIP-890: the producer id an exhausted epoch rotates
//!   to, and whether the epoch is bumped at every end).
//!
//! As Kafka's `TransactionLog.valueToBytes`, values are written in v1 once the cluster finalizes
//! `transaction.version` 1 or more, and in v0 before (so a cluster that never enabled it can still be
//! read by a release without v1); both are read. An Empty transaction's partitions are written as
//! null. A record without a value is a tombstone: the transactional id expired. Decoding never panics
//! on what it reads back from disk.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::TxnState;
use crate::group::records::{
    get_i16, get_i32, get_i64, get_string, get_uvarint, put_string, put_uvarint,
    skip_tagged_fields, RecordError, Result,
};

const KEY_VERSION: i16 = 0;
/// The value schema before flexible versions.
pub const VALUE_V0: i16 = 0;
/// The flexible value schema with the transaction version 2 fields.
pub const VALUE_V1: i16 = 1;

const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// A transactional id's state as the log stores it. The v1 fields are at their defaults (-1, -1,
/// 0) when read from v0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    pub client_version: i16,
}

/// The key and value bytes of a transactional id's record (`None`: a tombstone), the value in
/// schema `value_version` ([`VALUE_V0`] or [`VALUE_V1`]).
pub fn encode(
    transactional_id: &str,
    value: Option<&TxnLogValue>,
    value_version: i16,
) -> (Bytes, Option<Bytes>) {
    let mut k = BytesMut::new();
    k.put_i16(KEY_VERSION);
    put_string(&mut k, transactional_id);
    let v = value.map(|value| {
        let flexible = value_version >= VALUE_V1;
        let mut v = BytesMut::new();
        v.put_i16(if flexible { VALUE_V1 } else { VALUE_V0 });
        v.put_i64(value.producer_id);
        v.put_i16(value.producer_epoch);
        v.put_i32(value.timeout_ms);
        v.put_i8(value.state.id());
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &value.partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let null = value.state == TxnState::Empty;
        if flexible {
            if null {
                put_uvarint(&mut v, 0);
            } else {
                put_uvarint(&mut v, by_topic.len() as u32 + 1);
                for (topic, partitions) in by_topic {
                    put_uvarint(&mut v, topic.len() as u32 + 1);
                    v.put_slice(topic.as_bytes());
                    put_uvarint(&mut v, partitions.len() as u32 + 1);
                    for p in partitions {
                        v.put_i32(p);
                    }
                    put_uvarint(&mut v, 0); // the entry's tagged fields
                }
            }
        } else if null {
            v.put_i32(-1);
        } else {
            v.put_i32(by_topic.len() as i32);
            for (topic, partitions) in by_topic {
                put_string(&mut v, topic);
                v.put_i32(partitions.len() as i32);
                for p in partitions {
                    v.put_i32(p);
                }
            }
        }
        v.put_i64(value.last_update_timestamp_ms);
        v.put_i64(value.start_timestamp_ms);
        if flexible {
            // Tagged fields, in tag order, each only when not at its default.
            let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
            if value.previous_producer_id != -1 {
                tagged.push((
                    TAG_PREVIOUS_PRODUCER_ID,
                    value.previous_producer_id.to_be_bytes().to_vec(),
                ));
            }
            if value.next_producer_id != -1 {
                tagged.push((
                    TAG_NEXT_PRODUCER_ID,
                    value.next_producer_id.to_be_bytes().to_vec(),
                ));
            }
            if value.client_version != 0 {
                tagged.push((
                    TAG_CLIENT_TRANSACTION_VERSION,
                    value.client_version.to_be_bytes().to_vec(),
                ));
            }
            put_uvarint(&mut v, tagged.len() as u32);
            for (tag, data) in tagged {
                put_uvarint(&mut v, tag);
                put_uvarint(&mut v, data.len() as u32);
                v.put_slice(&data);
            }
        }
        v.freeze()
    });
    (k.freeze(), v)
}

/// Decodes a record read back from the transaction state topic.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Result<(String, Option<TxnLogValue>)> {
    let mut k = key.ok_or(RecordError::MissingKey)?.clone();
    let version = get_i16(&mut k, "key version")?;
    if version != KEY_VERSION {
        return Err(RecordError::UnknownKeyVersion(version));
    }
    let transactional_id = get_string(&mut k, "transactional id")?;
    let value = value.map(|v| decode_value(v.clone())).transpose()?;
    Ok((transactional_id, value))
}

fn decode_value(mut v: Bytes) -> Result<TxnLogValue> {
    let version = get_i16(&mut v, "value version")?;
    if version != VALUE_V0 && version != VALUE_V1 {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let flexible = version == VALUE_V1;
    let producer_id = get_i64(&mut v, "producer id")?;
    let producer_epoch = get_i16(&mut v, "producer epoch")?;
    let timeout_ms = get_i32(&mut v, "transaction timeout")?;
    let status = v
        .try_get_i8()
        .map_err(|_| RecordError::Truncated("transaction status"))?;
    let state = TxnState::from_id(status).ok_or(RecordError::UnknownTransactionState(status))?;
    let mut partitions = BTreeSet::new();
    if flexible {
        let topics = get_uvarint(&mut v, "partition count")?;
        for _ in 1..topics {
            let len = get_uvarint(&mut v, "topic")?.saturating_sub(1) as usize;
            if v.remaining() < len {
                return Err(RecordError::Truncated("topic"));
            }
            let topic = String::from_utf8(v.split_to(len).to_vec())
                .map_err(|_| RecordError::NotUtf8("topic"))?;
            let count = get_uvarint(&mut v, "partition ids")?;
            for _ in 1..count {
                partitions.insert((topic.clone(), get_i32(&mut v, "partition id")?));
            }
            skip_tagged_fields(&mut v)?;
        }
    } else {
        let topics = get_i32(&mut v, "partition count")?;
        for _ in 0..topics.max(0) {
            let topic = get_string(&mut v, "topic")?;
            let count = get_i32(&mut v, "partition ids")?;
            for _ in 0..count.max(0) {
                partitions.insert((topic.clone(), get_i32(&mut v, "partition id")?));
            }
        }
    }
    let mut value = TxnLogValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms: get_i64(&mut v, "last update timestamp")?,
        start_timestamp_ms: get_i64(&mut v, "start timestamp")?,
        client_version: 0,
    };
    if flexible {
        let count = get_uvarint(&mut v, "tagged fields")?;
        for _ in 0..count {
            let tag = get_uvarint(&mut v, "tag")?;
            let size = get_uvarint(&mut v, "tagged field size")? as usize;
            if v.remaining() < size {
                return Err(RecordError::Truncated("tagged field"));
            }
            let mut data = v.split_to(size);
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    value.previous_producer_id = get_i64(&mut data, "previous producer id")?
                }
                TAG_NEXT_PRODUCER_ID => {
                    value.next_producer_id = get_i64(&mut data, "next producer id")?
                }
                TAG_CLIENT_TRANSACTION_VERSION => {
                    value.client_version = get_i16(&mut data, "client transaction version")?
                }
                // A tag of a later release: skipped, as Kafka's readers do.
                _ => {}
            }
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(state: TxnState, partitions: &[(&str, i32)]) -> TxnLogValue {
        TxnLogValue {
            producer_id: 4000,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 7,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
            last_update_timestamp_ms: 1_700_000_000_123,
            start_timestamp_ms: 1_700_000_000_000,
            client_version: 0,
        }
    }

    #[test]
    fn the_layout_is_kafkas_transaction_log_v0() {
        let (key, v) = encode(
            "tx",
            Some(&value(TxnState::Ongoing, &[("t", 1), ("t", 0)])),
            VALUE_V0,
        );
        assert_eq!(&key[..], &[0, 0, 0, 2, b't', b'x']);
        let mut expected = vec![0u8, 0]; // value version 0
        expected.extend_from_slice(&4000i64.to_be_bytes());
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.extend_from_slice(&1i32.to_be_bytes()); // one topic
        expected.extend_from_slice(&[0, 1, b't']);
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(&v.unwrap()[..], &expected[..]);

        // Empty writes null partitions, as Kafka's TransactionLog.valueToBytes does.
        let (_, v) = encode("tx", Some(&value(TxnState::Empty, &[])), VALUE_V0);
        assert_eq!(
            &v.unwrap()[2 + 8 + 2 + 4 + 1..][..4],
            &(-1i32).to_be_bytes()
        );
    }

    #[test]
    fn every_state_round_trips_and_tombstones_have_no_value() {
        for id in 0..=7 {
            let state = TxnState::from_id(id).unwrap();
            let partitions: &[(&str, i32)] = if state == TxnState::Empty {
                &[]
            } else {
                &[("a", 3), ("b", 0)]
            };
            let mut v = value(state, partitions);
            let (key, bytes) = encode("id-1", Some(&v), VALUE_V0);
            assert_eq!(
                decode(Some(&key), bytes.as_ref()).unwrap(),
                ("id-1".to_string(), Some(v.clone()))
            );
            v.previous_producer_id = 3000;
            v.next_producer_id = 5000;
            v.client_version = 2;
            let (key, bytes) = encode("id-1", Some(&v), VALUE_V1);
            assert_eq!(
                decode(Some(&key), bytes.as_ref()).unwrap(),
                ("id-1".to_string(), Some(v))
            );
        }
        let (key, none) = encode("id-1", None, VALUE_V1);
        assert_eq!(
            decode(Some(&key), None).unwrap(),
            ("id-1".to_string(), None)
        );
        assert!(none.is_none());
    }

    /// Kafka's `TransactionLogValue` v1 as its generated serializer writes it: compact strings and
    /// arrays, an empty tagged-field section per partition entry, and the top-level tagged fields in
    /// tag order, each only when not at its default.
    #[test]
    fn the_flexible_layout_is_kafkas_transaction_log_v1() {
        let mut v = value(TxnState::PrepareCommit, &[("t", 0)]);
        v.next_producer_id = 5000;
        v.client_version = 2;
        let (_, bytes) = encode("tx", Some(&v), VALUE_V1);
        let mut expected = vec![0u8, 1]; // value version 1
        expected.extend_from_slice(&4000i64.to_be_bytes());
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(2); // PrepareCommit
        expected.push(2); // one topic, compact
        expected.extend_from_slice(&[2, b't']); // compact string
        expected.push(2); // one partition id, compact
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.push(0); // the entry's tagged fields
        expected.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        expected.push(2); // two tagged fields: NextProducerId, ClientTransactionVersion
        expected.extend_from_slice(&[1, 8]);
        expected.extend_from_slice(&5000i64.to_be_bytes());
        expected.extend_from_slice(&[2, 2]);
        expected.extend_from_slice(&2i16.to_be_bytes());
        assert_eq!(&bytes.unwrap()[..], &expected[..]);

        let (_, empty) = encode("tx", Some(&value(TxnState::Empty, &[])), VALUE_V1);
        assert_eq!(empty.unwrap()[2 + 8 + 2 + 4 + 1], 0, "null partitions");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for version in [VALUE_V0, VALUE_V1] {
            let mut val = value(TxnState::Ongoing, &[("t", 0)]);
            val.previous_producer_id = 1;
            let (key, v) = encode("tx", Some(&val), version);
            let v = v.unwrap();
            for cut in 0..v.len() {
                let short = v.slice(..cut);
                assert!(
                    decode(Some(&key), Some(&short)).is_err(),
                    "v{version} cut at {cut}"
                );
            }
        }
        let (key, v) = encode("tx", Some(&value(TxnState::Ongoing, &[("t", 0)])), VALUE_V0);
        let v = v.unwrap();
        assert!(decode(None, Some(&v)).is_err());
        assert!(decode(Some(&Bytes::from_static(&[0, 5])), None).is_err());
        let mut bad_state = v.to_vec();
        bad_state[16] = 42;
        assert!(decode(Some(&key), Some(&Bytes::from(bad_state))).is_err());
    }
}
