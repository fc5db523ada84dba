//! EndTxn (key 26): commit or abort the producer's transaction at its coordinator (`txn`). Answered
//! once PrepareCommit or PrepareAbort is committed to `__transaction_state`, when the outcome is
//! decided; the markers follow. Needs WRITE on the transactional id; PRODUCER_FENCED is
//! INVALID_PRODUCER_EPOCH before v2 (KIP-588).
//!
//! v5 is transaction version 2 (KIP-890 part 2): the coordinator bumps the producer epoch at every
//! end, and the answer carries the producer id and epoch the producer goes on with (a new producer
//! id at epoch 0 once the epoch is exhausted); -1 and -1 with an error, as Kafka answers.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::{BrokerContext, RequestContext};
use crate::txn::fenced_error_for;
use crate::txn::state::TRANSACTION_VERSION_2;

/// The first EndTxn version of transaction version 2.
const TRANSACTION_VERSION_2_REQUEST: i16 = 5;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let client_version = if rc.version >= TRANSACTION_VERSION_2_REQUEST {
        TRANSACTION_VERSION_2
    } else {
        0
    };
    let result =
        if !ctx.authorize_transactional_id(rc, AclOperation::Write, &request.transactional_id.0) {
            Err(ResponseError::TransactionalIdAuthorizationFailed)
        } else {
            ctx.txns
                .end_txn(
                    &request.transactional_id.0,
                    (request.producer_id.0, request.producer_epoch),
                    request.committed,
                    client_version,
                    rc.peer,
                    |peer| ctx.connections.is_open(peer),
                )
                .await
                .map_err(|e| fenced_error_for(e, rc.version, 2))
        };
    let (error, (producer_id, producer_epoch)) = match result {
        // Before v5 the answer has no producer fields (and must leave them at their defaults).
        Ok(next) if client_version == TRANSACTION_VERSION_2 => (None, next),
        Ok(_) => (None, (-1, -1)),
        Err(error) => (Some(error), (-1, -1)),
    };
    EndTxnResponse::default()
        .with_error_code(super::error_code(error))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
}
