//! Why a request to a broker failed at the connection level: no connection, a broken one, no answer
//! before the deadline, no common API version, bytes that do not decode, or a Kafka error code the
//! caller treats as fatal. Callers that count or retry per-partition error codes keep those codes as
//! data; this type is for what stops a request from being answered at all.

use std::io;

use kafka_protocol::messages::ApiKey;

/// Why a request to a broker got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No TCP connection could be made.
    #[error("cannot connect to {address}: {error}")]
    Connect {
        /// The broker address tried.
        address: String,
        /// The socket error.
        error: io::Error,
    },
    /// The TLS handshake or SASL authentication the connection's security asks for failed.
    #[error(transparent)]
    Secure(chronik_wire::ConnectError),
    /// Reading or writing an established connection failed (including the broker closing it).
    #[error("connection to {address} failed: {error}")]
    Io {
        /// The broker address.
        address: String,
        /// The socket error.
        error: io::Error,
    },
    /// The deadline passed while waiting for something.
    #[error("timed out {waiting_for}")]
    Timeout {
        /// What was being waited for, as a phrase ("waiting for a Metadata answer from ...").
        waiting_for: String,
    },
    /// The broker does not list the API in its ApiVersions answer at all.
    #[error("broker {address} does not offer {api:?}")]
    NotOffered {
        /// The broker address.
        address: String,
        /// The API.
        api: ApiKey,
    },
    /// The broker offers no version of an API this client can speak.
    #[error(
        "broker {address} offers {api:?} v{broker_min}..=v{broker_max}, this client speaks \
         v{client_min}..=v{client_max}"
    )]
    UnsupportedVersion {
        /// The broker address.
        address: String,
        /// The API.
        api: ApiKey,
        /// The broker's range.
        broker_min: i16,
        /// The broker's range.
        broker_max: i16,
        /// The client's range.
        client_min: i16,
        /// The client's range.
        client_max: i16,
    },
    /// A request could not be encoded, or a response could not be decoded or does not fit its request.
    #[error("{api:?} v{version} with {address}: {reason}")]
    Protocol {
        /// The broker address.
        address: String,
        /// The API.
        api: ApiKey,
        /// The API version used.
        version: i16,
        /// What went wrong.
        reason: String,
    },
    /// A request was meant for a broker whose address is not known (not registered, or no endpoint).
    #[error("broker {broker_id} is not a live broker with a known Kafka endpoint")]
    UnknownBroker {
        /// The broker id.
        broker_id: i32,
    },
    /// The topic does not exist (Metadata answered UNKNOWN_TOPIC_OR_PARTITION).
    #[error("topic '{topic}' does not exist")]
    UnknownTopic {
        /// The topic name.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error("topic '{topic}' has no partition {partition} (it has {partitions} partition(s))")]
    UnknownPartition {
        /// The topic name.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        partitions: usize,
    },
    /// No bootstrap server was given (nor any live broker found).
    #[error("no bootstrap server to ask")]
    NoBootstrapServer,
    /// The answer decoded but does not fit the request (e.g. it leaves out what was asked).
    #[error("unexpected answer: {0}")]
    UnexpectedAnswer(String),
    /// The broker answered with a Kafka error code the caller does not handle.
    #[error("{what}: the broker answered {name} ({code})")]
    Broker {
        /// What was asked, e.g. "topic 'bench'".
        what: String,
        /// The Kafka error code.
        code: i16,
        /// Its Kafka name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
        name: String,
    },
}

impl KafkaError {
    /// A Kafka error code answered to a request.
    pub fn broker(what: impl Into<String>, code: i16) -> Self {
        KafkaError::Broker {
            what: what.into(),
            code,
            name: error_name(code),
        }
    }

    /// Whether the broker could not be reached or did not answer in time: asking again, perhaps a
    /// new leader found in fresh metadata, may help.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            KafkaError::Connect { .. }
                | KafkaError::Io { .. }
                | KafkaError::Timeout { .. }
                | KafkaError::UnknownBroker { .. }
        )
    }

    /// Whether the failure is of the connection itself (so a cached connection must be dropped).
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            KafkaError::Io { .. } | KafkaError::Timeout { .. } | KafkaError::Protocol { .. }
        )
    }
}

/// The Kafka name of an error code as Kafka's own tools print it (`NOT_LEADER_OR_FOLLOWER`), for every
/// code the protocol crate knows; `UNKNOWN_ERROR_CODE_<n>` otherwise.
pub fn error_name(code: i16) -> String {
    chronik_metadata::error::code_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(error_name(68), "NON_EMPTY_GROUP");
        assert_eq!(error_name(69), "GROUP_ID_NOT_FOUND");
        assert_eq!(error_name(30000), "UNKNOWN_ERROR_CODE_30000");
    }
}
