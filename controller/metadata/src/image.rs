//! `MetadataImage`: the cluster metadata as of one metadata offset. It changes only through `replay` of
//! committed records, on the controllers (the Raft state machine) and on brokers (the watch stream) alike,
//! so both sides hold the same image for the same offset. `to_records` turns an image back into records
//! that rebuild it: that is what snapshots and the first message of a watch stream carry.
//!
//! A broker is *active* (may lead and join ISRs) while it is unfenced, not shutting down, and has not
//! reported an offline log directory under its current registration (KIP-858); a new registration
//! starts with its directory online.

use crate::quotas::ClientQuotas;
use crate::scram::{ScramCredential, ScramMechanism};
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl_set::Acls;
use crate::features::FeatureRange;
use crate::records::{
    BrokerId, ConfigResource, Endpoint, PartitionChangeRecord, PartitionRecord, Record,
    RegisterBrokerRecord, TopicId, NO_LEADER,
};

/// A registered broker as the controller knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    /// The metadata offset of the registration record: unique and monotonic per broker id.
    pub broker_epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Its log directory went offline (KIP-858; one directory per broker here, so all of its replicas
    /// are offline). It stays registered and unfenced, but leads nothing and joins no ISR until a new
    /// registration replaces this one.
    #[serde(default)]
    pub has_offline_log_dir: bool,
    /// The feature levels it supports, as it registered them (see
    /// [`crate::features::broker_supports`]). Absent from a snapshot of an older release.
    #[serde(default)]
    pub supported_features: BTreeMap<String, FeatureRange>,
    /// The id of its log directory, as it registered it (`RegisterBrokerRecord::log_dir_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir_id: Option<Uuid>,
}

impl BrokerRegistration {
    /// May lead partitions and join ISRs.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown && !self.has_offline_log_dir
    }

    /// The endpoint for a listener name, or the first one.
    pub fn endpoint(&self, listener: Option<&str>) -> Option<&Endpoint> {
        match listener {
            Some(name) => self.endpoints.iter().find(|e| e.name == name),
            None => self.endpoints.first(),
        }
    }
}

/// One partition's replication state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub recovering: bool,
    /// An ongoing reassignment (KIP-455): replicas being added and removed, all in `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<BrokerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<BrokerId>,
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was below
    /// min.insync.replicas, so no acks=all write was acknowledged without them. The controller elects
    /// one only when the ISR is empty, which happens only when its last member lost its log directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<BrokerId>,
}

impl PartitionRegistration {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// The preferred leader: the first replica in assignment order.
    pub fn preferred_leader(&self) -> Option<BrokerId> {
        self.replicas.first().copied()
    }

    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment leaves in place: `replicas` without those being added (what a
    /// cancellation returns to).
    pub fn original_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.adding_replicas.contains(b))
            .collect()
    }

    /// The replicas a reassignment ends with: `replicas` without those being removed.
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.removing_replicas.contains(b))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    /// Explicitly set configs (defaults are not stored).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRegistration>,
}

impl TopicImage {
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The offset of the last record replayed into this image.
    pub offset: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Each topic behind an `Arc`: copying an image (the broker builds each published image on a
    /// copy) costs one reference count per topic, and a record copies only the topic it changes
    /// (`Arc::make_mut`), never every partition of the cluster (issue #18).
    pub topics: BTreeMap<TopicId, Arc<TopicImage>>,
    pub topic_ids: BTreeMap<String, TopicId>,
    pub cluster_configs: BTreeMap<String, String>,
    /// SCRAM credentials by user and mechanism (KIP-554).
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// Per-broker dynamic configs by broker id, keyed by Kafka's broker config names. Kept when a
    /// broker is gone, as Kafka keeps them.
    #[serde(default)]
    pub broker_configs: BTreeMap<BrokerId, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Every ACL, by the id its `AccessControlEntry` record gave it, indexed by resource.
    #[serde(default)]
    pub acls: Acls,
    /// Finalized feature levels by name (KIP-584; see `features`). Absent: level 0.
    #[serde(default)]
    pub features: BTreeMap<String, i16>,
    /// Client quotas by entity and key (see `quotas`).
    #[serde(default, with = "quota_entries")]
    pub client_quotas: ClientQuotas,
}

/// Client quotas as a list of (entity, quotas) pairs: JSON map keys must be strings.
mod quota_entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::quotas::{ClientQuotas, QuotaEntity};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(quotas: &ClientQuotas, s: S) -> Result<S::Ok, S::Error> {
        quotas.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ClientQuotas, D::Error> {
        let entries = Vec::<(QuotaEntity, BTreeMap<String, i64>)>::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}

impl MetadataImage {
    /// Applies every record of one committed log entry at `offset`.
    pub fn replay_all<'a>(&mut self, offset: u64, records: impl IntoIterator<Item = &'a Record>) {
        for record in records {
            self.replay(offset, record);
        }
        self.offset = self.offset.max(offset);
    }

