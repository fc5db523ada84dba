//! Topics and partitions (Kafka's `ReplicationControlManager`): create, delete, configs, ISR changes
//! asked by partition leaders (AlterPartition, KIP-497) and preferred-leader elections.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use uuid::Uuid;

use crate::error::{ApiError, ResponseError};

use super::configs::{
    effective, effective_min_insync_replicas, effective_topic_configs, is_cordoned,
    validate_min_insync_replicas, validate_topic_configs, DEFAULT_REPLICATION_FACTOR,
    MIN_INSYNC_REPLICAS, NUM_PARTITIONS,
};
use super::election::{min_isr, partition_change, topic_min_isr, Election};
use super::image::{apply_partition_change, MetadataImage, PartitionRegistration};
use super::placement::assign_replicas;
use super::records::{
    BrokerId, ConfigResource, LeaderRecoveryState, PartitionChangeRecord, PartitionRecord, Record,
    TopicId, NO_LEADER,
};
use super::ControllerResult;
use chronik_metadata::topic_name::validate_topic_name;

/// Upper bound on partitions per topic, to refuse requests that would bloat the metadata.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Upper bound on the partitions one CreateTopics or CreatePartitions creates: they are one Raft
/// entry (about 150–300 bytes of JSON each), and an entry has to reach a follower, with a few
/// others when it catches up, inside one 64 MiB gRPC message. Without a bound, one request of
/// 100 topics × 10,000 partitions made an entry of about 150 MB that no follower could ever receive,
/// and the quorum committed nothing after it. Kafka's active controller refuses such a batch the
/// same way (`QuorumController.MAX_RECORDS_PER_USER_OP`, POLICY_VIOLATION); its bound is 10,000
/// records. Topics past the bound are refused one by one, so the client sends them again apart.
pub const MAX_PARTITIONS_PER_REQUEST: usize = 50_000;

fn request_too_large(what: &str, total: usize) -> ApiError {
    ApiError::new(
        ResponseError::PolicyViolation,
        format!(
            "{what} would make this request create {total} partitions; one request creates at \
             most {MAX_PARTITIONS_PER_REQUEST}: send the rest in another request"
        ),
    )
}

#[derive(Clone, Debug)]
pub struct CreateTopic {
    pub name: String,
    /// `-1`: the cluster default.
    pub num_partitions: i32,
    /// `-1`: the cluster default.
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
    /// Manual placement, (partition index, replicas), as Kafka's CreateTopics `assignments`; when
    /// given, `num_partitions` and `replication_factor` must be -1.
    pub assignments: Vec<(i32, Vec<BrokerId>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CreatedTopic {
    pub topic_id: TopicId,
    pub num_partitions: i32,
    pub replication_factor: i32,
    /// Every topic config with its effective value.
    pub configs: BTreeMap<String, String>,
}

pub type CreateTopicsReply = Vec<(String, Result<CreatedTopic, ApiError>)>;

/// Creates topics, each independently: a bad one gets its error, the others are still created.
/// `new_topic_id` supplies fresh non-zero ids.
pub fn create_topics(
    image: &MetadataImage,
    topics: &[CreateTopic],
    validate_only: bool,
    mut new_topic_id: impl FnMut() -> Uuid,
) -> ControllerResult<CreateTopicsReply> {
    let mut names = BTreeMap::<&str, usize>::new();
    for t in topics {
        *names.entry(t.name.as_str()).or_default() += 1;
    }
    let brokers = placeable_brokers(image);
    let mut start = image.partitions().count();
    let mut created_partitions = 0;
    let mut records = Vec::new();
    let mut reply = Vec::new();
    for t in topics {
        let outcome = if names[t.name.as_str()] > 1 {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("topic '{}' appears more than once in the request", t.name),
            ))
        } else {
            plan_topic(image, t, &brokers, start)
                .and_then(|planned| {
                    let total = created_partitions + planned.1.len();
                    if total > MAX_PARTITIONS_PER_REQUEST {
                        return Err(request_too_large(&format!("topic '{}'", t.name), total));
                    }
                    created_partitions = total;
                    Ok(planned)
                })
                .map(|(mut created, replicas)| {
                    start += replicas.len();
                    if !validate_only {
                        created.topic_id = new_topic_id();
                        records.extend(topic_records(image, t, &created, replicas));
                    }
                    created
                })
        };
        reply.push((t.name.clone(), outcome));
    }
    ControllerResult::new(records, reply)
}

/// The brokers new replicas may go to: active and not cordoned (KIP-1066, `cordoned.log.dirs`).
/// Replicas already on a cordoned broker stay; a reassignment or a replica list given by hand may
/// still name it.
fn placeable_brokers(image: &MetadataImage) -> Vec<(BrokerId, Option<String>)> {
    image
        .placeable_brokers()
        .map(|b| (b.broker_id, b.rack.clone()))
        .collect()
}

/// What an error about too few brokers adds when some are left out because they are cordoned.
fn cordoned_note(image: &MetadataImage) -> String {
    let cordoned: Vec<String> = image
        .active_brokers()
        .filter(|b| is_cordoned(image, b.broker_id))
        .map(|b| b.broker_id.to_string())
        .collect();
    if cordoned.is_empty() {
        String::new()
    } else {
        format!(
            "; cordoned broker(s) {} take no new replicas until their {} is cleared",
            cordoned.join(", "),
            super::configs::CORDONED_LOG_DIRS
        )
    }
}

/// Validates one topic and places its replicas (the topic id is filled in by the caller).
fn plan_topic(
    image: &MetadataImage,
    t: &CreateTopic,
    brokers: &[(BrokerId, Option<String>)],
    start: usize,
) -> Result<(CreatedTopic, Vec<Vec<BrokerId>>), ApiError> {
    validate_topic_name(&t.name)?;
    if image.topic_ids.contains_key(&t.name) {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic '{}' already exists", t.name),
        ));
    }
    validate_topic_configs(&t.configs)?;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "both num_partitions or replication_factor and replica assignments were set; \
                 only one can be used",
            ));
        }
        let replicas = manual_replicas(image, &t.assignments, 0)?;
        let replication_factor = replicas[0].len();
        validate_min_insync_replicas(&t.configs, replication_factor)?;
        let created = CreatedTopic {
            topic_id: Uuid::nil(),
            num_partitions: replicas.len() as i32,
            replication_factor: replication_factor as i32,
            configs: created_configs(image, &t.configs, replication_factor),
        };
        return Ok((created, replicas));
    }
    let no_overrides = BTreeMap::new();
    let num_partitions = match t.num_partitions {
        -1 => effective(image, &no_overrides, NUM_PARTITIONS)
            .parse()
            .unwrap_or(1),
        n => n,
    };
    if !(1..=MAX_PARTITIONS).contains(&num_partitions) {
        return Err(ApiError::new(
            ResponseError::InvalidPartitions,
            format!(
                "number of partitions must be between 1 and {MAX_PARTITIONS}, got {num_partitions}"
            ),
        ));
    }
    let replication_factor = match t.replication_factor {
        -1 => effective(image, &no_overrides, DEFAULT_REPLICATION_FACTOR)
            .parse()
            .unwrap_or(1),
        n => n,
    };
    if replication_factor < 1 {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor must be at least 1, got {replication_factor}"),
        ));
    }
    if replication_factor as usize > brokers.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} is larger than the number of available brokers ({}){}",
                brokers.len(),
                cordoned_note(image)
            ),
        ));
    }
    validate_min_insync_replicas(&t.configs, replication_factor as usize)?;
    let replicas = assign_replicas(
        brokers,
        num_partitions as usize,
        replication_factor as usize,
        start,
    );
    let created = CreatedTopic {
        topic_id: Uuid::nil(),
        num_partitions,
        replication_factor,
        configs: created_configs(image, &t.configs, replication_factor as usize),
    };
    Ok((created, replicas))
}

