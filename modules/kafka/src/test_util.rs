//! Helpers for native tests: encode a request frame, run the translator on the stub host, decode
//! the response.

use crate::KafkaTranslator;
use bytes::{Bytes, BytesMut};
use guise_guest_sdk::stub::{self, StubBuffer, StubServices};
use guise_guest_sdk::{Outcome, Services};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Encode `body` as a request frame (no size prefix) of `key` at `version`.
pub fn frame<R: Encodable>(key: ApiKey, version: i16, body: &R) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// Run the translator on one frame, on the stub host or a test host built on it.
pub fn run<S: Services<Buffer = StubBuffer>>(svc: &S, frame: Bytes) -> Outcome<StubBuffer> {
    use guise_guest_sdk::Handler;
    let buf = StubBuffer(frame.clone());
    let req = guise_guest_sdk::Request { bytes: frame, frame: &buf };
    KafkaTranslator::handle(svc, &req, false)
}

/// Run a request and decode its response (asserting it was answered with correlation id 42).
pub fn call<S: Services<Buffer = StubBuffer>, Req: Encodable, Resp: Decodable + HeaderVersion>(
    svc: &S,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    answer(key, version, run(svc, frame(key, version, body)))
}

/// Like [`call`], run as the re-run of a parked request whose deadline passed (`final`).
pub fn call_final<Req: Encodable, Resp: Decodable + HeaderVersion>(
    svc: &StubServices,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    answer(key, version, stub::run::<KafkaTranslator>(svc, frame(key, version, body), true))
}

/// The response in `out`, decoded.
pub fn answer<Resp: Decodable + HeaderVersion>(key: ApiKey, version: i16, out: Outcome<StubBuffer>) -> Resp {
    let Outcome::Respond(Some(segments)) = out else { panic!("expected a response, got {out:?}") };
    decode_response(key, version, &stub::flatten(&segments))
}

/// Decode a response (header + body) of `key` at `version`.
pub fn decode_response<Resp: Decodable + HeaderVersion>(key: ApiKey, version: i16, bytes: &[u8]) -> Resp {
    let mut buf = Bytes::copy_from_slice(bytes);
    let hv = if key == ApiKey::ApiVersions { 0 } else { Resp::header_version(version) };
    let header = ResponseHeader::decode(&mut buf, hv).unwrap();
    assert_eq!(header.correlation_id, 42);
    let resp = Resp::decode(&mut buf, version).unwrap();
    assert!(buf.is_empty(), "trailing bytes in response");
    resp
}

/// Ask the translator for its error response to one frame, flattened as the host would send it.
pub fn error_response<S: Services<Buffer = StubBuffer>>(
    svc: &S,
    frame: Bytes,
    code: guise_guest_sdk::ErrorCode,
) -> Vec<u8> {
    use guise_guest_sdk::Handler;
    let buf = StubBuffer(frame.clone());
    let req = guise_guest_sdk::Request { bytes: frame, frame: &buf };
    let segments = KafkaTranslator::error_response(svc, &req, code).expect("an error response");
    stub::flatten(&segments)
}

/// A request frame built by hand: `key` and `version` in a request header of `header_version`
/// (correlation id 42, client id "test"), followed by `body` as already-encoded bytes. For
/// versions the codec refuses to encode (unsupported or unknown ones).
pub fn raw_frame(key: i16, version: i16, header_version: i16, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buf, header_version)
        .unwrap();
    buf.extend_from_slice(body);
    buf.freeze()
}

/// One uncompressed record batch (magic 2, no producer id) holding `values`, the i-th with
/// timestamp `timestamps[i]` (or the last timestamp given, when there are fewer), base offset 0.
pub fn record_batch(values: &[&[u8]], timestamps: &[i64]) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
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
            // Sequence = offset - 1 keeps every record in one batch with base sequence -1.
            sequence: i as i32 - 1,
            timestamp: *timestamps.get(i).or(timestamps.last()).unwrap_or(&0),
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// `batch` as stored at `base_offset`: the first 8 bytes (outside the CRC) patched.
pub fn at_offset(batch: &[u8], base_offset: i64) -> Vec<u8> {
    let mut out = batch.to_vec();
    out[..8].copy_from_slice(&base_offset.to_be_bytes());
    out
}

/// A Produce request (no transactional id) with `acks`, writing each (topic, partition, records).
pub fn produce_request(
    acks: i16,
    parts: &[(&str, i32, Option<Bytes>)],
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, records) in parts {
        let data = PartitionProduceData::default().with_index(*partition).with_records(records.clone());
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(topics)
}

