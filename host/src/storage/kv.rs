//! Key/value records in an internal topic: what the host's own services (the group
//! coordinator's `__consumer_offsets`, the authorizer's `__acls`) append to one partition as
//! uncompressed v2 batches, and the replay that reads them back at start. The last record of a
//! key wins and a null value is a tombstone, so the topics compact (where the log compacts)
//! to about one record per key.

use crate::record::batch::BatchHeader;
use crate::record::records as log_records;
use crate::storage::{Log, StorageError, TopicName};
use bytes::Bytes;

/// One record to append: key and value (None: a tombstone).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

/// A record read back: (offset, key, value).
pub type Decoded = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// One batch holding `records`, all stamped `timestamp_ms`.
pub fn encode_batch(records: &[Record], timestamp_ms: i64) -> Result<Vec<u8>, StorageError> {
    let records: Vec<log_records::Record> = records
        .iter()
        .map(|(key, value)| log_records::Record {
            key: Some(Bytes::copy_from_slice(key)),
            value: value.as_deref().map(Bytes::copy_from_slice),
            headers: Vec::new(),
            timestamp: timestamp_ms,
            offset_delta: 0,
        })
        .collect();
    let spec = log_records::EncodeSpec::plain(0, timestamp_ms);
    log_records::encode(&records, &spec)
        .map_err(|e| StorageError::InvalidRecord(format!("encoding an internal-topic batch: {e}")))
}

/// The records of one whole batch.
pub fn decode_batch(batch: &[u8]) -> Result<Vec<Decoded>, StorageError> {
    let decoded = log_records::decode(batch, usize::MAX)
        .map_err(|e| StorageError::CorruptMessage(format!("an internal-topic batch: {e}")))?;
    let base = decoded.header.base_offset;
    Ok(decoded
        .records
        .into_iter()
        .map(|r| {
            let offset = base.wrapping_add(i64::from(r.offset_delta));
            (offset, r.key.map(|k| k.to_vec()), r.value.map(|v| v.to_vec()))
        })
        .collect())
}

/// Append `records` as one batch to partition 0 of `name`, creating the topic first (with the
/// configs `configs` gives) when it does not exist yet.
pub async fn append(
    log: &dyn Log,
    name: &TopicName,
    configs: impl FnOnce() -> Vec<(String, String)>,
    records: &[Record],
) -> Result<(), StorageError> {
    if log.topic(name).is_none() {
        match log.create_topic(name, 1, &configs(), false).await {
            Ok(_) => tracing::info!(topic = %name, "created an internal topic"),
            Err(StorageError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    log.append(name, 0, encode_batch(records, crate::storage::now_ms())?.into()).await.map(drop)
}

/// Read partition 0 of `name` from its log start to its end, handing every keyed record to
/// `apply` in order (nothing when the topic does not exist).
pub async fn replay(
    log: &dyn Log,
    name: &TopicName,
    mut apply: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<(), StorageError> {
    if log.topic(name).is_none() {
        return Ok(());
    }
    let (start, end) = log.offsets(name, 0).await?;
    let mut next = start;
    while next < end {
        let read = log.read(name, 0, next, 1 << 20, true).await?;
        let Some(bytes) = read.records else { break };
        let before = next;
        let mut pos = 0;
        while pos < bytes.len() {
            let header = BatchHeader::parse(&bytes[pos..])?;
            let batch = bytes
                .get(pos..pos + header.size())
                .ok_or_else(|| StorageError::CorruptMessage(format!("truncated batch in {name}")))?;
            // Only the owning service writes here (clients are refused), but a batch it could
            // not have written must not keep the host from starting: skip it, loudly.
            let decoded = decode_batch(batch).unwrap_or_else(|e| {
                tracing::warn!(topic = %name.topic, "skipping an unreadable batch: {e}");
                Vec::new()
            });
            for (offset, key, value) in decoded {
                if offset < next {
                    continue;
                }
                if let Some(key) = key {
                    apply(&key, value.as_deref());
                }
            }
            next = next.max(header.next_offset());
            pos += header.size();
        }
        if next <= before {
            return Err(StorageError::CorruptMessage(format!(
                "internal topic {name}: no progress at {next}"
            )));
        }
    }
    Ok(())
}
