//! The wasm32 side: WIT bindings, the host's imports as [`Services`], and the export glue
//! that [`crate::export_protocol_handler!`] expands to.

use crate::{
    AbortedTransaction, AclBinding, AclFilter, AppendInfo, Broker, CommittedOffset, ConfigEntry, ConfigOp,
    ErrorCode, Fetched, GroupDescription, GroupListing, GroupMember, Handler, HostBuffer, JoinOutcome,
    JoinRequest, JoinResult, LeaveResult, Leaving, Level, LogDir, MemberDescription, OffsetAndTimestamp,
    OffsetCommit, Outcome, PartitionReport, ProducerIdAndEpoch, ProducerState, Request, ScramCredentialInfo,
    ScramDeletion, ScramUpsertion, Segment, Services, Settings, SyncOutcome, SyncRequest, SyncResult,
    TopicInfo, TopicPartition, TxnDescription, TxnListing, UserScramCredentials, WakeSource,
};
use bytes::Bytes;

#[allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "protocol-handler",
        pub_export_macro: true,
        default_bindings_module: "guise_guest_sdk::wasm::bindings",
        generate_all,
    });
}

use bindings::guise::runtime::{
    acls, cluster, connection, groups, handler_types as ht, log, logging, producers, quotas, scram,
    transactions, types,
};

impl HostBuffer for types::Buffer {
    fn len(&self) -> u32 {
        types::Buffer::len(self)
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        types::Buffer::read(self, offset, len)
    }
    fn slice(&self, offset: u32, len: u32) -> Result<Self, ErrorCode> {
        types::Buffer::slice(self, offset, len)
    }
}

/// The host's imports.
pub struct WasmServices;

fn tp(t: &TopicPartition) -> types::TopicPartition {
    types::TopicPartition { topic: t.topic.clone(), partition: t.partition }
}

fn offset_commit(o: &OffsetCommit) -> groups::OffsetCommit {
    groups::OffsetCommit {
        topic: o.topic.clone(),
        partition: o.partition,
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata.clone(),
    }
}

fn txn_producer(p: ProducerIdAndEpoch) -> producers::ProducerIdAndEpoch {
    producers::ProducerIdAndEpoch { producer_id: p.producer_id, producer_epoch: p.producer_epoch }
}

fn from_txn_producer(p: producers::ProducerIdAndEpoch) -> ProducerIdAndEpoch {
    ProducerIdAndEpoch { producer_id: p.producer_id, producer_epoch: p.producer_epoch }
}

fn topic_info(t: log::TopicInfo) -> TopicInfo {
    TopicInfo {
        name: t.name,
        id: ((t.id_hi as u128) << 64) | t.id_lo as u128,
        partitions: t.partitions,
        internal: t.internal,
    }
}

fn config_entry(c: log::ConfigEntry) -> ConfigEntry {
    ConfigEntry {
        name: c.name,
        value: c.value,
        read_only: c.read_only,
        is_default: c.is_default,
        sensitive: c.sensitive,
    }
}

fn broker(b: cluster::Broker) -> Broker {
    Broker { node_id: b.node_id, host: b.host, port: b.port, rack: b.rack }
}

impl Services for WasmServices {
    type Buffer = types::Buffer;

