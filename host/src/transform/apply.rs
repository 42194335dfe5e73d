//! The produce path of a transformed topic: decode each batch (any codec), call the transform
//! once per batch, re-encode what it returns with the batch's codec, route records to other
//! topics of the tenant, and append — routed records first, then the input partition, so the
//! producer is acknowledged only after both are stored.
//!
//! Idempotent producers: a retry of a batch already stored is recognized before the transform
//! runs (it is not transformed or routed again); a produce holds its producer's lock stripe
//! from that check to its append, so a retry sent while the original still runs waits for it. The batch stored for the input partition keeps
//! the producer id, epoch and base sequence of the original and spans its record count even when
//! the transform dropped records (fewer records, or none, over the same offsets, as Kafka's
//! batches after compaction), so the producer's next sequence is accepted, also after a restart.
//! Records beyond the original count (a transform that emits more than it got) go into a
//! following batch without a producer id. Routed and dead-letter records carry no producer id:
//! if an append fails after routed records were stored, the producer gets an error and its retry
//! may store those routed records again (at least once, not exactly once).
//!
//! Transactions: what a transform makes of a transactional batch belongs to its transaction.
//! Records routed to other partitions are first added to the producer's open transaction
//! (`txn::Coordinator::add_routed`, as AddPartitionsToTxn adds a partition), then stored as
//! transactional batches of the producer with no sequence (`Append::HOST_TXN`, as Kafka's
//! coordinator writes a transaction's offsets), so its markers commit or abort them with the
//! rest; records beyond the batch's own count follow it in one such batch. A failure after
//! some of them were stored is answered INVALID_RECORD, which makes the client abort the
//! transaction, rather than a retriable code whose retry would route them again. Dead letters
//! of a failed transactional batch are written outside the transaction (they record why it
//! failed, whatever becomes of it).

use super::{Binding, Policy, PoolFailure, Transforms};
use crate::record::batch::{self, BatchHeader};
use crate::record::records::{self, EncodeSpec, Header as LogHeader, Record as LogRecord};
use crate::storage::producers::NO_SEQUENCE;
use crate::storage::{Append, AppendInfo, IngressMark, StorageError, TopicMeta, TopicName};
use crate::txn::Producer;
use crate::wasm::transform::{
    Emitted, Header as GuestHeader, InputBatch, Record as GuestRecord, TransformFailure,
};
use crate::wasm::{GuestFailure, TransformModule};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Failures of one transform logged in full: the first, then every this many.
const LOG_EVERY: u64 = 1000;

