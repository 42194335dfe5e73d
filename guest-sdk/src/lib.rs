//! The Guise guest SDK.
//!
//! A guest module implements [`Handler`] against the [`Services`] trait and exports it with
//! [`export_protocol_handler!`]. Guest authors never touch generated bindings:
//!
//! * compiled for `wasm32`, the services are the host's WIT imports (`wasm::WasmServices`);
//! * compiled natively, [`stub::StubServices`] is an in-memory host, so the same handler code
//!   unit-tests with plain `cargo test`.
//!
//! A tenant's message transform is written against [`transform`] instead and exported with
//! [`export_transform!`], [`export_filter!`] or [`export_map!`]; such a guest depends on this
//! crate with `default-features = false, features = ["transform"]`.

mod types;
pub use types::*;

pub mod transform;

pub mod quotas;

#[cfg(not(target_arch = "wasm32"))]
pub mod groups;
#[cfg(not(target_arch = "wasm32"))]
pub mod stub;

#[cfg(all(target_arch = "wasm32", feature = "protocol-handler"))]
#[doc(hidden)]
pub mod wasm;

#[cfg(all(target_arch = "wasm32", feature = "transform"))]
#[doc(hidden)]
pub mod transform_wasm;

pub use bytes::Bytes;

/// Host bytes: a request frame or stored record batches. Reading copies into guest memory;
/// slicing does not.
pub trait HostBuffer: Sized {
    fn len(&self) -> u32;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy `len` bytes from `offset` (clamped to the end).
    fn read(&self, offset: u32, len: u32) -> Vec<u8>;
    /// A view of `len` bytes from `offset`, without copying.
    fn slice(&self, offset: u32, len: u32) -> Result<Self, ErrorCode>;
}

/// The host services a protocol handler calls. Every call is short; none waits.
pub trait Services {
    type Buffer: HostBuffer;

    // --- topics (of the connection's tenant) ---
    fn list_topics(&self) -> Vec<TopicInfo>;
    fn describe_topic(&self, name: &str) -> Option<TopicInfo>;
    fn topic_by_id(&self, id: u128) -> Option<TopicInfo>;
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicInfo, ErrorCode>;
    fn delete_topic(&self, name: &str) -> Result<(), ErrorCode>;
    fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ErrorCode>;
    fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ErrorCode>;
    fn broker_configs(&self) -> Vec<ConfigEntry>;
    /// Change a topic's configs: `incremental` applies each op to the current overrides
    /// (IncrementalAlterConfigs); otherwise the `Set` ops replace every override (AlterConfigs).
    /// An error comes with the host's reason.
    fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[(String, ConfigOp)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)>;

