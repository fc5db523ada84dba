//! `broker list`: the registered brokers as the active controller sees them. Also owns the conversion of
//! the wire `BrokerInfo` into [`BrokerStatus`], which `cluster status` reuses, and the live brokers'
//! Kafka addresses the commands that speak the Kafka protocol to brokers start from
//! ([`live_addresses`], [`on_each`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use chronik_proto::v1::{self, BrokerInfo};
use futures::future::join_all;
use serde::Serialize;

use chronik_metadata::configs::CORDONED_LOG_DIRS;

use crate::client::ControllerClient;
use crate::error::CliError;
use crate::kafka::{BrokerPool, KafkaAdmin, KafkaError};

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerStatus {
    /// The broker id.
    pub broker_id: i32,
    /// The broker epoch: the metadata offset of its current registration.
    pub epoch: i64,
    /// Its listeners as `host:port`.
    pub endpoints: Vec<String>,
    /// Its rack, if it declared one.
    pub rack: Option<String>,
    /// Whether it may lead and follow partitions.
    pub state: BrokerState,
    /// How many partitions it leads.
    pub leader_count: u32,
    /// It reported an offline log directory (a failed disk): it leads nothing and joins no ISR until
    /// it is restarted.
    pub offline_log_dir: bool,
    /// Its `cordoned.log.dirs` is set (KIP-1066): new topics and partitions place no replica on it.
    pub cordoned: bool,
}

/// A broker's registration state, printed in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerState {
    /// Alive and eligible for leadership.
    Unfenced,
    /// Registered but not heartbeating (or not caught up): holds no leadership.
    Fenced,
    /// Shutting down; leadership is being moved away.
    ControlledShutdown,
    /// A state this CLI does not know.
    Unknown,
}

impl BrokerState {
    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Unfenced => "unfenced",
            BrokerState::Fenced => "fenced",
            BrokerState::ControlledShutdown => "controlled_shutdown",
            BrokerState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<i32> for BrokerState {
    fn from(state: i32) -> Self {
        match v1::BrokerState::try_from(state) {
            Ok(v1::BrokerState::Unfenced) => BrokerState::Unfenced,
            Ok(v1::BrokerState::Fenced) => BrokerState::Fenced,
            Ok(v1::BrokerState::ControlledShutdown) => BrokerState::ControlledShutdown,
            Ok(v1::BrokerState::Unspecified) | Err(_) => BrokerState::Unknown,
        }
    }
}

impl From<&BrokerInfo> for BrokerStatus {
    fn from(info: &BrokerInfo) -> Self {
        BrokerStatus {
            broker_id: info.broker_id,
            epoch: info.broker_epoch,
            endpoints: info.endpoints.iter().map(format_endpoint).collect(),
            rack: info.rack.clone().filter(|rack| !rack.is_empty()),
            state: BrokerState::from(info.state),
            leader_count: info.leader_count,
            offline_log_dir: info.offline_log_dir,
            cordoned: info.cordoned,
        }
    }
}

/// The brokers of a `DescribeCluster` answer, by id.
pub fn brokers_of(reply: &v1::DescribeClusterResponse) -> Vec<BrokerStatus> {
    let mut brokers: Vec<BrokerStatus> = reply.brokers.iter().map(BrokerStatus::from).collect();
    brokers.sort_by_key(|broker| broker.broker_id);
    brokers
}

/// Lists the registered brokers.
pub async fn list(client: &ControllerClient) -> Result<Vec<BrokerStatus>, CliError> {
    let reply = client.describe_cluster().await?;
    Ok(brokers_of(&reply))
}

/// Cordons a broker (KIP-1066: sets its `cordoned.log.dirs` to `*`, its one data directory) or
/// clears the cordon, on the active controller, as `kafka-configs --entity-type brokers
/// --entity-name ID --alter --add-config cordoned.log.dirs=*` (or `--delete-config`) does through
/// the broker. A cordoned broker keeps its replicas; new topics and partitions place none on it.
/// Returns the brokers afterwards.
pub async fn cordon(
    client: &ControllerClient,
    broker_id: i32,
    cordoned: bool,
) -> Result<Vec<BrokerStatus>, CliError> {
    let brokers = list(client).await?;
    if !brokers.iter().any(|b| b.broker_id == broker_id) {
        return Err(CliError::InvalidArgument(format!(
            "broker {broker_id} is not registered"
        )));
    }
    set_cordon(client, broker_id, cordoned).await?;
    list(client).await
}

/// Unregisters a broker that is gone for good (KIP-631, as `kafka-cluster.sh unregister --id ID`
/// does through a broker): the controller refuses one that is not registered or still alive. Its
/// replicas stay assigned to it; `broker decommission` moves them away first. Returns the brokers
/// afterwards.
pub async fn unregister(
    client: &ControllerClient,
    broker_id: i32,
) -> Result<Vec<BrokerStatus>, CliError> {
    client.unregister_broker(broker_id).await?;
    list(client).await
}

/// The `cordoned.log.dirs` change behind [`cordon`] (also the first step of a decommission).
pub async fn set_cordon(
    client: &ControllerClient,
    broker_id: i32,
    cordoned: bool,
) -> Result<(), CliError> {
    let (operation, value) = if cordoned {
        (v1::ConfigOperation::Set, "*")
    } else {
        (v1::ConfigOperation::Delete, "")
    };
    let resource = v1::AlterConfigsResource {
        resource: v1::ConfigResource::Broker as i32,
        name: broker_id.to_string(),
        changes: vec![v1::ConfigChange {
            key: CORDONED_LOG_DIRS.to_owned(),
            operation: operation as i32,
            value: value.to_owned(),
        }],
        replace: false,
    };
    super::config::alter_one(client, resource, |name| {
        format!("cannot change the cordon of broker {broker_id}: {name}")
    })
    .await?;
    Ok(())
}

/// The registered brokers as the commands that speak the Kafka protocol see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBrokers {
    /// The Kafka address (first listener) of every live (not fenced) broker, by id.
    pub live: BTreeMap<i32, String>,
    /// The other registered brokers: fenced, or without a Kafka endpoint.
    pub not_live: Vec<i32>,
}

