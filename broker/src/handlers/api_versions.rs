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
//! - `transaction.version`, `group.version`, `kraft.version`, `eligible.leader.replicas.version` and
//!   the others are left out. A Kafka broker lists a supported feature only when its maximum level is
//!   above 0 (`BrokerFeatures.defaultSupportedFeatures`) and a finalized feature only at a level above
//!   0 (`createFinalizedFeatureKeys`); Chronik implements none of their higher levels, so their level
//!   is 0 and Kafka's own rules leave them out. `group.version` 1 would advertise the KIP-848 consumer
//!   protocol, which this broker does not serve.
//!
//! # Which transaction protocol
//!
//! Chronik serves transaction version 1: KIP-98 transactions with KIP-360 epoch bumps and KIP-890
//! part 1 (partition leaders verify a transactional Produce with the coordinator through
//! AddPartitionsToTxn v4+ `VerifyOnly`). It does not serve KIP-890 part 2 (transaction version 2:
//! an epoch bump at every transaction end, partitions added implicitly by Produce v12, EndTxn v5,
//! TxnOffsetCommit v5). The Java client (4.x `TransactionManager`) enables part 2 only when the
//! broker finalizes `transaction.version` at 2 or more; without the feature it speaks version 1 and
//! caps EndTxn at v4 (`EndTxnRequest.LAST_STABLE_VERSION_BEFORE_TRANSACTION_V2`), TxnOffsetCommit at
//! v4 and Produce at v11, and it adds partitions with AddPartitionsToTxn v3 and AddOffsetsToTxn.
//! So `transaction.version` is left out, and the versions table stops below part 2's versions.
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

use super::{BrokerContext, RequestContext};
use crate::protocol::versions::SUPPORTED_APIS;

/// One feature flag: the levels this broker supports and the level finalized for the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub min_level: i16,
    pub max_level: i16,
    pub finalized_level: i16,
}

/// Kafka's `MetadataVersion.IBP_3_3_IV3`, the lowest metadata version Kafka 4.x supports.
pub const METADATA_VERSION_3_3_IV3: i16 = 7;

/// Every feature reported (see the module docs for why there is only one).
pub const FEATURES: &[Feature] = &[Feature {
    name: "metadata.version",
    min_level: METADATA_VERSION_3_3_IV3,
    max_level: METADATA_VERSION_3_3_IV3,
    finalized_level: METADATA_VERSION_3_3_IV3,
}];

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
    FEATURES
        .iter()
        .filter(|f| version >= 4 || f.min_level != 0)
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(f.name))
                .with_min_version(f.min_level)
                .with_max_version(f.max_level)
        })
        .collect()
}

fn finalized_features() -> Vec<FinalizedFeatureKey> {
    FEATURES
        .iter()
        .filter(|f| f.finalized_level != 0)
        .map(|f| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(f.name))
                .with_min_version_level(f.finalized_level)
                .with_max_version_level(f.finalized_level)
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
    let epoch = i64::try_from(ctx.metadata.offset()).unwrap_or(i64::MAX);
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(supported_features(rc.version))
        .with_finalized_features(finalized_features())
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

    /// Pins what clients act on: metadata.version 3.3-IV3 and nothing else, in particular no
    /// `transaction.version` (KIP-890 transactions in the Java producer) and no `group.version`
    /// (the KIP-848 consumer protocol).
    #[tokio::test]
    async fn v3_and_v4_report_only_metadata_version_3_3_iv3() {
        let c = cluster();
        let broker = TestBroker::new(1, &c.records);
        for version in [3, 4] {
            let answer = round_trip(&broker, version);
            assert_eq!(answer.error_code, 0);
            let supported: Vec<(String, i16, i16)> = answer
                .supported_features
                .iter()
                .map(|f| (f.name.to_string(), f.min_version, f.max_version))
                .collect();
            assert_eq!(supported, [("metadata.version".to_owned(), 7, 7)]);
            let finalized: Vec<(String, i16, i16)> = answer
                .finalized_features
                .iter()
                .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
                .collect();
            assert_eq!(finalized, [("metadata.version".to_owned(), 7, 7)]);
            assert_eq!(answer.finalized_features_epoch, 10, "the image's offset");
            for absent in ["transaction.version", "group.version", "kraft.version"] {
                assert!(
                    !names(&answer.finalized_features, |f| &f.name).contains(&absent.to_owned())
                        && !names(&answer.supported_features, |f| &f.name)
                            .contains(&absent.to_owned()),
                    "v{version} reports {absent}"
                );
            }
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
    fn below_v4_features_with_level_0_are_left_out() {
        // KAFKA-17492; no feature has a minimum of 0 today, so every version lists the same ones.
        assert_eq!(supported_features(3), supported_features(4));
        assert!(FEATURES.iter().all(|f| f.min_level > 0
            && f.min_level <= f.finalized_level
            && f.finalized_level <= f.max_level));
    }
}
