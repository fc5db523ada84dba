//! `BrokerConfig`: every setting of the broker process, from flags or `CHRONIK_…` environment variables
//! (clap reads both; nothing else in the broker reads the environment). Addresses are parsed into typed
//! values by clap; `validate` checks what no single flag can (e.g. an advertised listener is required when
//! the Kafka listener binds a wildcard address) and runs once, before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chronik_controller::state::{BrokerId, Endpoint};
use clap::Parser;

use crate::error::BrokerError;

/// The listener name brokers register their Kafka endpoint under.
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

    /// Address the Kafka listener binds (IP:PORT).
    #[arg(long, env = "CHRONIK_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// Address clients are told to connect to (HOST:PORT); defaults to --listen, and is required when
    /// --listen binds 0.0.0.0 or [::].
    #[arg(long, env = "CHRONIK_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<HostPort>,

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

    /// Create unknown topics named in Metadata and Produce requests (with the cluster defaults), as
    /// Kafka's `auto.create.topics.enable`.
    #[arg(
        long,
        env = "CHRONIK_AUTO_CREATE_TOPICS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub auto_create_topics: bool,

    /// A follower that has not caught up with the leader for this long leaves the ISR (Kafka's
    /// `replica.lag.time.max.ms`).
    #[arg(
        long,
        env = "CHRONIK_REPLICA_LAG_TIME_MAX_MS",
        default_value_t = 30_000
    )]
    pub replica_lag_time_max_ms: u64,

    #[command(flatten)]
    pub group: crate::group::GroupArgs,

    /// Largest Kafka request frame accepted; larger ones are refused before they are read.
    #[arg(long, env = "CHRONIK_MAX_REQUEST_BYTES", default_value_t = 104_857_600)]
    pub max_request_bytes: u32,

    /// How many request frames one connection may read ahead of the one being handled.
    #[arg(
        long,
        env = "CHRONIK_MAX_INFLIGHT_PER_CONNECTION",
        default_value_t = 128
    )]
    pub max_inflight_per_connection: usize,
}

impl BrokerConfig {
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
        match &self.advertised_listener {
            None if self.listen.ip().is_unspecified() => {
                return invalid(format!(
                    "--listen {} binds every interface; give --advertised-listener HOST:PORT so \
                     clients know where to connect",
                    self.listen
                ))
            }
            Some(advertised) => {
                if advertised.port == 0 {
                    return invalid(format!("--advertised-listener {advertised}: port 0"));
                }
                if advertised
                    .host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified())
                {
                    return invalid(format!(
                        "--advertised-listener {advertised}: clients cannot connect to a wildcard \
                         address"
                    ));
                }
            }
            None => {}
        }
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
        if self.controller_request_timeout_ms == 0 {
            return invalid("--controller-request-timeout-ms must be more than 0".into());
        }
        Ok(())
    }

    /// The address clients are told to connect to.
    pub fn advertised_address(&self) -> HostPort {
        self.advertised_listener
            .clone()
            .unwrap_or_else(|| HostPort::from(self.listen))
    }

    /// The endpoints this broker registers with the controller.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let advertised = self.advertised_address();
        vec![Endpoint {
            name: PLAINTEXT_LISTENER.to_owned(),
            host: advertised.host,
            port: advertised.port,
        }]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BrokerConfig, clap::Error> {
        let mut argv = vec!["chronik-broker"];
        argv.extend_from_slice(args);
        BrokerConfig::try_parse_from(argv)
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
            config.endpoints(),
            vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092
            }]
        );
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
        assert_eq!(config.endpoints()[0].host, "broker-1.example");
        assert_eq!(config.endpoints()[0].port, 19092);
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
    fn host_port_round_trips_through_display() {
        for s in ["a:1", "10.0.0.1:9092", "[::1]:9093"] {
            let parsed: HostPort = s.parse().expect("parses");
            assert_eq!(parsed.to_string(), s);
        }
        let v6: HostPort = "[::1]:9093".parse().expect("parses");
        assert_eq!(v6.host, "::1");
    }
}
