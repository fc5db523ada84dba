//! The connector against a small in-test broker: a TLS server with rcgen certificates (optionally
//! requiring client certificates) and a scripted SASL peer that answers ApiVersions, SaslHandshake and
//! SaslAuthenticate as a Kafka broker does (PLAIN, and SCRAM checked against stored keys derived with
//! `chronik_metadata::scram`). After authentication the peer answers ApiVersions, so each test also
//! shows the returned stream carries ordinary requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use chronik_metadata::scram::ScramMechanism;
use chronik_wire::sasl::SaslError;
use chronik_wire::scram::ScramError;
use chronik_wire::{
    decode_response, encode_request, read_frame, ClientConnector, ClientSecurity, ConnectError,
    Password, SaslMechanism, SaslSettings, SecurityConfigError, SecurityProtocol, TlsSettings,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const USER: &str = "alice";
const PASSWORD: &str = "alice-secret-pw";

/// A CA and a server and a client certificate it signed, as PEM files in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(ca_name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write");
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ),
            ("client", vec![]),
        ] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).expect("sign");
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).expect("write");
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())
                .expect("write");
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_config(&self, require_client_cert: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = load_certs(&self.path("server.pem"));
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).expect("key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(&self.path("ca.pem")) {
                roots.add(c).expect("root");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder.with_single_cert(chain, key).expect("server config")
    }
}

fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("certs")
}

/// How the scripted peer misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    None,
    /// Answers client-final with a signature that is not the server's.
    Signature,
    /// Answers client-first with a nonce that does not extend the client's.
    Nonce,
}

#[derive(Clone)]
struct Peer {
    tls: Option<Arc<rustls::ServerConfig>>,
    sasl: bool,
    mechanisms: Vec<&'static str>,
    tamper: Tamper,
}

impl Peer {
    fn plain() -> Peer {
        Peer {
            tls: None,
            sasl: false,
            mechanisms: vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
            tamper: Tamper::None,
        }
    }

    /// Serves one connection on a fresh port; returns the address.
    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let peer = self.clone();
                tokio::spawn(async move {
                    match &peer.tls {
                        None => {
                            let _ = peer.serve(socket).await;
                        }
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                            if let Ok(tls) = acceptor.accept(socket).await {
                                let _ = peer.serve(tls).await;
                            }
                        }
                    }
                });
            }
        });
        address
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) -> Option<()> {
        let mut authenticated = !self.sasl;
        let mut mechanism: Option<ScramMechanism> = None;
        let mut plain = false;
        let mut scram = ScramServer::default();
        loop {
            let mut frame = read_frame(&mut stream, 1 << 20).await.ok()??;
            let key = i16::from_be_bytes([frame[0], frame[1]]);
            let version = i16::from_be_bytes([frame[2], frame[3]]);
            let api = ApiKey::try_from(key).ok()?;
            let header =
                RequestHeader::decode(&mut frame, api.request_header_version(version)).ok()?;
            let mut out = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(header.correlation_id)
                .encode(&mut out, api.response_header_version(version))
                .ok()?;
            match api {
                ApiKey::ApiVersions => {
                    let _ = ApiVersionsRequest::decode(&mut frame, version).ok()?;
                    let offered = |key: ApiKey, min, max| {
                        ApiVersion::default()
                            .with_api_key(key as i16)
                            .with_min_version(min)
                            .with_max_version(max)
                    };
                    ApiVersionsResponse::default()
                        .with_api_keys(vec![
                            offered(ApiKey::ApiVersions, 0, 3),
                            offered(ApiKey::SaslHandshake, 0, 1),
                            offered(ApiKey::SaslAuthenticate, 0, 2),
                        ])
                        .encode(&mut out, version)
                        .ok()?;
                }
                ApiKey::SaslHandshake if !authenticated => {
                    let request = SaslHandshakeRequest::decode(&mut frame, version).ok()?;
                    let name = request.mechanism.to_string();
                    let enabled = self.mechanisms.contains(&name.as_str());
                    plain = name == "PLAIN";
                    mechanism = match name.as_str() {
                        "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
                        "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
                        _ => None,
                    };
                    SaslHandshakeResponse::default()
                        .with_error_code(if enabled { 0 } else { 33 })
                        .with_mechanisms(
                            self.mechanisms
                                .iter()
                                .map(|m| StrBytes::from_static_str(m))
                                .collect(),
                        )
                        .encode(&mut out, version)
                        .ok()?;
                }
                ApiKey::SaslAuthenticate if !authenticated => {
                    let request = SaslAuthenticateRequest::decode(&mut frame, version).ok()?;
                    let answer = if plain {
                        let expected = format!("\0{USER}\0{PASSWORD}");
                        (request.auth_bytes.as_ref() == expected.as_bytes())
                            .then(|| {
                                authenticated = true;
                                Bytes::new()
                            })
                            .ok_or("Authentication failed: Invalid username or password")
                    } else {
                        let m = mechanism?;
                        scram
                            .step(m, &request.auth_bytes, self.tamper)
                            .inspect(|_| {
                                authenticated = scram.done;
                            })
                    };
                    let response = match answer {
                        Ok(bytes) => SaslAuthenticateResponse::default().with_auth_bytes(bytes),
                        Err(message) => SaslAuthenticateResponse::default()
                            .with_error_code(58)
                            .with_error_message(Some(StrBytes::from_static_str(message))),
                    };
                    response.encode(&mut out, version).ok()?;
                }
                // Anything else before authentication: Kafka closes the connection.
                _ => return None,
            }
            let mut framed = BytesMut::new();
            framed.extend_from_slice(&(out.len() as i32).to_be_bytes());
            framed.extend_from_slice(&out);
            stream.write_all(&framed).await.ok()?;
            stream.flush().await.ok()?;
        }
    }
}

