//! The embedded log: per-partition segment files of Kafka record batches on local disk.
//!
//! Layout: `<data_dir>/topics/<tenant>/<namespace>/<topic>/topic.json` (id, partition count,
//! config overrides) and `<topic>/<partition>/<20-digit base offset>.log`. Batches are stored as
//! received, with their base offset patched in. The sparse offset index is kept in memory and
//! rebuilt at open by scanning batch headers; the last segment of each partition is also
//! CRC-checked and a torn or corrupt tail is cut off.
//!
//! With the every-batch fsync policy an append is fsynced before it is published; otherwise
//! flush() syncs what was written. An append that fails (full disk, read-only file system, failed
//! fsync) leaves nothing behind: its bytes are cut off, a segment it started is removed, and the
//! next append lands at the same offsets (see `Partition::append`). Retention deletes whole old
//! segments and moves the log start offset. The cleaner (`cleaner`) compacts the inactive
//! segments of topics with `cleanup.policy=compact`: offsets are never renumbered, so batches
//! may then have gaps between them.
//!
//! Idempotent and transactional producers: ids come from `<data_dir>/producer-ids` (blocks
//! reserved durably, see `producer_ids`); each partition checks sequences and transaction state
//! on append, stores the transaction coordinator's markers (`write_marker`), and rebuilds its
//! producer state — open and aborted transactions too — from the stored batches at open (see
//! `storage::producers`). Read-committed reads stop at the last stable offset.

mod cleaner;
mod log_start;
mod partition;
mod producer_ids;
mod segment;
mod store;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;

use crate::record::batch;
use crate::storage::producers::ProducerEpochs;
use crate::storage::{
    AppendInfo, CleanStats, ConfigChange, FsyncPolicy, Isolation, Log, LogDefaults, LogDirReport,
    PartitionReport, ReadResult, StorageError, TopicConfig, TopicMeta, TopicName, TxnMarker,
};
use crate::tenant::names::{check_new_topic, validate_full_name, validate_growth, validate_partitions};
use parking_lot::{Mutex, RwLock};
use partition::{Partition, PartitionConfig};
use producer_ids::ProducerIds;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{Layout, TopicFile};

/// The embedded implementation of the [`Log`] port.
pub struct EmbeddedLog {
    layout: Layout,
    defaults: LogDefaults,
    topics: RwLock<BTreeMap<TopicName, Arc<Topic>>>,
    /// Serializes create, delete and create-partitions (directory changes).
    admin: Mutex<()>,
    producer_ids: ProducerIds,
    /// The latest epoch of each idempotent producer id, host-wide.
    epochs: ProducerEpochs,
}

/// A loaded topic. Replaced as a whole when its partition count changes.
struct Topic {
    meta: TopicMeta,
    dir: PathBuf,
    partitions: Vec<Arc<Partition>>,
}

impl Topic {
    fn file(&self) -> TopicFile {
        TopicFile {
            id: self.meta.id.to_string(),
            partitions: self.meta.partitions,
            config: self.meta.config.overrides.clone(),
        }
    }
}

fn partition_config(config: &TopicConfig) -> PartitionConfig {
    // Kafka's `LogConfig.maxSegmentMs`: a compacted topic rolls by max.compaction.lag.ms too,
    // else records in the active segment could wait longer than that to be compacted.
    let segment_ms = if config.cleanup_policy.compact && config.max_compaction_lag_ms > 0 {
        config.segment_ms.min(config.max_compaction_lag_ms)
    } else {
        config.segment_ms
    };
    PartitionConfig {
        segment_bytes: config.segment_bytes,
        segment_ms,
        index_interval_bytes: config.index_interval_bytes,
    }
}

