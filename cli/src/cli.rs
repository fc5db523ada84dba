//! The command line, declared with clap derive: global flags (each with a `CHRONIK_*` variable and a doc
//! line that becomes `--help`) and one subcommand enum per noun. Parsing only checks shape; the few checks
//! that need several values at once (a config key given twice, set and deleted together) live in the
//! `*_map`/`changes` helpers here so that every command-line rule is in this file.

use std::collections::BTreeMap;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::client::DEFAULT_CONTROLLER_ADDRESS;
use crate::error::CliError;
use crate::output::OutputFormat;

/// Operate a Chronik cluster through its controller quorum.
#[derive(Debug, Parser)]
#[command(name = "chronikctl", version, propagate_version = true)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Controller addresses to contact, comma-separated; any voter will do, the active controller is found
    /// from there.
    #[arg(
        long,
        env = "CHRONIK_CONTROLLERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        default_value = DEFAULT_CONTROLLER_ADDRESS,
        value_parser = parse_controller_address
    )]
    pub controllers: Vec<String>,

    /// Output format: human-readable tables, or a single JSON document for scripts.
    #[arg(
        long,
        short = 'o',
        env = "CHRONIK_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Table,
        global = true
    )]
    pub output: OutputFormat,

    /// Timeout of each request to a controller, in milliseconds (connection attempts are capped at 3000).
    #[arg(
        long,
        env = "CHRONIK_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub timeout_ms: u64,
}

/// The nouns `chronikctl` acts on.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Inspect the cluster as a whole.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Inspect the registered brokers.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Create, inspect, change and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// List, inspect, reset and delete consumer groups (Kafka protocol to the brokers).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Move partition leadership.
    #[command(subcommand)]
    Election(ElectionCommand),
    /// Run a cluster of real processes on this machine, without Docker.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Measure produce and consume throughput and latency against the brokers (Kafka protocol).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// GET an HTTP URL, e.g. a node's /readyz, and exit 0 only on a 2xx answer: the health check of
    /// the container images, which have no curl.
    Probe {
        /// The URL, e.g. http://127.0.0.1:8092/readyz. Its timeout is --timeout-ms.
        #[arg(value_parser = parse_http_url)]
        url: String,
    },
}

/// `chronikctl local ...`
#[derive(Debug, Clone, Subcommand)]
pub enum LocalCommand {
    /// Start controllers and brokers in the background on free loopback ports, wait until they are
    /// ready, and print the bootstrap servers. In a dir that already holds a cluster, start its stopped
    /// nodes again (data is kept).
    Up(LocalUpArgs),
    /// Show every node of the local cluster: address, pid, ready or not.
    Status(LocalDirArgs),
    /// Stop the local cluster: brokers first (controlled shutdown), then controllers. Data is kept.
    Down(LocalDirArgs),
    /// kill -9 one node.
    Kill(LocalNodeArgs),
    /// Stop one node with SIGTERM (a broker does a controlled shutdown first).
    Stop(LocalNodeArgs),
    /// Start one stopped node again, with its ports and data, and wait until it is ready.
    Start(LocalNodeArgs),
}

/// The directory of a local cluster.
#[derive(Debug, Clone, Args)]
pub struct LocalDirArgs {
    /// Where the cluster's data dirs, logs and `cluster.json` live.
    #[arg(long, env = "CHRONIK_LOCAL_DIR", default_value = "./.chronik")]
    pub dir: std::path::PathBuf,
}

