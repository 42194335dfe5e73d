//! The records inside Kafka v2 record batches: decode them (every codec), encode them back into
//! a batch (every codec), and Kafka's default partitioner hash.
//!
//! The host stores batches as they arrive and otherwise reads only their headers
//! ([`super::batch`]). Tenant message transforms are the one place it looks inside: on produce it
//! decodes a batch, hands the records to a Wasm guest and re-encodes what comes back with the
//! batch's codec. The input comes from clients, so it is untrusted: every length is checked
//! against the bytes actually present before anything is allocated from it, and decompression
//! stops at a caller-given bound (decompression bombs).
//!
//! Codecs, as Kafka clients write them: gzip is an RFC 1952 stream (several members allowed);
//! snappy is the xerial "snappy-java" framing from Java clients or raw snappy from librdkafka
//! (we write the xerial framing, which both read); lz4 is the LZ4 frame format; zstd is a
//! standard zstd frame.

use std::io::{Read, Write};

use bytes::Bytes;

use super::batch::{
    BatchHeader, CRC_START, DELETE_HORIZON, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, TRANSACTIONAL, read_uvarint,
};

const NONE: u8 = 0;
const GZIP: u8 = 1;
const SNAPPY: u8 = 2;
const LZ4: u8 = 3;
const ZSTD: u8 = 4;
const LOG_APPEND_TIME: i16 = 0x08;
/// The smallest possible record: a length and six one-byte fields. Bounds pre-allocation.
const MIN_RECORD_LEN: usize = 7;
/// snappy-java's stream header: magic, then version 1 and compatible version 1 (both i32 BE).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size; its readers accept any block size.
const XERIAL_BLOCK: usize = 32 * 1024;

#[derive(thiserror::Error, Debug)]
pub enum RecordsError {
    #[error("malformed record batch: {0}")]
    Malformed(String),
    #[error("cannot decompress the records: {0}")]
    Decompress(String),
    #[error("cannot compress the records: {0}")]
    Compress(String),
    /// Decompressed records over the caller's bound (`size` is how far decoding got), or a field
    /// too large for the format's i32 sizes when encoding.
    #[error("{size} bytes or more exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(u8),
    /// [`encode`] was asked for a batch Kafka cannot represent.
    #[error("cannot encode the batch: {0}")]
    InvalidEncode(String),
}

/// A record header. Kafka header keys are strings; a key that is not UTF-8 is decoded lossily
/// (invalid sequences become U+FFFD), much like the Java client's `new String(bytes, UTF_8)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In batch order; duplicate keys are kept.
    pub headers: Vec<Header>,
    /// Absolute, in ms.
    pub timestamp: i64,
    /// As found in the batch; [`encode`] renumbers records 0..n instead.
    pub offset_delta: i32,
}

#[derive(Clone, Debug)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
}

/// Decode one whole v2 batch (`batch` = exactly one batch, header included; the caller has
/// already validated CRC and length). Decompresses with any codec and refuses to hold more than
/// `max_decompressed` bytes of records (TooLarge), compressed or not. Record timestamps are
/// absolute; for LogAppendTime batches each is the header's max_timestamp. Records keep their
/// offset deltas. A batch with recordsCount 0 and no records section is empty whatever its
/// codec, as Kafka writes empty batches.
pub fn decode(batch: &[u8], max_decompressed: usize) -> Result<DecodedBatch, RecordsError> {
    let header = BatchHeader::parse(batch).map_err(|e| malformed(e.to_string()))?;
    if header.size() != batch.len() {
        return Err(malformed(format!("batchLength says {} bytes, got {}", header.size(), batch.len())));
    }
    let codec = header.compression();
    if codec > ZSTD {
        return Err(RecordsError::UnsupportedCodec(codec));
    }
    let count = usize::try_from(header.records_count)
        .map_err(|_| malformed(format!("negative record count {}", header.records_count)))?;
    let payload = &batch[HEADER_LEN..];
    if count == 0 && payload.is_empty() {
        return Ok(DecodedBatch { header, records: Vec::new() });
    }
    let data = decompress(codec, payload, max_decompressed)?;
    let records = parse_records(&header, data, count)?;
    Ok(DecodedBatch { header, records })
}

