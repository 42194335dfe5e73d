//! Kafka record batches (magic v2): header parsing and the checks the host makes before it
//! stores a batch.
//!
//! Layout of the 61-byte header, big-endian: baseOffset i64 @0, batchLength i32 @8 (bytes after
//! this field), partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C of bytes
//! `[21..end]`), attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordsCount i32 @57. The base offset is outside the CRC, so the host can patch it in place.

/// Why a record batch was refused: each maps to one Kafka error code (see `kafka_code`).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// CORRUPT_MESSAGE (2): a bad header, length, CRC or record.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// MESSAGE_TOO_LARGE (10).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: u32 },
}

impl BatchError {
    pub fn kafka_code(&self) -> i16 {
        match self {
            BatchError::Corrupt(_) => guise_guest_sdk::error::CORRUPT_MESSAGE,
            BatchError::TooLarge { .. } => guise_guest_sdk::error::MESSAGE_TOO_LARGE,
        }
    }
}

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the part that batchLength counts: baseOffset and batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only supported batch format.
pub const MAGIC_V2: i8 = 2;
/// Where the CRC-covered part of a batch starts.
pub const CRC_START: usize = 21;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
/// The batch belongs to a transaction (KIP-98).
pub const TRANSACTIONAL: i16 = 0x10;
/// The batch holds a control record (a transaction marker), written by the broker.
pub const CONTROL: i16 = 0x20;
/// KIP-534: the batch's baseTimestamp holds the delete horizon the log cleaner set (record
/// timestamps stay baseTimestamp + delta).
pub const DELETE_HORIZON: i16 = 0x40;

/// The parsed header of one v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `buf`. Checks that the header is complete, that the
    /// magic is 2 and that batchLength covers at least the header; it does not check that the
    /// whole batch is in `buf` (see [`validate`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(BatchError::Corrupt(format!(
                "{} bytes is too short for a record batch header ({HEADER_LEN} bytes)",
                buf.len()
            )));
        };
        let header = BatchHeader {
            base_offset: i64::from_be_bytes(array(h, 0)),
            batch_length: i32::from_be_bytes(array(h, 8)),
            partition_leader_epoch: i32::from_be_bytes(array(h, 12)),
            magic: h[16] as i8,
            crc: u32::from_be_bytes(array(h, 17)),
            attributes: i16::from_be_bytes(array(h, 21)),
            last_offset_delta: i32::from_be_bytes(array(h, 23)),
            base_timestamp: i64::from_be_bytes(array(h, 27)),
            max_timestamp: i64::from_be_bytes(array(h, 35)),
            producer_id: i64::from_be_bytes(array(h, 43)),
            producer_epoch: i16::from_be_bytes(array(h, 51)),
            base_sequence: i32::from_be_bytes(array(h, 53)),
            records_count: i32::from_be_bytes(array(h, 57)),
        };
        if header.magic != MAGIC_V2 {
            return Err(BatchError::Corrupt(format!(
                "unsupported record batch magic {} (only v2 is accepted)",
                header.magic
            )));
        }
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Corrupt(format!(
                "batch length {} is shorter than the batch header",
                header.batch_length
            )));
        }
        Ok(header)
    }

    /// Total size of the batch in bytes, header included. Always at least [`HEADER_LEN`] for a
    /// parsed header.
    pub fn size(&self) -> usize {
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }

    /// The offset of the last record (base offset + lastOffsetDelta).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    pub fn is_compressed(&self) -> bool {
        self.compression() != 0
    }

    /// Whether the record timestamps are LogAppendTime (all equal to the max timestamp).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    /// The delete horizon (ms since the epoch) the log cleaner stamped on this batch when it
    /// first kept a tombstone of it (KIP-534): tombstones go at the first clean after it. None
    /// for a batch no cleaner has stamped.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    /// recordsCount >= 1 and lastOffsetDelta == recordsCount - 1.
    pub fn check_counts(&self) -> Result<(), BatchError> {
        if self.records_count < 1 {
            return Err(BatchError::Corrupt(format!("record batch holds {} records", self.records_count)));
        }
        if i64::from(self.last_offset_delta) != i64::from(self.records_count) - 1 {
            return Err(BatchError::Corrupt(format!(
                "lastOffsetDelta {} does not match recordsCount {}",
                self.last_offset_delta, self.records_count
            )));
        }
        Ok(())
    }

    /// The looser rule for batches the host itself writes and for recovery: 0 <= recordsCount <=
    /// lastOffsetDelta + 1. A transform that drops records leaves a batch that still spans the
    /// producer's original offsets and sequences, fewer records or none at all, as Kafka's own
    /// batches do after compaction (their sequence span keeps idempotent producer state).
    pub fn check_span(&self) -> Result<(), BatchError> {
        if self.last_offset_delta < 0
            || self.records_count < 0
            || i64::from(self.records_count) > i64::from(self.last_offset_delta) + 1
        {
            return Err(BatchError::Corrupt(format!(
                "record batch holds {} records over a span of lastOffsetDelta {}",
                self.records_count, self.last_offset_delta
            )));
        }
        Ok(())
    }
}

