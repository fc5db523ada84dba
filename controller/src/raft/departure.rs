//! Replacing an active controller whose process is gone without waiting out its leader lease
//! (issue #18: a new active controller within 1 s of the old one's death).
//!
//! Silence is all Raft goes on: an openraft 0.9 follower campaigns only once a leader lease
//! (`election_timeout_max`) and its own randomized election timeout have passed without a
//! heartbeat, and until its lease runs out a voter refuses every candidate. With the default
//! timings a killed leader is replaced 1.8–2.4 s after its death, at any scale. That wait is what
//! keeps a paused or cut-off leader from being deposed too eagerly, and it stays as it is.
//!
//! But a leader whose process died says so: its kernel closes its connections, and its port refuses
//! new ones. KRaft's resigning leader tells the voters to elect at once (EndQuorumEpoch, KIP-595);
//! this is the same notice for a leader that can no longer send it. Each follower keeps an idle
//! HTTP/2 connection to the active controller ([`watch_active_controller`]). When that connection
//! closes and a new one is refused, the leader is gone, and the survivors elect one of themselves
//! at once ([`campaign`]). A connection that closes while the port still accepts, a port that never
//! accepted this node (a firewall that rejects it), or a cut network (no close, no refusal) proves
//! nothing, and the election timers decide as before. Raft's safety never depends on when an election starts; a wrong notice
//! could only cost an unneeded election.
//!
//! Why every survivor campaigns, and then in turn: a voter's lease is cleared only when its vote
//! changes, which openraft does for a candidate with a greater vote or when the voter campaigns
//! itself. So at the notice every survivor campaigns once: its vote becomes its own, uncommitted,
//! which carries no lease. That usually elects one at once, since openraft orders the votes of one
//! term by node id and the survivor with the highest id is granted by the others. When it is not
//! (a survivor noticed late and its lease refused, or the highest id's log is behind another's),
//! the survivors campaign again in the order of their ids, highest first, each with a term above
//! any the ones before it reached, until one has won. A survivor that has granted its vote to
//! another since the notice gives that one a few turns to win first. If nobody has won when the
//! turns are over, the election timers decide. A turn is a heartbeat interval (at least 100 ms).

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chronik_control_auth::ClientCredentials;
use hyper_util::rt::TokioIo;
use openraft::{RaftMetrics, ServerState};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Uri};
use tracing::{debug, info, warn};

use super::vote_hold::VoteHold;
use super::{ChronikRaft, NodeId};

/// Shortest time between one survivor's campaign and the next one's (otherwise a heartbeat
/// interval): longer than a vote's round trip (a network hop and the voter's write of its vote) and
/// than the spread of the survivors' notices.
const MIN_TURN: Duration = Duration::from_millis(100);
/// How many turns a survivor that granted its vote to another since the notice waits for that one
/// to say it won (its first AppendEntries) before campaigning itself: a vote can also be one the
/// survivor took from a candidate that refused it, and that candidate may be unable to win.
const GRANTED_TURNS: u32 = 3;
/// Longest wait for the watching connection, and for the connection that tells a closed watch from
/// a departed leader.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 keepalive of the watching connection, so that one a network fault broke without a close
/// is replaced rather than watched forever.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a leader whose connection closed must keep accepting connections to count as alive,
/// and how often its port is tried meanwhile.
const CONFIRM_WINDOW: Duration = Duration::from_millis(250);
const CONFIRM_INTERVAL: Duration = Duration::from_millis(25);
/// Pause before watching the same leader again after its connection closed while its port still
/// accepted, or could not be made.
const REWATCH_PAUSE: Duration = Duration::from_millis(500);

/// The active controller as a follower sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leader {
    id: NodeId,
    term: u64,
    address: String,
    voters: BTreeSet<NodeId>,
}

impl Leader {
    /// The leader `metrics` show when this node (`me`) follows it.
    fn followed(me: NodeId, metrics: &RaftMetrics<NodeId, openraft::BasicNode>) -> Option<Leader> {
        let id = metrics.current_leader.filter(|&leader| leader != me)?;
        if metrics.state != ServerState::Follower {
            return None;
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&me) {
            return None;
        }
        Some(Leader {
            id,
            term: metrics.current_term,
            address: membership.get_node(&id)?.addr.clone(),
            voters,
        })
    }
}

