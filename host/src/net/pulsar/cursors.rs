//! Durable subscription cursors, kept in the log itself: one internal topic per tenant and
//! namespace, `__pulsar_cursors`, whose records are keyed `TOPIC@TOPIC-ID/PARTITION/SUBSCRIPTION`
//! with the cursor (the first offset not yet acknowledged) as the value, or a null value when the
//! subscription is removed. The last record of a key wins; they are replayed on first use. The
//! topic id keeps a re-created topic from inheriting the cursors of the one deleted before it.
//!
//! Each store adds a record (subscriptions store at most once a second). Where the log compacts
//! (both engines do) the topic is created compacted, so it keeps about one record per cursor.

use crate::record::records::{self, EncodeSpec, Record};
use crate::storage::{Log, StorageError, TopicName};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

pub const CURSORS_TOPIC: &str = "__pulsar_cursors";

/// Register the cursor store's topic (`__pulsar_cursors`, in every tenant and namespace) with
/// the tenant room. The host registers it whether or not the endpoint is on, so no Kafka client
/// takes the name in the meantime.
pub fn register_internal(internal: &mut crate::tenant::InternalTopics) {
    internal.register(CURSORS_TOPIC, None, "the Pulsar cursor store");
}

type Key = (String, uuid::Uuid, i32, String);

pub struct Cursors {
    log: Arc<dyn Log>,
    /// Per (tenant, namespace): the replayed cursors. An async lock: it is held across the store's
    /// appends, so stores land in the order they were made.
    loaded: Mutex<HashMap<(String, String), HashMap<Key, i64>>>,
}

impl Cursors {
    pub fn new(log: Arc<dyn Log>) -> Self {
        Cursors { log, loaded: Mutex::new(HashMap::new()) }
    }

    fn store(name: &TopicName) -> TopicName {
        TopicName::new(name.tenant.clone(), name.namespace.clone(), CURSORS_TOPIC)
    }

    /// The stored cursor of a subscription.
    pub async fn get(
        &self,
        name: &TopicName,
        id: uuid::Uuid,
        partition: i32,
        sub: &str,
    ) -> Result<Option<i64>, StorageError> {
        let mut loaded = self.loaded.lock().await;
        let ns = self.load(&mut loaded, name).await?;
        Ok(ns.get(&(name.topic.clone(), id, partition, sub.to_string())).copied())
    }

    /// Store a subscription's cursor (None: the subscription is gone).
    pub async fn put(
        &self,
        name: &TopicName,
        id: uuid::Uuid,
        partition: i32,
        sub: &str,
        cursor: Option<i64>,
    ) -> Result<(), StorageError> {
        let mut loaded = self.loaded.lock().await;
        let key = (name.topic.clone(), id, partition, sub.to_string());
        let ns = self.load(&mut loaded, name).await?;
        if ns.get(&key).copied() == cursor {
            return Ok(());
        }
        let store = Self::store(name);
        if self.log.topic(&store).is_none() {
            let mut configs = vec![
                ("retention.ms".to_string(), "-1".to_string()),
                ("retention.bytes".to_string(), "-1".to_string()),
            ];
            if self.log.compacts() {
                // One record per cursor is all replay needs.
                configs.push(("cleanup.policy".to_string(), "compact".to_string()));
            }
            match self.log.create_topic(&store, 1, &configs, false).await {
                Ok(_) | Err(StorageError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let record = Record {
            key: Some(Bytes::from(format!("{}@{id}/{partition}/{sub}", name.topic))),
            value: cursor.map(|c| Bytes::from(c.to_string())),
            headers: Vec::new(),
            timestamp: now_ms(),
            offset_delta: 0,
        };
        let batch = records::encode(&[record], &EncodeSpec::plain(0, now_ms()))
            .map_err(|e| StorageError::CorruptMessage(e.to_string()))?;
        self.log.append(&store, 0, batch.into()).await?;
        match cursor {
            Some(c) => ns.insert(key, c),
            None => ns.remove(&key),
        };
        Ok(())
    }

    async fn load<'a>(
        &self,
        loaded: &'a mut HashMap<(String, String), HashMap<Key, i64>>,
        name: &TopicName,
    ) -> Result<&'a mut HashMap<Key, i64>, StorageError> {
        let ns = (name.tenant.clone(), name.namespace.clone());
        if !loaded.contains_key(&ns) {
            let replayed = self.replay(&Self::store(name)).await?;
            loaded.insert(ns.clone(), replayed);
        }
        Ok(loaded.get_mut(&ns).expect("just inserted"))
    }

    async fn replay(&self, store: &TopicName) -> Result<HashMap<Key, i64>, StorageError> {
        let mut out = HashMap::new();
        if self.log.topic(store).is_none() {
            return Ok(out);
        }
        let (mut next, end) = self.log.offsets(store, 0).await?;
        while next < end {
            let read = self.log.read(store, 0, next, 1 << 20, true).await?;
            let Some(bytes) = read.records else { break };
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let header = crate::record::batch::BatchHeader::parse(rest)?;
                let size = header.size().min(rest.len());
                let decoded = records::decode(&rest[..size], 1 << 20)
                    .map_err(|e| StorageError::CorruptMessage(e.to_string()))?;
                for r in decoded.records {
                    let Some(key) =
                        r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).and_then(parse_key)
                    else {
                        continue;
                    };
                    match r
                        .value
                        .as_deref()
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse().ok())
                    {
                        Some(c) => out.insert(key, c),
                        None => out.remove(&key),
                    };
                }
                next = next.max(header.next_offset());
                rest = &rest[size..];
            }
        }
        Ok(out)
    }
}

fn parse_key(key: &str) -> Option<Key> {
    let (topic, rest) = key.split_once('/')?;
    let (topic, id) = topic.split_once('@')?;
    let (partition, sub) = rest.split_once('/')?;
    Some((topic.to_string(), id.parse().ok()?, partition.parse().ok()?, sub.to_string()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LogDefaults;
    use crate::storage::embedded::EmbeddedLog;
    use crate::storage::wait;

    #[test]
    fn cursors_survive_a_reopen_and_removal_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let t = TopicName::new("public", "default", "orders");
        let id = uuid::Uuid::new_v4();
        {
            let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap());
            let c = Cursors::new(log);
            assert_eq!(wait(c.get(&t, id, 0, "sub/a")).unwrap(), None);
            wait(c.put(&t, id, 0, "sub/a", Some(5))).unwrap();
            wait(c.put(&t, id, 0, "sub/a", Some(9))).unwrap();
            wait(c.put(&t, id, 1, "sub/a", Some(3))).unwrap();
            wait(c.put(&t, id, 1, "gone", Some(1))).unwrap();
            wait(c.put(&t, id, 1, "gone", None)).unwrap();
            log_flush(&c);
        }
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap());
        let c = Cursors::new(log);
        assert_eq!(wait(c.get(&t, id, 0, "sub/a")).unwrap(), Some(9));
        assert_eq!(wait(c.get(&t, id, 1, "sub/a")).unwrap(), Some(3));
        assert_eq!(wait(c.get(&t, id, 1, "gone")).unwrap(), None);
        assert_eq!(
            wait(c.get(&t, uuid::Uuid::new_v4(), 0, "sub/a")).unwrap(),
            None,
            "a re-created topic starts afresh"
        );
    }

    fn log_flush(c: &Cursors) {
        wait(c.log.flush()).unwrap();
    }
}
