//! The topic and cluster config keys Chronik knows, their types, defaults and validation. A topic's
//! effective value is its own setting, else the cluster-level default set at bootstrap, else the static
//! default here. Unknown keys are refused: a typo must not be silently accepted. Every topic config
//! Kafka 4.x defines is known and validated as Kafka validates it; those Chronik does not act on are
//! stored and reported, and their documentation says so.

use std::collections::BTreeMap;

use crate::error::{ApiError, ResponseError};

use crate::image::MetadataImage;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    /// A signed integer of at least `min`.
    Long {
        min: i64,
    },
    Bool,
    /// One of a fixed set of values.
    Choice(&'static [&'static str]),
    /// A comma-separated list, each element from a fixed set.
    List(&'static [&'static str]),
    /// An integer within `min..=max`, or exactly `or` (a "use the codec's default" value).
    IntRange {
        min: i64,
        max: i64,
        or: Option<i64>,
    },
    /// A fraction within 0..=1.
    Ratio,
    /// Kafka's throttled-replica list: empty, `*`, or `partition:broker` pairs separated by commas.
    ThrottledReplicas,
    /// A list of log directories: empty, `*` (all of them), or absolute paths separated by commas.
    LogDirs,
    /// Free text (a path, a class name, a host list).
    Text,
    /// A secret: stored, never shown (DescribeConfigs reports it as sensitive with no value).
    Password,
}

#[derive(Clone, Copy, Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigKind,
    pub default: &'static str,
    pub doc: &'static str,
}

pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";
/// Cluster-only keys: the defaults for CreateTopics calls that leave them unset.
pub const NUM_PARTITIONS: &str = "num.partitions";
/// A broker's log directories that get no new replicas (KIP-1066).
pub const CORDONED_LOG_DIRS: &str = "cordoned.log.dirs";
pub const DEFAULT_REPLICATION_FACTOR: &str = "default.replication.factor";

