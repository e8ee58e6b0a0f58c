//! The operator's API: tenants, their caps, and their tokens. Bearer: the operator token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Json, Operator, Path, check_name};
use super::openapi::{BadRequest, Internal, NotFound, Unauthorized};
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::auth::{new_token, token_hash};
use crate::flow::Name;
use crate::store::{Store, Tenant, TenantCaps, TokenInfo};

/// A tenant to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    #[schema(value_type = Name)]
    name: String,
    /// The defaults when absent.
    #[serde(default)]
    caps: Option<TenantCaps>,
}

/// What to change in a tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantChange {
    /// Unchanged when absent.
    #[serde(default)]
    disabled: Option<bool>,
    /// Unchanged when absent; when given, only the caps named change (null for one of them also
    /// leaves it as it is).
    #[serde(default)]
    caps: Option<CapsChange>,
}

/// Caps to change: an absent (or null) cap keeps its current value. The ranges are those of
/// TenantCaps.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CapsChange {
    #[schema(minimum = 1)]
    max_plugin_bytes: Option<u64>,
    #[schema(minimum = 1)]
    max_fuel: Option<u64>,
    #[schema(minimum = 1, maximum = 10000)]
    max_deadline_ms: Option<u64>,
    #[schema(minimum = 1, maximum = 1024)]
    max_memory_mb: Option<u64>,
    #[schema(minimum = 1)]
    max_flows: Option<u32>,
    #[schema(minimum = 1)]
    max_versions: Option<u32>,
    #[schema(minimum = 1)]
    max_stored_bytes: Option<u64>,
    max_concurrent_calls: Option<u32>,
    #[schema(minimum = 1, maximum = 2048)]
    max_kv_key_bytes: Option<u32>,
    #[schema(minimum = 1, maximum = 196608)]
    max_kv_value_bytes: Option<u32>,
    #[schema(minimum = 1)]
    max_kv_keys: Option<u64>,
    #[schema(minimum = 1)]
    max_kv_bytes: Option<u64>,
}

impl CapsChange {
    fn apply(&self, caps: TenantCaps) -> TenantCaps {
        TenantCaps {
            max_plugin_bytes: self.max_plugin_bytes.unwrap_or(caps.max_plugin_bytes),
            max_fuel: self.max_fuel.unwrap_or(caps.max_fuel),
            max_deadline_ms: self.max_deadline_ms.unwrap_or(caps.max_deadline_ms),
            max_memory_mb: self.max_memory_mb.unwrap_or(caps.max_memory_mb),
            max_flows: self.max_flows.unwrap_or(caps.max_flows),
            max_versions: self.max_versions.unwrap_or(caps.max_versions),
            max_stored_bytes: self.max_stored_bytes.unwrap_or(caps.max_stored_bytes),
            max_concurrent_calls: self
                .max_concurrent_calls
                .unwrap_or(caps.max_concurrent_calls),
            max_kv_key_bytes: self.max_kv_key_bytes.unwrap_or(caps.max_kv_key_bytes),
            max_kv_value_bytes: self.max_kv_value_bytes.unwrap_or(caps.max_kv_value_bytes),
            max_kv_keys: self.max_kv_keys.unwrap_or(caps.max_kv_keys),
            max_kv_bytes: self.max_kv_bytes.unwrap_or(caps.max_kv_bytes),
        }
    }
}

/// Every tenant, by name.
#[derive(Serialize, ToSchema)]
pub(super) struct TenantList {
    items: Vec<Tenant>,
}

/// A tenant's tokens, oldest first, revoked ones included.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenList {
    items: Vec<TokenInfo>,
}

/// A token, as issued.
#[derive(Serialize, ToSchema)]
pub(super) struct IssuedToken {
    /// What the token is listed and revoked under.
    id: String,
    /// The bearer token (`pt_` and 64 hex digits). Shown once; only its hash is kept.
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

/// Runs `work`, a read of `tenant`'s decision records, on the store when its turn comes (see
/// [`super::turns`]): the turn is held until `work` is done, even if the request gives up first.
/// Refused as [`ApiError::Busy`] when as many of the tenant's reads are waiting as may.
pub(super) async fn with_records<T: Send + 'static>(
    state: &AppState,
    tenant: String,
    work: impl FnOnce(&dyn Store, &str) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let turn = state
        .record_reads
        .wait(&tenant)
        .await
        .map_err(|e| ApiError::Busy(e.to_string()))?;
    with_store(state, move |store| {
        let _turn = turn;
        work(store, &tenant)
    })
    .await
}

/// The longest key-value key an operator may allow (what PostgreSQL's index takes, see
/// [`crate::kv::MAX_KEY_BYTES`]), and [`MAX_KV_VALUE_BYTES`] the largest value: a plugin's `set`
/// hands the host its store name, key and value in one call, and one host call lifts at most
/// 256 KiB (`sandbox::meter::MAX_HOSTCALL_BYTES`).
const MAX_KV_KEY_BYTES: u32 = crate::kv::MAX_KEY_BYTES as u32;
const MAX_KV_VALUE_BYTES: u32 = 192 * 1024;

