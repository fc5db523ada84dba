//! Outbound Raft traffic: `NetworkFactory` hands openraft one `NetworkConnection` per peer, which sends
//! AppendEntries, Vote and InstallSnapshot over `RaftService` gRPC to `http://{node.addr}`, each
//! request and reply serde-JSON in a `RaftPayload`. What must stay true: errors keep their meaning for
//! openraft — a peer that cannot be reached is `Unreachable` (openraft backs off), a reply carrying a
//! `RaftError` is a `RemoteError`, an RPC that outlives its time-to-live is a `Timeout`, anything else
//! is a `Network` error — and after a failure other than a timeout the peer's client is dropped so
//! the next RPC reconnects.
//!
//! Two things keep a quorum with short heartbeats working on a busy machine (issue #18):
//!
//! - **One HTTP/2 connection per peer, shared.** openraft 0.9 makes a new connection object for every
//!   leadership check of a linearizable read (`Raft::ensure_linearizable`, which every command runs
//!   first), each bounded by one heartbeat interval. Connecting anew each time put a TCP and HTTP/2
//!   handshake inside that bound, and a timed-out RPC dropped the connection the next one needed, so
//!   on a loaded machine the checks failed ("not enough for a quorum") and every command with them.
//!   The client now lives in the factory, per peer, and survives timeouts (HTTP/2 cancels the one
//!   stream; keepalives close a connection whose peer stopped answering).
//! - **Entries are delivered even when they take longer than a heartbeat.** openraft 0.9 bounds every
//!   AppendEntries by the heartbeat interval, entries or not, and resends the same entries after a
//!   timeout. One CreateTopics of 10,000 partitions is one entry of a few MB (JSON, then the
//!   follower's fsync): cancelled after 50 ms, it never arrived, the follower heard nothing from the
//!   leader, elected itself, and the new leader was stuck the same way (13 terms in 5 s in
//!   `fast_timings_commit_an_entry_larger_than_a_heartbeat_can_carry`). An AppendEntries that carries
//!   entries is therefore sent on its own task, which outlives openraft's wait (bounded by
//!   `DETACHED_RPC_TIMEOUT`), and openraft's retry of the same entries waits for that send instead of
//!   starting another, so the entries arrive once and the retry after they do gets the answer.
//! - **Heartbeats are delivered late rather than not at all.** A gRPC request cancelled by its sender
//!   is dropped by the receiver before its Raft sees it. On a machine whose CPU is saturated (brokers
//!   opening 30,000 logs), a follower often took longer than 50 ms to run the handler, so it never
//!   heard from a live leader, campaigned, and the quorum changed leader every few hundred ms
//!   (terms 5 → 10 in 3 s). Every AppendEntries, heartbeats included, is sent detached: openraft
//!   still gives up waiting after one interval, but the follower still gets it and its leader lease
//!   is renewed.
//!
//! A vote request in a term at or below this node's vote floor is not sent: `VoteHold::own_candidacy`
//! answers it (`vote_hold`).

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chronik_control_auth::{AuthChannel, ClientCredentials};
use chronik_proto::v1::raft_service_client::RaftServiceClient;
use chronik_proto::v1::RaftPayload;
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, LogId, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tonic::Code;

use super::progress::FollowerProgress;
use super::service::MAX_MESSAGE_BYTES;
use super::vote_hold::VoteHold;
use super::{NodeId, TypeConfig};

/// Longest wait for a TCP + HTTP/2 connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an AppendEntries carrying entries may take once openraft has stopped waiting for it.
const DETACHED_RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keepalive on peer connections: a peer that stops answering (a cut network) is noticed
/// and its connection replaced, since timeouts alone no longer drop it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates connections from this node to its peers.
pub struct NetworkFactory {
    id: NodeId,
    credentials: ClientCredentials,
    peers: Mutex<BTreeMap<NodeId, Arc<Peer>>>,
    progress: Arc<FollowerProgress>,
    hold: Arc<VoteHold>,
}

impl NetworkFactory {
    /// `id` is this node's id (it names the sender in timeout errors). Plaintext, without a token,
    /// until `with_credentials`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            credentials: ClientCredentials::none(),
            peers: Mutex::default(),
            progress: Arc::default(),
            hold: Arc::default(),
        }
    }

    /// The vote hold whose floor this node's own candidacies respect (`VoteHold::own_candidacy`).
    pub fn with_vote_hold(mut self, hold: Arc<VoteHold>) -> Self {
        self.hold = hold;
        self
    }

    /// Where the peers' answers to AppendEntries are recorded (DescribeQuorum reads them).
    pub fn with_progress(mut self, progress: Arc<FollowerProgress>) -> Self {
        self.progress = progress;
        self
    }

    /// What this node presents to its peers: the CA that verifies them, its certificate, the cluster
    /// token.
    pub fn with_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.credentials = credentials;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> NetworkConnection {
        let peer = {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            let peer = peers
                .entry(target)
                .or_insert_with(|| Arc::new(Peer::new(node.clone(), self.credentials.clone())));
            if peer.node != *node {
                // The member's address changed: a new connection to the new one.
                *peer = Arc::new(Peer::new(node.clone(), self.credentials.clone()));
            }
            peer.clone()
        };
        NetworkConnection {
            id: self.id,
            target,
            peer,
            progress: self.progress.clone(),
            hold: self.hold.clone(),
        }
    }
}

