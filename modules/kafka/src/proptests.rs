//! Property tests for bad input (issue 3): whatever follows a request header — random bytes, a
//! valid request bit-flipped, truncated or extended, an array claiming 2^31-1 elements — the
//! translator answers, waits or closes, and never panics or allocates by a claimed count.
//!
//! The translator runs natively here, on the stub host. In the real host it runs under a memory
//! cap; natively there is none, so an allocation sized by a claimed count would abort the test
//! binary. The test binary's allocator records the largest single allocation of each thread, so
//! the properties can also bound what one request may reserve.

use crate::KafkaTranslator;
use crate::apis::SUPPORTED;
use crate::claims::{self, Stop};
use crate::metadata::{str_bytes, topic_name, topic_uuid};
use crate::test_util::{raw_frame, record_batch};
use bytes::{Buf, Bytes, BytesMut};
use guise_guest_sdk::stub::{self, StubBuffer, StubServices};
use guise_guest_sdk::{Handler, Outcome, Services, TopicPartition, error};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use proptest::prelude::*;
use proptest::sample::Index;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

// --- the largest single allocation, per thread ---

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while threads start and stop.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// Test-only: an allocation counter for the property tests (see the workspace's `unsafe_code`).
// SAFETY: every call is forwarded unchanged to the system allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Run `f`, returning its result and the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

/// What one request may reserve at most: the codec's in-memory elements are larger than their
/// wire form (up to ~120 bytes for a few bytes on the wire), and a valid request may make the
/// stub host allocate up to 10,000 partitions (~320 KiB). A count-sized reservation is GiBs.
fn allocation_bound(frame_len: usize) -> usize {
    (1 << 20) + 256 * frame_len
}

// --- running the translator ---

/// A stub host with topics "a" (2 partitions, one batch in partition 0; topic id 1) and "b".
fn host() -> StubServices {
    let svc = StubServices::new();
    svc.create_topic("a", 2, &[], false).unwrap();
    svc.create_topic("b", 1, &[], false).unwrap();
    let batch = StubBuffer(record_batch(&[b"one", b"two"], &[1_000]));
    svc.append(&TopicPartition { topic: "a".into(), partition: 0 }, &batch).unwrap();
    svc
}

/// Everything the host may ask of the translator for one frame: handle it (fresh and after a
/// parked deadline) and build its error response. Returns the first outcome.
fn exercise(frame: &Bytes) -> Outcome<StubBuffer> {
    let svc = host();
    let out = stub::run::<KafkaTranslator>(&svc, frame.clone(), false);
    stub::run::<KafkaTranslator>(&svc, frame.clone(), true);
    let buf = StubBuffer(frame.clone());
    let req = guise_guest_sdk::Request { bytes: frame.clone(), frame: &buf };
    KafkaTranslator::error_response(&svc, &req, error::UNKNOWN_SERVER_ERROR);
    out
}

fn header_version(key: i16, version: i16) -> i16 {
    ApiKey::try_from(key).map_or(1, |k| k.request_header_version(version))
}

// --- valid requests of every API ---

/// The flexible (compact) versions start here.
fn flexible_from(key: i16) -> i16 {
    match key {
        0 | 3 => 9,
        1 => 12,
        2 => 6,
        8 => 8,
        9 | 11 => 6,
        10 | 16 | 18 => 3,
        12..=14 => 4,
        15 => 5,
        19 => 5,
        20 => 4,
        22 | 42 => 2,
        21 => 2,
        32 => 4,
        33 => 2,
        37 => 2,
        44 => 1,
        47 => i16::MAX,
        50 | 51 | 60 | 61 | 65 | 66 | 75 => 0,
        48 | 49 => 1,
        24..=26 | 28 => 3,
        23 => 4,
        35 => 2,
        17 => i16::MAX,
        36 => 2,
        29..=31 => 2,
        _ => unreachable!("api key {key}"),
    }
}

/// The versions kafka-protocol decodes, a superset of the ones we serve.
fn codec_versions(key: i16) -> std::ops::RangeInclusive<i16> {
    match key {
        0 => 3..=13,
        1 => 4..=18,
        2 => 1..=10,
        3 => 0..=13,
        8 => 2..=9,
        9 => 1..=9,
        10 => 0..=6,
        11 => 0..=9,
        12 => 0..=4,
        13 => 0..=5,
        14 => 0..=5,
        15 => 0..=6,
        16 => 0..=5,
        18 => 0..=4,
        22 => 0..=5,
        42 => 0..=2,
        47 => 0..=0,
        19 => 2..=7,
        20 => 1..=6,
        32 => 1..=4,
        21 => 0..=2,
        33 => 0..=2,
        37 => 0..=3,
        44 => 0..=1,
        60 => 0..=2,
        23 => 2..=4,
        35 => 1..=4,
        17 => 0..=1,
        36 => 0..=2,
        61 => 0..=0,
        75 => 0..=0,
        29..=31 => 1..=3,
        50 | 51 => 0..=0,
        48 | 49 => 0..=1,
        24 | 26 | 28 => 0..=5,
        25 => 0..=4,
        65 => 0..=0,
        66 => 0..=2,
        _ => unreachable!("api key {key}"),
    }
}

fn encode<R: Encodable>(body: &R, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    body.encode(&mut buf, version).unwrap_or_else(|e| panic!("encoding a sample at v{version}: {e}"));
    buf.to_vec()
}

fn when<T>(cond: bool, value: T, f: impl FnOnce(T) -> T) -> T {
    if cond { f(value) } else { value }
}

/// Unknown tagged fields, for flexible versions: the decoder skips them by size.
fn unknown_tags(flexible: bool) -> BTreeMap<i32, Bytes> {
    when(flexible, BTreeMap::new(), |mut m| {
        m.insert(77, Bytes::from_static(b"\x01\x02\x03"));
        m
    })
}

