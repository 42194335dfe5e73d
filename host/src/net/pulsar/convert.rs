//! A Pulsar SEND as a Kafka record batch, and a stored Kafka record batch as a Pulsar MESSAGE.
//!
//! One Pulsar entry is one Kafka batch. A SEND (batched or not) becomes one Kafka batch with
//! one record per message; its codec is transcoded (Pulsar LZ4 is the raw block format and ZLIB
//! is zlib, while Kafka's LZ4 is the frame format and its deflate codec is gzip, so they are
//! re-encoded; Snappy and ZSTD map to Kafka's). A stored batch of one record goes back out as an
//! unbatched message, a batch of several as a Pulsar batch of as many messages: message id
//! (ledger 0, entry = the batch's base offset, batch index = the record's position).

use crate::pulsar::batch;
use crate::pulsar::mapping::{self, MappingError};
use crate::pulsar::proto::{CompressionType, MessageIdData, MessageMetadata};
use crate::record::batch::BatchHeader;
use crate::record::records::{self, EncodeSpec, RecordsError};
use bytes::Bytes;

#[derive(thiserror::Error, Debug)]
pub enum ConvertError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error("the message holds no records")]
    Empty,
}

/// The producer name stamped on messages that Kafka clients produced.
pub const KAFKA_PRODUCER: &str = "kafka";

/// The Kafka batch for one SEND: its messages as records, the codec transcoded.
pub fn kafka_batch_of_send(
    metadata: &MessageMetadata,
    data: Bytes,
    max: usize,
) -> Result<Vec<u8>, ConvertError> {
    let (records, any_event_time) = mapping::records_of_send(metadata, data, max)?;
    if records.is_empty() {
        return Err(ConvertError::Empty);
    }
    let codec = match batch::compression(metadata).map_err(MappingError::from)? {
        CompressionType::None => 0,
        CompressionType::Zlib => 1,
        CompressionType::Snappy => 2,
        CompressionType::Lz4 => 3,
        CompressionType::Zstd => 4,
    };
    let publish = i64::try_from(metadata.publish_time).unwrap_or(i64::MAX);
    // Messages without an event time carry the broker's time, the publish time: Kafka's
    // LogAppendTime, which also tells Pulsar consumers later that they had no event time.
    let spec = EncodeSpec { log_append_time: !any_event_time, ..EncodeSpec::plain(codec, publish) };
    Ok(records::encode(&records, &spec)?)
}

/// One stored Kafka batch as a Pulsar message.
#[derive(Debug)]
pub struct Delivery {
    /// The batch's base offset: the entry id of its message id.
    pub entry: i64,
    /// The Kafka offset of each message, in batch order.
    pub offsets: Vec<i64>,
    /// The offset after the batch.
    pub next: i64,
    pub metadata: MessageMetadata,
    pub payload: Vec<u8>,
}

impl Delivery {
    /// Whether it goes out as a batch (message ids then carry batch indexes).
    pub fn batched(&self) -> bool {
        self.metadata.num_messages_in_batch.is_some()
    }

    /// The message id of the message at `index` (its position in the batch).
    pub fn id(&self, index: usize) -> MessageIdData {
        message_id(self.entry, if self.batched() { i32::try_from(index).unwrap_or(i32::MAX) } else { -1 })
    }
}

/// A message id in this endpoint's scheme.
pub fn message_id(entry: i64, batch_index: i32) -> MessageIdData {
    MessageIdData {
        ledger_id: 0,
        entry_id: u64::try_from(entry).unwrap_or(0),
        batch_index: Some(batch_index),
        ..Default::default()
    }
}

