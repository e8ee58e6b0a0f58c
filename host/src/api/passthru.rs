//! `GET /passthru/{tenant}/{flow}`: the request Exotel's Passthru applet sends.
//!
//! Sync flows: decode the query's parameters, run the flow's plugin (which reads the typed fields
//! it wants from them, or gets the whole typed call), answer the branch's status. A failing
//! plugin gets the flow's fallback branch, within its deadline; the failure is logged with its
//! kind. Every `GET` leaves a decision record through the recorder's channel (never waiting on
//! the store).
//!
//! A flow may require a secret in its URL (`key`, the last path segment) or HTTP Basic
//! credentials (`basic`), checked against the digest in its live snapshot: a missing or wrong
//! secret is answered exactly like an unknown flow (docs/url-auth.md).
//!
//! The server answers these routes before its router ([`direct`]), which has them too: for the
//! requests `direct` leaves to it and for the OpenAPI document.
//!
//! Async flows: hand the request to the queue and answer `200` once it is committed, or `503`
//! (with a problem body) when the queue is full or cannot commit: Exotel then takes the call
//! flow's error path, and the request is counted, never silently lost.
//!
//! `HEAD` leaves nothing behind in the server: on a sync flow it runs the plugin as a dry run (its
//! key-value writes seen by the call alone, every outbound request refused), so that its status
//! and headers are the `GET`'s, and leaves no decision record and is not counted in the flow's
//! decisions, time or fuel (as the other hooks do); on an async flow it answers `200` and
//! queues nothing, so no `record` runs.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::{RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::extract::Path;
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::call;
use crate::flow::{FlowMode, Name, UrlAuth};
use crate::logsafe::Escaped;
use crate::queue::{AcceptError, NewEvent};
use crate::records::{Answer, Usage};
use crate::registry::Flow;
use crate::rollout::replay_of;
use crate::sandbox::{Branch, CallReport, CallSeed, Grants, trace_lines};
use crate::store::{DecisionRecord, now_ms};

/// The Passthru route's template, as the request spans and metrics name routes.
pub(super) const PASSTHRU_ROUTE: &str = "/passthru/{tenant}/{flow}";
/// The same with a flow's secret as the last segment (flows whose URL auth is `key`). Spans
/// name this template, never the path as sent: the key must not reach a log.
pub(super) const PASSTHRU_KEY_ROUTE: &str = "/passthru/{tenant}/{flow}/{key}";

/// The branch answered, for whoever reads the response by hand (Exotel reads only the status).
pub(super) static BRANCH_HEADER: HeaderName = HeaderName::from_static("x-passthru-branch");
/// `decided`, or the failure kind when the fallback branch was answered; `queued` for async.
pub(super) static OUTCOME_HEADER: HeaderName = HeaderName::from_static("x-passthru-outcome");
/// The queue's id of an async request: what `record` sees as the event's id.
static EVENT_HEADER: HeaderName = HeaderName::from_static("x-passthru-event");

