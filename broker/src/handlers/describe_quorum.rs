//! DescribeQuorum (key 55, KIP-595): the metadata quorum's replication state, forwarded to the
//! active controller as Kafka's brokers forward it. `kafka-metadata-quorum.sh describe --status`
//! and `--replication`, and the Admin client's `describeMetadataQuorum`, use it: the leader and
//! its epoch (the Raft term), the high watermark, each controller (a voter) and each broker (an
//! observer: Chronik's brokers follow the metadata log through the controller's watch stream) with
//! its log end offset and when it last fetched and was last caught up. Offsets are the controller
//! log's indices made exclusive (the next one after the last entry), as Kafka's are.
//!
//! As Kafka's `KafkaRaftClient.handleDescribeQuorumRequest`: a request for anything but partition 0
//! of `__cluster_metadata` gets UNKNOWN_TOPIC_OR_PARTITION on what it named; DESCRIBE on the cluster
//! is needed. v2 adds each voter's listeners (the controller's gRPC address, as `CONTROLLER`) and
//! directory id (Chronik reports none: the zero UUID).

use chronik_metadata::acl::AclOperation;
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{controller_failure, error_message};
use super::{BrokerContext, RequestContext};

/// KRaft's metadata log, the one partition DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// The listener name a controller's address is reported under.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    if !ctx.authorize_cluster(rc, AclOperation::Describe) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        return DescribeQuorumResponse::default().with_error_code(code);
    }
    if !names_the_metadata_partition(&request) {
        return partition_errors(&request, ResponseError::UnknownTopicOrPartition);
    }
    match ctx.controller.describe_quorum().await {
        Ok(quorum) => describe(&quorum, rc.version),
        Err(e) => {
            debug!(error = %e, "DescribeQuorum not answered by the active controller");
            let (code, message) = controller_failure(&e);
            // The message field is v2's.
            let message = if rc.version >= 2 {
                message
            } else {
                String::new()
            };
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(error_message(code, message))
        }
    }
}

fn names_the_metadata_partition(request: &DescribeQuorumRequest) -> bool {
    matches!(request.topics.as_slice(), [topic]
        if topic.topic_name.as_str() == METADATA_TOPIC
            && matches!(topic.partitions.as_slice(), [p] if p.partition_index == 0))
}

/// `error` on every partition the request named (Kafka's `getPartitionLevelErrorResponse`).
fn partition_errors(
    request: &DescribeQuorumRequest,
    error: ResponseError,
) -> DescribeQuorumResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.code())
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

/// A controller or broker id as Kafka's `int32` node id.
fn node_id(id: i64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(i32::MAX))
}

/// One replica; the times are v1's fields.
fn replica(r: &pb::QuorumReplica, version: i16) -> ReplicaState {
    let state = ReplicaState::default()
        .with_replica_id(node_id(r.replica_id))
        .with_log_end_offset(r.log_end_offset);
    if version < 1 {
        return state;
    }
    state
        .with_last_fetch_timestamp(r.last_fetch_timestamp)
        .with_last_caught_up_timestamp(r.last_caught_up_timestamp)
}

/// A `host:port` address as a listener; `None` if it is not one.
fn listener(address: &str) -> Option<Listener> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(
        Listener::default()
            .with_name(StrBytes::from_static_str(CONTROLLER_LISTENER))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port.parse().ok()?),
    )
}

