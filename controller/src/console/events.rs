//! `/api/v1/events`: the console's live updates as server-sent events.
//!
//! - `metadata`: this controller applied metadata (the state machine's applied offset moved; Raft's
//!   own entries included). Its data is the overview (`/api/v1/overview`) as of that offset, so the
//!   overview page redraws without asking again; other pages ask their API again.
//! - `sample`: the sampler finished a round (`{"at_ms": ...}`): high watermarks, sizes and lag moved.
//!
//! A burst of applied entries is coalesced: at most one `metadata` event per [`COALESCE`], always
//! describing the latest offset, so a slow browser never falls behind. The first event is a
//! `metadata` one, so a page that connects has the current state at once.
//!
//! What must stay true: a stream ends when the node shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::watch;

use super::api::overview;
use super::Console;

/// The shortest time between two `metadata` events of one stream.
const COALESCE: Duration = Duration::from_millis(100);

struct Follow {
    console: Arc<Console>,
    offsets: watch::Receiver<u64>,
    samples: watch::Receiver<u64>,
    first: bool,
}

pub async fn events(
    State(console): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let follow = Follow {
        offsets: console.quorum.applied().subscribe(),
        samples: console.sampled.subscribe(),
        console,
        first: true,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let event = next_event(&mut follow).await?;
        Some((Ok(event), follow))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The next event, or `None` at shutdown.
async fn next_event(follow: &mut Follow) -> Option<Event> {
    let shutdown = follow.console.shutdown.clone();
    if !std::mem::take(&mut follow.first) {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            changed = follow.offsets.changed() => {
                changed.ok()?;
                // Let a burst of entries land, then describe the latest.
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(COALESCE) => {}
                }
            }
            changed = follow.samples.changed() => {
                changed.ok()?;
                follow.samples.borrow_and_update();
                let at_ms = follow.console.sample().at_ms;
                return Some(Event::default().event("sample").data(format!("{{\"at_ms\":{at_ms}}}")));
            }
        }
    }
    follow.offsets.borrow_and_update();
    let overview = overview(&follow.console);
    Event::default().event("metadata").json_data(&overview).ok()
}
