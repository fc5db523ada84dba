//! ConsumerGroupHeartbeat (key 68, v0–1): a member of a KIP-848 consumer group joins, heartbeats and
//! leaves; the coordinator answers with its member epoch and, when it changed, its assignment.
//!
//! Served while the cluster finalizes `group.version` 1 or more (UNSUPPORTED_VERSION otherwise, as
//! Kafka's `KafkaApis.handleConsumerGroupHeartbeat`). The request is checked as Kafka's
//! `GroupCoordinatorService.throwIfConsumerGroupHeartbeatRequestIsInvalid` does (INVALID_REQUEST,
//! UNSUPPORTED_ASSIGNOR), then READ on the group, then DESCRIBE on each topic named in the
//! subscription (TOPIC_AUTHORIZATION_FAILED).
//!
//! v1 (KIP-1082) has the client choose its member id; v0 lets a joining member send an empty one and
//! the coordinator picks it. v1 also carries `SubscribedTopicRegex`, matched against whole topic
//! names in RE2 syntax (librdkafka 2.x speaks only v1).

use chronik_metadata::acl::AclOperation;
use chronik_metadata::features::GROUP_VERSION;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};
use crate::group::assignor::ASSIGNORS;
use crate::group::consumer_group::{Heartbeat, LEAVE_EPOCH, STATIC_LEAVE_EPOCH};
use crate::group::consumer_records::TopicPartitions as Partitions;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    match heartbeat(ctx, rc, request).await {
        Ok(response) => response,
        Err((error, message)) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message((!message.is_empty()).then(|| StrBytes::from_string(message))),
    }
}

async fn heartbeat(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ConsumerGroupHeartbeatRequest,
) -> Result<ConsumerGroupHeartbeatResponse, (ResponseError, String)> {
    if ctx.metadata.current().feature_level(GROUP_VERSION) < 1 {
        return Err((
            ResponseError::UnsupportedVersion,
            "the consumer group protocol is off: the cluster's group.version is 0".into(),
        ));
    }
    validate(&request, rc.version)?;
    let group_id = request.group_id.to_string();
    if !ctx.authorize_group(rc, AclOperation::Read, &group_id) {
        return Err((ResponseError::GroupAuthorizationFailed, String::new()));
    }
    if let Some(names) = &request.subscribed_topic_names {
        if names
            .iter()
            .any(|t| !ctx.authorize_topic(rc, AclOperation::Describe, t))
        {
            return Err((
                ResponseError::TopicAuthorizationFailed,
                "not authorized to describe every subscribed topic".into(),
            ));
        }
    }
    let member_id = if request.member_id.is_empty() {
        // v0 only (checked above): the coordinator names a joining member.
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        request.member_id.to_string()
    };
    let owned = request.topic_partitions.as_ref().map(|topics| {
        let mut owned = Partitions::new();
        for t in topics {
            owned
                .entry(t.topic_id)
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        owned
    });
    let heartbeat = Heartbeat {
        member_id,
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: if rc.version >= 1 {
            request
                .subscribed_topic_regex
                .as_ref()
                .map(|s| s.to_string())
        } else {
            None
        },
        server_assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: rc.client_id(),
        client_host: rc.client_host(),
    };
    let describable = |topic: &str| ctx.authorize_topic(rc, AclOperation::Describe, topic);
    let reply = ctx
        .groups
        .consumer_group_heartbeat(&group_id, heartbeat, &describable)
        .await?;
    Ok(ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(StrBytes::from_string(reply.member_id)))
        .with_member_epoch(reply.member_epoch)
        .with_heartbeat_interval_ms(reply.heartbeat_interval_ms)
        .with_assignment(reply.assignment.map(|assigned| {
            Assignment::default().with_topic_partitions(
                assigned
                    .into_iter()
                    .map(|(topic_id, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(topic_id)
                            .with_partitions(partitions.into_iter().collect())
                    })
                    .collect(),
            )
        })))
}