/// The registered brokers split into live ones (with their address) and the rest; an error when
/// none is live.
pub async fn kafka_brokers(client: &ControllerClient) -> Result<KafkaBrokers, CliError> {
    let reply = client.describe_cluster().await?;
    let brokers = brokers_of(&reply);
    let live: BTreeMap<i32, String> = brokers
        .iter()
        .filter(|b| b.state != BrokerState::Fenced)
        .filter_map(|b| b.endpoints.first().map(|e| (b.broker_id, e.clone())))
        .collect();
    if live.is_empty() {
        return Err(CliError::InvalidArgument(format!(
            "no live broker with a Kafka endpoint among the {} registered broker(s)",
            brokers.len()
        )));
    }
    let not_live = brokers
        .iter()
        .map(|b| b.broker_id)
        .filter(|id| !live.contains_key(id))
        .collect();
    Ok(KafkaBrokers { live, not_live })
}

/// The Kafka address of every live broker, by id ([`kafka_brokers`]).
pub async fn live_addresses(client: &ControllerClient) -> Result<BTreeMap<i32, String>, CliError> {
    Ok(kafka_brokers(client).await?.live)
}

/// A connection to one broker, for a request about the whole cluster: to `-C`'s bootstrap servers,
/// else to the live brokers the controllers list; and the deadline of that one request.
pub async fn connect_any(
    client: &ControllerClient,
) -> Result<(crate::kafka::KafkaConnection, Instant), CliError> {
    let mut servers = crate::kafka::security::bootstrap_servers().to_vec();
    if servers.is_empty() {
        servers = live_addresses(client).await?.into_values().collect();
    }
    let deadline = Instant::now() + client.request_timeout().max(Duration::from_secs(1));
    let connection = crate::kafka::topic::connect_any(&servers, deadline).await?;
    Ok((connection, deadline))
}

/// Runs `ask` against each of `brokers` at once, each over its own connection (so a broker that does
/// not answer delays the others by nothing), every request bounded by `request_timeout`. Returns each
/// broker's result, by id.
pub async fn on_each<T, F, Fut>(
    brokers: &BTreeMap<i32, String>,
    request_timeout: Duration,
    ask: F,
) -> Vec<(i32, Result<T, KafkaError>)>
where
    F: Fn(i32, KafkaAdmin) -> Fut,
    Fut: Future<Output = Result<T, KafkaError>>,
{
    let asks = brokers.iter().map(|(&id, address)| {
        let pool = BrokerPool::new(BTreeMap::from([(id, address.clone())]), request_timeout);
        // One attempt per request: nothing here retries.
        let answer = ask(id, KafkaAdmin::new(pool, request_timeout));
        async move { (id, answer.await) }
    });
    join_all(asks).await
}

/// `host:port`, with an IPv6 host in brackets.
fn format_endpoint(endpoint: &v1::Endpoint) -> String {
    if endpoint.host.contains(':') && !endpoint.host.starts_with('[') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u32) -> v1::Endpoint {
        v1::Endpoint {
            name: "PLAINTEXT".to_owned(),
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn broker_info_converts_with_lowercase_state() {
        let info = BrokerInfo {
            broker_id: 2,
            broker_epoch: 17,
            incarnation_id: "x".to_owned(),
            endpoints: vec![endpoint("127.0.0.1", 9092), endpoint("::1", 9095)],
            rack: Some(String::new()),
            state: v1::BrokerState::ControlledShutdown as i32,
            leader_count: 4,
            offline_log_dir: false,
            cordoned: true,
            supported_features: Vec::new(),
        };
        let status = BrokerStatus::from(&info);
        assert_eq!(status.endpoints, ["127.0.0.1:9092", "[::1]:9095"]);
        assert_eq!(status.rack, None);
        assert_eq!(status.state, BrokerState::ControlledShutdown);
        let json = serde_json::to_value(&status).expect("serializable");
        assert_eq!(json["state"], "controlled_shutdown");
        assert_eq!(json["cordoned"], true);
        assert_eq!(json["epoch"], 17);
        assert_eq!(BrokerState::from(99), BrokerState::Unknown);
    }
}
