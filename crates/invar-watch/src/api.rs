//! The HTTP surface of `invar watch` (axum): `/livez`, `/readyz`, `/healthz`, `/metrics`, the
//! status page at `/`, `/openapi.json`, and the bearer-token API under `/api/v1` exactly as
//! PRODUCT.md states it.
//! The OpenAPI document is generated from the same route definitions that serve requests
//! (utoipa-axum), so the two cannot drift apart.
//!
//! Errors are JSON `{"error": "..."}` with a message for the operator and no internals (no
//! SQL, no store URL: store errors are logged and answered with a generic sentence).
//!
//! Every store call of a route is bounded by [`STORE_TIMEOUT`]: a store that hangs (a locked
//! SQLite file waits out its 10 s busy timeout, a frozen Postgres never answers) makes the
//! route answer 503 at once rather than hold the client, and `/livez` never touches the store.

use crate::request::ViolationsParams;
use crate::request::{IncidentsParams, MeasurementsParams, RunRequest, RunsParams, StatsParams};
use crate::serve::Workers;
use crate::watcher::{RunError, Watcher};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use chrono::DateTime;
use invar_store::{IncidentQuery, MeasurementQuery, RunQuery, ViolationQuery};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Request bodies larger than this are refused (413): a run request is a few ids.
const BODY_LIMIT: usize = 64 * 1024;
/// Page size when a request names none, and the most it may ask for.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;
/// The longest a route waits for the store before answering 503. Routes read at most a page
/// of rows by indexed columns, well under this on a healthy store.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// `/readyz` (and `POST /runs` before it starts a run) wants the store to answer within this.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a client may take to send a request body (the header timeout is hyper's).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

type AppState = Arc<Watcher>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "invar",
        description = "The invar watcher's API: trigger runs and read the recorded history."
    ),
    modifiers(&BearerAuth),
    tags((name = "api", description = "Bearer token required (read or admin)"),
         (name = "service", description = "No token"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An API error: status and a message safe to show.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError(status, msg.into())
    }
    /// A store failure: logged in full, answered without internals.
    fn store(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "api: history store error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the history store is unavailable; see the watcher's log",
        )
    }
}

/// `fut` (a store call), cut at `limit`: a store that does not answer is 503 like one that
/// fails.
async fn bounded<T, E: std::fmt::Display>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(ApiError::store),
        Err(_) => Err(ApiError::store(format_args!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

/// [`bounded`] by [`STORE_TIMEOUT`].
async fn store<T, E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    bounded(STORE_TIMEOUT, fut).await
}

/// The store answers a cheap indexed read within [`READY_TIMEOUT`].
async fn store_answers(w: &Watcher) -> Result<(), ApiError> {
    let q = RunQuery {
        limit: 1,
        ..Default::default()
    };
    bounded(READY_TIMEOUT, w.store.runs(&q)).await.map(|_| ())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The error body of every non-2xx answer.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    error: String,
}

/// Who the bearer token says the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Read,
    Admin,
}

/// The router with every route, and the OpenAPI document generated from it.
/// `workers` are the background loops `/readyz` requires to be running.
pub fn router(watcher: Arc<Watcher>, workers: Workers) -> (axum::Router, utoipa::openapi::OpenApi) {
    let watcher_names = Names {
        suites: watcher
            .slots()
            .iter()
            .map(|s| s.suite.name.clone())
            .collect(),
        invariants: watcher
            .cfg
            .invariants
            .iter()
            .map(|i| i.id.clone())
            .collect(),
    };
    let api = OpenApiRouter::new()
        .routes(routes!(list_invariants))
        .routes(routes!(list_measurements))
        .routes(routes!(create_run, list_runs))
        .routes(routes!(get_run))
        .routes(routes!(list_violations))
        .routes(routes!(violation_stats))
        .routes(routes!(get_violation))
        .routes(routes!(list_incidents))
        .routes(routes!(list_silences, create_silence))
        .routes(routes!(expire_silence))
        .route_layer(middleware::from_fn_with_state(watcher.clone(), auth));
    let admin = OpenApiRouter::new()
        .routes(routes!(reload))
        .route_layer(middleware::from_fn_with_state(watcher.clone(), auth));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(status_page))
        .nest("/api/v1", api)
        .merge(admin)
        .layer(axum::Extension(workers))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::map_response(json_errors))
        .with_state(watcher)
        .split_for_parts();
    doc.paths.add_path_operation(
        "/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        utoipa::openapi::path::OperationBuilder::new()
            .summary(Some("This document"))
            .tag("service")
            .response("200", utoipa::openapi::Response::new("OpenAPI 3.1 JSON")),
    );
    let served = Arc::new(refine(
        serde_json::to_value(&doc).unwrap_or_default(),
        &watcher_names,
    ));
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let d = served.clone();
                async move { Json(d.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        });
    (router, doc)
}