/// `chronikctl local up`.
#[derive(Debug, Clone, Args)]
pub struct LocalUpArgs {
    #[command(flatten)]
    pub dir: LocalDirArgs,
    /// Controllers to start (1, 3 or 5).
    #[arg(long = "controllers", default_value_t = 3)]
    pub controller_count: usize,
    /// Brokers to start.
    #[arg(long = "brokers", default_value_t = 3)]
    pub broker_count: usize,
    /// An extra flag for every controller, e.g. `--controller-arg=--default-replication-factor=1`.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    pub controller_args: Vec<String>,
    /// An extra flag for every broker, e.g. `--broker-arg=--auto-create-topics=false`.
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// A named Kafka listener every broker gets, on a port of its own (repeat for several, e.g.
    /// `--listener INTERNAL --listener EXTERNAL`); the first one is the inter-broker listener and the
    /// bootstrap address. Default: one PLAINTEXT listener.
    #[arg(long = "listener", value_name = "NAME")]
    pub listeners: Vec<String>,
    /// Where the chronik-controller and chronik-broker binaries are (default: beside chronikctl; under
    /// `cargo run` they are built first).
    #[arg(long, env = "CHRONIK_BIN_DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
    /// How long to wait for every node to be ready, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

/// One node of a local cluster.
#[derive(Debug, Clone, Args)]
pub struct LocalNodeArgs {
    /// `controller` or `broker`.
    #[arg(value_parser = ["controller", "broker"])]
    pub kind: String,
    /// The node's id.
    pub id: u64,
    #[command(flatten)]
    pub dir: LocalDirArgs,
}

/// `chronikctl bench ...`
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// Produce records as fast as the settings allow; report throughput and produce latency.
    Produce(BenchProduceArgs),
    /// Read a topic from its partition leaders; report throughput and fetch latency.
    Consume(BenchConsumeArgs),
}

/// What a benchmark talks to, and its time budget.
#[derive(Debug, Clone, Args)]
pub struct BenchTargetArgs {
    /// Kafka bootstrap servers, comma-separated (e.g. the ones `chronikctl local up` prints).
    #[arg(
        long,
        env = "CHRONIK_BOOTSTRAP_SERVERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        required = true,
        value_parser = parse_controller_address
    )]
    pub bootstrap_servers: Vec<String>,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partitions to use: `all`, or a comma-separated list such as `0,2,4`.
    #[arg(long, value_name = "all|P,...", default_value = "all", value_parser = parse_partitions)]
    pub partitions: crate::bench::PartitionSelection,
    /// Let the broker create a missing topic with its default partition count and replication.
    #[arg(long)]
    pub auto_create_topic: bool,
    /// Stop after this many seconds whatever happens (the report covers what was done by then).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

/// `chronikctl bench produce`.
#[derive(Debug, Clone, Args)]
pub struct BenchProduceArgs {
    #[command(flatten)]
    pub target: BenchTargetArgs,
    /// Messages to produce (`_` separators allowed).
    #[arg(long, value_name = "N", default_value = "1_000_000", value_parser = parse_count)]
    pub messages: u64,
    /// Bytes of each record value (`KiB`/`MiB` suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value = "100", value_parser = parse_size)]
    pub record_size: u32,
    /// Bytes of each record key; 0 sends records without a key.
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse_size)]
    pub key_size: u32,
    /// What keys and values are made of (matters for compression).
    #[arg(long, value_enum, default_value_t = crate::bench::ValueKind::Random)]
    pub values: crate::bench::ValueKind,
    /// Uncompressed bytes per record batch, as Kafka's `batch.size`: records per batch is this
    /// divided by the record size (at least one).
    #[arg(long, value_name = "BYTES", default_value = "16384", value_parser = parse_positive_size)]
    pub batch_size: u32,
    /// Produce requests outstanding per broker connection (pipelined; the broker answers in order).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub in_flight: u32,
    /// Connections to each partition leader; each pipelines its own requests over all the leader's
    /// partitions (a broker handles one request of a connection at a time, as Kafka does).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub connections: u32,
    /// Acknowledgements: `all` (or -1), 1 (leader only) or 0 (no answer; no latency is measured).
    #[arg(long, value_name = "all|-1|1|0", default_value = "all", allow_hyphen_values = true, value_parser = parse_acks)]
    pub acks: i16,
    /// Compression codec of the batches.
    #[arg(long, value_enum, default_value_t = crate::bench::CompressionCodec::None)]
    pub compression: crate::bench::CompressionCodec,
    /// Stop sending after this many seconds even if messages remain.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: Option<u64>,
    /// The Produce request's TimeoutMs: how long the broker may wait for acks=all.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(i32).range(1..))]
    pub request_timeout_ms: i32,
}

