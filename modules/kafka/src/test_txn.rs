//! A test host with a canned transaction coordinator: the SDK's stub (which has none: every
//! transactional call answers COORDINATOR_NOT_AVAILABLE) for everything else, and for the
//! transactional calls answers set by the test, with every call recorded. It lets the handlers'
//! tests check what the translator asks the coordinator and how it encodes the answers.

use guise_guest_sdk::stub::{StubBuffer, StubServices};
use guise_guest_sdk::{
    AbortedTransaction, AclBinding, AclFilter, AppendInfo, Broker, CommittedOffset, ConfigEntry, ConfigOp,
    ErrorCode, Fetched, GroupDescription, GroupListing, JoinOutcome, JoinRequest, LeaveResult, Leaving,
    Level, LogDir, OffsetAndTimestamp, OffsetCommit, PartitionReport, ProducerIdAndEpoch, ScramDeletion,
    ScramUpsertion, Services, Settings, SyncOutcome, SyncRequest, TopicInfo, TopicPartition, TxnDescription,
    TxnListing, UserScramCredentials, error, quotas,
};
use std::cell::{Cell, RefCell};

/// The stub host plus a canned transaction coordinator.
pub struct TxnHost {
    pub stub: StubServices,
    /// Every call to the coordinator (and the read_committed reads), in order.
    pub calls: RefCell<Vec<String>>,
    /// What every coordinator call answers (NONE: success)...
    pub answer: Cell<ErrorCode>,
    /// ...unless these are set: the per-partition (per-offset) answers, in order.
    pub codes: RefCell<Vec<ErrorCode>>,
    /// What a successful InitProducerId gets.
    pub producer: Cell<ProducerIdAndEpoch>,
    /// (group, topic, partition) with offsets of a transaction not complete yet.
    pub pending: RefCell<Vec<(String, String, i32)>>,
    /// The last stable offset of read_committed reads and lookups (None: the high watermark).
    pub last_stable: Cell<Option<i64>>,
    /// The aborted transactions of every read_committed read.
    pub aborted: RefCell<Vec<AbortedTransaction>>,
    /// The transactional ids the coordinator knows (others: TRANSACTIONAL_ID_NOT_FOUND).
    pub descriptions: RefCell<Vec<TxnDescription>>,
    /// What ListTransactions finds (the filters are recorded, not applied).
    pub listings: RefCell<Vec<TxnListing>>,
}

impl TxnHost {
    pub fn new() -> Self {
        TxnHost {
            stub: StubServices::new(),
            calls: RefCell::new(Vec::new()),
            answer: Cell::new(error::NONE),
            codes: RefCell::new(Vec::new()),
            producer: Cell::new(ProducerIdAndEpoch { producer_id: 7000, producer_epoch: 3 }),
            pending: RefCell::new(Vec::new()),
            last_stable: Cell::new(None),
            aborted: RefCell::new(Vec::new()),
            descriptions: RefCell::new(Vec::new()),
            listings: RefCell::new(Vec::new()),
        }
    }

    /// With topics `t` (2 partitions) and `u` (1).
    pub fn with_topics() -> Self {
        let host = TxnHost::new();
        host.stub.create_topic("t", 2, &[], false).unwrap();
        host.stub.create_topic("u", 1, &[], false).unwrap();
        host
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    /// One answer per item.
    fn answers(&self, n: usize) -> Vec<ErrorCode> {
        let codes = self.codes.borrow();
        if codes.is_empty() { vec![self.answer.get(); n] } else { codes.clone() }
    }
}

fn pe(p: ProducerIdAndEpoch) -> String {
    format!("{}/{}", p.producer_id, p.producer_epoch)
}

fn tps(partitions: &[TopicPartition]) -> String {
    partitions.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect::<Vec<_>>().join(",")
}

impl Services for TxnHost {
    type Buffer = StubBuffer;

    // --- the canned coordinator ---

    fn init_transactional(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        self.record(format!("init {transactional_id} {timeout_ms} {}", current.map_or("-".into(), pe)));
        match self.answer.get() {
            error::NONE => Ok(self.producer.get()),
            code => Err(code),
        }
    }

    fn add_partitions_to_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &[TopicPartition],
    ) -> Vec<ErrorCode> {
        self.record(format!("add_partitions {transactional_id} {} {}", pe(producer), tps(partitions)));
        self.answers(partitions.len())
    }

