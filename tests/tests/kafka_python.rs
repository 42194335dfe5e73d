//! kafka-python (PyPI's pure-Python Kafka client, nobody here wrote it) authenticating to Guise:
//! PLAIN and SCRAM-SHA-256 over SASL_PLAINTEXT, SCRAM-SHA-512 over SASL_SSL and plain SSL, each
//! creating a topic, producing and consuming back (once with a consumer group that commits);
//! a wrong password and an unknown user get kafka-python's SASL authentication error, and the
//! host carries on serving.

use guise_host::config::{ListenerConfig, SecurityProtocol};
use guise_host::net::kafka::sasl::Scram;
use guise_tests::TestServer;
use guise_tests::certs::TestCa;
use guise_tests::kafka_py::scenario;
use serde_json::{Value, json};
use std::path::Path;

const PASSWORD: &str = "correct horse battery staple";

/// A users file with alice (both SCRAM hashes) and bob (SCRAM-SHA-256 only).
fn users_file(dir: &Path) -> std::path::PathBuf {
    let users = [("alice", Scram::Sha256), ("alice", Scram::Sha512), ("bob", Scram::Sha256)];
    guise_tests::users_file(dir, &users, PASSWORD)
}

/// kafka-python's settings for a listener and, with SASL, a login.
fn login(bootstrap: &str, protocol: &str, sasl: Option<(&str, &str, &str)>, ca: Option<&Path>) -> Value {
    let mut cfg = json!({"bootstrap": bootstrap, "security_protocol": protocol});
    if let Some((mechanism, user, password)) = sasl {
        cfg["mechanism"] = json!(mechanism);
        cfg["user"] = json!(user);
        cfg["password"] = json!(password);
    }
    if let Some(ca) = ca {
        cfg["cafile"] = json!(ca.display().to_string());
    }
    cfg
}

/// Produce `n` records to a new topic and read them back; checks what came back.
fn roundtrip(what: &str, mut cfg: Value, topic: &str, group: Option<&str>) {
    let n = 5;
    cfg["topic"] = json!(topic);
    cfg["n"] = json!(n);
    if let Some(group) = group {
        cfg["group"] = json!(group);
    }
    let got = scenario("roundtrip", &cfg);
    eprintln!("{what}: {got}");
    assert_eq!(got["offsets"], json!((0..n).collect::<Vec<_>>()), "{what}: {got}");
    let expected: Vec<Value> =
        (0..n).map(|i| json!([i, format!("k{i}"), format!("v{i}"), [["h", i.to_string()]]])).collect();
    assert_eq!(got["records"], json!(expected), "{what}: {got}");
    match group {
        Some(_) => assert_eq!(got["committed"], n, "{what}: {got}"),
        None => assert!(got["committed"].is_null(), "{what}: {got}"),
    }
}

/// A login Guise refuses: kafka-python closes the connection with its SASL authentication
/// error (SASL_AUTHENTICATION_FAILED, 58) and its producer gives up when `max_block_ms` runs out.
fn refused(what: &str, mut cfg: Value) {
    cfg["topic"] = json!("kp-refused");
    let got = scenario("refused", &cfg);
    eprintln!("{what}: {got}");
    assert!(got["raised"].is_string(), "{what}: the producer sent: {got}");
    let closes = got["closed_with"].as_array().unwrap();
    assert!(!closes.is_empty(), "{what}: no connection closed with an error: {got}");
    for close in closes {
        assert_eq!(close["class"], "SaslAuthenticationFailedError", "{what}: {got}");
        assert_eq!(close["errno"], 58, "{what}: {got}");
    }
}

#[test]
fn kafka_python_authenticates_with_plain_scram_and_ssl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let cert = ca.server("server");
    let users = users_file(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslPlaintext;
        c.sasl_users_file = Some(users.clone());
        c.tls_cert_file = Some(cert.cert.clone());
        c.tls_key_file = Some(cert.key.clone());
        for protocol in [SecurityProtocol::SaslSsl, SecurityProtocol::Ssl] {
            c.listeners.push(ListenerConfig {
                addr: "127.0.0.1:0".into(),
                tenant: c.tenant.clone(),
                advertised_addr: None,
                security_protocol: protocol,
            });
        }
    });
    let sasl_plaintext = server.bootstrap();
    let sasl_ssl = server.server().tenant_addrs[0].1.to_string();
    let ssl = server.server().tenant_addrs[1].1.to_string();
    let ca_cert = ca.cert();
    let ca_cert = Some(ca_cert.as_path());

    roundtrip(
        "PLAIN on SASL_PLAINTEXT, a group consumer",
        login(&sasl_plaintext, "SASL_PLAINTEXT", Some(("PLAIN", "alice", PASSWORD)), None),
        "kp-plain",
        Some("kp-readers"),
    );

    refused(
        "a wrong password (SCRAM-SHA-256)",
        login(&sasl_plaintext, "SASL_PLAINTEXT", Some(("SCRAM-SHA-256", "alice", "guess")), None),
    );
    refused(
        "a wrong password (PLAIN)",
        login(&sasl_plaintext, "SASL_PLAINTEXT", Some(("PLAIN", "bob", "guess")), None),
    );
    refused(
        "an unknown user (SCRAM-SHA-512, SASL_SSL)",
        login(&sasl_ssl, "SASL_SSL", Some(("SCRAM-SHA-512", "mallory", PASSWORD)), ca_cert),
    );

    // Still serving, on every listener.
    roundtrip(
        "SCRAM-SHA-256 on SASL_PLAINTEXT",
        login(&sasl_plaintext, "SASL_PLAINTEXT", Some(("SCRAM-SHA-256", "bob", PASSWORD)), None),
        "kp-scram-256",
        None,
    );
    roundtrip(
        "SCRAM-SHA-512 on SASL_SSL",
        login(&sasl_ssl, "SASL_SSL", Some(("SCRAM-SHA-512", "alice", PASSWORD)), ca_cert),
        "kp-scram-512",
        None,
    );
    // kafka-python 2.3.3 drops an idle TLS 1.3 connection when the server's post-handshake
    // NewSessionTicket arrives (its poll takes a readable socket with no request in flight for a
    // closed one: SSLSocket.recv raises SSLWantReadError, which it swallows, then it closes).
    // Over SSL its second connection to a broker sends nothing after the handshake (it reuses the
    // ApiVersions of the first), so the AdminClient fails with "Connection to 0 failed"; any
    // TLS 1.3 broker sending tickets (rustls sends two) sees it. SASL_SSL connections talk at
    // once and are unaffected (above, on TLS 1.3).
    let mut ssl_cfg = login(&ssl, "SSL", None, ca_cert);
    ssl_cfg["tls_max"] = json!("TLSv1_2");
    roundtrip("SSL (TLS 1.2)", ssl_cfg, "kp-ssl", None);
}
