//! `group list|describe|reset-offsets|delete`: consumer groups, which live on the brokers (each
//! group's coordinator), not on the controllers. The controllers only say which brokers are live and
//! where they listen, and which broker leads each partition; everything else is the Kafka protocol
//! through [`KafkaAdmin`].
//!
//! What must stay true: `reset-offsets` never commits while the group has members (a live consumer
//! would overwrite the reset with its next commit, or the reset would move offsets under its feet);
//! the coordinator refuses such a "simple" commit too, and that refusal reads as the same error. A
//! reset target is always clamped into the partition's `[log start, log end]`, so a reset can never
//! make a consumer start at an offset that does not exist. Nothing here prints: each command returns
//! a report for `output`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::bench::PartitionSelection;
use crate::client::ControllerClient;
use crate::cmd::broker::live_addresses;
use crate::cmd::topic;
use crate::error::CliError;
use crate::kafka::admin::{
    codes, pause_until, DescribedGroup, CONSUMER_PROTOCOL_TYPE, INITIAL_BACKOFF,
};
use crate::kafka::consumer_protocol::{decode_assignment, TopicPartitions};
use crate::kafka::{error_name, BrokerPool, KafkaAdmin};

/// ListOffsets timestamps with a special meaning.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;

/// `group list`: every group of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupList {
    /// The groups, by id.
    pub groups: Vec<GroupSummary>,
    /// Brokers that did not answer ListGroups: their groups are missing from the list.
    pub failed_brokers: Vec<BrokerFailure>,
}

/// One line of `group list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    /// The group id.
    pub group_id: String,
    /// The group state; empty when the broker's ListGroups version has none.
    pub state: String,
    /// The protocol type, e.g. `consumer`; empty for a group that only has committed offsets.
    pub protocol_type: String,
    /// `classic` or `consumer` (KIP-848's protocol); empty when the broker's ListGroups version
    /// has none.
    pub group_type: String,
    /// The broker coordinating the group (the one that listed it).
    pub coordinator: i32,
}

/// A broker that could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerFailure {
    /// The broker id.
    pub broker_id: i32,
    /// Why it could not be asked.
    pub error: String,
}

/// `group describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDetails {
    /// The group id.
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// The protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The chosen protocol; for consumers the assignor, e.g. `range`.
    pub protocol: String,
    /// The coordinator's broker id.
    pub coordinator: i32,
    /// The coordinator's address.
    pub coordinator_address: String,
    /// The members, by member id.
    pub members: Vec<MemberDetails>,
    /// Every partition with a committed offset or an owner, by topic and partition.
    pub partitions: Vec<PartitionLag>,
    /// Things the figures above could not cover (a deleted topic, an undecodable assignment).
    pub notes: Vec<String>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberDetails {
    /// The member id.
    pub member_id: String,
    /// The static membership id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host as the coordinator saw it.
    pub host: String,
    /// The assigned partitions, by topic.
    pub assignment: Vec<TopicPartitions>,
    /// Why the assignment bytes could not be decoded, if they could not.
    pub assignment_error: Option<String>,
}

/// One partition of a group: where it is and how far behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The committed offset; `None` when the group never committed one.
    pub committed_offset: Option<i64>,
    /// The log end offset a consumer can reach (the high watermark); `None` when unknown.
    pub log_end_offset: Option<i64>,
    /// `log_end_offset - committed_offset` (at least 0); `None` when either is unknown.
    pub lag: Option<i64>,
    /// The member the partition is assigned to, if any.
    pub member_id: Option<String>,
}

/// Where `group reset-offsets` moves the committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "to", content = "value")]
pub enum ResetTarget {
    /// The log start offset.
    Earliest,
    /// The log end offset (the high watermark).
    Latest,
    /// This offset, clamped into `[log start, log end]`.
    Offset(i64),
    /// The first offset whose record timestamp is at or after this time (milliseconds since the
    /// epoch); the log end when no record is that recent.
    Datetime(i64),
}

