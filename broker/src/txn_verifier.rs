//! Partition leaders' questions to transaction coordinators (Kafka's `AddPartitionsToTxnManager`),
//! before the first transactional batch of a producer's transaction is appended to a partition:
//!
//! - transaction version 1 (KIP-890 part 1, Produce v11 and older): whether the partition was added
//!   to that transaction (`VerifyOnly`), so a late or zombie batch cannot open a transaction nobody
//!   will ever end (a hanging transaction that would hold the LSO back forever);
//! - transaction version 2 (part 2, Produce v12, and the group coordinator for TxnOffsetCommit v5):
//!   add the partition to the transaction, which the producer no longer does itself.
//!
//! The coordinator of a transactional id is the leader of partition
//! `group::partition_for(transactional_id, N)` of `__transaction_state`, N being that topic's
//! partition count in the metadata image. The question is an AddPartitionsToTxn v4 request in the
//! batched `Transactions` form brokers send, over the inter-broker listener with its security (as
//! the replica fetchers connect). One connection per coordinator is kept and reused; a failed one is
//! dropped.
//!
//! What must stay true:
//! - a partition is verified at most once per transaction: the caller asks only when the producer's
//!   transaction is not yet open in the partition at this epoch (`PartitionLog::needs_verification`),
//!   and holds the partition's verification guard across the question, so a marker that arrives
//!   meanwhile voids the answer (Kafka's `VerificationGuard`);
//! - errors reach the producer as Kafka's `ReplicaManager` translates them ([`translate`]): not in
//!   the transaction is INVALID_TXN_STATE before Produce v11 and TRANSACTION_ABORTABLE from v11; a
//!   coordinator that cannot answer now (unavailable, not the coordinator, loading, concurrent
//!   transactions, a network failure) is NOT_ENOUGH_REPLICAS, which every client retries without
//!   refreshing metadata; PRODUCER_FENCED is INVALID_PRODUCER_EPOCH.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use chronik_metadata::BrokerId;
use chronik_wire::{decode_response, encode_request, read_frame, ClientConnector, KafkaStream};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::group::partition_for;
use crate::metadata::MetadataCache;

/// The internal topic of the transaction coordinators (KIP-98).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// The first AddPartitionsToTxn version with the brokers' batched, verify-only form (KIP-890).
const VERSION: i16 = 4;
/// How long a leader keeps asking to add a partition while the producer's previous transaction is
/// still completing (its markers are being written), before the producer is told to retry.
const ADD_RETRY_WINDOW: Duration = Duration::from_secs(3);
/// How long connecting (TCP, then TLS and SASL) and then the answer may each take.
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RESPONSE_FRAME: usize = 16 << 20;

type Connection = KafkaStream<TcpStream>;

/// What a leader asks of the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnCheck {
    /// Transaction version 1: whether each partition is in the transaction (`VerifyOnly`).
    Verify,
    /// Transaction version 2: add each partition to the transaction.
    Add,
}

/// Asks transaction coordinators about partitions of producers' transactions. See the module
/// docs.
pub struct TxnVerifier {
    enabled: bool,
    broker_id: BrokerId,
    metadata: Arc<MetadataCache>,
    listener: String,
    connector: ClientConnector,
    /// An idle connection per coordinator, taken for one question and put back after it.
    idle: Mutex<HashMap<BrokerId, Connection>>,
    correlation_id: std::sync::atomic::AtomicI32,
}

impl TxnVerifier {
    pub fn new(
        enabled: bool,
        broker_id: BrokerId,
        metadata: Arc<MetadataCache>,
        listener: String,
        connector: ClientConnector,
    ) -> Self {
        Self {
            enabled,
            broker_id,
            metadata,
            listener,
            connector,
            idle: Mutex::new(HashMap::new()),
            correlation_id: Default::default(),
        }
    }

