//! gRPC services: `BrokerService` (registration, heartbeats, ISR changes, producer ids, the metadata
//! watch) and `AdminService` (topics, cluster description, elections). Handlers decode, run a pure
//! command through the `Quorum`, and encode; `status` is the one place errors become gRPC statuses.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chronik_proto::v1 as pb;
use chronik_proto::v1::admin_service_server::AdminService;
use chronik_proto::v1::broker_service_server::BrokerService;
use chronik_proto::{ERROR_METADATA_KEY, LEADER_METADATA_KEY};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{cluster_view, ClusterView};
use crate::applied::{AppliedMetadata, Resume};
use chronik_metadata::configs::broker_name_of;
use chronik_metadata::convert::{
    acl_filter_from_proto, acl_from_proto, acl_to_proto, endpoint_from_proto, endpoint_to_proto,
    feature_ranges_from_proto, feature_ranges_to_proto, record_to_proto, topic_id_from_bytes,
    topic_id_to_bytes,
};
use chronik_metadata::topic_name::is_internal_topic;
use chronik_metadata::{error, leader_hint};

use crate::error::{ApiError, ControllerError, ResponseError};
use crate::liveness::Liveness;
use crate::quorum::Quorum;
use crate::state::acls;
use crate::state::cluster::{self, Heartbeat, RegisterBroker};
use crate::state::config_changes::{self, ConfigOp};
use crate::state::features;
use crate::state::quotas::{self, QuotaAlteration};
use crate::state::reassignment::{self, ReassignPartition};
use crate::state::records::{ConfigResource, LeaderRecoveryState};
use crate::state::scram::{self, ScramChange, Upsertion};
use crate::state::topics::{
    self, AlterPartitionItem, CreatePartitions, CreateTopic, ElectionScope, TopicRef,
};
use crate::state::MetadataImage;

/// Maps a controller error to a gRPC status carrying the Kafka error name (and the active controller on
/// NOT_CONTROLLER) in its metadata.
pub fn status(err: ControllerError) -> Status {
    let (mut status, kafka_error) = match &err {
        ControllerError::Api(e) => {
            let code = match e.code {
                ResponseError::UnknownTopicOrPartition
                | ResponseError::UnknownTopicId
                | ResponseError::BrokerIdNotRegistered => tonic::Code::NotFound,
                ResponseError::TopicAlreadyExists | ResponseError::DuplicateBrokerRegistration => {
                    tonic::Code::AlreadyExists
                }
                ResponseError::StaleBrokerEpoch
                | ResponseError::FencedLeaderEpoch
                | ResponseError::InconsistentClusterId
                | ResponseError::InvalidUpdateVersion => tonic::Code::FailedPrecondition,
                _ => tonic::Code::InvalidArgument,
            };
            (Status::new(code, e.message.clone()), e.code)
        }
        ControllerError::NotController { .. } => (
            Status::unavailable("this controller is not the active controller"),
            ResponseError::NotController,
        ),
        ControllerError::Unavailable(m) => (
            Status::unavailable(m.clone()),
            ResponseError::CoordinatorNotAvailable,
        ),
        ControllerError::ShuttingDown => (
            Status::unavailable("controller shutting down"),
            ResponseError::NotController,
        ),
    };
    if let Ok(name) = MetadataValue::try_from(error::name(kafka_error)) {
        status.metadata_mut().insert(ERROR_METADATA_KEY, name);
    }
    if let ControllerError::NotController {
        leader: Some((id, address)),
    } = &err
    {
        if let Ok(value) = MetadataValue::try_from(leader_hint::format(*id, address)) {
            status.metadata_mut().insert(LEADER_METADATA_KEY, value);
        }
    }
    status
}

fn invalid(message: impl Into<String>) -> Status {
    status(ApiError::new(ResponseError::InvalidRequest, message).into())
}

/// Refuses calls that need the cluster's bootstrap records (its id and defaults) until they are
/// applied. A follower that has not applied them yet (it applies the log after the leader, right
/// after start up to half a second later while openraft backs off from a peer that was not
/// listening yet) sends the caller to the active controller, which has: NOT_CONTROLLER with the
/// leader, as for any call it cannot serve, not an error that callers give up on.
fn require_bootstrapped(quorum: &Quorum) -> Result<(), Status> {
    if quorum.applied().with_image(|i| i.cluster_id.is_some()) {
        Ok(())
    } else if quorum.leading_term().is_none() {
        Err(status(quorum.not_controller()))
    } else {
        Err(status(ControllerError::Unavailable(
            "the cluster is still bootstrapping".into(),
        )))
    }
}

/// The state both services share.
#[derive(Clone)]
pub struct ControllerApi {
    pub quorum: Arc<Quorum>,
    pub liveness: Arc<Liveness>,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::MetadataUpdate, Status>> + Send>>;
type SessionEvents = Pin<Box<dyn Stream<Item = Result<pb::BrokerSessionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl BrokerService for ControllerApi {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let incarnation_id = Uuid::parse_str(&req.incarnation_id).map_err(|_| {
            invalid(format!(
                "incarnation id '{}' is not a UUID",
                req.incarnation_id
            ))
        })?;
        let endpoints = req
            .endpoints
            .iter()
            .map(endpoint_from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let register = RegisterBroker {
            broker_id: req.broker_id,
            incarnation_id,
            endpoints,
            rack: req.rack.filter(|r| !r.is_empty()),
            cluster_id: Some(req.cluster_id).filter(|c| !c.is_empty()),
            supported_features: feature_ranges_from_proto(&req.supported_features)
                .map_err(|e| invalid(e.to_string()))?,
            log_dir_id: match req.log_dir_id.as_str() {
                "" => None,
                id => Some(
                    Uuid::parse_str(id)
                        .map_err(|_| invalid(format!("log directory id '{id}' is not a UUID")))?,
                ),
            },
        };
        let liveness = &self.liveness;
        // The directory id of a registration replaced by one with another directory.
        let lost = std::sync::Mutex::new(None);
        let (offset, existing_epoch) = self
            .quorum
            .run(|image| {
                let registered = cluster::register_broker(
                    image,
                    &register,
                    liveness.has_live_session(register.broker_id),
                )?;
                if let Some(existing) = image.brokers.get(&register.broker_id) {
                    if cluster::lost_log_dir(existing, &register) {
                        *lost
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            existing.log_dir_id;
                    }
                }
                Ok(registered)
            })
            .await
            .map_err(status)?;
        if let Some(before) = *lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            warn!(
                broker_id = register.broker_id,
                %before,
                now = ?register.log_dir_id,
                "broker registered with another log directory: its replicas are gone, so they left \
                 every ISR, the last member's included"
            );
        }
        let broker_epoch = existing_epoch.unwrap_or(offset as i64);
        self.liveness.touch(register.broker_id, broker_epoch, 0);
        if existing_epoch.is_none() {
            info!(
                broker_id = register.broker_id,
                broker_epoch, "registered broker"
            );
        }
        let cluster_id = self
            .quorum
            .applied()
            .with_image(|i| i.cluster_id.clone().unwrap_or_default());
        Ok(Response::new(pb::RegisterBrokerResponse {
            broker_epoch,
            cluster_id,
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u32,
            session_timeout_ms: self.session_timeout.as_millis() as u32,
        }))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::BrokerHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let heartbeat = Heartbeat {
            broker_id: req.broker_id,
            broker_epoch: req.broker_epoch,
            metadata_offset: req.current_metadata_offset,
            want_fence: req.want_fence,
            want_shut_down: req.want_shut_down,
            offline_log_dirs: req.offline_log_dirs,
        };
        let liveness = &self.liveness;
        // Contact counts now, not once the quorum has written the outcome (issue #11, defect 9).
        self.quorum.applied().with_image(|image| {
            liveness.record_heartbeat(
                image,
                heartbeat.broker_id,
                heartbeat.broker_epoch,
                heartbeat.metadata_offset,
            )
        });
        let (offset, reply) = self
            .quorum
            .run(|image| {
                let others_caught_up = liveness.others_caught_up(image, heartbeat.broker_id);
                cluster::process_heartbeat(image, &heartbeat, others_caught_up)
            })
            .await
            .map_err(status)?;
        let id = heartbeat.broker_id;
        crate::metrics::metrics().heartbeat_answered(id);
        if reply.should_shut_down {
            self.liveness.remove(id);
            info!(broker_id = id, "broker completed controlled shutdown");
        } else if reply.in_controlled_shutdown {
            self.liveness.note_controlled_shutdown(id, offset);
        }
        Ok(Response::new(pb::BrokerHeartbeatResponse {
            is_caught_up: reply.is_caught_up,
            is_fenced: reply.is_fenced,
            should_shut_down: reply.should_shut_down,
            in_controlled_shutdown: reply.in_controlled_shutdown,
        }))
    }

