//! A tenant's key-value data: its stores, one key at a time, listing by prefix, and bulk import.
//! Bearer: one of the tenant's tokens; every store named is the token's tenant's, so no path
//! reaches another tenant's keys.
//!
//! Reads come from memory, as a plugin's do. A write answers once it is committed to the
//! database (the writer's next batch, about 10 ms), and plugins see it at once.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Json, Path, TenantAuth, check_name};
use super::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::Name;
use crate::kv::import::{self, ImportError, ImportFormat};
use crate::kv::{Bucket, Entry, IMPORTS_AT_ONCE, KvError, Page, expiry};
use crate::store::now_ms;

/// The largest import body, in bytes.
pub const MAX_IMPORT_BYTES: usize = 64 << 20;
/// Keys per page unless `limit` says otherwise, and the most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

impl From<KvError> for ApiError {
    fn from(error: KvError) -> Self {
        match error {
            KvError::NoSuchStore(m) => ApiError::Missing(m),
            KvError::Invalid(m) | KvError::OverCap(m) => ApiError::Unprocessable(m),
            KvError::Unavailable(m) => ApiError::KvUnavailable(m),
        }
    }
}

/// One of the tenant's stores.
#[derive(Serialize, ToSchema)]
pub(super) struct StoreInfo {
    #[schema(value_type = Name)]
    name: String,
    /// Keys held (expired keys not yet swept included).
    keys: u64,
    /// Bytes of keys and values held.
    bytes: u64,
}

/// The tenant's stores that hold keys, and what all of them hold against the caps.
#[derive(Serialize, ToSchema)]
pub(super) struct StoreList {
    items: Vec<StoreInfo>,
    /// Keys in all the tenant's stores, against `max_kv_keys`.
    keys: u64,
    /// Bytes in all the tenant's stores, against `max_kv_bytes`.
    bytes: u64,
    max_kv_keys: u64,
    max_kv_bytes: u64,
}

/// A key and its value.
#[derive(Serialize, ToSchema)]
pub(super) struct KeyValue {
    key: String,
    value: String,
    /// When the key expires (milliseconds since the Unix epoch); absent when it never does.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    expires_at_ms: Option<i64>,
}

impl KeyValue {
    fn new(key: String, entry: Entry) -> Self {
        Self {
            key,
            value: entry.value,
            expires_at_ms: entry.expires_at_ms,
        }
    }
}

/// A page of keys, in order.
#[derive(Serialize, ToSchema)]
pub(super) struct KeyList {
    items: Vec<KeyValue>,
    /// Present when more keys follow: pass it as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_after: Option<String>,
}

/// Filters of `GET /v1/kv/{store}/keys`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct KeyQuery {
    /// Keys starting with this.
    prefix: Option<String>,
    /// Keys after this one: `next_after` of the previous page.
    after: Option<String>,
    /// Keys per page; 100 when absent, and brought within 1 to 1000.
    limit: Option<u32>,
}

/// A key's new value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutValue {
    value: String,
    /// Milliseconds from now until the key expires (1 to ten years); absent: never.
    #[schema(minimum = 1, maximum = 315360000000_u64)]
    #[serde(default)]
    ttl_ms: Option<u64>,
}

/// Checks a new value's time to live (422 out of range). The key and value are checked against
/// the tenant's caps by the store.
///
/// # Errors
/// A time to live of 0 or past ten years.
pub(super) fn check_put_value(body: &PutValue) -> Result<(), ApiError> {
    expiry(0, body.ttl_ms).map(drop).map_err(ApiError::from)
}

/// What an import did.
#[derive(Serialize, ToSchema)]
pub(super) struct Imported {
    /// Keys set: a key given twice counts once (its last value is kept).
    imported: usize,
}

/// The tenant's store `store`, its name checked, if it exists.
fn existing(state: &AppState, tenant: &str, store: &str) -> Result<Option<Arc<Bucket>>, ApiError> {
    check_name("store", store)?;
    Ok(state.registry.kv().existing(tenant, store))
}

fn missing_key(store: &str, key: &str) -> ApiError {
    ApiError::Missing(format!("key {key:?} of store {store:?}"))
}

/// Waits until the writes queued so far are on disk.
async fn committed(bucket: &Bucket) -> Result<(), ApiError> {
    bucket.barrier().wait().await.map_err(|error| {
        tracing::error!(%error, "a key-value write did not reach the database");
        ApiError::Internal
    })
}

