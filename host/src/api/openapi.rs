//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! types' `ToSchema` derives. `/openapi.json` serves it; `docs/openapi.json` is the same document,
//! checked in (`tests/server.rs` fails when they differ; `PASSTHRU_UPDATE_OPENAPI=1 cargo test -p
//! passthru --test server openapi` rewrites the file).

use std::sync::LazyLock;

use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToResponse};

use super::{console, decisions, kv, metrics, operator, passthru, queue, rollouts, stats, tenant};

/// The whole API. `passthru::api::openapi_json()` is its JSON.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "passthru",
        description = "Answers Exotel Passthru requests by running a tenant's WebAssembly plugin.

Exotel's Passthru applet sends a GET with the call's details as query parameters. passthru \
parses them, runs the flow's plugin in a sandbox (fuel, deadline, memory cap) and answers with \
the branch: by default 200 for success and 302 for failure. The 302 is a branch signal for the \
call flow and carries no Location. When the plugin fails, the flow's fallback branch is answered \
within the deadline.

The admin API under /v1 takes and returns JSON. The operator (operatorToken) manages tenants and \
their tokens; a tenant (tenantToken) manages its own plugin versions and flows and reads its \
decision records. A tenant's token never sees another tenant's objects: they answer 404. JSON \
request bodies refuse unknown fields (400). Every error is an RFC 9457 problem \
(application/problem+json) whose detail says what was wrong.

This document is generated from the server's code."
    ),
    servers((url = "http://127.0.0.1:8080")),
    tags(
        (name = "passthru", description = "What Exotel calls."),
        (name = "operator", description = "Tenants, their caps and their tokens. Bearer: the operator token."),
        (name = "tenant", description = "A tenant's plugin versions, flows, key-value data, decision records, and async queues and dead letters. Bearer: one of the tenant's tokens."),
        (name = "ops", description = "Health, metrics, this document and the web console's files. No token."),
    ),
    paths(
        passthru::get_passthru,
        passthru::get_passthru_with_key,
        super::get_healthz,
        super::get_readyz,
        metrics::get_metrics,
        super::get_openapi,
        console::index,
        console::asset,
        operator::post_tenant,
        operator::list_tenants,
        operator::get_tenant,
        operator::patch_tenant,
        operator::post_token,
        operator::list_tokens,
        operator::delete_token,
        tenant::list_versions,
        tenant::post_version,
        tenant::list_plugin_versions,
        tenant::get_version,
        tenant::delete_version,
        tenant::list_flows,
        tenant::get_flow,
        tenant::put_flow,
        tenant::delete_flow,
        tenant::post_activate,
        tenant::post_rollback,
        tenant::post_auth,
        tenant::put_secret,
        tenant::delete_secret,
        rollouts::post_try,
        rollouts::put_canary,
        rollouts::post_promote,
        rollouts::delete_canary,
        rollouts::post_backtest,
        kv::list_stores,
        kv::list_keys,
        kv::get_key,
        kv::put_key,
        kv::delete_key,
        kv::post_import,
        decisions::list_decisions,
        decisions::get_call,
        stats::get_stats,
        queue::get_queue,
        queue::list_dead_letters,
        queue::get_dead_letter,
        queue::delete_dead_letter,
        queue::post_replay,
    ),
    components(
        schemas(crate::flow::Name, crate::sandbox::FailureKind),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, RequestTimeout, Internal),
    ),
    modifiers(&BearerTokens, &AdminTimeouts),
)]
pub struct ApiDoc;

/// The document as pretty-printed JSON with a trailing newline, built once.
pub fn openapi_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut json = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        json.push('\n');
        json
    });
    &JSON
}

/// The two bearer schemes: the operator's token and a tenant's.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "operatorToken",
            bearer(
                "The operator's token: PASSTHRU_OPERATOR_TOKEN, else the config file's \
                 operator_token, else the one generated into DATA_DIR/operator-token at the \
                 first start.",
            ),
        );
        components.add_security_scheme(
            "tenantToken",
            bearer(
                "A tenant's token, issued by POST /v1/tenants/{tenant}/tokens. A disabled \
                 tenant's tokens answer 403.",
            ),
        );
    }
}

/// Every operation under `/v1` may answer `408`: the admin and upload routes run under the
/// server's `admin_timeout_ms` and `upload_timeout_ms`.
struct AdminTimeouts;

impl Modify for AdminTimeouts {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("408".to_owned())
                    .or_insert_with(|| Ref::from_response_name("RequestTimeout").into());
            }
        }
    }
}

/// A response whose body is a problem (the `Problem` schema).
fn problem_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// The body of an upload: a WebAssembly component's raw bytes.
pub(super) struct WasmComponent;

impl utoipa::PartialSchema for WasmComponent {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("A WebAssembly component's raw bytes."))
            .into()
    }
}

impl utoipa::ToSchema for WasmComponent {}

/// Declares the problem responses the operations share, each a `ToResponse` named after it.
macro_rules! shared_problems {
    ($($name:ident: $description:literal,)*) => {$(
        #[doc = $description]
        pub(super) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem_response($description))
            }
        }
    )*};
}

shared_problems! {
    BadRequest: "Malformed input: an invalid name in the path, malformed JSON, a field of the \
                 wrong type, or an unknown field; the detail names it.",
    Unauthorized: "No bearer token, or one that is not valid for this API (a tenant's token is \
                   not the operator's, nor the other way round).",
    Forbidden: "A valid token of a disabled tenant.",
    NotFound: "No such object (another tenant's objects do not exist for you).",
    RequestTimeout: "The request, its body included, took longer than the server allows \
                     (admin_timeout_ms, or upload_timeout_ms for an upload or a key-value \
                     import): urn:passthru:problem:timeout.",
    Internal: "The server failed; the failure is in its log, not in the answer.",
}
