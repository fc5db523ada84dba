//! `topic create|list|describe|delete|alter-config`. Each function sends one admin request and turns the
//! reply into a serializable struct; a per-topic Kafka error code becomes a [`CliError`] carrying the
//! controller's own message. Topic ids are shown as Kafka shows them: the 16 bytes in URL-safe base64
//! without padding.
//!
//! `topic describe` also asks each partition's leader (all leaders at once) for the partition's log
//! start offset and high watermark (ListOffsets EARLIEST and LATEST) and the size of its log
//! (DescribeLogDirs). Those figures are extras: one a leader cannot give stays unknown with a note
//! saying why, and never fails the command, whose job is the controllers' description (scripts poll
//! it while brokers are down); `--metadata-only` asks no broker at all.

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
use crate::cmd::broker::{live_addresses, on_each};
use crate::error::{codes, CliError};
use crate::kafka::admin::{LogDir, PartitionOffset};
use crate::kafka::{error_name, KafkaError};

/// The partition count or replication factor asking for the cluster default.
const CLUSTER_DEFAULT: i32 = -1;
/// ListOffsets timestamps for the log start offset and the high watermark.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;

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
    /// Why some partition figures from the leaders are unknown.
    pub notes: Vec<String>,
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
    /// The log start offset on the leader; `None` when not asked or unknown.
    pub log_start_offset: Option<i64>,
    /// The high watermark on the leader (the offset a consumer reads up to); `None` when not asked
    /// or unknown.
    pub high_watermark: Option<i64>,
    /// Bytes of the leader's log of the partition; `None` when not asked or unknown.
    pub size_bytes: Option<i64>,
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

/// `topic describe`: [`describe`], then unless `metadata_only` each partition's log start offset,
/// high watermark and size as its leader reports them (see the module docs).
pub async fn describe_with_figures(
    client: &ControllerClient,
    name: &str,
    metadata_only: bool,
) -> Result<TopicDetails, CliError> {
    let mut details = describe(client, name).await?;
    if !metadata_only {
        add_leader_figures(client, &mut details).await;
    }
    Ok(details)
}

/// What one leader answered: the offsets, and its log directories (asked last, failing alone).
type LeaderFigures = (
    BTreeMap<i32, PartitionOffset>,
    BTreeMap<i32, PartitionOffset>,
    Result<Vec<LogDir>, KafkaError>,
);

async fn add_leader_figures(client: &ControllerClient, details: &mut TopicDetails) {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in details.partitions.iter().filter(|p| p.leader >= 0) {
        by_leader.entry(p.leader).or_default().push(p.partition);
    }
    if by_leader.is_empty() {
        return;
    }
    let live = match live_addresses(client).await {
        Ok(live) => live,
        Err(error) => {
            details
                .notes
                .push(format!("no offsets or sizes from the brokers: {error}"));
            return;
        }
    };
    let mut leaders = BTreeMap::new();
    for (leader, partitions) in &by_leader {
        match live.get(leader) {
            Some(address) => {
                leaders.insert(*leader, address.clone());
            }
            None => details.notes.push(format!(
                "partition(s) {} are led by broker {leader}, which is not live: no offsets or sizes",
                join(partitions)
            )),
        }
    }
    let topic = details.name.as_str();
    let by_leader = &by_leader;
    let answers = on_each(
        &leaders,
        client.request_timeout(),
        |leader, mut admin| async move {
            let partitions = by_leader.get(&leader).map_or(&[][..], Vec::as_slice);
            let starts = admin
                .list_offsets(leader, topic, partitions, EARLIEST_TIMESTAMP)
                .await?;
            let ends = admin
                .list_offsets(leader, topic, partitions, LATEST_TIMESTAMP)
                .await?;
            let wanted = BTreeMap::from([(topic.to_owned(), partitions.to_vec())]);
            let dirs = admin.describe_log_dirs(leader, Some(&wanted)).await;
            Ok::<LeaderFigures, KafkaError>((starts, ends, dirs))
        },
    )
    .await;
    for (leader, answer) in answers {
        apply_leader_figures(details, leader, answer);
    }
}

