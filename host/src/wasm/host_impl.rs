//! The host side of the WIT imports: what the translator may ask of the host.

use super::bindings::{cluster, connection, handler_types, log, logging, types};
use super::state::{BufferHandle, GuestState, Observed, WakeKey};
use crate::acl::codes as acl;
use crate::storage::{AlterOp, ConfigChange, ConfigEntry, Isolation, StorageError, TopicMeta};
use wasmtime::component::Resource;

type ErrorCode = i16;

/// UNKNOWN_TOPIC_OR_PARTITION, for a buffer handle the guest does not hold.
use guise_guest_sdk::error::CORRUPT_MESSAGE;
use guise_guest_sdk::error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;

/// INVALID_TOPIC_EXCEPTION: what Kafka answers for writes to its internal topics.
use guise_guest_sdk::error::INVALID_TOPIC_EXCEPTION;

impl GuestState {
    /// Internal topics (the tenant room's registry) are written only by the services that own
    /// them: a client that produced a batch to `__consumer_offsets`, deleted it or created it
    /// with other configs could lose every group's offsets.
    fn not_internal(&self, topic: &str, what: &str) -> Result<(), ErrorCode> {
        if let Some(t) = self.ctx.internal.lookup(&self.ctx.namespace, topic) {
            tracing::info!(
                conn = self.conn.id,
                owner = t.owner,
                "refused to {what} the internal topic {topic}"
            );
            return Err(INVALID_TOPIC_EXCEPTION);
        }
        Ok(())
    }

    fn buffer(&self, r: &Resource<BufferHandle>) -> Option<&BufferHandle> {
        self.table.get(r).ok()
    }

    fn storage_error(&self, what: &str, e: StorageError) -> ErrorCode {
        if let StorageError::Io(io) = &e {
            if what == "append" {
                // The log has already said which file and why.
                tracing::debug!(conn = self.conn.id, "storage failure during {what}: {io}");
            } else {
                tracing::error!(conn = self.conn.id, "storage failure during {what}: {io}");
            }
        } else {
            tracing::debug!(conn = self.conn.id, "{what}: {e}");
        }
        e.kafka_code()
    }

    /// KIP-890's server-side check: every transactional batch of a produce must belong to its
    /// producer's open transaction on this partition, at its current epoch (the transaction
    /// coordinator's view), so a late retry after an abort cannot open a transaction nobody
    /// will end. Batches the log would refuse anyway are left to it. The principal must also
    /// be allowed to WRITE the transactional id that producer belongs to (the translator checked the
    /// request's own id, which a client could name while writing another id's producer's
    /// batches): else TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    async fn verify_transactional(
        &mut self,
        tp: &types::TopicPartition,
        bytes: &bytes::Bytes,
    ) -> Result<(), ErrorCode> {
        let mut producers: Vec<crate::txn::Producer> = Vec::new();
        let mut at = 0;
        while let Some(h) =
            bytes.get(at..).and_then(|rest| crate::record::batch::BatchHeader::parse(rest).ok())
        {
            let producer = crate::txn::Producer { id: h.producer_id, epoch: h.producer_epoch };
            if h.is_transactional() && !h.is_control() && !producers.contains(&producer) {
                producers.push(producer);
            }
            if h.size() == 0 {
                break;
            }
            at += h.size();
        }
        if producers.is_empty() {
            return Ok(());
        }
        let (txn, tenant, conn) = (self.ctx.txn.clone(), self.conn.tenant.clone(), self.conn.id);
        for producer in producers {
            let verified = self.awaiting(txn.verify_append(&tenant, &tp.topic, tp.partition, producer)).await;
            let verified = match verified {
                Ok(id) if !self.allowed(acl::TRANSACTIONAL_ID, &id, acl::WRITE).await => {
                    tracing::warn!(
                        conn,
                        principal = %self.conn.principal,
                        producer_id = producer.id,
                        "refused transactional batches of a producer whose transactional id the principal may not WRITE"
                    );
                    Err(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                }
                other => other.map(drop),
            };
            if let Err(code) = verified {
                tracing::debug!(
                    conn,
                    topic = %tp.topic,
                    partition = tp.partition,
                    producer_id = producer.id,
                    epoch = producer.epoch,
                    code,
                    "refused a transactional batch outside its producer's open transaction"
                );
                return Err(code);
            }
        }
        Ok(())
    }

    /// A read at `isolation`, its records as a buffer handle, and (read_committed) the aborted
    /// transactions among them.
    async fn read_isolated(
        &mut self,
        tp: types::TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<(log::Fetched, Vec<crate::storage::AbortedTxn>), ErrorCode> {
        self.topic_allowed(&tp.topic, acl::READ).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &tp.topic);
        let log = self.log();
        let read = log.read_with(&topic, tp.partition, offset, max_bytes as usize, min_one, isolation);
        let r = match self.awaiting(read).await {
            Ok(r) => r,
            Err(e) => return Err(self.storage_error("read", e)),
        };
        self.observed
            .push(Observed { key: WakeKey::Partition(topic, tp.partition), value: r.high_watermark });
        let (records, records_len) = match r.records {
            Some(bytes) if !bytes.is_empty() => {
                let len = bytes.len() as u32;
                let handle = self.table.push(BufferHandle(bytes)).map_err(|_| CORRUPT_MESSAGE)?;
                (Some(handle), len)
            }
            _ => (None, 0),
        };
        self.fetched += u64::from(records_len);
        let fetched = log::Fetched {
            high_watermark: r.high_watermark,
            last_stable_offset: r.last_stable_offset,
            log_start_offset: r.log_start_offset,
            records,
            records_len,
        };
        Ok((fetched, r.aborted))
    }

    fn topic_info(&self, meta: &TopicMeta) -> log::TopicInfo {
        let id = meta.id.as_u128();
        log::TopicInfo {
            name: meta.name.topic.clone(),
            id_hi: (id >> 64) as u64,
            id_lo: id as u64,
            partitions: meta.partitions,
            // `__consumer_offsets` (the group coordinator's) and the other registered ones.
            internal: self.ctx.internal.is_internal(&meta.name),
        }
    }
}

