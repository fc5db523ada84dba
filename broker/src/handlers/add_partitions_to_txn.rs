//! AddPartitionsToTxn (key 24): partitions join a producer's transaction at its coordinator (`txn`).
//!
//! - v0–3 are the client form: one transaction, its partitions written to `__transaction_state`
//!   before the answer.
//! - v4+ are the broker form (KIP-890 part 1): a batch of transactions, CLUSTER_ACTION on the cluster
//!   (else a top-level CLUSTER_AUTHORIZATION_FAILED). With `VerifyOnly` a partition leader asks whether
//!   each partition is in the producer's ongoing transaction before it appends a transactional batch;
//!   a partition that is not gets TRANSACTION_ABORTABLE. Without it the partitions are added.
//!
//! Per-partition errors are Kafka's (`KafkaApis.handleAddPartitionsToTxnRequest`): without WRITE on the
//! transactional id every partition gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED; a topic without WRITE
//! gets TOPIC_AUTHORIZATION_FAILED, an unknown partition UNKNOWN_TOPIC_OR_PARTITION, and then the
//! others OPERATION_NOT_ATTEMPTED; otherwise every partition carries the coordinator's answer
//! (PRODUCER_FENCED as INVALID_PRODUCER_EPOCH before v2, KIP-588).

use std::collections::BTreeSet;

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};
use crate::txn::fenced_error_for;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if rc.version < 4 {
        let results = add(
            ctx,
            rc,
            &request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            false,
            &request.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    if !ctx.authorize_cluster(rc, AclOperation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for txn in &request.transactions {
        let topic_results = add(
            ctx,
            rc,
            &txn.transactional_id,
            txn.producer_id.0,
            txn.producer_epoch,
            txn.verify_only,
            &txn.topics,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// One transaction's partitions: checks, then the coordinator's answer for each.
async fn add(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    transactional_id: &TransactionalId,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let asked: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let errors: Vec<Option<ResponseError>> =
        if !ctx.authorize_transactional_id(rc, AclOperation::Write, &transactional_id.0) {
            vec![Some(ResponseError::TransactionalIdAuthorizationFailed); asked.len()]
        } else {
            let image = ctx.metadata.current();
            let checks: Vec<Option<ResponseError>> = asked
                .iter()
                .map(|(topic, partition)| {
                    if !ctx.authorize_topic(rc, AclOperation::Write, topic) {
                        Some(ResponseError::TopicAuthorizationFailed)
                    } else if !image.topic_by_name(topic).is_some_and(|t| {
                        *partition >= 0 && (*partition as usize) < t.partitions.len()
                    }) {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else {
                        None
                    }
                })
                .collect();
            if checks.iter().any(Option::is_some) {
                checks
                    .into_iter()
                    .map(|e| e.or(Some(ResponseError::OperationNotAttempted)))
                    .collect()
            } else if verify_only {
                match ctx.txns.verify_partitions(
                    &transactional_id.0,
                    producer_id,
                    producer_epoch,
                    &asked,
                ) {
                    Ok(errors) => errors,
                    Err(error) => vec![Some(error); asked.len()],
                }
            } else {
                let partitions: BTreeSet<(String, i32)> = asked.iter().cloned().collect();
                let result = ctx
                    .txns
                    .add_partitions(&transactional_id.0, producer_id, producer_epoch, partitions)
                    .await;
                vec![result.err().map(|e| fenced_error_for(e, rc.version, 2)); asked.len()]
            }
        };
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), error) in asked.into_iter().zip(errors) {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(super::error_code(error));
        match results.iter_mut().find(|r| r.name.0.as_str() == topic) {
            Some(r) => r.results_by_partition.push(result),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    results
}
