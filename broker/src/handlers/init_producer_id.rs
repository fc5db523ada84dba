//! InitProducerId (key 22), idempotent producers only (digest §3.6). Any broker answers: a null
//! `TransactionalId` gets a fresh producer id from this broker's block (see `producer_ids`) with epoch
//! 0. Kafka ignores the v3+ `ProducerId`/`ProducerEpoch` of such a request (a client bumping its epoch
//! after an error gets a new id instead), and so does this handler.
//!
//! - No id available in time (the controller is slow or unreachable, or this broker is not registered):
//!   COORDINATOR_LOAD_IN_PROGRESS (14), which clients retry.
//! - A non-null `TransactionalId`: TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), at once. Chronik has no
//!   transaction coordinator; a fatal error makes a transactional client fail fast with an error
//!   naming transactions, where the retriable COORDINATOR_NOT_AVAILABLE would have it retry until its
//!   timeouts expire.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, info};

use super::{BrokerContext, RequestContext};
use crate::producer_ids::BLOCK_WAIT;

pub async fn handle(
    ctx: &BrokerContext,
    _rc: &RequestContext<'_>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(transactional_id) = request.transactional_id {
        info!(transactional_id = %transactional_id.0,
            "refusing InitProducerId for a transactional producer: transactions are not supported");
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    match ctx.producer_ids.next_producer_id(BLOCK_WAIT).await {
        Ok(id) => {
            debug!(producer_id = id, "new idempotent producer");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => {
            info!(error = %e, "InitProducerId answered COORDINATOR_LOAD_IN_PROGRESS");
            refused(ResponseError::CoordinatorLoadInProgress)
        }
    }
}
