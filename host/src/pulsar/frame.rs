//! Sans-I/O framing of the Pulsar binary protocol
//! (<https://pulsar.apache.org/docs/next/developing-binary-protocol/>). All integers are
//! big-endian.
//!
//! A simple command: `[totalSize u32][commandSize u32][BaseCommand]`.
//!
//! A payload command (`SEND`, `MESSAGE`) continues with the message:
//! `[magic 0x0e01 u16][checksum u32][metadataSize u32][MessageMetadata][payload]`, where the
//! checksum is the CRC32C (Castagnoli) of everything from `metadataSize` to the end of the frame.
//! A broker that has broker entry metadata enabled (PIP-70) puts
//! `[magic 0x0e02 u16][size u32][BrokerEntryMetadata]` before the `0x0e01` part of the messages
//! it dispatches to consumers that announced `supports_broker_entry_metadata`; it is outside the
//! checksum. The checksum part itself is optional: the broker accepts payloads without it (from
//! very old clients) and does not verify them, and so does [`decode_frame`].
//!
//! `totalSize` counts the bytes after itself. [`FrameDecoder`] refuses a `totalSize` over its
//! `max_frame_bytes` before buffering or allocating anything for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use super::proto::{BaseCommand, BrokerEntryMetadata, MessageMetadata, base_command};

/// Starts the checksummed part of a payload command.
pub const MAGIC_CRC32C: u16 = 0x0e01;
/// Starts the broker entry metadata (PIP-70) of a payload command, before [`MAGIC_CRC32C`].
pub const MAGIC_BROKER_ENTRY_METADATA: u16 = 0x0e02;
/// Pulsar's default `maxMessageSize` (5 MiB) plus the 10 KiB the broker adds for the frame's
/// headers (`Commands.MESSAGE_SIZE_FRAME_PADDING`).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 5 * 1024 * 1024 + 10 * 1024;

#[derive(thiserror::Error, Debug, PartialEq)]
pub enum FrameError {
    /// `totalSize` over the decoder's maximum. The stream cannot be resynchronised without
    /// reading the frame: close the connection.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: u32, max: u32 },
    /// The frame's sizes do not add up, or its command is not a valid `BaseCommand`. The frame
    /// was consumed, but its sender is broken: close the connection.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The command decoded but the message after it did not (sizes, magic or metadata). The
    /// frame was consumed; `command` lets the caller answer it (e.g. a `SEND_ERROR` for a
    /// `SEND`).
    #[error("invalid payload for command type {}: {reason}", .command.r#type)]
    Payload { command: Box<BaseCommand>, reason: String },
    /// End of stream in the middle of a frame ([`FrameDecoder::decode_eof`]).
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub command: BaseCommand,
    /// The message of a payload command; `None` for a simple command.
    pub payload: Option<Payload>,
}

impl Frame {
    /// The command's type, `None` when it is a value this version of the protocol does not know.
    pub fn command_type(&self) -> Option<base_command::Type> {
        base_command::Type::try_from(self.command.r#type).ok()
    }
}

/// The message after a payload command.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub metadata: MessageMetadata,
    /// The broker entry metadata (magic `0x0e02`), present only in frames from a broker.
    pub broker_entry: Option<BrokerEntryMetadata>,
    /// The checksum on the wire, `None` when the sender left it out (no `0x0e01` magic).
    pub checksum: Option<u32>,
    /// `false` when the checksum does not match the CRC32C of the metadata and payload: the
    /// message is corrupt, and a broker answers such a `SEND` with a `SEND_ERROR`
    /// (`ChecksumError`) instead of storing it. `true` when it matches or is absent.
    pub checksum_ok: bool,
    /// The payload after the metadata: one message, or a batch ([`super::batch`]), compressed
    /// as `metadata.compression` says.
    pub data: Bytes,
    /// The message as the client sent it, from the `0x0e01` magic (or from `metadataSize` when
    /// there is no checksum) to the end: what a broker stores and later sends back after a
    /// `MESSAGE` command ([`encode_raw_payload`]) without re-encoding it.
    pub headers_and_payload: Bytes,
}

