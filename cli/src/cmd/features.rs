//! `cluster features`: the cluster's feature flags (KIP-584) as the active controller holds them:
//! each feature's finalized level, what the controller supports and what every broker registered as
//! supported. `cluster features upgrade|downgrade NAME=LEVEL` changes a finalized level through the
//! controller's UpdateFeatures, as `kafka-features.sh upgrade|downgrade --feature NAME=LEVEL` does
//! through a broker; `--dry-run` validates only (`--validate-only`), `--unsafe` is Kafka's unsafe
//! downgrade. A refusal (a level a broker does not support, a downgrade asked as an upgrade) is the
//! controller's INVALID_UPDATE_VERSION with its explanation.

use std::collections::BTreeMap;

use chronik_metadata::convert::feature_ranges_from_proto;
use chronik_metadata::features;
use chronik_proto::v1::{DescribeClusterResponse, FeatureUpdate, UpdateFeaturesRequest};
use serde::Serialize;

use crate::client::ControllerClient;
use crate::error::CliError;

/// Kafka's `FeatureUpdate.UpgradeType` codes.
const UPGRADE: i32 = 1;
const SAFE_DOWNGRADE: i32 = 2;
const UNSAFE_DOWNGRADE: i32 = 3;

/// The cluster's features, and the change just made (if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeaturesReport {
    pub features: Vec<FeatureStatus>,
    /// The change asked for by `upgrade` or `downgrade`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<FeatureChange>,
}

/// One feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureStatus {
    pub name: String,
    /// The finalized level (0: not finalized).
    pub finalized_level: i32,
    /// What the active controller supports (`None` for a feature it does not know).
    pub controller_supported: Option<LevelRange>,
    /// What each registered broker supports, by broker id (`None`: it registered no levels, a
    /// release before brokers reported them).
    pub brokers: BTreeMap<i32, Option<LevelRange>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LevelRange {
    pub min: i32,
    pub max: i32,
}

/// A change made (or, with `dry_run`, validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureChange {
    pub name: String,
    pub level: i32,
    pub dry_run: bool,
}

/// The features as the active controller holds them.
pub async fn describe(client: &ControllerClient) -> Result<FeaturesReport, CliError> {
    let cluster = client.describe_cluster().await?;
    Ok(FeaturesReport {
        features: statuses(&cluster),
        change: None,
    })
}

/// Finalizes `name` at `level`: an upgrade, or a (safe, or with `unsafe_downgrade` unsafe)
/// downgrade; validated only with `dry_run`.
pub async fn update(
    client: &ControllerClient,
    (name, level): (String, i32),
    downgrade: bool,
    unsafe_downgrade: bool,
    dry_run: bool,
) -> Result<FeaturesReport, CliError> {
    let upgrade_type = match (downgrade, unsafe_downgrade) {
        (false, _) => UPGRADE,
        (true, false) => SAFE_DOWNGRADE,
        (true, true) => UNSAFE_DOWNGRADE,
    };
    client
        .update_features(UpdateFeaturesRequest {
            updates: vec![FeatureUpdate {
                name: name.clone(),
                level,
                upgrade_type,
            }],
            validate_only: dry_run,
        })
        .await?;
    let mut report = describe(client).await?;
    report.change = Some(FeatureChange {
        name,
        level,
        dry_run,
    });
    Ok(report)
}

/// Every feature the controller supports or the cluster finalized, with each broker's support.
fn statuses(cluster: &DescribeClusterResponse) -> Vec<FeatureStatus> {
    let range = |min: i32, max: i32| LevelRange { min, max };
    let mut names: Vec<String> = cluster
        .controller_supported_features
        .iter()
        .map(|f| f.name.clone())
        .chain(cluster.finalized_features.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| FeatureStatus {
            finalized_level: cluster.finalized_features.get(&name).copied().unwrap_or(0),
            controller_supported: cluster
                .controller_supported_features
                .iter()
                .find(|f| f.name == name)
                .map(|f| range(f.min_level, f.max_level)),
            brokers: cluster
                .brokers
                .iter()
                .map(|b| {
                    // As the controller reads a registration (a range the controller sent that
                    // does not decode counts as none).
                    let registered =
                        feature_ranges_from_proto(&b.supported_features).unwrap_or_default();
                    let supported = features::broker_supports(&registered, &name)
                        .map(|r| range(i32::from(r.min_level), i32::from(r.max_level)));
                    (b.broker_id, supported)
                })
                .collect(),
            name,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chronik_proto::v1::{BrokerInfo, FeatureRange};

    use super::*;

    #[test]
    fn each_feature_shows_its_level_and_who_supports_what() {
        let tv = |min, max| FeatureRange {
            name: "transaction.version".into(),
            min_level: min,
            max_level: max,
        };
        let cluster = DescribeClusterResponse {
            finalized_features: [("transaction.version".to_string(), 2)].into(),
            controller_supported_features: vec![tv(0, 2)],
            brokers: vec![
                BrokerInfo {
                    broker_id: 1,
                    supported_features: vec![tv(0, 2)],
                    ..Default::default()
                },
                BrokerInfo {
                    broker_id: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            statuses(&cluster),
            vec![FeatureStatus {
                name: "transaction.version".into(),
                finalized_level: 2,
                controller_supported: Some(LevelRange { min: 0, max: 2 }),
                brokers: BTreeMap::from([(1, Some(LevelRange { min: 0, max: 2 })), (2, None)]),
            }]
        );
    }
}
