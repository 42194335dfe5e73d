//! The transaction coordinator (KIP-98, KIP-447; Kafka's transaction versions 1 and 2), a host service
//! beside the group coordinator. The translator decodes InitProducerId (with a transactional
//! id), AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions and
//! ListTransactions, calls this, and encodes the answer.
//!
//! - Each tenant's transactional ids live in its internal `__transaction_state` topic
//!   (registered with `tenant`, compacted where the log compacts): one record per id, its whole
//!   state (`state::TxnMeta`), written before the call that changed it answers. Replayed on first
//!   use of the tenant, and at start for the configured tenants, so a commit or abort that a crash
//!   interrupted is finished (markers written again, offsets applied again: both are idempotent).
//! - Markers: EndTxn writes the PrepareCommit/PrepareAbort state, then a control batch to every
//!   partition of the transaction (through the raw log's `write_marker`), then applies the
//!   transaction's offsets to the group coordinator (on commit), then the Complete state; it
//!   answers after all of it (Kafka answers after the prepare state and writes markers after).
//! - Offsets of a transaction (TxnOffsetCommit) are kept in its state, not in
//!   `__consumer_offsets`, until it commits: OffsetFetch never sees them before, and
//!   `pending_offsets` tells `require_stable` fetches which are pending.
//! - A transactional produce is accepted only to a partition of the producer's open transaction
//!   at its current epoch ([`Coordinator::verify_append`], KIP-890's server-side check): a late
//!   retry after an abort cannot open a transaction nobody will end.
//! - A transaction open longer than its timeout is aborted by [`Coordinator::tick`], with the
//!   epoch bumped so that the producer that let it expire is fenced, as Kafka does.
//! - Transaction version 2 (KIP-890 part 2): the translator adds partitions and groups for the
//!   client (Produce v12+, TxnOffsetCommit v5+, through `add_partitions` and `add_offsets`), and
//!   EndTxn v5 ends each transaction at the next epoch ([`Coordinator::end`] with
//!   `bump_epoch`): the markers carry it, an exhausted epoch moves to a new producer id.
//!
//! Locking: a map of tenants, per tenant a map of transactional ids, per id one async mutex held
//! for a whole operation (appends and markers included), so one id's operations are serialized
//! and no CONCURRENT_TRANSACTIONS is needed between them. A synchronous view per tenant
//! (`View`: each id's state, and producer id → transactional id) answers the append check and
//! the read-only calls without awaiting.

mod state;
#[cfg(test)]
mod tests;

pub use state::{TxnMeta, TxnState};

use crate::coord::OffsetCommit;
use crate::storage::{Log, StorageError, TopicName, TxnMarker};
use guise_guest_sdk::error as codes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Mutex as AsyncMutex;

/// The internal topic each tenant's transactional ids are kept in.
pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(thiserror::Error, Debug)]
pub enum TxnError {
    #[error("reading the transaction log {topic}: {source}")]
    Replay { topic: String, source: StorageError },
}

/// The coordinator's settings.
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// The namespace of Kafka topics (and of the transaction log).
    pub namespace: String,
    /// Kafka's `transaction.max.timeout.ms`: a producer asking for more gets
    /// INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig { namespace: "default".into(), max_timeout_ms: 900_000 }
    }
}

/// A producer id and epoch, as the requests carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
}

/// One transactional id as DescribeTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    pub transactional_id: String,
    pub error: i16,
    pub state: &'static str,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer: Producer,
    pub partitions: Vec<(String, i32)>,
}

/// What the synchronous calls read: each id's state as last stored.
#[derive(Default)]
struct View {
    ids: HashMap<String, TxnMeta>,
    by_producer: HashMap<i64, String>,
}

#[derive(Default)]
struct Tenant {
    loaded: AtomicBool,
    load: AsyncMutex<()>,
    ids: Mutex<HashMap<String, Arc<AsyncMutex<Option<TxnMeta>>>>>,
    view: Mutex<View>,
}

pub struct Coordinator {
    config: TxnConfig,
    /// The raw log: nothing the coordinator writes is transformed.
    log: Arc<dyn Log>,
    groups: Arc<crate::coord::Coordinator>,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

impl Coordinator {
    /// Register the transaction log with the host's internal topics.
    pub fn register_internal(internal: &mut crate::tenant::InternalTopics, namespace: &str) {
        internal.register(TXN_TOPIC, Some(namespace), "the transaction coordinator");
    }