impl ResetTarget {
    /// The target in words, for the report.
    pub fn describe(&self) -> String {
        match self {
            ResetTarget::Earliest => "the earliest offset".to_owned(),
            ResetTarget::Latest => "the latest offset".to_owned(),
            ResetTarget::Offset(offset) => format!("offset {offset}"),
            ResetTarget::Datetime(ms) => format!("the first offset at or after {ms} ms"),
        }
    }
}

/// What `group reset-offsets` did, or would do with `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffsetReset {
    /// The group id.
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// The requested target.
    pub target: ResetTarget,
    /// True when nothing was committed.
    pub dry_run: bool,
    /// Every partition reset, by index.
    pub partitions: Vec<PartitionReset>,
}

/// One partition of a reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReset {
    /// The partition index.
    pub partition: i32,
    /// The committed offset before; `None` when there was none.
    pub previous_offset: Option<i64>,
    /// The committed offset after.
    pub new_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// The partition's log end offset (the high watermark).
    pub log_end_offset: i64,
}

/// What `group offset-delete` did, per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffsetDeletion {
    /// The group id.
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// Every partition asked for, by index.
    pub partitions: Vec<PartitionOffsetDeletion>,
}

/// One partition of `group offset-delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionOffsetDeletion {
    /// The partition index.
    pub partition: i32,
    /// Whether its committed offset is gone (a partition without one counts as deleted, as in Kafka).
    pub deleted: bool,
    /// The Kafka error name when it was refused, e.g. `GROUP_SUBSCRIBED_TO_TOPIC`.
    pub error: Option<String>,
    /// The Kafka error code (0 when deleted).
    #[serde(skip)]
    pub error_code: i16,
}

impl OffsetDeletion {
    /// The error the exit status reports when some partitions were refused.
    pub fn failure(&self) -> Option<CliError> {
        let refused: Vec<&PartitionOffsetDeletion> =
            self.partitions.iter().filter(|p| !p.deleted).collect();
        let first = refused.first()?;
        let name = first.error.clone().unwrap_or_default();
        let code = first.error_code;
        Some(group_error(
            code,
            format!(
                "the offsets of {} of {} partition(s) of '{}' were not deleted for group '{}' ({name}{})",
                refused.len(),
                self.partitions.len(),
                self.topic,
                self.group_id,
                if code == codes::GROUP_SUBSCRIBED_TO_TOPIC {
                    ": its members consume the topic; stop them first"
                } else {
                    ""
                }
            ),
        ))
    }
}

/// A group that was just deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedGroup {
    /// The group id.
    pub group_id: String,
}

/// What a reset needs to know about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetBounds {
    /// The log start offset.
    pub log_start: i64,
    /// The log end offset (the high watermark).
    pub log_end: i64,
    /// For a datetime target: the offset ListOffsets gave for the time; `None` when no record is
    /// that recent (Kafka answers -1).
    pub at_time: Option<i64>,
}

/// The offset a reset commits for a partition with these bounds.
pub fn plan_offset(target: ResetTarget, bounds: OffsetBounds) -> i64 {
    let clamp = |offset: i64| offset.clamp(bounds.log_start, bounds.log_end.max(bounds.log_start));
    match target {
        ResetTarget::Earliest => bounds.log_start,
        ResetTarget::Latest => bounds.log_end,
        ResetTarget::Offset(offset) => clamp(offset),
        ResetTarget::Datetime(_) => bounds.at_time.map_or(bounds.log_end, clamp),
    }
}

/// Whether a group in `state` has no members, so its offsets may be reset.
pub fn is_inactive(state: &str) -> bool {
    state.eq_ignore_ascii_case("Empty") || state.eq_ignore_ascii_case("Dead")
}

/// Connects to the live (not fenced) brokers the controllers list, known by address; a coordinator
/// elsewhere is learnt from FindCoordinator. Returns the live ids too.
pub async fn connect(
    client: &ControllerClient,
    retry_timeout_ms: u64,
) -> Result<(KafkaAdmin, Vec<i32>), CliError> {
    let addresses = live_addresses(client).await?;
    let live: Vec<i32> = addresses.keys().copied().collect();
    let pool = BrokerPool::new(addresses, client.request_timeout());
    let admin = KafkaAdmin::new(pool, std::time::Duration::from_millis(retry_timeout_ms));
    Ok((admin, live))
}

