//! FindCoordinator (key 10): the broker leading a group's offsets-topic partition, on the listener the
//! client connected to. The first lookup creates the offsets topic (COORDINATOR_NOT_AVAILABLE until it
//! has leaders; clients retry). v0–3 ask for one key; v4+ for a batch. Transactions have no
//! coordinator: their keys get COORDINATOR_NOT_AVAILABLE with a message saying so. The API stays
//! advertised from v0, which older librdkafka needs for groups and for LZ4 (digest §2.3 #2).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys = if rc.version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = match request.key_type {
            KEY_TYPE_GROUP => ctx.groups.find_coordinator(&key, rc.listener).await,
            KEY_TYPE_TRANSACTION => Err((
                ResponseError::CoordinatorNotAvailable,
                "transactions are not supported by this broker",
            )),
            _ => Err((
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            )),
        };
        let coordinator = Coordinator::default().with_key(key);
        coordinators.push(match found {
            Ok(endpoint) => coordinator
                .with_node_id(BrokerId(endpoint.node_id))
                .with_host(StrBytes::from_string(endpoint.host))
                .with_port(endpoint.port),
            Err((error, message)) => coordinator
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_static_str(message))),
        });
    }
    if rc.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if rc.version >= 1 {
        response.with_error_message(c.error_message)
    } else {
        response
    }
}
