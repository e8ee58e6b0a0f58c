//! `GET /metrics` (the Prometheus text format), and the middleware that counts admin API
//! requests by route template and status.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics::{HttpLabels, method_label};

pub(super) async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

/// Counts an admin API request under its route template (`/v1/flows/{flow}`, never the path
/// as sent), its method and its answer's status.
pub(super) async fn count_admin_request(
    State(state): State<AppState>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let response = next.run(request).await;
    // Routes only: a request no route matched never reaches this layer.
    if let Some(route) = route {
        state
            .metrics
            .http
            .get_or_create(&HttpLabels {
                method,
                route: route.as_str().to_owned(),
                status: response.status().as_u16(),
            })
            .inc();
    }
    response
}
