//! ApiVersions (key 18): answered from the one versions table, plus (v3+) the feature flags of
//! KIP-584 as a Kafka 4.x broker reports them (`ApiVersionsResponse.Builder`). A request newer than we
//! serve is answered by the connection with UNSUPPORTED_VERSION in the v0 schema (`versions_too_new`).
//!
//! # Which features, and why
//!
//! Clients act on some finalized features, so only what is true of Chronik is reported:
//!
//! - `metadata.version` is supported and finalized at level 7, `3.3-IV3`, the lowest level Kafka 4.x
//!   supports (`MetadataVersion.MINIMUM_VERSION`). Everything up to it holds here: ListOffsets by max
//!   timestamp (KIP-734), topic ids in Fetch (KIP-516), leader recovery after an unclean election
//!   (KIP-704), brokers in controlled shutdown (KIP-841). The next levels add what Chronik lacks
//!   (ZooKeeper migration, tiered storage, delegation tokens) alongside what it has (SCRAM credentials
//!   in the metadata log, KIP-554, which SASL listeners authenticate with), so it claims none of them.
//!   It is a constant of this release, not metadata.
//! - `transaction.version` is supported at levels 0–2 and finalized at the level the cluster's
//!   metadata holds (`chronik_metadata::features`; a new cluster starts at 2, transaction version 2
//!   of KIP-890). The Java client (4.x `TransactionManager.maybeUpdateTransactionV2Enabled`) uses
//!   transaction version 2 when the finalized level is 2 or more: no AddPartitionsToTxn or
//!   AddOffsetsToTxn of its own, Produce v12 and TxnOffsetCommit v5 (the partition leader and the
//!   group coordinator add the partition to the transaction), and EndTxn v5, whose answer carries the
//!   producer epoch bumped for the next transaction. Below 2 it speaks version 1 and caps EndTxn at
//!   v4, TxnOffsetCommit at v4 and Produce at v11; librdkafka speaks version 1 whatever the level.
//! - `group.version` is supported at levels 0–1 and finalized at the metadata's level (a new
//!   cluster starts at 1): level 1 serves KIP-848's consumer group protocol (ConsumerGroupHeartbeat
//!   and ConsumerGroupDescribe are always advertised, as Kafka does, and answer UNSUPPORTED_VERSION
//!   at level 0). Clients do not read it; admin tools show it.
//! - `kraft.version`, `eligible.leader.replicas.version` and the others are left out. A Kafka broker
//!   lists a supported feature only when its maximum level is above 0
//!   (`BrokerFeatures.defaultSupportedFeatures`) and a finalized feature only at a level above 0
//!   (`createFinalizedFeatureKeys`); Chronik implements none of their higher levels, so their level
//!   is 0 and Kafka's own rules leave them out.
//! - The finalized features epoch is the offset of the broker's metadata image, as a KRaft broker
//!   reports its image's offset; clients keep the features of the highest epoch they have seen.
//!
//! Below v4, supported features whose minimum level is 0 are left out (KAFKA-17492: older clients
//! cannot decode them); none is here, but the rule is kept so a future feature does not break them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use chronik_metadata::features;
use chronik_metadata::MetadataImage;

use super::{BrokerContext, RequestContext};
use crate::protocol::versions::SUPPORTED_APIS;

/// One feature flag: the levels this broker supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub min_level: i16,
    pub max_level: i16,
}

/// Kafka's `MetadataVersion.IBP_3_3_IV3`, the lowest metadata version Kafka 4.x supports.
pub const METADATA_VERSION_3_3_IV3: i16 = features::METADATA_VERSION_LEVEL;

const METADATA_VERSION: &str = features::METADATA_VERSION;

/// Every feature reported (see the module docs): `metadata.version`, then those of the metadata.
fn features() -> impl Iterator<Item = Feature> {
    let metadata_version = Feature {
        name: METADATA_VERSION,
        min_level: METADATA_VERSION_3_3_IV3,
        max_level: METADATA_VERSION_3_3_IV3,
    };
    std::iter::once(metadata_version).chain(features::FEATURES.iter().map(|f| Feature {
        name: f.name,
        min_level: f.min_level,
        max_level: f.max_level,
    }))
}

/// A feature's finalized level in `image` (`metadata.version` is a constant of this release).
fn finalized_level(image: &MetadataImage, name: &str) -> i16 {
    if name == METADATA_VERSION {
        METADATA_VERSION_3_3_IV3
    } else {
        image.feature_level(name)
    }
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.advertised_min)
                .with_max_version(api.max)
        })
        .collect()
}

fn supported_features(version: i16) -> Vec<SupportedFeatureKey> {
    features()
        .filter(|f| version >= 4 || f.min_level != 0)
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(f.name))
                .with_min_version(f.min_level)
                .with_max_version(f.max_level)
        })
        .collect()
}

