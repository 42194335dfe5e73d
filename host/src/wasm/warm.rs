//! Warm instances: an instance whose call ended normally is kept for the next call of the same
//! module version and the same tenant, instead of being torn down and a fresh one set up (which
//! is most of a call's cost at the boundary: BENCHMARKS.md, "Wasm boundary"). The translator's
//! runtime keeps one pool (keyed by version and tenant), the tenant transforms another (keyed by
//! the transform version, which belongs to one tenant).
//!
//! An instance is never kept after a trap, a deadline, a failed call or an invalid response
//! (the callers only offer the ones whose call succeeded), nor while it still holds a resource
//! handle, nor once it has served [`MAX_CALLS`] calls or its memory has grown past
//! [`MAX_MEMORY`] (then the next call of its key gets a fresh one). At most `cap` instances
//! wait at once, over all keys; the oldest goes first. When a version stops being the one new
//! calls run on, its instances are dropped, and one offered after that is not kept, so no call
//! ever runs on a version that was not active when it started.

use super::bindings::ProtocolHandler;
use super::module::Module;
use super::state::{GuestLimiter, GuestState};
use parking_lot::Mutex;
use std::collections::VecDeque;
use wasmtime::Store;
use wasmtime::component::ResourceTable;

/// Calls an instance serves before it is recycled.
pub const MAX_CALLS: u32 = 10_000;
/// Linear memory an instance may hold and still be kept.
pub const MAX_MEMORY: usize = 16 << 20;

/// What the pool needs to know of an instance whose call succeeded: whether it may serve again.
pub(super) trait Reusable {
    /// Calls served, the store's memory, and its resource table.
    fn usage(&self) -> (u32, &GuestLimiter, &ResourceTable);

    fn reusable(&self) -> bool {
        let (served, limits, table) = self.usage();
        served < MAX_CALLS && limits.memory_bytes <= MAX_MEMORY && table.is_empty()
    }
}

/// A translator instance with its store, and the calls it has served.
pub(super) struct Instance {
    pub store: Store<GuestState>,
    pub bindings: ProtocolHandler,
    pub served: u32,
}

impl Reusable for Instance {
    fn usage(&self) -> (u32, &GuestLimiter, &ResourceTable) {
        let state = self.store.data();
        (self.served, &state.limits, &state.table)
    }
}

/// Which translator version (by identity: see [`WarmPool::offer`]) and tenant an instance serves.
#[derive(PartialEq, Eq)]
pub(super) struct Key {
    module: usize,
    tenant: String,
}

impl Key {
    pub fn new(module: &Module, tenant: &str) -> Self {
        Key { module: identity(module), tenant: tenant.to_string() }
    }

    pub fn is(&self, module: &Module, tenant: &str) -> bool {
        self.module == identity(module) && self.tenant == tenant
    }

    pub fn of(&self, module: &Module) -> bool {
        self.module == identity(module)
    }
}

/// A module's address identifies it only while it is alive: it is (the runtime holds the active
/// one), and an instance of it is only kept while it is active.
fn identity(module: &Module) -> usize {
    std::ptr::from_ref(module) as usize
}

pub(super) struct WarmPool<K, I> {
    cap: usize,
    /// Oldest first.
    idle: Mutex<VecDeque<(K, I)>>,
}

impl<K, I: Reusable> WarmPool<K, I> {
    pub fn new(cap: u32) -> Self {
        WarmPool { cap: cap as usize, idle: Mutex::new(VecDeque::new()) }
    }

    /// The most recently kept instance whose key `fits`, if one waits.
    pub fn take(&self, fits: impl Fn(&K) -> bool) -> Option<I> {
        let mut idle = self.idle.lock();
        let at = idle.iter().rposition(|(k, _)| fits(k))?;
        idle.remove(at).map(|(_, i)| i)
    }

    /// Keep `instance`, whose call succeeded, under `key`, if its version is the one active now
    /// (`is_active`, asked under this pool's lock: see [`retain`](Self::retain)) and the
    /// instance may serve again. Dropping an instance resets its memory, so whatever is not kept
    /// is dropped after the lock is released.
    pub fn offer(&self, key: K, instance: I, is_active: impl FnOnce() -> bool) {
        if self.cap == 0 || !instance.reusable() {
            return;
        }
        let evicted = {
            let mut idle = self.idle.lock();
            if !is_active() {
                return;
            }
            idle.push_back((key, instance));
            if idle.len() > self.cap { idle.pop_front() } else { None }
        };
        drop(evicted);
    }

