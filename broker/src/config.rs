//! `BrokerConfig`: every setting of the broker process, from flags or `CHRONIK_…` environment variables
//! (clap reads both; nothing else in the broker reads the environment). Addresses are parsed into typed
//! values by clap; `validate` checks what no single flag can (e.g. an advertised listener is required when
//! the Kafka listener binds a wildcard address) and runs once, before anything starts.
//!
//! Kafka listeners come in two forms that resolve to the same list of `KafkaListener`s: the single
//! `--listen`/`--advertised-listener` pair (one listener named PLAINTEXT), or Kafka's named form
//! `--listeners NAME://IP:PORT,...` with `--advertised-listeners NAME://HOST:PORT,...` and
//! `--inter-broker-listener-name`, e.g. one listener for other containers and one for the host. A client
//! is always told the addresses of the listener it connected to; followers reach leaders through the
//! inter-broker listener.
//!
//! Each listener speaks a security protocol (`--listener-security-protocol-map`, Kafka's
//! `listener.security.protocol.map`): PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. As in Kafka a
//! listener named after a protocol speaks it unless mapped otherwise; unlike Kafka, which refuses a
//! listener without a mapping, any other unmapped name (INTERNAL, EXTERNAL…) is PLAINTEXT, so
//! configurations from before security existed keep working. TLS and SASL settings are in
//! `ListenerSecurityArgs` and apply to every listener of the protocol.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chronik_control_auth::{ClientCredentials, ClientFiles};
use chronik_metadata::{BrokerId, Endpoint};
use clap::Parser;

use crate::error::BrokerError;
use crate::security::{ClientAuth, SaslMechanism, SecurityProtocol};

/// The name of the listener `--listen` makes, and the default inter-broker listener.
pub const PLAINTEXT_LISTENER: &str = "PLAINTEXT";

/// A `host:port` pair where the host may be a name, an IPv4 address or a bracketed IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' is not HOST:PORT"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| format!("'{s}': unbalanced '[' in the host"))?,
            None if host.contains(':') => {
                return Err(format!(
                    "'{s}': write IPv6 hosts in brackets, e.g. [::1]:9092"
                ))
            }
            None => host,
        };
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(format!("'{s}': missing or malformed host"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("'{s}': port must be a number from 0 to 65535"))?;
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(address: SocketAddr) -> Self {
        HostPort {
            host: address.ip().to_string(),
            port: address.port(),
        }
    }
}

/// `NAME://ADDRESS`, Kafka's listener syntax: a listener name (letters, digits and `_`, kept in upper
/// case as Kafka normalises it) and an address, `SocketAddr` for a bind address or `HostPort` for an
/// advertised one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedAddress<A> {
    pub name: String,
    pub address: A,
}

impl<A> FromStr for NamedAddress<A>
where
    A: FromStr,
    A::Err: fmt::Display,
{
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, address) = s.split_once("://").ok_or_else(|| {
            format!("'{s}' is not NAME://HOST:PORT (e.g. INTERNAL://0.0.0.0:9092)")
        })?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "'{s}': a listener name is letters, digits and '_', got '{name}'"
            ));
        }
        let address = address.parse::<A>().map_err(|e| format!("'{s}': {e}"))?;
        Ok(NamedAddress {
            name: name.to_ascii_uppercase(),
            address,
        })
    }
}

impl<A: fmt::Display> fmt::Display for NamedAddress<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.name, self.address)
    }
}

/// An address a listener binds: an IP and a port (`BindAddress` only parses with a clearer error than
/// `SocketAddr`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddress(pub SocketAddr);

impl FromStr for BindAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<SocketAddr>().map(BindAddress).map_err(|_| {
            format!("a bind address is IP:PORT (e.g. 0.0.0.0:9092 or [::]:9092), got '{s}'")
        })
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One Kafka listener of this broker, resolved from either form of the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaListener {
    /// The name its endpoint is registered under.
    pub name: String,
    /// The address it binds.
    pub bind: SocketAddr,
    /// The address clients of this listener are told; `None` advertises the bound address.
    pub advertised: Option<HostPort>,
    /// What the listener speaks (`--listener-security-protocol-map`).
    pub security_protocol: SecurityProtocol,
}

impl KafkaListener {
    /// The endpoint registered for this listener once it is bound to `bound` (which carries the port
    /// the OS picked for port 0).
    pub fn endpoint(&self, bound: SocketAddr) -> Endpoint {
        let address = self
            .advertised
            .clone()
            .unwrap_or_else(|| HostPort::from(bound));
        Endpoint {
            name: self.name.clone(),
            host: address.host,
            port: address.port,
        }
    }
}

/// A Chronik broker: registers with the controller quorum, follows its metadata and (in a later
/// release) serves the Kafka protocol.
#[derive(Clone, Debug, Parser)]
#[command(name = "chronik-broker", version, about)]
pub struct BrokerConfig {
    /// This broker's id; unique in the cluster and stable across restarts.
    #[arg(long, env = "CHRONIK_BROKER_ID", allow_negative_numbers = true)]
    pub broker_id: BrokerId,

