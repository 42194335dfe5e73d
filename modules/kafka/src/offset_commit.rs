//! OffsetCommit v2–v8: commit a group's consumed offsets to the host's coordinator, which keeps
//! them durably.
//!
//! A member commits with its generation and member id; generation -1 with an empty member id
//! commits outside the group protocol (a consumer that assigns partitions itself, or an admin
//! tool), which Kafka allows while the group has no members. The retention time of v2–v4 is
//! ignored (Kafka ignores it too since KIP-211: offsets expire with the group). The committed
//! leader epoch exists from v6 (-1 before), the static instance id from v7. Every partition is
//! answered with the host's error code for it, in request order.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{opt_string, string};
use guise_guest_sdk::{ErrorCode, OffsetCommit, Services, error};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: OffsetCommitRequest = cx.decode()?;
    let v = cx.version;
    let offsets: Vec<OffsetCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: string(&t.name),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: opt_string(&p.committed_metadata),
            })
        })
        .collect();
    let codes = if offsets.is_empty() {
        Vec::new()
    } else {
        let instance = if v >= 7 { opt_string(&req.group_instance_id) } else { None };
        cx.svc.commit_offsets(
            &string(&req.group_id),
            req.generation_id_or_member_epoch,
            &string(&req.member_id),
            instance.as_deref(),
            &offsets,
        )
    };
    let mut codes = codes.into_iter();
    // A host that answers fewer codes than partitions fails the rest.
    respond(cx, &req, |_| codes.next().unwrap_or(error::UNKNOWN_SERVER_ERROR))
}

/// The response to this request with `code` for every partition.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: OffsetCommitRequest = cx.decode()?;
    respond(cx, &req, |_| code)
}

/// Answer every partition of `req`, in order, with `code_of(partition)`.
fn respond<S: Services>(
    cx: &Ctx<'_, S>,
    req: &OffsetCommitRequest,
    mut code_of: impl FnMut(i32) -> ErrorCode,
) -> ApiResult<S> {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code_of(p.partition_index))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&OffsetCommitResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, commit_request as request, decode_response, error_response, frame, join};
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{CommittedOffset, TopicPartition};
    use kafka_protocol::messages::ApiKey;

    fn codes(resp: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
        resp.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code)))
            .collect()
    }

    fn svc() -> StubServices {
        let svc = StubServices::new();
        use guise_guest_sdk::Services;
        svc.create_topic("t", 2, &[], false).unwrap();
        svc.create_topic("u", 1, &[], false).unwrap();
        svc
    }

    fn committed(svc: &StubServices, group: &str, topic: &str, partition: i32) -> CommittedOffset {
        use guise_guest_sdk::Services;
        let tp = TopicPartition { topic: topic.into(), partition };
        svc.fetch_offsets(group, Some(&[tp])).unwrap().remove(0)
    }

    #[test]
    fn simple_commits_at_every_version() {
        for v in 2..=8 {
            let svc = svc();
            let mut req = request("g", -1, "", &[("t", 0, 5), ("t", 1, 7), ("u", 0, 9), ("nope", 0, 1)]);
            if v >= 6 {
                req.topics[0].partitions[0].committed_leader_epoch = 3;
            }
            if v <= 4 {
                req.retention_time_ms = 60_000;
            }
            let resp: OffsetCommitResponse = call(&svc, ApiKey::OffsetCommit, v, &req);
            assert_eq!(
                codes(&resp),
                vec![
                    ("t".into(), 0, 0),
                    ("t".into(), 1, 0),
                    ("u".into(), 0, 0),
                    ("nope".into(), 0, error::UNKNOWN_TOPIC_OR_PARTITION)
                ],
                "v{v}"
            );
            let c = committed(&svc, "g", "t", 0);
            assert_eq!((c.offset, c.metadata.as_deref()), (5, Some("meta-5")), "v{v}");
            assert_eq!(c.leader_epoch, if v >= 6 { 3 } else { -1 }, "v{v}");
        }
    }

    #[test]
    fn member_commits_check_the_generation() {
        let svc = svc();
        let joined = join(&svc, 3, "g");
        let me = joined.member_id.as_str();
        // Joined but not synced (CompletingRebalance): Kafka refuses member commits.
        let resp: OffsetCommitResponse =
            call(&svc, ApiKey::OffsetCommit, 8, &request("g", 1, me, &[("t", 0, 4)]));
        assert_eq!(codes(&resp), vec![("t".into(), 0, error::REBALANCE_IN_PROGRESS)]);
        let joined = crate::test_util::join_stable(&svc, 3, "h");
        let me = joined.member_id.as_str();
        for v in [2, 8] {
            let resp: OffsetCommitResponse =
                call(&svc, ApiKey::OffsetCommit, v, &request("h", 1, me, &[("t", 0, 4)]));
            assert_eq!(codes(&resp), vec![("t".into(), 0, 0)], "v{v}");
            let resp: OffsetCommitResponse =
                call(&svc, ApiKey::OffsetCommit, v, &request("h", 2, me, &[("t", 0, 4)]));
            assert_eq!(codes(&resp), vec![("t".into(), 0, error::ILLEGAL_GENERATION)], "v{v}");
            // Outside the protocol while the group has members.
            let resp: OffsetCommitResponse =
                call(&svc, ApiKey::OffsetCommit, v, &request("h", -1, "", &[("t", 1, 4)]));
            assert_eq!(codes(&resp), vec![("t".into(), 1, error::UNKNOWN_MEMBER_ID)], "v{v}");
        }
    }

    #[test]
    fn an_empty_commit_makes_no_call() {
        let svc = svc();
        let resp: OffsetCommitResponse = call(&svc, ApiKey::OffsetCommit, 8, &request("g", -1, "", &[]));
        assert!(resp.topics.is_empty());
        assert!(svc.group_calls.borrow().is_empty());
    }

    #[test]
    fn error_response_names_every_partition() {
        let svc = svc();
        for v in [2, 8] {
            let req = request("g", -1, "", &[("t", 0, 1), ("u", 0, 2)]);
            let bytes = error_response(&svc, frame(ApiKey::OffsetCommit, v, &req), error::REQUEST_TIMED_OUT);
            let resp: OffsetCommitResponse = decode_response(ApiKey::OffsetCommit, v, &bytes);
            let e = error::REQUEST_TIMED_OUT;
            assert_eq!(codes(&resp), vec![("t".into(), 0, e), ("u".into(), 0, e)], "v{v}");
        }
    }
}