    /// Drop every instance whose key is not one to `keep`: called once a version stops being
    /// active (so that no offer that saw it active comes after it).
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        let dropped = {
            let mut idle = self.idle.lock();
            let (kept, dropped): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut *idle).into_iter().partition(|(k, _)| keep(k));
            *idle = kept;
            dropped
        };
        drop(dropped);
    }

    /// Instances waiting now.
    pub fn len(&self) -> usize {
        self.idle.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_CALLS, MAX_MEMORY};
    use crate::storage::embedded::EmbeddedLog;
    use crate::storage::{Log, LogDefaults, wait};
    use crate::wasm::module::ModuleId;
    use crate::wasm::{
        ConnInfo, DEFAULT_TRANSLATOR, GuestFailure, GuestLimits, Handled, HostContext, Runtime,
    };
    use bytes::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn runtime(dir: &std::path::Path, wasm: &[u8], warm: u32) -> Runtime {
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap());
        let ctx = Arc::new(HostContext::local(log, 64 << 20));
        let limits = GuestLimits {
            memory_bytes: 128 << 20,
            call_timeout: Duration::from_millis(300),
            max_instances: 4,
            max_response_bytes: 1 << 20,
            warm_instances: warm,
            warm_transforms: 0,
        };
        Runtime::new(wasm, ctx, limits).unwrap()
    }

    /// A request frame (header v1) of `api_key` v0 from `client_id`, with `body`.
    fn frame(api_key: i16, client_id: &str, body: &[u8]) -> Bytes {
        let mut f = Vec::new();
        f.extend_from_slice(&api_key.to_be_bytes());
        f.extend_from_slice(&0i16.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&i16::try_from(client_id.len()).unwrap().to_be_bytes());
        f.extend_from_slice(client_id.as_bytes());
        f.extend_from_slice(body);
        Bytes::from(f)
    }

    fn api_versions() -> Bytes {
        frame(18, "warm-test", &[])
    }

    fn answered(r: Result<Handled, GuestFailure>) -> Vec<u8> {
        match r.unwrap() {
            Handled::Respond(Some(segments), _) => segments.concat(),
            other => panic!("not a response: {other:?}"),
        }
    }

    /// (calls, of which on warm instances, instances waiting)
    fn counts(rt: &Runtime) -> (u64, u64, usize) {
        (rt.calls.load(Ordering::Relaxed), rt.warm_calls.load(Ordering::Relaxed), rt.warm_instances())
    }

    #[test]
    fn a_request_runs_on_its_tenants_warm_instance_and_never_on_another_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), DEFAULT_TRANSLATOR, 4);
        let module = rt.translator().unwrap();
        let a = ConnInfo::new(1, "tenant-a", "peer");
        let b = ConnInfo::new(2, "tenant-b", "peer");
        let first = answered(wait(rt.handle(&module, &a, &api_versions(), false)));
        assert_eq!(counts(&rt), (1, 0, 1), "the first call's instance is kept");
        // A later connection of the same tenant gets it, and the same answer.
        let a2 = ConnInfo::new(3, "tenant-a", "peer");
        assert_eq!(answered(wait(rt.handle(&module, &a2, &api_versions(), false))), first);
        assert_eq!(counts(&rt), (2, 1, 1));
        // Another tenant does not: it gets a fresh one, and both are kept.
        assert_eq!(answered(wait(rt.handle(&module, &b, &api_versions(), false))), first);
        assert_eq!(counts(&rt), (3, 1, 2));
        for _ in 0..3 {
            wait(rt.handle(&module, &b, &api_versions(), false)).unwrap();
        }
        assert_eq!(counts(&rt), (6, 4, 2));

        // With no warm instances, every call is fresh.
        let dir = tempfile::tempdir().unwrap();
        let cold = runtime(dir.path(), DEFAULT_TRANSLATOR, 0);
        let module = cold.translator().unwrap();
        for _ in 0..3 {
            wait(cold.handle(&module, &a, &api_versions(), false)).unwrap();
        }
        assert_eq!(counts(&cold), (3, 0, 0));
    }

    #[test]
    fn a_trapping_or_looping_call_leaves_no_instance_behind() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = std::fs::read(guise_test_guests::FAULTY_TRANSLATOR_PATH).unwrap();
        let rt = runtime(dir.path(), &faulty, 4);
        let module = rt.translator().unwrap();
        let conn = ConnInfo::new(1, "public", "peer");
        wait(rt.handle(&module, &conn, &api_versions(), false)).unwrap();
        assert_eq!(counts(&rt), (1, 0, 1));
        // The warm instance takes the trapping request, and is gone with it.
        let trap = frame(0, "fault:trap", &[0; 16]);
        assert!(matches!(wait(rt.handle(&module, &conn, &trap, false)), Err(GuestFailure::Trap(_))));
        assert_eq!(counts(&rt), (2, 1, 0));
        let looping = frame(0, "fault:loop", &[0; 16]);
        assert!(matches!(wait(rt.handle(&module, &conn, &looping, false)), Err(GuestFailure::Deadline(_))));
        assert_eq!(counts(&rt), (3, 1, 0));
        // The next request is fresh, and answered.
        answered(wait(rt.handle(&module, &conn, &api_versions(), false)));
        assert_eq!(counts(&rt), (4, 1, 1));
    }

    #[test]
    fn a_swap_drops_the_old_versions_instances_and_keeps_none_that_finish_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), DEFAULT_TRANSLATOR, 4);
        let old = rt.translator().unwrap();
        let conn = ConnInfo::new(1, "public", "peer");
        wait(rt.handle(&old, &conn, &api_versions(), false)).unwrap();
        assert_eq!(rt.warm_instances(), 1);

        let component = rt.compile(DEFAULT_TRANSLATOR).unwrap();
        let mut id = ModuleId::unregistered("kafka", DEFAULT_TRANSLATOR);
        id.version = 2;
        let new = Arc::new(rt.prepare(&component, id, Arc::default()).unwrap());
        rt.activate(new.clone());
        assert_eq!(rt.warm_instances(), 0, "the old version's instance is dropped at the swap");
        // A request that started on the old version before the swap finishes there; its
        // instance is not kept.
        wait(rt.handle(&old, &conn, &api_versions(), false)).unwrap();
        assert_eq!(counts(&rt), (2, 0, 0));
        wait(rt.handle(&new, &conn, &api_versions(), false)).unwrap();
        wait(rt.handle(&new, &conn, &api_versions(), false)).unwrap();
        assert_eq!(counts(&rt), (4, 1, 1));
        assert_eq!(new.stats.calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_instance_is_recycled_once_its_memory_grew_past_the_bound_or_it_served_enough_calls() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), DEFAULT_TRANSLATOR, 4);
        let module = rt.translator().unwrap();
        let conn = ConnInfo::new(1, "public", "peer");
        // The guest copies the frame it is handed: this one makes its memory grow past the
        // bound (ApiVersions v0 ignores what follows its header).
        let big = frame(18, "warm-test", &vec![0; MAX_MEMORY + (1 << 20)]);
        answered(wait(rt.handle(&module, &conn, &big, false)));
        assert_eq!(counts(&rt), (1, 0, 0), "an instance that grew past {MAX_MEMORY} bytes is not kept");

        for _ in 0..MAX_CALLS {
            wait(rt.handle(&module, &conn, &api_versions(), false)).unwrap();
        }
        let calls = u64::from(MAX_CALLS);
        assert_eq!(counts(&rt), (calls + 1, calls - 1, 0), "recycled after {MAX_CALLS} calls");
        wait(rt.handle(&module, &conn, &api_versions(), false)).unwrap();
        assert_eq!(counts(&rt), (calls + 2, calls - 1, 1));
    }

    #[test]
    fn at_most_the_cap_waits_and_the_oldest_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), DEFAULT_TRANSLATOR, 2);
        let module = rt.translator().unwrap();
        for (id, tenant) in [(1, "t1"), (2, "t2"), (3, "t3")] {
            wait(rt.handle(&module, &ConnInfo::new(id, tenant, "peer"), &api_versions(), false)).unwrap();
        }
        assert_eq!(counts(&rt), (3, 0, 2));
        // t1's went first; t3's is still there.
        wait(rt.handle(&module, &ConnInfo::new(4, "t1", "peer"), &api_versions(), false)).unwrap();
        assert_eq!(counts(&rt), (4, 0, 2));
        wait(rt.handle(&module, &ConnInfo::new(5, "t3", "peer"), &api_versions(), false)).unwrap();
        assert_eq!(counts(&rt), (5, 1, 2));
    }
}
