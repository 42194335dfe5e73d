//! Tenant message transforms end to end: deployed through the admin API, run on the produce path
//! of real clients (rskafka and librdkafka), with every error policy against deliberately bad
//! modules (`modules/transforms/chaos`: a trap, an infinite loop, a memory bomb), tenants on
//! their own listeners, routing, hot swap under load, and idempotent producers.

use guise_host::admin::client::AdminClient;
use guise_host::record::records;
use guise_host::storage::TopicName;
use guise_host::transform::{BindingSpec, TransformView};
use guise_tests::TestServer;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "support/rd_txn.rs"]
#[allow(dead_code)] // this file uses the producer and the reader only
mod rd_txn;

fn wasm(name: &str) -> Vec<u8> {
    // `chaos` is test-only: the fixtures build it, not the host.
    let dir = if name == "chaos" { guise_test_guests::DIR } else { guise_host::wasm::GUEST_DIR };
    let path = std::path::Path::new(dir).join(format!("guise_transform_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn spec(topics: &[&str], outputs: &[&str], policy: &str, config: &[(&str, &str)]) -> BindingSpec {
    BindingSpec {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        output_topics: outputs.iter().map(|t| t.to_string()).collect(),
        policy: policy.parse().unwrap(),
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn admin(server: &TestServer) -> AdminClient {
    AdminClient::new(server.admin_addr.to_string())
}

fn record(i: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(
            format!("{{\"n\":{i},\"card_number\":\"4111 1111 1111 {:04}\"}}", i % 10_000).into_bytes(),
        ),
        headers: BTreeMap::from([("n".to_string(), i.to_string().into_bytes())]),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
}

/// Every record of a partition, read straight from the log (with the batch each came in).
fn stored(server: &TestServer, tenant: &str, topic: &str, partition: i32) -> Vec<(usize, records::Record)> {
    server.stored(&TopicName::new(tenant, "default", topic), partition)
}

fn header<'a>(r: &'a records::Record, key: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[test]
fn every_policy_contains_a_trap_a_loop_and_a_memory_bomb() {
    let server = TestServer::start();
    let admin = admin(&server);
    let chaos = wasm("chaos");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        let controller = client.controller_client().unwrap();
        for mode in ["trap", "loop", "oom"] {
            for policy in ["reject", "skip", "pass", "dead-letter=dlq"] {
                let short = policy.split('=').next().unwrap();
                let topic = format!("{mode}-{short}");
                controller.create_topic(&topic, 1, 1, 5000).await.unwrap();
                let name = format!("chaos-{mode}-{short}");
                admin
                    .deploy_transform(
                        "public",
                        &name,
                        &spec(&[&topic], &[], policy, &[("mode", mode)]),
                        &chaos,
                    )
                    .unwrap();
                let pc = client.partition_client(&topic, 0, UnknownTopicHandling::Error).await.unwrap();
                let batch: Vec<Record> = (0..5).map(record).collect();
                let started = Instant::now();
                let result = pc.produce(batch.clone(), Compression::NoCompression).await;
                let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
                match policy {
                    "reject" => {
                        let err = result.expect_err("reject fails the produce");
                        assert!(format!("{err:?}").contains("InvalidRecord"), "{mode}: {err:?}");
                        assert_eq!(end, 0, "{mode}/reject appended nothing");
                    }
                    "skip" => {
                        result.unwrap_or_else(|e| panic!("{mode}/skip is acknowledged: {e:?}"));
                        assert_eq!(end, 0, "{mode}/skip dropped the batch");
                    }
                    "pass" => {
                        result.unwrap_or_else(|e| panic!("{mode}/pass is acknowledged: {e:?}"));
                        let (got, _) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
                        let got: Vec<Record> = got.into_iter().map(|r| r.record).collect();
                        assert_eq!(got, batch, "{mode}/pass appended the batch unchanged");
                    }
                    _ => {
                        result.unwrap_or_else(|e| panic!("{mode}/dead-letter is acknowledged: {e:?}"));
                        assert_eq!(end, 0, "{mode}/dead-letter kept the input topic empty");
                    }
                }
                // A loop is stopped by the deadline (100 ms by default), not by the client.
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{mode}/{policy} took {:?}",
                    started.elapsed()
                );
                let t = admin.show_transform("public", &name).unwrap();
                let v = t.module.versions.iter().find(|v| v.active).unwrap();
                let failed = match mode {
                    "loop" => v.stats.timeouts,
                    _ => v.stats.traps,
                };
                assert_eq!(failed, 1, "{mode}/{policy}: {:?}", v.stats);
                let o = t.outcomes;
                assert_eq!(o.rejected + o.skipped + o.passed + o.dead_lettered, 1, "{mode}/{policy}: {o:?}");
            }
        }
        // The dead-letter topic got each bad batch's original records, with the reason.
        let letters = stored(&server, "public", "dlq", 0);
        assert_eq!(letters.len(), 15);
        for (i, (_, r)) in letters.iter().enumerate() {
            assert_eq!(r.value.as_deref(), record(i % 5).value.as_deref());
            let kind = header(r, "guise.dlq.kind").unwrap();
            let expected = ["trap", "timeout", "trap"][i / 5];
            assert_eq!(kind, expected, "{:?}", header(r, "guise.dlq.reason"));
            assert!(header(r, "guise.dlq.topic").unwrap().ends_with("-dead-letter"));
            assert_eq!(header(r, "n"), Some((i % 5).to_string().as_str()), "the original headers stay");
        }
        // The host carries on: an ordinary topic still works.
        controller.create_topic("plain", 1, 1, 5000).await.unwrap();
        let pc = client.partition_client("plain", 0, UnknownTopicHandling::Error).await.unwrap();
        assert_eq!(pc.produce(vec![record(0)], Compression::NoCompression).await.unwrap(), vec![0]);
    });
}

#[test]
fn a_json_mask_with_every_codec_and_a_validation_filter() {
    let server = TestServer::start();
    let admin = admin(&server);
    admin
        .deploy_transform("public", "mask", &spec(&["cards"], &[], "reject", &[]), &wasm("mask_card"))
        .unwrap();
    admin
        .deploy_transform(
            "public",
            "need-n",
            &spec(&["needs"], &[], "reject", &[("header", "n")]),
            &wasm("require_header"),
        )
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        let controller = client.controller_client().unwrap();
        controller.create_topic("cards", 1, 1, 5000).await.unwrap();
        let pc = client.partition_client("cards", 0, UnknownTopicHandling::Error).await.unwrap();
        let codecs = [
            Compression::NoCompression,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Snappy,
            Compression::Zstd,
        ];
        for (round, codec) in codecs.into_iter().enumerate() {
            let batch: Vec<Record> = (0..20).map(|i| record(round * 20 + i)).collect();
            let offsets = pc.produce(batch, codec).await.unwrap();
            assert_eq!(offsets.len(), 20);
        }
        let (got, hwm) = pc.fetch_records(0, 1..10_000_000, 1_000).await.unwrap();
        assert_eq!(hwm, 100);
        for (i, r) in got.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
            assert_eq!(v["card_number"], format!("**** **** **** {:04}", i % 10_000), "record {i}");
            assert_eq!(r.record.key, record(i).key);
            assert_eq!(r.record.headers, record(i).headers);
            assert_eq!(r.record.timestamp, record(i).timestamp);
        }

        // require-header drops records without the header and keeps the others.
        controller.create_topic("needs", 1, 1, 5000).await.unwrap();
        let pc = client.partition_client("needs", 0, UnknownTopicHandling::Error).await.unwrap();
        let mut batch: Vec<Record> = (0..10).map(record).collect();
        for r in batch.iter_mut().step_by(2) {
            r.headers.clear();
        }
        pc.produce(batch, Compression::Zstd).await.unwrap();
        let kept: Vec<String> = stored(&server, "public", "needs", 0)
            .into_iter()
            .map(|(_, r)| header(&r, "n").unwrap().to_string())
            .collect();
        assert_eq!(kept, ["1", "3", "5", "7", "9"]);
    });
}