/// Splits a byte stream into frames, never trusting a claimed size beyond `max_frame_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameDecoder {
    /// The largest `totalSize` accepted (it does not count the 4 bytes of `totalSize` itself).
    pub max_frame_bytes: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { max_frame_bytes: DEFAULT_MAX_FRAME_BYTES }
    }
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: u32) -> Self {
        FrameDecoder { max_frame_bytes }
    }

    /// The next complete frame in `buf`, removed from it. `Ok(None)` (with `buf` untouched) until
    /// the whole frame is buffered: the caller reads more, [`FrameDecoder::missing`] says how
    /// much. On an error other than [`FrameError::TooLarge`] the frame has been consumed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(size) = peek_u32(buf) else {
            return Ok(None);
        };
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge { size, max: self.max_frame_bytes });
        }
        let size = size as usize;
        if buf.len() - 4 < size {
            return Ok(None);
        }
        buf.advance(4);
        decode_frame(buf.split_to(size).freeze()).map(Some)
    }

    /// Like [`FrameDecoder::decode`], once the peer has closed the stream: a partial frame left
    /// in `buf` is an error instead of `Ok(None)`.
    pub fn decode_eof(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(buf.len())),
        }
    }

    /// Bytes still missing for the frame at the head of `buf`: the rest of `totalSize`, or of a
    /// frame whose size is valid. 0 when the frame is complete, or when its size is one that
    /// [`FrameDecoder::decode`] rejects: a claimed size is never a reason to read (or reserve)
    /// more than `max_frame_bytes`.
    pub fn missing(&self, buf: &[u8]) -> usize {
        match peek_u32(buf) {
            None => 4 - buf.len(),
            Some(size) if size <= self.max_frame_bytes => (4 + size as usize).saturating_sub(buf.len()),
            Some(_) => 0,
        }
    }
}

/// Decodes one frame without its `totalSize` prefix.
pub fn decode_frame(mut frame: Bytes) -> Result<Frame, FrameError> {
    let command_size = take_u32(&mut frame, "command size").map_err(FrameError::Malformed)?;
    let command = take(&mut frame, command_size, "command").map_err(FrameError::Malformed)?;
    let command = BaseCommand::decode(command)
        .map_err(|e| FrameError::Malformed(format!("invalid BaseCommand: {e}")))?;
    if frame.is_empty() {
        return Ok(Frame { command, payload: None });
    }
    match decode_payload(frame) {
        Ok(payload) => Ok(Frame { command, payload: Some(payload) }),
        Err(reason) => Err(FrameError::Payload { command: Box::new(command), reason }),
    }
}

fn decode_payload(mut rest: Bytes) -> Result<Payload, String> {
    let broker_entry = if rest.starts_with(&MAGIC_BROKER_ENTRY_METADATA.to_be_bytes()) {
        rest.advance(2);
        let size = take_u32(&mut rest, "broker entry metadata size")?;
        let bytes = take(&mut rest, size, "broker entry metadata")?;
        Some(BrokerEntryMetadata::decode(bytes).map_err(|e| format!("invalid BrokerEntryMetadata: {e}"))?)
    } else {
        None
    };
    let headers_and_payload = rest.clone();
    let checksum = if rest.starts_with(&MAGIC_CRC32C.to_be_bytes()) {
        rest.advance(2);
        Some(take_u32(&mut rest, "checksum")?)
    } else {
        None
    };
    let checksum_ok = checksum.is_none_or(|sum| sum == crc32c::crc32c(&rest));
    let metadata = take_u32(&mut rest, "metadata size")
        .and_then(|size| take(&mut rest, size, "metadata"))
        .and_then(|bytes| MessageMetadata::decode(bytes).map_err(|e| format!("invalid MessageMetadata: {e}")))
        .map_err(|e| if checksum_ok { e } else { format!("checksum mismatch, and {e}") })?;
    Ok(Payload { metadata, broker_entry, checksum, checksum_ok, data: rest, headers_and_payload })
}

/// A simple command frame.
pub fn encode_command(command: &BaseCommand) -> Bytes {
    let command_size = command.encoded_len();
    let mut buf = BytesMut::with_capacity(8 + command_size);
    buf.put_u32(frame_u32(4 + command_size));
    put_command(&mut buf, command, command_size);
    buf.freeze()
}

