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

    /// Bytes still missing for the frame at the head of `buf` (0 when unknown or complete).
    pub fn missing(&self, buf: &BytesMut) -> usize {
        if buf.len() < 4 {
            return 4 - buf.len();
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize;
        (4 + size).saturating_sub(buf.len())
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
