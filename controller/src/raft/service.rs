//! Inbound Raft traffic: `RaftGrpc` serves `RaftService` by decoding each `RaftPayload` into the
//! openraft request, handing it to the local `Raft`, and returning the serde-JSON of its
//! `Result<Response, RaftError>` — a Raft-level refusal travels inside the payload, so a gRPC error
//! status means only that the request itself could not be read or answered. This is the counterpart
//! of `network`: both sides must encode the same types. A controller that started with an empty log
//! refuses some votes itself (`vote_hold`).

use std::sync::Arc;

use chronik_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use chronik_proto::v1::{LogStateRequest, LogStateResponse, RaftPayload};
use openraft::error::RaftError;
use openraft::raft::VoteRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use super::vote_hold::{self, VoteHold};
use super::{ChronikRaft, LogStore, NodeId};

/// Largest Raft message accepted or sent: a snapshot chunk, JSON-encoded, must fit, and so must an
/// AppendEntries of `MAX_PAYLOAD_ENTRIES` entries of up to `MAX_ENTRY_BYTES` each. A message over it
/// would be refused by the peer every time it is sent: a follower that needs it never catches up.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The `RaftService` of one controller.
pub struct RaftGrpc {
    raft: ChronikRaft,
    hold: Arc<VoteHold>,
    /// The node's log, read for `LogState`.
    log: LogStore,
}

impl RaftGrpc {
    pub fn new(raft: ChronikRaft, hold: Arc<VoteHold>, log: LogStore) -> Self {
        Self { raft, hold, log }
    }
}

