//! Who may call the controller: every gRPC request and every protected HTTP route passes
//! `Authenticator::check` before anything else looks at it. The rules (docs/security.md, "Control
//! plane"):
//!
//! - A token in `authorization: Bearer <token>` is the cluster token (brokers, controllers) or the
//!   admin token (chronikctl, operators); any other token is refused, even alongside a certificate.
//! - Without a token, a client certificate verified against `--tls-ca` (`--tls-client-auth
//!   requested|required`) authenticates the caller for everything.
//! - The cluster token and certificates may call every service; the admin token may call
//!   `AdminService` and the HTTP API, not `RaftService` or `BrokerService`.
//! - With no security flag at all, everyone may call everything (today's open control plane).
//!
//! What must stay true: a token is compared in constant time (`Token::matches`) and never logged; a
//! refusal names what was missing or wrong and what to pass, never the token presented.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_control_auth::{Token, AUTHORIZATION};
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tracing::warn;

/// What a caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Raft,
    Broker,
    Admin,
    /// The protected HTTP routes (`/api/v1/cluster`).
    Http,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Raft => "RaftService",
            Api::Broker => "BrokerService",
            Api::Admin => "AdminService",
            Api::Http => "the HTTP API",
        }
    }
}

/// Who the caller was found to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Security is off: anyone.
    Anyone,
    /// A client certificate verified against the CA.
    Certificate,
    /// The cluster token.
    Cluster,
    /// The admin token.
    Admin,
}

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token and no verified client certificate.
    Missing,
    /// An `authorization` value that is not `Bearer <token>`.
    Malformed,
    /// A token that is neither the admin nor the cluster token.
    WrongToken,
    /// The admin token on a service only brokers and controllers may call.
    NotPermitted(Api),
}

impl Refusal {
    /// The message the caller gets; it never contains the token presented.
    pub fn message(self) -> String {
        match self {
            Refusal::Missing => "this controller requires credentials: a client certificate \
                signed by its CA, or an `authorization: Bearer` token (chronikctl: \
                --admin-token-file; brokers: --controller-token-file)"
                .into(),
            Refusal::Malformed => "the authorization metadata is not `Bearer <token>`".into(),
            Refusal::WrongToken => "the bearer token is neither this controller's admin token \
                nor its cluster token"
                .into(),
            Refusal::NotPermitted(api) => format!(
                "the admin token does not grant {}; brokers and controllers use the cluster token",
                api.name()
            ),
        }
    }

    /// The gRPC status: UNAUTHENTICATED, or PERMISSION_DENIED for a known caller in the wrong place.
    pub fn status(self) -> Status {
        match self {
            Refusal::NotPermitted(_) => Status::permission_denied(self.message()),
            _ => Status::unauthenticated(self.message()),
        }
    }
}

/// The controller's credentials check, shared by the gRPC services and the HTTP router.
#[derive(Debug, Default)]
pub struct Authenticator {
    admin: Option<Token>,
    cluster: Option<Token>,
    /// Verified client certificates authenticate (`--tls-client-auth requested|required`).
    certificates: bool,
    /// When the last refusal was logged: refusals are logged at most once per interval, so a
    /// misconfigured broker retrying does not flood the log.
    last_logged: Mutex<Option<Instant>>,
}

const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Authenticator {
    /// Everyone may call everything.
    pub fn open() -> Authenticator {
        Authenticator::default()
    }

    pub fn new(admin: Option<Token>, cluster: Option<Token>, certificates: bool) -> Authenticator {
        Authenticator {
            admin,
            cluster,
            certificates,
            last_logged: Mutex::new(None),
        }
    }

    /// Whether callers must authenticate at all.
    pub fn enabled(&self) -> bool {
        self.admin.is_some() || self.cluster.is_some() || self.certificates
    }

    /// Decides one call: `authorization` is the raw header value, `verified_certificate` whether the
    /// TLS handshake verified a client certificate.
    pub fn check(
        &self,
        api: Api,
        authorization: Option<&[u8]>,
        verified_certificate: bool,
    ) -> Result<Caller, Refusal> {
        if !self.enabled() {
            return Ok(Caller::Anyone);
        }
        let caller = match authorization {
            Some(value) => {
                let token = bearer(value).ok_or(Refusal::Malformed)?;
                if self.cluster.as_ref().is_some_and(|t| t.matches(token)) {
                    Caller::Cluster
                } else if self.admin.as_ref().is_some_and(|t| t.matches(token)) {
                    Caller::Admin
                } else {
                    return Err(Refusal::WrongToken);
                }
            }
            None if verified_certificate && self.certificates => Caller::Certificate,
            None => return Err(Refusal::Missing),
        };
        match (caller, api) {
            (Caller::Admin, Api::Raft | Api::Broker) => Err(Refusal::NotPermitted(api)),
            _ => Ok(caller),
        }
    }

    /// Logs a refusal (at most once per interval): the API, the peer and the reason, never a token.
    pub fn log_refusal(&self, api: Api, peer: Option<SocketAddr>, refusal: Refusal) {
        let now = Instant::now();
        {
            let mut last = self.last_logged.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        warn!(api = api.name(), %peer, reason = ?refusal,
            "refused a caller without valid credentials (further refusals within 10 s are not logged)");
    }
}

/// The token of a `Bearer <token>` header value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
        .filter(|token| !token.is_empty())
}

