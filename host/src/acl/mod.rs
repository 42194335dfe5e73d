//! Authorization: Kafka's ACL model within each tenant. Bindings (resource type, literal or
//! prefixed name pattern, principal, host, operation, allow or deny) are kept per tenant in
//! its internal `__acls` topic (through the `Log` port, so they survive restarts on every
//! engine) and decided as Kafka's `StandardAuthorizer` decides:
//!
//! - a principal in `super_users` may do anything;
//! - among the bindings whose pattern covers the resource (the literal name, the literal `*`,
//!   or a prefix of the name), a DENY for the principal (or `User:*`) and host (or `*`) with the
//!   operation (or ALL) refuses;
//! - otherwise an ALLOW with the operation, ALL, or an operation that implies it (READ, WRITE,
//!   DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) permits;
//! - when no binding covers the resource at all, `allow_everyone_if_no_acl_found` decides.
//!
//! A decision reads only the bindings that can cover the resource, through an index by resource
//! type and name (`index.rs`), so its cost does not grow with the tenant's number of bindings.
//!
//! Tenants never see each other's bindings: a tenant's ACLs name its own topics and groups,
//! which are the only ones its connections can reach anyway.

mod index;
mod rules;
#[cfg(test)]
mod tests;

pub use guise_guest_sdk::acl as codes;
pub use guise_guest_sdk::{AclBinding, AclFilter};
pub use rules::{applies, decide, decide_any, matches, validate};

use crate::storage::kv::{self, Record};
use crate::storage::{Log, StorageError, TopicName};
use guise_guest_sdk::error::{CLUSTER_AUTHORIZATION_FAILED, SECURITY_DISABLED, UNKNOWN_SERVER_ERROR};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The internal topic of each tenant's ACLs, in the host's namespace.
pub const ACLS_TOPIC: &str = "__acls";

#[derive(thiserror::Error, Debug)]
pub enum AclError {
    #[error("reading the ACLs topic {topic}: {source}")]
    Replay { topic: String, source: StorageError },
}

/// The authorizer's settings (Kafka's `authorizer.class.name`, `super.users`,
/// `allow.everyone.if.no.acl.found`).
#[derive(Clone, Debug, Default)]
pub struct AclConfig {
    /// Without an authorizer every request is allowed and the ACL APIs answer
    /// SECURITY_DISABLED, as Kafka's broker does without `authorizer.class.name`.
    pub enabled: bool,
    /// Principals allowed everything ("User:admin").
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
    /// The namespace of the `__acls` topics.
    pub namespace: String,
}

/// Who asks: the connection's principal ("User:alice", "User:ANONYMOUS") and client address.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// An error of an ACL API, with Kafka's code and message.
pub type ApiError = (i16, String);

#[derive(Default)]
struct TenantAcls {
    loaded: AtomicBool,
    /// Held while replaying, and while a change is appended (so changes land in order).
    write: tokio::sync::Mutex<()>,
    bindings: RwLock<index::Bindings>,
}

/// The host's authorizer: every tenant's bindings, replayed on first use.
pub struct Authorizer {
    config: AclConfig,
    /// None: nothing is persisted (tests of other parts).
    log: Option<Arc<dyn Log>>,
    tenants: Mutex<HashMap<String, Arc<TenantAcls>>>,
}

/// No authorizer: everything is allowed.
impl Default for Authorizer {
    fn default() -> Self {
        Authorizer { config: AclConfig::default(), log: None, tenants: Mutex::default() }
    }
}

impl Authorizer {
    /// Register the `__acls` topics (one per tenant in `namespace`) with the tenant room.
    pub fn register_internal(internal: &mut crate::tenant::InternalTopics, namespace: &str) {
        internal.register(ACLS_TOPIC, Some(namespace), "the authorizer");
    }

