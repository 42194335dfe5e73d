//! SCRAM credentials (RFC 5802/7677): what is stored instead of a password, where it comes
//! from, and who may change it.
//!
//! Two sources: the `sasl_users_file` an operator writes (read at start, never changed by the
//! host), and credentials managed with Kafka's AlterUserScramCredentials (`kafka-configs
//! --entity-type users`), kept in the internal topic `__scram_credentials` of the main tenant's
//! reserved namespace `__guise`, which no Kafka client can name and the Pulsar endpoint refuses.
//! Each record is one (user, mechanism): the last wins, a tombstone deletes, so the topic
//! compacts where the log compacts; it is replayed at start.
//!
//! Users belong to tenants as their principals do (the host hands [`Store`] that rule): a
//! connection sees and changes only its own tenant's users.

use crate::record::TopicName;
use crate::storage::{Log, StorageError, kv};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::RwLock;
use ring::{digest, hmac, pbkdf2};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

#[cfg(test)]
mod tests;

#[derive(thiserror::Error, Debug)]
pub enum ScramError {
    #[error("reading sasl_users_file {path}: {message}")]
    Users { path: String, message: String },
    #[error("replaying {topic}: {source}")]
    Replay { topic: String, source: StorageError },
}

/// The fewest PBKDF2 iterations a credential may have (Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most (Kafka's maximum for AlterUserScramCredentials).
pub const MAX_ITERATIONS: u32 = 16384;

/// Kafka's error codes these answers carry.
use guise_guest_sdk::error::{
    CLUSTER_AUTHORIZATION_FAILED, DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND, UNACCEPTABLE_CREDENTIAL,
    UNKNOWN_SERVER_ERROR, UNSUPPORTED_SASL_MECHANISM,
};

/// The namespace of the host's own topics that no client may reach.
pub const RESERVED_NAMESPACE: &str = "__guise";
/// The topic credentials are kept in.
pub const TOPIC: &str = "__scram_credentials";

/// A SCRAM hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scram {
    Sha256,
    Sha512,
}

impl Scram {
    /// Kafka's mechanism code (DescribeUserScramCredentials, AlterUserScramCredentials).
    pub fn code(self) -> i8 {
        match self {
            Scram::Sha256 => 1,
            Scram::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Scram> {
        [Scram::Sha256, Scram::Sha512].into_iter().find(|s| s.code() == code)
    }

    /// The SASL mechanism's name.
    pub fn name(self) -> &'static str {
        match self {
            Scram::Sha256 => "SCRAM-SHA-256",
            Scram::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<Scram> {
        [Scram::Sha256, Scram::Sha512].into_iter().find(|s| s.name() == name)
    }

    /// PBKDF2 of `password` (RFC 5802's SaltedPassword), what a Kafka client sends in
    /// AlterUserScramCredentials.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut salted = vec![0u8; self.key_len()];
        let n = NonZeroU32::new(iterations.max(1)).expect("at least one");
        pbkdf2::derive(self.pbkdf2(), n, salt, password, &mut salted);
        salted
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Scram::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Scram::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Scram::Sha256 => hmac::HMAC_SHA256,
            Scram::Sha512 => hmac::HMAC_SHA512,
        }
    }
    pub fn digest(self) -> &'static digest::Algorithm {
        match self {
            Scram::Sha256 => &digest::SHA256,
            Scram::Sha512 => &digest::SHA512,
        }
    }
    /// The hash's output length: of keys and of salted passwords.
    pub fn key_len(self) -> usize {
        self.digest().output_len()
    }
}

/// A stored SCRAM credential: what RFC 5802 keeps instead of the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

pub fn mac(scram: Scram, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(scram.hmac(), key), data).as_ref().to_vec()
}

impl Credential {
    /// The credential of `password` with `salt` and `iterations`.
    pub fn derive(scram: Scram, password: &[u8], salt: &[u8], iterations: u32) -> Credential {
        let salted = scram.salted_password(password, salt, iterations);
        Credential::from_salted(scram, &salted, salt, iterations)
    }