    /// Directory for the broker's partition logs (created if missing).
    #[arg(long, env = "CHRONIK_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Address the Kafka listener binds (IP:PORT), a listener named PLAINTEXT. For several listeners
    /// use --listeners instead.
    #[arg(
        long,
        env = "CHRONIK_LISTEN",
        default_value = "127.0.0.1:9092",
        conflicts_with = "listeners"
    )]
    pub listen: SocketAddr,

    /// Address clients are told to connect to (HOST:PORT); defaults to --listen, and is required when
    /// --listen binds 0.0.0.0 or [::].
    #[arg(
        long,
        env = "CHRONIK_ADVERTISED_LISTENER",
        conflicts_with_all = ["listeners", "advertised_listeners"]
    )]
    pub advertised_listener: Option<HostPort>,

    /// Named Kafka listeners, NAME://IP:PORT,... (e.g. INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092);
    /// replaces --listen. Clients are answered with the addresses of the listener they connected to.
    #[arg(
        long,
        env = "CHRONIK_LISTENERS",
        value_delimiter = ',',
        num_args = 1..,
        value_name = "NAME://IP:PORT,..."
    )]
    pub listeners: Vec<NamedAddress<BindAddress>>,

    /// Addresses clients of each named listener are told, NAME://HOST:PORT,...; a listener left out
    /// advertises its bind address (which must then not be 0.0.0.0 or [::]).
    #[arg(
        long,
        env = "CHRONIK_ADVERTISED_LISTENERS",
        value_delimiter = ',',
        num_args = 1..,
        value_name = "NAME://HOST:PORT,...",
        requires = "listeners"
    )]
    pub advertised_listeners: Vec<NamedAddress<HostPort>>,

    /// The listener followers use to fetch from leaders; defaults to the only listener, or PLAINTEXT.
    #[arg(long, env = "CHRONIK_INTER_BROKER_LISTENER_NAME", value_name = "NAME")]
    pub inter_broker_listener_name: Option<String>,

    /// Address of the HTTP endpoint for /healthz, /readyz and /metrics (IP:PORT; port 0 picks one).
    #[arg(long, env = "CHRONIK_HTTP_LISTEN", default_value = "127.0.0.1:8092")]
    pub http_listen: SocketAddr,

    /// Controller quorum addresses (HOST:PORT,...); any subset reaches the active controller.
    #[arg(
        long,
        env = "CHRONIK_CONTROLLERS",
        value_delimiter = ',',
        required = true,
        num_args = 1..
    )]
    pub controllers: Vec<HostPort>,

    /// Rack of this broker, used by the controller to spread replicas.
    #[arg(long, env = "CHRONIK_RACK")]
    pub rack: Option<String>,

    /// How long a graceful shutdown waits for the controller to move this broker's leaderships away.
    #[arg(
        long,
        env = "CHRONIK_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub controlled_shutdown_timeout_ms: u64,

    /// Timeout of one request to a controller; a paused controller costs at most this much per try.
    #[arg(
        long,
        env = "CHRONIK_CONTROLLER_REQUEST_TIMEOUT_MS",
        default_value_t = 3_000
    )]
    pub controller_request_timeout_ms: u64,

    /// TLS and the cluster token towards the controllers.
    #[command(flatten)]
    pub controller_security: ControllerSecurityArgs,

    /// Create unknown topics named in Metadata and Produce requests (with the cluster defaults), as
    /// Kafka's `auto.create.topics.enable`.
    #[arg(
        long,
        env = "CHRONIK_AUTO_CREATE_TOPICS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub auto_create_topics: bool,

    /// Before the first transactional batch of a producer's transaction is appended to a partition,
    /// ask the transaction coordinator whether the partition is in that transaction (KIP-890 part 1;
    /// Kafka's `transaction.partition.verification.enable`). Produce v12 (transaction version 2) has
    /// the coordinator add the partition whatever this says.
    #[arg(
        long,
        env = "CHRONIK_TRANSACTION_PARTITION_VERIFICATION_ENABLE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub transaction_partition_verification_enable: bool,

    /// The authorizer every request is checked by (Kafka's `authorizer.class.name`): `standard`,
    /// Kafka's StandardAuthorizer over the ACLs in the metadata log (KIP-801). Without one nothing is
    /// checked and CreateAcls, DescribeAcls and DeleteAcls answer SECURITY_DISABLED.
    #[arg(long, env = "CHRONIK_AUTHORIZER", value_name = "NAME", value_parser = [crate::authorizer::STANDARD])]
    pub authorizer: Option<String>,

    /// Principals the authorizer allows everything, `User:a;User:b` (Kafka's `super.users`).
    #[arg(
        long,
        env = "CHRONIK_SUPER_USERS",
        value_delimiter = ';',
        value_name = "TYPE:NAME;...",
        requires = "authorizer"
    )]
    pub super_users: Vec<String>,

    /// Let the authorizer allow an operation on a resource no ACL applies to (Kafka's
    /// `allow.everyone.if.no.acl.found`); without it such operations are denied.
    #[arg(
        long,
        env = "CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        requires = "authorizer"
    )]
    pub allow_everyone_if_no_acl_found: bool,

    /// A follower that has not caught up with the leader for this long leaves the ISR (Kafka's
    /// `replica.lag.time.max.ms`).
    #[arg(
        long,
        env = "CHRONIK_REPLICA_LAG_TIME_MAX_MS",
        default_value_t = 30_000
    )]
    pub replica_lag_time_max_ms: u64,

    /// An ISR member that has sent its leader no fetch at all for this long is asked to leave the ISR,
    /// whatever its lag (a stopped or cut-off follower otherwise stalls acks=all writes for
    /// `--replica-lag-time-max-ms`). Followers long-poll for at most 500 ms, so a healthy one is
    /// never silent that long; must be more than 500. A member the leader has not heard from since
    /// it started (not following yet) leaves only by the lag time.
    #[arg(long, env = "CHRONIK_REPLICA_FETCH_STALL_MS", default_value_t = 1_000)]
    pub replica_fetch_stall_ms: u64,

    /// Fetch sessions (KIP-227) this broker caches for followers and consumers; a full fetch finding
    /// no free slot may evict a less valuable session, else it is answered without one. 0 turns
    /// sessions off (Kafka's `max.incremental.fetch.session.cache.slots`).
    #[arg(
        long,
        env = "CHRONIK_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS",
        default_value_t = DEFAULT_FETCH_SESSION_CACHE_SLOTS
    )]
    pub max_incremental_fetch_session_cache_slots: usize,

    /// Samples a client's byte rate is measured over, for client quotas (Kafka's
    /// `quota.window.num`).
    #[arg(
        long,
        env = "CHRONIK_QUOTA_WINDOW_NUM",
        default_value_t = crate::quota::DEFAULT_WINDOW_NUM
    )]
    pub quota_window_num: usize,

    /// Seconds each of those samples covers (Kafka's `quota.window.size.seconds`).
    #[arg(
        long,
        env = "CHRONIK_QUOTA_WINDOW_SIZE_SECONDS",
        default_value_t = crate::quota::DEFAULT_WINDOW_SECONDS
    )]
    pub quota_window_size_seconds: u64,

    /// How often segments past `retention.ms`/`retention.bytes` are deleted (Kafka's
    /// `log.retention.check.interval.ms`).
    #[arg(
        long,
        env = "CHRONIK_LOG_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub log_retention_check_interval_ms: u64,

    #[command(flatten)]
    pub group: GroupArgs,

    #[command(flatten)]
    pub txn: TxnArgs,

    #[command(flatten)]
    pub security: ListenerSecurityArgs,

    /// Largest Kafka request frame accepted; larger ones are refused before they are read.
    #[arg(long, env = "CHRONIK_MAX_REQUEST_BYTES", default_value_t = 104_857_600)]
    pub max_request_bytes: u32,

    /// Whether `/metrics` has series per partition (log end offset, high watermark, size, segments);
    /// turn off on brokers with very many partitions to bound the series count. Totals stay.
    #[arg(
        long,
        env = "CHRONIK_PARTITION_METRICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub partition_metrics: bool,

    /// How many request frames one connection may read ahead of the one being handled.
    #[arg(
        long,
        env = "CHRONIK_MAX_INFLIGHT_PER_CONNECTION",
        default_value_t = 128
    )]
    pub max_inflight_per_connection: usize,

    #[command(flatten)]
    pub inter_broker: InterBrokerSecurityArgs,
}

/// The listener's advertised address must be one clients can connect to; without one, its bind address
/// is advertised and must not be a wildcard.
fn check_advertised(listener: &KafkaListener, flag: &str, remedy: &str) -> Result<(), BrokerError> {
    let invalid = |message: String| Err(BrokerError::Config(message));
    match &listener.advertised {
        None if listener.bind.ip().is_unspecified() => invalid(format!(
            "{flag} {} binds every interface; give {remedy} so clients know where to connect",
            listener.bind
        )),
        Some(advertised) if advertised.port == 0 => invalid(format!(
            "advertised listener {} {advertised}: port 0",
            listener.name
        )),
        Some(advertised)
            if advertised
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified()) =>
        {
            invalid(format!(
                "advertised listener {} {advertised}: clients cannot connect to a wildcard address",
                listener.name
            ))
        }
        _ => Ok(()),
    }
}

