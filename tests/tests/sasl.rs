//! SASL on Kafka listeners, with clients nobody here wrote: rskafka (rsasl) with PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512 over SASL_PLAINTEXT and SASL_SSL, and Kafka's Java client
//! with SCRAM-SHA-512 over SASL_SSL. Wrong passwords, unknown users and clients that skip the
//! handshake are refused and their connections closed; everyone else is served.

use guise_host::config::{ListenerConfig, SecurityProtocol};
use guise_host::net::kafka::sasl::Scram;
use guise_tests::TestServer;
use guise_tests::certs::TestCa;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

/// A users file with alice (both SCRAM hashes), bob (SCRAM-SHA-256 only) and carol of tenant
/// acme (SCRAM-SHA-512).
fn users_file(dir: &Path) -> std::path::PathBuf {
    let users = [
        ("alice", Scram::Sha256),
        ("alice", Scram::Sha512),
        ("bob", Scram::Sha256),
        ("acme/carol", Scram::Sha512),
    ];
    guise_tests::users_file(dir, &users, PASSWORD)
}

fn tls_client(ca: &Path) -> Arc<rustls::ClientConfig> {
    guise_tests::certs::rustls_client(ca, None)
}

async fn connect(
    addr: &str,
    sasl: SaslConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Client, rskafka::client::error::Error> {
    let mut builder = ClientBuilder::new(vec![addr.to_string()])
        .sasl_config(sasl)
        .backoff_config(BackoffConfig { deadline: Some(Duration::from_secs(3)), ..Default::default() });
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    builder.build().await
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials::new(user.to_string(), password.to_string())
}

fn record(i: usize) -> Record {
    Record {
        key: None,
        value: Some(format!("v{i}").into_bytes()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
}

#[test]
fn rskafka_authenticates_with_plain_and_scram_over_sasl_plaintext_and_sasl_ssl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let cert = ca.server("server");
    let users = users_file(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslPlaintext;
        c.sasl_users_file = Some(users.clone());
        c.tls_cert_file = Some(cert.cert.clone());
        c.tls_key_file = Some(cert.key.clone());
        c.listeners.push(ListenerConfig {
            addr: "127.0.0.1:0".into(),
            tenant: c.tenant.clone(),
            advertised_addr: None,
            security_protocol: SecurityProtocol::SaslSsl,
        });
    });
    let plain = server.bootstrap();
    let ssl = server.server().tenant_addrs[0].1.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let alice = connect(&plain, SaslConfig::ScramSha512(creds("alice", PASSWORD)), None).await.unwrap();
        alice.controller_client().unwrap().create_topic("guarded", 1, 1, 5_000).await.unwrap();
        let mut next = 0;
        let logins = [
            ("PLAIN on SASL_PLAINTEXT", &plain, SaslConfig::Plain(creds("alice", PASSWORD)), None),
            (
                "SCRAM-SHA-256 on SASL_PLAINTEXT",
                &plain,
                SaslConfig::ScramSha256(creds("bob", PASSWORD)),
                None,
            ),
            (
                "SCRAM-SHA-512 on SASL_SSL",
                &ssl,
                SaslConfig::ScramSha512(creds("alice", PASSWORD)),
                Some(tls_client(&ca.cert())),
            ),
            (
                "PLAIN on SASL_SSL",
                &ssl,
                SaslConfig::Plain(creds("bob", PASSWORD)),
                Some(tls_client(&ca.cert())),
            ),
        ];
        for (what, addr, sasl, tls) in logins {
            let client = connect(addr, sasl, tls).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            let pc = client.partition_client("guarded", 0, UnknownTopicHandling::Retry).await.unwrap();
            let offsets = pc.produce(vec![record(next)], Compression::NoCompression).await.unwrap();
            assert_eq!(offsets, vec![next as i64], "{what}");
            next += 1;
            let (records, _) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
            assert_eq!(records.len(), next, "{what}");
        }

        let refused = [
            ("a wrong password (SCRAM)", SaslConfig::ScramSha256(creds("alice", "guess"))),
            ("a wrong password (PLAIN)", SaslConfig::Plain(creds("alice", "guess"))),
            ("an unknown user", SaslConfig::ScramSha512(creds("mallory", PASSWORD))),
            ("a hash the user has no credential for", SaslConfig::ScramSha512(creds("bob", PASSWORD))),
        ];
        for (what, sasl) in refused {
            let err = connect(&plain, sasl, None).await.err().unwrap_or_else(|| panic!("{what}: connected"));
            eprintln!("{what}: {err}");
        }
        // Still serving the authenticated client.
        let pc = alice.partition_client("guarded", 0, UnknownTopicHandling::Retry).await.unwrap();
        assert_eq!(pc.produce(vec![record(9)], Compression::NoCompression).await.unwrap(), vec![next as i64]);
    });

    // A client that skips the handshake: its Metadata request closes the connection unanswered.
    let mut raw = std::net::TcpStream::connect(server.kafka_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = [0u8, 3, 0, 1, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    raw.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    raw.write_all(&body).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(raw.read(&mut buf).unwrap(), 0, "closed without an answer");
}

/// Kafka's Java client, SCRAM-SHA-512 over SASL_SSL (its JAAS login module, its trust store of
/// the test CA): an idempotent producer and a group consumer; with a wrong password it fails
/// with Kafka's SaslAuthenticationException.
#[test]
fn the_java_client_authenticates_with_scram_over_sasl_ssl() {
    use guise_tests::java::clients;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let cert = ca.server("server");
    let users = users_file(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslSsl;
        c.sasl_users_file = Some(users.clone());
        c.tls_cert_file = Some(cert.cert.clone());
        c.tls_key_file = Some(cert.key.clone());
    });
    let bootstrap = server.bootstrap();
    let props = |password: &str| {
        vec![
            "security.protocol=SASL_SSL".to_string(),
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            format!(
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"alice\" password=\"{password}\";"
            ),
            "ssl.truststore.type=PEM".to_string(),
            format!("ssl.truststore.location={}", ca.cert().display()),
        ]
    };
    let run = |head: &[&str], password: &str| {
        let args: Vec<String> = head.iter().map(|s| s.to_string()).chain(props(password)).collect();
        clients(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let sent = run(&["produce", &bootstrap, "java-sasl", "10"], PASSWORD);
    let sent = sent["sent"].as_array().unwrap();
    assert!(sent.len() == 10 && sent.iter().all(|s| s.is_array()), "{sent:?}");
    let got = run(&["consume", &bootstrap, "java-sasl", "readers", "10"], PASSWORD);
    let values: Vec<&str> =
        got["records"].as_array().unwrap().iter().map(|r| r[3].as_str().unwrap()).collect();
    assert_eq!(values, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(got["committed"]["0"], 10);

    let refused = run(&["produce", &bootstrap, "java-sasl", "1", "max.block.ms=10000"], "guess");
    let error = &refused["sent"][0];
    assert_eq!(error["error"], "SaslAuthenticationException", "{refused}");
}

/// A SASL user named `TENANT/USER` works in its tenant: its topics are that tenant's, invisible
/// to the listener's tenant, and the other way round.
#[test]
fn a_users_tenant_prefix_names_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslPlaintext;
        c.sasl_users_file = Some(users.clone());
    });
    let addr = server.bootstrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let carol =
            connect(&addr, SaslConfig::ScramSha512(creds("acme/carol", PASSWORD)), None).await.unwrap();
        carol.controller_client().unwrap().create_topic("orders", 1, 1, 5_000).await.unwrap();
        let pc = carol.partition_client("orders", 0, UnknownTopicHandling::Retry).await.unwrap();
        assert_eq!(pc.produce(vec![record(0)], Compression::NoCompression).await.unwrap(), vec![0]);
        let bob = connect(&addr, SaslConfig::ScramSha256(creds("bob", PASSWORD)), None).await.unwrap();
        bob.controller_client().unwrap().create_topic("ledger", 1, 1, 5_000).await.unwrap();
        let names =
            |topics: Vec<rskafka::topic::Topic>| topics.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(carol.list_topics().await.unwrap()), ["orders"]);
        assert_eq!(names(bob.list_topics().await.unwrap()), ["ledger"]);
    });
    let log = &server.server().log;
    assert!(log.topics("acme", "default").iter().any(|t| t.name.topic == "orders"));
    assert!(log.topics("public", "default").iter().all(|t| t.name.topic != "orders"));
}

