//! Engine, the active translator, and one guest call per request under limits.
//!
//! A request runs on a warm instance of the active translator kept from an earlier request of
//! the same tenant (`warm`), or on a fresh one (instantiation from an `InstancePre` with the
//! pooling allocator costs tens of microseconds). An instance whose call trapped, ran past its
//! deadline or failed is never used again, so a trap never poisons a later request; a parked
//! request holds no instance at all: the guest returns a `wait`, and the host re-runs the
//! request later.
//!
//! The active translator is an `Arc<Module>` behind a lock that is held only to clone the `Arc`:
//! a request takes the current module when it starts (and again each time a parked request is
//! re-run), so a swap is atomic between requests and a request in flight finishes on the version
//! it started with. A swap drops the warm instances of the old version, and one that finishes
//! after the swap is not kept: nothing warm of an old version is reused.

use super::admission::{Admission, Permit};
use super::bindings::{ProtocolHandler, ProtocolHandlerPre, handler_types};
use super::engine::Compiler;
use super::module::{Module, ModuleId, ModuleStats};
use super::state::{BufferHandle, ConnInfo, GuestLimiter, GuestState, HostContext, Observed, WakeKey};
use super::warm::{Instance, Key, WarmPool};
use bytes::Bytes;
use guise_guest_sdk::error;
use parking_lot::RwLock;
use rand::SeedableRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::UpdateDeadline;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// How often the epoch advances; guest deadlines are whole ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(thiserror::Error, Debug)]
pub enum WasmError {
    #[error("configuring the Wasm engine: {0}")]
    Engine(String),
    #[error("the module does not compile: {0}")]
    Compile(String),
    #[error("the module does not fit the protocol-handler world of guise:runtime@0.1.0: {0}")]
    Link(String),
    #[error("the module does not fit the transform world of guise:runtime@0.1.0: {0}")]
    LinkTransform(String),
    #[error("the transform's binding is refused: {0}")]
    Binding(String),
    #[error("the module fails to instantiate: {0}")]
    Instantiate(String),
    #[error("no translator is deployed")]
    NoTranslator,
}

/// Why a guest call failed. The instance is discarded either way.
#[derive(thiserror::Error, Debug)]
pub enum GuestFailure {
    #[error("guest call exceeded its CPU deadline of {0:?}")]
    Deadline(Duration),
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("could not instantiate the guest: {0}")]
    Instantiate(String),
    #[error("guest returned an invalid response: {0}")]
    Invalid(String),
}

impl GuestFailure {
    /// The Kafka error code the client gets for this failure (via the guest's error-response).
    pub fn kafka_code(&self) -> i16 {
        match self {
            GuestFailure::Deadline(_) => error::REQUEST_TIMED_OUT,
            _ => error::UNKNOWN_SERVER_ERROR,
        }
    }
}

/// Limits on every guest call.
#[derive(Clone, Debug)]
pub struct GuestLimits {
    /// Linear memory per instance; for the translator at least the maximum frame plus room.
    pub memory_bytes: usize,
    /// CPU (wall) deadline per call.
    pub call_timeout: Duration,
    /// Instances that may exist at once (pool slots).
    pub max_instances: u32,
    /// Cap on the bytes a guest may return in one response (its own bytes, not host buffers).
    pub max_response_bytes: usize,
    /// Translator instances kept warm between requests, over all tenants (0: a fresh instance
    /// for every call). They take pool slots beside `max_instances` (see `engine`).
    pub warm_instances: u32,
    /// Tenant-transform instances kept warm between batches, over all tenants: pool slots of
    /// their own too ([`TransformEngine::new`](super::TransformEngine::new)).
    pub warm_transforms: u32,
}

/// What a request came to.
#[derive(Debug)]
pub enum Handled {
    /// Send these segments (the size prefix is the caller's), or nothing; with the throttle
    /// the response reported to the client (its quotas), which the host holds it for at least.
    Respond(Option<Vec<Bytes>>, Duration),
    /// Park until one of these partitions passes what the guest saw, or the deadline.
    Wait { wake_on: Vec<WakeKey>, deadline: Duration, observed: Vec<Observed> },
    /// Close the connection.
    Close(String),
}

/// The throttle the guest reported in its response (`quotas.throttle-ms`), if it asked.
fn reported(store: &Store<GuestState>) -> Duration {
    Duration::from_millis(u64::try_from(store.data().reported_throttle_ms).unwrap_or(0))
}

