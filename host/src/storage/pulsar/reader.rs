//! Reading a Pulsar topic in order with the crate's Reader (a non-durable, exclusive
//! subscription): [`Follower`] reads a topic up to a given message and can be resumed later
//! (recovery, the metadata logs, and the partitions' cached fetch readers all use it).
//!
//! Where a topic ends is only known exactly from the id of a message: when the broker's last
//! message id is "no entry in the current ledger" (entry -1, as after a ledger roll), the end of
//! the older ledgers is unknown ([`End::Unknown`]), and a reader must not guess it from a pause
//! (a stall would end it short). Callers then append a no-op probe message of their own and read
//! up to its id: an exact end.

use super::client::{Client, OPERATION_TIMEOUT, Owned};
use super::index::MsgId;
use crate::storage::StorageError;
use ::pulsar::consumer::InitialPosition;
use ::pulsar::reader::Reader;
use ::pulsar::{ConsumerOptions, SubType, TokioExecutor};
use futures::StreamExt;
use std::time::Duration;

/// Messages the broker may push ahead of the reader (the crate's flow permits): what a reader
/// holds in memory at most, so keep it small for readers that live long.
pub const PREFETCH: u32 = 64;

/// Where a topic ends, as the broker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// No message at all.
    Empty,
    /// The id of the last message.
    At(MsgId),
    /// The current ledger has no entry: the last message is somewhere in an older one.
    Unknown,
}

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
        prefetch: u32,
    ) -> Result<Follower, StorageError> {
        let prefetch = prefetch.max(2);
        let options = ConsumerOptions {
            start_message_id: start.map(MsgId::to_data),
            initial_position: InitialPosition::Earliest,
            durable: Some(false),
            receiver_queue_size: Some(prefetch),
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
                .with_batch_size(prefetch)
                .with_options(options)
                .into_reader::<Vec<u8>>(),
        )
        .await?;
        Ok(Follower { topic: topic.to_string(), reader: Owned::new(reader, handle.clone()), position: start })
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

    /// Where the topic ends now.
    pub async fn end(&mut self) -> Result<End, StorageError> {
        let what = format!("asking for the last message id of {}", self.topic);
        let last = super::client::within(OPERATION_TIMEOUT, &what, self.reader.get_last_message_id()).await?;
        let last = MsgId::of(&last);
        Ok(if is_empty(last) {
            End::Empty
        } else if last.entry == u64::MAX {
            End::Unknown
        } else {
            End::At(last)
        })
    }

    /// Read every message up to and including `end` (a message known to be in the topic),
    /// handing each to `f`. A stall is an error, never taken for the end.
    pub async fn read_to(&mut self, end: MsgId, mut f: impl FnMut(Received)) -> Result<u64, StorageError> {
        let mut read = 0;
        while self.position.is_none_or(|p| p < end) {
            let Some(msg) = self.next(OPERATION_TIMEOUT).await? else {
                return Err(StorageError::Unavailable(format!(
                    "reading {} up to {end:?}: no message within {OPERATION_TIMEOUT:?}",
                    self.topic
                )));
            };
            f(msg);
            read += 1;
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_topics_are_recognized() {
        assert!(is_empty(MsgId { ledger: u64::MAX, entry: u64::MAX }));
        assert!(is_empty(MsgId { ledger: 0, entry: u64::MAX }));
        assert!(!is_empty(MsgId { ledger: 0, entry: 0 }));
        assert!(!is_empty(MsgId { ledger: 7, entry: u64::MAX }), "an empty current ledger: unknown end");
    }
}
