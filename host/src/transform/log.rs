//! The one append door: the [`Log`] the front ends hold. A produce (Kafka's through the
//! translator, Pulsar's SEND) goes through the transform bound to its topic; everything else,
//! and the host's own appends (`append_host`: a transform's outputs), go to the raw log as they
//! are. Internal services (the coordinator, the Pulsar cursor store, the module store) are
//! handed the raw log, so nothing they write is transformed.

use super::Transforms;
use crate::record::batch::{BatchHeader, Counts};
use crate::storage::{
    AppendInfo, Log, LogDefaults, ModuleStore, ReadResult, StorageError, TopicMeta, TopicName,
};
use bytes::Bytes;
use std::sync::Arc;

pub(super) struct TransformingLog {
    pub(super) transforms: Arc<Transforms>,
}

impl TransformingLog {
    fn raw(&self) -> &dyn Log {
        &*self.transforms.shared.log
    }
}

impl Log for TransformingLog {
    fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        config: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        self.raw().create_topic(name, partitions, config, validate_only)
    }

    fn delete_topic(&self, name: &TopicName) -> Result<(), StorageError> {
        self.raw().delete_topic(name)
    }

    fn create_partitions(
        &self,
        name: &TopicName,
        total: i32,
        validate_only: bool,
    ) -> Result<(), StorageError> {
        self.raw().create_partitions(name, total, validate_only)
    }

    fn topic(&self, name: &TopicName) -> Option<TopicMeta> {
        self.raw().topic(name)
    }

    fn topic_by_id(&self, tenant: &str, namespace: &str, id: uuid::Uuid) -> Option<TopicMeta> {
        self.raw().topic_by_id(tenant, namespace, id)
    }

    fn topics(&self, tenant: &str, namespace: &str) -> Vec<TopicMeta> {
        self.raw().topics(tenant, namespace)
    }

    fn defaults(&self) -> &LogDefaults {
        self.raw().defaults()
    }

    fn append_counted(
        &self,
        name: &TopicName,
        partition: i32,
        records: Bytes,
        counts: Counts,
    ) -> Result<AppendInfo, StorageError> {
        match counts {
            // A client's produce.
            Counts::Exact => self.transforms.append(name, partition, records),
            // Batches the host built itself are never transformed again.
            Counts::Span => self.raw().append_counted(name, partition, records, counts),
        }
    }

    fn producer_precheck(
        &self,
        name: &TopicName,
        partition: i32,
        header: &BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.raw().producer_precheck(name, partition, header)
    }

    fn read(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.raw().read(name, partition, offset, max_bytes, min_one)
    }

    fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError> {
        self.raw().offsets(name, partition)
    }

    fn offset_for_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.raw().offset_for_timestamp(name, partition, ts)
    }

    fn max_timestamp(&self, name: &TopicName, partition: i32) -> Result<Option<(i64, i64)>, StorageError> {
        self.raw().max_timestamp(name, partition)
    }

    fn subscribe(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<i64>, StorageError> {
        self.raw().subscribe(name, partition)
    }

    fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        self.raw().enforce_retention(now_ms)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.raw().flush()
    }

    fn allocate_producer_id(&self) -> Result<i64, StorageError> {
        self.raw().allocate_producer_id()
    }

    fn bump_producer_epoch(&self, producer_id: i64, epoch: i16) -> Result<Option<i16>, StorageError> {
        self.raw().bump_producer_epoch(producer_id, epoch)
    }

    fn module_store(&self) -> Option<Arc<dyn ModuleStore>> {
        self.raw().module_store()
    }
}
