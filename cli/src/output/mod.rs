//! The only place that prints. A [`Report`] is rendered either as human tables (columns padded to the
//! widest cell, `-` for unknown figures, `none` for a missing leader) or as exactly one pretty JSON document
//! whose field names are the snake_case names of the report structs, so scripts can rely on them. Rendering
//! goes to any `impl Write`, which is how the tests read it.
//!
//! This file owns the dispatch from a [`Report`] to its renderer, the JSON path (the same for every report)
//! and the table machinery the renderers share: `fields` for `Label:  value` blocks, `table` for padded
//! columns, and the cell formatters more than one noun uses (`bytes` for sizes, `number_or_dash`). The
//! table renderers live one file per noun, mirroring `cmd/`: `cluster`, `broker`, `topic` (and
//! `trim_prefix`), `group`, `election`, `reassign`, `local`, `probe`, `secrets`, and `bench` for the
//! benchmarks.

mod acl;
mod bench;
mod broker;
mod cluster;
mod election;
mod features;
mod group;
mod local;
mod probe;
mod produce;
mod quorum;
mod quota;
mod reassign;
pub mod record;
mod secrets;
mod topic;
mod trim_prefix;
mod txn;
mod user;

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::cmd::Report;
use crate::error::CliError;

/// How reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables.
    Table,
    /// One pretty-printed JSON document (`topic consume`: one JSON object per record and line).
    Json,
    /// One YAML document, with the same fields as JSON (`topic consume`: one document per record).
    Yaml,
}

/// Writes `report` to `out` in `format`.
pub fn render(out: &mut impl Write, format: OutputFormat, report: &Report) -> Result<(), CliError> {
    match format {
        // The records were the output.
        _ if matches!(report, Report::Consumed(_)) => Ok(()),
        OutputFormat::Json => write_json(out, report),
        OutputFormat::Yaml => write_yaml(out, report),
        OutputFormat::Table => {
            match report {
                Report::ClusterStatus(status) => cluster::status(out, status)?,
                Report::LogDirs(report) => cluster::log_dirs(out, report)?,
                Report::Brokers(brokers) => broker::list(out, brokers)?,
                Report::TopicCreated(topic) => topic::created(out, topic)?,
                Report::Topics(topics) => topic::list(out, topics)?,
                Report::TopicDetails(topic) => topic::details(out, topic)?,
                Report::TopicDeleted(topic) => topic::deleted(out, topic)?,
                Report::TopicConfigs(topic) => topic::configs_updated(out, topic)?,
                Report::PartitionsAdded(topic) => topic::partitions_added(out, topic)?,
                Report::ClusterConfigs(configs) => cluster::configs(out, configs)?,
                Report::PrefixTrim(trim) => trim_prefix::trimmed(out, trim)?,
                Report::Groups(list) => group::list(out, list)?,
                Report::Transactions(list) => txn::list(out, list)?,
                Report::TransactionDetails(t) => txn::details(out, t)?,
                Report::GroupDetails(group) => group::details(out, group)?,
                Report::OffsetReset(reset) => group::offset_reset(out, reset)?,
                Report::GroupDeleted(group) => group::deleted(out, group)?,
                Report::OffsetsDeleted(deletion) => group::offsets_deleted(out, deletion)?,
                Report::Produced(report) => produce::produced(out, report)?,
                Report::Consumed(_) => {}
                Report::Election(results) => election::results(out, results)?,
                Report::Moves(report) => reassign::moves(out, report)?,
                Report::Reassignments(listed) => reassign::reassignments(out, listed)?,
                Report::Local(cluster) => local::cluster(out, cluster)?,
                Report::Bench(report) => bench::report(out, report)?,
                Report::MetadataBench(report) => bench::metadata(out, report)?,
                Report::Probe(result) => probe::result(out, result)?,
                Report::Acls(report) => acl::report(out, report)?,
                Report::Users(report) => user::report(out, report)?,
                Report::Quotas(report) => quota::report(out, report)?,
                Report::Secrets(report) => secrets::report(out, report)?,
                Report::Features(report) => features::report(out, report)?,
                Report::Quorum(report) => quorum::report(out, report)?,
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

/// One YAML document, opened with `---` so that several (one per consumed record) form a stream.
fn write_yaml(out: &mut impl Write, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_norway::to_string(value)
        .map_err(|error| CliError::Output(std::io::Error::other(error)))?;
    out.write_all(b"---\n")?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Writes the `shell` completion script of `command` (the whole command line) to `out`.
pub fn completion(
    out: &mut impl Write,
    shell: clap_complete::Shell,
    command: &mut clap::Command,
) -> Result<(), CliError> {
    clap_complete::generate(shell, command, "chronikctl", out);
    Ok(())
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

/// A broker id; a negative one means no leader.
/// `key=value` pairs joined by `, `, or `empty` when there are none.
fn key_values<K: std::fmt::Display, V: std::fmt::Display>(
    pairs: impl IntoIterator<Item = (K, V)>,
    empty: &str,
) -> String {
    let joined = pairs
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ");
    if joined.is_empty() {
        empty.to_owned()
    } else {
        joined
    }
}

fn broker_or_none(broker_id: i32) -> String {
    if broker_id < 0 {
        "none".to_owned()
    } else {
        broker_id.to_string()
    }
}

/// A byte count for people: `B` below 1 KiB, else KiB/MiB/GiB/TiB with one decimal.
fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// A figure that may be unknown: the number, or `-`.
fn number_or_dash(n: Option<i64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// `-` for an empty cell.
fn dash_if_empty(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod testing {
    //! What the renderers' tests share: a report rendered as table text, or parsed back from JSON.

    use serde_json::Value;

    use super::{render_to_string, OutputFormat};
    use crate::cmd::Report;

    pub(super) fn table_text(report: &Report) -> String {
        render_to_string(OutputFormat::Table, report).expect("renders")
    }

    pub(super) fn json(report: &Report) -> Value {
        let text = render_to_string(OutputFormat::Json, report).expect("renders");
        serde_json::from_str(&text).expect("one JSON document")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_the_json_document_and_json_is_the_inner_report() {
        use crate::cmd::group::{OffsetDeletion, PartitionOffsetDeletion};
        let report = Report::OffsetsDeleted(OffsetDeletion {
            group_id: "g".to_owned(),
            topic: "t".to_owned(),
            partitions: vec![PartitionOffsetDeletion {
                partition: 0,
                deleted: false,
                error: Some("GROUP_SUBSCRIBED_TO_TOPIC".to_owned()),
                error_code: 86,
            }],
        });
        let json = testing::json(&report);
        assert_eq!(
            json,
            serde_json::json!({"group_id": "g", "topic": "t", "partitions": [
                {"partition": 0, "deleted": false, "error": "GROUP_SUBSCRIBED_TO_TOPIC"}]})
        );
        let yaml = render_to_string(OutputFormat::Yaml, &report).expect("renders");
        assert!(yaml.starts_with("---\n"), "{yaml}");
        let parsed: serde_json::Value = serde_norway::from_str(&yaml).expect("YAML");
        assert_eq!(parsed, json);
        let table = testing::table_text(&report);
        assert!(
            table.contains("0          refused  GROUP_SUBSCRIBED_TO_TOPIC"),
            "{table}"
        );
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(bytes(3 << 50), "3072.0 TiB");
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
}
