//! SASL on Kafka listeners (SASL_PLAINTEXT, SASL_SSL), sans-I/O: the host authenticates a
//! connection before any request reaches the translator. SaslHandshake v0–v1 and
//! SaslAuthenticate v0–v2 (after a v0 handshake, the tokens come as raw frames, as Kafka's
//! oldest clients send them); ApiVersions is answered by the translator at any time; any other
//! request before authentication closes the connection, as Kafka does.
//!
//! Mechanisms: SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802/7677) against stored salted
//! credentials, and PLAIN, whose password is checked against the same credentials (no
//! password is stored anywhere). A successful authentication makes the principal `User:NAME`.
//! With a re-authentication deadline (KIP-368, `connections_max_reauth_ms`), the
//! SaslAuthenticate response tells the client the session's lifetime, and a request after it
//! ends without a new authentication closes the connection.

use super::frame::FrameHeader;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{BufMut, Bytes, BytesMut};
use ring::digest;
use std::time::{Duration, Instant};

pub use crate::scram::{Credential, MIN_ITERATIONS, Scram, Users};
use crate::scram::{constant_eq, mac};

/// Kafka's error codes these answers carry.
const NONE: i16 = 0;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

const SASL_HANDSHAKE: i16 = 17;
const API_VERSIONS: i16 = 18;
const SASL_AUTHENTICATE: i16 = 36;

/// Failed authentications are logged a few at a time (a password guesser must not flood the
/// log); the count of the others goes with the next line.
static FAILURES: crate::logs::Throttle = crate::logs::Throttle::new(Duration::from_secs(1));

fn log_failure(f: &Failed) {
    if let Some(left_out) = FAILURES.hit() {
        tracing::info!(left_out, "SASL authentication failed: {}", f.log);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] =
        [Mechanism::Plain, Mechanism::ScramSha256, Mechanism::ScramSha512, Mechanism::OAuthBearer];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM mechanism of `scram`.
    pub fn of(scram: Scram) -> Mechanism {
        match scram {
            Scram::Sha256 => Mechanism::ScramSha256,
            Scram::Sha512 => Mechanism::ScramSha512,
        }
    }

    fn scram(self) -> Option<Scram> {
        match self {
            Mechanism::Plain | Mechanism::OAuthBearer => None,
            Mechanism::ScramSha256 => Some(Scram::Sha256),
            Mechanism::ScramSha512 => Some(Scram::Sha512),
        }
    }
}

/// A SASL listener's settings.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    pub mechanisms: Vec<Mechanism>,
    /// Every user's credentials: the users file's and those managed with
    /// AlterUserScramCredentials.
    pub users: std::sync::Arc<crate::scram::Store>,
    /// KIP-368's connections.max.reauth.ms (None: sessions do not expire).
    pub reauth: Option<Duration>,
    /// Kafka's connection.failed.authentication.delay.ms: a failed authentication is answered
    /// this late, slowing down guessing.
    pub failure_delay: Duration,
    /// OAUTHBEARER's token validation (when the mechanism is enabled).
    pub oauth: Option<std::sync::Arc<oauth::Validator>>,
}

/// What to do with a frame.
#[derive(Debug)]
pub enum Intercept {
    /// Authenticated (or ApiVersions): the translator answers it.
    Pass,
    /// Answer with these bytes (without the size prefix), after `delay`; then close if `close`.
    Reply { bytes: Bytes, delay: Option<Duration>, close: bool },
    /// Close the connection, for this reason (logged).
    Close(String),
}

enum State {
    /// Waiting for a handshake.
    Start,
    /// A mechanism was chosen; waiting for its first token.
    Chosen(Mechanism),
    /// SCRAM: the server-first message was sent.
    ScramSent { scram: Scram, user: String, client_first_bare: String, server_first: String, nonce: String },
}

/// One connection's authentication.
pub struct Session {
    cfg: SaslConfig,
    state: State,
    /// The authenticated principal (kept across re-authentications, which must not change it).
    principal: Option<String>,
    expires: Option<Instant>,
    /// After a v0 handshake: tokens come as raw frames.
    raw: bool,
}

/// Why an authentication failed: Kafka's message, and what the log says (never a secret).
struct Failed {
    message: String,
    log: String,
}

impl Session {
    pub fn new(cfg: SaslConfig) -> Session {
        Session { cfg, state: State::Start, principal: None, expires: None, raw: false }
    }

