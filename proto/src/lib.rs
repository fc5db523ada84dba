//! Generated gRPC types and services for Chronik's control plane. No logic lives here: conversions to
//! domain types belong to the crate that owns the domain type.

#![allow(clippy::all, clippy::pedantic)]

/// Version 1 of the control-plane API (`package chronik.v1`).
pub mod v1 {
    tonic::include_proto!("chronik.v1");
}

/// gRPC metadata key carrying the Kafka error name of a failed call.
pub const ERROR_METADATA_KEY: &str = "chronik-error";
/// gRPC metadata key carrying the active controller (`id@host:port`) on NOT_CONTROLLER.
pub const LEADER_METADATA_KEY: &str = "chronik-leader";
