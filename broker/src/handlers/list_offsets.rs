//! ListOffsets (key 2): earliest, latest (the high watermark, never the log end a consumer
//! cannot read yet; for READ_COMMITTED the last stable offset, KIP-98), max timestamp, and the first
//! offset at or after a timestamp, below the same bound. Leaders only.
//!
//! Which partitions lead here is looked up on the runtime; the logs are read there too for a small
//! request of latest and earliest offsets. A request that looks up timestamps (index and segment
//! reads) or names many partitions (a console sampling every partition) is read on the blocking
//! pool, so it does not hold up the requests behind it on a runtime thread.

use std::sync::Arc;

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
use tracing::warn;

use super::{leader_partition, BrokerContext, RequestContext};
use crate::replica::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// Requests naming more partitions than this are answered on the blocking pool.
const ON_THE_RUNTIME_MAX: usize = 64;

/// One partition of the request, its leader found (or why not).
struct Asked {
    index: i32,
    timestamp: i64,
    leader: Result<Arc<Partition>, ResponseError>,
}

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = ctx.metadata.current();
    let topics: Vec<(TopicName, Vec<Asked>)> = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let authorized = ctx.authorize_topic(rc, AclOperation::Describe, &name);
            let topic_id = image.topic_ids.get(name.as_str()).copied();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| Asked {
                    index: p.partition_index,
                    timestamp: p.timestamp,
                    leader: if !authorized {
                        Err(ResponseError::TopicAuthorizationFailed)
                    } else {
                        topic_id
                            .ok_or(ResponseError::UnknownTopicOrPartition)
                            .and_then(|id| {
                                leader_partition(
                                    ctx,
                                    &image,
                                    id,
                                    p.partition_index,
                                    p.current_leader_epoch,
                                )
                            })
                    },
                })
                .collect();
            (topic.name, partitions)
        })
        .collect();
    let (version, isolation_level) = (rc.version, request.isolation_level);
    let asked = topics.iter().map(|(_, p)| p.len()).sum::<usize>();
    let reads_files = topics
        .iter()
        .flat_map(|(_, p)| p)
        .any(|p| p.timestamp >= 0 || p.timestamp == MAX_TIMESTAMP);
    if asked <= ON_THE_RUNTIME_MAX && !reads_files {
        return answer(topics, version, isolation_level);
    }
    let errors: Vec<(TopicName, Vec<i32>)> = topics
        .iter()
        .map(|(name, p)| (name.clone(), p.iter().map(|p| p.index).collect()))
        .collect();
    tokio::task::spawn_blocking(move || answer(topics, version, isolation_level))
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "looking up offsets failed");
            failed(errors)
        })
}

