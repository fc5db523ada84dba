//! How `topic consume` prints each record as it arrives: through a kcat-like `--format` string (table
//! output), as one JSON object per line (`--output json`), or as one YAML document per record
//! (`--output yaml`, each starting with `---`).
//!
//! Binary safety: a `--format` string writes keys, values and header values as raw bytes. JSON and
//! YAML carry text, so a key, value or header value that is valid UTF-8 is written as a string and one
//! that is not as standard base64, with `key_encoding` / `value_encoding` (and per header
//! `value_encoding`) saying which: `"utf8"` or `"base64"` (`null` beside a null key or value). Scripts
//! that need exact bytes check the encoding field; text stays readable.

use std::io::Write;

use base64::Engine;
use kafka_protocol::records::{Record, TimestampType};
use serde::Serialize;

use super::OutputFormat;
use crate::error::CliError;
use crate::parse::{format_pieces, FormatPiece};

/// One piece of a `--format` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatToken {
    /// Bytes written as they are.
    Literal(Vec<u8>),
    /// `%t`: the topic.
    Topic,
    /// `%p`: the partition.
    Partition,
    /// `%o`: the offset.
    Offset,
    /// `%k`: the key (nothing for a null key).
    Key,
    /// `%v`: the value (nothing for a null value).
    Value,
    /// `%K`: the key's size in bytes (-1 for null).
    KeySize,
    /// `%S`: the value's size in bytes (-1 for null).
    ValueSize,
    /// `%h`: the headers as `k=v` separated by commas.
    Headers,
    /// `%T`: the timestamp in milliseconds since the epoch.
    Timestamp,
}

/// A parsed `--format` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFormat(pub Vec<FormatToken>);

impl RecordFormat {
    /// The default of `topic consume`: the value and a newline, as kcat prints it.
    pub fn value_per_line() -> Self {
        RecordFormat(vec![
            FormatToken::Value,
            FormatToken::Literal(b"\n".to_vec()),
        ])
    }

    /// Parses a format: `%t %p %o %k %v %K %S %h %T`, `%%` for a percent sign, and the escapes of
    /// [`crate::parse::unescape`]. Nothing is added: end it in `\n` for one record per line.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let tokens = format_pieces(raw, "tpokvKShT")?
            .into_iter()
            .map(|piece| match piece {
                FormatPiece::Literal(bytes) => FormatToken::Literal(bytes),
                FormatPiece::Field('t') => FormatToken::Topic,
                FormatPiece::Field('p') => FormatToken::Partition,
                FormatPiece::Field('o') => FormatToken::Offset,
                FormatPiece::Field('k') => FormatToken::Key,
                FormatPiece::Field('v') => FormatToken::Value,
                FormatPiece::Field('K') => FormatToken::KeySize,
                FormatPiece::Field('S') => FormatToken::ValueSize,
                FormatPiece::Field('h') => FormatToken::Headers,
                FormatPiece::Field(_) => FormatToken::Timestamp,
            })
            .collect();
        Ok(RecordFormat(tokens))
    }
}

/// A record as JSON and YAML show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// `create` (set by the producer) or `log_append` (set by the broker).
    pub timestamp_type: &'static str,
    /// The key, as text or base64; `null` when the record has none.
    pub key: Option<String>,
    /// `utf8` or `base64`; `null` with a null key.
    pub key_encoding: Option<&'static str>,
    /// The value, as text or base64; `null` for a tombstone.
    pub value: Option<String>,
    /// `utf8` or `base64`; `null` with a null value.
    pub value_encoding: Option<&'static str>,
    /// The headers, in record order.
    pub headers: Vec<HeaderView>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderView {
    /// The header key.
    pub key: String,
    /// The value, as text or base64; `null` when it has none.
    pub value: Option<String>,
    /// `utf8` or `base64`; `null` with a null value.
    pub value_encoding: Option<&'static str>,
}

impl RecordView {
    /// The view of `record` of `topic`'s `partition`.
    pub fn new(topic: &str, partition: i32, record: &Record) -> Self {
        let (key, key_encoding) = text_or_base64(record.key.as_deref());
        let (value, value_encoding) = text_or_base64(record.value.as_deref());
        RecordView {
            topic: topic.to_owned(),
            partition,
            offset: record.offset,
            timestamp: record.timestamp,
            timestamp_type: match record.timestamp_type {
                TimestampType::Creation => "create",
                TimestampType::LogAppend => "log_append",
            },
            key,
            key_encoding,
            value,
            value_encoding,
            headers: record
                .headers
                .iter()
                .map(|(key, value)| {
                    let (value, value_encoding) = text_or_base64(value.as_deref());
                    HeaderView {
                        key: key.to_string(),
                        value,
                        value_encoding,
                    }
                })
                .collect(),
        }
    }
}

