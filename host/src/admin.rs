//! The admin HTTP endpoint: health and metrics for now (the module API comes with hot-swap).

use crate::wasm::Runtime;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(listener: TcpListener, runtime: Arc<Runtime>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (mut stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            },
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/health" => ("200 OK", "ok\n".to_string()),
                "/metrics" => ("200 OK", metrics(&runtime)),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

fn metrics(runtime: &Runtime) -> String {
    format!(
        "# TYPE guise_guest_calls_total counter\nguise_guest_calls_total {}\n# TYPE guise_guest_failures_total counter\nguise_guest_failures_total {}\n",
        runtime.calls.load(Ordering::Relaxed),
        runtime.failures.load(Ordering::Relaxed)
    )
}
