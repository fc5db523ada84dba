//! The admin requests to brokers (consumer groups, ListOffsets, DeleteRecords, log directories),
//! each at the highest version the broker and this client share, built in the shape that version
//! needs (FindCoordinator v4+ and OffsetFetch v8+ are batched, for example), and answered as
//! plain data.
//!
//! What must stay true: group requests go to the group's coordinator, found with FindCoordinator
//! (key type 0) and cached per group; COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE and
//! NOT_COORDINATOR, and a coordinator that cannot be reached, are retried with a backoff until the
//! operation's retry deadline, after which the error names the last answer. Every other code is handed
//! back to the caller, which knows what it means for its command.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DescribeGroupsRequest, DescribeLogDirsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::time::Instant;
use tracing::debug;

use super::topic::is_leader_retriable;
use super::{error_name, join_host_port, BrokerPool, KafkaError};

/// FindCoordinator: v4+ batches keys (KIP-699); v6 only adds share groups.
const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=5;
/// ListGroups: v4 adds a state filter and v5 a type filter, neither used.
const LIST_GROUPS_VERSIONS: RangeInclusive<i16> = 0..=5;
const DESCRIBE_GROUPS_VERSIONS: RangeInclusive<i16> = 0..=5;
const CONSUMER_GROUP_DESCRIBE_VERSIONS: RangeInclusive<i16> = 0..=1;
/// OffsetFetch from v2, the first where a null topic list means "every committed partition".
const OFFSET_FETCH_VERSIONS: RangeInclusive<i16> = 2..=9;
const OFFSET_COMMIT_VERSIONS: RangeInclusive<i16> = 2..=9;
const DELETE_GROUPS_VERSIONS: RangeInclusive<i16> = 0..=2;
const OFFSET_DELETE_VERSIONS: RangeInclusive<i16> = 0..=0;
/// JoinGroup from v4 (MEMBER_ID_REQUIRED: a new member joins twice); v8 only adds a reason.
const JOIN_GROUP_VERSIONS: RangeInclusive<i16> = 4..=7;
const SYNC_GROUP_VERSIONS: RangeInclusive<i16> = 3..=5;
const HEARTBEAT_VERSIONS: RangeInclusive<i16> = 0..=4;
const LEAVE_GROUP_VERSIONS: RangeInclusive<i16> = 0..=4;
/// The protocol type of groups formed by Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
const LIST_OFFSETS_VERSIONS: RangeInclusive<i16> = 1..=10;
const DELETE_RECORDS_VERSIONS: RangeInclusive<i16> = 0..=2;
/// DescribeLogDirs: v3 adds a top-level error code, v4 the filesystem's total and usable bytes.
const DESCRIBE_LOG_DIRS_VERSIONS: RangeInclusive<i16> = 1..=4;

/// The FindCoordinator key type of a consumer group.
const GROUP_KEY_TYPE: i8 = 0;
/// The first wait between retries; each retry doubles it up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Kafka error codes the group admin requests meet.
pub mod codes {
    /// COORDINATOR_LOAD_IN_PROGRESS: the coordinator is still reading the group's partition.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// COORDINATOR_NOT_AVAILABLE: no coordinator yet (offsets topic missing or leaderless).
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// NOT_COORDINATOR: the broker asked does not coordinate this group (any more).
    pub const NOT_COORDINATOR: i16 = 16;
    /// ILLEGAL_GENERATION: a commit's generation is not the group's.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// UNKNOWN_MEMBER_ID: a commit's member is not in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// REBALANCE_IN_PROGRESS: the group is rebalancing.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// NON_EMPTY_GROUP: the group still has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// GROUP_ID_NOT_FOUND: no such group.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// MEMBER_ID_REQUIRED: a new member must join again with the member id it was given.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// GROUP_SUBSCRIBED_TO_TOPIC: a live member of the group consumes the topic.
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

/// Whether a code means "ask the coordinator again, possibly a different one".
pub fn is_coordinator_retriable(code: i16) -> bool {
    matches!(
        code,
        codes::COORDINATOR_LOAD_IN_PROGRESS
            | codes::COORDINATOR_NOT_AVAILABLE
            | codes::NOT_COORDINATOR
    )
}

/// One group as a broker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group id.
    pub group_id: String,
    /// The state (ListGroups v4+; empty from older versions).
    pub state: String,
    /// The protocol type, e.g. `consumer`; empty for a group that only has committed offsets.
    pub protocol_type: String,
    /// The group's type (ListGroups v5+, KIP-848): `classic` or `consumer`; empty from older
    /// versions.
    pub group_type: String,
}