fn names<A>(listeners: &[NamedAddress<A>]) -> String {
    listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const DEFAULT_FETCH_SESSION_CACHE_SLOTS: usize = 1000;

/// The longest a follower's fetch waits at its leader (its long poll), in milliseconds; a healthy
/// follower is never silent at its leader much longer, which bounds `--replica-fetch-stall-ms`.
pub const FOLLOWER_FETCH_MAX_WAIT_MS: u64 = 500;

/// The broker's credentials towards the controllers (docs/security.md, "Control plane").
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ControllerSecurityArgs {
    /// CA bundle (PEM) that verifies the controllers' certificates; turns TLS on towards them.
    #[arg(long, env = "CHRONIK_CONTROLLER_TLS_CA", value_name = "PATH")]
    pub controller_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) presented to the controllers (mTLS); needs --controller-tls-key.
    #[arg(
        long,
        alias = "controller-tls-cert",
        env = "CHRONIK_CONTROLLER_TLS_CERTIFICATE",
        value_name = "PATH",
        requires = "controller_tls_key"
    )]
    pub controller_tls_certificate: Option<PathBuf>,

    /// Private key (PEM) of --controller-tls-certificate.
    #[arg(
        long,
        env = "CHRONIK_CONTROLLER_TLS_KEY",
        value_name = "PATH",
        requires = "controller_tls_certificate"
    )]
    pub controller_tls_key: Option<PathBuf>,

    /// File holding the cluster token (the controllers' --cluster-token-file), sent with every call.
    #[arg(long, env = "CHRONIK_CONTROLLER_TOKEN_FILE", value_name = "PATH")]
    pub controller_token_file: Option<PathBuf>,
}

impl ControllerSecurityArgs {
    /// Reads the files; an unreadable or invalid one stops the start.
    pub fn load(&self) -> Result<ClientCredentials, BrokerError> {
        let files = ClientFiles {
            ca: self.controller_tls_ca.clone(),
            certificate: self.controller_tls_certificate.clone(),
            key: self.controller_tls_key.clone(),
            token: self.controller_token_file.clone(),
        };
        ClientCredentials::load(&files, "--controller-token-file")
            .map_err(|e| BrokerError::Config(e.to_string()))
    }
}

impl BrokerConfig {
    /// How client quotas sample rates.
    pub fn quota_windows(&self) -> crate::quota::QuotaWindows {
        crate::quota::QuotaWindows {
            samples: self.quota_window_num,
            window: std::time::Duration::from_secs(self.quota_window_size_seconds),
        }
    }

    /// Checks the settings together. Called once at start, before anything binds or connects.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let invalid = |message: String| Err(BrokerError::Config(message));
        if self.broker_id < 0 {
            return invalid(format!(
                "--broker-id must be 0 or more, got {}",
                self.broker_id
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("--data-dir must not be empty".into());
        }
        let listeners = self.kafka_listeners()?;
        self.inter_broker_listener()?;
        self.security.validate(&listeners)?;
        if self.controllers.is_empty() {
            return invalid("--controllers needs at least one HOST:PORT".into());
        }
        if let Some(controller) = self.controllers.iter().find(|c| c.port == 0) {
            return invalid(format!("--controllers: {controller} has port 0"));
        }
        if self.rack.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return invalid("--rack must not be empty when given".into());
        }
        if self.controlled_shutdown_timeout_ms == 0 {
            return invalid("--controlled-shutdown-timeout-ms must be more than 0".into());
        }
        if self.quota_window_num < 2 || self.quota_window_size_seconds == 0 {
            return invalid(
                "--quota-window-num must be 2 or more and --quota-window-size-seconds more than 0"
                    .into(),
            );
        }
        if self.controller_request_timeout_ms == 0 {
            return invalid("--controller-request-timeout-ms must be more than 0".into());
        }
        if self.replica_fetch_stall_ms <= FOLLOWER_FETCH_MAX_WAIT_MS {
            return invalid(format!(
                "--replica-fetch-stall-ms must be more than the followers' fetch wait ({} ms), got {}",
                FOLLOWER_FETCH_MAX_WAIT_MS,
                self.replica_fetch_stall_ms
            ));
        }
        if self.log_retention_check_interval_ms == 0 {
            return invalid("--log-retention-check-interval-ms must be more than 0".into());
        }
        let consumer_groups = &self.group;
        if u64::try_from(consumer_groups.group_consumer_heartbeat_interval_ms).unwrap_or(0)
            >= consumer_groups.group_consumer_session_timeout_ms
        {
            return invalid(format!(
                "--group-consumer-heartbeat-interval-ms ({}) must be less than \
                 --group-consumer-session-timeout-ms ({})",
                consumer_groups.group_consumer_heartbeat_interval_ms,
                consumer_groups.group_consumer_session_timeout_ms
            ));
        }
        if let Some(user) = self.super_users.iter().find(|u| {
            !u.split_once(':')
                .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
        }) {
            return invalid(format!(
                "--super-users: '{user}' is not a principal of the form Type:name (e.g. User:admin)"
            ));
        }
        Ok(())
    }

    /// The authorizer `--authorizer` asks for, with its settings; `None` when requests go unchecked.
    pub fn authorizer(&self) -> Option<crate::authorizer::Authorizer> {
        self.authorizer
            .as_ref()
            .map(|_| crate::authorizer::Authorizer {
                super_users: self
                    .super_users
                    .iter()
                    .map(|u| u.trim().to_owned())
                    .collect(),
                allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
            })
    }

    /// The Kafka listeners to bind, from `--listeners`/`--advertised-listeners` or from the single
    /// `--listen`/`--advertised-listener` pair, checked together.
    pub fn kafka_listeners(&self) -> Result<Vec<KafkaListener>, BrokerError> {
        if self.listeners.is_empty() {
            let listener = KafkaListener {
                name: PLAINTEXT_LISTENER.to_owned(),
                bind: self.listen,
                advertised: self.advertised_listener.clone(),
                security_protocol: self.security.protocol_of(PLAINTEXT_LISTENER)?,
            };
            check_advertised(&listener, "--listen", "--advertised-listener HOST:PORT")?;
            self.security.check_mapped_names(&[PLAINTEXT_LISTENER])?;
            return Ok(vec![listener]);
        }
        let invalid = |message: String| Err(BrokerError::Config(message));
        let mut listeners: Vec<KafkaListener> = Vec::with_capacity(self.listeners.len());
        for NamedAddress { name, address } in &self.listeners {
            if listeners.iter().any(|l| &l.name == name) {
                return invalid(format!("--listeners names {name} twice"));
            }
            if let Some(other) = listeners
                .iter()
                .find(|l| address.0.port() != 0 && l.bind == address.0)
            {
                return invalid(format!(
                    "--listeners: {name} and {} both bind {}",
                    other.name, address
                ));
            }
            listeners.push(KafkaListener {
                name: name.clone(),
                bind: address.0,
                advertised: None,
                security_protocol: self.security.protocol_of(name)?,
            });
        }
        for NamedAddress { name, address } in &self.advertised_listeners {
            let Some(listener) = listeners.iter_mut().find(|l| &l.name == name) else {
                return invalid(format!(
                    "--advertised-listeners names {name}, which is not in --listeners ({})",
                    names(&self.listeners)
                ));
            };
            if listener.advertised.is_some() {
                return invalid(format!("--advertised-listeners names {name} twice"));
            }
            listener.advertised = Some(address.clone());
        }
        for listener in &listeners {
            check_advertised(
                listener,
                &format!("--listeners {}", listener.name),
                &format!("{}://HOST:PORT in --advertised-listeners", listener.name),
            )?;
        }
        let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        self.security.check_mapped_names(&names)?;
        Ok(listeners)
    }

