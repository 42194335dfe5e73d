use super::*;
use crate::storage::LogDefaults;
use crate::storage::embedded::EmbeddedLog;
use guise_guest_sdk::error::{INVALID_REQUEST, SECURITY_DISABLED};

fn b(rt: i8, name: &str, pt: i8, principal: &str, op: i8, perm: i8) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pt,
        principal: principal.into(),
        host: "*".into(),
        operation: op,
        permission_type: perm,
    }
}

/// The filter that matches every binding.
fn everything() -> AclFilter {
    AclFilter {
        resource_type: codes::ANY,
        resource_name: None,
        pattern_type: codes::ANY,
        principal: None,
        host: None,
        operation: codes::ANY,
        permission_type: codes::ANY,
    }
}

const ALICE: Who<'static> = Who { principal: "User:alice", host: "10.0.0.1" };
const BOB: Who<'static> = Who { principal: "User:bob", host: "10.0.0.2" };

fn topic_ok(acls: &[AclBinding], who: &Who<'_>, name: &str, op: i8) -> bool {
    decide(acls.iter(), who, codes::TOPIC, name, op, false)
}

#[test]
fn literal_prefixed_and_wildcard_patterns() {
    let acls = vec![
        b(codes::TOPIC, "orders", codes::LITERAL, "User:alice", codes::WRITE, codes::ALLOW),
        b(codes::TOPIC, "logs-", codes::PREFIXED, "User:alice", codes::READ, codes::ALLOW),
        b(codes::TOPIC, "*", codes::LITERAL, "User:bob", codes::DESCRIBE, codes::ALLOW),
    ];
    assert!(topic_ok(&acls, &ALICE, "orders", codes::WRITE));
    assert!(!topic_ok(&acls, &ALICE, "orders", codes::READ));
    assert!(topic_ok(&acls, &ALICE, "logs-a", codes::READ));
    assert!(!topic_ok(&acls, &ALICE, "logs", codes::READ), "a prefix covers longer names only");
    assert!(topic_ok(&acls, &BOB, "anything", codes::DESCRIBE));
    assert!(!topic_ok(&acls, &BOB, "orders", codes::WRITE));
}

#[test]
fn implied_operations_and_deny_wins() {
    let mut acls = vec![b(codes::TOPIC, "t", codes::LITERAL, "User:*", codes::READ, codes::ALLOW)];
    assert!(topic_ok(&acls, &ALICE, "t", codes::DESCRIBE), "READ implies DESCRIBE");
    assert!(!topic_ok(&acls, &ALICE, "t", codes::DESCRIBE_CONFIGS));
    acls.push(b(codes::TOPIC, "t", codes::PREFIXED, "User:alice", codes::ALL, codes::DENY));
    assert!(!topic_ok(&acls, &ALICE, "t", codes::READ), "a deny of ALL wins over an allow");
    assert!(topic_ok(&acls, &BOB, "t", codes::READ));
    let mut host = b(codes::TOPIC, "t", codes::LITERAL, "User:bob", codes::READ, codes::DENY);
    host.host = "10.0.0.9".into();
    acls.push(host);
    assert!(topic_ok(&acls, &BOB, "t", codes::READ), "a deny for another host does not apply");
}

#[test]
fn no_acl_on_a_resource_follows_allow_everyone() {
    let acls = [b(codes::TOPIC, "t", codes::LITERAL, "User:bob", codes::READ, codes::ALLOW)];
    assert!(!decide(acls.iter(), &ALICE, codes::TOPIC, "u", codes::READ, false));
    assert!(decide(acls.iter(), &ALICE, codes::TOPIC, "u", codes::READ, true));
    assert!(!decide(acls.iter(), &ALICE, codes::TOPIC, "t", codes::READ, true), "t has ACLs, none for alice");
}

