//! Subscriptions: a cursor over one partition's log and the consumers attached to it, fed by a
//! dispatcher task that turns stored Kafka batches into MESSAGE frames as the consumers' permits
//! (FLOW) allow.
//!
//! Cursor model, as in a Pulsar broker: `read_pos` is the next offset to dispatch; entries sent
//! and not yet acknowledged are `pending` (an entry whose consumer left or asked for redelivery
//! is unassigned and goes out again first); the mark-delete position is the first offset not
//! acknowledged, and a durable subscription stores it (see [`super::cursors`]) so that it
//! survives restarts. Exclusive subscriptions take one consumer, Failover several with one
//! active (chosen by partition index over the consumers of the highest priority, sorted by name), Shared
//! several, each entry to one consumer with permits in turn.

use super::convert::{self, Delivery};
use super::cursors::Cursors;
use super::{Outbox, command};
use crate::pulsar::frame::encode_payload;
use crate::pulsar::proto::base_command::Type;
use crate::pulsar::proto::command_ack::AckType;
use crate::pulsar::proto::command_subscribe::SubType;
use crate::pulsar::proto::{BaseCommand, CommandCloseConsumer, CommandMessage, MessageIdData};
use crate::record::batch::BatchHeader;
use crate::storage::{AbortedTxn, Isolation, Log, StorageError, TopicName};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub type SubKey = (TopicName, i32, String);

/// Bytes read from the log per dispatch round.
const READ_BYTES: usize = 1 << 20;
/// Largest decompressed batch converted for consumers.
const MAX_BATCH_BYTES: usize = 256 << 20;
/// How often acknowledgements store a durable cursor at most.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// How long the dispatcher waits before trying again when it cannot send (a connection's
/// outbox is full, or a read failed).
const BACKOFF: Duration = Duration::from_millis(20);

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    Earliest,
    Latest,
    Offset(i64),
}

pub struct ConsumerSpec {
    pub conn: u64,
    pub id: u64,
    pub name: String,
    pub priority: i32,
    pub out: Outbox,
}

struct Consumer {
    conn: u64,
    id: u64,
    name: String,
    priority: i32,
    permits: i64,
    out: Outbox,
}

struct Pending {
    /// None: unassigned, to be sent again.
    consumer: Option<(u64, u64)>,
    offsets: Vec<i64>,
    acked: Vec<bool>,
    next: i64,
    redeliveries: u32,
}

impl Pending {
    fn first_unacked(&self) -> i64 {
        self.offsets.iter().zip(&self.acked).find(|(_, a)| !**a).map_or(self.next, |(o, _)| *o)
    }
}

struct State {
    consumers: Vec<Consumer>,
    read_pos: i64,
    mark_delete: i64,
    /// What the cursor store holds (durable subscriptions).
    stored: Option<i64>,
    pending: BTreeMap<i64, Pending>,
    rr: usize,
    closed: bool,
    /// A seek closed the consumers: keep a non-durable subscription for their return.
    seeking: bool,
    /// When the cursor was last stored. The dispatcher task stores it (never a caller holding
    /// this state's lock): at most once per [`PERSIST_EVERY`] while acks come in, what is left
    /// when idle, and at once when `persist_soon` says so (a new subscription, a consumer left).
    persisted_at: Instant,
    persist_soon: bool,
}

pub struct Subscription {
    pub key: SubKey,
    /// The topic's id: cursors are stored under it, so a re-created topic starts afresh.
    topic_id: uuid::Uuid,
    pub kind: SubType,
    pub durable: bool,
    state: Mutex<State>,
    wake: Notify,
    /// Held while the cursor is stored: stores are serialized, and each stores the position as
    /// it is when its turn comes, so an older position never lands after a newer one.
    storing: tokio::sync::Mutex<()>,
    log: Arc<dyn Log>,
    cursors: Arc<Cursors>,
}

/// Why SUBSCRIBE was refused.
#[derive(Debug)]
pub enum AttachError {
    Busy(String),
    Storage(StorageError),
}

pub struct Subscriptions {
    map: Mutex<HashMap<SubKey, Arc<Subscription>>>,
    log: Arc<dyn Log>,
    cursors: Arc<Cursors>,
}

impl Subscriptions {
    pub fn new(log: Arc<dyn Log>, cursors: Arc<Cursors>) -> Self {
        Subscriptions { map: Mutex::new(HashMap::new()), log, cursors }
    }

