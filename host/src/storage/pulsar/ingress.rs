//! Pulsar applications → Kafka clients. A Pulsar producer cannot write a partition topic (its
//! owner holds it with an Exclusive producer, which keeps offsets single-writer), so a Kafka
//! topic `t` with `guise.pulsar.ingress=true` has an ingress topic `t:ingress` (a name no Kafka
//! topic can have), with the same partitions. The owner of partition `p` reads
//! `t:ingress-partition-p` on the durable Failover subscription [`SUBSCRIPTION`], maps each
//! message to a record (`crate::pulsar::mapping`, as the Pulsar endpoint does), appends them in
//! order through the front ends' log (transforms included) with the last message's id as the
//! append's ingress mark, and acknowledges cumulatively once the append is stored.
//!
//! Exactly once: the mark travels with the appended messages (`props::INGRESS`), and recovery
//! gives the next owner the last mark in the log; messages at or before it that Pulsar delivers
//! again (appended, not yet acknowledged) are skipped, here and by the partition itself.
//!
//! Ownership: every host runs [`Supervisor`], which opens (takes) the partitions of ingress
//! topics that it has not lost to another host, so ingress flows without Kafka traffic. The
//! Failover priority is derived from the writer epoch, so the newest owner is the active
//! consumer; an older owner's consumer receives nothing, and its appends are refused.

use super::client::{OPERATION_TIMEOUT, Owned, within};
use super::meta::Catalog;
use super::partition::{Partition, Shared};
use super::{PartitionMap, open_partition};
use crate::pulsar::mapping;
use crate::pulsar::proto::{KeyValue, SingleMessageMetadata};
use crate::record::TopicName;
use crate::record::records::{self, EncodeSpec};
use crate::storage::{IngressMark, Log, StorageError};
use ::pulsar::consumer::{InitialPosition, Message};
use ::pulsar::{Consumer, ConsumerOptions, SubType, TokioExecutor};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tracing::Instrument;

/// The subscription the owner of a partition reads its ingress topic with.
pub const SUBSCRIPTION: &str = "guise-ingress";
/// What the ingress topic's name adds to the Kafka topic's (`:` is not in Kafka's alphabet).
pub const SUFFIX: &str = ":ingress";

/// How often the supervisor looks for ingress partitions to serve.
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// How long an idle runner waits for a message before it checks that it still owns the partition.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Pause after a failure before trying again.
const RETRY: Duration = Duration::from_secs(1);
/// Pause before reading again a message this host could not decode.
const UNREADABLE_RETRY: Duration = Duration::from_secs(30);
/// Messages taken into one append at most.
const MAX_MESSAGES: usize = 1000;

/// The ingress topic of Kafka topic `name`.
pub fn ingress_topic(name: &TopicName) -> TopicName {
    TopicName::new(name.tenant.clone(), name.namespace.clone(), format!("{}{SUFFIX}", name.topic))
}

type Key = (TopicName, uuid::Uuid, i32);

/// The runners of one host's ingress partitions, and the task that starts them.
#[derive(Default)]
pub struct Supervisor {
    runners: Mutex<HashMap<Key, tokio::task::JoinHandle<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Supervisor {
    /// Start scanning on the current runtime (the front ends', where transforms run).
    pub fn start(
        self: &Arc<Self>,
        front: Weak<dyn Log>,
        catalog: Weak<RwLock<Catalog>>,
        partitions: Weak<RwLock<PartitionMap>>,
        shared: Weak<Shared>,
    ) {
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let (Some(me), Some(catalog), Some(partitions), Some(shared)) =
                    (me.upgrade(), catalog.upgrade(), partitions.upgrade(), shared.upgrade())
                else {
                    return;
                };
                me.scan(&front, &catalog, &partitions, &shared);
                drop((me, catalog, partitions, shared));
                tokio::time::sleep(SCAN_EVERY).await;
            }
        });
        if let Some(old) = self.task.lock().replace(task) {
            old.abort();
        }
    }

    /// Start a runner for every partition of an ingress topic that has none and that this host
    /// has not lost; stop those whose topic is gone or no longer has ingress.
    fn scan(
        &self,
        front: &Weak<dyn Log>,
        catalog: &RwLock<Catalog>,
        partitions: &RwLock<PartitionMap>,
        shared: &Arc<Shared>,
    ) {
        let wanted: Vec<Key> = catalog
            .read()
            .topics
            .values()
            .filter(|t| t.config.ingress)
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), t.id, p)))
            .collect();
        let mut runners = self.runners.lock();
        runners.retain(|k, h| {
            let keep = !h.is_finished() && wanted.contains(k);
            if !keep {
                h.abort();
            }
            keep
        });
        for key in wanted {
            if runners.contains_key(&key) {
                continue;
            }
            let p = open_partition(partitions, &key);
            if p.gone() {
                continue;
            }
            let (name, _, partition) = key.clone();
            let span = tracing::info_span!("ingress", topic = %name, partition);
            let run = run(front.clone(), shared.clone(), p, name, partition).instrument(span);
            runners.insert(key, tokio::spawn(run));
        }
    }
}

