//! Reading a node's `/metrics` (Prometheus text) for `bench metadata`, and the brokers' CPU time for
//! `bench produce` and `bench consume`: the samples by series, and the
//! quantiles of a histogram between two scrapes, computed as Prometheus' `histogram_quantile` does
//! (linear within the bucket that holds the rank). A quantile read this way is an estimate bounded by
//! its bucket: it is never below the bucket's lower bound nor above its upper one.

use std::collections::BTreeMap;

use serde::Serialize;

/// Scrapes `url` (a node's `/metrics`).
pub async fn get(http: &reqwest::Client, url: &str) -> Result<Scrape, String> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{url}: {e}"))?;
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(Scrape::parse(&text))
}

/// The samples of one scrape, by series as written (`name{labels}`).
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parses Prometheus text; comment lines and lines that do not end in a number are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.trim().rsplit_once(' ')?;
                Some((series.to_owned(), value.parse::<f64>().ok()?))
            })
            .collect();
        Self { samples }
    }

    /// The value of an unlabelled series.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.samples.get(name).copied()
    }

    /// The sum of every series of `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                series.as_str() == name
                    || series
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The cumulative buckets of the unlabelled histogram `name`, by upper bound (`+Inf` last).
    pub fn buckets(&self, name: &str) -> Buckets {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut counts: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(series, count)| {
                let bound = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, *count))
            })
            .collect();
        counts.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets { counts }
    }
}

/// A histogram's cumulative bucket counts, by upper bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    counts: Vec<(f64, f64)>,
}

/// Quantiles of a histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HistogramQuantiles {
    /// Observations counted.
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The upper bound of the highest bucket with an observation (`None`: beyond the last finite one).
    pub max_bucket_ms: Option<f64>,
}

impl Buckets {
    /// The sum of several histograms with the same buckets (brokers' histograms added up).
    pub fn add(&mut self, other: &Buckets) {
        if self.counts.is_empty() {
            self.counts = other.counts.clone();
            return;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            if mine.0 == theirs.0 {
                mine.1 += theirs.1;
            }
        }
    }

    /// What was observed after `earlier`, a previous scrape of the same histogram.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let counts = self
            .counts
            .iter()
            .map(|(bound, count)| {
                let before = earlier
                    .counts
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (*bound, (count - before).max(0.0))
            })
            .collect();
        Buckets { counts }
    }

    pub fn count(&self) -> f64 {
        self.counts.last().map_or(0.0, |(_, count)| *count)
    }

    /// The `q` quantile in seconds, interpolated within its bucket; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.counts {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }

    /// p50, p99 and the highest bucket reached, in milliseconds.
    pub fn quantiles(&self) -> HistogramQuantiles {
        let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
        let mut max_bucket_ms = None;
        let mut previous = 0.0;
        for &(bound, count) in &self.counts {
            if count > previous {
                max_bucket_ms = bound.is_finite().then(|| ms(bound));
            }
            previous = count;
        }
        HistogramQuantiles {
            count: self.count() as u64,
            p50_ms: self.quantile(0.5).map(ms),
            p99_ms: self.quantile(0.99).map(ms),
            max_bucket_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP chronik_broker_open_files File descriptors this broker has open.
# TYPE chronik_broker_open_files gauge
chronik_broker_open_files 812
chronik_broker_requests_total{api=\"Metadata\",version=\"12\"} 4
chronik_broker_requests_total{api=\"Produce\",version=\"9\"} 6
h_bucket{le=\"0.001\"} 10
h_bucket{le=\"0.002\"} 90
h_bucket{le=\"0.005\"} 99
h_bucket{le=\"+Inf\"} 100
h_count 100
";

    #[test]
    fn samples_are_read_by_series() {
        let scrape = Scrape::parse(TEXT);
        assert_eq!(scrape.value("chronik_broker_open_files"), Some(812.0));
        assert_eq!(scrape.sum("chronik_broker_requests_total"), 10.0);
        assert_eq!(scrape.value("missing"), None);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let buckets = Scrape::parse(TEXT).buckets("h");
        assert_eq!(buckets.count(), 100.0);
        // Rank 50 falls in (0.001, 0.002] holding ranks 11..=90: half way is 1.5 ms.
        let p50 = buckets.quantile(0.5).expect("observations");
        assert!((p50 - 0.0015).abs() < 1e-9, "{p50}");
        // Rank 99 is the last of (0.002, 0.005].
        let p99 = buckets.quantile(0.99).expect("observations");
        assert!((p99 - 0.005).abs() < 1e-9, "{p99}");
        // The one observation above 5 ms is reported as beyond the last finite bucket.
        assert_eq!(buckets.quantiles().max_bucket_ms, None);
    }

    #[test]
    fn a_later_scrape_minus_an_earlier_one_is_what_happened_in_between() {
        let earlier = Scrape::parse(TEXT).buckets("h");
        let later = Scrape::parse(
            &TEXT
                .replace("} 99\n", "} 199\n")
                .replace("} 100\n", "} 200\n"),
        )
        .buckets("h");
        let between = later.since(&earlier);
        assert_eq!(between.count(), 100.0);
        let p50 = between.quantile(0.5).expect("observations");
        assert!(p50 > 0.002 && p50 <= 0.005, "{p50}");
        let mut sum = earlier.clone();
        sum.add(&between);
        assert_eq!(sum.count(), 200.0);
        assert_eq!(Buckets::default().quantile(0.5), None);
    }
}