    /// Attach a consumer to `key`, creating the subscription (and its dispatcher) if needed.
    pub async fn attach(
        &self,
        key: SubKey,
        kind: SubType,
        durable: bool,
        start: Start,
        consumer: ConsumerSpec,
    ) -> Result<Arc<Subscription>, AttachError> {
        let mut fresh: Option<Arc<Subscription>> = None;
        loop {
            {
                // The consumer joins under the map's lock, as detach leaves under it: a
                // subscription its last consumer is closing is never joined.
                let mut map = self.map.lock();
                let open = map.get(&key).filter(|sub| !sub.state.lock().closed).cloned();
                let sub = match (open, fresh.take()) {
                    (Some(sub), _) => Some(sub),
                    (None, Some(new)) => {
                        map.insert(key.clone(), new.clone());
                        tokio::spawn(new.clone().dispatch());
                        Some(new)
                    }
                    (None, None) => None,
                };
                if let Some(sub) = sub {
                    return Self::join(&sub, &key, kind, consumer).map(|()| sub);
                }
            }
            // Where it starts is read without the map's lock; a subscription another consumer
            // creates meanwhile wins.
            fresh = Some(self.create(&key, kind, durable, start).await?);
        }
    }

    /// Add `consumer` to `sub`, if its kind and consumers allow.
    fn join(
        sub: &Subscription,
        key: &SubKey,
        kind: SubType,
        consumer: ConsumerSpec,
    ) -> Result<(), AttachError> {
        if sub.kind != kind {
            return Err(AttachError::Busy(format!(
                "subscription {} is {:?}, not {:?}",
                key.2, sub.kind, kind
            )));
        }
        {
            let mut st = sub.state.lock();
            if kind == SubType::Exclusive && !st.consumers.is_empty() {
                return Err(AttachError::Busy(format!(
                    "exclusive subscription {} already has a consumer",
                    key.2
                )));
            }
            if kind == SubType::KeyShared {
                return Err(AttachError::Busy("Key_Shared subscriptions are not supported".into()));
            }
            st.seeking = false;
            st.consumers.push(Consumer {
                conn: consumer.conn,
                id: consumer.id,
                name: consumer.name,
                priority: consumer.priority,
                permits: 0,
                out: consumer.out,
            });
            st.consumers.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        }
        sub.wake.notify_one();
        Ok(())
    }

    /// A new subscription of `key`, positioned at its stored cursor or at `start`.
    async fn create(
        &self,
        key: &SubKey,
        kind: SubType,
        durable: bool,
        start: Start,
    ) -> Result<Arc<Subscription>, AttachError> {
        let (log, cursors) = (&self.log, &self.cursors);
        let (topic, partition, name) = (&key.0, key.1, &key.2);
        let topic_id =
            log.topic(topic).ok_or(AttachError::Storage(StorageError::UnknownTopicOrPartition))?.id;
        let (log_start, hw) = log.offsets(topic, partition).await.map_err(AttachError::Storage)?;
        let stored = if durable {
            cursors.get(topic, topic_id, partition, name).await.map_err(AttachError::Storage)?
        } else {
            None
        };
        let pos = match (stored, start) {
            (Some(c), _) => c,
            (None, Start::Earliest) => log_start,
            (None, Start::Latest) => hw,
            (None, Start::Offset(o)) => o,
        }
        .clamp(log_start, hw);
        Ok(Arc::new(Subscription {
            key: key.clone(),
            topic_id,
            kind,
            durable,
            state: Mutex::new(State {
                consumers: Vec::new(),
                read_pos: pos,
                mark_delete: pos,
                stored,
                pending: BTreeMap::new(),
                rr: 0,
                closed: false,
                seeking: false,
                persisted_at: Instant::now(),
                // A durable subscription stores where it starts before its dispatcher sends anything.
                persist_soon: durable,
            }),
            wake: Notify::new(),
            storing: tokio::sync::Mutex::new(()),
            log: log.clone(),
            cursors: cursors.clone(),
        }))
    }

    /// Remove a consumer; a non-durable subscription goes with its last consumer.
    pub fn detach(&self, sub: &Arc<Subscription>, conn: u64, id: u64) {
        let mut map = self.map.lock();
        let mut st = sub.state.lock();
        st.consumers.retain(|c| (c.conn, c.id) != (conn, id));
        for p in st.pending.values_mut() {
            if p.consumer == Some((conn, id)) {
                p.consumer = None;
            }
        }
        // The dispatcher stores the cursor at once.
        st.persist_soon = sub.durable;
        if st.consumers.is_empty() && !sub.durable && !st.seeking {
            st.closed = true;
            if map.get(&sub.key).is_some_and(|s| Arc::ptr_eq(s, sub)) {
                map.remove(&sub.key);
            }
        }
        drop(st);
        sub.wake.notify_one();
    }

