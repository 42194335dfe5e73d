//! One client connection: a reader task that splits frames (bounded read-ahead), and an executor
//! that runs the requests strictly one at a time, in order, as Kafka's broker does (clients
//! pipeline produce requests and rely on it for ordering).

use super::frame::{FrameDecoder, FrameError, FrameHeader};
use super::sasl::{Intercept, SaslConfig, Session};
use crate::net::principals::Via;
use crate::wasm::{ConnInfo, Executed, Runtime};
use bytes::{Bytes, BytesMut};
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    pub max_frame_bytes: u32,
    /// Frames read ahead of the one executing.
    pub read_ahead: usize,
    /// Request bytes a connection may hold (read ahead plus executing); reading pauses beyond
    /// it, so a client that floods requests or never reads its responses is held back by TCP.
    /// Always at least one maximum frame.
    pub max_inflight_bytes: usize,
    /// Kafka's connections.max.idle.ms: close once nothing was received, in flight or sent for
    /// this long (None: never).
    pub idle: Option<Duration>,
    /// A frame must arrive whole within this once its first bytes did (None: no deadline).
    pub frame_timeout: Option<Duration>,
    /// The host-wide budget, in bytes, for what the connections' readers hold of frames not
    /// read whole yet (beyond [`FREE_PARTIAL`] each); None: no bound but each connection's.
    pub partial: Option<Arc<Semaphore>>,
    /// On SASL listeners: how connections authenticate before their requests are served.
    pub sasl: Option<SaslConfig>,
    /// The tenants of authenticated principals.
    pub principals: Arc<crate::net::principals::TenantMap>,
}

/// Bytes of a partly read frame that a connection holds without taking from the host-wide
/// budget (small requests never wait for it).
pub const FREE_PARTIAL: usize = 64 * 1024;

/// When the connection last did something (received bytes, or finished a request), in
/// milliseconds since it opened: shared by its reader and its executor.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.opened.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Serve one connection until the client closes it, an error closes it, or the host shuts down.
pub async fn serve<S>(
    stream: S,
    runtime: Arc<Runtime>,
    mut conn: ConnInfo,
    cfg: ConnConfig,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<(Bytes, OwnedSemaphorePermit)>(cfg.read_ahead.max(1));
    let budget_bytes = cfg.max_inflight_bytes.max(cfg.max_frame_bytes as usize);
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let activity = Arc::new(Activity { opened: Instant::now(), last_ms: AtomicU64::new(0) });
    let reading = Reading {
        tx,
        budget,
        budget_bytes,
        decoder: FrameDecoder::new(cfg.max_frame_bytes),
        conn: conn.id,
        activity: activity.clone(),
        idle: cfg.idle,
        frame_timeout: cfg.frame_timeout,
        partial: cfg.partial.clone(),
    };
    let mut reader = tokio::spawn(read_frames(rd, reading));
    let mut shutdown_rx = shutdown.clone();
    let mut session = cfg.sasl.clone().map(Session::new);
    loop {
        // The permit (this frame's share of the bytes budget) is released when the request is done.
        let (frame, _permit) = tokio::select! {
            f = rx.recv() => match f { Some(f) => f, None => break },
            _ = shutdown_rx.wait_for(|s| *s) => break,
        };
        // On SASL listeners, nothing but ApiVersions reaches the translator unauthenticated.
        if let Some(session) = session.as_mut() {
            match session.intercept(&frame, Instant::now()) {
                Intercept::Pass => {}
                Intercept::Reply { bytes, delay, close } => {
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    if let Err(e) = write_response(&mut wr, vec![bytes]).await {
                        tracing::debug!(conn = conn.id, "write failed, closing: {e}");
                        break;
                    }
                    activity.touch();
                    // Authenticated: the SASL principal is the connection's (ACLs name it), and it
                    // may name the connection's tenant.
                    if let Some(principal) = session.principal() {
                        if conn.principal != principal {
                            conn.principal = principal.to_string();
                        }
                        if let Some(tenant) = cfg.principals.tenant_of(principal, Via::Sasl)
                            && conn.tenant != tenant.as_str()
                        {
                            tracing::debug!(conn = conn.id, principal, %tenant, "the principal's tenant");
                            conn.tenant = tenant.to_string();
                        }
                    }
                    if close {
                        tracing::debug!(conn = conn.id, peer = %conn.peer, "closing the connection after a refused SASL step");
                        break;
                    }
                    continue;
                }
                Intercept::Close(why) => {
                    tracing::info!(conn = conn.id, peer = %conn.peer, "closing the connection: {why}");
                    break;
                }
            }
        }
        let header = FrameHeader::parse(&frame);
        // Boxed: the request's state (the guest call's future, ~10 KiB) exists while it runs, not
        // in every idle connection's task.
        match Box::pin(runtime.execute(&conn, &frame, header.map(|h| h.api_key), shutdown.clone())).await {
            Executed::Send(segments, throttle) => {
                if let Err(e) = write_response(&mut wr, segments).await {
                    tracing::debug!(conn = conn.id, "write failed, closing: {e}");
                    break;
                }
                if !hold(throttle, &mut shutdown_rx, &mut reader).await {
                    break;
                }
            }
            Executed::Nothing(throttle) => {
                if !hold(throttle, &mut shutdown_rx, &mut reader).await {
                    break;
                }
            }
            Executed::Close => {
                tracing::debug!(conn = conn.id, ?header, "closing after the request");
                break;
            }
        }
        activity.touch();
    }
    reader.abort();
    let _ = wr.shutdown().await;
    tracing::debug!(conn = conn.id, peer = %conn.peer, "connection closed");
}