    pub fn new(log: Arc<dyn Log>, groups: Arc<crate::coord::Coordinator>, config: TxnConfig) -> Coordinator {
        Coordinator { config, log, groups, tenants: Mutex::default() }
    }

    /// Replay the transaction logs of these tenants and of every tenant that has one now,
    /// finishing what a crash interrupted and re-arming the timeouts of open transactions
    /// (a tenant nobody uses again must not keep a partition's last stable offset frozen).
    pub async fn open_tenants(&self, tenants: &[&str]) -> Result<(), TxnError> {
        let mut all: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        all.extend(self.log.tenants_with(&self.config.namespace, TXN_TOPIC));
        all.sort();
        all.dedup();
        for tenant in &all {
            self.tenant(tenant).await?;
        }
        Ok(())
    }

    /// Whether transactions can be served: the log must write markers.
    pub fn enabled(&self) -> bool {
        self.log.supports_transactions()
    }

    fn txn_topic(&self, tenant: &str) -> TopicName {
        TopicName::new(tenant, self.config.namespace.clone(), TXN_TOPIC)
    }

    fn data_topic(&self, tenant: &str, topic: &str) -> TopicName {
        TopicName::new(tenant, self.config.namespace.clone(), topic)
    }

    async fn tenant(&self, name: &str) -> Result<Arc<Tenant>, TxnError> {
        let tenant = self.tenants.lock().entry(name.to_string()).or_default().clone();
        if !tenant.loaded.load(Ordering::Acquire) {
            self.load(name, &tenant).await?;
        }
        Ok(tenant)
    }

    /// Replay the tenant's transaction log into `tenant` (once), then finish what is prepared.
    async fn load(&self, name: &str, tenant: &Tenant) -> Result<(), TxnError> {
        let _loading = tenant.load.lock().await;
        if tenant.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let topic = self.txn_topic(name);
        let mut replayed: BTreeMap<String, TxnMeta> = BTreeMap::new();
        let mut records = 0usize;
        crate::storage::kv::replay(&*self.log, &topic, |key, value| {
            records += 1;
            let Ok(id) = std::str::from_utf8(key) else { return };
            match value.map(serde_json::from_slice::<TxnMeta>) {
                Some(Ok(meta)) => {
                    replayed.insert(id.to_string(), meta);
                }
                Some(Err(e)) => tracing::warn!(
                    tenant = name,
                    transactional_id = id,
                    "skipping an unreadable transaction state: {e}"
                ),
                None => {
                    replayed.remove(id);
                }
            }
        })
        .await
        .map_err(|source| TxnError::Replay { topic: topic.to_string(), source })?;
        let unfinished: Vec<String> =
            replayed.iter().filter(|(_, m)| m.state.is_prepared()).map(|(id, _)| id.clone()).collect();
        // The partitions of open transactions take their producers' batches again (KIP-890's
        // registrations live in memory).
        for meta in replayed.values().filter(|m| m.state == TxnState::Ongoing) {
            self.register(name, meta, meta.partitions.iter()).await;
        }
        {
            let mut view = tenant.view.lock();
            let mut ids = tenant.ids.lock();
            for (id, meta) in replayed {
                view.by_producer.insert(meta.producer_id, id.clone());
                ids.insert(id.clone(), Arc::new(AsyncMutex::new(Some(meta.clone()))));
                view.ids.insert(id, meta);
            }
        }
        if records > 0 {
            tracing::info!(tenant = name, records, "replayed the transaction log");
        }
        tenant.loaded.store(true, Ordering::Release);
        for id in unfinished {
            let slot = tenant.ids.lock().get(&id).cloned();
            if let Some(slot) = slot {
                let mut guard = slot.lock().await;
                if let Some(meta) = guard.as_mut()
                    && let Err(e) = self.complete(name, tenant, &id, meta).await
                {
                    tracing::warn!(tenant = name, transactional_id = %id, "finishing an interrupted transaction failed (retried): {e}");
                }
            }
        }
        Ok(())
    }

