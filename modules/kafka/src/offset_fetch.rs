//! OffsetFetch v1–v8: a group's committed offsets, from the host's coordinator.
//!
//! v1 asks for named partitions (a null topic list is malformed there, and closes the
//! connection as in Kafka); from v2 a null list asks for every partition the group has
//! committed, and a group-level error has its own field. From v8 (KIP-709) one request asks for
//! several groups: one host call per group, each answered with its own error. A partition with
//! nothing committed answers offset -1. With `require_stable` (v7+, KIP-447) the host's
//! coordinator is asked which of the answered partitions have offsets of a transaction that has
//! not completed yet (one call per group): those get UNSTABLE_OFFSET_COMMIT with offset -1, as
//! Kafka's coordinator answers them, and the consumer retries until the transaction is done.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{by_topic, opt_str_bytes, string};
use crate::metadata::topic_name;
use guise_guest_sdk::{CommittedOffset, ErrorCode, Services, TopicPartition, error};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

/// The first version asking for several groups (KIP-709).
const BATCHED: i16 = 8;

/// The partitions of a request's topics (`None`: all).
fn partitions<'a>(
    topics: Option<impl IntoIterator<Item = (&'a str, &'a [i32])>>,
) -> Option<Vec<TopicPartition>> {
    topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(name, indexes)| {
                indexes.iter().map(move |&partition| TopicPartition { topic: name.to_string(), partition })
            })
            .collect()
    })
}

/// With `require_stable`, `offsets` with the partitions that have pending transactional offsets
/// answered UNSTABLE_OFFSET_COMMIT (offset and leader epoch -1, no metadata), as Kafka's
/// `OffsetMetadataManager.fetchOffsets` answers them. Partitions already in error are not asked
/// about.
fn stable<S: Services>(
    svc: &S,
    group_id: &str,
    require_stable: bool,
    mut offsets: Vec<CommittedOffset>,
) -> Vec<CommittedOffset> {
    if !require_stable {
        return offsets;
    }
    let asked: Vec<TopicPartition> = offsets
        .iter()
        .filter(|o| o.error == error::NONE)
        .map(|o| TopicPartition { topic: o.topic.clone(), partition: o.partition })
        .collect();
    if asked.is_empty() {
        return offsets;
    }
    let mut pending = svc.pending_txn_offsets(group_id, &asked).into_iter();
    for o in offsets.iter_mut().filter(|o| o.error == error::NONE) {
        // A host that answers fewer flags than partitions leaves the rest as they are.
        if pending.next() == Some(true) {
            *o = CommittedOffset {
                topic: std::mem::take(&mut o.topic),
                partition: o.partition,
                offset: -1,
                leader_epoch: -1,
                metadata: None,
                error: error::UNSTABLE_OFFSET_COMMIT,
            };
        }
    }
    offsets
}

/// Kafka answers a committed offset without metadata with "".
fn metadata(m: Option<String>) -> Option<kafka_protocol::protocol::StrBytes> {
    opt_str_bytes(Some(m.unwrap_or_default()))
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: OffsetFetchRequest = cx.decode()?;
    let v = cx.version;
    if v >= BATCHED {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let wanted = partitions(
                    g.topics
                        .as_ref()
                        .map(|ts| ts.iter().map(|t| (t.name.as_str(), &t.partition_indexes[..]))),
                );
                match cx.svc.fetch_offsets(g.group_id.as_str(), wanted.as_deref()) {
                    Ok(offsets) => {
                        let offsets = stable(cx.svc, g.group_id.as_str(), req.require_stable, offsets);
                        group_found(g.group_id.clone(), offsets)
                    }
                    Err(code) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code),
                }
            })
            .collect();
        return cx.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted = partitions(
        req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.as_str(), &t.partition_indexes[..]))),
    );
    if v < 2 && wanted.is_none() {
        return Err("malformed request (OffsetFetch v1): null topics".into());
    }
    let group_id = string(&req.group_id);
    match cx.svc.fetch_offsets(&group_id, wanted.as_deref()) {
        Ok(offsets) => {
            let offsets = stable(cx.svc, &group_id, v >= 7 && req.require_stable, offsets);
            cx.respond(&OffsetFetchResponse::default().with_topics(topics(offsets)))
        }
        Err(code) => cx.respond(&failed(v, code, wanted.unwrap_or_default())),
    }
}

