//! Kafka's ACLs, managed with Kafka's own `kafka-acls` tool and enforced on Kafka's Java client:
//! a SASL listener with an authorizer, a super user who manages ACLs, and principals who may do
//! exactly what their ACLs say — with Kafka's errors (TopicAuthorizationException,
//! GroupAuthorizationException, ClusterAuthorizationException) for the rest, Metadata hiding the
//! topics they may not describe, and the ACLs still in force after a restart.

use guise_host::config::SecurityProtocol;
use guise_host::net::kafka::sasl::Scram;
use guise_tests::TestServer;
use guise_tests::java::{clients, tool};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const PASSWORD: &str = "acl-test-password";
const ACL_COMMAND: &str = "org.apache.kafka.tools.AclCommand";

fn users_file(dir: &Path) -> PathBuf {
    let users = ["admin", "alice", "bob"].map(|u| (u, Scram::Sha256));
    guise_tests::users_file(dir, &users, PASSWORD)
}

/// The Java client's properties for `user` (SASL PLAIN over SASL_PLAINTEXT).
fn login(user: &str) -> Vec<String> {
    vec![
        "security.protocol=SASL_PLAINTEXT".into(),
        "sasl.mechanism=PLAIN".into(),
        format!(
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"{user}\" password=\"{PASSWORD}\";"
        ),
    ]
}

fn with_login<'a>(args: &[&'a str], props: &'a [String]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(props.iter().map(String::as_str));
    all
}

/// `kafka-acls.sh --bootstrap-server … --command-config FILE ARGS` as `user`: exit status and
/// output.
fn kafka_acls(bootstrap: &str, dir: &Path, user: &str, args: &[&str]) -> (bool, String) {
    let config = dir.join(format!("{user}.properties"));
    std::fs::write(&config, login(user).join("\n")).unwrap();
    let config = config.display().to_string();
    let mut all = vec!["--bootstrap-server", bootstrap, "--command-config", &config];
    all.extend_from_slice(args);
    tool(ACL_COMMAND, &all)
}

fn produce(bootstrap: &str, user: &str, topic: &str, count: usize) -> Value {
    let props = login(user);
    let count = count.to_string();
    clients(&with_login(&["produce", bootstrap, topic, &count], &props))["sent"].clone()
}

fn consume(bootstrap: &str, user: &str, topic: &str, group: &str, count: usize) -> Value {
    let props = login(user);
    let count = count.to_string();
    clients(&with_login(&["consume", bootstrap, topic, group, &count], &props))
}

fn admin(bootstrap: &str, user: &str, ops: Value) -> Value {
    let props = login(user);
    let ops = ops.to_string();
    clients(&with_login(&["admin", bootstrap, &ops], &props))
}

/// Every entry of a produce result failed with `error`.
fn all_failed(sent: &Value, error: &str) -> bool {
    sent.as_array().is_some_and(|s| !s.is_empty() && s.iter().all(|r| r["error"] == error))
}

