//! One consumer group's membership under the classic rebalance protocol (Kafka's `GroupMetadata` and
//! the membership half of its `GroupCoordinator`).
//!
//! States: Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead once deleted or
//! unloaded. A rebalance parks every member's JoinGroup until all known members have rejoined (or the
//! rebalance timeout passes), bumps the generation, and answers the leader with the members' metadata.
//! The leader's SyncGroup carries the assignment, which is persisted to the offsets topic before any
//! member gets it.
//!
//! What must stay true: all of this is synchronous and runs under the shard's lock — waiting happens
//! outside, on the oneshot channels a parked member holds; time comes in as `now` (tokio's clock, so
//! tests run under paused time); and the group never waits on the log itself: what must be written is
//! left in `take_persist`, and the write's outcome comes back through `complete_persist`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::records::{GroupValue, MemberValue};
use super::GroupConfig;
use crate::log::now_ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The state's name in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup, as the group sees it.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinMember>,
    /// JoinGroup v9: the leader need not assign (a static leader rejoining a stable group).
    pub skip_assignment: bool,
}

impl JoinResponse {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResponse {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> Self {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer now, or later on the channel.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A SyncGroup, as the group sees it.
#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// One member in DescribeGroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    heartbeat_deadline: Instant,
    /// Order of joining: the first joiner leads when there is no leader.
    joined_at: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn awaiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }
}

/// The join phase's timer: Kafka's DelayedJoin, or InitialDelayedJoin for a group that was empty.
struct JoinTimer {
    deadline: Instant,
    /// For a group that was empty: how far the delay may be extended while members keep arriving.
    initial_delay_until: Option<Instant>,
    initial_delay: Duration,
}

pub struct ClassicGroup {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they rejoin or their session passes.
    pending_members: HashMap<String, Instant>,
    static_members: HashMap<String, String>,
    join_timer: Option<JoinTimer>,
    new_member_added: bool,
    next_join_order: u64,
    state_timestamp_ms: i64,
    /// Group metadata to write to the offsets topic, and the generation it belongs to.
    persist: Option<(i32, GroupValue)>,
    /// Whether the pending persist completes a SyncGroup (as opposed to recording an empty group).
    persist_completes_sync: bool,
}

impl ClassicGroup {
    pub fn new(id: String) -> Self {
        ClassicGroup {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            join_timer: None,
            new_member_added: false,
            next_join_order: 0,
            state_timestamp_ms: now_ms(),
            persist: None,
            persist_completes_sync: false,
        }
    }

