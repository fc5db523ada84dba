//! Errors of the controller. Command refusals are `ApiError`s in the cluster's one error vocabulary
//! (Kafka's codes, `chronik_metadata::error`); `api::grpc::status` maps every `ControllerError` to a gRPC
//! status and `api::http` to an HTTP status, each in exactly one function.

use thiserror::Error;

pub use chronik_metadata::error::{ApiError, ResponseError};

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
