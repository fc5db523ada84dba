//! Config changes (Kafka's `ConfigurationControlManager`): IncrementalAlterConfigs and the legacy
//! AlterConfigs on topics, on the cluster-wide defaults and on one broker's dynamic configs, each
//! resource on its own.
//!
//! Cluster-wide defaults are named by their Kafka broker-level names (`log.retention.ms`) and stored
//! under the topic config they default (`retention.ms`), so every reader of the image
//! (`configs::effective`) sees a change at once. What must stay true: a refused resource changes
//! nothing, a resource's result is computed from the whole new config (a topic's
//! `min.insync.replicas` against its replication factor), and only real differences become records.

use std::collections::BTreeMap;

use crate::error::{ApiError, ResponseError};

use super::configs::{
    broker_name_of, cluster_default, per_broker_config_def, topic_config_def,
    validate_min_insync_replicas, validate_value, ConfigDef, ConfigKind,
};
use super::image::MetadataImage;
use super::records::{ConfigResource, Record};
use super::ControllerResult;

static NO_CONFIGS: BTreeMap<String, String> = BTreeMap::new();

/// Kafka's `AlterConfigOp.OpType`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    Delete,
    /// Add list items not already present.
    Append(String),
    /// Remove list items.
    Subtract(String),
}

/// What one resource asks for.
#[derive(Clone, Debug)]
pub struct AlterResource {
    pub resource: ConfigResource,
    pub changes: Vec<(String, ConfigOp)>,
    /// Legacy AlterConfigs: the changes are the whole explicit config; other keys are deleted.
    pub replace: bool,
}

/// Per resource, the explicit configs afterwards (keys as the caller named them) or why not.
pub type AlterConfigsReply = Vec<Result<BTreeMap<String, String>, ApiError>>;

pub fn alter_configs(
    image: &MetadataImage,
    resources: &[AlterResource],
) -> ControllerResult<AlterConfigsReply> {
    let mut records = Vec::new();
    let mut reply = Vec::new();
    for resource in resources {
        match alter_one(image, resource) {
            Ok((changes, configs)) => {
                records.extend(changes);
                reply.push(Ok(configs));
            }
            Err(e) => reply.push(Err(e)),
        }
    }
    ControllerResult::new(records, reply)
}

/// A key as one resource names it, resolved to where the image stores it.
struct Key {
    /// The name the caller used (a broker-level name for the cluster).
    name: String,
    stored: &'static str,
    def: &'static ConfigDef,
}

fn invalid_config(message: String) -> ApiError {
    ApiError::new(ResponseError::InvalidConfig, message)
}

