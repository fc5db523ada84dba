//! What the group coordinator and the transaction coordinator share (Kafka's `CoordinatorRuntime`
//! and `CoordinatorLoader`): each serves the keys (group ids, transactional ids) that hash to the
//! partitions of an internal, compacted topic this broker leads. A key's coordinator is found with
//! FindCoordinator, the topic is created through the controller on first use, a partition's state
//! is replayed from its log once leadership arrives and dropped when it leaves.
//!
//! What must stay true: a partition is served only after it is replayed, and only while the metadata
//! says this broker leads it at the leader epoch it was loaded for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use bytes::Bytes;
use chronik_metadata::configs::is_cordoned;
use chronik_metadata::{BrokerId, MetadataImage, TopicId};
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controller_client::ControllerClient;
use crate::log::batch::{BatchHeader, Batches};
use crate::log::{LogError, PartitionLog};
use crate::metadata::MetadataCache;
use crate::replica::{Partition, ReplicaManager};

/// How long FindCoordinator waits for the controller to create an internal topic.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed replay, the next try waits this long.
const LOAD_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Where a key's coordinator is, for FindCoordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorEndpoint {
    pub node_id: BrokerId,
    pub host: String,
    pub port: i32,
}

/// An internal topic a coordinator keeps its state in.
#[derive(Clone, Copy, Debug)]
pub struct InternalTopic {
    pub name: &'static str,
    /// What the coordinator serves from it, for logs: "groups", "transactions".
    pub serves: &'static str,
}

/// The coordinator of `key` on `listener`: the live leader of the key's partition of `topic`.
/// COORDINATOR_NOT_AVAILABLE while the topic does not exist (`Ok(None)`: the caller creates it) or
/// the partition has no live leader.
pub fn coordinator_endpoint(
    image: &MetadataImage,
    topic: InternalTopic,
    key: &str,
    listener: &str,
) -> Result<Option<CoordinatorEndpoint>, (ResponseError, &'static str)> {
    let Some(topic) = image.topic_by_name(topic.name) else {
        return Ok(None);
    };
    let index = partition_for(key, topic.partitions.len() as i32);
    let leader = topic
        .partitions
        .get(index as usize)
        .filter(|p| p.has_leader())
        .map(|p| p.leader)
        .ok_or((
            ResponseError::CoordinatorNotAvailable,
            "the coordinator's partition has no leader",
        ))?;
    let endpoint = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .and_then(|b| b.endpoint(Some(listener)))
        .ok_or((
            ResponseError::CoordinatorNotAvailable,
            "the coordinator has no live endpoint on this listener",
        ))?;
    Ok(Some(CoordinatorEndpoint {
        node_id: leader,
        host: endpoint.host.clone(),
        port: i32::from(endpoint.port),
    }))
}

/// How an internal topic is created.
pub struct TopicSpec {
    pub partitions: i32,
    /// Capped at the live brokers (with a warning).
    pub replication_factor: i32,
    pub min_insync: MinInsync,
}

/// The `min.insync.replicas` an internal topic gets, from the replication factor it gets.
#[derive(Clone, Copy, Debug)]
pub enum MinInsync {
    /// This many, at most the replicas.
    AtMost(i32),
    /// One fewer than the replicas, at least one.
    OneFewer,
}

impl MinInsync {
    fn for_replicas(self, replication_factor: i32) -> i32 {
        match self {
            MinInsync::AtMost(n) => n.min(replication_factor),
            MinInsync::OneFewer => (replication_factor - 1).max(1),
        }
    }
}

