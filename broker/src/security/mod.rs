//! Security of the Kafka listeners: which protocol each listener speaks (Kafka's
//! `listener.security.protocol.map`), TLS (`tls`), the principal of a client certificate
//! (`principal`), and SASL (`sasl`: the per-connection authenticator; `scram` and `plain`: the
//! mechanisms). The connection (`connection.rs`) drives them; handlers only ever see the resulting
//! `Session`.
//!
//! What must stay true: a connection on a SASL listener reaches a handler only once authenticated
//! (ApiVersions excepted, as in Kafka); nothing here logs a password, a proof, a nonce or a key; and no
//! byte a client sends can panic the broker (the parsers are fuzzed in their tests).

pub mod plain;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::fmt;
use std::sync::Arc;

// The protocol and mechanism names are shared with the clients' side (the replica fetchers, chronikctl).
pub use chronik_wire::{SaslMechanism, SecurityProtocol};

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one is `User:ANONYMOUS`, one with an untrusted
    /// one is refused.
    Requested,
    /// A client without a trusted certificate is refused.
    Required,
}

/// SASL settings of the SASL listeners.
#[derive(Clone, Debug)]
pub struct SaslSettings {
    /// `--sasl-enabled-mechanisms`, in the order SaslHandshake lists them.
    pub mechanisms: Vec<SaslMechanism>,
    /// KIP-368's `connections.max.reauth.ms`; 0 turns re-authentication off (sessions never expire).
    pub max_reauth_ms: u64,
}

/// What one listener's connections need to secure themselves (cheap to clone).
#[derive(Clone)]
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    /// Present exactly on SSL and SASL_SSL listeners.
    pub tls: Option<Arc<tls::ServerTls>>,
    /// How a client certificate's subject becomes a principal (SSL listeners).
    pub principal_mapper: Arc<principal::SslPrincipalMapper>,
    /// Present exactly on SASL listeners.
    pub sasl: Option<Arc<SaslSettings>>,
}

impl fmt::Debug for ListenerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerSecurity")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl ListenerSecurity {
    /// A PLAINTEXT listener: no TLS, no SASL, every connection `User:ANONYMOUS`.
    pub fn plaintext() -> Self {
        ListenerSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            principal_mapper: Arc::new(principal::SslPrincipalMapper::default()),
            sasl: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_mechanisms_parse_by_kafkas_names() {
        for p in SecurityProtocol::ALL {
            assert_eq!(p.name().parse::<SecurityProtocol>(), Ok(p));
        }
        assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert_eq!(
            SaslMechanism::from_name("SCRAM-SHA-512"),
            Some(SaslMechanism::ScramSha512)
        );
        assert_eq!(SaslMechanism::from_name("plain"), None);
        assert_eq!(SaslMechanism::from_name("GSSAPI"), None);
    }
}
