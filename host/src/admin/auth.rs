//! Who may call the admin API, and as what.
//!
//! Credentials: bearer tokens (`[admin_tokens.NAME]`, each the token itself in a file or only its
//! SHA-256 in the configuration) and verified client certificates (`admin_tls` with
//! `tls_client_auth`). Roles: an **operator** may do everything; a **tenant** credential may
//! manage only that tenant's transforms and see only its groups and metrics.
//!
//! With no credential configured the API is open, as before (loopback by default). Once any is,
//! every request but `/health` must carry one: none gets 401, a wrong token 401 (answered after
//! `connection_failed_authentication_delay_ms`), a role that does not reach the resource 403.
//! The host keeps only the tokens' SHA-256, compares them in constant time, and never logs them.

use crate::net::principals::{TenantMap, Via};
use crate::tenant::TenantId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A token shorter than this is refused at load: it could be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(thiserror::Error, Debug)]
pub enum AuthError {
    #[error("admin_tokens.{name}: {message}")]
    Token { name: String, message: String },
    #[error("admin_operators: {0:?} is not a principal such as \"User:CN=ops\"")]
    Operator(String),
}

/// One `[admin_tokens.NAME]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `operator` or `tenant`.
    pub role: RoleName,
    /// With `role = "tenant"`: the tenant it manages.
    pub tenant: Option<TenantId>,
    /// A file holding the token (read at start).
    pub token_file: Option<PathBuf>,
    /// Or the token's SHA-256, hex (as `guise admin-token` prints it).
    pub sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Operator,
    Tenant,
}

/// What a caller may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything: modules (the translator), every tenant's transforms, groups and metrics.
    Operator,
    /// This tenant's transforms, groups and metrics.
    Tenant(TenantId),
}

impl Role {
    /// Whether this role may see and manage `tenant`'s resources.
    pub fn reaches(&self, tenant: &str) -> bool {
        match self {
            Role::Operator => true,
            Role::Tenant(t) => t.as_str() == tenant,
        }
    }

    /// The one tenant this role is limited to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Role::Operator => None,
            Role::Tenant(t) => Some(t.as_str()),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// For logs: `token NAME`, a certificate's principal, or `anonymous` when the API is open.
    pub name: String,
    pub role: Role,
}

/// Why a request was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no credential, or one that is not valid.
    Unauthenticated(&'static str),
    /// 403: authenticated, but with no admin role.
    NoRole(String),
}

struct Token {
    name: String,
    sha256: [u8; 32],
    role: Role,
}

/// The admin API's credentials.
pub struct AdminAuth {
    tokens: Vec<Token>,
    operators: Vec<String>,
    tenants: TenantMap,
}

impl AdminAuth {
    /// From `[admin_tokens]` (token files are read now) and `admin_operators`; certificate
    /// principals that are not operators get the tenant `tenants` maps them to.
    pub fn load(
        tokens: &BTreeMap<String, TokenConfig>,
        operators: &[String],
        tenants: TenantMap,
    ) -> Result<AdminAuth, AuthError> {
        let mut loaded = Vec::with_capacity(tokens.len());
        for (name, t) in tokens {
            let err = |message: String| AuthError::Token { name: name.clone(), message };
            let role = match (t.role, &t.tenant) {
                (RoleName::Operator, None) => Role::Operator,
                (RoleName::Tenant, Some(tenant)) => Role::Tenant(tenant.clone()),
                (RoleName::Operator, Some(_)) => return Err(err("an operator token names no tenant".into())),
                (RoleName::Tenant, None) => {
                    return Err(err("role = \"tenant\" needs tenant = \"NAME\"".into()));
                }
            };
            let sha256 = match (&t.token_file, &t.sha256) {
                (Some(path), None) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| err(format!("reading token_file {}: {e}", path.display())))?;
                    crate::logs::warn_if_readable_by_others(path, "an admin token file");
                    let token = text.trim();
                    if token.chars().count() < MIN_TOKEN_CHARS || token.contains(char::is_whitespace) {
                        return Err(err(format!(
                            "the token in {} must be one word of at least {MIN_TOKEN_CHARS} characters \
                             (`guise admin-token` makes one)",
                            path.display()
                        )));
                    }
                    digest(token)
                }
                (None, Some(hex)) => parse_hex32(hex).ok_or_else(|| {
                    err("sha256 must be 64 hex digits (`guise admin-token` prints it)".into())
                })?,
                _ => return Err(err("give exactly one of token_file and sha256".into())),
            };
            if let Some(other) = loaded.iter().find(|o: &&Token| o.sha256 == sha256) {
                return Err(err(format!("the same token as admin_tokens.{}", other.name)));
            }
            loaded.push(Token { name: name.clone(), sha256, role });
        }
        if let Some(bad) =
            operators.iter().find(|p| p.split_once(':').is_none_or(|(t, n)| t.is_empty() || n.is_empty()))
        {
            return Err(AuthError::Operator(bad.clone()));
        }
        Ok(AdminAuth { tokens: loaded, operators: operators.to_vec(), tenants })
    }

    /// Whether requests must carry a credential (any is configured).
    pub fn required(&self) -> bool {
        !self.tokens.is_empty() || !self.operators.is_empty()
    }

    /// The caller of a request with this `Authorization` header, on a connection whose client
    /// certificate (verified) gave `principal`.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        principal: Option<&str>,
    ) -> Result<Caller, Refusal> {
        if !self.required() {
            return Ok(Caller { name: "anonymous".into(), role: Role::Operator });
        }
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or(Refusal::Unauthenticated("the Authorization header is not `Bearer TOKEN`"))?;
            let sha256 = digest(token);
            // Every token is compared, each in constant time: the time says nothing of which
            // (or whether one) matched.
            let mut found = None;
            for t in &self.tokens {
                if constant_time_eq(&t.sha256, &sha256) {
                    found = Some(t);
                }
            }
            return found
                .map(|t| Caller { name: format!("token {}", t.name), role: t.role.clone() })
                .ok_or(Refusal::Unauthenticated("the bearer token is not valid"));
        }
        if let Some(principal) = principal {
            if self.operators.iter().any(|o| o == principal) {
                return Ok(Caller { name: principal.to_string(), role: Role::Operator });
            }
            return match self.tenants.tenant_of(principal, Via::Certificate) {
                Some(tenant) => Ok(Caller { name: principal.to_string(), role: Role::Tenant(tenant) }),
                None => Err(Refusal::NoRole(format!(
                    "{principal} has no admin role (admin_operators, principal_tenants)"
                ))),
            };
        }
        Err(Refusal::Unauthenticated("authentication required: send Authorization: Bearer TOKEN"))
    }
}

