//! Compiling components, and caching their compiled code: what the module registry needs of the
//! engine, shared by the translator's runtime and the tenant transforms' (one engine, one epoch
//! ticker).

use super::runtime::WasmError;
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
}

impl Compiler {
    pub fn new(engine: Engine) -> Self {
        Compiler { engine }
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

    /// The compiled artifact of `component`, to cache on disk.
    pub fn serialize(&self, component: &Component) -> Result<Vec<u8>, WasmError> {
        component.serialize().map_err(|e| WasmError::Compile(format!("serializing: {e:#}")))
    }

    /// Load a compiled artifact. It fails cleanly if the artifact was made by another wasmtime
    /// version or engine configuration.
    ///
    /// # Safety
    /// `artifact` must be bytes `serialize` produced (wasmtime runs its machine code as is);
    /// the registry checks a digest it stored beside them before calling this.
    pub unsafe fn deserialize(&self, artifact: &[u8]) -> Result<Component, WasmError> {
        // SAFETY: the caller vouches that the bytes come from `serialize`.
        unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| WasmError::Compile(format!("loading the cached artifact: {e:#}")))
    }
}
