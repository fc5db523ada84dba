//! SyncGroup (key 14, v0–5): the leader hands in the assignment; every member gets its own once the
//! group's metadata is committed to the offsets topic. v5 validates the protocol type and name.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};
use crate::group::classic_group::SyncRequest;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if !ctx.authorize_group(rc, AclOperation::Read, &request.group_id) {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let sync = SyncRequest {
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        protocol_type: request.protocol_type.map(|t| t.to_string()),
        protocol_name: request.protocol_name.map(|n| n.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let r = ctx.groups.sync_group(&request.group_id, sync).await;
    let response = SyncGroupResponse::default()
        .with_error_code(error_code(r.error))
        .with_assignment(r.assignment);
    if rc.version >= 5 {
        response
            .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
    } else {
        response
    }
}
