//! The value parsers of the command line: each turns one flag or argument into a typed value, or into the
//! one-line message clap prints under `error: invalid value`. They check only the value itself; rules
//! that need several values at once (a config key given twice) stay with the arguments in `cli`.
//! Sizes, counts, partition lists and `--acks` serve `bench` and `group reset-offsets`; config entries
//! and keys serve `topic`; addresses serve `--controllers` and `--bootstrap-servers`; `datetime` reads
//! the RFC 3339 time of `--to-datetime` with chrono.

use crate::bench::PartitionSelection;
use chronik_metadata::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};

/// Parses `--acks`: `all`, `-1`, `1` or `0`.
pub fn acks(raw: &str) -> Result<i16, String> {
    match raw.trim() {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(format!("acks must be all, -1, 1 or 0, got '{other}'")),
    }
}

/// Parses `all` or a comma-separated list of partition indexes (sorted, duplicates dropped).
pub fn partitions(raw: &str) -> Result<PartitionSelection, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("all") {
        return Ok(PartitionSelection::All);
    }
    let mut partitions = Vec::new();
    for item in raw.split(',') {
        let partition: i32 = item
            .trim()
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| format!("'{}' is not a partition index", item.trim()))?;
        partitions.push(partition);
    }
    partitions.sort_unstable();
    partitions.dedup();
    Ok(PartitionSelection::Only(partitions))
}

/// Parses a positive count; `_` separators are allowed (`1_000_000`).
pub fn count(raw: &str) -> Result<u64, String> {
    raw.trim()
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("expected a positive number, got '{raw}'"))
}

/// Parses a byte size: a number with an optional `KiB`, `MiB` (or `K`, `M`) suffix.
pub fn size(raw: &str) -> Result<u32, String> {
    let text = raw.trim().replace('_', "");
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = if let Some(d) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (d, 1024 * 1024)
    } else if let Some(d) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (d, 1024)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= 1 << 30)
        .ok_or_else(|| {
            format!(
                "expected a size in bytes (e.g. 16384, 64KiB, 1MiB) of at most 1GiB, got '{raw}'"
            )
        })
}

/// [`size`], above zero.
pub fn positive_size(raw: &str) -> Result<u32, String> {
    match size(raw)? {
        0 => Err(format!("expected a positive size, got '{raw}'")),
        n => Ok(n),
    }
}

/// One `KEY=VALUE` config argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config name, e.g. `retention.ms`.
    pub key: String,
    /// The value; may itself contain `=`.
    pub value: String,
}

/// Parses `KEY=VALUE`: the key is non-empty and the value is split at the first `=`.
pub fn config_entry(raw: &str) -> Result<ConfigEntry, String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got '{raw}'"));
    };
    let key = config_key(key)?;
    if value.is_empty() {
        return Err(format!(
            "config '{key}' has an empty value (to fall back to the default, delete it instead)"
        ));
    }
    Ok(ConfigEntry {
        key,
        value: value.to_owned(),
    })
}

/// Parses `NAME=LEVEL` (a feature flag and a level, as `kafka-features.sh --feature` takes it).
pub fn feature_level(raw: &str) -> Result<(String, i32), String> {
    let (name, level) = raw
        .split_once('=')
        .ok_or_else(|| format!("'{raw}': expected NAME=LEVEL"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("'{raw}': the feature name is empty"));
    }
    let level = level
        .trim()
        .parse::<i16>()
        .map_err(|_| format!("'{raw}': the level must be a number from 0 to 32767"))?;
    if level < 0 {
        return Err(format!(
            "'{raw}': the level must be a number from 0 to 32767"
        ));
    }
    Ok((name.to_owned(), i32::from(level)))
}

/// Parses a config name: non-empty, no whitespace, no `=`.
pub fn config_key(raw: &str) -> Result<String, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err("config key is empty".to_owned());
    }
    if key.contains('=') || key.chars().any(char::is_whitespace) {
        return Err(format!("'{key}' is not a config key"));
    }
    Ok(key.to_owned())
}

