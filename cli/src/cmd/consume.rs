//! `topic consume TOPIC`: prints a topic's records as they are read, like `kcat -C` and
//! `rpk topic consume`, without a consumer group: the selected partitions (`--partition`, default
//! all) are read from their leaders through the shared [`Fetcher`], starting where `--offset` says
//! and, unless `--follow`, stopping at the high watermark each partition had at the start. `--num`
//! stops after that many records in all. Records are written as they arrive, through `--format`
//! (table output), as JSON lines or as YAML documents (see [`crate::output::record`]).
//!
//! SIGINT and SIGTERM end the read cleanly between Fetch rounds (with `--group`: a last commit of what
//! was printed, then LeaveGroup), so `--follow` is stopped the usual way.
//!
//! What must stay true: an offset spec is resolved against each partition's log once, at the start,
//! and clamped into `[log start, high watermark]` (a start past the end reads nothing, or waits with
//! `--follow`); records of one partition are printed in offset order, each once; output is flushed
//! after every Fetch round so a reader of a pipe sees records while `--follow` waits for more.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::cli::KafkaTargetArgs;
use crate::client::ControllerClient;
use crate::cmd::produce::bootstrap_servers;
use crate::error::CliError;
use crate::kafka::fetch::{Fetcher, FetcherConfig, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::kafka::group_member::GroupMember;
use crate::kafka::topic::PartitionSelection;
use crate::kafka::{BrokerPool, KafkaAdmin};
use crate::output::record::{write_record, RecordFormat};
use crate::output::OutputFormat;
use crate::parse;

/// Where `topic consume` starts each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// `start`: the log start offset.
    Start,
    /// `end`: the high watermark (only records written from now on).
    End,
    /// `N`: this offset.
    Exact(i64),
    /// `-N`: N records before the high watermark.
    FromEnd(i64),
    /// `@MS`: the first record with a timestamp at or after MS milliseconds since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// Parses `start` (or `beginning`, `earliest`), `end` (or `latest`), `N`, `-N` or `@MS`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        let bad = || {
            format!(
                "'{text}' is not an offset: use start, end, N (an offset), -N (N before the end) \
                 or @MS (a timestamp in milliseconds)"
            )
        };
        match text {
            "start" | "beginning" | "earliest" => return Ok(OffsetSpec::Start),
            "end" | "latest" => return Ok(OffsetSpec::End),
            _ => {}
        }
        if let Some(ms) = text.strip_prefix('@') {
            return ms
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .map(OffsetSpec::Timestamp)
                .ok_or_else(bad);
        }
        if let Some(back) = text.strip_prefix('-') {
            return back
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(OffsetSpec::FromEnd)
                .ok_or_else(bad);
        }
        text.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(OffsetSpec::Exact)
            .ok_or_else(bad)
    }

    /// The first offset to read of a partition whose log spans `log_start..high_watermark`;
    /// `at_time` is ListOffsets' answer for a timestamp spec (-1: no record is that recent).
    pub fn resolve(self, log_start: i64, high_watermark: i64, at_time: Option<i64>) -> i64 {
        let end = high_watermark.max(log_start);
        let offset = match self {
            OffsetSpec::Start => log_start,
            OffsetSpec::End => end,
            OffsetSpec::Exact(offset) => offset,
            OffsetSpec::FromEnd(back) => end.saturating_sub(back),
            OffsetSpec::Timestamp(_) => at_time.filter(|o| *o >= 0).unwrap_or(end),
        };
        offset.clamp(log_start, end)
    }
}

