//! Parked requests: a guest that must wait (a fetch for min_bytes, a join for the rebalance)
//! returns a `wait` with what should wake it; the front end parks the request here, holding no
//! instance, and re-runs it when this returns. What a wake key means (a partition's high
//! watermark in the log, a group's change counter in the coordinator) is the runtime's business,
//! not the front end's.

use super::runtime::Runtime;
use super::state::{Observed, WakeKey};
use futures::FutureExt;
use tokio::sync::watch;

impl Runtime {
    /// Wait until something in `wake_on` moves past what the guest observed (true), or the
    /// deadline passes or the host shuts down (false).
    pub async fn park(
        &self,
        wake_on: &[WakeKey],
        observed: &[Observed],
        deadline: tokio::time::Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let ctx = self.context();
        let mut waits = Vec::new();
        for key in wake_on {
            let mut rx = match key {
                WakeKey::Partition(topic, partition) => match ctx.log.subscribe(topic, *partition) {
                    Ok(rx) => rx,
                    Err(_) => continue,
                },
                WakeKey::Group { tenant, group } => ctx.coord.subscribe(tenant, group),
            };
            let seen = observed.iter().find(|o| &o.key == key).map(|o| o.value);
            let current = *rx.borrow_and_update();
            match seen {
                // It moved between the guest's call and our subscription: re-run now.
                Some(seen) if current != seen => return true,
                // The guest did not read it (e.g. an error): wake on any change.
                None | Some(_) => {}
            }
            waits.push(async move { rx.changed().await.is_ok() }.boxed());
        }
        let any_change = async {
            if waits.is_empty() {
                std::future::pending::<()>().await;
            }
            let _ = futures::future::select_all(waits).await;
        };
        tokio::select! {
            _ = any_change => true,
            _ = tokio::time::sleep_until(deadline) => false,
            _ = shutdown.wait_for(|s| *s) => false,
        }
    }
}
