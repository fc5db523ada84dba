//! CreateAcls (key 30), DescribeAcls (key 29) and DeleteAcls (key 31), v1–3, as Kafka's `AclApis`
//! answers them. Creations and deletions are forwarded to the controller quorum, which stores ACLs in
//! the metadata log (KIP-801); the answer is sent once this broker's image holds the change.
//! DescribeAcls is answered from this broker's image.
//!
//! What must stay true: without `--authorizer` all three answer SECURITY_DISABLED, as Kafka does;
//! with one, CreateAcls and DeleteAcls need ALTER on the cluster and DescribeAcls DESCRIBE
//! (CLUSTER_AUTHORIZATION_FAILED). Each creation and each filter is answered exactly once, in
//! request order. v0, which could name only LITERAL patterns, is not served: Kafka 4.x dropped it
//! (KIP-896), and so does the codec.

use std::collections::BTreeMap;

use chronik_metadata::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
    CLUSTER_NAME,
};
use chronik_metadata::convert::{acl_filter_to_proto, acl_from_proto, acl_to_proto};
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{await_local_image, controller_failure, error_message, kafka_code};
use super::{BrokerContext, RequestContext};

/// Kafka's message when no authorizer is configured.
const NO_AUTHORIZER: &str = "No Authorizer is configured.";
/// How long a forwarded change may wait for the local image: these requests carry no timeout.
const ACL_WAIT_MS: i32 = 5_000;

/// Why the whole request is refused before any item is looked at, if it is.
fn refused(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    operation: AclOperation,
) -> Option<(i16, String)> {
    if !ctx.authorize_cluster(rc, operation) {
        return Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            String::new(),
        ));
    }
    if ctx.authorizer.is_none() {
        return Some((
            ResponseError::SecurityDisabled.code(),
            NO_AUTHORIZER.to_owned(),
        ));
    }
    None
}

fn text(s: &StrBytes) -> String {
    s.to_string()
}

pub async fn handle_create(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let count = request.creations.len();
    let answers = match refused(ctx, rc, AclOperation::Alter) {
        Some(answer) => vec![answer; count],
        None => create(ctx, rc, request).await,
    };
    CreateAclsResponse::default().with_results(
        answers
            .into_iter()
            .map(|(code, message)| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(error_message(code, message))
            })
            .collect(),
    )
}

/// The checks Kafka's `AclApis.handleCreateAcls` makes before the controller's own.
fn check_creation(acl: &AclBinding) -> Result<(), String> {
    if acl.resource_type == ResourceType::Cluster && acl.resource_name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    if acl.resource_name.is_empty() {
        return Err("Invalid empty resource name".into());
    }
    Ok(())
}

async fn create(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: CreateAclsRequest,
) -> Vec<(i16, String)> {
    let mut slots: Vec<Result<usize, String>> = Vec::with_capacity(request.creations.len());
    let mut forward = Vec::new();
    for c in &request.creations {
        let acl = AclBinding {
            resource_type: ResourceType::from_code(c.resource_type),
            resource_name: text(&c.resource_name),
            pattern_type: PatternType::from_code(c.resource_pattern_type),
            principal: text(&c.principal),
            host: text(&c.host),
            operation: AclOperation::from_code(c.operation),
            permission: AclPermissionType::from_code(c.permission_type),
        };
        slots.push(check_creation(&acl).map(|()| {
            forward.push(acl_to_proto(&acl));
            forward.len() - 1
        }));
    }
    let mut results: Vec<(i16, String)> = Vec::new();
    if !forward.is_empty() {
        let count = forward.len();
        match ctx
            .controller
            .create_acls(pb::CreateAclsRequest { creations: forward })
            .await
        {
            Ok(reply) => {
                results = reply
                    .results
                    .into_iter()
                    .map(|r| (kafka_code(r.error_code), r.error_message))
                    .collect();
                await_local_image(ctx, reply.metadata_offset, ACL_WAIT_MS, "ACL change").await;
            }
            Err(e) => {
                debug!(error = %e, version = rc.version, "CreateAcls not forwarded");
                results = vec![controller_failure(&e); count];
            }
        }
    }
    slots
        .into_iter()
        .map(|slot| match slot {
            Err(message) => (ResponseError::InvalidRequest.code(), message),
            Ok(i) => results.get(i).cloned().unwrap_or_else(no_answer),
        })
        .collect()
}

fn no_answer() -> (i16, String) {
    (
        ResponseError::UnknownServerError.code(),
        "the controller did not answer for this item".to_owned(),
    )
}