/// `chronikctl bench consume`.
#[derive(Debug, Clone, Args)]
pub struct BenchConsumeArgs {
    #[command(flatten)]
    pub target: BenchTargetArgs,
    /// Messages to read; by default everything below each partition's high watermark at the start.
    #[arg(long, value_name = "N", value_parser = parse_count, required_if_eq("from", "latest"))]
    pub messages: Option<u64>,
    /// MaxBytes of each Fetch, and the per-partition limit (`KiB`/`MiB` suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_positive_size)]
    pub fetch_max_bytes: u32,
    /// How long the broker may hold a Fetch that has no data yet.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(i32).range(0..))]
    pub fetch_max_wait_ms: i32,
    /// Where to start each partition.
    #[arg(long, value_enum, default_value_t = crate::bench::StartOffset::Earliest)]
    pub from: crate::bench::StartOffset,
}

/// Parses `--acks`: `all`, `-1`, `1` or `0`.
pub fn parse_acks(raw: &str) -> Result<i16, String> {
    match raw.trim() {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(format!("acks must be all, -1, 1 or 0, got '{other}'")),
    }
}

/// Parses `all` or a comma-separated list of partition indexes (sorted, duplicates dropped).
pub fn parse_partitions(raw: &str) -> Result<crate::bench::PartitionSelection, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("all") {
        return Ok(crate::bench::PartitionSelection::All);
    }
    let mut partitions = Vec::new();
    for item in raw.split(',') {
        let partition: i32 = item
            .trim()
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| format!("'{}' is not a partition index", item.trim()))?;
        partitions.push(partition);
    }
    partitions.sort_unstable();
    partitions.dedup();
    Ok(crate::bench::PartitionSelection::Only(partitions))
}

/// Parses a positive count; `_` separators are allowed (`1_000_000`).
pub fn parse_count(raw: &str) -> Result<u64, String> {
    raw.trim()
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("expected a positive number, got '{raw}'"))
}

/// Parses a byte size: a number with an optional `KiB`, `MiB` (or `K`, `M`) suffix.
pub fn parse_size(raw: &str) -> Result<u32, String> {
    let text = raw.trim().replace('_', "");
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = if let Some(d) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (d, 1024 * 1024)
    } else if let Some(d) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (d, 1024)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= 1 << 30)
        .ok_or_else(|| {
            format!(
                "expected a size in bytes (e.g. 16384, 64KiB, 1MiB) of at most 1GiB, got '{raw}'"
            )
        })
}

/// [`parse_size`], above zero.
pub fn parse_positive_size(raw: &str) -> Result<u32, String> {
    match parse_size(raw)? {
        0 => Err(format!("expected a positive size, got '{raw}'")),
        n => Ok(n),
    }
}

/// `chronikctl cluster ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, every controller's Raft state, the brokers and partition health.
    Status,
}

/// `chronikctl broker ...`
#[derive(Debug, Clone, Subcommand)]
pub enum BrokerCommand {
    /// List the registered brokers with their state, epoch and leader count.
    List,
}

/// `chronikctl topic ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateTopicArgs),
    /// List every topic.
    List,
    /// Show a topic's id, configs and partitions.
    Describe {
        /// The topic name.
        name: String,
    },
    /// Delete a topic and all its data.
    Delete {
        /// The topic name.
        name: String,
    },
    /// Set or delete topic configs (deleted keys fall back to the cluster default).
    AlterConfig(AlterConfigArgs),
}

/// `chronikctl group ...`
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// List every consumer group of the cluster: ListGroups to every live broker, merged.
    List(GroupTargetArgs),
    /// Show a group's state and members with their assigned partitions, and per partition the
    /// committed offset, log end offset, lag and owning member.
    Describe(GroupArgs),
    /// Move a group's committed offsets on one topic. Refused while the group has members. Commits
    /// at once and prints old and new offsets per partition; `--dry-run` only prints the plan.
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets. Refused while the group has members.
    Delete(GroupArgs),
}

/// How long group commands keep retrying.
#[derive(Debug, Clone, Args)]
pub struct GroupTargetArgs {
    /// How long to keep retrying answers that mean "try again" (the coordinator is loading, moving
    /// or not yet elected; a partition leader changed), in milliseconds. Each single request is
    /// bounded by `--timeout-ms`.
    #[arg(
        long,
        env = "CHRONIK_RETRY_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 15_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub retry_timeout_ms: u64,
}

