//! How many transform calls one tenant may run at once. A transform that loops until its
//! deadline keeps a runtime worker busy for `transform_timeout_ms`; without a cap, a tenant that
//! produces into one on N connections keeps N of them spinning, and every other tenant's
//! requests queue behind them. With it, the tenant's further calls wait here (asynchronously:
//! no thread, no instance) for one of its own slots, and other tenants keep the rest.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// One tenant's slots and what they saw.
#[derive(Debug)]
pub struct TenantCalls {
    limit: usize,
    slots: Semaphore,
    running: AtomicU32,
    peak: AtomicU32,
    waited: AtomicU64,
}

/// A tenant's transform calls, as the admin API shows them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallsSnapshot {
    /// Calls that may run at once (`transform_max_concurrency`).
    pub limit: usize,
    pub running: u32,
    /// The most that ran at once since the host started.
    pub peak: u32,
    /// Calls that had to wait for a slot.
    pub waited: u64,
}

impl TenantCalls {
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        TenantCalls {
            limit,
            slots: Semaphore::new(limit),
            running: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            waited: AtomicU64::new(0),
        }
    }

    /// Run `call` in one of the tenant's slots, waiting for one if all are taken.
    pub async fn run<T>(&self, call: impl Future<Output = T>) -> T {
        let _permit = match self.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.waited.fetch_add(1, Ordering::Relaxed);
                self.slots.acquire().await.expect("the slots are never closed")
            }
        };
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        // Counted down also when the produce that waits on this is dropped mid-call.
        let _running = Running(&self.running);
        call.await
    }

    pub fn snapshot(&self) -> CallsSnapshot {
        CallsSnapshot {
            limit: self.limit,
            running: self.running.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
        }
    }
}

struct Running<'a>(&'a AtomicU32);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The default cap: half the machine's cores, at least one, so that one tenant's transforms
/// leave the other half to everyone else.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn calls_beyond_the_limit_wait_for_a_slot() {
        let calls = std::sync::Arc::new(TenantCalls::new(2));
        let (release, hold) = tokio::sync::watch::channel(false);
        let spawn = |calls: std::sync::Arc<TenantCalls>, mut hold: tokio::sync::watch::Receiver<bool>| {
            tokio::spawn(async move { calls.run(async move { hold.wait_for(|r| *r).await.map(drop) }).await })
        };
        let tasks: Vec<_> = (0..5).map(|_| spawn(calls.clone(), hold.clone())).collect();
        while calls.snapshot().running < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = calls.snapshot();
        assert_eq!((s.limit, s.running, s.peak, s.waited), (2, 2, 2, 3), "three wait: {s:?}");
        release.send(true).unwrap();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let s = calls.snapshot();
        assert_eq!((s.running, s.peak, s.waited), (0, 2, 3));
        assert!(default_concurrency() >= 1);
    }
}
