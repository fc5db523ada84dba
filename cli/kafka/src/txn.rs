//! Transaction admin calls (KIP-664): ListTransactions on one broker (the ids it coordinates) and
//! DescribeTransactions of one transactional id on its coordinator, found with FindCoordinator key
//! type 1. Retriable answers (the coordinator loading, moving or not yet elected) are retried with
//! backoff until the retry deadline; every single request is bounded by the pool's request timeout.

use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::messages::{
    DescribeTransactionsRequest, FindCoordinatorRequest, ListTransactionsRequest, ProducerId,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::admin::{codes, is_coordinator_retriable, pause_until, INITIAL_BACKOFF};
use super::{error_name, join_host_port, BrokerPool, KafkaError};

const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=5;
const TRANSACTION_KEY_TYPE: i8 = 1;
const LIST_TRANSACTIONS_VERSIONS: RangeInclusive<i16> = 0..=1;
const DESCRIBE_TRANSACTIONS_VERSIONS: RangeInclusive<i16> = 0..=0;

/// One transaction as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// What ListTransactions keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilters {
    /// State names (Kafka's: Empty, Ongoing, PrepareCommit, ...); empty for all.
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running longer than this (ms); -1 for all. Needs ListTransactions v1.
    pub min_duration_ms: i64,
}

/// One transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTransaction {
    pub coordinator: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub start_time_ms: i64,
    /// `(topic, partition)` of the ongoing transaction, sorted.
    pub partitions: Vec<(String, i32)>,
}

/// Transaction admin requests over a [`BrokerPool`].
#[derive(Debug)]
pub struct TxnAdmin {
    pool: BrokerPool,
    retry_timeout: Duration,
}

impl TxnAdmin {
    pub fn new(pool: BrokerPool, retry_timeout: Duration) -> Self {
        TxnAdmin {
            pool,
            retry_timeout,
        }
    }

    /// ListTransactions on one broker: the transactions it coordinates that pass `filters`, and the
    /// state names it did not know.
    pub async fn list(
        &mut self,
        broker: i32,
        filters: &TransactionFilters,
    ) -> Result<(Vec<ListedTransaction>, Vec<String>), KafkaError> {
        let deadline = Instant::now() + self.retry_timeout;
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let (version, response) = self
                .pool
                .call(broker, LIST_TRANSACTIONS_VERSIONS, |_| {
                    ListTransactionsRequest::default()
                        .with_state_filters(
                            filters
                                .states
                                .iter()
                                .map(|s| StrBytes::from_string(s.clone()))
                                .collect(),
                        )
                        .with_producer_id_filters(
                            filters
                                .producer_ids
                                .iter()
                                .map(|&p| ProducerId(p))
                                .collect(),
                        )
                        .with_duration_filter(filters.min_duration_ms)
                })
                .await?;
            if filters.min_duration_ms >= 0 && version < 1 {
                return Err(KafkaError::Broker {
                    what: format!("ListTransactions on broker {broker} with a duration filter"),
                    code: 35,
                    name: error_name(35),
                });
            }
            let code = response.error_code;
            if code == 0 {
                let mut listed: Vec<ListedTransaction> = response
                    .transaction_states
                    .into_iter()
                    .map(|t| ListedTransaction {
                        transactional_id: t.transactional_id.0.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    })
                    .collect();
                listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
                let unknown = response
                    .unknown_state_filters
                    .into_iter()
                    .map(|s| s.to_string())
                    .collect();
                return Ok((listed, unknown));
            }
            let what = || format!("ListTransactions on broker {broker}");
            if code != codes::COORDINATOR_LOAD_IN_PROGRESS {
                return Err(KafkaError::broker(what(), code));
            }
            pause_until(&mut backoff, deadline, || {
                format!("waiting for {} (last answer: {})", what(), error_name(code))
            })
            .await?;
        }
    }

    /// DescribeTransactions of `transactional_id` on its coordinator.
    pub async fn describe(
        &mut self,
        transactional_id: &str,
    ) -> Result<DescribedTransaction, KafkaError> {
        let deadline = Instant::now() + self.retry_timeout;
        let mut backoff = INITIAL_BACKOFF;
        let mut next = 0usize;
        loop {
            let brokers = self.pool.broker_ids();
            let Some(&broker) = brokers.get(next % brokers.len().max(1)) else {
                return Err(KafkaError::UnknownBroker { broker_id: -1 });
            };
            next += 1;
            let last = match self.describe_once(broker, transactional_id).await {
                Ok(Ok(described)) => return Ok(described),
                Ok(Err((code, what))) if is_coordinator_retriable(code) => {
                    format!("{what}: {}", error_name(code))
                }
                Ok(Err((code, what))) => return Err(KafkaError::broker(what, code)),
                Err(
                    error @ (KafkaError::Connect { .. }
                    | KafkaError::Io { .. }
                    | KafkaError::Timeout { .. }),
                ) => error.to_string(),
                Err(error) => return Err(error),
            };
            pause_until(&mut backoff, deadline, || {
                format!("waiting to describe transactional id '{transactional_id}' (last answer: {last})")
            })
            .await?;
        }
    }

    /// FindCoordinator on `broker`, then DescribeTransactions on the coordinator: the description,
    /// or an error code and what was asked.
    async fn describe_once(
        &mut self,
        broker: i32,
        transactional_id: &str,
    ) -> Result<Result<DescribedTransaction, (i16, String)>, KafkaError> {
        let key = StrBytes::from_string(transactional_id.to_owned());
        let (version, response) = self
            .pool
            .call(broker, FIND_COORDINATOR_VERSIONS, |version| {
                let request = FindCoordinatorRequest::default().with_key_type(TRANSACTION_KEY_TYPE);
                if version >= 4 {
                    request.with_coordinator_keys(vec![key.clone()])
                } else {
                    request.with_key(key.clone())
                }
            })
            .await?;
        let (code, node, host, port) = if version >= 4 {
            match response.coordinators.into_iter().next() {
                Some(c) => (c.error_code, c.node_id, c.host, c.port),
                None => (
                    codes::COORDINATOR_NOT_AVAILABLE,
                    Default::default(),
                    StrBytes::default(),
                    -1,
                ),
            }
        } else {
            (
                response.error_code,
                response.node_id,
                response.host,
                response.port,
            )
        };
        if code != 0 {
            return Ok(Err((
                code,
                format!("FindCoordinator of transactional id '{transactional_id}'"),
            )));
        }
        let coordinator = node.0;
        self.pool.learn(coordinator, join_host_port(&host, port));
        let (_, response) = self
            .pool
            .call(coordinator, DESCRIBE_TRANSACTIONS_VERSIONS, |_| {
                DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(key.clone())])
            })
            .await?;
        let Some(state) = response.transaction_states.into_iter().next() else {
            return Ok(Err((
                codes::COORDINATOR_NOT_AVAILABLE,
                format!("DescribeTransactions on broker {coordinator}"),
            )));
        };
        if state.error_code != 0 {
            return Ok(Err((
                state.error_code,
                format!("DescribeTransactions of '{transactional_id}' on broker {coordinator}"),
            )));
        }
        let mut partitions: Vec<(String, i32)> = state
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect();
        partitions.sort();
        Ok(Ok(DescribedTransaction {
            coordinator,
            state: state.transaction_state.to_string(),
            producer_id: state.producer_id.0,
            producer_epoch: state.producer_epoch,
            timeout_ms: state.transaction_timeout_ms,
            start_time_ms: state.transaction_start_time_ms,
            partitions,
        }))
    }
}
