//! Group coordination as a host service: consumer groups (Kafka's classic protocol), committed
//! offsets, and their durability through the storage port. The translator only decodes, calls
//! and encodes; what a group is and when a rebalance ends is decided here.
//!
//! - `group`: the state machine of one group (pure, time passed in), from
//!   `guise_guest_sdk::groups`, which the SDK's native stub runs too.
//! - `offsets`: a group's committed offsets.
//! - `records`: what is written to each tenant's internal `__consumer_offsets` topic, and the
//!   replay that rebuilds groups and offsets from it at start (or when a tenant is first used).
//! - `consumer` (also from the SDK): the bits of Kafka's consumer protocol needed for
//!   OffsetDelete and the lag view.
//!
//! Locking: a map of tenants, per tenant a map of groups, and per group one async mutex over its
//! state machine and offsets. Map locks are only held to look a group up; a group's lock is held
//! for a whole operation, including its (awaited) appends to the offsets topic, so one group's
//! records land in the order it changed and its operations are serialized; other groups are not
//! affected, and no thread waits on storage. The change counters (`watches`) are locked last.
//!
//! A join or sync that must wait answers [`Step::Pending`] with the group's change counter as
//! read under the group's lock after the decision; every change of a group bumps the counter
//! (`notify`), which wakes the parked request so it is re-run.

/// The group state machine and the consumer-protocol reader live in the SDK (one copy, shared
/// with its native stub).
pub use guise_guest_sdk::groups::{consumer, machine as group};
pub mod offsets;
pub mod records;

pub use records::OFFSETS_TOPIC;

pub use group::{
    GroupConfig, GroupDescription, GroupState, JoinRequest, JoinResult, JoinedMember, MemberDescription,
    Protocol, SyncRequest, SyncResult,
};

use crate::storage::{Log, StorageError, TopicName, wait};
use group::{Group, JoinStep, SyncStep};
use offsets::{Committed, Offsets};
use parking_lot::Mutex;
use records::{Record, group_record, offset_record};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use codes::*;
/// The Kafka error codes (the one table, in the SDK) the coordinator answers with.
pub use guise_guest_sdk::error as codes;

/// How long an Empty group without committed offsets is kept before it is forgotten (Kafka
/// removes such groups at its next offsets-retention check, every 10 minutes by default).
const EMPTY_GROUP_RETENTION: Duration = Duration::from_secs(600);

#[derive(thiserror::Error, Debug)]
pub enum CoordError {
    #[error("reading the offsets topic {topic}: {source}")]
    Replay { topic: String, source: StorageError },
}

/// The coordinator's settings.
#[derive(Clone, Debug)]
pub struct CoordConfig {
    /// The namespace of the internal `__consumer_offsets` topics (one per tenant).
    pub namespace: String,
    pub group: GroupConfig,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: usize,
}

impl Default for CoordConfig {
    fn default() -> Self {
        CoordConfig {
            namespace: "default".into(),
            group: GroupConfig::default(),
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// The outcome of a join or sync: done, or wait for the group to change (its change counter
/// was `seq` when the decision was made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<T> {
    Done(T),
    Pending { seq: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveResult {
    pub error: i16,
    pub members: Vec<i16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: i16,
}

/// One group, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct GroupOverview {
    pub tenant: String,
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberOverview>,
    pub offsets: Vec<PartitionLag>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberOverview {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions assigned to the member (consumer groups; None when unreadable).
    pub assignment: Option<Vec<TopicPartitions>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    pub metadata: Option<String>,
    /// The partition's high watermark (None: the topic or partition is gone).
    pub log_end_offset: Option<i64>,
    /// log end − committed.
    pub lag: Option<i64>,
}

/// A group and its committed offsets, under one lock.
struct Slot {
    group: Group,
    offsets: Offsets,
    /// Whether the log holds metadata of this group (so that forgetting it needs a tombstone).
    persisted: bool,
}

#[derive(Default)]
struct Tenant {
    loaded: AtomicBool,
    load: AsyncMutex<()>,
    groups: Mutex<BTreeMap<String, Arc<AsyncMutex<Slot>>>>,
}

/// The group coordinator of this host (every tenant's groups; a group is (tenant, group id)).
pub struct Coordinator {
    config: CoordConfig,
    /// None: nothing is persisted and topics are not checked (tests of other parts).
    log: Option<Arc<dyn Log>>,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    /// A change counter per group: bumped on every change a parked join or sync may wait for.
    watches: Mutex<HashMap<(String, String), watch::Sender<i64>>>,
}

/// An in-memory coordinator with the default settings, without a log: offsets are not
/// persisted and commits are not checked against topics. For tests of other parts.
impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            config: CoordConfig::default(),
            log: None,
            tenants: Mutex::default(),
            watches: Mutex::default(),
        }
    }
}

impl Coordinator {
    /// Register the coordinator's internal topic (`__consumer_offsets`, one per tenant in
    /// `namespace`) with the tenant room.
    pub fn register_internal(internal: &mut crate::tenant::InternalTopics, namespace: &str) {
        internal.register(records::OFFSETS_TOPIC, Some(namespace), "the group coordinator");
    }

