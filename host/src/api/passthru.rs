//! `GET /passthru/{tenant}/{flow}`: the request Exotel's Passthru applet sends.
//!
//! Sync flows: parse the query, run the flow's plugin, answer the branch's status. A failing
//! plugin gets the flow's fallback branch, within its deadline; the failure is logged with its
//! kind. Every call leaves a decision record through the recorder's channel (never waiting on the
//! store).
//!
//! Async flows: hand the request to the queue and answer `200` once it is committed, or `503`
//! (with a problem body) when the queue is full or cannot commit: Exotel then takes the call
//! flow's error path, and the request is counted, never silently lost.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::extract::Path;
use super::{ApiError, AppState};
use crate::call;
use crate::logsafe::Escaped;
use crate::queue::{AcceptError, NewEvent};
use crate::registry::Flow;
use crate::sandbox::{Branch, CallReport, trace_lines};
use crate::store::{DecisionRecord, FlowMode, now_ms};

/// The branch answered, for whoever reads the response by hand (Exotel reads only the status).
static BRANCH_HEADER: HeaderName = HeaderName::from_static("x-passthru-branch");
/// `decided`, or the failure kind when the fallback branch was answered; `queued` for async.
static OUTCOME_HEADER: HeaderName = HeaderName::from_static("x-passthru-outcome");
/// The queue's id of an async request: what `record` sees as the event's id.
static EVENT_HEADER: HeaderName = HeaderName::from_static("x-passthru-event");

pub(super) async fn get_passthru(
    State(state): State<AppState>,
    Path((tenant, flow)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    if query.len() > state.max_query_bytes {
        return Err(ApiError::QueryTooLong {
            len: query.len(),
            max: state.max_query_bytes,
        });
    }
    let Some(flow) = state.registry.get(&tenant, &flow) else {
        return Err(ApiError::UnknownFlow { tenant, flow });
    };
    if flow.mode == FlowMode::Async {
        return enqueue(&state, &flow, query).await;
    }
    let call = call::parse(&query);
    let call_sid = call.call_sid.clone();
    // The request's span (id, method, route) gets the flow and the call: one span per request.
    let span = tracing::Span::current();
    span.record("tenant", flow.tenant.as_str());
    span.record("flow", flow.name.as_str());
    if let Some(sid) = &call_sid {
        span.record("call_sid", tracing::field::display(Escaped(sid)));
    }
    let report = state
        .registry
        .sandbox()
        .decide(&flow.plugin, call, &flow.limits, flow.config.clone())
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    log_report(&report);

    let (branch, outcome, failure) = match &report.outcome {
        Ok(decision) => (decision.branch, "decided", None),
        Err(error) => (flow.fallback, error.kind().as_str(), Some(error.kind())),
    };
    flow.metrics
        .answered(failure, report.elapsed, report.fuel_used);
    let status = StatusCode::from_u16(flow.status.for_branch(branch))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(
        BRANCH_HEADER.clone(),
        HeaderValue::from_static(branch.as_str()),
    );
    headers.insert(OUTCOME_HEADER.clone(), HeaderValue::from_static(outcome));
    state
        .recorder
        .record(|| decision_record(&flow, call_sid, branch, outcome, report));
    Ok(response)
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
    call_sid: Option<String>,
    branch: Branch,
    outcome: &str,
    report: CallReport,
) -> DecisionRecord {
    let (reason, error) = match report.outcome {
        Ok(decision) => (decision.reason, None),
        Err(error) => (None, Some(error.to_string())),
    };
    DecisionRecord {
        id: 0,
        tenant: flow.tenant.clone(),
        flow: flow.name.clone(),
        plugin: flow.plugin_name.clone(),
        version: flow.version,
        call_sid,
        branch,
        outcome: outcome.to_owned(),
        reason,
        error,
        fuel_used: report.fuel_used,
        elapsed_us: report.elapsed.as_micros() as u64,
        log: report.log,
        log_dropped: report.log_dropped,
        at_ms: now_ms(),
    }
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
