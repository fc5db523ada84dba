//! `ReplicaManager`: the partitions hosted here, kept in step with the metadata image, and the leader's
//! append path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chronik_controller::state::configs::{
    effective_i64, effective_topic_configs, MIN_INSYNC_REPLICAS,
};
use chronik_controller::state::{BrokerId, MetadataImage, TopicId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::partition::{Partition, PartitionState};
use crate::lifecycle::BrokerStatus;
use crate::log::{AppendInfo, LogConfig, LogError, LogManager, PartitionLog};
use crate::metadata::MetadataCache;

/// An append that is written but not yet acknowledged (see `ReplicaManager::complete_append`).
pub struct PendingAppend {
    partition: Arc<Partition>,
    info: AppendInfo,
}

/// Why a leader append was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("the in-sync replicas ({isr}) are fewer than min.insync.replicas ({min})")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storage task failed: {0}")]
    Storage(String),
}

pub struct ReplicaManager {
    broker_id: BrokerId,
    logs: Arc<LogManager>,
    partitions: RwLock<HashMap<(TopicId, i32), Arc<Partition>>>,
    /// Bumped whenever readable data may have changed (appends, high watermarks, roles), to wake long
    /// polls.
    data_version: watch::Sender<u64>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppendError::Storage(e.to_string()))
}