/// Request bodies of `key` at `version`: a rich one (several topics and partitions, every field
/// of the version set, unknown tagged fields), a small one, and an empty one.
fn samples(key: i16, v: i16) -> Vec<Vec<u8>> {
    let flex = v >= flexible_from(key);
    let tags = || unknown_tags(flex);
    let batch = record_batch(&[b"hello", b"world"], &[5_000]);
    match key {
        0 => {
            use produce_request::{PartitionProduceData, TopicProduceData};
            let part = |i: i32, records: Option<Bytes>| {
                PartitionProduceData::default()
                    .with_index(i)
                    .with_records(records)
                    .with_unknown_tagged_fields(tags())
            };
            let topic = |name: &str, id: u128, parts| {
                let t =
                    TopicProduceData::default().with_partition_data(parts).with_unknown_tagged_fields(tags());
                if v <= 12 { t.with_name(topic_name(name)) } else { t.with_topic_id(topic_uuid(id)) }
            };
            let rich = ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(-1)
                .with_timeout_ms(1_000)
                .with_topic_data(vec![
                    topic("a", 1, vec![part(0, Some(batch.clone())), part(1, None)]),
                    topic("missing", 9, vec![part(0, Some(batch.clone()))]),
                ])
                .with_unknown_tagged_fields(tags());
            let small = ProduceRequest::default().with_acks(0).with_topic_data(vec![topic(
                "b",
                2,
                vec![part(0, Some(batch.clone()))],
            )]);
            let transactional = ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(str_bytes("tx"))))
                .with_acks(1)
                .with_topic_data(vec![topic("b", 2, vec![part(0, Some(batch))])]);
            vec![
                encode(&rich, v),
                encode(&small, v),
                encode(&transactional, v),
                encode(&ProduceRequest::default(), v),
            ]
        }
        1 => {
            use fetch_request::{FetchPartition, FetchTopic, ForgottenTopic, ReplicaState};
            let part = |i: i32, offset: i64| {
                let p = FetchPartition::default()
                    .with_partition(i)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)
                    .with_unknown_tagged_fields(tags());
                let p = when(v >= 9, p, |p| p.with_current_leader_epoch(0));
                let p = when(v >= 12, p, |p| p.with_last_fetched_epoch(0));
                let p = when(v >= 5, p, |p| p.with_log_start_offset(0));
                let p = when(v >= 17, p, |p| p.with_replica_directory_id(topic_uuid(5)));
                when(v >= 18, p, |p| p.with_high_watermark(10))
            };
            let topic = |name: &str, id: u128, parts| {
                let t = FetchTopic::default().with_partitions(parts).with_unknown_tagged_fields(tags());
                if v <= 12 { t.with_topic(topic_name(name)) } else { t.with_topic_id(topic_uuid(id)) }
            };
            let rich = FetchRequest::default()
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_isolation_level(1)
                .with_topics(vec![
                    topic("a", 1, vec![part(0, 0), part(1, 0)]),
                    topic("missing", 9, vec![part(0, 5)]),
                ])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 7, rich, |r| {
                let forgotten =
                    ForgottenTopic::default().with_partitions(vec![0, 1]).with_unknown_tagged_fields(tags());
                let forgotten = if v <= 12 {
                    forgotten.with_topic(topic_name("b"))
                } else {
                    forgotten.with_topic_id(topic_uuid(2))
                };
                r.with_session_id(0).with_session_epoch(0).with_forgotten_topics_data(vec![forgotten])
            });
            let rich = when(v >= 11, rich, |r| r.with_rack_id(str_bytes("rack")));
            let rich = when(v >= 12, rich, |r| r.with_cluster_id(Some(str_bytes("stub-cluster"))));
            let rich = when(v >= 15, rich, |r| {
                r.with_replica_id(BrokerId(-1)).with_replica_state(
                    ReplicaState::default().with_replica_id(BrokerId(3)).with_replica_epoch(4),
                )
            });
            let small = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(10)
                .with_topics(vec![topic("b", 2, vec![part(0, 0)])]);
            vec![encode(&rich, v), encode(&small, v), encode(&FetchRequest::default(), v)]
        }
        2 => {
            use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
            let part = |i: i32, timestamp: i64| {
                let p = ListOffsetsPartition::default()
                    .with_partition_index(i)
                    .with_timestamp(timestamp)
                    .with_unknown_tagged_fields(tags());
                when(v >= 4, p, |p| p.with_current_leader_epoch(0))
            };
            let topic = |name: &str, parts| {
                ListOffsetsTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(parts)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    topic("a", vec![part(0, -1), part(0, -2), part(1, 1_000), part(7, -1)]),
                    topic("missing", vec![part(0, -1)]),
                ])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 2, rich, |r| r.with_isolation_level(1));
            let rich = when(v >= 10, rich, |r| r.with_timeout_ms(1_000));
            let small = ListOffsetsRequest::default()
                .with_topics(vec![topic("a", vec![part(0, if v >= 7 { -3 } else { 0 })])]);
            vec![encode(&rich, v), encode(&small, v), encode(&ListOffsetsRequest::default(), v)]
        }
        3 => {
            use metadata_request::MetadataRequestTopic;
            let by_name = |n: &str| {
                MetadataRequestTopic::default()
                    .with_name(Some(topic_name(n)))
                    .with_unknown_tagged_fields(tags())
            };
            let mut topics = vec![by_name("a"), by_name("missing"), by_name("bad name!")];
            if v >= 10 {
                topics.push(MetadataRequestTopic::default().with_name(None).with_topic_id(topic_uuid(1)));
            }
            let rich =
                MetadataRequest::default().with_topics(Some(topics)).with_unknown_tagged_fields(tags());
            let rich = when(v >= 4, rich, |r| r.with_allow_auto_topic_creation(false));
            let rich =
                when((8..=10).contains(&v), rich, |r| r.with_include_cluster_authorized_operations(true));
            let rich = when(v >= 8, rich, |r| r.with_include_topic_authorized_operations(true));
            let all = if v >= 1 { None } else { Some(vec![]) };
            let small = MetadataRequest::default().with_topics(Some(vec![by_name("new-topic")]));
            vec![encode(&rich, v), encode(&small, v), encode(&MetadataRequest::default().with_topics(all), v)]
        }
        18 => {
            let rich = when(v >= 3, ApiVersionsRequest::default(), |r| {
                r.with_client_software_name(str_bytes("guise-proptest"))
                    .with_client_software_version(str_bytes("1.0"))
                    .with_unknown_tagged_fields(tags())
            });
            vec![encode(&rich, v), encode(&ApiVersionsRequest::default(), v)]
        }
        19 => {
            use create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
            let config = |k: &str, value: Option<&str>| {
                CreatableTopicConfig::default()
                    .with_name(str_bytes(k))
                    .with_value(value.map(str_bytes))
                    .with_unknown_tagged_fields(tags())
            };
            let assign = |i: i32, brokers: &[i32]| {
                CreatableReplicaAssignment::default()
                    .with_partition_index(i)
                    .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
                    .with_unknown_tagged_fields(tags())
            };
            let topic = |name: &str, partitions: i32, rf: i16| {
                CreatableTopic::default()
                    .with_name(topic_name(name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = CreateTopicsRequest::default()
                .with_topics(vec![
                    topic("new1", 3, 1).with_configs(vec![
                        config("cleanup.policy", Some("delete")),
                        config("segment.bytes", Some("1048576")),
                    ]),
                    topic("new2", -1, -1).with_assignments(vec![assign(0, &[0]), assign(1, &[0])]),
                    topic("a", 1, 1),
                    topic("dup", 1, 1),
                    topic("dup", 1, 1),
                    topic("null-config", 1, 1).with_configs(vec![config("segment.bytes", None)]),
                    topic("bad-assignment", -1, -1).with_assignments(vec![assign(1, &[0, 0])]),
                ])
                .with_timeout_ms(1_000)
                .with_unknown_tagged_fields(tags());
            let small = CreateTopicsRequest::default().with_topics(vec![topic("c", 2, 1)]);
            let validate = CreateTopicsRequest::default()
                .with_topics(vec![topic("d", 2, 1).with_configs(vec![config("unknown.config", Some("x"))])])
                .with_validate_only(true);
            vec![
                encode(&rich, v),
                encode(&small, v),
                encode(&validate, v),
                encode(&CreateTopicsRequest::default(), v),
            ]
        }
        20 => {
            use delete_topics_request::DeleteTopicState;
            let rich = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default()
                        .with_name(Some(topic_name("b")))
                        .with_unknown_tagged_fields(tags()),
                    DeleteTopicState::default().with_name(None).with_topic_id(topic_uuid(1)),
                    DeleteTopicState::default().with_name(Some(topic_name("missing"))),
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![
                    topic_name("b"),
                    topic_name("missing"),
                    topic_name("b"),
                ])
            };
            let rich = rich.with_timeout_ms(1_000).with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DeleteTopicsRequest::default(), v)]
        }
        32 => {
            use describe_configs_request::DescribeConfigsResource;
            let resource = |kind: i8, name: &str, keys: Option<&[&str]>| {
                DescribeConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_configuration_keys(keys.map(|k| k.iter().map(|s| str_bytes(*s)).collect()))
                    .with_unknown_tagged_fields(tags())
            };
            let rich = DescribeConfigsRequest::default()
                .with_resources(vec![
                    resource(2, "a", Some(&["cleanup.policy", "nope"])),
                    resource(2, "a", None),
                    resource(4, "0", None),
                    resource(4, "9", Some(&[])),
                    resource(2, "missing", None),
                    resource(99, "x", None),
                ])
                .with_include_synonyms(true)
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 3, rich, |r| r.with_include_documentation(true));
            vec![encode(&rich, v), encode(&DescribeConfigsRequest::default(), v)]
        }
        21 => {
            use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
            let topic = |name: &str, parts: &[(i32, i64)]| {
                DeleteRecordsTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, o)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(*p)
                                    .with_offset(*o)
                                    .with_unknown_tagged_fields(tags())
                            })
                            .collect(),
                    )
                    .with_unknown_tagged_fields(tags())
            };
            let rich = DeleteRecordsRequest::default()
                .with_topics(vec![topic("a", &[(0, 1), (1, -1)]), topic("missing", &[(0, 5)])])
                .with_timeout_ms(1_000)
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DeleteRecordsRequest::default(), v)]
        }
        33 => {
            use alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let resource = |kind: i8, name: &str, configs: &[(&str, Option<&str>)]| {
                AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                AlterableConfig::default()
                                    .with_name(str_bytes(*k))
                                    .with_value(v.map(str_bytes))
                                    .with_unknown_tagged_fields(tags())
                            })
                            .collect(),
                    )
                    .with_unknown_tagged_fields(tags())
            };
            let rich = AlterConfigsRequest::default()
                .with_resources(vec![
                    resource(2, "a", &[("retention.ms", Some("1000")), ("nope", None)]),
                    resource(2, "missing", &[("retention.ms", Some("1"))]),
                    resource(4, "0", &[]),
                    resource(99, "x", &[]),
                ])
                .with_validate_only(true)
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&AlterConfigsRequest::default(), v)]
        }
        44 => {
            use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let resource = |kind: i8, name: &str, configs: &[(&str, i8, Option<&str>)]| {
                AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, op, v)| {
                                AlterableConfig::default()
                                    .with_name(str_bytes(*k))
                                    .with_config_operation(*op)
                                    .with_value(v.map(str_bytes))
                                    .with_unknown_tagged_fields(tags())
                            })
                            .collect(),
                    )
                    .with_unknown_tagged_fields(tags())
            };
            let rich = IncrementalAlterConfigsRequest::default()
                .with_resources(vec![
                    resource(
                        2,
                        "a",
                        &[("retention.ms", 0, Some("1000")), ("cleanup.policy", 2, Some("compact"))],
                    ),
                    resource(2, "a", &[("segment.bytes", 1, None)]),
                    resource(2, "missing", &[("retention.ms", 3, None)]),
                    resource(4, "0", &[]),
                ])
                .with_validate_only(true)
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&IncrementalAlterConfigsRequest::default(), v)]
        }
        23 => {
            use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
            let part = |p: i32, current: i32, epoch: i32| {
                OffsetForLeaderPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = OffsetForLeaderEpochRequest::default()
                .with_topics(vec![
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name("a"))
                        .with_partitions(vec![part(0, 0, 0), part(1, -1, 3), part(9, 2, 0)])
                        .with_unknown_tagged_fields(tags()),
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name("missing"))
                        .with_partitions(vec![part(0, -1, 0)])
                        .with_unknown_tagged_fields(tags()),
                ])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 3, rich, |r| r.with_replica_id(BrokerId(-1)));
            vec![encode(&rich, v), encode(&OffsetForLeaderEpochRequest::default(), v)]
        }
        17 => vec![
            encode(&SaslHandshakeRequest::default().with_mechanism(str_bytes("SCRAM-SHA-256")), v),
            encode(&SaslHandshakeRequest::default(), v),
        ],
        36 => {
            let rich = SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"n,,n=user,r=nonce"))
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&SaslAuthenticateRequest::default(), v)]
        }
        35 => {
            use describe_log_dirs_request::DescribableLogDirTopic;
            let rich = DescribeLogDirsRequest::default()
                .with_topics(Some(vec![
                    DescribableLogDirTopic::default()
                        .with_topic(topic_name("a"))
                        .with_partitions(vec![0, 1, 7])
                        .with_unknown_tagged_fields(tags()),
                    DescribableLogDirTopic::default()
                        .with_topic(topic_name("missing"))
                        .with_partitions(vec![0])
                        .with_unknown_tagged_fields(tags()),
                ]))
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DescribeLogDirsRequest::default().with_topics(None), v)]
        }
        61 => {
            use describe_producers_request::TopicRequest;
            let rich = DescribeProducersRequest::default()
                .with_topics(vec![
                    TopicRequest::default()
                        .with_name(topic_name("a"))
                        .with_partition_indexes(vec![0, 1, 5])
                        .with_unknown_tagged_fields(tags()),
                    TopicRequest::default()
                        .with_name(topic_name("missing"))
                        .with_partition_indexes(vec![0])
                        .with_unknown_tagged_fields(tags()),
                ])
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DescribeProducersRequest::default(), v)]
        }
        75 => {
            use describe_topic_partitions_request::{Cursor, TopicRequest};
            let rich = DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    TopicRequest::default().with_name(topic_name("a")).with_unknown_tagged_fields(tags()),
                    TopicRequest::default()
                        .with_name(topic_name("missing"))
                        .with_unknown_tagged_fields(tags()),
                ])
                .with_response_partition_limit(1)
                .with_cursor(Some(
                    Cursor::default()
                        .with_topic_name(topic_name("a"))
                        .with_partition_index(1)
                        .with_unknown_tagged_fields(tags()),
                ))
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DescribeTopicPartitionsRequest::default(), v)]
        }
        60 => {
            let rich = DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(true)
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 1, rich, |r| r.with_endpoint_type(1));
            let rich = when(v >= 2, rich, |r| r.with_include_fenced_brokers(true));
            vec![encode(&rich, v), encode(&DescribeClusterRequest::default(), v)]
        }
        37 => {
            use create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
            let assign = |brokers: &[i32]| {
                CreatePartitionsAssignment::default()
                    .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
                    .with_unknown_tagged_fields(tags())
            };
            let topic = |name: &str, count: i32, assignments| {
                CreatePartitionsTopic::default()
                    .with_name(topic_name(name))
                    .with_count(count)
                    .with_assignments(assignments)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = CreatePartitionsRequest::default()
                .with_topics(vec![
                    topic("a", 4, Some(vec![assign(&[0]), assign(&[0])])),
                    topic("b", 3, None),
                    topic("missing", 2, None),
                    topic("b", 1, Some(vec![])),
                ])
                .with_timeout_ms(1_000)
                .with_unknown_tagged_fields(tags());
            let small = CreatePartitionsRequest::default()
                .with_topics(vec![topic("a", 3, None)])
                .with_validate_only(true);
            vec![encode(&rich, v), encode(&small, v), encode(&CreatePartitionsRequest::default(), v)]
        }
        29 => {
            let rich = DescribeAclsRequest::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(str_bytes("a")))
                .with_pattern_type_filter(2)
                .with_principal_filter(Some(str_bytes("User:alice")))
                .with_host_filter(Some(str_bytes("*")))
                .with_operation(3)
                .with_permission_type(3)
                .with_unknown_tagged_fields(tags());
            let any = DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1);
            vec![encode(&rich, v), encode(&any, v), encode(&DescribeAclsRequest::default(), v)]
        }
        30 => {
            use create_acls_request::AclCreation;
            let creation = |name: &str, principal: &str, op: i8| {
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes(name))
                    .with_resource_pattern_type(3)
                    .with_principal(str_bytes(principal))
                    .with_host(str_bytes("*"))
                    .with_operation(op)
                    .with_permission_type(3)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = CreateAclsRequest::default()
                .with_creations(vec![creation("a", "User:alice", 3), creation("", "bad", 1)])
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&CreateAclsRequest::default(), v)]
        }
        31 => {
            use delete_acls_request::DeleteAclsFilter;
            let filter = |name: Option<&str>, op: i8| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_resource_name_filter(name.map(str_bytes))
                    .with_pattern_type_filter(1)
                    .with_principal_filter(Some(str_bytes("User:alice")))
                    .with_host_filter(None)
                    .with_operation(op)
                    .with_permission_type(1)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = DeleteAclsRequest::default()
                .with_filters(vec![filter(Some("a"), 1), filter(None, 0)])
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DeleteAclsRequest::default(), v)]
        }
        50 => {
            use describe_user_scram_credentials_request::UserName;
            let user = |name: &str| {
                UserName::default().with_name(str_bytes(name)).with_unknown_tagged_fields(tags())
            };
            let rich = DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![user("alice"), user("nobody"), user("alice")]))
                .with_unknown_tagged_fields(tags());
            let every = DescribeUserScramCredentialsRequest::default().with_users(None);
            vec![
                encode(&rich, v),
                encode(&every, v),
                encode(&DescribeUserScramCredentialsRequest::default(), v),
            ]
        }
        51 => {
            use alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
            let deletion = |name: &str, mechanism: i8| {
                ScramCredentialDeletion::default()
                    .with_name(str_bytes(name))
                    .with_mechanism(mechanism)
                    .with_unknown_tagged_fields(tags())
            };
            let upsertion = |name: &str, mechanism: i8, iterations: i32| {
                ScramCredentialUpsertion::default()
                    .with_name(str_bytes(name))
                    .with_mechanism(mechanism)
                    .with_iterations(iterations)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from_static(&[7; 32]))
                    .with_unknown_tagged_fields(tags())
            };
            let rich = AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![deletion("bob", 1), deletion("", 0)])
                .with_upsertions(vec![
                    upsertion("alice", 1, 4096),
                    upsertion("alice", 2, 8192),
                    upsertion("carol", 2, 1),
                ])
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&AlterUserScramCredentialsRequest::default(), v)]
        }
        48 => {
            use describe_client_quotas_request::ComponentData;
            let component = |t: &str, m: i8, name: Option<&str>| {
                let c = ComponentData::default().with_entity_type(str_bytes(t)).with_match_type(m);
                c.with_match(name.map(str_bytes)).with_unknown_tagged_fields(tags())
            };
            let rich = DescribeClientQuotasRequest::default()
                .with_components(vec![component("user", 0, Some("alice")), component("client-id", 2, None)])
                .with_strict(true);
            let rich = rich.with_unknown_tagged_fields(tags());
            let bad = DescribeClientQuotasRequest::default()
                .with_components(vec![component("user", 1, None), component("user", 9, None)]);
            vec![encode(&rich, v), encode(&bad, v), encode(&DescribeClientQuotasRequest::default(), v)]
        }
        49 => {
            use alter_client_quotas_request::{EntityData, EntryData, OpData};
            let entity = |t: &str, name: Option<&str>| {
                EntityData::default()
                    .with_entity_type(str_bytes(t))
                    .with_entity_name(name.map(str_bytes))
                    .with_unknown_tagged_fields(tags())
            };
            let op = |k: &str, value: f64, remove: bool| {
                OpData::default()
                    .with_key(str_bytes(k))
                    .with_value(value)
                    .with_remove(remove)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = AlterClientQuotasRequest::default()
                .with_entries(vec![
                    EntryData::default()
                        .with_entity(vec![entity("user", Some("alice")), entity("client-id", None)])
                        .with_ops(vec![
                            op("producer_byte_rate", 1024.0, false),
                            op("request_percentage", 0.0, true),
                        ]),
                    EntryData::default()
                        .with_entity(vec![entity("ip", Some("x"))])
                        .with_ops(vec![op("bogus", 1.5, false)]),
                ])
                .with_validate_only(true);
            vec![encode(&rich, v), encode(&AlterClientQuotasRequest::default(), v)]
        }
        key => group_samples(key, v, flex),
    }
}

fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

/// Request bodies of the group and producer APIs (the same shapes as [`samples`]).
fn group_samples(key: i16, v: i16, flex: bool) -> Vec<Vec<u8>> {
    let tags = || unknown_tags(flex);
    match key {
        8 => {
            use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
            let part = |i: i32, offset: i64, metadata: Option<&str>| {
                let p = OffsetCommitRequestPartition::default()
                    .with_partition_index(i)
                    .with_committed_offset(offset)
                    .with_committed_metadata(metadata.map(str_bytes))
                    .with_unknown_tagged_fields(tags());
                when(v >= 6, p, |p| p.with_committed_leader_epoch(2))
            };
            let topic = |name: &str, parts| {
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(parts)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = OffsetCommitRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(str_bytes(""))
                .with_topics(vec![
                    topic("a", vec![part(0, 1, Some("m")), part(1, 0, None)]),
                    topic("missing", vec![part(0, 3, Some(""))]),
                ])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 7, rich, |r| r.with_group_instance_id(Some(str_bytes("i-1"))));
            let rich = when(v <= 4, rich, |r| r.with_retention_time_ms(60_000));
            let member = OffsetCommitRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id_or_member_epoch(3)
                .with_member_id(str_bytes("m-1"))
                .with_topics(vec![topic("b", vec![part(0, 1, None)])]);
            vec![encode(&rich, v), encode(&member, v), encode(&OffsetCommitRequest::default(), v)]
        }
        9 => {
            use offset_fetch_request::{
                OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
            };
            if v >= 8 {
                let topics = |parts: &[(&str, &[i32])]| {
                    parts
                        .iter()
                        .map(|(t, p)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(topic_name(*t))
                                .with_partition_indexes(p.to_vec())
                                .with_unknown_tagged_fields(tags())
                        })
                        .collect()
                };
                let group = |id: &str, t: Option<Vec<OffsetFetchRequestTopics>>| {
                    let g = OffsetFetchRequestGroup::default()
                        .with_group_id(group_id(id))
                        .with_topics(t)
                        .with_unknown_tagged_fields(tags());
                    when(v >= 9, g, |g| g.with_member_id(Some(str_bytes("m-1"))).with_member_epoch(4))
                };
                let rich = OffsetFetchRequest::default()
                    .with_groups(vec![
                        group("g", Some(topics(&[("a", &[0, 1]), ("missing", &[0])]))),
                        group("h", None),
                        group("", Some(vec![])),
                    ])
                    .with_require_stable(true)
                    .with_unknown_tagged_fields(tags());
                let small = OffsetFetchRequest::default().with_groups(vec![group("g", None)]);
                return vec![encode(&rich, v), encode(&small, v), encode(&OffsetFetchRequest::default(), v)];
            }
            let topic = |name: &str, p: &[i32]| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(name))
                    .with_partition_indexes(p.to_vec())
                    .with_unknown_tagged_fields(tags())
            };
            let rich = OffsetFetchRequest::default()
                .with_group_id(group_id("g"))
                .with_topics(Some(vec![topic("a", &[0, 1]), topic("missing", &[0])]))
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 7, rich, |r| r.with_require_stable(true));
            let mut out = vec![encode(&rich, v), encode(&OffsetFetchRequest::default(), v)];
            if v >= 2 {
                out.push(encode(
                    &OffsetFetchRequest::default().with_group_id(group_id("g")).with_topics(None),
                    v,
                ));
            }
            out
        }
        10 => {
            let rich = if v >= 4 {
                FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![str_bytes("g"), str_bytes("tx"), str_bytes("")])
                    .with_key_type(1)
            } else {
                when(v >= 1, FindCoordinatorRequest::default().with_key(str_bytes("g")), |r| {
                    r.with_key_type(1)
                })
            };
            let rich = rich.with_unknown_tagged_fields(tags());
            let bad_type = when(v >= 1, FindCoordinatorRequest::default(), |r| r.with_key_type(7));
            vec![encode(&rich, v), encode(&bad_type, v), encode(&FindCoordinatorRequest::default(), v)]
        }
        11 => {
            use join_group_request::JoinGroupRequestProtocol;
            let protocol = |name: &str, metadata: &'static [u8]| {
                JoinGroupRequestProtocol::default()
                    .with_name(str_bytes(name))
                    .with_metadata(Bytes::from_static(metadata))
                    .with_unknown_tagged_fields(tags())
            };
            let join = |member: &str| {
                JoinGroupRequest::default()
                    .with_group_id(group_id("g"))
                    .with_session_timeout_ms(10_000)
                    .with_member_id(str_bytes(member))
                    .with_protocol_type(str_bytes("consumer"))
                    .with_protocols(vec![protocol("range", b"\x00\x01meta"), protocol("roundrobin", b"")])
            };
            let rich = join("").with_unknown_tagged_fields(tags());
            let rich = when(v >= 1, rich, |r| r.with_rebalance_timeout_ms(30_000));
            let rich = when(v >= 5, rich, |r| r.with_group_instance_id(Some(str_bytes("i-1"))));
            let rich = when(v >= 8, rich, |r| r.with_reason(Some(str_bytes("because"))));
            let known = join("m-1");
            let bad = JoinGroupRequest::default().with_protocol_type(str_bytes("consumer"));
            vec![
                encode(&rich, v),
                encode(&known, v),
                encode(&bad, v),
                encode(&JoinGroupRequest::default(), v),
            ]
        }
        12 => {
            let rich = HeartbeatRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id(1)
                .with_member_id(str_bytes("m-1"))
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 3, rich, |r| r.with_group_instance_id(Some(str_bytes("i-1"))));
            vec![encode(&rich, v), encode(&HeartbeatRequest::default(), v)]
        }
        13 => {
            use leave_group_request::MemberIdentity;
            let rich = if v >= 3 {
                let member = |id: &str, instance: Option<&str>| {
                    let m = MemberIdentity::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_unknown_tagged_fields(tags());
                    when(v >= 5, m, |m| m.with_reason(Some(str_bytes("bye"))))
                };
                LeaveGroupRequest::default().with_members(vec![member("m-1", None), member("", Some("i-1"))])
            } else {
                LeaveGroupRequest::default().with_member_id(str_bytes("m-1"))
            };
            let rich = rich.with_group_id(group_id("g")).with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&LeaveGroupRequest::default(), v)]
        }
        14 => {
            use sync_group_request::SyncGroupRequestAssignment;
            let assignment = |m: &str, a: &'static [u8]| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(str_bytes(m))
                    .with_assignment(Bytes::from_static(a))
                    .with_unknown_tagged_fields(tags())
            };
            let rich = SyncGroupRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id(1)
                .with_member_id(str_bytes("m-1"))
                .with_assignments(vec![assignment("m-1", b"\x00\x01a"), assignment("m-2", b"")])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 3, rich, |r| r.with_group_instance_id(Some(str_bytes("i-1"))));
            let rich = when(v >= 5, rich, |r| {
                r.with_protocol_type(Some(str_bytes("consumer"))).with_protocol_name(Some(str_bytes("range")))
            });
            vec![encode(&rich, v), encode(&SyncGroupRequest::default(), v)]
        }
        15 => {
            let rich = DescribeGroupsRequest::default()
                .with_groups(vec![group_id("g"), group_id("missing"), group_id("")])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 3, rich, |r| r.with_include_authorized_operations(true));
            vec![encode(&rich, v), encode(&DescribeGroupsRequest::default(), v)]
        }
        16 => {
            let rich = ListGroupsRequest::default().with_unknown_tagged_fields(tags());
            let rich =
                when(v >= 4, rich, |r| r.with_states_filter(vec![str_bytes("Stable"), str_bytes("Empty")]));
            let rich = when(v >= 5, rich, |r| r.with_types_filter(vec![str_bytes("classic")]));
            vec![encode(&rich, v), encode(&ListGroupsRequest::default(), v)]
        }
        22 => {
            let plain = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_unknown_tagged_fields(tags());
            let rich =
                when(v >= 3, plain.clone(), |r| r.with_producer_id(ProducerId(1000)).with_producer_epoch(0));
            let tx = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(str_bytes("tx"))));
            vec![
                encode(&rich, v),
                encode(&plain, v),
                encode(&tx, v),
                encode(&InitProducerIdRequest::default(), v),
            ]
        }
        24 => {
            use add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
            let topic = |name: &str, parts: &[i32]| {
                AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(parts.to_vec())
                    .with_unknown_tagged_fields(tags())
            };
            let topics = || vec![topic("a", &[0, 1]), topic("missing", &[0]), topic("b", &[7])];
            let rich = if v >= 4 {
                AddPartitionsToTxnRequest::default().with_transactions(vec![
                    AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(TransactionalId(str_bytes("tx")))
                        .with_producer_id(ProducerId(1000))
                        .with_producer_epoch(2)
                        .with_verify_only(true)
                        .with_topics(topics())
                        .with_unknown_tagged_fields(tags()),
                ])
            } else {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(str_bytes("tx")))
                    .with_v3_and_below_producer_id(ProducerId(1000))
                    .with_v3_and_below_producer_epoch(2)
                    .with_v3_and_below_topics(topics())
            };
            let rich = rich.with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&AddPartitionsToTxnRequest::default(), v)]
        }
        25 => {
            let rich = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("tx")))
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(2)
                .with_group_id(group_id("g"))
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&AddOffsetsToTxnRequest::default(), v)]
        }
        26 => {
            let rich = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("tx")))
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(2)
                .with_committed(true)
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&EndTxnRequest::default(), v)]
        }
        28 => {
            use txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
            let part = |i: i32, offset: i64, metadata: Option<&str>| {
                let p = TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(i)
                    .with_committed_offset(offset)
                    .with_committed_metadata(metadata.map(str_bytes))
                    .with_unknown_tagged_fields(tags());
                when(v >= 2, p, |p| p.with_committed_leader_epoch(2))
            };
            let topic = |name: &str, parts| {
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(parts)
                    .with_unknown_tagged_fields(tags())
            };
            let rich = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("tx")))
                .with_group_id(group_id("g"))
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(2)
                .with_topics(vec![
                    topic("a", vec![part(0, 1, Some("m")), part(9, 0, None)]),
                    topic("missing", vec![part(0, 3, Some(""))]),
                ])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 3, rich, |r| {
                r.with_generation_id(3)
                    .with_member_id(str_bytes("m-1"))
                    .with_group_instance_id(Some(str_bytes("i-1")))
            });
            vec![encode(&rich, v), encode(&TxnOffsetCommitRequest::default(), v)]
        }
        65 => {
            let rich = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![
                    TransactionalId(str_bytes("tx")),
                    TransactionalId(str_bytes("")),
                    TransactionalId(str_bytes("missing")),
                ])
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DescribeTransactionsRequest::default(), v)]
        }
        66 => {
            let rich = ListTransactionsRequest::default()
                .with_state_filters(vec![str_bytes("Ongoing"), str_bytes("Bogus")])
                .with_producer_id_filters(vec![ProducerId(1000), ProducerId(-1)])
                .with_unknown_tagged_fields(tags());
            let rich = when(v >= 1, rich, |r| r.with_duration_filter(60_000));
            let rich = when(v >= 2, rich, |r| r.with_transactional_id_pattern(Some(str_bytes("tx.*"))));
            vec![encode(&rich, v), encode(&ListTransactionsRequest::default(), v)]
        }
        42 => {
            let rich = DeleteGroupsRequest::default()
                .with_groups_names(vec![group_id("g"), group_id("missing")])
                .with_unknown_tagged_fields(tags());
            vec![encode(&rich, v), encode(&DeleteGroupsRequest::default(), v)]
        }
        47 => {
            use offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
            let topic = |name: &str, parts: &[i32]| {
                OffsetDeleteRequestTopic::default().with_name(topic_name(name)).with_partitions(
                    parts
                        .iter()
                        .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                        .collect(),
                )
            };
            let rich = OffsetDeleteRequest::default()
                .with_group_id(group_id("g"))
                .with_topics(vec![topic("a", &[0, 1]), topic("missing", &[0])]);
            vec![encode(&rich, v), encode(&OffsetDeleteRequest::default(), v)]
        }
        _ => unreachable!("api key {key}"),
    }
}

