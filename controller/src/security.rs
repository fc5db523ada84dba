//! The control plane's security settings, loaded once at start from `SecurityArgs`: the TLS
//! configuration of the gRPC and HTTP listeners, the `Authenticator` that checks every caller, and
//! the credentials this controller presents to the other controllers. The design is in
//! docs/security.md, "Control plane".

use std::path::Path;
use std::sync::Arc;

use chronik_control_auth::{read_pem, ClientCredentials, ClientFiles, CredentialError, Token};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{info, warn};

use crate::api::auth::Authenticator;
use crate::config::{ClientAuth, SecurityArgs};
use crate::error::NodeError;

/// Everything the listeners and the Raft network need to be secure.
pub struct Security {
    pub authenticator: Arc<Authenticator>,
    /// TLS of the gRPC listener.
    pub grpc_tls: Option<ServerTlsConfig>,
    /// TLS of the HTTP listener. It asks for client certificates but never requires one, so health
    /// checks work without; the protected routes then want a token.
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    /// What this controller presents to the other controllers: the CA, its certificate, the cluster
    /// token.
    pub peers: ClientCredentials,
}

fn config_error(e: CredentialError) -> NodeError {
    NodeError::Config(e.to_string())
}

impl Security {
    /// Loads every file the flags name; any unreadable or invalid one stops the start.
    pub fn load(args: &SecurityArgs) -> Result<Security, NodeError> {
        args.validate().map_err(NodeError::Config)?;
        let admin = args
            .admin_token_file
            .as_deref()
            .map(|p| Token::from_file("--admin-token-file", p))
            .transpose()
            .map_err(config_error)?;
        let cluster = args
            .cluster_token_file
            .as_deref()
            .map(|p| Token::from_file("--cluster-token-file", p))
            .transpose()
            .map_err(config_error)?;
        if let (Some(admin), Some(cluster)) = (&admin, &cluster) {
            if admin == cluster {
                return Err(NodeError::Config(
                    "the admin and cluster tokens are the same; they grant different things".into(),
                ));
            }
        }
        let certificates = args.tls_client_auth != ClientAuth::None;
        let authenticator = Arc::new(Authenticator::new(admin, cluster, certificates));

        let (grpc_tls, http_tls) = match (&args.tls_certificate, &args.tls_key, &args.tls_ca) {
            (Some(certificate), Some(key), Some(ca)) => {
                let certificate_pem =
                    read_pem("--tls-certificate", certificate).map_err(config_error)?;
                let key_pem = read_pem("--tls-key", key).map_err(config_error)?;
                let ca_pem = read_pem("--tls-ca", ca).map_err(config_error)?;
                let mut grpc = ServerTlsConfig::new()
                    .identity(Identity::from_pem(&certificate_pem, &key_pem))
                    .timeout(std::time::Duration::from_secs(10));
                if certificates {
                    grpc = grpc
                        .client_ca_root(Certificate::from_pem(&ca_pem))
                        .client_auth_optional(args.tls_client_auth == ClientAuth::Requested);
                }
                let http = http_tls_config(
                    (certificate, &certificate_pem),
                    (key, &key_pem),
                    (ca, &ca_pem),
                    certificates,
                )?;
                (Some(grpc), Some(Arc::new(http)))
            }
            _ => (None, None),
        };
        let peers = ClientCredentials::load(
            &ClientFiles {
                ca: args.tls_ca.clone(),
                certificate: args.tls_certificate.clone(),
                key: args.tls_key.clone(),
                token: args.cluster_token_file.clone(),
            },
            "--cluster-token-file",
        )
        .map_err(config_error)?;
        let security = Security {
            authenticator,
            grpc_tls,
            http_tls,
            peers,
        };
        security.log_posture(args);
        Ok(security)
    }

    /// One line at start saying how the control plane is protected, and a warning when it is not.
    fn log_posture(&self, args: &SecurityArgs) {
        let tls = self.grpc_tls.is_some();
        let auth = self.authenticator.enabled();
        if !tls && !auth {
            warn!(
                "the control plane is plaintext and unauthenticated: anyone who reaches this \
                controller's gRPC or HTTP port can change the cluster (see docs/security.md, \
                \"Control plane\")"
            );
            return;
        }
        if !auth {
            warn!(
                "the control plane is unauthenticated: TLS is on, but any caller may change the \
                cluster; set --admin-token-file and --cluster-token-file, or --tls-client-auth"
            );
        }
        if auth && !tls {
            warn!(
                "tokens are sent in plaintext: without --tls-certificate anyone on the network \
                path can read them"
            );
        }
        info!(
            tls,
            client_auth = ?args.tls_client_auth,
            admin_token = args.admin_token_file.is_some(),
            cluster_token = args.cluster_token_file.is_some(),
            "control plane security"
        );
    }
}

/// The rustls configuration of the HTTP listener (the gRPC one is tonic's).
fn http_tls_config(
    certificate: (&Path, &[u8]),
    key: (&Path, &[u8]),
    ca: (&Path, &[u8]),
    certificates: bool,
) -> Result<rustls::ServerConfig, NodeError> {
    let invalid = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        NodeError::Config(format!("{what} {} is not usable: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate.1)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("--tls-certificate", certificate.0, &e))?;
    let private_key =
        PrivateKeyDer::from_pem_slice(key.1).map_err(|e| invalid("--tls-key", key.0, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NodeError::Config(format!("TLS: {e}")))?;
    let builder = if certificates {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.1) {
            let cert = cert.map_err(|e| invalid("--tls-ca", ca.0, &e))?;
            roots.add(cert).map_err(|e| invalid("--tls-ca", ca.0, &e))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| invalid("--tls-ca", ca.0, &e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|e| invalid("--tls-certificate", certificate.0, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