/// Which count rule [`validate`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counts {
    /// A client's batch: at least one record, lastOffsetDelta == recordsCount - 1.
    Exact,
    /// A batch the host built (see [`BatchHeader::check_span`]).
    Span,
}

/// A batch that passed [`validate`], with its place in the buffer.
#[derive(Clone, Copy, Debug)]
pub struct ValidBatch {
    /// Where the batch starts in the validated buffer.
    pub position: usize,
    pub header: BatchHeader,
}

impl ValidBatch {
    /// Total size of the batch in bytes.
    pub fn size(&self) -> usize {
        self.header.size()
    }
}

/// Walk the concatenated batches of `records` and check each: a complete header, a batchLength
/// within the buffer, magic 2, sane record counts, at most `max_message_bytes` bytes and a
/// matching CRC-32C. Empty input is CorruptMessage. Nothing is allocated from a length field.
pub fn validate(records: &[u8], max_message_bytes: u32) -> Result<Vec<ValidBatch>, BatchError> {
    validate_with(records, max_message_bytes, Counts::Exact)
}

/// [`validate`] with a choice of count rule.
pub fn validate_with(
    records: &[u8],
    max_message_bytes: u32,
    counts: Counts,
) -> Result<Vec<ValidBatch>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Corrupt("no record batches".into()));
    }
    let mut batches = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let rest = &records[position..];
        let header = BatchHeader::parse(rest)?;
        let size = header.size();
        if size > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "batch of {size} bytes at position {position} overruns the {} bytes left",
                rest.len()
            )));
        }
        if size > max_message_bytes as usize {
            return Err(BatchError::TooLarge { size, max: max_message_bytes });
        }
        match counts {
            Counts::Exact => header.check_counts()?,
            Counts::Span => header.check_span()?,
        }
        if !crc_matches(&rest[..size], header.crc) {
            return Err(BatchError::Corrupt(format!("CRC mismatch in the batch at position {position}")));
        }
        batches.push(ValidBatch { position, header });
        position += size;
    }
    Ok(batches)
}

/// The timestamp-type attribute: the batch's records carry the log's append time.
pub const LOG_APPEND_TIME: i16 = 0x08;

