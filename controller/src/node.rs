//! Starting and stopping one controller node: check the data dir, open the Raft storage, start Raft,
//! bootstrap a fresh quorum, serve gRPC and HTTP, run the leader's duties, and shut it all down on one
//! cancellation token.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chronik_proto::v1::admin_service_server::AdminServiceServer;
use chronik_proto::v1::broker_service_server::BrokerServiceServer;
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tracing::{error, info, warn};

use crate::api::auth::{Api, GrpcGuard};
use crate::api::grpc::ControllerApi;
use crate::api::http_listener::{HttpListener, HttpPeer};
use crate::applied::AppliedMetadata;
use crate::config::ControllerConfig;
use crate::console::{Console, ConsoleConfig};
use crate::error::NodeError;
use crate::liveness::{run_liveness, Liveness};
use crate::quorum::Quorum;
use crate::raft::progress::FollowerProgress;
use crate::raft::vote_hold::VoteHold;
use crate::raft::{self, network::NetworkFactory, raft_config};
use crate::security::Security;
use crate::state::configs::{
    validate_cluster_configs, DEFAULT_REPLICATION_FACTOR, MIN_INSYNC_REPLICAS, NUM_PARTITIONS,
};
use crate::state::records::ConfigResource;
use crate::state::{ControllerResult, Record};
use chronik_metadata::features;

/// The identity a data dir belongs to, written on first start and checked on every start after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct DataDirMeta {
    node_id: u64,
    voters: Vec<u64>,
    cluster_id: Option<String>,
    /// The node started with an empty Raft store and has not caught up since (`raft::vote_hold`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    vote_held: bool,
    /// Terms at or below this one get no vote from this node: it may have voted in them before it
    /// lost its log (`raft::vote_hold`).
    #[serde(default, skip_serializing_if = "is_zero")]
    vote_floor: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The meta file of a running node: written by whoever changes it, one change at a time.
struct MetaFile {
    dir: PathBuf,
    meta: std::sync::Mutex<DataDirMeta>,
}

impl MetaFile {
    fn read(&self) -> DataDirMeta {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, change: impl FnOnce(&mut DataDirMeta)) -> Result<(), NodeError> {
        let mut meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = meta.clone();
        change(&mut changed);
        write_meta(&self.dir, &changed)?;
        *meta = changed;
        Ok(())
    }
}

const META_FILE: &str = "controller.meta.json";

fn meta_path(data_dir: &Path) -> PathBuf {
    data_dir.join(META_FILE)
}

