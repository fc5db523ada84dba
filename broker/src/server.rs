//! `Broker`: one running broker, started in-process by `Broker::start` (the binary and the tests alike).
//! It wires the parts together — the data-dir lock, partition logs, controller client, metadata watch,
//! lifecycle manager, replica manager and fetchers, group coordinator, producer ids, the Kafka
//! listeners and the HTTP endpoint — and owns their shutdown.
//!
//! What must stay true: every task runs on one `TaskTracker` under one `CancellationToken`, and no task
//! outlives `Broker::shutdown`/`stop`. A graceful shutdown first completes the controlled shutdown (the
//! controller moves leaderships away while this broker still serves), then cancels and waits for every
//! task. A task that fails for good (the controller rejected this broker, the HTTP server died) stops
//! the broker with that error.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::config::BrokerConfig;
use crate::connection::{self, ConnectionLimits};
use crate::controller_client::ControllerClient;
use crate::error::BrokerError;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::handlers::BrokerContext;
use crate::http::{router, HttpState};
use crate::lifecycle::{run_unreachable_reports, BrokerLifecycleManager, LifecycleConfig};
use crate::log::{LogConfig, LogManager, LogManagerConfig};
use crate::metadata::{run_metadata_watch, MetadataCache};
use crate::producer_ids::{ControllerBlockSource, ProducerIdManager};
use crate::quota::ClientQuotaManager;
use crate::replica::fetcher::{run_fetcher_manager, InterBrokerLink};
use crate::replica::isr::{run_isr_changes, run_isr_shrinker};
use crate::replica::{run_metadata_listener, ReplicaManager};
use crate::security::principal::SslPrincipalMapper;
use crate::security::tls::{ServerTls, TlsSettings};
use crate::security::{ClientAuth, ListenerSecurity, SecurityProtocol};
use crate::status::BrokerStatus;
use crate::txn::markers::MarkerSender;
use crate::txn::{TransactionCoordinator, TxnConfig};

/// What each security protocol's listeners need, built once from the flags: one TLS configuration for
/// SSL listeners (with `--ssl-client-auth`) and one for SASL_SSL listeners (which never ask for a
/// client certificate, as in Kafka), both read before anything binds so a bad file stops the start.
fn listener_security(
    config: &BrokerConfig,
) -> Result<impl Fn(SecurityProtocol) -> ListenerSecurity, BrokerError> {
    let args = &config.security;
    let listeners = config.kafka_listeners()?;
    let uses = |p: SecurityProtocol| listeners.iter().any(|l| l.security_protocol == p);
    let tls = |client_auth: ClientAuth| -> Result<Option<Arc<ServerTls>>, BrokerError> {
        args.tls_settings()
            .map(|settings| {
                ServerTls::new(TlsSettings {
                    client_auth,
                    ..settings
                })
            })
            .transpose()
            .map(|t| t.map(Arc::new))
            .map_err(BrokerError::Config)
    };
    let ssl_tls = if uses(SecurityProtocol::Ssl) {
        tls(args.ssl_client_auth)?
    } else {
        None
    };
    let sasl_ssl_tls = if uses(SecurityProtocol::SaslSsl) {
        tls(ClientAuth::None)?
    } else {
        None
    };
    let mapper = Arc::new(
        SslPrincipalMapper::parse(&args.ssl_principal_mapping_rules)
            .map_err(BrokerError::Config)?,
    );
    let sasl = Arc::new(args.sasl_settings());
    Ok(move |protocol: SecurityProtocol| ListenerSecurity {
        protocol,
        tls: match protocol {
            SecurityProtocol::Ssl => ssl_tls.clone(),
            SecurityProtocol::SaslSsl => sasl_ssl_tls.clone(),
            _ => None,
        },
        principal_mapper: mapper.clone(),
        sasl: protocol.uses_sasl().then(|| sasl.clone()),
    })
}

/// The lock file in a broker's data dir.
pub const LOCK_FILE: &str = ".lock";

/// Takes the data dir's lock (an exclusive `flock`, released by the OS when the process dies).
fn lock_data_dir(dir: &Path) -> Result<Flock<File>, BrokerError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| BrokerError::DataDir {
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| BrokerError::DataDirLocked {
        path: dir.to_path_buf(),
        lock: path,
    })
}

