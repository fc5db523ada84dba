//! `cluster status`: the cluster's figures as a `Label:  value` block, then one table of controllers
//! (their Raft role and indexes, `-` where the answering node did not know one) and one of brokers.
//! `cluster config`: one row per cluster-wide default.
//! `cluster logdirs`: one row per log directory (its state and filesystem), then one row per replica
//! in it, then a note per broker that did not answer.

use std::io::Write;

use super::{bytes, fields, table};
use crate::cmd::{ClusterConfig, ClusterStatus, LogDirsReport};

/// One row per cluster-wide default: name, value, where the value comes from.
pub(super) fn configs(out: &mut impl Write, configs: &[ClusterConfig]) -> std::io::Result<()> {
    let rows = configs
        .iter()
        .map(|c| vec![c.name.clone(), c.value.clone(), c.source.to_owned()])
        .collect::<Vec<_>>();
    table(out, &["NAME", "VALUE", "SOURCE"], &rows)
}

/// One row per log directory, one per replica, then the brokers that did not answer.
pub(super) fn log_dirs(out: &mut impl Write, report: &LogDirsReport) -> std::io::Result<()> {
    let size = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), bytes);
    let rows = report
        .log_dirs
        .iter()
        .map(|dir| {
            vec![
                dir.broker_id.to_string(),
                dir.path.clone(),
                dir.error.clone().unwrap_or_else(|| "online".to_owned()),
                size(dir.total_bytes),
                size(dir.usable_bytes),
                dir.replicas.len().to_string(),
                bytes(dir.replicas.iter().map(|r| r.size_bytes).sum()),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "BROKER", "LOG DIR", "STATE", "TOTAL", "USABLE", "REPLICAS", "SIZE",
        ],
        &rows,
    )?;
    let replicas = report
        .log_dirs
        .iter()
        .flat_map(|dir| {
            dir.replicas.iter().map(|r| {
                vec![
                    dir.broker_id.to_string(),
                    r.topic.clone(),
                    r.partition.to_string(),
                    bytes(r.size_bytes),
                    r.size_bytes.to_string(),
                    r.offset_lag.to_string(),
                ]
            })
        })
        .collect::<Vec<_>>();
    if !replicas.is_empty() {
        writeln!(out)?;
        table(
            out,
            &[
                "BROKER",
                "TOPIC",
                "PARTITION",
                "SIZE",
                "BYTES",
                "OFFSET LAG",
            ],
            &replicas,
        )?;
    }
    for failure in &report.failed_brokers {
        writeln!(
            out,
            "Note: no log directories of broker {}: {}",
            failure.broker_id, failure.error
        )?;
    }
    Ok(())
}