/// What this watcher's config names: the served document lists them as the only values the
/// run request accepts.
struct Names {
    suites: Vec<String>,
    invariants: Vec<String>,
}

/// The generated document, made to say exactly what the routes accept and answer: the
/// config's suites and invariant ids as enums of the run request (whose body is optional),
/// the severities and cursor shapes of the query strings, and the error statuses every route
/// can give (400 for a malformed query, 422, 503 for a store outage), so a client or a
/// schema-driven fuzzer reads the real contract.
fn refine(mut doc: Value, names: &Names) -> Value {
    let err = json!({ "description": "`{\"error\": …}`", "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/ErrorBody" } } } });
    if let Some(run) = doc.pointer_mut("/components/schemas/RunRequest/properties") {
        let mut suites: Vec<Value> = names.suites.iter().map(|s| json!(s)).collect();
        suites.push(Value::Null);
        run["suite"]["enum"] = Value::Array(suites);
        run["only"]["items"] = json!({ "type": "string", "enum": names.invariants });
    }
    if let Some(body) = doc.pointer_mut("/paths/~1api~1v1~1runs/post/requestBody") {
        body["required"] = json!(false);
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let reads_store = !matches!(path.as_str(), "/livez" | "/openapi.json");
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params.iter_mut() {
                    match p["name"].as_str() {
                        Some("severity") => {
                            p["schema"] =
                                json!({ "type": "string", "enum": ["critical", "major", "minor"] })
                        }
                        Some("cursor")
                            if path == "/api/v1/runs"
                                || path == "/api/v1/invariants/{id}/measurements" =>
                        {
                            p["schema"] =
                                json!({ "type": "string", "pattern": "^-?[0-9]{1,18}~.+$" })
                        }
                        Some("cursor") => {
                            p["schema"] = json!({ "type": "string", "pattern": "^-?[0-9]{1,18}$" })
                        }
                        // Any u32 is taken and clamped to 1..=1000; more is a 400.
                        Some("limit") => {
                            p["schema"] =
                                json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })
                        }
                        _ => {}
                    }
                }
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut add = |code: &str| {
                responses.entry(code).or_insert_with(|| err.clone());
            };
            if path.starts_with("/api/v1") {
                add("400");
                add("422");
            }
            if reads_store {
                add("503");
            }
        }
    }
    doc
}

/// Every error answer is `{"error": …}`: axum's own rejections (a malformed query, a body over
/// the limit) come as plain text and are wrapped here.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, msg).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// Bearer-token check for `/api/v1`: 401 without a valid token; the role goes to the handler.
async fn auth(State(w): State<AppState>, mut req: Request, next: Next) -> Response {
    let server = &w.cfg.server;
    if server.admin_token.is_none() && server.read_token.is_none() {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the API is disabled: set server.admin_token and/or server.read_token",
        )
        .into_response();
    }
    let given = bearer(req.headers());
    let Some(given) = given else {
        return unauthorized("missing bearer token (Authorization: Bearer TOKEN)");
    };
    // Both compared, always, in constant time: timing says nothing about which one matched,
    // nor how long the real tokens are.
    let is = |t: &Option<invar_core::Secret>| -> bool {
        t.as_ref()
            .is_some_and(|t| constant_time_eq(t.expose().as_bytes(), given.as_bytes()))
    };
    let admin = is(&server.admin_token);
    let read = is(&server.read_token);
    let role = if admin {
        Role::Admin
    } else if read {
        Role::Read
    } else {
        return unauthorized("invalid bearer token");
    };
    req.extensions_mut().insert(role);
    next.run(req).await
}