#[test]
fn by_resource_type() {
    let mut acls = vec![b(codes::TOPIC, "t", codes::LITERAL, "User:alice", codes::WRITE, codes::ALLOW)];
    assert!(decide_any(acls.iter(), &ALICE, codes::TOPIC, codes::WRITE, false));
    assert!(!decide_any(acls.iter(), &BOB, codes::TOPIC, codes::WRITE, false));
    acls.push(b(codes::TOPIC, "", codes::PREFIXED, "User:alice", codes::WRITE, codes::DENY));
    assert!(!decide_any(acls.iter(), &ALICE, codes::TOPIC, codes::WRITE, false));
    // With allow-everyone, a resource no ACL names is open, other topics' ACLs
    // notwithstanding (Kafka's made-up name "hardcode").
    let others = [b(codes::TOPIC, "t", codes::LITERAL, "User:bob", codes::WRITE, codes::ALLOW)];
    assert!(decide_any(others.iter(), &ALICE, codes::TOPIC, codes::WRITE, true));
    let wildcard = [b(codes::TOPIC, "*", codes::LITERAL, "User:bob", codes::WRITE, codes::ALLOW)];
    assert!(!decide_any(wildcard.iter(), &ALICE, codes::TOPIC, codes::WRITE, true));
}

#[test]
fn filters() {
    let lit = b(codes::TOPIC, "orders", codes::LITERAL, "User:alice", codes::WRITE, codes::ALLOW);
    let pre = b(codes::TOPIC, "ord", codes::PREFIXED, "User:bob", codes::READ, codes::ALLOW);
    let any = everything();
    assert!(matches(&any, &lit) && matches(&any, &pre));
    let by_match =
        AclFilter { resource_name: Some("orders".into()), pattern_type: codes::MATCH, ..any.clone() };
    assert!(matches(&by_match, &lit) && matches(&by_match, &pre));
    let exact = AclFilter { resource_name: Some("orders".into()), pattern_type: codes::ANY, ..any.clone() };
    assert!(matches(&exact, &lit) && !matches(&exact, &pre));
    let prefixed = AclFilter { pattern_type: codes::PREFIXED, ..any.clone() };
    assert!(!matches(&prefixed, &lit) && matches(&prefixed, &pre));
    let bob = AclFilter { principal: Some("User:bob".into()), ..any };
    assert!(!matches(&bob, &lit) && matches(&bob, &pre));
}

#[test]
fn validation() {
    let ok = b(codes::TOPIC, "t", codes::LITERAL, "User:a", codes::READ, codes::ALLOW);
    assert!(validate(&ok).is_ok());
    for bad in [
        AclBinding { pattern_type: codes::MATCH, ..ok.clone() },
        AclBinding { resource_type: codes::ANY, ..ok.clone() },
        AclBinding { operation: codes::ANY, ..ok.clone() },
        AclBinding { permission_type: codes::ANY, ..ok.clone() },
        AclBinding { principal: "alice".into(), ..ok.clone() },
        AclBinding { resource_name: String::new(), ..ok.clone() },
        AclBinding { resource_type: codes::CLUSTER, resource_name: "c".into(), ..ok.clone() },
    ] {
        assert_eq!(validate(&bad).unwrap_err().0, INVALID_REQUEST, "{bad:?}");
    }
}

const ADMIN: Who<'static> = Who { principal: "User:admin", host: "127.0.0.1" };

/// An embedded log in `dir`, and an authorizer's settings with super user `User:admin`.
fn embedded(dir: &std::path::Path) -> (Arc<dyn Log>, AclConfig) {
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap());
    let config = AclConfig {
        enabled: true,
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: false,
        namespace: "default".into(),
    };
    (log, config)
}

#[test]
fn acls_persist_and_super_users_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (log, config) = embedded(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let acl = Authorizer::new(log.clone(), config.clone());
        assert!(!acl.authorize("public", &ALICE, codes::TOPIC, "t", codes::READ).await);
        let refused = acl
            .create(
                "public",
                &ALICE,
                &[b(codes::TOPIC, "t", codes::LITERAL, "User:alice", codes::READ, codes::ALLOW)],
            )
            .await;
        assert_eq!(refused[0].as_ref().unwrap_err().0, CLUSTER_AUTHORIZATION_FAILED);
        let made = acl
            .create(
                "public",
                &ADMIN,
                &[
                    b(codes::TOPIC, "t", codes::LITERAL, "User:alice", codes::READ, codes::ALLOW),
                    b(codes::GROUP, "g", codes::LITERAL, "User:alice", codes::READ, codes::ALLOW),
                ],
            )
            .await;
        assert!(made.iter().all(|r| r.is_ok()), "{made:?}");
        assert!(acl.authorize("public", &ALICE, codes::TOPIC, "t", codes::READ).await);
        assert!(
            !acl.authorize("other", &ALICE, codes::TOPIC, "t", codes::READ).await,
            "another tenant's ACLs"
        );
        let groups = AclFilter { resource_type: codes::GROUP, ..everything() };
        let deleted = acl.delete("public", &ADMIN, std::slice::from_ref(&groups)).await;
        assert_eq!(deleted[0].as_ref().unwrap().len(), 1);
    });
    // A new authorizer over the same log replays what is left.
    rt.block_on(async {
        let acl = Authorizer::new(log.clone(), config);
        assert!(acl.authorize("public", &ALICE, codes::TOPIC, "t", codes::READ).await);
        assert!(!acl.authorize("public", &ALICE, codes::GROUP, "g", codes::READ).await);
        let all = everything();
        assert_eq!(acl.describe("public", &ADMIN, &all).await.unwrap().len(), 1);
        let off = Authorizer::default();
        assert_eq!(off.describe("public", &ADMIN, &all).await.unwrap_err().0, SECURITY_DISABLED);
        assert!(off.authorize("public", &ALICE, codes::TOPIC, "t", codes::READ).await);
    });
}