/// A connection to one peer, as openraft holds it; the state lives in the shared `Peer`.
pub struct NetworkConnection {
    id: NodeId,
    target: NodeId,
    peer: Arc<Peer>,
    progress: Arc<FollowerProgress>,
    hold: Arc<VoteHold>,
}

/// What this node keeps per peer, shared by every `NetworkConnection` to it.
struct Peer {
    node: BasicNode,
    credentials: ClientCredentials,
    /// Connects on first use and after every failure other than a timeout.
    client: Mutex<Option<RaftServiceClient<AuthChannel>>>,
    /// The AppendEntries with entries being sent to this peer (at most one: openraft runs one
    /// replication stream per peer), which openraft's retry of the same entries joins.
    replication: Mutex<Option<InFlight>>,
}

/// The entries an AppendEntries carries, as far as its answer depends on them.
#[derive(Clone, PartialEq, Eq)]
struct AppendKey {
    vote: Vote<NodeId>,
    prev_log_id: Option<LogId<NodeId>>,
    last_log_id: Option<LogId<NodeId>>,
}

struct InFlight {
    key: AppendKey,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// The reply bytes of one RPC, or why there are none.
type Outcome = Result<Vec<u8>, Failure>;

#[derive(Clone, Debug)]
enum Failure {
    Unreachable(String),
    Timeout,
    Network(String),
}

/// A failure carried to openraft, which wants an `Error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerError(String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Peer {
    fn new(node: BasicNode, credentials: ClientCredentials) -> Self {
        Self {
            node,
            credentials,
            client: Mutex::default(),
            replication: Mutex::default(),
        }
    }