/// Equal bytes, in time that depends only on `given`'s length: both sides are compared over
/// a fixed-size buffer, then their lengths, so an early exit cannot reveal the token length.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    const MAX: usize = 512;
    if given.len() > MAX {
        return false;
    }
    let mut a = [0u8; MAX];
    let mut b = [0u8; MAX];
    let n = expected.len().min(MAX);
    a[..n].copy_from_slice(&expected[..n]);
    b[..given.len()].copy_from_slice(given);
    let same_bytes = a.ct_eq(&b);
    let same_len = (expected.len() as u64).ct_eq(&(given.len() as u64));
    bool::from(same_bytes & same_len)
}

fn unauthorized(msg: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Reloads the config file (like `SIGHUP`): validated first; on any error the running config
/// stays and the answer says why. Suites, silences and sinks change without dropping a tick
/// or an outbox entry.
#[utoipa::path(post, path = "/-/reload", tag = "service", security(("bearer" = [])),
    responses((status = 200, description = "Reloaded; `changes` says what changed", body = Value),
              (status = 401, body = ErrorBody),
              (status = 403, description = "A read-only token", body = ErrorBody),
              (status = 422, description = "The new config is invalid; the running one stays", body = ErrorBody),
              (status = 503, description = "This watcher cannot reload", body = ErrorBody)))]
async fn reload(
    axum::Extension(role): axum::Extension<Role>,
    reloader: Option<axum::Extension<crate::serve::Reloader>>,
) -> Result<Json<Value>, ApiError> {
    if role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reloading needs the admin token",
        ));
    }
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this watcher cannot reload",
        )
    };
    let Some(axum::Extension(reloader)) = reloader else {
        return Err(unavailable());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    reloader.0.send(tx).await.map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(changes) => Ok(Json(json!({ "reloaded": true, "changes": changes }))),
        Err(why) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("config reload refused; the running config stays: {why}"),
        )),
    }
}

/// Liveness: the process serves HTTP. No store access, so a store outage never restarts a
/// watcher that would recover by itself.
#[utoipa::path(get, path = "/livez", tag = "service",
    responses((status = 200, description = "The process serves", body = Value)))]
async fn livez() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store answers within a second and the scheduler, outbox and dead-man's
/// switch loops run; 503 with the reason otherwise (and while shutting down).
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, description = "Ready: the store answers and the scheduler runs", body = Value),
              (status = 503, description = "Not ready; `reason` says why", body = Value)))]
async fn readyz(
    State(w): State<AppState>,
    axum::Extension(workers): axum::Extension<Workers>,
) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response()
    };
    if w.is_draining() {
        return not_ready("invar watch is shutting down".into());
    }
    let ended = workers.ended();
    if !ended.is_empty() {
        return not_ready(format!("stopped: {}", ended.join(", ")));
    }
    if store_answers(&w).await.is_err() {
        return not_ready(format!(
            "the history store did not answer within {} ms",
            READY_TIMEOUT.as_millis()
        ));
    }
    Json(json!({ "status": "ok" })).into_response()
}

/// The dead-man's switch: 503 naming the overdue suites. Not for a liveness probe: a restart
/// does not make a missed run happen.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Every scheduled suite ran on time", body = Value),
              (status = 503, description = "Overdue suites, or the store is unavailable", body = Value)))]
