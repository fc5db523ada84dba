//! The records of consumer groups (KIP-848) in the offsets topic, in Kafka's layout
//! (`group-coordinator/src/main/resources/common/message/ConsumerGroup*Key/Value.json`): the key is an
//! int16 record type and a non-flexible struct; the value an int16 version (0) and a flexible struct
//! (KIP-482 compact strings and arrays, tagged fields). A record without a value is a tombstone.
//!
//! | type | key | value |
//! |---|---|---|
//! | 3 `ConsumerGroupMetadata` | group | group epoch, metadata hash (tag 0) |
//! | 5 `ConsumerGroupMemberMetadata` | group, member | instance id, rack, client, subscription, rebalance timeout, assignor |
//! | 6 `ConsumerGroupTargetAssignmentMetadata` | group | assignment epoch |
//! | 7 `ConsumerGroupTargetAssignmentMember` | group, member | target partitions |
//! | 8 `ConsumerGroupCurrentMemberAssignment` | group, member | epochs, state, assigned and revoking partitions |
//!
//! Kafka 4.0's type 4 (`ConsumerGroupPartitionMetadata`, replaced by the metadata hash in 4.1) and
//! type 16 (resolved regular expressions; this coordinator resolves them from the metadata image each
//! time) are read and ignored.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::records::{
    get_i16, get_i32, get_i64, get_string, get_uvarint, put_string, put_uvarint,
    skip_tagged_fields, RecordError, Result,
};

pub const GROUP_METADATA: i16 = 3;
pub const PARTITION_METADATA: i16 = 4;
pub const MEMBER_METADATA: i16 = 5;
pub const TARGET_ASSIGNMENT_METADATA: i16 = 6;
pub const TARGET_ASSIGNMENT_MEMBER: i16 = 7;
pub const CURRENT_MEMBER_ASSIGNMENT: i16 = 8;
pub const REGULAR_EXPRESSION: i16 = 16;

const VALUE_VERSION: i16 = 0;
const TAG_METADATA_HASH: u32 = 0;

/// Partitions by topic id.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// A member's reconciliation state (Kafka's `MemberState`, its int8 in the record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MemberState {
    #[default]
    Stable,
    /// Waiting for the member to give up partitions it must revoke.
    UnrevokedPartitions,
    /// Waiting for other members to release partitions of its target.
    UnreleasedPartitions,
    Unknown,
}

impl MemberState {
    fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    fn from_code(code: i8) -> Self {
        match code {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
            MemberState::Unknown => "unknown",
        }
    }
}

/// What a member told the coordinator about itself (type 5's value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Sorted, without duplicates.
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// Where a member is in reconciling towards its target (type 8's value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
}

impl Default for CurrentAssignment {
    /// A new member's: epoch 0, no previous epoch, nothing assigned.
    fn default() -> Self {
        CurrentAssignment {
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned: TopicPartitions::new(),
            pending_revocation: TopicPartitions::new(),
        }
    }
}

/// A consumer group record, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// The group epoch and the hash of its subscribed topics' metadata; `None` deletes the group.
    GroupMetadata {
        group: String,
        value: Option<(i32, i64)>,
    },
    Member {
        group: String,
        member: String,
        value: Option<MemberMetadata>,
    },
    /// The epoch of the group's target assignment; `None` resets it (-1).
    TargetAssignmentMetadata { group: String, value: Option<i32> },
    TargetAssignmentMember {
        group: String,
        member: String,
        value: Option<TopicPartitions>,
    },
    CurrentAssignment {
        group: String,
        member: String,
        value: Option<CurrentAssignment>,
    },
    /// A record type of Kafka's this coordinator does not keep (4 and 16).
    Ignored { group: String },
}

impl ConsumerRecord {
    /// A record without a value (or one not kept here): it creates nothing.
    pub fn is_tombstone(&self) -> bool {
        matches!(
            self,
            ConsumerRecord::GroupMetadata { value: None, .. }
                | ConsumerRecord::Member { value: None, .. }
                | ConsumerRecord::TargetAssignmentMetadata { value: None, .. }
                | ConsumerRecord::TargetAssignmentMember { value: None, .. }
                | ConsumerRecord::CurrentAssignment { value: None, .. }
                | ConsumerRecord::Ignored { .. }
        )
    }

