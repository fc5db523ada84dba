//! The controller's configuration: one struct, every flag also from a `CHRONIK_*` environment variable,
//! validated once at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Chronik controller: one voter of the Raft quorum that owns the cluster metadata.
#[derive(Clone, Debug, Parser)]
#[command(name = "chronik-controller", version, about)]
pub struct ControllerConfig {
    /// This node's id; must appear in --quorum.
    #[arg(long, env = "CHRONIK_NODE_ID")]
    pub node_id: u64,

    /// Where the Raft log, vote and snapshots live.
    #[arg(long, env = "CHRONIK_DATA_DIR")]
    pub data_dir: PathBuf,

    /// gRPC listen address (Raft, broker and admin services).
    #[arg(long, env = "CHRONIK_LISTEN", default_value = "127.0.0.1:9093")]
    pub listen: SocketAddr,

    /// HTTP listen address (/healthz, /readyz, /metrics, /api/v1/cluster).
    #[arg(long, env = "CHRONIK_HTTP_LISTEN", default_value = "127.0.0.1:8093")]
    pub http_listen: SocketAddr,

    /// Every voter as id@host:port, comma separated: 1, 3 or 5 voters. The address is the one the other
    /// controllers, brokers and chronikctl reach that voter's gRPC listener at.
    #[arg(long, env = "CHRONIK_QUORUM")]
    pub quorum: String,

    /// How often brokers heartbeat.
    #[arg(
        long,
        env = "CHRONIK_BROKER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub broker_heartbeat_interval_ms: u64,

    /// A broker whose last heartbeat is older than this is fenced.
    #[arg(
        long,
        env = "CHRONIK_BROKER_SESSION_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub broker_session_timeout_ms: u64,

    /// A broker whose `BrokerSession` streams have all closed (its process died) and that has not
    /// reopened one within this many milliseconds is fenced without waiting for the session timeout.
    /// 0 turns the fast path off: only missed heartbeats fence.
    #[arg(long, env = "CHRONIK_BROKER_SESSION_GRACE_MS", default_value_t = 300)]
    pub broker_session_grace_ms: u64,

    /// How often the active controller moves leadership back to preferred replicas that are in sync.
    #[arg(
        long,
        env = "CHRONIK_LEADER_REBALANCE_INTERVAL_MS",
        default_value_t = 10000
    )]
    pub leader_rebalance_interval_ms: u64,

    /// Raft heartbeat interval between controllers.
    #[arg(long, env = "CHRONIK_RAFT_HEARTBEAT_MS", default_value_t = 200)]
    pub raft_heartbeat_ms: u64,

    /// Raft election timeout (a random value between this and twice this).
    #[arg(long, env = "CHRONIK_RAFT_ELECTION_TIMEOUT_MS", default_value_t = 600)]
    pub raft_election_timeout_ms: u64,

    /// Unsafe: end this controller's vote hold at start. A controller that started with an empty Raft
    /// log (a new disk, a lost data directory) refuses candidates that have a log, across restarts,
    /// until it has caught up with the other controllers, because its lost log may have held
    /// committed entries the candidate lacks. Only for a quorum that cannot elect a leader because
    /// the other complete copies of its log are gone for good; it accepts losing what only they held.
    #[arg(long, env = "CHRONIK_UNSAFE_SKIP_VOTE_HOLD")]
    pub unsafe_skip_vote_hold: bool,

    /// Log entries between snapshots; the log is compacted behind each snapshot.
    #[arg(long, env = "CHRONIK_SNAPSHOT_EVERY", default_value_t = 1000)]
    pub snapshot_every: u64,

    /// Cluster default written at bootstrap: replication factor of topics created without one.
    #[arg(long, env = "CHRONIK_DEFAULT_REPLICATION_FACTOR", default_value_t = 3)]
    pub default_replication_factor: u32,

    /// Cluster default written at bootstrap: partitions of topics created without a count.
    #[arg(long, env = "CHRONIK_DEFAULT_NUM_PARTITIONS", default_value_t = 1)]
    pub default_num_partitions: u32,

    /// Cluster default written at bootstrap: min.insync.replicas of topics that do not set it.
    #[arg(long, env = "CHRONIK_DEFAULT_MIN_INSYNC_REPLICAS", default_value_t = 2)]
    pub default_min_insync_replicas: u32,

    /// A feature level a new cluster is finalized at, as NAME=LEVEL (repeatable; KIP-584). Used once,
    /// when the quorum bootstraps the cluster; each feature otherwise starts at its default (see
    /// `docs/operations.md`, "Feature levels"), e.g. `--feature transaction.version=1` keeps the Java
    /// client on transaction protocol version 1.
    #[arg(long = "feature", env = "CHRONIK_FEATURES", value_delimiter = ',',
          value_parser = chronik_metadata::features::parse_level)]
    pub features: Vec<(String, i16)>,

    /// How this controller secures its gRPC and HTTP (TLS, client certificates, tokens).
    #[command(flatten)]
    pub security: SecurityArgs,

    /// How the web console at `/` reaches the brokers (docs/console.md).
    #[command(flatten)]
    pub console: ConsoleArgs,
}

