//! Produce v3–v12: append each partition's record batch through the host.
//!
//! Record bytes never round-trip through the guest: the request is decoded from `Bytes`, so each
//! partition's `records` is a sub-slice of the frame; the guest names that slice of the host's
//! frame buffer and the host validates (bounds, magic, CRC32C, size) and appends its own bytes.
//!
//! * `acks` must be -1, 0 or 1, else every partition gets INVALID_REQUIRED_ACKS (as Kafka's
//!   ReplicaManager answers). With acks=0 a fully successful produce gets no response at all,
//!   and a failed one closes the connection, which is how Kafka tells an acks=0 producer.
//! * An unknown topic is created when the host allows auto-creation (`auto.create.topics.enable`,
//!   with `num.partitions` partitions). Kafka itself only auto-creates on Metadata; creating on
//!   produce too saves a producer a failed round trip and is what this project's design asks.
//! * Like Kafka's `ProduceRequest.validateRecords`, a partition whose records are missing, empty,
//!   not magic 2, or more than one batch gets INVALID_RECORD (87), and zstd before v7 gets
//!   UNSUPPORTED_COMPRESSION_TYPE; everything else about the batch (truncation, CRC, size) is the
//!   host's to check, and its error is passed through. An unknown topic or partition is reported
//!   before refused records, as in Kafka.
//! * Idempotence and transactions are the host's: it checks each batch's producer id, epoch and
//!   sequence, and that a transactional batch's partition is in its producer's open transaction.
//!   As Kafka's broker does first of all, a request with a transactional batch needs a
//!   transactional id the principal may WRITE: else every partition gets
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED and nothing is appended.
//! * v10 and v11 change nothing here (v10's leader hints are optional tagged fields; v11 says
//!   the client knows TRANSACTION_ABORTABLE, never answered). From v12 (transaction version 2)
//!   the client sends no AddPartitionsToTxn: a transactional batch's partition is added to its
//!   producer's transaction before the batch is appended, as Kafka's leader does.

use crate::context::{ApiResult, Ctx};
use crate::txn_common::may_write;
use bytes::Bytes;
use guise_guest_sdk::{ErrorCode, Outcome, ProducerIdAndEpoch, Services, TopicPartition, acl, error};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

/// INVALID_RECORD: what Kafka (2.5+, KIP-467) answers for a partition whose records fail
/// `ProduceRequest.validateRecords` (no batch, wrong magic, more than one batch).
pub(crate) use guise_guest_sdk::error::INVALID_RECORD;

/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED: a transactional batch without a transactional id the
/// principal may WRITE (Kafka's `KafkaApis.handleProduceRequest`).
pub(crate) use guise_guest_sdk::error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;

/// UNSUPPORTED_COMPRESSION_TYPE: zstd in a produce before v7.
pub(crate) use guise_guest_sdk::error::UNSUPPORTED_COMPRESSION_TYPE;

