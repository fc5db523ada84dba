//! Broker liveness, tracked by the active controller only and in memory only (heartbeats write nothing
//! to the log unless a broker's state changes). A broker whose last heartbeat is older than the session
//! timeout is fenced, one broker at a time so each fencing's effects land before the next. A controller
//! that becomes active gives every registered broker a fresh session rather than fencing it for the
//! time leadership took to move.
//!
//! Contact is recorded when a heartbeat of the broker's current registration arrives
//! (`record_heartbeat`), before its outcome goes through the quorum: a slow quorum delays the reply,
//! not the proof that the broker is alive (Kafka's `BrokerHeartbeatManager` likewise touches the
//! session before queueing the request).
//!
//! A dead process is found faster than by missed heartbeats: every broker holds a `BrokerSession`
//! stream open on the active controller, and a process that dies closes its connections at once. A
//! broker all of whose session streams are closed, and that has not opened a new one within the grace
//! period (`--broker-session-grace-ms`), is expired like one whose heartbeats stopped. A silent failure
//! (a pause, a cut network, power loss) keeps its connections open and is found by the session timeout.
//!
//! Other brokers add evidence: a follower whose connection to the broker's Kafka listener was refused
//! (`ReportUnreachableBroker`: the host answers, nothing listens) has seen the process gone. With its
//! streams closed too, two independent signs agree, and the broker is expired without waiting out
//! the rest of the grace. A report alone never expires anyone.
//!
//! What must stay true:
//! - a broker is expired only by its current registration's own evidence: heartbeats older than the
//!   session timeout, or every stream of that registration closed for longer than the grace. A stream
//!   of an earlier registration or an earlier term neither saves nor condemns a session;
//! - a broker that reopens its stream within the grace keeps its session, and so does one that
//!   heartbeats after its streams closed (it is alive; the session timeout judges it): one dropped
//!   connection never fences a healthy broker;
//! - a report that the broker refused a connection shortens the grace only while every stream is
//!   closed, and counts only for a grace period after it arrived and until the broker shows life;
//! - a broker that never opened a stream (or whose controller has leadership anew) is judged by its
//!   heartbeats alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::metrics;
use crate::quorum::Quorum;
use crate::state::cluster::{evict_inactive_broker, fence_broker};
use crate::state::topics::{elect_leaders, ElectionScope};
use crate::state::{BrokerId, ControllerResult, MetadataImage};

#[derive(Clone, Copy, Debug)]
struct Session {
    broker_epoch: i64,
    last_contact: Instant,
    metadata_offset: u64,
    /// `BrokerSession` streams of this registration open now.
    open_streams: u32,
    /// When the last open stream closed, if none is open since.
    streams_lost_at: Option<Instant>,
    /// When another broker last reported this registration's listener refusing its connection,
    /// unless this broker showed life since.
    refused_at: Option<Instant>,
    /// When a heartbeat last reported the broker's metadata at this controller's (DescribeQuorum).
    caught_up_at: Option<Instant>,
}

impl Session {
    fn new(broker_epoch: i64, now: Instant) -> Self {
        Session {
            broker_epoch,
            last_contact: now,
            metadata_offset: 0,
            open_streams: 0,
            streams_lost_at: None,
            refused_at: None,
            caught_up_at: None,
        }
    }

    fn expiry(&self, session_timeout: Duration, grace: Duration) -> Option<Expiry> {
        if self.last_contact.elapsed() > session_timeout {
            Some(Expiry::SessionTimedOut)
        } else if self.open_streams == 0
            && self.streams_lost_at.is_some_and(|t| t.elapsed() > grace)
        {
            Some(Expiry::StreamLost)
        } else if self.open_streams == 0
            && self.streams_lost_at.is_some()
            && self.refused_at.is_some_and(|t| t.elapsed() <= grace)
        {
            Some(Expiry::StreamLostAndRefused)
        } else {
            None
        }
    }
}

/// One broker as DescribeQuorum reports it (see `Liveness::observers`).
#[derive(Clone, Copy, Debug)]
pub struct Observer {
    pub broker_id: BrokerId,
    pub metadata_offset: u64,
    pub last_contact: Instant,
    pub caught_up_at: Option<Instant>,
}