/// Decode `body` with kafka-protocol as the request of `key` at `version`: the bytes it consumed.
fn codec_decode(key: i16, v: i16, body: &[u8]) -> Option<usize> {
    fn go<R: Decodable>(body: &[u8], v: i16) -> Option<usize> {
        let mut buf = Bytes::copy_from_slice(body);
        R::decode(&mut buf, v).ok().map(|_| body.len() - buf.remaining())
    }
    match key {
        0 => go::<ProduceRequest>(body, v),
        1 => go::<FetchRequest>(body, v),
        2 => go::<ListOffsetsRequest>(body, v),
        3 => go::<MetadataRequest>(body, v),
        8 => go::<OffsetCommitRequest>(body, v),
        9 => go::<OffsetFetchRequest>(body, v),
        10 => go::<FindCoordinatorRequest>(body, v),
        11 => go::<JoinGroupRequest>(body, v),
        12 => go::<HeartbeatRequest>(body, v),
        13 => go::<LeaveGroupRequest>(body, v),
        14 => go::<SyncGroupRequest>(body, v),
        15 => go::<DescribeGroupsRequest>(body, v),
        16 => go::<ListGroupsRequest>(body, v),
        18 => go::<ApiVersionsRequest>(body, v),
        22 => go::<InitProducerIdRequest>(body, v),
        42 => go::<DeleteGroupsRequest>(body, v),
        47 => go::<OffsetDeleteRequest>(body, v),
        19 => go::<CreateTopicsRequest>(body, v),
        20 => go::<DeleteTopicsRequest>(body, v),
        32 => go::<DescribeConfigsRequest>(body, v),
        37 => go::<CreatePartitionsRequest>(body, v),
        21 => go::<DeleteRecordsRequest>(body, v),
        33 => go::<AlterConfigsRequest>(body, v),
        44 => go::<IncrementalAlterConfigsRequest>(body, v),
        60 => go::<DescribeClusterRequest>(body, v),
        23 => go::<OffsetForLeaderEpochRequest>(body, v),
        35 => go::<DescribeLogDirsRequest>(body, v),
        17 => go::<SaslHandshakeRequest>(body, v),
        36 => go::<SaslAuthenticateRequest>(body, v),
        61 => go::<DescribeProducersRequest>(body, v),
        75 => go::<DescribeTopicPartitionsRequest>(body, v),
        29 => go::<DescribeAclsRequest>(body, v),
        30 => go::<CreateAclsRequest>(body, v),
        31 => go::<DeleteAclsRequest>(body, v),
        50 => go::<DescribeUserScramCredentialsRequest>(body, v),
        51 => go::<AlterUserScramCredentialsRequest>(body, v),
        48 => go::<DescribeClientQuotasRequest>(body, v),
        49 => go::<AlterClientQuotasRequest>(body, v),
        24 => go::<AddPartitionsToTxnRequest>(body, v),
        25 => go::<AddOffsetsToTxnRequest>(body, v),
        26 => go::<EndTxnRequest>(body, v),
        28 => go::<TxnOffsetCommitRequest>(body, v),
        65 => go::<DescribeTransactionsRequest>(body, v),
        66 => go::<ListTransactionsRequest>(body, v),
        _ => unreachable!("api key {key}"),
    }
}

