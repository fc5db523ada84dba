//! `topic produce TOPIC`: records from stdin to the partition leaders, like `kcat -P` and
//! `rpk topic produce`. A reader thread splits stdin at `--delimiter` (a newline by default) and hands
//! records over as they come, so a pipe that stays open is produced as it is written; whatever has
//! arrived is sent together (at most `--batch-records` per partition per request) through the shared
//! [`Producer`]. Each record is parsed into key and value by `--format` (`%k` and `%v` with literal
//! separators), `--key-delimiter` or `--key`, gets the `-H` headers and a partition: `--partition`,
//! else murmur2 of the key modulo the partition count (where Kafka's Java client and rpk put keyed
//! records), else one partition per chunk read, taking turns.
//!
//! What must stay true: every input record ends in the report exactly once, numbered from 1 in input
//! order, with its partition and offset or with the reason it failed (a line that does not match
//! `--format`, or the broker's error); the command exits non-zero when any record failed, after the
//! report is printed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bench::CompressionCodec;
use crate::cli::KafkaTargetArgs;
use crate::client::ControllerClient;
use crate::error::CliError;
use crate::kafka::producer::{
    now_ms, partition_for_key, BatchOutcome, OutgoingRecord, Producer, ProducerConfig,
};
use crate::kafka::KafkaError;
use crate::parse;

/// Records handed from the reader thread to the producer before the reader waits.
const READ_AHEAD_RECORDS: usize = 10_000;
/// Bytes of keys and values gathered into one round of Produce requests at most.
const ROUND_BYTES: usize = 1024 * 1024;

/// A non-empty byte string given on the command line with escapes (`\n`, `\t`, `\0`, `\xHH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiter(pub Vec<u8>);

impl Delimiter {
    /// The clap value parser.
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse::delimiter(raw).map(Delimiter)
    }
}

/// Arguments of `topic produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// The topic.
    pub topic: String,
    #[command(flatten)]
    pub target: KafkaTargetArgs,
    /// Write every record to this partition. By default a keyed record goes to murmur2(key) modulo
    /// the partition count (as Kafka's Java client and rpk place it), records without a key to one
    /// partition per chunk read, in turn.
    #[arg(long, short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// The key of every record.
    #[arg(long, short = 'k', conflicts_with_all = ["key_delimiter", "format"])]
    pub key: Option<String>,
    /// Split each record at the first DELIM into key and value (kcat's -K); a record without it is
    /// all value, with no key.
    #[arg(long, short = 'K', value_name = "DELIM", value_parser = Delimiter::parse, conflicts_with = "format")]
    pub key_delimiter: Option<Delimiter>,
    /// How each record reads: `%k` the key, `%v` the value, with literal text between them, e.g.
    /// '%k\t%v' or '%k=%v' (escapes \t \n \0 \xHH, `%%` a percent sign). Default: all value.
    #[arg(long, short = 'f', value_parser = InputFormat::parse)]
    pub format: Option<InputFormat>,
    /// What ends each record on stdin (escapes allowed, e.g. '\0' or '\n---\n').
    #[arg(long, short = 'D', value_name = "DELIM", default_value = "\\n", value_parser = Delimiter::parse)]
    pub delimiter: Delimiter,
    /// A header of every record, `KEY=VALUE`; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse::header)]
    pub headers: Vec<(String, String)>,
    /// Acknowledgements: `all` (or -1), 1 (leader only) or 0 (no answer: offsets are unknown).
    #[arg(long, value_name = "all|-1|1|0", default_value = "all", allow_hyphen_values = true, value_parser = parse::acks)]
    pub acks: i16,
    /// Compression codec of the batches.
    #[arg(long, short = 'z', value_enum, default_value_t = CompressionCodec::None)]
    pub compression: CompressionCodec,
    /// Produce without idempotence. Idempotence (a producer id and per-partition sequence numbers,
    /// so retries never duplicate) is on with acks=all and off with acks 1 or 0.
    #[arg(long)]
    pub no_idempotence: bool,
    /// At most this many records of one partition in one Produce request.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_records: u32,
}

/// One piece of a `--format` of `topic produce`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InputToken {
    Literal(Vec<u8>),
    Key,
    Value,
}

/// How a record on stdin splits into key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFormat(Vec<InputToken>);

