//! Extractors that answer bad input with problem details: bearer tokens (operator, tenant),
//! JSON bodies (unknown fields refused), and names checked where paths carry them.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

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
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(rejection.body_text()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    ApiError::UnsupportedMediaType(rejection.body_text())
                }
                _ => ApiError::BadRequest(rejection.body_text()),
            }),
        }
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