/// The server's half of SCRAM, as a broker checks it against stored keys.
#[derive(Default)]
struct ScramServer {
    client_first_bare: String,
    server_first: String,
    nonce: String,
    done: bool,
}

impl ScramServer {
    fn step(
        &mut self,
        mechanism: ScramMechanism,
        message: &[u8],
        tamper: Tamper,
    ) -> Result<Bytes, &'static str> {
        let salt = b"0123456789abcdef";
        let salted = mechanism.salted_password(PASSWORD.as_bytes(), salt, 4096);
        let (stored_key, server_key) = mechanism.derive_keys(&salted);
        let message = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
        if self.client_first_bare.is_empty() {
            let bare = message.strip_prefix("n,,").ok_or("bad gs2 header")?;
            let (user, nonce) = bare
                .strip_prefix("n=")
                .and_then(|rest| rest.split_once(",r="))
                .ok_or("bad client-first")?;
            if user != USER {
                return Err("Authentication failed during authentication due to invalid credentials with SASL mechanism");
            }
            self.nonce = if tamper == Tamper::Nonce {
                "someoneElse-server-nonce".to_owned()
            } else {
                format!("{nonce}server-nonce")
            };
            self.client_first_bare = bare.to_owned();
            self.server_first = format!("r={},s={},i=4096", self.nonce, BASE64.encode(salt));
            return Ok(Bytes::from(self.server_first.clone()));
        }
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or("no proof")?;
        if without_proof != format!("c=biws,r={}", self.nonce) {
            return Err("bad client-final");
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let proof = BASE64.decode(proof).map_err(|_| "proof not base64")?;
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let hashed = match mechanism {
            ScramMechanism::Sha256 => Sha256::digest(&client_key).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(&client_key).to_vec(),
        };
        if hashed != stored_key {
            return Err("Authentication failed during authentication due to invalid credentials with SASL mechanism");
        }
        self.done = true;
        let mut server_signature = mechanism.server_signature(&server_key, auth_message.as_bytes());
        if tamper == Tamper::Signature {
            server_signature[0] ^= 1;
        }
        Ok(Bytes::from(format!(
            "v={}",
            BASE64.encode(server_signature)
        )))
    }
}

fn sasl(mechanism: SaslMechanism, password: &str) -> Option<SaslSettings> {
    Some(SaslSettings {
        mechanism,
        username: USER.to_owned(),
        password: Password::new(password),
    })
}