#[test]
fn the_acls_topic_needs_describe_on_the_cluster_and_checks_allocate_once_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (log, config) = embedded(dir.path());
    let acl = Authorizer::new(log, config);
    assert_eq!(acl.try_authorize("public", &ALICE, codes::TOPIC, "t", codes::READ), None, "not read yet");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let everything = b(codes::TOPIC, "*", codes::LITERAL, "User:alice", codes::READ, codes::ALLOW);
        assert!(acl.create("public", &ADMIN, &[everything]).await[0].is_ok());
        assert!(acl.authorize("public", &ALICE, codes::TOPIC, "t", codes::READ).await);
        assert!(
            !acl.authorize("public", &ALICE, codes::TOPIC, ACLS_TOPIC, codes::READ).await,
            "READ on * is not enough"
        );
        let describe = b(
            codes::CLUSTER,
            codes::CLUSTER_NAME,
            codes::LITERAL,
            "User:alice",
            codes::DESCRIBE,
            codes::ALLOW,
        );
        assert!(acl.create("public", &ADMIN, &[describe]).await[0].is_ok());
        assert!(acl.authorize("public", &ALICE, codes::TOPIC, ACLS_TOPIC, codes::READ).await);
    });
    assert_eq!(
        acl.try_authorize("public", &ALICE, codes::TOPIC, "t", codes::READ),
        Some(true),
        "in memory now"
    );
}

/// The index gives the same decision as reading every binding, for literal, `*` and prefixed
/// bindings of several types, after insertions and removals.
#[test]
fn the_index_decides_as_a_full_scan() {
    let names = ["a", "ab", "abc", "abd", "b", "*", "*x", "é", "éa", "orders", "orders-eu", "ord"];
    let principals = ["User:alice", "User:bob", "User:*"];
    let mut seed = 0x2545_f491_u64;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let mut all = Vec::new();
    for _ in 0..300 {
        let pattern = [codes::LITERAL, codes::PREFIXED][next(2)];
        let name = names[next(names.len())];
        if name == "*" && pattern == codes::PREFIXED {
            continue;
        }
        let mut x = b(
            [codes::TOPIC, codes::GROUP][next(2)],
            name,
            pattern,
            principals[next(principals.len())],
            [codes::READ, codes::WRITE, codes::ALL, codes::DESCRIBE][next(4)],
            [codes::ALLOW, codes::DENY][next(2)],
        );
        if next(4) == 0 {
            x.host = "10.0.0.1".into();
        }
        all.push(x);
    }
    let mut index: index::Bindings = all.iter().cloned().collect();
    for round in 0..2 {
        let kept: BTreeSet<AclBinding> = index.iter().cloned().collect();
        for name in names.iter().chain(&["abcd", "x", "éab", "orders-us"]) {
            for rt in [codes::TOPIC, codes::GROUP] {
                for principal in principals {
                    let who = Who { principal, host: "127.0.0.1" };
                    for op in [codes::READ, codes::WRITE, codes::DESCRIBE] {
                        for allow_if_none in [false, true] {
                            let scan = decide(kept.iter(), &who, rt, name, op, allow_if_none);
                            let indexed = decide(index.covering(rt, name), &who, rt, name, op, allow_if_none);
                            assert_eq!(scan, indexed, "round {round}: {principal} {op} on {rt}/{name}");
                        }
                    }
                }
            }
        }
        for x in all.iter().step_by(2) {
            index.remove(x);
        }
    }
}