/// Bytes as a string and its encoding: UTF-8 text as it is, anything else as base64.
fn text_or_base64(bytes: Option<&[u8]>) -> (Option<String>, Option<&'static str>) {
    match bytes {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), Some("utf8")),
            Err(_) => (
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                Some("base64"),
            ),
        },
    }
}

/// Writes one consumed record in `output` (`format` is used for table output).
pub fn write_record(
    out: &mut impl Write,
    output: OutputFormat,
    format: &RecordFormat,
    topic: &str,
    partition: i32,
    record: &Record,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, &RecordView::new(topic, partition, record))?;
            out.write_all(b"\n")?;
        }
        OutputFormat::Yaml => super::write_yaml(out, &RecordView::new(topic, partition, record))?,
        OutputFormat::Table => write_formatted(out, format, topic, partition, record)?,
    }
    Ok(())
}

/// Writes `record` through a `--format` string, keys and values as raw bytes.
fn write_formatted(
    out: &mut impl Write,
    format: &RecordFormat,
    topic: &str,
    partition: i32,
    record: &Record,
) -> std::io::Result<()> {
    let size = |bytes: &Option<bytes::Bytes>| bytes.as_ref().map_or(-1, |b| b.len() as i64);
    for token in &format.0 {
        match token {
            FormatToken::Literal(bytes) => out.write_all(bytes)?,
            FormatToken::Topic => out.write_all(topic.as_bytes())?,
            FormatToken::Partition => write!(out, "{partition}")?,
            FormatToken::Offset => write!(out, "{}", record.offset)?,
            FormatToken::Key => out.write_all(record.key.as_deref().unwrap_or_default())?,
            FormatToken::Value => out.write_all(record.value.as_deref().unwrap_or_default())?,
            FormatToken::KeySize => write!(out, "{}", size(&record.key))?,
            FormatToken::ValueSize => write!(out, "{}", size(&record.value))?,
            FormatToken::Timestamp => write!(out, "{}", record.timestamp)?,
            FormatToken::Headers => {
                for (i, (key, value)) in record.headers.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(key.as_bytes())?;
                    out.write_all(b"=")?;
                    out.write_all(value.as_deref().unwrap_or_default())?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::records::{batch_record, ProducerIdentity};
    use bytes::Bytes;

    fn record() -> Record {
        let mut record = batch_record(
            ProducerIdentity::NONE,
            -1,
            0,
            1_700_000_000_123,
            Some(Bytes::from_static(b"k1")),
            Some(Bytes::from_static(&[0xff, 0x00, b'a'])),
            &[
                ("trace".to_owned(), Some(Bytes::from_static(b"abc"))),
                ("none".to_owned(), None),
            ],
        );
        record.offset = 42;
        record
    }

    fn rendered(output: OutputFormat, format: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let format = RecordFormat::parse(format).expect("valid format");
        write_record(&mut out, output, &format, "orders", 3, &record()).expect("writes");
        out
    }

    #[test]
    fn formats_write_every_field_and_raw_bytes() {
        assert_eq!(
            rendered(OutputFormat::Table, r"%t/%p@%o %k=%v [%h] %T %K %S 100%%\n"),
            b"orders/3@42 k1=\xff\x00a [trace=abc,none=] 1700000000123 2 3 100%\n".to_vec()
        );
        assert_eq!(
            RecordFormat::parse("%v\\n"),
            Ok(RecordFormat::value_per_line())
        );
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(RecordFormat::parse("%x")
            .expect_err("unknown field")
            .contains("unknown format field '%x'"));
        assert!(RecordFormat::parse("%v%").is_err());
        assert!(RecordFormat::parse("\\q%v").is_err());
    }

    #[test]
    fn json_lines_flag_binary_values_as_base64() {
        let line = rendered(OutputFormat::Json, "");
        assert_eq!(line.last(), Some(&b'\n'));
        let json: serde_json::Value = serde_json::from_slice(&line).expect("one JSON object");
        assert_eq!(
            json,
            serde_json::json!({
                "topic": "orders", "partition": 3, "offset": 42, "timestamp": 1_700_000_000_123i64,
                "timestamp_type": "create",
                "key": "k1", "key_encoding": "utf8",
                "value": "/wBh", "value_encoding": "base64",
                "headers": [
                    {"key": "trace", "value": "abc", "value_encoding": "utf8"},
                    {"key": "none", "value": null, "value_encoding": null},
                ],
            })
        );
    }

    #[test]
    fn yaml_is_one_document_per_record() {
        let text = String::from_utf8(rendered(OutputFormat::Yaml, "")).expect("utf-8");
        assert!(text.starts_with("---\n"), "{text}");
        let view: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
        assert_eq!(view["offset"], 42);
        assert_eq!(view["value_encoding"], "base64");
    }
}