/// Watches the active controller from this follower (`me`) and, once its process is gone, makes the
/// survivors elect a new one (see the module docs); `heartbeat` is the Raft heartbeat interval.
/// Runs until `shutdown`.
pub async fn watch_active_controller(
    raft: ChronikRaft,
    me: NodeId,
    credentials: ClientCredentials,
    heartbeat: Duration,
    hold: Arc<VoteHold>,
    shutdown: CancellationToken,
) {
    let turn = heartbeat.max(MIN_TURN);
    let mut metrics = raft.metrics();
    // The leader last connected to: a refused connection is news of its death only after one was
    // accepted on its port (never, behind a firewall that rejects this node).
    let mut connected: Option<Leader> = None;
    loop {
        let leader = tokio::select! {
            _ = shutdown.cancelled() => return,
            leader = followed_leader(&mut metrics, me) => match leader {
                Some(leader) => leader,
                None => return, // Raft has shut down.
            },
        };
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            ended = watch(&credentials, &leader, &mut metrics, me) => ended,
        };
        debug!(
            leader = leader.id,
            ?ended,
            "the watch of the active controller ended"
        );
        let gone = match ended {
            Watch::LeaderChanged => continue,
            Watch::Closed => {
                connected = Some(leader.clone());
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    gone = confirm_gone(&leader.address) => gone,
                }
            }
            Watch::Refused(reason) if connected.as_ref() == Some(&leader) => Some(reason),
            Watch::Refused(reason) | Watch::Failed(reason) => {
                debug!(leader = leader.id, address = %leader.address, %reason, "cannot watch the active controller");
                None
            }
        };
        match gone {
            Some(reason) if Leader::followed(me, &metrics.borrow()).as_ref() == Some(&leader) => {
                info!(
                    leader = leader.id,
                    term = leader.term,
                    address = %leader.address,
                    %reason,
                    "the active controller's process is gone (its connection closed and its port refuses connections): electing a new one without waiting out its lease"
                );
                // A node holding its vote may lack entries the departed leader committed.
                if !hold.is_held() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        () = campaign(&raft, me, &leader, turn, &mut metrics) => {}
                    }
                }
            }
            Some(_) => {} // Another leader already: nothing to do.
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    () = tokio::time::sleep(REWATCH_PAUSE) => {}
                }
            }
        }
    }
}

/// Waits until this node follows a leader; `None` once Raft has shut down.
async fn followed_leader(
    metrics: &mut watch::Receiver<RaftMetrics<NodeId, openraft::BasicNode>>,
    me: NodeId,
) -> Option<Leader> {
    loop {
        if let Some(leader) = Leader::followed(me, &metrics.borrow_and_update()) {
            return Some(leader);
        }
        metrics.changed().await.ok()?;
    }
}

/// How a watch of the active controller ended.
#[derive(Debug)]
enum Watch {
    /// Raft follows another leader (or none, or this node leads).
    LeaderChanged,
    /// The connection closed.
    Closed,
    /// The connection was refused: nothing listens at the leader's address.
    Refused(String),
    /// The connection could not be made for another reason (a timeout, a name that does not
    /// resolve, a TLS failure): that proves nothing.
    Failed(String),
}

/// Holds an idle HTTP/2 connection to `leader` until it closes or Raft follows another leader.
async fn watch(
    credentials: &ClientCredentials,
    leader: &Leader,
    metrics: &mut watch::Receiver<RaftMetrics<NodeId, openraft::BasicNode>>,
    me: NodeId,
) -> Watch {
    let closed = Arc::new(Notify::new());
    let endpoint = match credentials.endpoint(&leader.address) {
        Ok(endpoint) => endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true),
        Err(e) => return Watch::Failed(e.to_string()),
    };
    let connector = {
        let closed = closed.clone();
        tower::service_fn(move |uri: Uri| {
            let closed = closed.clone();
            async move {
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                let port = uri.port_u16().unwrap_or(80);
                let stream = TcpStream::connect((host, port)).await?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(TokioIo::new(NotifyOnClose { stream, closed }))
            }
        })
    };
    // Held, never used: while it lives, so does its connection.
    let _channel: Channel = match endpoint.connect_with_connector(connector).await {
        Ok(channel) => channel,
        Err(e) if is_refused(&e) => return Watch::Refused(error_chain(&e)),
        Err(e) => return Watch::Failed(error_chain(&e)),
    };
    debug!(leader = leader.id, address = %leader.address, "watching the active controller");
    loop {
        tokio::select! {
            () = closed.notified() => return Watch::Closed,
            changed = metrics.changed() => {
                if changed.is_err()
                    || Leader::followed(me, &metrics.borrow_and_update()).as_ref() != Some(leader)
                {
                    return Watch::LeaderChanged;
                }
            }
        }
    }
}

