//! The client side of Kafka's SASL authentication (KIP-43, KIP-152), in the order librdkafka and the
//! Java client use: ApiVersions (to learn which SaslHandshake and SaslAuthenticate versions the broker
//! speaks), SaslHandshake v1 naming the mechanism, then the mechanism's messages each carried in a
//! SaslAuthenticate request (v0–v2, the highest the broker offers). PLAIN is one message (RFC 4616);
//! SCRAM is two round trips ([`crate::scram`]).
//!
//! What must stay true: nothing else is sent before authentication succeeds; a refusal carries the
//! broker's own message; the password appears in no error and no log.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::scram::{ScramClient, ScramError};
use crate::security::{SaslMechanism, SaslSettings};
use crate::{decode_response, encode_request, read_frame, FrameError, WireError};

/// Largest answer accepted during authentication (an ApiVersions answer is a few KiB).
const MAX_SASL_FRAME: usize = 1 << 20;
/// Kafka's UNSUPPORTED_VERSION, the answer to an ApiVersions request newer than the broker knows.
const UNSUPPORTED_VERSION: i16 = 35;

/// Why SASL authentication did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("SASL authentication failed: {0}")]
    AuthenticationFailed(String),
    #[error("the broker does not enable SASL mechanism {mechanism} (enabled: {enabled})")]
    UnsupportedMechanism { mechanism: String, enabled: String },
    #[error(
        "the broker does not offer {0:?}: its listener does not take SASL (is it PLAINTEXT or SSL?)"
    )]
    NotOffered(ApiKey),
    #[error("{api:?} answered {name}")]
    Broker { api: ApiKey, name: String },
    #[error(transparent)]
    Scram(#[from] ScramError),
    #[error("the broker closed the connection during SASL authentication")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Kafka's name for an error code (`SASL_AUTHENTICATION_FAILED`, …).
pub fn error_name(code: i16) -> String {
    chronik_metadata::error::code_name(code)
}

/// One request and its answer on a connection that carries nothing else yet.
struct Exchange<'a, S> {
    stream: &'a mut S,
    client_id: &'a str,
    correlation_id: i32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Exchange<'_, S> {
    async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, SaslError> {
        self.correlation_id += 1;
        let mut frame = BytesMut::new();
        encode_request(
            &mut frame,
            request,
            version,
            self.correlation_id,
            self.client_id,
        )?;
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        let answer = read_frame(self.stream, MAX_SASL_FRAME)
            .await?
            .ok_or(SaslError::Closed)?;
        Ok(decode_response::<R>(answer, version, self.correlation_id)?)
    }
}

/// Authenticates on `stream` (already through TLS when the protocol is SASL_SSL). Returns the session
/// lifetime the broker granted (KIP-368), after which it closes the connection unless the client
/// authenticates again; `None` when it set none.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    settings: &SaslSettings,
    client_id: &str,
) -> Result<Option<Duration>, SaslError> {
    let mut exchange = Exchange {
        stream,
        client_id,
        correlation_id: 0,
    };
    let versions = api_versions(&mut exchange).await?;
    let pick = |api: ApiKey, max: i16| -> Result<i16, SaslError> {
        let offered = versions
            .api_keys
            .iter()
            .find(|v| v.api_key == api as i16)
            .ok_or(SaslError::NotOffered(api))?;
        let version = max.min(offered.max_version);
        if version < offered.min_version {
            return Err(SaslError::NotOffered(api));
        }
        Ok(version)
    };
    // v1: the mechanism's messages travel in SaslAuthenticate requests (v0 sent them unframed).
    let handshake_version = pick(ApiKey::SaslHandshake, 1)?;
    if handshake_version < 1 {
        return Err(SaslError::NotOffered(ApiKey::SaslAuthenticate));
    }
    let authenticate_version = pick(ApiKey::SaslAuthenticate, 2)?;
    let mechanism = settings.mechanism.name();
    let handshake = exchange
        .call(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            handshake_version,
        )
        .await?;
    if handshake.error_code == ResponseError::UnsupportedSaslMechanism.code() {
        let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(SaslError::UnsupportedMechanism {
            mechanism: mechanism.to_owned(),
            enabled: enabled.join(", "),
        });
    }
    if handshake.error_code != 0 {
        return Err(SaslError::Broker {
            api: ApiKey::SaslHandshake,
            name: error_name(handshake.error_code),
        });
    }
    let last = match settings.mechanism {
        SaslMechanism::Plain => {
            // RFC 4616: [authzid] NUL authcid NUL passwd.
            let mut message = Vec::new();
            message.push(0);
            message.extend_from_slice(settings.username.as_bytes());
            message.push(0);
            message.extend_from_slice(settings.password.expose().as_bytes());
            step(&mut exchange, message, authenticate_version).await?
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let scram_mechanism = settings
                .mechanism
                .scram()
                .ok_or(SaslError::NotOffered(ApiKey::SaslAuthenticate))?;
            let mut scram = ScramClient::new(
                scram_mechanism,
                &settings.username,
                settings.password.expose(),
            );
            let server_first =
                step(&mut exchange, scram.client_first(), authenticate_version).await?;
            let client_final = scram.client_final(&server_first.auth_bytes)?;
            let server_final = step(&mut exchange, client_final, authenticate_version).await?;
            scram.verify_server_final(&server_final.auth_bytes)?;
            server_final
        }
    };
    Ok((last.session_lifetime_ms > 0)
        .then(|| Duration::from_millis(last.session_lifetime_ms.unsigned_abs())))
}

/// Sends one of the mechanism's messages; a refusal carries the broker's message.
async fn step<S: AsyncRead + AsyncWrite + Unpin>(
    exchange: &mut Exchange<'_, S>,
    bytes: Vec<u8>,
    version: i16,
) -> Result<SaslAuthenticateResponse, SaslError> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let response = exchange.call(&request, version).await?;
    if response.error_code != 0 {
        let message = response
            .error_message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| error_name(response.error_code));
        return Err(SaslError::AuthenticationFailed(message));
    }
    Ok(response)
}

/// ApiVersions v3, or v0 when the broker answers that v3 is too new (KIP-511).
async fn api_versions<S: AsyncRead + AsyncWrite + Unpin>(
    exchange: &mut Exchange<'_, S>,
) -> Result<ApiVersionsResponse, SaslError> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("chronik"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let mut response = exchange.call(&request, 3).await?;
    if response.error_code == UNSUPPORTED_VERSION {
        response = exchange.call(&request, 0).await?;
    }
    if response.error_code != 0 {
        return Err(SaslError::Broker {
            api: ApiKey::ApiVersions,
            name: error_name(response.error_code),
        });
    }
    Ok(response)
}
