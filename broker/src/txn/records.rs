//! The records of the transaction state topic (`__transaction_state`), in Kafka's own layout (its
//! `TransactionLogKey` and `TransactionLogValue` schemas), so Kafka tooling reads them:
//!
//! - key v0 `{ TransactionalId string }`;
//! - value v0 `{ ProducerId int64, ProducerEpoch int16, TransactionTimeoutMs int32,
//!   TransactionStatus int8, TransactionPartitions nullable [ { Topic string, PartitionIds [int32] } ],
//!   TransactionLastUpdateTimestampMs int64, TransactionStartTimestampMs int64 }`.
//!
//! Value v1 (flexible, with tagged previous/next producer ids) is what Kafka writes only for
//! transaction version 2 clients (KIP-890 part 2), which Chronik does not serve; v0 is written and read.
//! As Kafka does, an Empty transaction's partitions are written as null. A record without a value is a
//! tombstone: the transactional id expired. Decoding never panics on what it reads back from disk.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::TxnState;
use crate::group::records::{
    get_i16, get_i32, get_i64, get_string, put_string, RecordError, Result,
};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// A transactional id's state as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
}

/// The key and value bytes of a transactional id's record (`None`: a tombstone).
pub fn encode(transactional_id: &str, value: Option<&TxnLogValue>) -> (Bytes, Option<Bytes>) {
    let mut k = BytesMut::new();
    k.put_i16(KEY_VERSION);
    put_string(&mut k, transactional_id);
    let v = value.map(|value| {
        let mut v = BytesMut::new();
        v.put_i16(VALUE_VERSION);
        v.put_i64(value.producer_id);
        v.put_i16(value.producer_epoch);
        v.put_i32(value.timeout_ms);
        v.put_i8(value.state.id());
        if value.state == TxnState::Empty {
            v.put_i32(-1);
        } else {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in &value.partitions {
                by_topic.entry(topic).or_default().push(*partition);
            }
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
    if version != VALUE_VERSION {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let producer_id = get_i64(&mut v, "producer id")?;
    let producer_epoch = get_i16(&mut v, "producer epoch")?;
    let timeout_ms = get_i32(&mut v, "transaction timeout")?;
    let status = v
        .try_get_i8()
        .map_err(|_| RecordError::Truncated("transaction status"))?;
    let state = TxnState::from_id(status).ok_or(RecordError::UnknownTransactionState(status))?;
    let topics = get_i32(&mut v, "partition count")?;
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut v, "topic")?;
        let count = get_i32(&mut v, "partition ids")?;
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), get_i32(&mut v, "partition id")?));
        }
    }
    Ok(TxnLogValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms: get_i64(&mut v, "last update timestamp")?,
        start_timestamp_ms: get_i64(&mut v, "start timestamp")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(state: TxnState, partitions: &[(&str, i32)]) -> TxnLogValue {
        TxnLogValue {
            producer_id: 4000,
            producer_epoch: 7,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
            last_update_timestamp_ms: 1_700_000_000_123,
            start_timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn the_layout_is_kafkas_transaction_log_v0() {
        let (key, v) = encode("tx", Some(&value(TxnState::Ongoing, &[("t", 1), ("t", 0)])));
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
        let (_, v) = encode("tx", Some(&value(TxnState::Empty, &[])));
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
            let v = value(state, partitions);
            let (key, bytes) = encode("id-1", Some(&v));
            assert_eq!(
                decode(Some(&key), bytes.as_ref()).unwrap(),
                ("id-1".to_string(), Some(v))
            );
        }
        let (key, none) = encode("id-1", None);
        assert_eq!(
            decode(Some(&key), None).unwrap(),
            ("id-1".to_string(), None)
        );
        assert!(none.is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (key, v) = encode("tx", Some(&value(TxnState::Ongoing, &[("t", 0)])));
        let v = v.unwrap();
        for cut in 0..v.len() {
            let short = v.slice(..cut);
            assert!(decode(Some(&key), Some(&short)).is_err(), "cut at {cut}");
        }
        assert!(decode(None, Some(&v)).is_err());
        assert!(decode(Some(&Bytes::from_static(&[0, 5])), None).is_err());
        let mut bad_state = v.to_vec();
        bad_state[16] = 42;
        assert!(decode(Some(&key), Some(&Bytes::from(bad_state))).is_err());
    }
}