fn tls(pki: &Pki, client_cert: bool) -> TlsSettings {
    TlsSettings {
        ca: Some(pki.path("ca.pem")),
        certificate: client_cert.then(|| pki.path("client.pem")),
        key: client_cert.then(|| pki.path("client.key")),
        server_name: None,
    }
}

/// Connects and sends one ApiVersions on the secured stream.
async fn connect_and_ask(security: ClientSecurity, address: &str) -> Result<(), ConnectError> {
    let connector = ClientConnector::new(&security, "test").expect("valid settings");
    let mut stream = connector.connect(address).await?;
    let mut frame = BytesMut::new();
    encode_request(&mut frame, &ApiVersionsRequest::default(), 3, 99, "test").expect("encode");
    stream.write_all(&frame).await.expect("write");
    stream.flush().await.expect("flush");
    let answer = read_frame(&mut stream, 1 << 20)
        .await
        .expect("read")
        .expect("an answer");
    let response = decode_response::<ApiVersionsRequest>(answer, 3, 99).expect("decode");
    assert!(!response.api_keys.is_empty());
    assert_eq!(stream.is_tls(), security.protocol.uses_tls());
    Ok(())
}

#[tokio::test]
async fn tls_verifies_the_broker_against_the_ca() {
    let pki = Pki::new("test CA");
    let peer = Peer {
        tls: Some(Arc::new(pki.server_config(false))),
        ..Peer::plain()
    };
    let address = peer.start().await;
    let security = ClientSecurity {
        protocol: SecurityProtocol::Ssl,
        tls: tls(&pki, false),
        sasl: None,
    };
    connect_and_ask(security.clone(), &address)
        .await
        .expect("TLS");
    // By name too: the certificate carries localhost.
    let port = address.rsplit_once(':').unwrap().1;
    connect_and_ask(security, &format!("localhost:{port}"))
        .await
        .expect("TLS by name");

    // Another CA's bundle does not trust the broker.
    let other = Pki::new("other CA");
    let untrusted = ClientSecurity {
        protocol: SecurityProtocol::Ssl,
        tls: tls(&other, false),
        sasl: None,
    };
    let error = connect_and_ask(untrusted, &address)
        .await
        .expect_err("untrusted");
    assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("TLS handshake with"), "{error}");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new("test CA");
    let peer = Peer {
        tls: Some(Arc::new(pki.server_config(true))),
        ..Peer::plain()
    };
    let address = peer.start().await;
    let with_cert = ClientSecurity {
        protocol: SecurityProtocol::Ssl,
        tls: tls(&pki, true),
        sasl: None,
    };
    connect_and_ask(with_cert, &address).await.expect("mTLS");
    // Without a certificate the server ends the handshake (TLS 1.3 reports it on the first read, so
    // either the handshake or the exchange fails; here the exchange is the SASL-free ApiVersions).
    let without = ClientSecurity {
        protocol: SecurityProtocol::Ssl,
        tls: tls(&pki, false),
        sasl: None,
    };
    let connector = ClientConnector::new(&without, "test").expect("settings");
    let refused = async {
        let mut stream = connector.connect(&address).await.ok()?;
        let mut frame = BytesMut::new();
        encode_request(&mut frame, &ApiVersionsRequest::default(), 3, 1, "t").ok()?;
        stream.write_all(&frame).await.ok()?;
        stream.flush().await.ok()?;
        read_frame(&mut stream, 1 << 20).await.ok()?
    }
    .await;
    assert!(
        refused.is_none(),
        "a client without a certificate was served"
    );
}

