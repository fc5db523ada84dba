//! The controller's external interfaces: gRPC services for brokers and operators (`grpc`), HTTP for
//! health, metrics and a JSON view (`http`); the protobuf conversions are `chronik_metadata::convert`. `ClusterView`
//! is the one description of the cluster both interfaces render.

pub mod auth;
pub mod grpc;
pub mod http;
pub mod http_listener;

use serde::Serialize;

use crate::quorum::Quorum;
use crate::state::{BrokerRegistration, MetadataImage};

#[derive(Clone, Debug, Serialize)]
pub struct ControllerView {
    pub node_id: u64,
    pub address: String,
    pub role: String,
    pub term: u64,
    /// -1 when the answering node does not know.
    pub commit_index: i64,
    pub applied_index: i64,
    pub is_self: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokerView {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub incarnation_id: String,
    pub endpoints: Vec<String>,
    pub rack: Option<String>,
    pub state: &'static str,
    pub leader_count: usize,
    /// Reported an offline log directory (KIP-858): leads nothing, joins no ISR until restarted.
    pub offline_log_dir: bool,
    /// Its `cordoned.log.dirs` is set (KIP-1066): no new replicas are placed on it.
    pub cordoned: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    pub cluster_id: String,
    pub leader_id: Option<u64>,
    pub controllers: Vec<ControllerView>,
    pub brokers: Vec<BrokerView>,
    pub metadata_offset: u64,
    pub topic_count: usize,
    pub partition_count: usize,
    pub leaderless_partitions: usize,
    pub under_replicated_partitions: usize,
}

pub fn broker_state(b: &BrokerRegistration) -> &'static str {
    if b.fenced {
        "fenced"
    } else if b.in_controlled_shutdown {
        "controlled_shutdown"
    } else {
        "unfenced"
    }
}

/// Partition health counts: `(partitions, leaderless, under-replicated)`.
pub fn partition_health(image: &MetadataImage) -> (usize, usize, usize) {
    image
        .partitions()
        .fold((0, 0, 0), |(all, leaderless, under), (_, _, p)| {
            (
                all + 1,
                leaderless + usize::from(!p.has_leader()),
                under + usize::from(p.is_under_replicated()),
            )
        })
}

/// The cluster as this controller sees it. Its own Raft figures are exact; other voters' are what a
/// leader knows from replication, or unknown (-1).
pub fn cluster_view(quorum: &Quorum) -> ClusterView {
    let metrics = quorum.raft().metrics().borrow().clone();
    let image = quorum.applied().image();
    let leader_id = metrics.current_leader;
    let applied = metrics.last_applied.map_or(-1, |l| l.index as i64);
    let controllers = quorum
        .voters()
        .iter()
        .map(|(&id, address)| {
            if id == quorum.node_id() {
                ControllerView {
                    node_id: id,
                    address: address.clone(),
                    role: format!("{:?}", metrics.state).to_lowercase(),
                    term: metrics.current_term,
                    commit_index: quorum.committed_index().map_or(applied, |c| c as i64),
                    applied_index: applied,
                    is_self: true,
                }
            } else {
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(-1, |l| l.index as i64);
                let role = match leader_id {
                    Some(l) if l == id => "leader",
                    Some(_) => "follower",
                    None => "unknown",
                };
                ControllerView {
                    node_id: id,
                    address: address.clone(),
                    role: role.to_string(),
                    term: if leader_id == Some(id) {
                        metrics.current_term
                    } else {
                        0
                    },
                    commit_index: -1,
                    applied_index: matched,
                    is_self: false,
                }
            }
        })
        .collect();
    let brokers = image
        .brokers
        .values()
        .map(|b| BrokerView {
            broker_id: b.broker_id,
            broker_epoch: b.broker_epoch,
            incarnation_id: b.incarnation_id.to_string(),
            endpoints: b.endpoints.iter().map(ToString::to_string).collect(),
            rack: b.rack.clone(),
            state: broker_state(b),
            leader_count: image.leader_count(b.broker_id),
            offline_log_dir: b.has_offline_log_dir,
            cordoned: crate::state::configs::is_cordoned(&image, b.broker_id),
        })
        .collect();
    let (partition_count, leaderless_partitions, under_replicated_partitions) =
        partition_health(&image);
    ClusterView {
        cluster_id: image.cluster_id.clone().unwrap_or_default(),
        leader_id,
        controllers,
        brokers,
        metadata_offset: image.offset,
        topic_count: image.topics.len(),
        partition_count,
        leaderless_partitions,
        under_replicated_partitions,
    }
}