/// A token issuer for the tests: an ES256 key, its JWKS file, and signed tokens.
struct Issuer {
    key: ring::signature::EcdsaKeyPair,
}

impl Issuer {
    const ISS: &str = "https://issuer.example";

    fn new() -> Issuer {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Issuer {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
        }
    }

    fn jwks(&self, dir: &Path) -> std::path::PathBuf {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
        use ring::signature::KeyPair;
        let point = self.key.public_key().as_ref();
        let doc = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "guise-test",
            "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..])}]});
        let path = dir.join("jwks.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        path
    }

    /// A token for `sub`, expiring `exp_in` seconds from now (negative: expired), for `aud`.
    fn token(&self, sub: &str, exp_in: i64, aud: &str) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "guise-test"});
        let claims =
            serde_json::json!({"sub": sub, "iss": Self::ISS, "aud": aud, "iat": now, "exp": now + exp_in});
        let signed = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let sig = self.key.sign(&ring::rand::SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", B64URL.encode(sig.as_ref()))
    }

    fn settings(&self, c: &mut guise_host::config::Config, jwks: &Path) {
        c.sasl_oauthbearer_jwks_file = Some(jwks.to_path_buf());
        c.sasl_oauthbearer_expected_issuer = Some(Self::ISS.into());
        c.sasl_oauthbearer_expected_audience = vec!["kafka".into()];
    }
}

