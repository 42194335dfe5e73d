//! One consumer group's state machine: Kafka's classic group protocol, as the Kafka broker's
//! GroupCoordinator runs it (join, sync, heartbeat, leave, session and rebalance timeouts, the
//! initial rebalance delay, static membership), without any I/O. Time is passed in.
//!
//! Where Kafka completes a delayed operation by calling back a waiting request, this machine
//! records the outcome on the member (an undelivered join result, or the assignment once the
//! group is Stable) and the caller re-runs the request: every operation is idempotent for such a
//! re-run. A join or sync that has to wait answers `Pending`; the coordinator then notifies the
//! group's watchers whenever [`Group::take_changed`] says the group changed.

use super::consumer;
use super::value::{GroupValue, MemberValue};
use crate::error::*;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long a new member may wait in its first join before it is dropped (Kafka's
/// GroupCoordinator.NewMemberJoinTimeoutMs).
pub const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The group settings the state machine needs.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay: Duration,
    /// group.min.session.timeout.ms / group.max.session.timeout.ms
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
        }
    }
}

/// Kafka's group states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub require_known_member: bool,
    pub reason: Option<String>,
    /// The connection the request came on: a re-run of a parked join by a new member (which
    /// still carries an empty member id) is recognized by it.
    pub conn_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The leader's only.
    pub members: Vec<JoinedMember>,
    /// A static leader rejoining a Stable group whose protocol does not change: it is told it is
    /// the leader (with the members) but must not assign again (JoinGroup v9). Before v9 Kafka
    /// answers such a leader with the previous leader id and no members instead, so that it acts
    /// as a follower: a translator answering JoinGroup v0–v8 should do that (any leader id other
    /// than the member's own, no members).
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(member_id: &str, error: i16) -> JoinResult {
        JoinResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinStep {
    Done(JoinResult),
    /// The rebalance is not complete: call again when the group changes.
    Pending,
}

#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: (member id, assignment).
    pub assignments: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

impl SyncResult {
    pub fn error(error: i16) -> SyncResult {
        SyncResult { error, protocol_type: None, protocol_name: None, assignment: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    Done(SyncResult),
    Pending,
    /// The leader's sync: persist the group with these assignments (one per member, in member
    /// order), then call [`Group::finish_leader_sync`].
    Store(Vec<(String, Vec<u8>)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub error: i16,
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

impl GroupDescription {
    /// Kafka's answer for a group it does not know: no error, state Dead.
    pub fn dead(group_id: &str, error: i16) -> GroupDescription {
        GroupDescription {
            error,
            group_id: group_id.to_string(),
            state: GroupState::Dead.as_str().into(),
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Supported protocols in preference order.
    pub protocols: Vec<Protocol>,
    pub assignment: Vec<u8>,
    /// Removed by `tick` when this passes without a heartbeat (see `has_satisfied_heartbeat`).
    session_deadline: Instant,
    /// Joined in the current rebalance and waiting for it to complete.
    awaiting_join: bool,
    /// Synced in CompletingRebalance and waiting for the leader's assignment.
    awaiting_sync: bool,
    /// Has not completed a join yet.
    is_new: bool,
    /// The result of the completed join, until the member's (re-run) join picks it up.
    join_result: Option<JoinResult>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols.iter().find(|p| p.name == protocol).map(|p| p.metadata.clone()).unwrap_or_default()
    }

    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    fn vote(&self, candidates: &BTreeSet<&str>) -> Option<&str> {
        self.protocols.iter().map(|p| p.name.as_str()).find(|p| candidates.contains(p))
    }

    fn has_satisfied_heartbeat(&self, now: Instant) -> bool {
        if self.is_new {
            now < self.session_deadline
        } else if self.awaiting_join || self.awaiting_sync {
            true
        } else {
            now < self.session_deadline
        }
    }

    fn refresh(&mut self, now: Instant) {
        self.session_deadline = now + millis(self.session_timeout_ms);
    }
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A rebalance in progress (PreparingRebalance).
#[derive(Clone, Debug)]
struct Rebalance {
    /// When the join phase completes regardless (or, with an initial delay, is reconsidered).
    deadline: Instant,
    initial: Option<InitialDelay>,
}

/// Kafka's InitialDelayedJoin: a group that was Empty waits `configured` for more members,
/// again each time a new member joined meanwhile, up to the rebalance timeout.
#[derive(Clone, Debug)]
struct InitialDelay {
    configured: Duration,
    remaining: Duration,
    new_member_added: bool,
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    state: GroupState,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation: i32,
    leader: Option<String>,
    /// In join order.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet, with their expiry.
    pending_members: HashMap<String, Instant>,
    /// Members that have not synced since the last join phase completed.
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<Instant>,
    rebalance: Option<Rebalance>,
    /// Connection → member id of a join by a new member that is still waiting (see
    /// [`JoinRequest::conn_id`]).
    conn_joins: HashMap<u64, String>,
    /// The topics the members subscribe to (consumer groups with readable subscriptions).
    subscribed_topics: Option<BTreeSet<String>>,
    /// Since when the group is Empty.
    empty_since: Option<Instant>,
    /// group.initial.rebalance.delay.ms (a coordinator setting, kept here so that the many
    /// paths into `prepare_rebalance` need not pass it).
    initial_delay: Duration,
    changed: bool,
    persist: bool,
}

impl Group {
    pub fn new(id: &str, cfg: &GroupConfig, now: Instant) -> Group {
        Group {
            id: id.to_string(),
            initial_delay: cfg.initial_rebalance_delay,
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            rebalance: None,
            conn_joins: HashMap::new(),
            subscribed_topics: None,
            empty_since: Some(now),
            changed: false,
            persist: false,
        }
    }

    /// A group as it was persisted: Stable with its members (their sessions start now), or Empty.
    pub fn restore(id: &str, value: &GroupValue, cfg: &GroupConfig, now: Instant) -> Group {
        let mut g = Group::new(id, cfg, now);
        g.protocol_type = Some(value.protocol_type.clone()).filter(|t| !t.is_empty());
        g.generation = value.generation;
        if value.members.is_empty() {
            return g;
        }
        let protocol = value.protocol.clone().unwrap_or_default();
        g.members = value
            .members
            .iter()
            .map(|m| Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocols: vec![Protocol { name: protocol.clone(), metadata: m.subscription.clone() }],
                assignment: m.assignment.clone(),
                session_deadline: now + millis(m.session_timeout_ms),
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
                join_result: None,
            })
            .collect();
        g.protocol_name = value.protocol.clone();
        g.leader =
            value.leader.clone().filter(|l| g.has(l)).or_else(|| g.members.first().map(|m| m.id.clone()));
        g.state = GroupState::Stable;
        g.empty_since = None;
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }

    /// The persisted form of the group now (members' assignments as they are).
    pub fn to_value(&self) -> GroupValue {
        self.value_with(|m| m.assignment.clone())
    }

    fn value_with(&self, assignment: impl Fn(&Member) -> Vec<u8>) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: assignment(m),
                })
                .collect(),
        }
    }

    /// The persisted form with the leader's new assignments (for [`SyncStep::Store`]).
    pub fn value_with_assignments(&self, assignments: &[(String, Vec<u8>)]) -> GroupValue {
        self.value_with(|m| {
            assignments.iter().find(|(id, _)| *id == m.id).map(|(_, a)| a.clone()).unwrap_or_default()
        })
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Since when the group is Empty, with no member ids handed out and waiting to join.
    pub fn idle_since(&self) -> Option<Instant> {
        self.empty_since.filter(|_| self.pending_members.is_empty())
    }

    /// Whether something changed that parked requests may be waiting for (and reset it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Whether the group's metadata should be written (and reset it).
    pub fn take_persist(&mut self) -> bool {
        std::mem::take(&mut self.persist)
    }

    pub fn has(&self, member_id: &str) -> bool {
        self.members.iter().any(|m| m.id == member_id)
    }

    fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == member_id)
    }

    fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == member_id)
    }

    fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.members.iter().find(|m| m.instance_id.as_deref() == Some(instance_id)).map(|m| m.id.as_str())
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    fn max_rebalance_timeout(&self) -> Duration {
        millis(self.members.iter().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0))
    }

    fn transition(&mut self, to: GroupState, now: Instant) {
        self.state = to;
        self.empty_since = (to == GroupState::Empty).then_some(now);
        self.changed = true;
    }

    /// Kafka's validateCurrentMember: a static instance id must map to this member id (else
    /// FENCED_INSTANCE_ID), and the member must exist.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        if let Some(instance) = instance_id {
            match self.static_member(instance) {
                Some(current) if current != member_id => {
                    tracing::info!(group = %self.id, member_id, instance, current, "request of a fenced static member");
                    return Some(FENCED_INSTANCE_ID);
                }
                Some(_) => {}
                None => return Some(UNKNOWN_MEMBER_ID),
            }
        }
        (!self.has(member_id)).then_some(UNKNOWN_MEMBER_ID)
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|p| self.supporters(&p.name) == self.members.len())
        }
    }

    fn supporters(&self, protocol: &str) -> usize {
        self.members.iter().filter(|m| m.protocols.iter().any(|p| p.name == protocol)).count()
    }

    /// Kafka's selectProtocol: among the protocols every member supports, each member votes for
    /// its most preferred; most votes wins (ties: the first voted for, in member order).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|p| self.supporters(p) == self.members.len())
            .collect();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for m in &self.members {
            let Some(vote) = m.vote(&candidates) else { continue };
            match votes.iter_mut().find(|(p, _)| *p == vote) {
                Some((_, n)) => *n += 1,
                None => votes.push((vote, 1)),
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.iter().find(|(_, n)| *n == best).map(|(p, _)| p.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            topics.extend(consumer::subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Whether members of this group consume `topic` (unknown subscriptions: assume so).
    fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics.as_ref().is_none_or(|t| t.contains(topic))
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn current_join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members { self.current_member_metadata() } else { Vec::new() },
            skip_assignment: false,
        }
    }

    /// Checks a join makes before any group is looked up or created (Kafka checks these first).
    pub fn check_join(req: &JoinRequest, cfg: &GroupConfig) -> Option<i16> {
        if req.group_id.is_empty() {
            return Some(INVALID_GROUP_ID);
        }
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            return Some(INVALID_SESSION_TIMEOUT);
        }
        None
    }

    /// JoinGroup.
    pub fn join(&mut self, req: &JoinRequest, cfg: &GroupConfig, now: Instant) -> JoinStep {
        if let Some(error) = Group::check_join(req, cfg) {
            return JoinStep::Done(JoinResult::error(&req.member_id, error));
        }
        if self.state == GroupState::Dead {
            return JoinStep::Done(JoinResult::error(&req.member_id, COORDINATOR_NOT_AVAILABLE));
        }
        let step = if req.member_id.is_empty() {
            // A re-run of a parked join by a new member: it is that member's join again.
            let rerun = self
                .conn_joins
                .get(&req.conn_id)
                .cloned()
                .filter(|id| self.member(id).is_some_and(|m| m.instance_id == req.group_instance_id));
            match rerun {
                Some(member_id) => self.join_known(&member_id, req, now),
                None => self.join_new(req, cfg, now),
            }
        } else {
            self.join_known(&req.member_id.clone(), req, now)
        };
        if let JoinStep::Done(result) = &step {
            let delivered = result.member_id.clone();
            self.conn_joins.retain(|_, id| *id != delivered);
            if result.error != NONE {
                self.conn_joins.remove(&req.conn_id);
            }
        }
        step
    }

    fn join_new(&mut self, req: &JoinRequest, cfg: &GroupConfig, now: Instant) -> JoinStep {
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return JoinStep::Done(JoinResult::error("", INCONSISTENT_GROUP_PROTOCOL));
        }
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        match req.group_instance_id.as_deref() {
            Some(instance) => match self.static_member(instance).map(str::to_string) {
                Some(old_id) => {
                    tracing::info!(group = %self.id, instance, old_id, new_id, state = self.state.as_str(), "static member rejoins with an unknown member id: replacing the old member id");
                    self.update_static_member(&old_id, &new_id, req, now)
                }
                None => {
                    tracing::info!(group = %self.id, instance, new_id, state = self.state.as_str(), "new static member joins");
                    self.add_member_and_rebalance(&new_id, req, now);
                    self.conn_joins.insert(req.conn_id, new_id.clone());
                    self.join_outcome(&new_id, now)
                }
            },
            None if req.require_known_member => {
                let expiry = now + millis(req.session_timeout_ms.max(cfg.min_session_timeout_ms));
                self.pending_members.insert(new_id.clone(), expiry);
                tracing::debug!(group = %self.id, new_id, "new member must rejoin with its member id");
                JoinStep::Done(JoinResult::error(&new_id, MEMBER_ID_REQUIRED))
            }
            None => {
                self.add_member_and_rebalance(&new_id, req, now);
                self.conn_joins.insert(req.conn_id, new_id.clone());
                self.join_outcome(&new_id, now)
            }
        }
    }

    fn join_known(&mut self, member_id: &str, req: &JoinRequest, now: Instant) -> JoinStep {
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return JoinStep::Done(JoinResult::error(member_id, INCONSISTENT_GROUP_PROTOCOL));
        }
        if self.pending_members.remove(member_id).is_some() {
            if req.group_instance_id.is_some() {
                // Kafka never hands out a pending member id to a static member.
                return JoinStep::Done(JoinResult::error(member_id, UNKNOWN_MEMBER_ID));
            }
            tracing::debug!(group = %self.id, member_id, "pending member joins");
            self.add_member_and_rebalance(member_id, req, now);
            return self.join_outcome(member_id, now);
        }
        if let Some(error) = self.validate_member(member_id, req.group_instance_id.as_deref()) {
            return JoinStep::Done(JoinResult::error(member_id, error));
        }
        // A re-run after the join phase completed: the result of that join.
        let generation = self.generation;
        if matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable) {
            let member = self.member_mut(member_id).expect("validated");
            if let Some(result) = member.join_result.take()
                && result.generation_id == generation
            {
                return JoinStep::Done(result);
            }
        }
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(member_id, req, now);
                self.join_outcome(member_id, now)
            }
            GroupState::CompletingRebalance => {
                if self.member(member_id).is_some_and(|m| m.matches(&req.protocols)) {
                    // The same join again (a lost response): the current generation.
                    let leader = self.is_leader(member_id);
                    JoinStep::Done(self.current_join_result(member_id, leader))
                } else {
                    self.update_member_and_rebalance(member_id, req, now);
                    self.join_outcome(member_id, now)
                }
            }
            GroupState::Stable => {
                let matches = self.member(member_id).is_some_and(|m| m.matches(&req.protocols));
                if self.is_leader(member_id) || !matches {
                    // The leader rejoining forces a rebalance (it saw a metadata change).
                    self.update_member_and_rebalance(member_id, req, now);
                    self.join_outcome(member_id, now)
                } else {
                    JoinStep::Done(self.current_join_result(member_id, false))
                }
            }
            GroupState::Empty | GroupState::Dead => {
                JoinStep::Done(JoinResult::error(member_id, UNKNOWN_MEMBER_ID))
            }
        }
    }

    /// After a member joined: complete the join phase if it can, then the member's result or
    /// Pending.
    fn join_outcome(&mut self, member_id: &str, now: Instant) -> JoinStep {
        self.maybe_complete_join(now);
        let generation = self.generation;
        match self.member_mut(member_id) {
            Some(m) => match m.join_result.take() {
                Some(result) if result.generation_id == generation => JoinStep::Done(result),
                _ if m.awaiting_join => JoinStep::Pending,
                // Not awaiting and no result: cannot happen; ask the member to rejoin.
                _ => JoinStep::Done(JoinResult::error(member_id, UNKNOWN_MEMBER_ID)),
            },
            None => JoinStep::Done(JoinResult::error(member_id, UNKNOWN_MEMBER_ID)),
        }
    }

    fn add_member_and_rebalance(&mut self, member_id: &str, req: &JoinRequest, now: Instant) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.members.push(Member {
            id: member_id.to_string(),
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: Vec::new(),
            session_deadline: now + NEW_MEMBER_JOIN_TIMEOUT,
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            join_result: None,
        });
        if self.leader.is_none() {
            self.leader = Some(member_id.to_string());
        }
        if self.state == GroupState::PreparingRebalance
            && let Some(initial) = self.rebalance.as_mut().and_then(|r| r.initial.as_mut())
        {
            initial.new_member_added = true;
        }
        self.changed = true;
        let reason = format!("adding new member {member_id}{}", reason(req));
        self.maybe_prepare_rebalance(&reason, now);
    }

    fn update_member_and_rebalance(&mut self, member_id: &str, req: &JoinRequest, now: Instant) {
        if let Some(m) = self.member_mut(member_id) {
            // A re-run of a waiting join changes nothing: it must not wake the waiters (itself
            // included) again.
            let same = m.awaiting_join
                && m.protocols == req.protocols
                && m.rebalance_timeout_ms == req.rebalance_timeout_ms
                && m.session_timeout_ms == req.session_timeout_ms;
            m.protocols = req.protocols.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.awaiting_join = true;
            m.join_result = None;
            self.changed |= !same;
        }
        let reason = format!("member {member_id} rejoins{}", reason(req));
        self.maybe_prepare_rebalance(&reason, now);
    }

    /// A known static member rejoined with an unknown member id: the new id replaces (and
    /// fences) the old one.
    fn update_static_member(
        &mut self,
        old_id: &str,
        new_id: &str,
        req: &JoinRequest,
        now: Instant,
    ) -> JoinStep {
        let current_leader = self.leader.clone();
        let Some(member) = self.member_mut(old_id) else {
            return JoinStep::Done(JoinResult::error("", UNKNOWN_MEMBER_ID));
        };
        member.id = new_id.to_string();
        member.join_result = None;
        member.awaiting_sync = false;
        member.refresh(now);
        member.protocols = req.protocols.clone();
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.awaiting_join = true;
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
        self.conn_joins.retain(|_, id| id != old_id);
        self.changed = true;
        match self.state {
            GroupState::Stable => {
                if self.protocol_name.is_some() && self.select_protocol() == self.protocol_name {
                    // Nothing changes for the group: the member gets the current assignment
                    // without a rebalance.
                    let member = self.member_mut(new_id).expect("just renamed");
                    member.awaiting_join = false;
                    self.persist = true;
                    let is_leader = self.is_leader(new_id);
                    let mut result = self.current_join_result(new_id, is_leader);
                    result.skip_assignment = is_leader;
                    if !is_leader {
                        result.leader = current_leader.unwrap_or_default();
                    }
                    tracing::info!(group = %self.id, new_id, generation = self.generation, "static member rejoined a stable group without a rebalance");
                    return JoinStep::Done(result);
                }
                let reason = format!("static member {new_id} rejoined with a change of protocol");
                self.maybe_prepare_rebalance(&reason, now);
            }
            GroupState::CompletingRebalance => {
                self.prepare_rebalance(
                    &format!("static member {new_id} rejoined during CompletingRebalance"),
                    now,
                );
            }
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
        self.conn_joins.insert(req.conn_id, new_id.to_string());
        self.join_outcome(new_id, now)
    }

    fn maybe_prepare_rebalance(&mut self, reason: &str, now: Instant) {
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty) {
            self.prepare_rebalance(reason, now);
        }
    }

    fn prepare_rebalance(&mut self, reason: &str, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            // Waiting syncs learn of the new rebalance when they re-run (REBALANCE_IN_PROGRESS).
            for m in &mut self.members {
                m.assignment.clear();
                m.awaiting_sync = false;
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let timeout = self.max_rebalance_timeout();
        // An Empty group waits group.initial.rebalance.delay.ms for more members to join; with
        // no delay, the join completes as soon as every known member has joined (Kafka's
        // InitialDelayedJoin with a zero delay expires at once).
        self.rebalance = Some(if self.state == GroupState::Empty && !self.initial_delay.is_zero() {
            Rebalance {
                deadline: now + self.initial_delay,
                initial: Some(InitialDelay {
                    configured: self.initial_delay,
                    remaining: timeout.saturating_sub(self.initial_delay),
                    new_member_added: false,
                }),
            }
        } else {
            Rebalance { deadline: now + timeout, initial: None }
        });
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "preparing to rebalance: {reason}");
        self.transition(GroupState::PreparingRebalance, now);
    }

    /// Complete the join phase if every member rejoined, or its time is up.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let Some(rebalance) = self.rebalance.as_mut() else {
            self.complete_join(now);
            return;
        };
        match rebalance.initial.as_mut() {
            Some(initial) => {
                if now < rebalance.deadline {
                    return;
                }
                if initial.new_member_added && !initial.remaining.is_zero() {
                    let delay = initial.configured.min(initial.remaining);
                    initial.remaining -= delay;
                    initial.new_member_added = false;
                    rebalance.deadline = now + delay;
                    return;
                }
                self.complete_join(now);
            }
            None => {
                let all_joined =
                    self.members.iter().all(|m| m.awaiting_join) && self.pending_members.is_empty();
                if all_joined || now >= rebalance.deadline {
                    self.complete_join(now);
                }
            }
        }
    }

    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        if !gone.is_empty() {
            tracing::info!(group = %self.id, ?gone, "removing dynamic members that did not rejoin in time");
            for id in &gone {
                self.remove_member(id);
            }
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only static members are left): wait another round for them to
            // rejoin or for their sessions to expire.
            tracing::warn!(group = %self.id, "no member rejoined; extending the rebalance");
            let deadline = now + self.max_rebalance_timeout();
            self.rebalance = Some(Rebalance { deadline, initial: None });
            return;
        }
        self.rebalance = None;
        self.generation += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = None;
            self.transition(GroupState::Empty, now);
            self.persist = true;
            tracing::info!(group = %self.id, generation = self.generation, "group is now empty");
            return;
        }
        self.protocol_name = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.transition(GroupState::CompletingRebalance, now);
        let leader_result = self.current_join_result("", true);
        let follower_result = JoinResult { members: Vec::new(), ..leader_result.clone() };
        let leader = self.leader.clone();
        for m in &mut self.members {
            if m.awaiting_join {
                let base =
                    if leader.as_deref() == Some(m.id.as_str()) { &leader_result } else { &follower_result };
                m.join_result = Some(JoinResult { member_id: m.id.clone(), ..base.clone() });
                m.awaiting_join = false;
            }
            m.is_new = false;
            m.refresh(now);
            self.pending_sync.insert(m.id.clone());
        }
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol_name, leader = ?self.leader, "join phase complete; waiting for the leader's assignment");
    }

    /// Kafka's maybeElectNewJoinedLeader.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else { return false };
        if self.member(&leader).is_some_and(|m| m.awaiting_join) {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        self.members.retain(|m| m.id != member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
        self.conn_joins.retain(|_, id| id != member_id);
        self.changed = true;
    }

    fn remove_member_and_update(&mut self, member_id: &str, reason: &str, now: Instant) {
        self.remove_member(member_id);
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance) {
            self.maybe_prepare_rebalance(reason, now);
        }
        // The join phase may be complete now (Kafka's checkAndComplete; the last member gone:
        // the group becomes Empty at once).
        self.maybe_complete_join(now);
    }

    /// SyncGroup.
    pub fn sync(&mut self, req: &SyncRequest, now: Instant) -> SyncStep {
        if req.group_id.is_empty() {
            return SyncStep::Done(SyncResult::error(INVALID_GROUP_ID));
        }
        if self.state == GroupState::Dead {
            return SyncStep::Done(SyncResult::error(COORDINATOR_NOT_AVAILABLE));
        }
        if let Some(error) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return SyncStep::Done(SyncResult::error(error));
        }
        if req.generation_id != self.generation {
            return SyncStep::Done(SyncResult::error(ILLEGAL_GENERATION));
        }
        if req.protocol_type.as_ref().is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || req.protocol_name.as_ref().is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return SyncStep::Done(SyncResult::error(INCONSISTENT_GROUP_PROTOCOL));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => SyncStep::Done(SyncResult::error(UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => SyncStep::Done(SyncResult::error(REBALANCE_IN_PROGRESS)),
            GroupState::CompletingRebalance => {
                self.pending_sync.remove(&req.member_id);
                if self.is_leader(&req.member_id) {
                    let assignments = self
                        .members
                        .iter()
                        .map(|m| {
                            let a = req.assignments.iter().find(|(id, _)| *id == m.id);
                            if a.is_none() {
                                tracing::warn!(group = %self.id, member = %m.id, generation = self.generation, "the leader sent no assignment for this member: it gets an empty one");
                            }
                            (m.id.clone(), a.map(|(_, a)| a.clone()).unwrap_or_default())
                        })
                        .collect();
                    SyncStep::Store(assignments)
                } else {
                    if let Some(m) = self.member_mut(&req.member_id) {
                        m.awaiting_sync = true;
                    }
                    SyncStep::Pending
                }
            }
            GroupState::Stable => {
                self.pending_sync.remove(&req.member_id);
                let m = self.member_mut(&req.member_id).expect("validated");
                m.awaiting_sync = false;
                m.refresh(now);
                let assignment = m.assignment.clone();
                SyncStep::Done(SyncResult {
                    error: NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                })
            }
        }
    }

    /// After [`SyncStep::Store`]: `stored` is the outcome of persisting the assignments (an
    /// error code on failure). The group becomes Stable, or on failure rebalances again.
    pub fn finish_leader_sync(
        &mut self,
        req: &SyncRequest,
        assignments: Vec<(String, Vec<u8>)>,
        stored: Result<(), i16>,
        now: Instant,
    ) -> SyncResult {
        if self.state != GroupState::CompletingRebalance || req.generation_id != self.generation {
            return SyncResult::error(REBALANCE_IN_PROGRESS);
        }
        if let Err(code) = stored {
            self.prepare_rebalance("storing the group's assignment failed", now);
            return SyncResult::error(code);
        }
        for (id, assignment) in assignments {
            if let Some(m) = self.member_mut(&id) {
                m.assignment = assignment;
            }
        }
        for m in &mut self.members {
            if m.awaiting_sync || m.id == req.member_id {
                m.awaiting_sync = false;
                m.refresh(now);
            }
        }
        self.transition(GroupState::Stable, now);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "rebalance complete: group is stable");
        let assignment = self.member(&req.member_id).map(|m| m.assignment.clone()).unwrap_or_default();
        SyncResult {
            error: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if let Some(error) = self.validate_member(member_id, instance_id) {
            return error;
        }
        // Kafka checks the generation before the state: a member of an older generation is told
        // so in every state, also while the group completes a rebalance.
        if generation != self.generation {
            return ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => UNKNOWN_MEMBER_ID,
            GroupState::CompletingRebalance => {
                self.member_mut(member_id).expect("validated").refresh(now);
                NONE
            }
            GroupState::PreparingRebalance => {
                self.member_mut(member_id).expect("validated").refresh(now);
                REBALANCE_IN_PROGRESS
            }
            GroupState::Stable => {
                self.member_mut(member_id).expect("validated").refresh(now);
                NONE
            }
        }
    }

    /// LeaveGroup: one error code per leaving member (by member id, or by instance id alone).
    pub fn leave(&mut self, leaving: &[(String, Option<String>)], now: Instant) -> Result<Vec<i16>, i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        let mut codes = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let code = if member_id.is_empty() {
                match instance_id.as_deref().and_then(|i| self.static_member(i)).map(str::to_string) {
                    Some(current) => {
                        tracing::info!(group = %self.id, member = %current, "static member removed by its instance id (LeaveGroup)");
                        self.remove_member_and_update(&current, "member left", now);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if self.pending_members.remove(member_id).is_some() {
                self.changed = true;
                self.maybe_complete_join(now);
                NONE
            } else {
                match self.validate_member(member_id, instance_id.as_deref()) {
                    Some(error) => error,
                    None => {
                        tracing::info!(group = %self.id, member = %member_id, "member left the group (LeaveGroup)");
                        self.remove_member_and_update(member_id, "member left", now);
                        NONE
                    }
                }
            };
            codes.push(code);
        }
        Ok(codes)
    }

    /// Expire sessions, pending members, unsynced members and rebalance deadlines.
    pub fn tick(&mut self, now: Instant) {
        if self.state == GroupState::Dead {
            return;
        }
        let expired_pending: Vec<String> =
            self.pending_members.iter().filter(|(_, d)| now >= **d).map(|(id, _)| id.clone()).collect();
        for id in expired_pending {
            tracing::info!(group = %self.id, member = %id, "pending member expired before rejoining");
            self.pending_members.remove(&id);
            self.changed = true;
        }
        let expired: Vec<String> =
            self.members.iter().filter(|m| !m.has_satisfied_heartbeat(now)).map(|m| m.id.clone()).collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, generation = self.generation, "member's session expired: removing it from the group");
            self.remove_member_and_update(&id, "session expired", now);
        }
        if self.sync_deadline.is_some_and(|d| now >= d) {
            self.sync_deadline = None;
            if matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable)
                && !self.pending_sync.is_empty()
            {
                let unsynced: Vec<String> = self.pending_sync.iter().cloned().collect();
                tracing::info!(group = %self.id, ?unsynced, generation = self.generation, "members did not sync in time: removing them");
                for id in &unsynced {
                    self.remove_member(id);
                }
                self.prepare_rebalance("members did not sync in time", now);
            }
        }
        self.maybe_complete_join(now);
    }

    /// OffsetCommit's checks (Kafka's validateOffsetCommit and the state check): Ok to store.
    /// A member's commit counts as a heartbeat.
    pub fn check_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if let Some(error) = self.validate_member(member_id, instance_id) {
                return Err(error);
            }
            if generation != self.generation {
                return Err(ILLEGAL_GENERATION);
            }
        } else if self.state != GroupState::Empty {
            // Only members may commit into a group that has members.
            return Err(UNKNOWN_MEMBER_ID);
        }
        match self.state {
            GroupState::CompletingRebalance => Err(REBALANCE_IN_PROGRESS),
            GroupState::Stable | GroupState::PreparingRebalance => {
                if let Some(m) = self.member_mut(member_id) {
                    m.refresh(now);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// OffsetDelete's checks: for each topic, whether the group consumes it (those partitions
    /// get GROUP_SUBSCRIBED_TO_TOPIC), or a group-level error.
    pub fn check_offset_delete(&self, topics: &[&str]) -> Result<Vec<bool>, i16> {
        match self.state {
            GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
            GroupState::Empty => Ok(vec![false; topics.len()]),
            _ if self.protocol_type.as_deref() == Some("consumer") => {
                Ok(topics.iter().map(|t| self.is_subscribed_to(t)).collect())
            }
            _ => Err(NON_EMPTY_GROUP),
        }
    }

    /// DeleteGroups' check: only an Empty group may be deleted (then [`Group::kill`] it).
    pub fn check_delete(&self) -> Result<(), i16> {
        match self.state {
            GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
            GroupState::Empty => Ok(()),
            _ => Err(NON_EMPTY_GROUP),
        }
    }

    /// Mark the group Dead (it was removed from the coordinator).
    pub fn kill(&mut self, now: Instant) {
        self.transition(GroupState::Dead, now);
    }

    /// DescribeGroups.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            error: NONE,
            group_id: self.id.clone(),
            state: self.state.as_str().into(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable { protocol.clone() } else { String::new() },
            members: self
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable { m.metadata(&protocol) } else { Vec::new() },
                    assignment: if stable { m.assignment.clone() } else { Vec::new() },
                })
                .collect(),
        }
    }
}

fn reason(req: &JoinRequest) -> String {
    req.reason.as_deref().map(|r| format!(" (client reason: {r})")).unwrap_or_default()
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
