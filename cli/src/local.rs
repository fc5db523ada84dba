//! A local cluster of real `chronik-controller` and `chronik-broker` processes on loopback: what
//! `chronikctl local up` runs for people without Docker, and what the integration tests start, kill,
//! pause and restart. Ports are taken from the OS (bind to port 0, then handed to the process), every
//! node has its own data dir and log file under the cluster dir, and dropping a `LocalCluster` that owns
//! its processes kills them all.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronik_control_auth::ClientCredentials;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::local_control_plane::ControlPlaneFiles;

/// Errors of the local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Io(String),
    #[error("binary {} not found; build it with `cargo build --workspace --bins` (add --release for target/release), or point --bin-dir or CHRONIK_BIN_DIR at the binaries", .0.display())]
    MissingBinary(PathBuf),
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    #[error("no such node: {0}")]
    NoSuchNode(String),
}

fn io(context: impl std::fmt::Display, e: impl std::fmt::Display) -> LocalError {
    LocalError::Io(format!("{context}: {e}"))
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub controllers: usize,
    pub brokers: usize,
    /// Data dirs and logs go below this directory.
    pub dir: PathBuf,
    /// Where `chronik-controller` and `chronik-broker` are.
    pub bin_dir: PathBuf,
    /// Extra flags for every controller (e.g. `--broker-session-timeout-ms 3000`).
    pub controller_args: Vec<String>,
    /// Extra flags for every broker.
    pub broker_args: Vec<String>,
    /// Value of RUST_LOG for the processes.
    pub log_filter: String,
    /// Names of the Kafka listeners every broker gets, each on its own port; the first one is the
    /// inter-broker listener and the bootstrap address. Empty: one listener from `--listen`
    /// (PLAINTEXT).
    pub listeners: Vec<String>,
    /// TLS and tokens on the controllers (`local_control_plane`).
    pub secure_control_plane: bool,
    /// How every Kafka listener is secured (`crate::local_security`); `None`: PLAINTEXT and open.
    pub security: Option<crate::local_security::SecuritySpec>,
}

impl ClusterSpec {
    pub fn new(dir: impl Into<PathBuf>, controllers: usize, brokers: usize) -> Self {
        Self {
            controllers,
            brokers,
            dir: dir.into(),
            bin_dir: default_bin_dir(),
            controller_args: Vec::new(),
            broker_args: Vec::new(),
            log_filter: "info".to_string(),
            listeners: Vec::new(),
            secure_control_plane: false,
            security: None,
        }
    }
}

/// The directory holding the Chronik binaries: `CHRONIK_BIN_DIR`, else the directory of the running
/// executable (or its parent, for test executables in `target/<profile>/deps`).
pub fn default_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHRONIK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    if exe_dir.ends_with("deps") {
        exe_dir.parent().map(Path::to_path_buf).unwrap_or(exe_dir)
    } else {
        exe_dir
    }
}

/// Under `cargo run -p chronikctl`, builds (or brings up to date) `chronik-controller` and
/// `chronik-broker` in `bin_dir` with the same cargo, profile and target dir, so that
/// `cargo run --release -p chronikctl -- local up` works on a fresh checkout and never starts stale
/// binaries. Does nothing, and returns `false`, when chronikctl was not started by `cargo run` (cargo
/// sets `CARGO` and this package's `CARGO_PKG_NAME` for the programs it runs) or `bin_dir` is not a
/// cargo profile directory.
pub fn build_under_cargo_run(bin_dir: &Path) -> Result<bool, LocalError> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(false);
    };
    if std::env::var("CARGO_PKG_NAME").as_deref() != Ok(env!("CARGO_PKG_NAME")) {
        return Ok(false);
    }
    let (Some(profile_dir), Some(target_dir)) = (
        bin_dir.file_name().and_then(|n| n.to_str()),
        bin_dir.parent(),
    ) else {
        return Ok(false);
    };
    // target/debug holds the `dev` profile; every other profile has a directory of its own name.
    let profile = if profile_dir == "debug" {
        "dev"
    } else {
        profile_dir
    };
    let mut command = Command::new(cargo);
    command
        .args(["build", "--profile", profile, "--target-dir"])
        .arg(target_dir)
        .args(["-p", "chronik-controller", "-p", "chronik-broker", "--bins"])
        .stdin(Stdio::null())
        // Cargo's progress goes to stderr; stdout keeps only chronikctl's report.
        .stdout(Stdio::null());
    if let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        command.current_dir(manifest_dir);
    }
    let status = command
        .status()
        .map_err(|e| io("cannot run cargo to build the Chronik binaries", e))?;
    if !status.success() {
        return Err(LocalError::Io(format!(
            "`cargo build --profile {profile} -p chronik-controller -p chronik-broker` failed ({status})"
        )));
    }
    Ok(true)
}

