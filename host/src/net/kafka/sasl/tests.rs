use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// RFC 7677's SCRAM-SHA-256 example.
const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST_BARE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const FINAL_WITHOUT_PROOF: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// The client's side of SCRAM (as RFC 5802 computes it), for the tests.
fn client_proof(scram: Scram, password: &str, salt: &[u8], iterations: u32, auth_message: &str) -> Vec<u8> {
    let salted = scram.salted_password(password.as_bytes(), salt, iterations);
    let client_key = mac(scram, &salted, b"Client Key");
    let stored = digest::digest(scram.digest(), &client_key);
    let signature = mac(scram, stored.as_ref(), auth_message.as_bytes());
    client_key.iter().zip(signature).map(|(a, b)| a ^ b).collect()
}

#[test]
fn credentials_and_proofs_match_rfc_7677() {
    let salt = B64.decode(SALT).unwrap();
    let cred = Credential::derive(Scram::Sha256, b"pencil", &salt, 4096);
    let auth = format!("{CLIENT_FIRST_BARE},{SERVER_FIRST},{FINAL_WITHOUT_PROOF}");
    assert_eq!(B64.encode(client_proof(Scram::Sha256, "pencil", &salt, 4096, &auth)), PROOF);
    assert_eq!(B64.encode(mac(Scram::Sha256, &cred.server_key, auth.as_bytes())), SERVER_SIGNATURE);
    assert!(cred.matches(Scram::Sha256, b"pencil"));
    assert!(!cred.matches(Scram::Sha256, b"pencil "));
}

fn config(reauth: Option<Duration>) -> SaslConfig {
    static USERS: std::sync::OnceLock<std::sync::Arc<crate::scram::Store>> = std::sync::OnceLock::new();
    let users = USERS.get_or_init(|| {
        let mut users = Users::default();
        for scram in [Scram::Sha256, Scram::Sha512] {
            users.insert("alice", scram, Credential::new(scram, b"wonderland", MIN_ITERATIONS));
        }
        std::sync::Arc::new(crate::scram::Store::from_file(users))
    });
    SaslConfig {
        mechanisms: Mechanism::ALL.to_vec(),
        users: users.clone(),
        reauth,
        failure_delay: Duration::from_millis(100),
        oauth: None,
    }
}

fn request(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&3i16.to_be_bytes());
    f.extend_from_slice(b"cli");
    if api_key == SASL_AUTHENTICATE && version >= 2 {
        f.push(0);
    }
    f.extend_from_slice(body);
    f
}

fn handshake(mechanism: &str, version: i16) -> Vec<u8> {
    let mut body = (mechanism.len() as i16).to_be_bytes().to_vec();
    body.extend_from_slice(mechanism.as_bytes());
    request(SASL_HANDSHAKE, version, &body)
}

fn authenticate(token: &[u8], version: i16) -> Vec<u8> {
    let mut body = Vec::new();
    if version >= 2 {
        let mut b = BytesMut::new();
        put_uvarint(&mut b, token.len() as u64 + 1);
        body.extend_from_slice(&b);
        body.extend_from_slice(token);
        body.push(0);
    } else {
        body.extend_from_slice(&(token.len() as i32).to_be_bytes());
        body.extend_from_slice(token);
    }
    request(SASL_AUTHENTICATE, version, &body)
}

/// (error code, auth bytes, session lifetime) of a SaslAuthenticate response.
fn authenticated(reply: &Intercept, version: i16) -> (i16, Vec<u8>, i64, bool) {
    let Intercept::Reply { bytes, close, .. } = reply else { panic!("no reply: {reply:?}") };
    let b = &bytes[..];
    let mut at = 4 + usize::from(version >= 2);
    let code = i16::from_be_bytes([b[at], b[at + 1]]);
    at += 2;
    if version >= 2 {
        let (n, next) = uvarint(b, at).unwrap();
        at = next + (n as usize).saturating_sub(1);
    } else {
        let n = i16::from_be_bytes([b[at], b[at + 1]]);
        at += 2 + usize::try_from(n).unwrap_or(0);
    }
    let auth = read_auth_bytes(b, at, version >= 2).unwrap().to_vec();
    at += auth.len() + if version >= 2 { 1 } else { 4 };
    let lifetime = if version >= 1 { i64::from_be_bytes(b[at..at + 8].try_into().unwrap()) } else { 0 };
    (code, auth, lifetime, *close)
}

fn handshake_code(reply: &Intercept) -> (i16, bool) {
    let Intercept::Reply { bytes, close, .. } = reply else { panic!("no reply: {reply:?}") };
    (i16::from_be_bytes([bytes[4], bytes[5]]), *close)
}

