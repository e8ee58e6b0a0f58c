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

use super::extract::{Json, Path, TenantAuth, check_name, json_from_bytes};
use super::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::Name;
use crate::kv::{Bucket, Entry, KvError, check_key, expiry};
use crate::store::now_ms;

/// The largest import body, in bytes.
pub const MAX_IMPORT_BYTES: usize = 64 << 20;
/// The most entries one import may hold.
pub const MAX_IMPORT_ENTRIES: usize = 500_000;
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
    /// Keys per page; 100 when absent, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
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

/// One line of a JSON Lines import.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    key: String,
    value: String,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

/// What an import did.
#[derive(Serialize, ToSchema)]
pub(super) struct Imported {
    /// Entries read (a key given twice counts twice; its last value is kept).
    imported: usize,
}

/// The tenant's store `store`, its name checked.
fn bucket(state: &AppState, tenant: &str, store: &str) -> Result<Arc<Bucket>, ApiError> {
    check_name("store", store)?;
    Ok(state.registry.kv().bucket(tenant, store))
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
    let bucket = bucket(&state, &tenant, &store)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page = bucket.list(
        query.prefix.as_deref().unwrap_or(""),
        query.after.as_deref(),
        limit,
        now_ms(),
    );
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
    let bucket = bucket(&state, &tenant, &store)?;
    let entry = bucket
        .get(&key, now_ms())
        .ok_or_else(|| ApiError::Missing(format!("key {key:?} of store {store:?}")))?;
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
        (status = 422, description = "A key or value the host refuses, or past one of the \
                                      tenant's caps (the detail names it).",
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
    let bucket = bucket(&state, &tenant, &store)?;
    check_put_value(&body)?;
    let expires_at_ms = expiry(now_ms(), body.ttl_ms)?;
    bucket.put(&key, body.value.clone(), expires_at_ms)?;
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
    let bucket = bucket(&state, &tenant, &store)?;
    if !bucket.delete(&key, now_ms())? {
        return Err(ApiError::Missing(format!("key {key:?} of store {store:?}")));
    }
    committed(&bucket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How an import body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportFormat {
    JsonLines,
    Csv,
}

impl ImportFormat {
    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson" | "application/jsonl" => Ok(ImportFormat::JsonLines),
            "text/csv" => Ok(ImportFormat::Csv),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "an import is sent as application/x-ndjson (JSON Lines) or text/csv, not \
                 {content_type:?}"
            ))),
        }
    }
}

/// Reads every entry of an import body, or says which line is wrong. Pure: the caps are
/// checked by the store as it applies them.
///
/// # Errors
/// 400 naming the first line that cannot be read; 413 past [`MAX_IMPORT_ENTRIES`].
fn parse_import(
    format: ImportFormat,
    body: &[u8],
    max_key_bytes: usize,
    now: i64,
) -> Result<Vec<(String, Entry)>, ApiError> {
    let bad = |line: usize, what: String| ApiError::BadRequest(format!("line {line}: {what}"));
    let mut entries = Vec::new();
    let mut push = |line: usize, key: String, value: String, ttl_ms: Option<u64>| {
        if entries.len() == MAX_IMPORT_ENTRIES {
            return Err(ApiError::TooLarge(format!(
                "an import may hold at most {MAX_IMPORT_ENTRIES} entries"
            )));
        }
        check_key(&key, max_key_bytes).map_err(|e| bad(line, e.to_string()))?;
        let expires_at_ms = expiry(now, ttl_ms).map_err(|e| bad(line, e.to_string()))?;
        entries.push((
            key,
            Entry {
                value,
                expires_at_ms,
            },
        ));
        Ok(())
    };
    match format {
        ImportFormat::JsonLines => {
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                let line_no = i + 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let entry: ImportLine = json_from_bytes(line).map_err(|e| match e {
                    ApiError::BadRequest(detail) => bad(line_no, detail),
                    other => other,
                })?;
                push(line_no, entry.key, entry.value, entry.ttl_ms)?;
            }
        }
        ImportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(body);
            let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
            let with_ttl = match headers.iter().collect::<Vec<_>>().as_slice() {
                ["key", "value"] => false,
                ["key", "value", "ttl_ms"] => true,
                other => {
                    return Err(bad(
                        1,
                        format!(
                            "the header must be `key,value` or `key,value,ttl_ms`, not {other:?}"
                        ),
                    ));
                }
            };
            for record in reader.records() {
                let record = record.map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    bad(line, e.to_string())
                })?;
                let line = record.position().map_or(0, |p| p.line() as usize);
                let ttl_ms = match (with_ttl, record.get(2)) {
                    (true, Some(ttl)) if !ttl.is_empty() => {
                        Some(ttl.parse::<u64>().map_err(|_| {
                            bad(line, format!("ttl_ms {ttl:?} is not a whole number"))
                        })?)
                    }
                    _ => None,
                };
                push(
                    line,
                    record.get(0).unwrap_or_default().to_owned(),
                    record.get(1).unwrap_or_default().to_owned(),
                    ttl_ms,
                )?;
            }
        }
    }
    Ok(entries)
}

