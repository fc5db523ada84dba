//! Client quotas applied to requests and answers (`crate::quota` keeps the rates): which requests
//! count (a Produce, or a consumer's Fetch), what they count, the cap on a quota'd consumer's fetch,
//! the records a throttled fetch gives up, and the `throttle_time_ms` the answer carries (KIP-219).
//! `connection.rs` calls `QuotaUse::before` and `after` around `dispatch` and mutes the connection.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::{fetch, BrokerContext, Outcome};
use crate::protocol::codec::Request;
use crate::quota::QuotaKind;

/// A request that counts toward a client quota: a Produce, or a consumer's Fetch, with whose rate it
/// counts toward.
pub struct QuotaUse {
    kind: QuotaKind,
    user: String,
    client_id: String,
}

impl QuotaUse {
    /// `None` for a request no quota applies to; `user` is the principal's name. Without any quota
    /// in the cluster, nothing is allocated or counted.
    pub fn of(ctx: &BrokerContext, request: &Request, user: &str) -> Option<Self> {
        if ctx.metadata.current().client_quotas.is_empty() {
            return None;
        }
        let kind = match &request.body {
            RequestKind::Produce(_) => QuotaKind::Produce,
            RequestKind::Fetch(f) if !fetch::is_from_follower(f, request.version) => {
                QuotaKind::Fetch
            }
            _ => return None,
        };
        Some(Self {
            kind,
            user: user.to_owned(),
            client_id: request
                .header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
        })
    }

    pub fn kind(&self) -> QuotaKind {
        self.kind
    }

    /// Before the request is handled: a Produce counts its `size` (returned: how long to throttle);
    /// a consumer's Fetch asks for no more than its quota allows in one window but the current one
    /// (Kafka's `getMaxValueInQuotaWindow`).
    pub fn before(&self, ctx: &BrokerContext, request: &mut Request, size: usize) -> Duration {
        let image = ctx.metadata.current();
        match (&mut request.body, self.kind) {
            (RequestKind::Produce(_), QuotaKind::Produce) => ctx.quotas.record(
                &image,
                self.kind,
                &self.user,
                &self.client_id,
                size,
                Instant::now(),
            ),
            (RequestKind::Fetch(fetch), QuotaKind::Fetch) => {
                if let Some(most) =
                    ctx.quotas
                        .max_in_window(&image, self.kind, &self.user, &self.client_id)
                {
                    let most = i32::try_from(most).unwrap_or(i32::MAX).max(1);
                    fetch.max_bytes = fetch.max_bytes.min(most);
                }
                Duration::ZERO
            }
            _ => Duration::ZERO,
        }
    }

    /// After the request is handled: a consumer's Fetch counts its record bytes, and one that takes
    /// the client over its quota is answered without them (they do not count then). Returns how long
    /// to throttle.
    pub fn after(&self, ctx: &BrokerContext, outcome: &mut Outcome) -> Duration {
        let Outcome::Respond(body) = outcome else {
            return Duration::ZERO;
        };
        let ResponseKind::Fetch(response) = body.as_mut() else {
            return Duration::ZERO;
        };
        let bytes: usize = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let image = ctx.metadata.current();
        let now = Instant::now();
        let throttle =
            ctx.quotas
                .record(&image, self.kind, &self.user, &self.client_id, bytes, now);
        if !throttle.is_zero() {
            ctx.quotas
                .unrecord(&image, self.kind, &self.user, &self.client_id, bytes, now);
            for partition in response
                .responses
                .iter_mut()
                .flat_map(|t| &mut t.partitions)
            {
                partition.records = None;
            }
        }
        throttle
    }
}

/// Tells the client to wait `throttle` (KIP-219): the response's `throttle_time_ms`.
pub fn with_throttle(outcome: Outcome, throttle: Duration) -> Outcome {
    let ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    match outcome {
        Outcome::Respond(mut body) => {
            match body.as_mut() {
                ResponseKind::Produce(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),
                ResponseKind::Fetch(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),
                _ => {}
            }
            Outcome::Respond(body)
        }
        Outcome::Completing(rest) => {
            Outcome::Completing(Box::pin(async move { with_throttle(rest.await, throttle) }))
        }
        other => other,
    }
}
