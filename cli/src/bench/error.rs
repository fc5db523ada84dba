//! Why a benchmark could not run. Failures of single requests during a run (a Kafka error code, a
//! connection that dies half way) are not errors here: they are counted in the report, because a
//! benchmark that meets them still has figures worth printing. These variants are for what stops a
//! benchmark before it can measure anything, or a broker answer that cannot be understood at all.

use std::io;

use kafka_protocol::messages::ApiKey;

/// Why a benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No TCP connection could be made.
    #[error("cannot connect to {address}: {error}")]
    Connect {
        /// The broker address tried.
        address: String,
        /// The socket error.
        error: io::Error,
    },
    /// Reading or writing an established connection failed (including the broker closing it).
    #[error("connection to {address} failed: {error}")]
    Io {
        /// The broker address.
        address: String,
        /// The socket error.
        error: io::Error,
    },
    /// The benchmark's time budget ran out while waiting for something.
    #[error("timed out {waiting_for}")]
    Timeout {
        /// What was being waited for, as a phrase ("waiting for a Metadata answer from ...").
        waiting_for: String,
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
        /// The broker's range (-1..=-1 when the broker does not list the API).
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
    /// The broker answered a setup request (ApiVersions, Metadata, ListOffsets) with a Kafka error.
    #[error("{what}: the broker answered {name} ({code})")]
    Kafka {
        /// What was asked, e.g. "topic 'bench'".
        what: String,
        /// The Kafka error code.
        code: i16,
        /// Its Kafka name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
        name: String,
    },
    /// The run finished its report but did not complete cleanly (printed after the report).
    #[error("the benchmark {stopped}: {detail}")]
    Incomplete {
        /// How it stopped, e.g. "timed out".
        stopped: &'static str,
        /// What was done and which errors were met, e.g. "300 message(s) not acknowledged;
        /// NOT_LEADER_OR_FOLLOWER x3".
        detail: String,
    },
    /// The latency histogram could not be set up.
    #[error("cannot create a latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The cluster cannot serve the benchmark as asked (no such partition, no leader, no endpoint).
    #[error("{0}")]
    Cluster(String),
}

impl BenchError {
    /// A Kafka error answered to a setup request.
    pub fn kafka(what: impl Into<String>, code: i16) -> Self {
        BenchError::Kafka {
            what: what.into(),
            code,
            name: error_name(code),
        }
    }
}

/// The Kafka name of an error code as Kafka's own tools print it (`NOT_LEADER_OR_FOLLOWER`), for every
/// code the protocol crate knows; `UNKNOWN_ERROR_CODE_<n>` otherwise.
pub fn error_name(code: i16) -> String {
    use kafka_protocol::error::ResponseError;
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(error) => screaming_snake(&format!("{error:?}")),
    }
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
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
        assert_eq!(error_name(30000), "UNKNOWN_ERROR_CODE_30000");
    }
}
