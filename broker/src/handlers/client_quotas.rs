//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), KIP-546: client quotas live in the
//! metadata log (`chronik_metadata::quotas`). Describe is answered from this broker's image with
//! Kafka's filter rules (`ClientQuotasImage.describe`); Alter is forwarded to the controller quorum and
//! answered once this broker's image holds the change. `crate::quota` enforces them.
//!
//! What must stay true: a filter Kafka refuses is refused with its message, an entry is answered
//! for every entry of an Alter in order, and a describe lists every quota of each matching entity.

use std::collections::{BTreeMap, BTreeSet};

use chronik_metadata::acl::AclOperation;
use chronik_metadata::quotas::{QuotaEntity, CLIENT_ID, IP, USER};
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{await_local_image, controller_failure, error_message, kafka_code};
use super::{BrokerContext, RequestContext};

/// How long an answered change may wait for the local image: the request carries no timeout.
const ALTER_WAIT_MS: i32 = 5_000;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub fn handle_describe(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    // Kafka's handleDescribeClientQuotasRequest: DESCRIBE_CONFIGS on the cluster.
    if !ctx.authorize_cluster(rc, AclOperation::DescribeConfigs) {
        return refused(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.".to_owned(),
        );
    }
    let filter = match Filter::new(&request.components, request.strict) {
        Ok(filter) => filter,
        Err((code, message)) => return refused(code, message),
    };
    let image = ctx.metadata.current();
    let entries = image
        .client_quotas
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .parts()
                        .iter()
                        .map(|(kind, name)| {
                            EntityData::default()
                                .with_entity_type(StrBytes::from_string(kind.clone()))
                                .with_entity_name(name.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(key, value)| {
                            ValueData::default()
                                .with_key(StrBytes::from_string(key.clone()))
                                .with_value(*value as f64)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

fn refused(code: ResponseError, message: String) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_entries(None)
}

/// A describe filter: types that must have a given name (`None`: the default), types that must be
/// there (named or default: Kafka's `ClientQuotasImage` matches either), and whether an entity may
/// have other types.
struct Filter {
    exact: BTreeMap<String, Option<String>>,
    specified: BTreeSet<String>,
    strict: bool,
}

impl Filter {
    /// Kafka's checks, in its order and with its messages.
    fn new(components: &[ComponentData], strict: bool) -> Result<Self, (ResponseError, String)> {
        let invalid = |message: String| (ResponseError::InvalidRequest, message);
        let mut filter = Filter {
            exact: BTreeMap::new(),
            specified: BTreeSet::new(),
            strict,
        };
        for component in components {
            let kind = component.entity_type.to_string();
            if kind.is_empty() {
                return Err(invalid("Invalid empty entity type.".to_owned()));
            }
            if filter.exact.contains_key(&kind) || filter.specified.contains(&kind) {
                return Err(invalid(format!(
                    "Entity type {kind} cannot appear more than once in the filter."
                )));
            }
            if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
                return Err((
                    ResponseError::UnsupportedVersion,
                    format!("Unsupported entity type {kind}"),
                ));
            }
            let name = component._match.as_ref().map(|m| m.to_string());
            match component.match_type {
                MATCH_EXACT => {
                    let Some(name) = name else {
                        return Err(invalid(
                            "Request specified MATCH_TYPE_EXACT, but set match string to null."
                                .to_owned(),
                        ));
                    };
                    filter.exact.insert(kind, Some(name));
                }
                MATCH_DEFAULT | MATCH_SPECIFIED if name.is_some() => {
                    let which = if component.match_type == MATCH_DEFAULT {
                        "MATCH_TYPE_DEFAULT"
                    } else {
                        "MATCH_TYPE_SPECIFIED"
                    };
                    return Err(invalid(format!(
                        "Request specified {which}, but also specified a match string."
                    )));
                }
                MATCH_DEFAULT => {
                    filter.exact.insert(kind, None);
                }
                MATCH_SPECIFIED => {
                    filter.specified.insert(kind);
                }
                other => return Err(invalid(format!("Unknown match type {other}"))),
            }
        }
        let names = |kind: &str| filter.exact.contains_key(kind) || filter.specified.contains(kind);
        if names(IP) && (names(USER) || names(CLIENT_ID)) {
            return Err(invalid(
                "Invalid entity filter component combination. IP filter component should not be \
                 used with user or clientId filter component."
                    .to_owned(),
            ));
        }
        Ok(filter)
    }

    /// Kafka's `ClientQuotasImage.matches`.
    fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.strict && entity.parts().len() != self.exact.len() + self.specified.len() {
            return false;
        }
        self.exact
            .iter()
            .all(|(kind, name)| entity.part(kind) == Some(name))
            && self
                .specified
                .iter()
                .all(|kind| entity.part(kind).is_some())
    }
}

pub async fn handle_alter(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let entity_of = |entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData| {
        entry
            .entity
            .iter()
            .map(|e| {
                AlteredEntity::default()
                    .with_entity_type(e.entity_type.clone())
                    .with_entity_name(e.entity_name.clone())
            })
            .collect::<Vec<_>>()
    };
    let answer = |answers: Vec<(i16, String)>| {
        let entries = request
            .entries
            .iter()
            .zip(answers)
            .map(|(entry, (code, message))| {
                AlteredEntry::default()
                    .with_entity(entity_of(entry))
                    .with_error_code(code)
                    .with_error_message(error_message(code, message))
            })
            .collect();
        AlterClientQuotasResponse::default().with_entries(entries)
    };
    let all = |code: i16, message: String| vec![(code, message); request.entries.len()];
    // Kafka's handleAlterClientQuotasRequest: ALTER_CONFIGS on the cluster, else every entry refused.
    if !ctx.authorize_cluster(rc, AclOperation::AlterConfigs) {
        return answer(all(
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.".to_owned(),
        ));
    }
    let call = pb::AlterClientQuotasRequest {
        entries: request
            .entries
            .iter()
            .map(|entry| pb::ClientQuotaAlteration {
                entity: entry
                    .entity
                    .iter()
                    .map(|e| pb::QuotaEntityPart {
                        entity_type: e.entity_type.to_string(),
                        name: e.entity_name.as_ref().map(|n| n.to_string()),
                    })
                    .collect(),
                ops: entry
                    .ops
                    .iter()
                    .map(|op| pb::ClientQuotaOp {
                        key: op.key.to_string(),
                        value: op.value,
                        remove: op.remove,
                    })
                    .collect(),
            })
            .collect(),
        validate_only: request.validate_only,
    };
    match ctx.controller.alter_client_quotas(call).await {
        Ok(reply) if reply.results.len() == request.entries.len() => {
            await_local_image(ctx, reply.metadata_offset, ALTER_WAIT_MS, "client quotas").await;
            answer(
                reply
                    .results
                    .into_iter()
                    .map(|r| (kafka_code(r.error_code), r.error_message))
                    .collect(),
            )
        }
        Ok(reply) => answer(all(
            ResponseError::UnknownServerError.code(),
            format!(
                "the controller answered {} of {} entries",
                reply.results.len(),
                request.entries.len()
            ),
        )),
        Err(e) => {
            debug!(error = %e, version = rc.version, "AlterClientQuotas not forwarded");
            let (code, message) = controller_failure(&e);
            answer(all(code, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(kind: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(StrBytes::from_string(kind.to_owned()))
            .with_match_type(match_type)
            .with_match(name.map(|n| StrBytes::from_string(n.to_owned())))
    }

    fn entity(parts: &[(&str, Option<&str>)]) -> QuotaEntity {
        QuotaEntity::of(parts).unwrap()
    }

    #[test]
    fn filters_match_as_kafkas() {
        let alice = entity(&[(USER, Some("alice"))]);
        let alice_app = entity(&[(USER, Some("alice")), (CLIENT_ID, Some("app"))]);
        let default_user = entity(&[(USER, None)]);
        let app = entity(&[(CLIENT_ID, Some("app"))]);
        let all = [&alice, &alice_app, &default_user, &app];
        let matching = |components: Vec<ComponentData>, strict| {
            let filter = Filter::new(&components, strict).unwrap();
            all.iter()
                .filter(|e| filter.matches(e))
                .map(|e| (**e).clone())
                .collect::<Vec<_>>()
        };
        let exact_alice = || vec![component(USER, MATCH_EXACT, Some("alice"))];
        assert_eq!(
            matching(exact_alice(), false),
            vec![alice.clone(), alice_app.clone()]
        );
        assert_eq!(matching(exact_alice(), true), vec![alice.clone()]);
        assert_eq!(
            matching(vec![component(USER, MATCH_DEFAULT, None)], false),
            vec![default_user.clone()]
        );
        // Any user, the default one included.
        assert_eq!(
            matching(vec![component(USER, MATCH_SPECIFIED, None)], false),
            vec![alice.clone(), alice_app.clone(), default_user.clone()]
        );
        assert_eq!(
            matching(vec![component(CLIENT_ID, MATCH_SPECIFIED, None)], true),
            vec![app.clone()]
        );
        // No component, not strict: everything.
        assert_eq!(matching(vec![], false).len(), 4);
        assert!(matching(vec![], true).is_empty());
    }

    /// DESCRIBE_CONFIGS and ALTER_CONFIGS on the cluster, as Kafka's handlers check: a principal with
    /// neither gets CLUSTER_AUTHORIZATION_FAILED (on every entry of an alter), and no quota changes.
    #[tokio::test]
    async fn both_apis_need_the_cluster_config_operations() {
        use kafka_protocol::messages::alter_client_quotas_request::{
            EntityData, EntryData, OpData,
        };

        let broker = crate::handlers::test_support::broker_with_admin_only_cluster(1);
        let rc = broker.rc(1, "PLAINTEXT");
        let described = handle_describe(&broker.ctx, &rc, DescribeClientQuotasRequest::default());
        assert_eq!(
            described.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        assert_eq!(described.entries, None);

        let entry = EntryData::default()
            .with_entity(vec![EntityData::default()
                .with_entity_type(StrBytes::from_static_str(USER))
                .with_entity_name(Some(StrBytes::from_static_str("alice")))])
            .with_ops(vec![OpData::default()
                .with_key(StrBytes::from_static_str("producer_byte_rate"))
                .with_value(1024.0)]);
        let request = AlterClientQuotasRequest::default().with_entries(vec![entry.clone(), entry]);
        let altered = handle_alter(&broker.ctx, &rc, request).await;
        assert_eq!(altered.entries.len(), 2);
        for entry in &altered.entries {
            assert_eq!(
                entry.error_code,
                ResponseError::ClusterAuthorizationFailed.code()
            );
            assert_eq!(entry.entity[0].entity_name.as_deref(), Some("alice"));
        }
        assert!(broker.ctx.metadata.current().client_quotas.is_empty());
    }

    #[test]
    fn filters_kafka_refuses_are_refused_with_its_messages() {
        let refusal = |components: Vec<ComponentData>| {
            Filter::new(&components, false).err().expect("refused")
        };
        let (code, message) = refusal(vec![
            component(USER, MATCH_SPECIFIED, None),
            component(USER, MATCH_DEFAULT, None),
        ]);
        assert_eq!(code, ResponseError::InvalidRequest);
        assert!(
            message.contains("cannot appear more than once"),
            "{message}"
        );
        let (code, _) = refusal(vec![component("group", MATCH_SPECIFIED, None)]);
        assert_eq!(code, ResponseError::UnsupportedVersion);
        let (_, message) = refusal(vec![component(USER, MATCH_EXACT, None)]);
        assert!(message.contains("MATCH_TYPE_EXACT"), "{message}");
        let (_, message) = refusal(vec![component(USER, MATCH_DEFAULT, Some("x"))]);
        assert!(message.contains("MATCH_TYPE_DEFAULT"), "{message}");
        let (_, message) = refusal(vec![
            component(IP, MATCH_SPECIFIED, None),
            component(USER, MATCH_SPECIFIED, None),
        ]);
        assert!(message.contains("IP filter component"), "{message}");
        let (code, message) = refusal(vec![component(USER, 7, None)]);
        assert_eq!(code, ResponseError::InvalidRequest);
        assert_eq!(message, "Unknown match type 7");
    }
}