/// A full SCRAM exchange through `session`, at SaslAuthenticate `version`.
fn scram_login(session: &mut Session, scram: Scram, user: &str, password: &str, version: i16) -> Intercept {
    let now = Instant::now();
    assert_eq!(
        handshake_code(&session.intercept(&handshake(Mechanism::of(scram).name(), 1), now)),
        (NONE, false)
    );
    let bare = format!("n={user},r=clientnonce123");
    let first = session.intercept(&authenticate(format!("n,,{bare}").as_bytes(), version), now);
    let (code, server_first, _, close) = authenticated(&first, version);
    if code != NONE {
        return first;
    }
    assert!(!close);
    let server_first = String::from_utf8(server_first).unwrap();
    let attrs: HashMap<&str, &str> = server_first.split(',').filter_map(|a| a.split_once('=')).collect();
    assert!(attrs["r"].starts_with("clientnonce123") && attrs["r"].len() > 20);
    let salt = B64.decode(attrs["s"]).unwrap();
    let without = format!("c=biws,r={}", attrs["r"]);
    let auth = format!("{bare},{server_first},{without}");
    let proof = client_proof(scram, password, &salt, attrs["i"].parse().unwrap(), &auth);
    session.intercept(&authenticate(format!("{without},p={}", B64.encode(proof)).as_bytes(), version), now)
}

#[test]
fn scram_logins_succeed_with_the_password_and_fail_without_it() {
    for scram in [Scram::Sha256, Scram::Sha512] {
        for version in 0..=2 {
            let mut s = Session::new(config(None));
            let done = scram_login(&mut s, scram, "alice", "wonderland", version);
            let (code, verifier, _, close) = authenticated(&done, version);
            assert_eq!((code, close), (NONE, false), "{scram:?} v{version}");
            assert!(verifier.starts_with(b"v="));
            assert_eq!(s.principal(), Some("User:alice"));
            assert!(matches!(s.intercept(&request(3, 12, &[]), Instant::now()), Intercept::Pass));

            let mut s = Session::new(config(None));
            let failed = scram_login(&mut s, scram, "alice", "guess", version);
            let Intercept::Reply { delay, .. } = &failed else { unreachable!() };
            assert_eq!(*delay, Some(Duration::from_millis(100)), "failures are answered late");
            assert_eq!(authenticated(&failed, version).0, SASL_AUTHENTICATION_FAILED);
            assert!(authenticated(&failed, version).3, "closed after a failure");
            assert_eq!(s.principal(), None);
            let mut s = Session::new(config(None));
            assert_eq!(
                authenticated(&scram_login(&mut s, scram, "bob", "x", version), version).0,
                SASL_AUTHENTICATION_FAILED
            );
        }
    }
}

#[test]
fn plain_checks_the_password_against_the_stored_credentials() {
    let login = |token: &[u8]| {
        let mut s = Session::new(config(None));
        let now = Instant::now();
        assert_eq!(handshake_code(&s.intercept(&handshake("PLAIN", 1), now)), (NONE, false));
        let reply = s.intercept(&authenticate(token, 1), now);
        (authenticated(&reply, 1).0, s.principal().map(str::to_string))
    };
    assert_eq!(login(b"\0alice\0wonderland"), (NONE, Some("User:alice".into())));
    assert_eq!(login(b"alice\0alice\0wonderland"), (NONE, Some("User:alice".into())));
    assert_eq!(login(b"\0alice\0wonder").0, SASL_AUTHENTICATION_FAILED);
    assert_eq!(login(b"\0mallory\0wonderland").0, SASL_AUTHENTICATION_FAILED);
    assert_eq!(login(b"bob\0alice\0wonderland").0, SASL_AUTHENTICATION_FAILED);
    assert_eq!(login(b"no separators").0, SASL_AUTHENTICATION_FAILED);
}

#[test]
fn requests_before_authentication_and_unknown_mechanisms_close_the_connection() {
    let now = Instant::now();
    let mut s = Session::new(config(None));
    assert!(matches!(s.intercept(&request(18, 3, &[0, 0]), now), Intercept::Pass), "ApiVersions first");
    assert!(matches!(s.intercept(&request(3, 12, &[]), now), Intercept::Close(_)));
    assert_eq!(
        handshake_code(&s.intercept(&handshake("GSSAPI", 1), now)),
        (UNSUPPORTED_SASL_MECHANISM, true)
    );
    let mut s = Session::new(config(None));
    let (code, _, _, close) = authenticated(&s.intercept(&authenticate(b"\0alice\0wonderland", 2), now), 2);
    assert_eq!((code, close), (ILLEGAL_SASL_STATE, true), "authenticate before a handshake");
}