/// A token's SHA-256, as the host keeps it.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex of a digest, as the configuration's `sha256` takes it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token (256 bits, URL-safe base64) for `guise admin-token`.
pub fn generate_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(dir: &std::path::Path, name: &str, value: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path
    }

    fn cfg(role: RoleName, tenant: Option<&str>, file: Option<PathBuf>, sha: Option<String>) -> TokenConfig {
        TokenConfig { role, tenant: tenant.map(|t| TenantId::new(t).unwrap()), token_file: file, sha256: sha }
    }

    #[test]
    fn tokens_certificates_and_roles() {
        let dir = tempfile::tempdir().unwrap();
        let ops = "ops-0123456789abcdef";
        let acme = generate_token();
        assert!(acme.len() >= 43 && !acme.contains(['+', '/', '=']), "{acme}");
        let tokens = BTreeMap::from([
            ("ops".to_string(), cfg(RoleName::Operator, None, Some(token(dir.path(), "ops", ops)), None)),
            ("acme".to_string(), cfg(RoleName::Tenant, Some("acme"), None, Some(hex(&digest(&acme))))),
        ]);
        let acme_id = TenantId::new("acme").unwrap();
        let map = TenantMap {
            explicit: [("User:CN=ci,O=Acme".to_string(), acme_id.clone())].into_iter().collect(),
            sasl_prefix: true,
        };
        let auth = AdminAuth::load(&tokens, &["User:CN=ops".into()], map).unwrap();
        assert!(auth.required());
        let who = |h: Option<&str>, p: Option<&str>| auth.authenticate(h, p);
        assert_eq!(who(Some(&format!("Bearer {ops}")), None).unwrap().role, Role::Operator);
        let caller = who(Some(&format!("Bearer {acme}")), None).unwrap();
        assert_eq!(caller, Caller { name: "token acme".into(), role: Role::Tenant(acme_id.clone()) });
        assert!(caller.role.reaches("acme") && !caller.role.reaches("other"));
        assert!(matches!(who(Some("Bearer nope-0123456789abcdef"), None), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(who(Some(&format!("Basic {ops}")), None), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(who(None, None), Err(Refusal::Unauthenticated(_))));
        // A token wins over the certificate: a wrong one is refused, whatever the certificate.
        assert!(who(Some("Bearer x"), Some("User:CN=ops")).is_err());
        assert_eq!(who(None, Some("User:CN=ops")).unwrap().role, Role::Operator);
        assert_eq!(who(None, Some("User:CN=ci,O=Acme")).unwrap().role, Role::Tenant(acme_id));
        assert!(matches!(who(None, Some("User:CN=stranger")), Err(Refusal::NoRole(_))));
        // SASL-style names do not map a certificate.
        assert!(who(None, Some("User:acme/alice")).is_err());

        let open = AdminAuth::load(&BTreeMap::new(), &[], TenantMap::default()).unwrap();
        assert!(!open.required());
        assert_eq!(open.authenticate(None, None).unwrap().role, Role::Operator);
    }

    #[test]
    fn bad_credentials_are_refused_at_load_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let load = |c: TokenConfig| {
            AdminAuth::load(&BTreeMap::from([("t".to_string(), c)]), &[], TenantMap::default())
                .err()
                .map(|e| e.to_string())
        };
        let short = token(dir.path(), "short", "tooshort");
        let e = load(cfg(RoleName::Operator, None, Some(short), None)).unwrap();
        assert!(e.contains("at least 16") && !e.contains("tooshort"), "{e}");
        let e = load(cfg(RoleName::Tenant, None, None, Some("00".repeat(32)))).unwrap();
        assert!(e.contains("needs tenant"), "{e}");
        let e = load(cfg(RoleName::Operator, Some("acme"), None, Some("00".repeat(32)))).unwrap();
        assert!(e.contains("names no tenant"), "{e}");
        let e = load(cfg(RoleName::Operator, None, None, Some("xyz".into()))).unwrap();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = load(cfg(RoleName::Operator, None, None, None)).unwrap();
        assert!(e.contains("exactly one"), "{e}");
        let e = load(cfg(RoleName::Operator, None, Some(dir.path().join("missing")), None)).unwrap();
        assert!(e.contains("reading token_file"), "{e}");
        let same = BTreeMap::from([
            ("a".to_string(), cfg(RoleName::Operator, None, None, Some("ab".repeat(32)))),
            ("b".to_string(), cfg(RoleName::Operator, None, None, Some("AB".repeat(32)))),
        ]);
        let e = AdminAuth::load(&same, &[], TenantMap::default()).err().unwrap().to_string();
        assert!(e.contains("same token"), "{e}");
        let e = AdminAuth::load(&BTreeMap::new(), &["CN=ops".into()], TenantMap::default()).err().unwrap();
        assert!(matches!(e, AuthError::Operator(_)));
    }
}
