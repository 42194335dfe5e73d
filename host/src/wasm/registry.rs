//! The module registry: every deployed version of each named module, kept on disk with its
//! compiled artifact, and which version is active.
//!
//! On disk, under `<data_dir>/modules/`:
//! - `artifacts/<sha256>.wasm`: the uploaded component, named by its content hash;
//! - `artifacts/<sha256>.<engine>.cwasm`: its compiled code for this wasmtime build and engine
//!   configuration, followed by a SHA-256 of that code (checked before wasmtime maps it in, since
//!   loading compiled code is trusted); a restart loads it in about a millisecond instead of
//!   compiling again, and one made by another build is ignored and rebuilt;
//! - `<name>.json`: the module's versions, the active one, and the activation history that
//!   rollback walks back.
//!
//! Every upload is a new version, even of bytes seen before (it then reuses their artifact).
//! What a registry's modules are for is its [`Slot`]: the translator registry swaps the module
//! the Kafka listener runs (`translator_module`, "kafka") and keeps other names for listeners
//! configured to run them; a tenant's transform registry binds each module to its topics. A
//! version may carry settings (a transform's topics, policy and configuration), so a rollback
//! restores them with the code.
//!
//! When the storage backend keeps the host's state (`pulsar`), it also keeps the registries: a
//! registry with a [`StoreLink`] writes each uploaded component and each manifest change to the
//! [`ModuleStore`] before its own directory, and [`restore`] rebuilds the directories from the
//! store at start, so the directory is a cache a replacement host does without.

use super::engine::Compiler;
use super::module::{ModuleId, ModuleStats, StatsSnapshot, sha256_hex};
use super::runtime::{Runtime, WasmError};
use crate::storage::{ModuleStore, StorageError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::Component;

#[derive(thiserror::Error, Debug)]
pub enum RegistryError {
    #[error("invalid module name {0:?}: use 1 to 64 characters of a-z, 0-9, '-' and '_'")]
    InvalidName(String),
    #[error("the upload is empty")]
    Empty,
    #[error("the module is {size} bytes, over the cap of {max} bytes (module_max_bytes)")]
    TooLarge { size: u64, max: u64 },
    #[error("refused, the running version stays: {0}")]
    Refused(WasmError),
    #[error("no module named {0:?}")]
    UnknownModule(String),
    #[error("module {name:?} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    #[error("module {0:?} has no earlier version to roll back to")]
    NoPrevious(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error("unreadable manifest {path}: {message}")]
    Manifest { path: String, message: String },
    #[error("loading {name} version {version}: {source}")]
    Load { name: String, version: u32, source: WasmError },
    #[error("storing the module registry: {0}")]
    Store(#[from] StorageError),
    #[error(
        "module {0:?} was changed by another host since this one started; restart this host to load the change, then try again"
    )]
    Conflict(String),
}

impl RegistryError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            RegistryError::InvalidName(_) | RegistryError::Empty => 400,
            RegistryError::TooLarge { .. } => 413,
            RegistryError::Refused(_) => 422,
            RegistryError::UnknownModule(_) | RegistryError::UnknownVersion { .. } => 404,
            RegistryError::NoPrevious(_) | RegistryError::Conflict(_) => 409,
            RegistryError::Io { .. } | RegistryError::Manifest { .. } | RegistryError::Load { .. } => 500,
            RegistryError::Store(_) => 503,
        }
    }
}

/// Registry settings.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `<data_dir>/modules`.
    pub dir: PathBuf,
    /// Uploads larger than this are refused before anything else.
    pub max_module_bytes: u64,
    /// Versions kept per module (the active one and the one before it are always kept).
    pub keep_versions: usize,
    /// Where the registry's state is kept when the storage backend keeps it (`dir` is then a
    /// cache of it).
    pub store: Option<StoreLink>,
}

/// A registry's place in a [`ModuleStore`]: its scope is its directory relative to `data_dir`
/// (`modules`, `transforms/<tenant>`), which is where [`restore`] puts it back.
#[derive(Clone)]
pub struct StoreLink {
    pub store: Arc<dyn ModuleStore>,
    pub scope: String,
}

