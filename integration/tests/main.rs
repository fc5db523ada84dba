//! Chronik's end-to-end tests: real controller and broker processes on loopback, real faults (kill -9,
//! SIGSTOP, SIGTERM), bounded waits on conditions. One test binary; one module per capability.
//! The binaries must be built first (`cargo build --bins`); `.ci/run` does that.

mod harness;

mod bench;
mod cli;
mod control_plane;
mod control_plane_security;
mod local;
mod log_dirs;
mod metadata_scale;