/// The effective configs a created topic reports.
fn created_configs(
    image: &MetadataImage,
    configs: &BTreeMap<String, String>,
    replication_factor: usize,
) -> BTreeMap<String, String> {
    let mut effective = effective_topic_configs(image, configs);
    let min_insync = effective_min_insync_replicas(image, configs, replication_factor);
    effective.insert(MIN_INSYNC_REPLICAS.to_string(), min_insync.to_string());
    effective
}

/// Checks a manual placement as Kafka's `ReplicationControlManager` does: partitions numbered from
/// `first_index` in order without gaps, every partition with the same number of distinct replicas,
/// every broker registered, and at least one replica of each partition able to lead (not fenced,
/// not shutting down).
fn manual_replicas(
    image: &MetadataImage,
    assignments: &[(i32, Vec<BrokerId>)],
    first_index: i32,
) -> Result<Vec<Vec<BrokerId>>, ApiError> {
    let invalid = |message: String| ApiError::new(ResponseError::InvalidReplicaAssignment, message);
    if assignments.len() > MAX_PARTITIONS as usize {
        return Err(invalid(format!(
            "{} partitions in the replica assignment; at most {MAX_PARTITIONS}",
            assignments.len()
        )));
    }
    let mut sorted: Vec<&(i32, Vec<BrokerId>)> = assignments.iter().collect();
    sorted.sort_by_key(|(index, _)| *index);
    let mut replicas = Vec::with_capacity(sorted.len());
    for (i, (index, brokers)) in sorted.into_iter().enumerate() {
        if *index != first_index + i as i32 {
            return Err(invalid(
                "partitions in the replica assignment must be numbered 0, 1, 2, … without gaps"
                    .to_string(),
            ));
        }
        if brokers.is_empty() {
            return Err(invalid(format!("partition {index} has no replicas")));
        }
        let distinct: BTreeSet<BrokerId> = brokers.iter().copied().collect();
        if distinct.len() != brokers.len() {
            return Err(invalid(format!(
                "partition {index} names a broker more than once: {brokers:?}"
            )));
        }
        if let Some(missing) = brokers.iter().find(|b| !image.brokers.contains_key(*b)) {
            return Err(invalid(format!(
                "partition {index} is assigned to broker {missing}, but no broker with that id is registered"
            )));
        }
        if !brokers.iter().any(|&b| image.is_active_broker(b)) {
            return Err(invalid(format!(
                "every broker assigned to partition {index} is fenced or shutting down"
            )));
        }
        if replicas
            .first()
            .is_some_and(|first: &Vec<BrokerId>| first.len() != brokers.len())
        {
            return Err(invalid(
                "every partition in the replica assignment must have the same number of replicas"
                    .to_string(),
            ));
        }
        replicas.push(brokers.clone());
    }
    Ok(replicas)
}

fn topic_records(
    image: &MetadataImage,
    t: &CreateTopic,
    created: &CreatedTopic,
    replicas: Vec<Vec<BrokerId>>,
) -> Vec<Record> {
    let mut records = vec![Record::Topic {
        name: t.name.clone(),
        topic_id: created.topic_id,
    }];
    records.extend(t.configs.iter().map(|(key, value)| Record::Config {
        resource: ConfigResource::Topic(t.name.clone()),
        key: key.clone(),
        value: Some(value.clone()),
    }));
    records.extend(partition_records(image, created.topic_id, 0, replicas));
    records
}

/// The records of new partitions numbered from `first_index`. Placed replicas are all active; a
/// manual assignment may name fenced brokers, which start outside the ISR (as in Kafka), and the
/// first active one leads.
fn partition_records(
    image: &MetadataImage,
    topic_id: TopicId,
    first_index: i32,
    replicas: Vec<Vec<BrokerId>>,
) -> impl Iterator<Item = Record> + '_ {
    replicas
        .into_iter()
        .zip(first_index..)
        .map(move |(replicas, index)| {
            Record::Partition(PartitionRecord {
                topic_id,
                partition: index,
                leader: replicas
                    .iter()
                    .copied()
                    .find(|&b| image.is_active_broker(b))
                    .unwrap_or(replicas[0]),
                isr: replicas
                    .iter()
                    .copied()
                    .filter(|&b| image.is_active_broker(b))
                    .collect(),
                replicas,
                ..Default::default()
            })
        })
}

/// One topic of a CreatePartitions request.
#[derive(Clone, Debug)]
pub struct CreatePartitions {
    pub name: String,
    /// The partition count afterwards.
    pub count: i32,
    /// The replicas of each new partition in order; empty: placed as at creation.
    pub assignments: Vec<Vec<BrokerId>>,
}

/// Adds partitions to topics, each independently (Kafka's `ReplicationControlManager
/// .createPartitions`): the count must grow, new partitions get the topic's replication factor and
/// are placed as at creation unless assigned by hand. Existing partitions are never touched.
pub fn create_partitions(
    image: &MetadataImage,
    topics: &[CreatePartitions],
) -> ControllerResult<Vec<Result<(), ApiError>>> {
    let mut names = BTreeMap::<&str, usize>::new();
    for t in topics {
        *names.entry(t.name.as_str()).or_default() += 1;
    }
    let brokers = placeable_brokers(image);
    let mut start = image.partitions().count();
    let mut created_partitions = 0;
    let mut records = Vec::new();
    let mut reply = Vec::new();
    for t in topics {
        let outcome = if names[t.name.as_str()] > 1 {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Duplicate topic in request.",
            ))
        } else {
            plan_partitions(image, t, &brokers, start)
                .and_then(|planned| {
                    let total = created_partitions + planned.2.len();
                    if total > MAX_PARTITIONS_PER_REQUEST {
                        let what = format!("adding partitions to '{}'", t.name);
                        return Err(request_too_large(&what, total));
                    }
                    created_partitions = total;
                    Ok(planned)
                })
                .map(|(topic_id, first, replicas)| {
                    start += replicas.len();
                    records.extend(partition_records(image, topic_id, first, replicas));
                })
        };
        reply.push(outcome);
    }
    ControllerResult::new(records, reply)
}

/// Validates one topic's new partition count and places the new partitions.
fn plan_partitions(
    image: &MetadataImage,
    t: &CreatePartitions,
    brokers: &[(BrokerId, Option<String>)],
    start: usize,
) -> Result<(TopicId, i32, Vec<Vec<BrokerId>>), ApiError> {
    let topic = image.topic_by_name(&t.name).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{}' does not exist.", t.name),
        )
    })?;
    let current = topic.partitions.len() as i32;
    let invalid = |message: String| ApiError::new(ResponseError::InvalidPartitions, message);
    if t.count < current {
        return Err(invalid(format!(
            "The topic {} currently has {current} partition(s); {} would not be an increase.",
            t.name, t.count
        )));
    }
    if t.count == current {
        return Err(invalid(format!(
            "Topic already has {current} partition(s)."
        )));
    }
    if t.count > MAX_PARTITIONS {
        return Err(invalid(format!(
            "The topic {} would have {} partitions; at most {MAX_PARTITIONS} are allowed.",
            t.name, t.count
        )));
    }
    let added = (t.count - current) as usize;
    let rf = topic.replication_factor();
    if !t.assignments.is_empty() {
        if t.assignments.len() != added {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) \
                     were specified.",
                    t.assignments.len()
                ),
            ));
        }
        let indexed: Vec<(i32, Vec<BrokerId>)> =
            (current..).zip(t.assignments.iter().cloned()).collect();
        let replicas = manual_replicas(image, &indexed, current)?;
        if replicas[0].len() != rf {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "The manual partition assignment includes a partition with {} replica(s), \
                     but this is not consistent with previous partitions, which have {rf} \
                     replica(s).",
                    replicas[0].len()
                ),
            ));
        }
        return Ok((topic.id, current, replicas));
    }
    if rf > brokers.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of \
                 {rf} cannot be reached because only {} broker(s) are registered{}.",
                brokers.len(),
                cordoned_note(image)
            ),
        ));
    }
    Ok((
        topic.id,
        current,
        assign_replicas(brokers, added, rf, start),
    ))
}

