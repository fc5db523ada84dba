//! AddPartitionsToTxn (key 24): partitions join a producer's transaction at its coordinator (`txn`).
//!
//! - v0–3 are the client form: one transaction, its partitions written to `__transaction_state`
//!   before the answer.
//! - v4+ are the broker form (KIP-890 part 1): a batch of transactions, CLUSTER_ACTION on the cluster
//!   (else a top-level CLUSTER_AUTHORIZATION_FAILED). With `VerifyOnly` a partition leader asks whether
//!   each partition is in the producer's ongoing transaction before it appends a transactional batch;
//!   a partition that is not gets TRANSACTION_ABORTABLE. Without it the partitions are added for the
//!   producer: transaction version 2 (KIP-890 part 2), where a partition leader (Produce v12) or a
//!   group coordinator (TxnOffsetCommit v5) adds them. Kafka's coordinator answers such an add
//!   CONCURRENT_TRANSACTIONS at once while the previous transaction completes, and so does this one.
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
use crate::txn::state::TRANSACTION_VERSION_2;

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
                // The broker form adds for a transaction version 2 producer; the client form is
                // version 1 and waits for a previous transaction to complete (see `add_partitions`).
                let broker_form = rc.version >= 4;
                let client_version = if broker_form {
                    TRANSACTION_VERSION_2
                } else {
                    0
                };
                let result = ctx
                    .txns
                    .add_partitions(
                        &transactional_id.0,
                        producer_id,
                        producer_epoch,
                        partitions,
                        client_version,
                        rc.peer,
                    )
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