    /// `--transaction-partition-verification-enable`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Verifies (`TxnCheck::Verify`) or adds (`TxnCheck::Add`) each of `partitions` (topic, index)
    /// in the ongoing transaction of `transactional_id` / `producer_id` / `producer_epoch`: for each,
    /// `Ok` or the coordinator's error as it answered (see [`translate`] for what a Produce answers).
    pub async fn check(
        &self,
        check: TxnCheck,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> HashMap<(String, i32), Result<(), ResponseError>> {
        let answer = match self.coordinator(transactional_id) {
            Err(error) => Err(error),
            Ok((coordinator, address)) => {
                let request = request(
                    check,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    partitions,
                );
                self.ask(coordinator, &address, &request).await
            }
        };
        let answer = match answer {
            Ok(response) => response,
            Err(error) => {
                debug!(transactional_id, %error, ?check, "transaction coordinator not asked");
                return partitions.iter().map(|p| (p.clone(), Err(error))).collect();
            }
        };
        let mut found: HashMap<(String, i32), i16> = HashMap::new();
        for txn in &answer.results_by_transaction {
            for topic in &txn.topic_results {
                for p in &topic.results_by_partition {
                    found.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        p.partition_error_code,
                    );
                }
            }
        }
        partitions
            .iter()
            .map(|p| {
                let code = if answer.error_code != 0 {
                    answer.error_code
                } else {
                    // A partition the coordinator did not answer for was not verified.
                    found
                        .get(p)
                        .copied()
                        .unwrap_or(ResponseError::InvalidTxnState.code())
                };
                let result = if code == 0 {
                    Ok(())
                } else {
                    Err(ResponseError::try_from_code(code)
                        .unwrap_or(ResponseError::UnknownServerError))
                };
                (p.clone(), result)
            })
            .collect()
    }

    /// [`TxnVerifier::check`], asked again for the partitions the coordinator answers
    /// CONCURRENT_TRANSACTIONS to an add, for up to [`ADD_RETRY_WINDOW`]. In transaction version 2
    /// the producer starts its next transaction as soon as EndTxn answers, while the markers of the
    /// one before may still be on their way, and the coordinator refuses the add until they are
    /// written (as Kafka's does). `before_each` runs before every question with the partitions about
    /// to be asked (a leader takes new verification guards: the marker voids the ones it holds).
    pub async fn check_settled(
        &self,
        check: TxnCheck,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        mut partitions: Vec<(String, i32)>,
        mut before_each: impl FnMut(&[(String, i32)]),
    ) -> HashMap<(String, i32), Result<(), ResponseError>> {
        let deadline = tokio::time::Instant::now() + ADD_RETRY_WINDOW;
        let mut backoff = Duration::from_millis(5);
        let mut settled = HashMap::new();
        while !partitions.is_empty() {
            before_each(&partitions);
            let answers = self
                .check(
                    check,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                )
                .await;
            let again = tokio::time::Instant::now() + backoff < deadline;
            partitions.clear();
            for (partition, answer) in answers {
                match answer {
                    Err(ResponseError::ConcurrentTransactions)
                        if check == TxnCheck::Add && again =>
                    {
                        partitions.push(partition)
                    }
                    answer => {
                        settled.insert(partition, answer);
                    }
                }
            }
            if !partitions.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
        settled
    }

    /// The coordinator of `transactional_id` and its inter-broker address, or
    /// COORDINATOR_NOT_AVAILABLE.
    fn coordinator(&self, transactional_id: &str) -> Result<(BrokerId, String), ResponseError> {
        let image = self.metadata.current();
        let topic = image
            .topic_by_name(TRANSACTION_STATE_TOPIC)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let count = i32::try_from(topic.partitions.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let index = partition_for(transactional_id, count);
        let leader = image
            .partition(topic.id, index)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let address = image
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .and_then(|b| b.endpoint(Some(&self.listener)))
            .map(|e| e.to_string())
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        Ok((leader, address))
    }

    /// One request and its answer over an idle connection to `coordinator`, or a new one. An idle
    /// connection may have been closed by the coordinator meanwhile (a restart, an expired SASL
    /// session): if it fails, the request is sent once more over a new one.
    async fn ask(
        &self,
        coordinator: BrokerId,
        address: &str,
        request: &AddPartitionsToTxnRequest,
    ) -> Result<AddPartitionsToTxnResponse, ResponseError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&coordinator);
        let reused = idle.is_some();
        match self.ask_over(coordinator, address, request, idle).await {
            Err(_) if reused => self.ask_over(coordinator, address, request, None).await,
            answer => answer,
        }
    }