    /// The name of the listener followers fetch from leaders through: `--inter-broker-listener-name`,
    /// else the only listener, else PLAINTEXT.
    pub fn inter_broker_listener(&self) -> Result<String, BrokerError> {
        let listeners = self.kafka_listeners()?;
        let listed = || {
            listeners
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let has = |name: &str| listeners.iter().any(|l| l.name == name);
        match &self.inter_broker_listener_name {
            Some(name) => {
                let name = name.trim().to_ascii_uppercase();
                if has(&name) {
                    Ok(name)
                } else {
                    Err(BrokerError::Config(format!(
                        "--inter-broker-listener-name {name} is not one of the listeners ({})",
                        listed()
                    )))
                }
            }
            None if listeners.len() == 1 => Ok(listeners[0].name.clone()),
            None if has(PLAINTEXT_LISTENER) => Ok(PLAINTEXT_LISTENER.to_owned()),
            None => Err(BrokerError::Config(format!(
                "several listeners ({}) and none is PLAINTEXT: give --inter-broker-listener-name",
                listed()
            ))),
        }
    }

    /// The controller addresses, without duplicates, in the given order.
    pub fn controller_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = Vec::with_capacity(self.controllers.len());
        for controller in &self.controllers {
            let address = controller.to_string();
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        addresses
    }

    pub fn controlled_shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.controlled_shutdown_timeout_ms)
    }

    pub fn controller_request_timeout(&self) -> Duration {
        Duration::from_millis(self.controller_request_timeout_ms)
    }
}

/// Coordinator settings, from the broker's flags (Kafka's names in the doc lines).
#[derive(Clone, Debug, clap::Args)]
pub struct GroupArgs {
    /// Partitions of the offsets topic when this broker creates it (`offsets.topic.num.partitions`).
    #[arg(long, env = "CHRONIK_OFFSETS_TOPIC_NUM_PARTITIONS", default_value_t = 50,
        value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub offsets_topic_num_partitions: i32,

    /// Replication factor of the offsets topic, capped at the live brokers when it is created
    /// (`offsets.topic.replication.factor`).
    #[arg(long, env = "CHRONIK_OFFSETS_TOPIC_REPLICATION_FACTOR", default_value_t = 3,
        value_parser = clap::value_parser!(i32).range(1..=16))]
    pub offsets_topic_replication_factor: i32,

    /// How long a new group waits for more members before its first rebalance completes
    /// (`group.initial.rebalance.delay.ms`).
    #[arg(
        long,
        env = "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    #[arg(
        long,
        env = "CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub group_min_session_timeout_ms: i32,

    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    #[arg(
        long,
        env = "CHRONIK_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: i32,

    /// How long an offset commit or group write waits for the offsets topic's in-sync replicas
    /// (`offsets.commit.timeout.ms`).
    #[arg(
        long,
        env = "CHRONIK_OFFSETS_COMMIT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub offsets_commit_timeout_ms: u64,

    /// How long the committed offsets of a group without members are kept
    /// (`offsets.retention.minutes`).
    #[arg(long, env = "CHRONIK_OFFSETS_RETENTION_MINUTES", default_value_t = 10_080,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub offsets_retention_minutes: u64,

    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    #[arg(long, env = "CHRONIK_OFFSETS_RETENTION_CHECK_INTERVAL_MS", default_value_t = 600_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub offsets_retention_check_interval_ms: u64,

    /// How long a member of a consumer-protocol group (KIP-848) stays without a heartbeat before it
    /// is removed (`group.consumer.session.timeout.ms`).
    #[arg(long, env = "CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS", default_value_t = 45_000,
        value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub group_consumer_session_timeout_ms: u64,

    /// How often members of a consumer-protocol group heartbeat; it bounds how fast a rebalance
    /// moves partitions (`group.consumer.heartbeat.interval.ms`).
    #[arg(long, env = "CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", default_value_t = 5_000,
        value_parser = clap::value_parser!(i32).range(1..=3_600_000))]
    pub group_consumer_heartbeat_interval_ms: i32,

    /// Most members of a consumer-protocol group (`group.consumer.max.size`).
    #[arg(long, env = "CHRONIK_GROUP_CONSUMER_MAX_SIZE", default_value_t = i32::MAX as u64,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub group_consumer_max_size: u64,
}

/// Transaction coordinator settings, from the broker's flags (Kafka's names in the doc lines).
#[derive(Clone, Debug, clap::Args)]
pub struct TxnArgs {
    /// Partitions of the transaction state topic when this broker creates it
    /// (`transaction.state.log.num.partitions`).
    #[arg(long, env = "CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS", default_value_t = 50,
        value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub transaction_state_log_num_partitions: i32,

    /// Replication factor of the transaction state topic, capped at the live brokers when it is
    /// created (`transaction.state.log.replication.factor`).
    #[arg(long, env = "CHRONIK_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", default_value_t = 3,
        value_parser = clap::value_parser!(i32).range(1..=16))]
    pub transaction_state_log_replication_factor: i32,

    /// `min.insync.replicas` of the transaction state topic, capped at its replication factor
    /// (`transaction.state.log.min.isr`).
    #[arg(long, env = "CHRONIK_TRANSACTION_STATE_LOG_MIN_ISR", default_value_t = 2,
        value_parser = clap::value_parser!(i32).range(1..=16))]
    pub transaction_state_log_min_isr: i32,

    /// Longest transaction timeout a producer may ask for (`transaction.max.timeout.ms`).
    #[arg(long, env = "CHRONIK_TRANSACTION_MAX_TIMEOUT_MS", default_value_t = 900_000,
        value_parser = clap::value_parser!(i32).range(1..))]
    pub transaction_max_timeout_ms: i32,

    /// How often transactions open past their timeout are looked for and aborted
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    #[arg(long, env = "CHRONIK_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
        default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,

    /// How long a transactional id with no transaction open is kept after its last use
    /// (`transactional.id.expiration.ms`).
    #[arg(long, env = "CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS", default_value_t = 604_800_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub transactional_id_expiration_ms: u64,
}

