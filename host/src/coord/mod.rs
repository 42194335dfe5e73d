//! Group coordination as a host service: consumer groups (Kafka's classic protocol), committed
//! offsets, and their durability through the storage port. The translator only decodes, calls
//! and encodes; what a group is and when a rebalance ends is decided here.

use parking_lot::Mutex;
use std::collections::HashMap;
use tokio::sync::watch;

/// The group coordinator of this host (every tenant's groups; a group is (tenant, group id)).
#[derive(Default)]
pub struct Coordinator {
    /// A change counter per group: bumped on every change a parked join or sync may wait for.
    watches: Mutex<HashMap<(String, String), watch::Sender<i64>>>,
}

impl Coordinator {
    /// A watch of the group's change counter (it moves whenever the group changes).
    pub fn subscribe(&self, tenant: &str, group: &str) -> watch::Receiver<i64> {
        self.watches
            .lock()
            .entry((tenant.to_string(), group.to_string()))
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The group's change counter now (what a guest call saw).
    pub fn group_seq(&self, tenant: &str, group: &str) -> i64 {
        self.watches.lock().get(&(tenant.to_string(), group.to_string())).map_or(0, |w| *w.borrow())
    }

    /// Wake everything parked on the group.
    pub fn notify(&self, tenant: &str, group: &str) {
        let mut watches = self.watches.lock();
        let w = watches.entry((tenant.to_string(), group.to_string())).or_insert_with(|| watch::channel(0).0);
        w.send_modify(|seq| *seq += 1);
    }
}