/// Arguments of `topic consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// The topic.
    pub topic: String,
    #[command(flatten)]
    pub target: KafkaTargetArgs,
    /// Read only this partition (repeat for several); all by default.
    #[arg(long = "partition", short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partitions: Vec<i32>,
    /// Where to start each partition: `start`, `end`, an offset `N`, `-N` (N records before the
    /// end) or `@MS` (the first record at or after a timestamp in milliseconds since the epoch).
    #[arg(long, value_name = "start|end|N|-N|@MS", default_value = "start", allow_hyphen_values = true, value_parser = OffsetSpec::parse)]
    pub offset: OffsetSpec,
    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "N", value_parser = parse::count)]
    pub num: Option<u64>,
    /// Keep waiting for new records (until interrupted, or `--num`); by default stop at the high
    /// watermark each partition had at the start.
    #[arg(long)]
    pub follow: bool,
    /// How each record is printed with table output: %t topic, %p partition, %o offset, %k key,
    /// %v value, %K key size, %S value size, %h headers (k=v,...), %T timestamp (ms), %% a percent
    /// sign; escapes \n \t \0 \xHH. Default '%v\n'. With `--output json` each record is one JSON
    /// object on a line instead, with `--output yaml` one YAML document.
    #[arg(long, short = 'f', value_parser = RecordFormat::parse)]
    pub format: Option<RecordFormat>,
    /// How long a broker may hold a Fetch that has no records yet.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(i32).range(0..=60_000))]
    pub fetch_max_wait_ms: i32,
    /// MaxBytes of each Fetch, and the per-partition limit (`KiB`/`MiB` suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse::positive_size)]
    pub fetch_max_bytes: u32,
    /// Consume as a member of this consumer group (range assignor): read the partitions the group
    /// assigns, from the group's committed offsets (`--offset` where there is none), and commit what
    /// was printed (while running and at the end), then leave the group.
    #[arg(long, short = 'g', conflicts_with = "partitions")]
    pub group: Option<String>,
}

/// What `topic consume` read (the records themselves were printed as they came).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumeSummary {
    /// The topic.
    pub topic: String,
    /// Records printed.
    pub records: u64,
    /// The next offset of each partition read.
    pub next_offsets: BTreeMap<i32, i64>,
}

/// Runs `topic consume`, writing each record to `out` in `output` as it arrives.
pub async fn consume(
    client: &ControllerClient,
    args: &ConsumeArgs,
    output: OutputFormat,
    out: &mut impl Write,
) -> Result<ConsumeSummary, CliError> {
    let bootstrap = bootstrap_servers(client, &args.target).await?;
    let config = FetcherConfig {
        max_wait_ms: args.fetch_max_wait_ms,
        max_bytes: i32::try_from(args.fetch_max_bytes).unwrap_or(i32::MAX),
        request_timeout: client.request_timeout(),
        retry_timeout: Duration::from_millis(args.target.retry.retry_timeout_ms),
    };
    let selection = PartitionSelection::from_list(args.partitions.clone());
    let mut fetcher = Fetcher::connect(&bootstrap, &args.topic, selection, config).await?;
    let (mut membership, assigned) = match &args.group {
        None => (None, fetcher.partitions()),
        Some(group) => {
            let pool = BrokerPool::new(fetcher.brokers(), client.request_timeout());
            let mut admin = KafkaAdmin::new(pool, config.retry_timeout);
            // JoinGroup is held until the rebalance completes: it must fit in one request.
            let rebalance_timeout = client
                .request_timeout()
                .saturating_sub(Duration::from_secs(2))
                .max(Duration::from_secs(1));
            let partitions = fetcher.partition_count();
            let (member, assigned) = GroupMember::join(
                &mut admin,
                group,
                &args.topic,
                partitions,
                rebalance_timeout,
            )
            .await?;
            (Some((admin, member, rebalance_timeout)), assigned)
        }
    };
    let admin = membership.as_mut().map(|(admin, _, _)| admin);
    let mut next = assign(&mut fetcher, args, &assigned, admin).await?;
    let format = args
        .format
        .clone()
        .unwrap_or_else(RecordFormat::value_per_line);
    let mut printed = 0u64;
    let mut committed = next.clone();
    let wanted = args.num.unwrap_or(u64::MAX);
    // SIGINT or SIGTERM ends the read between records: what was printed is committed (in a group)
    // and the group is left, as at any other end.
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    while printed < wanted && (args.follow || !fetcher.is_done()) {
        let records = tokio::select! {
            records = fetcher.poll() => records?,
            () = &mut interrupted => break,
        };
        for fetched in records {
            if printed >= wanted {
                break;
            }
            write_record(
                out,
                output,
                &format,
                &args.topic,
                fetched.partition,
                &fetched.record,
            )?;
            next.insert(fetched.partition, fetched.record.offset + 1);
            printed += 1;
        }
        out.flush()?;
        if let Some((admin, member, timeout)) = &mut membership {
            if member.heartbeat_if_due(admin).await? {
                // Best effort: a member already fenced out of its generation cannot commit, and
                // then whoever takes its partitions reads them again from the last commit.
                member.commit(admin, &next).await.ok();
                for partition in next.keys() {
                    fetcher.unassign(*partition);
                }
                let partitions = fetcher.partition_count();
                let assigned = member.rejoin(admin, partitions, *timeout).await?;
                next = assign(&mut fetcher, args, &assigned, Some(admin)).await?;
                committed = next.clone();
            } else if committed != next {
                member.commit(admin, &next).await?;
                committed = next.clone();
            }
        }
    }
    if let Some((admin, member, _)) = &mut membership {
        member.commit(admin, &next).await?;
        member.leave(admin).await?;
    }
    Ok(ConsumeSummary {
        topic: args.topic.clone(),
        records: printed,
        next_offsets: next,
    })
}

