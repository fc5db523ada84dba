//! DescribeConfigs (key 32), answered from the local image. A topic's configs are every key Chronik
//! knows (`TOPIC_CONFIGS`) with its effective value and where it comes from: the topic's own setting
//! (TOPIC_CONFIG), the cluster-wide default in the metadata log, written at bootstrap or by
//! IncrementalAlterConfigs (DYNAMIC_DEFAULT_BROKER_CONFIG, named by its broker-level synonym such as
//! `log.retention.ms`), or the built-in default (DEFAULT_CONFIG). The BROKER resource with an empty
//! name lists the cluster-wide defaults that are set, as Kafka lists its dynamic defaults; this
//! broker's own resource lists its id and auto-creation (read-only: command-line settings) and every
//! cluster-wide default with its value.
//!
//! What must stay true: the value reported for a topic is the one the controller and the partition logs
//! use (`configs::effective`), and one bad resource never fails the others.

use chronik_metadata::acl::AclOperation;
use chronik_metadata::configs::{
    broker_name_of, cluster_defaults, effective_min_insync_replicas, ClusterDefault, ConfigDef,
    ConfigKind, DEFAULT_REPLICATION_FACTOR, MIN_INSYNC_REPLICAS, NUM_PARTITIONS,
    PER_BROKER_CONFIGS, TOPIC_CONFIGS,
};
use chronik_metadata::topic_name::validate_topic_name;
use chronik_metadata::{MetadataImage, TopicImage};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::admin::{
    SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_STATIC_BROKER,
    SOURCE_TOPIC,
};
use super::{BrokerContext, RequestContext};

/// `ResourceType` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// `ConfigType` codes (Kafka's `ConfigDef.Type` as DescribeConfigs v3+ reports it).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;
const TYPE_PASSWORD: i8 = 9;

/// Integer configs Kafka declares as INT rather than LONG (topic names and their broker synonyms).
const INT_CONFIGS: &[&str] = &[
    "segment.bytes",
    "segment.index.bytes",
    "index.interval.bytes",
    "max.message.bytes",
    "log.segment.bytes",
    "log.index.size.max.bytes",
    "log.index.interval.bytes",
    "message.max.bytes",
    MIN_INSYNC_REPLICAS,
    NUM_PARTITIONS,
    DEFAULT_REPLICATION_FACTOR,
    "broker.id",
];

fn config_type(name: &str, def: &ConfigDef) -> i8 {
    match def.kind {
        ConfigKind::Long { .. } if INT_CONFIGS.contains(&name) => TYPE_INT,
        ConfigKind::Long { .. } => TYPE_LONG,
        ConfigKind::Bool => TYPE_BOOLEAN,
        ConfigKind::Choice(_) | ConfigKind::Text => TYPE_STRING,
        ConfigKind::Password => TYPE_PASSWORD,
        ConfigKind::List(_) | ConfigKind::ThrottledReplicas | ConfigKind::LogDirs => TYPE_LIST,
        ConfigKind::IntRange { .. } => TYPE_INT,
        ConfigKind::Ratio => TYPE_DOUBLE,
    }
}

/// What a response entry says about one config.
struct Entry {
    /// The name on this resource (a broker-level name on BROKER resources).
    name: &'static str,
    def: &'static ConfigDef,
    value: String,
    source: i8,
    read_only: bool,
    /// Every level that sets the value, highest precedence first (the first one is `source`): the
    /// name at that level, its value and source.
    synonyms: Vec<Synonym>,
}

struct Synonym {
    name: &'static str,
    value: String,
    source: i8,
}

