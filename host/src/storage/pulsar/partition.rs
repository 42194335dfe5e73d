//! One Kafka partition kept in one Pulsar topic: its single writer, its offset index, the tail
//! cache and the cached fetch reader, and how it takes ownership.
//!
//! Opening (lazily, on first use, under the writer lock):
//! 1. take the topic: a producer with access mode ExclusiveWithFencing fences any other writer;
//!    it is closed at once and an Exclusive producer holds the topic from then on, so that the
//!    crate's automatic re-creation of a producer (after a dropped connection) can never fence a
//!    newer owner in turn: it fails with ProducerBusy while that owner lives;
//! 2. append a probe (a no-op message) and read the topic from the start up to it (an exact end:
//!    nobody else can append meanwhile), rebuilding the index and the idempotent-producer state
//!    (see `index`);
//! 3. write a fence marker with epoch = highest seen + 1 and the next offset, so that readers skip
//!    anything a fenced writer still manages to write with its older epoch;
//! 4. subscribe `guise-retention` (durable, never consumed) so that Pulsar keeps the messages
//!    until Kafka retention lets them go.
//!
//! Ownership is lost for good (the partition answers NOT_LEADER_OR_FOLLOWER from then on in
//! this process, and says why in the log) when a send fails because another producer holds or
//! fenced the topic, or when a message of a higher writer epoch shows up after this writer's
//! own messages: a send that waits too long looks for one, and so does a send whose message id
//! does not directly follow the writer's previous one (another writer appended in between,
//! e.g. after the crate re-created this producer behind a newer owner's back: such a send is
//! not acknowledged, as readers skip it). Any other failure (a timeout, a dropped connection)
//! drops the writer and returns a retriable error; the next append takes the topic back
//! without fencing (an Exclusive producer: a busy topic means another host owns it, which is
//! never fenced back, so two hosts cannot take a partition from each other in turn), recovers
//! it again and writes a new fence marker, unless it finds a higher epoch than its own.

mod compact;

use super::client::{Bridge, EXCLUSIVE, EXCLUSIVE_WITH_FENCING, OPERATION_TIMEOUT, Owned, within};
use super::index::{self, IndexEntry, MsgId, ProducerInfo, Recovery, Txn};
use super::props::{self, BatchInfo, Kind, Props};
use super::reader::{End, Follower, PREFETCH, Received};
use crate::pulsar::mapping;
use crate::pulsar::proto::{KeyValue, SingleMessageMetadata};
use crate::record::batch::{self, BatchHeader, ValidBatch};
use crate::record::records::{self, EncodeSpec};
use crate::storage::producers::{Checked, ProducerEpochs, ProducerStateTable};
use crate::storage::{AppendInfo, EntryFormat, IngressMark, Isolation, ReadResult, StorageError, TxnMarker};
use ::pulsar::consumer::InitialPosition;
use ::pulsar::producer::Message;
use ::pulsar::{Consumer, ConsumerOptions, Producer, ProducerOptions, SubType, TokioExecutor};
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The durable subscription that keeps a partition's messages in Pulsar.
pub const RETENTION_SUBSCRIPTION: &str = "guise-retention";
/// Bytes of recently appended batches kept in memory per partition for fetches at the tail.
const TAIL_CACHE_BYTES: usize = 4 << 20;
/// How long a fetch waits for a message the index says is there.
const READ_WAIT: Duration = Duration::from_secs(10);
/// How long a fetch reader is kept without a fetch (it holds up to [`CURSOR_PREFETCH`]
/// messages).
pub const CURSOR_IDLE: Duration = Duration::from_secs(60);
/// Messages a fetch reader lets the broker push ahead: [`CURSOR_PREFETCH_BYTES`] worth of the
/// messages about to be read (entry format `pulsar` has one small message per record), between
/// these bounds; so at most about that many bytes, or this many times the largest message, in
/// memory per open partition.
const CURSOR_PREFETCH: (u32, u32) = (16, 1000);
const CURSOR_PREFETCH_BYTES: u64 = 4 << 20;
/// A fetch returns what it has after this long (it is answered inside a guest call whose
/// deadline must not pass); the client fetches the rest next.
const READ_BUDGET: Duration = Duration::from_millis(300);
/// How long a send waits before it looks for a newer writer, and then between two looks.
const FENCE_CHECK_AFTER: Duration = Duration::from_secs(1);
const FENCE_CHECK_EVERY: Duration = Duration::from_secs(2);
/// The largest decompressed records section decoded for format `pulsar`.
const MAX_DECODED: usize = 256 << 20;

/// What every partition needs from the backend.
pub struct Shared {
    pub bridge: Bridge,
    pub epochs: ProducerEpochs,
    /// The largest Pulsar message payload sent (pulsar_max_message_bytes minus room for the
    /// message metadata).
    pub max_payload: usize,
}

pub struct Partition {
    /// `persistent://tenant/namespace/topic-partition-N`
    pub topic: String,
    topic_id: uuid::Uuid,
    state: RwLock<State>,
    writer: tokio::sync::Mutex<Option<Writer>>,
    cursor: tokio::sync::Mutex<Option<Cursor>>,
    hwm: watch::Sender<i64>,
}

#[derive(Default)]
struct State {
    /// Why this host lost the partition, once it did.
    lost: Option<String>,
    /// The epoch of this host's last fence marker, once it took the partition (Some: open).
    epoch: Option<u64>,
    closed: bool,
    entries: VecDeque<IndexEntry>,
    log_start: i64,
    high_watermark: i64,
    /// The latest appended batches, contiguous up to the high watermark.
    cache: VecDeque<(i64, Bytes)>,
    /// Where the last compaction's rewrite ended (`compact`): the dirty part starts there.
    cleaned_to: i64,
    /// A compaction pass is running: retention and DeleteRecords wait for the next round.
    compacting: bool,
    /// The last ingress message in the log (see `ingress`).
    ingress: Option<IngressMark>,
    cache_bytes: usize,
    /// The idempotent and transactional producers, as recovered at open and kept by this
    /// host's appends and markers (changed under the writer lock only; read by fetches for the
    /// last stable offset and the aborted transactions).
    producers: ProducerStateTable,
}

struct Writer {
    producer: Owned<Producer<TokioExecutor>>,
    epoch: u64,
    /// The id of the last message this writer sent.
    last: MsgId,
    retention: Option<Retention>,
}

/// The partition's `guise-retention` subscription (Failover). `_holder` keeps it and is its
/// active consumer: it is never read, so the crate's consumer engine stops asking for messages
/// once its queue is full. `acker`, of a lower priority, is never active while a holder is
/// connected, so it receives nothing and its engine stays free to carry the acknowledgements
/// (on an active consumer nobody reads, they would wait forever behind an undelivered message).
pub(super) struct Retention {
    _holder: Owned<Consumer<Vec<u8>, TokioExecutor>>,
    acker: Owned<Consumer<Vec<u8>, TokioExecutor>>,
}

