//! ConsumerGroupDescribe (key 69, v0–1): KIP-848 consumer groups with their epochs, assignor and
//! members (subscription, assignment and target). A group that is not a consumer group is
//! GROUP_ID_NOT_FOUND, as in Kafka; DESCRIBE on the group is required (GROUP_AUTHORIZATION_FAILED),
//! and on every topic of its members' assignments and targets, else the group is described by
//! TOPIC_AUTHORIZATION_FAILED alone (KAFKA-18813: a description must not show topics the client may
//! not see); every group is UNSUPPORTED_VERSION while the cluster's `group.version` is 0.

use std::collections::BTreeSet;

use chronik_metadata::acl::{AclOperation, ResourceType};
use chronik_metadata::features::GROUP_VERSION;
use chronik_metadata::MetadataImage;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::describe_groups::AUTHORIZED_OPERATIONS_OMITTED;
use super::{BrokerContext, RequestContext};
use crate::group::consumer_records::TopicPartitions as Partitions;

/// Kafka's `MemberType` of a member speaking the consumer protocol (KIP-1099, v1).
const CONSUMER_MEMBER: i8 = 1;

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = ctx.metadata.current();
    // As Kafka: the protocol is off below group.version 1.
    let served = image.feature_level(GROUP_VERSION) >= 1;
    let groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            let id = group_id.to_string();
            let described = DescribedGroup::default()
                .with_group_id(group_id)
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            if !served {
                return described.with_error_code(ResponseError::UnsupportedVersion.code());
            }
            if !ctx.authorize_group(rc, AclOperation::Describe, &id) {
                return described.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let group = match ctx.groups.describe_consumer_group(&id) {
                Ok(group) => group,
                Err(error) => {
                    let message = (error == ResponseError::GroupIdNotFound)
                        .then(|| format!("Group {id} is not a consumer group."));
                    return described
                        .with_error_code(error.code())
                        .with_error_message(message.map(StrBytes::from_string));
                }
            };
            let topics: BTreeSet<&Uuid> = group
                .members
                .iter()
                .flat_map(|m| m.assigned.keys().chain(m.target.keys()))
                .collect();
            let hidden = topics
                .into_iter()
                .filter_map(|id| image.topics.get(id))
                .any(|t| !ctx.authorize_topic(rc, AclOperation::Describe, &t.name));
            if hidden {
                // Kafka's message (KAFKA-18813).
                return described
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "The group has described topic(s) that the client is not authorized to describe.",
                    )));
            }
            let operations = if request.include_authorized_operations {
                ctx.authorized_operations(rc, ResourceType::Group, &id)
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            };
            described
                .with_group_state(StrBytes::from_static_str(group.state.name()))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.assignment_epoch)
                .with_assignor_name(StrBytes::from_static_str(group.assignor))
                .with_authorized_operations(operations)
                .with_members(
                    group
                        .members
                        .into_iter()
                        .map(|m| {
                            let md = m.metadata;
                            Member::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_instance_id(md.instance_id.map(StrBytes::from_string))
                                .with_rack_id(md.rack_id.map(StrBytes::from_string))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(StrBytes::from_string(md.client_id))
                                .with_client_host(StrBytes::from_string(md.client_host))
                                .with_subscribed_topic_names(
                                    md.subscribed_topic_names
                                        .into_iter()
                                        .map(|t| TopicName(StrBytes::from_string(t)))
                                        .collect(),
                                )
                                .with_subscribed_topic_regex(
                                    md.subscribed_topic_regex.map(StrBytes::from_string),
                                )
                                .with_assignment(assignment(&image, m.assigned))
                                .with_target_assignment(assignment(&image, m.target))
                                .with_member_type(if rc.version >= 1 {
                                    CONSUMER_MEMBER
                                } else {
                                    -1
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

/// Partitions with their topic names (a topic deleted since is left out).
fn assignment(image: &MetadataImage, partitions: Partitions) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .into_iter()
            .filter_map(|(topic_id, ps)| {
                let name = image.topics.get(&topic_id)?.name.clone();
                Some(
                    TopicPartitions::default()
                        .with_topic_id(topic_id)
                        .with_topic_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(ps.into_iter().collect()),
                )
            })
            .collect(),
    )
}
