//! SaslAuthenticate v0–v2: answered by the host on SASL listeners (see `sasl_handshake`);
//! elsewhere ILLEGAL_SASL_STATE, as Kafka answers it.

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    error(cx, error::ILLEGAL_SASL_STATE)
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: SaslAuthenticateRequest = cx.decode()?;
    cx.respond(&SaslAuthenticateResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn outside_sasl_listeners_authenticating_is_an_illegal_state() {
        let svc = StubServices::new();
        for v in 0..=2 {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(b"x"));
            let resp: SaslAuthenticateResponse = call(&svc, ApiKey::SaslAuthenticate, v, &req);
            assert_eq!(resp.error_code, error::ILLEGAL_SASL_STATE, "v{v}");
        }
    }
}
