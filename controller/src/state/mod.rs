//! The controller's replicated state and the pure logic that changes it. Nothing here does IO or knows
//! about Raft: a command reads the current `MetadataImage` and returns the records to append plus its
//! reply (`ControllerResult`); the image changes only when those records are committed and replayed.
//! That is what lets every rule here be unit-tested by replaying records.

pub mod acls;
pub mod cluster;
pub mod config_changes;
pub mod election;
pub mod features;
pub mod placement;
pub mod quotas;
pub mod reassignment;
pub mod scram;
pub mod topics;

// The records, the image they replay into and the config rules are shared with the brokers, in the
// `chronik-metadata` crate; re-exported here so commands read as before.
pub use chronik_metadata::{configs, image, records};
pub use chronik_metadata::{
    BrokerId, BrokerRegistration, Endpoint, MetadataImage, PartitionRegistration, Record, TopicId,
    TopicImage, NO_LEADER,
};

/// The outcome of a command: records to append (possibly none) and the reply to send once they are
/// committed.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerResult<T> {
    pub records: Vec<Record>,
    pub reply: T,
}

impl<T> ControllerResult<T> {
    pub fn new(records: Vec<Record>, reply: T) -> Self {
        Self { records, reply }
    }
}
