//! DescribeProducers (key 61, v0; KIP-664): per partition, the idempotent producers the replica on this
//! broker knows, from its log's producer state (`PartitionLog::active_producers`), as Kafka's
//! `KafkaApis.handleDescribeProducersRequest` and `ReplicaManager.activeProducerState` answer.
//!
//! Any replica answers, not only the leader (Kafka reads the local log; admin clients ask the leader
//! unless told a broker id). The checks, in Kafka's order: per topic, an invalid name
//! (INVALID_TOPIC_EXCEPTION) or a topic the metadata does not know (UNKNOWN_TOPIC_OR_PARTITION, with
//! Kafka's message), given to each of its partitions; then per partition, a replica on an offline log
//! directory (KAFKA_STORAGE_ERROR), no replica here of a partition that exists
//! (NOT_LEADER_OR_FOLLOWER) or no such partition (UNKNOWN_TOPIC_OR_PARTITION). Without transactions
//! every producer's coordinator epoch and transaction start offset are -1.

use chronik_metadata::acl::AclOperation;
use chronik_metadata::topic_name::validate_topic_name;
use chronik_metadata::MetadataImage;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};
use crate::log::producer_state::ProducerEntry;

/// Kafka's message for UNKNOWN_TOPIC_OR_PARTITION (`Errors.UNKNOWN_TOPIC_OR_PARTITION`), which it
/// sends with a topic-level refusal.
const UNKNOWN_TOPIC_MESSAGE: &str = "This server does not host this topic-partition.";
/// No transaction coordinator epoch / no open transaction.
const NONE: i32 = -1;

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = ctx.metadata.current();
    // One log directory per broker: when it is offline, so is every replica here (Kafka's
    // `HostedPartition.Offline`).
    let offline = !ctx.replicas.logs().offline_log_dirs().is_empty();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.as_str();
            // Kafka's handleDescribeProducersRequest: READ on the topic, before anything else.
            let topic_error = match validate_topic_name(name) {
                _ if !ctx.authorize_topic(rc, AclOperation::Read, name) => Some((
                    ResponseError::TopicAuthorizationFailed,
                    "Not authorized to read the topic".to_owned(),
                )),
                Err(invalid) => Some((invalid.code, invalid.message)),
                Ok(()) if image.topic_by_name(name).is_none() => Some((
                    ResponseError::UnknownTopicOrPartition,
                    UNKNOWN_TOPIC_MESSAGE.to_owned(),
                )),
                Ok(()) => None,
            };
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| match &topic_error {
                    Some((error, message)) => PartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message.clone()))),
                    None => active_producer_state(ctx, &image, name, index, offline),
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// One partition of a known topic (Kafka's `ReplicaManager.activeProducerState`).
fn active_producer_state(
    ctx: &BrokerContext,
    image: &MetadataImage,
    topic: &str,
    index: i32,
    offline: bool,
) -> PartitionResponse {
    let answer = PartitionResponse::default().with_partition_index(index);
    let topic_id = image.topic_ids.get(topic).copied();
    let hosted = topic_id.and_then(|id| ctx.replicas.partition(id, index));
    let error = match (&hosted, topic_id) {
        (Some(_), _) if offline => ResponseError::KafkaStorageError,
        (Some(partition), _) => {
            return answer.with_active_producers(
                partition
                    .log
                    .active_producers()
                    .iter()
                    .map(|(id, entry)| producer_state(*id, entry))
                    .collect(),
            )
        }
        (None, Some(id)) if image.partition(id, index).is_some() => {
            ResponseError::NotLeaderOrFollower
        }
        (None, _) => ResponseError::UnknownTopicOrPartition,
    };
    answer.with_error_code(error.code())
}

