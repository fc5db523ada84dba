//! Conversions between the controller's domain types and the generated protobuf types. Brokers use the
//! same functions to turn `WatchMetadata` updates back into records, so both sides agree by construction.

use std::collections::BTreeMap;

use crate::features::FeatureRange;
use crate::quotas::QuotaEntity;
use crate::scram::{ScramCredential, ScramMechanism};
use chronik_proto::v1 as pb;
use uuid::Uuid;

use crate::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
};
use crate::records::{
    ConfigResource, PartitionChangeRecord, PartitionRecord, RegisterBrokerRecord,
};
use crate::records::{Endpoint, Record};

/// A record or request field that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed {0}")]
pub struct DecodeError(pub String);

pub fn topic_id_to_bytes(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

pub fn topic_id_from_bytes(bytes: &[u8]) -> Result<Uuid, DecodeError> {
    Uuid::from_slice(bytes)
        .map_err(|_| DecodeError(format!("topic id ({} bytes, need 16)", bytes.len())))
}

pub fn endpoint_to_proto(e: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        name: e.name.clone(),
        host: e.host.clone(),
        port: u32::from(e.port),
    }
}

pub fn endpoint_from_proto(e: &pb::Endpoint) -> Result<Endpoint, DecodeError> {
    let port = u16::try_from(e.port).map_err(|_| DecodeError(format!("port {}", e.port)))?;
    if e.host.is_empty() {
        return Err(DecodeError("endpoint: empty host".into()));
    }
    Ok(Endpoint {
        name: e.name.clone(),
        host: e.host.clone(),
        port,
    })
}

/// Feature ranges as a registration carries them.
pub fn feature_ranges_to_proto(ranges: &BTreeMap<String, FeatureRange>) -> Vec<pb::FeatureRange> {
    ranges
        .iter()
        .map(|(name, range)| pb::FeatureRange {
            name: name.clone(),
            min_level: i32::from(range.min_level),
            max_level: i32::from(range.max_level),
        })
        .collect()
}

/// Feature ranges from a registration: levels fit an `int16` and a range does not run backwards.
pub fn feature_ranges_from_proto(
    ranges: &[pb::FeatureRange],
) -> Result<BTreeMap<String, FeatureRange>, DecodeError> {
    ranges
        .iter()
        .map(|r| {
            let level = |l: i32| {
                i16::try_from(l).map_err(|_| DecodeError(format!("feature {} level {l}", r.name)))
            };
            let range = FeatureRange {
                min_level: level(r.min_level)?,
                max_level: level(r.max_level)?,
            };
            if range.min_level < 0 || range.min_level > range.max_level {
                return Err(DecodeError(format!(
                    "feature {} range {}-{}",
                    r.name, range.min_level, range.max_level
                )));
            }
            Ok((r.name.clone(), range))
        })
        .collect()
}

