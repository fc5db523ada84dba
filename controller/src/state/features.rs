//! UpdateFeatures (KIP-584) as Kafka's `FeatureControlManager.updateFeatures` runs it: each update
//! names a feature, the level to finalize (0 removes it) and whether it may go down (Kafka's
//! `FeatureUpdate.UpgradeType`). The new levels are `FeatureLevel` records, replayed by every broker,
//! which then report them in ApiVersions (KIP-778).
//!
//! What must stay true: every update of a request applies, or none does (Kafka 4.x answers one error
//! for the whole request); a level outside what this release supports is never finalized; a level
//! goes down only when the update says it may, and up only when it says it is an upgrade;
//! `metadata.version` stays at the release's constant level.
//!
//! A level must be supported by this controller (`chronik_metadata::features::FEATURES`) and by every
//! registered broker, fenced or not, as it registered its levels (`features::broker_supports`), as
//! Kafka's `reasonNotSupported` checks its `QuorumFeatures` and then each broker registration. A
//! broker that registered no levels (a release before brokers reported them) supports level 0 only,
//! as far as the controller knows. Other controllers do not register theirs: in a quorum being
//! upgraded, finalize a new level only once every controller runs the release that supports it.

use std::collections::BTreeSet;

use chronik_metadata::features::{self, METADATA_VERSION, METADATA_VERSION_LEVEL};

use crate::error::{ApiError, ResponseError};

use super::image::MetadataImage;
use super::records::Record;
use super::ControllerResult;

/// Kafka's `FeatureUpdate.UpgradeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
}

impl UpgradeType {
    /// From the code UpdateFeatures v1+ carries (v0's `allow_downgrade` maps to 1 or 2).
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(UpgradeType::Upgrade),
            2 => Some(UpgradeType::SafeDowngrade),
            3 => Some(UpgradeType::UnsafeDowngrade),
            _ => None,
        }
    }
}

/// One requested change. `upgrade_type` is `None` for a code Kafka does not define.
#[derive(Clone, Debug)]
pub struct FeatureChange {
    pub name: String,
    pub level: i32,
    pub upgrade_type: Option<UpgradeType>,
}

/// The records finalizing `changes` (none for `validate_only`, or when every level is already
/// finalized), or the first refusal.
pub fn update_features(
    image: &MetadataImage,
    changes: &[FeatureChange],
    validate_only: bool,
) -> Result<ControllerResult<()>, ApiError> {
    let mut seen = BTreeSet::new();
    let mut records = Vec::new();
    for change in changes {
        if !seen.insert(change.name.as_str()) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("The request names feature {} more than once.", change.name),
            ));
        }
        // Kafka's `QuorumController.updateFeatures` words the one refusal for the whole request.
        let outcome = update_feature(image, change).map_err(|e| {
            ApiError::new(
                e.code,
                format!(
                    "The update failed for all features since the following feature had an \
                     error: {}",
                    e.message
                ),
            )
        })?;
        records.extend(outcome);
    }
    if validate_only {
        records.clear();
    }
    Ok(ControllerResult::new(records, ()))
}

/// The record one change needs (`None` when its level is finalized already), or why it is refused,
/// in Kafka's order of checks and with its wording.
fn update_feature(
    image: &MetadataImage,
    change: &FeatureChange,
) -> Result<Option<Record>, ApiError> {
    let refuse = |reason: &str| {
        Err(ApiError::new(
            ResponseError::InvalidUpdateVersion,
            format!(
                "Invalid update version {} for feature {}. {reason}",
                change.level, change.name
            ),
        ))
    };
    let Some(upgrade_type) = change.upgrade_type else {
        return refuse("The controller does not support the given upgrade type.");
    };
    if change.level < 0 {
        return refuse("A feature version cannot be less than 0.");
    }
    let level = i16::try_from(change.level).unwrap_or(i16::MAX);
    if change.name == METADATA_VERSION {
        if level != METADATA_VERSION_LEVEL {
            return refuse(&format!(
                "This release of Chronik supports only metadata.version {METADATA_VERSION_LEVEL} \
                 (3.3-IV3)."
            ));
        }
        return Ok(None);
    }
    match features::spec(&change.name) {
        None => return refuse("The controller does not support this feature."),
        Some(spec) if level < spec.min_level || level > spec.max_level => {
            return refuse(&format!(
                "The controller only supports versions {}-{}.",
                spec.min_level, spec.max_level
            ));
        }
        Some(_) => {}
    }
    for (id, broker) in &image.brokers {
        match features::broker_supports(&broker.supported_features, &change.name) {
            None if level != 0 => {
                return refuse(&format!(
                    "Broker {id} registered without the levels it supports (a release before \
                     brokers reported them): restart it on this release first."
                ));
            }
            Some(supported) if !supported.contains(level) => {
                return refuse(&format!(
                    "Broker {id} only supports versions {}-{}.",
                    supported.min_level, supported.max_level
                ));
            }
            _ => {}
        }
    }
    let current = image.feature_level(&change.name);
    if level < current && upgrade_type == UpgradeType::Upgrade {
        return refuse(
            "Can't downgrade the version of this feature without setting the upgrade type to \
             either safe or unsafe downgrade.",
        );
    }
    if level > current && upgrade_type != UpgradeType::Upgrade {
        return refuse("Can't downgrade to a newer version.");
    }
    if level == current {
        return Ok(None);
    }
    Ok(Some(Record::FeatureLevel {
        name: change.name.clone(),
        level,
    }))
}

