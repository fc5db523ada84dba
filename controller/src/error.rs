//! Errors of the controller. Command refusals are `ApiError`s in the cluster's one error vocabulary
//! (Kafka's codes, `chronik_metadata::error`); `api::grpc::status` maps every `ControllerError` to a gRPC
//! status and `api::http` to an HTTP status, each in exactly one function.

use std::net::SocketAddr;
use std::path::PathBuf;

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

/// Why a controller node cannot start, or had to stop (what `main` prints as one line).
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is corrupt; refusing to start: {reason}", .path.display())]
    CorruptMeta { path: PathBuf, reason: String },
    #[error("data dir {} belongs to controller node {found}, not node {node_id}", .dir.display())]
    OtherNode {
        dir: PathBuf,
        found: u64,
        node_id: u64,
    },
    #[error("data dir {} belongs to a quorum of nodes {found:?}, but --quorum lists {listed:?}", .dir.display())]
    OtherQuorum {
        dir: PathBuf,
        found: Vec<u64>,
        listed: Vec<u64>,
    },
    #[error("data dir {} holds Raft data but no {meta_file}; it is damaged or not a Chronik controller dir", .dir.display())]
    RaftWithoutMeta {
        dir: PathBuf,
        meta_file: &'static str,
    },
    #[error("data dir {} belongs to cluster {ours}, but the quorum is cluster {theirs}", .dir.display())]
    OtherCluster {
        dir: PathBuf,
        ours: String,
        theirs: String,
    },
    #[error("cannot open the Raft storage in {}: {reason}", .dir.display())]
    Storage { dir: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    Raft { what: &'static str, reason: String },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("controller stopped after a fatal error")]
    Fatal,
}

impl NodeError {
    pub(crate) fn raft(what: &'static str) -> impl FnOnce(String) -> NodeError {
        move |reason| NodeError::Raft { what, reason }
    }
}