/// The web console's Kafka connection and lag sampling (docs/console.md). The console finds the
/// brokers in the metadata: no bootstrap list is needed.
#[derive(Clone, Debug, clap::Args)]
pub struct ConsoleArgs {
    /// A librdkafka-style properties file for the console's Kafka connections (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`,
    /// `ssl.certificate.location`, `ssl.key.location`), as chronikctl's `-C` takes it.
    /// `bootstrap.servers` is ignored. Without it the console connects in PLAINTEXT.
    #[arg(long, env = "CHRONIK_CONSOLE_KAFKA_CONFIG", value_name = "PATH")]
    pub console_kafka_config: Option<PathBuf>,

    /// The brokers' listener the console connects to; default: each broker's first endpoint.
    #[arg(long, env = "CHRONIK_CONSOLE_KAFKA_LISTENER", value_name = "NAME")]
    pub console_kafka_listener: Option<String>,

    /// How often this controller samples high watermarks, disk usage and consumer group lag for
    /// its console; 0 turns sampling off (no lag history, no sizes on the topic list).
    #[arg(
        long,
        env = "CHRONIK_CONSOLE_SAMPLE_INTERVAL_MS",
        default_value_t = 5000
    )]
    pub console_sample_interval_ms: u64,

    /// Samples of lag kept per group partition (at the default interval, 360 is 30 minutes).
    #[arg(long, env = "CHRONIK_CONSOLE_LAG_HISTORY", default_value_t = 360)]
    pub console_lag_history: usize,

    /// How long one Kafka request of the console may take.
    #[arg(
        long,
        env = "CHRONIK_CONSOLE_REQUEST_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub console_request_timeout_ms: u64,
}

/// Whether callers must present a client certificate (Kafka's `ssl.client.auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// No client certificates are asked for; callers authenticate with tokens.
    #[default]
    None,
    /// A client certificate is asked for and verified against --tls-ca when presented; callers
    /// without one authenticate with a token.
    Requested,
    /// The gRPC handshake fails without a client certificate verified against --tls-ca.
    Required,
}

/// The control plane's security flags (docs/security.md, "Control plane"). Without any of them the
/// controller serves plaintext and open, as before, and warns once at start.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SecurityArgs {
    /// Certificate chain (PEM) of this controller, for its gRPC and HTTP listeners and as its client
    /// certificate towards the other controllers. Its names must include the host in --quorum.
    #[arg(
        long,
        env = "CHRONIK_TLS_CERTIFICATE",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_certificate: Option<PathBuf>,

    /// Private key (PEM) of --tls-certificate.
    #[arg(
        long,
        env = "CHRONIK_TLS_KEY",
        value_name = "PATH",
        requires = "tls_certificate"
    )]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that verifies the other controllers, and client certificates when
    /// --tls-client-auth is not none.
    #[arg(long, env = "CHRONIK_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificates: none, requested or required (mTLS). A caller whose certificate
    /// --tls-ca verifies is authenticated by it.
    #[arg(long, env = "CHRONIK_TLS_CLIENT_AUTH", value_enum, default_value_t = ClientAuth::None)]
    pub tls_client_auth: ClientAuth,

    /// File holding the admin token: chronikctl and operators (AdminService, /api/v1/cluster).
    #[arg(long, env = "CHRONIK_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,

    /// File holding the cluster token: brokers and the other controllers (RaftService,
    /// BrokerService, and AdminService for the admin requests brokers forward).
    #[arg(long, env = "CHRONIK_CLUSTER_TOKEN_FILE", value_name = "PATH")]
    pub cluster_token_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// Whether any security flag is set.
    pub fn any(&self) -> bool {
        self.tls_certificate.is_some()
            || self.tls_ca.is_some()
            || self.tls_client_auth != ClientAuth::None
            || self.admin_token_file.is_some()
            || self.cluster_token_file.is_some()
    }

    /// The rules between the flags; see `docs/security.md`.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_certificate.is_some() != self.tls_ca.is_some() {
            return Err(
                "--tls-certificate and --tls-ca go together: the CA verifies the other \
                controllers this one connects to"
                    .into(),
            );
        }
        if self.tls_client_auth != ClientAuth::None && self.tls_certificate.is_none() {
            return Err("--tls-client-auth needs --tls-certificate, --tls-key and --tls-ca".into());
        }
        let tokens = (
            self.admin_token_file.is_some(),
            self.cluster_token_file.is_some(),
        );
        if self.tls_client_auth == ClientAuth::None && tokens.0 != tokens.1 {
            return Err(
                "--admin-token-file and --cluster-token-file go together unless \
                --tls-client-auth authenticates callers by certificate: otherwise one kind of \
                caller could not authenticate at all"
                    .into(),
            );
        }
        Ok(())
    }
}