/// Refuses a data dir that belongs to another node or quorum, or that holds Raft data without its meta
/// file (a damaged or foreign directory); never starts a silent new cluster over old data.
fn check_data_dir(
    data_dir: &Path,
    node_id: u64,
    voters: &BTreeMap<u64, String>,
) -> Result<DataDirMeta, NodeError> {
    std::fs::create_dir_all(data_dir).map_err(io_error("create data dir", data_dir))?;
    let path = meta_path(data_dir);
    let voter_ids: Vec<u64> = voters.keys().copied().collect();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let meta: DataDirMeta =
                serde_json::from_slice(&bytes).map_err(|e| NodeError::CorruptMeta {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if meta.node_id != node_id {
                return Err(NodeError::OtherNode {
                    dir: data_dir.to_path_buf(),
                    found: meta.node_id,
                    node_id,
                });
            }
            if meta.voters != voter_ids {
                return Err(NodeError::OtherQuorum {
                    dir: data_dir.to_path_buf(),
                    found: meta.voters,
                    listed: voter_ids,
                });
            }
            Ok(meta)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if data_dir.join("raft").exists() {
                return Err(NodeError::RaftWithoutMeta {
                    dir: data_dir.to_path_buf(),
                    meta_file: META_FILE,
                });
            }
            let meta = DataDirMeta {
                node_id,
                voters: voter_ids,
                cluster_id: None,
                vote_held: false,
                vote_floor: 0,
            };
            write_meta(data_dir, &meta)?;
            Ok(meta)
        }
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NodeError + 'a {
    move |source| NodeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces the meta file atomically (write, fsync, rename, fsync the directory).
fn write_meta(data_dir: &Path, meta: &DataDirMeta) -> Result<(), NodeError> {
    let path = meta_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| NodeError::CorruptMeta {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&tmp, bytes).map_err(io_error("write", &tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_error("sync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_error("rename into place", &path))?;
    std::fs::File::open(data_dir)
        .and_then(|f| f.sync_all())
        .map_err(io_error("sync", data_dir))?;
    Ok(())
}

/// A running controller node.
pub struct ControllerNode {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub quorum: Arc<Quorum>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl ControllerNode {
    /// Starts a node; returns once it listens.
    pub async fn start(config: ControllerConfig) -> Result<Self, NodeError> {
        let voters = config
            .voters()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let security = Security::load(&config.security)?;
        install_console_kafka_security(&config)?;
        let meta = Arc::new(MetaFile {
            meta: std::sync::Mutex::new(check_data_dir(&config.data_dir, config.node_id, &voters)?),
            dir: config.data_dir.clone(),
        });

        let applied = Arc::new(AppliedMetadata::new());
        let (log_store, state_machine) = raft::open(&config.data_dir, applied.clone())
            .await
            .map_err(|e| NodeError::Storage {
                dir: config.data_dir.clone(),
                reason: e.to_string(),
            })?;
        let committed = log_store.committed_index();
        let log = log_store.clone();
        let raft_config = raft_config(
            config.raft_heartbeat_ms,
            config.raft_election_timeout_ms,
            config.raft_election_timeout_ms * 2,
            config.snapshot_every,
        )
        .map_err(|e| NodeError::Config(e.to_string()))?;
        let progress = Arc::new(FollowerProgress::default());
        // Whether it holds is known once the store is open; its own candidacies respect the floor
        // from the start (`raft::vote_hold`).
        let vote_hold = VoteHold::new(false, meta.read().vote_floor);
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory::new(config.node_id)
                .with_credentials(security.peers.clone())
                .with_progress(progress.clone())
                .with_vote_hold(vote_hold.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| NodeError::raft("cannot start Raft")(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::raft("cannot read the Raft state")(e.to_string()))?;
        // An empty store may be a voter that lost its data directory: it holds its vote until it has
        // caught up with the others (`raft::vote_hold`), across restarts. A single voter has nobody
        // else's log to lose.
        let must_hold = (!initialized || meta.read().vote_held) && voters.len() > 1;
        let held = must_hold && !config.unsafe_skip_vote_hold;
        if must_hold {
            meta.update(|m| m.vote_held = held)?;
            if held {
                warn!(
                    node_id = config.node_id,
                    "started with an empty Raft log (or not caught up since): not voting for a \
                     candidate that has a log until this controller has caught up with the others"
                );
            } else {
                warn!(
                    node_id = config.node_id,
                    "--unsafe-skip-vote-hold: voting at once although this controller started with \
                     an empty Raft log and has not caught up; entries only its lost log and a \
                     controller now down held may be lost"
                );
            }
        }
        if held {
            vote_hold.hold();
        }
        if !initialized {
            // Every voter initializes with the same membership; openraft makes that safe, so a fresh
            // quorum forms exactly once even when all nodes start at the same moment.
            let members: BTreeMap<u64, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => info!(node_id = config.node_id, "initialized a fresh quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    return Err(NodeError::raft("cannot initialize the quorum")(
                        e.to_string(),
                    ))
                }
            }
        }

        let watch_leader = voters.len() > 1;
        let quorum = Arc::new(
            Quorum::new(
                raft.clone(),
                applied.clone(),
                config.node_id,
                voters.clone(),
                committed,
                Duration::from_secs(5),
            )
            .with_follower_progress(progress.clone())
            .with_vote_hold(vote_hold.clone()),
        );
        let liveness = Arc::new(Liveness::new(
            config.session_timeout(),
            config.session_grace(),
        ));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let bind = |address: SocketAddr| async move {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| NodeError::Bind { address, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| NodeError::Bind { address, source })?;
            Ok::<_, NodeError>((listener, local))
        };
        let (grpc_listener, grpc_addr) = bind(config.listen).await?;
        let (http_listener, http_addr) = bind(config.http_listen).await?;

        let api = ControllerApi {
            quorum: quorum.clone(),
            liveness: liveness.clone(),
            heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            session_timeout: config.session_timeout(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = security.grpc_tls.clone() {
            server = server
                .tls_config(tls)
                .map_err(|e| NodeError::Config(format!("TLS of the gRPC listener: {e}")))?;
        }
        let guard = |api| GrpcGuard::new(security.authenticator.clone(), api);
        let grpc = server
            .timeout(Duration::from_secs(30))
            // Closes connections whose peer stopped answering (a cut network), so the session
            // streams on them end instead of counting as open forever.
            .http2_keepalive_interval(Some(Duration::from_secs(2)))
            .http2_keepalive_timeout(Some(Duration::from_secs(4)))
            .concurrency_limit_per_connection(256)
            .add_service(InterceptedService::new(
                raft::service::raft_service(raft.clone(), vote_hold.clone(), log.clone()),
                guard(Api::Raft),
            ))
            .add_service(BrokerServiceServer::with_interceptor(
                api.clone(),
                guard(Api::Broker),
            ))
            .add_service(AdminServiceServer::with_interceptor(api, guard(Api::Admin)))
            .serve_with_incoming_shutdown(
                grpc_incoming(grpc_listener),
                shutdown.clone().cancelled_owned(),
            );
        tasks.spawn(async move {
            if let Err(e) = grpc.await {
                error!("gRPC server failed: {e}");
            }
        });
        let http_listener = match &security.http_tls {
            Some(tls) => HttpListener::tls(http_listener, tls.clone(), &tasks, shutdown.clone())
                .map_err(|source| NodeError::Bind {
                    address: config.http_listen,
                    source,
                })?,
            None => HttpListener::Plain(http_listener),
        };
        let console = Arc::new(Console::new(
            quorum.clone(),
            ConsoleConfig::from_args(&config.console),
            shutdown.clone(),
        ));
        if let Some(interval) = console.config().sample_interval {
            tasks.spawn(crate::console::sampler::run(console.clone(), interval));
        }
        let router =
            crate::api::http::router(quorum.clone(), security.authenticator.clone(), console);
        let http = axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<HttpPeer>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tasks.spawn(async move {
            if let Err(e) = http.await {
                error!("HTTP server failed: {e}");
            }
        });
        if watch_leader {
            tasks.spawn(raft::departure::watch_active_controller(
                raft.clone(),
                config.node_id,
                security.peers.clone(),
                Duration::from_millis(config.raft_heartbeat_ms),
                vote_hold.clone(),
                shutdown.clone(),
            ));
        }
        {
            let peers = voters
                .iter()
                .filter(|(id, _)| **id != config.node_id)
                .map(|(id, address)| (*id, address.clone()))
                .collect();
            let meta = meta.clone();
            tasks.spawn(raft::vote_hold::release_when_caught_up(
                raft.clone(),
                log,
                config.node_id,
                vote_hold.clone(),
                peers,
                security.peers.clone(),
                move |floor| {
                    meta.update(|m| {
                        m.vote_held = false;
                        m.vote_floor = floor;
                    })
                    .map_err(|e| e.to_string())
                },
                shutdown.clone(),
            ));
        }
        tasks.spawn(raft::progress::track_caught_up(
            raft.clone(),
            progress,
            shutdown.clone(),
        ));
        tasks.spawn(run_liveness(
            quorum.clone(),
            liveness,
            Duration::from_millis(250),
            Duration::from_millis(config.leader_rebalance_interval_ms),
            shutdown.clone(),
        ));
        tasks.spawn(bootstrap_cluster(
            quorum.clone(),
            config.clone(),
            shutdown.clone(),
        ));
        {
            let (quorum, shutdown, data_dir) =
                (quorum.clone(), shutdown.clone(), config.data_dir.clone());
            tasks.spawn(async move {
                if let Err(e) = guard_cluster_id(&quorum, &data_dir, &meta, &shutdown).await {
                    error!("{e:#}");
                    shutdown.cancel();
                }
            });
        }
        info!(node_id = config.node_id, %grpc_addr, %http_addr, "controller listening");
        Ok(Self {
            grpc_addr,
            http_addr,
            quorum,
            shutdown,
            tasks,
        })
    }

    /// A token that is cancelled when the node stops (also when it stops itself on a fatal error).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every task and Raft, and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Err(e) = self.quorum.raft().shutdown().await {
            warn!("raft shutdown: {e}");
        }
    }
}

/// Reads `--console-kafka-config` and makes it the security of this process's Kafka connections
/// (the console's; the first controller of a process sets it, see `chronik_kafka_client::security`).
/// Without the flag nothing is installed and the console connects in PLAINTEXT.
fn install_console_kafka_security(config: &ControllerConfig) -> Result<(), NodeError> {
    use chronik_kafka_client::security::{install, SecurityOptions, SettingsError};
    let Some(file) = &config.console.console_kafka_config else {
        return Ok(());
    };
    let options = SecurityOptions {
        client_config: Some(file.clone()),
        ..SecurityOptions::default()
    };
    let settings = options.resolve().map_err(|error| {
        NodeError::Config(match error {
            SettingsError::File { path, reason } => {
                format!("--console-kafka-config {path}: {reason}")
            }
            SettingsError::Invalid(message) => format!("--console-kafka-config: {message}"),
        })
    })?;
    install(settings);
    Ok(())
}

/// Runs a controller until `shutdown` resolves (or it fails fatally).
pub async fn run(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let node = ControllerNode::start(config).await?;
    let token = node.shutdown_token();
    tokio::select! {
        _ = shutdown => info!("shutting down"),
        _ = token.cancelled() => {
            node.stop().await;
            return Err(NodeError::Fatal);
        }
    }
    node.stop().await;
    Ok(())
}

/// Once this node leads a quorum that has no cluster id yet, writes the cluster id and the cluster
/// defaults: exactly once, since the command re-checks under the quorum's single writer.
async fn bootstrap_cluster(
    quorum: Arc<Quorum>,
    config: ControllerConfig,
    shutdown: CancellationToken,
) {
    let defaults: BTreeMap<String, String> = [
        (
            DEFAULT_REPLICATION_FACTOR,
            config.default_replication_factor,
        ),
        (NUM_PARTITIONS, config.default_num_partitions),
        (MIN_INSYNC_REPLICAS, config.default_min_insync_replicas),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Err(e) = validate_cluster_configs(&defaults) {
        error!("invalid cluster defaults: {e}");
        return;
    }
    let chosen_features: BTreeMap<String, i16> = config.features.iter().cloned().collect();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if quorum.applied().with_image(|i| i.cluster_id.is_some()) {
            return;
        }
        if !quorum.is_leader() {
            continue;
        }
        let result = quorum
            .run(|image| {
                if image.cluster_id.is_some() {
                    return Ok(ControllerResult::new(Vec::new(), ()));
                }
                let mut records = vec![Record::ClusterId {
                    cluster_id: new_cluster_id(),
                }];
                records.extend(defaults.iter().map(|(k, v)| Record::Config {
                    resource: ConfigResource::Cluster,
                    key: k.clone(),
                    value: Some(v.clone()),
                }));
                records.extend(features::bootstrap_records(&chosen_features));
                Ok(ControllerResult::new(records, ()))
            })
            .await;
        match result {
            Ok((offset, ())) => info!(offset, "bootstrapped the cluster"),
            Err(e) => warn!("cluster bootstrap failed, retrying: {e}"),
        }
    }
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding.
fn new_cluster_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// Records the cluster id in the data dir once known, and stops the node if the replicated log ever
/// names another cluster than the one this data dir belongs to.
async fn guard_cluster_id(
    quorum: &Quorum,
    data_dir: &Path,
    meta: &MetaFile,
    shutdown: &CancellationToken,
) -> Result<(), NodeError> {
    let mut offsets = quorum.applied().subscribe();
    loop {
        if let Some(cluster_id) = quorum.applied().with_image(|i| i.cluster_id.clone()) {
            match &meta.read().cluster_id {
                Some(ours) if *ours != cluster_id => {
                    return Err(NodeError::OtherCluster {
                        dir: data_dir.to_path_buf(),
                        ours: ours.clone(),
                        theirs: cluster_id,
                    })
                }
                Some(_) => return Ok(()),
                None => {
                    meta.update(|m| m.cluster_id = Some(cluster_id))?;
                    return Ok(());
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = offsets.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// The gRPC listener's connections, with Nagle's algorithm off. tonic sets `TCP_NODELAY` only on
/// sockets it accepts itself, not on an incoming stream it is handed: the small frames of Raft's
/// heartbeats and answers, and each `WatchMetadata` update, then waited for the peer's delayed ACK
/// (40 ms and more on Linux) whenever an earlier segment was unacknowledged, on every hop of a
/// metadata change (issue #18).
pub(crate) fn grpc_incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grpc_connections_are_accepted_with_nagle_off() {
        use futures::StreamExt;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = grpc_incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.expect("a connection").unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY on the accepted socket"
        );
    }

    #[test]
    fn a_data_dir_is_bound_to_its_node_and_quorum() {
        let dir = tempfile::tempdir().unwrap();
        let voters: BTreeMap<u64, String> = [
            (1, "a:1".to_string()),
            (2, "b:2".to_string()),
            (3, "c:3".to_string()),
        ]
        .into();
        check_data_dir(dir.path(), 2, &voters).unwrap();
        check_data_dir(dir.path(), 2, &voters).unwrap();
        let err = check_data_dir(dir.path(), 3, &voters).unwrap_err();
        assert!(
            err.to_string().contains("belongs to controller node 2"),
            "{err}"
        );
        let single: BTreeMap<u64, String> = [(2, "b:2".to_string())].into();
        assert!(check_data_dir(dir.path(), 2, &single).is_err());
        std::fs::write(meta_path(dir.path()), b"{not json").unwrap();
        assert!(check_data_dir(dir.path(), 2, &voters)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
        let damaged = tempfile::tempdir().unwrap();
        std::fs::create_dir(damaged.path().join("raft")).unwrap();
        assert!(check_data_dir(damaged.path(), 1, &voters).is_err());
    }

    /// A restart before the vote hold ended keeps it (the review of the first hold: a crash loop
    /// dropped it, since the restarted store is no longer empty).
    #[test]
    fn the_vote_hold_survives_a_restart_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let voters: BTreeMap<u64, String> = [(1, "a:1".to_string()), (2, "b:2".to_string())].into();
        let meta = MetaFile {
            meta: std::sync::Mutex::new(check_data_dir(dir.path(), 1, &voters).unwrap()),
            dir: dir.path().to_path_buf(),
        };
        assert!(!meta.read().vote_held);
        meta.update(|m| m.vote_held = true).unwrap();
        assert!(check_data_dir(dir.path(), 1, &voters).unwrap().vote_held);
        meta.update(|m| m.cluster_id = Some("c".into())).unwrap();
        meta.update(|m| m.vote_held = false).unwrap();
        let reread = check_data_dir(dir.path(), 1, &voters).unwrap();
        assert_eq!(
            (reread.vote_held, reread.cluster_id.as_deref()),
            (false, Some("c"))
        );
        // Meta files from before the hold read as not held.
        std::fs::write(
            meta_path(dir.path()),
            br#"{"node_id":1,"voters":[1,2],"cluster_id":null}"#,
        )
        .unwrap();
        assert!(!check_data_dir(dir.path(), 1, &voters).unwrap().vote_held);
    }
}