impl std::fmt::Debug for StoreLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLink").field("scope", &self.scope).finish_non_exhaustive()
    }
}

/// The translator registry's scope, and its directory under `data_dir`.
pub const TRANSLATOR_SCOPE: &str = "modules";
/// The directory under `data_dir` of the tenants' transform registries, one per tenant.
pub const TRANSFORMS_DIR: &str = "transforms";

/// The scope (and directory under `data_dir`) of `tenant`'s transform registry.
pub fn transform_scope(tenant: &str) -> String {
    format!("{TRANSFORMS_DIR}/{tenant}")
}

/// Makes a prepared version the running one (a swap).
pub type Activation = Box<dyn FnOnce() + Send>;

/// What a registry's modules are for.
pub trait Slot: Send + Sync + 'static {
    /// Check `component` as version `id` of module `name` (its imports, its exports, one
    /// instance; `settings` as deployed with it) and make it ready to run. The returned
    /// activation makes it the version that runs; it is called once the manifest is saved.
    fn prepare(
        &self,
        component: &Component,
        id: ModuleId,
        stats: Arc<ModuleStats>,
        settings: Option<&serde_json::Value>,
    ) -> Result<Activation, WasmError>;

    /// Whether the active version of `name` runs on this host (loaded at start and on rollback);
    /// the others are only stored.
    fn serves(&self, name: &str) -> bool;

    /// `name` was removed from the registry: stop running it.
    fn remove(&self, _name: &str) {}
}

/// The translator registry's slot: `name` is the module the Kafka listener runs.
pub struct TranslatorSlot {
    pub runtime: Arc<Runtime>,
    pub name: String,
}

impl Slot for TranslatorSlot {
    fn prepare(
        &self,
        component: &Component,
        id: ModuleId,
        stats: Arc<ModuleStats>,
        _settings: Option<&serde_json::Value>,
    ) -> Result<Activation, WasmError> {
        let serve = id.name == self.name;
        let module = Arc::new(self.runtime.prepare(component, id, stats)?);
        let runtime = self.runtime.clone();
        Ok(Box::new(move || {
            if serve {
                runtime.activate(module);
            }
        }))
    }

    fn serves(&self, name: &str) -> bool {
        name == self.name
    }
}

/// A version as the admin API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionView {
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub deployed_at_ms: u64,
    /// Where it came from: "upload", "embedded" (the binary's own build), or a config path.
    pub source: String,
    /// What the version was deployed with (a transform's binding), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    pub active: bool,
    /// Counters since this host started.
    pub stats: StatsSnapshot,
}

/// A module as the admin API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModuleView {
    pub name: String,
    pub active: Option<u32>,
    /// Whether this host's Kafka listener runs it.
    pub serving: bool,
    pub versions: Vec<VersionView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct VersionMeta {
    version: u32,
    sha256: String,
    size: u64,
    deployed_at_ms: u64,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    name: String,
    active: Option<u32>,
    /// Versions in the order they were activated; rollback pops the last one.
    history: Vec<u32>,
    versions: Vec<VersionMeta>,
}

impl Manifest {
    fn version(&self, version: u32) -> Option<&VersionMeta> {
        self.versions.iter().find(|v| v.version == version)
    }

    fn activate(&mut self, version: u32) {
        self.active = Some(version);
        if self.history.last() != Some(&version) {
            self.history.push(version);
        }
        const HISTORY: usize = 64;
        if self.history.len() > HISTORY {
            self.history.drain(..self.history.len() - HISTORY);
        }
    }
}

#[derive(Default)]
struct State {
    manifests: BTreeMap<String, Manifest>,
    stats: HashMap<(String, u32), Arc<ModuleStats>>,
}

impl State {
    fn stats(&mut self, name: &str, version: u32) -> Arc<ModuleStats> {
        self.stats.entry((name.to_string(), version)).or_default().clone()
    }
}

