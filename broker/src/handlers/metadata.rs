//! Metadata (key 3): the brokers, topics and partitions a client needs to route its requests, read from
//! one `MetadataImage` so every answer is consistent with itself. Named unknown topics are auto-created
//! through the controller when both the broker (`auto_create_topics`) and the request allow it.
//!
//! What must stay true:
//! - Every broker named as a partition leader is listed in `brokers` with its endpoint on the listener the
//!   client connected on: a leader that is unregistered, fenced or lacks that listener is reported as -1
//!   (LEADER_NOT_AVAILABLE, or LISTENER_NOT_FOUND from v6), never as an id the client cannot reach.
//! - A leader whose Kafka listener refused this broker's replica fetcher (its process is gone, the
//!   controller has not fenced it yet) is reported as -1 (LEADER_NOT_AVAILABLE) too: clients then keep
//!   asking for metadata instead of waiting out their refresh interval with a dead leader
//!   (librdkafka re-queries a known leader once a second). Only a refused connection counts, and
//!   only for the registration that refused it.
//! - Leader epochs are the image's, leaderless partitions included, so clients never see one go back.
//! - `controller_id` names a listed broker (KIP-590: brokers forward admin requests to the controller),
//!   so admin clients always have somewhere to send CreateTopics and DeleteTopics.
//! - Answering never waits long: an auto-creation is bounded, and the answer then comes from the image
//!   as it is; clients retry a topic reported LEADER_NOT_AVAILABLE.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chronik_metadata::acl::{AclOperation, ResourceType};
use chronik_metadata::topic_name::{is_internal_topic, validate_topic_name};
use chronik_metadata::{BrokerId, MetadataImage, PartitionRegistration, TopicImage};
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId as KafkaBrokerId, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;
use uuid::Uuid;

use super::brokers::{controller_id, live_brokers, NodeEndpoint};
use super::{BrokerContext, RequestContext};

/// Kafka's answer without an authorizer, when a client asks: every operation a topic supports (READ,
/// WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS as a bit field).
#[cfg(test)]
pub(crate) const TOPIC_AUTHORIZED_OPERATIONS: i32 = 3576;

/// How long a Metadata request waits for the controller to create topics it named.
const AUTO_CREATE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long it then waits for the local image to have them, so the first answer usually does.
const AUTO_CREATE_PROPAGATION_WAIT: Duration = Duration::from_millis(500);

/// A topic the request asks about.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    Name(String),
    /// v12+: looked up by id, the name left null.
    Id(Uuid),
    /// Neither a name nor (in a version that allows it) an id.
    Malformed,
}

