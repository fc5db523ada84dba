//! Chronik's broker. It keeps no metadata of its own: it registers with the controller quorum, follows
//! the metadata log into an in-memory image, heartbeats to stay unfenced, and hands its leaderships over
//! in a controlled shutdown. The Kafka listener and the partition logs build on these parts.
//! A walk through the code (crates, layers, a Produce and a broker failure): `docs/architecture.md`.
//!
//! Layout: `config` (flags), `error`, `controller_client` (the quorum connection), `metadata` (the image
//! and the watch that feeds it), `lifecycle` (registration, heartbeats, controlled shutdown), `http`
//! (health, readiness, metrics), `producer_ids` (producer id blocks for InitProducerId) and `server`
//! (`Broker`, which starts and stops all of them).

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
