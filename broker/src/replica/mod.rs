//! Partitions this broker hosts and their roles (Kafka's `ReplicaManager` and `Partition`). The
//! metadata image decides everything: a partition exists here while this broker is one of its
//! replicas, leads it while the image names it leader, and its log directory is deleted once the image
//! no longer has it. Roles only move forward: state from an older partition epoch is ignored.

mod delete_records;
pub mod fetcher;
pub mod isr;
mod manager;
mod partition;

pub use delete_records::{DeleteRecordsError, LeaderDeletion, HIGH_WATERMARK};
pub use manager::{
    run_metadata_listener, AppendError, IsrChange, PendingAppend, ReplicaManager,
    DROPPED_LEADER_WINDOW,
};
pub use partition::{FollowerState, Partition, PartitionState};