#[test]
fn routing_by_key_uses_kafkas_partitioner_and_stays_in_the_tenant() {
    let server = TestServer::start();
    let admin = admin(&server);
    let route = wasm("route_by_key");
    // Output topics are checked at deploy: a name that tries to leave the tenant is refused.
    let err = admin
        .deploy_transform(
            "public",
            "escape",
            &spec(&["orders"], &["persistent://acme/default/x"], "reject", &[]),
            &route,
        )
        .unwrap_err();
    assert!(err.to_string().contains("invalid binding"), "{err}");
    let nine: Vec<String> = (0..9).map(|i| format!("o{i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let err = admin
        .deploy_transform("public", "many", &spec(&["orders"], &nine, "reject", &[]), &route)
        .unwrap_err();
    assert!(err.to_string().contains("at most 8"), "{err}");

    admin
        .deploy_transform(
            "public",
            "vip",
            &spec(&["orders"], &["orders-vip"], "reject", &[("topic", "orders-vip")]),
            &route,
        )
        .unwrap();
    // A transform that routes to a topic it was not given fails its batch (policy reject).
    admin
        .deploy_transform(
            "public",
            "stray",
            &spec(&["stray"], &[], "reject", &[("mode", "route"), ("topic", "orders")]),
            &wasm("chaos"),
        )
        .unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        let controller = client.controller_client().unwrap();
        controller.create_topic("orders", 1, 1, 5000).await.unwrap();
        controller.create_topic("orders-vip", 3, 1, 5000).await.unwrap();
        controller.create_topic("stray", 1, 1, 5000).await.unwrap();
        let pc = client.partition_client("orders", 0, UnknownTopicHandling::Error).await.unwrap();
        let mut batch = Vec::new();
        for i in 0..60 {
            let mut r = record(i);
            r.key = Some(if i % 3 == 0 { format!("vip-{i}") } else { format!("regular-{i}") }.into_bytes());
            batch.push(r);
        }
        pc.produce(batch, Compression::Lz4).await.unwrap();
        let stray = client.partition_client("stray", 0, UnknownTopicHandling::Error).await.unwrap();
        let err = stray.produce(vec![record(0)], Compression::NoCompression).await.unwrap_err();
        assert!(format!("{err:?}").contains("InvalidRecord"), "{err:?}");
    });
    let own = stored(&server, "public", "orders", 0);
    assert_eq!(own.len(), 40);
    assert!(own.iter().all(|(_, r)| r.key.as_deref().unwrap().starts_with(b"regular-")));
    let mut vip = 0;
    for p in 0..3 {
        for (_, r) in stored(&server, "public", "orders-vip", p) {
            let key = r.key.as_deref().unwrap();
            assert!(key.starts_with(b"vip-"));
            assert_eq!(records::partition_for_key(key, 3), p, "murmur2 partitioning");
            vip += 1;
        }
    }
    assert_eq!(vip, 20);
    assert_eq!(
        stored(&server, "public", "orders", 0).len(),
        40,
        "the stray transform wrote nothing to orders"
    );
}

