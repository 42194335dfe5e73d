use super::*;
use crate::storage::embedded::EmbeddedLog;
use crate::storage::{Log, LogDefaults};
use crate::wasm::{DEFAULT_TRANSLATOR, GuestLimits, HostContext};
use guise_test_guests::FAULTY_TRANSLATOR_PATH;
use std::time::Duration;

struct Fixture {
    dir: tempfile::TempDir,
    runtime: Arc<Runtime>,
    store: Option<StoreLink>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(&dir.path().join("log"), LogDefaults::default()).unwrap());
        Fixture { runtime: runtime(log), dir, store: None }
    }

    fn open(&self, keep: usize, bootstrap: &[u8]) -> Registry {
        let cfg = RegistryConfig {
            dir: self.dir.path().join("modules"),
            max_module_bytes: 2 << 20,
            keep_versions: keep,
            store: self.store.clone(),
        };
        Registry::open(cfg, self.runtime.clone(), "kafka", bootstrap, "embedded").unwrap()
    }

    /// A fresh runtime over the same directory, as after a restart.
    fn restart(&mut self) {
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(&self.dir.path().join("log"), LogDefaults::default()).unwrap());
        self.runtime = runtime(log);
    }

    fn active(&self) -> (u32, String) {
        let m = self.runtime.translator().unwrap();
        (m.id.version, m.id.sha256.clone())
    }

    fn artifacts(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("modules/artifacts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn runtime(log: Arc<dyn Log>) -> Arc<Runtime> {
    let ctx = Arc::new(HostContext::local(log, 1 << 20));
    let limits = GuestLimits {
        memory_bytes: 32 << 20,
        call_timeout: Duration::from_secs(5),
        max_instances: 8,
        max_response_bytes: 1 << 20,
        warm_instances: 4,
        warm_transforms: 0,
    };
    Arc::new(Runtime::empty(ctx, limits).unwrap())
}

fn faulty() -> Vec<u8> {
    std::fs::read(FAULTY_TRANSLATOR_PATH).unwrap()
}

#[test]
fn deploy_swaps_rollback_walks_back_and_a_restart_keeps_the_active_version() {
    let mut fx = Fixture::new();
    let a = DEFAULT_TRANSLATOR;
    let b = faulty();
    let registry = fx.open(10, a);
    assert_eq!(fx.active(), (1, sha256_hex(a)), "the bootstrap translator is version 1");

    let v2 = registry.deploy("kafka", &b, "upload", None).unwrap();
    assert_eq!((v2.version, v2.active, v2.sha256.clone()), (2, true, sha256_hex(&b)));
    assert_eq!(fx.active().0, 2, "the runtime runs the new version");
    // The same bytes again are a new version (reusing the compiled artifact).
    assert_eq!(registry.deploy("kafka", a, "upload", None).unwrap().version, 3);
    assert_eq!(fx.active(), (3, sha256_hex(a)));

    assert_eq!(registry.rollback("kafka", None).unwrap().version, 2);
    assert_eq!(fx.active().0, 2);
    assert_eq!(registry.rollback("kafka", None).unwrap().version, 1);
    assert!(matches!(registry.rollback("kafka", None), Err(RegistryError::NoPrevious(_))));
    assert_eq!(registry.rollback("kafka", Some(3)).unwrap().version, 3);
    assert!(matches!(registry.rollback("kafka", Some(9)), Err(RegistryError::UnknownVersion { .. })));
    assert!(matches!(registry.rollback("nope", None), Err(RegistryError::UnknownModule(_))));
    assert_eq!(registry.rollback("kafka", Some(2)).unwrap().version, 2);
    let shown = registry.show("kafka").unwrap();
    assert_eq!(shown.active, Some(2));
    assert_eq!(shown.versions.iter().filter(|v| v.active).count(), 1);
    assert!(shown.serving);
    // Two distinct contents: one .wasm and one artifact each.
    assert_eq!(fx.artifacts().len(), 4, "{:?}", fx.artifacts());
    drop(registry);

    // A restart with the same bootstrap bytes (already known) keeps version 2 active, loaded
    // from its artifact; a damaged artifact is not trusted but rebuilt.
    fx.restart();
    let artifact =
        fx.artifacts().into_iter().find(|n| n.starts_with(&sha256_hex(&b)) && n.ends_with(".cwasm")).unwrap();
    let path = fx.dir.path().join("modules/artifacts").join(&artifact);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let registry = fx.open(10, a);
    assert_eq!(fx.active(), (2, sha256_hex(&b)));
    assert_ne!(std::fs::read(&path).unwrap(), bytes, "the damaged artifact was rewritten");
    assert_eq!(registry.show("kafka").unwrap().versions.len(), 3);
    drop(registry);

    // A new build's translator (bytes the registry has not seen) is deployed once at start.
    fx.restart();
    let mut other = a.to_vec();
    other.extend_from_slice(b"\0"); // not a valid component: the bootstrap must compile
    let cfg = RegistryConfig {
        dir: fx.dir.path().join("modules"),
        max_module_bytes: 2 << 20,
        keep_versions: 10,
        store: None,
    };
    assert!(matches!(
        Registry::open(cfg, fx.runtime.clone(), "kafka", &other, "embedded"),
        Err(RegistryError::Refused(WasmError::Compile(_)))
    ));
}

#[test]
fn bad_uploads_are_refused_and_change_nothing() {
    let fx = Fixture::new();
    let registry = fx.open(10, DEFAULT_TRANSLATOR);
    let before = registry.show("kafka").unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("too large", vec![0; (2 << 20) + 1]),
        ("not wasm", b"hello, world".to_vec()),
        // A core module, not a component.
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        // An empty component: compiles, but exports no protocol handler.
        ("wrong world", b"\0asm\x0d\0\x01\0".to_vec()),
    ];
    for (what, bytes) in cases {
        let err = registry.deploy("kafka", &bytes, "upload", None).unwrap_err();
        let status = err.http_status();
        match what {
            "empty" => assert_eq!(status, 400, "{err}"),
            "too large" => assert_eq!(status, 413, "{err}"),
            "wrong world" => {
                assert!(matches!(err, RegistryError::Refused(WasmError::Link(_))), "{what}: {err}");
                assert!(err.to_string().contains("protocol-handler"), "{err}");
            }
            _ => assert!(matches!(err, RegistryError::Refused(WasmError::Compile(_))), "{what}: {err}"),
        }
        assert_eq!(registry.show("kafka").unwrap(), before, "{what} changed the registry");
        assert_eq!(fx.active().0, 1, "{what} changed the running version");
    }
    assert!(matches!(
        registry.deploy("Bad/Name", DEFAULT_TRANSLATOR, "upload", None),
        Err(RegistryError::InvalidName(_))
    ));
}