/// Whether a process exists and has not exited. A process that exited but was not reaped (a zombie,
/// e.g. where PID 1 does not reap orphans) counts as gone.
fn pid_alive(pid: u32) -> bool {
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    // /proc/<pid>/stat: "pid (comm) state ..."; the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

/// A free loopback port for a node to bind, from below the ephemeral range (see inside).
fn free_port() -> Result<u16, LocalError> {
    use rand::Rng;
    use std::sync::Mutex;
    // Ports handed out by this process: one cluster never gets the same port twice.
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // Below the kernel's ephemeral range (32768–60999 by default): a port picked there could be taken
    // by any process's outgoing connection before the node binds it; these are only taken by a bind.
    let below = ephemeral_port_start().min(32_768);
    let mut rng = rand::rng();
    for _ in 0..500 {
        let port = rng.random_range(10_000..below);
        if !handed_out.contains(&port) && TcpListener::bind(loopback(port)).is_ok() {
            handed_out.push(port);
            return Ok(port);
        }
    }
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| io("cannot bind a free port", e))?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| io("cannot read a bound port", e))?;
    handed_out.push(port);
    Ok(port)
}

/// The first port of the kernel's ephemeral range (Linux `ip_local_port_range`).
fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|start: &u16| *start > 10_100)
        .unwrap_or(32_768)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A named Kafka listener of a broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeListener {
    pub name: String,
    pub addr: SocketAddr,
}

/// One node (controller or broker) of the cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct Node {
    /// `controller` or `broker`.
    pub kind: String,
    pub id: u64,
    /// gRPC address (controllers) or Kafka listener (brokers; the first one when there are several).
    pub addr: SocketAddr,
    /// A broker's named Kafka listeners when the cluster was started with several (else empty).
    #[serde(default)]
    pub listeners: Vec<NodeListener>,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    pub pid: Option<u32>,
    #[serde(skip)]
    child: Option<Child>,
    args: Vec<String>,
    binary: PathBuf,
}

impl Node {
    fn describe(&self) -> Node {
        Node {
            kind: self.kind.clone(),
            id: self.id,
            addr: self.addr,
            listeners: self.listeners.clone(),
            http_addr: self.http_addr,
            data_dir: self.data_dir.clone(),
            log_file: self.log_file.clone(),
            pid: self.pid,
            child: None,
            args: self.args.clone(),
            binary: self.binary.clone(),
        }
    }

