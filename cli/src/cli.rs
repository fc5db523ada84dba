//! The command line, declared with clap derive: global flags (each with a `CHRONIK_*` variable and a doc
//! line that becomes `--help`) and one subcommand enum per noun. Each value is checked on its own by its
//! parser in [`crate::parse`]; the few checks that need several values at once (a config key given twice,
//! set and deleted together) live in the `*_map`/`changes` helpers here, so every command-line rule is in
//! one of those two files.

use std::collections::BTreeMap;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::client::DEFAULT_CONTROLLER_ADDRESS;
use crate::error::CliError;
use crate::output::OutputFormat;
use crate::parse::{self, ConfigEntry};
use chronik_metadata::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};

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
        value_parser = parse::controller_address
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

    /// TLS and the admin token towards the controllers.
    #[command(flatten)]
    pub controller_security: ControllerSecurityArgs,

    /// How to reach the brokers' Kafka listeners securely.
    #[command(flatten)]
    pub kafka: KafkaSecurityArgs,
}

/// chronikctl's credentials towards the controllers (docs/security.md, "Control plane").
#[derive(Debug, Clone, Default, Args)]
pub struct ControllerSecurityArgs {
    /// CA bundle (PEM) that verifies the controllers' certificates; turns TLS on (gRPC and HTTPS).
    #[arg(
        long,
        env = "CHRONIK_CONTROLLER_TLS_CA",
        value_name = "PATH",
        global = true
    )]
    pub controller_tls_ca: Option<std::path::PathBuf>,

    /// Client certificate (PEM) for controllers that authenticate by certificate (mTLS).
    #[arg(
        long,
        visible_alias = "controller-tls-cert",
        env = "CHRONIK_CONTROLLER_TLS_CERTIFICATE",
        value_name = "PATH",
        requires = "controller_tls_key",
        global = true
    )]
    pub controller_tls_certificate: Option<std::path::PathBuf>,

    /// Private key (PEM) of --controller-tls-certificate.
    #[arg(
        long,
        env = "CHRONIK_CONTROLLER_TLS_KEY",
        value_name = "PATH",
        requires = "controller_tls_certificate",
        global = true
    )]
    pub controller_tls_key: Option<std::path::PathBuf>,

    /// File holding the admin token (the controllers' --admin-token-file).
    #[arg(
        long,
        env = "CHRONIK_ADMIN_TOKEN_FILE",
        value_name = "PATH",
        global = true
    )]
    pub admin_token_file: Option<std::path::PathBuf>,
}

impl ControllerSecurityArgs {
    /// The files, as the credentials loader takes them.
    pub fn files(&self) -> chronik_control_auth::ClientFiles {
        chronik_control_auth::ClientFiles {
            ca: self.controller_tls_ca.clone(),
            certificate: self.controller_tls_certificate.clone(),
            key: self.controller_tls_key.clone(),
            token: self.admin_token_file.clone(),
        }
    }

