//! WriteTxnMarkers (key 27; Kafka's `KafkaApis.handleWriteTxnMarkersRequest`), sent by transaction
//! coordinators to partition leaders when a transaction ends (KIP-98). Inter-broker only: it needs
//! CLUSTER_ACTION on the cluster, else every partition is CLUSTER_AUTHORIZATION_FAILED.
//!
//! For each marker and each of its partitions this broker leads, the leader appends a COMMIT or
//! ABORT control batch with the producer's id and epoch and the coordinator epoch (see
//! `log::txn_marker`), which ends the producer's transaction in the partition's producer state and,
//! for an ABORT, adds it to the aborted-transactions index. A partition is answered only once its
//! marker is committed to the ISR (acks=all, Kafka's `requiredAcks = -1`), so a coordinator that saw
//! NONE knows every replica that may lead next has it. A marker from an older coordinator epoch than
//! the partition last saw is TRANSACTION_COORDINATOR_FENCED; from an older producer epoch,
//! INVALID_PRODUCER_EPOCH. Once a marker on a `__consumer_offsets` partition is committed, the group
//! coordinator applies or drops the transaction's pending offsets.

use std::time::Duration;

use chronik_metadata::acl::AclOperation;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{BrokerContext, Outcome, RequestContext};
use crate::group::OFFSETS_TOPIC;
use crate::log::txn_marker::EndTxnMarker;
use crate::replica::{AppendError, PendingAppend};

/// How long a marker waits for the ISR (Kafka's `request.timeout.ms` default, which its handler uses).
const MARKER_TIMEOUT: Duration = Duration::from_millis(30_000);
/// How long the request waits for the partitions to reflect the image it is decided on (as Produce).
const PARTITIONS_CATCH_UP_MAX: Duration = Duration::from_millis(1_000);

