//! The HTTP interface: the Passthru endpoint Exotel calls, the admin API under `/v1` (operator
//! and tenants, JSON, RFC 9457 problems), `/healthz`, `/metrics` and `/openapi.json`.
//!
//! [`router`] builds everything (tests drive it without a socket); [`serve`] runs it on a
//! listener until a shutdown signal, letting in-flight requests finish.

mod extract;
mod metrics;
mod openapi;
mod operator;
mod passthru;
mod problem;
mod queue;
mod tenant;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;

pub use openapi::{ApiDoc, openapi_json};
pub use problem::ApiError;

use crate::auth::OperatorToken;
use crate::queue::Queue;
use crate::records::Recorder;
use crate::registry::Registry;

/// The largest JSON body the admin API reads.
const MAX_JSON_BYTES: usize = 1 << 20;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub recorder: Recorder,
    pub queue: Queue,
    pub operator: Arc<OperatorToken>,
    pub max_query_bytes: usize,
    pub max_upload_bytes: u64,
}

/// Every route, with the state attached.
pub fn router(state: AppState) -> Router {
    let uploads = Router::new()
        .route(
            "/v1/plugins/{plugin}/versions",
            post(tenant::post_version).get(tenant::list_plugin_versions),
        )
        // The upload handler enforces its own limit, from the tenant's cap.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::map_response(close_unless_success));
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
            get(tenant::get_version),
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
        .route("/v1/decisions", get(tenant::list_decisions))
        .route("/v1/calls/{call_sid}", get(tenant::get_call))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(middleware::map_response(close_unless_success));
    Router::new()
        .route("/passthru/{tenant}/{flow}", get(passthru::get_passthru))
        .route("/healthz", get(get_healthz))
        .route("/metrics", get(metrics::get_metrics))
        .route("/openapi.json", get(get_openapi))
        .merge(uploads)
        .merge(admin)
        .fallback(not_found)
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, then waits for in-flight
/// requests to finish.
///
/// # Errors
/// When accepting connections fails for good.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
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
