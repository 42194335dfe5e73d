//! Hot swap of the translator through the admin API while real clients keep working.
//!
//! The two builds that alternate are the translator (`modules/kafka`) and `modules/faulty` (the
//! same translator plus deliberate faults behind client ids nobody here uses): two components
//! with different content hashes that serve Kafka the same way.

use guise_host::admin::client::AdminClient;
use guise_host::wasm::{DEFAULT_TRANSLATOR, ModuleView};
use guise_test_guests::FAULTY_TRANSLATOR_PATH;
use guise_tests::TestServer;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "swapped";

fn calls(m: &ModuleView, version: u32) -> u64 {
    m.versions.iter().find(|v| v.version == version).map_or(0, |v| v.stats.calls)
}

/// Produce and fetch continuously while the translator is deployed 10 times, alternating two
/// builds: no client sees an error, every acknowledged record is read back once and in order,
/// and each version's call counter shows that requests after its swap ran on it.
#[test]
fn ten_swaps_under_continuous_produce_and_fetch() {
    let server = TestServer::start();
    let admin = AdminClient::new(server.admin_addr.to_string());
    let builds = [std::fs::read(FAULTY_TRANSLATOR_PATH).unwrap(), DEFAULT_TRANSLATOR.to_vec()];
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));

    // Producer: acks=all, 16 records in flight at a time; remembers what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    let producer_thread = {
        let (stop, errors, acked, bootstrap) =
            (stop.clone(), errors.clone(), acked.clone(), server.bootstrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "30000")
                .create()
                .unwrap();
            let mut n = 0u64;
            rt.block_on(async {
                while !stop.load(Ordering::Relaxed) {
                    let values: Vec<String> = (n..n + 16).map(|i| format!("record-{i}")).collect();
                    n += 16;
                    // Enqueue all 16, then wait for their acknowledgements.
                    let mut pending = Vec::new();
                    for v in &values {
                        let record = FutureRecord::<str, str>::to(TOPIC).payload(v).key("k");
                        match producer.send_result(record) {
                            Ok(delivery) => pending.push((delivery, v.clone())),
                            Err((e, _)) => errors.lock().unwrap().push(format!("enqueue {v}: {e}")),
                        }
                    }
                    for (delivery, value) in pending {
                        match delivery.await {
                            Ok(Ok(d)) => acked.lock().unwrap().push((d.offset, value)),
                            Ok(Err((e, _))) => errors.lock().unwrap().push(format!("produce {value}: {e}")),
                            Err(_) => errors.lock().unwrap().push(format!("produce {value}: canceled")),
                        }
                    }
                }
            });
        })
    };

    // Consumer: fetches from the start, continuously.
    let consumed = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let consumer_thread = {
        let (errors, consumed, target, bootstrap) =
            (errors.clone(), consumed.clone(), target.clone(), server.bootstrap());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "hot-swap")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "100")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
            consumer.assign(&tpl).unwrap();
            let deadline = Instant::now() + Duration::from_secs(600);
            while (consumed.lock().unwrap().len() as u64) < target.load(Ordering::Relaxed) {
                assert!(Instant::now() < deadline, "the consumer did not catch up");
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => consumed.lock().unwrap().push((
                        m.offset(),
                        String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
                    )),
                    Some(Err(e)) => errors.lock().unwrap().push(format!("consume: {e}")),
                    None => {}
                }
            }
        })
    };

    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("the first acknowledgements", &|| acked.lock().unwrap().len() >= 100);

    let mut stray_calls = Vec::new();
    for i in 0..10 {
        let before = admin.show("kafka").unwrap();
        let old = before.active.unwrap();
        let deployed = admin.deploy("kafka", &builds[i % 2]).unwrap();
        let new = deployed.version;
        assert_eq!(new, old + 1);
        let old_at_swap = calls(&admin.show("kafka").unwrap(), old);
        // The clients go on, now on the new version ...
        wait_for("requests on the new version", &|| calls(&admin.show("kafka").unwrap(), new) >= 20);
        // ... and the old one got at most the requests that had already started when it was
        // swapped out (one per connection).
        let shown = admin.show("kafka").unwrap();
        assert_eq!(shown.active, Some(new));
        stray_calls.push(calls(&shown, old) - old_at_swap);
        let acked_now = acked.lock().unwrap().len();
        wait_for("more acknowledgements", &|| acked.lock().unwrap().len() >= acked_now + 50);
    }
    stop.store(true, Ordering::Relaxed);
    producer_thread.join().unwrap();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    target.store(acked.len() as u64, Ordering::Relaxed);
    consumer_thread.join().unwrap();

    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    assert!(stray_calls.iter().all(|&n| n <= 4), "calls on a swapped-out version: {stray_calls:?}");
    let mut acked_sorted = acked.clone();
    acked_sorted.sort();
    let consumed = consumed.lock().unwrap();
    assert_eq!(acked_sorted.len(), consumed.len(), "every acknowledged record read once");
    assert_eq!(*consumed, acked_sorted, "in order, at the acknowledged offsets");
    for (i, (offset, _)) in consumed.iter().enumerate() {
        assert_eq!(*offset, i as i64, "offsets are contiguous");
    }
    let shown = admin.show("kafka").unwrap();
    assert_eq!(shown.versions.len(), 10, "module_keep_versions (10) versions are kept");
    eprintln!(
        "{} records acknowledged and read back across 10 swaps; calls on swapped-out versions after each swap: {stray_calls:?}",
        acked.len()
    );
}