/// A group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// The per-group error code (0 when described).
    pub error_code: i16,
    /// The state: Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// The protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The chosen protocol (for consumers, the assignor), e.g. `range`.
    pub protocol: String,
    /// The members.
    pub members: Vec<DescribedMember>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The static membership id, if any.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host as the coordinator saw it.
    pub client_host: String,
    /// The assignment bytes (consumer protocol for `consumer` groups).
    pub assignment: Bytes,
    /// The assignment of a member of a KIP-848 consumer group, which has no bytes: the coordinator
    /// assigns and says which partitions, by topic.
    pub assigned: Option<Vec<(String, Vec<i32>)>>,
}

/// What ListOffsets answered for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionOffset {
    /// The offset (-1 for a timestamp later than every record).
    Offset(i64),
    /// A per-partition error code.
    Error(i16),
}

/// What DeleteRecords answered for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionLowWatermark {
    /// The partition's low watermark: every live replica's log now starts at or after it.
    LowWatermark(i64),
    /// A per-partition error code.
    Error(i16),
}

/// One log directory of a broker, as DescribeLogDirs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    /// The directory's absolute path on the broker.
    pub path: String,
    /// 0, or why the directory could not be described (KAFKA_STORAGE_ERROR: it is offline).
    pub error_code: i16,
    /// Bytes of its filesystem (DescribeLogDirs v4+; `None` when the broker did not say).
    pub total_bytes: Option<i64>,
    /// Bytes of its filesystem an unprivileged user may still write (v4+).
    pub usable_bytes: Option<i64>,
    /// The partition replicas in it that were asked for, by topic and partition.
    pub replicas: Vec<LogDirReplica>,
}

/// One partition replica in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirReplica {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// Bytes of its log segments.
    pub size_bytes: i64,
    /// How far its log end is behind the high watermark (0 for a current replica).
    pub offset_lag: i64,
}

/// Group admin requests over a [`BrokerPool`].
#[derive(Debug)]
pub struct KafkaAdmin {
    pool: BrokerPool,
    retry_timeout: Duration,
    coordinators: HashMap<String, i32>,
}

impl KafkaAdmin {
    /// An admin client; `retry_timeout` bounds how long one operation keeps retrying retriable answers.
    pub fn new(pool: BrokerPool, retry_timeout: Duration) -> Self {
        KafkaAdmin {
            pool,
            retry_timeout,
            coordinators: HashMap::new(),
        }
    }

    /// The pool's address of `broker`, if known.
    pub fn address(&self, broker: i32) -> Option<&str> {
        self.pool.address(broker)
    }

    /// The connections under this admin, for requests it has no method for (Fetch) and for
    /// learning where brokers listen.
    pub fn pool(&mut self) -> &mut BrokerPool {
        &mut self.pool
    }

