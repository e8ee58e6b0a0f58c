//! The HTTP interface: the Passthru endpoint Exotel calls, the admin API under `/v1` (operator
//! and tenants, JSON, RFC 9457 problems), the web console under `/console`, `/healthz`,
//! `/metrics` and `/openapi.json`.
//!
//! [`router`] builds everything (tests drive it without a socket); [`serve`] runs it on a
//! listener until a shutdown signal, letting in-flight requests finish.

mod bodies;
mod console;
mod decisions;
mod extract;
mod hooks;
mod kv;
pub mod metrics;
mod openapi;
mod operator;
mod passthru;
mod problem;
mod queue;
mod rollouts;
mod stats;
mod tenant;
pub mod turns;

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::field::Empty;

pub use bodies::{AdminBody, check_admin_body};
pub use openapi::{ApiDoc, openapi_json};
pub use problem::ApiError;

use crate::auth::OperatorToken;
use crate::logsafe::Escaped;
use crate::queue::Queue;
use crate::records::Recorder;
use crate::registry::Registry;
pub use metrics::Metrics;

/// The largest JSON body the admin API reads.
const MAX_JSON_BYTES: usize = 1 << 20;

/// What every handler shares: one shared [`AppShared`], so the clone each request's handler takes
/// is one reference count, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl AppState {
    pub fn new(shared: AppShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppShared {
    pub registry: Arc<Registry>,
    pub recorder: Recorder,
    pub queue: Queue,
    pub operator: Arc<OperatorToken>,
    pub max_query_bytes: usize,
    pub max_upload_bytes: u64,
    pub metrics: Arc<Metrics>,
    pub http: HttpLimits,
    /// The server's address as Exotel reaches it (`https://passthru.example.com`, no trailing
    /// slash), to answer full Passthru URLs; without it, paths only.
    pub public_url: Option<Arc<str>>,
    /// The server's one backtest at a time (`POST /v1/flows/{flow}/backtest`).
    pub backtests: crate::rollout::backtest::Backtests,
    /// Reads of decision records (`/v1/decisions`, `/v1/calls`, a flow's stats, a backtest's):
    /// one at a time per tenant, [`turns::READS`] in all.
    pub record_reads: turns::TenantTurns,
}

/// Every route, with the state attached.
pub fn router(state: AppState) -> Router {
    let uploads = Router::new()
        .route(
            "/v1/plugins/{plugin}/versions",
            post(tenant::post_version).get(tenant::list_plugin_versions),
        )
        // The import handler enforces its own limit (kv::MAX_IMPORT_BYTES).
        .route("/v1/kv/{store}/import", post(kv::post_import))
        // The upload handler enforces its own limit, from the tenant's cap.
        .layer(DefaultBodyLimit::disable())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.http.upload_timeout,
        ))
        .layer(middleware::map_response(timeout_problem))
        .layer(middleware::map_response(close_unless_success))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_admin_request,
        ));
    let admin = Router::new()
        .route(
            "/v1/tenants",
            post(operator::post_tenant).get(operator::list_tenants),
        )
        .route(
            "/v1/tenants/{tenant}",
            get(operator::get_tenant).patch(operator::patch_tenant),
        )
        .route(
            "/v1/tenants/{tenant}/tokens",
            post(operator::post_token).get(operator::list_tokens),
        )
        .route(
            "/v1/tenants/{tenant}/tokens/{id}",
            delete(operator::delete_token),
        )
        .route("/v1/plugins", get(tenant::list_versions))
        .route(
            "/v1/plugins/{plugin}/versions/{version}",
            get(tenant::get_version).delete(tenant::delete_version),
        )
        .route("/v1/flows", get(tenant::list_flows))
        .route(
            "/v1/flows/{flow}",
            get(tenant::get_flow)
                .put(tenant::put_flow)
                .delete(tenant::delete_flow),
        )
        .route("/v1/flows/{flow}/activate", post(tenant::post_activate))
        .route("/v1/flows/{flow}/rollback", post(tenant::post_rollback))
        .route("/v1/flows/{flow}/auth", post(tenant::post_auth))
        .route("/v1/flows/{flow}/try", post(rollouts::post_try))
        .route(
            "/v1/flows/{flow}/canary",
            put(rollouts::put_canary).delete(rollouts::delete_canary),
        )
        .route(
            "/v1/flows/{flow}/canary/promote",
            post(rollouts::post_promote),
        )
        .route("/v1/flows/{flow}/backtest", post(rollouts::post_backtest))
        .route(
            "/v1/flows/{flow}/secrets/{key}",
            put(tenant::put_secret).delete(tenant::delete_secret),
        )
        .route("/v1/flows/{flow}/queue", get(queue::get_queue))
        .route(
            "/v1/flows/{flow}/dead-letters",
            get(queue::list_dead_letters),
        )
        .route(
            "/v1/flows/{flow}/dead-letters/{id}",
            get(queue::get_dead_letter).delete(queue::delete_dead_letter),
        )
        .route(
            "/v1/flows/{flow}/dead-letters/{id}/replay",
            post(queue::post_replay),
        )
        .route("/v1/kv", get(kv::list_stores))
        .route("/v1/kv/{store}/keys", get(kv::list_keys))
        .route(
            "/v1/kv/{store}/keys/{key}",
            get(kv::get_key).put(kv::put_key).delete(kv::delete_key),
        )
        .route("/v1/decisions", get(decisions::list_decisions))
        .route("/v1/calls/{call_sid}", get(decisions::get_call))
        .route("/v1/flows/{flow}/stats", get(stats::get_stats))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.http.admin_timeout,
        ))
        .layer(middleware::map_response(timeout_problem))
        .layer(middleware::map_response(close_unless_success))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_admin_request,
        ));
    // The console's files: outside the admin API's layers (no token, no body), with the same
    // timeout.
    let console = console::routes()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.http.admin_timeout,
        ))
        .layer(middleware::map_response(timeout_problem));
    let hot = Router::new()
        .route(passthru::PASSTHRU_ROUTE, get(passthru::get_passthru))
        .route(
            passthru::PASSTHRU_KEY_ROUTE,
            get(passthru::get_passthru_with_key),
        );
    Router::new()
        .route("/healthz", get(get_healthz))
        .route("/readyz", get(get_readyz))
        .route("/metrics", get(metrics::get_metrics))
        .route("/openapi.json", get(get_openapi))
        .merge(uploads)
        .merge(admin)
        .merge(console)
        .fallback(not_found)
        // Every route (and the fallback): a span per request, then the request id around it.
        // `Router::layer` wraps each route after routing, so the span sees the matched route.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // Handlers log their own failures; a 503 from a full queue is not an error.
                .on_failure(()),
        )
        // The Passthru route makes its own span (see `passthru::get_passthru`).
        .merge(hot)
        // Every route's (and the fallback's): a method a path is not routed for.
        .layer(middleware::map_response(method_problem))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(NextRequestId))
        .with_state(state)
}