/// One group.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// The group id.
    pub group: String,
    #[command(flatten)]
    pub target: GroupTargetArgs,
}

/// `group reset-offsets`.
#[derive(Debug, Clone, Args)]
#[command(group(
    ArgGroup::new("reset_to")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime"])
))]
pub struct ResetOffsetsArgs {
    /// The group id.
    pub group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    pub topic: String,
    /// The partitions to reset: `all`, or a comma-separated list such as `0,2`.
    #[arg(long, value_name = "all|P,...", default_value = "all", value_parser = parse_partitions)]
    pub partitions: crate::bench::PartitionSelection,
    /// To each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's log end offset (consumers skip everything written so far).
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset, clamped into each partition's [log start, log end].
    #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// To the first offset whose timestamp is at or after this RFC 3339 time (e.g.
    /// 2026-11-22T10:00:00Z); the log end where no record is that recent.
    #[arg(long, value_name = "RFC3339", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
    /// Compute and print the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub target: GroupTargetArgs,
}

impl ResetOffsetsArgs {
    /// The requested target (clap guarantees exactly one).
    pub fn reset_target(&self) -> crate::cmd::group::ResetTarget {
        use crate::cmd::group::ResetTarget;
        match (self.to_offset, self.to_datetime) {
            (Some(offset), _) => ResetTarget::Offset(offset),
            (_, Some(ms)) => ResetTarget::Datetime(ms),
            _ if self.to_latest => ResetTarget::Latest,
            _ => ResetTarget::Earliest,
        }
    }
}

/// Parses an RFC 3339 date-time (`2026-11-22T10:00:00Z`, `2026-11-22T12:00:00.250+02:00`) into
/// milliseconds since the Unix epoch; times before 1970 are refused (Kafka timestamps are not negative).
pub fn parse_datetime(raw: &str) -> Result<i64, String> {
    let text = raw.trim();
    let bad = || {
        format!(
            "'{text}' is not an RFC 3339 date-time such as 2026-11-22T10:00:00Z or \
             2026-11-22T12:00:00+02:00"
        )
    };
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let digits = text.get(range).ok_or_else(bad)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse::<i64>().map_err(|_| bad())
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let kept = &fraction[..digits.min(3)];
        millis = kept.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(3 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let o = rest.as_bytes();
            if o.len() != 6 || !matches!(o[0], b'+' | b'-') || o[3] != b':' {
                return Err(bad());
            }
            let hours: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            let total = hours * 60 + minutes;
            if o[0] == b'-' {
                -total
            } else {
                total
            }
        }
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    // Second 60 is a leap second; Kafka timestamps have none, so it counts as the next second.
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
        - offset_minutes * 60;
    let ms = seconds * 1_000 + millis;
    if ms < 0 {
        return Err(format!("'{text}' is before 1970-01-01T00:00:00Z"));
    }
    Ok(ms)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `chronikctl election ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ElectionCommand {
    /// Move leadership of every partition (or of one topic's partitions) back to its preferred replica.
    Preferred {
        /// Only this topic's partitions; every topic when omitted.
        topic: Option<String>,
    },
}

/// Arguments of `topic create`.
#[derive(Debug, Clone, Args)]
pub struct CreateTopicArgs {
    /// The topic name.
    pub name: String,

    /// Number of partitions; the cluster default when omitted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,

    /// Number of replicas of each partition; the cluster default when omitted.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: Option<i32>,

    /// A topic config, e.g. `--config retention.ms=3600000`; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_entry)]
    pub configs: Vec<ConfigEntry>,
}

impl CreateTopicArgs {
    /// The `--config` entries as a map; a key given twice is an error.
    pub fn config_map(&self) -> Result<BTreeMap<String, String>, CliError> {
        config_map(&self.configs, "--config")
    }
}

/// Arguments of `topic alter-config`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true).args(["set", "delete"])))]
pub struct AlterConfigArgs {
    /// The topic name.
    pub name: String,

    /// Set a config, e.g. `--set retention.ms=3600000`; repeat for several.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_config_entry)]
    pub set: Vec<ConfigEntry>,

    /// Delete a config so that it falls back to the cluster default; repeat for several.
    #[arg(long, value_name = "KEY", value_parser = parse_config_key)]
    pub delete: Vec<String>,
}

/// The validated changes of `topic alter-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Keys to set, with their new values.
    pub set: BTreeMap<String, String>,
    /// Keys to delete, sorted, without duplicates.
    pub delete: Vec<String>,
}