/// OAUTHBEARER with signed JWTs (ES256, from rskafka's token callback): a valid token
/// authenticates as its `sub`; an expired one, one signed by another key, and one for another
/// audience are refused.
#[test]
fn oauthbearer_tokens_are_validated_against_the_jwks() {
    let (issuer, stranger) = (Issuer::new(), Issuer::new());
    let dir = tempfile::tempdir().unwrap();
    let jwks = issuer.jwks(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslPlaintext;
        c.sasl_enabled_mechanisms = vec!["OAUTHBEARER".into()];
        issuer.settings(c, &jwks);
    });
    let bearer = |token: String| {
        SaslConfig::Oauthbearer(rskafka::client::OauthBearerCredentials {
            callback: Arc::new(move || {
                let token = token.clone();
                Box::pin(async move { Ok(token) })
            }),
            authz_id: None,
            bearer_kvs: Vec::new(),
        })
    };
    let addr = server.bootstrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(&addr, bearer(issuer.token("dave", 600, "kafka")), None).await.unwrap();
        client.controller_client().unwrap().create_topic("tokens", 1, 1, 5_000).await.unwrap();
        let pc = client.partition_client("tokens", 0, UnknownTopicHandling::Retry).await.unwrap();
        assert_eq!(pc.produce(vec![record(0)], Compression::NoCompression).await.unwrap(), vec![0]);
        let refused = [
            ("an expired token", issuer.token("dave", -120, "kafka")),
            ("a token signed by another key", stranger.token("dave", 600, "kafka")),
            ("a token for another audience", issuer.token("dave", 600, "web")),
        ];
        for (what, t) in refused {
            let err =
                connect(&addr, bearer(t), None).await.err().unwrap_or_else(|| panic!("{what}: connected"));
            eprintln!("{what}: {err}");
        }
    });
}

