//! The records of the offsets topic (`__consumer_offsets`), in Kafka's own layout (its `OffsetCommitKey`,
//! `OffsetCommitValue`, `GroupMetadataKey` and `GroupMetadataValue` schemas) so Kafka tooling reads
//! them: every key and value starts with an int16 schema version.
//!
//! - key v0/v1 `OffsetCommitKey { group, topic, partition }` → `OffsetCommitValue` v3
//!   `{ offset, leader_epoch, metadata, commit_timestamp }` (v0–v2 values are read too);
//! - key v2 `GroupMetadataKey { group }` → `GroupMetadataValue` v3 (protocol type, generation, selected
//!   protocol, leader, members with their subscriptions and assignments);
//! - keys 3 to 16: consumer groups of KIP-848's protocol (`consumer_records`).
//!
//! A record without a value is a tombstone: the offset or the group is gone. Decoding never panics on
//! what it reads back from disk; a record it cannot read is an error the loader reports and skips.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::consumer_records::ConsumerRecord;

/// The value versions written.
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// A record of the offsets topic, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// A committed offset; `None` is a tombstone (the offset was deleted or expired).
    Offset {
        key: OffsetKey,
        value: Option<OffsetValue>,
    },
    /// A group's membership; `None` is a tombstone (the group was deleted).
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A record of a consumer group (KIP-848).
    Consumer(ConsumerRecord),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol (opaque to the broker).
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record has no key")]
    MissingKey,
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown value version {0}")]
    UnknownValueVersion(i16),
    #[error("unknown transaction state {0}")]
    UnknownTransactionState(i8),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
}

pub(crate) type Result<T> = std::result::Result<T, RecordError>;

impl OffsetsRecord {
    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        match self {
            OffsetsRecord::Offset { key, value } => {
                let mut k = BytesMut::new();
                k.put_i16(1);
                put_string(&mut k, &key.group);
                put_string(&mut k, &key.topic);
                k.put_i32(key.partition);
                let v = value.as_ref().map(|value| {
                    let mut v = BytesMut::new();
                    v.put_i16(OFFSET_COMMIT_VALUE_VERSION);
                    v.put_i64(value.offset);
                    v.put_i32(value.leader_epoch);
                    put_string(&mut v, &value.metadata);
                    v.put_i64(value.commit_timestamp_ms);
                    v.freeze()
                });
                (k.freeze(), v)
            }
            OffsetsRecord::Group { group, value } => {
                let mut k = BytesMut::new();
                k.put_i16(2);
                put_string(&mut k, group);
                let v = value.as_ref().map(|value| {
                    let mut v = BytesMut::new();
                    v.put_i16(GROUP_METADATA_VALUE_VERSION);
                    put_string(&mut v, &value.protocol_type);
                    v.put_i32(value.generation);
                    put_nullable_string(&mut v, value.protocol.as_deref());
                    put_nullable_string(&mut v, value.leader.as_deref());
                    v.put_i64(value.state_timestamp_ms);
                    v.put_i32(value.members.len() as i32);
                    for m in &value.members {
                        put_string(&mut v, &m.member_id);
                        put_nullable_string(&mut v, m.group_instance_id.as_deref());
                        put_string(&mut v, &m.client_id);
                        put_string(&mut v, &m.client_host);
                        v.put_i32(m.rebalance_timeout_ms);
                        v.put_i32(m.session_timeout_ms);
                        put_bytes(&mut v, &m.subscription);
                        put_bytes(&mut v, &m.assignment);
                    }
                    v.freeze()
                });
                (k.freeze(), v)
            }
            OffsetsRecord::Consumer(record) => record.encode(),
        }
    }

    /// Decodes a record read back from the offsets topic.
    pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Result<Self> {
        let mut k = key.ok_or(RecordError::MissingKey)?.clone();
        let version = get_i16(&mut k, "key version")?;
        match version {
            0 | 1 => {
                let key = OffsetKey {
                    group: get_string(&mut k, "group id")?,
                    topic: get_string(&mut k, "topic")?,
                    partition: get_i32(&mut k, "partition")?,
                };
                let value = value.map(|v| decode_offset_value(v.clone())).transpose()?;
                Ok(OffsetsRecord::Offset { key, value })
            }
            2 => {
                let group = get_string(&mut k, "group id")?;
                let value = value.map(|v| decode_group_value(v.clone())).transpose()?;
                Ok(OffsetsRecord::Group { group, value })
            }
            other => Ok(OffsetsRecord::Consumer(ConsumerRecord::decode(
                other, k, value,
            )?)),
        }
    }
}