    pub fn group(&self) -> &str {
        match self {
            ConsumerRecord::GroupMetadata { group, .. }
            | ConsumerRecord::Member { group, .. }
            | ConsumerRecord::TargetAssignmentMetadata { group, .. }
            | ConsumerRecord::TargetAssignmentMember { group, .. }
            | ConsumerRecord::CurrentAssignment { group, .. }
            | ConsumerRecord::Ignored { group } => group,
        }
    }

    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut k = BytesMut::new();
        let value = match self {
            ConsumerRecord::GroupMetadata { group, value } => {
                key(&mut k, GROUP_METADATA, group, None);
                value.map(|(epoch, hash)| {
                    flexible_value(|v| {
                        v.put_i32(epoch);
                        if hash != 0 {
                            put_uvarint(v, 1);
                            put_uvarint(v, TAG_METADATA_HASH);
                            put_uvarint(v, 8);
                            v.put_i64(hash);
                        } else {
                            put_uvarint(v, 0);
                        }
                    })
                })
            }
            ConsumerRecord::Member {
                group,
                member,
                value,
            } => {
                key(&mut k, MEMBER_METADATA, group, Some(member));
                value.as_ref().map(|m| {
                    flexible_value(|v| {
                        put_compact_nullable(v, m.instance_id.as_deref());
                        put_compact_nullable(v, m.rack_id.as_deref());
                        put_compact(v, &m.client_id);
                        put_compact(v, &m.client_host);
                        put_uvarint(v, m.subscribed_topic_names.len() as u32 + 1);
                        for name in &m.subscribed_topic_names {
                            put_compact(v, name);
                        }
                        put_compact_nullable(v, m.subscribed_topic_regex.as_deref());
                        v.put_i32(m.rebalance_timeout_ms);
                        put_compact_nullable(v, m.server_assignor.as_deref());
                        put_uvarint(v, 0);
                    })
                })
            }
            ConsumerRecord::TargetAssignmentMetadata { group, value } => {
                key(&mut k, TARGET_ASSIGNMENT_METADATA, group, None);
                value.map(|epoch| {
                    flexible_value(|v| {
                        v.put_i32(epoch);
                        put_uvarint(v, 0);
                    })
                })
            }
            ConsumerRecord::TargetAssignmentMember {
                group,
                member,
                value,
            } => {
                key(&mut k, TARGET_ASSIGNMENT_MEMBER, group, Some(member));
                value.as_ref().map(|partitions| {
                    flexible_value(|v| {
                        put_topic_partitions(v, partitions);
                        put_uvarint(v, 0);
                    })
                })
            }
            ConsumerRecord::CurrentAssignment {
                group,
                member,
                value,
            } => {
                key(&mut k, CURRENT_MEMBER_ASSIGNMENT, group, Some(member));
                value.as_ref().map(|a| {
                    flexible_value(|v| {
                        v.put_i32(a.member_epoch);
                        v.put_i32(a.previous_member_epoch);
                        v.put_i8(a.state.code());
                        put_topic_partitions(v, &a.assigned);
                        put_topic_partitions(v, &a.pending_revocation);
                        put_uvarint(v, 0);
                    })
                })
            }
            ConsumerRecord::Ignored { group } => {
                // Never written: only read back from a log Kafka's coordinator wrote.
                key(&mut k, PARTITION_METADATA, group, None);
                None
            }
        };
        (k.freeze(), value)
    }

    /// Decodes a record whose key starts with `record_type` (already read from `key`).
    pub fn decode(record_type: i16, mut key: Bytes, value: Option<&Bytes>) -> Result<Self> {
        if !matches!(
            record_type,
            GROUP_METADATA..=CURRENT_MEMBER_ASSIGNMENT | REGULAR_EXPRESSION
        ) {
            return Err(RecordError::UnknownKeyVersion(record_type));
        }
        let group = get_string(&mut key, "group id")?;
        let mut value = match value {
            Some(v) => {
                let mut v = v.clone();
                let version = get_i16(&mut v, "value version")?;
                if version != VALUE_VERSION {
                    return Err(RecordError::UnknownValueVersion(version));
                }
                Some(v)
            }
            None => None,
        };
        Ok(match record_type {
            GROUP_METADATA => ConsumerRecord::GroupMetadata {
                group,
                value: value.as_mut().map(decode_group_metadata).transpose()?,
            },
            MEMBER_METADATA => ConsumerRecord::Member {
                group,
                member: get_string(&mut key, "member id")?,
                value: value.as_mut().map(decode_member).transpose()?,
            },
            TARGET_ASSIGNMENT_METADATA => ConsumerRecord::TargetAssignmentMetadata {
                group,
                value: value
                    .as_mut()
                    .map(|v| get_i32(v, "assignment epoch"))
                    .transpose()?,
            },
            TARGET_ASSIGNMENT_MEMBER => ConsumerRecord::TargetAssignmentMember {
                group,
                member: get_string(&mut key, "member id")?,
                value: value
                    .as_mut()
                    .map(|v| get_topic_partitions(v, "target partitions"))
                    .transpose()?,
            },
            CURRENT_MEMBER_ASSIGNMENT => ConsumerRecord::CurrentAssignment {
                group,
                member: get_string(&mut key, "member id")?,
                value: value.as_mut().map(decode_current).transpose()?,
            },
            PARTITION_METADATA | REGULAR_EXPRESSION => ConsumerRecord::Ignored { group },
            other => return Err(RecordError::UnknownKeyVersion(other)),
        })
    }
}