    // --- records ---
    /// Validate and append the batches in `records` (a slice of a host buffer).
    fn append(&self, tp: &TopicPartition, records: &Self::Buffer) -> Result<AppendInfo, ErrorCode>;
    fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Fetched<Self::Buffer>, ErrorCode>;
    fn list_offset(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode>;
    /// [`read`](Self::read) at isolation level read_committed: batches below the last stable
    /// offset only, and the aborted transactions among them.
    fn read_committed(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<(Fetched<Self::Buffer>, Vec<AbortedTransaction>), ErrorCode>;
    /// [`list_offset`](Self::list_offset) at isolation level read_committed: latest is the last
    /// stable offset, and lookups find only offsets below it.
    fn list_offset_committed(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode>;

    /// DeleteRecords: move the partition's log start up to `offset` (-1: the high watermark);
    /// the new log start.
    fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, ErrorCode>;
    /// A partition's stored size and its idempotent producers (DescribeLogDirs,
    /// DescribeProducers).
    fn partition_report(&self, tp: &TopicPartition) -> Result<PartitionReport, ErrorCode>;
    /// Where the log keeps its data (DescribeLogDirs).
    fn log_dir(&self) -> LogDir;

    // --- cluster and connection ---
    fn self_broker(&self) -> Broker;
    fn brokers(&self) -> Vec<Broker>;
    fn settings(&self) -> Settings;
    fn tenant(&self) -> String;
    fn connection_id(&self) -> u64;
    /// The client's address, as Kafka reports it in group descriptions ("/127.0.0.1").
    fn client_host(&self) -> String;
    fn log(&self, level: Level, message: &str);

    // --- consumer groups (of the connection's tenant) ---
    // A join or sync that must wait for the rebalance answers `Pending`: the handler returns a
    // wait on `WakeSource::Group`, and the request is re-run when the group changes. Every call
    // is idempotent for such a re-run.
    fn join_group(&self, req: &JoinRequest) -> JoinOutcome;
    fn sync_group(&self, req: &SyncRequest) -> SyncOutcome;
    fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> ErrorCode;
    fn leave_group(&self, group_id: &str, members: &[Leaving]) -> LeaveResult;
    fn describe_group(&self, group_id: &str) -> GroupDescription;
    /// Groups in one of `states` (Kafka's state names; empty: all).
    fn list_groups(&self, states: &[String]) -> Vec<GroupListing>;
    /// Delete an empty group and its offsets.
    fn delete_group(&self, group_id: &str) -> ErrorCode;
    /// Commit offsets; generation -1 with an empty member id commits outside the group protocol.
    /// One error code per offset, in order.
    fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode>;
    /// Committed offsets of these partitions (`None`: every partition the group has committed).
    fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<CommittedOffset>, ErrorCode>;
    /// Delete committed offsets: one error code per partition, in order.
    fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<ErrorCode>, ErrorCode>;

    // --- idempotent producers ---
    /// A new producer id (epoch 0), or with `current` the same id with its epoch bumped (KIP-360).
    fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode>;

    // --- transactions (the tenant's transaction coordinator; transaction version 1) ---
    /// InitProducerId with a transactional id.
    fn init_transactional(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode>;
    /// AddPartitionsToTxn: one error code per partition, in order.
    fn add_partitions_to_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &[TopicPartition],
    ) -> Vec<ErrorCode>;
    /// AddOffsetsToTxn.
    fn add_offsets_to_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        group_id: &str,
    ) -> ErrorCode;
    /// TxnOffsetCommit: one error code per offset, in order.
    #[allow(clippy::too_many_arguments)] // the request's fields
    fn txn_commit_offsets(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode>;
    /// EndTxn: the producer as it goes on. With `bump_epoch` (transaction version 2) the
    /// transaction ends at the next epoch.
    fn end_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<ProducerIdAndEpoch, ErrorCode>;
    /// Whether each of the group's partitions has offsets of a transaction not yet complete.
    fn pending_txn_offsets(&self, group_id: &str, partitions: &[TopicPartition]) -> Vec<bool>;
    /// DescribeTransactions, in order.
    fn describe_transactions(&self, transactional_ids: &[String]) -> Vec<TxnDescription>;
    /// ListTransactions with its filters (empty: any; `min_duration_ms` -1: any).
    fn list_transactions(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<TxnListing>;

    // --- ACLs (of the connection's tenant, for its principal) ---
    /// Whether the principal may do `operation` (an `acl::` code) on the named resource (the
    /// cluster is [`acl::CLUSTER_NAME`]). Always true when the host runs no authorizer.
    fn authorize(&self, resource_type: i8, name: &str, operation: i8) -> bool;
    /// Whether the principal may do `operation` on some resource of this type.
    fn authorize_any(&self, resource_type: i8, operation: i8) -> bool;
    /// DescribeAcls: the bindings matching `filter`, or an error with its message.
    fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, (ErrorCode, String)>;
    /// CreateAcls: one result per binding, in order.
    fn create_acls(&self, bindings: &[AclBinding]) -> Vec<Result<(), (ErrorCode, String)>>;
    /// DeleteAcls: per filter, in order, the bindings it deleted.
    fn delete_acls(&self, filters: &[AclFilter]) -> Vec<Result<Vec<AclBinding>, (ErrorCode, String)>>;

    // --- SCRAM credentials (of the connection's tenant's users) ---
    /// DescribeUserScramCredentials: the named users (`None` or empty: every user that has a
    /// credential), each with its credentials or its own error (RESOURCE_NOT_FOUND,
    /// DUPLICATE_RESOURCE); or an error for the whole request (CLUSTER_AUTHORIZATION_FAILED
    /// without DESCRIBE on the cluster), with its message.
    fn describe_scram(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<UserScramCredentials>, (ErrorCode, String)>;
    /// AlterUserScramCredentials: one result per user named in either list, in order of first
    /// appearance (deletions first); a user's changes apply all together or not at all.
    #[allow(clippy::type_complexity)] // (user, outcome), as the WIT's `alter` answers
    fn alter_scram(
        &self,
        deletions: &[ScramDeletion],
        upsertions: &[ScramUpsertion],
    ) -> Vec<(String, Result<(), (ErrorCode, String)>)>;

    // --- client quotas (of the connection's tenant) ---
    /// DescribeClientQuotas: the entities matching the filter and their quotas, or an error for
    /// the whole request with its message.
    fn describe_quotas(
        &self,
        components: &[quotas::FilterPart],
        strict: bool,
    ) -> Result<Vec<quotas::Entry>, (ErrorCode, String)>;
    /// AlterClientQuotas: one result per entry, in order; an entry's changes apply all together
    /// or not at all.
    fn alter_quotas(
        &self,
        alterations: &[quotas::Alteration],
        validate_only: bool,
    ) -> Vec<Result<(), (ErrorCode, String)>>;
    /// How long the client is throttled by its quotas for this request, in milliseconds (the
    /// response's `throttle_time_ms`; the host holds the connection's next request that long).
    fn throttle_ms(&self) -> i32;
}

/// One request as the guest sees it: its bytes (a copy in guest memory, to decode from) and the
/// host's frame buffer, of which [`Request::host_slice`] names parts without copying.
pub struct Request<'a, B> {
    pub bytes: Bytes,
    pub frame: &'a B,
}

impl<B: HostBuffer> Request<'_, B> {
    /// The host-buffer slice holding `part`, which must be a sub-slice of `self.bytes`
    /// (decoding from `Bytes` keeps record batches as such sub-slices).
    pub fn host_slice(&self, part: &Bytes) -> Result<B, ErrorCode> {
        let base = self.bytes.as_ptr() as usize;
        let start = part.as_ptr() as usize;
        if part.is_empty() {
            return self.frame.slice(0, 0);
        }
        if start < base || start + part.len() > base + self.bytes.len() {
            return Err(error::CORRUPT_MESSAGE);
        }
        let offset = u32::try_from(start - base).map_err(|_| error::MESSAGE_TOO_LARGE)?;
        let len = u32::try_from(part.len()).map_err(|_| error::MESSAGE_TOO_LARGE)?;
        self.frame.slice(offset, len)
    }
}

/// A protocol handler: the logic of a translator module.
pub trait Handler {
    /// Handle one request frame (without its size prefix). When `final_` is set the request was
    /// parked and its deadline has passed: answer now.
    fn handle<S: Services>(svc: &S, req: &Request<'_, S::Buffer>, final_: bool) -> Outcome<S::Buffer>;

    /// A response carrying `code` for this request, used when a guest call for it failed.
    /// `None` makes the host close the connection.
    fn error_response<S: Services>(
        svc: &S,
        req: &Request<'_, S::Buffer>,
        code: ErrorCode,
    ) -> Option<Vec<Segment<S::Buffer>>>;
}

/// Export a [`Handler`] as the module's `protocol-handler` world. Does nothing natively.
#[macro_export]
macro_rules! export_protocol_handler {
    ($handler:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct GuiseExport;
            impl $crate::wasm::bindings::Guest for GuiseExport {
                fn handle(
                    frame: &$crate::wasm::bindings::guise::runtime::types::Buffer,
                    final_: bool,
                ) -> $crate::wasm::bindings::Outcome {
                    $crate::wasm::run_handle::<$handler>(frame, final_)
                }
                fn error_response(
                    frame: &$crate::wasm::bindings::guise::runtime::types::Buffer,
                    code: i16,
                ) -> Option<Vec<$crate::wasm::bindings::Segment>> {
                    $crate::wasm::run_error_response::<$handler>(frame, code)
                }
            }
    $crate::wasm::bindings::export!(GuiseExport with_types_in $crate::wasm::bindings);
        };
    };
}

/// Export `fn f(record: transform::Record, out: &mut transform::Output) -> transform::Result<()>`
/// as the module's `transform` world: it is called once per record of each produced batch.
/// Natively it only checks the function's signature (test it with [`transform::test::run`]).
#[macro_export]
macro_rules! export_transform {
    ($f:path) => {
        const _: fn(
            $crate::transform::Record,
            &mut $crate::transform::Output,
        ) -> $crate::transform::Result<()> = $f;
        $crate::__export_transform_world!($f);
    };
}

/// Export `fn pred(record: &transform::Record) -> bool` as a transform that keeps the records
/// for which it is true (see [`transform::filter`]).
#[macro_export]
macro_rules! export_filter {
    ($pred:path) => {
        const _: () = {
            fn guise_filter(
                record: $crate::transform::Record,
                out: &mut $crate::transform::Output,
            ) -> $crate::transform::Result<()> {
                $crate::transform::filter($pred)(record, out)
            }
            $crate::export_transform!(guise_filter);
        };
    };
}

/// Export `fn f(record: transform::Record) -> transform::Result<transform::Record>` as a
/// transform that replaces each record by its result (see [`transform::map`]).
#[macro_export]
macro_rules! export_map {
    ($f:path) => {
        const _: () = {
            fn guise_map(
                record: $crate::transform::Record,
                out: &mut $crate::transform::Output,
            ) -> $crate::transform::Result<()> {
                $crate::transform::map($f)(record, out)
            }
            $crate::export_transform!(guise_map);
        };
    };
}

#[cfg(all(target_arch = "wasm32", feature = "transform"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_transform_world {
    ($f:path) => {
        const _: () = {
            struct GuiseTransformExport;
            impl $crate::transform_wasm::bindings::Guest for GuiseTransformExport {
                fn transform(
                    batch: $crate::transform_wasm::bindings::guise::runtime::transform_types::InputBatch,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::transform_wasm::run(batch, $f)
                }
            }
            $crate::transform_wasm::bindings::export!(GuiseTransformExport with_types_in $crate::transform_wasm::bindings);
        };
    };
}

#[cfg(not(all(target_arch = "wasm32", feature = "transform")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_transform_world {
    ($f:path) => {};
}
