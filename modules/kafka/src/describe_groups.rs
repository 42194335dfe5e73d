//! DescribeGroups v0–v6: each group's state, protocol and members, as the host's coordinator
//! sees them. A group that does not exist is described as Kafka's broker does: up to v5 with no
//! error and state "Dead"; from v6 (KIP-1043) with GROUP_ID_NOT_FOUND and a message. Member metadata and assignments pass through as the clients sent them; the
//! member's client host is the address of its connection ("/127.0.0.1").
//!
//! A group the principal may not DESCRIBE gets GROUP_AUTHORIZATION_FAILED, with no state or
//! protocol (and Kafka's message from v6), as Kafka's broker answers; the host is not asked.
//! With `include_authorized_operations` (v3+) a described group reports the group operations
//! (READ, DELETE, DESCRIBE) the host's authorizer allows (all of them without one); otherwise,
//! and for a group with an error, "not computed" (i32::MIN).

use crate::acl_common::{
    GROUP_OPERATIONS, OPERATIONS_NOT_REQUESTED, authorization_message, authorized_operations,
};
use crate::context::{ApiResult, Ctx};
use crate::group_common::opt_str_bytes;
use crate::metadata::str_bytes;
use bytes::Bytes;
use guise_guest_sdk::{ErrorCode, Services, acl, error};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeGroupsRequest = cx.decode()?;
    let v = cx.version;
    let with_operations = v >= 3 && req.include_authorized_operations;
    let groups = req
        .groups
        .iter()
        .map(|id| {
            if !cx.svc.authorize(acl::GROUP, id.as_str(), acl::DESCRIBE) {
                let code = error::GROUP_AUTHORIZATION_FAILED;
                return DescribedGroup::default()
                    .with_error_code(code)
                    .with_error_message((v >= 6).then(|| str_bytes(authorization_message(code))))
                    .with_group_id(id.clone())
                    .with_authorized_operations(OPERATIONS_NOT_REQUESTED);
            }
            let d = cx.svc.describe_group(id.as_str());
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(if v >= 4 {
                            opt_str_bytes(m.group_instance_id)
                        } else {
                            None
                        })
                        .with_client_id(str_bytes(m.client_id))
                        .with_client_host(str_bytes(m.client_host))
                        .with_member_metadata(Bytes::from(m.metadata))
                        .with_member_assignment(Bytes::from(m.assignment))
                })
                .collect();
            let (error, message) = if v >= 6 && d.error == error::NONE && d.state == "Dead" {
                (error::GROUP_ID_NOT_FOUND, Some(str_bytes(format!("Group {} not found.", id.as_str()))))
            } else {
                (d.error, None)
            };
            DescribedGroup::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_group_id(id.clone())
                .with_group_state(str_bytes(d.state))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(d.protocol_name))
                .with_members(members)
                .with_authorized_operations(if with_operations && error == error::NONE {
                    authorized_operations(cx.svc, acl::GROUP, id.as_str(), GROUP_OPERATIONS)
                } else {
                    OPERATIONS_NOT_REQUESTED
                })
        })
        .collect();
    cx.respond(&DescribeGroupsResponse::default().with_groups(groups))
}