/// The Pulsar message of one stored batch; None for a batch without records (control batches,
/// and batches a transform emptied), which consumers skip.
pub fn delivery_of_batch(raw: &[u8], max: usize) -> Result<Option<Delivery>, ConvertError> {
    let header = BatchHeader::parse(raw).map_err(|e| RecordsError::Malformed(e.to_string()))?;
    let next = header.next_offset();
    if header.is_control() {
        return Ok(None);
    }
    let decoded = records::decode(raw, max)?;
    if decoded.records.is_empty() {
        return Ok(None);
    }
    let offsets: Vec<i64> =
        decoded.records.iter().map(|r| header.base_offset + i64::from(r.offset_delta)).collect();
    let ms = |ts: i64| u64::try_from(ts).unwrap_or(0);
    let mut metadata = MessageMetadata {
        producer_name: KAFKA_PRODUCER.to_string(),
        sequence_id: u64::try_from(header.base_offset).unwrap_or(0),
        publish_time: ms(header.max_timestamp),
        ..Default::default()
    };
    // LogAppendTime: the broker's time, Pulsar's publish time; the records had no event time.
    let message_of = |r: &records::Record| {
        let (mut single, payload) = mapping::message_of(r);
        if header.is_log_append_time() {
            single.event_time = None;
        }
        (single, payload)
    };
    let payload = if let [record] = decoded.records.as_slice() {
        let (single, payload) = message_of(record);
        metadata.properties = single.properties;
        metadata.partition_key = single.partition_key;
        metadata.partition_key_b64_encoded = single.partition_key_b64_encoded;
        metadata.event_time = single.event_time;
        metadata.null_value = single.null_value;
        metadata.publish_time = ms(record.timestamp);
        payload.to_vec()
    } else {
        let messages: Vec<_> = decoded.records.iter().map(message_of).collect();
        let parts: Vec<_> = messages.iter().map(|(m, p)| (m.clone(), p.as_ref())).collect();
        metadata.num_messages_in_batch = Some(i32::try_from(parts.len()).unwrap_or(i32::MAX));
        batch::build_batch(&parts)
    };
    Ok(Some(Delivery { entry: header.base_offset, offsets, next, metadata, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulsar::proto::{KeyValue, SingleMessageMetadata};
    use crate::record::records::{Header, Record};

    fn record(key: Option<&[u8]>, value: Option<&[u8]>, ts: i64) -> Record {
        Record {
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"v")) }],
            timestamp: ts,
            offset_delta: 0,
        }
    }

    #[test]
    fn a_kafka_batch_goes_out_as_a_pulsar_batch_and_comes_back() {
        let recs = vec![
            record(Some(b"k1"), Some(b"one"), 1000),
            record(Some(&[0xff, 0]), None, 1001),
            record(None, Some(b"3"), 1002),
        ];
        let mut raw = records::encode(&recs, &EncodeSpec::plain(3, 0)).unwrap();
        raw[..8].copy_from_slice(&40i64.to_be_bytes());
        let d = delivery_of_batch(&raw, 1 << 20).unwrap().unwrap();
        assert_eq!((d.entry, d.next, d.offsets.clone()), (40, 43, vec![40, 41, 42]));
        assert_eq!(d.metadata.num_messages_in_batch, Some(3));
        assert_eq!(d.id(2).entry_id, 40);
        assert_eq!(d.id(2).batch_index, Some(2));
        // What a Pulsar client would send back with this payload becomes the same records.
        let back = kafka_batch_of_send(&d.metadata, Bytes::from(d.payload.clone()), 1 << 20).unwrap();
        let decoded = records::decode(&back, 1 << 20).unwrap().records;
        assert_eq!(decoded.len(), 3);
        for (a, b) in decoded.iter().zip(&recs) {
            assert_eq!((&a.key, &a.value, a.timestamp), (&b.key, &b.value, b.timestamp));
            assert_eq!(a.headers[0].key, "h");
        }
    }

    #[test]
    fn one_record_is_an_unbatched_message() {
        let raw = records::encode(&[record(Some(b"k"), Some(b"v"), 5)], &EncodeSpec::plain(0, 0)).unwrap();
        let d = delivery_of_batch(&raw, 1 << 20).unwrap().unwrap();
        assert!(!d.batched());
        assert_eq!(d.id(0).batch_index, Some(-1));
        assert_eq!(d.metadata.partition_key.as_deref(), Some("k"));
        assert_eq!(d.metadata.event_time, Some(5));
        assert_eq!(d.metadata.properties, vec![KeyValue { key: "h".into(), value: "v".into() }]);
        assert_eq!(d.payload, b"v");
    }

    #[test]
    fn codecs_are_transcoded() {
        // A zlib-compressed Pulsar batch becomes a gzip Kafka batch with the same records.
        let parts = [
            (SingleMessageMetadata::default(), &b"hello"[..]),
            (SingleMessageMetadata::default(), &b"world"[..]),
        ];
        let plain = batch::build_batch(&parts);
        let compressed = batch::compress(CompressionType::Zlib, &plain).unwrap();
        let meta = MessageMetadata {
            num_messages_in_batch: Some(2),
            compression: Some(CompressionType::Zlib as i32),
            uncompressed_size: Some(plain.len() as u32),
            publish_time: 77,
            ..Default::default()
        };
        let raw = kafka_batch_of_send(&meta, Bytes::from(compressed), 1 << 20).unwrap();
        assert_eq!(BatchHeader::parse(&raw).unwrap().compression(), 1);
        let values: Vec<_> =
            records::decode(&raw, 1 << 20).unwrap().records.into_iter().map(|r| r.value.unwrap()).collect();
        assert_eq!(values, vec![Bytes::from_static(b"hello"), Bytes::from_static(b"world")]);
    }
}
