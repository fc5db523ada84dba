//! The server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677; Kafka's `ScramSaslServer`
//! and `ScramMessages`), checked against the credentials of the metadata image
//! (`chronik_metadata::scram`: salt, iterations, StoredKey, ServerKey; never a password).
//!
//! The exchange: client-first (`n,,n=user,r=cnonce`) → server-first (`r=cnonce+snonce,s=salt,i=n`) →
//! client-final (`c=biws,r=nonce,p=proof`) → server-final (`v=ServerSignature`). The server nonce comes
//! from the thread-local CSPRNG (ChaCha, seeded by the OS); the proof is checked in constant time.
//!
//! Unlike Kafka, which fails an unknown user at the first message, an unknown user gets a made-up salt
//! (the same for the same name during the process's life) and fails at the proof, as a wrong password
//! does, so the exchange does not tell whether a user exists. Channel binding (`p=`) is not offered
//! (there is no `-PLUS` mechanism); an authorization id must equal the user; the `tokenauth` extension
//! (delegation tokens, which Chronik does not have) is refused; other extensions are ignored, as Kafka
//! ignores them.
//!
//! What must stay true: no message is logged or put in an error (they carry nonces and proofs); a
//! failure reason names at most the user; nothing panics on any bytes.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chronik_metadata::scram::{ScramCredential, ScramMechanism};
use chronik_metadata::MetadataImage;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::sasl::{AuthFailure, Step};

/// `HMAC(key, message)` with the mechanism's hash.
pub fn hmac(mechanism: ScramMechanism, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn with<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match mechanism {
        ScramMechanism::Sha256 => with::<Hmac<Sha256>>(key, message),
        ScramMechanism::Sha512 => with::<Hmac<Sha512>>(key, message),
    }
}

/// `H(data)`.
pub fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with HMAC of the mechanism's hash, one block.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(mechanism, password, &first);
    let mut result = u.clone();
    for _ in 1..iterations {
        u = hmac(mechanism, password, &u);
        for (r, b) in result.iter_mut().zip(&u) {
            *r ^= b;
        }
    }
    result
}

/// RFC 5802's `saslname` decoding: `=2C` is `,`, `=3D` is `=`, any other `=` is malformed.
pub fn decode_sasl_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find(['=', ',']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A per-process secret the made-up salts of unknown users derive from.
fn unknown_user_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        secret
    })
}

/// The credential checked for `user`: the image's, or for an unknown user one nobody can prove.
fn credential_for(
    image: &MetadataImage,
    mechanism: ScramMechanism,
    user: &str,
) -> (ScramCredential, bool) {
    if let Some(c) = image
        .scram_credentials
        .get(user)
        .and_then(|c| c.get(&mechanism))
    {
        return (c.clone(), true);
    }
    let salt = hmac(
        ScramMechanism::Sha256,
        unknown_user_secret(),
        user.as_bytes(),
    );
    let mut stored_key = vec![0u8; hash(mechanism, b"").len()];
    rand::rng().fill_bytes(&mut stored_key);
    let server_key = stored_key.clone();
    (
        ScramCredential {
            user: user.to_owned(),
            mechanism,
            salt,
            stored_key,
            server_key,
            iterations: ScramMechanism::MIN_ITERATIONS,
        },
        false,
    )
}

/// 32 random letters and digits (about 190 bits), as Kafka's server nonces are alphanumeric: older
/// librdkafka (kcat on Debian 12) fails a nonce holding base64's `+` or `/`.
fn server_nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALPHABET[(rng.next_u32() % ALPHABET.len() as u32) as usize] as char)
        .collect()
}

