//! DeleteRecords on the replicas (Kafka's `ReplicaManager.deleteRecords`,
//! `Partition.deleteRecordsOnLeader` and `DelayedDeleteRecords`): the leader moves its own log start
//! offset, then the request waits until the partition's low watermark — the smallest log start over
//! the leader and its live replicas, see [`Partition::low_watermark`] — reaches the offset. Followers
//! move their log start to the leader's as each Fetch response tells them (`replica::fetcher`) and
//! report it in their next Fetch request, which wakes the wait (no polling: it sleeps on the same
//! data-change signal as acks=all produces).
//!
//! What must stay true: the log start moves only while this broker leads the partition, under the
//! partition's state lock, and never past the high watermark; a deletion is on disk (checkpointed)
//! before it is answered, on the leader at once and on every replica the low watermark counts
//! before success is answered.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::time::Instant;

use super::{Partition, ReplicaManager};
use crate::log::LogError;

/// The DeleteRecords offset meaning "the high watermark" (Kafka's `DeleteRecordsRequest.HIGH_WATERMARK`).
pub const HIGH_WATERMARK: i64 = -1;

/// What the leader's own deletion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderDeletion {
    /// The offset the log start was moved to (-1 resolved to the high watermark).
    pub requested_offset: i64,
    /// The partition's low watermark right after.
    pub low_watermark: i64,
}

/// Why a DeleteRecords partition failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsError {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("the partition is no longer hosted here")]
    UnknownPartition,
    #[error("records of a topic without cleanup.policy=delete cannot be deleted")]
    PolicyViolation,
    #[error("the offset {offset} is not valid")]
    InvalidOffset { offset: i64 },
    #[error("the replicas did not all move their log start offset in time")]
    TimedOut,
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storage task failed: {0}")]
    Storage(String),
}

impl DeleteRecordsError {
    /// The error code of the partition in the DeleteRecords response.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            DeleteRecordsError::NotLeader => ResponseError::NotLeaderOrFollower,
            DeleteRecordsError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
            DeleteRecordsError::PolicyViolation => ResponseError::PolicyViolation,
            DeleteRecordsError::InvalidOffset { .. } => ResponseError::OffsetOutOfRange,
            DeleteRecordsError::TimedOut => ResponseError::RequestTimedOut,
            DeleteRecordsError::Log(log) => log.kafka_error(),
            DeleteRecordsError::Storage(_) => ResponseError::KafkaStorageError,
        }
    }
}

impl ReplicaManager {
    /// Moves the log start offset of a partition this broker leads to `offset` (-1: the high
    /// watermark), in Kafka's order of checks: an offline log (KAFKA_STORAGE_ERROR), not the leader
    /// (NOT_LEADER_OR_FOLLOWER), a topic whose `cleanup.policy` lacks `delete` (POLICY_VIOLATION), a
    /// negative offset or one above the high watermark (OFFSET_OUT_OF_RANGE). Moving it to where it
    /// already is, or below, succeeds without change. Returns the offset and the low watermark;
    /// [`ReplicaManager::wait_for_low_watermark`] then waits for the followers.
    pub async fn delete_records_on_leader(
        &self,
        partition: &Arc<Partition>,
        offset: i64,
    ) -> Result<LeaderDeletion, DeleteRecordsError> {
        if partition.log.is_offline() {
            return Err(LogError::Offline {
                dir: partition.log.dir().to_path_buf(),
            }
            .into());
        }
        let self_id = self.broker_id();
        let leading = partition.clone();
        let moved = tokio::task::spawn_blocking(move || {
            leading.while_leading(self_id, |log| {
                if !log.config().cleanup_delete {
                    return Err(DeleteRecordsError::PolicyViolation);
                }
                let offset = if offset == HIGH_WATERMARK {
                    log.high_watermark()
                } else {
                    offset
                };
                if offset < 0 {
                    return Err(DeleteRecordsError::InvalidOffset { offset });
                }
                log.maybe_increment_log_start_offset(offset)?;
                Ok(offset)
            })
        })
        .await
        .map_err(|e| DeleteRecordsError::Storage(e.to_string()))?;
        let requested_offset = moved.ok_or(DeleteRecordsError::NotLeader)??;
        // Readers below the new start now get OFFSET_OUT_OF_RANGE; other waits may be satisfied.
        self.partition_changed(partition);
        let low_watermark = self
            .low_watermark(partition)
            .ok_or(DeleteRecordsError::NotLeader)?;
        Ok(LeaderDeletion {
            requested_offset,
            low_watermark,
        })
    }

    /// The partition's low watermark, counting the replicas on live (unfenced) brokers; `None` when
    /// this broker does not lead it.
    pub fn low_watermark(&self, partition: &Partition) -> Option<i64> {
        partition.low_watermark(self.broker_id(), |b| self.is_alive_broker(b))
    }

    /// Waits until the partition's low watermark reaches `required_offset` and returns it (Kafka's
    /// `DelayedDeleteRecords.tryComplete`), waking whenever a follower's fetch reports a new log start
    /// or roles change. Fails with NOT_LEADER_OR_FOLLOWER when leadership moves,
    /// UNKNOWN_TOPIC_OR_PARTITION when the partition is no longer hosted here, KAFKA_STORAGE_ERROR
    /// when its log went offline, and REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_for_low_watermark(
        &self,
        partition: &Arc<Partition>,
        required_offset: i64,
        deadline: Instant,
    ) -> Result<i64, DeleteRecordsError> {
        let mut changed = self.subscribe_data();
        loop {
            changed.borrow_and_update();
            let hosted = self
                .partition(partition.topic_id, partition.index)
                .is_some_and(|p| Arc::ptr_eq(&p, partition));
            if !hosted {
                return Err(DeleteRecordsError::UnknownPartition);
            }
            if partition.log.is_offline() {
                return Err(LogError::Offline {
                    dir: partition.log.dir().to_path_buf(),
                }
                .into());
            }
            match self.low_watermark(partition) {
                None => return Err(DeleteRecordsError::NotLeader),
                Some(low_watermark) if low_watermark >= required_offset => {
                    return Ok(low_watermark)
                }
                Some(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(DeleteRecordsError::TimedOut),
                changed = changed.changed() => if changed.is_err() {
                    return Err(DeleteRecordsError::TimedOut);
                },
            }
        }
    }
}
