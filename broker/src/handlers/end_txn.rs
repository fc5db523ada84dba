//! EndTxn (key 26): commit or abort the producer's transaction at its coordinator (`txn`). Answered
//! once PrepareCommit or PrepareAbort is committed to `__transaction_state`, when the outcome is
//! decided; the markers follow. Needs WRITE on the transactional id; PRODUCER_FENCED is
//! INVALID_PRODUCER_EPOCH before v2 (KIP-588). v5 (transaction version 2, KIP-890 part 2) is not
//! served.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::{BrokerContext, RequestContext};
use crate::txn::fenced_error_for;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let error =
        if !ctx.authorize_transactional_id(rc, AclOperation::Write, &request.transactional_id.0) {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else {
            ctx.txns
                .end_txn(
                    &request.transactional_id.0,
                    request.producer_id.0,
                    request.producer_epoch,
                    request.committed,
                )
                .await
                .err()
                .map(|e| fenced_error_for(e, rc.version, 2))
        };
    EndTxnResponse::default()
        .with_error_code(super::error_code(error))
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1)
}
