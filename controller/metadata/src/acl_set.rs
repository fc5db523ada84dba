//! Every ACL of the cluster (`MetadataImage::acls`), indexed by the resources they name, so that an
//! authorization looks up the few bindings that can apply to one resource instead of scanning all
//! of them (Kafka's `StandardAuthorizerData` keeps its ACLs sorted by resource for the same reason).
//! A broker authorizes every Produce, Fetch and Metadata request against them, and with thousands
//! of ACLs a scan per request costs more than the request.
//!
//! The set is shared: cloning it (every new image clones the one before) copies a pointer, and a
//! change copies the set only when an older image still holds it.
//!
//! What must stay true: `matching(type, name)` yields exactly the bindings of that type whose
//! pattern covers `name` (a LITERAL binding of `name` or of `*`, a PREFIXED one whose name `name`
//! starts with), each once; the index always agrees with the bindings by id, which alone are
//! serialized and compared.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::{AclBinding, PatternType, ResourceType, WILDCARD_RESOURCE};

/// The bindings by id, and the index `matching` reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<Uuid, AclBinding>",
    into = "BTreeMap<Uuid, AclBinding>"
)]
pub struct Acls {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug, Default)]
struct Inner {
    by_id: BTreeMap<Uuid, AclBinding>,
    /// Each type's LITERAL bindings by name (`*` included).
    literal: HashMap<ResourceType, HashMap<String, Vec<Uuid>>>,
    /// Each type's PREFIXED bindings by prefix.
    prefixed: HashMap<ResourceType, HashMap<String, Vec<Uuid>>>,
    /// How many PREFIXED bindings of each type have a prefix of each length (in bytes): the only
    /// lengths a lookup tries.
    prefix_lengths: HashMap<ResourceType, BTreeMap<usize, usize>>,
}

impl Inner {
    fn index(&mut self, id: Uuid, acl: &AclBinding) {
        let names = match acl.pattern_type {
            PatternType::Literal => &mut self.literal,
            PatternType::Prefixed => {
                *self
                    .prefix_lengths
                    .entry(acl.resource_type)
                    .or_default()
                    .entry(acl.resource_name.len())
                    .or_default() += 1;
                &mut self.prefixed
            }
            // Only concrete bindings are stored (`AclBinding::validate`); anything else matches
            // no resource, so it needs no entry.
            _ => return,
        };
        names
            .entry(acl.resource_type)
            .or_default()
            .entry(acl.resource_name.clone())
            .or_default()
            .push(id);
    }

    fn unindex(&mut self, id: Uuid, acl: &AclBinding) {
        let names = match acl.pattern_type {
            PatternType::Literal => &mut self.literal,
            PatternType::Prefixed => {
                if let Some(lengths) = self.prefix_lengths.get_mut(&acl.resource_type) {
                    let len = acl.resource_name.len();
                    if let Some(count) = lengths.get_mut(&len) {
                        *count -= 1;
                        if *count == 0 {
                            lengths.remove(&len);
                        }
                    }
                }
                &mut self.prefixed
            }
            _ => return,
        };
        if let Some(by_name) = names.get_mut(&acl.resource_type) {
            if let Some(ids) = by_name.get_mut(&acl.resource_name) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    by_name.remove(&acl.resource_name);
                }
            }
        }
    }
}

impl Acls {
    /// Adds (or replaces) the binding with this id.
    pub fn insert(&mut self, id: Uuid, acl: AclBinding) {
        let inner = Arc::make_mut(&mut self.inner);
        if let Some(old) = inner.by_id.remove(&id) {
            inner.unindex(id, &old);
        }
        inner.index(id, &acl);
        inner.by_id.insert(id, acl);
    }

    pub fn remove(&mut self, id: &Uuid) -> Option<AclBinding> {
        if !self.inner.by_id.contains_key(id) {
            return None;
        }
        let inner = Arc::make_mut(&mut self.inner);
        let acl = inner.by_id.remove(id)?;
        inner.unindex(*id, &acl);
        Some(acl)
    }

    pub fn get(&self, id: &Uuid) -> Option<&AclBinding> {
        self.inner.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.inner.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.by_id.is_empty()
    }

    /// Every binding, in id order.
    pub fn values(&self) -> impl Iterator<Item = &AclBinding> {
        self.inner.by_id.values()
    }

    /// Every binding with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &AclBinding)> {
        self.inner.by_id.iter()
    }

    /// The bindings of `resource_type` whose pattern covers the resource `name`: LITERAL ones of
    /// `name` or of `*`, and PREFIXED ones whose name `name` starts with.
    pub fn matching<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let inner = &*self.inner;
        let literal = inner.literal.get(&resource_type);
        let exact = literal.and_then(|by_name| by_name.get(name));
        let wildcard = literal
            .filter(|_| name != WILDCARD_RESOURCE)
            .and_then(|by_name| by_name.get(WILDCARD_RESOURCE));
        let prefixed = inner.prefixed.get(&resource_type);
        let prefixes = inner
            .prefix_lengths
            .get(&resource_type)
            .into_iter()
            .flat_map(|lengths| lengths.range(..=name.len()).map(|(&len, _)| len))
            .filter_map(move |len| name.get(..len))
            .filter_map(move |prefix| prefixed.and_then(|by_name| by_name.get(prefix)));
        exact
            .into_iter()
            .chain(wildcard)
            .chain(prefixes)
            .flatten()
            .filter_map(|id| inner.by_id.get(id))
    }
}