impl Supervisor {
    /// Stop scanning and every runner (the log is going).
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
        for (_, h) in self.runners.lock().drain() {
            h.abort();
        }
    }
}

/// Serve one partition's ingress until this host loses the partition.
async fn run(front: Weak<dyn Log>, shared: Arc<Shared>, p: Arc<Partition>, name: TopicName, partition: i32) {
    let source = crate::pulsar::topic::pulsar_name(&ingress_topic(&name), Some(partition));
    let epoch = loop {
        // Pulsar's futures run on the backend's runtime (theirs need its larger stacks).
        let (p2, shared2) = (p.clone(), shared.clone());
        match shared.bridge.run(move || async move { p2.ensure_open(&shared2).await }).await {
            Ok(()) => {}
            Err(e) if is_final(&e) => return,
            Err(e) => tracing::warn!("cannot open the partition for its ingress yet: {e}"),
        }
        if let Some(epoch) = p.epoch() {
            break epoch;
        }
        if p.gone() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    };
    loop {
        let consumer = match subscribe(&shared, &source, epoch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot subscribe {SUBSCRIPTION} to {source}: {e}");
                tokio::time::sleep(RETRY).await;
                if p.gone() {
                    return;
                }
                continue;
            }
        };
        tracing::info!(source, "serving the partition's ingress");
        match serve(&front, &shared, &consumer, &p, &name, partition, &source).await {
            Served::Lost => return,
            Served::Resubscribe => tokio::time::sleep(RETRY).await,
        }
    }
}

enum Served {
    /// The partition is gone from this host: stop.
    Lost,
    /// The consumer failed: subscribe again.
    Resubscribe,
}

/// The owner's consumer, shared with the tasks that use it on the backend's runtime.
type Held = Arc<tokio::sync::Mutex<Consumer<Vec<u8>, TokioExecutor>>>;

/// What one receive brought.
enum Received {
    /// Nothing within [`IDLE_CHECK`].
    Idle,
    /// The consumer ended or failed (with this message).
    Failed(Option<String>),
    /// Messages, in order, at most [`MAX_MESSAGES`] and about `limit` bytes.
    Group(Vec<Message<Vec<u8>>>),
}

/// Wait up to [`IDLE_CHECK`] for a message, then take what else is ready without waiting.
async fn receive(consumer: Held, limit: usize) -> Result<Received, StorageError> {
    let mut consumer = consumer.lock().await;
    let first = match tokio::time::timeout(IDLE_CHECK, consumer.next()).await {
        Err(_) => return Ok(Received::Idle),
        Ok(None) => return Ok(Received::Failed(None)),
        Ok(Some(Err(e))) => return Ok(Received::Failed(Some(e.to_string()))),
        Ok(Some(Ok(m))) => m,
    };
    let mut bytes = first.payload.data.len();
    let mut group = vec![first];
    while group.len() < MAX_MESSAGES && bytes < limit {
        match consumer.next().now_or_never() {
            Some(Some(Ok(m))) => {
                bytes += m.payload.data.len();
                group.push(m);
            }
            _ => break,
        }
    }
    Ok(Received::Group(group))
}