    /// ListGroups on one broker: the groups it coordinates.
    pub async fn list_groups(&mut self, broker: i32) -> Result<Vec<ListedGroup>, KafkaError> {
        let deadline = self.deadline();
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let (_, response) = self
                .pool
                .call(broker, LIST_GROUPS_VERSIONS, |_| {
                    ListGroupsRequest::default()
                })
                .await?;
            let code = response.error_code;
            if code == 0 {
                let mut groups: Vec<ListedGroup> = response
                    .groups
                    .into_iter()
                    .map(|group| ListedGroup {
                        group_id: group.group_id.to_string(),
                        state: group.group_state.to_string(),
                        protocol_type: group.protocol_type.to_string(),
                        group_type: group.group_type.to_string(),
                    })
                    .collect();
                groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
                return Ok(groups);
            }
            let what = || format!("ListGroups on broker {broker}");
            if code != codes::COORDINATOR_LOAD_IN_PROGRESS {
                return Err(KafkaError::broker(what(), code));
            }
            pause_until(&mut backoff, deadline, || {
                format!("waiting for {} (last answer: {})", what(), error_name(code))
            })
            .await?;
        }
    }

    /// DescribeGroups on the group's coordinator; returns the coordinator's id too.
    pub async fn describe_group(
        &mut self,
        group: &str,
    ) -> Result<(i32, DescribedGroup), KafkaError> {
        let (coordinator, _, response) = self
            .on_coordinator(
                group,
                DESCRIBE_GROUPS_VERSIONS,
                |_| DescribeGroupsRequest::default().with_groups(vec![group_id(group)]),
                |_, response| response.groups.first().map_or(0, |g| g.error_code),
            )
            .await?;
        let described = response
            .groups
            .into_iter()
            .find(|g| g.group_id.as_str() == group)
            .ok_or_else(|| missing("DescribeGroups", coordinator, group))?;
        let members: Vec<DescribedMember> = described
            .members
            .into_iter()
            .map(|member| DescribedMember {
                member_id: member.member_id.to_string(),
                group_instance_id: member.group_instance_id.map(|id| id.to_string()),
                client_id: member.client_id.to_string(),
                client_host: member.client_host.to_string(),
                assignment: member.member_assignment,
                assigned: None,
            })
            .collect();
        // DescribeGroups shows a KIP-848 consumer group as Dead (Kafka's answer below v6):
        // ConsumerGroupDescribe has it.
        let dead = described.group_state.eq_ignore_ascii_case("Dead");
        if described.error_code == 0 && dead && members.is_empty() {
            if let Some(consumer) = self.describe_consumer_group(group).await? {
                return Ok(consumer);
            }
        }
        Ok((
            coordinator,
            DescribedGroup {
                error_code: described.error_code,
                state: described.group_state.to_string(),
                protocol_type: described.protocol_type.to_string(),
                protocol: described.protocol_data.to_string(),
                members,
            },
        ))
    }

    /// ConsumerGroupDescribe on the group's coordinator, as a [`DescribedGroup`] (protocol type
    /// `consumer`, the assignor as protocol); `None` when the group is not a consumer group or the
    /// broker does not serve the API.
    async fn describe_consumer_group(
        &mut self,
        group: &str,
    ) -> Result<Option<(i32, DescribedGroup)>, KafkaError> {
        let outcome = self
            .on_coordinator(
                group,
                CONSUMER_GROUP_DESCRIBE_VERSIONS,
                |_| ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]),
                |_, response| response.groups.first().map_or(0, |g| g.error_code),
            )
            .await;
        let (coordinator, _, response) = match outcome {
            Ok(answer) => answer,
            Err(KafkaError::NotOffered { .. } | KafkaError::UnsupportedVersion { .. }) => {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        let Some(described) = response
            .groups
            .into_iter()
            .find(|g| g.group_id.as_str() == group && g.error_code == 0)
        else {
            return Ok(None);
        };
        let members = described
            .members
            .into_iter()
            .map(|member| DescribedMember {
                member_id: member.member_id.to_string(),
                group_instance_id: member.instance_id.map(|id| id.to_string()),
                client_id: member.client_id.to_string(),
                client_host: member.client_host.to_string(),
                assignment: Bytes::new(),
                assigned: Some(
                    member
                        .assignment
                        .topic_partitions
                        .into_iter()
                        .map(|t| (t.topic_name.to_string(), t.partitions))
                        .collect(),
                ),
            })
            .collect();
        Ok(Some((
            coordinator,
            DescribedGroup {
                error_code: 0,
                state: described.group_state.to_string(),
                protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
                protocol: described.assignor_name.to_string(),
                members,
            },
        )))
    }

    /// OffsetFetch of every committed partition of the group: `(topic, partition) → offset`.
    /// Partitions without a commit are left out.
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, KafkaError> {
        let (coordinator, version, response) = self
            .on_coordinator(
                group,
                OFFSET_FETCH_VERSIONS,
                |version| {
                    if version >= 8 {
                        OffsetFetchRequest::default().with_groups(vec![
                            OffsetFetchRequestGroup::default()
                                .with_group_id(group_id(group))
                                .with_topics(None),
                        ])
                    } else {
                        OffsetFetchRequest::default()
                            .with_group_id(group_id(group))
                            .with_topics(None)
                    }
                },
                |version, response| {
                    if version >= 8 {
                        response.groups.first().map_or(0, |g| g.error_code)
                    } else {
                        response.error_code
                    }
                },
            )
            .await?;
        let mut offsets = BTreeMap::new();
        let mut keep = |topic: &TopicName, partition: i32, offset: i64, code: i16| {
            if code != 0 {
                return Err(KafkaError::broker(
                    format!(
                        "OffsetFetch of {}-{partition} for group '{group}'",
                        topic.as_str()
                    ),
                    code,
                ));
            }
            if offset >= 0 {
                offsets.insert((topic.as_str().to_owned(), partition), offset);
            }
            Ok(())
        };
        if version >= 8 {
            let answer = response
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| missing("OffsetFetch", coordinator, group))?;
            for topic in &answer.topics {
                for p in &topic.partitions {
                    keep(
                        &topic.name,
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )?;
                }
            }
        } else {
            for topic in &response.topics {
                for p in &topic.partitions {
                    keep(
                        &topic.name,
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )?;
                }
            }
        }
        Ok(offsets)
    }

    /// A "simple" OffsetCommit (generation -1, no member id), which a coordinator accepts only for a
    /// group without members. Returns each partition's error code.
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, i16>, KafkaError> {
        self.commit_member_offsets(group, -1, "", topic, offsets)
            .await
    }

    /// OffsetCommit as member `member_id` of generation `generation` (-1 and "" for a "simple"
    /// commit). Returns each partition's error code.
    pub async fn commit_member_offsets(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, i16>, KafkaError> {
        let (_, _, response) = self
            .on_coordinator(
                group,
                OFFSET_COMMIT_VERSIONS,
                |_| {
                    OffsetCommitRequest::default()
                        .with_group_id(group_id(group))
                        .with_generation_id_or_member_epoch(generation)
                        .with_member_id(StrBytes::from_string(member_id.to_owned()))
                        .with_topics(vec![OffsetCommitRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                offsets
                                    .iter()
                                    .map(|(&partition, &offset)| {
                                        OffsetCommitRequestPartition::default()
                                            .with_partition_index(partition)
                                            .with_committed_offset(offset)
                                    })
                                    .collect(),
                            )])
                },
                // Coordinator errors are answered per partition; any partition's will do.
                |_, response| {
                    response
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.error_code)
                        .find(|code| is_coordinator_retriable(*code))
                        .unwrap_or(0)
                },
            )
            .await?;
        Ok(response
            .topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect())
    }

    /// DeleteGroups of one group; returns its error code (0 when deleted).
    pub async fn delete_group(&mut self, group: &str) -> Result<i16, KafkaError> {
        let (coordinator, _, response) = self
            .on_coordinator(
                group,
                DELETE_GROUPS_VERSIONS,
                |_| DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]),
                |_, response| response.results.first().map_or(0, |r| r.error_code),
            )
            .await?;
        response
            .results
            .iter()
            .find(|r| r.group_id.as_str() == group)
            .map(|r| r.error_code)
            .ok_or_else(|| missing("DeleteGroups", coordinator, group))
    }

    /// JoinGroup with the `consumer` protocol type and one protocol (`name`, `metadata`). The
    /// coordinator holds the answer until the rebalance completes, so `rebalance_timeout_ms` must
    /// fit in the request timeout.
    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocol: (&str, Bytes),
    ) -> Result<JoinGroupResponse, KafkaError> {
        let (_, _, response) = self
            .on_coordinator(
                group,
                JOIN_GROUP_VERSIONS,
                |_| {
                    JoinGroupRequest::default()
                        .with_group_id(group_id(group))
                        .with_session_timeout_ms(session_timeout_ms)
                        .with_rebalance_timeout_ms(rebalance_timeout_ms)
                        .with_member_id(StrBytes::from_string(member_id.to_owned()))
                        .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
                        .with_protocols(vec![JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_string(protocol.0.to_owned()))
                            .with_metadata(protocol.1.clone())])
                },
                |_, response| response.error_code,
            )
            .await?;
        Ok(response)
    }

    /// SyncGroup: the leader hands in `assignments` (member id → bytes), the others none; returns
    /// the error code and this member's assignment bytes.
    pub async fn sync_group(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        protocol_name: &str,
        assignments: &[(String, Bytes)],
    ) -> Result<(i16, Bytes), KafkaError> {
        let (_, _, response) = self
            .on_coordinator(
                group,
                SYNC_GROUP_VERSIONS,
                |_| {
                    SyncGroupRequest::default()
                        .with_group_id(group_id(group))
                        .with_generation_id(generation)
                        .with_member_id(StrBytes::from_string(member_id.to_owned()))
                        .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
                        .with_protocol_name(Some(StrBytes::from_string(protocol_name.to_owned())))
                        .with_assignments(
                            assignments
                                .iter()
                                .map(|(member, bytes)| {
                                    SyncGroupRequestAssignment::default()
                                        .with_member_id(StrBytes::from_string(member.clone()))
                                        .with_assignment(bytes.clone())
                                })
                                .collect(),
                        )
                },
                |_, response| response.error_code,
            )
            .await?;
        Ok((response.error_code, response.assignment))
    }

    /// Heartbeat of member `member_id` of `generation`; returns the error code (REBALANCE_IN_PROGRESS
    /// asks the member to join again).
    pub async fn heartbeat(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<i16, KafkaError> {
        let (_, _, response) = self
            .on_coordinator(
                group,
                HEARTBEAT_VERSIONS,
                |_| {
                    HeartbeatRequest::default()
                        .with_group_id(group_id(group))
                        .with_generation_id(generation)
                        .with_member_id(StrBytes::from_string(member_id.to_owned()))
                },
                |_, response| response.error_code,
            )
            .await?;
        Ok(response.error_code)
    }

    /// LeaveGroup of `member_id` (v3+ names it in the member list); returns the error code.
    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> Result<i16, KafkaError> {
        let (_, _, response) = self
            .on_coordinator(
                group,
                LEAVE_GROUP_VERSIONS,
                |version| {
                    let request = LeaveGroupRequest::default().with_group_id(group_id(group));
                    let member = StrBytes::from_string(member_id.to_owned());
                    if version >= 3 {
                        request.with_members(vec![MemberIdentity::default().with_member_id(member)])
                    } else {
                        request.with_member_id(member)
                    }
                },
                |_, response| response.error_code,
            )
            .await?;
        Ok(response.error_code)
    }

    /// [`offsets_from_leaders`] through this admin's connections.
    pub async fn offsets_from_leaders(
        &mut self,
        topic: &str,
        by_leader: BTreeMap<i32, Vec<i32>>,
        timestamp: i64,
        found: &mut BTreeMap<i32, i64>,
    ) -> Result<Option<String>, KafkaError> {
        offsets_from_leaders(&mut self.pool, topic, by_leader, timestamp, found).await
    }

    /// OffsetDelete of the group's committed offsets of `partitions` of `topic`. Returns the
    /// group-level error code (0, GROUP_ID_NOT_FOUND, ...) and each partition's code; partitions the
    /// answer leaves out are missing from the map.
    pub async fn delete_offsets(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(i16, BTreeMap<i32, i16>), KafkaError> {
        let (_, _, response) = self
            .on_coordinator(
                group,
                OFFSET_DELETE_VERSIONS,
                |_| {
                    OffsetDeleteRequest::default()
                        .with_group_id(group_id(group))
                        .with_topics(vec![OffsetDeleteRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|&partition| {
                                        OffsetDeleteRequestPartition::default()
                                            .with_partition_index(partition)
                                    })
                                    .collect(),
                            )])
                },
                |_, response| response.error_code,
            )
            .await?;
        let codes = response
            .topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        Ok((response.error_code, codes))
    }

    /// ListOffsets on `leader` for `partitions` of `topic` at `timestamp` (-2 earliest, -1 latest, or
    /// milliseconds since the epoch). Partitions the answer leaves out are missing from the map.
    pub async fn list_offsets(
        &mut self,
        leader: i32,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, PartitionOffset>, KafkaError> {
        list_offsets(&mut self.pool, leader, topic, partitions, timestamp).await
    }

    /// DeleteRecords on `leader` for `offsets` (partition → offset, -1 for its high watermark) of
    /// `topic`; the broker waits up to `wait` for the replicas to follow. Partitions the answer leaves
    /// out are missing from the map.
    pub async fn delete_records(
        &mut self,
        leader: i32,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
        wait: Duration,
    ) -> Result<BTreeMap<i32, PartitionLowWatermark>, KafkaError> {
        let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let (_, response) = self
            .pool
            .call(leader, DELETE_RECORDS_VERSIONS, |_| {
                DeleteRecordsRequest::default()
                    .with_timeout_ms(timeout_ms)
                    .with_topics(vec![DeleteRecordsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            offsets
                                .iter()
                                .map(|(&partition, &offset)| {
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(partition)
                                        .with_offset(offset)
                                })
                                .collect(),
                        )])
            })
            .await?;
        Ok(response
            .topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .map(|p| {
                let answer = if p.error_code == 0 {
                    PartitionLowWatermark::LowWatermark(p.low_watermark)
                } else {
                    PartitionLowWatermark::Error(p.error_code)
                };
                (p.partition_index, answer)
            })
            .collect())
    }

    /// DescribeLogDirs on `broker` for `topics` (topic → partitions), or for every partition it
    /// holds when `None`. Partitions the broker holds no replica of are left out of the answer.
    pub async fn describe_log_dirs(
        &mut self,
        broker: i32,
        topics: Option<&BTreeMap<String, Vec<i32>>>,
    ) -> Result<Vec<LogDir>, KafkaError> {
        let (_, response) = self
            .pool
            .call(broker, DESCRIBE_LOG_DIRS_VERSIONS, |_| {
                DescribeLogDirsRequest::default().with_topics(topics.map(|topics| {
                    topics
                        .iter()
                        .map(|(topic, partitions)| {
                            DescribableLogDirTopic::default()
                                .with_topic(topic_name(topic))
                                .with_partitions(partitions.clone())
                        })
                        .collect()
                }))
            })
            .await?;
        // Below v3 there is no top-level code; it decodes as 0.
        if response.error_code != 0 {
            return Err(KafkaError::broker(
                format!("DescribeLogDirs on broker {broker}"),
                response.error_code,
            ));
        }
        let known = |bytes: i64| (bytes >= 0).then_some(bytes);
        Ok(response
            .results
            .into_iter()
            .map(|dir| {
                let mut replicas: Vec<LogDirReplica> = dir
                    .topics
                    .iter()
                    .flat_map(|topic| {
                        topic.partitions.iter().map(|p| LogDirReplica {
                            topic: topic.name.to_string(),
                            partition: p.partition_index,
                            size_bytes: p.partition_size,
                            offset_lag: p.offset_lag,
                        })
                    })
                    .collect();
                replicas.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                LogDir {
                    path: dir.log_dir.to_string(),
                    error_code: dir.error_code,
                    total_bytes: known(dir.total_bytes),
                    usable_bytes: known(dir.usable_bytes),
                    replicas,
                }
            })
            .collect())
    }

    /// How long one request to a broker may take.
    pub fn request_timeout(&self) -> Duration {
        self.pool.request_timeout()
    }

    /// The retry deadline of an operation starting now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.retry_timeout
    }

    /// Sends a group request to the group's coordinator, finding it first and again after a
    /// coordinator error or a broken connection, until the retry deadline. `code_of` reads the
    /// group-level error code of an answer. Returns the coordinator, the version used and the answer.
    async fn on_coordinator<R: Request>(
        &mut self,
        group: &str,
        versions: RangeInclusive<i16>,
        build: impl Fn(i16) -> R,
        code_of: impl Fn(i16, &R::Response) -> i16,
    ) -> Result<(i32, i16, R::Response), KafkaError> {
        let deadline = self.deadline();
        let mut backoff = INITIAL_BACKOFF;
        let api = super::api_key::<R>();
        loop {
            let coordinator = self.coordinator(group, deadline).await?;
            let last = match self.pool.call(coordinator, versions.clone(), &build).await {
                Ok((version, response)) => {
                    let code = code_of(version, &response);
                    if !is_coordinator_retriable(code) {
                        return Ok((coordinator, version, response));
                    }
                    error_name(code)
                }
                Err(
                    error @ (KafkaError::Connect { .. }
                    | KafkaError::Io { .. }
                    | KafkaError::Timeout { .. }),
                ) => error.to_string(),
                Err(error) => return Err(error),
            };
            debug!(group, coordinator, %last, "retrying {api:?} after a coordinator error");
            self.coordinators.remove(group);
            pause_until(&mut backoff, deadline, || {
                format!("waiting for a {api:?} answer for group '{group}' from its coordinator (last answer: {last})")
            })
            .await?;
        }
    }

    /// The group's coordinator: cached, or found with FindCoordinator (retrying until `deadline`).
    async fn coordinator(&mut self, group: &str, deadline: Instant) -> Result<i32, KafkaError> {
        if let Some(&coordinator) = self.coordinators.get(group) {
            return Ok(coordinator);
        }
        let mut backoff = INITIAL_BACKOFF;
        let mut next = 0;
        loop {
            // Any broker can answer FindCoordinator; rotate so one dead broker does not stall it.
            let brokers = self.pool.broker_ids();
            let Some(&broker) = brokers.get(next % brokers.len().max(1)) else {
                return Err(KafkaError::UnknownBroker { broker_id: -1 });
            };
            next += 1;
            let last = match self.find_coordinator(broker, group).await {
                Ok(Ok((coordinator, address))) => {
                    self.pool.learn(coordinator, address);
                    self.coordinators.insert(group.to_owned(), coordinator);
                    return Ok(coordinator);
                }
                Ok(Err((code, message))) if is_coordinator_retriable(code) => {
                    format!("{}{message}", error_name(code))
                }
                Ok(Err((code, message))) => {
                    return Err(KafkaError::Broker {
                        what: format!("FindCoordinator of group '{group}'{message}"),
                        code,
                        name: error_name(code),
                    })
                }
                Err(
                    error @ (KafkaError::Connect { .. }
                    | KafkaError::Io { .. }
                    | KafkaError::Timeout { .. }),
                ) => error.to_string(),
                Err(error) => return Err(error),
            };
            pause_until(&mut backoff, deadline, || {
                format!("waiting for the coordinator of group '{group}' (last answer: {last})")
            })
            .await?;
        }
    }

    /// One FindCoordinator on `broker`: `(id, host:port)` or `(code, ": message")`.
    async fn find_coordinator(
        &mut self,
        broker: i32,
        group: &str,
    ) -> Result<Result<(i32, String), (i16, String)>, KafkaError> {
        let (version, response) = self
            .pool
            .call(broker, FIND_COORDINATOR_VERSIONS, |version| {
                let request = FindCoordinatorRequest::default().with_key_type(GROUP_KEY_TYPE);
                if version >= 4 {
                    request.with_coordinator_keys(vec![StrBytes::from_string(group.to_owned())])
                } else {
                    request.with_key(StrBytes::from_string(group.to_owned()))
                }
            })
            .await?;
        let (code, message, node, host, port) = if version >= 4 {
            let Some(answer) = response.coordinators.into_iter().next() else {
                return Err(missing("FindCoordinator", broker, group));
            };
            (
                answer.error_code,
                answer.error_message,
                answer.node_id,
                answer.host,
                answer.port,
            )
        } else {
            (
                response.error_code,
                response.error_message,
                response.node_id,
                response.host,
                response.port,
            )
        };
        if code != 0 {
            let message = message
                .filter(|m| !m.trim().is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Ok(Err((code, message)));
        }
        Ok(Ok((node.0, join_host_port(&host, port))))
    }
}