/// Why a broker's session is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No heartbeat for longer than the session timeout (or none since this controller leads).
    SessionTimedOut,
    /// Every `BrokerSession` stream closed and none reopened within the grace period.
    StreamLost,
    /// Every `BrokerSession` stream closed, and another broker found its listener refusing
    /// connections.
    StreamLostAndRefused,
}

impl Expiry {
    /// The `cause` label of the fencings metric.
    pub fn cause(&self) -> &'static str {
        match self {
            Expiry::SessionTimedOut => "session_timed_out",
            Expiry::StreamLost => "session_stream_lost",
            Expiry::StreamLostAndRefused => "session_stream_lost_and_refused",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Expiry::SessionTimedOut => "session expired",
            Expiry::StreamLost => "session stream closed and not reopened within the grace period",
            Expiry::StreamLostAndRefused => {
                "session stream closed and another broker found its listener refusing connections"
            }
        }
    }
}

#[derive(Default)]
struct Sessions {
    /// The Raft term these sessions belong to; sessions from an earlier term are discarded.
    term: u64,
    by_broker: HashMap<BrokerId, Session>,
    /// Offset of each broker's controlled-shutdown record.
    shutdown_offsets: HashMap<BrokerId, u64>,
}

pub struct Liveness {
    session_timeout: Duration,
    /// How long a broker may be without an open session stream; `None`: streams are not used.
    stream_grace: Option<Duration>,
    sessions: Mutex<Sessions>,
    /// Woken when a stream grace runs out, so `run_liveness` need not wait for its next tick.
    waker: Arc<Notify>,
}

/// Held by the gRPC handler for as long as one `BrokerSession` stream is open; dropping it (the stream
/// closed, however) starts the grace period if it was the broker's last open stream.
pub struct SessionStream {
    liveness: Arc<Liveness>,
    broker_id: BrokerId,
    broker_epoch: i64,
    term: u64,
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        self.liveness
            .stream_closed(self.broker_id, self.broker_epoch, self.term);
    }
}

impl Liveness {
    /// Sessions expire after `session_timeout` without a heartbeat, or `stream_grace` after the last
    /// session stream closed (never, with `None`).
    pub fn new(session_timeout: Duration, stream_grace: Option<Duration>) -> Self {
        Self {
            session_timeout,
            stream_grace,
            sessions: Mutex::new(Sessions::default()),
            waker: Arc::new(Notify::new()),
        }
    }

    pub fn stream_grace(&self) -> Option<Duration> {
        self.stream_grace
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts fresh sessions for every registered broker when this node's term changes.
    pub fn on_term(&self, term: u64, image: &MetadataImage) {
        let mut sessions = self.lock();
        if sessions.term == term {
            return;
        }
        let now = Instant::now();
        sessions.term = term;
        sessions.shutdown_offsets.clear();
        sessions.by_broker = image
            .brokers
            .values()
            .map(|b| (b.broker_id, Session::new(b.broker_epoch, now)))
            .collect();
    }

    /// Records a heartbeat (or registration) from a broker. A new registration starts a new session.
    pub fn touch(&self, broker_id: BrokerId, broker_epoch: i64, metadata_offset: u64) {
        let now = Instant::now();
        let mut sessions = self.lock();
        let session = sessions
            .by_broker
            .entry(broker_id)
            .or_insert_with(|| Session::new(broker_epoch, now));
        if session.broker_epoch != broker_epoch {
            *session = Session::new(broker_epoch, now);
        }
        session.last_contact = now;
        session.metadata_offset = metadata_offset;
        // A heartbeat after the streams closed proves the process alive: the closed streams were a
        // network fault, not a death, and only the session timeout judges it from here.
        session.streams_lost_at = None;
        session.refused_at = None;
    }

    /// Counts a `BrokerSession` stream of the broker's current registration in `image`, opened while
    /// this controller leads in `term`; `None` if the registration is not current (or streams are not
    /// used). The stream counts until the returned guard is dropped.
    pub fn open_stream(
        self: &Arc<Self>,
        image: &MetadataImage,
        term: u64,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Option<SessionStream> {
        self.stream_grace?;
        let current = image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| b.broker_epoch == broker_epoch);
        if !current {
            return None;
        }
        let mut sessions = self.lock();
        if sessions.term != term {
            return None;
        }
        let now = Instant::now();
        let session = sessions
            .by_broker
            .entry(broker_id)
            .or_insert_with(|| Session::new(broker_epoch, now));
        if session.broker_epoch != broker_epoch {
            *session = Session::new(broker_epoch, now);
        }
        session.open_streams += 1;
        session.streams_lost_at = None;
        session.refused_at = None;
        Some(SessionStream {
            liveness: self.clone(),
            broker_id,
            broker_epoch,
            term,
        })
    }

    fn stream_closed(&self, broker_id: BrokerId, broker_epoch: i64, term: u64) {
        let Some(grace) = self.stream_grace else {
            return;
        };
        let mut sessions = self.lock();
        if sessions.term != term {
            return;
        }
        let Some(session) = sessions
            .by_broker
            .get_mut(&broker_id)
            .filter(|s| s.broker_epoch == broker_epoch && s.open_streams > 0)
        else {
            return;
        };
        session.open_streams -= 1;
        if session.open_streams > 0 {
            return;
        }
        session.streams_lost_at = Some(Instant::now());
        drop(sessions);
        // Wake the liveness task now (a refusal may already have been reported) and just after the
        // grace runs out (it ticks anyway; this only saves the wait for the next tick). Outside a
        // runtime (a test dropping a guard) the tick does it.
        self.waker.notify_one();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let liveness = self.liveness_waker();
            runtime.spawn(async move {
                tokio::time::sleep(grace + Duration::from_millis(1)).await;
                liveness.notify_one();
            });
        }
    }