    async fn alter_partition(
        &self,
        request: Request<pb::AlterPartitionRequest>,
    ) -> Result<Response<pb::AlterPartitionResponse>, Status> {
        let req = request.into_inner();
        let mut items = Vec::new();
        for topic in &req.topics {
            let topic_id =
                topic_id_from_bytes(&topic.topic_id).map_err(|e| invalid(e.to_string()))?;
            for p in &topic.partitions {
                let leader_recovery_state = match p.leader_recovery_state {
                    None => None,
                    Some(code) => {
                        Some(LeaderRecoveryState::from_code(code).ok_or_else(|| {
                            invalid(format!("unknown leader recovery state {code}"))
                        })?)
                    }
                };
                items.push(AlterPartitionItem {
                    topic_id,
                    partition: p.partition_index,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr: p
                        .new_isr
                        .iter()
                        .map(|m| (m.broker_id, m.broker_epoch))
                        .collect(),
                    leader_recovery_state,
                });
            }
        }
        let (_, outcomes) = self
            .quorum
            .run(|image| topics::alter_partition(image, req.broker_id, req.broker_epoch, &items))
            .await
            .map_err(status)?;
        let mut by_topic: Vec<pb::AlterPartitionTopicResult> = Vec::new();
        for (item, outcome) in items.iter().zip(outcomes) {
            let result = match outcome {
                Ok(p) => pb::AlterPartitionResult {
                    partition_index: item.partition,
                    error_code: 0,
                    leader_id: p.leader,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr,
                    partition_epoch: p.partition_epoch,
                },
                Err(code) => pb::AlterPartitionResult {
                    partition_index: item.partition,
                    error_code: i32::from(code.code()),
                    ..Default::default()
                },
            };
            let topic_id = topic_id_to_bytes(item.topic_id);
            match by_topic.iter_mut().find(|t| t.topic_id == topic_id) {
                Some(t) => t.partitions.push(result),
                None => by_topic.push(pb::AlterPartitionTopicResult {
                    topic_id,
                    partitions: vec![result],
                }),
            }
        }
        Ok(Response::new(pb::AlterPartitionResponse {
            topics: by_topic,
        }))
    }