/// ListOffsets on `leader` for `partitions` of `topic` at `timestamp` (-2 earliest, -1 latest, or
/// milliseconds since the epoch). Partitions the answer leaves out are missing from the map.
pub async fn list_offsets(
    pool: &mut BrokerPool,
    leader: i32,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, PartitionOffset>, KafkaError> {
    let timeout_ms = i32::try_from(pool.request_timeout().as_millis()).unwrap_or(i32::MAX);
    let (_, response) = pool
        .call(leader, LIST_OFFSETS_VERSIONS, |_| {
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_timeout_ms(timeout_ms)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&partition| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(partition)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )])
        })
        .await?;
    Ok(response
        .topics
        .iter()
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let answer = if p.error_code == 0 {
                PartitionOffset::Offset(p.offset)
            } else {
                PartitionOffset::Error(p.error_code)
            };
            (p.partition_index, answer)
        })
        .collect())
}

/// ListOffsets for `timestamp` on each leader of `by_leader` (leader → partitions of `topic`), adding
/// the offsets answered to `found`. Returns the last trouble a fresh leader can fix (a leader change,
/// a broker that cannot be reached), for the caller to retry after a fresh look at the leaders; any
/// other error code is an error.
pub async fn offsets_from_leaders(
    pool: &mut BrokerPool,
    topic: &str,
    by_leader: BTreeMap<i32, Vec<i32>>,
    timestamp: i64,
    found: &mut BTreeMap<i32, i64>,
) -> Result<Option<String>, KafkaError> {
    let mut trouble = None;
    for (leader, partitions) in by_leader {
        let answers = match list_offsets(pool, leader, topic, &partitions, timestamp).await {
            Ok(answers) => answers,
            Err(error) if error.is_unreachable() => {
                trouble = Some(error.to_string());
                continue;
            }
            Err(error) => return Err(error),
        };
        for (partition, answer) in answers {
            match answer {
                PartitionOffset::Offset(offset) => {
                    found.insert(partition, offset);
                }
                PartitionOffset::Error(code) if is_leader_retriable(code) => {
                    trouble = Some(format!("partition {partition}: {}", error_name(code)));
                }
                PartitionOffset::Error(code) => {
                    return Err(KafkaError::broker(
                        format!("ListOffsets of partition {partition} of '{topic}'"),
                        code,
                    ))
                }
            }
        }
    }
    Ok(trouble)
}

