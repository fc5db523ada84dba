//! ListGroups (key 16, v0–4): the groups this broker coordinates (clients ask every broker). v4
//! filters by state; the classic protocol is the only group type here, so v5's type filter is not
//! served.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let (error, groups) = ctx.groups.list_groups();
    let filter: Vec<String> = if rc.version >= 4 {
        request
            .states_filter
            .iter()
            .map(|s| s.to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    ListGroupsResponse::default()
        .with_error_code(error_code(error))
        .with_groups(
            groups
                .into_iter()
                .filter(|g| filter.is_empty() || filter.contains(&g.state.name().to_lowercase()))
                .map(|g| {
                    ListedGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                        .with_protocol_type(StrBytes::from_string(g.protocol_type))
                        .with_group_state(StrBytes::from_static_str(g.state.name()))
                })
                .collect(),
        )
}
