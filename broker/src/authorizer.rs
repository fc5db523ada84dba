//! The broker's authorizer: Kafka's KRaft `StandardAuthorizer` (KIP-801) over the ACLs of the
//! metadata image, and the principal a connection acts as.
//!
//! Off unless the broker runs with `--authorizer standard` (Kafka's `authorizer.class.name`); then
//! every request is checked by `Authorizer::authorize` with Kafka's rules
//! (`StandardAuthorizerData.findAclRule` / `findResult`):
//!
//! 1. A super user (`--super-users`, compared as `Type:name`) may do anything.
//! 2. The ACLs that apply to a resource are its LITERAL ones, the LITERAL `*` of its type, and every
//!    PREFIXED one whose name starts the resource's name.
//! 3. Of those, an ACL matches when its principal is the caller's or `User:*`, its host the caller's
//!    address or `*`, and its operation the one asked, or ALL. An ALLOW ACL also grants what its
//!    operation implies: DESCRIBE from READ, WRITE, DELETE and ALTER; DESCRIBE_CONFIGS from
//!    ALTER_CONFIGS. A DENY ACL implies nothing.
//! 4. A matching DENY wins over any ALLOW; else a matching ALLOW allows; else, when ACLs apply to the
//!    resource but none matched, the answer is no; and when no ACL applies to the resource at all,
//!    `--allow-everyone-if-no-acl-found` decides (Kafka's `allow.everyone.if.no.acl.found`).
//!
//! What must stay true: the check reads only the image it is given, so a decision is always against
//! one consistent set of ACLs; every connection has a principal (`User:ANONYMOUS` until SASL or a
//! client certificate authenticates one, `security/`), so nothing is ever checked against "nobody".

use std::collections::BTreeSet;
use std::net::IpAddr;

use chronik_metadata::acl::{
    AclBinding, AclOperation, AclPermissionType, PatternType, ResourceType, WILDCARD_HOST,
    WILDCARD_PRINCIPAL, WILDCARD_RESOURCE,
};
use chronik_metadata::MetadataImage;

/// The one authorizer Chronik has: `--authorizer standard`.
pub const STANDARD: &str = "standard";

/// Who a connection acts as (Kafka's `KafkaPrincipal`), shown as `Type:name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    /// Kafka's `KafkaPrincipal.ANONYMOUS`: a connection no mechanism authenticated.
    pub fn anonymous() -> Self {
        Self {
            principal_type: "User".into(),
            name: "ANONYMOUS".into(),
        }
    }
}

impl std::fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// What one connection is, for authorization: its principal and the address it came from.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: KafkaPrincipal,
    pub client_address: Option<IpAddr>,
}

impl Session {
    /// A connection before authentication exists: `User:ANONYMOUS`.
    pub fn anonymous(client_address: Option<IpAddr>) -> Self {
        Self {
            principal: KafkaPrincipal::anonymous(),
            client_address,
        }
    }
}

/// The standard authorizer's settings.
#[derive(Clone, Debug, Default)]
pub struct Authorizer {
    /// Principals (`User:alice`) allowed everything (Kafka's `super.users`).
    pub super_users: BTreeSet<String>,
    /// Allow when no ACL applies to the resource at all (Kafka's `allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
}

/// The operations a resource type supports (Kafka's `AclEntry.supportedOperations`), which
/// authorized-operations fields report a subset of.
pub fn supported_operations(resource_type: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
        _ => &[],
    }
}

/// Operations as the `AclOperation` bit field Kafka's authorized-operations fields carry
/// (`Utils.to32BitField`).
pub fn to_bit_field(operations: impl IntoIterator<Item = AclOperation>) -> i32 {
    operations
        .into_iter()
        .fold(0, |bits, op| bits | (1 << op.code()))
}

/// How an ACL bears on one action, if at all (Kafka's `findResult`).
fn acl_result(
    acl: &AclBinding,
    principal: &str,
    host: &str,
    operation: AclOperation,
) -> Option<AclPermissionType> {
    if acl.principal != principal && acl.principal != WILDCARD_PRINCIPAL {
        return None;
    }
    if acl.host != WILDCARD_HOST && acl.host != host {
        return None;
    }
    if acl.operation != AclOperation::All {
        let applies = if acl.permission == AclPermissionType::Allow {
            match operation {
                AclOperation::Describe => matches!(
                    acl.operation,
                    AclOperation::Describe
                        | AclOperation::Read
                        | AclOperation::Write
                        | AclOperation::Delete
                        | AclOperation::Alter
                ),
                AclOperation::DescribeConfigs => matches!(
                    acl.operation,
                    AclOperation::DescribeConfigs | AclOperation::AlterConfigs
                ),
                other => acl.operation == other,
            }
        } else {
            acl.operation == operation
        };
        if !applies {
            return None;
        }
    }
    Some(acl.permission)
}