/// Security of the Kafka listeners (Kafka's names in the doc lines; `docs/security.md`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ListenerSecurityArgs {
    /// Security protocol of each listener, NAME:PROTOCOL,... with PLAINTEXT, SSL, SASL_PLAINTEXT or
    /// SASL_SSL (`listener.security.protocol.map`). A listener named after a protocol speaks it; other
    /// unmapped names are PLAINTEXT.
    #[arg(
        long,
        env = "CHRONIK_LISTENER_SECURITY_PROTOCOL_MAP",
        value_delimiter = ',',
        num_args = 1..,
        value_name = "NAME:PROTOCOL,..."
    )]
    pub listener_security_protocol_map: Vec<String>,

    /// PEM file with the certificate chain of SSL and SASL_SSL listeners, the broker's own certificate
    /// first (`ssl.keystore.location`).
    #[arg(long, env = "CHRONIK_SSL_CERTIFICATE", value_name = "PATH")]
    pub ssl_certificate: Option<PathBuf>,

    /// PEM file with the private key of --ssl-certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CHRONIK_SSL_KEY", value_name = "PATH")]
    pub ssl_key: Option<PathBuf>,

    /// PEM bundle of the CAs client certificates must chain to (`ssl.truststore.location`).
    #[arg(long, env = "CHRONIK_SSL_CA", value_name = "PATH")]
    pub ssl_ca: Option<PathBuf>,

    /// Whether SSL listeners ask clients for a certificate (`ssl.client.auth`): none, requested (a
    /// client without one is User:ANONYMOUS) or required. SASL_SSL listeners never ask, as in Kafka.
    #[arg(long, env = "CHRONIK_SSL_CLIENT_AUTH", value_enum, default_value_t = ClientAuth::None)]
    pub ssl_client_auth: ClientAuth,

    /// How a client certificate's subject (RFC 2253, e.g. CN=alice,OU=eng,O=acme) becomes a principal
    /// name (`ssl.principal.mapping.rules`): RULE:pattern/replacement/[LU],...,DEFAULT.
    #[arg(
        long,
        env = "CHRONIK_SSL_PRINCIPAL_MAPPING_RULES",
        default_value = "DEFAULT",
        value_name = "RULES"
    )]
    pub ssl_principal_mapping_rules: String,

    /// SASL mechanisms of SASL listeners (`sasl.enabled.mechanisms`): SCRAM-SHA-256, SCRAM-SHA-512,
    /// PLAIN. PLAIN sends the password itself; enable it only with TLS.
    #[arg(
        long,
        env = "CHRONIK_SASL_ENABLED_MECHANISMS",
        value_delimiter = ',',
        num_args = 1..,
        default_value = "SCRAM-SHA-256,SCRAM-SHA-512",
        value_parser = parse_mechanism,
        value_name = "MECHANISM,..."
    )]
    pub sasl_enabled_mechanisms: Vec<SaslMechanism>,

    /// Longest an authenticated SASL session lasts before the client must re-authenticate (KIP-368,
    /// `connections.max.reauth.ms`); 0: sessions never expire.
    #[arg(long, env = "CHRONIK_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,
}

fn parse_mechanism(s: &str) -> Result<SaslMechanism, String> {
    SaslMechanism::from_name(s.trim()).ok_or_else(|| {
        format!("unknown SASL mechanism '{s}' (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)")
    })
}

impl ListenerSecurityArgs {
    /// The `(name, protocol)` pairs of the map, names upper-cased as listener names are.
    fn mapping(&self) -> Result<Vec<(String, SecurityProtocol)>, BrokerError> {
        let mut pairs: Vec<(String, SecurityProtocol)> = Vec::new();
        for entry in &self.listener_security_protocol_map {
            let (name, protocol) = entry.trim().split_once(':').ok_or_else(|| {
                BrokerError::Config(format!(
                    "--listener-security-protocol-map: '{entry}' is not NAME:PROTOCOL (e.g. EXTERNAL:SASL_SSL)"
                ))
            })?;
            let name = name.trim().to_ascii_uppercase();
            let protocol = protocol.parse::<SecurityProtocol>().map_err(|e| {
                BrokerError::Config(format!("--listener-security-protocol-map: {e}"))
            })?;
            if name.is_empty() {
                return Err(BrokerError::Config(format!(
                    "--listener-security-protocol-map: '{entry}' has no listener name"
                )));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(BrokerError::Config(format!(
                    "--listener-security-protocol-map names {name} twice"
                )));
            }
            pairs.push((name, protocol));
        }
        Ok(pairs)
    }

    /// The protocol of the listener `name`: mapped, else the protocol it is named after, else
    /// PLAINTEXT.
    pub fn protocol_of(&self, name: &str) -> Result<SecurityProtocol, BrokerError> {
        Ok(self
            .mapping()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .or_else(|| name.parse().ok())
            .unwrap_or(SecurityProtocol::Plaintext))
    }

