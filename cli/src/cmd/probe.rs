//! `chronikctl probe URL`: one HTTP GET that succeeds only on a 2xx answer. It is the health check of
//! the container images, which carry no shell and no curl (`chronikctl probe
//! http://127.0.0.1:8092/readyz`), and works against any node's `/healthz` or `/readyz`.

use std::time::Duration;

use chronik_control_auth::ClientCredentials;
use serde::Serialize;

use crate::error::CliError;

/// What the probed URL answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub url: String,
    pub status: u16,
    /// The first line of the answer's body (e.g. `ready; leader 2`).
    pub message: String,
}

/// GETs `url` within `timeout`; a non-2xx answer or no answer is a `CliError::Probe`. An `https` URL
/// is verified against the CA of `credentials` (`--controller-tls-ca`), which also send their token.
pub async fn probe(
    url: &str,
    timeout: Duration,
    credentials: &ClientCredentials,
) -> Result<ProbeResult, CliError> {
    let failed = |reason: String| CliError::Probe {
        url: url.to_owned(),
        reason,
    };
    let client = crate::local::http_client_with_timeout(credentials, timeout)
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(format!("no answer ({e})")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = body.lines().next().unwrap_or_default().trim().to_owned();
    if !status.is_success() {
        return Err(failed(format!("{status} {message}")));
    }
    Ok(ProbeResult {
        url: url.to_owned(),
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP server on port 0 that answers every request with `response`.
    async fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        format!("http://{address}/readyz")
    }

    #[tokio::test]
    async fn a_2xx_answer_succeeds_with_its_first_line() {
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-length: 16\r\nconnection: close\r\n\r\nready; leader 2\n",
        )
        .await;
        let result = probe(&url, Duration::from_secs(5), &ClientCredentials::none())
            .await
            .expect("ready");
        assert_eq!(result.status, 200);
        assert_eq!(result.message, "ready; leader 2");
    }

    #[tokio::test]
    async fn a_503_or_no_answer_fails_saying_why() {
        let url = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 27\r\nconnection: close\r\n\r\nno controller leader known\n",
        )
        .await;
        let error = probe(&url, Duration::from_secs(5), &ClientCredentials::none())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("503") && error.to_string().contains("no controller leader"),
            "{error}"
        );

        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/readyz", closed.local_addr().expect("address"));
        drop(closed);
        let error = probe(&url, Duration::from_secs(5), &ClientCredentials::none())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("no answer"), "{error}");
    }
}
