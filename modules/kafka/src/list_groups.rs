//! ListGroups v0–v4: the tenant's groups, with their protocol type and (v4+, KIP-518) state,
//! optionally only those in the requested states. As in Kafka, a principal sees every group
//! with DESCRIBE on the cluster, else only the groups it may DESCRIBE: the host filters the list.

use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, Services};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: ListGroupsRequest = cx.decode()?;
    let states: Vec<String> =
        if cx.version >= 4 { req.states_filter.iter().map(string).collect() } else { Vec::new() };
    let groups = cx
        .svc
        .list_groups(&states)
        .into_iter()
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type))
                // v4+ (the codec leaves it out before).
                .with_group_state(str_bytes(g.state))
        })
        .collect();
    cx.respond(&ListGroupsResponse::default().with_groups(groups))
}

/// The response to this request carrying `code`, with no groups.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: ListGroupsRequest = cx.decode()?;
    cx.respond(&ListGroupsResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::commit_request as commit;
    use crate::test_util::join;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::error;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::{ApiKey, OffsetCommitResponse};

    /// "active" has a member (CompletingRebalance: it never synced); "idle" only offsets (Empty).
    fn svc() -> StubServices {
        use guise_guest_sdk::Services;
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[], false).unwrap();
        join(&svc, 3, "active");
        let _: OffsetCommitResponse =
            call(&svc, ApiKey::OffsetCommit, 2, &commit("idle", -1, "", &[("t", 0, 1)]));
        svc
    }

    fn listed(resp: &ListGroupsResponse) -> Vec<(String, String, String)> {
        resp.groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.protocol_type.to_string(), g.group_state.to_string()))
            .collect()
    }

    #[test]
    fn lists_groups_at_every_version() {
        let svc = svc();
        for v in 0..=4 {
            let resp: ListGroupsResponse = call(&svc, ApiKey::ListGroups, v, &ListGroupsRequest::default());
            assert_eq!(resp.error_code, error::NONE);
            let (a, i) = if v >= 4 { ("CompletingRebalance", "Empty") } else { ("", "") };
            assert_eq!(
                listed(&resp),
                vec![("active".into(), "consumer".into(), a.into()), ("idle".into(), "".into(), i.into())],
                "v{v}"
            );
        }
    }

    #[test]
    fn v4_filters_by_state() {
        let svc = svc();
        let req =
            ListGroupsRequest::default().with_states_filter(vec![str_bytes("Empty"), str_bytes("Stable")]);
        let resp: ListGroupsResponse = call(&svc, ApiKey::ListGroups, 4, &req);
        assert_eq!(listed(&resp), vec![("idle".into(), "".into(), "Empty".into())]);
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = svc();
        for v in [0, 4] {
            let bytes = error_response(
                &svc,
                frame(ApiKey::ListGroups, v, &ListGroupsRequest::default()),
                error::REQUEST_TIMED_OUT,
            );
            let resp: ListGroupsResponse = decode_response(ApiKey::ListGroups, v, &bytes);
            assert_eq!((resp.error_code, resp.groups.len()), (error::REQUEST_TIMED_OUT, 0), "v{v}");
        }
    }
}
