//! JoinGroup v0–v9: join a consumer group through the host's coordinator (Kafka's classic group
//! protocol; assignment happens in the client, so every assignor works).
//!
//! The member's protocol metadata passes through as the client sent it. From v4 a new member
//! first gets MEMBER_ID_REQUIRED with its id (KIP-394); from v5 it may be static
//! (`group.instance.id`). v0 has no rebalance timeout: the session timeout stands in, as in Kafka.
//!
//! A join the coordinator cannot answer yet (the rebalance is still collecting members) is
//! parked on the group: the host re-runs it when the group changes, and at the deadline — the
//! rebalance timeout plus a margin, by which the coordinator has completed the rebalance
//! itself — with `final` set, when a join still pending is answered REBALANCE_IN_PROGRESS and
//! the client joins again.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{join_deadline_ms, opt_str_bytes, opt_string, string, wait_on_group};
use crate::metadata::str_bytes;
use bytes::Bytes;
use guise_guest_sdk::{ErrorCode, JoinOutcome, JoinRequest, JoinResult, Protocol, Services, error};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: JoinGroupRequest = cx.decode()?;
    let v = cx.version;
    let rebalance_timeout_ms = if v >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms };
    let join = JoinRequest {
        group_id: string(&req.group_id),
        member_id: string(&req.member_id),
        group_instance_id: if v >= 5 { opt_string(&req.group_instance_id) } else { None },
        client_id: cx.client_id().unwrap_or("").to_string(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: string(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol { name: string(&p.name), metadata: p.metadata.to_vec() })
            .collect(),
        require_known_member: v >= 4,
        reason: if v >= 8 { opt_string(&req.reason) } else { None },
    };
    match cx.svc.join_group(&join) {
        JoinOutcome::Done(result) => cx.respond(&response(v, result)),
        JoinOutcome::Pending if cx.final_ => {
            cx.respond(&failed(v, error::REBALANCE_IN_PROGRESS, req.member_id.clone()))
        }
        JoinOutcome::Pending => {
            Ok(wait_on_group::<S>(&join.group_id, join_deadline_ms(rebalance_timeout_ms)))
        }
    }
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: JoinGroupRequest = cx.decode()?;
    cx.respond(&failed(cx.version, code, req.member_id))
}

fn response(v: i16, mut r: JoinResult) -> JoinGroupResponse {
    if r.skip_assignment && v < 9 {
        // A static leader rejoining a stable group (KIP-345). Before v9 there is no
        // skip_assignment flag: as Kafka did, answer with a leader id that is not the member's
        // own, so the client acts as a follower and does not compute an assignment the stable
        // group would ignore; its sync returns the current assignment.
        r.leader = String::new();
        r.members.clear();
    }
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(if v >= 5 { opt_str_bytes(m.group_instance_id) } else { None })
                .with_metadata(Bytes::from(m.metadata))
        })
        .collect();
    let resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        // v7+; the protocol name is nullable only from v7.
        .with_protocol_type(opt_str_bytes(r.protocol_type))
        .with_protocol_name(protocol_name(v, r.protocol_name))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members);
    if v >= 9 { resp.with_skip_assignment(r.skip_assignment) } else { resp }
}

/// Kafka's error response: no generation (-1), no protocol, no leader, no members.
fn failed(v: i16, code: ErrorCode, member_id: StrBytes) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_protocol_type(None)
        .with_protocol_name(protocol_name(v, None))
        .with_leader(StrBytes::default())
        .with_member_id(member_id)
}

