//! EndTxn v0–v5: commit or abort the producer's open transaction. The host's transaction
//! coordinator writes the commit or abort marker to every partition of the transaction, applies
//! (or drops) its offsets, and answers once that is durable.
//!
//! As in Kafka: without WRITE on the transactional id the answer is
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED; otherwise the coordinator's, with PRODUCER_FENCED as
//! INVALID_PRODUCER_EPOCH before v2. v4 only tells that the client knows TRANSACTION_ABORTABLE
//! (which this coordinator never answers). v5 is transaction version 2 (KIP-890 part 2): the
//! transaction ends at the next epoch, and the response carries the producer id and epoch the
//! client goes on with (-1 on an error), as Kafka's `KafkaApis.handleEndTxnRequest` answers.

use crate::context::{ApiResult, Ctx};
use crate::txn_common::{fenced_before, may_write, producer};
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_FROM: i16 = 2;
/// The first version of transaction version 2: every transaction bumps the epoch.
const EPOCH_BUMP_FROM: i16 = 5;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: EndTxnRequest = cx.decode()?;
    let transactional_id = req.transactional_id.as_str();
    let outcome = if !may_write(cx.svc, transactional_id) {
        Err(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else {
        cx.svc
            .end_txn(
                transactional_id,
                producer(req.producer_id, req.producer_epoch),
                req.committed,
                cx.version >= EPOCH_BUMP_FROM,
            )
            .map_err(|code| fenced_before(code, cx.version, PRODUCER_FENCED_FROM))
    };
    let resp = match outcome {
        Ok(p) => EndTxnResponse::default()
            .with_error_code(error::NONE)
            .with_producer_id(ProducerId(p.producer_id))
            .with_producer_epoch(p.producer_epoch),
        Err(code) => failed(code),
    };
    cx.respond(&resp)
}

/// A response carrying `code` (and no producer).
fn failed(code: ErrorCode) -> EndTxnResponse {
    EndTxnResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: EndTxnRequest = cx.decode()?;
    cx.respond(&failed(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::{ApiKey, ProducerId, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    fn request(id: &str, committed: bool) -> EndTxnRequest {
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(ProducerId(7000))
            .with_producer_epoch(3)
            .with_committed(committed)
    }

    #[test]
    fn commits_and_aborts_at_every_version() {
        for v in 0..=4 {
            let host = TxnHost::new();
            for committed in [true, false] {
                let resp: EndTxnResponse = call(&host, ApiKey::EndTxn, v, &request("tx", committed));
                assert_eq!((resp.error_code, resp.throttle_time_ms), (0, 0), "v{v}");
            }
            assert_eq!(host.calls(), ["end tx 7000/3 commit", "end tx 7000/3 abort"], "v{v}");
            for (answer, want) in [
                (
                    error::PRODUCER_FENCED,
                    if v >= 2 { error::PRODUCER_FENCED } else { error::INVALID_PRODUCER_EPOCH },
                ),
                (error::INVALID_TXN_STATE, error::INVALID_TXN_STATE),
                (error::CONCURRENT_TRANSACTIONS, error::CONCURRENT_TRANSACTIONS),
            ] {
                host.answer.set(answer);
                let resp: EndTxnResponse = call(&host, ApiKey::EndTxn, v, &request("tx", true));
                assert_eq!(resp.error_code, want, "v{v}");
            }
        }
        let svc = StubServices::new();
        let resp: EndTxnResponse = call(&svc, ApiKey::EndTxn, 3, &request("tx", true));
        assert_eq!(resp.error_code, error::COORDINATOR_NOT_AVAILABLE);
    }

    #[test]
    fn v5_ends_at_the_next_epoch_and_answers_the_producer() {
        let host = TxnHost::new();
        let resp: EndTxnResponse = call(&host, ApiKey::EndTxn, 5, &request("tx", true));
        assert_eq!((resp.error_code, resp.producer_id.0, resp.producer_epoch), (0, 7000, 4));
        assert_eq!(host.calls(), ["end tx 7000/3 commit bump"]);
        host.answer.set(error::PRODUCER_FENCED);
        let resp: EndTxnResponse = call(&host, ApiKey::EndTxn, 5, &request("tx", false));
        assert_eq!(
            (resp.error_code, resp.producer_id.0, resp.producer_epoch),
            (error::PRODUCER_FENCED, -1, -1)
        );
    }

    #[test]
    fn needs_write_on_the_transactional_id() {
        let host = TxnHost::new();
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret", acl::WRITE);
        let resp: EndTxnResponse = call(&host, ApiKey::EndTxn, 3, &request("secret", true));
        assert_eq!(resp.error_code, error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        assert!(host.calls().is_empty());
    }

    #[test]
    fn error_response_at_every_version() {
        let svc = StubServices::new();
        for v in 0..=5 {
            let bytes = error_response(
                &svc,
                frame(ApiKey::EndTxn, v, &request("tx", false)),
                error::REQUEST_TIMED_OUT,
            );
            let resp: EndTxnResponse = decode_response(ApiKey::EndTxn, v, &bytes);
            assert_eq!(resp.error_code, error::REQUEST_TIMED_OUT, "v{v}");
        }
    }
}
