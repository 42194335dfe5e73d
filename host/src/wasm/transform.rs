//! Tenant message transforms: the `transform` world's bindings, a loaded transform version, and
//! one guest call per produced batch under the tenant's limits (memory, CPU deadline, output
//! size). A call runs on a warm instance of the same version kept from an earlier batch
//! (`super::warm`: a version belongs to one tenant, so no instance crosses tenants), or on a
//! fresh one. An instance whose call trapped, ran past its deadline, refused the batch or
//! returned records it may not (over the output limit, malformed, or routed to a topic that is
//! not one of its outputs) is dropped with the call, so it never poisons a later batch; only
//! one whose call succeeded is kept, with its deadline armed afresh for the next. The instances
//! of a version are dropped when the version is (a deploy, a rollback or a delete drops the
//! binding that held it, and the last batch that started on it ends).

use super::module::{ModuleId, ModuleStats};
use super::runtime::{GuestFailure, WasmError, deny_all_wasi};
use super::state::GuestLimiter;
use super::warm::{Reusable, WarmPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        // Run on a fiber (`call_async`), as the translator is: a transform runs inside an
        // async append, and its WASI imports (a panic message to stderr) must not block.
        exports: { default: async },
        with: {
            "guise:runtime/logging": crate::wasm::bindings::logging,
        },
    });
}

use crate::record::records;
use crate::wasm::bindings::logging;
pub use bindings::TransformPre;
pub use bindings::guise::runtime::transform_types::{Header, InputBatch, Record};
use bindings::guise::runtime::{transform_config, transform_types};
use bytes::Bytes;

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
    limits: GuestLimiter,
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

/// A transform version of one tenant, ready to run. Its warm instances go when it does.
pub struct TransformModule {
    pub id: ModuleId,
    pre: TransformPre<TransformState>,
    pub stats: Arc<ModuleStats>,
    config: Arc<Vec<(String, String)>>,
    who: Arc<str>,
    /// Names this module's instances in the warm pool (unique for the engine's lifetime).
    serial: u64,
    warm: Arc<Warm>,
}

impl Drop for TransformModule {
    fn drop(&mut self) {
        // No call holds the module any more, so none can offer an instance of it after this.
        let serial = self.serial;
        self.warm.retain(|k| k.0 != serial);
    }
}

/// A transform instance with its store, and the calls it has served.
struct TransformInstance {
    store: Store<TransformState>,
    bindings: bindings::Transform,
    served: u32,
}

impl Reusable for TransformInstance {
    fn usage(&self) -> (u32, &GuestLimiter, &ResourceTable) {
        let state = self.store.data();
        (self.served, &state.limits, &state.table)
    }
}

/// Warm transform instances, keyed by their module's serial and the memory cap their store was
/// made with (a binding's limits are fixed with its module; callers outside one may vary them).
type Warm = WarmPool<(u64, usize), TransformInstance>;

/// The transforms' side of the engine: its own linker (the transform world's imports only), and
/// the instances kept warm between batches.
pub struct TransformEngine {
    engine: Engine,
    linker: Linker<TransformState>,
    warm: Arc<Warm>,
    serials: AtomicU64,
    /// Calls that ran on a warm instance.
    pub warm_calls: AtomicU64,
}

impl TransformEngine {
    /// `engine` is the translator runtime's (its epoch ticker drives the deadlines here too);
    /// `warm` instances are kept between batches, over all tenants (0: a fresh one for every
    /// call). They hold pool slots: the engine must have been sized for them
    /// ([`Compiler::warm_transforms`](super::Compiler::warm_transforms)).
    pub fn new(engine: Engine, warm: u32) -> Result<Self, WasmError> {
        let mut linker = Linker::<TransformState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        bindings::Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        Ok(TransformEngine {
            engine,
            linker,
            warm: Arc::new(WarmPool::new(warm)),
            serials: AtomicU64::new(0),
            warm_calls: AtomicU64::new(0),
        })
    }