    /// A coordinator over `log`, with the groups and offsets of `tenants` replayed now (other
    /// tenants are replayed when first used).
    pub fn open(log: Arc<dyn Log>, config: CoordConfig, tenants: &[&str]) -> Result<Coordinator, CoordError> {
        let coord =
            Coordinator { config, log: Some(log), tenants: Mutex::default(), watches: Mutex::default() };
        for tenant in tenants {
            // At start, before anything is served: the replay may wait in place.
            wait(coord.tenant(tenant))?;
        }
        Ok(coord)
    }

    pub fn config(&self) -> &CoordConfig {
        &self.config
    }

    /// A watch of the group's change counter (it moves whenever the group changes).
    pub fn subscribe(&self, tenant: &str, group: &str) -> watch::Receiver<i64> {
        self.watches
            .lock()
            .entry((tenant.to_string(), group.to_string()))
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The group's change counter now (what a guest call saw).
    pub fn group_seq(&self, tenant: &str, group: &str) -> i64 {
        self.watches.lock().get(&(tenant.to_string(), group.to_string())).map_or(0, |w| *w.borrow())
    }

    /// Wake everything parked on the group.
    pub fn notify(&self, tenant: &str, group: &str) {
        let mut watches = self.watches.lock();
        let w = watches.entry((tenant.to_string(), group.to_string())).or_insert_with(|| watch::channel(0).0);
        w.send_modify(|seq| *seq += 1);
    }

    fn offsets_topic(&self, tenant: &str) -> TopicName {
        TopicName::new(tenant, self.config.namespace.clone(), records::OFFSETS_TOPIC)
    }

    /// The tenant's state, replayed from its offsets topic on first use.
    async fn tenant(&self, name: &str) -> Result<Arc<Tenant>, CoordError> {
        let tenant = self.tenants.lock().entry(name.to_string()).or_default().clone();
        if tenant.loaded.load(Ordering::Acquire) {
            return Ok(tenant);
        }
        self.load(name, &tenant).await?;
        Ok(tenant)
    }

    /// Replay the tenant's offsets topic into `tenant`, once.
    async fn load(&self, name: &str, tenant: &Tenant) -> Result<(), CoordError> {
        let _loading = tenant.load.lock().await;
        if tenant.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(log) = &self.log {
            let topic = self.offsets_topic(name);
            let started = Instant::now();
            let replayed = records::replay(&**log, &topic)
                .await
                .map_err(|source| CoordError::Replay { topic: topic.to_string(), source })?;
            compact_existing(&**log, &topic).await;
            let now = Instant::now();
            let mut groups = tenant.groups.lock();
            let mut names: Vec<&String> = replayed.groups.keys().chain(replayed.offsets.keys()).collect();
            names.sort();
            names.dedup();
            for id in names {
                let group = match replayed.groups.get(id) {
                    Some(value) => Group::restore(id, value, &self.config.group, now),
                    None => Group::new(id, &self.config.group, now),
                };
                let offsets = Offsets::from_map(replayed.offsets.get(id).cloned().unwrap_or_default());
                let persisted = replayed.groups.contains_key(id);
                groups.insert(id.clone(), Arc::new(AsyncMutex::new(Slot { group, offsets, persisted })));
            }
            if replayed.records > 0 {
                tracing::info!(tenant = name, groups = groups.len(), records = replayed.records, elapsed = ?started.elapsed(), "replayed consumer groups and committed offsets");
            }
        }
        tenant.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// The group, locked (created when missing if `create`). None: no such group. The caller
    /// ends with [`settle`](Self::settle), which persists and notifies what it changed.
    async fn lock_group(
        &self,
        tenant: &str,
        group: &str,
        create: bool,
        now: Instant,
    ) -> Result<Option<OwnedMutexGuard<Slot>>, i16> {
        let t = self.tenant(tenant).await.map_err(|e| {
            tracing::error!(tenant, "group coordinator unavailable: {e}");
            COORDINATOR_NOT_AVAILABLE
        })?;
        for _ in 0..2 {
            let slot = {
                let mut groups = t.groups.lock();
                match groups.get(group) {
                    Some(s) => s.clone(),
                    None if create => {
                        let slot = Slot {
                            group: Group::new(group, &self.config.group, now),
                            offsets: Offsets::default(),
                            persisted: false,
                        };
                        groups
                            .entry(group.to_string())
                            .or_insert_with(|| Arc::new(AsyncMutex::new(slot)))
                            .clone()
                    }
                    None => return Ok(None),
                }
            };
            let slot = slot.lock_owned().await;
            if slot.group.state() == GroupState::Dead {
                // Deleted meanwhile (and removed from the map): look it up again.
                continue;
            }
            return Ok(Some(slot));
        }
        Err(COORDINATOR_NOT_AVAILABLE)
    }

    /// Persist the group's metadata if it asks for it, and wake its watchers if it changed.
    async fn settle(&self, tenant: &str, slot: &mut Slot) {
        if slot.group.take_persist() {
            let value = slot.group.to_value();
            match self.append(tenant, vec![group_record(&slot.group.id, Some(&value))]).await {
                Ok(()) => slot.persisted = true,
                Err(e) => {
                    tracing::warn!(tenant, group = %slot.group.id, "persisting group metadata failed: {e}")
                }
            }
        }
        if slot.group.take_changed() {
            self.notify(tenant, &slot.group.id);
        }
    }

    /// Append records to the tenant's offsets topic (created on first use, compacted where the
    /// log compacts).
    async fn append(&self, tenant: &str, records: Vec<Record>) -> Result<(), StorageError> {
        let Some(log) = &self.log else { return Ok(()) };
        if records.is_empty() {
            return Ok(());
        }
        let configs = || records::offsets_topic_configs(log.compacts());
        crate::storage::kv::append(&**log, &self.offsets_topic(tenant), configs, &records).await
    }

    /// Whether `topic` has `partition` (always, without a log).
    fn partition_exists(&self, tenant: &str, topic: &str, partition: i32) -> bool {
        let Some(log) = &self.log else { return true };
        let name = TopicName::new(tenant, self.config.namespace.clone(), topic);
        log.topic(&name).is_some_and(|m| partition >= 0 && partition < m.partitions)
    }

    /// JoinGroup.
    pub async fn join(&self, tenant: &str, req: &JoinRequest, now: Instant) -> Step<JoinResult> {
        if let Some(error) = Group::check_join(req, &self.config.group) {
            return Step::Done(JoinResult::error(&req.member_id, error));
        }
        // A member id for a group that does not exist is unknown; only new members create it.
        let create = req.member_id.is_empty();
        let mut slot = match self.lock_group(tenant, &req.group_id, create, now).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return Step::Done(JoinResult::error(&req.member_id, UNKNOWN_MEMBER_ID)),
            Err(code) => return Step::Done(JoinResult::error(&req.member_id, code)),
        };
        let step = match slot.group.join(req, &self.config.group, now) {
            JoinStep::Done(result) => Step::Done(result),
            JoinStep::Pending => {
                self.settle(tenant, &mut slot).await;
                Step::Pending { seq: self.group_seq(tenant, &req.group_id) }
            }
        };
        self.settle(tenant, &mut slot).await;
        step
    }

    /// SyncGroup. The leader's sync persists the group with its assignments before the group
    /// becomes Stable.
    pub async fn sync(&self, tenant: &str, req: &SyncRequest, now: Instant) -> Step<SyncResult> {
        if req.group_id.is_empty() {
            return Step::Done(SyncResult::error(INVALID_GROUP_ID));
        }
        let mut slot = match self.lock_group(tenant, &req.group_id, false, now).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return Step::Done(SyncResult::error(UNKNOWN_MEMBER_ID)),
            Err(code) => return Step::Done(SyncResult::error(code)),
        };
        let step = match slot.group.sync(req, now) {
            SyncStep::Done(result) => Step::Done(result),
            SyncStep::Pending => {
                self.settle(tenant, &mut slot).await;
                Step::Pending { seq: self.group_seq(tenant, &req.group_id) }
            }
            SyncStep::Store(assignments) => {
                let value = slot.group.value_with_assignments(&assignments);
                let stored =
                    self.append(tenant, vec![group_record(&req.group_id, Some(&value))]).await.map_err(|e| {
                        tracing::warn!(tenant, group = %req.group_id, "storing the group's assignment failed: {e}");
                        store_error_code(&e, false)
                    });
                if stored.is_ok() {
                    slot.persisted = true;
                }
                Step::Done(slot.group.finish_leader_sync(req, assignments, stored, now))
            }
        };
        self.settle(tenant, &mut slot).await;
        step
    }