    async fn ask_over(
        &self,
        coordinator: BrokerId,
        address: &str,
        request: &AddPartitionsToTxnRequest,
        idle: Option<Connection>,
    ) -> Result<AddPartitionsToTxnResponse, ResponseError> {
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect(address).await.map_err(|e| {
                info!(coordinator, address, error = %e, "cannot reach the transaction coordinator");
                ResponseError::NetworkException
            })?,
        };
        let correlation_id = self
            .correlation_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client_id = format!("chronik-txn-verifier-{}", self.broker_id);
        let exchange = async {
            let mut frame = BytesMut::new();
            encode_request(&mut frame, request, VERSION, correlation_id, &client_id)
                .map_err(|e| e.to_string())?;
            connection
                .write_all(&frame)
                .await
                .map_err(|e| e.to_string())?;
            connection.flush().await.map_err(|e| e.to_string())?;
            let body = read_frame(&mut connection, MAX_RESPONSE_FRAME)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the coordinator closed the connection".to_string())?;
            decode_response::<AddPartitionsToTxnRequest>(body, VERSION, correlation_id)
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(response)) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(coordinator, connection);
                Ok(response)
            }
            Ok(Err(error)) => {
                info!(coordinator, address, %error, "transaction verification request failed");
                Err(ResponseError::NetworkException)
            }
            Err(_) => {
                info!(
                    coordinator,
                    address, "transaction coordinator did not answer in time"
                );
                Err(ResponseError::NetworkException)
            }
        }
    }

    async fn connect(&self, address: &str) -> Result<Connection, String> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        tokio::time::timeout(TIMEOUT, self.connector.secure(stream, address))
            .await
            .map_err(|_| "TLS or SASL timed out".to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The request for one transaction.
fn request(
    check: TxnCheck,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> AddPartitionsToTxnRequest {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (name, index) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(topic) => topic.partitions.push(*index),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(vec![*index]),
            ),
        }
    }
    AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(check == TxnCheck::Verify)
            .with_topics(topics),
    ])
}

/// A coordinator's error as a Produce of `produce_version` answers it (Kafka's
/// `AddPartitionsToTxnManager` and `ReplicaManager`): TRANSACTION_ABORTABLE is a generic error
/// producers understand from v11 (KIP-890), INVALID_TXN_STATE before.
pub fn translate(error: ResponseError, produce_version: i16) -> ResponseError {
    match error {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable if produce_version < 11 => {
            ResponseError::InvalidTxnState
        }
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_errors_become_what_older_producers_retry() {
        for retriable in [
            ResponseError::ConcurrentTransactions,
            ResponseError::NetworkException,
            ResponseError::CoordinatorLoadInProgress,
            ResponseError::CoordinatorNotAvailable,
            ResponseError::NotCoordinator,
        ] {
            for version in [9, 11, 12] {
                assert_eq!(
                    translate(retriable, version),
                    ResponseError::NotEnoughReplicas
                );
            }
        }
        for (error, version, answered) in [
            (
                ResponseError::InvalidTxnState,
                12,
                ResponseError::InvalidTxnState,
            ),
            (
                ResponseError::ProducerFenced,
                12,
                ResponseError::InvalidProducerEpoch,
            ),
            (
                ResponseError::TransactionalIdAuthorizationFailed,
                10,
                ResponseError::TransactionalIdAuthorizationFailed,
            ),
            (
                ResponseError::TransactionAbortable,
                10,
                ResponseError::InvalidTxnState,
            ),
            (
                ResponseError::TransactionAbortable,
                11,
                ResponseError::TransactionAbortable,
            ),
        ] {
            assert_eq!(translate(error, version), answered, "{error:?} v{version}");
        }
    }

    #[test]
    fn the_request_is_one_transaction_with_its_partitions_by_topic() {
        let add = request(TxnCheck::Add, "tx", 7, 2, &[("a".into(), 0)]);
        assert!(!add.transactions[0].verify_only);
        let request = request(
            TxnCheck::Verify,
            "tx",
            7,
            2,
            &[("a".into(), 0), ("b".into(), 1), ("a".into(), 2)],
        );
        assert_eq!(request.transactions.len(), 1);
        let txn = &request.transactions[0];
        assert!(txn.verify_only);
        assert_eq!((txn.producer_id.0, txn.producer_epoch), (7, 2));
        let topics: Vec<(String, Vec<i32>)> = txn
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partitions.clone()))
            .collect();
        assert_eq!(
            topics,
            vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]
        );
    }
}