#[cfg(test)]
mod tests {
    use chronik_metadata::features::TRANSACTION_VERSION;

    use super::*;

    fn change(name: &str, level: i32, upgrade_type: UpgradeType) -> FeatureChange {
        FeatureChange {
            name: name.to_string(),
            level,
            upgrade_type: Some(upgrade_type),
        }
    }

    fn at_transaction_version(level: i16) -> MetadataImage {
        let mut image = MetadataImage::default();
        image.replay(
            1,
            &Record::FeatureLevel {
                name: TRANSACTION_VERSION.to_string(),
                level,
            },
        );
        image
    }

    fn refusal(image: &MetadataImage, changes: &[FeatureChange]) -> ApiError {
        update_features(image, changes, false).expect_err("refused")
    }

    #[test]
    fn an_upgrade_finalizes_the_new_level_and_validate_only_writes_nothing() {
        let image = at_transaction_version(1);
        let upgrade = [change(TRANSACTION_VERSION, 2, UpgradeType::Upgrade)];
        let result = update_features(&image, &upgrade, false).unwrap();
        assert_eq!(
            result.records,
            vec![Record::FeatureLevel {
                name: TRANSACTION_VERSION.to_string(),
                level: 2
            }]
        );
        assert!(update_features(&image, &upgrade, true)
            .unwrap()
            .records
            .is_empty());
        // Already there: nothing to write.
        let image = at_transaction_version(2);
        assert!(update_features(&image, &upgrade, false)
            .unwrap()
            .records
            .is_empty());
    }

    #[test]
    fn a_level_goes_down_only_as_a_downgrade_and_up_only_as_an_upgrade() {
        let image = at_transaction_version(2);
        let down = refusal(
            &image,
            &[change(TRANSACTION_VERSION, 1, UpgradeType::Upgrade)],
        );
        assert_eq!(down.code, ResponseError::InvalidUpdateVersion);
        assert!(down.message.contains("safe or unsafe downgrade"), "{down}");
        for kind in [UpgradeType::SafeDowngrade, UpgradeType::UnsafeDowngrade] {
            let result =
                update_features(&image, &[change(TRANSACTION_VERSION, 0, kind)], false).unwrap();
            assert_eq!(
                result.records,
                vec![Record::FeatureLevel {
                    name: TRANSACTION_VERSION.to_string(),
                    level: 0
                }],
                "level 0 removes the feature"
            );
        }
        let image = at_transaction_version(1);
        let up = refusal(
            &image,
            &[change(TRANSACTION_VERSION, 2, UpgradeType::SafeDowngrade)],
        );
        assert!(up.message.contains("newer version"), "{up}");
    }

    #[test]
    fn levels_this_release_does_not_support_are_refused() {
        let image = at_transaction_version(2);
        for (name, level) in [
            (TRANSACTION_VERSION, 3),
            (TRANSACTION_VERSION, -1),
            ("group.version", 2),
            ("share.version", 1),
            ("share.version", 0),
            (METADATA_VERSION, 21),
        ] {
            let refused = refusal(&image, &[change(name, level, UpgradeType::Upgrade)]);
            assert_eq!(
                refused.code,
                ResponseError::InvalidUpdateVersion,
                "{name}={level}"
            );
            assert!(
                refused.message.starts_with(&format!(
                    "The update failed for all features since the following feature had an \
                     error: Invalid update version {level} for feature {name}."
                )),
                "{refused}"
            );
        }
        // What holds already is accepted and changes nothing.
        let result = update_features(
            &image,
            &[change(METADATA_VERSION, 7, UpgradeType::Upgrade)],
            false,
        )
        .unwrap();
        assert!(result.records.is_empty());
        let unknown_type = FeatureChange {
            name: TRANSACTION_VERSION.to_string(),
            level: 1,
            upgrade_type: None,
        };
        assert!(refusal(&image, &[unknown_type])
            .message
            .contains("upgrade type"));
    }

