//! Client quotas: Kafka's produce and fetch byte rates and request-time percentages (KIP-13,
//! KIP-124), set per tenant on users, client ids or both with AlterClientQuotas (KIP-546) and
//! kept in the tenant's internal `__client_quotas` topic, plus each tenant's ceiling from the
//! operator's config, which the tenant cannot change. Every client is measured against the quota
//! that governs it ([`guise_guest_sdk::quotas::governing`]) and against its tenant's ceiling;
//! a client over either is throttled: its response says for how long (`throttle_time_ms`), and
//! the connection's next request is held that long (KIP-219), so one tenant flooding the host
//! cannot take the capacity the others need.
//!
//! Rates are measured as Kafka measures them ([`rate`]): bytes of produce requests, bytes of
//! fetch responses, and the time the host spent on a client's requests as a percentage of one
//! thread.

mod rate;

pub use guise_guest_sdk::quotas::{Alteration, ApiError, Entity, Entry, FilterPart};
pub use rate::{Rate, Sampling};

use crate::storage::kv;
use crate::storage::{Log, StorageError, TopicName};
use guise_guest_sdk::error::UNKNOWN_SERVER_ERROR;
use guise_guest_sdk::quotas::{self as rules, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The internal topic of each tenant's client quotas, in the host's namespace.
pub const QUOTAS_TOPIC: &str = "__client_quotas";

#[derive(thiserror::Error, Debug)]
pub enum QuotaError {
    #[error("reading the client quotas topic {topic}: {source}")]
    Replay { topic: String, source: StorageError },
    #[error("the client quotas of tenant {tenant} could not be read a moment ago; trying again shortly")]
    RecentlyFailed { tenant: String },
}

/// How long after a failed replay of a tenant's quotas the next request tries again (so a
/// storage outage does not turn every request into a replay attempt and a log line).
const REPLAY_RETRY: Duration = Duration::from_secs(1);

/// What a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Bytes of produce requests per second.
    Produce,
    /// Bytes of fetch responses per second.
    Fetch,
    /// Time spent on the client's requests, as a percentage of one thread.
    Request,
}

impl Kind {
    /// Kafka's quota key.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The kinds a request of `api_key` is throttled by (Kafka's: produce and fetch by their
    /// byte rates and the request time; everything else by the request time).
    pub fn of_api(api_key: i16) -> &'static [Kind] {
        match api_key {
            0 => &[Kind::Produce, Kind::Request],
            1 => &[Kind::Fetch, Kind::Request],
            _ => &[Kind::Request],
        }
    }
}

/// A tenant's ceiling, set by the operator (`[tenants.NAME]` in the config): the whole tenant's
/// clients together, whatever quotas the tenant sets for itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ceiling {
    pub producer_byte_rate: Option<f64>,
    pub consumer_byte_rate: Option<f64>,
    pub request_percentage: Option<f64>,
}

impl Ceiling {
    fn bound(&self, kind: Kind) -> Option<f64> {
        match kind {
            Kind::Produce => self.producer_byte_rate,
            Kind::Fetch => self.consumer_byte_rate,
            Kind::Request => self.request_percentage,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Ceiling::default()
    }
}

#[derive(Clone, Debug, Default)]
pub struct QuotaConfig {
    /// The namespace of the `__client_quotas` topics.
    pub namespace: String,
    pub sampling: Sampling,
    /// Tenant → its ceiling.
    pub ceilings: HashMap<String, Ceiling>,
}

/// Who a quota is measured for: the connection's tenant, its user (the principal's name without
/// `User:`, "ANONYMOUS" unauthenticated, as Kafka names it) and the request's client id.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub client_id: &'a str,
}

type Quotas_ = BTreeMap<Entity, BTreeMap<String, f64>>;

#[derive(Default)]
struct TenantQuotas {
    loaded: AtomicBool,
    /// Held while replaying, and while a change is appended (so changes land in order).
    write: tokio::sync::Mutex<()>,
    quotas: RwLock<Quotas_>,
    /// When the last replay failed.
    failed: Mutex<Option<Instant>>,
}

/// The rate a throttle is measured by: Kafka's (user, client id) tags of the governing entity
/// within a tenant, or the tenant's ceiling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RateKey {
    Client { tenant: String, kind: Kind, user: String, client_id: String },
    Ceiling { tenant: String, kind: Kind },
}

