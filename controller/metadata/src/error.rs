//! The one error vocabulary of the cluster: Kafka's error codes, as `kafka-protocol`'s `ResponseError`
//! names them (Kafka's `Errors.java`). Controller commands refuse with an `ApiError` carrying one; the
//! controller's gRPC layer sends its Kafka name in the `chronik-error` status metadata
//! (`chronik_proto::ERROR_METADATA_KEY`), and brokers and `chronikctl` read it back with `from_name`.
//!
//! What must stay true: `name` and `from_name` are inverse for every code Kafka defines, so an error
//! crosses the control plane without a hand-kept list of the codes that may travel.

use thiserror::Error;

pub use kafka_protocol::error::ResponseError;

/// Kafka's name of an error code, as `Errors.java` spells it (`UNKNOWN_TOPIC_OR_PARTITION`,
/// `INVALID_TOPIC_EXCEPTION`, …); `UNKNOWN_ERROR_CODE_<code>` for a code Kafka does not define.
pub fn name(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    // `kafka-protocol` names its variants after Kafka's constants in CamelCase.
    let camel = format!("{error:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Kafka's name of an error code as a response carries it: `NONE` for 0.
pub fn code_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| "NONE".to_owned(), name)
}

/// The error Kafka names `name`, if it names one.
pub fn from_name(name: &str) -> Option<ResponseError> {
    // Kafka's codes run from -1 (UNKNOWN_SERVER_ERROR) upwards, densely.
    (-1..=i16::from(u8::MAX))
        .filter_map(ResponseError::try_from_code)
        .filter(|e| !matches!(e, ResponseError::Unknown(_)))
        .find(|e| self::name(*e) == name)
}

/// A command refused for a reason the caller can act on.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ApiError {
    pub code: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas_and_read_back() {
        assert_eq!(
            name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            name(ResponseError::InvalidTopicException),
            "INVALID_TOPIC_EXCEPTION"
        );
        assert_eq!(name(ResponseError::StaleBrokerEpoch), "STALE_BROKER_EPOCH");
        assert_eq!(
            name(ResponseError::UnknownServerError),
            "UNKNOWN_SERVER_ERROR"
        );
        for code in -1..=120 {
            let Some(error) = ResponseError::try_from_code(code) else {
                continue;
            };
            if matches!(error, ResponseError::Unknown(_)) {
                continue;
            }
            assert_eq!(from_name(&name(error)), Some(error), "code {code}");
        }
        assert_eq!(code_name(0), "NONE");
        assert_eq!(code_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(code_name(9999), "UNKNOWN_ERROR_CODE_9999");
        assert_eq!(from_name("NOT_A_KAFKA_ERROR"), None);
        assert_eq!(from_name("NONE"), None);
    }
}