    async fn allocate_producer_ids(
        &self,
        request: Request<pb::AllocateProducerIdsRequest>,
    ) -> Result<Response<pb::AllocateProducerIdsResponse>, Status> {
        let req = request.into_inner();
        let (_, (first, count)) = self
            .quorum
            .run(|image| cluster::allocate_producer_ids(image, req.broker_id, req.broker_epoch))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AllocateProducerIdsResponse {
            first_producer_id: first,
            count: count as i32,
        }))
    }

    type WatchMetadataStream = WatchStream;

    async fn watch_metadata(
        &self,
        request: Request<pb::WatchMetadataRequest>,
    ) -> Result<Response<Self::WatchMetadataStream>, Status> {
        let request = request.into_inner();
        let chunk_bytes = if request.accepts_chunks {
            MAX_UPDATE_CHUNK_BYTES
        } else {
            usize::MAX
        };
        let (tx, rx) = mpsc::channel(64);
        let applied = self.quorum.applied().clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(stream_metadata(
            applied,
            request.from_offset,
            chunk_bytes,
            tx,
            shutdown,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_unreachable_broker(
        &self,
        request: Request<pb::ReportUnreachableBrokerRequest>,
    ) -> Result<Response<pb::ReportUnreachableBrokerResponse>, Status> {
        let req = request.into_inner();
        if self.quorum.leading_term().is_none() {
            return Err(status(self.quorum.not_controller()));
        }
        let recorded = self.quorum.applied().with_image(|image| {
            let reporter_current = image
                .brokers
                .get(&req.broker_id)
                .is_some_and(|b| b.broker_epoch == req.broker_epoch);
            if !reporter_current {
                return Err(ApiError::new(
                    ResponseError::StaleBrokerEpoch,
                    format!(
                        "broker {} epoch {} is not a current registration",
                        req.broker_id, req.broker_epoch
                    ),
                ));
            }
            Ok(self.liveness.note_refused(
                image,
                req.broker_id,
                req.unreachable_broker_id,
                req.unreachable_broker_epoch,
            ))
        });
        if recorded.map_err(|e| status(e.into()))? {
            info!(
                reporter = req.broker_id,
                broker_id = req.unreachable_broker_id,
                broker_epoch = req.unreachable_broker_epoch,
                "a broker reports this broker's listener refusing its connection"
            );
        }
        Ok(Response::new(pb::ReportUnreachableBrokerResponse {}))
    }

    type BrokerSessionStream = SessionEvents;

    async fn broker_session(
        &self,
        request: Request<pb::BrokerSessionRequest>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        let req = request.into_inner();
        let Some(term) = self.quorum.leading_term() else {
            return Err(status(self.quorum.not_controller()));
        };
        let guard = self.quorum.applied().with_image(|image| {
            self.liveness.on_term(term, image);
            self.liveness
                .open_stream(image, term, req.broker_id, req.broker_epoch)
        });
        let grace = self.liveness.stream_grace();
        if grace.is_some() && guard.is_none() {
            return Err(status(
                ApiError::new(
                    ResponseError::StaleBrokerEpoch,
                    format!(
                        "broker {} epoch {} is not a current registration",
                        req.broker_id, req.broker_epoch
                    ),
                )
                .into(),
            ));
        }
        debug!(
            broker_id = req.broker_id,
            broker_epoch = req.broker_epoch,
            term,
            "session stream opened"
        );
        let opened = pb::BrokerSessionEvent {
            term,
            grace_ms: grace.map_or(0, |g| g.as_millis() as u32),
        };
        // The stream lives as long as the broker's connection and this node's leadership in `term`;
        // the guard inside it is dropped when either ends (hyper drops the body of a closed
        // connection), which is what starts the grace.
        let quorum = self.quorum.clone();
        let shutdown = self.shutdown.clone();
        let events = futures::stream::once(async move { Ok(opened) }).chain(
            futures::stream::once(async move {
                let _guard = guard;
                tokio::select! {
                    _ = quorum.leadership_ended(term) => {}
                    _ = shutdown.cancelled() => {}
                }
            })
            .filter_map(|()| async { None::<Result<pb::BrokerSessionEvent, Status>> }),
        );
        Ok(Response::new(Box::pin(events)))
    }
}

/// The most record bytes one `MetadataUpdate` message carries. A larger update goes out in chunks
/// (`more`), so no message nears the 4 MiB a gRPC client accepts by default, whatever the image's size.
const MAX_UPDATE_CHUNK_BYTES: usize = 1024 * 1024;

/// Feeds one watcher: a full image if it is too far behind, then every applied entry in order, each
/// in chunks of at most `chunk_bytes` of records.
async fn stream_metadata(
    applied: Arc<AppliedMetadata>,
    from_offset: u64,
    chunk_bytes: usize,
    tx: mpsc::Sender<Result<pb::MetadataUpdate, Status>>,
    shutdown: CancellationToken,
) {
    let mut offsets = applied.subscribe();
    let mut last_sent = from_offset;
    loop {
        let updates = match applied.resume(last_sent) {
            Resume::Snapshot(image) => chunked(
                image.offset,
                true,
                0,
                image.to_records().iter().map(record_to_proto).collect(),
                chunk_bytes,
            ),
            Resume::Entries(entries) => entries
                .into_iter()
                .filter(|e| e.offset > last_sent)
                .flat_map(|e| {
                    chunked(
                        e.offset,
                        false,
                        e.applied_at_us,
                        e.records.iter().map(record_to_proto).collect(),
                        chunk_bytes,
                    )
                })
                .collect(),
        };
        for update in updates {
            last_sent = update.offset;
            if tx.send(Ok(update)).await.is_err() {
                debug!("metadata watcher went away");
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            changed = offsets.changed() => if changed.is_err() { return },
        }
    }
}

/// One update as the messages that carry it: a single one when its records fit in `max_bytes`,
/// otherwise consecutive chunks of at most `max_bytes` of records each (a record larger than that
/// goes alone), every one but the last marked `more`.
fn chunked(
    offset: u64,
    is_snapshot: bool,
    commit_timestamp_us: u64,
    records: Vec<pb::MetadataRecord>,
    max_bytes: usize,
) -> Vec<pb::MetadataUpdate> {
    let message = |records: Vec<pb::MetadataRecord>| pb::MetadataUpdate {
        offset,
        is_snapshot,
        records,
        commit_timestamp_us,
        more: true,
    };
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    for record in records {
        let bytes = prost::Message::encoded_len(&record);
        if !chunk.is_empty() && chunk_bytes + bytes > max_bytes {
            messages.push(message(std::mem::take(&mut chunk)));
            chunk_bytes = 0;
        }
        chunk_bytes += bytes;
        chunk.push(record);
    }
    messages.push(message(chunk));
    if let Some(last) = messages.last_mut() {
        last.more = false;
    }
    messages
}

fn create_result(
    name: String,
    outcome: Result<topics::CreatedTopic, ApiError>,
    offset: u64,
) -> pb::CreateTopicResult {
    match outcome {
        Ok(created) => pb::CreateTopicResult {
            name,
            error_code: 0,
            error_message: String::new(),
            topic_id: if created.topic_id.is_nil() {
                Vec::new()
            } else {
                topic_id_to_bytes(created.topic_id)
            },
            num_partitions: created.num_partitions,
            replication_factor: created.replication_factor,
            configs: created.configs.into_iter().collect(),
            metadata_offset: offset,
        },
        Err(e) => pb::CreateTopicResult {
            name,
            error_code: i32::from(e.code.code()),
            error_message: e.message,
            ..Default::default()
        },
    }
}

fn describe_topic(image: &MetadataImage, name: &str) -> pb::TopicDescription {
    match image.topic_by_name(name) {
        Some(t) => pb::TopicDescription {
            name: t.name.clone(),
            topic_id: topic_id_to_bytes(t.id),
            error_code: 0,
            error_message: String::new(),
            configs: t.configs.clone().into_iter().collect(),
            partitions: t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| pb::PartitionDescription {
                    partition_index: i as i32,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    recovering: p.recovering,
                })
                .collect(),
            internal: is_internal_topic(&t.name),
        },
        None => pb::TopicDescription {
            name: name.to_string(),
            error_code: i32::from(ResponseError::UnknownTopicOrPartition.code()),
            error_message: format!("topic '{name}' does not exist"),
            ..Default::default()
        },
    }
}

pub fn cluster_view_to_proto(
    view: ClusterView,
    image: &MetadataImage,
) -> pb::DescribeClusterResponse {
    pb::DescribeClusterResponse {
        cluster_id: view.cluster_id,
        leader_id: view.leader_id.unwrap_or(0),
        controllers: view
            .controllers
            .into_iter()
            .map(|c| pb::ControllerInfo {
                node_id: c.node_id,
                address: c.address,
                role: c.role,
                term: c.term,
                commit_index: c.commit_index,
                applied_index: c.applied_index,
                is_self: c.is_self,
            })
            .collect(),
        brokers: image
            .brokers
            .values()
            .map(|b| pb::BrokerInfo {
                broker_id: b.broker_id,
                broker_epoch: b.broker_epoch,
                incarnation_id: b.incarnation_id.to_string(),
                endpoints: b.endpoints.iter().map(endpoint_to_proto).collect(),
                rack: b.rack.clone(),
                state: match super::broker_state(b) {
                    "fenced" => pb::BrokerState::Fenced,
                    "controlled_shutdown" => pb::BrokerState::ControlledShutdown,
                    _ => pb::BrokerState::Unfenced,
                } as i32,
                leader_count: image.leader_count(b.broker_id) as u32,
                offline_log_dir: b.has_offline_log_dir,
                cordoned: crate::state::configs::is_cordoned(image, b.broker_id),
                supported_features: feature_ranges_to_proto(&b.supported_features),
            })
            .collect(),
        metadata_offset: view.metadata_offset,
        topic_count: view.topic_count as u32,
        partition_count: view.partition_count as u32,
        leaderless_partitions: view.leaderless_partitions as u32,
        under_replicated_partitions: view.under_replicated_partitions as u32,
        cluster_configs: image
            .cluster_configs
            .iter()
            .map(|(key, value)| {
                let name = broker_name_of(key).unwrap_or(key);
                (name.to_string(), value.clone())
            })
            .collect(),
        finalized_features: image
            .features
            .iter()
            .map(|(name, level)| (name.clone(), i32::from(*level)))
            .collect(),
        controller_supported_features: feature_ranges_to_proto(
            &chronik_metadata::features::supported_features(),
        ),
    }
}

#[tonic::async_trait]
impl AdminService for ControllerApi {
    async fn create_topics(
        &self,
        request: Request<pb::CreateTopicsRequest>,
    ) -> Result<Response<pb::CreateTopicsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let requested: Vec<CreateTopic> = req
            .topics
            .into_iter()
            .map(|t| CreateTopic {
                name: t.name,
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                configs: t.configs.into_iter().collect::<BTreeMap<_, _>>(),
                assignments: t
                    .assignments
                    .into_iter()
                    .map(|a| (a.partition_index, a.broker_ids))
                    .collect(),
            })
            .collect();
        let (offset, reply) = self
            .quorum
            .run(|image| {
                Ok(topics::create_topics(
                    image,
                    &requested,
                    req.validate_only,
                    Uuid::new_v4,
                ))
            })
            .await
            .map_err(status)?;
        let offset = if req.validate_only { 0 } else { offset };
        let topics = reply
            .into_iter()
            .map(|(name, outcome)| {
                if let Ok(created) = &outcome {
                    if !req.validate_only {
                        info!(topic = %name, topic_id = %created.topic_id, partitions = created.num_partitions, "created topic");
                    }
                }
                create_result(name, outcome, offset)
            })
            .collect();
        Ok(Response::new(pb::CreateTopicsResponse { topics }))
    }

    async fn delete_topics(
        &self,
        request: Request<pb::DeleteTopicsRequest>,
    ) -> Result<Response<pb::DeleteTopicsResponse>, Status> {
        let req = request.into_inner();
        let mut refs: Vec<TopicRef> = req.names.into_iter().map(TopicRef::Name).collect();
        for id in &req.topic_ids {
            refs.push(TopicRef::Id(
                topic_id_from_bytes(id).map_err(|e| invalid(e.to_string()))?,
            ));
        }
        let (offset, reply) = self
            .quorum
            .run(|image| Ok(topics::delete_topics(image, &refs)))
            .await
            .map_err(status)?;
        let topics = reply
            .into_iter()
            .map(|(name, id, outcome)| {
                let (error_code, error_message) = match outcome {
                    Ok(()) => {
                        info!(topic = %name, topic_id = %id, "deleted topic");
                        (0, String::new())
                    }
                    Err(e) => (i32::from(e.code.code()), e.message),
                };
                pb::DeleteTopicResult {
                    name,
                    topic_id: if id.is_nil() {
                        Vec::new()
                    } else {
                        topic_id_to_bytes(id)
                    },
                    error_code,
                    error_message,
                }
            })
            .collect();
        Ok(Response::new(pb::DeleteTopicsResponse {
            topics,
            metadata_offset: offset,
        }))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self.quorum.applied().with_image(|image| {
            image
                .topic_ids
                .values()
                .filter_map(|id| image.topics.get(id))
                .map(|t| pb::TopicListing {
                    name: t.name.clone(),
                    topic_id: topic_id_to_bytes(t.id),
                    num_partitions: t.partitions.len() as i32,
                    replication_factor: t.replication_factor() as i32,
                    internal: is_internal_topic(&t.name),
                })
                .collect()
        });
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topics(
        &self,
        request: Request<pb::DescribeTopicsRequest>,
    ) -> Result<Response<pb::DescribeTopicsResponse>, Status> {
        let names = request.into_inner().names;
        let topics = self.quorum.applied().with_image(|image| {
            if names.is_empty() {
                image
                    .topic_ids
                    .keys()
                    .map(|n| describe_topic(image, n))
                    .collect()
            } else {
                names.iter().map(|n| describe_topic(image, n)).collect()
            }
        });
        Ok(Response::new(pb::DescribeTopicsResponse { topics }))
    }

    async fn describe_cluster(
        &self,
        _request: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        let view = cluster_view(&self.quorum);
        let image = self.quorum.applied().image();
        Ok(Response::new(cluster_view_to_proto(view, &image)))
    }

    async fn alter_configs(
        &self,
        request: Request<pb::AlterConfigsRequest>,
    ) -> Result<Response<pb::AlterConfigsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let resources = req
            .resources
            .iter()
            .map(alter_resource_from_proto)
            .collect::<Result<Vec<_>, Status>>()?;
        let (offset, outcomes) = self
            .quorum
            .run(|image| {
                let result = config_changes::alter_configs(image, &resources);
                Ok(if req.validate_only {
                    crate::state::ControllerResult::new(Vec::new(), result.reply)
                } else {
                    result
                })
            })
            .await
            .map_err(status)?;
        let results = req
            .resources
            .into_iter()
            .zip(outcomes)
            .map(|(resource, outcome)| {
                let (error_code, error_message, configs) = match outcome {
                    Ok(configs) => {
                        if !req.validate_only {
                            info!(resource = ?resource.resource(), name = %resource.name, "altered configs");
                        }
                        (0, String::new(), configs)
                    }
                    Err(e) => (i32::from(e.code.code()), e.message, BTreeMap::new()),
                };
                pb::AlterConfigsResult {
                    resource: resource.resource,
                    name: resource.name,
                    error_code,
                    error_message,
                    configs: configs.into_iter().collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::AlterConfigsResponse {
            results,
            metadata_offset: if req.validate_only { 0 } else { offset },
        }))
    }

    async fn elect_leaders(
        &self,
        request: Request<pb::ElectLeadersRequest>,
    ) -> Result<Response<pb::ElectLeadersResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let partitions: Vec<(String, Vec<i32>)> = req
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partitions))
            .collect();
        let scope = match (partitions.is_empty(), req.topics.is_empty()) {
            (false, true) => ElectionScope::Partitions(&partitions),
            (true, false) => ElectionScope::Topics(&req.topics),
            (true, true) => ElectionScope::All,
            (false, false) => return Err(invalid("name either topics or partitions, not both")),
        };
        let (offset, outcomes) = self
            .quorum
            .run(|image| topics::elect_leaders(image, scope, req.unclean))
            .await
            .map_err(status)?;
        let partitions = outcomes
            .into_iter()
            .map(|(topic, partition_index, outcome)| match outcome {
                Ok(leader) => {
                    info!(%topic, partition = partition_index, leader, unclean = req.unclean, "elected leader");
                    pb::ElectLeadersResult {
                        topic,
                        partition_index,
                        error_code: 0,
                        error_message: String::new(),
                        leader,
                    }
                }
                Err(e) => pb::ElectLeadersResult {
                    topic,
                    partition_index,
                    error_code: i32::from(e.code.code()),
                    error_message: e.message,
                    leader: -1,
                },
            })
            .collect();
        Ok(Response::new(pb::ElectLeadersResponse {
            partitions,
            metadata_offset: offset,
        }))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let requested: Vec<CreatePartitions> = req
            .topics
            .iter()
            .map(|t| CreatePartitions {
                name: t.name.clone(),
                count: t.count,
                assignments: t.assignments.iter().map(|a| a.brokers.clone()).collect(),
            })
            .collect();
        let (offset, outcomes) = self
            .quorum
            .run(|image| {
                let result = topics::create_partitions(image, &requested);
                Ok(if req.validate_only {
                    crate::state::ControllerResult::new(Vec::new(), result.reply)
                } else {
                    result
                })
            })
            .await
            .map_err(status)?;
        let results = requested
            .into_iter()
            .zip(outcomes)
            .map(|(topic, outcome)| match outcome {
                Ok(()) => {
                    if !req.validate_only {
                        info!(topic = %topic.name, partitions = topic.count, "added partitions");
                    }
                    pb::CreatePartitionsResult {
                        name: topic.name,
                        ..Default::default()
                    }
                }
                Err(e) => pb::CreatePartitionsResult {
                    name: topic.name,
                    error_code: i32::from(e.code.code()),
                    error_message: e.message,
                },
            })
            .collect();
        Ok(Response::new(pb::CreatePartitionsResponse {
            results,
            metadata_offset: if req.validate_only { 0 } else { offset },
        }))
    }

    async fn alter_user_scram_credentials(
        &self,
        request: Request<pb::AlterUserScramCredentialsRequest>,
    ) -> Result<Response<pb::AlterUserScramCredentialsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        // A code that does not fit Kafka's INT8 is no mechanism Kafka knows either.
        let mechanism = |code: i32| i8::try_from(code).unwrap_or(0);
        let changes: Vec<ScramChange> = req
            .deletions
            .into_iter()
            .map(|d| ScramChange {
                mechanism: mechanism(d.mechanism),
                user: d.name,
                upsert: None,
            })
            .chain(req.upsertions.into_iter().map(|u| ScramChange {
                mechanism: mechanism(u.mechanism),
                user: u.name,
                upsert: Some(Upsertion {
                    iterations: u.iterations,
                    salt: u.salt,
                    salted_password: u.salted_password,
                }),
            }))
            .collect();
        let (offset, outcomes) = self
            .quorum
            .run(|image| Ok(scram::alter_scram_credentials(image, &changes)))
            .await
            .map_err(status)?;
        let results = outcomes
            .into_iter()
            .map(|(user, outcome)| match outcome {
                Ok(()) => {
                    info!(user = %user, "SCRAM credentials altered");
                    pb::AlterUserScramCredentialsResult {
                        user,
                        ..Default::default()
                    }
                }
                Err(e) => pb::AlterUserScramCredentialsResult {
                    user,
                    error_code: i32::from(e.code.code()),
                    error_message: e.message,
                },
            })
            .collect();
        Ok(Response::new(pb::AlterUserScramCredentialsResponse {
            results,
            metadata_offset: offset,
        }))
    }

    async fn alter_partition_reassignments(
        &self,
        request: Request<pb::AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<pb::AlterPartitionReassignmentsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let requested: Vec<ReassignPartition> = request
            .into_inner()
            .partitions
            .into_iter()
            .map(|p| ReassignPartition {
                topic: p.topic,
                partition: p.partition_index,
                target: p.replicas.map(|r| r.brokers),
            })
            .collect();
        let (offset, outcomes) = self
            .quorum
            .run(|image| Ok(reassignment::alter_reassignments(image, &requested)))
            .await
            .map_err(status)?;
        let results = requested
            .iter()
            .zip(outcomes)
            .map(|(asked, (topic, partition_index, outcome))| {
                let (error_code, error_message) = match outcome {
                    Ok(()) => {
                        info!(%topic, partition = partition_index, target = ?asked.target, "reassigning partition");
                        (0, String::new())
                    }
                    Err(e) => (i32::from(e.code.code()), e.message),
                };
                pb::ReassignmentResult {
                    topic,
                    partition_index,
                    error_code,
                    error_message,
                }
            })
            .collect();
        Ok(Response::new(pb::AlterPartitionReassignmentsResponse {
            results,
            metadata_offset: offset,
        }))
    }

    async fn list_partition_reassignments(
        &self,
        request: Request<pb::ListPartitionReassignmentsRequest>,
    ) -> Result<Response<pb::ListPartitionReassignmentsResponse>, Status> {
        let only: Vec<(String, Vec<i32>)> = request
            .into_inner()
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partitions))
            .collect();
        let reassignments = self.quorum.applied().with_image(|image| {
            let only = (!only.is_empty()).then_some(only.as_slice());
            reassignment::list_reassignments(image, only)
                .into_iter()
                .map(|r| {
                    let now = image
                        .topic_by_name(&r.topic)
                        .and_then(|t| t.partitions.get(r.partition as usize));
                    pb::OngoingReassignment {
                        isr: now.map(|p| p.isr.clone()).unwrap_or_default(),
                        leader: now.map_or(-1, |p| p.leader),
                        topic: r.topic,
                        partition_index: r.partition,
                        replicas: r.replicas,
                        adding_replicas: r.adding,
                        removing_replicas: r.removing,
                    }
                })
                .collect()
        });
        Ok(Response::new(pb::ListPartitionReassignmentsResponse {
            reassignments,
        }))
    }

    async fn create_acls(
        &self,
        request: Request<pb::CreateAclsRequest>,
    ) -> Result<Response<pb::CreateAclsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let creations: Vec<_> = request
            .into_inner()
            .creations
            .iter()
            .map(acl_from_proto)
            .collect();
        let (offset, outcomes) = self
            .quorum
            .run(|image| Ok(acls::create_acls(image, &creations, Uuid::new_v4)))
            .await
            .map_err(status)?;
        let results = creations
            .iter()
            .zip(outcomes)
            .map(|(acl, outcome)| match outcome {
                Ok(()) => {
                    info!(?acl, "created ACL");
                    pb::AclResult::default()
                }
                Err(e) => pb::AclResult {
                    error_code: i32::from(e.code.code()),
                    error_message: e.message,
                },
            })
            .collect();
        Ok(Response::new(pb::CreateAclsResponse {
            results,
            metadata_offset: offset,
        }))
    }

    async fn delete_acls(
        &self,
        request: Request<pb::DeleteAclsRequest>,
    ) -> Result<Response<pb::DeleteAclsResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let filters: Vec<_> = request
            .into_inner()
            .filters
            .iter()
            .map(acl_filter_from_proto)
            .collect();
        let (offset, outcomes) = self
            .quorum
            .run(|image| Ok(acls::delete_acls(image, &filters)))
            .await
            .map_err(status)?;
        let results = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(matching) => {
                    for acl in &matching {
                        info!(?acl, "deleted ACL");
                    }
                    pb::DeleteAclsFilterResult {
                        matching_acls: matching.iter().map(acl_to_proto).collect(),
                        ..Default::default()
                    }
                }
                Err(e) => pb::DeleteAclsFilterResult {
                    error_code: i32::from(e.code.code()),
                    error_message: e.message,
                    matching_acls: Vec::new(),
                },
            })
            .collect();
        Ok(Response::new(pb::DeleteAclsResponse {
            results,
            metadata_offset: offset,
        }))
    }

    async fn describe_acls(
        &self,
        request: Request<pb::DescribeAclsRequest>,
    ) -> Result<Response<pb::DescribeAclsResponse>, Status> {
        let filter = request.into_inner().filter.as_ref().map_or_else(
            chronik_metadata::acl::AclBindingFilter::any,
            acl_filter_from_proto,
        );
        if let Err(e) = filter.validate() {
            return Ok(Response::new(pb::DescribeAclsResponse {
                error_code: i32::from(e.code.code()),
                error_message: e.message,
                acls: Vec::new(),
            }));
        }
        let acls = self.quorum.applied().with_image(|image| {
            acls::describe_acls(image, &filter)
                .iter()
                .map(acl_to_proto)
                .collect()
        });
        Ok(Response::new(pb::DescribeAclsResponse {
            acls,
            ..Default::default()
        }))
    }

    async fn update_features(
        &self,
        request: Request<pb::UpdateFeaturesRequest>,
    ) -> Result<Response<pb::UpdateFeaturesResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let changes: Vec<features::FeatureChange> = req
            .updates
            .iter()
            .map(|u| features::FeatureChange {
                name: u.name.clone(),
                level: u.level,
                upgrade_type: features::UpgradeType::from_code(u.upgrade_type),
            })
            .collect();
        let (offset, ()) = self
            .quorum
            .run(|image| features::update_features(image, &changes, req.validate_only))
            .await
            .map_err(status)?;
        if !req.validate_only {
            for change in &changes {
                info!(feature = %change.name, level = change.level, "finalized feature level");
            }
        }
        Ok(Response::new(pb::UpdateFeaturesResponse {
            metadata_offset: if req.validate_only { 0 } else { offset },
        }))
    }

    async fn unregister_broker(
        &self,
        request: Request<pb::UnregisterBrokerRequest>,
    ) -> Result<Response<pb::UnregisterBrokerResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let broker_id = request.into_inner().broker_id;
        let (liveness, quorum) = (&self.liveness, &self.quorum);
        let (offset, broker_epoch) = self
            .quorum
            .run(|image| {
                // Sessions of an earlier term (or none, on a controller that just took over) would
                // say a live broker is not: give every broker one in this term first, as the
                // liveness task does, so that one which has not heartbeated here yet counts as live.
                if let Some(term) = quorum.leading_term() {
                    liveness.on_term(term, image);
                }
                cluster::unregister_broker(image, broker_id, liveness.has_live_session(broker_id))
            })
            .await
            .map_err(status)?;
        self.liveness.remove_registration(broker_id, broker_epoch);
        info!(broker_id, offset, "unregistered broker");
        Ok(Response::new(pb::UnregisterBrokerResponse {
            metadata_offset: offset,
        }))
    }

    async fn alter_client_quotas(
        &self,
        request: Request<pb::AlterClientQuotasRequest>,
    ) -> Result<Response<pb::AlterClientQuotasResponse>, Status> {
        require_bootstrapped(&self.quorum)?;
        let req = request.into_inner();
        let alterations: Vec<QuotaAlteration> = req
            .entries
            .into_iter()
            .map(|entry| QuotaAlteration {
                entity: entry
                    .entity
                    .into_iter()
                    .map(|part| (part.entity_type, part.name))
                    .collect(),
                ops: entry
                    .ops
                    .into_iter()
                    .map(|op| (op.key, (!op.remove).then_some(op.value)))
                    .collect(),
            })
            .collect();
        let (offset, outcomes) = self
            .quorum
            .run(|image| {
                Ok(quotas::alter_client_quotas(
                    image,
                    &alterations,
                    req.validate_only,
                ))
            })
            .await
            .map_err(status)?;
        if offset > 0 {
            info!(offset, "client quotas altered");
        }
        let results = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(()) => pb::AlterClientQuotasResult::default(),
                Err(e) => pb::AlterClientQuotasResult {
                    error_code: i32::from(e.code.code()),
                    error_message: e.message,
                },
            })
            .collect();
        Ok(Response::new(pb::AlterClientQuotasResponse {
            results,
            metadata_offset: offset,
        }))
    }

    async fn describe_quorum(
        &self,
        _request: Request<pb::DescribeQuorumRequest>,
    ) -> Result<Response<pb::DescribeQuorumResponse>, Status> {
        describe_quorum(&self.quorum, &self.liveness)
            .map(Response::new)
            .map_err(status)
    }
}