/// `group list`: ListGroups on every live broker, merged by group id.
pub async fn list(admin: &mut KafkaAdmin, brokers: &[i32]) -> Result<GroupList, CliError> {
    let mut groups: BTreeMap<String, GroupSummary> = BTreeMap::new();
    let mut failed_brokers = Vec::new();
    for &broker in brokers {
        match admin.list_groups(broker).await {
            Ok(listed) => {
                for group in listed {
                    // While a coordinator moves, two brokers may list a group; keep the first.
                    groups
                        .entry(group.group_id.clone())
                        .or_insert(GroupSummary {
                            group_id: group.group_id,
                            state: group.state,
                            protocol_type: group.protocol_type,
                            group_type: group.group_type,
                            coordinator: broker,
                        });
                }
            }
            Err(error) => failed_brokers.push(BrokerFailure {
                broker_id: broker,
                error: error.to_string(),
            }),
        }
    }
    Ok(GroupList {
        groups: groups.into_values().collect(),
        failed_brokers,
    })
}

/// The error of `group list` that could not ask every broker (printed after the partial list).
pub fn list_failure(list: &GroupList) -> Option<CliError> {
    if list.failed_brokers.is_empty() {
        return None;
    }
    let brokers: Vec<String> = list
        .failed_brokers
        .iter()
        .map(|f| f.broker_id.to_string())
        .collect();
    Some(CliError::Incomplete(format!(
        "broker(s) {} did not answer ListGroups; the groups they coordinate are missing",
        brokers.join(",")
    )))
}