pub struct Runtime {
    engine: Engine,
    compiler: Compiler,
    linker: Linker<GuestState>,
    ctx: Arc<HostContext>,
    limits: GuestLimits,
    admission: Admission,
    /// The translator new requests run on.
    translator: RwLock<Option<Arc<Module>>>,
    /// Instances of the active translator whose last call succeeded, for the next request.
    warm: WarmPool<Key, Instance>,
    /// Guest calls made, and failed (trap, deadline, memory), over all versions.
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    /// Calls that ran on a warm instance.
    pub warm_calls: AtomicU64,
}

impl Runtime {
    /// A runtime with `wasm` compiled and active as an unregistered translator (version 0);
    /// for tests and benchmarks. The server loads its translator through the module registry.
    pub fn new(wasm: &[u8], ctx: Arc<HostContext>, limits: GuestLimits) -> Result<Self, WasmError> {
        let runtime = Self::empty(ctx, limits)?;
        let component = runtime.compile(wasm)?;
        let module = runtime.prepare(&component, ModuleId::unregistered("kafka", wasm), Arc::default())?;
        runtime.activate(Arc::new(module));
        Ok(runtime)
    }

    /// A runtime with no translator yet (requests are refused until one is activated), on an
    /// engine of its own: for tests and benchmarks.
    pub fn empty(ctx: Arc<HostContext>, limits: GuestLimits) -> Result<Self, WasmError> {
        Self::on(Compiler::for_limits(&limits)?, ctx, limits)
    }

    /// A runtime with no translator yet on `compiler`'s engine (the host's one engine, shared
    /// with the tenant transforms).
    pub fn on(compiler: Compiler, ctx: Arc<HostContext>, limits: GuestLimits) -> Result<Self, WasmError> {
        let engine = compiler.engine().clone();
        let mut linker = Linker::<GuestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        ProtocolHandler::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        Ok(Runtime {
            compiler,
            engine,
            linker,
            ctx,
            admission: Admission::new(limits.max_instances),
            warm: WarmPool::new(limits.warm_instances),
            limits,
            translator: RwLock::new(None),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            warm_calls: AtomicU64::new(0),
        })
    }

    /// Wait for a slot to run a guest call for a request of `api_key` (see [`super::admission`]):
    /// hold it across [`handle`](Self::handle) (and an error response), drop it before parking.
    pub(super) async fn admit(&self, api_key: Option<i16>) -> Permit {
        self.admission.admit(api_key).await
    }

    /// Compiling and caching components on this runtime's engine.
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// Compile a component (Cranelift; tens of milliseconds to seconds).
    pub fn compile(&self, wasm: &[u8]) -> Result<Component, WasmError> {
        self.compiler.compile(wasm)
    }

