//! `GroupCoordinator`: which offsets-topic partitions this broker leads (and so which groups it
//! coordinates), loading and unloading them as leadership moves, the timers of every group, and the
//! operations the group handlers call.
//!
//! What must stay true: a shard is served only after its partition is replayed, and only while the
//! metadata says this broker leads that partition at the epoch it was loaded for; every decision on
//! a group is taken under its shard's lock, and the records it needs are queued before that lock is
//! released (so the log sees them in decision order).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::topic_name::is_internal_topic;
use chronik_metadata::{BrokerId, MetadataImage};
use kafka_protocol::error::ResponseError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::classic_group::{
    ClassicGroup, GroupState, GroupSummary, JoinRequest, JoinResponse, Reply, SyncRequest,
    SyncResponse,
};
use super::consumer_group::{ConsumerGroupState, Heartbeat, HeartbeatReply, TopicSource};
use super::consumer_records::ConsumerRecord;
use super::records::{OffsetKey, OffsetValue, OffsetsRecord};
use super::shard::{replay, CommittedOffset, Shard, ShardState};
use super::{GroupConfig, OFFSETS_TOPIC};
use crate::controller_client::ControllerClient;
pub use crate::coordinator_runtime::CoordinatorEndpoint;
use crate::coordinator_runtime::{
    coordinator_endpoint, create_internal_topic, CoordinatorShard, InternalTopic, Load, MinInsync,
    Shards, Slot, TopicSpec,
};
use crate::log::now_ms;
use crate::metadata::MetadataCache;
use crate::replica::ReplicaManager;

/// How often group timers (sessions, join phases) are checked.
const TICK: Duration = Duration::from_millis(100);
/// Kafka's `offset.metadata.max.bytes`.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

const OFFSETS: InternalTopic = InternalTopic {
    name: OFFSETS_TOPIC,
    serves: "groups",
};

/// One offset to commit.
#[derive(Clone, Debug)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// What the coordinator holds, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorStats {
    pub loaded_partitions: usize,
    pub loading_partitions: usize,
    pub groups: usize,
    pub members: usize,
}

/// A group this broker coordinates, for `/metrics`: its state, members and committed offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub group_id: String,
    pub state: &'static str,
    pub members: usize,
    /// Committed offsets by (topic, partition).
    pub offsets: Vec<((String, i32), i64)>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// Kafka's state name (`Stable`, `Empty`, ...; a consumer group's own set).
    pub state: &'static str,
    /// Kafka's `Group.GroupType` name: `classic` or `consumer`.
    pub group_type: &'static str,
}

/// Kafka's group type names (ListGroups v5).
pub const CLASSIC_GROUP_TYPE: &str = "classic";
pub const CONSUMER_GROUP_TYPE: &str = "consumer";

/// Whether the principal of the heartbeat at hand may DESCRIBE a topic.
pub type Describable<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// What the coordinator's metadata image says of topics, for consumer groups. A regular expression
/// matches only the topics the heartbeating member's principal may DESCRIBE, as Kafka resolves a
/// group's regular expressions with the ACLs of the member whose heartbeat refreshes them
/// (KAFKA-18813).
struct ImageTopics<'a> {
    image: &'a MetadataImage,
    describable: Describable<'a>,
}

impl TopicSource for ImageTopics<'_> {
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        self.image
            .topic_by_name(name)
            .map(|t| (t.id, i32::try_from(t.partitions.len()).unwrap_or(i32::MAX)))
    }

    fn topic_names(&self) -> Vec<String> {
        self.image
            .topics
            .values()
            .filter(|t| !is_internal_topic(&t.name))
            .map(|t| t.name.clone())
            .collect()
    }

    fn describable(&self, name: &str) -> bool {
        (self.describable)(name)
    }

    fn version(&self) -> u64 {
        self.image.offset
    }
}

/// A consumer group (KIP-848) as ConsumerGroupDescribe shows it.
#[derive(Clone, Debug)]
pub struct ConsumerGroupDescription {
    pub state: ConsumerGroupState,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<DescribedConsumerMember>,
}

