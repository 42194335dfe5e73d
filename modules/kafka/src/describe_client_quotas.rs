//! DescribeClientQuotas v0–1 (KIP-546): the client quotas of the tenant's entities that match a
//! filter, from the host (which checks the filter as Kafka's broker does and needs
//! DESCRIBE_CONFIGS on the cluster). A refused request carries its error and message and no
//! entries.

use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use crate::metadata::str_bytes;
use guise_guest_sdk::quotas::{Entry, FilterPart};
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeClientQuotasRequest = cx.decode()?;
    let components: Vec<FilterPart> = req
        .components
        .iter()
        .map(|c| FilterPart {
            entity_type: string(&c.entity_type),
            match_type: c.match_type,
            name: c._match.as_ref().map(string),
        })
        .collect();
    let resp = match cx.svc.describe_quotas(&components, req.strict) {
        Ok(entries) => DescribeClientQuotasResponse::default()
            .with_error_code(error::NONE)
            .with_entries(Some(entries.into_iter().map(entry).collect())),
        Err((code, why)) => DescribeClientQuotasResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(why)))
            .with_entries(None),
    };
    cx.respond(&resp)
}

fn entry(e: Entry) -> EntryData {
    EntryData::default()
        .with_entity(
            e.entity
                .into_iter()
                .map(|p| {
                    EntityData::default()
                        .with_entity_type(str_bytes(p.entity_type))
                        .with_entity_name(p.name.map(str_bytes))
                })
                .collect(),
        )
        .with_values(
            e.values
                .into_iter()
                .map(|(k, v)| ValueData::default().with_key(str_bytes(k)).with_value(v))
                .collect(),
        )
}

/// The request failed as a whole: its error, no entries.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _: DescribeClientQuotasRequest = cx.decode()?;
    cx.respond(&DescribeClientQuotasResponse::default().with_error_code(code).with_entries(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::quotas::{EntityPart, PRODUCER_BYTE_RATE, USER};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    fn describe(
        svc: &StubServices,
        v: i16,
        components: Vec<ComponentData>,
        strict: bool,
    ) -> DescribeClientQuotasResponse {
        let req = DescribeClientQuotasRequest::default().with_components(components).with_strict(strict);
        call(svc, ApiKey::DescribeClientQuotas, v, &req)
    }

    fn user(name: &str) -> ComponentData {
        ComponentData::default()
            .with_entity_type(str_bytes(USER))
            .with_match_type(0)
            .with_match(Some(str_bytes(name)))
    }

    #[test]
    fn quotas_are_described_by_filter() {
        let svc = StubServices::default();
        let entity = vec![EntityPart { entity_type: USER.into(), name: Some("alice".into()) }];
        svc.quotas.borrow_mut().insert(
            guise_guest_sdk::quotas::Entity::parse(&entity).unwrap(),
            [(PRODUCER_BYTE_RATE.to_string(), 1024.0)].into(),
        );
        svc.throttle_ms.set(250);
        for v in 0..=1 {
            let resp = describe(&svc, v, vec![user("alice")], false);
            assert_eq!((resp.error_code, resp.throttle_time_ms), (error::NONE, 250), "v{v}");
            let entries = resp.entries.unwrap();
            assert_eq!(entries.len(), 1);
            assert_eq!(string(&entries[0].entity[0].entity_type), USER);
            assert_eq!(entries[0].entity[0].entity_name.as_ref().map(string).as_deref(), Some("alice"));
            assert_eq!(
                (string(&entries[0].values[0].key), entries[0].values[0].value),
                (PRODUCER_BYTE_RATE.into(), 1024.0)
            );
            assert!(describe(&svc, v, vec![user("bob")], false).entries.unwrap().is_empty());
            let bad = describe(&svc, v, vec![user("a"), user("b")], false);
            assert_eq!(bad.error_code, error::INVALID_REQUEST);
            assert!(bad.entries.is_none() && bad.error_message.is_some());
        }
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE_CONFIGS);
        assert_eq!(describe(&svc, 1, vec![], false).error_code, error::CLUSTER_AUTHORIZATION_FAILED);
    }

    #[test]
    fn the_error_response_has_no_entries() {
        let req = DescribeClientQuotasRequest::default();
        let bytes = error_response(
            &StubServices::default(),
            frame(ApiKey::DescribeClientQuotas, 1, &req),
            error::REQUEST_TIMED_OUT,
        );
        let resp: DescribeClientQuotasResponse = decode_response(ApiKey::DescribeClientQuotas, 1, &bytes);
        assert_eq!(resp.error_code, error::REQUEST_TIMED_OUT);
        assert!(resp.entries.is_none());
    }
}
