//! Heartbeat (key 12, v0–4): keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{error_code, BrokerContext, RequestContext};

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    if !ctx.authorize_group(rc, AclOperation::Read, &request.group_id) {
        return HeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let error = ctx.groups.heartbeat(
        &request.group_id,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(error_code(error))
}
