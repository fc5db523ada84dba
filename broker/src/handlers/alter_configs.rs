//! IncrementalAlterConfigs (key 44) and the legacy AlterConfigs (key 33), forwarded to the controller
//! quorum (KIP-590), for TOPIC resources, for the cluster-wide broker defaults (the BROKER resource
//! with an empty name, as `kafka-configs --entity-type brokers --entity-default` addresses it) and
//! for this broker's own dynamic configs (the BROKER resource named by its id). Keys of the cluster
//! defaults are Kafka's broker-level names (`log.retention.ms`), which the controller maps to the
//! topic configs they default; the per-broker keys are Kafka's per-broker dynamic configs
//! (`configs::PER_BROKER_CONFIGS`). The answer is sent once this broker's own image holds
//! the change, so a DescribeConfigs right after it shows the new values.
//!
//! What must stay true: each resource is answered exactly once, in request order; the checks Kafka
//! makes before forwarding (`ConfigAdminManager.preprocess`: duplicate resources, unknown operation,
//! null value, a resource type or broker this broker cannot alter, a `cordoned.log.dirs` naming a
//! directory this broker does not have) refuse only that resource.

use chronik_metadata::acl::AclOperation;
use chronik_metadata::configs::CORDONED_LOG_DIRS;
use std::collections::HashMap;
use std::path::Path;

use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::admin::{await_local_image, controller_failure, error_message, kafka_code};
use super::{BrokerContext, RequestContext};

/// `ConfigResource.Type` codes.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// How long a forwarded change may wait for the local image: these requests carry no timeout.
const ALTER_CONFIGS_WAIT_MS: i32 = 5_000;

/// One resource of either request, in Chronik's terms.
struct Asked {
    resource_type: i8,
    name: String,
    /// `(key, operation code, value)`; the legacy request's entries are all SET (0).
    changes: Vec<(String, i8, Option<String>)>,
}

/// One resource's answer.
struct Answer {
    resource_type: i8,
    name: String,
    code: i16,
    message: String,
}

pub async fn handle_incremental(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let asked = request
        .resources
        .into_iter()
        .map(|r| Asked {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
            changes: r
                .configs
                .into_iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.map(|v| v.to_string()),
                    )
                })
                .collect(),
        })
        .collect();
    let answers = alter(ctx, rc, asked, false, request.validate_only).await;
    IncrementalAlterConfigsResponse::default().with_responses(
        answers
            .into_iter()
            .map(|a| {
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(a.code)
                    .with_error_message(error_message(a.code, a.message))
                    .with_resource_type(a.resource_type)
                    .with_resource_name(StrBytes::from_string(a.name))
            })
            .collect(),
    )
}

pub async fn handle_legacy(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let asked = request
        .resources
        .into_iter()
        .map(|r| Asked {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
            changes: r
                .configs
                .into_iter()
                .map(|c| (c.name.to_string(), 0, c.value.map(|v| v.to_string())))
                .collect(),
        })
        .collect();
    let answers = alter(ctx, rc, asked, true, request.validate_only).await;
    AlterConfigsResponse::default().with_responses(
        answers
            .into_iter()
            .map(|a| {
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(a.code)
                    .with_error_message(error_message(a.code, a.message))
                    .with_resource_type(a.resource_type)
                    .with_resource_name(StrBytes::from_string(a.name))
            })
            .collect(),
    )
}

async fn alter(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    asked: Vec<Asked>,
    replace: bool,
    validate_only: bool,
) -> Vec<Answer> {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for a in &asked {
        *counts.entry((a.resource_type, &a.name)).or_default() += 1;
    }
    // `Err` for a resource refused here; `Ok(i)` for the i-th forwarded one.
    let mut slots: Vec<Result<usize, (ResponseError, String)>> = Vec::new();
    let mut forward = Vec::new();
    for a in &asked {
        let checked = if counts[&(a.resource_type, a.name.as_str())] > 1 {
            Err((
                ResponseError::InvalidRequest,
                "Error due to duplicate resource in the request".to_owned(),
            ))
        } else if !may_alter(ctx, rc, a) {
            Err(match a.resource_type {
                RESOURCE_TOPIC => (ResponseError::TopicAuthorizationFailed, String::new()),
                _ => (ResponseError::ClusterAuthorizationFailed, String::new()),
            })
        } else {
            to_proto(ctx, a, replace)
        };
        slots.push(checked.map(|resource| {
            forward.push(resource);
            forward.len() - 1
        }));
    }

    let mut results: Vec<Option<(i16, String)>> = vec![None; forward.len()];
    if !forward.is_empty() {
        let call = pb::AlterConfigsRequest {
            resources: forward,
            validate_only,
        };
        match ctx.controller.alter_configs(call).await {
            Ok(reply) => {
                for (slot, result) in results.iter_mut().zip(reply.results) {
                    *slot = Some((kafka_code(result.error_code), result.error_message));
                }
                await_local_image(
                    ctx,
                    reply.metadata_offset,
                    ALTER_CONFIGS_WAIT_MS,
                    "altered configs",
                )
                .await;
            }
            Err(e) => {
                debug!(error = %e, version = rc.version, "AlterConfigs not forwarded");
                let (code, message) = controller_failure(&e);
                results.fill(Some((code, message)));
            }
        }
    }

    asked
        .into_iter()
        .zip(slots)
        .map(|(a, slot)| {
            let (code, message) = match slot {
                Err((error, message)) => (error.code(), message),
                Ok(i) => results[i].clone().unwrap_or_else(|| {
                    (
                        ResponseError::UnknownServerError.code(),
                        "the controller did not answer for this resource".to_owned(),
                    )
                }),
            };
            Answer {
                resource_type: a.resource_type,
                name: a.name,
                code,
                message,
            }
        })
        .collect()
}