    /// UNSUBSCRIBE: remove the subscription and its stored cursor, if `conn`/`id` is its only
    /// consumer.
    pub async fn unsubscribe(&self, sub: &Arc<Subscription>, conn: u64, id: u64) -> Result<(), AttachError> {
        {
            let mut map = self.map.lock();
            let mut st = sub.state.lock();
            if st.consumers.iter().any(|c| (c.conn, c.id) != (conn, id)) {
                return Err(AttachError::Busy("other consumers are connected to the subscription".into()));
            }
            st.consumers.clear();
            st.closed = true;
            if map.get(&sub.key).is_some_and(|s| Arc::ptr_eq(s, sub)) {
                map.remove(&sub.key);
            }
        }
        sub.wake.notify_one();
        if sub.durable {
            // After any store in flight; a closed subscription stores nothing more.
            let _storing = sub.storing.lock().await;
            let (t, p, n) = &sub.key;
            sub.cursors.put(t, sub.topic_id, *p, n, None).await.map_err(AttachError::Storage)?;
        }
        Ok(())
    }
}

impl Subscription {
    /// FLOW: more permits for a consumer.
    pub fn flow(&self, conn: u64, id: u64, permits: u32) {
        let mut st = self.state.lock();
        if let Some(c) = st.consumers.iter_mut().find(|c| (c.conn, c.id) == (conn, id)) {
            c.permits += i64::from(permits);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// ACK, individual or cumulative.
    pub fn ack(&self, kind: AckType, ids: &[MessageIdData]) {
        let mut st = self.state.lock();
        for id in ids {
            let Ok(entry) = i64::try_from(id.entry_id) else { continue };
            let index = id.batch_index.unwrap_or(-1);
            match kind {
                AckType::Individual => {
                    let Some(p) = st.pending.get_mut(&entry) else { continue };
                    if index >= 0 && id.ack_set.is_empty() {
                        if let Some(a) = p.acked.get_mut(index as usize) {
                            *a = true;
                        }
                    } else {
                        // The whole entry, or a batch-index ack set (set bits: not acknowledged).
                        for (i, a) in p.acked.iter_mut().enumerate() {
                            let word = id.ack_set.get(i / 64).copied();
                            if word.is_none_or(|w| w & (1 << (i % 64)) == 0) {
                                *a = true;
                            }
                        }
                    }
                    if p.acked.iter().all(|a| *a) {
                        st.pending.remove(&entry);
                    }
                }
                AckType::Cumulative => {
                    let upto = match st.pending.get(&entry) {
                        Some(p) if index >= 0 => p.offsets.get(index as usize).copied().unwrap_or(p.next - 1),
                        Some(p) => p.next - 1,
                        None => entry.saturating_add(i64::from(index.max(0))),
                    };
                    st.pending.retain(|_, p| p.next.saturating_sub(1) > upto);
                    for p in st.pending.values_mut() {
                        for (o, a) in p.offsets.iter().zip(p.acked.iter_mut()) {
                            if *o <= upto {
                                *a = true;
                            }
                        }
                    }
                    st.mark_delete = st.mark_delete.max(upto.saturating_add(1).min(st.read_pos));
                }
            }
        }
        self.advance(&mut st);
    }

    /// REDELIVER_UNACKNOWLEDGED_MESSAGES: the consumer's unacknowledged entries (all, or those
    /// listed) go out again, before anything new.
    pub fn redeliver(&self, conn: u64, id: u64, ids: &[MessageIdData]) {
        let mut st = self.state.lock();
        let only: Vec<i64> = ids.iter().filter_map(|m| i64::try_from(m.entry_id).ok()).collect();
        for (entry, p) in st.pending.iter_mut() {
            if p.consumer == Some((conn, id)) && (only.is_empty() || only.contains(entry)) {
                p.consumer = None;
                p.redeliveries += 1;
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// SEEK: move the cursor to `offset` (clamped to the log), forget what is pending, and close
    /// the consumers so that they come back with fresh permits, as a Pulsar broker does.
    pub async fn seek(&self, offset: i64) -> Result<(), StorageError> {
        let (topic, partition, _) = &self.key;
        let (start, hw) = self.log.offsets(topic, *partition).await?;
        {
            let mut st = self.state.lock();
            let pos = offset.clamp(start, hw);
            st.pending.clear();
            st.read_pos = pos;
            st.mark_delete = pos;
            st.seeking = true;
            close_consumers(&mut st);
        }
        self.wake.notify_one();
        if self.durable {
            self.persist(true).await;
        }
        Ok(())
    }

    /// The consumers a seek closed, to be forgotten by their connections.
    pub fn has_consumer(&self, conn: u64, id: u64) -> bool {
        self.state.lock().consumers.iter().any(|c| (c.conn, c.id) == (conn, id))
    }

    /// The mark-delete position: the first offset not acknowledged.
    pub fn mark_delete(&self) -> i64 {
        self.state.lock().mark_delete
    }

    fn advance(&self, st: &mut State) {
        let mut md = st.read_pos;
        if let Some(p) = st.pending.values().next() {
            md = md.min(p.first_unacked());
        }
        st.mark_delete = st.mark_delete.max(md);
        if self.durable && st.stored != Some(st.mark_delete) && st.persisted_at.elapsed() >= PERSIST_EVERY {
            // Due: the dispatcher stores it.
            self.wake.notify_one();
        }
    }

    /// Store the cursor if it moved: now when `force`, else at most once per [`PERSIST_EVERY`].
    async fn persist(&self, force: bool) {
        let _storing = self.storing.lock().await;
        let cursor = {
            let mut st = self.state.lock();
            let due = force || st.persist_soon || st.persisted_at.elapsed() >= PERSIST_EVERY;
            st.persist_soon = false;
            if st.closed || st.stored == Some(st.mark_delete) || !due {
                return;
            }
            st.persisted_at = Instant::now();
            st.mark_delete
        };
        let (t, p, n) = &self.key;
        match self.cursors.put(t, self.topic_id, *p, n, Some(cursor)).await {
            Ok(()) => self.state.lock().stored = Some(cursor),
            Err(e) => {
                tracing::warn!(subscription = %n, topic = %t, partition = p, "storing the cursor failed (kept in memory, retried on the next ack): {e}")
            }
        }
    }

    /// The dispatcher: runs until the subscription closes or its topic is deleted.
    async fn dispatch(self: Arc<Self>) {
        let (topic, partition, name) = self.key.clone();
        let mut hw = match self.log.subscribe(&topic, partition).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(%topic, partition, subscription = %name, "no dispatcher: {e}");
                return;
            }
        };
        loop {
            if self.durable {
                self.persist(false).await;
            }
            match self.dispatch_once().await {
                Step::Closed => return,
                Step::Progress => tokio::task::yield_now().await,
                Step::Backoff => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(BACKOFF) => {}
                    }
                }
                Step::Idle => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(PERSIST_EVERY), if self.durable => {
                            // Acks that came faster than PERSIST_EVERY: store where they got to.
                            self.persist(true).await;
                        }
                        changed = hw.changed() => if changed.is_err() {
                            tracing::info!(%topic, partition, subscription = %name, "topic deleted: closing its consumers");
                            let mut st = self.state.lock();
                            st.closed = true;
                            close_consumers(&mut st);
                            return;
                        },
                    }
                }
            }
        }
    }

    /// Send what permits allow: unassigned pending entries first, then new ones. The state's
    /// lock is not held while the log is read: what the read was for is checked again after it.
    async fn dispatch_once(&self) -> Step {
        let (topic, partition, _) = &self.key;
        let (redelivery, read_pos) = {
            let mut st = self.state.lock();
            if st.closed {
                return Step::Closed;
            }
            if self.pick(&mut st).is_none() {
                return Self::stalled(&st);
            }
            let unassigned = st.pending.iter().find(|(_, p)| p.consumer.is_none()).map(|(&entry, _)| entry);
            (unassigned, st.read_pos)
        };
        // Redeliveries: re-read the entry and send it to a consumer again.
        if let Some(entry) = redelivery {
            let read = self.read_one(entry).await;
            let mut st = self.state.lock();
            if st.closed {
                return Step::Closed;
            }
            if st.pending.get(&entry).is_none_or(|p| p.consumer.is_some()) {
                // Acknowledged, or a seek cleared it, while it was read.
                return Step::Progress;
            }
            let delivery = match read {
                Ok(Some(d)) if d.entry == entry => d,
                Err(ReadOne::Failed(e)) => {
                    tracing::warn!(%topic, partition, entry, "redelivery deferred, the entry cannot be read now: {e}");
                    return Step::Backoff;
                }
                Ok(_) | Err(ReadOne::Gone) => {
                    // Retention deleted it, or it holds nothing a consumer is given.
                    st.pending.remove(&entry);
                    self.advance(&mut st);
                    return Step::Progress;
                }
            };
            let Some(i) = self.pick(&mut st) else { return Step::Idle };
            let redeliveries = st.pending.get(&entry).map_or(0, |p| p.redeliveries);
            self.send(&mut st, i, &delivery, redeliveries);
            let owner = Some((st.consumers[i].conn, st.consumers[i].id));
            if let Some(p) = st.pending.get_mut(&entry) {
                p.consumer = owner;
            }
            return Step::Progress;
        }
        // Pulsar consumers read what Kafka's read_committed consumers read: nothing of an open
        // transaction, nothing of an aborted one.
        let read =
            self.log.read_with(topic, *partition, read_pos, READ_BYTES, true, Isolation::ReadCommitted).await;
        let mut st = self.state.lock();
        if st.closed {
            return Step::Closed;
        }
        if st.read_pos != read_pos {
            // A seek moved the cursor while the log was read.
            return Step::Progress;
        }
        let read = match read {
            Ok(r) => r,
            Err(StorageError::OffsetOutOfRange { start, end, .. }) => {
                // Retention moved the log start past the cursor, or the log is shorter than it.
                st.read_pos = if st.read_pos < start { start } else { end };
                self.advance(&mut st);
                return Step::Progress;
            }
            Err(e) => {
                tracing::warn!(%topic, partition, "dispatch read failed, trying again: {e}");
                return Step::Backoff;
            }
        };
        let Some(bytes) = read.records else { return Step::Idle };
        let mut rest = &bytes[..];
        let mut progressed = false;
        while !rest.is_empty() {
            let Ok(header) = BatchHeader::parse(rest) else { break };
            let size = header.size().min(rest.len());
            let raw = &rest[..size];
            rest = &rest[size..];
            if header.next_offset() <= st.read_pos {
                continue;
            }
            if aborted(&header, &read.aborted) {
                st.read_pos = header.next_offset();
                progressed = true;
                continue;
            }
            // A consumer first: without one, the batch is not converted for nothing.
            let Some(i) = self.pick(&mut st) else {
                self.advance(&mut st);
                return if progressed { Step::Progress } else { Self::stalled(&st) };
            };
            match convert::delivery_of_batch(raw, MAX_BATCH_BYTES) {
                Ok(Some(d)) => {
                    self.send(&mut st, i, &d, 0);
                    let owner = Some((st.consumers[i].conn, st.consumers[i].id));
                    let n = d.offsets.len();
                    st.pending.insert(
                        d.entry,
                        Pending {
                            consumer: owner,
                            offsets: d.offsets,
                            acked: vec![false; n],
                            next: d.next,
                            redeliveries: 0,
                        },
                    );
                    st.read_pos = d.next;
                }
                Ok(None) => st.read_pos = header.next_offset(),
                Err(e) => {
                    tracing::warn!(%topic, partition, offset = header.base_offset, "skipping a batch Pulsar consumers cannot be given: {e}");
                    st.read_pos = header.next_offset();
                }
            }
            progressed = true;
        }
        self.advance(&mut st);
        if progressed { Step::Progress } else { Step::Idle }
    }

    /// Nothing can be sent: idle when no consumer has permits, else a consumer's connection is
    /// behind on reading and the dispatcher tries again shortly.
    fn stalled(st: &State) -> Step {
        if st.consumers.iter().any(|c| c.permits > 0 && c.out.full()) { Step::Backoff } else { Step::Idle }
    }

    async fn read_one(&self, entry: i64) -> Result<Option<Delivery>, ReadOne> {
        let (topic, partition, _) = &self.key;
        let read = match self.log.read_with(topic, *partition, entry, 1, true, Isolation::ReadCommitted).await
        {
            Ok(r) => r,
            Err(StorageError::OffsetOutOfRange { .. } | StorageError::UnknownTopicOrPartition) => {
                return Err(ReadOne::Gone);
            }
            Err(e) => return Err(ReadOne::Failed(e.to_string())),
        };
        let Some(bytes) = read.records else { return Ok(None) };
        let header = BatchHeader::parse(&bytes).map_err(|_| ReadOne::Gone)?;
        let raw = &bytes[..header.size().min(bytes.len())];
        if aborted(&header, &read.aborted) {
            return Ok(None);
        }
        // A stored batch that cannot be converted will never convert: it is skipped, as in dispatch.
        convert::delivery_of_batch(raw, MAX_BATCH_BYTES).map_err(|_| ReadOne::Gone)
    }

    /// The consumer to send to next, if one has permits.
    fn pick(&self, st: &mut State) -> Option<usize> {
        if st.consumers.is_empty() {
            return None;
        }
        match self.kind {
            SubType::Shared | SubType::KeyShared => {
                let n = st.consumers.len();
                for k in 0..n {
                    let i = (st.rr + k) % n;
                    if st.consumers[i].permits > 0 && !st.consumers[i].out.full() {
                        st.rr = i + 1;
                        return Some(i);
                    }
                }
                None
            }
            SubType::Exclusive | SubType::Failover => {
                // Among the consumers of the highest priority (the lowest level), as Pulsar.
                let top = st.consumers[0].priority;
                let n = st.consumers.iter().take_while(|c| c.priority == top).count();
                let i = usize::try_from(self.key.1).unwrap_or(0) % n;
                (st.consumers[i].permits > 0 && !st.consumers[i].out.full()).then_some(i)
            }
        }
    }

    fn send(&self, st: &mut State, i: usize, d: &Delivery, redeliveries: u32) {
        let c = &mut st.consumers[i];
        let message = BaseCommand {
            r#type: Type::Message as i32,
            message: Some(CommandMessage {
                consumer_id: c.id,
                message_id: convert::message_id(d.entry, -1),
                redelivery_count: Some(redeliveries),
                ..Default::default()
            }),
            ..Default::default()
        };
        c.out.send(encode_payload(&message, &d.metadata, &d.payload));
        c.permits -= i64::try_from(d.offsets.len()).unwrap_or(i64::MAX);
    }
}