pub struct Registry {
    cfg: RegistryConfig,
    compiler: Compiler,
    slot: Arc<dyn Slot>,
    engine_key: String,
    state: parking_lot::Mutex<State>,
    /// Held by deploy and rollback for their whole run.
    deploying: parking_lot::Mutex<()>,
}

impl Registry {
    /// Open the translator registry and make the translator active: the version that was
    /// active before the restart (from its cached artifact), or `bootstrap` (the binary's own
    /// translator, or the configured file) when the registry has not seen those bytes yet — so a
    /// new build's translator is deployed once, and a later deploy or rollback is not undone by
    /// restarts.
    pub fn open(
        cfg: RegistryConfig,
        runtime: Arc<Runtime>,
        translator: &str,
        bootstrap: &[u8],
        source: &str,
    ) -> Result<Self, RegistryError> {
        let compiler = runtime.compiler().clone();
        let slot = Arc::new(TranslatorSlot { runtime, name: translator.to_string() });
        let registry = Self::open_with(cfg, compiler, slot)?;
        let name = translator.to_string();
        let hash = sha256_hex(bootstrap);
        let (known, active) = {
            let state = registry.state.lock();
            let manifest = state.manifests.get(&name);
            (
                manifest.is_some_and(|m| m.versions.iter().any(|v| v.sha256 == hash)),
                manifest.and_then(|m| m.active.and_then(|a| m.version(a).cloned())),
            )
        };
        match active {
            Some(meta) if known => match registry.load(&name, &meta) {
                Ok(activate) => {
                    activate();
                    return Ok(registry);
                }
                Err(e) => tracing::error!(
                    "the active translator {name} version {} cannot be loaded ({e}); deploying the {source} translator instead",
                    meta.version
                ),
            },
            Some(meta) => tracing::info!(
                "the {source} translator ({}) is new to the registry; deploying it over {name} version {}",
                &hash[..12],
                meta.version
            ),
            None => {}
        }
        registry.deploy(&name, bootstrap, source, None)?;
        Ok(registry)
    }