/// ALTER_CONFIGS on the topic, or on the cluster for a broker resource (Kafka's
/// `ConfigAdminManager` authorization).
fn may_alter(ctx: &BrokerContext, rc: &RequestContext<'_>, asked: &Asked) -> bool {
    match asked.resource_type {
        RESOURCE_TOPIC => ctx.authorize_topic(rc, AclOperation::AlterConfigs, &asked.name),
        _ => ctx.authorize_cluster(rc, AclOperation::AlterConfigs),
    }
}

/// Kafka's checks before forwarding, and the resource as the controller takes it.
fn to_proto(
    ctx: &BrokerContext,
    asked: &Asked,
    replace: bool,
) -> Result<pb::AlterConfigsResource, (ResponseError, String)> {
    let resource = match asked.resource_type {
        RESOURCE_TOPIC => pb::ConfigResource::Topic,
        RESOURCE_BROKER if asked.name.is_empty() => pb::ConfigResource::Cluster,
        RESOURCE_BROKER => {
            check_broker_resource(ctx, &asked.name)?;
            check_cordoned_log_dirs(ctx, asked)?;
            pb::ConfigResource::Broker
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("Chronik cannot alter configs of resource type {other}"),
            ))
        }
    };
    let mut changes = Vec::with_capacity(asked.changes.len());
    for (key, op, value) in &asked.changes {
        let operation = match op {
            0 => pb::ConfigOperation::Set,
            1 => pb::ConfigOperation::Delete,
            2 => pb::ConfigOperation::Append,
            3 => pb::ConfigOperation::Subtract,
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("Unknown alter configs operation type {other}"),
                ))
            }
        };
        let value = match (operation, value) {
            (pb::ConfigOperation::Delete, _) => String::new(),
            (_, Some(value)) => value.clone(),
            (_, None) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("Null value not supported for : {key}"),
                ))
            }
        };
        changes.push(pb::ConfigChange {
            key: key.clone(),
            operation: operation as i32,
            value,
        });
    }
    Ok(pb::AlterConfigsResource {
        resource: resource as i32,
        name: if resource == pb::ConfigResource::Cluster {
            String::new()
        } else {
            asked.name.clone()
        },
        changes,
        replace,
    })
}

