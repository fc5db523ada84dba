//! `chronikctl local up --secure-control-plane`: the files a local cluster's secured control plane
//! runs with, generated into `DIR/control-plane/` on first start and reused after: a CA, one
//! certificate per controller (for `127.0.0.1` and `localhost`, server and client use), one for the
//! brokers, the admin token and the cluster token. Controllers get TLS and both tokens, brokers the CA
//! and the cluster token, and `chronikctl` the CA and the admin token (`client_files`).
//!
//! Kept apart from `local.rs` so the Kafka-side security of a local cluster (`--security`) can grow
//! beside it; `ClusterSpec::secure_control_plane` is the one switch.

use std::path::{Path, PathBuf};

use chronik_control_auth::ClientFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

use crate::local::LocalError;

/// The directory under the cluster dir.
pub const CONTROL_PLANE_DIR: &str = "control-plane";
/// The common name of its CA.
const CA_NAME: &str = "Chronik local control-plane CA";

/// Where a local cluster's control-plane credentials are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneFiles {
    pub dir: PathBuf,
}

fn io(context: impl std::fmt::Display, e: impl std::fmt::Display) -> LocalError {
    LocalError::Io(format!("{context}: {e}"))
}

impl ControlPlaneFiles {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn admin_token(&self) -> PathBuf {
        self.dir.join("admin.token")
    }

    pub fn cluster_token(&self) -> PathBuf {
        self.dir.join("cluster.token")
    }

    fn certificate(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        )
    }

    /// Creates whatever is missing in `cluster_dir/control-plane` for `controllers` controllers.
    pub fn generate(cluster_dir: &Path, controllers: usize) -> Result<Self, LocalError> {
        let files = ControlPlaneFiles {
            dir: cluster_dir.join(CONTROL_PLANE_DIR),
        };
        std::fs::create_dir_all(&files.dir).map_err(|e| io(files.dir.display(), e))?;
        for token in [files.admin_token(), files.cluster_token()] {
            if !token.exists() {
                write_secret(&token, &new_token())?;
            }
        }
        let ca_key_path = files.dir.join("ca.key");
        let (ca_params, ca_key) = if ca_key_path.exists() && files.ca().exists() {
            let key_pem =
                std::fs::read_to_string(&ca_key_path).map_err(|e| io(ca_key_path.display(), e))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| io(ca_key_path.display(), e))?;
            (ca_params(CA_NAME), key)
        } else {
            let key = KeyPair::generate().map_err(|e| io("cannot generate the CA key", e))?;
            let params = ca_params(CA_NAME);
            let certificate = params
                .self_signed(&key)
                .map_err(|e| io("cannot sign the CA certificate", e))?;
            write_secret(&ca_key_path, &key.serialize_pem())?;
            std::fs::write(files.ca(), certificate.pem())
                .map_err(|e| io(files.ca().display(), e))?;
            (params, key)
        };
        let issuer = Issuer::new(ca_params, ca_key);
        let names = (1..=controllers)
            .map(|id| format!("controller-{id}"))
            .chain(["broker".to_string(), "chronikctl".to_string()]);
        for name in names {
            let (certificate, key) = files.certificate(&name);
            if certificate.exists() && key.exists() {
                continue;
            }
            let leaf_key = KeyPair::generate().map_err(|e| io("cannot generate a key", e))?;
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .map_err(|e| io("certificate names", e))?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("chronik-{name}"));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let signed = params
                .signed_by(&leaf_key, &issuer)
                .map_err(|e| io(format!("cannot sign the {name} certificate"), e))?;
            write_secret(&key, &leaf_key.serialize_pem())?;
            std::fs::write(&certificate, signed.pem()).map_err(|e| io(certificate.display(), e))?;
        }
        Ok(files)
    }

    /// Flags of controller `id`: TLS with its certificate, both tokens.
    pub fn controller_args(&self, id: u64) -> Vec<String> {
        let (certificate, key) = self.certificate(&format!("controller-{id}"));
        [
            ("--tls-certificate", certificate),
            ("--tls-key", key),
            ("--tls-ca", self.ca()),
            ("--admin-token-file", self.admin_token()),
            ("--cluster-token-file", self.cluster_token()),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }

    /// Flags of every broker: the CA and the cluster token.
    pub fn broker_args(&self) -> Vec<String> {
        vec![
            "--controller-tls-ca".into(),
            self.ca().display().to_string(),
            "--controller-token-file".into(),
            self.cluster_token().display().to_string(),
        ]
    }

    /// What chronikctl uses: the CA and the admin token.
    pub fn client_files(&self) -> ClientFiles {
        ClientFiles {
            ca: Some(self.ca()),
            token: Some(self.admin_token()),
            ..ClientFiles::default()
        }
    }

    /// The client certificate and key chronikctl can use against `--tls-client-auth` controllers.
    pub fn client_certificate(&self) -> (PathBuf, PathBuf) {
        self.certificate("chronikctl")
    }
}

/// The parameters of a self-signed CA named `common_name` (its key signs the leaves; the subject is
/// what the leaves name as issuer, so the same name must be used when the key is loaded again).
pub(crate) fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// 32 random bytes as hex.
pub(crate) fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a key or token readable by its owner only.
pub(crate) fn write_secret(path: &Path, content: &str) -> Result<(), LocalError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path.display(), e))?;
    file.write_all(content.as_bytes())
        .map_err(|e| io(path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let files = ControlPlaneFiles::generate(dir.path(), 3).unwrap();
        let token = std::fs::read_to_string(files.admin_token()).unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(
            token,
            std::fs::read_to_string(files.cluster_token()).unwrap()
        );
        let ca = std::fs::read(files.ca()).unwrap();
        let again = ControlPlaneFiles::generate(dir.path(), 3).unwrap();
        assert_eq!(std::fs::read(again.ca()).unwrap(), ca);
        assert_eq!(std::fs::read_to_string(again.admin_token()).unwrap(), token);
        assert!(files
            .controller_args(2)
            .iter()
            .any(|a| a.ends_with("controller-2.pem")));
        chronik_control_auth::ClientCredentials::load(&files.client_files(), "token").unwrap();
    }
}