pub fn record_to_proto(record: &Record) -> pb::MetadataRecord {
    use pb::metadata_record::Record as R;
    let inner = match record {
        Record::ClusterId { cluster_id } => R::ClusterId(pb::ClusterIdRecord {
            cluster_id: cluster_id.clone(),
        }),
        Record::RegisterBroker(r) => R::RegisterBroker(pb::RegisterBrokerRecord {
            broker_id: r.broker_id,
            incarnation_id: r.incarnation_id.to_string(),
            broker_epoch: r.broker_epoch,
            endpoints: r.endpoints.iter().map(endpoint_to_proto).collect(),
            rack: r.rack.clone(),
            fenced: r.fenced,
            in_controlled_shutdown: r.in_controlled_shutdown,
            supported_features: feature_ranges_to_proto(&r.supported_features),
            log_dir_id: r.log_dir_id.map(|id| id.to_string()),
        }),
        Record::BrokerChange {
            broker_id,
            broker_epoch,
            fenced,
            in_controlled_shutdown,
            has_offline_log_dir,
        } => R::BrokerChange(pb::BrokerRegistrationChangeRecord {
            broker_id: *broker_id,
            broker_epoch: *broker_epoch,
            fenced: *fenced,
            in_controlled_shutdown: *in_controlled_shutdown,
            has_offline_log_dir: *has_offline_log_dir,
        }),
        Record::UnregisterBroker {
            broker_id,
            broker_epoch,
        } => R::UnregisterBroker(pb::UnregisterBrokerRecord {
            broker_id: *broker_id,
            broker_epoch: *broker_epoch,
        }),
        Record::Topic { name, topic_id } => R::Topic(pb::TopicRecord {
            name: name.clone(),
            topic_id: topic_id_to_bytes(*topic_id),
        }),
        Record::Partition(p) => R::Partition(pb::PartitionRecord {
            topic_id: topic_id_to_bytes(p.topic_id),
            partition_index: p.partition,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            recovering: p.recovering,
            adding_replicas: p.adding_replicas.clone(),
            removing_replicas: p.removing_replicas.clone(),
            elr: p.elr.clone(),
        }),
        Record::PartitionChange(c) => R::PartitionChange(pb::PartitionChangeRecord {
            topic_id: topic_id_to_bytes(c.topic_id),
            partition_index: c.partition,
            leader: c.leader,
            isr: c
                .isr
                .as_ref()
                .map(|b| pb::BrokerList { brokers: b.clone() }),
            replicas: c
                .replicas
                .as_ref()
                .map(|b| pb::BrokerList { brokers: b.clone() }),
            recovering: c.recovering,
            expected_partition_epoch: c.expected_partition_epoch,
            adding_replicas: c
                .adding_replicas
                .as_ref()
                .map(|b| pb::BrokerList { brokers: b.clone() }),
            removing_replicas: c
                .removing_replicas
                .as_ref()
                .map(|b| pb::BrokerList { brokers: b.clone() }),
            elr: c
                .elr
                .as_ref()
                .map(|b| pb::BrokerList { brokers: b.clone() }),
        }),
        Record::RemoveTopic { topic_id } => R::RemoveTopic(pb::RemoveTopicRecord {
            topic_id: topic_id_to_bytes(*topic_id),
        }),
        Record::Config {
            resource,
            key,
            value,
        } => {
            let (resource, resource_name) = match resource {
                ConfigResource::Cluster => (pb::ConfigResource::Cluster, String::new()),
                ConfigResource::Topic(name) => (pb::ConfigResource::Topic, name.clone()),
                ConfigResource::Broker(id) => (pb::ConfigResource::Broker, id.to_string()),
            };
            R::Config(pb::ConfigRecord {
                resource: resource as i32,
                resource_name,
                key: key.clone(),
                value: value.clone(),
            })
        }
        Record::ProducerIds {
            broker_id,
            broker_epoch,
            next_producer_id,
        } => R::ProducerIds(pb::ProducerIdsRecord {
            broker_id: *broker_id,
            broker_epoch: *broker_epoch,
            next_producer_id: *next_producer_id,
        }),
        Record::AccessControlEntry { id, acl } => {
            R::AccessControlEntry(pb::AccessControlEntryRecord {
                id: topic_id_to_bytes(*id),
                acl: Some(acl_to_proto(acl)),
            })
        }
        Record::RemoveAccessControlEntry { id } => {
            R::RemoveAccessControlEntry(pb::RemoveAccessControlEntryRecord {
                id: topic_id_to_bytes(*id),
            })
        }
        Record::UserScramCredential(c) => R::UserScramCredential(pb::UserScramCredentialRecord {
            name: c.user.clone(),
            mechanism: i32::from(c.mechanism.code()),
            salt: c.salt.clone(),
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
            iterations: c.iterations,
        }),
        Record::RemoveUserScramCredential { user, mechanism } => {
            R::RemoveUserScramCredential(pb::RemoveUserScramCredentialRecord {
                name: user.clone(),
                mechanism: i32::from(mechanism.code()),
            })
        }
        Record::FeatureLevel { name, level } => R::FeatureLevel(pb::FeatureLevelRecord {
            name: name.clone(),
            level: i32::from(*level),
        }),
        Record::ClientQuota { entity, key, value } => R::ClientQuota(pb::ClientQuotaRecord {
            entity: quota_entity_to_proto(entity),
            key: key.clone(),
            value: *value,
        }),
    };
    pb::MetadataRecord {
        record: Some(inner),
    }
}

