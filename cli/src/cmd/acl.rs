//! `acl create|list|delete`: ACLs through the controllers (KIP-801), which store them in the metadata
//! log every broker follows. `create` and `delete` need the active controller; `list` is answered
//! from a controller's image. A refused ACL or filter fails the command with its Kafka error, as the
//! controller worded it.

use chronik_metadata::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
};
use chronik_metadata::convert::{acl_filter_to_proto, acl_from_proto, acl_to_proto};
use chronik_proto::v1::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use serde::Serialize;

use crate::cli::{AclArgs, AclFilterArgs};
use crate::client::ControllerClient;
use crate::error::{codes, CliError};

/// One ACL as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclRow {
    pub principal: String,
    pub host: String,
    pub operation: String,
    pub permission: String,
    pub resource_type: String,
    pub resource_name: String,
    pub pattern_type: String,
}

impl From<&AclBinding> for AclRow {
    fn from(acl: &AclBinding) -> Self {
        Self {
            principal: acl.principal.clone(),
            host: acl.host.clone(),
            operation: acl.operation.name().to_owned(),
            permission: acl.permission.name().to_owned(),
            resource_type: acl.resource_type.name().to_owned(),
            resource_name: acl.resource_name.clone(),
            pattern_type: acl.pattern_type.name().to_owned(),
        }
    }
}

/// What an `acl` command did and the ACLs it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclReport {
    /// `created`, `listed` or `deleted`.
    pub action: &'static str,
    pub acls: Vec<AclRow>,
}

pub async fn create(client: &ControllerClient, args: &AclArgs) -> Result<AclReport, CliError> {
    let acl = AclBinding {
        resource_type: args.resource_type,
        resource_name: args.resource_name.clone(),
        pattern_type: args.pattern_type,
        principal: args.principal.clone(),
        host: args.host.clone(),
        operation: args.operation,
        permission: args.permission,
    };
    let reply = client
        .create_acls(CreateAclsRequest {
            creations: vec![acl_to_proto(&acl)],
        })
        .await?;
    let result = reply
        .results
        .first()
        .ok_or_else(|| CliError::UnexpectedReply("no result for the ACL".into()))?;
    if result.error_code != codes::NONE {
        return Err(CliError::kafka(
            result.error_code,
            &result.error_message,
            |name| format!("the controller refused the ACL: {name}"),
        ));
    }
    Ok(AclReport {
        action: "created",
        acls: vec![AclRow::from(&acl)],
    })
}

fn filter(args: &AclFilterArgs) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: args.resource_type.unwrap_or(ResourceType::Any),
        resource_name: args.resource_name.clone(),
        pattern_type: args.pattern_type.unwrap_or(PatternType::Any),
        principal: args.principal.clone(),
        host: args.host.clone(),
        operation: args.operation.unwrap_or(AclOperation::Any),
        permission: args.permission.unwrap_or(AclPermissionType::Any),
    }
}

pub async fn list(client: &ControllerClient, args: &AclFilterArgs) -> Result<AclReport, CliError> {
    let reply = client
        .describe_acls(DescribeAclsRequest {
            filter: Some(acl_filter_to_proto(&filter(args))),
        })
        .await?;
    if reply.error_code != codes::NONE {
        return Err(CliError::kafka(
            reply.error_code,
            &reply.error_message,
            |name| format!("the controller refused the filter: {name}"),
        ));
    }
    Ok(AclReport {
        action: "listed",
        acls: reply
            .acls
            .iter()
            .map(|acl| AclRow::from(&acl_from_proto(acl)))
            .collect(),
    })
}

pub async fn delete(
    client: &ControllerClient,
    args: &AclFilterArgs,
) -> Result<AclReport, CliError> {
    let filter = filter(args);
    if filter == AclBindingFilter::any() {
        return Err(CliError::InvalidArgument(
            "acl delete needs at least one of --principal, --host, --operation, --permission, \
             --resource-type, --resource-name or --pattern-type (it deletes every ACL they match)"
                .into(),
        ));
    }
    let reply = client
        .delete_acls(DeleteAclsRequest {
            filters: vec![acl_filter_to_proto(&filter)],
        })
        .await?;
    let result = reply
        .results
        .first()
        .ok_or_else(|| CliError::UnexpectedReply("no result for the filter".into()))?;
    if result.error_code != codes::NONE {
        return Err(CliError::kafka(
            result.error_code,
            &result.error_message,
            |name| format!("the controller refused the filter: {name}"),
        ));
    }
    Ok(AclReport {
        action: "deleted",
        acls: result
            .matching_acls
            .iter()
            .map(|acl| AclRow::from(&acl_from_proto(acl)))
            .collect(),
    })
}