/// The Pulsar endpoint with token authentication: the Pulsar Rust client's token
/// (`AuthenticationToken`) is validated like an OAUTHBEARER token, and a principal `acme/…`
/// reaches acme's topics only, one naming no tenant the endpoint's default tenant only; no
/// token, or a forged one, is refused at CONNECT.
#[test]
fn pulsar_clients_authenticate_with_tokens_and_reach_their_tenant_only() {
    use pulsar::{Authentication, Pulsar, TokioExecutor};
    let (issuer, stranger) = (Issuer::new(), Issuer::new());
    let dir = tempfile::tempdir().unwrap();
    let jwks = issuer.jwks(dir.path());
    let server = TestServer::start_with_pulsar(|c| {
        c.pulsar_token_auth = true;
        c.pulsar_tenants = vec!["public".parse().unwrap(), "acme".parse().unwrap()];
        issuer.settings(c, &jwks);
    });
    let url = server.pulsar_url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = |token: Option<String>| {
            let mut b = Pulsar::builder(url.clone(), TokioExecutor).with_operation_retry_options(
                pulsar::OperationRetryOptions { max_retries: Some(1), ..Default::default() },
            );
            b = b.with_connection_retry_options(pulsar::ConnectionRetryOptions {
                max_retries: 1,
                ..Default::default()
            });
            if let Some(t) = token {
                b = b.with_auth(Authentication { name: "token".into(), data: t.into_bytes() });
            }
            b.build()
        };
        let erin: Pulsar<TokioExecutor> =
            client(Some(issuer.token("acme/erin", 600, "kafka"))).await.unwrap();
        let mut producer =
            erin.producer().with_topic("persistent://acme/default/audit").build().await.unwrap();
        producer.send_non_blocking(b"seen".to_vec()).await.unwrap().await.unwrap();
        let other = erin.producer().with_topic("persistent://public/default/audit").build().await;
        assert!(other.is_err(), "another tenant's topic: {:?}", other.map(|_| ()));
        // A principal naming no tenant reaches the endpoint's default tenant only.
        let frank: Pulsar<TokioExecutor> = client(Some(issuer.token("frank", 600, "kafka"))).await.unwrap();
        assert!(frank.producer().with_topic("persistent://public/default/notes").build().await.is_ok());
        assert!(frank.producer().with_topic("persistent://acme/default/audit").build().await.is_err());
        for (what, token) in
            [("no token", None), ("a forged token", Some(stranger.token("acme/erin", 600, "kafka")))]
        {
            let refused = client(token).await;
            assert!(refused.is_err(), "{what}: connected");
        }
    });
    let log = &server.server().log;
    assert!(log.topics("acme", "default").iter().any(|t| t.name.topic == "audit"));
    assert!(log.topics("public", "default").iter().all(|t| t.name.topic != "audit"));
}

