//! One consumer group of the KIP-848 protocol (Kafka's `ConsumerGroup`, with the heartbeat of
//! `GroupMetadataManager.consumerGroupHeartbeat` and the reconciliation of `CurrentAssignmentBuilder`).
//!
//! Members heartbeat (ConsumerGroupHeartbeat) with their subscription and the partitions they own;
//! the coordinator computes every member's target with a server-side assignor and moves each member
//! towards it:
//!
//! - The **group epoch** rises when membership or a subscription changes, or when the metadata of the
//!   subscribed topics does (a hash of their ids and partition counts); the target assignment is
//!   recomputed when the group epoch is ahead of the **assignment epoch**.
//! - A member's **member epoch** reaches the assignment epoch once it has given up every partition it
//!   must revoke; a partition is handed to its new owner only after its previous owner's heartbeat
//!   no longer lists it (or the previous owner is gone). So no partition is owned by two members at
//!   a time; `owners` holds who owns what, and only its owner frees a partition.
//! - Offset commits are checked against the member epoch (STALE_MEMBER_EPOCH), so a member that lost
//!   its partitions cannot commit for them.
//!
//! State changes only through [`ConsumerGroup::replay`] of the records a decision produces (the same
//! path loading the offsets partition takes), so what the log holds is what the group was. Replay
//! does not rely on the order of different keys' records, which compaction of the offsets topic does
//! not keep: a member appears with its first record of any kind. A decision's records are applied
//! before they are written; if a write fails before reaching the log, the coordinator reloads the
//! partition from the log (Kafka reverts to its last committed snapshot), so memory never stays
//! ahead of the log. Session and revocation deadlines are not persisted: a coordinator that loads the
//! group starts them afresh, as Kafka's does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use regex::{Regex, RegexBuilder};
use tokio::time::Instant;
use tracing::warn;
use uuid::Uuid;

use super::assignor::{self, MemberSpec, ASSIGNORS, UNIFORM};
use super::consumer_records::{
    ConsumerRecord, CurrentAssignment, MemberMetadata, MemberState, TopicPartitions,
};

/// The epoch with which a member leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The epoch with which a static member leaves for now, keeping its partitions until its session
/// ends or it comes back.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The settings of consumer groups (Kafka's `group.consumer.*`).
#[derive(Clone, Debug)]
pub struct ConsumerGroupConfig {
    pub session_timeout: Duration,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// What the group needs of the cluster's metadata.
pub trait TopicSource {
    /// A topic's id and partition count.
    fn topic(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic a regular expression may match (not the internal ones).
    fn topic_names(&self) -> Vec<String>;
    /// Whether a regular expression of the heartbeat at hand may match `name` (its principal may
    /// DESCRIBE the topic).
    fn describable(&self, name: &str) -> bool;
    /// A number that changes whenever the topics do (the metadata image's offset).
    fn version(&self) -> u64;
}

/// A group's state, as ListGroups and ConsumerGroupDescribe show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// One ConsumerGroupHeartbeat, decoded. `None` fields are "unchanged".
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `Some("")` removes the member's regular expression.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns; `None` when it did not say.
    pub owned: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

/// What the member is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assigned partitions, when they changed or it asked for everything.
    pub assignment: Option<TopicPartitions>,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub metadata: MemberMetadata,
    pub current: CurrentAssignment,
    session_deadline: Instant,
    /// While the member must revoke partitions: when it is fenced unless it has, and the epoch it
    /// was asked at.
    revocation_deadline: Option<(Instant, i32)>,
}

#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    id: String,
    epoch: i32,
    metadata_hash: i64,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    targets: BTreeMap<String, TopicPartitions>,
    /// The member holding each partition, assigned or still revoking it, and its epoch.
    owners: HashMap<(Uuid, i32), (String, i32)>,
    /// Compiled regular expressions of the members' subscriptions (only those in use).
    regexes: HashMap<String, Regex>,
    /// The subscribed topics and their hash, and the metadata version they were computed for;
    /// dropped whenever a member's record changes.
    subscription_cache: Option<SubscriptionCache>,
    /// How many writes of the group's records were queued, and how many of those are committed: a
    /// reply that writes nothing waits for the earlier ones.
    pub writes_queued: u64,
    pub writes_done: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Clone, Debug)]
struct SubscriptionCache {
    metadata_version: u64,
    topics: BTreeMap<String, (Uuid, i32)>,
    hash: i64,
}