    /// Applies one record committed at `offset`. Records were validated when they were produced, so
    /// replay never fails; a record naming something unknown, or a partition change computed from an
    /// older partition epoch (both possible only for a stale record), changes nothing.
    pub fn replay(&mut self, offset: u64, record: &Record) {
        match record {
            Record::ClusterId { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
            }
            Record::RegisterBroker(r) => {
                let broker_epoch = if r.broker_epoch < 0 {
                    offset as i64
                } else {
                    r.broker_epoch
                };
                self.brokers.insert(
                    r.broker_id,
                    BrokerRegistration {
                        broker_id: r.broker_id,
                        incarnation_id: r.incarnation_id,
                        broker_epoch,
                        endpoints: r.endpoints.clone(),
                        rack: r.rack.clone(),
                        fenced: r.fenced,
                        in_controlled_shutdown: r.in_controlled_shutdown,
                        has_offline_log_dir: false,
                        supported_features: r.supported_features.clone(),
                        log_dir_id: r.log_dir_id,
                    },
                );
            }
            Record::BrokerChange {
                broker_id,
                broker_epoch,
                fenced,
                in_controlled_shutdown,
                has_offline_log_dir,
            } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    if b.broker_epoch == *broker_epoch {
                        if let Some(o) = has_offline_log_dir {
                            b.has_offline_log_dir = *o;
                        }
                        if let Some(f) = fenced {
                            b.fenced = *f;
                        }
                        if let Some(s) = in_controlled_shutdown {
                            b.in_controlled_shutdown = *s;
                        }
                    }
                }
            }
            Record::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                if self
                    .brokers
                    .get(broker_id)
                    .is_some_and(|b| b.broker_epoch == *broker_epoch)
                {
                    self.brokers.remove(broker_id);
                    // Its replicas may be gone with it, and a registration again under its id is
                    // not compared with its former log directory.
                    let gone = *broker_id;
                    self.drop_elr(None, |b| b == gone);
                }
            }
            Record::Topic { name, topic_id } => {
                self.topic_ids.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    Arc::new(TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        configs: BTreeMap::new(),
                        partitions: Vec::new(),
                    }),
                );
            }
            Record::Partition(p) => {
                if let Some(topic) = self.topics.get_mut(&p.topic_id).map(Arc::make_mut) {
                    let registration = PartitionRegistration {
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        recovering: p.recovering,
                        adding_replicas: p.adding_replicas.clone(),
                        removing_replicas: p.removing_replicas.clone(),
                        elr: p.elr.clone(),
                    };
                    let index = p.partition as usize;
                    if index < topic.partitions.len() {
                        topic.partitions[index] = registration;
                    } else if index == topic.partitions.len() {
                        topic.partitions.push(registration);
                    }
                }
            }
            Record::PartitionChange(change) => {
                if let Some(p) = self.partition_mut(change.topic_id, change.partition) {
                    apply_partition_change(p, change);
                }
            }
            Record::RemoveTopic { topic_id } => {
                if let Some(topic) = self.topics.remove(topic_id) {
                    self.topic_ids.remove(&topic.name);
                }
            }
            Record::Config {
                resource,
                key,
                value,
            } => {
                let configs = match resource {
                    ConfigResource::Cluster => Some(&mut self.cluster_configs),
                    ConfigResource::Broker(id) => Some(self.broker_configs.entry(*id).or_default()),
                    ConfigResource::Topic(name) => match self.topic_ids.get(name) {
                        Some(id) => self
                            .topics
                            .get_mut(id)
                            .map(|t| &mut Arc::make_mut(t).configs),
                        None => None,
                    },
                };
                if let Some(configs) = configs {
                    match value {
                        Some(v) => configs.insert(key.clone(), v.clone()),
                        None => configs.remove(key),
                    };
                }
                // A lower min.insync.replicas acknowledges writes without replicas that became
                // eligible under the old one: as Kafka, every change clears the eligible leaders.
                if key == crate::configs::MIN_INSYNC_REPLICAS {
                    match resource {
                        ConfigResource::Cluster => self.drop_elr(None, |_| true),
                        ConfigResource::Topic(name) => {
                            if let Some(id) = self.topic_ids.get(name).copied() {
                                self.drop_elr(Some(id), |_| true);
                            }
                        }
                        ConfigResource::Broker(_) => {}
                    }
                }
                if let ConfigResource::Broker(id) = resource {
                    if self.broker_configs.get(id).is_some_and(BTreeMap::is_empty) {
                        self.broker_configs.remove(id);
                    }
                }
            }
            Record::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            Record::AccessControlEntry { id, acl } => {
                self.acls.insert(*id, acl.clone());
            }
            Record::RemoveAccessControlEntry { id } => {
                self.acls.remove(id);
            }
            Record::UserScramCredential(credential) => {
                self.scram_credentials
                    .entry(credential.user.clone())
                    .or_default()
                    .insert(credential.mechanism, credential.clone());
            }
            Record::RemoveUserScramCredential { user, mechanism } => {
                if let Some(credentials) = self.scram_credentials.get_mut(user) {
                    credentials.remove(mechanism);
                    if credentials.is_empty() {
                        self.scram_credentials.remove(user);
                    }
                }
            }
            Record::FeatureLevel { name, level } => {
                if *level > 0 {
                    self.features.insert(name.clone(), *level);
                } else {
                    self.features.remove(name);
                }
            }
            Record::ClientQuota { entity, key, value } => match value {
                Some(value) => {
                    self.client_quotas
                        .entry(entity.clone())
                        .or_default()
                        .insert(key.clone(), *value);
                }
                None => {
                    if let Some(quotas) = self.client_quotas.get_mut(entity) {
                        quotas.remove(key);
                        if quotas.is_empty() {
                            self.client_quotas.remove(entity);
                        }
                    }
                }
            },
        }
    }

    /// A feature's finalized level: 0 when it is not finalized.
    pub fn feature_level(&self, name: &str) -> i16 {
        self.features.get(name).copied().unwrap_or(0)
    }

    /// Records that rebuild this image from an empty one (its offset excepted).
    pub fn to_records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        if let Some(cluster_id) = &self.cluster_id {
            records.push(Record::ClusterId {
                cluster_id: cluster_id.clone(),
            });
        }
        for (name, level) in &self.features {
            records.push(Record::FeatureLevel {
                name: name.clone(),
                level: *level,
            });
        }
        for (key, value) in &self.cluster_configs {
            records.push(Record::Config {
                resource: ConfigResource::Cluster,
                key: key.clone(),
                value: Some(value.clone()),
            });
        }
        for credential in self.scram_credentials.values().flat_map(BTreeMap::values) {
            records.push(Record::UserScramCredential(credential.clone()));
        }
        for (entity, quotas) in &self.client_quotas {
            for (key, value) in quotas {
                records.push(Record::ClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                    value: Some(*value),
                });
            }
        }
        for (broker_id, configs) in &self.broker_configs {
            for (key, value) in configs {
                records.push(Record::Config {
                    resource: ConfigResource::Broker(*broker_id),
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        if self.next_producer_id > 0 {
            records.push(Record::ProducerIds {
                broker_id: -1,
                broker_epoch: -1,
                next_producer_id: self.next_producer_id,
            });
        }
        for (id, acl) in &self.acls {
            records.push(Record::AccessControlEntry {
                id: *id,
                acl: acl.clone(),
            });
        }
        for b in self.brokers.values() {
            records.push(Record::RegisterBroker(RegisterBrokerRecord {
                broker_id: b.broker_id,
                incarnation_id: b.incarnation_id,
                broker_epoch: b.broker_epoch,
                endpoints: b.endpoints.clone(),
                rack: b.rack.clone(),
                fenced: b.fenced,
                in_controlled_shutdown: b.in_controlled_shutdown,
                supported_features: b.supported_features.clone(),
                log_dir_id: b.log_dir_id,
            }));
            if b.has_offline_log_dir {
                records.push(Record::BrokerChange {
                    broker_id: b.broker_id,
                    broker_epoch: b.broker_epoch,
                    fenced: None,
                    in_controlled_shutdown: None,
                    has_offline_log_dir: Some(true),
                });
            }
        }
        for topic in self.topics.values() {
            records.push(Record::Topic {
                name: topic.name.clone(),
                topic_id: topic.id,
            });
            for (key, value) in &topic.configs {
                records.push(Record::Config {
                    resource: ConfigResource::Topic(topic.name.clone()),
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
            for (index, p) in topic.partitions.iter().enumerate() {
                records.push(Record::Partition(PartitionRecord {
                    topic_id: topic.id,
                    partition: index as i32,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    recovering: p.recovering,
                    adding_replicas: p.adding_replicas.clone(),
                    removing_replicas: p.removing_replicas.clone(),
                    elr: p.elr.clone(),
                }));
            }
        }
        records
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids
            .get(name)
            .and_then(|id| self.topics.get(id))
            .map(|t| &**t)
    }

    pub fn partition(&self, topic_id: TopicId, partition: i32) -> Option<&PartitionRegistration> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(&topic_id)?.partitions.get(index)
    }

    fn partition_mut(
        &mut self,
        topic_id: TopicId,
        partition: i32,
    ) -> Option<&mut PartitionRegistration> {
        let index = usize::try_from(partition).ok()?;
        Arc::make_mut(self.topics.get_mut(&topic_id)?)
            .partitions
            .get_mut(index)
    }

    /// Every partition as `(topic, index, registration)`, topics in id order.
    /// Drops the eligible leader replicas `drop` names, in the topic `only` or in every topic; a
    /// topic without any is not copied.
    fn drop_elr(&mut self, only: Option<TopicId>, drop: impl Fn(BrokerId) -> bool) {
        for (id, topic) in self.topics.iter_mut() {
            if only.is_some_and(|only| only != *id) {
                continue;
            }
            if topic
                .partitions
                .iter()
                .any(|p| p.elr.iter().any(|&b| drop(b)))
            {
                for p in &mut Arc::make_mut(topic).partitions {
                    p.elr.retain(|&b| !drop(b));
                }
            }
        }
    }

    pub fn partitions(&self) -> impl Iterator<Item = (&TopicImage, i32, &PartitionRegistration)> {
        self.topics.values().flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (&**t, i as i32, p))
        })
    }

    /// True when the broker is registered, unfenced and not shutting down.
    pub fn is_active_broker(&self, broker_id: BrokerId) -> bool {
        self.brokers.get(&broker_id).is_some_and(|b| b.is_active())
    }

    pub fn active_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| b.is_active())
    }

    /// The brokers new replicas may go to: active and not cordoned (KIP-1066,
    /// `configs::is_cordoned`). The controller places over these.
    pub fn placeable_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.active_brokers()
            .filter(|b| !crate::configs::is_cordoned(self, b.broker_id))
    }

    /// How many partitions each broker leads.
    pub fn leader_count(&self, broker_id: BrokerId) -> usize {
        self.partitions()
            .filter(|(_, _, p)| p.leader == broker_id)
            .count()
    }
}