impl InputFormat {
    /// Parses `%k` and `%v` (each at most once, `%v` required, never side by side) and literal text
    /// with escapes.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for piece in parse::format_pieces(raw, "kv")? {
            let token = match piece {
                parse::FormatPiece::Literal(bytes) => InputToken::Literal(bytes),
                parse::FormatPiece::Field('k') => InputToken::Key,
                parse::FormatPiece::Field(_) => InputToken::Value,
            };
            let field = !matches!(token, InputToken::Literal(_));
            if field
                && tokens
                    .last()
                    .is_some_and(|t| !matches!(t, InputToken::Literal(_)))
            {
                return Err(format!(
                    "'{raw}' puts two fields side by side: separate them with literal text"
                ));
            }
            if field && tokens.contains(&token) {
                return Err(format!("'{raw}' names a field twice"));
            }
            tokens.push(token);
        }
        if !tokens.contains(&InputToken::Value) {
            return Err(format!("'{raw}' has no %v"));
        }
        Ok(InputFormat(tokens))
    }

    /// The key and value of `record`, or why it does not match.
    pub fn split(&self, record: &[u8]) -> Result<(Option<Bytes>, Bytes), String> {
        let mut key = None;
        let mut value = Bytes::new();
        let mut at = 0usize;
        for (i, token) in self.0.iter().enumerate() {
            let rest = &record[at..];
            match token {
                InputToken::Literal(text) => {
                    if !rest.starts_with(text) {
                        return Err(format!(
                            "expected '{}' at byte {at}",
                            String::from_utf8_lossy(text)
                        ));
                    }
                    at += text.len();
                }
                field => {
                    let len = match self.0.get(i + 1) {
                        Some(InputToken::Literal(next)) => find(rest, next).ok_or_else(|| {
                            format!("no '{}' after byte {at}", String::from_utf8_lossy(next))
                        })?,
                        _ => rest.len(),
                    };
                    let bytes = Bytes::copy_from_slice(&rest[..len]);
                    if *field == InputToken::Key {
                        key = Some(bytes);
                    } else {
                        value = bytes;
                    }
                    at += len;
                }
            }
        }
        if at != record.len() {
            return Err(format!(
                "{} byte(s) left over after the format",
                record.len() - at
            ));
        }
        Ok((key, value))
    }
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// How every record's key and value are found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    /// No key; the whole record is the value.
    None,
    /// The same key for every record.
    Fixed(Bytes),
    /// Split at the first delimiter.
    Delimited(Vec<u8>),
    /// A `--format`.
    Format(InputFormat),
}

impl KeySource {
    fn of(args: &ProduceArgs) -> Self {
        if let Some(format) = &args.format {
            KeySource::Format(format.clone())
        } else if let Some(delimiter) = &args.key_delimiter {
            KeySource::Delimited(delimiter.0.clone())
        } else if let Some(key) = &args.key {
            KeySource::Fixed(Bytes::from(key.clone()))
        } else {
            KeySource::None
        }
    }

    fn split(&self, record: &[u8]) -> Result<(Option<Bytes>, Bytes), String> {
        match self {
            KeySource::None => Ok((None, Bytes::copy_from_slice(record))),
            KeySource::Fixed(key) => Ok((Some(key.clone()), Bytes::copy_from_slice(record))),
            KeySource::Delimited(delimiter) => Ok(match find(record, delimiter) {
                Some(at) => (
                    Some(Bytes::copy_from_slice(&record[..at])),
                    Bytes::copy_from_slice(&record[at + delimiter.len()..]),
                ),
                None => (None, Bytes::copy_from_slice(record)),
            }),
            KeySource::Format(format) => format.split(record),
        }
    }
}

/// What `topic produce` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProduceReport {
    /// The topic.
    pub topic: String,
    /// `all`, `1` or `0`.
    pub acks: String,
    /// Whether the records were written idempotently.
    pub idempotent: bool,
    /// Records written.
    pub produced: u64,
    /// Records not written (or not known to be, after a timeout).
    pub failed: u64,
    /// Every input record, in input order.
    pub records: Vec<ProducedRecord>,
}

/// One input record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProducedRecord {
    /// Its place in the input, from 1.
    pub record: u64,
    /// The partition it went to (none when it could not be parsed).
    pub partition: Option<i32>,
    /// Its offset; `None` when it failed, with acks=0, or for a retry the broker took for a
    /// duplicate it no longer had the offset of.
    pub offset: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl ProduceReport {
    /// The error the exit status reports when some records failed.
    pub fn failure(&self) -> Option<CliError> {
        let first = self.records.iter().find(|r| r.error.is_some())?;
        Some(CliError::Incomplete(format!(
            "{} of {} record(s) failed; the first, record {}: {}",
            self.failed,
            self.records.len(),
            first.record,
            first.error.as_deref().unwrap_or_default()
        )))
    }
}

