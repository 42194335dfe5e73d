//! LeaveGroup v0–v5: members leave their group, so it rebalances at once instead of after their
//! session timeout. Up to v2 one member leaves by its id; from v3 (KIP-345) a batch of members,
//! by member id or static instance id, each answered on its own.
//!
//! Before v3 the only error field is the top-level one: as in Kafka, it carries the group's
//! error, else the member's. The leave reason (v5) is not passed on.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{opt_string, string};
use guise_guest_sdk::{ErrorCode, LeaveResult, Leaving, Services, error};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

/// The first version with batched members (KIP-345).
const BATCHED: i16 = 3;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: LeaveGroupRequest = cx.decode()?;
    let leaving: Vec<Leaving> = if cx.version >= BATCHED {
        req.members
            .iter()
            .map(|m| Leaving {
                member_id: string(&m.member_id),
                group_instance_id: opt_string(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![Leaving { member_id: string(&req.member_id), group_instance_id: None }]
    };
    let LeaveResult { error: top, members } = cx.svc.leave_group(&string(&req.group_id), &leaving);
    if cx.version < BATCHED {
        let code = if top != error::NONE {
            top
        } else {
            members.first().copied().unwrap_or(error::UNKNOWN_SERVER_ERROR)
        };
        return cx.respond(&LeaveGroupResponse::default().with_error_code(code));
    }
    // One code per member; a group-level error without them names no members, as in Kafka.
    let codes: Vec<ErrorCode> = if members.len() == leaving.len() {
        members
    } else if top != error::NONE {
        Vec::new()
    } else {
        vec![error::UNKNOWN_SERVER_ERROR; leaving.len()]
    };
    let members = req
        .members
        .iter()
        .zip(codes)
        .map(|(m, code)| {
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(code)
        })
        .collect();
    cx.respond(&LeaveGroupResponse::default().with_error_code(top).with_members(members))
}

/// The response to this request carrying `code` (at the top level; no members).
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: LeaveGroupRequest = cx.decode()?;
    cx.respond(&LeaveGroupResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::str_bytes;
    use crate::test_util::join;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

    fn single(group: &str, member: &str) -> LeaveGroupRequest {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_member_id(str_bytes(member))
    }

    fn batch(group: &str, members: &[(&str, Option<&str>)]) -> LeaveGroupRequest {
        LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(group))).with_members(
            members
                .iter()
                .map(|(m, i)| {
                    MemberIdentity::default()
                        .with_member_id(str_bytes(*m))
                        .with_group_instance_id(i.map(str_bytes))
                })
                .collect(),
        )
    }

    fn state(svc: &StubServices, group: &str) -> String {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
        let resp: DescribeGroupsResponse = call(svc, ApiKey::DescribeGroups, 0, &req);
        resp.groups[0].group_state.to_string()
    }

    #[test]
    fn one_member_leaves_v0_to_v2() {
        for v in 0..=2 {
            let svc = StubServices::new();
            let me = join(&svc, 3, "g").member_id;
            let resp: LeaveGroupResponse = call(&svc, ApiKey::LeaveGroup, v, &single("g", me.as_str()));
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            assert_eq!(state(&svc, "g"), "Empty", "v{v}");
            // The member's error is the top-level one before v3.
            let resp: LeaveGroupResponse = call(&svc, ApiKey::LeaveGroup, v, &single("g", me.as_str()));
            assert_eq!(resp.error_code, error::UNKNOWN_MEMBER_ID, "v{v}");
        }
    }

    #[test]
    fn batched_members_v3_to_v5() {
        for v in 3..=5 {
            let svc = StubServices::new();
            let (a, b) = crate::test_util::join_two(&svc, v, "g");
            let (a, b) = (a.member_id.to_string(), b.member_id.to_string());
            let req = batch("g", &[(&a, None), ("stranger", None), (&b, None)]);
            let resp: LeaveGroupResponse = call(&svc, ApiKey::LeaveGroup, v, &req);
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            let got: Vec<(String, i16)> =
                resp.members.iter().map(|m| (m.member_id.to_string(), m.error_code)).collect();
            assert_eq!(
                got,
                vec![(a.clone(), 0), ("stranger".into(), error::UNKNOWN_MEMBER_ID), (b.clone(), 0)],
                "v{v}"
            );
            assert_eq!(state(&svc, "g"), "Empty", "v{v}");
        }
    }

    #[test]
    fn a_static_member_leaves_by_instance_id() {
        let svc = StubServices::new();
        let join_req = crate::test_util::join_request("g", "").with_group_instance_id(Some(str_bytes("i-1")));
        let _: kafka_protocol::messages::JoinGroupResponse = call(&svc, ApiKey::JoinGroup, 5, &join_req);
        let resp: LeaveGroupResponse = call(&svc, ApiKey::LeaveGroup, 5, &batch("g", &[("", Some("i-1"))]));
        assert_eq!(resp.members[0].error_code, error::NONE);
        assert_eq!(resp.members[0].group_instance_id.as_ref().map(|s| s.as_str()), Some("i-1"));
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = StubServices::new();
        let bytes =
            error_response(&svc, frame(ApiKey::LeaveGroup, 0, &single("g", "m")), error::REQUEST_TIMED_OUT);
        let resp: LeaveGroupResponse = decode_response(ApiKey::LeaveGroup, 0, &bytes);
        assert_eq!(resp.error_code, error::REQUEST_TIMED_OUT);
        let bytes = error_response(
            &svc,
            frame(ApiKey::LeaveGroup, 5, &batch("g", &[("m", None)])),
            error::REQUEST_TIMED_OUT,
        );
        let resp: LeaveGroupResponse = decode_response(ApiKey::LeaveGroup, 5, &bytes);
        assert_eq!((resp.error_code, resp.members.len()), (error::REQUEST_TIMED_OUT, 0));
    }
}
