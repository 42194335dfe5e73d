//! AlterClientQuotas v0–1 (KIP-546): set or remove the client quotas of the tenant's users and
//! client ids. The host checks each entry as Kafka's controller does (entity types, keys, whole
//! byte rates), needs ALTER_CONFIGS on the cluster, and applies an entry's changes together or
//! not at all; `validate_only` checks without changing anything. One result per entry, with
//! its entity as the request named it.

use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use crate::metadata::str_bytes;
use guise_guest_sdk::quotas::{Alteration, EntityPart, Op};
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: AlterClientQuotasRequest = cx.decode()?;
    let alterations: Vec<Alteration> = req
        .entries
        .iter()
        .map(|e| Alteration {
            entity: e
                .entity
                .iter()
                .map(|p| EntityPart {
                    entity_type: string(&p.entity_type),
                    name: p.entity_name.as_ref().map(string),
                })
                .collect(),
            ops: e.ops.iter().map(|o| Op { key: string(&o.key), value: o.value, remove: o.remove }).collect(),
        })
        .collect();
    let results = cx.svc.alter_quotas(&alterations, req.validate_only);
    let entries = req
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (code, message) = match results.get(i) {
                Some(Ok(())) => (error::NONE, None),
                Some(Err((code, why))) => (*code, Some(str_bytes(why.as_str()))),
                None => (error::UNKNOWN_SERVER_ERROR, Some(str_bytes("no result from the host"))),
            };
            entry(&e.entity, code, message)
        })
        .collect();
    cx.respond(&AlterClientQuotasResponse::default().with_entries(entries))
}

fn entry(
    entity: &[kafka_protocol::messages::alter_client_quotas_request::EntityData],
    code: ErrorCode,
    message: Option<kafka_protocol::protocol::StrBytes>,
) -> EntryData {
    EntryData::default().with_error_code(code).with_error_message(message).with_entity(
        entity
            .iter()
            .map(|p| {
                EntityData::default()
                    .with_entity_type(p.entity_type.clone())
                    .with_entity_name(p.entity_name.clone())
            })
            .collect(),
    )
}

/// `code` for every entry.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: AlterClientQuotasRequest = cx.decode()?;
    let entries = req.entries.iter().map(|e| entry(&e.entity, code, None)).collect();
    cx.respond(&AlterClientQuotasResponse::default().with_entries(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::quotas::{CLIENT_ID, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, USER};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::alter_client_quotas_request::{self as req, OpData};

    fn entry(parts: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> req::EntryData {
        req::EntryData::default()
            .with_entity(
                parts
                    .iter()
                    .map(|(t, n)| {
                        req::EntityData::default()
                            .with_entity_type(str_bytes(*t))
                            .with_entity_name(n.map(str_bytes))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, v, r)| OpData::default().with_key(str_bytes(*k)).with_value(*v).with_remove(*r))
                    .collect(),
            )
    }

    fn alter(
        svc: &StubServices,
        v: i16,
        entries: Vec<req::EntryData>,
        validate_only: bool,
    ) -> Vec<(i16, bool)> {
        let request =
            AlterClientQuotasRequest::default().with_entries(entries).with_validate_only(validate_only);
        let resp: AlterClientQuotasResponse = call(svc, ApiKey::AlterClientQuotas, v, &request);
        resp.entries.iter().map(|e| (e.error_code, e.error_message.is_some())).collect()
    }

    #[test]
    fn entries_are_applied_or_refused_one_by_one() {
        let svc = StubServices::default();
        for v in 0..=1 {
            svc.quotas.borrow_mut().clear();
            let results = alter(
                &svc,
                v,
                vec![
                    entry(&[(USER, Some("alice"))], &[(PRODUCER_BYTE_RATE, 1024.0, false)]),
                    entry(&[(USER, None), (CLIENT_ID, None)], &[(PRODUCER_BYTE_RATE, 1.5, false)]),
                    entry(&[("group", Some("g"))], &[(REQUEST_PERCENTAGE, 5.0, false)]),
                ],
                false,
            );
            assert_eq!(
                results,
                [(error::NONE, false), (error::INVALID_REQUEST, true), (error::INVALID_REQUEST, true)],
                "v{v}"
            );
            assert_eq!(svc.quotas.borrow().len(), 1);
            alter(&svc, v, vec![entry(&[(USER, Some("bob"))], &[(REQUEST_PERCENTAGE, 5.0, false)])], true);
            assert_eq!(svc.quotas.borrow().len(), 1, "validate_only changes nothing");
        }
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER_CONFIGS);
        let refused =
            alter(&svc, 1, vec![entry(&[(USER, Some("x"))], &[(REQUEST_PERCENTAGE, 5.0, false)])], false);
        assert_eq!(refused, [(error::CLUSTER_AUTHORIZATION_FAILED, true)]);
    }

    #[test]
    fn the_error_response_names_every_entity() {
        let request = AlterClientQuotasRequest::default()
            .with_entries(vec![entry(&[(USER, Some("a"))], &[]), entry(&[(CLIENT_ID, None)], &[])]);
        let bytes = error_response(
            &StubServices::default(),
            frame(ApiKey::AlterClientQuotas, 0, &request),
            error::REQUEST_TIMED_OUT,
        );
        let resp: AlterClientQuotasResponse = decode_response(ApiKey::AlterClientQuotas, 0, &bytes);
        assert_eq!(resp.entries.len(), 2);
        assert!(resp.entries.iter().all(|e| e.error_code == error::REQUEST_TIMED_OUT));
        assert_eq!(resp.entries[1].entity[0].entity_name, None);
    }
}
