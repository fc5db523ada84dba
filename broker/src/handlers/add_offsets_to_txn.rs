//! AddOffsetsToTxn (key 25): the group's `__consumer_offsets` partition joins the producer's
//! transaction, so the offsets it commits with TxnOffsetCommit get the transaction's markers
//! (`KafkaApis.handleAddOffsetsToTxnRequest`). Needs WRITE on the transactional id, then READ on the
//! group; PRODUCER_FENCED is INVALID_PRODUCER_EPOCH before v2 (KIP-588).

use std::collections::BTreeSet;

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{BrokerContext, RequestContext};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::txn::fenced_error_for;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let error =
        if !ctx.authorize_transactional_id(rc, AclOperation::Write, &request.transactional_id.0) {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else if !ctx.authorize_group(rc, AclOperation::Read, &request.group_id.0) {
            Some(ResponseError::GroupAuthorizationFailed)
        } else {
            // The group's partition as its coordinator computes it: over the topic's partitions once it
            // exists, else over the count it will be created with.
            let partitions = ctx
                .metadata
                .current()
                .topic_by_name(OFFSETS_TOPIC)
                .map_or(ctx.groups.config().offsets_topic_num_partitions, |t| {
                    t.partitions.len() as i32
                });
            let partition = partition_for(&request.group_id.0, partitions);
            let added: BTreeSet<(String, i32)> = [(OFFSETS_TOPIC.to_owned(), partition)].into();
            ctx.txns
                .add_partitions(
                    &request.transactional_id.0,
                    request.producer_id.0,
                    request.producer_epoch,
                    added,
                    0,
                    rc.peer,
                )
                .await
                .err()
                .map(|e| fenced_error_for(e, rc.version, 2))
        };
    AddOffsetsToTxnResponse::default().with_error_code(super::error_code(error))
}
