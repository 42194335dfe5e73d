//! The `pulsar` storage backend: the [`Log`] port on an Apache Pulsar cluster, through the
//! `pulsar` crate. The host keeps no data of its own in this mode.
//!
//! * Kafka topic `t`, partition `p` of tenant `x` in namespace `ns` is the non-partitioned
//!   Pulsar topic `persistent://x/ns/t-partition-p` (see `partition`).
//! * Topic metadata (creations, partition counts, deletions) and producer-id blocks are
//!   append-only logs in `persistent://<metadata namespace>/topics` and `.../producer-ids`,
//!   replayed at open (see `meta`). Group metadata and committed offsets go through the log like
//!   any topic (`__consumer_offsets`), so they are in Pulsar too. The module registries
//!   (translator versions, tenants' transforms and their bindings) are the log `.../modules`
//!   (see `modules`): a replacement host with an empty data directory starts with them.
//! * Entry format (topic config `guise.entry.format`): `kafka` stores each Kafka batch as one
//!   message; `pulsar` stores one message per record, mapped as `crate::pulsar::mapping` says,
//!   so that Pulsar consumers read them natively (a fetch rebuilds a Kafka batch from them).
//! * Offsets are assigned by the partition's single writer and carried in message properties
//!   with the writer's epoch and the topic id (see `props`, `index`).
//!
//! Limits, by design or for now:
//! * a Kafka batch (format `kafka`) or a record (format `pulsar`) larger than
//!   `pulsar_max_message_bytes` minus [`METADATA_ROOM`] is refused with MESSAGE_TOO_LARGE (no
//!   chunking);
//! * without `admin_url`, deleting a topic only records the deletion: the binary protocol has no
//!   call to delete a Pulsar topic, so its partition topics stay in Pulsar (with their
//!   `guise-retention` subscription); a topic re-created under the same name gets a new id and
//!   ignores them. With it, Kafka topics are Pulsar partitioned topics, deleted with them (see
//!   `admin`);
//! * in format `pulsar`, record headers become a map: duplicate header keys keep one value,
//!   their order is not kept, and headers named `guise.*` are dropped; a tombstone is an empty
//!   payload with the property `guise.null` (the crate cannot set `null_value`);
//! * messages written to a partition topic by plain Pulsar producers are not Kafka records
//!   (they carry no offset) and are skipped;
//! * metadata changes made by another host become visible here when this host next reads the
//!   metadata log: at an admin operation, or when it looks up a topic it does not know (at most
//!   once a second)
//!   (the partitions this host has open of a topic deleted elsewhere are closed then too);
//! * read-only calls (fetch, list offsets) open a partition like a write does, fencing its
//!   current writer: a host that Kafka clients fetch from takes the partition;
//! * retention applies to the partitions this host has open;
//! * the index holds one small entry per stored batch in memory.

mod admin;
pub(crate) mod client;
mod index;
mod ingress;
mod meta;
mod modules;
mod partition;
mod props;
mod reader;

use crate::record::batch;
use crate::storage::{
    AppendInfo, Log, LogDefaults, LogDirReport, PartitionReport, ReadResult, StorageError, TopicMeta,
    TopicName,
};
use crate::tenant::names::{check_new_topic, validate_full_name, validate_growth, validate_partitions};
use client::Bridge;
use meta::{Catalog, ID_BLOCK, IdBlocks, IdClaim, MetaLog, Replayed, TopicRecord};
use parking_lot::{Mutex, RwLock};
use partition::{Partition, Shared};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Room left in a Pulsar message for its metadata (our properties, the key, the headers).
pub const METADATA_ROOM: usize = 64 * 1024;

