//! `bench produce` and `bench consume`: the run's settings and totals as a `Label:  value` block, its
//! notes, then one latency row (produce or fetch, in milliseconds).

use std::io::Write;

use super::{fields, table};

/// The benchmark's settings and totals, its notes, then its latency row.
pub(super) fn report(
    out: &mut impl Write,
    report: &crate::bench::BenchReport,
) -> std::io::Result<()> {
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
