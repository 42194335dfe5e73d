//! ListOffsets v1–v7: offsets by timestamp, and the earliest, latest and max-timestamp offsets.
//!
//! Timestamp -1 is the latest offset (the high watermark), -2 the earliest (the log start), -3
//! (v7+, KIP-734) the offset of the record with the largest timestamp; any other value finds the
//! first offset whose timestamp is at least that. A lookup that finds nothing answers offset -1
//! and timestamp -1. The special timestamps of later versions (-3 before v7; -4 and -5, which
//! exist from v8 and v9) get UNSUPPORTED_VERSION for that partition.
//!
//! Every partition is led by this broker at leader epoch 0 (as Metadata says), so a found offset
//! carries leader epoch 0 (v4+). At isolation level read_committed (1, v2+) the lookups are the
//! host's `list_offset_committed`: latest is the last stable offset (the first offset of the
//! partition's earliest open transaction), and a timestamp finds only offsets below it, as in
//! Kafka. As in Kafka, a partition asked for twice in one request gets INVALID_REQUEST.

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, error};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

const MAX_TIMESTAMP: i64 = -3;
/// KIP-405's EARLIEST_LOCAL_TIMESTAMP (v8+) and LATEST_TIERED_TIMESTAMP (v9+).
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// The isolation level that sees only committed records (KIP-98).
const READ_COMMITTED: i8 = 1;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: ListOffsetsRequest = cx.decode()?;
    let v = cx.version;
    // Partitions asked for more than once, sorted (Kafka's `ListOffsetsRequest.duplicatePartitions`).
    let mut all: Vec<(&str, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.as_str(), p.partition_index)))
        .collect();
    all.sort_unstable();
    let mut dups: Vec<(&str, i32)> = all.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
    dups.dedup();
    let duplicated = |topic: &str, partition: i32| dups.binary_search(&(topic, partition)).is_ok();
    let read_committed = v >= 2 && req.isolation_level == READ_COMMITTED;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let mut tp = TopicPartition { topic: t.name.as_str().to_string(), partition: 0 };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    tp.partition = p.partition_index;
                    let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let ts = p.timestamp;
                    let refused = if duplicated(&tp.topic, tp.partition) {
                        Some(error::INVALID_REQUEST)
                    } else if (ts == MAX_TIMESTAMP && v < 7) || ts == EARLIEST_LOCAL || ts == LATEST_TIERED {
                        Some(error::UNSUPPORTED_VERSION)
                    } else {
                        None
                    };
                    if let Some(code) = refused {
                        return failed(p.partition_index, code);
                    }
                    let found = if read_committed {
                        cx.svc.list_offset_committed(&tp, ts)
                    } else {
                        cx.svc.list_offset(&tp, ts)
                    };
                    match found {
                        Ok(Some(found)) => {
                            let r = r.with_timestamp(found.timestamp).with_offset(found.offset);
                            // The field exists from v4; the codec refuses a non-default before.
                            if v >= 4 { r.with_leader_epoch(crate::metadata::LEADER_EPOCH) } else { r }
                        }
                        Ok(None) => r,
                        Err(code) => failed(p.partition_index, code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&ListOffsetsResponse::default().with_topics(topics))
}

/// The response to this request with `code` in every partition.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: ListOffsetsRequest = cx.decode()?;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(t.partitions.iter().map(|p| failed(p.partition_index, code)).collect())
        })
        .collect();
    cx.respond(&ListOffsetsResponse::default().with_topics(topics))
}

