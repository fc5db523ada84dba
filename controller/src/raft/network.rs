//! Outbound Raft traffic: `NetworkFactory` hands openraft one `NetworkConnection` per peer, which sends
//! AppendEntries, Vote and InstallSnapshot over `RaftService` gRPC to `http://{node.addr}`, each
//! request and reply serde-JSON in a `RaftPayload`. What must stay true: errors keep their meaning for
//! openraft — a peer that cannot be reached is `Unreachable` (openraft backs off), a reply carrying a
//! `RaftError` is a `RemoteError`, an RPC that outlives its time-to-live is a `Timeout`, anything else
//! is a `Network` error — and after any failure the cached client is dropped so the next RPC
//! reconnects.

use std::error::Error;
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
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Code;

use super::service::MAX_MESSAGE_BYTES;
use super::{NodeId, TypeConfig};

/// Longest wait for a TCP + HTTP/2 connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Creates connections from this node to its peers.
pub struct NetworkFactory {
    id: NodeId,
    credentials: ClientCredentials,
}

impl NetworkFactory {
    /// `id` is this node's id (it names the sender in timeout errors). Plaintext, without a token,
    /// until `with_credentials`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            credentials: ClientCredentials::none(),
        }
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
        NetworkConnection {
            id: self.id,
            target,
            node: node.clone(),
            credentials: self.credentials.clone(),
            client: None,
        }
    }
}

/// The connection to one peer; connects on first use and after every failure.
pub struct NetworkConnection {
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    credentials: ClientCredentials,
    client: Option<RaftServiceClient<AuthChannel>>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl NetworkConnection {
    /// Sends one RPC and decodes its `Result<Resp, RaftError<E>>` reply, within `option.hard_ttl()`.
    async fn send<Req, Resp, E>(
        &mut self,
        rpc: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let data =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
        let (id, target) = (self.id, self.target);
        let timeout = move || {
            RPCError::Timeout(Timeout {
                action: rpc,
                id,
                target,
                timeout: ttl,
            })
        };
        // Whatever fails below leaves `self.client` empty, so the next RPC reconnects.
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                // Bounded by the soft TTL so an unconnectable peer is reported as unreachable
                // (and backed off from) before openraft's own deadline turns it into a timeout.
                let connect_timeout = CONNECT_TIMEOUT.min(option.soft_ttl());
                tokio::time::timeout(connect_timeout, self.connect())
                    .await
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
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
        .await
        .map_err(|_| timeout())?;
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                return Err(match status.code() {
                    Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
                    Code::DeadlineExceeded => timeout(),
                    _ => RPCError::Network(NetworkError::new(&status)),
                })
            }
        };
        self.client = Some(client);
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    async fn connect(&self) -> Result<RaftServiceClient<AuthChannel>, tonic::transport::Error> {
        let channel = self
            .credentials
            .endpoint(&self.node.addr)?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await?;
        Ok(RaftServiceClient::new(self.credentials.authorize(channel))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

impl RaftNetwork<TypeConfig> for NetworkConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.send(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.send(RPCTypes::Vote, &rpc, &option).await
    }
}