fn decode_offset_value(mut v: Bytes) -> Result<OffsetValue> {
    let version = get_i16(&mut v, "value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let offset = get_i64(&mut v, "offset")?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut v, "leader epoch")?
    } else {
        -1
    };
    let metadata = get_string(&mut v, "metadata")?;
    let commit_timestamp_ms = get_i64(&mut v, "commit timestamp")?;
    // v1 carries an expire timestamp after the commit timestamp; nothing here uses it.
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(mut v: Bytes) -> Result<GroupValue> {
    let version = get_i16(&mut v, "value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let protocol_type = get_string(&mut v, "protocol type")?;
    let generation = get_i32(&mut v, "generation")?;
    let protocol = get_nullable_string(&mut v, "protocol")?;
    let leader = get_nullable_string(&mut v, "leader")?;
    let state_timestamp_ms = if version >= 2 {
        get_i64(&mut v, "state timestamp")?
    } else {
        -1
    };
    let count = get_i32(&mut v, "member count")?.max(0) as usize;
    // Each member takes at least 24 bytes, so a hostile count cannot reserve much.
    let mut members = Vec::with_capacity(count.min(v.remaining() / 24));
    for _ in 0..count {
        let member_id = get_string(&mut v, "member id")?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut v, "group instance id")?
        } else {
            None
        };
        let client_id = get_string(&mut v, "client id")?;
        let client_host = get_string(&mut v, "client host")?;
        let rebalance_timeout_ms = if version >= 1 {
            get_i32(&mut v, "rebalance timeout")?
        } else {
            -1
        };
        let session_timeout_ms = get_i32(&mut v, "session timeout")?;
        let subscription = get_bytes(&mut v, "subscription")?;
        let assignment = get_bytes(&mut v, "assignment")?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

pub(crate) fn put_string(buf: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

pub(crate) fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

pub(crate) fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub(crate) fn get_i16(buf: &mut Bytes, what: &'static str) -> Result<i16> {
    buf.try_get_i16().map_err(|_| RecordError::Truncated(what))
}

pub(crate) fn get_i32(buf: &mut Bytes, what: &'static str) -> Result<i32> {
    buf.try_get_i32().map_err(|_| RecordError::Truncated(what))
}

pub(crate) fn get_i64(buf: &mut Bytes, what: &'static str) -> Result<i64> {
    buf.try_get_i64().map_err(|_| RecordError::Truncated(what))
}

pub(crate) fn get_nullable_string(buf: &mut Bytes, what: &'static str) -> Result<Option<String>> {
    let len = get_i16(buf, what)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    let raw = buf.split_to(len);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| RecordError::NotUtf8(what))
}

pub(crate) fn get_string(buf: &mut Bytes, what: &'static str) -> Result<String> {
    Ok(get_nullable_string(buf, what)?.unwrap_or_default())
}

pub(crate) fn get_bytes(buf: &mut Bytes, what: &'static str) -> Result<Bytes> {
    let len = get_i32(buf, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    Ok(buf.split_to(len))
}

/// KIP-482's unsigned varint.
pub(crate) fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

pub(crate) fn get_uvarint(buf: &mut Bytes, what: &'static str) -> Result<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = buf.try_get_u8().map_err(|_| RecordError::Truncated(what))?;
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RecordError::Truncated(what))
}

pub(crate) fn skip_tagged_fields(buf: &mut Bytes) -> Result<()> {
    let count = get_uvarint(buf, "tagged fields")?;
    for _ in 0..count {
        get_uvarint(buf, "tag")?;
        let size = get_uvarint(buf, "tagged field size")? as usize;
        if buf.remaining() < size {
            return Err(RecordError::Truncated("tagged field"));
        }
        buf.advance(size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(record: OffsetsRecord) {
        let (key, value) = record.encode();
        assert_eq!(
            OffsetsRecord::decode(Some(&key), value.as_ref()).unwrap(),
            record
        );
    }

    #[test]
    fn offsets_and_groups_round_trip() {
        let key = OffsetKey {
            group: "g".into(),
            topic: "orders".into(),
            partition: 7,
        };
        roundtrip(OffsetsRecord::Offset {
            key: key.clone(),
            value: Some(OffsetValue {
                offset: 42,
                leader_epoch: 3,
                metadata: "meta".into(),
                commit_timestamp_ms: 1_700_000_000_000,
            }),
        });
        roundtrip(OffsetsRecord::Offset { key, value: None });
        roundtrip(OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                state_timestamp_ms: 9,
                members: vec![MemberValue {
                    member_id: "m-1".into(),
                    group_instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        });
        roundtrip(OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        });
    }

    #[test]
    fn the_key_layout_is_kafkas() {
        let (key, value) = OffsetsRecord::Offset {
            key: OffsetKey {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
            },
            value: Some(OffsetValue {
                offset: 2,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 3,
            }),
        }
        .encode();
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
        let value = value.unwrap();
        assert_eq!(&value[..2], &[0, 3]);
        assert_eq!(value.len(), 2 + 8 + 4 + 2 + 8);
    }

    #[test]
    fn old_value_versions_decode() {
        // OffsetCommitValue v1: offset, metadata, commit timestamp, expire timestamp.
        let mut v = BytesMut::new();
        v.put_i16(1);
        v.put_i64(10);
        put_string(&mut v, "m");
        v.put_i64(5);
        v.put_i64(6);
        let (key, _) = OffsetsRecord::Offset {
            key: OffsetKey {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
            },
            value: None,
        }
        .encode();
        let record = OffsetsRecord::decode(Some(&key), Some(&v.freeze())).unwrap();
        let OffsetsRecord::Offset {
            value: Some(value), ..
        } = record
        else {
            panic!("not an offset: {record:?}");
        };
        assert_eq!((value.offset, value.leader_epoch), (10, -1));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            OffsetsRecord::decode(None, None),
            Err(RecordError::MissingKey)
        );
        let key = Bytes::from_static(&[0, 9]);
        assert_eq!(
            OffsetsRecord::decode(Some(&key), None),
            Err(RecordError::UnknownKeyVersion(9))
        );
        let key = Bytes::from_static(&[0, 2, 0, 50, b'g']);
        assert!(OffsetsRecord::decode(Some(&key), None).is_err());
        let (key, _) = OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        }
        .encode();
        let hostile = Bytes::from_static(&[
            0, 3, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff,
            0xff,
        ]);
        assert!(OffsetsRecord::decode(Some(&key), Some(&hostile)).is_err());
    }
}
