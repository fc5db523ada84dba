//! The secured control plane (docs/security.md, "Control plane"): controllers with TLS and the admin
//! and cluster tokens elect a leader and replicate; a broker with the cluster token registers and one
//! without it, or with a wrong one, is refused and says why; chronikctl's client works with the admin
//! token and is refused, with a clear error, without it, with a wrong one, in plaintext, and with a
//! certificate from another CA; health endpoints stay open; no token reaches a log file; followers
//! watch the active controller over mutual TLS.

use std::path::Path;
use std::time::Duration;

use chronik_control_auth::{ClientCredentials, ClientFiles};
use chronik_proto::v1 as pb;
use chronikctl::local::http_client;
use chronikctl::local_control_plane::ControlPlaneFiles;
use chronikctl::ControllerClient;

use crate::harness::{start_with, wait_for};

fn controllers(cluster: &chronikctl::local::LocalCluster) -> Vec<String> {
    cluster
        .controllers
        .iter()
        .map(|c| c.addr.to_string())
        .collect()
}

fn client_for(
    cluster: &chronikctl::local::LocalCluster,
    credentials: ClientCredentials,
) -> ControllerClient {
    ControllerClient::new(controllers(cluster), Duration::from_secs(3))
        .expect("client")
        .with_credentials(credentials)
}

fn load(files: ClientFiles) -> ClientCredentials {
    ClientCredentials::load(&files, "token").expect("credentials load")
}

fn creatable(name: &str) -> pb::CreateTopicsRequest {
    pb::CreateTopicsRequest {
        topics: vec![pb::CreatableTopic {
            name: name.to_string(),
            num_partitions: 2,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Vec::new(),
        }],
        validate_only: false,
    }
}