    /// Check that `component` is a protocol handler this host can run, and make it ready:
    /// every import must be one the host provides (the deny-all WASI context and the
    /// `guise:runtime` interfaces), the `handle` and `error-response` exports must have the
    /// world's types, and one instance must come up (a start function that traps is refused).
    pub fn prepare(
        &self,
        component: &Component,
        id: ModuleId,
        stats: Arc<ModuleStats>,
    ) -> Result<Module, WasmError> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let pre = ProtocolHandlerPre::new(pre).map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let conn = ConnInfo::new(0, "public", "deploy-check");
        let mut store = self.store(&conn, &Bytes::new());
        // Deploying is synchronous (the registry); instantiating runs no host import that
        // waits, so this completes on this thread.
        futures::executor::block_on(pre.instantiate_async(&mut store))
            .map_err(|e| WasmError::Instantiate(format!("{e:#}")))?;
        Ok(Module { id, pre, stats })
    }

    /// Make `module` the translator new requests run on; the previous one is returned (requests
    /// already running on it finish there).
    pub fn activate(&self, module: Arc<Module>) -> Option<Arc<Module>> {
        tracing::info!(module = %module.id.name, version = module.id.version, hash = %module.id.short_hash(), "translator activated");
        let previous = self.translator.write().replace(module.clone());
        self.warm.retain(|k| k.of(&module));
        previous
    }

    /// Warm instances waiting now.
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
    }

    /// The translator a request starting now runs on.
    pub fn translator(&self) -> Result<Arc<Module>, WasmError> {
        self.translator.read().clone().ok_or(WasmError::NoTranslator)
    }

    pub fn context(&self) -> &Arc<HostContext> {
        &self.ctx
    }

    fn store(&self, conn: &ConnInfo, frame: &Bytes) -> Store<GuestState> {
        let state = GuestState {
            table: ResourceTable::new(),
            wasi: deny_all_wasi(conn.id),
            limits: GuestLimiter::new(
                StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .instances(64)
                    .tables(64)
                    .memories(4)
                    .build(),
            ),
            ctx: self.ctx.clone(),
            conn: conn.clone(),
            observed: Vec::new(),
            host_time: Duration::ZERO,
            frame: frame.clone(),
            fetched: 0,
            reported_throttle_ms: 0,
        };
        // (`GuestState::begin` sets the same per-request fields on a warm instance.)
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        self.arm(&mut store);
        store
    }

    /// Give the store's next call its CPU deadline. The deadline is for the guest's own CPU:
    /// time spent awaiting host calls (an append that runs a tenant transform or waits on
    /// storage) is handed back.
    fn arm(&self, store: &mut Store<GuestState>) {
        arm_deadline(store, self.limits.call_timeout, |s| std::mem::take(&mut s.host_time));
    }

    /// Count a failed call, on the host and on the module version.
    fn failed(&self, module: &Module, failure: GuestFailure) -> GuestFailure {
        self.failures.fetch_add(1, Ordering::Relaxed);
        module.stats.record_failure(&failure);
        failure
    }

    fn trap(&self, module: &Module, e: wasmtime::Error) -> GuestFailure {
        let failure = match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => GuestFailure::Deadline(self.limits.call_timeout),
            _ => GuestFailure::Trap(format!("{e:#}")),
        };
        self.failed(module, failure)
    }

    async fn instantiate(
        &self,
        module: &Module,
        conn: &ConnInfo,
        frame: &Bytes,
    ) -> Result<(Store<GuestState>, ProtocolHandler), GuestFailure> {
        self.count_call(module);
        let mut store = self.store(conn, frame);
        let bindings = module
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.failed(module, GuestFailure::Instantiate(format!("{e:#}"))))?;
        Ok((store, bindings))
    }

    /// An instance of `module` for a request of `conn` with `frame`: a warm one of the
    /// connection's tenant, its state set for this request and its deadline armed afresh, or
    /// else a fresh one.
    async fn instance(
        &self,
        module: &Module,
        conn: &ConnInfo,
        frame: &Bytes,
    ) -> Result<Instance, GuestFailure> {
        let Some(mut warm) = self.warm.take(|k| k.is(module, &conn.tenant)) else {
            let (store, bindings) = self.instantiate(module, conn, frame).await?;
            return Ok(Instance { store, bindings, served: 0 });
        };
        self.count_call(module);
        self.warm_calls.fetch_add(1, Ordering::Relaxed);
        warm.store.data_mut().begin(conn, frame);
        self.arm(&mut warm.store);
        Ok(warm)
    }

    /// Count a guest call, on the host and on the module version.
    fn count_call(&self, module: &Module) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        module.stats.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Keep `instance`, whose call on `module` succeeded, warm for the tenant's next request.
    fn release(&self, module: &Module, conn: &ConnInfo, mut instance: Instance) {
        instance.served = instance.served.saturating_add(1);
        let active = || self.translator.read().as_deref().is_some_and(|m| std::ptr::eq(m, module));
        self.warm.offer(Key::new(module, &conn.tenant), instance, active);
    }

    /// Run `module` on one request frame (without its size prefix), on a fiber: the call
    /// suspends (holding its instance and fiber stack, no thread) while a host call awaits
    /// storage, and yields its thread every epoch tick.
    pub async fn handle(
        &self,
        module: &Module,
        conn: &ConnInfo,
        frame: &Bytes,
        final_: bool,
    ) -> Result<Handled, GuestFailure> {
        let mut instance = self.instance(module, conn, frame).await?;
        let Instance { store, bindings, .. } = &mut instance;
        let lent = lend(store, frame)?.rep();
        // Lent as a borrow: wasmtime passes it through without an entry of its own in the store
        // (an owned handle would leave one behind per call on a warm instance).
        let outcome = bindings
            .call_handle(&mut *store, Resource::new_borrow(lent), final_)
            .await
            .map_err(|e| self.trap(module, e))?;
        // The guest only borrowed the frame (a borrow still held would have trapped): its entry
        // goes, so that the table is empty again (an instance whose table is not is not kept).
        let _ = store.data_mut().table.delete(Resource::<BufferHandle>::new_own(lent));
        let handled = self.outcome(module, conn, store, outcome);
        // A wait on a run that must answer is the translator's mistake (the connection closes):
        // that instance is not kept either.
        let misbehaved = final_ && matches!(handled, Ok(Handled::Wait { .. }));
        if handled.is_ok() && !misbehaved {
            self.release(module, conn, instance);
        }
        handled
    }

    /// What a successful call's `outcome` comes to.
    fn outcome(
        &self,
        module: &Module,
        conn: &ConnInfo,
        store: &mut Store<GuestState>,
        outcome: handler_types::Outcome,
    ) -> Result<Handled, GuestFailure> {
        match outcome {
            handler_types::Outcome::Respond(None) => Ok(Handled::Respond(None, reported(store))),
            handler_types::Outcome::Respond(Some(segments)) => {
                let throttle = reported(store);
                Ok(Handled::Respond(Some(self.segments(module, store, segments)?), throttle))
            }
            handler_types::Outcome::Close(reason) => Ok(Handled::Close(reason)),
            handler_types::Outcome::Wait(w) => {
                let ns = &self.ctx;
                let wake_on = w
                    .wake_on
                    .into_iter()
                    .map(|source| match source {
                        handler_types::WakeSource::Partition(tp) => {
                            WakeKey::Partition(ns.topic(&conn.tenant, &tp.topic), tp.partition)
                        }
                        handler_types::WakeSource::Group(group) => {
                            WakeKey::Group { tenant: conn.tenant.clone(), group }
                        }
                    })
                    .collect();
                let observed = std::mem::take(&mut store.data_mut().observed);
                Ok(Handled::Wait { wake_on, deadline: Duration::from_millis(w.deadline_ms.into()), observed })
            }
        }
    }

    /// Ask a fresh instance of `module` for the error response to `frame` (after a failed call
    /// on it; the instance is not kept).
    pub async fn error_response(
        &self,
        module: &Module,
        conn: &ConnInfo,
        frame: &Bytes,
        code: i16,
    ) -> Result<Option<Vec<Bytes>>, GuestFailure> {
        let (mut store, bindings) = self.instantiate(module, conn, frame).await?;
        let lent = lend(&mut store, frame)?.rep();
        let segments = bindings
            .call_error_response(&mut store, Resource::new_borrow(lent), code)
            .await
            .map_err(|e| self.trap(module, e))?;
        match segments {
            None => Ok(None),
            Some(s) => Ok(Some(self.segments(module, &mut store, s)?)),
        }
    }

    /// Turn the guest's segments into bytes to write: guest bytes as they are, host buffers by
    /// handle (no copy).
    fn segments(
        &self,
        module: &Module,
        store: &mut Store<GuestState>,
        segments: Vec<handler_types::Segment>,
    ) -> Result<Vec<Bytes>, GuestFailure> {
        let mut out = Vec::with_capacity(segments.len());
        let mut guest_bytes = 0usize;
        for s in segments {
            match s {
                handler_types::Segment::Bytes(b) => {
                    guest_bytes += b.len();
                    if guest_bytes > self.limits.max_response_bytes {
                        let failure = GuestFailure::Invalid(format!(
                            "response exceeds {} bytes",
                            self.limits.max_response_bytes
                        ));
                        return Err(self.failed(module, failure));
                    }
                    out.push(Bytes::from(b));
                }
                handler_types::Segment::Buffer(r) => {
                    let b = store.data_mut().table.delete(r).map_err(|e| {
                        self.failed(module, GuestFailure::Invalid(format!("bad buffer handle: {e}")))
                    })?;
                    out.push(b.0);
                }
            }
        }
        Ok(out)
    }
}