/// How to reach Pulsar and where the metadata lives.
#[derive(Clone, Debug)]
pub struct PulsarSettings {
    /// `pulsar://HOST:PORT` (or `pulsar+ssl://`).
    pub url: String,
    /// `tenant/namespace` of the metadata topics.
    pub metadata_namespace: String,
    /// A JWT for Pulsar's token authentication.
    pub auth_token: Option<String>,
    /// The brokers' maxMessageSize (Pulsar's default is 5 MiB).
    pub max_message_bytes: usize,
    /// `http://HOST:PORT` of Pulsar's admin REST API: Kafka topics become Pulsar partitioned
    /// topics, deleted with the Kafka topic, and missing namespaces are created (see `admin`).
    pub admin_url: Option<String>,
    /// PEM file of the certificates that a `pulsar+ssl://` broker's certificate must chain to
    /// (None: the system's roots).
    pub tls_trust_certs: Option<std::path::PathBuf>,
}

pub struct PulsarLog {
    defaults: LogDefaults,
    /// The service URL, reported as the log dir.
    url: String,
    /// Changed only while holding `topics_log`, in log order.
    catalog: Arc<RwLock<Catalog>>,
    /// Open partitions by (topic name, topic id, partition).
    partitions: Arc<RwLock<PartitionMap>>,
    topics_log: Arc<tokio::sync::Mutex<MetaLog>>,
    ids_log: Arc<tokio::sync::Mutex<MetaLog>>,
    ids: tokio::sync::Mutex<IdState>,
    last_sync: Mutex<Option<Instant>>,
    /// Serializes create, delete and create-partitions.
    admin: tokio::sync::Mutex<()>,
    /// Pulsar's admin REST API, when configured.
    rest: Option<admin::PulsarAdmin>,
    /// The module registries' state (translator versions, tenants' transforms).
    modules: Arc<modules::PulsarModules>,
    /// The runners of the ingress topics (see `ingress`), once the front ends' log is known.
    ingress: Arc<ingress::Supervisor>,
    /// Last: the runtime goes after everything that holds Pulsar objects.
    shared: Arc<Shared>,
}

type PartitionMap = BTreeMap<(TopicName, uuid::Uuid, i32), Arc<Partition>>;

/// How often idle fetch readers are looked for.
const CURSOR_SWEEP: Duration = Duration::from_secs(15);

#[derive(Default)]
struct IdState {
    /// Ids `next..end` are ours to hand out.
    next: i64,
    end: i64,
    blocks: IdBlocks,
}