    /// Heartbeat.
    pub async fn heartbeat(
        &self,
        tenant: &str,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        if group.is_empty() {
            return INVALID_GROUP_ID;
        }
        match self.lock_group(tenant, group, false, now).await {
            Ok(Some(mut slot)) => {
                let code = slot.group.heartbeat(generation, member_id, instance_id, now);
                self.settle(tenant, &mut slot).await;
                code
            }
            Ok(None) => UNKNOWN_MEMBER_ID,
            Err(code) => code,
        }
    }

    /// LeaveGroup: (member id, instance id) per leaving member.
    pub async fn leave(
        &self,
        tenant: &str,
        group: &str,
        leaving: &[(String, Option<String>)],
        now: Instant,
    ) -> LeaveResult {
        if group.is_empty() {
            return LeaveResult { error: INVALID_GROUP_ID, members: vec![INVALID_GROUP_ID; leaving.len()] };
        }
        let r = match self.lock_group(tenant, group, false, now).await {
            Ok(Some(mut slot)) => {
                let r = slot.group.leave(leaving, now);
                self.settle(tenant, &mut slot).await;
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(code) => Err(code),
        };
        match r {
            Ok(Some(Ok(members))) => LeaveResult { error: NONE, members },
            Ok(Some(Err(code))) | Err(code) => {
                LeaveResult { error: code, members: vec![code; leaving.len()] }
            }
            Ok(None) => LeaveResult { error: NONE, members: vec![UNKNOWN_MEMBER_ID; leaving.len()] },
        }
    }

    /// DescribeGroups (an unknown group is Dead, without an error, as in Kafka).
    pub async fn describe(&self, tenant: &str, group: &str) -> GroupDescription {
        match self.lock_group(tenant, group, false, Instant::now()).await {
            Ok(Some(mut slot)) => {
                let d = slot.group.describe();
                self.settle(tenant, &mut slot).await;
                d
            }
            Ok(None) => GroupDescription::dead(group, NONE),
            Err(code) => GroupDescription::dead(group, code),
        }
    }

    /// ListGroups: the tenant's groups whose state is one of `states` (Kafka's names, any case;
    /// empty: all).
    pub async fn list(&self, tenant: &str, states: &[String]) -> Result<Vec<GroupListing>, i16> {
        let t = self.tenant(tenant).await.map_err(|e| {
            tracing::error!(tenant, "group coordinator unavailable: {e}");
            COORDINATOR_NOT_AVAILABLE
        })?;
        let slots: Vec<Arc<AsyncMutex<Slot>>> = t.groups.lock().values().cloned().collect();
        let mut out = Vec::new();
        for slot in slots {
            let slot = slot.lock().await;
            let state = slot.group.state().as_str();
            let wanted = states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state));
            if wanted && slot.group.state() != GroupState::Dead {
                out.push(GroupListing {
                    group_id: slot.group.id.clone(),
                    protocol_type: slot.group.protocol_type().unwrap_or_default().to_string(),
                    state: state.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// DeleteGroups for one group: only an Empty group; its offsets go with it.
    pub async fn delete(&self, tenant: &str, group: &str, now: Instant) -> i16 {
        let t = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(tenant, "group coordinator unavailable: {e}");
                return COORDINATOR_NOT_AVAILABLE;
            }
        };
        let r = match self.lock_group(tenant, group, false, now).await {
            Ok(Some(mut slot)) => {
                let r = match slot.group.check_delete() {
                    Ok(()) => self.forget(tenant, &t, &mut slot, now).await,
                    Err(code) => Err(code),
                };
                self.settle(tenant, &mut slot).await;
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(code) => Err(code),
        };
        match r {
            Ok(Some(Ok(()))) => {
                tracing::info!(tenant, group, "group deleted");
                NONE
            }
            Ok(Some(Err(code))) | Err(code) => code,
            Ok(None) => GROUP_ID_NOT_FOUND,
        }
    }

    /// Write tombstones for the group and its offsets, then remove it (it becomes Dead).
    async fn forget(&self, tenant: &str, t: &Tenant, slot: &mut Slot, now: Instant) -> Result<(), i16> {
        let id = slot.group.id.clone();
        let mut tombstones: Vec<Record> =
            slot.offsets.iter().map(|(topic, p, _)| offset_record(&id, topic, p, None)).collect();
        if slot.persisted {
            tombstones.push(group_record(&id, None));
        }
        self.append(tenant, tombstones).await.map_err(|e| {
            tracing::warn!(tenant, group = %id, "deleting the group failed: {e}");
            store_error_code(&e, false)
        })?;
        slot.offsets.clear();
        slot.persisted = false;
        slot.group.kill(now);
        t.groups.lock().remove(&id);
        Ok(())
    }

    /// OffsetCommit: one error code per offset, in order. Generation -1 with an empty member id
    /// commits outside the group protocol (only while the group has no members).
    #[allow(clippy::too_many_arguments)] // the WIT call's arguments, plus tenant and time
    pub async fn commit_offsets(
        &self,
        tenant: &str,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: &[OffsetCommit],
        now: Instant,
    ) -> Vec<i16> {
        let n = offsets.len();
        // Kafka creates the group for a commit outside the group protocol; a commit with a
        // generation into a group it does not know comes from an older generation.
        let mut slot = match self.lock_group(tenant, group, generation < 0, now).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return vec![ILLEGAL_GENERATION; n],
            Err(code) => return vec![code; n],
        };
        let codes = self
            .commit_locked(tenant, group, &mut slot, generation, member_id, instance_id, offsets, now)
            .await;
        self.settle(tenant, &mut slot).await;
        codes
    }

    /// OffsetCommit under the group's lock.
    #[allow(clippy::too_many_arguments)] // commit_offsets' arguments, plus the locked group
    async fn commit_locked(
        &self,
        tenant: &str,
        group: &str,
        slot: &mut Slot,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: &[OffsetCommit],
        now: Instant,
    ) -> Vec<i16> {
        let n = offsets.len();
        if let Err(code) = slot.group.check_commit(generation, member_id, instance_id, now) {
            return vec![code; n];
        }
        self.store_offsets(tenant, group, slot, offsets).await
    }

    /// TxnOffsetCommit's group checks (KIP-447), before the offsets join the transaction: with
    /// a generation, a member id or an instance id, those of a current member, as OffsetCommit
    /// checks them; without (clients before KIP-447), none.
    pub async fn check_txn_commit(
        &self,
        tenant: &str,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return NONE;
        }
        let now = Instant::now();
        let mut slot = match self.lock_group(tenant, group, false, now).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return ILLEGAL_GENERATION,
            Err(code) => return code,
        };
        let code = match slot.group.check_commit(generation, member_id, instance_id, now) {
            Ok(()) => NONE,
            Err(code) => code,
        };
        self.settle(tenant, &mut slot).await;
        code
    }