/// Kafka's `message.timestamp.type=LogAppendTime`: each batch of `records` stamped with the
/// append time, as Kafka's broker does — the timestamp-type attribute set, maxTimestamp =
/// `now_ms`, the CRC recomputed. The records' own timestamps stay; consumers take the batch's.
/// Only a batch whose CRC is right is stamped: a corrupt one, or a malformed tail, is left as it
/// came for validation to refuse.
pub fn stamp_log_append_time(records: &[u8], now_ms: i64) -> Vec<u8> {
    let mut out = records.to_vec();
    let mut at = 0;
    while out.len() - at >= HEADER_LEN {
        let len = i32::from_be_bytes(array(&out[at..], 8));
        let Some(end) = usize::try_from(len).ok().and_then(|l| (at + LOG_OVERHEAD).checked_add(l)) else {
            break;
        };
        if end > out.len() || end - at < HEADER_LEN {
            break;
        }
        let batch = &mut out[at..end];
        if crc_matches(batch, u32::from_be_bytes(array(batch, 17))) {
            let attributes = i16::from_be_bytes(array(batch, 21)) | LOG_APPEND_TIME;
            batch[21..23].copy_from_slice(&attributes.to_be_bytes());
            batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
            let crc = crc32c::crc32c(&batch[CRC_START..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        at = end;
    }
    out
}

/// Whether the CRC-32C of `batch[CRC_START..]` is `crc`. `batch` is one whole batch.
pub fn crc_matches(batch: &[u8], crc: u32) -> bool {
    batch.get(CRC_START..).is_some_and(|covered| crc32c::crc32c(covered) == crc)
}

/// The offset and timestamp of one record, as found by [`record_stamps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordStamp {
    pub offset: i64,
    pub timestamp: i64,
}

/// (offset, timestamp) of the first record of an uncompressed batch whose timestamp satisfies
/// `wanted` (ListOffsets by time and max timestamp); None for a compressed batch or no match.
pub fn first_stamp(batch: &[u8], wanted: impl Fn(i64) -> bool) -> Option<(i64, i64)> {
    let stamps = record_stamps(batch).ok()??;
    stamps.map_while(Result::ok).find(|s| wanted(s.timestamp)).map(|s| (s.offset, s.timestamp))
}

/// Iterate over the (offset, timestamp) of each record of one whole uncompressed batch. None
/// for a compressed batch (its records are not readable without decompressing).
pub fn record_stamps(batch: &[u8]) -> Result<Option<RecordStamps<'_>>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.is_compressed() {
        return Ok(None);
    }
    let end = header.size().min(batch.len());
    Ok(Some(RecordStamps { header, buf: &batch[HEADER_LEN..end], left: header.records_count.max(0) }))
}

/// See [`record_stamps`]. Yields an error and stops at a malformed record.
pub struct RecordStamps<'a> {
    header: BatchHeader,
    buf: &'a [u8],
    left: i32,
}

impl RecordStamps<'_> {
    fn next_record(&mut self) -> Result<RecordStamp, BatchError> {
        let bad = || BatchError::Corrupt("malformed record in batch".into());
        let mut cursor = self.buf;
        let length = read_varint(&mut cursor).ok_or_else(bad)?;
        let length = usize::try_from(length).map_err(|_| bad())?;
        let body = cursor.get(..length).ok_or_else(bad)?;
        self.buf = &cursor[length..];
        let mut body = body.get(1..).ok_or_else(bad)?; // attributes
        let timestamp_delta = read_varlong(&mut body).ok_or_else(bad)?;
        let offset_delta = read_varint(&mut body).ok_or_else(bad)?;
        let timestamp = if self.header.is_log_append_time() {
            self.header.max_timestamp
        } else {
            self.header.base_timestamp.wrapping_add(timestamp_delta)
        };
        Ok(RecordStamp { offset: self.header.base_offset.wrapping_add(i64::from(offset_delta)), timestamp })
    }
}

impl Iterator for RecordStamps<'_> {
    type Item = Result<RecordStamp, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let record = self.next_record();
        if record.is_err() {
            self.left = 0;
        }
        Some(record)
    }
}

/// The type of a control batch's record (Kafka's `ControlRecordType`), as its key says. Only the
/// two a data partition holds: the end-transaction markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    /// An ABORT marker (type 0).
    Abort,
    /// A COMMIT marker (type 1).
    Commit,
}