    /// The id's slot, locked (created empty when missing).
    async fn lock_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(Arc<Tenant>, tokio::sync::OwnedMutexGuard<Option<TxnMeta>>), i16> {
        let t = self.tenant(tenant).await.map_err(|e| {
            tracing::error!(tenant, "transaction coordinator unavailable: {e}");
            codes::COORDINATOR_NOT_AVAILABLE
        })?;
        let slot = t.ids.lock().entry(id.to_string()).or_default().clone();
        Ok((t, slot.lock_owned().await))
    }

    /// Tell the partitions that `meta`'s producer may open a transaction there (see
    /// `Log::register_txn`). A partition that is gone is skipped.
    async fn register(&self, tenant: &str, meta: &TxnMeta, partitions: impl Iterator<Item = &(String, i32)>) {
        for (topic, partition) in partitions {
            let name = self.data_topic(tenant, topic);
            if let Err(e) = self.log.register_txn(&name, *partition, meta.producer_id, meta.epoch).await {
                tracing::debug!(tenant, topic, partition, "registering a transaction's partition: {e}");
            }
        }
    }

    /// Persist `meta` as the id's state, then show it.
    async fn store(&self, tenant: &str, t: &Tenant, id: &str, meta: &TxnMeta) -> Result<(), StorageError> {
        let value = serde_json::to_vec(meta)
            .map_err(|e| StorageError::InvalidRecord(format!("encoding a transaction state: {e}")))?;
        let configs = || crate::coord::records::offsets_topic_configs(self.log.compacts());
        crate::storage::kv::append(
            &*self.log,
            &self.txn_topic(tenant),
            configs,
            &[(id.as_bytes().to_vec(), Some(value))],
        )
        .await?;
        let mut view = t.view.lock();
        view.by_producer.insert(meta.producer_id, id.to_string());
        view.ids.insert(id.to_string(), meta.clone());
        Ok(())
    }