/// Import keys in bulk, all or nothing
///
/// Sets every key of the body at once. The body is JSON Lines (`application/x-ndjson`: one
/// object per line, `{"key": "...", "value": "...", "ttl_ms": 86400000}`, `ttl_ms` optional) or
/// CSV (`text/csv`, with the header `key,value` or `key,value,ttl_ms`). Every line is read and
/// checked, and the caps against the store as it will be, before anything changes: one bad line
/// or one cap passed refuses the whole import, and the store is as it was. Keys not in the body
/// are left as they are. At most 64 MiB and 500,000 entries.
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
        (status = 400, description = "A line that cannot be read; the detail names it. Nothing \
                                      changed.",
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
    ),
)]
pub(super) async fn post_import(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let format = ImportFormat::of(&headers)?;
    let bucket = bucket(&state, &tenant, &store)?;
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
    let bytes = axum::body::to_bytes(body, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| too_large())?;
    let max_key_bytes = state.registry.kv().tenant(&tenant).caps().max_key_bytes;
    let (imported, barrier) = tokio::task::spawn_blocking(move || {
        let entries = parse_import(format, &bytes, max_key_bytes, now_ms())?;
        let imported = entries.len();
        Ok::<_, ApiError>((imported, bucket.import(entries)?))
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    barrier.wait().await.map_err(|error| {
        tracing::error!(%error, "a key-value import did not reach the database");
        ApiError::Internal
    })?;
    Ok(axum::Json(Imported { imported }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_and_csv_read_the_same_entries() {
        let jsonl = b"{\"key\":\"a\",\"value\":\"1\"}\n\n{\"key\":\"b,c\",\"value\":\"x\\ny\",\"ttl_ms\":5}\r\n";
        let csv = b"key,value,ttl_ms\na,1,\n\"b,c\",\"x\ny\",5\n";
        let from_json = parse_import(ImportFormat::JsonLines, jsonl, 512, 100).unwrap();
        let from_csv = parse_import(ImportFormat::Csv, csv, 512, 100).unwrap();
        assert_eq!(from_json, from_csv);
        assert_eq!(from_json[1].0, "b,c");
        assert_eq!(from_json[1].1.value, "x\ny");
        assert_eq!(from_json[1].1.expires_at_ms, Some(105));
    }

    #[test]
    fn a_bad_line_is_named() {
        let cases: [(ImportFormat, &[u8], &str); 5] = [
            (
                ImportFormat::JsonLines,
                b"{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\"}\n",
                "line 2",
            ),
            (
                ImportFormat::JsonLines,
                b"{\"key\":\"\",\"value\":\"1\"}\n",
                "line 1",
            ),
            (ImportFormat::JsonLines, b"[\"a\",\"b\"]\n", "line 1"),
            (ImportFormat::Csv, b"name,value\na,1\n", "line 1"),
            (ImportFormat::Csv, b"key,value,ttl_ms\na,1,soon\n", "line 2"),
        ];
        for (format, body, line) in cases {
            match parse_import(format, body, 512, 0) {
                Err(ApiError::BadRequest(detail)) => {
                    assert!(detail.starts_with(line), "{detail:?} should name {line}");
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }
}