async fn serve(
    front: &Weak<dyn Log>,
    shared: &Shared,
    consumer: &Owned<Held>,
    p: &Partition,
    name: &TopicName,
    partition: i32,
    source: &str,
) -> Served {
    loop {
        let limit = front
            .upgrade()
            .and_then(|f| f.topic(name))
            .map_or(1 << 20, |m| m.config.max_message_bytes as usize / 2);
        let held = Arc::clone(consumer);
        let group = match shared.bridge.run(move || receive(held, limit)).await {
            Ok(Received::Idle) if p.gone() => return Served::Lost,
            Ok(Received::Idle) => continue,
            Ok(Received::Group(group)) => group,
            Ok(Received::Failed(None)) => return Served::Resubscribe,
            Ok(Received::Failed(Some(e))) => {
                if e.contains("snappy") {
                    // The pulsar crate (6.9) decodes Snappy as the framed format, Pulsar's
                    // clients write raw Snappy: the message stays in the ingress topic.
                    tracing::error!(
                        "reading {source}: {e}: this host cannot read Snappy-compressed Pulsar \
                         messages; the partition's ingress waits at that message (producers should \
                         use LZ4, ZLIB or ZSTD; `pulsar-admin topics skip {source} -s {SUBSCRIPTION} \
                         -n 1` gives the message up)"
                    );
                    tokio::time::sleep(UNREADABLE_RETRY).await;
                } else {
                    tracing::warn!("reading {source}: {e}");
                }
                return Served::Resubscribe;
            }
            Err(e) => {
                tracing::warn!("reading {source}: {e}");
                return Served::Resubscribe;
            }
        };
        // Acknowledge up to the last whole entry: Pulsar acknowledges a batch entry as a whole.
        let ack = group.iter().rev().find(|m| completes_entry(m)).map(|m| {
            let id = m.message_id();
            ::pulsar::proto::MessageIdData {
                ledger_id: id.ledger_id,
                entry_id: id.entry_id,
                ..Default::default()
            }
        });
        // Each message mapped once, its payload moved into the record.
        let mapped = group.into_iter().map(|m| (mark_of(&m), record_of(m))).collect();
        if append(front, p, name, partition, mapped).await.is_err() {
            return Served::Lost;
        }
        if let Some(id) = ack {
            let (consumer, topic) = (Arc::clone(consumer), source.to_string());
            let acked = shared.bridge.run(move || async move {
                let mut consumer = consumer.lock().await;
                consumer
                    .cumulative_ack_with_id(&topic, id)
                    .await
                    .map_err(|e| StorageError::Unavailable(e.to_string()))
            });
            if let Err(e) = acked.await {
                tracing::warn!("acknowledging {source}: {e}");
            }
        }
    }
}

/// Append what of `group` is not in the log yet, until it is stored or refused for good; Err
/// when the partition is gone from this host.
async fn append(
    front: &Weak<dyn Log>,
    p: &Partition,
    name: &TopicName,
    partition: i32,
    group: Vec<(IngressMark, Result<records::Record, mapping::MappingError>)>,
) -> Result<(), ()> {
    let last = group.last().expect("a group has a first message").0;
    let mut mapped = Vec::with_capacity(group.len());
    for (mark, record) in group {
        match record {
            Ok(r) => mapped.push((mark, r)),
            Err(e) => tracing::error!(message = %mark, "an ingress message is not a record, skipped: {e}"),
        }
    }
    loop {
        let stored = p.ingress_mark();
        if stored >= Some(last) {
            return Ok(());
        }
        // (A retry after a failed append takes only what is not in the log since.)
        let mut recs: Vec<records::Record> =
            mapped.iter().filter(|(mark, _)| Some(*mark) > stored).map(|(_, r)| r.clone()).collect();
        for (i, r) in recs.iter_mut().enumerate() {
            r.offset_delta = i32::try_from(i).unwrap_or(i32::MAX);
        }
        let Some(front) = front.upgrade() else { return Err(()) };
        let result = match records::encode(&recs, &EncodeSpec::plain(0, -1)) {
            Ok(batch) if !recs.is_empty() => {
                front.append_ingress(name, partition, Bytes::from(batch), last).await
            }
            Ok(_) => return Ok(()),
            Err(e) => Err(StorageError::InvalidRecord(e.to_string())),
        };
        match result {
            Ok(_) => return Ok(()),
            Err(e) if is_final(&e) => return Err(()),
            Err(
                e @ (StorageError::MessageTooLarge { .. }
                | StorageError::InvalidRecord(_)
                | StorageError::CorruptMessage(_)
                | StorageError::InvalidTimestamp(_)
                | StorageError::PolicyViolation(_)),
            ) => {
                // Never appendable: holding on would stop the partition's ingress for good.
                tracing::error!(
                    messages = recs.len(),
                    last = %last,
                    "the log refuses these ingress messages, skipped: {e}"
                );
                return Ok(());
            }
            Err(e) => {
                tracing::warn!("appending ingress messages up to {last}: {e}; trying again");
                drop(front);
                tokio::time::sleep(RETRY).await;
                if p.gone() {
                    return Err(());
                }
            }
        }
    }
}

