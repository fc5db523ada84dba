//! The SASL authenticator of one connection on a SASL_PLAINTEXT or SASL_SSL listener (Kafka's
//! `SaslServerAuthenticator`, and the re-authentication of KIP-368). The connection hands it every
//! frame; it answers SaslHandshake (key 17, v0–1) and SaslAuthenticate (key 36, v0–2) itself and lets
//! other requests through only once the connection is authenticated.
//!
//! States, as Kafka's: `Handshake` (ApiVersions or SaslHandshake expected) → `Authenticate` (tokens of
//! the chosen mechanism) → `Complete`. Before completion anything but ApiVersions, SaslHandshake and
//! SaslAuthenticate closes the connection without an answer, as Kafka closes it. A SaslHandshake v0
//! (clients before Kafka 1.0) is followed by raw tokens, each framed by a 4-byte size and not wrapped
//! in a request; they are answered the same way, and a failure simply closes the connection (v0 has no
//! way to say why).
//!
//! Failures answer Kafka's codes and close the connection: UNSUPPORTED_SASL_MECHANISM (listing the
//! enabled mechanisms), ILLEGAL_SASL_STATE (a SASL request out of order), and SASL_AUTHENTICATION_FAILED
//! with Kafka's message, the same for an unknown user and a wrong password.
//!
//! Re-authentication (`--connections-max-reauth-ms` > 0, Kafka's `connections.max.reauth.ms`):
//! SaslAuthenticate v1+ answers the session lifetime, after which a request other than SaslHandshake
//! closes the connection; a SaslHandshake on an authenticated connection starts a re-authentication,
//! which checks the credentials again against the current image (so a deleted user is refused) and
//! must keep the mechanism and the principal. Clients of SaslAuthenticate v0 are not told the
//! lifetime and are disconnected when it ends, as KIP-368 does for them.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use chronik_metadata::scram::ScramMechanism;
use chronik_metadata::MetadataImage;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::plain;
use super::scram::ScramServer;
use super::{SaslMechanism, SaslSettings};
use crate::authorizer::KafkaPrincipal;
use crate::protocol::codec::{decode_request, encode_response, Decoded, Request};

/// Why an exchange failed, for the broker's log only (never sent; names at most the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub reason: String,
}

impl AuthFailure {
    pub fn new(reason: impl Into<String>) -> Self {
        AuthFailure {
            reason: reason.into(),
        }
    }
}

/// A mechanism's answer to one client token.
#[derive(Debug)]
pub enum Step {
    /// Send this and expect another token.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; send `response` (possibly empty).
    Complete { user: String, response: Vec<u8> },
}

/// The server side of the mechanism chosen in the handshake.
enum MechanismServer {
    Scram(Box<ScramServer>),
    Plain,
}

impl MechanismServer {
    fn new(mechanism: SaslMechanism) -> Self {
        match mechanism {
            SaslMechanism::Plain => MechanismServer::Plain,
            SaslMechanism::ScramSha256 => {
                MechanismServer::Scram(Box::new(ScramServer::new(ScramMechanism::Sha256)))
            }
            SaslMechanism::ScramSha512 => {
                MechanismServer::Scram(Box::new(ScramServer::new(ScramMechanism::Sha512)))
            }
        }
    }

    async fn step(
        &mut self,
        token: Bytes,
        image: std::sync::Arc<MetadataImage>,
    ) -> Result<Step, AuthFailure> {
        match self {
            MechanismServer::Scram(server) => server.step(&token, &image),
            // Thousands of HMACs: off the async threads.
            MechanismServer::Plain => {
                tokio::task::spawn_blocking(move || plain::authenticate(&token, &image))
                    .await
                    .unwrap_or_else(|_| Err(AuthFailure::new("SASL/PLAIN check did not finish")))
            }
        }
    }
}

