//! DeleteAcls v1–v3: remove the tenant's ACL bindings matching each filter; per filter, in
//! order, the bindings it removed (each with error 0).
//!
//! A filter with an UNKNOWN (or unknown) code is INVALID_REQUEST for that filter, as Kafka's
//! controller answers it (`validateFilter`), and does not reach the host. The host answers
//! SECURITY_DISABLED without an authorizer and CLUSTER_AUTHORIZATION_FAILED without ALTER on
//! the cluster, for every filter; as Kafka checks those first, an invalid filter then gets the
//! same error. v0 (literal patterns only) was removed in Kafka 4.0 and is not served.

use crate::acl_common::{filter_problem, outcomes};
use crate::context::{ApiResult, Ctx};
use crate::group_common::opt_string;
use crate::metadata::str_bytes;
use guise_guest_sdk::{AclBinding, AclFilter, ErrorCode, Services, error};
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DeleteAclsRequest = cx.decode()?;
    let filters: Vec<AclFilter> = req
        .filters
        .iter()
        .map(|f| AclFilter {
            resource_type: f.resource_type_filter,
            resource_name: opt_string(&f.resource_name_filter),
            pattern_type: f.pattern_type_filter,
            principal: opt_string(&f.principal_filter),
            host: opt_string(&f.host_filter),
            operation: f.operation,
            permission_type: f.permission_type,
        })
        .collect();
    let outcomes = outcomes(&filters, filter_problem, |valid| cx.svc.delete_acls(valid));
    let results = outcomes
        .into_iter()
        .map(|o| match o {
            Ok(bindings) => DeleteAclsFilterResult::default()
                .with_error_code(error::NONE)
                .with_error_message(None)
                .with_matching_acls(bindings.into_iter().map(matching).collect()),
            Err((code, why)) => DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(why)))
                .with_matching_acls(vec![]),
        })
        .collect();
    cx.respond(&DeleteAclsResponse::default().with_filter_results(results))
}

fn matching(b: AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_error_code(error::NONE)
        .with_error_message(None)
        .with_resource_type(b.resource_type)
        .with_resource_name(str_bytes(b.resource_name))
        .with_pattern_type(b.pattern_type)
        .with_principal(str_bytes(b.principal))
        .with_host(str_bytes(b.host))
        .with_operation(b.operation)
        .with_permission_type(b.permission_type)
}

/// The response to this request with `code` for every filter.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DeleteAclsRequest = cx.decode()?;
    let results = req
        .filters
        .iter()
        .map(|_| DeleteAclsFilterResult::default().with_error_code(code).with_error_message(None))
        .collect();
    cx.respond(&DeleteAclsResponse::default().with_filter_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{acl_binding, call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;

    fn any() -> DeleteAclsFilter {
        DeleteAclsFilter::default()
            .with_resource_type_filter(acl::ANY)
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(acl::ANY)
            .with_operation(acl::ANY)
            .with_permission_type(acl::ANY)
    }

    fn delete(svc: &StubServices, v: i16, filters: Vec<DeleteAclsFilter>) -> DeleteAclsResponse {
        call(svc, ApiKey::DeleteAcls, v, &DeleteAclsRequest::default().with_filters(filters))
    }

    fn with_acls() -> StubServices {
        let svc = StubServices::new();
        svc.enable_acls();
        let created = svc.create_acls(&[
            acl_binding(acl::TOPIC, "a", acl::LITERAL, "User:alice", acl::READ),
            acl_binding(acl::TOPIC, "b", acl::PREFIXED, "User:bob", acl::WRITE),
            acl_binding(acl::GROUP, "g", acl::LITERAL, "User:alice", acl::READ),
        ]);
        assert!(created.iter().all(Result::is_ok));
        svc
    }

    #[test]
    fn each_filter_reports_what_it_deleted() {
        for v in 1..=3 {
            let svc = with_acls();
            let resp = delete(
                &svc,
                v,
                vec![
                    any()
                        .with_resource_type_filter(acl::TOPIC)
                        .with_principal_filter(Some(str_bytes("User:alice"))),
                    any().with_resource_name_filter(Some(str_bytes("nothing"))),
                    any().with_resource_type_filter(acl::TOPIC),
                ],
            );
            assert_eq!(resp.filter_results.len(), 3, "v{v}");
            assert!(resp.filter_results.iter().all(|r| r.error_code == 0 && r.error_message.is_none()));
            let names: Vec<Vec<(&str, i8, &str, i8)>> = resp
                .filter_results
                .iter()
                .map(|r| {
                    r.matching_acls
                        .iter()
                        .map(|m| {
                            assert_eq!((m.error_code, m.host.as_str()), (0, "*"));
                            assert_eq!(m.permission_type, acl::ALLOW);
                            (m.resource_name.as_str(), m.pattern_type, m.principal.as_str(), m.operation)
                        })
                        .collect()
                })
                .collect();
            assert_eq!(
                names,
                [
                    vec![("a", acl::LITERAL, "User:alice", acl::READ)],
                    vec![],
                    vec![("b", acl::PREFIXED, "User:bob", acl::WRITE)],
                ],
                "v{v}"
            );
            let left = svc.acls.borrow().as_ref().unwrap().bindings.clone();
            assert_eq!(left, [acl_binding(acl::GROUP, "g", acl::LITERAL, "User:alice", acl::READ)]);
        }
    }

    #[test]
    fn unknown_codes_refuse_that_filter_only() {
        let svc = with_acls();
        let resp = delete(
            &svc,
            3,
            vec![
                any().with_pattern_type_filter(0),
                any().with_permission_type(0),
                any().with_resource_type_filter(acl::GROUP),
            ],
        );
        let got: Vec<(ErrorCode, Option<&str>, usize)> = resp
            .filter_results
            .iter()
            .map(|r| (r.error_code, r.error_message.as_deref(), r.matching_acls.len()))
            .collect();
        assert_eq!(
            got,
            [
                (error::INVALID_REQUEST, Some("Unknown patternFilter."), 0),
                (error::INVALID_REQUEST, Some("Unknown entryFilter."), 0),
                (error::NONE, None, 1),
            ]
        );
    }

    #[test]
    fn without_an_authorizer_security_is_disabled() {
        let svc = StubServices::new();
        let resp = delete(&svc, 2, vec![any(), any().with_operation(0)]);
        assert!(resp.filter_results.iter().all(|r| r.error_code == error::SECURITY_DISABLED));
    }

    #[test]
    fn without_cluster_alter_the_host_refuses() {
        let svc = with_acls();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        let resp = delete(&svc, 3, vec![any()]);
        assert_eq!(resp.filter_results[0].error_code, error::CLUSTER_AUTHORIZATION_FAILED);
        assert_eq!(svc.acls.borrow().as_ref().unwrap().bindings.len(), 3);
    }

    #[test]
    fn error_response_covers_every_filter() {
        let svc = StubServices::new();
        let req = DeleteAclsRequest::default().with_filters(vec![any(), any()]);
        let bytes = error_response(&svc, frame(ApiKey::DeleteAcls, 3, &req), error::UNKNOWN_SERVER_ERROR);
        let resp: DeleteAclsResponse = decode_response(ApiKey::DeleteAcls, 3, &bytes);
        assert_eq!(resp.filter_results.len(), 2);
        assert!(resp.filter_results.iter().all(|r| r.error_code == error::UNKNOWN_SERVER_ERROR));
    }
}
