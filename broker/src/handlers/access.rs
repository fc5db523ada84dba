//! Authorization as the handlers ask for it (Kafka's `AuthHelper`): whether the request's principal
//! may perform an operation on a resource, and the authorized-operations bit fields Metadata,
//! DescribeGroups and DescribeCluster report. Without `--authorizer` everything is allowed and the bit
//! fields list every operation the resource type supports, as Kafka answers without an authorizer.
//!
//! Follower fetches (a Fetch with a replica id) need CLUSTER_ACTION on the cluster, as in Kafka: the
//! follower's principal is whatever its connection authenticated as on the inter-broker listener
//! (`User:ANONYMOUS` on a PLAINTEXT one; see `docs/security.md`).

use chronik_metadata::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::{BrokerContext, RequestContext};
use crate::authorizer::{supported_operations, to_bit_field};

impl BrokerContext {
    /// Whether the request may perform `operation` on `(resource_type, name)`.
    pub fn authorize(
        &self,
        rc: &RequestContext<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        match &self.authorizer {
            None => true,
            Some(authorizer) => authorizer.authorize(
                &self.metadata.current(),
                rc.session,
                operation,
                resource_type,
                name,
            ),
        }
    }

    /// Whether the request may perform `operation` on the cluster.
    pub fn authorize_cluster(&self, rc: &RequestContext<'_>, operation: AclOperation) -> bool {
        self.authorize(rc, operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    pub fn authorize_topic(
        &self,
        rc: &RequestContext<'_>,
        operation: AclOperation,
        topic: &str,
    ) -> bool {
        self.authorize(rc, operation, ResourceType::Topic, topic)
    }

    pub fn authorize_group(
        &self,
        rc: &RequestContext<'_>,
        operation: AclOperation,
        group: &str,
    ) -> bool {
        self.authorize(rc, operation, ResourceType::Group, group)
    }

    pub fn authorize_transactional_id(
        &self,
        rc: &RequestContext<'_>,
        operation: AclOperation,
        transactional_id: &str,
    ) -> bool {
        self.authorize(
            rc,
            operation,
            ResourceType::TransactionalId,
            transactional_id,
        )
    }

    /// Whether the request may perform `operation` on some resource of the type (KIP-679).
    pub fn authorize_by_resource_type(
        &self,
        rc: &RequestContext<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        match &self.authorizer {
            None => true,
            Some(authorizer) => authorizer.authorize_by_resource_type(
                &self.metadata.current(),
                rc.session,
                operation,
                resource_type,
            ),
        }
    }

    /// The cluster's authorized operations as Metadata and DescribeCluster report them: none without
    /// DESCRIBE on the cluster (Kafka's `computeDescribeClusterResponse`).
    pub fn cluster_authorized_operations(&self, rc: &RequestContext<'_>) -> i32 {
        if self.authorize_cluster(rc, AclOperation::Describe) {
            self.authorized_operations(rc, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            0
        }
    }

    /// The operations the request may perform on the resource, as Kafka's `AclOperation` bit field.
    pub fn authorized_operations(
        &self,
        rc: &RequestContext<'_>,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        match &self.authorizer {
            None => to_bit_field(supported_operations(resource_type).iter().copied()),
            Some(authorizer) => authorizer.authorized_operations(
                &self.metadata.current(),
                rc.session,
                resource_type,
                name,
            ),
        }
    }
}
