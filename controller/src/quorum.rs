//! `Quorum`: the single writer. Every command runs here, one at a time, on the active controller: confirm
//! leadership (a linearizable read, so the applied image includes everything committed before), evaluate
//! the pure command against that image, propose its records, and wait until they are committed and
//! applied. Because commands are serialized and each waits for its own apply, the next command always
//! sees the effects of the previous one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tokio::sync::Mutex;

use crate::applied::AppliedMetadata;
use crate::error::{ApiError, ControllerError, Result};
use crate::raft::{ChronikRaft, Request};
use crate::state::{ControllerResult, MetadataImage};

pub struct Quorum {
    raft: ChronikRaft,
    applied: Arc<AppliedMetadata>,
    node_id: u64,
    /// Every voter's gRPC address, from `--quorum`.
    voters: BTreeMap<u64, String>,
    /// The last committed log index, as persisted by the log store (0: none yet).
    committed: Arc<AtomicU64>,
    write_lock: Mutex<()>,
    write_timeout: Duration,
}

impl Quorum {
    pub fn new(
        raft: ChronikRaft,
        applied: Arc<AppliedMetadata>,
        node_id: u64,
        voters: BTreeMap<u64, String>,
        committed: Arc<AtomicU64>,
        write_timeout: Duration,
    ) -> Self {
        Self {
            raft,
            applied,
            node_id,
            voters,
            committed,
            write_lock: Mutex::new(()),
            write_timeout,
        }
    }

    pub fn raft(&self) -> &ChronikRaft {
        &self.raft
    }

    pub fn applied(&self) -> &Arc<AppliedMetadata> {
        &self.applied
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn voters(&self) -> &BTreeMap<u64, String> {
        &self.voters
    }

    /// The last log index this node knows to be committed.
    pub fn committed_index(&self) -> Option<u64> {
        Some(self.committed.load(Ordering::Acquire)).filter(|&c| c > 0)
    }

    /// The active controller as this node believes it: `(id, address)`.
    pub fn leader(&self) -> Option<(u64, String)> {
        let leader = self.raft.metrics().borrow().current_leader?;
        let address = self.voters.get(&leader).cloned().unwrap_or_default();
        Some((leader, address))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    fn not_controller(&self) -> ControllerError {
        ControllerError::NotController {
            leader: self.leader().filter(|(id, _)| *id != self.node_id),
        }
    }

    /// Runs a command on the active controller and returns the metadata offset its records were applied
    /// at (the current offset when it wrote nothing) with its reply.
    pub async fn run<T>(
        &self,
        command: impl FnOnce(&MetadataImage) -> std::result::Result<ControllerResult<T>, ApiError>,
    ) -> Result<(u64, T)> {
        let _serialized = self.write_lock.lock().await;
        tokio::time::timeout(self.write_timeout, async {
            self.raft
                .ensure_linearizable()
                .await
                .map_err(|e| self.map_read_error(e))?;
            let ControllerResult { records, reply } = self.applied.with_image(command)?;
            if records.is_empty() {
                return Ok((self.applied.offset(), reply));
            }
            let response = self
                .raft
                .client_write(Request { records })
                .await
                .map_err(|e| self.map_write_error(e))?;
            Ok((response.data.offset, reply))
        })
        .await
        .map_err(|_| {
            ControllerError::Unavailable(format!(
                "no quorum answered within {} ms",
                self.write_timeout.as_millis()
            ))
        })?
    }

    /// Waits, bounded, until this node has applied at least `offset`.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn map_read_error(
        &self,
        e: RaftError<u64, CheckIsLeaderError<u64, openraft::BasicNode>>,
    ) -> ControllerError {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => self.not_controller(),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                ControllerError::Unavailable(q.to_string())
            }
            RaftError::Fatal(f) => ControllerError::Unavailable(f.to_string()),
        }
    }

    fn map_write_error(
        &self,
        e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>,
    ) -> ControllerError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => self.not_controller(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ControllerError::Unavailable(c.to_string())
            }
            RaftError::Fatal(f) => ControllerError::Unavailable(f.to_string()),
        }
    }
}