/// The response to this request with `code` for every group.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DescribeGroupsRequest = cx.decode()?;
    let groups = req
        .groups
        .iter()
        .map(|id| {
            DescribedGroup::default()
                .with_error_code(code)
                .with_group_id(id.clone())
                .with_authorized_operations(OPERATIONS_NOT_REQUESTED)
        })
        .collect();
    cx.respond(&DescribeGroupsResponse::default().with_groups(groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::join;
    use crate::test_util::{call, decode_response, error_response, frame, group_id};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

    fn request(groups: &[&str]) -> DescribeGroupsRequest {
        DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| group_id(g)).collect())
    }

    /// A stable group "g" with one member, assigned "A".
    fn svc() -> StubServices {
        let svc = StubServices::new();
        let joined = join(&svc, 3, "g");
        let sync = SyncGroupRequest::default()
            .with_group_id(group_id("g"))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(joined.member_id.clone())
                    .with_assignment(Bytes::from_static(b"A")),
            ]);
        let resp: SyncGroupResponse = call(&svc, ApiKey::SyncGroup, 3, &sync);
        assert_eq!(resp.error_code, 0);
        svc
    }

    #[test]
    fn describes_groups_at_every_version() {
        let svc = svc();
        for v in 0..=6 {
            let mut req = request(&["g", "missing"]);
            if v >= 3 {
                req = req.with_include_authorized_operations(true);
            }
            let resp: DescribeGroupsResponse = call(&svc, ApiKey::DescribeGroups, v, &req);
            let g = &resp.groups[0];
            assert_eq!(
                (
                    g.error_code,
                    g.group_id.as_str(),
                    g.group_state.as_str(),
                    g.protocol_type.as_str(),
                    g.protocol_data.as_str()
                ),
                (0, "g", "Stable", "consumer", "range"),
                "v{v}"
            );
            let m = &g.members[0];
            assert!(m.member_id.starts_with("test-"));
            assert_eq!((m.client_id.as_str(), m.client_host.as_str()), ("test", "/127.0.0.1"), "v{v}");
            assert_eq!(&m.member_metadata[..], b"\x00\x01range-meta", "v{v}");
            assert_eq!(&m.member_assignment[..], b"A", "v{v}");
            let ops = if v >= 3 { 1 << 3 | 1 << 6 | 1 << 8 } else { OPERATIONS_NOT_REQUESTED };
            assert_eq!(g.authorized_operations, ops, "v{v}");
            let missing = &resp.groups[1];
            let code = if v >= 6 { error::GROUP_ID_NOT_FOUND } else { error::NONE };
            assert_eq!(
                (missing.error_code, missing.group_state.as_str(), missing.members.len()),
                (code, "Dead", 0),
                "v{v}"
            );
            assert_eq!(missing.error_message.is_some(), v >= 6, "v{v}");
        }
    }

    #[test]
    fn groups_the_principal_may_not_describe_are_refused() {
        let svc = svc();
        svc.deny(acl::GROUP, "hidden", acl::DESCRIBE);
        svc.deny(acl::GROUP, "g", acl::DELETE);
        svc.group_calls.borrow_mut().clear();
        for v in [0, 3, 5, 6] {
            let req = request(&["hidden", "g"]).with_include_authorized_operations(v >= 3);
            let resp: DescribeGroupsResponse = call(&svc, ApiKey::DescribeGroups, v, &req);
            let hidden = &resp.groups[0];
            assert_eq!(
                (hidden.error_code, hidden.group_id.as_str(), hidden.group_state.as_str()),
                (error::GROUP_AUTHORIZATION_FAILED, "hidden", ""),
                "v{v}"
            );
            assert_eq!(hidden.error_message.as_deref(), (v >= 6).then_some("Group authorization failed."));
            assert_eq!(hidden.authorized_operations, OPERATIONS_NOT_REQUESTED, "v{v}");
            let g = &resp.groups[1];
            assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"), "v{v}");
            let ops = if v >= 3 { 1 << 3 | 1 << 8 } else { OPERATIONS_NOT_REQUESTED };
            assert_eq!(g.authorized_operations, ops, "v{v}");
        }
        // The host was never asked about the refused group.
        assert!(svc.group_calls.borrow().iter().all(|c| c == "describe g"), "{:?}", svc.group_calls.borrow());
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = svc();
        for v in [0, 6] {
            let bytes = error_response(
                &svc,
                frame(ApiKey::DescribeGroups, v, &request(&["a", "b"])),
                error::REQUEST_TIMED_OUT,
            );
            let resp: DescribeGroupsResponse = decode_response(ApiKey::DescribeGroups, v, &bytes);
            let got: Vec<(&str, i16)> =
                resp.groups.iter().map(|g| (g.group_id.as_str(), g.error_code)).collect();
            assert_eq!(got, vec![("a", error::REQUEST_TIMED_OUT), ("b", error::REQUEST_TIMED_OUT)], "v{v}");
        }
    }
}