impl EmbeddedLog {
    /// Open (or create) the log under `data_dir` and load every topic: each partition's last
    /// segment is CRC-checked and a torn tail is truncated.
    pub fn open(data_dir: &Path, defaults: LogDefaults) -> Result<EmbeddedLog, StorageError> {
        let layout = Layout::open(data_dir)?;
        let mut topics = BTreeMap::new();
        let mut partitions = 0usize;
        for (name, dir) in layout.topic_dirs()? {
            let Some(file) = store::read_topic_file(&dir)? else {
                tracing::warn!(dir = %dir.display(), "skipping a topic directory without topic.json (an unfinished creation)");
                continue;
            };
            let topic = load_topic(&defaults, name.clone(), dir, file)?;
            partitions += topic.partitions.len();
            topics.insert(name, Arc::new(topic));
        }
        let producer_ids = ProducerIds::open(data_dir)?;
        let epochs = ProducerEpochs::default();
        for p in topics.values().flat_map(|t: &Arc<Topic>| t.partitions.iter()) {
            for (pid, epoch) in p.producer_epochs() {
                epochs.observe(pid, epoch);
            }
        }
        tracing::info!(dir = %data_dir.display(), topics = topics.len(), partitions, "opened the embedded log");
        Ok(EmbeddedLog {
            layout,
            defaults,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            producer_ids,
            epochs,
        })
    }

    /// Whether `more` partitions fit under `max_partitions` (each holds an open file).
    fn check_partition_cap(&self, more: i32) -> Result<(), StorageError> {
        let have: usize = self.topics.read().values().map(|t| t.partitions.len()).sum();
        let cap = self.defaults.max_partitions;
        if have.saturating_add(usize::try_from(more).unwrap_or(0)) > cap {
            return Err(StorageError::PolicyViolation(format!(
                "the host holds {have} partitions; {more} more would exceed max_partitions ({cap})"
            )));
        }
        Ok(())
    }

    fn get(&self, name: &TopicName) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    fn partition(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<(Arc<Topic>, Arc<Partition>), StorageError> {
        let topic = self.get(name).ok_or(StorageError::UnknownTopicOrPartition)?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .cloned()
            .ok_or(StorageError::UnknownTopicOrPartition)?;
        Ok((topic, p))
    }

    /// The topics of one tenant and namespace, in name order.
    fn in_namespace(&self, tenant: &str, namespace: &str) -> Vec<Arc<Topic>> {
        let from = TopicName::new(tenant, namespace, "");
        self.topics
            .read()
            .range(from..)
            .take_while(|(n, _)| n.tenant == tenant && n.namespace == namespace)
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn open_partitions(
        dir: &Path,
        config: &TopicConfig,
        range: std::ops::Range<i32>,
    ) -> io::Result<Vec<Arc<Partition>>> {
        range
            .map(|p| {
                let pdir = store::partition_dir(dir, p);
                store::prepare_partition_dir(&pdir)?;
                Partition::open(&pdir, partition_config(config)).map(Arc::new)
            })
            .collect()
    }
}

fn load_topic(
    defaults: &LogDefaults,
    name: TopicName,
    dir: PathBuf,
    file: TopicFile,
) -> Result<Topic, StorageError> {
    let invalid =
        |what: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", dir.display()));
    let id = uuid::Uuid::parse_str(&file.id).map_err(|e| invalid(format!("bad topic id: {e}")))?;
    validate_partitions(file.partitions).map_err(|e| invalid(e.to_string()))?;
    let pairs: Vec<(String, String)> = file.config.into_iter().collect();
    let config = TopicConfig::from_pairs(defaults, &pairs).map_err(|e| invalid(e.to_string()))?;
    let partitions = (0..file.partitions)
        .map(|p| Partition::open(&store::partition_dir(&dir, p), partition_config(&config)).map(Arc::new))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Topic { meta: TopicMeta { name, id, partitions: file.partitions, config }, dir, partitions })
}

/// The engine's calls, synchronous: page-cache reads and writes (and an fsync per batch under
/// that policy). The [`Log`] port's async methods below run them in place.
impl EmbeddedLog {
    pub fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        config: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        validate_full_name(name)?;
        validate_partitions(partitions)?;
        let config = TopicConfig::from_pairs(&self.defaults, config)?;
        let _admin = self.admin.lock();
        let siblings = self.in_namespace(&name.tenant, &name.namespace);
        check_new_topic(&name.topic, siblings.iter().map(|t| t.meta.name.topic.as_str()))?;
        self.check_partition_cap(partitions)?;
        let mut meta = TopicMeta { name: name.clone(), id: uuid::Uuid::nil(), partitions, config };
        if validate_only {
            return Ok(meta);
        }
        meta.id = uuid::Uuid::new_v4();

