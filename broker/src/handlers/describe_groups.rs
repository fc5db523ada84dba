//! DescribeGroups (key 15, v0–5): state, protocol and members of each group. Member metadata and
//! assignments are shown only while the group is Stable (as Kafka does); an unknown group is "Dead"
//! with no error. Authorized operations (v3+) are answered as Kafka answers them without an
//! authorizer: when the client asks, every group described without an error gets every operation a
//! group supports; otherwise, and for a group with an error, the schema's "not requested" value.

use chronik_metadata::acl::{AclOperation, ResourceType};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};

pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's `AclEntry.supportedOperations(GROUP)` (READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS) as the `AclOperation` bit field `AuthHelper.authorizedOperations` answers.
#[cfg(test)]
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = 3400;

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    // The field exists from v3; below it the codec decodes it as false.
    let include_operations = rc.version >= 3 && request.include_authorized_operations;
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let described =
                DescribedGroup::default().with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            let operations = if include_operations {
                ctx.authorized_operations(rc, ResourceType::Group, &group_id)
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            };
            let described_group = if ctx.authorize_group(rc, AclOperation::Describe, &group_id) {
                ctx.groups.describe_group(&group_id)
            } else {
                Err(kafka_protocol::error::ResponseError::GroupAuthorizationFailed)
            };
            match described_group {
                // A consumer group (KIP-848): Dead without an error below v6, as Kafka answers.
                Err(kafka_protocol::error::ResponseError::GroupIdNotFound) => described
                    .with_group_id(group_id)
                    .with_group_state(StrBytes::from_static_str("Dead")),
                Err(error) => described
                    .with_group_id(group_id)
                    .with_error_code(error.code()),
                Ok(summary) => described
                    .with_authorized_operations(operations)
                    .with_group_id(group_id)
                    .with_group_state(StrBytes::from_static_str(summary.state.name()))
                    .with_protocol_type(StrBytes::from_string(summary.protocol_type))
                    .with_protocol_data(StrBytes::from_string(summary.protocol))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_group_instance_id(
                                        m.group_instance_id.map(StrBytes::from_string),
                                    )
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::GroupId;
    use uuid::Uuid;

    use super::*;
    use crate::group::OFFSETS_TOPIC;
    use crate::handlers::test_support::{assert_encodes, broker, topic, TestBroker};

    fn describe(b: &TestBroker, version: i16, include: bool) -> DescribeGroupsResponse {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("g"))])
            .with_include_authorized_operations(include);
        let response = handle(&b.ctx, &b.rc(version, "PLAINTEXT"), request);
        assert_encodes(&response, version);
        response
    }

    /// Broker 1 leads the only offsets partition and has loaded it.
    async fn coordinator() -> TestBroker {
        let mut records = vec![broker(1, None, false)];
        records.extend(topic(OFFSETS_TOPIC, Uuid::new_v4(), &[&[1]]));
        let b = TestBroker::new(1, &records);
        b.ctx
            .replicas
            .apply_metadata(&b.ctx.metadata.current(), true);
        tokio::spawn(b.ctx.groups.clone().run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while b.ctx.groups.describe_group("g").is_err() {
            assert!(tokio::time::Instant::now() < deadline, "never loaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b
    }

    #[tokio::test]
    async fn authorized_operations_only_when_asked_and_described() {
        let b = coordinator().await;
        let asked = describe(&b, 5, true);
        assert_eq!(asked.groups[0].error_code, 0);
        assert_eq!(&*asked.groups[0].group_state, "Dead");
        assert_eq!(
            asked.groups[0].authorized_operations,
            GROUP_AUTHORIZED_OPERATIONS
        );
        for (version, include) in [(5, false), (3, false), (2, true), (0, false)] {
            let response = describe(&b, version, include);
            assert_eq!(
                response.groups[0].authorized_operations, AUTHORIZED_OPERATIONS_OMITTED,
                "v{version} include={include}"
            );
        }
    }

    #[tokio::test]
    async fn a_group_answered_with_an_error_gets_no_operations() {
        // No offsets topic: nobody coordinates the group.
        let b = TestBroker::new(1, &[broker(1, None, false)]);
        let response = describe(&b, 5, true);
        assert_eq!(
            response.groups[0].error_code,
            ResponseError::NotCoordinator.code()
        );
        assert_eq!(
            response.groups[0].authorized_operations,
            AUTHORIZED_OPERATIONS_OMITTED
        );
    }

    #[test]
    fn the_group_bit_field_matches_kafka() {
        // AclOperation codes: READ 3, DELETE 6, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11.
        let bits = [3, 6, 8, 10, 11].iter().fold(0, |acc, op| acc | (1 << op));
        assert_eq!(GROUP_AUTHORIZED_OPERATIONS, bits);
    }
}
