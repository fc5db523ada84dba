//! FindCoordinator (key 10). Consumer groups and transactions have no coordinator yet, so every key is
//! answered COORDINATOR_NOT_AVAILABLE (retriable) with a message saying why. The API is advertised from
//! v0 because older librdkafka (kcat) enables LZ4 only when FindCoordinator v0 is in range (digest §2.3
//! #2); the group coordinator replaces this answer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

const NOT_YET: &str = "consumer groups and transactions are not supported by this broker yet";

pub fn handle(rc: &RequestContext<'_>, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let error = ResponseError::CoordinatorNotAvailable.code();
    let message = Some(StrBytes::from_static_str(NOT_YET));
    if rc.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let response = FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        if rc.version >= 1 {
            response.with_error_message(message)
        } else {
            response
        }
    }
}
