//! `chronikctl local`: a cluster of real processes on this machine (see `crate::local`). `up` starts it
//! detached and records it in `DIR/cluster.json`; the other commands find it there.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{LocalCommand, LocalNodeArgs, LocalUpArgs};
use crate::error::CliError;
use crate::local::{
    build_under_cargo_run, default_bin_dir, http_client, wait_http_ok_with, ClusterSpec,
    LocalCluster, LocalError, NodeListener, STATE_FILE,
};

/// How long a stopping node may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalNodeView {
    pub kind: String,
    pub id: u64,
    pub addr: String,
    /// A broker's named listeners, when the cluster has several.
    pub listeners: Vec<NodeListener>,
    pub http_addr: String,
    pub data_dir: String,
    pub log_file: String,
    pub pid: Option<u32>,
    pub ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalClusterView {
    pub dir: String,
    pub bootstrap_servers: String,
    /// The librdkafka properties of a secured cluster's super user (`local up --security`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_properties: Option<String>,
    pub controllers: String,
    /// With a secured control plane: what chronikctl needs to reach it.
    pub control_plane: Option<ControlPlaneView>,
    pub nodes: Vec<LocalNodeView>,
}

/// The files chronikctl uses against a secured local control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlPlaneView {
    /// For --controller-tls-ca / CHRONIK_CONTROLLER_TLS_CA.
    pub controller_tls_ca: String,
    /// For --admin-token-file / CHRONIK_ADMIN_TOKEN_FILE.
    pub admin_token_file: String,
}

fn local_error(e: LocalError) -> CliError {
    CliError::Local(e.to_string())
}

pub async fn execute(command: &LocalCommand) -> Result<LocalClusterView, CliError> {
    match command {
        LocalCommand::Up(args) => up(args).await,
        LocalCommand::Status(args) => {
            view(&mut LocalCluster::load(&args.dir).map_err(local_error)?).await
        }
        LocalCommand::Down(args) => {
            let mut cluster = LocalCluster::load(&args.dir).map_err(local_error)?;
            cluster.stop_all(STOP_TIMEOUT);
            cluster.save().map_err(local_error)?;
            view(&mut cluster).await
        }
        LocalCommand::Kill(args) | LocalCommand::Stop(args) => one_node(command, args, false).await,
        LocalCommand::Start(args) => one_node(command, &args.node, !args.no_wait).await,
    }
}

/// `local kill|stop|start` of one node; a start waits for its `/readyz` when `wait_ready`.
async fn one_node(
    command: &LocalCommand,
    args: &LocalNodeArgs,
    wait_ready: bool,
) -> Result<LocalClusterView, CliError> {
    let mut cluster = LocalCluster::load(&args.dir.dir).map_err(local_error)?;
    let filter = cluster.spec.log_filter.clone();
    let secured = cluster.control_plane.is_some();
    let client = http_client(&cluster.controller_credentials().map_err(local_error)?)
        .map_err(local_error)?;
    let node = match args.kind.as_str() {
        "controller" => cluster.controller(args.id),
        _ => cluster.broker(args.id),
    }
    .map_err(local_error)?;
    match command {
        LocalCommand::Kill(_) => node.kill().map_err(local_error)?,
        LocalCommand::Stop(_) => {
            if node.is_running() {
                node.terminate(STOP_TIMEOUT).map_err(local_error)?;
            }
        }
        _ => {
            node.start(&filter).map_err(local_error)?;
            let url = readyz_url(secured, node);
            // Recorded before the wait, so `local down` stops a node that never gets ready.
            cluster.save().map_err(local_error)?;
            if wait_ready {
                wait_http_ok_with(&client, &url, Duration::from_secs(60))
                    .await
                    .map_err(local_error)?;
            }
            return view(&mut cluster).await;
        }
    }
    cluster.save().map_err(local_error)?;
    view(&mut cluster).await
}

