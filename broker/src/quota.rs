//! Enforcing client quotas (Kafka's `ClientQuotaManager`, KIP-13 and KIP-219): each Produce request's
//! size and the record bytes of each consumer Fetch response count toward the byte rate of the quota
//! that applies to the request's user and client id (`chronik_metadata::quotas::resolve`). A request
//! that takes the rate over the quota is answered with the time the client must wait
//! (`throttle_time_ms`), and its connection reads nothing more until then, as Kafka mutes the
//! channel. As in Kafka, a quota'd consumer's fetch asks for at most what its quota allows in one
//! window but the current one, and a fetch that would take it over is answered without its records,
//! which then do not count (`handlers::throttle` applies this to requests and answers).
//!
//! The rate is Kafka's: `--quota-window-num` samples of `--quota-window-size-seconds` each, measured
//! over at least all but one of them, and a request over the quota is throttled for
//! `(rate - quota) / quota × window`: the time that brings the rate back to the quota.
//!
//! What must stay true: a client without a quota costs one lookup in an empty map while the cluster
//! has no quotas; replicas' fetches never count (they are not clients); a rate nobody used for an
//! hour is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chronik_metadata::quotas::{self, RateKey};
use chronik_metadata::MetadataImage;

/// Which byte rate a request counts toward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            Self::Produce => quotas::PRODUCER_BYTE_RATE,
            Self::Fetch => quotas::CONSUMER_BYTE_RATE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Fetch => "fetch",
        }
    }
}

/// Kafka's default `quota.window.num`.
pub const DEFAULT_WINDOW_NUM: usize = 11;
/// Kafka's default `quota.window.size.seconds`.
pub const DEFAULT_WINDOW_SECONDS: u64 = 1;

/// How rates are sampled (Kafka's `quota.window.num` and `quota.window.size.seconds`).
#[derive(Clone, Copy, Debug)]
pub struct QuotaWindows {
    pub samples: usize,
    pub window: Duration,
}

impl Default for QuotaWindows {
    fn default() -> Self {
        Self {
            samples: DEFAULT_WINDOW_NUM,
            window: Duration::from_secs(DEFAULT_WINDOW_SECONDS),
        }
    }
}

/// A rate unused for this long is forgotten (Kafka's quota sensors expire after an hour).
const IDLE_RATE: Duration = Duration::from_secs(3600);

pub struct ClientQuotaManager {
    windows: QuotaWindows,
    rates: Mutex<Rates>,
}

#[derive(Default)]
struct Rates {
    by_key: HashMap<(QuotaKind, RateKey), Rate>,
    last_purge: Option<Instant>,
}

impl ClientQuotaManager {
    pub fn new(windows: QuotaWindows) -> Self {
        Self {
            windows,
            rates: Mutex::new(Rates::default()),
        }
    }

    /// Counts `bytes` of `user` (the principal's name) with `client_id` toward the quota that applies
    /// to them, and returns how long the client must wait: zero without a quota or under it.
    pub fn record(
        &self,
        image: &MetadataImage,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        bytes: usize,
        now: Instant,
    ) -> Duration {
        self.add(image, kind, user, client_id, bytes as f64, now)
            .unwrap_or(Duration::ZERO)
    }

    /// Takes back bytes `record` counted (a throttled fetch answered without them).
    pub fn unrecord(
        &self,
        image: &MetadataImage,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        bytes: usize,
        now: Instant,
    ) {
        self.add(image, kind, user, client_id, -(bytes as f64), now);
    }

    /// The most bytes a client may take in one request without going over its quota from nothing:
    /// its quota over all windows but the current one (Kafka's `getMaxValueInQuotaWindow`).
    pub fn max_in_window(
        &self,
        image: &MetadataImage,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
    ) -> Option<u64> {
        let (quota, _) = quotas::resolve(&image.client_quotas, user, client_id, kind.key())?;
        let span = self.windows.window * self.windows.samples.saturating_sub(1) as u32;
        Some((quota as f64 * span.as_secs_f64()) as u64)
    }