/// Parses a replica assignment as `kafka-topics --replica-assignment` writes it: partitions separated
/// by commas, each the broker ids of its replicas separated by colons (`1:2,2:3`).
pub fn replica_assignment(raw: &str) -> Result<Vec<Vec<i32>>, String> {
    raw.split(',')
        .map(|partition| {
            let replicas: Vec<i32> = partition
                .split(':')
                .map(|b| {
                    b.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|b| *b >= 0)
                        .ok_or_else(|| format!("'{}' is not a broker id", b.trim()))
                })
                .collect::<Result<_, _>>()?;
            Ok(replicas)
        })
        .collect()
}

/// Parses an `http://` URL (the probe speaks plain HTTP only).
pub fn http_url(raw: &str) -> Result<String, String> {
    let url = raw.trim();
    match url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url.to_owned()),
        _ => Err(format!(
            "expected an http(s)://HOST:PORT/PATH URL, got '{url}'"
        )),
    }
}

/// Parses one controller address `HOST:PORT` (an IPv6 host in brackets).
pub fn controller_address(raw: &str) -> Result<String, String> {
    let address = raw.trim();
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("expected HOST:PORT, got '{address}'"));
    };
    if host.is_empty() || host.contains("://") {
        return Err(format!("expected HOST:PORT, got '{address}'"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(address.to_owned()),
        _ => Err(format!("'{port}' is not a port in '{address}'")),
    }
}

/// Parses an RFC 3339 date-time (`2026-11-22T10:00:00Z`, `2026-11-22T12:00:00.250+02:00`) into
/// milliseconds since the Unix epoch; times before 1970 are refused (Kafka timestamps are not negative).
///
/// The date and time may also be separated by `t` or a space, `Z` may be `z`, fraction digits beyond
/// the millisecond are dropped (not rounded), and second 60, a leap second, counts as the next second
/// (Kafka timestamps have none). The offset is `Z` or `+HH:MM`/`-HH:MM` up to 23:59, ASCII only.
pub fn datetime(raw: &str) -> Result<i64, String> {
    let text = raw.trim();
    let bad = || {
        format!(
            "'{text}' is not an RFC 3339 date-time such as 2026-11-22T10:00:00Z or \
             2026-11-22T12:00:00+02:00"
        )
    };
    // chrono also takes U+2212 MINUS SIGN before an offset; RFC 3339 is ASCII.
    if !text.is_ascii() {
        return Err(bad());
    }
    let ms = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| bad())?
        .timestamp_millis();
    if ms < 0 {
        return Err(format!("'{text}' is before 1970-01-01T00:00:00Z"));
    }
    Ok(ms)
}

/// A Kafka ACL enum value by its name, case-insensitively (`read`, `DESCRIBE_CONFIGS`,
/// `describe-configs`).
fn acl_enum<T: Copy>(
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    concrete: impl Fn(T) -> bool,
) -> Result<T, String> {
    parse(value).filter(|v| concrete(*v)).ok_or_else(|| {
        let names: Vec<&str> = all
            .iter()
            .copied()
            .filter(|v| concrete(*v))
            .map(name)
            .collect();
        format!("'{value}' is not one of {}", names.join(", "))
    })
}

pub fn acl_operation(value: &str) -> Result<AclOperation, String> {
    acl_enum(
        value,
        AclOperation::parse,
        AclOperation::ALL_VALUES,
        AclOperation::name,
        |v| !matches!(v, AclOperation::Unknown | AclOperation::Any),
    )
}

pub fn acl_permission(value: &str) -> Result<AclPermissionType, String> {
    acl_enum(
        value,
        AclPermissionType::parse,
        AclPermissionType::ALL_VALUES,
        AclPermissionType::name,
        |v| !matches!(v, AclPermissionType::Unknown | AclPermissionType::Any),
    )
}

pub fn resource_type(value: &str) -> Result<ResourceType, String> {
    acl_enum(
        value,
        ResourceType::parse,
        ResourceType::ALL_VALUES,
        ResourceType::name,
        |v| !matches!(v, ResourceType::Unknown | ResourceType::Any),
    )
}

/// Any pattern type but UNKNOWN; `acl create` leaves ANY and MATCH to the controller to refuse.
pub fn pattern_type(value: &str) -> Result<PatternType, String> {
    acl_enum(
        value,
        PatternType::parse,
        PatternType::ALL_VALUES,
        PatternType::name,
        |v| v != PatternType::Unknown,
    )
}