impl PartialEq for Acls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.by_id == other.inner.by_id
    }
}

impl Eq for Acls {}

impl From<BTreeMap<Uuid, AclBinding>> for Acls {
    fn from(by_id: BTreeMap<Uuid, AclBinding>) -> Self {
        let mut acls = Acls::default();
        for (id, acl) in by_id {
            acls.insert(id, acl);
        }
        acls
    }
}

impl From<Acls> for BTreeMap<Uuid, AclBinding> {
    fn from(acls: Acls) -> Self {
        Arc::unwrap_or_clone(acls.inner).by_id
    }
}

impl<'a> IntoIterator for &'a Acls {
    type Item = (&'a Uuid, &'a AclBinding);
    type IntoIter = std::collections::btree_map::Iter<'a, Uuid, AclBinding>;

    fn into_iter(self) -> Self::IntoIter {
        self.inner.by_id.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::acl::{AclOperation, AclPermissionType};

    fn binding(resource_type: ResourceType, pattern: PatternType, name: &str) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermissionType::Allow,
        }
    }

    /// What a scan of every binding finds: the rule `matching` must agree with.
    fn scanned<'a>(
        acls: &'a Acls,
        resource_type: ResourceType,
        name: &str,
    ) -> BTreeSet<&'a AclBinding> {
        acls.values()
            .filter(|acl| {
                acl.resource_type == resource_type
                    && match acl.pattern_type {
                        PatternType::Literal => {
                            acl.resource_name == name || acl.resource_name == WILDCARD_RESOURCE
                        }
                        PatternType::Prefixed => name.starts_with(&acl.resource_name),
                        _ => false,
                    }
            })
            .collect()
    }

    fn matched<'a>(
        acls: &'a Acls,
        resource_type: ResourceType,
        name: &'a str,
    ) -> BTreeSet<&'a AclBinding> {
        let found: Vec<&AclBinding> = acls.matching(resource_type, name).collect();
        let set: BTreeSet<&AclBinding> = found.iter().copied().collect();
        assert_eq!(found.len(), set.len(), "each binding once: {found:?}");
        set
    }

    /// Literal names, the wildcard, prefixes of every length (the name itself included, and one
    /// ending inside a multi-byte character), other resource types: the index finds what a scan of
    /// every binding finds, also after removals and replacements.
    #[test]
    fn the_index_finds_what_a_scan_finds() {
        use PatternType::{Literal, Prefixed};
        use ResourceType::{Group, Topic};
        let mut acls = Acls::default();
        let bindings = [
            binding(Topic, Literal, "orders"),
            binding(Topic, Literal, "*"),
            binding(Topic, Prefixed, "ord"),
            binding(Topic, Prefixed, "orders"),
            binding(Topic, Prefixed, "o"),
            binding(Topic, Prefixed, "payments-"),
            binding(Topic, Prefixed, "zü"),
            binding(Group, Literal, "orders"),
            binding(Group, Prefixed, "or"),
        ];
        let ids: Vec<Uuid> = (1..=bindings.len() as u128).map(Uuid::from_u128).collect();
        for (id, acl) in ids.iter().zip(&bindings) {
            acls.insert(*id, acl.clone());
        }
        let names = [
            "orders",
            "orders-eu",
            "ord",
            "o",
            "",
            "*",
            "payments-eu",
            "zürich",
            "z",
            "x",
        ];
        let check = |acls: &Acls| {
            for resource_type in [Topic, Group, ResourceType::Cluster] {
                for name in names {
                    assert_eq!(
                        matched(acls, resource_type, name),
                        scanned(acls, resource_type, name),
                        "{resource_type:?} {name:?}"
                    );
                }
            }
        };
        check(&acls);
        assert_eq!(matched(&acls, Topic, "orders").len(), 5);

        // Removed, and one id given another binding: gone from the index too.
        let before = acls.clone();
        assert_eq!(acls.remove(&ids[2]), Some(bindings[2].clone()));
        assert_eq!(acls.remove(&ids[2]), None);
        acls.insert(ids[3], binding(Topic, Literal, "payments-eu"));
        check(&acls);
        assert_eq!(matched(&acls, Topic, "orders").len(), 3);
        // The clone taken before is untouched: the set was copied on the change.
        check(&before);
        assert_eq!(before.len(), bindings.len());
        assert_ne!(before, acls);

        for id in &ids {
            acls.remove(id);
        }
        assert!(acls.is_empty());
        for name in names {
            assert_eq!(acls.matching(Topic, name).count(), 0);
        }
    }

    /// Serialized as the bindings by id (what snapshots held before the index), and rebuilt from
    /// them with the index.
    #[test]
    fn serialized_as_the_bindings_by_id_and_indexed_when_read() {
        let mut by_id = BTreeMap::new();
        by_id.insert(
            Uuid::from_u128(7),
            binding(ResourceType::Topic, PatternType::Prefixed, "ord"),
        );
        let json = serde_json::to_string(&by_id).unwrap();
        let acls: Acls = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&acls).unwrap(), json);
        assert_eq!(acls.matching(ResourceType::Topic, "orders").count(), 1);
        assert_eq!(BTreeMap::from(acls), by_id);
    }
}