    /// Every name the map gives must be a listener (a typo would otherwise leave one unsecured).
    fn check_mapped_names(&self, listeners: &[&str]) -> Result<(), BrokerError> {
        for (name, _) in self.mapping()? {
            if !listeners.contains(&name.as_str()) {
                return Err(BrokerError::Config(format!(
                    "--listener-security-protocol-map names {name}, which is not a listener ({})",
                    listeners.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// What the listeners' protocols need: TLS files for SSL and SASL_SSL, a CA for client
    /// authentication, mechanisms for SASL, valid mapping rules.
    fn validate(&self, listeners: &[KafkaListener]) -> Result<(), BrokerError> {
        let invalid = |message: String| Err(BrokerError::Config(message));
        crate::security::principal::SslPrincipalMapper::parse(&self.ssl_principal_mapping_rules)
            .map_err(|e| BrokerError::Config(format!("--ssl-principal-mapping-rules: {e}")))?;
        if let Some(tls) = listeners.iter().find(|l| l.security_protocol.uses_tls()) {
            if self.ssl_certificate.is_none() || self.ssl_key.is_none() {
                return invalid(format!(
                    "listener {} is {}: give --ssl-certificate and --ssl-key (PEM files)",
                    tls.name, tls.security_protocol
                ));
            }
            if self.ssl_client_auth != ClientAuth::None && self.ssl_ca.is_none() {
                return invalid(
                    "--ssl-client-auth requested|required needs --ssl-ca (the CAs of client certificates)"
                        .into(),
                );
            }
        }
        if let Some(sasl) = listeners.iter().find(|l| l.security_protocol.uses_sasl()) {
            if self.sasl_enabled_mechanisms.is_empty() {
                return invalid(format!(
                    "listener {} is {}: --sasl-enabled-mechanisms needs at least one mechanism",
                    sasl.name, sasl.security_protocol
                ));
            }
        }
        Ok(())
    }

    /// The SASL settings of SASL listeners, mechanisms deduplicated in the given order.
    pub fn sasl_settings(&self) -> crate::security::SaslSettings {
        let mut mechanisms = Vec::new();
        for m in &self.sasl_enabled_mechanisms {
            if !mechanisms.contains(m) {
                mechanisms.push(*m);
            }
        }
        crate::security::SaslSettings {
            mechanisms,
            max_reauth_ms: self.connections_max_reauth_ms,
        }
    }

    /// The TLS settings, when certificate and key are given.
    pub fn tls_settings(&self) -> Option<crate::security::tls::TlsSettings> {
        Some(crate::security::tls::TlsSettings {
            certificate: self.ssl_certificate.clone()?,
            key: self.ssl_key.clone()?,
            ca: self.ssl_ca.clone(),
            client_auth: self.ssl_client_auth,
        })
    }
}

/// How this broker's replica fetchers authenticate to leaders on the inter-broker listener. The
/// protocol is that listener's own (its entry in the listener security protocol map); the credentials
/// are Kafka's `sasl.mechanism.inter.broker.protocol` and the `listener.name.X.<mechanism>.sasl.jaas.config`
/// username and password, the password read from a file so it stays out of `ps`. TLS trusts `--ssl-ca`
/// and, for mutual TLS, presents the broker's own `--ssl-certificate` and `--ssl-key`, as Kafka uses
/// the same keystore and truststore both ways.
#[derive(Clone, Debug, clap::Args)]
pub struct InterBrokerSecurityArgs {
    /// SASL mechanism followers use on a SASL inter-broker listener: SCRAM-SHA-512, SCRAM-SHA-256 or
    /// PLAIN (Kafka's `sasl.mechanism.inter.broker.protocol`).
    #[arg(
        long,
        env = "CHRONIK_INTER_BROKER_SASL_MECHANISM",
        default_value = "SCRAM-SHA-512",
        value_parser = |s: &str| s.parse::<chronik_wire::SaslMechanism>()
    )]
    pub inter_broker_sasl_mechanism: chronik_wire::SaslMechanism,

    /// The user followers authenticate as on a SASL inter-broker listener (e.g. `broker`, a super user).
    #[arg(long, env = "CHRONIK_INTER_BROKER_SASL_USERNAME", value_name = "USER")]
    pub inter_broker_sasl_username: Option<String>,

    /// A file holding that user's password (one line; a trailing newline is ignored).
    #[arg(
        long,
        env = "CHRONIK_INTER_BROKER_SASL_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub inter_broker_sasl_password_file: Option<PathBuf>,
}

impl InterBrokerSecurityArgs {
    /// The client settings of the replica fetchers for an inter-broker listener speaking `protocol`,
    /// trusting `ca` and presenting `certificate` and `key` when given. Reads the password file.
    pub fn client_security(
        &self,
        protocol: chronik_wire::SecurityProtocol,
        ca: Option<PathBuf>,
        certificate: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<chronik_wire::ClientSecurity, BrokerError> {
        let invalid = |message: String| Err(BrokerError::Config(message));
        if protocol.uses_tls() && ca.is_none() {
            return invalid(format!(
                "the inter-broker listener is {protocol}: give --ssl-ca, the CA the leaders' certificates chain to"
            ));
        }
        let sasl = if protocol.uses_sasl() {
            let (Some(username), Some(path)) = (
                &self.inter_broker_sasl_username,
                &self.inter_broker_sasl_password_file,
            ) else {
                return invalid(format!(
                    "the inter-broker listener is {protocol}: give --inter-broker-sasl-username and --inter-broker-sasl-password-file"
                ));
            };
            let password = std::fs::read_to_string(path).map_err(|e| {
                BrokerError::Config(format!(
                    "--inter-broker-sasl-password-file {}: {e}",
                    path.display()
                ))
            })?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            Some(chronik_wire::SaslSettings {
                mechanism: self.inter_broker_sasl_mechanism,
                username: username.clone(),
                password: chronik_wire::Password::new(password),
            })
        } else {
            None
        };
        Ok(chronik_wire::ClientSecurity {
            protocol,
            tls: chronik_wire::TlsSettings {
                ca,
                // Only a listener asking for client certificates checks them; presenting one where
                // none is asked for is harmless, so the broker always offers its own.
                certificate: if protocol.uses_tls() {
                    certificate
                } else {
                    None
                },
                key: if protocol.uses_tls() { key } else { None },
                server_name: None,
            },
            sasl,
        })
    }
}

impl BrokerConfig {
    /// The connector the replica fetchers reach leaders with, for the inter-broker listener's
    /// protocol; certificates and the password file are read here, once, at start.
    pub fn inter_broker_connector(&self) -> Result<chronik_wire::ClientConnector, BrokerError> {
        let listener = self.inter_broker_listener()?;
        // The listener's protocol (`--listener-security-protocol-map`).
        let protocol = self.security.protocol_of(&listener)?;
        let security = self.inter_broker.client_security(
            protocol,
            self.security.ssl_ca.clone(),
            self.security.ssl_certificate.clone(),
            self.security.ssl_key.clone(),
        )?;
        chronik_wire::ClientConnector::new(
            &security,
            &format!("chronik-replica-fetcher-{}", self.broker_id),
        )
        .map_err(|e| BrokerError::Config(format!("inter-broker listener: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BrokerConfig, clap::Error> {
        let mut argv = vec!["chronik-broker"];
        argv.extend_from_slice(args);
        BrokerConfig::try_parse_from(argv)
    }

    /// The endpoints a validated config registers when every listener binds its configured port.
    fn endpoints(config: &BrokerConfig) -> Vec<Endpoint> {
        config
            .kafka_listeners()
            .expect("valid listeners")
            .iter()
            .map(|l| l.endpoint(l.bind))
            .collect()
    }

    fn minimal() -> Vec<&'static str> {
        vec![
            "--broker-id",
            "1",
            "--data-dir",
            "/tmp/x",
            "--controllers",
            "127.0.0.1:9093",
        ]
    }

    #[test]
    fn defaults_advertise_the_listen_address() {
        let config = parse(&minimal()).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.listen, "127.0.0.1:9092".parse().expect("addr"));
        assert_eq!(config.http_listen, "127.0.0.1:8092".parse().expect("addr"));
        assert_eq!(config.controlled_shutdown_timeout_ms, 30_000);
        assert_eq!(
            endpoints(&config),
            vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092
            }]
        );
    }

    #[test]
    fn the_authorizer_is_off_unless_asked_for_and_its_flags_need_it() {
        let config = parse(&minimal()).expect("parses");
        assert!(config.authorizer().is_none());
        let with = |extra: &[&str]| {
            let mut args = minimal();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let config = with(&[
            "--authorizer",
            "standard",
            "--super-users",
            "User:admin;User:ops",
            "--allow-everyone-if-no-acl-found",
        ])
        .expect("parses");
        config.validate().expect("valid");
        let authorizer = config.authorizer().expect("on");
        assert_eq!(
            authorizer.super_users.into_iter().collect::<Vec<_>>(),
            ["User:admin", "User:ops"]
        );
        assert!(authorizer.allow_everyone_if_no_acl_found);
        assert!(
            with(&["--authorizer", "acl"]).is_err(),
            "unknown authorizer"
        );
        assert!(
            with(&["--super-users", "User:admin"]).is_err(),
            "needs --authorizer"
        );
        let bad = with(&["--authorizer", "standard", "--super-users", "admin"]).expect("parses");
        assert!(bad.validate().is_err(), "not Type:name");
    }

    #[test]
    fn a_fetch_stall_time_within_the_followers_long_poll_is_refused() {
        let config = parse(&minimal()).expect("parses");
        assert_eq!(config.replica_fetch_stall_ms, 1_000);
        for (stall, valid) in [("500", false), ("501", true), ("30000", true)] {
            let mut args = minimal();
            args.extend(["--replica-fetch-stall-ms", stall]);
            let config = parse(&args).expect("parses");
            assert_eq!(
                config.validate().is_ok(),
                valid,
                "--replica-fetch-stall-ms {stall}"
            );
        }
    }

    #[test]
    fn fetch_session_cache_slots_default_to_kafkas_and_can_be_turned_off() {
        let config = parse(&minimal()).expect("parses");
        assert_eq!(config.max_incremental_fetch_session_cache_slots, 1_000);
        let mut args = minimal();
        args.extend(["--max-incremental-fetch-session-cache-slots", "0"]);
        let config = parse(&args).expect("parses");
        assert_eq!(config.max_incremental_fetch_session_cache_slots, 0);
        config.validate().expect("valid");
    }

    #[test]
    fn controllers_are_comma_separated_and_deduplicated() {
        let mut args = minimal();
        args.truncate(4);
        args.extend(["--controllers", "a:1,b:2,[::1]:3,a:1"]);
        let config = parse(&args).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.controller_addresses(), vec!["a:1", "b:2", "[::1]:3"]);
    }

    #[test]
    fn bad_addresses_are_rejected_by_the_parser() {
        for bad in [
            "nohost",
            "host:",
            ":9093",
            "host:99999",
            "::1:9093",
            "[::1:9093",
        ] {
            let mut args = minimal();
            args.truncate(4);
            args.extend(["--controllers", bad]);
            assert!(parse(&args).is_err(), "{bad} should not parse");
        }
        let mut args = minimal();
        args.extend(["--listen", "localhost:9092"]);
        assert!(
            parse(&args).is_err(),
            "--listen takes an IP address, not a name"
        );
        assert!(parse(&["--data-dir", "/tmp/x", "--controllers", "a:1"]).is_err());
        assert!(parse(&["--broker-id", "1", "--data-dir", "/tmp/x"]).is_err());
    }

    #[test]
    fn wildcard_listen_needs_an_advertised_listener() {
        let mut args = minimal();
        args.extend(["--listen", "0.0.0.0:9092"]);
        let error = parse(&args).expect("parses").validate().unwrap_err();
        assert!(
            error.to_string().contains("--advertised-listener"),
            "{error}"
        );

        args.extend(["--advertised-listener", "broker-1.example:19092"]);
        let config = parse(&args).expect("parses");
        config.validate().expect("valid");
        assert_eq!(endpoints(&config)[0].host, "broker-1.example");
        assert_eq!(endpoints(&config)[0].port, 19092);
    }

    #[test]
    fn contradictory_settings_fail_validation() {
        let cases: &[&[&str]] = &[
            &["--advertised-listener", "0.0.0.0:9092"],
            &["--advertised-listener", "host:0"],
            &["--rack", " "],
            &["--controlled-shutdown-timeout-ms", "0"],
            &["--controller-request-timeout-ms", "0"],
        ];
        for extra in cases {
            let mut args = minimal();
            args.extend_from_slice(extra);
            let config = parse(&args).expect("parses");
            assert!(config.validate().is_err(), "{extra:?} should be invalid");
        }
        let mut args = vec!["--broker-id", "-1"];
        args.extend_from_slice(&minimal()[2..]);
        let config = parse(&args).expect("parses");
        assert!(config.validate().is_err());
    }

    #[test]
    fn named_listeners_bind_and_advertise_separately() {
        let mut args = minimal();
        args.extend([
            "--listeners",
            "internal://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092",
            "--advertised-listeners",
            "INTERNAL://broker-1:9092,EXTERNAL://localhost:19092",
            "--inter-broker-listener-name",
            "internal",
        ]);
        let config = parse(&args).expect("parses");
        config.validate().expect("valid");
        assert_eq!(
            endpoints(&config),
            vec![
                Endpoint {
                    name: "INTERNAL".into(),
                    host: "broker-1".into(),
                    port: 9092
                },
                Endpoint {
                    name: "EXTERNAL".into(),
                    host: "localhost".into(),
                    port: 19092
                },
            ]
        );
        assert_eq!(config.inter_broker_listener().expect("valid"), "INTERNAL");
    }

    #[test]
    fn a_listener_left_out_of_the_advertised_ones_advertises_its_bind_address() {
        let mut args = minimal();
        args.extend([
            "--listeners",
            "PLAINTEXT://127.0.0.1:9092,REPLICATION://127.0.0.1:9094",
        ]);
        let config = parse(&args).expect("parses");
        config.validate().expect("valid");
        assert_eq!(endpoints(&config)[1].host, "127.0.0.1");
        assert_eq!(endpoints(&config)[1].port, 9094);
        // PLAINTEXT is the inter-broker listener unless another is named.
        assert_eq!(config.inter_broker_listener().expect("valid"), "PLAINTEXT");
    }

    #[test]
    fn the_single_listener_form_is_named_plaintext_and_used_between_brokers() {
        let mut args = minimal();
        args.extend([
            "--listen",
            "0.0.0.0:9092",
            "--advertised-listener",
            "broker-1:9092",
        ]);
        let config = parse(&args).expect("parses");
        let listeners = config.kafka_listeners().expect("valid");
        assert_eq!(
            listeners,
            vec![KafkaListener {
                name: "PLAINTEXT".into(),
                bind: "0.0.0.0:9092".parse().expect("addr"),
                advertised: Some("broker-1:9092".parse().expect("host port")),
                security_protocol: SecurityProtocol::Plaintext,
            }]
        );
        assert_eq!(config.inter_broker_listener().expect("valid"), "PLAINTEXT");
    }

    #[test]
    fn the_two_listener_forms_do_not_mix() {
        for extra in [
            &[
                "--listen",
                "127.0.0.1:9092",
                "--listeners",
                "A://127.0.0.1:1",
            ][..],
            &[
                "--listeners",
                "A://127.0.0.1:1",
                "--advertised-listener",
                "a:1",
            ],
            &["--advertised-listeners", "A://a:1"],
        ] {
            let mut args = minimal();
            args.extend_from_slice(extra);
            assert!(parse(&args).is_err(), "{extra:?} should not parse");
        }
    }

    #[test]
    fn malformed_named_listeners_are_rejected_by_the_parser() {
        for bad in [
            "127.0.0.1:9092",
            "://127.0.0.1:9092",
            "IN-TERNAL://127.0.0.1:9092",
            "INTERNAL://localhost:9092",
            "INTERNAL://127.0.0.1",
        ] {
            let mut args = minimal();
            args.extend(["--listeners", bad]);
            let error = parse(&args).expect_err(bad).to_string();
            assert!(error.contains(bad), "{bad}: the error names it: {error}");
        }
    }

    #[test]
    fn inconsistent_named_listeners_fail_validation() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--listeners", "A://127.0.0.1:1,a://127.0.0.1:2"],
                "names A twice",
            ),
            (
                &["--listeners", "A://127.0.0.1:1,B://127.0.0.1:1"],
                "both bind",
            ),
            (
                &[
                    "--listeners",
                    "A://127.0.0.1:1",
                    "--advertised-listeners",
                    "B://b:1",
                ],
                "not in --listeners",
            ),
            (
                &["--listeners", "A://0.0.0.0:1,B://127.0.0.1:2"],
                "A://HOST:PORT in --advertised-listeners",
            ),
            (
                &[
                    "--listeners",
                    "A://127.0.0.1:1",
                    "--advertised-listeners",
                    "A://0.0.0.0:1",
                ],
                "wildcard",
            ),
            (
                &["--listeners", "A://127.0.0.1:1,B://127.0.0.1:2"],
                "--inter-broker-listener-name",
            ),
            (
                &[
                    "--listeners",
                    "A://127.0.0.1:1",
                    "--inter-broker-listener-name",
                    "B",
                ],
                "B is not one of the listeners (A)",
            ),
        ];
        for (extra, expected) in cases {
            let mut args = minimal();
            args.extend_from_slice(extra);
            let error = parse(&args)
                .expect("parses")
                .validate()
                .expect_err(expected)
                .to_string();
            assert!(error.contains(expected), "{extra:?}: {error}");
        }
    }

    #[test]
    fn host_port_round_trips_through_display() {
        for s in ["a:1", "10.0.0.1:9092", "[::1]:9093"] {
            let parsed: HostPort = s.parse().expect("parses");
            assert_eq!(parsed.to_string(), s);
        }
        let v6: HostPort = "[::1]:9093".parse().expect("parses");
        assert_eq!(v6.host, "::1");
    }

    #[test]
    fn listeners_speak_the_mapped_protocol_or_the_one_they_are_named_after() {
        let mut args = minimal();
        args.extend([
            "--listeners",
            "PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:2,INTERNAL://127.0.0.1:3,EXTERNAL://127.0.0.1:4",
            "--listener-security-protocol-map",
            "external:SASL_PLAINTEXT",
            "--ssl-certificate",
            "/c.pem",
            "--ssl-key",
            "/k.pem",
        ]);
        let config = parse(&args).expect("parses");
        config.validate().expect("valid");
        let protocols: Vec<(String, SecurityProtocol)> = config
            .kafka_listeners()
            .expect("valid")
            .into_iter()
            .map(|l| (l.name, l.security_protocol))
            .collect();
        assert_eq!(
            protocols,
            vec![
                ("PLAINTEXT".into(), SecurityProtocol::Plaintext),
                ("SASL_SSL".into(), SecurityProtocol::SaslSsl),
                // Kafka refuses an unmapped name; Chronik keeps it PLAINTEXT.
                ("INTERNAL".into(), SecurityProtocol::Plaintext),
                ("EXTERNAL".into(), SecurityProtocol::SaslPlaintext),
            ]
        );
        assert_eq!(
            config.security.sasl_settings().mechanisms,
            vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
        );
        assert_eq!(config.security.connections_max_reauth_ms, 0);
    }

    #[test]
    fn security_settings_a_listener_needs_are_checked_with_clear_errors() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--listeners", "SSL://127.0.0.1:1"],
                "give --ssl-certificate and --ssl-key",
            ),
            (
                &[
                    "--listeners",
                    "A://127.0.0.1:1",
                    "--listener-security-protocol-map",
                    "A:SASL_SSL",
                    "--ssl-key",
                    "/k",
                ],
                "listener A is SASL_SSL",
            ),
            (
                &[
                    "--listeners",
                    "SSL://127.0.0.1:1",
                    "--ssl-certificate",
                    "/c",
                    "--ssl-key",
                    "/k",
                    "--ssl-client-auth",
                    "required",
                ],
                "needs --ssl-ca",
            ),
            (
                &[
                    "--listeners",
                    "A://127.0.0.1:1",
                    "--listener-security-protocol-map",
                    "B:SSL",
                ],
                "names B, which is not a listener",
            ),
            (
                &["--listener-security-protocol-map", "PLAINTEXT:TLS"],
                "unknown security protocol \"TLS\"",
            ),
            (
                &["--listener-security-protocol-map", "PLAINTEXT"],
                "is not NAME:PROTOCOL",
            ),
            (
                &[
                    "--listener-security-protocol-map",
                    "PLAINTEXT:SSL,plaintext:SASL_SSL",
                ],
                "names PLAINTEXT twice",
            ),
            (
                &["--ssl-principal-mapping-rules", "RULE:(/x/"],
                "--ssl-principal-mapping-rules",
            ),
        ];
        for (extra, expected) in cases {
            let mut args = minimal();
            args.extend_from_slice(extra);
            let error = parse(&args)
                .expect("parses")
                .validate()
                .expect_err(expected)
                .to_string();
            assert!(error.contains(expected), "{extra:?}: {error}");
        }
        let mut args = minimal();
        args.extend(["--sasl-enabled-mechanisms", "GSSAPI"]);
        assert!(parse(&args).is_err(), "unknown mechanism");
        let mut args = minimal();
        args.extend([
            "--listener-security-protocol-map",
            "PLAINTEXT:SASL_PLAINTEXT",
            "--sasl-enabled-mechanisms",
            "PLAIN,SCRAM-SHA-512,PLAIN",
            "--connections-max-reauth-ms",
            "60000",
        ]);
        let config = parse(&args).expect("parses");
        config.validate().expect("valid");
        assert_eq!(
            config.kafka_listeners().expect("valid")[0].security_protocol,
            SecurityProtocol::SaslPlaintext
        );
        let sasl = config.security.sasl_settings();
        assert_eq!(
            sasl.mechanisms,
            vec![SaslMechanism::Plain, SaslMechanism::ScramSha512]
        );
        assert_eq!(sasl.max_reauth_ms, 60_000);
    }

    #[test]
    fn inter_broker_credentials_follow_the_inter_broker_listener() {
        let plain = parse(&minimal()).expect("parses");
        assert_eq!(
            plain
                .inter_broker_connector()
                .expect("plaintext")
                .protocol(),
            chronik_wire::SecurityProtocol::Plaintext
        );
        let mut sasl = minimal();
        sasl.extend(["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"]);
        let error = parse(&sasl)
            .expect("parses")
            .inter_broker_connector()
            .expect_err("no credentials");
        assert!(
            error.to_string().contains("--inter-broker-sasl-username"),
            "{error}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let file = file.to_str().expect("utf-8");
        sasl.extend([
            "--inter-broker-sasl-username",
            "broker",
            "--inter-broker-sasl-password-file",
            file,
        ]);
        let config = parse(&sasl).expect("parses");
        let security = config
            .inter_broker
            .client_security(
                chronik_wire::SecurityProtocol::SaslPlaintext,
                None,
                None,
                None,
            )
            .expect("valid");
        let credentials = security.sasl.expect("SASL");
        assert_eq!(
            credentials.mechanism,
            chronik_wire::SaslMechanism::ScramSha512
        );
        assert_eq!(credentials.password.expose(), "s3cret");
        assert!(config.inter_broker_connector().is_ok());
        let error = config
            .inter_broker
            .client_security(chronik_wire::SecurityProtocol::SaslSsl, None, None, None)
            .expect_err("TLS without a CA");
        assert!(error.to_string().contains("--ssl-ca"), "{error}");
    }
}
