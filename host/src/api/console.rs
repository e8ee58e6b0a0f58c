//! The web console: hand-written HTML, CSS and JavaScript modules from `host/console/`,
//! compiled into the binary and served under `/console`. It is a client of the public `/v1`
//! API only (the token the user signs in with is sent as a bearer token, from the browser's
//! `sessionStorage`); nothing here reads the store.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and fetches from this
//! server only, no inline script or style, no frames, no forms posted anywhere.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::extract::Path;
use super::{ApiError, AppState};

/// The policy of every console answer. `style-src 'self'` alone (no `'unsafe-inline'`): the
/// console sets no inline style attributes; the plots use SVG presentation attributes.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One file of the console: its name under `/console/`, its content type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Declares the console's files, each read from `host/console/` at compile time.
macro_rules! assets {
    ($($name:literal => $content_type:expr,)*) => {
        &[$(Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("../../console/", $name)),
        },)*]
    };
}

const ASSETS: &[Asset] = assets! {
    "index.html" => HTML,
    "console.css" => CSS,
    "icon.svg" => SVG,
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "plot.js" => JS,
    "flows.js" => JS,
    "plugins.js" => JS,
    "bench.js" => JS,
    "decisions.js" => JS,
    "queue.js" => JS,
    "operator.js" => JS,
};

/// The Exotel queries kept as the project's test fixtures, offered by the test bench.
const SAMPLES: &[(&str, &str)] = &[
    (
        "gather-digits",
        include_str!("../../../tests/fixtures/exotel/gather-digits.query"),
    ),
    (
        "gather-single-key",
        include_str!("../../../tests/fixtures/exotel/gather-single-key.query"),
    ),
    (
        "connect-completed",
        include_str!("../../../tests/fixtures/exotel/connect-completed.query"),
    ),
    (
        "connect-busy",
        include_str!("../../../tests/fixtures/exotel/connect-busy.query"),
    ),
    (
        "post-connect-minimal",
        include_str!("../../../tests/fixtures/exotel/post-connect-minimal.query"),
    ),
    (
        "outbound-api-customfield",
        include_str!("../../../tests/fixtures/exotel/outbound-api-customfield.query"),
    ),
];

/// The console's routes, with their own timeout layer added by the caller.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/{file}", get(asset))
}

/// The sample queries as JSON, `[{"name", "query"}]`, built once.
fn samples_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let list: Vec<serde_json::Value> = SAMPLES
            .iter()
            .map(|(name, query)| serde_json::json!({ "name": name, "query": query.trim() }))
            .collect();
        serde_json::Value::Array(list).to_string()
    });
    JSON.as_str()
}

/// The web console
///
/// The console's page: sign in with a tenant's token (or the operator's) and use the API from a
/// browser. Its scripts and styles are served under `/console/`; see docs/console.md.
#[utoipa::path(
    get,
    path = "/console",
    operation_id = "getConsole",
    tag = "ops",
    responses((
        status = 200,
        description = "The console's HTML page.",
        body = String,
        content_type = "text/html"
    ))
)]
pub(super) async fn index() -> Response {
    serve(ASSETS[0].content_type, ASSETS[0].body)
}

/// A file of the web console
///
/// The console's scripts (JavaScript modules), stylesheet, icon and sample Exotel queries
/// (`samples.json`), each with its content type.
#[utoipa::path(
    get,
    path = "/console/{file}",
    operation_id = "getConsoleFile",
    tag = "ops",
    params(("file" = String, Path, description = "The file's name, such as `app.js`.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
            (serde_json::Value = "application/json"),
        )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, description = "No such file.",
            body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    if file == "samples.json" {
        return Ok(serve("application/json", samples_json()));
    }
    ASSETS
        .iter()
        .find(|a| a.name == file)
        .map(|a| serve(a.content_type, a.body))
        .ok_or(ApiError::NotFound {
            path: format!("/console/{file}"),
        })
}

/// An asset with its content type and the headers every console answer carries. `no-cache`:
/// the browser revalidates, so a new binary's console is never mixed with an old one's modules.
fn serve(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_console_imports_is_served() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            for line in asset.body.lines() {
                let Some((_, rest)) = line.split_once(" from \"./") else {
                    continue;
                };
                let imported = rest.split('"').next().unwrap();
                assert!(
                    ASSETS.iter().any(|a| a.name == imported),
                    "{} imports {imported}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_nothing_inline() {
        let html = ASSETS[0].body;
        for needle in [
            "http://", "https://", "<style", "style=", "onclick", "onload",
        ] {
            assert!(!html.contains(needle), "index.html contains {needle:?}");
        }
        assert!(html.contains("<script type=\"module\" src=\"/console/app.js\"></script>"));
    }
}