/// The records of one decision, applied to the group as they are made.
struct Changes<'a> {
    group: &'a mut ConsumerGroup,
    records: Vec<ConsumerRecord>,
    session_timeout: Duration,
    now: Instant,
}

impl Changes<'_> {
    fn emit(&mut self, record: ConsumerRecord) {
        self.group.replay(&record, self.now, self.session_timeout);
        self.records.push(record);
    }
}

impl ConsumerGroup {
    /// A group the first heartbeat creates: epoch 0, nothing assigned.
    pub fn new(id: String) -> Self {
        ConsumerGroup {
            id,
            epoch: 0,
            metadata_hash: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            targets: BTreeMap::new(),
            owners: HashMap::new(),
            regexes: HashMap::new(),
            subscription_cache: None,
            writes_queued: 0,
            writes_done: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    pub fn target(&self, member_id: &str) -> Option<&TopicPartitions> {
        self.targets.get(member_id)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Starts every member's session afresh, and the revocation deadlines of those revoking (a
    /// coordinator that just loaded the group, as Kafka's does).
    pub fn restart_sessions(&mut self, now: Instant, session_timeout: Duration) {
        for m in self.members.values_mut() {
            m.session_deadline = now + session_timeout;
            // A static member away (epoch -2) revokes nothing until it is back.
            let revoking =
                m.current.state == MemberState::UnrevokedPartitions && m.current.member_epoch >= 0;
            m.revocation_deadline = revoking.then(|| {
                let timeout = Duration::from_millis(
                    u64::try_from(m.metadata.rebalance_timeout_ms).unwrap_or(0),
                );
                (now + timeout, m.current.member_epoch)
            });
        }
    }

    /// Whether nothing of the group was ever decided (a group created by a heartbeat that failed).
    pub fn is_unused(&self) -> bool {
        self.epoch == 0 && self.members.is_empty()
    }

    /// The assignor the group runs: the one most members name, else the default.
    pub fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(name) = m.metadata.server_assignor.as_deref() {
                if let Some(known) = ASSIGNORS.iter().find(|a| **a == name) {
                    *votes.entry(known).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map_or(UNIFORM, |(name, _)| name)
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| {
            m.current.state != MemberState::Stable
                || m.current.member_epoch != self.assignment_epoch
        }) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Whether a member subscribes to `topic` by name (OffsetDelete refuses such offsets).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| {
            m.metadata.subscribed_topic_names.iter().any(|t| t == topic)
                || m.metadata
                    .subscribed_topic_regex
                    .as_deref()
                    .and_then(|r| full_match(r).ok())
                    .is_some_and(|r| r.is_match(topic))
        })
    }

    /// Applies one record: the only way the group's persistent state changes, live and when the
    /// offsets partition is loaded.
    pub fn replay(&mut self, record: &ConsumerRecord, now: Instant, session_timeout: Duration) {
        match record {
            ConsumerRecord::GroupMetadata { value, .. } => {
                // A tombstone removes the group itself (the caller's map).
                if let Some((epoch, hash)) = value {
                    self.epoch = *epoch;
                    self.metadata_hash = *hash;
                }
            }
            ConsumerRecord::Member { member, value, .. } => {
                self.subscription_cache = None;
                match value {
                    Some(metadata) => {
                        self.member_entry(member, now, session_timeout).metadata = metadata.clone();
                    }
                    None => {
                        if let Some(gone) = self.members.remove(member) {
                            self.release(member, &gone.current);
                        }
                    }
                }
            }
            ConsumerRecord::TargetAssignmentMetadata { value, .. } => {
                self.assignment_epoch = value.unwrap_or(-1);
            }
            ConsumerRecord::TargetAssignmentMember { member, value, .. } => match value {
                Some(target) => {
                    self.targets.insert(member.clone(), target.clone());
                }
                None => {
                    self.targets.remove(member);
                }
            },
            ConsumerRecord::CurrentAssignment { member, value, .. } => {
                let next = value.clone().unwrap_or(CurrentAssignment {
                    member_epoch: LEAVE_EPOCH,
                    ..CurrentAssignment::default()
                });
                if value.is_none() && !self.members.contains_key(member) {
                    return;
                }
                // Compaction may have kept this member's assignment ahead of its metadata.
                let previous = self
                    .member_entry(member, now, session_timeout)
                    .current
                    .clone();
                self.release(member, &previous);
                self.hold(member, &next);
                if let Some(m) = self.members.get_mut(member) {
                    // A static member away (epoch -2) revokes nothing until it is back.
                    if next.state == MemberState::UnrevokedPartitions && next.member_epoch >= 0 {
                        // Armed when the member starts revoking, re-armed at each new epoch.
                        let armed_for = m.revocation_deadline.map(|(_, e)| e);
                        if armed_for != Some(next.member_epoch) {
                            let timeout = Duration::from_millis(
                                u64::try_from(m.metadata.rebalance_timeout_ms).unwrap_or(0),
                            );
                            m.revocation_deadline = Some((now + timeout, next.member_epoch));
                        }
                    } else {
                        m.revocation_deadline = None;
                    }
                    m.current = next;
                }
            }
            ConsumerRecord::Ignored { .. } => {}
        }
    }

    fn member_entry(
        &mut self,
        member: &str,
        now: Instant,
        session_timeout: Duration,
    ) -> &mut Member {
        self.members
            .entry(member.to_owned())
            .or_insert_with(|| Member {
                metadata: MemberMetadata::default(),
                current: CurrentAssignment::default(),
                session_deadline: now + session_timeout,
                revocation_deadline: None,
            })
    }

    /// Frees the partitions `member` holds (never another member's).
    fn release(&mut self, member: &str, current: &CurrentAssignment) {
        for (topic, partitions) in current.assigned.iter().chain(&current.pending_revocation) {
            for p in partitions {
                if self
                    .owners
                    .get(&(*topic, *p))
                    .is_some_and(|(owner, _)| owner == member)
                {
                    self.owners.remove(&(*topic, *p));
                }
            }
        }
    }

    fn hold(&mut self, member: &str, current: &CurrentAssignment) {
        for (topic, partitions) in current.assigned.iter().chain(&current.pending_revocation) {
            for p in partitions {
                match self.owners.get(&(*topic, *p)) {
                    Some((owner, _)) if owner != member => {
                        // Reconciliation hands out only free partitions, so this is a bug or a log
                        // another coordinator wrote: the first owner keeps it, and it stays
                        // unreleased for everyone else until that owner lets it go.
                        warn!(group = %self.id, member, %topic, partition = p, owner,
                            "partition assigned while another member holds it");
                    }
                    _ => {
                        self.owners
                            .insert((*topic, *p), (member.to_owned(), current.member_epoch));
                    }
                }
            }
        }
    }

    /// Whether a member other than `member` holds the partition.
    fn held_by_another(&self, member: &str, topic: Uuid, partition: i32) -> bool {
        self.owners
            .get(&(topic, partition))
            .is_some_and(|(owner, _)| owner != member)
    }

    /// Every record of the group as it stands (its metadata first, as Kafka orders a load): what a
    /// compacted log holds of it, for tests of replay.
    #[cfg(test)]
    pub fn all_records(&self) -> Vec<ConsumerRecord> {
        let group = || self.id.clone();
        let mut records = vec![ConsumerRecord::GroupMetadata {
            group: group(),
            value: Some((self.epoch, self.metadata_hash)),
        }];
        for (id, m) in &self.members {
            records.push(ConsumerRecord::Member {
                group: group(),
                member: id.clone(),
                value: Some(m.metadata.clone()),
            });
        }
        for (id, target) in &self.targets {
            records.push(ConsumerRecord::TargetAssignmentMember {
                group: group(),
                member: id.clone(),
                value: Some(target.clone()),
            });
        }
        records.push(ConsumerRecord::TargetAssignmentMetadata {
            group: group(),
            value: Some(self.assignment_epoch),
        });
        for (id, m) in &self.members {
            records.push(ConsumerRecord::CurrentAssignment {
                group: group(),
                member: id.clone(),
                value: Some(m.current.clone()),
            });
        }
        records
    }

    /// The tombstones deleting the group (Kafka's `createGroupTombstoneRecords`).
    pub fn tombstones(&self) -> Vec<ConsumerRecord> {
        let group = || self.id.clone();
        let mut records = Vec::new();
        for id in self.members.keys() {
            records.push(ConsumerRecord::CurrentAssignment {
                group: group(),
                member: id.clone(),
                value: None,
            });
        }
        for id in self.targets.keys() {
            records.push(ConsumerRecord::TargetAssignmentMember {
                group: group(),
                member: id.clone(),
                value: None,
            });
        }
        records.push(ConsumerRecord::TargetAssignmentMetadata {
            group: group(),
            value: None,
        });
        for id in self.members.keys() {
            records.push(ConsumerRecord::Member {
                group: group(),
                member: id.clone(),
                value: None,
            });
        }
        records.push(ConsumerRecord::GroupMetadata {
            group: group(),
            value: None,
        });
        records
    }

    // ---- Heartbeat ----

    /// One heartbeat of a member (epoch ≥ 0): join, keep alive, change the subscription, report
    /// revoked partitions. Returns the reply and the records to write (already applied), or the
    /// error the member gets (nothing changed then).
    pub fn heartbeat(
        &mut self,
        request: Heartbeat,
        topics: &dyn TopicSource,
        config: &ConsumerGroupConfig,
        now: Instant,
    ) -> Result<(HeartbeatReply, Vec<ConsumerRecord>), (ResponseError, String)> {
        let epoch = request.member_epoch;
        let known = self.members.contains_key(&request.member_id);
        if !known && self.members.len() >= config.max_size {
            return Err((
                ResponseError::GroupMaxSizeReached,
                format!(
                    "the group has reached its maximum size of {}",
                    config.max_size
                ),
            ));
        }
        // Which member this is, and whether it replaces a static member that left for now.
        let static_owner = request.instance_id.as_deref().and_then(|instance| {
            self.members
                .iter()
                .find(|(_, m)| m.metadata.instance_id.as_deref() == Some(instance))
                .map(|(id, m)| (id.clone(), m.current.member_epoch))
        });
        let mut replaces = None;
        if epoch == 0 {
            match (&request.instance_id, &static_owner) {
                (Some(instance), Some((owner, owner_epoch))) => {
                    if *owner_epoch != STATIC_LEAVE_EPOCH {
                        return Err((
                            ResponseError::UnreleasedInstanceId,
                            format!("static member {instance} is still in the group as {owner}"),
                        ));
                    }
                    if *owner != request.member_id {
                        replaces = Some(owner.clone());
                    }
                }
                _ => {
                    if let Some(member) = self.members.get(&request.member_id) {
                        check_epoch(member, epoch, request.owned.as_ref())?;
                    }
                }
            }
        } else {
            // A static member is looked up by its instance id first, as Kafka does.
            if let Some(instance) = &request.instance_id {
                match &static_owner {
                    None => {
                        return Err((
                            ResponseError::UnknownMemberId,
                            format!("no member has instance id {instance}"),
                        ))
                    }
                    Some((owner, _)) if *owner != request.member_id => {
                        return Err((
                            ResponseError::FencedInstanceId,
                            format!("instance id {instance} belongs to {owner}"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let Some(member) = self.members.get(&request.member_id) else {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("{} is not a member of the group", request.member_id),
                ));
            };
            check_epoch(member, epoch, request.owned.as_ref())?;
        }
        // A member whose state this coordinator cannot read (a later release's) must rejoin; checked
        // before anything is decided, so a refusal changes nothing.
        if let Some(member) = self.members.get(&request.member_id) {
            if member.current.state == MemberState::Unknown
                && request.owned.as_ref().is_none_or(|o| !o.is_empty())
            {
                return Err((
                    ResponseError::FencedMemberEpoch,
                    "the member's state is unknown: rejoin".into(),
                ));
            }
        }

        // The member's metadata with what this heartbeat changes.
        let base = replaces
            .as_ref()
            .or(known.then_some(&request.member_id))
            .and_then(|id| self.members.get(id));
        let before_metadata = base.map(|m| m.metadata.clone());
        let mut metadata = before_metadata.clone().unwrap_or_default();
        let mut current = base.map(|m| m.current.clone()).unwrap_or_default();
        if replaces.is_some() {
            current.member_epoch = 0;
            current.previous_member_epoch = 0;
        }
        if let Some(instance) = &request.instance_id {
            metadata.instance_id = Some(instance.clone());
        }
        if let Some(rack) = &request.rack_id {
            metadata.rack_id = Some(rack.clone());
        }
        if request.rebalance_timeout_ms != -1 {
            metadata.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(assignor) = &request.server_assignor {
            metadata.server_assignor = Some(assignor.clone());
        }
        let mut names_changed = false;
        if let Some(names) = &request.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            names_changed = names != metadata.subscribed_topic_names;
            metadata.subscribed_topic_names = names;
        }
        let mut regex_changed = false;
        if let Some(regex) = &request.subscribed_topic_regex {
            let regex = Some(regex.clone()).filter(|r| !r.is_empty());
            if let Some(r) = &regex {
                self.compiled(r).map_err(|e| {
                    (
                        ResponseError::InvalidRegularExpression,
                        format!("invalid regular expression {r:?}: {e}"),
                    )
                })?;
            }
            regex_changed = regex != metadata.subscribed_topic_regex;
            metadata.subscribed_topic_regex = regex;
        }
        metadata.client_id = request.client_id.clone();
        metadata.client_host = request.client_host.clone();

        let metadata_changed = before_metadata.as_ref() != Some(&metadata);
        let member_id = request.member_id.clone();
        let session_timeout = config.session_timeout;
        let mut changes = Changes {
            group: self,
            records: Vec::new(),
            session_timeout,
            now,
        };
        let group_id = changes.group.id.clone();
        if let Some(old) = &replaces {
            let target = changes.group.targets.get(old).cloned();
            fence_records(&mut changes, old);
            changes.emit(ConsumerRecord::Member {
                group: group_id.clone(),
                member: member_id.clone(),
                value: Some(metadata.clone()),
            });
            if let Some(target) = target {
                changes.emit(ConsumerRecord::TargetAssignmentMember {
                    group: group_id.clone(),
                    member: member_id.clone(),
                    value: Some(target),
                });
            }
            changes.emit(ConsumerRecord::CurrentAssignment {
                group: group_id.clone(),
                member: member_id.clone(),
                value: Some(current.clone()),
            });
        } else if metadata_changed {
            changes.emit(ConsumerRecord::Member {
                group: group_id.clone(),
                member: member_id.clone(),
                value: Some(metadata.clone()),
            });
        }

        // The group epoch: bumped by a new group, a subscription change (a new member's is one), or
        // a change of the subscribed topics' metadata. A static member taking its place back does
        // not change the group.
        let (subscribed, hash) = changes.group.subscribed_topics(topics);
        let bump = changes.group.epoch == 0
            || names_changed
            || regex_changed
            || hash != changes.group.metadata_hash;
        if bump {
            let next = changes.group.epoch + 1;
            changes.emit(ConsumerRecord::GroupMetadata {
                group: group_id.clone(),
                value: Some((next, hash)),
            });
        }

        // The target assignment, when the group epoch has moved past it.
        if changes.group.epoch > changes.group.assignment_epoch {
            let targets = changes.group.compute_targets(&subscribed);
            for (id, target) in targets {
                if changes.group.targets.get(&id) != Some(&target) {
                    changes.emit(ConsumerRecord::TargetAssignmentMember {
                        group: group_id.clone(),
                        member: id,
                        value: Some(target),
                    });
                }
            }
            let epoch = changes.group.epoch;
            changes.emit(ConsumerRecord::TargetAssignmentMetadata {
                group: group_id.clone(),
                value: Some(epoch),
            });
        }

        // Reconcile the member towards its target.
        // The member's record was applied above (a new or changed member's is always emitted).
        let before = changes
            .group
            .members
            .get(&member_id)
            .map(|m| m.current.clone())
            .unwrap_or_default();
        let reconciled = changes
            .group
            .reconcile(&member_id, &before, request.owned.as_ref());
        if reconciled != before {
            changes.emit(ConsumerRecord::CurrentAssignment {
                group: group_id.clone(),
                member: member_id.clone(),
                value: Some(reconciled.clone()),
            });
        }
        let records = changes.records;
        if let Some(m) = self.members.get_mut(&member_id) {
            m.session_deadline = now + session_timeout;
        }
        let full = epoch == 0
            || (request.rebalance_timeout_ms != -1
                && (request.subscribed_topic_names.is_some()
                    || request.subscribed_topic_regex.is_some())
                && request.owned.is_some());
        let assignment = (full || reconciled.assigned != before.assigned || replaces.is_some())
            .then(|| reconciled.assigned.clone());
        Ok((
            HeartbeatReply {
                member_id,
                member_epoch: reconciled.member_epoch,
                heartbeat_interval_ms: config.heartbeat_interval_ms,
                assignment,
            },
            records,
        ))
    }

    /// A member leaving (epoch -1, or -2 for a static member leaving for now).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        epoch: i32,
        now: Instant,
        session_timeout: Duration,
    ) -> Result<(HeartbeatReply, Vec<ConsumerRecord>), (ResponseError, String)> {
        let found = match instance_id {
            None => self
                .members
                .contains_key(member_id)
                .then(|| member_id.to_owned()),
            Some(instance) => {
                let owner = self
                    .members
                    .iter()
                    .find(|(_, m)| m.metadata.instance_id.as_deref() == Some(instance))
                    .map(|(id, _)| id.clone());
                if let Some(owner) = &owner {
                    if owner != member_id {
                        return Err((
                            ResponseError::FencedInstanceId,
                            format!("instance id {instance} belongs to {owner}"),
                        ));
                    }
                }
                owner
            }
        };
        let Some(member) = found else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("{member_id} is not a member of the group"),
            ));
        };
        let mut changes = Changes {
            group: self,
            records: Vec::new(),
            session_timeout,
            now,
        };
        let reply_epoch = if epoch == STATIC_LEAVE_EPOCH && instance_id.is_some() {
            // Keeps its assignment (nobody else gets it) until its session ends or it is back.
            let mut current = changes
                .group
                .members
                .get(&member)
                .map(|m| m.current.clone())
                .unwrap_or_default();
            current.previous_member_epoch = current.member_epoch;
            current.member_epoch = STATIC_LEAVE_EPOCH;
            current.pending_revocation.clear();
            let group = changes.group.id.clone();
            changes.emit(ConsumerRecord::CurrentAssignment {
                group,
                member: member.clone(),
                value: Some(current),
            });
            STATIC_LEAVE_EPOCH
        } else {
            fence_records(&mut changes, &member);
            bump_records(&mut changes);
            LEAVE_EPOCH
        };
        Ok((
            HeartbeatReply {
                member_id: member,
                member_epoch: reply_epoch,
                heartbeat_interval_ms: 0,
                assignment: None,
            },
            changes.records,
        ))
    }

    /// Removes members (LeaveGroup from an admin client): the records, or None if it is unknown.
    pub fn remove_member(
        &mut self,
        member_id: &str,
        now: Instant,
        session_timeout: Duration,
    ) -> Option<Vec<ConsumerRecord>> {
        if !self.members.contains_key(member_id) {
            return None;
        }
        let mut changes = Changes {
            group: self,
            records: Vec::new(),
            session_timeout,
            now,
        };
        fence_records(&mut changes, member_id);
        bump_records(&mut changes);
        Some(changes.records)
    }

    /// Members whose session ended, or who did not revoke in time, leave: the records, and who.
    pub fn expire(
        &mut self,
        now: Instant,
        session_timeout: Duration,
    ) -> (Vec<ConsumerRecord>, Vec<String>) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.session_deadline <= now
                    || m.revocation_deadline.is_some_and(|(deadline, epoch)| {
                        deadline <= now
                            && m.current.state == MemberState::UnrevokedPartitions
                            && m.current.member_epoch == epoch
                    })
            })
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return (Vec::new(), expired);
        }
        let mut changes = Changes {
            group: self,
            records: Vec::new(),
            session_timeout,
            now,
        };
        for id in &expired {
            fence_records(&mut changes, id);
        }
        bump_records(&mut changes);
        (changes.records, expired)
    }

    // ---- Offsets ----

    /// OffsetCommit's check (Kafka's `ConsumerGroup.validateOffsetCommit`): a commit from outside the
    /// group (negative epoch) only while it has no members; else from a member at its epoch.
    pub fn validate_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        version: i16,
    ) -> Option<ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return None;
        }
        let Some(member) = self.members.get(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if version < 9 {
            return Some(ResponseError::UnsupportedVersion);
        }
        (member_epoch != member.current.member_epoch).then_some(ResponseError::StaleMemberEpoch)
    }

    /// TxnOffsetCommit's check: as OffsetCommit, with a stale epoch as ILLEGAL_GENERATION, and no
    /// check at all for a producer that names no member.
    pub fn validate_txn_commit(&self, member_id: &str, member_epoch: i32) -> Option<ResponseError> {
        if member_epoch == -1 && member_id.is_empty() {
            return None;
        }
        match self.validate_commit(member_id, member_epoch, i16::MAX) {
            Some(ResponseError::StaleMemberEpoch) => Some(ResponseError::IllegalGeneration),
            other => other,
        }
    }

    /// OffsetFetch v9's check, when the member says who it is.
    pub fn validate_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Option<ResponseError> {
        if member_id.is_none() && member_epoch < 0 {
            return None;
        }
        let Some(member) = self.members.get(member_id.unwrap_or_default()) else {
            return Some(ResponseError::UnknownMemberId);
        };
        (member_epoch != member.current.member_epoch).then_some(ResponseError::StaleMemberEpoch)
    }

    // ---- Internals ----

    /// The topics the members subscribe to that exist (names and regular expressions), with the
    /// hash of their ids and partition counts.
    fn subscribed_topics(
        &mut self,
        topics: &dyn TopicSource,
    ) -> (BTreeMap<String, (Uuid, i32)>, i64) {
        if let Some(cache) = &self.subscription_cache {
            if cache.metadata_version == topics.version() {
                return (cache.topics.clone(), cache.hash);
            }
        }
        let (resolved, hash) = self.resolve_subscriptions(topics);
        self.subscription_cache = Some(SubscriptionCache {
            metadata_version: topics.version(),
            topics: resolved.clone(),
            hash,
        });
        (resolved, hash)
    }

    fn resolve_subscriptions(
        &mut self,
        topics: &dyn TopicSource,
    ) -> (BTreeMap<String, (Uuid, i32)>, i64) {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut regexes: BTreeSet<String> = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.metadata.subscribed_topic_names.iter().cloned());
            if let Some(r) = &m.metadata.subscribed_topic_regex {
                regexes.insert(r.clone());
            }
        }
        if !regexes.is_empty() {
            let all = topics.topic_names();
            for r in &regexes {
                let Ok(compiled) = self.compiled(r) else {
                    continue;
                };
                names.extend(
                    all.iter()
                        .filter(|t| compiled.is_match(t) && topics.describable(t))
                        .cloned(),
                );
            }
        }
        let resolved: BTreeMap<String, (Uuid, i32)> = names
            .into_iter()
            .filter_map(|n| topics.topic(&n).map(|t| (n, t)))
            .collect();
        // FNV-1a over (name, id, partitions) in name order: stable across releases and restarts.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (name, (id, count)) in &resolved {
            eat(name.as_bytes());
            eat(&[0]);
            eat(id.as_bytes());
            eat(&count.to_be_bytes());
        }
        let hash = if resolved.is_empty() { 0 } else { hash as i64 };
        (resolved, hash)
    }

    /// `regex` compiled, from the cache of the members' ones (which keeps only those in use).
    fn compiled(&mut self, regex: &str) -> Result<Regex, regex::Error> {
        if let Some(r) = self.regexes.get(regex) {
            return Ok(r.clone());
        }
        let compiled = full_match(regex)?;
        let in_use: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.metadata.subscribed_topic_regex.as_ref())
            .collect();
        self.regexes.retain(|k, _| in_use.contains(k));
        self.regexes.insert(regex.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// Every member's target. `subscribed` holds every existing topic some member subscribes to,
    /// so a member's regular expression is matched against it alone.
    fn compute_targets(
        &mut self,
        subscribed: &BTreeMap<String, (Uuid, i32)>,
    ) -> BTreeMap<String, TopicPartitions> {
        let mut member_topics: Vec<(String, BTreeSet<Uuid>)> = Vec::new();
        let members: Vec<(String, MemberMetadata)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.metadata.clone()))
            .collect();
        for (id, metadata) in members {
            let mut set: BTreeSet<Uuid> = metadata
                .subscribed_topic_names
                .iter()
                .filter_map(|n| subscribed.get(n).map(|(t, _)| *t))
                .collect();
            if let Some(r) = &metadata.subscribed_topic_regex {
                if let Ok(compiled) = self.compiled(r) {
                    set.extend(
                        subscribed
                            .iter()
                            .filter(|(n, _)| compiled.is_match(n))
                            .map(|(_, (t, _))| *t),
                    );
                }
            }
            member_topics.push((id, set));
        }
        let specs: Vec<MemberSpec<'_>> = member_topics
            .iter()
            .map(|(id, set)| MemberSpec {
                member_id: id,
                instance_id: self
                    .members
                    .get(id)
                    .and_then(|m| m.metadata.instance_id.as_deref()),
                topics: set.clone(),
                current: self.targets.get(id),
            })
            .collect();
        let partitions: BTreeMap<Uuid, i32> = subscribed.values().copied().collect();
        assignor::assign(self.assignor(), &specs, &partitions)
    }

    /// Kafka's `CurrentAssignmentBuilder.build`: where the member goes next. A member in the
    /// Unknown state got here only with an empty owned list (the heartbeat refused the rest).
    fn reconcile(
        &self,
        member_id: &str,
        current: &CurrentAssignment,
        owned: Option<&TopicPartitions>,
    ) -> CurrentAssignment {
        let target_epoch = self.assignment_epoch;
        match current.state {
            MemberState::Stable if current.member_epoch == target_epoch => current.clone(),
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.next_assignment(member_id, current, current.member_epoch, owned)
            }
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &current.pending_revocation) {
                    current.clone()
                } else {
                    let epoch = (current.member_epoch + 1).min(target_epoch);
                    self.next_assignment(member_id, current, epoch, owned)
                }
            }
            MemberState::Unknown => self.next_assignment(member_id, current, target_epoch, owned),
        }
    }

    fn next_assignment(
        &self,
        member_id: &str,
        current: &CurrentAssignment,
        epoch: i32,
        owned: Option<&TopicPartitions>,
    ) -> CurrentAssignment {
        let empty = TopicPartitions::new();
        let target = self.targets.get(member_id).unwrap_or(&empty);
        let mut assigned = TopicPartitions::new();
        let mut revoking = TopicPartitions::new();
        let mut pending = TopicPartitions::new();
        let mut unreleased = false;
        let topics: BTreeSet<&Uuid> = target.keys().chain(current.assigned.keys()).collect();
        for topic in topics {
            let want = target.get(topic).cloned().unwrap_or_default();
            let have = current.assigned.get(topic).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let give_up: BTreeSet<i32> = have.difference(&keep).copied().collect();
            let mut get = BTreeSet::new();
            for p in want.difference(&keep) {
                if self.held_by_another(member_id, *topic, *p) {
                    unreleased = true;
                } else {
                    get.insert(*p);
                }
            }
            if !keep.is_empty() {
                assigned.insert(*topic, keep);
            }
            if !give_up.is_empty() {
                revoking.insert(*topic, give_up);
            }
            if !get.is_empty() {
                pending.insert(*topic, get);
            }
        }
        if !revoking.is_empty() && owns_any(owned, &revoking) {
            return CurrentAssignment {
                member_epoch: epoch,
                previous_member_epoch: current.member_epoch,
                state: MemberState::UnrevokedPartitions,
                assigned,
                pending_revocation: revoking,
            };
        }
        for (topic, ps) in pending {
            assigned.entry(topic).or_default().extend(ps);
        }
        CurrentAssignment {
            member_epoch: self.assignment_epoch,
            previous_member_epoch: current.member_epoch,
            state: if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            },
            assigned,
            pending_revocation: TopicPartitions::new(),
        }
    }
}

