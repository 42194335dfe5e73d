//! SyncGroup v0–v5: the leader hands the coordinator every member's assignment; every member
//! gets its own back.
//!
//! A member that syncs before the leader has is parked on the group until the assignments
//! arrive (or the group changes). The translator does not know the member's session timeout,
//! which bounds this wait in Kafka; the host's coordinator enforces it (a leader that fails to
//! sync in time starts a new rebalance, which wakes the waiting members with its answer), and
//! [`SYNC_WAIT_MS`] is the backstop: a sync still pending at that deadline is answered
//! REBALANCE_IN_PROGRESS, and the member joins again.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{SYNC_WAIT_MS, opt_str_bytes, opt_string, string, wait_on_group};
use bytes::Bytes;
use guise_guest_sdk::{Assignment, ErrorCode, Services, SyncOutcome, SyncRequest, error};
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: SyncGroupRequest = cx.decode()?;
    let v = cx.version;
    let sync = SyncRequest {
        group_id: string(&req.group_id),
        generation_id: req.generation_id,
        member_id: string(&req.member_id),
        group_instance_id: if v >= 3 { opt_string(&req.group_instance_id) } else { None },
        protocol_type: if v >= 5 { opt_string(&req.protocol_type) } else { None },
        protocol_name: if v >= 5 { opt_string(&req.protocol_name) } else { None },
        assignments: req
            .assignments
            .iter()
            .map(|a| Assignment { member_id: string(&a.member_id), assignment: a.assignment.to_vec() })
            .collect(),
    };
    match cx.svc.sync_group(&sync) {
        SyncOutcome::Done(r) => cx.respond(
            &SyncGroupResponse::default()
                .with_error_code(r.error)
                // v5+ only (the codec leaves them out before).
                .with_protocol_type(opt_str_bytes(r.protocol_type))
                .with_protocol_name(opt_str_bytes(r.protocol_name))
                .with_assignment(Bytes::from(r.assignment)),
        ),
        SyncOutcome::Pending if cx.final_ => cx.respond(&failed(error::REBALANCE_IN_PROGRESS)),
        SyncOutcome::Pending => Ok(wait_on_group::<S>(&sync.group_id, SYNC_WAIT_MS)),
    }
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: SyncGroupRequest = cx.decode()?;
    cx.respond(&failed(code))
}

/// An error: no protocol, an empty assignment.
fn failed(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code).with_assignment(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::str_bytes;
    use crate::test_util::join;
    use crate::test_util::{call, call_final, decode_response, error_response, frame, run};
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{Outcome, Wait, WakeSource};
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupResponse};

    fn request(
        group: &str,
        generation: i32,
        member: &str,
        assignments: &[(&str, &'static [u8])],
    ) -> SyncGroupRequest {
        SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id(generation)
            .with_member_id(str_bytes(member))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(str_bytes(*m))
                            .with_assignment(Bytes::from_static(a))
                    })
                    .collect(),
            )
    }

    #[test]
    fn the_leader_gets_its_assignment_at_every_version() {
        for v in 0..=5 {
            let svc = StubServices::new();
            let joined: JoinGroupResponse = join(&svc, if v >= 4 { 6 } else { 3 }, "g");
            let me = joined.member_id.as_str();
            let mut req = request("g", joined.generation_id, me, &[(me, b"\x00\x01assigned")]);
            if v >= 5 {
                req = req
                    .with_protocol_type(Some(str_bytes("consumer")))
                    .with_protocol_name(Some(str_bytes("range")));
            }
            let resp: SyncGroupResponse = call(&svc, ApiKey::SyncGroup, v, &req);
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            assert_eq!(&resp.assignment[..], b"\x00\x01assigned", "v{v}");
            if v >= 5 {
                assert_eq!(resp.protocol_type.as_ref().map(|s| s.as_str()), Some("consumer"));
                assert_eq!(resp.protocol_name.as_ref().map(|s| s.as_str()), Some("range"));
            } else {
                assert_eq!(resp.protocol_name, None);
            }
        }
    }

    #[test]
    fn host_errors_are_mapped() {
        let svc = StubServices::new();
        let joined = join(&svc, 3, "g");
        let me = joined.member_id.as_str();
        for v in [0, 5] {
            let resp: SyncGroupResponse = call(&svc, ApiKey::SyncGroup, v, &request("g", 99, me, &[]));
            assert_eq!(resp.error_code, error::ILLEGAL_GENERATION, "v{v}");
            let resp: SyncGroupResponse = call(&svc, ApiKey::SyncGroup, v, &request("g", 1, "stranger", &[]));
            assert_eq!(resp.error_code, error::UNKNOWN_MEMBER_ID, "v{v}");
            assert!(resp.assignment.is_empty());
        }
    }

    #[test]
    fn a_follower_waits_for_the_leader() {
        let svc = StubServices::new();
        let (leader, follower) = crate::test_util::join_two(&svc, 3, "g");
        assert_eq!((leader.generation_id, follower.generation_id), (2, 2));
        assert!(follower.members.is_empty(), "only the leader learns the members");
        let req = request("g", 2, follower.member_id.as_str(), &[]);
        for v in [0, 5] {
            let out = run(&svc, frame(ApiKey::SyncGroup, v, &req));
            let Outcome::Wait(wait) = out else { panic!("v{v}: expected a wait, got {out:?}") };
            assert_eq!(
                wait,
                Wait { wake_on: vec![WakeSource::Group("g".into())], deadline_ms: SYNC_WAIT_MS }
            );
            // At the deadline, still without assignments: REBALANCE_IN_PROGRESS.
            let resp: SyncGroupResponse = call_final(&svc, ApiKey::SyncGroup, v, &req);
            assert_eq!(resp.error_code, error::REBALANCE_IN_PROGRESS, "v{v}");
        }
        // The leader syncs; the follower's re-run gets its assignment.
        let l = leader.member_id.as_str();
        let f = follower.member_id.as_str();
        let resp: SyncGroupResponse =
            call(&svc, ApiKey::SyncGroup, 3, &request("g", 2, l, &[(l, b"L"), (f, b"F")]));
        assert_eq!(&resp.assignment[..], b"L");
        let resp: SyncGroupResponse = call(&svc, ApiKey::SyncGroup, 3, &req);
        assert_eq!((resp.error_code, &resp.assignment[..]), (0, &b"F"[..]));
    }

    #[test]
    fn pending_from_the_host_waits() {
        let svc = StubServices::new();
        svc.groups_pending.set(true);
        let out = run(&svc, frame(ApiKey::SyncGroup, 4, &request("g", 1, "m", &[])));
        assert!(matches!(out, Outcome::Wait(_)), "{out:?}");
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = StubServices::new();
        for v in [0, 5] {
            let bytes = error_response(
                &svc,
                frame(ApiKey::SyncGroup, v, &request("g", 1, "m", &[])),
                error::REQUEST_TIMED_OUT,
            );
            let resp: SyncGroupResponse = decode_response(ApiKey::SyncGroup, v, &bytes);
            assert_eq!(resp.error_code, error::REQUEST_TIMED_OUT, "v{v}");
        }
    }
}