        let dir = self.layout.topic_dir(name);
        store::prepare_topic_dir(&dir)?;
        let created = Self::open_partitions(&dir, &meta.config, 0..partitions).and_then(|parts| {
            let topic = Topic { meta: meta.clone(), dir: dir.clone(), partitions: parts };
            store::write_topic_file(&dir, &topic.file())?;
            Ok(topic)
        });
        match created {
            Ok(topic) => {
                self.topics.write().insert(name.clone(), Arc::new(topic));
                Ok(meta)
            }
            Err(e) => {
                if let Err(cleanup) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), "cannot clean up after a failed topic creation: {cleanup}");
                }
                Err(e.into())
            }
        }
    }

    pub fn delete_topic(&self, name: &TopicName) -> Result<(), StorageError> {
        let _admin = self.admin.lock();
        let topic = self.get(name).ok_or(StorageError::UnknownTopicOrPartition)?;
        self.layout.remove_topic_dir(&topic.dir)?;
        self.topics.write().remove(name);
        for p in &topic.partitions {
            p.close();
        }
        Ok(())
    }

    pub fn create_partitions(
        &self,
        name: &TopicName,
        total: i32,
        validate_only: bool,
    ) -> Result<(), StorageError> {
        let _admin = self.admin.lock();
        let topic = self.get(name).ok_or(StorageError::UnknownTopicOrPartition)?;
        let current = topic.meta.partitions;
        validate_growth(current, total)?;
        self.check_partition_cap(total - current)?;
        if validate_only {
            return Ok(());
        }
        let added = Self::open_partitions(&topic.dir, &topic.meta.config, current..total)?;
        let mut partitions = topic.partitions.clone();
        partitions.extend(added);
        let mut meta = topic.meta.clone();
        meta.partitions = total;
        let grown = Topic { meta, dir: topic.dir.clone(), partitions };
        store::write_topic_file(&grown.dir, &grown.file())?;
        self.topics.write().insert(name.clone(), Arc::new(grown));
        Ok(())
    }

    pub fn alter_topic_config(
        &self,
        name: &TopicName,
        change: &ConfigChange,
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        let _admin = self.admin.lock();
        let topic = self.get(name).ok_or(StorageError::UnknownTopicOrPartition)?;
        let mut meta = topic.meta.clone();
        meta.config = topic.meta.config.changed(&self.defaults, change)?;
        if validate_only {
            return Ok(meta);
        }
        let altered =
            Topic { meta: meta.clone(), dir: topic.dir.clone(), partitions: topic.partitions.clone() };
        store::write_topic_file(&altered.dir, &altered.file())?;
        self.topics.write().insert(name.clone(), Arc::new(altered));
        Ok(meta)
    }

    pub fn topic(&self, name: &TopicName) -> Option<TopicMeta> {
        self.get(name).map(|t| t.meta.clone())
    }

    pub fn topic_by_id(&self, tenant: &str, namespace: &str, id: uuid::Uuid) -> Option<TopicMeta> {
        self.in_namespace(tenant, namespace).into_iter().find(|t| t.meta.id == id).map(|t| t.meta.clone())
    }

    pub fn topics(&self, tenant: &str, namespace: &str) -> Vec<TopicMeta> {
        self.in_namespace(tenant, namespace).into_iter().map(|t| t.meta.clone()).collect()
    }

    pub fn defaults(&self) -> &LogDefaults {
        &self.defaults
    }

    /// A client's batches ([`Log::append`], synchronously).
    pub fn append(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
    ) -> Result<AppendInfo, StorageError> {
        self.append_counted(name, partition, records, crate::storage::Append::CLIENT)
    }

    pub fn append_counted(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        how: crate::storage::Append,
    ) -> Result<AppendInfo, StorageError> {
        let (topic, p) = self.partition(name, partition)?;
        let config = &topic.meta.config;
        let records = crate::storage::conform(config, records)?;
        let batches = batch::validate_with(&records, config.max_message_bytes, how.counts)?;
        if config.cleanup_policy.compact {
            cleaner::check_keys(
                &records,
                &batches,
                name,
                partition,
                crate::storage::max_decompressed(config),
            )?;
        }
        // With every-batch, fsynced before the append returns (hence before the produce is
        // acknowledged) and before readers see it; a failed fsync fails the append as a whole.
        let sync = self.defaults.fsync == FsyncPolicy::EveryBatch;
        p.append(&records, &batches, &partition_config(config), sync, &self.epochs, how.unsequenced_txn)
    }

    pub fn producer_precheck(
        &self,
        name: &TopicName,
        partition: i32,
        header: &batch::BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.partition(name, partition)?.1.precheck(header, &self.epochs)
    }

    pub fn read(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.read_with(name, partition, offset, max_bytes, min_one, Isolation::ReadUncommitted)
    }

    pub fn read_with(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<ReadResult, StorageError> {
        self.partition(name, partition)?.1.read(offset, max_bytes, min_one, isolation)
    }

    pub fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError> {
        Ok(self.partition(name, partition)?.1.offsets())
    }

    pub fn last_stable_offset(&self, name: &TopicName, partition: i32) -> Result<i64, StorageError> {
        Ok(self.partition(name, partition)?.1.last_stable_offset())
    }

    /// [`Log::write_marker`]: the marker's control batch (see [`batch::end_txn_marker`]),
    /// stamped now, appended as a client's batch is (the topic's timestamp type, fsync policy
    /// and segment rolling apply; no key check: its record's key is the marker's).
    pub fn write_marker(
        &self,
        name: &TopicName,
        partition: i32,
        marker: TxnMarker,
    ) -> Result<AppendInfo, StorageError> {
        let (topic, p) = self.partition(name, partition)?;
        let config = &topic.meta.config;
        let (records, batches) = crate::storage::marker_records(config, &marker)?;
        let sync = self.defaults.fsync == FsyncPolicy::EveryBatch;
        p.write_marker(&records, &batches, &marker, &partition_config(config), sync, &self.epochs)
    }

    pub fn report(&self, name: &TopicName, partition: i32) -> Result<PartitionReport, StorageError> {
        Ok(self.partition(name, partition)?.1.report())
    }

    /// The topics directory and its volume's size and free space (what an unprivileged
    /// writer may use), as Kafka reports a log dir.
    pub fn log_dir(&self) -> LogDirReport {
        let dir = self.layout.topics_dir();
        let path = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let (total_bytes, usable_bytes) = match rustix::fs::statvfs(dir) {
            Ok(v) => {
                (Some(v.f_blocks.saturating_mul(v.f_frsize)), Some(v.f_bavail.saturating_mul(v.f_frsize)))
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), "statvfs: {e}");
                (None, None)
            }
        };
        LogDirReport { path: path.display().to_string(), total_bytes, usable_bytes }
    }

    pub fn delete_records(&self, name: &TopicName, partition: i32, offset: i64) -> Result<i64, StorageError> {
        let (topic, p) = self.partition(name, partition)?;
        crate::storage::check_delete_records(&topic.meta)?;
        p.delete_records(offset)
    }

    pub fn offset_for_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.partition(name, partition)?.1.offset_for_timestamp(ts)
    }

    pub fn max_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.partition(name, partition)?.1.max_timestamp()
    }

    pub fn subscribe(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<i64>, StorageError> {
        Ok(self.partition(name, partition)?.1.subscribe())
    }

    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let mut deleted = 0;
        for t in topics {
            let c = &t.meta.config;
            if !c.cleanup_policy.delete || (c.retention_ms < 0 && c.retention_bytes < 0) {
                continue;
            }
            for p in &t.partitions {
                deleted += p.apply_retention(c.retention_ms, c.retention_bytes, now_ms)?.0;
            }
        }
        self.close_idle_files();
        Ok(deleted)
    }

    /// Close the files of sealed segments nobody read for `idle_file_close_ms` (by the wall
    /// clock); they are opened again on their next read. Returns how many were closed.
    pub fn close_idle_files(&self) -> usize {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let now = segment::now_ms();
        let closed: usize = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.close_idle_files(now, self.defaults.idle_file_close_ms))
            .sum();
        if closed > 0 {
            tracing::debug!(closed, "closed the files of idle segments");
        }
        closed
    }

    /// One pass of the log cleaner (see `cleaner`) over every partition of every compacted
    /// topic, with each topic's configs as they are now. A partition that fails is logged and
    /// the others are still cleaned; the first error is returned.
    pub fn clean(&self, now_ms: i64) -> Result<CleanStats, StorageError> {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let mut stats = CleanStats::default();
        let mut first_error = None;
        for t in topics {
            if !t.meta.config.cleanup_policy.compact {
                continue;
            }
            let config = cleaner::CleanConfig::of(&t.meta.config);
            for (i, p) in t.partitions.iter().enumerate() {
                let label = format!("{}-{i}", t.meta.name);
                match cleaner::clean_partition(p, &label, &config, now_ms) {
                    Ok(Some(s)) => stats.add(s),
                    Ok(None) => {}
                    // Deleted while it was being cleaned: its files went with it.
                    Err(e) if self.get(&t.meta.name).is_none() => {
                        tracing::debug!(partition = %label, error = %e, "the topic was deleted during its clean");
                    }
                    Err(e) => {
                        tracing::error!(partition = %label, error = %e, "cleaning failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(stats),
        }
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        let partitions: Vec<Arc<Partition>> =
            self.topics.read().values().flat_map(|t| t.partitions.iter().cloned()).collect();
        let (mut first_error, mut failed) = (None, 0usize);
        for p in partitions {
            if let Err(e) = p.flush() {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => {
                // One line per pass, and per period at most: a failing disk fails every
                // partition's flush, every second.
                static FLUSH_FAILURES: crate::logs::Throttle =
                    crate::logs::Throttle::new(crate::logs::PERIOD);
                if let Some(left_out) = FLUSH_FAILURES.hit() {
                    tracing::error!(partitions = failed, left_out, "flushing the log failed: {e}");
                }
                Err(e.into())
            }
            None => Ok(()),
        }
    }

    pub fn allocate_producer_id(&self) -> Result<i64, StorageError> {
        let id = self.producer_ids.allocate().inspect_err(|e| tracing::error!("{e}"))?;
        Ok(id)
    }

    pub fn bump_producer_epoch(&self, producer_id: i64, epoch: i16) -> Result<Option<i16>, StorageError> {
        // An id at or beyond the reserved end was never handed out here (say, a client of a
        // data directory that was wiped): a later allocation could hand it to someone else.
        if producer_id >= self.producer_ids.reserved_end() {
            return Ok(None);
        }
        Ok(self.epochs.bump(producer_id, epoch))
    }
}

#[async_trait::async_trait]
impl Log for EmbeddedLog {
    async fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        config: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        EmbeddedLog::create_topic(self, name, partitions, config, validate_only)
    }

    async fn delete_topic(&self, name: &TopicName) -> Result<(), StorageError> {
        EmbeddedLog::delete_topic(self, name)
    }

    async fn create_partitions(
        &self,
        name: &TopicName,
        total: i32,
        validate_only: bool,
    ) -> Result<(), StorageError> {
        EmbeddedLog::create_partitions(self, name, total, validate_only)
    }

    fn topic(&self, name: &TopicName) -> Option<TopicMeta> {
        EmbeddedLog::topic(self, name)
    }

    fn topic_by_id(&self, tenant: &str, namespace: &str, id: uuid::Uuid) -> Option<TopicMeta> {
        EmbeddedLog::topic_by_id(self, tenant, namespace, id)
    }

    fn topics(&self, tenant: &str, namespace: &str) -> Vec<TopicMeta> {
        EmbeddedLog::topics(self, tenant, namespace)
    }

    fn tenants_with(&self, namespace: &str, topic: &str) -> Vec<String> {
        crate::storage::tenants_with(self.topics.read().keys(), namespace, topic)
    }

    fn defaults(&self) -> &LogDefaults {
        EmbeddedLog::defaults(self)
    }

    fn compacts(&self) -> bool {
        true
    }

    /// The embedded log has no ingress topics: `how.ingress` is never set here.
    async fn append_with(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        how: crate::storage::Append,
    ) -> Result<AppendInfo, StorageError> {
        EmbeddedLog::append_counted(self, name, partition, records, how)
    }

    async fn producer_precheck(
        &self,
        name: &TopicName,
        partition: i32,
        header: &batch::BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        EmbeddedLog::producer_precheck(self, name, partition, header)
    }

    async fn read_with(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<ReadResult, StorageError> {
        EmbeddedLog::read_with(self, name, partition, offset, max_bytes, min_one, isolation)
    }

    async fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError> {
        EmbeddedLog::offsets(self, name, partition)
    }

    async fn last_stable_offset(&self, name: &TopicName, partition: i32) -> Result<i64, StorageError> {
        EmbeddedLog::last_stable_offset(self, name, partition)
    }

    async fn write_marker(
        &self,
        name: &TopicName,
        partition: i32,
        marker: TxnMarker,
    ) -> Result<AppendInfo, StorageError> {
        EmbeddedLog::write_marker(self, name, partition, marker)
    }

    async fn register_txn(
        &self,
        name: &TopicName,
        partition: i32,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), StorageError> {
        self.partition(name, partition)?.1.register_txn(producer_id, epoch);
        Ok(())
    }

    fn supports_transactions(&self) -> bool {
        true
    }

    async fn alter_topic_config(
        &self,
        name: &TopicName,
        change: &ConfigChange,
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        EmbeddedLog::alter_topic_config(self, name, change, validate_only)
    }

    async fn delete_records(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
    ) -> Result<i64, StorageError> {
        EmbeddedLog::delete_records(self, name, partition, offset)
    }

    async fn report(&self, name: &TopicName, partition: i32) -> Result<PartitionReport, StorageError> {
        EmbeddedLog::report(self, name, partition)
    }

    fn log_dir(&self) -> LogDirReport {
        EmbeddedLog::log_dir(self)
    }

    async fn offset_for_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        EmbeddedLog::offset_for_timestamp(self, name, partition, ts)
    }

    async fn max_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        EmbeddedLog::max_timestamp(self, name, partition)
    }

    async fn subscribe(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<i64>, StorageError> {
        EmbeddedLog::subscribe(self, name, partition)
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        EmbeddedLog::enforce_retention(self, now_ms)
    }

    async fn clean(&self, now_ms: i64) -> Result<CleanStats, StorageError> {
        EmbeddedLog::clean(self, now_ms)
    }

    async fn flush(&self) -> Result<(), StorageError> {
        EmbeddedLog::flush(self)
    }

    async fn allocate_producer_id(&self) -> Result<i64, StorageError> {
        EmbeddedLog::allocate_producer_id(self)
    }

    async fn bump_producer_epoch(&self, producer_id: i64, epoch: i16) -> Result<Option<i16>, StorageError> {
        EmbeddedLog::bump_producer_epoch(self, producer_id, epoch)
    }
}
