//! The only place that prints. A [`Report`] is rendered either as human tables (columns padded to the
//! widest cell, `-` for unknown figures, `none` for a missing leader) or as exactly one pretty JSON document
//! whose field names are the snake_case names of the report structs, so scripts can rely on them. Rendering
//! goes to any `impl Write`, which is how the tests read it.

use std::collections::BTreeMap;
use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::cmd::{
    BrokerStatus, ClusterStatus, CreatedTopic, DeletedTopic, ElectionResult, Report, TopicConfigs,
    TopicDetails, TopicSummary,
};
use crate::error::CliError;

/// How reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables.
    Table,
    /// One pretty-printed JSON document.
    Json,
}

/// Writes `report` to `out` in `format`.
pub fn render(out: &mut impl Write, format: OutputFormat, report: &Report) -> Result<(), CliError> {
    match format {
        OutputFormat::Json => match report {
            Report::ClusterStatus(status) => write_json(out, status),
            Report::Brokers(brokers) => write_json(out, brokers),
            Report::TopicCreated(topic) => write_json(out, topic),
            Report::Topics(topics) => write_json(out, topics),
            Report::TopicDetails(topic) => write_json(out, topic),
            Report::TopicDeleted(topic) => write_json(out, topic),
            Report::TopicConfigs(topic) => write_json(out, topic),
            Report::Election(results) => write_json(out, results),
            Report::Local(cluster) => write_json(out, cluster),
            Report::Bench(report) => write_json(out, report),
            Report::Probe(result) => write_json(out, result),
        },
        OutputFormat::Table => {
            match report {
                Report::ClusterStatus(status) => cluster_status(out, status)?,
                Report::Brokers(brokers) => broker_table(out, brokers)?,
                Report::TopicCreated(topic) => topic_created(out, topic)?,
                Report::Topics(topics) => topic_table(out, topics)?,
                Report::TopicDetails(topic) => topic_details(out, topic)?,
                Report::TopicDeleted(topic) => topic_deleted(out, topic)?,
                Report::TopicConfigs(topic) => topic_configs(out, topic)?,
                Report::Election(results) => election_table(out, results)?,
                Report::Local(cluster) => local_cluster(out, cluster)?,
                Report::Bench(report) => bench_report(out, report)?,
                Report::Probe(result) => writeln!(out, "{} {}", result.status, result.message)?,
            }
            Ok(())
        }
    }
}

/// Renders `report` to a string (for tests and callers that embed the output).
pub fn render_to_string(format: OutputFormat, report: &Report) -> Result<String, CliError> {
    let mut buffer = Vec::new();
    render(&mut buffer, format, report)?;
    String::from_utf8(buffer)
        .map_err(|error| CliError::UnexpectedReply(format!("output is not UTF-8: {error}")))
}