fn scram_mechanism(code: i32) -> Result<ScramMechanism, DecodeError> {
    i8::try_from(code)
        .ok()
        .and_then(ScramMechanism::from_code)
        .ok_or_else(|| DecodeError(format!("SCRAM mechanism {code}")))
}

pub fn record_from_proto(record: &pb::MetadataRecord) -> Result<Record, DecodeError> {
    use pb::metadata_record::Record as R;
    let inner = record
        .record
        .as_ref()
        .ok_or_else(|| DecodeError("metadata record: empty".into()))?;
    Ok(match inner {
        R::ClusterId(r) => Record::ClusterId {
            cluster_id: r.cluster_id.clone(),
        },
        R::RegisterBroker(r) => Record::RegisterBroker(RegisterBrokerRecord {
            broker_id: r.broker_id,
            incarnation_id: Uuid::parse_str(&r.incarnation_id)
                .map_err(|_| DecodeError(format!("incarnation id '{}'", r.incarnation_id)))?,
            broker_epoch: r.broker_epoch,
            endpoints: r
                .endpoints
                .iter()
                .map(endpoint_from_proto)
                .collect::<Result<_, _>>()?,
            rack: r.rack.clone(),
            fenced: r.fenced,
            in_controlled_shutdown: r.in_controlled_shutdown,
            supported_features: feature_ranges_from_proto(&r.supported_features)?,
            log_dir_id: r
                .log_dir_id
                .as_deref()
                .map(|id| {
                    Uuid::parse_str(id).map_err(|_| DecodeError(format!("log directory id '{id}'")))
                })
                .transpose()?,
        }),
        R::BrokerChange(r) => Record::BrokerChange {
            broker_id: r.broker_id,
            broker_epoch: r.broker_epoch,
            fenced: r.fenced,
            in_controlled_shutdown: r.in_controlled_shutdown,
            has_offline_log_dir: r.has_offline_log_dir,
        },
        R::UnregisterBroker(r) => Record::UnregisterBroker {
            broker_id: r.broker_id,
            broker_epoch: r.broker_epoch,
        },
        R::Topic(r) => Record::Topic {
            name: r.name.clone(),
            topic_id: topic_id_from_bytes(&r.topic_id)?,
        },
        R::Partition(p) => Record::Partition(PartitionRecord {
            topic_id: topic_id_from_bytes(&p.topic_id)?,
            partition: p.partition_index,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            recovering: p.recovering,
            adding_replicas: p.adding_replicas.clone(),
            removing_replicas: p.removing_replicas.clone(),
            elr: p.elr.clone(),
        }),
        R::PartitionChange(c) => Record::PartitionChange(PartitionChangeRecord {
            topic_id: topic_id_from_bytes(&c.topic_id)?,
            partition: c.partition_index,
            leader: c.leader,
            isr: c.isr.as_ref().map(|l| l.brokers.clone()),
            replicas: c.replicas.as_ref().map(|l| l.brokers.clone()),
            recovering: c.recovering,
            expected_partition_epoch: c.expected_partition_epoch,
            adding_replicas: c.adding_replicas.as_ref().map(|l| l.brokers.clone()),
            removing_replicas: c.removing_replicas.as_ref().map(|l| l.brokers.clone()),
            elr: c.elr.as_ref().map(|l| l.brokers.clone()),
        }),
        R::RemoveTopic(r) => Record::RemoveTopic {
            topic_id: topic_id_from_bytes(&r.topic_id)?,
        },
        R::Config(r) => Record::Config {
            resource: match pb::ConfigResource::try_from(r.resource) {
                Ok(pb::ConfigResource::Cluster) => ConfigResource::Cluster,
                Ok(pb::ConfigResource::Topic) => ConfigResource::Topic(r.resource_name.clone()),
                Ok(pb::ConfigResource::Broker) => {
                    ConfigResource::Broker(r.resource_name.parse().map_err(|_| {
                        DecodeError(format!("broker config of broker {:?}", r.resource_name))
                    })?)
                }
                _ => return Err(DecodeError(format!("config resource {}", r.resource))),
            },
            key: r.key.clone(),
            value: r.value.clone(),
        },
        R::ProducerIds(r) => Record::ProducerIds {
            broker_id: r.broker_id,
            broker_epoch: r.broker_epoch,
            next_producer_id: r.next_producer_id,
        },
        R::AccessControlEntry(r) => Record::AccessControlEntry {
            id: topic_id_from_bytes(&r.id)?,
            acl: acl_from_proto(
                r.acl
                    .as_ref()
                    .ok_or_else(|| DecodeError("access control entry: no ACL".into()))?,
            ),
        },
        R::RemoveAccessControlEntry(r) => Record::RemoveAccessControlEntry {
            id: topic_id_from_bytes(&r.id)?,
        },
        R::UserScramCredential(r) => Record::UserScramCredential(ScramCredential {
            user: r.name.clone(),
            mechanism: scram_mechanism(r.mechanism)?,
            salt: r.salt.clone(),
            stored_key: r.stored_key.clone(),
            server_key: r.server_key.clone(),
            iterations: r.iterations,
        }),
        R::RemoveUserScramCredential(r) => Record::RemoveUserScramCredential {
            user: r.name.clone(),
            mechanism: scram_mechanism(r.mechanism)?,
        },
        R::FeatureLevel(r) => Record::FeatureLevel {
            name: r.name.clone(),
            level: i16::try_from(r.level)
                .map_err(|_| DecodeError(format!("feature {}: level {}", r.name, r.level)))?,
        },
        R::ClientQuota(r) => Record::ClientQuota {
            entity: quota_entity_from_proto(&r.entity)?,
            key: r.key.clone(),
            value: r.value,
        },
    })
}

