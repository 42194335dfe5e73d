//! Kafka wire helpers for the tests and benchmarks, encoded with the `kafka-protocol` crate.
//! (The translator's own unit tests have theirs in `modules/kafka/src/test_util.rs`: depending on
//! this crate would make them build the host.)

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// Send one request (`body` at `version`) on a new connection to `addr` and decode the response;
/// an I/O or decoding failure is an error (as when a broker closes the connection).
pub fn call<Req: Encodable, Resp: kafka_protocol::protocol::Decodable>(
    addr: std::net::SocketAddr,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> std::io::Result<Resp> {
    use kafka_protocol::protocol::Decodable;
    use std::io::{Read, Write};
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.write_all(&sized(&request_frame(key, version, version, 1, "guise-tests", body)))?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut response = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    stream.read_exact(&mut response)?;
    let mut buf = Bytes::from(response);
    kafka_protocol::messages::ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .map_err(|e| bad(format!("response header: {e}")))?;
    Resp::decode(&mut buf, version).map_err(|e| bad(format!("response body: {e}")))
}

/// A request frame without its size prefix: a header naming `header_version_of` (usually the
/// body's version; another to test version handling) and `body` encoded at `version`.
pub fn request_frame<R: Encodable>(
    key: ApiKey,
    version: i16,
    header_version_of: i16,
    correlation_id: i32,
    client_id: &str,
    body: &R,
) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(header_version_of)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode request header");
    body.encode(&mut buf, version).expect("encode request body");
    buf.freeze()
}

/// `frame` with its 4-byte size prefix, as it goes on the wire.
pub fn sized(frame: &[u8]) -> Vec<u8> {
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    out
}

/// One uncompressed v2 record batch (one batch, as a Produce v3+ must carry): a record per
/// value, keys `k0`, `k1`, …
pub fn record_batch(values: &[&[u8]]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where `offset - sequence` changes: this keeps it
            // constant (one batch) while the batch's base sequence stays -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encode record batch");
    buf.freeze()
}
