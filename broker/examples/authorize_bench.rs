//! What an authorization and a metadata update cost with many ACLs: the broker authorizes every
//! Produce, Fetch and Metadata request, and every metadata update clones the image the ACLs are in.
//!
//!     cargo run --release -p chronik-broker --example authorize_bench [ACLS...]
//!
//! For each ACL count (default 0, 1,000, 10,000 and 100,000) the image holds that many ACLs: a
//! LITERAL READ or WRITE ALLOW on `topic-<i>` for `User:user-<i % 100>`, and every tenth a PREFIXED
//! one on `tenant-<i>-`. It prints the mean time of one `authorize` (WRITE on a topic the principal
//! has an ACL for, as a Produce asks), of one topic's DESCRIBE as Metadata asks, of one metadata
//! update that changes no ACL (the image cloned, one config record replayed: most updates) and of
//! one that adds an ACL.

use std::hint::black_box;
use std::time::Instant;

use chronik_broker::authorizer::{Authorizer, KafkaPrincipal, Session};
use chronik_metadata::acl::{
    AclBinding, AclOperation, AclPermissionType, PatternType, ResourceType,
};
use chronik_metadata::records::ConfigResource;
use chronik_metadata::{MetadataImage, Record};
use uuid::Uuid;

fn acl(i: usize) -> AclBinding {
    let prefixed = i % 10 == 9;
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: if prefixed {
            format!("tenant-{i}-")
        } else {
            format!("topic-{i}")
        },
        pattern_type: if prefixed {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        },
        principal: format!("User:user-{}", i % 100),
        host: "*".into(),
        operation: if i.is_multiple_of(2) {
            AclOperation::Write
        } else {
            AclOperation::Read
        },
        permission: AclPermissionType::Allow,
    }
}

/// Mean nanoseconds of `f` over `rounds` calls.
fn mean_ns(rounds: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for round in 0..rounds {
        f(round);
    }
    start.elapsed().as_nanos() as f64 / f64::from(rounds)
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.replace('_', "").parse().expect("an ACL count"))
        .collect();
    let counts = if counts.is_empty() {
        vec![0, 1_000, 10_000, 100_000]
    } else {
        counts
    };
    let authorizer = Authorizer {
        allow_everyone_if_no_acl_found: false,
        ..Authorizer::default()
    };
    println!(
        "{:>8}  {:>14}  {:>16}  {:>16}  {:>13}",
        "ACLs", "authorize ns", "describe ns", "other update us", "ACL update us"
    );
    for count in counts {
        let mut image = MetadataImage::default();
        let records: Vec<Record> = (0..count)
            .map(|i| Record::AccessControlEntry {
                id: Uuid::from_u128(i as u128 + 1),
                acl: acl(i),
            })
            .collect();
        image.replay_all(1, &records);
        // user-42 writes topic-42 (its own LITERAL WRITE, when there are that many ACLs).
        let session = Session {
            principal: KafkaPrincipal {
                principal_type: "User".into(),
                name: "user-42".into(),
            },
            client_address: Some("10.0.0.7".parse().unwrap()),
        };
        let topics: Vec<String> = (0..1000)
            .map(|i| format!("topic-{}", 42 + 100 * i))
            .collect();
        let rounds = 20_000;
        let authorize = mean_ns(rounds, |round| {
            let topic = &topics[round as usize % topics.len()];
            black_box(authorizer.authorize(
                &image,
                &session,
                AclOperation::Write,
                ResourceType::Topic,
                topic,
            ));
        });
        let describe = mean_ns(rounds, |round| {
            let topic = &topics[round as usize % topics.len()];
            black_box(authorizer.authorize(
                &image,
                &session,
                AclOperation::Describe,
                ResourceType::Topic,
                topic,
            ));
        });
        let update_rounds = 200;
        let update = |record: &dyn Fn(u32) -> Record| {
            mean_ns(update_rounds, |round| {
                let mut next = image.clone();
                next.replay(2 + u64::from(round), &record(round));
                black_box(next);
            }) / 1000.0
        };
        let config = update(&|round| Record::Config {
            resource: ConfigResource::Cluster,
            key: "log.retention.ms".into(),
            value: Some(round.to_string()),
        });
        let acl_added = update(&|round| Record::AccessControlEntry {
            id: Uuid::from_u128(u128::MAX - u128::from(round)),
            acl: acl(round as usize),
        });
        println!(
            "{count:>8}  {authorize:>14.0}  {describe:>16.0}  {config:>16.1}  {acl_added:>13.1}"
        );
    }
}