impl ReplicaManager {
    pub fn new(broker_id: BrokerId, logs: Arc<LogManager>) -> Self {
        Self {
            broker_id,
            logs,
            partitions: RwLock::new(HashMap::new()),
            data_version: watch::channel(0).0,
        }
    }

    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    pub fn partition(&self, topic_id: TopicId, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic_id, index))
            .cloned()
    }

    /// Every hosted partition.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Changes whenever data may have become readable.
    pub fn subscribe_data(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    fn notify_data(&self) {
        self.data_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Appends one producer batch as the partition's leader. The batch is written (in the order calls
    /// are made) but not yet durable: `complete_append` makes it so and publishes it.
    pub async fn append_as_leader(
        &self,
        partition: &Arc<Partition>,
        batch: Bytes,
        required_acks: i16,
    ) -> Result<PendingAppend, AppendError> {
        let state = partition.state();
        if state.leader != self.broker_id {
            return Err(AppendError::NotLeader);
        }
        if required_acks == -1 && state.isr.len() < state.min_insync_replicas {
            return Err(AppendError::NotEnoughReplicas {
                isr: state.isr.len(),
                min: state.min_insync_replicas,
            });
        }
        let log = partition.log.clone();
        let info = blocking(move || log.append_as_leader(batch, state.leader_epoch)).await??;
        Ok(PendingAppend {
            partition: partition.clone(),
            info,
        })
    }

    /// Makes an append durable under the topic's flush policy (group commit: one fsync covers every
    /// append before it) and moves the high watermark past it.
    pub async fn complete_append(&self, pending: PendingAppend) -> Result<AppendInfo, AppendError> {
        let PendingAppend { partition, info } = pending;
        if info.flush_required {
            let log = partition.log.clone();
            let next = info.next_offset();
            blocking(move || log.flush_to(next)).await??;
        }
        // Followers do not copy yet, so the leader's own (durable) log end is the high watermark.
        let high_watermark = partition.log.high_watermark().max(info.next_offset());
        partition.log.set_high_watermark(high_watermark);
        self.notify_data();
        Ok(info)
    }

    /// Brings the hosted partitions in line with `image`: creates logs for partitions this broker
    /// replicates, updates roles (a new leader starts its epoch at its log end), and — when the image
    /// is `authoritative` (caught up to this broker's registration) — deletes partitions the image no
    /// longer gives this broker.
    pub fn apply_metadata(&self, image: &MetadataImage, authoritative: bool) {
        let mut wanted = HashSet::new();
        let mut changed = false;
        for (topic, index, registration) in image.partitions() {
            if !registration.replicas.contains(&self.broker_id) {
                continue;
            }
            wanted.insert((topic.id, index));
            let configs = effective_topic_configs(image, &topic.configs);
            let state = PartitionState {
                leader: registration.leader,
                leader_epoch: registration.leader_epoch,
                partition_epoch: registration.partition_epoch,
                replicas: registration.replicas.clone(),
                isr: registration.isr.clone(),
                min_insync_replicas: effective_i64(image, &topic.configs, MIN_INSYNC_REPLICAS)
                    .max(1) as usize,
            };
            let config = match LogConfig::from_effective(&configs) {
                Ok(config) => config,
                Err(e) => {
                    warn!(topic = %topic.name, "invalid log config, using defaults: {e}");
                    LogConfig::default()
                }
            };
            match self.partition(topic.id, index) {
                Some(partition) => {
                    partition.log.update_config(config);
                    if let Some(previous) = partition.update(state.clone()) {
                        changed = true;
                        let became_leader = state.leader == self.broker_id
                            && (previous.leader != self.broker_id
                                || previous.leader_epoch < state.leader_epoch);
                        if became_leader {
                            self.start_leader_epoch(
                                &partition.log,
                                &topic.name,
                                index,
                                state.leader_epoch,
                            );
                        }
                    }
                }
                None => match self.open_log(&topic.name, topic.id, index, config) {
                    Ok(log) => {
                        if state.leader == self.broker_id {
                            self.start_leader_epoch(&log, &topic.name, index, state.leader_epoch);
                        }
                        let partition = Arc::new(Partition::new(
                            topic.name.clone(),
                            topic.id,
                            index,
                            log,
                            state,
                        ));
                        self.partitions
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((topic.id, index), partition);
                        changed = true;
                    }
                    Err(e) => {
                        warn!(topic = %topic.name, partition = index, "cannot open partition log: {e}")
                    }
                },
            }
        }
        if authoritative {
            changed |= self.remove_unwanted(image, &wanted);
        }
        if changed {
            self.notify_data();
        }
    }

    fn open_log(
        &self,
        topic: &str,
        topic_id: TopicId,
        index: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, LogError> {
        match self
            .logs
            .get_or_create(topic, topic_id, index, config.clone())
        {
            Err(LogError::InconsistentTopicId { .. }) => {
                // The directory belongs to an earlier topic of the same name, deleted while this
                // broker was away: its data is not this topic's.
                info!(
                    topic,
                    partition = index,
                    "replacing the log of a deleted topic of the same name"
                );
                self.logs.remove(topic, index)?;
                self.logs.get_or_create(topic, topic_id, index, config)
            }
            other => other,
        }
    }

    /// A new leader records its epoch at its log end before it accepts writes (digest §6.1); with no
    /// replication yet its log end is also its high watermark.
    fn start_leader_epoch(&self, log: &PartitionLog, topic: &str, index: i32, leader_epoch: i32) {
        if let Err(e) = log.assign_leader_epoch(leader_epoch) {
            warn!(
                topic,
                partition = index,
                leader_epoch,
                "cannot record the leader epoch: {e}"
            );
        }
        log.set_high_watermark(log.log_end_offset());
        info!(topic, partition = index, leader_epoch, "leading partition");
    }

    /// Deletes hosted partitions and leftover directories the image does not give this broker.
    fn remove_unwanted(&self, image: &MetadataImage, wanted: &HashSet<(TopicId, i32)>) -> bool {
        let mut changed = false;
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<(TopicId, i32)> = partitions
                .keys()
                .filter(|k| !wanted.contains(k))
                .copied()
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in stale {
            changed = true;
            match self.logs.remove(&partition.topic, partition.index) {
                Ok(_) => {
                    info!(topic = %partition.topic, partition = partition.index, "deleted partition")
                }
                Err(e) => {
                    warn!(topic = %partition.topic, partition = partition.index, "cannot delete partition: {e}")
                }
            }
        }
        for tp in self.logs.partitions() {
            let hosted = image
                .topic_by_name(&tp.topic)
                .is_some_and(|t| wanted.contains(&(t.id, tp.partition)));
            if !hosted {
                match self.logs.remove(&tp.topic, tp.partition) {
                    Ok(_) => {
                        info!(topic = %tp.topic, partition = tp.partition, "deleted leftover partition directory")
                    }
                    Err(e) => {
                        warn!(topic = %tp.topic, partition = tp.partition, "cannot delete leftover partition: {e}")
                    }
                }
            }
        }
        changed
    }
}

/// Applies every new metadata image to the replica manager until cancelled.
pub async fn run_metadata_listener(
    replicas: Arc<ReplicaManager>,
    metadata: Arc<MetadataCache>,
    mut status: watch::Receiver<BrokerStatus>,
    cancel: CancellationToken,
) {
    let mut images = metadata.subscribe();
    loop {
        let image = metadata.current();
        let authoritative = status
            .borrow()
            .broker_epoch
            .is_some_and(|epoch| epoch > 0 && image.offset >= epoch as u64);
        let replicas = replicas.clone();
        if let Err(e) =
            tokio::task::spawn_blocking(move || replicas.apply_metadata(&image, authoritative))
                .await
        {
            warn!("applying metadata to partitions failed: {e}");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}
