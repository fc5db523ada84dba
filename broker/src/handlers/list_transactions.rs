//! ListTransactions (key 66): the transactional ids this broker coordinates, filtered as Kafka's
//! `TransactionStateManager.listTransactionStates` does: by state name (names Kafka does not know are
//! returned in `UnknownStateFilters`), by producer id, and (v1, KIP-994) by running longer than
//! `DurationFilter` ms. Only ids the principal may DESCRIBE are listed. COORDINATOR_LOAD_IN_PROGRESS
//! comes alongside the list while some partition of `__transaction_state` is loading. v2's
//! transactional id pattern (KIP-1152) is not served.

use std::collections::HashSet;

use chronik_metadata::acl::AclOperation;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};
use crate::log::now_ms;
use crate::txn::TxnState;

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut states = HashSet::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => {
                states.insert(state);
            }
            None => unknown.push(name.clone()),
        }
    }
    let producer_ids: HashSet<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let duration_ms = if rc.version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let now = now_ms();
    let (error, all) = ctx.txns.list();
    let listed = all
        .into_iter()
        .filter(|t| t.state != TxnState::Dead)
        .filter(|t| producer_ids.is_empty() || producer_ids.contains(&t.producer_id))
        .filter(|t| request.state_filters.is_empty() || states.contains(&t.state))
        .filter(|t| duration_ms < 0 || now.saturating_sub(t.start_timestamp_ms) > duration_ms)
        .filter(|t| ctx.authorize_transactional_id(rc, AclOperation::Describe, &t.transactional_id))
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(StrBytes::from_static_str(t.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_error_code(super::error_code(error))
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