    /// The offsets of a committed transaction, stored as committed offsets of `group` (created
    /// when missing): no group checks, they were made when the offsets joined the transaction.
    /// Each comes with when it joined it: a partition whose offset the group committed after
    /// that keeps it (Kafka keeps the later record of `__consumer_offsets`). Applying the same
    /// offsets again therefore changes nothing, so a recovery may repeat it.
    pub async fn apply_txn_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: &[(OffsetCommit, Option<i64>)],
    ) -> Result<(), i16> {
        let mut slot = match self.lock_group(tenant, group, true, Instant::now()).await? {
            Some(slot) => slot,
            None => return Err(COORDINATOR_NOT_AVAILABLE),
        };
        let offsets: Vec<OffsetCommit> = offsets
            .iter()
            .filter(|(o, joined)| {
                let later = |c: &Committed| joined.is_some_and(|at| c.commit_timestamp > at);
                !slot.offsets.get(&o.topic, o.partition).is_some_and(later)
            })
            .map(|(o, _)| o.clone())
            .collect();
        let codes = self.store_offsets(tenant, group, &mut slot, &offsets).await;
        self.settle(tenant, &mut slot).await;
        match codes.into_iter().find(|c| *c != NONE && *c != UNKNOWN_TOPIC_OR_PARTITION) {
            Some(code) => Err(code),
            None => Ok(()),
        }
    }