/// Resolves on SIGINT or SIGTERM (never, if the handlers cannot be installed: the default action,
/// ending the process, then applies).
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Assigns `partitions` to the fetcher: each from the group's committed offset (asked through
/// `admin`) when consuming in a group and there is one, else where `--offset` says; up to the high
/// watermark unless `--follow`. Returns each partition's start.
async fn assign(
    fetcher: &mut Fetcher,
    args: &ConsumeArgs,
    partitions: &[i32],
    admin: Option<&mut KafkaAdmin>,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let mut starts = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(starts);
    }
    let log_starts = fetcher.offsets_at(partitions, EARLIEST_TIMESTAMP).await?;
    let ends = fetcher.offsets_at(partitions, LATEST_TIMESTAMP).await?;
    let at_time = match args.offset {
        OffsetSpec::Timestamp(ms) => Some(fetcher.offsets_at(partitions, ms).await?),
        _ => None,
    };
    let committed = match (admin, &args.group) {
        (Some(admin), Some(group)) => admin.committed_offsets(group).await?,
        _ => BTreeMap::new(),
    };
    for &partition in partitions {
        let log_start = log_starts.get(&partition).copied().unwrap_or(0);
        let high_watermark = ends.get(&partition).copied().unwrap_or(log_start);
        let offset = match committed.get(&(args.topic.clone(), partition)) {
            Some(&offset) => offset.clamp(log_start, high_watermark.max(log_start)),
            None => {
                let at = at_time.as_ref().and_then(|o| o.get(&partition).copied());
                args.offset.resolve(log_start, high_watermark, at)
            }
        };
        fetcher.assign(partition, offset, (!args.follow).then_some(high_watermark));
        starts.insert(partition, offset);
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_specs_parse() {
        assert_eq!(OffsetSpec::parse("start"), Ok(OffsetSpec::Start));
        assert_eq!(OffsetSpec::parse("earliest"), Ok(OffsetSpec::Start));
        assert_eq!(OffsetSpec::parse("end"), Ok(OffsetSpec::End));
        assert_eq!(OffsetSpec::parse("42"), Ok(OffsetSpec::Exact(42)));
        assert_eq!(OffsetSpec::parse("0"), Ok(OffsetSpec::Exact(0)));
        assert_eq!(OffsetSpec::parse("-3"), Ok(OffsetSpec::FromEnd(3)));
        assert_eq!(
            OffsetSpec::parse("@1700000000000"),
            Ok(OffsetSpec::Timestamp(1_700_000_000_000))
        );
        for bad in ["", "-0", "--1", "@", "@-5", "x", "1.5", "@soon", "stat"] {
            let error = OffsetSpec::parse(bad).expect_err(bad);
            assert!(error.contains("is not an offset"), "{bad}: {error}");
        }
    }

    #[test]
    fn offsets_resolve_into_the_log() {
        // A log of offsets 10..50.
        let at = |spec: OffsetSpec, at_time| spec.resolve(10, 50, at_time);
        assert_eq!(at(OffsetSpec::Start, None), 10);
        assert_eq!(at(OffsetSpec::End, None), 50);
        assert_eq!(at(OffsetSpec::Exact(20), None), 20);
        assert_eq!(at(OffsetSpec::Exact(3), None), 10);
        assert_eq!(at(OffsetSpec::Exact(99), None), 50);
        assert_eq!(at(OffsetSpec::FromEnd(5), None), 45);
        assert_eq!(at(OffsetSpec::FromEnd(500), None), 10);
        assert_eq!(at(OffsetSpec::Timestamp(7), Some(33)), 33);
        assert_eq!(at(OffsetSpec::Timestamp(7), Some(-1)), 50);
        assert_eq!(OffsetSpec::Start.resolve(0, 0, None), 0);
    }
}