struct Options {
    synonyms: bool,
    documentation: bool,
}

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = ctx.metadata.current();
    let options = Options {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let results = request
        .resources
        .iter()
        .map(|resource| {
            // Kafka's handleDescribeConfigsRequest: DESCRIBE_CONFIGS on the topic or the cluster.
            let answer = match resource.resource_type {
                RESOURCE_TOPIC
                    if !ctx.authorize_topic(
                        rc,
                        AclOperation::DescribeConfigs,
                        &resource.resource_name,
                    ) =>
                {
                    Err((ResponseError::TopicAuthorizationFailed, String::new()))
                }
                RESOURCE_BROKER if !ctx.authorize_cluster(rc, AclOperation::DescribeConfigs) => {
                    Err((ResponseError::ClusterAuthorizationFailed, String::new()))
                }
                RESOURCE_TOPIC => describe_topic(&image, resource),
                RESOURCE_BROKER => describe_broker(ctx, &image, resource),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type: {other}"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match answer {
                Ok(entries) => result.with_error_message(None).with_configs(
                    entries
                        .into_iter()
                        .filter(|e| is_asked(resource, e.name))
                        .map(|e| to_result(e, &options))
                        .collect(),
                ),
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Null or empty keys ask for every config; unknown keys are left out, as Kafka does.
fn is_asked(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|k| &**k == name),
        _ => true,
    }
}

type Described = Result<Vec<Entry>, (ResponseError, String)>;

fn describe_topic(image: &MetadataImage, resource: &DescribeConfigsResource) -> Described {
    let name = &*resource.resource_name;
    if let Err(e) = validate_topic_name(name) {
        return Err((ResponseError::InvalidTopicException, e.message));
    }
    let topic = image.topic_by_name(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    let mut entries: Vec<Entry> = TOPIC_CONFIGS
        .iter()
        .map(|def| topic_entry(image, topic, def))
        .collect();
    entries.sort_by_key(|e| e.name);
    Ok(entries)
}

fn topic_entry(image: &MetadataImage, topic: &TopicImage, def: &'static ConfigDef) -> Entry {
    let broker_name = broker_name_of(def.name);
    let mut synonyms = Vec::new();
    if let Some(value) = topic.configs.get(def.name) {
        synonyms.push(Synonym {
            name: def.name,
            value: value.clone(),
            source: SOURCE_TOPIC,
        });
    }
    if let (Some(name), Some(value)) = (broker_name, image.cluster_configs.get(def.name)) {
        synonyms.push(Synonym {
            name,
            value: value.clone(),
            source: SOURCE_DYNAMIC_DEFAULT_BROKER,
        });
    }
    synonyms.push(Synonym {
        name: broker_name.unwrap_or(def.name),
        value: def.default.to_owned(),
        source: SOURCE_DEFAULT,
    });
    let (mut value, mut source) = (synonyms[0].value.clone(), synonyms[0].source);
    if def.name == MIN_INSYNC_REPLICAS && source != SOURCE_TOPIC {
        // A topic that does not set it gets the default capped at its replication factor.
        let capped =
            effective_min_insync_replicas(image, &topic.configs, topic.replication_factor());
        if capped.to_string() != value {
            (value, source) = (capped.to_string(), SOURCE_DEFAULT);
        }
    }
    Entry {
        name: def.name,
        def,
        value,
        source,
        read_only: false,
        synonyms,
    }
}

/// Settings this broker runs with that are not per-topic, described as broker configs.
static BROKER_ID: ConfigDef = ConfigDef {
    name: "broker.id",
    kind: ConfigKind::Long { min: 0 },
    default: "-1",
    doc: "This broker's id",
};
static AUTO_CREATE_TOPICS: ConfigDef = ConfigDef {
    name: "auto.create.topics.enable",
    kind: ConfigKind::Bool,
    default: "true",
    doc: "Create unknown topics named in Metadata requests, with the cluster defaults",
};

/// This broker (by its id) lists its id and auto-creation, then every cluster-wide default with its
/// value; the cluster-wide resource (an empty name) lists the defaults set in the metadata log.
fn describe_broker(
    ctx: &BrokerContext,
    image: &MetadataImage,
    resource: &DescribeConfigsResource,
) -> Described {
    let name = &*resource.resource_name;
    let cluster_default = |d: ClusterDefault| {
        let mut synonyms = Vec::new();
        if let Some(value) = image.cluster_configs.get(d.stored_key) {
            synonyms.push(Synonym {
                name: d.broker_name,
                value: value.clone(),
                source: SOURCE_DYNAMIC_DEFAULT_BROKER,
            });
        }
        synonyms.push(Synonym {
            name: d.broker_name,
            value: d.def.default.to_owned(),
            source: SOURCE_DEFAULT,
        });
        Entry {
            name: d.broker_name,
            def: d.def,
            value: synonyms[0].value.clone(),
            source: synonyms[0].source,
            read_only: false,
            synonyms,
        }
    };
    if name.is_empty() {
        let mut entries: Vec<Entry> = cluster_defaults()
            .filter(|d| image.cluster_configs.contains_key(d.stored_key))
            .map(cluster_default)
            .collect();
        entries.sort_by_key(|e| e.name);
        return Ok(entries);
    }
    let Ok(broker_id) = name.parse::<i32>() else {
        return Err((
            ResponseError::InvalidRequest,
            format!("Broker id must be an integer, but it is: {name}"),
        ));
    };
    if broker_id != ctx.broker_id {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                ctx.broker_id
            ),
        ));
    }
    let fixed = |def: &'static ConfigDef, value: String| Entry {
        name: def.name,
        def,
        synonyms: vec![Synonym {
            name: def.name,
            value: value.clone(),
            source: SOURCE_STATIC_BROKER,
        }],
        value,
        source: SOURCE_STATIC_BROKER,
        read_only: true,
    };
    let mut entries = vec![
        fixed(&BROKER_ID, ctx.broker_id.to_string()),
        fixed(&AUTO_CREATE_TOPICS, ctx.auto_create_topics.to_string()),
    ];
    entries.extend(cluster_defaults().map(cluster_default));
    let own = image.broker_configs.get(&broker_id);
    entries.extend(PER_BROKER_CONFIGS.iter().map(|def| {
        let mut synonyms = Vec::new();
        if let Some(value) = own.and_then(|c| c.get(def.name)) {
            synonyms.push(Synonym {
                name: def.name,
                value: value.clone(),
                source: SOURCE_DYNAMIC_BROKER,
            });
        }
        synonyms.push(Synonym {
            name: def.name,
            value: def.default.to_owned(),
            source: SOURCE_DEFAULT,
        });
        Entry {
            name: def.name,
            def,
            value: synonyms[0].value.clone(),
            source: synonyms[0].source,
            read_only: false,
            synonyms,
        }
    }));
    entries.sort_by_key(|e| e.name);
    Ok(entries)
}

