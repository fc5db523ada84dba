//! SCRAM credentials (RFC 5802, Kafka's KIP-554): the mechanisms Kafka knows, their iteration bounds,
//! and the keys a server keeps for a user. A client sends its salt, iteration count and salted
//! password (`AlterUserScramCredentials`); the controller derives the stored and server keys and keeps
//! only those (Kafka's `ScramFormatter` and `ScramControlManager`), never the password. A broker
//! checking a SCRAM login needs exactly these three values and the salt.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's `ScramMechanism`, with its wire type codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The `mechanism` code of the Kafka protocol (0 is UNKNOWN).
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's `ScramMechanism.minIterations()` (RFC 7677 asks for at least 4096).
    pub const MIN_ITERATIONS: i32 = 4096;
    /// Kafka's `ScramMechanism.maxIterations()`.
    pub const MAX_ITERATIONS: i32 = 16384;

    /// `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub fn derive_keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
        match self {
            Self::Sha256 => derive::<Sha256, Hmac<Sha256>>(salted_password),
            Self::Sha512 => derive::<Sha512, Hmac<Sha512>>(salted_password),
        }
    }
}

fn derive<D: Digest, M: Mac + hmac::digest::KeyInit>(salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let hmac = |message: &[u8]| {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(salted_password)
            .expect("HMAC takes keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    };
    let client_key = hmac(b"Client Key");
    let stored_key = D::digest(&client_key).to_vec();
    (stored_key, hmac(b"Server Key"))
}

/// What the metadata log keeps for one user and mechanism (Kafka's `UserScramCredentialRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 7677's SCRAM-SHA-256 example: password "pencil", salt "W22ZaJ0SNY7soEsUEjb6gQ==", 4096
    /// iterations, whose SaltedPassword (PBKDF2-HMAC-SHA-256) is below; the expected keys were derived
    /// independently with Python's `hashlib.pbkdf2_hmac` and `hmac`.
    #[test]
    fn keys_follow_rfc_5802() {
        let salted_password: [u8; 32] = [
            0xc4, 0xa4, 0x95, 0x10, 0x32, 0x3a, 0xb4, 0xf9, 0x52, 0xca, 0xc1, 0xfa, 0x99, 0x44,
            0x19, 0x39, 0xe7, 0x8e, 0xa7, 0x4d, 0x6b, 0xe8, 0x1d, 0xdf, 0x70, 0x96, 0xe8, 0x75,
            0x13, 0xdc, 0x61, 0x5d,
        ];
        let (stored_key, server_key) = ScramMechanism::Sha256.derive_keys(&salted_password);
        assert_eq!(
            hex(&stored_key),
            "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6"
        );
        assert_eq!(
            hex(&server_key),
            "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5"
        );
        let (stored_512, server_512) = ScramMechanism::Sha512.derive_keys(&salted_password);
        assert_eq!((stored_512.len(), server_512.len()), (64, 64));
    }

    #[test]
    fn mechanism_codes_are_kafkas() {
        assert_eq!(ScramMechanism::from_code(1), Some(ScramMechanism::Sha256));
        assert_eq!(ScramMechanism::from_code(2), Some(ScramMechanism::Sha512));
        assert_eq!(ScramMechanism::from_code(0), None);
        assert_eq!(ScramMechanism::Sha512.code(), 2);
        assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
    }
}
