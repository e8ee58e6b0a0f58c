//! Rolling a version out: the test bench's dry run (`try`), the canary (set, promote, abort) and
//! backtests. Bearer: one of the tenant's tokens. See docs/rollouts.md.
//!
//! None of these touch the request path: a dry run is a call made in this handler with the flow's
//! grants as a dry run has them (no record, no metrics of the live flow, key-value writes kept in
//! the call, outbound requests refused); a canary's plugin is loaded before it goes live; a
//! backtest runs on a thread of its own at low priority and paced, one at a time in the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Json, Path, TenantAuth, check_name};
use super::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::{FlowMode, Name};
use crate::registry::Flow;
use crate::rollout::backtest::{self, BacktestError, BacktestReport, Candidate, Recorded, Window};
use crate::rollout::{FallbackOf, Rehearsal};
use crate::sandbox::outbound::OutboundRecord;
use crate::sandbox::{Branch, CallSeed, LogLine, MemoryUse, Plugin};
use crate::store::{Canary, FlowRecord};

/// A dry run's query, and the version to run (the live one when absent).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TryCall {
    /// The Passthru query string, as Exotel would send it (without the `?`); at most the
    /// server's `max_query_bytes`.
    #[schema(example = "CallSid=a1b2&CallFrom=09800000001&digits=%221%22")]
    query: String,
    /// A version of the flow's plugin; the active one when absent.
    #[schema(minimum = 1)]
    version: Option<u32>,
}

/// What a dry run came to.
#[derive(Serialize, ToSchema)]
pub(super) struct Tried {
    version: u32,
    branch: Branch,
    /// `decided` (`recorded` for async flows), or the failure kind when the fallback would have
    /// been answered.
    outcome: String,
    /// What a hook other than `passthru` answered besides the branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    fuel_used: u64,
    elapsed_us: u64,
    log: Vec<LogLine>,
    log_dropped: u32,
    /// The outbound requests the plugin tried: a dry run refuses them all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outbound: Vec<OutboundRecord>,
    /// The query's parameters as the plugin saw them, decoded (a repeated one: its last value).
    params: BTreeMap<String, String>,
    /// The call's linear memory: what the instance had once made and what the call grew it by.
    /// A call that grows it costs a live server more than `elapsed_us` shows.
    memory: MemoryUse,
}

/// Try a query on the flow without a live call
///
/// Runs the flow's plugin (the active version, or `version`) on the query as a Passthru request
/// would, and answers what it decided, logged and cost. A dry run: no decision record, nothing
/// counted in the flow's metrics, key-value writes seen by the call itself but kept nowhere, and
/// every outbound request refused. The call's clock and randomness are fresh, as a live call's.
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/try",
    operation_id = "tryFlow",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    request_body = TryCall,
    responses(
        (status = 200, description = "What the plugin did (a failure too: see `outcome`).",
            body = Tried),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such flow, or no such version of its plugin.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is larger than 1 MiB.",
            body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The query is longer than the server's max_query_bytes.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The version does not export what the flow calls.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn post_try(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<TryCall>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    if body.query.len() > state.max_query_bytes {
        return Err(ApiError::QueryTooLong {
            len: body.query.len(),
            max: state.max_query_bytes,
        });
    }
    let live = live_flow(&state, &tenant, &flow)?;
    let version = body.version.unwrap_or(live.version);
    let plugin = version_of(&state, &live, version).await?;
    let rehearsal = Rehearsal {
        sandbox: state.registry.sandbox(),
        plugin: &plugin,
        version,
        share: &live.share,
        mode: live.mode,
        hook: live.hook,
        fallback: FallbackOf::flow(&live),
        limits: live.limits,
        grants: Arc::new(live.grants.dry_run()),
    };
    let done = rehearsal.run(&body.query, CallSeed::fresh()).await;
    let verdict = done.verdict;
    Ok(axum::Json(Tried {
        version,
        branch: verdict.branch,
        outcome: verdict.outcome,
        answer: verdict.answer,
        reason: verdict.reason,
        error: verdict.error,
        fuel_used: done.usage.fuel_used,
        elapsed_us: done.usage.elapsed_us,
        log: done.usage.log,
        log_dropped: done.usage.log_dropped,
        outbound: done.usage.outbound,
        params: done.call.params.owned().collect(),
        memory: done.usage.memory,
    }))
}