    /// Another broker (`reporter`, a current registration in `image`) found the listener of
    /// `broker_id`'s registration `broker_epoch` refusing its connection. Recorded for the current
    /// registration only; it fences nothing unless that broker's session streams are closed.
    /// Returns whether the report was recorded.
    pub fn note_refused(
        &self,
        image: &MetadataImage,
        reporter: BrokerId,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> bool {
        if self.stream_grace.is_none() || reporter == broker_id {
            return false;
        }
        let current = image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| b.broker_epoch == broker_epoch && !b.fenced);
        if !current {
            return false;
        }
        let mut sessions = self.lock();
        let Some(session) = sessions
            .by_broker
            .get_mut(&broker_id)
            .filter(|s| s.broker_epoch == broker_epoch)
        else {
            return false;
        };
        session.refused_at = Some(Instant::now());
        drop(sessions);
        self.waker.notify_one();
        true
    }

    fn liveness_waker(&self) -> Arc<Notify> {
        self.waker.clone()
    }

    /// Resolves when a stream grace may have run out.
    async fn woken(&self) {
        self.waker.notified().await;
    }

    /// Records a heartbeat as it arrives. Only a heartbeat of the broker's current registration in
    /// `image` counts: one from a previous incarnation must not refresh (or replace) its session.
    pub fn record_heartbeat(
        &self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        metadata_offset: u64,
    ) {
        let current = image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| b.broker_epoch == broker_epoch);
        if current {
            self.touch(broker_id, broker_epoch, metadata_offset);
            if metadata_offset >= image.offset {
                if let Some(session) = self.lock().by_broker.get_mut(&broker_id) {
                    session.caught_up_at = Some(Instant::now());
                }
            }
        }
    }

    /// What DescribeQuorum reports of each registered broker with a session (an observer of the
    /// metadata log, as Kafka's brokers are): the metadata offset its last heartbeat reported, when
    /// that was, and when it last reported being caught up, as instants.
    pub fn observers(&self, image: &MetadataImage) -> Vec<Observer> {
        let sessions = self.lock();
        image
            .brokers
            .values()
            .filter_map(|b| {
                let s = sessions
                    .by_broker
                    .get(&b.broker_id)
                    .filter(|s| s.broker_epoch == b.broker_epoch)?;
                Some(Observer {
                    broker_id: b.broker_id,
                    metadata_offset: s.metadata_offset,
                    last_contact: s.last_contact,
                    caught_up_at: s.caught_up_at,
                })
            })
            .collect()
    }

    pub fn remove(&self, broker_id: BrokerId) {
        let mut sessions = self.lock();
        sessions.by_broker.remove(&broker_id);
        sessions.shutdown_offsets.remove(&broker_id);
    }

    /// Forgets the session of registration `broker_epoch` of the broker, if it is still the one
    /// held: a new registration of the same id that came in since keeps its own.
    pub fn remove_registration(&self, broker_id: BrokerId, broker_epoch: i64) {
        let mut sessions = self.lock();
        if sessions
            .by_broker
            .get(&broker_id)
            .is_some_and(|s| s.broker_epoch == broker_epoch)
        {
            sessions.by_broker.remove(&broker_id);
            sessions.shutdown_offsets.remove(&broker_id);
        }
    }

    /// Whether the broker's session is alive: heartbeats in time, and an open stream or one closed
    /// within the grace.
    pub fn has_live_session(&self, broker_id: BrokerId) -> bool {
        self.lock()
            .by_broker
            .get(&broker_id)
            .is_some_and(|s| s.expiry(self.session_timeout, self.grace()).is_none())
    }

    fn grace(&self) -> Duration {
        self.stream_grace.unwrap_or(Duration::MAX)
    }

    pub fn note_controlled_shutdown(&self, broker_id: BrokerId, offset: u64) {
        self.lock()
            .shutdown_offsets
            .entry(broker_id)
            .or_insert(offset);
    }

    /// Whether every other active broker with a session has applied metadata past the broker's
    /// controlled-shutdown record (as Kafka's `BrokerHeartbeatManager` requires), so clients and
    /// followers already know the new leaders.
    pub fn others_caught_up(&self, image: &MetadataImage, broker_id: BrokerId) -> bool {
        let sessions = self.lock();
        let target = sessions
            .shutdown_offsets
            .get(&broker_id)
            .copied()
            .unwrap_or(image.offset);
        image
            .active_brokers()
            .filter(|b| b.broker_id != broker_id)
            .all(|b| {
                sessions
                    .by_broker
                    .get(&b.broker_id)
                    .is_none_or(|s| s.broker_epoch != b.broker_epoch || s.metadata_offset >= target)
            })
    }

    /// The first broker that is not fenced but whose session expired, and why.
    pub fn next_expired(&self, image: &MetadataImage) -> Option<(BrokerId, i64, Expiry)> {
        let sessions = self.lock();
        let grace = self.grace();
        image.brokers.values().filter(|b| !b.fenced).find_map(|b| {
            let expiry = match sessions
                .by_broker
                .get(&b.broker_id)
                .filter(|s| s.broker_epoch == b.broker_epoch)
            {
                None => Some(Expiry::SessionTimedOut),
                Some(s) => s.expiry(self.session_timeout, grace),
            };
            expiry.map(|e| (b.broker_id, b.broker_epoch, e))
        })
    }
}