fn config_entry(c: ConfigEntry) -> log::ConfigEntry {
    log::ConfigEntry {
        name: c.name,
        value: c.value,
        read_only: c.read_only,
        is_default: c.is_default,
        sensitive: c.sensitive,
    }
}

impl types::Host for GuestState {}

impl types::HostBuffer for GuestState {
    fn len(&mut self, this: Resource<BufferHandle>) -> u32 {
        self.buffer(&this).map_or(0, |b| b.0.len() as u32)
    }

    fn read(&mut self, this: Resource<BufferHandle>, offset: u32, len: u32) -> Vec<u8> {
        let Some(b) = self.buffer(&this) else { return Vec::new() };
        let start = (offset as usize).min(b.0.len());
        let end = start.saturating_add(len as usize).min(b.0.len());
        b.0[start..end].to_vec()
    }

    fn slice(
        &mut self,
        this: Resource<BufferHandle>,
        offset: u32,
        len: u32,
    ) -> Result<Resource<BufferHandle>, ErrorCode> {
        let b = self.buffer(&this).ok_or(CORRUPT_MESSAGE)?;
        let (start, end) = (offset as usize, offset as usize + len as usize);
        if end > b.0.len() {
            return Err(CORRUPT_MESSAGE);
        }
        let slice = BufferHandle(b.0.slice(start..end));
        self.table.push(slice).map_err(|_| CORRUPT_MESSAGE)
    }