    /// Reads the files; an unreadable or invalid one is an error naming it.
    pub fn load(&self) -> Result<chronik_control_auth::ClientCredentials, CliError> {
        chronik_control_auth::ClientCredentials::load(&self.files(), "--admin-token-file")
            .map_err(|e| CliError::InvalidArgument(e.to_string()))
    }
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
    /// List and describe transactions (Kafka protocol to the brokers' transaction coordinators).
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Move partition leadership.
    #[command(subcommand)]
    Election(ElectionCommand),
    /// Move a partition's replicas to other brokers.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// List and cancel replica movements under way.
    #[command(subcommand)]
    Reassignment(ReassignmentCommand),
    /// Create, list and delete ACLs (checked by brokers started with --authorizer standard).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Create, list and delete SCRAM users (SASL SCRAM-SHA-256/512 credentials).
    #[command(subcommand)]
    User(UserCommand),
    /// Set, remove and list client quotas: byte rates of users, client ids and their pairs.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Run a cluster of real processes on this machine, without Docker.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Generate the certificates, tokens and passwords of a secured cluster (the secured compose stack).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Measure produce and consume throughput and latency against the brokers (Kafka protocol).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// GET an HTTP URL, e.g. a node's /readyz, and exit 0 only on a 2xx answer: the health check of
    /// the container images, which have no curl.
    Probe {
        /// The URL, e.g. http://127.0.0.1:8092/readyz (https:// is verified against
        /// --controller-tls-ca). Its timeout is --timeout-ms.
        #[arg(value_parser = parse::http_url)]
        url: String,
    },
    /// Print the shell completion script to stdout, e.g. `source <(chronikctl completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `chronikctl secrets ...`
#[derive(Debug, Clone, Subcommand)]
pub enum SecretsCommand {
    /// Create whatever is missing in DIR (existing files are kept): a CA (`ca.pem`, `ca.key`), a
    /// certificate and key per node (`controller-N.pem`, `broker-N.pem`, `.key`: CN and DNS name
    /// `controller-N` / `broker-N`, plus localhost, 127.0.0.1 and every --san; server and client use),
    /// the controllers' `admin.token` and `cluster.token`, and passwords for the SCRAM users `admin` and
    /// `broker` (`admin.password`, `broker.password`). Keys, tokens and passwords are mode 0600.
    Generate(SecretsGenerateArgs),
}

/// `chronikctl secrets generate`.
#[derive(Debug, Clone, Args)]
pub struct SecretsGenerateArgs {
    /// The directory to fill (created if missing).
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Controllers to issue certificates for (controller-1..N).
    #[arg(long, default_value_t = 3)]
    pub controllers: u32,
    /// Brokers to issue certificates for (broker-1..N).
    #[arg(long, default_value_t = 3)]
    pub brokers: u32,
    /// An extra DNS name or IP address every certificate names, e.g. the host name advertised to
    /// clients (repeat for several; only for certificates generated by this run).
    #[arg(long = "san", value_name = "NAME")]
    pub extra_names: Vec<String>,
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
    Start(LocalStartArgs),
}

/// `chronikctl local start`.
#[derive(Debug, Clone, Args)]
pub struct LocalStartArgs {
    #[command(flatten)]
    pub node: LocalNodeArgs,
    /// Return once the process runs instead of waiting until it is ready: a controller that started
    /// with an empty log is not ready until a leader has caught it up.
    #[arg(long)]
    pub no_wait: bool,
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
    /// Secure the controllers: TLS on their gRPC and HTTP and the admin and cluster tokens, generated
    /// into DIR/control-plane (a CA, certificates, tokens); brokers and chronikctl get them. For an
    /// existing cluster dir, the choice made at its first start stays.
    #[arg(long)]
    pub secure_control_plane: bool,
    /// Where the chronik-controller and chronik-broker binaries are (default: beside chronikctl; under
    /// `cargo run` they are built first).
    #[arg(long, env = "CHRONIK_BIN_DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
    /// How long to wait for every node to be ready, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    /// Secure every Kafka listener (replication too): `ssl` (mutual TLS), `sasl_plaintext` or
    /// `sasl_ssl` (SCRAM-SHA-512), with a generated CA, certificates and super user, and print the
    /// client properties file to use (`chronikctl -C`, confluent-kafka, kcat -F). Only for a new
    /// cluster.
    #[arg(long, value_enum)]
    pub security: Option<LocalSecurityProtocol>,
}

/// The protocols `local up --security` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalSecurityProtocol {
    #[value(name = "ssl")]
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl LocalSecurityProtocol {
    /// Kafka's name.
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
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
    /// Create many partitions on a local cluster of 3 controllers and 3 brokers and report how long
    /// every broker takes to serve and open them, metadata propagation, memory, Raft storage, open
    /// files and a controller failover (issue #18).
    Metadata(BenchMetadataArgs),
}

/// `chronikctl bench metadata`.
#[derive(Debug, Clone, Args)]
pub struct BenchMetadataArgs {
    /// Partitions to create in total (`_` separators allowed).
    #[arg(long, value_name = "N", default_value = "10_000", value_parser = parse::count)]
    pub partitions: u64,
    /// Partitions of each topic (the last topic takes the remainder).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions_per_topic: u32,
    /// Replication factor of every topic.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Topics per CreateTopics request; each request is one batch of metadata records.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub topics_per_request: u64,
    /// Prefix of the topics' names (a random run id follows it).
    #[arg(long, default_value = "meta-bench")]
    pub topic_prefix: String,
    /// Single topic creations timed after the bulk, each until every broker serves it.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub probes: u32,
    /// Skip the controller failover (kill -9 of the active controller).
    #[arg(long)]
    pub no_failover: bool,
    /// After the failover, how long to wait before checking that no broker was fenced: longer than
    /// the brokers' session timeout.
    #[arg(long, value_name = "SECS", default_value_t = 7)]
    pub failover_settle_secs: u64,
    /// Run against the local cluster in this directory (`chronikctl local up --dir`) instead of
    /// starting one; its active controller is killed and started again for the failover.
    #[arg(long, value_name = "DIR")]
    pub cluster_dir: Option<std::path::PathBuf>,
    /// Controllers of the cluster the benchmark starts.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub controller_nodes: usize,
    /// Brokers of the cluster the benchmark starts.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub broker_nodes: usize,
    /// An extra flag for every controller the benchmark starts.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    pub controller_args: Vec<String>,
    /// An extra flag for every broker the benchmark starts.
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// Where `chronik-controller` and `chronik-broker` are (default: beside chronikctl).
    #[arg(long, env = "CHRONIK_BIN_DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
    /// Keep the started cluster's directory (data and logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Give up on the whole run after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
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
        value_parser = parse::controller_address
    )]
    pub bootstrap_servers: Vec<String>,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partitions to use: `all`, or a comma-separated list such as `0,2,4`.
    #[arg(long, value_name = "all|P,...", default_value = "all", value_parser = parse::partitions)]
    pub partitions: crate::bench::PartitionSelection,
    /// Let the broker create a missing topic with its default partition count and replication.
    #[arg(long)]
    pub auto_create_topic: bool,
    /// Stop after this many seconds whatever happens (the report covers what was done by then).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// The brokers' `/metrics` URLs, comma-separated (e.g. `http://127.0.0.1:8081/metrics`): the
    /// report adds the CPU seconds those processes used during the run (their
    /// `process_cpu_seconds_total`) and that per GiB of the report's bytes.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub metrics_url: Vec<String>,
}