/// A marker written to one partition, waiting for the ISR.
struct PendingMarker {
    /// Where its result goes: marker, topic and partition positions in the response.
    at: (usize, usize, usize),
    append: PendingAppend,
    /// The `__consumer_offsets` partition it was written to, if it was.
    offsets_partition: Option<i32>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
}

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: WriteTxnMarkersRequest,
) -> Outcome {
    let authorized = ctx.authorize_cluster(rc, AclOperation::ClusterAction);
    let image = ctx.metadata.current();
    ctx.replicas
        .wait_applied(image.offset, PARTITIONS_CATCH_UP_MAX)
        .await;
    let mut results = Vec::with_capacity(request.markers.len());
    let mut pending = Vec::new();
    for (m_pos, marker) in request.markers.into_iter().enumerate() {
        let producer_id = marker.producer_id.0;
        let producer_epoch = marker.producer_epoch;
        let end = EndTxnMarker {
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for (t_pos, topic) in marker.topics.into_iter().enumerate() {
            let name = topic.name.0.to_string();
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for (p_pos, index) in topic.partition_indexes.into_iter().enumerate() {
                let appended = if !authorized {
                    Err(ResponseError::ClusterAuthorizationFailed)
                } else {
                    match image
                        .topic_by_name(&name)
                        .filter(|t| image.partition(t.id, index).is_some())
                    {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(t) => match ctx.replicas.partition(t.id, index) {
                            None => Err(ResponseError::NotLeaderOrFollower),
                            Some(partition) => ctx
                                .replicas
                                .append_marker_as_leader(
                                    &partition,
                                    producer_id,
                                    producer_epoch,
                                    end,
                                )
                                .await
                                .map_err(|e| refusal(e, &name, index, producer_id)),
                        },
                    }
                };
                let mut result =
                    WritableTxnMarkerPartitionResult::default().with_partition_index(index);
                match appended {
                    Ok(append) => pending.push(PendingMarker {
                        at: (m_pos, t_pos, p_pos),
                        append,
                        offsets_partition: (name == OFFSETS_TOPIC).then_some(index),
                        producer_id,
                        producer_epoch,
                        commit: end.commit,
                    }),
                    Err(error) => result.error_code = error.code(),
                }
                partitions.push(result);
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    let replicas = ctx.replicas.clone();
    let groups = ctx.groups.clone();
    let complete = async move {
        let waits = pending.into_iter().map(|marker| {
            let replicas = replicas.clone();
            async move {
                let PendingMarker {
                    at,
                    append,
                    offsets_partition,
                    producer_id,
                    producer_epoch,
                    commit,
                } = marker;
                let done = replicas.complete_append(append, -1, MARKER_TIMEOUT).await;
                (
                    at,
                    done,
                    offsets_partition,
                    producer_id,
                    producer_epoch,
                    commit,
                )
            }
        });
        for ((m, t, p), done, offsets_partition, producer_id, producer_epoch, commit) in
            join_all(waits).await
        {
            let result = &mut results[m].topics[t].partitions[p];
            match done {
                Ok(_) => {
                    if let Some(partition) = offsets_partition {
                        groups.complete_transaction(partition, producer_id, producer_epoch, commit);
                    }
                }
                Err(e) => result.error_code = e.kafka_error().code(),
            }
        }
        Outcome::Respond(Box::new(ResponseKind::WriteTxnMarkers(
            WriteTxnMarkersResponse::default().with_markers(results),
        )))
    };
    Outcome::Completing(Box::pin(complete))
}

/// The partition's error for a marker the leader refused.
fn refusal(e: AppendError, topic: &str, partition: i32, producer_id: i64) -> ResponseError {
    let error = e.kafka_error();
    if error != ResponseError::NotLeaderOrFollower {
        tracing::info!(topic, partition, producer_id, error = %e, "transaction marker refused");
    }
    error
}

#[cfg(test)]
mod tests {
    use chronik_metadata::records::ConfigResource;
    use chronik_metadata::Record;
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    use super::*;
    use crate::handlers::test_support::{broker, topic, TestBroker};
    use crate::log::batch::test_support::transactional_batch;

    /// Broker 1 alone leads `solo` (RF 1); `elsewhere` lives on broker 2 only.
    fn solo() -> TestBroker {
        let mut records = vec![
            broker(1, None, false),
            broker(2, None, false),
            Record::Config {
                resource: ConfigResource::Cluster,
                key: "min.insync.replicas".into(),
                value: Some("1".into()),
            },
        ];
        records.extend(topic("solo", Uuid::new_v4(), &[&[1]]));
        records.extend(topic("elsewhere", Uuid::new_v4(), &[&[2]]));
        let b = TestBroker::new(1, &records);
        b.ctx
            .replicas
            .apply_metadata(&b.ctx.metadata.current(), true);
        b
    }

    fn marker(
        producer_epoch: i16,
        coordinator_epoch: i32,
        topics: &[(&'static str, &[i32])],
    ) -> WritableTxnMarker {
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(true)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str(name)))
                            .with_partition_indexes(partitions.to_vec())
                    })
                    .collect(),
            )
    }

    /// (topic, partition, error code) of every partition answered, in order.
    async fn write(b: &TestBroker, markers: Vec<WritableTxnMarker>) -> Vec<(String, i32, i16)> {
        let rc = b.rc(1, "PLAINTEXT");
        let request = WriteTxnMarkersRequest::default().with_markers(markers);
        let outcome = match handle(&b.ctx, &rc, request).await {
            Outcome::Completing(rest) => rest.await,
            other => other,
        };
        let Outcome::Respond(response) = outcome else {
            panic!("answered");
        };
        let ResponseKind::WriteTxnMarkers(response) = *response else {
            panic!("not a WriteTxnMarkers response");
        };
        response
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
            })
            .collect()
    }

    #[tokio::test]
    async fn markers_commit_and_each_partition_gets_its_error() {
        let b = solo();
        let id = b.ctx.metadata.current().topic_ids["solo"];
        let partition = b.ctx.replicas.partition(id, 0).unwrap();
        let epoch = partition.state().leader_epoch;
        partition
            .log
            .append_as_leader(transactional_batch(7, 0, 0, 2), epoch)
            .unwrap();
        assert_eq!(
            partition.log.last_stable_offset(),
            0,
            "the transaction is open"
        );

        let answered = write(
            &b,
            vec![marker(
                0,
                3,
                &[("solo", &[0, 4]), ("nope", &[0]), ("elsewhere", &[0])],
            )],
        )
        .await;
        assert_eq!(
            answered,
            vec![
                ("solo".into(), 0, 0),
                (
                    "solo".into(),
                    4,
                    ResponseError::UnknownTopicOrPartition.code()
                ),
                (
                    "nope".into(),
                    0,
                    ResponseError::UnknownTopicOrPartition.code()
                ),
                (
                    "elsewhere".into(),
                    0,
                    ResponseError::NotLeaderOrFollower.code()
                ),
            ]
        );
        // Answered once committed: the high watermark, and with it the LSO, passed the marker.
        assert_eq!(partition.log.high_watermark(), 3);
        assert_eq!(partition.log.last_stable_offset(), 3);
        let producers = partition.log.active_producers();
        assert_eq!(producers[0].1.coordinator_epoch, 3);

        let fenced = write(&b, vec![marker(0, 2, &[("solo", &[0])])]).await;
        assert_eq!(
            fenced,
            vec![(
                "solo".into(),
                0,
                ResponseError::TransactionCoordinatorFenced.code()
            )]
        );
        let old_epoch = write(&b, vec![marker(-1, 3, &[("solo", &[0])])]).await;
        assert_eq!(old_epoch[0].2, ResponseError::InvalidProducerEpoch.code());
        assert_eq!(
            partition.log.log_end_offset(),
            3,
            "refused markers are not written"
        );
    }
}