fn write_json(out: &mut impl Write, value: &impl Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn cluster_status(out: &mut impl Write, status: &ClusterStatus) -> std::io::Result<()> {
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
    broker_table(out, &status.brokers)
}

fn broker_table(out: &mut impl Write, brokers: &[BrokerStatus]) -> std::io::Result<()> {
    let rows = brokers
        .iter()
        .map(|broker| {
            vec![
                broker.broker_id.to_string(),
                dash_if_empty(broker.endpoints.join(",")),
                broker.rack.clone().unwrap_or_else(|| "-".to_owned()),
                broker.state.to_string(),
                broker.epoch.to_string(),
                broker.leader_count.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "BROKER ID",
            "ADDRESSES",
            "RACK",
            "STATE",
            "EPOCH",
            "LEADERS",
        ],
        &rows,
    )
}

fn topic_created(out: &mut impl Write, topic: &CreatedTopic) -> std::io::Result<()> {
    writeln!(
        out,
        "Created topic '{}' with {} partition(s) and replication factor {}.",
        topic.name, topic.partitions, topic.replication_factor
    )?;
    fields(out, &[("Topic ID", topic.topic_id.clone())])
}

fn topic_table(out: &mut impl Write, topics: &[TopicSummary]) -> std::io::Result<()> {
    let rows = topics
        .iter()
        .map(|topic| {
            vec![
                topic.name.clone(),
                topic.topic_id.clone(),
                topic.partitions.to_string(),
                topic.replication_factor.to_string(),
                if topic.internal { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "NAME",
            "TOPIC ID",
            "PARTITIONS",
            "REPLICATION FACTOR",
            "INTERNAL",
        ],
        &rows,
    )
}

fn topic_details(out: &mut impl Write, topic: &TopicDetails) -> std::io::Result<()> {
    fields(
        out,
        &[
            ("Topic", topic.name.clone()),
            ("Topic ID", topic.topic_id.clone()),
            ("Configs", config_line(&topic.configs)),
        ],
    )?;
    writeln!(out)?;
    let rows = topic
        .partitions
        .iter()
        .map(|partition| {
            vec![
                partition.partition.to_string(),
                broker_or_none(partition.leader),
                partition.leader_epoch.to_string(),
                broker_list(&partition.replicas),
                broker_list(&partition.isr),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &["PARTITION", "LEADER", "LEADER EPOCH", "REPLICAS", "ISR"],
        &rows,
    )
}

fn topic_deleted(out: &mut impl Write, topic: &DeletedTopic) -> std::io::Result<()> {
    writeln!(out, "Deleted topic '{}'.", topic.name)
}

fn topic_configs(out: &mut impl Write, topic: &TopicConfigs) -> std::io::Result<()> {
    writeln!(out, "Updated configs of topic '{}'.", topic.name)?;
    if topic.configs.is_empty() {
        return writeln!(
            out,
            "No explicit configs remain; every config is the cluster default."
        );
    }
    writeln!(out)?;
    let rows = topic
        .configs
        .iter()
        .map(|(key, value)| vec![key.clone(), value.clone()])
        .collect::<Vec<_>>();
    table(out, &["KEY", "VALUE"], &rows)
}

fn election_table(out: &mut impl Write, results: &[ElectionResult]) -> std::io::Result<()> {
    let rows = results
        .iter()
        .map(|result| {
            let detail = result
                .message
                .clone()
                .or_else(|| result.error.clone())
                .unwrap_or_default();
            vec![
                result.topic.clone(),
                result.partition.to_string(),
                broker_or_none(result.leader),
                result.result.as_str().to_owned(),
                detail,
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &["TOPIC", "PARTITION", "LEADER", "RESULT", "DETAIL"],
        &rows,
    )
}

fn bench_report(out: &mut impl Write, report: &crate::bench::BenchReport) -> std::io::Result<()> {
    use crate::bench::Workload;
    let (what, verb) = match report.workload {
        Workload::Produce => ("Produce", "acknowledged"),
        Workload::Consume => ("Consume", "read"),
    };
    writeln!(
        out,
        "{what} benchmark on topic '{}': {} partition(s) on {} broker(s).",
        report.topic, report.partitions, report.brokers
    )?;
    let settings = report
        .settings
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let errors = report
        .errors
        .iter()
        .map(|(name, count)| format!("{name} x{count}"))
        .collect::<Vec<_>>()
        .join(", ");
    fields(
        out,
        &[
            ("Settings", settings),
            (
                "Messages",
                match report.workload {
                    Workload::Produce => format!(
                        "{} {verb}, {} failed",
                        report.messages, report.failed_messages
                    ),
                    Workload::Consume => format!("{} {verb}", report.messages),
                },
            ),
            (
                "Bytes",
                format!(
                    "{} ({:.1} MiB), record batches {} ({:.1} MiB)",
                    report.bytes,
                    report.bytes as f64 / 1048576.0,
                    report.batch_bytes,
                    report.batch_bytes as f64 / 1048576.0
                ),
            ),
            ("Requests", report.requests.to_string()),
            ("Elapsed", format!("{:.3} s", report.elapsed_secs)),
            (
                "Throughput",
                format!(
                    "{:.0} msgs/s, {:.2} MiB/s",
                    report.messages_per_sec, report.mib_per_sec
                ),
            ),
            (
                "Errors",
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors
                },
            ),
            ("Stopped", report.stopped.describe().to_owned()),
        ],
    )?;
    for note in &report.notes {
        writeln!(out, "Note: {note}")?;
    }
    writeln!(out)?;
    let latency = match report.latency {
        Some(l) => vec![
            l.count.to_string(),
            format!("{:.2}", l.mean_ms),
            format!("{:.2}", l.p50_ms),
            format!("{:.2}", l.p90_ms),
            format!("{:.2}", l.p99_ms),
            format!("{:.2}", l.p999_ms),
            format!("{:.2}", l.max_ms),
        ],
        None => vec![
            "0".to_owned(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ],
    };
    let kind = match report.workload {
        Workload::Produce => "produce",
        Workload::Consume => "fetch",
    };
    let mut row = vec![format!("{kind} (ms)")];
    row.extend(latency);
    table(
        out,
        &[
            "LATENCY", "COUNT", "MEAN", "P50", "P90", "P99", "P99.9", "MAX",
        ],
        &[row],
    )
}

/// `Label:  value` lines with the values aligned.
fn fields(out: &mut impl Write, fields: &[(&str, String)]) -> std::io::Result<()> {
    let width = fields
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    for (label, value) in fields {
        let padding = width - label.chars().count();
        writeln!(out, "{label}:{:padding$}  {value}", "")?;
    }
    Ok(())
}

/// A table with a header row; columns are separated by two spaces and padded to the widest cell.
fn table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    row_line(out, headers.iter().copied(), &widths)?;
    for row in rows {
        row_line(out, row.iter().map(String::as_str), &widths)?;
    }
    Ok(())
}

fn row_line<'a>(
    out: &mut impl Write,
    cells: impl Iterator<Item = &'a str>,
    widths: &[usize],
) -> std::io::Result<()> {
    let mut line = String::new();
    for (cell, width) in cells.zip(widths) {
        let padding = width.saturating_sub(cell.chars().count());
        line.push_str(cell);
        line.push_str(&" ".repeat(padding + 2));
    }
    writeln!(out, "{}", line.trim_end())
}

fn node_or_none(node_id: u64) -> String {
    if node_id == 0 {
        "none".to_owned()
    } else {
        node_id.to_string()
    }
}

fn broker_or_none(broker_id: i32) -> String {
    if broker_id < 0 {
        "none".to_owned()
    } else {
        broker_id.to_string()
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

fn broker_list(brokers: &[i32]) -> String {
    dash_if_empty(
        brokers
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn config_line(configs: &BTreeMap<String, String>) -> String {
    if configs.is_empty() {
        return "(none)".to_owned();
    }
    configs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dash_if_empty(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

fn local_cluster(
    out: &mut impl Write,
    cluster: &crate::cmd::local::LocalClusterView,
) -> Result<(), CliError> {
    writeln!(out, "bootstrap servers: {}", cluster.bootstrap_servers)?;
    writeln!(out, "controllers:       {}", cluster.controllers)?;
    writeln!(out, "logs and data:     {}", cluster.dir)?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<11} {:>3}  {:<22} {:<22} {:>8}  {:<6} LOG",
        "NODE", "ID", "ADDRESS", "HTTP", "PID", "READY"
    )?;
    for n in &cluster.nodes {
        writeln!(
            out,
            "{:<11} {:>3}  {:<22} {:<22} {:>8}  {:<6} {}",
            n.kind,
            n.id,
            n.addr,
            n.http_addr,
            n.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            if n.ready { "yes" } else { "no" },
            n.log_file
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{BrokerState, ControllerStatus, ElectionOutcome, PartitionStatus};
    use serde_json::Value;

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
            }],
            topic_count: 2,
            partition_count: 6,
            leaderless_partitions: 1,
            under_replicated_partitions: 4,
        }
    }

    fn table_text(report: &Report) -> String {
        render_to_string(OutputFormat::Table, report).expect("renders")
    }

    fn json(report: &Report) -> Value {
        let text = render_to_string(OutputFormat::Json, report).expect("renders");
        serde_json::from_str(&text).expect("one JSON document")
    }

    #[test]
    fn tables_pad_columns_and_trim_line_ends() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["ID", "NAME"],
            &[
                vec!["1".to_owned(), "a".to_owned()],
                vec!["100".to_owned(), "bb".to_owned()],
            ],
        )
        .expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "ID   NAME\n1    a\n100  bb\n"
        );
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
            ["7", "127.0.0.1:9092", "-", "unfenced", "42", "5"]
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
        for key in [
            "topic_count",
            "partition_count",
            "leaderless_partitions",
            "under_replicated_partitions",
        ] {
            assert!(value[key].is_u64(), "{key} missing");
        }
    }

    fn details() -> TopicDetails {
        TopicDetails {
            name: "orders".to_owned(),
            topic_id: "AAECAwQFBgcICQoLDA0ODw".to_owned(),
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
            partitions: vec![
                PartitionStatus {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 2,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2],
                },
                PartitionStatus {
                    partition: 1,
                    leader: -1,
                    leader_epoch: 5,
                    replicas: vec![2, 3, 1],
                    isr: vec![],
                },
            ],
        }
    }

    #[test]
    fn topic_description_shows_no_leader_as_none() {
        let text = table_text(&Report::TopicDetails(details()));
        assert!(text.contains("AAECAwQFBgcICQoLDA0ODw"), "{text}");
        assert!(text.contains("retention.ms=1000"), "{text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|line| !line.starts_with("PARTITION"))
            .skip(1)
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["0", "1", "2", "1,2,3", "1,2"],
                vec!["1", "none", "5", "2,3,1", "-"]
            ]
        );

        let value = json(&Report::TopicDetails(details()));
        assert_eq!(value["name"], "orders");
        assert_eq!(value["configs"]["retention.ms"], "1000");
        assert_eq!(value["partitions"][1]["leader"], -1);
        assert_eq!(
            value["partitions"][0]["replicas"],
            serde_json::json!([1, 2, 3])
        );
        assert_eq!(value["partitions"][0]["isr"], serde_json::json!([1, 2]));
        assert_eq!(value["partitions"][0]["leader_epoch"], 2);
    }

    #[test]
    fn topic_list_json_is_an_array() {
        let topics = vec![TopicSummary {
            name: "orders".to_owned(),
            topic_id: "AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            partitions: 3,
            replication_factor: 1,
            internal: false,
        }];
        let value = json(&Report::Topics(topics.clone()));
        assert_eq!(
            value,
            serde_json::json!([{
                "name": "orders",
                "topic_id": "AAAAAAAAAAAAAAAAAAAAAA",
                "partitions": 3,
                "replication_factor": 1,
                "internal": false
            }])
        );
        let text = table_text(&Report::Topics(topics));
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|line| line.starts_with("orders")),
            "{text}"
        );
        assert_eq!(table_text(&Report::Topics(Vec::new())).lines().count(), 1);
    }

    #[test]
    fn election_results_render_per_partition() {
        let results = vec![ElectionResult {
            topic: "orders".to_owned(),
            partition: 0,
            leader: 2,
            result: ElectionOutcome::Failed,
            error: Some("PREFERRED_LEADER_NOT_AVAILABLE".to_owned()),
            message: None,
        }];
        let text = table_text(&Report::Election(results.clone()));
        assert!(text.contains("PREFERRED_LEADER_NOT_AVAILABLE"), "{text}");
        let value = json(&Report::Election(results));
        assert_eq!(value[0]["result"], "failed");
        assert_eq!(value[0]["partition"], 0);
    }
}
