//! LeaveGroup (key 13, v0–5): members leave and the rest rebalance. v0–2 name one member id; v3+ a
//! batch of members by member id or group instance id, each answered on its own.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{error_code, BrokerContext, RequestContext};

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if !ctx.authorize_group(rc, AclOperation::Read, &request.group_id) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let members: Vec<(String, Option<String>)> = if rc.version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match ctx.groups.leave_group(&request.group_id, &members).await {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(results) if rc.version >= 3 => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(results)
                .map(|(m, error)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(error_code(error))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default()
            .with_error_code(error_code(results.into_iter().next().flatten())),
    }
}