    /// Store `offsets` as the group's committed offsets (the checks are the caller's).
    async fn store_offsets(
        &self,
        tenant: &str,
        group: &str,
        slot: &mut Slot,
        offsets: &[OffsetCommit],
    ) -> Vec<i16> {
        let n = offsets.len();
        let mut codes = vec![NONE; n];
        let mut records = Vec::new();
        let mut stored = Vec::new();
        let timestamp = crate::storage::now_ms();
        for (i, o) in offsets.iter().enumerate() {
            if !self.partition_exists(tenant, &o.topic, o.partition) {
                codes[i] = UNKNOWN_TOPIC_OR_PARTITION;
            } else if o.metadata.as_ref().is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes) {
                codes[i] = OFFSET_METADATA_TOO_LARGE;
            } else {
                let c = Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp: timestamp,
                };
                records.push(offset_record(group, &o.topic, o.partition, Some(&c)));
                stored.push((i, c));
            }
        }
        match self.append(tenant, records).await {
            Ok(()) => {
                for (i, c) in stored {
                    slot.offsets.put(offsets[i].topic.clone(), offsets[i].partition, c);
                }
            }
            Err(e) => {
                tracing::warn!(tenant, group, "committing offsets failed: {e}");
                for (i, _) in stored {
                    codes[i] = store_error_code(&e, true);
                }
            }
        }
        codes
    }

    /// OffsetFetch: the committed offsets of `partitions` (offset -1 when none), or with None
    /// every partition the group has committed.
    pub async fn fetch_offsets(
        &self,
        tenant: &str,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, i16> {
        let found = |topic: &str, partition: i32, c: &Committed| CommittedOffset {
            topic: topic.to_string(),
            partition,
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            error: NONE,
        };
        let missing = |topic: &str, partition: i32| CommittedOffset {
            topic: topic.to_string(),
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error: NONE,
        };
        let r = match self.lock_group(tenant, group, false, Instant::now()).await? {
            Some(mut slot) => {
                let r: Vec<CommittedOffset> = match partitions {
                    Some(ps) => ps
                        .iter()
                        .map(|(t, p)| match slot.offsets.get(t, *p) {
                            Some(c) => found(t, *p, c),
                            None => missing(t, *p),
                        })
                        .collect(),
                    None => slot.offsets.iter().map(|(t, p, c)| found(t, p, c)).collect(),
                };
                self.settle(tenant, &mut slot).await;
                Some(r)
            }
            None => None,
        };
        Ok(r.unwrap_or_else(|| partitions.unwrap_or_default().iter().map(|(t, p)| missing(t, *p)).collect()))
    }

    /// OffsetDelete: one error code per partition, or a group-level error.
    pub async fn delete_offsets(
        &self,
        tenant: &str,
        group: &str,
        partitions: &[(String, i32)],
        now: Instant,
    ) -> Result<Vec<i16>, i16> {
        let Some(mut slot) = self.lock_group(tenant, group, false, now).await? else {
            return Err(GROUP_ID_NOT_FOUND);
        };
        let r = self.delete_offsets_locked(tenant, group, &mut slot, partitions).await;
        self.settle(tenant, &mut slot).await;
        r
    }

    /// OffsetDelete under the group's lock.
    async fn delete_offsets_locked(
        &self,
        tenant: &str,
        group: &str,
        slot: &mut Slot,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        let subscribed = slot.group.check_offset_delete(&topics)?;
        let mut codes = vec![NONE; partitions.len()];
        let mut eligible = Vec::new();
        for (i, (topic, partition)) in partitions.iter().enumerate() {
            if !self.partition_exists(tenant, topic, *partition) {
                codes[i] = UNKNOWN_TOPIC_OR_PARTITION;
            } else if subscribed[i] {
                codes[i] = GROUP_SUBSCRIBED_TO_TOPIC;
            } else if slot.offsets.contains(topic, *partition) {
                eligible.push(i);
            }
        }
        let tombstones =
            eligible.iter().map(|&i| offset_record(group, &partitions[i].0, partitions[i].1, None)).collect();
        match self.append(tenant, tombstones).await {
            Ok(()) => {
                for &i in &eligible {
                    slot.offsets.remove(&partitions[i].0, partitions[i].1);
                }
            }
            Err(e) => {
                tracing::warn!(tenant, group, "deleting offsets failed: {e}");
                for &i in &eligible {
                    codes[i] = store_error_code(&e, false);
                }
            }
        }
        Ok(codes)
    }

    /// The timer: expire sessions and pending members, complete join phases whose time is up,
    /// remove members that did not sync, and forget long-Empty groups without offsets. The
    /// server calls it every ~100 ms.
    pub async fn tick(&self, now: Instant) {
        let tenants: Vec<(String, Arc<Tenant>)> =
            self.tenants.lock().iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        let mut live = std::collections::HashSet::new();
        for (name, t) in tenants {
            let slots: Vec<Arc<AsyncMutex<Slot>>> = t.groups.lock().values().cloned().collect();
            for slot in slots {
                let mut slot = slot.lock().await;
                if slot.group.state() == GroupState::Dead {
                    continue;
                }
                slot.group.tick(now);
                self.settle(&name, &mut slot).await;
                let idle = slot.group.state() == GroupState::Empty
                    && slot.offsets.is_empty()
                    && slot
                        .group
                        .idle_since()
                        .is_some_and(|s| now.duration_since(s) >= EMPTY_GROUP_RETENTION);
                if idle && self.forget(&name, &t, &mut slot, now).await.is_ok() {
                    tracing::info!(tenant = %name, group = %slot.group.id, "forgot an empty group without offsets");
                    self.notify(&name, &slot.group.id);
                }
            }
            live.extend(t.groups.lock().keys().map(|g| (name.clone(), g.clone())));
        }
        // Change counters of groups that are gone and that nobody waits on. (A request that saw
        // an older value of a dropped counter is merely re-run once.)
        self.watches.lock().retain(|key, w| w.receiver_count() > 0 || live.contains(key));
    }

    /// Every group with its members and, per committed partition, the lag (log end offset minus
    /// committed offset), for the admin API. Tenants not used since the start are not listed
    /// (except the ones replayed at start).
    pub async fn groups_overview(&self) -> Vec<GroupOverview> {
        let tenants: Vec<(String, Arc<Tenant>)> =
            self.tenants.lock().iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        let mut out = Vec::new();
        for (tenant, t) in tenants {
            let slots: Vec<Arc<AsyncMutex<Slot>>> = t.groups.lock().values().cloned().collect();
            for slot in slots {
                let mut overview = {
                    let slot = slot.lock().await;
                    let g = &slot.group;
                    if g.state() == GroupState::Dead {
                        continue;
                    }
                    let consumer = g.protocol_type() == Some("consumer");
                    GroupOverview {
                        tenant: tenant.clone(),
                        group_id: g.id.clone(),
                        state: g.state().as_str().to_string(),
                        protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                        protocol: g.protocol_name().map(str::to_string),
                        generation: g.generation(),
                        leader: g.leader().map(str::to_string),
                        members: g
                            .members()
                            .iter()
                            .map(|m| MemberOverview {
                                member_id: m.id.clone(),
                                instance_id: m.instance_id.clone(),
                                client_id: m.client_id.clone(),
                                client_host: m.client_host.clone(),
                                assignment: consumer
                                    .then(|| consumer::assignment_partitions(&m.assignment))
                                    .flatten()
                                    .map(|a| {
                                        a.into_iter()
                                            .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                                            .collect()
                                    }),
                            })
                            .collect(),
                        offsets: slot
                            .offsets
                            .iter()
                            .map(|(topic, partition, c)| PartitionLag {
                                topic: topic.to_string(),
                                partition,
                                committed_offset: c.offset,
                                metadata: c.metadata.clone(),
                                log_end_offset: None,
                                lag: None,
                            })
                            .collect(),
                    }
                };
                // The log is asked outside the group's lock.
                if let Some(log) = &self.log {
                    for p in &mut overview.offsets {
                        let name =
                            TopicName::new(tenant.clone(), self.config.namespace.clone(), p.topic.clone());
                        if let Ok((_, end)) = log.offsets(&name, p.partition).await {
                            p.log_end_offset = Some(end);
                            p.lag = Some(end - p.committed_offset);
                        }
                    }
                }
                out.push(overview);
            }
        }
        out.sort_by(|a, b| (&a.tenant, &a.group_id).cmp(&(&b.tenant, &b.group_id)));
        out
    }
}