impl Authorizer {
    /// Whether `session` may perform `operation` on the resource `(resource_type, name)`, by the
    /// ACLs in `image` (the rules in the module docs).
    pub fn authorize(
        &self,
        image: &MetadataImage,
        session: &Session,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let principal = session.principal.to_string();
        if self.super_users.contains(&principal) {
            return true;
        }
        let host = session
            .client_address
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut has_resource_acls = false;
        let mut allowed = false;
        for acl in image.acls.matching(resource_type, name) {
            has_resource_acls = true;
            match acl_result(acl, &principal, &host, operation) {
                Some(AclPermissionType::Deny) => return false,
                Some(AclPermissionType::Allow) => allowed = true,
                _ => {}
            }
        }
        allowed || (!has_resource_acls && self.allow_everyone_if_no_acl_found)
    }

    /// Whether `session` may perform `operation` on some resource of the type (Kafka's
    /// `Authorizer.authorizeByResourceType`, KIP-679): allowed when a resource no ACL names would
    /// be, or when an ALLOW ACL of the principal (or `User:*`) from its host covers a name no DENY
    /// ACL takes back (a DENY on LITERAL `*` takes back everything).
    pub fn authorize_by_resource_type(
        &self,
        image: &MetadataImage,
        session: &Session,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        // Kafka's hard-coded name: super users, and allow-everyone with no ACL naming it.
        if self.authorize(image, session, operation, resource_type, "hardcode") {
            return true;
        }
        let principal = session.principal.to_string();
        let host = session
            .client_address
            .map(|a| a.to_string())
            .unwrap_or_default();
        let relevant: Vec<&AclBinding> = image
            .acls
            .values()
            .filter(|acl| {
                acl.resource_type == resource_type
                    && (acl.principal == principal || acl.principal == WILDCARD_PRINCIPAL)
                    && (acl.host == WILDCARD_HOST || acl.host == host)
                    && (acl.operation == operation || acl.operation == AclOperation::All)
            })
            .collect();
        let denies = |pattern: PatternType, name: &str| {
            relevant.iter().any(|d| {
                d.permission == AclPermissionType::Deny
                    && d.pattern_type == pattern
                    && d.resource_name == name
            })
        };
        if denies(PatternType::Literal, WILDCARD_RESOURCE) {
            return false;
        }
        let denied_by_prefix = |name: &str| {
            relevant.iter().any(|d| {
                d.permission == AclPermissionType::Deny
                    && d.pattern_type == PatternType::Prefixed
                    && name.starts_with(&d.resource_name)
            })
        };
        relevant.iter().any(|a| {
            a.permission == AclPermissionType::Allow
                && match a.pattern_type {
                    PatternType::Literal if a.resource_name == WILDCARD_RESOURCE => true,
                    PatternType::Literal => {
                        !denies(PatternType::Literal, &a.resource_name)
                            && !denied_by_prefix(&a.resource_name)
                    }
                    PatternType::Prefixed => !denied_by_prefix(&a.resource_name),
                    _ => false,
                }
        })
    }

    /// The operations of the resource's type `session` may perform on it, as a bit field (Kafka's
    /// `AuthHelper.authorizedOperations`).
    pub fn authorized_operations(
        &self,
        image: &MetadataImage,
        session: &Session,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        to_bit_field(
            supported_operations(resource_type)
                .iter()
                .copied()
                .filter(|op| self.authorize(image, session, *op, resource_type, name)),
        )
    }
}

#[cfg(test)]
mod tests {
    use chronik_metadata::acl::CLUSTER_NAME;
    use chronik_metadata::Record;
    use uuid::Uuid;

    use super::*;
    use AclOperation::*;
    use AclPermissionType::{Allow, Deny};

