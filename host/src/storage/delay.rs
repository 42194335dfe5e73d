//! Wrappers of the [`Log`](super::Log) port that change only how appends are made (the tenant
//! transforms' append door, the benchmarks' delay) implement every other method by delegating
//! with [`delegate_log!`], instead of writing the same dozen forwards each.

/// Inside `impl Log for W`, every method but `append_counted` (and the provided `append` and
/// `append_host`), forwarded to `self.$inner()`, a `&dyn Log`.
macro_rules! delegate_log {
    ($inner:ident) => {
        fn create_topic(
            &self,
            name: &$crate::storage::TopicName,
            partitions: i32,
            config: &[(String, String)],
            validate_only: bool,
        ) -> Result<$crate::storage::TopicMeta, $crate::storage::StorageError> {
            self.$inner().create_topic(name, partitions, config, validate_only)
        }

        fn delete_topic(
            &self,
            name: &$crate::storage::TopicName,
        ) -> Result<(), $crate::storage::StorageError> {
            self.$inner().delete_topic(name)
        }

        fn create_partitions(
            &self,
            name: &$crate::storage::TopicName,
            total: i32,
            validate_only: bool,
        ) -> Result<(), $crate::storage::StorageError> {
            self.$inner().create_partitions(name, total, validate_only)
        }

        fn topic(&self, name: &$crate::storage::TopicName) -> Option<$crate::storage::TopicMeta> {
            self.$inner().topic(name)
        }

        fn topic_by_id(
            &self,
            tenant: &str,
            namespace: &str,
            id: uuid::Uuid,
        ) -> Option<$crate::storage::TopicMeta> {
            self.$inner().topic_by_id(tenant, namespace, id)
        }

        fn topics(&self, tenant: &str, namespace: &str) -> Vec<$crate::storage::TopicMeta> {
            self.$inner().topics(tenant, namespace)
        }

        fn defaults(&self) -> &$crate::storage::LogDefaults {
            self.$inner().defaults()
        }

        fn producer_precheck(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            header: &$crate::record::batch::BatchHeader,
        ) -> Result<Option<(i64, i64)>, $crate::storage::StorageError> {
            self.$inner().producer_precheck(name, partition, header)
        }

        fn read(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            offset: i64,
            max_bytes: usize,
            min_one: bool,
        ) -> Result<$crate::storage::ReadResult, $crate::storage::StorageError> {
            self.$inner().read(name, partition, offset, max_bytes, min_one)
        }

        fn offsets(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<(i64, i64), $crate::storage::StorageError> {
            self.$inner().offsets(name, partition)
        }

        fn offset_for_timestamp(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            ts: i64,
        ) -> Result<Option<(i64, i64)>, $crate::storage::StorageError> {
            self.$inner().offset_for_timestamp(name, partition, ts)
        }

        fn max_timestamp(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<Option<(i64, i64)>, $crate::storage::StorageError> {
            self.$inner().max_timestamp(name, partition)
        }

        fn subscribe(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<tokio::sync::watch::Receiver<i64>, $crate::storage::StorageError> {
            self.$inner().subscribe(name, partition)
        }

        fn enforce_retention(&self, now_ms: i64) -> Result<usize, $crate::storage::StorageError> {
            self.$inner().enforce_retention(now_ms)
        }

        fn flush(&self) -> Result<(), $crate::storage::StorageError> {
            self.$inner().flush()
        }

        fn allocate_producer_id(&self) -> Result<i64, $crate::storage::StorageError> {
            self.$inner().allocate_producer_id()
        }

        fn bump_producer_epoch(
            &self,
            producer_id: i64,
            epoch: i16,
        ) -> Result<Option<i16>, $crate::storage::StorageError> {
            self.$inner().bump_producer_epoch(producer_id, epoch)
        }

        fn module_store(&self) -> Option<std::sync::Arc<dyn $crate::storage::ModuleStore>> {
            self.$inner().module_store()
        }
    };
}
pub(crate) use delegate_log;

/// The log, with every append (and only appends) taking `delay` longer: a stand-in for a slow
/// or remote store, for benchmarks of how the host behaves when storage is slow. The wait blocks
/// the calling thread, as a synchronous store's I/O does.
pub struct DelayedLog {
    inner: std::sync::Arc<dyn super::Log>,
    delay: std::time::Duration,
}

impl DelayedLog {
    pub fn new(inner: std::sync::Arc<dyn super::Log>, delay: std::time::Duration) -> Self {
        DelayedLog { inner, delay }
    }

    fn inner(&self) -> &dyn super::Log {
        &*self.inner
    }
}

impl super::Log for DelayedLog {
    delegate_log!(inner);

    fn append_counted(
        &self,
        name: &super::TopicName,
        partition: i32,
        records: bytes::Bytes,
        counts: crate::record::batch::Counts,
    ) -> Result<super::AppendInfo, super::StorageError> {
        std::thread::sleep(self.delay);
        self.inner.append_counted(name, partition, records, counts)
    }
}
