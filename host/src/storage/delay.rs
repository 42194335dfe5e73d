//! Wrappers of the [`Log`](super::Log) port that change only how appends are made (the tenant
//! transforms' append door, the benchmarks' delay) implement every other method by delegating
//! with [`delegate_log!`], instead of writing the same dozen forwards each.

/// `impl Log for $ty` with the methods given in braces (`append_with`, at least) and every
/// other one (but the provided `append`, `append_host`, `append_ingress` and `read`, which
/// call the forwarded `append_with` and `read_with`) forwarded to `self.$inner()`, a
/// `&dyn Log`. The macro writes the whole impl because `#[async_trait]` must see every method.
macro_rules! delegate_log {
    ($ty:ty, $inner:ident, { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::storage::Log for $ty {
        $($own)*
        async fn create_topic(
            &self,
            name: &$crate::storage::TopicName,
            partitions: i32,
            config: &[(String, String)],
            validate_only: bool,
        ) -> Result<$crate::storage::TopicMeta, $crate::storage::StorageError> {
            self.$inner().create_topic(name, partitions, config, validate_only).await
        }

        async fn delete_topic(
            &self,
            name: &$crate::storage::TopicName,
        ) -> Result<(), $crate::storage::StorageError> {
            self.$inner().delete_topic(name).await
        }

        async fn create_partitions(
            &self,
            name: &$crate::storage::TopicName,
            total: i32,
            validate_only: bool,
        ) -> Result<(), $crate::storage::StorageError> {
            self.$inner().create_partitions(name, total, validate_only).await
        }

        async fn alter_topic_config(
            &self,
            name: &$crate::storage::TopicName,
            change: &$crate::storage::ConfigChange,
            validate_only: bool,
        ) -> Result<$crate::storage::TopicMeta, $crate::storage::StorageError> {
            self.$inner().alter_topic_config(name, change, validate_only).await
        }

        async fn delete_records(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            offset: i64,
        ) -> Result<i64, $crate::storage::StorageError> {
            self.$inner().delete_records(name, partition, offset).await
        }

        async fn report(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<$crate::storage::PartitionReport, $crate::storage::StorageError> {
            self.$inner().report(name, partition).await
        }

        fn log_dir(&self) -> $crate::storage::LogDirReport {
            self.$inner().log_dir()
        }

        fn compacts(&self) -> bool {
            self.$inner().compacts()
        }

        fn serve_ingress(&self, front: std::sync::Weak<dyn $crate::storage::Log>) {
            self.$inner().serve_ingress(front)
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

        async fn producer_precheck(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            header: &$crate::record::batch::BatchHeader,
        ) -> Result<Option<(i64, i64)>, $crate::storage::StorageError> {
            self.$inner().producer_precheck(name, partition, header).await
        }

        async fn read_with(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            offset: i64,
            max_bytes: usize,
            min_one: bool,
            isolation: $crate::storage::Isolation,
        ) -> Result<$crate::storage::ReadResult, $crate::storage::StorageError> {
            self.$inner().read_with(name, partition, offset, max_bytes, min_one, isolation).await
        }

        async fn offsets(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<(i64, i64), $crate::storage::StorageError> {
            self.$inner().offsets(name, partition).await
        }

        async fn last_stable_offset(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<i64, $crate::storage::StorageError> {
            self.$inner().last_stable_offset(name, partition).await
        }

        async fn write_marker(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            marker: $crate::storage::TxnMarker,
        ) -> Result<$crate::storage::AppendInfo, $crate::storage::StorageError> {
            self.$inner().write_marker(name, partition, marker).await
        }

        fn tenants_with(&self, namespace: &str, topic: &str) -> Vec<String> {
            self.$inner().tenants_with(namespace, topic)
        }

        async fn register_txn(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            producer_id: i64,
            epoch: i16,
        ) -> Result<(), $crate::storage::StorageError> {
            self.$inner().register_txn(name, partition, producer_id, epoch).await
        }

        fn supports_transactions(&self) -> bool {
            self.$inner().supports_transactions()
        }

        async fn offset_for_timestamp(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
            ts: i64,
        ) -> Result<Option<(i64, i64)>, $crate::storage::StorageError> {
            self.$inner().offset_for_timestamp(name, partition, ts).await
        }

        async fn max_timestamp(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<Option<(i64, i64)>, $crate::storage::StorageError> {
            self.$inner().max_timestamp(name, partition).await
        }

        async fn subscribe(
            &self,
            name: &$crate::storage::TopicName,
            partition: i32,
        ) -> Result<tokio::sync::watch::Receiver<i64>, $crate::storage::StorageError> {
            self.$inner().subscribe(name, partition).await
        }

        async fn enforce_retention(&self, now_ms: i64) -> Result<usize, $crate::storage::StorageError> {
            self.$inner().enforce_retention(now_ms).await
        }

        async fn clean(&self, now_ms: i64) -> Result<$crate::storage::CleanStats, $crate::storage::StorageError> {
            self.$inner().clean(now_ms).await
        }

        async fn flush(&self) -> Result<(), $crate::storage::StorageError> {
            self.$inner().flush().await
        }

        async fn allocate_producer_id(&self) -> Result<i64, $crate::storage::StorageError> {
            self.$inner().allocate_producer_id().await
        }

        async fn bump_producer_epoch(
            &self,
            producer_id: i64,
            epoch: i16,
        ) -> Result<Option<i16>, $crate::storage::StorageError> {
            self.$inner().bump_producer_epoch(producer_id, epoch).await
        }

        fn module_store(&self) -> Option<std::sync::Arc<dyn $crate::storage::ModuleStore>> {
            self.$inner().module_store()
        }
        }
    };
}
pub(crate) use delegate_log;

/// The log, with every append (and only appends) taking `delay` longer: a stand-in for a slow
/// or remote store, for benchmarks of how the host behaves when storage is slow. The wait is a
/// timer, as a remote store's network round trip is: it holds no thread.
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

delegate_log!(DelayedLog, inner, {
    async fn append_with(
        &self,
        name: &super::TopicName,
        partition: i32,
        records: bytes::Bytes,
        how: super::Append,
    ) -> Result<super::AppendInfo, super::StorageError> {
        tokio::time::sleep(self.delay).await;
        self.inner.append_with(name, partition, records, how).await
    }
});
