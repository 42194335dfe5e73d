//! Reading a Pulsar topic in order with the crate's Reader (a non-durable, exclusive
//! subscription): [`Follower`] reads a topic up to its current end and can be resumed later
//! (recovery, the metadata logs, and the partitions' cached fetch readers all use it).

use super::client::{Client, OPERATION_TIMEOUT, Owned};
use super::index::MsgId;
use crate::storage::StorageError;
use ::pulsar::consumer::InitialPosition;
use ::pulsar::reader::Reader;
use ::pulsar::{ConsumerOptions, SubType, TokioExecutor};
use futures::StreamExt;
use std::time::Duration;

/// When the broker's last message id is "no entry in the current ledger" (entry -1, as after a
/// ledger roll), the end of the older ledgers is not known: reading stops once nothing arrives
/// for this long.
const IDLE_END: Duration = Duration::from_millis(1500);

/// One message read.
pub struct Received {
    pub id: MsgId,
    pub properties: Vec<(String, String)>,
    pub partition_key: Option<String>,
    pub partition_key_b64_encoded: bool,
    pub event_time: Option<u64>,
    pub publish_time: u64,
    pub payload: Vec<u8>,
}

impl Received {
    pub fn props(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub struct Follower {
    topic: String,
    reader: Owned<Reader<Vec<u8>, TokioExecutor>>,
    /// The id of the last message read.
    pub position: Option<MsgId>,
}

/// Whether a last-message id says the topic has no message at all.
fn is_empty(last: MsgId) -> bool {
    last.ledger == u64::MAX || (last.ledger == 0 && last.entry == u64::MAX)
}

impl Follower {
    /// A reader of `topic` from `start` (exclusive: the first message delivered is the one after
    /// it, although a broker that treats it as inclusive is fine too: callers skip by id), or
    /// from the earliest message.
    pub async fn open(
        client: &Client,
        handle: &tokio::runtime::Handle,
        topic: &str,
        start: Option<MsgId>,
    ) -> Result<Follower, StorageError> {
        let options = ConsumerOptions {
            start_message_id: start.map(MsgId::to_data),
            initial_position: InitialPosition::Earliest,
            durable: Some(false),
            ..Default::default()
        };
        let reader = super::client::within(
            OPERATION_TIMEOUT,
            &format!("opening a reader of {topic}"),
            client
                .reader()
                .with_topic(topic)
                .with_subscription(format!("guise-reader-{}", uuid::Uuid::new_v4()))
                .with_subscription_type(SubType::Exclusive)
                .with_options(options)
                .into_reader::<Vec<u8>>(),
        )
        .await?;
        Ok(Follower { topic: topic.to_string(), reader: Owned::new(reader, handle.clone()), position: start })
    }

    /// The id of the topic's last message, None when it has none.
    pub async fn last_id(&mut self) -> Result<Option<MsgId>, StorageError> {
        let what = format!("asking for the last message id of {}", self.topic);
        let last = super::client::within(OPERATION_TIMEOUT, &what, self.reader.get_last_message_id()).await?;
        let last = MsgId::of(&last);
        Ok((!is_empty(last)).then_some(last))
    }

    /// The next message, waiting at most `limit` (None when nothing came).
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Received>, StorageError> {
        let msg = match tokio::time::timeout(limit, self.reader.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(StorageError::Unavailable(format!("the reader of {} ended", self.topic))),
            Ok(Some(Err(e))) => {
                return Err(StorageError::Unavailable(format!("reading {}: {e}", self.topic)));
            }
            Ok(Some(Ok(msg))) => msg,
        };
        let id = MsgId::of(msg.message_id());
        self.position = Some(id);
        let meta = &msg.payload.metadata;
        Ok(Some(Received {
            id,
            properties: meta.properties.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect(),
            partition_key: meta.partition_key.clone(),
            partition_key_b64_encoded: meta.partition_key_b64_encoded(),
            event_time: meta.event_time,
            publish_time: meta.publish_time,
            payload: msg.payload.data,
        }))
    }

    /// Read every message up to the topic's current end, handing each to `f`.
    pub async fn catch_up(&mut self, mut f: impl FnMut(Received)) -> Result<u64, StorageError> {
        let Some(last) = self.last_id().await? else { return Ok(0) };
        if self.position.is_some_and(|p| p >= last) {
            return Ok(0);
        }
        // Entry -1 of a ledger: the older ledgers' end is unknown; stop when idle.
        let open_end = last.entry == u64::MAX;
        let mut read = 0;
        loop {
            let limit = if open_end { IDLE_END } else { OPERATION_TIMEOUT };
            let Some(msg) = self.next(limit).await? else {
                if open_end {
                    return Ok(read);
                }
                return Err(StorageError::Unavailable(format!(
                    "reading {} up to {last:?}: no message within {limit:?}",
                    self.topic
                )));
            };
            let id = msg.id;
            f(msg);
            read += 1;
            if id >= last {
                return Ok(read);
            }
        }
    }
}
