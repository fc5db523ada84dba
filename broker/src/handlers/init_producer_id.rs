//! InitProducerId (key 22; KIP-98, KIP-360).
//!
//! - A null `TransactionalId` (an idempotent producer): any broker answers with a fresh producer id
//!   from this broker's block (see `producer_ids`) and epoch 0. Kafka ignores the v3+
//!   `ProducerId`/`ProducerEpoch` of such a request (a client bumping its epoch after an error gets a
//!   new id instead), and so does this handler. No id available in time (the controller is slow or
//!   unreachable, or this broker is not registered): COORDINATOR_LOAD_IN_PROGRESS (14), which clients
//!   retry.
//! - An empty `TransactionalId`: INVALID_REQUEST (42), as in Kafka.
//! - A transactional id: the id's transaction coordinator (`txn`) answers, after WRITE on the
//!   TransactionalId: a bumped epoch (fencing older instances), CONCURRENT_TRANSACTIONS while an
//!   ongoing transaction of an earlier instance is aborted, INVALID_TRANSACTION_TIMEOUT past
//!   `--transaction-max-timeout-ms`. A fenced producer gets PRODUCER_FENCED from v4 and
//!   INVALID_PRODUCER_EPOCH before (KIP-588).

use chronik_metadata::acl::{AclOperation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, info};

use super::{BrokerContext, RequestContext};
use crate::producer_ids::BLOCK_WAIT;
use crate::txn::fenced_error_for;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(transactional_id) = request.transactional_id {
        if transactional_id.is_empty() {
            // Kafka's answer to an empty (not null) transactional id.
            return refused(ResponseError::InvalidRequest);
        }
        if !ctx.authorize_transactional_id(rc, AclOperation::Write, &transactional_id.0) {
            return refused(ResponseError::TransactionalIdAuthorizationFailed);
        }
        // v3+ names the producer id and epoch a client bumps after a retriable error (KIP-360).
        let expected = (rc.version >= 3 && request.producer_id.0 >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        return match ctx
            .txns
            .init_producer_id(
                &transactional_id.0,
                request.transaction_timeout_ms,
                expected,
                rc.peer,
            )
            .await
        {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(error) => refused(fenced_error_for(error, rc.version, 4)),
        };
    }
    // Kafka's handleInitProducerIdRequest without a transactional id: IDEMPOTENT_WRITE on the
    // cluster, or WRITE on some topic (KIP-679).
    if !ctx.authorize_cluster(rc, AclOperation::IdempotentWrite)
        && !ctx.authorize_by_resource_type(rc, AclOperation::Write, ResourceType::Topic)
    {
        return refused(ResponseError::ClusterAuthorizationFailed);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};
    use crate::producer_ids::tests::manager;

    async fn init(
        broker: &TestBroker,
        version: i16,
        request: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let response = handle(&broker.ctx, &broker.rc(version, "PLAINTEXT"), request).await;
        assert_encodes(&response, version);
        response
    }

    #[tokio::test]
    async fn idempotent_producers_get_fresh_ids_with_epoch_zero() {
        let mut broker = TestBroker::new(1, &cluster().records);
        broker.ctx.producer_ids = manager(1000).0;
        let mut seen = Vec::new();
        for version in 0..=5 {
            // v3+ may name the id and epoch to bump; for a null transactional id a fresh id is the answer.
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(if version >= 3 { 7 } else { -1 }))
                .with_producer_epoch(if version >= 3 { 3 } else { -1 });
            let response = init(&broker, version, request).await;
            assert_eq!(response.error_code, 0);
            assert_eq!(response.producer_epoch, 0);
            seen.push(response.producer_id.0);
        }
        assert_eq!(seen, (0..6).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn transactional_ids_go_to_their_coordinator() {
        let mut broker = TestBroker::new(1, &cluster().records);
        let (ids, calls, _) = manager(1000);
        broker.ctx.producer_ids = ids;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-1"))))
            .with_transaction_timeout_ms(60_000);
        let response = init(&broker, 4, request).await;
        // This broker coordinates no partition of the (missing) transaction state topic.
        assert_eq!(response.error_code, ResponseError::NotCoordinator.code());
        assert_eq!((response.producer_id.0, response.producer_epoch), (-1, -1));
        let too_long = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-1"))))
            .with_transaction_timeout_ms(900_001);
        assert_eq!(
            init(&broker, 4, too_long).await.error_code,
            ResponseError::InvalidTransactionTimeout.code()
        );
        let empty = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(""))));
        assert_eq!(
            init(&broker, 0, empty).await.error_code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no id spent on them");
    }

    #[tokio::test(start_paused = true)]
    async fn no_block_is_a_retriable_load_in_progress() {
        let mut broker = TestBroker::new(1, &cluster().records);
        let (ids, _, fail) = manager(1000);
        fail.store(true, Ordering::SeqCst);
        broker.ctx.producer_ids = ids;
        let started = tokio::time::Instant::now();
        let response = init(
            &broker,
            0,
            InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
        assert_eq!(
            response.error_code,
            ResponseError::CoordinatorLoadInProgress.code()
        );
        assert_eq!(started.elapsed(), BLOCK_WAIT);
        fail.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let response = init(
            &broker,
            0,
            InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
        assert_eq!((response.error_code, response.producer_id.0), (0, 0));
    }
}
