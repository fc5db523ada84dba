//! Chronik's controller: a Raft-replicated quorum (openraft + sled) that owns the cluster metadata —
//! brokers and their epochs, topics, partition assignments, ISRs, leaders and leader epochs — and serves
//! it to brokers and operators over gRPC and HTTP.
//! A walk through the code (crates, modules, a broker failure file by file): `docs/architecture.md`.

pub mod api;
pub mod applied;
pub mod config;
pub mod error;
pub mod liveness;
pub mod node;
pub mod quorum;
pub mod raft;
pub mod shutdown;
pub mod state;