impl ControllerConfig {
    /// Parses `--quorum` into voter id → address and checks the whole configuration.
    pub fn voters(&self) -> Result<BTreeMap<u64, String>, String> {
        let voters = parse_quorum(&self.quorum)?;
        if !voters.contains_key(&self.node_id) {
            return Err(format!(
                "--node-id {} is not one of the --quorum voters ({})",
                self.node_id,
                voters
                    .keys()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            return Err(
                "--broker-session-timeout-ms must exceed --broker-heartbeat-interval-ms".into(),
            );
        }
        if self.broker_session_grace_ms >= self.broker_session_timeout_ms {
            return Err(
                "--broker-session-grace-ms must be below --broker-session-timeout-ms".into(),
            );
        }
        if self.raft_election_timeout_ms <= self.raft_heartbeat_ms {
            return Err("--raft-election-timeout-ms must exceed --raft-heartbeat-ms".into());
        }
        if self.default_replication_factor == 0 || self.default_num_partitions == 0 {
            return Err("default replication factor and partition count must be at least 1".into());
        }
        if self.default_min_insync_replicas == 0 {
            return Err("--default-min-insync-replicas must be at least 1".into());
        }
        self.security.validate()?;
        if self.console.console_lag_history == 0 {
            return Err("--console-lag-history must be at least 1".into());
        }
        if self.console.console_request_timeout_ms == 0 {
            return Err("--console-request-timeout-ms must be at least 1".into());
        }
        Ok(voters)
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_session_timeout_ms)
    }

    /// The session stream grace; `None` when the fast path is off.
    pub fn session_grace(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.broker_session_grace_ms)).filter(|g| !g.is_zero())
    }
}

/// Parses `1@host:port,2@host:port,...`: 1, 3 or 5 distinct voters.
pub fn parse_quorum(quorum: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut voters = BTreeMap::new();
    for entry in quorum.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| format!("quorum entry '{entry}' is not id@host:port"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("quorum entry '{entry}': '{id}' is not a node id"))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("quorum entry '{entry}': '{address}' has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!(
                "quorum entry '{entry}': '{address}' is not host:port"
            ));
        }
        if voters.insert(id, address.to_string()).is_some() {
            return Err(format!("node id {id} appears twice in the quorum"));
        }
    }
    match voters.len() {
        1 | 3 | 5 => Ok(voters),
        n => Err(format!("the quorum must have 1, 3 or 5 voters, got {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_flags_go_together_as_documented() {
        let base = [
            "chronik-controller",
            "--node-id",
            "1",
            "--data-dir",
            "/d",
            "--quorum",
            "1@h:1",
        ];
        let parse = |extra: &[&str]| {
            ControllerConfig::try_parse_from(base.iter().chain(extra))
                .map(|c| c.voters().map(|_| ()))
        };
        assert!(parse(&[]).unwrap().is_ok());
        let tls = ["--tls-certificate", "c", "--tls-key", "k", "--tls-ca", "ca"];
        assert!(parse(&tls).unwrap().is_ok());
        assert!(
            parse(&["--tls-certificate", "c"]).is_err(),
            "a key is required"
        );
        assert!(parse(&["--tls-certificate", "c", "--tls-key", "k"])
            .unwrap()
            .unwrap_err()
            .contains("--tls-ca"));
        assert!(parse(&["--tls-client-auth", "required"]).unwrap().is_err());
        assert!(parse(&["--admin-token-file", "a"]).unwrap().is_err());
        assert!(
            parse(&["--admin-token-file", "a", "--cluster-token-file", "c"])
                .unwrap()
                .is_ok()
        );
        let mut mtls_admin_only = tls.to_vec();
        mtls_admin_only.extend(["--tls-client-auth", "requested", "--admin-token-file", "a"]);
        assert!(parse(&mtls_admin_only).unwrap().is_ok());
    }

    #[test]
    fn quorum_parsing() {
        let voters = parse_quorum("1@127.0.0.1:9093, 7@host-b:9193,3@[::1]:9293").unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&7], "host-b:9193");
        assert_eq!(voters[&3], "[::1]:9293");
        for bad in [
            "",
            "1@a:1,2@b:2",
            "1@a:1,1@b:2,3@c:3",
            "x@a:1",
            "1@a",
            "1@a:notaport",
            "1:a:1",
        ] {
            assert!(parse_quorum(bad).is_err(), "{bad}");
        }
    }
}