/// The one place the epoch rules live (Kafka's `PartitionRegistration.merge`): every change bumps the
/// partition epoch; a change that sets the leader, even to the same broker or to none, bumps the leader
/// epoch. A change computed from another partition epoch than the current one is stale and changes
/// nothing (its fields are absolute, so applying it would undo whatever came in between); returns
/// whether it applied.
pub fn apply_partition_change(
    p: &mut PartitionRegistration,
    change: &PartitionChangeRecord,
) -> bool {
    if change
        .expected_partition_epoch
        .is_some_and(|expected| expected != p.partition_epoch)
    {
        return false;
    }
    if let Some(leader) = change.leader {
        p.leader = leader;
        p.leader_epoch += 1;
    }
    if let Some(isr) = &change.isr {
        p.isr = isr.clone();
    }
    if let Some(replicas) = &change.replicas {
        p.replicas = replicas.clone();
        // A replica moved off the partition deletes its copy (a reassignment).
        let replicas = &p.replicas;
        p.elr.retain(|b| replicas.contains(b));
    }
    if let Some(recovering) = change.recovering {
        p.recovering = recovering;
    }
    if let Some(adding) = &change.adding_replicas {
        p.adding_replicas = adding.clone();
    }
    if let Some(removing) = &change.removing_replicas {
        p.removing_replicas = removing.clone();
    }
    // A change of the ISR that does not say what the eligible leader replicas are clears them: a
    // stale one could be elected without writes acknowledged since it left (KIP-966 keeps them only
    // while the ISR is below min.insync.replicas, which the controller works out).
    if let Some(elr) = &change.elr {
        p.elr = elr.clone();
    } else if change.isr.is_some() {
        p.elr.clear();
    }
    p.partition_epoch += 1;
    true
}