/// Per-topic configs (Kafka's names and meanings).
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigKind::List(&["delete", "compact"]),
        default: "delete",
        doc: "What happens to old segments: delete them, or compact by key",
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigKind::Choice(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        default: "producer",
        doc: "Final compression of stored batches; `producer` keeps what the producer sent",
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigKind::Long { min: -1 },
        default: "604800000",
        doc: "How long a segment is kept after its newest record (-1: forever)",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigKind::Long { min: -1 },
        default: "-1",
        doc: "Largest size a partition may grow to before old segments are deleted (-1: no limit)",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: ConfigKind::Long { min: 14 },
        default: "1073741824",
        doc: "Size at which a segment is rolled",
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigKind::Long { min: 1 },
        default: "604800000",
        doc: "Age at which a segment is rolled",
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: ConfigKind::Long { min: 4 },
        default: "10485760",
        doc: "Largest size of a segment's offset index",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: ConfigKind::Long { min: 0 },
        default: "4096",
        doc: "Bytes of log between two offset index entries",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigKind::Long { min: 0 },
        default: "1048588",
        doc: "Largest record batch the partition accepts",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigKind::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "Whether record timestamps are the producer's or the broker's append time",
    },
    ConfigDef {
        name: MIN_INSYNC_REPLICAS,
        kind: ConfigKind::Long { min: 1 },
        default: "2",
        doc: "Fewest in-sync replicas for an acks=all write to be accepted",
    },
    ConfigDef {
        name: UNCLEAN_LEADER_ELECTION,
        kind: ConfigKind::Bool,
        default: "false",
        doc:
            "Elect an out-of-sync replica when no in-sync one is left (can lose acknowledged data)",
    },
    ConfigDef {
        name: "flush.messages",
        kind: ConfigKind::Long { min: 1 },
        default: "1",
        doc: "Batches between fsyncs of the log (1: every batch, group-committed)",
    },
    ConfigDef {
        name: "flush.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "9223372036854775807",
        doc: "Longest time written data may wait for an fsync",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "86400000",
        doc: "How long tombstones are kept in compacted topics",
    },

    ConfigDef {
        name: "compression.gzip.level",
        kind: ConfigKind::IntRange { min: 1, max: 9, or: Some(-1) },
        default: "-1",
        doc: "Stored and reported; Chronik does not act on it. The gzip level when compression.type is gzip (-1: the codec's default)",
    },
    ConfigDef {
        name: "compression.lz4.level",
        kind: ConfigKind::IntRange { min: 1, max: 17, or: None },
        default: "9",
        doc: "Stored and reported; Chronik does not act on it. The lz4 level when compression.type is lz4",
    },
    ConfigDef {
        name: "compression.zstd.level",
        kind: ConfigKind::IntRange { min: -131072, max: 22, or: None },
        default: "3",
        doc: "Stored and reported; Chronik does not act on it. The zstd level when compression.type is zstd",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "60000",
        doc: "Stored and reported; Chronik does not act on it. How long a deleted segment's files stay before removal",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        kind: ConfigKind::ThrottledReplicas,
        default: "",
        doc: "Stored and reported; Chronik does not act on it. Replicas whose follower-side replication is throttled",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        kind: ConfigKind::ThrottledReplicas,
        default: "",
        doc: "Stored and reported; Chronik does not act on it. Replicas whose leader-side replication is throttled",
    },
    ConfigDef {
        name: "local.retention.bytes",
        kind: ConfigKind::Long { min: -2 },
        default: "-2",
        doc: "Stored and reported; Chronik does not act on it. Local retention with tiered storage (-2: retention.bytes)",
    },
    ConfigDef {
        name: "local.retention.ms",
        kind: ConfigKind::Long { min: -2 },
        default: "-2",
        doc: "Stored and reported; Chronik does not act on it. Local retention with tiered storage (-2: retention.ms)",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigKind::Long { min: 1 },
        default: "9223372036854775807",
        doc: "Stored and reported; Chronik does not act on it. Longest time a record stays ineligible for compaction",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "3600000",
        doc: "How far past the leader's clock a CreateTime record timestamp may be (KIP-937): later ones are refused with INVALID_TIMESTAMP",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "9223372036854775807",
        doc: "How far before the leader's clock a CreateTime record timestamp may be (KIP-937): older ones are refused with INVALID_TIMESTAMP",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigKind::Ratio,
        default: "0.5",
        doc: "Stored and reported; Chronik does not act on it. Dirty share of a log that makes it eligible for cleaning",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "0",
        doc: "Stored and reported; Chronik does not act on it. Shortest time a record stays uncompacted",
    },
    ConfigDef {
        name: "preallocate",
        kind: ConfigKind::Bool,
        default: "false",
        doc: "Stored and reported; Chronik does not act on it. Preallocate a new segment's file",
    },
    ConfigDef {
        name: "remote.storage.enable",
        kind: ConfigKind::Bool,
        default: "false",
        doc: "Stored and reported; Chronik does not act on it. Tiered storage for the topic",
    },
    ConfigDef {
        name: "remote.log.copy.disable",
        kind: ConfigKind::Bool,
        default: "false",
        doc: "Stored and reported; Chronik does not act on it. Stop copying segments to tiered storage",
    },
    ConfigDef {
        name: "remote.log.delete.on.disable",
        kind: ConfigKind::Bool,
        default: "false",
        doc: "Stored and reported; Chronik does not act on it. Delete tiered data when tiered storage is turned off",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "0",
        doc: "Stored and reported; Chronik does not act on it. Random jitter subtracted from segment.ms",
    },
];

/// Cluster-only keys.
pub const CLUSTER_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: NUM_PARTITIONS,
        kind: ConfigKind::Long { min: 1 },
        default: "1",
        doc: "Partitions of a topic created without a count",
    },
    ConfigDef {
        name: DEFAULT_REPLICATION_FACTOR,
        kind: ConfigKind::Long { min: 1 },
        default: "3",
        doc: "Replication factor of a topic created without one",
    },
];

