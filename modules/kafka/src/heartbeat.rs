//! Heartbeat v0–v4: a member tells the coordinator it is alive; the answer says whether its
//! generation is still current (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS
//! tell it to rejoin). Static members (v3+) name their instance id.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{opt_string, string};
use guise_guest_sdk::{ErrorCode, Services};
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: HeartbeatRequest = cx.decode()?;
    let instance = if cx.version >= 3 { opt_string(&req.group_instance_id) } else { None };
    let code = cx.svc.heartbeat(
        &string(&req.group_id),
        req.generation_id,
        &string(&req.member_id),
        instance.as_deref(),
    );
    cx.respond(&HeartbeatResponse::default().with_error_code(code))
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: HeartbeatRequest = cx.decode()?;
    cx.respond(&HeartbeatResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::str_bytes;
    use crate::test_util::join;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::error;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::{ApiKey, GroupId};

    fn request(group: &str, generation: i32, member: &str) -> HeartbeatRequest {
        HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id(generation)
            .with_member_id(str_bytes(member))
    }

    #[test]
    fn heartbeats_at_every_version() {
        let svc = StubServices::new();
        let joined = join(&svc, 3, "g");
        let me = joined.member_id.as_str();
        for v in 0..=4 {
            let mut req = request("g", 1, me);
            if v >= 3 {
                req = req.with_group_instance_id(None);
            }
            let resp: HeartbeatResponse = call(&svc, ApiKey::Heartbeat, v, &req);
            assert_eq!((resp.error_code, resp.throttle_time_ms), (error::NONE, 0), "v{v}");
            let resp: HeartbeatResponse = call(&svc, ApiKey::Heartbeat, v, &request("g", 2, me));
            assert_eq!(resp.error_code, error::ILLEGAL_GENERATION, "v{v}");
            let resp: HeartbeatResponse = call(&svc, ApiKey::Heartbeat, v, &request("nope", 1, me));
            assert_eq!(resp.error_code, error::UNKNOWN_MEMBER_ID, "v{v}");
        }
        assert!(svc.group_calls.borrow().iter().all(|c| c.starts_with("join") || c.starts_with("heartbeat")));
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = StubServices::new();
        for v in [0, 4] {
            let bytes = error_response(
                &svc,
                frame(ApiKey::Heartbeat, v, &request("g", 1, "m")),
                error::REQUEST_TIMED_OUT,
            );
            let resp: HeartbeatResponse = decode_response(ApiKey::Heartbeat, v, &bytes);
            assert_eq!(resp.error_code, error::REQUEST_TIMED_OUT, "v{v}");
        }
    }
}
