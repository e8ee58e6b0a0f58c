//! A tenant's view of its async flows' queue: depth and age, and the dead letters (list,
//! inspect, replay, delete). Bearer: one of the tenant's tokens; everything is scoped to it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::extract::{Path, TenantAuth, check_name};
use super::operator::with_store;
use super::{ApiError, AppState};
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

/// Checks the flow name of a dead letter's path and reads its id.
fn dead_letter_id(flow: &str, id: &str) -> Result<u64, ApiError> {
    check_name("flow", flow)?;
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not an event id")))
}

pub(super) async fn get_queue(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let (t, f) = (tenant.clone(), flow.clone());
    let exists = with_store(&state, move |s| match s.get_flow(&t, &f) {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    })
    .await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<u64>,
}

#[derive(Serialize)]
struct Listing {
    items: Vec<DeadLetter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<u64>,
}

pub(super) async fn list_dead_letters(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let Query(page) = page.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 1000);
    let items = with_queue(&state, move |q| {
        Ok(q.store().dead_letters(&tenant, &flow, page.cursor, limit)?)
    })
    .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    Ok(axum::Json(Listing { items, next_cursor }))
}

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