    fn list_topics(&self) -> Vec<TopicInfo> {
        log::list_topics().into_iter().map(topic_info).collect()
    }
    fn describe_topic(&self, name: &str) -> Option<TopicInfo> {
        log::describe_topic(name).map(topic_info)
    }
    fn topic_by_id(&self, id: u128) -> Option<TopicInfo> {
        log::topic_by_id((id >> 64) as u64, id as u64).map(topic_info)
    }
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicInfo, ErrorCode> {
        log::create_topic(name, partitions, configs, validate_only).map(topic_info)
    }
    fn delete_topic(&self, name: &str) -> Result<(), ErrorCode> {
        log::delete_topic(name)
    }
    fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ErrorCode> {
        log::create_partitions(name, total, validate_only)
    }
    fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ErrorCode> {
        log::topic_configs(name).map(|v| v.into_iter().map(config_entry).collect())
    }
    fn broker_configs(&self) -> Vec<ConfigEntry> {
        log::broker_configs().into_iter().map(config_entry).collect()
    }
    fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[(String, ConfigOp)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let ops: Vec<(String, log::ConfigOp)> = ops
            .iter()
            .map(|(k, op)| {
                let op = match op {
                    ConfigOp::Set(v) => log::ConfigOp::Set(v.clone()),
                    ConfigOp::Delete => log::ConfigOp::Delete,
                    ConfigOp::Append(v) => log::ConfigOp::Append(v.clone()),
                    ConfigOp::Subtract(v) => log::ConfigOp::Subtract(v.clone()),
                };
                (k.clone(), op)
            })
            .collect();
        log::alter_topic_configs(name, &ops, incremental, validate_only)
    }
    fn append(&self, t: &TopicPartition, records: &Self::Buffer) -> Result<AppendInfo, ErrorCode> {
        log::append(&tp(t), records)
            .map(|a| AppendInfo { base_offset: a.base_offset, log_start_offset: a.log_start_offset })
    }
    fn read(
        &self,
        t: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Fetched<Self::Buffer>, ErrorCode> {
        log::read(&tp(t), offset, max_bytes, min_one).map(|f| Fetched {
            high_watermark: f.high_watermark,
            last_stable_offset: f.last_stable_offset,
            log_start_offset: f.log_start_offset,
            records: f.records,
            records_len: f.records_len,
        })
    }
    fn list_offset(
        &self,
        t: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        log::list_offset(&tp(t), timestamp)
            .map(|o| o.map(|o| OffsetAndTimestamp { offset: o.offset, timestamp: o.timestamp }))
    }
    fn read_committed(
        &self,
        t: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<(Fetched<Self::Buffer>, Vec<AbortedTransaction>), ErrorCode> {
        log::read_committed(&tp(t), offset, max_bytes, min_one).map(|c| {
            let f = c.fetched;
            let fetched = Fetched {
                high_watermark: f.high_watermark,
                last_stable_offset: f.last_stable_offset,
                log_start_offset: f.log_start_offset,
                records: f.records,
                records_len: f.records_len,
            };
            let aborted = c
                .aborted
                .into_iter()
                .map(|a| AbortedTransaction { producer_id: a.producer_id, first_offset: a.first_offset })
                .collect();
            (fetched, aborted)
        })
    }
    fn list_offset_committed(
        &self,
        t: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        log::list_offset_committed(&tp(t), timestamp)
            .map(|o| o.map(|o| OffsetAndTimestamp { offset: o.offset, timestamp: o.timestamp }))
    }
    fn delete_records(&self, t: &TopicPartition, offset: i64) -> Result<i64, ErrorCode> {
        log::delete_records(&tp(t), offset)
    }
    fn partition_report(&self, t: &TopicPartition) -> Result<PartitionReport, ErrorCode> {
        log::describe_partition(&tp(t)).map(|r| PartitionReport {
            size_bytes: r.size_bytes,
            producers: r
                .producers
                .into_iter()
                .map(|p| ProducerState {
                    producer_id: p.producer_id,
                    epoch: p.epoch,
                    last_sequence: p.last_sequence,
                    last_timestamp: p.last_timestamp,
                    current_txn_start_offset: p.current_txn_start_offset,
                })
                .collect(),
        })
    }
    fn log_dir(&self) -> LogDir {
        let d = log::log_dir();
        LogDir { path: d.path, total_bytes: d.total_bytes, usable_bytes: d.usable_bytes }
    }
    fn self_broker(&self) -> Broker {
        broker(cluster::self_broker())
    }
    fn brokers(&self) -> Vec<Broker> {
        cluster::brokers().into_iter().map(broker).collect()
    }
    fn settings(&self) -> Settings {
        let s = cluster::get_settings();
        Settings {
            cluster_id: s.cluster_id,
            auto_create_topics: s.auto_create_topics,
            default_partitions: s.default_partitions,
            max_frame_bytes: s.max_frame_bytes,
            transaction_version: s.transaction_version,
        }
    }
    fn tenant(&self) -> String {
        connection::tenant()
    }
    fn connection_id(&self) -> u64 {
        connection::id()
    }
    fn client_host(&self) -> String {
        connection::client_host()
    }
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        };
        logging::log(level, message);
    }