/// Hold a throttled connection's next request (Kafka mutes the channel, KIP-219; the response
/// already went out, carrying the throttle time). False: the host is shutting down, or the
/// client left (its reader ended), so the connection closes now rather than after the hold.
async fn hold(
    throttle: Duration,
    shutdown: &mut watch::Receiver<bool>,
    reader: &mut tokio::task::JoinHandle<()>,
) -> bool {
    if throttle.is_zero() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(throttle) => true,
        _ = shutdown.wait_for(|s| *s) => false,
        _ = reader => false,
    }
}

/// What the reader task of a connection holds.
struct Reading {
    tx: mpsc::Sender<(Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    /// The budget's size: all of it available means no request is held.
    budget_bytes: usize,
    decoder: FrameDecoder,
    conn: u64,
    activity: Arc<Activity>,
    idle: Option<Duration>,
    frame_timeout: Option<Duration>,
    partial: Option<Arc<Semaphore>>,
}

async fn read_frames<R: AsyncRead + Unpin>(mut rd: R, r: Reading) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // When the first bytes of the frame being read arrived.
    let mut frame_started: Option<Instant> = None;
    // How often the deadlines are looked at while nothing arrives.
    let check =
        [r.idle, r.frame_timeout].into_iter().flatten().min().map(|d| (d / 4).max(Duration::from_millis(10)));
    let conn = r.conn;
    // What this connection holds of the host-wide budget for partly read frames.
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        loop {
            match r.decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    frame_started = None;
                    held = None;
                    // A frame is at most max_frame_bytes, and the budget is at least that.
                    let want = u32::try_from(frame.len()).unwrap_or(u32::MAX).max(1);
                    let Ok(permit) = r.budget.clone().acquire_many_owned(want).await else { return };
                    if r.tx.send((frame, permit)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(conn, "closing connection: {e}");
                    return;
                }
            }
        }
        if !buf.is_empty() && frame_started.is_none() {
            frame_started = Some(Instant::now());
        }
        // Grow the buffer as data arrives, never by what the client merely claims.
        let want = r.decoder.missing(&buf).clamp(4096, 1 << 20);
        if let Some(budget) = &r.partial
            && held.is_none()
            && buf.len() >= 4
        {
            // A frame beyond the free share takes its whole size from the host-wide budget
            // before more of it is read, and holds nothing while it waits: a reader never holds
            // part of the budget and waits for more, so readers cannot starve each other.
            let frame = buf.len() + r.decoder.missing(&buf);
            if frame > FREE_PARTIAL {
                let take = u32::try_from(frame - FREE_PARTIAL).unwrap_or(u32::MAX);
                let wait = match (frame_started, r.frame_timeout) {
                    (Some(started), Some(limit)) => limit.saturating_sub(started.elapsed()),
                    _ => Duration::MAX,
                };
                match tokio::time::timeout(wait, budget.clone().acquire_many_owned(take)).await {
                    Ok(Ok(permit)) => held = Some(permit),
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!(
                            conn,
                            frame,
                            "closing connection: the host-wide budget for partly read frames \
                             (partial_frames_max_bytes) had no room for the frame within frame_timeout_ms"
                        );
                        return;
                    }
                }
            }
        }
        buf.reserve(want);
        let read = match check {
            None => rd.read_buf(&mut buf).await,
            Some(every) => match tokio::time::timeout(every, rd.read_buf(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    if let (Some(started), Some(limit)) = (frame_started, r.frame_timeout)
                        && started.elapsed() >= limit
                    {
                        tracing::info!(
                            conn,
                            received = buf.len(),
                            missing = r.decoder.missing(&buf),
                            "closing connection: a request frame did not arrive whole within frame_timeout_ms ({limit:?})"
                        );
                        return;
                    }
                    let held = r.budget.available_permits() < r.budget_bytes;
                    if let Some(limit) = r.idle
                        && buf.is_empty()
                        && !held
                        && r.activity.quiet_for() >= limit
                    {
                        tracing::debug!(
                            conn,
                            "closing connection: idle for connections_max_idle_ms ({limit:?})"
                        );
                        return;
                    }
                    continue;
                }
            },
        };
        match read {
            Ok(0) => {
                if let Err(e @ FrameError::Truncated(_)) = r.decoder.finish(&buf) {
                    tracing::info!(conn, "{e}");
                }
                return;
            }
            Ok(_) => r.activity.touch(),
            Err(e) => {
                tracing::debug!(conn, "read failed: {e}");
                return;
            }
        }
    }
}

