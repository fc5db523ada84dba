//! UpdateFeatures (key 57, KIP-584): forwarded to the controller quorum, which finalizes the levels
//! as Kafka's `FeatureControlManager` does (the controller's `state::features`): every update of a
//! request applies, or none does. `kafka-features.sh upgrade|downgrade` and the Admin client's
//! `updateFeatures` use it; `describeFeatures` reads ApiVersions. The answer is sent once this
//! broker's image has the new levels (bounded by `timeout_ms`), so an ApiVersions asked of it right
//! after reports them.
//!
//! v0 says whether a level may go down with `allow_downgrade` (a safe downgrade); v1 names the
//! upgrade type. Up to v1 the answer lists every feature with the request's one outcome; v2 has the
//! top-level error only.

use chronik_metadata::acl::AclOperation;
use chronik_proto::v1 as pb;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use tracing::debug;

use super::admin::{controller_failure, error_message, propagation_wait};
use super::{BrokerContext, RequestContext};
use crate::error::ControllerCallError;

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
            if reply.metadata_offset > 0 {
                let wait = propagation_wait(request.timeout_ms);
                if let Err(e) = ctx
                    .metadata
                    .wait_for_offset(reply.metadata_offset, wait)
                    .await
                {
                    debug!(error = %e, "finalized feature levels not yet in the local image");
                }
            }
            respond(rc.version, &request, 0, String::new())
        }
        Err(e) => {
            debug!(error = %e, version = rc.version, "UpdateFeatures refused or not forwarded");
            let (code, message) = match e {
                // The controller's own words ("Invalid update version 3 for feature ..."), as a
                // Kafka controller answers them.
                ControllerCallError::Refused {
                    kafka_error: Some(error),
                    message,
                    ..
                } => (error.code(), message),
                other => controller_failure(&other),
            };
            respond(rc.version, &request, code, message)
        }
    }
}

/// The request's one outcome: top-level, and (below v2) for every feature it named.
fn respond(
    version: i16,
    request: &UpdateFeaturesRequest,
    code: i16,
    message: String,
) -> UpdateFeaturesResponse {
    let results = if version < 2 {
        request
            .feature_updates
            .iter()
            .map(|u| {
                UpdatableFeatureResult::default()
                    .with_feature(u.feature.clone())
                    .with_error_code(code)
                    .with_error_message(error_message(code, message.clone()))
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

    /// Up to v1 every feature named carries the request's one outcome; v2 has none listed. Every
    /// version encodes.
    #[test]
    fn the_one_outcome_is_top_level_and_per_feature_below_v2() {
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
            let listed: Vec<(&str, i16)> = response
                .results
                .iter()
                .map(|r| (r.feature.as_str(), r.error_code))
                .collect();
            if version < 2 {
                assert_eq!(
                    listed,
                    [("transaction.version", refused), ("group.version", refused)]
                );
            } else {
                assert!(listed.is_empty());
            }
            response
                .encode(&mut BytesMut::new(), version)
                .expect("encodes");
        }
        let accepted = respond(1, &request, 0, String::new());
        assert_eq!(accepted.error_message, None);
        assert!(accepted
            .results
            .iter()
            .all(|r| r.error_code == 0 && r.error_message.is_none()));
    }
}
