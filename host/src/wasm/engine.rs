//! Compiling components, and caching their compiled code: what the module registry needs of the
//! engine, shared by the translator's runtime and the tenant transforms' (one engine, one epoch
//! ticker).

use super::runtime::{EPOCH_TICK, GuestLimits, WasmError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Stops the epoch ticker when the last clone of the engine's `Compiler` is gone.
struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
    _ticker: Option<Arc<Ticker>>,
    /// The warm transform instances the engine's pool has slots for.
    warm_transforms: u32,
}

impl Compiler {
    /// A compiler for an engine whose epochs someone else advances (or nobody: tests).
    pub fn new(engine: Engine) -> Self {
        Compiler { engine, _ticker: None, warm_transforms: 0 }
    }

    /// The host's one engine, sized for `limits` (pooling allocator slots, memory per
    /// instance), with epoch interruption and the thread that advances the epoch every
    /// [`EPOCH_TICK`]. The translator's runtime and the tenant transforms both run on it.
    pub fn for_limits(limits: &GuestLimits) -> Result<Self, WasmError> {
        let mut pool = PoolingAllocationConfig::default();
        // Twice the translator's slots: an append may run a tenant transform's instance while its
        // translator instance is live; and the warm translator instances waiting between calls.
        // And the warm transform instances. Every call runs on a fiber whose stack comes from
        // the pool, and a store keeps its last stack until it is dropped: one per instance,
        // warm ones too.
        let slots = limits.max_instances * 2 + limits.warm_instances + limits.warm_transforms;
        pool.total_component_instances(slots)
            .total_stacks(slots)
            .total_core_instances(slots * 16)
            .total_memories(slots * 2)
            .total_tables(slots * 16)
            .max_memory_size(limits.memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("guise-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| WasmError::Engine(format!("starting the epoch ticker: {e}")))?;
        }
        Ok(Compiler {
            engine,
            _ticker: Some(Arc::new(Ticker(stop))),
            warm_transforms: limits.warm_transforms,
        })
    }

    /// Transform instances that may wait warm on this engine (pool slots were set aside for
    /// them).
    pub fn warm_transforms(&self) -> u32 {
        self.warm_transforms
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Names the artifacts this engine can load: its wasmtime version and compiler settings.
    pub fn engine_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    /// Compile a component (Cranelift; tens of milliseconds to seconds).
    pub fn compile(&self, wasm: &[u8]) -> Result<Component, WasmError> {
        Component::new(&self.engine, wasm).map_err(|e| WasmError::Compile(format!("{e:#}")))
    }

    /// The compiled artifact of `component`, sealed to cache on disk: the machine code
    /// followed by its SHA-256, which [`open_sealed`](Self::open_sealed) checks.
    pub fn seal(&self, component: &Component) -> Result<Vec<u8>, WasmError> {
        let mut code =
            component.serialize().map_err(|e| WasmError::Compile(format!("serializing: {e:#}")))?;
        let digest = Sha256::digest(&code);
        code.extend_from_slice(digest.as_slice());
        Ok(code)
    }

    /// Load an artifact [`seal`](Self::seal) wrote. Bytes whose digest does not hold (truncated,
    /// torn or changed on disk) are refused before wasmtime sees them; an artifact of another
    /// wasmtime version or engine configuration fails cleanly in wasmtime's own check.
    ///
    /// Crate-private: the digest is not a key, so it proves the bytes were not torn or changed
    /// by accident, not who wrote them. Only the module registry calls this, on files in its own
    /// directory under the host's data_dir.
    pub(crate) fn open_sealed(&self, sealed: &[u8]) -> Result<Component, WasmError> {
        let refused = |m: &str| Err(WasmError::Compile(format!("loading the cached artifact: {m}")));
        let Some(split) = sealed.len().checked_sub(32) else { return refused("truncated") };
        let (code, digest) = sealed.split_at(split);
        if Sha256::digest(code).as_slice() != digest {
            return refused("its digest does not match");
        }
        // The host's one reviewed `unsafe` (the workspace denies `unsafe_code` elsewhere).
        // SAFETY: wasmtime runs the artifact's machine code as is, so it must be bytes that
        // `Component::serialize` produced. These are: `seal` wrote them with the digest just
        // checked, into the module registry's directory under the host's data_dir, which only
        // the host writes.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, code) };
        component.map_err(|e| WasmError::Compile(format!("loading the cached artifact: {e:#}")))
    }
}