    fn drop(&mut self, rep: Resource<BufferHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl log::Host for GuestState {
    async fn list_topics(&mut self) -> Vec<log::TopicInfo> {
        let topics = self.ctx.log.topics(&self.conn.tenant, &self.ctx.namespace);
        let mut out = Vec::with_capacity(topics.len());
        for t in &topics {
            // Kafka's Metadata hides the topics a principal may not describe.
            if self.allowed(acl::TOPIC, &t.name.topic, acl::DESCRIBE).await {
                out.push(self.topic_info(t));
            }
        }
        out
    }

    async fn describe_topic(&mut self, name: String) -> Option<log::TopicInfo> {
        let meta = self.ctx.log.topic(&self.ctx.topic(&self.conn.tenant, &name))?;
        self.allowed(acl::TOPIC, &name, acl::DESCRIBE).await.then(|| self.topic_info(&meta))
    }

    async fn topic_by_id(&mut self, id_hi: u64, id_lo: u64) -> Option<log::TopicInfo> {
        let id = uuid::Uuid::from_u128(((id_hi as u128) << 64) | id_lo as u128);
        let meta = self.ctx.log.topic_by_id(&self.conn.tenant, &self.ctx.namespace, id)?;
        self.allowed(acl::TOPIC, &meta.name.topic, acl::DESCRIBE).await.then(|| self.topic_info(&meta))
    }

    async fn create_topic(
        &mut self,
        name: String,
        partitions: i32,
        configs: Vec<(String, String)>,
        validate_only: bool,
    ) -> Result<log::TopicInfo, ErrorCode> {
        self.not_internal(&name, "create")?;
        if !self.cluster_allowed(acl::CREATE).await {
            self.topic_allowed(&name, acl::CREATE).await?;
        }
        let topic = self.ctx.topic(&self.conn.tenant, &name);
        let log = self.log();
        match self.awaiting(log.create_topic(&topic, partitions, &configs, validate_only)).await {
            Ok(meta) => {
                if !validate_only {
                    tracing::info!(conn = self.conn.id, topic = %name, partitions, "created topic");
                }
                Ok(self.topic_info(&meta))
            }
            Err(e) => Err(self.storage_error("create topic", e)),
        }
    }

    async fn delete_topic(&mut self, name: String) -> Result<(), ErrorCode> {
        self.not_internal(&name, "delete")?;
        self.topic_allowed(&name, acl::DELETE).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &name);
        let log = self.log();
        self.awaiting(log.delete_topic(&topic)).await.map_err(|e| self.storage_error("delete topic", e))?;
        tracing::info!(conn = self.conn.id, topic = %name, "deleted topic");
        Ok(())
    }

    async fn create_partitions(
        &mut self,
        name: String,
        total: i32,
        validate_only: bool,
    ) -> Result<(), ErrorCode> {
        self.not_internal(&name, "grow")?;
        self.topic_allowed(&name, acl::ALTER).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &name);
        let log = self.log();
        self.awaiting(log.create_partitions(&topic, total, validate_only))
            .await
            .map_err(|e| self.storage_error("create partitions", e))
    }