    /// Open a registry whose modules `slot` runs. Nothing is loaded yet: see
    /// [`load_served`](Self::load_served).
    pub fn open_with(
        cfg: RegistryConfig,
        compiler: Compiler,
        slot: Arc<dyn Slot>,
    ) -> Result<Self, RegistryError> {
        let artifacts = cfg.dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).map_err(io("creating", &artifacts))?;
        let mut state = State::default();
        for entry in std::fs::read_dir(&cfg.dir).map_err(io("reading", &cfg.dir))? {
            let path = entry.map_err(io("reading", &cfg.dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
                let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
                    RegistryError::Manifest { path: path.display().to_string(), message: e.to_string() }
                })?;
                state.manifests.insert(manifest.name.clone(), manifest);
            }
        }
        let engine_key = compiler.engine_key();
        Ok(Registry {
            cfg,
            compiler,
            slot,
            engine_key,
            state: parking_lot::Mutex::new(state),
            deploying: parking_lot::Mutex::new(()),
        })
    }

    /// Load and activate the active version of every module the slot serves. A version that
    /// cannot be loaded is reported (name and error) and skipped; the others still start.
    pub fn load_served(&self) -> Vec<(String, RegistryError)> {
        let active: Vec<(String, VersionMeta)> = {
            let state = self.state.lock();
            state
                .manifests
                .values()
                .filter(|m| self.slot.serves(&m.name))
                .filter_map(|m| m.active.and_then(|a| m.version(a)).map(|v| (m.name.clone(), v.clone())))
                .collect()
        };
        let mut failed = Vec::new();
        for (name, meta) in active {
            match self.load(&name, &meta) {
                Ok(activate) => activate(),
                Err(e) => failed.push((name, e)),
            }
        }
        failed
    }

    /// Names of the stored modules.
    pub fn names(&self) -> Vec<String> {
        self.state.lock().manifests.keys().cloned().collect()
    }

    /// The settings of `name`'s active version.
    pub fn active_settings(&self, name: &str) -> Option<serde_json::Value> {
        let state = self.state.lock();
        let m = state.manifests.get(name)?;
        m.active.and_then(|a| m.version(a)).and_then(|v| v.settings.clone())
    }

    /// Remove `name` and every version of it (its artifacts too, unless another module uses
    /// them); the slot stops running it.
    pub fn remove(&self, name: &str) -> Result<(), RegistryError> {
        let _deploying = self.deploying.lock();
        if !self.state.lock().manifests.contains_key(name) {
            return Err(RegistryError::UnknownModule(name.to_string()));
        }
        self.check_current(name)?;
        // The store, then the manifest file: if that fails, nothing changed (and a restart
        // agrees).
        if let Some(link) = &self.cfg.store {
            link.store.remove(&link.scope, name)?;
        }
        let path = self.cfg.dir.join(format!("{name}.json"));
        std::fs::remove_file(&path).map_err(io("removing", &path))?;
        self.state.lock().manifests.remove(name);
        self.slot.remove(name);
        if let Ok(d) = std::fs::File::open(&self.cfg.dir) {
            let _ = d.sync_all();
        }
        self.collect_garbage();
        tracing::info!(module = name, "removed");
        Ok(())
    }

    pub fn max_module_bytes(&self) -> u64 {
        self.cfg.max_module_bytes
    }

    /// Validate `wasm` (size, compiles, fits the protocol-handler world, instantiates), store it
    /// as the next version of `name`, and make it active. A refused upload changes nothing.
    pub fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        source: &str,
        settings: Option<serde_json::Value>,
    ) -> Result<VersionView, RegistryError> {
        check_name(name)?;
        if wasm.is_empty() {
            return Err(RegistryError::Empty);
        }
        let size = wasm.len() as u64;
        if size > self.cfg.max_module_bytes {
            return Err(RegistryError::TooLarge { size, max: self.cfg.max_module_bytes });
        }
        check_header(wasm)?;
        let started = Instant::now();
        let sha256 = sha256_hex(wasm);
        // One deploy or rollback at a time (compiling takes up to seconds; list and show go on).
        let _deploying = self.deploying.lock();
        self.check_current(name)?;
        let component = match self.cached(&sha256) {
            Some(c) => c,
            None => {
                let c = self.compiler.compile(wasm).map_err(RegistryError::Refused)?;
                self.write_artifact(&sha256, wasm, &c)?;
                c
            }
        };
        let mut manifest =
            self.manifest(name).unwrap_or_else(|| Manifest { name: name.to_string(), ..Manifest::default() });
        let version = manifest.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let stats = self.state.lock().stats(name, version);
        let id = ModuleId { name: name.to_string(), version, sha256: sha256.clone() };
        let activate =
            self.slot.prepare(&component, id, stats, settings.as_ref()).map_err(RegistryError::Refused)?;
        if let Some(link) = &self.cfg.store {
            link.store.put_blob(&sha256, wasm)?;
        }
        manifest.versions.push(VersionMeta {
            version,
            sha256,
            size,
            deployed_at_ms: now_ms(),
            source: source.to_string(),
            settings,
        });
        manifest.activate(version);
        self.prune(&mut manifest);
        self.save(&manifest)?;
        self.state.lock().manifests.insert(name.to_string(), manifest);
        activate();
        self.collect_garbage();
        tracing::info!(module = name, version, bytes = size, elapsed = ?started.elapsed(), %source, "deployed");
        self.version_view(name, version)
    }

    fn manifest(&self, name: &str) -> Option<Manifest> {
        self.state.lock().manifests.get(name).cloned()
    }

    /// With a store: refuse to change `name` if the store's manifest is not the one this host
    /// runs (another host changed it since this one started), rather than overwrite that
    /// change with one made from an older state.
    fn check_current(&self, name: &str) -> Result<(), RegistryError> {
        let Some(link) = &self.cfg.store else { return Ok(()) };
        let stored = link.store.manifest(&link.scope, name)?;
        let ours = self.manifest(name).map(|m| manifest_bytes(&m));
        if stored == ours { Ok(()) } else { Err(RegistryError::Conflict(name.to_string())) }
    }

    /// Activate `to`, or the version that was active before the current one.
    pub fn rollback(&self, name: &str, to: Option<u32>) -> Result<VersionView, RegistryError> {
        let _deploying = self.deploying.lock();
        self.check_current(name)?;
        let mut manifest =
            self.manifest(name).ok_or_else(|| RegistryError::UnknownModule(name.to_string()))?;
        let target = match to {
            Some(v) => {
                manifest
                    .version(v)
                    .ok_or(RegistryError::UnknownVersion { name: name.to_string(), version: v })?;
                v
            }
            None => {
                // Walk back past the current version (and any pruned ones).
                let mut history = manifest.history.clone();
                while history
                    .last()
                    .is_some_and(|v| Some(*v) == manifest.active || manifest.version(*v).is_none())
                {
                    history.pop();
                }
                let target = *history.last().ok_or_else(|| RegistryError::NoPrevious(name.to_string()))?;
                manifest.history = history;
                target
            }
        };
        let meta = manifest.version(target).cloned().expect("checked above");
        let activate = if self.slot.serves(name) { Some(self.load(name, &meta)?) } else { None };
        manifest.activate(target);
        self.save(&manifest)?;
        self.state.lock().manifests.insert(name.to_string(), manifest);
        if let Some(activate) = activate {
            activate();
        }
        tracing::info!(module = name, version = target, "rolled back");
        self.version_view(name, target)
    }

    pub fn list(&self) -> Vec<ModuleView> {
        let names: Vec<String> = self.state.lock().manifests.keys().cloned().collect();
        names.iter().filter_map(|n| self.show(n).ok()).collect()
    }

    pub fn show(&self, name: &str) -> Result<ModuleView, RegistryError> {
        let mut state = self.state.lock();
        let manifest = state
            .manifests
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownModule(name.to_string()))?;
        let versions = manifest
            .versions
            .iter()
            .map(|m| VersionView {
                version: m.version,
                sha256: m.sha256.clone(),
                size: m.size,
                deployed_at_ms: m.deployed_at_ms,
                source: m.source.clone(),
                settings: m.settings.clone(),
                active: manifest.active == Some(m.version),
                stats: state.stats(name, m.version).snapshot(),
            })
            .collect();
        Ok(ModuleView {
            name: name.to_string(),
            active: manifest.active,
            serving: self.slot.serves(name),
            versions,
        })
    }

    fn version_view(&self, name: &str, version: u32) -> Result<VersionView, RegistryError> {
        self.show(name)?
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or(RegistryError::UnknownVersion { name: name.to_string(), version })
    }

    /// A stored version, ready to run: from the cached artifact, or compiled again if that is
    /// missing, damaged or made by another build.
    fn load(&self, name: &str, meta: &VersionMeta) -> Result<Activation, RegistryError> {
        let started = Instant::now();
        let load_err = |source| RegistryError::Load { name: name.to_string(), version: meta.version, source };
        let (component, how) = match self.cached(&meta.sha256) {
            Some(c) => (c, "the artifact cache"),
            None => {
                let path = self.wasm_path(&meta.sha256);
                let wasm = std::fs::read(&path).map_err(io("reading", &path))?;
                if sha256_hex(&wasm) != meta.sha256 {
                    let e = WasmError::Compile(format!("{} does not match its hash", path.display()));
                    return Err(load_err(e));
                }
                let c = self.compiler.compile(&wasm).map_err(load_err)?;
                self.write_artifact(&meta.sha256, &wasm, &c)?;
                (c, "its .wasm, compiled again")
            }
        };
        let id = ModuleId { name: name.to_string(), version: meta.version, sha256: meta.sha256.clone() };
        let stats = self.state.lock().stats(name, meta.version);
        let activate = self.slot.prepare(&component, id, stats, meta.settings.as_ref()).map_err(load_err)?;
        tracing::info!(module = name, version = meta.version, elapsed = ?started.elapsed(), "loaded from {how}");
        Ok(activate)
    }

    fn wasm_path(&self, sha256: &str) -> PathBuf {
        self.cfg.dir.join("artifacts").join(format!("{sha256}.wasm"))
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.cfg.dir.join("artifacts").join(format!("{sha256}.{}.cwasm", self.engine_key))
    }

    /// The cached compiled artifact, if there is one and its digest holds.
    fn cached(&self, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256);
        let bytes = std::fs::read(&path).ok()?;
        match self.compiler.open_sealed(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring the cached artifact: {e}");
                None
            }
        }
    }

    fn write_artifact(&self, sha256: &str, wasm: &[u8], component: &Component) -> Result<(), RegistryError> {
        write_atomic(&self.wasm_path(sha256), &[wasm])?;
        let sealed = self.compiler.seal(component).map_err(RegistryError::Refused)?;
        write_atomic(&self.artifact_path(sha256), &[&sealed])
    }

    fn save(&self, manifest: &Manifest) -> Result<(), RegistryError> {
        let text = manifest_bytes(manifest);
        if let Some(link) = &self.cfg.store {
            link.store.put_manifest(&link.scope, &manifest.name, &text)?;
        }
        write_atomic(&self.cfg.dir.join(format!("{}.json", manifest.name)), &[&text])
    }

    /// Drop the oldest versions beyond `keep_versions`, never the active one or the one a
    /// rollback would return to.
    fn prune(&self, manifest: &mut Manifest) {
        let keep = self.cfg.keep_versions.max(2);
        let previous = manifest.history.iter().rev().find(|v| Some(**v) != manifest.active).copied();
        while manifest.versions.len() > keep {
            let Some(pos) = manifest
                .versions
                .iter()
                .position(|v| Some(v.version) != manifest.active && Some(v.version) != previous)
            else {
                break;
            };
            let gone = manifest.versions.remove(pos);
            tracing::info!(module = %manifest.name, version = gone.version, "pruned an old version");
        }
        let versions: Vec<u32> = manifest.versions.iter().map(|v| v.version).collect();
        manifest.history.retain(|v| versions.contains(v));
    }

    /// Remove artifacts no version refers to any more.
    fn collect_garbage(&self) {
        let live: std::collections::HashSet<String> = self
            .state
            .lock()
            .manifests
            .values()
            .flat_map(|m| m.versions.iter().map(|v| v.sha256.clone()))
            .collect();
        let dir = self.cfg.dir.join("artifacts");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let hash = file.split('.').next().unwrap_or_default();
            if hash.len() == 64 && !live.contains(hash) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A manifest as stored (compact JSON; a manifest read back serializes to the same bytes).
fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec(manifest).expect("a manifest serializes")
}

