//! IncrementalAlterConfigs v0–v1: change single configs of a topic — SET, DELETE (back to the
//! default), APPEND and SUBTRACT (items of a list config such as cleanup.policy) — leaving the
//! others as they are. The checks of a resource are AlterConfigs' (`alter_configs`).

use crate::alter_configs::alter_all;
use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ConfigOp, ErrorCode, Services, error};
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

/// Kafka's AlterConfigOp.OpType codes.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn op(c: &AlterableConfig) -> Result<(String, ConfigOp), (ErrorCode, String)> {
    let value = || {
        c.value
            .as_ref()
            .map(|v| v.to_string())
            .ok_or_else(|| (error::INVALID_REQUEST, format!("Null value not supported for : {}", c.name)))
    };
    let op = match c.config_operation {
        SET => ConfigOp::Set(value()?),
        DELETE => ConfigOp::Delete,
        APPEND => ConfigOp::Append(value()?),
        SUBTRACT => ConfigOp::Subtract(value()?),
        other => {
            return Err((error::INVALID_REQUEST, format!("Unknown config operation {other} for {}", c.name)));
        }
    };
    Ok((c.name.to_string(), op))
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: IncrementalAlterConfigsRequest = cx.decode()?;
    let wanted = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.as_str(), r.configs.iter().map(op).collect()));
    let outcomes = alter_all(cx.svc, wanted.collect(), true, req.validate_only);
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
    cx.respond(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: IncrementalAlterConfigsRequest = cx.decode()?;
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
    cx.respond(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe_configs::RESOURCE_TOPIC;
    use crate::metadata::str_bytes;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;

    fn config(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(str_bytes(name))
            .with_config_operation(operation)
            .with_value(value.map(str_bytes))
    }

    #[test]
    fn sets_and_deletes_single_configs() {
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[("segment.bytes".into(), "2000000".into())], false).unwrap();
        for v in 0..=1 {
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes("t"))
                    .with_configs(vec![config("max.message.bytes", SET, Some("1000"))]),
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes("missing"))
                    .with_configs(vec![config("max.message.bytes", DELETE, None)]),
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes("t"))
                    .with_configs(vec![config("x", 9, Some("1"))])
                    .with_resource_type(RESOURCE_TOPIC),
            ]);
            let resp: IncrementalAlterConfigsResponse = call(&svc, ApiKey::IncrementalAlterConfigs, v, &req);
            let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
            // "t" twice: both refused as duplicates.
            assert_eq!(
                codes,
                [error::INVALID_REQUEST, error::UNKNOWN_TOPIC_OR_PARTITION, error::INVALID_REQUEST]
            );
        }
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes("t"))
                .with_configs(vec![config("max.message.bytes", SET, Some("1000"))]),
        ]);
        let resp: IncrementalAlterConfigsResponse = call(&svc, ApiKey::IncrementalAlterConfigs, 1, &req);
        assert_eq!(resp.responses[0].error_code, error::NONE);
        let configs = svc.topic_configs("t").unwrap();
        // Incremental: segment.bytes keeps its override.
        assert!(!configs.iter().find(|c| c.name == "segment.bytes").unwrap().is_default);
        let max = configs.iter().find(|c| c.name == "max.message.bytes").unwrap();
        assert_eq!(max.value.as_deref(), Some("1000"));
    }
}