#[test]
fn a_v0_handshake_takes_raw_tokens() {
    let now = Instant::now();
    let mut s = Session::new(config(None));
    assert_eq!(handshake_code(&s.intercept(&handshake("PLAIN", 0), now)), (NONE, false));
    assert!(matches!(s.intercept(b"\0alice\0wonderland", now), Intercept::Reply { close: false, .. }));
    assert_eq!(s.principal(), Some("User:alice"));
    assert!(matches!(s.intercept(&request(3, 12, &[]), now), Intercept::Pass));
}

#[test]
fn sessions_expire_without_reauthentication_and_keep_their_principal() {
    let mut s = Session::new(config(Some(Duration::from_secs(60))));
    let done = scram_login(&mut s, Scram::Sha256, "alice", "wonderland", 2);
    assert_eq!(authenticated(&done, 2).2, 60_000, "the session lifetime is told");
    let later = Instant::now() + Duration::from_secs(61);
    assert!(matches!(s.intercept(&request(3, 12, &[]), Instant::now()), Intercept::Pass));
    assert!(matches!(s.intercept(&request(3, 12, &[]), later), Intercept::Close(_)));
    // Re-authenticating (same principal) starts a new session.
    let again = scram_login(&mut s, Scram::Sha256, "alice", "wonderland", 2);
    assert_eq!(authenticated(&again, 2).0, NONE);
    assert!(matches!(
        s.intercept(&request(3, 12, &[]), Instant::now() + Duration::from_secs(30)),
        Intercept::Pass
    ));
}

#[test]
fn the_users_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cred = Credential::new(Scram::Sha512, b"secret", 8192);
    let path = dir.path().join("users.toml");
    std::fs::write(&path, Users::entry("a,b=c", Scram::Sha512, &cred)).unwrap();
    let users = Users::load(&path).unwrap();
    assert_eq!(users.get("a,b=c", Scram::Sha512), Some(&cred));
    std::fs::write(&path, "[users.x.\"SCRAM-SHA-256\"]\nsalt = \"AA==\"\niterations = 10\nstored_key = \"\"\nserver_key = \"\"\n").unwrap();
    assert!(Users::load(&path).unwrap_err().to_string().contains("iterations"));
}

#[test]
fn escaped_names_are_read() {
    let first = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=xyz").unwrap();
    assert_eq!(first.user, "a,b=c");
    assert!(ClientFirst::parse(b"p=tls-unique,,n=a,r=x").is_err());
    assert!(ClientFirst::parse(b"n,,n=a=2,r=x").is_err());
    assert!(ClientFirst::parse(b"n,a=b,n=a,r=x").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ClientFirst::parse(&bytes);
        let _ = ClientFinal::parse(&bytes);
        let now = Instant::now();
        let mut s = Session::new(config(None));
        let _ = s.intercept(&bytes, now);
        let mut s = Session::new(config(None));
        let _ = s.intercept(&handshake("SCRAM-SHA-256", 1), now);
        let _ = s.intercept(&bytes, now);
        let mut s = Session::new(config(None));
        let _ = s.intercept(&handshake("SCRAM-SHA-512", 1), now);
        let _ = s.intercept(&authenticate(&bytes, 2), now);
        let _ = s.intercept(&authenticate(&bytes, 1), now);
    }

    #[test]
    fn mutated_exchanges_never_authenticate(flip in 0usize..64, bit in 0u8..8) {
        // A proof with one bit flipped is refused.
        let mut s = Session::new(config(None));
        let now = Instant::now();
        let _ = s.intercept(&handshake("SCRAM-SHA-256", 1), now);
        let first = s.intercept(&authenticate(b"n,,n=alice,r=abc", 1), now);
        let server_first = String::from_utf8(authenticated(&first, 1).1).unwrap();
        let attrs: HashMap<&str, &str> = server_first.split(',').filter_map(|a| a.split_once('=')).collect();
        let without = format!("c=biws,r={}", attrs["r"]);
        let auth = format!("n=alice,r=abc,{server_first},{without}");
        let mut proof = client_proof(Scram::Sha256, "wonderland", &B64.decode(attrs["s"]).unwrap(), attrs["i"].parse().unwrap(), &auth);
        let i = flip % proof.len();
        proof[i] ^= 1 << bit;
        let done = s.intercept(&authenticate(format!("{without},p={}", B64.encode(proof)).as_bytes(), 1), now);
        prop_assert_eq!(authenticated(&done, 1).0, SASL_AUTHENTICATION_FAILED);
        prop_assert_eq!(s.principal(), None);
    }
}