/// A fetch parked before a swap is re-run on the new version when data arrives.
#[test]
fn a_parked_fetch_is_rerun_on_the_new_version() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
    use std::io::{Read, Write};

    let server = TestServer::start();
    let admin = AdminClient::new(server.admin_addr.to_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(rskafka::client::ClientBuilder::new(vec![server.bootstrap()]).build()).unwrap();
    rt.block_on(client.controller_client().unwrap().create_topic("parked-swap", 1, 1, 5000)).unwrap();
    let produce = |value: &str| {
        rt.block_on(async {
            let pc = client
                .partition_client("parked-swap", 0, rskafka::client::partition::UnknownTopicHandling::Error)
                .await
                .unwrap();
            let record = rskafka::record::Record {
                key: None,
                value: Some(value.as_bytes().to_vec()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            };
            pc.produce(vec![record], rskafka::client::partition::Compression::NoCompression).await.unwrap()
        })
    };
    produce("before");

    // Park a fetch at the end of the log (it can only be woken by an append).
    let fetch = FetchRequest::default()
        .with_max_wait_ms(i32::MAX)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("parked-swap")))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let frame = guise_tests::wire::request_frame(ApiKey::Fetch, 12, 12, 7, "raw", &fetch);
    let v1 = admin.show("kafka").unwrap();
    assert_eq!(v1.active, Some(1));
    let mut s = std::net::TcpStream::connect(server.kafka_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&guise_tests::wire::sized(&frame)).unwrap();
    // Wait until the translator has run it once (and parked it).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut parked_at = calls(&admin.show("kafka").unwrap(), 1);
    while parked_at < calls(&v1, 1) + 1 {
        assert!(Instant::now() < deadline, "the fetch never reached the translator");
        std::thread::sleep(Duration::from_millis(20));
        parked_at = calls(&admin.show("kafka").unwrap(), 1);
    }

    let v2 = admin.deploy("kafka", &std::fs::read(FAULTY_TRANSLATOR_PATH).unwrap()).unwrap();
    assert_eq!(v2.version, 2);
    produce("after the swap");

    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, FetchResponse::header_version(12)).unwrap();
    let r = FetchResponse::decode(&mut body, 12).unwrap();
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 2));
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()), "the woken fetch carries the new record");

    let shown = admin.show("kafka").unwrap();
    assert_eq!(
        calls(&shown, 1),
        parked_at,
        "nothing ran on version 1 after the swap, the parked fetch included"
    );
    assert!(calls(&shown, 2) >= 2, "the produce and the re-run fetch ran on version 2: {shown:?}");
}
