//! ListGroups (key 16, v0–5): the groups this broker coordinates (clients ask every broker). v4 filters
//! by state and v5 by group type (KIP-848), both as Kafka's `GroupMetadataManager.listGroups` does: a
//! state matches case-insensitively after trimming, a type case-insensitively, an unknown type matches
//! no group, and an empty filter matches every group. v5 answers each group's type: `classic`, or
//! `consumer` for a group of the KIP-848 protocol.

use chronik_metadata::acl::AclOperation;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, BrokerContext, RequestContext};
use crate::group::coordinator::ListedGroup as CoordinatedGroup;

/// The v4 state and v5 type filters of one request; empty ones match everything.
#[derive(Debug, Default)]
struct Filters {
    /// Lowercased and trimmed.
    states: Vec<String>,
    /// Lowercased.
    types: Vec<String>,
}

impl Filters {
    fn of(request: &ListGroupsRequest, version: i16) -> Self {
        let states = if version >= 4 {
            request
                .states_filter
                .iter()
                .map(|s| s.to_lowercase().trim().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        let types = if version >= 5 {
            request
                .types_filter
                .iter()
                .map(|t| t.to_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        Filters { states, types }
    }

    fn matches(&self, group: &CoordinatedGroup) -> bool {
        let state = group.state.to_lowercase();
        (self.states.is_empty() || self.states.contains(&state))
            && (self.types.is_empty() || self.types.iter().any(|t| t == group.group_type))
    }
}

pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let (error, groups) = ctx.groups.list_groups();
    let filters = Filters::of(&request, rc.version);
    // Kafka's handleListGroupsRequest: every group with DESCRIBE on the cluster, else those the
    // principal may describe.
    let all_groups = ctx.authorize_cluster(rc, AclOperation::Describe);
    ListGroupsResponse::default()
        .with_error_code(error_code(error))
        .with_groups(
            groups
                .into_iter()
                .filter(|g| filters.matches(g))
                .filter(|g| {
                    all_groups || ctx.authorize_group(rc, AclOperation::Describe, &g.group_id)
                })
                .map(|g| {
                    ListedGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                        .with_protocol_type(StrBytes::from_string(g.protocol_type))
                        .with_group_state(StrBytes::from_static_str(g.state))
                        .with_group_type(StrBytes::from_static_str(g.group_type))
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupState;
    use crate::handlers::test_support::{assert_encodes, TestBroker};

    fn group(id: &str, state: GroupState) -> CoordinatedGroup {
        CoordinatedGroup {
            group_id: id.into(),
            protocol_type: "consumer".into(),
            state: state.name(),
            group_type: crate::group::coordinator::CLASSIC_GROUP_TYPE,
        }
    }

    fn request(states: &[&str], types: &[&str]) -> ListGroupsRequest {
        ListGroupsRequest::default()
            .with_states_filter(
                states
                    .iter()
                    .map(|s| StrBytes::from(s.to_string()))
                    .collect(),
            )
            .with_types_filter(
                types
                    .iter()
                    .map(|t| StrBytes::from(t.to_string()))
                    .collect(),
            )
    }

    fn listed(states: &[&str], types: &[&str], version: i16) -> Vec<String> {
        let filters = Filters::of(&request(states, types), version);
        [
            group("empty", GroupState::Empty),
            group("stable", GroupState::Stable),
            group("joining", GroupState::PreparingRebalance),
        ]
        .into_iter()
        .filter(|g| filters.matches(g))
        .map(|g| g.group_id)
        .collect()
    }

    #[test]
    fn states_match_case_insensitively_after_trimming() {
        assert_eq!(listed(&[], &[], 4), ["empty", "stable", "joining"]);
        assert_eq!(listed(&["STABLE", " empty "], &[], 4), ["empty", "stable"]);
        assert_eq!(listed(&["preparingrebalance"], &[], 4), ["joining"]);
        assert!(listed(&["Rebalancing"], &[], 4).is_empty());
        // v3 has no state filter: whatever decoded there is ignored.
        assert_eq!(listed(&["Stable"], &[], 3).len(), 3);
    }

    #[test]
    fn every_group_is_classic_and_unknown_types_match_nothing() {
        assert_eq!(listed(&[], &["Classic"], 5).len(), 3);
        assert_eq!(listed(&[], &["consumer", "classic"], 5).len(), 3);
        assert!(listed(&[], &["consumer"], 5).is_empty());
        assert!(listed(&[], &["share"], 5).is_empty());
        assert!(listed(&[], &["no-such-type"], 5).is_empty());
        // Kafka parses types without trimming.
        assert!(listed(&[], &[" classic"], 5).is_empty());
        // Both filters apply.
        assert_eq!(listed(&["stable"], &["classic"], 5), ["stable"]);
        assert!(listed(&["stable"], &["consumer"], 5).is_empty());
        // v4 has no type filter.
        assert_eq!(listed(&[], &["consumer"], 4).len(), 3);
    }

    #[tokio::test]
    async fn every_version_encodes_with_the_group_type_from_v5() {
        let broker = TestBroker::new(1, &[]);
        for version in 0..=5 {
            let response = handle(
                &broker.ctx,
                &broker.rc(version, "PLAINTEXT"),
                request(&["Stable"], &["classic"]),
            );
            assert_encodes(&response, version);
            assert_eq!(response.error_code, 0, "v{version}");
        }
    }
}