/// The cluster's figures, then its controllers and brokers.
pub(super) fn status(out: &mut impl Write, status: &ClusterStatus) -> std::io::Result<()> {
    fields(
        out,
        &[
            ("Cluster ID", status.cluster_id.clone()),
            ("Active controller", node_or_none(status.leader_id)),
            ("Topics", status.topic_count.to_string()),
            ("Partitions", status.partition_count.to_string()),
            (
                "Leaderless partitions",
                status.leaderless_partitions.to_string(),
            ),
            (
                "Under-replicated partitions",
                status.under_replicated_partitions.to_string(),
            ),
        ],
    )?;
    writeln!(out)?;
    writeln!(out, "Controllers")?;
    let rows = status
        .controllers
        .iter()
        .map(|controller| {
            vec![
                controller.node_id.to_string(),
                controller.address.clone(),
                controller.role.clone(),
                controller.term.to_string(),
                index(controller.commit_index),
                index(controller.applied_index),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "NODE ID",
            "ADDRESS",
            "ROLE",
            "TERM",
            "COMMIT INDEX",
            "APPLIED INDEX",
        ],
        &rows,
    )?;
    writeln!(out)?;
    writeln!(out, "Brokers")?;
    super::broker::list(out, &status.brokers)
}

/// A controller node id; 0 means there is no active controller.
fn node_or_none(node_id: u64) -> String {
    if node_id == 0 {
        "none".to_owned()
    } else {
        node_id.to_string()
    }
}

/// A Raft index; -1 means the answering node did not know it.
fn index(value: i64) -> String {
    if value < 0 {
        "-".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::cmd::group::BrokerFailure;
    use crate::cmd::{
        BrokerState, BrokerStatus, ClusterStatus, ControllerStatus, LogDirStatus, LogDirsReport,
        ReplicaSize, Report,
    };
    use crate::output::testing::{json, table_text};

    #[test]
    fn log_dirs_list_directories_replicas_and_silent_brokers() {
        let report = LogDirsReport {
            topic: None,
            log_dirs: vec![
                LogDirStatus {
                    broker_id: 1,
                    path: "/data/b1".to_owned(),
                    error: None,
                    total_bytes: Some(10 * 1024 * 1024 * 1024),
                    usable_bytes: Some(4 * 1024 * 1024 * 1024),
                    replicas: vec![
                        ReplicaSize {
                            topic: "orders".to_owned(),
                            partition: 0,
                            size_bytes: 2048,
                            offset_lag: 0,
                        },
                        ReplicaSize {
                            topic: "orders".to_owned(),
                            partition: 1,
                            size_bytes: 1024,
                            offset_lag: 0,
                        },
                    ],
                },
                LogDirStatus {
                    broker_id: 2,
                    path: "/data/b2".to_owned(),
                    error: Some("KAFKA_STORAGE_ERROR".to_owned()),
                    total_bytes: None,
                    usable_bytes: None,
                    replicas: Vec::new(),
                },
            ],
            failed_brokers: vec![BrokerFailure {
                broker_id: 3,
                error: "cannot connect to 127.0.0.1:1: refused".to_owned(),
            }],
        };
        let text = table_text(&Report::LogDirs(report.clone()));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            rows.contains(&vec![
                "1", "/data/b1", "online", "10.0", "GiB", "4.0", "GiB", "2", "3.0", "KiB"
            ]),
            "{text}"
        );
        assert!(
            rows.contains(&vec![
                "2",
                "/data/b2",
                "KAFKA_STORAGE_ERROR",
                "-",
                "-",
                "0",
                "0",
                "B"
            ]),
            "{text}"
        );
        assert!(
            rows.contains(&vec!["1", "orders", "1", "1.0", "KiB", "1024", "0"]),
            "{text}"
        );
        assert!(
            text.contains("Note: no log directories of broker 3: cannot connect"),
            "{text}"
        );
        let value = json(&Report::LogDirs(report));
        assert_eq!(value["log_dirs"][0]["usable_bytes"], 4u64 << 30);
        assert_eq!(value["log_dirs"][0]["replicas"][0]["size_bytes"], 2048);
        assert_eq!(value["log_dirs"][1]["error"], "KAFKA_STORAGE_ERROR");
        assert_eq!(value["log_dirs"][1]["total_bytes"], Value::Null);
        assert_eq!(value["failed_brokers"][0]["broker_id"], 3);
    }

    fn cluster() -> ClusterStatus {
        ClusterStatus {
            cluster_id: "q1w2e3".to_owned(),
            leader_id: 1,
            controllers: vec![
                ControllerStatus {
                    node_id: 1,
                    address: "127.0.0.1:9093".to_owned(),
                    role: "leader".to_owned(),
                    term: 3,
                    commit_index: 120,
                    applied_index: 119,
                },
                ControllerStatus {
                    node_id: 2,
                    address: "127.0.0.1:9094".to_owned(),
                    role: "unreachable".to_owned(),
                    term: 3,
                    commit_index: -1,
                    applied_index: -1,
                },
            ],
            brokers: vec![BrokerStatus {
                broker_id: 7,
                epoch: 42,
                endpoints: vec!["127.0.0.1:9092".to_owned()],
                rack: None,
                state: BrokerState::Unfenced,
                leader_count: 5,
                offline_log_dir: false,
                cordoned: true,
            }],
            topic_count: 2,
            partition_count: 6,
            leaderless_partitions: 1,
            under_replicated_partitions: 4,
        }
    }

    #[test]
    fn cluster_status_table_shows_every_figure() {
        let text = table_text(&Report::ClusterStatus(cluster()));
        assert!(
            text.contains("Cluster ID:                   q1w2e3"),
            "{text}"
        );
        assert!(text.contains("Active controller:            1"), "{text}");
        assert!(text.contains("Under-replicated partitions:  4"), "{text}");
        let leader_row = text
            .lines()
            .find(|line| line.starts_with("1 "))
            .expect("controller row");
        assert_eq!(
            leader_row.split_whitespace().collect::<Vec<_>>(),
            ["1", "127.0.0.1:9093", "leader", "3", "120", "119"]
        );
        let unreachable_row = text
            .lines()
            .find(|line| line.starts_with("2 "))
            .expect("controller row");
        assert_eq!(
            unreachable_row.split_whitespace().collect::<Vec<_>>(),
            ["2", "127.0.0.1:9094", "unreachable", "3", "-", "-"]
        );
        let broker_row = text
            .lines()
            .find(|line| line.starts_with("7 "))
            .expect("broker row");
        assert_eq!(
            broker_row.split_whitespace().collect::<Vec<_>>(),
            [
                "7",
                "127.0.0.1:9092",
                "-",
                "unfenced",
                "(cordoned)",
                "42",
                "5"
            ]
        );
    }

    #[test]
    fn cluster_status_json_has_stable_field_names() {
        let value = json(&Report::ClusterStatus(cluster()));
        assert_eq!(value["cluster_id"], "q1w2e3");
        assert_eq!(value["leader_id"], 1);
        assert_eq!(value["controllers"][0]["node_id"], 1);
        assert_eq!(value["controllers"][0]["commit_index"], 120);
        assert_eq!(value["controllers"][1]["role"], "unreachable");
        assert_eq!(value["controllers"][1]["applied_index"], -1);
        assert_eq!(value["brokers"][0]["broker_id"], 7);
        assert_eq!(value["brokers"][0]["endpoints"][0], "127.0.0.1:9092");
        assert_eq!(value["brokers"][0]["rack"], Value::Null);
        assert_eq!(value["brokers"][0]["state"], "unfenced");
        assert_eq!(value["brokers"][0]["leader_count"], 5);
        assert_eq!(value["brokers"][0]["cordoned"], true);
        for key in [
            "topic_count",
            "partition_count",
            "leaderless_partitions",
            "under_replicated_partitions",
        ] {
            assert!(value[key].is_u64(), "{key} missing");
        }
    }
}