/// Asks the controller to create `topic` (one request at a time: a caller finding `creating` held
/// returns at once), compacted with 100 MiB segments as Kafka creates its internal topics, and waits
/// until this broker's metadata has it.
pub async fn create_internal_topic(
    controller: &ControllerClient,
    metadata: &MetadataCache,
    creating: &tokio::sync::Mutex<()>,
    image: &MetadataImage,
    topic: InternalTopic,
    spec: &TopicSpec,
) {
    let Ok(_creating) = creating.try_lock() else {
        return;
    };
    // Live brokers that may take new replicas: a cordoned one (KIP-1066) counts no more than a
    // fenced one, or a cordon would leave the topic uncreatable, and every group and transactional
    // client waiting for a coordinator, until it is lifted. One shutting down still counts: a
    // creation refused during a rolling restart is asked again, and gets every replica then.
    let placeable = image
        .brokers
        .values()
        .filter(|b| !b.fenced && !is_cordoned(image, b.broker_id))
        .count() as i32;
    if placeable == 0 {
        return;
    }
    let replication_factor = spec.replication_factor.min(placeable);
    if replication_factor < spec.replication_factor {
        warn!(
            topic = topic.name,
            replication_factor,
            placeable_brokers = placeable,
            wanted = spec.replication_factor,
            "creating an internal topic with fewer replicas than configured"
        );
    }
    let min_insync = spec.min_insync.for_replicas(replication_factor);
    let configs = [
        // Only each key's latest record matters: the log cleaner drops the rest.
        ("cleanup.policy", "compact".to_owned()),
        ("segment.bytes", (100 * 1024 * 1024).to_string()),
        ("min.insync.replicas", min_insync.to_string()),
        ("unclean.leader.election.enable", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let request = pb::CreateTopicsRequest {
        topics: vec![pb::CreatableTopic {
            name: topic.name.to_owned(),
            num_partitions: spec.partitions,
            replication_factor,
            configs,
            assignments: Vec::new(),
        }],
        validate_only: false,
    };
    match tokio::time::timeout(CREATE_TIMEOUT, controller.create_topics(request)).await {
        Ok(Ok(reply)) => {
            for result in reply.topics {
                if result.error_code == 0 {
                    info!(
                        topic = topic.name,
                        partitions = spec.partitions,
                        replication_factor,
                        "created an internal topic"
                    );
                    let _ = metadata
                        .wait_for_offset(result.metadata_offset, CREATE_TIMEOUT)
                        .await;
                } else {
                    warn!(topic = topic.name, code = result.error_code,
                        reason = %result.error_message, "internal topic not created");
                }
            }
        }
        Ok(Err(e)) => debug!(topic = topic.name, "cannot create an internal topic: {e}"),
        Err(_) => debug!(topic = topic.name, "creating an internal topic timed out"),
    }
}

/// A loaded partition of an internal topic.
pub trait CoordinatorShard {
    /// The leader epoch it was loaded for.
    fn leader_epoch(&self) -> i32;
    /// Stops serving: what waits on the shard is told to find the coordinator again.
    fn unload(&self);
}

pub enum Slot<S> {
    Loading { leader_epoch: i32 },
    Loaded(Arc<S>),
}

/// The partitions of one internal topic this broker leads, each loading or loaded.
pub struct Shards<S> {
    topic: InternalTopic,
    broker_id: BrokerId,
    slots: RwLock<HashMap<i32, Slot<S>>>,
}

/// A partition to load.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub index: i32,
    pub topic_id: TopicId,
    pub leader_epoch: i32,
}

impl<S: CoordinatorShard> Shards<S> {
    pub fn new(topic: InternalTopic, broker_id: BrokerId) -> Self {
        Shards {
            topic,
            broker_id,
            slots: RwLock::new(HashMap::new()),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, HashMap<i32, Slot<S>>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Unloads the partitions `image` says this broker no longer leads at their loaded epoch, and
    /// marks the newly led ones loading; returns those for the caller to load. `before_load` runs for
    /// each under the lock, before its slot exists.
    pub fn on_metadata(
        &self,
        image: &MetadataImage,
        mut before_load: impl FnMut(i32),
    ) -> Vec<Load> {
        let led: HashMap<i32, (TopicId, i32)> = match image.topic_by_name(self.topic.name) {
            Some(topic) => topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.leader == self.broker_id)
                .map(|(i, p)| (i as i32, (topic.id, p.leader_epoch)))
                .collect(),
            None => HashMap::new(),
        };
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<i32> = slots
            .iter()
            .filter(|(index, slot)| {
                let epoch = match slot {
                    Slot::Loading { leader_epoch } => *leader_epoch,
                    Slot::Loaded(shard) => shard.leader_epoch(),
                };
                led.get(index).is_none_or(|(_, e)| *e != epoch)
            })
            .map(|(index, _)| *index)
            .collect();
        for index in stale {
            if let Some(Slot::Loaded(shard)) = slots.remove(&index) {
                shard.unload();
                info!(
                    topic = self.topic.name,
                    partition = index,
                    "no longer coordinating the {} of this partition",
                    self.topic.serves
                );
            }
        }
        let mut to_load = Vec::new();
        for (index, (topic_id, leader_epoch)) in led {
            if slots.contains_key(&index) {
                continue;
            }
            before_load(index);
            slots.insert(index, Slot::Loading { leader_epoch });
            to_load.push(Load {
                index,
                topic_id,
                leader_epoch,
            });
        }
        to_load
    }

    /// Unloads `shard` if it is still the one loaded for `index` (the next [`Self::on_metadata`]
    /// loads the partition again if this broker still leads it).
    pub fn unload_loaded(&self, index: i32, shard: &Arc<S>) -> bool {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(slots.get(&index), Some(Slot::Loaded(s)) if Arc::ptr_eq(s, shard)) {
            return false;
        }
        if let Some(Slot::Loaded(shard)) = slots.remove(&index) {
            shard.unload();
        }
        true
    }

    pub fn unload_all(&self) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        for (_, slot) in slots.drain() {
            if let Slot::Loaded(shard) = slot {
                shard.unload();
            }
        }
    }

    pub fn still_loading(&self, index: i32, leader_epoch: i32) -> bool {
        matches!(
            self.read().get(&index),
            Some(Slot::Loading { leader_epoch: e }) if *e == leader_epoch
        )
    }

    /// Serves `shard` for partition `index`, unless that load is no longer wanted (the partition was
    /// unloaded or is loading for another epoch meanwhile). `install` runs under the lock first.
    pub fn install(
        &self,
        index: i32,
        leader_epoch: i32,
        shard: Arc<S>,
        install: impl FnOnce(&S),
    ) -> bool {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(slots.get(&index), Some(Slot::Loading { leader_epoch: e }) if *e == leader_epoch)
        {
            return false;
        }
        install(&shard);
        slots.insert(index, Slot::Loaded(shard));
        true
    }

    /// Whether `shard` is still the loaded one of partition `index` (not unloaded or reloaded).
    pub fn is_loaded(&self, index: i32, shard: &Arc<S>) -> bool {
        matches!(self.read().get(&index), Some(Slot::Loaded(s)) if Arc::ptr_eq(s, shard))
    }

    /// The shard coordinating `key`: NOT_COORDINATOR if another broker does (or nobody knows yet),
    /// COORDINATOR_LOAD_IN_PROGRESS while it loads.
    pub fn get(&self, image: &MetadataImage, key: &str) -> Result<Arc<S>, ResponseError> {
        let topic = image
            .topic_by_name(self.topic.name)
            .ok_or(ResponseError::NotCoordinator)?;
        let index = partition_for(key, topic.partitions.len() as i32);
        match self.read().get(&index) {
            Some(Slot::Loaded(shard)) => Ok(shard.clone()),
            Some(Slot::Loading { .. }) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Whether some partition is still loading.
    pub fn any_loading(&self) -> bool {
        self.read()
            .values()
            .any(|slot| matches!(slot, Slot::Loading { .. }))
    }

    pub fn loaded(&self) -> Vec<Arc<S>> {
        self.read()
            .values()
            .filter_map(|slot| match slot {
                Slot::Loaded(shard) => Some(shard.clone()),
                Slot::Loading { .. } => None,
            })
            .collect()
    }

    /// Waits until the replica manager has made this broker the leader of `load`'s partition at its
    /// epoch, then replays its log up to its end on a blocking thread (again after a second on
    /// failure). None once cancelled or once this load is no longer wanted.
    pub async fn lead_and_replay<T: Send + 'static>(
        &self,
        replicas: &ReplicaManager,
        cancel: &CancellationToken,
        load: Load,
        replay: fn(&PartitionLog, i64) -> Result<T, LogError>,
    ) -> Option<(Arc<Partition>, T)> {
        let Load {
            index,
            topic_id,
            leader_epoch,
        } = load;
        let what = self.topic.name;
        // Role changes bump the replica manager's data version.
        let mut replica_changes = replicas.subscribe_data();
        loop {
            if cancel.is_cancelled() || !self.still_loading(index, leader_epoch) {
                return None;
            }
            replica_changes.borrow_and_update();
            let partition = replicas.partition(topic_id, index).filter(|p| {
                let state = p.state();
                state.leader == self.broker_id && state.leader_epoch == leader_epoch
            });
            let Some(partition) = partition else {
                // The replica manager applies the same image a moment later; the timeout only
                // re-checks whether this load is still wanted.
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = replica_changes.changed() => {}
                    _ = tokio::time::sleep(LOAD_RETRY_BACKOFF) => {}
                }
                continue;
            };
            let log = partition.log.clone();
            let end = log.log_end_offset();
            match tokio::task::spawn_blocking(move || replay(&log, end)).await {
                Ok(Ok(replayed)) => return Some((partition, replayed)),
                Ok(Err(e)) => warn!(
                    topic = what,
                    partition = index,
                    "cannot load, retrying: {e}"
                ),
                Err(e) => warn!(
                    topic = what,
                    partition = index,
                    "load task failed, retrying: {e}"
                ),
            }
            tokio::time::sleep(LOAD_RETRY_BACKOFF).await;
        }
    }
}

/// What a replay meets in an internal topic's log, in log order.
pub enum Replayed<'a> {
    /// A control batch (a transaction marker), whole.
    Control {
        header: BatchHeader,
        batch: &'a Bytes,
    },
    /// A record of a data batch; `header` is its batch's.
    Record { header: BatchHeader, record: Record },
}

