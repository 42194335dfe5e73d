//! InitProducerId v0–v4: a producer id and epoch for an idempotent producer, from the host
//! (which checks sequence numbers on append).
//!
//! From v3 (KIP-360) a producer may name its current id and epoch to have the epoch bumped;
//! naming only one of the two is an INVALID_REQUEST, as in Kafka. A transactional id is passed
//! to the host, which refuses it (transactions are not supported); an empty one is an
//! INVALID_REQUEST, as Kafka's coordinator answers. On an error the id and epoch are -1.

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, ProducerIdAndEpoch, Services, error};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: InitProducerIdRequest = cx.decode()?;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.as_str());
    if transactional_id == Some("") {
        return cx.respond(&failed(error::INVALID_REQUEST));
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
    match cx.svc.init_producer_id(transactional_id, current) {
        Ok(p) => cx.respond(
            &InitProducerIdResponse::default()
                .with_producer_id(ProducerId(p.producer_id))
                .with_producer_epoch(p.producer_epoch),
        ),
        Err(code) => cx.respond(&failed(code)),
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
    use crate::test_util::{call, decode_response, error_response, frame};
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
        for v in 0..=4 {
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

    #[test]
    fn transactional_ids_are_refused() {
        let svc = StubServices::new();
        let tx = |s: &'static str| {
            request().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(s))))
        };
        for v in [0, 4] {
            let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, v, &tx("tx-1"));
            assert_eq!(got(&resp), (error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1), "v{v}");
            let resp: InitProducerIdResponse = call(&svc, ApiKey::InitProducerId, v, &tx(""));
            assert_eq!(got(&resp), (error::INVALID_REQUEST, -1, -1), "v{v}");
        }
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