/// The interceptor in front of one gRPC service.
#[derive(Clone, Debug)]
pub struct GrpcGuard {
    auth: Arc<Authenticator>,
    api: Api,
}

impl GrpcGuard {
    pub fn new(auth: Arc<Authenticator>, api: Api) -> GrpcGuard {
        GrpcGuard { auth, api }
    }
}

impl Interceptor for GrpcGuard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let verified_certificate = request.peer_certs().is_some_and(|c| !c.is_empty());
        let authorization = request.metadata().get(AUTHORIZATION).map(|v| v.as_bytes());
        match self
            .auth
            .check(self.api, authorization, verified_certificate)
        {
            Ok(_) => {
                // Nothing past this point needs the token; drop it so no handler can log it.
                request.metadata_mut().remove(AUTHORIZATION);
                Ok(request)
            }
            Err(refusal) => {
                self.auth
                    .log_refusal(self.api, request.remote_addr(), refusal);
                Err(refusal.status())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> Token {
        Token::new(text).unwrap()
    }

    fn secured(certificates: bool) -> Authenticator {
        Authenticator::new(
            Some(token("admin-token-0123456789")),
            Some(token("cluster-token-0123456789")),
            certificates,
        )
    }

    #[test]
    fn without_security_everyone_may_call_everything() {
        let open = Authenticator::open();
        assert!(!open.enabled());
        for api in [Api::Raft, Api::Broker, Api::Admin, Api::Http] {
            assert_eq!(open.check(api, None, false), Ok(Caller::Anyone));
        }
    }

    #[test]
    fn the_cluster_token_calls_everything_and_the_admin_token_only_admin_apis() {
        let auth = secured(false);
        let cluster = Some(&b"Bearer cluster-token-0123456789"[..]);
        let admin = Some(&b"bearer admin-token-0123456789"[..]);
        for api in [Api::Raft, Api::Broker, Api::Admin, Api::Http] {
            assert_eq!(auth.check(api, cluster, false), Ok(Caller::Cluster));
        }
        assert_eq!(auth.check(Api::Admin, admin, false), Ok(Caller::Admin));
        assert_eq!(auth.check(Api::Http, admin, false), Ok(Caller::Admin));
        assert_eq!(
            auth.check(Api::Raft, admin, false),
            Err(Refusal::NotPermitted(Api::Raft))
        );
        assert_eq!(
            auth.check(Api::Broker, admin, false)
                .unwrap_err()
                .status()
                .code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn missing_wrong_and_malformed_credentials_are_refused() {
        let auth = secured(false);
        assert_eq!(auth.check(Api::Admin, None, false), Err(Refusal::Missing));
        assert_eq!(
            auth.check(Api::Admin, None, true),
            Err(Refusal::Missing),
            "a certificate counts only with --tls-client-auth"
        );
        assert_eq!(
            auth.check(Api::Admin, Some(b"Bearer admin-token-0123456780"), false),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            auth.check(Api::Admin, Some(b"Basic YWRtaW4="), false),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            auth.check(Api::Admin, Some(b"Bearer "), false),
            Err(Refusal::Malformed)
        );
        let status = Refusal::WrongToken.status();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(!status.message().contains("0123456780"));
    }

    #[test]
    fn a_verified_certificate_authenticates_but_a_wrong_token_beside_it_does_not() {
        let auth = secured(true);
        assert_eq!(auth.check(Api::Raft, None, true), Ok(Caller::Certificate));
        assert_eq!(
            auth.check(Api::Raft, Some(b"Bearer nope-nope-nope-nope"), true),
            Err(Refusal::WrongToken)
        );
        let certificates_only = Authenticator::new(None, None, true);
        assert!(certificates_only.enabled());
        assert_eq!(
            certificates_only.check(Api::Admin, None, false),
            Err(Refusal::Missing)
        );
    }
}