/// What to delete: a topic by name or by id.
#[derive(Clone, Debug)]
pub enum TopicRef {
    Name(String),
    Id(TopicId),
}

pub type DeleteTopicsReply = Vec<(String, TopicId, Result<(), ApiError>)>;

pub fn delete_topics(
    image: &MetadataImage,
    topics: &[TopicRef],
) -> ControllerResult<DeleteTopicsReply> {
    let mut records = Vec::new();
    let mut reply = Vec::new();
    let mut seen = BTreeSet::new();
    for t in topics {
        let found = match t {
            TopicRef::Name(name) => image.topic_by_name(name).ok_or_else(|| {
                (
                    name.clone(),
                    Uuid::nil(),
                    ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    ),
                )
            }),
            TopicRef::Id(id) => image.topics.get(id).map(|t| &**t).ok_or_else(|| {
                (
                    String::new(),
                    *id,
                    ApiError::new(
                        ResponseError::UnknownTopicId,
                        format!("no topic has id {id}"),
                    ),
                )
            }),
        };
        match found {
            Ok(topic) => {
                if seen.insert(topic.id) {
                    records.push(Record::RemoveTopic { topic_id: topic.id });
                }
                reply.push((topic.name.clone(), topic.id, Ok(())));
            }
            Err((name, id, err)) => reply.push((name, id, Err(err))),
        }
    }
    ControllerResult::new(records, reply)
}

/// One partition's requested ISR change.
#[derive(Clone, Debug)]
pub struct AlterPartitionItem {
    pub topic_id: TopicId,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// `(broker, broker epoch)`.
    pub new_isr: Vec<(BrokerId, i64)>,
    /// The recovery state the leader asks for; `None` (a broker that does not send it): unchanged.
    pub leader_recovery_state: Option<LeaderRecoveryState>,
}

/// The outcome for one partition: its state after the change, or why it was refused.
pub type AlterPartitionOutcome = Result<PartitionRegistration, ResponseError>;

/// AlterPartition from a partition leader, each partition checked in the order of Kafka's
/// `ReplicationControlManager.alterPartition`.
pub fn alter_partition(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: i64,
    items: &[AlterPartitionItem],
) -> Result<ControllerResult<Vec<AlterPartitionOutcome>>, ApiError> {
    super::cluster::check_broker_epoch(image, broker_id, broker_epoch)?;
    let mut records = Vec::new();
    let mut reply = Vec::new();
    // Each item is checked against the image as it was before the request, so a partition named twice
    // would have its second change checked against a stale partition epoch: refuse the repeats.
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        if !seen.insert((item.topic_id, item.partition)) {
            reply.push(Err(ResponseError::InvalidRequest));
            continue;
        }
        let outcome = alter_one(image, broker_id, item).map(|(current, change)| {
            let mut after = current.clone();
            if let Some(change) = change {
                if apply_partition_change(&mut after, &change) {
                    records.push(Record::PartitionChange(change));
                }
            }
            // A reassignment whose added replicas are now all in sync completes in the same batch.
            let done =
                super::reassignment::completion(item.topic_id, item.partition, &after, |b| {
                    image.is_active_broker(b)
                });
            if let Some(done) = done {
                if apply_partition_change(&mut after, &done) {
                    records.push(Record::PartitionChange(done));
                }
            }
            after
        });
        reply.push(outcome);
    }
    Ok(ControllerResult::new(records, reply))
}

/// Checks one item; returns the partition's current registration and the change to write (none when the
/// ISR is already the requested one).
fn alter_one<'a>(
    image: &'a MetadataImage,
    broker_id: BrokerId,
    item: &AlterPartitionItem,
) -> Result<(&'a PartitionRegistration, Option<PartitionChangeRecord>), ResponseError> {
    let Some(topic) = image.topics.get(&item.topic_id) else {
        return Err(ResponseError::UnknownTopicId);
    };
    let current = image
        .partition(item.topic_id, item.partition)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if item.leader_epoch > current.leader_epoch || item.partition_epoch > current.partition_epoch {
        return Err(ResponseError::NotController);
    }
    if item.leader_epoch < current.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if current.leader != broker_id {
        return Err(ResponseError::InvalidRequest);
    }
    if item.partition_epoch < current.partition_epoch {
        return Err(ResponseError::InvalidUpdateVersion);
    }
    let new_isr: Vec<BrokerId> = item.new_isr.iter().map(|(b, _)| *b).collect();
    let distinct: BTreeSet<BrokerId> = new_isr.iter().copied().collect();
    if distinct.len() != new_isr.len()
        || !new_isr.contains(&broker_id)
        || !new_isr.iter().all(|b| current.replicas.contains(b))
    {
        return Err(ResponseError::InvalidRequest);
    }
    // KIP-704: only the controller makes a partition RECOVERING (an unclean election); its leader
    // clears it, and until then the ISR is the leader alone.
    let recovering = match item.leader_recovery_state {
        None => current.recovering,
        Some(LeaderRecoveryState::Recovered) => false,
        Some(LeaderRecoveryState::Recovering) if current.recovering => true,
        Some(LeaderRecoveryState::Recovering) => return Err(ResponseError::InvalidRequest),
    };
    if recovering && new_isr != [broker_id] {
        return Err(ResponseError::InvalidRequest);
    }
    for &(member, epoch) in &item.new_isr {
        if current.isr.contains(&member) {
            continue;
        }
        // KIP-903: only on the strength of fetches by the member's current registration; an unknown
        // epoch (-1) could be its previous incarnation's.
        let eligible = image
            .brokers
            .get(&member)
            .is_some_and(|b| b.is_active() && epoch == b.broker_epoch);
        if !eligible {
            return Err(ResponseError::IneligibleReplica);
        }
    }
    // The leader is unchanged by construction (it is acceptable and in the new ISR).
    let mut change = partition_change(
        item.topic_id,
        item.partition,
        current,
        new_isr,
        min_isr(image, topic, current),
        |b| image.is_active_broker(b),
        false,
        Election::KeepCurrent,
    );
    if current.recovering && !recovering {
        change
            .get_or_insert_with(|| PartitionChangeRecord {
                topic_id: item.topic_id,
                partition: item.partition,
                expected_partition_epoch: Some(current.partition_epoch),
                ..Default::default()
            })
            .recovering = Some(false);
    }
    Ok((current, change))
}

/// One partition's election outcome: the leader afterwards, or why not.
pub type ElectionOutcome = (String, i32, Result<BrokerId, ApiError>);

