//! `chronikctl bench`: load generators that speak the Kafka protocol to the brokers directly, with no
//! controller involved. `produce` pipelines Produce requests to every partition leader and measures
//! each batch from send to acknowledgement; `consume` fetches every partition from its leader and
//! measures each Fetch. Both stop by themselves: after their message count, their duration (produce)
//! or their `--timeout-secs`, whichever comes first, and both return a [`BenchReport`] whose figures
//! cover exactly what was acknowledged or read. Errors met on the way are counted by Kafka error name
//! rather than aborting the run, and a run that met any, or did not finish, fails once printed.
//!
//! The client is deliberately small (see [`kafka`]): one connection per leader, no retries, no
//! metadata refresh. A NOT_LEADER_OR_FOLLOWER during a run is reported, not hidden by a retry.

pub mod consume;
pub mod cpu;
pub mod error;
pub mod metadata;
pub mod produce;
pub mod scrape;
pub mod stats;

use std::collections::BTreeMap;

use clap::ValueEnum;
use serde::Serialize;

pub use crate::kafka::topic::PartitionSelection;
pub use cpu::CpuUsage;
pub use error::BenchError;
pub use stats::LatencySummary;

use crate::cli::BenchCommand;

/// Runs `bench produce` or `bench consume` (`bench metadata` reports other figures: see
/// [`metadata::run`]).
pub async fn run(command: &BenchCommand) -> Result<BenchReport, BenchError> {
    match command {
        BenchCommand::Produce(args) => produce::run(args).await,
        BenchCommand::Consume(args) => consume::run(args).await,
        BenchCommand::Metadata(_) => Err(BenchError::Cluster(
            "bench metadata has a report of its own; run it with metadata::run".into(),
        )),
    }
}

/// The compression codec of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionCodec {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing, as Java clients write it).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard (needs Produce v7+).
    Zstd,
}

impl CompressionCodec {
    /// The codec as the protocol crate names it.
    pub fn to_protocol(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression;
        match self {
            CompressionCodec::None => Compression::None,
            CompressionCodec::Gzip => Compression::Gzip,
            CompressionCodec::Snappy => Compression::Snappy,
            CompressionCodec::Lz4 => Compression::Lz4,
            CompressionCodec::Zstd => Compression::Zstd,
        }
    }

    /// The lowercase name, as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionCodec::None => "none",
            CompressionCodec::Gzip => "gzip",
            CompressionCodec::Snappy => "snappy",
            CompressionCodec::Lz4 => "lz4",
            CompressionCodec::Zstd => "zstd",
        }
    }
}

/// What produced keys and values are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Uniformly random bytes: incompressible, the pessimistic case for compression.
    Random,
    /// Random letters A–Z, like Kafka's `kafka-producer-perf-test` (compresses to about 60%).
    Text,
    /// A repeating pattern: compresses extremely well.
    Pattern,
}

impl ValueKind {
    /// The lowercase name, as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Random => "random",
            ValueKind::Text => "text",
            ValueKind::Pattern => "pattern",
        }
    }
}

/// Where `bench consume` starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced after the start are read.
    Latest,
}

/// Which benchmark ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// `bench produce`.
    Produce,
    /// `bench consume`.
    Consume,
}

/// Why a benchmark stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Every message was acknowledged (produce) or read (consume).
    Completed,
    /// `--duration-secs` passed.
    Duration,
    /// `--timeout-secs` passed before the benchmark finished.
    Timeout,
    /// A connection failed; the figures cover what was done before.
    ConnectionFailed,
}