    pub fn new(log: Arc<dyn Log>, config: AclConfig) -> Self {
        Authorizer { config, log: Some(log), tenants: Mutex::default() }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn topic(&self, tenant: &str) -> TopicName {
        TopicName::new(tenant, self.config.namespace.clone(), ACLS_TOPIC)
    }

    /// The tenant's bindings, replayed from its topic on first use.
    async fn tenant(&self, name: &str) -> Result<Arc<TenantAcls>, AclError> {
        let t = self.tenants.lock().entry(name.to_string()).or_default().clone();
        if t.loaded.load(Ordering::Acquire) {
            return Ok(t);
        }
        let _write = t.write.lock().await;
        if !t.loaded.load(Ordering::Acquire) {
            if let Some(log) = &self.log {
                let topic = self.topic(name);
                let mut bindings = BTreeSet::new();
                kv::replay(&**log, &topic, |key, value| match serde_json::from_slice::<Stored>(key) {
                    Ok(b) if value.is_some() => {
                        let b = AclBinding::from(b);
                        match validate(&b) {
                            Ok(()) => {
                                bindings.insert(b);
                            }
                            Err((_, why)) => tracing::warn!(tenant = name, "skipping a stored ACL: {why}"),
                        }
                    }
                    Ok(b) => {
                        bindings.remove(&AclBinding::from(b));
                    }
                    Err(e) => tracing::warn!(tenant = name, "skipping an unreadable ACL record: {e}"),
                })
                .await
                .map_err(|source| AclError::Replay { topic: topic.to_string(), source })?;
                if !bindings.is_empty() {
                    tracing::info!(tenant = name, acls = bindings.len(), "replayed ACLs");
                }
                *t.bindings.write() = bindings.into_iter().collect();
            }
            t.loaded.store(true, Ordering::Release);
        }
        Ok(t.clone())
    }

    fn is_super(&self, who: &Who<'_>) -> bool {
        self.config.super_users.iter().any(|s| s == who.principal)
    }

    /// Whether `who` may do `operation` on the named resource of `tenant`, when that is known
    /// without reading the log: no authorizer, a super user, or the tenant's ACLs already in
    /// memory (None: [`authorize`](Self::authorize) must read them first). Allocates nothing:
    /// this is every produce's and fetch's check.
    pub fn try_authorize(
        &self,
        tenant: &str,
        who: &Who<'_>,
        resource_type: i8,
        name: &str,
        operation: i8,
    ) -> Option<bool> {
        if !self.config.enabled || self.is_super(who) {
            return Some(true);
        }
        let t = self.tenants.lock().get(tenant).filter(|t| t.loaded.load(Ordering::Acquire)).cloned()?;
        Some(self.decide_in(&t, tenant, who, resource_type, name, operation))
    }

    /// Whether `who` may do `operation` on the named resource of `tenant` (its ACLs are read
    /// from the log on first use).
    pub async fn authorize(
        &self,
        tenant: &str,
        who: &Who<'_>,
        resource_type: i8,
        name: &str,
        operation: i8,
    ) -> bool {
        if let Some(allowed) = self.try_authorize(tenant, who, resource_type, name, operation) {
            return allowed;
        }
        match self.tenant(tenant).await {
            Ok(t) => self.decide_in(&t, tenant, who, resource_type, name, operation),
            Err(e) => {
                tracing::error!(tenant, "authorizer unavailable, refusing: {e}");
                false
            }
        }
    }

    fn decide_in(
        &self,
        t: &TenantAcls,
        tenant: &str,
        who: &Who<'_>,
        resource_type: i8,
        name: &str,
        operation: i8,
    ) -> bool {
        let bindings = t.bindings.read();
        let decide = |resource_type, name: &str, operation| {
            decide(
                bindings.covering(resource_type, name),
                who,
                resource_type,
                name,
                operation,
                self.config.allow_everyone_if_no_acl_found,
            )
        };
        // The ACLs topic holds every binding of the tenant: only who may describe the ACLs
        // (DESCRIBE on the cluster, as DescribeAcls needs) may touch it, whatever ACLs name it.
        let acls_topic = resource_type == codes::TOPIC && name == ACLS_TOPIC;
        let allowed = (!acls_topic || decide(codes::CLUSTER, codes::CLUSTER_NAME, codes::DESCRIBE))
            && decide(resource_type, name, operation);
        if !allowed {
            tracing::debug!(
                tenant,
                principal = who.principal,
                resource_type,
                name,
                operation,
                "not authorized"
            );
        }
        allowed
    }

    /// Whether `who` may do `operation` on some resource of this type (Kafka's
    /// `authorizeByResourceType`).
    pub async fn authorize_any(&self, tenant: &str, who: &Who<'_>, resource_type: i8, operation: i8) -> bool {
        if !self.config.enabled || self.is_super(who) {
            return true;
        }
        match self.tenant(tenant).await {
            Ok(t) => decide_any(
                t.bindings.read().iter(),
                who,
                resource_type,
                operation,
                self.config.allow_everyone_if_no_acl_found,
            ),
            Err(e) => {
                tracing::error!(tenant, "authorizer unavailable, refusing: {e}");
                false
            }
        }
    }

    /// The error every ACL API answers when it may not run: no authorizer, or no `operation`
    /// on the cluster.
    async fn gate(&self, tenant: &str, who: &Who<'_>, operation: i8) -> Result<Arc<TenantAcls>, ApiError> {
        if !self.config.enabled {
            return Err((SECURITY_DISABLED, "No Authorizer is configured.".into()));
        }
        if !self.authorize(tenant, who, codes::CLUSTER, codes::CLUSTER_NAME, operation).await {
            return Err((CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.".into()));
        }
        self.tenant(tenant).await.map_err(|e| {
            tracing::error!(tenant, "authorizer unavailable: {e}");
            (UNKNOWN_SERVER_ERROR, "The authorizer could not read its ACLs.".into())
        })
    }

    /// DescribeAcls.
    pub async fn describe(
        &self,
        tenant: &str,
        who: &Who<'_>,
        filter: &AclFilter,
    ) -> Result<Vec<AclBinding>, ApiError> {
        let t = self.gate(tenant, who, codes::DESCRIBE).await?;
        let bindings = t.bindings.read();
        Ok(bindings.iter().filter(|b| matches(filter, b)).cloned().collect())
    }

    /// CreateAcls: one result per binding.
    pub async fn create(
        &self,
        tenant: &str,
        who: &Who<'_>,
        bindings: &[AclBinding],
    ) -> Vec<Result<(), ApiError>> {
        let t = match self.gate(tenant, who, codes::ALTER).await {
            Ok(t) => t,
            Err(e) => return vec![Err(e); bindings.len()],
        };
        let mut results: Vec<Result<(), ApiError>> = bindings.iter().map(validate).collect();
        let valid: Vec<&AclBinding> =
            bindings.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(b, _)| b).collect();
        if valid.is_empty() {
            return results;
        }
        let _write = t.write.lock().await;
        let records: Vec<Record> = valid.iter().map(|b| record(b, true)).collect();
        if let Err(e) = self.append(tenant, records).await {
            tracing::error!(tenant, "storing ACLs failed: {e}");
            // It may still have been stored (a lost receipt): read the topic again next time.
            t.loaded.store(false, Ordering::Release);
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err((UNKNOWN_SERVER_ERROR, format!("storing the ACL failed: {e}")));
            }
            return results;
        }
        let mut stored = t.bindings.write();
        for b in valid {
            tracing::info!(tenant, principal = who.principal, acl = ?b, "ACL created");
            stored.insert(b.clone());
        }
        results
    }

    /// DeleteAcls: per filter, the bindings it deleted.
    pub async fn delete(
        &self,
        tenant: &str,
        who: &Who<'_>,
        filters: &[AclFilter],
    ) -> Vec<Result<Vec<AclBinding>, ApiError>> {
        let t = match self.gate(tenant, who, codes::ALTER).await {
            Ok(t) => t,
            Err(e) => return vec![Err(e); filters.len()],
        };
        let _write = t.write.lock().await;
        let matched: Vec<Vec<AclBinding>> = {
            let stored = t.bindings.read();
            filters.iter().map(|f| stored.iter().filter(|b| matches(f, b)).cloned().collect()).collect()
        };
        let doomed: BTreeSet<&AclBinding> = matched.iter().flatten().collect();
        if doomed.is_empty() {
            return matched.into_iter().map(Ok).collect();
        }
        let records: Vec<Record> = doomed.iter().map(|b| record(b, false)).collect();
        if let Err(e) = self.append(tenant, records).await {
            tracing::error!(tenant, "storing ACL deletions failed: {e}");
            // It may still have been stored (a lost receipt): read the topic again next time.
            t.loaded.store(false, Ordering::Release);
            let e = (UNKNOWN_SERVER_ERROR, format!("storing the deletion failed: {e}"));
            return vec![Err(e); filters.len()];
        }
        let mut stored = t.bindings.write();
        for b in &doomed {
            tracing::info!(tenant, principal = who.principal, acl = ?b, "ACL deleted");
            stored.remove(b);
        }
        drop(stored);
        matched.into_iter().map(Ok).collect()
    }

    /// Append to the tenant's ACLs topic (created on first use, compacted where the log
    /// compacts).
    async fn append(&self, tenant: &str, records: Vec<Record>) -> Result<(), StorageError> {
        let Some(log) = &self.log else { return Ok(()) };
        let configs = || {
            let mut configs = vec![("retention.ms".to_string(), "-1".to_string())];
            configs.push(("retention.bytes".into(), "-1".into()));
            if log.compacts() {
                configs.push(("cleanup.policy".into(), "compact".into()));
            }
            configs
        };
        kv::append(&**log, &self.topic(tenant), configs, &records).await
    }
}

/// A binding as stored: the key of its record (JSON); the value is present while it exists.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    rt: i8,
    name: String,
    pt: i8,
    principal: String,
    host: String,
    op: i8,
    perm: i8,
}

impl From<Stored> for AclBinding {
    fn from(s: Stored) -> Self {
        AclBinding {
            resource_type: s.rt,
            resource_name: s.name,
            pattern_type: s.pt,
            principal: s.principal,
            host: s.host,
            operation: s.op,
            permission_type: s.perm,
        }
    }
}

fn record(b: &AclBinding, exists: bool) -> Record {
    let key = Stored {
        rt: b.resource_type,
        name: b.resource_name.clone(),
        pt: b.pattern_type,
        principal: b.principal.clone(),
        host: b.host.clone(),
        op: b.operation,
        perm: b.permission_type,
    };
    (serde_json::to_vec(&key).unwrap_or_default(), exists.then(|| b"1".to_vec()))
}
