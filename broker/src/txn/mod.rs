//! The transaction coordinator (Kafka's `TransactionCoordinator`, `TransactionStateManager` and
//! `TransactionMarkerChannelManager`; KIP-98, KIP-360, KIP-890 parts 1 and 2): transactional ids, their
//! producer ids and epochs and their ongoing transactions, stored as records in the internal,
//! compacted topic `__transaction_state`.
//!
//! A transactional id belongs to one partition of that topic, chosen as a group's offsets partition is
//! ([`crate::group::partition_for`]); the broker leading that partition is its coordinator, and the
//! partition's leader epoch is the coordinator epoch written into every marker. When this broker
//! becomes a partition's leader it replays the partition (answering COORDINATOR_LOAD_IN_PROGRESS
//! meanwhile) and resumes the markers of every transaction it finds prepared; when it stops leading it
//! drops the partition's state (NOT_COORDINATOR).
//!
//! What must stay true:
//! - a state change is visible only once its record is committed (acks=all); until then the id is
//!   `pending` and other requests on it get CONCURRENT_TRANSACTIONS;
//! - EndTxn is answered once PrepareCommit or PrepareAbort is committed; from then on the outcome is
//!   decided, and this coordinator or the next one writes the markers to every partition of the
//!   transaction before it writes CompleteCommit or CompleteAbort;
//! - a producer is fenced by an epoch bump that is committed before anyone is told of it;
//! - a client's AddPartitionsToTxn for an id whose previous transaction is still completing waits for
//!   it (bounded) instead of refusing at once: librdkafka sends EndTxn(abort) after any attempted add,
//!   and an abort reaching CompleteCommit or CompleteAbort is refused fatally (INVALID_TXN_STATE). A
//!   broker's add (transaction version 2) is refused at once, and the broker asks again;
//! - in transaction version 2 every end bumps the epoch before the markers are written with it, so
//!   nothing of an ended transaction (a late batch, an EndTxn retried after the next one began) can
//!   land in the next one.
//!
//! Layout: `records` (the topic's record formats), `state` (one id's state machine), `coordinator`
//! (leadership, loading, writes, timers and the operations the handlers call), `markers` (sending
//! WriteTxnMarkers to partition leaders).

pub mod coordinator;
pub mod markers;
pub mod records;
pub mod state;

use std::time::Duration;

pub use coordinator::TransactionCoordinator;
pub use state::TxnState;

use crate::config::TxnArgs;

/// The internal topic holding transactional ids and their transactions.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// PRODUCER_FENCED as a client of this request version understands it: versions before KIP-588's
/// (InitProducerId v4, AddPartitionsToTxn v2, AddOffsetsToTxn v2, EndTxn v2, TxnOffsetCommit v3) get
/// INVALID_PRODUCER_EPOCH, as Kafka answers them.
pub fn fenced_error_for(
    error: kafka_protocol::error::ResponseError,
    version: i16,
    fenced_since: i16,
) -> kafka_protocol::error::ResponseError {
    use kafka_protocol::error::ResponseError;
    if error == ResponseError::ProducerFenced && version < fenced_since {
        ResponseError::InvalidProducerEpoch
    } else {
        error
    }
}

#[derive(Clone, Debug)]
pub struct TxnConfig {
    pub num_partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub max_timeout_ms: i32,
    pub abort_timed_out_interval: Duration,
    pub transactional_id_expiration: Duration,
    /// How long a write to the state topic waits for its in-sync replicas.
    pub write_timeout: Duration,
    /// Whether partition leaders verify a transaction's first batch with the coordinator (KIP-890
    /// part 1, `--transaction-partition-verification-enable`).
    pub partitions_verified: bool,
}

impl TxnArgs {
    pub fn config(&self) -> TxnConfig {
        TxnConfig {
            num_partitions: self.transaction_state_log_num_partitions,
            replication_factor: self.transaction_state_log_replication_factor,
            min_insync_replicas: self.transaction_state_log_min_isr,
            max_timeout_ms: self.transaction_max_timeout_ms,
            abort_timed_out_interval: Duration::from_millis(
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            ),
            transactional_id_expiration: Duration::from_millis(self.transactional_id_expiration_ms),
            write_timeout: Duration::from_secs(5),
            partitions_verified: true,
        }
    }
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            num_partitions: 50,
            replication_factor: 3,
            min_insync_replicas: 2,
            max_timeout_ms: 900_000,
            abort_timed_out_interval: Duration::from_secs(10),
            transactional_id_expiration: Duration::from_secs(7 * 24 * 3600),
            write_timeout: Duration::from_secs(5),
            partitions_verified: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;

    use super::*;

    #[test]
    fn producer_fenced_is_invalid_producer_epoch_before_kip_588_versions() {
        // InitProducerId v4, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn v2, TxnOffsetCommit v3.
        for (since, older, newer) in [(4, 3, 4), (2, 1, 2), (3, 2, 3)] {
            assert_eq!(
                fenced_error_for(ResponseError::ProducerFenced, older, since),
                ResponseError::InvalidProducerEpoch
            );
            assert_eq!(
                fenced_error_for(ResponseError::ProducerFenced, newer, since),
                ResponseError::ProducerFenced
            );
        }
        assert_eq!(
            fenced_error_for(ResponseError::ConcurrentTransactions, 0, 4),
            ResponseError::ConcurrentTransactions
        );
    }
}