/// A payload command frame (e.g. a `SEND`), with its checksum.
pub fn encode_payload(command: &BaseCommand, metadata: &MessageMetadata, payload: &[u8]) -> Bytes {
    encode_payload_with_broker_entry(command, None, metadata, payload)
}

/// A payload command frame with broker entry metadata (`0x0e02`) before the checksummed part,
/// as a broker sends a `MESSAGE` to a consumer that supports it.
pub fn encode_payload_with_broker_entry(
    command: &BaseCommand,
    broker_entry: Option<&BrokerEntryMetadata>,
    metadata: &MessageMetadata,
    payload: &[u8],
) -> Bytes {
    let metadata_size = metadata.encoded_len();
    let checksummed = 4 + metadata_size + payload.len();
    let mut buf = start_payload_frame(command, broker_entry, 2 + 4 + checksummed);
    buf.put_u16(MAGIC_CRC32C);
    let checksum_at = buf.len();
    buf.put_u32(0);
    let start = buf.len();
    buf.put_u32(frame_u32(metadata_size));
    metadata.encode(&mut buf).expect("a BytesMut grows as needed");
    buf.put_slice(payload);
    let checksum = crc32c::crc32c(&buf[start..]);
    buf[checksum_at..start].copy_from_slice(&checksum.to_be_bytes());
    buf.freeze()
}

/// A payload command frame whose message is already encoded ([`Payload::headers_and_payload`],
/// e.g. as stored from a `SEND`), copied as is after the command and the broker entry metadata.
pub fn encode_raw_payload(
    command: &BaseCommand,
    broker_entry: Option<&BrokerEntryMetadata>,
    headers_and_payload: &[u8],
) -> Bytes {
    let mut buf = start_payload_frame(command, broker_entry, headers_and_payload.len());
    buf.put_slice(headers_and_payload);
    buf.freeze()
}

/// `totalSize`, the command and the broker entry metadata of a frame whose remaining part is
/// `tail` bytes long.
fn start_payload_frame(
    command: &BaseCommand,
    broker_entry: Option<&BrokerEntryMetadata>,
    tail: usize,
) -> BytesMut {
    let command_size = command.encoded_len();
    let entry_size = broker_entry.map(Message::encoded_len);
    let total = 4 + command_size + entry_size.map_or(0, |size| 2 + 4 + size) + tail;
    let mut buf = BytesMut::with_capacity(4 + total);
    buf.put_u32(frame_u32(total));
    put_command(&mut buf, command, command_size);
    if let (Some(entry), Some(size)) = (broker_entry, entry_size) {
        buf.put_u16(MAGIC_BROKER_ENTRY_METADATA);
        buf.put_u32(frame_u32(size));
        entry.encode(&mut buf).expect("a BytesMut grows as needed");
    }
    buf
}

fn put_command(buf: &mut BytesMut, command: &BaseCommand, command_size: usize) {
    buf.put_u32(frame_u32(command_size));
    command.encode(buf).expect("a BytesMut grows as needed");
}

/// A size on the wire. Frames are far below 4 GiB (the decoder's maximum is a `u32`); a larger
/// one is a bug in the caller.
fn frame_u32(size: usize) -> u32 {
    u32::try_from(size).expect("a Pulsar frame is smaller than 4 GiB")
}

fn peek_u32(buf: &[u8]) -> Option<u32> {
    buf.first_chunk::<4>().map(|b| u32::from_be_bytes(*b))
}

fn take_u32(buf: &mut Bytes, what: &str) -> Result<u32, String> {
    let value = peek_u32(buf).ok_or_else(|| format!("{what}: {} bytes left, 4 needed", buf.len()))?;
    buf.advance(4);
    Ok(value)
}

fn take(buf: &mut Bytes, size: u32, what: &str) -> Result<Bytes, String> {
    if size as usize > buf.len() {
        return Err(format!("{what} of {size} bytes exceeds the {} bytes left in the frame", buf.len()));
    }
    Ok(buf.split_to(size as usize))
}

#[cfg(test)]
mod tests {
    use super::super::proto::{CommandConnect, CommandPing, CommandSend, KeyValue, base_command::Type};
    use super::golden::{self, hex};
    use super::*;

