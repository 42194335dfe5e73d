//! One request to completion, and parking: the front end hands a frame to
//! [`Runtime::execute`], which waits for an admission slot, runs the active translator on a
//! fiber, and, when the guest returns a `wait` (a fetch for min_bytes, a join for the
//! rebalance), releases its slot, parks the request holding no instance, and re-runs it when what
//! it waits on moves (or, at the deadline, for a final answer). What a wake key means (a
//! partition's high watermark in the log, a group's change counter in the coordinator) is the
//! runtime's business, not the front end's. A failed guest call is answered by a fresh
//! instance's error response.

use super::runtime::{Handled, Runtime};
use super::state::{ConnInfo, Observed, RequestInfo, WakeKey};
use crate::quota::Kind;
use bytes::Bytes;
use futures::FutureExt;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What became of a request.
#[derive(Debug)]
pub enum Executed {
    /// Write these segments (the size prefix is the front end's), then hold the connection's
    /// next request for the throttle (zero unless the client is over a quota).
    Send(Vec<Bytes>, Duration),
    /// No response (a produce with acks=0); hold the next request for the throttle.
    Nothing(Duration),
    /// Close the connection (the reason is logged).
    Close,
}

tokio::task_local! {
    /// Time spent for the request being run outside the translator's polls (a tenant
    /// transform's call on its own threads), which its quotas count as the request's.
    static CHARGED: std::cell::Cell<Duration>;
}

/// Count `time` as the current request's (no-op outside a measured request, e.g. a Pulsar
/// endpoint's produce, or a tenant without quotas).
pub fn charge(time: Duration) {
    let _ = CHARGED.try_with(|c| c.set(c.get() + time));
}

/// Run `fut` as a request that time may be [`charge`]d to; answer its output and that time.
pub async fn charged_within<F: std::future::Future>(fut: F) -> (F::Output, Duration) {
    CHARGED
        .scope(std::cell::Cell::new(Duration::ZERO), async {
            let out = fut.await;
            (out, CHARGED.with(std::cell::Cell::get))
        })
        .await
}

/// The time [`charge`]d to the current request so far.
pub(super) fn charged() -> Duration {
    CHARGED.try_with(std::cell::Cell::get).unwrap_or_default()
}

/// APIs no quota throttles: the handshake before a client can even name itself.
const UNTHROTTLED: &[i16] = &[17, 18, 36];

impl Runtime {
    /// Run one request frame (without its size prefix; `api_key` from its header, None when it
    /// has none) to completion, parking while it waits. `shutdown` ends a park early with a
    /// final answer. The client's quotas are measured here: a produce's bytes before the guest
    /// runs (so its response reports the throttle), a fetch response's bytes and the time the
    /// guest calls took after, with the time [`charge`]d to the request (its transform calls).
    pub async fn execute(
        &self,
        conn: &ConnInfo,
        frame: &Bytes,
        api_key: Option<i16>,
        shutdown: watch::Receiver<bool>,
    ) -> Executed {
        let mut busy = Duration::ZERO;
        if api_key.is_none_or(|k| UNTHROTTLED.contains(&k)) {
            return self.run(conn, frame, api_key, shutdown, &mut busy).await;
        }
        let quotas = self.context().quotas.clone();
        quotas.load(&conn.tenant).await;
        // A tenant without quotas or a ceiling (the common case) measures nothing.
        let Some(info) = RequestInfo::of(frame).filter(|_| !quotas.unlimited(&conn.tenant)) else {
            return self.run(conn, frame, api_key, shutdown, &mut busy).await;
        };
        if info.api_key == 0 {
            quotas.record(&conn.quota_client(&info), Kind::Produce, frame.len() as f64);
        }
        let (executed, charged) = charged_within(self.run(conn, frame, api_key, shutdown, &mut busy)).await;
        busy += charged;
        let client = conn.quota_client(&info);
        if let Executed::Send(segments, _) = &executed
            && info.api_key == 1
        {
            let bytes: usize = segments.iter().map(Bytes::len).sum();
            quotas.record(&client, Kind::Fetch, bytes as f64);
        }
        quotas.record(&client, Kind::Request, crate::quota::request_percent(busy));
        // At least what the response told the client (a throttled fetch's empty answer
        // recorded almost nothing, but its client must still wait).
        let reported = match &executed {
            Executed::Send(_, r) | Executed::Nothing(r) => *r,
            Executed::Close => Duration::ZERO,
        };
        let throttle = quotas.throttle(&client, Kind::of_api(info.api_key)).max(reported);
        if !throttle.is_zero() {
            quotas.note_throttled(&conn.tenant, throttle);
            tracing::debug!(
                conn = conn.id,
                api_key = info.api_key,
                user = client.user,
                client_id = client.client_id,
                ?throttle,
                "throttled by a quota"
            );
        }
        match executed {
            Executed::Send(segments, _) => Executed::Send(segments, throttle),
            Executed::Nothing(_) => Executed::Nothing(throttle),
            Executed::Close => Executed::Close,
        }
    }

