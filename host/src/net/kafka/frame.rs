//! Sans-I/O Kafka framing: a 4-byte big-endian size, then that many bytes of request.

use bytes::{Buf, Bytes, BytesMut};

#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the maximum of {max} (socket.request.max.bytes)")]
    TooLarge { size: u64, max: u32 },
    #[error("invalid frame size {0}")]
    InvalidSize(i32),
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
}

/// The fixed part of a request header, enough for logging and for error responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl FrameHeader {
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let b = frame.get(..8)?;
        Some(FrameHeader {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// Splits a byte stream into frames, never trusting a claimed size beyond `max`.
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
}

impl FrameDecoder {
    pub fn new(max: u32) -> Self {
        FrameDecoder { max }
    }

    /// The next complete frame in `buf` (without its size prefix), if there is one. On `Ok(None)`
    /// the caller reads more; `wanted` says how many more bytes would complete the frame.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 {
            return Err(FrameError::InvalidSize(size));
        }
        if size as u64 > u64::from(self.max) {
            return Err(FrameError::TooLarge { size: size as u64, max: self.max });
        }
        let size = size as usize;
        if buf.len() < 4 + size {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// Bytes still missing for the frame at the head of `buf`: the rest of the size prefix, or of
    /// a frame whose size is valid. 0 when the frame is complete, or when its size is one that
    /// [`FrameDecoder::decode`] rejects: a claimed size is never a reason to read (or reserve) more
    /// than `max` bytes.
    pub fn missing(&self, buf: &BytesMut) -> usize {
        if buf.len() < 4 {
            return 4 - buf.len();
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        match u32::try_from(size) {
            Ok(size) if size <= self.max => (4 + size as usize).saturating_sub(buf.len()),
            _ => 0,
        }
    }

    /// At end of stream: an error if a partial frame is buffered.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() { Ok(()) } else { Err(FrameError::Truncated(buf.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_frames_across_reads() {
        let d = FrameDecoder::new(1024);
        let mut stream = framed(b"hello world");
        stream.extend(framed(b"second"));
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![Bytes::from_static(b"hello world"), Bytes::from_static(b"second")]);
        assert!(d.finish(&buf).is_ok());
    }

    #[test]
    fn rejects_oversized_and_negative_sizes_before_buffering() {
        let d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::TooLarge { size: 101, max: 100 }));
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::InvalidSize(-1)));
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&framed(b"abcdef")[..5]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(d.missing(&buf), 5);
        assert_eq!(d.finish(&buf), Err(FrameError::Truncated(5)));
    }

    #[test]
    fn parses_the_fixed_header() {
        let h = FrameHeader::parse(&[0, 1, 0, 12, 0, 0, 0, 7, 0xff]).unwrap();
        assert_eq!(h, FrameHeader { api_key: 1, api_version: 12, correlation_id: 7 });
        assert!(FrameHeader::parse(&[0, 1]).is_none());
    }
}

