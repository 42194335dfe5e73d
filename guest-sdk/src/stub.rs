//! A native, in-memory stand-in for the host, so handler logic unit-tests with `cargo test`.
//!
//! It keeps topics and record batches in memory and follows the host's contract where a handler
//! can observe it (offsets assigned per batch, whole batches on read, KIP-74's min-one rule,
//! Kafka error codes), but it does not verify CRCs: that is the real host's job.
//!
//! Consumer groups run the host's own state machine ([`crate::groups`]), with no initial
//! rebalance delay (`group.initial.rebalance.delay.ms=0`), so a lone member's join completes at
//! once and a join or sync that waits for other members answers `Pending`, as the host's does.
//! Nothing persists and no timer runs (sessions never expire). Setting
//! [`StubServices::groups_pending`] makes every join and sync answer `Pending`, to test the wait
//! path. Producer ids count up from 1000.
//!
//! ACLs: by default the stub runs no authorizer, as a host without one: `authorize` answers
//! true and the ACL calls SECURITY_DISABLED. [`StubServices::deny`] turns an authorizer on that
//! refuses the (resource type, name, operation) triples it is given and allows everything else
//! (the bindings CreateAcls stores are kept and listed, not evaluated). As the host does, topics
//! the principal may not DESCRIBE are left out of `list_topics`, `describe_topic` and
//! `topic_by_id`, and the ACL calls need DESCRIBE (describe) or ALTER (create, delete) on the
//! cluster. No other service checks ACLs: what a handler must refuse itself stays visible.
//!
//! SCRAM credentials: kept in memory ([`StubServices::scram`]), with Kafka's rules (KIP-554).
//! Describing needs DESCRIBE on the cluster and altering ALTER (a refusal is
//! CLUSTER_AUTHORIZATION_FAILED, for the whole describe and for every user altered); they need no
//! authorizer otherwise. An alteration is checked per user (an empty name, an unknown mechanism,
//! a (user, mechanism) changed twice, iterations outside 4096..=16384, deleting a credential that
//! does not exist) and a user's changes apply only when all of them are valid.