/// List the tenant's key-value stores
#[utoipa::path(
    get,
    path = "/v1/kv",
    operation_id = "listStores",
    tag = "tenant",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "The stores that hold keys, by name.", body = StoreList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_stores(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let kv = state.registry.kv();
    let owner = kv.tenant(&tenant);
    let (keys, bytes) = owner.usage();
    let caps = owner.caps();
    let items = kv
        .stores(&tenant)
        .iter()
        .map(|bucket| {
            let (keys, bytes) = bucket.usage();
            StoreInfo {
                name: bucket.name().to_owned(),
                keys,
                bytes,
            }
        })
        .collect();
    Ok(axum::Json(StoreList {
        items,
        keys,
        bytes,
        max_kv_keys: caps.max_keys,
        max_kv_bytes: caps.max_bytes,
    }))
}

/// List keys, by prefix
#[utoipa::path(
    get,
    path = "/v1/kv/{store}/keys",
    operation_id = "listKeys",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("store" = Name, Path, description = "One of the tenant's stores."), KeyQuery),
    responses(
        (status = 200, description = "A page of live keys with their values, in order.",
            body = KeyList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn list_keys(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(store): Path<String>,
    query: Result<axum::extract::Query<KeyQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = query
        .limit
        .map_or(DEFAULT_PAGE, |l| l as usize)
        .clamp(1, MAX_PAGE);
    let page = match existing(&state, &tenant, &store)? {
        Some(bucket) => bucket.list(
            query.prefix.as_deref().unwrap_or(""),
            query.after.as_deref(),
            limit,
            now_ms(),
        ),
        None => Page::default(),
    };
    Ok(axum::Json(KeyList {
        items: page
            .entries
            .into_iter()
            .map(|(key, entry)| KeyValue::new(key, entry))
            .collect(),
        next_after: page.next,
    }))
}

/// Read one key
#[utoipa::path(
    get,
    path = "/v1/kv/{store}/keys/{key}",
    operation_id = "getKey",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("store" = Name, Path, description = "One of the tenant's stores."),
        ("key" = String, Path, description = "The key, percent-encoded."),
    ),
    responses(
        (status = 200, description = "The key's value.", body = KeyValue),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn get_key(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((store, key)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let entry = existing(&state, &tenant, &store)?
        .and_then(|bucket| bucket.get(&key, now_ms()))
        .ok_or_else(|| missing_key(&store, &key))?;
    Ok(axum::Json(KeyValue::new(key, entry)))
}

/// Set one key
#[utoipa::path(
    put,
    path = "/v1/kv/{store}/keys/{key}",
    operation_id = "putKey",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("store" = Name, Path, description = "One of the tenant's stores (created by its first \
                                               key)."),
        ("key" = String, Path, description = "The key, percent-encoded."),
    ),
    request_body = PutValue,
    responses(
        (status = 200, description = "Set, and on disk.", body = KeyValue),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A key, value or ttl_ms the host refuses (a value holding \
                                      U+0000, a ttl_ms of 0 or over ten years), past one of \
                                      the tenant's caps, or a new store when the tenant has \
                                      1,000 (the detail names it). Nothing changed, and no \
                                      store was created.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
        (status = 503, description = "The server's disk writer is too far behind; nothing \
                                      changed.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn put_key(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((store, key)): Path<(String, String)>,
    Json(body): Json<PutValue>,
) -> Result<impl IntoResponse, ApiError> {
    // Everything is checked before the store is created: a refused write creates none.
    check_name("store", &store)?;
    check_put_value(&body)?;
    let kv = state.registry.kv();
    kv.check(&tenant, &key, Some(&body.value))?;
    let expires_at_ms = expiry(now_ms(), body.ttl_ms)?;
    let (bucket, ()) = kv.create_for(&tenant, &store, |bucket| {
        bucket.put(&key, body.value.clone(), expires_at_ms)
    })?;
    committed(&bucket).await?;
    Ok(axum::Json(KeyValue {
        key,
        value: body.value,
        expires_at_ms,
    }))
}

/// Delete one key
#[utoipa::path(
    delete,
    path = "/v1/kv/{store}/keys/{key}",
    operation_id = "deleteKey",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(
        ("store" = Name, Path, description = "One of the tenant's stores."),
        ("key" = String, Path, description = "The key, percent-encoded."),
    ),
    responses(
        (status = 204, description = "Deleted, and on disk."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, description = "A key no store can hold: empty, with control characters, \
                                      or longer than max_kv_key_bytes.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
        (status = 503, description = "The server's disk writer is too far behind; nothing \
                                      changed.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_key(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path((store, key)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let bucket = existing(&state, &tenant, &store)?.ok_or_else(|| missing_key(&store, &key))?;
    if !bucket.delete(&key, now_ms())? {
        return Err(missing_key(&store, &key));
    }
    committed(&bucket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How an import body is written, from its content type.
fn import_format(headers: &HeaderMap) -> Result<ImportFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ImportFormat::of(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "an import is sent as application/x-ndjson (JSON Lines) or text/csv, not \
             {content_type:?}"
        ))
    })
}

impl From<ImportError> for ApiError {
    fn from(error: ImportError) -> Self {
        match error {
            ImportError::Line { .. } => ApiError::BadRequest(error.to_string()),
            ImportError::TooMany => ApiError::TooLarge(error.to_string()),
        }
    }
}

/// Import keys in bulk, all or nothing
///
/// Sets every key of the body at once. The body is JSON Lines (`application/x-ndjson`: one
/// object per line, `{"key": "...", "value": "...", "ttl_ms": 86400000}`, `ttl_ms` optional) or
/// CSV (`text/csv`, with the header `key,value` or `key,value,ttl_ms`). Every line is read and
/// checked, and the caps against the store as it will be, before anything changes: one bad line
/// or one cap passed refuses the whole import, and the store is as it was (a refused import
/// creates no store). Keys not in the body are left as they are. A key given twice keeps its last
/// value; `imported` counts the keys set, each once. At most 64 MiB and 500,000 entries.
#[utoipa::path(
    post,
    path = "/v1/kv/{store}/import",
    operation_id = "importKeys",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("store" = Name, Path, description = "One of the tenant's stores (created by its \
                                                 first key).")),
    request_body(
        content = String,
        content_type = "application/x-ndjson",
        description = "JSON Lines, or CSV as text/csv.",
    ),
    responses(
        (status = 200, description = "Every entry set, and on disk.", body = Imported),
        (status = 400, description = "A line that cannot be read, or whose key or value no \
                                      store can hold (a value holding U+0000, say); the detail \
                                      names it. Nothing changed.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, description = "More than 64 MiB or 500,000 entries.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON Lines nor CSV.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An entry past a per-key cap, or the import would pass one \
                                      of the tenant's caps (the detail names it). Nothing \
                                      changed.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
        (status = 503, description = "As many imports as the server takes at once (2, all \
                                      tenants together) are under way \
                                      (urn:passthru:problem:busy); nothing changed, try again \
                                      shortly.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn post_import(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let format = import_format(&headers)?;
    check_name("store", &store)?;
    let too_large =
        || ApiError::TooLarge(format!("an import may be at most {MAX_IMPORT_BYTES} bytes"));
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|length| length > MAX_IMPORT_BYTES)
    {
        return Err(too_large());
    }
    // Held until the import is applied: its body and entries are in memory until then.
    let Some(_place) = state.registry.kv().reserve_import() else {
        return Err(ApiError::Busy(format!(
            "{IMPORTS_AT_ONCE} imports are under way on this server, the most it takes at once; \
             try again shortly"
        )));
    };
    let bytes = axum::body::to_bytes(body, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| too_large())?;
    let kv = state.registry.kv().clone();
    let max_key_bytes = kv.tenant(&tenant).caps().max_key_bytes;
    // The body is read and checked before the store is created: a refused import creates none.
    let (imported, barrier) = tokio::task::spawn_blocking(move || {
        let entries = import::parse(format, &bytes, max_key_bytes, now_ms())?;
        let (_, done) = kv.create_for(&tenant, &store, |bucket| bucket.import_counted(entries))?;
        Ok::<_, ApiError>(done)
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    barrier.wait().await.map_err(|error| {
        tracing::error!(%error, "a key-value import did not reach the database");
        ApiError::Internal
    })?;
    Ok(axum::Json(Imported { imported }))
}