    /// Kafka's `reasonNotSupported`: every registered broker must support the level, as it
    /// registered its levels.
    #[test]
    fn a_level_a_registered_broker_does_not_support_is_refused() {
        use std::collections::BTreeMap;

        use chronik_metadata::features::FeatureRange;
        use chronik_metadata::records::{Endpoint, RegisterBrokerRecord};

        let mut image = at_transaction_version(1);
        let register = |id: i32, supported: BTreeMap<String, FeatureRange>| {
            Record::RegisterBroker(RegisterBrokerRecord {
                broker_id: id,
                incarnation_id: uuid::Uuid::new_v4(),
                broker_epoch: -1,
                endpoints: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9000,
                }],
                rack: None,
                fenced: true,
                in_controlled_shutdown: false,
                supported_features: supported,
                log_dir_id: None,
            })
        };
        image.replay(2, &register(1, features::supported_features()));
        let upgrade = [change(TRANSACTION_VERSION, 2, UpgradeType::Upgrade)];
        assert_eq!(
            update_features(&image, &upgrade, false)
                .unwrap()
                .records
                .len(),
            1
        );
        // Registered before brokers reported their levels: nothing above 0 until it re-registers.
        let mut with_unreported = image.clone();
        with_unreported.replay(3, &register(2, BTreeMap::new()));
        let refused = refusal(&with_unreported, &upgrade);
        assert!(
            refused
                .message
                .contains("Broker 2 registered without the levels"),
            "{refused}"
        );
        let off = [change(TRANSACTION_VERSION, 0, UpgradeType::SafeDowngrade)];
        assert_eq!(
            update_features(&with_unreported, &off, false)
                .unwrap()
                .records
                .len(),
            1
        );
        let narrow = BTreeMap::from([(
            TRANSACTION_VERSION.to_string(),
            FeatureRange {
                min_level: 0,
                max_level: 1,
            },
        )]);
        image.replay(4, &register(3, narrow));
        let refused = refusal(&image, &upgrade);
        assert_eq!(refused.code, ResponseError::InvalidUpdateVersion);
        assert!(
            refused
                .message
                .ends_with("Broker 3 only supports versions 0-1."),
            "{refused}"
        );
    }

    /// Raft snapshots are the image as JSON: one from before brokers registered their levels (or
    /// offline log directories) still loads, its brokers' levels unreported.
    #[test]
    fn a_snapshot_from_before_registered_levels_loads() {
        let mut image = at_transaction_version(2);
        crate::state::cluster::tests::register(&mut image, 1);
        let mut old = serde_json::to_value(&image).expect("encodes");
        let broker = old["brokers"]["1"].as_object_mut().expect("a broker");
        assert!(broker.remove("supported_features").is_some());
        assert!(broker.remove("has_offline_log_dir").is_some());
        let restored: MetadataImage = serde_json::from_value(old).expect("decodes");
        assert!(restored.brokers[&1].supported_features.is_empty());
        assert!(!restored.brokers[&1].has_offline_log_dir);
        assert_eq!(restored.feature_level(TRANSACTION_VERSION), 2);
    }

    #[test]
    fn one_refused_update_refuses_the_whole_request() {
        let image = at_transaction_version(1);
        let refused = refusal(
            &image,
            &[
                change(TRANSACTION_VERSION, 2, UpgradeType::Upgrade),
                change("share.version", 1, UpgradeType::Upgrade),
            ],
        );
        assert_eq!(refused.code, ResponseError::InvalidUpdateVersion);
        let twice = refusal(
            &image,
            &[
                change(TRANSACTION_VERSION, 2, UpgradeType::Upgrade),
                change(TRANSACTION_VERSION, 0, UpgradeType::SafeDowngrade),
            ],
        );
        assert_eq!(twice.code, ResponseError::InvalidRequest);
    }
}
