//! Kafka API handlers, one API per file. A handler takes the shared `BrokerContext` and one decoded
//! request and returns its response; it never touches sockets (the connection does) or files (the log
//! does). `dispatch` routes by request kind; the versions table (`protocol::versions`) has already
//! refused anything not served.

pub mod access;
pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod admin;
pub mod alter_configs;
pub mod api_versions;
pub mod brokers;
pub mod client_quotas;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leader_hints;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reassignments;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;
#[cfg(test)]
pub(crate) mod test_support;
pub mod throttle;
pub mod txn_offset_commit;
pub mod unregister_broker;
pub mod update_features;
pub mod write_txn_markers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use chronik_metadata::{BrokerId, MetadataImage, TopicId};
use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use crate::authorizer::{Authorizer, Session};
use crate::controller_client::ControllerClient;
use crate::group::GroupCoordinator;
use crate::metadata::MetadataCache;
use crate::producer_ids::ProducerIdManager;
use crate::protocol::codec::Request;
use crate::replica::ReplicaManager;
use crate::txn::TransactionCoordinator;

/// Everything handlers share.
pub struct BrokerContext {
    pub broker_id: BrokerId,
    pub metadata: Arc<MetadataCache>,
    pub replicas: Arc<ReplicaManager>,
    pub controller: Arc<ControllerClient>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TransactionCoordinator>,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Producer ids for InitProducerId.
    pub producer_ids: Arc<ProducerIdManager>,
    /// `--authorizer`: `None` checks nothing (see `access`).
    pub authorizer: Option<Authorizer>,
    /// Asks transaction coordinators before a transaction's first batch in a partition (KIP-890).
    pub txn_verifier: Arc<crate::txn_verifier::TxnVerifier>,
    /// Fetch sessions (KIP-227), `--max-incremental-fetch-session-cache-slots` of them.
    pub fetch_sessions: Arc<crate::fetch_session::FetchSessionCache>,
    /// The client connections open now.
    pub connections: Arc<crate::connection::OpenConnections>,
    /// Byte rates of clients with a quota (`crate::quota`).
    pub quotas: Arc<crate::quota::ClientQuotaManager>,
}

/// Per-request facts a handler may need.
pub struct RequestContext<'a> {
    pub header: &'a RequestHeader,
    pub version: i16,
    /// The listener the client connected on: endpoints in answers must be on the same one.
    pub listener: &'a str,
    /// The client's address (DescribeGroups shows it as the member's host).
    pub peer: Option<SocketAddr>,
    /// Who the connection acts as, for the authorizer.
    pub session: &'a Session,
}

impl RequestContext<'_> {
    pub fn client_id(&self) -> String {
        self.header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    /// The client's host as Kafka shows it: `/` and the address.
    pub fn client_host(&self) -> String {
        self.peer
            .map(|p| format!("/{}", p.ip()))
            .unwrap_or_default()
    }
}

