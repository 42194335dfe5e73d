//! ApiVersions v0–v4: advertise exactly the implemented table. A version we do not know gets a v0
//! response with UNSUPPORTED_VERSION and our ApiVersions range (KIP-511), so the client retries.
//! The response header is always v0, even for flexible versions.
//!
//! Features (KIP-584, v3+): the one Guise has is `transaction.version`, supported 0–2 and
//! finalized at the host's `transaction_version` (1 or 2). Kafka 4 clients use transaction
//! version 2 (KIP-890 part 2: no AddPartitionsToTxn or AddOffsetsToTxn, EndTxn v5 bumping the
//! epoch) when it is finalized at 2, else version 1 (KIP-98 and KIP-447); both are served,
//! whichever is finalized, by request version, as Kafka does. As Kafka's
//! `ApiVersionsResponse`: a feature whose range starts at 0 is not listed as supported to v3
//! requests (KAFKA-17492), and a level-0 feature is not listed as finalized. The finalized
//! features' epoch is the level itself: it rises when an operator raises the level (clients
//! take features only from a newer epoch), and a lowered level leaves connected clients on
//! version 2, which stays served.

use crate::apis::{self, SUPPORTED};
use crate::context::{API_VERSIONS_KEY, ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Outcome, Segment, Services, error};
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::protocol::StrBytes;

/// The feature KIP-890 part 2 is enabled by.
const TRANSACTION_VERSION: &str = "transaction.version";
/// The highest `transaction.version` served.
const MAX_TRANSACTION_VERSION: i16 = 2;

