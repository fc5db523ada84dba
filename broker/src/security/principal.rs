//! The principal of a TLS client certificate, as Kafka builds it (`DefaultKafkaPrincipalBuilder` with
//! `SslPrincipalMapper`): the certificate's subject as an RFC 2253 string, the way Java's
//! `X500Principal.getName()` writes it (most specific RDN first, `CN=alice,OU=eng,O=acme`), rewritten by
//! `ssl.principal.mapping.rules`, and prefixed with `User:`.
//!
//! Rules are Kafka's syntax: `RULE:pattern/replacement/[LU]`, separated by commas, and `DEFAULT` (the
//! DN unchanged). The first rule whose pattern matches the whole DN applies; `$1`… in the replacement
//! name the pattern's groups; `L`/`U` lower/upper-case the result. When no rule applies the
//! certificate is refused, as Kafka refuses it ("No rules apply to DN").

use regex::Regex;
use x509_parser::asn1_rs::ToDer;
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

/// One rule of `ssl.principal.mapping.rules` (Kafka's `SslPrincipalMapper.Rule`).
#[derive(Clone, Debug)]
pub enum MappingRule {
    Default,
    Rule {
        /// The pattern anchored to the whole DN (Java's `Matcher.matches`).
        whole: Regex,
        /// The pattern as written, for the replacement (Java's `String.replaceAll`).
        pattern: Regex,
        /// The replacement in Rust's syntax (`$1` becomes `${1}`).
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Lower,
    Upper,
}

/// Kafka's `SslPrincipalMapper`.
#[derive(Clone, Debug)]
pub struct SslPrincipalMapper {
    rules: Vec<MappingRule>,
}

impl Default for SslPrincipalMapper {
    fn default() -> Self {
        SslPrincipalMapper {
            rules: vec![MappingRule::Default],
        }
    }
}

impl SslPrincipalMapper {
    /// Parses `ssl.principal.mapping.rules`.
    pub fn parse(rules: &str) -> Result<Self, String> {
        let mut parsed = Vec::new();
        let mut rest = rules.trim_start();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                parsed.push(MappingRule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after).ok_or_else(|| {
                    format!("rule '{rest}': expected RULE:pattern/replacement/[LU]")
                })?;
                let (replacement, after) = until_slash(after).ok_or_else(|| {
                    format!("rule '{rest}': expected RULE:pattern/replacement/[LU]")
                })?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let compile =
                    |p: &str| Regex::new(p).map_err(|e| format!("rule pattern '{pattern}': {e}"));
                parsed.push(MappingRule::Rule {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    pattern: compile(pattern)?,
                    replacement: java_replacement(replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "invalid rule '{rest}': rules are RULE:pattern/replacement/[LU] or DEFAULT"
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("invalid rule '{rest}': expected ',' between rules")),
            }
        }
        if parsed.is_empty() {
            return Err("no rules: give DEFAULT for the DN as it is".into());
        }
        Ok(SslPrincipalMapper { rules: parsed })
    }

    /// The principal name of a DN: the first applying rule's result, `None` when none applies.
    pub fn name(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            MappingRule::Default => Some(dn.to_owned()),
            MappingRule::Rule {
                whole,
                pattern,
                replacement,
                case,
            } => {
                if !whole.is_match(dn) {
                    return None;
                }
                let result = pattern.replace_all(dn, replacement.as_str()).into_owned();
                Some(match case {
                    Some(Case::Lower) => result.to_lowercase(),
                    Some(Case::Upper) => result.to_uppercase(),
                    None => result,
                })
            }
        })
    }
}

/// The text up to the next `/` not escaped by a backslash, and what follows that slash.
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '/' if !escaped => return Some((&s[..i], &s[i + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// Java's replacement syntax (`$1`, `\$`) in Rust's (`${1}`, `$$`).
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            '/' => out.push('/'),
            other => out.push(other),
        }
    }
    out
}

/// The subject DN of a DER certificate, as RFC 2253 (Java's `X500Principal.getName()`).
pub fn subject_dn(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    Ok(rfc2253(cert.subject()))
}

/// The keywords `X500Principal.getName(RFC2253)` writes; other types are dotted OIDs.
fn keyword(oid: &Oid<'_>) -> Option<&'static str> {
    Some(match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253: RDNs last to first, `,` between them, `+` inside a multi-valued one; values of known
/// types as escaped strings, others as `#` and the hex of their DER encoding.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    match (keyword(oid), attribute.as_str()) {
                        (Some(kw), Ok(value)) => format!("{kw}={}", escape_value(value)),
                        (kw, _) => {
                            let value = attribute.attr_value();
                            let hex: String = value
                                .to_der_vec()
                                .unwrap_or_default()
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect();
                            let ty = kw.map(str::to_owned).unwrap_or_else(|| oid.to_id_string());
                            format!("{ty}=#{hex}")
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 2253 section 2.4: `,+"\<>;` escaped, and a leading `#` or space and a trailing space.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_subject(entries: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        for (ty, value) in entries {
            dn.push(ty.clone(), *value);
        }
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn the_subject_is_written_most_specific_first_as_java_does() {
        let der = cert_with_subject(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "acme"),
            (rcgen::DnType::OrganizationalUnitName, "eng"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject_dn(&der).expect("dn"), "CN=alice,OU=eng,O=acme,C=DE");
    }

    #[test]
    fn special_characters_are_escaped() {
        let der = cert_with_subject(&[
            (rcgen::DnType::OrganizationName, "Acme, Inc."),
            (rcgen::DnType::CommonName, " #a+b=c;"),
        ]);
        assert_eq!(
            subject_dn(&der).expect("dn"),
            r"CN=\ #a\+b=c\;,O=Acme\, Inc."
        );
        assert!(subject_dn(b"not a certificate").is_err());
    }

    #[test]
    fn mapping_rules_follow_kafkas_examples() {
        // The examples of Kafka's documentation (`ssl.principal.mapping.rules`).
        let mapper = SslPrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .expect("parses");
        assert_eq!(
            mapper.name("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            Some("serviceuser".into())
        );
        assert_eq!(
            mapper.name("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            Some("adminuser@admin".into())
        );
        assert_eq!(mapper.name("CN=Bob.Smith,OU=x"), Some("bob.smith".into()));
        assert_eq!(mapper.name("O=none"), Some("O=none".into()));
    }

    #[test]
    fn without_default_a_dn_no_rule_matches_has_no_principal() {
        let mapper = SslPrincipalMapper::parse("RULE:^CN=([^,]*),.*$/$1/U").expect("parses");
        assert_eq!(mapper.name("CN=alice,O=acme"), Some("ALICE".into()));
        assert_eq!(mapper.name("O=acme"), None);
        assert_eq!(
            SslPrincipalMapper::default().name("CN=x"),
            Some("CN=x".into())
        );
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        for bad in [
            "",
            "RULE:abc",
            "RULE:a/b",
            "RULE:(/x/",
            "NOPE",
            "DEFAULT DEFAULT",
        ] {
            assert!(SslPrincipalMapper::parse(bad).is_err(), "{bad:?}");
        }
        let escaped = SslPrincipalMapper::parse(r"RULE:^CN=a\/b$/x\/y/").expect("escaped slash");
        assert_eq!(escaped.name("CN=a/b"), Some("x/y".into()));
    }
}