/// Runs a broker until `shutdown` resolves (then shuts down gracefully) or a task fails for good.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    Broker::start(config).await?.run_until(shutdown).await
}

/// A started broker and the handles to stop it.
pub struct Broker {
    config: BrokerConfig,
    /// Held while the broker runs: a second process on the same data dir is refused.
    _data_dir_lock: Flock<File>,
    /// The bound Kafka listeners, by name, in the configured order.
    kafka_addrs: Vec<(String, SocketAddr)>,
    logs: Arc<LogManager>,
    http_addr: SocketAddr,
    status: watch::Receiver<BrokerStatus>,
    metadata: Arc<MetadataCache>,
    client: Arc<ControllerClient>,
    /// Stops every task at once.
    cancel: CancellationToken,
    /// Asks the lifecycle manager for a controlled shutdown.
    controlled_shutdown: CancellationToken,
    tracker: TaskTracker,
    lifecycle: JoinHandle<()>,
    fatal: mpsc::Receiver<BrokerError>,
}

impl Broker {
    /// Validates the configuration, binds the HTTP endpoint and starts every task. Returns once the
    /// broker is running in the background (not yet registered: see `wait_until_ready`).
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let client = Arc::new(
            ControllerClient::new(
                config.controller_addresses(),
                config.controller_request_timeout(),
            )?
            .with_credentials(config.controller_security.load()?),
        );
        let metadata = Arc::new(MetadataCache::new());
        let http_listener = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| BrokerError::HttpBind {
                address: config.http_listen,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| BrokerError::HttpBind {
                address: config.http_listen,
                source,
            })?;
        // Every Kafka listener is bound before anything registers; with port 0 the OS picks the port,
        // and that is the one advertised.
        let mut kafka_listeners = Vec::new();
        let listener_security = listener_security(&config)?;
        for listener in config.kafka_listeners()? {
            let bind_error = |source| BrokerError::KafkaBind {
                address: listener.bind,
                source,
            };
            let socket = TcpListener::bind(listener.bind).await.map_err(bind_error)?;
            let address = socket.local_addr().map_err(bind_error)?;
            let security = listener_security(listener.security_protocol);
            kafka_listeners.push((listener.endpoint(address), address, socket, security));
        }
        let inter_broker_listener = config.inter_broker_listener()?;
        let inter_broker_connector = config.inter_broker_connector()?;
        let kafka_addrs: Vec<(String, SocketAddr)> = kafka_listeners
            .iter()
            .map(|(endpoint, address, _, _)| (endpoint.name.clone(), *address))
            .collect();
        let endpoints: Vec<_> = kafka_listeners
            .iter()
            .map(|(endpoint, _, _, _)| endpoint.clone())
            .collect();
        let logs = Arc::new(LogManager::open(&config.data_dir, LogConfig::default())?);
        let (isr_tx, isr_rx) = mpsc::unbounded_channel();
        let replicas = Arc::new(ReplicaManager::new(config.broker_id, logs.clone(), isr_tx));

        let manager = BrokerLifecycleManager::new(
            LifecycleConfig {
                broker_id: config.broker_id,
                endpoints: endpoints.clone(),
                rack: config.rack.clone(),
                controlled_shutdown_timeout: config.controlled_shutdown_timeout(),
                log_dir_id: logs.dir_id(),
            },
            client.clone(),
            metadata.clone(),
        )
        .with_log_manager(logs.clone());
        let status = manager.status();
        let cancel = CancellationToken::new();
        let controlled_shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (fatal_tx, fatal) = mpsc::channel(4);

