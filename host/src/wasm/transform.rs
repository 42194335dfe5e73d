//! Tenant message transforms: the `transform` world's bindings, a loaded transform version, and
//! one guest call per produced batch under the tenant's limits (memory, CPU deadline, output
//! size). Each call gets a fresh instance, so a trap or a deadline never poisons a later batch,
//! and the instance is dropped with the call.

use super::module::{ModuleId, ModuleStats};
use super::runtime::{EPOCH_TICK, GuestFailure, WasmError, deny_all_wasi};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        with: {
            "guise:runtime/logging": crate::wasm::bindings::logging,
        },
    });
}

use crate::wasm::bindings::logging;
pub use bindings::TransformPre;
pub use bindings::guise::runtime::transform_types::{Header, InputBatch, Output, Record};
use bindings::guise::runtime::{transform_config, transform_types};

/// Limits on one transform call; per tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformLimits {
    /// Linear memory of the instance.
    pub memory_bytes: usize,
    /// CPU (wall) deadline of the call.
    pub timeout: Duration,
    /// Bytes of keys, values and headers the call may return.
    pub max_output_bytes: usize,
}

impl Default for TransformLimits {
    fn default() -> Self {
        TransformLimits {
            memory_bytes: 16 << 20,
            timeout: Duration::from_millis(100),
            max_output_bytes: 16 << 20,
        }
    }
}

/// Why a transform call produced no records.
#[derive(thiserror::Error, Debug)]
pub enum TransformFailure {
    /// A trap, the deadline, the memory cap, or an invalid result.
    #[error(transparent)]
    Guest(#[from] GuestFailure),
    /// The guest returned an error for the batch.
    #[error("the transform refused the batch: {0}")]
    Refused(String),
}

impl TransformFailure {
    /// A short word for headers, logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformFailure::Guest(GuestFailure::Deadline(_)) => "timeout",
            TransformFailure::Guest(GuestFailure::Trap(_)) => "trap",
            TransformFailure::Guest(_) => "invalid",
            TransformFailure::Refused(_) => "error",
        }
    }
}

/// What a transform call may touch: logging, its configuration, and the deny-all WASI context.
pub struct TransformState {
    table: ResourceTable,
    wasi: WasiCtx,
    limits: StoreLimits,
    config: Arc<Vec<(String, String)>>,
    /// For log lines: `tenant/name@version`.
    who: Arc<str>,
}

impl WasiView for TransformState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl logging::Host for TransformState {
    fn log(&mut self, level: logging::Level, message: String) {
        let who = &*self.who;
        match level {
            logging::Level::Trace => {
                tracing::trace!(target: "guise::transform", transform = who, "{message}")
            }
            logging::Level::Debug => {
                tracing::debug!(target: "guise::transform", transform = who, "{message}")
            }
            logging::Level::Info => tracing::info!(target: "guise::transform", transform = who, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "guise::transform", transform = who, "{message}"),
            logging::Level::Error => {
                tracing::error!(target: "guise::transform", transform = who, "{message}")
            }
        }
    }
}

impl transform_config::Host for TransformState {
    fn get(&mut self) -> Vec<(String, String)> {
        self.config.as_ref().clone()
    }
}

impl transform_types::Host for TransformState {}

/// A transform version ready to run: each batch instantiates it afresh.
pub struct TransformModule {
    pub id: ModuleId,
    pre: TransformPre<TransformState>,
    pub stats: Arc<ModuleStats>,
    config: Arc<Vec<(String, String)>>,
    who: Arc<str>,
}

/// The transforms' side of the engine: its own linker (the transform world's imports only).
pub struct TransformEngine {
    engine: Engine,
    linker: Linker<TransformState>,
}

impl TransformEngine {
    /// `engine` is the translator runtime's (its epoch ticker drives the deadlines here too).
    pub fn new(engine: Engine) -> Result<Self, WasmError> {
        let mut linker = Linker::<TransformState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        bindings::Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        Ok(TransformEngine { engine, linker })
    }

    /// Check that `component` is a transform this host can run: every import is one the host
    /// provides (logging, the configuration, deny-all WASI), the `transform` export has the
    /// world's type, and one instance comes up under `limits`.
    pub fn prepare(
        &self,
        component: &Component,
        id: ModuleId,
        stats: Arc<ModuleStats>,
        tenant: &str,
        config: Vec<(String, String)>,
        limits: &TransformLimits,
    ) -> Result<TransformModule, WasmError> {
        let pre =
            self.linker.instantiate_pre(component).map_err(|e| WasmError::LinkTransform(format!("{e:#}")))?;
        let pre = TransformPre::new(pre).map_err(|e| WasmError::LinkTransform(format!("{e:#}")))?;
        let who: Arc<str> = format!("{tenant}/{}@{}", id.name, id.version).into();
        let module = TransformModule { id, pre, stats, config: Arc::new(config), who };
        let mut store = self.store(&module, limits, 0);
        module.pre.instantiate(&mut store).map_err(|e| WasmError::Instantiate(format!("{e:#}")))?;
        Ok(module)
    }

    fn store(&self, module: &TransformModule, limits: &TransformLimits, seed: u64) -> Store<TransformState> {
        let state = TransformState {
            table: ResourceTable::new(),
            wasi: deny_all_wasi(seed),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(64)
                .tables(64)
                .memories(4)
                .build(),
            config: module.config.clone(),
            who: module.who.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = limits.timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store
    }

    /// Run `module` on one batch. Counts the call, its records in and out, its time and its
    /// failure on the version's stats.
    pub fn call(
        &self,
        module: &TransformModule,
        limits: &TransformLimits,
        batch: &InputBatch,
        seed: u64,
    ) -> Result<Vec<Output>, TransformFailure> {
        let started = Instant::now();
        let stats = &module.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.records_in.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        let result = self.call_inner(module, limits, batch, seed);
        stats.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match &result {
            Ok(out) => {
                stats.records_out.fetch_add(out.len() as u64, Ordering::Relaxed);
            }
            Err(TransformFailure::Guest(g)) => stats.record_failure(g),
            Err(TransformFailure::Refused(_)) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn call_inner(
        &self,
        module: &TransformModule,
        limits: &TransformLimits,
        batch: &InputBatch,
        seed: u64,
    ) -> Result<Vec<Output>, TransformFailure> {
        let mut store = self.store(module, limits, seed);
        let bindings =
            module.pre.instantiate(&mut store).map_err(|e| GuestFailure::Instantiate(format!("{e:#}")))?;
        let outcome = bindings.call_transform(&mut store, batch).map_err(|e| match e.downcast_ref() {
            Some(wasmtime::Trap::Interrupt) => GuestFailure::Deadline(limits.timeout),
            _ => GuestFailure::Trap(format!("{e:#}")),
        })?;
        let outputs = outcome.map_err(TransformFailure::Refused)?;
        let size: usize = outputs.iter().map(|o| record_size(&o.record)).sum();
        if size > limits.max_output_bytes {
            return Err(GuestFailure::Invalid(format!(
                "the transform returned {size} bytes of records, over the limit of {}",
                limits.max_output_bytes
            ))
            .into());
        }
        Ok(outputs)
    }
}

/// Bytes of a record's key, value and headers.
pub fn record_size(r: &Record) -> usize {
    let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
    len(&r.key) + len(&r.value) + r.headers.iter().map(|h| h.key.len() + len(&h.value)).sum::<usize>()
}