fn to_result(entry: Entry, options: &Options) -> DescribeConfigsResourceResult {
    // Kafka never shows a password's value, only that it is set.
    let sensitive = matches!(entry.def.kind, ConfigKind::Password);
    let synonyms = if options.synonyms {
        entry
            .synonyms
            .into_iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(s.name))
                    .with_value((!sensitive).then(|| StrBytes::from_string(s.value)))
                    .with_source(s.source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(entry.name))
        .with_value((!sensitive).then(|| StrBytes::from_string(entry.value)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source)
        .with_is_sensitive(sensitive)
        .with_synonyms(synonyms)
        .with_config_type(config_type(entry.name, entry.def))
        .with_documentation(
            options
                .documentation
                .then(|| StrBytes::from_static_str(entry.def.doc)),
        )
}

#[cfg(test)]
mod tests {
    use chronik_metadata::configs::effective;
    use chronik_metadata::records::ConfigResource;
    use chronik_metadata::Record;

    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster, TestBroker};

    fn resource(kind: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(keys.map(|k| {
                k.iter()
                    .map(|k| StrBytes::from_string((*k).to_owned()))
                    .collect()
            }))
    }

    async fn describe(
        broker: &TestBroker,
        version: i16,
        request: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let response = handle(&broker.ctx, &broker.rc(version, "PLAINTEXT"), request).await;
        assert_encodes(&response, version);
        response
    }

    fn config<'a>(
        result: &'a DescribeConfigsResult,
        key: &str,
    ) -> &'a DescribeConfigsResourceResult {
        result
            .configs
            .iter()
            .find(|c| &*c.name == key)
            .unwrap_or_else(|| panic!("{key} is listed"))
    }

    #[tokio::test]
    async fn a_topic_lists_every_config_with_its_effective_value_and_source() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource(
            RESOURCE_TOPIC,
            "audit",
            None,
        )]);
        let response = describe(&broker, 1, request).await;
        let audit = &response.results[0];
        assert_eq!((audit.error_code, audit.error_message.as_ref()), (0, None));
        assert_eq!(audit.configs.len(), TOPIC_CONFIGS.len());
        let image = broker.ctx.metadata.current();
        let topic = image.topic_by_name("audit").expect("audit exists");
        for entry in &audit.configs {
            assert_eq!(
                entry.value.as_deref(),
                Some(effective(&image, &topic.configs, &entry.name).as_str()),
                "{}",
                &*entry.name
            );
            assert!(!entry.read_only && !entry.is_sensitive);
            assert!(entry.synonyms.is_empty(), "not asked for");
        }
        let source = |key| config(audit, key).config_source;
        assert_eq!(source("retention.ms"), SOURCE_TOPIC);
        assert_eq!(source("min.insync.replicas"), SOURCE_DYNAMIC_DEFAULT_BROKER);
        assert_eq!(source("cleanup.policy"), SOURCE_DEFAULT);
    }

    #[tokio::test]
    async fn asked_keys_synonyms_types_and_documentation() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        let keys: &[&str] = &[
            "retention.ms",
            "min.insync.replicas",
            "no.such.key",
            "cleanup.policy",
        ];
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_include_documentation(true)
            .with_resources(vec![resource(RESOURCE_TOPIC, "audit", Some(keys))]);
        let response = describe(&broker, 4, request).await;
        let audit = &response.results[0];
        let listed: Vec<&str> = audit.configs.iter().map(|c| &*c.name).collect();
        assert_eq!(
            listed,
            vec!["cleanup.policy", "min.insync.replicas", "retention.ms"]
        );

        let retention = config(audit, "retention.ms");
        let synonyms: Vec<(&str, Option<&str>, i8)> = retention
            .synonyms
            .iter()
            .map(|s| (&*s.name, s.value.as_deref(), s.source))
            .collect();
        assert_eq!(
            synonyms,
            vec![
                ("retention.ms", Some("1000"), SOURCE_TOPIC),
                ("log.retention.ms", Some("604800000"), SOURCE_DEFAULT)
            ]
        );
        assert_eq!(retention.config_type, TYPE_LONG);
        assert!(retention
            .documentation
            .as_deref()
            .is_some_and(|d| !d.is_empty()));
        let min_isr = config(audit, "min.insync.replicas");
        assert_eq!(min_isr.config_type, TYPE_INT);
        assert_eq!(min_isr.synonyms[0].source, SOURCE_DYNAMIC_DEFAULT_BROKER);
        assert_eq!(config(audit, "cleanup.policy").config_type, TYPE_LIST);

        let empty_keys = DescribeConfigsRequest::default().with_resources(vec![resource(
            RESOURCE_TOPIC,
            "orders",
            Some(&[]),
        )]);
        let response = describe(&broker, 3, empty_keys).await;
        assert_eq!(response.results[0].configs.len(), TOPIC_CONFIGS.len());
        assert!(response.results[0]
            .configs
            .iter()
            .all(|c| c.documentation.is_none()));
    }

    #[tokio::test]
    async fn bad_resources_fail_alone() {
        let c = cluster();
        let broker = TestBroker::new(2, &c.records);
        let request = DescribeConfigsRequest::default().with_resources(vec![
            resource(RESOURCE_TOPIC, "ghost", None),
            resource(RESOURCE_TOPIC, "bad name", None),
            resource(RESOURCE_BROKER, "1", None),
            resource(RESOURCE_BROKER, "two", None),
            resource(8, "2", None),
            resource(RESOURCE_TOPIC, "orders", Some(&["retention.ms"])),
        ]);
        let response = describe(&broker, 2, request).await;
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::InvalidTopicException.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code(),
                0
            ]
        );
        assert!(response.results[..5]
            .iter()
            .all(|r| r.error_message.is_some() && r.configs.is_empty()));
        assert_eq!(&*response.results[0].resource_name, "ghost");
        assert_eq!(response.results[4].resource_type, 8);
    }

    /// Issue #13: the cluster-wide defaults appear under their Kafka broker-level names, as dynamic
    /// defaults when set in the metadata log; the empty-named BROKER resource lists only those.
    #[tokio::test]
    async fn this_broker_lists_its_settings_and_the_cluster_wide_defaults() {
        let mut c = cluster();
        c.records.push(Record::Config {
            resource: ConfigResource::Cluster,
            key: "retention.ms".into(),
            value: Some("60000".into()),
        });
        let mut broker = TestBroker::new(2, &c.records);
        broker.ctx.auto_create_topics = true;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            resource(RESOURCE_BROKER, "2", None),
            resource(RESOURCE_BROKER, "", None),
        ]);
        let response = describe(&broker, 4, request).await;
        let own = &response.results[0];
        assert_eq!(own.error_code, 0);
        let value = |result, key| {
            let c = config(result, key);
            (
                c.value.as_deref().map(str::to_owned),
                c.config_source,
                c.read_only,
            )
        };
        assert_eq!(
            value(own, "broker.id"),
            (Some("2".into()), SOURCE_STATIC_BROKER, true)
        );
        assert_eq!(
            value(own, "auto.create.topics.enable"),
            (Some("true".into()), SOURCE_STATIC_BROKER, true)
        );
        assert_eq!(
            value(own, "min.insync.replicas"),
            (Some("1".into()), SOURCE_DYNAMIC_DEFAULT_BROKER, false)
        );
        assert_eq!(
            value(own, "log.retention.ms"),
            (Some("60000".into()), SOURCE_DYNAMIC_DEFAULT_BROKER, false)
        );
        assert_eq!(
            value(own, "default.replication.factor"),
            (Some("3".into()), SOURCE_DEFAULT, false)
        );
        assert_eq!(
            value(own, "log.cleanup.policy"),
            (Some("delete".into()), SOURCE_DEFAULT, false)
        );
        assert!(own.configs.iter().all(|c| &*c.name != "retention.ms"));
        assert_eq!(config(own, "broker.id").config_type, TYPE_INT);
        assert_eq!(config(own, "message.max.bytes").config_type, TYPE_INT);

        let defaults = &response.results[1];
        assert_eq!(defaults.error_code, 0);
        let listed: Vec<&str> = defaults.configs.iter().map(|c| &*c.name).collect();
        assert_eq!(listed, vec!["log.retention.ms", "min.insync.replicas"]);
        assert!(defaults
            .configs
            .iter()
            .all(|c| c.config_source == SOURCE_DYNAMIC_DEFAULT_BROKER));

        // A topic that does not set it reports the cluster-wide default under its broker name.
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![resource(
                RESOURCE_TOPIC,
                "orders",
                Some(&["retention.ms"]),
            )]);
        let response = describe(&broker, 4, request).await;
        let retention = config(&response.results[0], "retention.ms");
        assert_eq!(retention.value.as_deref(), Some("60000"));
        assert_eq!(retention.config_source, SOURCE_DYNAMIC_DEFAULT_BROKER);
        assert_eq!(&*retention.synonyms[0].name, "log.retention.ms");
    }
}