/// `group describe`.
pub async fn describe(
    client: &ControllerClient,
    admin: &mut KafkaAdmin,
    group: &str,
) -> Result<GroupDetails, CliError> {
    let (coordinator, described) = described_group(admin, group).await?;
    let committed = admin.committed_offsets(group).await?;
    if is_absent(&described, &committed) {
        return Err(group_not_found(group));
    }
    let mut notes = Vec::new();
    let members = members_of(&described, &mut notes);
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    for member in &members {
        for topic in &member.assignment {
            for &partition in &topic.partitions {
                owners.insert((topic.topic.clone(), partition), member.member_id.clone());
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &keys {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    let mut log_ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, partitions) in &by_topic {
        match offsets_at(client, admin, topic, partitions, LATEST_TIMESTAMP).await {
            Ok(offsets) => {
                log_ends.extend(offsets.into_iter().map(|(p, o)| ((topic.clone(), p), o)));
            }
            Err(error) => notes.push(format!("no log end offsets for topic '{topic}': {error}")),
        }
    }
    let partitions = keys
        .into_iter()
        .map(|key| {
            let committed_offset = committed.get(&key).copied();
            let log_end_offset = log_ends.get(&key).copied();
            PartitionLag {
                lag: lag(committed_offset, log_end_offset),
                member_id: owners.get(&key).cloned(),
                topic: key.0,
                partition: key.1,
                committed_offset,
                log_end_offset,
            }
        })
        .collect();
    Ok(GroupDetails {
        group_id: group.to_owned(),
        state: described.state,
        protocol_type: described.protocol_type,
        protocol: described.protocol,
        coordinator,
        coordinator_address: admin.address(coordinator).unwrap_or("-").to_owned(),
        members,
        partitions,
        notes,
    })
}

/// `log end - committed`, never negative (a reset to the end races with nothing, but a truncated log
/// can put the end below an old commit).
pub fn lag(committed: Option<i64>, log_end: Option<i64>) -> Option<i64> {
    Some((log_end? - committed?).max(0))
}

/// The members with decoded assignments, by member id; an assignment that cannot be decoded gets a
/// note instead of failing the command.
fn members_of(described: &DescribedGroup, notes: &mut Vec<String>) -> Vec<MemberDetails> {
    let decodes = described.protocol_type == CONSUMER_PROTOCOL_TYPE;
    if !decodes && !described.members.is_empty() {
        notes.push(format!(
            "protocol type '{}' is not '{CONSUMER_PROTOCOL_TYPE}': member assignments are not decoded",
            described.protocol_type
        ));
    }
    let mut members: Vec<MemberDetails> = described
        .members
        .iter()
        .map(|member| {
            let (assignment, assignment_error) = if let Some(assigned) = &member.assigned {
                let mut topics: Vec<TopicPartitions> = assigned
                    .iter()
                    .map(|(topic, partitions)| {
                        let mut partitions = partitions.clone();
                        partitions.sort_unstable();
                        TopicPartitions {
                            topic: topic.clone(),
                            partitions,
                        }
                    })
                    .collect();
                topics.sort_by(|a, b| a.topic.cmp(&b.topic));
                (topics, None)
            } else if decodes {
                match decode_assignment(&member.assignment) {
                    Ok(decoded) => (decoded.topics, None),
                    Err(error) => {
                        notes.push(format!(
                            "the assignment of member '{}' ({} bytes) is undecodable: {error}",
                            member.member_id,
                            member.assignment.len()
                        ));
                        (Vec::new(), Some(error))
                    }
                }
            } else {
                (Vec::new(), None)
            };
            MemberDetails {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                host: member.client_host.clone(),
                assignment,
                assignment_error,
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    members
}

/// `group reset-offsets`.
pub async fn reset_offsets(
    client: &ControllerClient,
    admin: &mut KafkaAdmin,
    group: &str,
    topic: &str,
    selection: &PartitionSelection,
    target: ResetTarget,
    dry_run: bool,
) -> Result<OffsetReset, CliError> {
    let (_, described) = described_group(admin, group).await?;
    refuse_if_active(group, &described)?;
    let details = topic::describe(client, topic).await?;
    let partitions = selected_partitions(topic, &details.partitions, selection)?;
    let committed = admin.committed_offsets(group).await?;
    let starts = offsets_at(client, admin, topic, &partitions, EARLIEST_TIMESTAMP).await?;
    let ends = offsets_at(client, admin, topic, &partitions, LATEST_TIMESTAMP).await?;
    let at_time = match target {
        ResetTarget::Datetime(ms) => Some(offsets_at(client, admin, topic, &partitions, ms).await?),
        _ => None,
    };
    let mut plan = Vec::with_capacity(partitions.len());
    for &partition in &partitions {
        let (Some(&log_start), Some(&log_end)) = (starts.get(&partition), ends.get(&partition))
        else {
            return Err(CliError::UnexpectedReply(format!(
                "ListOffsets gave no offsets for partition {partition} of '{topic}'"
            )));
        };
        let bounds = OffsetBounds {
            log_start,
            log_end,
            at_time: at_time
                .as_ref()
                .and_then(|offsets| offsets.get(&partition).copied())
                .filter(|offset| *offset >= 0),
        };
        plan.push(PartitionReset {
            partition,
            previous_offset: committed.get(&(topic.to_owned(), partition)).copied(),
            new_offset: plan_offset(target, bounds),
            log_start_offset: log_start,
            log_end_offset: log_end,
        });
    }
    if !dry_run {
        let offsets: BTreeMap<i32, i64> =
            plan.iter().map(|p| (p.partition, p.new_offset)).collect();
        let answers = admin.commit_offsets(group, topic, &offsets).await?;
        for partition in offsets.keys() {
            match answers.get(partition).copied() {
                Some(0) => {}
                Some(code) => return Err(commit_error(group, topic, *partition, code)),
                None => {
                    return Err(CliError::UnexpectedReply(format!(
                    "the OffsetCommit answer has no result for partition {partition} of '{topic}'"
                )))
                }
            }
        }
    }
    Ok(OffsetReset {
        group_id: group.to_owned(),
        topic: topic.to_owned(),
        target,
        dry_run,
        partitions: plan,
    })
}

/// `group delete`.
pub async fn delete(admin: &mut KafkaAdmin, group: &str) -> Result<DeletedGroup, CliError> {
    match admin.delete_group(group).await? {
        0 => Ok(DeletedGroup {
            group_id: group.to_owned(),
        }),
        codes::GROUP_ID_NOT_FOUND => Err(group_not_found(group)),
        codes::NON_EMPTY_GROUP => Err(group_error(
            codes::NON_EMPTY_GROUP,
            format!(
                "cannot delete group '{group}': it still has members (NON_EMPTY_GROUP); stop its \
                 consumers first"
            ),
        )),
        code => Err(group_error(
            code,
            format!("cannot delete group '{group}': {}", error_name(code)),
        )),
    }
}

/// `group offset-delete`: the partitions default to every partition of the topic; each must exist.
pub async fn offset_delete(
    client: &ControllerClient,
    admin: &mut KafkaAdmin,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<OffsetDeletion, CliError> {
    let details = topic::describe(client, topic).await?;
    let selection = PartitionSelection::from_list(partitions.to_vec());
    let partitions = selected_partitions(topic, &details.partitions, &selection)?;
    let (code, answers) = admin.delete_offsets(group, topic, &partitions).await?;
    match code {
        0 => {}
        codes::GROUP_ID_NOT_FOUND => return Err(group_not_found(group)),
        code => {
            return Err(group_error(
                code,
                format!(
                    "cannot delete offsets of group '{group}': {}",
                    error_name(code)
                ),
            ))
        }
    }
    let partitions = partitions
        .into_iter()
        .map(|partition| {
            let (error, error_code) = match answers.get(&partition) {
                Some(0) => (None, 0),
                Some(&code) => (Some(error_name(code)), code),
                None => (Some("MISSING_PARTITION_IN_ANSWER".to_owned()), -1),
            };
            PartitionOffsetDeletion {
                partition,
                deleted: error.is_none(),
                error,
                error_code,
            }
        })
        .collect();
    Ok(OffsetDeletion {
        group_id: group.to_owned(),
        topic: topic.to_owned(),
        partitions,
    })
}

/// DescribeGroups, with the per-group error turned into a [`CliError`].
async fn described_group(
    admin: &mut KafkaAdmin,
    group: &str,
) -> Result<(i32, DescribedGroup), CliError> {
    let (coordinator, described) = admin.describe_group(group).await?;
    match described.error_code {
        0 => Ok((coordinator, described)),
        codes::GROUP_ID_NOT_FOUND => Err(group_not_found(group)),
        code => Err(group_error(
            code,
            format!("cannot describe group '{group}': {}", error_name(code)),
        )),
    }
}

/// A group the coordinator knows nothing about: Kafka answers such a DescribeGroups with state Dead
/// and no error.
fn is_absent(described: &DescribedGroup, committed: &BTreeMap<(String, i32), i64>) -> bool {
    described.state.eq_ignore_ascii_case("Dead")
        && described.members.is_empty()
        && committed.is_empty()
}

/// The refusal of a reset while the group has members.
pub fn refuse_if_active(group: &str, described: &DescribedGroup) -> Result<(), CliError> {
    if is_inactive(&described.state) && described.members.is_empty() {
        return Ok(());
    }
    Err(CliError::InvalidArgument(format!(
        "group '{group}' is {} with {} member(s); offsets can only be reset while it has no \
         members (state Empty): stop its consumers first",
        described.state,
        described.members.len()
    )))
}

/// The partitions a reset covers: every partition of the topic, or the selected ones (each must exist).
pub fn selected_partitions(
    topic: &str,
    partitions: &[topic::PartitionStatus],
    selection: &PartitionSelection,
) -> Result<Vec<i32>, CliError> {
    let existing: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
    match selection {
        PartitionSelection::All => Ok(existing),
        PartitionSelection::Only(wanted) => {
            if let Some(missing) = wanted.iter().find(|p| !existing.contains(p)) {
                return Err(CliError::InvalidArgument(format!(
                    "topic '{topic}' has no partition {missing} (it has {} partition(s))",
                    existing.len()
                )));
            }
            Ok(wanted.clone())
        }
    }
}

/// The offsets ListOffsets gives for `timestamp` on each of `partitions`, asking each partition's
/// leader as the controllers see it, and asking again (with fresh leaders) after a leader change,
/// until the retry deadline.
async fn offsets_at(
    client: &ControllerClient,
    admin: &mut KafkaAdmin,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let deadline = admin.deadline();
    let mut backoff = INITIAL_BACKOFF;
    let mut found = BTreeMap::new();
    loop {
        let details = topic::describe(client, topic).await?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut last = String::new();
        for status in &details.partitions {
            if !partitions.contains(&status.partition) || found.contains_key(&status.partition) {
                continue;
            }
            if status.leader < 0 {
                last = format!("partition {} has no leader", status.partition);
                continue;
            }
            by_leader
                .entry(status.leader)
                .or_default()
                .push(status.partition);
        }
        if let Some(trouble) = admin
            .offsets_from_leaders(topic, by_leader, timestamp, &mut found)
            .await?
        {
            last = trouble;
        }
        if partitions.iter().all(|p| found.contains_key(p)) {
            return Ok(found);
        }
        pause_until(&mut backoff, deadline, || {
            format!(
                "waiting for the offsets of '{topic}' from its partition leaders (last: {last})"
            )
        })
        .await?;
    }
}

fn group_not_found(group: &str) -> CliError {
    group_error(
        codes::GROUP_ID_NOT_FOUND,
        format!("group '{group}' does not exist"),
    )
}

fn group_error(code: i16, message: String) -> CliError {
    CliError::kafka(i32::from(code), "", |_| message)
}

/// The error for a partition the coordinator refused to commit.
fn commit_error(group: &str, topic: &str, partition: i32, code: i16) -> CliError {
    let message = match code {
        codes::ILLEGAL_GENERATION | codes::UNKNOWN_MEMBER_ID | codes::REBALANCE_IN_PROGRESS => {
            format!(
                "the coordinator refused the reset of group '{group}' ({}): the group has members \
                 again; stop its consumers and retry",
                error_name(code)
            )
        }
        _ => format!(
            "cannot commit the offset of partition {partition} of '{topic}' for group '{group}': {}",
            error_name(code)
        ),
    };
    group_error(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::admin::DescribedMember;

    fn bounds(log_start: i64, log_end: i64, at_time: Option<i64>) -> OffsetBounds {
        OffsetBounds {
            log_start,
            log_end,
            at_time,
        }
    }

    #[test]
    fn earliest_and_latest_are_the_log_bounds() {
        assert_eq!(plan_offset(ResetTarget::Earliest, bounds(5, 20, None)), 5);
        assert_eq!(plan_offset(ResetTarget::Latest, bounds(5, 20, None)), 20);
    }

    #[test]
    fn explicit_offsets_are_clamped_into_the_log() {
        let b = bounds(5, 20, None);
        assert_eq!(plan_offset(ResetTarget::Offset(0), b), 5);
        assert_eq!(plan_offset(ResetTarget::Offset(12), b), 12);
        assert_eq!(plan_offset(ResetTarget::Offset(20), b), 20);
        assert_eq!(plan_offset(ResetTarget::Offset(1_000), b), 20);
        assert_eq!(plan_offset(ResetTarget::Offset(3), bounds(0, 0, None)), 0);
    }

    #[test]
    fn a_datetime_after_every_record_means_the_log_end() {
        let target = ResetTarget::Datetime(1_700_000_000_000);
        assert_eq!(plan_offset(target, bounds(0, 50, Some(17))), 17);
        assert_eq!(plan_offset(target, bounds(0, 50, None)), 50);
        assert_eq!(plan_offset(target, bounds(20, 50, Some(3))), 20);
    }

    #[test]
    fn lag_needs_both_offsets_and_is_never_negative() {
        assert_eq!(lag(Some(7), Some(10)), Some(3));
        assert_eq!(lag(Some(12), Some(10)), Some(0));
        assert_eq!(lag(None, Some(10)), None);
        assert_eq!(lag(Some(3), None), None);
    }

    fn group(state: &str, members: usize, protocol_type: &str) -> DescribedGroup {
        DescribedGroup {
            error_code: 0,
            state: state.to_owned(),
            protocol_type: protocol_type.to_owned(),
            protocol: "range".to_owned(),
            members: (0..members)
                .map(|i| DescribedMember {
                    member_id: format!("m{i}"),
                    group_instance_id: None,
                    client_id: "c".to_owned(),
                    client_host: "/127.0.0.1".to_owned(),
                    assignment: bytes::Bytes::new(),
                    assigned: None,
                })
                .collect(),
        }
    }

    #[test]
    fn resets_are_refused_while_the_group_has_members() {
        assert!(refuse_if_active("g", &group("Empty", 0, "consumer")).is_ok());
        assert!(refuse_if_active("g", &group("Dead", 0, "")).is_ok());
        for state in ["Stable", "PreparingRebalance", "CompletingRebalance"] {
            let error = refuse_if_active("g", &group(state, 2, "consumer")).expect_err(state);
            assert!(
                error
                    .to_string()
                    .contains(&format!("group 'g' is {state} with 2 member(s)")),
                "{error}"
            );
        }
    }

    #[test]
    fn an_unknown_group_is_dead_without_members_or_offsets() {
        let dead = group("Dead", 0, "");
        assert!(is_absent(&dead, &BTreeMap::new()));
        let offsets = BTreeMap::from([(("t".to_owned(), 0), 4)]);
        assert!(!is_absent(&dead, &offsets));
        assert!(!is_absent(&group("Empty", 0, "consumer"), &BTreeMap::new()));
    }

    #[test]
    fn undecodable_assignments_become_notes() {
        let mut described = group("Stable", 2, "consumer");
        described.members[0].assignment = bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 1]);
        described.members[1].assignment = bytes::Bytes::from_static(&[
            0, 1, // version
            0, 0, 0, 1, // one topic
            0, 1, b't', // "t"
            0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, // partitions [1, 0]
            0xff, 0xff, 0xff, 0xff, // no user data
        ]);
        let mut notes = Vec::new();
        let members = members_of(&described, &mut notes);
        assert!(members[0].assignment_error.is_some());
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("member 'm0'"), "{notes:?}");
        assert_eq!(members[1].assignment[0].partitions, [0, 1]);
        assert_eq!(members[1].assignment_error, None);

        let mut notes = Vec::new();
        let members = members_of(&group("Stable", 1, "connect"), &mut notes);
        assert!(members[0].assignment.is_empty());
        assert!(notes[0].contains("'connect'"), "{notes:?}");
    }

    #[test]
    fn selected_partitions_must_exist() {
        let partitions: Vec<topic::PartitionStatus> = (0..3)
            .map(|partition| topic::PartitionStatus {
                partition,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
                log_start_offset: None,
                high_watermark: None,
                size_bytes: None,
            })
            .collect();
        assert_eq!(
            selected_partitions("t", &partitions, &PartitionSelection::All).ok(),
            Some(vec![0, 1, 2])
        );
        assert_eq!(
            selected_partitions("t", &partitions, &PartitionSelection::Only(vec![0, 2])).ok(),
            Some(vec![0, 2])
        );
        let error = selected_partitions("t", &partitions, &PartitionSelection::Only(vec![1, 5]))
            .expect_err("no partition 5");
        assert_eq!(
            error.to_string(),
            "topic 't' has no partition 5 (it has 3 partition(s))"
        );
    }

    #[test]
    fn group_errors_are_one_clear_line() {
        assert_eq!(group_not_found("g").to_string(), "group 'g' does not exist");
        assert_eq!(
            group_not_found("g").error_name(),
            Some("GROUP_ID_NOT_FOUND")
        );
        let error = commit_error("g", "t", 0, codes::UNKNOWN_MEMBER_ID);
        assert!(error.to_string().contains("has members again"), "{error}");
        assert_eq!(error.error_name(), Some("UNKNOWN_MEMBER_ID"));
    }
}
