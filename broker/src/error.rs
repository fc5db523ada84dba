//! The broker's typed errors. `ControllerCallError` is everything a call to the controller quorum can
//! end in; `BrokerError` is what makes the broker process fail (and what `main` prints as one line).
//!
//! There is one error vocabulary, Kafka's codes (`chronik_metadata::ResponseError`), and each error
//! type maps itself to it in exactly one function:
//! - `ControllerCallError::kafka_error` (here): what a forwarded admin call answers when the controller
//!   call failed. A controller's refusal arrives with its Kafka error (the `chronik-error` status
//!   metadata, read back by `chronik_metadata::error::from_name`).
//! - `LogError::kafka_error` (`log::error`): a refused or failed read or append.
//! - `AppendError::kafka_error` (`replica::manager`): a leader append, for producers.
//! - The group coordinator translates append failures into coordinator codes in `group::shard`, as
//!   Kafka's `GroupMetadataManager` does.

use std::net::SocketAddr;
use std::path::PathBuf;

use chronik_metadata::ResponseError;
use thiserror::Error;

/// Why a call to the controller quorum failed.
#[derive(Clone, Debug, Error)]
pub enum ControllerCallError {
    /// A controller answered and refused the call.
    #[error("controller {address} refused the call: {}{message}", name_prefix(.kafka_error))]
    Refused {
        /// The controller that answered.
        address: String,
        /// The Kafka error from the `chronik-error` metadata, when present.
        kafka_error: Option<ResponseError>,
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

fn name_prefix(kafka_error: &Option<ResponseError>) -> String {
    kafka_error
        .map(|e| format!("{}: ", chronik_metadata::error::name(e)))
        .unwrap_or_default()
}

impl ControllerCallError {
    /// The Kafka error the controller refused the call with, if any.
    pub fn refusal(&self) -> Option<ResponseError> {
        match self {
            ControllerCallError::Refused { kafka_error, .. } => *kafka_error,
            _ => None,
        }
    }

    /// True when the controller refused the call with this Kafka error.
    pub fn is(&self, code: ResponseError) -> bool {
        self.refusal() == Some(code)
    }

    /// The Kafka error a forwarded admin call answers with when the controller call failed.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            // Never reached an active controller, so nothing was applied: the Java admin client
            // retries NOT_CONTROLLER after refreshing its metadata.
            ControllerCallError::Unavailable { .. }
            | ControllerCallError::InvalidAddress { .. } => ResponseError::NotController,
            // Sent but unanswered: it may still be applied.
            ControllerCallError::Timeout { .. } | ControllerCallError::Interrupted { .. } => {
                ResponseError::RequestTimedOut
            }
            ControllerCallError::Refused { kafka_error, .. } => {
                kafka_error.unwrap_or(ResponseError::UnknownServerError)
            }
        }
    }

    /// True when no controller answered at all (worth retrying later, unlike a refusal).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ControllerCallError::Unavailable { .. }
                | ControllerCallError::Timeout { .. }
                | ControllerCallError::Interrupted { .. }
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
    #[error("data dir {} is in use by another broker process (lock {} is held)", path.display(), lock.display())]
    DataDirLocked { path: PathBuf, lock: PathBuf },
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
        source: ControllerCallError,
    },
    #[error(transparent)]
    Controller(#[from] ControllerCallError),
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
        let error = ControllerCallError::Refused {
            address: "127.0.0.1:9093".into(),
            kafka_error: Some(ResponseError::StaleBrokerEpoch),
            code: tonic::Code::FailedPrecondition,
            message: "epoch 3 is stale".into(),
        };
        assert!(error.is(ResponseError::StaleBrokerEpoch));
        assert!(!error.is(ResponseError::BrokerIdNotRegistered));
        assert!(!error.is_unavailable());
        assert_eq!(
            error.to_string(),
            "controller 127.0.0.1:9093 refused the call: STALE_BROKER_EPOCH: epoch 3 is stale"
        );
    }
}