async fn healthz(State(w): State<AppState>) -> Response {
    match store(w.overdue()).await {
        Ok(list) if list.is_empty() => Json(json!({ "status": "ok" })).into_response(),
        Ok(list) => {
            let overdue: Vec<Value> = list
                .iter()
                .map(|(s, t)| json!({ "suite": s, "due": t }))
                .collect();
            let names: Vec<String> = list.iter().map(|(s, _)| format!("`{s}`")).collect();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "overdue",
                    "message": format!("overdue: {}", names.join(", ")),
                    "overdue": overdue,
                })),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn metrics(State(w): State<AppState>) -> Result<Response, ApiError> {
    let snap = store(w.snapshot()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&snap),
    )
        .into_response())
}

/// The status page (server-rendered HTML).
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "HTML", content_type = "text/html")))]
async fn status_page(State(w): State<AppState>) -> Result<Html<String>, ApiError> {
    let snap = store(w.snapshot()).await?;
    Ok(Html(crate::page::render(&snap)))
}

/// Every invariant of the config with its latest outcome and incident state.
#[utoipa::path(get, path = "/invariants", tag = "api", security(("bearer" = [])),
    responses((status = 200, body = Value), (status = 401, body = ErrorBody)))]
async fn list_invariants(State(w): State<AppState>) -> Result<Json<Value>, ApiError> {
    let snap = store(w.snapshot()).await?;
    let items: Vec<Value> = w
        .cfg
        .invariants
        .iter()
        .zip(&snap.invariants)
        .map(|(inv, st)| {
            let suites: Vec<&str> = w
                .cfg
                .suites
                .iter()
                .filter(|s| s.selects(inv).unwrap_or(false))
                .map(|s| s.name.as_str())
                .collect();
            json!({
                "id": inv.id,
                "title": inv.title,
                "severity": inv.severity.as_str(),
                "tags": inv.tags,
                "runbook": inv.runbook,
                "check": inv.check.kind(),
                "sources": inv.check.sources(),
                "suites": suites,
                "incident": st.incident,
                "incident_since": st.incident_since,
                "last_outcome": st.last_outcome,
                "last_run_at": st.last_run_at,
                "violations": st.violations,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// One invariant's measured series: each recorded result's run, start, outcome and
/// `measured` map, newest first, a page at a time. 404 when the invariant is neither in the
/// config nor in the history.
#[utoipa::path(get, path = "/invariants/{id}/measurements", tag = "api", security(("bearer" = [])),
    params(("id" = String, Path, description = "invariant id"), MeasurementsParams),
    responses((status = 200, description = "`{invariant, items, next_cursor}`", body = Value),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn list_measurements(
    State(w): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<MeasurementsParams>,
) -> Result<Response, ApiError> {
    // The store's cursor is `MS~RUN_ID`; anything else is the client's mistake, said here
    // (the store would call it invalid, which the API answers as an outage).
    if let Some(c) = &p.cursor
        && !c
            .split_once('~')
            .is_some_and(|(ms, run)| ms.parse::<i64>().is_ok() && !run.is_empty())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid cursor `{c}`: pass the `next_cursor` of the previous page"),
        ));
    }
    let page = store(w.store.measurements(&MeasurementQuery {
        invariant: id.clone(),
        since: p.since,
        limit: limit(p.limit),
        cursor: p.cursor,
    }))
    .await?;
    if page.items.is_empty() && w.cfg.invariant(&id).is_none() {
        let any = MeasurementQuery {
            invariant: id.clone(),
            limit: 1,
            ..Default::default()
        };
        if store(w.store.measurements(&any)).await?.items.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no invariant `{id}` in the config or the history"),
            ));
        }
    }
    Ok(Json(json!({
        "invariant": id,
        "items": page.items,
        "next_cursor": page.next_cursor,
    }))
    .into_response())
}