    /// The authenticated principal (`User:NAME`).
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Decide what to do with `frame` (a whole request, or a raw token after a v0 handshake).
    pub fn intercept(&mut self, frame: &[u8], now: Instant) -> Intercept {
        if self.raw {
            return self.raw_token(frame, now);
        }
        let Some(header) = Header::parse(frame) else {
            return Intercept::Close("a request too short for its header".into());
        };
        match header.api_key {
            API_VERSIONS => Intercept::Pass,
            SASL_HANDSHAKE => self.handshake(&header, frame),
            SASL_AUTHENTICATE => self.authenticate(&header, frame, now),
            key => match (&self.principal, self.expires) {
                (None, _) => Intercept::Close(format!("request (api key {key}) before SASL authentication")),
                (Some(_), Some(at)) if now >= at => Intercept::Close(
                    "the SASL session expired (connections_max_reauth_ms) without re-authentication".into(),
                ),
                (Some(_), _) => Intercept::Pass,
            },
        }
    }

    fn handshake(&mut self, header: &Header, frame: &[u8]) -> Intercept {
        let enabled: Vec<&str> = self.cfg.mechanisms.iter().map(|m| m.name()).collect();
        let reply = |code: i16, close: bool| Intercept::Reply {
            bytes: handshake_response(header.correlation_id, code, &enabled),
            delay: None,
            close,
        };
        if header.api_version > 1 {
            return Intercept::Close(format!("SaslHandshake v{} is not supported", header.api_version));
        }
        // Re-authentication (KIP-368) starts with a v1 handshake on an authenticated connection.
        let reauth = self.principal.is_some() && header.api_version >= 1;
        if !matches!(self.state, State::Start) || (self.principal.is_some() && !reauth) {
            return reply(ILLEGAL_SASL_STATE, true);
        }
        let Some(mechanism) = read_string(frame, header.body).map(|(m, _)| m) else {
            return Intercept::Close("a malformed SaslHandshake".into());
        };
        match Mechanism::parse(&mechanism).filter(|m| self.cfg.mechanisms.contains(m)) {
            Some(m) => {
                self.state = State::Chosen(m);
                self.raw = header.api_version == 0;
                reply(NONE, false)
            }
            None => {
                tracing::info!(mechanism, "SASL mechanism not enabled; closing");
                reply(UNSUPPORTED_SASL_MECHANISM, true)
            }
        }
    }