/// Whether every record of one whole batch (`batch`, header included, already validated) has a
/// key: a compacted topic refuses a record without one, as Kafka does, because the cleaner
/// could never tell what it supersedes. An uncompressed batch is walked in place; a compressed
/// one is decompressed up to `max_decompressed` bytes (TooLarge beyond).
pub fn every_record_keyed(batch: &Bytes, max_decompressed: usize) -> Result<bool, RecordsError> {
    let header = BatchHeader::parse(batch).map_err(|e| malformed(e.to_string()))?;
    if header.size() != batch.len() {
        return Err(malformed(format!("batchLength says {} bytes, got {}", header.size(), batch.len())));
    }
    let count = usize::try_from(header.records_count)
        .map_err(|_| malformed(format!("negative record count {}", header.records_count)))?;
    if count == 0 {
        return Ok(true);
    }
    let codec = header.compression();
    let data = if codec == NONE {
        batch.slice(HEADER_LEN..)
    } else {
        decompress(codec, &batch[HEADER_LEN..], max_decompressed)?
    };
    Ok(parse_records(&header, data, count)?.iter().all(|r| r.key.is_some()))
}

fn malformed(message: impl Into<String>) -> RecordsError {
    RecordsError::Malformed(message.into())
}

fn decompress_error(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Decompress(e.to_string())
}

fn check_size(size: usize, max: usize) -> Result<(), RecordsError> {
    if size > max { Err(RecordsError::TooLarge { size, max }) } else { Ok(()) }
}

fn decompress(codec: u8, payload: &[u8], max: usize) -> Result<Bytes, RecordsError> {
    let out = match codec {
        NONE => {
            check_size(payload.len(), max)?;
            return Ok(Bytes::copy_from_slice(payload));
        }
        GZIP => read_bounded(flate2::read::MultiGzDecoder::new(payload), max)?,
        SNAPPY => snappy_decompress(payload, max)?,
        LZ4 => read_bounded(lz4_flex::frame::FrameDecoder::new(payload), max)?,
        // The frame's claimed content size is never used to allocate: the streaming decoder
        // fills our bounded buffer, and libzstd's window (at most 128 MiB by default) is only
        // touched as far as it decodes.
        ZSTD => {
            read_bounded(zstd::stream::read::Decoder::with_buffer(payload).map_err(decompress_error)?, max)?
        }
        other => return Err(RecordsError::UnsupportedCodec(other)),
    };
    Ok(Bytes::from(out))
}

/// Read all of `reader`, but at most one byte past `max` (which is then TooLarge).
fn read_bounded(reader: impl Read, max: usize) -> Result<Vec<u8>, RecordsError> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    reader.take(limit).read_to_end(&mut out).map_err(decompress_error)?;
    check_size(out.len(), max)?;
    Ok(out)
}

/// Xerial-framed snappy when the payload starts with its magic, raw snappy otherwise (what
/// snappy-java's `SnappyInputStream` does too).
fn snappy_decompress(payload: &[u8], max: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if !payload.starts_with(XERIAL_MAGIC) {
        snappy_block(payload, &mut out, max)?;
        return Ok(out);
    }
    let mut rest = payload.get(XERIAL_HEADER_LEN..).ok_or_else(|| decompress_error("short xerial header"))?;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail.get(..len).ok_or_else(|| decompress_error("truncated xerial snappy block"))?;
        snappy_block(block, &mut out, max)?;
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(decompress_error("truncated xerial snappy block length"));
    }
    Ok(out)
}

/// Append one raw snappy block to `out`, checking its claimed length against `max` first.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), RecordsError> {
    let len = snap::raw::decompress_len(block).map_err(decompress_error)?;
    let start = out.len();
    check_size(start.saturating_add(len), max)?;
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(decompress_error)?;
    out.truncate(start + written);
    Ok(())
}

/// A read position in a records section; records and their fields are zero-copy slices of it.
struct Cursor {
    data: Bytes,
    pos: usize,
}

impl Cursor {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn uvarint(&mut self, max_bytes: usize) -> Option<u64> {
        let mut rest = &self.data[self.pos..];
        let value = read_uvarint(&mut rest, max_bytes)?;
        self.pos = self.data.len() - rest.len();
        Some(value)
    }