/// Runs a suite now and answers its report — the same document as `invar run --format json`.
#[utoipa::path(post, path = "/runs", tag = "api", security(("bearer" = [])),
    request_body(content = RunRequest, description = "Optional: `{}` runs the implicit suite `all`"),
    responses((status = 200, description = "The run report", body = Value),
              (status = 401, body = ErrorBody),
              (status = 403, description = "A read-only token", body = ErrorBody),
              (status = 408, description = "The body did not arrive in time", body = ErrorBody),
              (status = 409, description = "The suite is running", body = ErrorBody),
              (status = 413, description = "A body over 64 KiB", body = ErrorBody),
              (status = 422, description = "Unknown suite or invariant ids", body = ErrorBody),
              (status = 503, description = "The store is unavailable, or the watcher is stopping", body = ErrorBody)))]
async fn create_run(
    State(w): State<AppState>,
    axum::Extension(role): axum::Extension<Role>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    if role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this token may only read: POST /api/v1/runs needs the admin token",
        ));
    }
    let body = read_body(body).await?;
    let req: RunRequest = crate::request::run_request(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid run request: {e}; expected {{\"suite\": NAME, \"only\": [ID, …]}}"),
        )
    })?;
    let suite = req.suite.unwrap_or_else(|| "all".to_string());
    // A run would wait on the store for its lease; an outage is answered now instead.
    w.check_request(&suite, &req.only)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    store_answers(&w).await?;
    match w
        .run_suite(&suite, req.only, invar_core::Trigger::Api)
        .await
    {
        Ok(report) => Ok(Json(
            serde_json::to_value(&report).map_err(ApiError::store)?,
        )),
        Err(RunError::Busy) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("suite `{suite}` is already running; try again when it finishes"),
        )),
        Err(RunError::Unknown(m)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)),
        Err(RunError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "invar watch is shutting down; try another replica or after it restarts",
        )),
        Err(RunError::Failed(e)) => Err(ApiError::store(invar_core::error_chain(e.as_ref()))),
    }
}

/// Recorded runs, newest first.
#[utoipa::path(get, path = "/runs", tag = "api", security(("bearer" = [])), params(RunsParams),
    responses((status = 200, description = "`{items, next_cursor}`", body = Value),
              (status = 401, body = ErrorBody)))]
async fn list_runs(
    State(w): State<AppState>,
    Query(p): Query<RunsParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit(p.limit);
    // The cursor is the last row's (start in ms, run id): the order is (started_at, run_id)
    // descending, and runs may share a millisecond.
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(
            c.split_once('~')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "invalid cursor `{c}`: pass the `next_cursor` of the previous page"
                        ),
                    )
                })?,
        ),
    };
    // Rows sharing the cursor's millisecond are read again and skipped here.
    const TIES: u32 = 64;
    let mut runs = store(
        w.store.runs(&RunQuery {
            suite: p.suite,
            since: p.since,
            until: after
                .as_ref()
                .and_then(|(ms, _)| DateTime::from_timestamp_millis(ms + 1)),
            limit: limit + TIES,
        }),
    )
    .await?;
    if let Some((ms, id)) = &after {
        runs.retain(|r| {
            let t = r.started_at.timestamp_millis();
            t < *ms || (t == *ms && r.run_id < *id)
        });
    }
    runs.truncate(limit as usize);
    let next = (runs.len() == limit as usize)
        .then(|| {
            runs.last()
                .map(|r| format!("{}~{}", r.started_at.timestamp_millis(), r.run_id))
        })
        .flatten();
    Ok(Json(json!({ "items": runs, "next_cursor": next })))
}

/// One run as its report.
#[utoipa::path(get, path = "/runs/{id}", tag = "api", security(("bearer" = [])),
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "The run report", body = Value),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(w): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match store(w.store.run_report(&id)).await? {
        Some(r) => Ok(Json(serde_json::to_value(&r).map_err(ApiError::store)?)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run `{id}`"),
        )),
    }
}

