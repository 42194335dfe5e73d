//! Raw-protocol checks that a client library hides: long-poll wake-up, unsupported versions,
//! KIP-511's ApiVersions fallback, and bad frames. Requests are encoded with the `kafka-protocol`
//! crate (nobody here wrote it), over a plain TCP socket.

use bytes::{Buf, Bytes};
use guise_tests::TestServer;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(server.kafka_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn send_raw(s: &mut TcpStream, frame: &[u8]) {
    s.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
    s.write_all(frame).unwrap();
}

fn request<R: Encodable>(key: ApiKey, version: i16, header_version_of: i16, body: &R) -> Vec<u8> {
    guise_tests::wire::request_frame(key, version, header_version_of, 7, "raw", body).to_vec()
}

/// Read one response frame; None when the server closed the connection. A read timeout is a
/// hang, never a close: it fails the test.
fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    fn read(s: &mut TcpStream, buf: &mut [u8]) -> Option<()> {
        match s.read_exact(buf) {
            Ok(()) => Some(()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("no response and no close: the server hung ({e})")
            }
            Err(_) => None,
        }
    }
    let mut size = [0u8; 4];
    read(s, &mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    read(s, &mut body)?;
    Some(Bytes::from(body))
}

fn decode<R: Decodable + HeaderVersion>(mut frame: Bytes, version: i16, header_version: i16) -> R {
    let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
    assert_eq!(header.correlation_id, 7);
    let r = R::decode(&mut frame, version).unwrap();
    assert!(!frame.has_remaining(), "trailing bytes");
    r
}

fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the connection to close, got {other:?}"),
    }
}

#[test]
fn api_versions_at_every_version_and_kip511_fallback() {
    let server = TestServer::start();
    for v in 0..=4 {
        let mut s = connect(&server);
        send_raw(&mut s, &request(ApiKey::ApiVersions, v, v, &ApiVersionsRequest::default()));
        // The ApiVersions response header is v0 even for flexible versions.
        let r: ApiVersionsResponse = decode(read_frame(&mut s).unwrap(), v, 0);
        assert_eq!(r.error_code, 0);
        let fetch = r.api_keys.iter().find(|k| k.api_key == ApiKey::Fetch as i16).unwrap();
        assert_eq!((fetch.min_version, fetch.max_version), (4, 12));
        let join = r.api_keys.iter().find(|k| k.api_key == ApiKey::JoinGroup as i16).unwrap();
        assert_eq!((join.min_version, join.max_version), (0, 9));
        // Transactions: the client versions of AddPartitionsToTxn (v4+ are broker-to-broker),
        // EndTxn up to v5, and (v3+) `transaction.version` finalized at 2, Kafka 4's default.
        let add = r.api_keys.iter().find(|k| k.api_key == ApiKey::AddPartitionsToTxn as i16).unwrap();
        assert_eq!((add.min_version, add.max_version), (0, 3));
        let end = r.api_keys.iter().find(|k| k.api_key == ApiKey::EndTxn as i16).unwrap();
        assert_eq!((end.min_version, end.max_version), (0, 5));
        let tv: Vec<(i16, i16)> = r
            .finalized_features
            .iter()
            .filter(|f| f.name.as_str() == "transaction.version")
            .map(|f| (f.min_version_level, f.max_version_level))
            .collect();
        assert_eq!(tv, if v >= 3 { vec![(2, 2)] } else { vec![] }, "v{v}");
    }
    // A version newer than ours: a v0 response with UNSUPPORTED_VERSION and our range.
    let mut s = connect(&server);
    send_raw(&mut s, &request(ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default()));
    let r: ApiVersionsResponse = decode(read_frame(&mut s).unwrap(), 0, 0);
    assert_eq!(r.error_code, 35);
    let av = r.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16).unwrap();
    assert_eq!((av.min_version, av.max_version), (0, 4));
}

