//! CreateTopics (key 19): forwarded to the controller quorum, which validates, places and commits the
//! topics; the answer maps its per-topic results to Kafka's and is sent once this broker's own image has
//! the new topics (bounded by the request's `timeout_ms`), so a produce right after it does not bounce.
//!
//! What must stay true:
//! - Each distinct requested name is answered exactly once, and no other name (librdkafka refuses a
//!   response that repeats a topic or names one it did not ask for).
//! - A call that never reached the active controller answers NOT_CONTROLLER, which the Java admin client
//!   retries; one that may have been applied answers REQUEST_TIMED_OUT, which librdkafka reads as "in
//!   progress" when it asked not to wait. Neither is ever reported as success.

use chronik_metadata::acl::AclOperation;
use std::collections::{BTreeMap, HashMap, HashSet};

use chronik_metadata::convert::topic_id_from_bytes;
use chronik_metadata::MetadataImage;
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;
use uuid::Uuid;

use super::admin::{
    controller_failure, error_message, kafka_code, propagation_wait, SOURCE_DEFAULT,
    SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_TOPIC,
};
use super::{BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(&*topic.name.0).or_default() += 1;
    }
    // One slot per distinct name, in request order; `None` until the controller answers it.
    let mut answers: Vec<(String, Option<CreatableTopicResult>)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut forward = Vec::new();
    // The keys each forwarded topic sets itself, to tell its configs' sources apart.
    let mut own_keys: HashMap<String, Vec<String>> = HashMap::new();
    let may_create_any = ctx.authorize_cluster(rc, AclOperation::Create);
    for topic in &request.topics {
        if !seen.insert(&topic.name.0) {
            continue;
        }
        let name = topic.name.0.to_string();
        let refused = if counts.get(&*topic.name.0).is_some_and(|&n| n > 1) {
            Some((
                ResponseError::InvalidRequest,
                "Duplicate topic name.".to_owned(),
            ))
        } else if !may_create_any && !ctx.authorize_topic(rc, AclOperation::Create, &name) {
            // Kafka's handleCreateTopicsRequest: CREATE on the cluster or on the topic.
            Some((ResponseError::TopicAuthorizationFailed, String::new()))
        } else {
            check_topic(topic).err()
        };
        match refused {
            Some((error, message)) => {
                answers.push((name.clone(), Some(failed(name, error.code(), message))));
            }
            None => {
                let configs: BTreeMap<String, String> = topic
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                own_keys.insert(name.clone(), configs.keys().cloned().collect());
                forward.push(pb::CreatableTopic {
                    name: name.clone(),
                    num_partitions: topic.num_partitions,
                    replication_factor: i32::from(topic.replication_factor),
                    configs: configs.into_iter().collect(),
                    assignments: topic
                        .assignments
                        .iter()
                        .map(|a| pb::ReplicaAssignment {
                            partition_index: a.partition_index,
                            broker_ids: a.broker_ids.iter().map(|b| b.0).collect(),
                        })
                        .collect(),
                });
                answers.push((name, None));
            }
        }
    }

    let mut results: HashMap<String, CreatableTopicResult> = HashMap::new();
    if !forward.is_empty() {
        let call = pb::CreateTopicsRequest {
            topics: forward,
            validate_only: request.validate_only,
        };
        match ctx.controller.create_topics(call).await {
            Ok(reply) => {
                let image = ctx.metadata.current();
                let mut offset = 0;
                for result in reply.topics {
                    if result.error_code == 0 {
                        offset = offset.max(result.metadata_offset);
                    }
                    let own = own_keys.get(&result.name).map(Vec::as_slice).unwrap_or(&[]);
                    let answer = topic_result(&image, own, result);
                    results.insert(answer.name.0.to_string(), answer);
                }
                if offset > 0 {
                    let wait = propagation_wait(request.timeout_ms);
                    if let Err(e) = ctx.metadata.wait_for_offset(offset, wait).await {
                        // The topics exist; this broker just learns of them late.
                        debug!(error = %e, "created topics not yet in the local image");
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, version = rc.version, "CreateTopics not forwarded");
                let (code, message) = controller_failure(&e);
                for (name, answer) in &mut answers {
                    if answer.is_none() {
                        *answer = Some(failed(name.clone(), code, message.clone()));
                    }
                }
            }
        }
    }

    let topics = answers
        .into_iter()
        .map(|(name, answer)| {
            answer.or_else(|| results.remove(&name)).unwrap_or_else(|| {
                let message = "the controller did not answer for this topic".to_owned();
                failed(name, ResponseError::UnknownServerError.code(), message)
            })
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// What the broker refuses before asking the controller.
fn check_topic(topic: &CreatableTopic) -> Result<(), (ResponseError, String)> {
    let null_values: Vec<&str> = topic
        .configs
        .iter()
        .filter(|c| c.value.is_none())
        .map(|c| &*c.name)
        .collect();
    if !null_values.is_empty() {
        return Err((
            ResponseError::InvalidConfig,
            format!(
                "Null value not supported for topic configs: {}",
                null_values.join(",")
            ),
        ));
    }
    Ok(())
}

fn failed(name: String, code: i16, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(TopicName(StrBytes::from_string(name)))
        .with_error_code(code)
        .with_error_message(error_message(code, message))
}

/// A controller result as Kafka reports it: v5+ also the effective partitions, replication factor and
/// configs, v7 the topic id.
fn topic_result(
    image: &MetadataImage,
    own_keys: &[String],
    result: pb::CreateTopicResult,
) -> CreatableTopicResult {
    let code = kafka_code(result.error_code);
    if code != 0 {
        return failed(result.name, code, result.error_message);
    }
    let mut configs: Vec<CreatableTopicConfigs> = result
        .configs
        .into_iter()
        .map(|(key, value)| {
            let source = if own_keys.contains(&key) {
                SOURCE_TOPIC
            } else if image.cluster_configs.contains_key(&key) {
                SOURCE_DYNAMIC_DEFAULT_BROKER
            } else {
                SOURCE_DEFAULT
            };
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(key))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(false)
                .with_config_source(source)
                .with_is_sensitive(false)
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    CreatableTopicResult::default()
        .with_name(TopicName(StrBytes::from_string(result.name)))
        .with_topic_id(topic_id_from_bytes(&result.topic_id).unwrap_or(Uuid::nil()))
        .with_error_code(0)
        .with_error_message(None)
        .with_num_partitions(result.num_partitions)
        .with_replication_factor(i16::try_from(result.replication_factor).unwrap_or(-1))
        .with_configs(Some(configs))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chronik_metadata::configs::{
        effective, effective_topic_configs, validate_topic_configs, DEFAULT_REPLICATION_FACTOR,
        NUM_PARTITIONS,
    };
    use chronik_metadata::convert::topic_id_to_bytes;
    use chronik_metadata::records::{ConfigResource, PartitionRecord};
    use chronik_metadata::topic_name::validate_topic_name;
    use chronik_metadata::{ApiError, Record, ResponseError};
    use chronik_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    use tokio_util::sync::CancellationToken;
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};
    use crate::metadata::tests::update;
    use crate::metadata::MetadataCache;

    /// A controller's AdminService without Raft, over the shared metadata rules (topic names, configs
    /// and their defaults from `chronik_metadata`) and the simplest placement (partition `p` on the
    /// `replication_factor` active brokers from the `p`-th on): each call is one log entry, replayed
    /// into its image and, unless `propagate` is off, into the broker's cache as the watch stream would.
    /// The controller's own placement and checks are tested in its crate; the two together by the
    /// client suite against real processes.
    pub(crate) struct FakeController {
        state: Mutex<MetadataImage>,
        cache: Arc<MetadataCache>,
        propagate: bool,
    }

    impl FakeController {
        fn commit(&self, image: &mut MetadataImage, records: &[Record]) -> u64 {
            let offset = image.offset + 1;
            image.replay_all(offset, records);
            if self.propagate {
                self.cache
                    .apply(&[update(offset, false, records)])
                    .expect("records apply");
            }
            offset
        }
    }

    #[tonic::async_trait]
    impl AdminService for FakeController {
        async fn create_topics(
            &self,
            request: Request<pb::CreateTopicsRequest>,
        ) -> Result<Response<pb::CreateTopicsResponse>, Status> {
            let request = request.into_inner();
            let mut image = self.state.lock().expect("lock");
            let mut records = Vec::new();
            let mut answers = Vec::new();
            for t in request.topics {
                let configs: BTreeMap<String, String> = t.configs.into_iter().collect();
                match plan(
                    &image,
                    &t.name,
                    t.num_partitions,
                    t.replication_factor,
                    &configs,
                ) {
                    Ok((num_partitions, replication_factor, replicas)) => {
                        let topic_id = Uuid::new_v4();
                        records.push(Record::Topic {
                            name: t.name.clone(),
                            topic_id,
                        });
                        records.extend(configs.iter().map(|(key, value)| Record::Config {
                            resource: ConfigResource::Topic(t.name.clone()),
                            key: key.clone(),
                            value: Some(value.clone()),
                        }));
                        records.extend(replicas.into_iter().enumerate().map(|(p, replicas)| {
                            Record::Partition(PartitionRecord {
                                topic_id,
                                partition: p as i32,
                                leader: replicas[0],
                                isr: replicas.clone(),
                                replicas,
                                leader_epoch: 0,
                                partition_epoch: 0,
                                recovering: false,
                                adding_replicas: Vec::new(),
                                removing_replicas: Vec::new(),
                                elr: Vec::new(),
                            })
                        }));
                        answers.push(pb::CreateTopicResult {
                            name: t.name,
                            topic_id: topic_id_to_bytes(topic_id),
                            num_partitions,
                            replication_factor,
                            configs: effective_topic_configs(&image, &configs)
                                .into_iter()
                                .collect(),
                            ..Default::default()
                        });
                    }
                    Err(e) => answers.push(pb::CreateTopicResult {
                        name: t.name,
                        error_code: i32::from(e.code.code()),
                        error_message: e.message,
                        ..Default::default()
                    }),
                }
            }
            let offset = if request.validate_only {
                0
            } else {
                self.commit(&mut image, &records)
            };
            let topics = answers
                .into_iter()
                .map(|mut answer| {
                    if request.validate_only {
                        answer.topic_id.clear();
                    } else if answer.error_code == 0 {
                        answer.metadata_offset = offset;
                    }
                    answer
                })
                .collect();
            Ok(Response::new(pb::CreateTopicsResponse { topics }))
        }

        async fn delete_topics(
            &self,
            request: Request<pb::DeleteTopicsRequest>,
        ) -> Result<Response<pb::DeleteTopicsResponse>, Status> {
            let request = request.into_inner();
            let mut image = self.state.lock().expect("lock");
            let mut found = Vec::new();
            let mut topics = Vec::new();
            let by_id = request.topic_ids.iter().map(|id| {
                let id = topic_id_from_bytes(id).map_err(|e| Status::invalid_argument(e.0))?;
                Ok((
                    image.topics.get(&id).map(|t| (t.name.clone(), t.id)),
                    (String::new(), id),
                ))
            });
            let by_name = request.names.iter().map(|name| {
                Ok((
                    image.topic_by_name(name).map(|t| (t.name.clone(), t.id)),
                    (name.clone(), Uuid::nil()),
                ))
            });
            for lookup in by_name.chain(by_id).collect::<Result<Vec<_>, Status>>()? {
                let (error, (name, id)) = match lookup {
                    (Some(topic), _) => (None, topic),
                    (None, asked) if asked.1.is_nil() => {
                        (Some(ResponseError::UnknownTopicOrPartition), asked)
                    }
                    (None, asked) => (Some(ResponseError::UnknownTopicId), asked),
                };
                let (error_code, error_message) = match error {
                    None => (0, String::new()),
                    Some(e) => (e.code(), format!("{e}: no such topic")),
                };
                if error_code == 0 && !found.contains(&id) {
                    found.push(id);
                }
                topics.push(pb::DeleteTopicResult {
                    name,
                    topic_id: if id.is_nil() {
                        Vec::new()
                    } else {
                        topic_id_to_bytes(id)
                    },
                    error_code: i32::from(error_code),
                    error_message,
                });
            }
            let records: Vec<Record> = found
                .into_iter()
                .map(|topic_id| Record::RemoveTopic { topic_id })
                .collect();
            let offset = self.commit(&mut image, &records);
            Ok(Response::new(pb::DeleteTopicsResponse {
                topics,
                metadata_offset: offset,
            }))
        }

        async fn list_topics(
            &self,
            _: Request<pb::ListTopicsRequest>,
        ) -> Result<Response<pb::ListTopicsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn describe_topics(
            &self,
            _: Request<pb::DescribeTopicsRequest>,
        ) -> Result<Response<pb::DescribeTopicsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn describe_cluster(
            &self,
            _: Request<pb::DescribeClusterRequest>,
        ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn alter_configs(
            &self,
            _: Request<pb::AlterConfigsRequest>,
        ) -> Result<Response<pb::AlterConfigsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn elect_leaders(
            &self,
            _: Request<pb::ElectLeadersRequest>,
        ) -> Result<Response<pb::ElectLeadersResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn create_partitions(
            &self,
            _: Request<pb::CreatePartitionsRequest>,
        ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn alter_user_scram_credentials(
            &self,
            _: Request<pb::AlterUserScramCredentialsRequest>,
        ) -> Result<Response<pb::AlterUserScramCredentialsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn alter_partition_reassignments(
            &self,
            _: Request<pb::AlterPartitionReassignmentsRequest>,
        ) -> Result<Response<pb::AlterPartitionReassignmentsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn list_partition_reassignments(
            &self,
            _: Request<pb::ListPartitionReassignmentsRequest>,
        ) -> Result<Response<pb::ListPartitionReassignmentsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn create_acls(
            &self,
            _: Request<pb::CreateAclsRequest>,
        ) -> Result<Response<pb::CreateAclsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn delete_acls(
            &self,
            _: Request<pb::DeleteAclsRequest>,
        ) -> Result<Response<pb::DeleteAclsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn describe_acls(
            &self,
            _: Request<pb::DescribeAclsRequest>,
        ) -> Result<Response<pb::DescribeAclsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn update_features(
            &self,
            _: Request<pb::UpdateFeaturesRequest>,
        ) -> Result<Response<pb::UpdateFeaturesResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn describe_quorum(
            &self,
            _: Request<pb::DescribeQuorumRequest>,
        ) -> Result<Response<pb::DescribeQuorumResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn unregister_broker(
            &self,
            _: Request<pb::UnregisterBrokerRequest>,
        ) -> Result<Response<pb::UnregisterBrokerResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn alter_client_quotas(
            &self,
            _: Request<pb::AlterClientQuotasRequest>,
        ) -> Result<Response<pb::AlterClientQuotasResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    /// The fake controller's checks and placement of one topic: partitions, replication factor and
    /// each partition's replicas.
    fn plan(
        image: &MetadataImage,
        name: &str,
        num_partitions: i32,
        replication_factor: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, i32, Vec<Vec<i32>>), ApiError> {
        validate_topic_name(name)?;
        if image.topic_ids.contains_key(name) {
            return Err(ApiError::new(ResponseError::TopicAlreadyExists, "exists"));
        }
        validate_topic_configs(configs)?;
        let default = |key| effective(image, &BTreeMap::new(), key).parse().unwrap_or(1);
        let partitions = if num_partitions == -1 {
            default(NUM_PARTITIONS)
        } else {
            num_partitions
        };
        let rf = match replication_factor {
            -1 => default(DEFAULT_REPLICATION_FACTOR),
            n => n,
        };
        let brokers: Vec<i32> = image
            .brokers
            .keys()
            .copied()
            .filter(|b| image.is_active_broker(*b))
            .collect();
        if rf < 1 || rf as usize > brokers.len() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {rf} with {} brokers", brokers.len()),
            ));
        }
        let replicas = (0..partitions as usize)
            .map(|p| {
                (0..rf as usize)
                    .map(|r| brokers[(p + r) % brokers.len()])
                    .collect()
            })
            .collect();
        Ok((partitions, rf, replicas))
    }

    /// A broker whose controller is a `FakeController` over the same records, serving on port 0 until
    /// the returned token is cancelled (or the test's runtime ends).
    pub(crate) async fn with_fake_controller(
        broker_id: i32,
        records: &[Record],
        propagate: bool,
    ) -> (TestBroker, CancellationToken) {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("address")).expect("binds");
        let address = incoming.local_addr().expect("local address").to_string();
        // Generous: a loaded test machine must not turn a slow answer into REQUEST_TIMED_OUT.
        let timeout = Duration::from_secs(10);
        let broker = TestBroker::with_controller(broker_id, records, vec![address], timeout);
        let fake = FakeController {
            state: Mutex::new((*broker.ctx.metadata.current()).clone()),
            cache: broker.ctx.metadata.clone(),
            propagate,
        };
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(AdminServiceServer::new(fake))
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        tokio::spawn(server);
        (broker, stop)
    }

    fn creatable(name: &str, partitions: i32, replication_factor: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
    }

    fn config(name: &str, value: Option<&str>) -> CreatableTopicConfig {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(name.to_owned()))
            .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
    }

    fn result<'a>(response: &'a CreateTopicsResponse, name: &str) -> &'a CreatableTopicResult {
        response
            .topics
            .iter()
            .find(|t| &*t.name.0 == name)
            .unwrap_or_else(|| panic!("{name} is answered"))
    }

    async fn create(
        broker: &TestBroker,
        version: i16,
        request: CreateTopicsRequest,
    ) -> CreateTopicsResponse {
        let response = handle(&broker.ctx, &broker.rc(version, "PLAINTEXT"), request).await;
        assert_encodes(&response, version);
        response
    }

    #[tokio::test]
    async fn created_topics_are_answered_with_their_settings_and_already_in_the_image() {
        let c = cluster();
        let (broker, _stop) = with_fake_controller(1, &c.records, true).await;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![
                creatable("payments", 3, 2)
                    .with_configs(vec![config("retention.ms", Some("5000"))]),
                creatable("defaults", -1, 1),
            ]);
        let response = create(&broker, 7, request).await;
        let image = broker.ctx.metadata.current();

        let payments = result(&response, "payments");
        assert_eq!(payments.error_code, 0);
        assert_eq!(payments.error_message, None);
        assert_eq!(
            (payments.num_partitions, payments.replication_factor),
            (3, 2)
        );
        let in_image = image
            .topic_by_name("payments")
            .expect("the image has it on answer");
        assert_eq!(payments.topic_id, in_image.id);
        let configs = payments.configs.as_ref().expect("v5+ configs");
        let source = |key: &str| {
            let c = configs.iter().find(|c| &*c.name == key).expect("listed");
            (c.value.as_deref().map(str::to_owned), c.config_source)
        };
        assert_eq!(source("retention.ms"), (Some("5000".into()), SOURCE_TOPIC));
        assert_eq!(
            source("min.insync.replicas"),
            (Some("1".into()), SOURCE_DYNAMIC_DEFAULT_BROKER)
        );
        assert_eq!(
            source("cleanup.policy"),
            (Some("delete".into()), SOURCE_DEFAULT)
        );
        assert!(
            configs.windows(2).all(|w| w[0].name < w[1].name),
            "sorted by name"
        );

        let defaults = result(&response, "defaults");
        assert_eq!((defaults.error_code, defaults.num_partitions), (0, 1));
        assert!(image.topic_by_name("defaults").is_some());
    }

    #[tokio::test]
    async fn refusals_are_per_topic_and_each_name_is_answered_once() {
        let mut c = cluster();
        c.records.push(Record::Config {
            resource: ConfigResource::Cluster,
            key: "num.partitions".into(),
            value: Some("4".into()),
        });
        let (broker, _stop) = with_fake_controller(1, &c.records, true).await;
        let request = CreateTopicsRequest::default().with_topics(vec![
            creatable("twice", 1, 1),
            creatable("orders", 1, 1),
            creatable("twice", 2, 1),
            creatable("nulls", 1, 1).with_configs(vec![config("retention.ms", None)]),
            creatable("wide", 1, 3),
            creatable("typo", 1, 1).with_configs(vec![config("retenton.ms", Some("1"))]),
            creatable("bad name", 1, 1),
            creatable("fine", -1, 2),
        ]);
        let response = create(&broker, 4, request).await;
        let answered: Vec<&str> = response.topics.iter().map(|t| &*t.name.0).collect();
        assert_eq!(
            answered,
            vec!["twice", "orders", "nulls", "wide", "typo", "bad name", "fine"]
        );
        let code = |name| result(&response, name).error_code;
        assert_eq!(code("twice"), ResponseError::InvalidRequest.code());
        assert_eq!(code("orders"), ResponseError::TopicAlreadyExists.code());
        assert_eq!(code("nulls"), ResponseError::InvalidConfig.code());
        assert_eq!(code("wide"), ResponseError::InvalidReplicationFactor.code());
        assert_eq!(code("typo"), ResponseError::InvalidConfig.code());
        assert_eq!(
            code("bad name"),
            ResponseError::InvalidTopicException.code()
        );
        assert_eq!(code("fine"), 0);
        assert!(result(&response, "wide").error_message.is_some());
        let image = broker.ctx.metadata.current();
        assert!(image.topic_by_name("twice").is_none());
        assert_eq!(
            image.topic_by_name("fine").map(|t| t.partitions.len()),
            Some(4)
        );
    }

    #[tokio::test]
    async fn validate_only_creates_nothing() {
        let c = cluster();
        let (broker, _stop) = with_fake_controller(1, &c.records, true).await;
        let request = CreateTopicsRequest::default()
            .with_validate_only(true)
            .with_topics(vec![creatable("dry", 2, 2)]);
        let response = create(&broker, 5, request).await;
        let dry = result(&response, "dry");
        assert_eq!(
            (dry.error_code, dry.num_partitions, dry.replication_factor),
            (0, 2, 2)
        );
        assert!(broker.ctx.metadata.current().topic_by_name("dry").is_none());
    }

    #[tokio::test]
    async fn an_unreachable_controller_answers_not_controller() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let request = CreateTopicsRequest::default().with_topics(vec![
            creatable("lost", 1, 1),
            creatable("dup", 1, 1),
            creatable("dup", 1, 1),
        ]);
        let response = create(&broker, 2, request).await;
        assert_eq!(
            result(&response, "lost").error_code,
            ResponseError::NotController.code()
        );
        assert_eq!(
            result(&response, "dup").error_code,
            ResponseError::InvalidRequest.code()
        );
    }

    #[tokio::test]
    async fn a_lagging_image_delays_the_answer_but_not_the_success() {
        let c = cluster();
        let (broker, _stop) = with_fake_controller(1, &c.records, false).await;
        let started = std::time::Instant::now();
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(0)
            .with_topics(vec![creatable("slow", 1, 1)]);
        let response = create(&broker, 7, request).await;
        assert_eq!(result(&response, "slow").error_code, 0);
        assert!(started.elapsed() >= propagation_wait(0));
    }
}
