//! What a caller of the controllers presents: TLS (a CA bundle to verify the controllers, and a client
//! certificate for mTLS) and a bearer token, loaded once from files and applied to every channel.

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::{read_pem, CredentialError, Token, AUTHORIZATION};

/// The files a caller's credentials come from; every one is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// CA bundle (PEM) that signed the controllers' certificates; turns TLS on.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; needs `key`.
    pub certificate: Option<PathBuf>,
    /// Private key (PEM) of `certificate`.
    pub key: Option<PathBuf>,
    /// A file holding the bearer token.
    pub token: Option<PathBuf>,
}

/// A channel to a controller that sends the caller's token with every request.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer <token>` (marked sensitive, so never printed) to every request.
#[derive(Clone, Debug, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// Loaded client credentials. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ClientCredentials {
    tls: Option<ClientTls>,
    token: Option<Token>,
}

#[derive(Clone)]
struct ClientTls {
    ca_pem: Vec<u8>,
    /// Certificate chain and key, for mTLS.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    // The key stays out of every Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Plaintext, no token: today's open control plane.
    pub fn none() -> ClientCredentials {
        ClientCredentials::default()
    }

    /// Loads `files`; `token_what` names the token file in errors (e.g. "--admin-token-file").
    pub fn load(
        files: &ClientFiles,
        token_what: &'static str,
    ) -> Result<ClientCredentials, CredentialError> {
        let identity = match (&files.certificate, &files.key) {
            (Some(certificate), Some(key)) => Some((
                read_pem("client certificate", certificate)?,
                read_pem("client key", key)?,
            )),
            (None, None) => None,
            _ => {
                return Err(CredentialError::Config(
                    "a client certificate and its key go together".into(),
                ))
            }
        };
        let tls = match &files.ca {
            Some(ca) => Some(ClientTls {
                ca_pem: read_pem("CA bundle", ca)?,
                identity,
            }),
            None if identity.is_some() => {
                return Err(CredentialError::Config(
                    "a client certificate needs the CA bundle that verifies the controllers".into(),
                ))
            }
            None => None,
        };
        let token = files
            .token
            .as_deref()
            .map(|path| Token::from_file(token_what, path))
            .transpose()?;
        Ok(ClientCredentials { tls, token })
    }

    /// Whether the controllers are reached over TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a client certificate is presented.
    pub fn has_certificate(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.identity.is_some())
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.uses_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// The CA bundle (PEM), with TLS.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.tls.as_ref().map(|t| t.ca_pem.as_slice())
    }

    /// The client certificate chain and key (PEM), for mTLS.
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.tls
            .as_ref()
            .and_then(|t| t.identity.as_ref())
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
    }

    /// The `authorization` header value, when a token is sent.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(Token::header_value)
    }

    /// An endpoint for `host:port` (or a full URI), with TLS when configured. The controller's
    /// certificate must name the host (DNS name or IP address) the caller dials.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, tonic::transport::Error> {
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("{}://{address}", self.scheme())
        };
        let endpoint = Endpoint::from_shared(uri)?;
        match &self.tls {
            None => Ok(endpoint),
            Some(tls) => {
                let mut config =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
                if let Some((certificate, key)) = &tls.identity {
                    config = config.identity(Identity::from_pem(certificate, key));
                }
                endpoint.tls_config(config)
            }
        }
    }

    /// The interceptor that adds the token (if any) to every request on a channel.
    pub fn bearer(&self) -> BearerToken {
        BearerToken(self.token.as_ref().and_then(|token| {
            let mut value: MetadataValue<Ascii> = token.header_value().parse().ok()?;
            value.set_sensitive(true);
            Some(value)
        }))
    }

    /// `channel` with the token added to every request.
    pub fn authorize(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.bearer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_is_sensitive_and_debug_hides_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abcdefghijklmnop-very-secret\n").unwrap();
        let files = ClientFiles {
            token: Some(path),
            ..ClientFiles::default()
        };
        let credentials = ClientCredentials::load(&files, "--admin-token-file").unwrap();
        assert!(!format!("{credentials:?}").contains("very-secret"));
        let mut bearer = credentials.bearer();
        assert!(!format!("{bearer:?}").contains("very-secret"));
        let request = bearer.call(Request::new(())).unwrap();
        let value = request.metadata().get(AUTHORIZATION).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(
            value.to_str().unwrap(),
            "Bearer abcdefghijklmnop-very-secret"
        );
        assert_eq!(credentials.scheme(), "http");
    }

    #[test]
    fn half_a_client_identity_is_refused() {
        let files = ClientFiles {
            certificate: Some("/nonexistent/cert.pem".into()),
            ..ClientFiles::default()
        };
        let error = ClientCredentials::load(&files, "token").unwrap_err();
        assert!(error.to_string().contains("go together"), "{error}");
    }
}