    fn authenticate(&mut self, header: &Header, frame: &[u8], now: Instant) -> Intercept {
        let v = header.api_version;
        if v > 2 {
            return Intercept::Close(format!("SaslAuthenticate v{v} is not supported"));
        }
        let flexible = v >= 2;
        let token = match read_auth_bytes(frame, header.body, flexible) {
            Some(t) => t,
            None => return Intercept::Close("a malformed SaslAuthenticate".into()),
        };
        let respond = |code: i16, message: Option<&str>, bytes: &[u8], lifetime: i64| {
            authenticate_response(header.correlation_id, v, code, message, bytes, lifetime)
        };
        if matches!(self.state, State::Start) {
            let bytes = respond(ILLEGAL_SASL_STATE, Some("SaslAuthenticate before SaslHandshake"), &[], 0);
            return Intercept::Reply { bytes, delay: None, close: true };
        }
        match self.step(token, now) {
            Ok(Stepped::Continue(out)) => {
                Intercept::Reply { bytes: respond(NONE, None, &out, 0), delay: None, close: false }
            }
            Ok(Stepped::Done(out)) => {
                // What is left of the session: the re-authentication deadline or the token's
                // expiry, whichever is first (KIP-368); 0 when neither bounds it.
                let lifetime = self.expires.map_or(0, |at| {
                    i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX)
                });
                Intercept::Reply { bytes: respond(NONE, None, &out, lifetime), delay: None, close: false }
            }
            Err(f) => {
                log_failure(&f);
                let bytes = respond(SASL_AUTHENTICATION_FAILED, Some(&f.message), &[], 0);
                Intercept::Reply { bytes, delay: Some(self.cfg.failure_delay), close: true }
            }
        }
    }

    /// A raw token (after a v0 handshake): the answer is the raw token back.
    fn raw_token(&mut self, frame: &[u8], now: Instant) -> Intercept {
        match self.step(frame, now) {
            Ok(Stepped::Continue(out)) => {
                Intercept::Reply { bytes: Bytes::from(out), delay: None, close: false }
            }
            Ok(Stepped::Done(out)) => {
                self.raw = false;
                Intercept::Reply { bytes: Bytes::from(out), delay: None, close: false }
            }
            Err(f) => {
                log_failure(&f);
                // A v0 client learns of the failure from the closed connection.
                Intercept::Close(format!("after a failed authentication ({})", f.log))
            }
        }
    }

    fn step(&mut self, token: &[u8], now: Instant) -> Result<Stepped, Failed> {
        let state = std::mem::replace(&mut self.state, State::Start);
        match state {
            State::Start => {
                Err(Failed { message: "no mechanism chosen".into(), log: "no mechanism chosen".into() })
            }
            State::Chosen(Mechanism::Plain) => {
                let user = self.plain(token)?;
                self.authenticated(user, now, None)?;
                Ok(Stepped::Done(Vec::new()))
            }
            State::Chosen(Mechanism::OAuthBearer) => {
                let failed = |why: String| Failed {
                    message: format!("Authentication failed: {why}"),
                    log: format!("an OAUTHBEARER token refused: {why}"),
                };
                let validator =
                    self.cfg.oauth.clone().ok_or_else(|| failed("OAUTHBEARER is not configured".into()))?;
                let bearer = oauth::bearer_token(token).map_err(failed)?;
                let valid = validator.validate(bearer, std::time::SystemTime::now()).map_err(failed)?;
                let left = valid.expires.duration_since(std::time::SystemTime::now()).unwrap_or_default();
                self.authenticated(valid.name, now, Some(left))?;
                Ok(Stepped::Done(Vec::new()))
            }
            State::Chosen(m) => {
                let scram = m.scram().expect("SCRAM");
                let first = ClientFirst::parse(token).map_err(|e| invalid(m, &e))?;
                let Some(cred) = self.cfg.users.get(&first.user, scram) else {
                    return Err(Failed {
                        message: format!(
                            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                            m.name()
                        ),
                        log: format!("unknown user {:?} ({})", first.user, m.name()),
                    });
                };
                let mut ours = [0u8; 18];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut ours)
                    .expect("system randomness");
                let nonce = format!("{}{}", first.nonce, B64.encode(ours));
                let server_first = format!("r={nonce},s={},i={}", B64.encode(&cred.salt), cred.iterations);
                self.state = State::ScramSent {
                    scram,
                    user: first.user,
                    client_first_bare: first.bare,
                    server_first: server_first.clone(),
                    nonce,
                };
                Ok(Stepped::Continue(server_first.into_bytes()))
            }
            State::ScramSent { scram, user, client_first_bare, server_first, nonce } => {
                let m = Mechanism::of(scram);
                let fin = ClientFinal::parse(token).map_err(|e| invalid(m, &e))?;
                if fin.nonce != nonce {
                    return Err(invalid(m, "the nonce does not match"));
                }
                let cred = self.cfg.users.get(&user, scram).ok_or_else(|| invalid(m, "the user is gone"))?;
                let auth_message = format!("{client_first_bare},{server_first},{}", fin.without_proof);
                let signature = mac(scram, &cred.stored_key, auth_message.as_bytes());
                if fin.proof.len() != signature.len() {
                    return Err(bad_password(m, &user));
                }
                let client_key: Vec<u8> = fin.proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let stored = digest::digest(scram.digest(), &client_key);
                if !constant_eq(stored.as_ref(), &cred.stored_key) {
                    return Err(bad_password(m, &user));
                }
                let verifier = mac(scram, &cred.server_key, auth_message.as_bytes());
                self.authenticated(user, now, None)?;
                Ok(Stepped::Done(format!("v={}", B64.encode(verifier)).into_bytes()))
            }
        }
    }

    /// PLAIN's `authzid NUL authcid NUL password`, checked against the user's credentials.
    fn plain(&self, token: &[u8]) -> Result<String, Failed> {
        let failed = |log: String| Failed {
            message: "Authentication failed: Invalid username or password".into(),
            log,
        };
        let mut parts = token.splitn(3, |b| *b == 0);
        let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(failed("a malformed PLAIN token".into()));
        };
        let user =
            String::from_utf8(user.to_vec()).map_err(|_| failed("a user name that is not UTF-8".into()))?;
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err(Failed {
                message: "Authentication failed: Client requested an authorization id that is different from username".into(),
                log: format!("user {user:?} asked for another authorization id"),
            });
        }
        // The strongest stored credential decides.
        let cred = [Scram::Sha512, Scram::Sha256]
            .into_iter()
            .find_map(|s| self.cfg.users.get(&user, s).map(|c| (s, c)));
        match cred {
            Some((s, c)) if c.matches(s, password) => Ok(user),
            Some(_) => Err(failed(format!("wrong password for user {user:?} (PLAIN)"))),
            None => Err(failed(format!("unknown user {user:?} (PLAIN)"))),
        }
    }

    /// `user` authenticated at `now`; a token's credential ends after `credential_left`.
    fn authenticated(
        &mut self,
        user: String,
        now: Instant,
        credential_left: Option<Duration>,
    ) -> Result<(), Failed> {
        let principal = format!("User:{user}");
        if let Some(before) = &self.principal
            && *before != principal
        {
            return Err(Failed {
                message: "Cannot change principals during re-authentication".into(),
                log: format!("re-authentication as {principal} on a connection of {before}"),
            });
        }
        tracing::debug!(principal, "SASL authenticated");
        self.principal = Some(principal);
        // KIP-368: the session ends with the re-authentication deadline or the credential,
        // whichever is first.
        let left = match (self.cfg.reauth, credential_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // (A far-off expiry is no expiry.)
        self.expires = left.and_then(|d| now.checked_add(d));
        Ok(())
    }
}