    fn spawn(&mut self, log_filter: &str) -> Result<(), LocalError> {
        if !self.binary.exists() {
            return Err(LocalError::MissingBinary(self.binary.clone()));
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| io(self.data_dir.display(), e))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|e| io(self.log_file.display(), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| io(self.log_file.display(), e))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| io(format!("cannot start {}", self.binary.display()), e))?;
        self.pid = Some(child.id());
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, signal: Signal) -> Result<(), LocalError> {
        let pid = self.pid.ok_or_else(|| {
            LocalError::NoSuchNode(format!("{} {} is not running", self.kind, self.id))
        })?;
        kill(Pid::from_raw(pid as i32), signal).map_err(|e| io(format!("kill -{signal} {pid}"), e))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match (&mut self.child, self.pid) {
            (Some(child), _) => matches!(child.try_wait(), Ok(None)),
            (None, Some(pid)) => pid_alive(pid),
            (None, None) => false,
        }
    }

    /// Waits until the process has exited (reaping it when this process started it). Returns whether
    /// it exited successfully, when that is known.
    fn wait_exit(&mut self, timeout: Duration) -> Result<Option<bool>, LocalError> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = match &mut self.child {
                Some(child) => child
                    .try_wait()
                    .map_err(|e| io("wait", e))?
                    .map(|status| Some(status.success())),
                None => (!self.is_running()).then_some(None),
            };
            if let Some(success) = exited {
                self.child = None;
                self.pid = None;
                return Ok(success);
            }
            if Instant::now() >= deadline {
                return Err(LocalError::Timeout {
                    what: format!("{} {} to exit", self.kind, self.id),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, and wait until it is gone.
    pub fn kill(&mut self) -> Result<(), LocalError> {
        if self.is_running() {
            self.signal(Signal::SIGKILL)?;
            self.wait_exit(Duration::from_secs(10))?;
        }
        self.child = None;
        self.pid = None;
        Ok(())
    }

    /// Replaces the value of `flag` for the node's next start (for example, a broker's `--controllers`
    /// pointed at a proxy a test can cut); false if the node has no such flag.
    pub fn set_arg(&mut self, flag: &str, value: &str) -> bool {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => {
                self.args[i + 1] = value.to_string();
                true
            }
            _ => false,
        }
    }

    /// Removes `flag` and its value from the node's next start; false if it has no such flag.
    pub fn remove_arg(&mut self, flag: &str) -> bool {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => {
                self.args.drain(i..i + 2);
                true
            }
            _ => false,
        }
    }

    /// Starts this node again (same ports, data dir and flags).
    pub fn start(&mut self, log_filter: &str) -> Result<(), LocalError> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn(log_filter)
    }

    /// SIGTERM and wait for the process to exit; `Some(success)` when the exit status is known.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<bool>, LocalError> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(timeout)
    }

    pub fn pause(&self) -> Result<(), LocalError> {
        self.signal(Signal::SIGSTOP)
    }

    pub fn resume(&self) -> Result<(), LocalError> {
        self.signal(Signal::SIGCONT)
    }

    /// The process's output so far (for diagnosing a failed test).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    pub spec: ClusterSpec,
    pub controllers: Vec<Node>,
    pub brokers: Vec<Node>,
    /// The control plane's TLS files and tokens, when it is secured.
    pub control_plane: Option<ControlPlaneFiles>,
    /// Kill every process when dropped (tests); a detached cluster (`chronikctl local up`) keeps
    /// running.
    owned: bool,
    /// The certificates and users of a secured cluster, when this process generated them.
    pub security: Option<crate::local_security::LocalSecurity>,
    /// The client properties file of a secured cluster.
    pub client_properties: Option<PathBuf>,
}

/// The file in the cluster dir that describes a detached cluster.
pub const STATE_FILE: &str = "cluster.json";

#[derive(Serialize, Deserialize)]
struct SavedCluster {
    controllers: Vec<Node>,
    brokers: Vec<Node>,
    log_filter: String,
    #[serde(default)]
    control_plane: Option<ControlPlaneFiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_properties: Option<PathBuf>,
}

