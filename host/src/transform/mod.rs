//! Tenant message transforms: which transform runs on which topics of which tenant, with what
//! error policy and limits, and the module registry that versions them (one per tenant, under
//! `<data_dir>/transforms/<tenant>/`, so no tenant's files or versions mix with another's).
//!
//! A deployment binds a transform (a component of the `transform` world) to input topics of one
//! tenant, with the output topics it may route to (at most 8), an error policy and its
//! configuration. All of that is stored with the version, so a rollback restores the binding
//! with the code. A binding is an `Arc` swapped whole: a produced batch takes the binding when
//! it starts, so each batch is processed by exactly one version.
//!
//! The produce path is in [`apply`]. A connection's tenant is its authenticated principal's
//! (`net::principals`) or its listener's; a client id is not a tenant.

mod apply;
#[cfg(test)]
mod tests;

use crate::storage::{AppendInfo, IngressMark, Log, StorageError, TopicName};
use crate::tenant::{InternalTopics, TenantId, names::validate_topic_name};
use crate::wasm::registry::{Activation, Slot, StoreLink, transform_scope};
use crate::wasm::{
    Compiler, ModuleId, ModuleStats, ModuleView, Registry, RegistryConfig, RegistryError, TransformEngine,
    TransformLimits, TransformModule, WasmError,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;

/// Kafka's limit (and Redpanda's): output topics per transform besides its input topics.
pub const MAX_OUTPUT_TOPICS: usize = 8;

#[derive(thiserror::Error, Debug)]
pub enum TransformError {
    #[error(transparent)]
    InvalidTenant(#[from] crate::tenant::TenantError),
    #[error("invalid binding: {0}")]
    InvalidBinding(String),
    #[error("tenant {0:?} has no transforms")]
    UnknownTenant(String),
    #[error("transforms are not enabled on this host (no data directory)")]
    Disabled,
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl TransformError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            TransformError::InvalidTenant(_) | TransformError::InvalidBinding(_) => 400,
            TransformError::UnknownTenant(_) => 404,
            TransformError::Disabled => 503,
            TransformError::Registry(e) => e.http_status(),
        }
    }
}

/// What a transform does with a batch it failed on (a trap, the deadline, the memory cap, an
/// error it returned, or an output it may not make).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Policy {
    /// The producer gets INVALID_RECORD (87, not retried by clients) and nothing is appended.
    Reject,
    /// The batch is acknowledged and dropped (counted).
    Skip,
    /// The batch is appended unchanged.
    Pass,
    /// The original records go to this topic of the same tenant, with headers saying why.
    DeadLetter(String),
}

impl std::str::FromStr for Policy {
    type Err = TransformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Policy::Reject),
            "skip" => Ok(Policy::Skip),
            "pass" => Ok(Policy::Pass),
            _ => match s.strip_prefix("dead-letter=") {
                Some(topic) if !topic.is_empty() => Ok(Policy::DeadLetter(topic.to_string())),
                _ => Err(TransformError::InvalidBinding(format!(
                    "policy {s:?} is not one of reject, skip, pass, dead-letter=TOPIC"
                ))),
            },
        }
    }
}

impl TryFrom<String> for Policy {
    type Error = TransformError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Policy> for String {
    fn from(p: Policy) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Reject => f.write_str("reject"),
            Policy::Skip => f.write_str("skip"),
            Policy::Pass => f.write_str("pass"),
            Policy::DeadLetter(t) => write!(f, "dead-letter={t}"),
        }
    }
}

/// A transform's binding, stored with each version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingSpec {
    /// Input topics: produced batches to these run through the transform.
    pub topics: Vec<String>,
    /// Topics (of the same tenant) the transform may route records to.
    #[serde(default)]
    pub output_topics: Vec<String>,
    pub policy: Policy,
    /// The module's configuration (`transform::config` in the guest).
    #[serde(default)]
    pub config: Vec<(String, String)>,
}

