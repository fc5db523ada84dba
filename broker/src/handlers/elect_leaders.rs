//! ElectLeaders (key 43): forwarded to the controller quorum (Kafka's `ReplicationControlManager
//! .electLeaders`). PREFERRED moves leadership back to each partition's first replica when it is in
//! sync; UNCLEAN gives a partition without a leader one, from outside the ISR if need be. A null
//! partition list means every partition, and then only partitions whose leader changed, or whose
//! election failed, are listed. The answer is sent once this broker's image has the new leaders
//! (bounded by `timeout_ms`), so clients that refresh their metadata right after see them.

use chronik_metadata::acl::AclOperation;
use std::collections::BTreeMap;

use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{await_local_image, controller_failure, error_message, kafka_code};
use super::{BrokerContext, RequestContext};

/// Kafka's `ElectionType`.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// Per topic, per partition: error code and message.
type Outcomes = BTreeMap<String, BTreeMap<i32, (i16, String)>>;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    if !ctx.authorize_cluster(rc, AclOperation::Alter) {
        // Kafka's handleElectLeaders: the whole request, and (below v1, which has no top-level
        // code) every partition asked for.
        let denied = ResponseError::ClusterAuthorizationFailed.code();
        let results = request
            .topic_partitions
            .iter()
            .flatten()
            .map(|t| {
                ReplicaElectionResult::default()
                    .with_topic(t.topic.clone())
                    .with_partition_result(
                        t.partitions
                            .iter()
                            .map(|&p| {
                                PartitionResult::default()
                                    .with_partition_id(p)
                                    .with_error_code(denied)
                            })
                            .collect(),
                    )
            })
            .collect();
        return ElectLeadersResponse::default()
            .with_error_code(denied)
            .with_replica_election_results(results);
    }
    // v0 has no election type: always preferred.
    let election_type = if rc.version == 0 {
        PREFERRED
    } else {
        request.election_type
    };
    // Each partition once, whatever the request repeats.
    let asked: Option<Outcomes> = request.topic_partitions.as_ref().map(|topics| {
        let mut asked = Outcomes::new();
        for t in topics {
            let partitions = asked.entry(t.topic.0.to_string()).or_default();
            for &p in &t.partitions {
                partitions.insert(p, (0, String::new()));
            }
        }
        asked
    });
    if election_type != PREFERRED && election_type != UNCLEAN {
        let message = format!("Unknown election type {election_type}");
        return respond(
            rc.version,
            fail_all(asked, ResponseError::InvalidRequest.code(), &message),
            ResponseError::InvalidRequest.code(),
        );
    }

    let call = pb::ElectLeadersRequest {
        topics: Vec::new(),
        unclean: election_type == UNCLEAN,
        partitions: asked
            .iter()
            .flatten()
            .map(|(topic, partitions)| pb::ElectPartitions {
                topic: topic.clone(),
                partitions: partitions.keys().copied().collect(),
            })
            .collect(),
    };
    if asked.as_ref().is_some_and(|a| a.is_empty()) {
        return respond(rc.version, Outcomes::new(), 0);
    }
    match ctx.controller.elect_leaders(call).await {
        Ok(reply) => {
            let mut outcomes = Outcomes::new();
            for p in reply.partitions {
                outcomes.entry(p.topic).or_default().insert(
                    p.partition_index,
                    (kafka_code(p.error_code), p.error_message),
                );
            }
            await_local_image(
                ctx,
                reply.metadata_offset,
                request.timeout_ms,
                "elected leaders",
            )
            .await;
            respond(rc.version, outcomes, 0)
        }
        Err(e) => {
            debug!(error = %e, version = rc.version, "ElectLeaders not forwarded");
            let (code, message) = controller_failure(&e);
            respond(rc.version, fail_all(asked, code, &message), code)
        }
    }
}

/// Every asked partition failed with `code` (nothing to list when every partition was asked for).
fn fail_all(asked: Option<Outcomes>, code: i16, message: &str) -> Outcomes {
    let mut outcomes = asked.unwrap_or_default();
    for partitions in outcomes.values_mut() {
        for outcome in partitions.values_mut() {
            *outcome = (code, message.to_owned());
        }
    }
    outcomes
}

/// The response; the top-level error code exists from v1 on.
fn respond(version: i16, outcomes: Outcomes, error_code: i16) -> ElectLeadersResponse {
    let results = outcomes
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partition_result(
                    partitions
                        .into_iter()
                        .map(|(partition, (code, message))| {
                            PartitionResult::default()
                                .with_partition_id(partition)
                                .with_error_code(code)
                                .with_error_message(error_message(code, message))
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(if version >= 1 { error_code } else { 0 })
        .with_replica_election_results(results)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    fn partitions(topic: &str, partitions: &[i32]) -> TopicPartitions {
        TopicPartitions::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(partitions.to_vec())
    }

    #[tokio::test]
    async fn an_unknown_election_type_refuses_every_named_partition() {
        let broker = TestBroker::new(1, &cluster().records);
        let request = ElectLeadersRequest::default()
            .with_election_type(7)
            .with_topic_partitions(Some(vec![partitions("orders", &[0, 1, 1])]));
        let response = handle(&broker.ctx, &broker.rc(2, "PLAINTEXT"), request).await;
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(response.error_code, invalid);
        let results = &response.replica_election_results[0].partition_result;
        assert_eq!(
            results
                .iter()
                .map(|p| (p.partition_id, p.error_code))
                .collect::<Vec<_>>(),
            vec![(0, invalid), (1, invalid)]
        );
        assert_encodes(&response, 2);
    }

    #[tokio::test]
    async fn an_unreachable_controller_fails_each_partition_with_a_retriable_error() {
        let broker = TestBroker::new(1, &cluster().records);
        let request = ElectLeadersRequest::default()
            .with_topic_partitions(Some(vec![partitions("orders", &[0])]));
        let response = handle(&broker.ctx, &broker.rc(0, "PLAINTEXT"), request).await;
        let code = response.replica_election_results[0].partition_result[0].error_code;
        assert_eq!(code, ResponseError::NotController.code());
        assert_encodes(&response, 0);
    }
}
