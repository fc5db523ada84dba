//! ACL changes (Kafka's `AclControlManager`, KIP-801): CreateAcls stores each new binding under a
//! fresh UUID, DeleteAcls removes every binding a filter matches. Both are commands over the image
//! like the others; the image changes only when their records are replayed.
//!
//! What must stay true: creating a binding that exists (in the image or earlier in the same request)
//! succeeds and writes nothing, so creates are idempotent; a refused binding or filter changes
//! nothing; a binding several filters match is removed by one record and reported under each filter.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::error::ApiError;

use super::records::Record;
use super::ControllerResult;
use super::MetadataImage;
use chronik_metadata::acl::{AclBinding, AclBindingFilter};

/// Per creation, success or why not.
pub type CreateAclsReply = Vec<Result<(), ApiError>>;
/// Per filter, the bindings it matched (all deleted) or why it was refused.
pub type DeleteAclsReply = Vec<Result<Vec<AclBinding>, ApiError>>;

pub fn create_acls(
    image: &MetadataImage,
    creations: &[AclBinding],
    mut new_id: impl FnMut() -> Uuid,
) -> ControllerResult<CreateAclsReply> {
    let mut records = Vec::new();
    let mut reply = Vec::with_capacity(creations.len());
    let mut existing: BTreeSet<&AclBinding> = image.acls.values().collect();
    for acl in creations {
        if let Err(e) = acl.validate() {
            reply.push(Err(e));
            continue;
        }
        if existing.insert(acl) {
            records.push(Record::AccessControlEntry {
                id: new_id(),
                acl: acl.clone(),
            });
        }
        reply.push(Ok(()));
    }
    ControllerResult::new(records, reply)
}

pub fn delete_acls(
    image: &MetadataImage,
    filters: &[AclBindingFilter],
) -> ControllerResult<DeleteAclsReply> {
    let mut records = Vec::new();
    let mut deleted = BTreeSet::new();
    let reply = filters
        .iter()
        .map(|filter| {
            filter.validate()?;
            let mut matching = Vec::new();
            for (id, acl) in &image.acls {
                if filter.matches(acl) {
                    if deleted.insert(*id) {
                        records.push(Record::RemoveAccessControlEntry { id: *id });
                    }
                    matching.push(acl.clone());
                }
            }
            Ok(matching)
        })
        .collect();
    ControllerResult::new(records, reply)
}

/// Every binding the filter matches, in id order (DescribeAcls).
pub fn describe_acls(image: &MetadataImage, filter: &AclBindingFilter) -> Vec<AclBinding> {
    image
        .acls
        .values()
        .filter(|acl| filter.matches(acl))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use chronik_metadata::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};
    use chronik_metadata::error::ResponseError;

    use super::*;

    fn acl(name: &str, operation: AclOperation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission: AclPermissionType::Allow,
        }
    }

    fn ids() -> impl FnMut() -> Uuid {
        let mut next = 0u128;
        move || {
            next += 1;
            Uuid::from_u128(next)
        }
    }

    fn replay(image: &mut MetadataImage, records: &[Record]) {
        let offset = image.offset + 1;
        image.replay_all(offset, records);
    }

    #[test]
    fn creates_are_idempotent_and_refused_bindings_write_nothing() {
        let mut image = MetadataImage::default();
        let read = acl("orders", AclOperation::Read);
        let mut bad = acl("orders", AclOperation::Any);
        bad.principal = "alice".into();
        let result = create_acls(&image, &[read.clone(), read.clone(), bad], ids());
        assert_eq!(
            result.records.len(),
            1,
            "a duplicate in one request is stored once"
        );
        assert!(result.reply[0].is_ok() && result.reply[1].is_ok());
        assert_eq!(
            result.reply[2].as_ref().expect_err("refused").code,
            ResponseError::InvalidRequest
        );
        replay(&mut image, &result.records);
        assert_eq!(image.acls.len(), 1);

        let again = create_acls(&image, std::slice::from_ref(&read), ids());
        assert!(again.records.is_empty());
        assert_eq!(again.reply, vec![Ok(())]);
    }

    #[test]
    fn delete_removes_what_each_filter_matches_once() {
        let mut image = MetadataImage::default();
        let created = create_acls(
            &image,
            &[
                acl("orders", AclOperation::Read),
                acl("orders", AclOperation::Write),
                acl("payments", AclOperation::Read),
            ],
            ids(),
        );
        replay(&mut image, &created.records);

        let orders = AclBindingFilter {
            resource_type: ResourceType::Topic,
            resource_name: Some("orders".into()),
            ..AclBindingFilter::any()
        };
        let reads = AclBindingFilter {
            operation: AclOperation::Read,
            ..AclBindingFilter::any()
        };
        let mut unknown = AclBindingFilter::any();
        unknown.permission = AclPermissionType::Unknown;
        let result = delete_acls(&image, &[orders, reads, unknown]);
        assert_eq!(result.records.len(), 3, "orders READ is removed once");
        let matched = |i: usize| result.reply[i].as_ref().expect("matched").len();
        assert_eq!((matched(0), matched(1)), (2, 2));
        assert!(result.reply[2].is_err());
        replay(&mut image, &result.records);
        assert!(image.acls.is_empty());
        assert!(describe_acls(&image, &AclBindingFilter::any()).is_empty());
    }

    #[test]
    fn acls_survive_an_image_rebuilt_from_its_records_and_snapshots() {
        let mut image = MetadataImage::default();
        let created = create_acls(&image, &[acl("orders", AclOperation::All)], ids());
        replay(&mut image, &created.records);
        let mut rebuilt = MetadataImage::default();
        rebuilt.replay_all(image.offset, &image.to_records());
        assert_eq!(rebuilt.acls, image.acls);
        // Raft snapshots are the image as JSON.
        let json = serde_json::to_vec(&image).expect("encodes");
        let restored: MetadataImage = serde_json::from_slice(&json).expect("decodes");
        assert_eq!(restored.acls, image.acls);
        // A snapshot from before ACLs existed has none.
        let mut old = serde_json::to_value(MetadataImage::default()).expect("encodes");
        old.as_object_mut().expect("an object").remove("acls");
        let restored: MetadataImage = serde_json::from_value(old).expect("decodes");
        assert!(restored.acls.is_empty());
    }
}
