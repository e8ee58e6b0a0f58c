//! Extractors that answer bad input with problem details: bearer tokens (operator, tenant),
//! JSON bodies (unknown fields refused), and names checked where paths carry them.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::{Deserialize, DeserializeOwned, Deserializer, Visitor};

use super::{ApiError, AppState};
use crate::auth::token_hash;
use crate::flow::validate_name;
use crate::store::StoreError;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller presented the operator's token.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            Some(token) if state.operator.matches(token) => Ok(Operator),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// The caller presented a live token of this (enabled) tenant.
pub struct TenantAuth(pub String);

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hash = token_hash(bearer(parts).ok_or(ApiError::Unauthorized)?);
        let store = state.registry.store().clone();
        let tenant = tokio::task::spawn_blocking(move || {
            let Some(name) = store.tenant_for_token(&hash)? else {
                return Ok::<_, StoreError>(None);
            };
            Ok(Some(store.get_tenant(&name)?))
        })
        .await
        .map_err(|_| ApiError::Internal)??
        .ok_or(ApiError::Unauthorized)?;
        if tenant.disabled {
            return Err(ApiError::Forbidden(format!(
                "tenant {:?} is disabled",
                tenant.name
            )));
        }
        Ok(TenantAuth(tenant.name))
    }
}

/// A JSON body; malformed JSON, a wrong type or an unknown field is a 400 that says which.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<Object<T>>::from_request(req, state).await {
            Ok(axum::Json(Object(value))) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// Reads a JSON body from its bytes as [`Json`] does once the body is read (and its content
/// type checked).
pub(super) fn json_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match axum::Json::<Object<T>>::from_bytes(bytes) {
        Ok(axum::Json(Object(value))) => Ok(value),
        Err(rejection) => Err(json_rejection(&rejection)),
    }
}

/// A body that must be a JSON object, as the OpenAPI document says every request body is.
///
/// serde's derived structs also read a JSON array, field by field in declaration order, so
/// without this `PATCH /v1/tenants/{tenant}` took `[null, null]` (schemathesis found it).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(MapOnly(deserializer)).map(Object)
    }
}

/// Hands the top level of a body to the type as a map only: a struct is read with
/// `deserialize_map`, which refuses an array ("invalid type: sequence, expected struct ...").
struct MapOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The problem for a body axum could not read: 413, 415, else 400, each saying why.
fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(rejection.body_text()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(rejection.body_text()),
        _ => ApiError::BadRequest(rejection.body_text()),
    }
}

/// Path parameters; one that cannot be decoded (invalid UTF-8, say) is a 400 problem.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Checks a name taken from the path like tenant and flow names: 400 if it is not one.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    validate_name(what, name).map_err(ApiError::BadRequest)
}