/// A Pulsar connection's token is checked again when it expires, as a Pulsar broker checks it:
/// the Pulsar Rust client (which does not declare `supports_auth_refresh`) is disconnected, and
/// its reconnection with the expired token is refused, so its next send fails; libpulsar (which
/// does, and is sent AUTH_CHALLENGE) gets a fresh token from its supplier and goes on sending.
/// The client cannot tell us whether that token came in an AUTH_RESPONSE or a reconnection's
/// CONNECT: this half checks only that a refreshing client keeps working.
#[test]
fn an_expired_pulsar_token_ends_the_connection_unless_the_client_refreshes_it() {
    use pulsar::{Authentication, Pulsar, TokioExecutor};
    let issuer = Issuer::new();
    let dir = tempfile::tempdir().unwrap();
    let jwks = issuer.jwks(dir.path());
    let server = TestServer::start_with_pulsar(|c| {
        c.pulsar_token_auth = true;
        issuer.settings(c, &jwks);
        c.sasl_oauthbearer_clock_skew_seconds = 0;
    });
    let url = server.pulsar_url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client: Pulsar<TokioExecutor> = Pulsar::builder(url.clone(), TokioExecutor)
            .with_operation_retry_options(pulsar::OperationRetryOptions {
                max_retries: Some(1),
                ..Default::default()
            })
            .with_connection_retry_options(pulsar::ConnectionRetryOptions {
                max_retries: 1,
                ..Default::default()
            })
            .with_auth(Authentication {
                name: "token".into(),
                data: issuer.token("gina", 3, "kafka").into_bytes(),
            })
            .build()
            .await
            .unwrap();
        let mut producer =
            client.producer().with_topic("persistent://public/default/short-lived").build().await.unwrap();
        producer.send_non_blocking(b"in time".to_vec()).await.unwrap().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let late = async { producer.send_non_blocking(b"too late".to_vec()).await?.await };
        let late = tokio::time::timeout(std::time::Duration::from_secs(60), late).await;
        assert!(!matches!(late, Ok(Ok(_))), "a send after the token expired was accepted: {late:?}");
    });
    let refreshed = guise_tests::pulsar_py::scenario(
        "token_refresh",
        &url,
        "persistent://public/default/refreshed",
        &[&issuer.token("hana", 3, "kafka"), &issuer.token("hana", 600, "kafka"), "5"],
    );
    assert_eq!(refreshed["sent"], 2, "{refreshed}");
    assert!(refreshed["supplied"].as_u64().unwrap() >= 2, "a fresh token was asked for: {refreshed}");
}