/// Make the registries under `data_dir` what `store` holds, before they open: each manifest it
/// has is written to `data_dir/<scope>/` with the components its versions use, and the local
/// manifests it does not have are removed. A store that holds nothing yet while `data_dir` has
/// manifests (a host that kept its registries there before) is filled from them instead. A
/// manifest the store holds that is not a registry's is skipped with a warning. Returns how
/// many manifests the registries have.
pub fn restore(store: &dyn ModuleStore, data_dir: &Path) -> Result<usize, RegistryError> {
    let snapshot = store.snapshot()?;
    let mut local_scopes = vec![TRANSLATOR_SCOPE.to_string()];
    if let Ok(tenants) = std::fs::read_dir(data_dir.join(TRANSFORMS_DIR)) {
        local_scopes.extend(tenants.flatten().map(|t| transform_scope(&t.file_name().to_string_lossy())));
    }
    let mut local = Vec::new();
    for scope in &local_scopes {
        let dir = data_dir.join(scope);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.flatten().map(|e| e.path()) {
            if let Some(name) = path.file_stem().filter(|_| path.extension().is_some_and(|e| e == "json")) {
                local.push((scope.clone(), name.to_string_lossy().into_owned(), path));
            }
        }
    }
    if snapshot.manifests.is_empty() && !local.is_empty() {
        return fill(store, data_dir, &local);
    }
    for (scope, name, path) in &local {
        if !snapshot.manifests.contains_key(&(scope.clone(), name.clone())) {
            tracing::info!(%scope, module = %name, "removing a module the store no longer has");
            std::fs::remove_file(path).map_err(io("removing", path))?;
        }
    }
    let mut restored = 0;
    for ((scope, name), bytes) in &snapshot.manifests {
        let manifest = match registry_scope(scope).and_then(|()| {
            check_name(name)?;
            serde_json::from_slice::<Manifest>(bytes).map_err(|e| RegistryError::Manifest {
                path: format!("{scope}/{name} in the store"),
                message: e.to_string(),
            })
        }) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%scope, module = %name, "skipping a manifest in the module store: {e}");
                continue;
            }
        };
        let dir = data_dir.join(scope);
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).map_err(io("creating", &artifacts))?;
        for v in &manifest.versions {
            let path = artifacts.join(format!("{}.wasm", v.sha256));
            if path.exists() {
                continue; // checked against its hash when it is compiled
            }
            match snapshot.blobs.get(&v.sha256) {
                Some(wasm) => write_atomic(&path, &[wasm])?,
                None => {
                    tracing::warn!(%scope, module = %name, version = v.version, "the store has no component for this version")
                }
            }
        }
        write_atomic(&dir.join(format!("{name}.json")), &[bytes])?;
        restored += 1;
    }
    Ok(restored)
}

