//! SASL/PLAIN (RFC 4616; Kafka's `PlainSaslServer`): one message, `[authzid] NUL authcid NUL passwd`.
//!
//! Kafka checks PLAIN passwords against a JAAS file of plaintext passwords
//! (`PlainServerCallbackHandler`). Chronik stores no password anywhere: as Redpanda does, the password
//! is checked against the user's SCRAM credential in the metadata image. The salted password is
//! derived with the credential's salt and iterations and its StoredKey compared in constant time; a
//! user's SCRAM-SHA-512 credential is tried first, then SCRAM-SHA-256. An unknown user costs the same
//! derivation, so timing does not tell whether a user exists.
//!
//! What must stay true: the password is never logged, kept or put in an error.

use chronik_metadata::scram::ScramMechanism;
use chronik_metadata::MetadataImage;
use subtle::ConstantTimeEq;

use super::sasl::{AuthFailure, Step};
use super::scram::{hash, hmac, salted_password};

/// A parsed PLAIN message (the password borrowed from it, never copied).
#[derive(Debug, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub authzid: &'a str,
    pub user: &'a str,
    pub password: &'a [u8],
}

/// Parses a PLAIN message as Kafka does: exactly three NUL-separated parts, a user and a password.
pub fn parse(token: &[u8]) -> Result<PlainMessage<'_>, AuthFailure> {
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    if parts.len() != 3 {
        return Err(AuthFailure::new(format!(
            "invalid SASL/PLAIN message: expected 3 tokens, got {}",
            parts.len()
        )));
    }
    let (Ok(authzid), Ok(user)) = (std::str::from_utf8(parts[0]), std::str::from_utf8(parts[1]))
    else {
        return Err(AuthFailure::new("SASL/PLAIN names are not UTF-8"));
    };
    if user.is_empty() {
        return Err(AuthFailure::new("SASL/PLAIN: no user name"));
    }
    if parts[2].is_empty() {
        return Err(AuthFailure::new(format!(
            "SASL/PLAIN: no password for user '{user}'"
        )));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthFailure::new(format!(
            "user '{user}' asked for a different authorization id"
        )));
    }
    Ok(PlainMessage {
        authzid,
        user,
        password: parts[2],
    })
}

/// Checks a PLAIN message against the image's SCRAM credentials (CPU-bound: thousands of HMACs; run
/// it off the async threads).
pub fn authenticate(token: &[u8], image: &MetadataImage) -> Result<Step, AuthFailure> {
    let message = parse(token)?;
    let credentials = image.scram_credentials.get(message.user);
    let mut matched = false;
    let mut known = false;
    for mechanism in [ScramMechanism::Sha512, ScramMechanism::Sha256] {
        let Some(credential) = credentials.and_then(|c| c.get(&mechanism)) else {
            continue;
        };
        known = true;
        let iterations = u32::try_from(credential.iterations).unwrap_or(0);
        let salted = salted_password(mechanism, message.password, &credential.salt, iterations);
        let stored_key = hash(mechanism, &hmac(mechanism, &salted, b"Client Key"));
        matched |= bool::from(stored_key.ct_eq(&credential.stored_key));
        if matched {
            break;
        }
    }
    if !known {
        // The same work as for a real credential.
        let _ = salted_password(
            ScramMechanism::Sha512,
            message.password,
            message.user.as_bytes(),
            ScramMechanism::MIN_ITERATIONS as u32,
        );
        return Err(AuthFailure::new(format!("unknown user '{}'", message.user)));
    }
    if !matched {
        return Err(AuthFailure::new(format!(
            "invalid credentials of user '{}'",
            message.user
        )));
    }
    Ok(Step::Complete {
        user: message.user.to_owned(),
        response: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::tests::image_with;

    #[test]
    fn messages_parse_as_rfc_4616_and_kafka_say() {
        assert_eq!(
            parse(b"\0alice\0pw").expect("parses"),
            PlainMessage {
                authzid: "",
                user: "alice",
                password: b"pw"
            }
        );
        assert!(parse(b"alice\0alice\0pw").is_ok());
        for bad in [
            &b""[..],
            b"alice\0pw",
            b"\0alice\0pw\0",
            b"\0\0pw",
            b"\0alice\0",
            b"bob\0alice\0pw",
            b"\0\xff\0pw",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_checked_against_the_scram_credentials() {
        let image = image_with("alice", "secret", ScramMechanism::Sha256, b"salt", 4096);
        assert!(matches!(
            authenticate(b"\0alice\0secret", &image),
            Ok(Step::Complete { ref user, .. }) if user == "alice"
        ));
        let wrong = authenticate(b"\0alice\0nope", &image).expect_err("wrong");
        assert!(
            !wrong.reason.contains("nope"),
            "the password is never in a reason"
        );
        assert!(authenticate(b"\0bob\0secret", &image).is_err());
        let mut both = image_with("alice", "new", ScramMechanism::Sha512, b"salt2", 4096);
        for credential in image.scram_credentials["alice"].values() {
            both.replay(
                1,
                &chronik_metadata::Record::UserScramCredential(credential.clone()),
            );
        }
        assert!(
            authenticate(b"\0alice\0new", &both).is_ok(),
            "SHA-512 first"
        );
        assert!(
            authenticate(b"\0alice\0secret", &both).is_ok(),
            "then SHA-256"
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let image = image_with("u", "pw", ScramMechanism::Sha256, b"salt", 4096);
        let mut rng = crate::log::batch::test_support::XorShift(0x9a1e_77b3_0c4d_2f11);
        for _ in 0..20_000 {
            let len = rng.next() % 12;
            let message: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.next().is_multiple_of(3) {
                        0
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            if parse(&message).is_ok() {
                continue; // a well-formed guess would cost a derivation; parsing is what is fuzzed
            }
            let _ = authenticate(&message, &image);
        }
    }
}
