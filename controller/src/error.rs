//! Errors of the controller. Command errors carry a Kafka error code (the vocabulary brokers and Kafka
//! admin clients already speak); `api::grpc` maps them to gRPC statuses in exactly one place.

use thiserror::Error;

/// The Kafka error codes the controller answers with (names and numbers as in Kafka's `Errors.java`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    None,
    UnknownTopicOrPartition,
    InvalidTopic,
    NotController,
    InvalidRequest,
    TopicAlreadyExists,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidReplicaAssignment,
    InvalidConfig,
    FencedLeaderEpoch,
    StaleBrokerEpoch,
    ElectionNotNeeded,
    PreferredLeaderNotAvailable,
    InvalidUpdateVersion,
    UnknownTopicId,
    DuplicateBrokerRegistration,
    BrokerIdNotRegistered,
    InconsistentClusterId,
    IneligibleReplica,
    NewLeaderElected,
}

impl ErrorCode {
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::UnknownTopicOrPartition => 3,
            ErrorCode::InvalidTopic => 17,
            ErrorCode::TopicAlreadyExists => 36,
            ErrorCode::InvalidPartitions => 37,
            ErrorCode::InvalidReplicationFactor => 38,
            ErrorCode::InvalidReplicaAssignment => 39,
            ErrorCode::InvalidConfig => 40,
            ErrorCode::NotController => 41,
            ErrorCode::InvalidRequest => 42,
            ErrorCode::FencedLeaderEpoch => 74,
            ErrorCode::StaleBrokerEpoch => 77,
            ErrorCode::PreferredLeaderNotAvailable => 80,
            ErrorCode::ElectionNotNeeded => 84,
            ErrorCode::InvalidUpdateVersion => 95,
            ErrorCode::UnknownTopicId => 100,
            ErrorCode::DuplicateBrokerRegistration => 101,
            ErrorCode::BrokerIdNotRegistered => 102,
            ErrorCode::InconsistentClusterId => 104,
            ErrorCode::IneligibleReplica => 107,
            ErrorCode::NewLeaderElected => 108,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::InvalidTopic => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ErrorCode::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
            ErrorCode::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
            ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            ErrorCode::UnknownTopicId => "UNKNOWN_TOPIC_ID",
            ErrorCode::DuplicateBrokerRegistration => "DUPLICATE_BROKER_REGISTRATION",
            ErrorCode::BrokerIdNotRegistered => "BROKER_ID_NOT_REGISTERED",
            ErrorCode::InconsistentClusterId => "INCONSISTENT_CLUSTER_ID",
            ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
            ErrorCode::NewLeaderElected => "NEW_LEADER_ELECTED",
        }
    }
}

/// A command refused for a reason the caller can act on.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Everything a controller call can fail with.
#[derive(Debug, Error)]
pub enum ControllerError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// This node is not the active controller; `leader` is the active one when known.
    #[error("not the active controller")]
    NotController { leader: Option<(u64, String)> },
    #[error("the controller quorum is unavailable: {0}")]
    Unavailable(String),
    #[error("controller shutting down")]
    ShuttingDown,
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
