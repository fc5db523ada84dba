//! ApiVersions (key 18): answered from the one versions table. A request newer than we serve is
//! answered by the connection with UNSUPPORTED_VERSION in the v0 schema (`versions_too_new`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::RequestContext;
use crate::protocol::versions::SUPPORTED_APIS;

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

/// The answer to any ApiVersions we serve. The client software name and version are not validated.
pub fn handle(_rc: &RequestContext<'_>, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1)
}

/// KIP-511: a too-new ApiVersions still learns every supported range, with UNSUPPORTED_VERSION.
pub fn versions_too_new() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