/// Tenants on their own listeners: acme's looping transform does not stop public's producer,
/// and acme's routing lands in acme's topics only. acme's four producers into its looping
/// transform run one call at a time (its `transform_max_concurrency`); the others wait for
/// acme's slot instead of spinning on the runtime's workers.
#[test]
fn a_looping_tenant_does_not_hurt_another_tenant() {
    let server = TestServer::start_with(|c| {
        c.listeners.push(guise_host::config::ListenerConfig {
            addr: "127.0.0.1:0".into(),
            tenant: "acme".parse().unwrap(),
            advertised_addr: None,
            security_protocol: Default::default(),
        });
        let acme =
            guise_host::config::TenantConfig { transform_max_concurrency: Some(1), ..Default::default() };
        c.tenants.insert("acme".parse().unwrap(), acme);
    });
    let acme = server.server().tenant_addrs[0].1.to_string();
    let admin = admin(&server);
    admin
        .deploy_transform(
            "acme",
            "spin",
            &spec(&["events"], &[], "skip", &[("mode", "loop")]),
            &wasm("chaos"),
        )
        .unwrap();
    admin
        .deploy_transform(
            "acme",
            "copy",
            &spec(&["copies"], &["orders"], "reject", &[("mode", "route"), ("topic", "orders")]),
            &wasm("chaos"),
        )
        .unwrap();
    assert!(admin.show_transform("public", "spin").is_err(), "public does not see acme's transforms");

    // acme produces into its looping transform from four threads for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let neighbours: Vec<_> = (0..4)
        .map(|n| {
            let (acme, stop) = (acme.clone(), stop.clone());
            std::thread::spawn(move || {
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", &acme)
                    .set("linger.ms", "5")
                    .create()
                    .unwrap();
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let payload = format!("spin-{n}-{sent}");
                    let d = producer.send_result(FutureRecord::<str, str>::to("events").payload(&payload));
                    if let Ok(d) = d {
                        let _ = futures_block(d);
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let values: Vec<String> = (0..500).map(|i| format!("public-{i}")).collect();
    let deliveries: Vec<_> = values
        .iter()
        .map(|v| producer.send_result(FutureRecord::<str, str>::to("orders").payload(v).key(v)).unwrap())
        .collect();
    for d in deliveries {
        futures_block(d).unwrap().unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // acme routes into "orders": its own, not public's.
    let acme_producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &acme).create().unwrap();
    futures_block(
        acme_producer.send_result(FutureRecord::<str, str>::to("copies").payload("acme-1")).unwrap(),
    )
    .unwrap()
    .unwrap();

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let spun: u64 = neighbours.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(spun > 0, "the neighbour produced into its looping transform");

    let public: Vec<String> = stored(&server, "public", "orders", 0)
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(public, values, "all of public's records, in order, and nothing of acme's");
    let acme_orders = stored(&server, "acme", "orders", 0);
    assert_eq!(acme_orders.len(), 1);
    assert_eq!(acme_orders[0].1.value.as_deref(), Some(&b"acme-1"[..]));
    assert!(stored(&server, "acme", "events", 0).is_empty(), "skip dropped every looping batch");
    let spin = admin.show_transform("acme", "spin").unwrap();
    assert!(spin.outcomes.skipped > 0 && spin.module.versions[0].stats.timeouts == spin.outcomes.skipped);
    // One of acme's calls ran at a time; the others waited for it.
    let calls = server.server().transforms.tenant_calls("acme");
    assert_eq!((calls.limit, calls.peak, calls.running), (1, 1, 0), "{calls:?}");
    assert!(calls.waited > 0, "four producers into a 100 ms loop overlapped: {calls:?}");
    let metrics = admin.text("/metrics").unwrap();
    assert!(metrics.contains("guise_transform_calls_peak{tenant=\"acme\"} 1"), "{metrics}");
}

/// Swap a transform ten times while a librdkafka producer runs: no errors, every record once,
/// and every stored batch processed by exactly one version (all its records carry one tag).
#[test]
fn hot_swap_of_a_transform_under_load() {
    let server = TestServer::start();
    let admin = admin(&server);
    let chaos = wasm("chaos");
    let deploy = |tag: &str| {
        admin
            .deploy_transform(
                "public",
                "tagger",
                &spec(&["swap"], &[], "reject", &[("mode", "tag"), ("tag", tag)]),
                &chaos,
            )
            .unwrap()
    };
    deploy("v1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bootstrap = server.bootstrap();
    let stop2 = stop.clone();
    let producer = std::thread::spawn(move || {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "2")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "60000")
            .create()
            .unwrap();
        let mut pending = Vec::new();
        let mut n = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let v = format!("r-{n}");
            pending.push(
                producer.send_result(FutureRecord::<str, str>::to("swap").payload(&v).key("k")).unwrap(),
            );
            n += 1;
            if pending.len() >= 200 {
                for d in pending.drain(..) {
                    futures_block(d).unwrap().map_err(|(e, _)| e).unwrap();
                }
            }
        }
        for d in pending {
            futures_block(d).unwrap().map_err(|(e, _)| e).unwrap();
        }
        n
    });
    let mut last: TransformView = deploy("v1");
    for swap in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        last = deploy(&format!("v{}", swap + 2));
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = producer.join().unwrap();
    assert_eq!(last.module.active, Some(12));

    let stored = stored(&server, "public", "swap", 0);
    assert_eq!(stored.len(), sent, "every acknowledged record once");
    let mut by_batch: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (i, (batch, r)) in stored.iter().enumerate() {
        assert_eq!(r.value.as_deref(), Some(format!("r-{i}").as_bytes()), "in order");
        by_batch.entry(*batch).or_default().push(header(r, "guise.tag").expect("tagged"));
    }
    let mut tags = std::collections::BTreeSet::new();
    let mut newest = 0;
    for (batch, t) in &by_batch {
        assert!(t.iter().all(|x| *x == t[0]), "batch {batch} was processed by one version: {t:?}");
        tags.insert(t[0]);
        // One connection's batches are appended in order, each by the version active when it
        // started: no batch after a swap runs on a (warm) instance of an older version.
        let version: u32 = t[0].trim_start_matches('v').parse().unwrap();
        assert!(version >= newest, "batch {batch} ran on v{version} after one ran on v{newest}");
        newest = version;
    }
    assert!(tags.len() >= 5, "batches of many versions: {tags:?}");
    // Most batches ran on an instance an earlier batch of their version left.
    let metrics = admin.text("/metrics").unwrap();
    let warm: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("guise_transform_warm_calls_total "))
        .and_then(|n| n.parse().ok())
        .expect("guise_transform_warm_calls_total in /metrics");
    assert!(warm * 2 > by_batch.len() as u64, "{warm} warm calls for {} batches", by_batch.len());
}

/// An idempotent producer on a topic whose transform drops records: sequence checks use the
/// original batch, so nothing is refused, also across a restart; consumers read past the
/// offsets of dropped records.
#[test]
fn idempotent_producer_through_a_dropping_transform_across_a_restart() {
    let server = TestServer::start();
    admin(&server)
        .deploy_transform(
            "public",
            "need-keep",
            &spec(&["filtered"], &[], "reject", &[("header", "keep")]),
            &wasm("require_header"),
        )
        .unwrap();
    // Returns the offset the producer was told for each kept record.
    let produce = |server: &TestServer, from: usize| {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap();
        let mut deliveries = Vec::new();
        for i in from..from + 100 {
            let v = format!("v-{i}");
            let mut r = FutureRecord::<str, str>::to("filtered").payload(&v).key("k");
            if i % 4 == 0 {
                r = r.headers(
                    rdkafka::message::OwnedHeaders::new()
                        .insert(rdkafka::message::Header { key: "keep", value: Some("yes") }),
                );
            }
            deliveries.push((i % 4 == 0, v.clone(), producer.send_result(r).unwrap()));
        }
        let mut told = Vec::new();
        for (kept, v, d) in deliveries {
            let delivered = futures_block(d).unwrap().map_err(|(e, _)| e).unwrap();
            if kept {
                told.push((v, delivered.offset));
            }
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        told
    };
    let mut told = produce(&server, 0);
    let server = server.restart();
    told.extend(produce(&server, 100));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "filtered-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("filtered", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 50 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert_eq!(m.headers().unwrap().get(0).key, "keep");
            got.push((String::from_utf8(m.payload().unwrap().to_vec()).unwrap(), m.offset()));
        }
    }
    assert_eq!(got, told, "each kept record is where its producer was told it is");
    let expected: Vec<String> = (0..200).filter(|i| i % 4 == 0).map(|i| format!("v-{i}")).collect();
    assert_eq!(got.into_iter().map(|(v, _)| v).collect::<Vec<_>>(), expected);
}

/// Block on a delivery future from a plain thread.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A transactional producer (librdkafka) to a topic with a transform: the transformed records
/// commit or abort with their transaction, and read_committed consumers see only committed ones.
#[test]
fn a_transactions_transformed_records_commit_and_abort_with_it() {
    let server = TestServer::start();
    admin(&server)
        .deploy_transform("public", "mask", &spec(&["tx-cards"], &[], "reject", &[]), &wasm("mask_card"))
        .unwrap();
    let p: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("transactional.id", "tx-cards")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    p.init_transactions(timeout).unwrap();
    for (n, commit) in [(0, true), (1, false), (2, true)] {
        p.begin_transaction().unwrap();
        let value = format!("{{\"n\":{n},\"card_number\":\"4111 1111 1111 000{n}\"}}");
        p.send(rdkafka::producer::BaseRecord::to("tx-cards").partition(0).key("k").payload(&value)).unwrap();
        p.flush(timeout).unwrap();
        if commit { p.commit_transaction(timeout).unwrap() } else { p.abort_transaction(timeout).unwrap() }
    }
    let read = |isolation: &str, expect: usize| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("group.id", "tx-cards")
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("tx-cards", 0, Offset::Beginning).unwrap();
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < expect && Instant::now() < deadline {
            if let Some(m) = c.poll(Duration::from_millis(200)) {
                let m = m.unwrap();
                out.push(String::from_utf8_lossy(m.payload().unwrap()).into_owned());
            }
        }
        // Nothing more arrives.
        assert!(c.poll(Duration::from_secs(2)).is_none(), "{isolation}: more than {expect}");
        out
    };
    let masked = |n: usize| format!("{{\"card_number\":\"**** **** **** 000{n}\",\"n\":{n}}}");
    assert_eq!(read("read_committed", 2), [masked(0), masked(2)]);
    assert_eq!(read("read_uncommitted", 3), [masked(0), masked(1), masked(2)]);
}