impl Retention {
    pub(super) async fn open(
        client: &super::client::Client,
        topic: &str,
        handle: &tokio::runtime::Handle,
    ) -> Result<Retention, StorageError> {
        let holder = Owned::new(subscribe_retention(client, topic, 0).await?, handle.clone());
        let acker = Owned::new(subscribe_retention(client, topic, 1).await?, handle.clone());
        Ok(Retention { _holder: holder, acker })
    }

    /// Let Pulsar delete every message up to `last` (once no other subscription needs them).
    pub(super) async fn acknowledge_to(&mut self, topic: &str, last: MsgId) {
        // What it received while it was the active one (its holder reconnecting), dropped.
        while let Some(Some(_)) = futures::FutureExt::now_or_never(futures::StreamExt::next(&mut *self.acker))
        {
        }
        if let Err(e) = self.acker.cumulative_ack_with_id(topic, last.to_data()).await {
            tracing::warn!(topic, "cannot acknowledge messages Pulsar may now delete: {e}");
        }
    }
}

/// A fetch reader left where the last fetch stopped (dropped once idle for [`CURSOR_IDLE`]).
struct Cursor {
    follower: Follower,
    /// When a fetch last used it.
    used: Instant,
    /// The base offset of the next entry it delivers.
    next_base: i64,
    /// A batch read but not returned (it did not fit), with its base offset.
    lookahead: Option<(i64, Bytes)>,
}

/// The offset after the last whole batch of `records`.
fn offset_after(records: &[u8]) -> Option<i64> {
    let mut rest = records;
    let mut next = None;
    while let Ok(h) = BatchHeader::parse(rest) {
        if h.size() > rest.len() {
            break;
        }
        next = Some(h.last_offset().saturating_add(1));
        rest = &rest[h.size()..];
    }
    next
}

fn lost_error(why: &str) -> StorageError {
    StorageError::NotLeader(why.to_string())
}

/// Whether an error says another writer holds or took the topic.
fn is_ownership_error(e: &StorageError) -> bool {
    if matches!(e, StorageError::NotLeader(_)) {
        return true;
    }
    super::client::is_fenced(e)
}

/// Whether `next` is the message right after `prev` (same ledger, next entry). A ledger roll is
/// not: what went before it in the old ledger is unknown.
fn follows(prev: MsgId, next: MsgId) -> bool {
    next.ledger == prev.ledger && prev.entry.checked_add(1) == Some(next.entry)
}

impl Partition {
    pub fn new(topic: String, topic_id: uuid::Uuid) -> Partition {
        Partition {
            topic,
            topic_id,
            state: RwLock::new(State::default()),
            writer: tokio::sync::Mutex::new(None),
            cursor: tokio::sync::Mutex::new(None),
            hwm: watch::channel(0).0,
        }
    }