impl StopReason {
    /// Text for tables.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Completed => "completed",
            StopReason::Duration => "duration reached",
            StopReason::Timeout => "timed out",
            StopReason::ConnectionFailed => "connection failed",
        }
    }

    /// The reason to report when several connections stopped for different reasons: the worst one.
    pub fn worst(self, other: StopReason) -> StopReason {
        let rank = |reason| match reason {
            StopReason::Completed => 0,
            StopReason::Duration => 1,
            StopReason::Timeout => 2,
            StopReason::ConnectionFailed => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The figures of one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Produce or consume.
    pub workload: Workload,
    /// The topic.
    pub topic: String,
    /// Partitions used.
    pub partitions: usize,
    /// Leader connections used.
    pub brokers: usize,
    /// The settings that shape the figures (acks, sizes, codec, versions), by name.
    pub settings: BTreeMap<String, String>,
    /// Messages acknowledged (produce; with acks=0: written) or read (consume).
    pub messages: u64,
    /// Bytes of those messages: keys and values (produce), whole record batches (consume).
    pub bytes: u64,
    /// Record-batch bytes sent (produce) or fetched (consume), headers and compression included.
    pub batch_bytes: u64,
    /// Produce or Fetch requests answered.
    pub requests: u64,
    /// Wall time from the first request to the last answer, in seconds.
    pub elapsed_secs: f64,
    /// `messages` per second.
    pub messages_per_sec: f64,
    /// `bytes` per second, in MiB.
    pub mib_per_sec: f64,
    /// Produce latency (send to acknowledgement) or Fetch latency; none with acks=0.
    pub latency: Option<LatencySummary>,
    /// Errors by Kafka error name (or `CONNECTION`, `TIMEOUT`, ...), counted per request.
    pub errors: BTreeMap<String, u64>,
    /// Messages sent but not acknowledged (an error answer, or no answer).
    pub failed_messages: u64,
    /// Why the run stopped.
    pub stopped: StopReason,
    /// Anything else worth knowing, e.g. a broker behaviour that looks wrong.
    pub notes: Vec<String>,
    /// The CPU the brokers named by `--metrics-url` used during the run; none without them.
    pub broker_cpu: Option<CpuUsage>,
}

impl BenchReport {
    /// The error to exit with once the report is printed: the run did not finish, or met errors.
    pub fn failure(&self) -> Option<BenchError> {
        let unfinished = matches!(
            self.stopped,
            StopReason::Timeout | StopReason::ConnectionFailed
        );
        if !unfinished && self.errors.is_empty() && self.failed_messages == 0 {
            return None;
        }
        let mut detail = match self.workload {
            Workload::Produce => format!(
                "{} message(s) acknowledged, {} not",
                self.messages, self.failed_messages
            ),
            Workload::Consume => format!("{} message(s) read", self.messages),
        };
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(name, count)| format!("{name} x{count}"))
            .collect();
        if !errors.is_empty() {
            detail.push_str("; errors: ");
            detail.push_str(&errors.join(", "));
        }
        Some(BenchError::Incomplete {
            stopped: self.stopped.describe(),
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{BenchCommand, Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<BenchCommand, clap::Error> {
        let cli = Cli::try_parse_from(
            ["chronikctl", "bench"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            Command::Bench(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn produce_defaults_follow_kafkas_perf_test() {
        let BenchCommand::Produce(args) =
            parse(&["produce", "--bootstrap-servers", "h:9092", "--topic", "t"]).expect("valid")
        else {
            panic!("not produce");
        };
        assert_eq!(args.target.bootstrap_servers, ["h:9092"]);
        assert_eq!(args.target.topic, "t");
        assert_eq!(args.target.partitions, PartitionSelection::All);
        assert_eq!(args.target.timeout_secs, 300);
        assert_eq!(args.messages, 1_000_000);
        assert_eq!(args.record_size, 100);
        assert_eq!(args.key_size, 0);
        assert_eq!(args.batch_size, 16_384);
        assert_eq!(args.in_flight, 32);
        assert_eq!(args.connections, 1);
        assert_eq!(args.acks, -1);
        assert_eq!(args.compression, CompressionCodec::None);
        assert_eq!(args.values, ValueKind::Random);
        assert_eq!(args.duration_secs, None);
    }

    #[test]
    fn produce_parses_every_option() {
        let BenchCommand::Produce(args) = parse(&[
            "produce",
            "--bootstrap-servers",
            "a:9092,b:9092",
            "--topic",
            "t",
            "--partitions",
            "3,1,3",
            "--messages",
            "1_000",
            "--record-size",
            "1024",
            "--key-size",
            "8",
            "--batch-size",
            "65536",
            "--in-flight",
            "4",
            "--connections",
            "3",
            "--acks",
            "all",
            "--compression",
            "zstd",
            "--values",
            "text",
            "--duration-secs",
            "10",
            "--timeout-secs",
            "20",
            "--auto-create-topic",
        ])
        .expect("valid") else {
            panic!("not produce");
        };
        assert_eq!(args.target.bootstrap_servers, ["a:9092", "b:9092"]);
        assert_eq!(args.target.partitions, PartitionSelection::Only(vec![1, 3]));
        assert_eq!(args.messages, 1000);
        assert_eq!((args.record_size, args.key_size), (1024, 8));
        assert_eq!((args.batch_size, args.in_flight), (65_536, 4));
        assert_eq!(args.connections, 3);
        assert_eq!(args.acks, -1);
        assert_eq!(args.compression, CompressionCodec::Zstd);
        assert_eq!(args.values, ValueKind::Text);
        assert_eq!(args.duration_secs, Some(10));
        assert_eq!(args.target.timeout_secs, 20);
        assert!(args.target.auto_create_topic);
    }

    #[test]
    fn acks_accept_kafkas_spellings_only() {
        for (raw, acks) in [("-1", -1), ("all", -1), ("1", 1), ("0", 0)] {
            let BenchCommand::Produce(args) = parse(&[
                "produce",
                "--bootstrap-servers",
                "h:1",
                "--topic",
                "t",
                "--acks",
                raw,
            ])
            .expect("valid acks") else {
                panic!("not produce");
            };
            assert_eq!(args.acks, acks, "{raw}");
        }
        for bad in ["2", "-2", "leader"] {
            assert!(
                parse(&[
                    "produce",
                    "--bootstrap-servers",
                    "h:1",
                    "--topic",
                    "t",
                    "--acks",
                    bad
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn nonsense_values_are_rejected() {
        let base = ["produce", "--bootstrap-servers", "h:1", "--topic", "t"];
        for extra in [
            ["--messages", "0"],
            ["--batch-size", "0"],
            ["--in-flight", "0"],
            ["--timeout-secs", "0"],
            ["--partitions", "-1"],
            ["--partitions", "1,x"],
            ["--compression", "brotli"],
        ] {
            let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
            assert!(parse(&args).is_err(), "{extra:?}");
        }
        assert!(
            parse(&["produce", "--topic", "t"]).is_err(),
            "no bootstrap servers"
        );
        assert!(
            parse(&["produce", "--bootstrap-servers", "nohost", "--topic", "t"]).is_err(),
            "no port"
        );
    }

    #[test]
    fn consume_defaults_and_options() {
        let BenchCommand::Consume(args) =
            parse(&["consume", "--bootstrap-servers", "h:9092", "--topic", "t"]).expect("valid")
        else {
            panic!("not consume");
        };
        assert_eq!(args.messages, None);
        assert_eq!(args.fetch_max_bytes, 1024 * 1024);
        assert_eq!(args.fetch_max_wait_ms, 500);
        assert_eq!(args.from, StartOffset::Earliest);

        let BenchCommand::Consume(args) = parse(&[
            "consume",
            "--bootstrap-servers",
            "h:9092",
            "--topic",
            "t",
            "--messages",
            "500",
            "--fetch-max-bytes",
            "65536",
            "--from",
            "latest",
        ])
        .expect("valid") else {
            panic!("not consume");
        };
        assert_eq!(args.messages, Some(500));
        assert_eq!(args.fetch_max_bytes, 65_536);
        assert_eq!(args.from, StartOffset::Latest);
    }

    #[test]
    fn consuming_from_latest_needs_a_message_count() {
        assert!(parse(&[
            "consume",
            "--bootstrap-servers",
            "h:9092",
            "--topic",
            "t",
            "--from",
            "latest"
        ])
        .is_err());
    }

    #[test]
    fn partition_selections_display_and_include() {
        let only = PartitionSelection::Only(vec![0, 2]);
        assert!(only.includes(2) && !only.includes(1));
        assert_eq!(only.to_string(), "0,2");
        assert!(PartitionSelection::All.includes(7));
        assert_eq!(PartitionSelection::All.to_string(), "all");
    }

    fn report(stopped: StopReason, errors: &[(&str, u64)], failed: u64) -> BenchReport {
        BenchReport {
            workload: Workload::Produce,
            topic: "t".into(),
            partitions: 1,
            brokers: 1,
            settings: BTreeMap::new(),
            messages: 10,
            bytes: 1000,
            batch_bytes: 1100,
            requests: 1,
            elapsed_secs: 1.0,
            messages_per_sec: 10.0,
            mib_per_sec: 0.001,
            latency: None,
            errors: errors.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            failed_messages: failed,
            stopped,
            notes: Vec::new(),
            broker_cpu: None,
        }
    }

    #[test]
    fn a_run_fails_when_unfinished_or_with_errors() {
        assert!(report(StopReason::Completed, &[], 0).failure().is_none());
        assert!(report(StopReason::Duration, &[], 0).failure().is_none());
        let error = report(StopReason::Completed, &[("NOT_LEADER_OR_FOLLOWER", 3)], 300)
            .failure()
            .expect("errors");
        assert!(
            error.to_string().contains("NOT_LEADER_OR_FOLLOWER x3"),
            "{error}"
        );
        assert!(report(StopReason::Timeout, &[], 0).failure().is_some());
        assert_eq!(
            StopReason::Completed.worst(StopReason::Timeout),
            StopReason::Timeout
        );
        assert_eq!(
            StopReason::ConnectionFailed.worst(StopReason::Duration),
            StopReason::ConnectionFailed
        );
    }
}
