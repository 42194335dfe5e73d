//! The descriptor reserve, end to end: under a low open-file limit (1,024, a common default),
//! the default partition cap refuses partitions with Kafka's POLICY_VIOLATION before the
//! partitions' files take the descriptors that connections need, so with every allowed
//! partition open and written, new Kafka connections and the admin API are still served.
//! (This binary's only test: it lowers its own process's limit.)

use guise_tests::TestServer;
use rskafka::client::ClientBuilder;
use rskafka::client::error::{Error, ProtocolError};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::collections::BTreeMap;
use std::io::{Read, Write};

const LIMIT: u64 = 1024;

#[test]
fn at_the_partition_cap_a_low_descriptor_limit_still_serves_new_connections() {
    let was = getrlimit(Resource::Nofile);
    if was.maximum.is_some_and(|m| m < LIMIT) {
        eprintln!("skipped: the hard limit ({:?}) is below {LIMIT}", was.maximum);
        return;
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(LIMIT), maximum: Some(LIMIT) }).unwrap();
    let server = TestServer::start();
    // The default cap under 1,024 descriptors and 10,000 allowed connections: half the limit.
    let cap = (LIMIT / 2) as i32;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        let controller = client.controller_client().unwrap();
        controller.create_topic("wide", cap - 12, 1, 30_000).await.unwrap();
        controller.create_topic("narrow", 12, 1, 30_000).await.unwrap();
        match controller.create_topic("one-more", 1, 1, 30_000).await {
            Err(Error::ServerError { protocol_error: ProtocolError::PolicyViolation, .. }) => {}
            other => panic!("a partition beyond the cap: {other:?}"),
        }
        // Every partition written, so each holds its files open.
        for p in 0..cap - 12 {
            let pc = client.partition_client("wide", p, UnknownTopicHandling::Retry).await.unwrap();
            let record = Record {
                key: None,
                value: Some(vec![b'x'; 16]),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            };
            pc.produce(vec![record], Compression::NoCompression).await.unwrap();
        }
    });
    // New connections: 200 Kafka clients at once, each answered, and the admin API.
    let clients: Vec<std::net::TcpStream> = (0..200i32)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(server.kafka_addr)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            // ApiVersions v0, correlation id i, no client id.
            let mut req = vec![0, 18, 0, 0];
            req.extend_from_slice(&i.to_be_bytes());
            req.extend_from_slice(&[0xff, 0xff]);
            let mut frame = (req.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&req[..]);
            s.write_all(&frame[..4]).unwrap();
            s.write_all(&req).unwrap();
            s
        })
        .collect();
    for (i, mut s) in clients.into_iter().enumerate() {
        let mut head = [0u8; 8];
        s.read_exact(&mut head).unwrap_or_else(|e| panic!("connection {i} not answered: {e}"));
        assert_eq!(i32::from_be_bytes(head[4..8].try_into().unwrap()), i as i32, "connection {i}");
    }
    let mut admin = std::net::TcpStream::connect(server.admin_addr).unwrap();
    admin.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    admin.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