enum State {
    /// ApiVersions or SaslHandshake expected (Kafka's HANDSHAKE_OR_VERSIONS_REQUEST).
    Handshake,
    /// Tokens of `mechanism` expected; `raw` after a v0 handshake.
    Authenticate {
        mechanism: SaslMechanism,
        server: MechanismServer,
        raw: bool,
    },
    /// A re-authentication asked for another mechanism: the handshake was answered, and the next
    /// token fails with this message (Kafka's REAUTH_BAD_MECHANISM).
    ReauthBadMechanism(String),
    Complete,
    Failed,
}

/// Who the connection authenticated as, kept across re-authentications.
#[derive(Clone, Debug)]
struct Authenticated {
    principal: KafkaPrincipal,
    mechanism: SaslMechanism,
    /// When the session ends (KIP-368); `None` when re-authentication is off.
    expires_at: Option<Instant>,
}

/// What the connection does with a frame the authenticator looked at.
#[derive(Debug)]
pub enum SaslAction {
    /// Handle the request as usual (authenticated, or ApiVersions before).
    Dispatch(Decoded),
    /// Send this frame (size prefix included) and read on.
    Respond(Bytes),
    /// The connection now acts as `principal` (an unchanged one after a re-authentication); send
    /// `response`.
    Authenticated {
        response: Bytes,
        principal: KafkaPrincipal,
    },
    /// Send `response`, if any, then close: `reason` is for the log.
    Close {
        response: Option<Bytes>,
        reason: String,
    },
}

/// Kafka's message for a failed exchange (`SaslServerAuthenticator.handleSaslToken`), the same
/// whatever failed, so a client cannot tell an unknown user from a wrong password.
pub fn failure_message(mechanism: SaslMechanism, reauthenticating: bool) -> String {
    let what = if reauthenticating {
        "re-authentication"
    } else {
        "authentication"
    };
    format!("Authentication failed during {what} due to invalid credentials with SASL mechanism {mechanism}")
}

/// One connection's SASL state.
pub struct SaslAuthenticator {
    settings: std::sync::Arc<SaslSettings>,
    state: State,
    authenticated: Option<Authenticated>,
}

fn respond(request: &Request, body: ResponseKind) -> Result<Bytes, String> {
    encode_response(
        request.header.correlation_id,
        request.api_key,
        request.version,
        &body,
    )
    .map_err(|e| format!("cannot encode {:?}: {e}", request.api_key))
}

/// A raw (v0) token: 4-byte size, then the bytes.
fn raw_frame(token: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + token.len());
    out.put_u32(token.len() as u32);
    out.put_slice(token);
    out.freeze()
}

impl SaslAuthenticator {
    pub fn new(settings: std::sync::Arc<SaslSettings>) -> Self {
        SaslAuthenticator {
            settings,
            state: State::Handshake,
            authenticated: None,
        }
    }

    fn enabled_names(&self) -> Vec<StrBytes> {
        self.settings
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect()
    }

    fn close(&mut self, response: Option<Result<Bytes, String>>, reason: String) -> SaslAction {
        self.state = State::Failed;
        match response {
            Some(Err(e)) => SaslAction::Close {
                response: None,
                reason: e,
            },
            Some(Ok(bytes)) => SaslAction::Close {
                response: Some(bytes),
                reason,
            },
            None => SaslAction::Close {
                response: None,
                reason,
            },
        }
    }

