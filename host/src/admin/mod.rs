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
//! | GET | `/transforms[/TENANT]` | tenant transforms: versions, binding, counters |
//! | GET | `/transforms/TENANT/NAME` | one transform: versions with hash, records in/out, errors, traps, time; policy outcomes |
//! | PUT | `/transforms/TENANT/NAME?topic=T[&topic=..][&output-topic=O..]&policy=P[&config=K%3DV..]` | deploy the body as the next version, bound to those topics |
//! | POST | `/transforms/TENANT/NAME/rollback[?to=N]` | activate the previous (or the given) version and its binding |
//! | DELETE | `/transforms/TENANT/NAME` | unbind and remove the transform |
//!
//! Errors are JSON `{"error": "..."}` with a status that says what kind: 400 a bad name or
//! request, 401 no valid credential, 403 a role that does not reach the resource, 404 no such
//! module or version, 409 nothing to roll back to, 413 too large, 422 the module was refused
//! (does not compile, wrong world, fails to instantiate).
//!
//! Who may call what is [`auth`]'s: with credentials configured, `/modules` is the operators',
//! and a tenant's credential reaches `/transforms/TENANT/...` of its own tenant, and sees only
//! its own transforms, groups and metrics.

pub mod auth;
pub mod client;
pub mod http;

use crate::coord::Coordinator;
use crate::net::listener::Accepted;
use crate::net::tls::Stream;
use crate::transform::{BindingSpec, TransformError, Transforms};
use crate::wasm::{Registry, RegistryError, Runtime};
use auth::{AdminAuth, Refusal, Role};
use http::{Request, Response};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Failed admin logins: logged at most once a second, with a count of those left out.
static AUTH_FAILURES: crate::logs::Throttle = crate::logs::Throttle::new(Duration::from_secs(1));

/// What the admin API serves.
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub runtime: Arc<Runtime>,
    pub coord: Arc<Coordinator>,
    pub transforms: Arc<Transforms>,
    pub auth: AdminAuth,
    /// A request with a credential that is not valid is answered this late (Kafka's
    /// connection.failed.authentication.delay.ms).
    pub failure_delay: Duration,
    /// With `cluster`: the live hosts (`GET /cluster`).
    pub members: Option<Arc<crate::cluster::Members>>,
}

/// Serve one admin connection (one request, then close): accepted by
/// [`crate::net::listener::run`], which caps connections and drains them at shutdown.
pub async fn serve(state: Arc<AdminState>, mut stream: Stream, accepted: Accepted) {
    let peer = accepted.peer;
    let max = state.registry.max_module_bytes().max(state.transforms.max_module_bytes());
    let response = match http::read_request(&mut stream, max).await {
        Ok(request) => authorized(&state, request, &accepted).await,
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
    // Over TLS, close_notify: the client's read of the response ends cleanly.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
}

/// Authenticate the request's caller, then route it; changes are logged with who made them.
async fn authorized(state: &Arc<AdminState>, request: Request, accepted: &Accepted) -> Response {
    let peer = accepted.peer;
    if request.method == "GET" && request.path.trim_matches('/') == "health" {
        return Response::text(200, "ok\n");
    }
    let header = request.authorization.as_ref().map(|h| h.0.as_str());
    let caller = match state.auth.authenticate(header, accepted.principal.as_deref()) {
        Ok(caller) => caller,
        Err(Refusal::Unauthenticated(why)) => {
            if header.is_some() {
                // A wrong credential, not a missing one: slow down whoever is guessing.
                tokio::time::sleep(state.failure_delay).await;
            }
            if let Some(left_out) = AUTH_FAILURES.hit() {
                tracing::warn!(%peer, path = %request.path, left_out, "admin request refused: {why}");
            }
            return Response::error(401, why);
        }
        Err(Refusal::NoRole(why)) => {
            tracing::warn!(%peer, path = %request.path, "admin request refused: {why}");
            return Response::error(403, why);
        }
    };
    let (method, path) = (request.method.clone(), request.path.clone());
    let response = route(state, request, &caller.role).await;
    if method != "GET" || response.status == 403 {
        // The path without its query: a transform's config values stay out of the log.
        tracing::info!(%peer, caller = %caller.name, %method, %path, status = response.status, "admin request");
    }
    response
}

async fn route(state: &Arc<AdminState>, request: Request, role: &Role) -> Response {
    let (registry, coord) = (&state.registry, &state.coord);
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if segments.first() == Some(&"transforms") {
        return transforms(state, &request, &segments[1..], role).await;
    }
    if segments.first() == Some(&"modules") && *role != Role::Operator {
        return Response::error(403, "modules (the translator) are managed by operators only");
    }
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["health"]) => Response::text(200, "ok\n"),
        ("GET", ["metrics"]) => Response::text(200, metrics(state, role)),
        ("GET", ["modules"]) => Response::json(200, &registry.list()),
        ("GET", ["cluster"]) if *role != Role::Operator => {
            Response::error(403, "the cluster's hosts are shown to operators only")
        }
        ("GET", ["cluster"]) => match &state.members {
            Some(m) => Response::json(200, &serde_json::json!({ "node_id": m.node_id(), "live": m.live() })),
            None => Response::error(404, "this host runs alone (`cluster` is off)"),
        },
        ("GET", ["groups"]) => {
            let mut groups = coord.groups_overview().await;
            groups.retain(|g| role.reaches(&g.tenant));
            Response::json(200, &groups)
        }
        ("GET", ["modules", name]) => reply(registry.show(name), 200),
        ("PUT" | "POST", ["modules", name]) => {
            let (registry, name, body) = (registry.clone(), name.to_string(), request.body);
            // Compiling takes up to seconds of CPU: off the async workers.
            blocking(move || registry.deploy(&name, &body, "upload", None), 201).await
        }
        ("POST", ["modules", name, "rollback"]) => {
            let to = match request.query("to").map(str::parse::<u32>).transpose() {
                Ok(to) => to,
                Err(_) => return Response::error(400, "`to` must be a version number"),
            };
            let (registry, name) = (registry.clone(), name.to_string());
            blocking(move || registry.rollback(&name, to), 200).await
        }
        (
            _,
            ["health" | "metrics" | "modules" | "groups" | "cluster"]
            | ["modules", _]
            | ["modules", _, "rollback"],
        ) => Response::error(405, format!("{} is not allowed on {}", request.method, request.path)),
        _ => Response::error(404, format!("no such endpoint {}", request.path)),
    }
}

