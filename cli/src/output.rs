//! The only place that prints. A [`Report`] is rendered either as human tables (columns padded to the
//! widest cell, `-` for unknown figures, `none` for a missing leader) or as exactly one pretty JSON document
//! whose field names are the snake_case names of the report structs, so scripts can rely on them. Rendering
//! goes to any `impl Write`, which is how the tests read it.

use std::collections::BTreeMap;
use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::cmd::{
    BrokerStatus, ClusterStatus, CreatedTopic, DeletedGroup, DeletedTopic, ElectionResult,
    GroupDetails, GroupList, OffsetReset, Report, TopicConfigs, TopicDetails, TopicSummary,
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
            Report::Groups(list) => write_json(out, list),
            Report::GroupDetails(group) => write_json(out, group),
            Report::OffsetReset(reset) => write_json(out, reset),
            Report::GroupDeleted(group) => write_json(out, group),
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
                Report::Groups(list) => group_table(out, list)?,
                Report::GroupDetails(group) => group_details(out, group)?,
                Report::OffsetReset(reset) => offset_reset(out, reset)?,
                Report::GroupDeleted(group) => group_deleted(out, group)?,
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

fn group_table(out: &mut impl Write, list: &GroupList) -> std::io::Result<()> {
    let rows = list
        .groups
        .iter()
        .map(|group| {
            vec![
                group.group_id.clone(),
                dash_if_empty(group.state.clone()),
                dash_if_empty(group.protocol_type.clone()),
                group.coordinator.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &["GROUP", "STATE", "PROTOCOL TYPE", "COORDINATOR"],
        &rows,
    )?;
    for failure in &list.failed_brokers {
        writeln!(
            out,
            "Note: broker {} did not answer ListGroups: {}",
            failure.broker_id, failure.error
        )?;
    }
    Ok(())
}

fn group_details(out: &mut impl Write, group: &GroupDetails) -> std::io::Result<()> {
    let protocol = match (group.protocol_type.is_empty(), group.protocol.is_empty()) {
        (true, _) => "-".to_owned(),
        (false, true) => group.protocol_type.clone(),
        (false, false) => format!("{} ({})", group.protocol_type, group.protocol),
    };
    fields(
        out,
        &[
            ("Group", group.group_id.clone()),
            ("State", group.state.clone()),
            ("Protocol", protocol),
            (
                "Coordinator",
                format!("{} ({})", group.coordinator, group.coordinator_address),
            ),
            ("Members", group.members.len().to_string()),
        ],
    )?;
    if !group.members.is_empty() {
        writeln!(out)?;
        let rows = group
            .members
            .iter()
            .map(|member| {
                let assignment = if member.assignment_error.is_some() {
                    "(undecodable, see note)".to_owned()
                } else {
                    dash_if_empty(
                        member
                            .assignment
                            .iter()
                            .map(|topic| {
                                let partitions: Vec<String> =
                                    topic.partitions.iter().map(i32::to_string).collect();
                                format!("{}:{}", topic.topic, partitions.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                };
                vec![
                    member.member_id.clone(),
                    member
                        .group_instance_id
                        .clone()
                        .unwrap_or_else(|| "-".to_owned()),
                    dash_if_empty(member.client_id.clone()),
                    dash_if_empty(member.host.clone()),
                    assignment,
                ]
            })
            .collect::<Vec<_>>();
        table(
            out,
            &[
                "MEMBER ID",
                "INSTANCE ID",
                "CLIENT ID",
                "HOST",
                "ASSIGNMENT",
            ],
            &rows,
        )?;
    }
    writeln!(out)?;
    let rows = group
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                offset_or_dash(p.committed_offset),
                offset_or_dash(p.log_end_offset),
                offset_or_dash(p.lag),
                p.member_id.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED OFFSET",
            "LOG END OFFSET",
            "LAG",
            "MEMBER ID",
        ],
        &rows,
    )?;
    for note in &group.notes {
        writeln!(out, "Note: {note}")?;
    }
    Ok(())
}

fn offset_reset(out: &mut impl Write, reset: &OffsetReset) -> std::io::Result<()> {
    let (lead, tail) = if reset.dry_run {
        ("Dry run: would reset", " Nothing was committed.")
    } else {
        ("Reset", "")
    };
    writeln!(
        out,
        "{lead} the offsets of group '{}' on topic '{}' to {}.{tail}",
        reset.group_id,
        reset.topic,
        reset.target.describe()
    )?;
    writeln!(out)?;
    let rows = reset
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                offset_or_dash(p.previous_offset),
                p.new_offset.to_string(),
                p.log_start_offset.to_string(),
                p.log_end_offset.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "PARTITION",
            "PREVIOUS OFFSET",
            "NEW OFFSET",
            "LOG START OFFSET",
            "LOG END OFFSET",
        ],
        &rows,
    )
}

fn group_deleted(out: &mut impl Write, group: &DeletedGroup) -> std::io::Result<()> {
    writeln!(out, "Deleted group '{}'.", group.group_id)
}

fn offset_or_dash(offset: Option<i64>) -> String {
    offset.map_or_else(|| "-".to_owned(), |offset| offset.to_string())
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

    fn group_details_report() -> GroupDetails {
        use crate::cmd::group::{MemberDetails, PartitionLag};
        use crate::kafka::consumer_protocol::TopicPartitions;
        GroupDetails {
            group_id: "billing".to_owned(),
            state: "Stable".to_owned(),
            protocol_type: "consumer".to_owned(),
            protocol: "range".to_owned(),
            coordinator: 2,
            coordinator_address: "127.0.0.1:9092".to_owned(),
            members: vec![
                MemberDetails {
                    member_id: "m-1".to_owned(),
                    group_instance_id: None,
                    client_id: "rdkafka".to_owned(),
                    host: "/127.0.0.1".to_owned(),
                    assignment: vec![TopicPartitions {
                        topic: "orders".to_owned(),
                        partitions: vec![0, 1],
                    }],
                    assignment_error: None,
                },
                MemberDetails {
                    member_id: "m-2".to_owned(),
                    group_instance_id: Some("static-2".to_owned()),
                    client_id: "rdkafka".to_owned(),
                    host: "/127.0.0.1".to_owned(),
                    assignment: vec![],
                    assignment_error: Some("not a consumer assignment".to_owned()),
                },
            ],
            partitions: vec![
                PartitionLag {
                    topic: "orders".to_owned(),
                    partition: 0,
                    committed_offset: Some(7),
                    log_end_offset: Some(10),
                    lag: Some(3),
                    member_id: Some("m-1".to_owned()),
                },
                PartitionLag {
                    topic: "orders".to_owned(),
                    partition: 1,
                    committed_offset: None,
                    log_end_offset: Some(4),
                    lag: None,
                    member_id: Some("m-1".to_owned()),
                },
            ],
            notes: vec!["the assignment of member 'm-2' (3 bytes) is undecodable".to_owned()],
        }
    }

    #[test]
    fn group_description_shows_members_and_lag() {
        let text = table_text(&Report::GroupDetails(group_details_report()));
        assert!(text.contains("State:        Stable"), "{text}");
        assert!(text.contains("Protocol:     consumer (range)"), "{text}");
        assert!(text.contains("Coordinator:  2 (127.0.0.1:9092)"), "{text}");
        let row = |first: &str| -> Vec<String> {
            text.lines()
                .find(|line| line.starts_with(first))
                .map(|line| line.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            row("m-1"),
            ["m-1", "-", "rdkafka", "/127.0.0.1", "orders:0,1"]
        );
        assert_eq!(
            row("m-2"),
            [
                "m-2",
                "static-2",
                "rdkafka",
                "/127.0.0.1",
                "(undecodable,",
                "see",
                "note)"
            ]
        );
        assert_eq!(row("orders  0"), ["orders", "0", "7", "10", "3", "m-1"]);
        assert_eq!(row("orders  1"), ["orders", "1", "-", "4", "-", "m-1"]);
        assert!(
            text.contains("Note: the assignment of member 'm-2'"),
            "{text}"
        );

        let value = json(&Report::GroupDetails(group_details_report()));
        assert_eq!(value["state"], "Stable");
        assert_eq!(value["coordinator"], 2);
        assert_eq!(value["members"][0]["assignment"][0]["topic"], "orders");
        assert_eq!(
            value["members"][0]["assignment"][0]["partitions"],
            serde_json::json!([0, 1])
        );
        assert_eq!(value["members"][0]["group_instance_id"], Value::Null);
        assert_eq!(value["members"][1]["group_instance_id"], "static-2");
        assert_eq!(value["partitions"][0]["lag"], 3);
        assert_eq!(value["partitions"][1]["committed_offset"], Value::Null);
        assert_eq!(value["partitions"][1]["log_end_offset"], 4);
    }

    #[test]
    fn group_list_notes_brokers_that_did_not_answer() {
        use crate::cmd::group::{BrokerFailure, GroupSummary};
        let list = GroupList {
            groups: vec![GroupSummary {
                group_id: "billing".to_owned(),
                state: "Empty".to_owned(),
                protocol_type: String::new(),
                coordinator: 1,
            }],
            failed_brokers: vec![BrokerFailure {
                broker_id: 3,
                error: "cannot connect".to_owned(),
            }],
        };
        let text = table_text(&Report::Groups(list.clone()));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[1], ["billing", "Empty", "-", "1"]);
        assert!(
            text.contains("Note: broker 3 did not answer ListGroups"),
            "{text}"
        );
        let value = json(&Report::Groups(list));
        assert_eq!(value["groups"][0]["group_id"], "billing");
        assert_eq!(value["failed_brokers"][0]["broker_id"], 3);
    }

    #[test]
    fn offset_resets_show_old_and_new_offsets() {
        use crate::cmd::group::{PartitionReset, ResetTarget};
        let reset = OffsetReset {
            group_id: "billing".to_owned(),
            topic: "orders".to_owned(),
            target: ResetTarget::Offset(5),
            dry_run: true,
            partitions: vec![PartitionReset {
                partition: 0,
                previous_offset: None,
                new_offset: 5,
                log_start_offset: 0,
                log_end_offset: 9,
            }],
        };
        let text = table_text(&Report::OffsetReset(reset.clone()));
        assert!(
            text.starts_with(
                "Dry run: would reset the offsets of group 'billing' on topic 'orders' to offset 5. \
                 Nothing was committed."
            ),
            "{text}"
        );
        let last: Vec<&str> = text
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(last, ["0", "-", "5", "0", "9"]);
        let value = json(&Report::OffsetReset(reset));
        assert_eq!(value["dry_run"], true);
        assert_eq!(
            value["target"],
            serde_json::json!({"to": "offset", "value": 5})
        );
        assert_eq!(value["partitions"][0]["previous_offset"], Value::Null);
        assert_eq!(value["partitions"][0]["new_offset"], 5);
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