    fn check_usable(&self) -> Result<bool, StorageError> {
        let s = self.state.read();
        if s.closed {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        if let Some(why) = &s.lost {
            return Err(lost_error(why));
        }
        Ok(s.epoch.is_some())
    }

    /// Mark ownership lost (logged once) and return the error to answer with.
    fn lose(&self, why: String) -> StorageError {
        let mut s = self.state.write();
        if s.lost.is_none() {
            tracing::error!(topic = %self.topic, "lost ownership of the partition, answering NOT_LEADER_OR_FOLLOWER from now on: {why}");
            s.lost = Some(why.clone());
        }
        lost_error(&why)
    }

    /// Open the partition if it is not yet (see the module docs).
    pub async fn ensure_open(&self, shared: &Shared) -> Result<(), StorageError> {
        if self.check_usable()? {
            return Ok(());
        }
        let mut writer = self.writer.lock().await;
        self.open_locked(shared, &mut writer).await
    }

    async fn open_locked(&self, shared: &Shared, writer: &mut Option<Writer>) -> Result<(), StorageError> {
        if self.check_usable()? && writer.is_some() {
            return Ok(());
        }
        let client = &shared.bridge.client;
        let handle = shared.bridge.handle();
        let create = |mode: i32| {
            let options =
                ProducerOptions { access_mode: Some(mode), block_queue_if_full: true, ..Default::default() };
            within(
                OPERATION_TIMEOUT,
                format!("creating a producer on {}", self.topic),
                client.producer().with_topic(&self.topic).with_options(options).build(),
            )
        };
        // Some: this host owned the partition and takes it back after a transient failure.
        let mine = self.state.read().epoch;
        // Taking it back, an ownership error is for good; at the first open, only for this call.
        let classify = |e: StorageError, what: &str| {
            if !is_ownership_error(&e) {
                e
            } else if mine.is_some() {
                self.lose(format!("{what}: {e}"))
            } else {
                lost_error(&format!("{what}: {e}"))
            }
        };
        let producer = if mine.is_some() {
            // Never fence when taking it back: another host may own it now.
            create(EXCLUSIVE).await.map_err(|e| classify(e, "taking the partition back"))?
        } else {
            let mut fencing =
                create(EXCLUSIVE_WITH_FENCING).await.map_err(|e| classify(e, "taking the partition"))?;
            if let Err(e) = fencing.close().await {
                tracing::debug!(topic = %self.topic, "closing the fencing producer: {e}");
            }
            drop(Owned::new(fencing, handle.clone()));
            create(EXCLUSIVE).await.map_err(|e| classify(e, "taking the partition"))?
        };
        let mut producer = Owned::new(producer, handle.clone());

        // Where the topic ends: nobody else can append while this producer holds it, so the
        // probe's id is the exact end (the broker's last message id may not be, see `reader`).
        let probe = Props { topic_id: self.topic_id, epoch: 0, kind: Kind::Probe, copy: false };
        let end = send_all(&mut producer, vec![message(Vec::new(), &probe)])
            .await
            .map_err(|e| classify(e, "writing the probe"))?[0];
        let mut follower = Follower::open(client, handle, &self.topic, None, PREFETCH).await?;
        let mut recovery = Recovery::new(self.topic_id);
        let read = follower
            .read_to(end, |m| {
                let seen = recovery.feed(m.id, Props::parse(m.props()), &m.payload);
                recovery.feed_mark(seen, props::ingress_of(m.props()));
            })
            .await?;
        drop(follower);
        let skipped = recovery.skipped;
        let recovered = recovery.finish();
        if let Some(mine) = mine
            && recovered.max_epoch > mine
        {
            return Err(self.lose(format!(
                "another host took the partition (epoch {} after this host's {mine})",
                recovered.max_epoch
            )));
        }
        let epoch = recovered
            .max_epoch
            .checked_add(1)
            .ok_or_else(|| StorageError::Unavailable(format!("{}: writer epochs exhausted", self.topic)))?;

        let fence = Props {
            topic_id: self.topic_id,
            epoch,
            kind: Kind::Fence { next: recovered.next_offset, start: recovered.log_start },
            copy: false,
        };
        let last = send_all(&mut producer, vec![message(Vec::new(), &fence)])
            .await
            .map_err(|e| classify(e, "writing the fence marker"))?[0];

        let retention = match Retention::open(client, &self.topic, handle).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(topic = %self.topic, "cannot hold the {RETENTION_SUBSCRIPTION} subscription (Pulsar may delete unread messages unless the namespace has a retention policy): {e}");
                None
            }
        };
        for (pid, pepoch) in recovered.producers.epochs() {
            shared.epochs.observe(pid, pepoch);
        }
        tracing::info!(
            topic = %self.topic,
            messages = read,
            skipped,
            entries = recovered.entries.len(),
            log_start = recovered.log_start,
            next_offset = recovered.next_offset,
            epoch,
            "opened the partition"
        );
        {
            let mut s = self.state.write();
            s.entries = recovered.entries;
            s.log_start = recovered.log_start;
            s.high_watermark = recovered.next_offset;
            s.cache.clear();
            s.cache_bytes = 0;
            s.cleaned_to = recovered.cleaned_to;
            s.ingress = recovered.ingress;
            s.epoch = Some(epoch);
            let mut producers = recovered.producers;
            if mine.is_some() {
                // Taken back: what the coordinator registered here still holds (KIP-890).
                producers.keep_registrations(&s.producers);
            }
            s.producers = producers;
        }
        self.hwm.send_replace(recovered.next_offset);
        *writer = Some(Writer { producer, epoch, last, retention });
        Ok(())
    }

    /// See [`Log::append`](crate::storage::Log::append): `batches` are validated already.
    /// `how.ingress`: the last ingress message they were made from (see
    /// [`Log::append_ingress`](crate::storage::Log::append_ingress)).
    pub async fn append(
        &self,
        shared: &Shared,
        records: Bytes,
        batches: Vec<ValidBatch>,
        format: EntryFormat,
        how: crate::storage::Append,
    ) -> Result<AppendInfo, StorageError> {
        self.append_checked(shared, records, batches, format, how.ingress, |producers, headers| {
            producers.check(headers, |pid| shared.epochs.latest(pid), how.unsequenced_txn)
        })
        .await
    }

    /// Append the transaction coordinator's `marker`, whose control batch `records` holds
    /// (validated, the only batch in `batches`), as [`append`](Self::append) appends: it is
    /// checked against the producer's state on the partition (a stale epoch is refused) instead
    /// of the sequence checks, and ends the producer's open transaction once stored.
    pub async fn write_marker(
        &self,
        shared: &Shared,
        records: Bytes,
        batches: Vec<ValidBatch>,
        marker: &TxnMarker,
    ) -> Result<AppendInfo, StorageError> {
        self.append_checked(shared, records, batches, EntryFormat::Kafka, None, |producers, headers| {
            match headers {
                [h] if h.is_control() => {
                    producers.check_marker(marker, h.base_offset, h.max_timestamp).map(Checked::Append)
                }
                _ => Err(StorageError::InvalidRecord("a transaction marker is one control batch".into())),
            }
        })
        .await
    }

    /// The transaction coordinator added this partition to producer `pid`'s transaction at
    /// `epoch` (KIP-890; under the writer lock, so in order with appends and markers). Kept
    /// when this host takes the partition back after a failed send; a host that takes it over
    /// knows none until its coordinator registers its open transactions again (producers not
    /// registered are not checked here, only by the coordinator).
    pub async fn register_txn(&self, shared: &Shared, pid: i64, epoch: i16) -> Result<(), StorageError> {
        let mut guard = self.writer.lock().await;
        self.open_locked(shared, &mut guard).await?;
        self.state.write().producers.register_txn(pid, epoch);
        Ok(())
    }

    /// The last stable offset: the first offset of the earliest open transaction, or the high
    /// watermark without one.
    pub async fn last_stable_offset(&self, shared: &Shared) -> Result<i64, StorageError> {
        self.ensure_open(shared).await?;
        let s = self.state.read();
        Ok(s.producers.last_stable_offset(s.log_start, s.high_watermark))
    }

    /// [`append`](Self::append) with the producers' check `check` (given the state and the
    /// batches' headers with their assigned offsets).
    async fn append_checked(
        &self,
        shared: &Shared,
        records: Bytes,
        batches: Vec<ValidBatch>,
        format: EntryFormat,
        ingress: Option<IngressMark>,
        check: impl FnOnce(&ProducerStateTable, &[BatchHeader]) -> Result<Checked, StorageError> + Send,
    ) -> Result<AppendInfo, StorageError> {
        // Format kafka stores each batch as one message; format pulsar checks each record.
        for b in batches.iter().filter(|b| stored_format(format, &b.header) == EntryFormat::Kafka) {
            if b.size() > shared.max_payload {
                return Err(StorageError::MessageTooLarge {
                    size: b.size(),
                    max: u32::try_from(shared.max_payload).unwrap_or(u32::MAX),
                });
            }
        }
        let mut guard = self.writer.lock().await;
        self.open_locked(shared, &mut guard).await?;
        let w = guard.as_mut().expect("opened");
        let (base_offset, log_start, stored_mark) = {
            let s = self.state.read();
            (s.high_watermark, s.log_start, s.ingress)
        };
        if ingress.is_some() && ingress <= stored_mark {
            // Ingress messages already in the log, delivered again: nothing to append.
            return Ok(AppendInfo { base_offset: -1, last_offset: -1, log_start_offset: log_start });
        }
        let mut next = base_offset;
        let mut headers = Vec::with_capacity(batches.len());
        for b in &batches {
            let mut header = b.header;
            header.base_offset = next;
            // The offset after the batch must fit (a corrupt fence marker could say anything).
            next = next
                .checked_add(i64::from(header.last_offset_delta))
                .and_then(|last| last.checked_add(1))
                .filter(|n| *n > header.base_offset && *n <= props::MAX_LAST)
                .ok_or_else(|| {
                    StorageError::Unavailable(format!("the offsets of {} are exhausted", self.topic))
                })?;
            headers.push(header);
        }
        let checked = check(&self.state.read().producers, &headers)?;
        let pending = match checked {
            Checked::Append(p) => p,
            Checked::Duplicate { base_offset, last_offset } => {
                return Ok(AppendInfo { base_offset, last_offset, log_start_offset: log_start });
            }
        };
        // The batches as stored: base offsets patched in.
        let stored: Vec<Bytes> = batches
            .iter()
            .zip(&headers)
            .map(|(b, h)| {
                let mut bytes = BytesMut::from(&records[b.position..b.position + b.size()]);
                bytes[..8].copy_from_slice(&h.base_offset.to_be_bytes());
                bytes.freeze()
            })
            .collect();
        let mut messages = Vec::new();
        let mut per_batch = Vec::with_capacity(stored.len());
        for (bytes, h) in stored.iter().zip(&headers) {
            let before = messages.len();
            messages.extend(batch_messages(
                stored_format(format, h),
                bytes.to_vec(),
                h,
                self.topic_id,
                w.epoch,
                shared.max_payload,
                false,
            )?);
            per_batch.push((before, messages.len() - before));
        }
        if let (Some(mark), Some(last)) = (ingress, messages.last_mut()) {
            last.properties.insert(props::INGRESS.to_string(), mark.to_string());
        }
        let sizes: Vec<u64> = messages.iter().map(|m| m.payload.len() as u64).collect();
        let ids = match self.send_checked(shared, w, messages).await {
            Ok(ids) => ids,
            Err(e) => return Err(self.failed(&mut guard, "appending", e).await),
        };
        let w = guard.as_mut().expect("still there");

        for (pid, pepoch) in pending.epochs() {
            shared.epochs.observe(pid, pepoch);
        }
        {
            let mut s = self.state.write();
            s.producers.commit(pending);
            for ((h, bytes), (first, count)) in headers.iter().zip(&stored).zip(per_batch) {
                let txn = Txn::of(h, bytes);
                s.entries.push_back(entry_of(h, txn, &ids, &sizes, first, count, format, w.epoch));
                s.cache_bytes += bytes.len();
                s.cache.push_back((h.base_offset, bytes.clone()));
            }
            while s.cache_bytes > TAIL_CACHE_BYTES && s.cache.len() > 1 {
                let (_, old) = s.cache.pop_front().expect("non-empty");
                s.cache_bytes -= old.len();
            }
            s.high_watermark = next;
            if ingress.is_some() {
                s.ingress = ingress;
            }
        }
        self.hwm.send_replace(next);
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_start_offset: log_start })
    }

    /// The last ingress message in the log, as far as this host knows (see `ingress`).
    pub fn ingress_mark(&self) -> Option<IngressMark> {
        self.state.read().ingress
    }

    /// This host's writer epoch, while it holds the partition.
    pub fn epoch(&self) -> Option<u64> {
        let s = self.state.read();
        s.epoch.filter(|_| s.lost.is_none() && !s.closed)
    }

    /// Whether this host lost the partition to another or it was deleted: for good.
    pub fn gone(&self) -> bool {
        self.check_usable().is_err()
    }

    /// The producer checks an append of `header` would meet now (see `Log::producer_precheck`).
    pub async fn precheck(
        &self,
        shared: &Shared,
        header: &BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let mut guard = self.writer.lock().await;
        self.open_locked(shared, &mut guard).await?;
        let checked = self.state.read().producers.check(
            std::slice::from_ref(header),
            |pid| shared.epochs.latest(pid),
            false,
        )?;
        match checked {
            Checked::Duplicate { base_offset, last_offset } => Ok(Some((base_offset, last_offset))),
            Checked::Append(_) => Ok(None),
        }
    }

    /// The bytes of its stored batches above the log start, and the idempotent producers it
    /// remembers (none until this host has opened it).
    pub async fn report(&self) -> crate::storage::PartitionReport {
        let s = self.state.read();
        let size_bytes = s.entries.iter().filter(|e| e.last >= s.log_start).map(|e| e.bytes).sum();
        crate::storage::PartitionReport { size_bytes, producers: s.producers.snapshot() }
    }

    pub fn offsets(&self) -> (i64, i64) {
        let s = self.state.read();
        (s.log_start, s.high_watermark)
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        let mut rx = self.hwm.subscribe();
        rx.mark_unchanged();
        rx
    }

    /// The topic is deleted: appends fail, watches close, Pulsar objects go.
    pub async fn close(&self) {
        self.state.write().closed = true;
        let writer = self.writer.lock().await.take();
        if let Some(mut w) = writer {
            let _ = w.producer.close().await;
        }
        self.cursor.lock().await.take();
        // Watches close when the last holder of the partition drops it (and its sender).
    }

    /// Drop the fetch reader if no fetch used it for `idle` (it is re-opened when needed).
    pub fn evict_idle_cursor(&self, idle: Duration) -> bool {
        let Ok(mut cursor) = self.cursor.try_lock() else { return false };
        if cursor.as_ref().is_some_and(|c| c.used.elapsed() >= idle) {
            *cursor = None;
            return true;
        }
        false
    }

    /// A send of the writer failed: ownership is lost for good, or the writer is dropped and
    /// the partition taken back at the next append (see the module docs).
    async fn failed(&self, writer: &mut Option<Writer>, what: &str, e: StorageError) -> StorageError {
        let what = format!("{what} to {}", self.topic);
        let w = writer.take();
        if is_ownership_error(&e) {
            drop(w); // closed in the background
            return self.lose(format!("{what}: {e}"));
        }
        tracing::warn!(topic = %self.topic, "{what}: {e}; the partition is taken back at the next append");
        if let Some(mut w) = w {
            // Closed before the next producer is created, or the broker could find it busy.
            let _ = within(Duration::from_secs(5), "closing the producer", w.producer.close()).await;
        }
        StorageError::Unavailable(format!("{what}: {e}"))
    }

    /// Send `messages` with the writer, making sure no newer writer took the partition: while
    /// receipts are slow to come (a fenced producer that the crate keeps re-creating waits for
    /// the operation timeout), and when the message ids do not follow the writer's previous one.
    async fn send_checked(
        &self,
        shared: &Shared,
        w: &mut Writer,
        messages: Vec<Message>,
    ) -> Result<Vec<MsgId>, StorageError> {
        let (from, epoch) = (w.last, w.epoch);
        let ids = {
            let send = send_all(&mut w.producer, messages);
            tokio::pin!(send);
            let watch = async {
                tokio::time::sleep(FENCE_CHECK_AFTER).await;
                loop {
                    match self.newer_epoch_after(shared, epoch, from, None).await {
                        Ok(Some(newer)) => return newer,
                        Ok(None) => {}
                        Err(e) => tracing::debug!(topic = %self.topic, "looking for a newer writer: {e}"),
                    }
                    tokio::time::sleep(FENCE_CHECK_EVERY).await;
                }
            };
            tokio::select! {
                ids = &mut send => ids?,
                newer = watch => {
                    return Err(self.lose(format!(
                        "another host took the partition (epoch {newer} after this host's {epoch})"
                    )));
                }
            }
        };
        let mut prev = from;
        let mut contiguous = true;
        for id in &ids {
            contiguous &= follows(prev, *id);
            prev = *id;
        }
        if !contiguous && let Some(newer) = self.newer_epoch_after(shared, epoch, from, Some(prev)).await? {
            return Err(self.lose(format!(
                "another host took the partition (epoch {newer} after this host's {epoch}); the messages sent at {prev:?} are not acknowledged"
            )));
        }
        w.last = prev;
        Ok(ids)
    }

    /// The epoch of a message of this topic with an epoch above `epoch`, after `from` and up to
    /// `end` (by default the topic's last message, if known exactly).
    async fn newer_epoch_after(
        &self,
        shared: &Shared,
        epoch: u64,
        from: MsgId,
        end: Option<MsgId>,
    ) -> Result<Option<u64>, StorageError> {
        let client = &shared.bridge.client;
        let mut f = Follower::open(client, shared.bridge.handle(), &self.topic, Some(from), 8).await?;
        let end = match end {
            Some(end) => end,
            None => match f.end().await? {
                End::At(end) => end,
                End::Empty | End::Unknown => return Ok(None),
            },
        };
        while f.position.is_none_or(|p| p < end) {
            let Some(m) = f.next(READ_WAIT).await? else {
                return Err(StorageError::Unavailable(format!(
                    "reading {} up to {end:?}: stalled",
                    self.topic
                )));
            };
            if m.id <= from {
                continue;
            }
            if let Some(p) = Props::parse(m.props())
                && p.topic_id == self.topic_id
                && p.epoch > epoch
            {
                return Ok(Some(p.epoch));
            }
        }
        Ok(None)
    }

    /// See [`Log::read_with`](crate::storage::Log::read_with): with
    /// [`Isolation::ReadCommitted`], only batches below the last stable offset, and the aborted
    /// transactions among them.
    pub async fn read(
        &self,
        shared: &Shared,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<ReadResult, StorageError> {
        self.ensure_open(shared).await?;
        let committed = isolation == Isolation::ReadCommitted;
        let (log_start, hwm, stable, wanted, previous, aborted) = {
            let s = self.state.read();
            let (start, end) = (s.log_start, s.high_watermark);
            if offset < start || offset > end {
                return Err(StorageError::OffsetOutOfRange { requested: offset, start, end });
            }
            let stable = s.producers.last_stable_offset(start, end);
            let limit = if committed { stable } else { end };
            let done = |records: Option<Bytes>| {
                let aborted = if committed {
                    let upper = records.as_deref().and_then(offset_after).unwrap_or(stable);
                    s.producers.aborted_between(offset, upper)
                } else {
                    Vec::new()
                };
                Ok(ReadResult {
                    records,
                    high_watermark: end,
                    log_start_offset: start,
                    last_stable_offset: stable,
                    aborted,
                })
            };
            if offset >= limit {
                return done(None);
            }
            if s.cache.front().is_some_and(|(base, _)| *base <= offset) {
                let first = s.cache.partition_point(|(base, _)| *base <= offset) - 1;
                let batches =
                    s.cache.iter().skip(first).take_while(|(base, _)| *base < limit).map(|(_, b)| b.clone());
                return done(take_batches(batches, max_bytes, min_one));
            }
            let Some(i) = index::find(&s.entries, offset) else {
                return Err(StorageError::Unavailable(format!(
                    "offset {offset} of {} is not indexed",
                    self.topic
                )));
            };
            // Entries this read may need: as many as max_bytes could take, and at least one.
            let mut wanted = Vec::new();
            let mut bytes = 0u64;
            for e in s.entries.iter().skip(i).take_while(|e| e.base < limit) {
                if !wanted.is_empty() && bytes.saturating_add(e.bytes) > max_bytes as u64 + 64 * 1024 {
                    break;
                }
                bytes = bytes.saturating_add(e.bytes);
                wanted.push(*e);
                if wanted.len() >= 10_000 {
                    break;
                }
            }
            // Nothing below the limit (compaction removed what lay between the offset and it).
            let Some(last) = wanted.last() else { return done(None) };
            // The aborted transactions the entries may hold, taken now: retention may forget
            // them while the entries are read.
            let aborted = if committed {
                s.producers.aborted_between(offset, last.last.saturating_add(1))
            } else {
                Vec::new()
            };
            let previous = i.checked_sub(1).map(|p| s.entries[p].id);
            (start, end, stable, wanted, previous, aborted)
        };
        let mut cursor = self.cursor.lock().await;
        let records =
            match self.read_entries(shared, &mut cursor, &wanted, previous, max_bytes, min_one).await {
                Ok(r) => r,
                Err(e) => {
                    *cursor = None;
                    return Err(e);
                }
            };
        // (Aborted transactions of entries read but not returned are harmless to clients.)
        Ok(ReadResult {
            records,
            high_watermark: hwm,
            log_start_offset: log_start,
            last_stable_offset: stable,
            aborted,
        })
    }

    async fn read_entries(
        &self,
        shared: &Shared,
        cursor: &mut Option<Cursor>,
        wanted: &[IndexEntry],
        previous: Option<MsgId>,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Option<Bytes>, StorageError> {
        let Some(&first) = wanted.first() else { return Ok(None) };
        let reusable = cursor.as_ref().is_some_and(|c| {
            c.lookahead.as_ref().map_or(c.next_base == first.base, |(base, _)| *base == first.base)
        });
        if !reusable {
            *cursor = None; // drop the old reader first
            let client = &shared.bridge.client;
            let messages: u64 = wanted.iter().map(|e| u64::from(e.messages)).sum();
            let bytes: u64 = wanted.iter().map(|e| e.bytes).sum();
            let average = (bytes / messages.max(1)).max(1);
            let prefetch = u32::try_from(CURSOR_PREFETCH_BYTES / average)
                .unwrap_or(u32::MAX)
                .clamp(CURSOR_PREFETCH.0, CURSOR_PREFETCH.1);
            let follower =
                Follower::open(client, shared.bridge.handle(), &self.topic, previous, prefetch).await?;
            *cursor = Some(Cursor { follower, used: Instant::now(), next_base: first.base, lookahead: None });
        }
        let c = cursor.as_mut().expect("set");
        c.used = Instant::now();
        let started = Instant::now();
        let mut out = BytesMut::new();
        for entry in wanted {
            if !out.is_empty() && started.elapsed() > READ_BUDGET {
                break;
            }
            let bytes = match c.lookahead.take() {
                Some((base, bytes)) if base == entry.base => bytes,
                _ => read_entry(&mut c.follower, entry).await?,
            };
            c.next_base = entry.last.saturating_add(1);
            let fits = out.len() + bytes.len() <= max_bytes || (out.is_empty() && min_one);
            if !fits {
                c.lookahead = Some((entry.base, bytes));
                c.next_base = entry.base;
                break;
            }
            out.extend_from_slice(&bytes);
        }
        Ok((!out.is_empty()).then(|| out.freeze()))
    }

    /// The bytes of the batch starting at `base` (for timestamp lookups).
    async fn batch_at(&self, shared: &Shared, base: i64) -> Result<Option<Bytes>, StorageError> {
        let r = self.read(shared, base, 1, true, Isolation::ReadUncommitted).await?;
        Ok(r.records.and_then(|b| {
            let h = BatchHeader::parse(&b).ok()?;
            (h.base_offset == base && h.size() <= b.len()).then(|| b.slice(..h.size()))
        }))
    }

    pub async fn offset_for_timestamp(
        &self,
        shared: &Shared,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.ensure_open(shared).await?;
        let found = self.state.read().entries.iter().find(|e| e.max_timestamp >= ts).copied();
        let Some(e) = found else { return Ok(None) };
        let fallback = (e.base, e.max_timestamp);
        if e.compressed {
            return Ok(Some(fallback));
        }
        let Some(bytes) = self.batch_at(shared, e.base).await? else { return Ok(Some(fallback)) };
        Ok(Some(batch::first_stamp(&bytes, |t| t >= ts).unwrap_or(fallback)))
    }

    pub async fn max_timestamp(&self, shared: &Shared) -> Result<Option<(i64, i64)>, StorageError> {
        self.ensure_open(shared).await?;
        let best = {
            let s = self.state.read();
            let mut best: Option<IndexEntry> = None;
            for e in &s.entries {
                if best.is_none_or(|b| e.max_timestamp > b.max_timestamp) {
                    best = Some(*e);
                }
            }
            best
        };
        let Some(e) = best else { return Ok(None) };
        let fallback = (e.last, e.max_timestamp);
        if e.compressed {
            return Ok(Some(fallback));
        }
        let Some(bytes) = self.batch_at(shared, e.base).await? else { return Ok(Some(fallback)) };
        Ok(Some(batch::first_stamp(&bytes, |t| t == e.max_timestamp).unwrap_or(fallback)))
    }

    /// Kafka retention: drop old entries from the index (keeping the last one, as the embedded
    /// log keeps its active segment), record the new log start, and let Pulsar delete them by
    /// acknowledging them on the retention subscription. Only a partition this host has open.
    pub async fn apply_retention(
        &self,
        shared: &Shared,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        if !matches!(self.check_usable(), Ok(true)) {
            return Ok(0);
        }
        let mut guard = self.writer.lock().await;
        if guard.is_none() {
            return Ok(0);
        }
        let (n, new_start, hwm, last_removed) = {
            let s = self.state.read();
            if s.compacting {
                return Ok(0);
            }
            let mut total: u64 = s.entries.iter().map(|e| e.bytes).sum();
            // The newest batch goes too once it qualifies after all the others, as Kafka
            // deletes its active segment: the log start then moves to the high watermark.
            let mut n = 0;
            while let Some(e) = s.entries.get(n) {
                let expired = retention_ms >= 0 && e.max_timestamp < now_ms.saturating_sub(retention_ms);
                let oversize =
                    retention_bytes >= 0 && total.saturating_sub(e.bytes) >= retention_bytes as u64;
                if !(expired || oversize) {
                    break;
                }
                total -= e.bytes;
                n += 1;
            }
            if n == 0 {
                return Ok(0);
            }
            let new_start = s.entries.get(n).map_or(s.high_watermark, |e| e.base);
            (n, new_start, s.high_watermark, Some(s.entries[n - 1].id))
        };
        self.move_log_start(shared, &mut guard, n, new_start, hwm, last_removed).await?;
        tracing::info!(topic = %self.topic, entries = n, log_start = new_start, "retention moved the log start");
        Ok(n)
    }

    /// DeleteRecords: move the log start up to `offset` (-1: the high watermark), drop the
    /// entries wholly below it and let Pulsar delete their messages. The new start is recorded
    /// in a fence marker first, so a restart or another host keeps it. Returns the log start.
    pub async fn delete_records(&self, shared: &Shared, offset: i64) -> Result<i64, StorageError> {
        let mut guard = self.writer.lock().await;
        if guard.is_none() {
            return Err(StorageError::Unavailable(format!("{}: the partition is not open here", self.topic)));
        }
        let (n, new_start, hwm, last_removed) = {
            let s = self.state.read();
            if s.compacting {
                return Err(StorageError::Unavailable(format!(
                    "{}: a compaction is running; try again",
                    self.topic
                )));
            }
            let offset = if offset == -1 { s.high_watermark } else { offset };
            if !(0..=s.high_watermark).contains(&offset) {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    start: s.log_start,
                    end: s.high_watermark,
                });
            }
            if offset <= s.log_start {
                return Ok(s.log_start);
            }
            let n = s.entries.iter().take_while(|e| e.last < offset).count();
            (n, offset, s.high_watermark, n.checked_sub(1).map(|i| s.entries[i].id))
        };
        self.move_log_start(shared, &mut guard, n, new_start, hwm, last_removed).await?;
        tracing::info!(topic = %self.topic, entries = n, log_start = new_start, "deleted records");
        Ok(new_start)
    }

    /// Record `new_start` as the log start (a fence marker), drop the first `n` entries and
    /// acknowledge their messages up to `last_removed` on the retention subscription.
    async fn move_log_start(
        &self,
        shared: &Shared,
        guard: &mut tokio::sync::MutexGuard<'_, Option<Writer>>,
        n: usize,
        new_start: i64,
        hwm: i64,
        last_removed: Option<MsgId>,
    ) -> Result<(), StorageError> {
        let w = guard.as_mut().expect("the caller checked the writer");
        let marker = Props {
            topic_id: self.topic_id,
            epoch: w.epoch,
            kind: Kind::Fence { next: hwm, start: new_start },
            copy: false,
        };
        if let Err(e) = self.send_checked(shared, w, vec![message(Vec::new(), &marker)]).await {
            return Err(self.failed(guard, "recording the new log start", e).await);
        }
        let w = guard.as_mut().expect("still there");
        {
            let mut s = self.state.write();
            s.entries.drain(..n);
            s.log_start = new_start;
            while s.cache.front().is_some_and(|(base, _)| *base < new_start) {
                let (_, old) = s.cache.pop_front().expect("non-empty");
                s.cache_bytes -= old.len();
            }
            s.producers.evict_before(new_start);
        }
        if let (Some(retention), Some(last)) = (w.retention.as_mut(), last_removed) {
            retention.acknowledge_to(&self.topic, last).await;
        }
        Ok(())
    }
}