/// The topics asked for, each once, in request order; `None` means every topic.
fn wanted_topics(request: &MetadataRequest, version: i16) -> Option<Vec<Wanted>> {
    let topics = request.topics.as_ref()?;
    // v0 has no null array: an empty one means "all topics" there, and "none" from v1 on.
    if version == 0 && topics.is_empty() {
        return None;
    }
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    let mut wanted = Vec::with_capacity(topics.len());
    for topic in topics {
        if version >= 12 && !topic.topic_id.is_nil() {
            if ids.insert(topic.topic_id) {
                wanted.push(Wanted::Id(topic.topic_id));
            }
        } else if let Some(name) = &topic.name {
            if names.insert(name.0.to_string()) {
                wanted.push(Wanted::Name(name.0.to_string()));
            }
        } else {
            wanted.push(Wanted::Malformed);
        }
    }
    Some(wanted)
}

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: MetadataRequest,
) -> MetadataResponse {
    let wanted = wanted_topics(&request, rc.version);
    let mut image = ctx.metadata.current();

    // Kafka's handleTopicMetadataRequest: a topic is listed only with DESCRIBE on it, and
    // auto-created only with CREATE on the cluster or on it.
    let may_describe = |name: &str| ctx.authorize_topic(rc, AclOperation::Describe, name);
    let mut create_denied = HashSet::new();
    let mut auto_created = HashMap::new();
    if ctx.auto_create_topics && request.allow_auto_topic_creation {
        let may_create_any = ctx.authorize_cluster(rc, AclOperation::Create);
        let missing: Vec<String> = wanted
            .iter()
            .flatten()
            .filter_map(|w| match w {
                Wanted::Name(name) => Some(name),
                _ => None,
            })
            .filter(|name| may_auto_create(&image, name) && may_describe(name))
            .filter(|name| {
                let may_create =
                    may_create_any || ctx.authorize_topic(rc, AclOperation::Create, name);
                if !may_create {
                    create_denied.insert(name.to_string());
                }
                may_create
            })
            .cloned()
            .collect();
        if !missing.is_empty() {
            auto_created = auto_create_topics(ctx, missing).await;
            image = ctx.metadata.current();
        }
    }

    let include_topic_operations = request.include_topic_authorized_operations;
    let lost = ctx.replicas.lost_leaders(&image);
    let describe = |topic: &TopicImage| {
        let mut answer = describe_topic(&image, topic, rc, &lost);
        if include_topic_operations {
            answer.topic_authorized_operations =
                ctx.authorized_operations(rc, ResourceType::Topic, &topic.name);
        }
        answer
    };
    let unauthorized = |name: Option<String>, id: Uuid| {
        MetadataResponseTopic::default()
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(id)
    };
    let topics = match wanted {
        None => image
            .topic_ids
            .values()
            .filter_map(|id| image.topics.get(id).map(|t| &**t))
            .filter(|topic| may_describe(&topic.name))
            .map(describe)
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|w| match w {
                Wanted::Name(name) if !may_describe(&name) || create_denied.contains(&name) => {
                    unauthorized(Some(name), Uuid::nil())
                }
                Wanted::Name(name) => match image.topic_by_name(&name) {
                    Some(topic) => describe(topic),
                    None => {
                        let auto_created = auto_created.get(name.as_str()).copied();
                        let mut answer = unknown_topic(name.clone(), auto_created);
                        // Kafka answers the operations for every named topic, known or not (only
                        // unknown topic ids go without).
                        if include_topic_operations {
                            answer.topic_authorized_operations =
                                ctx.authorized_operations(rc, ResourceType::Topic, &name);
                        }
                        answer
                    }
                },
                Wanted::Id(id) => match image.topics.get(&id) {
                    Some(topic) if !may_describe(&topic.name) => unauthorized(None, id),
                    Some(topic) => describe(topic),
                    None => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_name(None)
                        .with_topic_id(id),
                },
                Wanted::Malformed => MetadataResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    // The name is nullable only from v12.
                    .with_name((rc.version < 12).then(TopicName::default)),
            })
            .collect(),
    };

    let brokers = live_brokers(&image, rc.listener);
    let mut response = MetadataResponse::default()
        .with_controller_id(controller_id(ctx.broker_id, &brokers).into())
        .with_cluster_id(image.cluster_id.clone().map(StrBytes::from_string))
        .with_brokers(brokers.into_iter().map(response_broker).collect())
        .with_topics(topics);
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = ctx.cluster_authorized_operations(rc);
    }
    response
}

/// A named topic Metadata may ask the controller to create: unknown, validly named and not internal
/// (internal topics are created with their own settings by whoever owns them, never with defaults).
fn may_auto_create(image: &MetadataImage, name: &str) -> bool {
    image.topic_by_name(name).is_none()
        && validate_topic_name(name).is_ok()
        && !is_internal_topic(name)
}

/// How asking the controller to auto-create a topic went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoCreate {
    /// Created, or created meanwhile by someone else: it is (or will shortly be) in the image.
    Accepted,
    /// Refused (e.g. fewer live brokers than the default replication factor), or no controller answered.
    Failed,
}