/// Put `frame` in `store`'s table, for a call to borrow.
fn lend(store: &mut Store<GuestState>, frame: &Bytes) -> Result<Resource<BufferHandle>, GuestFailure> {
    store
        .data_mut()
        .table
        .push(BufferHandle(frame.clone()))
        .map_err(|e| GuestFailure::Instantiate(e.to_string()))
}

/// Give `store`'s guest `budget` of CPU time, counted in epoch ticks: at every tick the guest
/// yields its thread (it runs on a fiber polled by its connection's task, so other tasks get the
/// thread meanwhile) and is charged the tick, unless `host_time` says it spent that much in
/// awaited host calls since the last tick; once the budget is spent it traps with `Interrupt`.
pub(crate) fn arm_deadline<T: 'static>(
    store: &mut Store<T>,
    budget: Duration,
    host_time: impl Fn(&mut T) -> Duration + Send + Sync + 'static,
) {
    let mut left = ticks(budget);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        if host_time(ctx.data_mut()) < EPOCH_TICK {
            left = left.saturating_sub(1);
        }
        if left == 0 { Err(wasmtime::Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Yield(1)) }
    });
}

/// Whole epoch ticks in `d`, at least one.
fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(EPOCH_TICK.as_millis())).unwrap_or(u64::MAX).max(1)
}

/// Deny-all WASI: no preopens, env, args, stdio or sockets; a fixed clock; randomness seeded by
/// `seed`. Rust `std` guests import these (HashMap seeds from wasi:random).
pub(crate) fn deny_all_wasi(seed: u64) -> WasiCtx {
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(rand::rngs::StdRng::seed_from_u64(seed))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(!seed))
        .insecure_random_seed(u128::from(seed));
    wasi.build()
}

/// A clock that always reads the same time: guests get no real clock.
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
