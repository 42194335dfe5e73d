//! A loaded translator version: who it is, its pre-instantiated component, and its counters.

use super::bindings::ProtocolHandlerPre;
use super::runtime::GuestFailure;
use super::state::GuestState;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// A module version: name, version number (1, 2, ... per name; 0 for one not in the registry)
/// and the SHA-256 of its `.wasm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleId {
    pub name: String,
    pub version: u32,
    pub sha256: String,
}

impl ModuleId {
    /// An id for a module loaded outside the registry (tests, benchmarks).
    pub fn unregistered(name: &str, wasm: &[u8]) -> Self {
        ModuleId { name: name.to_string(), version: 0, sha256: sha256_hex(wasm) }
    }

    /// The first 12 hex digits of the hash, for logs and tables.
    pub fn short_hash(&self) -> &str {
        &self.sha256[..self.sha256.len().min(12)]
    }
}

pub use crate::storage::modules::sha256_hex;

/// Guest calls of one module version since the host started (not persisted).
#[derive(Debug, Default)]
pub struct ModuleStats {
    /// Guest calls (requests, re-runs of parked requests, and error responses).
    pub calls: AtomicU64,
    /// Calls that trapped (a panic, `unreachable`, running out of memory).
    pub traps: AtomicU64,
    /// Calls stopped at their CPU deadline.
    pub timeouts: AtomicU64,
    /// Calls that failed otherwise: an instance that would not come up, an oversized or
    /// malformed response.
    pub invalid: AtomicU64,
    /// Transforms only: calls where the guest returned an error for the batch.
    pub refused: AtomicU64,
    /// Transforms only: records handed in and returned.
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Transforms only: time spent in calls, in nanoseconds.
    pub busy_ns: AtomicU64,
}

impl ModuleStats {
    pub fn record_failure(&self, failure: &GuestFailure) {
        let counter = match failure {
            GuestFailure::Trap(_) => &self.traps,
            GuestFailure::Deadline(_) => &self.timeouts,
            GuestFailure::Instantiate(_) | GuestFailure::Invalid(_) => &self.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let traps = self.traps.load(Ordering::Relaxed);
        let timeouts = self.timeouts.load(Ordering::Relaxed);
        let invalid = self.invalid.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: traps + timeouts + invalid + refused,
            traps,
            timeouts,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            busy_ms: self.busy_ns.load(Ordering::Relaxed) / 1_000_000,
        }
    }
}

/// Counters as the admin API shows them; `errors` counts every failed call. The record counts
/// and time are a transform's (absent for a translator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_in: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_out: u64,
    /// Milliseconds spent in calls.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub busy_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A version ready to run: each request instantiates it afresh.
pub struct Module {
    pub id: ModuleId,
    pub(super) pre: ProtocolHandlerPre<GuestState>,
    pub stats: std::sync::Arc<ModuleStats>,
}