/// Asks the controller to create `names` with the cluster defaults, in one call bounded by
/// `AUTO_CREATE_TIMEOUT`, then waits briefly for the local image to have the created ones.
pub(crate) async fn auto_create_topics(
    ctx: &BrokerContext,
    names: Vec<String>,
) -> HashMap<String, AutoCreate> {
    let request = pb::CreateTopicsRequest {
        topics: names
            .iter()
            .map(|name| pb::CreatableTopic {
                name: name.clone(),
                num_partitions: -1,
                replication_factor: -1,
                configs: Default::default(),
                assignments: Vec::new(),
            })
            .collect(),
        validate_only: false,
    };
    let mut outcomes: HashMap<String, AutoCreate> = HashMap::with_capacity(names.len());
    let mut offset = 0;
    match tokio::time::timeout(AUTO_CREATE_TIMEOUT, ctx.controller.create_topics(request)).await {
        Ok(Ok(reply)) => {
            for result in reply.topics {
                let code = i16::try_from(result.error_code).unwrap_or(-1);
                let outcome = if code == 0 || code == ResponseError::TopicAlreadyExists.code() {
                    offset = offset.max(result.metadata_offset);
                    AutoCreate::Accepted
                } else {
                    // Clients retry the topic, so a lasting cause would log on every retry.
                    debug!(topic = %result.name, code, reason = %result.error_message,
                        "auto-creation refused");
                    AutoCreate::Failed
                };
                outcomes.insert(result.name, outcome);
            }
        }
        Ok(Err(e)) => debug!(error = %e, topics = ?names, "cannot auto-create topics"),
        Err(_) => debug!(
            topics = ?names,
            timeout_ms = AUTO_CREATE_TIMEOUT.as_millis(),
            "auto-creation did not finish in time"
        ),
    }
    for name in names {
        outcomes.entry(name).or_insert(AutoCreate::Failed);
    }
    if offset > 0 {
        // A lagging image only means the first answer still says LEADER_NOT_AVAILABLE.
        let _ = ctx
            .metadata
            .wait_for_offset(offset, AUTO_CREATE_PROPAGATION_WAIT)
            .await;
    }
    outcomes
}

/// The answer for a named topic the image does not have.
fn unknown_topic(name: String, auto_created: Option<AutoCreate>) -> MetadataResponseTopic {
    let error = if validate_topic_name(&name).is_err() {
        ResponseError::InvalidTopicException
    } else if auto_created == Some(AutoCreate::Accepted) {
        // Being created: a retriable error every client waits out.
        ResponseError::LeaderNotAvailable
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_is_internal(is_internal_topic(&name))
        .with_name(Some(TopicName(StrBytes::from_string(name))))
}

fn describe_topic(
    image: &MetadataImage,
    topic: &TopicImage,
    rc: &RequestContext<'_>,
    lost: &HashSet<BrokerId>,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| describe_partition(image, index as i32, p, rc, lost))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
}

fn describe_partition(
    image: &MetadataImage,
    index: i32,
    p: &PartitionRegistration,
    rc: &RequestContext<'_>,
    lost: &HashSet<BrokerId>,
) -> MetadataResponsePartition {
    let (error, leader) = match live_leader(image, p, rc.listener) {
        Ok(leader) if lost.contains(&leader) => (ResponseError::LeaderNotAvailable.code(), -1),
        Ok(leader) => (0, leader),
        Err(LeaderUnavailable::NotLive) => (ResponseError::LeaderNotAvailable.code(), -1),
        Err(LeaderUnavailable::NoListener) if rc.version >= 6 => {
            (ResponseError::ListenerNotFound.code(), -1)
        }
        Err(LeaderUnavailable::NoListener) => (ResponseError::LeaderNotAvailable.code(), -1),
    };
    // Kafka's KRaft brokers list replicas and ISR as they are and name the unreachable ones in
    // `offline_replicas`, rather than filtering them out with REPLICA_NOT_AVAILABLE.
    let offline: Vec<KafkaBrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|&id| !is_reachable(image, id, rc.listener))
        .map(Into::into)
        .collect();
    MetadataResponsePartition::default()
        .with_error_code(error)
        .with_partition_index(index)
        .with_leader_id(leader.into())
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(p.replicas.iter().copied().map(Into::into).collect())
        .with_isr_nodes(p.isr.iter().copied().map(Into::into).collect())
        .with_offline_replicas(offline)
}

enum LeaderUnavailable {
    /// No leader, or one that is unregistered or fenced.
    NotLive,
    /// A live leader without an endpoint on the client's listener.
    NoListener,
}

fn live_leader(
    image: &MetadataImage,
    p: &PartitionRegistration,
    listener: &str,
) -> Result<BrokerId, LeaderUnavailable> {
    let broker = image
        .brokers
        .get(&p.leader)
        .filter(|b| p.has_leader() && !b.fenced)
        .ok_or(LeaderUnavailable::NotLive)?;
    broker
        .endpoint(Some(listener))
        .map(|_| p.leader)
        .ok_or(LeaderUnavailable::NoListener)
}

fn is_reachable(image: &MetadataImage, broker_id: BrokerId, listener: &str) -> bool {
    image
        .brokers
        .get(&broker_id)
        .is_some_and(|b| !b.fenced && b.endpoint(Some(listener)).is_some())
}