    /// Warm instances waiting now.
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
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
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let module = TransformModule {
            id,
            pre,
            stats,
            config: Arc::new(config),
            who,
            serial,
            warm: self.warm.clone(),
        };
        let mut store = self.store(&module, limits, 0);
        // Deploying is synchronous (the registry); the instance's start runs no host import
        // that waits, so this completes on this thread.
        futures::executor::block_on(module.pre.instantiate_async(&mut store))
            .map_err(|e| WasmError::Instantiate(format!("{e:#}")))?;
        Ok(module)
    }

    fn store(&self, module: &TransformModule, limits: &TransformLimits, seed: u64) -> Store<TransformState> {
        let state = TransformState {
            table: ResourceTable::new(),
            wasi: deny_all_wasi(seed),
            limits: GuestLimiter::new(
                StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(64)
                    .tables(64)
                    .memories(4)
                    .build(),
            ),
            config: module.config.clone(),
            who: module.who.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        super::runtime::arm_deadline(&mut store, limits.timeout, |_| Duration::ZERO);
        store
    }

    /// Run `module` on one batch; the records it returns may go to `outputs` (besides the
    /// input topic). Counts the call, its records in and out, its time and its failure on the
    /// version's stats.
    pub async fn call(
        &self,
        module: &TransformModule,
        limits: &TransformLimits,
        outputs: &[String],
        batch: &InputBatch,
        seed: u64,
    ) -> Result<Vec<Emitted>, TransformFailure> {
        let started = Instant::now();
        let stats = &module.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.records_in.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        let result = async {
            let mut instance = self.instance(module, limits, seed).await?;
            let TransformInstance { store, bindings, .. } = &mut instance;
            let outcome =
                bindings.call_transform(&mut *store, batch).await.map_err(|e| match e.downcast_ref() {
                    Some(wasmtime::Trap::Interrupt) => GuestFailure::Deadline(limits.timeout),
                    _ => GuestFailure::Trap(format!("{e:#}")),
                })?;
            let emitted = checked(outcome.map_err(TransformFailure::Refused)?, limits, outputs)?;
            // Only an instance whose call succeeded serves the version's next batch (the module
            // is alive, so its instances have not been dropped: see its `Drop`).
            instance.served = instance.served.saturating_add(1);
            self.warm.offer((module.serial, limits.memory_bytes), instance, || true);
            Ok::<_, TransformFailure>(emitted)
        }
        .await;
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

    /// An instance of `module`: a warm one with its deadline armed afresh, or a fresh one.
    async fn instance(
        &self,
        module: &TransformModule,
        limits: &TransformLimits,
        seed: u64,
    ) -> Result<TransformInstance, GuestFailure> {
        if let Some(mut warm) = self.warm.take(|k| *k == (module.serial, limits.memory_bytes)) {
            self.warm_calls.fetch_add(1, Ordering::Relaxed);
            super::runtime::arm_deadline(&mut warm.store, limits.timeout, |_| Duration::ZERO);
            return Ok(warm);
        }
        let mut store = self.store(module, limits, seed);
        let bindings = module
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| GuestFailure::Instantiate(format!("{e:#}")))?;
        Ok(TransformInstance { store, bindings, served: 0 })
    }
}

/// The records a call returned (`encoded`), if they are within `limits`, well formed, and
/// routed to none but `outputs`.
fn checked(
    encoded: Vec<u8>,
    limits: &TransformLimits,
    outputs: &[String],
) -> Result<Vec<Emitted>, GuestFailure> {
    // The result is one byte list (see wit/guise.wit): lifting it cost exactly its length,
    // which the guest's memory cap bounds.
    if encoded.len() > limits.max_output_bytes {
        return Err(GuestFailure::Invalid(format!(
            "the transform returned {} bytes of records, over the limit of {}",
            encoded.len(),
            limits.max_output_bytes
        )));
    }
    let emitted = decode_outputs(Bytes::from(encoded)).map_err(GuestFailure::Invalid)?;
    if let Some(t) = emitted.iter().find_map(|e| e.topic.as_ref().filter(|t| !outputs.contains(t))) {
        return Err(GuestFailure::Invalid(format!(
            "the transform routed a record to {t:?}, which is not one of its output topics {outputs:?}"
        )));
    }
    Ok(emitted)
}