/// Recorded violations, newest first, a page at a time.
#[utoipa::path(get, path = "/violations", tag = "api", security(("bearer" = [])),
    params(ViolationsParams),
    responses((status = 200, description = "`{items, next_cursor}`", body = Value),
              (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_violations(
    State(w): State<AppState>,
    Query(p): Query<ViolationsParams>,
) -> Result<Response, ApiError> {
    if let Some(s) = &p.severity
        && !["critical", "major", "minor"].contains(&s.as_str())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown severity `{s}`: expected critical, major or minor"),
        ));
    }
    if let Some(c) = &p.cursor
        && c.parse::<i64>().is_err()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid cursor `{c}`: pass the `next_cursor` of the previous page"),
        ));
    }
    let page = store(w.store.violations(&ViolationQuery {
        invariant: p.invariant,
        severity: p.severity,
        since: p.since,
        limit: limit(p.limit),
        cursor: p.cursor.clone(),
    }))
    .await?;
    // An empty page after a cursor whose row is gone (pruned by retention mid-walk) is not
    // the end of the list: say so rather than end the walk silently.
    if page.items.is_empty()
        && let Some(id) = p.cursor.as_deref().and_then(|c| c.parse::<i64>().ok())
        && store(w.store.violation(id)).await?.is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "cursor `{id}` no longer names a stored violation (pruned?): start again without a cursor"
            ),
        ));
    }
    // Serialized straight from the rows (no intermediate JSON tree).
    Ok(Json(page).into_response())
}

/// Violation counts per invariant, with first and last times.
#[utoipa::path(get, path = "/violations/stats", tag = "api", security(("bearer" = [])),
    params(StatsParams),
    responses((status = 200, body = Value), (status = 401, body = ErrorBody)))]
async fn violation_stats(
    State(w): State<AppState>,
    Query(p): Query<StatsParams>,
) -> Result<Json<Value>, ApiError> {
    let stats = store(w.store.violation_stats(p.since)).await?;
    Ok(Json(serde_json::to_value(stats).map_err(ApiError::store)?))
}

/// One violation.
#[utoipa::path(get, path = "/violations/{id}", tag = "api", security(("bearer" = [])),
    params(("id" = i64, Path, description = "violation id")),
    responses((status = 200, body = Value), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_violation(
    State(w): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    match store(w.store.violation(id)).await? {
        Some(v) => Ok(Json(serde_json::to_value(v).map_err(ApiError::store)?)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no violation {id}"),
        )),
    }
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/incidents", tag = "api", security(("bearer" = [])),
    params(IncidentsParams),
    responses((status = 200, description = "`{items}`", body = Value),
              (status = 401, body = ErrorBody)))]
async fn list_incidents(
    State(w): State<AppState>,
    Query(p): Query<IncidentsParams>,
) -> Result<Json<Value>, ApiError> {
    let items = store(w.store.incidents(&IncidentQuery {
        open_only: p.open.unwrap_or(false),
        subject: p.subject,
        since: p.since,
        limit: limit(p.limit),
    }))
    .await?;
    Ok(Json(json!({ "items": items })))
}

/// A request body, whole: 408 when it trickles past [`BODY_TIMEOUT`] (a client holding the
/// handler), 413 past [`BODY_LIMIT`].
async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {} KiB", BODY_LIMIT / 1024),
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

fn admin_only(role: Role, what: &str) -> Result<(), ApiError> {
    if role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token may only read: {what} needs the admin token"),
        ))
    }
}

/// Silences active now (`?all=true`: every one, expired and future ones too).
#[utoipa::path(get, path = "/silences", tag = "api", security(("bearer" = [])),
    params(("all" = Option<bool>, Query, description = "Every silence, not only the active ones")),
    responses((status = 200, description = "`{items}`", body = Value),
              (status = 401, body = ErrorBody)))]
async fn list_silences(
    State(w): State<AppState>,
    Query(p): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let all = p.get("all").is_some_and(|v| v == "true" || v == "1");
    // Runs are stamped on real time (not the test clock), and so are silences.
    let now = chrono::Utc::now();
    let items = store(w.store.silences((!all).then_some(now))).await?;
    Ok(Json(json!({ "items": items })))
}

