//! Chronik's broker. It keeps no metadata of its own: it registers with the controller quorum, follows
//! the metadata log into an in-memory image, heartbeats to stay unfenced, serves the Kafka protocol,
//! stores partitions in its own segmented logs and replicates them between brokers. A walk through the
//! code (crates, layers, a Produce and a broker failure): `docs/architecture.md`.
//!
//! Layout, from the socket down; each module uses only those below it:
//! - `server` (`Broker`: starts and stops everything), `connection` (one client: frames in, responses
//!   out, in order), `http` (health, readiness, metrics);
//! - `protocol` (framing and the one table of served API versions), `handlers` (one Kafka API per
//!   file);
//! - `group` (the group coordinator over `__consumer_offsets`), `producer_ids` (id blocks for
//!   InitProducerId);
//! - `replica` (partition roles, high watermark and ISR, acks=all waits, follower fetchers);
//! - `lifecycle` (registration, heartbeats, controlled shutdown), `metadata` (the image and the watch
//!   that feeds it), `controller_client` (the quorum connection);
//! - `log` (segmented partition logs, indexes, producer state, cleaner), `status` (this broker's
//!   standing with the controller), `config` (flags), `error` (process errors and the controller-call
//!   error), `alloc` (the allocator that survives hostile array counts).

pub mod alloc;
pub mod config;
pub mod connection;
pub mod controller_client;
pub mod error;
pub mod group;
pub mod handlers;
pub mod http;
pub mod lifecycle;
pub mod log;
pub mod metadata;
pub mod producer_ids;
pub mod protocol;
pub mod replica;
pub mod server;
pub mod status;

/// The unit tests decode hostile frames too, so they run on the broker's allocator.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::LazyLargeAllocator = alloc::LazyLargeAllocator;

pub use config::BrokerConfig;
pub use error::{BrokerError, ControllerCallError};
pub use metadata::MetadataCache;
pub use server::{run, Broker};
pub use status::{BrokerState, BrokerStatus};
