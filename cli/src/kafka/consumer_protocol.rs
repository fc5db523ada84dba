//! The consumer protocol's assignment bytes (`ConsumerProtocolAssignment`, versions 0–3): what a
//! consumer group leader hands each member in SyncGroup and what DescribeGroups returns as opaque
//! `member_assignment`. Layout: an int16 version, then an array of (topic string, int32 partitions
//! array), then nullable user-data bytes; v1–v3 add nothing to the assignment.
//!
//! As Kafka's `ConsumerProtocol.deserializeAssignment` does, a version above 3 is read with the v3
//! layout (later versions only append fields) and trailing bytes are ignored. Empty bytes are a member
//! without an assignment yet (a rebalance in progress), not an error.

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
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

#[cfg(test)]
mod tests {
    use super::*;
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
