//! The connection to the controller quorum. `ControllerClient` owns the configured controller addresses,
//! one cached tonic channel per address and the address last known to be the active controller.
//!
//! What must stay true: writes (CreateTopics, DeleteTopics, AlterConfigs, ElectLeaders, CreatePartitions) are only
//! accepted from the active controller, so a `NOT_CONTROLLER` status is followed to the `chronik-leader`
//! hint (or, when the leader is unknown, to the next configured address) within a bounded retry budget.
//! An unreachable controller moves the call on to the next address; when none answers the error names
//! every configured address. Reads may be answered by any controller but go to the active one when it is
//! known, because liveness (broker fencing, leader counts) is tracked there. A write that times out is never
//! retried: it may have been applied.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chronik_control_auth::{AuthChannel, ClientCredentials};
use chronik_metadata::leader_hint;
use chronik_proto::v1::admin_service_client::AdminServiceClient;
use chronik_proto::v1::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, AlterConfigsRequest, AlterConfigsResponse,
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
    CreateAclsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteAclsRequest, DeleteAclsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeAclsRequest, DescribeAclsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse, DescribeTopicsRequest,
    DescribeTopicsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, ListTopicsRequest,
    ListTopicsResponse, UnregisterBrokerRequest, UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use chronik_proto::LEADER_METADATA_KEY;
use tonic::{Code, Status};
use tracing::debug;

use crate::error::{error_chain, one_line, status_error_name, CliError};

/// The controller address used when none is configured.
pub const DEFAULT_CONTROLLER_ADDRESS: &str = "127.0.0.1:9093";
/// How long a call keeps following `NOT_CONTROLLER` answers before giving up.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(5);
/// Upper bound for establishing one connection (the request timeout applies when it is shorter).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// The Kafka error name a controller that is not the active one answers with.
const NOT_CONTROLLER: &str = "NOT_CONTROLLER";

type AdminClient = AdminServiceClient<AuthChannel>;

/// A client of the controller quorum's `AdminService` that finds the active controller by itself.
///
/// Methods take `&self`: channels and the known active controller are cached behind a mutex, so one client
/// can serve concurrent calls (e.g. asking every voter at once).
#[derive(Debug)]
pub struct ControllerClient {
    addresses: Vec<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry_budget: Duration,
    credentials: ClientCredentials,
    state: Mutex<ConnectionState>,
}

#[derive(Debug, Default)]
struct ConnectionState {
    channels: HashMap<String, AuthChannel>,
    active: Option<String>,
}

/// Whether a call changes state; decides what a timeout means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// Safe to ask another controller after a timeout.
    Read,
    /// Must reach the active controller, and is not repeated after a timeout.
    Write,
}

/// What one attempt against one address led to.
enum Outcome<T> {
    Answered(T),
    Unreachable(String),
    NotController {
        leader: Option<String>,
        message: String,
    },
    Failed(CliError),
}

impl ControllerClient {
    /// A client for the given `host:port` controller addresses; `request_timeout` bounds every request and
    /// every connection attempt.
    pub fn new(addresses: Vec<String>, request_timeout: Duration) -> Result<Self, CliError> {
        let mut unique: Vec<String> = Vec::with_capacity(addresses.len());
        for address in addresses {
            let address = address.trim().to_owned();
            if !address.is_empty() && !unique.contains(&address) {
                unique.push(address);
            }
        }
        if unique.is_empty() {
            return Err(CliError::InvalidArgument(
                "no controller address given (use --controllers HOST:PORT,...)".to_owned(),
            ));
        }
        Ok(ControllerClient {
            addresses: unique,
            request_timeout,
            connect_timeout: request_timeout.min(MAX_CONNECT_TIMEOUT),
            retry_budget: DEFAULT_RETRY_BUDGET,
            credentials: ClientCredentials::none(),
            state: Mutex::new(ConnectionState::default()),
        })
    }

    /// Replaces the credentials (TLS, admin token) every channel carries; plaintext and none by
    /// default.
    pub fn with_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The credentials sent to the controllers (also used for their HTTPS endpoints).
    pub fn credentials(&self) -> &ClientCredentials {
        &self.credentials
    }

    /// Replaces how long a call keeps looking for the active controller ([`DEFAULT_RETRY_BUDGET`]).
    pub fn with_retry_budget(mut self, retry_budget: Duration) -> Self {
        self.retry_budget = retry_budget;
        self
    }

