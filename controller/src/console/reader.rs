//! `KafkaReader`: the console's read requests to brokers, addressed from the metadata image (the
//! endpoint of `--console-kafka-listener`, else each broker's first) rather than from a bootstrap
//! list, and routed to the leaders the image names.
//!
//! What must stay true: only read requests are sent; requests go only to active brokers (a fenced
//! broker's port may belong to nobody, and waiting on it would slow every page); a broker that fails
//! is reported in the answer and the others' answers are still used.

use std::collections::BTreeMap;

use bytes::Bytes;
use chronik_kafka_client::admin::{ListedGroup, LogDir, PartitionOffset};
use chronik_kafka_client::fetch::{
    fetch_request, FetchPosition, EARLIEST_TIMESTAMP, FETCH_BY_NAME_MAX_VERSION, FETCH_VERSIONS,
    LATEST_TIMESTAMP,
};
use chronik_kafka_client::records::decode_batches;
use chronik_kafka_client::{error_name, join_host_port, KafkaAdmin, KafkaError};
use kafka_protocol::records::Record;

use super::{new_admin, ConsoleConfig};
use crate::state::MetadataImage;

/// How many bytes one Fetch of the message browser may return.
const FETCH_MAX_BYTES: i32 = 1024 * 1024;
/// How many Fetch requests one look at a partition's latest records may take.
const MAX_FETCHES: usize = 16;

/// The console's connections to brokers.
pub struct KafkaReader {
    admin: KafkaAdmin,
    listener: Option<String>,
}

/// A partition's offsets on its leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionOffsets {
    pub log_start_offset: Option<i64>,
    pub high_watermark: Option<i64>,
}

/// The latest records of one partition.
#[derive(Debug)]
pub struct LatestRecords {
    pub leader: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// In offset order, at most the number asked for, ending just below the high watermark.
    pub records: Vec<Record>,
}

impl KafkaReader {
    pub fn new(config: &ConsoleConfig) -> Self {
        KafkaReader {
            admin: new_admin(config),
            listener: config.listener.clone(),
        }
    }

    /// Learns where every broker of `image` listens; returns the active ones, ascending.
    pub fn learn(&mut self, image: &MetadataImage) -> Vec<i32> {
        let mut active = Vec::new();
        for broker in image.brokers.values() {
            let Some(endpoint) = broker.endpoint(self.listener.as_deref()) else {
                continue;
            };
            self.admin.pool().learn(
                broker.broker_id,
                join_host_port(&endpoint.host, i32::from(endpoint.port)),
            );
            if broker.is_active() {
                active.push(broker.broker_id);
            }
        }
        active
    }

    /// The log start offsets and high watermarks of `topic`'s partitions, from their leaders as
    /// `image` names them. A partition whose leader did not answer is left out; the errors met are
    /// returned beside.
    pub async fn offsets(
        &mut self,
        image: &MetadataImage,
        topic: &str,
    ) -> (BTreeMap<i32, PartitionOffsets>, Vec<String>) {
        let mut offsets: BTreeMap<i32, PartitionOffsets> = BTreeMap::new();
        let mut errors = Vec::new();
        let Some(topic_image) = image.topic_by_name(topic) else {
            return (offsets, errors);
        };
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (index, partition) in topic_image.partitions.iter().enumerate() {
            if partition.has_leader() && image.is_active_broker(partition.leader) {
                by_leader
                    .entry(partition.leader)
                    .or_default()
                    .push(index as i32);
            }
        }
        for (leader, partitions) in by_leader {
            for timestamp in [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP] {
                match self
                    .admin
                    .list_offsets(leader, topic, &partitions, timestamp)
                    .await
                {
                    Ok(answers) => {
                        for (partition, answer) in answers {
                            let PartitionOffset::Offset(offset) = answer else {
                                continue;
                            };
                            let entry = offsets.entry(partition).or_default();
                            if timestamp == EARLIEST_TIMESTAMP {
                                entry.log_start_offset = Some(offset);
                            } else {
                                entry.high_watermark = Some(offset);
                            }
                        }
                    }
                    Err(error) => {
                        errors.push(format!("broker {leader}: {error}"));
                        break;
                    }
                }
            }
        }
        (offsets, errors)
    }

