//! SaslHandshake (key 17) and SaslAuthenticate (key 36) when they reach the handlers: on a PLAINTEXT
//! or SSL listener, or on a SASL connection that is already authenticated and not re-authenticating
//! (the authenticator in `security::sasl` answers them otherwise). Both are ILLEGAL_SASL_STATE, as
//! Kafka's `KafkaApis.handleSaslHandshakeRequest` / `handleSaslAuthenticateRequest` answer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handle_handshake() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}

pub fn handle_authenticate() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(StrBytes::from_static_str(
            "SaslAuthenticate request received after successful authentication",
        )))
}