/// Adds a one-off silence: `{"match": CEL, "for": "4h", "reason": "…", "starts_at": RFC3339?}`.
#[utoipa::path(post, path = "/silences", tag = "api", security(("bearer" = [])),
    request_body(content = Value, description = "`{match, for, reason, starts_at?, created_by?}`"),
    responses((status = 201, description = "The new silence", body = Value),
              (status = 401, body = ErrorBody),
              (status = 403, description = "A read-only token", body = ErrorBody),
              (status = 422, description = "An invalid matcher, duration or time", body = ErrorBody)))]
async fn create_silence(
    State(w): State<AppState>,
    axum::Extension(role): axum::Extension<Role>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin_only(role, "POST /api/v1/silences")?;
    let body = read_body(body).await?;
    let new = silence_request(&body, chrono::Utc::now())
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let s = store(w.store.add_silence(&new)).await?;
    tracing::info!(id = %s.id, matcher = %s.matcher, until = %s.ends_at, "silence added");
    Ok((StatusCode::CREATED, Json(json!(s))))
}

/// Ends a silence now.
#[utoipa::path(delete, path = "/silences/{id}", tag = "api", security(("bearer" = [])),
    params(("id" = String, Path, description = "The silence's id")),
    responses((status = 200, description = "Expired", body = Value),
              (status = 401, body = ErrorBody),
              (status = 403, description = "A read-only token", body = ErrorBody),
              (status = 404, description = "No active silence has this id", body = ErrorBody)))]
async fn expire_silence(
    State(w): State<AppState>,
    axum::Extension(role): axum::Extension<Role>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(role, "DELETE /api/v1/silences/{id}")?;
    if store(w.store.expire_silence(&id, chrono::Utc::now())).await? {
        tracing::info!(%id, "silence expired");
        Ok(Json(json!({ "expired": id })))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no active silence {id}"),
        ))
    }
}

/// A `POST /api/v1/silences` body (here, not in `request.rs`, which the fuzz targets build
/// without the store): `match` (CEL over `id`, `severity`, `tags`, `suite`),
/// `for` (a duration), `reason`, optional `starts_at` (RFC 3339, default now) and `created_by`.
fn silence_request(
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<invar_store::NewSilence, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(rename = "match")]
        matcher: String,
        #[serde(rename = "for")]
        duration: String,
        #[serde(default)]
        reason: String,
        starts_at: Option<chrono::DateTime<chrono::Utc>>,
        created_by: Option<String>,
    }
    let expected =
        "expected {\"match\": CEL, \"for\": \"4h\", \"reason\": TEXT, \"starts_at\": RFC3339?}";
    let b: Body =
        serde_json::from_slice(body).map_err(|e| format!("invalid silence: {e}; {expected}"))?;
    let duration = invar_core::units::parse_duration(&b.duration).map_err(|_| {
        format!(
            "`for` must be a duration like `4h` (at most 10 years), found `{}`",
            b.duration
        )
    })?;
    invar_alerts::new_silence(
        &b.matcher,
        b.starts_at.unwrap_or(now),
        duration,
        &b.reason,
        b.created_by.as_deref().unwrap_or("api"),
        now,
    )
    .map_err(|e| format!("invalid silence: {e}"))
}

fn limit(l: Option<u32>) -> u32 {
    l.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_whole_and_by_length() {
        assert!(constant_time_eq(b"admin-0123456789", b"admin-0123456789"));
        assert!(!constant_time_eq(b"admin-0123456789", b"admin-0123456788"));
        assert!(!constant_time_eq(b"admin-0123456789", b"admin-012345678"));
        assert!(!constant_time_eq(
            b"admin-0123456789",
            b"admin-0123456789\0"
        ));
        assert!(!constant_time_eq(b"admin-0123456789", b""));
        assert!(!constant_time_eq(b"x", &[b'x'; 600]));
    }
}
