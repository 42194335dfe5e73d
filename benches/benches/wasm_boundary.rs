//! The cost of the Wasm boundary per request.
//!
//! `cargo bench -p guise-benches --bench wasm_boundary`
//!
//! Each group measures the same request four ways in one run:
//! - `wasm-warm`: the host's real path — a warm translator instance kept from the previous
//!   request of the same tenant (`guest_warm_instances`, on by default), the guest call, host
//!   calls into the embedded log;
//! - `wasm-fresh`: the same with a fresh instance from the pre-instantiated component (pooling
//!   allocator) for every request (`guest_warm_instances = 0`);
//! - `native`: the same translator code compiled natively against the SDK's in-memory stub
//!   (no Wasm, no instantiation) — the translator's own work;
//! - `host-only` (produce, fetch): just the embedded log's append or read of the same bytes.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guise_guest_sdk::stub::{self, StubServices};
use guise_host::storage::embedded::EmbeddedLog;
use guise_host::storage::{Log, LogDefaults, TopicName};
use guise_host::wasm::{ConnInfo, DEFAULT_TRANSLATOR, GuestLimits, HostContext, Runtime};
use guise_kafka::KafkaTranslator;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, FetchRequest, ProduceRequest};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn frame<R: Encodable>(key: ApiKey, version: i16, body: &R) -> Bytes {
    guise_tests::wire::request_frame(key, version, version, 1, "bench", body)
}

/// One uncompressed batch of `count` records of `size` bytes.
fn batch(count: usize, size: usize) -> Bytes {
    let value = vec![b'x'; size];
    guise_tests::wire::record_batch(&vec![value.as_slice(); count])
}

fn produce(topic: &str, records: Bytes) -> Bytes {
    let body = ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(records)),
            ]),
    ]);
    frame(ApiKey::Produce, 9, &body)
}

fn fetch(topic: &str) -> Bytes {
    let body =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(1 << 20).with_topics(
            vec![
                FetchTopic::default()
                    .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ],
        );
    frame(ApiKey::Fetch, 12, &body)
}

fn boundary(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap());
    let ctx = Arc::new(HostContext::local(log.clone(), 100 << 20));
    let conn = ConnInfo::new(1, "public", "bench");
    let limits = |warm_instances| GuestLimits {
        memory_bytes: (100 << 20) + (64 << 20),
        call_timeout: Duration::from_secs(1),
        max_instances: 16,
        max_response_bytes: 100 << 20,
        warm_instances,
        warm_transforms: 0,
    };
    let fresh = Runtime::new(DEFAULT_TRANSLATOR, ctx.clone(), limits(0)).unwrap();
    let fresh_module = fresh.translator().unwrap();
    let warm = Runtime::new(DEFAULT_TRANSLATOR, ctx, limits(4)).unwrap();
    let warm_module = warm.translator().unwrap();
    let wasm = |g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, req: &Bytes| {
        for (name, runtime, module) in
            [("wasm-warm", &warm, &warm_module), ("wasm-fresh", &fresh, &fresh_module)]
        {
            g.bench_function(name, |b| {
                b.iter(|| {
                    black_box(guise_host::storage::wait(runtime.handle(module, &conn, req, false)).unwrap())
                })
            });
        }
    };
    let topic = |t: &str| TopicName { tenant: "public".into(), namespace: "default".into(), topic: t.into() };

    let mut g = c.benchmark_group("api_versions");
    let req = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    wasm(&mut g, &req);
    let svc = StubServices::new();
    g.bench_function("native", |b| {
        b.iter(|| black_box(stub::run::<KafkaTranslator>(&svc, req.clone(), false)))
    });
    g.finish();

    for (name, count, size) in [("produce_1KiB", 10, 100), ("produce_16KiB", 16, 1000)] {
        let records = batch(count, size);
        let req = produce(name, records.clone());
        guise_host::storage::wait(log.create_topic(&topic(name), 1, &[], false)).unwrap();
        let svc = StubServices::new();
        // Both wasm paths really append: `count` records a call.
        for (runtime, module) in [(&warm, &warm_module), (&fresh, &fresh_module)] {
            let end = || guise_host::storage::wait(log.offsets(&topic(name), 0)).unwrap().1;
            let before = end();
            for _ in 0..3 {
                guise_host::storage::wait(runtime.handle(module, &conn, &req, false)).unwrap();
            }
            assert_eq!(end() - before, 3 * count as i64, "{name}: the produce did not append");
        }
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(records.len() as u64));
        g.measurement_time(Duration::from_secs(3));
        wasm(&mut g, &req);
        g.bench_function("native", |b| {
            b.iter(|| black_box(stub::run::<KafkaTranslator>(&svc, req.clone(), false)))
        });
        g.bench_function("host-only", |b| {
            b.iter(|| {
                black_box(guise_host::storage::wait(log.append(&topic(name), 0, records.clone())).unwrap())
            })
        });
        g.finish();
    }

    let name = "fetch_16KiB";
    guise_host::storage::wait(log.create_topic(&topic(name), 1, &[], false)).unwrap();
    let records = batch(16, 1000);
    guise_host::storage::wait(log.append(&topic(name), 0, records.clone())).unwrap();
    let svc = StubServices::new();
    let _ = stub::run::<KafkaTranslator>(&svc, produce(name, records.clone()), false);
    let req = fetch(name);
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(records.len() as u64));
    wasm(&mut g, &req);
    g.bench_function("native", |b| {
        b.iter(|| black_box(stub::run::<KafkaTranslator>(&svc, req.clone(), false)))
    });
    g.bench_function("host-only", |b| {
        b.iter(|| black_box(guise_host::storage::wait(log.read(&topic(name), 0, 0, 1 << 20, true)).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = boundary
}
criterion_main!(benches);