#[test]
fn old_versions_are_pruned_with_their_artifacts_but_never_the_active_or_previous() {
    let fx = Fixture::new();
    let a = DEFAULT_TRANSLATOR;
    let b = faulty();
    let registry = fx.open(3, a);
    for i in 0..5 {
        let bytes: &[u8] = if i % 2 == 0 { &b } else { a };
        registry.deploy("kafka", bytes, "upload", None).unwrap();
    }
    let versions: Vec<u32> = registry.show("kafka").unwrap().versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![4, 5, 6]);
    // Roll back to 5, then deploy again: 5 (the previous) must survive pruning, 4 goes.
    registry.rollback("kafka", Some(5)).unwrap();
    registry.deploy("kafka", &b, "upload", None).unwrap();
    let versions: Vec<u32> = registry.show("kafka").unwrap().versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![5, 6, 7]);
    assert_eq!(registry.rollback("kafka", None).unwrap().version, 5);

    // Only b is referenced once a's last versions go: its files are collected.
    let registry2 = registry;
    registry2.deploy("kafka", &b, "upload", None).unwrap();
    registry2.deploy("kafka", &b, "upload", None).unwrap();
    registry2.deploy("kafka", &b, "upload", None).unwrap();
    let left = fx.artifacts();
    assert!(left.iter().all(|n| n.starts_with(&sha256_hex(&b))), "{left:?}");
}

/// A [`ModuleStore`] in memory, standing in for the backend's (the `pulsar` one is tested end to
/// end in tests/tests/pulsar_backend.rs).
#[derive(Default)]
struct MemoryStore {
    state: parking_lot::Mutex<crate::storage::ModuleSnapshot>,
    down: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    fn check(&self) -> Result<(), StorageError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            Err(StorageError::Unavailable("the store is down".into()))
        } else {
            Ok(())
        }
    }
}

