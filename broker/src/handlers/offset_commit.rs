//! OffsetCommit (key 8, v2–9): committed offsets are acknowledged once their records are committed
//! to the offsets topic. A commit with generation -1 and no member id comes from outside group
//! management (e.g. `chronikctl group reset-offsets`) and is accepted only while the group is empty.
//! `RetentionTimeMs` (v2–4) is ignored, as Kafka does since 2.1.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};
use crate::group::coordinator::OffsetCommit;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let commits: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    // Kafka's handleOffsetCommitRequest: READ on the group, then READ on each topic.
    let group_authorized = ctx.authorize_group(rc, AclOperation::Read, &request.group_id);
    let (commits, denied): (Vec<OffsetCommit>, Vec<OffsetCommit>) = commits
        .into_iter()
        .partition(|c| !group_authorized || ctx.authorize_topic(rc, AclOperation::Read, &c.topic));
    let results = if group_authorized {
        ctx.groups
            .commit_offsets(
                &request.group_id,
                request.generation_id_or_member_epoch,
                &request.member_id,
                request.group_instance_id.as_deref(),
                commits.clone(),
                rc.version,
            )
            .await
    } else {
        Err(ResponseError::GroupAuthorizationFailed)
    };
    let mut results: Vec<(OffsetCommit, i16)> = match results {
        Ok(results) => results
            .into_iter()
            .map(|(c, e)| (c, error_code(e)))
            .collect(),
        Err(error) => commits.into_iter().map(|c| (c, error.code())).collect(),
    };
    results.extend(
        denied
            .into_iter()
            .map(|c| (c, ResponseError::TopicAuthorizationFailed.code())),
    );
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (commit, code) in results {
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(commit.partition)
            .with_error_code(code);
        match topics.iter_mut().find(|t| t.name.as_str() == commit.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(commit.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
