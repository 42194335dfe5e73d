//! DeleteGroups v0–v2: delete empty groups and their committed offsets; each group is answered
//! with the host's error (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, ...).

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DeleteGroupsRequest = cx.decode()?;
    respond(cx, &req, |group| cx.svc.delete_group(group))
}

/// The response to this request with `code` for every group.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DeleteGroupsRequest = cx.decode()?;
    respond(cx, &req, |_| code)
}

fn respond<S: Services>(
    cx: &Ctx<'_, S>,
    req: &DeleteGroupsRequest,
    code_of: impl Fn(&str) -> ErrorCode,
) -> ApiResult<S> {
    let results = req
        .groups_names
        .iter()
        .map(|g| {
            DeletableGroupResult::default().with_group_id(g.clone()).with_error_code(code_of(g.as_str()))
        })
        .collect();
    cx.respond(&DeleteGroupsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::commit_request as commit;
    use crate::test_util::join;
    use crate::test_util::{call, decode_response, error_response, frame, group_id};
    use guise_guest_sdk::error;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::{ApiKey, OffsetCommitResponse};

    fn request(groups: &[&str]) -> DeleteGroupsRequest {
        DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| group_id(g)).collect())
    }

    fn results(resp: &DeleteGroupsResponse) -> Vec<(String, i16)> {
        resp.results.iter().map(|r| (r.group_id.to_string(), r.error_code)).collect()
    }

    #[test]
    fn deletes_empty_groups_at_every_version() {
        for v in 0..=2 {
            use guise_guest_sdk::Services;
            let svc = StubServices::new();
            svc.create_topic("t", 1, &[], false).unwrap();
            join(&svc, 3, "busy");
            let _: OffsetCommitResponse =
                call(&svc, ApiKey::OffsetCommit, 2, &commit("idle", -1, "", &[("t", 0, 1)]));
            let resp: DeleteGroupsResponse =
                call(&svc, ApiKey::DeleteGroups, v, &request(&["idle", "busy", "nope"]));
            assert_eq!(
                results(&resp),
                vec![
                    ("idle".into(), 0),
                    ("busy".into(), error::NON_EMPTY_GROUP),
                    ("nope".into(), error::GROUP_ID_NOT_FOUND)
                ],
                "v{v}"
            );
            assert_eq!(resp.throttle_time_ms, 0);
            let resp: DeleteGroupsResponse = call(&svc, ApiKey::DeleteGroups, v, &request(&["idle"]));
            assert_eq!(results(&resp), vec![("idle".into(), error::GROUP_ID_NOT_FOUND)], "v{v}: deleted");
        }
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = StubServices::new();
        for v in [0, 2] {
            let bytes = error_response(
                &svc,
                frame(ApiKey::DeleteGroups, v, &request(&["a"])),
                error::REQUEST_TIMED_OUT,
            );
            let resp: DeleteGroupsResponse = decode_response(ApiKey::DeleteGroups, v, &bytes);
            assert_eq!(results(&resp), vec![("a".into(), error::REQUEST_TIMED_OUT)], "v{v}");
        }
    }
}
