//! Where a benchmark's partitions live: a Metadata request (v12 when the broker offers it) through the
//! first reachable bootstrap server gives each selected partition's leader, leader epoch and the
//! leaders' endpoints. Partitions without a leader yet (a topic created a moment ago) are waited for,
//! within the benchmark's time budget.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::error::{error_name, BenchError};
use super::PartitionSelection;
use crate::kafka::KafkaConnection;

/// Metadata versions this client speaks (v4 adds AllowAutoTopicCreation, v10 the topic id).
const METADATA_VERSIONS: (i16, i16) = (4, 12);

/// How long to wait between Metadata requests while partitions have no leader.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// `UNKNOWN_TOPIC_OR_PARTITION`.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// One partition and its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id.
    pub leader_id: i32,
    /// The leader epoch the metadata reported.
    pub leader_epoch: i32,
}

/// The selected partitions of a topic and the endpoints of their leaders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLayout {
    /// The topic name.
    pub topic: String,
    /// The topic id (nil when the broker's Metadata version has none).
    pub topic_id: Uuid,
    /// The selected partitions, in index order.
    pub partitions: Vec<PartitionLeader>,
    /// `host:port` of every leader, by broker id.
    pub leaders: BTreeMap<i32, String>,
}

impl TopicLayout {
    /// Asks the first reachable bootstrap server for the topic until every selected partition has a
    /// leader. With `auto_create`, a missing topic is created by the broker with its defaults.
    pub async fn discover(
        bootstrap_servers: &[String],
        topic: &str,
        selection: &PartitionSelection,
        auto_create: bool,
        deadline: Instant,
    ) -> Result<Self, BenchError> {
        let mut connection = connect_any(bootstrap_servers, deadline).await?;
        let version =
            connection.version(ApiKey::Metadata, METADATA_VERSIONS.0, METADATA_VERSIONS.1)?;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_owned())),
            ))]))
            .with_allow_auto_topic_creation(auto_create);
        loop {
            let response = connection.call(&request, version, deadline).await?;
            match layout(&response, topic, selection, auto_create)? {
                Some(layout) => return Ok(layout),
                None if Instant::now() + RETRY_INTERVAL < deadline => {
                    tokio::time::sleep(RETRY_INTERVAL).await;
                }
                None => {
                    return Err(BenchError::timeout(format!(
                        "waiting for every partition of '{topic}' to have a leader"
                    )))
                }
            }
        }
    }

    /// The selected partitions grouped by leader: `(leader address, partitions)`, one entry per broker.
    pub fn by_leader(&self) -> Vec<(String, Vec<PartitionLeader>)> {
        let mut groups: BTreeMap<i32, Vec<PartitionLeader>> = BTreeMap::new();
        for partition in &self.partitions {
            groups
                .entry(partition.leader_id)
                .or_default()
                .push(*partition);
        }
        groups
            .into_iter()
            .filter_map(|(leader, partitions)| {
                self.leaders
                    .get(&leader)
                    .map(|address| (address.clone(), partitions))
            })
            .collect()
    }
}

/// Connects to the first bootstrap server that answers.
pub async fn connect_any(
    bootstrap_servers: &[String],
    deadline: Instant,
) -> Result<KafkaConnection, BenchError> {
    let mut last_error = None;
    for address in bootstrap_servers {
        match KafkaConnection::open(address, deadline).await {
            Ok(connection) => return Ok(connection),
            Err(error) => last_error = Some(BenchError::from(error)),
        }
    }
    Err(last_error.unwrap_or_else(|| BenchError::Cluster("no bootstrap server given".to_owned())))
}