/// Write one response: the 4-byte size, then the segments, with vectored I/O.
async fn write_response<W: AsyncWrite + Unpin>(wr: &mut W, segments: Vec<Bytes>) -> std::io::Result<()> {
    let total: usize = segments.iter().map(Bytes::len).sum();
    let size = i32::try_from(total)
        .map_err(|_| std::io::Error::other(format!("response of {total} bytes is too large")))?;
    let mut parts = Vec::with_capacity(segments.len() + 1);
    parts.push(Bytes::copy_from_slice(&size.to_be_bytes()));
    parts.extend(segments.into_iter().filter(|s| !s.is_empty()));
    write_all_vectored(wr, parts).await
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(wr: &mut W, mut parts: Vec<Bytes>) -> std::io::Result<()> {
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[first..].iter().take(64).map(|b| IoSlice::new(b)).collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let len = parts[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                let rest = parts[first].split_off(n);
                parts[first] = rest;
                n = 0;
            }
        }
    }
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_throttle_hold_ends_when_the_client_leaves() {
        let (_stop, mut shutdown) = watch::channel(false);
        // The reader ended (the client closed its socket): no hold, however long the throttle.
        let mut gone = tokio::spawn(async {});
        assert!(!hold(Duration::from_secs(24 * 3600), &mut shutdown, &mut gone).await);
        let mut here = tokio::spawn(std::future::pending::<()>());
        assert!(hold(Duration::ZERO, &mut shutdown, &mut here).await, "no throttle, no hold");
        here.abort();
    }

    #[tokio::test]
    async fn vectored_write_handles_partial_writes() {
        // A duplex with a tiny buffer forces short writes.
        let (mut a, mut b) = tokio::io::duplex(7);
        let parts: Vec<Bytes> =
            vec![Bytes::from_static(b"hello "), Bytes::new(), Bytes::from(vec![b'x'; 100])];
        let writer = tokio::spawn(async move { write_response(&mut a, parts).await });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(&got[..4], &106i32.to_be_bytes());
        assert_eq!(&got[4..10], b"hello ");
        assert_eq!(got.len(), 110);
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use crate::storage::embedded::EmbeddedLog;
    use crate::storage::{Log, LogDefaults};
    use crate::wasm::{DEFAULT_TRANSLATOR, GuestLimits, HostContext};

    pub(super) fn test_runtime(dir: &std::path::Path) -> Arc<Runtime> {
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap());
        let ctx = Arc::new(HostContext::local(log, 8 << 20));
        let limits = GuestLimits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(5),
            max_instances: 8,
            max_response_bytes: 1 << 20,
            warm_instances: 0,
            warm_transforms: 0,
        };
        Arc::new(Runtime::new(DEFAULT_TRANSLATOR, ctx, limits).unwrap())
    }

    /// Write `bytes` to `w` until it stops taking them for a second; how much it took.
    /// Write up to `bytes`, stopping once a write waits longer than `patience` (the reader is
    /// held). Where the test expects the writes to go through, the patience is long, so a slow
    /// machine is not taken for a held reader; where it expects a hold, short.
    async fn write_until_held<W: AsyncWrite + Unpin>(w: &mut W, bytes: usize, patience: Duration) -> usize {
        let chunk = vec![0u8; 16 * 1024];
        let mut written = 0;
        while written < bytes {
            let n = chunk.len().min(bytes - written);
            match tokio::time::timeout(patience, w.write_all(&chunk[..n])).await {
                Ok(Ok(())) => written += n,
                Ok(Err(e)) => panic!("write failed: {e}"),
                Err(_) => break,
            }
        }
        written
    }

    /// Two clients each send most of a 4 MiB frame: the host-wide budget for partly read frames
    /// (5 MiB) has room for one of them at a time beyond the free 64 KiB, so the second is held
    /// back (it reads no more than the free share and a read) until the first is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partly_read_frames_share_one_host_wide_budget() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = test_runtime(dir.path());
        let budget = Arc::new(Semaphore::new(5 << 20));
        let cfg = ConnConfig {
            max_frame_bytes: 8 << 20,
            read_ahead: 4,
            max_inflight_bytes: 64 << 20,
            idle: None,
            frame_timeout: None,
            partial: Some(budget.clone()),
            sasl: None,
            principals: Default::default(),
        };
        let (_stop_tx, stop) = watch::channel(false);
        let mut clients = Vec::new();
        for id in 1..=2 {
            // A small pipe: what the host has not read stays in the client's write.
            let (client, server) = tokio::io::duplex(16 * 1024);
            let conn = ConnInfo::new(id, "public", "test");
            tokio::spawn(serve(server, runtime.clone(), conn, cfg.clone(), stop.clone()));
            clients.push(client);
        }
        // One frame announced after the other: the first takes its share of the budget first.
        let (short, long) = (Duration::from_secs(1), Duration::from_secs(30));
        clients[0].write_all(&(4i32 << 20).to_be_bytes()).await.unwrap();
        let first = write_until_held(&mut clients[0], (4 << 20) - 1024, long).await;
        assert!(first >= (4 << 20) - 1024 - 16 * 1024, "the first frame is read: {first}");
        clients[1].write_all(&(4i32 << 20).to_be_bytes()).await.unwrap();
        let second = write_until_held(&mut clients[1], (4 << 20) - 1024, short).await;
        assert!(second <= (64 + 1024 + 2 * 16) * 1024, "the second waits for room: {second}");
        // The first client goes, its partly read frame with it: the second reads on.
        drop(clients.remove(0));
        let more = write_until_held(&mut clients[0], (4 << 20) - 1024 - second, long).await;
        assert!(
            second + more >= (4 << 20) - 1024 - 16 * 1024,
            "the second frame was read on: {}",
            second + more
        );
    }

    /// A client that pipelines large requests and never reads a response: the host stops
    /// reading once the connection's bytes budget is used, so what it buffers stays bounded by
    /// the budget, not by what the client sends (read-ahead is set high to take it out of play).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_reads_is_held_back_by_the_bytes_budget() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = test_runtime(dir.path());
        // A 64-byte pipe: the first response fills it, so the executor blocks on its write at once
        // and what the host holds is the budget, not requests it already answered.
        let (mut client, server) = tokio::io::duplex(64);
        let (_stop_tx, stop) = watch::channel(false);
        let cfg = ConnConfig {
            max_frame_bytes: 64 * 1024,
            read_ahead: 100_000,
            max_inflight_bytes: 256 * 1024,
            idle: None,
            frame_timeout: None,
            partial: None,
            sasl: None,
            principals: Default::default(),
        };
        let conn = ConnInfo::new(1, "public", "test");
        tokio::spawn(serve(server, runtime, conn, cfg, stop));

        // ApiVersions v0 frames padded to 32 KiB (Kafka brokers ignore trailing bytes).
        let mut frame = vec![0u8; 32 * 1024];
        frame[..4].copy_from_slice(&(32 * 1024 - 4i32).to_be_bytes());
        frame[4..12].copy_from_slice(&[0, 18, 0, 0, 0, 0, 0, 1]);
        let mut written = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_millis(1000), client.write_all(&frame)).await {
                Ok(Ok(())) => written += frame.len(),
                Ok(Err(e)) => panic!("write failed: {e}"),
                Err(_) => break, // the host stopped reading
            }
            assert!(written < 64 << 20, "the host kept reading {written} bytes without bound");
        }
        // Budget (256 KiB) + the reader's buffer (≤ 1 MiB) + the executing frame and one more.
        assert!(written <= (256 + 1024 + 2 * 32) * 1024, "read {written} bytes ahead");
        // And it did read up to the budget, not less (the bound above is not vacuous).
        assert!(written >= 256 * 1024, "only {written} bytes were read");
    }
}

