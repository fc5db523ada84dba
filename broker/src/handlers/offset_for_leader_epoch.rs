//! OffsetForLeaderEpoch (key 23; KIP-101, KIP-279): where a leader epoch ends in the leader's log, from
//! its leader-epoch cache. Consumers use it to detect truncation after a leader change (KIP-320).

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{leader_partition, BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.metadata.current();
    // Kafka's handleOffsetForLeaderEpochRequest: CLUSTER_ACTION on the cluster, else DESCRIBE on each
    // topic, followers (a replica id, v3+) included.
    let every_topic = ctx.authorize_cluster(rc, AclOperation::ClusterAction);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let topic_id = image.topic_ids.get(topic.topic.0.as_str()).copied();
            let authorized = every_topic
                || ctx.authorize_topic(rc, AclOperation::Describe, topic.topic.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let result = (|| {
                        if !authorized {
                            return Err(ResponseError::TopicAuthorizationFailed);
                        }
                        let id = topic_id.ok_or(ResponseError::UnknownTopicOrPartition)?;
                        let partition =
                            leader_partition(ctx, &image, id, p.partition, p.current_leader_epoch)?;
                        partition
                            .log
                            .end_offset_for_epoch(p.leader_epoch)
                            .map_err(|_| ResponseError::KafkaStorageError)
                    })();
                    match result {
                        Ok(end) => answer
                            .with_leader_epoch(end.leader_epoch)
                            .with_end_offset(end.end_offset),
                        Err(error) => answer.with_error_code(error.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