impl PulsarLog {
    /// Connect, replay the metadata logs and serve. Partitions open lazily, on first use.
    pub fn open(settings: PulsarSettings, defaults: LogDefaults) -> Result<PulsarLog, StorageError> {
        let ns = settings.metadata_namespace.trim_matches('/');
        if ns.split('/').count() != 2 || ns.split('/').any(str::is_empty) {
            return Err(StorageError::InvalidConfig(format!(
                "pulsar metadata namespace '{ns}' is not TENANT/NAMESPACE"
            )));
        }
        let rest = match &settings.admin_url {
            Some(url) => Some(admin::PulsarAdmin::new(url, settings.auth_token.clone())?),
            None => None,
        };
        let bridge = Bridge::connect(
            &settings.url,
            settings.auth_token.as_deref(),
            settings.tls_trust_certs.as_deref(),
        )?;
        if let Some(rest) = rest.clone() {
            let (tenant, namespace) = ns.split_once('/').expect("checked above");
            let (tenant, namespace) = (tenant.to_string(), namespace.to_string());
            bridge.run_blocking(move || async move { rest.ensure_namespace(&tenant, &namespace).await })?;
        }
        let client = bridge.client.clone();
        let handle = bridge.handle().clone();
        let topics_topic = format!("persistent://{ns}/topics");
        let ids_topic = format!("persistent://{ns}/producer-ids");
        let d = defaults.clone();
        let (topics_log, ids_log, catalog, blocks) = bridge.run_blocking(move || async move {
            let mut topics_log = MetaLog::open(&client, &handle, topics_topic).await?;
            let mut catalog = Catalog::default();
            topics_log
                .catch_up(|_, e: Replayed<TopicRecord>| {
                    catalog.replay(&d, &e);
                })
                .await?;
            // A start replays the whole log: snapshot it when that is more than twice what it
            // holds.
            let (replayed, records) = (topics_log.replayed, catalog.snapshot());
            if replayed > 2 * records.len() as u64 + 16 {
                match topics_log
                    .compact(&records, |_, e: Replayed<TopicRecord>| {
                        catalog.replay(&d, &e);
                    })
                    .await
                {
                    Ok(took) => {
                        tracing::info!(replayed, kept = records.len(), took, "compacted the topics log")
                    }
                    Err(e) => tracing::warn!(
                        "cannot compact the topics log (it is replayed whole at the next start): {e}"
                    ),
                }
            }
            let mut ids_log = MetaLog::open(&client, &handle, ids_topic).await?;
            let mut blocks = IdBlocks::default();
            ids_log
                .catch_up(|_, e: Replayed<IdClaim>| {
                    // (Claims only ever grow the claimed range: a reset forgets nothing.)
                    if let Replayed::Record(c) = e {
                        blocks.apply(c);
                    }
                })
                .await?;
            Ok((topics_log, ids_log, catalog, blocks))
        })?;
        tracing::info!(
            url = %settings.url,
            metadata = ns,
            topics = catalog.topics.len(),
            producer_ids_claimed = blocks.end,
            "opened the pulsar log"
        );
        let max_payload = settings.max_message_bytes.saturating_sub(METADATA_ROOM).max(1024);
        let partitions: Arc<RwLock<PartitionMap>> = Arc::default();
        bridge.handle().spawn(sweep_cursors(Arc::downgrade(&partitions)));
        let client = bridge.client.clone();
        let shared = Arc::new(Shared { bridge, epochs: Default::default(), max_payload });
        let modules = Arc::new(modules::PulsarModules::open(shared.clone(), client, ns)?);
        Ok(PulsarLog {
            shared,
            modules,
            defaults,
            url: settings.url.clone(),
            catalog: Arc::new(RwLock::new(catalog)),
            partitions,
            topics_log: Arc::new(tokio::sync::Mutex::new(topics_log)),
            ids_log: Arc::new(tokio::sync::Mutex::new(ids_log)),
            ids: tokio::sync::Mutex::new(IdState { blocks, ..IdState::default() }),
            last_sync: Mutex::new(None),
            admin: tokio::sync::Mutex::new(()),
            rest,
            ingress: Arc::default(),
        })
    }