#[derive(Clone, Debug)]
pub struct DescribedConsumerMember {
    pub member_id: String,
    pub member_epoch: i32,
    pub metadata: super::consumer_records::MemberMetadata,
    pub assigned: super::consumer_records::TopicPartitions,
    pub target: super::consumer_records::TopicPartitions,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    metadata: Arc<MetadataCache>,
    replicas: Arc<ReplicaManager>,
    controller: Arc<ControllerClient>,
    shards: Shards<Shard>,
    creating: tokio::sync::Mutex<()>,
    /// Transaction markers committed to a partition while it was loading, by partition: `(producer
    /// id, commit)`, applied once its replay is done (a marker past the replay's end is not in it).
    early_markers: std::sync::Mutex<HashMap<i32, Vec<(i64, bool)>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl GroupCoordinator {
    pub fn new(
        broker_id: BrokerId,
        config: GroupConfig,
        metadata: Arc<MetadataCache>,
        replicas: Arc<ReplicaManager>,
        controller: Arc<ControllerClient>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(GroupCoordinator {
            config,
            metadata,
            replicas,
            controller,
            shards: Shards::new(OFFSETS, broker_id),
            creating: tokio::sync::Mutex::new(()),
            early_markers: std::sync::Mutex::new(HashMap::new()),
            tracker,
            cancel,
        })
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn stats(&self) -> CoordinatorStats {
        let mut stats = CoordinatorStats::default();
        for slot in self.shards.read().values() {
            match slot {
                Slot::Loading { .. } => stats.loading_partitions += 1,
                Slot::Loaded(shard) => {
                    stats.loaded_partitions += 1;
                    let state = shard.lock();
                    stats.groups += state.group_ids().len();
                    stats.members += state
                        .groups
                        .values()
                        .map(|g| g.member_count())
                        .sum::<usize>()
                        + state
                            .consumer_groups
                            .values()
                            .map(|g| g.members().len())
                            .sum::<usize>();
                }
            }
        }
        stats
    }

    /// Every group of the loaded offsets partitions, with its committed offsets (a group with
    /// offsets and no live membership shows as `Empty`).
    pub fn snapshot(&self) -> Vec<GroupSnapshot> {
        let mut groups = Vec::new();
        for slot in self.shards.read().values() {
            let Slot::Loaded(shard) = slot else { continue };
            let state = shard.lock();
            for group_id in state.group_ids() {
                let group = state.groups.get(&group_id);
                let consumer = state.consumer_groups.get(&group_id);
                groups.push(GroupSnapshot {
                    state: match consumer {
                        Some(g) => g.state().name(),
                        None => group.map_or("Empty", |g| g.state().name()),
                    },
                    members: match consumer {
                        Some(g) => g.members().len(),
                        None => group.map_or(0, |g| g.member_count()),
                    },
                    offsets: state
                        .offsets
                        .get(&group_id)
                        .map(|offsets| {
                            offsets
                                .iter()
                                .map(|(tp, committed)| (tp.clone(), committed.value.offset))
                                .collect()
                        })
                        .unwrap_or_default(),
                    group_id,
                });
            }
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    /// Follows leadership of the offsets topic and runs group timers until cancelled.
    pub async fn run(self: Arc<Self>) {
        let mut images = self.metadata.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expiration = tokio::time::interval(self.config.offsets_retention_check_interval);
        expiration.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let image = self.metadata.current();
            self.on_metadata(&image);
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => {
                        self.shards.unload_all();
                        return;
                    }
                    changed = images.changed() => {
                        if changed.is_err() {
                            self.shards.unload_all();
                            return;
                        }
                        break;
                    }
                    _ = tick.tick() => self.tick(),
                    _ = expiration.tick() => self.expire_offsets(),
                }
            }
        }
    }

    /// Loads the partitions this broker now leads and unloads the ones it no longer does.
    fn on_metadata(self: &Arc<Self>, image: &MetadataImage) {
        let to_load = self.shards.on_metadata(image, |index| {
            // Markers noted for an earlier load that never finished may predate a later
            // transaction of their producer in the log: this load starts with none.
            self.early_markers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&index);
        });
        for load in to_load {
            self.tracker.spawn(self.clone().load(load));
        }
    }