/// `chronikctl bench produce`.
#[derive(Debug, Clone, Args)]
pub struct BenchProduceArgs {
    #[command(flatten)]
    pub target: BenchTargetArgs,
    /// Messages to produce (`_` separators allowed).
    #[arg(long, value_name = "N", default_value = "1_000_000", value_parser = parse::count)]
    pub messages: u64,
    /// Bytes of each record value (`KiB`/`MiB` suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value = "100", value_parser = parse::size)]
    pub record_size: u32,
    /// Bytes of each record key; 0 sends records without a key.
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse::size)]
    pub key_size: u32,
    /// What keys and values are made of (matters for compression).
    #[arg(long, value_enum, default_value_t = crate::bench::ValueKind::Random)]
    pub values: crate::bench::ValueKind,
    /// Uncompressed bytes per record batch, as Kafka's `batch.size`: records per batch is this
    /// divided by the record size (at least one).
    #[arg(long, value_name = "BYTES", default_value = "16384", value_parser = parse::positive_size)]
    pub batch_size: u32,
    /// Produce requests outstanding per broker connection (pipelined; the broker answers in order).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub in_flight: u32,
    /// Connections to each partition leader; each pipelines its own requests over all the leader's
    /// partitions (a broker handles one request of a connection at a time, as Kafka does).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub connections: u32,
    /// Acknowledgements: `all` (or -1), 1 (leader only) or 0 (no answer; no latency is measured).
    #[arg(long, value_name = "all|-1|1|0", default_value = "all", allow_hyphen_values = true, value_parser = parse::acks)]
    pub acks: i16,
    /// Compression codec of the batches.
    #[arg(long, value_enum, default_value_t = crate::bench::CompressionCodec::None)]
    pub compression: crate::bench::CompressionCodec,
    /// Stop sending after this many seconds even if messages remain.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: Option<u64>,
    /// Send at most this many messages per second, all connections together (as Kafka's
    /// `ProducerPerformance --throughput`). Batches go out on a fixed schedule and each batch's
    /// latency runs from its scheduled time, so a broker that falls behind shows it in the
    /// latency. Without it, the generator sends as fast as acknowledgements allow.
    #[arg(long, value_name = "MSGS_PER_SEC", value_parser = parse::count)]
    pub throughput: Option<u64>,
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
    #[arg(long, value_name = "N", value_parser = parse::count, required_if_eq("from", "latest"))]
    pub messages: Option<u64>,
    /// MaxBytes of each Fetch, and the per-partition limit (`KiB`/`MiB` suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse::positive_size)]
    pub fetch_max_bytes: u32,
    /// How long the broker may hold a Fetch that has no data yet.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(i32).range(0..))]
    pub fetch_max_wait_ms: i32,
    /// Where to start each partition.
    #[arg(long, value_enum, default_value_t = crate::bench::StartOffset::Earliest)]
    pub from: crate::bench::StartOffset,
}

/// `chronikctl cluster ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, every controller's Raft state, the brokers and partition health.
    Status,
    /// Show the metadata quorum's replication as the active controller sees it (DescribeQuorum, as
    /// `kafka-metadata-quorum.sh describe --status --replication`): the leader, its epoch and high
    /// watermark, and each controller's and broker's log end offset, lag and last contact.
    Quorum,
    /// Show every live broker's log directory (DescribeLogDirs): its path, state, filesystem size
    /// and free space, and per partition replica its size and offset lag.
    Logdirs {
        /// Only this topic's partitions.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Show the feature flags (KIP-584): each one's finalized level, what the active controller
    /// supports and what every broker registered as supported; or change a finalized level, as
    /// `kafka-features.sh upgrade|downgrade --feature NAME=LEVEL` does.
    Features {
        #[command(subcommand)]
        change: Option<FeaturesCommand>,
    },
    /// Read and change the cluster-wide defaults (Kafka's dynamic broker defaults, by their broker
    /// names: `log.retention.ms`, `min.insync.replicas`, `num.partitions`, ...). A change applies at
    /// once to every topic that does not set the config itself.
    #[command(subcommand)]
    Config(ClusterConfigCommand),
}

