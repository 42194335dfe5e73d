//! The admin HTTP API: health, metrics, and the module registry.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/health` | `ok` |
//! | GET | `/metrics` | Prometheus text: guest calls and failures, per module version |
//! | GET | `/modules` | every module with its versions (JSON) |
//! | GET | `/modules/NAME` | one module: versions with hash, deploy time, calls, errors, traps |
//! | PUT | `/modules/NAME` | deploy the body (a `.wasm` component) as the next version |
//! | POST | `/modules/NAME/rollback[?to=N]` | activate the previous (or the given) version |
//! | GET | `/groups` | consumer groups: state, generation, members, and per partition the committed offset, log end and lag |
//!
//! Errors are JSON `{"error": "..."}` with a status that says what kind: 400 a bad name or
//! request, 404 no such module or version, 409 nothing to roll back to, 413 too large, 422 the
//! module was refused (does not compile, wrong world, fails to instantiate).

pub mod client;
pub mod http;

use crate::coord::Coordinator;
use crate::wasm::{Registry, RegistryError};
use http::{Request, Response};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    coord: Arc<Coordinator>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
        let (registry, coord) = (registry.clone(), coord.clone());
        tokio::spawn(async move {
            let response = match http::read_request(&mut stream, registry.max_module_bytes()).await {
                Ok(request) => route(&registry, &coord, request).await,
                Err(e) => match e.status() {
                    Some(status) => {
                        tracing::info!(%peer, "admin request refused: {e}");
                        Response::error(status, e)
                    }
                    None => return,
                },
            };
            if let Err(e) = http::write_response(&mut stream, &response).await {
                tracing::debug!(%peer, "admin response not sent: {e}");
            }
        });
    }
}

async fn route(registry: &Arc<Registry>, coord: &Arc<Coordinator>, request: Request) -> Response {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["health"]) => Response::text(200, "ok\n"),
        ("GET", ["metrics"]) => Response::text(200, metrics(registry)),
        ("GET", ["modules"]) => Response::json(200, &registry.list()),
        ("GET", ["groups"]) => {
            // Reading log end offsets is file I/O: off the async workers.
            let coord = coord.clone();
            match tokio::task::spawn_blocking(move || coord.groups_overview()).await {
                Ok(groups) => Response::json(200, &groups),
                Err(e) => Response::error(500, format!("the request failed: {e}")),
            }
        }
        ("GET", ["modules", name]) => reply(registry.show(name), 200),
        ("PUT" | "POST", ["modules", name]) => {
            let (registry, name, body) = (registry.clone(), name.to_string(), request.body);
            // Compiling takes up to seconds of CPU: off the async workers.
            blocking(move || registry.deploy(&name, &body, "upload"), 201).await
        }
        ("POST", ["modules", name, "rollback"]) => {
            let to = match request.query("to").map(str::parse::<u32>).transpose() {
                Ok(to) => to,
                Err(_) => return Response::error(400, "`to` must be a version number"),
            };
            let (registry, name) = (registry.clone(), name.to_string());
            blocking(move || registry.rollback(&name, to), 200).await
        }
        (_, ["health" | "metrics" | "modules" | "groups"] | ["modules", _] | ["modules", _, "rollback"]) => {
            Response::error(405, format!("{} is not allowed on {}", request.method, request.path))
        }
        _ => Response::error(404, format!("no such endpoint {}", request.path)),
    }
}

async fn blocking<T: serde::Serialize + Send + 'static>(
    job: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
    ok: u16,
) -> Response {
    match tokio::task::spawn_blocking(job).await {
        Ok(result) => reply(result, ok),
        Err(e) => Response::error(500, format!("the request failed: {e}")),
    }
}

fn reply<T: serde::Serialize>(result: Result<T, RegistryError>, ok: u16) -> Response {
    match result {
        Ok(value) => Response::json(ok, &value),
        Err(e) => {
            tracing::warn!("admin: {e}");
            Response::error(e.http_status(), e)
        }
    }
}

fn metrics(registry: &Registry) -> String {
    let runtime = registry.runtime();
    let mut out = format!(
        "# TYPE guise_guest_calls_total counter\nguise_guest_calls_total {}\n# TYPE guise_guest_failures_total counter\nguise_guest_failures_total {}\n",
        runtime.calls.load(Ordering::Relaxed),
        runtime.failures.load(Ordering::Relaxed)
    );
    let modules = registry.list();
    for (metric, help) in [
        ("calls", "guest calls per module version"),
        ("traps", "calls that trapped (panic, unreachable, out of memory)"),
        ("timeouts", "calls stopped at their CPU deadline"),
        ("errors", "calls that failed for any reason"),
    ] {
        let _ = writeln!(
            out,
            "# HELP guise_module_{metric}_total {help}\n# TYPE guise_module_{metric}_total counter"
        );
        for m in &modules {
            for v in &m.versions {
                let value = match metric {
                    "calls" => v.stats.calls,
                    "traps" => v.stats.traps,
                    "timeouts" => v.stats.timeouts,
                    _ => v.stats.errors,
                };
                let _ = writeln!(
                    out,
                    "guise_module_{metric}_total{{module=\"{}\",version=\"{}\"}} {value}",
                    m.name, v.version
                );
            }
        }
    }
    let _ = writeln!(out, "# TYPE guise_module_active_version gauge");
    for m in &modules {
        if let Some(active) = m.active {
            let _ = writeln!(out, "guise_module_active_version{{module=\"{}\"}} {active}", m.name);
        }
    }
    out
}
