//! The Kafka wire protocol: the table of supported APIs and versions, and frame ↔ request/response
//! codec over the `kafka-protocol` crate. No IO here.

pub mod codec;
pub mod fetch_metadata;
pub mod versions;