/// Which partitions an election covers.
#[derive(Clone, Copy, Debug)]
pub enum ElectionScope<'a> {
    /// Every partition; those that need no election are left out of the reply (as Kafka does).
    All,
    /// Every partition of these topics; an unknown topic refuses the whole request.
    Topics(&'a [String]),
    /// Exactly these partitions, each answered (unknown ones with UNKNOWN_TOPIC_OR_PARTITION).
    Partitions(&'a [(String, Vec<i32>)]),
}

/// Kafka's ElectLeaders (`ReplicationControlManager.electLeaders`). Preferred: moves leadership
/// back to the first replica when it is in sync and may lead. Unclean: gives a partition that has
/// no leader one, from the ISR if any member may lead, else from any live replica (which can lose
/// acknowledged writes: the operator asked for it explicitly).
pub fn elect_leaders(
    image: &MetadataImage,
    scope: ElectionScope<'_>,
    unclean: bool,
) -> Result<ControllerResult<Vec<ElectionOutcome>>, ApiError> {
    let mut selected: Vec<(String, i32)> = Vec::new();
    let mut reply = Vec::new();
    match scope {
        ElectionScope::All => {
            for (topic, index, _) in image.partitions() {
                selected.push((topic.name.clone(), index));
            }
        }
        ElectionScope::Topics(names) => {
            for name in names {
                let topic = image.topic_by_name(name).ok_or_else(|| {
                    ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )
                })?;
                selected.extend((0..topic.partitions.len() as i32).map(|i| (name.clone(), i)));
            }
        }
        ElectionScope::Partitions(partitions) => {
            for (name, indexes) in partitions {
                for &index in indexes {
                    selected.push((name.clone(), index));
                }
            }
        }
    }
    let explicit = !matches!(scope, ElectionScope::All);
    let mut records = Vec::new();
    for (name, index) in selected {
        let Some((topic, p)) = image.topic_by_name(&name).and_then(|t| {
            usize::try_from(index)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .map(|p| (t, p))
        }) else {
            reply.push((
                name,
                index,
                Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )),
            ));
            continue;
        };
        let outcome = if unclean {
            elect_unclean(image, topic.id, index, p)
        } else {
            elect_preferred(image, topic.id, index, p)
        };
        match outcome {
            Ok(Some(change)) => {
                reply.push((name, index, Ok(change.leader.unwrap_or(p.leader))));
                records.push(Record::PartitionChange(change));
            }
            Ok(None) => {
                if explicit {
                    reply.push((
                        name,
                        index,
                        Err(ApiError::new(
                            ResponseError::ElectionNotNeeded,
                            "Leader election not needed for topic partition.",
                        )),
                    ));
                }
            }
            Err(e) => reply.push((name, index, Err(e))),
        }
    }
    Ok(ControllerResult::new(records, reply))
}

/// `Ok(None)`: the preferred replica already leads.
fn elect_preferred(
    image: &MetadataImage,
    topic_id: TopicId,
    index: i32,
    p: &PartitionRegistration,
) -> Result<Option<PartitionChangeRecord>, ApiError> {
    let preferred = p.preferred_leader();
    if preferred == Some(p.leader) {
        return Ok(None);
    }
    partition_change(
        topic_id,
        index,
        p,
        p.isr.clone(),
        topic_min_isr(image, topic_id, p),
        |b| image.is_active_broker(b),
        false,
        Election::Preferred,
    )
    .filter(|c| c.leader.is_some() && c.leader == preferred)
    .map(Some)
    .ok_or_else(|| {
        ApiError::new(
            ResponseError::PreferredLeaderNotAvailable,
            "the preferred replica is not in sync or not available",
        )
    })
}