        tracker.spawn(run_metadata_watch(
            metadata.clone(),
            client.clone(),
            cancel.clone(),
        ));
        tracker.spawn(logs.clone().run(
            LogManagerConfig {
                retention_check_interval: Duration::from_millis(
                    config.log_retention_check_interval_ms,
                ),
                ..LogManagerConfig::default()
            },
            cancel.clone(),
        ));
        tracker.spawn(run_metadata_listener(
            replicas.clone(),
            metadata.clone(),
            status.clone(),
            cancel.clone(),
        ));
        tracker.spawn(run_isr_changes(
            replicas.clone(),
            client.clone(),
            status.clone(),
            isr_rx,
            cancel.clone(),
        ));
        tracker.spawn(run_unreachable_reports(
            replicas.clone(),
            client.clone(),
            status.clone(),
            cancel.clone(),
        ));
        tracker.spawn(run_isr_shrinker(
            replicas.clone(),
            Duration::from_millis(config.replica_lag_time_max_ms),
            Duration::from_millis(config.replica_fetch_stall_ms),
            cancel.clone(),
        ));
        let txn_verifier = Arc::new(crate::txn_verifier::TxnVerifier::new(
            config.transaction_partition_verification_enable,
            config.broker_id,
            metadata.clone(),
            inter_broker_listener.clone(),
            inter_broker_connector.clone(),
        ));
        tracker.spawn(run_fetcher_manager(
            replicas.clone(),
            metadata.clone(),
            status.clone(),
            InterBrokerLink {
                listener: inter_broker_listener,
                connector: inter_broker_connector,
            },
            cancel.clone(),
            tracker.clone(),
        ));
        let groups = GroupCoordinator::new(
            config.broker_id,
            config.group.config(),
            metadata.clone(),
            replicas.clone(),
            client.clone(),
            tracker.clone(),
            cancel.clone(),
        );
        tracker.spawn(groups.clone().run());
        let http_groups = groups.clone();
        let producer_ids = ProducerIdManager::new(
            ControllerBlockSource {
                broker_id: config.broker_id,
                controller: client.clone(),
                status: status.clone(),
            },
            tracker.clone(),
            cancel.clone(),
        );
        let txns = TransactionCoordinator::new(
            config.broker_id,
            TxnConfig {
                partitions_verified: config.transaction_partition_verification_enable,
                ..config.txn.config()
            },
            metadata.clone(),
            replicas.clone(),
            client.clone(),
            producer_ids.clone(),
            MarkerSender::new(
                config.inter_broker_connector()?,
                config.inter_broker_listener()?,
                metadata.clone(),
                config.broker_id,
            ),
            tracker.clone(),
            cancel.clone(),
        );
        tracker.spawn(txns.clone().run());
        let fetch_sessions = Arc::new(FetchSessionCache::new(
            config.max_incremental_fetch_session_cache_slots,
        ));
        let context = Arc::new(BrokerContext {
            broker_id: config.broker_id,
            metadata: metadata.clone(),
            replicas: replicas.clone(),
            controller: client.clone(),
            groups,
            txns,
            auto_create_topics: config.auto_create_topics,
            authorizer: config.authorizer(),
            txn_verifier,
            producer_ids,
            fetch_sessions: fetch_sessions.clone(),
            connections: Arc::default(),
            quotas: Arc::new(ClientQuotaManager::new(config.quota_windows())),
        });
        for (endpoint, address, socket, security) in kafka_listeners {
            info!(
                listener = %endpoint.name,
                %address,
                protocol = %security.protocol,
                sasl_mechanisms = %security.sasl.as_ref().map(|s| s.mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                client_auth = ?security.tls.as_ref().map(|t| t.client_auth()),
                "Kafka listener security"
            );
            tracker.spawn(connection::serve(
                socket,
                context.clone(),
                ConnectionLimits {
                    max_frame_bytes: config.max_request_bytes,
                    max_inflight: config.max_inflight_per_connection,
                    listener: endpoint.name,
                    security,
                },
                cancel.clone(),
                tracker.clone(),
            ));
        }
        let lifecycle = {
            let (cancel, controlled_shutdown, fatal_tx) = (
                cancel.clone(),
                controlled_shutdown.clone(),
                fatal_tx.clone(),
            );
            tracker.spawn(async move {
                if let Err(e) = manager.run(cancel, controlled_shutdown).await {
                    let _ = fatal_tx.send(e).await;
                }
            })
        };
        {
            let app = router(HttpState {
                status: status.clone(),
                metadata: metadata.clone(),
                groups: Some(http_groups),
                replicas: Some(replicas.clone()),
                fetch_sessions: Some(fetch_sessions),
                partition_metrics: config.partition_metrics,
            });
            let cancel = cancel.clone();
            tracker.spawn(async move {
                let served = axum::serve(http_listener, app)
                    .with_graceful_shutdown(cancel.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    let _ = fatal_tx.send(BrokerError::HttpServe(e)).await;
                }
            });
        }
        info!(
            broker_id = config.broker_id,
            incarnation_id = %status.borrow().incarnation_id,
            kafka = %kafka_addrs
                .iter()
                .map(|(name, address)| format!("{name}://{address}"))
                .collect::<Vec<_>>()
                .join(","),
            advertised = %endpoints
                .iter()
                .map(|e| format!("{}://{}:{}", e.name, e.host, e.port))
                .collect::<Vec<_>>()
                .join(","),
            http = %http_addr,
            controllers = %client.addresses().join(","),
            "broker started"
        );
        Ok(Broker {
            _data_dir_lock: data_dir_lock,
            config,
            kafka_addrs,
            logs,
            http_addr,
            status,
            metadata,
            client,
            cancel,
            controlled_shutdown,
            tracker,
            lifecycle,
            fatal,
        })
    }