fn finalized_features(image: &MetadataImage) -> Vec<FinalizedFeatureKey> {
    features()
        .map(|f| (f.name, finalized_level(image, f.name)))
        .filter(|(_, level)| *level != 0)
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect()
}

/// The answer to any ApiVersions we serve. The client software name and version are not validated.
/// The feature fields exist from v3 (the codec leaves them out below).
pub fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let image = ctx.metadata.current();
    let epoch = i64::try_from(image.offset).unwrap_or(i64::MAX);
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(supported_features(rc.version))
        .with_finalized_features(finalized_features(&image))
        .with_finalized_features_epoch(epoch)
}

/// KIP-511: a too-new ApiVersions still learns every supported range, with UNSUPPORTED_VERSION.
pub fn versions_too_new() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;
    use crate::handlers::test_support::{cluster, TestBroker};
    use chronik_metadata::Record;

    /// What a client decodes from our answer at `version`.
    fn round_trip(broker: &TestBroker, version: i16) -> ApiVersionsResponse {
        let response = handle(
            &broker.ctx,
            &broker.rc(version, "PLAINTEXT"),
            ApiVersionsRequest::default(),
        );
        let mut buf = BytesMut::new();
        response.encode(&mut buf, version).expect("encodes");
        ApiVersionsResponse::decode(&mut buf.freeze(), version).expect("decodes")
    }

    fn names<T>(keys: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
        keys.iter().map(|k| name(k).to_owned()).collect()
    }

    fn supported(answer: &ApiVersionsResponse) -> Vec<(String, i16, i16)> {
        answer
            .supported_features
            .iter()
            .map(|f| (f.name.to_string(), f.min_version, f.max_version))
            .collect()
    }

    fn finalized(answer: &ApiVersionsResponse) -> Vec<(String, i16, i16)> {
        answer
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
            .collect()
    }

    fn owned(list: &[(&str, i16, i16)]) -> Vec<(String, i16, i16)> {
        list.iter()
            .map(|(n, a, b)| (n.to_string(), *a, *b))
            .collect()
    }

    /// Pins what clients act on: metadata.version 3.3-IV3, and `transaction.version` (KIP-890
    /// transactions in the Java producer) and `group.version` (the KIP-848 consumer protocol) exactly
    /// as the metadata finalizes them; no `kraft.version`.
    #[tokio::test]
    async fn features_are_metadata_version_3_3_iv3_and_the_finalized_transaction_and_group_versions(
    ) {
        let mut c = cluster();
        let before = TestBroker::new(1, &c.records);
        c.records.push(Record::FeatureLevel {
            name: features::TRANSACTION_VERSION.into(),
            level: 2,
        });
        c.records.push(Record::FeatureLevel {
            name: features::GROUP_VERSION.into(),
            level: 1,
        });
        let after = TestBroker::new(1, &c.records);
        for version in [3, 4] {
            let answer = round_trip(&before, version);
            assert_eq!(answer.error_code, 0);
            // Below v4 a supported feature whose minimum is 0 is left out (KAFKA-17492).
            let expected_supported = if version >= 4 {
                owned(&[
                    ("metadata.version", 7, 7),
                    ("transaction.version", 0, 2),
                    ("group.version", 0, 1),
                ])
            } else {
                owned(&[("metadata.version", 7, 7)])
            };
            assert_eq!(supported(&answer), expected_supported, "v{version}");
            assert_eq!(
                finalized(&answer),
                owned(&[("metadata.version", 7, 7)]),
                "without feature records their levels are 0, so not listed"
            );
            assert_eq!(answer.finalized_features_epoch, 10, "the image's offset");

            let answer = round_trip(&after, version);
            assert_eq!(supported(&answer), expected_supported, "v{version}");
            assert_eq!(
                finalized(&answer),
                owned(&[
                    ("metadata.version", 7, 7),
                    ("transaction.version", 2, 2),
                    ("group.version", 1, 1),
                ])
            );
            assert_eq!(
                answer.finalized_features_epoch,
                after.ctx.metadata.offset() as i64,
                "the image's offset"
            );
            assert!(
                !names(&answer.finalized_features, |f| &f.name)
                    .contains(&"kraft.version".to_owned())
                    && !names(&answer.supported_features, |f| &f.name)
                        .contains(&"kraft.version".to_owned()),
                "v{version} reports kraft.version"
            );
        }
    }

    #[tokio::test]
    async fn older_versions_have_no_feature_fields() {
        let broker = TestBroker::new(1, &cluster().records);
        for version in 0..=2 {
            let answer = round_trip(&broker, version);
            assert!(answer.supported_features.is_empty(), "v{version}");
            assert!(answer.finalized_features.is_empty(), "v{version}");
            assert_eq!(answer.api_keys.len(), SUPPORTED_APIS.len());
        }
    }

    #[test]
    fn every_feature_has_a_sane_range() {
        assert!(features().all(|f| f.min_level >= 0 && f.min_level <= f.max_level));
        assert!(features().any(|f| f.name == "transaction.version" && f.max_level == 2));
    }
}
