//! What the admin APIs the broker forwards to the controller quorum share (Kafka's `ForwardingManager`
//! role, KIP-590): the Kafka error of a failed controller call, the bounded wait for this broker's own
//! image to show the result, per-item codes and messages as Kafka sends them, and Kafka's
//! `ConfigSource` values.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

use tracing::debug;

use super::BrokerContext;
use crate::error::ControllerCallError;

/// DescribeConfigs / CreateTopics `ConfigSource` values (Kafka's `DescribeConfigsResponse.ConfigSource`).
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// The longest an admin request waits for the local image after the controller answered.
const MAX_PROPAGATION_WAIT_MS: i32 = 30_000;
/// The shortest: confluent-kafka's default `operation_timeout` is 0, and the image usually catches up
/// within milliseconds, so a short wait spares its first produce a retry.
const MIN_PROPAGATION_WAIT_MS: i32 = 500;

/// How long to wait for the local image after an admin request with this `timeout_ms`.
pub fn propagation_wait(timeout_ms: i32) -> Duration {
    let ms = timeout_ms.clamp(MIN_PROPAGATION_WAIT_MS, MAX_PROPAGATION_WAIT_MS);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Waits, within [`propagation_wait`] of `timeout_ms`, until this broker's image holds the
/// controller's change at `offset` (0: nothing changed), so that a client asking this broker right
/// after sees it. A wait that runs out is not an error: the change is committed, and the image
/// follows.
pub async fn await_local_image(ctx: &BrokerContext, offset: u64, timeout_ms: i32, what: &str) {
    if offset == 0 {
        return;
    }
    if let Err(e) = ctx
        .metadata
        .wait_for_offset(offset, propagation_wait(timeout_ms))
        .await
    {
        debug!(error = %e, "{what} not yet in the local image");
    }
}

/// The Kafka error a forwarded admin call answers when the controller call itself failed, with the
/// failure as its message.
/// What a forwarded call answers when the controller refused it with a Kafka error: the controller's
/// own words ("Broker ID 7 is not currently registered"), as a Kafka controller answers them; any
/// other failure as `controller_failure` reports it.
pub fn controller_refusal(e: ControllerCallError) -> (i16, String) {
    match e {
        ControllerCallError::Refused {
            kafka_error: Some(error),
            message,
            ..
        } => (error.code(), message),
        other => controller_failure(&other),
    }
}

pub fn controller_failure(e: &ControllerCallError) -> (i16, String) {
    (e.kafka_error().code(), e.to_string())
}

/// A controller's per-item error code, which the proto carries as an `int32`.
pub fn kafka_code(code: i32) -> i16 {
    i16::try_from(code).unwrap_or(ResponseError::UnknownServerError.code())
}

/// A Kafka error message: null on success, as Kafka sends it.
pub fn error_message(code: i16, message: String) -> Option<StrBytes> {
    (code != 0 && !message.is_empty()).then(|| StrBytes::from_string(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_for_the_image_is_bounded() {
        assert_eq!(propagation_wait(-1), Duration::from_millis(500));
        assert_eq!(propagation_wait(2_000), Duration::from_secs(2));
        assert_eq!(propagation_wait(i32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn controller_failures_map_to_retriable_kafka_errors() {
        let unavailable = ControllerCallError::Unavailable {
            addresses: "a:1".into(),
            waited_ms: 1,
            last_error: "down".into(),
        };
        assert_eq!(
            controller_failure(&unavailable).0,
            ResponseError::NotController.code()
        );
        let timeout = ControllerCallError::Timeout {
            address: "a:1".into(),
            timeout_ms: 1,
        };
        assert_eq!(
            controller_failure(&timeout).0,
            ResponseError::RequestTimedOut.code()
        );
        let refused = |error: Option<ResponseError>| ControllerCallError::Refused {
            address: "a:1".into(),
            kafka_error: error,
            code: tonic::Code::InvalidArgument,
            message: "no".into(),
        };
        assert_eq!(
            controller_failure(&refused(Some(ResponseError::InvalidRequest))).0,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            controller_failure(&refused(None)).0,
            ResponseError::UnknownServerError.code()
        );
    }
}