/// `/transforms/...`: `rest` is the path after `transforms`.
async fn transforms(state: &Arc<AdminState>, request: &Request, rest: &[&str], role: &Role) -> Response {
    if let Some(tenant) = rest.first()
        && !role.reaches(tenant)
    {
        return Response::error(403, format!("this credential does not reach tenant {tenant:?}"));
    }
    let t = state.transforms.clone();
    let job = |f: Box<dyn FnOnce() -> Result<serde_json::Value, TransformError> + Send>, ok| async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(v)) => Response::json(ok, &v),
            Ok(Err(e)) => {
                tracing::warn!("admin: {e}");
                Response::error(e.http_status(), e)
            }
            Err(e) => Response::error(500, format!("the request failed: {e}")),
        }
    };
    // A tenant's credential lists its own tenant's transforms only.
    let tenant = rest.first().map(|s| s.to_string()).or_else(|| role.tenant().map(str::to_string));
    let name = rest.get(1).map(|s| s.to_string());
    match (request.method.as_str(), rest) {
        ("GET", [] | [_]) => job(Box::new(move || json(t.list(tenant.as_deref()))), 200).await,
        ("GET", [_, _]) => job(Box::new(move || json(t.show(&tenant.unwrap(), &name.unwrap()))), 200).await,
        ("PUT" | "POST", [_, _]) => {
            let spec = match binding_from_query(request) {
                Ok(spec) => spec,
                Err(e) => return Response::error(400, e),
            };
            let body = request.body.clone();
            // Compiling takes up to seconds of CPU: off the async workers.
            let deploy = move || json(t.deploy(&tenant.unwrap(), &name.unwrap(), &body, spec));
            job(Box::new(deploy), 201).await
        }
        ("POST", [_, _, "rollback"]) => {
            let to = match request.query("to").map(str::parse::<u32>).transpose() {
                Ok(to) => to,
                Err(_) => return Response::error(400, "`to` must be a version number"),
            };
            job(Box::new(move || json(t.rollback(&tenant.unwrap(), &name.unwrap(), to))), 200).await
        }
        ("DELETE", [_, _]) => {
            let delete = move || {
                let (tenant, name) = (tenant.unwrap(), name.unwrap());
                t.delete(&tenant, &name).map(|()| serde_json::json!({ "deleted": name, "tenant": tenant }))
            };
            job(Box::new(delete), 200).await
        }
        (_, [] | [_] | [_, _] | [_, _, "rollback"]) => {
            Response::error(405, format!("{} is not allowed on {}", request.method, request.path))
        }
        _ => Response::error(404, format!("no such endpoint {}", request.path)),
    }
}

fn json<T: serde::Serialize>(v: Result<T, TransformError>) -> Result<serde_json::Value, TransformError> {
    v.map(|v| serde_json::to_value(v).expect("views serialize"))
}

/// A deploy's binding from its query: `topic` (repeated), `output-topic` (repeated), `policy`,
/// `config` (repeated `KEY=VALUE`).
fn binding_from_query(request: &Request) -> Result<BindingSpec, String> {
    let strings = |key| request.query_all(key).into_iter().map(str::to_string).collect::<Vec<_>>();
    let policy = request.query("policy").ok_or("name a policy: reject, skip, pass or dead-letter=TOPIC")?;
    let config = request
        .query_all("config")
        .into_iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("config {kv:?} is not KEY=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    Ok(BindingSpec {
        topics: strings("topic"),
        output_topics: strings("output-topic"),
        policy: policy.parse().map_err(|e: TransformError| e.to_string())?,
        config,
    })
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