/// The controller's answer in `version`'s shape (v1 adds the times, v2 the voters' listeners).
fn describe(quorum: &pb::DescribeQuorumResponse, version: i16) -> DescribeQuorumResponse {
    let replicas = |list: &[pb::QuorumReplica]| list.iter().map(|r| replica(r, version)).collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(node_id(quorum.leader_id))
        .with_leader_epoch(i32::try_from(quorum.leader_epoch).unwrap_or(i32::MAX))
        .with_high_watermark(quorum.high_watermark)
        .with_current_voters(replicas(&quorum.voters))
        .with_observers(replicas(&quorum.observers));
    let nodes = if version < 2 {
        Vec::new()
    } else {
        quorum
            .nodes
            .iter()
            .map(|n| {
                Node::default()
                    .with_node_id(node_id(n.node_id))
                    .with_listeners(listener(&n.address).into_iter().collect())
            })
            .collect()
    };
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        .with_nodes(nodes)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::describe_quorum_request;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            describe_quorum_request::PartitionData::default()
                                .with_partition_index(p)
                        })
                        .collect(),
                ),
        ])
    }

    #[test]
    fn only_partition_0_of_the_metadata_log_is_described() {
        assert!(names_the_metadata_partition(&request(METADATA_TOPIC, &[0])));
        for (topic, partitions) in [
            (METADATA_TOPIC, &[1][..]),
            (METADATA_TOPIC, &[0, 1][..]),
            (METADATA_TOPIC, &[][..]),
            ("orders", &[0][..]),
        ] {
            let asked = request(topic, partitions);
            assert!(
                !names_the_metadata_partition(&asked),
                "{topic} {partitions:?}"
            );
            let answer = partition_errors(&asked, ResponseError::UnknownTopicOrPartition);
            assert_eq!(answer.error_code, 0);
            let codes: Vec<(i32, i16)> = answer.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
                .collect();
            let unknown = ResponseError::UnknownTopicOrPartition.code();
            assert_eq!(
                codes,
                partitions.iter().map(|&p| (p, unknown)).collect::<Vec<_>>()
            );
        }
        assert!(!names_the_metadata_partition(
            &DescribeQuorumRequest::default()
        ));
    }

    /// The controller's view as Kafka's response: one partition, voters and observers as given,
    /// each voter's address as a CONTROLLER listener; every version encodes.
    #[test]
    fn the_controllers_view_is_the_metadata_partition_with_voters_and_observers() {
        let replica = |id, end, fetched, caught_up| pb::QuorumReplica {
            replica_id: id,
            log_end_offset: end,
            last_fetch_timestamp: fetched,
            last_caught_up_timestamp: caught_up,
        };
        let quorum = pb::DescribeQuorumResponse {
            leader_id: 2,
            leader_epoch: 7,
            high_watermark: 120,
            voters: vec![replica(1, 118, 1_000, 900), replica(2, 121, 1_005, 1_005)],
            observers: vec![replica(1, 120, 990, 990)],
            nodes: vec![
                pb::QuorumNode {
                    node_id: 1,
                    address: "10.0.0.1:9093".into(),
                },
                pb::QuorumNode {
                    node_id: 2,
                    address: "[::1]:9094".into(),
                },
            ],
        };
        let answer = describe(&quorum, 2);
        assert_eq!(answer.error_code, 0);
        let [topic] = answer.topics.as_slice() else {
            panic!("one topic: {answer:?}")
        };
        assert_eq!(topic.topic_name.as_str(), METADATA_TOPIC);
        let [p] = topic.partitions.as_slice() else {
            panic!("one partition: {topic:?}")
        };
        assert_eq!(
            (
                p.partition_index,
                p.error_code,
                p.leader_id,
                p.leader_epoch,
                p.high_watermark
            ),
            (0, 0, BrokerId(2), 7, 120)
        );
        let states = |replicas: &[ReplicaState]| -> Vec<(i32, i64, i64, i64)> {
            replicas
                .iter()
                .map(|r| {
                    (
                        r.replica_id.0,
                        r.log_end_offset,
                        r.last_fetch_timestamp,
                        r.last_caught_up_timestamp,
                    )
                })
                .collect()
        };
        assert_eq!(
            states(&p.current_voters),
            [(1, 118, 1_000, 900), (2, 121, 1_005, 1_005)]
        );
        assert_eq!(states(&p.observers), [(1, 120, 990, 990)]);
        let nodes: Vec<(i32, String, String, u16)> = answer
            .nodes
            .iter()
            .flat_map(|n| {
                n.listeners
                    .iter()
                    .map(|l| (n.node_id.0, l.name.to_string(), l.host.to_string(), l.port))
            })
            .collect();
        assert_eq!(
            nodes,
            [
                (1, "CONTROLLER".into(), "10.0.0.1".into(), 9093),
                (2, "CONTROLLER".into(), "::1".into(), 9094)
            ]
        );
        for version in 0..=2 {
            let shaped = describe(&quorum, version);
            shaped
                .encode(&mut BytesMut::new(), version)
                .expect("encodes");
            let voter = &shaped.topics[0].partitions[0].current_voters[0];
            let times = (voter.last_fetch_timestamp, voter.last_caught_up_timestamp);
            if version == 0 {
                assert_eq!(times, (-1, -1), "the times are v1's");
            } else {
                assert_eq!(times, (1_000, 900));
            }
            assert_eq!(
                shaped.nodes.is_empty(),
                version < 2,
                "the listeners are v2's"
            );
        }
    }

    /// DESCRIBE on the cluster: refused before anything reaches the controller.
    #[tokio::test]
    async fn describing_needs_describe_on_the_cluster() {
        let broker = crate::handlers::test_support::broker_with_admin_only_cluster(1);
        let answer = handle(
            &broker.ctx,
            &broker.rc(1, "PLAINTEXT"),
            request(METADATA_TOPIC, &[0]),
        )
        .await;
        assert_eq!(
            answer.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        assert!(answer.topics.is_empty());
    }
}
