//! One hosted partition: its log and its replication state as the metadata image last set it.

use std::sync::{Arc, RwLock};

use chronik_controller::state::{BrokerId, TopicId};

use crate::log::PartitionLog;

/// A partition's replication state from the metadata image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// The topic's effective `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: TopicId,
    pub index: i32,
    pub log: Arc<PartitionLog>,
    state: RwLock<PartitionState>,
}

impl Partition {
    pub fn new(
        topic: String,
        topic_id: TopicId,
        index: i32,
        log: Arc<PartitionLog>,
        state: PartitionState,
    ) -> Self {
        Self {
            topic,
            topic_id,
            index,
            log,
            state: RwLock::new(state),
        }
    }

    pub fn state(&self) -> PartitionState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the state if `new` is not older (by partition epoch); returns the previous state when
    /// it changed.
    pub(crate) fn update(&self, new: PartitionState) -> Option<PartitionState> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if new.partition_epoch < state.partition_epoch || *state == new {
            return None;
        }
        Some(std::mem::replace(&mut *state, new))
    }

    pub fn is_leader(&self, broker_id: BrokerId) -> bool {
        self.state().leader == broker_id
    }
}