/// A Fetch request: `max_wait_ms`, `min_bytes`, `max_bytes`, and per (topic, partition, fetch
/// offset, partition max bytes), grouped by topic in order of first appearance.
pub fn fetch_request(
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    parts: &[(&str, i32, i64, i32)],
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (topic, partition, offset, partition_max) in parts {
        let p = FetchPartition::default()
            .with_partition(*partition)
            .with_fetch_offset(*offset)
            .with_partition_max_bytes(*partition_max);
        match topics.iter_mut().find(|t| t.topic.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![p]),
            ),
        }
    }
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(topics)
}

/// `s` as a group id.
pub fn group_id(s: &str) -> kafka_protocol::messages::GroupId {
    kafka_protocol::messages::GroupId(StrBytes::from_string(s.to_string()))
}

/// A JoinGroup request of a consumer supporting "range" (with metadata `\0\x01range-meta`) and
/// "roundrobin": session timeout 10 s, rebalance timeout 30 s.
pub fn join_request(group: &str, member: &str) -> kafka_protocol::messages::JoinGroupRequest {
    use kafka_protocol::messages::JoinGroupRequest;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let protocol = |name: &'static str, metadata: &'static [u8]| {
        JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str(name))
            .with_metadata(Bytes::from_static(metadata))
    };
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![protocol("range", b"\x00\x01range-meta"), protocol("roundrobin", b"rr")])
}

/// Join `group` at `v` (with KIP-394's second round from v4), returning the final response.
pub fn join(svc: &StubServices, v: i16, group: &str) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::JoinGroupResponse;
    let first: JoinGroupResponse = call(svc, ApiKey::JoinGroup, v, &join_request(group, ""));
    if v < 4 {
        return first;
    }
    assert_eq!(first.error_code, guise_guest_sdk::error::MEMBER_ID_REQUIRED, "v{v}");
    assert!(!first.member_id.is_empty(), "v{v}");
    call(svc, ApiKey::JoinGroup, v, &join_request(group, first.member_id.as_str()))
}

/// Two members join `group` at `v` the way clients do with the host's coordinator: the first
/// joins and leads generation 1; the second's join starts a rebalance and waits (`Wait`); the
/// first rejoins, which completes it; the second's parked join is re-run. Returns the leader's
/// and the follower's responses, both of generation 2.
pub fn join_two(
    svc: &StubServices,
    v: i16,
    group: &str,
) -> (kafka_protocol::messages::JoinGroupResponse, kafka_protocol::messages::JoinGroupResponse) {
    use kafka_protocol::messages::JoinGroupResponse;
    let first = join(svc, v, group);
    let mut second = join_request(group, "");
    if v >= 4 {
        let r: JoinGroupResponse = call(svc, ApiKey::JoinGroup, v, &second);
        assert_eq!(r.error_code, guise_guest_sdk::error::MEMBER_ID_REQUIRED, "v{v}");
        second = join_request(group, r.member_id.as_str());
    }
    let out = run(svc, frame(ApiKey::JoinGroup, v, &second));
    assert!(matches!(out, Outcome::Wait(_)), "v{v}: the second member waits for the rebalance: {out:?}");
    let leader: JoinGroupResponse =
        call(svc, ApiKey::JoinGroup, v, &join_request(group, first.member_id.as_str()));
    let follower: JoinGroupResponse = call(svc, ApiKey::JoinGroup, v, &second);
    assert_eq!((leader.error_code, follower.error_code), (0, 0), "v{v}");
    (leader, follower)
}

/// Join `group` alone at `v` and sync as its leader (assigning itself nothing), so the group is
/// Stable at generation 1. Returns the join response.
pub fn join_stable(svc: &StubServices, v: i16, group: &str) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
    let joined = join(svc, v, group);
    let sync = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_assignments(vec![
            SyncGroupRequestAssignment::default().with_member_id(joined.member_id.clone()),
        ]);
    let resp: SyncGroupResponse = call(svc, ApiKey::SyncGroup, 3, &sync);
    assert_eq!(resp.error_code, 0, "the leader's sync");
    joined
}

/// An OffsetCommit request of (topic, partition, offset), each with metadata "meta-{offset}".
pub fn commit_request(
    group: &str,
    generation: i32,
    member: &str,
    parts: &[(&str, i32, i64)],
) -> kafka_protocol::messages::OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{OffsetCommitRequest, TopicName};
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in parts {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(StrBytes::from_string(format!("meta-{offset}"))));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_topics(topics)
}

/// An ALLOW binding for any host.
pub fn acl_binding(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    operation: i8,
) -> guise_guest_sdk::AclBinding {
    guise_guest_sdk::AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission_type: guise_guest_sdk::acl::ALLOW,
    }
}
