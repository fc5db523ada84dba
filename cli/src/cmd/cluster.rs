//! `cluster status`: one picture of the quorum and the brokers. The active controller's `DescribeCluster`
//! lists every voter, but only its own row is first-hand; so every other voter is asked directly (all at
//! once) and its own `is_self` row replaces the hearsay one. A voter that does not answer keeps the
//! hearsay figures and shows the role `unreachable`.

use std::collections::HashMap;

use chronik_proto::v1::{ControllerInfo, DescribeClusterResponse};
use futures::future::join_all;
use serde::Serialize;
use tracing::debug;

use crate::client::ControllerClient;
use crate::cmd::broker::{brokers_of, BrokerStatus};
use crate::error::CliError;

/// The role shown for a voter that did not answer.
pub const ROLE_UNREACHABLE: &str = "unreachable";

/// The state of the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The cluster id.
    pub cluster_id: String,
    /// The node id of the active controller; 0 when none is known.
    pub leader_id: u64,
    /// Every voter, by node id.
    pub controllers: Vec<ControllerStatus>,
    /// Every registered broker, by id.
    pub brokers: Vec<BrokerStatus>,
    /// Number of topics.
    pub topic_count: u32,
    /// Number of partitions over all topics.
    pub partition_count: u32,
    /// Partitions without a leader.
    pub leaderless_partitions: u32,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated_partitions: u32,
}

/// One controller as it reports itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerStatus {
    /// The Raft node id.
    pub node_id: u64,
    /// Its controller address.
    pub address: String,
    /// `leader`, `follower`, `candidate`, `learner`, `unknown` or `unreachable`.
    pub role: String,
    /// Its current Raft term.
    pub term: u64,
    /// Its commit index; -1 when unknown.
    pub commit_index: i64,
    /// Its applied index; -1 when unknown.
    pub applied_index: i64,
}

impl From<&ControllerInfo> for ControllerStatus {
    fn from(info: &ControllerInfo) -> Self {
        ControllerStatus {
            node_id: info.node_id,
            address: info.address.clone(),
            role: info.role.clone(),
            term: info.term,
            commit_index: info.commit_index,
            applied_index: info.applied_index,
        }
    }
}

/// What a voter said about itself when asked directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfReport {
    /// It answered; its own entry.
    Answered(ControllerInfo),
    /// It answered without an own entry for this node id: keep the hearsay figures.
    Silent,
    /// It did not answer.
    Unreachable,
}

/// Collects the cluster status from the active controller and every other voter.
pub async fn status(client: &ControllerClient) -> Result<ClusterStatus, CliError> {
    let reply = client.describe_cluster().await?;
    let others: Vec<&ControllerInfo> = reply
        .controllers
        .iter()
        .filter(|info| !info.is_self)
        .collect();
    let answers = join_all(others.iter().map(|info| ask_voter(client, info))).await;
    let reports = others
        .iter()
        .map(|info| info.node_id)
        .zip(answers)
        .collect::<HashMap<_, _>>();
    Ok(merge(&reply, &reports))
}

async fn ask_voter(client: &ControllerClient, info: &ControllerInfo) -> SelfReport {
    let address = info.address.trim();
    if address.is_empty() {
        return SelfReport::Unreachable;
    }
    match client.describe_cluster_at(address).await {
        Ok(reply) => reply
            .controllers
            .into_iter()
            .find(|own| own.is_self && own.node_id == info.node_id)
            .map_or(SelfReport::Silent, SelfReport::Answered),
        Err(error) => {
            debug!(node_id = info.node_id, %address, %error, "voter did not answer");
            SelfReport::Unreachable
        }
    }
}

/// Builds the status from one `DescribeCluster` answer and what the other voters said about themselves.
pub fn merge(reply: &DescribeClusterResponse, reports: &HashMap<u64, SelfReport>) -> ClusterStatus {
    let mut controllers: Vec<ControllerStatus> = reply
        .controllers
        .iter()
        .map(|info| {
            let hearsay = ControllerStatus::from(info);
            if info.is_self {
                return hearsay;
            }
            match reports.get(&info.node_id) {
                Some(SelfReport::Answered(own)) => ControllerStatus {
                    address: hearsay.address,
                    ..ControllerStatus::from(own)
                },
                Some(SelfReport::Unreachable) => ControllerStatus {
                    role: ROLE_UNREACHABLE.to_owned(),
                    ..hearsay
                },
                Some(SelfReport::Silent) | None => hearsay,
            }
        })
        .collect();
    controllers.sort_by_key(|controller| controller.node_id);
    ClusterStatus {
        cluster_id: reply.cluster_id.clone(),
        leader_id: reply.leader_id,
        controllers,
        brokers: brokers_of(reply),
        topic_count: reply.topic_count,
        partition_count: reply.partition_count,
        leaderless_partitions: reply.leaderless_partitions,
        under_replicated_partitions: reply.under_replicated_partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node_id: u64, role: &str, term: u64, commit: i64, is_self: bool) -> ControllerInfo {
        ControllerInfo {
            node_id,
            address: format!("127.0.0.1:909{node_id}"),
            role: role.to_owned(),
            term,
            commit_index: commit,
            applied_index: commit,
            is_self,
        }
    }

    #[test]
    fn voters_report_their_own_figures() {
        let reply = DescribeClusterResponse {
            cluster_id: "c1".to_owned(),
            leader_id: 1,
            controllers: vec![
                info(3, "follower", 0, -1, false),
                info(1, "leader", 4, 40, true),
                info(2, "follower", 0, -1, false),
            ],
            topic_count: 2,
            ..Default::default()
        };
        let reports = HashMap::from([
            (2, SelfReport::Answered(info(2, "follower", 4, 39, true))),
            (3, SelfReport::Unreachable),
        ]);
        let status = merge(&reply, &reports);
        let rows: Vec<(u64, &str, u64, i64)> = status
            .controllers
            .iter()
            .map(|c| (c.node_id, c.role.as_str(), c.term, c.commit_index))
            .collect();
        assert_eq!(
            rows,
            [
                (1, "leader", 4, 40),
                (2, "follower", 4, 39),
                (3, "unreachable", 0, -1)
            ]
        );
        assert_eq!(status.cluster_id, "c1");
        assert_eq!(status.topic_count, 2);
    }
}