/// Every log file under `dir`, concatenated.
fn all_logs(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("cluster dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

fn token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("token")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_quorum_serves_brokers_and_admins_with_their_tokens_and_refuses_everyone_else() {
    let mut cluster = start_with(3, 1, |spec| {
        spec.secure_control_plane = true;
        spec.controller_args = vec!["--default-replication-factor".into(), "1".into()];
    })
    .await;
    let files = cluster
        .control_plane
        .clone()
        .expect("secured control plane");
    let admin = client_for(&cluster, cluster.controller_credentials().unwrap());

    // The admin token creates and deletes topics; every controller replicates them.
    let created = admin
        .create_topics(creatable("secured"))
        .await
        .expect("create");
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    let http = http_client(&cluster.controller_credentials().unwrap()).unwrap();
    for controller in &cluster.controllers {
        let url = format!("https://{}/api/v1/cluster", controller.http_addr);
        let http = &http;
        wait_for(
            "every controller to have the topic",
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move {
                    let view: serde_json::Value =
                        http.get(&url).send().await.ok()?.json().await.ok()?;
                    (view["topic_count"].as_u64()? >= 1).then_some(())
                }
            },
        )
        .await;
    }

    // The broker registered with the cluster token and is unfenced.
    wait_for("broker 1 unfenced", Duration::from_secs(15), || async {
        let reply = admin.describe_cluster().await.ok()?;
        reply
            .brokers
            .iter()
            .any(|b| b.broker_id == 1 && b.state == pb::BrokerState::Unfenced as i32)
            .then_some(())
    })
    .await;

    // Refusals, each with a clear error.
    let ca_only = load(ClientFiles {
        ca: Some(files.ca()),
        ..ClientFiles::default()
    });
    let error = client_for(&cluster, ca_only)
        .create_topics(creatable("no-token"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("refused the credentials") && error.contains("pass --admin-token-file"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let wrong_token = dir.path().join("wrong.token");
    std::fs::write(&wrong_token, "not-the-admin-token-0123456789").unwrap();
    let wrong = load(ClientFiles {
        ca: Some(files.ca()),
        token: Some(wrong_token.clone()),
        ..ClientFiles::default()
    });
    let error = client_for(&cluster, wrong)
        .list_topics()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("refused the credentials") && error.contains("neither"),
        "{error}"
    );

    let plaintext = load(ClientFiles {
        token: Some(files.admin_token()),
        ..ClientFiles::default()
    });
    let error = client_for(&cluster, plaintext)
        .list_topics()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("pass --controller-tls-ca"), "{error}");

    let other_ca = ControlPlaneFiles::generate(dir.path(), 1).unwrap();
    let foreign = load(ClientFiles {
        ca: Some(other_ca.ca()),
        token: Some(files.admin_token()),
        ..ClientFiles::default()
    });
    let error = client_for(&cluster, foreign)
        .list_topics()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("certificate"), "{error}");

    // Health stays open over HTTPS; the cluster view wants a token.
    let anonymous = http_client(&ca_only_credentials(&files)).unwrap();
    let http_addr = cluster.controllers[0].http_addr;
    let ready = anonymous
        .get(format!("https://{http_addr}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    assert!(ready.status().is_success(), "{}", ready.status());
    let view = anonymous
        .get(format!("https://{http_addr}/api/v1/cluster"))
        .send()
        .await
        .expect("answers");
    assert_eq!(view.status().as_u16(), 401);

    // The admin token deletes the topic.
    let deleted = admin
        .delete_topics(pb::DeleteTopicsRequest {
            names: vec!["secured".into()],
            topic_ids: Vec::new(),
        })
        .await
        .expect("delete");
    assert_eq!(deleted.topics[0].error_code, 0);

    // The chronikctl binary, with the credentials from the environment, and without the token.
    let controllers_arg = cluster.controllers_arg();
    let ctl = |token: Option<&Path>, args: &[&str]| {
        let mut command =
            std::process::Command::new(chronikctl::local::default_bin_dir().join("chronikctl"));
        command
            .env("CHRONIK_CONTROLLER_TLS_CA", files.ca())
            .env_remove("CHRONIK_ADMIN_TOKEN_FILE")
            .args(["--controllers", &controllers_arg])
            .args(args);
        if let Some(token) = token {
            command.env("CHRONIK_ADMIN_TOKEN_FILE", token);
        }
        command.output().expect("chronikctl runs")
    };
    let admin_token = files.admin_token();
    for args in [
        &["topic", "create", "via-cli"][..],
        &["topic", "delete", "via-cli"],
    ] {
        let out = ctl(Some(&admin_token), args);
        assert!(
            out.status.success(),
            "chronikctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ctl(None, &["topic", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: the controller")
            && stderr.contains("refused the credentials")
            && stderr.contains("pass --admin-token-file"),
        "{stderr}"
    );

    // A broker with a wrong token, then with the admin token, then with none: refused, and it says why.
    for (case, token_file, expected) in [
        ("wrong token", Some(wrong_token.clone()), "neither"),
        (
            "admin token",
            Some(files.admin_token()),
            "does not grant BrokerService",
        ),
        ("no token", None, "requires credentials"),
    ] {
        let broker = cluster.broker(1).unwrap();
        broker.kill().unwrap();
        std::fs::write(&broker.log_file, "").unwrap();
        match &token_file {
            Some(path) => {
                assert!(broker.set_arg("--controller-token-file", &path.display().to_string()))
            }
            None => assert!(broker.remove_arg("--controller-token-file")),
        }
        broker.start("info").unwrap();
        let log_file = broker.log_file.clone();
        wait_for(case, Duration::from_secs(15), || {
            let log_file = log_file.clone();
            async move {
                let log = std::fs::read_to_string(&log_file).ok()?;
                (log.contains("cannot register with the controller") && log.contains(expected))
                    .then_some(())
            }
        })
        .await;
    }

    // No token in any log file.
    let logs = all_logs(&cluster.spec.dir);
    for secret in [
        token(&files.admin_token()),
        token(&files.cluster_token()),
        token(&wrong_token),
    ] {
        assert!(!logs.contains(&secret), "a token leaked into the logs");
    }
}

fn ca_only_credentials(files: &ControlPlaneFiles) -> ClientCredentials {
    load(ClientFiles {
        ca: Some(files.ca()),
        ..ClientFiles::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_required_client_certificates_a_certificate_authenticates_and_a_foreign_one_is_refused(
) {
    // Controllers verify each other's certificates (Raft), and the broker's.
    let cluster = start_with(3, 1, |spec| {
        spec.secure_control_plane = true;
        spec.log_filter = "info,chronik_controller::raft::departure=debug".into();
        spec.controller_args = [
            "--tls-client-auth",
            "required",
            "--default-replication-factor",
            "1",
        ]
        .map(String::from)
        .to_vec();
        let broker_certificate = spec.dir.join("control-plane").join("broker.pem");
        spec.broker_args = vec![
            "--controller-tls-certificate".into(),
            broker_certificate.display().to_string(),
            "--controller-tls-key".into(),
            broker_certificate
                .with_extension("key")
                .display()
                .to_string(),
        ];
    })
    .await;
    let files = cluster
        .control_plane
        .clone()
        .expect("secured control plane");
    let (certificate, key) = files.client_certificate();

    // A verified certificate is enough: no token.
    let certified = load(ClientFiles {
        ca: Some(files.ca()),
        certificate: Some(certificate),
        key: Some(key),
        token: None,
    });
    let certified = client_for(&cluster, certified);
    let created = certified
        .create_topics(creatable("by-certificate"))
        .await
        .expect("CreateTopics with a client certificate");
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    wait_for("broker 1 unfenced", Duration::from_secs(15), || async {
        let reply = certified.describe_cluster().await.ok()?;
        reply
            .brokers
            .iter()
            .any(|b| b.broker_id == 1 && b.state == pb::BrokerState::Unfenced as i32)
            .then_some(())
    })
    .await;

    // No certificate: the handshake fails. A certificate of another CA: refused too.
    let dir = tempfile::tempdir().unwrap();
    let other = ControlPlaneFiles::generate(dir.path(), 1).unwrap();
    let (foreign_certificate, foreign_key) = other.client_certificate();
    for (case, credentials, expected) in [
        (
            "no certificate",
            ca_only_credentials(&files),
            "pass --controller-tls-cert",
        ),
        (
            "foreign certificate",
            load(ClientFiles {
                ca: Some(files.ca()),
                certificate: Some(foreign_certificate),
                key: Some(foreign_key),
                token: None,
            }),
            "is the client certificate signed by its CA",
        ),
    ] {
        let error = client_for(&cluster, credentials)
            .list_topics()
            .await
            .expect_err(case);
        assert!(error.to_string().contains(expected), "{case}: {error}");
    }

    // Health stays open over HTTPS without a client certificate.
    let anonymous = http_client(&ca_only_credentials(&files)).unwrap();
    let ready = anonymous
        .get(format!(
            "https://{}/readyz",
            cluster.controllers[0].http_addr
        ))
        .send()
        .await
        .expect("readyz answers");
    assert!(ready.status().is_success());

    // The followers watch the active controller over the same mutual TLS (`raft/departure.rs`).
    // A refused certificate shows only once the connection is used (TLS 1.3), as a watch that ends:
    // once both followers watch, give their keepalive (1 s) time to use it.
    let log = |controller: &chronikctl::local::Node| {
        std::fs::read_to_string(&controller.log_file).unwrap_or_default()
    };
    wait_for(
        "the followers watching the leader",
        Duration::from_secs(10),
        || async {
            let watching = cluster
                .controllers
                .iter()
                .filter(|c| log(c).contains("watching the active controller"))
                .count();
            (watching >= 2).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for controller in &cluster.controllers {
        let log = log(controller);
        assert!(
            !log.contains("cannot watch the active controller"),
            "controller {}: {log}",
            controller.id
        );
        assert!(
            !log.lines().any(|line| {
                line.contains("the watch of the active controller ended") && line.contains("Closed")
            }),
            "controller {}: {log}",
            controller.id
        );
    }
}