/// The flow as it is live: a tenant's token only reaches its own enabled tenant's flows.
fn live_flow(state: &AppState, tenant: &str, flow: &str) -> Result<Arc<Flow>, ApiError> {
    state
        .registry
        .get(tenant, flow)
        .ok_or_else(|| ApiError::Missing(format!("flow {flow:?}")))
}

/// Version `version` of the flow's plugin: the live one or the canary as loaded, else loaded
/// now (off the runtime: it may compile), once checked to export what the flow calls.
async fn version_of(state: &AppState, live: &Flow, version: u32) -> Result<Arc<Plugin>, ApiError> {
    if version == live.version {
        return Ok(live.plugin.clone());
    }
    if let Some(canary) = live.canary.as_ref().filter(|c| c.version == version) {
        return Ok(canary.plugin.clone());
    }
    let registry = state.registry.clone();
    let (tenant, flow) = (live.tenant.clone(), live.name.clone());
    tokio::task::spawn_blocking(move || {
        let record = registry.store().get_flow(&tenant, &flow)?;
        registry.flow_plugin(&record, version)
    })
    .await
    .map_err(|_| ApiError::Internal)?
    .map_err(ApiError::from)
}

/// Answer a share of the flow's calls with another version
///
/// `version` answers `percent` of the calls (more than 0, less than 100, in steps of 0.01), the
/// active version the others. A call's version is chosen by a stable hash of its `CallSid` (the
/// same on every node and across restarts), so one call always sees one version; calls without a
/// `CallSid` get the active version. The canary is compiled and loaded before it answers
/// anything. Decision records say which version answered (`version`). Setting a canary again
/// replaces it; activating or rolling back the flow ends it.
#[utoipa::path(
    put,
    path = "/v1/flows/{flow}/canary",
    operation_id = "setCanary",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    request_body = Canary,
    responses(
        (status = 200, description = "The flow as it is now, with its canary.", body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such flow, or no such version of its plugin.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The version is the active one.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A percent outside (0, 100), or a version that does not \
                                      export what the flow calls.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn put_canary(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<Canary>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let record = state.registry.set_canary(&tenant, &flow, body).await?;
    Ok(axum::Json(record))
}

/// Make the canary the active version
///
/// No request body. The canary's version becomes the flow's version, the version active until
/// now its rollback target (`previous_version`), and the canary is gone.
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/canary/promote",
    operation_id = "promoteCanary",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    responses(
        (status = 200, description = "The flow as it is now.", body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The flow has no canary.",
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn post_promote(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let record = state.registry.promote_canary(&tenant, &flow).await?;
    Ok(axum::Json(record))
}

/// End the canary
///
/// Every call gets the active version again. A flow without a canary is answered as it is.
#[utoipa::path(
    delete,
    path = "/v1/flows/{flow}/canary",
    operation_id = "abortCanary",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    responses(
        (status = 200, description = "The flow as it is now, without a canary.",
            body = FlowRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn delete_canary(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let record = state.registry.abort_canary(&tenant, &flow).await?;
    Ok(axum::Json(record))
}

/// A backtest: the candidate version, and the recorded calls to run it on: the flow's `last` N,
/// or those from `since_ms` to `until_ms` (either may be left out). At most 10,000 calls.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BacktestRequest {
    /// A version of the flow's plugin.
    #[schema(minimum = 1)]
    version: u32,
    /// The flow's last N recorded calls, 1 to 10,000.
    #[schema(minimum = 1, maximum = 10000)]
    last: Option<u32>,
    /// Calls recorded at or after this time (milliseconds since the Unix epoch).
    since_ms: Option<i64>,
    /// Calls recorded before this time (milliseconds since the Unix epoch).
    until_ms: Option<i64>,
}

impl BacktestRequest {
    fn window(&self) -> Result<Window, ApiError> {
        let bad = |detail: String| Err(ApiError::BadRequest(detail));
        match (self.last, self.since_ms, self.until_ms) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                bad("give either `last` or a time range (`since_ms`, `until_ms`), not both".into())
            }
            (Some(n), None, None) if (1..=backtest::MAX_CALLS).contains(&n) => Ok(Window::Last(n)),
            (Some(n), None, None) => {
                bad(format!("`last` is 1 to {}, not {n}", backtest::MAX_CALLS))
            }
            (None, None, None) => {
                bad("say which calls: `last` (1 to 10000), or `since_ms` and `until_ms`".into())
            }
            (None, Some(since), Some(until)) if since >= until => bad(format!(
                "`since_ms` ({since}) must be before `until_ms` ({until})"
            )),
            (None, since_ms, until_ms) => Ok(Window::Range { since_ms, until_ms }),
        }
    }
}

/// Run a candidate version on the flow's recorded calls
///
/// Each recorded call (at most 10,000; in a time range, the newest 10,000) is run again on the
/// candidate with its recorded query, clock and randomness, and its answer compared with the
/// record's: the same outcome and, unless the plugin failed, the same branch and answer besides
/// it, is an agreement. Off the request path: on a thread at low priority (nice 19) taking at most
/// a quarter of one core, one call at a time, one backtest at a time in the server (503 while
/// another runs), for at most 20 s (the calls left are `unfinished`). Every call is a dry run (see `POST /v1/flows/{flow}/try`) with the
/// recorded call's fuel and the longest deadline a flow may have. Records written before
/// queries were kept, and async flows' records, are `skipped`.
#[utoipa::path(
    post,
    path = "/v1/flows/{flow}/backtest",
    operation_id = "backtestFlow",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow.")),
    request_body = BacktestRequest,
    responses(
        (status = 200, description = "What the candidate answered, compared.",
            body = BacktestReport),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such flow, or no such version of its plugin.",
            body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An async flow, or a version that does not export what \
                                      the flow calls.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Another backtest is running on this server, or as many \
                                      of the tenant's reads of decision records are waiting as \
                                      may (8).",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn post_backtest(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Json(body): Json<BacktestRequest>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let window = body.window()?;
    let live = live_flow(&state, &tenant, &flow)?;
    if live.mode == FlowMode::Async {
        return Err(ApiError::Unprocessable(format!(
            "flow {flow:?} is async: a backtest compares the answers of a sync flow's calls"
        )));
    }
    // The candidate first (loading it may compile it), holding nothing. Then its reads of the
    // recorded calls take the tenant's turn, as the API's reads of records do; then the
    // server's backtest, so that a backtest waiting for its tenant's turn does not keep every
    // other tenant's from running.
    let plugin = version_of(&state, &live, body.version).await?;
    let reading = state
        .record_reads
        .wait(&tenant)
        .await
        .map_err(|e| ApiError::Busy(e.to_string()))?;
    let claim = state
        .backtests
        .claim()
        .map_err(|e| ApiError::Busy(e.to_string()))?;
    let recorded = Recorded {
        store: state.registry.store().clone(),
        tenant,
        flow,
        window,
    };
    let candidate = Candidate {
        sandbox: state.registry.sandbox().clone(),
        plugin,
        version: body.version,
        mode: live.mode,
        hook: live.hook,
        fallback: live.fallback,
        fallbacks: live.fallbacks.clone(),
        limits: live.limits,
        grants: Arc::new(live.grants.dry_run()),
    };
    // Serialised on the backtest's thread too: a thousand differences are a few hundred
    // kilobytes of JSON, work that would otherwise hold a worker of the live calls.
    let json = backtest::run(
        candidate,
        recorded,
        claim,
        reading,
        |report: BacktestReport| serde_json::to_vec(&report),
    )
    .await
    .map_err(|error| match error {
        BacktestError::Busy => ApiError::Busy(error.to_string()),
        other => {
            tracing::error!(error = %crate::error::Chain(&other), "backtest failure");
            ApiError::Internal
        }
    })?
    .map_err(|_| ApiError::Internal)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    ))
}