impl AlterConfigArgs {
    /// The requested changes; a key set twice, deleted twice or both set and deleted is an error.
    pub fn changes(&self) -> Result<ConfigChanges, CliError> {
        let set = config_map(&self.set, "--set")?;
        let mut delete: Vec<String> = Vec::with_capacity(self.delete.len());
        for key in &self.delete {
            if delete.contains(key) {
                return Err(CliError::InvalidArgument(format!(
                    "config '{key}' is given twice to --delete"
                )));
            }
            if set.contains_key(key) {
                return Err(CliError::InvalidArgument(format!(
                    "config '{key}' is both set and deleted"
                )));
            }
            delete.push(key.clone());
        }
        delete.sort();
        Ok(ConfigChanges { set, delete })
    }
}

/// One `KEY=VALUE` config argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config name, e.g. `retention.ms`.
    pub key: String,
    /// The value; may itself contain `=`.
    pub value: String,
}

/// Parses `KEY=VALUE`: the key is non-empty and the value is split at the first `=`.
pub fn parse_config_entry(raw: &str) -> Result<ConfigEntry, String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got '{raw}'"));
    };
    let key = parse_config_key(key)?;
    if value.is_empty() {
        return Err(format!(
            "config '{key}' has an empty value (to fall back to the default, delete it instead)"
        ));
    }
    Ok(ConfigEntry {
        key,
        value: value.to_owned(),
    })
}

/// Parses a config name: non-empty, no whitespace, no `=`.
pub fn parse_config_key(raw: &str) -> Result<String, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err("config key is empty".to_owned());
    }
    if key.contains('=') || key.chars().any(char::is_whitespace) {
        return Err(format!("'{key}' is not a config key"));
    }
    Ok(key.to_owned())
}

/// Parses one controller address `HOST:PORT` (an IPv6 host in brackets).
/// An `http://` URL (the probe speaks plain HTTP only).
pub fn parse_http_url(raw: &str) -> Result<String, String> {
    let url = raw.trim();
    match url.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url.to_owned()),
        _ => Err(format!(
            "expected an http://HOST:PORT/PATH URL, got '{url}'"
        )),
    }
}

