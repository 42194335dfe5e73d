//! SaslHandshake v0–v1. On SASL listeners the host authenticates connections itself and
//! answers these before the translator sees anything; what reaches the translator came on a
//! listener without SASL (or after authentication), where Kafka answers ILLEGAL_SASL_STATE.

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    error(cx, error::ILLEGAL_SASL_STATE)
}

/// The response to this request carrying `code` (and no mechanisms).
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: SaslHandshakeRequest = cx.decode()?;
    cx.respond(&SaslHandshakeResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::str_bytes;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn outside_sasl_listeners_a_handshake_is_an_illegal_state() {
        let svc = StubServices::new();
        for v in 0..=1 {
            let req = SaslHandshakeRequest::default().with_mechanism(str_bytes("PLAIN"));
            let resp: SaslHandshakeResponse = call(&svc, ApiKey::SaslHandshake, v, &req);
            assert_eq!(resp.error_code, error::ILLEGAL_SASL_STATE, "v{v}");
        }
    }
}
