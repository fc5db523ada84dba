//! Cluster-wide feature flags (KIP-584): what this release supports of each versioned feature, and
//! the level a new cluster is finalized at. The finalized level is metadata, as in KRaft (KIP-778,
//! `FeatureLevelRecord`): written once at bootstrap, replayed by every broker, so all brokers report
//! the same level in ApiVersions and act on it alike. An absent feature is at level 0.
//!
//! `transaction.version` (KIP-890):
//! - 0: transactions as in KIP-98, with the KIP-890 part 1 verification; `__transaction_state`
//!   values in schema v0;
//! - 1: the same, with `__transaction_state` values in the flexible schema v1 (tagged fields);
//! - 2: transaction version 2: the coordinator bumps the producer epoch at every transaction end
//!   (EndTxn v5), partition leaders add partitions to the transaction themselves (Produce v12,
//!   TxnOffsetCommit v5). The Java client (4.x) uses it once it is finalized; librdkafka does not.
//!
//! `group.version` (KIP-848):
//! - 0: classic consumer groups only;
//! - 1: the consumer group protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe) is served too.
//!
//! `metadata.version` is not among them: it is a constant of this release, [`METADATA_VERSION_LEVEL`]
//! (the broker's `handlers::api_versions` says why that level).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::Record;

pub const TRANSACTION_VERSION: &str = "transaction.version";

pub const GROUP_VERSION: &str = "group.version";

pub const METADATA_VERSION: &str = "metadata.version";

/// Kafka's `MetadataVersion.IBP_3_3_IV3`, the lowest metadata version Kafka 4.x supports, and the one
/// this release reports, finalized, whatever the metadata holds.
pub const METADATA_VERSION_LEVEL: i16 = 7;

/// The levels of one feature a node supports (Kafka's `SupportedVersionRange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureRange {
    pub min_level: i16,
    pub max_level: i16,
}

impl FeatureRange {
    pub fn contains(&self, level: i16) -> bool {
        (self.min_level..=self.max_level).contains(&level)
    }
}

/// What this release's brokers register as supported: every feature of [`FEATURES`].
pub fn supported_features() -> BTreeMap<String, FeatureRange> {
    FEATURES
        .iter()
        .map(|f| {
            (
                f.name.to_string(),
                FeatureRange {
                    min_level: f.min_level,
                    max_level: f.max_level,
                },
            )
        })
        .collect()
}

/// Level 0 only: what a node supports of a feature it does not list (Kafka's
/// `QuorumFeatures.DISABLED`).
pub const DISABLED: FeatureRange = FeatureRange {
    min_level: 0,
    max_level: 0,
};

/// The levels a registered broker supports of `name`, or `None` for a broker that registered none:
/// one of a release before brokers reported them, whose support is unknown (some of those releases
/// could not even read a `FeatureLevel` record). A feature a broker does not list is [`DISABLED`].
pub fn broker_supports(
    registered: &BTreeMap<String, FeatureRange>,
    name: &str,
) -> Option<FeatureRange> {
    if registered.is_empty() {
        return None;
    }
    Some(registered.get(name).copied().unwrap_or(DISABLED))
}

/// A feature this release knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSpec {
    pub name: &'static str,
    pub min_level: i16,
    pub max_level: i16,
    /// The level a new cluster is finalized at, unless the operator chooses another.
    pub bootstrap_level: i16,
}

/// Every feature this release supports.
pub const FEATURES: [FeatureSpec; 2] = [
    FeatureSpec {
        name: TRANSACTION_VERSION,
        min_level: 0,
        max_level: 2,
        bootstrap_level: 2,
    },
    FeatureSpec {
        name: GROUP_VERSION,
        min_level: 0,
        max_level: 1,
        bootstrap_level: 1,
    },
];

pub fn spec(name: &str) -> Option<&'static FeatureSpec> {
    FEATURES.iter().find(|f| f.name == name)
}

/// Parses one `NAME=LEVEL` choice for a new cluster (the controller's `--feature`), checked against
/// what this release supports.
pub fn parse_level(choice: &str) -> Result<(String, i16), String> {
    let (name, level) = choice
        .split_once('=')
        .ok_or_else(|| format!("'{choice}': expected NAME=LEVEL"))?;
    let spec = spec(name.trim()).ok_or_else(|| {
        let known: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        format!(
            "unknown feature '{}' (known: {})",
            name.trim(),
            known.join(", ")
        )
    })?;
    let level: i16 = level
        .trim()
        .parse()
        .map_err(|_| format!("'{choice}': the level must be a number"))?;
    if level < spec.min_level || level > spec.max_level {
        return Err(format!(
            "{} supports levels {} to {}, not {level}",
            spec.name, spec.min_level, spec.max_level
        ));
    }
    Ok((spec.name.to_string(), level))
}

/// The records that finalize a new cluster's features: each at its bootstrap level unless `chosen`
/// names another; level 0 is left out (absent means 0).
pub fn bootstrap_records(chosen: &BTreeMap<String, i16>) -> Vec<Record> {
    FEATURES
        .iter()
        .map(|f| {
            (
                f.name,
                chosen.get(f.name).copied().unwrap_or(f.bootstrap_level),
            )
        })
        .filter(|(_, level)| *level > 0)
        .map(|(name, level)| Record::FeatureLevel {
            name: name.to_string(),
            level,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(name: &str, level: i16) -> Record {
        Record::FeatureLevel {
            name: name.to_string(),
            level,
        }
    }

    #[test]
    fn choices_are_checked_against_the_supported_levels() {
        assert_eq!(
            parse_level("transaction.version=1"),
            Ok(("transaction.version".to_string(), 1))
        );
        assert!(parse_level("transaction.version=3").is_err());
        assert!(parse_level("transaction.version=-1").is_err());
        assert!(parse_level("transaction.version").is_err());
        assert_eq!(
            parse_level("group.version=0"),
            Ok(("group.version".to_string(), 0))
        );
        assert!(parse_level("group.version=2").is_err());
        assert!(parse_level("share.version=1").is_err());
        assert!(parse_level("transaction.version=two").is_err());
    }

    #[test]
    fn a_new_cluster_finalizes_transaction_version_2_and_group_version_1_unless_told_otherwise() {
        assert_eq!(
            bootstrap_records(&BTreeMap::new()),
            vec![level(TRANSACTION_VERSION, 2), level(GROUP_VERSION, 1)]
        );
        let chosen = BTreeMap::from([(TRANSACTION_VERSION.to_string(), 1)]);
        assert_eq!(
            bootstrap_records(&chosen),
            vec![level(TRANSACTION_VERSION, 1), level(GROUP_VERSION, 1)]
        );
        let off = BTreeMap::from([
            (TRANSACTION_VERSION.to_string(), 0),
            (GROUP_VERSION.to_string(), 0),
        ]);
        assert!(bootstrap_records(&off).is_empty());
    }
}
