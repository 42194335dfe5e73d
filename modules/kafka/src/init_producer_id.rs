//! InitProducerId v0–v5: a producer id and epoch, for an idempotent producer (from the host,
//! which checks sequence numbers on append) or for a transactional one (from the tenant's
//! transaction coordinator on the host).
//!
//! From v3 (KIP-360) a producer may name its current id and epoch to have the epoch bumped;
//! naming only one of the two is an INVALID_REQUEST, as in Kafka. A transactional id needs WRITE
//! on it (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka's broker checks before anything
//! else); an empty one is an INVALID_REQUEST, as Kafka's coordinator answers. The coordinator
//! fences the id's previous producer (aborting the transaction it left open) and answers
//! PRODUCER_FENCED for a stale current epoch, which clients of v0–v3 get as
//! INVALID_PRODUCER_EPOCH, as Kafka maps it. On an error the id and epoch are -1. v5 only tells
//! that the client knows TRANSACTION_ABORTABLE (never answered here).

use crate::context::{ApiResult, Ctx};
use crate::txn_common::{fenced_before, may_write};
use guise_guest_sdk::{ErrorCode, ProducerIdAndEpoch, Services, error};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_FROM: i16 = 4;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: InitProducerIdRequest = cx.decode()?;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.as_str());
    if let Some(id) = transactional_id
        && !may_write(cx.svc, id)
    {
        return cx.respond(&failed(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    let current = if cx.version >= 3 {
        match (req.producer_id.0, req.producer_epoch) {
            (-1, -1) => None,
            (-1, _) | (_, -1) => return cx.respond(&failed(error::INVALID_REQUEST)),
            (producer_id, producer_epoch) => Some(ProducerIdAndEpoch { producer_id, producer_epoch }),
        }
    } else {
        None
    };
    let result = match transactional_id {
        Some("") => Err(error::INVALID_REQUEST),
        Some(id) => cx.svc.init_transactional(id, req.transaction_timeout_ms, current),
        None => cx.svc.init_producer_id(None, current),
    };
    match result {
        Ok(p) => cx.respond(
            &InitProducerIdResponse::default()
                .with_producer_id(ProducerId(p.producer_id))
                .with_producer_epoch(p.producer_epoch),
        ),
        Err(code) => cx.respond(&failed(fenced_before(code, cx.version, PRODUCER_FENCED_FROM))),
    }
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: InitProducerIdRequest = cx.decode()?;
    cx.respond(&failed(code))
}

fn failed(code: ErrorCode) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::{ApiKey, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    fn request() -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    }

    fn got(resp: &InitProducerIdResponse) -> (i16, i64, i16) {
        (resp.error_code, resp.producer_id.0, resp.producer_epoch)
    }

    #[test]
    fn new_producer_ids_at_every_version() {
        let svc = StubServices::new();
        for v in 0..=5 {
            let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, v, &request());
            assert_eq!(got(&resp), (0, 1000 + v as i64, 0), "v{v}");
            assert_eq!(resp.throttle_time_ms, 0);
        }
    }

    #[test]
    fn v3_bumps_the_epoch_of_the_current_producer() {
        let svc = StubServices::new();
        let first: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, 4, &request());
        let current = |epoch| request().with_producer_id(first.producer_id).with_producer_epoch(epoch);
        for (v, epoch) in [(3, 0), (4, 1)] {
            let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, v, &current(epoch));
            assert_eq!(got(&resp), (0, first.producer_id.0, epoch + 1), "v{v}");
        }
        // A stale epoch is the host's error.
        let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, 4, &current(0));
        assert_eq!(got(&resp), (error::INVALID_PRODUCER_EPOCH, -1, -1));
        // Half a current producer is malformed.
        let half = request().with_producer_id(ProducerId(5));
        let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, 3, &half);
        assert_eq!(got(&resp), (error::INVALID_REQUEST, -1, -1));
    }

    fn tx(s: &'static str) -> InitProducerIdRequest {
        request().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(s))))
    }

    #[test]
    fn transactional_ids_go_to_the_coordinator() {
        for v in 0..=5 {
            let host = TxnHost::new();
            let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, v, &tx("tx-1"));
            assert_eq!(got(&resp), (0, 7000, 3), "v{v}");
            if v >= 3 {
                // KIP-360: the current producer is passed on.
                let req = tx("tx-1").with_producer_id(ProducerId(7000)).with_producer_epoch(2);
                let _: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, v, &req);
                assert_eq!(host.calls(), ["init tx-1 60000 -", "init tx-1 60000 7000/2"], "v{v}");
            } else {
                assert_eq!(host.calls(), ["init tx-1 60000 -"], "v{v}");
            }
        }
        // The stub host runs no coordinator: clients retry COORDINATOR_NOT_AVAILABLE.
        let svc = StubServices::new();
        let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, 4, &tx("tx-1"));
        assert_eq!(got(&resp), (error::COORDINATOR_NOT_AVAILABLE, -1, -1));
    }

    #[test]
    fn producer_fenced_is_invalid_producer_epoch_before_v4() {
        let host = TxnHost::new();
        host.answer.set(error::PRODUCER_FENCED);
        for v in 0..=5 {
            let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, v, &tx("tx-1"));
            let want = if v >= 4 { error::PRODUCER_FENCED } else { error::INVALID_PRODUCER_EPOCH };
            assert_eq!(got(&resp), (want, -1, -1), "v{v}");
        }
        host.answer.set(error::INVALID_TRANSACTION_TIMEOUT);
        let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, 1, &tx("tx-1"));
        assert_eq!(got(&resp), (error::INVALID_TRANSACTION_TIMEOUT, -1, -1));
    }

    #[test]
    fn transactional_ids_need_write_on_them() {
        let host = TxnHost::new();
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret", acl::WRITE);
        for v in [0, 4] {
            let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, v, &tx("secret"));
            assert_eq!(got(&resp), (error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1), "v{v}");
            // An empty id is malformed (when the principal may use it).
            let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, v, &tx(""));
            assert_eq!(got(&resp), (error::INVALID_REQUEST, -1, -1), "v{v}");
        }
        assert!(host.calls().is_empty(), "{:?}", host.calls());
        // Half a current producer is malformed with a transactional id too.
        let half = tx("tx-1").with_producer_epoch(4);
        let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, 3, &half);
        assert_eq!(got(&resp), (error::INVALID_REQUEST, -1, -1));
        // Without a transactional id, the idempotent path (the host checks IDEMPOTENT_WRITE).
        let resp: InitProducerIdResponse = call(&host, ApiKey::InitProducerId, 4, &request());
        assert_eq!(got(&resp).0, 0);
        assert_eq!(host.calls(), ["init_producer_id None"]);
    }

    #[test]
    fn error_response_at_min_and_max_version() {
        let svc = StubServices::new();
        for v in [0, 4] {
            let bytes =
                error_response(&svc, frame(ApiKey::InitProducerId, v, &request()), error::REQUEST_TIMED_OUT);
            let resp: InitProducerIdResponse = decode_response(ApiKey::InitProducerId, v, &bytes);
            assert_eq!(got(&resp), (error::REQUEST_TIMED_OUT, -1, -1), "v{v}");
        }
    }
}