/// The wire code of an optional error.
pub fn error_code(error: Option<kafka_protocol::error::ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// What the connection does with a handled request.
pub enum Outcome {
    Respond(Box<ResponseKind>),
    /// acks=0 produce: no response at all.
    NoResponse,
    /// Close the connection (Kafka's answer to requests it cannot frame a reply for).
    Close(String),
    /// The part of the request that must happen in order is done; the rest (waiting for durability)
    /// may overlap with the connection's next request. Responses still go out in request order.
    Completing(Pin<Box<dyn Future<Output = Outcome> + Send>>),
}

pub async fn dispatch(
    ctx: &BrokerContext,
    request: Request,
    listener: &str,
    peer: Option<SocketAddr>,
    session: &Session,
) -> Outcome {
    let rc = RequestContext {
        header: &request.header,
        version: request.version,
        listener,
        peer,
        session,
    };
    let response = match request.body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, &rc, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, &rc, r).await),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, &rc, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, &rc, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, &rc, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, &rc, r)),
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(ctx, &rc, r).await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(ctx, &rc, r))
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(ctx, &rc, r).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, &rc, r).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch::handle(ctx, &rc, r)),
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, &rc, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, &rc, r)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, &rc, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, &rc, r).await)
        }
        RequestKind::Produce(r) => return produce::handle(ctx, &rc, r).await,
        RequestKind::WriteTxnMarkers(r) => return write_txn_markers::handle(ctx, &rc, r).await,
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, &rc, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, &rc, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, &rc, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, &rc, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, &rc, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, &rc, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(ctx, &rc, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::handle_incremental(ctx, &rc, r).await,
        ),
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle_legacy(ctx, &rc, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, &rc, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(ctx, &rc, r).await)
        }
        RequestKind::UpdateFeatures(r) => {
            ResponseKind::UpdateFeatures(update_features::handle(ctx, &rc, r).await)
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(ctx, &rc, r).await)
        }
        RequestKind::UnregisterBroker(r) => {
            ResponseKind::UnregisterBroker(unregister_broker::handle(ctx, &rc, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            reassignments::handle_alter(ctx, &rc, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignments::handle_list(ctx, &rc, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, &rc, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, &rc, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, &rc, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, &rc, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, &rc, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(ctx, &rc, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(ctx, &rc, r))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions::handle(ctx, &rc, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, &rc, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, &rc, r))
        }
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(acls::handle_create(ctx, &rc, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::handle_describe(ctx, &rc, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(acls::handle_delete(ctx, &rc, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            scram_credentials::handle_describe(ctx, &rc, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            scram_credentials::handle_alter(ctx, &rc, r).await,
        ),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(client_quotas::handle_describe(ctx, &rc, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(client_quotas::handle_alter(ctx, &rc, r).await)
        }
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(sasl::handle_handshake()),
        RequestKind::SaslAuthenticate(_) => {
            ResponseKind::SaslAuthenticate(sasl::handle_authenticate())
        }
        other => return Outcome::Close(format!("no handler for {other:?}")),
    };
    Outcome::Respond(Box::new(response))
}

/// The partition this broker leads, after the checks every leader-only API makes in Kafka's order:
/// known to the metadata (UNKNOWN_TOPIC_OR_PARTITION), hosted here and led by us
/// (NOT_LEADER_OR_FOLLOWER), and the client's `CurrentLeaderEpoch` (FENCED / UNKNOWN_LEADER_EPOCH).
pub fn leader_partition(
    ctx: &BrokerContext,
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<Arc<crate::replica::Partition>, kafka_protocol::error::ResponseError> {
    leader_partition_state(ctx, image, topic_id, partition, current_leader_epoch)
        .map(|(partition, _)| partition)
}

/// [`leader_partition`] with the partition state its checks were made against.
pub fn leader_partition_state(
    ctx: &BrokerContext,
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<
    (
        Arc<crate::replica::Partition>,
        Arc<crate::replica::PartitionState>,
    ),
    kafka_protocol::error::ResponseError,
> {
    use kafka_protocol::error::ResponseError;
    if image.partition(topic_id, partition).is_none() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let hosted = ctx
        .replicas
        .partition(topic_id, partition)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    let state = hosted.state();
    if let Some(error) = check_leader_epoch(current_leader_epoch, state.leader_epoch) {
        return Err(error);
    }
    if state.leader != ctx.broker_id {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok((hosted, state))
}

/// The result of checking a client's `CurrentLeaderEpoch` against ours (KIP-320).
pub fn check_leader_epoch(
    requested: i32,
    ours: i32,
) -> Option<kafka_protocol::error::ResponseError> {
    use kafka_protocol::error::ResponseError;
    if requested == -1 || requested == ours {
        None
    } else if requested < ours {
        Some(ResponseError::FencedLeaderEpoch)
    } else {
        Some(ResponseError::UnknownLeaderEpoch)
    }
}