    fn cached_client(&self) -> Option<RaftServiceClient<AuthChannel>> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_client(&self, client: Option<RaftServiceClient<AuthChannel>>) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = client;
    }

    /// Sends one RPC within `ttl` and returns its reply bytes.
    async fn call(&self, rpc: RPCTypes, data: Vec<u8>, ttl: Duration) -> Outcome {
        let mut client = match self.cached_client() {
            Some(client) => client,
            None => {
                // Bounded within the TTL so an unconnectable peer is reported as unreachable (and
                // backed off from) before openraft's own deadline turns it into a timeout.
                let connect_timeout = CONNECT_TIMEOUT.min(ttl * 3 / 4);
                let client = tokio::time::timeout(connect_timeout, self.connect())
                    .await
                    .map_err(|e| Failure::Unreachable(e.to_string()))?
                    .map_err(|e| Failure::Unreachable(e.to_string()))?;
                self.set_client(Some(client.clone()));
                client
            }
        };
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(ttl);
        let reply = tokio::time::timeout(ttl, async {
            match rpc {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        })
        .await;
        match reply {
            Ok(Ok(reply)) => Ok(reply.into_inner().data),
            // Only this stream is cancelled; the connection stays for the next RPC.
            Err(_) => Err(Failure::Timeout),
            // The peer gave up at the request's deadline (tonic answers `Cancelled`, "Timeout
            // expired"): a slow peer, not a broken connection.
            Ok(Err(status))
                if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) =>
            {
                Err(Failure::Timeout)
            }
            Ok(Err(status)) => {
                self.set_client(None);
                Err(match status.code() {
                    Code::Unavailable => Failure::Unreachable(status.to_string()),
                    _ => Failure::Network(status.to_string()),
                })
            }
        }
    }

    async fn connect(&self) -> Result<RaftServiceClient<AuthChannel>, tonic::transport::Error> {
        let channel = self
            .credentials
            .endpoint(&self.node.addr)?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect()
            .await?;
        Ok(RaftServiceClient::new(self.credentials.authorize(channel))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// The send under way for these entries, or its outcome if it finished unanswered (the caller
    /// gave up first) and succeeded; `None` when there is none, or it failed: a new send is needed.
    fn join(&self, key: &AppendKey) -> Option<watch::Receiver<Option<Outcome>>> {
        let slot = self
            .replication
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let in_flight = slot.as_ref().filter(|f| f.key == *key)?;
        let finished = in_flight.outcome.borrow().clone();
        match finished {
            Some(Err(_)) => None,
            None | Some(Ok(_)) => Some(in_flight.outcome.clone()),
        }
    }

    /// Forgets the send whose outcome a caller has just received.
    fn answered(&self, outcome: &watch::Receiver<Option<Outcome>>) {
        let mut slot = self
            .replication
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot
            .as_ref()
            .is_some_and(|f| f.outcome.same_channel(outcome))
        {
            *slot = None;
        }
    }

    /// Sends an AppendEntries on a task of its own, which outlives the caller's wait; one carrying
    /// entries (`key`) is registered for retries of the same entries to join.
    fn replicate(
        self: &Arc<Self>,
        key: Option<AppendKey>,
        data: Vec<u8>,
    ) -> watch::Receiver<Option<Outcome>> {
        let (tx, outcome) = watch::channel(None);
        let peer = self.clone();
        tokio::spawn(async move {
            let result = peer
                .call(RPCTypes::AppendEntries, data, DETACHED_RPC_TIMEOUT)
                .await;
            tx.send_replace(Some(result));
        });
        if let Some(key) = key {
            *self
                .replication
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(InFlight {
                key,
                outcome: outcome.clone(),
            });
        }
        outcome
    }
}

/// How an RPC is sent.
enum Delivery {
    /// Within openraft's time-to-live, and cancelled after it.
    Bounded,
    /// An AppendEntries, on a task of its own that goes on past the time-to-live; `Some` key for one
    /// carrying entries, which openraft's retry of the same entries joins.
    Detached(Option<AppendKey>),
}

impl NetworkConnection {
    /// Sends one RPC and decodes its `Result<Resp, RaftError<E>>` reply, within `option.hard_ttl()`.
    /// A `Detached` send goes on past that (see the module doc).
    async fn send<Req, Resp, E>(
        &mut self,
        rpc: RPCTypes,
        request: &Req,
        option: &RPCOption,
        delivery: Delivery,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        let encode =
            || serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)));
        let outcome = match delivery {
            Delivery::Bounded => self.peer.call(rpc, encode()?, ttl).await,
            Delivery::Detached(key) => {
                // Encoded only for a new send: a retry of entries already on their way joins them.
                let joined = key.as_ref().and_then(|key| self.peer.join(key));
                let mut outcome = match joined {
                    Some(outcome) => outcome,
                    None => self.peer.replicate(key, encode()?),
                };
                let finished =
                    match tokio::time::timeout(ttl, outcome.wait_for(Option::is_some)).await {
                        Ok(Ok(finished)) => finished.clone(),
                        Ok(Err(_)) | Err(_) => None,
                    };
                let Some(finished) = finished else {
                    return Err(self.timeout(rpc, ttl));
                };
                // Answered: this reply must not be handed to a later request for the same entries,
                // which openraft sends only after acting on this one (a stale Conflict would look
                // like a follower whose log went backwards).
                self.peer.answered(&outcome);
                finished
            }
        };
        let reply = outcome.map_err(|failure| match failure {
            Failure::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&PeerError(e))),
            Failure::Network(e) => RPCError::Network(NetworkError::new(&PeerError(e))),
            Failure::Timeout => self.timeout(rpc, ttl),
        })?;
        if rpc == RPCTypes::AppendEntries {
            self.progress.answered(self.target);
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.peer.node.clone(),
                e,
            ))
        })
    }
}

impl NetworkConnection {
    fn timeout<E: Error>(&self, rpc: RPCTypes, ttl: Duration) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Timeout(Timeout {
            action: rpc,
            id: self.id,
            target: self.target,
            timeout: ttl,
        })
    }
}

impl RaftNetwork<TypeConfig> for NetworkConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        let key = rpc.entries.last().map(|last| AppendKey {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            last_log_id: Some(last.log_id),
        });
        self.send(
            RPCTypes::AppendEntries,
            &rpc,
            &option,
            Delivery::Detached(key),
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(RPCTypes::InstallSnapshot, &rpc, &option, Delivery::Bounded)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        if let Some(refusal) = self.hold.own_candidacy(&rpc) {
            return Ok(refusal);
        }
        let answer: VoteResponse<NodeId> = self
            .send(RPCTypes::Vote, &rpc, &option, Delivery::Bounded)
            .await?;
        // The floor may have risen while the request was out (the hold ended): a grant in a term
        // now at or below it is not counted.
        if answer.vote_granted {
            if let Some(refusal) = self.hold.own_candidacy(&rpc) {
                return Ok(refusal);
            }
        }
        Ok(answer)
    }
}