/// SCRAM users managed as Kafka's operators manage them: `kafka-configs --alter --add-config
/// 'SCRAM-SHA-256=[...]' --entity-type users` (as alice, a users-file user) creates dave, who
/// then logs in with the Java client; the AdminClient describes the tenant's users (not
/// another tenant's), gets Kafka's errors for bad changes, and deletes dave's credential, after
/// which his login fails. Credentials survive a restart (they are stored in the log).
#[test]
fn scram_users_are_managed_with_kafka_configs_and_the_admin_client() {
    use guise_tests::java::{clients, tool};
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let mut server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslPlaintext;
        c.sasl_users_file = Some(users.clone());
    });
    let login = |user: &str, password: &str, mechanism: &str| {
        let module = "org.apache.kafka.common.security.scram.ScramLoginModule";
        vec![
            "security.protocol=SASL_PLAINTEXT".to_string(),
            format!("sasl.mechanism={mechanism}"),
            format!("sasl.jaas.config={module} required username=\"{user}\" password=\"{password}\";"),
        ]
    };
    let run = |bootstrap: &str, head: &[&str], props: Vec<String>| {
        let mut args: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        args.insert(1, bootstrap.to_string());
        args.extend(props);
        clients(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let alice = login("alice", PASSWORD, "SCRAM-SHA-512");
    // One AdminClient call: its value, or its error.
    let admin = |bootstrap: &str, op: serde_json::Value| {
        let out = run(bootstrap, &["admin", &serde_json::json!([op]).to_string()], alice.clone());
        out[0].get("ok").cloned().unwrap_or_else(|| out[0].clone())
    };

    // kafka-configs, as alice, creates dave.
    let config = dir.path().join("alice.properties");
    std::fs::write(&config, alice.join("\n")).unwrap();
    let (ok, out) = tool(
        "org.apache.kafka.tools.ConfigCommand",
        &[
            "--bootstrap-server",
            &server.bootstrap(),
            "--command-config",
            config.to_str().unwrap(),
            "--alter",
            "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=dave-secret]",
            "--entity-type",
            "users",
            "--entity-name",
            "dave",
        ],
    );
    assert!(ok, "kafka-configs: {out}");
    let dave = login("dave", "dave-secret", "SCRAM-SHA-256");
    let sent = run(&server.bootstrap(), &["produce", "dave-topic", "3"], dave.clone());
    assert!(sent["sent"].as_array().unwrap().iter().all(|s| s.is_array()), "{sent}");

    // Described: public's users, the file's and dave; not acme's carol.
    let all = admin(&server.bootstrap(), serde_json::json!({"op": "describeScram"}));
    assert_eq!(
        all,
        serde_json::json!({
            "alice": [["SCRAM-SHA-256", 4096], ["SCRAM-SHA-512", 4096]],
            "bob": [["SCRAM-SHA-256", 4096]],
            "dave": [["SCRAM-SHA-256", 8192]],
        })
    );
    let missing =
        admin(&server.bootstrap(), serde_json::json!({"op": "describeScram", "users": ["acme/carol"]}));
    // Kafka 4.4's client lists a user answered RESOURCE_NOT_FOUND with no credentials.
    assert_eq!(missing, serde_json::json!({"acme/carol": []}));

    // Kafka's errors for bad changes.
    let refused = admin(
        &server.bootstrap(),
        serde_json::json!({"op": "alterScram", "upsert": [
            {"user": "erin", "mechanism": "SCRAM-SHA-512", "iterations": 100, "password": "x"},
            {"user": "alice", "mechanism": "SCRAM-SHA-512", "iterations": 4096, "password": "x"},
            {"user": "acme/erin", "mechanism": "SCRAM-SHA-512", "iterations": 4096, "password": "x"},
        ], "delete": [{"user": "frank", "mechanism": "SCRAM-SHA-256"}]}),
    );
    assert_eq!(refused["erin"]["error"], "UnacceptableCredentialException", "{refused}");
    assert_eq!(refused["alice"]["error"], "UnacceptableCredentialException", "{refused}");
    assert_eq!(refused["acme/erin"]["error"], "ClusterAuthorizationException", "{refused}");
    assert_eq!(refused["frank"]["error"], "ResourceNotFoundException", "{refused}");

    // A restart keeps dave; deleting his credential ends his logins.
    server = server.restart();
    let got = run(&server.bootstrap(), &["consume", "dave-topic", "dave-group", "3"], dave.clone());
    assert_eq!(got["records"].as_array().map(Vec::len), Some(3), "{got}");
    let deleted = admin(
        &server.bootstrap(),
        serde_json::json!({"op": "alterScram", "delete": [{"user": "dave", "mechanism": "SCRAM-SHA-256"}]}),
    );
    assert_eq!(deleted, serde_json::json!({"dave": "ok"}));
    let mut head = dave.clone();
    head.push("max.block.ms=10000".into());
    let refused = run(&server.bootstrap(), &["produce", "dave-topic", "1"], head);
    assert_eq!(refused["sent"][0]["error"], "SaslAuthenticationException", "{refused}");
}

/// What a librdkafka client reported through its error callback, and the token its OAUTHBEARER
/// refresh callback hands out.
#[derive(Clone, Default)]
struct RdContext {
    token: Option<String>,
    errors: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl RdContext {
    fn bearer(token: String) -> RdContext {
        RdContext { token: Some(token), ..Default::default() }
    }

    /// Polls `client` (which delivers its errors to the callback) for up to 20 s until an error
    /// names `what`; the errors seen when none does.
    fn wait_for_error(
        &self,
        client: &rdkafka::consumer::BaseConsumer<RdContext>,
        what: &str,
    ) -> Result<String, Vec<String>> {
        for _ in 0..100 {
            if let Some(e) = self.errors.lock().iter().find(|e| e.contains(what)) {
                return Ok(e.clone());
            }
            let _ = client.poll(Duration::from_millis(200));
        }
        Err(self.errors.lock().clone())
    }
}

impl rdkafka::ClientContext for RdContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.errors.lock().push(format!("{error}: {reason}"));
    }

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let token = self.token.clone().ok_or("this client has no token")?;
        let now = chrono::Utc::now().timestamp_millis();
        Ok(rdkafka::client::OAuthToken { token, principal_name: "dave".into(), lifetime_ms: now + 600_000 })
    }
}

impl rdkafka::consumer::ConsumerContext for RdContext {}

