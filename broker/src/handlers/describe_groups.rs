//! DescribeGroups (key 15, v0–5): state, protocol and members of each group. Member metadata and
//! assignments are shown only while the group is Stable (as Kafka does); an unknown group is "Dead"
//! with no error. Authorized operations (v3+) are not computed: Kafka's "not requested" value.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerContext, RequestContext};

const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    ctx: &BrokerContext,
    _rc: &RequestContext<'_>,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let described =
                DescribedGroup::default().with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            match ctx.groups.describe_group(&group_id) {
                Err(error) => described
                    .with_group_id(group_id)
                    .with_error_code(error.code()),
                Ok(summary) => described
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