#[test]
fn kafka_acls_grants_exactly_what_it_says_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslPlaintext;
        c.sasl_users_file = Some(users.clone());
        c.authorizer_enabled = true;
        c.super_users = vec!["User:admin".into()];
    });
    let bootstrap = server.bootstrap();
    let b = bootstrap.as_str();

    // The super user creates the topics and writes to one.
    let made = admin(
        b,
        "admin",
        json!([{"op": "create", "topics": [{"name": "orders"}, {"name": "logs-app"}, {"name": "secret"}]}]),
    );
    assert_eq!(made[0]["ok"], json!({"logs-app": "ok", "orders": "ok", "secret": "ok"}), "{made}");
    let sent = produce(b, "admin", "logs-app", 5);
    assert_eq!(sent.as_array().unwrap().len(), 5);
    assert!(sent.as_array().unwrap().iter().all(|r| r.is_array()), "{sent}");

    // Nobody else may do anything yet (allow.everyone.if.no.acl.found is false, as in Kafka).
    assert!(all_failed(&produce(b, "alice", "orders", 2), "TopicAuthorizationException"));

    // kafka-acls, as the super user.
    for args in [
        &["--add", "--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders"][..],
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "logs-",
            "--resource-pattern-type",
            "prefixed",
        ],
        &["--add", "--allow-principal", "User:alice", "--operation", "Read", "--group", "readers"],
        &["--add", "--deny-principal", "User:alice", "--operation", "All", "--topic", "logs-private"],
    ] {
        let (ok, out) = kafka_acls(b, dir.path(), "admin", args);
        assert!(ok, "kafka-acls {args:?}:\n{out}");
    }
    let (ok, listed) = kafka_acls(b, dir.path(), "admin", &["--list"]);
    assert!(ok, "{listed}");
    for want in [
        "name=orders, patternType=LITERAL",
        "name=logs-, patternType=PREFIXED",
        "name=readers, patternType=LITERAL",
        "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)",
        "(principal=User:alice, host=*, operation=ALL, permissionType=DENY)",
    ] {
        assert!(listed.contains(want), "kafka-acls --list lacks {want}:\n{listed}");
    }

    // Alice may write orders (an idempotent producer: WRITE on a topic is enough), bob may not.
    let sent = produce(b, "alice", "orders", 3);
    assert!(sent.as_array().unwrap().iter().all(|r| r.is_array()), "{sent}");
    assert!(all_failed(&produce(b, "bob", "orders", 1), "TopicAuthorizationException"));
    // Writing is not reading: alice may not write what she may only read.
    assert!(all_failed(&produce(b, "alice", "logs-app", 1), "TopicAuthorizationException"));

    // She reads logs-app in group readers; another group is refused.
    let got = consume(b, "alice", "logs-app", "readers", 5);
    assert_eq!(got["records"].as_array().map(Vec::len), Some(5), "{got}");
    assert_eq!(got["committed"], json!({"0": 5}), "{got}");
    let refused = consume(b, "alice", "logs-app", "others", 1);
    assert_eq!(refused["error"], "GroupAuthorizationException", "{refused}");

    // Metadata shows her only what she may describe (READ and WRITE imply DESCRIBE).
    let listed = admin(b, "alice", json!([{"op": "listTopics"}]));
    assert_eq!(listed[0]["ok"], json!(["logs-app", "orders"]), "{listed}");

    // Managing ACLs takes ALTER on the cluster.
    let (ok, out) = kafka_acls(
        b,
        dir.path(),
        "alice",
        &["--add", "--allow-principal", "User:alice", "--operation", "All", "--topic", "secret"],
    );
    assert!(!ok && out.contains("ClusterAuthorizationException"), "alice granted herself ACLs:\n{out}");

    // The ACLs are stored: after a restart they still hold.
    let server = server.restart();
    let b = server.bootstrap();
    let (ok, again) = kafka_acls(&b, dir.path(), "admin", &["--list"]);
    assert!(ok && again.contains("name=logs-, patternType=PREFIXED"), "{again}");
    let sent = produce(&b, "alice", "orders", 1);
    assert!(sent.as_array().unwrap().iter().all(|r| r.is_array()), "after the restart: {sent}");

    // Removed, the grant is gone.
    let (ok, out) = kafka_acls(
        &b,
        dir.path(),
        "admin",
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "orders",
        ],
    );
    assert!(ok, "{out}");
    assert!(all_failed(&produce(&b, "alice", "orders", 1), "TopicAuthorizationException"));
}

#[test]
fn without_an_authorizer_the_acl_apis_say_security_is_disabled() {
    let server = TestServer::start();
    // SECURITY_DISABLED: the tool prints the SecurityDisabledException and exits with 1.
    let (ok, out) = tool(ACL_COMMAND, &["--bootstrap-server", &server.bootstrap(), "--list"]);
    assert!(
        !ok && out.contains("SecurityDisabledException"),
        "kafka-acls --list without an authorizer:\n{out}"
    );
    // Everything else works as before.
    let made = clients(&[
        "admin",
        &server.bootstrap(),
        &json!([{"op": "create", "topics": [{"name": "t"}]}]).to_string(),
    ]);
    assert_eq!(made[0]["ok"], json!({"t": "ok"}), "{made}");
}