#[tokio::test]
async fn scram_over_tls_authenticates_and_checks_the_server() {
    let pki = Pki::new("test CA");
    let peer = Peer {
        tls: Some(Arc::new(pki.server_config(false))),
        sasl: true,
        ..Peer::plain()
    };
    let address = peer.clone().start().await;
    for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        let security = ClientSecurity {
            protocol: SecurityProtocol::SaslSsl,
            tls: tls(&pki, false),
            sasl: sasl(mechanism, PASSWORD),
        };
        connect_and_ask(security, &address)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
    }

    let wrong = ClientSecurity {
        protocol: SecurityProtocol::SaslSsl,
        tls: tls(&pki, false),
        sasl: sasl(SaslMechanism::ScramSha512, "not-the-password"),
    };
    let error = connect_and_ask(wrong, &address)
        .await
        .expect_err("wrong password");
    let text = error.to_string();
    assert!(
        matches!(
            &error,
            ConnectError::Sasl {
                source: SaslError::AuthenticationFailed(_),
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("SASL authentication failed: Authentication failed"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password") && !format!("{error:?}").contains("not-the-password")
    );

    for (tamper, expected) in [
        (Tamper::Signature, ScramError::BadServerSignature),
        (Tamper::Nonce, ScramError::NonceMismatch),
    ] {
        let address = Peer {
            tamper,
            ..peer.clone()
        }
        .start()
        .await;
        let security = ClientSecurity {
            protocol: SecurityProtocol::SaslSsl,
            tls: tls(&pki, false),
            sasl: sasl(SaslMechanism::ScramSha256, PASSWORD),
        };
        match connect_and_ask(security, &address).await {
            Err(ConnectError::Sasl {
                source: SaslError::Scram(error),
                ..
            }) => assert_eq!(error, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn plain_over_plaintext_and_mechanisms_the_broker_lacks() {
    let peer = Peer {
        sasl: true,
        mechanisms: vec!["PLAIN", "SCRAM-SHA-512"],
        ..Peer::plain()
    };
    let address = peer.start().await;
    let plain = ClientSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        tls: TlsSettings::default(),
        sasl: sasl(SaslMechanism::Plain, PASSWORD),
    };
    connect_and_ask(plain, &address).await.expect("PLAIN");

    let bad = ClientSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        tls: TlsSettings::default(),
        sasl: sasl(SaslMechanism::Plain, "nope"),
    };
    let error = connect_and_ask(bad, &address).await.expect_err("refused");
    assert!(
        error.to_string().ends_with(
            "SASL authentication failed: Authentication failed: Invalid username or password"
        ),
        "{error}"
    );

    let sha256 = ClientSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        tls: TlsSettings::default(),
        sasl: sasl(SaslMechanism::ScramSha256, PASSWORD),
    };
    let error = connect_and_ask(sha256, &address)
        .await
        .expect_err("not enabled");
    assert!(
        error.to_string().contains(
            "does not enable SASL mechanism SCRAM-SHA-256 (enabled: PLAIN, SCRAM-SHA-512)"
        ),
        "{error}"
    );
}

#[test]
fn settings_are_checked_when_the_connector_is_built() {
    let no_ca = ClientSecurity {
        protocol: SecurityProtocol::SaslSsl,
        tls: TlsSettings::default(),
        sasl: sasl(SaslMechanism::Plain, PASSWORD),
    };
    assert!(matches!(
        ClientConnector::new(&no_ca, "t"),
        Err(SecurityConfigError::NoCa { .. })
    ));
    let no_credentials = ClientSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        ..ClientSecurity::default()
    };
    assert!(matches!(
        ClientConnector::new(&no_credentials, "t"),
        Err(SecurityConfigError::NoSaslCredentials { .. })
    ));
    let missing_file = ClientSecurity {
        protocol: SecurityProtocol::Ssl,
        tls: TlsSettings {
            ca: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsSettings::default()
        },
        sasl: None,
    };
    let error = ClientConnector::new(&missing_file, "t").expect_err("no file");
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    let pki = Pki::new("CA");
    let half = ClientSecurity {
        protocol: SecurityProtocol::Ssl,
        tls: TlsSettings {
            certificate: Some(pki.path("client.pem")),
            ..tls(&pki, false)
        },
        sasl: None,
    };
    assert!(matches!(
        ClientConnector::new(&half, "t"),
        Err(SecurityConfigError::HalfClientCertificate)
    ));
    assert!(!format!("{:?}", sasl(SaslMechanism::Plain, PASSWORD)).contains(PASSWORD));
    assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
    assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
    assert!("GSSAPI".parse::<SaslMechanism>().is_err());
}
