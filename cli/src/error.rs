//! The one error type of the CLI library. Every failure a command can meet ends up here as a variant whose
//! `Display` is a single human line (`main` prefixes it with `error: `): gRPC statuses and per-item Kafka
//! error codes are turned into `CliError` in exactly one function each ([`CliError::from_status`] and
//! [`CliError::kafka`]), so the wording stays consistent across commands.

use chronik_proto::ERROR_METADATA_KEY;
use tonic::{Code, Status};

/// Why a `chronikctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A `chronikctl local` operation failed.
    #[error("{0}")]
    Local(String),
    /// `chronikctl probe` got no 2xx answer.
    #[error("probe {url}: {reason}")]
    Probe {
        /// The URL that was probed.
        url: String,
        /// The status and message it answered, or why there was no answer.
        reason: String,
    },
    /// A `chronikctl bench` run failed or did not complete.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// No configured controller accepted a connection or answered a read.
    #[error("cannot reach any controller at {addresses}: {reason}")]
    Unreachable {
        /// The addresses that were tried, comma-separated.
        addresses: String,
        /// The last connection failure seen.
        reason: String,
    },
    /// Controllers answered, but none of them was the active controller within the retry budget.
    #[error("no active controller among {addresses} after {waited_ms} ms: {reason}")]
    NoActiveController {
        /// The addresses that were tried, comma-separated.
        addresses: String,
        /// How long the client kept looking.
        waited_ms: u128,
        /// The last answer or failure seen.
        reason: String,
    },
    /// A write reached a controller but no answer came back in time; it may or may not have been applied.
    #[error("controller {address} did not answer within {timeout_ms} ms (the change may still be applied)")]
    Timeout {
        /// The controller the request went to.
        address: String,
        /// The per-request timeout.
        timeout_ms: u128,
    },
    /// The controller rejected the whole call with a gRPC status.
    #[error("{message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The Kafka error name from the `chronik-error` metadata, when present.
        error_name: Option<String>,
        /// The one-line description shown to the user.
        message: String,
    },
    /// One item of a batched call failed with a Kafka error code.
    #[error("{message}")]
    Kafka {
        /// The Kafka error code.
        code: i32,
        /// The Kafka error name, e.g. `TOPIC_ALREADY_EXISTS`.
        name: &'static str,
        /// The one-line description shown to the user.
        message: String,
    },
    /// A request to a broker (Kafka protocol) got no usable answer.
    #[error(transparent)]
    Broker(#[from] crate::kafka::KafkaError),
    /// The report is printed but does not cover everything (e.g. a broker did not answer).
    #[error("{0}")]
    Incomplete(String),
    /// The command line is well-formed for clap but asks for something contradictory.
    #[error("{0}")]
    InvalidArgument(String),
    /// Some partitions of a leader election failed (the per-partition report is still printed).
    #[error("leader election failed for {failed} of {total} partition(s)")]
    ElectionFailed {
        /// Partitions whose election failed.
        failed: usize,
        /// Partitions in the report.
        total: usize,
    },
    /// The controller answered something that does not fit the request.
    #[error("unexpected reply from the controller: {0}")]
    UnexpectedReply(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding the output as JSON failed.
    #[error("cannot encode output as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    /// Turns a gRPC status from a controller into an error: its message, or the `chronik-error` name when
    /// the message is empty.
    pub fn from_status(status: &Status) -> Self {
        let error_name = status_error_name(status).map(str::to_owned);
        let message = if !status.message().trim().is_empty() {
            one_line(status.message())
        } else if let Some(name) = &error_name {
            format!("the controller answered {name}")
        } else {
            format!("the controller answered {:?}", status.code())
        };
        CliError::Status {
            code: status.code(),
            error_name,
            message,
        }
    }

    /// Turns a per-item Kafka error code into an error. The controller's `error_message` is used as is;
    /// `fallback` words it when the controller sent none.
    pub fn kafka(
        code: i32,
        error_message: &str,
        fallback: impl FnOnce(&'static str) -> String,
    ) -> Self {
        let name = kafka_error_name(code);
        let message = if error_message.trim().is_empty() {
            fallback(name)
        } else {
            one_line(error_message)
        };
        CliError::Kafka {
            code,
            name,
            message,
        }
    }

    /// The Kafka error name carried by this error, if any.
    pub fn error_name(&self) -> Option<&str> {
        match self {
            CliError::Status { error_name, .. } => error_name.as_deref(),
            CliError::Kafka { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The `chronik-error` metadata of a status: the Kafka error name the controller attached.
pub(crate) fn status_error_name(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(ERROR_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// Kafka error codes a controller sends in admin replies.
pub mod codes {
    /// No error.
    pub const NONE: i32 = 0;
    /// The topic (or partition) does not exist.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i32 = 3;
    /// A topic with this name already exists.
    pub const TOPIC_ALREADY_EXISTS: i32 = 36;
    /// The partition already has its preferred leader.
    pub const ELECTION_NOT_NEEDED: i32 = 84;
}

/// The Kafka name of an error code, as Kafka's own tools print it.
pub fn kafka_error_name(code: i32) -> &'static str {
    match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        0 => "NONE",
        1 => "OFFSET_OUT_OF_RANGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        17 => "INVALID_TOPIC_EXCEPTION",
        22 => "ILLEGAL_GENERATION",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        27 => "REBALANCE_IN_PROGRESS",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        39 => "INVALID_REPLICA_ASSIGNMENT",
        40 => "INVALID_CONFIG",
        41 => "NOT_CONTROLLER",
        42 => "INVALID_REQUEST",
        44 => "POLICY_VIOLATION",
        60 => "REASSIGNMENT_IN_PROGRESS",
        68 => "NON_EMPTY_GROUP",
        69 => "GROUP_ID_NOT_FOUND",
        73 => "TOPIC_DELETION_DISABLED",
        77 => "STALE_BROKER_EPOCH",
        80 => "PREFERRED_LEADER_NOT_AVAILABLE",
        83 => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        84 => "ELECTION_NOT_NEEDED",
        85 => "NO_REASSIGNMENT_IN_PROGRESS",
        89 => "THROTTLING_QUOTA_EXCEEDED",
        100 => "UNKNOWN_TOPIC_ID",
        102 => "BROKER_ID_NOT_REGISTERED",
        _ => "UNKNOWN_ERROR_CODE",
    }
}

/// Collapses a message onto one line: the CLI reports every error as a single `error: ...` line.
pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Renders an error and its sources as one line, skipping sources whose text is already included.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    one_line(&line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn status_message_is_used_verbatim_on_one_line() {
        let mut status = Status::invalid_argument("topic 'orders'\nalready exists");
        status.metadata_mut().insert(
            ERROR_METADATA_KEY,
            MetadataValue::from_static("TOPIC_ALREADY_EXISTS"),
        );
        let error = CliError::from_status(&status);
        assert_eq!(error.to_string(), "topic 'orders' already exists");
        assert_eq!(error.error_name(), Some("TOPIC_ALREADY_EXISTS"));
    }

    #[test]
    fn empty_status_message_falls_back_to_the_error_name() {
        let mut status = Status::failed_precondition("");
        status.metadata_mut().insert(
            ERROR_METADATA_KEY,
            MetadataValue::from_static("INVALID_CONFIG"),
        );
        assert_eq!(
            CliError::from_status(&status).to_string(),
            "the controller answered INVALID_CONFIG"
        );
    }

    #[test]
    fn kafka_errors_prefer_the_controller_message() {
        let error = CliError::kafka(
            38,
            "replication factor 3 is larger than the number of available brokers (1)",
            |name| format!("failed: {name}"),
        );
        assert_eq!(
            error.to_string(),
            "replication factor 3 is larger than the number of available brokers (1)"
        );
        assert_eq!(error.error_name(), Some("INVALID_REPLICATION_FACTOR"));

        let error = CliError::kafka(codes::TOPIC_ALREADY_EXISTS, "", |_| {
            "topic 'orders' already exists".to_owned()
        });
        assert_eq!(error.to_string(), "topic 'orders' already exists");
    }

    #[test]
    fn unreachable_is_one_line() {
        let error = CliError::Unreachable {
            addresses: "127.0.0.1:9093,127.0.0.1:9094".into(),
            reason: "tcp connect error: Connection refused (os error 111)".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach any controller at 127.0.0.1:9093,127.0.0.1:9094: tcp connect error: \
             Connection refused (os error 111)"
        );
    }
}