    /// Looks at one frame (the bytes after its size prefix) against the current image.
    pub async fn on_frame(
        &mut self,
        frame: Bytes,
        image: impl FnOnce() -> std::sync::Arc<MetadataImage>,
    ) -> SaslAction {
        if let State::Authenticate { raw: true, .. } = self.state {
            return self.raw_token(frame, image()).await;
        }
        let decoded = match decode_request(frame) {
            Ok(decoded) => decoded,
            Err(e) => return self.close(None, e.to_string()),
        };
        let request = match decoded {
            Decoded::ApiVersionsTooNew { .. } => {
                return match self.state {
                    State::Handshake | State::Complete => SaslAction::Dispatch(decoded),
                    _ => self.close(None, "ApiVersions during SASL authentication".into()),
                };
            }
            Decoded::Request(request) => request,
        };
        let key = request.api_key;
        match &self.state {
            State::Complete => {
                let Some(authenticated) = self.authenticated.as_ref() else {
                    return self.close(None, "SASL state without a principal".into());
                };
                if key == ApiKey::SaslHandshake && authenticated.expires_at.is_some() {
                    // KIP-368: a handshake on an authenticated connection starts re-authentication.
                    return self.handshake(&request);
                }
                if authenticated
                    .expires_at
                    .is_some_and(|at| Instant::now() >= at)
                {
                    return self.close(
                        None,
                        format!(
                            "the SASL session of {} expired (--connections-max-reauth-ms) and the client did not re-authenticate",
                            authenticated.principal
                        ),
                    );
                }
                SaslAction::Dispatch(Decoded::Request(request))
            }
            State::Handshake => match key {
                ApiKey::ApiVersions if self.authenticated.is_none() => {
                    SaslAction::Dispatch(Decoded::Request(request))
                }
                ApiKey::SaslHandshake => self.handshake(&request),
                ApiKey::SaslAuthenticate => {
                    let body = SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Unexpected SaslAuthenticate request before SaslHandshake",
                        )));
                    let response = respond(&request, ResponseKind::SaslAuthenticate(body));
                    self.close(
                        Some(response),
                        "SaslAuthenticate before SaslHandshake".into(),
                    )
                }
                other => self.close(
                    None,
                    format!("{other:?} request before SASL authentication completed"),
                ),
            },
            State::Authenticate { .. } => match key {
                ApiKey::SaslAuthenticate => self.authenticate(&request, image()).await,
                ApiKey::SaslHandshake => {
                    let body = SaslHandshakeResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_mechanisms(self.enabled_names());
                    let response = respond(&request, ResponseKind::SaslHandshake(body));
                    self.close(
                        Some(response),
                        "a second SaslHandshake during SASL authentication".into(),
                    )
                }
                other => self.close(
                    None,
                    format!("{other:?} request during SASL authentication"),
                ),
            },
            State::ReauthBadMechanism(message) => {
                let message = message.clone();
                if key != ApiKey::SaslAuthenticate {
                    return self.close(
                        None,
                        format!("{key:?} request during SASL re-authentication"),
                    );
                }
                let body = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message.clone())));
                let response = respond(&request, ResponseKind::SaslAuthenticate(body));
                self.close(
                    Some(response),
                    format!("SASL re-authentication failed: {message}"),
                )
            }
            State::Failed => self.close(None, "request after a failed SASL authentication".into()),
        }
    }

    fn handshake(&mut self, request: &Request) -> SaslAction {
        let RequestKind::SaslHandshake(body) = &request.body else {
            return self.close(None, "SaslHandshake that is not one".into());
        };
        let asked = body.mechanism.as_str();
        let mechanism =
            SaslMechanism::from_name(asked).filter(|m| self.settings.mechanisms.contains(m));
        let previous = self.authenticated.as_ref().map(|a| a.mechanism);
        match mechanism {
            Some(mechanism) => {
                let response = respond(
                    request,
                    ResponseKind::SaslHandshake(
                        SaslHandshakeResponse::default().with_mechanisms(self.enabled_names()),
                    ),
                );
                match response {
                    Ok(bytes) => {
                        self.state = match previous {
                            // Kafka answers the handshake and fails the next token with this.
                            Some(p) if p != mechanism => State::ReauthBadMechanism(format!(
                                "SASL mechanism '{mechanism}' requested by client is not supported for re-authentication of mechanism '{p}'"
                            )),
                            _ => State::Authenticate {
                                mechanism,
                                server: MechanismServer::new(mechanism),
                                raw: request.version == 0,
                            },
                        };
                        SaslAction::Respond(bytes)
                    }
                    Err(e) => self.close(None, e),
                }
            }
            None => {
                // Printable and bounded: the client's string goes into the log.
                let shown: String = asked.chars().take(64).filter(|c| !c.is_control()).collect();
                let reason = format!(
                    "unsupported SASL mechanism '{shown}' (enabled: {})",
                    self.settings
                        .mechanisms
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let body = SaslHandshakeResponse::default()
                    .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                    .with_mechanisms(self.enabled_names());
                let response = respond(request, ResponseKind::SaslHandshake(body));
                self.close(Some(response), reason)
            }
        }
    }

    /// Completion: the principal, the session's end, and the response bytes for it.
    fn complete(
        &mut self,
        mechanism: SaslMechanism,
        user: String,
    ) -> Result<(KafkaPrincipal, i64), String> {
        let principal = KafkaPrincipal {
            principal_type: "User".into(),
            name: user,
        };
        if let Some(previous) = &self.authenticated {
            if previous.principal != principal {
                return Err(format!(
                    "re-authentication may not change the principal from {} to {principal}",
                    previous.principal
                ));
            }
        }
        let lifetime_ms = self.settings.max_reauth_ms;
        let expires_at =
            (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms));
        self.authenticated = Some(Authenticated {
            principal: principal.clone(),
            mechanism,
            expires_at,
        });
        self.state = State::Complete;
        Ok((principal, i64::try_from(lifetime_ms).unwrap_or(i64::MAX)))
    }

    async fn authenticate(
        &mut self,
        request: &Request,
        image: std::sync::Arc<MetadataImage>,
    ) -> SaslAction {
        let RequestKind::SaslAuthenticate(body) = &request.body else {
            return self.close(None, "SaslAuthenticate that is not one".into());
        };
        let State::Authenticate {
            mechanism, server, ..
        } = &mut self.state
        else {
            return self.close(None, "SaslAuthenticate out of order".into());
        };
        let mechanism = *mechanism;
        let reauthenticating = self.authenticated.is_some();
        let failed = |this: &mut Self, reason: String| {
            let body = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(failure_message(
                    mechanism,
                    reauthenticating,
                ))));
            let response = respond(request, ResponseKind::SaslAuthenticate(body));
            let what = if reauthenticating {
                "re-authentication"
            } else {
                "authentication"
            };
            this.close(
                Some(response),
                format!("SASL {what} with {mechanism} failed: {reason}"),
            )
        };
        match server.step(body.auth_bytes.clone(), image).await {
            Ok(Step::Challenge(token)) => {
                let body = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(token));
                match respond(request, ResponseKind::SaslAuthenticate(body)) {
                    Ok(bytes) => SaslAction::Respond(bytes),
                    Err(e) => self.close(None, e),
                }
            }
            Ok(Step::Complete { user, response }) => match self.complete(mechanism, user) {
                Ok((principal, lifetime_ms)) => {
                    let mut body =
                        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(response));
                    if request.version >= 1 {
                        body.session_lifetime_ms = lifetime_ms;
                    }
                    match respond(request, ResponseKind::SaslAuthenticate(body)) {
                        Ok(response) => SaslAction::Authenticated {
                            response,
                            principal,
                        },
                        Err(e) => self.close(None, e),
                    }
                }
                Err(reason) => failed(self, reason),
            },
            Err(failure) => failed(self, failure.reason),
        }
    }

    async fn raw_token(
        &mut self,
        token: Bytes,
        image: std::sync::Arc<MetadataImage>,
    ) -> SaslAction {
        let State::Authenticate {
            mechanism, server, ..
        } = &mut self.state
        else {
            return self.close(None, "raw SASL token out of order".into());
        };
        let mechanism = *mechanism;
        match server.step(token, image).await {
            Ok(Step::Challenge(token)) => SaslAction::Respond(raw_frame(&token)),
            Ok(Step::Complete { user, response }) => match self.complete(mechanism, user) {
                Ok((principal, _)) => SaslAction::Authenticated {
                    response: raw_frame(&response),
                    principal,
                },
                Err(reason) => self.close(
                    None,
                    format!("SASL authentication with {mechanism} failed: {reason}"),
                ),
            },
            Err(failure) => self.close(
                None,
                format!(
                    "SASL authentication with {mechanism} (v0 handshake) failed: {}",
                    failure.reason
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    use kafka_protocol::messages::{
        ApiVersionsRequest, MetadataRequest, RequestHeader, SaslAuthenticateRequest,
        SaslHandshakeRequest,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

    use super::*;
    use crate::security::scram::tests::{client_final, image_with};

    fn frame<R: Encodable + HeaderVersion + kafka_protocol::protocol::Request>(
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .encode(&mut buf, R::header_version(version))
            .expect("header");
        request.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    fn response<R: Decodable>(bytes: &Bytes, key: ApiKey, version: i16) -> R {
        let mut body = bytes.slice(4..);
        kafka_protocol::messages::ResponseHeader::decode(
            &mut body,
            key.response_header_version(version),
        )
        .expect("header");
        R::decode(&mut body, version).expect("body")
    }

    fn settings(mechanisms: &[SaslMechanism], max_reauth_ms: u64) -> Arc<SaslSettings> {
        Arc::new(SaslSettings {
            mechanisms: mechanisms.to_vec(),
            max_reauth_ms,
        })
    }

    fn handshake(mechanism: &str, version: i16) -> Bytes {
        frame(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(mechanism.into())),
            version,
            1,
        )
    }

    fn authenticate(token: &[u8], version: i16) -> Bytes {
        frame(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
            version,
            2,
        )
    }

    /// A full SCRAM-SHA-512 login through the authenticator.
    async fn scram_login(
        auth: &mut SaslAuthenticator,
        image: &Arc<MetadataImage>,
        user: &str,
        password: &str,
    ) -> SaslAction {
        let img = || image.clone();
        assert!(matches!(
            auth.on_frame(handshake("SCRAM-SHA-512", 1), img).await,
            SaslAction::Respond(_)
        ));
        let first_bare = format!("n={user},r=clientnonce");
        let SaslAction::Respond(challenge) = auth
            .on_frame(authenticate(format!("n,,{first_bare}").as_bytes(), 2), img)
            .await
        else {
            panic!("a challenge");
        };
        let challenge: SaslAuthenticateResponse = response(&challenge, ApiKey::SaslAuthenticate, 2);
        let server_first = String::from_utf8(challenge.auth_bytes.to_vec()).expect("utf8");
        let parts: Vec<&str> = server_first.split(',').collect();
        let nonce = &parts[0][2..];
        let salt = BASE64.decode(&parts[1][2..]).expect("salt");
        let iterations = parts[2][2..].parse().expect("iterations");
        let (final_message, _) = client_final(
            ScramMechanism::Sha512,
            password,
            &salt,
            iterations,
            &first_bare,
            &server_first,
            nonce,
        );
        auth.on_frame(authenticate(final_message.as_bytes(), 2), img)
            .await
    }

    fn alice() -> Arc<MetadataImage> {
        Arc::new(image_with(
            "alice",
            "secret",
            ScramMechanism::Sha512,
            b"salt",
            4096,
        ))
    }

    #[tokio::test]
    async fn only_api_versions_and_sasl_pass_before_authentication() {
        let image = alice();
        let img = || image.clone();
        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::ScramSha512], 0));
        assert!(matches!(
            auth.on_frame(frame(&ApiVersionsRequest::default(), 3, 0), img)
                .await,
            SaslAction::Dispatch(_)
        ));
        assert!(matches!(
            auth.on_frame(frame(&MetadataRequest::default(), 12, 0), img)
                .await,
            SaslAction::Close { response: None, .. }
        ));
        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::ScramSha512], 0));
        let SaslAction::Authenticated {
            principal,
            response: r,
        } = scram_login(&mut auth, &image, "alice", "secret").await
        else {
            panic!("authenticated")
        };
        assert_eq!(principal.to_string(), "User:alice");
        let done: SaslAuthenticateResponse = response(&r, ApiKey::SaslAuthenticate, 2);
        assert!(done.auth_bytes.starts_with(b"v=") && done.session_lifetime_ms == 0);
        assert!(matches!(
            auth.on_frame(frame(&MetadataRequest::default(), 12, 0), img)
                .await,
            SaslAction::Dispatch(_)
        ));
        // Without re-authentication a later handshake reaches the handler (ILLEGAL_SASL_STATE).
        assert!(matches!(
            auth.on_frame(handshake("SCRAM-SHA-512", 1), img).await,
            SaslAction::Dispatch(_)
        ));
    }

    #[tokio::test]
    async fn failures_answer_kafkas_codes_and_close() {
        let image = alice();
        let img = || image.clone();
        let mut auth = SaslAuthenticator::new(settings(
            &[SaslMechanism::ScramSha512, SaslMechanism::Plain],
            0,
        ));
        let SaslAction::Close {
            response: Some(r),
            reason,
        } = auth.on_frame(handshake("GSSAPI", 1), img).await
        else {
            panic!("closed with an answer")
        };
        let answer: SaslHandshakeResponse = response(&r, ApiKey::SaslHandshake, 1);
        assert_eq!(
            answer.error_code,
            ResponseError::UnsupportedSaslMechanism.code()
        );
        assert_eq!(
            answer.mechanisms,
            vec![
                StrBytes::from_static_str("SCRAM-SHA-512"),
                StrBytes::from_static_str("PLAIN")
            ]
        );
        assert!(reason.contains("GSSAPI"), "{reason}");

        for (user, password) in [("alice", "wrong"), ("mallory", "secret")] {
            let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::ScramSha512], 0));
            let SaslAction::Close {
                response: Some(r),
                reason,
            } = scram_login(&mut auth, &image, user, password).await
            else {
                panic!("closed with an answer")
            };
            let answer: SaslAuthenticateResponse = response(&r, ApiKey::SaslAuthenticate, 2);
            assert_eq!(
                answer.error_code,
                ResponseError::SaslAuthenticationFailed.code()
            );
            assert_eq!(
                answer.error_message.as_deref(),
                Some("Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")
            );
            assert!(!reason.contains(password), "{reason}");
        }

        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::Plain], 0));
        let SaslAction::Close {
            response: Some(r), ..
        } = auth
            .on_frame(authenticate(b"\0alice\0secret", 1), img)
            .await
        else {
            panic!("SaslAuthenticate before the handshake")
        };
        let answer: SaslAuthenticateResponse = response(&r, ApiKey::SaslAuthenticate, 1);
        assert_eq!(answer.error_code, ResponseError::IllegalSaslState.code());
    }

    #[tokio::test]
    async fn plain_and_the_v0_handshake_with_raw_tokens() {
        let image = Arc::new(image_with(
            "alice",
            "secret",
            ScramMechanism::Sha256,
            b"salt",
            4096,
        ));
        let img = || image.clone();
        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::Plain], 0));
        assert!(matches!(
            auth.on_frame(handshake("PLAIN", 1), img).await,
            SaslAction::Respond(_)
        ));
        assert!(matches!(
            auth.on_frame(authenticate(b"\0alice\0secret", 0), img)
                .await,
            SaslAction::Authenticated { .. }
        ));

        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::Plain], 0));
        assert!(matches!(
            auth.on_frame(handshake("PLAIN", 0), img).await,
            SaslAction::Respond(_)
        ));
        let SaslAction::Authenticated {
            response,
            principal,
        } = auth
            .on_frame(Bytes::from_static(b"\0alice\0secret"), img)
            .await
        else {
            panic!("authenticated by a raw token")
        };
        assert_eq!(&response[..], &[0, 0, 0, 0], "an empty raw token");
        assert_eq!(principal.name, "alice");

        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::Plain], 0));
        auth.on_frame(handshake("PLAIN", 0), img).await;
        assert!(matches!(
            auth.on_frame(Bytes::from_static(b"\0alice\0nope"), img)
                .await,
            SaslAction::Close { response: None, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_reauthentication_checks_the_current_image() {
        let image = alice();
        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::ScramSha512], 60_000));
        let SaslAction::Authenticated { response: r, .. } =
            scram_login(&mut auth, &image, "alice", "secret").await
        else {
            panic!("authenticated")
        };
        let done: SaslAuthenticateResponse = response(&r, ApiKey::SaslAuthenticate, 2);
        assert_eq!(done.session_lifetime_ms, 60_000);
        // Re-authenticating keeps the connection.
        assert!(matches!(
            scram_login(&mut auth, &image, "alice", "secret").await,
            SaslAction::Authenticated { .. }
        ));
        // A different user may not take the connection over.
        let both = {
            let mut i = (*image).clone();
            i.replay(
                2,
                &chronik_metadata::Record::UserScramCredential(
                    image_with("bob", "pw", ScramMechanism::Sha512, b"s", 4096).scram_credentials
                        ["bob"][&ScramMechanism::Sha512]
                        .clone(),
                ),
            );
            Arc::new(i)
        };
        let SaslAction::Close { reason, .. } = scram_login(&mut auth, &both, "bob", "pw").await
        else {
            panic!("refused")
        };
        assert!(reason.contains("principal"), "{reason}");

        // Nor another mechanism: the handshake is answered, the next token fails (Kafka's
        // REAUTH_BAD_MECHANISM).
        let two = settings(
            &[SaslMechanism::ScramSha512, SaslMechanism::ScramSha256],
            60_000,
        );
        let mut auth = SaslAuthenticator::new(two);
        scram_login(&mut auth, &image, "alice", "secret").await;
        let img = || image.clone();
        assert!(matches!(
            auth.on_frame(handshake("SCRAM-SHA-256", 1), img).await,
            SaslAction::Respond(_)
        ));
        let SaslAction::Close {
            response: Some(r), ..
        } = auth.on_frame(authenticate(b"n,,n=alice,r=x", 1), img).await
        else {
            panic!("refused")
        };
        let answer: SaslAuthenticateResponse = response(&r, ApiKey::SaslAuthenticate, 1);
        assert_eq!(
            answer.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        assert!(answer
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("re-authentication of mechanism 'SCRAM-SHA-512'")));

        // Once the user is deleted, the next re-authentication fails.
        let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::ScramSha512], 60_000));
        scram_login(&mut auth, &image, "alice", "secret").await;
        let empty = Arc::new(MetadataImage::default());
        assert!(matches!(
            scram_login(&mut auth, &empty, "alice", "secret").await,
            SaslAction::Close {
                response: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn an_expired_session_closes_at_the_next_request() {
        let image = alice();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(async {
            let img = || image.clone();
            let mut auth = SaslAuthenticator::new(settings(&[SaslMechanism::ScramSha512], 50));
            scram_login(&mut auth, &image, "alice", "secret").await;
            assert!(matches!(
                auth.on_frame(frame(&MetadataRequest::default(), 12, 0), img)
                    .await,
                SaslAction::Dispatch(_)
            ));
            std::thread::sleep(Duration::from_millis(60));
            let SaslAction::Close { reason, .. } = auth
                .on_frame(frame(&MetadataRequest::default(), 12, 0), img)
                .await
            else {
                panic!("closed")
            };
            assert!(reason.contains("expired"), "{reason}");
        });
    }

    #[tokio::test]
    async fn random_frames_never_panic() {
        let image = alice();
        let img = || image.clone();
        let mut rng = crate::log::batch::test_support::XorShift(0x51ca_77e1_0b0e_5eed);
        let seeds = [
            handshake("SCRAM-SHA-512", 1),
            authenticate(b"n,,n=alice,r=x", 2),
            handshake("PLAIN", 0),
        ];
        for round in 0..3_000 {
            let mut auth = SaslAuthenticator::new(settings(&SaslMechanism::ALL, 1000));
            for step in 0..3 {
                let mut bytes = seeds[(round + step) % seeds.len()].to_vec();
                for _ in 0..rng.next() % 6 {
                    let at = (rng.next() % bytes.len() as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
                bytes.truncate((rng.next() % (bytes.len() as u64 + 1)) as usize + 4);
                let _ = auth.on_frame(Bytes::from(bytes), img).await;
            }
        }
    }
}