impl BindingSpec {
    /// Names, counts and internal topics (of `namespace`, where bindings live); conflicts with
    /// other transforms are checked at deploy.
    pub fn check(&self, internal: &InternalTopics, namespace: &str) -> Result<(), TransformError> {
        let bad = |m: String| Err(TransformError::InvalidBinding(m));
        if self.topics.is_empty() {
            return bad("name at least one input topic".into());
        }
        let mut outputs = self.output_topics.clone();
        outputs.sort();
        outputs.dedup();
        if outputs.len() > MAX_OUTPUT_TOPICS {
            return bad(format!("{} output topics; at most {MAX_OUTPUT_TOPICS}", outputs.len()));
        }
        let dead_letter = match &self.policy {
            Policy::DeadLetter(t) => Some(t),
            _ => None,
        };
        for topic in self.topics.iter().chain(&self.output_topics).chain(dead_letter) {
            if let Err(e) = validate_topic_name(topic) {
                return bad(format!("{topic:?}: {e}"));
            }
            if let Some(i) = internal.lookup(namespace, topic) {
                return bad(format!("{topic:?} is an internal topic of {}", i.owner));
            }
        }
        if let Some(t) = dead_letter
            && self.topics.contains(t)
        {
            return bad(format!("the dead-letter topic {t:?} is also an input topic"));
        }
        Ok(())
    }
}

/// How a transform's failures were handled, over all its versions, since the host started.
#[derive(Debug, Default)]
pub struct PolicyCounters {
    pub rejected: AtomicU64,
    pub skipped: AtomicU64,
    pub passed: AtomicU64,
    pub dead_lettered: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    pub rejected: u64,
    pub skipped: u64,
    pub passed: u64,
    pub dead_lettered: u64,
}

impl PolicyCounters {
    fn snapshot(&self) -> PolicySnapshot {
        PolicySnapshot {
            rejected: self.rejected.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            passed: self.passed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// A transform on one tenant's topics.
pub struct Binding {
    pub tenant: String,
    /// The transform's name and active version.
    pub name: String,
    pub version: u32,
    pub spec: BindingSpec,
    /// The running module, or why its active version could not be loaded at start (then
    /// produces to its topics fail until it is rolled back, redeployed or deleted: a topic that
    /// is meant to be masked is never written unmasked).
    pub module: Result<Arc<TransformModule>, String>,
    pub limits: TransformLimits,
    pub outcomes: Arc<PolicyCounters>,
}

/// A transform as the admin API shows it: the registry's view plus its tenant, its active
/// binding and its policy outcomes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransformView {
    pub tenant: String,
    #[serde(flatten)]
    pub module: ModuleView,
    pub binding: Option<BindingSpec>,
    pub outcomes: PolicySnapshot,
}

/// Settings of the transforms service.
#[derive(Clone, Debug)]
pub struct TransformsConfig {
    /// `<data_dir>/transforms`; None: transforms are off (tests and benchmarks without a server).
    pub dir: Option<PathBuf>,
    pub namespace: String,
    pub max_module_bytes: u64,
    pub keep_versions: usize,
    pub limits: TransformLimits,
    /// Per-tenant limits that replace `limits`.
    pub tenant_limits: HashMap<String, TransformLimits>,
    /// Whether routed and dead-letter topics that do not exist are created (with
    /// `default_partitions`), as Kafka's auto.create.topics.enable does for producers.
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    /// Transform calls one tenant may run at once (`transform_max_concurrency`), and per-tenant
    /// overrides.
    pub concurrency: usize,
    pub tenant_concurrency: HashMap<String, usize>,
}

impl TransformsConfig {
    /// Transforms off.
    pub fn disabled() -> Self {
        TransformsConfig {
            dir: None,
            namespace: "default".into(),
            max_module_bytes: 10 << 20,
            keep_versions: 10,
            limits: TransformLimits::default(),
            tenant_limits: HashMap::new(),
            auto_create_topics: true,
            default_partitions: 1,
            concurrency: calls::default_concurrency(),
            tenant_concurrency: HashMap::new(),
        }
    }
}

/// The state the produce path and the registries' slots share.
struct Shared {
    cfg: TransformsConfig,
    log: Arc<dyn Log>,
    engine: TransformEngine,
    internal: Arc<InternalTopics>,
    /// tenant → input topic → the binding that runs on it.
    bindings: RwLock<HashMap<String, HashMap<String, Arc<Binding>>>>,
    /// (tenant, transform name) → its policy outcomes.
    outcomes: Mutex<HashMap<(String, String), Arc<PolicyCounters>>>,
    /// Spreads keyless routed records over partitions, and seeds the guests' randomness.
    counter: AtomicU64,
    /// tenant → its transform-call slots.
    calls: Mutex<HashMap<String, Arc<TenantCalls>>>,
    /// The threads the calls run on.
    pool: Pool,
    /// The transaction coordinator, which routed records of a transaction join (none: such
    /// records are refused).
    txn: Option<Arc<crate::txn::Coordinator>>,
    /// Striped by (topic, partition, producer id): a produce of a producer's batches holds its
    /// stripe from the retry check to the append, so a retry sent while the original is still
    /// running waits for it, finds it stored, and does not run the transform (and route) again.
    producer_locks: Vec<tokio::sync::Mutex<()>>,
}

/// Stripes of `Shared::producer_locks`.
const PRODUCER_LOCKS: usize = 64;

impl Shared {
    fn limits(&self, tenant: &str) -> TransformLimits {
        self.cfg.tenant_limits.get(tenant).unwrap_or(&self.cfg.limits).clone()
    }

    fn calls(&self, tenant: &str) -> Arc<TenantCalls> {
        if let Some(c) = self.calls.lock().get(tenant) {
            return c.clone();
        }
        let limit = self.cfg.tenant_concurrency.get(tenant).copied().unwrap_or(self.cfg.concurrency);
        self.calls
            .lock()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(TenantCalls::new(limit)))
            .clone()
    }

    fn outcomes(&self, tenant: &str, name: &str) -> Arc<PolicyCounters> {
        self.outcomes.lock().entry((tenant.to_string(), name.to_string())).or_default().clone()
    }
}

/// One tenant's registry slot: activating a version rebinds that transform's topics.
struct TenantSlot {
    tenant: String,
    shared: Arc<Shared>,
}

impl Slot for TenantSlot {
    fn prepare(
        &self,
        component: &Component,
        id: ModuleId,
        stats: Arc<ModuleStats>,
        settings: Option<&serde_json::Value>,
    ) -> Result<Activation, WasmError> {
        let refused = |m: String| WasmError::Binding(m);
        let spec: BindingSpec = settings
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| refused(format!("unreadable binding: {e}")))?
            .ok_or_else(|| refused("a transform needs a binding (topics and policy)".into()))?;
        spec.check(&self.shared.internal, &self.shared.cfg.namespace).map_err(|e| refused(e.to_string()))?;
        let name = id.name.clone();
        {
            let bindings = self.shared.bindings.read();
            for topic in &spec.topics {
                if let Some(other) = bindings.get(&self.tenant).and_then(|b| b.get(topic))
                    && other.name != name
                {
                    return Err(refused(format!(
                        "topic {topic:?} already runs the transform {:?}; delete it first",
                        other.name
                    )));
                }
            }
        }
        let engine = &self.shared.engine;
        let limits = self.shared.limits(&self.tenant);
        let module = engine.prepare(component, id, stats, &self.tenant, spec.config.clone(), &limits)?;
        let binding = Arc::new(Binding {
            tenant: self.tenant.clone(),
            name: name.clone(),
            version: module.id.version,
            outcomes: self.shared.outcomes(&self.tenant, &name),
            spec,
            module: Ok(Arc::new(module)),
            limits,
        });
        let (shared, tenant) = (self.shared.clone(), self.tenant.clone());
        Ok(Box::new(move || {
            let unbound = {
                let mut bindings = shared.bindings.write();
                let topics = bindings.entry(tenant.clone()).or_default();
                let unbound = unbind(topics, &name);
                for topic in &binding.spec.topics {
                    topics.insert(topic.clone(), binding.clone());
                }
                unbound
            };
            drop(unbound);
            tracing::info!(
                tenant = %tenant,
                transform = %name,
                version = binding.version,
                topics = ?binding.spec.topics,
                policy = %binding.spec.policy,
                "transform active"
            );
        }))
    }