    /// InitProducerId with a transactional id.
    pub async fn init_producer_id(
        &self,
        tenant: &str,
        id: &str,
        timeout_ms: i32,
        current: Option<Producer>,
    ) -> Result<Producer, i16> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(codes::INVALID_TRANSACTION_TIMEOUT);
        }
        let (t, mut guard) = self.lock_id(tenant, id).await?;
        let mut meta = match guard.take() {
            None => {
                // A producer naming itself for an id this coordinator does not know (KIP-360)
                // gets a new producer id too, as from Kafka.
                let producer_id = self.log.allocate_producer_id().await.map_err(|e| e.kafka_code())?;
                let meta = TxnMeta::new(producer_id, timeout_ms);
                self.store(tenant, &t, id, &meta).await.map_err(|e| store_code(&e))?;
                *guard = Some(meta);
                tracing::debug!(
                    tenant,
                    transactional_id = id,
                    producer_id,
                    "InitProducerId: new transactional id"
                );
                return Ok(Producer { id: producer_id, epoch: 0 });
            }
            Some(meta) => meta,
        };
        let outcome = self.init_existing(tenant, &t, id, &mut meta, timeout_ms, current).await;
        *guard = Some(meta);
        outcome
    }

    #[allow(clippy::too_many_arguments)] // init_producer_id's, with the locked state
    async fn init_existing(
        &self,
        tenant: &str,
        t: &Tenant,
        id: &str,
        meta: &mut TxnMeta,
        timeout_ms: i32,
        current: Option<Producer>,
    ) -> Result<Producer, i16> {
        if let Some(c) = current.filter(|c| c.id >= 0) {
            let is_current = c.id == meta.producer_id && c.epoch == meta.epoch;
            let is_retry = meta.last_producer_id == c.id && meta.last_epoch == c.epoch && c.id >= 0;
            if is_retry && matches!(meta.state, TxnState::Empty) {
                // The answer to this producer's InitProducerId was lost: the same again.
                return Ok(Producer { id: meta.producer_id, epoch: meta.epoch });
            }
            if !is_current {
                return Err(codes::PRODUCER_FENCED);
            }
        }
        // Only a producer that named itself may retry its InitProducerId (Kafka's
        // lastProducerEpoch): a new instance's bump must not let the old one back in.
        let remember = current.is_some_and(|c| c.id >= 0);
        if meta.state.is_prepared() {
            self.complete(tenant, t, id, meta).await.map_err(|e| store_code(&e))?;
        }
        if meta.state == TxnState::Ongoing {
            // The previous instance left a transaction open: fence it and abort it.
            let fenced = meta.clone();
            meta.bump_epoch(false);
            tracing::info!(
                tenant,
                transactional_id = id,
                producer_id = meta.producer_id,
                epoch = meta.epoch,
                "InitProducerId: aborting the transaction a previous producer left open"
            );
            if let Err(e) = self.end_locked(tenant, t, id, meta, false).await {
                // Still Ongoing: nothing was stored. Prepared: the abort is decided (and
                // stored); it is finished later, at the new epoch.
                if meta.state == TxnState::Ongoing {
                    *meta = fenced;
                }
                return Err(store_code(&e));
            }
        }
        let before = meta.clone();
        if meta.epoch >= crate::storage::producers::MAX_EPOCH {
            let producer_id = self.log.allocate_producer_id().await.map_err(|e| e.kafka_code())?;
            meta.new_producer(producer_id, remember);
        } else {
            meta.bump_epoch(remember);
        }
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        if let Err(e) = self.store(tenant, t, id, meta).await {
            *meta = before;
            return Err(store_code(&e));
        }
        tracing::debug!(
            tenant,
            transactional_id = id,
            producer_id = meta.producer_id,
            epoch = meta.epoch,
            "InitProducerId: epoch bumped"
        );
        Ok(Producer { id: meta.producer_id, epoch: meta.epoch })
    }

    /// The checks every call of an open producer makes: the id exists, belongs to this producer
    /// id, at this epoch.
    fn check_producer(meta: Option<&TxnMeta>, producer: Producer) -> Result<&TxnMeta, i16> {
        let meta = meta.ok_or(codes::INVALID_PRODUCER_ID_MAPPING)?;
        if meta.producer_id != producer.id {
            return Err(codes::INVALID_PRODUCER_ID_MAPPING);
        }
        if meta.epoch != producer.epoch {
            return Err(codes::PRODUCER_FENCED);
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn: one code per partition.
    pub async fn add_partitions(
        &self,
        tenant: &str,
        id: &str,
        producer: Producer,
        partitions: &[(String, i32)],
    ) -> Vec<i16> {
        self.add_partitions_to(tenant, id, producer, partitions, false).await
    }

    /// A tenant transform routed records of `producer`'s transactional batch (which passed
    /// [`verify_append`](Self::verify_append)) to these partitions of the tenant's topics: add
    /// them to the producer's open transaction, so that its markers end them there too. Only
    /// an open transaction is joined: if it ended meanwhile, INVALID_TXN_STATE (a late batch
    /// must not begin the producer's next one).
    pub async fn add_routed(
        &self,
        tenant: &str,
        producer: Producer,
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        let t = self.tenant(tenant).await.map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        let id = t.view.lock().by_producer.get(&producer.id).cloned().ok_or(codes::INVALID_TXN_STATE)?;
        let answers = self.add_partitions_to(tenant, &id, producer, partitions, true).await;
        answers.into_iter().find(|c| *c != codes::NONE).map_or(Ok(()), Err)
    }

    /// [`add_partitions`](Self::add_partitions); with `ongoing_only`, to the open transaction
    /// only (INVALID_TXN_STATE when none is).
    async fn add_partitions_to(
        &self,
        tenant: &str,
        id: &str,
        producer: Producer,
        partitions: &[(String, i32)],
        ongoing_only: bool,
    ) -> Vec<i16> {
        let all = |code| vec![code; partitions.len()];
        let (t, mut guard) = match self.lock_id(tenant, id).await {
            Ok(x) => x,
            Err(code) => return all(code),
        };
        let meta = match Self::check_producer(guard.as_ref(), producer) {
            Ok(meta) => meta,
            Err(code) => return all(code),
        };
        if meta.state.is_prepared() {
            return all(codes::CONCURRENT_TRANSACTIONS);
        }
        if ongoing_only && meta.state != TxnState::Ongoing {
            return all(codes::INVALID_TXN_STATE);
        }
        let unknown: Vec<bool> = partitions
            .iter()
            .map(|(topic, p)| {
                !self.log.topic(&self.data_topic(tenant, topic)).is_some_and(|m| *p >= 0 && *p < m.partitions)
            })
            .collect();
        if unknown.iter().any(|u| *u) {
            return unknown
                .iter()
                .map(|u| if *u { codes::UNKNOWN_TOPIC_OR_PARTITION } else { codes::OPERATION_NOT_ATTEMPTED })
                .collect();
        }
        if meta.state == TxnState::Ongoing && partitions.iter().all(|tp| meta.partitions.contains(tp)) {
            return all(codes::NONE);
        }
        let mut next = meta.clone();
        next.begin(crate::storage::now_ms());
        next.partitions.extend(partitions.iter().cloned());
        match self.store(tenant, &t, id, &next).await {
            Ok(()) => {
                self.register(tenant, &next, partitions.iter()).await;
                *guard = Some(next);
                all(codes::NONE)
            }
            Err(e) => all(store_code(&e)),
        }
    }

    /// AddOffsetsToTxn.
    pub async fn add_offsets(&self, tenant: &str, id: &str, producer: Producer, group: &str) -> i16 {
        let (t, mut guard) = match self.lock_id(tenant, id).await {
            Ok(x) => x,
            Err(code) => return code,
        };
        let meta = match Self::check_producer(guard.as_ref(), producer) {
            Ok(meta) => meta,
            Err(code) => return code,
        };
        if meta.state.is_prepared() {
            return codes::CONCURRENT_TRANSACTIONS;
        }
        if meta.state == TxnState::Ongoing && meta.groups.contains(group) {
            return codes::NONE;
        }
        let mut next = meta.clone();
        next.begin(crate::storage::now_ms());
        next.groups.insert(group.to_string());
        match self.store(tenant, &t, id, &next).await {
            Ok(()) => {
                *guard = Some(next);
                codes::NONE
            }
            Err(e) => store_code(&e),
        }
    }

    /// TxnOffsetCommit: one code per offset.
    #[allow(clippy::too_many_arguments)] // the request's fields
    pub async fn commit_offsets(
        &self,
        tenant: &str,
        id: &str,
        producer: Producer,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<i16> {
        let all = |code| vec![code; offsets.len()];
        let (t, mut guard) = match self.lock_id(tenant, id).await {
            Ok(x) => x,
            Err(code) => return all(code),
        };
        let meta = match Self::check_producer(guard.as_ref(), producer) {
            Ok(meta) => meta,
            Err(code) => return all(code),
        };
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            // Kafka's AddOffsetsToTxn must come first: the group is not in this transaction.
            return all(codes::INVALID_TXN_STATE);
        }
        let group_code =
            self.groups.check_txn_commit(tenant, group, generation, member_id, instance_id).await;
        if group_code != codes::NONE {
            return all(group_code);
        }
        let mut next = meta.clone();
        let mut out = Vec::with_capacity(offsets.len());
        let now = crate::storage::now_ms();
        for o in offsets {
            let exists = self
                .log
                .topic(&self.data_topic(tenant, &o.topic))
                .is_some_and(|m| o.partition >= 0 && o.partition < m.partitions);
            if !exists {
                out.push(codes::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            }
            if o.metadata.as_ref().is_some_and(|m| m.len() > self.groups.config().offset_metadata_max_bytes) {
                out.push(codes::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            next.put_offset(group, o, now);
            out.push(codes::NONE);
        }
        if next == *meta {
            return out;
        }
        match self.store(tenant, &t, id, &next).await {
            Ok(()) => {
                *guard = Some(next);
                out
            }
            Err(e) => all(store_code(&e)),
        }
    }

    /// EndTxn: the producer as it goes on (its id and epoch), or the error code. With
    /// `bump_epoch` (EndTxn v5: transaction version 2, KIP-890 part 2) every transaction ends at
    /// the next epoch, which its markers carry and the answer hands the client; without, the
    /// epoch stays (transaction version 1).
    pub async fn end(
        &self,
        tenant: &str,
        id: &str,
        producer: Producer,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<Producer, i16> {
        let (t, mut guard) = self.lock_id(tenant, id).await?;
        if bump_epoch {
            let Some(meta) = guard.as_mut() else { return Err(codes::INVALID_PRODUCER_ID_MAPPING) };
            return self.end_bumping(tenant, &t, id, meta, producer, commit).await;
        }
        let mut meta = Self::check_producer(guard.as_ref(), producer)?.clone();
        let outcome = match (meta.state, commit) {
            (TxnState::Ongoing, _) => self.end_locked(tenant, &t, id, &mut meta, commit).await,
            // A retry of an EndTxn whose answer was lost.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                self.complete(tenant, &t, id, &mut meta).await
            }
            // Nothing open, or the other outcome is decided already.
            _ => return Err(codes::INVALID_TXN_STATE),
        };
        let current = Producer { id: meta.producer_id, epoch: meta.epoch };
        *guard = Some(meta);
        outcome.map(|()| current).map_err(|e| store_code(&e))
    }

    /// EndTxn at transaction version 2 (Kafka's `TransactionCoordinator.endTransaction` with
    /// `TV_2`), under the id's lock. The client names the epoch it holds, E:
    /// - the current epoch ends the open transaction, or aborts when none is open (an "empty
    ///   abort": the client sends EndTxn whenever it produced, even if nothing got added), at
    ///   E + 1; a commit with none open is INVALID_TXN_STATE;
    /// - E + 1 stored (or, after a rotation, epoch 0 of the next producer id) is a retry of an
    ///   EndTxn whose answer was lost: the same outcome is answered again (a prepared one is
    ///   finished first), the other is INVALID_TXN_STATE;
    /// - anything else is PRODUCER_FENCED (INVALID_PRODUCER_ID_MAPPING for another producer id).
    ///
    /// An exhausted epoch (`MAX_EPOCH` or more) ends at E + 1 with a new producer id decided
    /// in the prepare, which the completed state moves to (Kafka's nextProducerId).
    async fn end_bumping(
        &self,
        tenant: &str,
        t: &Tenant,
        id: &str,
        meta: &mut TxnMeta,
        producer: Producer,
        commit: bool,
    ) -> Result<Producer, i16> {
        let current = producer.id == meta.producer_id && producer.epoch == meta.epoch;
        let retry_on_bump =
            producer.id == meta.producer_id && producer.epoch.checked_add(1) == Some(meta.epoch);
        // As Kafka's retryOnOverflow: the previous producer id at an exhausted epoch (its last
        // one, or one a timeout's bump saturated), and the new id not used yet.
        let retry_on_rotation = producer.id != meta.producer_id
            && meta.last_producer_id >= 0
            && producer.id == meta.last_producer_id
            && producer.epoch >= crate::storage::producers::MAX_EPOCH
            && meta.epoch == 0;
        if producer.id != meta.producer_id && !retry_on_rotation {
            return Err(codes::INVALID_PRODUCER_ID_MAPPING);
        }
        let retry = retry_on_bump || retry_on_rotation;
        let valid = match meta.state {
            TxnState::Empty | TxnState::Ongoing => current,
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => retry || current,
        };
        if !valid {
            return Err(codes::PRODUCER_FENCED);
        }
        let as_now = |m: &TxnMeta| Producer { id: m.producer_id, epoch: m.epoch };
        match (meta.state, commit, retry) {
            (TxnState::Ongoing, _, false) | (TxnState::Empty, false, false) => {}
            (TxnState::CompleteCommit | TxnState::CompleteAbort, false, false) => {}
            (TxnState::CompleteCommit, true, true) | (TxnState::CompleteAbort, false, true) => {
                return Ok(as_now(meta));
            }
            (TxnState::PrepareCommit, true, true) | (TxnState::PrepareAbort, false, true) => {
                self.complete(tenant, t, id, meta).await.map_err(|e| store_code(&e))?;
                return Ok(as_now(meta));
            }
            _ => return Err(codes::INVALID_TXN_STATE),
        }
        let before = meta.clone();
        let exhausted = meta.epoch >= crate::storage::producers::MAX_EPOCH;
        let next_producer_id =
            if exhausted { self.log.allocate_producer_id().await.map_err(|e| store_code(&e))? } else { -1 };
        // An empty abort is a transaction of its own, with nothing in it.
        meta.begin(crate::storage::now_ms());
        meta.bump_epoch(true);
        meta.next_producer_id = next_producer_id;
        tracing::debug!(
            tenant,
            transactional_id = id,
            producer_id = meta.producer_id,
            epoch = meta.epoch,
            next_producer_id,
            commit,
            "EndTxn: ending at the next epoch"
        );
        if let Err(e) = self.end_locked(tenant, t, id, meta, commit).await {
            // Nothing stored: as before. Prepared: decided, and finished later at the new epoch.
            if meta.state == TxnState::Ongoing {
                *meta = before;
            }
            return Err(store_code(&e));
        }
        Ok(as_now(meta))
    }

    /// End the open transaction in `meta` (under its lock): prepare, markers, offsets, complete.
    /// On an error the state is whatever was stored last: a prepared state is finished later
    /// (by the next call for the id, or [`tick`](Self::tick)).
    async fn end_locked(
        &self,
        tenant: &str,
        t: &Tenant,
        id: &str,
        meta: &mut TxnMeta,
        commit: bool,
    ) -> Result<(), StorageError> {
        let mut prepared = meta.clone();
        prepared.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        self.store(tenant, t, id, &prepared).await?;
        *meta = prepared;
        self.complete(tenant, t, id, meta).await
    }

    /// Finish a prepared transaction: a marker on every partition, the offsets to the group
    /// coordinator on commit, then the Complete state.
    async fn complete(
        &self,
        tenant: &str,
        t: &Tenant,
        id: &str,
        meta: &mut TxnMeta,
    ) -> Result<(), StorageError> {
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        let marker = TxnMarker {
            producer_id: meta.producer_id,
            producer_epoch: meta.epoch,
            commit,
            coordinator_epoch: 0,
        };
        // A partition leaves `meta` (in memory only: the stored prepare still names it) once
        // its marker is written, so that a retry writes the missing markers only; recovery
        // writes them all again (a second marker changes nothing).
        while let Some((topic, partition)) = meta.partitions.first().cloned() {
            match self.log.write_marker(&self.data_topic(tenant, &topic), partition, marker).await {
                // Written; or the topic went away with its transaction's records.
                Ok(_) | Err(StorageError::UnknownTopicOrPartition) => {
                    meta.partitions.remove(&(topic, partition));
                }
                Err(e) => {
                    tracing::warn!(
                        tenant,
                        transactional_id = id,
                        topic,
                        partition,
                        "writing a transaction marker failed: {e}"
                    );
                    return Err(e);
                }
            }
        }
        if commit {
            for (group, offsets) in meta.offsets_by_group() {
                if let Err(code) = self.groups.apply_txn_offsets(tenant, &group, &offsets).await {
                    tracing::warn!(
                        tenant,
                        transactional_id = id,
                        group,
                        code,
                        "applying a transaction's offsets failed"
                    );
                    return Err(StorageError::Io(std::io::Error::other(format!(
                        "applying the offsets of group {group} failed with error {code}"
                    ))));
                }
            }
        }
        let mut done = meta.clone();
        done.finish(commit);
        self.store(tenant, t, id, &done).await?;
        tracing::debug!(
            tenant,
            transactional_id = id,
            producer_id = done.producer_id,
            commit,
            "transaction complete"
        );
        *meta = done;
        Ok(())
    }

    /// Abort transactions open longer than their timeout (fencing their producers), and finish
    /// prepared ones whose markers failed. Called periodically by the server.
    pub async fn tick(&self) {
        let tenants: Vec<(String, Arc<Tenant>)> =
            self.tenants.lock().iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        let now = crate::storage::now_ms();
        for (name, t) in tenants {
            if !t.loaded.load(Ordering::Acquire) {
                continue;
            }
            let due: Vec<String> = t
                .view
                .lock()
                .ids
                .iter()
                .filter(|(_, m)| m.state.is_prepared() || (m.state == TxnState::Ongoing && m.expired(now)))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let Some(slot) = t.ids.lock().get(&id).cloned() else { continue };
                let mut guard = slot.lock().await;
                let Some(meta) = guard.as_mut() else { continue };
                let outcome = if meta.state.is_prepared() {
                    self.complete(&name, &t, &id, meta).await
                } else if meta.state == TxnState::Ongoing && meta.expired(crate::storage::now_ms()) {
                    tracing::info!(tenant = %name, transactional_id = %id, producer_id = meta.producer_id, timeout_ms = meta.timeout_ms, "aborting a transaction open longer than its timeout");
                    let before = meta.clone();
                    meta.bump_epoch(false);
                    let r = self.end_locked(&name, &t, &id, meta, false).await;
                    if r.is_err() && meta.state == TxnState::Ongoing {
                        *meta = before;
                    }
                    r
                } else {
                    Ok(())
                };
                if let Err(e) = outcome {
                    tracing::warn!(tenant = %name, transactional_id = %id, "transaction clean-up failed (retried): {e}");
                }
            }
        }
    }

    /// KIP-890's check of a transactional batch before it is appended: its producer must have
    /// an open transaction holding the partition, at the batch's epoch. An older epoch is
    /// INVALID_PRODUCER_EPOCH (the producer was fenced); anything else INVALID_TXN_STATE. The
    /// transactional id the producer belongs to, for the caller's ACL check.
    pub async fn verify_append(
        &self,
        tenant: &str,
        topic: &str,
        partition: i32,
        producer: Producer,
    ) -> Result<String, i16> {
        let t = self.tenant(tenant).await.map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        let view = t.view.lock();
        let Some((id, meta)) =
            view.by_producer.get(&producer.id).and_then(|id| Some((id, view.ids.get(id)?)))
        else {
            return Err(codes::INVALID_TXN_STATE);
        };
        if meta.producer_id != producer.id || producer.epoch < meta.epoch {
            return Err(codes::INVALID_PRODUCER_EPOCH);
        }
        if producer.epoch > meta.epoch
            || meta.state != TxnState::Ongoing
            || !meta.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(codes::INVALID_TXN_STATE);
        }
        Ok(id.clone())
    }

    /// Of the group's partitions, whether each has offsets of a transaction not complete yet.
    pub async fn pending_offsets(
        &self,
        tenant: &str,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Vec<bool> {
        let Ok(t) = self.tenant(tenant).await else { return vec![false; partitions.len()] };
        let view = t.view.lock();
        partitions
            .iter()
            .map(|(topic, p)| {
                view.ids.values().any(|m| {
                    matches!(m.state, TxnState::Ongoing | TxnState::PrepareCommit)
                        && m.offsets
                            .iter()
                            .any(|o| o.group == group && o.topic == *topic && o.partition == *p)
                })
            })
            .collect()
    }

    /// DescribeTransactions.
    pub async fn describe(&self, tenant: &str, ids: &[String]) -> Vec<Description> {
        let t = self.tenant(tenant).await.ok();
        ids.iter()
            .map(|id| {
                let view = t.as_ref().map(|t| t.view.lock());
                match view.as_ref().and_then(|v| v.ids.get(id)) {
                    Some(m) => m.describe(id),
                    None => Description {
                        transactional_id: id.clone(),
                        error: if t.is_some() {
                            codes::TRANSACTIONAL_ID_NOT_FOUND
                        } else {
                            codes::COORDINATOR_NOT_AVAILABLE
                        },
                        state: "",
                        timeout_ms: 0,
                        start_ms: -1,
                        producer: Producer { id: -1, epoch: -1 },
                        partitions: Vec::new(),
                    },
                }
            })
            .collect()
    }

    /// ListTransactions: (id, producer id, state) of those matching every filter.
    pub async fn list(
        &self,
        tenant: &str,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<(String, i64, &'static str)> {
        let Ok(t) = self.tenant(tenant).await else { return Vec::new() };
        let now = crate::storage::now_ms();
        let view = t.view.lock();
        let mut out: Vec<(String, i64, &'static str)> = view
            .ids
            .iter()
            .filter(|(_, m)| states.is_empty() || states.iter().any(|s| s == m.state.name()))
            .filter(|(_, m)| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            // Kafka's duration filter: started more than that long ago, whatever the state.
            .filter(|(_, m)| min_duration_ms < 0 || (m.start_ms >= 0 && now - m.start_ms > min_duration_ms))
            .map(|(id, m)| (id.clone(), m.producer_id, m.state.name()))
            .collect();
        out.sort();
        out
    }
}

/// The error code of a failed write of the coordinator's.
fn store_code(e: &StorageError) -> i16 {
    match e.kafka_code() {
        // A full disk, an I/O error, an unavailable Pulsar: clients retry against the
        // coordinator.
        codes::KAFKA_STORAGE_ERROR | codes::UNKNOWN_SERVER_ERROR | codes::REQUEST_TIMED_OUT => {
            codes::COORDINATOR_NOT_AVAILABLE
        }
        // Another host took the transaction log or a partition of the transaction (on the
        // Pulsar backend): this host cannot finish it; the one that loads the log next does.
        codes::NOT_LEADER_OR_FOLLOWER => codes::NOT_COORDINATOR,
        code => code,
    }
}