/// Offset of the magic byte in a record batch (after base offset 8, length 4, leader epoch 4).
const MAGIC_AT: usize = 16;
/// Offset of the int16 attributes (after the magic and the CRC); compression is its low 3 bits.
const ATTRIBUTES_AT: usize = 21;
const ZSTD: u8 = 4;
/// The attributes' transactional bit (in their low byte).
const TRANSACTIONAL: u8 = 0x10;
/// Offset of the batch's int64 producer id (its int16 epoch follows).
const PRODUCER_ID_AT: usize = 43;
/// A record batch's header, up to its record count.
const BATCH_HEADER_LEN: usize = 61;
/// The first version whose transactional batches add their partition to the transaction
/// (transaction version 2, KIP-890 part 2: the client sends no AddPartitionsToTxn).
const ADDS_THE_PARTITION_FROM: i16 = 12;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: ProduceRequest = cx.decode()?;
    // A whole-request refusal, before anything is appended.
    let transactional =
        req.topic_data.iter().flat_map(|t| &t.partition_data).any(|p| is_transactional(p.records.as_ref()));
    let refused =
        if transactional && !req.transactional_id.as_ref().is_some_and(|id| may_write(cx.svc, id.as_str())) {
            Some(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else if !matches!(req.acks, -1..=1) {
            Some(error::INVALID_REQUIRED_ACKS)
        } else {
            None
        };

    let mut auto_create: Option<(bool, i32)> = None;
    let mut first_failure: Option<(String, i32, ErrorCode)> = None;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for t in &req.topic_data {
        let name = t.name.as_str();
        // The topic's partition count or why it cannot be written, looked up only when an append
        // says the topic or partition is unknown (or a partition's records are refused): the
        // common case costs one host call per partition, the append.
        let mut partitions: Option<Result<i32, ErrorCode>> = refused.map(Err);
        let mut tp = TopicPartition { topic: name.to_string(), partition: 0 };
        let mut partition_responses = Vec::with_capacity(t.partition_data.len());
        for p in &t.partition_data {
            tp.partition = p.index;
            // The whole request, or this topic, is refused already.
            let refused = partitions.and_then(Result::err);
            // Whether the topic has this partition; `create`: auto-create the topic if it is
            // unknown and the host allows it. Ok(true) when the topic was looked up just now.
            let mut known = |create: bool| -> Result<bool, ErrorCode> {
                let (n, fresh) = match partitions {
                    Some(n) => (n, false),
                    None if !create => (
                        cx.svc
                            .describe_topic(name)
                            .map(|i| i.partitions)
                            .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION),
                        false,
                    ),
                    None => (*partitions.insert(topic_partitions(cx, name, &mut auto_create)), true),
                };
                if (0..n?).contains(&p.index) { Ok(fresh) } else { Err(error::UNKNOWN_TOPIC_OR_PARTITION) }
            };
            let result = match (refused, check_records(p.records.as_ref(), cx.version)) {
                (Some(code), _) => Err(code),
                // Kafka reports an unknown topic or partition before refused records (and does
                // not create a topic for them).
                (None, Err(code)) => known(false).and(Err(code)),
                // Transaction version 2: the partition joins its producer's transaction first.
                (None, Ok(records))
                    if cx.version >= ADDS_THE_PARTITION_FROM && is_transactional(Some(records)) =>
                {
                    let id = req.transactional_id.as_ref().map_or("", |id| id.as_str());
                    authorize_write(cx, name)
                        .and_then(|()| known(true))
                        .and_then(|_| add_to_transaction(cx, id, &tp, records))
                        .and_then(|()| cx.req.host_slice(records))
                        .and_then(|buf| cx.svc.append(&tp, &buf))
                }
                (None, Ok(records)) => cx.req.host_slice(records).and_then(|buf| {
                    match cx.svc.append(&tp, &buf) {
                        // Create the topic if allowed, and append again if it was just created
                        // (or another connection created it meanwhile).
                        Err(error::UNKNOWN_TOPIC_OR_PARTITION) => match known(true)? {
                            true => cx.svc.append(&tp, &buf),
                            false => Err(error::UNKNOWN_TOPIC_OR_PARTITION),
                        },
                        r => r,
                    }
                }),
            };
            let r = PartitionProduceResponse::default().with_index(p.index);
            partition_responses.push(match result {
                Ok(info) => r
                    .with_error_code(error::NONE)
                    .with_base_offset(info.base_offset)
                    .with_log_start_offset(info.log_start_offset),
                Err(code) => {
                    if first_failure.is_none() {
                        first_failure = Some((name.to_string(), p.index, code));
                    }
                    failed_partition(p.index, code)
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partition_responses),
        );
    }

    if req.acks == 0 {
        return match first_failure {
            None => Ok(Outcome::Respond(None)),
            Some((topic, partition, code)) => Err(format!(
                "acks=0 produce failed on {topic}-{partition} with error code {code}: closing the \
                 connection, as Kafka does"
            )),
        };
    }
    cx.respond(&ProduceResponse::default().with_responses(responses).with_throttle_time_ms(cx.throttle_ms()))
}

/// The response to this request with `code` in every partition (an acks=0 request gets none:
/// the connection is closed, as for any failed acks=0 produce).
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: ProduceRequest = cx.decode()?;
    if req.acks == 0 {
        return Err(format!("acks=0 produce failed with error code {code}: closing the connection"));
    }
    let responses = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(
                t.partition_data.iter().map(|p| failed_partition(p.index, code)).collect(),
            )
        })
        .collect();
    cx.respond(&ProduceResponse::default().with_responses(responses).with_throttle_time_ms(cx.throttle_ms()))
}