/// One record a transform returned, and where it goes (None: the input topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub topic: Option<String>,
    pub record: records::Record,
}

/// Parse a transform's encoded outputs (the format in `transform-types`); the records' bytes
/// are slices of `buf`. Every length is checked against the bytes left.
pub fn decode_outputs(buf: Bytes) -> Result<Vec<Emitted>, String> {
    struct Reader {
        buf: Bytes,
        at: usize,
    }
    impl Reader {
        fn take(&mut self, n: usize) -> Result<Bytes, String> {
            if self.buf.len() - self.at < n {
                return Err(format!("the encoded outputs end early at byte {}", self.at));
            }
            self.at += n;
            Ok(self.buf.slice(self.at - n..self.at))
        }
        fn int(&mut self) -> Result<i32, String> {
            Ok(i32::from_be_bytes(self.take(4)?[..].try_into().expect("4 bytes")))
        }
        fn bytes(&mut self) -> Result<Option<Bytes>, String> {
            match self.int()? {
                -1 => Ok(None),
                n if n < 0 => Err(format!("a negative length {n} at byte {}", self.at - 4)),
                n => self.take(n as usize).map(Some),
            }
        }
        fn string(&mut self) -> Result<Option<String>, String> {
            self.bytes()?
                .map(|b| String::from_utf8(b.to_vec()).map_err(|_| "a string that is not UTF-8".to_string()))
                .transpose()
        }
    }
    let mut r = Reader { buf, at: 0 };
    let mut out = Vec::new();
    while r.at < r.buf.len() {
        let topic = r.string()?;
        let key = r.bytes()?;
        let value = r.bytes()?;
        let timestamp = i64::from_be_bytes(r.take(8)?[..].try_into().expect("8 bytes"));
        let offset_delta = r.int()?;
        let count = r.int()?;
        // Each header takes at least 8 bytes: refuse a count the bytes left cannot hold.
        if count < 0 || (count as usize).saturating_mul(8) > r.buf.len() - r.at {
            return Err(format!("an impossible header count {count}"));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let key = r.string()?.ok_or("a header without a key")?;
            headers.push(records::Header { key, value: r.bytes()? });
        }
        out.push(Emitted { topic, record: records::Record { key, value, headers, timestamp, offset_delta } });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    #[test]
    fn outputs_decode_and_malformed_ones_are_refused() {
        let mut b = Vec::new();
        put(&mut b, Some(b"other"));
        put(&mut b, None);
        put(&mut b, Some(b"v"));
        b.extend_from_slice(&7i64.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        put(&mut b, Some(b"h"));
        put(&mut b, None);
        put(&mut b, Some(b"h"));
        put(&mut b, Some(b"x"));
        let boundary = b.len(); // a whole first output: a valid prefix
        put(&mut b, None);
        put(&mut b, Some(b"k"));
        put(&mut b, None);
        b.extend_from_slice(&8i64.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        let out = decode_outputs(Bytes::from(b.clone())).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].topic.as_deref(), Some("other"));
        assert_eq!(out[0].record.headers.len(), 2, "duplicate header keys stay");
        assert_eq!(out[0].record.offset_delta, 3);
        assert_eq!(
            (out[1].topic.as_deref(), out[1].record.key.as_deref(), out[1].record.timestamp),
            (None, Some(&b"k"[..]), 8)
        );
        assert_eq!(out[1].record.value, None);
        for cut in (1..b.len()).filter(|c| *c != boundary) {
            assert!(decode_outputs(Bytes::from(b[..cut].to_vec())).is_err(), "cut at {cut}");
        }
        let mut huge = Vec::new();
        put(&mut huge, None);
        put(&mut huge, None);
        put(&mut huge, None);
        huge.extend_from_slice(&0i64.to_be_bytes());
        huge.extend_from_slice(&0i32.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_outputs(Bytes::from(huge)).unwrap_err().contains("impossible header count"));
        assert!(decode_outputs(Bytes::from(vec![0xff, 0xff, 0xff, 0xfe])).is_err());
        assert!(decode_outputs(Bytes::new()).unwrap().is_empty());
    }
}