/// Kafka's stateless checks of a heartbeat.
fn validate(
    request: &ConsumerGroupHeartbeatRequest,
    version: i16,
) -> Result<(), (ResponseError, String)> {
    let invalid = |message: &str| Err((ResponseError::InvalidRequest, message.to_owned()));
    let blank = |s: &Option<StrBytes>| s.as_ref().is_some_and(|s| s.trim().is_empty());
    let epoch = request.member_epoch;
    if request.member_id.trim().is_empty() && (version >= 1 || epoch > 0 || epoch == LEAVE_EPOCH) {
        return invalid("MemberId can't be empty.");
    }
    if request.group_id.trim().is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if blank(&request.instance_id) {
        return invalid("InstanceId can't be empty.");
    }
    if blank(&request.rack_id) {
        return invalid("RackId can't be empty.");
    }
    match epoch {
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if request
                .topic_partitions
                .as_ref()
                .is_none_or(|t| !t.is_empty())
            {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            let regex = version >= 1 && request.subscribed_topic_regex.is_some();
            if request.subscribed_topic_names.is_none() && !regex {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH if request.instance_id.is_none() => {
            return invalid("InstanceId can't be null.");
        }
        e if e < STATIC_LEAVE_EPOCH => return invalid("MemberEpoch is invalid."),
        _ => {}
    }
    if let Some(assignor) = &request.server_assignor {
        if !ASSIGNORS.contains(&assignor.as_str()) {
            return Err((
                ResponseError::UnsupportedAssignor,
                format!("ServerAssignor {assignor} is not supported. Supported assignors: uniform, range."),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as Owned;
    use kafka_protocol::messages::GroupId;

    fn join() -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(300_000)
            .with_subscribed_topic_names(Some(vec![]))
            .with_topic_partitions(Some(vec![]))
    }

    fn code(result: Result<(), (ResponseError, String)>) -> Option<ResponseError> {
        result.err().map(|(e, _)| e)
    }

    #[test]
    fn kafkas_stateless_checks() {
        assert_eq!(code(validate(&join(), 1)), None);
        // v1 needs the client's member id; v0 lets a joining member leave it to the coordinator.
        let anonymous = join().with_member_id(StrBytes::from_static_str(""));
        assert_eq!(
            code(validate(&anonymous, 1)),
            Some(ResponseError::InvalidRequest)
        );
        assert_eq!(code(validate(&anonymous, 0)), None);
        assert_eq!(
            code(validate(&join().with_topic_partitions(None), 1)),
            Some(ResponseError::InvalidRequest)
        );
        let owning = join().with_topic_partitions(Some(vec![Owned::default()]));
        assert_eq!(
            code(validate(&owning, 1)),
            Some(ResponseError::InvalidRequest)
        );
        assert_eq!(
            code(validate(&join().with_rebalance_timeout_ms(-1), 1)),
            Some(ResponseError::InvalidRequest)
        );
        let unsubscribed = join().with_subscribed_topic_names(None);
        assert_eq!(
            code(validate(&unsubscribed, 1)),
            Some(ResponseError::InvalidRequest)
        );
        let by_regex =
            unsubscribed.with_subscribed_topic_regex(Some(StrBytes::from_static_str("")));
        assert_eq!(code(validate(&by_regex, 1)), None);
        assert_eq!(
            code(validate(&join().with_member_epoch(-2), 1)),
            Some(ResponseError::InvalidRequest),
            "a static leave names its instance"
        );
        assert_eq!(
            code(validate(&join().with_member_epoch(-3), 1)),
            Some(ResponseError::InvalidRequest)
        );
        let cooperative = join().with_server_assignor(Some(StrBytes::from_static_str("sticky")));
        assert_eq!(
            code(validate(&cooperative, 1)),
            Some(ResponseError::UnsupportedAssignor)
        );
        let range = join().with_server_assignor(Some(StrBytes::from_static_str("range")));
        assert_eq!(code(validate(&range, 1)), None);
    }
}