fn failed_partition(index: i32, code: ErrorCode) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// The partition count of topic `name`, creating the topic if it is unknown and the host allows
/// auto-creation. `settings` caches (auto-create, default partitions) across topics.
fn topic_partitions<S: Services>(
    cx: &Ctx<'_, S>,
    name: &str,
    settings: &mut Option<(bool, i32)>,
) -> Result<i32, ErrorCode> {
    if let Some(info) = cx.svc.describe_topic(name) {
        return Ok(info.partitions);
    }
    let (auto_create, partitions) = *settings.get_or_insert_with(|| {
        let s = cx.svc.settings();
        (s.auto_create_topics, s.default_partitions)
    });
    if !auto_create {
        return Err(error::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match cx.svc.create_topic(name, partitions, &[], false) {
        Ok(info) => Ok(info.partitions),
        // Another connection created it meanwhile.
        Err(error::TOPIC_ALREADY_EXISTS) => {
            cx.svc.describe_topic(name).map(|info| info.partitions).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
        }
        Err(code) => Err(code),
    }
}

/// WRITE on the topic, which Kafka checks before anything else of a partition.
fn authorize_write<S: Services>(cx: &Ctx<'_, S>, topic: &str) -> Result<(), ErrorCode> {
    if cx.svc.authorize(acl::TOPIC, topic, acl::WRITE) {
        Ok(())
    } else {
        Err(error::TOPIC_AUTHORIZATION_FAILED)
    }
}

/// Add `tp` to the transaction of the producer of the transactional batch `records` (Produce
/// v12+, transaction version 2), as Kafka's partition leader asks the coordinator
/// (AddPartitionsToTxn v5), with its mapping of the answer: a fenced producer is
/// INVALID_PRODUCER_EPOCH, a coordinator that cannot answer now NOT_ENOUGH_REPLICAS (retriable,
/// and no metadata refresh); CONCURRENT_TRANSACTIONS and the rest pass through.
fn add_to_transaction<S: Services>(
    cx: &Ctx<'_, S>,
    transactional_id: &str,
    tp: &TopicPartition,
    records: &Bytes,
) -> Result<(), ErrorCode> {
    let header = records.get(..BATCH_HEADER_LEN).ok_or(INVALID_RECORD)?;
    let producer = ProducerIdAndEpoch {
        producer_id: i64::from_be_bytes(
            header[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].try_into().expect("8 bytes"),
        ),
        producer_epoch: i16::from_be_bytes([header[PRODUCER_ID_AT + 8], header[PRODUCER_ID_AT + 9]]),
    };
    let added = cx.svc.add_partitions_to_txn(transactional_id, producer, std::slice::from_ref(tp));
    match added.first().copied().unwrap_or(error::UNKNOWN_SERVER_ERROR) {
        error::NONE => Ok(()),
        error::PRODUCER_FENCED => Err(error::INVALID_PRODUCER_EPOCH),
        error::COORDINATOR_NOT_AVAILABLE | error::NOT_COORDINATOR | error::COORDINATOR_LOAD_IN_PROGRESS => {
            Err(error::NOT_ENOUGH_REPLICAS)
        }
        code => Err(code),
    }
}

/// Whether `records` start with a transactional batch (Kafka's `RequestUtils.hasTransactionalRecords`
/// looks at each partition's first batch).
fn is_transactional(records: Option<&Bytes>) -> bool {
    records.is_some_and(|r| {
        r.len() > ATTRIBUTES_AT + 1 && r[MAGIC_AT] == 2 && r[ATTRIBUTES_AT + 1] & TRANSACTIONAL != 0
    })
}

/// Kafka's `ProduceRequest.validateRecords` for v3+: exactly one record batch of magic 2, and no
/// zstd before v7 (KIP-110). Only the batch header is looked at; a truncated batch or a bad CRC
/// is the host's to find.
fn check_records(records: Option<&Bytes>, version: i16) -> Result<&Bytes, ErrorCode> {
    let records = records.filter(|r| !r.is_empty()).ok_or(INVALID_RECORD)?;
    if records.len() > MAGIC_AT {
        if records[MAGIC_AT] != 2 {
            return Err(INVALID_RECORD);
        }
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let batch_end = usize::try_from(len).map_or(usize::MAX, |l| l.saturating_add(12));
        if batch_end < records.len() {
            // More than one batch (or trailing bytes after the first).
            return Err(INVALID_RECORD);
        }
    }
    if version < 7 && records.len() > ATTRIBUTES_AT + 1 && records[ATTRIBUTES_AT + 1] & 0x07 == ZSTD {
        return Err(UNSUPPORTED_COMPRESSION_TYPE);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at_offset, call, error_response, frame, produce_request, record_batch, run};
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{Handler, Request};
    use kafka_protocol::messages::{ApiKey, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    fn produce(svc: &StubServices, version: i16, req: &ProduceRequest) -> ProduceResponse {
        call(svc, ApiKey::Produce, version, req)
    }

    /// (topic, partition, error, base offset, log start offset) of every partition.
    fn results(resp: &ProduceResponse) -> Vec<(String, i32, i16, i64, i64)> {
        resp.responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .map(|p| (t.name.to_string(), p.index, p.error_code, p.base_offset, p.log_start_offset))
            })
            .collect()
    }

    /// The stored bytes of a partition, read back through the stub host.
    fn stored(svc: &StubServices, topic: &str, partition: i32) -> Vec<u8> {
        let tp = TopicPartition { topic: topic.into(), partition };
        let f = svc.read(&tp, 0, u32::MAX, true).unwrap();
        f.records.map(|b| b.0.to_vec()).unwrap_or_default()
    }

    fn svc_with(topic: &str, partitions: i32) -> StubServices {
        let svc = StubServices::new();
        svc.create_topic(topic, partitions, &[], false).unwrap();
        svc
    }

    #[test]
    fn appends_and_reports_offsets_at_every_version() {
        for v in 3..=9 {
            let svc = svc_with("t", 2);
            let a = record_batch(&[b"a0", b"a1", b"a2"], &[10]);
            let b = record_batch(&[b"b0"], &[20]);
            let req = produce_request(-1, &[("t", 0, Some(a.clone())), ("t", 1, Some(b.clone()))]);
            let resp = produce(&svc, v, &req);
            let log_start = if v >= 5 { 0 } else { -1 }; // not on the wire before v5
            assert_eq!(
                results(&resp),
                vec![("t".into(), 0, 0, 0, log_start), ("t".into(), 1, 0, 0, log_start)],
                "v{v}"
            );
            assert_eq!(resp.responses[0].partition_responses[0].log_append_time_ms, -1);
            // A second produce continues the offsets.
            let resp = produce(&svc, v, &produce_request(1, &[("t", 0, Some(b.clone()))]));
            assert_eq!(results(&resp), vec![("t".into(), 0, 0, 3, log_start)], "v{v}");
            let mut want = at_offset(&a, 0);
            want.extend(at_offset(&b, 3));
            assert_eq!(stored(&svc, "t", 0), want, "v{v}");
            assert_eq!(stored(&svc, "t", 1), b.to_vec(), "v{v}");
        }
    }

    #[test]
    fn records_stay_slices_of_the_frame() {
        // The handler names the records' place in the frame; the stub's buffer is that very slice.
        let svc = svc_with("t", 1);
        let batch = record_batch(&[b"x"], &[1]);
        let f = frame(ApiKey::Produce, 7, &produce_request(1, &[("t", 0, Some(batch.clone()))]));
        let at = f.windows(batch.len()).position(|w| w == &batch[..]).unwrap();
        let buf = guise_guest_sdk::stub::StubBuffer(f.clone());
        let req = Request { bytes: f.clone(), frame: &buf };
        let cx = Ctx::new(&svc, &req, false).unwrap();
        let decoded: ProduceRequest = cx.decode().unwrap();
        let records = decoded.topic_data[0].partition_data[0].records.clone().unwrap();
        let slice = cx.req.host_slice(&records).unwrap();
        assert_eq!(slice.0.as_ptr(), f[at..].as_ptr());
        assert_eq!(slice.0.len(), batch.len());
    }

    #[test]
    fn acks_zero_success_sends_no_response() {
        let svc = svc_with("t", 1);
        let batch = record_batch(&[b"v"], &[1]);
        for v in [3, 9] {
            let out =
                run(&svc, frame(ApiKey::Produce, v, &produce_request(0, &[("t", 0, Some(batch.clone()))])));
            assert!(matches!(out, Outcome::Respond(None)), "v{v}: {out:?}");
        }
        let mut want = at_offset(&batch, 0);
        want.extend(at_offset(&batch, 1));
        assert_eq!(stored(&svc, "t", 0), want);
    }

    #[test]
    fn acks_zero_failure_closes_the_connection() {
        let mut svc = StubServices::new();
        svc.settings.auto_create_topics = false;
        let batch = record_batch(&[b"v"], &[1]);
        let out = run(&svc, frame(ApiKey::Produce, 7, &produce_request(0, &[("nope", 0, Some(batch))])));
        let Outcome::Close(reason) = out else { panic!("expected close, got {out:?}") };
        assert!(reason.contains("nope-0"), "{reason}");
        assert!(svc.describe_topic("nope").is_none());
    }

    #[test]
    fn acks_zero_partial_failure_closes_after_appending_the_rest() {
        let svc = svc_with("t", 1);
        let batch = record_batch(&[b"v"], &[1]);
        let req = produce_request(0, &[("t", 0, Some(batch.clone())), ("t", 1, Some(batch.clone()))]);
        assert!(matches!(run(&svc, frame(ApiKey::Produce, 8, &req)), Outcome::Close(_)));
        assert_eq!(stored(&svc, "t", 0), at_offset(&batch, 0));
    }

    #[test]
    fn unknown_topic_is_auto_created_when_allowed() {
        let mut svc = StubServices::new();
        svc.settings.default_partitions = 3;
        let batch = record_batch(&[b"v"], &[1]);
        let resp = produce(&svc, 9, &produce_request(-1, &[("fresh", 2, Some(batch.clone()))]));
        assert_eq!(results(&resp), vec![("fresh".into(), 2, 0, 0, 0)]);
        assert_eq!(svc.describe_topic("fresh").unwrap().partitions, 3);
        assert_eq!(stored(&svc, "fresh", 2), at_offset(&batch, 0));
        // A partition beyond the created count is unknown.
        let resp = produce(&svc, 9, &produce_request(-1, &[("fresh2", 3, Some(batch))]));
        assert_eq!(results(&resp), vec![("fresh2".into(), 3, 3, -1, -1)]);
        assert_eq!(svc.describe_topic("fresh2").unwrap().partitions, 3);
    }

    #[test]
    fn unknown_topic_without_auto_create() {
        let mut svc = StubServices::new();
        svc.settings.auto_create_topics = false;
        let batch = record_batch(&[b"v"], &[1]);
        let resp = produce(&svc, 5, &produce_request(1, &[("nope", 0, Some(batch))]));
        assert_eq!(results(&resp), vec![("nope".into(), 0, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1)]);
        assert!(svc.describe_topic("nope").is_none());
    }

    #[test]
    fn invalid_topic_name_is_refused_by_the_host() {
        let svc = StubServices::new();
        let batch = record_batch(&[b"v"], &[1]);
        let resp = produce(&svc, 7, &produce_request(1, &[("bad name!", 0, Some(batch))]));
        assert_eq!(results(&resp), vec![("bad name!".into(), 0, error::INVALID_TOPIC_EXCEPTION, -1, -1)]);
    }

    #[test]
    fn unknown_partition_and_mixed_results() {
        let svc = svc_with("t", 1);
        let batch = record_batch(&[b"v"], &[1]);
        let req = produce_request(
            -1,
            &[("t", 0, Some(batch.clone())), ("t", 1, Some(batch.clone())), ("t", -1, Some(batch.clone()))],
        );
        let resp = produce(&svc, 8, &req);
        assert_eq!(
            results(&resp),
            vec![
                ("t".into(), 0, 0, 0, 0),
                ("t".into(), 1, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
                ("t".into(), -1, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            ]
        );
    }

    #[test]
    fn invalid_acks_refuses_every_partition() {
        let svc = svc_with("t", 2);
        let batch = record_batch(&[b"v"], &[1]);
        for acks in [2, -2, 5] {
            let req = produce_request(acks, &[("t", 0, Some(batch.clone())), ("t", 1, Some(batch.clone()))]);
            let resp = produce(&svc, 9, &req);
            assert_eq!(
                results(&resp),
                vec![
                    ("t".into(), 0, error::INVALID_REQUIRED_ACKS, -1, -1),
                    ("t".into(), 1, error::INVALID_REQUIRED_ACKS, -1, -1),
                ]
            );
        }
        assert!(stored(&svc, "t", 0).is_empty());
    }

    /// `batch` with its transactional bit set (the stub host does not check the CRC).
    fn transactional(batch: &Bytes) -> Bytes {
        let mut b = batch.to_vec();
        b[ATTRIBUTES_AT + 1] |= TRANSACTIONAL;
        Bytes::from(b)
    }

    fn with_id(req: ProduceRequest, id: &'static str) -> ProduceRequest {
        req.with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(id))))
    }

    #[test]
    fn transactional_batches_are_appended_with_a_transactional_id() {
        let svc = svc_with("t", 2);
        let batch = transactional(&record_batch(&[b"v"], &[1]));
        let req = with_id(
            produce_request(-1, &[("t", 0, Some(batch.clone())), ("t", 1, Some(batch.clone()))]),
            "tx",
        );
        for v in [3, 9] {
            let resp = produce(&svc, v, &req);
            let codes: Vec<i16> = results(&resp).iter().map(|r| r.2).collect();
            assert_eq!(codes, [0, 0], "v{v}");
        }
        assert_eq!(stored(&svc, "t", 1).len(), 2 * batch.len());
        // A transactional id with plain batches is not checked, as in Kafka.
        svc.deny(acl::TRANSACTIONAL_ID, "secret", acl::WRITE);
        let plain = with_id(produce_request(-1, &[("t", 0, Some(record_batch(&[b"p"], &[1])))]), "secret");
        assert_eq!(results(&produce(&svc, 9, &plain))[0].2, 0);
    }

    #[test]
    fn transactional_batches_need_write_on_the_transactional_id() {
        let svc = svc_with("t", 2);
        svc.deny(acl::TRANSACTIONAL_ID, "secret", acl::WRITE);
        let batch = record_batch(&[b"v"], &[1]);
        // One transactional batch is enough to refuse the whole request.
        let parts = [("t", 0, Some(batch.clone())), ("t", 1, Some(transactional(&batch)))];
        let e = TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        for req in [with_id(produce_request(-1, &parts), "secret"), produce_request(-1, &parts)] {
            let resp = produce(&svc, 9, &req);
            assert_eq!(results(&resp), vec![("t".into(), 0, e, -1, -1), ("t".into(), 1, e, -1, -1)]);
        }
        assert!(stored(&svc, "t", 0).is_empty());
        assert!(stored(&svc, "t", 1).is_empty());
    }

    /// `batch`, transactional, of producer 7000 at epoch `epoch`.
    fn of_producer(batch: &Bytes, epoch: i16) -> Bytes {
        let mut b = transactional(batch).to_vec();
        b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&7000i64.to_be_bytes());
        b[PRODUCER_ID_AT + 8..PRODUCER_ID_AT + 10].copy_from_slice(&epoch.to_be_bytes());
        Bytes::from(b)
    }

    #[test]
    fn from_v12_a_transactional_batch_adds_its_partition_to_the_transaction_first() {
        let host = crate::test_txn::TxnHost::with_topics();
        let batch = of_producer(&record_batch(&[b"v"], &[1]), 3);
        let plain = record_batch(&[b"p"], &[1]);
        let parts = [("t", 0, Some(batch.clone())), ("t", 1, Some(plain)), ("u", 0, Some(batch.clone()))];
        let req = with_id(produce_request(-1, &parts), "tx");
        for v in [11, 12] {
            host.calls.borrow_mut().clear();
            let resp: ProduceResponse = call(&host, ApiKey::Produce, v, &req);
            assert!(results(&resp).iter().all(|r| r.2 == 0), "v{v}");
            let want: &[&str] =
                if v >= 12 { &["add_partitions tx 7000/3 t-0", "add_partitions tx 7000/3 u-0"] } else { &[] };
            assert_eq!(host.calls(), want, "v{v}");
        }
        // The coordinator's refusals, as Kafka's leader maps them; nothing is appended then.
        let before = stored(&host.stub, "t", 0).len();
        for (answer, want) in [
            (error::PRODUCER_FENCED, error::INVALID_PRODUCER_EPOCH),
            (error::COORDINATOR_NOT_AVAILABLE, error::NOT_ENOUGH_REPLICAS),
            (error::NOT_COORDINATOR, error::NOT_ENOUGH_REPLICAS),
            (error::CONCURRENT_TRANSACTIONS, error::CONCURRENT_TRANSACTIONS),
            (error::INVALID_TXN_STATE, error::INVALID_TXN_STATE),
        ] {
            host.answer.set(answer);
            let req = with_id(produce_request(-1, &[("t", 0, Some(batch.clone()))]), "tx");
            let resp: ProduceResponse = call(&host, ApiKey::Produce, 12, &req);
            assert_eq!(resp.responses[0].partition_responses[0].error_code, want, "{answer}");
        }
        assert_eq!(stored(&host.stub, "t", 0).len(), before);
        // A topic the principal may not write is refused before the coordinator hears of it.
        host.answer.set(error::NONE);
        host.calls.borrow_mut().clear();
        host.stub.deny(acl::TOPIC, "u", acl::WRITE);
        let req = with_id(produce_request(-1, &[("u", 0, Some(batch.clone()))]), "tx");
        let resp: ProduceResponse = call(&host, ApiKey::Produce, 12, &req);
        assert_eq!(resp.responses[0].partition_responses[0].error_code, error::TOPIC_AUTHORIZATION_FAILED);
        assert!(host.calls().is_empty());
    }

    #[test]
    fn bad_records() {
        let svc = svc_with("t", 6);
        let batch = record_batch(&[b"v"], &[1]);
        let mut two = batch.to_vec();
        two.extend_from_slice(&batch);
        let mut magic1 = batch.to_vec();
        magic1[MAGIC_AT] = 1;
        let truncated = batch.slice(..batch.len() - 1);
        let req = produce_request(
            -1,
            &[
                ("t", 0, None),
                ("t", 1, Some(Bytes::new())),
                ("t", 2, Some(Bytes::from(two))),
                ("t", 3, Some(Bytes::from(magic1))),
                ("t", 4, Some(truncated)),
                ("t", 5, Some(batch.clone())),
            ],
        );
        for v in [3, 9] {
            let resp = produce(&svc, v, &req);
            let codes: Vec<i16> = results(&resp).iter().map(|r| r.2).collect();
            assert_eq!(
                codes,
                vec![
                    INVALID_RECORD,
                    INVALID_RECORD,
                    INVALID_RECORD,
                    INVALID_RECORD,
                    error::CORRUPT_MESSAGE,
                    0
                ],
                "v{v}"
            );
        }
        for p in 0..5 {
            assert!(stored(&svc, "t", p).is_empty());
        }
    }

    #[test]
    fn unknown_topic_with_refused_records_is_unknown_and_not_created() {
        let svc = StubServices::new(); // auto-create on
        let resp = produce(&svc, 9, &produce_request(-1, &[("fresh", 0, Some(Bytes::new()))]));
        assert_eq!(results(&resp), vec![("fresh".into(), 0, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1)]);
        assert!(svc.describe_topic("fresh").is_none());
        // A good partition of the same topic creates it; a bad one after that is refused as such.
        let batch = record_batch(&[b"v"], &[1]);
        let req =
            produce_request(-1, &[("fresh", 0, Some(batch.clone())), ("fresh", 0, None), ("fresh", 1, None)]);
        let resp = produce(&svc, 9, &req);
        assert_eq!(
            results(&resp),
            vec![
                ("fresh".into(), 0, 0, 0, 0),
                ("fresh".into(), 0, INVALID_RECORD, -1, -1),
                ("fresh".into(), 1, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            ]
        );
    }

    #[test]
    fn zstd_needs_v7() {
        let svc = svc_with("t", 1);
        let mut zstd = record_batch(&[b"v"], &[1]).to_vec();
        zstd[ATTRIBUTES_AT + 1] |= ZSTD; // (the CRC is now wrong: the stub host does not check it)
        let req = produce_request(-1, &[("t", 0, Some(Bytes::from(zstd)))]);
        for v in 3..=6 {
            assert_eq!(results(&produce(&svc, v, &req))[0].2, UNSUPPORTED_COMPRESSION_TYPE, "v{v}");
        }
        for v in 7..=9 {
            assert_eq!(results(&produce(&svc, v, &req))[0].2, 0, "v{v}");
        }
    }

    #[test]
    fn error_response_names_every_partition() {
        let svc = svc_with("t", 2);
        let batch = record_batch(&[b"v"], &[1]);
        for v in [3, 5, 9] {
            let req = produce_request(-1, &[("t", 0, Some(batch.clone())), ("u", 1, Some(batch.clone()))]);
            let bytes = error_response(&svc, frame(ApiKey::Produce, v, &req), error::REQUEST_TIMED_OUT);
            let resp: ProduceResponse = crate::test_util::decode_response(ApiKey::Produce, v, &bytes);
            assert_eq!(
                results(&resp),
                vec![
                    ("t".into(), 0, error::REQUEST_TIMED_OUT, -1, -1),
                    ("u".into(), 1, error::REQUEST_TIMED_OUT, -1, -1),
                ]
            );
        }
        assert!(stored(&svc, "t", 0).is_empty());
    }

    #[test]
    fn error_response_for_acks_zero_closes() {
        let svc = svc_with("t", 1);
        let f =
            frame(ApiKey::Produce, 9, &produce_request(0, &[("t", 0, Some(record_batch(&[b"v"], &[1])))]));
        let buf = guise_guest_sdk::stub::StubBuffer(f.clone());
        let req = Request { bytes: f, frame: &buf };
        assert!(crate::KafkaTranslator::error_response(&svc, &req, error::REQUEST_TIMED_OUT).is_none());
    }
}
