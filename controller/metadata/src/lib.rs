//! Chronik's cluster metadata, shared by the controller (which writes it) and the brokers (which follow
//! it): the ACLs (`acl`, indexed by resource in `acl_set`), client quotas (`quotas`), the records of
//! the metadata log (`records`), the image they replay into (`image`), the config
//! definitions and their validation (`configs`), the topic-name rules (`topic_name`), the one error
//! vocabulary (`error`) and the protobuf conversions both sides decode with (`convert`). Kafka keeps the
//! same things in its `metadata` module (`MetadataImage`, `*Record`, `TopicImage`, `ConfigDef`).
//!
//! What must stay true: nothing here does IO, knows about Raft or about the Kafka listener. Replaying
//! the same records gives the same image on every node, which is what lets a broker's image equal the
//! controller's at the same offset. See `docs/architecture.md` for where each piece sits.

pub mod acl;
pub mod acl_set;
pub mod configs;
pub mod convert;
pub mod error;
pub mod features;
pub mod image;
pub mod leader_hint;
pub mod quotas;
pub mod records;
pub mod scram;
pub mod topic_name;

pub use error::{ApiError, ResponseError};
pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use records::{BrokerId, Endpoint, Record, TopicId, NO_LEADER};
