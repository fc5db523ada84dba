//! The brokers' CPU time over a benchmark run, read from `process_cpu_seconds_total` on their
//! `/metrics` (any Chronik broker serves it), so a run reports CPU seconds per GiB moved: the cost
//! that throughput alone hides when the disk or the client sets the pace.

use std::time::Duration;

use serde::Serialize;

use super::scrape;
use super::BenchError;

/// The metric every broker's `/metrics` carries (Prometheus' name for it).
const CPU_METRIC: &str = "process_cpu_seconds_total";

/// Bytes in a GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The brokers to read CPU time from.
pub struct BrokerCpu {
    http: reqwest::Client,
    urls: Vec<String>,
}

/// The CPU the brokers used during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuUsage {
    /// Brokers read.
    pub brokers: usize,
    /// CPU seconds (user + system) used by all of them between the run's start and end.
    pub cpu_secs: f64,
    /// `cpu_secs` per GiB of the report's bytes (None when no bytes moved).
    pub cpu_secs_per_gib: Option<f64>,
}

impl BrokerCpu {
    /// `None` when no URL is given.
    pub fn new(urls: &[String]) -> Result<Option<Self>, BenchError> {
        if urls.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| BenchError::Cluster(format!("http client: {e}")))?;
        Ok(Some(Self {
            http,
            urls: urls.to_vec(),
        }))
    }

    /// The CPU seconds the brokers have used so far, summed.
    pub async fn read(&self) -> Result<f64, BenchError> {
        let scrapes = futures::future::join_all(
            self.urls
                .iter()
                .map(|url| async move { scrape::get(&self.http, url).await }),
        )
        .await;
        let mut total = 0.0;
        for (url, scrape) in self.urls.iter().zip(scrapes) {
            let scrape = scrape.map_err(BenchError::Cluster)?;
            total += scrape.value(CPU_METRIC).ok_or_else(|| {
                BenchError::Cluster(format!("{url} has no {CPU_METRIC} (not a Chronik broker?)"))
            })?;
        }
        Ok(total)
    }

    /// What was used since `before` (a [`BrokerCpu::read`]), against `bytes` moved.
    pub async fn since(&self, before: f64, bytes: u64) -> Result<CpuUsage, BenchError> {
        let cpu_secs = (self.read().await? - before).max(0.0);
        Ok(usage(self.urls.len(), cpu_secs, bytes))
    }
}

fn usage(brokers: usize, cpu_secs: f64, bytes: u64) -> CpuUsage {
    CpuUsage {
        brokers,
        cpu_secs,
        cpu_secs_per_gib: (bytes > 0).then(|| cpu_secs / (bytes as f64 / GIB)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_gib_scales_with_the_bytes_moved() {
        let half_gib = 512 * 1024 * 1024;
        assert_eq!(usage(3, 2.0, half_gib).cpu_secs_per_gib, Some(4.0));
        assert_eq!(usage(1, 2.0, 0).cpu_secs_per_gib, None);
    }

    #[tokio::test]
    async fn a_url_without_the_metric_is_an_error_not_a_zero() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let body = "other_metric 1\n";
            let _ = socket
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
        let cpu = BrokerCpu::new(&[url]).unwrap().expect("a url");
        let error = cpu.read().await.expect_err("no metric");
        assert!(error.to_string().contains(CPU_METRIC), "{error}");
    }
}