fn response_broker(b: NodeEndpoint) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(b.node_id.into())
        .with_host(StrBytes::from_string(b.host))
        .with_port(b.port)
        .with_rack(b.rack.map(StrBytes::from_string))
}

#[cfg(test)]
pub(crate) mod tests {

    use chronik_metadata::records::{ConfigResource, PartitionChangeRecord};
    use chronik_metadata::Record;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    use super::*;
    use crate::handlers::brokers::CLUSTER_AUTHORIZED_OPERATIONS;

    use crate::handlers::create_topics::tests::with_fake_controller;
    use crate::handlers::test_support::*;
    use crate::replica::DROPPED_LEADER_WINDOW;

    fn ids(nodes: &[KafkaBrokerId]) -> Vec<i32> {
        nodes.iter().map(|n| n.0).collect()
    }

    fn named(names: &[&str]) -> Option<Vec<MetadataRequestTopic>> {
        Some(
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string((*n).to_owned()))))
                })
                .collect(),
        )
    }

    fn names(response: &MetadataResponse) -> Vec<String> {
        response
            .topics
            .iter()
            .map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default())
            .collect()
    }

    fn topic_of<'a>(response: &'a MetadataResponse, name: &str) -> &'a MetadataResponseTopic {
        response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| &*n.0 == name))
            .unwrap_or_else(|| panic!("{name} is in the answer"))
    }

    async fn ask(
        broker: &TestBroker,
        version: i16,
        listener: &str,
        request: MetadataRequest,
    ) -> MetadataResponse {
        let response = handle(&broker.ctx, &broker.rc(version, listener), request).await;
        assert_encodes(&response, version);
        response
    }

    #[tokio::test]
    async fn v0_empty_list_and_v1_null_list_mean_all_topics_internal_ones_flagged() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let all = vec!["__consumer_offsets", "audit", "orders"];

        let v0 = ask(
            &broker,
            0,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await;
        assert_eq!(names(&v0), all);
        let v1 = ask(
            &broker,
            1,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(None),
        )
        .await;
        assert_eq!(names(&v1), all);
        assert!(topic_of(&v1, "__consumer_offsets").is_internal);
        assert!(!topic_of(&v1, "orders").is_internal);
        assert_eq!(v1.controller_id.0, 1);
    }

    #[tokio::test]
    async fn v1_empty_list_means_no_topics_but_still_the_brokers() {
        let c = cluster();
        let broker = TestBroker::new(2, &c.records);
        let response = ask(
            &broker,
            9,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await;
        assert!(response.topics.is_empty());
        let ids: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(ids, vec![1, 2], "the fenced broker 3 is not listed");
        assert_eq!(
            response.controller_id.0, 2,
            "this broker stands in for the controller"
        );
        assert_eq!(response.cluster_id.as_deref(), Some(CLUSTER_ID));
    }

    #[tokio::test]
    async fn brokers_are_listed_with_the_endpoint_of_the_listener_asked_on() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let request = || MetadataRequest::default().with_topics(Some(vec![]));
        let plain = ask(&broker, 9, "PLAINTEXT", request()).await;
        let first = &plain.brokers[0];
        assert_eq!(
            (first.host.to_string(), first.port, first.rack.as_deref()),
            ("broker1.example".to_owned(), 9091, Some("rack-a"))
        );
        let internal = ask(&broker, 9, "INTERNAL", request()).await;
        let hosts: Vec<(String, i32)> = internal
            .brokers
            .iter()
            .map(|b| (b.host.to_string(), b.port))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("10.0.0.1".to_owned(), 10091),
                ("10.0.0.2".to_owned(), 10092)
            ]
        );
        let nowhere = ask(&broker, 9, "SSL", request()).await;
        assert!(nowhere.brokers.is_empty());
        assert_eq!(nowhere.controller_id.0, -1);
    }

    #[tokio::test]
    async fn partitions_carry_leader_epoch_replicas_isr_and_offline_replicas() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let response = ask(
            &broker,
            9,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(named(&["orders", "audit"])),
        )
        .await;
        assert_eq!(names(&response), vec!["orders", "audit"], "request order");

        let orders = topic_of(&response, "orders");
        assert_eq!(orders.error_code, 0);
        assert_eq!(orders.topic_id, c.orders);
        let p0 = &orders.partitions[0];
        assert_eq!((p0.partition_index, p0.error_code), (0, 0));
        assert_eq!((p0.leader_id.0, p0.leader_epoch), (1, 0));
        let p1 = &orders.partitions[1];
        assert_eq!(p1.partition_index, 1);
        assert_eq!(p1.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(p1.leader_id.0, -1);
        assert_eq!(
            p1.leader_epoch, 1,
            "a leaderless partition still reports its epoch"
        );
        assert_eq!(ids(&p1.isr_nodes), vec![2]);

        let audit = &topic_of(&response, "audit").partitions[0];
        assert_eq!(audit.error_code, 0, "a fenced follower is not an error");
        assert_eq!(ids(&audit.replica_nodes), vec![1, 3]);
        assert_eq!(ids(&audit.isr_nodes), vec![1, 3]);
        assert_eq!(ids(&audit.offline_replicas), vec![3]);
    }

    /// Broker 2 of `cluster()`, a follower of `orders`, with its replicas set up from the image.
    fn follower_of_orders() -> TestBroker {
        let broker = TestBroker::new(2, &cluster().records);
        broker
            .ctx
            .replicas
            .apply_metadata(&broker.ctx.metadata.current(), false);
        broker
    }

    /// The error code and leader its Metadata answers for `orders` partition 0.
    async fn orders_p0_leader(broker: &TestBroker) -> (i16, i32) {
        let request = MetadataRequest::default().with_topics(named(&["orders"]));
        let response = ask(broker, 9, "PLAINTEXT", request).await;
        let p = &topic_of(&response, "orders").partitions[0];
        (p.error_code, p.leader_id.0)
    }

    /// Issue #12: a leader whose listener refused this broker's replica fetcher, or whose
    /// serving fetch connection just closed, is gone to it; until the controller fences it, its
    /// partitions are answered as leaderless (clients keep asking) rather than named (librdkafka
    /// would wait a second before asking again). A new registration of that broker is not judged by
    /// the old refusal.
    #[tokio::test(start_paused = true)]
    async fn a_leader_that_the_replica_fetcher_lost_is_not_named() {
        let broker = follower_of_orders();
        assert_eq!(orders_p0_leader(&broker).await, (0, 1));

        broker.ctx.replicas.note_leader_refused(1);
        assert_eq!(
            orders_p0_leader(&broker).await,
            (ResponseError::LeaderNotAvailable.code(), -1)
        );
        broker.ctx.replicas.note_leader_reachable(1);
        assert_eq!(orders_p0_leader(&broker).await, (0, 1));

        // A serving fetch connection closed: leaderless at once, before the reconnect says
        // more; a refusal keeps it so, while a leader that neither refused nor accepted within the
        // window (a network fault) is named again.
        broker.ctx.replicas.note_leader_dropped(1);
        assert_eq!(
            orders_p0_leader(&broker).await,
            (ResponseError::LeaderNotAvailable.code(), -1)
        );
        tokio::time::advance(DROPPED_LEADER_WINDOW).await;
        assert_eq!(orders_p0_leader(&broker).await, (0, 1));
        broker.ctx.replicas.note_leader_dropped(1);
        broker.ctx.replicas.note_leader_refused(1);
        tokio::time::advance(DROPPED_LEADER_WINDOW).await;
        assert_eq!(
            orders_p0_leader(&broker).await,
            (ResponseError::LeaderNotAvailable.code(), -1)
        );
        broker.ctx.replicas.note_leader_reachable(1);

        // Refused under the current registration, then broker 1 registers anew: the refusal was
        // another incarnation's.
        broker.ctx.replicas.note_leader_refused(1);
        let mut image = (*broker.ctx.metadata.current()).clone();
        let mut reregistered = image.brokers[&1].clone();
        reregistered.broker_epoch += 100;
        image.brokers.insert(1, reregistered);
        assert!(broker.ctx.replicas.lost_leaders(&image).is_empty());
    }

    /// Issue #12: the kernel knows a leader's end of the fetch connection closed before the fetcher
    /// task runs; a client asking in that moment already gets the partition as leaderless.
    #[tokio::test]
    async fn a_leader_whose_fetch_connection_closed_is_not_named_before_the_fetcher_runs() {
        use tokio::io::AsyncWriteExt;
        let broker = follower_of_orders();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fetcher_side = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (leader_side, _) = listener.accept().await.unwrap();
        let probe = broker
            .ctx
            .replicas
            .probe_leader_connection(1, &fetcher_side)
            .expect("probe");
        assert_eq!(
            orders_p0_leader(&broker).await,
            (0, 1),
            "an open connection is no evidence"
        );

        // The leader's process died right after sending a response the fetcher, busy appending the
        // last one, has not read yet: the end of the stream sits behind those bytes.
        let mut leader_side = leader_side;
        leader_side
            .write_all(b"an unread fetch response")
            .await
            .unwrap();
        drop(leader_side);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while orders_p0_leader(&broker).await != (ResponseError::LeaderNotAvailable.code(), -1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the closed connection was not seen"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(probe); // the fetcher dropped the connection (and notes what it learns itself)
        assert_eq!(orders_p0_leader(&broker).await, (0, 1));
        drop(fetcher_side);
    }

    #[tokio::test]
    async fn a_fenced_or_unreachable_leader_is_never_named() {
        let mut c = cluster();
        // 3 leads `audit` but is fenced.
        c.records
            .push(Record::PartitionChange(PartitionChangeRecord {
                topic_id: c.audit,
                partition: 0,
                leader: Some(3),
                ..Default::default()
            }));
        let broker = TestBroker::new(1, &c.records);
        let request = || MetadataRequest::default().with_topics(named(&["audit", "orders"]));
        let response = ask(&broker, 9, "PLAINTEXT", request()).await;
        let p = &topic_of(&response, "audit").partitions[0];
        assert_eq!(
            (p.error_code, p.leader_id.0, p.leader_epoch),
            (ResponseError::LeaderNotAvailable.code(), -1, 1)
        );
        let listed: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
        for t in &response.topics {
            for p in &t.partitions {
                assert!(
                    p.leader_id.0 == -1 || listed.contains(&p.leader_id.0),
                    "leader {} is listed",
                    p.leader_id.0
                );
            }
        }

        // A live leader without the listener: LISTENER_NOT_FOUND from v6, LEADER_NOT_AVAILABLE before.
        let v9 = ask(&broker, 9, "SSL", request()).await;
        let p0 = &topic_of(&v9, "orders").partitions[0];
        assert_eq!(
            (p0.error_code, p0.leader_id.0),
            (ResponseError::ListenerNotFound.code(), -1)
        );
        let v5 = ask(&broker, 5, "SSL", request()).await;
        assert_eq!(
            topic_of(&v5, "orders").partitions[0].error_code,
            ResponseError::LeaderNotAvailable.code()
        );
    }

    #[tokio::test]
    async fn unknown_and_invalid_topics_without_auto_creation() {
        let c = cluster();
        let mut broker = TestBroker::new(1, &c.records);
        broker.ctx.auto_create_topics = true;
        let response = ask(
            &broker,
            9,
            "PLAINTEXT",
            MetadataRequest::default()
                .with_topics(named(&["nope", "bad name", "orders", "nope"]))
                .with_allow_auto_topic_creation(false),
        )
        .await;
        assert_eq!(
            names(&response),
            vec!["nope", "bad name", "orders"],
            "deduplicated"
        );
        assert_eq!(
            topic_of(&response, "nope").error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(topic_of(&response, "nope").topic_id, Uuid::nil());
        assert_eq!(
            topic_of(&response, "bad name").error_code,
            ResponseError::InvalidTopicException.code()
        );
        assert_eq!(topic_of(&response, "orders").error_code, 0);
    }

    #[tokio::test]
    async fn auto_creation_with_no_controller_answers_unknown_topic_in_bounded_time() {
        let c = cluster();
        let mut broker = TestBroker::new(1, &c.records);
        broker.ctx.auto_create_topics = true;
        let started = std::time::Instant::now();
        // v3 has no AllowAutoTopicCreation field: it is implied.
        let response = ask(
            &broker,
            3,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(named(&[
                "fresh",
                "bad/name",
                "__transaction_state",
            ])),
        )
        .await;
        assert!(started.elapsed() < AUTO_CREATE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(
            topic_of(&response, "fresh").error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            topic_of(&response, "bad/name").error_code,
            ResponseError::InvalidTopicException.code()
        );
        let internal = topic_of(&response, "__transaction_state");
        assert_eq!(
            internal.error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(internal.is_internal);
    }

    #[tokio::test]
    async fn auto_created_topics_are_answered_once_the_image_has_them() {
        let mut c = cluster();
        c.records.push(Record::Config {
            resource: ConfigResource::Cluster,
            key: "default.replication.factor".into(),
            value: Some("2".into()),
        });
        let (mut broker, _stop) = with_fake_controller(1, &c.records, true).await;
        broker.ctx.auto_create_topics = true;
        let response = ask(
            &broker,
            9,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(named(&["fresh", "orders"])),
        )
        .await;
        let fresh = topic_of(&response, "fresh");
        assert_eq!(fresh.error_code, 0);
        assert_eq!(fresh.partitions.len(), 1);
        assert_eq!(fresh.partitions[0].replica_nodes.len(), 2);
        let image = broker.ctx.metadata.current();
        assert_eq!(
            image.topic_by_name("fresh").map(|t| t.id),
            Some(fresh.topic_id)
        );

        let refused = ask(
            &broker,
            9,
            "PLAINTEXT",
            MetadataRequest::default()
                .with_topics(named(&["other"]))
                .with_allow_auto_topic_creation(false),
        )
        .await;
        assert_eq!(
            topic_of(&refused, "other").error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(broker
            .ctx
            .metadata
            .current()
            .topic_by_name("other")
            .is_none());
    }

    #[tokio::test]
    async fn auto_creation_refused_or_not_yet_visible() {
        // The static default replication factor (3) exceeds the two live brokers.
        let c = cluster();
        let (mut broker, _stop) = with_fake_controller(1, &c.records, true).await;
        broker.ctx.auto_create_topics = true;
        let request = || MetadataRequest::default().with_topics(named(&["fresh"]));
        let response = ask(&broker, 12, "PLAINTEXT", request()).await;
        assert_eq!(
            topic_of(&response, "fresh").error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );

        let mut c = cluster();
        c.records.push(Record::Config {
            resource: ConfigResource::Cluster,
            key: "default.replication.factor".into(),
            value: Some("1".into()),
        });
        let (mut broker, _stop) = with_fake_controller(1, &c.records, false).await;
        broker.ctx.auto_create_topics = true;
        let response = ask(&broker, 12, "PLAINTEXT", request()).await;
        assert_eq!(
            topic_of(&response, "fresh").error_code,
            ResponseError::LeaderNotAvailable.code(),
            "created, but not yet in this broker's image"
        );
        // Asking again finds it already created: still on its way, not unknown.
        let again = ask(&broker, 12, "PLAINTEXT", request()).await;
        assert_eq!(
            topic_of(&again, "fresh").error_code,
            ResponseError::LeaderNotAvailable.code()
        );
    }

    #[tokio::test]
    async fn v10_has_topic_ids_and_v12_looks_topics_up_by_id() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let v10 = ask(
            &broker,
            10,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(None),
        )
        .await;
        assert_eq!(topic_of(&v10, "orders").topic_id, c.orders);
        assert_eq!(topic_of(&v10, "__consumer_offsets").topic_id, c.offsets);

        let unknown = Uuid::new_v4();
        let by_id = |id| {
            MetadataRequestTopic::default()
                .with_topic_id(id)
                .with_name(None)
        };
        let v12 = ask(
            &broker,
            12,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(Some(vec![
                by_id(c.audit),
                by_id(unknown),
                by_id(c.audit),
                MetadataRequestTopic::default().with_name(None),
            ])),
        )
        .await;
        assert_eq!(v12.topics.len(), 3);
        assert_eq!(
            v12.topics[0].name.as_ref().map(|n| n.0.to_string()),
            Some("audit".into())
        );
        assert_eq!(v12.topics[0].partitions.len(), 1);
        assert_eq!(
            v12.topics[1].error_code,
            ResponseError::UnknownTopicId.code()
        );
        assert_eq!(v12.topics[1].topic_id, unknown);
        assert_eq!(v12.topics[1].name, None);
        assert_eq!(
            v12.topics[2].error_code,
            ResponseError::InvalidRequest.code()
        );
    }

    #[tokio::test]
    async fn authorized_operations_are_reported_only_when_asked() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let plain = ask(
            &broker,
            10,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(None),
        )
        .await;
        assert_eq!(
            plain.cluster_authorized_operations,
            AUTHORIZED_OPERATIONS_OMITTED
        );
        assert!(plain
            .topics
            .iter()
            .all(|t| t.topic_authorized_operations == AUTHORIZED_OPERATIONS_OMITTED));
        let asked = ask(
            &broker,
            10,
            "PLAINTEXT",
            MetadataRequest::default()
                .with_topics(None)
                .with_include_cluster_authorized_operations(true)
                .with_include_topic_authorized_operations(true),
        )
        .await;
        assert_eq!(
            asked.cluster_authorized_operations,
            CLUSTER_AUTHORIZED_OPERATIONS
        );
        assert_eq!(
            topic_of(&asked, "orders").topic_authorized_operations,
            TOPIC_AUTHORIZED_OPERATIONS
        );
        // Named topics get them whether they exist or not, as in Kafka's handleTopicMetadataRequest.
        let named_topics = ask(
            &broker,
            10,
            "PLAINTEXT",
            MetadataRequest::default()
                .with_topics(named(&["orders", "missing", "bad name"]))
                .with_include_topic_authorized_operations(true),
        )
        .await;
        for name in ["orders", "missing", "bad name"] {
            assert_eq!(
                topic_of(&named_topics, name).topic_authorized_operations,
                TOPIC_AUTHORIZED_OPERATIONS,
                "{name}"
            );
        }
        assert_ne!(topic_of(&named_topics, "missing").error_code, 0);
    }

    #[tokio::test]
    async fn every_served_version_encodes() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        for version in 0..=12 {
            let request = MetadataRequest::default().with_topics(named(&["orders", "missing"]));
            let response = ask(&broker, version, "PLAINTEXT", request).await;
            assert_eq!(response.topics.len(), 2, "v{version}");
        }
    }

    #[test]
    fn the_authorized_operation_bit_fields_match_kafka() {
        let bits = |ops: &[i32]| ops.iter().fold(0, |acc, op| acc | (1 << op));
        // AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
        // CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12,
        // CREATE_TOKENS 13, DESCRIBE_TOKENS 14.
        assert_eq!(
            TOPIC_AUTHORIZED_OPERATIONS,
            bits(&[3, 4, 5, 6, 7, 8, 10, 11])
        );
        assert_eq!(
            CLUSTER_AUTHORIZED_OPERATIONS,
            bits(&[5, 7, 8, 9, 10, 11, 12])
        );
    }

    #[tokio::test]
    async fn with_the_authorizer_topics_need_describe_and_report_what_is_allowed() {
        use chronik_metadata::acl::{AclBinding, AclPermissionType, PatternType};
        let c = cluster();
        let mut records = c.records.clone();
        for (name, operation, permission) in [
            ("orders", AclOperation::Write, AclPermissionType::Deny),
            ("audit", AclOperation::Read, AclPermissionType::Allow),
        ] {
            records.push(chronik_metadata::Record::AccessControlEntry {
                id: Uuid::new_v4(),
                acl: AclBinding {
                    resource_type: ResourceType::Topic,
                    resource_name: name.into(),
                    pattern_type: PatternType::Literal,
                    principal: "User:ANONYMOUS".into(),
                    host: "*".into(),
                    operation,
                    permission,
                },
            });
        }
        let mut broker = TestBroker::new(1, &records);
        broker.ctx.authorizer = Some(crate::authorizer::Authorizer {
            allow_everyone_if_no_acl_found: true,
            ..Default::default()
        });
        let all = ask(
            &broker,
            10,
            "PLAINTEXT",
            MetadataRequest::default()
                .with_topics(None)
                .with_include_topic_authorized_operations(true)
                .with_include_cluster_authorized_operations(true),
        )
        .await;
        let listed: Vec<String> = all
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        // `orders` has ACLs and none allows DESCRIBE: left out of "all topics".
        assert!(!listed.contains(&"orders".to_owned()), "{listed:?}");
        assert!(listed.contains(&"audit".to_owned()));
        // READ implies DESCRIBE; nothing else is allowed on `audit`.
        assert_eq!(
            topic_of(&all, "audit").topic_authorized_operations,
            crate::authorizer::to_bit_field([AclOperation::Read, AclOperation::Describe])
        );
        assert_eq!(
            all.cluster_authorized_operations,
            CLUSTER_AUTHORIZED_OPERATIONS
        );
        let named = ask(
            &broker,
            10,
            "PLAINTEXT",
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))])),
        )
        .await;
        assert_eq!(
            topic_of(&named, "orders").error_code,
            ResponseError::TopicAuthorizationFailed.code()
        );
    }
}