/// `chronikctl cluster features ...`
#[derive(Debug, Clone, Subcommand)]
pub enum FeaturesCommand {
    /// Finalize a feature at a higher level (every broker must support it).
    Upgrade {
        /// NAME=LEVEL, e.g. `transaction.version=2`.
        #[arg(value_parser = parse::feature_level)]
        feature: (String, i32),
        /// Only validate the change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Finalize a feature at a lower level (0 turns it off).
    Downgrade {
        /// NAME=LEVEL, e.g. `transaction.version=1`.
        #[arg(value_parser = parse::feature_level)]
        feature: (String, i32),
        /// Kafka's unsafe downgrade: one that may lose metadata.
        #[arg(long = "unsafe")]
        unsafe_downgrade: bool,
        /// Only validate the change.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `chronikctl cluster config ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterConfigCommand {
    /// Show every cluster-wide default (or the named ones) with its value and whether it is set or
    /// built in.
    Get {
        /// Only these keys.
        #[arg(value_parser = parse::config_key)]
        keys: Vec<String>,
    },
    /// Set cluster-wide defaults, e.g. `set log.retention.ms=86400000 num.partitions=6`.
    Set {
        /// `KEY=VALUE` pairs.
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse::config_entry)]
        entries: Vec<ConfigEntry>,
    },
    /// Delete cluster-wide defaults so that the built-in default applies again.
    Delete {
        /// The keys.
        #[arg(required = true, value_parser = parse::config_key)]
        keys: Vec<String>,
    },
}

/// `chronikctl broker ...`
#[derive(Debug, Clone, Subcommand)]
pub enum BrokerCommand {
    /// List the registered brokers with their state, epoch and leader count.
    List,
    /// Cordon a broker (KIP-1066: its `cordoned.log.dirs` becomes `*`): it keeps its replicas, but
    /// new topics and partitions place none on it.
    Cordon {
        /// The broker id.
        broker_id: i32,
    },
    /// Clear a broker's cordon: new topics and partitions may place replicas on it again.
    Uncordon {
        /// The broker id.
        broker_id: i32,
    },
    /// Cordon a broker, move every replica off it onto the other live, uncordoned brokers (each
    /// to the one holding the fewest replicas) and wait until it hosts none; then it can be
    /// stopped for good. It stays cordoned, so no new topic places a replica on it.
    Decommission {
        /// The broker id.
        broker_id: i32,
        #[command(flatten)]
        wait: MoveWaitArgs,
    },
    /// Remove the registration of a stopped broker that is gone for good (as `kafka-cluster.sh
    /// unregister`): it leaves every ISR and no longer counts for placement or feature upgrades.
    /// Refused while the broker is alive. Its replicas stay assigned (decommission it first).
    Unregister {
        /// The broker id.
        broker_id: i32,
    },
}

/// How long a replica move is watched.
#[derive(Debug, Clone, Args)]
pub struct MoveWaitArgs {
    /// Return once the moves are accepted instead of waiting for them to complete.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the moves go on; `reassignment list` shows them).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub wait_secs: u64,
}

impl MoveWaitArgs {
    pub fn wait(&self) -> Option<std::time::Duration> {
        (!self.no_wait).then(|| std::time::Duration::from_secs(self.wait_secs))
    }
}

/// `chronikctl partition ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PartitionCommand {
    /// Move one partition's replicas to the given brokers (the first becomes the preferred leader):
    /// the new replicas are added and catch up before the old ones are removed.
    Move {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The target replicas, comma-separated broker ids, e.g. `2,3,4`.
        #[arg(long, value_name = "B,...", value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
        #[command(flatten)]
        wait: MoveWaitArgs,
    },
}

/// `chronikctl reassignment ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ReassignmentCommand {
    /// Show each replica movement under way: replicas, those being added and removed, the ISR.
    List {
        /// Only this topic's partitions.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Stop a partition's movement: it returns to its replicas before the move.
    Cancel {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
}

/// `chronikctl topic ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateTopicArgs),
    /// List every topic.
    List,
    /// Show a topic's id, configs and partitions, with each partition's log start offset, high
    /// watermark and size as its leader reports them.
    Describe {
        /// The topic name.
        name: String,
        /// Only what the controllers know: ask no broker for offsets and sizes.
        #[arg(long)]
        metadata_only: bool,
    },
    /// Delete a topic and all its data.
    Delete {
        /// The topic name.
        name: String,
    },
    /// Set or delete topic configs (deleted keys fall back to the cluster default).
    AlterConfig(AlterConfigArgs),
    /// Grow a topic to more partitions (existing partitions and their data are untouched; keyed
    /// records may map to other partitions afterwards).
    AddPartitions(AddPartitionsArgs),
    /// Delete the records of a topic's partitions below an offset (Kafka's DeleteRecords): each
    /// partition's log start offset moves there on every replica. Prints each partition's new low
    /// watermark or its error; exits non-zero if any partition failed.
    TrimPrefix(TrimPrefixArgs),
    /// Produce records read from stdin, one per line (or per `--delimiter`), to the partition
    /// leaders (Kafka protocol; idempotent with acks=all). Prints each record's partition and
    /// offset; exits non-zero if any record failed.
    Produce(crate::cmd::produce::ProduceArgs),
    /// Print a topic's records (Kafka protocol): by default every partition from the start up to
    /// the high watermark seen at start, each record's value on a line.
    Consume(crate::cmd::consume::ConsumeArgs),
}

