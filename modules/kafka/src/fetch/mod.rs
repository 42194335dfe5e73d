//! Fetch v4–v12: read stored batches through the host and splice them into the response.
//!
//! Fetched record bytes never enter guest memory: `read` hands back a host buffer and its
//! length, and the hand-written encoder (`encode`) returns the response as guest bytes and those
//! buffers, which the host writes with vectored I/O.
//!
//! * Partitions are read in request order, each up to `min(partition_max_bytes, what is left of
//!   max_bytes)`; until the response holds record bytes, the first batch is returned even when it
//!   is larger (KIP-74), as Kafka's `ReplicaManager.readFromLocalLog` does.
//! * Long poll: with fewer than `min_bytes` record bytes, `max_wait_ms > 0` and no partition in
//!   error, the request is parked (`Outcome::Wait`) on every requested partition until one gets
//!   data or `max_wait_ms` passes; then it is re-run, and with `final_` answered with what there
//!   is. Any partition error answers at once, as in Kafka.
//! * Isolation level read_committed (1) reads with the host's `read_committed`: only batches
//!   below the last stable offset (the first offset of the partition's earliest open
//!   transaction), with the aborted transactions among them (producer id, first offset), which
//!   the client skips. read_uncommitted (0) reads up to the high watermark, with no aborted
//!   transactions (an empty list). Either way last_stable_offset is the host's.
//! * No fetch sessions (KIP-227): session_id 0 in every response, which
//!   tells the client to keep sending full fetches; an incremental fetch (session epoch > 0)
//!   names a session this broker never created and gets FETCH_SESSION_ID_NOT_FOUND, as Kafka
//!   answers for an unknown session.
//! * No rack-aware replica selection: preferred_read_replica -1. A follower's fetch (replica_id
//!   >= 0) is served like a consumer's.

mod encode;

use crate::context::{ApiResult, Ctx};
use encode::{PartitionOut, TopicOut};
use guise_guest_sdk::{ErrorCode, Outcome, Services, TopicPartition, Wait, WakeSource, error};
use kafka_protocol::messages::FetchRequest;

/// FETCH_SESSION_ID_NOT_FOUND (not in the SDK's list).
pub(crate) use guise_guest_sdk::error::FETCH_SESSION_ID_NOT_FOUND;

/// The isolation level that reads only committed records (KIP-98).
pub(crate) const READ_COMMITTED: i8 = 1;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: FetchRequest = cx.decode()?;
    // Session epoch 0 opens a session (we answer session id 0: none), -1 is a sessionless full
    // fetch; anything else continues a session, and we never created one.
    if cx.version >= 7 && !matches!(req.session_epoch, 0 | -1) {
        return respond(cx, FETCH_SESSION_ID_NOT_FOUND, Vec::new());
    }

    let read_committed = req.isolation_level == READ_COMMITTED;
    let mut remaining = u32::try_from(req.max_bytes).unwrap_or(0);
    let mut total: u64 = 0;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.topic.as_str();
        let mut tp = TopicPartition { topic: name.to_string(), partition: 0 };
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            tp.partition = p.partition;
            let limit = u32::try_from(p.partition_max_bytes).unwrap_or(0).min(remaining);
            let min_one = total == 0;
            let read = if read_committed {
                cx.svc.read_committed(&tp, p.fetch_offset, limit, min_one)
            } else {
                cx.svc.read(&tp, p.fetch_offset, limit, min_one).map(|f| (f, Vec::new()))
            };
            partitions.push(match read {
                Ok((f, aborted)) => {
                    let records = f.records.filter(|_| f.records_len > 0).map(|b| (b, f.records_len));
                    let len = records.as_ref().map_or(0, |(_, len)| *len);
                    total += u64::from(len);
                    remaining = remaining.saturating_sub(len);
                    PartitionOut {
                        index: p.partition,
                        error_code: error::NONE,
                        high_watermark: f.high_watermark,
                        last_stable_offset: f.last_stable_offset,
                        log_start_offset: f.log_start_offset,
                        aborted,
                        records,
                    }
                }
                Err(code) => {
                    any_error = true;
                    PartitionOut::failed(p.partition, code)
                }
            });
        }
        topics.push(TopicOut { name, partitions });
    }

    let wanted = u64::try_from(req.min_bytes).unwrap_or(0);
    let requested = req.topics.iter().map(|t| t.partitions.len()).sum::<usize>();
    if !cx.final_ && req.max_wait_ms > 0 && !any_error && requested > 0 && total < wanted {
        let wake_on = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    WakeSource::Partition(TopicPartition {
                        topic: t.topic.as_str().to_string(),
                        partition: p.partition,
                    })
                })
            })
            .collect();
        return Ok(Outcome::Wait(Wait { wake_on, deadline_ms: req.max_wait_ms as u32 }));
    }
    // Over its fetch quota with what was read (counted as if sent): Kafka answers with no data
    // at all and the throttle time, and the client fetches again after it.
    let throttle = cx.throttle_ms();
    if throttle > 0 {
        return respond_throttled(cx, Vec::new(), throttle);
    }
    respond_throttled(cx, topics, 0)
}

