//! One member of a consumer group reading one topic, for `topic consume --group`: it joins with the
//! `consumer` protocol and the `range` assignor (JoinGroup, then SyncGroup; as the leader it assigns
//! with [`range_assignment`]), heartbeats while it reads, commits offsets as a member of its
//! generation, and leaves the group at the end, as Kafka's consumer does (the classic protocol).
//!
//! What must stay true: offsets are committed only with the generation and member id the coordinator
//! gave, so a commit from a member that was rebalanced out is refused, never applied; a heartbeat
//! answered REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID means "join again" and is
//! reported to the caller, which commits what it printed first.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::admin::codes;
use super::consumer_protocol::{
    decode_assignment, encode_assignment, encode_subscription, range_assignment, subscribed_topics,
};
use super::{error_name, KafkaAdmin, KafkaError};

/// The assignor this member offers (Kafka's `RangeAssignor`).
const ASSIGNOR: &str = "range";
/// How long the coordinator waits for a heartbeat before it drops the member.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How often a member heartbeats (a third of the session, as Kafka's consumer does).
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(3_000);

/// This member's place in the group.
#[derive(Debug)]
pub struct GroupMember {
    group: String,
    topic: String,
    member_id: String,
    generation: i32,
    last_heartbeat: Instant,
}

impl GroupMember {
    /// Joins `group` as a consumer of `topic` (which has `partitions` partitions); returns the member
    /// and the partitions assigned to it. The coordinator holds JoinGroup until every member has
    /// joined, for at most `rebalance_timeout`, which must fit in one request timeout.
    pub async fn join(
        admin: &mut KafkaAdmin,
        group: &str,
        topic: &str,
        partitions: i32,
        rebalance_timeout: Duration,
    ) -> Result<(Self, Vec<i32>), KafkaError> {
        let mut member = GroupMember {
            group: group.to_owned(),
            topic: topic.to_owned(),
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
        };
        let assigned = member.rejoin(admin, partitions, rebalance_timeout).await?;
        Ok((member, assigned))
    }

    /// Joins again (after a rebalance was announced); returns the new assignment.
    pub async fn rejoin(
        &mut self,
        admin: &mut KafkaAdmin,
        partitions: i32,
        rebalance_timeout: Duration,
    ) -> Result<Vec<i32>, KafkaError> {
        let subscription =
            encode_subscription(&self.topic).map_err(KafkaError::UnexpectedAnswer)?;
        let rebalance_timeout_ms = i32::try_from(rebalance_timeout.as_millis()).unwrap_or(i32::MAX);
        let deadline = admin.deadline();
        loop {
            let joined = admin
                .join_group(
                    &self.group,
                    &self.member_id,
                    SESSION_TIMEOUT_MS,
                    rebalance_timeout_ms,
                    (ASSIGNOR, subscription.clone()),
                )
                .await?;
            match joined.error_code {
                0 => {}
                // KIP-394: a new member is given its id and joins again with it.
                codes::MEMBER_ID_REQUIRED => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                codes::UNKNOWN_MEMBER_ID | codes::REBALANCE_IN_PROGRESS
                    if Instant::now() < deadline =>
                {
                    if joined.error_code == codes::UNKNOWN_MEMBER_ID {
                        self.member_id.clear();
                    }
                    continue;
                }
                code => return Err(self.refused("JoinGroup", code)),
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                let subscribed: Vec<String> = joined
                    .members
                    .iter()
                    .filter(|m| {
                        subscribed_topics(&m.metadata)
                            .is_ok_and(|topics| topics.contains(&self.topic))
                    })
                    .map(|m| m.member_id.to_string())
                    .collect();
                let mut assignments = Vec::new();
                for (member, assigned) in range_assignment(&subscribed, partitions) {
                    let bytes = encode_assignment(&self.topic, &assigned)
                        .map_err(KafkaError::UnexpectedAnswer)?;
                    assignments.push((member, bytes));
                }
                assignments
            } else {
                Vec::new()
            };
            let protocol = joined
                .protocol_name
                .map_or_else(|| ASSIGNOR.to_owned(), |name| name.to_string());
            let (code, bytes) = admin
                .sync_group(
                    &self.group,
                    self.generation,
                    &self.member_id,
                    &protocol,
                    &assignments,
                )
                .await?;
            match code {
                0 => {}
                codes::REBALANCE_IN_PROGRESS if Instant::now() < deadline => continue,
                code => return Err(self.refused("SyncGroup", code)),
            }
            self.last_heartbeat = Instant::now();
            let assignment = decode_assignment(&bytes).map_err(KafkaError::UnexpectedAnswer)?;
            return Ok(assignment
                .topics
                .into_iter()
                .filter(|t| t.topic == self.topic)
                .flat_map(|t| t.partitions)
                .collect());
        }
    }

    /// Heartbeats when one is due; `true` when the group is rebalancing and the member must join
    /// again.
    pub async fn heartbeat_if_due(&mut self, admin: &mut KafkaAdmin) -> Result<bool, KafkaError> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(false);
        }
        let code = admin
            .heartbeat(&self.group, self.generation, &self.member_id)
            .await?;
        self.last_heartbeat = Instant::now();
        match code {
            0 => Ok(false),
            codes::REBALANCE_IN_PROGRESS => Ok(true),
            codes::ILLEGAL_GENERATION | codes::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                Ok(true)
            }
            code => Err(self.refused("Heartbeat", code)),
        }
    }

    /// Commits `offsets` (partition → next offset to read) as this member of its generation.
    pub async fn commit(
        &self,
        admin: &mut KafkaAdmin,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<(), KafkaError> {
        if offsets.is_empty() || self.member_id.is_empty() {
            return Ok(());
        }
        let answers = admin
            .commit_member_offsets(
                &self.group,
                self.generation,
                &self.member_id,
                &self.topic,
                offsets,
            )
            .await?;
        match answers.values().find(|code| **code != 0) {
            None => Ok(()),
            Some(&code) => Err(self.refused("OffsetCommit", code)),
        }
    }

    /// Leaves the group, so the others take its partitions at once.
    pub async fn leave(&self, admin: &mut KafkaAdmin) -> Result<(), KafkaError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        match admin.leave_group(&self.group, &self.member_id).await? {
            0 | codes::UNKNOWN_MEMBER_ID => Ok(()),
            code => Err(self.refused("LeaveGroup", code)),
        }
    }

    fn refused(&self, api: &str, code: i16) -> KafkaError {
        KafkaError::Broker {
            what: format!(
                "{api} of group '{}' (member '{}')",
                self.group, self.member_id
            ),
            code,
            name: error_name(code),
        }
    }
}