enum Stepped {
    Continue(Vec<u8>),
    Done(Vec<u8>),
}

fn invalid(m: Mechanism, why: &str) -> Failed {
    Failed {
        message: format!("Authentication failed: invalid {} message: {why}", m.name()),
        log: format!("an invalid {} message: {why}", m.name()),
    }
}

fn bad_password(m: Mechanism, user: &str) -> Failed {
    Failed {
        message: format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            m.name()
        ),
        log: format!("wrong password for user {user:?} ({})", m.name()),
    }
}

/// RFC 5802's client-first-message: `gs2-header client-first-message-bare`.
#[derive(Debug, PartialEq)]
struct ClientFirst {
    user: String,
    nonce: String,
    bare: String,
}

impl ClientFirst {
    fn parse(token: &[u8]) -> Result<ClientFirst, String> {
        let text = std::str::from_utf8(token).map_err(|_| "not UTF-8".to_string())?;
        // gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = text.split_once(',').ok_or("no GS2 header")?;
        if !matches!(flag, "n" | "y") {
            return Err("channel binding is not supported".into());
        }
        let (authzid, bare) = rest.split_once(',').ok_or("no GS2 header")?;
        let mut user = None;
        let mut nonce = None;
        for attr in bare.split(',') {
            match attr.split_once('=') {
                Some(("n", v)) => user = Some(unescape_name(v)?),
                Some(("r", v))
                    if !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') =>
                {
                    nonce = Some(v.to_string())
                }
                Some(("m", _)) => return Err("mandatory extensions are not supported".into()),
                // Kafka's extensions (tokenauth=...) and others are ignored.
                _ => {}
            }
        }
        let user = user.ok_or("no user name")?;
        if let Some(a) = authzid.strip_prefix("a=")
            && unescape_name(a)? != user
        {
            return Err("an authorization id different from the user name".into());
        }
        Ok(ClientFirst { user, nonce: nonce.ok_or("no nonce")?, bare: bare.to_string() })
    }
}

/// `=2C` is `,` and `=3D` is `=` in SCRAM names.
fn unescape_name(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("a badly escaped user name".into()),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err("an empty user name".into());
    }
    Ok(out)
}

/// RFC 5802's client-final-message: `c=…,r=…[,extensions],p=…`.
#[derive(Debug, PartialEq)]
struct ClientFinal {
    nonce: String,
    proof: Vec<u8>,
    without_proof: String,
}

