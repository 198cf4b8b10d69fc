//! `sluice server`: the REST API over a [`JobManager`] (axum on tokio).
//!
//! ```text
//! GET  /                           the web console (no token needed: it holds no data)
//! GET  /healthz                     ok (no token needed)
//! GET  /metrics                     every job's counters, Prometheus text format
//! POST /v1/validate                 {sql, variables?, name?}  → 200 {ok} | 400 {error: file:line:col …}
//! POST /v1/explain                  {sql, variables?, name?}  → 200 {explain: text} | 400 {error}
//! POST /v1/preview                  {sql, …} ending in a SELECT → its rows while it runs, as an
//!                                   Arrow IPC stream (the shell's SELECT with --server)
//! GET  /v1/jobs                     [job, …]
//! POST /v1/jobs                     {sql, variables?, name?}  → 201 job | 400 {error}
//! GET  /v1/jobs/{id}                job (with rows in/out, last checkpoint, log lines)
//! POST /v1/jobs/{id}/stop           {mode: savepoint|drain|cancel}
//! POST /v1/jobs/{id}/resume         from its latest checkpoint
//! GET  /v1/jobs/{id}/explain        {explain: text}: its dataflow
//! GET  /v1/jobs/{id}/checkpoints    [{id, kind, created_ms, duration_ms, bytes, staged_rows}, …]
//! GET  /v1/jobs/{id}/logs           server-sent events: the job's log, then new lines while it
//!                                   runs; `event: end` when its run ends
//! DELETE /v1/jobs/{id}
//! ```
//! With a token, every endpoint but `/healthz` needs `Authorization: Bearer <token>`. Request
//! bodies are limited to 1 MiB.

mod console;
mod preview;
mod prometheus;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use serde::Deserialize;
use serde_json::json;

use tokio::sync::broadcast::error::RecvError;

use crate::jobs::{JobManager, JobsError, LogEvent, Script, StopMode};

/// Largest request body accepted.
const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
struct AppState {
    jobs: JobManager,
    token: Option<String>,
}

#[derive(Deserialize)]
struct SubmitRequest {
    sql: String,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct StopRequest {
    mode: Option<StopMode>,
}

/// The API's router over `jobs`; `token` protects every route but `/healthz`.
pub fn router(jobs: JobManager, token: Option<String>) -> Router {
    let state = AppState { jobs, token };
    let api = Router::new()
        .route("/v1/validate", post(validate))
        .route("/v1/explain", post(explain))
        .route("/v1/preview", post(preview::preview))
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(job).delete(delete))
        .route("/v1/jobs/{id}/stop", post(stop))
        .route("/v1/jobs/{id}/resume", post(resume))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/explain", get(job_explain))
        .route("/v1/jobs/{id}/checkpoints", get(checkpoints))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(console::routes())
        .merge(api)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A certificate chain and its private key, PEM files.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Serves the API and the console on `listen` (HTTPS with `tls`) until the process ends.
pub async fn serve(
    listen: SocketAddr,
    jobs: JobManager,
    token: Option<String>,
    tls: Option<Tls>,
) -> std::io::Result<()> {
    let app = router(jobs, token);
    tracing::info!(%listen, tls = tls.is_some(), "sluice server listening");
    match tls {
        Some(tls) => {
            let config = RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "TLS certificate {} / key {}: {e}",
                            tls.cert.display(),
                            tls.key.display()
                        ),
                    )
                })?;
            axum_server::bind_rustls(listen, config)
                .serve(app.into_make_service())
                .await
        }
        None => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            axum::serve(listener, app).await
        }
    }
}

async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer <token>`",
            );
        }
    }
    next.run(request).await
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn jobs_error(e: JobsError) -> Response {
    let status = match &e {
        JobsError::Invalid(_) => StatusCode::BAD_REQUEST,
        JobsError::NotFound(_) => StatusCode::NOT_FOUND,
        JobsError::Conflict { .. } => StatusCode::CONFLICT,
        JobsError::Table { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

impl SubmitRequest {
    fn script(self) -> Script {
        Script {
            name: format!("{}.sql", self.name.as_deref().unwrap_or("job")),
            text: self.sql,
            variables: Some(self.variables),
        }
    }
}

async fn validate(State(state): State<AppState>, Json(request): Json<SubmitRequest>) -> Response {
    match state.jobs.plan(&request.script()).await {
        Ok(_) => Json(json!({ "ok": true })).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn explain(State(state): State<AppState>, Json(request): Json<SubmitRequest>) -> Response {
    match state.jobs.explain(&request.script()).await {
        Ok(text) => Json(json!({ "explain": text })).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn job_explain(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.jobs.explain_job(&id).await {
        Ok(text) => Json(json!({ "explain": text })).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn checkpoints(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.jobs.checkpoints(&id).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus::render(&state.jobs),
    )
        .into_response()
}

async fn list(State(state): State<AppState>) -> Response {
    Json(state.jobs.list()).into_response()
}

async fn submit(State(state): State<AppState>, Json(request): Json<SubmitRequest>) -> Response {
    match state
        .jobs
        .submit(request.name, request.sql, request.variables)
        .await
    {
        Ok(job) => (StatusCode::CREATED, Json(job)).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.jobs.get(&id) {
        Ok(job) => Json(job).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<StopRequest>>,
) -> Response {
    let mode = body
        .and_then(|Json(b)| b.mode)
        .unwrap_or(StopMode::Savepoint);
    match state.jobs.stop(&id, mode) {
        Ok(job) => (StatusCode::ACCEPTED, Json(job)).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.jobs.resume(&id) {
        Ok(job) => (StatusCode::ACCEPTED, Json(job)).into_response(),
        Err(e) => jobs_error(e),
    }
}

async fn logs(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let (past, live) = match state.jobs.follow(&id) {
        Ok(f) => f,
        Err(e) => return jobs_error(e),
    };
    let past = futures::stream::iter(past.into_iter().map(|l| Event::default().data(l)));
    let live = futures::stream::unfold(live, |live| async move {
        let mut rx = live?;
        match rx.recv().await {
            Ok(LogEvent::Line(l)) => Some((Event::default().data(l), Some(rx))),
            Ok(LogEvent::End) | Err(RecvError::Closed) => None,
            // A slow follower missed lines: say so and go on.
            Err(RecvError::Lagged(n)) => {
                let note = Event::default().data(format!("({n} lines skipped)"));
                Some((note, Some(rx)))
            }
        }
    });
    let end = futures::stream::once(async { Event::default().event("end").data("end") });
    let events = past
        .chain(live)
        .chain(end)
        .map(Ok::<_, std::convert::Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.jobs.delete(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => jobs_error(e),
    }
}