fn message(payload: Vec<u8>, props: &Props) -> Message {
    Message { payload, properties: props.encode().into_iter().collect(), ..Default::default() }
}

/// The messages of one stored batch (base offset patched in) in the topic's entry format; a
/// compaction's `copy` of it when so marked.
fn batch_messages(
    format: EntryFormat,
    stored: Vec<u8>,
    header: &BatchHeader,
    topic_id: uuid::Uuid,
    epoch: u64,
    max_payload: usize,
    copy: bool,
) -> Result<Vec<Message>, StorageError> {
    match format {
        EntryFormat::Kafka => {
            let kind = Kind::Kafka { base: header.base_offset, last: header.last_offset() };
            Ok(vec![message(stored, &Props { topic_id, epoch, kind, copy })])
        }
        EntryFormat::Pulsar => record_messages(&stored, header, topic_id, epoch, max_payload, copy),
    }
}

/// The format a batch is stored in on a topic of entry format `format`: a transactional batch
/// or a transaction marker always as format `kafka` (one message, the batch itself), because
/// recovery must know it as one, and because a Pulsar application reading a topic of format
/// `pulsar` must not take a transaction's records for plain messages: whether they count is
/// decided by a marker it cannot read.
fn stored_format(format: EntryFormat, header: &BatchHeader) -> EntryFormat {
    if header.is_transactional() || header.is_control() { EntryFormat::Kafka } else { format }
}