/// The quorum's replication state as this node, the active controller, sees it (KIP-595's
/// DescribeQuorum, which Kafka's `LeaderState.describeQuorum` answers the same way): the voters are
/// the controllers (the leader is caught up by definition), the observers the brokers, which follow
/// the metadata log through their watch streams and report how far they applied it in their
/// heartbeats. Log offsets are exclusive: the next index after the last entry.
fn describe_quorum(
    quorum: &Quorum,
    liveness: &Liveness,
) -> Result<pb::DescribeQuorumResponse, ControllerError> {
    let metrics = quorum.raft().metrics().borrow().clone();
    if metrics.current_leader != Some(quorum.node_id()) {
        return Err(quorum.not_controller());
    }
    let now = crate::raft::progress::now_ms();
    let at = |instant: tokio::time::Instant| now - instant.elapsed().as_millis() as i64;
    let next = |index: u64| i64::try_from(index).map_or(i64::MAX, |i| i.saturating_add(1));
    let last_index = metrics.last_log_index;
    let progress = quorum.follower_progress();
    let voters = quorum
        .voters()
        .keys()
        .map(|&id| {
            if id == quorum.node_id() {
                return pb::QuorumReplica {
                    replica_id: id as i64,
                    log_end_offset: last_index.map_or(-1, next),
                    last_fetch_timestamp: now,
                    last_caught_up_timestamp: now,
                };
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map(|l| l.index);
            let contact = progress.contact(id);
            // An answer while it held everything the leader has now was a catch-up too (an idle
            // quorum's heartbeats move no index, so the tracker sees no change).
            let caught_up = if matched.is_some() && matched >= last_index {
                contact.caught_up_ms.max(contact.last_answer_ms)
            } else {
                contact.caught_up_ms
            };
            pb::QuorumReplica {
                replica_id: id as i64,
                log_end_offset: matched.map_or(-1, next),
                last_fetch_timestamp: contact.last_answer_ms,
                last_caught_up_timestamp: caught_up,
            }
        })
        .collect();
    let image = quorum.applied().image();
    let observers = liveness
        .observers(&image)
        .into_iter()
        .map(|o| {
            let reported = o.metadata_offset > 0;
            pb::QuorumReplica {
                replica_id: i64::from(o.broker_id),
                log_end_offset: if reported {
                    next(o.metadata_offset)
                } else {
                    -1
                },
                last_fetch_timestamp: if reported { at(o.last_contact) } else { -1 },
                last_caught_up_timestamp: o.caught_up_at.map_or(-1, at),
            }
        })
        .collect();
    Ok(pb::DescribeQuorumResponse {
        leader_id: quorum.node_id() as i64,
        leader_epoch: metrics.current_term as i64,
        high_watermark: quorum.committed_index().map_or(-1, next),
        voters,
        observers,
        nodes: quorum
            .voters()
            .iter()
            .map(|(&id, address)| pb::QuorumNode {
                node_id: id as i64,
                address: address.clone(),
            })
            .collect(),
    })
}

/// One resource of an AlterConfigs call, as the state command takes it.
fn alter_resource_from_proto(
    resource: &pb::AlterConfigsResource,
) -> Result<config_changes::AlterResource, Status> {
    let target = match resource.resource() {
        pb::ConfigResource::Cluster if resource.name.is_empty() => ConfigResource::Cluster,
        pb::ConfigResource::Cluster => {
            return Err(invalid("the cluster config resource has no name"));
        }
        pb::ConfigResource::Topic => ConfigResource::Topic(resource.name.clone()),
        pb::ConfigResource::Broker => match resource.name.parse::<i32>() {
            Ok(id) if id >= 0 => ConfigResource::Broker(id),
            _ => {
                return Err(invalid(format!(
                    "broker config resource names a broker id, not {:?}",
                    resource.name
                )))
            }
        },
        pb::ConfigResource::Unspecified => return Err(invalid("config resource type missing")),
    };
    let changes = resource
        .changes
        .iter()
        .map(|c| {
            let op = match c.operation() {
                pb::ConfigOperation::Set => ConfigOp::Set(c.value.clone()),
                pb::ConfigOperation::Delete => ConfigOp::Delete,
                pb::ConfigOperation::Append => ConfigOp::Append(c.value.clone()),
                pb::ConfigOperation::Subtract => ConfigOp::Subtract(c.value.clone()),
            };
            (c.key.clone(), op)
        })
        .collect();
    Ok(config_changes::AlterResource {
        resource: target,
        changes,
        replace: resource.replace,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::liveness::Expiry;
    use crate::state::{ControllerResult, Record};

    const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
    const SESSION_TIMEOUT: Duration = Duration::from_secs(9);
    const SESSION_GRACE: Duration = Duration::from_millis(500);

    /// The API of a single-voter controller over a real Raft store in `dir`, bootstrapped with a
    /// cluster id.
    async fn single_controller(dir: &Path) -> ControllerApi {
        api_over(crate::quorum::test_support::single_voter(dir, "grpc-test").await)
    }

    /// The API of a controller whose Raft store in `dir` was never initialized: no leader, nothing
    /// applied, as a follower is before the log reaches it.
    async fn uninitialized_controller(dir: &Path) -> ControllerApi {
        api_over(crate::quorum::test_support::uninitialized(dir).await)
    }

    fn api_over(quorum: Arc<Quorum>) -> ControllerApi {
        ControllerApi {
            quorum,
            liveness: Arc::new(Liveness::new(SESSION_TIMEOUT, Some(SESSION_GRACE))),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            session_timeout: SESSION_TIMEOUT,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Issue #11, defect 3: openraft keeps an entry whose writer stopped waiting, and it can commit
    /// later. No command may be computed on an image that misses it: the next one waits for it.
    #[tokio::test(start_paused = true)]
    async fn no_command_runs_before_an_entry_that_timed_out_settles() {
        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let raft = api.quorum.raft().clone();
        // An entry that commits only after longer than the write timeout.
        api.quorum
            .leave_pending(Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(8)).await;
                let records = vec![Record::ProducerIds {
                    broker_id: 1,
                    broker_epoch: 1,
                    next_producer_id: 1000,
                }];
                raft.client_write(crate::raft::Request { records }).await
            }))
            .await;
        let next_producer_id =
            |image: &MetadataImage| Ok(ControllerResult::new(Vec::new(), image.next_producer_id));
        let err = api.quorum.run(next_producer_id).await.unwrap_err();
        assert!(matches!(err, ControllerError::Unavailable(_)), "{err}");
        let (_, seen) = api.quorum.run(next_producer_id).await.unwrap();
        assert_eq!(seen, 1000, "the command saw the entry that was pending");
    }

    /// A broker that starts from nothing is sent the whole image, which at 100,000 partitions is
    /// larger than the 4 MiB a gRPC client decodes by default: the broker never caught up. Through a
    /// real server and a client with tonic's default limits (the broker's), a snapshot and a single
    /// entry of over 6 MiB each arrive whole, in chunks.
    #[tokio::test]
    async fn an_update_larger_than_a_grpc_message_reaches_a_watcher_with_default_limits() {
        use crate::state::records::PartitionRecord;
        use chronik_proto::v1::broker_service_client::BrokerServiceClient;
        use chronik_proto::v1::broker_service_server::BrokerServiceServer;

        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let topic_id = Uuid::new_v4();
        let mut records = vec![Record::Topic {
            name: "wide".into(),
            topic_id,
        }];
        records.extend((0..130_000).map(|partition| {
            Record::Partition(PartitionRecord {
                topic_id,
                partition,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 7,
                partition_epoch: 9,
                recovering: false,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                elr: Vec::new(),
            })
        }));
        let entry_records = records.len();
        let (offset, ()) = api
            .quorum
            .run(move |_| Ok(ControllerResult::new(records, ())))
            .await
            .unwrap();

        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = incoming.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(BrokerServiceServer::new(api))
                .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
        );
        // tonic's default limits, as the broker's client has them; a watcher that does not take
        // chunks (a broker older than them) is given room for the whole image in one message.
        let mut client = BrokerServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let mut unchunked = BrokerServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20);

        // Reads one update, however many messages carry it: (is_snapshot, messages, records).
        let mut read_update = async |from_offset: u64, accepts_chunks: bool| {
            let client = if accepts_chunks {
                &mut client
            } else {
                &mut unchunked
            };
            let mut updates = client
                .watch_metadata(pb::WatchMetadataRequest {
                    from_offset,
                    accepts_chunks,
                })
                .await
                .unwrap()
                .into_inner();
            let (mut messages, mut records, mut is_snapshot) = (0, 0, None);
            loop {
                let message = updates
                    .message()
                    .await
                    .unwrap_or_else(|e| panic!("message {messages} from offset {from_offset}: {e}"))
                    .expect("the stream stays open");
                assert_eq!(message.offset, offset, "every chunk is of the same update");
                assert!(is_snapshot.is_none_or(|s| s == message.is_snapshot));
                is_snapshot = Some(message.is_snapshot);
                messages += 1;
                records += message.records.len();
                if !message.more {
                    return (message.is_snapshot, messages, records);
                }
            }
        };
        let (is_snapshot, messages, records) = read_update(0, true).await;
        assert!(is_snapshot, "a watcher from nothing gets the image");
        assert!(messages > 1, "the image is sent in chunks: {messages}");
        // The image has the cluster id and the topic's records besides the partitions.
        assert!(
            records > entry_records,
            "{records} records of {entry_records}"
        );

        let (is_snapshot, messages, records) = read_update(offset - 1, true).await;
        assert!(!is_snapshot, "a watcher one entry behind gets the entry");
        assert!(messages > 1, "the entry is sent in chunks: {messages}");
        assert_eq!(records, entry_records);

        // A watcher that does not put chunks together gets the image in one message: it would take
        // each chunk of a snapshot for the whole image.
        let (is_snapshot, messages, records) = read_update(0, false).await;
        assert!(is_snapshot);
        assert_eq!(messages, 1);
        assert!(records > entry_records);
        stop.cancel();
    }

    #[test]
    fn an_update_is_chunked_by_encoded_size_and_only_the_last_chunk_ends_it() {
        // Records of one encoded size each, which say their place.
        let record = |n: u8| {
            record_to_proto(&Record::Topic {
                name: format!("topic-{n:03}"),
                topic_id: Uuid::nil(),
            })
        };
        let one = prost::Message::encoded_len(&record(0));
        let messages = chunked(5, false, 77, (0..10).map(record).collect(), 3 * one);
        let sizes: Vec<usize> = messages.iter().map(|m| m.records.len()).collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        let more: Vec<bool> = messages.iter().map(|m| m.more).collect();
        assert_eq!(more, vec![true, true, true, false]);
        assert!(messages
            .iter()
            .all(|m| m.offset == 5 && !m.is_snapshot && m.commit_timestamp_us == 77));
        let order: Vec<u8> = messages
            .iter()
            .flat_map(|m| &m.records)
            .map(|r| match chronik_metadata::convert::record_from_proto(r) {
                Ok(Record::Topic { name, .. }) => name[6..].parse().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<u8>>());
        // An empty entry is one message; a record larger than the limit goes alone.
        let empty = chunked(6, false, 0, Vec::new(), one);
        assert_eq!(empty.len(), 1);
        assert!(!empty[0].more && empty[0].records.is_empty());
        let big = chunked(7, true, 0, vec![record(1), record(2)], one / 2);
        assert_eq!(
            big.iter().map(|m| m.records.len()).collect::<Vec<_>>(),
            vec![1, 1]
        );
    }

    /// A controller that has not applied the bootstrap records yet and does not lead (a follower
    /// the log has not reached, right after start) sends a write to the active controller with
    /// NOT_CONTROLLER, which callers follow, instead of refusing it as "still bootstrapping", which
    /// `chronikctl bench metadata` gave up on in CI.
    #[tokio::test]
    async fn a_follower_not_yet_bootstrapped_sends_writes_to_the_active_controller() {
        let dir = tempfile::tempdir().unwrap();
        let api = uninitialized_controller(dir.path()).await;
        let err = api
            .create_topics(Request::new(pb::CreateTopicsRequest::default()))
            .await
            .unwrap_err();
        let kafka_error = err
            .metadata()
            .get(ERROR_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(kafka_error.as_deref(), Some("NOT_CONTROLLER"), "{err:?}");
    }

    /// Registers broker 1; its broker epoch.
    async fn register(api: &ControllerApi) -> i64 {
        api.register_broker(Request::new(pb::RegisterBrokerRequest {
            broker_id: 1,
            incarnation_id: Uuid::new_v4().to_string(),
            endpoints: vec![pb::Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: None,
            supported_features: Vec::new(),
            cluster_id: String::new(),
            log_dir_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .broker_epoch
    }

    /// Opens broker 1's session stream and reads the event that says the controller took it.
    async fn open_session(api: &ControllerApi, broker_epoch: i64) -> SessionEvents {
        let mut events = api
            .broker_session(Request::new(pb::BrokerSessionRequest {
                broker_id: 1,
                broker_epoch,
            }))
            .await
            .unwrap()
            .into_inner();
        let opened = events.next().await.unwrap().unwrap();
        assert_eq!(opened.grace_ms, SESSION_GRACE.as_millis() as u32);
        events
    }

    /// Issue #12: a broker whose session stream closes (its process died) is expired once the grace
    /// runs out, long before its session timeout; reopening within the grace keeps the session.
    #[tokio::test(start_paused = true)]
    async fn a_closed_session_stream_expires_the_broker_after_the_grace_unless_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let broker_epoch = register(&api).await;
        let reply = api.broker_heartbeat(heartbeat(broker_epoch)).await.unwrap();
        assert!(!reply.into_inner().is_fenced);
        let image = api.quorum.applied().image();

        // A dropped connection, reopened within the grace: nothing happens, ever.
        let stream = open_session(&api, broker_epoch).await;
        drop(stream);
        tokio::time::sleep(SESSION_GRACE - Duration::from_millis(100)).await;
        assert!(api.liveness.has_live_session(1));
        let stream = open_session(&api, broker_epoch).await;
        tokio::time::sleep(SESSION_GRACE * 4).await;
        assert_eq!(api.liveness.next_expired(&image), None);

        // A second stream opened before the first closes (a reconnect racing the old connection's
        // close): closing the old one loses nothing.
        let newer = open_session(&api, broker_epoch).await;
        drop(stream);
        tokio::time::sleep(SESSION_GRACE * 4).await;
        assert_eq!(api.liveness.next_expired(&image), None);

        // The process dies: every stream closes and none comes back.
        drop(newer);
        tokio::time::sleep(SESSION_GRACE - Duration::from_millis(50)).await;
        assert_eq!(
            api.liveness.next_expired(&image),
            None,
            "still within the grace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            api.liveness.next_expired(&image),
            Some((1, broker_epoch, Expiry::StreamLost))
        );
        assert!(!api.liveness.has_live_session(1));
        assert!(
            SESSION_GRACE * 2 < SESSION_TIMEOUT,
            "expired by the stream, not by the session timeout"
        );
    }

    /// A stream of another registration is refused and cannot keep the current one alive.
    #[tokio::test(start_paused = true)]
    async fn a_session_stream_of_an_older_registration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let broker_epoch = register(&api).await;
        let refused = api
            .broker_session(Request::new(pb::BrokerSessionRequest {
                broker_id: 1,
                broker_epoch: broker_epoch - 1,
            }))
            .await
            .err()
            .expect("refused");
        assert_eq!(
            refused
                .metadata()
                .get(ERROR_METADATA_KEY)
                .and_then(|v| v.to_str().ok()),
            Some(error::name(ResponseError::StaleBrokerEpoch).as_ref())
        );
        // Without a stream of its own, the current registration is judged by heartbeats alone.
        tokio::time::sleep(SESSION_GRACE * 4).await;
        assert!(api.liveness.has_live_session(1));
    }

    /// A controller that has just taken over knows no session yet: a broker alive but not yet
    /// heard from in this term counts as live, and its unregistration is refused. Its session is
    /// what is removed once a stopped broker is unregistered, not a newer registration's.
    #[tokio::test]
    async fn a_new_active_controller_refuses_to_unregister_a_broker_it_has_not_heard_from() {
        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let broker_epoch = register(&api).await;
        // The same quorum behind a controller process that has no session of this term yet.
        let taken_over = api_over(api.quorum.clone());
        async fn unregister(
            api: &ControllerApi,
        ) -> Result<Response<pb::UnregisterBrokerResponse>, Status> {
            let request = Request::new(pb::UnregisterBrokerRequest { broker_id: 1 });
            api.unregister_broker(request).await
        }
        let refused = unregister(&taken_over).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("is alive"), "{refused:?}");
        assert!(api.quorum.applied().image().brokers.contains_key(&1));

        // Once its session in this term is over it is unregistered, and only that registration's
        // session goes.
        let term = api.quorum.leading_term().unwrap();
        api.liveness.on_term(term, &api.quorum.applied().image());
        api.liveness.remove(1);
        unregister(&api).await.unwrap();
        assert!(!api.quorum.applied().image().brokers.contains_key(&1));
        api.liveness.touch(1, broker_epoch + 10, 0);
        api.liveness.remove_registration(1, broker_epoch);
        assert!(
            api.liveness.has_live_session(1),
            "a newer registration keeps its session"
        );
    }

    /// DescribeQuorum on the active controller: itself the caught-up leader voter at the log's end,
    /// the high watermark past the last committed entry, the broker an observer once it heartbeats,
    /// caught up when it reported the controller's offset. A controller that does not lead refuses
    /// it with NOT_CONTROLLER.
    #[tokio::test]
    async fn the_active_controller_describes_the_quorum_and_others_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let before = crate::raft::progress::now_ms();
        let broker_epoch = register(&api).await;
        let described = || async {
            api.describe_quorum(Request::new(pb::DescribeQuorumRequest {}))
                .await
                .unwrap()
                .into_inner()
        };
        let quorum = described().await;
        let last = api.quorum.raft().metrics().borrow().last_log_index.unwrap() as i64;
        assert_eq!((quorum.leader_id, quorum.leader_epoch > 0), (1, true));
        assert_eq!(
            quorum.high_watermark,
            api.quorum.committed_index().unwrap() as i64 + 1
        );
        assert_eq!(quorum.voters.len(), 1);
        let leader = &quorum.voters[0];
        assert_eq!((leader.replica_id, leader.log_end_offset), (1, last + 1));
        assert!(leader.last_fetch_timestamp >= before && leader.last_caught_up_timestamp >= before);
        assert_eq!(
            quorum.nodes.iter().map(|n| n.node_id).collect::<Vec<_>>(),
            vec![1]
        );
        // Registered, not heartbeating yet: an observer whose log is not known.
        let observer = &quorum.observers[0];
        assert_eq!(
            (
                observer.replica_id,
                observer.log_end_offset,
                observer.last_caught_up_timestamp
            ),
            (1, -1, -1)
        );

        let offset = api.quorum.applied().image().offset;
        let mut request = heartbeat(broker_epoch);
        request.get_mut().current_metadata_offset = offset;
        api.broker_heartbeat(request).await.unwrap();
        let observer = described().await.observers[0];
        assert_eq!(observer.log_end_offset, offset as i64 + 1);
        assert!(observer.last_fetch_timestamp >= before);
        assert!(observer.last_caught_up_timestamp >= before);

        let other = tempfile::tempdir().unwrap();
        let follower = uninitialized_controller(other.path()).await;
        let err = follower
            .describe_quorum(Request::new(pb::DescribeQuorumRequest {}))
            .await
            .unwrap_err();
        let kafka_error = err
            .metadata()
            .get(ERROR_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(kafka_error.as_deref(), Some("NOT_CONTROLLER"), "{err:?}");
    }

    fn heartbeat(broker_epoch: i64) -> Request<pb::BrokerHeartbeatRequest> {
        Request::new(pb::BrokerHeartbeatRequest {
            broker_id: 1,
            broker_epoch,
            current_metadata_offset: u64::MAX,
            want_fence: false,
            want_shut_down: false,
            offline_log_dirs: Vec::new(),
        })
    }

    /// Issue #11, defect 9: contact counts when a heartbeat arrives, not when the quorum has written
    /// its outcome, so a slow quorum does not fence a broker that heartbeats on time (Kafka's
    /// `BrokerHeartbeatManager` touches the session before the request is queued).
    #[tokio::test(start_paused = true)]
    async fn a_slow_quorum_does_not_fence_a_broker_that_heartbeats() {
        let dir = tempfile::tempdir().unwrap();
        let api = single_controller(dir.path()).await;
        let broker_epoch = register(&api).await;
        let reply = api.broker_heartbeat(heartbeat(broker_epoch)).await.unwrap();
        assert!(!reply.into_inner().is_fenced);
        let term = api.quorum.raft().metrics().borrow().current_term;
        api.liveness.on_term(term, &api.quorum.applied().image());

        // Every write now waits, as when the other voters are slow or cut off.
        let stalled = api.quorum.hold_writes().await;
        let mut in_flight = Vec::new();
        for _ in 0..6 {
            let api = api.clone();
            in_flight.push(tokio::spawn(async move {
                let _ = api.broker_heartbeat(heartbeat(broker_epoch)).await;
            }));
            tokio::time::sleep(HEARTBEAT_INTERVAL).await;
        }
        // Longer than the session timeout has passed, with a heartbeat every interval.
        let image = api.quorum.applied().image();
        assert_eq!(api.liveness.next_expired(&image), None);
        assert!(api.liveness.has_live_session(1));

        // A heartbeat of an older registration is not contact for the current one.
        tokio::time::sleep(SESSION_TIMEOUT - HEARTBEAT_INTERVAL).await;
        let api_stale = api.clone();
        in_flight.push(tokio::spawn(async move {
            let _ = api_stale
                .broker_heartbeat(heartbeat(broker_epoch - 1))
                .await;
        }));
        tokio::time::sleep(HEARTBEAT_INTERVAL * 2).await;
        assert_eq!(
            api.liveness.next_expired(&image),
            Some((1, broker_epoch, Expiry::SessionTimedOut)),
            "only heartbeats of the current registration keep it alive"
        );
        drop(stalled);
        for heartbeat in in_flight {
            heartbeat.await.unwrap();
        }
    }
}
