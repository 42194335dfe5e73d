//! CreateAcls v1–v3: add ACL bindings to the tenant's authorizer, one result per creation, in
//! order.
//!
//! Each binding is checked first as Kafka's broker and controller check it (`binding_problem`):
//! known codes, a non-empty resource name ("kafka-cluster" for the cluster), a concrete resource
//! type, a LITERAL or PREFIXED pattern, a concrete operation, ALLOW or DENY and a "type:name"
//! principal; an invalid one is INVALID_REQUEST with Kafka's message and never reaches the host.
//! (Kafka fails to parse a request with an UNKNOWN code and closes the connection; here only
//! that binding is refused.) The host
//! answers SECURITY_DISABLED without an authorizer and CLUSTER_AUTHORIZATION_FAILED without
//! ALTER on the cluster; as Kafka checks those before the bindings, an invalid binding then gets
//! the same error. v0 (literal patterns only) was removed in Kafka 4.0 and is not served.

use crate::acl_common::{binding_problem, outcomes};
use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use crate::metadata::str_bytes;
use guise_guest_sdk::{AclBinding, ErrorCode, Services, error};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: CreateAclsRequest = cx.decode()?;
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: string(&c.resource_name),
            pattern_type: c.resource_pattern_type,
            principal: string(&c.principal),
            host: string(&c.host),
            operation: c.operation,
            permission_type: c.permission_type,
        })
        .collect();
    let outcomes = outcomes(&bindings, binding_problem, |valid| cx.svc.create_acls(valid));
    let results = outcomes
        .into_iter()
        .map(|o| match o {
            Ok(()) => AclCreationResult::default().with_error_code(error::NONE).with_error_message(None),
            Err((code, why)) => {
                AclCreationResult::default().with_error_code(code).with_error_message(Some(str_bytes(why)))
            }
        })
        .collect();
    cx.respond(&CreateAclsResponse::default().with_results(results))
}