/// Kafka's authorization of the transaction APIs, with the standard authorizer and no ACL-less
/// fallback: only what the ACLs grant passes, and each refusal has Kafka's error in Kafka's order.
#[cfg(test)]
mod authorization_tests {
    use chronik_metadata::acl::{AclBinding, AclPermissionType, PatternType, ResourceType};
    use chronik_metadata::Record;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest, GroupId,
        InitProducerIdRequest, ListTransactionsRequest, ProducerId, TxnOffsetCommitRequest,
    };
    use uuid::Uuid;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, broker, topic, TestBroker};
    use crate::handlers::{
        add_offsets_to_txn, describe_transactions, end_txn, init_producer_id, list_transactions,
        txn_offset_commit,
    };

    fn allow(resource_type: ResourceType, name: &str, operation: AclOperation) -> Record {
        Record::AccessControlEntry {
            id: Uuid::new_v4(),
            acl: AclBinding {
                resource_type,
                resource_name: name.into(),
                pattern_type: PatternType::Literal,
                principal: "User:ANONYMOUS".into(),
                host: "*".into(),
                operation,
                permission: AclPermissionType::Allow,
            },
        }
    }

    fn secured() -> TestBroker {
        let mut records = vec![broker(1, None, false)];
        records.extend(topic("t-ok", Uuid::new_v4(), &[&[1]]));
        records.extend(topic("t-no", Uuid::new_v4(), &[&[1]]));
        records.push(allow(
            ResourceType::TransactionalId,
            "tx-ok",
            AclOperation::Write,
        ));
        records.push(allow(ResourceType::Topic, "t-ok", AclOperation::Write));
        records.push(allow(ResourceType::Topic, "t-ok", AclOperation::Read));
        records.push(allow(ResourceType::Group, "g-ok", AclOperation::Read));
        let mut b = TestBroker::new(1, &records);
        b.ctx.authorizer = Some(crate::authorizer::Authorizer::default());
        b
    }

    fn tid(id: &'static str) -> TransactionalId {
        TransactionalId(StrBytes::from_static_str(id))
    }

    fn topics(names: &[&'static str]) -> Vec<AddPartitionsToTxnTopic> {
        names
            .iter()
            .map(|n| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(n)))
                    .with_partitions(vec![0])
            })
            .collect()
    }

    /// The error of each topic's partition 0, by topic name.
    fn errors(results: &[AddPartitionsToTxnTopicResult]) -> Vec<(String, i16)> {
        let mut e: Vec<(String, i16)> = results
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.results_by_partition[0].partition_error_code,
                )
            })
            .collect();
        e.sort();
        e
    }

    #[tokio::test]
    async fn add_partitions_checks_the_transactional_id_then_each_topic() {
        let b = secured();
        let add = |id, names: &[&'static str]| {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid(id))
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(topics(names))
        };
        let r = handle(&b.ctx, &b.rc(3, "PLAINTEXT"), add("tx-no", &["t-ok"])).await;
        assert_encodes(&r, 3);
        assert_eq!(
            errors(&r.results_by_topic_v3_and_below),
            vec![(
                "t-ok".into(),
                ResponseError::TransactionalIdAuthorizationFailed.code()
            )]
        );
        let r = handle(
            &b.ctx,
            &b.rc(3, "PLAINTEXT"),
            add("tx-ok", &["t-ok", "t-no", "gone"]),
        )
        .await;
        assert_eq!(
            errors(&r.results_by_topic_v3_and_below),
            vec![
                (
                    "gone".into(),
                    ResponseError::TopicAuthorizationFailed.code()
                ),
                (
                    "t-no".into(),
                    ResponseError::TopicAuthorizationFailed.code()
                ),
                ("t-ok".into(), ResponseError::OperationNotAttempted.code()),
            ]
        );
        // Everything allowed: the coordinator answers (not this broker, here).
        let r = handle(&b.ctx, &b.rc(1, "PLAINTEXT"), add("tx-ok", &["t-ok"])).await;
        assert_eq!(
            errors(&r.results_by_topic_v3_and_below),
            vec![("t-ok".into(), ResponseError::NotCoordinator.code())]
        );
        // The broker form needs CLUSTER_ACTION.
        let v4 = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(tid("tx-ok"))
                .with_verify_only(true)
                .with_topics(topics(&["t-ok"])),
        ]);
        let r = handle(&b.ctx, &b.rc(4, "PLAINTEXT"), v4).await;
        assert_encodes(&r, 4);
        assert_eq!(
            r.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
    }

    #[tokio::test]
    async fn the_other_transaction_apis_need_write_on_the_id_and_read_on_the_group() {
        let b = secured();
        let init = |id| {
            InitProducerIdRequest::default()
                .with_transactional_id(Some(tid(id)))
                .with_transaction_timeout_ms(60_000)
        };
        let r = init_producer_id::handle(&b.ctx, &b.rc(4, "PLAINTEXT"), init("tx-no")).await;
        assert_eq!(
            r.error_code,
            ResponseError::TransactionalIdAuthorizationFailed.code()
        );
        let r = init_producer_id::handle(&b.ctx, &b.rc(4, "PLAINTEXT"), init("tx-ok")).await;
        assert_eq!(r.error_code, ResponseError::NotCoordinator.code());

        let end = |id| EndTxnRequest::default().with_transactional_id(tid(id));
        let r = end_txn::handle(&b.ctx, &b.rc(3, "PLAINTEXT"), end("tx-no")).await;
        assert_eq!(
            r.error_code,
            ResponseError::TransactionalIdAuthorizationFailed.code()
        );

        let offsets = |id, group| {
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid(id))
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
        };
        for (id, group, expected) in [
            (
                "tx-no",
                "g-ok",
                ResponseError::TransactionalIdAuthorizationFailed,
            ),
            ("tx-ok", "g-no", ResponseError::GroupAuthorizationFailed),
            ("tx-ok", "g-ok", ResponseError::NotCoordinator),
        ] {
            let r =
                add_offsets_to_txn::handle(&b.ctx, &b.rc(3, "PLAINTEXT"), offsets(id, group)).await;
            assert_eq!(r.error_code, expected.code(), "{id} {group}");
        }

        let commit = |id, group| {
            TxnOffsetCommitRequest::default()
                .with_transactional_id(tid(id))
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_topics(
                    ["t-ok", "t-no"]
                        .iter()
                        .map(|t| {
                            TxnOffsetCommitRequestTopic::default()
                                .with_name(TopicName(StrBytes::from_static_str(t)))
                                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()])
                        })
                        .collect(),
                )
        };
        let codes = |r: &kafka_protocol::messages::TxnOffsetCommitResponse| {
            let mut c: Vec<(String, i16)> = r
                .topics
                .iter()
                .map(|t| (t.name.0.to_string(), t.partitions[0].error_code))
                .collect();
            c.sort();
            c
        };
        let r =
            txn_offset_commit::handle(&b.ctx, &b.rc(3, "PLAINTEXT"), commit("tx-no", "g-ok")).await;
        assert_encodes(&r, 3);
        let denied = ResponseError::TransactionalIdAuthorizationFailed.code();
        assert_eq!(
            codes(&r),
            vec![("t-no".into(), denied), ("t-ok".into(), denied)]
        );
        let r =
            txn_offset_commit::handle(&b.ctx, &b.rc(3, "PLAINTEXT"), commit("tx-ok", "g-no")).await;
        let denied = ResponseError::GroupAuthorizationFailed.code();
        assert_eq!(
            codes(&r),
            vec![("t-no".into(), denied), ("t-ok".into(), denied)]
        );
        let r =
            txn_offset_commit::handle(&b.ctx, &b.rc(3, "PLAINTEXT"), commit("tx-ok", "g-ok")).await;
        assert_eq!(
            codes(&r),
            vec![
                (
                    "t-no".into(),
                    ResponseError::TopicAuthorizationFailed.code()
                ),
                ("t-ok".into(), ResponseError::NotCoordinator.code()),
            ]
        );

        // WRITE implies DESCRIBE: tx-ok may be described (this broker is not its coordinator).
        let r = describe_transactions::handle(
            &b.ctx,
            &b.rc(0, "PLAINTEXT"),
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![tid("tx-ok"), tid("tx-no")]),
        );
        assert_encodes(&r, 0);
        let codes: Vec<i16> = r.transaction_states.iter().map(|s| s.error_code).collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::NotCoordinator.code(),
                ResponseError::TransactionalIdAuthorizationFailed.code()
            ]
        );
        let r = list_transactions::handle(
            &b.ctx,
            &b.rc(1, "PLAINTEXT"),
            ListTransactionsRequest::default().with_state_filters(vec![
                StrBytes::from_static_str("Ongoing"),
                StrBytes::from_static_str("Napping"),
            ]),
        );
        assert_encodes(&r, 1);
        assert_eq!(
            r.unknown_state_filters,
            vec![StrBytes::from_static_str("Napping")]
        );
        assert!(r.transaction_states.is_empty());
    }
}