/// Kafka's broker-level name of each topic config that has one (Kafka's
/// `ServerTopicConfigSynonyms.TOPIC_CONFIG_SYNONYMS`, the highest-priority synonym): the name its
/// cluster-wide default carries on BROKER resources in DescribeConfigs, IncrementalAlterConfigs and
/// AlterConfigs, and in `chronikctl cluster config`. The image keeps cluster defaults under the topic
/// name (`MetadataImage::cluster_configs`), so these names exist only at those edges. The topic
/// configs missing here have no broker-level default in Kafka either (throttled replicas,
/// `remote.*`).
const BROKER_SYNONYMS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("compression.type", "compression.type"),
    ("compression.gzip.level", "compression.gzip.level"),
    ("compression.lz4.level", "compression.lz4.level"),
    ("compression.zstd.level", "compression.zstd.level"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("file.delete.delay.ms", "log.segment.delete.delay.ms"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("local.retention.bytes", "log.local.retention.bytes"),
    ("local.retention.ms", "log.local.retention.ms"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    ("max.message.bytes", "message.max.bytes"),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
    ),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
    ),
    ("message.timestamp.type", "log.message.timestamp.type"),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
    ),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    (MIN_INSYNC_REPLICAS, MIN_INSYNC_REPLICAS),
    ("preallocate", "log.preallocate"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.index.bytes", "log.index.size.max.bytes"),
    ("segment.jitter.ms", "log.roll.jitter.ms"),
    ("segment.ms", "log.roll.ms"),
    (UNCLEAN_LEADER_ELECTION, UNCLEAN_LEADER_ELECTION),
];

/// One cluster-wide default: its Kafka broker-level name, the key the image stores it under, and
/// its definition (type, static default, documentation).
#[derive(Clone, Copy, Debug)]
pub struct ClusterDefault {
    pub broker_name: &'static str,
    pub stored_key: &'static str,
    pub def: &'static ConfigDef,
}

/// Every cluster-wide default an operator can set: the cluster-only keys, then each topic config's
/// broker-level synonym.
pub fn cluster_defaults() -> impl Iterator<Item = ClusterDefault> {
    let cluster_only = CLUSTER_CONFIGS.iter().map(|def| ClusterDefault {
        broker_name: def.name,
        stored_key: def.name,
        def,
    });
    let synonyms = BROKER_SYNONYMS.iter().filter_map(|(topic, broker)| {
        topic_config_def(topic).map(|def| ClusterDefault {
            broker_name: broker,
            stored_key: def.name,
            def,
        })
    });
    cluster_only.chain(synonyms)
}

/// The cluster-wide default with this broker-level name.
pub fn cluster_default(broker_name: &str) -> Option<ClusterDefault> {
    cluster_defaults().find(|d| d.broker_name == broker_name)
}

/// The broker-level name of a stored cluster default key (itself for cluster-only keys).
pub fn broker_name_of(stored_key: &str) -> Option<&'static str> {
    cluster_defaults()
        .find(|d| d.stored_key == stored_key)
        .map(|d| d.broker_name)
}

/// A cluster-wide default's value by broker-level name: set in the image, or the static default.
pub fn cluster_default_value(image: &MetadataImage, default: &ClusterDefault) -> (String, bool) {
    match image.cluster_configs.get(default.stored_key) {
        Some(value) => (value.clone(), true),
        None => (default.def.default.to_string(), false),
    }
}

