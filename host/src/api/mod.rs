//! The HTTP interface: the Passthru endpoint Exotel calls, and `/healthz`.
//!
//! [`router`] builds everything (tests drive it without a socket); [`serve`] runs it on a
//! listener until a shutdown signal, letting in-flight requests finish.

mod passthru;
mod problem;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::Uri;
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

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        path: uri.path().to_owned(),
    }
}