pub fn handle_describe(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Some((code, message)) = refused(ctx, rc, AclOperation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(error_message(code, message));
    }
    let filter = AclBindingFilter {
        resource_type: ResourceType::from_code(request.resource_type_filter),
        resource_name: request.resource_name_filter.as_ref().map(text),
        pattern_type: PatternType::from_code(request.pattern_type_filter),
        principal: request.principal_filter.as_ref().map(text),
        host: request.host_filter.as_ref().map(text),
        operation: AclOperation::from_code(request.operation),
        permission: AclPermissionType::from_code(request.permission_type),
    };
    if let Err(e) = filter.validate() {
        let code = e.code.code();
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(error_message(code, e.message));
    }
    // Grouped by resource pattern, as Kafka's `DescribeAclsResponse.aclsResources` answers.
    let mut resources: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for acl in ctx.metadata.current().acls.values() {
        if !filter.matches(acl) {
            continue;
        }
        resources
            .entry((
                acl.resource_type,
                acl.resource_name.clone(),
                acl.pattern_type,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(acl.principal.clone()))
                    .with_host(StrBytes::from_string(acl.host.clone()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((resource_type, name, pattern_type), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(resource_type.code())
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(pattern_type.code())
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn handle_delete(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let count = request.filters.len();
    let results = match refused(ctx, rc, AclOperation::Alter) {
        Some((code, message)) => (0..count)
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(error_message(code, message.clone()))
            })
            .collect(),
        None => delete(ctx, rc, request).await,
    };
    DeleteAclsResponse::default().with_filter_results(results)
}

async fn delete(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DeleteAclsRequest,
) -> Vec<DeleteAclsFilterResult> {
    let filters: Vec<pb::AclBindingFilter> = request
        .filters
        .iter()
        .map(|f| {
            acl_filter_to_proto(&AclBindingFilter {
                resource_type: ResourceType::from_code(f.resource_type_filter),
                resource_name: f.resource_name_filter.as_ref().map(text),
                pattern_type: PatternType::from_code(f.pattern_type_filter),
                principal: f.principal_filter.as_ref().map(text),
                host: f.host_filter.as_ref().map(text),
                operation: AclOperation::from_code(f.operation),
                permission: AclPermissionType::from_code(f.permission_type),
            })
        })
        .collect();
    let count = filters.len();
    if count == 0 {
        return Vec::new();
    }
    let failed = |(code, message): (i16, String)| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(error_message(code, message))
    };
    match ctx
        .controller
        .delete_acls(pb::DeleteAclsRequest { filters })
        .await
    {
        Ok(reply) => {
            await_local_image(ctx, reply.metadata_offset, ACL_WAIT_MS, "ACL change").await;
            let mut results: Vec<DeleteAclsFilterResult> = reply
                .results
                .into_iter()
                .map(|r| {
                    let code = kafka_code(r.error_code);
                    if code != 0 {
                        return failed((code, r.error_message));
                    }
                    DeleteAclsFilterResult::default().with_matching_acls(
                        r.matching_acls
                            .iter()
                            .map(|acl| matching_acl(&acl_from_proto(acl)))
                            .collect(),
                    )
                })
                .collect();
            results.resize_with(count, || failed(no_answer()));
            results
        }
        Err(e) => {
            debug!(error = %e, version = rc.version, "DeleteAcls not forwarded");
            let failure = controller_failure(&e);
            (0..count).map(|_| failed(failure.clone())).collect()
        }
    }
}

fn matching_acl(acl: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(acl.resource_type.code())
        .with_resource_name(StrBytes::from_string(acl.resource_name.clone()))
        .with_pattern_type(acl.pattern_type.code())
        .with_principal(StrBytes::from_string(acl.principal.clone()))
        .with_host(StrBytes::from_string(acl.host.clone()))
        .with_operation(acl.operation.code())
        .with_permission_type(acl.permission.code())
}

#[cfg(test)]
mod tests {
    use chronik_metadata::Record;
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use uuid::Uuid;

    use super::*;
    use crate::authorizer::Authorizer;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    fn acl(name: &str, pattern_type: PatternType, operation: AclOperation) -> Record {
        Record::AccessControlEntry {
            id: Uuid::new_v4(),
            acl: AclBinding {
                resource_type: ResourceType::Topic,
                resource_name: name.into(),
                pattern_type,
                principal: "User:ANONYMOUS".into(),
                host: "*".into(),
                operation,
                permission: AclPermissionType::Allow,
            },
        }
    }

    /// A broker over the test cluster plus ACLs, with the standard authorizer when `authorizer`.
    fn broker(acls: Vec<Record>, authorizer: Option<Authorizer>) -> TestBroker {
        let mut records = cluster().records;
        records.extend(acls);
        let mut broker = TestBroker::new(1, &records);
        broker.ctx.authorizer = authorizer;
        broker
    }

    fn open() -> Option<Authorizer> {
        Some(Authorizer {
            allow_everyone_if_no_acl_found: true,
            ..Authorizer::default()
        })
    }

    fn filter(name: Option<&str>, pattern_type: PatternType) -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_type_filter(ResourceType::Topic.code())
            .with_resource_name_filter(name.map(|n| StrBytes::from_string(n.into())))
            .with_pattern_type_filter(pattern_type.code())
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(AclOperation::Any.code())
            .with_permission_type(AclPermissionType::Any.code())
    }

    #[tokio::test]
    async fn without_an_authorizer_every_acl_api_answers_security_disabled() {
        let b = broker(Vec::new(), None);
        let rc = b.rc(3, "PLAINTEXT");
        let described = handle_describe(&b.ctx, &rc, filter(None, PatternType::Any));
        assert_eq!(described.error_code, ResponseError::SecurityDisabled.code());
        assert_eq!(
            described.error_message.as_deref(),
            Some("No Authorizer is configured.")
        );
        let created = handle_create(
            &b.ctx,
            &rc,
            CreateAclsRequest::default().with_creations(vec![AclCreation::default(); 2]),
        )
        .await;
        assert!(created
            .results
            .iter()
            .all(|r| r.error_code == ResponseError::SecurityDisabled.code()));
        assert_eq!(created.results.len(), 2);
        let deleted = handle_delete(
            &b.ctx,
            &rc,
            DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()]),
        )
        .await;
        assert_eq!(
            deleted.filter_results[0].error_code,
            ResponseError::SecurityDisabled.code()
        );
    }

    #[tokio::test]
    async fn acl_apis_need_the_cluster_operations() {
        // Some ACL on the cluster, none for ANONYMOUS: it may not describe or alter ACLs.
        let other = Record::AccessControlEntry {
            id: Uuid::new_v4(),
            acl: AclBinding {
                resource_type: ResourceType::Cluster,
                resource_name: CLUSTER_NAME.into(),
                pattern_type: PatternType::Literal,
                principal: "User:admin".into(),
                host: "*".into(),
                operation: AclOperation::All,
                permission: AclPermissionType::Allow,
            },
        };
        let b = broker(vec![other], open());
        let rc = b.rc(2, "PLAINTEXT");
        let described = handle_describe(&b.ctx, &rc, filter(None, PatternType::Any));
        assert_eq!(
            described.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        let created = handle_create(
            &b.ctx,
            &rc,
            CreateAclsRequest::default().with_creations(vec![AclCreation::default()]),
        )
        .await;
        assert_eq!(
            created.results[0].error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
    }

    #[tokio::test]
    async fn describe_answers_from_the_image_grouped_by_resource_pattern() {
        let b = broker(
            vec![
                acl("orders", PatternType::Literal, AclOperation::Read),
                acl("orders", PatternType::Literal, AclOperation::Write),
                acl("ord", PatternType::Prefixed, AclOperation::Describe),
                acl("*", PatternType::Literal, AclOperation::Describe),
                acl("payments", PatternType::Literal, AclOperation::Read),
            ],
            open(),
        );
        let rc = b.rc(3, "PLAINTEXT");
        let resources = |request| {
            let response = handle_describe(&b.ctx, &rc, request);
            assert_eq!(response.error_code, 0);
            assert_encodes(&response, 3);
            assert_encodes(&response, 1);
            response
                .resources
                .iter()
                .map(|r| (r.resource_name.to_string(), r.pattern_type, r.acls.len()))
                .collect::<Vec<_>>()
        };
        let literal = PatternType::Literal.code();
        let prefixed = PatternType::Prefixed.code();
        assert_eq!(
            resources(filter(Some("orders"), PatternType::Literal)),
            [("orders".to_owned(), literal, 2)]
        );
        assert_eq!(
            resources(filter(Some("orders"), PatternType::Match)),
            [
                ("*".to_owned(), literal, 1),
                ("ord".to_owned(), prefixed, 1),
                ("orders".to_owned(), literal, 2)
            ]
        );
        assert_eq!(resources(filter(None, PatternType::Any)).len(), 4);
        // A filter with an UNKNOWN element is refused.
        let unknown = filter(None, PatternType::Any).with_operation(0);
        assert_eq!(
            handle_describe(&b.ctx, &rc, unknown).error_code,
            ResponseError::InvalidRequest.code()
        );
    }

    #[tokio::test]
    async fn creations_kafka_refuses_before_forwarding() {
        let b = broker(Vec::new(), open());
        let rc = b.rc(3, "PLAINTEXT");
        let creation = |resource_type: ResourceType, name: &str| {
            AclCreation::default()
                .with_resource_type(resource_type.code())
                .with_resource_name(StrBytes::from_string(name.into()))
                .with_resource_pattern_type(PatternType::Literal.code())
                .with_principal(StrBytes::from_static_str("User:a"))
                .with_host(StrBytes::from_static_str("*"))
                .with_operation(AclOperation::Alter.code())
                .with_permission_type(AclPermissionType::Allow.code())
        };
        let response = handle_create(
            &b.ctx,
            &rc,
            CreateAclsRequest::default().with_creations(vec![
                creation(ResourceType::Cluster, "other"),
                creation(ResourceType::Topic, ""),
            ]),
        )
        .await;
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [ResponseError::InvalidRequest.code(); 2]);
        assert!(response.results[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains(CLUSTER_NAME)));
    }
}