/// The member's records gone, in Kafka's order (assignment, target, metadata).
fn fence_records(changes: &mut Changes<'_>, member: &str) {
    let group = changes.group.id.clone();
    changes.emit(ConsumerRecord::CurrentAssignment {
        group: group.clone(),
        member: member.to_owned(),
        value: None,
    });
    if changes.group.targets.contains_key(member) {
        changes.emit(ConsumerRecord::TargetAssignmentMember {
            group: group.clone(),
            member: member.to_owned(),
            value: None,
        });
    }
    changes.emit(ConsumerRecord::Member {
        group,
        member: member.to_owned(),
        value: None,
    });
}

/// A new group epoch after members left: the next heartbeat computes a new target.
fn bump_records(changes: &mut Changes<'_>) {
    let group = changes.group.id.clone();
    let next = (changes.group.epoch + 1, changes.group.metadata_hash);
    changes.emit(ConsumerRecord::GroupMetadata {
        group,
        value: Some(next),
    });
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: an epoch ahead of the member's is fenced; one
/// behind is accepted only as the previous epoch with partitions it still has (the reply that moved
/// it on was lost).
fn check_epoch(
    member: &Member,
    received: i32,
    owned: Option<&TopicPartitions>,
) -> Result<(), (ResponseError, String)> {
    let epoch = member.current.member_epoch;
    let fenced = || {
        Err((
            ResponseError::FencedMemberEpoch,
            format!("member epoch {received} is not the member's ({epoch})"),
        ))
    };
    if received > epoch {
        return fenced();
    }
    if received < epoch {
        let subset = owned.is_some_and(|o| {
            o.iter().all(|(t, ps)| {
                member
                    .current
                    .assigned
                    .get(t)
                    .is_some_and(|have| ps.is_subset(have))
            })
        });
        if received != member.current.previous_member_epoch || !subset {
            return fenced();
        }
    }
    Ok(())
}

/// Whether the member still owns any of `partitions`; a member that did not say owns them all.
fn owns_any(owned: Option<&TopicPartitions>, partitions: &TopicPartitions) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(t, ps)| {
        partitions
            .get(t)
            .is_some_and(|revoking| !ps.is_disjoint(revoking))
    })
}

/// A regular expression matched against whole topic names (RE2 syntax, as Kafka's RE2/J).
/// Compiled programs are capped, so a hostile pattern cannot take the coordinator's memory.
fn full_match(regex: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(1 << 20)
        .build()
}

#[cfg(test)]
mod tests;