pub fn quota_entity_to_proto(entity: &QuotaEntity) -> Vec<pb::QuotaEntityPart> {
    entity
        .parts()
        .iter()
        .map(|(entity_type, name)| pb::QuotaEntityPart {
            entity_type: entity_type.clone(),
            name: name.clone(),
        })
        .collect()
}

pub fn quota_entity_from_proto(parts: &[pb::QuotaEntityPart]) -> Result<QuotaEntity, DecodeError> {
    QuotaEntity::new(
        parts
            .iter()
            .map(|p| (p.entity_type.clone(), p.name.clone()))
            .collect(),
    )
    .map_err(|e| DecodeError(format!("quota entity: {e}")))
}

/// A Kafka enum code as the proto carries it (`int32`); out of range reads as UNKNOWN's code.
fn code_of(value: i32) -> i8 {
    i8::try_from(value).unwrap_or(0)
}

pub fn acl_to_proto(acl: &AclBinding) -> pb::AclBinding {
    pb::AclBinding {
        resource_type: i32::from(acl.resource_type.code()),
        resource_name: acl.resource_name.clone(),
        pattern_type: i32::from(acl.pattern_type.code()),
        principal: acl.principal.clone(),
        host: acl.host.clone(),
        operation: i32::from(acl.operation.code()),
        permission_type: i32::from(acl.permission.code()),
    }
}

/// Never fails: codes Kafka does not define read as UNKNOWN, which `AclBinding::validate` refuses.
pub fn acl_from_proto(acl: &pb::AclBinding) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(code_of(acl.resource_type)),
        resource_name: acl.resource_name.clone(),
        pattern_type: PatternType::from_code(code_of(acl.pattern_type)),
        principal: acl.principal.clone(),
        host: acl.host.clone(),
        operation: AclOperation::from_code(code_of(acl.operation)),
        permission: AclPermissionType::from_code(code_of(acl.permission_type)),
    }
}

