//! DescribeCluster (key 60): the cluster id, the live brokers on the client's listener and the broker
//! admin clients should treat as the controller, from the local image, exactly as Metadata reports them
//! (`brokers::live_brokers`, `brokers::controller_id`). A broker serves only the BROKER endpoint type
//! (KIP-919): asking it for the controllers is answered as Kafka's brokers answer it. v2 (KIP-1073)
//! may ask for the fenced brokers too, each marked fenced, as `kafka-cluster.sh list-endpoints
//! --include-fenced-brokers` does to find a broker that is gone (then `kafka-cluster.sh unregister`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::brokers::{controller_id, live_brokers, registered_brokers};
use super::{BrokerContext, RequestContext};

/// KIP-919 `EndpointType` values.
const ENDPOINT_BROKER: i8 = 1;
const ENDPOINT_CONTROLLER: i8 = 2;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // v0 has no EndpointType field (it decodes as BROKER) and no KIP-919 error codes.
    let refused = match request.endpoint_type {
        ENDPOINT_BROKER => None,
        ENDPOINT_CONTROLLER => Some((
            ResponseError::MismatchedEndpointType,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type \
             CONTROLLER"
                .to_owned(),
        )),
        other => Some((
            ResponseError::UnsupportedEndpointType,
            format!("Unsupported endpoint type {other}"),
        )),
    };
    if let Some((error, message)) = refused {
        let code = if rc.version == 0 {
            ResponseError::InvalidRequest.code()
        } else {
            error.code()
        };
        // Kafka leaves everything else at its default, EndpointType included.
        return DescribeClusterResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_controller_id((-1).into());
    }

    let image = ctx.metadata.current();
    let controller = controller_id(ctx.broker_id, &live_brokers(&image, rc.listener));
    // The field is v2's: an older request decodes it as false.
    let brokers: Vec<_> = registered_brokers(&image, rc.listener)
        .into_iter()
        .filter(|(_, fenced)| request.include_fenced_brokers || !fenced)
        .collect();
    let mut response = DescribeClusterResponse::default()
        .with_error_message(None)
        .with_endpoint_type(ENDPOINT_BROKER)
        .with_cluster_id(StrBytes::from_string(
            image.cluster_id.clone().unwrap_or_default(),
        ))
        .with_controller_id(controller.into())
        .with_brokers(
            brokers
                .into_iter()
                .map(|(b, fenced)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(b.node_id.into())
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                        .with_is_fenced(fenced)
                })
                .collect(),
        );
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = ctx.cluster_authorized_operations(rc);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::brokers::CLUSTER_AUTHORIZED_OPERATIONS;
    use crate::handlers::test_support::{
        assert_encodes, cluster, TestBroker, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_ID,
    };

    async fn describe(
        broker: &TestBroker,
        version: i16,
        listener: &str,
        request: DescribeClusterRequest,
    ) -> DescribeClusterResponse {
        let response = handle(&broker.ctx, &broker.rc(version, listener), request).await;
        assert_encodes(&response, version);
        response
    }

    #[tokio::test]
    async fn lists_live_brokers_on_the_listener_and_this_broker_as_controller() {
        let c = cluster();
        let broker = TestBroker::new(2, &c.records);
        for version in [0, 1] {
            let response = describe(
                &broker,
                version,
                "INTERNAL",
                DescribeClusterRequest::default(),
            )
            .await;
            assert_eq!(response.error_code, 0);
            assert_eq!(response.error_message, None);
            assert_eq!(&*response.cluster_id, CLUSTER_ID);
            assert_eq!(response.controller_id.0, 2);
            assert_eq!(response.endpoint_type, ENDPOINT_BROKER);
            assert_eq!(
                response.cluster_authorized_operations,
                AUTHORIZED_OPERATIONS_OMITTED
            );
            let brokers: Vec<(i32, String, i32, Option<String>)> = response
                .brokers
                .iter()
                .map(|b| {
                    (
                        b.broker_id.0,
                        b.host.to_string(),
                        b.port,
                        b.rack.as_ref().map(|r| r.to_string()),
                    )
                })
                .collect();
            assert_eq!(
                brokers,
                vec![
                    (1, "10.0.0.1".into(), 10091, Some("rack-a".into())),
                    (2, "10.0.0.2".into(), 10092, None),
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_broker_not_listed_names_another_as_controller() {
        let c = cluster();
        // Broker 3 is fenced: it is not listed, so it cannot be the controller clients look for.
        let broker = TestBroker::new(3, &c.records);
        let request =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let response = describe(&broker, 1, "PLAINTEXT", request).await;
        assert_eq!(response.controller_id.0, 1);
        assert_eq!(
            response.cluster_authorized_operations,
            CLUSTER_AUTHORIZED_OPERATIONS
        );
    }

    /// KIP-1073: v2 asked to include fenced brokers lists them, marked fenced; otherwise (and
    /// before v2) only the live ones are listed. The controller named is always a live one.
    #[tokio::test]
    async fn fenced_brokers_are_listed_only_when_asked() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let listed = |response: &DescribeClusterResponse| -> Vec<(i32, bool)> {
            response
                .brokers
                .iter()
                .map(|b| (b.broker_id.0, b.is_fenced))
                .collect()
        };
        for version in 0..=2 {
            let response = describe(
                &broker,
                version,
                "PLAINTEXT",
                DescribeClusterRequest::default(),
            )
            .await;
            assert_eq!(listed(&response), vec![(1, false), (2, false)]);
        }
        let with_fenced = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let response = describe(&broker, 2, "PLAINTEXT", with_fenced).await;
        assert_eq!(listed(&response), vec![(1, false), (2, false), (3, true)]);
        assert_eq!(response.controller_id.0, 1);
        let fenced_self = TestBroker::new(3, &c.records);
        let with_fenced = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let response = describe(&fenced_self, 2, "PLAINTEXT", with_fenced).await;
        assert_eq!(response.controller_id.0, 1, "a fenced broker is not named");
    }

    #[tokio::test]
    async fn only_the_broker_endpoint_type_is_served() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let controllers = DescribeClusterRequest::default().with_endpoint_type(ENDPOINT_CONTROLLER);
        let response = describe(&broker, 1, "PLAINTEXT", controllers).await;
        assert_eq!(
            response.error_code,
            ResponseError::MismatchedEndpointType.code()
        );
        assert!(response.error_message.is_some());
        assert!(response.brokers.is_empty());

        let unknown = DescribeClusterRequest::default().with_endpoint_type(7);
        let response = describe(&broker, 1, "PLAINTEXT", unknown).await;
        assert_eq!(
            response.error_code,
            ResponseError::UnsupportedEndpointType.code()
        );
        assert_eq!(
            response.error_message.as_deref(),
            Some("Unsupported endpoint type 7")
        );
    }
}