impl rdkafka::producer::ProducerContext for RdContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.errors.lock().push(format!("delivery: {e}"));
        }
    }
}

/// librdkafka (the `rdkafka` crate built with OpenSSL) with Guise's TLS and SASL: PLAIN,
/// SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (a signed token from librdkafka's refresh
/// callback) over SASL_SSL, and a client certificate over SSL whose principal names tenant acme.
/// A wrong password, an unknown user and a token signed by another key are refused, and the
/// server keeps serving; a certificate from another CA is not presented, so its client is
/// anonymous.
#[test]
fn librdkafka_authenticates_with_sasl_ssl_and_client_certificates() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use rdkafka::util::Timeout;
    let (issuer, stranger) = (Issuer::new(), Issuer::new());
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let other_ca = TestCa::new(dir.path(), "other");
    let cert = ca.server("server");
    let acme = ca.client("acme", "/CN=writer/O=Acme");
    let intruder = other_ca.client("intruder", "/CN=writer/O=Acme");
    let users = users_file(dir.path());
    let jwks = issuer.jwks(dir.path());
    let server = TestServer::start_with(|c| {
        c.kafka_security_protocol = SecurityProtocol::SaslSsl;
        c.sasl_enabled_mechanisms =
            ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"].map(String::from).to_vec();
        c.sasl_users_file = Some(users.clone());
        issuer.settings(c, &jwks);
        c.tls_cert_file = Some(cert.cert.clone());
        c.tls_key_file = Some(cert.key.clone());
        c.tls_client_ca_file = Some(ca.cert());
        c.tls_client_auth = guise_host::net::tls::ClientAuth::Requested;
        c.principal_tenants.insert("User:O=Acme,CN=writer".into(), "acme".parse().unwrap());
        c.listeners.push(ListenerConfig {
            addr: "127.0.0.1:0".into(),
            tenant: c.tenant.clone(),
            advertised_addr: None,
            security_protocol: SecurityProtocol::Ssl,
        });
    });
    let sasl_ssl = server.bootstrap();
    let ssl = server.server().tenant_addrs[0].1.to_string();
    let ca_pem = ca.cert().display().to_string();
    let config = |addr: &str, settings: &[(&str, &str)]| {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", addr).set("ssl.ca.location", &ca_pem).set("message.timeout.ms", "20000");
        for (k, v) in settings {
            cfg.set(*k, *v);
        }
        cfg
    };
    let sasl = |mechanism: &str, user: &str, password: &str| {
        config(&sasl_ssl, &[("security.protocol", "sasl_ssl"), ("sasl.mechanism", mechanism)])
            .set("sasl.username", user)
            .set("sasl.password", password)
            .clone()
    };
    let bearer =
        || config(&sasl_ssl, &[("security.protocol", "sasl_ssl"), ("sasl.mechanism", "OAUTHBEARER")]);
    let certificate = |issued: &guise_tests::certs::Issued| {
        config(&ssl, &[("security.protocol", "ssl")])
            .set("ssl.certificate.location", issued.cert.display().to_string())
            .set("ssl.key.location", issued.key.display().to_string())
            .clone()
    };

    // One record per login, all into partition 0 of `secured`, created by the first.
    let admin: rdkafka::admin::AdminClient<RdContext> =
        sasl("SCRAM-SHA-512", "alice", PASSWORD).create_with_context(RdContext::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let create = |admin: &rdkafka::admin::AdminClient<RdContext>, topic: &str| {
        use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let created = rt
            .block_on(admin.create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &options));
        assert!(created.unwrap().iter().all(|r| r.is_ok()), "created `{topic}`");
    };
    create(&admin, "secured");
    let logins = [
        ("PLAIN", sasl("PLAIN", "alice", PASSWORD), RdContext::default()),
        ("SCRAM-SHA-256", sasl("SCRAM-SHA-256", "bob", PASSWORD), RdContext::default()),
        ("SCRAM-SHA-512", sasl("SCRAM-SHA-512", "alice", PASSWORD), RdContext::default()),
        ("OAUTHBEARER", bearer(), RdContext::bearer(issuer.token("dave", 600, "kafka"))),
    ];
    for (what, cfg, context) in logins {
        let producer: ThreadedProducer<RdContext> = cfg.create_with_context(context.clone()).unwrap();
        let value = format!("by {what}");
        producer.send(BaseRecord::<(), _>::to("secured").partition(0).payload(&value)).unwrap();
        producer
            .flush(Timeout::After(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{what}: {e}; errors {:?}", context.errors.lock()));
        assert_eq!(producer.in_flight_count(), 0, "{what}: delivered");
    }
    // Read back over SCRAM-SHA-256.
    let consumer: BaseConsumer<RdContext> = sasl("SCRAM-SHA-256", "bob", PASSWORD)
        .set("group.id", "secured-readers")
        .set("auto.offset.reset", "earliest")
        .create_with_context(RdContext::default())
        .unwrap();
    consumer.subscribe(&["secured"]).unwrap();
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while values.len() < 4 && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            use rdkafka::Message;
            let m = m.unwrap();
            values.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(values, ["by PLAIN", "by SCRAM-SHA-256", "by SCRAM-SHA-512", "by OAUTHBEARER"]);

    // A client certificate on the SSL listener: its principal's tenant gets the topic.
    let acme_admin: rdkafka::admin::AdminClient<RdContext> =
        certificate(&acme).create_with_context(RdContext::default()).unwrap();
    create(&acme_admin, "invoices");
    assert!(server.server().log.topics("acme", "default").iter().any(|t| t.name.topic == "invoices"));
    assert!(server.server().log.topics("public", "default").iter().all(|t| t.name.topic != "invoices"));
    // librdkafka sends no certificate that the server's CAs did not issue ("No matching issuer
    // found in server trusted certificate authorities"), so with client certificates requested,
    // not required, the intruder is anonymous: its topic lands in the listener's tenant.
    let intruder_admin: rdkafka::admin::AdminClient<RdContext> =
        certificate(&intruder).create_with_context(RdContext::default()).unwrap();
    create(&intruder_admin, "intruded");
    assert!(server.server().log.topics("acme", "default").iter().all(|t| t.name.topic != "intruded"));
    assert!(server.server().log.topics("public", "default").iter().any(|t| t.name.topic == "intruded"));

    let refused = [
        (
            "a wrong password (SCRAM)",
            sasl("SCRAM-SHA-256", "alice", "guess"),
            RdContext::default(),
            "Authentication",
        ),
        ("a wrong password (PLAIN)", sasl("PLAIN", "alice", "guess"), RdContext::default(), "Authentication"),
        (
            "an unknown user",
            sasl("SCRAM-SHA-512", "mallory", PASSWORD),
            RdContext::default(),
            "Authentication",
        ),
        (
            "a token signed by another key",
            bearer(),
            RdContext::bearer(stranger.token("dave", 600, "kafka")),
            "Authentication",
        ),
    ];
    for (what, cfg, context, error) in refused {
        let client: BaseConsumer<RdContext> = cfg.create_with_context(context.clone()).unwrap();
        assert!(
            client.fetch_metadata(None, Duration::from_secs(3)).is_err(),
            "{what}: metadata was answered"
        );
        let seen = context
            .wait_for_error(&client, error)
            .unwrap_or_else(|all| panic!("{what}: no {error} error in {all:?}"));
        eprintln!("{what}: {seen}");
    }
    // Still serving.
    let producer: ThreadedProducer<RdContext> =
        sasl("SCRAM-SHA-512", "alice", PASSWORD).create_with_context(RdContext::default()).unwrap();
    producer.send(BaseRecord::<(), _>::to("secured").partition(0).payload("after")).unwrap();
    producer.flush(Timeout::After(Duration::from_secs(30))).unwrap();
}