/// A partition answered with `code`: offset, timestamp and leader epoch -1.
fn failed(index: i32, code: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, error_response, frame, produce_request, record_batch};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ApiKey, ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn request(parts: &[(&str, i32, i64)]) -> ListOffsetsRequest {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for (topic, partition, ts) in parts {
            let p = ListOffsetsPartition::default().with_partition_index(*partition).with_timestamp(*ts);
            match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(topics)
    }

    /// (topic, partition, error, timestamp, offset, leader epoch)
    fn rows(resp: &ListOffsetsResponse) -> Vec<(String, i32, i16, i64, i64, i32)> {
        resp.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.error_code,
                        p.timestamp,
                        p.offset,
                        p.leader_epoch,
                    )
                })
            })
            .collect()
    }

    /// Topic "t" with 2 partitions; t-0 holds offsets 0 (ts 1000), 1 (ts 5000), 2–3 (ts 2000, 2001).
    fn svc() -> StubServices {
        let svc = StubServices::new();
        svc.create_topic("t", 2, &[], false).unwrap();
        for batch in [
            record_batch(&[b"a"], &[1000]),
            record_batch(&[b"b"], &[5000]),
            record_batch(&[b"c", b"d"], &[2000, 2001]),
        ] {
            let resp: ProduceResponse =
                call(&svc, ApiKey::Produce, 9, &produce_request(-1, &[("t", 0, Some(batch))]));
            assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        }
        svc
    }

    #[test]
    fn earliest_latest_and_by_timestamp_at_every_version() {
        let svc = svc();
        for v in 1..=7 {
            let e = if v >= 4 { 0 } else { -1 }; // leader epoch: not on the wire before v4
            // (timestamp asked for t-0, then timestamp and offset answered); t-1 (empty) asks for latest.
            for (ts, want_ts, want_offset, want_epoch) in [
                (-2, -1, 0, e),     // earliest
                (-1, -1, 4, e),     // latest
                (1500, 5000, 1, e), // the first batch with a timestamp >= 1500
                (999, 1000, 0, e),
                (9999, -1, -1, -1), // nothing that late
            ] {
                let req = request(&[("t", 0, ts), ("t", 1, -1)]);
                let resp: ListOffsetsResponse = call(&svc, ApiKey::ListOffsets, v, &req);
                assert_eq!(
                    rows(&resp),
                    vec![("t".into(), 0, 0, want_ts, want_offset, want_epoch), ("t".into(), 1, 0, -1, 0, e)],
                    "v{v} timestamp {ts}"
                );
            }
        }
    }

    #[test]
    fn max_timestamp_only_from_v7() {
        let svc = svc();
        let req = request(&[("t", 0, -3), ("t", 1, -3)]);
        let resp: ListOffsetsResponse = call(&svc, ApiKey::ListOffsets, 7, &req);
        assert_eq!(rows(&resp), vec![("t".into(), 0, 0, 5000, 1, 0), ("t".into(), 1, 0, -1, -1, -1)]);
        for v in 1..=6 {
            let resp: ListOffsetsResponse = call(&svc, ApiKey::ListOffsets, v, &req);
            let codes: Vec<i16> = rows(&resp).iter().map(|r| r.2).collect();
            assert_eq!(codes, vec![error::UNSUPPORTED_VERSION; 2], "v{v}");
        }
        // The tiered-storage timestamps of v8+/v9+ are not served either.
        let resp: ListOffsetsResponse =
            call(&svc, ApiKey::ListOffsets, 7, &request(&[("t", 0, -4), ("t", 1, -5)]));
        assert_eq!(
            rows(&resp),
            vec![
                ("t".into(), 0, error::UNSUPPORTED_VERSION, -1, -1, -1),
                ("t".into(), 1, error::UNSUPPORTED_VERSION, -1, -1, -1)
            ]
        );
    }

    #[test]
    fn unknown_topic_partition_and_duplicates() {
        let svc = svc();
        let req = request(&[("t", 5, -1), ("nope", 0, -2), ("t", 1, -1), ("t", 1, -2), ("t", 0, -1)]);
        let resp: ListOffsetsResponse = call(&svc, ApiKey::ListOffsets, 6, &req);
        let unknown = error::UNKNOWN_TOPIC_OR_PARTITION;
        assert_eq!(
            rows(&resp),
            vec![
                ("t".into(), 5, unknown, -1, -1, -1),
                ("t".into(), 1, error::INVALID_REQUEST, -1, -1, -1),
                ("t".into(), 1, error::INVALID_REQUEST, -1, -1, -1),
                ("t".into(), 0, 0, -1, 4, 0),
                ("nope".into(), 0, unknown, -1, -1, -1),
            ]
        );
    }

    #[test]
    fn read_committed_looks_up_below_the_last_stable_offset() {
        use crate::test_txn::TxnHost;
        let host = TxnHost::new();
        host.stub.create_topic("t", 1, &[], false).unwrap();
        for batch in [record_batch(&[b"a"], &[1000]), record_batch(&[b"b", b"c"], &[2000])] {
            let resp: ProduceResponse =
                call(&host.stub, ApiKey::Produce, 9, &produce_request(-1, &[("t", 0, Some(batch))]));
            assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        }
        host.last_stable.set(Some(1));
        let req = request(&[("t", 0, -1)]);
        for v in 2..=7 {
            let committed = req.clone().with_isolation_level(READ_COMMITTED);
            let resp: ListOffsetsResponse = call(&host, ApiKey::ListOffsets, v, &committed);
            let e = if v >= 4 { 0 } else { -1 };
            assert_eq!(rows(&resp), [("t".into(), 0, 0, -1, 1, e)], "v{v}");
            let resp: ListOffsetsResponse = call(&host, ApiKey::ListOffsets, v, &req);
            assert_eq!(rows(&resp), [("t".into(), 0, 0, -1, 3, e)], "v{v}");
        }
        assert_eq!(host.calls(), vec!["list_offset_committed t-0@-1"; 6]);
        // v1 has no isolation level: read_uncommitted.
        let resp: ListOffsetsResponse = call(&host, ApiKey::ListOffsets, 1, &req);
        assert_eq!(rows(&resp), [("t".into(), 0, 0, -1, 3, -1)]);
        assert_eq!(host.calls().len(), 6);
    }

    #[test]
    fn error_response_names_every_partition() {
        let svc = svc();
        let req = request(&[("t", 0, -1), ("u", 3, 100)]);
        for v in 1..=7 {
            let bytes = error_response(&svc, frame(ApiKey::ListOffsets, v, &req), error::REQUEST_TIMED_OUT);
            let resp: ListOffsetsResponse = decode_response(ApiKey::ListOffsets, v, &bytes);
            let e = error::REQUEST_TIMED_OUT;
            assert_eq!(
                rows(&resp),
                vec![("t".into(), 0, e, -1, -1, -1), ("u".into(), 3, e, -1, -1, -1)],
                "v{v}"
            );
        }
    }
}