fn alter_one(
    image: &MetadataImage,
    resource: &AlterResource,
) -> Result<(Vec<Record>, BTreeMap<String, String>), ApiError> {
    let (current, replication_factor) = match &resource.resource {
        ConfigResource::Topic(name) => {
            let topic = image.topic_by_name(name).ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic '{name}' does not exist."),
                )
            })?;
            (&topic.configs, Some(topic.replication_factor()))
        }
        ConfigResource::Cluster => (&image.cluster_configs, None),
        ConfigResource::Broker(id) => (image.broker_configs.get(id).unwrap_or(&NO_CONFIGS), None),
    };
    let resolve = |name: &str| -> Result<Key, ApiError> {
        match &resource.resource {
            ConfigResource::Topic(_) => topic_config_def(name)
                .map(|def| Key {
                    name: name.to_string(),
                    stored: def.name,
                    def,
                })
                .ok_or_else(|| invalid_config(format!("Unknown topic config name: {name}"))),
            ConfigResource::Cluster => cluster_default(name)
                .map(|d| Key {
                    name: name.to_string(),
                    stored: d.stored_key,
                    def: d.def,
                })
                .ok_or_else(|| {
                    invalid_config(format!(
                        "'{name}' is not a cluster-wide default Chronik knows; `chronikctl \
                         cluster config get` lists them"
                    ))
                }),
            ConfigResource::Broker(_) => match per_broker_config_def(name) {
                Some(def) => Ok(Key {
                    name: name.to_string(),
                    stored: def.name,
                    def,
                }),
                None if cluster_default(name).is_some() => Err(invalid_config(format!(
                    "Chronik applies '{name}' to the whole cluster: set it on the cluster-wide \
                     default (the BROKER resource with an empty name, `kafka-configs \
                     --entity-default`)"
                ))),
                None => Err(invalid_config(format!(
                    "'{name}' is not a per-broker dynamic config Kafka or Chronik knows"
                ))),
            },
        }
    };

    let mut seen = std::collections::BTreeSet::new();
    let mut updated: BTreeMap<&'static str, String> = if resource.replace {
        BTreeMap::new()
    } else {
        current
            .iter()
            .filter_map(|(k, v)| Some((known_stored_key(resource, k)?, v.clone())))
            .collect()
    };
    for (name, op) in &resource.changes {
        if !seen.insert(name.as_str()) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys: {name}"),
            ));
        }
        let key = resolve(name)?;
        match op {
            ConfigOp::Set(value) => {
                validate_value(key.def, value)?;
                updated.insert(key.stored, value.clone());
            }
            ConfigOp::Delete => {
                updated.remove(key.stored);
            }
            ConfigOp::Append(items) | ConfigOp::Subtract(items) => {
                if !is_list(key.def) {
                    return Err(invalid_config(format!(
                        "Can't {} to key {} because its type is not LIST.",
                        if matches!(op, ConfigOp::Append(_)) {
                            "APPEND"
                        } else {
                            "SUBTRACT"
                        },
                        key.name
                    )));
                }
                let old = updated
                    .get(key.stored)
                    .map(String::as_str)
                    .unwrap_or(key.def.default);
                let value = if matches!(op, ConfigOp::Append(_)) {
                    append(old, items)
                } else {
                    subtract(old, items)
                };
                validate_value(key.def, &value)?;
                updated.insert(key.stored, value);
            }
        }
    }
    if let Some(rf) = replication_factor {
        let owned: BTreeMap<String, String> = updated
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        validate_min_insync_replicas(&owned, rf)?;
    }

    let mut records = Vec::new();
    for (key, value) in &updated {
        if current.get(*key) != Some(value) {
            records.push(Record::Config {
                resource: resource.resource.clone(),
                key: key.to_string(),
                value: Some(value.clone()),
            });
        }
    }
    for key in current.keys() {
        let kept = known_stored_key(resource, key).is_some_and(|k| updated.contains_key(k));
        // Keys the image holds but no longer knows are left alone unless replaced wholesale.
        if !kept && (resource.replace || known_stored_key(resource, key).is_some()) {
            records.push(Record::Config {
                resource: resource.resource.clone(),
                key: key.clone(),
                value: None,
            });
        }
    }
    let configs = updated
        .into_iter()
        .map(|(stored, value)| (display_name(resource, stored), value))
        .collect();
    Ok((records, configs))
}

/// The static name of a stored key this resource knows.
fn known_stored_key(resource: &AlterResource, key: &str) -> Option<&'static str> {
    match resource.resource {
        ConfigResource::Topic(_) => topic_config_def(key).map(|d| d.name),
        ConfigResource::Cluster => {
            broker_name_of(key).and_then(|b| cluster_default(b).map(|d| d.stored_key))
        }
        ConfigResource::Broker(_) => per_broker_config_def(key).map(|d| d.name),
    }
}

/// A stored key by the name the resource's callers use.
fn display_name(resource: &AlterResource, stored: &str) -> String {
    match resource.resource {
        ConfigResource::Topic(_) => stored.to_string(),
        ConfigResource::Cluster => broker_name_of(stored).unwrap_or(stored).to_string(),
        ConfigResource::Broker(_) => stored.to_string(),
    }
}

fn is_list(def: &ConfigDef) -> bool {
    matches!(
        def.kind,
        ConfigKind::List(_) | ConfigKind::ThrottledReplicas | ConfigKind::LogDirs
    )
}

fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn append(old: &str, added: &str) -> String {
    let mut list: Vec<&str> = items(old).collect();
    for item in items(added) {
        if !list.contains(&item) {
            list.push(item);
        }
    }
    list.join(",")
}