/// Sleeps the current backoff (doubling it, capped) unless that would pass `deadline`, in which case
/// the wait ends with a timeout worded by `waiting_for`.
pub async fn pause_until(
    backoff: &mut Duration,
    deadline: Instant,
    waiting_for: impl FnOnce() -> String,
) -> Result<(), KafkaError> {
    let now = Instant::now();
    if now + *backoff > deadline {
        return Err(KafkaError::Timeout {
            waiting_for: waiting_for(),
        });
    }
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    Ok(())
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn missing(api: &str, broker: i32, group: &str) -> KafkaError {
    KafkaError::UnexpectedAnswer(format!(
        "the {api} answer of broker {broker} has no entry for group '{group}'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_coordinator_errors_are_retried() {
        for code in [14, 15, 16] {
            assert!(is_coordinator_retriable(code), "{code}");
        }
        for code in [0, 22, 25, 27, 68, 69] {
            assert!(!is_coordinator_retriable(code), "{code}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_back_off_and_end_at_the_deadline() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(1_000);
        let mut backoff = INITIAL_BACKOFF;
        let mut pauses = 0;
        let error = loop {
            match pause_until(&mut backoff, deadline, || "waiting for a test".to_owned()).await {
                Ok(()) => pauses += 1,
                Err(error) => break error,
            }
        };
        // 100 + 200 + 400 ms fit in one second; the next 800 ms would not.
        assert_eq!(pauses, 3);
        assert_eq!(Instant::now() - start, Duration::from_millis(700));
        assert_eq!(error.to_string(), "timed out waiting for a test");
    }
}
