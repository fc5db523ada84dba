//! DeleteGroups (key 42, v0–2): removes groups that have no members, with their committed offsets
//! (NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for an unknown group).

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{error_code, BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let error = if ctx.authorize_group(rc, AclOperation::Delete, &group_id) {
            ctx.groups.delete_group(&group_id).await
        } else {
            Some(ResponseError::GroupAuthorizationFailed)
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error_code(error)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