    async fn run<T: Send + 'static, F>(
        &self,
        make: impl FnOnce() -> F + Send + 'static,
    ) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.shared.bridge.run(make).await
    }

    /// Read the topics log up to its end (other hosts' changes). Records are applied as they
    /// are read, under the log's lock: every caller applies them in log order (applied after
    /// releasing it, a later batch could overtake an earlier one, e.g. a Delete its Create).
    async fn sync_catalog(&self) -> Result<(), StorageError> {
        self.run(self.catch_up_catalog()).await?;
        self.synced();
        Ok(())
    }

    /// [`sync_catalog`](Self::sync_catalog) for a synchronous caller (a lookup that missed).
    fn sync_catalog_blocking(&self) -> Result<(), StorageError> {
        self.shared.bridge.run_blocking(self.catch_up_catalog())?;
        self.synced();
        Ok(())
    }

    fn catch_up_catalog(
        &self,
    ) -> impl FnOnce() -> futures::future::BoxFuture<'static, Result<(), StorageError>> + Send + 'static {
        let log = self.topics_log.clone();
        let catalog = self.catalog.clone();
        let defaults = self.defaults.clone();
        move || {
            Box::pin(async move {
                let mut log = log.lock().await;
                log.catch_up(|_, e: Replayed<TopicRecord>| {
                    catalog.write().replay(&defaults, &e);
                })
                .await
            })
        }
    }

    fn synced(&self) {
        *self.last_sync.lock() = Some(Instant::now());
        self.close_deleted_partitions();
    }

    /// Close, in the background, the open partitions of topics the catalog no longer has
    /// (deleted by another host, or re-created under a new id): they hold a producer, the
    /// retention subscription, a fetch reader and their index.
    fn close_deleted_partitions(&self) {
        let gone: Vec<Arc<Partition>> = {
            let catalog = self.catalog.read();
            let mut parts = self.partitions.write();
            let keys: Vec<_> = parts
                .keys()
                .filter(|(n, id, _)| catalog.topics.get(n).is_none_or(|t| t.id != *id))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| parts.remove(k)).collect()
        };
        if gone.is_empty() {
            return;
        }
        self.shared.bridge.handle().spawn(async move {
            for p in gone {
                tracing::info!(topic = %p.topic, "closing a partition of a deleted topic");
                p.close().await;
            }
        });
    }

    /// Append a topics record; whether it took effect where it landed.
    async fn append_topic_record(&self, record: TopicRecord) -> Result<bool, StorageError> {
        let log = self.topics_log.clone();
        let catalog = self.catalog.clone();
        let defaults = self.defaults.clone();
        self.run(move || async move {
            let mut log = log.lock().await;
            // Every record read is applied under the log's lock (see `sync_catalog`); ours
            // comes last.
            let mut took = false;
            log.append(&record, |_, e: Replayed<TopicRecord>| {
                let applied = catalog.write().replay(&defaults, &e);
                took = applied && matches!(&e, Replayed::Record(r) if *r == record);
            })
            .await?;
            Ok(took)
        })
        .await
    }

    /// A topic from the catalog; a miss reads the topics log (other hosts' creations) first, at
    /// most once a second.
    fn get(&self, name: &TopicName) -> Option<TopicMeta> {
        if let Some(t) = self.catalog.read().topics.get(name) {
            return Some(t.clone());
        }
        if self.stale()
            && let Err(e) = self.sync_catalog_blocking()
        {
            tracing::warn!("reading the topics log: {e}");
        }
        self.catalog.read().topics.get(name).cloned()
    }

    /// [`get`](Self::get), awaiting the topics log instead of blocking on it.
    async fn get_async(&self, name: &TopicName) -> Option<TopicMeta> {
        if let Some(t) = self.catalog.read().topics.get(name) {
            return Some(t.clone());
        }
        if self.stale()
            && let Err(e) = self.sync_catalog().await
        {
            tracing::warn!("reading the topics log: {e}");
        }
        self.catalog.read().topics.get(name).cloned()
    }

    fn stale(&self) -> bool {
        self.last_sync.lock().is_none_or(|t| t.elapsed() > Duration::from_secs(1))
    }

    async fn partition(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<(TopicMeta, Arc<Partition>), StorageError> {
        let meta = self.get_async(name).await.ok_or(StorageError::UnknownTopicOrPartition)?;
        if partition < 0 || partition >= meta.partitions {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        let p = open_partition(&self.partitions, &(name.clone(), meta.id, partition));
        Ok((meta, p))
    }

    async fn on_partition<T: Send + 'static, F>(
        &self,
        name: &TopicName,
        partition: i32,
        f: impl FnOnce(Arc<Shared>, Arc<Partition>, TopicMeta) -> F + Send + 'static,
    ) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let (meta, p) = self.partition(name, partition).await?;
        let shared = self.shared.clone();
        self.run(move || f(shared, p, meta)).await
    }

    /// The partitions open on this host whose topic's configs `select` something from.
    fn open_partitions<T>(
        &self,
        select: impl Fn(&crate::storage::TopicConfig) -> Option<T>,
    ) -> Vec<(Arc<Partition>, T)> {
        let catalog = self.catalog.read();
        self.partitions
            .read()
            .iter()
            .filter_map(|((name, id, _), p)| {
                let t = catalog.topics.get(name).filter(|t| t.id == *id)?;
                select(&t.config).map(|x| (p.clone(), x))
            })
            .collect()
    }

    /// With the admin API: make Pulsar's partitioned topic `name` (and its ingress topic, when
    /// it has one) have `partitions` partitions.
    async fn ensure_partitioned(
        &self,
        name: &TopicName,
        partitions: i32,
        ingress: bool,
    ) -> Result<(), StorageError> {
        let Some(rest) = self.rest.clone() else { return Ok(()) };
        let name = name.clone();
        self.run(move || async move {
            rest.ensure_partitioned(&name, partitions).await?;
            if ingress {
                rest.ensure_partitioned(&ingress::ingress_topic(&name), partitions).await?;
            }
            Ok(())
        })
        .await
    }

    /// Reserve the next block of producer ids (a claim in the producer-ids log).
    async fn reserve_ids(&self, state: &mut IdState) -> Result<(), StorageError> {
        loop {
            let from = state.blocks.end;
            let claim = IdClaim {
                from,
                to: from
                    .checked_add(ID_BLOCK)
                    .ok_or_else(|| StorageError::Unavailable("producer ids exhausted".into()))?,
            };
            let log = self.ids_log.clone();
            let claims = self
                .run(move || async move {
                    let mut claims = Vec::new();
                    log.lock()
                        .await
                        .append(&claim, |_, e: Replayed<IdClaim>| claims.extend(e.record()))
                        .await?;
                    Ok(claims)
                })
                .await?;
            let n = claims.len();
            let mut won = false;
            for (i, c) in claims.into_iter().enumerate() {
                let applied = state.blocks.apply(c);
                if i + 1 == n {
                    won = applied && c == claim;
                }
            }
            if won {
                tracing::debug!(from = claim.from, to = claim.to, "reserved a block of producer ids");
                state.next = claim.from;
                state.end = claim.to;
                return Ok(());
            }
        }
    }
}