    /// A group as loaded from its last metadata record: Stable with its members, or Empty.
    pub fn from_record(id: String, value: GroupValue, now: Instant) -> Self {
        let mut group = ClassicGroup::new(id);
        group.generation = value.generation;
        group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        group.protocol = value.protocol;
        group.leader = value.leader;
        group.state_timestamp_ms = value.state_timestamp_ms;
        for (joined_at, m) in value.members.into_iter().enumerate() {
            let session_timeout = duration_ms(m.session_timeout_ms);
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let protocol = group.protocol.clone().unwrap_or_default();
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: duration_ms(m.rebalance_timeout_ms),
                    protocols: vec![(protocol, m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    heartbeat_deadline: now + session_timeout,
                    joined_at: joined_at as u64,
                },
            );
        }
        group.next_join_order = group.members.len() as u64;
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// When the group entered its current state (wall clock, ms).
    pub fn state_timestamp_ms(&self) -> i64 {
        self.state_timestamp_ms
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Whether the members' subscriptions (consumer protocol v0+) name `topic`. Unknown protocols
    /// count as subscribed, so offsets are never deleted from under a member we cannot read.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        if self.protocol_type.as_deref() != Some("consumer") {
            return !self.members.is_empty();
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members.values().any(|m| {
            match super::consumer_protocol::subscribed_topics(&m.metadata_for(&protocol)) {
                Some(topics) => topics.iter().any(|t| t == topic),
                None => true,
            }
        })
    }

    /// Marks the group deleted or unloaded: every parked member is told to find the coordinator again.
    pub fn transition_to_dead(&mut self) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinResponse::error(
                    ResponseError::NotCoordinator,
                    &member.member_id,
                ));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(ResponseError::NotCoordinator));
            }
        }
        self.set_state(GroupState::Dead);
    }

    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined_at);
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            members: members
                .into_iter()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
            protocol,
        }
    }

    // ---- JoinGroup ----

    pub fn join(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let fail = |error| Reply::Now(JoinResponse::error(error, &req.member_id));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            if let Some(instance) = req.group_instance_id.clone() {
                let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
                return match self.static_members.get(&instance).cloned() {
                    Some(old_id) => self.rejoin_static_member(old_id, new_id, req, config, now),
                    None => self.add_member_and_rebalance(new_id, req, config, now),
                };
            }
            let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if req.require_known_member_id {
                self.pending_members
                    .insert(new_id.clone(), now + duration_ms(req.session_timeout_ms));
                return Reply::Now(JoinResponse::error(
                    ResponseError::MemberIdRequired,
                    &new_id,
                ));
            }
            return self.add_member_and_rebalance(new_id, req, config, now);
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member_and_rebalance(id, req, config, now);
        }
        if let Some(error) = self.check_member(&req.member_id, req.group_instance_id.as_deref()) {
            return fail(error);
        }
        let member_id = req.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(&member_id, req, config, now)
            }
            GroupState::CompletingRebalance => {
                if self.protocols_unchanged(&member_id, &req.protocols) {
                    Reply::Now(self.current_join_response(&member_id))
                } else {
                    self.update_member_and_rebalance(&member_id, req, config, now)
                }
            }
            GroupState::Stable => {
                if self.leader.as_deref() == Some(member_id.as_str())
                    || !self.protocols_unchanged(&member_id, &req.protocols)
                {
                    self.update_member_and_rebalance(&member_id, req, config, now)
                } else {
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.heartbeat_deadline = now + m.session_timeout;
                    }
                    Reply::Now(self.current_join_response(&member_id))
                }
            }
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    /// The answer for a member whose rejoin changes nothing: the current generation, with the members
    /// for the leader.
    fn current_join_response(&self, member_id: &str) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if is_leader {
                self.join_members()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn join_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined_at);
        members
            .into_iter()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let session_timeout = duration_ms(req.session_timeout_ms);
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout,
                rebalance_timeout: duration_ms(req.rebalance_timeout_ms),
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                heartbeat_deadline: now + session_timeout,
                joined_at: self.next_join_order,
            },
        );
        self.next_join_order += 1;
        self.new_member_added = true;
        self.maybe_prepare_rebalance(config, now, "a new member joined");
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        member_id: &str,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            m.protocols = req.protocols;
            m.session_timeout = duration_ms(req.session_timeout_ms);
            m.rebalance_timeout = duration_ms(req.rebalance_timeout_ms);
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            if let Some(old) = m.join_waiter.replace(tx) {
                // The client gave up on its earlier JoinGroup and sent another.
                let _ = old.send(JoinResponse::error(
                    ResponseError::RebalanceInProgress,
                    member_id,
                ));
            }
        }
        self.maybe_prepare_rebalance(
            config,
            now,
            "a member rejoined with new metadata or as leader",
        );
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    /// A static member rejoining with an empty member id: it replaces its old member id (fencing
    /// whoever still uses it) without a rebalance unless the group's protocol would change.
    fn rejoin_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let Some(mut member) = self.members.remove(&old_id) else {
            self.static_members
                .remove(req.group_instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(new_id, req, config, now);
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResponse::error(
                ResponseError::FencedInstanceId,
                &old_id,
            ));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncResponse::error(ResponseError::FencedInstanceId));
        }
        let old_protocols = std::mem::replace(&mut member.protocols, req.protocols.clone());
        member.member_id = new_id.clone();
        member.session_timeout = duration_ms(req.session_timeout_ms);
        member.rebalance_timeout = duration_ms(req.rebalance_timeout_ms);
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.heartbeat_deadline = now + member.session_timeout;
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if old_protocols == req.protocols => {
                self.request_persist(false);
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let mut response = self.current_join_response(&new_id);
                // The leader already assigned this generation; nothing for it to redo.
                response.members = Vec::new();
                response.skip_assignment = is_leader;
                Reply::Now(response)
            }
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(&new_id, req, config, now)
            }
            _ => self.update_member_and_rebalance(&new_id, req, config, now),
        }
    }

    /// The member is known and, when it names a group instance id, still owns it.
    fn check_member(&self, member_id: &str, instance: Option<&str>) -> Option<ResponseError> {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                Some(owner) if owner != member_id => return Some(ResponseError::FencedInstanceId),
                None if self.members.contains_key(member_id) => {}
                None => return Some(ResponseError::UnknownMemberId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        None
    }

    fn protocols_unchanged(&self, member_id: &str, protocols: &[(String, Bytes)]) -> bool {
        self.members
            .get(member_id)
            .is_some_and(|m| m.protocols == protocols)
    }

    /// A joining member fits the group: same protocol type, and at least one protocol every current
    /// member supports (Kafka's `supportsProtocols`).
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// Protocols every member supports, in the first member's order.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// The protocol with the most first-choice votes among those every member supports.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((choice, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == choice) {
                    v.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c)
    }

    fn maybe_prepare_rebalance(&mut self, config: &GroupConfig, now: Instant, reason: &str) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(config, now, reason);
        }
    }

    fn prepare_rebalance(&mut self, config: &GroupConfig, now: Instant, reason: &str) {
        tracing::info!(group = %self.id, generation = self.generation, from = self.state.name(), reason, "preparing to rebalance");
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_fail_syncs(ResponseError::RebalanceInProgress);
        }
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay = config.initial_rebalance_delay.min(rebalance_timeout);
            JoinTimer {
                deadline: now + delay,
                initial_delay_until: Some(now + rebalance_timeout),
                initial_delay: config.initial_rebalance_delay,
            }
        } else {
            JoinTimer {
                deadline: now + rebalance_timeout,
                initial_delay_until: None,
                initial_delay: Duration::ZERO,
            }
        });
        self.new_member_added = false;
        self.set_state(GroupState::PreparingRebalance);
    }

    fn reset_and_fail_syncs(&mut self, error: ResponseError) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(error));
            }
        }
        if self.persist_completes_sync {
            // A SyncGroup's write in flight no longer completes anything.
            self.persist = None;
            self.persist_completes_sync = false;
        }
    }

    /// Completes the join phase if it is due: everyone known has rejoined (outside an initial
    /// delay), or the timer ran out.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let Some(timer) = &self.join_timer else {
            return;
        };
        let expired = now >= timer.deadline;
        if let Some(until) = timer.initial_delay_until {
            if !expired {
                return;
            }
            if self.new_member_added && now < until {
                // Members keep arriving: wait one more delay, up to the rebalance timeout.
                let step = timer.initial_delay;
                self.new_member_added = false;
                self.join_timer = Some(JoinTimer {
                    deadline: now + step.min(until - now),
                    initial_delay_until: Some(until),
                    initial_delay: step,
                });
                return;
            }
            self.complete_join(now);
            return;
        }
        let all_joined = self.pending_members.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some());
        if expired || all_joined {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        // Dynamic members that did not rejoin in time leave; static ones keep their place.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        if !gone.is_empty() {
            tracing::info!(group = %self.id, members = ?gone, "members left: they did not rejoin in time");
        }
        for id in gone {
            self.members.remove(&id);
        }
        self.join_timer = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty);
            self.request_persist(false);
            return;
        }
        self.protocol = self.select_protocol();
        let leader_present = self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.get(l).is_some_and(|m| m.join_waiter.is_some()));
        if !leader_present {
            self.leader = self
                .members
                .values()
                .filter(|m| m.join_waiter.is_some())
                .min_by_key(|m| m.joined_at)
                .map(|m| m.member_id.clone());
        }
        self.set_state(GroupState::CompletingRebalance);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(),
            protocol = ?self.protocol, leader = ?self.leader, "join phase complete");
        let members = self.join_members();
        let leader = self.leader.clone().unwrap_or_default();
        for member in self.members.values_mut() {
            member.heartbeat_deadline = now + member.session_timeout;
            let Some(waiter) = member.join_waiter.take() else {
                continue;
            };
            let is_leader = member.member_id == leader;
            let _ = waiter.send(JoinResponse {
                error: None,
                generation: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                leader: leader.clone(),
                member_id: member.member_id.clone(),
                members: if is_leader {
                    members.clone()
                } else {
                    Vec::new()
                },
                skip_assignment: false,
            });
        }
    }

    // ---- SyncGroup ----

    pub fn sync(&mut self, req: SyncRequest, now: Instant) -> Reply<SyncResponse> {
        let fail = |error| Reply::Now(SyncResponse::error(error));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(error) = self.check_member(&req.member_id, req.group_instance_id.as_deref()) {
            return fail(error);
        }
        if req.generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol.as_ref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let response = self.sync_response(&req.member_id);
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.heartbeat_deadline = now + m.session_timeout;
                }
                Reply::Now(response)
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.heartbeat_deadline = now + m.session_timeout;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResponse::error(ResponseError::RebalanceInProgress));
                    }
                }
                if is_leader && !self.persist_completes_sync {
                    let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    self.request_persist(true);
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    // ---- Persistence ----

    fn request_persist(&mut self, completes_sync: bool) {
        let value = self.to_record();
        self.persist = Some((self.generation, value));
        self.persist_completes_sync = completes_sync;
    }

    /// The group metadata the coordinator must write now, if any.
    pub fn take_persist(&mut self) -> Option<(i32, GroupValue, bool)> {
        let (generation, value) = self.persist.take()?;
        Some((generation, value, self.persist_completes_sync))
    }

    /// The outcome of writing the group metadata of `generation` for a SyncGroup: on success every
    /// parked member gets its assignment and the group is Stable; on failure they get `error` and the
    /// group rebalances.
    pub fn complete_sync_persist(
        &mut self,
        generation: i32,
        result: Result<(), ResponseError>,
        config: &GroupConfig,
        now: Instant,
    ) {
        if !self.persist_completes_sync
            || self.state != GroupState::CompletingRebalance
            || self.generation != generation
        {
            return;
        }
        self.persist_completes_sync = false;
        match result {
            Ok(()) => {
                self.set_state(GroupState::Stable);
                tracing::info!(group = %self.id, generation, "group is stable");
                let protocol_type = self.protocol_type.clone();
                let protocol = self.protocol.clone();
                for m in self.members.values_mut() {
                    if let Some(waiter) = m.sync_waiter.take() {
                        let _ = waiter.send(SyncResponse {
                            error: None,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
            }
            Err(error) => {
                self.reset_and_fail_syncs(error);
                self.prepare_rebalance(config, now, "the group metadata could not be written");
            }
        }
    }

    pub fn to_record(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined_at);
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: members
                .into_iter()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    session_timeout_ms: millis(m.session_timeout),
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    // ---- Heartbeat, LeaveGroup, expiry ----

    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Option<ResponseError> {
        match self.state {
            GroupState::Dead => return Some(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Some(ResponseError::UnknownMemberId),
            _ => {}
        }
        if let Some(error) = self.check_member(member_id, group_instance_id) {
            return Some(error);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout;
        }
        (self.state == GroupState::PreparingRebalance).then_some(ResponseError::RebalanceInProgress)
    }

    /// Removes one member (LeaveGroup): by member id, or by group instance id (then a member id
    /// other than the current owner's is fenced). Returns the error for this member, if any.
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        config: &GroupConfig,
        now: Instant,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        let target = match group_instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => return Some(ResponseError::UnknownMemberId),
                Some(owner) if !member_id.is_empty() && owner != member_id => {
                    return Some(ResponseError::FencedInstanceId)
                }
                Some(owner) => owner.clone(),
            },
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    self.try_complete_join(now);
                    return None;
                }
                member_id.to_owned()
            }
        };
        if !self.members.contains_key(&target) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.remove_member(&target, ResponseError::UnknownMemberId, config, now);
        None
    }

    fn remove_member(
        &mut self,
        member_id: &str,
        error: ResponseError,
        config: &GroupConfig,
        now: Instant,
    ) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResponse::error(error, member_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncResponse::error(error));
        }
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now, "a member left");
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Time passes: members whose session ran out leave, pending member ids lapse, and a due join
    /// phase completes.
    pub fn tick(&mut self, config: &GroupConfig, now: Instant) {
        let before = self.pending_members.len();
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting() && m.heartbeat_deadline <= now)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, ResponseError::UnknownMemberId, config, now);
        }
        if before != self.pending_members.len() || self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now);
        }
    }

    /// Validates an OffsetCommit against the membership (Kafka's `validateOffsetCommit`); a commit
    /// counts as a heartbeat.
    pub fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return None;
        }
        if let Some(error) = self.check_member(member_id, group_instance_id) {
            return Some(error);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout;
        }
        None
    }

    /// TxnOffsetCommit's check (Kafka's `GroupCoordinator.doTxnCommitOffsets`, KIP-447): looser than
    /// OffsetCommit's, since a producer without the consumer's metadata (v0–2, or a client that does
    /// not pass it) sends no member id and generation -1, which pass whatever the group's state. A
    /// member id given must be a member (and own its instance id), and a generation given must be
    /// the group's.
    pub fn validate_txn_commit(
        &self,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if !member_id.is_empty() {
            if let Some(error) = self.check_member(member_id, group_instance_id) {
                return Some(error);
            }
        }
        if generation >= 0 && generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    fn set_state(&mut self, state: GroupState) {
        self.state = state;
        self.state_timestamp_ms = now_ms();
    }
}