    fn add_offsets_to_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        group_id: &str,
    ) -> ErrorCode {
        self.record(format!("add_offsets {transactional_id} {} {group_id}", pe(producer)));
        self.answer.get()
    }

    fn txn_commit_offsets(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode> {
        let offsets_text: Vec<String> = offsets
            .iter()
            .map(|o| {
                let metadata = o.metadata.as_deref().unwrap_or("<null>");
                format!("{}-{}@{}/{}/{metadata}", o.topic, o.partition, o.offset, o.leader_epoch)
            })
            .collect();
        self.record(format!(
            "txn_commit {transactional_id} {} {group_id} {generation_id} '{member_id}' {} {}",
            pe(producer),
            group_instance_id.unwrap_or("-"),
            offsets_text.join(",")
        ));
        self.answers(offsets.len())
    }

    fn end_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        self.record(format!(
            "end {transactional_id} {} {}{}",
            pe(producer),
            if commit { "commit" } else { "abort" },
            if bump_epoch { " bump" } else { "" }
        ));
        match self.answer.get() {
            error::NONE if bump_epoch => {
                Ok(ProducerIdAndEpoch { producer_epoch: producer.producer_epoch + 1, ..producer })
            }
            error::NONE => Ok(producer),
            code => Err(code),
        }
    }

    fn pending_txn_offsets(&self, group_id: &str, partitions: &[TopicPartition]) -> Vec<bool> {
        self.record(format!("pending {group_id} {}", tps(partitions)));
        let pending = self.pending.borrow();
        partitions
            .iter()
            .map(|tp| pending.iter().any(|(g, t, p)| g == group_id && *t == tp.topic && *p == tp.partition))
            .collect()
    }

    fn describe_transactions(&self, transactional_ids: &[String]) -> Vec<TxnDescription> {
        self.record(format!("describe {}", transactional_ids.join(",")));
        let known = self.descriptions.borrow();
        transactional_ids
            .iter()
            .map(|id| {
                known.iter().find(|d| &d.transactional_id == id).cloned().unwrap_or_else(|| TxnDescription {
                    transactional_id: id.clone(),
                    error: error::TRANSACTIONAL_ID_NOT_FOUND,
                    state: String::new(),
                    timeout_ms: 0,
                    start_ms: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    partitions: Vec::new(),
                })
            })
            .collect()
    }

    fn list_transactions(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<TxnListing> {
        self.record(format!("list {states:?} {producer_ids:?} {min_duration_ms}"));
        self.listings.borrow().clone()
    }

    fn read_committed(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<(Fetched<StubBuffer>, Vec<AbortedTransaction>), ErrorCode> {
        self.record(format!("read_committed {}-{}@{offset}", tp.topic, tp.partition));
        let mut fetched = self.stub.read(tp, offset, max_bytes, min_one)?;
        if let Some(lso) = self.last_stable.get() {
            fetched.last_stable_offset = lso;
        }
        Ok((fetched, self.aborted.borrow().clone()))
    }

    fn list_offset_committed(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        self.record(format!("list_offset_committed {}-{}@{timestamp}", tp.topic, tp.partition));
        match self.last_stable.get() {
            Some(offset) if timestamp == -1 => Ok(Some(OffsetAndTimestamp { offset, timestamp: -1 })),
            _ => self.stub.list_offset(tp, timestamp),
        }
    }

    // --- everything else is the stub's ---

    fn list_topics(&self) -> Vec<TopicInfo> {
        self.stub.list_topics()
    }
    fn describe_topic(&self, name: &str) -> Option<TopicInfo> {
        self.stub.describe_topic(name)
    }
    fn topic_by_id(&self, id: u128) -> Option<TopicInfo> {
        self.stub.topic_by_id(id)
    }
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicInfo, ErrorCode> {
        self.stub.create_topic(name, partitions, configs, validate_only)
    }
    fn delete_topic(&self, name: &str) -> Result<(), ErrorCode> {
        self.stub.delete_topic(name)
    }
    fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ErrorCode> {
        self.stub.create_partitions(name, total, validate_only)
    }
    fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ErrorCode> {
        self.stub.topic_configs(name)
    }
    fn broker_configs(&self) -> Vec<ConfigEntry> {
        self.stub.broker_configs()
    }
    fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[(String, ConfigOp)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        self.stub.alter_topic_configs(name, ops, incremental, validate_only)
    }
    fn append(&self, tp: &TopicPartition, records: &StubBuffer) -> Result<AppendInfo, ErrorCode> {
        self.stub.append(tp, records)
    }
    fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Fetched<StubBuffer>, ErrorCode> {
        self.stub.read(tp, offset, max_bytes, min_one)
    }
    fn list_offset(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        self.stub.list_offset(tp, timestamp)
    }
    fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, ErrorCode> {
        self.stub.delete_records(tp, offset)
    }
    fn partition_report(&self, tp: &TopicPartition) -> Result<PartitionReport, ErrorCode> {
        self.stub.partition_report(tp)
    }
    fn log_dir(&self) -> LogDir {
        self.stub.log_dir()
    }
    fn self_broker(&self) -> Broker {
        self.stub.self_broker()
    }
    fn brokers(&self) -> Vec<Broker> {
        self.stub.brokers()
    }
    fn settings(&self) -> Settings {
        self.stub.settings()
    }
    fn tenant(&self) -> String {
        self.stub.tenant()
    }
    fn connection_id(&self) -> u64 {
        self.stub.connection_id()
    }
    fn client_host(&self) -> String {
        self.stub.client_host()
    }
    fn log(&self, level: Level, message: &str) {
        self.stub.log(level, message)
    }
    fn join_group(&self, req: &JoinRequest) -> JoinOutcome {
        self.stub.join_group(req)
    }
    fn sync_group(&self, req: &SyncRequest) -> SyncOutcome {
        self.stub.sync_group(req)
    }
    fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> ErrorCode {
        self.stub.heartbeat(group_id, generation_id, member_id, group_instance_id)
    }
    fn leave_group(&self, group_id: &str, members: &[Leaving]) -> LeaveResult {
        self.stub.leave_group(group_id, members)
    }
    fn describe_group(&self, group_id: &str) -> GroupDescription {
        self.stub.describe_group(group_id)
    }
    fn list_groups(&self, states: &[String]) -> Vec<GroupListing> {
        self.stub.list_groups(states)
    }
    fn delete_group(&self, group_id: &str) -> ErrorCode {
        self.stub.delete_group(group_id)
    }
    fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode> {
        self.stub.commit_offsets(group_id, generation_id, member_id, group_instance_id, offsets)
    }
    fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<CommittedOffset>, ErrorCode> {
        self.stub.fetch_offsets(group_id, partitions)
    }
    fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        self.stub.delete_offsets(group_id, partitions)
    }
    fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        self.record(format!("init_producer_id {transactional_id:?}"));
        self.stub.init_producer_id(transactional_id, current)
    }
    fn authorize(&self, resource_type: i8, name: &str, operation: i8) -> bool {
        self.stub.authorize(resource_type, name, operation)
    }
    fn authorize_any(&self, resource_type: i8, operation: i8) -> bool {
        self.stub.authorize_any(resource_type, operation)
    }
    fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, (ErrorCode, String)> {
        self.stub.describe_acls(filter)
    }
    fn create_acls(&self, bindings: &[AclBinding]) -> Vec<Result<(), (ErrorCode, String)>> {
        self.stub.create_acls(bindings)
    }
    fn delete_acls(&self, filters: &[AclFilter]) -> Vec<Result<Vec<AclBinding>, (ErrorCode, String)>> {
        self.stub.delete_acls(filters)
    }
    fn describe_scram(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<UserScramCredentials>, (ErrorCode, String)> {
        self.stub.describe_scram(users)
    }
    fn alter_scram(
        &self,
        deletions: &[ScramDeletion],
        upsertions: &[ScramUpsertion],
    ) -> Vec<(String, Result<(), (ErrorCode, String)>)> {
        self.stub.alter_scram(deletions, upsertions)
    }
    fn describe_quotas(
        &self,
        components: &[quotas::FilterPart],
        strict: bool,
    ) -> Result<Vec<quotas::Entry>, (ErrorCode, String)> {
        self.stub.describe_quotas(components, strict)
    }
    fn alter_quotas(
        &self,
        alterations: &[quotas::Alteration],
        validate_only: bool,
    ) -> Vec<Result<(), (ErrorCode, String)>> {
        self.stub.alter_quotas(alterations, validate_only)
    }
    fn throttle_ms(&self) -> i32 {
        self.stub.throttle_ms()
    }
}
