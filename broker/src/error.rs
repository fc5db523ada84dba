//! The broker's typed errors. `ControllerError` is everything a call to the controller quorum can end
//! in; `BrokerError` is what makes the broker process fail (and what `main` prints as one line). A
//! controller's refusal keeps the Kafka error name it came with (the `chronik-error` status metadata), so
//! callers decide on the name, using the controller crate's `ErrorCode` vocabulary rather than strings of
//! their own. The mapping of broker errors to Kafka error codes for clients will live here too.

use std::net::SocketAddr;
use std::path::PathBuf;

use chronik_controller::error::ErrorCode;
use thiserror::Error;

/// Why a call to the controller quorum failed.
#[derive(Clone, Debug, Error)]
pub enum ControllerError {
    /// A controller answered and refused the call.
    #[error("controller {address} refused the call: {}{message}", name_prefix(.kafka_error))]
    Refused {
        /// The controller that answered.
        address: String,
        /// The Kafka error name from the `chronik-error` metadata, when present.
        kafka_error: Option<String>,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// No controller could be reached, or none acted as the active controller, within the retry budget.
    #[error(
        "no active controller reachable among {addresses} within {waited_ms} ms: {last_error}"
    )]
    Unavailable {
        /// Every address tried, comma-separated.
        addresses: String,
        /// How long the call kept trying.
        waited_ms: u128,
        /// The last failure seen.
        last_error: String,
    },
    /// A non-idempotent request reached a controller but no answer came back in time; it may have been
    /// applied.
    #[error("controller {address} did not answer within {timeout_ms} ms (the request may have been applied)")]
    Timeout { address: String, timeout_ms: u128 },
    /// A non-idempotent request lost its connection while in flight; it may have been applied.
    #[error("connection to controller {address} broke mid-request (the request may have been applied): {reason}")]
    Interrupted { address: String, reason: String },
    /// A controller address that does not form a valid URI.
    #[error("invalid controller address '{address}': {reason}")]
    InvalidAddress { address: String, reason: String },
}

fn name_prefix(kafka_error: &Option<String>) -> String {
    kafka_error
        .as_deref()
        .map(|name| format!("{name}: "))
        .unwrap_or_default()
}

impl ControllerError {
    /// The Kafka error name the controller refused the call with, if any.
    pub fn kafka_error(&self) -> Option<&str> {
        match self {
            ControllerError::Refused { kafka_error, .. } => kafka_error.as_deref(),
            _ => None,
        }
    }

    /// True when the controller refused the call with this Kafka error.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.kafka_error() == Some(code.name())
    }

    /// True when no controller answered at all (worth retrying later, unlike a refusal).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ControllerError::Unavailable { .. }
                | ControllerError::Timeout { .. }
                | ControllerError::Interrupted { .. }
        )
    }
}

/// Why the broker process cannot start or had to stop.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// A flag or environment variable that does not make sense.
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot create data directory {}: {source}", .path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP on {address}: {source}")]
    HttpBind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("data dir {} is in use by another broker process (lock {} is held)", path.display(), path.join(crate::server::LOCK_FILE).display())]
    DataDirLocked { path: std::path::PathBuf },
    #[error("cannot listen for Kafka clients on {address}: {source}")]
    KafkaBind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the partition logs: {0}")]
    Logs(#[from] crate::log::LogError),
    #[error("HTTP server failed: {0}")]
    HttpServe(std::io::Error),
    /// The controller refused this broker for good (e.g. it belongs to another cluster).
    #[error("the controller rejected broker {broker_id}: {source}")]
    Rejected {
        broker_id: i32,
        source: ControllerError,
    },
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("metadata did not reach offset {offset} within {timeout_ms} ms (at {current})")]
    MetadataTimeout {
        offset: u64,
        current: u64,
        timeout_ms: u128,
    },
    #[error("broker not ready after {timeout_ms} ms: {reason}")]
    NotReady { reason: String, timeout_ms: u128 },
    #[error("broker task {task} failed: {reason}")]
    TaskFailed { task: &'static str, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_matched_by_kafka_error_name() {
        let error = ControllerError::Refused {
            address: "127.0.0.1:9093".into(),
            kafka_error: Some("STALE_BROKER_EPOCH".into()),
            code: tonic::Code::FailedPrecondition,
            message: "epoch 3 is stale".into(),
        };
        assert!(error.is(ErrorCode::StaleBrokerEpoch));
        assert!(!error.is(ErrorCode::BrokerIdNotRegistered));
        assert!(!error.is_unavailable());
        assert_eq!(
            error.to_string(),
            "controller 127.0.0.1:9093 refused the call: STALE_BROKER_EPOCH: epoch 3 is stale"
        );
    }
}