/// The per-broker dynamic configs Kafka lets an operator set on one broker (a BROKER resource named
/// by its id; Kafka's `DynamicBrokerConfig.AllDynamicConfigs` for TLS, SASL, threads, connection
/// limits and replication throttles). Chronik acts on `cordoned.log.dirs` (replica placement skips
/// a cordoned broker, `is_cordoned`) and stores and reports the others without acting on them: its
/// listeners, threads and limits come from the command line. Log defaults (`log.retention.ms` and
/// the other topic synonyms) are cluster-wide here, set on the BROKER resource with an empty name.
const NOT_ACTED_ON: &str = "Stored and reported; Chronik does not act on it";
pub const PER_BROKER_CONFIGS: &[ConfigDef] = &[
    per_broker("advertised.listeners", ConfigKind::Text, ""),
    ConfigDef {
        name: CORDONED_LOG_DIRS,
        kind: ConfigKind::LogDirs,
        default: "",
        doc: "Log directories that get no new replicas (KIP-1066): `*` or the broker's data \
              directory cordons the broker, which keeps the replicas it has",
    },
    per_broker("background.threads", ConfigKind::Long { min: 1 }, "10"),
    per_broker(
        "follower.replication.throttled.rate",
        ConfigKind::Long { min: 0 },
        "9223372036854775807",
    ),
    per_broker(
        "leader.replication.throttled.rate",
        ConfigKind::Long { min: 0 },
        "9223372036854775807",
    ),
    per_broker("listener.security.protocol.map", ConfigKind::Text, ""),
    per_broker(
        "log.cleaner.backoff.ms",
        ConfigKind::Long { min: 0 },
        "15000",
    ),
    per_broker(
        "log.cleaner.dedupe.buffer.size",
        ConfigKind::Long { min: 0 },
        "134217728",
    ),
    per_broker(
        "log.cleaner.io.buffer.size",
        ConfigKind::Long { min: 0 },
        "524288",
    ),
    per_broker(
        "log.cleaner.io.max.bytes.per.second",
        ConfigKind::Text,
        "1.7976931348623157E308",
    ),
    per_broker("log.cleaner.threads", ConfigKind::Long { min: 0 }, "1"),
    per_broker(
        "max.connection.creation.rate",
        ConfigKind::Long { min: 0 },
        "2147483647",
    ),
    per_broker("max.connections", ConfigKind::Long { min: 0 }, "2147483647"),
    per_broker(
        "max.connections.per.ip",
        ConfigKind::Long { min: 0 },
        "2147483647",
    ),
    per_broker("max.connections.per.ip.overrides", ConfigKind::Text, ""),
    per_broker("metric.reporters", ConfigKind::Text, ""),
    per_broker("num.io.threads", ConfigKind::Long { min: 1 }, "8"),
    per_broker("num.network.threads", ConfigKind::Long { min: 1 }, "3"),
    per_broker(
        "num.recovery.threads.per.data.dir",
        ConfigKind::Long { min: 1 },
        "2",
    ),
    per_broker("num.replica.fetchers", ConfigKind::Long { min: 1 }, "1"),
    per_broker(
        "replica.alter.log.dirs.io.max.bytes.per.second",
        ConfigKind::Long { min: 0 },
        "9223372036854775807",
    ),
    per_broker("sasl.enabled.mechanisms", ConfigKind::Text, "GSSAPI"),
    per_broker("sasl.jaas.config", ConfigKind::Password, ""),
    per_broker(
        "sasl.kerberos.kinit.cmd",
        ConfigKind::Text,
        "/usr/bin/kinit",
    ),
    per_broker(
        "sasl.kerberos.min.time.before.relogin",
        ConfigKind::Long { min: 0 },
        "60000",
    ),
    per_broker(
        "sasl.kerberos.principal.to.local.rules",
        ConfigKind::Text,
        "DEFAULT",
    ),
    per_broker("sasl.kerberos.service.name", ConfigKind::Text, ""),
    per_broker(
        "sasl.kerberos.ticket.renew.jitter",
        ConfigKind::Ratio,
        "0.05",
    ),
    per_broker(
        "sasl.kerberos.ticket.renew.window.factor",
        ConfigKind::Ratio,
        "0.8",
    ),
    per_broker(
        "sasl.login.refresh.buffer.seconds",
        ConfigKind::Long { min: 0 },
        "300",
    ),
    per_broker(
        "sasl.login.refresh.min.period.seconds",
        ConfigKind::Long { min: 0 },
        "60",
    ),
    per_broker("sasl.login.refresh.window.factor", ConfigKind::Ratio, "0.8"),
    per_broker(
        "sasl.login.refresh.window.jitter",
        ConfigKind::Ratio,
        "0.05",
    ),
    per_broker("ssl.key.password", ConfigKind::Password, ""),
    per_broker("ssl.keystore.certificate.chain", ConfigKind::Password, ""),
    per_broker("ssl.keystore.key", ConfigKind::Password, ""),
    per_broker("ssl.keystore.location", ConfigKind::Text, ""),
    per_broker("ssl.keystore.password", ConfigKind::Password, ""),
    per_broker("ssl.keystore.type", ConfigKind::Text, "JKS"),
    per_broker("ssl.truststore.certificates", ConfigKind::Password, ""),
    per_broker("ssl.truststore.location", ConfigKind::Text, ""),
    per_broker("ssl.truststore.password", ConfigKind::Password, ""),
    per_broker("ssl.truststore.type", ConfigKind::Text, "JKS"),
];

