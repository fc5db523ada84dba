//! Where a topic's partitions live, for every command that reads or writes records (`topic produce`,
//! `topic consume`, `bench`): a Metadata request (v12 when the broker offers it) through the first
//! reachable bootstrap server gives each selected partition's leader, leader epoch and every broker's
//! endpoint. Partitions without a leader yet (a topic created a moment ago, a leader that just died)
//! are waited for, within the caller's deadline; [`is_leader_retriable`] names the per-partition
//! answers that mean "ask this again once the metadata is fresh".
//!
//! What must stay true: a topic that does not exist, or a selected partition it does not have, is an
//! error at once (never waited for) unless auto-creation was asked for; a layout is returned only when
//! every selected partition has a leader with a known endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::{error_name, join_host_port, KafkaConnection, KafkaError};

/// Metadata versions this client speaks (v4 adds AllowAutoTopicCreation, v10 the topic id).
const METADATA_VERSIONS: (i16, i16) = (4, 12);

/// How long to wait between Metadata requests while partitions have no leader.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// `UNKNOWN_TOPIC_OR_PARTITION`.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Which partitions of a topic a command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSelection {
    /// Every partition the metadata lists.
    All,
    /// These partitions, sorted, without duplicates.
    Only(Vec<i32>),
}

impl PartitionSelection {
    /// Whether `partition` is selected.
    pub fn includes(&self, partition: i32) -> bool {
        match self {
            PartitionSelection::All => true,
            PartitionSelection::Only(partitions) => partitions.binary_search(&partition).is_ok(),
        }
    }

    /// `Only` of these partitions (sorted, deduplicated), or `All` when there are none.
    pub fn from_list(mut partitions: Vec<i32>) -> Self {
        if partitions.is_empty() {
            return PartitionSelection::All;
        }
        partitions.sort_unstable();
        partitions.dedup();
        PartitionSelection::Only(partitions)
    }
}

impl fmt::Display for PartitionSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionSelection::All => f.write_str("all"),
            PartitionSelection::Only(partitions) => {
                let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

/// Per-partition answers (Produce, Fetch, ListOffsets) that a fresh look at the metadata and a moment
/// can fix: LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR,
/// FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, OFFSET_NOT_AVAILABLE (Kafka's `RetriableException`s
/// that name a leader change).
pub fn is_leader_retriable(code: i16) -> bool {
    matches!(code, 5 | 6 | 7 | 56 | 74 | 75 | 78)
}

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
    /// How many partitions the topic has (selected or not).
    pub partition_count: i32,
    /// `host:port` of every leader, by broker id.
    pub leaders: BTreeMap<i32, String>,
    /// `host:port` of every broker the answer lists, by broker id.
    pub brokers: BTreeMap<i32, String>,
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
    ) -> Result<Self, KafkaError> {
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
                    return Err(KafkaError::Timeout {
                        waiting_for: format!(
                            "waiting for every selected partition of '{topic}' to have a leader"
                        ),
                    })
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

    /// The selected partition `partition`, if selected.
    pub fn partition(&self, partition: i32) -> Option<&PartitionLeader> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// Connects to the first bootstrap server that answers.
pub async fn connect_any(
    bootstrap_servers: &[String],
    deadline: Instant,
) -> Result<KafkaConnection, KafkaError> {
    let mut last_error = None;
    for address in bootstrap_servers {
        match KafkaConnection::open(address, deadline).await {
            Ok(connection) => return Ok(connection),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or(KafkaError::NoBootstrapServer))
}

/// The layout in a Metadata answer; `None` while some selected partition has no leader.
fn layout(
    response: &MetadataResponse,
    topic: &str,
    selection: &PartitionSelection,
    auto_create: bool,
) -> Result<Option<TopicLayout>, KafkaError> {
    let Some(answer) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == topic))
    else {
        return Err(KafkaError::UnexpectedAnswer(format!(
            "the Metadata answer does not mention topic '{topic}'"
        )));
    };
    match answer.error_code {
        0 => {}
        // While a topic is being auto-created, KRaft brokers answer UNKNOWN_TOPIC_OR_PARTITION.
        UNKNOWN_TOPIC_OR_PARTITION if auto_create => return Ok(None),
        UNKNOWN_TOPIC_OR_PARTITION => {
            return Err(KafkaError::UnknownTopic {
                topic: topic.to_owned(),
            })
        }
        code if is_transient(code) => return Ok(None),
        code => return Err(KafkaError::broker(format!("topic '{topic}'"), code)),
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
            return Err(KafkaError::broker(
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
            return Err(KafkaError::UnknownPartition {
                topic: topic.to_owned(),
                partition: *missing,
                partitions: answer.partitions.len(),
            });
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
    let brokers = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, join_host_port(b.host.as_str(), b.port)))
        .collect();
    Ok(Some(TopicLayout {
        topic: topic.to_owned(),
        topic_id: answer.topic_id,
        partition_count: i32::try_from(answer.partitions.len()).unwrap_or(i32::MAX),
        partitions,
        leaders,
        brokers,
    }))
}

/// Errors that clear up by themselves once a leader is elected.
fn is_transient(code: i16) -> bool {
    matches!(
        error_name(code).as_str(),
        "LEADER_NOT_AVAILABLE" | "NOT_LEADER_OR_FOLLOWER"
    )
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
        assert_eq!(error.to_string(), "topic 'bench' does not exist");
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
        assert_eq!(
            error.to_string(),
            "topic 'bench' has no partition 5 (it has 1 partition(s))"
        );
    }
}