/// The host's client quotas: every tenant's, replayed on first use, and the rates measured.
pub struct Quotas {
    config: QuotaConfig,
    /// None: nothing is persisted (tests of other parts).
    log: Option<Arc<dyn Log>>,
    tenants: Mutex<HashMap<String, Arc<TenantQuotas>>>,
    rates: Mutex<HashMap<RateKey, Rate>>,
    /// What the rates' milliseconds count from.
    epoch: Instant,
    /// Per tenant: how many requests were throttled, and for how many milliseconds in all.
    throttled: Mutex<HashMap<String, (u64, u64)>>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas").field("ceilings", &self.config.ceilings).finish_non_exhaustive()
    }
}

/// No quotas, nothing persisted.
impl Default for Quotas {
    fn default() -> Self {
        Quotas::build(QuotaConfig::default(), None)
    }
}

/// One governing bound and the rate it is measured by.
struct Bound {
    key: RateKey,
    bound: f64,
}

impl Quotas {
    /// Register the `__client_quotas` topics (one per tenant in `namespace`) with the tenant room.
    pub fn register_internal(internal: &mut crate::tenant::InternalTopics, namespace: &str) {
        internal.register(QUOTAS_TOPIC, Some(namespace), "the client quotas");
    }

    pub fn new(log: Arc<dyn Log>, config: QuotaConfig) -> Self {
        Quotas::build(config, Some(log))
    }

    fn build(config: QuotaConfig, log: Option<Arc<dyn Log>>) -> Self {
        Quotas {
            config,
            log,
            tenants: Mutex::default(),
            rates: Mutex::default(),
            epoch: Instant::now(),
            throttled: Mutex::default(),
        }
    }

