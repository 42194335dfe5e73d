//! Principal → tenant: the tenant an authenticated connection belongs to. An explicit mapping
//! (`principal_tenants`, for any principal: a SASL user `User:alice` or a certificate's
//! `User:CN=writer,O=Acme`) comes first; then, for SASL users, a name `TENANT/USER` names its
//! tenant (`sasl_user_tenant_prefix`); otherwise the listener's tenant, as for PLAINTEXT.

use crate::tenant::TenantId;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct TenantMap {
    pub explicit: BTreeMap<String, TenantId>,
    /// Whether a SASL user `TENANT/USER` belongs to TENANT.
    pub sasl_prefix: bool,
}

/// How the principal was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Sasl,
    Certificate,
}

impl TenantMap {
    /// The tenant of `principal`, if the mapping names one (else the listener's applies).
    pub fn tenant_of(&self, principal: &str, via: Via) -> Option<TenantId> {
        if let Some(t) = self.explicit.get(principal) {
            return Some(t.clone());
        }
        if via == Via::Sasl && self.sasl_prefix {
            let user = principal.strip_prefix("User:")?;
            let (tenant, rest) = user.split_once('/')?;
            if !rest.is_empty() {
                return TenantId::new(tenant).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_mappings_then_the_user_prefix() {
        let acme = TenantId::new("acme").unwrap();
        let map = TenantMap {
            explicit: [("User:CN=writer,O=Acme".to_string(), acme.clone())].into_iter().collect(),
            sasl_prefix: true,
        };
        assert_eq!(map.tenant_of("User:CN=writer,O=Acme", Via::Certificate), Some(acme.clone()));
        assert_eq!(map.tenant_of("User:acme/alice", Via::Sasl), Some(acme.clone()));
        assert_eq!(map.tenant_of("User:acme/alice", Via::Certificate), None, "only SASL names");
        assert_eq!(map.tenant_of("User:alice", Via::Sasl), None);
        assert_eq!(map.tenant_of("User:Not A Tenant/alice", Via::Sasl), None);
        assert_eq!(map.tenant_of("User:acme/", Via::Sasl), None);
        let off = TenantMap { sasl_prefix: false, ..map };
        assert_eq!(off.tenant_of("User:acme/alice", Via::Sasl), None);
    }
}