#[test]
fn unsupported_versions_and_unknown_keys_close_the_connection() {
    let server = TestServer::start();
    // Produce v2 is below our range; Fetch v13 above it; api key 999 unknown.
    let mut s = connect(&server);
    send_raw(&mut s, &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0]);
    assert_closed(&mut s, "produce v2");
    let mut s = connect(&server);
    send_raw(&mut s, &[0, 1, 0, 13, 0, 0, 0, 1, 0, 0, 0]);
    assert_closed(&mut s, "fetch v13");
    let mut s = connect(&server);
    send_raw(&mut s, &[3, 231, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_closed(&mut s, "api key 999");
    // A frame too short for a header, a negative size, and garbage after a valid header.
    let mut s = connect(&server);
    send_raw(&mut s, &[0, 18]);
    assert_closed(&mut s, "short frame");
    let mut s = connect(&server);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert_closed(&mut s, "negative size");
    let mut s = connect(&server);
    send_raw(&mut s, &[0, 3, 0, 9, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_closed(&mut s, "malformed metadata body");
    // The server is still serving.
    let mut s = connect(&server);
    send_raw(&mut s, &request(ApiKey::ApiVersions, 0, 0, &ApiVersionsRequest::default()));
    assert!(read_frame(&mut s).is_some());
}

#[test]
fn oversized_frames_close_only_that_connection() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 64 * 1024;
        c.message_max_bytes = 32 * 1024;
    });
    let mut bad = connect(&server);
    let mut good = connect(&server);
    bad.write_all(&(64 * 1024 + 1i32).to_be_bytes()).unwrap();
    assert_closed(&mut bad, "oversized frame");
    send_raw(&mut good, &request(ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default()));
    assert!(read_frame(&mut good).is_some(), "other connections keep working");
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20)
                        .with_log_start_offset(-1),
                ]),
        ])
}

/// A fetch parked on an empty partition returns as soon as a record arrives. Its max wait is
/// i32::MAX ms (~24 days), so only the append can wake it: a missed wake-up hangs until the
/// socket's 60 s read timeout and fails the test.
#[test]
fn parked_fetch_wakes_when_a_record_arrives() {
    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(rskafka::client::ClientBuilder::new(vec![server.bootstrap()]).build()).unwrap();
    rt.block_on(client.controller_client().unwrap().create_topic("parked", 1, 1, 5000)).unwrap();

    for version in [4i16, 11, 12] {
        let mut s = connect(&server);
        let start_offset = rt.block_on(async {
            let pc = client.partition_client("parked", 0, UnknownTopicHandling::Error).await.unwrap();
            pc.get_offset(rskafka::client::partition::OffsetAt::Latest).await.unwrap()
        });
        send_raw(
            &mut s,
            &request(ApiKey::Fetch, version, version, &fetch_request("parked", start_offset, i32::MAX)),
        );
        // Nothing yet: the request is parked (no response within a moment).
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut probe = [0u8; 1];
        assert!(s.peek(&mut probe).is_err(), "v{version}: a fetch on an empty partition must wait");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();

        rt.block_on(async {
            let pc = client.partition_client("parked", 0, UnknownTopicHandling::Error).await.unwrap();
            let record = rskafka::record::Record {
                key: Some(b"k".to_vec()),
                value: Some(format!("wake v{version}").into_bytes()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            };
            pc.produce(vec![record], Compression::NoCompression).await.unwrap();
        });
        let r: FetchResponse =
            decode(read_frame(&mut s).unwrap(), version, FetchResponse::header_version(version));
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.high_watermark, start_offset + 1);
        assert!(
            p.records.as_ref().is_some_and(|r| !r.is_empty()),
            "v{version}: the woken fetch carries the record"
        );
    }
}

/// Parked fetches hold no instance slot: more long-polling fetches than the translator's pool
/// has data slots (120 of 128) park on an empty partition, and a produce still gets a slot and
/// wakes every one of them with its record. Were a parked request to keep its slot, the produce
/// would wait for the fetches' 60 s deadline and they would answer without the record.
#[test]
fn parked_fetches_do_not_hold_instance_slots() {
    const FETCHES: usize = 130;
    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(rskafka::client::ClientBuilder::new(vec![server.bootstrap()]).build()).unwrap();
    rt.block_on(client.controller_client().unwrap().create_topic("many-parked", 1, 1, 5000)).unwrap();
    let mut conns: Vec<TcpStream> = (0..FETCHES)
        .map(|_| {
            let mut s = connect(&server);
            send_raw(&mut s, &request(ApiKey::Fetch, 12, 12, &fetch_request("many-parked", 0, 60_000)));
            s
        })
        .collect();
    // The last one is parked (so all before it were admitted and parked or are parking).
    let last = conns.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(last.peek(&mut [0u8; 1]).is_err(), "a fetch on an empty partition must wait");
    last.set_read_timeout(Some(Duration::from_secs(120))).unwrap();

    rt.block_on(async {
        let pc = client.partition_client("many-parked", 0, UnknownTopicHandling::Error).await.unwrap();
        let record = rskafka::record::Record {
            key: Some(b"k".to_vec()),
            value: Some(b"wake them all".to_vec()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        pc.produce(vec![record], Compression::NoCompression).await.unwrap();
    });
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let r: FetchResponse = decode(read_frame(s).unwrap(), 12, FetchResponse::header_version(12));
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {i}");
        assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()), "fetch {i} was woken with the record");
    }
}