    pub fn broker_id(&self) -> i32 {
        self.config.broker_id
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The bound address of the first Kafka listener (useful with `--listen 127.0.0.1:0`).
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addrs[0].1
    }

    /// The bound address of every Kafka listener, by name.
    pub fn kafka_addrs(&self) -> &[(String, SocketAddr)] {
        &self.kafka_addrs
    }

    /// The bound HTTP address (useful with `--http-listen 127.0.0.1:0`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The broker's current standing with the controller.
    pub fn status(&self) -> BrokerStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe_status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.clone()
    }

    pub fn metadata(&self) -> &Arc<MetadataCache> {
        &self.metadata
    }

    pub fn controller_client(&self) -> &Arc<ControllerClient> {
        &self.client
    }

    /// Waits until the broker is ready to serve (what `/readyz` reports), or fails after `timeout` with
    /// the reason it is not.
    pub async fn wait_until_ready(&self, timeout: Duration) -> Result<BrokerStatus, BrokerError> {
        let mut status = self.status.clone();
        let mut images = self.metadata.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = status.borrow_and_update().clone();
            images.borrow_and_update();
            let Some(reason) = current.not_ready_reason(self.metadata.offset()) else {
                return Ok(current);
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::NotReady { reason, timeout_ms: timeout.as_millis() });
                }
                _ = status.changed() => {}
                _ = images.changed() => {}
            }
        }
    }

    /// Serves until `signal` resolves, then shuts down gracefully; or until a task fails for good, then
    /// stops and returns its error.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let failure = tokio::select! {
            _ = signal => None,
            Some(failure) = self.fatal.recv() => Some(failure),
        };
        match failure {
            None => {
                info!("shutdown requested");
                self.shutdown().await
            }
            Some(failure) => {
                error!(error = %failure, "broker failed; stopping");
                self.stop().await;
                Err(failure)
            }
        }
    }

    /// Graceful shutdown: a controlled shutdown (bounded by `--controlled-shutdown-timeout-ms`), then
    /// every task stopped.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        self.controlled_shutdown.cancel();
        let lifecycle = (&mut self.lifecycle).await;
        self.stop_tasks().await;
        info!(broker_id = self.config.broker_id, "broker stopped");
        if let Err(e) = lifecycle {
            return Err(BrokerError::TaskFailed {
                task: "lifecycle",
                reason: e.to_string(),
            });
        }
        match self.fatal.try_recv() {
            Ok(failure) => Err(failure),
            Err(_) => Ok(()),
        }
    }

    /// Stops every task at once, without a controlled shutdown (the controller fences this broker when
    /// its session expires).
    pub async fn stop(self) {
        self.stop_tasks().await;
        info!(broker_id = self.config.broker_id, "broker stopped");
    }

    async fn stop_tasks(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(e) = self.logs.close_all() {
            error!("closing the partition logs failed: {e}");
        }
    }
}

/// A dropped broker stops its tasks (without a controlled shutdown), like a crashed process.
impl Drop for Broker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_serves_one_broker_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).expect("first lock");
        let err = lock_data_dir(dir.path()).unwrap_err();
        assert!(matches!(err, BrokerError::DataDirLocked { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another broker"),
            "{err}"
        );
        drop(first);
        lock_data_dir(dir.path()).expect("free again once released");
    }
}
