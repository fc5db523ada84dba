//! `chronikctl local up/status/down` as a user runs them: real processes started detached on loopback,
//! ready when `up` returns, described by `status`, stopped by `down` with their data kept, and resumed
//! on the same ports by the next `up`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn chronikctl(args: &[&str]) -> Output {
    let bin = chronikctl::local::default_bin_dir().join("chronikctl");
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

fn ok(args: &[&str]) -> String {
    let out = chronikctl(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "chronikctl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn local_json(command: &str, dir: &Path, extra: &[&str]) -> Value {
    let dir = dir.to_str().expect("utf-8 temp dir");
    let mut args = vec!["--output", "json", "local", command, "--dir", dir];
    args.extend_from_slice(extra);
    let stdout = ok(&args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Takes the detached cluster down whatever happens to the test.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = chronikctl(&["local", "down", "--dir", &self.0.display().to_string()]);
    }
}

fn nodes(view: &Value) -> &Vec<Value> {
    view["nodes"].as_array().expect("nodes")
}

fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

#[test]
fn local_up_status_and_down_run_and_resume_a_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_dir = dir.path().join("cluster");
    let _down = Down(cluster_dir.clone());

    let up = local_json(
        "up",
        &cluster_dir,
        &["--controllers", "3", "--brokers", "2"],
    );
    let all = nodes(&up);
    assert_eq!(all.len(), 5, "{up}");
    for node in all {
        assert_eq!(node["ready"], true, "ready when `up` returns: {node}");
        assert!(node["pid"].as_u64().is_some_and(pid_alive), "{node}");
        let log = std::fs::read_to_string(node["log_file"].as_str().expect("log file"))
            .expect("a log file per node");
        assert!(!log.is_empty(), "the node logged something: {node}");
        assert!(Path::new(node["data_dir"].as_str().expect("data dir")).is_dir());
    }
    let bootstrap = up["bootstrap_servers"].as_str().expect("bootstrap servers");
    let brokers: Vec<&str> = bootstrap.split(',').collect();
    assert_eq!(brokers.len(), 2, "{bootstrap}");
    for broker in &brokers {
        TcpStream::connect(broker).unwrap_or_else(|e| panic!("Kafka listener {broker}: {e}"));
    }
    // The controllers it prints are the ones chronikctl talks to.
    let controllers = up["controllers"].as_str().expect("controllers");
    let registered: Value = serde_json::from_str(&ok(&[
        "--controllers",
        controllers,
        "--output",
        "json",
        "broker",
        "list",
    ]))
    .expect("JSON");
    assert_eq!(registered.as_array().map(Vec::len), Some(2), "{registered}");

    // The table form says where everything is.
    let table = ok(&["local", "status", "--dir", cluster_dir.to_str().unwrap()]);
    assert!(
        table.contains(&format!("bootstrap servers: {bootstrap}")),
        "{table}"
    );
    assert!(table.contains("broker-1.log"), "{table}");

    let down = local_json("down", &cluster_dir, &[]);
    let pids: Vec<u64> = all.iter().filter_map(|n| n["pid"].as_u64()).collect();
    for node in nodes(&down) {
        assert_eq!(node["ready"], false, "{node}");
        assert!(node["pid"].is_null(), "{node}");
    }
    assert!(
        pids.iter().all(|pid| !pid_alive(*pid)),
        "every process exited"
    );
    let status = local_json("status", &cluster_dir, &[]);
    assert!(nodes(&status).iter().all(|n| n["ready"] == false));

    // `up` again resumes the same cluster: same ports, same data dirs, all ready.
    let again = local_json("up", &cluster_dir, &[]);
    assert_eq!(again["bootstrap_servers"], up["bootstrap_servers"]);
    assert_eq!(again["controllers"], up["controllers"]);
    assert!(nodes(&again).iter().all(|n| n["ready"] == true), "{again}");

    // A broker that exits is reported as such.
    let broker_pid = nodes(&again)
        .iter()
        .find(|n| n["kind"] == "broker")
        .and_then(|n| n["pid"].as_u64())
        .expect("a broker pid");
    ok(&[
        "local",
        "kill",
        "broker",
        "1",
        "--dir",
        cluster_dir.to_str().unwrap(),
    ]);
    assert!(!pid_alive(broker_pid));
    let status = local_json("status", &cluster_dir, &[]);
    let broker_1 = nodes(&status)
        .iter()
        .find(|n| n["kind"] == "broker" && n["id"] == 1)
        .expect("broker 1");
    assert_eq!(broker_1["ready"], false, "{broker_1}");
    assert!(broker_1["pid"].is_null(), "{broker_1}");
    local_json("down", &cluster_dir, &[]);
}

#[test]
fn local_up_rejects_bad_counts_and_names_missing_binaries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().unwrap();
    for (args, expected) in [
        (
            vec!["local", "up", "--dir", d, "--controllers", "2"],
            "--controllers must be 1, 3 or 5",
        ),
        (
            vec!["local", "up", "--dir", d, "--brokers", "0"],
            "--brokers must be at least 1",
        ),
        (
            vec!["local", "up", "--dir", d, "--listener", "NO-GOOD"],
            "letters, digits and '_'",
        ),
        (
            vec!["local", "up", "--dir", d, "--bin-dir", d],
            "not found; build it with `cargo build",
        ),
        (vec!["local", "status", "--dir", d], "no local cluster in"),
    ] {
        let out = chronikctl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.starts_with("error:") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
}
