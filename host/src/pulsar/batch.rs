//! The payload of a Pulsar message: compression, and batches of messages.
//!
//! A producer compresses the whole payload of a `SEND` with the codec in
//! `MessageMetadata.compression`, recording the size before compression in
//! `MessageMetadata.uncompressed_size`. Once decompressed, the payload of a batch (a message
//! whose metadata has `num_messages_in_batch`, even when it is 1) is that many entries of
//! `[size u32][SingleMessageMetadata][payload]`, `size` being the length of the encoded
//! `SingleMessageMetadata` and its `payload_size` the length of the payload. A message without
//! `num_messages_in_batch` is a single message: its payload is the message itself.
//!
//! Codecs, as Pulsar clients (Java, C++, Go) write them: LZ4 is a raw LZ4 block, with no size
//! prefix, so `uncompressed_size` is required to decode it; ZLIB is a zlib (RFC 1950) stream, not
//! gzip; ZSTD is a standard zstd frame; SNAPPY is raw (block) snappy. The Rust client (`pulsar`
//! crate, 6.x) writes the snappy *framing* format instead; [`decompress`] reads both, told
//! apart by the framing format's stream identifier, and [`compress`] writes raw snappy.
//!
//! The input comes from clients, so it is untrusted: every size is checked against the bytes
//! present before anything is allocated from it, and decompression stops at a caller-given
//! bound (decompression bombs).

use std::io::{Read, Write};

use bytes::{Buf, BufMut, Bytes};
use prost::Message;

use super::proto::{CompressionType, MessageMetadata, SingleMessageMetadata};

/// The stream identifier chunk that starts the snappy framing format.
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum BatchError {
    #[error("malformed batch: {0}")]
    Malformed(String),
    #[error("the message is not a batch (no num_messages_in_batch)")]
    NotBatched,
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(i32),
    #[error("cannot decompress the payload: {0}")]
    Decompress(String),
    #[error("cannot compress the payload: {0}")]
    Compress(String),
    /// The payload decompresses (or claims to) to more than the caller's bound; `size` is the
    /// claimed size, or how far decompression got.
    #[error("decompressed payload of {size} bytes or more exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// Whether a message's payload is a batch: Pulsar clients treat a message as one when
/// `num_messages_in_batch` is present, whatever its value.
pub fn is_batch(metadata: &MessageMetadata) -> bool {
    metadata.num_messages_in_batch.is_some()
}

/// The entries of a batch payload (already decompressed), `metadata.num_messages_in_batch` of
/// them. Bytes after the last entry are ignored, as Pulsar's clients do.
pub fn split_batch(
    metadata: &MessageMetadata,
    data: &Bytes,
) -> Result<Vec<(SingleMessageMetadata, Bytes)>, BatchError> {
    let count = metadata.num_messages_in_batch.ok_or(BatchError::NotBatched)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&count| count > 0)
        .ok_or_else(|| BatchError::Malformed(format!("num_messages_in_batch is {count}")))?;
    let mut rest = data.clone();
    // Each entry takes at least its 4-byte size: bound the allocation by the bytes present.
    let mut entries = Vec::with_capacity(count.min(rest.len() / 4));
    for index in 0..count {
        let malformed = |what: String| BatchError::Malformed(format!("entry {index} of {count}: {what}"));
        let size = take(&mut rest, 4).map_err(&malformed)?.get_u32();
        let single = take(&mut rest, size as usize).map_err(&malformed)?;
        let single = SingleMessageMetadata::decode(single)
            .map_err(|e| malformed(format!("invalid SingleMessageMetadata: {e}")))?;
        let payload_size = usize::try_from(single.payload_size)
            .map_err(|_| malformed(format!("payload_size is {}", single.payload_size)))?;
        let payload = take(&mut rest, payload_size).map_err(&malformed)?;
        entries.push((single, payload));
    }
    Ok(entries)
}