async fn up(args: &LocalUpArgs) -> Result<LocalClusterView, CliError> {
    let dir = &args.dir.dir;
    if args.bin_dir.is_none() {
        build_under_cargo_run(&default_bin_dir()).map_err(local_error)?;
    }
    let mut cluster = if dir.join(STATE_FILE).exists() {
        if args.security.is_some() {
            return Err(CliError::Local(format!(
                "{} already holds a cluster: --security applies to a new one (its brokers keep the security they were started with)",
                dir.display()
            )));
        }
        let mut cluster = LocalCluster::load(dir).map_err(local_error)?;
        cluster.start_stopped().map_err(local_error)?;
        cluster
    } else {
        if !matches!(args.controller_count, 1 | 3 | 5) {
            return Err(CliError::Local(format!(
                "--controllers must be 1, 3 or 5, got {}",
                args.controller_count
            )));
        }
        if args.broker_count == 0 {
            return Err(CliError::Local("--brokers must be at least 1".into()));
        }
        let mut spec = ClusterSpec::new(absolute(dir)?, args.controller_count, args.broker_count);
        if let Some(bin_dir) = &args.bin_dir {
            spec.bin_dir = bin_dir.clone();
        }
        spec.controller_args = args.controller_args.clone();
        spec.broker_args = args.broker_args.clone();
        spec.listeners = listener_names(&args.listeners)?;
        // A cluster with secured Kafka listeners secures its control plane too.
        spec.secure_control_plane = args.secure_control_plane || args.security.is_some();
        spec.security = args
            .security
            .map(|protocol| crate::local_security::SecuritySpec {
                protocol: protocol.kafka_name().to_owned(),
            });
        LocalCluster::start(spec).map_err(local_error)?
    };
    cluster.save().map_err(local_error)?;
    let wait = Duration::from_secs(args.wait_secs);
    let users = create_users(&cluster, wait).await;
    let ready = match users {
        Ok(()) => cluster.wait_ready(wait).await,
        Err(e) => Err(e),
    };
    let result = view(&mut cluster).await;
    cluster.detach();
    ready.map_err(local_error)?;
    result
}

/// `--listener` names: letters, digits and `_`, each once, in upper case as the broker keeps them.
fn listener_names(names: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let upper = name.trim().to_ascii_uppercase();
        if upper.is_empty() || !upper.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(CliError::Local(format!(
                "--listener {name:?}: a listener name is letters, digits and '_'"
            )));
        }
        if out.contains(&upper) {
            return Err(CliError::Local(format!("--listener {upper} given twice")));
        }
        out.push(upper);
    }
    Ok(out)
}

/// A node's `/readyz`: HTTPS for the controllers of a secured control plane.
fn readyz_url(secured: bool, node: &crate::local::Node) -> String {
    let scheme = if secured && node.kind == "controller" {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}/readyz", node.http_addr)
}

/// Creates a secured cluster's SCRAM users through its controllers, retrying while the quorum
/// starts; brokers replicate (and clients log in) once these exist.
async fn create_users(cluster: &LocalCluster, wait: Duration) -> Result<(), LocalError> {
    let Some(security) = &cluster.security else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + wait;
    let client = crate::client::ControllerClient::new(
        cluster
            .controllers
            .iter()
            .map(|c| c.addr.to_string())
            .collect(),
        Duration::from_secs(5),
    )
    .map_err(|e| LocalError::Io(e.to_string()))?
    .with_credentials(cluster.controller_credentials()?);
    for (user, password) in &security.users {
        loop {
            let created = crate::cmd::user::create(
                &client,
                user,
                chronik_metadata::scram::ScramMechanism::Sha512,
                crate::cmd::user::PasswordSource::Given(password.clone()),
                8192,
            )
            .await;
            match created {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(LocalError::Io(format!("cannot create user {user}: {e}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

fn absolute(dir: &Path) -> Result<std::path::PathBuf, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Local(format!("cannot create {}: {e}", dir.display())))?;
    dir.canonicalize()
        .map_err(|e| CliError::Local(format!("cannot resolve {}: {e}", dir.display())))
}

async fn view(cluster: &mut LocalCluster) -> Result<LocalClusterView, CliError> {
    let client = http_client(&cluster.controller_credentials().map_err(local_error)?)
        .map_err(local_error)?;
    let secured = cluster.control_plane.is_some();
    let control_plane = cluster
        .control_plane
        .as_ref()
        .map(|files| ControlPlaneView {
            controller_tls_ca: files.ca().display().to_string(),
            admin_token_file: files.admin_token().display().to_string(),
        });
    let mut nodes = Vec::new();
    for node in cluster
        .controllers
        .iter_mut()
        .chain(cluster.brokers.iter_mut())
    {
        let running = node.is_running();
        let url = readyz_url(secured, node);
        let ready = running
            && wait_http_ok_with(&client, &url, Duration::ZERO)
                .await
                .is_ok();
        nodes.push(LocalNodeView {
            kind: node.kind.clone(),
            id: node.id,
            addr: node.addr.to_string(),
            listeners: node.listeners.clone(),
            http_addr: node.http_addr.to_string(),
            data_dir: node.data_dir.display().to_string(),
            log_file: node.log_file.display().to_string(),
            pid: if running { node.pid } else { None },
            ready,
        });
    }
    Ok(LocalClusterView {
        dir: cluster.spec.dir.display().to_string(),
        bootstrap_servers: cluster.bootstrap_servers(),
        client_properties: cluster
            .client_properties
            .as_ref()
            .map(|p| p.display().to_string()),
        controllers: cluster.controllers_arg(),
        control_plane,
        nodes,
    })
}
