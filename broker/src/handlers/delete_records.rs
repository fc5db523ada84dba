//! DeleteRecords (key 21; Kafka's `KafkaApis.handleDeleteRecordsRequest` and
//! `ReplicaManager.deleteRecords`): move each partition's log start offset up to the requested
//! offset (-1: the high watermark) on its leader, then wait up to `timeout_ms` until every replica the
//! low watermark counts has followed (see `replica::delete_records`). Each partition answers its low
//! watermark or an error, checked in Kafka's order: unknown to the metadata
//! (UNKNOWN_TOPIC_OR_PARTITION), an internal topic (INVALID_TOPIC_EXCEPTION), not hosted here or not
//! led here (NOT_LEADER_OR_FOLLOWER), then the leader's own checks (POLICY_VIOLATION,
//! OFFSET_OUT_OF_RANGE); a partition still waiting at the timeout answers REQUEST_TIMED_OUT with the
//! low watermark it had after the leader's deletion, any other error -1.

use chronik_metadata::acl::AclOperation;
use std::time::Duration;

use chronik_metadata::topic_name::is_internal_topic;
use chronik_metadata::MetadataImage;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_request::DeleteRecordsPartition;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{BrokerContext, RequestContext};
use crate::replica::{DeleteRecordsError, LeaderDeletion, Partition};

