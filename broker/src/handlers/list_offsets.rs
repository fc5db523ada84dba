//! ListOffsets (key 2): earliest, latest (the high watermark, never the log end a consumer
//! cannot read yet; for READ_COMMITTED the last stable offset, KIP-98), max timestamp, and the first
//! offset at or after a timestamp, below the same bound. Leaders only.

use chronik_metadata::acl::AclOperation;
use chronik_metadata::MetadataImage;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{leader_partition, BrokerContext, RequestContext};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = ctx.metadata.current();
    let isolation_level = request.isolation_level;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let authorized = ctx.authorize_topic(rc, AclOperation::Describe, &name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let found = if authorized {
                        lookup(ctx, rc, &image, &name, p, isolation_level)
                    } else {
                        Err(ResponseError::TopicAuthorizationFailed)
                    };
                    match found {
                        Ok((timestamp, offset, leader_epoch)) => response
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            // The leader epoch is in the schema from v4.
                            .with_leader_epoch(if rc.version >= 4 { leader_epoch } else { -1 }),
                        Err(error) => response.with_error_code(error.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(timestamp, offset, leader epoch)` for one partition.
fn lookup(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    image: &MetadataImage,
    topic: &str,
    p: &ListOffsetsPartition,
    isolation_level: i8,
) -> Result<(i64, i64, i32), ResponseError> {
    let topic_id = *image
        .topic_ids
        .get(topic)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let partition = leader_partition(
        ctx,
        image,
        topic_id,
        p.partition_index,
        p.current_leader_epoch,
    )?;
    let state = partition.state();
    let log = &partition.log;
    let high_watermark = log.high_watermark();
    let epoch_at = |offset: i64| {
        log.epoch_entries()
            .iter()
            .filter(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
            .next_back()
            .unwrap_or(-1)
    };
    // A new leader whose high watermark has not reached the start of its own epoch cannot vouch for
    // "latest" or a time yet (OFFSET_NOT_AVAILABLE, KIP-207); clients retry.
    let epoch_start = log
        .epoch_entries()
        .last()
        .filter(|e| e.epoch == state.leader_epoch)
        .map(|e| e.start_offset);
    let settled = epoch_start.is_none_or(|start| high_watermark >= start);
    // What a consumer of this isolation level may read: READ_COMMITTED stops at the LSO (KIP-98).
    let fetchable = if isolation_level == 1 {
        log.last_stable_offset()
    } else {
        high_watermark
    };
    if !settled
        && rc.version >= 5
        && (p.timestamp == LATEST || p.timestamp >= 0 || p.timestamp == MAX_TIMESTAMP)
    {
        return Err(ResponseError::OffsetNotAvailable);
    }
    match p.timestamp {
        LATEST => Ok((-1, fetchable, state.leader_epoch)),
        EARLIEST | EARLIEST_LOCAL => {
            let start = log.log_start_offset();
            Ok((-1, start, epoch_at(start)))
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