    fn connect() -> BaseCommand {
        BaseCommand {
            r#type: Type::Connect as i32,
            connect: Some(CommandConnect {
                client_version: "guise-test".into(),
                auth_method_name: Some("none".into()),
                protocol_version: Some(21),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ping() -> BaseCommand {
        BaseCommand { r#type: Type::Ping as i32, ping: Some(CommandPing {}), ..Default::default() }
    }

    fn send(sequence_id: u64) -> BaseCommand {
        BaseCommand {
            r#type: Type::Send as i32,
            send: Some(CommandSend {
                producer_id: 7,
                sequence_id,
                num_messages: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn metadata(sequence_id: u64) -> MessageMetadata {
        MessageMetadata {
            producer_name: "producer-1".into(),
            sequence_id,
            publish_time: 1_700_000_000_000,
            properties: vec![KeyValue { key: "k".into(), value: "v".into() }],
            ..Default::default()
        }
    }

    fn decode_all(decoder: &FrameDecoder, bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "{} bytes left", buf.len());
        frames
    }

    #[test]
    fn simple_command_round_trip() {
        let bytes = encode_command(&connect());
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
        let frames = decode_all(&FrameDecoder::default(), &bytes);
        assert_eq!(frames, vec![Frame { command: connect(), payload: None }]);
        assert_eq!(frames[0].command_type(), Some(Type::Connect));
    }

    #[test]
    fn payload_command_round_trip() {
        let bytes = encode_payload(&send(3), &metadata(3), b"hello pulsar");
        let frame = decode_all(&FrameDecoder::default(), &bytes).remove(0);
        assert_eq!(frame.command, send(3));
        let payload = frame.payload.unwrap();
        assert_eq!(payload.metadata, metadata(3));
        assert_eq!(payload.broker_entry, None);
        assert!(payload.checksum_ok);
        assert!(payload.checksum.is_some());
        assert_eq!(&payload.data[..], b"hello pulsar");
        // The stored form re-encodes to the same frame.
        assert_eq!(encode_raw_payload(&send(3), None, &payload.headers_and_payload), bytes);
    }

    #[test]
    fn empty_payload_round_trip() {
        let bytes = encode_payload(&send(1), &metadata(1), b"");
        let payload = decode_all(&FrameDecoder::default(), &bytes).remove(0).payload.unwrap();
        assert!(payload.checksum_ok);
        assert!(payload.data.is_empty());
    }

    #[test]
    fn broker_entry_metadata_round_trip() {
        let entry = BrokerEntryMetadata { broker_timestamp: Some(1_700_000_000_123), index: Some(41) };
        let message = BaseCommand { r#type: Type::Message as i32, ..Default::default() };
        let bytes = encode_payload_with_broker_entry(&message, Some(&entry), &metadata(9), b"data");
        let payload = decode_all(&FrameDecoder::default(), &bytes).remove(0).payload.unwrap();
        assert_eq!(payload.broker_entry, Some(entry));
        assert!(payload.checksum_ok);
        assert_eq!(payload.metadata, metadata(9));
        assert_eq!(&payload.data[..], b"data");
        // The checksum does not cover the broker entry metadata: the same message without it
        // has the same checksum and the same stored form.
        let plain = decode_all(&FrameDecoder::default(), &encode_payload(&message, &metadata(9), b"data"))
            .remove(0)
            .payload
            .unwrap();
        assert_eq!(plain.checksum, payload.checksum);
        assert_eq!(plain.headers_and_payload, payload.headers_and_payload);
        assert_eq!(encode_raw_payload(&message, Some(&entry), &payload.headers_and_payload), bytes);
    }

    #[test]
    fn payload_without_checksum_is_accepted() {
        // [metadataSize][metadata][payload] right after the command, as very old clients send it.
        let meta = metadata(2).encode_to_vec();
        let command = send(2).encode_to_vec();
        let mut bytes = Vec::new();
        bytes.put_u32((4 + command.len() + 4 + meta.len() + 3) as u32);
        bytes.put_u32(command.len() as u32);
        bytes.extend_from_slice(&command);
        bytes.put_u32(meta.len() as u32);
        bytes.extend_from_slice(&meta);
        bytes.extend_from_slice(b"abc");
        let payload = decode_all(&FrameDecoder::default(), &bytes).remove(0).payload.unwrap();
        assert_eq!(payload.checksum, None);
        assert!(payload.checksum_ok);
        assert_eq!(payload.metadata, metadata(2));
        assert_eq!(&payload.data[..], b"abc");
    }

    #[test]
    fn bad_checksum_is_reported() {
        let good = encode_payload(&send(5), &metadata(5), b"some payload");
        // Flip a bit in the payload, then in the checksum itself, then in the metadata.
        let checksum_at = good.len() - b"some payload".len() - metadata(5).encoded_len() - 8;
        for at in [good.len() - 1, checksum_at, good.len() - b"some payload".len() - 2] {
            let mut bad = good.to_vec();
            bad[at] ^= 0x10;
            match FrameDecoder::default().decode(&mut BytesMut::from(&bad[..])) {
                Ok(Some(frame)) => {
                    assert_eq!(frame.command, send(5), "the command survives");
                    assert!(!frame.payload.unwrap().checksum_ok, "flip at {at} not detected");
                }
                // Corrupt metadata may also fail to decode: the command is still there to answer.
                Err(FrameError::Payload { command, reason }) => {
                    assert_eq!(*command, send(5));
                    assert!(reason.contains("checksum mismatch"), "{reason}");
                }
                other => panic!("flip at {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_split_point() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode_command(&connect()));
        stream.extend_from_slice(&encode_payload(&send(1), &metadata(1), b"first"));
        stream.extend_from_slice(&encode_command(&ping()));
        stream.extend_from_slice(&encode_payload(&send(2), &metadata(2), &[0xab; 300]));
        let decoder = FrameDecoder::default();
        let expected = decode_all(&decoder, &stream);
        assert_eq!(expected.len(), 4);
        // Two reads at every split point.
        for split in 0..=stream.len() {
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    frames.push(frame);
                }
            }
            assert!(buf.is_empty());
            assert_eq!(frames, expected, "split at {split}");
        }
        // One byte at a time; `missing` never asks past the end of the current frame.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in &stream {
            assert!(decoder.missing(&buf) >= 1);
            buf.put_u8(byte);
            if let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
                assert_eq!(decoder.missing(&buf), 4 - buf.len().min(4));
            }
        }
        assert_eq!(frames, expected);
    }

    #[test]
    fn decode_eof_reports_a_partial_frame() {
        let decoder = FrameDecoder::default();
        let bytes = encode_command(&ping());
        assert_eq!(decoder.decode_eof(&mut BytesMut::new()), Ok(None));
        let mut partial = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert_eq!(decoder.decode_eof(&mut partial), Err(FrameError::Truncated(bytes.len() - 1)));
        let mut whole = BytesMut::from(&bytes[..]);
        assert!(decoder.decode_eof(&mut whole).unwrap().is_some());
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering() {
        let decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::TooLarge { size: 0x7fff_ffff, max: 1024 }));
        assert_eq!(decoder.missing(&buf), 0, "never asks for the claimed size");
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(decoder.decode(&mut buf), Err(FrameError::TooLarge { .. })));
        // The limit itself is accepted.
        let mut buf = BytesMut::from(&1024u32.to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.missing(&buf), 1024);
    }

    #[test]
    fn inconsistent_sizes_are_errors() {
        let decoder = FrameDecoder::default();
        // totalSize 0 and 3: no room for commandSize.
        for bytes in [&[0, 0, 0, 0][..], &[0, 0, 0, 3, 0, 0, 0]] {
            assert!(matches!(decoder.decode(&mut BytesMut::from(bytes)), Err(FrameError::Malformed(_))));
        }
        // commandSize larger than the frame.
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 9, 8, 18][..]);
        assert!(matches!(decoder.decode(&mut buf), Err(FrameError::Malformed(_))));
        assert!(buf.is_empty(), "the frame is consumed");
        // metadataSize larger than the frame: the command is returned with the error.
        let good = encode_payload(&send(4), &metadata(4), b"x");
        let mut bad = good.to_vec();
        let meta_at = good.len() - 1 - metadata(4).encoded_len() - 4;
        bad[meta_at..meta_at + 4].copy_from_slice(&1000u32.to_be_bytes());
        match decoder.decode(&mut BytesMut::from(&bad[..])) {
            Err(FrameError::Payload { command, .. }) => assert_eq!(*command, send(4)),
            other => panic!("{other:?}"),
        }
    }

    /// Deterministic xorshift, so failures reproduce without a rand dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_never_panics() {
        let mut seeds = vec![
            encode_command(&connect()).to_vec(),
            encode_payload(&send(1), &metadata(1), b"payload").to_vec(),
            encode_payload_with_broker_entry(
                &send(2),
                Some(&BrokerEntryMetadata { broker_timestamp: Some(1), index: Some(2) }),
                &metadata(2),
                b"payload",
            )
            .to_vec(),
        ];
        seeds.extend(golden::ALL.iter().map(|g| hex(g)));
        let decoder = FrameDecoder::new(64 * 1024);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..=next(&mut state) % 4 {
                let r = next(&mut state);
                let at = (r >> 8) as usize % bytes.len();
                match r % 4 {
                    0 => bytes[at] ^= 1 << ((r >> 40) % 8),
                    1 => bytes[at] = (r >> 32) as u8,
                    2 => bytes.truncate(at.max(1)),
                    _ => bytes.insert(at, (r >> 24) as u8),
                }
            }
            let mut buf = BytesMut::from(&bytes[..]);
            // Decode until the decoder wants more or fails; then at EOF.
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
            let _ = decoder.decode_eof(&mut buf);
            let _ = decoder.missing(&buf);
        }
        // Pure noise.
        for _ in 0..2_000 {
            let len = (next(&mut state) % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
            let _ = decoder.decode(&mut BytesMut::from(&bytes[..]));
            let _ = decode_frame(Bytes::from(bytes));
        }
    }

    /// Decodes one golden frame, checks it is exactly one frame, and that this module encodes
    /// the decoded frame back to the same bytes (the pulsar crate's encoder and ours agree,
    /// checksum included).
    fn golden_frame(name: &str, hex_bytes: &str) -> Frame {
        let bytes = hex(hex_bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "{name}");
        let encoded = match &frame.payload {
            None => encode_command(&frame.command),
            Some(payload) => {
                assert!(payload.checksum_ok, "{name}");
                assert_eq!(payload.broker_entry, None);
                encode_payload(&frame.command, &payload.metadata, &payload.data)
            }
        };
        assert_eq!(hex_of(&encoded), hex_bytes, "{name} re-encoded");
        frame
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn golden_simple_commands() {
        let connect = golden_frame("CONNECT", golden::CONNECT);
        assert_eq!(connect.command_type(), Some(Type::Connect));
        let c = connect.command.connect.unwrap();
        assert_eq!(c.client_version, "pulsar-rs-v6.9.1");
        assert_eq!(c.protocol_version, Some(12));
        assert_eq!(c.auth_method_name, None);

        let producer = golden_frame("PRODUCER", golden::PRODUCER);
        assert_eq!(producer.command_type(), Some(Type::Producer));
        let p = producer.command.producer.unwrap();
        assert_eq!(p.topic, "persistent://public/default/golden");
        assert_eq!((p.producer_id, p.request_id), (1, 7));
        assert_eq!(p.producer_name.as_deref(), Some("golden-lz4"));

        let flow = golden_frame("FLOW", golden::FLOW).command.flow.unwrap();
        assert_eq!((flow.consumer_id, flow.message_permits), (0, 1000));

        let ack = golden_frame("ACK", golden::ACK).command.ack.unwrap();
        assert_eq!(ack.consumer_id, 0);
        assert_eq!(ack.message_id.len(), 1);
        assert_eq!((ack.message_id[0].ledger_id, ack.message_id[0].entry_id), (9, 0));

        assert_eq!(golden_frame("PING", golden::PING).command_type(), Some(Type::Ping));
    }

    #[test]
    fn golden_send_frames() {
        let sends = [
            ("none", golden::SEND_BATCH_NONE, None),
            ("lz4", golden::SEND_BATCH_LZ4, Some(1)),
            ("zlib", golden::SEND_BATCH_ZLIB, Some(2)),
            ("zstd", golden::SEND_BATCH_ZSTD, Some(3)),
            ("snappy", golden::SEND_BATCH_SNAPPY, Some(4)),
        ];
        for (producer_id, (codec, bytes, compression)) in sends.into_iter().enumerate() {
            let frame = golden_frame(codec, bytes);
            assert_eq!(frame.command_type(), Some(Type::Send));
            let send = frame.command.send.unwrap();
            assert_eq!(
                (send.producer_id, send.sequence_id, send.num_messages),
                (producer_id as u64, 0, Some(3))
            );
            let metadata = frame.payload.unwrap().metadata;
            assert_eq!(metadata.producer_name, format!("golden-{codec}"));
            assert_eq!(metadata.num_messages_in_batch, Some(3));
            assert_eq!(metadata.compression, compression, "{codec}");
            assert_eq!(metadata.uncompressed_size.is_some(), compression.is_some(), "{codec}");
        }
        let single = golden_frame("single", golden::SEND_SINGLE);
        let payload = single.payload.unwrap();
        assert_eq!(payload.metadata.num_messages_in_batch, None);
        assert_eq!(&payload.data[..], b"a single message");
    }

    #[test]
    fn golden_stream_at_every_split_point() {
        let stream: Vec<u8> = golden::ALL.iter().flat_map(|g| hex(g)).collect();
        let decoder = FrameDecoder::default();
        let expected = decode_all(&decoder, &stream);
        assert_eq!(expected.len(), golden::ALL.len());
        for split in 0..=stream.len() {
            let mut buf = BytesMut::from(&stream[..split]);
            let mut frames = Vec::new();
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            buf.extend_from_slice(&stream[split..]);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            assert_eq!(frames, expected, "split at {split}");
        }
    }

    #[test]
    fn golden_send_with_a_flipped_bit_fails_its_checksum() {
        let good = hex(golden::SEND_BATCH_ZLIB);
        let mut checksum_failures = 0;
        // Every bit of the checksummed part (from metadataSize on; the command is 10 bytes).
        let start = 4 + 4 + 10 + 2 + 4;
        for at in start..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[at] ^= 1 << bit;
                match FrameDecoder::default().decode(&mut BytesMut::from(&bad[..])) {
                    Ok(Some(frame)) => assert!(!frame.payload.unwrap().checksum_ok, "bit {bit} of byte {at}"),
                    Err(FrameError::Payload { command, .. }) => {
                        assert_eq!(command.send.unwrap().producer_id, 2)
                    }
                    other => panic!("bit {bit} of byte {at}: {other:?}"),
                }
                checksum_failures += 1;
            }
        }
        assert_eq!(checksum_failures, (good.len() - start) * 8);
    }

    #[test]
    fn command_type_of_unknown_value() {
        let frame = Frame { command: BaseCommand { r#type: 9999, ..Default::default() }, payload: None };
        assert_eq!(frame.command_type(), None);
    }
}

/// Golden frames written by an independent implementation, the Rust client `pulsar` 6.9.1
/// (streamnative/pulsar-rs, whose codec and protobuf code are its own). Captured by letting that
/// client connect to a fake broker on 127.0.0.1 (built on this module) that recorded the bytes
/// of every frame it received, while the client created producers with `batch_size: Some(3)` and
/// each compression codec and sent three messages each (payload `"message {i} of a {codec}
/// batch"`, `partition_key "key-{i}"`, property `index = i`, `event_time` 1700000000000 + i),
/// then one message from a producer without batching, then consumed and acknowledged.
/// The host's tests check the codec against these without depending on the `pulsar` crate.
#[cfg(test)]
pub(super) mod golden {
    /// `CONNECT`: client_version "pulsar-rs-v6.9.1", protocol_version 12, no auth.
    pub const CONNECT: &str = "0000001c00000018080212140a1070756c7361722d72732d76362e392e31200c";
    /// `PRODUCER` "golden-lz4", producer_id 1, request_id 7.
    pub const PRODUCER: &str = concat!(
        "0000003c0000003808052a340a2270657273697374656e743a2f2f7075626c69632f64656661756c742f676f",
        "6c64656e10011807220a676f6c64656e2d6c7a34",
    );
    /// `SEND` of a batch of 3, uncompressed (producer "golden-none").
    pub const SEND_BATCH_NONE: &str = concat!(
        "000000e10000000a080632060800100018030e0188172342000000180a0b676f6c64656e2d6e6f6e65100018",
        "fdc3ca8da13458030000001e0a0a0a05696e64657812013012056b65792d3018192880d095ffbc3130006d65",
        "73736167652030206f662061206e6f6e652062617463680000001e0a0a0a05696e64657812013112056b6579",
        "2d3118192881d095ffbc3130006d6573736167652031206f662061206e6f6e652062617463680000001e0a0a",
        "0a05696e64657812013212056b65792d3218192882d095ffbc3130006d6573736167652032206f662061206e",
        "6f6e65206261746368",
    );
    /// `SEND` of a batch of 3, LZ4 (raw block).
    pub const SEND_BATCH_LZ4: &str = concat!(
        "000000990000000a080632060801100018030e01a29b16710000001c0a0a676f6c64656e2d6c7a34100018fe",
        "c3ca8da134400148ae015803fb2b0000001e0a0a0a05696e64657812013012056b65792d3018182880d095ff",
        "bc3130006d6573736167652030206f662061206c7a342062617463683a0012313a005b31181828813a001f31",
        "3a000b12323a005b32181828823a0016323a00506261746368",
    );
    /// `SEND` of a batch of 3, ZLIB.
    pub const SEND_BATCH_ZLIB: &str = concat!(
        "0000009d0000000a080632060802100018030e018be55c530000001d0a0b676f6c64656e2d7a6c6962100018",
        "80c4ca8da134400248b1015803789c85cbbd1140301400e0a7d0a454d1b8576adc25d92821c8f92ba240851d",
        "6c63081b91bb54d218e00380941012eaa1547314d0286cd592d338c9b6fb7c2e46a157c6885a21c5b142816b",
        "a7254a31150d7c29739459ba7b94fd50ee28b7f4f028f7e90b2efb3400",
    );
    /// `SEND` of a batch of 3, ZSTD.
    pub const SEND_BATCH_ZSTD: &str = concat!(
        "0000009a0000000a080632060803100018030e01ac3dec8c0000001d0a0b676f6c64656e2d7a737464100018",
        "82c4ca8da134400348b101580328b52ffd0058e5020094040000001e0a0a0a05696e64657812013012056b65",
        "792d3018192880d095ffbc3130006d6573736167652030206f662061207a7374642062617463683131181928",
        "81313232181928823207000011a02b18186804e80a06b6be537b",
    );
    /// `SEND` of a batch of 3, SNAPPY in the snappy *framing* format (a pulsar-rs quirk).
    pub const SEND_BATCH_SNAPPY: &str = concat!(
        "000000b10000000a080632060804100018030e01e375ba690000001f0a0d676f6c64656e2d736e6170707910",
        "001883c4ca8da134400448b7015803ff060000734e61507059006c0000fc5369d1b701f03c0000001e0a0a0a",
        "05696e64657812013012056b65792d30181b2880d095ffbc3130006d6573736167652030206f66206120736e",
        "617070792062617463683a3d000031093d1031181b28813a3d000031823d000032093d1032181b28823a3d00",
        "0032463d00",
    );
    /// `SEND` of one message, not batched (no num_messages_in_batch).
    pub const SEND_SINGLE: &str = concat!(
        "0000003e0000000808063204080510000e0127a81560000000180a0d676f6c64656e2d73696e676c65100018",
        "84c4ca8da134612073696e676c65206d657373616765",
    );
    /// `FLOW`: consumer_id 0, 1000 permits.
    pub const FLOW: &str = "0000000d00000009080b5a05080010e807";
    /// `ACK` (individual) of message 9:0 batch index 0.
    pub const ACK: &str = "0000001400000010080a520c080010001a06080910002000";
    /// `PING`.
    pub const PING: &str = "00000009000000050812920100";
    pub const ALL: &[&str] = &[
        CONNECT,
        PRODUCER,
        SEND_BATCH_NONE,
        SEND_BATCH_LZ4,
        SEND_BATCH_ZLIB,
        SEND_BATCH_ZSTD,
        SEND_BATCH_SNAPPY,
        SEND_SINGLE,
        FLOW,
        ACK,
        PING,
    ];

    pub fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
