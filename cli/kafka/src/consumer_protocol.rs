//! The consumer protocol's assignment bytes (`ConsumerProtocolAssignment`, versions 0–3): what a
//! consumer group leader hands each member in SyncGroup and what DescribeGroups returns as opaque
//! `member_assignment`. Layout: an int16 version, then an array of (topic string, int32 partitions
//! array), then nullable user-data bytes; v1–v3 add nothing to the assignment. Also the subscription
//! a member sends in JoinGroup (`ConsumerProtocolSubscription`), and Kafka's range assignor over one
//! topic, for `topic consume --group`.
//!
//! As Kafka's `ConsumerProtocol.deserializeAssignment` does, a version above 3 is read with the v3
//! layout (later versions only append fields) and trailing bytes are ignored. Empty bytes are a member
//! without an assignment yet (a rebalance in progress), not an error.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::Serialize;

/// The highest assignment version whose layout this client knows.
const HIGHEST_ASSIGNMENT_VERSION: i16 = 3;

/// The partitions of one topic assigned to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicPartitions {
    /// The topic name.
    pub topic: String,
    /// The partition indexes, ascending.
    pub partitions: Vec<i32>,
}

/// A decoded member assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The version the member's leader wrote; `None` for empty bytes.
    pub version: Option<i16>,
    /// The assigned partitions, by topic name.
    pub topics: Vec<TopicPartitions>,
    /// Bytes of assignor-specific user data (0 when absent).
    pub user_data_bytes: usize,
}

/// Decodes a member's assignment bytes; the error says why they are not a consumer assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment {
            version: None,
            topics: Vec::new(),
            user_data_bytes: 0,
        });
    }
    if bytes.len() < 2 {
        return Err(format!(
            "{} byte(s) are too short for an assignment version",
            bytes.len()
        ));
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version < 0 {
        return Err(format!("assignment version {version} is negative"));
    }
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    let decoded =
        ConsumerProtocolAssignment::decode(&mut body, version.min(HIGHEST_ASSIGNMENT_VERSION))
            .map_err(|error| format!("not a consumer assignment (version {version}): {error}"))?;
    let mut topics: Vec<TopicPartitions> = decoded
        .assigned_partitions
        .into_iter()
        .map(|topic| {
            let mut partitions = topic.partitions;
            partitions.sort_unstable();
            TopicPartitions {
                topic: topic.topic.to_string(),
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Assignment {
        version: Some(version),
        topics,
        user_data_bytes: decoded.user_data.map_or(0, |data| data.len()),
    })
}

/// A v0 subscription to `topic` (what a member sends in JoinGroup).
pub fn encode_subscription(topic: &str) -> Result<Bytes, String> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_owned())]);
    let mut buffer = BytesMut::new();
    buffer.put_i16(0);
    subscription
        .encode(&mut buffer, 0)
        .map_err(|e| format!("cannot encode a subscription: {e}"))?;
    Ok(buffer.freeze())
}

/// The topics of a member's subscription bytes (any version; later ones only append fields).
pub fn subscribed_topics(bytes: &[u8]) -> Result<Vec<String>, String> {
    if bytes.len() < 2 {
        return Err("too short for a subscription".to_owned());
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    let decoded = ConsumerProtocolSubscription::decode(&mut body, version.clamp(0, 3))
        .map_err(|e| format!("not a consumer subscription (version {version}): {e}"))?;
    Ok(decoded.topics.iter().map(ToString::to_string).collect())
}

/// A v0 assignment of `partitions` of `topic`.
pub fn encode_assignment(topic: &str, partitions: &[i32]) -> Result<Bytes, String> {
    let assigned = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![TopicPartition::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(partitions.to_vec())]
    };
    let mut buffer = BytesMut::new();
    buffer.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(assigned)
        .encode(&mut buffer, 0)
        .map_err(|e| format!("cannot encode an assignment: {e}"))?;
    Ok(buffer.freeze())
}

