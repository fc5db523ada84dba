//! TLS of the SSL and SASL_SSL listeners, with rustls (ring provider, TLS 1.2 and 1.3): the server
//! certificate chain and key from PEM files (`--ssl-certificate`, `--ssl-key`), and for
//! `--ssl-client-auth requested|required` (Kafka's `ssl.client.auth`) client certificates checked
//! against the CA bundle of `--ssl-ca`.
//!
//! Certificates are reloaded without a restart: before accepting a connection the files' modification
//! times are looked at (at most once a second), and when one changed the whole server configuration
//! is built again; connections already open keep the configuration they were accepted with. A reload
//! that fails (a half-written file) is logged and the previous configuration stays in use.
//!
//! What must stay true: keys are never logged; a configuration that cannot be built at start is a
//! startup error naming the file, never a listener that accepts and fails every handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::ClientAuth;

/// The TLS flags, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// How often the files' modification times are looked at, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The TLS acceptor of a listener, rebuilt when its files change.
pub struct ServerTls {
    settings: TlsSettings,
    check_interval: Duration,
    state: Mutex<Loaded>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    modified: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl ServerTls {
    /// Reads the files and builds the configuration; an error names the file and what is wrong.
    pub fn new(settings: TlsSettings) -> Result<Self, String> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&settings)?));
        let modified = modification_times(&settings);
        Ok(ServerTls {
            settings,
            check_interval: RELOAD_CHECK_INTERVAL,
            state: Mutex::new(Loaded {
                acceptor,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.settings.client_auth
    }

    /// The acceptor for the next connection, rebuilt first if a file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= self.check_interval {
            state.checked = Instant::now();
            let modified = modification_times(&self.settings);
            if modified != state.modified {
                state.modified = modified;
                match server_config(&self.settings) {
                    Ok(config) => {
                        state.acceptor = TlsAcceptor::from(Arc::new(config));
                        info!(
                            certificate = %self.settings.certificate.display(),
                            "reloaded the TLS certificates of the Kafka listeners"
                        );
                    }
                    Err(e) => warn!(
                        "TLS files changed but cannot be loaded, keeping the previous ones: {e}"
                    ),
                }
            }
        }
        state.acceptor.clone()
    }
}

fn modification_times(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    [
        Some(&settings.certificate),
        Some(&settings.key),
        settings.ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The rustls configuration the settings describe.
pub fn server_config(settings: &TlsSettings) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&settings.certificate, "--ssl-certificate")?;
    let key_pem = read(&settings.key, "--ssl-key")?;
    // PKCS#8, PKCS#1 (RSA) and SEC1 (EC) keys alike.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "--ssl-key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            settings.key.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Requested | ClientAuth::Required => {
            let ca = settings
                .ca
                .as_ref()
                .ok_or_else(|| "--ssl-client-auth requested|required needs --ssl-ca".to_owned())?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "--ssl-ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ssl-ca {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("--ssl-ca {}: {e}", ca.display()))?,
            )
        }
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "--ssl-certificate {} and --ssl-key {}: {e}",
            settings.certificate.display(),
            settings.key.display()
        )
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    /// A CA, a server certificate for 127.0.0.1/localhost signed by it, and a client certificate
    /// with the given common name, written as PEM files into `dir`.
    pub struct TestPki {
        pub ca: PathBuf,
        pub certificate: PathBuf,
        pub key: PathBuf,
    }

    pub fn pki(dir: &Path) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let ca_issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().expect("key");
        let server_params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("params");
        let server = server_params
            .signed_by(&server_key, &ca_issuer)
            .expect("server");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write");
            path
        };
        TestPki {
            ca: write("ca.pem", ca_cert.pem()),
            certificate: write("server.pem", server.pem()),
            key: write("server.key", server_key.serialize_pem()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::pki;
    use super::*;

    /// A TLS handshake over an in-memory pipe: a client trusting `ca` against `tls`'s acceptor.
    async fn handshake(tls: &ServerTls, ca: &Path) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca, "ca")? {
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tls.acceptor();
        let name =
            rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let (client, server) = tokio::join!(
            connector.connect(name, client_io),
            acceptor.accept(server_io)
        );
        client.map_err(|e| e.to_string())?;
        server.map_err(|e| e.to_string())?;
        Ok(())
    }

    fn touch_later(path: &Path, seconds: u64) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(SystemTime::now() + Duration::from_secs(seconds)))
            .expect("set mtime");
    }

    #[tokio::test]
    async fn changed_files_are_loaded_for_new_connections_and_bad_ones_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let first = pki(dir.path());
        let old_ca = dir.path().join("old-ca.pem");
        std::fs::copy(&first.ca, &old_ca).expect("copy");
        let mut tls = ServerTls::new(TlsSettings {
            certificate: first.certificate.clone(),
            key: first.key.clone(),
            ca: None,
            client_auth: ClientAuth::None,
        })
        .expect("loads");
        tls.check_interval = Duration::ZERO;
        handshake(&tls, &old_ca)
            .await
            .expect("the first certificate");

        // A new CA and server certificate in place of the old files.
        let second = pki(dir.path());
        touch_later(&second.certificate, 10);
        touch_later(&second.key, 10);
        handshake(&tls, &second.ca)
            .await
            .expect("the new certificate is served");
        assert!(
            handshake(&tls, &old_ca).await.is_err(),
            "the old one is not"
        );

        // A half-written key is not loaded: the previous configuration stays.
        std::fs::write(&second.key, "-----BEGIN PRIVATE KEY-----\ntrunc").expect("write");
        touch_later(&second.key, 20);
        handshake(&tls, &second.ca)
            .await
            .expect("still the previous configuration");
    }

    #[test]
    fn a_configuration_builds_from_pem_files_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = pki(dir.path());
        let mut settings = TlsSettings {
            certificate: pki.certificate.clone(),
            key: pki.key.clone(),
            ca: Some(pki.ca.clone()),
            client_auth: ClientAuth::Required,
        };
        server_config(&settings).expect("builds");
        settings.client_auth = ClientAuth::Requested;
        server_config(&settings).expect("builds");

        let missing = TlsSettings {
            key: dir.path().join("nope.key"),
            ..settings.clone()
        };
        let error = server_config(&missing).expect_err("missing key");
        assert!(
            error.contains("--ssl-key") && error.contains("nope.key"),
            "{error}"
        );
        let swapped = TlsSettings {
            key: pki.certificate.clone(),
            ..settings.clone()
        };
        assert!(server_config(&swapped)
            .expect_err("a cert is no key")
            .contains("--ssl-key"));
        let no_ca = TlsSettings {
            ca: None,
            ..settings
        };
        assert!(server_config(&no_ca)
            .expect_err("no CA")
            .contains("--ssl-ca"));
    }
}