    /// The timeout of each request (the `--timeout-ms` flag); also used for requests to brokers.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The configured controller addresses, without duplicates, in the given order.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The address of the controller last seen acting as the active one, if any.
    pub fn active_controller(&self) -> Option<String> {
        self.lock().active.clone()
    }

    /// `DescribeCluster`, answered by the active controller when it can be reached, otherwise by any
    /// controller. Remembers the active controller for later calls.
    pub async fn describe_cluster(&self) -> Result<DescribeClusterResponse, CliError> {
        let (answered_by, reply) = self
            .call(
                CallKind::Read,
                DescribeClusterRequest {},
                |mut client, request| async move { client.describe_cluster(request).await },
            )
            .await?;
        if answered_by_leader(&reply) {
            self.set_active(&answered_by);
            return Ok(reply);
        }
        let Some(leader) = leader_address(&reply).filter(|leader| *leader != answered_by) else {
            return Ok(reply);
        };
        match self.describe_cluster_at(&leader).await {
            Ok(leader_reply) => {
                if answered_by_leader(&leader_reply) {
                    self.set_active(&leader);
                }
                Ok(leader_reply)
            }
            Err(error) => {
                debug!(%leader, %error, "active controller did not answer; using a follower's view");
                Ok(reply)
            }
        }
    }