/// Kafka's range assignor (`RangeAssignor`) over one topic: the subscribed members, by member id,
/// each take a contiguous range; the first `partitions % members` take one more. Members not in
/// `subscribed` get nothing.
pub fn range_assignment(subscribed: &[String], partitions: i32) -> Vec<(String, Vec<i32>)> {
    let mut members: Vec<&String> = subscribed.iter().collect();
    members.sort();
    let count = members.len() as i32;
    if count == 0 {
        return Vec::new();
    }
    let (each, extra) = (partitions / count, partitions % count);
    let mut next = 0;
    members
        .into_iter()
        .enumerate()
        .map(|(i, member)| {
            let take = each + i32::from((i as i32) < extra);
            let range: Vec<i32> = (next..next + take).collect();
            next += take;
            (member.clone(), range)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let subscription = encode_subscription("orders").expect("encodes");
        assert_eq!(
            subscribed_topics(&subscription),
            Ok(vec!["orders".to_owned()])
        );
        let assignment = encode_assignment("orders", &[2, 0]).expect("encodes");
        let decoded = decode_assignment(&assignment).expect("decodes");
        assert_eq!(decoded.version, Some(0));
        assert_eq!(decoded.topics[0].partitions, [0, 2]);
        let empty = encode_assignment("orders", &[]).expect("encodes");
        assert!(decode_assignment(&empty)
            .expect("decodes")
            .topics
            .is_empty());
    }

    #[test]
    fn the_range_assignor_is_kafkas() {
        let members = ["m-b".to_owned(), "m-a".to_owned(), "m-c".to_owned()];
        assert_eq!(
            range_assignment(&members, 7),
            [
                ("m-a".to_owned(), vec![0, 1, 2]),
                ("m-b".to_owned(), vec![3, 4]),
                ("m-c".to_owned(), vec![5, 6]),
            ]
        );
        assert_eq!(
            range_assignment(&members[..1], 2),
            [("m-b".to_owned(), vec![0, 1])]
        );
        assert_eq!(range_assignment(&members, 1)[2], ("m-c".to_owned(), vec![]));
        assert!(range_assignment(&[], 3).is_empty());
    }
    use bytes::{BufMut, BytesMut};

    /// Writes an assignment by hand, as the Java client lays it out.
    fn assignment(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        buffer.put_i16(version);
        buffer.put_i32(topics.len() as i32);
        for (topic, partitions) in topics {
            buffer.put_i16(topic.len() as i16);
            buffer.put_slice(topic.as_bytes());
            buffer.put_i32(partitions.len() as i32);
            for partition in *partitions {
                buffer.put_i32(*partition);
            }
        }
        match user_data {
            Some(data) => {
                buffer.put_i32(data.len() as i32);
                buffer.put_slice(data);
            }
            None => buffer.put_i32(-1),
        }
        buffer.to_vec()
    }

    #[test]
    fn every_known_version_decodes_sorted() {
        for version in 0..=3 {
            let bytes = assignment(version, &[("orders", &[2, 0]), ("audit", &[1])], None);
            let decoded = decode_assignment(&bytes).expect("a valid assignment");
            assert_eq!(decoded.version, Some(version));
            assert_eq!(
                decoded.topics,
                [
                    TopicPartitions {
                        topic: "audit".to_owned(),
                        partitions: vec![1]
                    },
                    TopicPartitions {
                        topic: "orders".to_owned(),
                        partitions: vec![0, 2]
                    }
                ]
            );
            assert_eq!(decoded.user_data_bytes, 0);
        }
    }

    #[test]
    fn user_data_is_counted_and_later_versions_read_as_v3() {
        let mut bytes = assignment(7, &[("t", &[0])], Some(b"sticky"));
        bytes.extend_from_slice(&[0xde, 0xad]); // a field from a future version
        let decoded = decode_assignment(&bytes).expect("forward compatible");
        assert_eq!(decoded.version, Some(7));
        assert_eq!(decoded.topics[0].partitions, [0]);
        assert_eq!(decoded.user_data_bytes, 6);
    }

    #[test]
    fn empty_bytes_are_no_assignment_yet() {
        let decoded = decode_assignment(&[]).expect("empty is valid");
        assert_eq!(decoded.version, None);
        assert!(decoded.topics.is_empty());
    }

    #[test]
    fn undecodable_bytes_say_why() {
        assert!(decode_assignment(&[0])
            .expect_err("short")
            .contains("too short"));
        assert!(decode_assignment(&[0xff, 0xff, 0, 0, 0, 0])
            .expect_err("negative version")
            .contains("negative"));
        let truncated = &assignment(1, &[("orders", &[0, 1])], None)[..12];
        let error = decode_assignment(truncated).expect_err("truncated");
        assert!(error.contains("not a consumer assignment"), "{error}");
    }
}
