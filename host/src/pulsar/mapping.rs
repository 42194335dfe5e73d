//! Kafka records and Pulsar messages, one to one: how a record produced over Kafka looks to a
//! Pulsar consumer, and how a message produced over Pulsar looks to a Kafka consumer. Used by
//! the `pulsar` entry format and the Pulsar-protocol endpoint (issue 6), as KoP maps them:
//!
//! | Kafka record | Pulsar message |
//! |---|---|
//! | key (UTF-8) | `partition_key` |
//! | key (other bytes) | `partition_key`, base64, with `partition_key_b64_encoded` |
//! | no key | no `partition_key` |
//! | headers | `properties` (values as UTF-8, lossily; a null value becomes "") |
//! | timestamp | `event_time` (a record before 1970 has none) |
//! | null value (a tombstone) | empty payload with `null_value` |
//!
//! Back from Pulsar, a message without an event time gets its publish time (a send whose
//! messages all lack one becomes a LogAppendTime batch, which maps back to no event time).

use super::batch::{self, BatchError};
use super::proto::{KeyValue, MessageMetadata, SingleMessageMetadata};
use crate::record::records::{Header, Record};
use base64::Engine as _;
use bytes::Bytes;

#[derive(thiserror::Error, Debug)]
pub enum MappingError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("partition key {0:?} is flagged base64 but does not decode")]
    BadKey(String),
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The Pulsar form of one Kafka record: its single-message metadata (for a batch entry) and
/// payload.
pub fn message_of(record: &Record) -> (SingleMessageMetadata, Bytes) {
    let mut meta = SingleMessageMetadata::default();
    if let Some(key) = &record.key {
        match std::str::from_utf8(key) {
            Ok(k) => meta.partition_key = Some(k.to_string()),
            Err(_) => {
                meta.partition_key = Some(B64.encode(key));
                meta.partition_key_b64_encoded = Some(true);
            }
        }
    }
    meta.properties = record
        .headers
        .iter()
        .map(|h| KeyValue {
            key: h.key.clone(),
            value: h.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
        })
        .collect();
    meta.event_time = u64::try_from(record.timestamp).ok();
    let payload = match &record.value {
        Some(v) => v.clone(),
        None => {
            meta.null_value = Some(true);
            Bytes::new()
        }
    };
    meta.payload_size = i32::try_from(payload.len()).unwrap_or(i32::MAX);
    (meta, payload)
}

/// The Kafka form of one Pulsar message (a batch entry, or a whole unbatched message's
/// metadata turned into an entry by [`records_of_send`]); `publish_time` stands in for a missing
/// event time.
pub fn record_of(
    meta: &SingleMessageMetadata,
    payload: Bytes,
    publish_time: u64,
) -> Result<Record, MappingError> {
    let key = match &meta.partition_key {
        None => None,
        Some(_) if meta.null_partition_key == Some(true) => None,
        Some(k) if meta.partition_key_b64_encoded == Some(true) => {
            Some(Bytes::from(B64.decode(k).map_err(|_| MappingError::BadKey(k.clone()))?))
        }
        Some(k) => Some(Bytes::from(k.clone().into_bytes())),
    };
    let headers = meta
        .properties
        .iter()
        .map(|p| Header { key: p.key.clone(), value: Some(Bytes::from(p.value.clone().into_bytes())) })
        .collect();
    let time = meta.event_time.filter(|t| *t > 0).unwrap_or(publish_time);
    Ok(Record {
        key,
        value: if meta.null_value == Some(true) { None } else { Some(payload) },
        headers,
        timestamp: i64::try_from(time).unwrap_or(i64::MAX),
        offset_delta: 0,
    })
}

