//! `chronikctl secrets generate`: every credential a secured cluster of separate hosts (the compose
//! stack's `docker-compose.secure.yml`) needs, generated into one directory: a CA, a certificate per
//! controller and per broker, the controllers' admin and cluster tokens, and the passwords of the SCRAM
//! users `admin` (the clients' super user) and `broker` (the brokers' inter-broker user).
//!
//! Node `controller-N` / `broker-N` gets `controller-N.pem` / `.key` with the subject `CN=controller-N`
//! and the names `controller-N`, `localhost`, `127.0.0.1` plus any `--san`, for server and client use,
//! so it verifies under its service name inside a compose network and on the host's published ports.
//!
//! What must stay true: generation only adds what is missing (a second run keeps every file, so a
//! restarted stack keeps its CA, tokens and passwords); keys, tokens and passwords are written readable
//! by their owner only; the CA key is kept next to the CA so later nodes can be added, and a CA
//! certificate without its key (or the reverse) is refused rather than replaced.

use std::path::Path;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use serde::Serialize;

use crate::error::CliError;
use crate::local_control_plane::{ca_params, new_token, write_secret};
use crate::local_security::{ADMIN_USER, BROKER_USER};

/// The common name of the CA.
const CA_NAME: &str = "Chronik cluster CA";

/// What `secrets generate` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretsReport {
    pub dir: String,
    /// Files written by this run, in the order written.
    pub created: Vec<String>,
    /// Files that were there already and were kept.
    pub kept: Vec<String>,
}

/// Creates whatever is missing in `dir` for `controllers` controllers and `brokers` brokers; every
/// leaf certificate also names `extra_names`.
pub fn generate(
    dir: &Path,
    controllers: u32,
    brokers: u32,
    extra_names: &[String],
) -> Result<SecretsReport, CliError> {
    let failed = |what: String| CliError::Local(format!("{}: {what}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    let mut report = SecretsReport {
        dir: dir.display().to_string(),
        created: Vec::new(),
        kept: Vec::new(),
    };
    let note = |report: &mut SecretsReport, path: &Path, created: bool| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if created {
            report.created.push(name);
        } else {
            report.kept.push(name);
        }
    };

    let tokens =
        ["admin.token", "cluster.token"].map(|name| (name.to_owned(), new_token as fn() -> String));
    let passwords = [ADMIN_USER, BROKER_USER].map(|user| {
        (
            format!("{user}.password"),
            crate::cmd::user::generate_password as fn() -> String,
        )
    });
    for (name, secret) in tokens.into_iter().chain(passwords) {
        let path = dir.join(name);
        let missing = !path.exists();
        if missing {
            write_secret(&path, &secret()).map_err(|e| CliError::Local(e.to_string()))?;
        }
        note(&mut report, &path, missing);
    }

    let (ca_pem, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if ca_pem.exists() != ca_key_path.exists() {
        // A new CA would not verify the certificates already issued, nor they it.
        return Err(failed(
            "ca.pem and ca.key must both exist or both be missing; remove the directory to start over"
                .to_owned(),
        ));
    }
    let ca_key = if ca_pem.exists() {
        let pem =
            std::fs::read_to_string(&ca_key_path).map_err(|e| failed(format!("ca.key: {e}")))?;
        note(&mut report, &ca_pem, false);
        KeyPair::from_pem(&pem).map_err(|e| failed(format!("ca.key: {e}")))?
    } else {
        let key = KeyPair::generate().map_err(|e| failed(format!("the CA key: {e}")))?;
        let certificate = ca_params(CA_NAME)
            .self_signed(&key)
            .map_err(|e| failed(format!("the CA certificate: {e}")))?;
        write_secret(&ca_key_path, &key.serialize_pem())
            .map_err(|e| CliError::Local(e.to_string()))?;
        std::fs::write(&ca_pem, certificate.pem()).map_err(|e| failed(format!("ca.pem: {e}")))?;
        note(&mut report, &ca_pem, true);
        key
    };
    let issuer = Issuer::new(ca_params(CA_NAME), ca_key);

    let nodes = (1..=controllers)
        .map(|id| format!("controller-{id}"))
        .chain((1..=brokers).map(|id| format!("broker-{id}")));
    for node in nodes {
        let (certificate, key) = (
            dir.join(format!("{node}.pem")),
            dir.join(format!("{node}.key")),
        );
        if certificate.exists() && key.exists() {
            note(&mut report, &certificate, false);
            continue;
        }
        let mut names = vec![node.clone(), "localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(
            extra_names
                .iter()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut params =
            CertificateParams::new(names).map_err(|e| failed(format!("{node}'s names: {e}")))?;
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf_key = KeyPair::generate().map_err(|e| failed(format!("{node}'s key: {e}")))?;
        let signed = params
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| failed(format!("{node}'s certificate: {e}")))?;
        write_secret(&key, &leaf_key.serialize_pem())
            .map_err(|e| CliError::Local(e.to_string()))?;
        std::fs::write(&certificate, signed.pem())
            .map_err(|e| failed(format!("{node}.pem: {e}")))?;
        note(&mut report, &certificate, true);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    use super::*;

    #[test]
    fn generates_every_credential_once_with_the_nodes_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report =
            generate(dir.path(), 3, 2, &["kafka.example.com".to_owned()]).expect("generated");
        assert!(report.kept.is_empty(), "{report:?}");
        for name in [
            "ca.pem",
            "ca.key",
            "admin.token",
            "cluster.token",
            "admin.password",
            "broker.password",
            "controller-1.pem",
            "controller-3.key",
            "broker-1.pem",
            "broker-2.key",
        ] {
            let metadata = std::fs::metadata(dir.path().join(name)).expect(name);
            let secret = !name.ends_with(".pem");
            assert_eq!(metadata.permissions().mode() & 0o077 == 0, secret, "{name}");
        }
        assert!(!dir.path().join("broker-3.pem").exists());
        let admin = std::fs::read_to_string(dir.path().join("admin.token")).expect("token");
        let cluster = std::fs::read_to_string(dir.path().join("cluster.token")).expect("token");
        assert!(admin.len() >= 16 && admin != cluster);

        // The brokers' certificates verify under their service name, the host's names and --san.
        let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca");
        let broker = std::fs::read(dir.path().join("broker-2.pem")).expect("cert");
        let roots = {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(&ca).expect("ca pem"))
                .expect("ca added");
            std::sync::Arc::new(roots)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(&broker).expect("pem");
        for name in ["broker-2", "localhost", "127.0.0.1", "kafka.example.com"] {
            verifier
                .verify_server_cert(
                    &leaf,
                    &[],
                    &rustls::pki_types::ServerName::try_from(name).expect("name"),
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("broker-2 as {name}: {e}"));
        }
        assert!(verifier
            .verify_server_cert(
                &leaf,
                &[],
                &rustls::pki_types::ServerName::try_from("broker-1").expect("name"),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .is_err());

        // A CA certificate without its key cannot issue more; a new CA would not match the rest.
        let elsewhere = tempfile::tempdir().expect("temp dir");
        std::fs::write(elsewhere.path().join("ca.pem"), &ca).expect("written");
        let error = generate(elsewhere.path(), 1, 1, &[]).expect_err("half a CA");
        assert!(error.to_string().contains("ca.key"), "{error}");

        // A second run, for more brokers, keeps everything and adds only the new broker.
        let again = generate(dir.path(), 3, 3, &[]).expect("again");
        assert_eq!(again.created, vec!["broker-3.pem".to_owned()], "{again:?}");
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).expect("ca"), ca);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("admin.token")).expect("token"),
            admin
        );
    }
}