impl ModuleStore for MemoryStore {
    fn snapshot(&self) -> Result<crate::storage::ModuleSnapshot, StorageError> {
        self.check()?;
        Ok(self.state.lock().clone())
    }
    fn manifest(&self, scope: &str, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.check()?;
        Ok(self.state.lock().manifests.get(&(scope.into(), name.into())).cloned())
    }
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check()?;
        self.state.lock().blobs.insert(sha256.into(), bytes.to_vec());
        Ok(())
    }
    fn put_manifest(&self, scope: &str, name: &str, manifest: &[u8]) -> Result<(), StorageError> {
        self.check()?;
        self.state.lock().manifests.insert((scope.into(), name.into()), manifest.to_vec());
        Ok(())
    }
    fn remove(&self, scope: &str, name: &str) -> Result<(), StorageError> {
        self.check()?;
        self.state.lock().manifests.remove(&(scope.into(), name.into()));
        Ok(())
    }
}

#[test]
fn with_a_store_a_replacement_host_with_an_empty_directory_restores_the_registry() {
    let store = Arc::new(MemoryStore::default());
    let mut fx = Fixture::new();
    fx.store = Some(StoreLink { store: store.clone(), scope: "modules".into() });
    let registry = fx.open(10, DEFAULT_TRANSLATOR);
    registry.deploy("kafka", &faulty(), "upload", None).unwrap();
    registry.deploy("other", DEFAULT_TRANSLATOR, "upload", None).unwrap();
    registry.rollback("kafka", None).unwrap();
    registry.remove("other").unwrap();
    let (version, sha) = fx.active();
    assert_eq!(version, 1);
    drop(registry);

    // The store down: a deploy is refused with 503 and changes nothing.
    store.down.store(true, std::sync::atomic::Ordering::Relaxed);
    let registry = fx.open(10, DEFAULT_TRANSLATOR);
    let err = registry.deploy("kafka", &faulty(), "upload", None).unwrap_err();
    assert_eq!(err.http_status(), 503, "{err}");
    assert_eq!(registry.show("kafka").unwrap().active, Some(1));
    store.down.store(false, std::sync::atomic::Ordering::Relaxed);
    drop(registry);

    // A new host: its data directory is empty but for a manifest the store does not have.
    let data = fx.dir.path().join("modules");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("stale.json"), b"{}").unwrap();
    fx.restart();
    let n = restore(&*store, fx.dir.path()).unwrap();
    assert_eq!(n, 1);
    assert!(!data.join("stale.json").exists());
    let registry = fx.open(10, DEFAULT_TRANSLATOR);
    assert_eq!(fx.active(), (1, sha), "the rolled-back version is active, not a new deploy");
    let kafka = registry.show("kafka").unwrap();
    assert_eq!(kafka.versions.len(), 2, "version 2 is kept for a rollback");
    assert!(registry.show("other").is_err(), "a removed module stays removed");
    registry.rollback("kafka", Some(2)).unwrap();
    assert_eq!(fx.active().0, 2, "version 2's component came from the store");

    // Another host changes the manifest: this one refuses to overwrite it from its older state.
    {
        let mut state = store.state.lock();
        let key = ("modules".to_string(), "kafka".to_string());
        let mut m: serde_json::Value = serde_json::from_slice(&state.manifests[&key]).unwrap();
        m["active"] = 1.into();
        state.manifests.insert(key, serde_json::to_vec(&m).unwrap());
    }
    let err = registry.rollback("kafka", None).unwrap_err();
    assert_eq!(err.http_status(), 409, "{err}");
    assert!(err.to_string().contains("another host"), "{err}");
    drop(registry);

    // A host that kept its registry in data_dir before there was a store fills an empty one
    // (and keeps its own manifests).
    let empty = Arc::new(MemoryStore::default());
    assert_eq!(restore(&*empty, fx.dir.path()).unwrap(), 1);
    let filled = empty.state.lock().clone();
    assert!(filled.manifests.contains_key(&("modules".to_string(), "kafka".to_string())));
    assert_eq!(filled.blobs.len(), 2, "both versions' components");
    assert!(data.join("kafka.json").exists());
}
