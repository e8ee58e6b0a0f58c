//! Errors as RFC 9457 problem details: `application/problem+json` with a type, a title, the
//! status and a detail that says what was wrong.
//!
//! Client faults say exactly what was wrong. Host faults are logged once, here, and answered with
//! an opaque 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Chain;
use crate::registry::{CompileError, RegistryError};
use crate::store::StoreError;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    UnknownFlow {
        tenant: String,
        flow: String,
    },
    NotFound {
        path: String,
    },
    QueryTooLong {
        len: usize,
        max: usize,
    },
    /// No token, or a token that is not valid for this API.
    Unauthorized,
    /// A valid token whose tenant is disabled.
    Forbidden(String),
    /// An object of the caller's that does not exist (or belongs to someone else).
    Missing(String),
    BadRequest(String),
    /// Well-formed, but refused: limits above caps, a plugin that is not valid.
    Unprocessable(String),
    InvalidPlugin(String),
    Conflict(String),
    TooLarge(String),
    UnsupportedMediaType(String),
    /// An async request refused because the queue is at its bound.
    QueueFull(String),
    /// An upload refused because as many as allowed are waiting for a compile.
    CompilesBusy(String),
    /// An async request refused because the queue cannot commit (shutting down, disk failing).
    QueueUnavailable(String),
    /// A key-value write refused because the disk writer is too far behind.
    KvUnavailable(String),
    /// The readiness check: the node cannot reach its database.
    NotReady(String),
    /// Work the server does one at a time (a backtest) is already running.
    Busy(String),
    /// An admin API request that took longer than its timeout.
    Timeout,
    /// A method the path is not routed for (the router's bare `405`; its `Allow` header is
    /// kept).
    MethodNotAllowed,
    Internal,
}

/// An RFC 9457 problem: every error the server answers, as `application/problem+json`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Problem<'a> {
    /// What kind of problem: `urn:passthru:problem:` and a name.
    #[serde(rename = "type")]
    #[schema(
        format = "uri",
        examples(
            "urn:passthru:problem:unknown-flow",
            "urn:passthru:problem:query-too-long",
            "urn:passthru:problem:not-found",
            "urn:passthru:problem:bad-request",
            "urn:passthru:problem:unauthorized",
            "urn:passthru:problem:forbidden",
            "urn:passthru:problem:conflict",
            "urn:passthru:problem:too-large",
            "urn:passthru:problem:unsupported-media-type",
            "urn:passthru:problem:refused",
            "urn:passthru:problem:invalid-plugin",
            "urn:passthru:problem:queue-full",
            "urn:passthru:problem:compiles-busy",
            "urn:passthru:problem:queue-unavailable",
            "urn:passthru:problem:kv-unavailable",
            "urn:passthru:problem:not-ready",
            "urn:passthru:problem:busy",
            "urn:passthru:problem:timeout",
            "urn:passthru:problem:method-not-allowed",
            "urn:passthru:problem:internal"
        )
    )]
    kind: &'a str,
    /// A short, fixed summary of the kind.
    title: &'a str,
    /// The HTTP status, repeated.
    status: u16,
    /// What was wrong, for a person to read.
    detail: String,
}

