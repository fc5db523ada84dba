//! The metadata records. The controller's replicated state is, by definition, the replay of these records
//! in log order (`MetadataImage::replay`); commands only ever produce them. Brokers receive the same
//! records over `WatchMetadata` and replay them into their own image.

use std::collections::BTreeMap;

use crate::features::FeatureRange;
use crate::quotas::QuotaEntity;
use crate::scram::{ScramCredential, ScramMechanism};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::AclBinding;

/// A broker's id, chosen by the operator (`--broker-id`).
pub type BrokerId = i32;
/// A topic's id: a non-zero UUID assigned by the controller at creation.
pub type TopicId = Uuid;
/// "No leader" in `PartitionRegistration::leader`.
pub const NO_LEADER: BrokerId = -1;

/// A listener a broker advertises to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What a config record applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Cluster,
    Topic(String),
    /// One broker's dynamic configs (Kafka's per-broker `DynamicBrokerConfig`).
    Broker(BrokerId),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    /// `-1` in a freshly proposed record: the epoch is then the offset of the record itself.
    pub broker_epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
    /// The feature levels the broker supports; empty from a release before brokers reported them
    /// (see [`crate::features::broker_supports`]).
    #[serde(default)]
    pub supported_features: BTreeMap<String, FeatureRange>,
    /// The id of its log directory (KIP-858's directory id): a registration of the same broker with
    /// another id lost the replicas it held. `None` from a release before brokers reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir_id: Option<Uuid>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: TopicId,
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub recovering: bool,
    /// Replicas a reassignment adds (KIP-455); they are in `replicas` too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas a reassignment removes once the added ones are in sync; in `replicas` too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<BrokerId>,
    /// Eligible leader replicas (KIP-966).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<BrokerId>,
}

/// A change to one partition; `None` fields are unchanged. Replay bumps the partition epoch always and
/// the leader epoch whenever `leader` is set.
///
/// The fields are absolute (the new ISR, not a delta), so a change is only right for the state it was
/// computed from: `expected_partition_epoch` names that state, and replay skips the change when the
/// partition has moved on since (compare-and-set, as AlterPartition is for the leader). Kafka's
/// `PartitionChangeRecord` needs no such guard because its controller is single-threaded over the log;
/// here a write that timed out can still commit after the next command was computed. `None` (records
/// written before this field existed) applies unconditionally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub topic_id: TopicId,
    pub partition: i32,
    pub leader: Option<BrokerId>,
    pub isr: Option<Vec<BrokerId>>,
    pub replicas: Option<Vec<BrokerId>>,
    pub recovering: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_partition_epoch: Option<i32>,
    /// The reassignment's added and removed replicas (KIP-455); empty lists end it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adding_replicas: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing_replicas: Option<Vec<BrokerId>>,
    /// The eligible leader replicas afterwards (KIP-966).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elr: Option<Vec<BrokerId>>,
}

/// Kafka's `LeaderRecoveryState` (KIP-704): whether the leader of an uncleanly elected partition is
/// still recovering (its ISR is itself alone) or has recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderRecoveryState {
    Recovered,
    Recovering,
}

impl LeaderRecoveryState {
    /// Kafka's wire value: 0 RECOVERED, 1 RECOVERING.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(Self::Recovered),
            1 => Some(Self::Recovering),
            _ => None,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Self::Recovered => 0,
            Self::Recovering => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    ClusterId {
        cluster_id: String,
    },
    RegisterBroker(RegisterBrokerRecord),
    BrokerChange {
        broker_id: BrokerId,
        broker_epoch: i64,
        fenced: Option<bool>,
        in_controlled_shutdown: Option<bool>,
        /// The registration reported an offline log directory (KIP-858): it leads nothing and joins no
        /// ISR until a new registration (a restart) replaces it. `None` in records from before the field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        has_offline_log_dir: Option<bool>,
    },
    UnregisterBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    Topic {
        name: String,
        topic_id: TopicId,
    },
    Partition(PartitionRecord),
    PartitionChange(PartitionChangeRecord),
    RemoveTopic {
        topic_id: TopicId,
    },
    Config {
        resource: ConfigResource,
        key: String,
        value: Option<String>,
    },
    ProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        next_producer_id: i64,
    },
    /// An ACL stored under its id (Kafka's `AccessControlEntryRecord`, KIP-801).
    AccessControlEntry {
        id: Uuid,
        acl: AclBinding,
    },
    /// Kafka's `RemoveAccessControlEntryRecord`.
    RemoveAccessControlEntry {
        id: Uuid,
    },
    UserScramCredential(ScramCredential),
    RemoveUserScramCredential {
        user: String,
        mechanism: ScramMechanism,
    },
    /// A cluster-wide feature finalized at `level` (Kafka's `FeatureLevelRecord`; see `features`).
    /// Level 0 removes it.
    FeatureLevel {
        name: String,
        level: i16,
    },
    /// A client quota set (`value`) or removed (`None`) (Kafka's `ClientQuotaRecord`; see `quotas`).
    ClientQuota {
        entity: QuotaEntity,
        key: String,
        value: Option<i64>,
    },
}
