//! The group coordinator (Kafka's `GroupCoordinator` and `GroupMetadataManager`): consumer groups under
//! the classic protocol and their committed offsets, stored as records in the internal, replicated
//! offsets topic `__consumer_offsets`.
//!
//! A group belongs to one partition of that topic, chosen by hashing its id as Kafka does; the broker
//! leading that partition is the group's coordinator. When this broker becomes a partition's leader it
//! loads the partition's records into a [`shard`] (answering COORDINATOR_LOAD_IN_PROGRESS meanwhile);
//! when it stops leading it drops the shard (NOT_COORDINATOR). Nothing is acknowledged before its
//! record is committed to the partition (acks=all), so what a client was told survives the
//! coordinator's broker being killed.
//!
//! Groups of the KIP-848 consumer protocol (ConsumerGroupHeartbeat) live beside classic ones: the
//! coordinator assigns their partitions itself and moves members to their targets one heartbeat at
//! a time (`consumer_group`). A group id is of one kind at a time; an empty group changes kind when a
//! member of the other protocol joins (Kafka's behaviour without online migration).
//!
//! Layout: `records` (the topic's record formats), `classic_group` (one group's membership state machine),
//! `consumer_records`, `consumer_group` and `assignor` (KIP-848 groups), `shard` (one loaded
//! partition: groups, offsets, its single writer), `coordinator` (leadership, loading, timers, and the
//! operations the handlers call), `consumer_protocol` (reading subscriptions).

pub mod assignor;
pub mod classic_group;
pub mod consumer_group;
pub mod consumer_protocol;
pub mod consumer_records;
pub mod coordinator;
pub mod records;
pub mod shard;

use std::time::Duration;

pub use crate::coordinator_runtime::partition_for;
pub use classic_group::GroupState;
pub use coordinator::{GroupCoordinator, GroupSnapshot};

use crate::config::GroupArgs;
use consumer_group::ConsumerGroupConfig;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

impl GroupArgs {
    /// The coordinator's settings from its flags.
    pub fn config(&self) -> GroupConfig {
        GroupConfig {
            offsets_topic_num_partitions: self.offsets_topic_num_partitions,
            offsets_topic_replication_factor: self.offsets_topic_replication_factor,
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            commit_timeout: Duration::from_millis(self.offsets_commit_timeout_ms),
            offsets_retention: Duration::from_secs(self.offsets_retention_minutes * 60),
            offsets_retention_check_interval: Duration::from_millis(
                self.offsets_retention_check_interval_ms,
            ),
            consumer: ConsumerGroupConfig {
                session_timeout: Duration::from_millis(self.group_consumer_session_timeout_ms),
                heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
                max_size: usize::try_from(self.group_consumer_max_size).unwrap_or(usize::MAX),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i32,
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub commit_timeout: Duration,
    pub offsets_retention: Duration,
    pub offsets_retention_check_interval: Duration,
    /// Groups of the KIP-848 consumer protocol.
    pub consumer: ConsumerGroupConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            initial_rebalance_delay: Duration::from_millis(3_000),
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            commit_timeout: Duration::from_millis(5_000),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            consumer: ConsumerGroupConfig::default(),
        }
    }
}