pub fn acl_filter_to_proto(filter: &AclBindingFilter) -> pb::AclBindingFilter {
    pb::AclBindingFilter {
        resource_type: i32::from(filter.resource_type.code()),
        resource_name: filter.resource_name.clone(),
        pattern_type: i32::from(filter.pattern_type.code()),
        principal: filter.principal.clone(),
        host: filter.host.clone(),
        operation: i32::from(filter.operation.code()),
        permission_type: i32::from(filter.permission.code()),
    }
}

/// Never fails, as `acl_from_proto`; `AclBindingFilter::validate` refuses UNKNOWN elements.
pub fn acl_filter_from_proto(filter: &pb::AclBindingFilter) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(code_of(filter.resource_type)),
        resource_name: filter.resource_name.clone(),
        pattern_type: PatternType::from_code(code_of(filter.pattern_type)),
        principal: filter.principal.clone(),
        host: filter.host.clone(),
        operation: AclOperation::from_code(code_of(filter.operation)),
        permission: AclPermissionType::from_code(code_of(filter.permission_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert!(record_from_proto(&pb::MetadataRecord { record: None }).is_err());
        let bad = pb::MetadataRecord {
            record: Some(pb::metadata_record::Record::RemoveTopic(
                pb::RemoveTopicRecord {
                    topic_id: vec![1, 2, 3],
                },
            )),
        };
        assert!(record_from_proto(&bad).is_err());
        let no_acl = pb::MetadataRecord {
            record: Some(pb::metadata_record::Record::AccessControlEntry(
                pb::AccessControlEntryRecord {
                    id: vec![0; 16],
                    acl: None,
                },
            )),
        };
        assert!(record_from_proto(&no_acl).is_err());
    }

    #[test]
    fn acl_records_round_trip() {
        let acl = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "orders".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Write,
            permission: AclPermissionType::Deny,
        };
        let id = Uuid::new_v4();
        for record in [
            Record::AccessControlEntry { id, acl },
            Record::RemoveAccessControlEntry { id },
        ] {
            assert_eq!(
                record_from_proto(&record_to_proto(&record)).expect("decodes"),
                record
            );
        }
        let odd = pb::AclBinding {
            operation: 300,
            ..Default::default()
        };
        assert_eq!(acl_from_proto(&odd).operation, AclOperation::Unknown);
    }

    #[test]
    fn client_quota_records_round_trip_and_refuse_bad_entities() {
        let entity = QuotaEntity::new(vec![
            ("user".to_owned(), Some("alice".to_owned())),
            ("client-id".to_owned(), None),
        ])
        .unwrap();
        for value in [Some(1024), None] {
            let record = Record::ClientQuota {
                entity: entity.clone(),
                key: "producer_byte_rate".to_owned(),
                value,
            };
            assert_eq!(
                record_from_proto(&record_to_proto(&record)).expect("decodes"),
                record
            );
        }
        let twice = pb::MetadataRecord {
            record: Some(pb::metadata_record::Record::ClientQuota(
                pb::ClientQuotaRecord {
                    entity: vec![
                        pb::QuotaEntityPart {
                            entity_type: "user".to_owned(),
                            name: None,
                        };
                        2
                    ],
                    key: "producer_byte_rate".to_owned(),
                    value: Some(1),
                },
            )),
        };
        assert!(record_from_proto(&twice).is_err());
    }

    #[test]
    fn a_registration_keeps_its_feature_ranges_and_refuses_bad_ones() {
        let record = Record::RegisterBroker(RegisterBrokerRecord {
            broker_id: 3,
            incarnation_id: Uuid::new_v4(),
            broker_epoch: 42,
            endpoints: Vec::new(),
            rack: None,
            fenced: false,
            in_controlled_shutdown: false,
            supported_features: crate::features::supported_features(),
            log_dir_id: None,
        });
        assert_eq!(
            record_from_proto(&record_to_proto(&record)).expect("decodes"),
            record
        );
        for (min_level, max_level) in [(2, 1), (-1, 2), (0, 40_000)] {
            let bad = [pb::FeatureRange {
                name: "transaction.version".into(),
                min_level,
                max_level,
            }];
            assert!(
                feature_ranges_from_proto(&bad).is_err(),
                "{min_level}-{max_level}"
            );
        }
    }
}
