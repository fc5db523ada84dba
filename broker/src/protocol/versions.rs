//! The one table of Kafka APIs this broker serves and the versions it advertises (ranges from Kafka's
//! protocol JSON schemas, minimums where older clients gate features on them, see `SUPPORTED_APIS`).
//! ApiVersions answers from it and dispatch refuses anything outside it, so the two can never disagree.
//!
//! Produce is served from v0: v0–v2 carry legacy message sets (magic 0/1), which the broker
//! up-converts to v2 batches (`log::legacy`). Fetch stays v4+: a consumer that only reads the legacy
//! formats is not served (Kafka down-converts for those; Chronik does not).

use kafka_protocol::messages::ApiKey;

/// An API with the version range advertised in ApiVersions and the range actually decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    /// Advertised minimum. Equal to `serve_min` for every API today; it may only be lower when an
    /// older client gates a feature on a range we cannot decode.
    pub advertised_min: i16,
    pub serve_min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi {
        key,
        advertised_min: min,
        serve_min: min,
        max,
    }
}

/// Every API served, in ApiVersions order.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // From v0: older librdkafka enables compression only when v0 is in range (KAFKA-18659), and
    // clients with `api.version.request=false` send v0–v2 with legacy message sets. v12 is
    // transaction version 2 (KIP-890: the leader adds the partition to the transaction); v13 (topic
    // ids) is not served.
    api(ApiKey::Produce, 0, 12),
    api(ApiKey::Fetch, 4, 17),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    // v2: KIP-1073 `kafka-cluster.sh list-endpoints --include-fenced-brokers`.
    api(ApiKey::DescribeCluster, 0, 2),
    // KIP-584: kafka-features.sh upgrade/downgrade (finalized levels are reported by ApiVersions).
    api(ApiKey::UpdateFeatures, 0, 2),
    // KIP-595: kafka-metadata-quorum.sh describe (forwarded to the active controller).
    api(ApiKey::DescribeQuorum, 0, 2),
    // KIP-631: kafka-cluster.sh unregister.
    api(ApiKey::UnregisterBroker, 0, 0),
    api(ApiKey::FindCoordinator, 0, 5),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    // KIP-848's consumer group protocol (served while `group.version` is 1); librdkafka needs v1.
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DeleteRecords, 0, 2),
    // From v0: librdkafka enables idempotence only when InitProducerId v0 is in range.
    api(ApiKey::InitProducerId, 0, 5),
    // Transactions (KIP-98, KIP-890): EndTxn v5, TxnOffsetCommit v5 and Produce v12 are transaction
    // version 2, which clients use once the cluster finalizes `transaction.version` 2
    // (`handlers::api_versions`).
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeTransactions, 0, 0),
    // v2 adds a transactional id pattern (KIP-1152), not served.
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::DescribeProducers, 0, 0),
    // Inter-broker, from transaction coordinators (KIP-98); Kafka 4 serves v1 only (KIP-896).
    api(ApiKey::WriteTxnMarkers, 1, 1),
    // From v1, as Kafka 4.x (KIP-896 removed v0, which could name only LITERAL patterns).
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    // Advertised on every listener, as Kafka does; on SASL listeners the connection's authenticator
    // answers them (`security::sasl`), elsewhere and once authenticated `handlers::sasl` does.
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    // KIP-546; v1 is flexible only.
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
];

/// The entry for an API key, if served.
pub fn supported(key: ApiKey) -> Option<&'static SupportedApi> {
    SUPPORTED_APIS.iter().find(|a| a.key == key)
}

/// Whether a request of this key and version can be decoded and answered.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|a| (a.serve_min..=a.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::LEGACY_PRODUCE_SCHEMA;

    #[test]
    fn every_served_version_is_one_the_codec_can_decode() {
        for api in SUPPORTED_APIS {
            let codec = api.key.valid_versions();
            // Produce v0–v2 are framed by our codec module in v3's schema.
            let codec_min = match api.key {
                ApiKey::Produce if codec.min <= LEGACY_PRODUCE_SCHEMA => 0,
                _ => codec.min,
            };
            assert!(
                codec_min <= api.serve_min && api.max <= codec.max,
                "{:?}: serve {}..={} but the codec knows {}..={}",
                api.key,
                api.serve_min,
                api.max,
                codec.min,
                codec.max
            );
        }
    }

    #[test]
    fn produce_is_served_from_zero_and_fetch_from_four() {
        assert_eq!(
            supported(ApiKey::Produce).map(|a| (a.advertised_min, a.serve_min)),
            Some((0, 0))
        );
        assert!(is_served(ApiKey::Produce, 0) && is_served(ApiKey::Produce, 2));
        assert!(!is_served(ApiKey::Fetch, 3) && is_served(ApiKey::Fetch, 4));
        assert!(!is_served(ApiKey::Fetch, 18));
    }

    #[test]
    fn group_apis_include_the_versions_older_librdkafka_gates_groups_on() {
        // Before librdkafka 2.11.1 (its #5130) classic groups need these ranges to include v0,
        // OffsetCommit to include 1 or 2 and OffsetFetch 1.
        for key in [
            ApiKey::FindCoordinator,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
        ] {
            assert!(is_served(key, 0), "{key:?} v0");
        }
        assert!(is_served(ApiKey::OffsetCommit, 2));
        assert!(is_served(ApiKey::OffsetFetch, 1));
        assert!(is_served(ApiKey::DescribeGroups, 0) && is_served(ApiKey::ListGroups, 0));
    }

    #[test]
    fn init_producer_id_is_served_from_zero() {
        // librdkafka enables idempotence only when v0 is in range.
        assert_eq!(
            supported(ApiKey::InitProducerId).map(|a| (a.advertised_min, a.max)),
            Some((0, 5))
        );
    }
}
