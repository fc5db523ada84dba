//! Why a benchmark could not run. Failures of single requests during a run (a Kafka error code, a
//! connection that dies half way) are not errors here: they are counted in the report, because a
//! benchmark that meets them still has figures worth printing. These variants are for what stops a
//! benchmark before it can measure anything, or a broker answer that cannot be understood at all.

pub use crate::kafka::error::error_name;
use crate::kafka::KafkaError;

/// Why a benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A request to a broker got no usable answer (connection, timeout, version, decoding, error code).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
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
        BenchError::Kafka(KafkaError::broker(what, code))
    }

    /// The deadline passed while waiting for something.
    pub fn timeout(waiting_for: impl Into<String>) -> Self {
        BenchError::Kafka(KafkaError::Timeout {
            waiting_for: waiting_for.into(),
        })
    }
}
