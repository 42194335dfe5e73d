//! AddOffsetsToTxn v0–v4: a transactional producer (a consume-transform-produce application) is
//! about to commit a group's offsets in its open transaction; the host's transaction coordinator
//! records the group, so the offsets take effect when the transaction commits.
//!
//! As in Kafka: without WRITE on the transactional id the answer is
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, without READ on the group GROUP_AUTHORIZATION_FAILED;
//! otherwise the coordinator's, with PRODUCER_FENCED as INVALID_PRODUCER_EPOCH before v2. v4
//! only tells that the client knows TRANSACTION_ABORTABLE (never answered here). At
//! transaction version 2 clients send none: TxnOffsetCommit v5 adds the group.

use crate::context::{ApiResult, Ctx};
use crate::txn_common::{fenced_before, may_write, producer};
use guise_guest_sdk::{ErrorCode, Services, acl, error};
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_FROM: i16 = 2;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: AddOffsetsToTxnRequest = cx.decode()?;
    let svc = cx.svc;
    let transactional_id = req.transactional_id.as_str();
    let group_id = req.group_id.as_str();
    let code = if !may_write(svc, transactional_id) {
        error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !svc.authorize(acl::GROUP, group_id, acl::READ) {
        error::GROUP_AUTHORIZATION_FAILED
    } else {
        let code =
            svc.add_offsets_to_txn(transactional_id, producer(req.producer_id, req.producer_epoch), group_id);
        fenced_before(code, cx.version, PRODUCER_FENCED_FROM)
    };
    cx.respond(&AddOffsetsToTxnResponse::default().with_error_code(code))
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: AddOffsetsToTxnRequest = cx.decode()?;
    cx.respond(&AddOffsetsToTxnResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame, group_id};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::{ApiKey, ProducerId, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    fn request(id: &str, group: &str) -> AddOffsetsToTxnRequest {
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(ProducerId(7000))
            .with_producer_epoch(3)
            .with_group_id(group_id(group))
    }

    #[test]
    fn adds_the_group_at_every_version() {
        for v in 0..=4 {
            let host = TxnHost::new();
            let resp: AddOffsetsToTxnResponse = call(&host, ApiKey::AddOffsetsToTxn, v, &request("tx", "g"));
            assert_eq!((resp.error_code, resp.throttle_time_ms), (0, 0), "v{v}");
            assert_eq!(host.calls(), ["add_offsets tx 7000/3 g"], "v{v}");
            host.answer.set(error::PRODUCER_FENCED);
            let resp: AddOffsetsToTxnResponse = call(&host, ApiKey::AddOffsetsToTxn, v, &request("tx", "g"));
            let want = if v >= 2 { error::PRODUCER_FENCED } else { error::INVALID_PRODUCER_EPOCH };
            assert_eq!(resp.error_code, want, "v{v}");
        }
        let svc = StubServices::new();
        let resp: AddOffsetsToTxnResponse = call(&svc, ApiKey::AddOffsetsToTxn, 3, &request("tx", "g"));
        assert_eq!(resp.error_code, error::COORDINATOR_NOT_AVAILABLE);
    }

    #[test]
    fn needs_write_on_the_transactional_id_then_read_on_the_group() {
        let host = TxnHost::new();
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret", acl::WRITE);
        host.stub.deny(acl::GROUP, "locked", acl::READ);
        let code = |id, group| -> i16 {
            let resp: AddOffsetsToTxnResponse = call(&host, ApiKey::AddOffsetsToTxn, 3, &request(id, group));
            resp.error_code
        };
        assert_eq!(code("secret", "locked"), error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        assert_eq!(code("tx", "locked"), error::GROUP_AUTHORIZATION_FAILED);
        assert!(host.calls().is_empty());
        assert_eq!(code("tx", "g"), 0);
    }

    #[test]
    fn error_response_at_every_version() {
        let svc = StubServices::new();
        for v in 0..=4 {
            let bytes = error_response(
                &svc,
                frame(ApiKey::AddOffsetsToTxn, v, &request("tx", "g")),
                error::REQUEST_TIMED_OUT,
            );
            let resp: AddOffsetsToTxnResponse = decode_response(ApiKey::AddOffsetsToTxn, v, &bytes);
            assert_eq!(resp.error_code, error::REQUEST_TIMED_OUT, "v{v}");
        }
    }
}
