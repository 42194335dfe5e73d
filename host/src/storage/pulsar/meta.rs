//! Topic metadata and producer-id blocks, as append-only logs of JSON records in two Pulsar
//! topics of the metadata namespace (`topics` and `producer-ids`). Every host replays them from
//! the start at open and follows them afterwards. Several hosts may append at once, so a record
//! is only a request: it takes effect if it is valid where it lands in the log (a creation of a
//! name that exists, or a block of ids that overlaps one claimed earlier, is ignored), and the
//! host that wrote it reads the log up to its own record to learn the outcome.
//!
//! A log is compacted by a snapshot ([`MetaLog::compact`]): a `begin` marker naming the message
//! it follows, the records that rebuild the current state from nothing, and a `commit` marker
//! (empty control messages, property [`SNAPSHOT`]). A reader takes a snapshot only if its `begin`
//! follows the message it read last (or is the first it reads: Pulsar deleted what came before),
//! so a snapshot that another host's record overtook is ignored; at the `commit` the reader
//! starts again from nothing with the snapshot's records and those that landed among them
//! ([`Replayed::Reset`]). The writer of a snapshot that took effect acknowledges everything
//! before it on `guise-retention`, and Pulsar deletes those ledgers once they roll over.

use super::client::{Client, OPERATION_TIMEOUT, Owned, within};
use super::index::MsgId;
use super::partition::Retention;
use super::props;
use super::reader::{End, Follower, PREFETCH};
use crate::storage::{LogDefaults, StorageError, TopicConfig, TopicMeta, TopicName};
use crate::tenant::names::{validate_growth, validate_partitions};
use ::pulsar::producer::Message;
use ::pulsar::{Producer, ProducerOptions, TokioExecutor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Producer ids reserved per record.
pub const ID_BLOCK: i64 = 1000;

/// One record of the `topics` log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum TopicRecord {
    Create {
        tenant: String,
        namespace: String,
        topic: String,
        id: String,
        partitions: i32,
        config: BTreeMap<String, String>,
    },
    Partitions {
        tenant: String,
        namespace: String,
        topic: String,
        id: String,
        partitions: i32,
    },
    Delete {
        tenant: String,
        namespace: String,
        topic: String,
        id: String,
    },
    /// The topic's config overrides after AlterConfigs (all of them, replacing the earlier).
    Config {
        tenant: String,
        namespace: String,
        topic: String,
        id: String,
        config: BTreeMap<String, String>,
    },
}

/// The topics as the `topics` log says.
#[derive(Debug, Default)]
pub struct Catalog {
    pub topics: BTreeMap<TopicName, TopicMeta>,
}

impl Catalog {
    /// Apply what the log hands over: a record (see [`apply`](Self::apply)), or a snapshot's
    /// reset.
    pub fn replay(&mut self, defaults: &LogDefaults, event: &Replayed<TopicRecord>) -> bool {
        match event {
            Replayed::Record(r) => self.apply(defaults, r),
            Replayed::Reset => {
                self.topics.clear();
                false
            }
        }
    }

    /// The records that rebuild this catalog from nothing: a creation per topic.
    pub fn snapshot(&self) -> Vec<TopicRecord> {
        self.topics
            .values()
            .map(|t| TopicRecord::Create {
                tenant: t.name.tenant.clone(),
                namespace: t.name.namespace.clone(),
                topic: t.name.topic.clone(),
                id: t.id.to_string(),
                partitions: t.partitions,
                config: t.config.overrides.clone(),
            })
            .collect()
    }