fn duration_ms(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer_protocol::subscription;

    fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3_000),
            ..GroupConfig::default()
        }
    }

    fn join_req(member_id: &str, v4: bool) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(&["t"]))],
            require_known_member_id: v4,
        }
    }

    fn static_req(instance: &str) -> JoinRequest {
        JoinRequest {
            group_instance_id: Some(instance.into()),
            ..join_req("", true)
        }
    }

    fn now_reply<T: std::fmt::Debug>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(r) => r,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
        match reply {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected a parked request"),
        }
    }

    fn sync_req(
        generation: i32,
        member_id: &str,
        assignments: &[(&str, &'static [u8])],
    ) -> SyncRequest {
        SyncRequest {
            generation,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from_static(a)))
                .collect(),
        }
    }

    /// A group with members `a` and `b` (a leads) in generation 1, Stable, with assignments.
    fn stable_pair(t0: Instant) -> (ClassicGroup, String, String) {
        let config = config();
        let mut g = ClassicGroup::new("g".into());
        let mut a = later(g.join(join_req("", false), &config, t0));
        let mut b = later(g.join(join_req("", false), &config, t0 + Duration::from_millis(10)));
        g.tick(&config, t0 + Duration::from_secs(4));
        g.tick(&config, t0 + Duration::from_secs(8));
        let (a, b) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert_eq!(a.leader, a.member_id);
        let (ida, idb) = (a.member_id.clone(), b.member_id.clone());
        let mut sb = later(g.sync(sync_req(1, &idb, &[]), t0));
        let mut sa = later(g.sync(sync_req(1, &ida, &[(&ida, b"A"), (&idb, b"B")]), t0));
        let (generation, value, completes_sync) = g.take_persist().unwrap();
        assert!(completes_sync);
        assert_eq!((generation, value.members.len()), (1, 2));
        g.complete_sync_persist(1, Ok(()), &config, t0);
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from_static(b"A"));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        assert_eq!(g.state(), GroupState::Stable);
        (g, ida, idb)
    }

    #[test]
    fn a_new_group_waits_the_initial_delay_and_extends_it_while_members_arrive() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let mut a = later(g.join(join_req("", false), &config, t0));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let mut b = later(g.join(join_req("", false), &config, t0 + Duration::from_secs(2)));
        // Everyone has joined, but the initial delay holds the phase open for late joiners.
        g.tick(&config, t0 + Duration::from_millis(2_900));
        assert!(a.try_recv().is_err());
        // At 3 s a member had arrived during the delay: one more delay.
        g.tick(&config, t0 + Duration::from_secs(3));
        assert!(a.try_recv().is_err());
        g.tick(&config, t0 + Duration::from_secs(6));
        let (a, b) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert_eq!((a.generation, b.generation), (1, 1));
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        assert_eq!(a.members.len(), 2, "the leader gets every member");
        assert!(b.members.is_empty(), "followers get no members");
        assert_eq!(a.leader, b.leader);
        assert_eq!(g.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn v4_joins_get_a_member_id_first_and_unknown_ids_are_refused() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let first = now_reply(g.join(join_req("", true), &config, t0));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        assert!(first.member_id.starts_with("client-"));
        assert_eq!(
            g.state(),
            GroupState::Empty,
            "a pending member does not start a rebalance"
        );
        let _parked = later(g.join(join_req(&first.member_id, true), &config, t0));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let unknown = now_reply(g.join(join_req("someone-else", true), &config, t0));
        assert_eq!(unknown.error, Some(ResponseError::UnknownMemberId));
        // A pending id that never comes back lapses with its session.
        let pending = now_reply(g.join(join_req("", true), &config, t0)).member_id;
        g.tick(&config, t0 + Duration::from_secs(11));
        let late = now_reply(g.join(
            join_req(&pending, true),
            &config,
            t0 + Duration::from_secs(11),
        ));
        assert_eq!(late.error, Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn a_member_joining_a_stable_group_rebalances_it_and_everyone_rejoins() {
        let config = config();
        let t0 = Instant::now();
        let (mut g, a, b) = stable_pair(t0);
        let t1 = t0 + Duration::from_secs(1);
        let mut c = later(g.join(join_req("", false), &config, t1));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(1, &a, None, t1),
            Some(ResponseError::RebalanceInProgress)
        );
        // A commit of the current generation is still allowed while preparing.
        assert_eq!(g.validate_commit(1, &a, None, t1), None);
        let mut ra = later(g.join(join_req(&a, false), &config, t1));
        assert!(c.try_recv().is_err(), "b has not rejoined yet");
        let mut rb = later(g.join(join_req(&b, false), &config, t1));
        let (ra, rb, rc) = (
            ra.try_recv().unwrap(),
            rb.try_recv().unwrap(),
            c.try_recv().unwrap(),
        );
        assert_eq!((ra.generation, rb.generation, rc.generation), (2, 2, 2));
        assert_eq!(ra.leader, a, "the leader stays the leader");
        assert_eq!(ra.members.len(), 3);
        // The old generation is gone.
        assert_eq!(
            g.heartbeat(1, &a, None, t1),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            now_reply(g.sync(sync_req(1, &b, &[]), t1)).error,
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_commit(2, &a, None, t1),
            Some(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            g.heartbeat(2, "nobody", None, t1),
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn members_that_miss_the_rebalance_timeout_are_dropped() {
        let config = config();
        let t0 = Instant::now();
        let (mut g, a, b) = stable_pair(t0);
        let t1 = t0 + Duration::from_secs(1);
        let mut ra = later(g.join(join_req(&a, false), &config, t1));
        // b keeps heartbeating but never rejoins; the rebalance timeout (60 s) ends the phase.
        for s in (2..60).step_by(2) {
            let t = t0 + Duration::from_secs(s);
            assert_eq!(
                g.heartbeat(1, &b, None, t),
                Some(ResponseError::RebalanceInProgress)
            );
            g.tick(&config, t);
        }
        assert!(ra.try_recv().is_err());
        g.tick(&config, t1 + Duration::from_secs(60));
        let ra = ra.try_recv().unwrap();
        assert_eq!((ra.generation, ra.members.len()), (2, 1));
        assert_eq!(
            g.heartbeat(2, &b, None, t1),
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn an_expired_session_removes_the_member_and_rebalances() {
        let config = config();
        let t0 = Instant::now();
        let (mut g, a, _b) = stable_pair(t0);
        // Only a heartbeats.
        for s in 1..=11 {
            let t = t0 + Duration::from_secs(s);
            g.heartbeat(1, &a, None, t);
            g.tick(&config, t);
        }
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let t = t0 + Duration::from_secs(12);
        let mut ra = later(g.join(join_req(&a, false), &config, t));
        let ra = ra
            .try_recv()
            .expect("the only member rejoined: the phase completes at once");
        assert_eq!((ra.generation, ra.members.len()), (2, 1));
    }

    #[test]
    fn the_last_member_leaving_empties_the_group_and_records_it() {
        let config = config();
        let t0 = Instant::now();
        let (mut g, a, b) = stable_pair(t0);
        assert_eq!(g.leave(&a, None, &config, t0), None);
        assert_eq!(
            g.leave(&a, None, &config, t0),
            Some(ResponseError::UnknownMemberId)
        );
        let mut rb = later(g.join(join_req(&b, false), &config, t0));
        assert_eq!(rb.try_recv().unwrap().generation, 2);
        assert_eq!(g.leave(&b, None, &config, t0), None);
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(g.generation(), 3);
        let (generation, value, completes_sync) =
            g.take_persist().expect("the empty group is written");
        assert_eq!(
            (generation, value.members.len(), completes_sync),
            (3, 0, false)
        );
        // Simple commits (generation -1) are for empty groups only.
        assert_eq!(g.validate_commit(-1, "", None, t0), None);
    }

    #[test]
    fn a_failed_write_fails_the_sync_and_rebalances() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let mut a = later(g.join(join_req("", false), &config, t0));
        g.tick(&config, t0 + Duration::from_secs(3));
        let a = a.try_recv().unwrap().member_id;
        let mut sa = later(g.sync(sync_req(1, &a, &[(&a, b"A")]), t0));
        let (generation, _, _) = g.take_persist().unwrap();
        g.complete_sync_persist(generation, Err(ResponseError::NotCoordinator), &config, t0);
        assert_eq!(
            sa.try_recv().unwrap().error,
            Some(ResponseError::NotCoordinator)
        );
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn a_static_member_rejoining_takes_its_place_without_a_rebalance_and_fences_its_old_id() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let mut a = later(g.join(static_req("i-1"), &config, t0));
        g.tick(&config, t0 + Duration::from_secs(3));
        let old = a.try_recv().unwrap().member_id;
        assert!(old.starts_with("i-1-"));
        let mut s = later(g.sync(
            SyncRequest {
                group_instance_id: Some("i-1".into()),
                ..sync_req(1, &old, &[(&old, b"A")])
            },
            t0,
        ));
        g.take_persist().unwrap();
        g.complete_sync_persist(1, Ok(()), &config, t0);
        assert_eq!(s.try_recv().unwrap().assignment, Bytes::from_static(b"A"));

        // The process restarts: same instance id, no member id.
        let rejoined = now_reply(g.join(static_req("i-1"), &config, t0 + Duration::from_secs(5)));
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation, 1, "no rebalance");
        assert_ne!(rejoined.member_id, old);
        assert_eq!(g.state(), GroupState::Stable);
        assert!(g.take_persist().is_some(), "the new member id is recorded");
        let new = rejoined.member_id;
        let sync = now_reply(g.sync(
            SyncRequest {
                group_instance_id: Some("i-1".into()),
                ..sync_req(1, &new, &[])
            },
            t0,
        ));
        assert_eq!(
            sync.assignment,
            Bytes::from_static(b"A"),
            "it keeps its assignment"
        );
        assert_eq!(
            g.heartbeat(1, &old, Some("i-1"), t0),
            Some(ResponseError::FencedInstanceId)
        );
        assert_eq!(
            g.leave(&old, Some("i-1"), &config, t0),
            Some(ResponseError::FencedInstanceId)
        );
        assert_eq!(g.leave("", Some("i-1"), &config, t0), None);
        assert_eq!((g.state(), g.generation()), (GroupState::Empty, 2));
    }

    #[test]
    fn members_must_share_the_protocol_type_and_a_protocol() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let _a = later(g.join(join_req("", false), &config, t0));
        let other_type = JoinRequest {
            protocol_type: "connect".into(),
            ..join_req("", false)
        };
        assert_eq!(
            now_reply(g.join(other_type, &config, t0)).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        let no_common = JoinRequest {
            protocols: vec![("roundrobin".into(), Bytes::new())],
            ..join_req("", false)
        };
        assert_eq!(
            now_reply(g.join(no_common, &config, t0)).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        let empty = JoinRequest {
            protocols: vec![],
            ..join_req("", false)
        };
        assert_eq!(
            now_reply(g.join(empty, &config, t0)).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
    }

    #[test]
    fn the_protocol_with_most_first_choices_wins() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let both = |first: &str, second: &str| JoinRequest {
            protocols: vec![(first.into(), Bytes::new()), (second.into(), Bytes::new())],
            ..join_req("", false)
        };
        let mut a = later(g.join(both("range", "roundrobin"), &config, t0));
        let _b = later(g.join(both("roundrobin", "range"), &config, t0));
        let _c = later(g.join(both("roundrobin", "range"), &config, t0));
        g.tick(&config, t0 + Duration::from_secs(3));
        g.tick(&config, t0 + Duration::from_secs(6));
        assert_eq!(
            a.try_recv().unwrap().protocol_name.as_deref(),
            Some("roundrobin")
        );
    }

    #[test]
    fn a_loaded_group_is_stable_with_its_members_and_their_sessions() {
        let config = config();
        let t0 = Instant::now();
        let (g, a, _) = stable_pair(t0);
        let record = g.to_record();
        let mut loaded = ClassicGroup::from_record("g".into(), record, t0);
        assert_eq!(loaded.state(), GroupState::Stable);
        assert_eq!(loaded.generation(), 1);
        assert_eq!(loaded.heartbeat(1, &a, None, t0), None);
        let summary = loaded.summary();
        assert_eq!(summary.members.len(), 2);
        assert_eq!(summary.members[0].assignment, Bytes::from_static(b"A"));
        assert!(loaded.is_subscribed_to("t"));
        assert!(!loaded.is_subscribed_to("other"));
        // Whoever does not heartbeat after the load leaves when its session passes.
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(loaded.heartbeat(1, &a, None, t5), None);
        loaded.tick(&config, t0 + Duration::from_secs(11));
        assert_eq!(loaded.state(), GroupState::PreparingRebalance);
        assert_eq!(
            loaded.heartbeat(1, &a, None, t0 + Duration::from_secs(11)),
            Some(ResponseError::RebalanceInProgress)
        );
    }

    #[test]
    fn dead_groups_turn_everyone_away() {
        let config = config();
        let t0 = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let mut a = later(g.join(join_req("", false), &config, t0));
        g.transition_to_dead();
        assert_eq!(
            a.try_recv().unwrap().error,
            Some(ResponseError::NotCoordinator)
        );
        assert_eq!(
            now_reply(g.join(join_req("", false), &config, t0)).error,
            Some(ResponseError::CoordinatorNotAvailable)
        );
        assert_eq!(
            g.heartbeat(0, "x", None, t0),
            Some(ResponseError::CoordinatorNotAvailable)
        );
    }

    #[test]
    fn transactional_commits_need_only_what_they_name_to_match() {
        let t0 = Instant::now();
        let config = GroupConfig::default();
        let mut group = ClassicGroup::new("g".into());
        // Anyone may commit into an empty group; a dead one is gone.
        assert_eq!(group.validate_txn_commit(-1, "", None), None);
        let _ = group.join(
            JoinRequest {
                member_id: String::new(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: String::new(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::new())],
                require_known_member_id: false,
            },
            &config,
            t0,
        );
        // With members: a producer that names nobody still commits (KIP-447's older clients)...
        assert_eq!(group.validate_txn_commit(-1, "", None), None);
        // ...but one naming an unknown member or another generation does not.
        assert_eq!(
            group.validate_txn_commit(-1, "nobody", None),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            group.validate_txn_commit(group.generation() + 5, "", None),
            Some(ResponseError::IllegalGeneration)
        );
        group.transition_to_dead();
        assert_eq!(
            group.validate_txn_commit(-1, "", None),
            Some(ResponseError::CoordinatorNotAvailable)
        );
    }
}