fn key(k: &mut BytesMut, record_type: i16, group: &str, member: Option<&str>) {
    k.put_i16(record_type);
    put_string(k, group);
    if let Some(member) = member {
        put_string(k, member);
    }
}

fn flexible_value(body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut v = BytesMut::new();
    v.put_i16(VALUE_VERSION);
    body(&mut v);
    v.freeze()
}

fn decode_group_metadata(v: &mut Bytes) -> Result<(i32, i64)> {
    let epoch = get_i32(v, "group epoch")?;
    let mut hash = 0;
    let count = get_uvarint(v, "tagged fields")?;
    for _ in 0..count {
        let tag = get_uvarint(v, "tag")?;
        let size = get_uvarint(v, "tagged field size")? as usize;
        if v.remaining() < size {
            return Err(RecordError::Truncated("tagged field"));
        }
        let mut data = v.split_to(size);
        if tag == TAG_METADATA_HASH {
            hash = get_i64(&mut data, "metadata hash")?;
        }
    }
    Ok((epoch, hash))
}

fn decode_member(v: &mut Bytes) -> Result<MemberMetadata> {
    let instance_id = get_compact_nullable(v, "instance id")?;
    let rack_id = get_compact_nullable(v, "rack id")?;
    let client_id = get_compact(v, "client id")?;
    let client_host = get_compact(v, "client host")?;
    let count = get_uvarint(v, "subscribed topics")?.saturating_sub(1) as usize;
    let mut subscribed_topic_names = Vec::with_capacity(count.min(v.remaining()));
    for _ in 0..count {
        subscribed_topic_names.push(get_compact(v, "subscribed topic")?);
    }
    let subscribed_topic_regex = get_compact_nullable(v, "subscribed regex")?;
    let rebalance_timeout_ms = get_i32(v, "rebalance timeout")?;
    let server_assignor = get_compact_nullable(v, "server assignor")?;
    // Tag 0 is a classic-protocol member's metadata (KIP-848's online migration), not kept here.
    skip_tagged_fields(v)?;
    Ok(MemberMetadata {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
    })
}

fn decode_current(v: &mut Bytes) -> Result<CurrentAssignment> {
    let member_epoch = get_i32(v, "member epoch")?;
    let previous_member_epoch = get_i32(v, "previous member epoch")?;
    let state = MemberState::from_code(
        v.try_get_i8()
            .map_err(|_| RecordError::Truncated("state"))?,
    );
    let assigned = get_topic_partitions(v, "assigned partitions")?;
    let pending_revocation = get_topic_partitions(v, "partitions pending revocation")?;
    skip_tagged_fields(v)?;
    Ok(CurrentAssignment {
        member_epoch,
        previous_member_epoch,
        state,
        assigned,
        pending_revocation,
    })
}

/// `[{ TopicId uuid, Partitions [int32] }]`, each entry with its own tagged fields.
fn put_topic_partitions(v: &mut BytesMut, partitions: &TopicPartitions) {
    put_uvarint(v, partitions.len() as u32 + 1);
    for (topic_id, indexes) in partitions {
        v.put_slice(topic_id.as_bytes());
        put_uvarint(v, indexes.len() as u32 + 1);
        for index in indexes {
            v.put_i32(*index);
        }
        put_uvarint(v, 0);
    }
}