impl ApiError {
    fn parts(self) -> (StatusCode, &'static str, &'static str, String) {
        use StatusCode as S;
        match self {
            ApiError::UnknownFlow { tenant, flow } => (
                S::NOT_FOUND,
                "unknown-flow",
                "No such flow",
                format!("there is no flow {flow:?} for tenant {tenant:?}"),
            ),
            ApiError::NotFound { path } => (
                S::NOT_FOUND,
                "not-found",
                "Not found",
                format!(
                    "nothing is served at {path:?}; Passthru requests go to \
                     /passthru/{{tenant}}/{{flow}}, the API is under /v1 (see /openapi.json)"
                ),
            ),
            ApiError::QueryTooLong { len, max } => (
                S::URI_TOO_LONG,
                "query-too-long",
                "Query string too long",
                format!("the query string is {len} bytes; this server accepts at most {max}"),
            ),
            ApiError::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "send a valid token as `Authorization: Bearer TOKEN`".to_owned(),
            ),
            ApiError::Forbidden(detail) => (S::FORBIDDEN, "forbidden", "Forbidden", detail),
            ApiError::Missing(what) => (
                S::NOT_FOUND,
                "not-found",
                "Not found",
                format!("{what} not found"),
            ),
            ApiError::BadRequest(detail) => (S::BAD_REQUEST, "bad-request", "Bad request", detail),
            ApiError::Unprocessable(detail) => {
                (S::UNPROCESSABLE_ENTITY, "refused", "Refused", detail)
            }
            ApiError::InvalidPlugin(detail) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid-plugin",
                "Invalid plugin",
                detail,
            ),
            ApiError::Conflict(detail) => (S::CONFLICT, "conflict", "Conflict", detail),
            ApiError::TooLarge(detail) => (
                S::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                detail,
            ),
            ApiError::UnsupportedMediaType(detail) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            ApiError::QueueFull(detail) => (
                S::SERVICE_UNAVAILABLE,
                "queue-full",
                "Async queue full",
                format!("{detail}; the request was not kept"),
            ),
            ApiError::CompilesBusy(detail) => (
                S::SERVICE_UNAVAILABLE,
                "compiles-busy",
                "Too many uploads compiling",
                detail,
            ),
            ApiError::QueueUnavailable(detail) => (
                S::SERVICE_UNAVAILABLE,
                "queue-unavailable",
                "Async queue unavailable",
                format!("{detail}; the request was not kept"),
            ),
            ApiError::KvUnavailable(detail) => (
                S::SERVICE_UNAVAILABLE,
                "kv-unavailable",
                "Key-value writes unavailable",
                format!("{detail}; nothing changed"),
            ),
            ApiError::NotReady(detail) => {
                (S::SERVICE_UNAVAILABLE, "not-ready", "Not ready", detail)
            }
            ApiError::Busy(detail) => (S::SERVICE_UNAVAILABLE, "busy", "Busy", detail),
            ApiError::Timeout => (
                S::REQUEST_TIMEOUT,
                "timeout",
                "Request timeout",
                "the request took longer than the server allows; a change it asked for may still \
                 take effect"
                    .to_owned(),
            ),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this path does not answer this method; the Allow header lists those it does"
                    .to_owned(),
            ),
            ApiError::Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the server failed; the failure is in its log".to_owned(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title, detail) = self.parts();
        let kind = format!("urn:passthru:problem:{kind}");
        let body = Problem {
            kind: &kind,
            title,
            status: status.as_u16(),
            detail,
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(e) => ApiError::InvalidPlugin(e.to_string()),
            RegistryError::Compile(e @ CompileError::Busy { .. }) => {
                ApiError::CompilesBusy(e.to_string())
            }
            RegistryError::Compile(error @ CompileError::Worker { .. }) => {
                tracing::error!(error = %Chain(&error), "compile failure");
                ApiError::Internal
            }
            RegistryError::Compile(e) => ApiError::InvalidPlugin(e.to_string()),
            RegistryError::BadRequest(detail) => ApiError::Unprocessable(detail),
            RegistryError::NotFound { what } => ApiError::Missing(what),
            RegistryError::Conflict(detail) => ApiError::Conflict(detail),
            e @ RegistryError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            error @ (RegistryError::Store(_)
            | RegistryError::Io { .. }
            | RegistryError::Corrupt { .. }
            | RegistryError::NoRandomness(_)
            | RegistryError::Task(_)
            | RegistryError::KeyValue(_)
            | RegistryError::Secrets(_)) => {
                tracing::error!(error = %Chain(&error), "registry failure");
                ApiError::Internal
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        RegistryError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_is_among_the_documented_examples() {
        let doc: serde_json::Value = serde_json::from_str(crate::api::openapi_json()).unwrap();
        let examples = doc["components"]["schemas"]["Problem"]["properties"]["type"]["examples"]
            .as_array()
            .expect("the Problem schema lists its types")
            .clone();
        let s = String::new;
        for error in [
            ApiError::UnknownFlow {
                tenant: s(),
                flow: s(),
            },
            ApiError::NotFound { path: s() },
            ApiError::QueryTooLong { len: 0, max: 0 },
            ApiError::Unauthorized,
            ApiError::Forbidden(s()),
            ApiError::Missing(s()),
            ApiError::BadRequest(s()),
            ApiError::Unprocessable(s()),
            ApiError::InvalidPlugin(s()),
            ApiError::Conflict(s()),
            ApiError::TooLarge(s()),
            ApiError::UnsupportedMediaType(s()),
            ApiError::QueueFull(s()),
            ApiError::CompilesBusy(s()),
            ApiError::QueueUnavailable(s()),
            ApiError::KvUnavailable(s()),
            ApiError::NotReady(s()),
            ApiError::Busy(s()),
            ApiError::Timeout,
            ApiError::MethodNotAllowed,
            ApiError::Internal,
        ] {
            let kind = format!("urn:passthru:problem:{}", error.parts().1);
            assert!(
                examples.iter().any(|e| *e == kind),
                "{kind} is not documented"
            );
        }
    }
}