impl Transforms {
    /// Append `records` (a produce request's batches for one partition of a topic `binding`
    /// runs on, or an ingress append's up to `ingress`) through the transform.
    pub async fn apply(
        &self,
        binding: &Binding,
        topic: &TopicName,
        partition: i32,
        records: Bytes,
        ingress: Option<IngressMark>,
    ) -> Result<AppendInfo, StorageError> {
        let module = match &binding.module {
            Ok(m) => m,
            Err(why) => {
                return Err(StorageError::Busy(format!(
                    "transform {}@{} is bound to this topic but could not be loaded ({why}); roll it back, redeploy or delete it",
                    binding.name, binding.version
                )));
            }
        };
        let log = &self.shared.log;
        let meta = log.topic(topic).ok_or(StorageError::UnknownTopicOrPartition)?;
        if partition < 0 || partition >= meta.partitions {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        let batches = batch::validate(&records, meta.config.max_message_bytes)?;
        // The producers' stripes, in order (a request rarely carries more than one producer).
        let mut stripes: Vec<usize> = batches
            .iter()
            .filter(|b| b.header.producer_id >= 0)
            .map(|b| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (topic, partition, b.header.producer_id).hash(&mut h);
                (h.finish() % self.shared.producer_locks.len() as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut _held = Vec::with_capacity(stripes.len());
        for i in stripes {
            _held.push(self.shared.producer_locks[i].lock().await);
        }
        let mut input = Vec::new();
        // (topic, the transaction's producer for records of a transactional batch) → records.
        let mut routed: BTreeMap<(String, Option<Producer>), Vec<LogRecord>> = BTreeMap::new();
        let mut codec = 0;
        for b in &batches {
            let raw = &records[b.position..b.position + b.size()];
            let header = b.header;
            codec = header.compression();
            if header.producer_id >= 0 && header.base_sequence == NO_SEQUENCE {
                // The host writes these into transactions; a client's has a sequence.
                return Err(StorageError::InvalidRecord(format!(
                    "a batch of producer {} without a sequence",
                    header.producer_id
                )));
            }
            let txn = header
                .is_transactional()
                .then_some(Producer { id: header.producer_id, epoch: header.producer_epoch });
            // Sequence and epoch first: a batch the log would refuse is not transformed or routed.
            if header.producer_id >= 0 && log.producer_precheck(topic, partition, &header).await?.is_some() {
                // A retry of a stored batch: the log answers it with the original offsets.
                input.extend_from_slice(raw);
                continue;
            }
            // The decoded records must fit the guest's memory anyway.
            let decoded = records::decode(raw, binding.limits.memory_bytes).map_err(|e| match e {
                records::RecordsError::TooLarge { size, max } => {
                    StorageError::MessageTooLarge { size, max: u32::try_from(max).unwrap_or(u32::MAX) }
                }
                e => StorageError::CorruptMessage(format!("decoding a batch for its transform: {e}")),
            })?;
            let call = InputBatch {
                topic: topic.topic.clone(),
                records: decoded.records.iter().map(to_guest).collect(),
            };
            let outcome = self.call(binding, module, call).await;
            if let Err(TransformFailure::Guest(GuestFailure::Instantiate(why))) = &outcome {
                // The host's trouble, not the guest's (no free instance slot): the batch is not
                // the policy's to drop or pass untransformed; the producer retries.
                return Err(StorageError::Busy(format!("cannot run the transform now: {why}")));
            }
            match outcome {
                Ok(outputs) => {
                    let mut own = Vec::new();
                    for o in outputs {
                        match o.topic {
                            None => own.push(o.record),
                            Some(t) => routed.entry((t, txn)).or_default().push(o.record),
                        }
                    }
                    encode_input(&mut input, &header, &own)?;
                }
                Err(failure) => {
                    let counters = &binding.outcomes;
                    let counter = match &binding.spec.policy {
                        Policy::Reject => &counters.rejected,
                        Policy::Skip => &counters.skipped,
                        Policy::Pass => &counters.passed,
                        Policy::DeadLetter(_) => &counters.dead_lettered,
                    };
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n % LOG_EVERY == 0 {
                        tracing::warn!(
                            tenant = %binding.tenant,
                            transform = %module.id.name,
                            version = module.id.version,
                            topic = %topic.topic,
                            partition,
                            policy = %binding.spec.policy,
                            times = n + 1,
                            "transform failed on a batch: {failure}"
                        );
                    }
                    match &binding.spec.policy {
                        Policy::Reject => {
                            return Err(StorageError::InvalidRecord(format!(
                                "transform {}@{} failed on the batch ({failure}); its policy is reject",
                                module.id.name, module.id.version
                            )));
                        }
                        Policy::Skip => encode_input(&mut input, &header, &[])?,
                        Policy::Pass => input.extend_from_slice(raw),
                        Policy::DeadLetter(dlq) => {
                            let why = Reason { failure: &failure, module, topic: &topic.topic, partition };
                            let letters = routed.entry((dlq.clone(), None)).or_default();
                            letters.extend(decoded.records.into_iter().map(|r| why.stamp(r)));
                            encode_input(&mut input, &header, &[])?;
                        }
                    }
                }
            }
        }
        // Whether records of a transaction may have been stored: a retry would route them again.
        // Set before a route, which may store some partitions before it fails (or store one in
        // doubt: a send that timed out).
        let mut in_txn = false;
        for ((name, txn), records) in routed {
            in_txn |= txn.is_some();
            self.route(&topic.tenant, &name, records, codec, txn)
                .await
                .map_err(|e| match e {
                    // Not the input topic's fault, and not something a retry fixes: clients would
                    // retry these codes (and store the routed records again each time).
                    StorageError::UnknownTopicOrPartition
                    | StorageError::MessageTooLarge { .. }
                    | StorageError::InvalidTopic(_) => StorageError::InvalidRecord(format!(
                        "routing the transform's records to {name:?}: {e}"
                    )),
                    e => e,
                })
                .map_err(|e| abortable(e, in_txn))?;
        }
        if input.is_empty() {
            // Every record dropped and no producer state to keep: nothing appended, no offset.
            // (An ingress append's mark is not stored either: if its messages come again, the
            // transform drops them again.)
            let (start, _) = log.offsets(topic, partition).await?;
            return Ok(AppendInfo { base_offset: -1, last_offset: -1, log_start_offset: start });
        }
        // The input's own batches keep their sequences; records a transform added to a
        // transactional batch follow it unsequenced (see `encode_input`).
        let how = Append { ingress, ..Append::HOST_TXN };
        log.append_with(topic, partition, Bytes::from(input), how).await.map_err(|e| abortable(e, in_txn))
    }

    async fn call(
        &self,
        binding: &Binding,
        module: &Arc<TransformModule>,
        batch: InputBatch,
    ) -> Result<Vec<Emitted>, TransformFailure> {
        let shared = self.shared.clone();
        let module = module.clone();
        let limits = binding.limits.clone();
        let outputs = binding.spec.output_topics.clone();
        let seed = shared.counter.fetch_add(1, Ordering::Relaxed);
        // In one of the tenant's slots: a looping transform holds one of its own, not everyone's.
        // On the transform threads; the time the call took there is the request's (its tenant's
        // quotas and ceiling count it).
        let calls = shared.calls(&binding.tenant);
        let pool = shared.clone();
        let ran = calls
            .run(
                pool.pool
                    .run(async move { shared.engine.call(&module, &limits, &outputs, &batch, seed).await }),
            )
            .await;
        match ran {
            Ok((result, busy)) => {
                crate::wasm::charge(busy);
                result
            }
            // A call that panicked is the guest's failure (its policy applies); no thread to
            // run it on is the host's (the producer retries).
            Err(e @ PoolFailure::Panicked(_)) => Err(GuestFailure::Trap(e.to_string()).into()),
            Err(e @ PoolFailure::Unavailable) => Err(GuestFailure::Instantiate(e.to_string()).into()),
        }
    }

    /// Append `records` to `tenant`'s topic `name`, each in the partition of its key (Kafka's
    /// murmur2 partitioner) or, keyless, spread over the partitions, in `codec`, split where a
    /// batch would exceed the topic's max.message.bytes: batches without a producer id, or with
    /// `txn`, in its open transaction (the partitions joined to it first).
    async fn route(
        &self,
        tenant: &str,
        name: &str,
        records: Vec<LogRecord>,
        codec: u8,
        txn: Option<Producer>,
    ) -> Result<(), StorageError> {
        let topic = TopicName::new(tenant, self.shared.cfg.namespace.clone(), name);
        let meta = self.routed_topic(&topic).await?;
        let mut per_partition: BTreeMap<i32, Vec<LogRecord>> = BTreeMap::new();
        for r in records {
            let p = match &r.key {
                Some(k) => records::partition_for_key(k, meta.partitions),
                None => (self.shared.counter.fetch_add(1, Ordering::Relaxed) % meta.partitions as u64) as i32,
            };
            per_partition.entry(p).or_default().push(r);
        }
        if let Some(producer) = txn {
            let partitions: Vec<(String, i32)> =
                per_partition.keys().map(|p| (name.to_string(), *p)).collect();
            self.join_transaction(tenant, producer, &partitions).await?;
        }
        let spec = EncodeSpec {
            producer_id: txn.map_or(-1, |t| t.id),
            producer_epoch: txn.map_or(-1, |t| t.epoch),
            ..EncodeSpec::plain(codec, -1)
        };
        let how = if txn.is_some() { Append::HOST_TXN } else { Append::HOST };
        let max = meta.config.max_message_bytes as usize;
        for (p, records) in per_partition {
            let mut out = Vec::new();
            encode_split(&mut out, &records, &spec, txn.is_some(), max)?;
            self.shared.log.append_with(&topic, p, Bytes::from(out), how).await?;
        }
        Ok(())
    }

    /// Add `partitions` (of `tenant`'s topics) to `producer`'s open transaction.
    async fn join_transaction(
        &self,
        tenant: &str,
        producer: Producer,
        partitions: &[(String, i32)],
    ) -> Result<(), StorageError> {
        use guise_guest_sdk::error as codes;
        let Some(txn) = &self.shared.txn else {
            return Err(StorageError::TransactionsUnsupported(
                "records a transform routes from a transaction need the transaction coordinator".into(),
            ));
        };
        let why = |what: &str| {
            format!(
                "adding {partitions:?} to the transaction of producer {} at epoch {}: {what}",
                producer.id, producer.epoch
            )
        };
        txn.add_routed(tenant, producer, partitions).await.map_err(|code| match code {
            codes::INVALID_PRODUCER_EPOCH | codes::PRODUCER_FENCED => {
                StorageError::InvalidProducerEpoch(why("the producer was fenced"))
            }
            codes::INVALID_TXN_STATE
            | codes::CONCURRENT_TRANSACTIONS
            | codes::INVALID_PRODUCER_ID_MAPPING => {
                StorageError::InvalidTxnState(why("its transaction is no longer open"))
            }
            // (The routed topic went away meanwhile.)
            codes::UNKNOWN_TOPIC_OR_PARTITION | codes::OPERATION_NOT_ATTEMPTED => {
                StorageError::UnknownTopicOrPartition
            }
            code => StorageError::Busy(why(&format!("the coordinator answered error {code}"))),
        })
    }

    /// A routed or dead-letter topic, created when missing if auto-creation is on.
    async fn routed_topic(&self, topic: &TopicName) -> Result<TopicMeta, StorageError> {
        let log = &self.shared.log;
        if let Some(meta) = log.topic(topic) {
            return Ok(meta);
        }
        if !self.shared.cfg.auto_create_topics {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        match log.create_topic(topic, self.shared.cfg.default_partitions, &[], false).await {
            Ok(meta) => {
                tracing::info!(%topic, "created a topic a transform routes to");
                Ok(meta)
            }
            Err(StorageError::TopicAlreadyExists(_)) => {
                log.topic(topic).ok_or(StorageError::UnknownTopicOrPartition)
            }
            Err(e) => Err(e),
        }
    }
}

/// The input partition's share of one produced batch: `own` re-encoded with the batch's codec,
/// keeping the producer's sequence span (see the module docs).
fn encode_input(out: &mut Vec<u8>, h: &BatchHeader, own: &[LogRecord]) -> Result<(), StorageError> {
    let spec = |keep_producer: bool, span| EncodeSpec {
        compression: h.compression(),
        producer_id: if keep_producer { h.producer_id } else { -1 },
        producer_epoch: if keep_producer { h.producer_epoch } else { -1 },
        base_sequence: if keep_producer { h.base_sequence } else { -1 },
        log_append_time: h.is_log_append_time(),
        offset_span: span,
        empty_timestamp: h.max_timestamp,
        keep_offset_deltas: false,
    };
    if h.producer_id < 0 {
        if !own.is_empty() {
            out.extend(records::encode(own, &spec(false, None)).map_err(encode_error)?);
        }
        return Ok(());
    }
    let first = own.len().min(h.records_count.max(0) as usize);
    // Records the transform kept in their order keep their offsets (the producer computes each
    // record's offset from the batch's base); anything else is numbered from the base. A
    // transaction's batch stays one (it commits or aborts with the transaction).
    let kept = records::offset_deltas_fit(&own[..first], h.last_offset_delta);
    let with_producer = EncodeSpec { keep_offset_deltas: kept, ..spec(true, Some(h.last_offset_delta)) };
    out.extend(
        records::encode_rewrite(&own[..first], &with_producer, None, h.is_transactional())
            .map_err(encode_error)?,
    );
    if own.len() > first {
        // Beyond the producer's sequence span: without a producer id, or, of a transactional
        // batch, in its transaction without a sequence.
        let rest = match h.is_transactional() {
            true => EncodeSpec { base_sequence: NO_SEQUENCE, ..spec(true, None) },
            false => spec(false, None),
        };
        out.extend(
            records::encode_rewrite(&own[first..], &rest, None, h.is_transactional())
                .map_err(encode_error)?,
        );
    }
    Ok(())
}

/// Encode `records` as `spec` says (`transactional` or not) into batches of at most `max`
/// bytes where possible (halving; a single record larger than `max` is left for the log to
/// refuse).
fn encode_split(
    out: &mut Vec<u8>,
    records: &[LogRecord],
    spec: &EncodeSpec,
    transactional: bool,
    max: usize,
) -> Result<(), StorageError> {
    let encoded = records::encode_rewrite(records, spec, None, transactional).map_err(encode_error)?;
    if encoded.len() <= max || records.len() == 1 {
        out.extend(encoded);
        return Ok(());
    }
    let (a, b) = records.split_at(records.len() / 2);
    encode_split(out, a, spec, transactional, max)?;
    encode_split(out, b, spec, transactional, max)
}

/// The error of a produce that failed after records of its transaction were routed and stored
/// (`stored`): a code the client retries would route them again, so anything retriable becomes
/// INVALID_RECORD, and the client aborts the transaction (with those records).
fn abortable(e: StorageError, stored: bool) -> StorageError {
    match e {
        StorageError::Busy(_)
        | StorageError::Io(_)
        | StorageError::NotLeader(_)
        | StorageError::Unavailable(_)
            if stored =>
        {
            StorageError::InvalidRecord(format!(
                "records the transform routed in this transaction were stored, then the batch failed ({e}); \
                 abort the transaction"
            ))
        }
        e => e,
    }
}

fn encode_error(e: records::RecordsError) -> StorageError {
    StorageError::InvalidRecord(format!("encoding the transform's records: {e}"))
}

/// Why records went to the dead-letter topic, as headers on each.
struct Reason<'a> {
    failure: &'a TransformFailure,
    module: &'a TransformModule,
    topic: &'a str,
    partition: i32,
}

impl Reason<'_> {
    fn stamp(&self, mut r: LogRecord) -> LogRecord {
        let h = |k: &str, v: String| LogHeader { key: k.to_string(), value: Some(Bytes::from(v)) };
        r.headers.push(h("guise.dlq.reason", self.failure.to_string()));
        r.headers.push(h("guise.dlq.kind", self.failure.kind().to_string()));
        r.headers
            .push(h("guise.dlq.transform", format!("{}@{}", self.module.id.name, self.module.id.version)));
        r.headers.push(h("guise.dlq.topic", self.topic.to_string()));
        r.headers.push(h("guise.dlq.partition", self.partition.to_string()));
        r
    }
}

fn to_guest(r: &LogRecord) -> GuestRecord {
    GuestRecord {
        key: r.key.as_ref().map(|b| b.to_vec()),
        value: r.value.as_ref().map(|b| b.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|h| GuestHeader { key: h.key.clone(), value: h.value.as_ref().map(|b| b.to_vec()) })
            .collect(),
        timestamp: r.timestamp,
        offset_delta: r.offset_delta,
    }
}