/// Property tests: whatever bytes a client sends, however the reads split them, the decoder
/// agrees with itself, never trusts a claimed size and never panics.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// What decoding a stream yields: its frames, then the error that stopped it (if any), or the
    /// bytes left buffered.
    #[derive(Debug, PartialEq)]
    struct Decoded {
        frames: Vec<Bytes>,
        error: Option<FrameError>,
        rest: BytesMut,
    }

    /// Drain every complete frame from `buf` into `out`; false once the decoder has failed.
    fn drain(d: &FrameDecoder, buf: &mut BytesMut, out: &mut Decoded) -> bool {
        loop {
            let before = buf.len();
            match d.decode(buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() as u64 <= u64::from(d.max), "a frame larger than max");
                    assert_eq!(buf.len(), before - 4 - frame.len(), "consumed more than one frame");
                    out.frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "waiting must not consume");
                    return true;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before, "an error must not consume");
                    out.error = Some(e);
                    return false;
                }
            }
        }
    }

    /// Feed `stream` in pieces ending at `cuts` (sorted offsets), as separate socket reads would.
    fn feed(d: &FrameDecoder, stream: &[u8], cuts: &[usize]) -> Decoded {
        let mut out = Decoded { frames: Vec::new(), error: None, rest: BytesMut::new() };
        let mut buf = BytesMut::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(at, stream.len());
            buf.extend_from_slice(&stream[at..cut]);
            at = cut;
            if !drain(d, &mut buf, &mut out) {
                break;
            }
            let missing = d.missing(&buf);
            if buf.len() >= 4 {
                assert!(missing as u64 <= u64::from(d.max), "missing() asked for {missing} > max");
            } else {
                assert_eq!(missing, 4 - buf.len());
            }
        }
        // After an error the connection closes: what was buffered by then depends on the reads.
        out.rest = if out.error.is_none() { buf } else { BytesMut::new() };
        out
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    /// A maximum frame size: small ones (so random prefixes exceed them), and the extremes.
    fn max_size() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..=64, Just(i32::MAX as u32), Just(u32::MAX), any::<u32>()]
    }

    /// A stream of valid frames (bodies of up to 48 bytes) followed by arbitrary bytes.
    fn stream() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>)> {
        (vec(vec(any::<u8>(), 0..48), 0..6), vec(any::<u8>(), 0..16))
    }

    /// A size prefix that may lie: negative, oversized, huge, or near the bytes that follow.
    fn prefix() -> impl Strategy<Value = i32> {
        prop_oneof![Just(i32::MIN), Just(-1), Just(0), Just(i32::MAX), -4i32..=80, any::<i32>(),]
    }

    /// 512 cases per property; `PROPTEST_CASES` (and proptest's other variables) for a longer run.
    fn config() -> ProptestConfig {
        let config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_some() {
            config
        } else {
            ProptestConfig { cases: 512, ..config }
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn split_reads_yield_the_same_frames(
            (bodies, tail) in stream(),
            max in max_size(),
            mut cuts in vec(0usize..400, 0..12),
        ) {
            let mut bytes: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
            bytes.extend_from_slice(&tail);
            cuts.sort_unstable();
            let d = FrameDecoder::new(max);
            let whole = feed(&d, &bytes, &[]);
            let split = feed(&d, &bytes, &cuts);
            let bytewise: Vec<usize> = (0..bytes.len()).collect();
            let one_by_one = feed(&d, &bytes, &bytewise);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(&one_by_one, &whole);
            if whole.error.is_none() {
                prop_assert_eq!(d.finish(&whole.rest).is_ok(), whole.rest.is_empty());
            }
        }

        #[test]
        fn random_streams_split_the_same_way(
            bytes in vec(any::<u8>(), 0..256),
            max in max_size(),
            mut cuts in vec(0usize..256, 0..12),
        ) {
            cuts.sort_unstable();
            let d = FrameDecoder::new(max);
            prop_assert_eq!(feed(&d, &bytes, &cuts), feed(&d, &bytes, &[]));
        }

        #[test]
        fn valid_frames_round_trip(
            bodies in vec(vec(any::<u8>(), 0..64), 0..8),
            slack in 0u32..16,
        ) {
            let max = bodies.iter().map(Vec::len).max().unwrap_or(0) as u32 + slack;
            let d = FrameDecoder::new(max);
            let bytes: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
            let out = feed(&d, &bytes, &[]);
            prop_assert_eq!(out.error, None);
            prop_assert!(out.rest.is_empty());
            prop_assert_eq!(d.finish(&out.rest), Ok(()));
            let got: Vec<Vec<u8>> = out.frames.iter().map(|f| f.to_vec()).collect();
            prop_assert_eq!(&got, &bodies);
            for f in &out.frames {
                match FrameHeader::parse(f) {
                    Some(h) => {
                        prop_assert!(f.len() >= 8);
                        prop_assert_eq!(h.api_key, i16::from_be_bytes([f[0], f[1]]));
                        prop_assert_eq!(h.api_version, i16::from_be_bytes([f[2], f[3]]));
                        prop_assert_eq!(h.correlation_id, i32::from_be_bytes([f[4], f[5], f[6], f[7]]));
                    }
                    None => prop_assert!(f.len() < 8),
                }
            }
        }

        #[test]
        fn lying_prefixes_error_or_wait(
            size in prefix(),
            body in vec(any::<u8>(), 0..96),
            max in max_size(),
        ) {
            let d = FrameDecoder::new(max);
            let mut buf = BytesMut::from(&size.to_be_bytes()[..]);
            buf.extend_from_slice(&body);
            let len = buf.len();
            let result = d.decode(&mut buf);
            if size < 0 {
                prop_assert_eq!(result, Err(FrameError::InvalidSize(size)));
                prop_assert_eq!(d.missing(&buf), 0);
            } else if size as u64 > u64::from(max) {
                prop_assert_eq!(result, Err(FrameError::TooLarge { size: size as u64, max }));
                prop_assert_eq!(d.missing(&buf), 0);
            } else if body.len() < size as usize {
                prop_assert_eq!(result, Ok(None));
                prop_assert_eq!(buf.len(), len);
                let missing = d.missing(&buf);
                prop_assert_eq!(missing, size as usize - body.len());
                prop_assert!(missing as u64 <= u64::from(max));
                prop_assert_eq!(d.finish(&buf), Err(FrameError::Truncated(len)));
            } else {
                let frame = result.unwrap().unwrap();
                prop_assert_eq!(&frame[..], &body[..size as usize]);
                prop_assert_eq!(&buf[..], &body[size as usize..]);
            }
        }

        #[test]
        fn short_buffers_wait_for_the_prefix(bytes in vec(any::<u8>(), 0..4), max in max_size()) {
            let d = FrameDecoder::new(max);
            let mut buf = BytesMut::from(&bytes[..]);
            prop_assert_eq!(d.decode(&mut buf), Ok(None));
            prop_assert_eq!(d.missing(&buf), 4 - bytes.len());
            prop_assert_eq!(d.finish(&buf).is_ok(), bytes.is_empty());
        }

        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512), max in any::<u32>()) {
            let d = FrameDecoder::new(max);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = FrameHeader::parse(&bytes);
            while let Ok(Some(frame)) = d.decode(&mut buf) {
                let _ = FrameHeader::parse(&frame);
            }
            let _ = d.missing(&buf);
            let _ = d.finish(&buf);
        }
    }
}
