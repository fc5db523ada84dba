//! OffsetFetch (key 9, v1–9): a group's committed offsets. v1 names the partitions; v2+ may ask for
//! all (null topics) and has a top-level error; v8+ asks for many groups at once, each answered with
//! its own error. A partition without a commit answers offset -1, metadata "" and no error.
//! `RequireStable` (v7+) only matters with transactions, which this broker does not have.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};
use crate::group::shard::CommittedOffset;

/// One group's answer: per topic, per partition (partition, offset, leader epoch, metadata, error).
type Answer = Vec<(String, Vec<(i32, i64, i32, String, i16)>)>;

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if rc.version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let partitions = g.topics.map(|topics| {
                    topics
                        .into_iter()
                        .flat_map(|t| {
                            let name = t.name.to_string();
                            t.partition_indexes
                                .into_iter()
                                .map(move |p| (name.clone(), p))
                        })
                        .collect()
                });
                let (error, answer) = fetch(
                    ctx,
                    rc,
                    &g.group_id,
                    partitions,
                    request.require_stable,
                    (g.member_id.as_deref(), g.member_epoch),
                );
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error)
                    .with_topics(
                        answer
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(topic)))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(p, offset, epoch, metadata, code)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(StrBytes::from_string(
                                                        metadata,
                                                    )))
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let partitions = request.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name.to_string();
                t.partition_indexes
                    .into_iter()
                    .map(move |p| (name.clone(), p))
            })
            .collect::<Vec<_>>()
    });
    let require_stable = rc.version >= 7 && request.require_stable;
    let (error, answer) = fetch(
        ctx,
        rc,
        &request.group_id,
        partitions,
        require_stable,
        (None, -1),
    );
    let topics = answer
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, offset, epoch, metadata, code)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(if rc.version >= 5 {
                                    epoch
                                } else {
                                    -1
                                })
                                .with_metadata(Some(StrBytes::from_string(metadata)))
                                // v1 has no top-level error: each partition carries it.
                                .with_error_code(if rc.version < 2 && code == 0 {
                                    error
                                } else {
                                    code
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if rc.version >= 2 {
        response.with_error_code(error)
    } else {
        response
    }
}

/// The group's offsets for `partitions` (or all), or the group-level error with every asked
/// partition at offset -1.
///
/// Kafka's handleOffsetFetchRequest: DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED), and of the
/// topics, those without DESCRIBE are TOPIC_AUTHORIZATION_FAILED when asked for and left out when
/// every topic is.
fn fetch(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    group_id: &str,
    partitions: Option<Vec<(String, i32)>>,
    require_stable: bool,
    member: (Option<&str>, i32),
) -> (i16, Answer) {
    let looked_up = if ctx.authorize_group(rc, AclOperation::Describe, group_id) {
        ctx.groups
            .fetch_offsets(group_id, partitions.clone(), require_stable, member)
    } else {
        Err(ResponseError::GroupAuthorizationFailed)
    };
    let asked_all = partitions.is_none();
    let (error, rows) = match looked_up {
        Ok(rows) => (0, rows),
        Err(error) => (
            error.code(),
            partitions
                .unwrap_or_default()
                .into_iter()
                .map(|(t, p)| (t, p, None, None))
                .collect(),
        ),
    };
    let mut answer: Answer = Vec::new();
    for (topic, partition, committed, unstable) in rows {
        let (offset, epoch, metadata) = match committed {
            Some(CommittedOffset { value, .. }) => {
                (value.offset, value.leader_epoch, value.metadata)
            }
            None => (-1, -1, String::new()),
        };
        let code = if error != 0 || ctx.authorize_topic(rc, AclOperation::Describe, &topic) {
            // A transaction's offset pending for the partition (KIP-447 `require_stable`).
            unstable.map_or(0, |e: ResponseError| e.code())
        } else if asked_all {
            continue;
        } else {
            ResponseError::TopicAuthorizationFailed.code()
        };
        let row = if code == 0 {
            (partition, offset, epoch, metadata, 0)
        } else {
            (partition, -1, -1, String::new(), code)
        };
        match answer.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, rows)) => rows.push(row),
            None => answer.push((topic, vec![row])),
        }
    }
    (error, answer)
}