    /// DescribeLogDirs on `broker` for `topics` (every partition it holds when `None`).
    pub async fn log_dirs(
        &mut self,
        broker: i32,
        topics: Option<&BTreeMap<String, Vec<i32>>>,
    ) -> Result<Vec<LogDir>, KafkaError> {
        self.admin.describe_log_dirs(broker, topics).await
    }

    /// ListGroups on each of `brokers`: the groups each coordinates, with the coordinator's id.
    pub async fn groups(&mut self, brokers: &[i32]) -> (Vec<(i32, ListedGroup)>, Vec<String>) {
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        for &broker in brokers {
            match self.admin.list_groups(broker).await {
                Ok(listed) => groups.extend(listed.into_iter().map(|g| (broker, g))),
                Err(error) => errors.push(format!("broker {broker}: {error}")),
            }
        }
        groups.sort_by(|a, b| a.1.group_id.cmp(&b.1.group_id));
        (groups, errors)
    }

    /// The admin client, for the group requests that go to a coordinator.
    pub fn admin(&mut self) -> &mut KafkaAdmin {
        &mut self.admin
    }

    /// The last `limit` records of a partition (fewer when it holds fewer), read from its leader.
    pub async fn latest_records(
        &mut self,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
        limit: i64,
    ) -> Result<LatestRecords, String> {
        let topic_image = image
            .topic_by_name(topic)
            .ok_or_else(|| format!("no topic '{topic}'"))?;
        let registration = usize::try_from(partition)
            .ok()
            .and_then(|p| topic_image.partitions.get(p))
            .ok_or_else(|| format!("topic '{topic}' has no partition {partition}"))?;
        if !registration.has_leader() {
            return Err(format!("{topic}-{partition} has no leader"));
        }
        let leader = registration.leader;
        let mut bounds = [0i64; 2];
        for (slot, timestamp) in [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP]
            .into_iter()
            .enumerate()
        {
            let answers = self
                .admin
                .list_offsets(leader, topic, &[partition], timestamp)
                .await
                .map_err(|e| e.to_string())?;
            bounds[slot] = match answers.get(&partition) {
                Some(PartitionOffset::Offset(offset)) => *offset,
                Some(PartitionOffset::Error(code)) => {
                    return Err(format!(
                        "ListOffsets of {topic}-{partition} on broker {leader}: {}",
                        error_name(*code)
                    ))
                }
                None => {
                    return Err(format!(
                        "broker {leader} did not answer for {topic}-{partition}"
                    ))
                }
            };
        }
        let [log_start_offset, high_watermark] = bounds;
        let start = high_watermark.saturating_sub(limit).max(log_start_offset);
        let topic_id = topic_image.id;
        let max_version = if topic_id.is_nil() {
            FETCH_BY_NAME_MAX_VERSION
        } else {
            FETCH_VERSIONS.1
        };
        let mut records = Vec::new();
        let mut next = start;
        for _ in 0..MAX_FETCHES {
            if next >= high_watermark {
                break;
            }
            let position = FetchPosition {
                partition,
                leader_epoch: registration.leader_epoch,
                offset: next,
            };
            let (_, response) = self
                .admin
                .pool()
                .call(leader, FETCH_VERSIONS.0..=max_version, |version| {
                    fetch_request(topic, topic_id, version, [position], 0, FETCH_MAX_BYTES)
                })
                .await
                .map_err(|e| e.to_string())?;
            if response.error_code != 0 {
                return Err(format!("Fetch: {}", error_name(response.error_code)));
            }
            let Some(data) = response
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition)
            else {
                return Err(format!(
                    "broker {leader} did not answer for {topic}-{partition}"
                ));
            };
            if data.error_code != 0 {
                return Err(format!(
                    "Fetch of {topic}-{partition} on broker {leader}: {}",
                    error_name(data.error_code)
                ));
            }
            let bytes = data.records.clone().unwrap_or_else(Bytes::new);
            let decoded = decode_batches(&bytes)?;
            let Some(after) = decoded.next_offset.filter(|&after| after > next) else {
                break;
            };
            records.extend(
                decoded
                    .records
                    .into_iter()
                    .filter(|r| r.offset >= start && r.offset < high_watermark),
            );
            next = after;
        }
        Ok(LatestRecords {
            leader,
            log_start_offset,
            high_watermark,
            records,
        })
    }
}
