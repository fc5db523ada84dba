//! A small instance of `chronikctl bench metadata` (issue #18) as a test of correctness, not of time:
//! 2,000 partitions (RF 3) on 3 controllers and 3 brokers are each served with a leader by every
//! broker and opened by every broker; single changes reach every broker; the brokers' propagation
//! histogram counted them; an idle partition holds at most one descriptor (its log file, while the
//! broker's descriptor cache keeps it open) and the cache reports itself; and a kill -9 of the
//! active controller is followed by a write another controller accepts, with no broker fenced.

use std::process::Command;

use serde_json::Value;

const PARTITIONS: u64 = 2_000;

#[test]
fn two_thousand_partitions_are_served_and_opened_everywhere_and_survive_a_controller_failover() {
    let bin = chronikctl::local::default_bin_dir().join("chronikctl");
    let cluster_dirs_before = bench_cluster_dirs();
    let out = Command::new(&bin)
        .args(["--output", "json", "bench", "metadata"])
        .args(["--partitions", &PARTITIONS.to_string(), "--probes", "3"])
        .args(["--timeout-secs", "600"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "bench metadata failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["failures"], Value::Array(Vec::new()), "{stdout}");
    // The benchmark's cluster dir goes with it (it was deleted under the running brokers, and
    // most of its files stayed).
    let left: Vec<_> = bench_cluster_dirs()
        .difference(&cluster_dirs_before)
        .cloned()
        .collect();
    assert!(left.is_empty(), "cluster dirs left behind: {left:?}");

    let by_broker = |field: &str| {
        report[field]
            .as_object()
            .unwrap_or_else(|| panic!("{field} missing: {stdout}"))
            .clone()
    };
    assert_eq!(by_broker("leaders_served_secs").len(), 3, "{stdout}");
    assert_eq!(by_broker("logs_open_secs").len(), 3, "{stdout}");
    for (broker, opened) in by_broker("logs_opened") {
        // RF 3 on 3 brokers: every broker replicates every partition.
        assert_eq!(
            opened.as_u64(),
            Some(PARTITIONS),
            "broker {broker}: {stdout}"
        );
    }

    assert_eq!(
        report["single_visible_ms"].as_array().map(Vec::len),
        Some(3)
    );
    let single = &report["propagation_single"];
    assert!(
        single["count"].as_u64().is_some_and(|n| n >= 3),
        "every broker observed the single changes' propagation: {stdout}"
    );
    assert!(single["p99_ms"].is_number(), "{stdout}");

    for files in report["open_files"].as_array().expect("open files") {
        let hosted = files["hosted_partitions"].as_u64().expect("hosted");
        let open = files["open_files"].as_u64().expect("open files");
        assert!(hosted >= PARTITIONS, "{files}");
        // At most one log file per idle partition, and only while the descriptor cache keeps it.
        assert!(
            open < hosted + 500,
            "idle partitions hold more than one descriptor each: {files}"
        );
        let cached = files["segment_files_open"].as_u64().expect("cache gauge");
        let capacity = files["segment_files_capacity"]
            .as_u64()
            .expect("cache capacity");
        assert!(cached <= capacity, "{files}");
        assert!(cached < open, "{files}");
    }

    let failover = &report["failover"];
    assert!(failover["write_accepted_secs"].is_number(), "{stdout}");
    assert!(failover["visible_on_brokers_secs"].is_number(), "{stdout}");
    assert_ne!(
        failover["new_active_controller"], failover["killed_controller"],
        "{stdout}"
    );
    assert_eq!(
        failover["brokers_fenced"],
        Value::Array(Vec::new()),
        "{stdout}"
    );
}

/// The benchmark's temporary cluster dirs that exist now.
fn bench_cluster_dirs() -> std::collections::BTreeSet<std::path::PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("chronik-bench-metadata-"))
                })
                .collect()
        })
        .unwrap_or_default()
}
