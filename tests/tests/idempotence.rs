//! Idempotent producers with librdkafka (`enable.idempotence=true`): a produce whose response is
//! lost after the host appended it is retried by the client, and the log holds every record
//! exactly once, in order. The loss is real: a proxy between client and host drops the
//! connection instead of delivering the produce response.

use guise_tests::TestServer;
use guise_tests::proxy::Proxy;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const PRODUCE: i16 = 0;

#[test]
fn a_lost_produce_response_is_retried_without_duplicates() {
    let proxy = Proxy::listen("127.0.0.1:0");
    let server = TestServer::start_with(|c| c.advertised_kafka_addr = Some(proxy.addr.to_string()));
    proxy.forward_to(server.kafka_addr);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", proxy.addr.to_string())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "50")
        .create()
        .unwrap();
    // Warm up (metadata, InitProducerId), then lose the response of the next produce, twice.
    let first = rt.block_on(
        producer.send(FutureRecord::<str, str>::to("idem").payload("r-0").key("k"), Duration::from_secs(60)),
    );
    assert_eq!(first.unwrap().offset, 0);
    let mut expected = vec!["r-0".to_string()];
    for round in 0..2 {
        proxy.lose_next_response(PRODUCE);
        let values: Vec<String> = (0..50).map(|i| format!("r-{}", 1 + round * 50 + i)).collect();
        let deliveries: Vec<_> = values
            .iter()
            .map(|v| producer.send_result(FutureRecord::<str, str>::to("idem").payload(v).key("k")).unwrap())
            .collect();
        for (d, v) in deliveries.into_iter().zip(&values) {
            let delivered = rt.block_on(d).unwrap();
            assert!(delivered.is_ok(), "{v}: {:?}", delivered.err());
        }
        expected.extend(values);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(proxy.lost(), 2, "two produce responses were lost on the way");

    // Directly from the host: each record once, in order, at consecutive offsets.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", proxy.addr.to_string())
        .set("group.id", "idem-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("idem", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < expected.len() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert_eq!(m.offset(), got.len() as i64, "consecutive offsets");
            got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    // Nothing more after them (a duplicate would show up here).
    let (_, high) = consumer.fetch_watermarks("idem", 0, Duration::from_secs(10)).unwrap();
    assert_eq!(got, expected);
    assert_eq!(high, expected.len() as i64, "the log holds each record exactly once");
}