    /// The credential of a salted password (PBKDF2 of the password with `salt` and
    /// `iterations`), as AlterUserScramCredentials carries it.
    pub fn from_salted(scram: Scram, salted: &[u8], salt: &[u8], iterations: u32) -> Credential {
        let client_key = mac(scram, salted, b"Client Key");
        let stored_key = digest::digest(scram.digest(), &client_key).as_ref().to_vec();
        let server_key = mac(scram, salted, b"Server Key");
        Credential { salt: salt.to_vec(), iterations, stored_key, server_key }
    }

    /// A new credential of `password` with a random salt.
    pub fn new(scram: Scram, password: &[u8], iterations: u32) -> Credential {
        let mut salt = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .expect("system randomness");
        Credential::derive(scram, password, &salt, iterations)
    }

    /// Whether `password` is the one this credential was derived from (in constant time).
    pub fn matches(&self, scram: Scram, password: &[u8]) -> bool {
        let other = Credential::derive(scram, password, &self.salt, self.iterations);
        constant_eq(&other.stored_key, &self.stored_key)
    }
}

pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The users and their credentials.
#[derive(Clone, Debug, Default)]
pub struct Users {
    creds: HashMap<String, HashMap<Scram, Credential>>,
}

/// One credential as the users file holds it (base64 fields).
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct StoredCredential {
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

impl Users {
    pub fn insert(&mut self, user: &str, scram: Scram, cred: Credential) {
        self.creds.entry(user.to_string()).or_default().insert(scram, cred);
    }

    pub fn remove(&mut self, user: &str, scram: Scram) -> Option<Credential> {
        let creds = self.creds.get_mut(user)?;
        let removed = creds.remove(&scram);
        if creds.is_empty() {
            self.creds.remove(user);
        }
        removed
    }

    /// The users with at least one credential.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.creds.keys().cloned()
    }

    pub fn len(&self) -> usize {
        self.creds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.creds.is_empty()
    }

    pub fn get(&self, user: &str, scram: Scram) -> Option<&Credential> {
        self.creds.get(user)?.get(&scram)
    }

    /// Read a users file: `[users.NAME."SCRAM-SHA-256"]` tables with `salt`, `iterations`,
    /// `stored_key` and `server_key` (base64), as `guise scram-credential` prints them.
    pub fn load(path: &Path) -> Result<Users, ScramError> {
        let err = |message: String| ScramError::Users { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        crate::logs::warn_if_readable_by_others(path, "sasl_users_file");
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            users: HashMap<String, HashMap<String, StoredCredential>>,
        }
        let file: File = toml::from_str(&text).map_err(|e| err(e.message().to_string()))?;
        let mut users = Users::default();
        for (user, creds) in file.users {
            for (mech, c) in creds {
                let scram = Scram::parse(&mech).ok_or_else(|| {
                    err(format!("user {user}: {mech} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
                })?;
                let bytes = |field: &str, v: &str| {
                    B64.decode(v).map_err(|e| err(format!("user {user} {mech}: {field} is not base64: {e}")))
                };
                let cred = Credential {
                    salt: bytes("salt", &c.salt)?,
                    iterations: c.iterations,
                    stored_key: bytes("stored_key", &c.stored_key)?,
                    server_key: bytes("server_key", &c.server_key)?,
                };
                if cred.iterations < MIN_ITERATIONS
                    || cred.stored_key.len() != scram.key_len()
                    || cred.server_key.len() != scram.key_len()
                {
                    return Err(err(format!(
                        "user {user} {mech}: keys of {} bytes and at least {MIN_ITERATIONS} iterations expected",
                        scram.key_len()
                    )));
                }
                users.insert(&user, scram, cred);
            }
        }
        Ok(users)
    }

    /// `cred` of `user` as a users file's table.
    pub fn entry(user: &str, scram: Scram, cred: &Credential) -> String {
        let stored = StoredCredential {
            salt: B64.encode(&cred.salt),
            iterations: cred.iterations,
            stored_key: B64.encode(&cred.stored_key),
            server_key: B64.encode(&cred.server_key),
        };
        let quoted = serde_json::to_string(user).expect("a string");
        let body = toml::to_string(&stored).expect("plain fields");
        format!("[users.{quoted}.\"{}\"]\n{body}", scram.name())
    }
}

/// AlterUserScramCredentials: set `user`'s credential for `mechanism` (Kafka's code) from a
/// salted password the client computed.
#[derive(Clone, Debug)]
pub struct Upsertion {
    pub user: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// AlterUserScramCredentials: remove `user`'s credential for `mechanism`.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub user: String,
    pub mechanism: i8,
}

/// A Kafka error code and its message.
pub type Refused = (i16, String);

/// One user's (mechanism code, iterations), or why not.
pub type Described = Result<Vec<(i8, i32)>, Refused>;

/// The tenant a user belongs to.
pub type OwnerFn = dyn Fn(&str) -> String + Send + Sync;

/// A stored record's key.
#[derive(serde::Serialize, serde::Deserialize)]
struct Key {
    user: String,
    mechanism: String,
}

/// Every SCRAM credential the host authenticates with.
pub struct Store {
    file: Users,
    stored: RwLock<Users>,
    /// None: nothing can be changed (a host without a log, in tests).
    log: Option<Arc<dyn Log>>,
    topic: TopicName,
    owner: Box<OwnerFn>,
    /// One change at a time: validated, appended and applied together.
    writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and counts only: never a credential.
        f.debug_struct("Store")
            .field("file_users", &self.file.len())
            .field("stored_users", &self.stored.read().len())
            .field("topic", &self.topic)
            .finish()
    }
}

impl Store {
    /// Only the users of a file, unchangeable, all in tenant `public`.
    pub fn from_file(file: Users) -> Store {
        Store {
            file,
            stored: RwLock::new(Users::default()),
            log: None,
            topic: TopicName::new("public", RESERVED_NAMESPACE, TOPIC),
            owner: Box::new(|_| "public".to_string()),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The file's users and those stored in `main_tenant`'s `__scram_credentials` on `log`
    /// (after [`load`](Self::load)); `owner` says which tenant a user belongs to.
    pub fn new(file: Users, log: Arc<dyn Log>, main_tenant: &str, owner: Box<OwnerFn>) -> Store {
        Store {
            log: Some(log),
            topic: TopicName::new(main_tenant, RESERVED_NAMESPACE, TOPIC),
            owner,
            ..Store::from_file(file)
        }
    }

    /// The topic credentials are stored in.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// Read the stored credentials (at start, before any listener accepts).
    pub async fn load(&self) -> Result<usize, ScramError> {
        let Some(log) = &self.log else { return Ok(0) };
        let mut users = Users::default();
        kv::replay(&**log, &self.topic, |key, value| {
            let Some((user, scram)) = parse_key(key) else {
                tracing::warn!(topic = %self.topic, "skipped a record whose key is not a user and mechanism");
                return;
            };
            match value.map(|v| decode_credential(scram, v)) {
                None => {
                    users.remove(&user, scram);
                }
                Some(Ok(cred)) => users.insert(&user, scram, cred),
                Some(Err(why)) => tracing::warn!(topic = %self.topic, user, "skipped a credential: {why}"),
            }
        })
        .await
        .map_err(|source| ScramError::Replay { topic: self.topic.to_string(), source })?;
        let n = users.len();
        *self.stored.write() = users;
        Ok(n)
    }

    /// `user`'s credential for `scram`: a stored one, else the file's.
    pub fn get(&self, user: &str, scram: Scram) -> Option<Credential> {
        if let Some(c) = self.stored.read().get(user, scram) {
            return Some(c.clone());
        }
        self.file.get(user, scram).cloned()
    }

    /// The mechanisms and iterations of `user`'s credentials, from both sources.
    fn infos(&self, user: &str) -> Vec<(i8, i32)> {
        let stored = self.stored.read();
        [Scram::Sha256, Scram::Sha512]
            .into_iter()
            .filter_map(|s| {
                let c = stored.get(user, s).or_else(|| self.file.get(user, s))?;
                Some((s.code(), i32::try_from(c.iterations).unwrap_or(i32::MAX)))
            })
            .collect()
    }

    /// DescribeUserScramCredentials for `tenant`: the named users (None or none named: every
    /// user of the tenant with a credential, by name), each with its (mechanism code,
    /// iterations), or RESOURCE_NOT_FOUND / DUPLICATE_RESOURCE.
    pub fn describe(&self, tenant: &str, users: Option<&[String]>) -> Vec<(String, Described)> {
        let names: Vec<String> = match users {
            Some(named) if !named.is_empty() => named.to_vec(),
            _ => {
                let mut all: Vec<String> = self
                    .file
                    .names()
                    .chain(self.stored.read().names())
                    .filter(|u| (self.owner)(u) == tenant)
                    .collect();
                all.sort();
                all.dedup();
                all
            }
        };
        let mut out: Vec<(String, Described)> = Vec::new();
        for name in &names {
            if out.iter().any(|(u, _)| u == name) {
                continue;
            }
            let result = if names.iter().filter(|n| *n == name).count() > 1 {
                Err((
                    DUPLICATE_RESOURCE,
                    "Cannot describe SCRAM credentials for the same user twice in a single request".into(),
                ))
            } else {
                let infos = if (self.owner)(name) == tenant { self.infos(name) } else { Vec::new() };
                if infos.is_empty() {
                    Err((RESOURCE_NOT_FOUND, "Attempt to describe nonexistent user credentials".into()))
                } else {
                    Ok(infos)
                }
            };
            out.push((name.clone(), result));
        }
        out
    }

    /// AlterUserScramCredentials for `tenant`: one result per user named, in order of first
    /// appearance (deletions, then upsertions). A user's changes are applied only if all of them
    /// are valid; the valid users' changes are stored in one batch before they take effect.
    pub async fn alter(
        &self,
        tenant: &str,
        deletions: &[Deletion],
        upsertions: &[Upsertion],
    ) -> Vec<(String, Result<(), Refused>)> {
        let _one_at_a_time = self.writes.lock().await;
        let mut results: Vec<(String, Result<(), Refused>)> = Vec::new();
        let mut records: Vec<kv::Record> = Vec::new();
        let mut changes: Vec<(String, Scram, Option<Credential>)> = Vec::new();
        for user in users_named(deletions, upsertions) {
            let user = user.as_str();
            match self.check_user(tenant, user, deletions, upsertions) {
                Ok(mine) => {
                    for (scram, cred) in mine {
                        let key = serde_json::to_vec(&Key {
                            user: user.to_string(),
                            mechanism: scram.name().into(),
                        })
                        .expect("a key serializes");
                        records.push((key, cred.as_ref().map(encode_credential)));
                        changes.push((user.to_string(), scram, cred));
                    }
                    results.push((user.to_string(), Ok(())));
                }
                Err(refused) => results.push((user.to_string(), Err(refused))),
            }
        }
        if records.is_empty() {
            return results;
        }
        let Some(log) = &self.log else {
            let why = "this host keeps no SCRAM credentials of its own".to_string();
            return results
                .into_iter()
                .map(|(u, r)| (u, r.and(Err((UNKNOWN_SERVER_ERROR, why.clone())))))
                .collect();
        };
        let configs = || {
            let mut configs = Vec::new();
            if log.compacts() {
                configs.push(("cleanup.policy".to_string(), "compact".to_string()));
            }
            configs
        };
        if let Err(e) = kv::append(&**log, &self.topic, configs, &records).await {
            tracing::warn!(topic = %self.topic, "storing SCRAM credentials failed: {e}");
            let why = format!("storing the credentials failed: {e}");
            return results
                .into_iter()
                .map(|(u, r)| (u, r.and(Err((UNKNOWN_SERVER_ERROR, why.clone())))))
                .collect();
        }
        let mut stored = self.stored.write();
        for (user, scram, cred) in changes {
            tracing::info!(
                user,
                mechanism = scram.name(),
                change = if cred.is_some() { "set" } else { "deleted" },
                "SCRAM credential changed"
            );
            match cred {
                Some(cred) => stored.insert(&user, scram, cred),
                None => {
                    stored.remove(&user, scram);
                }
            }
        }
        results
    }

    /// `user`'s change in the request, checked as Kafka checks it: (mechanism, the new
    /// credential or None to delete). A user may be named once per request.
    fn check_user(
        &self,
        tenant: &str,
        user: &str,
        deletions: &[Deletion],
        upsertions: &[Upsertion],
    ) -> Result<Vec<(Scram, Option<Credential>)>, Refused> {
        if user.is_empty() {
            return Err((UNACCEPTABLE_CREDENTIAL, "Username must not be empty".into()));
        }
        if (self.owner)(user) != tenant {
            return Err((CLUSTER_AUTHORIZATION_FAILED, format!("user {user:?} belongs to another tenant")));
        }
        let mine_d = deletions.iter().filter(|d| d.user == user).map(|d| (d.mechanism, None));
        let mine_u = upsertions.iter().filter(|u| u.user == user).map(|u| (u.mechanism, Some(u)));
        let mine: Vec<(i8, Option<&Upsertion>)> = mine_d.chain(mine_u).collect();
        // As Kafka's controller: a user's first change is checked, and its error wins; a valid
        // first change followed by any other change of the same user is DUPLICATE_RESOURCE.
        let mut out = Vec::new();
        for (code, upsert) in mine.iter().take(1) {
            let scram = Scram::from_code(*code)
                .ok_or((UNSUPPORTED_SASL_MECHANISM, format!("Unknown SCRAM mechanism {code}")))?;
            if self.file.get(user, scram).is_some() {
                return Err((
                    UNACCEPTABLE_CREDENTIAL,
                    format!(
                        "{user}'s {} credential is defined in sasl_users_file: change it there",
                        scram.name()
                    ),
                ));
            }
            match upsert {
                None => {
                    if self.stored.read().get(user, scram).is_none() {
                        return Err((
                            RESOURCE_NOT_FOUND,
                            "Attempt to delete a user credential that does not exist".into(),
                        ));
                    }
                    out.push((scram, None));
                }
                Some(u) => {
                    let iterations = u32::try_from(u.iterations).unwrap_or(0);
                    if iterations < MIN_ITERATIONS {
                        return Err((
                            UNACCEPTABLE_CREDENTIAL,
                            format!("Too few iterations: at least {MIN_ITERATIONS}"),
                        ));
                    }
                    if iterations > MAX_ITERATIONS {
                        return Err((
                            UNACCEPTABLE_CREDENTIAL,
                            format!("Too many iterations: at most {MAX_ITERATIONS}"),
                        ));
                    }
                    if u.salt.is_empty() || u.salted_password.len() != scram.key_len() {
                        return Err((
                            UNACCEPTABLE_CREDENTIAL,
                            format!("a salt and a salted password of {} bytes are needed", scram.key_len()),
                        ));
                    }
                    out.push((
                        scram,
                        Some(Credential::from_salted(scram, &u.salted_password, &u.salt, iterations)),
                    ));
                }
            }
        }
        if mine.len() > 1 {
            return Err((
                DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request".into(),
            ));
        }
        Ok(out)
    }
}

/// The users an AlterUserScramCredentials request names, each once, in order of first
/// appearance (deletions, then upsertions): its results are one per user, in this order.
pub fn users_named(deletions: &[Deletion], upsertions: &[Upsertion]) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    for u in deletions.iter().map(|d| &d.user).chain(upsertions.iter().map(|u| &u.user)) {
        if !users.contains(u) {
            users.push(u.clone());
        }
    }
    users
}

fn parse_key(key: &[u8]) -> Option<(String, Scram)> {
    let k: Key = serde_json::from_slice(key).ok()?;
    Some((k.user, Scram::parse(&k.mechanism)?))
}

fn encode_credential(c: &Credential) -> Vec<u8> {
    serde_json::to_vec(&StoredCredential {
        salt: B64.encode(&c.salt),
        iterations: c.iterations,
        stored_key: B64.encode(&c.stored_key),
        server_key: B64.encode(&c.server_key),
    })
    .expect("a credential serializes")
}

fn decode_credential(scram: Scram, value: &[u8]) -> Result<Credential, String> {
    let s: StoredCredential = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    let bytes = |v: &str| B64.decode(v).map_err(|e| e.to_string());
    let c = Credential {
        salt: bytes(&s.salt)?,
        iterations: s.iterations,
        stored_key: bytes(&s.stored_key)?,
        server_key: bytes(&s.server_key)?,
    };
    if c.iterations < MIN_ITERATIONS
        || c.stored_key.len() != scram.key_len()
        || c.server_key.len() != scram.key_len()
    {
        return Err(format!("not a {} credential", scram.name()));
    }
    Ok(c)
}
