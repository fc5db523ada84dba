//! `ControllerClient`: the broker's one connection to the controller quorum. It owns the configured
//! controller addresses, one lazily connected tonic channel per address, and the address last known to
//! be the active controller.
//!
//! What must stay true:
//! - Every attempt is bounded by the request timeout and every call by its retry budget, so a paused or
//!   partitioned controller delays the broker but never hangs it.
//! - `NOT_CONTROLLER` is followed to the `chronik-leader` hint, or, without one (an election is under
//!   way), to the next address after a short backoff. An unreachable controller moves the call on to the
//!   next address, round robin.
//! - A non-idempotent call (AlterPartition, AllocateProducerIds, and the forwarded admin calls) whose
//!   request timed out or lost its connection mid-flight is not repeated: it may have been applied.
//!   The caller decides.
//! - Channels use HTTP/2 keep-alive, so a `WatchMetadata` stream to a controller that stopped answering
//!   breaks within seconds instead of stalling forever.
//! - Every channel carries the broker's control-plane credentials (`--controller-tls-*`,
//!   `--controller-token-file`): TLS verified against the CA, and the cluster token on every request,
//!   streams included. A controller that refuses them (UNAUTHENTICATED) is a refusal, not retried
//!   elsewhere; the registration loop logs why and keeps trying.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chronik_control_auth::{AuthChannel, ClientCredentials};
use chronik_metadata::{error, leader_hint, ResponseError};
use chronik_proto::v1::admin_service_client::AdminServiceClient;
use chronik_proto::v1::broker_service_client::BrokerServiceClient;
use chronik_proto::v1::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, AlterClientQuotasRequest,
    AlterClientQuotasResponse, AlterConfigsRequest, AlterConfigsResponse,
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, AlterPartitionRequest,
    AlterPartitionResponse, AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerSessionEvent, BrokerSessionRequest,
    CreateAclsRequest, CreateAclsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, MetadataUpdate, RegisterBrokerRequest,
    RegisterBrokerResponse, ReportUnreachableBrokerRequest, ReportUnreachableBrokerResponse,
    UnregisterBrokerRequest, UnregisterBrokerResponse, UpdateFeaturesRequest,
    UpdateFeaturesResponse, WatchMetadataRequest,
};
use chronik_proto::{ERROR_METADATA_KEY, LEADER_METADATA_KEY};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Code, Request, Status, Streaming};
use tracing::{debug, info};

use crate::config::HostPort;
use crate::error::ControllerCallError;

/// The Kafka error name of an answer from a controller that is not the active one.
const INITIAL_BACKOFF: Duration = Duration::from_millis(25);
/// Longest pause between two attempts of one call. A new active controller is elected within about
/// 0.5–0.7 s of the old one's death with short Raft timings; a broker that had backed off to 400 ms
/// found it up to 400 ms late (every broker heartbeating it 1.8 s after the kill, against 0.7 s for
/// the first write, `chronikctl bench metadata` at 10,000 partitions). Calls that find no active
/// controller cost the controllers one cheap refusal each.
const MAX_BACKOFF: Duration = Duration::from_millis(100);
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(4);

/// A client of the controller quorum's `BrokerService` (and of the `AdminService` calls the Kafka layer
/// forwards) that finds the active controller by itself. Methods take `&self`; share it in an `Arc`.
#[derive(Debug)]
pub struct ControllerClient {
    addresses: Vec<String>,
    request_timeout: Duration,
    retry_budget: Duration,
    credentials: ClientCredentials,
    state: Mutex<ClientState>,
    /// The active controller as `state.active` has it, for those who follow its changes.
    active_tx: watch::Sender<Option<String>>,
}

#[derive(Debug, Default)]
struct ClientState {
    channels: HashMap<String, AuthChannel>,
    /// The controller that last answered a call as the active controller.
    active: Option<String>,
    /// Round-robin position in `addresses` for when no active controller is known.
    cursor: usize,
}

/// An open `WatchMetadata` stream and the controller serving it.
#[derive(Debug)]
pub struct MetadataWatch {
    pub address: String,
    pub updates: Streaming<MetadataUpdate>,
}

/// How a call may be retried.
#[derive(Clone, Copy, Debug)]
struct CallKind {
    name: &'static str,
    /// Safe to send again after a timeout.
    idempotent: bool,
    /// Only the active controller serves it, so an answer proves which one is active.
    needs_leader: bool,
}

