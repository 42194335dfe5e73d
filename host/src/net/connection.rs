//! One client connection: a reader task that splits frames (bounded read-ahead), and an executor
//! that runs the requests strictly one at a time, in order, as Kafka's broker does (clients
//! pipeline produce requests and rely on it for ordering).

use super::frame::{FrameDecoder, FrameError, FrameHeader};
use crate::storage::TopicName;
use crate::wasm::{ConnInfo, Handled, Observed, Runtime};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    pub max_frame_bytes: u32,
    /// Frames read ahead of the one executing.
    pub read_ahead: usize,
}

/// Serve one connection until the client closes it, an error closes it, or the host shuts down.
pub async fn serve<S>(
    stream: S,
    runtime: Arc<Runtime>,
    conn: ConnInfo,
    cfg: ConnConfig,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Bytes>(cfg.read_ahead.max(1));
    let reader = tokio::spawn(read_frames(rd, tx, FrameDecoder::new(cfg.max_frame_bytes), conn.id));
    let mut shutdown_rx = shutdown.clone();
    loop {
        let frame = tokio::select! {
            f = rx.recv() => match f { Some(f) => f, None => break },
            _ = shutdown_rx.wait_for(|s| *s) => break,
        };
        match execute(&runtime, &conn, &frame, shutdown.clone()).await {
            Some(Reply::Send(segments)) => {
                if let Err(e) = write_response(&mut wr, segments).await {
                    tracing::debug!(conn = conn.id, "write failed, closing: {e}");
                    break;
                }
            }
            Some(Reply::Nothing) => {}
            None => break,
        }
    }
    reader.abort();
    let _ = wr.shutdown().await;
    tracing::debug!(conn = conn.id, peer = %conn.peer, "connection closed");
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: mpsc::Sender<Bytes>,
    decoder: FrameDecoder,
    conn: u64,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if tx.send(frame).await.is_err() {
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
        // Grow the buffer as data arrives, never by what the client merely claims.
        let want = decoder.missing(&buf).clamp(4096, 1 << 20);
        buf.reserve(want);
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                if let Err(e @ FrameError::Truncated(_)) = decoder.finish(&buf) {
                    tracing::info!(conn, "{e}");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(conn, "read failed: {e}");
                return;
            }
        }
    }
}

enum Reply {
    Send(Vec<Bytes>),
    Nothing,
}

/// Run one request to completion, parking it (holding no guest instance) while it waits.
/// `None` closes the connection.
async fn execute(
    runtime: &Runtime,
    conn: &ConnInfo,
    frame: &Bytes,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Reply> {
    let received = Instant::now();
    let header = FrameHeader::parse(frame);
    let mut final_ = false;
    loop {
        // Guest calls are synchronous and may run up to their CPU deadline; WASI's sync bindings
        // also block on futures (a guest writing to stderr). Off the async worker, then.
        match tokio::task::block_in_place(|| runtime.handle(conn, frame, final_)) {
            Ok(Handled::Respond(Some(segments))) => return Some(Reply::Send(segments)),
            Ok(Handled::Respond(None)) => return Some(Reply::Nothing),
            Ok(Handled::Close(reason)) => {
                tracing::info!(conn = conn.id, peer = %conn.peer, ?header, "closing connection: {reason}");
                return None;
            }
            Ok(Handled::Wait { .. }) if final_ => {
                tracing::warn!(conn = conn.id, ?header, "translator asked to wait on a final run; closing");
                return None;
            }
            Ok(Handled::Wait { wake_on, deadline, observed }) => {
                let deadline = tokio::time::Instant::from_std(received + deadline);
                let woken = park(runtime, &wake_on, &observed, deadline, &mut shutdown).await;
                final_ = !woken;
            }
            Err(failure) => {
                tracing::warn!(conn = conn.id, peer = %conn.peer, ?header, "guest call failed: {failure}");
                let code = failure.kafka_code();
                return match tokio::task::block_in_place(|| runtime.error_response(conn, frame, code)) {
                    Ok(Some(segments)) => Some(Reply::Send(segments)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(conn = conn.id, ?header, "error response failed too, closing: {e}");
                        None
                    }
                };
            }
        }
    }
}

/// Wait until a partition in `wake_on` moves past what the guest observed (true), or the
/// deadline passes or the host shuts down (false).
async fn park(
    runtime: &Runtime,
    wake_on: &[(TopicName, i32)],
    observed: &[Observed],
    deadline: tokio::time::Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let log = &runtime.context().log;
    let mut waits = Vec::new();
    for (topic, partition) in wake_on {
        let Ok(mut rx) = log.subscribe(topic, *partition) else { continue };
        let seen = observed
            .iter()
            .find(|o| &o.topic == topic && o.partition == *partition)
            .map(|o| o.high_watermark);
        let current = *rx.borrow_and_update();
        match seen {
            // Data arrived between the guest's read and our subscription: re-run now.
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
