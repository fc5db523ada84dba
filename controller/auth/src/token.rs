//! A shared secret that authenticates a caller of the controllers.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::CredentialError;

/// Shortest token accepted: anything shorter is too easy to guess.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A bearer token, read from a file. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token {
    secret: String,
    /// SHA-256 of the secret: comparisons run over digests, so neither the content nor the length of
    /// the expected token shows in how long a comparison takes.
    digest: [u8; 32],
}

impl Token {
    /// Reads a token file: its content without surrounding whitespace (a trailing newline is fine),
    /// at least [`MIN_TOKEN_CHARS`] visible ASCII characters without spaces.
    pub fn from_file(what: &'static str, path: &Path) -> Result<Token, CredentialError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?;
        Token::new(text.trim()).map_err(|reason| CredentialError::Invalid {
            what,
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A token from its text; the error says what is wrong without repeating the text.
    pub fn new(secret: &str) -> Result<Token, String> {
        if secret.len() < MIN_TOKEN_CHARS {
            return Err(format!(
                "a token has at least {MIN_TOKEN_CHARS} characters, this one {}",
                secret.len()
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is visible ASCII characters without spaces".into());
        }
        Ok(Token {
            secret: secret.to_owned(),
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.digest.ct_eq(&digest).into()
    }

    /// The `authorization` header value that carries this token.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.matches(other.secret.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves_and_never_print() {
        let token = Token::new("0123456789abcdef-secret").unwrap();
        assert!(token.matches(b"0123456789abcdef-secret"));
        assert!(!token.matches(b"0123456789abcdef-secreT"));
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains("secret"));
        assert_eq!(token.header_value(), "Bearer 0123456789abcdef-secret");
    }

    #[test]
    fn short_or_spaced_tokens_are_refused_without_echoing_them() {
        let error = Token::new("short").unwrap_err();
        assert!(!error.contains("short"), "{error}");
        assert!(Token::new("0123456789abcdef with space").is_err());
    }

    #[test]
    fn a_token_file_may_end_in_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        let token = Token::from_file("token file", &path).unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        std::fs::write(&path, "\n").unwrap();
        let error = Token::from_file("token file", &path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("at least 16"), "{error}");
    }
}
