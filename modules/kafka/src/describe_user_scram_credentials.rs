//! DescribeUserScramCredentials v0 (KIP-554): the SCRAM credentials (mechanism and iterations,
//! never salts or keys) of the tenant's users, from the host.
//!
//! No users (a null or an empty list) asks for every user that has a credential. The host
//! answers per user, in request order: its credentials, or RESOURCE_NOT_FOUND (no credential)
//! or DUPLICATE_RESOURCE (named twice) with its message. Without DESCRIBE on the cluster it
//! refuses the whole request (CLUSTER_AUTHORIZATION_FAILED): the response's top-level error, with
//! the host's message and no results.

use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, ScramCredentialInfo, Services, UserScramCredentials, error};
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeUserScramCredentialsRequest = cx.decode()?;
    let users: Option<Vec<String>> =
        req.users.as_ref().map(|us| us.iter().map(|u| string(&u.name)).collect());
    let resp = match cx.svc.describe_scram(users.as_deref()) {
        Ok(found) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(error::NONE)
            .with_error_message(None)
            .with_results(found.into_iter().map(result).collect()),
        Err((code, why)) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(why)))
            .with_results(vec![]),
    };
    cx.respond(&resp)
}

/// One user's entry: its credentials, or its error with the host's message.
fn result(u: UserScramCredentials) -> DescribeUserScramCredentialsResult {
    let entry = DescribeUserScramCredentialsResult::default().with_user(str_bytes(u.user));
    match u.result {
        Ok(infos) => entry
            .with_error_code(error::NONE)
            .with_error_message(None)
            .with_credential_infos(infos.iter().map(credential_info).collect()),
        Err((code, why)) => entry.with_error_code(code).with_error_message(Some(str_bytes(why))),
    }
}

fn credential_info(i: &ScramCredentialInfo) -> CredentialInfo {
    CredentialInfo::default().with_mechanism(i.mechanism).with_iterations(i.iterations)
}

/// The request failed as a whole: the top-level error, no results.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _: DescribeUserScramCredentialsRequest = cx.decode()?;
    cx.respond(
        &DescribeUserScramCredentialsResponse::default().with_error_code(code).with_error_message(None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{ScramUpsertion, acl, scram};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;

    /// (user, error code, error message, [(mechanism, iterations)]).
    type Row = (String, ErrorCode, Option<String>, Vec<(i8, i32)>);

    fn request(users: Option<&[&str]>) -> DescribeUserScramCredentialsRequest {
        DescribeUserScramCredentialsRequest::default().with_users(
            users.map(|us| us.iter().map(|u| UserName::default().with_name(str_bytes(*u))).collect()),
        )
    }

    fn describe(svc: &StubServices, users: Option<&[&str]>) -> DescribeUserScramCredentialsResponse {
        call(svc, ApiKey::DescribeUserScramCredentials, 0, &request(users))
    }

    fn rows(resp: &DescribeUserScramCredentialsResponse) -> Vec<Row> {
        resp.results
            .iter()
            .map(|r| {
                let infos = r.credential_infos.iter().map(|i| (i.mechanism, i.iterations)).collect();
                (r.user.to_string(), r.error_code, r.error_message.as_ref().map(|m| m.to_string()), infos)
            })
            .collect()
    }

    /// A host where alice has both mechanisms and bob SCRAM-SHA-512.
    fn host() -> StubServices {
        let svc = StubServices::new();
        let upsertion = |user: &str, mechanism, iterations| ScramUpsertion {
            user: user.into(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: b"salted".to_vec(),
        };
        // One change per user and request, as Kafka's controller takes them.
        for changes in [
            vec![
                upsertion("bob", scram::SCRAM_SHA_512, 8192),
                upsertion("alice", scram::SCRAM_SHA_256, 4096),
            ],
            vec![upsertion("alice", scram::SCRAM_SHA_512, 16384)],
        ] {
            assert!(svc.alter_scram(&[], &changes).iter().all(|(_, r)| r.is_ok()));
        }
        svc
    }

    fn ok(user: &str, infos: &[(i8, i32)]) -> Row {
        (user.into(), error::NONE, None, infos.to_vec())
    }

    #[test]
    fn no_users_describes_every_user_with_a_credential() {
        let svc = host();
        let every = [
            ok("alice", &[(scram::SCRAM_SHA_256, 4096), (scram::SCRAM_SHA_512, 16384)]),
            ok("bob", &[(scram::SCRAM_SHA_512, 8192)]),
        ];
        for users in [None, Some(&[][..])] {
            let resp = describe(&svc, users);
            assert_eq!(resp.error_code, error::NONE, "{users:?}");
            assert_eq!(resp.error_message, None, "{users:?}");
            assert_eq!(rows(&resp), every, "{users:?}");
        }
        let resp = describe(&StubServices::new(), None);
        assert_eq!(resp.error_code, error::NONE);
        assert!(resp.results.is_empty());
    }

    #[test]
    fn named_users_in_order_with_their_own_errors() {
        let svc = host();
        let resp = describe(&svc, Some(&["bob", "nobody", "alice", "bob"]));
        assert_eq!(resp.error_code, error::NONE);
        assert_eq!(
            rows(&resp),
            [
                (
                    "bob".into(),
                    error::DUPLICATE_RESOURCE,
                    Some(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: bob"
                            .into()
                    ),
                    vec![]
                ),
                (
                    "nobody".into(),
                    error::RESOURCE_NOT_FOUND,
                    Some("Attempt to describe a user credential that does not exist: nobody".into()),
                    vec![]
                ),
                ok("alice", &[(scram::SCRAM_SHA_256, 4096), (scram::SCRAM_SHA_512, 16384)]),
            ]
        );
    }

    #[test]
    fn without_cluster_describe_the_host_refuses() {
        let svc = host();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE);
        for users in [None, Some(&["alice"][..])] {
            let resp = describe(&svc, users);
            assert_eq!(resp.error_code, error::CLUSTER_AUTHORIZATION_FAILED, "{users:?}");
            assert_eq!(resp.error_message.as_deref(), Some("Cluster authorization failed."), "{users:?}");
            assert!(resp.results.is_empty(), "{users:?}");
        }
        // ALTER alone is not needed to describe.
        let svc = host();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        assert_eq!(describe(&svc, None).results.len(), 2);
    }

    #[test]
    fn error_response_is_top_level() {
        let svc = host();
        let req = request(Some(&["alice", "bob"]));
        let bytes = error_response(
            &svc,
            frame(ApiKey::DescribeUserScramCredentials, 0, &req),
            error::UNKNOWN_SERVER_ERROR,
        );
        let resp: DescribeUserScramCredentialsResponse =
            decode_response(ApiKey::DescribeUserScramCredentials, 0, &bytes);
        assert_eq!(resp.error_code, error::UNKNOWN_SERVER_ERROR);
        assert_eq!(resp.error_message, None);
        assert!(resp.results.is_empty());
    }
}