/// `cordoned.log.dirs` may name only this broker's log directory, or `*` (Kafka checks the named
/// directories against `log.dirs` the same way). The controller, which places replicas, does not know
/// the directory: the check is here, where a named BROKER resource always arrives.
fn check_cordoned_log_dirs(
    ctx: &BrokerContext,
    asked: &Asked,
) -> Result<(), (ResponseError, String)> {
    let data_dir = std::path::absolute(ctx.replicas.logs().data_dir())
        .unwrap_or_else(|_| ctx.replicas.logs().data_dir().to_path_buf());
    let named = asked
        .changes
        .iter()
        .filter(|(key, op, _)| key == CORDONED_LOG_DIRS && matches!(op, 0 | 2))
        .filter_map(|(_, _, value)| value.as_deref())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|dir| !dir.is_empty() && *dir != "*");
    for dir in named {
        if Path::new(dir).components().ne(data_dir.components()) {
            return Err((
                ResponseError::InvalidConfig,
                format!(
                    "{CORDONED_LOG_DIRS} names {dir}, which is not a log directory of broker {}; \
                     its log directory is {} (or use *)",
                    ctx.broker_id,
                    data_dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A named BROKER resource is altered through that broker only (Kafka's
/// `ConfigAdminManager.preprocess`; clients send it there).
fn check_broker_resource(ctx: &BrokerContext, name: &str) -> Result<(), (ResponseError, String)> {
    match name.parse::<i32>() {
        Err(_) => Err((
            ResponseError::InvalidRequest,
            format!("Broker id must be an integer, but it is: {name}"),
        )),
        Ok(id) if id != ctx.broker_id => Err((
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                ctx.broker_id
            ),
        )),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster, TestBroker};

    fn asked(resource_type: i8, name: &str, changes: &[(&str, i8, Option<&str>)]) -> Asked {
        Asked {
            resource_type,
            name: name.to_owned(),
            changes: changes
                .iter()
                .map(|(k, op, v)| (k.to_string(), *op, v.map(str::to_owned)))
                .collect(),
        }
    }

    #[tokio::test]
    async fn kafka_refusals_before_forwarding() {
        let broker = TestBroker::new(1, &cluster().records);
        let refused = |a: Asked| to_proto(&broker.ctx, &a, false).unwrap_err().0;
        assert_eq!(
            refused(asked(
                RESOURCE_TOPIC,
                "orders",
                &[("retention.ms", 4, Some("1"))]
            )),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            refused(asked(
                RESOURCE_TOPIC,
                "orders",
                &[("retention.ms", 0, None)]
            )),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            refused(asked(8, "1", &[("kafka.server", 0, Some("DEBUG"))])),
            ResponseError::InvalidRequest
        );
        for name in ["2", "x"] {
            assert_eq!(
                refused(asked(
                    RESOURCE_BROKER,
                    name,
                    &[("log.retention.ms", 0, Some("1"))]
                )),
                ResponseError::InvalidRequest,
                "broker {name}"
            );
        }
    }

    #[tokio::test]
    async fn the_cluster_default_and_topics_are_forwarded_as_the_controller_takes_them() {
        let broker = TestBroker::new(1, &cluster().records);
        let ctx = &broker.ctx;
        let cluster = to_proto(
            ctx,
            &asked(
                RESOURCE_BROKER,
                "",
                &[
                    ("log.retention.ms", 0, Some("5")),
                    ("num.partitions", 1, None),
                ],
            ),
            false,
        )
        .unwrap();
        assert_eq!(cluster.resource(), pb::ConfigResource::Cluster);
        assert!(cluster.name.is_empty());
        assert_eq!(cluster.changes[1].operation(), pb::ConfigOperation::Delete);
        let topic = to_proto(
            ctx,
            &asked(
                RESOURCE_TOPIC,
                "orders",
                &[("cleanup.policy", 2, Some("compact"))],
            ),
            true,
        )
        .unwrap();
        assert_eq!(topic.resource(), pb::ConfigResource::Topic);
        assert_eq!(topic.name, "orders");
        assert!(topic.replace);
        assert_eq!(topic.changes[0].operation(), pb::ConfigOperation::Append);
        let own = to_proto(
            ctx,
            &asked(RESOURCE_BROKER, "1", &[("num.io.threads", 0, Some("4"))]),
            false,
        )
        .unwrap();
        assert_eq!(own.resource(), pb::ConfigResource::Broker);
        assert_eq!(own.name, "1");
    }

    /// KIP-1066: `cordoned.log.dirs` names this broker's log directory or `*`; anything else is
    /// refused here, since the controller cannot tell.
    #[tokio::test]
    async fn cordoned_log_dirs_name_this_brokers_directory() {
        let broker = TestBroker::new(1, &cluster().records);
        let ctx = &broker.ctx;
        let dir = std::path::absolute(ctx.replicas.logs().data_dir()).unwrap();
        let own = format!("{}/", dir.display());
        for (op, value) in [
            (0, "*"),
            (0, own.as_str()),
            (2, own.as_str()),
            (3, "/elsewhere"),
        ] {
            let cordon = asked(
                RESOURCE_BROKER,
                "1",
                &[(CORDONED_LOG_DIRS, op, Some(value))],
            );
            assert!(to_proto(ctx, &cordon, false).is_ok(), "{op} {value}");
        }
        let delete = asked(RESOURCE_BROKER, "1", &[(CORDONED_LOG_DIRS, 1, None)]);
        assert!(to_proto(ctx, &delete, false).is_ok());
        let elsewhere = format!("*,{}/../other", dir.display());
        for (op, value) in [(0, elsewhere.as_str()), (2, "/data")] {
            let cordon = asked(
                RESOURCE_BROKER,
                "1",
                &[(CORDONED_LOG_DIRS, op, Some(value))],
            );
            let (error, message) = to_proto(ctx, &cordon, false).unwrap_err();
            assert_eq!(error, ResponseError::InvalidConfig, "{op} {value}");
            assert!(
                message.contains("not a log directory of broker 1"),
                "{message}"
            );
        }
    }
}
