//! A tenant's API: plugin versions, flows, decision records. Bearer: one of the tenant's tokens.
//!
//! Every query is scoped to the token's tenant: another tenant's objects are simply not found
//! (404), so the API never tells whether they exist.

use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::extract::{Json, Path, TenantAuth, check_name};
use super::operator::with_store as store_task;
use super::{ApiError, AppState};
use crate::flow::FlowSettings;
use crate::registry::RegistryError;
use crate::store::{DecisionFilter, DecisionRecord, FlowRecord, VersionRecord};
/// Records per page unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 50;

#[derive(Serialize)]
struct Listing<T> {
    items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<i64>,
}

#[derive(Serialize)]
struct Uploaded {
    #[serde(flatten)]
    version: VersionRecord,
    /// False when these exact bytes were uploaded before: the existing version is returned.
    created: bool,
    compile_ms: u64,
}

pub(super) async fn post_version(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(plugin): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    check_name("plugin", &plugin)?;
    let name = tenant.clone();
    let caps = store_task(&state, move |s| Ok(s.get_tenant(&name)?.caps)).await?;
    let limit = caps.max_plugin_bytes.min(state.max_upload_bytes);
    let too_large = |size: String| {
        ApiError::TooLarge(format!(
            "the plugin is {size} bytes; this tenant may upload at most {limit}"
        ))
    };
    // Refuse by the declared length before reading anything.
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit
    {
        return Err(too_large(length.to_string()));
    }
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large(format!("more than {limit}")))?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty: send the component's bytes".into(),
        ));
    }
    let registry = state.registry.clone();
    let started = Instant::now();
    let (version, created) =
        tokio::task::spawn_blocking(move || registry.upload(&tenant, &plugin, &bytes))
            .await
            .map_err(|_| ApiError::Internal)??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(Uploaded {
            version,
            created,
            compile_ms: started.elapsed().as_millis() as u64,
        }),
    ))
}

pub(super) async fn list_versions(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let items = store_task(&state, move |s| Ok(s.list_versions(&tenant, None)?)).await?;
    Ok(axum::Json(Listing {
        items,
        next_cursor: None,
    }))
}

pub(super) async fn list_plugin_versions(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(plugin): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("plugin", &plugin)?;
    let items = store_task(&state, move |s| {
        let items = s.list_versions(&tenant, Some(&plugin))?;
        if items.is_empty() {
            return Err(ApiError::Missing(format!("plugin {plugin:?}")));
        }
        Ok(items)
    })
    .await?;
    Ok(axum::Json(Listing {
        items,
        next_cursor: None,
    }))
}

pub(super) async fn get_version(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((plugin, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("plugin", &plugin)?;
    let version = parse_version(&version)?;
    Ok(axum::Json(
        store_task(&state, move |s| {
            Ok(s.get_version(&tenant, &plugin, version)?)
        })
        .await?,
    ))
}

fn parse_version(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a version number")))
}

/// A flow as the tenant writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlowBody {
    plugin: String,
    /// The version to make active; the plugin's latest when absent.
    #[serde(default)]
    version: Option<u32>,
    #[serde(flatten)]
    settings: FlowSettings,
}

pub(super) async fn put_flow(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<FlowBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    check_name("plugin", &body.plugin)?;
    body.settings.validate().map_err(ApiError::Unprocessable)?;
    let (t, p) = (tenant.clone(), body.plugin.clone());
    let version = match body.version {
        Some(v) => v,
        None => {
            store_task(&state, move |s| {
                s.list_versions(&t, Some(&p))?
                    .last()
                    .map(|v| v.version)
                    .ok_or_else(|| ApiError::Missing(format!("plugin {p:?}")))
            })
            .await?
        }
    };
    let record = FlowRecord {
        tenant: tenant.clone(),
        name: flow.clone(),
        plugin: body.plugin,
        version,
        previous_version: None,
        settings: body.settings,
        updated_at_ms: 0,
    };
    let created = state.registry.put_flow(record).await?;
    let stored = store_task(&state, move |s| Ok(s.get_flow(&tenant, &flow)?)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(stored)))
}

pub(super) async fn get_flow(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    Ok(axum::Json(
        store_task(&state, move |s| Ok(s.get_flow(&tenant, &flow)?)).await?,
    ))
}

pub(super) async fn list_flows(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let items = store_task(&state, move |s| Ok(s.list_flows(&tenant)?)).await?;
    Ok(axum::Json(Listing {
        items,
        next_cursor: None,
    }))
}

pub(super) async fn delete_flow(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    state.registry.delete_flow(&tenant, &flow).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Activate {
    version: u32,
}

pub(super) async fn post_activate(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<Activate>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let record = state
        .registry
        .activate(&tenant, &flow, body.version)
        .await?;
    Ok(axum::Json(record))
}

pub(super) async fn post_rollback(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let record = state
        .registry
        .rollback(&tenant, &flow)
        .await
        .map_err(|e| match e {
            RegistryError::Conflict(detail) => ApiError::Conflict(detail),
            other => other.into(),
        })?;
    Ok(axum::Json(record))
}

/// Filters of `GET /v1/decisions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionQuery {
    flow: Option<String>,
    call_sid: Option<String>,
    outcome: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

pub(super) async fn list_decisions(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    query: Result<Query<DecisionQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(flow) = &q.flow {
        check_name("flow", flow)?;
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
    let items: Vec<DecisionRecord> =
        store_task(&state, move |s| Ok(s.query_decisions(&tenant, &filter)?)).await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|r| r.id))
        .flatten();
    Ok(axum::Json(Listing { items, next_cursor }))
}

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
    let items = store_task(&state, move |s| Ok(s.query_decisions(&tenant, &filter)?)).await?;
    if items.is_empty() {
        return Err(ApiError::Missing(format!("call {call_sid:?}")));
    }
    Ok(axum::Json(Listing {
        items,
        next_cursor: None,
    }))
}
