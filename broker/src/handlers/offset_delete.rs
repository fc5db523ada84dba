//! OffsetDelete (key 47, v0): removes committed offsets of topics the group no longer consumes
//! (GROUP_SUBSCRIBED_TO_TOPIC for one a live member subscribes to).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    _rc: &RequestContext<'_>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    match ctx
        .groups
        .delete_offsets(&request.group_id, partitions)
        .await
    {
        Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok(results) => {
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