/// Where the record commands (`topic produce|consume`) find the brokers, and how long they retry.
#[derive(Debug, Clone, Args)]
pub struct KafkaTargetArgs {
    /// Kafka bootstrap servers, comma-separated; by default the live brokers the controllers list.
    #[arg(
        long,
        short = 'b',
        env = "CHRONIK_BOOTSTRAP_SERVERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        value_parser = parse::controller_address
    )]
    pub bootstrap_servers: Vec<String>,
    #[command(flatten)]
    pub retry: GroupTargetArgs,
}

/// Arguments of `topic add-partitions`.
#[derive(Debug, Clone, Args)]
pub struct AddPartitionsArgs {
    /// The topic name.
    pub name: String,
    /// The partition count afterwards.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub count: i32,
    /// Place the new partitions by hand, as `kafka-topics --replica-assignment`: one entry per new
    /// partition, separated by commas, each the broker ids of its replicas separated by colons (the
    /// first the preferred leader), e.g. `1:2,2:3`. Default: placed as at creation.
    #[arg(long, value_name = "B:B,...", value_parser = parse::replica_assignment)]
    pub replica_assignment: Option<Vec<Vec<i32>>>,
}

/// `topic trim-prefix`.
#[derive(Debug, Clone, Args)]
pub struct TrimPrefixArgs {
    /// The topic name.
    pub name: String,
    /// Delete every record below this offset; -1 for each partition's high watermark (every record
    /// written so far and committed). Above a partition's high watermark it fails that partition.
    #[arg(
        long,
        value_name = "OFFSET|-1",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(-1..)
    )]
    pub offset: i64,
    /// The partitions to trim: `all`, or a comma-separated list such as `0,2`.
    #[arg(long, value_name = "all|P,...", default_value = "all", value_parser = parse::partitions)]
    pub partitions: crate::bench::PartitionSelection,
    #[command(flatten)]
    pub target: GroupTargetArgs,
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
    /// Delete a group's committed offsets of one topic (Kafka's OffsetDelete). The coordinator
    /// refuses partitions of a topic the group's members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC).
    /// Prints the result per partition; exits non-zero if any partition was refused.
    OffsetDelete(OffsetDeleteArgs),
}

/// `chronikctl txn ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TxnCommand {
    /// List the transactional ids of the cluster: ListTransactions to every live broker, merged.
    List(TxnListArgs),
    /// Show a transactional id's state, producer id and epoch, timeout and the partitions of its
    /// ongoing transaction (DescribeTransactions on its coordinator).
    Describe(TxnDescribeArgs),
}

/// `txn list`.
#[derive(Debug, Clone, Args)]
pub struct TxnListArgs {
    /// Only these states (repeat for several): Empty, Ongoing, PrepareCommit, PrepareAbort,
    /// CompleteCommit, CompleteAbort, PrepareEpochFence.
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<String>,
    /// Only this producer id (repeat for several).
    #[arg(long = "producer-id", value_name = "ID")]
    pub producer_ids: Vec<i64>,
    /// Only transactions running for longer than this, in milliseconds.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(i64).range(0..))]
    pub min_duration_ms: Option<i64>,
    #[command(flatten)]
    pub target: GroupTargetArgs,
}

impl TxnListArgs {
    pub fn filters(&self) -> crate::kafka::txn::TransactionFilters {
        crate::kafka::txn::TransactionFilters {
            states: self.states.clone(),
            producer_ids: self.producer_ids.clone(),
            min_duration_ms: self.min_duration_ms.unwrap_or(-1),
        }
    }
}

/// `txn describe`.
#[derive(Debug, Clone, Args)]
pub struct TxnDescribeArgs {
    /// The transactional id.
    pub transactional_id: String,
    #[command(flatten)]
    pub target: GroupTargetArgs,
}

/// `group offset-delete`.
#[derive(Debug, Clone, Args)]
pub struct OffsetDeleteArgs {
    /// The group id.
    pub group: String,
    /// The topic whose committed offsets go.
    #[arg(long)]
    pub topic: String,
    /// A partition (repeat for several); every partition of the topic when omitted.
    #[arg(long = "partition", short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partitions: Vec<i32>,
    #[command(flatten)]
    pub target: GroupTargetArgs,
}

/// How long the commands that speak the Kafka protocol (groups, records) keep retrying.
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
    #[arg(long, value_name = "all|P,...", default_value = "all", value_parser = parse::partitions)]
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
    #[arg(long, value_name = "RFC3339", value_parser = parse::datetime)]
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