/// Tell every consumer the broker closed it (CLOSE_CONSUMER); clients then subscribe again.
fn close_consumers(st: &mut State) {
    for c in st.consumers.drain(..) {
        let close = BaseCommand {
            close_consumer: Some(CommandCloseConsumer { consumer_id: c.id, request_id: 0 }),
            ..Default::default()
        };
        c.out.send(command(Type::CloseConsumer, close));
    }
}

enum Step {
    Progress,
    Idle,
    /// Try again after [`BACKOFF`].
    Backoff,
    Closed,
}

enum ReadOne {
    /// The entry is no longer there (retention) or can never be given to a consumer.
    Gone,
    /// A read error that may pass.
    Failed(String),
}

/// Whether `header` is a batch of an aborted transaction, which consumers never see.
fn aborted(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    header.is_transactional()
        && aborted.iter().any(|a| {
            a.producer_id == header.producer_id
                && a.first_offset <= header.base_offset
                && header.base_offset < a.last_offset
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::pulsar::{OUTBOX_LIMIT, Outbox};
    use crate::record::records::{self, EncodeSpec, Record};
    use crate::storage::LogDefaults;
    use crate::storage::embedded::EmbeddedLog;

    /// A consumer that grants permits but never reads its socket holds the dispatcher back at
    /// the outbox limit; once it reads, the rest follows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_that_does_not_read_is_held_at_the_outbox_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap());
        let name = TopicName::new("public", "default", "t");
        log.create_topic(&name, 1, &[], false).await.unwrap();
        let value = bytes::Bytes::from(vec![7u8; 512 * 1024]);
        for _ in 0..40 {
            let r = Record {
                key: None,
                value: Some(value.clone()),
                headers: vec![],
                timestamp: 1,
                offset_delta: 0,
            };
            log.append(&name, 0, records::encode(&[r], &EncodeSpec::plain(0, 1)).unwrap().into())
                .await
                .unwrap();
        }
        let subs = Subscriptions::new(log.clone(), Arc::new(Cursors::new(log.clone())));
        let (out, mut rx) = Outbox::new();
        let spec = ConsumerSpec { conn: 1, id: 1, name: "c".into(), priority: 0, out };
        let key = (name, 0, "s".to_string());
        let sub = subs
            .attach(key, SubType::Exclusive, false, Start::Earliest, spec)
            .await
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        sub.flow(1, 1, 1_000_000);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queued = rx.queued();
        assert!(queued >= OUTBOX_LIMIT, "it was fed up to the limit: {queued}");
        assert!(queued < OUTBOX_LIMIT + (1 << 20), "and not much beyond: {queued}");
        let mut messages = 0;
        while messages < 40 {
            let frame = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("more after reading")
                .unwrap();
            rx.written(frame.len());
            messages += 1;
        }
    }
}
