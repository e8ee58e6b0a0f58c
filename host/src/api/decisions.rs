//! A tenant's decision records: filtered and paged, or one call's history. Bearer: one of the
//! tenant's tokens; every query is scoped to the token's tenant.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Path, TenantAuth, check_name};
use super::openapi::{BadRequest, Forbidden, Internal, Unauthorized};
use super::operator::with_records;
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::Name;
use crate::store::{DecisionFilter, DecisionRecord};

/// Records per page unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 50;

/// A page of decision records, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct DecisionList {
    items: Vec<DecisionRecord>,
    /// Present when the page is full: pass it as `cursor` for the next (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_cursor: Option<i64>,
}

/// Filters of `GET /v1/decisions`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DecisionQuery {
    /// Records of this flow.
    #[param(value_type = Option<Name>)]
    flow: Option<String>,
    /// Records of this call (Exotel's `CallSid`).
    call_sid: Option<String>,
    /// Records with this outcome: `decided`, `recorded`, or a failure kind (FailureKind, or
    /// `flow_unavailable`). One word of lowercase letters and `_`, at most 32; anything else is
    /// a 400.
    outcome: Option<String>,
    /// Records at or after this time (milliseconds since the Unix epoch).
    since_ms: Option<i64>,
    /// Records before this time (milliseconds since the Unix epoch).
    until_ms: Option<i64>,
    /// Records per page; 50 when absent, and brought within 1 to 1000.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

/// Read decision records, newest first
///
/// One record per Passthru call of a sync flow, success and failure alike, and one per attempt
/// of an async flow's event, written shortly after the call (records leave the request path
/// through a queue and are written in batches). Filters combine; an unknown query key is a 400.
/// When a page is full, `next_cursor` is the cursor of the next (older) page.
#[utoipa::path(
    get,
    path = "/v1/decisions",
    operation_id = "listDecisions",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(DecisionQuery),
    responses(
        (status = 200, description = "A page of records.", body = DecisionList),
        (status = 400, description = "An unknown query key, a value of the wrong type, or an \
                                      invalid flow name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, description = "As many of the tenant's reads of decision records are \
                                      waiting on this server as may (8): urn:passthru:problem:busy.",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_decisions(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    query: Result<Query<DecisionQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(flow) = &q.flow {
        check_name("flow", flow)?;
    }
    if let Some(outcome) = &q.outcome {
        check_outcome(outcome)?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 1000);
    let filter = DecisionFilter {
        flow: q.flow,
        call_sid: q.call_sid,
        outcome: q.outcome,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before_id: q.cursor,
        limit,
    };
    let items: Vec<DecisionRecord> = with_records(&state, tenant, move |s, tenant| {
        Ok(s.query_decisions(tenant, &filter)?)
    })
    .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|r| r.id))
        .flatten();
    Ok(axum::Json(DecisionList { items, next_cursor }))
}

/// An outcome is a word of lowercase letters and `_` (`decided`, `out_of_fuel`): the store picks
/// the pages that may hold it by the words they list, so anything else is refused before it
/// could match every page and have each one read.
fn check_outcome(outcome: &str) -> Result<(), ApiError> {
    let word = (1..=32).contains(&outcome.len())
        && outcome.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if word {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "outcome must be one word of lowercase letters and _ (at most 32): decided, \
             recorded, or a failure kind such as out_of_fuel"
                .into(),
        ))
    }
}

/// Read every decision record of one call, newest first
///
/// A call that passed through several flows, or through one several times, has several records
/// (at most 1000 are returned). `next_cursor` is never set.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_sid}",
    operation_id = "getCall",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("call_sid" = String, Path, description = "Exotel's CallSid.")),
    responses(
        (status = 200, description = "The call's records.", body = DecisionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No record of that call for this tenant.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "As many of the tenant's reads of decision records are \
                                      waiting on this server as may (8): urn:passthru:problem:busy.",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn get_call(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = DecisionFilter {
        call_sid: Some(call_sid.clone()),
        limit: 1000,
        ..DecisionFilter::default()
    };
    let items = with_records(&state, tenant, move |s, tenant| {
        Ok(s.query_decisions(tenant, &filter)?)
    })
    .await?;
    if items.is_empty() {
        return Err(ApiError::Missing(format!("call {call_sid:?}")));
    }
    Ok(axum::Json(DecisionList {
        items,
        next_cursor: None,
    }))
}