    async fn topic_configs(&mut self, name: String) -> Result<Vec<log::ConfigEntry>, ErrorCode> {
        self.topic_allowed(&name, acl::DESCRIBE_CONFIGS).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &name);
        let meta = self.ctx.log.topic(&topic).ok_or(StorageError::UnknownTopicOrPartition.kafka_code())?;
        Ok(meta.config.entries(self.ctx.log.defaults()).into_iter().map(config_entry).collect())
    }

    async fn alter_topic_configs(
        &mut self,
        name: String,
        ops: Vec<(String, log::ConfigOp)>,
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        self.not_internal(&name, "alter the configs of")
            .map_err(|c| (c, format!("{name} is an internal topic.")))?;
        self.topic_allowed(&name, acl::ALTER_CONFIGS)
            .await
            .map_err(|c| (c, "Topic authorization failed.".to_string()))?;
        let topic = self.ctx.topic(&self.conn.tenant, &name);
        let change = if incremental {
            ConfigChange::Incremental(
                ops.into_iter()
                    .map(|(k, op)| {
                        let op = match op {
                            log::ConfigOp::Set(v) => AlterOp::Set(v),
                            log::ConfigOp::Delete => AlterOp::Delete,
                            log::ConfigOp::Append(v) => AlterOp::Append(v),
                            log::ConfigOp::Subtract(v) => AlterOp::Subtract(v),
                        };
                        (k, op)
                    })
                    .collect(),
            )
        } else {
            ConfigChange::Replace(
                ops.into_iter()
                    .filter_map(|(k, op)| match op {
                        log::ConfigOp::Set(v) => Some((k, v)),
                        _ => None,
                    })
                    .collect(),
            )
        };
        let log = self.log();
        match self.awaiting(log.alter_topic_config(&topic, &change, validate_only)).await {
            Ok(meta) => {
                if !validate_only {
                    tracing::info!(conn = self.conn.id, topic = %name, overrides = ?meta.config.overrides, "altered topic configs");
                }
                Ok(())
            }
            // The validation's words are the client's answer; other failures keep their details
            // in the host's log.
            Err(StorageError::InvalidConfig(why)) => Err((guise_guest_sdk::error::INVALID_CONFIG, why)),
            Err(e) => Err((self.storage_error("alter topic configs", e), String::new())),
        }
    }

    async fn broker_configs(&mut self) -> Vec<log::ConfigEntry> {
        if !self.cluster_allowed(acl::DESCRIBE_CONFIGS).await {
            return Vec::new();
        }
        let d = self.ctx.log.defaults();
        let entry = |name: &str, value: String| log::ConfigEntry {
            name: name.to_string(),
            value: Some(value),
            read_only: true,
            is_default: false,
            sensitive: false,
        };
        vec![
            entry("auto.create.topics.enable", self.ctx.auto_create_topics.to_string()),
            entry("num.partitions", self.ctx.default_partitions.to_string()),
            entry("message.max.bytes", d.max_message_bytes.to_string()),
            entry("log.segment.bytes", d.segment_bytes.to_string()),
            entry("log.retention.ms", d.retention_ms.to_string()),
            entry("log.retention.bytes", d.retention_bytes.to_string()),
            entry("socket.request.max.bytes", self.ctx.max_frame_bytes.to_string()),
            entry("broker.id", self.ctx.node_id.to_string()),
        ]
    }

    async fn append(
        &mut self,
        tp: types::TopicPartition,
        records: Resource<BufferHandle>,
    ) -> Result<log::AppendInfo, ErrorCode> {
        self.not_internal(&tp.topic, "produce to")?;
        self.topic_allowed(&tp.topic, acl::WRITE).await?;
        let bytes = self.buffer(&records).ok_or(CORRUPT_MESSAGE)?.0.clone();
        self.verify_transactional(&tp, &bytes).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &tp.topic);
        // An fsync or a tenant's transform is not the translator's CPU time.
        let log = self.log();
        let appended = self.awaiting(log.append(&topic, tp.partition, bytes)).await;
        match appended {
            Ok(a) => Ok(log::AppendInfo { base_offset: a.base_offset, log_start_offset: a.log_start_offset }),
            Err(e) => Err(self.storage_error("append", e)),
        }
    }

    async fn read(
        &mut self,
        tp: types::TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<log::Fetched, ErrorCode> {
        self.read_isolated(tp, offset, max_bytes, min_one, Isolation::ReadUncommitted).await.map(|(f, _)| f)
    }

    async fn read_committed(
        &mut self,
        tp: types::TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<log::CommittedFetch, ErrorCode> {
        let (fetched, aborted) =
            self.read_isolated(tp, offset, max_bytes, min_one, Isolation::ReadCommitted).await?;
        let aborted = aborted
            .into_iter()
            .map(|a| log::AbortedTransaction { producer_id: a.producer_id, first_offset: a.first_offset })
            .collect();
        Ok(log::CommittedFetch { fetched, aborted })
    }

    async fn list_offset_committed(
        &mut self,
        tp: types::TopicPartition,
        timestamp: i64,
    ) -> Result<Option<log::OffsetAndTimestamp>, ErrorCode> {
        self.topic_allowed(&tp.topic, acl::DESCRIBE).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &tp.topic);
        let log = self.log();
        let found = self
            .awaiting(async {
                let stable = log.last_stable_offset(&topic, tp.partition).await?;
                let found = match timestamp {
                    -1 => Some((stable, -1)),
                    -2 => log.offsets(&topic, tp.partition).await.map(|(start, _)| Some((start, -1)))?,
                    -3 => log.max_timestamp(&topic, tp.partition).await?,
                    ts => log.offset_for_timestamp(&topic, tp.partition, ts).await?,
                };
                // Only what a read_committed consumer may read.
                Ok::<_, crate::storage::StorageError>(
                    found.filter(|(offset, _)| timestamp == -1 || timestamp == -2 || *offset < stable),
                )
            })
            .await;
        match found {
            Ok(found) => Ok(found.map(|(offset, timestamp)| log::OffsetAndTimestamp { offset, timestamp })),
            Err(e) => Err(self.storage_error("list offsets", e)),
        }
    }

    async fn list_offset(
        &mut self,
        tp: types::TopicPartition,
        timestamp: i64,
    ) -> Result<Option<log::OffsetAndTimestamp>, ErrorCode> {
        self.topic_allowed(&tp.topic, acl::DESCRIBE).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &tp.topic);
        let log = self.log();
        let found = self
            .awaiting(async {
                match timestamp {
                    -1 => log.offsets(&topic, tp.partition).await.map(|(_, end)| Some((end, -1))),
                    -2 => log.offsets(&topic, tp.partition).await.map(|(start, _)| Some((start, -1))),
                    -3 => log.max_timestamp(&topic, tp.partition).await,
                    ts => log.offset_for_timestamp(&topic, tp.partition, ts).await,
                }
            })
            .await;
        match found {
            Ok(found) => Ok(found.map(|(offset, timestamp)| log::OffsetAndTimestamp { offset, timestamp })),
            Err(e) => Err(self.storage_error("list offsets", e)),
        }
    }

    async fn delete_records(&mut self, tp: types::TopicPartition, offset: i64) -> Result<i64, ErrorCode> {
        self.not_internal(&tp.topic, "delete records of")?;
        self.topic_allowed(&tp.topic, acl::DELETE).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &tp.topic);
        let log = self.log();
        let start = self
            .awaiting(log.delete_records(&topic, tp.partition, offset))
            .await
            .map_err(|e| self.storage_error("delete records", e))?;
        tracing::info!(conn = self.conn.id, topic = %tp.topic, partition = tp.partition, log_start = start, "deleted records");
        Ok(start)
    }

    async fn describe_partition(
        &mut self,
        tp: types::TopicPartition,
    ) -> Result<log::PartitionReport, ErrorCode> {
        self.topic_allowed(&tp.topic, acl::DESCRIBE).await?;
        let topic = self.ctx.topic(&self.conn.tenant, &tp.topic);
        let log = self.log();
        let r = self
            .awaiting(log.report(&topic, tp.partition))
            .await
            .map_err(|e| self.storage_error("describe a partition", e))?;
        Ok(log::PartitionReport {
            size_bytes: r.size_bytes,
            producers: r
                .producers
                .into_iter()
                .map(|p| log::ProducerState {
                    producer_id: p.producer_id,
                    epoch: p.epoch,
                    last_sequence: p.last_sequence,
                    last_timestamp: p.last_timestamp,
                    current_txn_start_offset: p.txn_start_offset,
                })
                .collect(),
        })
    }

    async fn log_dir(&mut self) -> log::LogDirInfo {
        let d = self.log().log_dir();
        log::LogDirInfo { path: d.path, total_bytes: d.total_bytes, usable_bytes: d.usable_bytes }
    }
}