/// `chronikctl acl ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AclCommand {
    /// Add an ACL; adding one that exists changes nothing.
    Create(AclArgs),
    /// List the ACLs the filter matches (every ACL without one).
    List(AclFilterArgs),
    /// Delete every ACL the filter matches and list them; name at least one field.
    Delete(AclFilterArgs),
}

/// One ACL, as `acl create` takes it.
#[derive(Debug, Clone, Args)]
pub struct AclArgs {
    /// Who, as Type:name (e.g. User:alice; User:* is every user).
    #[arg(long)]
    pub principal: String,
    /// The client address it applies to; * for every host.
    #[arg(long, default_value = "*")]
    pub host: String,
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS, DESCRIBE_TOKENS or ALL.
    #[arg(long, value_parser = parse::acl_operation)]
    pub operation: AclOperation,
    /// ALLOW or DENY.
    #[arg(long, value_parser = parse::acl_permission)]
    pub permission: AclPermissionType,
    /// TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN or USER.
    #[arg(long, value_parser = parse::resource_type)]
    pub resource_type: ResourceType,
    /// The resource's name (kafka-cluster for CLUSTER); * with LITERAL is every resource of the type.
    #[arg(long)]
    pub resource_name: String,
    /// LITERAL (the name exactly) or PREFIXED (every name that starts with it).
    #[arg(long, value_parser = parse::pattern_type, default_value = "literal")]
    pub pattern_type: PatternType,
}

/// What `acl list` and `acl delete` select; a field left out matches anything.
#[derive(Debug, Clone, Args)]
pub struct AclFilterArgs {
    /// Only ACLs of this principal (Type:name, exactly as stored; User:* is the wildcard ACL's).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only ACLs for this host (exactly as stored; * is the every-host ACL's).
    #[arg(long)]
    pub host: Option<String>,
    /// Only ACLs of this operation (READ, WRITE, ..., ALL).
    #[arg(long, value_parser = parse::acl_operation)]
    pub operation: Option<AclOperation>,
    /// Only ALLOW or only DENY ACLs.
    #[arg(long, value_parser = parse::acl_permission)]
    pub permission: Option<AclPermissionType>,
    /// Only ACLs on this resource type (TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN,
    /// USER).
    #[arg(long, value_parser = parse::resource_type)]
    pub resource_type: Option<ResourceType>,
    /// Only ACLs on this resource name (how it matches depends on --pattern-type).
    #[arg(long)]
    pub resource_name: Option<String>,
    /// LITERAL, PREFIXED, ANY (both, by exact name) or MATCH (every ACL that applies to the named
    /// resource: its literal ACLs, the * ones and the prefixes of its name).
    #[arg(long, value_parser = parse::pattern_type)]
    pub pattern_type: Option<PatternType>,
}

/// `chronikctl election ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ElectionCommand {
    /// Move leadership of every partition (or of one topic's partitions) back to its preferred replica.
    Preferred {
        /// Only this topic's partitions; every topic when omitted.
        topic: Option<String>,
    },
    /// Give leaderless partitions a leader even if no in-sync replica is alive (Kafka's
    /// ElectionType.UNCLEAN): a live out-of-sync replica takes over, and acknowledged records it
    /// lacks are lost. Partitions that have a leader are left alone.
    Unclean {
        /// Only this topic's partitions; every topic when omitted.
        topic: Option<String>,
        /// Only this partition of the topic (repeat for several).
        #[arg(long = "partition", short = 'p', value_name = "P", requires = "topic", value_parser = clap::value_parser!(i32).range(0..))]
        partitions: Vec<i32>,
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
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse::config_entry)]
    pub configs: Vec<ConfigEntry>,
}

impl CreateTopicArgs {
    /// The `--config` entries as a map; a key given twice is an error.
    pub fn config_map(&self) -> Result<BTreeMap<String, String>, CliError> {
        config_map(&self.configs, "--config")
    }
}

/// The `KEY=VALUE` entries as a map; a key given twice is an error.
pub fn entries_map(entries: &[ConfigEntry]) -> Result<BTreeMap<String, String>, CliError> {
    config_map(entries, "set")
}

/// Arguments of `topic alter-config`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true).args(["set", "delete"])))]
pub struct AlterConfigArgs {
    /// The topic name.
    pub name: String,

    /// Set a config, e.g. `--set retention.ms=3600000`; repeat for several.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse::config_entry)]
    pub set: Vec<ConfigEntry>,