/// The payload of a batch of `messages` (before compression). Each entry's `payload_size` is
/// set from its payload, whatever the given metadata says. The message's `MessageMetadata` must
/// have `num_messages_in_batch: Some(messages.len())`.
pub fn build_batch(messages: &[(SingleMessageMetadata, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (single, payload) in messages {
        let payload_size = i32::try_from(payload.len()).expect("a Pulsar message is smaller than 2 GiB");
        let mut single = single.clone();
        single.payload_size = payload_size;
        let size = u32::try_from(single.encoded_len()).expect("metadata is smaller than 4 GiB");
        out.reserve(4 + size as usize + payload.len());
        out.put_u32(size);
        single.encode(&mut out).expect("a Vec grows as needed");
        out.extend_from_slice(payload);
    }
    out
}

/// The codec of a message's payload; an absent `compression` is [`CompressionType::None`].
pub fn compression(metadata: &MessageMetadata) -> Result<CompressionType, BatchError> {
    let value = metadata.compression.unwrap_or(CompressionType::None as i32);
    CompressionType::try_from(value).map_err(|_| BatchError::UnsupportedCompression(value))
}

/// The payload of a message, decompressed as `metadata` says, refusing to produce more than
/// `max` bytes. When `uncompressed_size` is present the result must have exactly that size (it
/// is required for LZ4).
pub fn decompress(metadata: &MessageMetadata, data: Bytes, max: usize) -> Result<Bytes, BatchError> {
    let kind = compression(metadata)?;
    if kind == CompressionType::None {
        return Ok(data);
    }
    let expected = metadata.uncompressed_size.map(|size| size as usize);
    if let Some(size) = expected.filter(|&size| size > max) {
        return Err(BatchError::TooLarge { size, max });
    }
    let decompress_err = |e: &dyn std::fmt::Display| BatchError::Decompress(format!("{kind:?}: {e}"));
    let out = match kind {
        CompressionType::None => unreachable!("returned above"),
        CompressionType::Lz4 => {
            let size = expected
                .ok_or_else(|| BatchError::Decompress("LZ4 payload without uncompressed_size".into()))?;
            let mut out = vec![0; size];
            let written =
                lz4_flex::block::decompress_into(&data, &mut out).map_err(|e| decompress_err(&e))?;
            out.truncate(written);
            out
        }
        CompressionType::Zlib => read_bounded(flate2::read::ZlibDecoder::new(&data[..]), expected, max)
            .map_err(|e| e.into_batch_error(&decompress_err))?,
        CompressionType::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&data[..]).map_err(|e| decompress_err(&e))?;
            read_bounded(decoder, expected, max).map_err(|e| e.into_batch_error(&decompress_err))?
        }
        CompressionType::Snappy if data.starts_with(SNAPPY_FRAMED_MAGIC) => {
            read_bounded(snap::read::FrameDecoder::new(&data[..]), expected, max)
                .map_err(|e| e.into_batch_error(&decompress_err))?
        }
        CompressionType::Snappy => {
            let size = snap::raw::decompress_len(&data).map_err(|e| decompress_err(&e))?;
            if size > max {
                return Err(BatchError::TooLarge { size, max });
            }
            snap::raw::Decoder::new().decompress_vec(&data).map_err(|e| decompress_err(&e))?
        }
    };
    match expected {
        Some(size) if size != out.len() => Err(BatchError::Decompress(format!(
            "{kind:?}: {} bytes decompressed, uncompressed_size says {size}",
            out.len()
        ))),
        _ => Ok(Bytes::from(out)),
    }
}

/// `data` compressed with `kind`, as Pulsar's Java client writes it (LZ4 as a raw block, zlib,
/// zstd, raw snappy). The caller sets `compression` and `uncompressed_size: Some(data.len())` in
/// the message's metadata.
pub fn compress(kind: CompressionType, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let compress_err = |e: &dyn std::fmt::Display| BatchError::Compress(format!("{kind:?}: {e}"));
    match kind {
        CompressionType::None => Ok(data.to_vec()),
        CompressionType::Lz4 => Ok(lz4_flex::block::compress(data)),
        CompressionType::Zlib => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(|e| compress_err(&e))?;
            encoder.finish().map_err(|e| compress_err(&e))
        }
        CompressionType::Zstd => {
            zstd::bulk::compress(data, zstd::DEFAULT_COMPRESSION_LEVEL).map_err(|e| compress_err(&e))
        }
        CompressionType::Snappy => snap::raw::Encoder::new().compress_vec(data).map_err(|e| compress_err(&e)),
    }
}

