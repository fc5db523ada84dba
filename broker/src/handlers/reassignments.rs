//! AlterPartitionReassignments (key 45) and ListPartitionReassignments (key 46), forwarded to the
//! controller quorum, which moves the replicas (KIP-455, see the controller's `state::reassignment`).
//! An alteration is answered once it is committed and in this broker's image; the movement itself
//! goes on in the background and ListPartitionReassignments shows it until it completes.
//!
//! What must stay true: every requested partition is answered exactly once; with v1's
//! `allow_replication_factor_change` false a target of another size is refused here (KIP-860) and
//! not forwarded.

use chronik_metadata::acl::AclOperation;
use std::collections::BTreeMap;

use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{controller_failure, error_message, kafka_code, propagation_wait};
use super::{BrokerContext, RequestContext};

/// Per topic, per partition: error code and message.
type Outcomes = BTreeMap<String, BTreeMap<i32, (i16, String)>>;

pub async fn handle_alter(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !ctx.authorize_cluster(rc, AclOperation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let image = ctx.metadata.current();
    let mut outcomes = Outcomes::new();
    let mut forward = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for p in &topic.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let current = image
                .topic_by_name(&name)
                .and_then(|t| t.partitions.get(usize::try_from(p.partition_index).ok()?))
                .map(|p| p.original_replicas().len());
            let refused = match (&target, current) {
                (Some(target), Some(current))
                    if rc.version >= 1
                        && !request.allow_replication_factor_change
                        && target.len() != current =>
                {
                    Some((
                        ResponseError::InvalidReplicationFactor.code(),
                        format!(
                            "The replication factor is changed from {current} to {} but \
                             allowReplicationFactorChange is false",
                            target.len()
                        ),
                    ))
                }
                _ => None,
            };
            outcomes.entry(name.clone()).or_default().insert(
                p.partition_index,
                refused.clone().unwrap_or((0, String::new())),
            );
            if refused.is_none() {
                forward.push(pb::ReassignablePartition {
                    topic: name.clone(),
                    partition_index: p.partition_index,
                    replicas: target.map(|brokers| pb::BrokerList { brokers }),
                });
            }
        }
    }

    let mut top_error = 0;
    if !forward.is_empty() {
        let asked: Vec<(String, i32)> = forward
            .iter()
            .map(|p| (p.topic.clone(), p.partition_index))
            .collect();
        let call = pb::AlterPartitionReassignmentsRequest {
            partitions: forward,
        };
        match ctx.controller.alter_partition_reassignments(call).await {
            Ok(reply) => {
                for r in reply.results {
                    outcomes.entry(r.topic).or_default().insert(
                        r.partition_index,
                        (kafka_code(r.error_code), r.error_message),
                    );
                }
                let wait = propagation_wait(request.timeout_ms);
                if let Err(e) = ctx
                    .metadata
                    .wait_for_offset(reply.metadata_offset, wait)
                    .await
                {
                    debug!(error = %e, "reassignments not yet in the local image");
                }
            }
            Err(e) => {
                debug!(error = %e, version = rc.version, "AlterPartitionReassignments not forwarded");
                let (code, message) = controller_failure(&e);
                top_error = code;
                for (topic, partition) in asked {
                    outcomes
                        .entry(topic)
                        .or_default()
                        .insert(partition, (code, message.clone()));
                }
            }
        }
    }

    let responses = outcomes
        .into_iter()
        .map(|(topic, partitions)| {
            ReassignableTopicResponse::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, (code, message))| {
                            ReassignablePartitionResponse::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                                .with_error_message(error_message(code, message))
                        })
                        .collect(),
                )
        })
        .collect();
    let mut response = AlterPartitionReassignmentsResponse::default()
        .with_error_code(top_error)
        .with_responses(responses);
    if rc.version >= 1 {
        response =
            response.with_allow_replication_factor_change(request.allow_replication_factor_change);
    }
    response
}

pub async fn handle_list(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !ctx.authorize_cluster(rc, AclOperation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let call = pb::ListPartitionReassignmentsRequest {
        partitions: request
            .topics
            .iter()
            .flatten()
            .map(|t| pb::ElectPartitions {
                topic: t.name.0.to_string(),
                partitions: t.partition_indexes.clone(),
            })
            .collect(),
    };
    // Named topics without partitions ask for nothing (and an empty request list would mean all).
    let asks_nothing = call.partitions.iter().all(|p| p.partitions.is_empty());
    if request.topics.is_some() && asks_nothing {
        return ListPartitionReassignmentsResponse::default();
    }
    match ctx.controller.list_partition_reassignments(call).await {
        Ok(reply) => {
            let mut topics: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
            for r in reply.reassignments {
                let brokers = |ids: Vec<i32>| ids.into_iter().map(BrokerId).collect();
                topics.entry(r.topic).or_default().push(
                    OngoingPartitionReassignment::default()
                        .with_partition_index(r.partition_index)
                        .with_replicas(brokers(r.replicas))
                        .with_adding_replicas(brokers(r.adding_replicas))
                        .with_removing_replicas(brokers(r.removing_replicas)),
                );
            }
            ListPartitionReassignmentsResponse::default().with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OngoingTopicReassignment::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        }
        Err(e) => {
            debug!(error = %e, version = rc.version, "ListPartitionReassignments not forwarded");
            let (code, message) = controller_failure(&e);
            ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(error_message(code, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    /// KIP-860: a change of replication factor is refused without asking the controller when the
    /// client forbids it; the other partition gets the controller's answer (here: unreachable).
    #[tokio::test]
    async fn a_forbidden_replication_factor_change_is_refused_here() {
        let broker = TestBroker::new(1, &cluster().records);
        let partition = |index: i32, replicas: &[i32]| {
            ReassignablePartition::default()
                .with_partition_index(index)
                .with_replicas(Some(replicas.iter().copied().map(BrokerId).collect()))
        };
        let request = AlterPartitionReassignmentsRequest::default()
            .with_allow_replication_factor_change(false)
            .with_timeout_ms(100)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![partition(0, &[1]), partition(1, &[1, 2])])]);
        let response = handle_alter(&broker.ctx, &broker.rc(1, "PLAINTEXT"), request).await;
        let codes: Vec<(i32, i16)> = response.responses[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(
            codes[0],
            (0, ResponseError::InvalidReplicationFactor.code())
        );
        assert_eq!(codes[1], (1, ResponseError::NotController.code()));
        assert_encodes(&response, 1);
    }
}