/// Decide the branch of a live call (sync flows), or queue it (async flows)
///
/// The URL to configure in Exotel's Passthru applet. Every query parameter Exotel sends is
/// accepted, in any subset, with any extra parameter; none is mandatory. The plugin sees them
/// typed (see wit/passthru.wit) and raw. A flow in async mode answers 200 as soon as the request
/// is durably committed to the queue (the plugin's `record` export runs later, in the background,
/// with retries), and 503 when it could not be kept. A flow whose URL auth is `basic` needs its
/// credentials (Authorization: Basic); one whose URL auth is `key` is called at
/// /passthru/{tenant}/{flow}/{key} instead.
///
/// A flow may serve another of Exotel's URL hooks (its `hook`, docs/hooks.md): `switch` answers
/// the branch's status with the text/plain body {"select":"CASE"} when the plugin names a case;
/// `greeting` and `sms` answer 200 with a text/plain body; `connect` and `gather` answer 200 with
/// an application/json plan, shaped by the request's Exotel-Version header.
///
/// HEAD answers without a body, and the server keeps and queues nothing for it. On a sync flow it
/// runs the plugin as a dry run (key-value writes seen by the call alone, outbound requests
/// refused) and answers the GET's status and headers (unless the plugin's answer depends on an
/// outbound request's), writes no decision record, and is not counted in the flow's decisions,
/// time or fuel. On an async flow it answers 200 and queues nothing (so the plugin's record
/// does not run, and neither x-passthru-outcome nor x-passthru-event is sent).
#[utoipa::path(
    get,
    path = "/passthru/{tenant}/{flow}",
    operation_id = "getPassthru",
    tag = "passthru",
    params(
        ("tenant" = Name, Path, description = "The tenant."),
        ("flow" = Name, Path, description = "The tenant's flow."),
        ("CallSid" = Option<String>, Query, description = "Exotel's id of the call."),
        ("CallFrom" = Option<String>, Query, description = "The caller's number."),
        ("CallTo" = Option<String>, Query, description = "The number called."),
        ("From" = Option<String>, Query),
        ("To" = Option<String>, Query),
        ("Direction" = Option<String>, Query, example = "incoming"),
        ("CallType" = Option<String>, Query, example = "call-attempt"),
        ("DialCallStatus" = Option<String>, Query),
        ("digits" = Option<String>, Query, example = "\"1\"",
            description = "Keys pressed, wrapped by Exotel in double quotes (%22215250%22)."),
        ("CustomField" = Option<String>, Query),
        ("Created" = Option<String>, Query,
            description = "India time, either 2024-07-31 16:42:56 or Wed, 31 Jul 2024 16:42:56."),
    ),
    responses(
        (status = 200,
            description = "Sync flows: the success branch (the default mapping; a flow may choose \
                           other statuses), with the hook's body for flows whose hook is not \
                           passthru (text/plain or application/json, docs/hooks.md). Async \
                           flows: the request is committed to the queue (x-passthru-outcome is \
                           queued, x-passthru-event its id); a HEAD queues nothing and sends \
                           neither header.",
            headers(
                ("x-passthru-branch" = Branch, description = "Sync flows: the branch answered."),
                ("x-passthru-outcome" = String, description = "Sync flows: decided, or the failure kind (FailureKind) when the fallback branch was answered. Async flows: queued (not sent for a HEAD)."),
                ("x-passthru-event" = u64, description = "Async flows: the queue's id of the request, the id record receives on every attempt (not sent for a HEAD)."),
            )),
        (status = 302,
            description = "The failure branch (the default mapping). Not a redirect: there is no \
                           Location.",
            headers(
                ("x-passthru-branch" = Branch, description = "The branch answered."),
                ("x-passthru-outcome" = String, description = "Sync flows: decided, or the failure kind (FailureKind) when the fallback branch was answered. Async flows: queued."),
            )),
        (status = 400, description = "A path segment that does not percent-decode to UTF-8.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant or flow (or the tenant is disabled), or a \
                                      flow whose URL auth is key or basic called without its \
                                      secret: the same answer byte for byte.",
            body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The query string is longer than the server's \
                                      max_query_bytes.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503,
            description = "Async flows only: the request was not kept, so the call flow takes \
                           its error path. Problem type urn:passthru:problem:queue-full when the \
                           queue (or the tenant's share of it) is at its bound, \
                           urn:passthru:problem:queue-unavailable when it cannot commit or the \
                           server is shutting down. Counted in /metrics.",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn get_passthru(
    State(state): State<AppState>,
    Path((tenant, flow)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: CallHeaders,
) -> Result<Response, ApiError> {
    let request = Request {
        tenant,
        flow,
        key: None,
        route: PASSTHRU_ROUTE,
    };
    answer(state, request, query, method, headers).await
}

/// The same, for a flow whose URL carries its secret
///
/// The URL to paste into Exotel for a flow whose URL auth is `key` (see `POST
/// /v1/flows/{flow}/auth`): the same request as `/passthru/{tenant}/{flow}`, with the flow's
/// secret as the last path segment. A missing or wrong key is answered exactly like an unknown
/// flow, so a prober cannot tell a protected flow from a missing one.
#[utoipa::path(
    get,
    path = "/passthru/{tenant}/{flow}/{key}",
    operation_id = "getPassthruWithKey",
    tag = "passthru",
    params(
        ("tenant" = Name, Path, description = "The tenant."),
        ("flow" = Name, Path, description = "The tenant's flow."),
        ("key" = String, Path, description = "The flow's secret, as POST /v1/flows/{flow}/auth \
                                              returned it."),
        ("CallSid" = Option<String>, Query, description = "Exotel's id of the call; every \
                                                           parameter of /passthru/{tenant}/{flow} \
                                                           is accepted alike."),
    ),
    responses(
        (status = 200, description = "As for /passthru/{tenant}/{flow}."),
        (status = 302, description = "As for /passthru/{tenant}/{flow}."),
        (status = 400, description = "A path segment that does not percent-decode to UTF-8.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant or flow, or a missing or wrong key: the \
                                      same answer byte for byte.",
            body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The query string is longer than the server's \
                                      max_query_bytes.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "As for /passthru/{tenant}/{flow} (async flows only).",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn get_passthru_with_key(
    State(state): State<AppState>,
    Path((tenant, flow, key)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: CallHeaders,
) -> Result<Response, ApiError> {
    let request = Request {
        tenant,
        flow,
        key: Some(key),
        route: PASSTHRU_KEY_ROUTE,
    };
    answer(state, request, query, method, headers).await
}

/// A Passthru request, answered without the router: `GET` or `HEAD` of
/// `/passthru/{tenant}/{flow}` or `/passthru/{tenant}/{flow}/{key}`, each segment non-empty and
/// percent-decoded to UTF-8. Anything else is handed back (`Err`) for the router to answer as it
/// always has: another method (405), another shape (404), a segment that does not decode (400).
///
/// The router has both routes too, with their OpenAPI documents; `api::serve` calls this first
/// because routing, the extractors and the request-id layers cost the hot path about as much as
/// the rest of its HTTP handling (BENCHMARKS.md, issue 14, round 8). The answer is the router's,
/// byte for byte (tests/url_auth.rs compares them): the request's id is made when missing and
/// echoed, and a body's length is set even for a `HEAD`, as axum does.
// The request goes back by value, moved once, rather than boxed on every request the router
// answers.
#[allow(clippy::result_large_err)]
pub(super) fn direct<B>(
    state: &AppState,
    request: axum::http::Request<B>,
) -> Result<impl Future<Output = Response> + Send + use<B>, axum::http::Request<B>> {
    let Some(path) = parse_path(&request) else {
        return Err(request);
    };
    let headers = request.headers();
    let request_id = match headers.get(&REQUEST_ID) {
        Some(id) => id.clone(),
        None => super::next_request_id(),
    };
    let call_headers = CallHeaders {
        authorization: headers.get(header::AUTHORIZATION).cloned(),
        request_id: Some(request_id.clone()),
        exotel_version: headers.get(&EXOTEL_VERSION).cloned(),
    };
    let query = request.uri().query().map(str::to_owned);
    let method = request.method().clone();
    let state = state.clone();
    Ok(async move {
        let mut response = answer(state, path, query, method, call_headers)
            .await
            .into_response();
        // What the router's layers add: the request's id (`PropagateRequestIdLayer`), and the
        // length of a body whose size is known, which axum sets for a `HEAD` too (hyper, which
        // sends no body to a `HEAD`, would not).
        let length = http_body::Body::size_hint(response.body()).exact();
        let headers = response.headers_mut();
        headers.entry(&REQUEST_ID).or_insert(request_id);
        if let Some(length) = length
            && !headers.contains_key(header::CONTENT_LENGTH)
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        response
    })
}

/// The tenant, flow and key of a `GET` or `HEAD` the router would send to one of the Passthru
/// routes and whose segments its `Path` extractor would decode; `None` for any other request.
fn parse_path<B>(request: &axum::http::Request<B>) -> Option<Request> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return None;
    }
    let mut segments = request.uri().path().strip_prefix("/passthru/")?.split('/');
    // `Some(None)` past the last segment; `None` for an empty segment or one that does not
    // decode (which the router answers).
    let mut next = || -> Option<Option<String>> {
        match segments.next() {
            None => Some(None),
            Some("") => None,
            Some(segment) => percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()
                .map(|decoded| Some(decoded.into_owned())),
        }
    };
    let tenant = next()??;
    let flow = next()??;
    let key = next()?;
    if next()?.is_some() {
        return None;
    }
    let route = match key {
        Some(_) => PASSTHRU_KEY_ROUTE,
        None => PASSTHRU_ROUTE,
    };
    Some(Request {
        tenant,
        flow,
        key,
        route,
    })
}

/// The headers a Passthru request is answered with: taken from the request one by one, rather
/// than a copy of its whole header map.
pub(super) struct CallHeaders {
    /// For a flow whose URL auth is `basic`.
    authorization: Option<HeaderValue>,
    /// The request's id (set by the request-id layer when the client sent none), for the span.
    request_id: Option<HeaderValue>,
    /// What shapes Connect's and Gather's answers.
    exotel_version: Option<HeaderValue>,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static EXOTEL_VERSION: HeaderName = HeaderName::from_static("exotel-version");

impl<S: Sync> FromRequestParts<S> for CallHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        Ok(Self {
            authorization: headers.get(header::AUTHORIZATION).cloned(),
            request_id: headers.get(&REQUEST_ID).cloned(),
            exotel_version: headers.get(&EXOTEL_VERSION).cloned(),
        })
    }
}

/// What the path of a Passthru request says.
struct Request {
    tenant: String,
    flow: String,
    /// The last path segment of `/passthru/{tenant}/{flow}/{key}`.
    key: Option<String>,
    /// The route's template, for the span.
    route: &'static str,
}

async fn answer(
    state: AppState,
    request: Request,
    query: Option<String>,
    method: Method,
    headers: CallHeaders,
) -> Result<Response, ApiError> {
    let Request {
        tenant,
        flow,
        key,
        route,
    } = request;
    let query = query.unwrap_or_default();
    if query.len() > state.max_query_bytes {
        return Err(ApiError::QueryTooLong {
            len: query.len(),
            max: state.max_query_bytes,
        });
    }
    let authorization = headers.authorization.as_ref().map(HeaderValue::as_bytes);
    let Some(live) = state.registry.get(&tenant, &flow) else {
        // The same work a flow's check would do with what was presented, so that a refusal
        // takes no longer than a missing flow's answer.
        std::hint::black_box(UrlAuth::decoy().admits(key.as_deref(), authorization));
        return Err(ApiError::UnknownFlow { tenant, flow });
    };
    if !live.auth.admits(key.as_deref(), authorization) {
        // Answered exactly as if the flow did not exist (the same error from the same path
        // values), and counted; nothing is logged, so the presented secret goes nowhere.
        live.metrics.auth_refused();
        return Err(ApiError::UnknownFlow { tenant, flow });
    }
    let flow = live;
    if flow.mode == FlowMode::Async {
        if method == Method::HEAD {
            // Nothing is queued, so there is no event (and no id) to tell of.
            return Ok(StatusCode::OK.into_response());
        }
        return enqueue(&state, &flow, query).await;
    }
    // Decoded only into its parameters: the typed call is built for the plugins that take it
    // whole, and a `decide-lean` plugin reads just the fields it asks for.
    let params = call::params(&query);
    let call_sid = call::field::text(&params, call::name::CALL_SID);
    // The request's span, with every field at once (the trace layer that gives the other routes
    // theirs does not wrap this one: it cost the hot path more than the span).
    let id = headers
        .request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let make_span = |call_sid: Option<&str>| {
        tracing::info_span!(
            "request",
            id = %Escaped(crate::logsafe::cut(id, 64)),
            method = %method,
            route,
            tenant = %flow.tenant,
            flow = %flow.name,
            call_sid = %Escaped(call_sid.unwrap_or("")),
        )
    };
    let span = RequestSpan::new(&make_span);
    if let Some(export) = flow.hook.export() {
        let hook = super::hooks::HookCall {
            export,
            call: call::CallDetails::from_params(params),
            call_sid,
            query,
            exotel_version: headers
                .exotel_version
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            record: method != Method::HEAD,
        };
        return Ok(super::hooks::answer_hook(&state, &flow, hook, &span).await);
    }
    // The canary answers its share of the calls, by CallSid; the seed makes the call's clocks
    // and randomness replayable, and goes to its record.
    let (version, plugin) = flow.pick(call_sid.as_deref());
    let seed = CallSeed::fresh();
    // Boxed: the call's future is large, and every future that holds it inline (this one, the
    // server's, hyper's) would be copied whole each time it moves.
    let call = Box::pin(state.registry.sandbox().decide_seeded(
        plugin,
        &flow.share,
        params,
        &flow.limits,
        live_or_dry_run(&flow, method != Method::HEAD),
        seed,
    ));
    let report = call.instrument(span.for_call(call_sid.as_deref())).await;
    if let Some(span) = span.for_log(report.outcome.is_err(), call_sid.as_deref()) {
        let _entered = span.enter();
        log_report(&report);
    }

    let (branch, outcome, failure) = match &report.outcome {
        Ok(decision) => (decision.branch, "decided", None),
        Err(error) => (flow.fallback, error.kind().as_str(), Some(error.kind())),
    };
    if method == Method::HEAD {
        // A dry run: not counted as a call, as one through the API is not, but counted.
        flow.metrics.dry_run();
    } else {
        flow.metrics
            .answered(failure, report.elapsed, report.fuel_used);
    }
    let status = StatusCode::from_u16(flow.status.for_branch(branch))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(
        BRANCH_HEADER.clone(),
        HeaderValue::from_static(branch.as_str()),
    );
    headers.insert(OUTCOME_HEADER.clone(), HeaderValue::from_static(outcome));
    if method == Method::HEAD {
        // The GET's status and headers, without its record (as the other hooks answer a HEAD).
        return Ok(response);
    }
    let failed = report.outcome.is_err();
    let kept = state.recorder.record(failed, || {
        let mut record = decision_record(&flow, version, call_sid, branch, outcome, report);
        record.query = Some(query);
        record.replay = Some(replay_of(&seed, "decide", flow.limits.fuel));
        record
    });
    if !kept {
        flow.metrics.records_dropped.inc();
    }
    Ok(response)
}

/// What a request's call is granted: the flow's grants for a `GET`; for a `HEAD`, which leaves
/// nothing behind, a dry run's (its key-value writes seen by the call alone, every outbound
/// request refused), as `POST /v1/flows/{flow}/try` runs.
pub(super) fn live_or_dry_run(flow: &Flow, live: bool) -> Arc<Grants> {
    if live {
        flow.grants.clone()
    } else {
        Arc::new(flow.grants.dry_run())
    }
}

/// A Passthru request's span, made only when something may be logged in it.
///
/// At the default level nothing is logged for a call that decided: its decision and the
/// plugin's lines are debug events. Making the span costs more than a microsecond per request
/// (the log formatter writes its six fields out as it is made), so it is made before the call
/// only when debug events are on for this path or for plugins' lines, and otherwise after the
/// call, for a failure's warning.
pub(super) struct RequestSpan<'a> {
    /// Makes the span, with the call's `CallSid`.
    make: &'a (dyn Fn(Option<&str>) -> tracing::Span + Sync),
    /// Whether debug events are on for the answer or for the plugin's lines.
    verbose: bool,
}

impl<'a> RequestSpan<'a> {
    fn new(make: &'a (dyn Fn(Option<&str>) -> tracing::Span + Sync)) -> Self {
        let verbose = tracing::enabled!(target: "passthru::api::passthru", tracing::Level::DEBUG)
            || tracing::enabled!(target: "passthru::api::hooks", tracing::Level::DEBUG)
            || tracing::enabled!(target: "passthru::plugin", tracing::Level::DEBUG);
        Self { make, verbose }
    }

    /// The span the plugin's call runs in: the request's when debug events are on, none
    /// otherwise (the call itself logs only a host failure, which its failure's warning repeats
    /// with the request's fields).
    pub(super) fn for_call(&self, call_sid: Option<&str>) -> tracing::Span {
        match self.verbose {
            true => (self.make)(call_sid),
            false => tracing::Span::none(),
        }
    }

    /// The span to log the call's outcome in, if anything will be logged: always for a failure,
    /// for a decision only when debug events are on.
    pub(super) fn for_log(&self, failed: bool, call_sid: Option<&str>) -> Option<tracing::Span> {
        (failed || self.verbose).then(|| (self.make)(call_sid))
    }
}

async fn enqueue(state: &AppState, flow: &Flow, query: String) -> Result<Response, ApiError> {
    let event = NewEvent {
        tenant: flow.tenant.clone(),
        flow: flow.name.clone(),
        call_sid: call::call_sid(&query),
        query,
        accepted_at_ms: now_ms(),
    };
    match state.queue.accept(event).await {
        Ok(id) => {
            flow.metrics.queued();
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            headers.insert(OUTCOME_HEADER.clone(), HeaderValue::from_static("queued"));
            headers.insert(EVENT_HEADER.clone(), HeaderValue::from(id));
            Ok(response)
        }
        Err(AcceptError::Full(detail)) => Err(ApiError::QueueFull(detail)),
        Err(AcceptError::Unavailable(detail)) => Err(ApiError::QueueUnavailable(detail)),
    }
}

fn decision_record(
    flow: &Flow,
    version: u32,
    call_sid: Option<String>,
    branch: Branch,
    outcome: &str,
    report: CallReport,
) -> DecisionRecord {
    let (result, usage) = Usage::of(report);
    let (reason, error) = match result {
        Ok(decision) => (decision.reason, None),
        Err(error) => (None, Some(error.to_string())),
    };
    let subject = flow.subject_of(version);
    let answer = Answer {
        branch,
        outcome: outcome.to_owned(),
        reason,
        error,
        answer: None,
    };
    DecisionRecord::new(subject, call_sid, answer, usage)
}

fn log_report(report: &CallReport) {
    let elapsed_us = report.elapsed.as_micros() as u64;
    match &report.outcome {
        Ok(decision) => tracing::debug!(
            branch = decision.branch.as_str(),
            reason = %Escaped(decision.reason.as_deref().unwrap_or("")),
            fuel = report.fuel_used,
            elapsed_us,
            "decided"
        ),
        Err(error) => tracing::warn!(
            kind = error.kind().as_str(),
            error = %Escaped(&error.to_string()),
            fuel = report.fuel_used,
            elapsed_us,
            "plugin failed; answered the fallback branch"
        ),
    }
    trace_lines(&report.log);
}