/// The index entry of a batch sent as `count` messages from `ids[first]` (`sizes`: every sent
/// message's payload bytes) on a topic of entry format `format`, with its part `txn` in a
/// transaction.
#[allow(clippy::too_many_arguments)]
fn entry_of(
    header: &BatchHeader,
    txn: Txn,
    ids: &[MsgId],
    sizes: &[u64],
    first: usize,
    count: usize,
    format: EntryFormat,
    epoch: u64,
) -> IndexEntry {
    let mut entry = IndexEntry::of_batch(header, ids[first], epoch, txn);
    if stored_format(format, header) == EntryFormat::Pulsar {
        entry.messages = count as u32;
        entry.bytes = sizes[first..first + count].iter().sum();
    }
    entry
}

/// Send `messages` in order and wait for every receipt; their message ids.
async fn send_all(
    producer: &mut Producer<TokioExecutor>,
    messages: Vec<Message>,
) -> Result<Vec<MsgId>, StorageError> {
    let mut sends = Vec::with_capacity(messages.len());
    for m in messages {
        let send = within(OPERATION_TIMEOUT, "sending", producer.send_non_blocking(m)).await?;
        sends.push(send);
    }
    let mut ids = Vec::with_capacity(sends.len());
    for send in sends {
        let receipt = within(OPERATION_TIMEOUT, "waiting for a receipt", send).await?;
        let id = receipt
            .message_id
            .as_ref()
            .map(MsgId::of)
            .ok_or_else(|| StorageError::Unavailable("a send receipt without a message id".into()))?;
        ids.push(id);
    }
    Ok(ids)
}

