//! The tenant room: who a tenant is and what its names may be.
//!
//! - [`TenantId`]: a tenant's name, checked by one rule when it enters the host (config load, a
//!   listener, the admin API, a Pulsar topic name). Tenants become directory names and registry
//!   scopes, so the rule is narrow: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
//! - [`names`]: Kafka's topic-name and partition-count rules, and the namespace rule.
//! - [`InternalTopics`]: the one registry of the host's internal topics (the coordinator's
//!   `__consumer_offsets`, the Pulsar cursor store's `__pulsar_cursors`), which every front end
//!   consults before a client may touch a topic.
//!
//! This room imports nothing of the host but the neutral record room.

mod internal;
pub mod names;

pub use internal::{InternalTopic, InternalTopics};
pub use names::NameError;

use std::fmt;

/// The longest tenant name.
pub const MAX_TENANT_LEN: usize = 64;

/// Why a tenant name was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TenantError {
    #[error("invalid tenant {0:?}: use 1 to 64 characters of a-z, 0-9, '-' and '_'")]
    Invalid(String),
}

/// A tenant's name, valid by construction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Check `name` against the tenant rule.
    pub fn new(name: impl AsRef<str>) -> Result<TenantId, TenantError> {
        let name = name.as_ref();
        let ok = (1..=MAX_TENANT_LEN).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok { Ok(TenantId(name.to_string())) } else { Err(TenantError::Invalid(name.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for TenantId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Ordered and hashed as its string, so maps keyed by tenant can be searched with a `&str`.
impl std::borrow::Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TenantId {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for TenantId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TenantId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule() {
        for ok in ["public", "acme", "a", "team-1_x", &"a".repeat(64)] {
            assert_eq!(TenantId::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Acme", "a/b", "..", ".", "a b", "ü", "a.b", &"a".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
        let e = TenantId::new("A").unwrap_err().to_string();
        assert!(e.contains("a-z, 0-9"), "{e}");
    }

    #[test]
    fn deserializes_only_valid_names() {
        #[derive(serde::Deserialize)]
        struct C {
            t: TenantId,
        }
        assert_eq!(toml::from_str::<C>("t = \"acme\"").unwrap().t, "acme");
        let e = toml::from_str::<C>("t = \"Acme\"").err().unwrap().to_string();
        assert!(e.contains("invalid tenant"), "{e}");
    }
}