impl LocalCluster {
    /// Allocates ports and starts every controller and broker (without waiting for readiness).
    pub fn start(spec: ClusterSpec) -> Result<Self, LocalError> {
        std::fs::create_dir_all(&spec.dir).map_err(|e| io(spec.dir.display(), e))?;
        let control_plane = spec
            .secure_control_plane
            .then(|| ControlPlaneFiles::generate(&spec.dir, spec.controllers))
            .transpose()?;
        let controller_ports: Vec<(u16, u16)> = (0..spec.controllers)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_, LocalError>>()?;
        let quorum = controller_ports
            .iter()
            .enumerate()
            .map(|(i, (grpc, _))| format!("{}@127.0.0.1:{grpc}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let controllers_arg = controller_ports
            .iter()
            .map(|(grpc, _)| format!("127.0.0.1:{grpc}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut controllers = Vec::new();
        for (i, (grpc, http)) in controller_ports.iter().enumerate() {
            let id = (i + 1) as u64;
            let data_dir = spec.dir.join(format!("controller-{id}"));
            let mut args = vec![
                "--node-id".to_string(),
                id.to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen".into(),
                loopback(*grpc).to_string(),
                "--http-listen".into(),
                loopback(*http).to_string(),
                "--quorum".into(),
                quorum.clone(),
            ];
            if let Some(files) = &control_plane {
                args.extend(files.controller_args(id));
            }
            args.extend(spec.controller_args.iter().cloned());
            controllers.push(Node {
                kind: "controller".into(),
                id,
                addr: loopback(*grpc),
                listeners: Vec::new(),
                http_addr: loopback(*http),
                log_file: spec.dir.join(format!("controller-{id}.log")),
                data_dir,
                pid: None,
                child: None,
                args,
                binary: spec.bin_dir.join("chronik-controller"),
            });
        }
        let security = match &spec.security {
            Some(security) => Some(crate::local_security::LocalSecurity::generate(
                &spec.dir,
                security.clone(),
                spec.brokers,
            )?),
            None => None,
        };
        // A secured cluster without named listeners gets one named after its protocol.
        let listener_names = match &security {
            Some(security) if spec.listeners.is_empty() => {
                vec![security.spec.protocol().name().to_owned()]
            }
            _ => spec.listeners.clone(),
        };
        let mut brokers = Vec::new();
        for i in 0..spec.brokers {
            let id = (i + 1) as u64;
            let (kafka, http) = (free_port()?, free_port()?);
            let data_dir = spec.dir.join(format!("broker-{id}"));
            let mut args = vec![
                "--broker-id".to_string(),
                id.to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--http-listen".into(),
                loopback(http).to_string(),
                "--controllers".into(),
                controllers_arg.clone(),
            ];
            let mut listeners = Vec::new();
            if listener_names.is_empty() {
                args.extend([
                    "--listen".into(),
                    loopback(kafka).to_string(),
                    "--advertised-listener".into(),
                    loopback(kafka).to_string(),
                ]);
            } else {
                for (i, name) in listener_names.iter().enumerate() {
                    let port = if i == 0 { kafka } else { free_port()? };
                    listeners.push(NodeListener {
                        name: name.clone(),
                        addr: loopback(port),
                    });
                }
                let named = listeners
                    .iter()
                    .map(|l| format!("{}://{}", l.name, l.addr))
                    .collect::<Vec<_>>()
                    .join(",");
                args.extend([
                    "--listeners".into(),
                    named,
                    "--inter-broker-listener-name".into(),
                    listener_names[0].clone(),
                ]);
            }
            if let Some(files) = &control_plane {
                args.extend(files.broker_args());
            }
            if let Some(security) = &security {
                args.extend(security.broker_args(id, &listener_names));
            }
            args.extend(spec.broker_args.iter().cloned());
            brokers.push(Node {
                kind: "broker".into(),
                id,
                addr: loopback(kafka),
                listeners,
                http_addr: loopback(http),
                log_file: spec.dir.join(format!("broker-{id}.log")),
                data_dir,
                pid: None,
                child: None,
                args,
                binary: spec.bin_dir.join("chronik-broker"),
            });
        }
        let mut cluster = Self {
            spec,
            controllers,
            brokers,
            control_plane,
            owned: true,
            security,
            client_properties: None,
        };
        if let Some(security) = &cluster.security {
            cluster.client_properties = Some(
                security
                    .write_client_properties(&cluster.spec.dir, &cluster.bootstrap_servers())?,
            );
        }
        cluster.start_stopped()?;
        Ok(cluster)
    }

    /// Starts every node that is not running.
    pub fn start_stopped(&mut self) -> Result<(), LocalError> {
        let filter = self.spec.log_filter.clone();
        for node in self.controllers.iter_mut().chain(self.brokers.iter_mut()) {
            if !node.is_running() {
                node.spawn(&filter)?;
            }
        }
        Ok(())
    }

    /// Loads the cluster described in `dir/cluster.json` (written by `save`). Its processes are not
    /// owned: dropping the result leaves them running.
    pub fn load(dir: &Path) -> Result<Self, LocalError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            io(
                format!("no local cluster in {} ({})", dir.display(), path.display()),
                e,
            )
        })?;
        let saved: SavedCluster =
            serde_json::from_slice(&bytes).map_err(|e| io(path.display(), e))?;
        let mut spec = ClusterSpec::new(dir, saved.controllers.len(), saved.brokers.len());
        spec.log_filter = saved.log_filter;
        spec.secure_control_plane = saved.control_plane.is_some();
        Ok(Self {
            spec,
            controllers: saved.controllers,
            brokers: saved.brokers,
            control_plane: saved.control_plane,
            owned: false,
            security: None,
            client_properties: saved.client_properties,
        })
    }

    /// Writes `dir/cluster.json` so later commands can find the processes.
    pub fn save(&self) -> Result<(), LocalError> {
        let saved = SavedCluster {
            controllers: self.controllers.iter().map(Node::describe).collect(),
            brokers: self.brokers.iter().map(Node::describe).collect(),
            log_filter: self.spec.log_filter.clone(),
            control_plane: self.control_plane.clone(),
            client_properties: self.client_properties.clone(),
        };
        let path = self.spec.dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| io(path.display(), e))?;
        std::fs::write(&path, bytes).map_err(|e| io(path.display(), e))
    }

    /// Lets the processes outlive this value (and this process).
    pub fn detach(mut self) {
        self.owned = false;
    }

    /// Stops everything: brokers first with SIGTERM (a controlled shutdown), then controllers; a node
    /// that does not exit within `timeout` is killed.
    pub fn stop_all(&mut self, timeout: Duration) {
        for node in self.brokers.iter_mut().chain(self.controllers.iter_mut()) {
            if node.is_running() && node.terminate(timeout).is_err() {
                let _ = node.kill();
            }
        }
    }

