//! The HTTP interface: the Passthru endpoint Exotel calls, `/healthz` and `/openapi.json`.
//!
//! [`router`] builds everything (tests drive it without a socket); [`serve`] runs it on a
//! listener until a shutdown signal, letting in-flight requests finish.

mod passthru;
mod problem;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

pub use problem::ApiError;

use crate::registry::FlowTable;
use crate::sandbox::Sandbox;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub sandbox: Arc<Sandbox>,
    pub flows: Arc<FlowTable>,
    pub max_query_bytes: usize,
}

/// Every route, with the state attached.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/passthru/{tenant}/{flow}", get(passthru::get_passthru))
        .route("/healthz", get(get_healthz))
        .route("/openapi.json", get(get_openapi))
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

async fn get_healthz() -> &'static str {
    "ok\n"
}

/// The API described in OpenAPI 3.1; the same file as `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

async fn get_openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        path: uri.path().to_owned(),
    }
}
