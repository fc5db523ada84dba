//! The web console: read-only pages at `/` of every controller's HTTP address and the JSON APIs
//! under `/api/v1/` behind them (docs/console.md). The pages are plain HTML, CSS and JavaScript
//! embedded in the binary ([`assets`]); they render what the APIs answer and follow
//! `/api/v1/events` ([`events`]), a server-sent event stream of this controller's applied metadata
//! and of the sampler's ticks.
//!
//! Where each figure comes from:
//! - this controller's applied metadata image: controllers, brokers, topics, partitions, ISRs,
//!   leaders and configs;
//! - the brokers, through the Kafka protocol ([`reader::KafkaReader`] over `chronik-kafka-client`):
//!   high watermarks (ListOffsets), sizes and disk usage (DescribeLogDirs), consumer groups
//!   (ListGroups, DescribeGroups, OffsetFetch) and records (Fetch);
//! - the [`sampler`], which every controller runs for its own console: every
//!   `--console-sample-interval-ms` it takes the high watermarks, sizes, disk usage and group lag
//!   of the whole cluster, and keeps each group partition's lag in a bounded ring ([`lag`]).
//!
//! What must stay true:
//! - The console only reads: no route changes the cluster, and every Kafka request it sends is a
//!   read (no OffsetCommit, no JoinGroup: it never joins the groups it shows).
//! - A broker that does not answer costs at most one request timeout (`--console-request-timeout-ms`)
//!   per request sent to it and shows as unknown; it never fails a whole page, and fenced brokers
//!   are not asked at all.
//! - Every page, asset and API passes the same credentials check as `/api/v1/cluster` ([`session`]
//!   adds a cookie a browser gets by logging in with the admin token); only `/login` is open.
//! - No stream outlives shutdown: the event streams end when the node's token is cancelled, so the
//!   HTTP server's graceful shutdown is not held up by a browser tab.

pub mod api;
pub mod assets;
pub mod events;
pub mod lag;
pub mod reader;
pub mod sampler;
pub mod session;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chronik_kafka_client::KafkaAdmin;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ConsoleArgs;
use crate::quorum::Quorum;
use lag::LagHistory;
use reader::KafkaReader;
use sampler::Sample;

/// How the console reaches the brokers and samples them.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// The brokers' listener to connect to; `None`: each broker's first endpoint.
    pub listener: Option<String>,
    /// How long one Kafka request may take.
    pub request_timeout: Duration,
    /// How often the sampler runs; `None`: it does not.
    pub sample_interval: Option<Duration>,
    /// Samples kept per group partition.
    pub history_len: usize,
}

impl ConsoleConfig {
    pub fn from_args(args: &ConsoleArgs) -> ConsoleConfig {
        ConsoleConfig {
            listener: args.console_kafka_listener.clone(),
            request_timeout: Duration::from_millis(args.console_request_timeout_ms),
            sample_interval: Some(Duration::from_millis(args.console_sample_interval_ms))
                .filter(|i| !i.is_zero()),
            history_len: args.console_lag_history,
        }
    }
}

/// The console's state, shared by its routes and its sampler.
pub struct Console {
    quorum: Arc<Quorum>,
    config: ConsoleConfig,
    /// The connections of page and API requests (the sampler has its own, so a slow sample never
    /// holds up a page).
    reader: tokio::sync::Mutex<KafkaReader>,
    /// The latest complete sample.
    sample: RwLock<Arc<Sample>>,
    history: Mutex<LagHistory>,
    /// Counts completed samples; the event streams follow it.
    sampled: watch::Sender<u64>,
    shutdown: CancellationToken,
}

impl Console {
    pub fn new(quorum: Arc<Quorum>, config: ConsoleConfig, shutdown: CancellationToken) -> Self {
        let reader = KafkaReader::new(&config);
        let history = LagHistory::new(config.history_len);
        Console {
            quorum,
            reader: tokio::sync::Mutex::new(reader),
            sample: RwLock::new(Arc::new(Sample::default())),
            history: Mutex::new(history),
            sampled: watch::channel(0).0,
            config,
            shutdown,
        }
    }

    pub fn quorum(&self) -> &Arc<Quorum> {
        &self.quorum
    }

    pub fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    /// The latest complete sample (empty before the first).
    pub fn sample(&self) -> Arc<Sample> {
        self.sample
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, LagHistory> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a complete sample: its lag goes into the history, and event streams are told.
    fn publish(&self, sample: Sample) {
        self.history().record(sample.at_ms, &sample.lag);
        *self.sample.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(sample);
        self.sampled.send_modify(|count| *count += 1);
    }
}

/// A fresh admin client over no brokers yet; the reader teaches it addresses from the metadata.
fn new_admin(config: &ConsoleConfig) -> KafkaAdmin {
    KafkaAdmin::new(
        chronik_kafka_client::BrokerPool::new(Default::default(), config.request_timeout),
        config.request_timeout,
    )
}