fn check_caps(caps: &TenantCaps) -> Result<(), ApiError> {
    let limits = crate::sandbox::Limits {
        fuel: caps.max_fuel,
        deadline_ms: caps.max_deadline_ms,
        memory_mb: caps.max_memory_mb,
    };
    limits
        .validate()
        .map_err(|e| ApiError::Unprocessable(format!("caps: {e}")))?;
    if caps.max_plugin_bytes == 0
        || caps.max_flows == 0
        || caps.max_versions == 0
        || caps.max_stored_bytes == 0
    {
        return Err(ApiError::Unprocessable(
            "caps: max_plugin_bytes, max_flows, max_versions and max_stored_bytes must be at \
             least 1"
                .into(),
        ));
    }
    if !(1..=MAX_KV_KEY_BYTES).contains(&caps.max_kv_key_bytes)
        || !(1..=MAX_KV_VALUE_BYTES).contains(&caps.max_kv_value_bytes)
        || caps.max_kv_keys == 0
        || caps.max_kv_bytes == 0
    {
        return Err(ApiError::Unprocessable(format!(
            "caps: max_kv_key_bytes must be 1 to {MAX_KV_KEY_BYTES}, max_kv_value_bytes 1 to \
             {MAX_KV_VALUE_BYTES}, and max_kv_keys and max_kv_bytes at least 1"
        )));
    }
    Ok(())
}

/// A new tenant's name and caps (the defaults for those absent), checked: 400 for a bad name,
/// 422 for a cap out of range. Pure, so the fuzz target checks bodies as the handler does.
pub(super) fn checked_new_tenant(body: NewTenant) -> Result<(String, TenantCaps), ApiError> {
    check_name("tenant", &body.name)?;
    let caps = body.caps.unwrap_or_default();
    check_caps(&caps)?;
    Ok((body.name, caps))
}

/// The caps a change makes of `before`, checked (422 for one out of range); `None` when the
/// change names no caps.
pub(super) fn checked_caps_change(
    change: &TenantChange,
    before: TenantCaps,
) -> Result<Option<TenantCaps>, ApiError> {
    let caps = change.caps.as_ref().map(|c| c.apply(before));
    if let Some(caps) = &caps {
        check_caps(caps)?;
    }
    Ok(caps)
}

/// Create a tenant
#[utoipa::path(
    post,
    path = "/v1/tenants",
    operation_id = "createTenant",
    tag = "operator",
    security(("operatorToken" = [])),
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created.", body = Tenant),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, description = "A tenant of that name exists.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cap is out of range.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn post_tenant(
    _: Operator,
    State(state): State<AppState>,
    Json(body): Json<NewTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, caps) = checked_new_tenant(body)?;
    let tenant = with_store(&state, move |s| Ok(s.create_tenant(&name, &caps)?)).await?;
    state.registry.kv().set_caps(&tenant.name, tenant.caps.kv());
    Ok((StatusCode::CREATED, axum::Json(tenant)))
}

/// List tenants, by name
#[utoipa::path(
    get,
    path = "/v1/tenants",
    operation_id = "listTenants",
    tag = "operator",
    security(("operatorToken" = [])),
    responses(
        (status = 200, description = "Every tenant.", body = TenantList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_tenants(
    _: Operator,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let items = with_store(&state, |s| Ok(s.list_tenants()?)).await?;
    Ok(axum::Json(TenantList { items }))
}

/// Read a tenant
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}",
    operation_id = "getTenant",
    tag = "operator",
    security(("operatorToken" = [])),
    params(("tenant" = Name, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The tenant.", body = Tenant),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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

/// Disable or enable a tenant, or set its caps
///
/// Disabling takes the tenant's flows off the live table at once (Passthru requests to them
/// answer 404) and its tokens answer 403; enabling puts them back. Caps, when given, change only
/// the caps named; the others keep their current values. New caps apply to later uploads and flow
/// changes; flows already bound keep their limits. `max_concurrent_calls` applies at once.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{tenant}",
    operation_id = "updateTenant",
    tag = "operator",
    security(("operatorToken" = [])),
    params(("tenant" = Name, Path, description = "The tenant.")),
    request_body = TenantChange,
    responses(
        (status = 200, description = "The tenant as it is now.", body = Tenant),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cap is out of range.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn patch_tenant(
    _: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Json(change): Json<TenantChange>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("tenant", &tenant)?;
    let name = tenant.clone();
    let before = with_store(&state, move |s| Ok(s.get_tenant(&name)?)).await?;
    let caps = checked_caps_change(&change, before.caps)?;
    let name = tenant.clone();
    let updated = with_store(&state, move |s| {
        Ok(s.update_tenant(&name, change.disabled, caps.as_ref())?)
    })
    .await?;
    state
        .registry
        .set_share_cap(&tenant, updated.caps.max_concurrent_calls);
    state.registry.kv().set_caps(&tenant, updated.caps.kv());
    if before.disabled != updated.disabled {
        state
            .registry
            .set_tenant_live(&tenant, !updated.disabled)
            .await?;
    }
    Ok(axum::Json(updated))
}

/// Issue a token to a tenant
///
/// No request body. The token is in this answer only: the server keeps its SHA-256.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/tokens",
    operation_id = "issueToken",
    tag = "operator",
    security(("operatorToken" = [])),
    params(("tenant" = Name, Path, description = "The tenant.")),
    responses(
        (status = 201, description = "Issued.", body = IssuedToken),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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

/// List a tenant's tokens (ids, never the tokens)
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/tokens",
    operation_id = "listTokens",
    tag = "operator",
    security(("operatorToken" = [])),
    params(("tenant" = Name, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The tenant's tokens, oldest first, revoked ones included.",
            body = TokenList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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
    Ok(axum::Json(TokenList { items }))
}

/// Revoke a token
///
/// The token stops working at once. Revoking a revoked token again is not an error.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/tokens/{id}",
    operation_id = "revokeToken",
    tag = "operator",
    security(("operatorToken" = [])),
    params(
        ("tenant" = Name, Path, description = "The tenant."),
        ("id" = Name, Path, description = "The token's id, from the token list or the issuing answer."),
    ),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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