fn response(code: ErrorCode, only_self: bool) -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .filter(|(k, _, _)| !only_self || *k == API_VERSIONS_KEY)
        .map(|&(k, min, max)| {
            ApiVersion::default().with_api_key(k).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(code).with_api_keys(keys)
}

/// The features of a v3+ response: `transaction.version` supported (from v4) and finalized at
/// `level`.
fn with_features(resp: ApiVersionsResponse, version: i16, level: u8) -> ApiVersionsResponse {
    let name = || StrBytes::from_static_str(TRANSACTION_VERSION);
    let supported = if version >= 4 {
        vec![
            SupportedFeatureKey::default()
                .with_name(name())
                .with_min_version(0)
                .with_max_version(MAX_TRANSACTION_VERSION),
        ]
    } else {
        Vec::new()
    };
    let level = i16::from(level).min(MAX_TRANSACTION_VERSION);
    let finalized = if level > 0 {
        vec![
            FinalizedFeatureKey::default()
                .with_name(name())
                .with_min_version_level(level)
                .with_max_version_level(level),
        ]
    } else {
        Vec::new()
    };
    resp.with_supported_features(supported)
        .with_finalized_features_epoch(if level > 0 { i64::from(level) } else { -1 })
        .with_finalized_features(finalized)
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let (min, max) = apis::range(API_VERSIONS_KEY).expect("ApiVersions is in the table");
    if cx.version < min || cx.version > max {
        let body = response(error::UNSUPPORTED_VERSION, true);
        let bytes = cx.encode_with_header_version(&body, 0, 0)?;
        return Ok(Outcome::Respond(Some(vec![Segment::Bytes(bytes)])));
    }
    // The request body (client software name/version from v3) is informational; decode it to
    // reject malformed frames.
    let _req: kafka_protocol::messages::ApiVersionsRequest = cx.decode()?;
    let resp = response(error::NONE, false);
    let resp = if cx.version >= 3 {
        with_features(resp, cx.version, cx.svc.settings().transaction_version)
    } else {
        resp
    };
    cx.respond(&resp)
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    cx.respond(&response(code, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, raw_frame, run};
    use bytes::BytesMut;
    use guise_guest_sdk::stub::{StubServices, flatten};
    use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn request() -> ApiVersionsRequest {
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("guise-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"))
    }

    fn ranges(resp: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
        resp.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect()
    }

    fn respond_bytes(out: Outcome<guise_guest_sdk::stub::StubBuffer>) -> Vec<u8> {
        let Outcome::Respond(Some(segments)) = out else { panic!("expected a response, got {out:?}") };
        flatten(&segments)
    }

    #[test]
    fn every_version_lists_exactly_the_table() {
        let svc = StubServices::new();
        for v in 0..=4 {
            let resp: ApiVersionsResponse = call(&svc, ApiKey::ApiVersions, v, &request());
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            assert_eq!(ranges(&resp), SUPPORTED, "v{v}");
            assert_eq!(resp.throttle_time_ms, 0, "v{v}");
        }
        // The table holds ApiVersions itself, at 0..=4.
        assert!(SUPPORTED.contains(&(API_VERSIONS_KEY, 0, 4)));
    }

    #[test]
    fn transaction_version_is_finalized_at_the_hosts_level() {
        let mut svc = StubServices::new();
        for level in [1u8, 2] {
            svc.settings.transaction_version = level;
            for v in 3..=4 {
                let resp: ApiVersionsResponse = call(&svc, ApiKey::ApiVersions, v, &request());
                let finalized: Vec<(String, i16, i16)> = resp
                    .finalized_features
                    .iter()
                    .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
                    .collect();
                let level = i16::from(level);
                assert_eq!(finalized, [("transaction.version".to_string(), level, level)], "v{v}");
                assert_eq!(resp.finalized_features_epoch, i64::from(level), "v{v}");
                let supported: Vec<(String, i16, i16)> = resp
                    .supported_features
                    .iter()
                    .map(|f| (f.name.to_string(), f.min_version, f.max_version))
                    .collect();
                // As Kafka: a feature whose range starts at 0 is hidden from v3 requests.
                let want = if v >= 4 { vec![("transaction.version".to_string(), 0, 2)] } else { vec![] };
                assert_eq!(supported, want, "v{v}");
                // Whatever the level, the versions of both transaction protocols are served.
                for (key, max) in [(0, 12), (24, 3), (25, 4), (26, 5), (28, 5)] {
                    assert!(ranges(&resp).iter().any(|&(k, _, m)| k == key && m == max), "v{v}: key {key}");
                }
            }
        }
        // v0-v2 have no features.
        let resp: ApiVersionsResponse = call(&svc, ApiKey::ApiVersions, 2, &request());
        assert!(resp.finalized_features.is_empty());
    }

    #[test]
    fn response_header_is_v0_even_for_flexible_versions() {
        let svc = StubServices::new();
        for v in [3, 4] {
            let bytes = respond_bytes(run(&svc, crate::test_util::frame(ApiKey::ApiVersions, v, &request())));
            // Correlation id, then straight away the body: no tagged-fields byte of a v1 header.
            assert_eq!(&bytes[..4], &42i32.to_be_bytes(), "v{v}");
            assert_eq!(&bytes[4..6], &0i16.to_be_bytes(), "v{v}: error code");
            assert_eq!(bytes[6] as usize, SUPPORTED.len() + 1, "v{v}: compact array length");
            let mut body = bytes::Bytes::copy_from_slice(&bytes[4..]);
            let resp = ApiVersionsResponse::decode(&mut body, v).unwrap();
            assert!(body.is_empty(), "v{v}: trailing bytes");
            assert_eq!(ranges(&resp), SUPPORTED, "v{v}");
        }
    }

    #[test]
    fn unknown_version_gets_v0_response_with_our_range() {
        let svc = StubServices::new();
        let mut body = BytesMut::new();
        request().encode(&mut body, 4).unwrap();
        // A v5 request: flexible header (v2), a body as v4 would write it.
        let frame = raw_frame(API_VERSIONS_KEY, 5, 2, &body);
        let bytes = respond_bytes(run(&svc, frame));
        let resp: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 0, &bytes);
        assert_eq!(resp.error_code, error::UNSUPPORTED_VERSION);
        assert_eq!(ranges(&resp), [(API_VERSIONS_KEY, 0, 4)]);
        // Even a body the server cannot parse gets that answer.
        let bytes = respond_bytes(run(&svc, raw_frame(API_VERSIONS_KEY, 9, 2, &[0xff, 0xff, 0xff])));
        let resp: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 0, &bytes);
        assert_eq!(resp.error_code, error::UNSUPPORTED_VERSION);
    }

    #[test]
    fn unknown_key_or_unsupported_version_closes() {
        let svc = StubServices::new();
        let out = run(&svc, raw_frame(999, 0, 1, &[]));
        assert!(matches!(out, Outcome::Close(_)), "{out:?}");
        // Produce v2 is below the supported range (v3+).
        let out = run(&svc, raw_frame(0, 2, 1, &[0, 1, 0, 0, 0x75, 0x30, 0, 0, 0, 0]));
        assert!(matches!(out, Outcome::Close(_)), "{out:?}");
        // A frame too short for a header.
        let out = run(&svc, bytes::Bytes::from_static(&[0, 18, 0]));
        assert!(matches!(out, Outcome::Close(_)), "{out:?}");
        assert!(!svc.logs.borrow().is_empty(), "closing is logged");
    }

    #[test]
    fn malformed_body_closes() {
        let svc = StubServices::new();
        // v3 needs two compact strings and a tagged-field count; give it a truncated one.
        let out = run(&svc, raw_frame(API_VERSIONS_KEY, 3, 2, &[5, b'a']));
        assert!(matches!(out, Outcome::Close(_)), "{out:?}");
    }

    #[test]
    fn error_response_carries_the_code_and_the_table() {
        let svc = StubServices::new();
        let bytes = crate::test_util::frame(ApiKey::ApiVersions, 3, &request());
        let raw = crate::test_util::error_response(&svc, bytes, error::UNKNOWN_SERVER_ERROR);
        let resp: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 3, &raw);
        assert_eq!(resp.error_code, error::UNKNOWN_SERVER_ERROR);
        assert_eq!(ranges(&resp), SUPPORTED);
    }
}
