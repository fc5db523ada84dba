//! The tests' side of `chronikctl::local`: start a cluster in a temp dir, wait for conditions with
//! deadlines, read the cluster through the controllers' HTTP and gRPC APIs, and print every node's log
//! tail when a test fails.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_proto::v1 as pb;
use chronik_proto::v1::admin_service_client::AdminServiceClient;
use chronikctl::local::{ClusterSpec, LocalCluster};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tonic::transport::Channel;

/// A local cluster that lives in a temp dir and shows its logs if the test panics.
pub struct TestCluster {
    cluster: LocalCluster,
    _dir: TempDir,
}

impl Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in self
                .cluster
                .controllers
                .iter()
                .chain(self.cluster.brokers.iter())
            {
                eprintln!(
                    "----- {} {} ({}) -----\n{}",
                    node.kind,
                    node.id,
                    node.log_file.display(),
                    node.log_tail(40)
                );
            }
        }
        self.cluster.kill_all();
    }
}

/// Starts `controllers` controllers and `brokers` brokers and waits until all are ready.
pub async fn start(controllers: usize, brokers: usize, controller_args: &[&str]) -> TestCluster {
    start_with(controllers, brokers, |spec| {
        spec.controller_args = controller_args.iter().map(|s| s.to_string()).collect();
    })
    .await
}

/// Like `start`, with the spec adjusted by `adjust` first (extra flags, a secured control plane…).
pub async fn start_with(
    controllers: usize,
    brokers: usize,
    adjust: impl FnOnce(&mut ClusterSpec),
) -> TestCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(dir.path(), controllers, brokers);
    adjust(&mut spec);
    let cluster = LocalCluster::start(spec).expect("cluster starts");
    let mut cluster = TestCluster { cluster, _dir: dir };
    cluster
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("cluster ready");
    cluster
}

/// Polls `probe` every 100 ms until it yields a value, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/v1/cluster` of one controller.
pub async fn cluster_json(http_addr: std::net::SocketAddr) -> Option<Value> {
    let response = reqwest::Client::new()
        .get(format!("http://{http_addr}/api/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// The active controller's id, as a running controller that reports itself leader says.
pub async fn active_controller(cluster: &LocalCluster) -> Option<u64> {
    for (id, http) in cluster.controllers.iter().map(|c| (c.id, c.http_addr)) {
        if let Some(view) = cluster_json(http).await {
            let me = view["controllers"]
                .as_array()?
                .iter()
                .find(|c| c["is_self"] == true)?
                .clone();
            if me["role"] == "leader" {
                return Some(id);
            }
        }
    }
    None
}

/// The cluster view of the active controller.
pub async fn leader_view(cluster: &LocalCluster) -> Option<Value> {
    let id = active_controller(cluster).await?;
    let http = cluster.controllers.iter().find(|c| c.id == id)?.http_addr;
    cluster_json(http).await
}

/// A gRPC channel to `addr` that gives up quickly on a dead or paused node.
pub async fn channel(addr: std::net::SocketAddr) -> Option<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .ok()
}

pub async fn admin(cluster: &LocalCluster) -> AdminServiceClient<Channel> {
    let id = wait_for("an active controller", Duration::from_secs(15), || {
        active_controller(cluster)
    })
    .await;
    let addr = cluster
        .controllers
        .iter()
        .find(|c| c.id == id)
        .expect("controller")
        .addr;
    AdminServiceClient::new(
        channel(addr)
            .await
            .expect("connects to the active controller"),
    )
}

/// Describes one topic through any running controller.
/// Describes one topic through the active controller (or, without one, any controller that answers).
pub async fn describe_topic(cluster: &LocalCluster, name: &str) -> Option<pb::TopicDescription> {
    let leader = active_controller(cluster).await;
    let mut addrs: Vec<(u64, std::net::SocketAddr)> =
        cluster.controllers.iter().map(|c| (c.id, c.addr)).collect();
    addrs.sort_by_key(|(id, _)| Some(*id) != leader);
    for (_, addr) in addrs {
        let Some(channel) = channel(addr).await else {
            continue;
        };
        let mut client = AdminServiceClient::new(channel);
        let request = pb::DescribeTopicsRequest {
            names: vec![name.to_string()],
        };
        if let Ok(response) = client.describe_topics(request).await {
            let topic = response.into_inner().topics.into_iter().next()?;
            return (topic.error_code == 0).then_some(topic);
        }
    }
    None
}

/// Creates a topic through the active controller and returns its description.
pub async fn create_topic(
    cluster: &LocalCluster,
    name: &str,
    partitions: i32,
    replication_factor: i32,
) -> pb::TopicDescription {
    let mut client = admin(cluster).await;
    let response = client
        .create_topics(pb::CreateTopicsRequest {
            topics: vec![pb::CreatableTopic {
                name: name.to_string(),
                num_partitions: partitions,
                replication_factor,
                configs: Default::default(),
                assignments: Vec::new(),
            }],
            validate_only: false,
        })
        .await
        .expect("CreateTopics answers")
        .into_inner();
    let result = &response.topics[0];
    assert_eq!(
        result.error_code, 0,
        "create {name}: {}",
        result.error_message
    );
    describe_topic(cluster, name)
        .await
        .expect("created topic is described")
}

/// Broker `id`'s state in a cluster view.
pub fn broker_state(view: &Value, id: u64) -> Option<String> {
    view["brokers"]
        .as_array()?
        .iter()
        .find(|b| b["broker_id"] == id)
        .and_then(|b| b["state"].as_str().map(str::to_string))
}

/// A TCP proxy in front of one address, whose connections a test can drop: the broker-to-controller
/// link cut the way a process death or a reset cuts it (the sockets close), without killing anything.
pub struct Proxy {
    pub addr: SocketAddr,
    refusing: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let refusing = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let acceptor = {
            let (refusing, connections) = (refusing.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if refusing.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection close
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut live = connections.lock().unwrap();
                    live.retain(|c| !c.is_finished());
                    live.push(task.abort_handle());
                }
            })
        };
        Proxy {
            addr,
            refusing,
            connections,
            acceptor,
        }
    }

    /// Closes every proxied connection and closes new ones at once for `outage`.
    pub async fn drop_connections(&self, outage: Duration) -> usize {
        self.refusing.store(true, Ordering::SeqCst);
        let dropped: Vec<AbortHandle> = std::mem::take(&mut *self.connections.lock().unwrap());
        for connection in &dropped {
            connection.abort();
        }
        tokio::time::sleep(outage).await;
        self.refusing.store(false, Ordering::SeqCst);
        dropped.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        for connection in self.connections.lock().unwrap().iter() {
            connection.abort();
        }
    }
}