    /// Replays one offsets partition once the replica manager has made this broker its leader, then
    /// starts serving its groups.
    async fn load(self: Arc<Self>, load: Load) {
        let started = Instant::now();
        let Some((partition, replayed)) = self
            .shards
            .lead_and_replay(&self.replicas, &self.cancel, load, replay)
            .await
        else {
            return;
        };
        let Load {
            index,
            leader_epoch,
            ..
        } = load;
        let (records, unreadable) = (replayed.records, replayed.unreadable);
        let state = replayed.into_state(Instant::now(), self.config.consumer.session_timeout);
        let (groups, offsets) = (
            state.group_ids().len(),
            state.offsets.values().map(|o| o.len()).sum::<usize>(),
        );
        let shard = Shard::start(
            partition,
            leader_epoch,
            state,
            self.replicas.clone(),
            self.config.commit_timeout,
            &self.tracker,
            self.cancel.child_token(),
        );
        let installed = self.shards.install(index, leader_epoch, shard, |shard| {
            // Applying a marker the replay already saw again changes nothing: the producer's next
            // transaction cannot have offsets here before this one's marker.
            let early = self
                .early_markers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&index)
                .unwrap_or_default();
            let mut state = shard.lock();
            for (producer_id, commit) in early {
                state.complete_transaction(producer_id, commit);
            }
        });
        if installed {
            info!(
                partition = index,
                leader_epoch,
                groups,
                offsets,
                records,
                unreadable,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded offsets partition"
            );
        }
    }

    fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        for shard in self.loaded_shards() {
            if shard.is_poisoned() {
                // Memory went ahead of the log: start again from the log.
                if self.shards.unload_loaded(shard.partition_index, &shard) {
                    warn!(
                        partition = shard.partition_index,
                        "reloading an offsets partition"
                    );
                    self.on_metadata(&self.metadata.current());
                }
                continue;
            }
            let mut state = shard.lock();
            let ids: Vec<String> = state.groups.keys().cloned().collect();
            for id in ids {
                if let Some(group) = state.groups.get_mut(&id) {
                    group.tick(&self.config, now);
                }
                self.queue_persist(&shard, &mut state, &id);
                // A group whose only trace was a lapsed pending member is forgotten.
                state.drop_if_unused(&id);
            }
            let session = self.config.consumer.session_timeout;
            // Members leave only once that can be written; until then their deadlines wait.
            let ids: Vec<String> = if shard.writable() {
                state.consumer_groups.keys().cloned().collect()
            } else {
                Vec::new()
            };
            for id in ids {
                let Some(group) = state.consumer_groups.get_mut(&id) else {
                    continue;
                };
                let (records, expired) = group.expire(now, session);
                if records.is_empty() {
                    continue;
                }
                info!(group = %id, members = ?expired, "consumer group members expired");
                // Nobody waits: a write that fails reloads the partition (`Shard::poisoned`).
                drop(self.queue_consumer(&shard, &mut state, &id, Vec::new(), records));
            }
        }
    }

    /// Queues a consumer group's records after `prefix`; `None` when there is nothing to write. The
    /// group counts the write, and learns when it is committed (see [`Self::committed_writes`]).
    fn queue_consumer(
        &self,
        shard: &Arc<Shard>,
        state: &mut ShardState,
        group_id: &str,
        mut prefix: Vec<OffsetsRecord>,
        records: Vec<ConsumerRecord>,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<i64, ResponseError>>> {
        prefix.extend(records.into_iter().map(OffsetsRecord::Consumer));
        if prefix.is_empty() {
            return None;
        }
        let done = shard.write_applied(prefix);
        let Some(group) = state.consumer_groups.get_mut(group_id) else {
            return Some(done);
        };
        group.writes_queued += 1;
        let (sequence, committed) = (group.writes_queued, group.writes_done.clone());
        // Relays the outcome to the caller and counts the write as done for the group, whatever
        // it was: a write that failed before reaching the log poisoned the shard (which then
        // reloads), and one that timed out waiting for the ISR is in the log.
        let (relay, result) = tokio::sync::oneshot::channel();
        self.tracker.spawn(async move {
            let outcome = done.await.unwrap_or(Err(ResponseError::NotCoordinator));
            committed.send_modify(|done| *done = (*done).max(sequence));
            let _ = relay.send(outcome);
        });
        Some(result)
    }

    /// Waits until the group's writes up to `queued` are done, so a reply that writes nothing does not
    /// show member state the log may not hold yet (Kafka's runtime holds such replies until the last
    /// written offset is committed). A write that failed before the log poisoned the shard, and
    /// then the reply is NOT_COORDINATOR (the member finds the reloaded coordinator).
    async fn committed_writes(
        &self,
        shard: &Shard,
        queued: u64,
        mut committed: tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), ResponseError> {
        let waited = tokio::time::timeout(
            self.config.commit_timeout,
            committed.wait_for(|done| *done >= queued),
        )
        .await
        .map(|r| r.is_ok());
        if shard.is_poisoned() || shard.lock().unloaded {
            return Err(ResponseError::NotCoordinator);
        }
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(ResponseError::NotCoordinator),
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Writes tombstones for expired offsets (and for Empty groups left without any).
    fn expire_offsets(&self) {
        let retention_ms =
            i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        for shard in self.loaded_shards() {
            let mut state = shard.lock();
            let (expired, mut emptied) = state.expired_offsets(now, retention_ms);
            let mut records: Vec<OffsetsRecord> = Vec::with_capacity(expired.len() + emptied.len());
            let offsets = expired.len();
            for key in expired {
                state.apply_offset(key.clone(), None, i64::MAX);
                records.push(OffsetsRecord::Offset { key, value: None });
            }
            for group_id in &emptied {
                if let Some(mut group) = state.groups.remove(group_id) {
                    group.transition_to_dead();
                }
                records.push(OffsetsRecord::Group {
                    group: group_id.clone(),
                    value: None,
                });
            }
            // A consumer group without members or offsets is gone, as in Kafka's cleanup.
            let unused: Vec<String> = state
                .consumer_groups
                .iter()
                .filter(|(id, g)| g.is_empty() && !state.offsets.contains_key(*id))
                .map(|(id, _)| id.clone())
                .collect();
            for group_id in unused {
                if let Some(group) = state.consumer_groups.remove(&group_id) {
                    records.extend(group.tombstones().into_iter().map(OffsetsRecord::Consumer));
                }
                emptied.push(group_id);
            }
            if records.is_empty() {
                continue;
            }
            info!(
                partition = shard.partition_index,
                offsets,
                groups = emptied.len(),
                "expiring committed offsets and unused groups"
            );
            // Forgotten already; a tombstone lost with the leadership only lets the next leader
            // expire the offset again.
            drop(shard.write_then(records));
        }
    }

    fn loaded_shards(&self) -> Vec<Arc<Shard>> {
        self.shards.loaded()
    }

    /// The shard coordinating `group_id`: NOT_COORDINATOR if another broker does (or nobody knows
    /// yet), COORDINATOR_LOAD_IN_PROGRESS while it loads.
    /// The `__consumer_offsets` partition of `group_id`, when this broker coordinates the group
    /// (NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS, otherwise).
    pub fn offsets_partition(&self, group_id: &str) -> Result<i32, ResponseError> {
        Ok(self.shard(group_id)?.partition_index)
    }

    fn shard(&self, group_id: &str) -> Result<Arc<Shard>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.shards.get(&self.metadata.current(), group_id)
    }

    /// Queues the group's pending metadata write, if it has one; a write that completes a SyncGroup
    /// reports back to the group.
    fn queue_persist(self: &Arc<Self>, shard: &Arc<Shard>, state: &mut ShardState, group_id: &str) {
        let Some(group) = state.groups.get_mut(group_id) else {
            return;
        };
        let Some((generation, value, completes_sync)) = group.take_persist() else {
            return;
        };
        let done = shard.write_then(vec![OffsetsRecord::Group {
            group: group_id.to_owned(),
            value: Some(value),
        }]);
        let this = self.clone();
        let shard = shard.clone();
        let group_id = group_id.to_owned();
        self.tracker.spawn(async move {
            let result = done.await.unwrap_or(Err(ResponseError::NotCoordinator));
            if let Err(e) = &result {
                warn!(group = %group_id, generation, "cannot write group metadata: {e:?}");
            }
            if !completes_sync {
                return;
            }
            let mut state = shard.lock();
            if let Some(group) = state.groups.get_mut(&group_id) {
                group.complete_sync_persist(
                    generation,
                    result.map(|_| ()),
                    &this.config,
                    Instant::now(),
                );
            }
            this.queue_persist(&shard, &mut state, &group_id);
        });
    }

    // ---- FindCoordinator ----

    /// The coordinator of `group_id` on `listener`. Creates the offsets topic on first use.
    pub async fn find_coordinator(
        &self,
        group_id: &str,
        listener: &str,
    ) -> Result<CoordinatorEndpoint, (ResponseError, &'static str)> {
        if group_id.is_empty() {
            return Err((ResponseError::InvalidRequest, "the group id is empty"));
        }
        let image = self.metadata.current();
        if let Some(endpoint) = coordinator_endpoint(&image, OFFSETS, group_id, listener)? {
            return Ok(endpoint);
        }
        let spec = TopicSpec {
            partitions: self.config.offsets_topic_num_partitions,
            replication_factor: self.config.offsets_topic_replication_factor,
            min_insync: MinInsync::OneFewer,
        };
        create_internal_topic(
            &self.controller,
            &self.metadata,
            &self.creating,
            &image,
            OFFSETS,
            &spec,
        )
        .await;
        Err((
            ResponseError::CoordinatorNotAvailable,
            "the offsets topic is being created",
        ))
    }

    // ---- Membership ----

    pub async fn join_group(self: &Arc<Self>, group_id: &str, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let shard = match self.shard(group_id) {
            Ok(shard) => shard,
            Err(error) => return JoinResponse::error(error, &member_id),
        };
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return JoinResponse::error(ResponseError::InvalidSessionTimeout, &member_id);
        }
        let reply = {
            let mut state = match shard.lock_live() {
                Ok(state) => state,
                Err(error) => return JoinResponse::error(error, &member_id),
            };
            // A consumer group with members stays one; an empty one becomes classic.
            if let Some(consumer) = state.consumer_groups.get(group_id) {
                if !consumer.is_empty() {
                    return JoinResponse::error(
                        ResponseError::InconsistentGroupProtocol,
                        &member_id,
                    );
                }
                let tombstones: Vec<OffsetsRecord> = consumer
                    .tombstones()
                    .into_iter()
                    .map(OffsetsRecord::Consumer)
                    .collect();
                state.consumer_groups.remove(group_id);
                info!(group = %group_id, "empty consumer group converted to a classic group");
                drop(shard.write_applied(tombstones));
            }
            if !member_id.is_empty() && !state.groups.contains_key(group_id) {
                return JoinResponse::error(ResponseError::UnknownMemberId, &member_id);
            }
            let group = state
                .groups
                .entry(group_id.to_owned())
                .or_insert_with(|| ClassicGroup::new(group_id.to_owned()));
            let reply = group.join(req, &self.config, Instant::now());
            self.queue_persist(&shard, &mut state, group_id);
            state.drop_if_unused(group_id);
            reply
        };
        match reply {
            Reply::Now(response) => response,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| JoinResponse::error(ResponseError::NotCoordinator, &member_id)),
        }
    }

    pub async fn sync_group(self: &Arc<Self>, group_id: &str, req: SyncRequest) -> SyncResponse {
        let shard = match self.shard(group_id) {
            Ok(shard) => shard,
            Err(error) => return SyncResponse::error(error),
        };
        let reply = {
            let mut state = match shard.lock_live() {
                Ok(state) => state,
                Err(error) => return SyncResponse::error(error),
            };
            let Some(group) = state.groups.get_mut(group_id) else {
                return SyncResponse::error(ResponseError::UnknownMemberId);
            };
            let reply = group.sync(req, Instant::now());
            self.queue_persist(&shard, &mut state, group_id);
            reply
        };
        match reply {
            Reply::Now(response) => response,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| SyncResponse::error(ResponseError::NotCoordinator)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        let shard = match self.shard(group_id) {
            Ok(shard) => shard,
            Err(error) => return Some(error),
        };
        let mut state = match shard.lock_live() {
            Ok(state) => state,
            Err(error) => return Some(error),
        };
        match state.groups.get_mut(group_id) {
            Some(group) => {
                group.heartbeat(generation, member_id, group_instance_id, Instant::now())
            }
            None => Some(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup: one result per (member id, group instance id), or a group-level error. Members
    /// of a consumer group are removed once the records saying so are committed.
    pub async fn leave_group(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let shard = self.shard(group_id)?;
        let (results, done) = {
            let mut state = shard.lock_live()?;
            if !state.consumer_groups.contains_key(group_id) {
                return self.leave_classic_group(&shard, &mut state, group_id, members);
            }
            self.remove_consumer_members(&shard, &mut state, group_id, members)?
        };
        if let Some(done) = done {
            match done.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ResponseError::NotCoordinator),
            }
        }
        Ok(results)
    }

    fn leave_classic_group(
        self: &Arc<Self>,
        shard: &Arc<Shard>,
        state: &mut ShardState,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let Some(group) = state.groups.get_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Some(ResponseError::UnknownMemberId))
                .collect());
        };
        if group.state() == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let now = Instant::now();
        let results = members
            .iter()
            .map(|(member_id, instance)| {
                group.leave(member_id, instance.as_deref(), &self.config, now)
            })
            .collect();
        self.queue_persist(shard, state, group_id);
        Ok(results)
    }

    // ---- Consumer groups (KIP-848) ----

    /// ConsumerGroupHeartbeat: a member joins, heartbeats or leaves; the reply once the records of
    /// what it decided are committed. `describable` says which topics the member's principal may
    /// DESCRIBE (regular expressions match only those).
    pub async fn consumer_group_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        request: Heartbeat,
        describable: Describable<'_>,
    ) -> Result<HeartbeatReply, (ResponseError, String)> {
        let plain = |e: ResponseError| (e, String::new());
        let shard = self.shard(group_id).map_err(plain)?;
        let image = self.metadata.current();
        let config = &self.config.consumer;
        let now = Instant::now();
        let epoch = request.member_epoch;
        let (reply, done, pending) = {
            let mut state = shard.lock_live().map_err(plain)?;
            let writable = shard.writable();
            let unwritable = || {
                (
                    ResponseError::CoordinatorNotAvailable,
                    "the offsets topic partition's in-sync replicas are below its min.insync.replicas"
                        .to_owned(),
                )
            };
            let not_consumer = || {
                (
                    ResponseError::GroupIdNotFound,
                    format!("group {group_id} is not a consumer group"),
                )
            };
            if epoch < 0 {
                let group = state
                    .consumer_groups
                    .get_mut(group_id)
                    .ok_or_else(not_consumer)?;
                if !writable {
                    return Err(unwritable());
                }
                let (reply, records) = group.leave(
                    &request.member_id,
                    request.instance_id.as_deref(),
                    epoch,
                    now,
                    config.session_timeout,
                )?;
                let done = self.queue_consumer(&shard, &mut state, group_id, Vec::new(), records);
                (reply, done, None)
            } else {
                // An empty classic group becomes a consumer group; one with members stays classic.
                let mut prefix = Vec::new();
                if let Some(classic) = state.groups.get(group_id) {
                    if epoch != 0 || !classic.is_empty() {
                        return Err(not_consumer());
                    }
                    prefix.push(OffsetsRecord::Group {
                        group: group_id.to_owned(),
                        value: None,
                    });
                }
                if !state.consumer_groups.contains_key(group_id) {
                    if epoch != 0 {
                        return Err(not_consumer());
                    }
                    state.consumer_groups.insert(
                        group_id.to_owned(),
                        super::consumer_group::ConsumerGroup::new(group_id.to_owned()),
                    );
                }
                let group = state
                    .consumer_groups
                    .get_mut(group_id)
                    .ok_or_else(not_consumer)?;
                let topics = ImageTopics {
                    image: &image,
                    describable,
                };
                let outcome = if writable {
                    group.heartbeat(request, &topics, config, now)
                } else {
                    // Nothing can be written: decide on a copy, kept only if it wrote nothing (a
                    // member kept alive), so memory does not go ahead of the log.
                    let mut copy = group.clone();
                    match copy.heartbeat(request, &topics, config, now) {
                        Ok((reply, records)) if records.is_empty() && prefix.is_empty() => {
                            *group = copy;
                            Ok((reply, records))
                        }
                        Ok(_) => Err(unwritable()),
                        Err(e) => Err(e),
                    }
                };
                let (reply, records) = match outcome {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        state.drop_if_unused(group_id);
                        return Err(e);
                    }
                };
                if !prefix.is_empty() {
                    if let Some(mut classic) = state.groups.remove(group_id) {
                        classic.transition_to_dead();
                    }
                    info!(group = %group_id, "empty classic group converted to a consumer group");
                }
                let done = self.queue_consumer(&shard, &mut state, group_id, prefix, records);
                // A reply that writes nothing waits for the group's earlier writes.
                let pending = match (&done, state.consumer_groups.get(group_id)) {
                    (None, Some(group)) if *group.writes_done.borrow() < group.writes_queued => {
                        Some((group.writes_queued, group.writes_done.subscribe()))
                    }
                    _ => None,
                };
                (reply, done, pending)
            }
        };
        match (done, pending) {
            (Some(done), _) => match done.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(plain(e)),
                Err(_) => return Err(plain(ResponseError::NotCoordinator)),
            },
            (None, Some((queued, committed))) => self
                .committed_writes(&shard, queued, committed)
                .await
                .map_err(plain)?,
            (None, None) => {}
        }
        Ok(reply)
    }

    /// ConsumerGroupDescribe of one group: GROUP_ID_NOT_FOUND unless it is a consumer group.
    pub fn describe_consumer_group(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, ResponseError> {
        let shard = self.shard(group_id)?;
        let state = shard.lock_live()?;
        let group = state
            .consumer_groups
            .get(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        Ok(ConsumerGroupDescription {
            state: group.state(),
            epoch: group.epoch(),
            assignment_epoch: group.assignment_epoch(),
            assignor: group.assignor(),
            members: group
                .members()
                .iter()
                .map(|(id, m)| DescribedConsumerMember {
                    member_id: id.clone(),
                    member_epoch: m.current.member_epoch,
                    metadata: m.metadata.clone(),
                    assigned: m.current.assigned.clone(),
                    target: group.target(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// LeaveGroup on a consumer group (an admin removing members): each member, named by its id or
    /// its instance id, is removed as if its session had ended. The results, and the write to wait
    /// for; refused (COORDINATOR_NOT_AVAILABLE) before anything is removed while the offsets
    /// partition's in-sync replicas are below its min.insync.replicas, as the heartbeats' decisions
    /// are.
    #[allow(clippy::type_complexity)]
    fn remove_consumer_members(
        &self,
        shard: &Arc<Shard>,
        state: &mut ShardState,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<
        (
            Vec<Option<ResponseError>>,
            Option<tokio::sync::oneshot::Receiver<Result<i64, ResponseError>>>,
        ),
        ResponseError,
    > {
        let writable = shard.writable();
        let session = self.config.consumer.session_timeout;
        let now = Instant::now();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            let Some(group) = state.consumer_groups.get_mut(group_id) else {
                results.push(Some(ResponseError::UnknownMemberId));
                continue;
            };
            let found = match instance {
                Some(instance) => group
                    .members()
                    .iter()
                    .find(|(_, m)| m.metadata.instance_id.as_deref() == Some(instance.as_str()))
                    .map(|(id, _)| id.clone()),
                None => Some(member_id.clone()),
            };
            let result = match found {
                Some(id) if instance.is_some() && !member_id.is_empty() && id != *member_id => {
                    Some(ResponseError::FencedInstanceId)
                }
                // Nothing is removed before this check: a leave of unknown members is answered
                // as such, whatever the replicas.
                Some(id) if !writable && group.members().contains_key(&id) => {
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
                Some(id) => match group.remove_member(&id, now, session) {
                    Some(removed) => {
                        records.extend(removed);
                        None
                    }
                    None => Some(ResponseError::UnknownMemberId),
                },
                None => Some(ResponseError::UnknownMemberId),
            };
            results.push(result);
        }
        let done = self.queue_consumer(shard, state, group_id, Vec::new(), records);
        Ok((results, done))
    }

    // ---- Offsets ----

    /// OffsetCommit: validates the committer against the group, writes one record per partition and
    /// applies them once committed. Returns a result per partition, or a group-level error.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_offsets(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
        version: i16,
    ) -> Result<Vec<(OffsetCommit, Option<ResponseError>)>, ResponseError> {
        let shard = self.shard(group_id)?;
        let image = self.metadata.current();
        let now_ms = now_ms();
        let (results, records, written);
        {
            let mut state = shard.lock_live()?;
            // A consumer group's commits are checked against the member epoch (KIP-848).
            if let Some(group) = state.consumer_groups.get(group_id) {
                if let Some(error) = group.validate_commit(member_id, generation, version) {
                    return Err(error);
                }
            } else if !state.groups.contains_key(group_id) {
                if generation >= 0 {
                    // v9 is the consumer protocol's version: its members learn the group is gone.
                    return Err(if version >= 9 {
                        ResponseError::GroupIdNotFound
                    } else {
                        ResponseError::IllegalGeneration
                    });
                }
                // A commit from outside group management creates an empty group, as in Kafka.
                state
                    .groups
                    .insert(group_id.to_owned(), ClassicGroup::new(group_id.to_owned()));
            }
            if let Some(group) = state.groups.get_mut(group_id) {
                if let Some(error) =
                    group.validate_commit(generation, member_id, group_instance_id, Instant::now())
                {
                    return Err(error);
                }
            }
            (results, records, written) = offset_records(group_id, commits, &image, now_ms);
        }
        self.write_offsets(&shard, results, records, written).await
    }

    /// Writes checked commits and applies them once committed.
    async fn write_offsets(
        &self,
        shard: &Shard,
        mut results: Vec<(OffsetCommit, Option<ResponseError>)>,
        records: Vec<OffsetsRecord>,
        written: Vec<(OffsetKey, OffsetValue, usize)>,
    ) -> Result<Vec<(OffsetCommit, Option<ResponseError>)>, ResponseError> {
        if records.is_empty() {
            return Ok(results);
        }
        match shard.write(records).await {
            Ok(base_offset) => {
                let mut state = shard.lock();
                for (i, (key, value, _)) in written.into_iter().enumerate() {
                    state.apply_offset(key, Some(value), base_offset + i as i64);
                }
            }
            Err(error) => {
                for (_, _, index) in written {
                    results[index].1 = Some(error);
                }
            }
        }
        Ok(results)
    }

    /// TxnOffsetCommit (KIP-98): validates the committer against the group as OffsetCommit does, then
    /// writes the offsets as a transactional batch of the producer; once it is committed they are
    /// pending until the transaction's marker reaches this partition (`complete_transaction`).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_transactional_offsets(
        self: &Arc<Self>,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
    ) -> Result<Vec<(OffsetCommit, Option<ResponseError>)>, ResponseError> {
        let shard = self.shard(group_id)?;
        let image = self.metadata.current();
        let now_ms = now_ms();
        let (mut results, records, written);
        {
            let mut state = shard.lock_live()?;
            if let Some(group) = state.consumer_groups.get(group_id) {
                if let Some(error) = group.validate_txn_commit(member_id, generation) {
                    return Err(error);
                }
            } else {
                let group = state
                    .groups
                    .entry(group_id.to_owned())
                    .or_insert_with(|| ClassicGroup::new(group_id.to_owned()));
                if let Some(error) =
                    group.validate_txn_commit(generation, member_id, group_instance_id)
                {
                    state.drop_if_unused(group_id);
                    return Err(error);
                }
            }
            (results, records, written) = offset_records(group_id, commits, &image, now_ms);
        }
        if records.is_empty() {
            return Ok(results);
        }
        match shard
            .write_as(records, Some((producer_id, producer_epoch)))
            .await
        {
            Ok(base_offset) => {
                let mut state = shard.lock();
                let pending = state.pending_txn.entry(producer_id).or_default();
                for (i, (key, value, _)) in written.into_iter().enumerate() {
                    pending.push((key, value, base_offset + i as i64));
                }
            }
            Err(error) => {
                for (_, _, index) in written {
                    results[index].1 = Some(error);
                }
            }
        }
        Ok(results)
    }

    /// A transaction marker (KIP-98) was written to offsets-topic partition `offsets_partition` and
    /// is committed: the offsets that producer `producer_id` wrote with TxnOffsetCommit in that
    /// transaction become visible (`commit`) or are dropped. Called by WriteTxnMarkers once the marker
    /// is durable.
    pub fn complete_transaction(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) {
        let shard = match self.shards.read().get(&offsets_partition) {
            Some(Slot::Loaded(shard)) => shard.clone(),
            Some(Slot::Loading { .. }) => {
                // The replay may have read the log up to before this marker.
                self.early_markers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(offsets_partition)
                    .or_default()
                    .push((producer_id, commit));
                return;
            }
            // Not led here: whoever loads the partition replays the marker with the offsets.
            None => return,
        };
        let mut state = shard.lock();
        if state.pending_txn.contains_key(&producer_id) {
            debug!(
                partition = offsets_partition,
                producer_id, producer_epoch, commit, "transactional offsets completed"
            );
        }
        state.complete_transaction(producer_id, commit);
    }

    /// OffsetFetch: the committed offsets of the named partitions, or of every partition with one.
    /// With `require_stable`, a partition with a transactional offset still pending is
    /// UNSTABLE_OFFSET_COMMIT (KIP-447; clients retry).
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
        require_stable: bool,
        member: (Option<&str>, i32),
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>, Option<ResponseError>)>, ResponseError>
    {
        let shard = self.shard(group_id)?;
        let state = shard.lock_live()?;
        // OffsetFetch v9 from a consumer group's member names it and its epoch (KIP-848).
        if let Some(group) = state.consumer_groups.get(group_id) {
            if let Some(error) = group.validate_fetch(member.0, member.1) {
                return Err(error);
            }
        }
        let offsets = state.offsets.get(group_id);
        let unstable = |topic: &str, partition: i32| {
            (require_stable && state.has_pending_txn_offset(group_id, topic, partition))
                .then_some(ResponseError::UnstableOffsetCommit)
        };
        Ok(match partitions {
            Some(partitions) => partitions
                .into_iter()
                .map(|(topic, partition)| {
                    let unstable = unstable(&topic, partition);
                    let committed = offsets
                        .and_then(|o| o.get(&(topic.clone(), partition)))
                        .filter(|_| unstable.is_none())
                        .cloned();
                    (topic, partition, committed, unstable)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((topic, partition), c)| {
                    let unstable = unstable(topic, *partition);
                    let committed = Some(c.clone()).filter(|_| unstable.is_none());
                    (topic.clone(), *partition, committed, unstable)
                })
                .collect(),
        })
    }

    /// DeleteGroups: only groups without members; their metadata and offsets get tombstones.
    pub async fn delete_group(self: &Arc<Self>, group_id: &str) -> Option<ResponseError> {
        let shard = match self.shard(group_id) {
            Ok(shard) => shard,
            Err(error) => return Some(error),
        };
        let records = {
            let mut state = match shard.lock_live() {
                Ok(state) => state,
                Err(error) => return Some(error),
            };
            // Sessions that have run out end before the group is judged: Kafka expires each member
            // at its exact deadline, and our sweep runs only every TICK. (librdkafka's 0081 deletes
            // a group of static members, which do not leave on close, one session timeout after
            // their last commit.) The periodic tick persists whatever this changes.
            if let Some(group) = state.groups.get_mut(group_id) {
                group.tick(&self.config, Instant::now());
            }
            let consumer_tombstones = match state.consumer_groups.get(group_id) {
                Some(group) if !group.is_empty() => return Some(ResponseError::NonEmptyGroup),
                Some(group) => group.tombstones(),
                None => Vec::new(),
            };
            state.consumer_groups.remove(group_id);
            let has_group = state.groups.contains_key(group_id) || !consumer_tombstones.is_empty();
            let offsets = state.offsets.remove(group_id).unwrap_or_default();
            if !has_group && offsets.is_empty() {
                return Some(ResponseError::GroupIdNotFound);
            }
            if let Some(group) = state.groups.get(group_id) {
                match group.state() {
                    GroupState::Empty => {}
                    GroupState::Dead => {
                        state.offsets.insert(group_id.to_owned(), offsets);
                        return Some(ResponseError::GroupIdNotFound);
                    }
                    _ => {
                        state.offsets.insert(group_id.to_owned(), offsets);
                        return Some(ResponseError::NonEmptyGroup);
                    }
                }
            }
            if let Some(mut group) = state.groups.remove(group_id) {
                group.transition_to_dead();
            }
            let mut records: Vec<OffsetsRecord> = offsets
                .into_keys()
                .map(|(topic, partition)| OffsetsRecord::Offset {
                    key: OffsetKey {
                        group: group_id.to_owned(),
                        topic,
                        partition,
                    },
                    value: None,
                })
                .collect();
            if consumer_tombstones.is_empty() {
                records.push(OffsetsRecord::Group {
                    group: group_id.to_owned(),
                    value: None,
                });
            }
            records.extend(consumer_tombstones.into_iter().map(OffsetsRecord::Consumer));
            shard.write_applied(records)
        };
        match records.await {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(ResponseError::NotCoordinator),
        }
    }

    /// OffsetDelete: removes committed offsets of partitions the group is not subscribed to.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, Option<ResponseError>)>, ResponseError> {
        let shard = self.shard(group_id)?;
        let (results, done) = {
            let mut state = shard.lock_live()?;
            let group = state.groups.get(group_id);
            let consumer = state.consumer_groups.get(group_id);
            if group.is_none() && consumer.is_none() && !state.offsets.contains_key(group_id) {
                return Err(ResponseError::GroupIdNotFound);
            }
            if group.is_some_and(|g| g.state() == GroupState::Dead) {
                return Err(ResponseError::GroupIdNotFound);
            }
            let active = group.is_some_and(|g| g.state() != GroupState::Empty)
                || consumer.is_some_and(|g| !g.is_empty());
            let mut results = Vec::new();
            let mut records = Vec::new();
            for (topic, partition) in partitions {
                let subscribed = group.is_some_and(|g| g.is_subscribed_to(&topic))
                    || consumer.is_some_and(|g| g.is_subscribed_to(&topic));
                if active && subscribed {
                    results.push((
                        topic,
                        partition,
                        Some(ResponseError::GroupSubscribedToTopic),
                    ));
                    continue;
                }
                records.push(OffsetsRecord::Offset {
                    key: OffsetKey {
                        group: group_id.to_owned(),
                        topic: topic.clone(),
                        partition,
                    },
                    value: None,
                });
                results.push((topic, partition, None));
            }
            if let Some(offsets) = state.offsets.get_mut(group_id) {
                for (topic, partition, error) in &results {
                    if error.is_none() {
                        offsets.remove(&(topic.clone(), *partition));
                    }
                }
                if offsets.is_empty() {
                    state.offsets.remove(group_id);
                }
            }
            let done = (!records.is_empty()).then(|| shard.write_applied(records));
            (results, done)
        };
        if let Some(done) = done {
            match done.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(ResponseError::NotCoordinator),
            }
        }
        Ok(results)
    }

    // ---- Listing ----

    /// Every group this broker coordinates; COORDINATOR_LOAD_IN_PROGRESS alongside them while some
    /// partition is still loading.
    pub fn list_groups(&self) -> (Option<ResponseError>, Vec<ListedGroup>) {
        let loading = self.shards.any_loading();
        let mut groups = Vec::new();
        for shard in self.loaded_shards() {
            let state = shard.lock();
            for id in state.group_ids() {
                if let Some(g) = state.consumer_groups.get(&id) {
                    groups.push(ListedGroup {
                        group_id: id,
                        protocol_type: "consumer".to_owned(),
                        state: g.state().name(),
                        group_type: CONSUMER_GROUP_TYPE,
                    });
                    continue;
                }
                let (protocol_type, group_state) = match state.groups.get(&id) {
                    Some(g) => (g.protocol_type().unwrap_or_default().to_owned(), g.state()),
                    None => (String::new(), GroupState::Empty),
                };
                if group_state == GroupState::Dead {
                    continue;
                }
                groups.push(ListedGroup {
                    group_id: id,
                    protocol_type,
                    state: group_state.name(),
                    group_type: CLASSIC_GROUP_TYPE,
                });
            }
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        (
            loading.then_some(ResponseError::CoordinatorLoadInProgress),
            groups,
        )
    }

    /// DescribeGroups for one group: an unknown group is described as Dead, as Kafka does; a
    /// consumer group is GROUP_ID_NOT_FOUND (ConsumerGroupDescribe describes those).
    pub fn describe_group(&self, group_id: &str) -> Result<GroupSummary, ResponseError> {
        let shard = self.shard(group_id)?;
        let state = shard.lock_live()?;
        if state.consumer_groups.contains_key(group_id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        Ok(match state.groups.get(group_id) {
            Some(group) => group.summary(),
            None => GroupSummary {
                state: if state.offsets.contains_key(group_id) {
                    GroupState::Empty
                } else {
                    GroupState::Dead
                },
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        })
    }
}

impl CoordinatorShard for Shard {
    fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Tells every parked member of the shard to find the coordinator again.
    fn unload(&self) {
        let mut state = self.lock();
        state.unloaded = true;
        for group in state.groups.values_mut() {
            group.transition_to_dead();
        }
        state.groups.clear();
        state.consumer_groups.clear();
        state.offsets.clear();
        state.pending_txn.clear();
    }
}

/// A commit's records, once checked (Kafka's `GroupMetadataManager.storeOffsets`): each commit's
/// result so far (UNKNOWN_TOPIC_OR_PARTITION for a partition the topic lacks,
/// OFFSET_METADATA_TOO_LARGE past `offset.metadata.max.bytes`), a record for each that passed, and
/// what each record writes with the index of its result.
#[allow(clippy::type_complexity)]
fn offset_records(
    group_id: &str,
    commits: Vec<OffsetCommit>,
    image: &MetadataImage,
    now_ms: i64,
) -> (
    Vec<(OffsetCommit, Option<ResponseError>)>,
    Vec<OffsetsRecord>,
    Vec<(OffsetKey, OffsetValue, usize)>,
) {
    let mut results = Vec::with_capacity(commits.len());
    let mut records = Vec::new();
    let mut written = Vec::new();
    for commit in commits {
        let metadata = commit.metadata.clone().unwrap_or_default();
        let known = image.topic_by_name(&commit.topic).is_some_and(|t| {
            commit.partition >= 0 && (commit.partition as usize) < t.partitions.len()
        });
        let error = if !known {
            Some(ResponseError::UnknownTopicOrPartition)
        } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
            Some(ResponseError::OffsetMetadataTooLarge)
        } else {
            None
        };
        if error.is_none() {
            let key = OffsetKey {
                group: group_id.to_owned(),
                topic: commit.topic.clone(),
                partition: commit.partition,
            };
            let value = OffsetValue {
                offset: commit.offset,
                leader_epoch: commit.leader_epoch,
                metadata,
                commit_timestamp_ms: now_ms,
            };
            records.push(OffsetsRecord::Offset {
                key: key.clone(),
                value: Some(value.clone()),
            });
            written.push((key, value, results.len()));
        }
        results.push((commit, error));
    }
    (results, records, written)
}