/// After the watching connection closed: `Some(why)` when nothing listens at `address` any more.
/// A dying process can close its connections a moment before its listening socket (the kernel
/// still completes connections to it), so one accepted connection does not prove it lives: the
/// port is tried again for a short while before the leader counts as alive.
async fn confirm_gone(address: &str) -> Option<String> {
    let deadline = Instant::now() + CONFIRM_WINDOW;
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => return Some(e.to_string()),
            Ok(Ok(_)) if Instant::now() < deadline => {
                tokio::time::sleep(CONFIRM_INTERVAL).await;
            }
            _ => return None,
        }
    }
}

/// Elects a new leader among the survivors of `departed` (see the module docs), or leaves it to the
/// election timers once every survivor has had its turn.
async fn campaign(
    raft: &ChronikRaft,
    me: NodeId,
    departed: &Leader,
    turn: Duration,
    metrics: &mut watch::Receiver<RaftMetrics<NodeId, openraft::BasicNode>>,
) {
    // Highest id first: when the others' leases refused its first campaign, it is the one they
    // then voted for (by openraft's vote order), and its second campaign wins at once.
    let Some(rank) = departed
        .voters
        .iter()
        .rev()
        .filter(|&&id| id != departed.id)
        .position(|&id| id == me)
    else {
        return;
    };
    // Campaigning once clears this node's lease for the others' campaigns.
    if raft.trigger().elect().await.is_err() {
        return;
    }
    let elected = |m: &RaftMetrics<NodeId, openraft::BasicNode>| {
        m.current_term > departed.term && m.current_leader.is_some_and(|id| id != departed.id)
    };
    // At 100,000 partitions the winner's first AppendEntries, which tells a survivor that granted
    // it its vote that it won, came 130 ms after it won; campaigning in the meantime deposed it.
    let granted = |m: &RaftMetrics<NodeId, openraft::BasicNode>| {
        m.current_term > departed.term
            && m.vote
                .leader_id()
                .voted_for()
                .is_some_and(|id| id != me && id != departed.id)
    };
    let my_turn = turn * (rank as u32 + 1);
    let seen = tokio::time::timeout(my_turn, metrics.wait_for(|m| elected(m) || granted(m)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|seen| elected(&seen));
    match seen {
        Some(true) => return,
        Some(false) => {
            let grace = turn * GRANTED_TURNS;
            if tokio::time::timeout(grace, metrics.wait_for(elected))
                .await
                .is_ok()
            {
                return;
            }
        }
        None => {}
    }
    // Survivor `r` reaches term T + 2 + r (T the departed leader's, every survivor at T + 1 after
    // its first campaign): above the terms of every survivor whose turn came before.
    info!(
        departed = departed.id,
        rank, "no controller elected yet: campaigning in turn"
    );
    for _ in 0..=rank {
        if raft.trigger().elect().await.is_err() {
            return;
        }
    }
    let rest = (turn * (departed.voters.len() as u32 - 1 - rank as u32)).max(turn);
    if tokio::time::timeout(rest, metrics.wait_for(elected))
        .await
        .is_err()
    {
        warn!(
            departed = departed.id,
            "no controller elected after every survivor's turn: the election timers decide"
        );
    }
}

fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// An error and its sources on one line, skipping sources whose text is already there (tonic's
/// transport error repeats the I/O error it wraps).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}

/// A connection that wakes `closed` when the HTTP client lets go of it: the connection ended.
struct NotifyOnClose {
    stream: TcpStream,
    closed: Arc<Notify>,
}

impl Drop for NotifyOnClose {
    fn drop(&mut self) {
        self.closed.notify_one();
    }
}

impl AsyncRead for NotifyOnClose {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for NotifyOnClose {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_nothing_listens_on_is_gone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(confirm_gone(&address).await.is_some());
    }

    #[tokio::test]
    async fn a_port_that_keeps_accepting_is_not_gone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        assert_eq!(confirm_gone(&address).await, None);
        assert!(started.elapsed() >= CONFIRM_WINDOW);
    }

    #[tokio::test]
    async fn a_port_that_closes_within_the_window_is_gone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            tokio::time::sleep(CONFIRM_WINDOW / 3).await;
            drop(listener);
        });
        assert!(confirm_gone(&address).await.is_some());
    }
}
