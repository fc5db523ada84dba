//! SCRAM credentials (RFC 5802, Kafka's KIP-554): the mechanisms Kafka knows, their iteration bounds,
//! and the keys a server keeps for a user. A client sends its salt, iteration count and salted
//! password (`AlterUserScramCredentials`); the controller derives the stored and server keys and keeps
//! only those (Kafka's `ScramFormatter` and `ScramControlManager`), never the password. A broker
//! checking a SCRAM login needs exactly these three values and the salt. A client logging in
//! (`chronik-wire`'s SCRAM client) computes the same keys from the password, salt and iteration count
//! the server sends ([`ScramMechanism::salted_password`], [`ScramMechanism::client_proof`]) and checks
//! the server's signature ([`ScramMechanism::server_signature`]).

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

impl ScramMechanism {
    /// `SaltedPassword = Hi(Normalize(password), salt, i)`: PBKDF2 with this mechanism's HMAC and one
    /// output block (RFC 5802 §2.2). Kafka does not apply SASLprep; neither does Chronik.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => hi::<Hmac<Sha256>>(password, salt, iterations),
            Self::Sha512 => hi::<Hmac<Sha512>>(password, salt, iterations),
        }
    }

    /// `HMAC(key, message)` with this mechanism's hash.
    pub fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => mac::<Hmac<Sha256>>(key, message),
            Self::Sha512 => mac::<Hmac<Sha512>>(key, message),
        }
    }

    /// `ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)`, with
    /// `ClientKey = HMAC(SaltedPassword, "Client Key")` and `StoredKey = H(ClientKey)`.
    pub fn client_proof(self, salted_password: &[u8], auth_message: &[u8]) -> Vec<u8> {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = match self {
            Self::Sha256 => Sha256::digest(&client_key).to_vec(),
            Self::Sha512 => Sha512::digest(&client_key).to_vec(),
        };
        let signature = self.hmac(&stored_key, auth_message);
        client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect()
    }

    /// `ServerSignature = HMAC(ServerKey, AuthMessage)`, which proves to the client that the server
    /// knows its credential.
    pub fn server_signature(self, server_key: &[u8], auth_message: &[u8]) -> Vec<u8> {
        self.hmac(server_key, auth_message)
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// PBKDF2's first block: `U1 = HMAC(p, salt || INT(1))`, `Ui = HMAC(p, Ui-1)`, the XOR of all.
fn hi<M: Mac + hmac::digest::KeyInit + Clone>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let keyed = <M as hmac::digest::KeyInit>::new_from_slice(password)
        .expect("HMAC takes keys of any length");
    let mut first = keyed.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut u = first.finalize().into_bytes();
    let mut result = u.clone();
    for _ in 1..iterations.max(1) {
        let mut next = keyed.clone();
        next.update(&u);
        u = next.finalize().into_bytes();
        for (r, b) in result.iter_mut().zip(u.iter()) {
            *r ^= b;
        }
    }
    result.to_vec()
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

    /// RFC 7677 §3: user "user", password "pencil"; the client's proof and the server's signature of
    /// the example exchange.
    #[test]
    fn rfc_7677_proof_and_signature() {
        let salt = [
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36,
            0xfa, 0x81,
        ]; // "W22ZaJ0SNY7soEsUEjb6gQ=="
        let salted = ScramMechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        assert_eq!(
            hex(&salted),
            "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d"
        );
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = ScramMechanism::Sha256.client_proof(&salted, auth_message.as_bytes());
        // base64 "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        assert_eq!(
            hex(&proof),
            "747cdb65aa56224e2352137e52d7bdcad6a0f738df30782caa69a2cfb0277554"
        );
        let (_, server_key) = ScramMechanism::Sha256.derive_keys(&salted);
        let signature =
            ScramMechanism::Sha256.server_signature(&server_key, auth_message.as_bytes());
        // base64 "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        assert_eq!(
            hex(&signature),
            "eabae24d1062db75a9451ff0b6ea7e98c8546549ff741e672d3251b2397de46e"
        );
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