pub fn parse_controller_address(raw: &str) -> Result<String, String> {
    let address = raw.trim();
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("expected HOST:PORT, got '{address}'"));
    };
    if host.is_empty() || host.contains("://") {
        return Err(format!("expected HOST:PORT, got '{address}'"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(address.to_owned()),
        _ => Err(format!("'{port}' is not a port in '{address}'")),
    }
}

fn config_map(entries: &[ConfigEntry], flag: &str) -> Result<BTreeMap<String, String>, CliError> {
    let mut map = BTreeMap::new();
    for entry in entries {
        if map.insert(entry.key.clone(), entry.value.clone()).is_some() {
            return Err(CliError::InvalidArgument(format!(
                "config '{}' is given twice to {flag}",
                entry.key
            )));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chronikctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_entries_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_config_entry("cleanup.policy=compact"),
            Ok(ConfigEntry {
                key: "cleanup.policy".into(),
                value: "compact".into()
            })
        );
        assert_eq!(
            parse_config_entry("a=b=c").map(|entry| entry.value),
            Ok("b=c".to_owned())
        );
    }

    #[test]
    fn malformed_config_entries_are_rejected() {
        assert_eq!(
            parse_config_entry("retention.ms"),
            Err("expected KEY=VALUE, got 'retention.ms'".to_owned())
        );
        assert_eq!(
            parse_config_entry("=1"),
            Err("config key is empty".to_owned())
        );
        assert!(parse_config_entry("retention.ms=").is_err());
        assert!(parse_config_entry("a b=1").is_err());
    }

    #[test]
    fn topic_create_parses_every_option() {
        let cli = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=compact",
        ])
        .expect("valid command line");
        let Command::Topic(TopicCommand::Create(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.name, "orders");
        assert_eq!(args.partitions, Some(3));
        assert_eq!(args.replication_factor, Some(2));
        let configs = args.config_map().expect("distinct keys");
        assert_eq!(
            configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(
            configs.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
    }

    #[test]
    fn topic_create_defaults_partitions_and_replication() {
        let cli = parse(&["topic", "create", "orders"]).expect("valid command line");
        let Command::Topic(TopicCommand::Create(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((args.partitions, args.replication_factor), (None, None));
        assert!(args.configs.is_empty());
    }

    #[test]
    fn topic_create_rejects_bad_values() {
        let error = parse(&["topic", "create", "orders", "--config", "nokey"]).expect_err("no '='");
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("expected KEY=VALUE"), "{error}");
        assert!(parse(&["topic", "create", "orders", "--partitions", "0"]).is_err());
        assert!(parse(&["topic", "create", "orders", "--replication-factor", "-1"]).is_err());
    }

    #[test]
    fn a_config_key_given_twice_is_an_error() {
        let cli = parse(&["topic", "create", "t", "--config", "a=1", "--config", "a=2"])
            .expect("valid shape");
        let Command::Topic(TopicCommand::Create(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(
            args.config_map().expect_err("duplicate").to_string(),
            "config 'a' is given twice to --config"
        );
    }

    fn alter_args(args: &[&str]) -> AlterConfigArgs {
        let cli = parse(args).expect("valid command line");
        match cli.command {
            Command::Topic(TopicCommand::AlterConfig(args)) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn alter_config_collects_sets_and_deletes() {
        let args = alter_args(&[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=1000",
            "--delete",
            "segment.bytes",
            "--delete",
            "cleanup.policy",
        ]);
        let changes = args.changes().expect("consistent changes");
        assert_eq!(changes.set.len(), 1);
        assert_eq!(
            changes.set.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(changes.delete, ["cleanup.policy", "segment.bytes"]);
    }

    #[test]
    fn alter_config_needs_a_change_and_no_contradiction() {
        assert_eq!(
            parse(&["topic", "alter-config", "orders"])
                .expect_err("nothing to change")
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        let args = alter_args(&[
            "topic",
            "alter-config",
            "t",
            "--set",
            "a=1",
            "--delete",
            "a",
        ]);
        assert_eq!(
            args.changes().expect_err("contradiction").to_string(),
            "config 'a' is both set and deleted"
        );
        let args = alter_args(&[
            "topic",
            "alter-config",
            "t",
            "--delete",
            "a",
            "--delete",
            "a",
        ]);
        assert!(args.changes().is_err());
    }

    #[test]
    fn global_flags_parse() {
        // `--controllers` goes before the subcommand (`local up` has a `--controllers N` of its own);
        // `--output` and `--timeout-ms` are accepted anywhere.
        let cli = parse(&[
            "--controllers",
            "127.0.0.1:9093, 127.0.0.1:9094",
            "cluster",
            "status",
            "--output",
            "json",
            "--timeout-ms",
            "500",
        ])
        .expect("valid command line");
        assert_eq!(cli.global.controllers, ["127.0.0.1:9093", "127.0.0.1:9094"]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.timeout_ms, 500);
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Status)
        ));
    }

    #[test]
    fn controller_addresses_need_a_port() {
        assert_eq!(
            parse_controller_address(" h:9093 "),
            Ok("h:9093".to_owned())
        );
        assert_eq!(
            parse_controller_address("[::1]:9093"),
            Ok("[::1]:9093".to_owned())
        );
        assert!(parse_controller_address("localhost").is_err());
        assert!(parse_controller_address("h:0").is_err());
        assert!(parse_controller_address("h:http").is_err());
        assert!(parse_controller_address(":9093").is_err());
        assert!(parse(&["broker", "list", "--controllers", "nohost"]).is_err());
    }

    fn reset_args(args: &[&str]) -> Result<ResetOffsetsArgs, clap::Error> {
        let mut full = vec!["group", "reset-offsets"];
        full.extend_from_slice(args);
        match parse(&full)?.command {
            Command::Group(GroupCommand::ResetOffsets(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn reset_offsets_needs_exactly_one_target() {
        use crate::cmd::group::ResetTarget;
        let args = reset_args(&["g", "--topic", "t", "--to-earliest"]).expect("valid");
        assert_eq!(args.reset_target(), ResetTarget::Earliest);
        assert_eq!(args.partitions, crate::bench::PartitionSelection::All);
        assert!(!args.dry_run);
        assert_eq!(args.target.retry_timeout_ms, 15_000);
        let args = reset_args(&[
            "g",
            "--topic",
            "t",
            "--to-latest",
            "--partitions",
            "2,0",
            "--dry-run",
        ])
        .expect("valid");
        assert_eq!(args.reset_target(), ResetTarget::Latest);
        assert_eq!(
            args.partitions,
            crate::bench::PartitionSelection::Only(vec![0, 2])
        );
        assert!(args.dry_run);
        let args = reset_args(&["g", "--topic", "t", "--to-offset", "42"]).expect("valid");
        assert_eq!(args.reset_target(), ResetTarget::Offset(42));
        let args = reset_args(&["g", "--topic", "t", "--to-datetime", "1970-01-01T00:00:01Z"])
            .expect("valid");
        assert_eq!(args.reset_target(), ResetTarget::Datetime(1_000));

        assert_eq!(
            reset_args(&["g", "--topic", "t"])
                .expect_err("no target")
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            reset_args(&["g", "--topic", "t", "--to-earliest", "--to-latest"])
                .expect_err("two targets")
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert!(
            reset_args(&["g", "--to-earliest"]).is_err(),
            "--topic is required"
        );
        assert!(reset_args(&["g", "--topic", "t", "--to-offset", "-1"]).is_err());
        assert!(reset_args(&["g", "--topic", "t", "--to-earliest", "--partitions", "x"]).is_err());
        let error = reset_args(&["g", "--topic", "t", "--to-datetime", "yesterday"])
            .expect_err("bad datetime");
        assert!(
            error.to_string().contains("not an RFC 3339 date-time"),
            "{error}"
        );
    }

    #[test]
    fn rfc3339_datetimes_become_epoch_milliseconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_datetime("2026-11-22T10:00:00Z"),
            Ok(1_795_341_600_000)
        );
        assert_eq!(
            parse_datetime("2026-11-22T12:00:00+02:00"),
            Ok(1_795_341_600_000)
        );
        assert_eq!(
            parse_datetime("2026-11-22T05:30:00-04:30"),
            Ok(1_795_341_600_000)
        );
        assert_eq!(
            parse_datetime("2026-11-22t10:00:00.25z"),
            Ok(1_795_341_600_250)
        );
        assert_eq!(
            parse_datetime("2026-11-22 10:00:00.123456Z"),
            Ok(1_795_341_600_123)
        );
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        assert_eq!(parse_datetime("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00Z",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00+2:00",
            "2026-11-22T10:00:00.Z",
            "1969-12-31T23:59:59Z",
            "+2026-11-22T10:00:00Z",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn group_commands_parse() {
        let cli = parse(&["group", "list", "--retry-timeout-ms", "500"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Group(GroupCommand::List(GroupTargetArgs {
                retry_timeout_ms: 500
            }))
        ));
        let cli = parse(&["group", "describe", "g1", "-o", "json"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Group(GroupCommand::Describe(GroupArgs { ref group, .. })) if group == "g1"
        ));
        assert!(
            parse(&["group", "delete"]).is_err(),
            "the group id is required"
        );
    }

    #[test]
    fn election_topic_is_optional() {
        let cli = parse(&["election", "preferred"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Election(ElectionCommand::Preferred { topic: None })
        ));
        let cli = parse(&["election", "preferred", "orders"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Election(ElectionCommand::Preferred { topic: Some(ref t) }) if t == "orders"
        ));
    }
}