impl cluster::Host for GuestState {
    fn self_broker(&mut self) -> cluster::Broker {
        cluster::Broker {
            node_id: self.ctx.node_id,
            host: self.conn.advertised.as_ref().map_or(&self.ctx.advertised_host, |a| &a.0).clone(),
            port: self.conn.advertised.as_ref().map_or(self.ctx.advertised_port, |a| a.1),
            rack: None,
        }
    }

    fn brokers(&mut self) -> Vec<cluster::Broker> {
        vec![self.self_broker()]
    }

    fn get_settings(&mut self) -> cluster::Settings {
        cluster::Settings {
            cluster_id: self.ctx.cluster_id.clone(),
            auto_create_topics: self.ctx.auto_create_topics,
            default_partitions: self.ctx.default_partitions,
            max_frame_bytes: self.ctx.max_frame_bytes,
            transaction_version: self.ctx.transaction_version,
        }
    }
}

impl connection::Host for GuestState {
    fn tenant(&mut self) -> String {
        self.conn.tenant.clone()
    }

    fn id(&mut self) -> u64 {
        self.conn.id
    }

    fn client_host(&mut self) -> String {
        // Kafka reports the address without the port, with a leading slash.
        let ip = self.conn.peer.rsplit_once(':').map_or(self.conn.peer.as_str(), |(ip, _)| ip);
        format!("/{}", ip.trim_start_matches('[').trim_end_matches(']'))
    }
}

impl logging::Host for GuestState {
    fn log(&mut self, level: logging::Level, message: String) {
        let conn = self.conn.id;
        match level {
            logging::Level::Trace => tracing::trace!(target: "guise::guest", conn, "{message}"),
            logging::Level::Debug => tracing::debug!(target: "guise::guest", conn, "{message}"),
            logging::Level::Info => tracing::info!(target: "guise::guest", conn, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "guise::guest", conn, "{message}"),
            logging::Level::Error => tracing::error!(target: "guise::guest", conn, "{message}"),
        }
    }
}

impl handler_types::Host for GuestState {}