/// Runs `topic produce` with records from `input`.
pub async fn produce(
    client: &ControllerClient,
    args: &ProduceArgs,
    input: impl Read + Send + 'static,
) -> Result<ProduceReport, CliError> {
    let bootstrap = bootstrap_servers(client, &args.target).await?;
    let config = ProducerConfig {
        acks: args.acks,
        idempotent: !args.no_idempotence,
        compression: args.compression.to_protocol(),
        request_timeout: client.request_timeout(),
        retry_timeout: Duration::from_millis(args.target.retry.retry_timeout_ms),
    };
    let mut producer = Producer::connect(&bootstrap, &args.topic, config).await?;
    let partition_count = producer.partition_count();
    if let Some(partition) = args.partition.filter(|p| *p >= partition_count) {
        return Err(KafkaError::UnknownPartition {
            topic: args.topic.clone(),
            partition,
            partitions: partition_count.max(0) as usize,
        }
        .into());
    }
    let keys = KeySource::of(args);
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(key, value)| (key.clone(), Some(Bytes::from(value.clone()))))
        .collect();
    let mut lines = spawn_reader(input, args.delimiter.0.clone());
    let mut report = ProduceReport {
        topic: args.topic.clone(),
        acks: match args.acks {
            -1 => "all".to_owned(),
            acks => acks.to_string(),
        },
        idempotent: producer.identity().producer_id >= 0,
        produced: 0,
        failed: 0,
        records: Vec::new(),
    };
    let per_partition = args.batch_records as usize;
    let mut turn = 0i32;
    while let Some(first) = lines.recv().await {
        let mut chunk = vec![first];
        let mut bytes = 0usize;
        while bytes < ROUND_BYTES && chunk.len() < per_partition {
            match lines.try_recv() {
                Ok(next) => {
                    bytes += next.as_ref().map_or(0, Vec::len);
                    chunk.push(next);
                }
                Err(_) => break,
            }
        }
        let sticky = turn.rem_euclid(partition_count.max(1));
        turn = turn.wrapping_add(1);
        let mut round: BTreeMap<i32, Vec<OutgoingRecord>> = BTreeMap::new();
        let mut numbers: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for raw in chunk {
            let index = report.records.len();
            report.records.push(ProducedRecord {
                record: index as u64 + 1,
                partition: None,
                offset: None,
                error: None,
            });
            let raw = match raw {
                Ok(raw) => raw,
                Err(error) => {
                    report.records[index].error = Some(format!("cannot read stdin: {error}"));
                    continue;
                }
            };
            let (key, value) = match keys.split(&raw) {
                Ok(split) => split,
                Err(reason) => {
                    report.records[index].error =
                        Some(format!("does not match the format: {reason}"));
                    continue;
                }
            };
            let partition = args.partition.unwrap_or_else(|| match &key {
                Some(key) => partition_for_key(key, partition_count),
                None => sticky,
            });
            report.records[index].partition = Some(partition);
            round.entry(partition).or_default().push(OutgoingRecord {
                key,
                value: Some(value),
                headers: headers.clone(),
                timestamp_ms: now_ms(),
            });
            numbers.entry(partition).or_default().push(index);
        }
        let outcomes = producer.send(&round).await?;
        for (partition, indexes) in numbers {
            let outcome = outcomes
                .get(&partition)
                .cloned()
                .unwrap_or(BatchOutcome::Failed {
                    error: "no outcome".to_owned(),
                });
            for (delta, index) in indexes.into_iter().enumerate() {
                let record = &mut report.records[index];
                match &outcome {
                    BatchOutcome::Written { base_offset } => {
                        record.offset = base_offset.map(|base| base + delta as i64);
                    }
                    BatchOutcome::Failed { error } => record.error = Some(error.clone()),
                }
            }
        }
    }
    producer.flush().await?;
    report.failed = report.records.iter().filter(|r| r.error.is_some()).count() as u64;
    report.produced = report.records.len() as u64 - report.failed;
    Ok(report)
}

/// The bootstrap servers given, else those of the client properties file (`-C`), else the live
/// brokers the controllers list.
pub async fn bootstrap_servers(
    client: &ControllerClient,
    target: &KafkaTargetArgs,
) -> Result<Vec<String>, CliError> {
    if !target.bootstrap_servers.is_empty() {
        return Ok(target.bootstrap_servers.clone());
    }
    let from_client_config = crate::kafka::security::bootstrap_servers();
    if !from_client_config.is_empty() {
        return Ok(from_client_config.to_vec());
    }
    let live = crate::cmd::broker::live_addresses(client).await?;
    if live.is_empty() {
        return Err(KafkaError::NoBootstrapServer.into());
    }
    Ok(live.into_values().collect())
}