/// Every (api key, version, sample body) we serve.
fn supported_samples() -> Vec<(i16, i16, Vec<u8>)> {
    SUPPORTED
        .iter()
        .flat_map(|&(key, min, max)| {
            (min..=max).flat_map(move |v| samples(key, v).into_iter().map(move |b| (key, v, b)))
        })
        .collect()
}

/// Every (api key, version, sample body) kafka-protocol decodes.
fn codec_samples() -> Vec<(i16, i16, Vec<u8>)> {
    SUPPORTED
        .iter()
        .flat_map(|&(key, _, _)| {
            codec_versions(key).flat_map(move |v| samples(key, v).into_iter().map(move |b| (key, v, b)))
        })
        .collect()
}

// --- mutations ---

/// Values that break lengths and counts: the largest int32, -1, -2, i32::MIN, a varint of
/// u32::MAX, an unterminated varint, zero.
const NASTY: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff],
    &[0xff, 0xfe],
    &[0x80, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0x07],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
    &[0x00, 0x00],
];

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Overwrite(Index, &'static [u8]),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..24).prop_map(Mutation::Extend),
        2 => (any::<Index>(), proptest::sample::select(NASTY)).prop_map(|(i, v)| Mutation::Overwrite(i, v)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

/// Apply `m` to `bytes[from..]` (the bytes before `from` are kept).
fn apply(bytes: &mut Vec<u8>, from: usize, m: &Mutation) {
    let span = bytes.len().saturating_sub(from);
    let at = |i: &Index| from + if span == 0 { 0 } else { i.index(span) };
    match m {
        Mutation::FlipBit(i, bit) if span > 0 => {
            let at = at(i);
            bytes[at] ^= 1 << bit;
        }
        Mutation::Truncate(i) => bytes.truncate(from + if span == 0 { 0 } else { i.index(span + 1) }),
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
        Mutation::Overwrite(i, value) => {
            let at = at(i);
            let end = (at + value.len()).min(bytes.len());
            bytes.splice(at..end, value.iter().copied());
        }
        Mutation::Insert(i, value) => {
            let at = at(i);
            bytes.splice(at..at, value.iter().copied());
        }
        Mutation::Remove(i, n) if span > 0 => {
            let at = at(i);
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
        _ => {}
    }
}

/// (api key, version) pairs: every supported version, the versions just outside each range,
/// and api keys we do not serve.
fn key_and_version() -> impl Strategy<Value = (i16, i16)> {
    let mut pairs: Vec<(i16, i16)> =
        SUPPORTED.iter().flat_map(|&(k, min, max)| (min - 1..=max + 1).map(move |v| (k, v))).collect();
    pairs.extend([(4, 0), (27, 1), (67, 0), (68, 0), (-1, 0), (i16::MAX, 3)]);
    proptest::sample::select(pairs)
}

fn in_range(key: i16, version: i16) -> bool {
    crate::apis::range(key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// 512 cases per property; `PROPTEST_CASES` (and proptest's other variables) for a longer run.
fn config() -> ProptestConfig {
    let config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        config
    } else {
        ProptestConfig { cases: 512, ..config }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random bytes after a valid header: an answer, a wait or a close, never a panic; a key or
    /// version we do not serve closes (ApiVersions answers, per KIP-511).
    #[test]
    fn random_bodies_never_panic(
        (key, version) in key_and_version(),
        body in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let frame = raw_frame(key, version, header_version(key, version), &body);
        let (out, largest) = largest_allocation(|| exercise(&frame));
        prop_assert!(largest <= allocation_bound(frame.len()), "{largest} bytes allocated for a {}-byte frame", frame.len());
        if !in_range(key, version) {
            match out {
                Outcome::Respond(Some(_)) if key == 18 => {}
                Outcome::Close(_) => {}
                other => prop_assert!(false, "key {key} v{version} not closed: {other:?}"),
            }
        }
    }

    /// A valid request of any API, bit-flipped, truncated, extended, with a length or count
    /// overwritten: never a panic, never an allocation out of proportion to the frame.
    #[test]
    fn mutated_requests_never_panic(
        sample in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let samples = supported_samples();
        let (key, version, body) = &samples[sample.index(samples.len())];
        let mut bytes = raw_frame(*key, *version, header_version(*key, *version), body).to_vec();
        for m in &mutations {
            // Keep the api key and version (mutating those is `random_bodies_never_panic`).
            apply(&mut bytes, 4, m);
        }
        let frame = Bytes::from(bytes);
        let (_, largest) = largest_allocation(|| exercise(&frame));
        prop_assert!(
            largest <= allocation_bound(frame.len()),
            "api key {key} v{version}: {largest} bytes allocated for {:02x?}",
            &frame[..]
        );
    }

    /// The claims walk agrees with kafka-protocol's decoder on mutated bodies: it never stops
    /// where the decoder goes on (so every count the decoder reads has been checked), and where
    /// the decoder succeeds it consumes the same bytes.
    #[test]
    fn claims_match_the_decoder(
        sample in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let samples = codec_samples();
        let (key, version, body) = &samples[sample.index(samples.len())];
        let mut body = body.clone();
        for m in &mutations {
            apply(&mut body, 0, m);
        }
        match claims::walk(*key, *version, &body).expect("a known api") {
            // The decoder would reserve memory for the claim: do not run it.
            Err(Stop::Impossible { .. }) => {}
            Err(Stop::Malformed) => {
                prop_assert_eq!(codec_decode(*key, *version, &body), None, "the walk stopped where the decoder did not");
            }
            Ok(walked) => {
                if let Some(decoded) = codec_decode(*key, *version, &body) {
                    prop_assert_eq!(walked, decoded);
                }
            }
        }
    }
}

/// Every sample of every version kafka-protocol decodes: the walk consumes it exactly, as the
/// decoder does, and the translator's check passes it.
#[test]
fn claims_walk_valid_requests_exactly() {
    for (key, version, body) in codec_samples() {
        let walked = claims::walk(key, version, &body).expect("a known api");
        assert_eq!(walked, Ok(body.len()), "api key {key} v{version}");
        assert_eq!(codec_decode(key, version, &body), Some(body.len()), "api key {key} v{version}");
        assert_eq!(claims::check(key, version, &body), Ok(()), "api key {key} v{version}");
    }
}

/// Every valid sample gets an answer (or a wait), so the mutation properties start from requests
/// that reach the handlers' logic.
#[test]
fn valid_samples_are_answered() {
    for (key, version, body) in supported_samples() {
        let frame = raw_frame(key, version, header_version(key, version), &body);
        let out = exercise(&frame);
        assert!(!matches!(out, Outcome::Close(_)), "api key {key} v{version}: {out:?}");
    }
}

/// A claimed count of 2^31-1 (or a compact count of 2^32-2) at every offset of every rich
/// sample: handled with no allocation beyond the frame's bound. Without the claims check the
/// decoder reserves count × element size (tens of GiB) and the process aborts.
#[test]
fn huge_counts_anywhere_allocate_nothing_proportional() {
    for (key, version, body) in supported_samples() {
        let frame = raw_frame(key, version, header_version(key, version), &body).to_vec();
        let header = frame.len() - body.len();
        for at in header..frame.len() {
            for value in [&[0x7f, 0xff, 0xff, 0xff][..], &[0xff, 0xff, 0xff, 0xff, 0x0f][..]] {
                let mut bytes = frame.clone();
                let end = (at + value.len()).min(bytes.len());
                bytes.splice(at..end, value.iter().copied());
                let bytes = Bytes::from(bytes);
                let (_, largest) = largest_allocation(|| exercise(&bytes));
                assert!(
                    largest <= allocation_bound(bytes.len()),
                    "api key {key} v{version}, count at {at}: {largest} bytes allocated for {} bytes",
                    bytes.len()
                );
            }
        }
    }
}

/// The few-byte frames of the issue: a Metadata request whose topic array claims 2^31-1
/// elements (v1, int32 count) or 2^32-2 (v9, compact count) closes the connection at once.
#[test]
fn a_huge_topic_count_in_a_tiny_frame_closes() {
    for (version, count) in [(1, &[0x7f, 0xff, 0xff, 0xff][..]), (9, &[0xff, 0xff, 0xff, 0xff, 0x0f][..])] {
        let frame = raw_frame(3, version, header_version(3, version), count);
        let (out, largest) =
            largest_allocation(|| stub::run::<KafkaTranslator>(&host(), frame.clone(), false));
        let Outcome::Close(why) = out else { panic!("v{version}: {out:?}") };
        assert!(why.contains("claims"), "v{version}: {why}");
        assert!(largest < 64 * 1024, "v{version}: {largest} bytes");
    }
}