/// What the server-first message committed to, for checking the client-final one.
struct Pending {
    user: String,
    known: bool,
    credential: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

enum State {
    ExpectClientFirst,
    ExpectClientFinal(Box<Pending>),
    Done,
}

/// One SCRAM exchange of one connection (Kafka's `ScramSaslServer`).
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

fn fail(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::new(reason)
}

/// `key=value` attributes of a SCRAM message, in order.
fn attributes(message: &str) -> Vec<(char, &str)> {
    message
        .split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => (k, &part[2..]),
                _ => ('\0', part),
            }
        })
        .collect()
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        ScramServer {
            mechanism,
            state: State::ExpectClientFirst,
        }
    }

    /// Evaluates the client's next message against `image`.
    pub fn step(&mut self, token: &[u8], image: &MetadataImage) -> Result<Step, AuthFailure> {
        let message = std::str::from_utf8(token).map_err(|_| fail("SCRAM message is not UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectClientFirst => self.client_first(message, image),
            State::ExpectClientFinal(pending) => {
                let Pending {
                    user,
                    known,
                    credential,
                    gs2_header,
                    client_first_bare,
                    server_first,
                    nonce,
                } = *pending;
                let final_without_proof = message
                    .rsplit_once(",p=")
                    .map(|(before, _)| before)
                    .ok_or_else(|| fail("malformed client-final message (no proof)"))?;
                let attrs = attributes(message);
                let (Some(('c', binding)), Some(('r', client_nonce)), Some(('p', proof))) = (
                    attrs.first().copied(),
                    attrs.get(1).copied(),
                    attrs.last().copied(),
                ) else {
                    return Err(fail("malformed client-final message"));
                };
                if BASE64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
                    return Err(fail("invalid channel binding in the client-final message"));
                }
                // A suffix, as Kafka's `ScramSaslServer` long checked it (`endsWith`; recent releases
                // compare with `equals`): librdkafka 2.0 (kcat on Debian 12) sends its client nonce
                // again in front of the combined one. The proof covers the message as sent, and the
                // server's fresh nonce must still end it.
                if !client_nonce.ends_with(&nonce) {
                    return Err(fail("nonce mismatch in the client-final message"));
                }
                let proof = BASE64
                    .decode(proof)
                    .map_err(|_| fail("malformed proof in the client-final message"))?;
                let auth_message =
                    format!("{client_first_bare},{server_first},{final_without_proof}");
                let client_signature = hmac(
                    self.mechanism,
                    &credential.stored_key,
                    auth_message.as_bytes(),
                );
                if proof.len() != client_signature.len() {
                    return Err(fail("proof of the wrong length"));
                }
                let client_key: Vec<u8> = proof
                    .iter()
                    .zip(&client_signature)
                    .map(|(p, s)| p ^ s)
                    .collect();
                let computed = hash(self.mechanism, &client_key);
                let matches: bool = computed.ct_eq(&credential.stored_key).into();
                if !known {
                    return Err(fail(format!("unknown user '{user}'")));
                }
                if !matches {
                    return Err(fail(format!("invalid credentials of user '{user}'")));
                }
                let server_signature = hmac(
                    self.mechanism,
                    &credential.server_key,
                    auth_message.as_bytes(),
                );
                Ok(Step::Complete {
                    user,
                    response: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
                })
            }
            State::Done => Err(fail("SCRAM message after the exchange ended")),
        }
    }

    fn client_first(&mut self, message: &str, image: &MetadataImage) -> Result<Step, AuthFailure> {
        let malformed = || fail("malformed client-first message");
        // gs2-header: cbind-flag "," [authzid] ","
        let (cbind, rest) = message.split_once(',').ok_or_else(malformed)?;
        match cbind {
            "n" | "y" => {}
            _ if cbind.starts_with("p=") => {
                return Err(fail("channel binding is not supported"));
            }
            _ => return Err(malformed()),
        }
        let (authzid, bare) = rest.split_once(',').ok_or_else(malformed)?;
        let gs2_header = format!("{cbind},{authzid},");
        let authzid = match authzid {
            "" => None,
            a => Some(
                a.strip_prefix("a=")
                    .and_then(decode_sasl_name)
                    .ok_or_else(malformed)?,
            ),
        };
        let attrs = attributes(bare);
        let (Some(('n', name)), Some(('r', client_nonce))) =
            (attrs.first().copied(), attrs.get(1).copied())
        else {
            // Includes the reserved `m=` (RFC 5802: the server must fail).
            return Err(malformed());
        };
        let user = decode_sasl_name(name)
            .filter(|u| !u.is_empty())
            .ok_or_else(malformed)?;
        if !valid_nonce(client_nonce) {
            return Err(malformed());
        }
        // Extensions (Kafka's `ScramExtensions`): `key=value` with a key of letters.
        for part in bare.split(',').skip(2) {
            let (key, _) = part.split_once('=').ok_or_else(malformed)?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(malformed());
            }
            if key == "tokenauth" {
                return Err(fail(
                    "delegation tokens (the tokenauth extension) are not supported",
                ));
            }
        }
        if authzid.as_ref().is_some_and(|a| a != &user) {
            return Err(fail(format!(
                "user '{user}' asked for a different authorization id"
            )));
        }
        let (credential, known) = credential_for(image, self.mechanism, &user);
        let nonce = format!("{client_nonce}{}", server_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::ExpectClientFinal(Box::new(Pending {
            user,
            known,
            credential,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        }));
        Ok(Step::Challenge(server_first.into_bytes()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chronik_metadata::Record;

    /// An image holding `user`'s credential for `password` (salt and iterations given).
    pub(crate) fn image_with(
        user: &str,
        password: &str,
        mechanism: ScramMechanism,
        salt: &[u8],
        iterations: i32,
    ) -> MetadataImage {
        let salted = salted_password(mechanism, password.as_bytes(), salt, iterations as u32);
        let (stored_key, server_key) = mechanism.derive_keys(&salted);
        let mut image = MetadataImage::default();
        image.replay(
            1,
            &Record::UserScramCredential(ScramCredential {
                user: user.into(),
                mechanism,
                salt: salt.to_vec(),
                stored_key,
                server_key,
                iterations,
            }),
        );
        image
    }

    /// RFC 7677 section 3: user "user", password "pencil", the client nonce, salt and iterations of
    /// the example, and the server nonce replaced by ours; proof and signature computed as a client.
    #[test]
    fn rfc_7677_example_authenticates() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let image = image_with("user", "pencil", ScramMechanism::Sha256, &salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let Step::Challenge(server_first) = server
            .step(format!("n,,{client_first_bare}").as_bytes(), &image)
            .expect("first")
        else {
            panic!("a challenge")
        };
        let server_first = String::from_utf8(server_first).expect("utf8");
        assert!(
            server_first.starts_with("r=rOprNGfwEbeRWgbNEkqO")
                && server_first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            "{server_first}"
        );
        let nonce = &server_first[2..server_first.find(",s=").expect("salt")];
        let (final_message, expected_signature) = client_final(
            ScramMechanism::Sha256,
            "pencil",
            &salt,
            4096,
            client_first_bare,
            &server_first,
            nonce,
        );
        match server
            .step(final_message.as_bytes(), &image)
            .expect("final")
        {
            Step::Complete { user, response } => {
                assert_eq!(user, "user");
                assert_eq!(response, expected_signature.into_bytes());
            }
            Step::Challenge(_) => panic!("complete"),
        }
        // With RFC 7677's own server nonce, its proof is reproduced exactly.
        let rfc_server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (rfc_final, rfc_signature) = client_final(
            ScramMechanism::Sha256,
            "pencil",
            &salt,
            4096,
            client_first_bare,
            rfc_server_first,
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        );
        assert_eq!(
            rfc_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            rfc_signature,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// A client's final message and the server-final it expects.
    pub(crate) fn client_final(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
        client_first_bare: &str,
        server_first: &str,
        nonce: &str,
    ) -> (String, String) {
        client_final_with_header(
            mechanism,
            password,
            salt,
            iterations,
            "n,,",
            client_first_bare,
            server_first,
            nonce,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn client_final_with_header(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce: &str,
    ) -> (String, String) {
        let salted = salted_password(mechanism, password.as_bytes(), salt, iterations);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        let stored_key = hash(mechanism, &client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2_header));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(mechanism, &salted, b"Server Key");
        let server_signature = hmac(mechanism, &server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(server_signature)),
        )
    }

    fn exchange(
        image: &MetadataImage,
        mechanism: ScramMechanism,
        first: &str,
        password: &str,
    ) -> Result<Step, AuthFailure> {
        let mut server = ScramServer::new(mechanism);
        let Step::Challenge(server_first) = server.step(first.as_bytes(), image)? else {
            panic!("a challenge")
        };
        let server_first = String::from_utf8(server_first).expect("utf8");
        let attrs = attributes(&server_first);
        let nonce = attrs[0].1;
        let salt = BASE64.decode(attrs[1].1).expect("salt");
        let iterations: u32 = attrs[2].1.parse().expect("iterations");
        let bare = first.splitn(3, ',').nth(2).expect("bare");
        let header = &first[..first.len() - bare.len()];
        let (final_message, _) = client_final_with_header(
            mechanism,
            password,
            &salt,
            iterations,
            header,
            bare,
            &server_first,
            nonce,
        );
        server.step(final_message.as_bytes(), image)
    }

    #[test]
    fn wrong_passwords_and_unknown_users_fail_alike_at_the_proof() {
        let image = image_with("alice", "secret", ScramMechanism::Sha512, b"salty", 4096);
        let m = ScramMechanism::Sha512;
        assert!(matches!(
            exchange(&image, m, "n,,n=alice,r=abc", "secret"),
            Ok(Step::Complete { ref user, .. }) if user == "alice"
        ));
        let wrong = exchange(&image, m, "n,,n=alice,r=abc", "Secret").expect_err("fails");
        let unknown = exchange(&image, m, "n,,n=bob,r=abc", "secret").expect_err("fails");
        assert!(
            wrong.reason.contains("invalid credentials"),
            "{}",
            wrong.reason
        );
        assert!(
            unknown.reason.contains("unknown user"),
            "{}",
            unknown.reason
        );
        // The SHA-256 credential does not exist: SCRAM-SHA-256 fails for alice.
        assert!(exchange(&image, ScramMechanism::Sha256, "n,,n=alice,r=abc", "secret").is_err());
        // An unknown user's salt does not change between attempts.
        let salt_of = |first: &str| {
            let mut server = ScramServer::new(m);
            match server.step(first.as_bytes(), &image) {
                Ok(Step::Challenge(s)) => String::from_utf8(s)
                    .expect("utf8")
                    .split(",s=")
                    .nth(1)
                    .map(str::to_owned),
                _ => None,
            }
        };
        assert_eq!(salt_of("n,,n=bob,r=x"), salt_of("n,,n=bob,r=y"));
    }

    /// librdkafka 2.0 (kcat on Debian 12) sends `r=` its client nonce followed by the whole combined
    /// nonce; Kafka long accepted it (`endsWith`), and so does Chronik. A nonce that does not end with the
    /// server's is refused.
    #[test]
    fn a_client_nonce_repeated_in_front_is_accepted_as_kafka_accepts_it() {
        let image = image_with("u", "pw", ScramMechanism::Sha512, b"salt", 4096);
        let m = ScramMechanism::Sha512;
        let run = |prefix: &str| {
            let mut server = ScramServer::new(m);
            let Ok(Step::Challenge(first)) = server.step(b"n,,n=u,r=cn", &image) else {
                panic!("a challenge")
            };
            let first = String::from_utf8(first).expect("utf8");
            let nonce = attributes(&first)[0].1.to_owned();
            let sent = format!("{prefix}{nonce}");
            let (final_message, _) =
                client_final(m, "pw", b"salt", 4096, "n=u,r=cn", &first, &sent);
            server.step(final_message.as_bytes(), &image)
        };
        assert!(run("").is_ok());
        assert!(run("cn").is_ok());
        let truncated = {
            let mut server = ScramServer::new(m);
            let Ok(Step::Challenge(first)) = server.step(b"n,,n=u,r=cn", &image) else {
                panic!("a challenge")
            };
            let first = String::from_utf8(first).expect("utf8");
            let nonce = attributes(&first)[0].1;
            let short = &nonce[..nonce.len() - 1];
            let (final_message, _) =
                client_final(m, "pw", b"salt", 4096, "n=u,r=cn", &first, short);
            server.step(final_message.as_bytes(), &image)
        };
        assert!(truncated.is_err());
    }

    #[test]
    fn authorization_ids_and_escaped_names() {
        let image = image_with("a,b=c", "pw", ScramMechanism::Sha256, b"salt", 4096);
        let m = ScramMechanism::Sha256;
        assert!(exchange(&image, m, "n,,n=a=2Cb=3Dc,r=n1", "pw").is_ok());
        assert!(exchange(&image, m, "n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=n1", "pw").is_ok());
        let other = exchange(&image, m, "n,a=admin,n=a=2Cb=3Dc,r=n1", "pw").expect_err("refused");
        assert!(
            other.reason.contains("authorization id"),
            "{}",
            other.reason
        );
        assert_eq!(decode_sasl_name("a=2C=3D"), Some("a,=".into()));
        assert_eq!(decode_sasl_name("a=4"), None);
        assert_eq!(decode_sasl_name("a=2"), None);
    }

    #[test]
    fn malformed_and_unsupported_first_messages_are_refused() {
        let image = image_with("u", "pw", ScramMechanism::Sha256, b"salt", 4096);
        for bad in [
            "",
            "n,,",
            "p=tls-unique,,n=u,r=x",
            "x,,n=u,r=x",
            "n,,m=ext,n=u,r=x",
            "n,,n=u",
            "n,,r=x,n=u",
            "n,,n=,r=x",
            "n,,n=u,r=",
            "n,,n=u,r=x,tokenauth=true",
            "n,,n=u=,r=x",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            assert!(server.step(bad.as_bytes(), &image).is_err(), "{bad:?}");
        }
        // Unknown extensions are ignored, as in Kafka.
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert!(server.step(b"n,,n=u,r=x,e=1", &image).is_ok());
        // A final message that does not continue the exchange.
        assert!(server.step(b"c=biws,r=other,p=AAAA", &image).is_err());
        assert!(server.step(b"anything", &image).is_err(), "after a failure");
    }

    #[test]
    fn random_bytes_never_panic() {
        let image = image_with("u", "pw", ScramMechanism::Sha256, b"salt", 4096);
        let mut rng = crate::log::batch::test_support::XorShift(0x5c7a_9e37_79b9_7f4a);
        let seeds: [&[u8]; 3] = [
            b"n,,n=u,r=abc",
            b"c=biws,r=abc,p=AAAA",
            b"n,a=u,n=u,r=x,e=1",
        ];
        for round in 0..20_000 {
            let mut message = seeds[round % seeds.len()].to_vec();
            let len = (rng.next() % 40) as usize;
            if round % 2 == 0 {
                message.truncate((rng.next() % (message.len() as u64 + 1)) as usize);
            }
            for _ in 0..len {
                let byte = match rng.next() % 4 {
                    0 => b',',
                    1 => b'=',
                    _ => rng.next() as u8,
                };
                let at = (rng.next() % (message.len() as u64 + 1)) as usize;
                message.insert(at, byte);
            }
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            let _ = server.step(&message, &image);
            let _ = server.step(&message, &image);
        }
    }
}
