//! DescribeTransactions (key 65): each transactional id's state at its coordinator (`txn`), as Kafka's
//! `KafkaApis.handleDescribeTransactionsRequest` answers: TRANSACTIONAL_ID_AUTHORIZATION_FAILED without
//! DESCRIBE on the id, NOT_COORDINATOR when another broker coordinates it, TRANSACTIONAL_ID_NOT_FOUND
//! for an unknown id; the partitions of topics the principal may not DESCRIBE are left out.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let state = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(StrBytes::from_static_str(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if !ctx.authorize_transactional_id(rc, AclOperation::Describe, &id.0) {
            states.push(
                state.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
            );
            continue;
        }
        match ctx.txns.describe(&id.0) {
            Err(error) => states.push(state.with_error_code(error.code())),
            Ok(txn) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (topic, partition) in &txn.partitions {
                    if !ctx.authorize_topic(rc, AclOperation::Describe, topic) {
                        continue;
                    }
                    match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                        Some(t) => t.partitions.push(*partition),
                        None => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                                .with_partitions(vec![*partition]),
                        ),
                    }
                }
                states.push(
                    state
                        .with_transaction_state(StrBytes::from_static_str(txn.state.name()))
                        .with_transaction_timeout_ms(txn.timeout_ms)
                        .with_transaction_start_time_ms(txn.start_timestamp_ms)
                        .with_producer_id(ProducerId(txn.producer_id))
                        .with_producer_epoch(txn.producer_epoch)
                        .with_topics(topics),
                );
            }
        }
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