/// `Ok(None)`: the partition has a leader.
fn elect_unclean(
    image: &MetadataImage,
    topic_id: TopicId,
    index: i32,
    p: &PartitionRegistration,
) -> Result<Option<PartitionChangeRecord>, ApiError> {
    if p.has_leader() {
        return Ok(None);
    }
    partition_change(
        topic_id,
        index,
        p,
        p.isr.clone(),
        topic_min_isr(image, topic_id, p),
        |b| image.is_active_broker(b),
        true,
        Election::KeepCurrent,
    )
    .filter(|c| c.leader.is_some_and(|l| l != NO_LEADER))
    .map(Some)
    .ok_or_else(|| {
        ApiError::new(
            ResponseError::EligibleLeadersNotAvailable,
            "no live replica of the partition can lead",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::tests::{cluster, commit, heartbeat, register};
    use crate::state::config_changes::{alter_configs, AlterResource, ConfigOp};
    use crate::state::configs::CORDONED_LOG_DIRS;

    fn create(
        image: &MetadataImage,
        name: &str,
        partitions: i32,
        rf: i32,
    ) -> Result<CreatedTopic, ApiError> {
        create_topics(
            image,
            &[new_topic(name, partitions, rf)],
            false,
            Uuid::new_v4,
        )
        .reply
        .remove(0)
        .1
    }

    /// A topic to create with the cluster's default configs, placed by the controller.
    fn new_topic(name: &str, partitions: i32, rf: i32) -> CreateTopic {
        CreateTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    #[test]
    fn bad_create_requests_change_nothing() {
        let image = cluster(&[1, 2, 3], 1, 1);
        let codes = [
            (
                create(&image, "t", 1, 4),
                ResponseError::InvalidReplicationFactor,
            ),
            (create(&image, "t", 0, 1), ResponseError::InvalidPartitions),
            (create(&image, "t", -5, 1), ResponseError::InvalidPartitions),
            (
                create(&image, "t", 1, 0),
                ResponseError::InvalidReplicationFactor,
            ),
            (
                create(&image, "orders", 1, 1),
                ResponseError::TopicAlreadyExists,
            ),
            (
                create(&image, "bad name", 1, 1),
                ResponseError::InvalidTopicException,
            ),
        ];
        for (outcome, code) in codes {
            assert_eq!(outcome.unwrap_err().code, code);
        }
        let t = CreateTopic {
            name: "t".into(),
            num_partitions: 1,
            replication_factor: 1,
            configs: [("retention.mss".to_string(), "1".to_string())].into(),
            assignments: Vec::new(),
        };
        let result = create_topics(&image, &[t.clone(), t.clone()], false, Uuid::new_v4);
        assert!(result.records.is_empty());
        let result = create_topics(&image, &[t], false, Uuid::new_v4);
        assert!(result.records.is_empty());
        assert_eq!(
            result.reply[0].1.as_ref().unwrap_err().code,
            ResponseError::InvalidConfig
        );
    }

    /// A request that would create more than `MAX_PARTITIONS_PER_REQUEST` partitions (one Raft
    /// entry too large to replicate) creates those that fit and refuses the rest, one by one.
    #[test]
    fn one_request_creates_a_bounded_number_of_partitions() {
        let image = cluster(&[1, 2, 3], 1, 1);
        let per_topic = MAX_PARTITIONS as usize;
        let fitting = MAX_PARTITIONS_PER_REQUEST / per_topic;
        let topics: Vec<CreateTopic> = (0..=fitting)
            .map(|i| CreateTopic {
                name: format!("bulk-{i}"),
                num_partitions: MAX_PARTITIONS,
                replication_factor: 1,
                configs: BTreeMap::new(),
                assignments: Vec::new(),
            })
            .collect();
        let result = create_topics(&image, &topics, false, Uuid::new_v4);
        let refused: Vec<&ApiError> = result
            .reply
            .iter()
            .filter_map(|(_, outcome)| outcome.as_ref().err())
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].code, ResponseError::PolicyViolation);
        assert!(
            refused[0].message.contains("another request"),
            "{refused:?}"
        );
        let partitions = result
            .records
            .iter()
            .filter(|r| matches!(r, Record::Partition(_)))
            .count();
        assert_eq!(partitions, fitting * per_topic);

        // CreatePartitions: topics of one partition, each grown to the per-topic bound.
        let mut image = image;
        let small: Vec<CreateTopic> = topics
            .iter()
            .map(|t| CreateTopic {
                num_partitions: 1,
                ..t.clone()
            })
            .collect();
        commit(&mut image, |image| {
            create_topics(image, &small, false, Uuid::new_v4)
        });
        let growth: Vec<CreatePartitions> = small
            .iter()
            .map(|t| grow(&t.name, MAX_PARTITIONS, Vec::new()))
            .collect();
        let result = create_partitions(&image, &growth);
        let refused: Vec<&ApiError> = result
            .reply
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].code, ResponseError::PolicyViolation);
        let partitions = result
            .records
            .iter()
            .filter(|r| matches!(r, Record::Partition(_)))
            .count();
        assert_eq!(partitions, fitting * (per_topic - 1));
    }

    #[test]
    fn created_topics_get_ids_placement_and_defaults() {
        let mut image = cluster(&[1, 2, 3], 1, 1);
        let t = CreateTopic {
            name: "events".into(),
            num_partitions: -1,
            replication_factor: -1,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            assignments: Vec::new(),
        };
        let validate = create_topics(&image, std::slice::from_ref(&t), true, Uuid::new_v4);
        assert!(validate.records.is_empty() && validate.reply[0].1.is_ok());
        let (_, reply) = commit(&mut image, |image| {
            create_topics(image, &[t], false, Uuid::new_v4)
        });
        let created = reply[0].1.clone().unwrap();
        assert!(!created.topic_id.is_nil());
        assert_eq!((created.num_partitions, created.replication_factor), (1, 3));
        assert_eq!(created.configs["retention.ms"], "1000");
        assert_eq!(
            created.configs["min.insync.replicas"], "1",
            "cluster default"
        );
        let topic = image.topic_by_name("events").unwrap();
        assert_eq!(topic.id, created.topic_id);
        assert_eq!(topic.configs.len(), 1);
        assert_eq!(topic.partitions[0].isr, topic.partitions[0].replicas);
        // Recreating after delete gives a new id.
        commit(&mut image, |image| {
            delete_topics(image, &[TopicRef::Name("events".into())])
        });
        assert!(image.topic_by_name("events").is_none());
        let again = create(&image, "events", 1, 1).unwrap();
        assert_ne!(again.topic_id, created.topic_id);
    }

    /// Issue #13: a topic that does not set `min.insync.replicas` gets the default capped at its
    /// replication factor (acks=all works on replication factor 1); an explicit value above the
    /// replication factor is refused, at creation and when altered, saying why.
    #[test]
    fn min_insync_replicas_never_exceeds_the_replication_factor() {
        let mut image = cluster(&[1, 2, 3], 1, 1);
        image
            .cluster_configs
            .insert(MIN_INSYNC_REPLICAS.into(), "2".into());
        let single = create(&image, "single", 1, 1).unwrap();
        assert_eq!(single.configs[MIN_INSYNC_REPLICAS], "1");
        let triple = create(&image, "triple", 1, 3).unwrap();
        assert_eq!(triple.configs[MIN_INSYNC_REPLICAS], "2");

        let explicit = |value: &str, rf: i32| CreateTopic {
            name: "strict".into(),
            num_partitions: 1,
            replication_factor: rf,
            configs: [(MIN_INSYNC_REPLICAS.to_string(), value.to_string())].into(),
            assignments: Vec::new(),
        };
        let refused = create_topics(&image, &[explicit("3", 2)], false, Uuid::new_v4);
        assert!(refused.records.is_empty());
        let err = refused.reply[0].1.as_ref().unwrap_err();
        assert_eq!(err.code, ResponseError::InvalidConfig);
        assert!(
            err.message.contains("above the replication factor 2"),
            "{}",
            err.message
        );
        let accepted = create_topics(&image, &[explicit("2", 2)], false, Uuid::new_v4);
        assert!(accepted.reply[0].1.is_ok());

        // `orders` has replication factor 1.
        let too_many: BTreeMap<String, String> =
            [(MIN_INSYNC_REPLICAS.to_string(), "2".to_string())].into();
        let alter = AlterResource {
            resource: ConfigResource::Topic("orders".into()),
            changes: too_many
                .into_iter()
                .map(|(k, v)| (k, ConfigOp::Set(v)))
                .collect(),
            replace: false,
        };
        assert_eq!(
            alter_configs(&image, &[alter]).reply[0]
                .as_ref()
                .unwrap_err()
                .code,
            ResponseError::InvalidConfig
        );
    }

    /// Issue #13: CreateTopics with manual replica assignments (`kafka-topics --replica-assignment`)
    /// places each partition as given, the first replica leading, and is refused as Kafka refuses
    /// it: INVALID_REPLICA_ASSIGNMENT for gaps, duplicates, unequal lengths or unknown brokers,
    /// INVALID_REQUEST when counts are given too.
    #[test]
    fn manual_replica_assignments_are_placed_as_given_or_refused() {
        let mut image = cluster(&[1, 2, 3], 1, 1);
        let placed = |name: &str, assignments: Vec<(i32, Vec<BrokerId>)>| CreateTopic {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            configs: BTreeMap::new(),
            assignments,
        };
        let (_, reply) = commit(&mut image, |image| {
            create_topics(
                image,
                &[placed("manual", vec![(1, vec![3, 1]), (0, vec![2, 3])])],
                false,
                Uuid::new_v4,
            )
        });
        let created = reply[0].1.clone().unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (2, 2));
        let topic = image.topic_by_name("manual").unwrap();
        assert_eq!(topic.partitions[0].replicas, vec![2, 3]);
        assert_eq!(topic.partitions[1].replicas, vec![3, 1]);
        assert_eq!(topic.partitions[1].leader, 3, "the first replica leads");
        assert_eq!(topic.partitions[1].isr, vec![3, 1]);

        for (assignments, code) in [
            (
                vec![(0, vec![1]), (2, vec![2])],
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                vec![(0, vec![1, 1])],
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                vec![(0, vec![1, 2]), (1, vec![3])],
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                vec![(0, vec![1, 9])],
                ResponseError::InvalidReplicaAssignment,
            ),
            (vec![(0, vec![])], ResponseError::InvalidReplicaAssignment),
        ] {
            let result = create_topics(
                &image,
                &[placed("bad", assignments.clone())],
                false,
                Uuid::new_v4,
            );
            assert!(result.records.is_empty(), "{assignments:?}");
            assert_eq!(
                result.reply[0].1.as_ref().unwrap_err().code,
                code,
                "{assignments:?}"
            );
        }
        let mut both = placed("both", vec![(0, vec![1])]);
        both.num_partitions = 1;
        let result = create_topics(&image, &[both], false, Uuid::new_v4);
        assert_eq!(
            result.reply[0].1.as_ref().unwrap_err().code,
            ResponseError::InvalidRequest
        );
    }

    fn grow(name: &str, count: i32, assignments: Vec<Vec<BrokerId>>) -> CreatePartitions {
        CreatePartitions {
            name: name.into(),
            count,
            assignments,
        }
    }

    /// Issue #13: CreatePartitions adds partitions with the topic's replication factor, placed as at
    /// creation or as assigned, and leaves the existing ones alone.
    #[test]
    fn partitions_are_added_placed_or_as_assigned() {
        let mut image = cluster(&[1, 2, 3], 2, 2);
        let before = image.topic_by_name("orders").unwrap().partitions.clone();
        let (_, reply) = commit(&mut image, |image| {
            create_partitions(image, &[grow("orders", 4, Vec::new())])
        });
        assert!(reply[0].is_ok());
        let topic = image.topic_by_name("orders").unwrap();
        assert_eq!(topic.partitions.len(), 4);
        assert_eq!(topic.partitions[..2], before[..]);
        for p in &topic.partitions[2..] {
            assert_eq!(p.replicas.len(), 2);
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader, p.replicas[0]);
        }
        let (_, reply) = commit(&mut image, |image| {
            create_partitions(image, &[grow("orders", 5, vec![vec![3, 1]])])
        });
        assert!(reply[0].is_ok());
        let topic = image.topic_by_name("orders").unwrap();
        assert_eq!(topic.partitions[4].replicas, vec![3, 1]);
        assert_eq!(topic.partitions[4].leader, 3);
    }

    #[test]
    fn partition_counts_must_grow_and_assignments_match_the_topic() {
        let image = cluster(&[1, 2, 3], 2, 2);
        for (request, code) in [
            (
                grow("orders", 2, Vec::new()),
                ResponseError::InvalidPartitions,
            ),
            (
                grow("orders", 1, Vec::new()),
                ResponseError::InvalidPartitions,
            ),
            (
                grow("orders", MAX_PARTITIONS + 1, Vec::new()),
                ResponseError::InvalidPartitions,
            ),
            (
                grow("missing", 3, Vec::new()),
                ResponseError::UnknownTopicOrPartition,
            ),
            // One assignment for two new partitions.
            (
                grow("orders", 4, vec![vec![1, 2]]),
                ResponseError::InvalidReplicaAssignment,
            ),
            // The topic has two replicas per partition.
            (
                grow("orders", 3, vec![vec![1, 2, 3]]),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                grow("orders", 3, vec![vec![1, 9]]),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                grow("orders", 3, vec![vec![2, 2]]),
                ResponseError::InvalidReplicaAssignment,
            ),
        ] {
            let result = create_partitions(&image, std::slice::from_ref(&request));
            assert!(result.records.is_empty(), "{request:?}");
            assert_eq!(
                result.reply[0].as_ref().unwrap_err().code,
                code,
                "{request:?}"
            );
        }
        let twice = create_partitions(
            &image,
            &[grow("orders", 3, Vec::new()), grow("orders", 4, Vec::new())],
        );
        assert!(twice.records.is_empty());
        assert!(twice
            .reply
            .iter()
            .all(|r| r.as_ref().unwrap_err().code == ResponseError::InvalidRequest));
    }

    #[test]
    fn new_partitions_need_as_many_live_brokers_as_replicas() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let fence = crate::state::cluster::fence_broker(&image, 3);
        commit(&mut image, |_| ControllerResult::new(fence, ()));
        let result = create_partitions(&image, &[grow("orders", 2, Vec::new())]);
        assert_eq!(
            result.reply[0].as_ref().unwrap_err().code,
            ResponseError::InvalidReplicationFactor
        );
    }

    /// Creates a topic placed by the controller and applies its records.
    fn create_committed(image: &mut MetadataImage, name: &str, partitions: i32, rf: i32) {
        let (_, reply) = commit(image, |image| {
            create_topics(
                image,
                &[new_topic(name, partitions, rf)],
                false,
                Uuid::new_v4,
            )
        });
        assert!(reply[0].1.is_ok(), "{name}: {:?}", reply[0].1);
    }

    fn set_cordon(image: &mut MetadataImage, broker: BrokerId, op: ConfigOp) {
        let alter = AlterResource {
            resource: ConfigResource::Broker(broker),
            changes: vec![(CORDONED_LOG_DIRS.to_string(), op)],
            replace: false,
        };
        let (_, reply) = commit(image, |image| alter_configs(image, &[alter]));
        reply[0]
            .as_ref()
            .expect("cordoned.log.dirs is a valid setting");
    }

    /// KIP-1066: a broker whose `cordoned.log.dirs` is set gets no replica of a new topic or
    /// partition, and too few placeable brokers is the replication-factor error naming the cordon;
    /// clearing it makes the broker placeable again. Existing replicas stay where they are.
    #[test]
    fn cordoned_brokers_get_no_new_replicas() {
        let mut image = cluster(&[1, 2, 3, 4], 2, 3);
        let before = image.topic_by_name("orders").unwrap().partitions.clone();
        set_cordon(&mut image, 4, ConfigOp::Set("*".into()));
        assert!(is_cordoned(&image, 4));
        assert_eq!(image.topic_by_name("orders").unwrap().partitions, before);

        create_committed(&mut image, "placed", 8, 3);
        let (_, reply) = commit(&mut image, |image| {
            create_partitions(image, &[grow("orders", 6, Vec::new())])
        });
        assert!(reply[0].is_ok(), "{:?}", reply[0]);
        for name in ["placed", "orders"] {
            let topic = image.topic_by_name(name).unwrap();
            for p in topic
                .partitions
                .iter()
                .skip(if name == "orders" { 2 } else { 0 })
            {
                assert!(!p.replicas.contains(&4), "{name}: {:?}", p.replicas);
                assert_eq!(p.replicas.len(), 3);
            }
        }

        set_cordon(&mut image, 3, ConfigOp::Set("/var/lib/chronik".into()));
        let refused = create(&image, "too-wide", 1, 3).unwrap_err();
        assert_eq!(refused.code, ResponseError::InvalidReplicationFactor);
        assert!(
            refused.message.contains("cordoned broker(s) 3, 4 take"),
            "{}",
            refused.message
        );
        let refused = create_partitions(&image, &[grow("placed", 9, Vec::new())]);
        let refused = refused.reply[0].as_ref().unwrap_err();
        assert_eq!(refused.code, ResponseError::InvalidReplicationFactor);
        assert!(
            refused.message.contains("cordoned broker(s) 3, 4 take"),
            "{}",
            refused.message
        );
        // A replica list given by hand is the operator's choice.
        let (_, reply) = commit(&mut image, |image| {
            create_partitions(image, &[grow("placed", 9, vec![vec![4, 3, 1]])])
        });
        assert!(reply[0].is_ok(), "{:?}", reply[0]);

        set_cordon(&mut image, 3, ConfigOp::Delete);
        set_cordon(&mut image, 4, ConfigOp::Set(String::new()));
        assert!(!is_cordoned(&image, 3) && !is_cordoned(&image, 4));
        create_committed(&mut image, "everywhere", 4, 3);
        let topic = image.topic_by_name("everywhere").unwrap();
        let used: BTreeSet<BrokerId> = topic
            .partitions
            .iter()
            .flat_map(|p| p.replicas.clone())
            .collect();
        assert_eq!(used, BTreeSet::from([1, 2, 3, 4]));
    }

    #[test]
    fn cordoned_log_dirs_must_be_star_or_absolute_paths() {
        let mut image = cluster(&[1, 2], 1, 1);
        for bad in ["data", "*,relative/dir"] {
            let alter = AlterResource {
                resource: ConfigResource::Broker(1),
                changes: vec![(CORDONED_LOG_DIRS.to_string(), ConfigOp::Set(bad.into()))],
                replace: false,
            };
            let refused = alter_configs(&image, &[alter]).reply.remove(0).unwrap_err();
            assert_eq!(refused.code, ResponseError::InvalidConfig, "{bad}");
        }
        set_cordon(&mut image, 1, ConfigOp::Append("/data/a".into()));
        set_cordon(&mut image, 1, ConfigOp::Append("/data/b".into()));
        set_cordon(&mut image, 1, ConfigOp::Subtract("/data/a".into()));
        assert_eq!(image.broker_configs[&1][CORDONED_LOG_DIRS], "/data/b");
        assert!(is_cordoned(&image, 1));
        set_cordon(&mut image, 1, ConfigOp::Subtract("/data/b".into()));
        assert!(!is_cordoned(&image, 1));
    }

    /// Unclean election (Kafka's ElectionType.UNCLEAN) only for a partition without a leader; it
    /// takes a live replica outside the ISR when no ISR member can lead, and marks it recovering.
    #[test]
    fn an_unclean_election_gives_a_leaderless_partition_a_live_replica() {
        let mut image = cluster(&[1, 2], 1, 2);
        let named = vec![("orders".to_string(), vec![0, 7])];
        let result = elect_leaders(&image, ElectionScope::Partitions(&named), true).unwrap();
        assert!(result.records.is_empty());
        assert_eq!(
            result.reply[0].2.as_ref().unwrap_err().code,
            ResponseError::ElectionNotNeeded
        );
        assert_eq!(
            result.reply[1].2.as_ref().unwrap_err().code,
            ResponseError::UnknownTopicOrPartition
        );

        // Broker 2 drops out of the ISR, then the leader 1 is fenced: no leader is left.
        let topic = image.topic_by_name("orders").unwrap().clone();
        let p = &topic.partitions[0];
        let shrink = AlterPartitionItem {
            topic_id: topic.id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![(p.leader, -1)],
            leader_recovery_state: None,
        };
        let leader = p.leader;
        let other = if leader == 1 { 2 } else { 1 };
        let epoch = image.brokers[&leader].broker_epoch;
        commit(&mut image, |image| {
            alter_partition(image, leader, epoch, &[shrink]).unwrap()
        });
        let fence = crate::state::cluster::fence_broker(&image, leader);
        commit(&mut image, |_| ControllerResult::new(fence, ()));
        assert!(!image.topic_by_name("orders").unwrap().partitions[0].has_leader());

        let preferred = elect_leaders(&image, ElectionScope::Partitions(&named), false).unwrap();
        assert!(preferred.records.is_empty());
        let (_, reply) = commit(&mut image, |image| {
            elect_leaders(image, ElectionScope::Partitions(&named), true).unwrap()
        });
        assert_eq!(reply[0].2.as_ref().unwrap(), &other);
        let p = &image.topic_by_name("orders").unwrap().partitions[0];
        assert_eq!(
            (p.leader, p.isr.clone(), p.recovering),
            (other, vec![other], true)
        );
    }

    #[test]
    fn deleting_unknown_topics_is_an_error() {
        let image = cluster(&[1], 1, 1);
        let result = delete_topics(
            &image,
            &[
                TopicRef::Name("nope".into()),
                TopicRef::Id(Uuid::from_u128(99)),
            ],
        );
        assert!(result.records.is_empty());
        assert_eq!(
            result.reply[0].2.as_ref().unwrap_err().code,
            ResponseError::UnknownTopicOrPartition
        );
        assert_eq!(
            result.reply[1].2.as_ref().unwrap_err().code,
            ResponseError::UnknownTopicId
        );
    }

    fn item(image: &MetadataImage, isr: &[(BrokerId, i64)]) -> AlterPartitionItem {
        let topic = image.topic_by_name("orders").unwrap();
        let p = &topic.partitions[0];
        AlterPartitionItem {
            topic_id: topic.id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr.to_vec(),
            leader_recovery_state: None,
        }
    }

    #[test]
    fn alter_partition_is_compare_and_set_on_the_partition_epoch() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let leader = image.topic_by_name("orders").unwrap().partitions[0].leader;
        let epoch = image.brokers[&leader].broker_epoch;
        let others: Vec<BrokerId> = [1, 2, 3].into_iter().filter(|&b| b != leader).collect();
        // Shrink to the leader and one follower.
        let shrink = item(&image, &[(leader, -1), (others[0], -1)]);
        let (_, reply) = commit(&mut image, |image| {
            alter_partition(image, leader, epoch, std::slice::from_ref(&shrink)).unwrap()
        });
        let after = reply[0].clone().unwrap();
        assert_eq!(after.isr, vec![leader, others[0]]);
        assert_eq!(after.partition_epoch, shrink.partition_epoch + 1);
        assert_eq!(
            after.leader_epoch, shrink.leader_epoch,
            "an ISR change keeps the leader epoch"
        );
        assert_eq!(image.topic_by_name("orders").unwrap().partitions[0], after);
        // The same request again is stale.
        let stale = alter_partition(&image, leader, epoch, &[shrink]).unwrap();
        assert_eq!(stale.reply[0], Err(ResponseError::InvalidUpdateVersion));
        assert!(stale.records.is_empty());
        // Expansion needs the member's current broker epoch.
        let other_epoch = image.brokers[&others[1]].broker_epoch;
        let wrong = item(
            &image,
            &[(leader, -1), (others[0], -1), (others[1], other_epoch - 1)],
        );
        assert_eq!(
            alter_partition(&image, leader, epoch, &[wrong])
                .unwrap()
                .reply[0],
            Err(ResponseError::IneligibleReplica)
        );
        let right = item(
            &image,
            &[(leader, -1), (others[0], -1), (others[1], other_epoch)],
        );
        assert!(alter_partition(&image, leader, epoch, &[right])
            .unwrap()
            .reply[0]
            .is_ok());
    }

    /// One request carries many partitions (a broker batches its pending ISR changes): each is
    /// checked on its own and answered with its own result, and a partition named twice is refused
    /// the second time rather than checked against a stale epoch.
    #[test]
    fn alter_partition_checks_each_partition_of_a_batch() {
        let mut image = cluster(&[1, 2, 3], 12, 3);
        let topic = image.topic_by_name("orders").unwrap().clone();
        let leader = topic.partitions[0].leader;
        let epoch = image.brokers[&leader].broker_epoch;
        let mut batch: Vec<AlterPartitionItem> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.leader == leader)
            .map(|(i, p)| AlterPartitionItem {
                topic_id: topic.id,
                partition: i as i32,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: vec![(leader, -1)],
                leader_recovery_state: None,
            })
            .collect();
        assert!(batch.len() >= 2, "the leader leads several partitions");
        let led = batch.len();
        batch[1].partition_epoch -= 1;
        batch.push(batch[0].clone());
        let (_, reply) = commit(&mut image, |image| {
            alter_partition(image, leader, epoch, &batch).unwrap()
        });
        assert_eq!(reply.len(), led + 1);
        assert_eq!(reply[0].as_ref().unwrap().isr, vec![leader]);
        assert_eq!(reply[1], Err(ResponseError::InvalidUpdateVersion));
        for (item, outcome) in batch.iter().zip(&reply).take(led).skip(2) {
            let after = outcome.as_ref().unwrap();
            assert_eq!(after.isr, vec![leader]);
            assert_eq!(after.partition_epoch, item.partition_epoch + 1);
        }
        assert_eq!(reply[led], Err(ResponseError::InvalidRequest));
        let orders = image.topic_by_name("orders").unwrap();
        assert_eq!(orders.partitions[batch[1].partition as usize].isr.len(), 3);
        assert_eq!(
            orders.partitions[batch[0].partition as usize].isr,
            vec![leader]
        );
    }

    #[test]
    fn alter_partition_refuses_stale_leaders_and_bad_isrs() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let p = image.topic_by_name("orders").unwrap().partitions[0].clone();
        let leader = p.leader;
        let follower = p.replicas.iter().copied().find(|&b| b != leader).unwrap();
        let epoch = image.brokers[&leader].broker_epoch;
        assert_eq!(
            alter_partition(&image, leader, epoch + 1, &[])
                .unwrap_err()
                .code,
            ResponseError::StaleBrokerEpoch
        );
        let mut old = item(&image, &[(leader, -1)]);
        old.leader_epoch -= 1;
        assert_eq!(
            alter_partition(&image, leader, epoch, &[old])
                .unwrap()
                .reply[0],
            Err(ResponseError::FencedLeaderEpoch)
        );
        let mut newer = item(&image, &[(leader, -1)]);
        newer.partition_epoch += 1;
        assert_eq!(
            alter_partition(&image, leader, epoch, &[newer])
                .unwrap()
                .reply[0],
            Err(ResponseError::NotController)
        );
        let follower_epoch = image.brokers[&follower].broker_epoch;
        let from_follower = item(&image, &[(follower, -1)]);
        assert_eq!(
            alter_partition(&image, follower, follower_epoch, &[from_follower])
                .unwrap()
                .reply[0],
            Err(ResponseError::InvalidRequest)
        );
        let without_leader = item(&image, &[(follower, -1)]);
        assert_eq!(
            alter_partition(&image, leader, epoch, &[without_leader])
                .unwrap()
                .reply[0],
            Err(ResponseError::InvalidRequest)
        );
        let outsider = register(&mut image, 9);
        heartbeat(&mut image, 9, false, false);
        let not_replica = item(&image, &[(leader, -1), (9, outsider)]);
        assert_eq!(
            alter_partition(&image, leader, epoch, &[not_replica])
                .unwrap()
                .reply[0],
            Err(ResponseError::InvalidRequest)
        );
    }

    /// Issue #11, defect 3: a write that timed out in `Quorum::run` can still commit after the next
    /// command was computed on the image without it. Here the leader's shrink (dropping a lagging
    /// replica) commits late, and a fence computed before it was applied must not put the lagging
    /// replica back into the ISR.
    #[test]
    fn a_fence_computed_on_a_stale_image_does_not_restore_a_lagging_replica() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let before = image.topic_by_name("orders").unwrap().partitions[0].clone();
        let leader = before.leader;
        let followers: Vec<BrokerId> = before
            .replicas
            .iter()
            .copied()
            .filter(|&b| b != leader)
            .collect();
        let (lagging, other) = (followers[0], followers[1]);
        let stale = image.clone();
        let epoch = image.brokers[&leader].broker_epoch;
        let shrink = item(&image, &[(leader, -1), (other, -1)]);
        commit(&mut image, |image| {
            alter_partition(image, leader, epoch, &[shrink]).unwrap()
        });
        let fence = crate::state::cluster::fence_broker(&stale, other);
        commit(&mut image, |_| ControllerResult::new(fence, ()));
        let after = &image.topic_by_name("orders").unwrap().partitions[0];
        assert!(
            !after.isr.contains(&lagging),
            "the lagging replica came back into the ISR: {after:?}"
        );
        assert_eq!(
            after.partition_epoch,
            before.partition_epoch + 1,
            "the stale change was skipped"
        );
        // Replay is the same on every node and survives a snapshot.
        let mut restored = MetadataImage::default();
        restored.replay_all(image.offset, &image.to_records());
        assert_eq!(restored.topics, image.topics);
    }

    /// Issue #11, defect 8 (KIP-704): the leader an unclean election chose clears RECOVERING with an
    /// AlterPartition, after which its ISR can grow again.
    #[test]
    fn an_unclean_leader_clears_recovering_through_alter_partition() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        commit(&mut image, |_| {
            ControllerResult::new(
                vec![Record::Config {
                    resource: ConfigResource::Topic("orders".into()),
                    key: "unclean.leader.election.enable".into(),
                    value: Some("true".into()),
                }],
                (),
            )
        });
        let p = image.topic_by_name("orders").unwrap().partitions[0].clone();
        let old_leader = p.leader;
        let epoch = image.brokers[&old_leader].broker_epoch;
        let alone = item(&image, &[(old_leader, -1)]);
        commit(&mut image, |image| {
            alter_partition(image, old_leader, epoch, &[alone]).unwrap()
        });
        commit(&mut image, |image| {
            ControllerResult::new(crate::state::cluster::fence_broker(image, old_leader), ())
        });
        let p = image.topic_by_name("orders").unwrap().partitions[0].clone();
        assert!(p.recovering, "an unclean election: {p:?}");
        let leader = p.leader;
        assert_ne!(leader, old_leader);
        assert_eq!(p.isr, vec![leader]);
        let epoch = image.brokers[&leader].broker_epoch;
        let follower = p
            .replicas
            .iter()
            .copied()
            .find(|&b| b != leader && b != old_leader)
            .unwrap();
        let follower_epoch = image.brokers[&follower].broker_epoch;

        // Growing the ISR before recovery is done is refused, and so is asking to recover again.
        let grow = item(&image, &[(leader, -1), (follower, follower_epoch)]);
        assert_eq!(
            alter_partition(&image, leader, epoch, &[grow])
                .unwrap()
                .reply[0],
            Err(ResponseError::InvalidRequest)
        );

        let mut recovered = item(&image, &[(leader, -1)]);
        recovered.leader_recovery_state = Some(LeaderRecoveryState::Recovered);
        let (_, reply) = commit(&mut image, |image| {
            alter_partition(image, leader, epoch, &[recovered]).unwrap()
        });
        let after = reply[0].clone().unwrap();
        assert!(!after.recovering, "RECOVERING cleared: {after:?}");
        assert_eq!(after.leader, leader);
        assert_eq!(after.leader_epoch, p.leader_epoch);
        assert_eq!(image.topic_by_name("orders").unwrap().partitions[0], after);

        let mut back = item(&image, &[(leader, -1)]);
        back.leader_recovery_state = Some(LeaderRecoveryState::Recovering);
        assert_eq!(
            alter_partition(&image, leader, epoch, &[back])
                .unwrap()
                .reply[0],
            Err(ResponseError::InvalidRequest),
            "RECOVERED -> RECOVERING is not allowed"
        );
        let grow = item(&image, &[(leader, -1), (follower, follower_epoch)]);
        let (_, reply) = commit(&mut image, |image| {
            alter_partition(image, leader, epoch, &[grow]).unwrap()
        });
        assert_eq!(reply[0].clone().unwrap().isr, vec![leader, follower]);
    }

    /// Issue #11, defect 11 (KIP-903): a replica joins the ISR only on the strength of fetches made
    /// under its current registration; an unknown broker epoch (-1) is refused like a stale one, and so
    /// is a request from the leader's previous registration.
    #[test]
    fn an_isr_addition_needs_the_members_current_broker_epoch() {
        let image = cluster(&[1, 2, 3], 1, 3);
        let leader = image.topic_by_name("orders").unwrap().partitions[0].leader;
        let epoch = image.brokers[&leader].broker_epoch;
        let follower = [1, 2, 3].into_iter().find(|&b| b != leader).unwrap();
        let mut image = image;
        let alone = item(&image, &[(leader, -1)]);
        commit(&mut image, |image| {
            alter_partition(image, leader, epoch, &[alone]).unwrap()
        });
        let follower_epoch = image.brokers[&follower].broker_epoch;
        for refused in [-1, follower_epoch - 1] {
            let grow = item(&image, &[(leader, -1), (follower, refused)]);
            assert_eq!(
                alter_partition(&image, leader, epoch, &[grow])
                    .unwrap()
                    .reply[0],
                Err(ResponseError::IneligibleReplica),
                "member broker epoch {refused}"
            );
        }
        for stale in [-1, epoch - 1] {
            let grow = item(&image, &[(leader, -1), (follower, follower_epoch)]);
            assert_eq!(
                alter_partition(&image, leader, stale, &[grow])
                    .unwrap_err()
                    .code,
                ResponseError::StaleBrokerEpoch,
                "leader broker epoch {stale}"
            );
        }
        let grow = item(&image, &[(leader, -1), (follower, follower_epoch)]);
        assert!(alter_partition(&image, leader, epoch, &[grow])
            .unwrap()
            .reply[0]
            .is_ok());
    }

    #[test]
    fn preferred_election_restores_leaders_in_sync() {
        let mut image = cluster(&[1, 2, 3], 3, 3);
        let fence = crate::state::cluster::fence_broker(&image, 1);
        commit(&mut image, |_| ControllerResult::new(fence, ()));
        assert_eq!(image.leader_count(1), 0);
        commit(&mut image, |image| {
            ControllerResult::new(crate::state::cluster::unfence_broker(image, 1), ())
        });
        // Broker 1 is back but not in sync: nothing to elect yet.
        let result = elect_leaders(&image, ElectionScope::All, false).unwrap();
        assert!(result.records.is_empty());
        assert!(result.reply.iter().all(|(_, _, r)| r.is_err()));
        // Once the leaders add it back to their ISRs, preferred election hands leadership back.
        let topic = image.topic_by_name("orders").unwrap().clone();
        for (index, p) in topic.partitions.iter().enumerate() {
            let mut isr: Vec<(BrokerId, i64)> = p.isr.iter().map(|&b| (b, -1)).collect();
            isr.push((1, image.brokers[&1].broker_epoch));
            let it = AlterPartitionItem {
                topic_id: topic.id,
                partition: index as i32,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: isr,
                leader_recovery_state: None,
            };
            let leader_epoch = image.brokers[&p.leader].broker_epoch;
            commit(&mut image, |image| {
                alter_partition(image, p.leader, leader_epoch, &[it]).unwrap()
            });
        }
        let (_, reply) = commit(&mut image, |image| {
            elect_leaders(image, ElectionScope::All, false).unwrap()
        });
        assert!(reply.iter().all(|(_, _, r)| r.is_ok()));
        assert_eq!(image.leader_count(1), 1);
        for p in &image.topic_by_name("orders").unwrap().partitions {
            assert_eq!(Some(p.leader), p.preferred_leader());
        }
    }
}