impl ClientFinal {
    fn parse(token: &[u8]) -> Result<ClientFinal, String> {
        let text = std::str::from_utf8(token).map_err(|_| "not UTF-8".to_string())?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("no proof")?;
        let mut nonce = None;
        let mut binding = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => binding = Some(v),
                Some(("r", v)) => nonce = Some(v.to_string()),
                _ => {}
            }
        }
        // "biws" is base64("n,,"), "eSws" base64("y,,"): no channel binding, no authzid.
        let binding = B64.decode(binding.ok_or("no channel binding")?).map_err(|_| "bad channel binding")?;
        if !(binding.starts_with(b"n,") || binding.starts_with(b"y,")) {
            return Err("channel binding is not supported".into());
        }
        let proof = B64.decode(proof).map_err(|_| "the proof is not base64".to_string())?;
        Ok(ClientFinal { nonce: nonce.ok_or("no nonce")?, proof, without_proof: without_proof.to_string() })
    }
}

/// The request header fields a SASL request needs.
struct Header {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    /// Where the body starts.
    body: usize,
}

impl Header {
    fn parse(frame: &[u8]) -> Option<Header> {
        let FrameHeader { api_key, api_version, correlation_id } = FrameHeader::parse(frame)?;
        // client_id: a nullable int16-length string in every header version.
        let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
        let mut body = 10 + usize::try_from(len).unwrap_or(0);
        if body > frame.len() {
            return None;
        }
        // Request header v2 (SaslAuthenticate v2) ends with tagged fields.
        if api_key == SASL_AUTHENTICATE && api_version >= 2 {
            body = skip_tags(frame, body)?;
        }
        Some(Header { api_key, api_version, correlation_id, body })
    }
}

fn uvarint(frame: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..35).step_by(7) {
        let b = *frame.get(at)?;
        at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, at));
        }
    }
    None
}

fn skip_tags(frame: &[u8], at: usize) -> Option<usize> {
    let (n, mut at) = uvarint(frame, at)?;
    for _ in 0..n.min(1024) {
        let (_, after_tag) = uvarint(frame, at)?;
        let (size, after_size) = uvarint(frame, after_tag)?;
        at = after_size.checked_add(usize::try_from(size).ok()?)?;
        if at > frame.len() {
            return None;
        }
    }
    Some(at)
}

fn read_string(frame: &[u8], at: usize) -> Option<(String, usize)> {
    let len = usize::try_from(i16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?])).ok()?;
    let s = frame.get(at + 2..at + 2 + len)?;
    Some((String::from_utf8(s.to_vec()).ok()?, at + 2 + len))
}

fn read_auth_bytes(frame: &[u8], at: usize, flexible: bool) -> Option<&[u8]> {
    if flexible {
        let (n, at) = uvarint(frame, at)?;
        let len = usize::try_from(n.checked_sub(1)?).ok()?;
        frame.get(at..at.checked_add(len)?)
    } else {
        let b = frame.get(at..at + 4)?;
        let len = usize::try_from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()?;
        frame.get(at + 4..(at + 4).checked_add(len)?)
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// SaslHandshake response v0–v1 (header v0).
fn handshake_response(correlation_id: i32, code: i16, mechanisms: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(correlation_id);
    b.put_i16(code);
    b.put_i32(mechanisms.len() as i32);
    for m in mechanisms {
        b.put_i16(m.len() as i16);
        b.put_slice(m.as_bytes());
    }
    b.freeze()
}

/// SaslAuthenticate response v0–v2 (header v1 with tagged fields at v2).
fn authenticate_response(
    correlation_id: i32,
    v: i16,
    code: i16,
    message: Option<&str>,
    auth: &[u8],
    lifetime: i64,
) -> Bytes {
    let flexible = v >= 2;
    let mut b = BytesMut::new();
    b.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut b, 0);
    }
    b.put_i16(code);
    match (message, flexible) {
        (None, false) => b.put_i16(-1),
        (Some(m), false) => {
            b.put_i16(m.len() as i16);
            b.put_slice(m.as_bytes());
        }
        (None, true) => put_uvarint(&mut b, 0),
        (Some(m), true) => {
            put_uvarint(&mut b, m.len() as u64 + 1);
            b.put_slice(m.as_bytes());
        }
    }
    if flexible {
        put_uvarint(&mut b, auth.len() as u64 + 1);
    } else {
        b.put_i32(auth.len() as i32);
    }
    b.put_slice(auth);
    if v >= 1 {
        b.put_i64(lifetime);
    }
    if flexible {
        put_uvarint(&mut b, 0);
    }
    b.freeze()
}

pub mod oauth;
#[cfg(test)]
mod tests;