const fn per_broker(name: &'static str, kind: ConfigKind, default: &'static str) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        doc: NOT_ACTED_ON,
    }
}

/// Whether new replicas skip this broker: its `cordoned.log.dirs` names a directory (KIP-1066). A
/// broker has one data directory, so any entry cordons the broker. Through the Kafka API the broker
/// named by the resource checks that the entries are `*` or that directory (`alter_configs` on the
/// broker); the controller's own API (chronikctl) takes `*` or any absolute path, since it does not
/// know the brokers' directories.
pub fn is_cordoned(image: &MetadataImage, broker_id: crate::records::BrokerId) -> bool {
    image
        .broker_configs
        .get(&broker_id)
        .and_then(|configs| configs.get(CORDONED_LOG_DIRS))
        .is_some_and(|dirs| dirs.split(',').any(|d| !d.trim().is_empty()))
}

/// A per-broker dynamic config by its Kafka name.
pub fn per_broker_config_def(name: &str) -> Option<&'static ConfigDef> {
    PER_BROKER_CONFIGS.iter().find(|d| d.name == name)
}

pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

fn any_config_def(name: &str) -> Option<&'static ConfigDef> {
    topic_config_def(name).or_else(|| CLUSTER_CONFIGS.iter().find(|d| d.name == name))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ResponseError::InvalidConfig, message)
}

/// Checks one value against its definition.
pub fn validate_value(def: &ConfigDef, value: &str) -> Result<(), ApiError> {
    match def.kind {
        ConfigKind::Long { min } => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => Err(invalid(format!(
                "invalid value '{value}' for {}: must be at least {min}",
                def.name
            ))),
            Err(_) => Err(invalid(format!(
                "invalid value '{value}' for {}: not an integer",
                def.name
            ))),
        },
        ConfigKind::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err(invalid(format!(
                "invalid value '{value}' for {}: must be true or false",
                def.name
            ))),
        },
        ConfigKind::Choice(choices) => {
            if choices.contains(&value) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "invalid value '{value}' for {}: must be one of {}",
                    def.name,
                    choices.join(", ")
                )))
            }
        }
        ConfigKind::IntRange { min, max, or } => match value.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) || Some(v) == or => Ok(()),
            _ => Err(invalid(format!(
                "invalid value '{value}' for {}: must be an integer from {min} to {max}{}",
                def.name,
                or.map(|o| format!(" or {o}")).unwrap_or_default()
            ))),
        },
        ConfigKind::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(invalid(format!(
                "invalid value '{value}' for {}: must be a number from 0 to 1",
                def.name
            ))),
        },
        ConfigKind::Text | ConfigKind::Password => Ok(()),
        ConfigKind::ThrottledReplicas => {
            let pair = |p: &str| {
                p.split_once(':').is_some_and(|(partition, broker)| {
                    partition.trim().parse::<u32>().is_ok() && broker.trim().parse::<u32>().is_ok()
                })
            };
            let value_trimmed = value.trim();
            if value_trimmed.is_empty()
                || value_trimmed == "*"
                || value_trimmed.split(',').all(pair)
            {
                Ok(())
            } else {
                Err(invalid(format!(
                    "invalid value '{value}' for {}: must be empty, * or partition:broker pairs separated by commas",
                    def.name
                )))
            }
        }
        ConfigKind::LogDirs => {
            let dir = |d: &str| d == "*" || d.starts_with('/');
            if value
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .all(dir)
            {
                Ok(())
            } else {
                Err(invalid(format!(
                    "invalid value '{value}' for {}: must be empty, * or absolute paths separated \
                     by commas",
                    def.name
                )))
            }
        }
        ConfigKind::List(choices) => {
            let ok = !value.is_empty() && value.split(',').all(|v| choices.contains(&v.trim()));
            if ok {
                Ok(())
            } else {
                Err(invalid(format!(
                    "invalid value '{value}' for {}: must be a list of {}",
                    def.name,
                    choices.join(", ")
                )))
            }
        }
    }
}