fn metrics(state: &AdminState, role: &Role) -> String {
    let (registry, runtime) = (&state.registry, &state.runtime);
    if let Role::Tenant(tenant) = role {
        // The translator's counters are every tenant's together: operators' only.
        let mut out = String::new();
        transform_metrics(&mut out, &state.transforms, Some(tenant.as_str()));
        quota_metrics(&mut out, &state.runtime.context().quotas, Some(tenant.as_str()));
        return out;
    }
    let mut out = format!(
        "# TYPE guise_guest_calls_total counter\nguise_guest_calls_total {}\n# TYPE guise_guest_failures_total counter\nguise_guest_failures_total {}\n# TYPE guise_guest_warm_calls_total counter\nguise_guest_warm_calls_total {}\n# TYPE guise_guest_warm_instances gauge\nguise_guest_warm_instances {}\n",
        runtime.calls.load(Ordering::Relaxed),
        runtime.failures.load(Ordering::Relaxed),
        runtime.warm_calls.load(Ordering::Relaxed),
        runtime.warm_instances(),
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
    let (warm_calls, warm) = state.transforms.warm();
    let _ = write!(
        out,
        "# TYPE guise_transform_warm_calls_total counter\nguise_transform_warm_calls_total {warm_calls}\n# TYPE guise_transform_warm_instances gauge\nguise_transform_warm_instances {warm}\n"
    );
    transform_metrics(&mut out, &state.transforms, None);
    quota_metrics(&mut out, &runtime.context().quotas, None);
    out
}

/// Requests (Kafka requests and Pulsar sends) held for being over a client quota or their
/// tenant's ceiling: every tenant's, or one's.
fn quota_metrics(out: &mut String, quotas: &crate::quota::Quotas, tenant: Option<&str>) {
    let all = quotas.throttled();
    let mine = || all.iter().filter(|(t, ..)| tenant.is_none_or(|only| only == t));
    let _ = writeln!(
        out,
        "# HELP guise_quota_throttled_total requests held for being over a quota, per tenant\n# TYPE guise_quota_throttled_total counter"
    );
    for (t, n, _) in mine() {
        let _ = writeln!(out, "guise_quota_throttled_total{{tenant=\"{t}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP guise_quota_throttle_ms_total milliseconds requests were held for, per tenant\n# TYPE guise_quota_throttle_ms_total counter"
    );
    for (t, _, ms) in mine() {
        let _ = writeln!(out, "guise_quota_throttle_ms_total{{tenant=\"{t}\"}} {ms}");
    }
}

/// The transforms' counters: every tenant's, or one's.
fn transform_metrics(out: &mut String, transforms: &Transforms, tenant: Option<&str>) {
    let Ok(all) = transforms.list(tenant) else { return };
    let mut tenants: Vec<&str> = all.iter().map(|t| t.tenant.as_str()).collect();
    tenants.dedup();
    for (metric, kind, help) in [
        ("running", "gauge", "transform calls running now, per tenant"),
        ("peak", "gauge", "the most transform calls that ran at once, per tenant"),
        ("limit", "gauge", "transform calls a tenant may run at once (transform_max_concurrency)"),
        ("waited_total", "counter", "transform calls that waited for one of their tenant's slots"),
    ] {
        let _ = writeln!(
            out,
            "# HELP guise_transform_calls_{metric} {help}\n# TYPE guise_transform_calls_{metric} {kind}"
        );
        for t in &tenants {
            let c = transforms.tenant_calls(t);
            let value = match metric {
                "running" => u64::from(c.running),
                "peak" => u64::from(c.peak),
                "limit" => c.limit as u64,
                _ => c.waited,
            };
            let _ = writeln!(out, "guise_transform_calls_{metric}{{tenant=\"{t}\"}} {value}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP guise_transform_records_total records into and out of tenant transforms, per version\n# TYPE guise_transform_records_total counter"
    );
    for t in &all {
        for v in &t.module.versions {
            for (dir, n) in [("in", v.stats.records_in), ("out", v.stats.records_out)] {
                let _ = writeln!(
                    out,
                    "guise_transform_records_total{{tenant=\"{}\",transform=\"{}\",version=\"{}\",direction=\"{dir}\"}} {n}",
                    t.tenant, t.module.name, v.version
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP guise_transform_failures_total failed batches by the policy that handled them\n# TYPE guise_transform_failures_total counter"
    );
    for t in &all {
        let o = t.outcomes;
        for (policy, n) in [
            ("reject", o.rejected),
            ("skip", o.skipped),
            ("pass", o.passed),
            ("dead-letter", o.dead_lettered),
        ] {
            let _ = writeln!(
                out,
                "guise_transform_failures_total{{tenant=\"{}\",transform=\"{}\",policy=\"{policy}\"}} {n}",
                t.tenant, t.module.name
            );
        }
    }
}