/// Errors that mean this host no longer owns the partition.
fn is_final(e: &StorageError) -> bool {
    matches!(e, StorageError::NotLeader(_) | StorageError::UnknownTopicOrPartition)
}

fn mark_of(m: &Message<Vec<u8>>) -> IngressMark {
    let id = m.message_id();
    IngressMark { ledger: id.ledger_id, entry: id.entry_id, index: id.batch_index.unwrap_or(-1) }
}

/// Whether `m` is the last message of its entry (a batch's last, or not batched).
fn completes_entry(m: &Message<Vec<u8>>) -> bool {
    match m.message_id().batch_index {
        None => true,
        Some(i) => i + 1 >= m.payload.metadata.num_messages_in_batch.unwrap_or(1),
    }
}

/// The record a Pulsar message maps to (key, properties as headers, event time or publish
/// time as its timestamp).
fn record_of(m: Message<Vec<u8>>) -> Result<records::Record, mapping::MappingError> {
    let meta = &m.payload.metadata;
    let single = SingleMessageMetadata {
        properties: meta
            .properties
            .iter()
            .map(|kv| KeyValue { key: kv.key.clone(), value: kv.value.clone() })
            .collect(),
        partition_key: meta.partition_key.clone(),
        partition_key_b64_encoded: meta.partition_key_b64_encoded,
        event_time: meta.event_time,
        null_value: meta.null_value,
        payload_size: i32::try_from(m.payload.data.len()).unwrap_or(i32::MAX),
        ..Default::default()
    };
    let publish_time = meta.publish_time;
    mapping::record_of(&single, Bytes::from(m.payload.data), publish_time)
}

/// The owner's consumer of `source`: Failover, its priority from the writer epoch (a newer
/// owner's is higher, and Pulsar makes it the active consumer).
async fn subscribe(shared: &Shared, source: &str, epoch: u64) -> Result<Owned<Held>, StorageError> {
    let priority = i32::try_from(i32::MAX as u64 - epoch.min(i32::MAX as u64)).unwrap_or(0);
    let client = shared.bridge.client.clone();
    let topic = source.to_string();
    let consumer = shared
        .bridge
        .run(move || async move {
            let options = ConsumerOptions {
                durable: Some(true),
                initial_position: InitialPosition::Earliest,
                priority_level: Some(priority),
                ..Default::default()
            };
            within(
                OPERATION_TIMEOUT,
                &format!("subscribing {SUBSCRIPTION} to {topic}"),
                client
                    .consumer()
                    .with_topic(&topic)
                    .with_subscription(SUBSCRIPTION)
                    .with_subscription_type(SubType::Failover)
                    .with_batch_size(MAX_MESSAGES as u32)
                    .with_options(options)
                    .build::<Vec<u8>>(),
            )
            .await
        })
        .await?;
    Ok(Owned::new(Arc::new(tokio::sync::Mutex::new(consumer)), shared.bridge.handle().clone()))
}