    struct Acl<'a> {
        resource_type: ResourceType,
        name: &'a str,
        pattern_type: PatternType,
        principal: &'a str,
        host: &'a str,
        operation: AclOperation,
        permission: AclPermissionType,
    }

    /// An ACL for `User:alice` from any host on the LITERAL topic `name`.
    fn topic_acl(name: &str, operation: AclOperation, permission: AclPermissionType) -> Acl<'_> {
        Acl {
            resource_type: ResourceType::Topic,
            name,
            pattern_type: PatternType::Literal,
            principal: "User:alice",
            host: "*",
            operation,
            permission,
        }
    }

    fn image(acls: &[Acl<'_>]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (i, a) in acls.iter().enumerate() {
            let record = Record::AccessControlEntry {
                id: Uuid::from_u128(i as u128 + 1),
                acl: AclBinding {
                    resource_type: a.resource_type,
                    resource_name: a.name.into(),
                    pattern_type: a.pattern_type,
                    principal: a.principal.into(),
                    host: a.host.into(),
                    operation: a.operation,
                    permission: a.permission,
                },
            };
            image.replay(i as u64 + 1, &record);
        }
        image
    }

    fn session(principal: &str, address: &str) -> Session {
        let (principal_type, name) = principal.split_once(':').expect("Type:name");
        Session {
            principal: KafkaPrincipal {
                principal_type: principal_type.into(),
                name: name.into(),
            },
            client_address: Some(address.parse().expect("an IP address")),
        }
    }

    fn alice() -> Session {
        session("User:alice", "10.0.0.1")
    }

    fn strict() -> Authorizer {
        Authorizer::default()
    }

    fn open() -> Authorizer {
        Authorizer {
            allow_everyone_if_no_acl_found: true,
            ..Authorizer::default()
        }
    }

    fn may(authorizer: &Authorizer, image: &MetadataImage, s: &Session, op: AclOperation) -> bool {
        authorizer.authorize(image, s, op, ResourceType::Topic, "orders")
    }

    #[test]
    fn the_anonymous_principal_is_user_anonymous() {
        assert_eq!(
            Session::anonymous(None).principal.to_string(),
            "User:ANONYMOUS"
        );
    }

    #[test]
    fn without_acls_the_default_decides() {
        let empty = image(&[]);
        assert!(!may(&strict(), &empty, &alice(), Read));
        assert!(may(&open(), &empty, &alice(), Read));
    }

    #[test]
    fn acls_on_a_resource_deny_what_they_do_not_allow_even_with_allow_everyone() {
        let acls = image(&[topic_acl("orders", Read, Allow)]);
        assert!(may(&open(), &acls, &alice(), Read));
        assert!(!may(&open(), &acls, &alice(), Write));
        // Another principal: ACLs apply to the resource, none matches.
        assert!(!may(&open(), &acls, &session("User:bob", "10.0.0.1"), Read));
        // Another resource has no ACLs: the default.
        assert!(open().authorize(&acls, &alice(), Write, ResourceType::Topic, "payments"));
        assert!(!strict().authorize(&acls, &alice(), Write, ResourceType::Topic, "payments"));
    }

    #[test]
    fn deny_beats_allow() {
        let acls = image(&[
            topic_acl("orders", All, Allow),
            topic_acl("orders", Write, Deny),
        ]);
        assert!(!may(&strict(), &acls, &alice(), Write));
        assert!(may(&strict(), &acls, &alice(), Read));
        let denied_all = image(&[
            topic_acl("orders", Read, Allow),
            topic_acl("orders", All, Deny),
        ]);
        assert!(!may(&strict(), &denied_all, &alice(), Read));
        assert!(!may(&strict(), &denied_all, &alice(), Describe));
    }

    #[test]
    fn all_allows_every_operation() {
        let acls = image(&[topic_acl("orders", All, Allow)]);
        for op in supported_operations(ResourceType::Topic) {
            assert!(may(&strict(), &acls, &alice(), *op), "{op}");
        }
    }

    #[test]
    fn allow_acls_imply_describe_and_describe_configs() {
        for op in [Read, Write, Delete, Alter, Describe] {
            let acls = image(&[topic_acl("orders", op, Allow)]);
            assert!(
                may(&strict(), &acls, &alice(), Describe),
                "{op} implies DESCRIBE"
            );
        }
        for op in [Create, DescribeConfigs, AlterConfigs] {
            let acls = image(&[topic_acl("orders", op, Allow)]);
            assert!(
                !may(&strict(), &acls, &alice(), Describe),
                "{op} does not imply DESCRIBE"
            );
        }
        let alter_configs = image(&[topic_acl("orders", AlterConfigs, Allow)]);
        assert!(may(&strict(), &alter_configs, &alice(), DescribeConfigs));
        let read = image(&[topic_acl("orders", Read, Allow)]);
        assert!(!may(&strict(), &read, &alice(), DescribeConfigs));
        // Implication runs one way: DESCRIBE does not grant READ.
        let describe = image(&[topic_acl("orders", Describe, Allow)]);
        assert!(!may(&strict(), &describe, &alice(), Read));
    }

    #[test]
    fn deny_acls_imply_nothing() {
        let acls = image(&[
            topic_acl("orders", All, Allow),
            topic_acl("orders", Read, Deny),
            topic_acl("orders", AlterConfigs, Deny),
        ]);
        assert!(!may(&strict(), &acls, &alice(), Read));
        assert!(may(&strict(), &acls, &alice(), Describe));
        assert!(may(&strict(), &acls, &alice(), DescribeConfigs));
    }

    #[test]
    fn wildcard_and_prefixed_resources_apply() {
        let wildcard = image(&[topic_acl("*", Read, Allow)]);
        assert!(may(&strict(), &wildcard, &alice(), Read));
        let prefixed = image(&[Acl {
            pattern_type: PatternType::Prefixed,
            ..topic_acl("ord", Write, Deny)
        }]);
        assert!(!may(&open(), &prefixed, &alice(), Write));
        assert!(open().authorize(&prefixed, &alice(), Write, ResourceType::Topic, "payments"));
        // A LITERAL ACL on a prefix of the name does not apply.
        let literal_prefix = image(&[topic_acl("ord", Write, Deny)]);
        assert!(may(&open(), &literal_prefix, &alice(), Write));
        // A PREFIXED `*` is a prefix, not a wildcard.
        let star_prefix = image(&[Acl {
            pattern_type: PatternType::Prefixed,
            ..topic_acl("*", Write, Deny)
        }]);
        assert!(may(&open(), &star_prefix, &alice(), Write));
        // A GROUP ACL says nothing about a topic of the same name.
        let group = image(&[Acl {
            resource_type: ResourceType::Group,
            ..topic_acl("orders", Read, Deny)
        }]);
        assert!(may(&open(), &group, &alice(), Read));
    }

    #[test]
    fn principals_match_exactly_or_by_the_user_wildcard() {
        let everyone = image(&[Acl {
            principal: "User:*",
            ..topic_acl("orders", Read, Allow)
        }]);
        assert!(may(
            &strict(),
            &everyone,
            &session("User:bob", "10.0.0.2"),
            Read
        ));
        let other_type = image(&[Acl {
            principal: "Group:alice",
            ..topic_acl("orders", Read, Allow)
        }]);
        assert!(!may(&strict(), &other_type, &alice(), Read));
    }

    #[test]
    fn hosts_match_exactly_or_by_the_wildcard() {
        let from_one_host = image(&[Acl {
            host: "10.0.0.1",
            ..topic_acl("orders", Read, Allow)
        }]);
        assert!(may(&strict(), &from_one_host, &alice(), Read));
        assert!(!may(
            &strict(),
            &from_one_host,
            &session("User:alice", "10.0.0.9"),
            Read
        ));
        let denied_host = image(&[
            topic_acl("orders", Read, Allow),
            Acl {
                host: "10.0.0.9",
                ..topic_acl("orders", Read, Deny)
            },
        ]);
        assert!(may(&strict(), &denied_host, &alice(), Read));
        assert!(!may(
            &strict(),
            &denied_host,
            &session("User:alice", "10.0.0.9"),
            Read
        ));
    }

    #[test]
    fn super_users_may_do_anything() {
        let authorizer = Authorizer {
            super_users: ["User:admin".to_owned()].into(),
            allow_everyone_if_no_acl_found: false,
        };
        let acls = image(&[Acl {
            principal: "User:*",
            ..topic_acl("orders", All, Deny)
        }]);
        assert!(may(
            &authorizer,
            &acls,
            &session("User:admin", "10.0.0.1"),
            Write
        ));
        assert!(!may(&authorizer, &acls, &alice(), Write));
    }

    #[test]
    fn authorized_operations_are_the_allowed_supported_ones() {
        let none = image(&[]);
        assert_eq!(
            open().authorized_operations(&none, &alice(), ResourceType::Topic, "orders"),
            3576,
            "every topic operation, as without an authorizer"
        );
        assert_eq!(
            open().authorized_operations(&none, &alice(), ResourceType::Group, "g"),
            3400
        );
        assert_eq!(
            open().authorized_operations(&none, &alice(), ResourceType::Cluster, CLUSTER_NAME),
            8096
        );
        let read = image(&[topic_acl("orders", Read, Allow)]);
        assert_eq!(
            strict().authorized_operations(&read, &alice(), ResourceType::Topic, "orders"),
            to_bit_field([Read, Describe])
        );
        assert_eq!(
            strict().authorized_operations(&none, &alice(), ResourceType::Topic, "orders"),
            0
        );
    }

    #[test]
    fn by_resource_type_needs_one_allowed_name_not_taken_back() {
        let by_type = |authorizer: &Authorizer, acls: &MetadataImage| {
            authorizer.authorize_by_resource_type(acls, &alice(), Write, ResourceType::Topic)
        };
        assert!(by_type(&open(), &image(&[])));
        assert!(!by_type(&strict(), &image(&[])));
        assert!(by_type(
            &strict(),
            &image(&[topic_acl("orders", Write, Allow)])
        ));
        assert!(!by_type(
            &strict(),
            &image(&[
                topic_acl("orders", Write, Allow),
                Acl {
                    pattern_type: PatternType::Prefixed,
                    ..topic_acl("ord", Write, Deny)
                },
            ])
        ));
        assert!(!by_type(
            &open(),
            &image(&[topic_acl("orders", All, Allow), topic_acl("*", Write, Deny)])
        ));
        assert!(!by_type(
            &strict(),
            &image(&[topic_acl("orders", Read, Allow)])
        ));
    }
}
