//! AlterUserScramCredentials v0 (KIP-554): create, replace or remove SCRAM credentials of the
//! tenant's users, through the host.
//!
//! The host checks and applies the changes: one result per user named in the deletions or the
//! upsertions, in order of first appearance, and a user's changes apply all together or not at
//! all. It refuses an empty user name (UNACCEPTABLE_CREDENTIAL), an unknown mechanism
//! (UNSUPPORTED_SASL_MECHANISM), a credential changed twice (DUPLICATE_RESOURCE), iterations
//! outside Kafka's bounds (UNACCEPTABLE_CREDENTIAL) and the deletion of a credential that does
//! not exist (RESOURCE_NOT_FOUND), with its message; without ALTER on the cluster every user is
//! CLUSTER_AUTHORIZATION_FAILED. The client sends the salted password, never the password.

use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, ScramDeletion, ScramUpsertion, Services, error};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: AlterUserScramCredentialsRequest = cx.decode()?;
    let deletions: Vec<ScramDeletion> = req
        .deletions
        .iter()
        .map(|d| ScramDeletion { user: string(&d.name), mechanism: d.mechanism })
        .collect();
    let upsertions: Vec<ScramUpsertion> = req
        .upsertions
        .iter()
        .map(|u| ScramUpsertion {
            user: string(&u.name),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    let results = cx
        .svc
        .alter_scram(&deletions, &upsertions)
        .into_iter()
        .map(|(user, outcome)| {
            let entry = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match outcome {
                Ok(()) => entry.with_error_code(error::NONE).with_error_message(None),
                Err((code, why)) => entry.with_error_code(code).with_error_message(Some(str_bytes(why))),
            }
        })
        .collect();
    cx.respond(&AlterUserScramCredentialsResponse::default().with_results(results))
}

/// The response to this request with `code` for every user it names (each once, in order of
/// first appearance: deletions, then upsertions).
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: AlterUserScramCredentialsRequest = cx.decode()?;
    let names = req.deletions.iter().map(|d| &d.name).chain(req.upsertions.iter().map(|u| &u.name));
    let mut users = Vec::new();
    for name in names {
        if !users.contains(name) {
            users.push(name.clone());
        }
    }
    let results = users
        .into_iter()
        .map(|user| {
            AlterUserScramCredentialsResult::default()
                .with_user(user)
                .with_error_code(code)
                .with_error_message(None)
        })
        .collect();
    cx.respond(&AlterUserScramCredentialsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, decode_response, error_response, frame};
    use bytes::Bytes;
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{ScramCredentialInfo, acl, scram};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };

    fn deletion(user: &str, mechanism: i8) -> ScramCredentialDeletion {
        ScramCredentialDeletion::default().with_name(str_bytes(user)).with_mechanism(mechanism)
    }

    fn upsertion(user: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion::default()
            .with_name(str_bytes(user))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from(format!("salt-{user}")))
            .with_salted_password(Bytes::from(format!("salted-{user}-{mechanism}")))
    }

    fn request(
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> AlterUserScramCredentialsRequest {
        AlterUserScramCredentialsRequest::default().with_deletions(deletions).with_upsertions(upsertions)
    }

    /// (user, error code, error message) of each result.
    fn alter(
        svc: &StubServices,
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> Vec<(String, ErrorCode, Option<String>)> {
        let resp: AlterUserScramCredentialsResponse =
            call(svc, ApiKey::AlterUserScramCredentials, 0, &request(deletions, upsertions));
        assert_eq!(resp.throttle_time_ms, 0);
        resp.results
            .iter()
            .map(|r| (r.user.to_string(), r.error_code, r.error_message.as_ref().map(|m| m.to_string())))
            .collect()
    }

    fn ok(user: &str) -> (String, ErrorCode, Option<String>) {
        (user.into(), error::NONE, None)
    }

    fn described(svc: &StubServices, user: &str) -> Vec<ScramCredentialInfo> {
        let found = svc.describe_scram(Some(&[user.to_string()])).unwrap();
        found[0].result.clone().unwrap_or_default()
    }

    #[test]
    fn upserts_and_deletes_reaching_the_host() {
        let svc = StubServices::new();
        let got = alter(
            &svc,
            vec![],
            vec![
                upsertion("alice", scram::SCRAM_SHA_256, 4096),
                upsertion("bob", scram::SCRAM_SHA_512, 8192),
            ],
        );
        assert_eq!(got, [ok("alice"), ok("bob")]);
        // One change per user and request, as Kafka's controller takes them.
        let got = alter(&svc, vec![], vec![upsertion("alice", scram::SCRAM_SHA_512, 16384)]);
        assert_eq!(got, [ok("alice")]);
        // The salt and the salted password reach the host as the client sent them.
        let stored = svc.scram.borrow()[&("alice".to_string(), scram::SCRAM_SHA_512)].clone();
        assert_eq!(
            stored,
            ScramUpsertion {
                user: "alice".into(),
                mechanism: scram::SCRAM_SHA_512,
                iterations: 16384,
                salt: b"salt-alice".to_vec(),
                salted_password: b"salted-alice-2".to_vec(),
            }
        );
        // A deletion, then a replacement.
        assert_eq!(alter(&svc, vec![deletion("alice", scram::SCRAM_SHA_256)], vec![]), [ok("alice")]);
        assert_eq!(alter(&svc, vec![], vec![upsertion("alice", scram::SCRAM_SHA_512, 5000)]), [ok("alice")]);
        assert_eq!(
            described(&svc, "alice"),
            [ScramCredentialInfo { mechanism: scram::SCRAM_SHA_512, iterations: 5000 }]
        );
        // Nothing to alter: no results.
        assert_eq!(alter(&svc, vec![], vec![]), []);
    }

    #[test]
    fn each_user_gets_its_own_error() {
        let svc = StubServices::new();
        assert_eq!(alter(&svc, vec![], vec![upsertion("kept", scram::SCRAM_SHA_256, 4096)]), [ok("kept")]);
        let got = alter(
            &svc,
            vec![
                deletion("gone", scram::SCRAM_SHA_256),
                deletion("dup", scram::SCRAM_SHA_512),
                deletion("kept", scram::SCRAM_SHA_256),
            ],
            vec![
                upsertion("", scram::SCRAM_SHA_256, 4096),
                upsertion("unknown", scram::UNKNOWN, 4096),
                upsertion("dup", scram::SCRAM_SHA_512, 4096),
                upsertion("few", scram::SCRAM_SHA_256, 4095),
                upsertion("many", scram::SCRAM_SHA_512, 16385),
                upsertion("mixed", scram::SCRAM_SHA_256, 4096),
                upsertion("mixed", scram::SCRAM_SHA_512, 1),
                upsertion("new", scram::SCRAM_SHA_512, 4096),
            ],
        );
        let why = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            [
                (
                    "gone".into(),
                    error::RESOURCE_NOT_FOUND,
                    why("Attempt to delete a user credential that does not exist")
                ),
                // Its first change deletes what does not exist: that error wins.
                (
                    "dup".into(),
                    error::RESOURCE_NOT_FOUND,
                    why("Attempt to delete a user credential that does not exist")
                ),
                ok("kept"),
                ("".into(), error::UNACCEPTABLE_CREDENTIAL, why("Username must not be empty")),
                ("unknown".into(), error::UNSUPPORTED_SASL_MECHANISM, why("Unknown SCRAM mechanism")),
                ("few".into(), error::UNACCEPTABLE_CREDENTIAL, why("Too few iterations")),
                ("many".into(), error::UNACCEPTABLE_CREDENTIAL, why("Too many iterations")),
                // A valid first change and another of the same user: the user is refused whole.
                (
                    "mixed".into(),
                    error::DUPLICATE_RESOURCE,
                    why("A user credential cannot be altered twice in the same request")
                ),
                ok("new"),
            ]
        );
        // Only the valid users' changes applied: "kept" deleted, "new" created, "mixed" untouched.
        let stored: Vec<(String, i8)> = svc.scram.borrow().keys().cloned().collect();
        assert_eq!(stored, [("new".to_string(), scram::SCRAM_SHA_512)]);
    }

    #[test]
    fn without_cluster_alter_every_user_is_refused() {
        let svc = StubServices::new();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        let got = alter(
            &svc,
            vec![deletion("alice", scram::SCRAM_SHA_256)],
            vec![
                upsertion("bob", scram::SCRAM_SHA_256, 4096),
                upsertion("alice", scram::SCRAM_SHA_512, 4096),
            ],
        );
        let refused = |user: &str| {
            (
                user.to_string(),
                error::CLUSTER_AUTHORIZATION_FAILED,
                Some("Cluster authorization failed.".into()),
            )
        };
        assert_eq!(got, [refused("alice"), refused("bob")]);
        assert!(svc.scram.borrow().is_empty());
    }

    #[test]
    fn error_response_covers_every_user_once() {
        let svc = StubServices::new();
        let req = request(
            vec![deletion("bob", scram::SCRAM_SHA_256)],
            vec![
                upsertion("alice", scram::SCRAM_SHA_256, 4096),
                upsertion("bob", scram::SCRAM_SHA_512, 4096),
                upsertion("alice", scram::SCRAM_SHA_512, 4096),
            ],
        );
        let bytes = error_response(
            &svc,
            frame(ApiKey::AlterUserScramCredentials, 0, &req),
            error::UNKNOWN_SERVER_ERROR,
        );
        let resp: AlterUserScramCredentialsResponse =
            decode_response(ApiKey::AlterUserScramCredentials, 0, &bytes);
        let got: Vec<(&str, ErrorCode, bool)> =
            resp.results.iter().map(|r| (r.user.as_str(), r.error_code, r.error_message.is_none())).collect();
        assert_eq!(
            got,
            [("bob", error::UNKNOWN_SERVER_ERROR, true), ("alice", error::UNKNOWN_SERVER_ERROR, true)]
        );
        assert!(svc.scram.borrow().is_empty(), "an error response changes nothing");
    }
}