    /// Delete a config so that it falls back to the cluster default; repeat for several.
    #[arg(long, value_name = "KEY", value_parser = parse::config_key)]
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
    fn feature_changes_take_name_equals_level() {
        let cli = parse(&[
            "cluster",
            "features",
            "downgrade",
            "transaction.version=1",
            "--unsafe",
            "--dry-run",
        ])
        .expect("parses");
        match cli.command {
            Command::Cluster(ClusterCommand::Features {
                change:
                    Some(FeaturesCommand::Downgrade {
                        feature,
                        unsafe_downgrade: true,
                        dry_run: true,
                    }),
            }) => assert_eq!(feature, ("transaction.version".to_owned(), 1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["cluster", "features"]).expect("parses").command,
            Command::Cluster(ClusterCommand::Features { change: None })
        ));
        for bad in [
            "transaction.version",
            "=2",
            "transaction.version=-1",
            "x=40000",
            "x=two",
        ] {
            assert!(
                parse(&["cluster", "features", "upgrade", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
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
    fn txn_commands_parse() {
        let cli = parse(&[
            "txn",
            "list",
            "--state",
            "Ongoing",
            "--state",
            "PrepareCommit",
            "--producer-id",
            "7",
            "--min-duration-ms",
            "60000",
        ])
        .expect("valid");
        let Command::Txn(TxnCommand::List(args)) = cli.command else {
            panic!("txn list");
        };
        assert_eq!(
            args.filters(),
            crate::kafka::txn::TransactionFilters {
                states: vec!["Ongoing".into(), "PrepareCommit".into()],
                producer_ids: vec![7],
                min_duration_ms: 60_000,
            }
        );
        let cli = parse(&["txn", "list"]).expect("valid");
        let Command::Txn(TxnCommand::List(args)) = cli.command else {
            panic!("txn list");
        };
        assert_eq!(args.filters().min_duration_ms, -1, "no duration filter");
        assert!(parse(&["txn", "list", "--min-duration-ms", "-5"]).is_err());
        let cli = parse(&["txn", "describe", "orders-tx"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Txn(TxnCommand::Describe(TxnDescribeArgs { ref transactional_id, .. }))
                if transactional_id == "orders-tx"
        ));
        assert!(parse(&["txn", "describe"]).is_err(), "the id is required");
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
    fn trim_prefix_takes_an_offset_or_minus_one() {
        let trim = |args: &[&str]| {
            let mut full = vec!["topic", "trim-prefix"];
            full.extend_from_slice(args);
            parse(&full).map(|cli| match cli.command {
                Command::Topic(TopicCommand::TrimPrefix(args)) => args,
                other => panic!("parsed as {other:?}"),
            })
        };
        let args = trim(&["orders", "--offset", "-1"]).expect("valid");
        assert_eq!((args.name.as_str(), args.offset), ("orders", -1));
        assert_eq!(args.partitions, crate::bench::PartitionSelection::All);
        assert_eq!(args.target.retry_timeout_ms, 15_000);
        let args = trim(&["orders", "--offset", "42", "--partitions", "2,0"]).expect("valid");
        assert_eq!(args.offset, 42);
        assert_eq!(
            args.partitions,
            crate::bench::PartitionSelection::Only(vec![0, 2])
        );
        assert_eq!(
            trim(&["orders"]).expect_err("no offset").kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert!(trim(&["orders", "--offset", "-2"]).is_err());
        assert!(trim(&["orders", "--offset", "x"]).is_err());
        assert!(trim(&["--offset", "3"]).is_err(), "the topic is required");
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

/// Security of `chronikctl`'s Kafka connections (topic produce/consume, group, bench, …), with
/// librdkafka's names in a properties file (`-C`) and flags over it, like rpk's profiles.
#[derive(Debug, Clone, Default, Args)]
pub struct KafkaSecurityArgs {
    /// A librdkafka-style properties file (`bootstrap.servers`, `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`,
    /// `ssl.certificate.location`, `ssl.key.location`), e.g. the one `local up --security` prints.
    /// The flags below override it.
    #[arg(
        long,
        short = 'C',
        env = "CHRONIK_CLIENT_CONFIG",
        value_name = "PATH",
        global = true
    )]
    pub client_config: Option<std::path::PathBuf>,

    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (`security.protocol`). Default: SASL_SSL or
    /// SASL_PLAINTEXT when a SASL user is given (with or without --tls-ca), SSL with only --tls-ca,
    /// else PLAINTEXT.
    #[arg(long, env = "CHRONIK_SECURITY_PROTOCOL", value_name = "PROTOCOL", global = true,
          value_parser = |s: &str| s.parse::<chronik_wire::SecurityProtocol>())]
    pub security_protocol: Option<chronik_wire::SecurityProtocol>,

    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (`sasl.mechanism`; default SCRAM-SHA-512).
    #[arg(long, env = "CHRONIK_SASL_MECHANISM", value_name = "MECHANISM", global = true,
          value_parser = |s: &str| s.parse::<chronik_wire::SaslMechanism>())]
    pub sasl_mechanism: Option<chronik_wire::SaslMechanism>,

    /// The SASL user (`sasl.username`).
    #[arg(
        long,
        env = "CHRONIK_SASL_USERNAME",
        value_name = "USER",
        global = true
    )]
    pub sasl_username: Option<String>,

    /// The SASL password (`sasl.password`); prefer the environment variable, which `ps` does not show.
    #[arg(
        long,
        env = "CHRONIK_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub sasl_password: Option<String>,

    /// PEM bundle of the CAs the brokers' certificates chain to (`ssl.ca.location`).
    #[arg(long, env = "CHRONIK_KAFKA_TLS_CA", value_name = "PATH", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,

    /// PEM client certificate for mutual TLS (`ssl.certificate.location`).
    #[arg(
        long,
        env = "CHRONIK_KAFKA_TLS_CERT",
        value_name = "PATH",
        global = true
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert (`ssl.key.location`).
    #[arg(
        long,
        env = "CHRONIK_KAFKA_TLS_KEY",
        value_name = "PATH",
        global = true
    )]
    pub tls_key: Option<std::path::PathBuf>,
}