/// An offsets topic created before Guise compacted it becomes compacted (where the log
/// compacts), so that it stops growing with every commit. A failure is logged: the topic keeps
/// working uncompacted.
async fn compact_existing(log: &dyn Log, topic: &TopicName) {
    let Some(meta) = log.topic(topic) else { return };
    if !log.compacts() || meta.config.cleanup_policy.compact {
        return;
    }
    let ops = records::compaction_configs()
        .into_iter()
        .map(|(k, v)| (k.to_string(), crate::storage::AlterOp::Set(v.to_string())))
        .collect();
    match log.alter_topic_config(topic, &crate::storage::ConfigChange::Incremental(ops), false).await {
        Ok(_) => tracing::info!(%topic, "the offsets topic is compacted from now on"),
        Err(e) => tracing::warn!(%topic, "cannot make the offsets topic compacted: {e}"),
    }
}

#[cfg(test)]
mod tests;

/// The code a client gets when the coordinator cannot store to its offsets topic, as Kafka's
/// coordinator maps them: clients treat a raw KAFKA_STORAGE_ERROR from SyncGroup or OffsetCommit
/// as fatal, but COORDINATOR_NOT_AVAILABLE makes them retry (after finding the coordinator again).
fn store_error_code(e: &crate::storage::StorageError, commit: bool) -> i16 {
    use crate::storage::StorageError;
    match e {
        StorageError::MessageTooLarge { .. } if commit => INVALID_COMMIT_OFFSET_SIZE,
        StorageError::MessageTooLarge { .. } | StorageError::CorruptMessage(_) => UNKNOWN_SERVER_ERROR,
        _ => COORDINATOR_NOT_AVAILABLE,
    }
}

#[cfg(test)]
mod store_error_tests {
    use super::store_error_code;
    use crate::storage::StorageError;

    #[test]
    fn storage_failures_become_codes_clients_retry() {
        assert_eq!(store_error_code(&StorageError::Io(std::io::Error::other("disk full")), true), 15);
        assert_eq!(store_error_code(&StorageError::UnknownTopicOrPartition, false), 15);
        assert_eq!(store_error_code(&StorageError::MessageTooLarge { size: 2, max: 1 }, true), 28);
        assert_eq!(store_error_code(&StorageError::MessageTooLarge { size: 2, max: 1 }, false), -1);
    }
}
