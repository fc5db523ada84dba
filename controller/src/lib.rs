//! Chronik's controller: a Raft-replicated quorum (openraft + sled) that owns the cluster metadata —
//! brokers and their epochs, topics, partition assignments, ISRs, leaders and leader epochs — and serves
//! it to brokers and operators over gRPC and HTTP.
//! A walk through the code (crates, modules, a broker failure file by file): `docs/architecture.md`.
//!
//! Layout: `node` (start and stop one controller), `config` (flags), `error`, `quorum` (the single
//! writer: run a command, propose its records, wait until applied), `state/` (pure commands over the
//! image: `cluster`, `topics`, `election`, `placement`), `raft/` (openraft over sled: log store, state
//! machine, network, service), `applied` (the image as applied, for readers), `liveness` (the active
//! controller's broker sessions and fencing), `api/` (gRPC for brokers and operators, HTTP, `auth`: who
//! may call what), `console` (the web console at `/` and its JSON APIs, reading the brokers through
//! `chronik-kafka-client`), `security` (TLS and tokens, loaded at start), `shutdown`.
//! The records, the image and the config rules are shared with brokers in `chronik-metadata`.

pub mod api;
pub mod applied;
pub mod config;
pub mod console;
pub mod error;
pub mod liveness;
pub mod metrics;
pub mod node;
pub mod quorum;
pub mod raft;
pub mod security;
pub mod shutdown;
pub mod state;
