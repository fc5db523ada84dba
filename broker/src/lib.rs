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
//! - `fetch_session` (KIP-227 fetch sessions: the cache of sessions and their partitions, which
//!   `handlers::fetch` reads through);
//! - `group` (the group coordinator over `__consumer_offsets`), `txn` (the transaction coordinator
//!   over `__transaction_state`), `producer_ids` (id blocks for InitProducerId), `txn_verifier`
//!   (KIP-890: asking a transaction coordinator whether a partition is in a producer's transaction);
//! - `coordinator_runtime` (what both coordinators share: finding a key's coordinator, creating the
//!   internal topic, loading and unloading its partitions as leadership moves, replaying them);
//! - `replica` (partition roles, high watermark and ISR, acks=all waits, follower fetchers);
//! - `lifecycle` (registration, heartbeats, controlled shutdown), `metadata` (the image and the watch
//!   that feeds it), `controller_client` (the quorum connection);
//! - `log` (segmented partition logs, indexes, producer state, cleaner), `status` (this broker's
//!   standing with the controller), `config` (flags), `error` (process errors and the controller-call
//!   error), `alloc` (the allocator that survives hostile array counts), `authorizer` (Kafka's
//!   StandardAuthorizer over the image's ACLs, and a connection's principal).

pub mod alloc;
pub mod authorizer;
pub mod config;
pub mod connection;
pub mod controller_client;
pub mod coordinator_runtime;
pub mod error;
pub mod error_counts;
pub mod fds;
pub mod fetch_session;
pub mod group;
pub mod handlers;
pub mod http;
pub mod lifecycle;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod producer_ids;
pub mod protocol;
pub mod quota;
pub mod replica;
pub mod security;
pub mod server;
pub mod status;
pub mod txn;
pub mod txn_verifier;

/// The unit tests decode hostile frames too, so they run on the broker's allocator.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::LazyLargeAllocator = alloc::LazyLargeAllocator;

pub use config::BrokerConfig;
pub use error::{BrokerError, ControllerCallError};
pub use metadata::MetadataCache;
pub use server::{run, Broker};
pub use status::{BrokerState, BrokerStatus};

/// The layering the crate docs promise, checked: no two top-level modules import each other, directly
/// or through others (test code and comments aside).
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `crate::<module>` references in a source file, outside comments and its test module.
    fn references(source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let mut found = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) {
                    found.insert(name);
                }
            }
        }
        found
    }

    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("readable source dir")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }

    #[test]
    fn top_level_modules_have_no_import_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let top = |path: &Path| -> String {
            let relative = path.strip_prefix(&src).expect("under src");
            let first = relative.components().next().expect("a component");
            let name = first.as_os_str().to_string_lossy();
            name.trim_end_matches(".rs").to_owned()
        };
        let modules: BTreeSet<String> = files
            .iter()
            .map(|f| top(f))
            .filter(|m| m != "lib" && m != "main")
            .collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let from = top(file);
            let source = std::fs::read_to_string(file).expect("readable source");
            let to = references(&source, &modules);
            edges
                .entry(from.clone())
                .or_default()
                .extend(to.into_iter().filter(|m| *m != from));
        }
        // A module is on a cycle if it can reach itself.
        for start in &modules {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> = edges.get(start).into_iter().flatten().collect();
            while let Some(next) = stack.pop() {
                assert_ne!(
                    next, start,
                    "module `{start}` imports itself through others: {edges:#?}"
                );
                if seen.insert(next) {
                    stack.extend(edges.get(next).into_iter().flatten());
                }
            }
        }
        assert!(edges.len() > 10, "the walk found the modules: {edges:?}");
    }
}