/// The response to this request with `code` for every creation.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: CreateAclsRequest = cx.decode()?;
    let results = req
        .creations
        .iter()
        .map(|_| AclCreationResult::default().with_error_code(code).with_error_message(None))
        .collect();
    cx.respond(&CreateAclsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{acl_binding, call, decode_response, error_response, frame};
    use guise_guest_sdk::acl;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::create_acls_request::AclCreation;

    fn creation(b: &AclBinding) -> AclCreation {
        AclCreation::default()
            .with_resource_type(b.resource_type)
            .with_resource_name(str_bytes(b.resource_name.clone()))
            .with_resource_pattern_type(b.pattern_type)
            .with_principal(str_bytes(b.principal.clone()))
            .with_host(str_bytes(b.host.clone()))
            .with_operation(b.operation)
            .with_permission_type(b.permission_type)
    }

    fn create(svc: &StubServices, v: i16, bindings: &[AclBinding]) -> Vec<(ErrorCode, Option<String>)> {
        let req = CreateAclsRequest::default().with_creations(bindings.iter().map(creation).collect());
        let resp: CreateAclsResponse = call(svc, ApiKey::CreateAcls, v, &req);
        resp.results.iter().map(|r| (r.error_code, r.error_message.as_ref().map(|m| m.to_string()))).collect()
    }

    fn alice_reads(topic: &str) -> AclBinding {
        acl_binding(acl::TOPIC, topic, acl::LITERAL, "User:alice", acl::READ)
    }

    #[test]
    fn creates_every_binding_in_order() {
        let svc = StubServices::new();
        svc.enable_acls();
        for v in 1..=3 {
            let prefixed = acl_binding(acl::TOPIC, "logs-", acl::PREFIXED, "User:*", acl::WRITE);
            let cluster = acl_binding(acl::CLUSTER, acl::CLUSTER_NAME, acl::LITERAL, "User:ops", acl::ALTER);
            let got = create(&svc, v, &[alice_reads("t"), prefixed.clone(), cluster.clone()]);
            assert_eq!(got, vec![(error::NONE, None); 3], "v{v}");
            let stored = svc.acls.borrow().as_ref().unwrap().bindings.clone();
            assert_eq!(stored, [alice_reads("t"), prefixed, cluster], "v{v}");
        }
    }

    #[test]
    fn invalid_bindings_are_refused_before_the_host() {
        let svc = StubServices::new();
        svc.enable_acls();
        let b = alice_reads("t");
        let cases = [
            (AclBinding { resource_type: acl::ANY, ..b.clone() }, "Invalid resourceType ANY"),
            (
                AclBinding { resource_type: 0, ..b.clone() },
                "Invalid ACL: resourceType UNKNOWN, patternType LITERAL, operation READ, \
                 permissionType ALLOW (UNKNOWN elements)",
            ),
            (AclBinding { pattern_type: acl::MATCH, ..b.clone() }, "Invalid patternType MATCH"),
            (AclBinding { pattern_type: acl::ANY, ..b.clone() }, "Invalid patternType ANY"),
            (AclBinding { operation: acl::ANY, ..b.clone() }, "Invalid operation ANY"),
            (
                AclBinding { operation: 99, ..b.clone() },
                "Invalid ACL: resourceType TOPIC, patternType LITERAL, operation UNKNOWN, \
                 permissionType ALLOW (UNKNOWN elements)",
            ),
            (AclBinding { permission_type: acl::ANY, ..b.clone() }, "Invalid permissionType ANY"),
            (AclBinding { resource_name: String::new(), ..b.clone() }, "Invalid empty resource name"),
            (
                AclBinding { resource_type: acl::CLUSTER, resource_name: "c".into(), ..b.clone() },
                "The only valid name for the CLUSTER resource is kafka-cluster",
            ),
            (
                AclBinding { principal: "alice".into(), ..b.clone() },
                "expected a string in format principalType:principalName but got alice",
            ),
            (
                AclBinding { principal: String::new(), ..b.clone() },
                "expected a string in format principalType:principalName but got ",
            ),
        ];
        let mut bindings: Vec<AclBinding> = cases.iter().map(|(b, _)| b.clone()).collect();
        bindings.push(alice_reads("ok"));
        let got = create(&svc, 3, &bindings);
        for (i, (_, why)) in cases.iter().enumerate() {
            assert_eq!(got[i], (error::INVALID_REQUEST, Some(why.to_string())), "case {i}");
        }
        assert_eq!(got[cases.len()], (error::NONE, None));
        assert_eq!(svc.acls.borrow().as_ref().unwrap().bindings, [alice_reads("ok")]);
    }

    #[test]
    fn without_an_authorizer_security_is_disabled() {
        let svc = StubServices::new();
        let bad = AclBinding { operation: acl::ANY, ..alice_reads("t") };
        let got = create(&svc, 2, &[alice_reads("t"), bad]);
        assert!(got.iter().all(|(code, why)| *code == error::SECURITY_DISABLED && why.is_some()), "{got:?}");
    }

    #[test]
    fn without_cluster_alter_the_host_refuses() {
        let svc = StubServices::new();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        let got = create(&svc, 3, &[alice_reads("t")]);
        assert_eq!(got[0].0, error::CLUSTER_AUTHORIZATION_FAILED);
        assert!(svc.acls.borrow().as_ref().unwrap().bindings.is_empty());
    }

    #[test]
    fn error_response_covers_every_creation() {
        let svc = StubServices::new();
        let req = CreateAclsRequest::default()
            .with_creations(vec![creation(&alice_reads("a")), creation(&alice_reads("b"))]);
        let bytes = error_response(&svc, frame(ApiKey::CreateAcls, 3, &req), error::UNKNOWN_SERVER_ERROR);
        let resp: CreateAclsResponse = decode_response(ApiKey::CreateAcls, 3, &bytes);
        assert_eq!(resp.results.len(), 2);
        assert!(resp.results.iter().all(|r| r.error_code == error::UNKNOWN_SERVER_ERROR));
    }
}