fn producer_state(producer_id: i64, entry: &ProducerEntry) -> ProducerState {
    let last = entry.last_batch();
    ProducerState::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(i32::from(entry.producer_epoch))
        .with_last_sequence(last.map_or(-1, |b| b.last_seq))
        .with_last_timestamp(last.map_or(-1, |b| b.timestamp))
        .with_coordinator_epoch(entry.coordinator_epoch)
        .with_current_txn_start_offset(entry.current_txn_first_offset.unwrap_or(i64::from(NONE)))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::TopicName;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};
    use crate::log::batch::test_support::{client_batch, producer_batch};

    fn ask(broker: &TestBroker, topics: &[(&str, &[i32])]) -> DescribeProducersResponse {
        let request = DescribeProducersRequest::default().with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    TopicRequest::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partition_indexes(partitions.to_vec())
                })
                .collect(),
        );
        let response = handle(&broker.ctx, &broker.rc(0, "PLAINTEXT"), request);
        assert_encodes(&response, 0);
        response
    }

    fn codes(response: &DescribeProducersResponse) -> Vec<(String, i32, i16)> {
        response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
            })
            .collect()
    }

    /// Broker 1 of the test cluster, hosting what the image places on it: orders-0 (leader),
    /// orders-1 (follower) and audit-0 (leader).
    fn hosting_broker() -> TestBroker {
        let broker = TestBroker::new(1, &cluster().records);
        broker
            .ctx
            .replicas
            .apply_metadata(&broker.ctx.metadata.current(), true);
        broker
    }

    fn log(
        broker: &TestBroker,
        topic: &str,
        index: i32,
    ) -> std::sync::Arc<crate::log::PartitionLog> {
        let image = broker.ctx.metadata.current();
        let id = image.topic_ids[topic];
        broker
            .ctx
            .replicas
            .partition(id, index)
            .expect("hosted")
            .log
            .clone()
    }

    #[tokio::test]
    async fn lists_the_idempotent_producers_of_the_local_log() {
        let broker = hosting_broker();
        let orders = log(&broker, "orders", 0);
        orders
            .append_as_leader(producer_batch(7, 0, 0, 3), 0)
            .unwrap();
        orders
            .append_as_leader(client_batch(&[5, 6], 10), 0)
            .unwrap();
        orders
            .append_as_leader(producer_batch(3, 2, 0, 2), 0)
            .unwrap();
        orders
            .append_as_leader(producer_batch(7, 0, 3, 4), 0)
            .unwrap();

        let response = ask(&broker, &[("orders", &[0])]);
        let partition = &response.topics[0].partitions[0];
        assert_eq!((partition.error_code, &partition.error_message), (0, &None));
        let producers: Vec<(i64, i32, i32, i64, i32, i64)> = partition
            .active_producers
            .iter()
            .map(|p| {
                (
                    p.producer_id.0,
                    p.producer_epoch,
                    p.last_sequence,
                    p.last_timestamp,
                    p.coordinator_epoch,
                    p.current_txn_start_offset,
                )
            })
            .collect();
        // The non-idempotent batch leaves no producer; timestamps are each last batch's maximum.
        assert_eq!(
            producers,
            [(3, 2, 1, 1_001, -1, -1), (7, 0, 6, 1_003, -1, -1)]
        );

        // A transactional producer: its open transaction's first offset, then after a marker the
        // marker's coordinator epoch (KIP-98).
        let txn = |broker: &TestBroker| {
            let response = ask(broker, &[("orders", &[0])]);
            let p = response.topics[0].partitions[0]
                .active_producers
                .iter()
                .find(|p| p.producer_id.0 == 9)
                .cloned()
                .expect("producer 9 listed");
            (p.current_txn_start_offset, p.coordinator_epoch)
        };
        let first = orders
            .append_as_leader(
                crate::log::batch::test_support::transactional_batch(9, 0, 0, 2),
                0,
            )
            .unwrap()
            .base_offset;
        assert_eq!(txn(&broker), (first, -1));
        let marker = crate::log::txn_marker::EndTxnMarker {
            commit: true,
            coordinator_epoch: 4,
        };
        orders.append_marker_as_leader(9, 0, marker, 0).unwrap();
        assert_eq!(txn(&broker), (-1, 4));
    }

    #[tokio::test]
    async fn a_follower_answers_too() {
        let broker = hosting_broker();
        // orders-1 is led by nobody and followed here: Kafka answers from any replica's log.
        let response = ask(&broker, &[("orders", &[1])]);
        assert_eq!(codes(&response), [("orders".into(), 1, 0)]);
        assert!(response.topics[0].partitions[0].active_producers.is_empty());
    }

    #[tokio::test]
    async fn errors_in_kafkas_order() {
        let broker = hosting_broker();
        let response = ask(
            &broker,
            &[
                ("missing", &[0, 1]),
                ("bad name", &[0]),
                // Partition 0 is hosted on brokers 2 only; 5 does not exist.
                ("__consumer_offsets", &[0, 5]),
                ("audit", &[0]),
            ],
        );
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            codes(&response),
            [
                ("missing".into(), 0, unknown),
                ("missing".into(), 1, unknown),
                (
                    "bad name".into(),
                    0,
                    ResponseError::InvalidTopicException.code()
                ),
                (
                    "__consumer_offsets".into(),
                    0,
                    ResponseError::NotLeaderOrFollower.code()
                ),
                ("__consumer_offsets".into(), 5, unknown),
                ("audit".into(), 0, 0),
            ]
        );
        // A topic-level refusal carries Kafka's message; a partition-level one none.
        assert_eq!(
            response.topics[0].partitions[0].error_message.as_deref(),
            Some(UNKNOWN_TOPIC_MESSAGE)
        );
        assert!(response.topics[1].partitions[0].error_message.is_some());
        assert_eq!(response.topics[2].partitions[0].error_message, None);
    }

    #[tokio::test]
    async fn an_offline_log_dir_is_a_storage_error() {
        let broker = hosting_broker();
        let audit = log(&broker, "audit", 0);
        let info = audit.append_as_leader(client_batch(&[1], 10), 0).unwrap();
        audit.fail_next_fsync();
        assert!(audit.flush_to(info.next_offset()).is_err());
        let response = ask(&broker, &[("orders", &[0]), ("missing", &[0])]);
        assert_eq!(
            codes(&response),
            [
                ("orders".into(), 0, ResponseError::KafkaStorageError.code()),
                (
                    "missing".into(),
                    0,
                    ResponseError::UnknownTopicOrPartition.code()
                ),
            ]
        );
    }
}