fn get_topic_partitions(v: &mut Bytes, what: &'static str) -> Result<TopicPartitions> {
    let topics = get_uvarint(v, what)?.saturating_sub(1);
    let mut partitions = TopicPartitions::new();
    for _ in 0..topics {
        if v.remaining() < 16 {
            return Err(RecordError::Truncated(what));
        }
        let mut id = [0u8; 16];
        v.copy_to_slice(&mut id);
        let count = get_uvarint(v, what)?.saturating_sub(1);
        let indexes = partitions.entry(Uuid::from_bytes(id)).or_default();
        for _ in 0..count {
            indexes.insert(get_i32(v, what)?);
        }
        skip_tagged_fields(v)?;
    }
    Ok(partitions)
}

fn put_compact(v: &mut BytesMut, s: &str) {
    put_uvarint(v, s.len() as u32 + 1);
    v.put_slice(s.as_bytes());
}

fn put_compact_nullable(v: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_compact(v, s),
        None => put_uvarint(v, 0),
    }
}

fn get_compact_nullable(v: &mut Bytes, what: &'static str) -> Result<Option<String>> {
    let len = get_uvarint(v, what)?;
    if len == 0 {
        return Ok(None);
    }
    let len = (len - 1) as usize;
    if v.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    String::from_utf8(v.split_to(len).to_vec())
        .map(Some)
        .map_err(|_| RecordError::NotUtf8(what))
}

fn get_compact(v: &mut Bytes, what: &'static str) -> Result<String> {
    Ok(get_compact_nullable(v, what)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(record: ConsumerRecord) {
        let (key, value) = record.encode();
        let mut k = key.clone();
        let record_type = k.get_i16();
        assert_eq!(
            ConsumerRecord::decode(record_type, k, value.as_ref()).unwrap(),
            record
        );
    }

    #[test]
    fn every_record_round_trips_and_tombstones_have_no_value() {
        let t = Uuid::from_u128(7);
        let partitions: TopicPartitions = [(t, [0, 2].into_iter().collect())].into_iter().collect();
        roundtrip(ConsumerRecord::GroupMetadata {
            group: "g".into(),
            value: Some((4, -99)),
        });
        roundtrip(ConsumerRecord::GroupMetadata {
            group: "g".into(),
            value: Some((4, 0)),
        });
        roundtrip(ConsumerRecord::Member {
            group: "g".into(),
            member: "m".into(),
            value: Some(MemberMetadata {
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscribed_topic_names: vec!["a".into(), "b".into()],
                subscribed_topic_regex: Some("^x.*".into()),
                rebalance_timeout_ms: 300_000,
                server_assignor: Some("range".into()),
            }),
        });
        roundtrip(ConsumerRecord::TargetAssignmentMetadata {
            group: "g".into(),
            value: Some(4),
        });
        roundtrip(ConsumerRecord::TargetAssignmentMember {
            group: "g".into(),
            member: "m".into(),
            value: Some(partitions.clone()),
        });
        roundtrip(ConsumerRecord::CurrentAssignment {
            group: "g".into(),
            member: "m".into(),
            value: Some(CurrentAssignment {
                member_epoch: 4,
                previous_member_epoch: 3,
                state: MemberState::UnrevokedPartitions,
                assigned: partitions.clone(),
                pending_revocation: [(t, [1].into_iter().collect())].into_iter().collect(),
            }),
        });
        for tombstone in [
            ConsumerRecord::GroupMetadata {
                group: "g".into(),
                value: None,
            },
            ConsumerRecord::CurrentAssignment {
                group: "g".into(),
                member: "m".into(),
                value: None,
            },
        ] {
            assert!(tombstone.encode().1.is_none());
            roundtrip(tombstone);
        }
    }

    #[test]
    fn the_layout_is_kafkas() {
        // ConsumerGroupTargetAssignmentMetadataKey/Value: type 6, group "g"; version 0, epoch 5, no
        // tagged fields.
        let (key, value) = ConsumerRecord::TargetAssignmentMetadata {
            group: "g".into(),
            value: Some(5),
        }
        .encode();
        assert_eq!(&key[..], &[0, 6, 0, 1, b'g']);
        assert_eq!(&value.unwrap()[..], &[0, 0, 0, 0, 0, 5, 0]);
        // A truncated value is an error, never a panic.
        let (key, value) = ConsumerRecord::CurrentAssignment {
            group: "g".into(),
            member: "m".into(),
            value: Some(CurrentAssignment::default()),
        }
        .encode();
        let value = value.unwrap();
        for cut in 0..value.len() {
            let mut k = key.clone();
            let t = k.get_i16();
            let short = value.slice(..cut);
            assert!(
                ConsumerRecord::decode(t, k, Some(&short)).is_err(),
                "cut {cut}"
            );
        }
    }
}
