//! Latency recording for the benchmarks: an HDR histogram of microseconds (3 significant digits, so a
//! percentile is within 0.1% of the true value), summarised as p50/p90/p99/p99.9/max in milliseconds.
//! Samples above the histogram's range are clamped to it rather than lost, so `count` always equals
//! the number of requests measured.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::error::BenchError;

/// The largest latency the histogram tells apart: one hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// Request latencies.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    micros: Histogram<u64>,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Result<Self, BenchError> {
        Ok(LatencyHistogram {
            micros: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
        })
    }

    /// Adds one sample.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.micros.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms have the same bounds, so adding cannot fail; if it ever did, record the
        // samples one by one at their highest equivalent value instead of losing them.
        if self.micros.add(&other.micros).is_err() {
            for value in other.micros.iter_recorded() {
                self.micros.saturating_record_n(
                    value.value_iterated_to().clamp(1, MAX_MICROS),
                    value.count_at_value(),
                );
            }
        }
    }

    /// The number of samples.
    pub fn count(&self) -> u64 {
        self.micros.len()
    }

    /// The percentiles, or `None` without samples.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.micros.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| ms(self.micros.value_at_quantile(quantile));
        Some(LatencySummary {
            count: self.micros.len(),
            mean_ms: self.micros.mean() / 1000.0,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(self.micros.max()),
        })
    }
}

/// Latency percentiles of one benchmark, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Requests measured.
    pub count: u64,
    /// Mean latency.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

/// `count` per second over `elapsed` (0 for an empty interval).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// MiB per second.
pub fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    per_second(bytes, elapsed) / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut histogram = LatencyHistogram::new().expect("valid bounds");
        for ms in 1..=1000u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let summary = histogram.summary().expect("samples");
        assert_eq!(summary.count, 1000);
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p90_ms, 900.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1000.0), "{summary:?}");
        assert!(close(summary.mean_ms, 500.5), "{summary:?}");
    }

    #[test]
    fn a_rare_slow_request_shows_only_in_the_tail() {
        let mut histogram = LatencyHistogram::new().expect("valid bounds");
        for _ in 0..9_990 {
            histogram.record(Duration::from_micros(800));
        }
        for _ in 0..10 {
            histogram.record(Duration::from_millis(250));
        }
        let summary = histogram.summary().expect("samples");
        assert!(close(summary.p50_ms, 0.8), "{summary:?}");
        assert!(close(summary.p99_ms, 0.8), "{summary:?}");
        assert!(close(summary.p999_ms, 0.8), "{summary:?}");
        assert!(close(summary.max_ms, 250.0), "{summary:?}");
    }

    #[test]
    fn empty_histograms_have_no_summary_and_extremes_are_clamped() {
        let mut histogram = LatencyHistogram::new().expect("valid bounds");
        assert!(histogram.summary().is_none());
        histogram.record(Duration::ZERO);
        histogram.record(Duration::from_secs(10 * 3600));
        let summary = histogram.summary().expect("samples");
        assert_eq!(summary.count, 2);
        assert!(close(summary.max_ms, 3_600_000.0), "{summary:?}");
    }

    #[test]
    fn merged_histograms_count_every_sample() {
        let mut a = LatencyHistogram::new().expect("valid bounds");
        let mut b = LatencyHistogram::new().expect("valid bounds");
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        b.record(Duration::from_millis(5));
        a.merge(&b);
        let summary = a.summary().expect("samples");
        assert_eq!(summary.count, 3);
        assert!(close(summary.p50_ms, 3.0), "{summary:?}");
    }

    #[test]
    fn rates_handle_an_empty_interval() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert!(close(per_second(10, Duration::from_millis(500)), 20.0));
        assert!(close(
            mib_per_second(2 * 1024 * 1024, Duration::from_secs(1)),
            2.0
        ));
    }
}