fn answer(
    topics: Vec<(TopicName, Vec<Asked>)>,
    version: i16,
    isolation_level: i8,
) -> ListOffsetsResponse {
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|asked| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(asked.index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let found = asked.leader.and_then(|partition| {
                        lookup(&partition, asked.timestamp, version, isolation_level)
                    });
                    match found {
                        Ok((timestamp, offset, leader_epoch)) => response
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            // The leader epoch is in the schema from v4.
                            .with_leader_epoch(if version >= 4 { leader_epoch } else { -1 }),
                        Err(error) => response.with_error_code(error.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Every partition answered UNKNOWN_SERVER_ERROR (the lookup task died).
fn failed(topics: Vec<(TopicName, Vec<i32>)>) -> ListOffsetsResponse {
    let topics = topics
        .into_iter()
        .map(|(name, indexes)| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(
                    indexes
                        .into_iter()
                        .map(|index| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(index)
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1)
                                .with_error_code(ResponseError::UnknownServerError.code())
                        })
                        .collect(),
                )
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(timestamp, offset, leader epoch)` for one partition this broker leads.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    version: i16,
    isolation_level: i8,
) -> Result<(i64, i64, i32), ResponseError> {
    let state = partition.state();
    let log = &partition.log;
    let high_watermark = log.high_watermark();
    // A new leader whose high watermark has not reached the start of its own epoch cannot vouch for
    // "latest" or a time yet (OFFSET_NOT_AVAILABLE, KIP-207); clients retry.
    let settled = log
        .latest_epoch_entry()
        .filter(|e| e.epoch == state.leader_epoch)
        .is_none_or(|e| high_watermark >= e.start_offset);
    // What a consumer of this isolation level may read: READ_COMMITTED stops at the LSO (KIP-98).
    let fetchable = if isolation_level == 1 {
        log.last_stable_offset()
    } else {
        high_watermark
    };
    if !settled
        && version >= 5
        && (timestamp == LATEST || timestamp >= 0 || timestamp == MAX_TIMESTAMP)
    {
        return Err(ResponseError::OffsetNotAvailable);
    }
    match timestamp {
        LATEST => Ok((-1, fetchable, state.leader_epoch)),
        EARLIEST | EARLIEST_LOCAL => {
            let start = log.log_start_offset();
            Ok((-1, start, log.epoch_at(start).unwrap_or(-1)))
        }
        LATEST_TIERED => Ok((-1, -1, -1)),
        MAX_TIMESTAMP => match log.offset_of_max_timestamp().map_err(|e| e.kafka_error())? {
            Some(t) if t.offset < fetchable => {
                Ok((t.timestamp, t.offset, t.leader_epoch.unwrap_or(-1)))
            }
            _ => Ok((-1, -1, -1)),
        },
        timestamp if timestamp >= 0 => {
            match log
                .offset_for_timestamp(timestamp)
                .map_err(|e| e.kafka_error())?
            {
                Some(t) if t.offset < fetchable => {
                    Ok((t.timestamp, t.offset, t.leader_epoch.unwrap_or(-1)))
                }
                _ => Ok((-1, -1, -1)),
            }
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{broker, topic, TestBroker};
    use crate::log::batch::test_support::client_batch;
    use chronik_metadata::BrokerId;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    /// Broker 1 leading `n` partitions of `t` alone; partition `i` holds `i + 1` records, stamped
    /// 1000, 2000, ... ms, all below the high watermark.
    fn broker_leading(n: usize) -> TestBroker {
        let id = Uuid::new_v4();
        let replicas: Vec<&[BrokerId]> = vec![&[1]; n];
        let mut records = vec![broker(1, None, false)];
        records.extend(topic("t", id, &replicas));
        let test = TestBroker::new(1, &records);
        test.ctx
            .replicas
            .apply_metadata(&test.ctx.metadata.current(), true);
        for i in 0..n {
            let partition = test.ctx.replicas.partition(id, i as i32).expect("hosted");
            let times: Vec<i64> = (1..=i as i64 + 1).map(|k| k * 1000).collect();
            partition
                .log
                .append_as_leader(client_batch(&times, 10), 0)
                .unwrap();
            partition.log.maybe_increment_high_watermark(i as i64 + 1);
        }
        test
    }

    /// `(error, timestamp, offset)` of partitions `0..n` of `t` at `timestamp`.
    async fn list(test: &TestBroker, n: usize, timestamp: i64) -> Vec<(i16, i64, i64)> {
        let partitions = (0..n as i32)
            .map(|i| {
                ListOffsetsPartition::default()
                    .with_partition_index(i)
                    .with_timestamp(timestamp)
                    .with_current_leader_epoch(-1)
            })
            .collect();
        let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)]);
        let response = handle(&test.ctx, &test.rc(7, "PLAINTEXT"), request).await;
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.timestamp, p.offset))
            .collect()
    }

    #[tokio::test]
    async fn a_request_read_on_the_blocking_pool_answers_as_one_read_on_the_runtime() {
        let test = broker_leading(100);
        // 10 partitions of latest or earliest offsets are read on the runtime; 100, or any timestamp
        // lookup, on the blocking pool.
        for n in [10, 100] {
            let latest: Vec<_> = (0..n as i64).map(|i| (0, -1, i + 1)).collect();
            assert_eq!(list(&test, n, LATEST).await, latest, "{n} partitions");
            assert_eq!(list(&test, n, EARLIEST).await, vec![(0, -1, 0); n]);
            // The first record at or after 2.5 s is the third, where there is one.
            let at: Vec<_> = (0..n as i64)
                .map(|i| if i >= 2 { (0, 3000, 2) } else { (0, -1, -1) })
                .collect();
            assert_eq!(list(&test, n, 2500).await, at, "{n} partitions");
            for (i, (error, timestamp, offset)) in
                list(&test, n, MAX_TIMESTAMP).await.into_iter().enumerate()
            {
                assert_eq!((error, timestamp), (0, (i as i64 + 1) * 1000));
                assert!((0..=i as i64).contains(&offset), "{offset}");
            }
        }
        let unknown = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("nope")))
            .with_partitions(
                (0..100)
                    .map(|i| ListOffsetsPartition::default().with_partition_index(i))
                    .collect(),
            )]);
        let response = handle(&test.ctx, &test.rc(7, "PLAINTEXT"), unknown).await;
        assert!(response.topics[0]
            .partitions
            .iter()
            .all(|p| p.error_code == ResponseError::UnknownTopicOrPartition.code()));
    }
}