/// The layout in a Metadata answer; `None` while some selected partition has no leader.
fn layout(
    response: &MetadataResponse,
    topic: &str,
    selection: &PartitionSelection,
    auto_create: bool,
) -> Result<Option<TopicLayout>, BenchError> {
    let Some(answer) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == topic))
    else {
        return Err(BenchError::Cluster(format!(
            "the Metadata answer does not mention topic '{topic}'"
        )));
    };
    match answer.error_code {
        0 => {}
        // While a topic is being auto-created, KRaft brokers answer UNKNOWN_TOPIC_OR_PARTITION.
        UNKNOWN_TOPIC_OR_PARTITION if auto_create => return Ok(None),
        UNKNOWN_TOPIC_OR_PARTITION => {
            return Err(BenchError::Cluster(format!(
                "topic '{topic}' does not exist (create it, or pass --auto-create-topic)"
            )))
        }
        code if is_transient(code) => return Ok(None),
        code => return Err(BenchError::kafka(format!("topic '{topic}'"), code)),
    }
    let mut partitions = Vec::new();
    for partition in &answer.partitions {
        if !selection.includes(partition.partition_index) {
            continue;
        }
        if partition.leader_id.0 < 0 || is_transient(partition.error_code) {
            return Ok(None);
        }
        // REPLICA_NOT_AVAILABLE only says some follower is down; the leader still serves.
        if partition.error_code != 0 && partition.error_code != 9 {
            return Err(BenchError::kafka(
                format!("partition {} of '{topic}'", partition.partition_index),
                partition.error_code,
            ));
        }
        partitions.push(PartitionLeader {
            partition: partition.partition_index,
            leader_id: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
        });
    }
    partitions.sort_by_key(|p| p.partition);
    if let PartitionSelection::Only(wanted) = selection {
        if let Some(missing) = wanted
            .iter()
            .find(|w| !partitions.iter().any(|p| p.partition == **w))
        {
            return Err(BenchError::Cluster(format!(
                "topic '{topic}' has no partition {missing} (it has {})",
                answer.partitions.len()
            )));
        }
    }
    if partitions.is_empty() {
        return Ok(None);
    }
    let mut leaders = BTreeMap::new();
    for partition in &partitions {
        let Some(broker) = response
            .brokers
            .iter()
            .find(|b| b.node_id.0 == partition.leader_id)
        else {
            // A leader the answer has no endpoint for: metadata still settling.
            return Ok(None);
        };
        leaders.insert(
            partition.leader_id,
            join_host_port(broker.host.as_str(), broker.port),
        );
    }
    Ok(Some(TopicLayout {
        topic: topic.to_owned(),
        topic_id: answer.topic_id,
        partitions,
        leaders,
    }))
}

/// Errors that clear up by themselves once a leader is elected.
fn is_transient(code: i16) -> bool {
    matches!(
        error_name(code).as_str(),
        "LEADER_NOT_AVAILABLE" | "NOT_LEADER_OR_FOLLOWER"
    )
}

/// `host:port`, with an IPv6 host in brackets.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    fn response(leaders: &[i32]) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("::1"))
                    .with_port(9094),
            ])
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("bench"))))
                .with_partitions(
                    leaders
                        .iter()
                        .enumerate()
                        .map(|(i, leader)| {
                            MetadataResponsePartition::default()
                                .with_partition_index(i as i32)
                                .with_leader_id(BrokerId(*leader))
                                .with_leader_epoch(3)
                        })
                        .collect(),
                )])
    }

    #[test]
    fn partitions_are_grouped_by_leader() {
        let layout = layout(
            &response(&[1, 2, 1]),
            "bench",
            &PartitionSelection::All,
            false,
        )
        .expect("valid")
        .expect("every partition has a leader");
        let groups = layout.by_leader();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, "127.0.0.1:9092");
        assert_eq!(
            groups[0].1.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(groups[1].0, "[::1]:9094");
        assert_eq!(groups[1].1[0].leader_epoch, 3);
    }

    #[test]
    fn a_partition_without_leader_means_wait() {
        let answer = layout(
            &response(&[1, -1]),
            "bench",
            &PartitionSelection::All,
            false,
        );
        assert!(matches!(answer, Ok(None)));
        // Unless it is not selected.
        let only_first = PartitionSelection::Only(vec![0]);
        let answer = layout(&response(&[1, -1]), "bench", &only_first, false);
        assert!(matches!(answer, Ok(Some(ref l)) if l.partitions.len() == 1));
    }

    #[test]
    fn missing_topics_and_partitions_are_errors() {
        let mut unknown = response(&[]);
        unknown.topics[0].error_code = UNKNOWN_TOPIC_OR_PARTITION;
        let error =
            layout(&unknown, "bench", &PartitionSelection::All, false).expect_err("unknown");
        assert!(error.to_string().contains("does not exist"), "{error}");
        assert!(matches!(
            layout(&unknown, "bench", &PartitionSelection::All, true),
            Ok(None)
        ));
        let error = layout(
            &response(&[1]),
            "bench",
            &PartitionSelection::Only(vec![0, 5]),
            false,
        )
        .expect_err("no partition 5");
        assert!(error.to_string().contains("no partition 5"), "{error}");
    }
}