/// The span every request runs in: its id, method and route template. The Passthru handler
/// fills in the tenant, flow and call.
fn request_span(request: &Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        // A client may send its own id: shown escaped and cut.
        id = %Escaped(crate::logsafe::cut(id, 64)),
        method = %request.method(),
        route,
        tenant = Empty,
        flow = Empty,
        call_sid = Empty,
    )
}

/// Request ids for requests that come without one: a random prefix drawn once per process and
/// a counter, so ids are unique across restarts without a random draw per request.
#[derive(Debug, Clone, Copy)]
struct NextRequestId;

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        Some(RequestId::new(next_request_id()))
    }
}

/// The next request id (see [`NextRequestId`]).
pub(super) fn next_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `PREFIX-COUNTER` in lower-case hex, written on the stack (no `format!` per request).
    let mut id = [0u8; 8 + 1 + 16];
    let hex = |value: u64, out: &mut [u8]| {
        for (i, byte) in out.iter_mut().rev().enumerate() {
            *byte = b"0123456789abcdef"[((value >> (4 * i)) & 0xf) as usize];
        }
    };
    hex(u64::from(prefix), &mut id[..8]);
    id[8] = b'-';
    let digits = (16 - n.leading_zeros() as usize / 4).max(1);
    hex(n, &mut id[9..9 + digits]);
    HeaderValue::from_bytes(&id[..9 + digits]).expect("hex digits and a hyphen")
}

/// The timeout layer answers a bare `408`: give it a problem body like every other error.
async fn timeout_problem(response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        return ApiError::Timeout.into_response();
    }
    response
}

/// The router answers a method a path does not have with a bare `405`: give it a problem body
/// like every other error. Its `Allow` header is kept (axum adds it outside this layer, and it
/// is copied over in case it is already there).
async fn method_problem(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let mut problem = ApiError::MethodNotAllowed.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        problem.headers_mut().insert(header::ALLOW, allow.clone());
    }
    problem
}

