//! UnregisterBroker (key 64, KIP-631): forwarded to the controller quorum, which removes the
//! registration of a broker that is gone for good (the controller's `cluster::unregister_broker`).
//! `kafka-cluster.sh unregister --id N` and the Admin client's `unregisterBroker` use it, typically
//! after the broker's replicas were moved away (`chronikctl broker decommission`) and it was
//! stopped. A broker that is still alive is refused. The answer is sent once this broker's image no
//! longer has the registration (bounded), so a DescribeCluster asked of it right after leaves it out.

use chronik_metadata::acl::AclOperation;
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use tracing::debug;

use super::admin::{await_local_image, controller_refusal, error_message};
use super::{BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    // ALTER on the cluster, as Kafka's `ControllerApis.handleUnregisterBroker` asks.
    if !ctx.authorize_cluster(rc, AclOperation::Alter) {
        return respond(
            ResponseError::ClusterAuthorizationFailed.code(),
            String::new(),
        );
    }
    let call = pb::UnregisterBrokerRequest {
        broker_id: request.broker_id.0,
    };
    match ctx.controller.unregister_broker(call).await {
        Ok(reply) => {
            await_local_image(ctx, reply.metadata_offset, -1, "the unregistration").await;
            respond(0, String::new())
        }
        Err(e) => {
            debug!(error = %e, broker_id = request.broker_id.0, "UnregisterBroker refused or not forwarded");
            let (code, message) = controller_refusal(e);
            respond(code, message)
        }
    }
}

fn respond(code: i16, message: String) -> UnregisterBrokerResponse {
    UnregisterBrokerResponse::default()
        .with_error_code(code)
        .with_error_message(error_message(code, message))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::BrokerId;

    use super::*;

    /// ALTER on the cluster: refused before anything reaches the controller.
    #[tokio::test]
    async fn unregistering_needs_alter_on_the_cluster() {
        let broker = crate::handlers::test_support::broker_with_admin_only_cluster(1);
        let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(2));
        let answer = handle(&broker.ctx, &broker.rc(1, "PLAINTEXT"), request).await;
        assert_eq!(
            answer.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        assert_eq!(answer.error_message, None);
    }
}