#[async_trait::async_trait]
impl Log for PulsarLog {
    async fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        config: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        validate_full_name(name)?;
        validate_partitions(partitions)?;
        let parsed = crate::storage::TopicConfig::from_pairs(&self.defaults, config)?;
        let _admin = self.admin.lock().await;
        self.sync_catalog().await?;
        let siblings = self.topics(&name.tenant, &name.namespace);
        check_new_topic(&name.topic, siblings.iter().map(|t| t.name.topic.as_str()))?;
        let mut meta = TopicMeta { name: name.clone(), id: uuid::Uuid::nil(), partitions, config: parsed };
        if validate_only {
            return Ok(meta);
        }
        meta.id = uuid::Uuid::new_v4();
        self.ensure_partitioned(name, partitions, meta.config.ingress).await?;
        let record = TopicRecord::Create {
            tenant: name.tenant.clone(),
            namespace: name.namespace.clone(),
            topic: name.topic.clone(),
            id: meta.id.to_string(),
            partitions,
            config: meta.config.overrides.clone(),
        };
        if !self.append_topic_record(record).await? {
            return Err(StorageError::TopicAlreadyExists(name.topic.clone()));
        }
        Ok(meta)
    }

    async fn delete_topic(&self, name: &TopicName) -> Result<(), StorageError> {
        let _admin = self.admin.lock().await;
        self.sync_catalog().await?;
        let meta =
            self.catalog.read().topics.get(name).cloned().ok_or(StorageError::UnknownTopicOrPartition)?;
        let record = TopicRecord::Delete {
            tenant: name.tenant.clone(),
            namespace: name.namespace.clone(),
            topic: name.topic.clone(),
            id: meta.id.to_string(),
        };
        if !self.append_topic_record(record).await? {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        let closed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write();
            let keys: Vec<_> =
                parts.keys().filter(|(n, id, _)| n == name && *id == meta.id).cloned().collect();
            keys.iter().filter_map(|k| parts.remove(k)).collect()
        };
        let (rest, topic) = (self.rest.clone(), name.clone());
        self.run(move || async move {
            for p in closed {
                p.close().await;
            }
            // The deletion stands in Kafka's terms whatever Pulsar answers: say so and go on.
            if let Some(rest) = rest {
                for t in [topic.clone(), ingress::ingress_topic(&topic)] {
                    if let Err(e) = rest.delete_partitioned(&t).await {
                        tracing::warn!(topic = %t, "the topic is deleted, but its Pulsar topics are not: {e}");
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn create_partitions(
        &self,
        name: &TopicName,
        total: i32,
        validate_only: bool,
    ) -> Result<(), StorageError> {
        let _admin = self.admin.lock().await;
        self.sync_catalog().await?;
        let meta =
            self.catalog.read().topics.get(name).cloned().ok_or(StorageError::UnknownTopicOrPartition)?;
        validate_growth(meta.partitions, total)?;
        if validate_only {
            return Ok(());
        }
        self.ensure_partitioned(name, total, meta.config.ingress).await?;
        let record = TopicRecord::Partitions {
            tenant: name.tenant.clone(),
            namespace: name.namespace.clone(),
            topic: name.topic.clone(),
            id: meta.id.to_string(),
            partitions: total,
        };
        if !self.append_topic_record(record).await? {
            return Err(StorageError::InvalidPartitions("the topic changed meanwhile".into()));
        }
        Ok(())
    }

    async fn alter_topic_config(
        &self,
        name: &TopicName,
        change: &crate::storage::ConfigChange,
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        let _admin = self.admin.lock().await;
        self.sync_catalog().await?;
        let mut meta =
            self.catalog.read().topics.get(name).cloned().ok_or(StorageError::UnknownTopicOrPartition)?;
        let had_ingress = meta.config.ingress;
        meta.config = meta.config.changed(&self.defaults, change)?;
        if validate_only {
            return Ok(meta);
        }
        if let Some(rest) = self.rest.clone()
            && meta.config.ingress
            && !had_ingress
        {
            let (name, partitions) = (ingress::ingress_topic(name), meta.partitions);
            self.run(move || async move { rest.ensure_partitioned(&name, partitions).await }).await?;
        }
        let record = TopicRecord::Config {
            tenant: name.tenant.clone(),
            namespace: name.namespace.clone(),
            topic: name.topic.clone(),
            id: meta.id.to_string(),
            config: meta.config.overrides.clone(),
        };
        if !self.append_topic_record(record).await? {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        Ok(meta)
    }

    fn topic(&self, name: &TopicName) -> Option<TopicMeta> {
        self.get(name)
    }

    fn topic_by_id(&self, tenant: &str, namespace: &str, id: uuid::Uuid) -> Option<TopicMeta> {
        self.topics(tenant, namespace).into_iter().find(|t| t.id == id)
    }

    fn topics(&self, tenant: &str, namespace: &str) -> Vec<TopicMeta> {
        let from = TopicName::new(tenant, namespace, "");
        self.catalog
            .read()
            .topics
            .range(from..)
            .take_while(|(n, _)| n.tenant == tenant && n.namespace == namespace)
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn tenants_with(&self, namespace: &str, topic: &str) -> Vec<String> {
        crate::storage::tenants_with(self.catalog.read().topics.keys(), namespace, topic)
    }

    fn defaults(&self) -> &LogDefaults {
        &self.defaults
    }

    /// Topics with `cleanup.policy=compact` are compacted by their partitions' owner (see
    /// `partition::compact`).
    fn compacts(&self) -> bool {
        true
    }

    async fn append_with(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        how: crate::storage::Append,
    ) -> Result<AppendInfo, StorageError> {
        self.on_partition(name, partition, move |shared, p, meta| async move {
            let records = crate::storage::conform(&meta.config, records)?;
            let batches = batch::validate_with(&records, meta.config.max_message_bytes, how.counts)?;
            if meta.config.cleanup_policy.compact {
                let max = crate::storage::max_decompressed(&meta.config);
                crate::storage::compaction::check_keys(&records, &batches, &meta.name, partition, max)?;
            }
            p.append(&shared, records, batches, meta.config.entry_format, how).await
        })
        .await
    }

    async fn producer_precheck(
        &self,
        name: &TopicName,
        partition: i32,
        header: &batch::BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let header = *header;
        self.on_partition(
            name,
            partition,
            move |shared, p, _| async move { p.precheck(&shared, &header).await },
        )
        .await
    }

    /// At read_committed, up to the last stable offset, with the aborted transactions.
    async fn read_with(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: crate::storage::Isolation,
    ) -> Result<ReadResult, StorageError> {
        self.on_partition(name, partition, move |shared, p, _| async move {
            p.read(&shared, offset, max_bytes, min_one, isolation).await
        })
        .await
    }

    async fn last_stable_offset(&self, name: &TopicName, partition: i32) -> Result<i64, StorageError> {
        self.on_partition(name, partition, |shared, p, _| async move { p.last_stable_offset(&shared).await })
            .await
    }

    async fn write_marker(
        &self,
        name: &TopicName,
        partition: i32,
        marker: crate::storage::TxnMarker,
    ) -> Result<AppendInfo, StorageError> {
        self.on_partition(name, partition, move |shared, p, meta| async move {
            let (records, batches) = crate::storage::marker_records(&meta.config, &marker)?;
            p.write_marker(&shared, records, batches, &marker).await
        })
        .await
    }

    async fn register_txn(
        &self,
        name: &TopicName,
        partition: i32,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), StorageError> {
        self.on_partition(name, partition, move |shared, p, _| async move {
            p.register_txn(&shared, producer_id, epoch).await
        })
        .await
    }

    fn supports_transactions(&self) -> bool {
        true
    }

    async fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError> {
        self.on_partition(name, partition, |shared, p, _| async move {
            p.ensure_open(&shared).await?;
            Ok(p.offsets())
        })
        .await
    }

    async fn delete_records(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
    ) -> Result<i64, StorageError> {
        self.on_partition(name, partition, move |shared, p, meta| async move {
            crate::storage::check_delete_records(&meta)?;
            p.ensure_open(&shared).await?;
            p.delete_records(&shared, offset).await
        })
        .await
    }

    async fn report(&self, name: &TopicName, partition: i32) -> Result<PartitionReport, StorageError> {
        self.on_partition(name, partition, |shared, p, _| async move {
            p.ensure_open(&shared).await?;
            Ok(p.report().await)
        })
        .await
    }

    /// The Pulsar service URL: the volume's sizes are Pulsar's (BookKeeper's) to know.
    fn log_dir(&self) -> LogDirReport {
        LogDirReport { path: self.url.clone(), total_bytes: None, usable_bytes: None }
    }

    async fn offset_for_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.on_partition(name, partition, move |shared, p, _| async move {
            p.offset_for_timestamp(&shared, ts).await
        })
        .await
    }

    async fn max_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.on_partition(name, partition, |shared, p, _| async move { p.max_timestamp(&shared).await }).await
    }

    async fn subscribe(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<i64>, StorageError> {
        self.on_partition(name, partition, |shared, p, _| async move {
            p.ensure_open(&shared).await?;
            Ok(p.subscribe())
        })
        .await
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let open = self.open_partitions(|c| {
            (c.cleanup_policy.delete && (c.retention_ms >= 0 || c.retention_bytes >= 0))
                .then_some((c.retention_ms, c.retention_bytes))
        });
        if open.is_empty() {
            return Ok(0);
        }
        let shared = self.shared.clone();
        self.run(move || async move {
            let mut removed = 0;
            for (p, (ms, bytes)) in open {
                match p.apply_retention(&shared, ms, bytes, now_ms).await {
                    Ok(n) => removed += n,
                    Err(e) => tracing::warn!(topic = %p.topic, "retention: {e}"),
                }
            }
            Ok(removed)
        })
        .await
    }

    /// A compaction pass over every partition of a compacted topic that this host has open
    /// (see `partition::compact`); one that fails is logged and the others still run.
    async fn clean(&self, now_ms: i64) -> Result<crate::storage::CleanStats, StorageError> {
        let open = self.open_partitions(|c| {
            c.cleanup_policy.compact.then(|| (crate::storage::compaction::CleanConfig::of(c), c.entry_format))
        });
        if open.is_empty() {
            return Ok(crate::storage::CleanStats::default());
        }
        let shared = self.shared.clone();
        self.run(move || async move {
            let mut stats = crate::storage::CleanStats::default();
            let mut first_error = None;
            for (p, (config, format)) in open {
                match p.compact(&shared, &config, format, now_ms).await {
                    Ok(Some(s)) => stats.add(s),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(topic = %p.topic, "compaction failed: {e}");
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(stats),
            }
        })
        .await
    }

    /// Pulsar acknowledges a message once the bookies have persisted it: nothing to do.
    async fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn allocate_producer_id(&self) -> Result<i64, StorageError> {
        let mut state = self.ids.lock().await;
        if state.next >= state.end {
            self.reserve_ids(&mut state)
                .await
                .inspect_err(|e| tracing::error!("reserving producer ids: {e}"))?;
        }
        let id = state.next;
        state.next += 1;
        Ok(id)
    }

    async fn bump_producer_epoch(&self, producer_id: i64, epoch: i16) -> Result<Option<i16>, StorageError> {
        // An id past every claimed block was never handed out by any host of this cluster.
        if producer_id >= self.ids.lock().await.blocks.end {
            return Ok(None);
        }
        Ok(self.shared.epochs.bump(producer_id, epoch))
    }

    fn module_store(&self) -> Option<Arc<dyn crate::storage::ModuleStore>> {
        Some(self.modules.clone())
    }

    /// Serve the ingress topics (see `ingress`): on the caller's runtime, so that the front
    /// ends' transforms run where they always do.
    fn serve_ingress(&self, front: std::sync::Weak<dyn Log>) {
        self.ingress.start(
            front,
            Arc::downgrade(&self.catalog),
            Arc::downgrade(&self.partitions),
            Arc::downgrade(&self.shared),
        );
    }
}

/// The partition of `key` (topic, topic id, partition) in `partitions`, added if missing (it
/// opens at its first use).
fn open_partition(partitions: &RwLock<PartitionMap>, key: &(TopicName, uuid::Uuid, i32)) -> Arc<Partition> {
    if let Some(p) = partitions.read().get(key) {
        return p.clone();
    }
    let topic = crate::pulsar::topic::pulsar_name(&key.0, Some(key.2));
    partitions.write().entry(key.clone()).or_insert_with(|| Arc::new(Partition::new(topic, key.1))).clone()
}

/// Drop the fetch readers idle for [`partition::CURSOR_IDLE`] (each holds prefetched messages),
/// until the log goes.
async fn sweep_cursors(partitions: std::sync::Weak<RwLock<PartitionMap>>) {
    loop {
        tokio::time::sleep(CURSOR_SWEEP).await;
        let Some(partitions) = partitions.upgrade() else { return };
        let open: Vec<Arc<Partition>> = partitions.read().values().cloned().collect();
        drop(partitions);
        for p in open {
            if p.evict_idle_cursor(partition::CURSOR_IDLE) {
                tracing::debug!(topic = %p.topic, "dropped an idle fetch reader");
            }
        }
    }
}

impl Drop for PulsarLog {
    fn drop(&mut self) {
        // Partitions and metadata logs hold Pulsar objects: drop them while the runtime lives.
        self.ingress.stop();
        self.partitions.write().clear();
    }
}