/// What the HTTP server allows a client (the config file's defaults: 4096 connections, 10 s to
/// send headers, 30 s for an admin request, 120 s for an upload).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, counted from when the server
    /// starts waiting for them: so an idle keep-alive connection is closed after as long.
    pub header_timeout: Duration,
    /// How long an admin API request may take, its body included, before it is answered `408`.
    pub admin_timeout: Duration,
    /// The same for plugin uploads, which compile the component (seconds for a large one). The
    /// Passthru route reads no body.
    pub upload_timeout: Duration,
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, then waits for in-flight
/// requests to finish (idle connections are closed).
///
/// # Errors
/// Never, today: an accept error is logged and the server goes on (after a pause when the
/// process is out of file descriptors).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.http;
    let refused = state.metrics.connections_refused();
    // The Passthru routes are answered without the router (`passthru::direct`); every other
    // request goes through it.
    let routes = TowerToHyperService::new(router(state.clone()));
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let answer = passthru::direct(&state, request)
            .map_err(|request| hyper::service::Service::call(&routes, request));
        async move {
            match answer {
                Ok(direct) => Ok(direct.await),
                Err(routed) => routed.await,
            }
        }
    });
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            // At the cap: closed at once, before a byte is read.
            refused.inc();
            drop(stream);
            continue;
        };
        // Answers are small and written whole: no reason to wait for more to send.
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends its own connection; nothing to do.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: the client's own trouble (it reset before we accepted) is ignored; anything
/// else is logged, and when the process is out of file descriptors the loop pauses, since
/// accepting again at once would only fail again.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A request refused before its body was read (an upload over the cap, JSON of the wrong type or
/// size) leaves that body on the connection: ask the client to close it, so it does not send its
/// next request into the unread bytes. Admin API only: Passthru answers keep their connections.
async fn close_unless_success(mut response: Response) -> Response {
    if !response.status().is_success() {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Liveness
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getHealthz",
    tag = "ops",
    responses((
        status = 200,
        description = "The server is up.",
        body = String,
        content_type = "text/plain",
        example = "ok\n"
    ))
)]
async fn get_healthz() -> &'static str {
    "ok\n"
}

/// Readiness
///
/// Whether this node should be sent traffic: it has loaded its flows (it answers only once it
/// has) and can reach its database now. A load balancer takes a node out while this answers
/// `503`; `/healthz` says only that the process is up.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready: the database answered.", body = Readiness),
        (status = 503, description = "The database did not answer in time, or failed.",
            body = problem::Problem, content_type = "application/problem+json")
    )
)]
async fn get_readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<Readiness>, ApiError> {
    let store = state.registry.store().clone();
    let ping = tokio::task::spawn_blocking(move || store.ping());
    match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(Ok(()))) => Ok(axum::Json(Readiness {
            flows: state.registry.live_flows(),
            database: if state.registry.store().shared() {
                "postgres"
            } else {
                "embedded"
            },
        })),
        Ok(Ok(Err(error))) => {
            // Anyone may ask: the database's own words (its host, its user) go to the log only.
            tracing::warn!(error = %crate::error::Chain(&error), "not ready: the database failed");
            Err(ApiError::NotReady(
                "the database failed (the server's log says why)".into(),
            ))
        }
        Ok(Err(_)) => Err(ApiError::Internal),
        Err(_) => Err(ApiError::NotReady(format!(
            "the database did not answer within {} ms",
            READY_TIMEOUT.as_millis()
        ))),
    }
}

/// How long the readiness check waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A ready node.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// The flows this node serves.
    pub flows: usize,
    /// `embedded` (SQLite in the data directory) or `postgres` (shared).
    #[schema(examples("embedded", "postgres"))]
    pub database: &'static str,
}

/// This document
///
/// The API described in OpenAPI 3.1, generated from the server's code; the same document as
/// `docs/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenapi",
    tag = "ops",
    responses((
        status = 200,
        description = "The OpenAPI document.",
        body = Object,
        content_type = "application/json"
    ))
)]
async fn get_openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeout layer as the admin routes stack it, on a handler slower than the timeout:
    /// a `408` with a problem body.
    #[tokio::test]
    async fn a_timed_out_admin_request_gets_a_408_problem() {
        let app = Router::new()
            .route(
                "/v1/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(50),
            ))
            .layer(middleware::map_response(timeout_problem));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let response = reqwest::get(format!("http://{addr}/v1/slow"))
            .await
            .unwrap();
        assert_eq!(response.status(), 408);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["type"], "urn:passthru:problem:timeout");
        assert_eq!(body["status"], 408);
        server.abort();
    }

    #[test]
    fn made_request_ids_differ() {
        let request = Request::new(());
        let mut make = NextRequestId;
        let a = make.make_request_id(&request).unwrap();
        let b = make.make_request_id(&request).unwrap();
        assert_ne!(a.header_value(), b.header_value());
    }
}
