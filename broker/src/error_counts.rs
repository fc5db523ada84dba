//! The Kafka errors a response carries, for the `errors` request metric (Kafka's
//! `AbstractResponse.errorCounts()` behind `kafka.network:type=RequestMetrics,name=ErrorsPerSec`):
//! every error code in the response, top-level and per topic, partition, group or resource, counted
//! once per place it appears. NONE is not counted (Kafka's meter has it; a rate of successes is the
//! request rate), and a response of an API not listed here counts nothing.
//!
//! Error names are Kafka's (`NOT_LEADER_OR_FOLLOWER`), so dashboards and alerts written for Kafka's
//! error names work unchanged; a code this library does not know is `UNKNOWN`.

use std::collections::HashMap;
use std::sync::LazyLock;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ResponseKind;

/// The non-zero error codes of `body`, one per place they appear.
pub fn error_codes(body: &ResponseKind) -> Vec<i16> {
    let mut out = Vec::new();
    let mut add = |code: i16| {
        if code != 0 {
            out.push(code);
        }
    };
    match body {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| add(p.error_code)),
        ResponseKind::Fetch(r) => {
            add(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
        }
        ResponseKind::Metadata(r) => {
            add(r.error_code);
            for t in &r.topics {
                add(t.error_code);
                t.partitions.iter().for_each(|p| add(p.error_code));
            }
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            add(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
            for g in &r.groups {
                add(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| add(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            add(r.error_code);
            r.coordinators.iter().for_each(|c| add(c.error_code));
        }
        ResponseKind::JoinGroup(r) => add(r.error_code),
        ResponseKind::SyncGroup(r) => add(r.error_code),
        ResponseKind::Heartbeat(r) => add(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            add(r.error_code);
            r.members.iter().for_each(|m| add(m.error_code));
        }
        ResponseKind::ListGroups(r) => add(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| add(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| add(g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            add(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
        }
        ResponseKind::InitProducerId(r) => add(r.error_code),
        ResponseKind::ApiVersions(r) => add(r.error_code),
        ResponseKind::SaslHandshake(r) => add(r.error_code),
        ResponseKind::SaslAuthenticate(r) => add(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| add(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| add(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| add(t.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| add(c.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|c| add(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|c| add(c.error_code))
        }
        ResponseKind::ElectLeaders(r) => {
            add(r.error_code);
            r.replica_election_results
                .iter()
                .flat_map(|t| &t.partition_result)
                .for_each(|p| add(p.error_code));
        }
        ResponseKind::DescribeAcls(r) => add(r.error_code),
        ResponseKind::CreateAcls(r) => r.results.iter().for_each(|a| add(a.error_code)),
        ResponseKind::DeleteAcls(r) => r.filter_results.iter().for_each(|f| add(f.error_code)),
        ResponseKind::DescribeLogDirs(r) => {
            add(r.error_code);
            r.results.iter().for_each(|d| add(d.error_code));
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            add(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
        }
        ResponseKind::ListPartitionReassignments(r) => add(r.error_code),
        ResponseKind::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::DescribeUserScramCredentials(r) => {
            add(r.error_code);
            r.results.iter().for_each(|u| add(u.error_code));
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().for_each(|u| add(u.error_code))
        }
        ResponseKind::DescribeCluster(r) => add(r.error_code),
        _ => {}
    }
    out
}

/// Kafka's name of an error code: `NOT_LEADER_OR_FOLLOWER` for 6; `UNKNOWN` for a code not known
/// here (one label value for all of them, so a misbehaving peer cannot grow the series).
pub fn error_name(code: i16) -> &'static str {
    static NAMES: LazyLock<HashMap<i16, String>> = LazyLock::new(|| {
        (-1..=200)
            .filter_map(|code| match ResponseError::try_from_code(code) {
                Some(ResponseError::Unknown(_)) | None => None,
                Some(error) => Some((code, upper_snake(&format!("{error:?}")))),
            })
            .collect()
    });
    NAMES.get(&code).map_or("UNKNOWN", String::as_str)
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(32_000), "UNKNOWN");
    }

    #[test]
    fn every_partition_error_counts_once_and_none_not_at_all() {
        let partition = |index, error_code| {
            PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(error_code)
        };
        let body = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("a")))
                .with_partition_responses(vec![partition(0, 0), partition(1, 6), partition(2, 6)]),
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("b")))
                .with_partition_responses(vec![partition(0, 19)]),
        ]));
        assert_eq!(error_codes(&body), vec![6, 6, 19]);
    }
}