/// Unescapes `\n`, `\t`, `\r`, `\0`, `\\` and `\xHH` (kcat's delimiters and format strings); any
/// other backslash is an error, so a typo does not silently become a literal.
pub fn unescape(raw: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let value = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("'\\x' needs two hex digits in '{raw}'"))?;
                out.push(value);
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape '\\{}' in '{raw}' (use \\n \\t \\r \\0 \\\\ or \\xHH)",
                    other as char
                ))
            }
            None => return Err(format!("'{raw}' ends in a lone backslash")),
        }
    }
    Ok(out)
}

/// A piece of a kcat-style format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatPiece {
    /// Literal bytes, escapes applied.
    Literal(Vec<u8>),
    /// A `%x` field, by its letter.
    Field(char),
}

/// Splits a format into literal text (with [`unescape`]) and `%x` fields whose letter is one of
/// `fields`; `%%` is a percent sign.
pub fn format_pieces(raw: &str, fields: &str) -> Result<Vec<FormatPiece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => literal.push('%'),
            Some(letter) if fields.contains(letter) => {
                if !literal.is_empty() {
                    pieces.push(FormatPiece::Literal(unescape(&std::mem::take(
                        &mut literal,
                    ))?));
                }
                pieces.push(FormatPiece::Field(letter));
            }
            Some(other) => {
                let known: Vec<String> = fields.chars().map(|f| format!("%{f}")).collect();
                return Err(format!(
                    "unknown format field '%{other}' (use {} or %%)",
                    known.join(" ")
                ));
            }
            None => return Err(format!("'{raw}' ends in a lone '%'")),
        }
    }
    if !literal.is_empty() {
        pieces.push(FormatPiece::Literal(unescape(&literal)?));
    }
    Ok(pieces)
}

/// Parses a non-empty delimiter with [`unescape`].
pub fn delimiter(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = unescape(raw)?;
    if bytes.is_empty() {
        return Err("the delimiter is empty".to_owned());
    }
    Ok(bytes)
}