/// The records of one SEND: each entry of a batch, or the one unbatched message, decompressed
/// (at most `max` bytes) and mapped; offset deltas numbered from 0. Also whether any of them had
/// an event time (none had: every timestamp is the publish time, Kafka's LogAppendTime).
pub fn records_of_send(
    metadata: &MessageMetadata,
    data: Bytes,
    max: usize,
) -> Result<(Vec<Record>, bool), MappingError> {
    let data = batch::decompress(metadata, data, max)?;
    let entries = if batch::is_batch(metadata) {
        batch::split_batch(metadata, &data)?
    } else {
        let single = SingleMessageMetadata {
            properties: metadata.properties.clone(),
            partition_key: metadata.partition_key.clone(),
            partition_key_b64_encoded: metadata.partition_key_b64_encoded,
            event_time: metadata.event_time,
            null_value: metadata.null_value,
            null_partition_key: metadata.null_partition_key,
            payload_size: i32::try_from(data.len()).unwrap_or(i32::MAX),
            ..Default::default()
        };
        vec![(single, data)]
    };
    let any_event_time = entries.iter().any(|(meta, _)| meta.event_time.is_some_and(|t| t > 0));
    let records = entries
        .into_iter()
        .enumerate()
        .map(|(i, (meta, payload))| {
            let mut r = record_of(&meta, payload, metadata.publish_time)?;
            r.offset_delta = i32::try_from(i).unwrap_or(i32::MAX);
            Ok(r)
        })
        .collect::<Result<Vec<_>, MappingError>>()?;
    Ok((records, any_event_time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulsar::proto::CompressionType;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&str>)], ts: i64) -> Record {
        Record {
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(k, v)| Header {
                    key: k.to_string(),
                    value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                })
                .collect(),
            timestamp: ts,
            offset_delta: 0,
        }
    }

    #[test]
    fn records_map_to_messages_and_back() {
        let cases = [
            record(
                Some(b"user-1"),
                Some(b"{\"a\":1}"),
                &[("trace", Some("x")), ("trace", Some("y"))],
                1_700_000_000_000,
            ),
            record(Some(&[0xff, 0x00, 0x80]), Some(b"binary key"), &[], 5),
            record(None, None, &[], 7), // a keyless tombstone
        ];
        for r in &cases {
            let (meta, payload) = message_of(r);
            assert_eq!(record_of(&meta, payload, 99).unwrap(), *r);
        }
        let (meta, payload) = message_of(&cases[1]);
        assert_eq!(
            (meta.partition_key.as_deref(), meta.partition_key_b64_encoded),
            (Some("/wCA"), Some(true))
        );
        assert!(payload.len() == 10 && meta.null_value.is_none());
        let (meta, payload) = message_of(&cases[2]);
        assert_eq!((meta.null_value, payload.len(), meta.partition_key), (Some(true), 0, None));

        // A null header value becomes "" (Pulsar properties are strings).
        let (meta, _) = message_of(&record(None, Some(b"v"), &[("h", None)], 1));
        assert_eq!(meta.properties[0].value, "");
        // No event time: the publish time.
        let (mut meta, payload) = message_of(&record(None, Some(b"v"), &[], -5));
        assert_eq!(meta.event_time, None);
        assert_eq!(record_of(&meta, payload.clone(), 1234).unwrap().timestamp, 1234);
        meta.partition_key = Some("not base64!".into());
        meta.partition_key_b64_encoded = Some(true);
        assert!(matches!(record_of(&meta, payload, 0), Err(MappingError::BadKey(_))));
    }

    #[test]
    fn a_compressed_batched_send_becomes_kafka_records() {
        let records = [
            record(Some(b"k1"), Some(b"one"), &[("p", Some("1"))], 10),
            record(None, None, &[], 11),
            record(Some(&[1, 2, 3]), Some(b"three"), &[], 12),
        ];
        let entries: Vec<(SingleMessageMetadata, Bytes)> = records.iter().map(message_of).collect();
        let refs: Vec<(SingleMessageMetadata, &[u8])> =
            entries.iter().map(|(m, p)| (m.clone(), &p[..])).collect();
        let raw = batch::build_batch(&refs);
        let compressed = batch::compress(CompressionType::Zlib, &raw).unwrap();
        let metadata = MessageMetadata {
            producer_name: "p".into(),
            publish_time: 500,
            num_messages_in_batch: Some(3),
            compression: Some(CompressionType::Zlib as i32),
            uncompressed_size: Some(raw.len() as u32),
            ..Default::default()
        };
        let (got, any_event_time) = records_of_send(&metadata, Bytes::from(compressed), 1 << 20).unwrap();
        assert!(any_event_time);
        for (i, (g, r)) in got.iter().zip(&records).enumerate() {
            assert_eq!(Record { offset_delta: 0, ..g.clone() }, *r);
            assert_eq!(g.offset_delta, i as i32);
        }

        // An unbatched SEND: its own metadata carries the key and properties.
        let single = MessageMetadata {
            producer_name: "p".into(),
            publish_time: 600,
            partition_key: Some("solo".into()),
            properties: vec![KeyValue { key: "a".into(), value: "b".into() }],
            ..Default::default()
        };
        let (got, any_event_time) =
            records_of_send(&single, Bytes::from_static(b"payload"), 1 << 20).unwrap();
        assert_eq!(got, [record(Some(b"solo"), Some(b"payload"), &[("a", Some("b"))], 600)]);
        assert!(!any_event_time, "the publish time stands in: a LogAppendTime batch");
    }
}