/// Before v7 the protocol name is not nullable: "" stands for none.
fn protocol_name(v: i16, name: Option<String>) -> Option<StrBytes> {
    match name {
        Some(n) => Some(str_bytes(n)),
        None if v < 7 => Some(StrBytes::default()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{
        call, call_final, decode_response, error_response, frame, join, join_request as request, run,
    };
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{Outcome, Wait, WakeSource};
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn a_single_member_joins_and_leads_at_every_version() {
        for v in 0..=9 {
            let svc = StubServices::new();
            let resp = join(&svc, v, "g");
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            assert_eq!(resp.generation_id, 1, "v{v}");
            assert_eq!(resp.protocol_name.as_ref().map(|s| s.as_str()), Some("range"), "v{v}");
            let want_type = if v >= 7 { Some("consumer") } else { None };
            assert_eq!(resp.protocol_type.as_ref().map(|s| s.as_str()), want_type, "v{v}");
            assert_eq!(resp.leader, resp.member_id, "v{v}");
            assert!(resp.member_id.starts_with("test-"), "v{v}: the client id names the member");
            assert_eq!(resp.members.len(), 1, "v{v}");
            // The member's metadata passes through untouched.
            assert_eq!(&resp.members[0].metadata[..], b"\x00\x01range-meta", "v{v}");
            assert!(!resp.skip_assignment);
        }
    }

    #[test]
    fn what_reaches_the_host() {
        let svc = StubServices::new();
        // v0: the session timeout stands in for the rebalance timeout; no KIP-394.
        let resp: JoinGroupResponse = call(&svc, ApiKey::JoinGroup, 0, &request("g", ""));
        assert_eq!(resp.error_code, 0);
        // v5+: static membership; a static member needs no KIP-394 round trip.
        let req = request("s", "").with_group_instance_id(Some(str_bytes("instance-1")));
        let resp: JoinGroupResponse = call(&svc, ApiKey::JoinGroup, 5, &req);
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.members[0].group_instance_id.as_ref().map(|s| s.as_str()), Some("instance-1"));
        // Before v5 the instance id is not on the wire: the members list has none.
        let resp = join(&svc, 4, "t");
        assert_eq!(resp.members[0].group_instance_id, None);
    }

    #[test]
    fn host_errors_are_mapped() {
        let svc = StubServices::new();
        for v in [0, 6, 9] {
            let resp: JoinGroupResponse =
                call(&svc, ApiKey::JoinGroup, v, &request("g", "").with_session_timeout_ms(10));
            assert_eq!(resp.error_code, error::INVALID_SESSION_TIMEOUT, "v{v}");
            assert_eq!(resp.generation_id, -1);
            let want_name = if v < 7 { Some("") } else { None };
            assert_eq!(resp.protocol_name.as_ref().map(|s| s.as_str()), want_name, "v{v}");
        }
        join(&svc, 9, "g");
        let other = request("g", "").with_protocol_type(str_bytes("connect"));
        let resp: JoinGroupResponse = call(&svc, ApiKey::JoinGroup, 3, &other);
        assert_eq!(resp.error_code, error::INCONSISTENT_GROUP_PROTOCOL);
    }

    #[test]
    fn pending_waits_on_the_group_then_answers_rebalance_in_progress() {
        let svc = StubServices::new();
        svc.groups_pending.set(true);
        for (v, deadline) in [(0, 15_000), (1, 35_000), (9, 35_000)] {
            let out = run(&svc, frame(ApiKey::JoinGroup, v, &request("g", "m-1")));
            let Outcome::Wait(wait) = out else { panic!("v{v}: expected a wait, got {out:?}") };
            // v0: session timeout (10 s) + 5 s; v1+: rebalance timeout (30 s) + 5 s.
            assert_eq!(
                wait,
                Wait { wake_on: vec![WakeSource::Group("g".into())], deadline_ms: deadline },
                "v{v}"
            );
            let resp: JoinGroupResponse = call_final(&svc, ApiKey::JoinGroup, v, &request("g", "m-1"));
            assert_eq!(resp.error_code, error::REBALANCE_IN_PROGRESS, "v{v}");
            assert_eq!(resp.member_id.as_str(), "m-1", "v{v}");
            assert_eq!(resp.generation_id, -1);
        }
        // A final run that the host can answer is answered normally.
        svc.groups_pending.set(false);
        let resp: JoinGroupResponse = call_final(&svc, ApiKey::JoinGroup, 3, &request("g", ""));
        assert_eq!(resp.error_code, error::NONE);
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = StubServices::new();
        for v in [0, 9] {
            let bytes = error_response(
                &svc,
                frame(ApiKey::JoinGroup, v, &request("g", "m")),
                error::REQUEST_TIMED_OUT,
            );
            let resp: JoinGroupResponse = decode_response(ApiKey::JoinGroup, v, &bytes);
            assert_eq!((resp.error_code, resp.generation_id), (error::REQUEST_TIMED_OUT, -1), "v{v}");
        }
    }

    #[test]
    fn a_static_leader_that_need_not_assign_is_answered_as_a_follower_before_v9() {
        let result = JoinResult {
            error: 0,
            generation_id: 4,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "static-1".into(),
            member_id: "static-1".into(),
            members: vec![guise_guest_sdk::GroupMember {
                member_id: "static-1".into(),
                group_instance_id: None,
                metadata: vec![1],
            }],
            skip_assignment: true,
        };
        let old = response(5, result.clone());
        assert_ne!(old.leader.as_str(), old.member_id.as_str(), "the client must not think it leads");
        assert!(old.members.is_empty());
        let new = response(9, result);
        assert!(new.skip_assignment);
        assert_eq!(new.leader.as_str(), "static-1");
        assert_eq!(new.members.len(), 1);
    }
}
