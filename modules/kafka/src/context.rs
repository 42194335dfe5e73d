//! Per-request context: the decoded header, the body to decode, and response encoding.

use crate::{apis, claims};
use bytes::{Buf, Bytes, BytesMut};
use guise_guest_sdk::{Outcome, Request, Segment, Services};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// The outcome type of a handler running on services `S`.
pub type Out<S> = Outcome<<S as Services>::Buffer>;
/// What an API handler returns: an outcome, or a reason to close the connection.
pub type ApiResult<S> = Result<Out<S>, String>;

/// ApiVersions' key: its response header is always v0, and an unknown version is answered.
pub const API_VERSIONS_KEY: i16 = 18;

pub struct Ctx<'a, S: Services> {
    pub svc: &'a S,
    pub req: &'a Request<'a, S::Buffer>,
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub header: Option<RequestHeader>,
    /// The request body after the header (a slice of `req.bytes`: decoding it keeps record
    /// batches as slices of the frame).
    pub body: Bytes,
    /// The request was parked and its deadline passed (or the host is stopping): answer now.
    pub final_: bool,
}

impl<'a, S: Services> Ctx<'a, S> {
    /// Parse the request header. An unknown API key, an unsupported version (except for
    /// ApiVersions, which is answered with its supported range) or a malformed header yields the
    /// outcome to return at once: closing the connection, as Kafka's broker does.
    pub fn new(svc: &'a S, req: &'a Request<'a, S::Buffer>, final_: bool) -> Result<Self, Out<S>> {
        let bytes = &req.bytes;
        if bytes.len() < 8 {
            return Err(Outcome::Close(format!("request frame of {} bytes is too short", bytes.len())));
        }
        let api_key = i16::from_be_bytes([bytes[0], bytes[1]]);
        let version = i16::from_be_bytes([bytes[2], bytes[3]]);
        let correlation_id = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let mut cx =
            Ctx { svc, req, api_key, version, correlation_id, header: None, body: Bytes::new(), final_ };
        let Some((min, max)) = apis::range(api_key) else {
            return Err(cx.close(format!("unsupported api key {api_key} (version {version})")));
        };
        if version < min || version > max {
            if api_key == API_VERSIONS_KEY {
                // KIP-511: answer with a v0 response carrying UNSUPPORTED_VERSION and our range.
                return Ok(cx);
            }
            let name = apis::name(api_key).unwrap_or("?");
            return Err(cx.close(format!(
                "unsupported version {version} of api key {api_key} ({name}; supported {min}..={max})"
            )));
        }
        let header_version = match ApiKey::try_from(api_key) {
            Ok(key) => key.request_header_version(version),
            Err(()) => return Err(cx.close(format!("unknown api key {api_key}"))),
        };
        let mut buf = bytes.clone();
        match RequestHeader::decode(&mut buf, header_version) {
            Ok(h) => cx.header = Some(h),
            Err(e) => return Err(cx.close(format!("malformed request header: {e}"))),
        }
        cx.body = buf;
        Ok(cx)
    }

    /// Decode the request body as `R` at this request's version. Its array counts are checked
    /// first ([`claims`]): the decoder would reserve memory for whatever count the client claims.
    pub fn decode<R: Decodable>(&self) -> Result<R, String> {
        claims::check(self.api_key, self.version, &self.body)?;
        let mut buf = self.body.clone();
        let r = R::decode(&mut buf, self.version)
            .map_err(|e| format!("malformed request (api key {} v{}): {e}", self.api_key, self.version))?;
        if buf.has_remaining() {
            // Kafka's broker ignores bytes after the fields it knows (librdkafka 2.12 sends some
            // after Metadata v12); so do we, noting it for debugging.
            self.svc.log(
                guise_guest_sdk::Level::Debug,
                &format!(
                    "{} trailing bytes after api key {} v{}",
                    buf.remaining(),
                    self.api_key,
                    self.version
                ),
            );
        }
        Ok(r)
    }

    /// The response header (v0 or v1 per `R`) followed by `body`, as one guest-bytes segment.
    pub fn encode<R: Encodable + HeaderVersion>(&self, body: &R) -> Result<Vec<u8>, String> {
        let header_version =
            if self.api_key == API_VERSIONS_KEY { 0 } else { R::header_version(self.version) };
        self.encode_with_header_version(body, header_version, self.version)
    }

    /// Like [`Ctx::encode`] with an explicit header and body version.
    pub fn encode_with_header_version<R: Encodable>(
        &self,
        body: &R,
        header_version: i16,
        body_version: i16,
    ) -> Result<Vec<u8>, String> {
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(self.correlation_id)
            .encode(&mut out, header_version)
            .map_err(|e| format!("encoding response header: {e}"))?;
        let body_start = out.len();
        body.encode(&mut out, body_version)
            .map_err(|e| format!("encoding response (api key {} v{}): {e}", self.api_key, body_version))?;
        if let Some(offset) = throttle_offset(self.api_key, body_version) {
            let at = body_start + offset;
            if let Some(field) = out.get_mut(at..at + 4) {
                field.copy_from_slice(&self.throttle_ms().to_be_bytes());
            }
        }
        Ok(out.to_vec())
    }

    /// The response's `throttle_time_ms`: how long the host holds the client back for its quotas.
    pub fn throttle_ms(&self) -> i32 {
        if self.api_key == API_VERSIONS_KEY { 0 } else { self.svc.throttle_ms() }
    }

    /// Respond with `body` encoded at this request's version.
    pub fn respond<R: Encodable + HeaderVersion>(&self, body: &R) -> ApiResult<S> {
        Ok(Outcome::Respond(Some(vec![Segment::Bytes(self.encode(body)?)])))
    }

    /// Close the connection, logging why through the host.
    pub fn close(&self, reason: String) -> Out<S> {
        self.svc.log(guise_guest_sdk::Level::Warn, &reason);
        Outcome::Close(reason)
    }

    /// The client id from the request header, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.header.as_ref().and_then(|h| h.client_id.as_deref())
    }
}

/// Where the body of `api_key`'s response at `version` carries `throttle_time_ms` (a byte
/// offset), when it is at a fixed place; Kafka's specs say ([`THROTTLE`], generated).
pub fn throttle_offset(api_key: i16, version: i16) -> Option<usize> {
    let i = THROTTLE.binary_search_by_key(&api_key, |r| r.0).ok()?;
    let (_, first, offset) = THROTTLE[i];
    if version >= first { offset } else { None }
}

// The generated `THROTTLE`: (api key, first version with the field, its offset in the body).
include!(concat!(env!("OUT_DIR"), "/throttle.rs"));