/// Reads `input` on a thread of its own (stdin blocks) and sends each record, without its delimiter,
/// as soon as it is complete; a last record without a delimiter counts too. The channel closes at
/// the end of the input or after a read error (which is sent).
fn spawn_reader(
    input: impl Read + Send + 'static,
    delimiter: Vec<u8>,
) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(READ_AHEAD_RECORDS);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(input);
        let Some(&last) = delimiter.last() else {
            return;
        };
        let mut record = Vec::new();
        loop {
            match reader.read_until(last, &mut record) {
                Ok(0) => {
                    if !record.is_empty() {
                        let _ = sender.blocking_send(Ok(record));
                    }
                    return;
                }
                Ok(_) if record.ends_with(&delimiter) => {
                    record.truncate(record.len() - delimiter.len());
                    if sender
                        .blocking_send(Ok(std::mem::take(&mut record)))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(format: &str, record: &str) -> Result<(Option<String>, String), String> {
        let format = InputFormat::parse(format)?;
        format.split(record.as_bytes()).map(|(key, value)| {
            (
                key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
    }

    #[test]
    fn formats_split_records_at_their_literals() {
        assert_eq!(
            split(r"%k\t%v", "user-1\t{\"a\":1}\tb"),
            Ok((Some("user-1".into()), "{\"a\":1}\tb".into()))
        );
        assert_eq!(
            split("key=%k;value=%v!", "key=a;value=b=c!"),
            Ok((Some("a".into()), "b=c".into()))
        );
        assert_eq!(split("%v", "all of it"), Ok((None, "all of it".into())));
        assert_eq!(split("%v|%k", "v|k"), Ok((Some("k".into()), "v".into())));
        assert_eq!(
            split("%k 100%% %v", "a 100% b"),
            Ok((Some("a".into()), "b".into()))
        );
    }

    #[test]
    fn records_that_do_not_match_say_why() {
        assert!(split(r"%k\t%v", "no tab")
            .expect_err("no tab")
            .contains("no '\t'"));
        assert!(split("<%v>", "<x")
            .expect_err("no closing")
            .contains("no '>'"));
        assert!(split("<%v>", "x>")
            .expect_err("no opening")
            .contains("expected '<'"));
    }

    #[test]
    fn bad_input_formats_are_refused() {
        assert!(InputFormat::parse("%k")
            .expect_err("no value")
            .contains("no %v"));
        assert!(InputFormat::parse("%k%v")
            .expect_err("side by side")
            .contains("side by side"));
        assert!(InputFormat::parse("%v,%v").is_err());
        assert!(InputFormat::parse("%t %v")
            .expect_err("unknown")
            .contains("unknown format field '%t' (use %k %v or %%)"));
    }

    #[test]
    fn key_delimiters_split_at_the_first_one_only() {
        let keys = KeySource::Delimited(b"::".to_vec());
        assert_eq!(
            keys.split(b"k::v::w"),
            Ok((Some(Bytes::from_static(b"k")), Bytes::from_static(b"v::w")))
        );
        assert_eq!(keys.split(b"kv"), Ok((None, Bytes::from_static(b"kv"))));
    }

    #[test]
    fn a_report_with_failed_records_fails_naming_the_first() {
        let record = |record, error: Option<&str>| ProducedRecord {
            record,
            partition: Some(0),
            offset: error.is_none().then_some(record as i64),
            error: error.map(str::to_owned),
        };
        let mut report = ProduceReport {
            topic: "t".to_owned(),
            acks: "all".to_owned(),
            idempotent: true,
            produced: 2,
            failed: 0,
            records: vec![record(1, None), record(2, None)],
        };
        assert!(report.failure().is_none());
        report.records.push(record(3, Some("MESSAGE_TOO_LARGE")));
        report
            .records
            .push(record(4, Some("NOT_LEADER_OR_FOLLOWER")));
        report.failed = 2;
        assert_eq!(
            report.failure().map(|e| e.to_string()).as_deref(),
            Some("2 of 4 record(s) failed; the first, record 3: MESSAGE_TOO_LARGE")
        );
    }

    #[tokio::test]
    async fn the_reader_splits_at_any_delimiter_and_keeps_a_last_record() {
        let read = |input: &'static [u8], delimiter: &[u8]| {
            let mut receiver = spawn_reader(input, delimiter.to_vec());
            async move {
                let mut records = Vec::new();
                while let Some(record) = receiver.recv().await {
                    records.push(String::from_utf8(record.expect("reads")).expect("utf-8"));
                }
                records
            }
        };
        assert_eq!(read(b"a\nb\n\nc", b"\n").await, ["a", "b", "", "c"]);
        assert_eq!(read(b"a\nb\n", b"\n").await, ["a", "b"]);
        assert_eq!(read(b"x--y-z--", b"--").await, ["x", "y-z"]);
        assert_eq!(read(b"", b"\n").await, Vec::<String>::new());
    }
}
