//! What security costs per request and per connection, in process (no network):
//!
//! `cargo bench -p guise-benches --bench security`
//!
//! - `acl_check`: one authorization as every produce and fetch makes it (`try_authorize`, the
//!   tenant's ACLs in memory): without an authorizer, and with 10 and 1,000 bindings (an
//!   allowed and a refused principal).
//! - `scram_server`: the server's whole side of one SCRAM login through the connection's SASL
//!   state machine (handshake v1, client-first, client-final: frame parsing, nonce, the stored
//!   key check, the server signature), with the client's HMACs; the client's PBKDF2 is done once
//!   outside the loop.
//! - `scram_client_pbkdf2`: PBKDF2 at 4,096 iterations, which a client such as librdkafka
//!   computes for every login (the server stores the derived keys and never does).

use criterion::{Criterion, criterion_group, criterion_main};
use guise_host::acl::{AclBinding, AclConfig, Authorizer, Who, codes};
use guise_host::net::kafka::sasl::{
    Credential, Intercept, MIN_ITERATIONS, Mechanism, SaslConfig, Scram, Session, Users,
};
use guise_host::storage::embedded::EmbeddedLog;
use guise_host::storage::{Log, LogDefaults};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &[u8] = b"correct horse battery staple";

fn binding(topic: &str, principal: &str, operation: i8) -> AclBinding {
    AclBinding {
        resource_type: codes::TOPIC,
        resource_name: topic.into(),
        pattern_type: codes::LITERAL,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission_type: codes::ALLOW,
    }
}

/// An authorizer over an embedded log in `dir` holding `principals` × 10 topic bindings
/// (WRITE on `t-0` … `t-9`) for `User:p0` …, loaded into memory.
fn authorizer(dir: &std::path::Path, principals: usize) -> Authorizer {
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap());
    let config = AclConfig {
        enabled: true,
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: false,
        namespace: "default".into(),
    };
    let acl = Authorizer::new(log, config);
    let admin = Who { principal: "User:admin", host: "127.0.0.1" };
    let bindings: Vec<AclBinding> = (0..principals)
        .flat_map(|p| (0..10).map(move |t| binding(&format!("t-{t}"), &format!("User:p{p}"), codes::WRITE)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(acl.create("public", &admin, &bindings).await.iter().all(|r| r.is_ok()));
        assert!(acl.authorize("public", &admin, codes::TOPIC, "t-0", codes::WRITE).await);
    });
    acl
}

fn acl_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("acl_check");
    let off = Authorizer::default();
    let who = Who { principal: "User:p0", host: "127.0.0.1" };
    g.bench_function("no authorizer", |b| {
        b.iter(|| black_box(off.try_authorize("public", black_box(&who), codes::TOPIC, "t-5", codes::WRITE)))
    });
    for principals in [1, 100] {
        let dir = tempfile::tempdir().unwrap();
        let acl = authorizer(dir.path(), principals);
        let bindings = principals * 10;
        let allowed = Who { principal: "User:p0", host: "127.0.0.1" };
        let refused = Who { principal: "User:stranger", host: "127.0.0.1" };
        assert_eq!(acl.try_authorize("public", &allowed, codes::TOPIC, "t-5", codes::WRITE), Some(true));
        assert_eq!(acl.try_authorize("public", &refused, codes::TOPIC, "t-5", codes::WRITE), Some(false));
        g.bench_function(format!("{bindings} bindings, allowed"), |b| {
            b.iter(|| {
                black_box(acl.try_authorize("public", black_box(&allowed), codes::TOPIC, "t-5", codes::WRITE))
            })
        });
        g.bench_function(format!("{bindings} bindings, refused"), |b| {
            b.iter(|| {
                black_box(acl.try_authorize("public", black_box(&refused), codes::TOPIC, "t-5", codes::WRITE))
            })
        });
    }
    g.finish();
}

fn frame<R: kafka_protocol::protocol::Encodable>(key: ApiKey, version: i16, body: &R) -> bytes::Bytes {
    guise_tests::wire::request_frame(key, version, version, 1, "bench", body)
}

fn reply(i: Intercept) -> bytes::Bytes {
    match i {
        Intercept::Reply { bytes, delay: None, close: false } => bytes,
        other => panic!("unexpected {other:?}"),
    }
}

/// The server-first message from a SaslAuthenticate v2 response (header v1: correlation id and
/// an empty tag buffer).
fn server_message(bytes: &[u8]) -> String {
    let mut body = bytes::Bytes::copy_from_slice(&bytes[5..]);
    let r = SaslAuthenticateResponse::decode(&mut body, 2).unwrap();
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    String::from_utf8(r.auth_bytes.to_vec()).unwrap()
}

/// One SCRAM login against `session`, the client's salted password given.
fn login(session: &mut Session, scram: Scram, salted: &[u8], now: Instant) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let mechanism = Mechanism::of(scram).name();
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    reply(session.intercept(&frame(ApiKey::SaslHandshake, 1, &hs), now));
    let bare = "n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
    let first = SaslAuthenticateRequest::default().with_auth_bytes(format!("n,,{bare}").into_bytes().into());
    let server_first =
        server_message(&reply(session.intercept(&frame(ApiKey::SaslAuthenticate, 2, &first), now)));
    let nonce = server_first.split(',').next().unwrap();
    let without_proof = format!("c=biws,{nonce}");
    let auth = format!("{bare},{server_first},{without_proof}");
    let client_key = guise_host::scram::mac(scram, salted, b"Client Key");
    let stored = ring::digest::digest(scram.digest(), &client_key);
    let signature = guise_host::scram::mac(scram, stored.as_ref(), auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(signature).map(|(a, b)| a ^ b).collect();
    let last = SaslAuthenticateRequest::default()
        .with_auth_bytes(format!("{without_proof},p={}", B64.encode(proof)).into_bytes().into());
    let server_final =
        server_message(&reply(session.intercept(&frame(ApiKey::SaslAuthenticate, 2, &last), now)));
    assert!(server_final.starts_with("v="), "{server_final}");
}

fn scram(c: &mut Criterion) {
    let salt = b"0123456789abcdef";
    let mut users = Users::default();
    for scram in [Scram::Sha256, Scram::Sha512] {
        users.insert("alice", scram, Credential::derive(scram, PASSWORD, salt, MIN_ITERATIONS));
    }
    let config = SaslConfig {
        mechanisms: Mechanism::ALL.to_vec(),
        users: Arc::new(guise_host::scram::Store::from_file(users)),
        reauth: None,
        failure_delay: Duration::from_millis(100),
        oauth: None,
    };
    let mut g = c.benchmark_group("scram_server");
    for scram in [Scram::Sha256, Scram::Sha512] {
        let salted = scram.salted_password(PASSWORD, salt, MIN_ITERATIONS);
        let now = Instant::now();
        let mut session = Session::new(config.clone());
        login(&mut session, scram, &salted, now);
        assert_eq!(session.principal(), Some("User:alice"));
        g.bench_function(scram.name(), |b| {
            b.iter(|| {
                let mut session = Session::new(config.clone());
                login(&mut session, scram, &salted, now);
                black_box(session.principal().is_some())
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("scram_client_pbkdf2");
    g.sample_size(20);
    for scram in [Scram::Sha256, Scram::Sha512] {
        g.bench_function(format!("{} at {MIN_ITERATIONS}", scram.name()), |b| {
            b.iter(|| black_box(scram.salted_password(PASSWORD, salt, MIN_ITERATIONS)))
        });
    }
    g.finish();
}

criterion_group!(benches, acl_check, scram);
criterion_main!(benches);