/// The gRPC service to add to the controller's server.
pub fn raft_service(
    raft: ChronikRaft,
    hold: Arc<VoteHold>,
    log: LogStore,
) -> RaftServiceServer<RaftGrpc> {
    RaftServiceServer::new(RaftGrpc::new(raft, hold, log))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

type GrpcResult = Result<tonic::Response<RaftPayload>, Status>;

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(&self, request: tonic::Request<RaftPayload>) -> GrpcResult {
        let rpc = decode(request)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: tonic::Request<RaftPayload>) -> GrpcResult {
        let rpc: VoteRequest<NodeId> = decode(request)?;
        if let Some(refusal) = self
            .hold
            .refusal(&rpc, || self.raft.metrics().borrow().vote)
        {
            return encode(&Ok::<_, RaftError<NodeId>>(refusal));
        }
        encode(&self.raft.vote(rpc).await)
    }

    async fn log_state(
        &self,
        _request: tonic::Request<LogStateRequest>,
    ) -> Result<tonic::Response<LogStateResponse>, Status> {
        Ok(tonic::Response::new(
            vote_hold::log_state(&self.raft, &self.log).await,
        ))
    }

    async fn install_snapshot(&self, request: tonic::Request<RaftPayload>) -> GrpcResult {
        let rpc = decode(request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}

fn decode<T: DeserializeOwned>(request: tonic::Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft request: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> GrpcResult {
    let data = serde_json::to_vec(reply)
        .map_err(|e| Status::internal(format!("unencodable Raft reply: {e}")))?;
    Ok(tonic::Response::new(RaftPayload { data }))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chronik_proto::v1::raft_service_server::RaftService;
    use openraft::error::{InitializeError, RPCError, RaftError};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::VoteRequest;
    use openraft::{BasicNode, Config, Raft, ServerState, Vote};
    use tempfile::TempDir;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;
    use tonic::transport::Server;

    use super::*;
    use crate::applied::AppliedMetadata;
    use crate::raft::{
        open, raft_config, NetworkFactory, NodeId, Request, DEFAULT_ELECTION_MAX_MS,
        DEFAULT_ELECTION_MIN_MS, DEFAULT_HEARTBEAT_MS,
    };
    use crate::state::Record;

    /// Bound on every wait for the cluster to converge.
    const WAIT: Duration = Duration::from_secs(15);

    /// One controller's Raft: its store in a temp dir, served on its own `127.0.0.1` listener.
    struct TestNode {
        id: NodeId,
        addr: String,
        raft: ChronikRaft,
        applied: Arc<AppliedMetadata>,
        log: LogStore,
        hold: Arc<VoteHold>,
        /// Nodes whose requests this node's server refuses, as a cut network link would.
        cut: Arc<Mutex<BTreeSet<NodeId>>>,
        /// The (term, candidate) of every vote request this node's server received.
        asked: Arc<Mutex<Vec<(u64, NodeId)>>>,
        stop_server: Option<oneshot::Sender<()>>,
        server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
        shutdown: CancellationToken,
        _dir: TempDir,
    }

    /// A controller's server as the tests need it: each AppendEntries may run only after `delay`, as
    /// on a saturated machine (a request its sender cancels meanwhile never reaches its Raft), and a
    /// request from a node in `cut` is refused as unreachable.
    struct TestHandler {
        inner: RaftGrpc,
        delay: Duration,
        cut: Arc<Mutex<BTreeSet<NodeId>>>,
        asked: Arc<Mutex<Vec<(u64, NodeId)>>>,
    }

    impl TestHandler {
        /// Refuses a request whose sender (the node of the vote it carries) is cut off.
        fn pass(&self, request: &tonic::Request<RaftPayload>) -> Result<(), Status> {
            if self.cut.lock().unwrap().is_empty() {
                return Ok(());
            }
            let payload: serde_json::Value = serde_json::from_slice(&request.get_ref().data)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let from = payload["vote"]["leader_id"]["node_id"].as_u64();
            match from {
                Some(from) if self.cut.lock().unwrap().contains(&from) => {
                    Err(Status::unavailable(format!("link from {from} is cut")))
                }
                _ => Ok(()),
            }
        }
    }

    #[tonic::async_trait]
    impl RaftService for TestHandler {
        async fn append_entries(&self, request: tonic::Request<RaftPayload>) -> GrpcResult {
            self.pass(&request)?;
            tokio::time::sleep(self.delay).await;
            self.inner.append_entries(request).await
        }

        async fn vote(&self, request: tonic::Request<RaftPayload>) -> GrpcResult {
            let vote: VoteRequest<NodeId> = serde_json::from_slice(&request.get_ref().data)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let leader = vote.vote.leader_id();
            self.asked
                .lock()
                .unwrap()
                .push((leader.term, leader.node_id));
            self.pass(&request)?;
            self.inner.vote(request).await
        }

        async fn install_snapshot(&self, request: tonic::Request<RaftPayload>) -> GrpcResult {
            self.pass(&request)?;
            self.inner.install_snapshot(request).await
        }

        async fn log_state(
            &self,
            request: tonic::Request<LogStateRequest>,
        ) -> Result<tonic::Response<LogStateResponse>, Status> {
            let from = request.get_ref().node_id;
            if self.cut.lock().unwrap().contains(&from) {
                return Err(Status::unavailable(format!("link from {from} is cut")));
            }
            self.inner.log_state(request).await
        }
    }

    impl TestNode {
        async fn start(id: NodeId, config: &Arc<Config>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            Self::start_with(
                id,
                config,
                Duration::ZERO,
                listener,
                VoteHold::new(false, 0),
            )
            .await
        }

        /// A node whose AppendEntries handler runs `append_delay` late.
        async fn start_slow(id: NodeId, config: &Arc<Config>, append_delay: Duration) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            Self::start_with(id, config, append_delay, listener, VoteHold::new(false, 0)).await
        }

        /// A node on `listener`, from an empty store, with `hold` as `ControllerNode` makes it (a held
        /// one holds until `release_when_caught_up`, which `hold_until_caught_up` starts).
        async fn start_with(
            id: NodeId,
            config: &Arc<Config>,
            append_delay: Duration,
            listener: TcpListener,
            hold: Arc<VoteHold>,
        ) -> Self {
            let addr = listener.local_addr().unwrap().to_string();
            let dir = TempDir::new().unwrap();
            let applied = Arc::new(AppliedMetadata::new());
            let (log_store, state_machine) = open(dir.path(), applied.clone()).await.unwrap();
            let log = log_store.clone();
            let raft = Raft::new(
                id,
                config.clone(),
                NetworkFactory::new(id).with_vote_hold(hold.clone()),
                log_store,
                state_machine,
            )
            .await
            .unwrap();
            let shutdown = CancellationToken::new();
            let cut = Arc::new(Mutex::new(BTreeSet::new()));
            let asked = Arc::new(Mutex::new(Vec::new()));
            let (stop_server, stopped) = oneshot::channel::<()>();
            let handler = TestHandler {
                inner: RaftGrpc::new(raft.clone(), hold.clone(), log.clone()),
                delay: append_delay,
                cut: cut.clone(),
                asked: asked.clone(),
            };
            let server = tokio::spawn(
                Server::builder()
                    .add_service(
                        RaftServiceServer::new(handler)
                            .max_decoding_message_size(MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    )
                    .serve_with_incoming_shutdown(crate::node::grpc_incoming(listener), async {
                        let _ = stopped.await;
                    }),
            );
            Self {
                id,
                addr,
                raft,
                applied,
                log,
                hold,
                cut,
                asked,
                stop_server: Some(stop_server),
                server: Some(server),
                shutdown,
                _dir: dir,
            }
        }

        fn node(&self) -> BasicNode {
            BasicNode::new(&self.addr)
        }

        /// Stops Raft and the server, as a killed controller would.
        async fn stop(&mut self) {
            self.shutdown.cancel();
            self.raft.shutdown().await.unwrap();
            if let Some(stop_server) = self.stop_server.take() {
                let _ = stop_server.send(());
            }
            if let Some(server) = self.server.take() {
                tokio::time::timeout(WAIT, server)
                    .await
                    .expect("server stops")
                    .unwrap()
                    .unwrap();
            }
        }

        async fn wait_applied(&self, index: u64) {
            self.raft
                .wait(Some(WAIT))
                .applied_index_at_least(Some(index), format!("node {} applies", self.id))
                .await
                .unwrap();
        }

        fn leads(&self) -> bool {
            self.raft.metrics().borrow().current_leader == Some(self.id)
        }

        /// Starts the task that ends this node's vote hold, asking the other `nodes`.
        fn hold_until_caught_up(&self, nodes: &[TestNode]) {
            let peers = nodes
                .iter()
                .filter(|n| n.id != self.id)
                .map(|n| (n.id, n.addr.clone()))
                .collect();
            tokio::spawn(vote_hold::release_when_caught_up(
                self.raft.clone(),
                self.log.clone(),
                self.id,
                self.hold.clone(),
                peers,
                chronik_control_auth::ClientCredentials::none(),
                |_| Ok(()),
                self.shutdown.clone(),
            ));
        }
    }

    /// Cuts every link between a node in `isolated` and any other node, and heals every other link.
    fn isolate(nodes: &[TestNode], isolated: &[NodeId]) {
        for node in nodes {
            let mut cut = node.cut.lock().unwrap();
            cut.clear();
            for other in nodes.iter().filter(|o| o.id != node.id) {
                if isolated.contains(&node.id) || isolated.contains(&other.id) {
                    cut.insert(other.id);
                }
            }
        }
    }

    fn config() -> Arc<Config> {
        Arc::new(
            raft_config(
                DEFAULT_HEARTBEAT_MS,
                DEFAULT_ELECTION_MIN_MS,
                DEFAULT_ELECTION_MAX_MS,
                1000,
            )
            .unwrap(),
        )
    }

    fn members(nodes: &[&TestNode]) -> BTreeMap<NodeId, BasicNode> {
        nodes.iter().map(|n| (n.id, n.node())).collect()
    }

    /// Waits until every node follows the same leader and none holds its vote, and returns the
    /// leader's id.
    async fn wait_for_leader(nodes: &[&TestNode]) -> NodeId {
        let metrics = nodes[0]
            .raft
            .wait(Some(WAIT))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .unwrap();
        let leader = metrics.current_leader.unwrap();
        for node in nodes {
            node.raft
                .wait(Some(WAIT))
                .current_leader(leader, format!("node {} follows {leader}", node.id))
                .await
                .unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        for node in nodes {
            while node.hold.is_held() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {} still holds its vote: {:?}",
                    node.id,
                    node.raft.metrics().borrow()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        leader
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn three_controllers_replicate_over_grpc_and_survive_a_lost_follower() {
        let config = config();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(TestNode::start(id, &config).await);
        }
        let all: Vec<&TestNode> = nodes.iter().collect();
        nodes[0].raft.initialize(members(&all)).await.unwrap();
        let leader_id = wait_for_leader(&all).await;
        let leader = nodes.iter().position(|n| n.id == leader_id).unwrap();

        let written = nodes[leader]
            .raft
            .client_write(Request {
                records: vec![Record::ClusterId {
                    cluster_id: "grpc-cluster".to_string(),
                }],
            })
            .await
            .unwrap();
        assert_eq!(written.data.offset, written.log_id.index);
        for node in &nodes {
            node.wait_applied(written.log_id.index).await;
            let image = node.applied.image();
            assert_eq!(
                image.cluster_id.as_deref(),
                Some("grpc-cluster"),
                "node {}",
                node.id
            );
            assert!(image.offset >= written.log_id.index);
        }

        let lost = (leader + 1) % nodes.len();
        nodes[lost].stop().await;
        let written = nodes[leader]
            .raft
            .client_write(Request {
                records: vec![Record::ProducerIds {
                    broker_id: 1,
                    broker_epoch: 1,
                    next_producer_id: 1000,
                }],
            })
            .await
            .unwrap();
        for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != lost) {
            node.wait_applied(written.log_id.index).await;
            assert_eq!(node.applied.image().next_producer_id, 1000, "node {i}");
        }
        assert_eq!(nodes[lost].applied.image().next_producer_id, 0);

        for node in &mut nodes {
            if node.server.is_some() {
                node.stop().await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_new_leader_takes_over_within_five_seconds_of_losing_the_old_one() {
        let config = config();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(TestNode::start(id, &config).await);
        }
        let all: Vec<&TestNode> = nodes.iter().collect();
        nodes[0].raft.initialize(members(&all)).await.unwrap();
        let old_leader_id = wait_for_leader(&all).await;
        let mut old_leader =
            nodes.remove(nodes.iter().position(|n| n.id == old_leader_id).unwrap());

        old_leader.stop().await;
        let lost_at = tokio::time::Instant::now();
        let new_leader = nodes[0]
            .raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != old_leader_id),
                "a surviving controller is elected",
            )
            .await
            .unwrap()
            .current_leader
            .unwrap();
        let leader = nodes.iter().find(|n| n.id == new_leader).unwrap();
        let written = leader
            .raft
            .client_write(Request {
                records: vec![Record::ClusterId {
                    cluster_id: "after-failover".to_string(),
                }],
            })
            .await
            .unwrap();
        for node in &nodes {
            node.wait_applied(written.log_id.index).await;
            assert_eq!(
                node.applied.image().cluster_id.as_deref(),
                Some("after-failover")
            );
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(5),
            "{:?}",
            lost_at.elapsed()
        );

        for node in &mut nodes {
            node.stop().await;
        }
    }

    /// openraft's FAQ case ("Can I wipe out the data of ONE node"): an entry commits on the leader and
    /// one follower while the other follower is cut off; the first follower loses its store and the
    /// leader is cut off in turn. Before the vote hold (`vote_hold`), the emptied follower voted for the
    /// lagging one at once, which won without the committed entry. Now neither is elected until the
    /// old leader is back; then the emptied one catches up, votes again, and the entry survives the
    /// next election without the old leader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_controller_that_lost_its_log_does_not_vote_a_committed_entry_away() {
        let config = config();
        let (mut nodes, [a, b, c]) = held_quorum(&config).await;
        let (a_id, b_id, c_id) = (nodes[a].id, nodes[b].id, nodes[c].id);

        isolate(&nodes, &[b_id]);
        let written = write_cluster_id(&nodes[a], "committed-before-the-loss").await;
        nodes[c].wait_applied(written).await;

        // The leader is cut off; the follower that holds the entry loses its store and starts again,
        // initializing as `ControllerNode` does on an empty store.
        lose_store(&mut nodes, c, &config, &[a_id, c_id], &[a_id]).await;
        let membership = members(&nodes.iter().collect::<Vec<_>>());
        if let Err(e) = nodes[c].raft.initialize(membership).await {
            assert!(
                matches!(e, RaftError::APIError(InitializeError::NotAllowed(_))),
                "{e}"
            );
        }

        // The lagging follower campaigns (three terms) and is never elected.
        while_campaigning(&nodes[b], || {
            for node in [&nodes[b], &nodes[c]] {
                let m = node.raft.metrics().borrow().clone();
                assert!(
                    m.current_leader.is_none_or(|l| l == a_id),
                    "node {} sees a leader elected without the committed entry: {m:?}",
                    node.id
                );
            }
        })
        .await;
        assert!(nodes[c].hold.is_held());

        isolate(&nodes, &[]);
        wait_for_agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
        for node in &nodes {
            node.wait_applied(written).await;
        }
        assert!(!nodes[c].hold.is_held());

        isolate(&nodes, &[a_id]);
        let survivors = [&nodes[b], &nodes[c]];
        let leader = wait_for_agreed_leader(&survivors).await;
        let leader = survivors.iter().find(|n| n.id == leader).unwrap();
        let after = leader
            .raft
            .client_write(Request {
                records: vec![Record::ProducerIds {
                    broker_id: 1,
                    broker_epoch: 1,
                    next_producer_id: 1000,
                }],
            })
            .await
            .unwrap();
        for node in survivors {
            node.wait_applied(after.log_id.index).await;
            let image = node.applied.image();
            assert_eq!(
                image.cluster_id.as_deref(),
                Some("committed-before-the-loss"),
                "node {}",
                node.id
            );
        }
        for node in &mut nodes {
            node.stop().await;
        }
    }

    /// A held controller that has entries never campaigns (openraft counts a candidate's own vote
    /// without asking it): an emptied follower caught up from the leader while the other follower
    /// is cut off, so it stays held; then the leader is cut off. The other follower campaigns term
    /// after term, and the held one never becomes a candidate, until everyone is back and it is
    /// released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_held_controller_with_entries_does_not_campaign() {
        let config = config();
        let (mut nodes, [a, b, c]) = held_quorum(&config).await;
        let (a_id, b_id, c_id) = (nodes[a].id, nodes[b].id, nodes[c].id);
        let written = write_cluster_id(&nodes[a], "before-the-loss").await;

        lose_store(&mut nodes, c, &config, &[b_id, c_id], &[b_id]).await;
        nodes[c].wait_applied(written).await;
        assert!(
            nodes[c].hold.is_held(),
            "released without hearing from {b_id}"
        );

        isolate(&nodes, &[a_id]);
        while_campaigning(&nodes[b], || {
            let m = nodes[c].raft.metrics().borrow().clone();
            assert!(
                matches!(m.state, ServerState::Follower)
                    && m.vote.leader_id().voted_for() != Some(c_id),
                "the held node campaigned: {m:?}"
            );
            assert!(m.current_leader.is_none_or(|l| l == a_id), "{m:?}");
        })
        .await;
        assert!(nodes[c].hold.is_held());

        isolate(&nodes, &[]);
        wait_for_agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
        for node in &mut nodes {
            node.stop().await;
        }
    }

    /// A controller released with a vote floor above its term (it may have voted in those terms
    /// before it lost its log) asks nobody for a vote in them: made to campaign, it moves above its
    /// floor instead, and the quorum still elects a leader, it included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_released_controller_asks_for_no_vote_at_or_below_its_floor() {
        const FLOOR: u64 = 20;
        let config = config();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let floor = if id == 1 { FLOOR } else { 0 };
            let hold = VoteHold::new(false, floor);
            nodes.push(TestNode::start_with(id, &config, Duration::ZERO, listener, hold).await);
        }
        let all: Vec<&TestNode> = nodes.iter().collect();
        nodes[1].raft.initialize(members(&all)).await.unwrap();
        wait_for_leader(&all).await;
        // Made to campaign (again, should the first try come before it knows it is a voter).
        let deadline = tokio::time::Instant::now() + WAIT;
        while nodes[0].raft.metrics().borrow().current_term < FLOOR {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node 1 did not move to its floor: {:?}",
                nodes[0].raft.metrics().borrow()
            );
            nodes[0].raft.trigger().elect().await.unwrap();
            let _ = nodes[0]
                .raft
                .wait(Some(Duration::from_secs(1)))
                .metrics(|m| m.current_term >= FLOOR, "node 1 moves to its floor")
                .await;
        }
        // Node 1 refuses the old leader's entries (its vote is higher now) and campaigns above the
        // floor: whoever leads then leads there.
        let leader = wait_for_agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
        let term = nodes[0].raft.metrics().borrow().current_term;
        assert!(term > FLOOR, "leader {leader} in term {term}");
        for node in &nodes[1..] {
            let asked = node.asked.lock().unwrap().clone();
            assert!(
                asked
                    .iter()
                    .all(|&(term, candidate)| candidate != 1 || term > FLOOR),
                "node 1 asked node {} for a vote at or below its floor: {asked:?}",
                node.id
            );
        }
        for node in &mut nodes {
            node.stop().await;
        }
    }

    /// Three controllers started from empty stores and holding their votes, as `ControllerNode`
    /// starts them, formed into a quorum (which releases every hold); returns them with the positions
    /// of the leader and of the two followers.
    async fn held_quorum(config: &Arc<Config>) -> (Vec<TestNode>, [usize; 3]) {
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            nodes.push(
                TestNode::start_with(id, config, Duration::ZERO, listener, VoteHold::new(true, 0))
                    .await,
            );
        }
        for node in &nodes {
            node.hold_until_caught_up(&nodes);
        }
        let all: Vec<&TestNode> = nodes.iter().collect();
        nodes[0].raft.initialize(members(&all)).await.unwrap();
        let leader = wait_for_leader(&all).await;
        let a = nodes.iter().position(|n| n.id == leader).unwrap();
        (nodes, [a, (a + 1) % 3, (a + 2) % 3])
    }

    /// Writes a cluster id on `leader`; returns the entry's index.
    async fn write_cluster_id(leader: &TestNode, cluster_id: &str) -> u64 {
        let written = leader
            .raft
            .client_write(Request {
                records: vec![Record::ClusterId {
                    cluster_id: cluster_id.to_string(),
                }],
            })
            .await
            .unwrap();
        written.log_id.index
    }

    /// Stops `nodes[at]` with the links of `cut_while_down` cut, and starts it again at its address
    /// from an empty store, holding its vote, with the links of `cut_after` cut.
    async fn lose_store(
        nodes: &mut [TestNode],
        at: usize,
        config: &Arc<Config>,
        cut_while_down: &[NodeId],
        cut_after: &[NodeId],
    ) {
        isolate(nodes, cut_while_down);
        let (id, addr) = (nodes[at].id, nodes[at].addr.clone());
        nodes[at].stop().await;
        let listener = TcpListener::bind(&addr).await.unwrap();
        nodes[at] =
            TestNode::start_with(id, config, Duration::ZERO, listener, VoteHold::new(true, 0))
                .await;
        isolate(nodes, cut_after);
        nodes[at].hold_until_caught_up(nodes);
    }

    /// Runs `check` every 10 ms until `campaigner`'s term has risen by three (three campaigns).
    async fn while_campaigning(campaigner: &TestNode, check: impl Fn()) {
        let from = campaigner.raft.metrics().borrow().current_term;
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            let term = campaigner.raft.metrics().borrow().current_term;
            if term >= from + 3 {
                return;
            }
            check();
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} did not campaign",
                campaigner.id
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `nodes` agree on one leader in one term, that leader leads, and none holds its
    /// vote; returns the leader's id. Unlike `wait_for_leader`, it outlasts a stale leader stepping
    /// down.
    async fn wait_for_agreed_leader(nodes: &[&TestNode]) -> NodeId {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let views: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let m = n.raft.metrics().borrow().clone();
                    (m.current_leader, m.current_term)
                })
                .collect();
            if let Some((Some(leader), _)) = views.first().copied() {
                if views.iter().all(|v| *v == views[0])
                    && nodes.iter().any(|n| n.id == leader && n.leads())
                    && nodes.iter().all(|n| !n.hold.is_held())
                {
                    return leader;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_learner_behind_the_purged_log_catches_up_from_a_chunked_snapshot() {
        let config = Arc::new(Config {
            // Several InstallSnapshot RPCs for one snapshot.
            snapshot_max_chunk_size: 64,
            ..(*config()).clone()
        });
        let mut leader = TestNode::start(1, &config).await;
        leader.raft.initialize(members(&[&leader])).await.unwrap();
        wait_for_leader(&[&leader]).await;
        let mut last = None;
        for i in 1..=5 {
            let written = leader
                .raft
                .client_write(Request {
                    records: vec![
                        Record::ClusterId {
                            cluster_id: "snapshot-cluster".to_string(),
                        },
                        Record::ProducerIds {
                            broker_id: 1,
                            broker_epoch: 1,
                            next_producer_id: i * 1000,
                        },
                    ],
                })
                .await
                .unwrap();
            last = Some(written.log_id);
        }
        let last = last.unwrap();
        leader.raft.trigger().snapshot().await.unwrap();
        leader
            .raft
            .wait(Some(WAIT))
            .snapshot(last, "leader builds a snapshot")
            .await
            .unwrap();
        leader.raft.trigger().purge_log(last.index).await.unwrap();
        leader
            .raft
            .wait(Some(WAIT))
            .purged(Some(last), "leader purges its log")
            .await
            .unwrap();

        let mut learner = TestNode::start(2, &config).await;
        let added = leader
            .raft
            .add_learner(learner.id, learner.node(), true)
            .await
            .unwrap();
        learner.wait_applied(added.log_id.index).await;
        let metrics = learner.raft.metrics().borrow().clone();
        assert_eq!(metrics.state, ServerState::Learner);
        assert_eq!(
            metrics.snapshot,
            Some(last),
            "learner installed the snapshot"
        );
        assert_eq!(learner.applied.image(), leader.applied.image());
        assert_eq!(learner.applied.image().next_producer_id, 5000);

        learner.stop().await;
        leader.stop().await;
    }

    /// One CreateTopics of 10 topics × 1,000 partitions (RF 3) is one entry of 1.8 MB, whose
    /// AppendEntries takes longer than a 50 ms heartbeat (JSON both ways, 80 ms each in a debug
    /// build, and the follower's fsync). openraft 0.9 bounds every AppendEntries by the heartbeat
    /// interval and resends after a timeout: before `network` let such a send finish, the entry never
    /// arrived, followers elected themselves over and over (13 terms in 5 s) and it was never
    /// committed (issue #18: at 30,000 partitions the quorum took no writes for 10 minutes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fast_timings_commit_an_entry_larger_than_a_heartbeat_can_carry() {
        let config = Arc::new(raft_config(50, 150, 300, 1000).unwrap());
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(TestNode::start(id, &config).await);
        }
        let all: Vec<&TestNode> = nodes.iter().collect();
        nodes[0].raft.initialize(members(&all)).await.unwrap();
        wait_for_leader(&all).await;

        let mut records = Vec::new();
        for t in 0..10 {
            let topic_id = uuid::Uuid::new_v4();
            records.push(Record::Topic {
                name: format!("large-{t}"),
                topic_id,
            });
            for partition in 0..1000 {
                let replicas: Vec<i32> = (0..3).map(|r| (partition + r) % 3 + 1).collect();
                records.push(Record::Partition(crate::state::records::PartitionRecord {
                    topic_id,
                    partition,
                    isr: replicas.clone(),
                    leader: replicas[0],
                    replicas,
                    ..Default::default()
                }));
            }
        }
        let started = tokio::time::Instant::now();
        let deadline = Duration::from_secs(30);
        // As a client does, the write is retried on the new leader when the leader changes before
        // it commits (a refused write may also be committed by the next leader: the same records
        // then apply twice, which leaves the same topics). It must commit within the deadline.
        let mut refusals = Vec::new();
        loop {
            assert!(
                started.elapsed() < deadline,
                "the large entry never committed; refusals: {refusals:?}"
            );
            let leader = nodes
                .iter()
                .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id));
            let Some(leader) = leader else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let write = leader.raft.client_write(Request {
                records: records.clone(),
            });
            match tokio::time::timeout(deadline, write).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => refusals.push(e.to_string()),
                Err(_) => panic!("a write neither committed nor refused in {deadline:?}"),
            }
        }
        // Then what `Quorum::run` does per command: confirm leadership, write; five times.
        let mut done = 0;
        let mut failures = Vec::new();
        while done < 5 {
            assert!(
                started.elapsed() < deadline,
                "{done} writes after the large entry; failures: {failures:?}"
            );
            let leader = nodes
                .iter()
                .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id));
            let Some(leader) = leader else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            if let Err(e) = leader.raft.ensure_linearizable().await {
                failures.push(e.to_string());
                continue;
            }
            let small = Request {
                records: vec![Record::ClusterId {
                    cluster_id: "after-large".to_string(),
                }],
            };
            match leader.raft.client_write(small).await {
                Ok(_) => done += 1,
                Err(e) => failures.push(e.to_string()),
            }
        }
        // Every node applied it.
        for node in &nodes {
            let deadline = tokio::time::Instant::now() + WAIT;
            while node.applied.with_image(|i| i.topic_ids.len()) < 10 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {} never applied the large entry",
                    node.id
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for node in &mut nodes {
            node.stop().await;
        }
    }

    /// Three controllers with 50 ms heartbeats whose AppendEntries handlers each run 80 ms late, as
    /// on a saturated machine; returns them and the elected leader.
    async fn slow_quorum() -> (Vec<TestNode>, NodeId) {
        let config = Arc::new(raft_config(50, 150, 300, 1000).unwrap());
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(TestNode::start_slow(id, &config, Duration::from_millis(80)).await);
        }
        let all: Vec<&TestNode> = nodes.iter().collect();
        nodes[0].raft.initialize(members(&all)).await.unwrap();
        let leader_id = wait_for_leader(&all).await;
        (nodes, leader_id)
    }

    /// Followers that run each AppendEntries handler 80 ms late, past a 50 ms heartbeat interval
    /// (openraft's bound on every AppendEntries) but well within the 300 ms leader lease: the leader
    /// must keep its followers and commit. When a cancelled request never reached the follower's
    /// Raft, they heard from no leader at all and campaigned again and again (issue #18, at 30,000
    /// partitions: terms 5 → 10 in 3 s while the brokers' log opening saturated the CPU).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_slower_than_a_heartbeat_keep_their_leader() {
        let (mut nodes, leader_id) = slow_quorum().await;
        let leader = nodes.iter().find(|n| n.id == leader_id).unwrap();
        let term = leader.raft.metrics().borrow().current_term;

        let written = tokio::time::timeout(
            WAIT,
            leader.raft.client_write(Request {
                records: vec![Record::ClusterId {
                    cluster_id: "slow-followers".to_string(),
                }],
            }),
        )
        .await
        .expect("the write is answered")
        .expect("the leader kept its followers and committed");
        // Three seconds: ten leases of 300 ms.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for node in &nodes {
            let m = node.raft.metrics().borrow().clone();
            assert_eq!(
                (m.current_term, m.current_leader),
                (term, Some(leader_id)),
                "node {} changed leader",
                node.id
            );
            node.wait_applied(written.log_id.index).await;
        }
        for node in &mut nodes {
            node.stop().await;
        }
    }

    /// A command that writes records needs no leadership round trip first: with followers that
    /// answer 80 ms late and 50 ms heartbeats, a check bounded by one heartbeat always fails ("not
    /// enough for a quorum"), and `Quorum::run` refused every command while it ran one first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_that_write_need_no_leadership_round_trip() {
        let (mut nodes, leader_id) = slow_quorum().await;
        let leader = nodes.iter().find(|n| n.id == leader_id).unwrap();
        let voters = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        let quorum = crate::quorum::Quorum::new(
            leader.raft.clone(),
            leader.applied.clone(),
            leader_id,
            voters,
            Arc::default(),
            WAIT,
        );
        for i in 0..3 {
            let (offset, ()) = quorum
                .run(|_| {
                    Ok(crate::state::ControllerResult::new(
                        vec![Record::ProducerIds {
                            broker_id: 1,
                            broker_epoch: 1,
                            next_producer_id: (i + 1) * 1000,
                        }],
                        (),
                    ))
                })
                .await
                .expect("a write command on a leader with slow followers");
            assert!(offset > 0);
        }
        assert_eq!(leader.applied.image().next_producer_id, 3000);
        for node in &mut nodes {
            node.stop().await;
        }
    }

    #[tokio::test]
    async fn undecodable_payload_is_invalid_argument() {
        let config = config();
        let mut node = TestNode::start(1, &config).await;
        let grpc = RaftGrpc::new(node.raft.clone(), node.hold.clone(), node.log.clone());
        let status = grpc
            .vote(tonic::Request::new(RaftPayload {
                data: b"{not json".to_vec(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        node.stop().await;
    }

    #[tokio::test]
    async fn network_errors_are_typed_for_openraft() {
        let option = RPCOption::new(Duration::from_secs(2));
        let vote = VoteRequest::new(Vote::new(1, 9), None);

        // Nothing listens: unreachable, so openraft backs off.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let mut factory = NetworkFactory::new(9);
        let mut connection = factory.new_client(1, &BasicNode::new(closed_addr)).await;
        let error = connection
            .vote(vote.clone(), option.clone())
            .await
            .unwrap_err();
        assert!(matches!(error, RPCError::Unreachable(_)), "{error}");

        // A peer whose Raft has stopped answers with its RaftError: a remote error.
        let mut node = TestNode::start(1, &config()).await;
        node.raft.shutdown().await.unwrap();
        let mut connection = factory.new_client(1, &node.node()).await;
        let error = connection.vote(vote, option).await.unwrap_err();
        let RPCError::RemoteError(remote) = &error else {
            panic!("expected a remote error, got {error}");
        };
        assert!(matches!(remote.source, RaftError::Fatal(_)), "{error}");
        assert_eq!(remote.target, 1);
        node.stop().await;
    }
}