/// Store the registries of `local` (scope, name, manifest path) in an empty store.
fn fill(
    store: &dyn ModuleStore,
    data_dir: &Path,
    local: &[(String, String, PathBuf)],
) -> Result<usize, RegistryError> {
    for (scope, name, path) in local {
        let text = std::fs::read(path).map_err(io("reading", path))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| RegistryError::Manifest {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        for v in &manifest.versions {
            let wasm_path = data_dir.join(scope).join("artifacts").join(format!("{}.wasm", v.sha256));
            match std::fs::read(&wasm_path) {
                Ok(wasm) if sha256_hex(&wasm) == v.sha256 => store.put_blob(&v.sha256, &wasm)?,
                _ => {
                    tracing::warn!(%scope, module = %name, version = v.version, "no intact component to store for this version")
                }
            }
        }
        store.put_manifest(scope, name, &manifest_bytes(&manifest))?;
        tracing::info!(%scope, module = %name, "stored a local module in the empty module store");
    }
    Ok(local.len())
}

/// The scopes registries have: `modules` (the translator's) and `transforms/<tenant>`.
fn registry_scope(scope: &str) -> Result<(), RegistryError> {
    match scope.split_once('/') {
        None if scope == TRANSLATOR_SCOPE => Ok(()),
        Some((TRANSFORMS_DIR, tenant)) if crate::tenant::TenantId::new(tenant).is_ok() => Ok(()),
        _ => Err(RegistryError::InvalidName(scope.to_string())),
    }
}

/// Say plainly what the bytes are when they are not a component (wasmparser's message is a dump).
fn check_header(wasm: &[u8]) -> Result<(), RegistryError> {
    let refused = |m: &str| Err(RegistryError::Refused(WasmError::Compile(m.to_string())));
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => refused(
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        ),
        Some([0, b'a', b's', b'm', ..]) => Ok(()), // another component-model layer: let wasmtime say
        _ => refused("not a WebAssembly component (the file does not start with \\0asm)"),
    }
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(RegistryError::InvalidName(name.to_string())) }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io { what, path: path.display().to_string(), source }
}

/// Write `parts` to `path` so that a crash leaves the old file or the new one, never half.
fn write_atomic(path: &Path, parts: &[&[u8]]) -> Result<(), RegistryError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp =
        path.with_file_name(format!(".{}.{n}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
    let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    for part in parts {
        f.write_all(part).map_err(io("writing", &tmp))?;
    }
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