    fn topic(&self, tenant: &str) -> TopicName {
        TopicName::new(tenant, self.config.namespace.clone(), QUOTAS_TOPIC)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The tenant's quotas, replayed from its topic on first use.
    async fn tenant(&self, name: &str) -> Result<Arc<TenantQuotas>, QuotaError> {
        // The name is copied only the first time a tenant is seen: this runs on every request.
        let known = self.tenants.lock().get(name).cloned();
        let t = match known {
            Some(t) => t,
            None => self.tenants.lock().entry(name.to_string()).or_default().clone(),
        };
        if t.loaded.load(Ordering::Acquire) {
            return Ok(t);
        }
        if t.failed.lock().is_some_and(|at| at.elapsed() < REPLAY_RETRY) {
            return Err(QuotaError::RecentlyFailed { tenant: name.to_string() });
        }
        let _write = t.write.lock().await;
        if !t.loaded.load(Ordering::Acquire) {
            // Requests that queued on the lock behind a failing replay do not each try again.
            if t.failed.lock().is_some_and(|at| at.elapsed() < REPLAY_RETRY) {
                return Err(QuotaError::RecentlyFailed { tenant: name.to_string() });
            }
            if let Some(log) = &self.log {
                let topic = self.topic(name);
                let mut quotas = Quotas_::new();
                kv::replay(&**log, &topic, |key, value| {
                    let entity = serde_json::from_slice::<Vec<(String, Option<String>)>>(key)
                        .map_err(|e| e.to_string())
                        .and_then(|parts| {
                            let parts: Vec<_> = parts
                                .into_iter()
                                .map(|(entity_type, name)| rules::EntityPart { entity_type, name })
                                .collect();
                            Entity::parse(&parts).map_err(|(_, why)| why)
                        });
                    let entity = match entity {
                        Ok(e) => e,
                        Err(why) => {
                            tracing::warn!(
                                tenant = name,
                                "skipping an unreadable client quota record: {why}"
                            );
                            return;
                        }
                    };
                    match value.map(serde_json::from_slice::<BTreeMap<String, f64>>) {
                        Some(Ok(values)) if !values.is_empty() => {
                            quotas.insert(entity, values);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(tenant = name, "skipping an unreadable client quota value: {e}")
                        }
                        _ => {
                            quotas.remove(&entity);
                        }
                    }
                })
                .await
                .map_err(|source| {
                    *t.failed.lock() = Some(Instant::now());
                    QuotaError::Replay { topic: topic.to_string(), source }
                })?;
                if !quotas.is_empty() {
                    tracing::info!(tenant = name, entities = quotas.len(), "replayed client quotas");
                }
                *t.quotas.write() = quotas;
            }
            t.loaded.store(true, Ordering::Release);
        }
        Ok(t.clone())
    }

    /// Read the tenant's quotas from the log if they are not in memory yet, so that
    /// [`record`](Self::record) and [`throttle`](Self::throttle) (which never wait) see them.
    pub async fn load(&self, tenant: &str) {
        match self.tenant(tenant).await {
            Ok(_) | Err(QuotaError::RecentlyFailed { .. }) => {}
            Err(e) => tracing::error!(tenant, "client quotas unavailable, not enforcing them: {e}"),
        }
    }

    /// DescribeClientQuotas within `tenant`.
    pub async fn describe(
        &self,
        tenant: &str,
        components: &[FilterPart],
        strict: bool,
    ) -> Result<Vec<Entry>, ApiError> {
        let t = self.tenant(tenant).await.map_err(|e| (UNKNOWN_SERVER_ERROR, e.to_string()))?;
        rules::describe(&t.quotas.read(), components, strict)
    }

    /// AlterClientQuotas within `tenant`: one result per entry, in order. An entry's changes are
    /// appended to the tenant's topic as one record before they apply.
    pub async fn alter(
        &self,
        tenant: &str,
        alterations: &[Alteration],
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let t = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(e) => {
                return alterations.iter().map(|_| Err((UNKNOWN_SERVER_ERROR, e.to_string()))).collect();
            }
        };
        let _write = t.write.lock().await;
        let mut results = Vec::with_capacity(alterations.len());
        for alteration in alterations {
            let mut next = t.quotas.read().clone();
            let (entity, values) = match rules::alter(&mut next, alteration, validate_only) {
                Ok(changed) => changed,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            if validate_only {
                results.push(Ok(()));
                continue;
            }
            if let Some(log) = &self.log {
                let key: Vec<(String, Option<String>)> =
                    entity.parts().into_iter().map(|p| (p.entity_type, p.name)).collect();
                let key = serde_json::to_vec(&key).expect("entity parts serialize");
                let value = (!values.is_empty())
                    .then(|| serde_json::to_vec(&values).expect("quota values serialize"));
                let topic = self.topic(tenant);
                let configs = || vec![("cleanup.policy".to_string(), "compact".to_string())];
                if let Err(e) = kv::append(&**log, &topic, configs, &[(key, value)]).await {
                    tracing::error!(tenant, entity = %entity.describe(), "storing a client quota failed: {e}");
                    results.push(Err((UNKNOWN_SERVER_ERROR, format!("storing the quota failed: {e}"))));
                    continue;
                }
            }
            tracing::info!(tenant, entity = %entity.describe(), ?values, "client quotas changed");
            *t.quotas.write() = next;
            results.push(Ok(()));
        }
        results
    }

    /// The bounds `client` is measured against for `kind`: the quota that governs it within
    /// its tenant, and its tenant's ceiling.
    fn bounds(&self, client: &Client<'_>, kind: Kind, out: &mut Vec<Bound>) {
        if let Some(bound) = self.config.ceilings.get(client.tenant).and_then(|c| c.bound(kind)) {
            out.push(Bound { key: RateKey::Ceiling { tenant: client.tenant.to_string(), kind }, bound });
        }
        let Some(t) = self.tenants.lock().get(client.tenant).cloned() else { return };
        let quotas = t.quotas.read();
        if quotas.is_empty() {
            return;
        }
        if let Some((bound, (user, client_id))) =
            rules::governing(&quotas, kind.key(), client.user, client.client_id)
        {
            out.push(Bound {
                key: RateKey::Client { tenant: client.tenant.to_string(), kind, user, client_id },
                bound,
            });
        }
    }

    /// Whether `tenant` has nothing to measure: no ceiling and no quotas (the common case,
    /// decided without allocating; the request path checks it once and skips the rest).
    pub fn unlimited(&self, tenant: &str) -> bool {
        self.config.ceilings.get(tenant).is_none_or(Ceiling::is_empty)
            && self.tenants.lock().get(tenant).is_none_or(|t| t.quotas.read().is_empty())
    }

    /// Record `amount` of `kind` for `client` and answer how long it is throttled for it now.
    pub fn record(&self, client: &Client<'_>, kind: Kind, amount: f64) -> Duration {
        if self.unlimited(client.tenant) {
            return Duration::ZERO;
        }
        let mut bounds = Vec::new();
        self.bounds(client, kind, &mut bounds);
        let now = self.now_ms();
        let s = self.config.sampling;
        let mut rates = self.rates.lock();
        let mut longest = 0;
        for b in bounds {
            let rate = rates.entry(b.key.clone()).or_insert_with(|| Rate::new(now));
            rate.record(s, amount, now);
            longest = longest.max(self.throttle_of(&b, kind, rate, now, 0.0));
        }
        Duration::from_millis(longest)
    }

    /// How long `client` is throttled now for a request throttled by `kinds`, without recording.
    pub fn throttle(&self, client: &Client<'_>, kinds: &[Kind]) -> Duration {
        self.throttle_with(client, kinds, &[])
    }

    /// Like [`throttle`](Self::throttle), as if `pending` (amounts of kinds, e.g. the bytes of a
    /// fetch response about to go out, or the time a request has taken so far, recorded once it
    /// is done) were recorded now: what the response reports is then what the host holds the
    /// client for after it.
    pub fn throttle_with(&self, client: &Client<'_>, kinds: &[Kind], pending: &[(Kind, f64)]) -> Duration {
        if self.unlimited(client.tenant) {
            return Duration::ZERO;
        }
        let mut bounds = Vec::new();
        let now = self.now_ms();
        let mut longest = 0;
        for &kind in kinds {
            bounds.clear();
            self.bounds(client, kind, &mut bounds);
            let rates = self.rates.lock();
            let extra: f64 = pending.iter().filter(|(k, _)| *k == kind).map(|(_, amount)| amount).sum();
            for b in &bounds {
                let ms = match rates.get(&b.key) {
                    Some(rate) => self.throttle_of(b, kind, rate, now, extra),
                    None if extra > 0.0 => self.throttle_of(b, kind, &Rate::new(now), now, extra),
                    None => 0,
                };
                longest = longest.max(ms);
            }
        }
        Duration::from_millis(longest)
    }

    /// Kafka bounds a client's request-time throttle by one window (byte-rate throttles are not
    /// bounded). A tenant's ceiling is not: a tenant with many connections would otherwise use
    /// a window's worth of time per connection and request, far beyond its ceiling.
    fn throttle_of(&self, b: &Bound, kind: Kind, rate: &Rate, now: u64, pending: f64) -> u64 {
        let ms = rate.throttle_ms(self.config.sampling, b.bound, now, pending);
        match (kind, &b.key) {
            (Kind::Request, RateKey::Client { .. }) => ms.min(self.config.sampling.window_ms),
            _ => ms,
        }
    }

    /// Count a request of `tenant`'s that was held for `time` (for `/metrics`).
    pub fn note_throttled(&self, tenant: &str, time: Duration) {
        if time.is_zero() {
            return;
        }
        let ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
        let mut all = self.throttled.lock();
        match all.get_mut(tenant) {
            Some((n, total)) => {
                *n += 1;
                *total = total.saturating_add(ms);
            }
            None => {
                all.insert(tenant.to_string(), (1, ms));
            }
        }
    }

    /// Every tenant's throttled requests and their total time in milliseconds, by name.
    pub fn throttled(&self) -> Vec<(String, u64, u64)> {
        let mut all: Vec<_> = self.throttled.lock().iter().map(|(t, (n, ms))| (t.clone(), *n, *ms)).collect();
        all.sort();
        all
    }

    /// Drop the rates nothing was recorded in for the whole horizon (called from a timer).
    pub fn expire(&self) {
        let now = self.now_ms();
        let s = self.config.sampling;
        self.rates.lock().retain(|_, r| !r.idle(s, now));
    }
}

/// Kafka's quota user of `principal`: its name without `User:` ("ANONYMOUS" for
/// "User:ANONYMOUS").
pub fn user_of(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

/// Kafka's request-time measure: the time as a percentage of one second (recorded per request;
/// the rate is then a percentage of one thread).
pub fn request_percent(time: Duration) -> f64 {
    time.as_secs_f64() * 100.0
}

#[cfg(test)]
mod tests;
