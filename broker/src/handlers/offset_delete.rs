//! OffsetDelete (key 47, v0): removes committed offsets of topics the group no longer consumes
//! (GROUP_SUBSCRIBED_TO_TOPIC for one a live member subscribes to).

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    // Kafka's handleOffsetDeleteRequest: DELETE on the group, READ on each topic.
    if !ctx.authorize_group(rc, AclOperation::Delete, &request.group_id) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let (partitions, denied): (Vec<_>, Vec<_>) = partitions
        .into_iter()
        .partition(|(topic, _)| ctx.authorize_topic(rc, AclOperation::Read, topic));
    match ctx
        .groups
        .delete_offsets(&request.group_id, partitions)
        .await
    {
        Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok(mut results) => {
            results.extend(denied.into_iter().map(|(topic, partition)| {
                (
                    topic,
                    partition,
                    Some(ResponseError::TopicAuthorizationFailed),
                )
            }));
            let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
            for (topic, partition, error) in results {
                let p = OffsetDeleteResponsePartition::default()
                    .with_partition_index(partition)
                    .with_error_code(error_code(error));
                match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                    Some(t) => t.partitions.push(p),
                    None => topics.push(
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}