    /// `DescribeCluster` on exactly one controller, without redirects or retries: that node's own view,
    /// including its `is_self` entry.
    pub async fn describe_cluster_at(
        &self,
        address: &str,
    ) -> Result<DescribeClusterResponse, CliError> {
        let outcome = self
            .attempt(
                CallKind::Read,
                address,
                DescribeClusterRequest {},
                &|mut client, request| async move { client.describe_cluster(request).await },
            )
            .await;
        match outcome {
            Outcome::Answered(reply) => Ok(reply),
            Outcome::Unreachable(reason) => Err(CliError::Unreachable {
                addresses: address.to_owned(),
                reason,
            }),
            Outcome::NotController { message, .. } => Err(CliError::Status {
                code: Code::FailedPrecondition,
                error_name: Some(NOT_CONTROLLER.to_owned()),
                message,
            }),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// `ListTopics`, preferably answered by the active controller.
    pub async fn list_topics(&self) -> Result<ListTopicsResponse, CliError> {
        self.read(ListTopicsRequest {}, |mut client, request| async move {
            client.list_topics(request).await
        })
        .await
    }

    /// `DescribeTopics` for the given names (empty: every topic), preferably answered by the active
    /// controller.
    pub async fn describe_topics(
        &self,
        names: Vec<String>,
    ) -> Result<DescribeTopicsResponse, CliError> {
        self.read(
            DescribeTopicsRequest { names },
            |mut client, request| async move { client.describe_topics(request).await },
        )
        .await
    }

    /// `CreateTopics` on the active controller. Per-topic errors are in the reply.
    pub async fn create_topics(
        &self,
        request: CreateTopicsRequest,
    ) -> Result<CreateTopicsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.create_topics(request).await
        })
        .await
    }

    /// `DeleteTopics` on the active controller. Per-topic errors are in the reply.
    pub async fn delete_topics(
        &self,
        request: DeleteTopicsRequest,
    ) -> Result<DeleteTopicsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.delete_topics(request).await
        })
        .await
    }

    /// `AlterConfigs` on the active controller. Per-resource errors are in the reply.
    pub async fn alter_configs(
        &self,
        request: AlterConfigsRequest,
    ) -> Result<AlterConfigsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.alter_configs(request).await
        })
        .await
    }

    /// `AlterPartitionReassignments` on the active controller. Per-partition errors are in the reply.
    pub async fn alter_partition_reassignments(
        &self,
        request: AlterPartitionReassignmentsRequest,
    ) -> Result<AlterPartitionReassignmentsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.alter_partition_reassignments(request).await
        })
        .await
    }

    /// `ListPartitionReassignments` on the active controller (it has every committed change).
    pub async fn list_partition_reassignments(
        &self,
        request: ListPartitionReassignmentsRequest,
    ) -> Result<ListPartitionReassignmentsResponse, CliError> {
        self.read(request, |mut client, request| async move {
            client.list_partition_reassignments(request).await
        })
        .await
    }

    /// `CreatePartitions` on the active controller. Per-topic errors are in the reply.
    pub async fn create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> Result<CreatePartitionsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.create_partitions(request).await
        })
        .await
    }

    /// `ElectLeaders` on the active controller. Per-partition errors are in the reply.
    pub async fn elect_leaders(
        &self,
        request: ElectLeadersRequest,
    ) -> Result<ElectLeadersResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.elect_leaders(request).await
        })
        .await
    }

    /// `UpdateFeatures` on the active controller: every update applies, or the call fails.
    pub async fn update_features(
        &self,
        request: UpdateFeaturesRequest,
    ) -> Result<UpdateFeaturesResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.update_features(request).await
        })
        .await
    }

    /// `DescribeQuorum` on the active controller (only it knows the followers' progress).
    pub async fn describe_quorum(&self) -> Result<DescribeQuorumResponse, CliError> {
        self.write(DescribeQuorumRequest {}, |mut client, request| async move {
            client.describe_quorum(request).await
        })
        .await
    }

    /// `UnregisterBroker` on the active controller: the broker's registration is gone, or the call
    /// fails (not registered, or still alive).
    pub async fn unregister_broker(&self, broker_id: i32) -> Result<(), CliError> {
        self.write(
            UnregisterBrokerRequest { broker_id },
            |mut client, request| async move { client.unregister_broker(request).await },
        )
        .await
        .map(|_| ())
    }

    /// `CreateAcls` on the active controller. Per-ACL errors are in the reply.
    pub async fn create_acls(
        &self,
        request: CreateAclsRequest,
    ) -> Result<CreateAclsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.create_acls(request).await
        })
        .await
    }

    /// `AlterUserScramCredentials` on the active controller. Per-user errors are in the reply.
    pub async fn alter_user_scram_credentials(
        &self,
        request: AlterUserScramCredentialsRequest,
    ) -> Result<AlterUserScramCredentialsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.alter_user_scram_credentials(request).await
        })
        .await
    }

    /// `AlterClientQuotas` on the active controller. Per-entity errors are in the reply.
    pub async fn alter_client_quotas(
        &self,
        request: AlterClientQuotasRequest,
    ) -> Result<AlterClientQuotasResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.alter_client_quotas(request).await
        })
        .await
    }

    /// `DeleteAcls` on the active controller. Per-filter errors are in the reply.
    pub async fn delete_acls(
        &self,
        request: DeleteAclsRequest,
    ) -> Result<DeleteAclsResponse, CliError> {
        self.write(request, |mut client, request| async move {
            client.delete_acls(request).await
        })
        .await
    }

    /// `DescribeAcls`, preferably answered by the active controller.
    pub async fn describe_acls(
        &self,
        request: DescribeAclsRequest,
    ) -> Result<DescribeAclsResponse, CliError> {
        self.read(request, |mut client, request| async move {
            client.describe_acls(request).await
        })
        .await
    }

    async fn read<Req, Resp, F, Fut>(&self, request: Req, rpc: F) -> Result<Resp, CliError>
    where
        Req: Clone,
        F: Fn(AdminClient, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        if self.active_controller().is_none() {
            // Finding the active controller first is one cheap call; if no controller answers it, the
            // read itself cannot succeed either.
            match self.describe_cluster().await {
                Ok(_) => {}
                Err(
                    error @ (CliError::Unreachable { .. } | CliError::NoActiveController { .. }),
                ) => return Err(error),
                Err(error) => debug!(%error, "cannot locate the active controller; asking any"),
            }
        }
        let (_, reply) = self.call(CallKind::Read, request, rpc).await?;
        Ok(reply)
    }

    async fn write<Req, Resp, F, Fut>(&self, request: Req, rpc: F) -> Result<Resp, CliError>
    where
        Req: Clone,
        F: Fn(AdminClient, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let (answered_by, reply) = self.call(CallKind::Write, request, rpc).await?;
        self.set_active(&answered_by);
        Ok(reply)
    }

    /// Runs `rpc` against the known active controller, then the configured addresses in turn, following
    /// `NOT_CONTROLLER` leader hints, until one answers or the retry budget is spent. Returns the address
    /// that answered with the reply.
    async fn call<Req, Resp, F, Fut>(
        &self,
        kind: CallKind,
        request: Req,
        rpc: F,
    ) -> Result<(String, Resp), CliError>
    where
        Req: Clone,
        F: Fn(AdminClient, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let candidates = self.candidates();
        let started = Instant::now();
        let mut next_candidate = 0;
        let mut redirect: Option<String> = None;
        // Until some controller has answered, one round of unreachable addresses ends the call at once.
        let mut any_answered = false;
        let mut unreachable_in_a_row = 0;
        let mut wait_before_next = false;
        let mut backoff = INITIAL_BACKOFF;
        let mut last_reason;
        // Why each address was unreachable, to explain hints that keep pointing at a dead leader.
        let mut unreachable: HashMap<String, String> = HashMap::new();
        loop {
            if wait_before_next {
                let remaining = self.retry_budget.saturating_sub(started.elapsed());
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            let (address, is_redirect) = match redirect.take() {
                Some(leader) => (leader, true),
                None => {
                    let address = candidates[next_candidate % candidates.len()].clone();
                    next_candidate += 1;
                    (address, false)
                }
            };
            match self.attempt(kind, &address, request.clone(), &rpc).await {
                Outcome::Answered(reply) => return Ok((address, reply)),
                Outcome::Failed(error) => return Err(error),
                Outcome::Unreachable(reason) => {
                    debug!(%address, %reason, "controller unreachable; trying the next one");
                    self.forget(&address);
                    unreachable_in_a_row += 1;
                    if !any_answered && unreachable_in_a_row >= candidates.len() {
                        return Err(CliError::Unreachable {
                            addresses: self.addresses.join(","),
                            reason,
                        });
                    }
                    last_reason = if is_redirect {
                        format!(
                            "the announced active controller {address} is unreachable: {reason}"
                        )
                    } else {
                        reason.clone()
                    };
                    unreachable.insert(address, reason);
                    // While chasing a leader another controller announced, give it time to come up or be
                    // replaced instead of spinning over refused connections.
                    wait_before_next = any_answered;
                }
                Outcome::NotController { leader, message } => {
                    any_answered = true;
                    unreachable_in_a_row = 0;
                    unreachable.remove(&address);
                    self.clear_active(&address);
                    let leader = leader.filter(|leader| *leader != address);
                    last_reason = match leader
                        .as_ref()
                        .and_then(|leader| Some((leader, unreachable.get(leader)?)))
                    {
                        Some((leader, reason)) => {
                            format!(
                                "the announced active controller {leader} is unreachable: {reason}"
                            )
                        }
                        None => message,
                    };
                    debug!(%address, ?leader, "not the active controller");
                    // The first hint is followed at once; a chain of hints or an unknown leader means an
                    // election is under way, so wait a little before asking again.
                    wait_before_next = leader.is_none() || is_redirect;
                    redirect = leader;
                }
            }
            if started.elapsed() >= self.retry_budget {
                let addresses = self.addresses.join(",");
                return Err(if any_answered {
                    CliError::NoActiveController {
                        addresses,
                        waited_ms: started.elapsed().as_millis(),
                        reason: last_reason,
                    }
                } else {
                    CliError::Unreachable {
                        addresses,
                        reason: last_reason,
                    }
                });
            }
        }
    }

    /// One request to one address.
    async fn attempt<Req, Resp, F, Fut>(
        &self,
        kind: CallKind,
        address: &str,
        request: Req,
        rpc: &F,
    ) -> Outcome<Resp>
    where
        F: Fn(AdminClient, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let channel = match self.channel(address).await {
            Ok(channel) => channel,
            Err(reason) => return Outcome::Unreachable(reason),
        };
        match rpc(AdminServiceClient::new(channel), request).await {
            Ok(reply) => Outcome::Answered(reply.into_inner()),
            Err(status) => self.classify(kind, address, &status),
        }
    }

    /// Decides what a failed request means for the retry loop.
    fn classify<T>(&self, kind: CallKind, address: &str, status: &Status) -> Outcome<T> {
        match status_error_name(status) {
            Some(NOT_CONTROLLER) => {
                return Outcome::NotController {
                    leader: leader_hint(status),
                    message: if status.message().is_empty() {
                        format!("controller {address} is not the active controller")
                    } else {
                        one_line(status.message())
                    },
                }
            }
            Some(_) => return Outcome::Failed(CliError::from_status(status)),
            None => {}
        }
        if !self.credentials.uses_tls() && status.message().contains("h2 protocol error") {
            // What a plaintext HTTP/2 client meets at a TLS port: the server drops the connection.
            return Outcome::Unreachable(format!(
                "{} (the controller may require TLS: pass --controller-tls-ca)",
                one_line(status.message())
            ));
        }
        if status.code() == Code::Unknown && status.message().contains("transport error") {
            // The connection failed under the request; with TLS 1.3 that is also where a missing
            // client certificate shows (the server's alert comes after the client's handshake).
            let chain = error_chain(status);
            let hint = self.connection_hint();
            return Outcome::Failed(CliError::Status {
                code: Code::Unknown,
                error_name: None,
                message: format!("{address}: {chain}{hint}"),
            });
        }
        match status.code() {
            // Statuses without a `chronik-error` name and these codes come from the transport, not from
            // a controller that looked at the request.
            Code::Unavailable => Outcome::Unreachable(error_chain(status)),
            // A client whose TLS settings the controller refused (plaintext at a TLS port, no or a
            // foreign client certificate) may see its stream cancelled as the server drops it.
            Code::Cancelled if kind == CallKind::Read => Outcome::Unreachable(format!(
                "{address}: {}{}",
                error_chain(status),
                self.connection_hint()
            )),
            Code::Cancelled | Code::DeadlineExceeded => match kind {
                CallKind::Read => Outcome::Unreachable(format!(
                    "no answer from {address} within {} ms",
                    self.request_timeout.as_millis()
                )),
                CallKind::Write => Outcome::Failed(CliError::Timeout {
                    address: address.to_owned(),
                    timeout_ms: self.request_timeout.as_millis(),
                }),
            },
            Code::Unauthenticated | Code::PermissionDenied => Outcome::Failed(CliError::Status {
                code: status.code(),
                error_name: None,
                message: format!(
                    "the controller {address} refused the credentials: {}; {}",
                    one_line(status.message()),
                    if self.credentials.has_token() || self.credentials.has_certificate() {
                        "check --admin-token-file (CHRONIK_ADMIN_TOKEN_FILE) or the client certificate"
                    } else {
                        "pass --admin-token-file (or set CHRONIK_ADMIN_TOKEN_FILE)"
                    }
                ),
            }),
            // Not a controller at all (e.g. a broker's Kafka port, or an HTTP server).
            Code::Unimplemented => Outcome::Failed(CliError::Status {
                code: Code::Unimplemented,
                error_name: None,
                message: format!(
                    "{address} does not serve the Chronik admin API: {}",
                    one_line(status.message())
                ),
            }),
            _ => Outcome::Failed(CliError::from_status(status)),
        }
    }

    /// The cached channel to `address`, or a new connection. The error is the reason, on one line.
    async fn channel(&self, address: &str) -> Result<AuthChannel, String> {
        if let Some(channel) = self.lock().channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = self
            .credentials
            .endpoint(address)
            .map_err(|error| {
                format!(
                    "invalid controller address '{address}': {}",
                    error_chain(&error)
                )
            })?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true);
        // The connect timeout covers TCP only; a stopped process still completes the TCP handshake, so the
        // whole connection setup is bounded as well.
        let channel = match tokio::time::timeout(self.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => self.credentials.authorize(channel),
            Ok(Err(error)) => return Err(self.explain_connect_error(&error)),
            Err(_) => {
                return Err(format!(
                    "no connection to {address} within {} ms",
                    self.connect_timeout.as_millis()
                ))
            }
        };
        self.lock()
            .channels
            .insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// What may explain a connection the controller dropped under a request: its TLS settings.
    fn connection_hint(&self) -> &'static str {
        if !self.credentials.uses_tls() {
            " (the controller may require TLS: pass --controller-tls-ca)"
        } else if !self.credentials.has_certificate() {
            " (if the controller requires client certificates: pass --controller-tls-cert and \
            --controller-tls-key)"
        } else {
            " (if the controller refused the TLS handshake: is the client certificate signed by \
            its CA?)"
        }
    }

    /// A connection failure, with a hint when TLS on one side only is the likely cause.
    fn explain_connect_error(&self, error: &tonic::transport::Error) -> String {
        let chain = error_chain(error);
        let lower = chain.to_ascii_lowercase();
        if self.credentials.uses_tls() {
            if lower.contains("certificate") || lower.contains("unknownissuer") {
                return format!(
                    "{chain} (the controller's certificate is not signed by --controller-tls-ca, or \
                    does not name the address dialled)"
                );
            }
            if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
                return format!(
                    "{chain} (the controller does not speak TLS: drop --controller-tls-ca?)"
                );
            }
        }
        chain
    }

    /// The known active controller first, then the configured addresses.
    fn candidates(&self) -> Vec<String> {
        let mut candidates = Vec::with_capacity(self.addresses.len() + 1);
        if let Some(active) = self.active_controller() {
            candidates.push(active);
        }
        for address in &self.addresses {
            if !candidates.contains(address) {
                candidates.push(address.clone());
            }
        }
        candidates
    }

    fn set_active(&self, address: &str) {
        self.lock().active = Some(address.to_owned());
    }

    fn clear_active(&self, address: &str) {
        let mut state = self.lock();
        if state.active.as_deref() == Some(address) {
            state.active = None;
        }
    }

    fn forget(&self, address: &str) {
        let mut state = self.lock();
        state.channels.remove(address);
        if state.active.as_deref() == Some(address) {
            state.active = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionState> {
        // The state is a cache; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// True when the node that produced `reply` is the leader it reports.
fn answered_by_leader(reply: &DescribeClusterResponse) -> bool {
    reply.leader_id != 0
        && reply
            .controllers
            .iter()
            .any(|controller| controller.is_self && controller.node_id == reply.leader_id)
}

/// The address of the active controller according to `reply`.
fn leader_address(reply: &DescribeClusterResponse) -> Option<String> {
    if reply.leader_id == 0 {
        return None;
    }
    reply
        .controllers
        .iter()
        .find(|controller| controller.node_id == reply.leader_id)
        .map(|controller| controller.address.trim().to_owned())
        .filter(|address| !address.is_empty())
}

/// The `host:port` of the `chronik-leader` hint (`id@host:port`) on a NOT_CONTROLLER status.
fn leader_hint(status: &Status) -> Option<String> {
    let value = status.metadata().get(LEADER_METADATA_KEY)?.to_str().ok()?;
    leader_hint::parse(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_proto::v1::ControllerInfo;

    fn controller(node_id: u64, address: &str, is_self: bool) -> ControllerInfo {
        ControllerInfo {
            node_id,
            address: address.to_owned(),
            role: "follower".to_owned(),
            term: 1,
            commit_index: -1,
            applied_index: -1,
            is_self,
        }
    }

    #[test]
    fn the_leader_address_comes_from_the_voter_list() {
        let reply = DescribeClusterResponse {
            leader_id: 2,
            controllers: vec![controller(1, "a:1", true), controller(2, "b:2", false)],
            ..Default::default()
        };
        assert_eq!(leader_address(&reply).as_deref(), Some("b:2"));
        assert!(!answered_by_leader(&reply));

        let no_leader = DescribeClusterResponse {
            leader_id: 0,
            ..reply.clone()
        };
        assert_eq!(leader_address(&no_leader), None);

        let from_leader = DescribeClusterResponse {
            controllers: vec![controller(1, "a:1", false), controller(2, "b:2", true)],
            ..reply
        };
        assert!(answered_by_leader(&from_leader));
    }

    #[test]
    fn addresses_are_deduplicated_and_required() {
        let client = ControllerClient::new(
            vec!["a:1".into(), " a:1 ".into(), "b:2".into()],
            Duration::from_secs(1),
        )
        .expect("valid addresses");
        assert_eq!(client.addresses(), ["a:1", "b:2"]);
        assert!(ControllerClient::new(vec![], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn endpoint_uris_get_a_scheme() {
        let uri = |address: &str| {
            ClientCredentials::none()
                .endpoint(address)
                .expect("valid")
                .uri()
                .to_string()
        };
        assert_eq!(uri("127.0.0.1:9093"), "http://127.0.0.1:9093/");
        assert_eq!(uri("http://h:1"), "http://h:1/");
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_with_every_address_named() {
        // Bind then drop listeners so the ports are free and refuse connections.
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let second = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addresses = vec![
            first.local_addr().expect("addr").to_string(),
            second.local_addr().expect("addr").to_string(),
        ];
        drop((first, second));
        let client =
            ControllerClient::new(addresses.clone(), Duration::from_secs(2)).expect("client");
        let error = client.list_topics().await.expect_err("nothing listens");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot reach any controller at {}: ",
                addresses.join(",")
            )),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }
}
