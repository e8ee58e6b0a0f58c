//! A tenant's view of its async flows' queue: depth and age, and the dead letters (list,
//! inspect, replay, delete). Bearer: one of the tenant's tokens; everything is scoped to it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Path, TenantAuth, check_name};
use super::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use super::operator::with_store;
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::Name;
use crate::queue::{DeadLetter, FlowQueue, Queue, ReplayError};
use crate::store::{StoreError, now_ms};

/// Dead letters per page unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 50;

async fn with_queue<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Queue) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let queue = state.queue.clone();
    tokio::task::spawn_blocking(move || work(&queue))
        .await
        .map_err(|_| ApiError::Internal)?
}

/// Whether the tenant has the flow (in the store, whatever its mode).
async fn flow_exists(state: &AppState, tenant: &str, flow: &str) -> Result<bool, ApiError> {
    let (t, f) = (tenant.to_owned(), flow.to_owned());
    with_store(state, move |s| match s.get_flow(&t, &f) {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    })
    .await
}

/// Checks the flow name of a dead letter's path and reads its id.
fn dead_letter_id(flow: &str, id: &str) -> Result<u64, ApiError> {
    check_name("flow", flow)?;
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not an event id")))
}

/// An async flow's queue: depth and age
///
/// Events waiting, retrying and running (from memory), and dead letters (from the store). A
/// deleted flow's leftovers stay visible until dealt with.
#[utoipa::path(
    get,
    path = "/v1/flows/{flow}/queue",
    operation_id = "getFlowQueue",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    responses(
        (status = 200, description = "The flow's queue.", body = FlowQueue),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn get_queue(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let exists = flow_exists(&state, &tenant, &flow).await?;
    let (t, f) = (tenant, flow.clone());
    let (depth, dead) = with_queue(&state, move |q| Ok(q.flow_depth(&t, &f)?)).await?;
    let holds = depth.ready + depth.retrying + depth.in_flight + dead > 0;
    // A deleted flow's leftovers (dead letters, say) stay visible until dealt with.
    if !exists && !holds {
        return Err(ApiError::Missing(format!("flow {flow:?}")));
    }
    let now = now_ms();
    Ok(axum::Json(FlowQueue {
        flow,
        ready: depth.ready,
        retrying: depth.retrying,
        in_flight: depth.in_flight,
        dead,
        oldest_accepted_at_ms: depth.oldest_accepted_at_ms,
        oldest_age_ms: depth.oldest_accepted_at_ms.map(|at| (now - at).max(0)),
    }))
}

/// A page of dead letters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Page {
    /// Dead letters per page; 50 when absent, and brought within 1 to 1000.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<u64>,
}

/// A page of dead letters, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct DeadLetterList {
    items: Vec<DeadLetter>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_cursor: Option<u64>,
}

/// List an async flow's dead letters, newest first
///
/// A deleted flow's leftovers stay visible until dealt with; a flow the tenant does not have and
/// of which the queue holds nothing is not found, as for its queue.
#[utoipa::path(
    get,
    path = "/v1/flows/{flow}/dead-letters",
    operation_id = "listDeadLetters",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow."), Page),
    responses(
        (status = 200, description = "A page of dead letters.", body = DeadLetterList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_dead_letters(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let Query(page) = page.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 1000);
    let (t, f) = (tenant.clone(), flow.clone());
    let items = with_queue(&state, move |q| {
        Ok(q.store().dead_letters(&t, &f, page.cursor, limit)?)
    })
    .await?;
    // An empty page of a flow the tenant does not have: found only if the queue still holds
    // something of it (the rule of `get_queue`).
    if items.is_empty() && !flow_exists(&state, &tenant, &flow).await? {
        let f = flow.clone();
        let (depth, dead) = with_queue(&state, move |q| Ok(q.flow_depth(&tenant, &f)?)).await?;
        if depth.ready + depth.retrying + depth.in_flight + dead == 0 {
            return Err(ApiError::Missing(format!("flow {flow:?}")));
        }
    }
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    Ok(axum::Json(DeadLetterList { items, next_cursor }))
}

/// Inspect a dead letter: the request, its attempts, the last error and log
#[utoipa::path(
    get,
    path = "/v1/flows/{flow}/dead-letters/{id}",
    operation_id = "getDeadLetter",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow."), ("id" = u64, Path, minimum = 1, description = "The event's id (x-passthru-event).")),
    responses(
        (status = 200, description = "The dead letter.", body = DeadLetter),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn get_dead_letter(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((flow, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = dead_letter_id(&flow, &id)?;
    Ok(axum::Json(
        with_queue(&state, move |q| {
            Ok(q.store().dead_letter(&tenant, &flow, id)?)
        })
        .await?,
    ))
}

/// Delete a dead letter for good
#[utoipa::path(
    delete,
    path = "/v1/flows/{flow}/dead-letters/{id}",
    operation_id = "deleteDeadLetter",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow."), ("id" = u64, Path, minimum = 1, description = "The event's id (x-passthru-event).")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn delete_dead_letter(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((flow, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = dead_letter_id(&flow, &id)?;
    with_queue(&state, move |q| {
        Ok(q.store().delete_dead(&tenant, &flow, id)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Put a dead letter back in the queue
///
/// No request body. The event keeps its id and runs again from attempt 1, with the flow's
/// current version, config and retry policy.
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/dead-letters/{id}/replay",
    operation_id = "replayDeadLetter",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow."), ("id" = u64, Path, minimum = 1, description = "The event's id (x-passthru-event).")),
    responses(
        (status = 202, description = "Queued again."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, description = "The queue is at its bound; try later.",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn post_replay(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((flow, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = dead_letter_id(&flow, &id)?;
    with_queue(&state, move |q| {
        q.replay(&tenant, &flow, id).map_err(|e| match e {
            ReplayError::Full => ApiError::QueueFull(format!(
                "dead letter {id} cannot be replayed now: the queue is at its bound"
            )),
            ReplayError::Store(e) => e.into(),
        })
    })
    .await?;
    Ok(StatusCode::ACCEPTED)
}
