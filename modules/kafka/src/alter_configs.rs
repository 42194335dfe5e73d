//! AlterConfigs v0–v2: replace every config override of a topic with the ones given (legacy
//! semantics: a config not named goes back to its default). Validation is the host's, the same
//! as at topic creation, and its reason is the error message. IncrementalAlterConfigs
//! (`incremental_alter_configs`) shares the resource checks below.
//!
//! Broker configs are static on a Guise host (its configuration file), so a BROKER resource is
//! INVALID_CONFIG (CLUSTER_AUTHORIZATION_FAILED first without ALTER_CONFIGS on the cluster, as
//! Kafka checks); other resource types are INVALID_REQUEST. A topic's ALTER_CONFIGS is the
//! host's to check.

use crate::acl_common::authorization_message;
use crate::context::{ApiResult, Ctx};
use crate::create_topics::{duplicates, host_error_message};
use crate::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::metadata::str_bytes;
use guise_guest_sdk::{ConfigOp, ErrorCode, Services, acl, error};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: AlterConfigsRequest = cx.decode()?;
    let wanted = req.resources.iter().map(|r| {
        let ops = r
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(v) => Ok((c.name.to_string(), ConfigOp::Set(v.to_string()))),
                None => Err((error::INVALID_REQUEST, format!("Null value not supported for : {}", c.name))),
            })
            .collect();
        (r.resource_type, r.resource_name.as_str(), ops)
    });
    let outcomes = alter_all(cx.svc, wanted.collect(), false, req.validate_only);
    let responses = req
        .resources
        .iter()
        .zip(outcomes)
        .map(|(r, (code, message))| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    cx.respond(&AlterConfigsResponse::default().with_responses(responses))
}

/// The changes a request asks for: per resource its type, its name, and its ops (or why they
/// are refused before the host is asked).
pub(crate) type Wanted<'a> = (i8, &'a str, Result<Vec<(String, ConfigOp)>, (ErrorCode, String)>);

/// Apply every resource's change, in order: (error code, error message) per resource. A
/// resource named more than once is refused as a whole, as Kafka does.
pub(crate) fn alter_all<S: Services>(
    svc: &S,
    wanted: Vec<Wanted<'_>>,
    incremental: bool,
    validate_only: bool,
) -> Vec<(ErrorCode, Option<StrBytes>)> {
    let dups = duplicates(wanted.iter().map(|(ty, name, _)| (*ty, *name)));
    wanted
        .into_iter()
        .map(|(ty, name, ops)| {
            let outcome = if dups.contains(&(ty, name)) {
                Err((error::INVALID_REQUEST, "Duplicate resource in request.".to_string()))
            } else {
                ops.and_then(|ops| alter(svc, ty, name, &ops, incremental, validate_only))
            };
            match outcome {
                Ok(()) => (error::NONE, None),
                Err((code, why)) => (code, Some(str_bytes(why))),
            }
        })
        .collect()
}

