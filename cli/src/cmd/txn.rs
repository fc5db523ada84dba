//! `txn list|describe`: transactions, which live on the brokers (each transactional id's transaction
//! coordinator, the leader of its `__transaction_state` partition), through
//! [`crate::kafka::txn::TxnAdmin`]. The controllers only say which brokers are live and where they
//! listen. Nothing here prints: each command returns a report for `output`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::client::ControllerClient;
use crate::cmd::broker::live_addresses;
use crate::cmd::group::BrokerFailure;
use crate::error::CliError;
use crate::kafka::txn::{TransactionFilters, TxnAdmin};
use crate::kafka::BrokerPool;

/// `txn list`: every transactional id of the cluster that passes the filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionList {
    /// The transactions, by transactional id.
    pub transactions: Vec<TransactionSummary>,
    /// State filters no broker knew (Kafka's names are Empty, Ongoing, PrepareCommit, PrepareAbort,
    /// CompleteCommit, CompleteAbort, Dead, PrepareEpochFence).
    pub unknown_states: Vec<String>,
    /// Brokers that did not answer ListTransactions: their transactions are missing from the list.
    pub failed_brokers: Vec<BrokerFailure>,
}

/// One line of `txn list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionSummary {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
    /// The broker coordinating it (the one that listed it).
    pub coordinator: i32,
}

/// `txn describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionDetails {
    pub transactional_id: String,
    pub coordinator: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the ongoing transaction started (ms since the epoch); -1 when none is open.
    pub start_time_ms: i64,
    /// The partitions of the ongoing transaction.
    pub partitions: Vec<TxnPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnPartition {
    pub topic: String,
    pub partition: i32,
}

impl TransactionList {
    /// A broker that did not answer makes the list incomplete: the exit status says so.
    pub fn failure(&self) -> Option<CliError> {
        (!self.failed_brokers.is_empty()).then(|| {
            CliError::UnexpectedReply(format!(
                "{} broker(s) did not answer ListTransactions",
                self.failed_brokers.len()
            ))
        })
    }
}

async fn connect(
    client: &ControllerClient,
    retry_timeout_ms: u64,
) -> Result<(TxnAdmin, Vec<i32>), CliError> {
    let addresses = live_addresses(client).await?;
    let live: Vec<i32> = addresses.keys().copied().collect();
    let pool = BrokerPool::new(addresses, client.request_timeout());
    Ok((
        TxnAdmin::new(pool, std::time::Duration::from_millis(retry_timeout_ms)),
        live,
    ))
}

/// `txn list`: ListTransactions on every live broker, merged by transactional id.
pub async fn list(
    client: &ControllerClient,
    filters: &TransactionFilters,
    retry_timeout_ms: u64,
) -> Result<TransactionList, CliError> {
    let (mut admin, live) = connect(client, retry_timeout_ms).await?;
    let mut transactions: BTreeMap<String, TransactionSummary> = BTreeMap::new();
    let mut unknown_states = Vec::new();
    let mut failed_brokers = Vec::new();
    for broker in live {
        match admin.list(broker, filters).await {
            Ok((listed, unknown)) => {
                for t in listed {
                    // While a coordinator moves, two brokers may list an id; keep the first.
                    transactions
                        .entry(t.transactional_id.clone())
                        .or_insert(TransactionSummary {
                            transactional_id: t.transactional_id,
                            producer_id: t.producer_id,
                            state: t.state,
                            coordinator: broker,
                        });
                }
                for state in unknown {
                    if !unknown_states.contains(&state) {
                        unknown_states.push(state);
                    }
                }
            }
            Err(error) => failed_brokers.push(BrokerFailure {
                broker_id: broker,
                error: error.to_string(),
            }),
        }
    }
    Ok(TransactionList {
        transactions: transactions.into_values().collect(),
        unknown_states,
        failed_brokers,
    })
}

/// `txn describe`: DescribeTransactions on the id's coordinator.
pub async fn describe(
    client: &ControllerClient,
    transactional_id: &str,
    retry_timeout_ms: u64,
) -> Result<TransactionDetails, CliError> {
    let (mut admin, _) = connect(client, retry_timeout_ms).await?;
    let described = admin.describe(transactional_id).await?;
    Ok(TransactionDetails {
        transactional_id: transactional_id.to_owned(),
        coordinator: described.coordinator,
        state: described.state,
        producer_id: described.producer_id,
        producer_epoch: described.producer_epoch,
        timeout_ms: described.timeout_ms,
        start_time_ms: described.start_time_ms,
        partitions: described
            .partitions
            .into_iter()
            .map(|(topic, partition)| TxnPartition { topic, partition })
            .collect(),
    })
}