    fn join_group(&self, req: &JoinRequest) -> JoinOutcome {
        let req = groups::JoinRequest {
            group_id: req.group_id.clone(),
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
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
        };
        match groups::join(&req) {
            groups::JoinOutcome::Pending => JoinOutcome::Pending,
            groups::JoinOutcome::Done(r) => JoinOutcome::Done(JoinResult {
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
            }),
        }
    }
    fn sync_group(&self, req: &SyncRequest) -> SyncOutcome {
        let req = groups::SyncRequest {
            group_id: req.group_id.clone(),
            generation_id: req.generation_id,
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            protocol_type: req.protocol_type.clone(),
            protocol_name: req.protocol_name.clone(),
            assignments: req
                .assignments
                .iter()
                .map(|a| groups::Assignment {
                    member_id: a.member_id.clone(),
                    assignment: a.assignment.clone(),
                })
                .collect(),
        };
        match groups::sync(&req) {
            groups::SyncOutcome::Pending => SyncOutcome::Pending,
            groups::SyncOutcome::Done(r) => SyncOutcome::Done(SyncResult {
                error: r.error,
                protocol_type: r.protocol_type,
                protocol_name: r.protocol_name,
                assignment: r.assignment,
            }),
        }
    }
    fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> ErrorCode {
        groups::heartbeat(group_id, generation_id, member_id, group_instance_id)
    }
    fn leave_group(&self, group_id: &str, members: &[Leaving]) -> LeaveResult {
        let members: Vec<groups::Leaving> = members
            .iter()
            .map(|m| groups::Leaving {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
            })
            .collect();
        let r = groups::leave(group_id, &members);
        LeaveResult { error: r.error, members: r.members }
    }
    fn describe_group(&self, group_id: &str) -> GroupDescription {
        let d = groups::describe(group_id);
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
        groups::list(states)
            .into_iter()
            .map(|g| GroupListing { group_id: g.group_id, protocol_type: g.protocol_type, state: g.state })
            .collect()
    }
    fn delete_group(&self, group_id: &str) -> ErrorCode {
        groups::delete(group_id)
    }
    fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: &[OffsetCommit],
    ) -> Vec<ErrorCode> {
        let offsets: Vec<groups::OffsetCommit> = offsets.iter().map(offset_commit).collect();
        groups::commit_offsets(group_id, generation_id, member_id, group_instance_id, &offsets)
    }
    fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<CommittedOffset>, ErrorCode> {
        let partitions: Option<Vec<types::TopicPartition>> = partitions.map(|ps| ps.iter().map(tp).collect());
        groups::fetch_offsets(group_id, partitions.as_deref()).map(|offsets| {
            offsets
                .into_iter()
                .map(|o| CommittedOffset {
                    topic: o.topic,
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    error: o.error,
                })
                .collect()
        })
    }
    fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let partitions: Vec<types::TopicPartition> = partitions.iter().map(tp).collect();
        groups::delete_offsets(group_id, &partitions)
    }

    fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        let current = current.map(|c| producers::ProducerIdAndEpoch {
            producer_id: c.producer_id,
            producer_epoch: c.producer_epoch,
        });
        producers::init_producer_id(transactional_id, current).map(from_txn_producer)
    }

    fn init_transactional(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        current: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        transactions::init_producer_id(transactional_id, timeout_ms, current.map(txn_producer))
            .map(from_txn_producer)
    }
    fn add_partitions_to_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &[TopicPartition],
    ) -> Vec<ErrorCode> {
        let partitions: Vec<types::TopicPartition> = partitions.iter().map(tp).collect();
        transactions::add_partitions(transactional_id, txn_producer(producer), &partitions)
    }
    fn add_offsets_to_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        group_id: &str,
    ) -> ErrorCode {
        transactions::add_offsets(transactional_id, txn_producer(producer), group_id)
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
        let offsets: Vec<groups::OffsetCommit> = offsets.iter().map(offset_commit).collect();
        transactions::commit_offsets(
            transactional_id,
            txn_producer(producer),
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            &offsets,
        )
    }
    fn end_txn(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<ProducerIdAndEpoch, ErrorCode> {
        transactions::end(transactional_id, txn_producer(producer), commit, bump_epoch).map(from_txn_producer)
    }
    fn pending_txn_offsets(&self, group_id: &str, partitions: &[TopicPartition]) -> Vec<bool> {
        let partitions: Vec<types::TopicPartition> = partitions.iter().map(tp).collect();
        transactions::pending_offsets(group_id, &partitions)
    }
    fn describe_transactions(&self, transactional_ids: &[String]) -> Vec<TxnDescription> {
        transactions::describe(transactional_ids)
            .into_iter()
            .map(|d| TxnDescription {
                transactional_id: d.transactional_id,
                error: d.error,
                state: d.state,
                timeout_ms: d.timeout_ms,
                start_ms: d.start_ms,
                producer_id: d.producer_id,
                producer_epoch: d.producer_epoch,
                partitions: d
                    .partitions
                    .into_iter()
                    .map(|p| TopicPartition { topic: p.topic, partition: p.partition })
                    .collect(),
            })
            .collect()
    }
    fn list_transactions(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<TxnListing> {
        transactions::list(states, producer_ids, min_duration_ms)
            .into_iter()
            .map(|l| TxnListing {
                transactional_id: l.transactional_id,
                producer_id: l.producer_id,
                state: l.state,
            })
            .collect()
    }

    fn authorize(&self, resource_type: i8, name: &str, operation: i8) -> bool {
        acls::authorize(resource_type, name, operation)
    }
    fn authorize_any(&self, resource_type: i8, operation: i8) -> bool {
        acls::authorize_any(resource_type, operation)
    }
    fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, (ErrorCode, String)> {
        acls::describe(&crate::acl_fields!(filter.clone() => acls::AclFilter))
            .map(|bs| bs.into_iter().map(|b| crate::acl_fields!(b => AclBinding)).collect())
    }
    fn create_acls(&self, bindings: &[AclBinding]) -> Vec<Result<(), (ErrorCode, String)>> {
        let bindings: Vec<acls::AclBinding> =
            bindings.iter().map(|b| crate::acl_fields!(b.clone() => acls::AclBinding)).collect();
        acls::create(&bindings)
    }
    fn delete_acls(&self, filters: &[AclFilter]) -> Vec<Result<Vec<AclBinding>, (ErrorCode, String)>> {
        let filters: Vec<acls::AclFilter> =
            filters.iter().map(|f| crate::acl_fields!(f.clone() => acls::AclFilter)).collect();
        acls::delete(&filters)
            .into_iter()
            .map(|r| r.map(|bs| bs.into_iter().map(|b| crate::acl_fields!(b => AclBinding)).collect()))
            .collect()
    }

    fn describe_scram(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<UserScramCredentials>, (ErrorCode, String)> {
        scram::describe(users).map(|found| {
            found
                .into_iter()
                .map(|u| UserScramCredentials {
                    user: u.user,
                    result: u.outcome.map(|infos| {
                        infos
                            .into_iter()
                            .map(|i| ScramCredentialInfo { mechanism: i.mechanism, iterations: i.iterations })
                            .collect()
                    }),
                })
                .collect()
        })
    }
    fn alter_scram(
        &self,
        deletions: &[ScramDeletion],
        upsertions: &[ScramUpsertion],
    ) -> Vec<(String, Result<(), (ErrorCode, String)>)> {
        let deletions: Vec<scram::Deletion> = deletions
            .iter()
            .map(|d| scram::Deletion { user: d.user.clone(), mechanism: d.mechanism })
            .collect();
        let upsertions: Vec<scram::Upsertion> = upsertions
            .iter()
            .map(|u| scram::Upsertion {
                user: u.user.clone(),
                mechanism: u.mechanism,
                iterations: u.iterations,
                salt: u.salt.clone(),
                salted_password: u.salted_password.clone(),
            })
            .collect();
        scram::alter(&deletions, &upsertions)
    }

    fn describe_quotas(
        &self,
        components: &[crate::quotas::FilterPart],
        strict: bool,
    ) -> Result<Vec<crate::quotas::Entry>, (ErrorCode, String)> {
        let components: Vec<quotas::FilterPart> = components
            .iter()
            .map(|c| quotas::FilterPart {
                entity_type: c.entity_type.clone(),
                match_type: c.match_type,
                name: c.name.clone(),
            })
            .collect();
        quotas::describe(&components, strict).map(|entries| {
            entries
                .into_iter()
                .map(|e| crate::quotas::Entry {
                    entity: e
                        .entity
                        .into_iter()
                        .map(|p| crate::quotas::EntityPart { entity_type: p.entity_type, name: p.name })
                        .collect(),
                    values: e.values,
                })
                .collect()
        })
    }
    fn alter_quotas(
        &self,
        alterations: &[crate::quotas::Alteration],
        validate_only: bool,
    ) -> Vec<Result<(), (ErrorCode, String)>> {
        let alterations: Vec<quotas::Alteration> = alterations
            .iter()
            .map(|a| quotas::Alteration {
                entity: a
                    .entity
                    .iter()
                    .map(|p| quotas::EntityPart { entity_type: p.entity_type.clone(), name: p.name.clone() })
                    .collect(),
                ops: a
                    .ops
                    .iter()
                    .map(|o| quotas::Op { key: o.key.clone(), value: o.value, remove: o.remove })
                    .collect(),
            })
            .collect();
        quotas::alter(&alterations, validate_only)
    }
    fn throttle_ms(&self) -> i32 {
        quotas::throttle_ms()
    }
}

fn segments(segs: Vec<Segment<types::Buffer>>) -> Vec<ht::Segment> {
    segs.into_iter()
        .map(|s| match s {
            Segment::Bytes(b) => ht::Segment::Bytes(b),
            Segment::Buffer(b) => ht::Segment::Buffer(b),
        })
        .collect()
}

fn request(frame: &types::Buffer) -> Request<'_, types::Buffer> {
    let bytes = Bytes::from(frame.read(0, frame.len()));
    Request { bytes, frame }
}

pub fn run_handle<H: Handler>(frame: &types::Buffer, final_: bool) -> ht::Outcome {
    let req = request(frame);
    match H::handle(&WasmServices, &req, final_) {
        Outcome::Respond(r) => ht::Outcome::Respond(r.map(segments)),
        Outcome::Wait(w) => ht::Outcome::Wait(ht::Wait {
            wake_on: w
                .wake_on
                .into_iter()
                .map(|w| match w {
                    WakeSource::Partition(p) => ht::WakeSource::Partition(tp(&p)),
                    WakeSource::Group(g) => ht::WakeSource::Group(g),
                })
                .collect(),
            deadline_ms: w.deadline_ms,
        }),
        Outcome::Close(reason) => ht::Outcome::Close(reason),
    }
}

pub fn run_error_response<H: Handler>(frame: &types::Buffer, code: i16) -> Option<Vec<ht::Segment>> {
    let req = request(frame);
    H::error_response(&WasmServices, &req, code).map(segments)
}