    fn serves(&self, _name: &str) -> bool {
        true
    }

    fn remove(&self, name: &str) {
        let unbound = {
            let mut bindings = self.shared.bindings.write();
            let Some(topics) = bindings.get_mut(&self.tenant) else { return };
            let unbound = unbind(topics, name);
            if topics.is_empty() {
                bindings.remove(&self.tenant);
            }
            unbound
        };
        drop(unbound);
    }
}

/// Take transform `name`'s bindings out of one tenant's `topics`. The caller drops them after
/// releasing the bindings' lock: the last reference to a version drops its warm instances, and
/// resetting their memory should not hold up every produce's binding lookup.
fn unbind(topics: &mut HashMap<String, Arc<Binding>>, name: &str) -> Vec<Arc<Binding>> {
    topics.extract_if(|_, b| b.name == name).map(|(_, b)| b).collect()
}

/// The transforms service: bindings for the produce path, and the per-tenant registries.
pub struct Transforms {
    shared: Arc<Shared>,
    compiler: Compiler,
    registries: Mutex<BTreeMap<String, Arc<Registry>>>,
}

impl Transforms {
    /// The transforms service over the raw `log` (where transforms write their outputs), on
    /// `compiler`'s engine (the translator's: one engine, one epoch ticker), with the host's
    /// internal topics (no binding may name one). Every tenant's registry under the directory
    /// is opened and each transform's active version activated. A version that cannot be
    /// loaded is logged and its topics fail closed until it is rolled back, redeployed or
    /// deleted. Records a transform routes from a transactional batch join the producer's
    /// transaction through `txn`.
    pub fn open(
        cfg: TransformsConfig,
        log: Arc<dyn Log>,
        compiler: &Compiler,
        internal: Arc<InternalTopics>,
        txn: Option<Arc<crate::txn::Coordinator>>,
    ) -> Result<Self, TransformError> {
        let engine = TransformEngine::new(compiler.engine().clone(), compiler.warm_transforms())
            .map_err(RegistryError::Refused)?;
        let transforms = Transforms {
            shared: Arc::new(Shared {
                cfg,
                log,
                engine,
                internal,
                bindings: RwLock::new(HashMap::new()),
                outcomes: Mutex::new(HashMap::new()),
                counter: AtomicU64::new(0),
                calls: Mutex::new(HashMap::new()),
                pool: Pool::default(),
                txn,
                producer_locks: (0..PRODUCER_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            }),
            compiler: compiler.clone(),
            registries: Mutex::new(BTreeMap::new()),
        };
        transforms.load()?;
        Ok(transforms)
    }

    /// The log front ends append through: a produce to a topic with a transform bound runs it;
    /// every other call goes to the raw log unchanged. Internal services keep the raw log.
    pub fn log(self: &Arc<Self>) -> Arc<dyn Log> {
        Arc::new(TransformingLog { transforms: self.clone() })
    }

    fn load(&self) -> Result<(), TransformError> {
        let Some(dir) = &self.shared.cfg.dir else { return Ok(()) };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(
                    RegistryError::Io { what: "reading", path: dir.display().to_string(), source }.into()
                );
            }
        };
        for entry in entries.flatten() {
            let tenant = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir() || TenantId::new(&tenant).is_err() {
                continue;
            }
            let registry = self.registry(&tenant, true)?;
            for (name, e) in registry.load_served() {
                tracing::error!(%tenant, transform = %name, "transform not started; produces to its topics fail until it is rolled back, redeployed or deleted: {e}");
                self.bind_unavailable(&tenant, &registry, &name, e.to_string());
            }
        }
        Ok(())
    }

    /// Keep `name`'s topics bound to a transform that could not be loaded, so they fail closed.
    fn bind_unavailable(&self, tenant: &str, registry: &Registry, name: &str, why: String) {
        let Some(spec) =
            registry.active_settings(name).and_then(|v| serde_json::from_value::<BindingSpec>(v).ok())
        else {
            return;
        };
        let version = registry.show(name).ok().and_then(|m| m.active).unwrap_or(0);
        let binding = Arc::new(Binding {
            tenant: tenant.to_string(),
            name: name.to_string(),
            version,
            outcomes: self.shared.outcomes(tenant, name),
            limits: self.shared.limits(tenant),
            spec,
            module: Err(why),
        });
        let mut bindings = self.shared.bindings.write();
        let topics = bindings.entry(tenant.to_string()).or_default();
        for topic in &binding.spec.topics {
            topics.insert(topic.clone(), binding.clone());
        }
    }

    /// The registry of `tenant`, opened (and with `create`, created) on first use.
    fn registry(&self, tenant: &str, create: bool) -> Result<Arc<Registry>, TransformError> {
        TenantId::new(tenant)?;
        let dir = self.shared.cfg.dir.as_ref().ok_or(TransformError::Disabled)?.join(tenant);
        let compiler = &self.compiler;
        let mut registries = self.registries.lock();
        if let Some(r) = registries.get(tenant) {
            return Ok(r.clone());
        }
        if !create && !dir.exists() {
            return Err(TransformError::UnknownTenant(tenant.to_string()));
        }
        let cfg = RegistryConfig {
            dir,
            max_module_bytes: self.shared.cfg.max_module_bytes,
            keep_versions: self.shared.cfg.keep_versions,
            // `dir` is `<data_dir>/transforms/<tenant>`: that is its scope (see `restore`).
            store: self
                .shared
                .log
                .module_store()
                .map(|store| StoreLink { store, scope: transform_scope(tenant) }),
        };
        let slot = Arc::new(TenantSlot { tenant: tenant.to_string(), shared: self.shared.clone() });
        let registry = Arc::new(Registry::open_with(cfg, compiler.clone(), slot)?);
        registries.insert(tenant.to_string(), registry.clone());
        Ok(registry)
    }

    pub fn max_module_bytes(&self) -> u64 {
        self.shared.cfg.max_module_bytes
    }

    /// Validate and deploy `wasm` as the next version of `tenant`'s transform `name`, bound by
    /// `spec`, and make it the one that runs on the spec's topics. A refused upload changes
    /// nothing.
    pub fn deploy(
        &self,
        tenant: &str,
        name: &str,
        wasm: &[u8],
        spec: BindingSpec,
    ) -> Result<TransformView, TransformError> {
        spec.check(&self.shared.internal, &self.shared.cfg.namespace)?;
        let registry = self.registry(tenant, true)?;
        let settings = serde_json::to_value(&spec).expect("a binding serializes");
        registry.deploy(name, wasm, "upload", Some(settings))?;
        self.show(tenant, name)
    }

    pub fn rollback(
        &self,
        tenant: &str,
        name: &str,
        to: Option<u32>,
    ) -> Result<TransformView, TransformError> {
        self.registry(tenant, false)?.rollback(name, to)?;
        self.show(tenant, name)
    }

    /// Unbind and remove `tenant`'s transform `name` with all its versions.
    pub fn delete(&self, tenant: &str, name: &str) -> Result<(), TransformError> {
        Ok(self.registry(tenant, false)?.remove(name)?)
    }

    pub fn show(&self, tenant: &str, name: &str) -> Result<TransformView, TransformError> {
        let registry = self.registry(tenant, false)?;
        let module = registry.show(name)?;
        Ok(self.view(tenant, &registry, module))
    }

    fn view(&self, tenant: &str, registry: &Registry, module: ModuleView) -> TransformView {
        let binding = registry.active_settings(&module.name).and_then(|v| serde_json::from_value(v).ok());
        let outcomes = self.shared.outcomes(tenant, &module.name).snapshot();
        TransformView { tenant: tenant.to_string(), module, binding, outcomes }
    }

    /// Every transform, of one tenant or of all.
    pub fn list(&self, tenant: Option<&str>) -> Result<Vec<TransformView>, TransformError> {
        let tenants: Vec<String> = match tenant {
            Some(t) => vec![t.to_string()],
            None => self.registries.lock().keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for t in tenants {
            let registry = match self.registry(&t, false) {
                Ok(r) => r,
                Err(TransformError::UnknownTenant(_)) => continue,
                Err(e) => return Err(e),
            };
            for m in registry.list() {
                out.push(self.view(&t, &registry, m));
            }
        }
        Ok(out)
    }

    /// `tenant`'s transform calls: its limit, how many run, the peak, and how many waited.
    pub fn tenant_calls(&self, tenant: &str) -> CallsSnapshot {
        self.shared.calls.lock().get(tenant).map(|c| c.snapshot()).unwrap_or_else(|| CallsSnapshot {
            limit: self
                .shared
                .cfg
                .tenant_concurrency
                .get(tenant)
                .copied()
                .unwrap_or(self.shared.cfg.concurrency),
            ..CallsSnapshot::default()
        })
    }

    /// Transform calls that ran on a warm instance, and the instances waiting now (over all
    /// tenants).
    pub fn warm(&self) -> (u64, usize) {
        let engine = &self.shared.engine;
        (engine.warm_calls.load(Ordering::Relaxed), engine.warm_instances())
    }

    /// The transform bound to `tenant`'s `topic`, if any (the produce path's one lookup).
    pub fn binding(&self, tenant: &str, topic: &str) -> Option<Arc<Binding>> {
        self.shared.bindings.read().get(tenant)?.get(topic).cloned()
    }

    /// A produce to `name`: through the transform bound to it, or, for topics without one, the
    /// bytes as they are to the log (the zero-copy path). Transforms are bound to topics of the
    /// host's namespace; a Pulsar client may name others. `ingress`: the records come from the
    /// partition's ingress topic, up to that message (see [`Log::append_ingress`]).
    async fn append_from(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        ingress: Option<IngressMark>,
    ) -> Result<AppendInfo, StorageError> {
        let bound = name.namespace == self.shared.cfg.namespace;
        match (self.binding(&name.tenant, &name.topic).filter(|_| bound), ingress) {
            (Some(binding), _) => self.apply(&binding, name, partition, records, ingress).await,
            (None, Some(mark)) => self.shared.log.append_ingress(name, partition, records, mark).await,
            (None, None) => self.shared.log.append(name, partition, records).await,
        }
    }
}

mod log;
use log::TransformingLog;

mod calls;
use calls::TenantCalls;

mod pool;
pub use calls::{CallsSnapshot, default_concurrency};
use pool::{Pool, PoolFailure};