fn subtract(old: &str, removed: &str) -> String {
    let removed: Vec<&str> = items(removed).collect();
    items(old)
        .filter(|item| !removed.contains(item))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::tests::{cluster, commit};
    use crate::state::configs::effective;

    fn topic(changes: &[(&str, ConfigOp)]) -> AlterResource {
        AlterResource {
            resource: ConfigResource::Topic("orders".into()),
            changes: changes
                .iter()
                .map(|(k, op)| (k.to_string(), op.clone()))
                .collect(),
            replace: false,
        }
    }

    fn cluster_wide(changes: &[(&str, ConfigOp)]) -> AlterResource {
        AlterResource {
            resource: ConfigResource::Cluster,
            ..topic(changes)
        }
    }

    fn set(value: &str) -> ConfigOp {
        ConfigOp::Set(value.into())
    }

    fn code(result: &ControllerResult<AlterConfigsReply>) -> ResponseError {
        result.reply[0].as_ref().unwrap_err().code
    }

    #[test]
    fn topic_configs_are_set_appended_subtracted_and_deleted() {
        let mut image = cluster(&[1], 1, 1);
        let (_, reply) = commit(&mut image, |image| {
            alter_configs(image, &[topic(&[("retention.ms", set("10"))])])
        });
        assert_eq!(reply[0].as_ref().unwrap()["retention.ms"], "10");
        let (_, reply) = commit(&mut image, |image| {
            alter_configs(
                image,
                &[topic(&[(
                    "cleanup.policy",
                    ConfigOp::Append("compact".into()),
                )])],
            )
        });
        // Appended to the default, `delete`.
        assert_eq!(
            reply[0].as_ref().unwrap()["cleanup.policy"],
            "delete,compact"
        );
        let (_, reply) = commit(&mut image, |image| {
            alter_configs(
                image,
                &[topic(&[
                    ("cleanup.policy", ConfigOp::Subtract("delete".into())),
                    ("retention.ms", ConfigOp::Delete),
                ])],
            )
        });
        let configs = reply[0].as_ref().unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs["cleanup.policy"], "compact");
        let orders = image.topic_by_name("orders").unwrap();
        assert_eq!(
            orders.configs,
            BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())])
        );
    }

    #[test]
    fn a_refused_resource_changes_nothing_and_the_others_still_apply() {
        let image = cluster(&[1], 1, 1);
        let cases = [
            (vec![("nope", set("1"))], ResponseError::InvalidConfig),
            (
                vec![("retention.ms", set("soon"))],
                ResponseError::InvalidConfig,
            ),
            (
                vec![("retention.ms", ConfigOp::Append("1".into()))],
                ResponseError::InvalidConfig,
            ),
            // `orders` has one replica.
            (
                vec![("min.insync.replicas", set("2"))],
                ResponseError::InvalidConfig,
            ),
            (
                vec![
                    ("retention.ms", set("1")),
                    ("retention.ms", ConfigOp::Delete),
                ],
                ResponseError::InvalidRequest,
            ),
            (
                vec![("cleanup.policy", ConfigOp::Subtract("delete".into()))],
                ResponseError::InvalidConfig,
            ),
        ];
        for (changes, expected) in cases {
            let result = alter_configs(&image, &[topic(&changes)]);
            assert_eq!(code(&result), expected, "{changes:?}");
            assert!(result.records.is_empty(), "{changes:?}");
        }
        let missing = AlterResource {
            resource: ConfigResource::Topic("missing".into()),
            ..topic(&[("retention.ms", set("1"))])
        };
        let result = alter_configs(&image, &[missing, topic(&[("retention.ms", set("1"))])]);
        assert_eq!(code(&result), ResponseError::UnknownTopicOrPartition);
        assert!(result.reply[1].is_ok());
        assert_eq!(result.records.len(), 1);
    }

    #[test]
    fn one_broker_holds_its_own_dynamic_configs_and_snapshots_keep_them() {
        let mut image = cluster(&[1, 2], 1, 1);
        let broker = |id, changes: &[(&str, ConfigOp)]| AlterResource {
            resource: ConfigResource::Broker(id),
            ..topic(changes)
        };
        let (_, reply) = commit(&mut image, |image| {
            alter_configs(
                image,
                &[broker(
                    1,
                    &[
                        ("sasl.kerberos.min.time.before.relogin", set("58000")),
                        ("ssl.keystore.password", set("secret")),
                    ],
                )],
            )
        });
        assert_eq!(
            reply[0].as_ref().unwrap()["sasl.kerberos.min.time.before.relogin"],
            "58000"
        );
        assert_eq!(
            image.broker_configs[&1]["sasl.kerberos.min.time.before.relogin"],
            "58000"
        );
        assert!(!image.broker_configs.contains_key(&2));
        assert!(!image.cluster_configs.contains_key("ssl.keystore.password"));

        // Log defaults are cluster-wide; unknown keys and bad values are refused.
        for (key, value) in [
            ("log.retention.ms", "1"),
            ("no.such.config", "1"),
            ("num.io.threads", "0"),
        ] {
            let refused = alter_configs(&image, &[broker(1, &[(key, set(value))])]);
            assert_eq!(code(&refused), ResponseError::InvalidConfig, "{key}");
        }

        // A snapshot rebuilds them; deleting the last one forgets the broker's entry.
        let mut rebuilt = MetadataImage::default();
        for record in image.to_records() {
            rebuilt.replay(1, &record);
        }
        assert_eq!(rebuilt.broker_configs, image.broker_configs);
        commit(&mut image, |image| {
            alter_configs(
                image,
                &[broker(
                    1,
                    &[
                        ("sasl.kerberos.min.time.before.relogin", ConfigOp::Delete),
                        ("ssl.keystore.password", ConfigOp::Delete),
                    ],
                )],
            )
        });
        assert!(image.broker_configs.is_empty());
    }

    #[test]
    fn cluster_defaults_are_named_as_kafka_brokers_name_them_and_apply_to_topics() {
        let mut image = cluster(&[1], 1, 1);
        let no_overrides = BTreeMap::new();
        let (_, reply) = commit(&mut image, |image| {
            alter_configs(
                image,
                &[cluster_wide(&[
                    ("log.retention.ms", set("60000")),
                    ("num.partitions", set("6")),
                ])],
            )
        });
        let configs = reply[0].as_ref().unwrap();
        assert_eq!(configs["log.retention.ms"], "60000");
        assert_eq!(configs["num.partitions"], "6");
        // The bootstrap default `min.insync.replicas` is listed too.
        assert_eq!(configs["min.insync.replicas"], "1");
        assert_eq!(image.cluster_configs["retention.ms"], "60000");
        assert_eq!(effective(&image, &no_overrides, "retention.ms"), "60000");

        // The topic name of a cluster default is not its broker-level name.
        let refused = alter_configs(&image, &[cluster_wide(&[("retention.ms", set("1"))])]);
        assert_eq!(code(&refused), ResponseError::InvalidConfig);

        let (_, reply) = commit(&mut image, |image| {
            alter_configs(
                image,
                &[cluster_wide(&[("log.retention.ms", ConfigOp::Delete)])],
            )
        });
        assert!(!reply[0].as_ref().unwrap().contains_key("log.retention.ms"));
        assert_eq!(
            effective(&image, &no_overrides, "retention.ms"),
            "604800000"
        );
    }

    #[test]
    fn a_legacy_alter_replaces_the_whole_explicit_config() {
        let mut image = cluster(&[1], 1, 1);
        commit(&mut image, |image| {
            alter_configs(
                image,
                &[topic(&[
                    ("retention.ms", set("10")),
                    ("segment.ms", set("20")),
                ])],
            )
        });
        let replace = AlterResource {
            replace: true,
            ..topic(&[("retention.ms", set("30"))])
        };
        let (_, reply) = commit(&mut image, |image| alter_configs(image, &[replace]));
        let expected = BTreeMap::from([("retention.ms".to_string(), "30".to_string())]);
        assert_eq!(reply[0].as_ref().unwrap(), &expected);
        assert_eq!(image.topic_by_name("orders").unwrap().configs, expected);
    }

    #[test]
    fn setting_a_value_already_set_writes_no_record() {
        let mut image = cluster(&[1], 1, 1);
        commit(&mut image, |image| {
            alter_configs(image, &[topic(&[("retention.ms", set("10"))])])
        });
        let again = alter_configs(&image, &[topic(&[("retention.ms", set("10"))])]);
        assert!(again.records.is_empty());
        assert!(again.reply[0].is_ok());
    }
}