/// The version of the control record key and of the end-transaction marker value Kafka writes.
const CONTROL_VERSION: i16 = 0;
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// The control type of one whole control batch, from the key of its first record (version i16,
/// type i16; Kafka's `ControlRecordType.parse`): None when `batch` is no control batch, is
/// compressed (Kafka writes control batches uncompressed), has no readable first record, or
/// holds another type than ABORT (0) or COMMIT (1).
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.is_compressed() || header.records_count < 1 {
        return None;
    }
    let end = header.size().min(batch.len());
    let mut cursor = batch.get(HEADER_LEN..end)?;
    let length = usize::try_from(read_varint(&mut cursor)?).ok()?;
    let mut body = cursor.get(..length)?.get(1..)?; // attributes
    read_varlong(&mut body)?; // timestampDelta
    read_varint(&mut body)?; // offsetDelta
    let key_len = usize::try_from(read_varint(&mut body)?).ok()?;
    let key = body.get(..key_len)?;
    let version = i16::from_be_bytes([*key.first()?, *key.get(1)?]);
    let kind = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    match (version >= 0, kind) {
        (true, CONTROL_ABORT) => Some(ControlType::Abort),
        (true, CONTROL_COMMIT) => Some(ControlType::Commit),
        _ => None,
    }
}

/// An end-transaction marker as Kafka's broker writes one (`MemoryRecords.withEndTransactionMarker`):
/// a magic-2 control batch (attributes transactional | control, uncompressed, CreateTime) of
/// `producer_id` at `producer_epoch`, base sequence -1, base offset 0 (the log assigns it),
/// partitionLeaderEpoch -1, holding one record at offset delta 0 with timestamp `now_ms`, whose
/// key is [version i16 = 0][type i16: 0 ABORT, 1 COMMIT] and value [version i16 = 0]
/// [coordinator epoch i32]; the CRC-32C filled in.
pub fn end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Vec<u8> {
    use super::records::put_varint;
    let kind = if commit { CONTROL_COMMIT } else { CONTROL_ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_VERSION.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut record = vec![0u8]; // attributes
    put_varint(&mut record, 0); // timestampDelta
    put_varint(&mut record, 0); // offsetDelta
    put_varint(&mut record, key.len() as i64);
    record.extend_from_slice(&key);
    put_varint(&mut record, value.len() as i64);
    record.extend_from_slice(&value);
    put_varint(&mut record, 0); // no headers
    let mut records = Vec::with_capacity(record.len() + 1);
    put_varint(&mut records, record.len() as i64);
    records.extend_from_slice(&record);

    let batch_length = (HEADER_LEN - LOG_OVERHEAD + records.len()) as i32;
    let mut b = Vec::with_capacity(HEADER_LEN + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0; 4]); // CRC, filled in below
    b.extend_from_slice(&(TRANSACTIONAL | CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    b.extend_from_slice(&1i32.to_be_bytes()); // recordsCount
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_START - 4..CRC_START].copy_from_slice(&crc.to_be_bytes());
    b
}

fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// An unsigned LEB128 of at most `max_bytes` bytes.
pub(crate) fn read_uvarint(buf: &mut &[u8], max_bytes: usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A zigzag varint (Kafka `varint`, an i32).
fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let raw = u32::try_from(read_uvarint(buf, 5)?).ok()?;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// A zigzag varlong (Kafka `varlong`, an i64).
fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let raw = read_uvarint(buf, 10)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Build real v2 batches for tests.

    use super::super::records::put_varint;

    /// An uncompressed batch with one record per value; record i has timestamp
    /// `base_ts + ts_deltas[i]` (or `base_ts + i` when `ts_deltas` is shorter).
    pub fn batch_with_timestamps(values: &[&[u8]], base_ts: i64, ts_deltas: &[i64]) -> Vec<u8> {
        let mut records = Vec::new();
        let mut max_ts = base_ts;
        for (i, value) in values.iter().enumerate() {
            let delta = ts_deltas.get(i).copied().unwrap_or(i as i64);
            max_ts = max_ts.max(base_ts + delta);
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, delta);
            put_varint(&mut body, i as i64);
            put_varint(&mut body, -1); // null key
            put_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value);
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let count = values.len() as i32;
        let mut b = Vec::with_capacity(61 + records.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        fix_crc(&mut b);
        b
    }

    /// An uncompressed batch of `n` records of `value_len` bytes, timestamps `base_ts + i`.
    pub fn batch(n: usize, value_len: usize, base_ts: i64) -> Vec<u8> {
        let value = vec![b'x'; value_len];
        let values: Vec<&[u8]> = (0..n).map(|_| value.as_slice()).collect();
        batch_with_timestamps(&values, base_ts, &[])
    }

    /// An uncompressed batch of `n` records from an idempotent producer: producer id, epoch and
    /// base sequence set, CRC recomputed.
    pub fn idempotent_batch(n: usize, producer_id: i64, epoch: i16, base_sequence: i32) -> Vec<u8> {
        let mut b = batch(n, 10, 0);
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        fix_crc(&mut b);
        b
    }

    /// An uncompressed batch of `n` records of a transactional producer (attribute 0x10).
    pub fn transactional_batch(n: usize, producer_id: i64, epoch: i16, base_sequence: i32) -> Vec<u8> {
        with_attributes(&idempotent_batch(n, producer_id, epoch, base_sequence), super::TRANSACTIONAL)
    }

    /// `b` with its attributes set to `attributes`, CRC recomputed.
    pub fn with_attributes(b: &[u8], attributes: i16) -> Vec<u8> {
        let mut b = b.to_vec();
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        fix_crc(&mut b);
        b
    }

    /// Recompute the CRC after editing the covered bytes.
    pub fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{batch, batch_with_timestamps, fix_crc};
    use super::*;

    #[test]
    fn parses_and_validates_a_batch() {
        let b = batch(3, 10, 1000);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.size(), b.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1002);
        assert!(!h.is_compressed());
        let valid = validate(&b, 1 << 20).unwrap();
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].position, 0);
    }

    #[test]
    fn validates_concatenated_batches() {
        let mut buf = batch(1, 5, 1);
        let second = batch(4, 7, 2);
        buf.extend_from_slice(&second);
        let valid = validate(&buf, 1 << 20).unwrap();
        assert_eq!(valid.len(), 2);
        assert_eq!(valid[1].position, buf.len() - second.len());
        assert_eq!(valid[1].size(), second.len());
    }

    #[test]
    fn rejects_bad_batches() {
        let good = batch(2, 10, 0);
        let corrupt = |buf: &[u8]| matches!(validate(buf, 1 << 20), Err(BatchError::Corrupt(_)));

        assert!(corrupt(&[]));
        assert!(corrupt(&good[..40]), "short header");
        assert!(corrupt(&good[..good.len() - 1]), "truncated batch");
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 10]);
        assert!(corrupt(&trailing), "trailing garbage");

        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(corrupt(&bad_crc), "crc");

        let mut magic = good.clone();
        magic[16] = 1;
        assert!(corrupt(&magic), "magic");

        let mut negative_len = good.clone();
        negative_len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(corrupt(&negative_len), "negative length");

        let mut huge_len = good.clone();
        huge_len[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(corrupt(&huge_len), "length beyond buffer");

        let mut counts = good.clone();
        counts[57..61].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut counts);
        assert!(corrupt(&counts), "records count");

        let mut zero = good.clone();
        zero[57..61].copy_from_slice(&0i32.to_be_bytes());
        zero[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut zero);
        assert!(corrupt(&zero), "zero records");
    }

    #[test]
    fn message_too_large() {
        let b = batch(1, 100, 0);
        match validate(&b, 100) {
            Err(BatchError::TooLarge { size, max }) => {
                assert_eq!(size, b.len());
                assert_eq!(max, 100);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(validate(&b, b.len() as u32).is_ok());
    }

    #[test]
    fn log_append_time_stamps_good_batches_only() {
        let one = batch(3, 10, 1_000);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let last = two.len() - 1;
        two[last] ^= 1; // the second batch's CRC no longer matches
        let stamped = stamp_log_append_time(&two, 42_000);
        let first = BatchHeader::parse(&stamped).unwrap();
        assert!(first.is_log_append_time());
        assert_eq!(first.max_timestamp, 42_000);
        assert!(crc_matches(&stamped[..first.size()], first.crc));
        assert_eq!(&stamped[first.size()..], &two[first.size()..], "the corrupt batch is left alone");
        assert!(validate(&stamped[..first.size()], u32::MAX).is_ok());
    }

    #[test]
    fn base_offset_is_outside_the_crc() {
        let mut b = batch(1, 3, 0);
        b[0..8].copy_from_slice(&12345i64.to_be_bytes());
        assert!(validate(&b, 1 << 20).is_ok());
    }

    #[test]
    fn an_end_txn_marker_is_the_control_batch_kafka_writes() {
        let b = end_txn_marker(77, 3, true, 9, 1_700_000_000_123);
        let valid = validate(&b, u32::MAX).expect("a valid batch with a matching CRC");
        assert_eq!(valid.len(), 1);
        let h = valid[0].header;
        assert_eq!(h.attributes, 0x30, "transactional | control, uncompressed, CreateTime");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 3, -1));
        assert_eq!((h.records_count, h.last_offset_delta), (1, 0));
        assert_eq!((h.base_timestamp, h.max_timestamp), (1_700_000_000_123, 1_700_000_000_123));
        assert_eq!((h.base_offset, h.partition_leader_epoch), (0, -1));
        // One record: length 16, attributes 0, timestampDelta 0, offsetDelta 0, a key of 4 bytes
        // (version 0, type 1 = COMMIT), a value of 6 (version 0, coordinator epoch 9), no headers.
        let record = [0x20, 0, 0, 0, 0x08, 0, 0, 0, 1, 0x0c, 0, 0, 0, 0, 0, 9, 0];
        assert_eq!(&b[HEADER_LEN..], &record);
        assert_eq!(h.size(), HEADER_LEN + record.len());
        assert_eq!(control_type(&b), Some(ControlType::Commit));
        let abort = end_txn_marker(77, 3, false, 0, 5);
        assert_eq!(control_type(&abort), Some(ControlType::Abort));
        assert_eq!(abort[HEADER_LEN + 8], 0, "type 0 = ABORT");
    }

    #[test]
    fn control_type_reads_only_control_batches() {
        let data = batch(1, 4, 0);
        assert_eq!(control_type(&data), None, "not a control batch");
        let mut marker = end_txn_marker(1, 0, true, 0, 0);
        assert_eq!(control_type(&marker[..HEADER_LEN + 5]), None, "a truncated record");
        // Another control type (2: LEADER_CHANGE) is neither marker.
        marker[HEADER_LEN + 8] = 2;
        fix_crc(&mut marker);
        assert_eq!(control_type(&marker), None);
        // A negative key version is invalid, as in Kafka.
        let mut marker = end_txn_marker(1, 0, true, 0, 0);
        marker[HEADER_LEN + 5] = 0xff;
        assert_eq!(control_type(&marker), None);
    }

    #[test]
    fn record_stamps_of_an_uncompressed_batch() {
        let values: [&[u8]; 3] = [b"a", b"bb", b"ccc"];
        let mut b = batch_with_timestamps(&values, 1000, &[5, -3, 300]);
        b[0..8].copy_from_slice(&40i64.to_be_bytes());
        let stamps: Vec<_> = record_stamps(&b).unwrap().unwrap().map(Result::unwrap).collect();
        assert_eq!(
            stamps,
            vec![
                RecordStamp { offset: 40, timestamp: 1005 },
                RecordStamp { offset: 41, timestamp: 997 },
                RecordStamp { offset: 42, timestamp: 1300 },
            ]
        );
        let mut compressed = b.clone();
        compressed[22] |= 1;
        assert!(record_stamps(&compressed).unwrap().is_none());
        let mut garbage = b.clone();
        garbage.truncate(70);
        garbage[61] = 0xff;
        assert!(record_stamps(&garbage).unwrap().unwrap().any(|r| r.is_err()));
    }
}