    fn add(
        &self,
        image: &MetadataImage,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        bytes: f64,
        now: Instant,
    ) -> Option<Duration> {
        let (quota, key) = quotas::resolve(&image.client_quotas, user, client_id, kind.key())?;
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates
            .last_purge
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60))
        {
            rates
                .by_key
                .retain(|_, rate| now.duration_since(rate.last_used) < IDLE_RATE);
            rates.last_purge = Some(now);
        }
        let rate = rates
            .by_key
            .entry((kind, key))
            .or_insert_with(|| Rate::new(now));
        rate.record(bytes, now, self.windows);
        let window = rate.window_size(now, self.windows);
        let observed = rate.total() / window.as_secs_f64();
        let quota = quota as f64;
        if observed <= quota {
            return Some(Duration::ZERO);
        }
        // Not bounded, as Kafka's byte-rate throttles are not: a bound would let a client whose
        // requests are large next to its quota go over it.
        let throttle = window.as_secs_f64() * (observed - quota) / quota;
        Some(Duration::try_from_secs_f64(throttle).unwrap_or(Duration::MAX))
    }
}

/// Kafka's `Rate` over a `SampledStat`: the bytes of each window, oldest first.
struct Rate {
    samples: VecDeque<(Instant, f64)>,
    last_used: Instant,
}

impl Rate {
    fn new(now: Instant) -> Self {
        Self {
            samples: VecDeque::new(),
            last_used: now,
        }
    }

    fn record(&mut self, value: f64, now: Instant, windows: QuotaWindows) {
        self.last_used = now;
        let horizon = windows.window * windows.samples as u32;
        self.samples
            .retain(|(start, _)| now.duration_since(*start) < horizon);
        match self.samples.back_mut() {
            Some((start, total)) if now.duration_since(*start) < windows.window => *total += value,
            _ => {
                if self.samples.len() == windows.samples {
                    self.samples.pop_front();
                }
                self.samples.push_back((now, value));
            }
        }
    }

    fn total(&self) -> f64 {
        self.samples.iter().map(|(_, v)| v).sum()
    }

