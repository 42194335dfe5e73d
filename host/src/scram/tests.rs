use super::*;
use crate::storage::LogDefaults;
use crate::storage::embedded::EmbeddedLog;

/// Users named `TENANT/NAME` belong to TENANT, others to `public`.
fn owner() -> Box<OwnerFn> {
    Box::new(|user: &str| user.split_once('/').map_or("public", |(t, _)| t).to_string())
}

fn store(dir: &Path, file: Users) -> Store {
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap());
    Store::new(file, log, "public", owner())
}

/// What a Kafka client sends: PBKDF2 of the password.
fn upsert(user: &str, scram: Scram, password: &str, iterations: i32) -> Upsertion {
    let salt = b"0123456789abcdef".to_vec();
    let salted = scram.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
    Upsertion { user: user.into(), mechanism: scram.code(), iterations, salt, salted_password: salted }
}

fn delete(user: &str, mechanism: i8) -> Deletion {
    Deletion { user: user.into(), mechanism }
}

fn codes(results: &[(String, Result<(), Refused>)]) -> Vec<(&str, i16)> {
    results.iter().map(|(u, r)| (u.as_str(), r.as_ref().err().map_or(0, |e| e.0))).collect()
}

#[tokio::test]
async fn credentials_are_stored_replayed_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), Users::default());
    assert_eq!(s.load().await.unwrap(), 0);
    let r = s.alter("public", &[], &[upsert("alice", Scram::Sha512, "wonderland", 8192)]).await;
    assert_eq!(codes(&r), [("alice", 0)]);
    let cred = s.get("alice", Scram::Sha512).unwrap();
    assert!(cred.matches(Scram::Sha512, b"wonderland"), "the client's salted password gives the same keys");
    assert!(!cred.matches(Scram::Sha512, b"wonderland!"));
    assert_eq!(s.describe("public", None), [("alice".to_string(), Ok(vec![(2, 8192)]))]);

    // Another store over the same log reads it back; a deletion survives too.
    drop(s);
    let s = store(dir.path(), Users::default());
    assert_eq!(s.load().await.unwrap(), 1);
    assert!(s.get("alice", Scram::Sha512).unwrap().matches(Scram::Sha512, b"wonderland"));
    let r = s.alter("public", &[], &[upsert("alice", Scram::Sha256, "pw", 4096)]).await;
    assert_eq!(codes(&r), [("alice", 0)]);
    let r = s.alter("public", &[delete("alice", 2)], &[]).await;
    assert_eq!(codes(&r), [("alice", 0)]);
    drop(s);
    let s = store(dir.path(), Users::default());
    s.load().await.unwrap();
    assert!(s.get("alice", Scram::Sha512).is_none());
    assert!(s.get("alice", Scram::Sha256).unwrap().matches(Scram::Sha256, b"pw"));
}

#[tokio::test]
async fn kafkas_rules_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = Users::default();
    file.insert("admin", Scram::Sha512, Credential::new(Scram::Sha512, b"admin-secret", 4096));
    let s = store(dir.path(), file);
    s.load().await.unwrap();
    let r = s
        .alter(
            "public",
            &[delete("ghost", 1), delete("gone", 1), delete("", 1)],
            &[
                upsert("dup", Scram::Sha256, "x", 4096),
                upsert("dup", Scram::Sha512, "x", 4096),
                upsert("gone", Scram::Sha256, "x", 4096),
                upsert("few", Scram::Sha256, "x", 100),
                upsert("many", Scram::Sha256, "x", 20_000),
                Upsertion { mechanism: 9, ..upsert("weird", Scram::Sha256, "x", 4096) },
                upsert("admin", Scram::Sha512, "x", 4096),
                upsert("acme/alice", Scram::Sha256, "x", 4096),
                upsert("bob", Scram::Sha256, "bob-pw", 4096),
            ],
        )
        .await;
    assert_eq!(
        codes(&r),
        [
            ("ghost", RESOURCE_NOT_FOUND),
            ("gone", RESOURCE_NOT_FOUND),
            ("", UNACCEPTABLE_CREDENTIAL),
            ("dup", DUPLICATE_RESOURCE),
            ("few", UNACCEPTABLE_CREDENTIAL),
            ("many", UNACCEPTABLE_CREDENTIAL),
            ("weird", UNSUPPORTED_SASL_MECHANISM),
            ("admin", UNACCEPTABLE_CREDENTIAL),
            ("acme/alice", CLUSTER_AUTHORIZATION_FAILED),
            ("bob", 0),
        ]
    );
    assert!(
        r.iter().all(|(_, res)| res.as_ref().err().is_none_or(|e| !e.1.is_empty())),
        "every error says why"
    );
    // As Kafka: a user named twice is refused even for two mechanisms, and a first change that
    // fails gives its own error, whatever follows.
    assert!(s.get("dup", Scram::Sha256).is_none(), "a refused user's changes are not applied");
    assert!(s.get("gone", Scram::Sha256).is_none());
    assert!(s.get("bob", Scram::Sha256).is_some());
    // The file's users are described with the stored ones, and stay unchangeable.
    let all = s.describe("public", None);
    assert_eq!(all, [("admin".into(), Ok(vec![(2, 4096)])), ("bob".into(), Ok(vec![(1, 4096)]))]);
    let named = s.describe("public", Some(&["bob".into(), "nobody".into(), "bob".into(), "acme/x".into()]));
    let got: Vec<(&str, i16)> =
        named.iter().map(|(u, r)| (u.as_str(), r.as_ref().err().map_or(0, |e| e.0))).collect();
    assert_eq!(
        got,
        [("bob", DUPLICATE_RESOURCE), ("nobody", RESOURCE_NOT_FOUND), ("acme/x", RESOURCE_NOT_FOUND)]
    );
    // acme manages its own users, and public does not see them.
    let r = s.alter("acme", &[], &[upsert("acme/alice", Scram::Sha512, "a", 4096)]).await;
    assert_eq!(codes(&r), [("acme/alice", 0)]);
    assert_eq!(s.describe("acme", None), [("acme/alice".into(), Ok(vec![(2, 4096)]))]);
    assert!(s.describe("public", None).iter().all(|(u, _)| u != "acme/alice"));
    assert!(s.describe("acme", Some(&["bob".into()]))[0].1.is_err(), "bob is public's");
}

#[test]
fn a_store_without_a_log_changes_nothing() {
    let s = Store::from_file(Users::default());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let r = rt.block_on(s.alter("public", &[], &[upsert("x", Scram::Sha256, "x", 4096)]));
    assert_eq!(codes(&r), [("x", UNKNOWN_SERVER_ERROR)]);
    assert!(s.get("x", Scram::Sha256).is_none());
    assert!(!format!("{s:?}").contains("stored_key"));
}
