//! `topic create|list|describe|delete|alter-config`. Each function sends one admin request and turns the
//! reply into a serializable struct; a per-topic Kafka error code becomes a [`CliError`] carrying the
//! controller's own message. Topic ids are shown as Kafka shows them: the 16 bytes in URL-safe base64
//! without padding.

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chronik_proto::v1::{
    self, AlterConfigsRequest, AlterConfigsResource, ConfigChange, ConfigOperation, ConfigResource,
    CreatableTopic, CreatePartitionsRequest, CreatePartitionsTopic, CreateTopicsRequest,
    DeleteTopicsRequest,
};
use serde::Serialize;

use crate::cli::ConfigChanges;
use crate::client::ControllerClient;
use crate::error::{codes, CliError};

/// The partition count or replication factor asking for the cluster default.
const CLUSTER_DEFAULT: i32 = -1;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// Number of partitions; `None` for the cluster default.
    pub partitions: Option<i32>,
    /// Replicas per partition; `None` for the cluster default.
    pub replication_factor: Option<i32>,
    /// Explicit configs.
    pub configs: BTreeMap<String, String>,
}

/// A topic that was just created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedTopic {
    /// The topic name.
    pub name: String,
    /// The topic id (URL-safe base64).
    pub topic_id: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// The effective configs: explicit values and defaults.
    pub configs: BTreeMap<String, String>,
}

/// One line of `topic list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    /// The topic name.
    pub name: String,
    /// The topic id (URL-safe base64).
    pub topic_id: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// True for internal topics such as `__consumer_offsets`.
    pub internal: bool,
}

/// A topic in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicDetails {
    /// The topic name.
    pub name: String,
    /// The topic id (URL-safe base64).
    pub topic_id: String,
    /// Explicitly set configs.
    pub configs: BTreeMap<String, String>,
    /// Every partition, by index.
    pub partitions: Vec<PartitionStatus>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id; -1 when there is none.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The replica set, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// A topic that was just deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedTopic {
    /// The topic name.
    pub name: String,
    /// The topic id (URL-safe base64); empty if the controller did not say.
    pub topic_id: String,
}

/// A topic's explicit configs after `alter-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicConfigs {
    /// The topic name.
    pub name: String,
    /// The explicitly set configs after the change.
    pub configs: BTreeMap<String, String>,
}

/// A topic id as Kafka prints it: URL-safe base64 of the 16 bytes, without padding (22 characters).
pub fn format_topic_id(topic_id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(topic_id)
}

/// Creates one topic.
pub async fn create(client: &ControllerClient, topic: NewTopic) -> Result<CreatedTopic, CliError> {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.name.clone(),
            num_partitions: topic.partitions.unwrap_or(CLUSTER_DEFAULT),
            replication_factor: topic.replication_factor.unwrap_or(CLUSTER_DEFAULT),
            configs: topic.configs.into_iter().collect(),
            assignments: Vec::new(),
        }],
        validate_only: false,
    };
    let reply = client.create_topics(request).await?;
    let result = reply
        .topics
        .into_iter()
        .find(|result| result.name == topic.name)
        .ok_or_else(|| missing_topic("CreateTopics", &topic.name))?;
    if result.error_code != codes::NONE {
        return Err(topic_error(
            result.error_code,
            &result.error_message,
            "create",
            &topic.name,
        ));
    }
    Ok(CreatedTopic {
        name: result.name,
        topic_id: format_topic_id(&result.topic_id),
        partitions: result.num_partitions,
        replication_factor: result.replication_factor,
        configs: sorted(result.configs),
    })
}

/// Lists every topic, by name.
pub async fn list(client: &ControllerClient) -> Result<Vec<TopicSummary>, CliError> {
    let reply = client.list_topics().await?;
    let mut topics: Vec<TopicSummary> = reply
        .topics
        .into_iter()
        .map(|topic| TopicSummary {
            topic_id: format_topic_id(&topic.topic_id),
            name: topic.name,
            partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            internal: topic.internal,
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

/// Describes one topic.
pub async fn describe(client: &ControllerClient, name: &str) -> Result<TopicDetails, CliError> {
    let reply = client.describe_topics(vec![name.to_owned()]).await?;
    let topic = reply
        .topics
        .into_iter()
        .find(|topic| topic.name == name)
        .ok_or_else(|| {
            CliError::kafka(codes::UNKNOWN_TOPIC_OR_PARTITION, "", |_| {
                does_not_exist(name)
            })
        })?;
    if topic.error_code != codes::NONE {
        return Err(topic_error(
            topic.error_code,
            &topic.error_message,
            "describe",
            name,
        ));
    }
    Ok(details(topic))
}

/// Deletes one topic.
pub async fn delete(client: &ControllerClient, name: &str) -> Result<DeletedTopic, CliError> {
    let request = DeleteTopicsRequest {
        names: vec![name.to_owned()],
        topic_ids: Vec::new(),
    };
    let reply = client.delete_topics(request).await?;
    let result = reply
        .topics
        .into_iter()
        .find(|result| result.name == name)
        .ok_or_else(|| missing_topic("DeleteTopics", name))?;
    if result.error_code != codes::NONE {
        return Err(topic_error(
            result.error_code,
            &result.error_message,
            "delete",
            name,
        ));
    }
    Ok(DeletedTopic {
        name: result.name,
        topic_id: format_topic_id(&result.topic_id),
    })
}

/// Sets and deletes configs of one topic.
pub async fn alter_config(
    client: &ControllerClient,
    name: &str,
    changes: ConfigChanges,
) -> Result<TopicConfigs, CliError> {
    let request = AlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource: ConfigResource::Topic as i32,
            name: name.to_owned(),
            changes: config_changes(changes),
            replace: false,
        }],
        validate_only: false,
    };
    let reply = client.alter_configs(request).await?;
    let result = reply
        .results
        .into_iter()
        .next()
        .ok_or_else(|| missing_topic("AlterConfigs", name))?;
    if result.error_code != codes::NONE {
        return Err(topic_error(
            result.error_code,
            &result.error_message,
            "alter the configs of",
            name,
        ));
    }
    Ok(TopicConfigs {
        name: name.to_owned(),
        configs: sorted(result.configs),
    })
}

