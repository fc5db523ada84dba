//! The client side of SCRAM (RFC 5802, with RFC 7677's SHA-256 and Kafka's SHA-512), as Kafka's
//! `ScramSaslClient` runs it: client-first (`n,,n=user,r=nonce`), the server's first message (its nonce
//! extending ours, the salt and iteration count), client-final with the proof, and the server's final
//! message, whose signature proves it holds the user's credential. The key math is
//! `chronik_metadata::scram`, shared with the controllers that store the credentials.
//!
//! What must stay true: the exchange fails (and no proof is sent) when the server's nonce does not
//! start with ours or its iteration count is outside Kafka's bounds; it succeeds only once the server's
//! signature matches; the password appears in no message and no error.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chronik_metadata::scram::ScramMechanism;
use rand::distr::{Alphanumeric, SampleString};

/// Why a SCRAM exchange was refused on the client's side.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the server's SCRAM message is malformed: {0}")]
    Malformed(String),
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("the server asks for {0} iterations, outside {min}..={max}", min = ScramMechanism::MIN_ITERATIONS, max = ScramMechanism::MAX_ITERATIONS)]
    Iterations(i64),
    #[error("the server refused the SCRAM exchange: {0}")]
    ServerError(String),
    #[error("the server's signature does not match: it does not hold this user's credential")]
    BadServerSignature,
}

/// One SCRAM login, driven message by message.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// `ServerSignature` expected in the server's final message, once client-final is built.
    expected_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A login of `username` with a fresh random nonce.
    pub fn new(mechanism: ScramMechanism, username: &str, password: &str) -> Self {
        let nonce = Alphanumeric.sample_string(&mut rand::rng(), 32);
        Self::with_nonce(mechanism, username, password, nonce)
    }

    /// A login with a given nonce (tests replay RFC 7677's example).
    pub fn with_nonce(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        client_nonce: String,
    ) -> Self {
        let client_first_bare = format!("n={},r={client_nonce}", sasl_name(username));
        ScramClient {
            mechanism,
            password: password.to_owned(),
            client_nonce,
            client_first_bare,
            expected_signature: None,
        }
    }

    /// The client-first message: no channel binding (`n,,`), as Kafka's client sends it.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first message and returns client-final (with the proof).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("not UTF-8".to_owned()))?;
        let attributes = attributes(server_first)?;
        if let Some(error) = find(&attributes, 'e') {
            return Err(ScramError::ServerError(error.to_owned()));
        }
        let nonce = find(&attributes, 'r')
            .ok_or_else(|| ScramError::Malformed("no nonce (r=)".to_owned()))?;
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = find(&attributes, 's')
            .ok_or_else(|| ScramError::Malformed("no salt (s=)".to_owned()))
            .and_then(|s| {
                BASE64
                    .decode(s)
                    .map_err(|_| ScramError::Malformed("the salt is not base64".to_owned()))
            })?;
        let iterations: i64 = find(&attributes, 'i')
            .ok_or_else(|| ScramError::Malformed("no iteration count (i=)".to_owned()))?
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number".to_owned()))?;
        // Kafka's client refuses fewer than the mechanism's minimum; more than Kafka ever stores
        // would only make this client spin.
        let allowed =
            i64::from(ScramMechanism::MIN_ITERATIONS)..=i64::from(ScramMechanism::MAX_ITERATIONS);
        if !allowed.contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = self.mechanism.salted_password(
            self.password.as_bytes(),
            &salt,
            iterations as u32, // within the bounds checked above
        );
        let proof = self
            .mechanism
            .client_proof(&salted, auth_message.as_bytes());
        let (_, server_key) = self.mechanism.derive_keys(&salted);
        self.expected_signature = Some(
            self.mechanism
                .server_signature(&server_key, auth_message.as_bytes()),
        );
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: `v=` with the expected server signature.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let server_final = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("not UTF-8".to_owned()))?;
        let attributes = attributes(server_final)?;
        if let Some(error) = find(&attributes, 'e') {
            return Err(ScramError::ServerError(error.to_owned()));
        }
        let signature = find(&attributes, 'v')
            .ok_or_else(|| ScramError::Malformed("no server signature (v=)".to_owned()))?;
        let signature = BASE64
            .decode(signature)
            .map_err(|_| ScramError::Malformed("the server signature is not base64".to_owned()))?;
        match &self.expected_signature {
            Some(expected) if *expected == signature => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

/// RFC 5802's `saslname`: `=` and `,` escaped as `=3D` and `=2C`.
fn sasl_name(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// `a=value` attributes, comma-separated.
fn attributes(message: &str) -> Result<Vec<(char, &str)>, ScramError> {
    message
        .split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(name), Some('=')) if name.is_ascii_alphabetic() => Ok((name, &part[2..])),
                _ => Err(ScramError::Malformed(format!("attribute {part:?}"))),
            }
        })
        .collect()
}

fn find<'a>(attributes: &[(char, &'a str)], name: char) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn rfc_client() -> ScramClient {
        ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".to_owned(),
        )
    }

    /// RFC 7677 §3, message by message.
    #[test]
    fn rfc_7677_exchange() {
        let mut client = rfc_client();
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = client.client_final(SERVER_FIRST.as_bytes()).expect("final");
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("the RFC's server signature");
        assert_eq!(
            client.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::BadServerSignature)
        );
        assert_eq!(
            client.verify_server_final(b"e=invalid-proof"),
            Err(ScramError::ServerError("invalid-proof".to_owned()))
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        for nonce in ["r=someoneElsesNonce123", "r=rOprNGfwEbeRWgbNEkqO"] {
            let message = format!("{nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
            assert_eq!(
                rfc_client().client_final(message.as_bytes()),
                Err(ScramError::NonceMismatch)
            );
        }
    }

    #[test]
    fn iteration_counts_outside_kafkas_bounds_are_refused() {
        for i in ["1", "4095", "16385", "2147483647"] {
            let message = format!("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}");
            assert!(matches!(
                rfc_client().client_final(message.as_bytes()),
                Err(ScramError::Iterations(_))
            ));
        }
        assert!(matches!(
            rfc_client().client_final(b"garbage"),
            Err(ScramError::Malformed(_))
        ));
        // No proof was computed, so no final message can verify.
        let client = rfc_client();
        assert_eq!(
            client.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn user_names_are_escaped_and_nonces_fresh() {
        let client = ScramClient::new(ScramMechanism::Sha512, "a=b,c", "pw");
        let first = String::from_utf8(client.client_first()).unwrap();
        assert!(first.starts_with("n,,n=a=3Db=2Cc,r="), "{first}");
        let other = ScramClient::new(ScramMechanism::Sha512, "a", "pw");
        assert_ne!(client.client_nonce, other.client_nonce);
        assert!(!format!("{client:?}").contains("pw"));
    }
}