/// The response to this request with `code` in every partition and, from v7, at the top level
/// (as Kafka's `FetchRequest.getErrorResponse` does).
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: FetchRequest = cx.decode()?;
    let topics = req
        .topics
        .iter()
        .map(|t| TopicOut {
            name: t.topic.as_str(),
            partitions: t.partitions.iter().map(|p| PartitionOut::failed(p.partition, code)).collect(),
        })
        .collect();
    respond(cx, code, topics)
}

fn respond<S: Services>(
    cx: &Ctx<'_, S>,
    code: ErrorCode,
    topics: Vec<TopicOut<'_, S::Buffer>>,
) -> ApiResult<S> {
    let segments = encode::encode(cx.version, cx.correlation_id, cx.throttle_ms(), code, topics)?;
    Ok(Outcome::Respond(Some(segments)))
}

/// A successful response with the throttle already asked for.
fn respond_throttled<S: Services>(
    cx: &Ctx<'_, S>,
    topics: Vec<TopicOut<'_, S::Buffer>>,
    throttle_ms: i32,
) -> ApiResult<S> {
    let segments = encode::encode(cx.version, cx.correlation_id, throttle_ms, error::NONE, topics)?;
    Ok(Outcome::Respond(Some(segments)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{
        at_offset, call, decode_response, error_response, fetch_request, frame, produce_request, record_batch,
    };
    use bytes::Bytes;
    use guise_guest_sdk::Segment;
    use guise_guest_sdk::stub::{self, StubBuffer, StubServices};
    use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
    use kafka_protocol::records::RecordBatchDecoder;

    fn run(svc: &StubServices, version: i16, req: &FetchRequest, final_: bool) -> Outcome<StubBuffer> {
        stub::run::<crate::KafkaTranslator>(svc, frame(ApiKey::Fetch, version, req), final_)
    }

    fn fetch(svc: &StubServices, version: i16, req: &FetchRequest) -> FetchResponse {
        call(svc, ApiKey::Fetch, version, req)
    }

    /// (topic, partition, error, high watermark, last stable, log start, records)
    type Row = (String, i32, i16, i64, i64, i64, Vec<u8>);

    fn rows(resp: &FetchResponse) -> Vec<Row> {
        resp.responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    assert_eq!(p.aborted_transactions.as_deref(), Some(&[][..]));
                    assert_eq!(p.preferred_read_replica.0, -1);
                    (
                        t.topic.to_string(),
                        p.partition_index,
                        p.error_code,
                        p.high_watermark,
                        p.last_stable_offset,
                        p.log_start_offset,
                        p.records.as_ref().expect("records are never null").to_vec(),
                    )
                })
            })
            .collect()
    }

    fn row(topic: &str, p: i32, err: i16, hw: i64, start: i64, records: Vec<u8>) -> Row {
        let lso = hw;
        (topic.to_string(), p, err, hw, lso, start, records)
    }

    /// Append `batch` to topic-partition through a Produce request; returns its base offset.
    fn append(svc: &StubServices, topic: &str, partition: i32, batch: &Bytes) -> i64 {
        let resp: ProduceResponse =
            call(svc, ApiKey::Produce, 7, &produce_request(-1, &[(topic, partition, Some(batch.clone()))]));
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        p.base_offset
    }

    fn svc_with(topic: &str, partitions: i32) -> StubServices {
        let svc = StubServices::new();
        svc.create_topic(topic, partitions, &[], false).unwrap();
        svc
    }

    #[test]
    fn a_throttled_fetch_answers_no_data_and_the_throttle() {
        let svc = svc_with("t", 1);
        append(&svc, "t", 0, &record_batch(&[b"hello"], &[1_000]));
        let req = fetch_request(0, 0, 1 << 20, &[("t", 0, 0, 1 << 20)]);
        for v in [4, 12] {
            svc.throttle_ms.set(250);
            let resp = fetch(&svc, v, &req);
            assert_eq!(resp.throttle_time_ms, 250, "v{v}");
            assert!(resp.responses.is_empty(), "v{v}: no data while throttled");
            svc.throttle_ms.set(0);
            let resp = fetch(&svc, v, &req);
            assert_eq!(resp.throttle_time_ms, 0);
            assert!(resp.responses[0].partitions[0].records.as_ref().is_some_and(|r| !r.is_empty()), "v{v}");
        }
    }

    #[test]
    fn produce_then_fetch_round_trip() {
        for produce_v in [3, 7, 9] {
            for fetch_v in [4, 7, 11, 12] {
                let svc = svc_with("t", 2);
                let a = record_batch(&[b"a0", b"a1"], &[100, 101]);
                let b = record_batch(&[b"b0", b"b1", b"b2"], &[200]);
                let c = record_batch(&[b"c0"], &[300]);
                let req = produce_request(1, &[("t", 0, Some(a.clone())), ("t", 1, Some(c.clone()))]);
                let resp: ProduceResponse = call(&svc, ApiKey::Produce, produce_v, &req);
                assert!(resp.responses[0].partition_responses.iter().all(|p| p.error_code == 0));
                let resp: ProduceResponse = call(
                    &svc,
                    ApiKey::Produce,
                    produce_v,
                    &produce_request(-1, &[("t", 0, Some(b.clone()))]),
                );
                assert_eq!(resp.responses[0].partition_responses[0].base_offset, 2);

                let req = fetch_request(500, 1, 1 << 20, &[("t", 0, 0, 1 << 20), ("t", 1, 0, 1 << 20)]);
                let resp = fetch(&svc, fetch_v, &req);
                let start = if fetch_v >= 5 { 0 } else { -1 };
                let mut want0 = at_offset(&a, 0);
                want0.extend(at_offset(&b, 2));
                assert_eq!(
                    rows(&resp),
                    vec![row("t", 0, 0, 5, start, want0.clone()), row("t", 1, 0, 1, start, c.to_vec())],
                    "produce v{produce_v}, fetch v{fetch_v}"
                );
                assert_eq!(resp.error_code, 0);
                assert_eq!(resp.session_id, 0);
                // The stored batches decode (CRCs intact: the base offset is outside them).
                let mut records = Bytes::from(want0);
                let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
                let offsets: Vec<i64> = sets.iter().flat_map(|s| &s.records).map(|r| r.offset).collect();
                assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

                // From the middle of the second batch: the whole batch comes back, as in Kafka.
                let resp = fetch(&svc, fetch_v, &fetch_request(0, 0, 1 << 20, &[("t", 0, 3, 1 << 20)]));
                assert_eq!(rows(&resp), vec![row("t", 0, 0, 5, start, at_offset(&b, 2))]);
                // At the end: empty.
                let resp = fetch(&svc, fetch_v, &fetch_request(0, 0, 1 << 20, &[("t", 0, 5, 1 << 20)]));
                assert_eq!(rows(&resp), vec![row("t", 0, 0, 5, start, vec![])]);
            }
        }
    }

    #[test]
    fn fetched_batches_are_spliced_as_host_buffers() {
        let svc = svc_with("t", 1);
        let a = record_batch(&[b"payload"], &[1]);
        append(&svc, "t", 0, &a);
        let Outcome::Respond(Some(segments)) =
            run(&svc, 12, &fetch_request(0, 0, 1 << 20, &[("t", 0, 0, 1 << 20)]), false)
        else {
            panic!("expected a response")
        };
        let buffers: Vec<&[u8]> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Buffer(b) => Some(&b.0[..]),
                Segment::Bytes(_) => None,
            })
            .collect();
        assert_eq!(buffers, vec![&at_offset(&a, 0)[..]]);
        for s in &segments {
            if let Segment::Bytes(b) = s {
                assert!(!b.windows(7).any(|w| w == b"payload"), "record bytes copied into the guest");
            }
        }
    }

    #[test]
    fn waits_on_an_empty_partition_then_answers_at_the_deadline() {
        let svc = svc_with("t", 2);
        svc.create_topic("u", 1, &[], false).unwrap();
        let req = fetch_request(
            500,
            1,
            1 << 20,
            &[("t", 0, 0, 1 << 20), ("u", 0, 0, 1 << 20), ("t", 1, 0, 1 << 20)],
        );
        for v in [4, 11, 12] {
            let out = run(&svc, v, &req, false);
            let Outcome::Wait(wait) = out else { panic!("v{v}: expected a wait, got {out:?}") };
            let tp = |t: &str, p| WakeSource::Partition(TopicPartition { topic: t.into(), partition: p });
            assert_eq!(wait, Wait { wake_on: vec![tp("t", 0), tp("t", 1), tp("u", 0)], deadline_ms: 500 });

            let out = run(&svc, v, &req, true);
            let Outcome::Respond(Some(segments)) = out else {
                panic!("v{v}: expected a response, got {out:?}")
            };
            let resp: FetchResponse = decode_response(ApiKey::Fetch, v, &stub::flatten(&segments));
            let start = if v >= 5 { 0 } else { -1 };
            assert_eq!(
                rows(&resp),
                vec![
                    row("t", 0, 0, 0, start, vec![]),
                    row("t", 1, 0, 0, start, vec![]),
                    row("u", 0, 0, 0, start, vec![])
                ],
                "v{v}"
            );
        }
    }

    #[test]
    fn a_rerun_after_new_data_answers_with_it() {
        let svc = svc_with("t", 1);
        let req = fetch_request(30_000, 1, 1 << 20, &[("t", 0, 0, 1 << 20)]);
        assert!(matches!(run(&svc, 12, &req, false), Outcome::Wait(_)));
        let a = record_batch(&[b"late"], &[1]);
        append(&svc, "t", 0, &a);
        // Woken (not final): the same request now finds data and answers.
        let Outcome::Respond(Some(segments)) = run(&svc, 12, &req, false) else {
            panic!("expected a response")
        };
        let resp: FetchResponse = decode_response(ApiKey::Fetch, 12, &stub::flatten(&segments));
        assert_eq!(rows(&resp), vec![row("t", 0, 0, 1, 0, at_offset(&a, 0))]);
    }

    #[test]
    fn no_wait_without_max_wait_or_min_bytes_or_partitions() {
        let svc = svc_with("t", 1);
        for req in [
            fetch_request(0, 1, 1 << 20, &[("t", 0, 0, 1 << 20)]),
            fetch_request(500, 0, 1 << 20, &[("t", 0, 0, 1 << 20)]),
            fetch_request(500, 1, 1 << 20, &[]),
        ] {
            assert!(matches!(run(&svc, 12, &req, false), Outcome::Respond(Some(_))));
        }
    }

    #[test]
    fn min_bytes_decides_between_waiting_and_answering() {
        let svc = svc_with("t", 2);
        let a = record_batch(&[b"some data"], &[1]);
        append(&svc, "t", 1, &a);
        let len = a.len() as i32;
        let parts = [("t", 0, 0, 1 << 20), ("t", 1, 0, 1 << 20)];
        // Satisfied: answered at once despite max_wait.
        for min in [1, len] {
            let resp = fetch(&svc, 11, &fetch_request(10_000, min, 1 << 20, &parts));
            assert_eq!(rows(&resp)[1].6, at_offset(&a, 0));
        }
        // Not satisfied: parked, then answered with what there is at the deadline.
        let req = fetch_request(10_000, len + 1, 1 << 20, &parts);
        assert!(matches!(run(&svc, 11, &req, false), Outcome::Wait(_)));
        let Outcome::Respond(Some(segments)) = run(&svc, 11, &req, true) else { panic!() };
        let resp: FetchResponse = decode_response(ApiKey::Fetch, 11, &stub::flatten(&segments));
        assert_eq!(rows(&resp), vec![row("t", 0, 0, 0, 0, vec![]), row("t", 1, 0, 1, 0, at_offset(&a, 0))]);
    }

    #[test]
    fn max_bytes_and_partition_max_bytes_with_kip74_min_one() {
        let svc = svc_with("t", 3);
        let batches: Vec<Bytes> = (0..3).map(|i| record_batch(&[&[i as u8; 100][..]], &[i])).collect();
        for b in &batches {
            append(&svc, "t", 0, b);
        }
        let other = record_batch(&[&[9u8; 100][..]], &[9]);
        append(&svc, "t", 1, &other);
        let n = batches[0].len() as i32; // every batch has the same size
        let stored: Vec<Vec<u8>> = batches.iter().enumerate().map(|(i, b)| at_offset(b, i as i64)).collect();
        let concat = |k: usize| stored[..k].concat();

        let cases = vec![
            // (max_bytes, partition max for t-0, partition max for t-1, t-0 records, t-1 records)
            // Everything fits.
            (10 * n, 10 * n, 10 * n, concat(3), other.to_vec()),
            // Partition limit of 1 byte: KIP-74 still returns t-0's first batch; then t-1 is not
            // the first non-empty partition any more, and its 1-byte limit returns nothing.
            (10 * n, 1, 1, concat(1), vec![]),
            // Partition limits of two and a half batches.
            (10 * n, 2 * n + n / 2, 2 * n + n / 2, concat(2), other.to_vec()),
            // Response limit of two and a half batches: t-0 takes two, t-1's batch does not fit.
            (2 * n + n / 2, 10 * n, 10 * n, concat(2), vec![]),
            // Response limit of one byte: only t-0's first batch.
            (1, 10 * n, 10 * n, concat(1), vec![]),
            // Exactly three batches: all of t-0, nothing left for t-1.
            (3 * n, 10 * n, 10 * n, concat(3), vec![]),
            // Zero partition max for t-0 still gets one batch (min-one), t-1 fits in what is left.
            (2 * n, 0, 10 * n, concat(1), other.to_vec()),
        ];
        for (max, p0, p1, want0, want1) in cases {
            for v in [4, 12] {
                let req = fetch_request(0, 0, max, &[("t", 0, 0, p0), ("t", 1, 0, p1)]);
                let got = rows(&fetch(&svc, v, &req));
                assert_eq!(
                    (got[0].6.len(), got[1].6.len()),
                    (want0.len(), want1.len()),
                    "max {max} p0 {p0} p1 {p1} v{v}"
                );
                assert_eq!((&got[0].6, &got[1].6), (&want0, &want1));
                assert_eq!((got[0].3, got[1].3), (3, 1));
            }
        }

        // Min-one goes to the first partition with data: t-2 is empty, t-1 gets its batch.
        let req = fetch_request(0, 0, 1, &[("t", 2, 0, 1), ("t", 1, 0, 1), ("t", 0, 0, 1)]);
        let got = rows(&fetch(&svc, 12, &req));
        assert_eq!(got.iter().map(|r| r.6.clone()).collect::<Vec<_>>(), vec![vec![], other.to_vec(), vec![]]);
    }

    #[test]
    fn partition_errors() {
        let svc = svc_with("t", 1);
        let a = record_batch(&[b"x", b"y"], &[1]);
        append(&svc, "t", 0, &a);
        let req = fetch_request(
            10_000,
            1 << 20,
            1 << 20,
            &[
                ("t", 0, 100, 1 << 20),
                ("t", 0, -1, 1 << 20),
                ("t", 5, 0, 1 << 20),
                ("nope", 0, 0, 1 << 20),
                ("t", 0, 0, 1 << 20),
            ],
        );
        for v in [4, 5, 11, 12] {
            // (The request groups partitions by topic: t's come first.)
            // An error answers at once, however much min_bytes asks for.
            let resp = fetch(&svc, v, &req);
            let start = if v >= 5 { 0 } else { -1 };
            assert_eq!(
                rows(&resp),
                vec![
                    row("t", 0, error::OFFSET_OUT_OF_RANGE, -1, -1, vec![]),
                    row("t", 0, error::OFFSET_OUT_OF_RANGE, -1, -1, vec![]),
                    row("t", 5, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1, vec![]),
                    row("t", 0, 0, 2, start, at_offset(&a, 0)),
                    row("nope", 0, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1, vec![]),
                ],
                "v{v}"
            );
        }
    }

    #[test]
    fn read_committed_reads_with_the_aborted_transactions() {
        use crate::test_txn::TxnHost;
        use guise_guest_sdk::AbortedTransaction;
        let host = TxnHost::new();
        host.stub.create_topic("t", 2, &[], false).unwrap();
        let a = record_batch(&[b"a0", b"a1"], &[1]);
        append(&host.stub, "t", 0, &a);
        host.last_stable.set(Some(1));
        host.aborted.replace(vec![
            AbortedTransaction { producer_id: 9, first_offset: 0 },
            AbortedTransaction { producer_id: 11, first_offset: 1 },
        ]);
        let req = fetch_request(0, 0, 1 << 20, &[("t", 0, 0, 1 << 20)]).with_isolation_level(READ_COMMITTED);
        for v in [4, 5, 11, 12] {
            let resp: FetchResponse = call(&host, ApiKey::Fetch, v, &req);
            let p = &resp.responses[0].partitions[0];
            assert_eq!((p.error_code, p.high_watermark, p.last_stable_offset), (0, 2, 1), "v{v}");
            let aborted: Vec<(i64, i64)> = p
                .aborted_transactions
                .as_ref()
                .expect("a list")
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            assert_eq!(aborted, [(9, 0), (11, 1)], "v{v}");
            assert_eq!(p.records.as_deref(), Some(&at_offset(&a, 0)[..]), "v{v}");
        }
        assert_eq!(host.calls(), vec!["read_committed t-0@0"; 4]);
        // read_uncommitted reads as before: the host's last stable offset, no aborted transactions.
        let resp: FetchResponse = call(&host, ApiKey::Fetch, 12, &req.clone().with_isolation_level(0));
        let p = &resp.responses[0].partitions[0];
        assert_eq!((p.high_watermark, p.last_stable_offset), (2, 2));
        assert_eq!(p.aborted_transactions.as_deref(), Some(&[][..]));
        assert_eq!(host.calls().len(), 4, "no read_committed read");
        // An error is a partition error, as for read_uncommitted.
        let req = fetch_request(0, 0, 1 << 20, &[("t", 9, 0, 1 << 20)]).with_isolation_level(READ_COMMITTED);
        let resp: FetchResponse = call(&host, ApiKey::Fetch, 12, &req);
        assert_eq!(rows(&resp), vec![row("t", 9, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1, vec![])]);
    }

    #[test]
    fn incremental_fetch_sessions_are_unknown() {
        let svc = svc_with("t", 1);
        let req = fetch_request(0, 0, 1 << 20, &[("t", 0, 0, 1 << 20)]);
        // Full fetches: sessionless (-1) and "open a session" (0), answered with session id 0.
        for epoch in [-1, 0] {
            let resp = fetch(&svc, 7, &req.clone().with_session_epoch(epoch));
            assert_eq!((resp.error_code, resp.session_id, resp.responses.len()), (0, 0, 1));
        }
        let resp = fetch(&svc, 12, &req.clone().with_session_id(77).with_session_epoch(3));
        assert_eq!(
            (resp.error_code, resp.session_id, resp.responses.len()),
            (FETCH_SESSION_ID_NOT_FOUND, 0, 0)
        );
    }

    #[test]
    fn error_response_names_every_partition() {
        let svc = svc_with("t", 2);
        let req = fetch_request(
            500,
            1,
            1 << 20,
            &[("t", 0, 0, 1 << 20), ("t", 1, 0, 1 << 20), ("u", 0, 0, 1 << 20)],
        );
        for v in 4..=12 {
            let bytes = error_response(&svc, frame(ApiKey::Fetch, v, &req), error::REQUEST_TIMED_OUT);
            let resp: FetchResponse = decode_response(ApiKey::Fetch, v, &bytes);
            let e = error::REQUEST_TIMED_OUT;
            assert_eq!(
                rows(&resp),
                vec![
                    row("t", 0, e, -1, -1, vec![]),
                    row("t", 1, e, -1, -1, vec![]),
                    row("u", 0, e, -1, -1, vec![])
                ]
            );
            assert_eq!(resp.error_code, if v >= 7 { e } else { 0 }, "v{v}");
        }
    }
}
