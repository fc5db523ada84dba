//! `cluster status`: one picture of the quorum and the brokers. The active controller's `DescribeCluster`
//! lists every voter, but only its own row is first-hand; so every other voter is asked directly (all at
//! once) and its own `is_self` row replaces the hearsay one. A voter that does not answer keeps the
//! hearsay figures and shows the role `unreachable`.
//!
//! `cluster logdirs`: DescribeLogDirs to every live broker at once (Kafka's `kafka-log-dirs.sh
//! --describe`). A broker that does not answer, and a registered broker that is not live (fenced:
//! down or cut off), is listed as failed and the command exits non-zero after printing what the
//! others said; an offline directory is a row with its error, not a failure of the command.

use std::collections::{BTreeMap, HashMap};

use chronik_proto::v1::{ControllerInfo, DescribeClusterResponse};
use futures::future::join_all;
use serde::Serialize;
use tracing::debug;

use crate::client::ControllerClient;
use crate::cmd::broker::{brokers_of, kafka_brokers, on_each, BrokerStatus};
use crate::cmd::group::BrokerFailure;
use crate::cmd::topic;
use crate::error::CliError;
use crate::kafka::admin::LogDir;
use crate::kafka::error_name;

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

/// `cluster logdirs`: the log directories of every live broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogDirsReport {
    /// The topic the replicas are limited to (`--topic`), if any.
    pub topic: Option<String>,
    /// Every log directory of the brokers that answered, by broker.
    pub log_dirs: Vec<LogDirStatus>,
    /// Registered brokers that are not live or did not answer: their directories are missing.
    pub failed_brokers: Vec<BrokerFailure>,
}

/// One log directory of one broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogDirStatus {
    /// The broker id.
    pub broker_id: i32,
    /// The directory's absolute path on the broker.
    pub path: String,
    /// `None` while it is online; the Kafka error otherwise (KAFKA_STORAGE_ERROR: offline after an
    /// I/O failure, until the broker restarts).
    pub error: Option<String>,
    /// Bytes of its filesystem; `None` when the broker did not say.
    pub total_bytes: Option<i64>,
    /// Bytes of its filesystem still usable; `None` when the broker did not say.
    pub usable_bytes: Option<i64>,
    /// The partition replicas in it, by topic and partition.
    pub replicas: Vec<ReplicaSize>,
}

/// One partition replica in a log directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaSize {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// Bytes of its log segments.
    pub size_bytes: i64,
    /// How far its log end is behind its high watermark (Kafka's `OffsetLag`; 0 for a current
    /// replica).
    pub offset_lag: i64,
}

/// Asks every live broker for its log directories; with `topic`, only that topic's replicas.
pub async fn logdirs(
    client: &ControllerClient,
    topic: Option<&str>,
) -> Result<LogDirsReport, CliError> {
    let wanted = match topic {
        Some(name) => {
            let details = topic::describe(client, name).await?;
            let partitions = details.partitions.iter().map(|p| p.partition).collect();
            Some(BTreeMap::from([(name.to_owned(), partitions)]))
        }
        None => None,
    };
    let brokers = kafka_brokers(client).await?;
    let wanted = wanted.as_ref();
    let answers = on_each(
        &brokers.live,
        client.request_timeout(),
        |broker, mut admin| async move { admin.describe_log_dirs(broker, wanted).await },
    )
    .await;
    let mut report = merge_log_dirs(topic, answers);
    report.failed_brokers.extend(
        brokers.not_live.into_iter().map(|broker_id| BrokerFailure {
            broker_id,
            error: "not a live broker (fenced: stopped, or not heartbeating to the controllers)"
                .to_owned(),
        }),
    );
    report.failed_brokers.sort_by_key(|f| f.broker_id);
    Ok(report)
}

/// The report from each broker's answer.
pub fn merge_log_dirs(
    topic: Option<&str>,
    answers: Vec<(i32, Result<Vec<LogDir>, crate::kafka::KafkaError>)>,
) -> LogDirsReport {
    let mut log_dirs = Vec::new();
    let mut failed_brokers = Vec::new();
    for (broker_id, answer) in answers {
        match answer {
            Ok(dirs) => log_dirs.extend(dirs.into_iter().map(|dir| {
                LogDirStatus {
                    broker_id,
                    path: dir.path,
                    error: (dir.error_code != 0).then(|| error_name(dir.error_code)),
                    total_bytes: dir.total_bytes,
                    usable_bytes: dir.usable_bytes,
                    replicas: dir
                        .replicas
                        .into_iter()
                        .map(|r| ReplicaSize {
                            topic: r.topic,
                            partition: r.partition,
                            size_bytes: r.size_bytes,
                            offset_lag: r.offset_lag,
                        })
                        .collect(),
                }
            })),
            Err(error) => failed_brokers.push(BrokerFailure {
                broker_id,
                error: error.to_string(),
            }),
        }
    }
    log_dirs.sort_by(|a, b| (a.broker_id, &a.path).cmp(&(b.broker_id, &b.path)));
    LogDirsReport {
        topic: topic.map(str::to_owned),
        log_dirs,
        failed_brokers,
    }
}

/// The error of `cluster logdirs` that could not ask every live broker (after the partial report).
pub fn logdirs_failure(report: &LogDirsReport) -> Option<CliError> {
    if report.failed_brokers.is_empty() {
        return None;
    }
    let brokers: Vec<String> = report
        .failed_brokers
        .iter()
        .map(|f| f.broker_id.to_string())
        .collect();
    Some(CliError::Incomplete(format!(
        "broker(s) {} could not be asked or did not answer DescribeLogDirs; their log directories \
         are missing",
        brokers.join(",")
    )))
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
    use crate::kafka::admin::LogDirReplica;
    use crate::kafka::KafkaError;

    #[test]
    fn log_dirs_keep_each_broker_and_name_the_silent_ones() {
        let dir = |path: &str, error_code, replicas: Vec<LogDirReplica>| LogDir {
            path: path.to_owned(),
            error_code,
            total_bytes: (error_code == 0).then_some(1_000),
            usable_bytes: (error_code == 0).then_some(400),
            replicas,
        };
        let answers = vec![
            (
                2,
                Ok(vec![dir(
                    "/data/2",
                    0,
                    vec![LogDirReplica {
                        topic: "orders".to_owned(),
                        partition: 1,
                        size_bytes: 70,
                        offset_lag: 0,
                    }],
                )]),
            ),
            (
                3,
                Err(KafkaError::Timeout {
                    waiting_for: "waiting for a DescribeLogDirs answer from b3".to_owned(),
                }),
            ),
            (1, Ok(vec![dir("/data/1", 56, Vec::new())])),
        ];
        let report = merge_log_dirs(Some("orders"), answers);
        let rows: Vec<String> = report
            .log_dirs
            .iter()
            .map(|d| {
                format!(
                    "{} {} {:?} {:?} {}",
                    d.broker_id,
                    d.path,
                    d.error,
                    d.total_bytes,
                    d.replicas.len()
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                "1 /data/1 Some(\"KAFKA_STORAGE_ERROR\") None 0",
                "2 /data/2 None Some(1000) 1"
            ]
        );
        assert_eq!(report.failed_brokers.len(), 1);
        assert_eq!(report.failed_brokers[0].broker_id, 3);
        let failure = logdirs_failure(&report).expect("incomplete").to_string();
        assert!(
            failure.starts_with("broker(s) 3 could not be asked"),
            "{failure}"
        );
        assert!(logdirs_failure(&merge_log_dirs(None, Vec::new())).is_none());
    }

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
