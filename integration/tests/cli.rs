//! `chronikctl` against a running cluster: every command, `--output json`, following the active
//! controller from a follower, and the error cases (one clear line, non-zero exit).

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{active_controller, start, wait_for, TestCluster};

fn chronikctl(controllers: &str, args: &[&str]) -> Output {
    let bin = chronikctl::local::default_bin_dir().join("chronikctl");
    Command::new(&bin)
        .arg("--controllers")
        .arg(controllers)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

fn ok(controllers: &str, args: &[&str]) -> String {
    let out = chronikctl(controllers, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "chronikctl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(controllers: &str, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let stdout = ok(controllers, &all);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Runs a command that must fail; returns its stderr.
fn fails(controllers: &str, args: &[&str]) -> String {
    let out = chronikctl(controllers, args);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "chronikctl {args:?} should fail");
    assert!(
        stderr.starts_with("error:"),
        "one clear error line, got: {stderr}"
    );
    stderr
}

/// The address of one controller that is not the active one.
async fn follower_address(cluster: &TestCluster) -> String {
    let leader = wait_for("an active controller", Duration::from_secs(15), || {
        active_controller(cluster)
    })
    .await;
    cluster
        .controllers
        .iter()
        .find(|c| c.id != leader)
        .map(|c| c.addr.to_string())
        .expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_commands_work_through_a_follower_and_report_json() {
    let cluster = start(3, 3, &[]).await;
    // Only a follower is given: writes must find the active controller themselves.
    let follower = follower_address(&cluster).await;
    let c = follower.as_str();

    let created = ok(
        c,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--config",
            "retention.ms=60000",
        ],
    );
    assert!(created.contains("orders"), "{created}");

    let listed = json(c, &["topic", "list"]);
    // Empty CHRONIK_* variables count as unset (compose files leave them so).
    let bin = chronikctl::local::default_bin_dir().join("chronikctl");
    let with_empty_env = Command::new(&bin)
        .args(["--controllers", c, "topic", "list"])
        .env("CHRONIK_OUTPUT", "")
        .env("CHRONIK_TIMEOUT_MS", "")
        .env("CHRONIK_ADMIN_TOKEN_FILE", "")
        .output()
        .expect("chronikctl runs");
    assert!(
        with_empty_env.status.success()
            && String::from_utf8_lossy(&with_empty_env.stdout).contains("orders"),
        "empty CHRONIK_* variables: {}",
        String::from_utf8_lossy(&with_empty_env.stderr)
    );
    let orders = listed
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "orders"))
        .unwrap_or_else(|| panic!("orders listed: {listed}"));
    assert_eq!(orders["partitions"], 6);
    assert_eq!(orders["replication_factor"], 3);
    assert_eq!(
        orders["topic_id"].as_str().map(str::len),
        Some(22),
        "Kafka-style topic id"
    );

    let described = json(c, &["topic", "describe", "orders"]);
    assert_eq!(described["configs"]["retention.ms"], "60000");
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 6);
    for p in partitions {
        assert_eq!(p["replicas"].as_array().unwrap().len(), 3);
        assert_eq!(p["isr"].as_array().unwrap().len(), 3);
        assert!(p["leader"].as_i64().unwrap() >= 1);
    }
    let table = ok(c, &["topic", "describe", "orders"]);
    assert!(
        table.contains("orders") && table.contains("retention.ms"),
        "{table}"
    );

    ok(
        c,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=1000",
            "--set",
            "cleanup.policy=compact",
        ],
    );
    let described = json(c, &["topic", "describe", "orders"]);
    assert_eq!(described["configs"]["retention.ms"], "1000");
    assert_eq!(described["configs"]["cleanup.policy"], "compact");
    ok(
        c,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "cleanup.policy",
        ],
    );
    let described = json(c, &["topic", "describe", "orders"]);
    assert!(
        described["configs"].get("cleanup.policy").is_none(),
        "{described}"
    );

    let status = json(c, &["cluster", "status"]);
    let controllers = status["controllers"].as_array().unwrap();
    assert_eq!(controllers.len(), 3);
    assert_eq!(
        controllers.iter().filter(|c| c["role"] == "leader").count(),
        1,
        "{status}"
    );
    assert_eq!(
        controllers
            .iter()
            .filter(|c| c["role"] == "follower")
            .count(),
        2,
        "{status}"
    );
    assert!(controllers.iter().all(|c| c["term"].as_u64() > Some(0)));
    let brokers = status["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 3);
    assert!(brokers.iter().all(|b| b["state"] == "unfenced"));
    assert_eq!(status["partition_count"], 6);
    assert_eq!(status["leaderless_partitions"], 0);
    let table = ok(c, &["cluster", "status"]);
    assert!(
        table.contains("leader") && table.contains("unfenced"),
        "{table}"
    );
    let brokers = json(c, &["broker", "list"]);
    assert_eq!(brokers.as_array().map(Vec::len), Some(3), "{brokers}");

    let election = ok(c, &["election", "preferred", "orders"]);
    assert!(election.contains("orders"), "{election}");

    ok(c, &["topic", "delete", "orders"]);
    let listed = json(c, &["topic", "list"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["name"] != "orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_one_clear_error_and_change_nothing() {
    let cluster = start(1, 1, &[]).await;
    let c = cluster.controllers_arg();
    let c = c.as_str();
    ok(
        c,
        &[
            "topic",
            "create",
            "exists",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    );

    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "topic",
                "create",
                "exists",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            "already exists",
        ),
        (
            &[
                "topic",
                "create",
                "big",
                "--partitions",
                "1",
                "--replication-factor",
                "3",
            ],
            "replication factor",
        ),
        (
            &[
                "topic",
                "create",
                "zero",
                "--partitions",
                "0",
                "--replication-factor",
                "1",
            ],
            "partitions",
        ),
        (
            &[
                "topic",
                "create",
                "bad name!",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            "invalid topic name",
        ),
        (
            &[
                "topic",
                "create",
                "..",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            "invalid topic name",
        ),
        (
            &[
                "topic",
                "create",
                "cfg",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
                "--config",
                "no.such.key=1",
            ],
            "no.such.key",
        ),
        (&["topic", "describe", "missing"], "missing"),
        (&["topic", "delete", "missing"], "missing"),
        (
            &[
                "topic",
                "alter-config",
                "exists",
                "--set",
                "retention.ms=forever",
            ],
            "retention.ms",
        ),
    ];
    for (args, expected) in cases {
        let err = fails(c, args);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(expected), "{args:?}: {err}");
    }
    let listed = json(c, &["topic", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["exists"], "nothing else was created");

    // No controller at all.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = fails(&dead, &["topic", "list"]);
    assert!(err.contains("cannot reach any controller"), "{err}");
    drop(cluster);
}