    /// [`execute`](Self::execute) without the quotas; `busy` gets the time the guest calls took.
    async fn run(
        &self,
        conn: &ConnInfo,
        frame: &Bytes,
        api_key: Option<i16>,
        mut shutdown: watch::Receiver<bool>,
        busy: &mut Duration,
    ) -> Executed {
        let received = Instant::now();
        let mut final_ = false;
        loop {
            // A slot in the instance pool, waited for here rather than failing to instantiate.
            // It covers this guest call (and its error response) and is released before the
            // request parks, so parked fetches and joins hold no slot.
            let slot = self.admit(api_key).await;
            // The translator active now (after the wait): a request runs (and a parked request
            // is re-run) on the version current when it starts, so a swap takes effect between
            // requests.
            let module = match self.translator() {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(conn = conn.id, "closing connection: {e}");
                    return Executed::Close;
                }
            };
            // On a fiber: it yields the thread every epoch tick and while a host call awaits
            // storage.
            // The request's time is what the guest's polls took (Kafka's request-handler
            // thread time): not the time its fiber waited on storage or for a thread.
            let call = std::pin::pin!(self.handle(&module, conn, frame, final_));
            let handled = Timed { inner: call, busy: &mut *busy }.await;
            match handled {
                Ok(Handled::Respond(Some(segments), reported)) => return Executed::Send(segments, reported),
                Ok(Handled::Respond(None, reported)) => return Executed::Nothing(reported),
                Ok(Handled::Close(reason)) => {
                    tracing::info!(conn = conn.id, peer = %conn.peer, api_key, "closing connection: {reason}");
                    return Executed::Close;
                }
                Ok(Handled::Wait { .. }) if final_ => {
                    tracing::warn!(
                        conn = conn.id,
                        api_key,
                        "translator asked to wait on a final run; closing"
                    );
                    return Executed::Close;
                }
                Ok(Handled::Wait { wake_on, deadline, observed }) => {
                    drop(slot);
                    let deadline = tokio::time::Instant::from_std(received + deadline);
                    let woken = self.park(&wake_on, &observed, deadline, &mut shutdown).await;
                    final_ = !woken;
                }
                Err(failure) => {
                    tracing::warn!(conn = conn.id, peer = %conn.peer, api_key, module = %module.id.name, version = module.id.version, "guest call failed: {failure}");
                    let code = failure.kafka_code();
                    return match self.error_response(&module, conn, frame, code).await {
                        Ok(Some(segments)) => Executed::Send(segments, Duration::ZERO),
                        Ok(None) => Executed::Close,
                        Err(e) => {
                            tracing::warn!(
                                conn = conn.id,
                                api_key,
                                "error response failed too, closing: {e}"
                            );
                            Executed::Close
                        }
                    };
                }
            }
        }
    }

    /// Wait until something in `wake_on` moves past what the guest observed (true), or the
    /// deadline passes or the host shuts down (false).
    async fn park(
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
                WakeKey::Partition(topic, partition) => match ctx.log.subscribe(topic, *partition).await {
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

/// A future that adds the time each of its polls took to `busy` (a request's, or a transform
/// call's, CPU time as near as a wall clock around each poll measures it).
pub struct Timed<'a, F> {
    pub inner: F,
    pub busy: &'a mut Duration,
}

impl<F: std::future::Future + Unpin> std::future::Future for Timed<'_, F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let started = Instant::now();
        let r = std::pin::Pin::new(&mut self.inner).poll(cx);
        *self.busy += started.elapsed();
        r
    }
}
