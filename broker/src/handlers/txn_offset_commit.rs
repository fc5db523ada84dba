//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets inside its transaction
//! (KIP-98, KIP-447). The group's coordinator writes them to `__consumer_offsets` as a transactional
//! batch of the producer, and they stay pending (OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT for them) until the transaction's marker applies or drops them.
//!
//! Kafka's checks (`KafkaApis.handleTxnOffsetCommitRequest`): WRITE on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on the group (GROUP_AUTHORIZATION_FAILED), both for
//! every partition; then per partition READ on the topic (TOPIC_AUTHORIZATION_FAILED) and a known
//! partition (UNKNOWN_TOPIC_OR_PARTITION). v3+ carry the member's generation, id and instance id,
//! validated against the group as OffsetCommit does (KIP-447). PRODUCER_FENCED is
//! INVALID_PRODUCER_EPOCH before v3 (KIP-588).
//!
//! v5 is transaction version 2 (KIP-890 part 2): the producer sends no AddOffsetsToTxn, so before
//! writing, the group coordinator adds the group's `__consumer_offsets` partition to the producer's
//! transaction itself, as a partition leader does for Produce v12 (Kafka's
//! `CoordinatorPartitionWriter.maybeStartTransactionVerification`). An add refused because the
//! producer's previous transaction is still completing is asked again for a while, then answered as
//! a Produce would (NOT_ENOUGH_REPLICAS, which the producer retries).

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};
use crate::group::coordinator::OffsetCommit;
use crate::group::OFFSETS_TOPIC;
use crate::txn::fenced_error_for;
use crate::txn_verifier::{self, TxnCheck};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let asked: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if rc.version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let group_id = request.group_id.0.as_str();
    let everywhere = |error: ResponseError| -> Vec<(OffsetCommit, Option<ResponseError>)> {
        asked.iter().cloned().map(|c| (c, Some(error))).collect()
    };
    let results =
        if !ctx.authorize_transactional_id(rc, AclOperation::Write, &request.transactional_id.0) {
            everywhere(ResponseError::TransactionalIdAuthorizationFailed)
        } else if !ctx.authorize_group(rc, AclOperation::Read, group_id) {
            everywhere(ResponseError::GroupAuthorizationFailed)
        } else {
            let (allowed, mut refused): (Vec<OffsetCommit>, Vec<OffsetCommit>) = asked
                .iter()
                .cloned()
                .partition(|c| ctx.authorize_topic(rc, AclOperation::Read, &c.topic));
            let mut results: Vec<(OffsetCommit, Option<ResponseError>)> = refused
                .drain(..)
                .map(|c| (c, Some(ResponseError::TopicAuthorizationFailed)))
                .collect();
            if rc.version >= ADDS_PARTITION_VERSION && !allowed.is_empty() {
                if let Err(error) = add_offsets_partition(ctx, &request).await {
                    results.extend(allowed.iter().cloned().map(|c| (c, Some(error))));
                    return response(results, rc.version);
                }
            }
            let (generation, member_id, instance) = if rc.version >= 3 {
                (
                    request.generation_id,
                    request.member_id.as_str(),
                    request.group_instance_id.as_deref(),
                )
            } else {
                (-1, "", None)
            };
            let committed = ctx
                .groups
                .commit_transactional_offsets(
                    group_id,
                    request.producer_id.0,
                    request.producer_epoch,
                    generation,
                    member_id,
                    instance,
                    allowed.clone(),
                )
                .await;
            match committed {
                Ok(done) => results.extend(done),
                Err(error) => results.extend(allowed.into_iter().map(|c| (c, Some(error)))),
            }
            results
        };
    response(results, rc.version)
}

/// The first TxnOffsetCommit version of transaction version 2.
const ADDS_PARTITION_VERSION: i16 = 5;

/// Transaction version 2: adds the group's offsets partition to the producer's transaction (see the
/// module docs).
async fn add_offsets_partition(
    ctx: &BrokerContext,
    request: &TxnOffsetCommitRequest,
) -> Result<(), ResponseError> {
    let group_id = request.group_id.0.as_str();
    let partition = (
        OFFSETS_TOPIC.to_string(),
        ctx.groups.offsets_partition(group_id)?,
    );
    let mut answers = ctx
        .txn_verifier
        .check_settled(
            TxnCheck::Add,
            &request.transactional_id.0,
            (request.producer_id.0, request.producer_epoch),
            vec![partition.clone()],
            |_| {},
        )
        .await;
    match answers.remove(&partition) {
        Some(Ok(())) => Ok(()),
        Some(Err(ResponseError::ProducerFenced)) => Err(ResponseError::ProducerFenced),
        // As a transaction version 2 Produce answers: the retriable ones are NOT_ENOUGH_REPLICAS,
        // which the producer retries without looking the group coordinator up again.
        Some(Err(error)) => Err(txn_verifier::translate(error, 12)),
        None => Err(ResponseError::InvalidTxnState),
    }
}

fn response(
    results: Vec<(OffsetCommit, Option<ResponseError>)>,
    version: i16,
) -> TxnOffsetCommitResponse {
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (commit, error) in results {
        let error = error.map(|e| fenced_error_for(e, version, 3));
        let partition = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(commit.partition)
            .with_error_code(super::error_code(error));
        match topics
            .iter_mut()
            .find(|t| t.name.0.as_str() == commit.topic)
        {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(commit.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