/// The low watermark of a partition that failed (Kafka's `DeleteRecordsResponse.INVALID_LOW_WATERMARK`).
const INVALID_LOW_WATERMARK: i64 = -1;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = ctx.metadata.current();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut waits = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(INVALID_LOW_WATERMARK);
            let deleted = if ctx.authorize_topic(rc, AclOperation::Delete, &name) {
                delete_on_leader(ctx, &image, &name, p).await
            } else {
                Err(ResponseError::TopicAuthorizationFailed)
            };
            match deleted {
                Ok((partition, deletion)) => {
                    if deletion.low_watermark < deletion.requested_offset {
                        waits.push((topics.len(), partitions.len(), partition, deletion));
                    }
                    partitions.push(result.with_low_watermark(deletion.low_watermark));
                }
                Err(error) => partitions.push(result.with_error_code(error.code())),
            }
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    // Kafka's DelayedDeleteRecords: one deadline for the whole request.
    let timeout_ms = u64::try_from(request.timeout_ms).unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    for (t, p, partition, deletion) in waits {
        let result: &mut DeleteRecordsPartitionResult = &mut topics[t].partitions[p];
        match ctx
            .replicas
            .wait_for_low_watermark(&partition, deletion.requested_offset, deadline)
            .await
        {
            Ok(low_watermark) => result.low_watermark = low_watermark,
            Err(DeleteRecordsError::TimedOut) => {
                result.error_code = ResponseError::RequestTimedOut.code();
            }
            Err(error) => {
                result.error_code = error.kafka_error().code();
                result.low_watermark = INVALID_LOW_WATERMARK;
            }
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The checks before the leader's own (`KafkaApis`, then `ReplicaManager.deleteRecordsOnLocalLog`),
/// then the leader's deletion.
async fn delete_on_leader(
    ctx: &BrokerContext,
    image: &MetadataImage,
    topic: &str,
    p: &DeleteRecordsPartition,
) -> Result<(std::sync::Arc<Partition>, LeaderDeletion), ResponseError> {
    let topic_id = image
        .topic_ids
        .get(topic)
        .copied()
        .filter(|id| image.partition(*id, p.partition_index).is_some())
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if is_internal_topic(topic) {
        return Err(ResponseError::InvalidTopicException);
    }
    let partition = ctx
        .replicas
        .partition(topic_id, p.partition_index)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    let deletion = ctx
        .replicas
        .delete_records_on_leader(&partition, p.offset)
        .await
        .map_err(|e| e.kafka_error())?;
    Ok((partition, deletion))
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use chronik_metadata::records::ConfigResource;
    use chronik_metadata::Record;
    use kafka_protocol::messages::delete_records_request::DeleteRecordsTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, broker, topic, TestBroker, CLUSTER_ID};
    use crate::log::batch::test_support::client_batch;

    struct Fixture {
        b: TestBroker,
        orders: Uuid,
    }

    /// Broker 1 of brokers 1, 2 and 3 (fenced): `orders` p0 on [1, 2] holding 10 records with the
    /// high watermark at 8, p1 led by 2; `lonely` on [1, 3] holding 3 committed records;
    /// `compacted` (cleanup.policy=compact) and `__consumer_offsets` led by 1.
    fn fixture() -> Fixture {
        let orders = Uuid::new_v4();
        let mut records = vec![
            Record::ClusterId {
                cluster_id: CLUSTER_ID.into(),
            },
            broker(1, None, false),
            broker(2, None, false),
            broker(3, None, true),
        ];
        records.extend(topic("orders", orders, &[&[1, 2], &[2, 1]]));
        records.extend(topic("lonely", Uuid::new_v4(), &[&[1, 3]]));
        records.extend(topic("compacted", Uuid::new_v4(), &[&[1]]));
        records.push(Record::Config {
            resource: ConfigResource::Topic("compacted".into()),
            key: "cleanup.policy".into(),
            value: Some("compact".into()),
        });
        records.extend(topic("__consumer_offsets", Uuid::new_v4(), &[&[1]]));
        let b = TestBroker::new(1, &records);
        let image = b.ctx.metadata.current();
        b.ctx.replicas.apply_metadata(&image, true);
        let fill = |name: &str, count: usize, high_watermark: i64| {
            let id = image.topic_ids[name];
            let partition = b.ctx.replicas.partition(id, 0).expect("hosted");
            for _ in 0..count {
                partition
                    .log
                    .append_as_leader(client_batch(&[1], 10), 0)
                    .unwrap();
            }
            partition.log.maybe_increment_high_watermark(high_watermark);
        };
        fill("orders", 10, 8);
        fill("lonely", 3, 3);
        fill("compacted", 3, 3);
        Fixture { b, orders }
    }

    fn request(partitions: &[(&str, i32, i64)], timeout_ms: i32) -> DeleteRecordsRequest {
        let mut topics: Vec<DeleteRecordsTopic> = Vec::new();
        for &(name, partition, offset) in partitions {
            let p = DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset);
            match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    DeleteRecordsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.into())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        DeleteRecordsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(timeout_ms)
    }

    /// `(error code, low watermark)` per partition, in request order.
    fn answers(response: &DeleteRecordsResponse) -> Vec<(i16, i64)> {
        response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (p.error_code, p.low_watermark))
            .collect()
    }

    #[tokio::test]
    async fn each_partition_is_checked_in_kafkas_order() {
        let f = fixture();
        let rc = f.b.rc(2, "PLAINTEXT");
        let response = handle(
            &f.b.ctx,
            &rc,
            request(
                &[
                    ("missing", 0, 1),
                    ("orders", 7, 1),
                    ("orders", 1, 1),
                    ("__consumer_offsets", 0, 0),
                    ("compacted", 0, 1),
                    ("lonely", 0, 4),
                    ("lonely", 0, -2),
                ],
                0,
            ),
        )
        .await;
        for version in 0..=2 {
            assert_encodes(&response, version);
        }
        let codes: Vec<i16> = answers(&response).iter().map(|a| a.0).collect();
        assert_eq!(
            codes,
            [
                ResponseError::UnknownTopicOrPartition,
                ResponseError::UnknownTopicOrPartition,
                ResponseError::NotLeaderOrFollower,
                ResponseError::InvalidTopicException,
                ResponseError::PolicyViolation,
                ResponseError::OffsetOutOfRange,
                ResponseError::OffsetOutOfRange,
            ]
            .map(|e| e.code())
        );
        assert!(answers(&response).iter().all(|a| a.1 == -1));
        let image = f.b.ctx.metadata.current();
        let lonely =
            f.b.ctx
                .replicas
                .partition(image.topic_ids["lonely"], 0)
                .unwrap();
        assert_eq!(lonely.log.log_start_offset(), 0, "nothing moved");
    }

    /// -1 is the high watermark; a replica on a fenced broker is not waited for (Kafka counts live
    /// brokers only), so the leader alone completes it at once.
    #[tokio::test]
    async fn the_high_watermark_offset_with_only_fenced_followers_completes_at_once() {
        let f = fixture();
        let rc = f.b.rc(0, "PLAINTEXT");
        let response = handle(&f.b.ctx, &rc, request(&[("lonely", 0, -1)], 30_000)).await;
        assert_eq!(answers(&response), [(0, 3)]);
        let image = f.b.ctx.metadata.current();
        let lonely =
            f.b.ctx
                .replicas
                .partition(image.topic_ids["lonely"], 0)
                .unwrap();
        assert_eq!(lonely.log.log_start_offset(), 3);
    }

    /// Kafka's `DelayedDeleteRecords`: the answer waits for the follower's fetch to report a log
    /// start at or past the offset, and times out with REQUEST_TIMED_OUT (and the low watermark of
    /// the leader's deletion) when it does not.
    #[tokio::test]
    async fn the_answer_waits_for_the_followers_log_start() {
        let f = fixture();
        let rc = f.b.rc(1, "PLAINTEXT");
        let replicas = &f.b.ctx.replicas;
        let partition = replicas.partition(f.orders, 0).unwrap();
        let response = handle(&f.b.ctx, &rc, request(&[("orders", 0, 5)], 50)).await;
        assert_eq!(
            answers(&response),
            [(ResponseError::RequestTimedOut.code(), -1)],
            "follower 2 never fetched"
        );
        assert_eq!(
            partition.log.log_start_offset(),
            5,
            "the leader's own part is done"
        );

        let epoch = f.b.ctx.metadata.current().brokers[&2].broker_epoch;
        replicas.on_follower_fetch(&partition, 2, epoch, 8);
        replicas.on_follower_log_start(&partition, 2, 0);
        let mut waiting = pin!(handle(&f.b.ctx, &rc, request(&[("orders", 0, -1)], 10_000)));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "answered before the follower moved its log start"
        );
        assert_eq!(partition.log.log_start_offset(), 8);
        replicas.on_follower_fetch(&partition, 2, epoch, 8);
        replicas.on_follower_log_start(&partition, 2, 5);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "answered while the follower's log start (5) is below 8"
        );
        // The follower's next Fetch reports the new start.
        let fetch = FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(2))
                    .with_replica_epoch(epoch),
            )
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(f.orders)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(0)
                    .with_fetch_offset(8)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(8)
                    .with_partition_max_bytes(1 << 20)])]);
        let fetched =
            crate::handlers::fetch::handle(&f.b.ctx, &f.b.rc(15, "PLAINTEXT"), fetch).await;
        assert_eq!(fetched.responses[0].partitions[0].log_start_offset, 8);
        let response = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("answered once the follower reported its new log start");
        assert_eq!(answers(&response), [(0, 8)]);
    }

    /// Leadership moving while the answer waits ends the wait with NOT_LEADER_OR_FOLLOWER (Kafka's
    /// `DelayedDeleteRecords.tryComplete` when the leader log is no longer local).
    #[tokio::test]
    async fn a_leader_change_ends_the_wait() {
        let f = fixture();
        let rc = f.b.rc(2, "PLAINTEXT");
        let replicas = &f.b.ctx.replicas;
        let partition = replicas.partition(f.orders, 0).unwrap();
        let mut waiting = pin!(handle(&f.b.ctx, &rc, request(&[("orders", 0, 4)], 10_000)));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "follower 2 has not fetched"
        );
        let mut moved = crate::replica::PartitionState::clone(&partition.state());
        moved.leader = 2;
        moved.leader_epoch += 1;
        moved.partition_epoch += 1;
        partition.update(moved).unwrap();
        replicas.roles_changed(vec![partition.clone()]);
        let response = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("answered once leadership moved");
        assert_eq!(
            answers(&response),
            [(ResponseError::NotLeaderOrFollower.code(), -1)]
        );
    }
}
