//! `chronikctl bench` against a real one-broker cluster: what `bench produce` reports as acknowledged,
//! over every codec and acks setting with pipelined requests, is exactly what `bench consume` then
//! reads back; answers to pipelined produces carry rising offsets; a missing topic fails with one line.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{create_topic, start, wait_for};

fn chronikctl(args: &[&str]) -> Output {
    let bin = chronikctl::local::default_bin_dir().join("chronikctl");
    Command::new(&bin)
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// Runs a benchmark that must succeed; returns its JSON report.
fn bench(args: &[&str]) -> Value {
    let out = chronikctl(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "chronikctl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Produces 3 messages once the broker hosts the topic's new partitions (it may take a moment after
/// the controller created them); returns how many were acknowledged, counting those of earlier
/// attempts that failed on some partition but not on all (their report is printed all the same).
async fn first_produce(servers: &str, topic: &str) -> u64 {
    let acknowledged = std::cell::Cell::new(0u64);
    wait_for(
        "the broker to accept produces",
        Duration::from_secs(30),
        || async {
            let out = chronikctl(&[
                "bench",
                "produce",
                "--bootstrap-servers",
                servers,
                "--topic",
                topic,
                "--messages",
                "3",
                "--batch-size",
                "1",
                "--timeout-secs",
                "10",
            ]);
            let report: Value = serde_json::from_slice(&out.stdout).ok()?;
            acknowledged.set(acknowledged.get() + report["messages"].as_u64().unwrap_or(0));
            out.status.success().then(|| acknowledged.get())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_reads_back_exactly_what_produce_acknowledged() {
    let cluster = start(
        1,
        1,
        &[
            "--default-replication-factor=1",
            "--default-min-insync-replicas=1",
        ],
    )
    .await;
    create_topic(&cluster, "bench", 3, 1).await;
    let servers = cluster.bootstrap_servers();
    let servers = servers.as_str();

    let mut produced = first_produce(servers, "bench").await;

    for (acks, compression, record_size) in [
        ("all", "none", "100"),
        ("1", "gzip", "100"),
        ("all", "snappy", "1KiB"),
        ("1", "lz4", "100"),
        ("0", "zstd", "100"),
    ] {
        let report = bench(&[
            "bench",
            "produce",
            "--bootstrap-servers",
            servers,
            "--topic",
            "bench",
            "--messages",
            "6000",
            "--record-size",
            record_size,
            "--key-size",
            "16",
            "--values",
            "text",
            "--batch-size",
            "4KiB",
            "--in-flight",
            "8",
            "--connections",
            "2",
            "--acks",
            acks,
            "--compression",
            compression,
            "--timeout-secs",
            "60",
        ]);
        let case = format!("acks={acks} compression={compression}");
        assert_eq!(report["workload"], "produce", "{case}");
        assert_eq!(report["messages"], 6000, "{case}: {report}");
        assert_eq!(report["failed_messages"], 0, "{case}: {report}");
        assert_eq!(report["errors"], json!({}), "{case}: {report}");
        assert_eq!(report["stopped"], "completed", "{case}");
        assert_eq!(report["partitions"], 3, "{case}");
        let notes = report["notes"].as_array().expect("notes");
        assert!(
            notes
                .iter()
                .all(|n| !n.as_str().unwrap_or_default().contains("reordered")),
            "{case}: {notes:?}"
        );
        if acks == "0" {
            assert_eq!(report["latency"], Value::Null, "{case}");
        } else {
            assert!(report["latency"]["count"].as_u64() >= Some(1), "{case}");
            assert!(report["latency"]["p99_ms"].as_f64() > Some(0.0), "{case}");
        }
        produced += 6000;
    }

    // Everything below the high watermark, counted from batch headers only.
    let report = bench(&[
        "bench",
        "consume",
        "--bootstrap-servers",
        servers,
        "--topic",
        "bench",
        "--fetch-max-bytes",
        "64KiB",
        "--timeout-secs",
        "60",
    ]);
    assert_eq!(report["workload"], "consume");
    assert_eq!(report["messages"], produced, "{report}");
    assert_eq!(report["errors"], json!({}), "{report}");
    assert_eq!(report["stopped"], "completed");
    assert!(
        report["requests"].as_u64() > Some(3),
        "64 KiB fetches: {report}"
    );

    // A count: stops once reached, even though more is there.
    let report = bench(&[
        "bench",
        "consume",
        "--bootstrap-servers",
        servers,
        "--topic",
        "bench",
        "--partitions",
        "1",
        "--messages",
        "10",
    ]);
    assert!(report["messages"].as_u64() >= Some(10), "{report}");
    assert!(report["messages"].as_u64() < Some(produced), "{report}");
    assert_eq!(report["partitions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmarks_fail_with_one_line_and_stop_by_themselves() {
    let cluster = start(
        1,
        1,
        &[
            "--default-replication-factor=1",
            "--default-min-insync-replicas=1",
        ],
    )
    .await;
    let servers = cluster.bootstrap_servers();

    let out = chronikctl(&[
        "bench",
        "produce",
        "--bootstrap-servers",
        &servers,
        "--topic",
        "missing",
        "--messages",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error:") && stderr.contains("'missing' does not exist"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Asking for more than there is: the timeout ends the run, the report is still printed.
    create_topic(&cluster, "small", 1, 1).await;
    let available = first_produce(&servers, "small").await;
    let wanted = (available + 5).to_string();
    let out = chronikctl(&[
        "bench",
        "consume",
        "--bootstrap-servers",
        &servers,
        "--topic",
        "small",
        "--messages",
        &wanted,
        "--fetch-max-wait-ms",
        "100",
        "--timeout-secs",
        "2",
    ]);
    assert!(!out.status.success(), "a run that timed out fails");
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is printed");
    assert_eq!(report["stopped"], "timeout");
    assert_eq!(report["messages"], available);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the benchmark timed out"), "{stderr}");
}