/// Alter one resource: a topic through the host; anything else refused.
fn alter<S: Services>(
    svc: &S,
    resource_type: i8,
    name: &str,
    ops: &[(String, ConfigOp)],
    incremental: bool,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    match resource_type {
        RESOURCE_TOPIC => {
            let keys: Vec<&str> = ops.iter().map(|(k, _)| k.as_str()).collect();
            if !duplicates(keys.iter().copied()).is_empty() {
                return Err((error::INVALID_REQUEST, "Error due to duplicate config keys".into()));
            }
            svc.alter_topic_configs(name, ops, incremental, validate_only).map_err(|(code, why)| {
                let why = if why.is_empty() { host_error_message(code, name) } else { why };
                (code, why)
            })
        }
        RESOURCE_BROKER if !svc.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER_CONFIGS) => {
            let code = error::CLUSTER_AUTHORIZATION_FAILED;
            Err((code, authorization_message(code).to_string()))
        }
        RESOURCE_BROKER => Err((
            error::INVALID_CONFIG,
            "Broker configs are static on a Guise host: set them in its configuration and restart it.".into(),
        )),
        other => Err((
            error::INVALID_REQUEST,
            format!("Unsupported resource type {other}: only topic configs (2) can be altered here."),
        )),
    }
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: AlterConfigsRequest = cx.decode()?;
    let responses = req
        .resources
        .iter()
        .map(|r| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(None)
        })
        .collect();
    cx.respond(&AlterConfigsResponse::default().with_responses(responses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

    fn resource(ty: i8, name: &str, configs: &[(&str, Option<&str>)]) -> AlterConfigsResource {
        AlterConfigsResource::default()
            .with_resource_type(ty)
            .with_resource_name(str_bytes(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(str_bytes(k.to_string()))
                            .with_value(v.map(str_bytes))
                    })
                    .collect(),
            )
    }

    #[test]
    fn broker_resources_need_cluster_alter_configs() {
        let svc = StubServices::new();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER_CONFIGS);
        let req = AlterConfigsRequest::default().with_resources(vec![resource(4, "0", &[("x", Some("1"))])]);
        let resp: AlterConfigsResponse = call(&svc, ApiKey::AlterConfigs, 2, &req);
        assert_eq!(resp.responses[0].error_code, error::CLUSTER_AUTHORIZATION_FAILED);
        use kafka_protocol::messages::incremental_alter_configs_request as inc;
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(str_bytes("0"))
                .with_configs(vec![
                    inc::AlterableConfig::default().with_name(str_bytes("x")).with_config_operation(1),
                ]),
        ]);
        let resp: IncrementalAlterConfigsResponse = call(&svc, ApiKey::IncrementalAlterConfigs, 1, &req);
        assert_eq!(resp.responses[0].error_code, error::CLUSTER_AUTHORIZATION_FAILED);
        // Allowed, broker configs are still static here.
        let svc = StubServices::new();
        let req = AlterConfigsRequest::default().with_resources(vec![resource(4, "0", &[("x", Some("1"))])]);
        let resp: AlterConfigsResponse = call(&svc, ApiKey::AlterConfigs, 2, &req);
        assert_eq!(resp.responses[0].error_code, error::INVALID_CONFIG);
    }

    #[test]
    fn replaces_a_topics_overrides_and_refuses_what_it_cannot_alter() {
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[("segment.bytes".into(), "2000000".into())], false).unwrap();
        svc.create_topic("u", 1, &[], false).unwrap();
        for v in 0..=2 {
            let req = AlterConfigsRequest::default().with_resources(vec![
                resource(RESOURCE_TOPIC, "t", &[("max.message.bytes", Some("1000"))]),
                resource(RESOURCE_TOPIC, "missing", &[("max.message.bytes", Some("1000"))]),
                resource(RESOURCE_TOPIC, "t2", &[]),
                resource(RESOURCE_TOPIC, "t2", &[]),
                resource(RESOURCE_BROKER, "0", &[("log.retention.ms", Some("1"))]),
                resource(8, "root", &[]),
                resource(RESOURCE_TOPIC, "u", &[("max.message.bytes", None)]),
            ]);
            let resp: AlterConfigsResponse = call(&svc, ApiKey::AlterConfigs, v, &req);
            let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
            assert_eq!(
                codes,
                [
                    error::NONE,
                    error::UNKNOWN_TOPIC_OR_PARTITION,
                    error::INVALID_REQUEST,
                    error::INVALID_REQUEST,
                    error::INVALID_CONFIG,
                    error::INVALID_REQUEST,
                    error::INVALID_REQUEST
                ],
                "v{v}"
            );
        }
        // Replaced: segment.bytes is back to its default.
        let configs = svc.topic_configs("t").unwrap();
        let seg = configs.iter().find(|c| c.name == "segment.bytes").unwrap();
        assert!(seg.is_default);
        let max = configs.iter().find(|c| c.name == "max.message.bytes").unwrap();
        assert_eq!(max.value.as_deref(), Some("1000"));
    }
}
