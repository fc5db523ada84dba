//! Access control lists (KIP-801): the ACL bindings the controller stores in the metadata log
//! (`Record::AccessControlEntry`, each under a UUID, as Kafka's `AccessControlEntryRecord`), the
//! filters DescribeAcls and DeleteAcls select them with, and the checks a new binding passes before it
//! is stored (Kafka's `AclControlManager.validateNewAcl` and `validateFilter`).
//!
//! The enums keep Kafka's wire codes (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType`), so a binding crosses the Kafka protocol, the gRPC API and the log unchanged.
//! What must stay true: a stored binding is always concrete (no ANY, MATCH or UNKNOWN in it), and
//! `AclBindingFilter::matches` is Kafka's `AclBindingFilter.matches`, which DescribeAcls and DeleteAcls
//! both answer by, so what a describe shows is exactly what the same delete removes.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ResponseError};

/// The resource name that matches every resource of its type in a LITERAL binding.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal and the host that match every principal or host.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
pub const WILDCARD_HOST: &str = "*";
/// The only name of the CLUSTER resource (Kafka's `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";

macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant,)*];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// The value of a wire code; codes Kafka does not define are UNKNOWN, as Kafka reads them.
            pub fn from_code(code: i8) -> Self {
                match code {
                    $($code => $name::$variant,)*
                    _ => $name::Unknown,
                }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `DESCRIBE_CONFIGS`, `ALLOW`).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value named `text`, case-insensitively, with `-` read as `_` (as Kafka's
            /// `fromString` and its command-line tools accept them).
            pub fn parse(text: &str) -> Option<Self> {
                let wanted = text.trim().to_ascii_uppercase().replace('-', "_");
                Self::ALL_VALUES.iter().copied().find(|v| v.name() == wanted)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum! {
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

kafka_enum! {
    /// Kafka's `PatternType`: LITERAL and PREFIXED in bindings, ANY and MATCH in filters only.
    PatternType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// Kafka's `AclOperation`.
    AclOperation {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

kafka_enum! {
    /// Kafka's `AclPermissionType`.
    AclPermissionType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

/// One ACL: who (`principal`, `Type:name`) may or may not (`permission`) do what (`operation`) from
/// where (`host`, or `*`) on which resources (`resource_type`, `resource_name`, `pattern_type`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBinding {
    /// Kafka's `AclControlManager.validateNewAcl`: only a concrete binding is stored.
    pub fn validate(&self) -> Result<(), ApiError> {
        let invalid = |message: String| Err(ApiError::new(ResponseError::InvalidRequest, message));
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return invalid(format!("Invalid resourceType {}", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return invalid(format!("Invalid patternType {}", self.pattern_type));
        }
        if matches!(self.operation, AclOperation::Unknown | AclOperation::Any) {
            return invalid(format!("Invalid operation {}", self.operation));
        }
        if !matches!(
            self.permission,
            AclPermissionType::Deny | AclPermissionType::Allow
        ) {
            return invalid(format!("Invalid permissionType {}", self.permission));
        }
        if self.resource_name.is_empty() {
            return invalid("Resource name should not be empty".into());
        }
        if !self.principal.contains(':') {
            return invalid(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal \
                 type from the principal name)",
                self.principal
            ));
        }
        Ok(())
    }
}

/// What DescribeAcls and DeleteAcls select bindings by; `None` name, principal or host match any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter that matches every binding.
    pub fn any() -> Self {
        Self {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermissionType::Any,
        }
    }

    /// Kafka's `AclControlManager.validateFilter`: a filter with an UNKNOWN element matches nothing
    /// Kafka could store, so it is refused.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.resource_type == ResourceType::Unknown || self.pattern_type == PatternType::Unknown
        {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Unknown patternFilter.",
            ));
        }
        if self.operation == AclOperation::Unknown || self.permission == AclPermissionType::Unknown
        {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Unknown entryFilter.",
            ));
        }
        Ok(())
    }

    /// Kafka's `AclBindingFilter.matches`: the resource pattern filter (`ResourcePatternFilter`)
    /// and the entry filter (`AccessControlEntryFilter`) both match. With MATCH, a named resource
    /// matches the LITERAL bindings of its name and of `*` and every PREFIXED binding whose name
    /// starts it.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding) && self.matches_entry(binding)
    }

    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != binding.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == binding.pattern_type {
            return *name == binding.resource_name;
        }
        match binding.pattern_type {
            PatternType::Literal => {
                *name == binding.resource_name || binding.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&binding.resource_name),
            _ => false,
        }
    }

    fn matches_entry(&self, binding: &AclBinding) -> bool {
        if self
            .principal
            .as_ref()
            .is_some_and(|p| *p != binding.principal)
        {
            return false;
        }
        if self.host.as_ref().is_some_and(|h| *h != binding.host) {
            return false;
        }
        if self.operation != AclOperation::Any && self.operation != binding.operation {
            return false;
        }
        self.permission == AclPermissionType::Any || self.permission == binding.permission
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        operation: AclOperation,
        permission: AclPermissionType,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    fn topic(name: &str, pattern_type: PatternType) -> AclBinding {
        binding(
            ResourceType::Topic,
            name,
            pattern_type,
            AclOperation::Read,
            AclPermissionType::Allow,
        )
    }

    fn filter(name: Option<&str>, pattern_type: PatternType) -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Topic,
            resource_name: name.map(Into::into),
            pattern_type,
            ..AclBindingFilter::any()
        }
    }

    #[test]
    fn codes_and_names_are_kafkas() {
        assert_eq!(ResourceType::TransactionalId.code(), 5);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(AclOperation::IdempotentWrite.code(), 12);
        assert_eq!(AclPermissionType::Allow.code(), 3);
        assert_eq!(AclOperation::from_code(99), AclOperation::Unknown);
        for op in AclOperation::ALL_VALUES {
            assert_eq!(AclOperation::from_code(op.code()), *op);
            assert_eq!(AclOperation::parse(op.name()), Some(*op));
        }
        assert_eq!(
            AclOperation::parse("describe-configs"),
            Some(AclOperation::DescribeConfigs)
        );
        assert_eq!(ResourceType::parse("topic"), Some(ResourceType::Topic));
        assert_eq!(PatternType::parse("nonsense"), None);
    }

    #[test]
    fn new_bindings_must_be_concrete() {
        let good = topic("orders", PatternType::Literal);
        assert_eq!(good.validate(), Ok(()));
        let refused = |b: AclBinding| b.validate().expect_err("refused").code;
        for resource_type in [ResourceType::Unknown, ResourceType::Any] {
            let mut b = good.clone();
            b.resource_type = resource_type;
            assert_eq!(refused(b), ResponseError::InvalidRequest);
        }
        for pattern_type in [PatternType::Unknown, PatternType::Any, PatternType::Match] {
            let mut b = good.clone();
            b.pattern_type = pattern_type;
            assert_eq!(refused(b), ResponseError::InvalidRequest);
        }
        for operation in [AclOperation::Unknown, AclOperation::Any] {
            let mut b = good.clone();
            b.operation = operation;
            assert_eq!(refused(b), ResponseError::InvalidRequest);
        }
        for permission in [AclPermissionType::Unknown, AclPermissionType::Any] {
            let mut b = good.clone();
            b.permission = permission;
            assert_eq!(refused(b), ResponseError::InvalidRequest);
        }
        let mut b = good.clone();
        b.resource_name.clear();
        assert_eq!(refused(b), ResponseError::InvalidRequest);
        let mut b = good.clone();
        b.principal = "alice".into();
        let message = b.validate().expect_err("no colon").message;
        assert!(message.contains("no colon"), "{message}");
    }

    #[test]
    fn literal_and_prefixed_filters_match_only_their_own_pattern_type() {
        let literal = topic("orders", PatternType::Literal);
        let prefixed = topic("ord", PatternType::Prefixed);
        assert!(filter(Some("orders"), PatternType::Literal).matches(&literal));
        assert!(!filter(Some("orders"), PatternType::Literal).matches(&prefixed));
        assert!(filter(Some("ord"), PatternType::Prefixed).matches(&prefixed));
        assert!(!filter(Some("orders"), PatternType::Prefixed).matches(&prefixed));
        assert!(filter(None, PatternType::Prefixed).matches(&prefixed));
        assert!(!filter(None, PatternType::Prefixed).matches(&literal));
    }

    #[test]
    fn any_matches_every_pattern_type_by_exact_name() {
        let literal = topic("orders", PatternType::Literal);
        let prefixed = topic("orders", PatternType::Prefixed);
        let wildcard = topic("*", PatternType::Literal);
        let any = filter(Some("orders"), PatternType::Any);
        assert!(any.matches(&literal) && any.matches(&prefixed));
        assert!(!any.matches(&wildcard), "ANY does not expand the wildcard");
        assert!(filter(None, PatternType::Any).matches(&wildcard));
    }

    #[test]
    fn match_finds_literal_wildcard_and_prefixed_bindings_that_apply() {
        let m = filter(Some("orders-eu"), PatternType::Match);
        assert!(m.matches(&topic("orders-eu", PatternType::Literal)));
        assert!(m.matches(&topic("*", PatternType::Literal)));
        assert!(m.matches(&topic("orders", PatternType::Prefixed)));
        assert!(m.matches(&topic("orders-eu", PatternType::Prefixed)));
        assert!(!m.matches(&topic("orders", PatternType::Literal)));
        assert!(!m.matches(&topic("orders-eu-1", PatternType::Prefixed)));
        assert!(!m.matches(&topic("payments", PatternType::Prefixed)));
        // A prefixed binding named `*` is only a prefix, not a wildcard.
        assert!(!m.matches(&topic("*", PatternType::Prefixed)));
    }

    #[test]
    fn resource_type_any_and_entry_fields_filter() {
        let group = binding(
            ResourceType::Group,
            "g",
            PatternType::Literal,
            AclOperation::Read,
            AclPermissionType::Deny,
        );
        assert!(AclBindingFilter::any().matches(&group));
        assert!(!filter(None, PatternType::Any).matches(&group));
        let by_entry = |principal: Option<&str>, host: Option<&str>, op, permission| {
            AclBindingFilter {
                principal: principal.map(Into::into),
                host: host.map(Into::into),
                operation: op,
                permission,
                ..AclBindingFilter::any()
            }
            .matches(&group)
        };
        assert!(by_entry(
            Some("User:alice"),
            Some("*"),
            AclOperation::Read,
            AclPermissionType::Deny
        ));
        assert!(!by_entry(
            Some("User:bob"),
            None,
            AclOperation::Any,
            AclPermissionType::Any
        ));
        assert!(!by_entry(
            None,
            Some("10.0.0.1"),
            AclOperation::Any,
            AclPermissionType::Any
        ));
        assert!(!by_entry(
            None,
            None,
            AclOperation::Write,
            AclPermissionType::Any
        ));
        assert!(!by_entry(
            None,
            None,
            AclOperation::Any,
            AclPermissionType::Allow
        ));
    }

    #[test]
    fn filters_with_unknown_elements_are_refused() {
        assert_eq!(AclBindingFilter::any().validate(), Ok(()));
        let mut f = AclBindingFilter::any();
        f.pattern_type = PatternType::Unknown;
        assert!(f.validate().is_err());
        let mut f = AclBindingFilter::any();
        f.operation = AclOperation::Unknown;
        assert!(f.validate().is_err());
    }
}