use crate::groups::{self, Group, GroupConfig, GroupState, JoinStep, SyncStep};
use crate::{
    AbortedTransaction, AclBinding, AclFilter, AppendInfo, Broker, CommittedOffset, ConfigEntry, ConfigOp,
    ErrorCode, Fetched, GroupDescription, GroupListing, GroupMember, HostBuffer, JoinOutcome, JoinRequest,
    JoinResult, LeaveResult, Leaving, Level, LogDir, MemberDescription, OffsetAndTimestamp, OffsetCommit,
    PartitionReport, ProducerIdAndEpoch, ProducerState, ScramCredentialInfo, ScramDeletion, ScramUpsertion,
    Services, Settings, SyncOutcome, SyncRequest, SyncResult, TopicInfo, TopicPartition, TxnDescription,
    TxnListing, UserScramCredentials, acl, error, scram,
};
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Host bytes in the stub: a cheap slice of a `Bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubBuffer(pub Bytes);

impl HostBuffer for StubBuffer {
    fn len(&self) -> u32 {
        self.0.len() as u32
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        let start = (offset as usize).min(self.0.len());
        let end = start.saturating_add(len as usize).min(self.0.len());
        self.0[start..end].to_vec()
    }
    fn slice(&self, offset: u32, len: u32) -> Result<Self, ErrorCode> {
        let (start, end) = (offset as usize, offset as usize + len as usize);
        if end > self.0.len() {
            return Err(error::CORRUPT_MESSAGE);
        }
        Ok(StubBuffer(self.0.slice(start..end)))
    }
}

#[derive(Default, Debug)]
struct StubPartition {
    /// (base offset, last offset, max timestamp, batch bytes with the base offset patched)
    batches: Vec<(i64, i64, i64, Bytes)>,
    next: i64,
    /// Moved up by DeleteRecords.
    log_start: i64,
}

#[derive(Debug)]
struct StubTopic {
    id: u128,
    partitions: Vec<StubPartition>,
    configs: Vec<(String, String)>,
}

/// A group: the host's state machine, and the stub's committed offsets.
#[derive(Debug)]
struct StubGroup {
    group: Group,
    offsets: BTreeMap<TopicPartition, (i64, i32, Option<String>)>,
}

impl StubGroup {
    fn new(id: &str) -> Self {
        StubGroup { group: Group::new(id, &group_config(), Instant::now()), offsets: BTreeMap::new() }
    }
}

/// Kafka's group defaults, without the initial rebalance delay.
fn group_config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay: Duration::ZERO, ..GroupConfig::default() }
}

/// Kafka's `offset.metadata.max.bytes` default.
const MAX_OFFSET_METADATA: usize = 4096;

/// An in-memory host.
#[derive(Debug)]
pub struct StubServices {
    topics: RefCell<BTreeMap<String, StubTopic>>,
    next_id: Cell<u128>,
    groups: RefCell<BTreeMap<String, StubGroup>>,
    /// Producer id → its current epoch.
    producers: RefCell<BTreeMap<i64, i16>>,
    pub settings: Settings,
    pub broker: Broker,
    /// What `client_host` answers.
    pub client_host: String,
    /// When set, every join and sync answers `Pending` (the rebalance never completes).
    pub groups_pending: Cell<bool>,
    /// Lines the guest logged.
    pub logs: RefCell<Vec<(Level, String)>>,
    /// Group calls the guest made, as "call group-id" (e.g. "fetch_offsets g1").
    pub group_calls: RefCell<Vec<String>>,
    /// The authorizer, if any (see the module docs); [`StubServices::deny`] sets one.
    pub acls: RefCell<Option<StubAcls>>,
    /// The SCRAM credentials, by (user, mechanism): the upsertion that stored each.
    pub scram: RefCell<BTreeMap<(String, i8), ScramUpsertion>>,
    /// The client quotas, by entity (kept with the host's rules, [`crate::quotas`]).
    pub quotas: RefCell<BTreeMap<crate::quotas::Entity, BTreeMap<String, f64>>>,
    /// What `throttle_ms` answers.
    pub throttle_ms: Cell<i32>,
}

/// The stub's authorizer: a deny list, and the bindings stored by CreateAcls.
#[derive(Debug, Default)]
pub struct StubAcls {
    /// (resource type, name, operation) the principal may not do. A name of "*" stands for every
    /// name of that type, an operation of [`acl::ALL`] for every operation.
    pub denied: Vec<(i8, String, i8)>,
    /// The bindings CreateAcls stored, in creation order.
    pub bindings: Vec<AclBinding>,
}

impl StubAcls {
    fn allows(&self, resource_type: i8, name: &str, operation: i8) -> bool {
        !self.denied.iter().any(|(rt, n, op)| {
            *rt == resource_type && (n == name || n == "*") && (*op == operation || *op == acl::ALL)
        })
    }
}

/// Whether `b` matches `f`: ANY codes and `None` match anything; the stub treats MATCH as ANY.
fn acl_matches(f: &AclFilter, b: &AclBinding) -> bool {
    let code = |want: i8, have: i8| want == acl::ANY || want == have;
    let text = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    code(f.resource_type, b.resource_type)
        && (f.pattern_type == acl::MATCH || code(f.pattern_type, b.pattern_type))
        && text(&f.resource_name, &b.resource_name)
        && text(&f.principal, &b.principal)
        && text(&f.host, &b.host)
        && code(f.operation, b.operation)
        && code(f.permission_type, b.permission_type)
}

impl Default for StubServices {
    fn default() -> Self {
        StubServices {
            topics: RefCell::default(),
            next_id: Cell::new(1),
            settings: Settings {
                cluster_id: "stub-cluster".into(),
                auto_create_topics: true,
                default_partitions: 1,
                max_frame_bytes: 100 * 1024 * 1024,
                transaction_version: 2,
            },
            broker: Broker { node_id: 0, host: "127.0.0.1".into(), port: 9092, rack: None },
            groups: RefCell::default(),
            producers: RefCell::default(),
            client_host: "/127.0.0.1".into(),
            groups_pending: Cell::new(false),
            logs: RefCell::default(),
            group_calls: RefCell::default(),
            acls: RefCell::default(),
            scram: RefCell::default(),
            quotas: RefCell::default(),
            throttle_ms: Cell::new(0),
        }
    }
}

/// The host's limit on partitions per topic (its storage refuses more, as INVALID_PARTITIONS).
const MAX_PARTITIONS: i32 = 10_000;

const KNOWN_CONFIGS: &[(&str, &str)] =
    &[("cleanup.policy", "delete"), ("max.message.bytes", "1048588"), ("segment.bytes", "1073741824")];

impl StubServices {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turn the authorizer on (if it is not) and refuse `operation` on the named resource ("*":
    /// every resource of the type; [`acl::ALL`]: every operation).
    pub fn deny(&self, resource_type: i8, name: &str, operation: i8) {
        let mut acls = self.acls.borrow_mut();
        acls.get_or_insert_with(StubAcls::default).denied.push((resource_type, name.to_string(), operation));
    }

    /// Turn the authorizer on, refusing nothing.
    pub fn enable_acls(&self) {
        self.acls.borrow_mut().get_or_insert_with(StubAcls::default);
    }

    /// Whether the principal may DESCRIBE the topic (the host hides the topics it may not).
    fn visible(&self, topic: &str) -> bool {
        self.authorize(acl::TOPIC, topic, acl::DESCRIBE)
    }

    /// The authorizer, if the principal may do `operation` on the cluster; else the error the
    /// host answers the ACL calls with.
    fn acl_admin(&self, operation: i8) -> Result<std::cell::RefMut<'_, StubAcls>, (ErrorCode, String)> {
        if !self.authorize(acl::CLUSTER, acl::CLUSTER_NAME, operation) {
            return Err(cluster_denied());
        }
        std::cell::RefMut::filter_map(self.acls.borrow_mut(), Option::as_mut)
            .map_err(|_| (error::SECURITY_DISABLED, "Security features are disabled.".into()))
    }

    fn info(name: &str, t: &StubTopic) -> TopicInfo {
        TopicInfo { name: name.to_string(), id: t.id, partitions: t.partitions.len() as i32, internal: false }
    }

    fn with_partition<T>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut StubPartition) -> Result<T, ErrorCode>,
    ) -> Result<T, ErrorCode> {
        let mut topics = self.topics.borrow_mut();
        let t = topics.get_mut(&tp.topic).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        let p = usize::try_from(tp.partition)
            .ok()
            .and_then(|p| t.partitions.get_mut(p))
            .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        f(p)
    }

    fn note(&self, call: &str, group_id: &str) {
        self.group_calls.borrow_mut().push(format!("{call} {group_id}"));
    }

    fn partition_exists(&self, tp: &TopicPartition) -> bool {
        self.topics
            .borrow()
            .get(&tp.topic)
            .is_some_and(|t| usize::try_from(tp.partition).is_ok_and(|p| p < t.partitions.len()))
    }
}

fn join_result(r: groups::JoinResult) -> JoinResult {
    JoinResult {
        error: r.error,
        generation_id: r.generation_id,
        protocol_type: r.protocol_type,
        protocol_name: r.protocol_name,
        leader: r.leader,
        member_id: r.member_id,
        members: r
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                metadata: m.metadata,
            })
            .collect(),
        skip_assignment: r.skip_assignment,
    }
}

fn join_error(error: ErrorCode, member_id: &str) -> JoinOutcome {
    JoinOutcome::Done(join_result(groups::JoinResult::error(member_id, error)))
}

fn sync_result(r: groups::SyncResult) -> SyncResult {
    SyncResult {
        error: r.error,
        protocol_type: r.protocol_type,
        protocol_name: r.protocol_name,
        assignment: r.assignment,
    }
}

fn sync_error(error: ErrorCode) -> SyncOutcome {
    SyncOutcome::Done(sync_result(groups::SyncResult::error(error)))
}

/// The host's answer without the needed permission on the cluster.
fn cluster_denied() -> (ErrorCode, String) {
    (error::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.".into())
}

/// One change of an AlterUserScramCredentials: (user, mechanism, the upsertion or `None` for a
/// deletion).
type ScramChange<'a> = (&'a str, i8, Option<&'a ScramUpsertion>);

/// Why a user's changes (all of them, in request order) cannot apply, as Kafka's controller
/// refuses them: the first change is checked and its error wins; a valid first change followed
/// by any other change of the same user is DUPLICATE_RESOURCE. With Kafka's messages.
fn scram_problem(
    user: &str,
    changes: &[ScramChange<'_>],
    stored: &BTreeMap<(String, i8), ScramUpsertion>,
) -> Option<(ErrorCode, String)> {
    let refuse = |code, why: &str| Some((code, why.to_string()));
    if user.is_empty() {
        return refuse(error::UNACCEPTABLE_CREDENTIAL, "Username must not be empty");
    }
    let (_, mechanism, upsertion) = changes.first()?;
    if scram::mechanism_name(*mechanism).is_none() {
        return refuse(error::UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism");
    }
    match upsertion {
        Some(u) if u.iterations < scram::MIN_ITERATIONS => {
            return refuse(error::UNACCEPTABLE_CREDENTIAL, "Too few iterations");
        }
        Some(u) if u.iterations > scram::MAX_ITERATIONS => {
            return refuse(error::UNACCEPTABLE_CREDENTIAL, "Too many iterations");
        }
        None if !stored.contains_key(&(user.to_string(), *mechanism)) => {
            return refuse(
                error::RESOURCE_NOT_FOUND,
                "Attempt to delete a user credential that does not exist",
            );
        }
        _ => {}
    }
    if changes.len() > 1 {
        return refuse(
            error::DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request",
        );
    }
    None
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl Services for StubServices {
    type Buffer = StubBuffer;

    fn list_topics(&self) -> Vec<TopicInfo> {
        self.topics.borrow().iter().filter(|(n, _)| self.visible(n)).map(|(n, t)| Self::info(n, t)).collect()
    }
    fn describe_topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.borrow().get(name).filter(|_| self.visible(name)).map(|t| Self::info(name, t))
    }
    fn topic_by_id(&self, id: u128) -> Option<TopicInfo> {
        self.topics
            .borrow()
            .iter()
            .find(|(n, t)| t.id == id && self.visible(n))
            .map(|(n, t)| Self::info(n, t))
    }
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicInfo, ErrorCode> {
        if !valid_topic_name(name) {
            return Err(error::INVALID_TOPIC_EXCEPTION);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(error::INVALID_PARTITIONS);
        }
        if configs.iter().any(|(k, _)| !KNOWN_CONFIGS.iter().any(|(n, _)| n == k)) {
            return Err(error::INVALID_CONFIG);
        }
        if self.topics.borrow().contains_key(name) {
            return Err(error::TOPIC_ALREADY_EXISTS);
        }
        let id = self.next_id.get();
        let topic = StubTopic {
            id,
            partitions: (0..partitions).map(|_| StubPartition::default()).collect(),
            configs: configs.to_vec(),
        };
        let info = Self::info(name, &topic);
        if !validate_only {
            self.next_id.set(id + 1);
            self.topics.borrow_mut().insert(name.to_string(), topic);
        }
        Ok(info)
    }
    fn delete_topic(&self, name: &str) -> Result<(), ErrorCode> {
        self.topics.borrow_mut().remove(name).map(|_| ()).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
    }
    fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ErrorCode> {
        let mut topics = self.topics.borrow_mut();
        let t = topics.get_mut(name).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        if total <= t.partitions.len() as i32 || total > MAX_PARTITIONS {
            return Err(error::INVALID_PARTITIONS);
        }
        if !validate_only {
            t.partitions.resize_with(total as usize, StubPartition::default);
        }
        Ok(())
    }
    fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ErrorCode> {
        let topics = self.topics.borrow();
        let t = topics.get(name).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        Ok(KNOWN_CONFIGS
            .iter()
            .map(|(k, default)| {
                let set = t.configs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                ConfigEntry {
                    name: k.to_string(),
                    is_default: set.is_none(),
                    value: Some(set.unwrap_or_else(|| default.to_string())),
                    read_only: *k == "cleanup.policy",
                    sensitive: false,
                }
            })
            .collect())
    }
    fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[(String, ConfigOp)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let mut topics = self.topics.borrow_mut();
        let t = topics.get_mut(name).ok_or((
            error::UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition.".into(),
        ))?;
        let mut configs = if incremental { t.configs.clone() } else { Vec::new() };
        for (key, op) in ops {
            if !KNOWN_CONFIGS.iter().any(|(n, _)| n == key) {
                return Err((error::INVALID_CONFIG, format!("Unknown topic config name: {key}")));
            }
            configs.retain(|(k, _)| k != key);
            match op {
                ConfigOp::Set(v) | ConfigOp::Append(v) => configs.push((key.clone(), v.clone())),
                ConfigOp::Delete | ConfigOp::Subtract(_) => {}
            }
        }
        if !validate_only {
            t.configs = configs;
        }
        Ok(())
    }
    fn broker_configs(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            name: "auto.create.topics.enable".into(),
            value: Some(self.settings.auto_create_topics.to_string()),
            read_only: true,
            is_default: true,
            sensitive: false,
        }]
    }

    fn append(&self, tp: &TopicPartition, records: &StubBuffer) -> Result<AppendInfo, ErrorCode> {
        let data = &records.0;
        // Split into batches (base offset 8, length 4, ..., magic at 16).
        let mut batches = Vec::new();
        let mut at = 0;
        while at < data.len() {
            if data.len() - at < 61 || data[at + 16] != 2 {
                return Err(error::CORRUPT_MESSAGE);
            }
            let len = be_i32(data, at + 8);
            let end = at + 12 + usize::try_from(len).map_err(|_| error::CORRUPT_MESSAGE)?;
            if end - at < 61 || end > data.len() {
                return Err(error::CORRUPT_MESSAGE);
            }
            batches.push(at..end);
            at = end;
        }
        if batches.is_empty() {
            return Err(error::CORRUPT_MESSAGE);
        }
        self.with_partition(tp, |p| {
            let base = p.next;
            for range in batches {
                let b = &data[range];
                let last_delta = be_i32(b, 23) as i64;
                let max_ts = be_i64(b, 35);
                let mut patched = BytesMut::from(b);
                patched[..8].copy_from_slice(&p.next.to_be_bytes());
                p.batches.push((p.next, p.next + last_delta, max_ts, patched.freeze()));
                p.next += last_delta + 1;
            }
            Ok(AppendInfo { base_offset: base, log_start_offset: p.log_start })
        })
    }

    fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Fetched<StubBuffer>, ErrorCode> {
        self.with_partition(tp, |p| {
            if offset < p.log_start || offset > p.next {
                return Err(error::OFFSET_OUT_OF_RANGE);
            }
            let mut out = BytesMut::new();
            for (_, _, _, b) in p.batches.iter().filter(|(_, last, _, _)| *last >= offset) {
                let fits = out.len() + b.len() <= max_bytes as usize;
                if fits || (min_one && out.is_empty()) {
                    out.extend_from_slice(b);
                } else {
                    break;
                }
            }
            let len = out.len() as u32;
            Ok(Fetched {
                high_watermark: p.next,
                last_stable_offset: p.next,
                log_start_offset: p.log_start,
                records: (len > 0).then(|| StubBuffer(out.freeze())),
                records_len: len,
            })
        })
    }

    /// The stub has no transactions: everything is stable, nothing aborted.
    fn read_committed(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<(Fetched<StubBuffer>, Vec<AbortedTransaction>), ErrorCode> {
        self.read(tp, offset, max_bytes, min_one).map(|f| (f, Vec::new()))
    }

    fn list_offset_committed(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        self.list_offset(tp, timestamp)
    }

    fn list_offset(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        self.with_partition(tp, |p| {
            Ok(match timestamp {
                -1 => Some(OffsetAndTimestamp { offset: p.next, timestamp: -1 }),
                -2 => Some(OffsetAndTimestamp { offset: p.log_start, timestamp: -1 }),
                -3 => p
                    .batches
                    .iter()
                    .max_by_key(|b| b.2)
                    .map(|b| OffsetAndTimestamp { offset: b.1, timestamp: b.2 }),
                ts => p
                    .batches
                    .iter()
                    .find(|b| b.2 >= ts)
                    .map(|b| OffsetAndTimestamp { offset: b.0, timestamp: b.2 }),
            })
        })
    }

    fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, ErrorCode> {
        self.with_partition(tp, |p| {
            let offset = if offset == -1 { p.next } else { offset };
            if !(0..=p.next).contains(&offset) {
                return Err(error::OFFSET_OUT_OF_RANGE);
            }
            p.log_start = p.log_start.max(offset);
            p.batches.retain(|b| b.1 >= p.log_start);
            Ok(p.log_start)
        })
    }

    fn partition_report(&self, tp: &TopicPartition) -> Result<PartitionReport, ErrorCode> {
        self.with_partition(tp, |p| {
            // The last batch of each producer id (v2 header: producer id at 43, epoch at 51,
            // base sequence at 53).
            let mut last: BTreeMap<i64, ProducerState> = BTreeMap::new();
            for (base, end, max_ts, b) in &p.batches {
                let producer_id = be_i64(b, 43);
                if producer_id < 0 {
                    continue;
                }
                let epoch = i16::from_be_bytes([b[51], b[52]]);
                let last_sequence = be_i32(b, 53).wrapping_add(i32::try_from(end - base).unwrap_or(0));
                // The stub writes no markers: a transaction, once begun, stays open.
                let transactional = i16::from_be_bytes([b[21], b[22]]) & 0x10 != 0;
                let txn_start = last.get(&producer_id).map_or(-1, |p| p.current_txn_start_offset);
                let current_txn_start_offset = match (transactional, txn_start) {
                    (true, -1) => *base,
                    (true, start) => start,
                    (false, _) => -1,
                };
                last.insert(
                    producer_id,
                    ProducerState {
                        producer_id,
                        epoch,
                        last_sequence,
                        last_timestamp: *max_ts,
                        current_txn_start_offset,
                    },
                );
            }
            Ok(PartitionReport {
                size_bytes: p.batches.iter().map(|b| b.3.len() as u64).sum(),
                producers: last.into_values().collect(),
            })
        })
    }

    fn log_dir(&self) -> LogDir {
        LogDir { path: "/stub/topics".into(), total_bytes: Some(1 << 30), usable_bytes: Some(1 << 29) }
    }

    fn self_broker(&self) -> Broker {
        self.broker.clone()
    }
    fn brokers(&self) -> Vec<Broker> {
        vec![self.broker.clone()]
    }
    fn settings(&self) -> Settings {
        self.settings.clone()
    }
    fn tenant(&self) -> String {
        "public".into()
    }
    fn connection_id(&self) -> u64 {
        1
    }
    fn client_host(&self) -> String {
        self.client_host.clone()
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn join_group(&self, req: &JoinRequest) -> JoinOutcome {
        self.note("join", &req.group_id);
        if self.groups_pending.get() {
            return JoinOutcome::Pending;
        }
        let (cfg, now) = (group_config(), Instant::now());
        let request = groups::JoinRequest {
            group_id: req.group_id.clone(),
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req
                .protocols
                .iter()
                .map(|p| groups::Protocol { name: p.name.clone(), metadata: p.metadata.clone() })
                .collect(),
            require_known_member: req.require_known_member,
            reason: req.reason.clone(),
            conn_id: 0,
        };
        if let Some(error) = Group::check_join(&request, &cfg) {
            return join_error(error, &req.member_id);
        }
        let mut all = self.groups.borrow_mut();
        // A member id for a group that does not exist is unknown; only new members create it.
        let g = match all.get_mut(&req.group_id) {
            Some(g) => g,
            None if req.member_id.is_empty() => {
                all.entry(req.group_id.clone()).or_insert_with(|| StubGroup::new(&req.group_id))
            }
            None => return join_error(error::UNKNOWN_MEMBER_ID, &req.member_id),
        };
        match g.group.join(&request, &cfg, now) {
            JoinStep::Done(r) => JoinOutcome::Done(join_result(r)),
            JoinStep::Pending => JoinOutcome::Pending,
        }
    }

    fn sync_group(&self, req: &SyncRequest) -> SyncOutcome {
        self.note("sync", &req.group_id);
        if self.groups_pending.get() {
            return SyncOutcome::Pending;
        }
        if req.group_id.is_empty() {
            return sync_error(error::INVALID_GROUP_ID);
        }
        let mut all = self.groups.borrow_mut();
        let Some(g) = all.get_mut(&req.group_id) else {
            return sync_error(error::UNKNOWN_MEMBER_ID);
        };
        let request = groups::SyncRequest {
            group_id: req.group_id.clone(),
            generation_id: req.generation_id,
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            protocol_type: req.protocol_type.clone(),
            protocol_name: req.protocol_name.clone(),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.clone(), a.assignment.clone()))
                .collect(),
        };
        let now = Instant::now();
        match g.group.sync(&request, now) {
            SyncStep::Done(r) => SyncOutcome::Done(sync_result(r)),
            SyncStep::Pending => SyncOutcome::Pending,
            // Nothing to persist here: the leader's assignments are stored at once.
            SyncStep::Store(assignments) => {
                SyncOutcome::Done(sync_result(g.group.finish_leader_sync(&request, assignments, Ok(()), now)))
            }
        }
    }

    fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> ErrorCode {
        self.note("heartbeat", group_id);
        if group_id.is_empty() {
            return error::INVALID_GROUP_ID;
        }
        match self.groups.borrow_mut().get_mut(group_id) {
            Some(g) => g.group.heartbeat(generation_id, member_id, group_instance_id, Instant::now()),
            None => error::UNKNOWN_MEMBER_ID,
        }
    }

    fn leave_group(&self, group_id: &str, members: &[Leaving]) -> LeaveResult {
        self.note("leave", group_id);
        let n = members.len();
        if group_id.is_empty() {
            return LeaveResult { error: error::INVALID_GROUP_ID, members: vec![error::INVALID_GROUP_ID; n] };
        }
        let mut all = self.groups.borrow_mut();
        let Some(g) = all.get_mut(group_id) else {
            return LeaveResult { error: error::NONE, members: vec![error::UNKNOWN_MEMBER_ID; n] };
        };
        let leaving: Vec<(String, Option<String>)> =
            members.iter().map(|m| (m.member_id.clone(), m.group_instance_id.clone())).collect();
        match g.group.leave(&leaving, Instant::now()) {
            Ok(codes) => LeaveResult { error: error::NONE, members: codes },
            Err(code) => LeaveResult { error: code, members: vec![code; n] },
        }
    }

    fn describe_group(&self, group_id: &str) -> GroupDescription {
        self.note("describe", group_id);
        let all = self.groups.borrow();
        let d = match all.get(group_id) {
            Some(g) => g.group.describe(),
            None => groups::GroupDescription::dead(group_id, error::NONE),
        };
        GroupDescription {
            error: d.error,
            group_id: d.group_id,
            state: d.state,
            protocol_type: d.protocol_type,
            protocol_name: d.protocol_name,
            members: d
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: m.metadata,
                    assignment: m.assignment,
                })
                .collect(),
        }
    }

    fn list_groups(&self, states: &[String]) -> Vec<GroupListing> {
        self.note("list", "");
        self.groups
            .borrow()
            .iter()
            .filter(|(_, g)| g.group.state() != GroupState::Dead)
            .filter(|(_, g)| {
                states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.group.state().as_str()))
            })
            .map(|(id, g)| GroupListing {
                group_id: id.clone(),
                protocol_type: g.group.protocol_type().unwrap_or_default().to_string(),
                state: g.group.state().as_str().into(),
            })
            .collect()
    }

    fn delete_group(&self, group_id: &str) -> ErrorCode {
        self.note("delete", group_id);
        let mut all = self.groups.borrow_mut();
        let Some(g) = all.get(group_id) else { return error::GROUP_ID_NOT_FOUND };
        match g.group.check_delete() {
            Ok(()) => {
                all.remove(group_id);
                error::NONE
            }
            Err(code) => code,
        }
    }

    fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode> {
        self.note("commit_offsets", group_id);
        let all_codes = |code| vec![code; offsets.len()];
        if group_id.is_empty() {
            return all_codes(error::INVALID_GROUP_ID);
        }
        let mut all = self.groups.borrow_mut();
        let g = match all.get_mut(group_id) {
            Some(g) => g,
            // A commit outside the group protocol creates the group (as Kafka's does).
            None if generation_id < 0 => {
                all.entry(group_id.to_string()).or_insert_with(|| StubGroup::new(group_id))
            }
            None => return all_codes(error::ILLEGAL_GENERATION),
        };
        if let Err(code) = g.group.check_commit(generation_id, member_id, group_instance_id, Instant::now()) {
            return all_codes(code);
        }
        offsets
            .iter()
            .map(|o| {
                let tp = TopicPartition { topic: o.topic.clone(), partition: o.partition };
                if !self.partition_exists(&tp) {
                    error::UNKNOWN_TOPIC_OR_PARTITION
                } else if o.metadata.as_ref().is_some_and(|m| m.len() > MAX_OFFSET_METADATA) {
                    error::OFFSET_METADATA_TOO_LARGE
                } else {
                    g.offsets.insert(tp, (o.offset, o.leader_epoch, o.metadata.clone()));
                    error::NONE
                }
            })
            .collect()
    }

    fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<CommittedOffset>, ErrorCode> {
        self.note("fetch_offsets", group_id);
        if group_id.is_empty() {
            return Err(error::INVALID_GROUP_ID);
        }
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        let committed = |tp: &TopicPartition| {
            let found = offsets.and_then(|o| o.get(tp));
            CommittedOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: found.map_or(-1, |f| f.0),
                leader_epoch: found.map_or(-1, |f| f.1),
                metadata: found.and_then(|f| f.2.clone()),
                error: error::NONE,
            }
        };
        Ok(match partitions {
            Some(ps) => ps.iter().map(committed).collect(),
            None => offsets.into_iter().flat_map(|o| o.keys()).map(committed).collect(),
        })
    }

    fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        self.note("delete_offsets", group_id);
        let mut all = self.groups.borrow_mut();
        let g = all.get_mut(group_id).ok_or(error::GROUP_ID_NOT_FOUND)?;
        let topics: Vec<&str> = partitions.iter().map(|tp| tp.topic.as_str()).collect();
        let subscribed = g.group.check_offset_delete(&topics)?;
        Ok(partitions
            .iter()
            .zip(subscribed)
            .map(|(tp, subscribed)| {
                if !self.partition_exists(tp) {
                    error::UNKNOWN_TOPIC_OR_PARTITION
                } else if subscribed {
                    error::GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    g.offsets.remove(tp);
                    error::NONE
                }
            })
            .collect())
    }

    fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        if transactional_id.is_some() {
            // Transactions are not supported.
            return Err(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        let mut producers = self.producers.borrow_mut();
        if let Some(c) = current
            && let Some(epoch) = producers.get_mut(&c.producer_id)
        {
            if *epoch != c.producer_epoch {
                return Err(error::INVALID_PRODUCER_EPOCH);
            }
            if *epoch < i16::MAX - 1 {
                *epoch += 1;
                return Ok(ProducerIdAndEpoch { producer_id: c.producer_id, producer_epoch: *epoch });
            }
        }
        let id = 1000 + producers.len() as i64;
        producers.insert(id, 0);
        Ok(ProducerIdAndEpoch { producer_id: id, producer_epoch: 0 })
    }

    fn authorize(&self, resource_type: i8, name: &str, operation: i8) -> bool {
        self.acls.borrow().as_ref().is_none_or(|a| a.allows(resource_type, name, operation))
    }
    fn authorize_any(&self, resource_type: i8, operation: i8) -> bool {
        self.authorize(resource_type, "*", operation)
    }
    fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, (ErrorCode, String)> {
        let acls = self.acl_admin(acl::DESCRIBE)?;
        Ok(acls.bindings.iter().filter(|b| acl_matches(filter, b)).cloned().collect())
    }
    fn create_acls(&self, bindings: &[AclBinding]) -> Vec<Result<(), (ErrorCode, String)>> {
        match self.acl_admin(acl::ALTER) {
            Ok(mut acls) => bindings
                .iter()
                .map(|b| {
                    if !acls.bindings.contains(b) {
                        acls.bindings.push(b.clone());
                    }
                    Ok(())
                })
                .collect(),
            Err(e) => vec![Err(e); bindings.len()],
        }
    }
    fn delete_acls(&self, filters: &[AclFilter]) -> Vec<Result<Vec<AclBinding>, (ErrorCode, String)>> {
        match self.acl_admin(acl::ALTER) {
            Ok(mut acls) => filters
                .iter()
                .map(|f| {
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut acls.bindings).into_iter().partition(|b| acl_matches(f, b));
                    acls.bindings = kept;
                    Ok(gone)
                })
                .collect(),
            Err(e) => vec![Err(e); filters.len()],
        }
    }

    fn describe_scram(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<UserScramCredentials>, (ErrorCode, String)> {
        if !self.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) {
            return Err(cluster_denied());
        }
        let stored = self.scram.borrow();
        let infos = |user: &str| -> Vec<ScramCredentialInfo> {
            stored
                .iter()
                .filter(|((u, _), _)| u == user)
                .map(|((_, mechanism), c)| ScramCredentialInfo {
                    mechanism: *mechanism,
                    iterations: c.iterations,
                })
                .collect()
        };
        let Some(named) = users.filter(|u| !u.is_empty()) else {
            // Every user with a credential, by name (the map's order).
            let mut all: Vec<&String> = stored.keys().map(|(u, _)| u).collect();
            all.dedup();
            return Ok(all
                .into_iter()
                .map(|u| UserScramCredentials { user: u.clone(), result: Ok(infos(u)) })
                .collect());
        };
        let mut found = Vec::new();
        for (i, user) in named.iter().enumerate() {
            if named[..i].contains(user) {
                continue;
            }
            let result = if named[i + 1..].contains(user) {
                Err((
                    error::DUPLICATE_RESOURCE,
                    format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ),
                ))
            } else {
                match infos(user) {
                    none if none.is_empty() => Err((
                        error::RESOURCE_NOT_FOUND,
                        format!("Attempt to describe a user credential that does not exist: {user}"),
                    )),
                    some => Ok(some),
                }
            };
            found.push(UserScramCredentials { user: user.clone(), result });
        }
        Ok(found)
    }
    fn alter_scram(
        &self,
        deletions: &[ScramDeletion],
        upsertions: &[ScramUpsertion],
    ) -> Vec<(String, Result<(), (ErrorCode, String)>)> {
        let changes: Vec<ScramChange<'_>> = deletions
            .iter()
            .map(|d| (d.user.as_str(), d.mechanism, None))
            .chain(upsertions.iter().map(|u| (u.user.as_str(), u.mechanism, Some(u))))
            .collect();
        let mut users: Vec<&str> = Vec::new();
        for (user, _, _) in &changes {
            if !users.contains(user) {
                users.push(user);
            }
        }
        if !self.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER) {
            return users.into_iter().map(|u| (u.to_string(), Err(cluster_denied()))).collect();
        }
        let mut stored = self.scram.borrow_mut();
        users
            .into_iter()
            .map(|user| {
                let mine: Vec<ScramChange<'_>> = changes.iter().filter(|c| c.0 == user).copied().collect();
                if let Some(problem) = scram_problem(user, &mine, &stored) {
                    return (user.to_string(), Err(problem));
                }
                for (_, mechanism, upsertion) in mine {
                    let key = (user.to_string(), mechanism);
                    match upsertion {
                        Some(u) => stored.insert(key, u.clone()),
                        None => stored.remove(&key),
                    };
                }
                (user.to_string(), Ok(()))
            })
            .collect()
    }

    fn describe_quotas(
        &self,
        components: &[crate::quotas::FilterPart],
        strict: bool,
    ) -> Result<Vec<crate::quotas::Entry>, (ErrorCode, String)> {
        if !self.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE_CONFIGS) {
            return Err((error::CLUSTER_AUTHORIZATION_FAILED, String::new()));
        }
        crate::quotas::describe(&self.quotas.borrow(), components, strict)
    }

    fn alter_quotas(
        &self,
        alterations: &[crate::quotas::Alteration],
        validate_only: bool,
    ) -> Vec<Result<(), (ErrorCode, String)>> {
        let allowed = self.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER_CONFIGS);
        let mut quotas = self.quotas.borrow_mut();
        alterations
            .iter()
            .map(|a| {
                if !allowed {
                    return Err((error::CLUSTER_AUTHORIZATION_FAILED, String::new()));
                }
                crate::quotas::alter(&mut quotas, a, validate_only).map(drop)
            })
            .collect()
    }

    fn throttle_ms(&self) -> i32 {
        self.throttle_ms.get()
    }

    // The stub runs no transaction coordinator (the host's is tested end to end): every
    // transactional call answers COORDINATOR_NOT_AVAILABLE, which clients retry.
    fn init_transactional(
        &self,
        _transactional_id: &str,
        _timeout_ms: i32,
        _current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        Err(error::COORDINATOR_NOT_AVAILABLE)
    }
    fn add_partitions_to_txn(
        &self,
        _transactional_id: &str,
        _producer: ProducerIdAndEpoch,
        partitions: &[TopicPartition],
    ) -> Vec<ErrorCode> {
        vec![error::COORDINATOR_NOT_AVAILABLE; partitions.len()]
    }
    fn add_offsets_to_txn(
        &self,
        _transactional_id: &str,
        _producer: ProducerIdAndEpoch,
        _group_id: &str,
    ) -> ErrorCode {
        error::COORDINATOR_NOT_AVAILABLE
    }
    fn txn_commit_offsets(
        &self,
        _transactional_id: &str,
        _producer: ProducerIdAndEpoch,
        _group_id: &str,
        _generation_id: i32,
        _member_id: &str,
        _group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode> {
        vec![error::COORDINATOR_NOT_AVAILABLE; offsets.len()]
    }
    fn end_txn(
        &self,
        _transactional_id: &str,
        _producer: ProducerIdAndEpoch,
        _commit: bool,
        _bump_epoch: bool,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        Err(error::COORDINATOR_NOT_AVAILABLE)
    }
    fn pending_txn_offsets(&self, _group_id: &str, partitions: &[TopicPartition]) -> Vec<bool> {
        vec![false; partitions.len()]
    }
    fn describe_transactions(&self, transactional_ids: &[String]) -> Vec<TxnDescription> {
        transactional_ids
            .iter()
            .map(|id| TxnDescription {
                transactional_id: id.clone(),
                error: error::TRANSACTIONAL_ID_NOT_FOUND,
                state: String::new(),
                timeout_ms: 0,
                start_ms: -1,
                producer_id: -1,
                producer_epoch: -1,
                partitions: Vec::new(),
            })
            .collect()
    }
    fn list_transactions(
        &self,
        _states: &[String],
        _producer_ids: &[i64],
        _min_duration_ms: i64,
    ) -> Vec<TxnListing> {
        Vec::new()
    }
}

/// Run a handler natively on one request frame (without its size prefix).
pub fn run<H: crate::Handler>(svc: &StubServices, frame: Bytes, final_: bool) -> crate::Outcome<StubBuffer> {
    let buf = StubBuffer(frame.clone());
    let req = crate::Request { bytes: frame, frame: &buf };
    H::handle(svc, &req, final_)
}

/// Concatenate a response's segments, as the host's vectored write would put them on the wire.
pub fn flatten(segments: &[crate::Segment<StubBuffer>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        match s {
            crate::Segment::Bytes(b) => out.extend_from_slice(b),
            crate::Segment::Buffer(b) => out.extend_from_slice(&b.0),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, operation: i8) -> AclBinding {
        AclBinding {
            resource_type: acl::TOPIC,
            resource_name: name.into(),
            pattern_type: acl::LITERAL,
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission_type: acl::ALLOW,
        }
    }

    fn any_filter() -> AclFilter {
        AclFilter {
            resource_type: acl::ANY,
            resource_name: None,
            pattern_type: acl::ANY,
            principal: None,
            host: None,
            operation: acl::ANY,
            permission_type: acl::ANY,
        }
    }

    #[test]
    fn without_an_authorizer_everything_is_allowed_and_acls_are_disabled() {
        let svc = StubServices::new();
        assert!(svc.authorize(acl::TOPIC, "t", acl::WRITE));
        assert!(svc.authorize_any(acl::TOPIC, acl::WRITE));
        assert_eq!(svc.describe_acls(&any_filter()).unwrap_err().0, error::SECURITY_DISABLED);
        let created = svc.create_acls(&[binding("t", acl::READ)]);
        assert_eq!(created[0].as_ref().unwrap_err().0, error::SECURITY_DISABLED);
        let deleted = svc.delete_acls(&[any_filter(), any_filter()]);
        assert_eq!(deleted.len(), 2);
        assert!(deleted.iter().all(|r| r.as_ref().unwrap_err().0 == error::SECURITY_DISABLED));
    }

    #[test]
    fn denied_triples_are_refused_and_hide_topics() {
        let svc = StubServices::new();
        svc.create_topic("open", 1, &[], false).unwrap();
        svc.create_topic("secret", 1, &[], false).unwrap();
        svc.deny(acl::TOPIC, "secret", acl::DESCRIBE);
        svc.deny(acl::GROUP, "*", acl::ALL);
        assert!(!svc.authorize(acl::TOPIC, "secret", acl::DESCRIBE));
        assert!(svc.authorize(acl::TOPIC, "secret", acl::READ));
        assert!(svc.authorize(acl::TOPIC, "open", acl::DESCRIBE));
        assert!(!svc.authorize(acl::GROUP, "g", acl::READ));
        assert!(!svc.authorize_any(acl::GROUP, acl::READ));
        let names: Vec<String> = svc.list_topics().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["open"]);
        assert!(svc.describe_topic("secret").is_none());
        let id = svc.topics.borrow()["secret"].id;
        assert!(svc.topic_by_id(id).is_none());
    }

    #[test]
    fn acls_are_stored_listed_and_deleted() {
        let svc = StubServices::new();
        svc.enable_acls();
        let created =
            svc.create_acls(&[binding("a", acl::READ), binding("b", acl::WRITE), binding("a", acl::READ)]);
        assert!(created.iter().all(Result::is_ok));
        assert_eq!(svc.describe_acls(&any_filter()).unwrap().len(), 2);
        let only_a = AclFilter { resource_name: Some("a".into()), ..any_filter() };
        assert_eq!(svc.describe_acls(&only_a).unwrap(), [binding("a", acl::READ)]);
        let deleted = svc.delete_acls(&[only_a.clone(), only_a]);
        assert_eq!(deleted[0].as_ref().unwrap(), &[binding("a", acl::READ)]);
        assert!(deleted[1].as_ref().unwrap().is_empty());
        assert_eq!(svc.describe_acls(&any_filter()).unwrap(), [binding("b", acl::WRITE)]);
        // The ACL calls need DESCRIBE (describe) and ALTER (create, delete) on the cluster.
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        assert!(svc.describe_acls(&any_filter()).is_ok());
        let refused = svc.create_acls(&[binding("c", acl::READ)]);
        assert_eq!(refused[0].as_ref().unwrap_err().0, error::CLUSTER_AUTHORIZATION_FAILED);
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE);
        assert_eq!(svc.describe_acls(&any_filter()).unwrap_err().0, error::CLUSTER_AUTHORIZATION_FAILED);
    }

    fn upsertion(user: &str, mechanism: i8, iterations: i32) -> ScramUpsertion {
        ScramUpsertion {
            user: user.into(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: b"salted".to_vec(),
        }
    }

    fn deletion(user: &str, mechanism: i8) -> ScramDeletion {
        ScramDeletion { user: user.into(), mechanism }
    }

    /// One user's result of `alter_scram`.
    type Altered = (String, Result<(), (ErrorCode, String)>);

    fn codes(results: &[Altered]) -> Vec<(&str, ErrorCode)> {
        results.iter().map(|(u, r)| (u.as_str(), r.as_ref().err().map_or(error::NONE, |e| e.0))).collect()
    }

    fn info(mechanism: i8, iterations: i32) -> ScramCredentialInfo {
        ScramCredentialInfo { mechanism, iterations }
    }

    #[test]
    fn scram_credentials_are_stored_described_and_deleted() {
        let svc = StubServices::new();
        assert_eq!(svc.describe_scram(None).unwrap(), []);
        let altered = svc.alter_scram(
            &[],
            &[upsertion("bob", scram::SCRAM_SHA_512, 8192), upsertion("alice", scram::SCRAM_SHA_512, 4096)],
        );
        assert_eq!(codes(&altered), [("bob", error::NONE), ("alice", error::NONE)]);
        // A user's second mechanism comes in a request of its own (one change per user each).
        let altered = svc.alter_scram(&[], &[upsertion("alice", scram::SCRAM_SHA_256, 16384)]);
        assert_eq!(codes(&altered), [("alice", error::NONE)]);
        let all = svc.describe_scram(None).unwrap();
        let expected = [
            UserScramCredentials {
                user: "alice".into(),
                result: Ok(vec![info(scram::SCRAM_SHA_256, 16384), info(scram::SCRAM_SHA_512, 4096)]),
            },
            UserScramCredentials { user: "bob".into(), result: Ok(vec![info(scram::SCRAM_SHA_512, 8192)]) },
        ];
        assert_eq!(all, expected);
        assert_eq!(svc.describe_scram(Some(&[])).unwrap(), expected);
        // Named users, in request order; a missing one and a repeated one get their own errors.
        let named: Vec<String> = ["bob", "carol", "alice", "carol", "bob"].map(String::from).to_vec();
        let got = svc.describe_scram(Some(&named)).unwrap();
        let users: Vec<&str> = got.iter().map(|u| u.user.as_str()).collect();
        assert_eq!(users, ["bob", "carol", "alice"]);
        assert_eq!(got[0].result.as_ref().unwrap_err().0, error::DUPLICATE_RESOURCE);
        assert_eq!(got[1].result.as_ref().unwrap_err().0, error::DUPLICATE_RESOURCE);
        assert_eq!(got[2], expected[0]);
        let got = svc.describe_scram(Some(&["nobody".to_string()])).unwrap();
        let (code, why) = got[0].result.clone().unwrap_err();
        assert_eq!(code, error::RESOURCE_NOT_FOUND);
        assert_eq!(why, "Attempt to describe a user credential that does not exist: nobody");
        // An upsertion replaces; a deletion removes.
        let altered = svc.alter_scram(&[deletion("alice", scram::SCRAM_SHA_512)], &[]);
        assert_eq!(codes(&altered), [("alice", error::NONE)]);
        let altered = svc.alter_scram(&[], &[upsertion("alice", scram::SCRAM_SHA_256, 5000)]);
        assert_eq!(codes(&altered), [("alice", error::NONE)]);
        let got = svc.describe_scram(Some(&["alice".to_string()])).unwrap();
        assert_eq!(got[0].result, Ok(vec![info(scram::SCRAM_SHA_256, 5000)]));
        assert_eq!(svc.scram.borrow()[&("alice".to_string(), scram::SCRAM_SHA_256)].salt, b"salt");
    }

    #[test]
    fn scram_alterations_are_checked_per_user() {
        let svc = StubServices::new();
        svc.alter_scram(&[], &[upsertion("kept", scram::SCRAM_SHA_256, 4096)]);
        let altered = svc.alter_scram(
            &[
                deletion("gone", scram::SCRAM_SHA_256),
                deletion("dup", scram::SCRAM_SHA_256),
                deletion("kept", scram::SCRAM_SHA_256),
            ],
            &[
                upsertion("", scram::SCRAM_SHA_256, 4096),
                upsertion("unknown", scram::UNKNOWN, 4096),
                upsertion("dup", scram::SCRAM_SHA_256, 4096),
                upsertion("few", scram::SCRAM_SHA_256, 4095),
                upsertion("many", scram::SCRAM_SHA_512, 16385),
                // A user named twice is refused whole, as Kafka's controller does, even with
                // another mechanism; the first change's own error wins.
                upsertion("mixed", scram::SCRAM_SHA_256, 4096),
                upsertion("mixed", scram::SCRAM_SHA_512, 3),
                upsertion("bad-first", scram::SCRAM_SHA_256, 3),
                upsertion("bad-first", scram::SCRAM_SHA_512, 4096),
                upsertion("ok", scram::SCRAM_SHA_512, 4096),
            ],
        );
        assert_eq!(
            codes(&altered),
            [
                ("gone", error::RESOURCE_NOT_FOUND),
                // Its first change deletes what does not exist: that error wins.
                ("dup", error::RESOURCE_NOT_FOUND),
                ("kept", error::NONE),
                ("", error::UNACCEPTABLE_CREDENTIAL),
                ("unknown", error::UNSUPPORTED_SASL_MECHANISM),
                ("few", error::UNACCEPTABLE_CREDENTIAL),
                ("many", error::UNACCEPTABLE_CREDENTIAL),
                ("mixed", error::DUPLICATE_RESOURCE),
                ("bad-first", error::UNACCEPTABLE_CREDENTIAL),
                ("ok", error::NONE),
            ]
        );
        assert_eq!(altered[5].1, Err((error::UNACCEPTABLE_CREDENTIAL, "Too few iterations".into())));
        assert_eq!(altered[6].1, Err((error::UNACCEPTABLE_CREDENTIAL, "Too many iterations".into())));
        let stored: Vec<(String, i8)> = svc.scram.borrow().keys().cloned().collect();
        assert_eq!(stored, [("ok".to_string(), scram::SCRAM_SHA_512)]);
    }

    #[test]
    fn scram_calls_need_the_cluster_permissions() {
        let svc = StubServices::new();
        svc.alter_scram(&[], &[upsertion("alice", scram::SCRAM_SHA_256, 4096)]);
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        assert!(svc.describe_scram(None).is_ok());
        let altered =
            svc.alter_scram(&[deletion("alice", scram::SCRAM_SHA_256)], &[upsertion("bob", 1, 4096)]);
        assert_eq!(
            codes(&altered),
            [("alice", error::CLUSTER_AUTHORIZATION_FAILED), ("bob", error::CLUSTER_AUTHORIZATION_FAILED)]
        );
        assert_eq!(svc.scram.borrow().len(), 1);
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE);
        assert_eq!(svc.describe_scram(None).unwrap_err().0, error::CLUSTER_AUTHORIZATION_FAILED);
    }
}
