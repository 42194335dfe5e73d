//! DescribeAcls v1–v3: the tenant's ACL bindings matching a filter, from the host's authorizer,
//! grouped by resource pattern (type, name, pattern type) as Kafka's broker groups them.
//!
//! A filter with an UNKNOWN (or unknown) code is INVALID_REQUEST. The host answers
//! SECURITY_DISABLED when it runs no authorizer and CLUSTER_AUTHORIZATION_FAILED without
//! DESCRIBE on the cluster; both are the response's top-level error, with the host's message.
//! v0 (literal patterns only) was removed in Kafka 4.0 and is not served.

use crate::acl_common::filter_problem;
use crate::context::{ApiResult, Ctx};
use crate::group_common::opt_string;
use crate::metadata::str_bytes;
use guise_guest_sdk::{AclBinding, AclFilter, ErrorCode, Services, error};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeAclsRequest = cx.decode()?;
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        resource_name: opt_string(&req.resource_name_filter),
        pattern_type: req.pattern_type_filter,
        principal: opt_string(&req.principal_filter),
        host: opt_string(&req.host_filter),
        operation: req.operation,
        permission_type: req.permission_type,
    };
    let found = match filter_problem(&filter) {
        Some(why) => Err((error::INVALID_REQUEST, why)),
        None => cx.svc.describe_acls(&filter),
    };
    let resp = match found {
        Ok(bindings) => DescribeAclsResponse::default()
            .with_error_code(error::NONE)
            .with_error_message(None)
            .with_resources(by_resource(bindings)),
        Err((code, why)) => DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(why)))
            .with_resources(vec![]),
    };
    cx.respond(&resp)
}

/// The bindings grouped by resource pattern, in order of first appearance, each entry once.
fn by_resource(bindings: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in bindings {
        let entry = AclDescription::default()
            .with_principal(str_bytes(b.principal))
            .with_host(str_bytes(b.host))
            .with_operation(b.operation)
            .with_permission_type(b.permission_type);
        let same = |r: &&mut DescribeAclsResource| {
            r.resource_type == b.resource_type
                && r.pattern_type == b.pattern_type
                && r.resource_name.as_str() == b.resource_name
        };
        match resources.iter_mut().find(same) {
            Some(r) if r.acls.contains(&entry) => {}
            Some(r) => r.acls.push(entry),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(str_bytes(b.resource_name))
                    .with_pattern_type(b.pattern_type)
                    .with_acls(vec![entry]),
            ),
        }
    }
    resources
}

/// The request failed as a whole: the top-level error, no resources.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _: DescribeAclsRequest = cx.decode()?;
    cx.respond(&DescribeAclsResponse::default().with_error_code(code).with_error_message(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{acl_binding as binding, call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    /// (resource type, name, pattern type, [(principal, operation)]).
    type Resource<'a> = (i8, &'a str, i8, Vec<(String, i8)>);

    fn any() -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_type_filter(acl::ANY)
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(acl::ANY)
            .with_operation(acl::ANY)
            .with_permission_type(acl::ANY)
    }

    fn describe(svc: &StubServices, v: i16, req: &DescribeAclsRequest) -> DescribeAclsResponse {
        call(svc, ApiKey::DescribeAcls, v, req)
    }

    #[test]
    fn without_an_authorizer_security_is_disabled() {
        let svc = StubServices::new();
        for v in 1..=3 {
            let resp = describe(&svc, v, &any());
            assert_eq!(resp.error_code, error::SECURITY_DISABLED, "v{v}");
            assert!(resp.error_message.is_some(), "v{v}");
            assert!(resp.resources.is_empty(), "v{v}");
        }
    }

    #[test]
    fn bindings_are_grouped_by_resource_pattern() {
        let svc = StubServices::new();
        svc.enable_acls();
        let created = svc.create_acls(&[
            binding(acl::TOPIC, "t", acl::LITERAL, "User:alice", acl::READ),
            binding(acl::GROUP, "g", acl::LITERAL, "User:alice", acl::READ),
            binding(acl::TOPIC, "t", acl::LITERAL, "User:bob", acl::WRITE),
            binding(acl::TOPIC, "t", acl::PREFIXED, "User:bob", acl::WRITE),
        ]);
        assert!(created.iter().all(Result::is_ok));
        for v in 1..=3 {
            let resp = describe(&svc, v, &any());
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            assert_eq!(resp.error_message, None, "v{v}");
            let got: Vec<Resource<'_>> = resp
                .resources
                .iter()
                .map(|r| {
                    let acls = r.acls.iter().map(|a| (a.principal.to_string(), a.operation)).collect();
                    (r.resource_type, r.resource_name.as_str(), r.pattern_type, acls)
                })
                .collect();
            assert_eq!(
                got,
                [
                    (
                        acl::TOPIC,
                        "t",
                        acl::LITERAL,
                        vec![("User:alice".into(), acl::READ), ("User:bob".into(), acl::WRITE)]
                    ),
                    (acl::GROUP, "g", acl::LITERAL, vec![("User:alice".into(), acl::READ)]),
                    (acl::TOPIC, "t", acl::PREFIXED, vec![("User:bob".into(), acl::WRITE)]),
                ],
                "v{v}"
            );
            assert!(resp.resources[0].acls.iter().all(|a| a.host.as_str() == "*"));
            assert!(resp.resources[0].acls.iter().all(|a| a.permission_type == acl::ALLOW));
        }
        // The filter reaches the host.
        let req = any().with_resource_type_filter(acl::GROUP);
        let resp = describe(&svc, 3, &req);
        assert_eq!(resp.resources.len(), 1);
        assert_eq!(resp.resources[0].resource_name.as_str(), "g");
    }

    #[test]
    fn unknown_codes_are_invalid() {
        let svc = StubServices::new();
        svc.enable_acls();
        for req in [
            any().with_resource_type_filter(0),
            any().with_pattern_type_filter(0),
            any().with_operation(0),
            any().with_permission_type(0),
            any().with_operation(99),
        ] {
            let resp = describe(&svc, 3, &req);
            assert_eq!(resp.error_code, error::INVALID_REQUEST, "{req:?}");
            assert!(resp.error_message.is_some());
        }
    }

    #[test]
    fn without_cluster_describe_the_host_refuses() {
        let svc = StubServices::new();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE);
        let resp = describe(&svc, 2, &any());
        assert_eq!(resp.error_code, error::CLUSTER_AUTHORIZATION_FAILED);
        assert!(resp.resources.is_empty());
    }

    #[test]
    fn error_response_is_top_level() {
        let svc = StubServices::new();
        let bytes = error_response(&svc, frame(ApiKey::DescribeAcls, 3, &any()), error::UNKNOWN_SERVER_ERROR);
        let resp: DescribeAclsResponse = decode_response(ApiKey::DescribeAcls, 3, &bytes);
        assert_eq!(resp.error_code, error::UNKNOWN_SERVER_ERROR);
    }
}
