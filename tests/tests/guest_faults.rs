//! A translator that traps, loops or exhausts its memory on some requests: each such request gets
//! a Kafka error (written by a fresh instance's `error-response`), the failure is counted, and the
//! same connection and every other connection keep working.
//!
//! The broken translator is `modules/faulty`: the real Kafka translator, except for Produce
//! requests whose client id is `fault:trap`, `fault:loop` or `fault:oom`.

use bytes::Bytes;
use guise_tests::{TestServer, wire};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn frame<R: Encodable>(key: ApiKey, version: i16, client_id: &str, body: &R) -> Vec<u8> {
    wire::sized(&wire::request_frame(key, version, version, 11, client_id, body))
}

fn produce_request(topic: &str, value: &str) -> ProduceRequest {
    let records = wire::record_batch(&[value.as_bytes()]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(records)),
            ]),
    ])
}

fn roundtrip<R: Decodable + HeaderVersion>(
    s: &mut TcpStream,
    request: &[u8],
    key: ApiKey,
    version: i16,
) -> R {
    s.write_all(request).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("a response, not a closed connection");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    let hv = if key == ApiKey::ApiVersions { 0 } else { R::header_version(version) };
    assert_eq!(ResponseHeader::decode(&mut body, hv).unwrap().correlation_id, 11);
    R::decode(&mut body, version).unwrap()
}

/// Produce v9 from `client_id`; the partition's (error code, base offset).
fn produce(s: &mut TcpStream, client_id: &str, value: &str) -> (i16, i64) {
    let req = frame(ApiKey::Produce, 9, client_id, &produce_request("faults", value));
    let r: ProduceResponse = roundtrip(s, &req, ApiKey::Produce, 9);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn trapping_looping_and_memory_hungry_guests_are_contained() {
    let faulty = std::path::PathBuf::from(guise_test_guests::FAULTY_TRANSLATOR_PATH);
    let server = TestServer::start_with(|c| {
        c.translator = Some(faulty);
        c.guest_timeout_ms = 300;
        c.max_frame_bytes = 1 << 20;
        c.message_max_bytes = 512 << 10;
        c.guest_memory_bytes = Some(16 << 20);
    });
    let connect = || {
        let s = TcpStream::connect(server.kafka_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    };
    let mut good = connect();
    assert_eq!(produce(&mut good, "well-behaved", "first"), (0, 0));

    // (client id, the error code Kafka clients get): a trap or a memory bomb is
    // UNKNOWN_SERVER_ERROR; a guest that runs past its CPU deadline is REQUEST_TIMED_OUT.
    let cases = [("fault:trap", -1i16), ("fault:loop", 7), ("fault:oom", -1)];
    let failures_before = server.server().runtime.failures.load(Ordering::Relaxed);
    for (n, (client, code)) in cases.iter().enumerate() {
        let mut bad = connect();
        let (error, offset) = produce(&mut bad, client, "never stored");
        assert_eq!((error, offset), (*code, -1), "{client}");
        // The same connection still works (the failed instance was thrown away) ...
        let av: ApiVersionsResponse = roundtrip(
            &mut bad,
            &frame(ApiKey::ApiVersions, 3, client, &ApiVersionsRequest::default()),
            ApiKey::ApiVersions,
            3,
        );
        assert_eq!(av.error_code, 0, "{client}: connection usable after the failure");
        // ... and so does everyone else's; nothing of the failed request was appended.
        assert_eq!(
            produce(&mut good, "well-behaved", &format!("after {client}")),
            (0, n as i64 + 1),
            "{client}"
        );
    }
    let failures = server.server().runtime.failures.load(Ordering::Relaxed) - failures_before;
    assert_eq!(failures, 3, "each failure is counted once");
    // Warm instances are on by default: the requests above ran on instances earlier ones left
    // (the failures too), and no failed instance served again (the answers above).
    let warm = server.server().runtime.warm_calls.load(Ordering::Relaxed);
    assert!(warm >= 3, "requests ran on warm instances ({warm})");
}