/// Reads `log` from its start to `end` (the log end when leadership began), calling `visit` for each
/// control batch and each record below `end`. Returns how many batches could not be decoded (they
/// are skipped, with a warning).
pub fn replay_log(
    log: &PartitionLog,
    end: i64,
    topic: &str,
    mut visit: impl FnMut(Replayed<'_>),
) -> Result<usize, LogError> {
    const CHUNK: usize = 1 << 20;
    let mut unreadable = 0;
    let mut offset = log.log_start_offset();
    while offset < end {
        let read = log.read(offset, CHUNK, end)?;
        if read.records.is_empty() {
            break;
        }
        let mut next = offset;
        for batch in Batches::new(read.records) {
            let batch = batch.map_err(LogError::from)?;
            let header = *batch.header();
            next = next.max(header.next_offset());
            if header.next_offset() <= offset {
                continue;
            }
            if batch.is_control() {
                visit(Replayed::Control {
                    header,
                    batch: batch.as_bytes(),
                });
                continue;
            }
            let mut raw: Bytes = batch.as_bytes().clone();
            let set = match RecordBatchDecoder::decode(&mut raw) {
                Ok(set) => set,
                Err(e) => {
                    warn!(topic, offset = header.base_offset, "unreadable batch: {e}");
                    unreadable += 1;
                    continue;
                }
            };
            for record in set.records {
                if record.offset >= offset && record.offset < end {
                    visit(Replayed::Record { header, record });
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(unreadable)
}

/// The internal-topic partition of a key (group id, transactional id):
/// `abs(java_hash_code(key)) % partitions`, as Kafka computes it (UTF-16 code units, wrapping
/// arithmetic, `abs(i32::MIN) = 0`), so Kafka tooling and Chronik agree on where a key lives.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = key.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_matches_java_string_hash_code() {
        // "".hashCode() == 0, "a".hashCode() == 97, "my-group".hashCode() == 1_483_584_795 ... as
        // computed by Java: h = 31*h + c over UTF-16 units.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("console-consumer-1", 50), {
            let h: i32 = "console-consumer-1"
                .chars()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
            h.abs() % 50
        });
        // A hash of i32::MIN maps to partition 0 ("polygenelubricants".hashCode() == Integer.MIN_VALUE).
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Characters outside the BMP count as two UTF-16 units.
        assert_eq!(
            partition_for("😀", 1000),
            (0xD83Di32 * 31 + 0xDE00).abs() % 1000
        );
    }
}
