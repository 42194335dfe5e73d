//! FindCoordinator v0–v4: this broker coordinates every group and every transactional id.
//!
//! Key type 0 (group) and 1 (transaction; v1+) are answered with the broker this connection talks
//! to (`cluster.self-broker`); any other key type gets INVALID_REQUEST, as Kafka's broker answers
//! an unknown coordinator type. v4 (KIP-699) batches keys: one coordinator per key. v0 has no
//! error message; a failed lookup names no node (id -1, empty host, port -1), as Kafka's does.
//!
//! As in Kafka, a group key needs DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED) and a
//! transactional id DESCRIBE on it (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED), per key in v4
//! (where Kafka sets no error message).

use crate::acl_common::authorization_message;
use crate::context::{ApiResult, Ctx};
use crate::metadata::str_bytes;
use guise_guest_sdk::{Broker, ErrorCode, Services, acl, error};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

/// The first version with batched keys (KIP-699).
const BATCHED: i16 = 4;

/// Where a key's coordinator is: this broker, or an error (and its message).
fn lookup<S: Services>(
    svc: &S,
    key_type: i8,
    key: &str,
    me: &Broker,
) -> Result<(BrokerId, StrBytes, i32), (ErrorCode, Option<String>)> {
    let refused = |code| Err((code, Some(authorization_message(code).to_string())));
    match key_type {
        0 if !svc.authorize(acl::GROUP, key, acl::DESCRIBE) => refused(error::GROUP_AUTHORIZATION_FAILED),
        1 if !svc.authorize(acl::TRANSACTIONAL_ID, key, acl::DESCRIBE) => {
            refused(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        }
        0 | 1 => Ok((BrokerId(me.node_id), str_bytes(me.host.clone()), me.port)),
        other => Err((error::INVALID_REQUEST, Some(format!("unknown coordinator key type {other}")))),
    }
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: FindCoordinatorRequest = cx.decode()?;
    let v = cx.version;
    let me = cx.svc.self_broker();
    // v0 has no key type: it looks up a group.
    let key_type = if v >= 1 { req.key_type } else { 0 };
    if v >= BATCHED {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match lookup(cx.svc, key_type, key.as_str(), &me) {
                    Ok((node, host, port)) => {
                        c.with_error_message(None).with_node_id(node).with_host(host).with_port(port)
                    }
                    // Kafka sets no message for a refused key in v4.
                    Err((code, _)) if code != error::INVALID_REQUEST => failed_key(c, code, None),
                    Err((code, message)) => failed_key(c, code, message),
                }
            })
            .collect();
        return cx.respond(&FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let r = FindCoordinatorResponse::default();
    let r = match lookup(cx.svc, key_type, req.key.as_str(), &me) {
        Ok((node, host, port)) => {
            r.with_error_message(None).with_node_id(node).with_host(host).with_port(port)
        }
        Err((code, message)) => failed(r, v, code, message),
    };
    cx.respond(&r)
}

/// The response to this request with `code` for every key.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: FindCoordinatorRequest = cx.decode()?;
    if cx.version >= BATCHED {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| failed_key(Coordinator::default().with_key(key.clone()), code, None))
            .collect();
        return cx.respond(&FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    cx.respond(&failed(FindCoordinatorResponse::default(), cx.version, code, None))
}

fn failed(
    r: FindCoordinatorResponse,
    v: i16,
    code: ErrorCode,
    message: Option<String>,
) -> FindCoordinatorResponse {
    let r = r.with_error_code(code).with_node_id(BrokerId(-1)).with_host(StrBytes::default()).with_port(-1);
    // No error message in v0.
    if v >= 1 { r.with_error_message(message.map(str_bytes)) } else { r }
}

fn failed_key(c: Coordinator, code: ErrorCode, message: Option<String>) -> Coordinator {
    c.with_error_code(code)
        .with_error_message(message.map(str_bytes))
        .with_node_id(BrokerId(-1))
        .with_host(StrBytes::default())
        .with_port(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    fn svc() -> StubServices {
        let mut svc = StubServices::new();
        svc.broker = Broker { node_id: 7, host: "broker.example".into(), port: 19092, rack: None };
        svc
    }

    #[test]
    fn group_and_transaction_keys_answer_this_broker_v0_to_v3() {
        let svc = svc();
        for v in 0..=3 {
            for key_type in if v == 0 { vec![0] } else { vec![0, 1] } {
                let req = FindCoordinatorRequest::default().with_key(str_bytes("g")).with_key_type(key_type);
                let resp: FindCoordinatorResponse = call(&svc, ApiKey::FindCoordinator, v, &req);
                assert_eq!(resp.error_code, error::NONE, "v{v}");
                if v >= 1 {
                    assert_eq!(resp.error_message, None, "v{v}");
                }
                assert_eq!(
                    (resp.node_id.0, resp.host.as_str(), resp.port),
                    (7, "broker.example", 19092),
                    "v{v}"
                );
                assert_eq!(resp.throttle_time_ms, 0);
            }
        }
    }

    #[test]
    fn an_unknown_key_type_is_an_invalid_request() {
        let svc = svc();
        for v in 1..=3 {
            let req = FindCoordinatorRequest::default().with_key(str_bytes("g")).with_key_type(5);
            let resp: FindCoordinatorResponse = call(&svc, ApiKey::FindCoordinator, v, &req);
            assert_eq!(resp.error_code, error::INVALID_REQUEST, "v{v}");
            assert!(resp.error_message.is_some(), "v{v}");
            assert_eq!((resp.node_id.0, resp.host.as_str(), resp.port), (-1, "", -1), "v{v}");
        }
        let req =
            FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes("g")]).with_key_type(2);
        let resp: FindCoordinatorResponse = call(&svc, ApiKey::FindCoordinator, 4, &req);
        assert_eq!(resp.coordinators[0].error_code, error::INVALID_REQUEST);
        assert_eq!(resp.coordinators[0].node_id.0, -1);
    }

    #[test]
    fn v4_answers_every_batched_key() {
        let svc = svc();
        for key_type in [0, 1] {
            let keys = vec![str_bytes("g1"), str_bytes("g2"), str_bytes("")];
            let req = FindCoordinatorRequest::default().with_key_type(key_type).with_coordinator_keys(keys);
            let resp: FindCoordinatorResponse = call(&svc, ApiKey::FindCoordinator, 4, &req);
            type Row<'a> = (&'a str, i32, &'a str, i32, i16, Option<&'a str>);
            let got: Vec<Row<'_>> = resp
                .coordinators
                .iter()
                .map(|c| {
                    let message = c.error_message.as_ref().map(|m| m.as_str());
                    (c.key.as_str(), c.node_id.0, c.host.as_str(), c.port, c.error_code, message)
                })
                .collect();
            let want = |k| (k, 7, "broker.example", 19092, 0, None);
            assert_eq!(got, vec![want("g1"), want("g2"), want("")]);
        }
    }

    #[test]
    fn keys_the_principal_may_not_describe_are_refused() {
        let svc = svc();
        svc.deny(acl::GROUP, "secret", acl::DESCRIBE);
        svc.deny(acl::TRANSACTIONAL_ID, "tx-secret", acl::DESCRIBE);
        for v in 0..=3 {
            let ask = |key_type: i8, key: &str| -> FindCoordinatorResponse {
                let req = FindCoordinatorRequest::default().with_key(str_bytes(key)).with_key_type(key_type);
                call(&svc, ApiKey::FindCoordinator, v, &req)
            };
            let resp = ask(0, "secret");
            assert_eq!(resp.error_code, error::GROUP_AUTHORIZATION_FAILED, "v{v}");
            assert_eq!((resp.node_id.0, resp.host.as_str(), resp.port), (-1, "", -1), "v{v}");
            if v >= 1 {
                assert_eq!(resp.error_message.as_deref(), Some("Group authorization failed."), "v{v}");
                let resp = ask(1, "tx-secret");
                assert_eq!(resp.error_code, error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "v{v}");
                assert_eq!(resp.node_id.0, -1, "v{v}");
                // Allowed keys are answered as before.
                assert_eq!((ask(1, "tx").error_code, ask(1, "tx").node_id.0), (0, 7), "v{v}");
            }
            assert_eq!((ask(0, "open").error_code, ask(0, "open").node_id.0), (0, 7), "v{v}");
        }
        // v4: per key.
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![str_bytes("open"), str_bytes("secret")]);
        let resp: FindCoordinatorResponse = call(&svc, ApiKey::FindCoordinator, 4, &req);
        let got: Vec<(&str, i16, i32, Option<&str>)> = resp
            .coordinators
            .iter()
            .map(|c| (c.key.as_str(), c.error_code, c.node_id.0, c.error_message.as_deref()))
            .collect();
        assert_eq!(got, [("open", 0, 7, None), ("secret", error::GROUP_AUTHORIZATION_FAILED, -1, None)]);
        let req = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![str_bytes("tx-secret"), str_bytes("tx")]);
        let resp: FindCoordinatorResponse = call(&svc, ApiKey::FindCoordinator, 4, &req);
        let codes: Vec<i16> = resp.coordinators.iter().map(|c| c.error_code).collect();
        assert_eq!(codes, [error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 0]);
    }

    #[test]
    fn error_response_at_every_version() {
        let svc = svc();
        for v in 0..=3 {
            let req = FindCoordinatorRequest::default().with_key(str_bytes("g"));
            let bytes =
                error_response(&svc, frame(ApiKey::FindCoordinator, v, &req), error::REQUEST_TIMED_OUT);
            let resp: FindCoordinatorResponse = decode_response(ApiKey::FindCoordinator, v, &bytes);
            assert_eq!((resp.error_code, resp.node_id.0), (error::REQUEST_TIMED_OUT, -1), "v{v}");
        }
        let req =
            FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes("a"), str_bytes("b")]);
        let bytes = error_response(&svc, frame(ApiKey::FindCoordinator, 4, &req), error::REQUEST_TIMED_OUT);
        let resp: FindCoordinatorResponse = decode_response(ApiKey::FindCoordinator, 4, &bytes);
        let codes: Vec<(&str, i16)> =
            resp.coordinators.iter().map(|c| (c.key.as_str(), c.error_code)).collect();
        assert_eq!(codes, vec![("a", error::REQUEST_TIMED_OUT), ("b", error::REQUEST_TIMED_OUT)]);
    }
}