enum ReadError {
    TooLarge { size: usize, max: usize },
    Io(std::io::Error),
}

impl ReadError {
    fn into_batch_error(self, decompress_err: &dyn Fn(&dyn std::fmt::Display) -> BatchError) -> BatchError {
        match self {
            ReadError::TooLarge { size, max } => BatchError::TooLarge { size, max },
            ReadError::Io(e) => decompress_err(&e),
        }
    }
}

/// Everything `reader` produces, failing past `max` bytes. Pre-allocates the expected size,
/// which the caller has checked against `max`.
fn read_bounded(reader: impl Read, expected: Option<usize>, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::with_capacity(expected.unwrap_or(0));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut out).map_err(ReadError::Io)?;
    if out.len() > max {
        return Err(ReadError::TooLarge { size: out.len(), max });
    }
    Ok(out)
}

fn take(buf: &mut Bytes, size: usize) -> Result<Bytes, String> {
    if size > buf.len() {
        return Err(format!("{size} bytes needed, {} left", buf.len()));
    }
    Ok(buf.split_to(size))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::frame::FrameDecoder;
    use super::super::frame::golden::{self, hex};
    use super::super::proto::KeyValue;
    use super::*;

    fn single(key: &str) -> SingleMessageMetadata {
        SingleMessageMetadata {
            properties: vec![KeyValue { key: "h".into(), value: key.into() }],
            partition_key: Some(key.into()),
            event_time: Some(42),
            sequence_id: Some(3),
            ..Default::default()
        }
    }

    fn batch_metadata(count: i32) -> MessageMetadata {
        MessageMetadata {
            producer_name: "p".into(),
            num_messages_in_batch: Some(count),
            ..Default::default()
        }
    }

    #[test]
    fn batch_round_trip() {
        let messages: Vec<(SingleMessageMetadata, &[u8])> =
            vec![(single("a"), b"first"), (single("b"), b""), (single("c"), &[7; 1000])];
        let payload = Bytes::from(build_batch(&messages));
        let entries = split_batch(&batch_metadata(3), &payload).unwrap();
        assert_eq!(entries.len(), 3);
        for ((meta, data), (expected_meta, expected_data)) in entries.iter().zip(&messages) {
            assert_eq!(&data[..], *expected_data);
            assert_eq!(meta.payload_size as usize, expected_data.len());
            assert_eq!(SingleMessageMetadata { payload_size: 0, ..meta.clone() }, *expected_meta);
        }
        // Trailing bytes are ignored, as clients do.
        let mut longer = payload.to_vec();
        longer.extend_from_slice(b"trailing");
        assert_eq!(split_batch(&batch_metadata(3), &Bytes::from(longer)).unwrap(), entries);
    }

    #[test]
    fn malformed_batches_are_errors() {
        let payload = Bytes::from(build_batch(&[(single("a"), b"first"), (single("b"), b"second")]));
        // More entries claimed than present, and truncations at every point.
        assert!(matches!(split_batch(&batch_metadata(3), &payload), Err(BatchError::Malformed(_))));
        for cut in 0..payload.len() {
            assert!(split_batch(&batch_metadata(2), &payload.slice(..cut)).is_err(), "cut at {cut}");
        }
        for count in [0, -1, i32::MIN] {
            assert!(matches!(split_batch(&batch_metadata(count), &payload), Err(BatchError::Malformed(_))));
        }
        // A huge count over few bytes allocates nothing big.
        assert!(split_batch(&batch_metadata(i32::MAX), &payload).is_err());
        assert_eq!(split_batch(&MessageMetadata::default(), &payload), Err(BatchError::NotBatched));
        // A negative payload_size.
        let mut negative = Vec::new();
        let meta = SingleMessageMetadata { payload_size: -5, ..Default::default() }.encode_to_vec();
        negative.put_u32(meta.len() as u32);
        negative.extend_from_slice(&meta);
        assert!(matches!(
            split_batch(&batch_metadata(1), &Bytes::from(negative)),
            Err(BatchError::Malformed(_))
        ));
    }

    const ALL_CODECS: [CompressionType; 5] = [
        CompressionType::None,
        CompressionType::Lz4,
        CompressionType::Zlib,
        CompressionType::Zstd,
        CompressionType::Snappy,
    ];

    fn compressed_metadata(kind: CompressionType, size: usize) -> MessageMetadata {
        MessageMetadata {
            compression: Some(kind as i32),
            uncompressed_size: Some(size as u32),
            ..batch_metadata(1)
        }
    }

    #[test]
    fn compression_round_trips() {
        let data: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for kind in ALL_CODECS {
            for data in [&data[..], b"", b"x"] {
                let compressed = compress(kind, data).unwrap();
                let metadata = compressed_metadata(kind, data.len());
                let out = decompress(&metadata, Bytes::from(compressed.clone()), data.len()).unwrap();
                assert_eq!(&out[..], data, "{kind:?}");
                // Without uncompressed_size (except LZ4, which needs it).
                let metadata = MessageMetadata { uncompressed_size: None, ..metadata };
                let out = decompress(&metadata, Bytes::from(compressed), data.len());
                if kind == CompressionType::Lz4 && !data.is_empty() {
                    assert!(out.is_err());
                } else if kind != CompressionType::Lz4 {
                    assert_eq!(&out.unwrap()[..], data, "{kind:?}");
                }
            }
        }
        // An absent compression field is NONE.
        let out = decompress(&MessageMetadata::default(), Bytes::from_static(b"raw"), 0).unwrap();
        assert_eq!(&out[..], b"raw");
    }

    #[test]
    fn framed_snappy_is_read() {
        let data = b"framed snappy, as the pulsar crate writes it ".repeat(50);
        let mut framed = Vec::new();
        snap::write::FrameEncoder::new(&mut framed).write_all(&data).unwrap();
        assert!(framed.starts_with(SNAPPY_FRAMED_MAGIC));
        let metadata = compressed_metadata(CompressionType::Snappy, data.len());
        assert_eq!(&decompress(&metadata, Bytes::from(framed), data.len()).unwrap()[..], &data[..]);
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let data = vec![0u8; 1 << 20];
        let max = 64 * 1024;
        for kind in ALL_CODECS.into_iter().skip(1) {
            let compressed = Bytes::from(compress(kind, &data).unwrap());
            assert!(compressed.len() < max, "{kind:?} compresses zeros well");
            // Honest uncompressed_size: refused before decompressing.
            let metadata = compressed_metadata(kind, data.len());
            assert!(
                matches!(decompress(&metadata, compressed.clone(), max), Err(BatchError::TooLarge { .. })),
                "{kind:?}"
            );
            // Lying uncompressed_size: refused while decompressing (LZ4 and raw snappy by the
            // size they declare, the others by the bound).
            let metadata = compressed_metadata(kind, 100);
            match decompress(&metadata, compressed.clone(), max) {
                Err(BatchError::TooLarge { .. } | BatchError::Decompress(_)) => {}
                other => panic!("{kind:?}: {other:?}"),
            }
            // No uncompressed_size.
            let metadata = MessageMetadata { uncompressed_size: None, ..metadata };
            assert!(decompress(&metadata, compressed, max).is_err(), "{kind:?}");
        }
        // Framed snappy too.
        let mut framed = Vec::new();
        snap::write::FrameEncoder::new(&mut framed).write_all(&data).unwrap();
        let metadata =
            MessageMetadata { uncompressed_size: None, ..compressed_metadata(CompressionType::Snappy, 0) };
        assert!(matches!(decompress(&metadata, Bytes::from(framed), max), Err(BatchError::TooLarge { .. })));
    }

    #[test]
    fn wrong_uncompressed_size_and_unknown_codec() {
        let compressed = Bytes::from(compress(CompressionType::Zstd, b"twelve bytes").unwrap());
        let metadata = compressed_metadata(CompressionType::Zstd, 11);
        assert!(matches!(decompress(&metadata, compressed, 100), Err(BatchError::Decompress(_))));
        let metadata = MessageMetadata { compression: Some(17), ..Default::default() };
        assert_eq!(decompress(&metadata, Bytes::new(), 100), Err(BatchError::UnsupportedCompression(17)));
    }

    /// The batches in the golden `SEND` frames (written by the `pulsar` crate, see
    /// `frame::golden`): every codec decompresses and splits to the messages the client sent.
    #[test]
    fn golden_batches() {
        let sends = [
            ("none", golden::SEND_BATCH_NONE),
            ("lz4", golden::SEND_BATCH_LZ4),
            ("zlib", golden::SEND_BATCH_ZLIB),
            ("zstd", golden::SEND_BATCH_ZSTD),
            ("snappy", golden::SEND_BATCH_SNAPPY),
        ];
        for (codec, bytes) in sends {
            let frame =
                FrameDecoder::default().decode(&mut BytesMut::from(&hex(bytes)[..])).unwrap().unwrap();
            let payload = frame.payload.unwrap();
            assert!(is_batch(&payload.metadata));
            let data = decompress(&payload.metadata, payload.data.clone(), 1 << 20).unwrap();
            assert_eq!(
                Some(data.len() as u32),
                payload.metadata.uncompressed_size.or(Some(data.len() as u32))
            );
            let entries = split_batch(&payload.metadata, &data).unwrap();
            assert_eq!(entries.len(), 3, "{codec}");
            for (i, (single, message)) in entries.iter().enumerate() {
                assert_eq!(&message[..], format!("message {i} of a {codec} batch").as_bytes());
                assert_eq!(single.partition_key, Some(format!("key-{i}")));
                assert_eq!(single.properties, vec![KeyValue { key: "index".into(), value: i.to_string() }]);
                assert_eq!(single.event_time, Some(1_700_000_000_000 + i as u64));
                assert_eq!(single.payload_size as usize, message.len());
            }
            // Rebuilding the batch gives the client's bytes back.
            let messages: Vec<(SingleMessageMetadata, &[u8])> =
                entries.iter().map(|(single, message)| (single.clone(), &message[..])).collect();
            assert_eq!(build_batch(&messages), &data[..], "{codec}");
            // And so does our compression, through decompression.
            let kind = compression(&payload.metadata).unwrap();
            let ours = Bytes::from(compress(kind, &data).unwrap());
            assert_eq!(decompress(&payload.metadata, ours, data.len()).unwrap(), data, "{codec}");
        }
        let frame = FrameDecoder::default()
            .decode(&mut BytesMut::from(&hex(golden::SEND_SINGLE)[..]))
            .unwrap()
            .unwrap();
        let payload = frame.payload.unwrap();
        assert!(!is_batch(&payload.metadata));
        assert_eq!(split_batch(&payload.metadata, &payload.data), Err(BatchError::NotBatched));
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seed = build_batch(&[(single("a"), b"first"), (single("b"), b"second")]);
        for kind in ALL_CODECS {
            let compressed = compress(kind, &seed).unwrap();
            for _ in 0..2_000 {
                let mut bytes = compressed.clone();
                let r = next();
                let at = (r >> 8) as usize % bytes.len();
                bytes[at] ^= 1 << (r % 8);
                if r & 0x100 != 0 {
                    bytes.truncate(at);
                }
                let metadata = MessageMetadata {
                    uncompressed_size: Some(if r & 0x200 != 0 {
                        seed.len() as u32
                    } else {
                        (r >> 32) as u32
                    }),
                    ..compressed_metadata(kind, 0)
                };
                if let Ok(out) = decompress(&metadata, Bytes::from(bytes), 4096) {
                    let _ = split_batch(&batch_metadata((r >> 40) as i32 % 4), &out);
                }
            }
        }
    }
}
