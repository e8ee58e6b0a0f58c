//! A tenant's API: plugin versions and flows. Bearer: one of the tenant's tokens.
//!
//! Every query is scoped to the token's tenant: another tenant's objects are simply not found
//! (404), so the API never tells whether they exist.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Json, Path, TenantAuth, check_name};
use super::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized, WasmComponent};
use super::operator::with_store as store_task;
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::url_auth::{BASIC_USER, Secret};
use crate::flow::{FlowSettings, Name, UrlAuth, UrlAuthKind};
use crate::registry::RegistryError;
use crate::store::{FlowRecord, SecretInfo, VersionRecord};
/// Plugin versions.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionList {
    items: Vec<VersionRecord>,
}

/// Flows, by name.
#[derive(Serialize, ToSchema)]
pub(super) struct FlowList {
    items: Vec<FlowRecord>,
}

/// An uploaded version, and whether this upload created it.
#[derive(Serialize, ToSchema)]
pub(super) struct Uploaded {
    #[serde(flatten)]
    version: VersionRecord,
    /// False when these exact bytes were uploaded before: the existing version is returned.
    created: bool,
    /// How long validation and compilation took (milliseconds).
    compile_ms: u64,
}

/// Upload a plugin version
///
/// The body is the component's raw bytes (the Content-Type is not checked). The component is
/// validated (a component of one of package `passthru:plugin@0.1.4`'s worlds, exporting
/// `decide`, `decide-lean`, `record` or an Exotel hook's function, importing only what the host
/// provides; components built against earlier 0.1 versions are accepted) and compiled before the
/// answer. A plugin is created by its first
/// upload; versions are numbered 1, 2, ... per plugin. The upload limit is the smaller of the
/// tenant's `max_plugin_bytes` and the server's `max_upload_bytes`: a declared Content-Length
/// above it is refused before the body is read, and an undeclared length is read no further than
/// the limit. A refused upload answers with `Connection: close`.
#[utoipa::path(
    post,
    path = "/v1/plugins/{plugin}/versions",
    operation_id = "uploadVersion",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("plugin" = Name, Path, description = "The tenant's plugin.")),
    request_body(
        content = WasmComponent,
        content_type = "application/wasm",
        description = "The component's bytes.",
    ),
    responses(
        (status = 200, description = "These exact bytes were uploaded to this plugin before: \
                                      the existing version (created is false).",
            body = Uploaded),
        (status = 201, description = "A new version.", body = Uploaded),
        (status = 400, description = "An invalid plugin name, or an empty body.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "The tenant keeps max_versions versions, or these bytes \
                                      would take its versions past max_stored_bytes; delete \
                                      versions no flow uses to make room.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over the upload limit.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid plugin; the detail says why (not \
                                      WebAssembly, a core module, another world, an import the \
                                      host does not provide, does not compile, or does not \
                                      compile within the server's compile_budget_ms or its \
                                      max_compile_memory_mb).",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
        (status = 503, description = "As many uploads as the server lets wait for a compile \
                                      are waiting (urn:passthru:problem:compiles-busy); try \
                                      again after Retry-After.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
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
    // Held until the compile ends: the body is in memory until then.
    let _place = state.registry.reserve_upload()?;
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

/// List every version of every plugin of the tenant
#[utoipa::path(
    get,
    path = "/v1/plugins",
    operation_id = "listVersions",
    tag = "tenant",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "By plugin name, then version.", body = VersionList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_versions(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let items = store_task(&state, move |s| Ok(s.list_versions(&tenant, None)?)).await?;
    Ok(axum::Json(VersionList { items }))
}

/// List the versions of one plugin
#[utoipa::path(
    get,
    path = "/v1/plugins/{plugin}/versions",
    operation_id = "listPluginVersions",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("plugin" = Name, Path, description = "The tenant's plugin.")),
    responses(
        (status = 200, description = "Oldest first.", body = VersionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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
    Ok(axum::Json(VersionList { items }))
}

/// Read one version
#[utoipa::path(
    get,
    path = "/v1/plugins/{plugin}/versions/{version}",
    operation_id = "getVersion",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("plugin" = Name, Path, description = "The tenant's plugin."),
        ("version" = u32, Path, description = "The version's number."),
    ),
    responses(
        (status = 200, description = "The version.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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

/// Delete a version no flow uses
///
/// Frees the version's share of the tenant's `max_versions` and `max_stored_bytes`. A version a
/// flow runs, or would roll back to, is refused with `409` naming the flow. The component's
/// bytes and compiled code are removed from the data directory unless another version has the
/// same content. The number is never given to another version.
#[utoipa::path(
    delete,
    path = "/v1/plugins/{plugin}/versions/{version}",
    operation_id = "deleteVersion",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("plugin" = Name, Path, description = "The tenant's plugin."),
        ("version" = u32, Path, description = "The version's number."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "A flow runs this version or would roll back to it.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn delete_version(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((plugin, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("plugin", &plugin)?;
    let version = parse_version(&version)?;
    state
        .registry
        .delete_version(&tenant, &plugin, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_version(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a version number")))
}

/// A flow as the tenant writes it: the plugin version it runs, and its settings. Unknown fields
/// are refused (400).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FlowBody {
    /// The tenant's plugin.
    #[schema(value_type = Name)]
    plugin: String,
    /// The version to make active; the plugin's latest when absent.
    #[serde(default)]
    version: Option<u32>,
    #[serde(flatten)]
    settings: FlowSettings,
}

/// Checks a flow body as `PUT /v1/flows/{flow}` does before it looks at the store: 400 for a bad
/// plugin name, 422 for settings out of range.
pub(super) fn check_flow_body(body: &FlowBody) -> Result<(), ApiError> {
    check_name("plugin", &body.plugin)?;
    body.settings.validate().map_err(ApiError::Unprocessable)
}

/// Create or replace a flow, and make it live
///
/// The next Passthru request to /passthru/{tenant}/{flow} runs the given version. Replacing a
/// flow with another version of the same plugin keeps the old version as the rollback target;
/// binding another plugin clears it.
#[utoipa::path(
    put,
    path = "/v1/flows/{flow}",
    operation_id = "putFlow",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    request_body = FlowBody,
    responses(
        (status = 200, description = "Replaced.", body = FlowRecord),
        (status = 201, description = "Created.", body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such plugin or version.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A new flow, and the tenant already has max_flows flows.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Limits out of range or above the tenant's caps, equal or \
                                      invalid statuses, a retry policy out of range, a config \
                                      over 64 KiB, or a version that does not export what the \
                                      mode calls.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn put_flow(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<FlowBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    check_flow_body(&body)?;
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
        // Kept from the stored flow by `Registry::put_flow`: a PUT never changes them.
        auth: UrlAuth::default(),
        secrets: Vec::new(),
        canary: None,
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

/// Read a flow
#[utoipa::path(
    get,
    path = "/v1/flows/{flow}",
    operation_id = "getFlow",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    responses(
        (status = 200, description = "The flow.", body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
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

/// List the tenant's flows, by name
#[utoipa::path(
    get,
    path = "/v1/flows",
    operation_id = "listFlows",
    tag = "tenant",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Every flow of the tenant, those imported from the config \
                                      file included.",
            body = FlowList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_flows(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let items = store_task(&state, move |s| Ok(s.list_flows(&tenant)?)).await?;
    Ok(axum::Json(FlowList { items }))
}

/// Delete a flow
///
/// It stops answering at once (404); calls in flight finish. Its plugin versions and decision
/// records are kept.
#[utoipa::path(
    delete,
    path = "/v1/flows/{flow}",
    operation_id = "deleteFlow",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn delete_flow(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    state.registry.delete_flow(&tenant, &flow).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The version to activate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Activate {
    /// A version of the flow's plugin.
    version: u32,
}

/// Make another version of the flow's plugin active
///
/// Swaps what Passthru requests run atomically: calls in flight finish on the version they
/// started with. The version active until now becomes the rollback target. Activating the active
/// version changes nothing.
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/activate",
    operation_id = "activateVersion",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    request_body = Activate,
    responses(
        (status = 200, description = "The flow as it is now.", body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such flow, or no such version of its plugin.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The version does not export what the flow's mode calls.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
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

/// Return the flow to its previous version
///
/// No request body. The previous version and the active one trade places, so a second rollback
/// undoes the first.
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/rollback",
    operation_id = "rollbackFlow",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    responses(
        (status = 200, description = "The flow as it is now.", body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The flow has no previous version.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
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

/// How the flow's Passthru URL is to be authenticated.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthBody {
    /// `none`, `key` (a secret as the URL's last path segment) or `basic` (HTTP Basic
    /// credentials in the URL).
    kind: UrlAuthKind,
}

/// A flow's new URL authentication, with its secret: shown this once, never again.
#[derive(Serialize, ToSchema)]
pub(super) struct AuthIssued {
    kind: UrlAuthKind,
    /// Milliseconds since the Unix epoch.
    set_at_ms: i64,
    /// The flow's Passthru path, with the key for `key` flows.
    #[schema(examples("/passthru/acme/ivr/3q2-7wVuXz2k1s0bD4gQ8Zr9LhN5fYcJ6aTmEoPiKUw"))]
    path: String,
    /// What to paste into Exotel's Passthru applet: the server's `public_url`, the
    /// credentials for `basic` flows, and the path. Null when the server has no `public_url`:
    /// put `path` after the address Exotel reaches the server at.
    #[schema(examples(
        "https://exotel:3q2-7wVuXz2k1s0bD4gQ8Zr9LhN5fYcJ6aTmEoPiKUw@passthru.example.com/passthru/acme/ivr"
    ))]
    url: Option<String>,
    /// The key (`key`) or the password (`basic`); null for `none`.
    secret: Option<String>,
    /// The user of `basic` flows (always `exotel`); null otherwise.
    username: Option<String>,
}

/// Set how the flow's Passthru URL is authenticated, with a new secret
///
/// `key`: the URL gains the secret as its last path segment. `basic`: the URL carries HTTP
/// Basic credentials (`https://exotel:SECRET@host/...`, which Exotel sends as an
/// Authorization header). `none`: the plain URL, as before. Each call generates a new secret
/// (256 bits, URL-safe) and the old one stops working at once: calling it again with the same
/// kind rotates the secret. The secret is in this answer only; the server keeps its SHA-256. A
/// request with a missing or wrong secret is answered exactly like an unknown flow (404).
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/auth",
    operation_id = "setFlowAuth",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    request_body = AuthBody,
    responses(
        (status = 200, description = "Set; the secret and the URL to paste into Exotel. Sent \
                                      with Cache-Control: no-store.",
            body = AuthIssued),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn post_auth(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<AuthBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let (record, secret) = state.registry.set_auth(&tenant, &flow, body.kind).await?;
    let issued = issued(state.public_url.as_deref(), &record, secret);
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(issued)))
}

/// A secret's value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretBody {
    /// 4 bytes to 8 KiB.
    #[schema(min_length = 4, max_length = 8192)]
    value: String,
}

/// Set a secret of the flow
///
/// The plugin reads it through `config(key)` like any config value, from the flow's next call.
/// Its value is sealed at rest with the server's secrets key and never returned by any API: the
/// flow lists its secrets' keys only. Wherever the plugin writes the value into its log or an
/// error, the host writes `[secret]` instead. A key is either in the flow's `config` or a secret,
/// not both; replacing the flow (`PUT`) keeps its secrets, deleting it deletes them.
#[utoipa::path(
    put,
    path = "/v1/flows/{flow}/secrets/{key}",
    operation_id = "putFlowSecret",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("flow" = Name, Path, description = "The tenant's flow."),
        ("key" = String, Path, description = "The config key the plugin reads it as (1 to 128 \
                                              bytes)."),
    ),
    request_body = SecretBody,
    responses(
        (status = 200, description = "Set: its key and when, never its value.", body = SecretInfo),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The flow has 32 secrets already.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The server has no secrets key, the key is one of the \
                                      flow's config keys, or the key or value is out of range.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn put_secret(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((flow, key)): Path<(String, String)>,
    Json(body): Json<SecretBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let info = state
        .registry
        .set_secret(&tenant, &flow, &key, &body.value)
        .await?;
    Ok(axum::Json(info))
}

/// Delete a secret of the flow
#[utoipa::path(
    delete,
    path = "/v1/flows/{flow}/secrets/{key}",
    operation_id = "deleteFlowSecret",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("flow" = Name, Path, description = "The tenant's flow."),
        ("key" = String, Path, description = "The secret's key."),
    ),
    responses(
        (status = 204, description = "Deleted: the flow's next call no longer sees it."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn delete_secret(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((flow, key)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    state.registry.delete_secret(&tenant, &flow, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to `POST /v1/flows/{flow}/auth`: the path and, with a `public_url`, the URL.
fn issued(public_url: Option<&str>, record: &FlowRecord, secret: Option<Secret>) -> AuthIssued {
    let base = format!("/passthru/{}/{}", record.tenant, record.name);
    let (path, username, secret) = match secret {
        Some(Secret::Key(key)) => (format!("{base}/{key}"), None, Some(key)),
        Some(Secret::Basic(password)) => (base, Some(BASIC_USER.to_owned()), Some(password)),
        None => (base, None, None),
    };
    let url = public_url.map(|public| {
        let with_credentials = match (&username, &secret) {
            (Some(user), Some(password)) => match public.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{user}:{password}@{rest}"),
                None => public.to_owned(),
            },
            _ => public.to_owned(),
        };
        format!("{with_credentials}{path}")
    });
    AuthIssued {
        kind: record.auth.kind,
        set_at_ms: record.auth.set_at_ms.unwrap_or(record.updated_at_ms),
        path,
        url,
        secret,
        username,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: UrlAuthKind) -> FlowRecord {
        FlowRecord {
            tenant: "acme".into(),
            name: "ivr".into(),
            plugin: "menu".into(),
            version: 1,
            previous_version: None,
            settings: FlowSettings::default(),
            auth: UrlAuth {
                kind,
                set_at_ms: Some(5),
                digest: None,
            },
            secrets: Vec::new(),
            canary: None,
            updated_at_ms: 5,
        }
    }

    #[test]
    fn the_issued_url_puts_the_key_last_and_basic_credentials_before_the_host() {
        let public = Some("https://passthru.example.com/x");
        let key = issued(
            public,
            &record(UrlAuthKind::Key),
            Some(Secret::Key("K".into())),
        );
        assert_eq!(key.path, "/passthru/acme/ivr/K");
        assert_eq!(
            key.url.as_deref(),
            Some("https://passthru.example.com/x/passthru/acme/ivr/K")
        );
        let basic = issued(
            public,
            &record(UrlAuthKind::Basic),
            Some(Secret::Basic("P".into())),
        );
        assert_eq!(basic.path, "/passthru/acme/ivr");
        assert_eq!(
            basic.url.as_deref(),
            Some("https://exotel:P@passthru.example.com/x/passthru/acme/ivr")
        );
        let none = issued(None, &record(UrlAuthKind::None), None);
        assert_eq!((none.path.as_str(), none.url), ("/passthru/acme/ivr", None));
    }
}