    /// `host:port,...` of every controller's gRPC listener (for `--controllers`).
    pub fn controllers_arg(&self) -> String {
        self.controllers
            .iter()
            .map(|c| c.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port,...` of every broker's Kafka listener (for Kafka clients' bootstrap.servers).
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn controller(&mut self, id: u64) -> Result<&mut Node, LocalError> {
        self.controllers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| LocalError::NoSuchNode(format!("controller {id}")))
    }

    pub fn broker(&mut self, id: u64) -> Result<&mut Node, LocalError> {
        self.brokers
            .iter_mut()
            .find(|b| b.id == id)
            .ok_or_else(|| LocalError::NoSuchNode(format!("broker {id}")))
    }

    /// Starts a stopped node again with the same ports and data dir.
    pub fn restart(&mut self, kind: &str, id: u64) -> Result<(), LocalError> {
        let filter = self.spec.log_filter.clone();
        let node = match kind {
            "controller" => self.controller(id)?,
            _ => self.broker(id)?,
        };
        node.kill()?;
        node.spawn(&filter)
    }

    /// What chronikctl presents to this cluster's controllers: with a secured control plane, the
    /// CA and the admin token.
    pub fn controller_credentials(&self) -> Result<ClientCredentials, LocalError> {
        match &self.control_plane {
            Some(files) => ClientCredentials::load(&files.client_files(), "admin token")
                .map_err(|e| io("the control plane's credentials", e)),
            None => Ok(ClientCredentials::none()),
        }
    }

    /// Waits until `/readyz` of every running node answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), LocalError> {
        let client = http_client(&self.controller_credentials()?)?;
        let secured = self.control_plane.is_some();
        let urls: Vec<(String, String)> = self
            .controllers
            .iter_mut()
            .chain(self.brokers.iter_mut())
            .filter_map(|n| {
                let scheme = if secured && n.kind == "controller" {
                    "https"
                } else {
                    "http"
                };
                n.is_running().then(|| {
                    (
                        format!("{} {}", n.kind, n.id),
                        format!("{scheme}://{}/readyz", n.http_addr),
                    )
                })
            })
            .collect();
        for (what, url) in urls {
            wait_http_ok_with(&client, &url, timeout)
                .await
                .map_err(|_| LocalError::Timeout {
                    what: format!("{what} to be ready ({url})"),
                    timeout,
                })?;
        }
        Ok(())
    }

    /// A summary of where everything is, for people and for `chronikctl local status`.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert("controllers".into(), self.controllers_arg());
        out.insert("bootstrap_servers".into(), self.bootstrap_servers());
        out.insert("dir".into(), self.spec.dir.display().to_string());
        out
    }

    /// Kills every process.
    pub fn kill_all(&mut self) {
        for node in self.controllers.iter_mut().chain(self.brokers.iter_mut()) {
            let _ = node.kill();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.owned {
            self.kill_all();
        }
    }
}

/// An HTTP client for the controllers' endpoints: HTTPS verified against the CA of `credentials`
/// (and their client certificate, if any), which also sends their token.
pub fn http_client(credentials: &ClientCredentials) -> Result<reqwest::Client, LocalError> {
    http_client_with_timeout(credentials, Duration::from_secs(2))
}

/// [`http_client`] with a timeout of each request.
pub fn http_client_with_timeout(
    credentials: &ClientCredentials,
    timeout: Duration,
) -> Result<reqwest::Client, LocalError> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(ca) = credentials.ca_pem() {
        let ca = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| io("CA bundle", e))?;
        builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
        for certificate in ca {
            builder = builder.add_root_certificate(certificate);
        }
        if let Some((certificate, key)) = credentials.identity_pem() {
            let pem = [certificate, b"\n", key].concat();
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| io("client certificate", e))?;
            builder = builder.identity(identity);
        }
    }
    if let Some(authorization) = credentials.authorization() {
        let mut value = reqwest::header::HeaderValue::from_str(&authorization)
            .map_err(|_| LocalError::Io("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
        builder = builder.default_headers(headers);
    }
    builder.build().map_err(|e| io("http client", e))
}

/// Polls `url` until it answers 200 or `timeout` passes.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<(), LocalError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| io("http client", e))?;
    wait_http_ok_with(&client, url, timeout).await
}

/// Polls `url` with `client` until it answers 200 or `timeout` passes.
pub async fn wait_http_ok_with(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(LocalError::Timeout {
                what: url.to_string(),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
