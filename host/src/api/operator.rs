//! The operator's API: tenants, their caps, and their tokens. Bearer: the operator token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::extract::{Json, Operator, Path, check_name};
use super::{ApiError, AppState};
use crate::auth::{new_token, token_hash};
use crate::store::{Store, Tenant, TenantCaps, TokenInfo};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    name: String,
    #[serde(default)]
    caps: Option<TenantCaps>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantChange {
    #[serde(default)]
    disabled: Option<bool>,
    /// Only the caps named change; the others keep their current values.
    #[serde(default)]
    caps: Option<CapsChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapsChange {
    max_plugin_bytes: Option<u64>,
    max_fuel: Option<u64>,
    max_deadline_ms: Option<u64>,
    max_memory_mb: Option<u64>,
    max_flows: Option<u32>,
}

impl CapsChange {
    fn apply(&self, caps: TenantCaps) -> TenantCaps {
        TenantCaps {
            max_plugin_bytes: self.max_plugin_bytes.unwrap_or(caps.max_plugin_bytes),
            max_fuel: self.max_fuel.unwrap_or(caps.max_fuel),
            max_deadline_ms: self.max_deadline_ms.unwrap_or(caps.max_deadline_ms),
            max_memory_mb: self.max_memory_mb.unwrap_or(caps.max_memory_mb),
            max_flows: self.max_flows.unwrap_or(caps.max_flows),
        }
    }
}

#[derive(Serialize)]
struct Listing<T> {
    items: Vec<T>,
}

#[derive(Serialize)]
struct IssuedToken {
    id: String,
    /// Shown once; only its hash is kept.
    token: String,
}

pub(super) async fn with_store<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.registry.store().clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|_| ApiError::Internal)?
}

fn check_caps(caps: &TenantCaps) -> Result<(), ApiError> {
    let limits = crate::sandbox::Limits {
        fuel: caps.max_fuel,
        deadline_ms: caps.max_deadline_ms,
        memory_mb: caps.max_memory_mb,
    };
    limits
        .validate()
        .map_err(|e| ApiError::Unprocessable(format!("caps: {e}")))?;
    if caps.max_plugin_bytes == 0 || caps.max_flows == 0 {
        return Err(ApiError::Unprocessable(
            "caps: max_plugin_bytes and max_flows must be at least 1".into(),
        ));
    }
    Ok(())
}

pub(super) async fn post_tenant(
    _: Operator,
    State(state): State<AppState>,
    Json(body): Json<NewTenant>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &body.name)?;
    let caps = body.caps.unwrap_or_default();
    check_caps(&caps)?;
    let tenant = with_store(&state, move |s| Ok(s.create_tenant(&body.name, &caps)?)).await?;
    Ok((StatusCode::CREATED, axum::Json(tenant)))
}

pub(super) async fn list_tenants(
    _: Operator,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let items = with_store(&state, |s| Ok(s.list_tenants()?)).await?;
    Ok(axum::Json(Listing::<Tenant> { items }))
}

pub(super) async fn get_tenant(
    _: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &tenant)?;
    Ok(axum::Json(
        with_store(&state, move |s| Ok(s.get_tenant(&tenant)?)).await?,
    ))
}

pub(super) async fn patch_tenant(
    _: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Json(change): Json<TenantChange>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &tenant)?;
    let name = tenant.clone();
    let before = with_store(&state, move |s| Ok(s.get_tenant(&name)?)).await?;
    let caps = change.caps.as_ref().map(|c| c.apply(before.caps));
    if let Some(caps) = &caps {
        check_caps(caps)?;
    }
    let name = tenant.clone();
    let updated = with_store(&state, move |s| {
        Ok(s.update_tenant(&name, change.disabled, caps.as_ref())?)
    })
    .await?;
    if before.disabled != updated.disabled {
        state
            .registry
            .set_tenant_live(&tenant, !updated.disabled)
            .await?;
    }
    Ok(axum::Json(updated))
}

pub(super) async fn post_token(
    _: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &tenant)?;
    let (token, id) = new_token().map_err(|error| {
        tracing::error!(%error, "cannot issue a token");
        ApiError::Internal
    })?;
    let hash = token_hash(&token);
    let issued_id = id.clone();
    with_store(&state, move |s| {
        s.get_tenant(&tenant)?;
        Ok(s.add_token(&tenant, &issued_id, &hash)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(IssuedToken { id, token })))
}

pub(super) async fn list_tokens(
    _: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &tenant)?;
    let items = with_store(&state, move |s| {
        s.get_tenant(&tenant)?;
        Ok(s.list_tokens(&tenant)?)
    })
    .await?;
    Ok(axum::Json(Listing::<TokenInfo> { items }))
}

pub(super) async fn delete_token(
    _: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &tenant)?;
    check_name("token id", &id)?;
    with_store(&state, move |s| Ok(s.revoke_token(&tenant, &id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