/// The messages of one stored batch in format `pulsar`: one per record.
fn record_messages(
    stored: &[u8],
    header: &BatchHeader,
    topic_id: uuid::Uuid,
    epoch: u64,
    max_payload: usize,
    copy: bool,
) -> Result<Vec<Message>, StorageError> {
    let decoded =
        records::decode(stored, MAX_DECODED).map_err(|e| StorageError::CorruptMessage(e.to_string()))?;
    let mut recs = decoded.records;
    if !records::offset_deltas_fit(&recs, header.last_offset_delta) {
        for (i, r) in recs.iter_mut().enumerate() {
            r.offset_delta = i32::try_from(i).unwrap_or(i32::MAX);
        }
    }
    let count = u32::try_from(recs.len()).unwrap_or(u32::MAX);
    let info = |index: u32| BatchInfo {
        base: header.base_offset,
        last: header.last_offset(),
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        codec: header.compression(),
        index,
        count,
        max_timestamp: header.max_timestamp,
    };
    if recs.is_empty() {
        let props = Props {
            topic_id,
            epoch,
            kind: Kind::Record { offset: header.base_offset, batch: info(0) },
            copy,
        };
        return Ok(vec![message(Vec::new(), &props)]);
    }
    let mut out = Vec::with_capacity(recs.len());
    for (i, r) in recs.iter().enumerate() {
        let (meta, payload) = mapping::message_of(r);
        if payload.len() > max_payload {
            return Err(StorageError::MessageTooLarge {
                size: payload.len(),
                max: u32::try_from(max_payload).unwrap_or(u32::MAX),
            });
        }
        let offset = header.base_offset.checked_add(i64::from(r.offset_delta)).ok_or_else(|| {
            StorageError::CorruptMessage(format!("offset delta {} overflows", r.offset_delta))
        })?;
        let props = Props { topic_id, epoch, kind: Kind::Record { offset, batch: info(i as u32) }, copy };
        // Record headers first, ours last (a header named like ours is overwritten).
        let mut properties: std::collections::HashMap<String, String> =
            meta.properties.into_iter().map(|kv| (kv.key, kv.value)).collect();
        if meta.null_value == Some(true) {
            properties.insert(props::NULL.into(), "1".into());
        }
        properties.extend(props.encode());
        out.push(Message {
            payload: payload.to_vec(),
            properties,
            partition_key: meta.partition_key,
            partition_key_b64_encoded: meta.partition_key_b64_encoded,
            event_time: meta.event_time,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Read the messages of `entry` from `follower` (which is before it) and return its batch.
async fn read_entry(follower: &mut Follower, entry: &IndexEntry) -> Result<Bytes, StorageError> {
    // The first message: skip everything before it.
    let first = loop {
        let Some(m) = follower.next(READ_WAIT).await? else {
            return Err(StorageError::Unavailable(format!(
                "the message at offset {} did not arrive",
                entry.base
            )));
        };
        if m.id == entry.id {
            break m;
        }
        if m.id > entry.id {
            return Err(StorageError::Unavailable(format!("read past the message at offset {}", entry.base)));
        }
    };
    let props = Props::parse(first.props());
    match props.map(|p| p.kind) {
        Some(Kind::Kafka { .. }) => Ok(Bytes::from(first.payload)),
        Some(Kind::Record { batch, .. }) => {
            let mut messages = vec![first];
            while messages.len() < batch.messages() as usize {
                let Some(m) = follower.next(READ_WAIT).await? else {
                    return Err(StorageError::Unavailable(format!(
                        "the batch at offset {} is incomplete",
                        entry.base
                    )));
                };
                let ours = Props::parse(m.props()).is_some_and(|p| {
                    p.epoch == entry.epoch
                        && matches!(p.kind, Kind::Record { batch: b, .. }
                            if b == BatchInfo { index: messages.len() as u32, ..batch })
                });
                if ours {
                    messages.push(m);
                }
            }
            rebuild_batch(&messages, &batch, entry.producer)
        }
        _ => Err(StorageError::Unavailable(format!("the message at offset {} is not a batch", entry.base))),
    }
}

/// A Kafka batch from the messages of one record batch (format `pulsar`), base offset patched.
fn rebuild_batch(
    messages: &[Received],
    batch: &BatchInfo,
    producer: Option<ProducerInfo>,
) -> Result<Bytes, StorageError> {
    let mut recs = Vec::with_capacity(messages.len());
    if batch.count > 0 {
        for m in messages {
            let Some(Props { kind: Kind::Record { offset, .. }, .. }) = Props::parse(m.props()) else {
                continue;
            };
            let meta = SingleMessageMetadata {
                properties: m
                    .props()
                    .filter(|(k, _)| !props::is_ours(k))
                    .map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() })
                    .collect(),
                partition_key: m.partition_key.clone(),
                partition_key_b64_encoded: m.partition_key_b64_encoded.then_some(true),
                event_time: m.event_time,
                null_value: m.props().any(|(k, v)| k == props::NULL && v == "1").then_some(true),
                payload_size: i32::try_from(m.payload.len()).unwrap_or(i32::MAX),
                ..Default::default()
            };
            let mut r = mapping::record_of(&meta, Bytes::from(m.payload.clone()), m.publish_time)
                .map_err(|e| StorageError::Unavailable(format!("a stored record does not map back: {e}")))?;
            r.offset_delta = i32::try_from(offset - batch.base).unwrap_or(i32::MAX);
            recs.push(r);
        }
    }
    let p = producer.unwrap_or(ProducerInfo { id: -1, epoch: -1, base_sequence: -1 });
    let spec = EncodeSpec {
        compression: batch.codec,
        producer_id: p.id,
        producer_epoch: p.epoch,
        base_sequence: p.base_sequence,
        log_append_time: false,
        offset_span: Some(i32::try_from(batch.last - batch.base).unwrap_or(i32::MAX)),
        empty_timestamp: batch.max_timestamp,
        keep_offset_deltas: true,
    };
    let mut bytes = records::encode(&recs, &spec)
        .map_err(|e| StorageError::Unavailable(format!("rebuilding a batch: {e}")))?;
    bytes[..8].copy_from_slice(&batch.base.to_be_bytes());
    Ok(Bytes::from(bytes))
}

/// Whole batches from `batches` (the first one containing the offset asked for): stop before
/// exceeding `max_bytes` unless nothing was taken and `min_one`.
fn take_batches(batches: impl Iterator<Item = Bytes>, max_bytes: usize, min_one: bool) -> Option<Bytes> {
    let mut out = BytesMut::new();
    for b in batches {
        if out.len() + b.len() > max_bytes && !(out.is_empty() && min_one) {
            break;
        }
        out.extend_from_slice(&b);
    }
    (!out.is_empty()).then(|| out.freeze())
}

/// A consumer of the durable `guise-retention` subscription on `topic` (never acknowledged past
/// what Kafka retention or compaction lets go), so that Pulsar keeps its messages without a
/// namespace retention policy, and does not delete the topic as inactive. `priority`: the
/// Failover priority level (0 first).
pub(super) async fn subscribe_retention(
    client: &super::client::Client,
    topic: &str,
    priority: i32,
) -> Result<Consumer<Vec<u8>, TokioExecutor>, StorageError> {
    let options = ConsumerOptions {
        durable: Some(true),
        initial_position: InitialPosition::Earliest,
        receiver_queue_size: Some(1),
        priority_level: Some(priority),
        ..Default::default()
    };
    within(
        OPERATION_TIMEOUT,
        &format!("subscribing {RETENTION_SUBSCRIPTION} to {topic}"),
        client
            .consumer()
            .with_topic(topic)
            .with_subscription(RETENTION_SUBSCRIPTION)
            // Several hosts may hold it during a takeover; cumulative acks need one active.
            .with_subscription_type(SubType::Failover)
            .with_batch_size(1)
            .with_options(options)
            .build::<Vec<u8>>(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::records::{Header, Record};

    fn received(id: u64, m: Message) -> Received {
        Received {
            id: MsgId { ledger: 3, entry: id },
            properties: m.properties.into_iter().collect(),
            partition_key: m.partition_key,
            partition_key_b64_encoded: m.partition_key_b64_encoded == Some(true),
            event_time: m.event_time,
            publish_time: 5,
            payload: m.payload,
        }
    }

    #[test]
    fn a_batch_survives_the_pulsar_entry_format() {
        let recs = vec![
            Record {
                key: Some(Bytes::from_static(b"k1")),
                value: Some(Bytes::from_static(b"v1")),
                headers: vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"x")) }],
                timestamp: 1_700_000_000_000,
                offset_delta: 0,
            },
            Record {
                key: Some(Bytes::from_static(&[0xff, 0])),
                value: None,
                headers: vec![],
                timestamp: 1_700_000_000_001,
                offset_delta: 1,
            },
        ];
        for codec in [0u8, 4] {
            let spec = EncodeSpec {
                producer_id: 9,
                producer_epoch: 2,
                base_sequence: 10,
                ..EncodeSpec::plain(codec, 0)
            };
            let mut b = records::encode(&recs, &spec).unwrap();
            b[..8].copy_from_slice(&40i64.to_be_bytes());
            let h = BatchHeader::parse(&b).unwrap();
            let t = uuid::Uuid::new_v4();
            let msgs = record_messages(&b, &h, t, 3, 1 << 20, false).unwrap();
            assert_eq!(msgs.len(), 2);
            assert_eq!(msgs[0].partition_key.as_deref(), Some("k1"));
            assert_eq!(msgs[0].properties.get("h").map(String::as_str), Some("x"));
            assert_eq!(msgs[1].properties.get(props::NULL).map(String::as_str), Some("1"));
            let received: Vec<Received> =
                msgs.into_iter().enumerate().map(|(i, m)| received(i as u64, m)).collect();
            let Some(Props { kind: Kind::Record { batch, .. }, .. }) = Props::parse(received[0].props())
            else {
                panic!("not a record message")
            };
            let producer = Some(ProducerInfo { id: 9, epoch: 2, base_sequence: 10 });
            let rebuilt = rebuild_batch(&received, &batch, producer).unwrap();
            let rh = BatchHeader::parse(&rebuilt).unwrap();
            assert_eq!(
                (rh.base_offset, rh.last_offset(), rh.producer_id, rh.base_sequence, rh.compression()),
                (40, 41, 9, 10, codec)
            );
            assert!(batch::validate(&rebuilt, u32::MAX).is_ok());
            let back = records::decode(&rebuilt, 1 << 20).unwrap().records;
            assert_eq!(back, recs);
        }
    }

    #[test]
    fn take_batches_follows_kip_74() {
        let b = |n: usize| Bytes::from(vec![0u8; n]);
        assert_eq!(take_batches([b(10), b(10)].into_iter(), 25, false).map(|x| x.len()), Some(20));
        assert_eq!(take_batches([b(10), b(10)].into_iter(), 15, false).map(|x| x.len()), Some(10));
        assert_eq!(take_batches([b(30)].into_iter(), 15, false), None);
        assert_eq!(take_batches([b(30), b(1)].into_iter(), 15, true).map(|x| x.len()), Some(30));
    }
}
