//! Errors as RFC 9457 problem details: `application/problem+json` with a type, a title, the
//! status and a detail that says what was wrong.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error. Every one is the client's fault: host faults never reach this type's callers
/// (a failing plugin is answered with the flow's fallback branch, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    UnknownFlow { tenant: String, flow: String },
    NotFound { path: String },
    QueryTooLong { len: usize, max: usize },
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            ApiError::UnknownFlow { tenant, flow } => (
                StatusCode::NOT_FOUND,
                "urn:passthru:problem:unknown-flow",
                "No such flow",
                format!("there is no flow {flow:?} for tenant {tenant:?}"),
            ),
            ApiError::NotFound { path } => (
                StatusCode::NOT_FOUND,
                "urn:passthru:problem:not-found",
                "Not found",
                format!(
                    "nothing is served at {path:?}; Passthru requests go to \
                     /passthru/{{tenant}}/{{flow}}"
                ),
            ),
            ApiError::QueryTooLong { len, max } => (
                StatusCode::URI_TOO_LONG,
                "urn:passthru:problem:query-too-long",
                "Query string too long",
                format!("the query string is {len} bytes; this server accepts at most {max}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title, detail) = self.parts();
        let body = Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
