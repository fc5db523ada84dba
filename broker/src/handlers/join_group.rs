//! JoinGroup (key 11, v0–9): enter a group or rejoin it for a rebalance (Kafka's classic group protocol,
//! see `group::classic_group`). The answer may wait for the whole join phase. v0 has no rebalance timeout
//! (the session timeout stands in), v4+ hands new members their id with MEMBER_ID_REQUIRED first, v5+
//! carries group instance ids (static membership), v7+ the protocol type, v9 `SkipAssignment`.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};
use crate::group::classic_group::JoinRequest;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if !ctx.authorize_group(rc, AclOperation::Read, &request.group_id) {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1);
    }
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: rc.client_id(),
        client_host: rc.client_host(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if rc.version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: rc.version >= 4,
    };
    let r = ctx.groups.join_group(&request.group_id, join).await;
    JoinGroupResponse::default()
        .with_error_code(error_code(r.error))
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(r.leader))
        .with_skip_assignment(r.skip_assignment && rc.version >= 9)
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