/// Metadata returns the advertised address, not the bind address.
#[test]
fn metadata_advertises_the_configured_address() {
    let server = TestServer::start_with(|c| {
        c.advertised_kafka_addr = Some("kafka.example.internal:19092".into());
        c.node_id = 7;
    });
    for version in [1i16, 4, 9, 12] {
        let mut s = connect(&server);
        send_raw(&mut s, &request(ApiKey::Metadata, version, version, &MetadataRequest::default()));
        let r: MetadataResponse =
            decode(read_frame(&mut s).unwrap(), version, MetadataResponse::header_version(version));
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].node_id.0, 7);
        assert_eq!(r.brokers[0].host.as_str(), "kafka.example.internal");
        assert_eq!(r.brokers[0].port, 19092);
        assert_eq!(r.controller_id.0, 7);
    }
}

/// On shutdown a parked fetch is answered (empty) before its deadline, not dropped.
#[test]
fn shutdown_answers_parked_fetches() {
    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(rskafka::client::ClientBuilder::new(vec![server.bootstrap()]).build()).unwrap();
    rt.block_on(client.controller_client().unwrap().create_topic("idle", 1, 1, 5000)).unwrap();
    let mut s = connect(&server);
    send_raw(&mut s, &request(ApiKey::Fetch, 12, 12, &fetch_request("idle", 0, 60_000)));
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut probe = [0u8; 1];
    assert!(s.peek(&mut probe).is_err(), "the fetch is parked");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let reader = std::thread::spawn(move || read_frame(&mut s));
    let _dir = server.stop();
    let frame = reader.join().unwrap().expect("a response before the connection closed");
    let r: FetchResponse = decode(frame, 12, FetchResponse::header_version(12));
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
}

/// A small frame claiming a huge array: whatever the decoder does with the claimed count happens
/// inside the guest, under its memory cap, so the host's memory does not grow with it. The
/// request gets an error or its connection closes; the host keeps serving.
#[test]
fn huge_claimed_array_counts_are_contained() {
    let server = TestServer::start();
    for (key, version) in [(3i16, 1i16), (0, 3), (1, 4), (19, 2), (32, 1)] {
        let mut s = connect(&server);
        // Header v1: key, version, correlation id, client id "x"; then an int32 count of 2^31-1.
        let mut frame = Vec::new();
        frame.extend_from_slice(&key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&1i16.to_be_bytes());
        frame.push(b'x');
        if key == 0 {
            frame.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
            frame.extend_from_slice(&1i16.to_be_bytes()); // acks
            frame.extend_from_slice(&1000i32.to_be_bytes()); // timeout
        }
        if key == 1 {
            frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // replica id -1
            frame.extend_from_slice(&100i32.to_be_bytes()); // max wait
            frame.extend_from_slice(&1i32.to_be_bytes()); // min bytes
            frame.extend_from_slice(&1000i32.to_be_bytes()); // max bytes
            frame.push(0); // isolation level
        }
        frame.extend_from_slice(&i32::MAX.to_be_bytes());
        frame.extend_from_slice(&[0u8; 16]);
        send_raw(&mut s, &frame);
        // An error response or a close, never a hang: read until EOF or a frame.
        if let Some(response) = read_frame(&mut s) {
            assert_eq!(&response[..4], &7i32.to_be_bytes(), "api key {key}: a response to this request");
        }
    }
    let mut s = connect(&server);
    send_raw(&mut s, &request(ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default()));
    assert!(read_frame(&mut s).is_some(), "still serving");
}

/// Two connections, each answered `request`.
fn two_served(server: &TestServer, request: &[u8]) -> (TcpStream, TcpStream) {
    let (mut a, mut b) = (connect(server), connect(server));
    for s in [&mut a, &mut b] {
        send_raw(s, request);
        assert!(read_frame(s).is_some());
    }
    (a, b)
}