    /// Apply one record; false when it does not take effect where it stands.
    pub fn apply(&mut self, defaults: &LogDefaults, record: &TopicRecord) -> bool {
        match record {
            TopicRecord::Create { tenant, namespace, topic, id, partitions, config } => {
                let name = TopicName::new(tenant, namespace, topic);
                let Ok(id) = uuid::Uuid::parse_str(id) else { return false };
                if self.topics.contains_key(&name) || validate_partitions(*partitions).is_err() {
                    return false;
                }
                let pairs: Vec<(String, String)> = config.clone().into_iter().collect();
                let Ok(config) = TopicConfig::from_pairs(defaults, &pairs) else {
                    tracing::warn!(topic = %name, "ignoring a topic record with an invalid config");
                    return false;
                };
                self.topics.insert(name.clone(), TopicMeta { name, id, partitions: *partitions, config });
                true
            }
            TopicRecord::Partitions { tenant, namespace, topic, id, partitions } => {
                let name = TopicName::new(tenant, namespace, topic);
                match self.topics.get_mut(&name) {
                    Some(t)
                        if t.id.to_string() == *id && validate_growth(t.partitions, *partitions).is_ok() =>
                    {
                        t.partitions = *partitions;
                        true
                    }
                    _ => false,
                }
            }
            TopicRecord::Config { tenant, namespace, topic, id, config } => {
                let name = TopicName::new(tenant, namespace, topic);
                let pairs: Vec<(String, String)> = config.clone().into_iter().collect();
                match (self.topics.get_mut(&name), TopicConfig::from_pairs(defaults, &pairs)) {
                    (Some(t), Ok(config)) if t.id.to_string() == *id => {
                        t.config = config;
                        true
                    }
                    (_, Err(_)) => {
                        tracing::warn!(topic = %name, "ignoring a config record with an invalid config");
                        false
                    }
                    _ => false,
                }
            }
            TopicRecord::Delete { tenant, namespace, topic, id } => {
                let name = TopicName::new(tenant, namespace, topic);
                if self.topics.get(&name).is_some_and(|t| t.id.to_string() == *id) {
                    self.topics.remove(&name);
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// One record of the `producer-ids` log: a claim of ids `from..to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaim {
    pub from: i64,
    pub to: i64,
}

/// The producer-id blocks claimed so far.
#[derive(Debug, Default)]
pub struct IdBlocks {
    /// Every id below this is claimed (handed out or skipped); none at or above it is.
    pub end: i64,
}

impl IdBlocks {
    /// Apply a claim; it takes effect only if it lies wholly past every earlier one.
    pub fn apply(&mut self, claim: IdClaim) -> bool {
        if claim.from >= self.end && claim.to > claim.from {
            self.end = claim.to;
            true
        } else {
            false
        }
    }
}

/// The property of a snapshot's markers: `begin:LEDGER:ENTRY` (the message it follows, `-` for
/// none) or `commit`.
pub const SNAPSHOT: &str = "guise.snapshot";

/// What a reader of a metadata log is handed.
#[derive(Debug, PartialEq)]
pub enum Replayed<R> {
    Record(R),
    /// A snapshot took effect: forget what the records before said; the records handed next
    /// rebuild the state.
    Reset,
}

impl<R> Replayed<R> {
    /// The record, if this is one.
    pub fn record(self) -> Option<R> {
        match self {
            Replayed::Record(r) => Some(r),
            Replayed::Reset => None,
        }
    }
}

/// An append-only JSON log in one Pulsar topic: a shared producer, a follower, and the
/// `guise-retention` subscription that keeps its records in Pulsar.
pub struct MetaLog {
    topic: String,
    producer: Owned<Producer<TokioExecutor>>,
    follower: Follower,
    retention: Retention,
    /// The last message read, of any kind.
    last: Option<MsgId>,
    /// The records of a snapshot being read (since a `begin` that follows `last`).
    pass: Option<Vec<(MsgId, Vec<u8>)>>,
    /// The `commit` of the last snapshot that took effect.
    last_commit: Option<MsgId>,
    /// Records read since the start of the log or the last snapshot that took effect: what a
    /// start replays.
    pub replayed: u64,
}

impl MetaLog {
    pub async fn open(
        client: &Client,
        handle: &tokio::runtime::Handle,
        topic: String,
    ) -> Result<MetaLog, StorageError> {
        let producer = within(
            OPERATION_TIMEOUT,
            &format!("creating a producer on {topic}"),
            client.producer().with_topic(&topic).with_options(ProducerOptions::default()).build(),
        )
        .await?;
        // Without it, Pulsar may delete the records (no namespace retention policy), or the
        // whole topic once no host is running (inactive topic deletion).
        let retention = Retention::open(client, &topic, handle).await?;
        let follower = Follower::open(client, handle, &topic, None, PREFETCH).await?;
        Ok(MetaLog {
            topic,
            producer: Owned::new(producer, handle.clone()),
            follower,
            retention,
            last: None,
            pass: None,
            last_commit: None,
            replayed: 0,
        })
    }

    /// Write a snapshot of the log's state, `records` (which rebuild it from nothing), after
    /// reading the log to its end; true when it took effect, and everything before it may go.
    pub async fn compact<R: Serialize + for<'de> Deserialize<'de>>(
        &mut self,
        records: &[R],
        mut f: impl FnMut(MsgId, Replayed<R>),
    ) -> Result<bool, StorageError> {
        self.catch_up(&mut f).await?;
        let follows = self.last;
        let begin =
            format!("begin:{}", follows.map_or("-".to_string(), |m| format!("{}:{}", m.ledger, m.entry)));
        self.send(control(begin)).await?;
        for r in records {
            let payload = serde_json::to_vec(r).map_err(|e| StorageError::Unavailable(e.to_string()))?;
            self.send(Message { payload, ..Default::default() }).await?;
        }
        let commit = self.send(control("commit".into())).await?;
        self.read_to(commit, f).await?;
        if self.last_commit != Some(commit) {
            return Ok(false);
        }
        if let Some(before) = follows {
            self.retention.acknowledge_to(&self.topic, before).await;
        }
        Ok(true)
    }

    /// Read the records appended since the last call (all of them, the first time), up to the
    /// log's current end: the broker's last message id or, when that is not exact (see
    /// `reader`), a probe appended for the purpose (once per ledger roll at most: afterwards the
    /// last message id is exact again).
    pub async fn catch_up<R: for<'de> Deserialize<'de>>(
        &mut self,
        f: impl FnMut(MsgId, Replayed<R>),
    ) -> Result<(), StorageError> {
        let end = match self.follower.end().await? {
            End::Empty => return Ok(()),
            End::At(id) => id,
            End::Unknown => {
                let probe = Message {
                    properties: [(props::PROBE.to_string(), "1".to_string())].into(),
                    ..Default::default()
                };
                self.send(probe).await?
            }
        };
        self.read_to(end, f).await
    }

    /// Append `record` and read the log up to it, handing every record read (this one too,
    /// last) to `f`.
    pub async fn append<R: Serialize + for<'de> Deserialize<'de>>(
        &mut self,
        record: &R,
        f: impl FnMut(MsgId, Replayed<R>),
    ) -> Result<MsgId, StorageError> {
        let payload = serde_json::to_vec(record).map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let id = self.send(Message { payload, ..Default::default() }).await?;
        self.read_to(id, f).await?;
        Ok(id)
    }

    async fn send(&mut self, message: Message) -> Result<MsgId, StorageError> {
        let what = format!("appending to {}", self.topic);
        let send = self.producer.send_non_blocking(message);
        let receipt = within(OPERATION_TIMEOUT, &what, async { send.await?.await }).await?;
        receipt
            .message_id
            .as_ref()
            .map(MsgId::of)
            .ok_or_else(|| StorageError::Unavailable(format!("{what}: the receipt has no message id")))
    }

    /// Read up to `end` (inclusive), handing records to `f`, skipping probes and taking
    /// snapshots (see the module docs).
    async fn read_to<R: for<'de> Deserialize<'de>>(
        &mut self,
        end: MsgId,
        mut f: impl FnMut(MsgId, Replayed<R>),
    ) -> Result<(), StorageError> {
        let topic = self.topic.clone();
        let (last, pass, last_commit, replayed) =
            (&mut self.last, &mut self.pass, &mut self.last_commit, &mut self.replayed);
        let parse = |id: MsgId, payload: &[u8]| match serde_json::from_slice::<R>(payload) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(topic, ?id, "skipping a record that is not ours: {e}");
                None
            }
        };
        self.follower
            .read_to(end, |m| {
                let prev = last.replace(m.id);
                if m.props().any(|(k, _)| k == props::PROBE) {
                    return;
                }
                if let Some((_, marker)) = m.props().find(|(k, _)| *k == SNAPSHOT) {
                    match (marker, pass.take()) {
                        ("commit", Some(records)) => {
                            f(m.id, Replayed::Reset);
                            *replayed = 0;
                            for (id, payload) in records {
                                *replayed += 1;
                                if let Some(r) = parse(id, &payload) {
                                    f(id, Replayed::Record(r));
                                }
                            }
                            *last_commit = Some(m.id);
                        }
                        (marker, _) => {
                            let follows = marker.strip_prefix("begin:").map(parse_follows);
                            *pass = (follows == Some(prev)).then(Vec::new);
                        }
                    }
                    return;
                }
                *replayed += 1;
                if let Some(records) = pass.as_mut() {
                    records.push((m.id, m.payload.clone()));
                }
                if let Some(r) = parse(m.id, &m.payload) {
                    f(m.id, Replayed::Record(r));
                }
            })
            .await?;
        Ok(())
    }
}

/// An empty control message with the snapshot property.
fn control(marker: String) -> Message {
    Message { properties: [(SNAPSHOT.to_string(), marker)].into(), ..Default::default() }
}

/// A `begin` marker's `LEDGER:ENTRY` or `-`: Some(None) for `-`, and for what does not parse a
/// message id that no reader has read last.
fn parse_follows(s: &str) -> Option<MsgId> {
    if s == "-" {
        return None;
    }
    let parsed =
        s.split_once(':').and_then(|(l, e)| Some(MsgId { ledger: l.parse().ok()?, entry: e.parse().ok()? }));
    Some(parsed.unwrap_or(MsgId { ledger: u64::MAX, entry: u64::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(topic: &str, id: &str, partitions: i32) -> TopicRecord {
        TopicRecord::Create {
            tenant: "t".into(),
            namespace: "n".into(),
            topic: topic.into(),
            id: id.into(),
            partitions,
            config: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        }
    }

    #[test]
    fn topic_records_replay_in_log_order() {
        let d = LogDefaults::default();
        let a = uuid::Uuid::new_v4().to_string();
        let b = uuid::Uuid::new_v4().to_string();
        let mut c = Catalog::default();
        let name = TopicName::new("t", "n", "x");
        assert!(c.apply(&d, &create("x", &a, 2)));
        assert!(!c.apply(&d, &create("x", &b, 5)), "a second creation of the name loses");
        let grow = |id: &str, p| TopicRecord::Partitions {
            tenant: "t".into(),
            namespace: "n".into(),
            topic: "x".into(),
            id: id.into(),
            partitions: p,
        };
        assert!(!c.apply(&d, &grow(&b, 9)), "another topic's id");
        assert!(!c.apply(&d, &grow(&a, 2)), "not more partitions");
        assert!(!c.apply(&d, &grow(&a, i32::MAX)), "past the limit");
        assert!(!c.apply(&d, &create("y", &b, i32::MAX)), "past the limit");
        assert!(c.apply(&d, &grow(&a, 3)));
        let t = &c.topics[&name];
        assert_eq!((t.id.to_string(), t.partitions, t.config.retention_ms), (a.clone(), 3, 1000));
        let delete = |id: &str| TopicRecord::Delete {
            tenant: "t".into(),
            namespace: "n".into(),
            topic: "x".into(),
            id: id.into(),
        };
        assert!(!c.apply(&d, &delete(&b)));
        assert!(c.apply(&d, &delete(&a)));
        assert!(c.topics.is_empty());
        assert!(c.apply(&d, &create("x", &b, 1)), "re-created under a new id");
        // Records survive JSON.
        let json = serde_json::to_string(&grow(&a, 4)).unwrap();
        assert!(json.contains("\"op\":\"partitions\""), "{json}");
        assert_eq!(serde_json::from_str::<TopicRecord>(&json).unwrap(), grow(&a, 4));
    }

    #[test]
    fn id_claims_never_overlap() {
        let mut ids = IdBlocks::default();
        assert!(ids.apply(IdClaim { from: 0, to: ID_BLOCK }));
        // Another host claimed the same block at the same time: its record lands second.
        assert!(!ids.apply(IdClaim { from: 0, to: ID_BLOCK }));
        assert!(ids.apply(IdClaim { from: ID_BLOCK, to: 2 * ID_BLOCK }));
        assert!(!ids.apply(IdClaim { from: 5, to: 4 }));
        assert_eq!(ids.end, 2 * ID_BLOCK);
    }
}
