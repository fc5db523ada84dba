//! `bench produce` and `bench consume`: the run's settings and totals as a `Label:  value` block, its
//! notes, then one latency row (produce or fetch, in milliseconds). `bench metadata`: its timings as
//! a `Label:  value` block, then tables of memory, Raft storage and open files by node, then the
//! failover and every failure.

use std::io::Write;

use super::{bytes, fields, number_or_dash, table};

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
            (
                "Broker CPU",
                match &report.broker_cpu {
                    Some(cpu) => format!(
                        "{:.2} s on {} broker(s), {} s per GiB",
                        cpu.cpu_secs,
                        cpu.brokers,
                        cpu.cpu_secs_per_gib
                            .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"))
                    ),
                    None => "not measured (give --metrics-url)".to_owned(),
                },
            ),
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

/// `bench metadata`: the figures in the order they were measured, then memory, Raft storage and open
/// files per node, then the failover and any failure.
pub(super) fn metadata(
    out: &mut impl Write,
    report: &crate::bench::metadata::MetadataBenchReport,
) -> std::io::Result<()> {
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} s"));
    let slowest = |by_broker: &std::collections::BTreeMap<i32, f64>| {
        by_broker.values().copied().reduce(f64::max)
    };
    let per_broker = |by_broker: &std::collections::BTreeMap<i32, f64>| {
        by_broker
            .iter()
            .map(|(id, secs)| format!("{id}: {secs:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let quantiles = |q: &crate::bench::scrape::HistogramQuantiles| match (q.p50_ms, q.p99_ms) {
        (Some(p50), Some(p99)) => format!(
            "p50 {p50:.1} ms, p99 {p99:.1} ms over {} broker applies (buckets: estimates)",
            q.count
        ),
        _ => "no observations".to_owned(),
    };
    let listed = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        match (sorted.first(), sorted.get(sorted.len() / 2), sorted.last()) {
            (Some(min), Some(median), Some(max)) => {
                format!(
                    "min {min:.1} / median {median:.1} / max {max:.1} ms over {}",
                    sorted.len()
                )
            }
            _ => "-".to_owned(),
        }
    };
    let opened: u64 = report.logs_opened.values().sum();
    let open_rate = match (slowest(&report.logs_open_secs), report.logs_opened.len()) {
        (Some(secs), brokers) if secs > 0.0 && brokers > 0 => format!(
            " (about {:.0} logs/s per broker)",
            opened as f64 / brokers as f64 / secs
        ),
        _ => String::new(),
    };
    let settings = report
        .settings
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    writeln!(
        out,
        "Metadata benchmark: {} partition(s) in {} topic(s).",
        report.partitions, report.topics
    )?;
    fields(
        out,
        &[
            ("Settings", settings),
            ("Created", secs(report.create_secs)),
            (
                "Leaders on every broker",
                format!(
                    "{} ({})",
                    secs(slowest(&report.leaders_served_secs)),
                    per_broker(&report.leaders_served_secs)
                ),
            ),
            (
                "Every log open",
                format!(
                    "{} ({}){open_rate}",
                    secs(slowest(&report.logs_open_secs)),
                    per_broker(&report.logs_open_secs)
                ),
            ),
            ("Propagation, bulk", quantiles(&report.propagation_bulk)),
            ("Propagation, single", quantiles(&report.propagation_single)),
            ("Single create", listed(&report.single_create_ms)),
            ("Single visible", listed(&report.single_visible_ms)),
        ],
    )?;
    writeln!(out)?;
    let mib = |b: Option<u64>| b.map_or_else(|| "-".to_owned(), |b| bytes(b as i64));
    let rows: Vec<Vec<String>> = report
        .memory
        .iter()
        .map(|m| {
            let per_partition = match (m.rss_before_bytes, m.rss_after_bytes) {
                (Some(before), Some(after)) if report.partitions > 0 && after > before => {
                    format!("{}", (after - before) / report.partitions)
                }
                _ => "-".to_owned(),
            };
            vec![
                format!("{} {}", m.kind, m.id),
                mib(m.rss_before_bytes),
                mib(m.rss_after_bytes),
                mib(m.peak_rss_bytes),
                per_partition,
            ]
        })
        .collect();
    table(
        out,
        &["NODE", "RSS BEFORE", "RSS AFTER", "PEAK RSS", "B/PARTITION"],
        &rows,
    )?;
    writeln!(out)?;
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = report
        .raft
        .iter()
        .map(|r| {
            vec![
                format!("controller {}", r.id),
                dash(r.log_entries),
                dash(r.snapshot_index),
                mib(r.snapshot_bytes),
                r.snapshot_build_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}")),
                bytes(r.data_dir_bytes as i64),
            ]
        })
        .collect();
    table(
        out,
        &[
            "RAFT",
            "LOG ENTRIES",
            "SNAPSHOT INDEX",
            "SNAPSHOT",
            "SNAPSHOT BUILD MS",
            "DATA DIR",
        ],
        &rows,
    )?;
    writeln!(out)?;
    let rows: Vec<Vec<String>> = report
        .open_files
        .iter()
        .map(|f| {
            vec![
                format!("broker {}", f.id),
                dash(f.hosted_partitions),
                dash(f.open_files),
                dash(f.max_open_files),
                dash(f.segment_files_open),
                dash(f.segment_files_capacity),
                dash(f.segment_file_evictions),
            ]
        })
        .collect();
    table(
        out,
        &[
            "FILES",
            "PARTITIONS",
            "OPEN FILES",
            "LIMIT",
            "SEGMENT FILES OPEN",
            "CACHE CAPACITY",
            "EVICTIONS",
        ],
        &rows,
    )?;
    if let Some(failover) = &report.failover {
        writeln!(out)?;
        fields(
            out,
            &[
                (
                    "Failover",
                    format!(
                        "kill -9 of controller {}; controller {} took the next write after {}",
                        failover.killed_controller,
                        number_or_dash(failover.new_active_controller.map(|id| id as i64)),
                        secs(failover.write_accepted_secs)
                    ),
                ),
                (
                    "Served after failover",
                    secs(failover.visible_on_brokers_secs),
                ),
                ("Brokers switched", secs(failover.brokers_switched_secs)),
                (
                    "Brokers fenced",
                    if failover.brokers_fenced.is_empty() {
                        "none".to_owned()
                    } else {
                        format!("{:?}", failover.brokers_fenced)
                    },
                ),
            ],
        )?;
    }
    for note in &report.notes {
        writeln!(out, "Note: {note}")?;
    }
    for failure in &report.failures {
        writeln!(out, "FAILED: {failure}")?;
    }
    Ok(())
}