/// Beyond max_connections a new connection is closed at once; the others keep working, and a
/// freed slot is usable again.
#[test]
fn connections_beyond_the_cap_are_refused() {
    let server = TestServer::start_with(|c| c.max_connections = 2);
    let api_versions = request(ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default());
    let (mut a, b) = two_served(&server, &api_versions);
    let mut c = connect(&server);
    assert_closed(&mut c, "third connection");
    send_raw(&mut a, &api_versions);
    assert!(read_frame(&mut a).is_some(), "existing connections keep working");
    drop(b);
    // Once the server has noticed the close, a new connection is accepted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut d = connect(&server);
        send_raw(&mut d, &api_versions);
        if read_frame(&mut d).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Beyond max_connections_per_ip, a new connection from that address is closed at once, while
/// other addresses still connect (all of 127.0.0.0/8 is loopback on Linux).
#[test]
fn connections_beyond_the_per_address_cap_are_refused() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 2);
    let api_versions = request(ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default());
    let (mut a, _b) = two_served(&server, &api_versions);
    let mut c = connect(&server);
    assert_closed(&mut c, "a third connection from 127.0.0.1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut other = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let s = socket.connect(server.kafka_addr).await.unwrap().into_std().unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    });
    send_raw(&mut other, &api_versions);
    assert!(read_frame(&mut other).is_some(), "another address is served");
    send_raw(&mut a, &api_versions);
    assert!(read_frame(&mut a).is_some(), "existing connections keep working");
}

/// connections.max.idle.ms: a connection with nothing received, in flight or sent for that long
/// is closed; one that keeps making requests is not; a Kafka client whose connection was
/// closed while idle reconnects and carries on.
#[test]
fn idle_connections_are_closed_and_clients_reconnect() {
    let server = TestServer::start_with(|c| c.connections_max_idle_ms = 700);
    let api_versions = request(ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default());
    let mut idle = connect(&server);
    let mut busy = connect(&server);
    send_raw(&mut idle, &api_versions);
    assert!(read_frame(&mut idle).is_some());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        send_raw(&mut busy, &api_versions);
        assert!(read_frame(&mut busy).is_some(), "a busy connection stays open");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_closed(&mut idle, "the idle connection");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        let controller = client.controller_client().unwrap();
        controller.create_topic("idle", 1, 1, 5_000).await.unwrap();
        let pc = client.partition_client("idle", 0, UnknownTopicHandling::Retry).await.unwrap();
        let record = || rskafka::record::Record {
            key: None,
            value: Some(b"v".to_vec()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        let none = Compression::NoCompression;
        assert_eq!(pc.produce(vec![record()], none).await.unwrap(), [0]);
        tokio::time::sleep(Duration::from_secs(2)).await; // its connection is closed meanwhile
        assert_eq!(pc.produce(vec![record()], none).await.unwrap(), [1], "after reconnecting");
    });
}

/// A frame whose first bytes arrived must arrive whole within frame_timeout_ms: a client that
/// starts a large request and stalls is closed (and holds no memory for long); others are
/// served meanwhile.
#[test]
fn a_stalled_frame_is_closed_after_frame_timeout() {
    let server = TestServer::start_with(|c| c.frame_timeout_ms = 500);
    let mut stalled = connect(&server);
    stalled.write_all(&(8i32 << 20).to_be_bytes()).unwrap();
    stalled.write_all(&[0u8; 1000]).unwrap();
    let mut other = connect(&server);
    send_raw(&mut other, &request(ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default()));
    assert!(read_frame(&mut other).is_some(), "others are served");
    let started = Instant::now();
    assert_closed(&mut stalled, "the stalled connection");
    assert!(started.elapsed() < Duration::from_secs(30), "closed after {:?}", started.elapsed());
}

/// The admin API takes admin_max_connections at most (each may buffer an upload); a client
/// holding them cannot use more, and the admin API answers again once they are gone.
#[test]
fn admin_connections_beyond_their_cap_are_refused() {
    let server = TestServer::start_with(|c| c.admin_max_connections = 2);
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(server.admin_addr).unwrap()).collect();
    // Both are accepted (and wait for a request head) before the third arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(server.admin_addr).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert_closed(&mut third, "a third admin connection");
    drop(held);
    let admin = guise_host::admin::client::AdminClient::new(server.admin_addr.to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.list_transforms(None).is_err() {
        assert!(Instant::now() < deadline, "the admin API never answered again");
        std::thread::sleep(Duration::from_millis(100));
    }
}