/// The active controller's periodic duties: fence brokers whose sessions expired, move partitions off
/// a fenced broker should a stale (skipped) change have left them there, and, every
/// `rebalance_interval`, move leadership back to preferred replicas that are in sync again.
pub async fn run_liveness(
    quorum: Arc<Quorum>,
    liveness: Arc<Liveness>,
    check_interval: Duration,
    rebalance_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rebalance = Instant::now();
    // The image offset the last check for partitions left on an inactive or unregistered broker
    // found none at: another check finds none either until the image changes (it scans every
    // partition, once per inactive broker). And the registered brokers then: partitions can be left
    // on an unregistered one only once they change.
    let mut evicted_up_to = None;
    let mut checked_brokers: Option<Vec<(BrokerId, i64)>> = None;
    // The active controller last seen, to count changes of it.
    let mut known_leader = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            _ = liveness.woken() => {}
        }
        let (term, is_leader) = {
            let raft_metrics = quorum.raft().metrics();
            let m = raft_metrics.borrow();
            if m.current_leader.is_some() && m.current_leader != known_leader {
                if known_leader.is_some() {
                    metrics().leader_changed();
                }
                known_leader = m.current_leader;
            }
            (m.current_term, m.current_leader == Some(quorum.node_id()))
        };
        if !is_leader {
            continue;
        }
        let image = quorum.applied().image();
        liveness.on_term(term, &image);
        if let Some((broker_id, broker_epoch, expiry)) = liveness.next_expired(&image) {
            let result = quorum
                .run(|image| {
                    // Re-check against the image the command runs on: the broker may have come back.
                    let still_expired = image
                        .brokers
                        .get(&broker_id)
                        .is_some_and(|b| b.broker_epoch == broker_epoch && !b.fenced)
                        && !liveness.has_live_session(broker_id);
                    let records = if still_expired {
                        fence_broker(image, broker_id)
                    } else {
                        Vec::new()
                    };
                    Ok(ControllerResult::new(records, still_expired))
                })
                .await;
            match result {
                Ok((offset, true)) => {
                    metrics().fenced(expiry.cause());
                    info!(
                        broker_id,
                        broker_epoch,
                        offset,
                        "fenced broker: {}",
                        expiry.describe()
                    )
                }
                Ok((_, false)) => {}
                Err(e) => warn!(broker_id, "could not fence broker: {e}"),
            }
            continue;
        }
        if evicted_up_to != Some(image.offset) {
            let brokers: Vec<(BrokerId, i64)> = image
                .brokers
                .values()
                .map(|b| (b.broker_id, b.broker_epoch))
                .collect();
            let unregistered_too = checked_brokers.as_ref() != Some(&brokers);
            if evict_inactive_broker(&image, unregistered_too).is_empty() {
                evicted_up_to = Some(image.offset);
                checked_brokers = Some(brokers);
            } else {
                match quorum
                    .run(|image| {
                        Ok(ControllerResult::new(
                            evict_inactive_broker(image, true),
                            (),
                        ))
                    })
                    .await
                {
                    Ok((offset, ())) => {
                        warn!(
                            offset,
                            "moved partitions off an inactive broker a stale change had left them on"
                        )
                    }
                    Err(e) => warn!("could not move partitions off an inactive broker: {e}"),
                }
                continue;
            }
        }
        if last_rebalance.elapsed() >= rebalance_interval {
            last_rebalance = Instant::now();
            let needs_election = image.partitions().any(|(_, _, p)| {
                p.preferred_leader().is_some_and(|b| {
                    b != p.leader && p.isr.contains(&b) && image.is_active_broker(b)
                })
            });
            if needs_election {
                match quorum
                    .run(|image| elect_leaders(image, ElectionScope::All, false))
                    .await
                {
                    Ok((offset, outcomes)) => {
                        let moved = outcomes.iter().filter(|(_, _, r)| r.is_ok()).count();
                        if moved > 0 {
                            info!(moved, offset, "restored preferred leaders");
                        }
                    }
                    Err(e) => warn!("preferred leader election failed: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::tests::cluster;

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_after_the_timeout_and_a_new_term_refreshes_them() {
        let image = cluster(&[1, 2], 1, 1);
        let liveness = Liveness::new(Duration::from_secs(5), None);
        liveness.on_term(3, &image);
        assert_eq!(liveness.next_expired(&image), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        liveness.touch(2, image.brokers[&2].broker_epoch, image.offset);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            liveness.next_expired(&image),
            Some((1, image.brokers[&1].broker_epoch, Expiry::SessionTimedOut))
        );
        assert!(liveness.has_live_session(2));
        assert!(!liveness.has_live_session(1));
        // Leadership moved: everyone gets a fresh session instead of being fenced.
        liveness.on_term(4, &image);
        assert_eq!(liveness.next_expired(&image), None);
        assert!(liveness.has_live_session(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_of_an_older_incarnation_does_not_count() {
        let image = cluster(&[1], 1, 1);
        let liveness = Liveness::new(Duration::from_secs(5), None);
        liveness.on_term(1, &image);
        liveness.touch(1, image.brokers[&1].broker_epoch - 1, 0);
        assert_eq!(
            liveness.next_expired(&image),
            Some((1, image.brokers[&1].broker_epoch, Expiry::SessionTimedOut))
        );
    }

    const GRACE: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn a_stream_lost_for_longer_than_the_grace_expires_only_its_own_registration() {
        let image = cluster(&[1, 2], 1, 1);
        let liveness = Arc::new(Liveness::new(Duration::from_secs(5), Some(GRACE)));
        liveness.on_term(7, &image);
        let epoch = |b: BrokerId| image.brokers[&b].broker_epoch;

        // A stream of another term or another registration is not taken.
        assert!(liveness.open_stream(&image, 6, 1, epoch(1)).is_none());
        assert!(liveness.open_stream(&image, 7, 1, epoch(1) - 1).is_none());
        let one = liveness.open_stream(&image, 7, 1, epoch(1)).unwrap();
        let two = liveness.open_stream(&image, 7, 2, epoch(2)).unwrap();

        // Broker 2 heartbeats on; its process dies (stream closed), broker 1 keeps its stream.
        drop(two);
        tokio::time::advance(GRACE).await;
        assert_eq!(
            liveness.next_expired(&image),
            None,
            "not past the grace yet"
        );
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(
            liveness.next_expired(&image),
            Some((2, epoch(2), Expiry::StreamLost))
        );
        assert!(!liveness.has_live_session(2));
        assert!(liveness.has_live_session(1));
        // A heartbeat after the loss proves the process alive: only the session timeout judges it now.
        liveness.touch(2, epoch(2), 0);
        assert!(liveness.has_live_session(2));
        tokio::time::advance(Duration::from_secs(5) + GRACE).await;
        assert!(!liveness.has_live_session(2));
        liveness.touch(1, epoch(1), 0);

        // A new registration of broker 2 starts clean.
        liveness.touch(2, epoch(2) + 100, 0);
        assert!(liveness.has_live_session(2));

        // A new term: sessions start fresh, and the old term's stream closing changes nothing.
        liveness.on_term(8, &image);
        drop(one);
        tokio::time::advance(GRACE * 2).await;
        assert!(liveness.has_live_session(1));
    }

    /// Issue #12: a follower's report that a broker's listener refused it is evidence, never enough
    /// alone: it expires the broker at once only while every stream of that registration is closed,
    /// and only for a grace period after it arrived, unless the broker showed life since.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_report_shortens_the_grace_only_while_the_streams_are_closed() {
        let image = cluster(&[1, 2, 3], 1, 1);
        let liveness = Arc::new(Liveness::new(Duration::from_secs(5), Some(GRACE)));
        liveness.on_term(1, &image);
        let epoch = |b: BrokerId| image.brokers[&b].broker_epoch;
        let one = liveness.open_stream(&image, 1, 1, epoch(1)).unwrap();
        let two = liveness.open_stream(&image, 1, 2, epoch(2)).unwrap();

        // Reports about itself, or about a registration that is not current, are not taken.
        assert!(!liveness.note_refused(&image, 2, 2, epoch(2)));
        assert!(!liveness.note_refused(&image, 3, 2, epoch(2) - 1));

        // A refusal while the stream is open fences nothing...
        assert!(liveness.note_refused(&image, 3, 2, epoch(2)));
        tokio::time::advance(GRACE / 2).await;
        assert_eq!(liveness.next_expired(&image), None);
        // ...until the stream closes within the report's grace: then at once.
        drop(two);
        assert_eq!(
            liveness.next_expired(&image),
            Some((2, epoch(2), Expiry::StreamLostAndRefused))
        );
        assert!(!liveness.has_live_session(2));
        liveness.touch(2, epoch(2), 0);
        assert!(liveness.has_live_session(2), "a heartbeat shows it alive");

        // A report older than the grace when the stream closes counts for nothing: the full grace.
        assert!(liveness.note_refused(&image, 3, 1, epoch(1)));
        tokio::time::advance(GRACE + Duration::from_millis(10)).await;
        drop(one);
        assert_eq!(liveness.next_expired(&image), None);
        tokio::time::advance(GRACE + Duration::from_millis(10)).await;
        assert_eq!(
            liveness.next_expired(&image),
            Some((1, epoch(1), Expiry::StreamLost))
        );

        // A stream reopened within the grace clears an earlier report: closing it again later waits
        // out the grace.
        liveness.touch(1, epoch(1), 0);
        let three = liveness.open_stream(&image, 1, 3, epoch(3)).unwrap();
        drop(three);
        assert!(liveness.note_refused(&image, 1, 3, epoch(3)));
        let three = liveness.open_stream(&image, 1, 3, epoch(3)).unwrap();
        assert!(liveness.has_live_session(3));
        drop(three);
        assert_eq!(liveness.next_expired(&image), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_liveness_task_is_woken_when_a_grace_runs_out() {
        let image = cluster(&[1], 1, 1);
        let liveness = Arc::new(Liveness::new(Duration::from_secs(5), Some(GRACE)));
        liveness.on_term(1, &image);
        let stream = liveness
            .open_stream(&image, 1, 1, image.brokers[&1].broker_epoch)
            .unwrap();
        drop(stream);
        // At once (a refusal may already have been reported)...
        tokio::time::timeout(Duration::from_millis(1), liveness.woken())
            .await
            .expect("woken when the stream closes");
        assert!(liveness.has_live_session(1), "within the grace");
        // ...and when the grace runs out, not at the next tick.
        tokio::time::timeout(GRACE * 2, liveness.woken())
            .await
            .expect("woken when the grace runs out");
        assert!(!liveness.has_live_session(1));
    }
}