/// What a failed attempt tells the retry loop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The answering node is not the active controller; `leader` is the hinted `host:port`.
    NotController { leader: Option<String> },
    /// The node could not be reached, or the quorum could not serve the call right now.
    Unreachable(String),
    /// The request was sent but no answer came in time.
    TimedOut,
    /// The connection broke while the request was in flight.
    Interrupted(String),
    /// The controller refused the call; retrying would not help.
    Refused {
        kafka_error: Option<ResponseError>,
        code: Code,
        message: String,
    },
}

/// Sorts a gRPC status from a controller into what the retry loop does next.
pub(crate) fn classify(status: &Status) -> Failure {
    let kafka_error = status
        .metadata()
        .get(ERROR_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(error::from_name);
    match kafka_error {
        Some(ResponseError::NotController) => {
            let leader = status
                .metadata()
                .get(LEADER_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
                .and_then(leader_hint::parse);
            Failure::NotController { leader }
        }
        // What a controller answers when the quorum itself has no leader or cannot commit.
        Some(ResponseError::CoordinatorNotAvailable) => {
            Failure::Unreachable(status.message().to_owned())
        }
        Some(_) => Failure::Refused {
            kafka_error,
            code: status.code(),
            message: status.message().to_owned(),
        },
        None => match status.code() {
            Code::Unavailable | Code::ResourceExhausted => {
                Failure::Unreachable(status.message().to_owned())
            }
            Code::Cancelled | Code::Unknown => Failure::Interrupted(status.message().to_owned()),
            Code::DeadlineExceeded => Failure::TimedOut,
            code => Failure::Refused {
                kafka_error: None,
                code,
                message: status.message().to_owned(),
            },
        },
    }
}

impl ControllerClient {
    /// A client for the given `host:port` controller addresses (at least one). `request_timeout` bounds
    /// every attempt and every connection; a call keeps trying other controllers for at most twice that.
    pub fn new(
        addresses: Vec<String>,
        request_timeout: Duration,
    ) -> Result<Self, ControllerCallError> {
        let mut unique: Vec<String> = Vec::with_capacity(addresses.len());
        for address in addresses {
            if address.parse::<HostPort>().is_err() {
                return Err(ControllerCallError::InvalidAddress {
                    address,
                    reason: "expected HOST:PORT".into(),
                });
            }
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        if unique.is_empty() {
            return Err(ControllerCallError::InvalidAddress {
                address: String::new(),
                reason: "no controller address given".into(),
            });
        }
        Ok(ControllerClient {
            addresses: unique,
            request_timeout,
            retry_budget: request_timeout * 2,
            credentials: ClientCredentials::none(),
            state: Mutex::new(ClientState::default()),
            active_tx: watch::Sender::new(None),
        })
    }

    /// Replaces the credentials every channel carries (plaintext and no token by default).
    pub fn with_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Replaces how long one call keeps looking for the active controller.
    pub fn with_retry_budget(mut self, retry_budget: Duration) -> Self {
        self.retry_budget = retry_budget;
        self
    }

    /// The configured controller addresses.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The controller last seen acting as the active one.
    pub fn active_controller(&self) -> Option<String> {
        self.lock().active.clone()
    }

    /// Follows [`Self::active_controller`]: changed whenever a call finds another active
    /// controller or loses the one it had.
    pub fn subscribe_active(&self) -> watch::Receiver<Option<String>> {
        self.active_tx.subscribe()
    }

    pub async fn register_broker(
        &self,
        request: RegisterBrokerRequest,
    ) -> Result<RegisterBrokerResponse, ControllerCallError> {
        // Idempotent: the same incarnation registering again keeps its epoch.
        let kind = CallKind {
            name: "RegisterBroker",
            idempotent: true,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| {
            let request = with_timeout(request.clone(), timeout);
            async move {
                BrokerServiceClient::new(channel)
                    .register_broker(request)
                    .await
            }
        })
        .await
    }

    pub async fn broker_heartbeat(
        &self,
        request: BrokerHeartbeatRequest,
    ) -> Result<BrokerHeartbeatResponse, ControllerCallError> {
        let kind = CallKind {
            name: "BrokerHeartbeat",
            idempotent: true,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| {
            let request = with_timeout(request.clone(), timeout);
            async move {
                BrokerServiceClient::new(channel)
                    .broker_heartbeat(request)
                    .await
            }
        })
        .await
    }

    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<AlterPartitionResponse, ControllerCallError> {
        let kind = CallKind {
            name: "AlterPartition",
            idempotent: false,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| {
            let request = with_timeout(request.clone(), timeout);
            async move {
                BrokerServiceClient::new(channel)
                    .alter_partition(request)
                    .await
            }
        })
        .await
    }

    pub async fn allocate_producer_ids(
        &self,
        request: AllocateProducerIdsRequest,
    ) -> Result<AllocateProducerIdsResponse, ControllerCallError> {
        let kind = CallKind {
            name: "AllocateProducerIds",
            idempotent: false,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| {
            let request = with_timeout(request, timeout);
            async move {
                BrokerServiceClient::new(channel)
                    .allocate_producer_ids(request)
                    .await
            }
        })
        .await
    }

    pub async fn create_topics(
        &self,
        request: CreateTopicsRequest,
    ) -> Result<CreateTopicsResponse, ControllerCallError> {
        self.admin_write("CreateTopics", request, |mut client, request| async move {
            client.create_topics(request).await
        })
        .await
    }

    pub async fn delete_topics(
        &self,
        request: DeleteTopicsRequest,
    ) -> Result<DeleteTopicsResponse, ControllerCallError> {
        self.admin_write("DeleteTopics", request, |mut client, request| async move {
            client.delete_topics(request).await
        })
        .await
    }

    pub async fn create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> Result<CreatePartitionsResponse, ControllerCallError> {
        self.admin_write(
            "CreatePartitions",
            request,
            |mut client, request| async move { client.create_partitions(request).await },
        )
        .await
    }

    pub async fn alter_user_scram_credentials(
        &self,
        request: AlterUserScramCredentialsRequest,
    ) -> Result<AlterUserScramCredentialsResponse, ControllerCallError> {
        self.admin_write(
            "AlterUserScramCredentials",
            request,
            |mut client, request| async move { client.alter_user_scram_credentials(request).await },
        )
        .await
    }

    pub async fn alter_client_quotas(
        &self,
        request: AlterClientQuotasRequest,
    ) -> Result<AlterClientQuotasResponse, ControllerCallError> {
        self.admin_write(
            "AlterClientQuotas",
            request,
            |mut client, request| async move { client.alter_client_quotas(request).await },
        )
        .await
    }

    pub async fn alter_configs(
        &self,
        request: AlterConfigsRequest,
    ) -> Result<AlterConfigsResponse, ControllerCallError> {
        self.admin_write("AlterConfigs", request, |mut client, request| async move {
            client.alter_configs(request).await
        })
        .await
    }

    pub async fn elect_leaders(
        &self,
        request: ElectLeadersRequest,
    ) -> Result<ElectLeadersResponse, ControllerCallError> {
        self.admin_write("ElectLeaders", request, |mut client, request| async move {
            client.elect_leaders(request).await
        })
        .await
    }

    pub async fn update_features(
        &self,
        request: UpdateFeaturesRequest,
    ) -> Result<UpdateFeaturesResponse, ControllerCallError> {
        self.admin_write(
            "UpdateFeatures",
            request,
            |mut client, request| async move { client.update_features(request).await },
        )
        .await
    }

    /// DescribeQuorum: only the active controller knows the followers' progress, and asking again
    /// changes nothing.
    pub async fn describe_quorum(&self) -> Result<DescribeQuorumResponse, ControllerCallError> {
        let kind = CallKind {
            name: "DescribeQuorum",
            idempotent: true,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| async move {
            AdminServiceClient::new(channel)
                .describe_quorum(with_timeout(DescribeQuorumRequest {}, timeout))
                .await
        })
        .await
    }

    pub async fn unregister_broker(
        &self,
        request: UnregisterBrokerRequest,
    ) -> Result<UnregisterBrokerResponse, ControllerCallError> {
        self.admin_write(
            "UnregisterBroker",
            request,
            |mut client, request| async move { client.unregister_broker(request).await },
        )
        .await
    }

    pub async fn alter_partition_reassignments(
        &self,
        request: AlterPartitionReassignmentsRequest,
    ) -> Result<AlterPartitionReassignmentsResponse, ControllerCallError> {
        self.admin_write(
            "AlterPartitionReassignments",
            request,
            |mut client, request| async move { client.alter_partition_reassignments(request).await },
        )
        .await
    }

    /// Read from the active controller, which has every committed reassignment.
    pub async fn list_partition_reassignments(
        &self,
        request: ListPartitionReassignmentsRequest,
    ) -> Result<ListPartitionReassignmentsResponse, ControllerCallError> {
        self.admin_write(
            "ListPartitionReassignments",
            request,
            |mut client, request| async move { client.list_partition_reassignments(request).await },
        )
        .await
    }

    pub async fn create_acls(
        &self,
        request: CreateAclsRequest,
    ) -> Result<CreateAclsResponse, ControllerCallError> {
        self.admin_write("CreateAcls", request, |mut client, request| async move {
            client.create_acls(request).await
        })
        .await
    }

    pub async fn delete_acls(
        &self,
        request: DeleteAclsRequest,
    ) -> Result<DeleteAclsResponse, ControllerCallError> {
        self.admin_write("DeleteAcls", request, |mut client, request| async move {
            client.delete_acls(request).await
        })
        .await
    }

    /// An admin call the broker forwards (KIP-590): it must reach the active controller and is not
    /// repeated once it may have been applied.
    async fn admin_write<Req, Resp, F, Fut>(
        &self,
        name: &'static str,
        request: Req,
        rpc: F,
    ) -> Result<Resp, ControllerCallError>
    where
        Req: Clone,
        F: Fn(AdminServiceClient<AuthChannel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let kind = CallKind {
            name,
            idempotent: false,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| {
            rpc(
                AdminServiceClient::new(channel),
                with_timeout(request.clone(), timeout),
            )
        })
        .await
    }

    /// Opens `WatchMetadata{from_offset}` on the active controller when known, otherwise on the next
    /// address. Any controller may serve it. The request timeout bounds only the opening, not the stream.
    pub async fn watch_metadata(
        &self,
        from_offset: u64,
    ) -> Result<MetadataWatch, ControllerCallError> {
        let kind = CallKind {
            name: "WatchMetadata",
            idempotent: true,
            needs_leader: false,
        };
        let (address, updates) = self
            .call_at(kind, |channel, _timeout| async move {
                BrokerServiceClient::new(channel)
                    .watch_metadata(WatchMetadataRequest {
                        from_offset,
                        accepts_chunks: true,
                    })
                    .await
            })
            .await?;
        Ok(MetadataWatch { address, updates })
    }

    /// Opens `BrokerSession` on the active controller (following NOT_CONTROLLER like any call) and
    /// returns the controller's first event with the stream, which stays open while the controller
    /// leads. The request timeout bounds the opening and the first event, not the stream.
    pub async fn open_broker_session(
        &self,
        request: BrokerSessionRequest,
    ) -> Result<(String, BrokerSessionEvent, Streaming<BrokerSessionEvent>), ControllerCallError>
    {
        let kind = CallKind {
            name: "BrokerSession",
            idempotent: true,
            needs_leader: true,
        };
        let (address, (opened, events)) = self
            .call_at(kind, |channel, _timeout| async move {
                let mut events = BrokerServiceClient::new(channel)
                    .broker_session(request)
                    .await?
                    .into_inner();
                match events.message().await? {
                    Some(opened) => Ok(tonic::Response::new((opened, events))),
                    None => Err(Status::unavailable(
                        "the controller closed the session stream at once",
                    )),
                }
            })
            .await?;
        Ok((address, opened, events))
    }

    /// Tells the active controller that `request.unreachable_broker_id`'s listener refused this
    /// broker's connection (evidence for fencing a dead process; see `ReportUnreachableBroker`).
    pub async fn report_unreachable_broker(
        &self,
        request: ReportUnreachableBrokerRequest,
    ) -> Result<ReportUnreachableBrokerResponse, ControllerCallError> {
        let kind = CallKind {
            name: "ReportUnreachableBroker",
            idempotent: true,
            needs_leader: true,
        };
        self.call(kind, |channel, timeout| {
            let request = with_timeout(request, timeout);
            async move {
                BrokerServiceClient::new(channel)
                    .report_unreachable_broker(request)
                    .await
            }
        })
        .await
    }

    /// Tells the client that `address` failed outside a call (e.g. its watch stream broke), so the next
    /// call starts elsewhere.
    pub fn report_failure(&self, address: &str) {
        let mut state = self.lock();
        if state.active.as_deref() == Some(address) {
            info!(controller = %address, "lost the active controller");
            state.active = None;
            self.active_tx.send_replace(None);
        }
        if let Some(index) = self.addresses.iter().position(|a| a == address) {
            state.cursor = (index + 1) % self.addresses.len();
        }
    }

    async fn call<T, F, Fut>(&self, kind: CallKind, attempt: F) -> Result<T, ControllerCallError>
    where
        F: FnMut(AuthChannel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_at(kind, attempt).await.map(|(_, reply)| reply)
    }

    /// The retry loop shared by every call; returns the reply and the controller that gave it.
    async fn call_at<T, F, Fut>(
        &self,
        kind: CallKind,
        mut attempt: F,
    ) -> Result<(String, T), ControllerCallError>
    where
        F: FnMut(AuthChannel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.retry_budget;
        let mut backoff = INITIAL_BACKOFF;
        let mut target = self.next_target();
        loop {
            let channel = self.channel(&target)?;
            let timeout = self.request_timeout;
            let outcome = tokio::time::timeout(timeout, attempt(channel, timeout)).await;
            let failure = match outcome {
                Ok(Ok(reply)) => {
                    if kind.needs_leader {
                        self.set_active(&target);
                    }
                    return Ok((target, reply.into_inner()));
                }
                Ok(Err(status)) => classify(&status),
                Err(_elapsed) => Failure::TimedOut,
            };
            let (last_error, hinted) = match failure {
                Failure::Refused {
                    kafka_error,
                    code,
                    message,
                } => {
                    // A refusal is an answer from a working controller: keep talking to it.
                    return Err(ControllerCallError::Refused {
                        address: target,
                        kafka_error,
                        code,
                        message,
                    });
                }
                Failure::TimedOut if !kind.idempotent => {
                    self.report_failure(&target);
                    return Err(ControllerCallError::Timeout {
                        address: target,
                        timeout_ms: timeout.as_millis(),
                    });
                }
                Failure::Interrupted(reason) if !kind.idempotent => {
                    self.report_failure(&target);
                    return Err(ControllerCallError::Interrupted {
                        address: target,
                        reason,
                    });
                }
                Failure::TimedOut => {
                    debug!(call = kind.name, controller = %target, "controller did not answer in time");
                    self.report_failure(&target);
                    let error =
                        format!("{target} did not answer within {} ms", timeout.as_millis());
                    (error, None)
                }
                Failure::Unreachable(reason) | Failure::Interrupted(reason) => {
                    debug!(call = kind.name, controller = %target, %reason, "controller unreachable");
                    self.report_failure(&target);
                    (format!("{target}: {reason}"), None)
                }
                Failure::NotController { leader } => {
                    let error = format!("{target} is not the active controller");
                    match leader {
                        Some(leader) if leader != target => (error, Some(leader)),
                        _ => {
                            self.report_failure(&target);
                            (error, None)
                        }
                    }
                }
            };
            if Instant::now() >= deadline {
                return Err(ControllerCallError::Unavailable {
                    addresses: self.addresses.join(","),
                    waited_ms: started.elapsed().as_millis(),
                    last_error,
                });
            }
            match hinted {
                Some(leader) => {
                    // Follow a hint at once, but only the first time in a row: two controllers that
                    // point at each other must not spin. It becomes the active one once it answers.
                    target = leader;
                    if backoff > INITIAL_BACKOFF {
                        tokio::time::sleep(backoff.min(deadline - Instant::now())).await;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                None => {
                    tokio::time::sleep(backoff.min(deadline - Instant::now())).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    target = self.next_target();
                }
            }
        }
    }

    /// The active controller if known, otherwise the address at the round-robin cursor.
    fn next_target(&self) -> String {
        let state = self.lock();
        state
            .active
            .clone()
            .unwrap_or_else(|| self.addresses[state.cursor % self.addresses.len()].clone())
    }

    fn set_active(&self, address: &str) {
        let mut state = self.lock();
        if state.active.as_deref() != Some(address) {
            info!(controller = %address, "active controller switched");
            state.active = Some(address.to_owned());
            self.active_tx.send_replace(state.active.clone());
        }
    }

    fn channel(&self, address: &str) -> Result<AuthChannel, ControllerCallError> {
        let mut state = self.lock();
        if let Some(channel) = state.channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = self
            .credentials
            .endpoint(address)
            .map_err(|e| ControllerCallError::InvalidAddress {
                address: address.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.request_timeout)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = self.credentials.authorize(endpoint.connect_lazy());
        state.channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    fn lock(&self) -> MutexGuard<'_, ClientState> {
        // The state is a cache: a panic while holding the lock leaves nothing half-updated that matters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request carrying the `grpc-timeout` header, so the controller drops work nobody waits for.
fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn status_with(
        code: Code,
        error: Option<&'static str>,
        leader: Option<&'static str>,
    ) -> Status {
        let mut status = Status::new(code, "msg");
        if let Some(error) = error {
            status
                .metadata_mut()
                .insert(ERROR_METADATA_KEY, MetadataValue::from_static(error));
        }
        if let Some(leader) = leader {
            status
                .metadata_mut()
                .insert(LEADER_METADATA_KEY, MetadataValue::from_static(leader));
        }
        status
    }

    #[test]
    fn not_controller_with_a_leader_hint_names_the_leader() {
        let status = status_with(
            Code::Unavailable,
            Some("NOT_CONTROLLER"),
            Some("2@10.0.0.2:9093"),
        );
        assert_eq!(
            classify(&status),
            Failure::NotController {
                leader: Some("10.0.0.2:9093".into())
            }
        );
    }

    #[test]
    fn not_controller_without_a_hint_or_with_a_bad_one_has_no_leader() {
        for leader in [None, Some("garbage"), Some("3@")] {
            let status = status_with(Code::Unavailable, Some("NOT_CONTROLLER"), leader);
            assert_eq!(
                classify(&status),
                Failure::NotController { leader: None },
                "{leader:?}"
            );
        }
    }

    #[test]
    fn transport_failures_are_unreachable_and_kafka_errors_are_refusals() {
        assert!(matches!(
            classify(&status_with(Code::Unavailable, None, None)),
            Failure::Unreachable(_)
        ));
        assert!(matches!(
            classify(&status_with(
                Code::Unavailable,
                Some("COORDINATOR_NOT_AVAILABLE"),
                None
            )),
            Failure::Unreachable(_)
        ));
        assert_eq!(
            classify(&status_with(Code::DeadlineExceeded, None, None)),
            Failure::TimedOut
        );
        assert!(matches!(
            classify(&status_with(Code::Cancelled, None, None)),
            Failure::Interrupted(_)
        ));
        assert_eq!(
            classify(&status_with(
                Code::FailedPrecondition,
                Some("STALE_BROKER_EPOCH"),
                None
            )),
            Failure::Refused {
                kafka_error: Some(ResponseError::StaleBrokerEpoch),
                code: Code::FailedPrecondition,
                message: "msg".into()
            }
        );
        assert!(matches!(
            classify(&status_with(Code::InvalidArgument, None, None)),
            Failure::Refused {
                kafka_error: None,
                ..
            }
        ));
    }

    /// Controllers that refuse connections: every address is tried, the call ends within its budget, and
    /// the error names the addresses.
    #[tokio::test]
    async fn unreachable_controllers_fail_within_the_budget() {
        let free = free_addresses(2);
        let client = ControllerClient::new(free.clone(), Duration::from_millis(200))
            .expect("client")
            .with_retry_budget(Duration::from_millis(600));
        let started = std::time::Instant::now();
        let error = client
            .broker_heartbeat(BrokerHeartbeatRequest::default())
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(error.is_unavailable(), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&free[0]) && message.contains(&free[1]),
            "{message}"
        );
        assert_eq!(client.active_controller(), None);
    }

    #[test]
    fn report_failure_moves_the_cursor_past_the_failed_address() {
        let client = ControllerClient::new(
            vec!["a:1".into(), "b:2".into(), "c:3".into()],
            Duration::from_secs(1),
        )
        .expect("client");
        assert_eq!(client.next_target(), "a:1");
        client.report_failure("a:1");
        assert_eq!(client.next_target(), "b:2");
        client.set_active("c:3");
        assert_eq!(client.next_target(), "c:3");
        client.report_failure("c:3");
        assert_eq!(client.active_controller(), None);
        assert_eq!(client.next_target(), "a:1");
    }

    #[test]
    fn invalid_addresses_are_rejected() {
        assert!(ControllerClient::new(vec![], Duration::from_secs(1)).is_err());
        assert!(ControllerClient::new(vec!["nope".into()], Duration::from_secs(1)).is_err());
    }

    /// Addresses nobody listens on: bind port 0, note the port, close the socket.
    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").to_string())
            .collect()
    }
}
