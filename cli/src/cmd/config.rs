//! `cluster config get|set|delete`: the cluster-wide defaults, by their Kafka broker-level names
//! (`log.retention.ms`), as `kafka-configs --entity-type brokers --entity-default` shows and changes
//! them. The controller holds them in the metadata log; every known default is listed with its value
//! and whether it is set there or built in (`chronik_metadata::configs::cluster_defaults` is the one
//! list, shared with the controller and brokers).

use std::collections::BTreeMap;

use chronik_metadata::configs::{cluster_default, cluster_defaults};
use chronik_proto::v1::{
    AlterConfigsRequest, AlterConfigsResource, AlterConfigsResult, ConfigResource,
};
use serde::Serialize;

use crate::cli::ConfigChanges;
use crate::client::ControllerClient;
use crate::cmd::topic::config_changes;
use crate::error::{codes, CliError};

/// One cluster-wide default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// The Kafka broker-level name.
    pub name: String,
    /// The value in effect.
    pub value: String,
    /// `dynamic_default` when set in the metadata log, `default` when built in.
    pub source: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// Every cluster-wide default (or the asked ones), by name.
pub async fn get(
    client: &ControllerClient,
    keys: &[String],
) -> Result<Vec<ClusterConfig>, CliError> {
    if let Some(unknown) = keys.iter().find(|k| cluster_default(k).is_none()) {
        return Err(CliError::InvalidArgument(format!(
            "'{unknown}' is not a cluster-wide default; `chronikctl cluster config get` lists them"
        )));
    }
    let reply = client.describe_cluster().await?;
    let set: BTreeMap<String, String> = reply.cluster_configs.into_iter().collect();
    Ok(listing(&set, keys))
}

/// Sets and deletes cluster-wide defaults; returns the changed keys as they are afterwards.
pub async fn alter(
    client: &ControllerClient,
    changes: ConfigChanges,
) -> Result<Vec<ClusterConfig>, CliError> {
    let keys: Vec<String> = changes
        .set
        .keys()
        .chain(changes.delete.iter())
        .cloned()
        .collect();
    let resource = AlterConfigsResource {
        resource: ConfigResource::Cluster as i32,
        name: String::new(),
        changes: config_changes(changes),
        replace: false,
    };
    let result = alter_one(client, resource, |name| {
        format!("cannot change the cluster-wide defaults: {name}")
    })
    .await?;
    let set: BTreeMap<String, String> = result.configs.into_iter().collect();
    let mut keys = keys;
    keys.sort();
    Ok(listing(&set, &keys))
}

/// Alters one resource's configs on the active controller; its refusal is an error, worded by
/// `refused` from the Kafka error name when the controller gave no message.
pub(crate) async fn alter_one(
    client: &ControllerClient,
    resource: AlterConfigsResource,
    refused: impl FnOnce(&'static str) -> String,
) -> Result<AlterConfigsResult, CliError> {
    let request = AlterConfigsRequest {
        resources: vec![resource],
        validate_only: false,
    };
    let reply = client.alter_configs(request).await?;
    let result = reply.results.into_iter().next().ok_or_else(|| {
        CliError::UnexpectedReply("AlterConfigs answered without a result".to_owned())
    })?;
    if result.error_code != codes::NONE {
        return Err(CliError::kafka(
            result.error_code,
            &result.error_message,
            refused,
        ));
    }
    Ok(result)
}

/// The listing of `keys` (every default when empty) given the keys set in the metadata log.
fn listing(set: &BTreeMap<String, String>, keys: &[String]) -> Vec<ClusterConfig> {
    let mut configs: Vec<ClusterConfig> = cluster_defaults()
        .filter(|d| keys.is_empty() || keys.iter().any(|k| k == d.broker_name))
        .map(|d| match set.get(d.broker_name) {
            Some(value) => ClusterConfig {
                name: d.broker_name.to_owned(),
                value: value.clone(),
                source: "dynamic_default",
                doc: d.def.doc,
            },
            None => ClusterConfig {
                name: d.broker_name.to_owned(),
                value: d.def.default.to_owned(),
                source: "default",
                doc: d.def.doc,
            },
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    configs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_shows_set_values_and_built_in_defaults() {
        let set = BTreeMap::from([("log.retention.ms".to_owned(), "1000".to_owned())]);
        let all = listing(&set, &[]);
        assert!(all.len() > 20, "{all:?}");
        assert!(all.windows(2).all(|w| w[0].name < w[1].name));
        let retention = all.iter().find(|c| c.name == "log.retention.ms").unwrap();
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("1000", "dynamic_default")
        );
        let asked = listing(&set, &["num.partitions".to_owned()]);
        assert_eq!(asked.len(), 1);
        assert_eq!((asked[0].value.as_str(), asked[0].source), ("1", "default"));
    }
}