/// Validates a set of topic configs: every key known, every value well-formed.
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), ApiError> {
    for (key, value) in configs {
        let def = topic_config_def(key)
            .ok_or_else(|| invalid(format!("unknown topic config '{key}'")))?;
        validate_value(def, value)?;
    }
    Ok(())
}

/// Validates cluster-level defaults (topic keys and cluster-only keys).
pub fn validate_cluster_configs<'a>(
    configs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), ApiError> {
    for (key, value) in configs {
        let def = any_config_def(key).ok_or_else(|| invalid(format!("unknown config '{key}'")))?;
        validate_value(def, value)?;
    }
    Ok(())
}

/// The effective value of a key for a topic: the topic's own, the cluster default, the static default.
pub fn effective(
    image: &MetadataImage,
    topic_configs: &BTreeMap<String, String>,
    key: &str,
) -> String {
    topic_configs
        .get(key)
        .or_else(|| image.cluster_configs.get(key))
        .cloned()
        .or_else(|| any_config_def(key).map(|d| d.default.to_string()))
        .unwrap_or_default()
}

/// Every topic config key with its effective value.
pub fn effective_topic_configs(
    image: &MetadataImage,
    topic_configs: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| (d.name.to_string(), effective(image, topic_configs, d.name)))
        .collect()
}

