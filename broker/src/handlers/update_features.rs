//! UpdateFeatures (key 57, KIP-584): forwarded to the controller quorum, which finalizes the levels
//! as Kafka's `FeatureControlManager` does (the controller's `state::features`): every update of a
//! request applies, or none does. `kafka-features.sh upgrade|downgrade` and the Admin client's
//! `updateFeatures` use it; `describeFeatures` reads ApiVersions. The answer is sent once this
//! broker's image has the new levels (bounded by `timeout_ms`), so an ApiVersions asked of it right
//! after reports them.
//!
//! v0 says whether a level may go down with `allow_downgrade` (a safe downgrade); v1 names the
//! upgrade type. The outcome is the top-level error; up to v1 a request that succeeded also lists
//! every feature it named, as Kafka's `UpdateFeaturesResponse.createWithErrors` does.

use chronik_metadata::acl::AclOperation;
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use tracing::debug;

use super::admin::{await_local_image, controller_refusal, error_message};
use super::{BrokerContext, RequestContext};

/// Kafka's `FeatureUpdate.UpgradeType` codes.
const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;

pub async fn handle(
    ctx: &BrokerContext,
    rc: &RequestContext<'_>,
    request: UpdateFeaturesRequest,
) -> UpdateFeaturesResponse {
    if !ctx.authorize_cluster(rc, AclOperation::Alter) {
        return respond(
            rc.version,
            &request,
            ResponseError::ClusterAuthorizationFailed.code(),
            String::new(),
        );
    }
    let call = pb::UpdateFeaturesRequest {
        updates: request
            .feature_updates
            .iter()
            .map(|u| pb::FeatureUpdate {
                name: u.feature.to_string(),
                level: i32::from(u.max_version_level),
                upgrade_type: i32::from(match rc.version {
                    0 if u.allow_downgrade => SAFE_DOWNGRADE,
                    0 => UPGRADE,
                    _ => u.upgrade_type,
                }),
            })
            .collect(),
        validate_only: request.validate_only,
    };
    match ctx.controller.update_features(call).await {
        Ok(reply) => {
            await_local_image(
                ctx,
                reply.metadata_offset,
                request.timeout_ms,
                "finalized feature levels",
            )
            .await;
            respond(rc.version, &request, 0, String::new())
        }
        Err(e) => {
            debug!(error = %e, version = rc.version, "UpdateFeatures refused or not forwarded");
            let (code, message) = controller_refusal(e);
            respond(rc.version, &request, code, message)
        }
    }
}

/// The request's one outcome: top-level, and (below v2, on success) every feature it named.
fn respond(
    version: i16,
    request: &UpdateFeaturesRequest,
    code: i16,
    message: String,
) -> UpdateFeaturesResponse {
    let results = if version < 2 && code == 0 {
        request
            .feature_updates
            .iter()
            .map(|u| {
                UpdatableFeatureResult::default()
                    .with_feature(u.feature.clone())
                    .with_error_code(0)
                    .with_error_message(None)
            })
            .collect()
    } else {
        Vec::new()
    };
    UpdateFeaturesResponse::default()
        .with_error_code(code)
        .with_error_message(error_message(code, message))
        .with_results(results)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    /// The outcome is top-level; up to v1 a success lists every feature named, v2 none. Every
    /// version encodes.
    #[test]
    fn the_one_outcome_is_top_level_and_listed_below_v2_on_success() {
        let request = UpdateFeaturesRequest::default().with_feature_updates(
            ["transaction.version", "group.version"]
                .into_iter()
                .map(|name| {
                    FeatureUpdateKey::default().with_feature(StrBytes::from_static_str(name))
                })
                .collect(),
        );
        let refused = ResponseError::InvalidUpdateVersion.code();
        for version in 0..=2 {
            let response = respond(version, &request, refused, "not supported".to_string());
            assert_eq!(response.error_code, refused);
            assert_eq!(response.error_message.as_deref(), Some("not supported"));
            assert!(response.results.is_empty());
            response
                .encode(&mut BytesMut::new(), version)
                .expect("encodes");
            let accepted = respond(version, &request, 0, String::new());
            assert_eq!(
                (accepted.error_code, accepted.error_message.as_ref()),
                (0, None)
            );
            let listed: Vec<(&str, i16)> = accepted
                .results
                .iter()
                .map(|r| (r.feature.as_str(), r.error_code))
                .collect();
            if version < 2 {
                assert_eq!(listed, [("transaction.version", 0), ("group.version", 0)]);
            } else {
                assert!(listed.is_empty());
            }
            accepted
                .encode(&mut BytesMut::new(), version)
                .expect("encodes");
        }
    }

    /// ALTER on the cluster, as Kafka's `ControllerApis.handleUpdateFeatures` asks: refused before
    /// anything reaches the controller.
    #[tokio::test]
    async fn updates_need_alter_on_the_cluster() {
        let broker = crate::handlers::test_support::broker_with_admin_only_cluster(1);
        let request =
            UpdateFeaturesRequest::default().with_feature_updates(vec![FeatureUpdateKey::default(
            )
            .with_feature(StrBytes::from_static_str("transaction.version"))
            .with_max_version_level(2)
            .with_upgrade_type(UPGRADE)]);
        let answer = handle(&broker.ctx, &broker.rc(1, "PLAINTEXT"), request).await;
        assert_eq!(
            answer.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        assert!(answer.results.is_empty());
    }
}
