//! The HTTP listener, plaintext or TLS, as an axum `Listener`. With TLS, handshakes run in tasks of
//! their own (bounded by `HANDSHAKE_TIMEOUT`), so a client that stalls its handshake holds up nobody
//! else, and each connection is tagged with whether it presented a verified client certificate
//! (`HttpPeer`), which the protected routes read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of an HTTP connection.
#[derive(Clone, Copy, Debug)]
pub struct HttpPeer {
    pub addr: SocketAddr,
    /// The TLS handshake verified a client certificate against `--tls-ca`.
    pub verified_certificate: bool,
    /// The connection is HTTPS (the console's cookie is then `Secure`).
    pub tls: bool,
}

impl Connected<IncomingStream<'_, HttpListener>> for HttpPeer {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The controller's HTTP listener.
pub enum HttpListener {
    Plain(TcpListener),
    Tls {
        local: SocketAddr,
        /// Connections whose handshake completed, from the acceptor task.
        ready: mpsc::Receiver<(TlsStream<TcpStream>, HttpPeer)>,
    },
}

impl HttpListener {
    /// A TLS listener: accepts on `listener` in a task on `tasks` until `shutdown`.
    pub fn tls(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> std::io::Result<HttpListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(64);
        let handshakes = tasks.clone();
        tasks.spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = sender.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            debug!("HTTP accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, sender, shutdown) =
                    (acceptor.clone(), sender.clone(), shutdown.clone());
                handshakes.spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                debug!(%addr, "HTTPS handshake failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        },
                    };
                    let verified_certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty());
                    let peer = HttpPeer {
                        addr,
                        verified_certificate,
                        tls: true,
                    };
                    let _ = sender.send((stream, peer)).await;
                });
            }
        });
        Ok(HttpListener::Tls { local, ready })
    }
}

impl Listener for HttpListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = HttpPeer;

    async fn accept(&mut self) -> (Self::Io, HttpPeer) {
        match self {
            HttpListener::Plain(listener) => {
                // axum's own accept loop, which waits out accept errors.
                let (stream, addr) = Listener::accept(listener).await;
                let peer = HttpPeer {
                    addr,
                    verified_certificate: false,
                    tls: false,
                };
                (Either::Left(stream), peer)
            }
            HttpListener::Tls { ready, .. } => match ready.recv().await {
                Some((stream, peer)) => (Either::Right(stream), peer),
                // The acceptor stopped (shutdown): graceful shutdown ends the server.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<HttpPeer> {
        let addr = match self {
            HttpListener::Plain(listener) => listener.local_addr()?,
            HttpListener::Tls { local, .. } => *local,
        };
        Ok(HttpPeer {
            addr,
            verified_certificate: false,
            tls: matches!(self, HttpListener::Tls { .. }),
        })
    }
}