/// An integer config's effective value (defaults are valid by construction).
pub fn effective_i64(
    image: &MetadataImage,
    topic_configs: &BTreeMap<String, String>,
    key: &str,
) -> i64 {
    effective(image, topic_configs, key)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A topic's effective `min.insync.replicas` (issue #13): its own setting if it has one, else the
/// cluster default capped at the topic's replication factor, so a topic created with fewer replicas
/// than the default asks for (replication factor 1 on a cluster whose default is 2) still takes
/// acks=all writes. An explicit setting above the replication factor is refused when it is set
/// (`validate_min_insync_replicas`).
pub fn effective_min_insync_replicas(
    image: &MetadataImage,
    topic_configs: &BTreeMap<String, String>,
    replication_factor: usize,
) -> i64 {
    let value = effective_i64(image, topic_configs, MIN_INSYNC_REPLICAS).max(1);
    if topic_configs.contains_key(MIN_INSYNC_REPLICAS) {
        value
    } else {
        value.min(replication_factor.max(1) as i64)
    }
}

/// Refuses an explicit `min.insync.replicas` above the replication factor: no acks=all write to such
/// a topic could ever be acknowledged.
pub fn validate_min_insync_replicas(
    topic_configs: &BTreeMap<String, String>,
    replication_factor: usize,
) -> Result<(), ApiError> {
    let Some(value) = topic_configs.get(MIN_INSYNC_REPLICAS) else {
        return Ok(());
    };
    match value.trim().parse::<i64>() {
        Ok(v) if v > replication_factor as i64 => Err(invalid(format!(
            "min.insync.replicas {v} is above the replication factor {replication_factor}: no \
             acks=all write could ever be acknowledged"
        ))),
        _ => Ok(()),
    }
}

pub fn effective_bool(
    image: &MetadataImage,
    topic_configs: &BTreeMap<String, String>,
    key: &str,
) -> bool {
    effective(image, topic_configs, key) == "true"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn min_insync_replicas_defaults_to_at_most_the_replication_factor() {
        let image = MetadataImage::default();
        let unset = BTreeMap::new();
        assert_eq!(effective_min_insync_replicas(&image, &unset, 1), 1);
        assert_eq!(effective_min_insync_replicas(&image, &unset, 3), 2);
        let explicit = map(&[(MIN_INSYNC_REPLICAS, "3")]);
        assert_eq!(effective_min_insync_replicas(&image, &explicit, 3), 3);
        assert!(validate_min_insync_replicas(&explicit, 3).is_ok());
        let err = validate_min_insync_replicas(&explicit, 2).unwrap_err();
        assert_eq!(err.code, ResponseError::InvalidConfig);
        assert!(
            err.message.contains("above the replication factor 2"),
            "{}",
            err.message
        );
        assert!(validate_min_insync_replicas(&unset, 1).is_ok());
    }

    /// Issue #13: every topic config Kafka 4.x knows is accepted when valid (Kafka Streams sets some
    /// of these on its internal topics) and refused when not, as Kafka validates it.
    #[test]
    fn kafka_topic_configs_are_known_and_validated() {
        for good in [
            ("min.compaction.lag.ms", "100"),
            ("max.compaction.lag.ms", "86400000"),
            ("message.timestamp.before.max.ms", "0"),
            ("message.timestamp.after.max.ms", "3600000"),
            ("segment.jitter.ms", "10"),
            ("preallocate", "true"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("compression.gzip.level", "-1"),
            ("compression.gzip.level", "9"),
            ("compression.zstd.level", "-5"),
            ("local.retention.ms", "-2"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("follower.replication.throttled.replicas", "*"),
            ("remote.storage.enable", "false"),
        ] {
            assert!(validate_topic_configs(&map(&[good])).is_ok(), "{good:?}");
        }
        for bad in [
            ("min.compaction.lag.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("compression.gzip.level", "0"),
            ("compression.lz4.level", "18"),
            ("local.retention.ms", "-3"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("preallocate", "yes"),
        ] {
            let err = validate_topic_configs(&map(&[bad])).unwrap_err();
            assert_eq!(err.code, ResponseError::InvalidConfig, "{bad:?}");
        }
        for def in TOPIC_CONFIGS {
            assert!(
                validate_value(def, def.default).is_ok(),
                "{} default",
                def.name
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(validate_topic_configs(&map(&[("retention.ms", "1000")])).is_ok());
        assert!(validate_topic_configs(&map(&[("cleanup.policy", "compact,delete")])).is_ok());
        for bad in [
            ("retenton.ms", "1"),
            ("retention.ms", "soon"),
            ("retention.ms", "-2"),
            ("min.insync.replicas", "0"),
            ("unclean.leader.election.enable", "yes"),
            ("cleanup.policy", "shred"),
            ("num.partitions", "3"),
        ] {
            let err = validate_topic_configs(&map(&[bad])).unwrap_err();
            assert_eq!(err.code, ResponseError::InvalidConfig, "{bad:?}");
        }
        assert!(validate_cluster_configs(&map(&[("num.partitions", "3")])).is_ok());
    }

    #[test]
    fn effective_value_falls_back_from_topic_to_cluster_to_static() {
        let mut image = MetadataImage::default();
        let topic = map(&[("retention.ms", "5")]);
        assert_eq!(effective_i64(&image, &topic, "retention.ms"), 5);
        assert_eq!(effective_i64(&image, &topic, MIN_INSYNC_REPLICAS), 2);
        image
            .cluster_configs
            .insert(MIN_INSYNC_REPLICAS.into(), "1".into());
        assert_eq!(effective_i64(&image, &topic, MIN_INSYNC_REPLICAS), 1);
        assert!(!effective_bool(&image, &topic, UNCLEAN_LEADER_ELECTION));
    }
}