#[cfg(test)]
mod idle_size {
    use super::*;

    /// An idle connection holds its two tasks' futures: they stay small (a request's state, the
    /// guest call's, is boxed while the request runs), so that 10,000 idle connections do not
    /// cost 10,000 copies of it (BENCHMARKS.md, "Idle connections").
    #[test]
    fn an_idle_connections_tasks_are_small() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = super::budget_tests::test_runtime(dir.path());
        let (_stop_tx, stop) = watch::channel(false);
        let cfg = ConnConfig {
            max_frame_bytes: 8 << 20,
            read_ahead: 16,
            max_inflight_bytes: 64 << 20,
            idle: None,
            frame_timeout: None,
            partial: None,
            sasl: None,
            principals: Default::default(),
        };
        let serving = serve(tokio::io::duplex(16).1, runtime, ConnInfo::new(1, "public", "x"), cfg, stop);
        let (tx, _rx) = mpsc::channel(1);
        let reading = Reading {
            tx,
            budget: Arc::new(Semaphore::new(1)),
            budget_bytes: 1,
            decoder: FrameDecoder::new(1 << 20),
            conn: 1,
            activity: Arc::new(Activity { opened: Instant::now(), last_ms: AtomicU64::new(0) }),
            idle: None,
            frame_timeout: None,
            partial: None,
        };
        let reader = read_frames(tokio::io::duplex(16).0, reading);
        let sizes = (std::mem::size_of_val(&serving), std::mem::size_of_val(&reader));
        assert!(sizes.0 < 4096 && sizes.1 < 4096, "the connection's futures take {sizes:?} bytes");
    }
}