    /// A zigzag varint (Kafka `varint`).
    fn varint(&mut self) -> Option<i32> {
        let raw = u32::try_from(self.uvarint(5)?).ok()?;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag varlong (Kafka `varlong`).
    fn varlong(&mut self) -> Option<i64> {
        let raw = self.uvarint(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn bytes(&mut self, len: usize) -> Option<Bytes> {
        if len > self.remaining() {
            return None;
        }
        self.pos += len;
        Some(self.data.slice(self.pos - len..self.pos))
    }

    /// A varint length (-1 for null) and that many bytes.
    fn nullable(&mut self) -> Option<Option<Bytes>> {
        match self.varint()? {
            -1 => Some(None),
            len => Some(Some(self.bytes(usize::try_from(len).ok()?)?)),
        }
    }
}

fn parse_records(header: &BatchHeader, data: Bytes, count: usize) -> Result<Vec<Record>, RecordsError> {
    let mut cursor = Cursor { data, pos: 0 };
    let mut records = Vec::with_capacity(count.min(cursor.remaining() / MIN_RECORD_LEN));
    for i in 0..count {
        let bad = |what: &str| malformed(format!("record {i} of {count}: {what}"));
        let len = cursor.varint().ok_or_else(|| bad("bad length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        let data = cursor.bytes(len).ok_or_else(|| bad("truncated"))?;
        let mut body = Cursor { data, pos: 0 };
        body.bytes(1).ok_or_else(|| bad("no attributes"))?;
        let timestamp_delta = body.varlong().ok_or_else(|| bad("bad timestamp delta"))?;
        let offset_delta = body.varint().ok_or_else(|| bad("bad offset delta"))?;
        let key = body.nullable().ok_or_else(|| bad("bad key"))?;
        let value = body.nullable().ok_or_else(|| bad("bad value"))?;
        let header_count = body.varint().ok_or_else(|| bad("bad header count"))?;
        let header_count = usize::try_from(header_count).map_err(|_| bad("negative header count"))?;
        let mut headers = Vec::with_capacity(header_count.min(body.remaining() / 2));
        for _ in 0..header_count {
            let key = match body.nullable() {
                Some(Some(key)) => String::from_utf8_lossy(&key).into_owned(),
                _ => return Err(bad("bad header key")),
            };
            let value = body.nullable().ok_or_else(|| bad("bad header value"))?;
            headers.push(Header { key, value });
        }
        if body.remaining() != 0 {
            return Err(bad(&format!("{} bytes left over", body.remaining())));
        }
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        records.push(Record { key, value, headers, timestamp, offset_delta });
    }
    if cursor.remaining() != 0 {
        return Err(malformed(format!("{} bytes after the last of {count} records", cursor.remaining())));
    }
    Ok(records)
}

#[derive(Clone, Debug)]
pub struct EncodeSpec {
    /// 0..=4, Kafka's codes: none, gzip, snappy, lz4, zstd.
    pub compression: u8,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Keep the timestamp-type attribute bit.
    pub log_append_time: bool,
    /// lastOffsetDelta to write. None: records.len() - 1 (records renumbered 0..n). Some(d): d
    /// must be >= records.len() - 1, records are still numbered 0..n (the batch then spans d+1
    /// offsets, like a Kafka batch after compaction); with zero records and Some(d), an empty
    /// batch (recordsCount 0) that still spans d+1 offsets — Kafka writes these to keep
    /// idempotent producer state.
    pub offset_span: Option<i32>,
    /// Used for an empty batch's base and max timestamp (no records to take them from).
    pub empty_timestamp: i64,
    /// Write each record's own `offset_delta` instead of its index: they must rise strictly
    /// from 0 or more and stay within the span (records kept from a batch whose others were
    /// dropped keep their offsets, as in Kafka after compaction).
    pub keep_offset_deltas: bool,
}

impl EncodeSpec {
    /// A batch without a producer id (no idempotence), CreateTime, its records numbered from 0.
    pub fn plain(compression: u8, empty_timestamp: i64) -> Self {
        EncodeSpec {
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            log_append_time: false,
            offset_span: None,
            empty_timestamp,
            keep_offset_deltas: false,
        }
    }
}

impl EncodeSpec {
    /// The spec that re-encodes a batch like the one `header` describes (its producer fields,
    /// timestamp type and offset span, each record keeping its offset delta), in `compression`.
    pub fn like(header: &BatchHeader, compression: u8) -> Self {
        EncodeSpec {
            compression,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            log_append_time: header.is_log_append_time(),
            offset_span: Some(header.last_offset_delta),
            empty_timestamp: header.max_timestamp,
            keep_offset_deltas: true,
        }
    }
}

/// Whether `records` can keep their own offset deltas in a batch whose lastOffsetDelta is
/// `last_offset_delta`: they rise strictly, from 0 or more, and stay within it.
pub fn offset_deltas_fit(records: &[Record], last_offset_delta: i32) -> bool {
    records.windows(2).all(|w| w[0].offset_delta < w[1].offset_delta)
        && records.first().is_none_or(|r| r.offset_delta >= 0)
        && records.last().is_none_or(|r| r.offset_delta <= last_offset_delta)
}

/// Encode `records` as one v2 batch with base offset 0 and partitionLeaderEpoch -1, CRC-32C
/// filled in. baseTimestamp = the first record's timestamp, maxTimestamp = the max; record
/// timestampDelta relative to baseTimestamp; offsetDelta = index in `records` (or, with
/// `keep_offset_deltas`, each record's own). Attributes: codec | (log_append_time? 0x08); never transactional or
/// control. An empty batch has no records section and codec none, as Kafka writes them. Errors
/// if records is empty and offset_span is None, if offset_span < len-1, or if anything exceeds
/// the format's i32 sizes.
pub fn encode(records: &[Record], spec: &EncodeSpec) -> Result<Vec<u8>, RecordsError> {
    encode_batch(records, spec, None, false)
}

/// [`encode`] for the log cleaner: with `delete_horizon`, the batch carries it as Kafka's v2
/// batches do (KIP-534): attribute bit 0x40 set and baseTimestamp = the horizon, each record's
/// timestampDelta relative to it (so record timestamps read back unchanged; deltas may be
/// negative). Without, exactly [`encode`].
pub fn encode_with_delete_horizon(
    records: &[Record],
    spec: &EncodeSpec,
    delete_horizon: Option<i64>,
) -> Result<Vec<u8>, RecordsError> {
    encode_batch(records, spec, delete_horizon, false)
}

/// [`encode_with_delete_horizon`] that keeps a stored batch's kind: with `transactional`, the
/// batch is a transaction's (attribute 0x10 set), as the one it replaces was (the log cleaner
/// rewriting a transactional batch, the log re-encoding one in the topic's codec). Never a
/// control batch.
pub fn encode_rewrite(
    records: &[Record],
    spec: &EncodeSpec,
    delete_horizon: Option<i64>,
    transactional: bool,
) -> Result<Vec<u8>, RecordsError> {
    encode_batch(records, spec, delete_horizon, transactional)
}

fn encode_batch(
    records: &[Record],
    spec: &EncodeSpec,
    delete_horizon: Option<i64>,
    transactional: bool,
) -> Result<Vec<u8>, RecordsError> {
    if spec.compression > ZSTD {
        return Err(RecordsError::UnsupportedCodec(spec.compression));
    }
    let count = len_i32(records.len())?;
    let last_offset_delta = match spec.offset_span {
        None if records.is_empty() => {
            return Err(RecordsError::InvalidEncode("an empty batch needs an offset span".into()));
        }
        None => count - 1,
        Some(span) if span < count - 1 || span < 0 => {
            return Err(RecordsError::InvalidEncode(format!(
                "lastOffsetDelta {span} does not cover {count} records"
            )));
        }
        Some(span) => span,
    };
    if spec.keep_offset_deltas && !offset_deltas_fit(records, last_offset_delta) {
        return Err(RecordsError::InvalidEncode(format!(
            "offset deltas must rise within 0..={last_offset_delta} to be kept"
        )));
    }
    let base_timestamp =
        delete_horizon.unwrap_or_else(|| records.first().map_or(spec.empty_timestamp, |r| r.timestamp));
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(spec.empty_timestamp);

    let mut body = Vec::new();
    let mut record = Vec::new();
    for (i, r) in records.iter().enumerate() {
        record.clear();
        record.push(0); // attributes, unused
        put_varint(&mut record, r.timestamp.wrapping_sub(base_timestamp));
        put_varint(&mut record, if spec.keep_offset_deltas { r.offset_delta.into() } else { i as i64 });
        put_nullable(&mut record, r.key.as_deref())?;
        put_nullable(&mut record, r.value.as_deref())?;
        put_varint(&mut record, len_i32(r.headers.len())?.into());
        for h in &r.headers {
            put_nullable(&mut record, Some(h.key.as_bytes()))?;
            put_nullable(&mut record, h.value.as_deref())?;
        }
        put_varint(&mut body, len_i32(record.len())?.into());
        body.extend_from_slice(&record);
    }
    let codec = if records.is_empty() { NONE } else { spec.compression };
    let payload = compress(codec, body)?;

    let batch_length = len_i32(HEADER_LEN - LOG_OVERHEAD + payload.len())?;
    let attributes = i16::from(codec)
        | if spec.log_append_time { LOG_APPEND_TIME } else { 0 }
        | if delete_horizon.is_some() { DELETE_HORIZON } else { 0 }
        | if transactional { TRANSACTIONAL } else { 0 };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&spec.producer_id.to_be_bytes());
    out.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    out.extend_from_slice(&spec.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[CRC_START - 4..CRC_START].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn len_i32(len: usize) -> Result<i32, RecordsError> {
    i32::try_from(len).map_err(|_| RecordsError::TooLarge { size: len, max: i32::MAX as usize })
}

/// A zigzag varint; Kafka's varint and varlong encode an i32 the same way.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), RecordsError> {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, len_i32(bytes.len())?.into());
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

/// Compress a records section the way Kafka's Java client does: gzip at the default level,
/// xerial-framed snappy in 32 KiB blocks, an LZ4 frame of independent 64 KiB blocks without
/// checksums (Kafka's own LZ4 stream ignores content checksums), zstd at level 3.
fn compress(codec: u8, data: Vec<u8>) -> Result<Vec<u8>, RecordsError> {
    let io_error = |e: std::io::Error| RecordsError::Compress(e.to_string());
    match codec {
        GZIP => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&data).map_err(io_error)?;
            encoder.finish().map_err(io_error)
        }
        SNAPPY => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            let mut block = vec![0; snap::raw::max_compress_len(XERIAL_BLOCK)];
            for chunk in data.chunks(XERIAL_BLOCK) {
                let len =
                    encoder.compress(chunk, &mut block).map_err(|e| RecordsError::Compress(e.to_string()))?;
                // At most max_compress_len(32 KiB), well within a u32.
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.extend_from_slice(&block[..len]);
            }
            Ok(out)
        }
        LZ4 => {
            use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
            let info = FrameInfo::new().block_size(BlockSize::Max64KB).block_mode(BlockMode::Independent);
            let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(&data).map_err(io_error)?;
            encoder.finish().map_err(|e| RecordsError::Compress(e.to_string()))
        }
        ZSTD => zstd::bulk::compress(&data, zstd::DEFAULT_COMPRESSION_LEVEL).map_err(io_error),
        _ => Ok(data),
    }
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed 0x9747b28c. Java ints
/// wrap, hence the wrapping arithmetic and unsigned shifts (`>>>`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's default partitioner for a keyed record: toPositive(murmur2(key)) % partitions
/// (toPositive = n & 0x7fffffff), so keyed records land where a Java producer would put them.
/// `partitions` must be positive; 0 is returned otherwise.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::super::batch::crc_matches;
    use super::*;

    fn spec(compression: u8) -> EncodeSpec {
        EncodeSpec {
            compression,
            producer_id: 4242,
            producer_epoch: 3,
            base_sequence: 100,
            log_append_time: false,
            offset_span: None,
            empty_timestamp: 0,
            keep_offset_deltas: false,
        }
    }

    fn header(key: &str, value: Option<&str>) -> Header {
        Header { key: key.into(), value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())) }
    }

    fn record(
        key: Option<&str>,
        value: Option<&str>,
        headers: Vec<Header>,
        timestamp: i64,
        offset_delta: i32,
    ) -> Record {
        let bytes = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        Record { key: key.map(bytes), value: value.map(bytes), headers, timestamp, offset_delta }
    }

    /// Varied records: null keys, tombstones, empty values, duplicate header keys, null header
    /// values, timestamps before the first record's; ~85 KiB for 300, so several codec blocks.
    fn sample(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
                value: match i % 7 {
                    3 => None,
                    5 => Some(Bytes::new()),
                    _ => Some(Bytes::from(format!("value {i} ").repeat(i % 80))),
                },
                headers: match i % 4 {
                    0 => vec![],
                    1 => vec![header("dup", Some("1")), header("dup", Some("2")), header("dup", None)],
                    2 => vec![header("null", None), header("ü", Some(""))],
                    _ => vec![header("trace", Some("abc"))],
                },
                timestamp: 1_700_000_000_000 + (i as i64 * 7919 % 1000) - 500,
                offset_delta: 99, // ignored by encode
            })
            .collect()
    }

    fn renumbered(mut records: Vec<Record>) -> Vec<Record> {
        for (i, r) in records.iter_mut().enumerate() {
            r.offset_delta = i as i32;
        }
        records
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// A batch holding `payload` as its records section, with the given count and attributes.
    fn raw_batch(attributes: i16, count: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = encode(&[], &EncodeSpec { offset_span: Some(0), ..spec(0) }).unwrap();
        b.extend_from_slice(payload);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut b);
        b
    }

    #[test]
    fn a_rewrite_keeps_the_transactional_attribute() {
        let records = sample(3);
        let plain = encode_with_delete_horizon(&records, &spec(0), Some(5)).unwrap();
        let txn = encode_rewrite(&records, &spec(0), Some(5), true).unwrap();
        let (p, t) = (BatchHeader::parse(&plain).unwrap(), BatchHeader::parse(&txn).unwrap());
        assert!(!p.is_transactional() && t.is_transactional() && !t.is_control());
        assert_eq!(t.attributes, p.attributes | 0x10);
        assert!(crc_matches(&txn, t.crc));
        assert_eq!(decode(&txn, usize::MAX).unwrap().records.len(), 3);
        assert_eq!(encode_rewrite(&records, &spec(0), Some(5), false).unwrap(), plain);
    }

    #[test]
    fn round_trips_every_codec() {
        let records = sample(300);
        for codec in 0..=4u8 {
            let bytes = encode(&records, &spec(codec)).unwrap();
            let h = BatchHeader::parse(&bytes).unwrap();
            assert_eq!(h.size(), bytes.len());
            assert!(crc_matches(&bytes, h.crc), "codec {codec}");
            assert_eq!((h.base_offset, h.partition_leader_epoch, h.attributes), (0, -1, i16::from(codec)));
            assert_eq!((h.records_count, h.last_offset_delta), (300, 299));
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (4242, 3, 100));
            assert_eq!(h.base_timestamp, records[0].timestamp);
            assert_eq!(h.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
            let decoded = decode(&bytes, 1 << 20).unwrap();
            assert_eq!(decoded.header, h);
            assert_eq!(decoded.records, renumbered(records.clone()), "codec {codec}");
        }
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let records = sample(10);
        let bytes = encode(&records, &EncodeSpec { log_append_time: true, ..spec(4) }).unwrap();
        let decoded = decode(&bytes, 1 << 20).unwrap();
        assert_eq!(decoded.header.attributes, 4 | 0x08);
        let max = records.iter().map(|r| r.timestamp).max().unwrap();
        assert!(decoded.records.iter().all(|r| r.timestamp == max));
    }

    #[test]
    fn offset_span_and_empty_batches() {
        let two = &sample(2);
        let bytes = encode(two, &EncodeSpec { offset_span: Some(4), ..spec(1) }).unwrap();
        let decoded = decode(&bytes, 1 << 20).unwrap();
        assert_eq!((decoded.header.records_count, decoded.header.last_offset_delta), (2, 4));
        assert_eq!(decoded.records, renumbered(two.clone()));

        let empty = EncodeSpec { offset_span: Some(2), empty_timestamp: 1234, ..spec(3) };
        let bytes = encode(&[], &empty).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN);
        let decoded = decode(&bytes, 1 << 20).unwrap();
        let h = decoded.header;
        assert!(crc_matches(&bytes, h.crc));
        assert_eq!((h.records_count, h.last_offset_delta, h.compression()), (0, 2, 0));
        assert_eq!((h.base_timestamp, h.max_timestamp, h.producer_id), (1234, 1234, 4242));
        assert!(decoded.records.is_empty());

        let invalid = |r: Result<Vec<u8>, RecordsError>| matches!(r, Err(RecordsError::InvalidEncode(_)));
        assert!(invalid(encode(&[], &spec(0))));
        assert!(invalid(encode(two, &EncodeSpec { offset_span: Some(0), ..spec(0) })));
        assert!(invalid(encode(&[], &EncodeSpec { offset_span: Some(-1), ..spec(0) })));
        assert!(matches!(encode(two, &spec(5)), Err(RecordsError::UnsupportedCodec(5))));

        // Kept records keep their offsets within the span; deltas that do not rise are refused.
        let mut kept = sample(2);
        kept[0].offset_delta = 1;
        kept[1].offset_delta = 3;
        let keep = EncodeSpec { offset_span: Some(4), keep_offset_deltas: true, ..spec(2) };
        let decoded = decode(&encode(&kept, &keep).unwrap(), 1 << 20).unwrap();
        assert_eq!(decoded.records.iter().map(|r| r.offset_delta).collect::<Vec<_>>(), [1, 3]);
        kept[1].offset_delta = 1;
        assert!(invalid(encode(&kept, &keep)));
        kept[1].offset_delta = 5;
        assert!(invalid(encode(&kept, &keep)));
    }

    #[test]
    fn a_delete_horizon_keeps_record_timestamps() {
        let records = sample(20);
        for codec in 0..=4u8 {
            let keep = EncodeSpec { offset_span: Some(30), keep_offset_deltas: true, ..spec(codec) };
            let kept: Vec<Record> = renumbered(records.clone())
                .into_iter()
                .map(|r| Record { offset_delta: r.offset_delta + 1, ..r })
                .collect();
            let horizon = 1_800_000_000_000;
            let bytes = encode_with_delete_horizon(&kept, &keep, Some(horizon)).unwrap();
            let h = BatchHeader::parse(&bytes).unwrap();
            assert!(crc_matches(&bytes, h.crc));
            assert_eq!(
                (h.delete_horizon(), h.base_timestamp, h.compression()),
                (Some(horizon), horizon, codec)
            );
            assert_eq!(h.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
            assert_eq!((h.records_count, h.last_offset_delta), (20, 30));
            let decoded = decode(&bytes, 1 << 20).unwrap();
            assert_eq!(decoded.records, kept, "codec {codec}");
            let plain = encode_with_delete_horizon(&kept, &keep, None).unwrap();
            assert_eq!(plain, encode(&kept, &keep).unwrap());
            assert_eq!(BatchHeader::parse(&plain).unwrap().delete_horizon(), None);
        }
    }

    #[test]
    fn every_record_keyed_in_every_codec() {
        let keyed: Vec<Record> =
            sample(30).into_iter().map(|r| Record { key: Some(Bytes::from_static(b"k")), ..r }).collect();
        for codec in 0..=4u8 {
            let yes = Bytes::from(encode(&keyed, &spec(codec)).unwrap());
            assert!(every_record_keyed(&yes, 1 << 20).unwrap(), "codec {codec}");
            let no = Bytes::from(encode(&sample(30), &spec(codec)).unwrap());
            assert!(!every_record_keyed(&no, 1 << 20).unwrap(), "codec {codec}");
        }
        let big = Bytes::from(encode(&keyed, &spec(4)).unwrap());
        assert!(matches!(every_record_keyed(&big, 100), Err(RecordsError::TooLarge { .. })));
        let empty = Bytes::from(encode(&[], &EncodeSpec { offset_span: Some(0), ..spec(0) }).unwrap());
        assert!(every_record_keyed(&empty, 1 << 20).unwrap());
    }

    // Golden batches holding [`golden_records`], written by independent encoders. From the
    // `kafka-protocol` crate 0.18 (gzip via flate2, snappy xerial-framed, lz4 via liblz4 with a
    // content checksum, zstd via libzstd streaming, so without a content size): producer 4242,
    // epoch 3, base sequence 100.
    const KP_NONE: &str = "\
        000000000000000000000073ffffffff02a0cfb1980000000000020000018bcfe568000000018bcfe568fa0000000000\
        0010920003000000640000000328000000046b310a68656c6c6f04026102310262013000f403020122776f726c642077\
        6f726c6420776f726c64002600c80104046b3301020a74726163650678797a";
    const KP_GZIP: &str = "\
        00000000000000000000008affffffff029b63cf180001000000020000018bcfe568000000018bcfe568fa0000000000\
        001092000300000064000000031f8b08000000000000ff014200bdff28000000046b310a68656c6c6f04026102310262\
        013000f403020122776f726c6420776f726c6420776f726c64002600c80104046b3301020a74726163650678797ace1f\
        dd9f42000000";
    const KP_SNAPPY: &str = "\
        000000000000000000000082ffffffff027e4352fd0002000000020000018bcfe568000000018bcfe568fa0000000000\
        0010920003000000640000000382534e415050590000000001000000010000003d428828000000046b310a68656c6c6f\
        04026102310262013000f403020122776f726c642077190650002600c80104046b3301020a74726163650678797a";
    const KP_LZ4: &str = "\
        000000000000000000000085ffffffff0242bf2feb0003000000020000018bcfe568000000018bcfe568fa0000000000\
        0010920003000000640000000304224d187440bd3d000000f71328000000046b310a68656c6c6f040261023102620130\
        00f403020122776f726c64200600f006002600c80104046b3301020a74726163650678797a19769e3600000000b3c745\
        f2";
    const KP_ZSTD: &str = "\
        000000000000000000000078ffffffff0278f2a7770004000000020000018bcfe568000000018bcfe568fa0000000000\
        0010920003000000640000000328b52ffd0058f50100740328000000046b310a68656c6c6f04026102310262013000f4\
        03020122776f726c6420002600c80104046b3301020a74726163650678797a01008a519e";
    // From librdkafka 2.12.1 (rdkafka-sys 4.10, through its mock cluster), not idempotent: raw
    // snappy, no xerial framing. (librdkafka sent its gzip, lz4 and zstd batches of these
    // records uncompressed: it drops compression that does not make a batch smaller.)
    const RDKAFKA_RAW_SNAPPY: &str = "\
        00000000000000000000006e00000000020aef54830002000000020000018bcfe568000000018bcfe568faffffffffff\
        ffffffffffffffffff00000003428828000000046b310a68656c6c6f04026102310262013000f403020122776f726c64\
        2077190650002600c80104046b3301020a74726163650678797a";

    fn golden_records() -> Vec<Record> {
        let ts = 1_700_000_000_000;
        vec![
            record(Some("k1"), Some("hello"), vec![header("a", Some("1")), header("b", None)], ts, 0),
            record(None, Some("world world world"), vec![], ts + 250, 1),
            record(Some("k3"), None, vec![header("trace", Some("xyz"))], ts + 100, 2),
        ]
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn decodes_batches_from_independent_encoders() {
        let kp = (4242, 3, 100);
        let golden =
            [(0, kp, KP_NONE), (1, kp, KP_GZIP), (2, kp, KP_SNAPPY), (3, kp, KP_LZ4), (4, kp, KP_ZSTD)];
        for (codec, producer, hex) in golden.into_iter().chain([(2, (-1, -1, -1), RDKAFKA_RAW_SNAPPY)]) {
            let bytes = unhex(hex);
            let decoded = decode(&bytes, 1 << 20).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
            let h = decoded.header;
            assert!(crc_matches(&bytes, h.crc));
            assert_eq!((h.compression(), h.records_count, h.last_offset_delta), (codec, 3, 2));
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), producer);
            assert_eq!(decoded.records, golden_records(), "codec {codec}");
        }
        // Uncompressed, our encoder writes the very same bytes.
        assert_eq!(encode(&golden_records(), &spec(0)).unwrap(), unhex(KP_NONE));
    }

    #[test]
    fn malformed_batches() {
        let good = encode(&sample(3), &spec(0)).unwrap();
        let malformed = |b: &[u8]| matches!(decode(b, 1 << 20), Err(RecordsError::Malformed(_)));
        let payload = &good[HEADER_LEN..];
        assert!(!malformed(&raw_batch(0, 3, payload)));
        assert!(malformed(&raw_batch(0, 3, &payload[..payload.len() - 1])), "truncated record");
        assert!(malformed(&raw_batch(0, 4, payload)), "count too high");
        assert!(malformed(&raw_batch(0, 2, payload)), "count too low: trailing bytes");
        assert!(malformed(&raw_batch(0, -1, payload)), "negative count");
        assert!(malformed(&good[..good.len() - 1]), "shorter than batchLength");
        assert!(malformed(&good[..40]), "short header");
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(malformed(&trailing), "longer than batchLength");
        // Record of 7 bytes: attributes, ts 0, offset 0, key length -2.
        assert!(malformed(&raw_batch(0, 1, &[14, 0, 0, 0, 3, 1, 0, 0])), "negative key length");
        // A record whose length covers one byte more than its fields.
        assert!(malformed(&raw_batch(0, 1, &[14, 0, 0, 0, 1, 1, 0, 0])), "bytes left in record");
        assert!(matches!(decode(&raw_batch(1, 1, b"not gzip"), 1 << 20), Err(RecordsError::Decompress(_))));

        // A non-UTF-8 header key is decoded lossily.
        let record = [20, 0, 0, 0, 1, 1, 2, 4, 0xff, b'k', 1];
        let decoded = decode(&raw_batch(0, 1, &record), 1 << 20).unwrap();
        assert_eq!(decoded.records[0].headers, vec![Header { key: "\u{fffd}k".into(), value: None }]);
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let zeros = "\0".repeat(1 << 20);
        let bomb = vec![record(None, Some(&zeros), vec![], 0, 0)];
        for codec in 0..=4u8 {
            let bytes = encode(&bomb, &spec(codec)).unwrap();
            match decode(&bytes, 64 << 10) {
                Err(RecordsError::TooLarge { size, max }) => assert!(size > max && max == 64 << 10),
                other => panic!("codec {codec}: {other:?}"),
            }
            assert_eq!(decode(&bytes, 2 << 20).unwrap().records, bomb);
        }
        // Raw snappy claiming 4 GiB in five bytes: refused before allocating.
        let liar = raw_batch(2, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(decode(&liar, 1 << 20), Err(RecordsError::TooLarge { .. })));
    }

    #[test]
    fn unknown_codecs_are_unsupported() {
        let good = encode(&sample(2), &spec(0)).unwrap();
        for codec in 5..=7u8 {
            let bytes = raw_batch(i16::from(codec), 2, &good[HEADER_LEN..]);
            assert!(matches!(decode(&bytes, 1 << 20), Err(RecordsError::UnsupportedCodec(c)) if c == codec));
        }
    }

    #[test]
    fn mutated_batches_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        for codec in 0..=4u8 {
            let good = encode(&sample(12), &spec(codec)).unwrap();
            for len in HEADER_LEN..good.len() {
                let _ = decode(&raw_batch(i16::from(codec), 12, &good[HEADER_LEN..len]), 1 << 20);
            }
            for _ in 0..2000 {
                let mut b = good.clone();
                for _ in 0..1 + next() % 4 {
                    let at = 57 + next() % (b.len() - 57);
                    b[at] ^= 1 << (next() % 8);
                }
                let _ = decode(&b, 1 << 20);
            }
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
        // toPositive(-790332482) = 1357151166.
        assert_eq!(partition_for_key(b"foobar", 10), 1357151166 % 10);
        assert_eq!(partition_for_key(b"abc", 7), 479470107 % 7);
        assert_eq!(partition_for_key(b"abc", 0), 0);
    }
}