/// The response to this request carrying `code`: for every group from v8.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: OffsetFetchRequest = cx.decode()?;
    if cx.version >= BATCHED {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone()).with_error_code(code)
            })
            .collect();
        return cx.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted = partitions(
        req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.as_str(), &t.partition_indexes[..]))),
    );
    cx.respond(&failed(cx.version, code, wanted.unwrap_or_default()))
}

/// A group-level error before v8. v1 has no field for it: as Kafka's, its response carries the
/// error on every requested partition; from v2 it is the top-level error, with no partitions.
fn failed(v: i16, code: ErrorCode, wanted: Vec<TopicPartition>) -> OffsetFetchResponse {
    if v >= 2 {
        return OffsetFetchResponse::default().with_error_code(code);
    }
    let none = wanted.into_iter().map(|tp| CommittedOffset {
        topic: tp.topic,
        partition: tp.partition,
        offset: -1,
        leader_epoch: -1,
        metadata: None,
        error: code,
    });
    OffsetFetchResponse::default().with_topics(topics(none.collect()))
}

/// Offsets grouped by topic, before v8.
fn topics(offsets: Vec<CommittedOffset>) -> Vec<OffsetFetchResponseTopic> {
    by_topic(offsets.into_iter().map(|o| (o.topic.clone(), o)))
        .into_iter()
        .map(|(name, offsets)| {
            let partitions = offsets
                .into_iter()
                .map(|o| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(o.offset)
                        .with_committed_leader_epoch(o.leader_epoch)
                        .with_metadata(metadata(o.metadata))
                        .with_error_code(o.error)
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(topic_name(name)).with_partitions(partitions)
        })
        .collect()
}

/// One group's offsets (v8+).
fn group_found(group_id: GroupId, offsets: Vec<CommittedOffset>) -> OffsetFetchResponseGroup {
    let topics = by_topic(offsets.into_iter().map(|o| (o.topic.clone(), o)))
        .into_iter()
        .map(|(name, offsets)| {
            let partitions = offsets
                .into_iter()
                .map(|o| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(o.offset)
                        .with_committed_leader_epoch(o.leader_epoch)
                        .with_metadata(metadata(o.metadata))
                        .with_error_code(o.error)
                })
                .collect();
            OffsetFetchResponseTopics::default().with_name(topic_name(name)).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_topics(topics)
        .with_error_code(error::NONE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::commit_request as commit;
    use crate::test_util::{call, decode_response, error_response, frame, group_id, run};
    use guise_guest_sdk::Outcome;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::{ApiKey, OffsetCommitResponse};

    /// Topics t (2 partitions) and u; group g committed t-0 = 5 and u-0 = 9, group h t-1 = 3.
    fn svc() -> StubServices {
        let svc = StubServices::new();
        svc.create_topic("t", 2, &[], false).unwrap();
        svc.create_topic("u", 1, &[], false).unwrap();
        for (group, parts) in [("g", &[("t", 0, 5), ("u", 0, 9)][..]), ("h", &[("t", 1, 3)][..])] {
            let resp: OffsetCommitResponse =
                call(&svc, ApiKey::OffsetCommit, 8, &commit(group, -1, "", parts));
            assert!(resp.topics.iter().all(|t| t.partitions.iter().all(|p| p.error_code == 0)));
        }
        svc.group_calls.borrow_mut().clear();
        svc
    }

    fn request(group: &str, parts: Option<&[(&str, &[i32])]>) -> OffsetFetchRequest {
        OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(parts.map(|ps| {
            ps.iter()
                .map(|(t, p)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(*t))
                        .with_partition_indexes(p.to_vec())
                })
                .collect()
        }))
    }

    /// (topic, partition, offset, metadata, error)
    fn rows(resp: &OffsetFetchResponse) -> Vec<(String, i32, i64, String, i16)> {
        resp.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    let m = p.metadata.as_ref().map(|m| m.to_string()).unwrap_or("<null>".into());
                    (t.name.to_string(), p.partition_index, p.committed_offset, m, p.error_code)
                })
            })
            .collect()
    }

    #[test]
    fn named_partitions_v1_to_v7() {
        let svc = svc();
        for v in 1..=7 {
            let req = request("g", Some(&[("t", &[0, 1]), ("u", &[0])]));
            let resp: OffsetFetchResponse = call(&svc, ApiKey::OffsetFetch, v, &req);
            assert_eq!(
                rows(&resp),
                vec![
                    ("t".into(), 0, 5, "meta-5".into(), 0),
                    ("t".into(), 1, -1, "".into(), 0),
                    ("u".into(), 0, 9, "meta-9".into(), 0)
                ],
                "v{v}"
            );
            assert_eq!(resp.error_code, 0);
        }
    }

    #[test]
    fn null_topics_mean_all_from_v2_and_close_at_v1() {
        let svc = svc();
        for v in 2..=7 {
            let resp: OffsetFetchResponse = call(&svc, ApiKey::OffsetFetch, v, &request("g", None));
            let got: Vec<(String, i32, i64)> = rows(&resp).into_iter().map(|r| (r.0, r.1, r.2)).collect();
            assert_eq!(got, vec![("t".into(), 0, 5), ("u".into(), 0, 9)], "v{v}");
        }
        let out = run(&svc, frame(ApiKey::OffsetFetch, 1, &request("g", None)));
        assert!(matches!(out, Outcome::Close(_)), "{out:?}");
    }

    #[test]
    fn group_errors_v1_on_partitions_v2_at_the_top() {
        let svc = svc();
        let req = request("", Some(&[("t", &[0])]));
        let resp: OffsetFetchResponse = call(&svc, ApiKey::OffsetFetch, 1, &req);
        assert_eq!(rows(&resp), vec![("t".into(), 0, -1, "".into(), error::INVALID_GROUP_ID)]);
        for v in 2..=7 {
            let resp: OffsetFetchResponse = call(&svc, ApiKey::OffsetFetch, v, &req);
            assert_eq!((resp.error_code, resp.topics.len()), (error::INVALID_GROUP_ID, 0), "v{v}");
        }
    }

    #[test]
    fn v8_fetches_each_group() {
        let svc = svc();
        let group = |id: &str, topics: Option<Vec<(&str, Vec<i32>)>>| {
            OffsetFetchRequestGroup::default().with_group_id(group_id(id)).with_topics(topics.map(|ts| {
                ts.into_iter()
                    .map(|(t, p)| {
                        OffsetFetchRequestTopics::default().with_name(topic_name(t)).with_partition_indexes(p)
                    })
                    .collect()
            }))
        };
        let req = OffsetFetchRequest::default().with_groups(vec![
            group("g", None),
            group("h", Some(vec![("t", vec![0, 1])])),
            group("", None),
            group("fresh", Some(vec![("u", vec![0])])),
        ]);
        let resp: OffsetFetchResponse = call(&svc, ApiKey::OffsetFetch, 8, &req);
        type Group = (String, i16, Vec<(String, i32, i64)>);
        let got: Vec<Group> = resp
            .groups
            .iter()
            .map(|g| {
                let offsets = g
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (t.name.to_string(), p.partition_index, p.committed_offset))
                    })
                    .collect();
                (g.group_id.to_string(), g.error_code, offsets)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("g".into(), 0, vec![("t".into(), 0, 5), ("u".into(), 0, 9)]),
                ("h".into(), 0, vec![("t".into(), 0, -1), ("t".into(), 1, 3)]),
                ("".into(), error::INVALID_GROUP_ID, vec![]),
                ("fresh".into(), 0, vec![("u".into(), 0, -1)]),
            ]
        );
        assert_eq!(
            *svc.group_calls.borrow(),
            ["fetch_offsets g", "fetch_offsets h", "fetch_offsets ", "fetch_offsets fresh"],
            "one host call per group"
        );
    }

    #[test]
    fn require_stable_answers_pending_partitions_unstable() {
        use crate::test_txn::TxnHost;
        let host = TxnHost::with_topics();
        for (group, parts) in [("g", &[("t", 0, 5), ("u", 0, 9)][..]), ("h", &[("t", 1, 3)][..])] {
            let _: OffsetCommitResponse = call(&host, ApiKey::OffsetCommit, 8, &commit(group, -1, "", parts));
        }
        host.pending.replace(vec![("g".into(), "u".into(), 0), ("h".into(), "t".into(), 0)]);
        let unstable = ("u".to_string(), 0, -1, "".to_string(), error::UNSTABLE_OFFSET_COMMIT);
        let named = request("g", Some(&[("t", &[0, 1]), ("u", &[0])]));
        for v in [7, 8] {
            // v7: one group; v8: the same group in a batch.
            let as_v = |req: &OffsetFetchRequest| -> OffsetFetchRequest {
                if v < 8 {
                    return req.clone().with_require_stable(true);
                }
                let topics = req.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| {
                            OffsetFetchRequestTopics::default()
                                .with_name(t.name.clone())
                                .with_partition_indexes(t.partition_indexes.clone())
                        })
                        .collect()
                });
                OffsetFetchRequest::default().with_require_stable(true).with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(req.group_id.clone())
                        .with_topics(topics),
                ])
            };
            let fetch = |req: &OffsetFetchRequest| -> Vec<(String, i32, i64, String, i16)> {
                let resp: OffsetFetchResponse = call(&host, ApiKey::OffsetFetch, v, &as_v(req));
                if v < 8 {
                    return rows(&resp);
                }
                let g = &resp.groups[0];
                g.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            let m = p.metadata.as_ref().map(|m| m.to_string()).unwrap_or("<null>".into());
                            (t.name.to_string(), p.partition_index, p.committed_offset, m, p.error_code)
                        })
                    })
                    .collect()
            };
            host.calls.borrow_mut().clear();
            assert_eq!(
                fetch(&named),
                [("t".into(), 0, 5, "meta-5".into(), 0), ("t".into(), 1, -1, "".into(), 0), unstable.clone()],
                "v{v}"
            );
            // Every partition of the group (null topics) is checked too.
            assert_eq!(
                fetch(&request("g", None)),
                [("t".into(), 0, 5, "meta-5".into(), 0), unstable.clone()],
                "v{v}"
            );
            assert_eq!(host.calls(), ["pending g t-0,t-1,u-0", "pending g t-0,u-0"], "v{v}");
        }
        // Without require_stable nobody asks.
        host.calls.borrow_mut().clear();
        let resp: OffsetFetchResponse = call(&host, ApiKey::OffsetFetch, 7, &named);
        assert_eq!(rows(&resp)[2], ("u".into(), 0, 9, "meta-9".into(), 0));
        assert!(host.calls().is_empty());
    }

    #[test]
    fn error_responses() {
        let svc = svc();
        let req = request("g", Some(&[("t", &[0, 1])]));
        let bytes = error_response(&svc, frame(ApiKey::OffsetFetch, 1, &req), error::REQUEST_TIMED_OUT);
        let resp: OffsetFetchResponse = decode_response(ApiKey::OffsetFetch, 1, &bytes);
        let e = error::REQUEST_TIMED_OUT;
        assert_eq!(rows(&resp), vec![("t".into(), 0, -1, "".into(), e), ("t".into(), 1, -1, "".into(), e)]);
        let bytes = error_response(&svc, frame(ApiKey::OffsetFetch, 7, &req), e);
        let resp: OffsetFetchResponse = decode_response(ApiKey::OffsetFetch, 7, &bytes);
        assert_eq!((resp.error_code, resp.topics.len()), (e, 0));
        let req = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default().with_group_id(group_id("a")).with_topics(None),
        ]);
        let bytes = error_response(&svc, frame(ApiKey::OffsetFetch, 8, &req), e);
        let resp: OffsetFetchResponse = decode_response(ApiKey::OffsetFetch, 8, &bytes);
        assert_eq!((resp.groups[0].group_id.as_str(), resp.groups[0].error_code), ("a", e));
    }
}