/// Send each (topic, key, value) to partition 0 and wait until all are acknowledged.
fn send_keyed(p: &rdkafka::producer::BaseProducer, records: &[(&str, &str, &str)]) {
    for (topic, key, value) in records {
        p.send(rdkafka::producer::BaseRecord::to(topic).partition(0).key(*key).payload(*value)).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// What a transform makes of a transactional batch belongs to the transaction: records it
/// routes to another topic and records it adds to the batch commit and abort with it
/// (librdkafka's transactional producer, read_committed and read_uncommitted consumers).
#[test]
fn records_a_transform_routes_or_adds_in_a_transaction_commit_and_abort_with_it() {
    let server = TestServer::start();
    let admin = admin(&server);
    let outputs = ["tx-orders-vip"];
    admin
        .deploy_transform(
            "public",
            "route",
            &spec(&["tx-orders"], &outputs, "reject", &[]),
            &wasm("route_by_key"),
        )
        .unwrap();
    let double = spec(&["tx-twice"], &[], "reject", &[("mode", "double")]);
    admin.deploy_transform("public", "double", &double, &wasm("chaos")).unwrap();
    let p = rd_txn::producer(&server, "tx-route", &[]);
    p.init_transactions(Duration::from_secs(30)).unwrap();
    for (n, commit) in [(0, true), (1, false), (2, true)] {
        p.begin_transaction().unwrap();
        let (vip, own, twice) = (format!("v{n}"), format!("k{n}"), format!("t{n}"));
        send_keyed(&p, &[("tx-orders", "vip-1", &vip), ("tx-orders", "k", &own), ("tx-twice", "k", &twice)]);
        let timeout = Duration::from_secs(30);
        if commit { p.commit_transaction(timeout).unwrap() } else { p.abort_transaction(timeout).unwrap() }
    }
    let read = |topic, isolation, n| rd_txn::read(&server, topic, 0, isolation, n);
    assert_eq!(read("tx-orders-vip", "read_committed", 2), ["v0", "v2"]);
    assert_eq!(read("tx-orders", "read_committed", 2), ["k0", "k2"]);
    assert_eq!(read("tx-twice", "read_committed", 4), ["t0", "t0", "t2", "t2"]);
    assert_eq!(read("tx-orders-vip", "read_uncommitted", 3), ["v0", "v1", "v2"]);
    assert_eq!(read("tx-twice", "read_uncommitted", 6), ["t0", "t0", "t1", "t1", "t2", "t2"]);
}

/// A transaction whose records were routed is left open by a producer, the host restarts, and
/// a new instance of the producer fences the old one: the coordinator aborts the transaction
/// on the routed partition too (else its last stable offset would stay frozen there, and
/// read_committed consumers would see nothing after it).
#[test]
fn a_fenced_transactions_routed_records_are_aborted_across_a_restart() {
    let server = TestServer::start();
    let outputs = ["tx-fence-vip"];
    admin(&server)
        .deploy_transform(
            "public",
            "route",
            &spec(&["tx-fence"], &outputs, "reject", &[]),
            &wasm("route_by_key"),
        )
        .unwrap();
    let timeout = Duration::from_secs(30);
    let zombie = rd_txn::producer(&server, "tx-fence", &[]);
    zombie.init_transactions(timeout).unwrap();
    zombie.begin_transaction().unwrap();
    send_keyed(&zombie, &[("tx-fence", "vip-1", "lost"), ("tx-fence", "k", "lost-own")]);
    let server = server.restart();
    let p = rd_txn::producer(&server, "tx-fence", &[]);
    p.init_transactions(timeout).unwrap();
    p.begin_transaction().unwrap();
    send_keyed(&p, &[("tx-fence", "vip-2", "kept"), ("tx-fence", "k", "own-kept")]);
    p.commit_transaction(timeout).unwrap();
    assert_eq!(rd_txn::read(&server, "tx-fence-vip", 0, "read_committed", 1), ["kept"]);
    assert_eq!(rd_txn::read(&server, "tx-fence-vip", 0, "read_uncommitted", 2), ["lost", "kept"]);
    assert_eq!(rd_txn::read(&server, "tx-fence", 0, "read_committed", 1), ["own-kept"]);
    drop(zombie);
}