/// The set and deleted keys as AlterConfigs changes.
pub fn config_changes(changes: ConfigChanges) -> Vec<ConfigChange> {
    let set = changes.set.into_iter().map(|(key, value)| ConfigChange {
        key,
        operation: ConfigOperation::Set as i32,
        value,
    });
    let deleted = changes.delete.into_iter().map(|key| ConfigChange {
        key,
        operation: ConfigOperation::Delete as i32,
        value: String::new(),
    });
    set.chain(deleted).collect()
}

/// A topic's partition count after `topic add-partitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedPartitions {
    /// The topic name.
    pub name: String,
    /// The partition count now.
    pub partitions: i32,
}

/// Grows a topic to `count` partitions; `assignments` places the new ones by hand (one replica
/// list per new partition, the first the preferred leader).
pub async fn add_partitions(
    client: &ControllerClient,
    name: &str,
    count: i32,
    assignments: Vec<Vec<i32>>,
) -> Result<AddedPartitions, CliError> {
    let request = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic {
            name: name.to_owned(),
            count,
            assignments: assignments
                .into_iter()
                .map(|brokers| v1::BrokerList { brokers })
                .collect(),
        }],
        validate_only: false,
    };
    let reply = client.create_partitions(request).await?;
    let result = reply
        .results
        .into_iter()
        .find(|result| result.name == name)
        .ok_or_else(|| missing_topic("CreatePartitions", name))?;
    if result.error_code != codes::NONE {
        return Err(topic_error(
            result.error_code,
            &result.error_message,
            "add partitions to",
            name,
        ));
    }
    Ok(AddedPartitions {
        name: name.to_owned(),
        partitions: count,
    })
}

fn details(topic: v1::TopicDescription) -> TopicDetails {
    let mut partitions: Vec<PartitionStatus> = topic
        .partitions
        .into_iter()
        .map(|partition| PartitionStatus {
            partition: partition.partition_index,
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
            replicas: partition.replicas,
            isr: partition.isr,
        })
        .collect();
    partitions.sort_by_key(|partition| partition.partition);
    TopicDetails {
        topic_id: format_topic_id(&topic.topic_id),
        name: topic.name,
        configs: sorted(topic.configs),
        partitions,
    }
}

/// The error for a failed per-topic result; the controller's message when it sent one.
fn topic_error(code: i32, message: &str, action: &str, name: &str) -> CliError {
    CliError::kafka(code, message, |error_name| match code {
        codes::TOPIC_ALREADY_EXISTS => format!("topic '{name}' already exists"),
        codes::UNKNOWN_TOPIC_OR_PARTITION => does_not_exist(name),
        _ => format!("cannot {action} topic '{name}': {error_name}"),
    })
}

fn does_not_exist(name: &str) -> String {
    format!("topic '{name}' does not exist")
}

fn missing_topic(call: &str, name: &str) -> CliError {
    CliError::UnexpectedReply(format!(
        "{call} answered without a result for topic '{name}'"
    ))
}

fn sorted(configs: HashMap<String, String>) -> BTreeMap<String, String> {
    configs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_as_kafka_does() {
        let id: Vec<u8> = (0u8..16).collect();
        assert_eq!(format_topic_id(&id), "AAECAwQFBgcICQoLDA0ODw");
        assert_eq!(format_topic_id(&[0xff; 16]), "_____________________w");
        assert_eq!(format_topic_id(&[0; 16]).len(), 22);
    }

    #[test]
    fn descriptions_are_sorted_and_keep_leaderless_partitions() {
        let topic = v1::TopicDescription {
            name: "orders".to_owned(),
            topic_id: vec![0; 16],
            configs: HashMap::from([
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "1".to_owned()),
            ]),
            partitions: vec![
                v1::PartitionDescription {
                    partition_index: 1,
                    leader: -1,
                    leader_epoch: 3,
                    replicas: vec![2, 1],
                    isr: vec![],
                    ..Default::default()
                },
                v1::PartitionDescription {
                    partition_index: 0,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let details = details(topic);
        assert_eq!(details.topic_id, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(details.configs.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(details.partitions[0].partition, 0);
        assert_eq!(details.partitions[1].leader, -1);
    }

    #[test]
    fn per_topic_errors_read_as_one_line() {
        assert_eq!(
            topic_error(codes::TOPIC_ALREADY_EXISTS, "", "create", "orders").to_string(),
            "topic 'orders' already exists"
        );
        assert_eq!(
            topic_error(
                38,
                "replication factor 3 is larger than the number of available brokers (1)",
                "create",
                "t"
            )
            .to_string(),
            "replication factor 3 is larger than the number of available brokers (1)"
        );
        assert_eq!(
            topic_error(40, "", "create", "t").to_string(),
            "cannot create topic 't': INVALID_CONFIG"
        );
    }
}