    /// The time the rate is measured over: since the oldest sample began, and at least all windows
    /// but the current one, so a new client's first burst is spread over them (Kafka's
    /// `Rate.windowSize`).
    fn window_size(&self, now: Instant, windows: QuotaWindows) -> Duration {
        let oldest = self.samples.front().map_or(now, |(start, _)| *start);
        let mut elapsed = now.duration_since(oldest);
        let full = (elapsed.as_nanos() / windows.window.as_nanos().max(1)) as u32;
        let min_full = windows.samples.saturating_sub(1) as u32;
        if full < min_full {
            elapsed += windows.window * (min_full - full);
        }
        elapsed.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use chronik_metadata::quotas::{
        QuotaEntity, CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, USER,
    };

    use super::*;

    fn image_with(entity: &[(&str, Option<&str>)], key: &str, rate: i64) -> MetadataImage {
        let mut image = MetadataImage::default();
        let entity = QuotaEntity::of(entity).unwrap();
        image
            .client_quotas
            .entry(entity)
            .or_default()
            .insert(key.to_owned(), rate);
        image
    }

    fn windows() -> QuotaWindows {
        QuotaWindows {
            samples: 3,
            window: Duration::from_secs(1),
        }
    }

    #[test]
    fn no_quota_no_throttle() {
        let quotas = ClientQuotaManager::new(windows());
        let image = MetadataImage::default();
        let t = Instant::now();
        assert_eq!(
            quotas.record(&image, QuotaKind::Produce, "alice", "app", 1 << 30, t),
            Duration::ZERO
        );
    }

    #[test]
    fn a_burst_over_the_quota_waits_until_the_rate_is_back_at_it() {
        // 1,000 bytes/s measured over at least 2 s: 2,000 bytes at once are within it.
        let image = image_with(&[(CLIENT_ID, Some("app"))], PRODUCER_BYTE_RATE, 1000);
        let quotas = ClientQuotaManager::new(windows());
        let t = Instant::now();
        let record =
            |bytes, at| quotas.record(&image, QuotaKind::Produce, "alice", "app", bytes, at);
        assert_eq!(record(2000, t), Duration::ZERO);
        // 4,000 bytes over 2 s is 2,000/s: twice the quota, so wait one more window of 2 s.
        assert_eq!(record(2000, t), Duration::from_secs(2));
        // Consumer bytes count toward another rate, which has no quota here.
        assert_eq!(
            quotas.record(&image, QuotaKind::Fetch, "alice", "app", 1 << 20, t),
            Duration::ZERO
        );
        // Another client id has no quota; another user of `app` shares its rate.
        assert_eq!(
            record_for(&quotas, &image, "alice", "other", 1 << 20, t),
            Duration::ZERO
        );
        assert!(record_for(&quotas, &image, "bob", "app", 1, t) > Duration::ZERO);
        // Once the samples have aged out, the client starts afresh.
        let later = t + Duration::from_secs(4);
        assert_eq!(record(1000, later), Duration::ZERO);
    }

    fn record_for(
        quotas: &ClientQuotaManager,
        image: &MetadataImage,
        user: &str,
        client: &str,
        bytes: usize,
        at: Instant,
    ) -> Duration {
        quotas.record(image, QuotaKind::Produce, user, client, bytes, at)
    }

    #[test]
    fn a_steady_client_under_the_quota_is_never_throttled_and_one_above_it_is() {
        let image = image_with(&[(USER, None)], PRODUCER_BYTE_RATE, 10_000);
        let quotas = ClientQuotaManager::new(windows());
        let start = Instant::now();
        // 800 bytes every 100 ms: 8,000 bytes/s, for 10 s.
        for i in 0..100 {
            let at = start + Duration::from_millis(100 * i);
            let throttle = quotas.record(&image, QuotaKind::Produce, "alice", "a", 800, at);
            assert_eq!(throttle, Duration::ZERO, "at {i}");
        }
        // Bob sends twice as much; he is throttled once the first windows are full.
        let throttled = (0..100)
            .filter(|i| {
                let at = start + Duration::from_millis(100 * i);
                quotas.record(&image, QuotaKind::Produce, "bob", "a", 2000, at) > Duration::ZERO
            })
            .count();
        assert!(throttled > 50, "{throttled}");
    }

    #[test]
    fn a_request_far_over_its_quota_waits_as_long_as_it_takes() {
        // 1 GiB against 1 byte/s, over at least 2 s: half a GiB per second too many, for 2 s each.
        let image = image_with(&[(USER, None)], PRODUCER_BYTE_RATE, 1);
        let quotas = ClientQuotaManager::new(windows());
        let throttle = quotas.record(
            &image,
            QuotaKind::Produce,
            "alice",
            "a",
            1 << 30,
            Instant::now(),
        );
        assert!(throttle > Duration::from_secs(1 << 29), "{throttle:?}");
    }

    #[test]
    fn an_unrecorded_fetch_does_not_count_and_a_fetch_fits_the_window() {
        let image = image_with(&[(CLIENT_ID, Some("reader"))], CONSUMER_BYTE_RATE, 1000);
        let quotas = ClientQuotaManager::new(windows());
        let t = Instant::now();
        let fetch = |bytes| quotas.record(&image, QuotaKind::Fetch, "u", "reader", bytes, t);
        assert!(fetch(5000) > Duration::ZERO);
        quotas.unrecord(&image, QuotaKind::Fetch, "u", "reader", 5000, t);
        assert_eq!(fetch(2000), Duration::ZERO);
        // All windows but the current one: 2 s of 1,000 bytes.
        assert_eq!(
            quotas.max_in_window(&image, QuotaKind::Fetch, "u", "reader"),
            Some(2000)
        );
        assert_eq!(
            quotas.max_in_window(&image, QuotaKind::Fetch, "u", "other"),
            None
        );
    }
}