/// Fills in the partitions `leader` leads from its answer, with a note for whatever is missing.
pub fn apply_leader_figures(
    details: &mut TopicDetails,
    leader: i32,
    answer: Result<LeaderFigures, KafkaError>,
) {
    let (starts, ends, dirs) = match answer {
        Ok(figures) => figures,
        Err(error) => {
            details.notes.push(format!(
                "broker {leader} (leader) did not answer: no offsets or sizes for its partitions: \
                 {error}"
            ));
            return;
        }
    };
    let mut sizes = BTreeMap::new();
    match dirs {
        Ok(dirs) => {
            for dir in dirs {
                if dir.error_code != 0 {
                    details.notes.push(format!(
                        "broker {leader}: log directory {} is {}",
                        dir.path,
                        error_name(dir.error_code)
                    ));
                }
                for replica in dir.replicas.iter().filter(|r| r.topic == details.name) {
                    sizes.insert(replica.partition, replica.size_bytes);
                }
            }
        }
        Err(error) => details
            .notes
            .push(format!("broker {leader} gave no partition sizes: {error}")),
    }
    let mut offset_errors: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in details.partitions.iter_mut().filter(|p| p.leader == leader) {
        let mut known = |offsets: &BTreeMap<i32, PartitionOffset>| match offsets.get(&p.partition) {
            Some(PartitionOffset::Offset(offset)) => Some(*offset),
            Some(PartitionOffset::Error(code)) => {
                offset_errors
                    .entry(error_name(*code))
                    .or_default()
                    .push(p.partition);
                None
            }
            None => None,
        };
        p.log_start_offset = known(&starts);
        p.high_watermark = known(&ends);
        p.size_bytes = sizes.get(&p.partition).copied();
    }
    for (error, mut partitions) in offset_errors {
        partitions.dedup();
        details.notes.push(format!(
            "broker {leader} answered ListOffsets of partition(s) {} with {error}",
            join(&partitions)
        ));
    }
}

fn join(partitions: &[i32]) -> String {
    partitions
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
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
            log_start_offset: None,
            high_watermark: None,
            size_bytes: None,
        })
        .collect();
    partitions.sort_by_key(|partition| partition.partition);
    TopicDetails {
        topic_id: format_topic_id(&topic.topic_id),
        name: topic.name,
        configs: sorted(topic.configs),
        partitions,
        notes: Vec::new(),
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

    fn three_partitions() -> TopicDetails {
        let partition = |index: i32, leader: i32| PartitionStatus {
            partition: index,
            leader,
            leader_epoch: 0,
            replicas: vec![leader],
            isr: vec![leader],
            log_start_offset: None,
            high_watermark: None,
            size_bytes: None,
        };
        TopicDetails {
            name: "orders".to_owned(),
            topic_id: String::new(),
            configs: BTreeMap::new(),
            partitions: vec![partition(0, 1), partition(1, 1), partition(2, 2)],
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_leaders_figures_fill_its_partitions_and_gaps_get_notes() {
        use crate::kafka::admin::LogDirReplica;

        let mut details = three_partitions();
        let starts = BTreeMap::from([
            (0, PartitionOffset::Offset(5)),
            (1, PartitionOffset::Error(6)),
        ]);
        let ends = BTreeMap::from([
            (0, PartitionOffset::Offset(40)),
            (1, PartitionOffset::Error(6)),
        ]);
        let dirs = vec![LogDir {
            path: "/data".to_owned(),
            error_code: 0,
            total_bytes: Some(100),
            usable_bytes: Some(50),
            replicas: vec![
                LogDirReplica {
                    topic: "orders".to_owned(),
                    partition: 0,
                    size_bytes: 4_096,
                    offset_lag: 0,
                },
                LogDirReplica {
                    topic: "other".to_owned(),
                    partition: 1,
                    size_bytes: 1,
                    offset_lag: 0,
                },
            ],
        }];
        apply_leader_figures(&mut details, 1, Ok((starts, ends, Ok(dirs))));
        apply_leader_figures(
            &mut details,
            2,
            Err(KafkaError::Timeout {
                waiting_for: "waiting for a ListOffsets answer from b2".to_owned(),
            }),
        );
        let figures: Vec<(Option<i64>, Option<i64>, Option<i64>)> = details
            .partitions
            .iter()
            .map(|p| (p.log_start_offset, p.high_watermark, p.size_bytes))
            .collect();
        assert_eq!(
            figures,
            [
                (Some(5), Some(40), Some(4_096)),
                (None, None, None),
                (None, None, None)
            ]
        );
        assert_eq!(
            details.notes,
            [
                "broker 1 answered ListOffsets of partition(s) 1 with NOT_LEADER_OR_FOLLOWER",
                "broker 2 (leader) did not answer: no offsets or sizes for its partitions: timed \
                 out waiting for a ListOffsets answer from b2",
            ]
        );
    }

    #[test]
    fn an_offline_log_dir_of_the_leader_is_noted() {
        let mut details = three_partitions();
        let offsets = BTreeMap::from([(2, PartitionOffset::Offset(0))]);
        let offline = vec![LogDir {
            path: "/data".to_owned(),
            error_code: 56,
            total_bytes: None,
            usable_bytes: None,
            replicas: Vec::new(),
        }];
        apply_leader_figures(&mut details, 2, Ok((offsets.clone(), offsets, Ok(offline))));
        assert_eq!(details.partitions[2].high_watermark, Some(0));
        assert_eq!(details.partitions[2].size_bytes, None);
        assert_eq!(
            details.notes,
            ["broker 2: log directory /data is KAFKA_STORAGE_ERROR"]
        );
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
