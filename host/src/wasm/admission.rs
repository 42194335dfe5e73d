//! Admission control in front of the translator: at most as many guest calls run at once as the
//! instance pool has slots for, and the rest wait here (asynchronously, holding no thread and no
//! instance) instead of failing to instantiate. A few slots are kept for the requests that must
//! never queue behind slow ones: ApiVersions (a client's first request on every connection) and
//! Heartbeat (a late one costs a consumer its group membership). A produce whose append waits on
//! slow storage holds its slot (and its instance and fiber stack, but no thread) for that long;
//! the cap bounds them.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots kept for [`CONTROL_APIS`].
pub const CONTROL_SLOTS: u32 = 8;

/// ApiVersions and Heartbeat.
pub const CONTROL_APIS: &[i16] = &[18, 12];

pub(crate) struct Admission {
    data: Arc<Semaphore>,
    control: Arc<Semaphore>,
}

/// A slot for one guest call; dropping it lets the next call in.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Admission {
    /// Slots for `instances` concurrent translator calls, [`CONTROL_SLOTS`] of them (at most
    /// half) kept for control requests.
    pub(crate) fn new(instances: u32) -> Self {
        let control = CONTROL_SLOTS.min(instances / 2).max(1);
        let data = instances.saturating_sub(control).max(1);
        Admission {
            data: Arc::new(Semaphore::new(data as usize)),
            control: Arc::new(Semaphore::new(control as usize)),
        }
    }

    /// Wait for a slot for a request of `api_key` (None: not a parsable frame; it takes a data
    /// slot, and the translator closes the connection).
    pub(crate) async fn admit(&self, api_key: Option<i16>) -> Permit {
        let control = api_key.is_some_and(|k| CONTROL_APIS.contains(&k));
        let slots = if control { &self.control } else { &self.data };
        Permit(slots.clone().acquire_owned().await.expect("the admission semaphores are never closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn control_requests_do_not_queue_behind_data() {
        let a = Admission::new(10);
        let held: Vec<Permit> = futures::future::join_all((0..2).map(|_| a.admit(Some(0)))).await;
        assert_eq!(held.len(), 2);
        // Data slots are 10 - 5 = 5: three more fit, the sixth waits.
        let more: Vec<Permit> = futures::future::join_all((0..3).map(|_| a.admit(Some(0)))).await;
        assert!(tokio::time::timeout(Duration::from_millis(50), a.admit(Some(0))).await.is_err());
        assert!(tokio::time::timeout(Duration::from_millis(50), a.admit(None)).await.is_err());
        // ApiVersions and Heartbeat still get in.
        let _v = tokio::time::timeout(Duration::from_millis(50), a.admit(Some(18))).await.unwrap();
        let _h = tokio::time::timeout(Duration::from_millis(50), a.admit(Some(12))).await.unwrap();
        drop(more);
        let _p = tokio::time::timeout(Duration::from_millis(50), a.admit(Some(0))).await.unwrap();
    }
}