/// `chronikctl quota ...`
#[derive(Debug, Clone, Subcommand)]
pub enum QuotaCommand {
    /// Set an entity's quotas (through the controllers), e.g.
    /// `quota set --user alice producer_byte_rate=1048576 consumer_byte_rate=2097152`. Kafka's keys
    /// Chronik enforces: producer_byte_rate, consumer_byte_rate (bytes per second, whole numbers).
    Set(QuotaSetArgs),
    /// Remove some of an entity's quotas, e.g. `quota remove --client-id app producer_byte_rate`.
    Remove(QuotaRemoveArgs),
    /// List the quotas the brokers enforce (DescribeClientQuotas on a broker): every entity, or those
    /// of --user, --client-id or both.
    List(QuotaEntityArgs),
}

/// The entity of a `quota` command: a user, a client id, or both (`<default>` names a default).
#[derive(Debug, Clone, Args)]
pub struct QuotaEntityArgs {
    /// The user (the principal's name, e.g. alice for User:alice), or `<default>`.
    #[arg(long)]
    pub user: Option<String>,
    /// The client id, or `<default>`.
    #[arg(long)]
    pub client_id: Option<String>,
}

impl QuotaEntityArgs {
    pub fn entity(&self) -> crate::cmd::quota::EntityArgs {
        use crate::cmd::quota::EntityName;
        crate::cmd::quota::EntityArgs {
            user: self.user.as_deref().map(EntityName::parse),
            client_id: self.client_id.as_deref().map(EntityName::parse),
        }
    }
}

/// Arguments of `quota set`.
#[derive(Debug, Clone, Args)]
pub struct QuotaSetArgs {
    #[command(flatten)]
    pub entity: QuotaEntityArgs,
    /// KEY=VALUE, one or more.
    #[arg(required = true, value_parser = crate::cmd::quota::parse_quota)]
    pub quotas: Vec<(String, f64)>,
    /// Have the controller check the quotas without storing them.
    #[arg(long)]
    pub validate_only: bool,
}

/// Arguments of `quota remove`.
#[derive(Debug, Clone, Args)]
pub struct QuotaRemoveArgs {
    #[command(flatten)]
    pub entity: QuotaEntityArgs,
    /// The keys to remove, one or more.
    #[arg(required = true)]
    pub keys: Vec<String>,
}

/// `chronikctl user ...`
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Store a user's SCRAM credential for one mechanism (replacing one it has), through the
    /// controllers; works before any Kafka user exists. Without --password or --password-file a
    /// password is generated and printed once.
    Create(UserCreateArgs),
    /// List every SCRAM user and mechanism (DescribeUserScramCredentials on a broker).
    List,
    /// Delete a user's credential for --mechanism, or for every mechanism it has.
    Delete {
        /// The user name.
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, value_parser = parse_scram_mechanism)]
        mechanism: Option<chronik_metadata::scram::ScramMechanism>,
    },
}

/// Arguments of `user create`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("secret").args(["password", "password_file"])))]
pub struct UserCreateArgs {
    /// The user name (its principal is User:NAME).
    pub name: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "SCRAM-SHA-512", value_parser = parse_scram_mechanism)]
    pub mechanism: chronik_metadata::scram::ScramMechanism,
    /// The password (visible to `ps`; prefer --password-file).
    #[arg(long)]
    pub password: Option<String>,
    /// A file holding the password (one line; a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<std::path::PathBuf>,
    /// SCRAM iterations (4096..=16384, Kafka's bounds).
    #[arg(long, default_value_t = 8192)]
    pub iterations: i32,
}

fn parse_scram_mechanism(s: &str) -> Result<chronik_metadata::scram::ScramMechanism, String> {
    use chronik_metadata::scram::ScramMechanism;
    match s.trim().to_ascii_uppercase().as_str() {
        "SCRAM-SHA-256" => Ok(ScramMechanism::Sha256),
        "SCRAM-SHA-512" => Ok(ScramMechanism::Sha512),
        _ => Err(format!(
            "unknown SCRAM mechanism {s:?} (SCRAM-SHA-256 or SCRAM-SHA-512)"
        )),
    }
}