/// Parses a record header `KEY=VALUE` (split at the first `=`; the value may be empty, the key not).
pub fn header(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected a header KEY=VALUE, got '{raw}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_kcats_and_nothing_else() {
        assert_eq!(unescape(r"%k\t%v\n").as_deref(), Ok(&b"%k\t%v\n"[..]));
        assert_eq!(unescape(r"a\\b\x00\x7e").as_deref(), Ok(&b"a\\b\0~"[..]));
        assert!(unescape(r"\q")
            .expect_err("unknown")
            .contains("unknown escape"));
        assert!(unescape(r"\x4").is_err());
        assert!(unescape("x\\").is_err());
        assert_eq!(delimiter(r"\n").as_deref(), Ok(&b"\n"[..]));
        assert!(delimiter("").is_err());
    }

    #[test]
    fn headers_split_at_the_first_equals_sign() {
        assert_eq!(header("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(header("a="), Ok(("a".to_owned(), String::new())));
        assert!(header("=v").is_err());
        assert!(header("novalue").is_err());
    }

    #[test]
    fn config_entries_split_at_the_first_equals_sign() {
        assert_eq!(
            config_entry("cleanup.policy=compact"),
            Ok(ConfigEntry {
                key: "cleanup.policy".into(),
                value: "compact".into()
            })
        );
        assert_eq!(
            config_entry("a=b=c").map(|entry| entry.value),
            Ok("b=c".to_owned())
        );
    }

    #[test]
    fn malformed_config_entries_are_rejected() {
        assert_eq!(
            config_entry("retention.ms"),
            Err("expected KEY=VALUE, got 'retention.ms'".to_owned())
        );
        assert_eq!(config_entry("=1"), Err("config key is empty".to_owned()));
        assert!(config_entry("retention.ms=").is_err());
        assert!(config_entry("a b=1").is_err());
    }

    #[test]
    fn controller_addresses_need_a_port() {
        assert_eq!(controller_address(" h:9093 "), Ok("h:9093".to_owned()));
        assert_eq!(
            controller_address("[::1]:9093"),
            Ok("[::1]:9093".to_owned())
        );
        assert!(controller_address("localhost").is_err());
        assert!(controller_address("h:0").is_err());
        assert!(controller_address("h:http").is_err());
        assert!(controller_address(":9093").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes_and_separators() {
        assert_eq!(size("16384"), Ok(16_384));
        assert_eq!(size("16_384"), Ok(16_384));
        assert_eq!(size("64KiB"), Ok(65_536));
        assert_eq!(size("64k"), Ok(65_536));
        assert_eq!(size("1MiB"), Ok(1_048_576));
        assert_eq!(size("100B"), Ok(100));
        assert_eq!(size("0"), Ok(0));
        assert!(size("2GiB").is_err());
        assert!(size("lots").is_err());
        assert!(positive_size("0").is_err());
        assert_eq!(count("1_000_000"), Ok(1_000_000));
        assert!(count("0").is_err());
    }

    #[test]
    fn rfc3339_datetimes_become_epoch_milliseconds() {
        assert_eq!(datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(datetime("2026-11-22T10:00:00Z"), Ok(1_795_341_600_000));
        assert_eq!(datetime("2026-11-22T12:00:00+02:00"), Ok(1_795_341_600_000));
        assert_eq!(datetime("2026-11-22T05:30:00-04:30"), Ok(1_795_341_600_000));
        assert_eq!(datetime("2026-11-22t10:00:00.25z"), Ok(1_795_341_600_250));
        assert_eq!(
            datetime("2026-11-22 10:00:00.123456Z"),
            Ok(1_795_341_600_123)
        );
        assert_eq!(datetime("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(datetime("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00Z",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00+2:00",
            "2026-11-22T10:00:00.Z",
            "1969-12-31T23:59:59Z",
            "+2026-11-22T10:00:00Z",
        ] {
            assert!(datetime(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn leap_seconds_count_as_the_next_second() {
        assert_eq!(
            datetime("2026-11-22T09:59:60Z"),
            datetime("2026-11-22T10:00:00Z")
        );
        assert_eq!(
            datetime("2016-12-31T23:59:60.5+00:00"),
            Ok(1_483_228_800_500)
        );
        assert_eq!(datetime("1969-12-31T23:59:60Z"), Ok(0));
        assert!(datetime("2026-11-22T10:00:61Z").is_err());
    }

    #[test]
    fn datetime_offsets_are_two_ascii_digit_fields() {
        assert_eq!(
            datetime("2026-11-22T10:00:00+23:59"),
            Ok(1_795_341_600_000 - 86_340_000)
        );
        assert_eq!(datetime(" 2026-11-22T10:00:00Z\n"), Ok(1_795_341_600_000));
        for bad in [
            "2026-11-22T10:00:00+24:00",
            "2026-11-22T10:00:00+00:60",
            "2026-11-22T10:00:00+0200",
            "2026-11-22T10:00:00+-2:00",
            "2026-11-22T10:00:00+02:-5",
            "2026-11-22T10:00:00\u{2212}02:00",
            "2026-11-22T10:00:00Zx",
        ] {
            let error = datetime(bad).expect_err(bad);
            assert!(
                error.contains("not an RFC 3339 date-time"),
                "{bad:?}: {error}"
            );
        }
        assert_eq!(
            datetime("1970-01-01T00:30:00+01:00"),
            Err("'1970-01-01T00:30:00+01:00' is before 1970-01-01T00:00:00Z".to_owned())
        );
    }

    #[test]
    fn acl_names_read_case_insensitively_and_filters_keep_any_and_match_out_of_bindings() {
        assert_eq!(
            acl_operation("describe-configs"),
            Ok(AclOperation::DescribeConfigs)
        );
        assert_eq!(acl_permission("Deny"), Ok(AclPermissionType::Deny));
        assert_eq!(
            resource_type("TRANSACTIONAL_ID"),
            Ok(ResourceType::TransactionalId)
        );
        assert_eq!(pattern_type("match"), Ok(PatternType::Match));
        assert!(acl_operation("any").is_err());
        assert!(resource_type("unknown").is_err());
        let message = acl_permission("maybe").expect_err("refused");
        assert!(message.contains("DENY, ALLOW"), "{message}");
    }
}
