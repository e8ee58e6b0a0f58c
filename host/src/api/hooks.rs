//! The answers of the hooks other than Passthru's two branches, on the same URL: a Switchcase
//! case (`switch`), a text (`greeting`, `sms`), a plan (`connect`, `gather`). Each runs the
//! flow's plugin on the one path every call takes, and answers the flow's fallback within the
//! deadline when the plugin fails or answers what Exotel could not read.
//!
//! `HEAD` runs the plugin too, so that its headers (`Content-Length` with them) are exactly the
//! `GET`'s; it leaves no decision record, since Exotel follows it with the `GET` that counts.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::passthru::{BRANCH_HEADER, OUTCOME_HEADER, RequestSpan};
use crate::call::CallDetails;
use crate::flow::http::hook_http;
use crate::logsafe::Escaped;
use crate::records::Answer;
use crate::registry::Flow;
use crate::rollout::{FallbackOf, hook_verdict, replay_of};
use crate::sandbox::{CallSeed, HookAnswer, HookExport, HookReport, trace_lines};
use crate::store::DecisionRecord;

/// One request of a hook.
pub(super) struct HookCall {
    pub(super) export: HookExport,
    pub(super) call: CallDetails,
    pub(super) call_sid: Option<String>,
    /// The query string as received, kept in the decision record.
    pub(super) query: String,
    /// The `Exotel-Version` header (Connect and Gather send it).
    pub(super) exotel_version: Option<String>,
    /// Whether the call is a `GET`, which is recorded, counted in the flow's decisions, time and
    /// fuel, and runs with the flow's grants. A `HEAD` is none of these: it runs as a dry run
    /// (`live_or_dry_run`).
    pub(super) record: bool,
}

/// Runs the flow's plugin (or its canary, by `CallSid`) for one hook request and answers what it
/// said, or the fallback.
pub(super) async fn answer_hook(
    state: &AppState,
    flow: &Flow,
    hook: HookCall,
    span: &RequestSpan<'_>,
) -> Response {
    let seed = CallSeed::fresh();
    let (version, plugin) = flow.pick(hook.call_sid.as_deref());
    let report = state
        .registry
        .sandbox()
        .answer_seeded(
            plugin,
            &flow.share,
            hook.export,
            hook.call,
            &flow.limits,
            super::passthru::live_or_dry_run(flow, hook.record),
            seed,
        )
        .instrument(span.for_call(hook.call_sid.as_deref()))
        .await;
    if let Some(span) = span.for_log(report.outcome.is_err(), hook.call_sid.as_deref()) {
        let _entered = span.enter();
        log_report(&report);
    }
    let failure = report.outcome.as_ref().err().map(|e| e.kind());
    if hook.record {
        flow.metrics
            .answered(failure, report.elapsed, report.fuel_used);
    } else {
        // A `HEAD`'s dry run is not counted as a call, as one through the API is not, but
        // counted.
        flow.metrics.dry_run();
    }
    let failed = report.outcome.is_err();
    let (verdict, answered, usage) =
        hook_verdict(version, FallbackOf::flow(flow), hook.export, report);
    let outcome = match failure {
        Some(kind) => kind.as_str(),
        None => "decided",
    };
    let response = render(flow, &answered, outcome, hook.exotel_version.as_deref());
    if hook.record {
        let kept = state.recorder.record(failed, || {
            let fuel = flow.limits.fuel;
            let mut record = DecisionRecord::new(
                flow.subject_of(version),
                hook.call_sid,
                Answer {
                    branch: verdict.branch,
                    outcome: verdict.outcome,
                    reason: verdict.reason,
                    error: verdict.error,
                    answer: verdict.answer,
                },
                usage,
            );
            record.query = Some(hook.query);
            record.replay = Some(replay_of(&seed, hook.export.name(), fuel));
            record
        });
        if !kept {
            flow.metrics.records_dropped.inc();
        }
    }
    response
}

fn render(
    flow: &Flow,
    answer: &HookAnswer,
    outcome: &'static str,
    version: Option<&str>,
) -> Response {
    let http = hook_http(answer, &flow.status, version);
    let status = StatusCode::from_u16(http.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match http.body {
        Some(body) => (status, Body::from(body)).into_response(),
        None => status.into_response(),
    };
    let headers = response.headers_mut();
    if let Some(content_type) = http.content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Some(branch) = http.branch {
        headers.insert(
            BRANCH_HEADER.clone(),
            HeaderValue::from_static(branch.as_str()),
        );
    }
    headers.insert(OUTCOME_HEADER.clone(), HeaderValue::from_static(outcome));
    response
}

fn log_report(report: &HookReport) {
    let elapsed_us = report.elapsed.as_micros() as u64;
    match &report.outcome {
        Ok(answered) => tracing::debug!(
            reason = %Escaped(answered.reason.as_deref().unwrap_or("")),
            fuel = report.fuel_used,
            elapsed_us,
            "answered"
        ),
        Err(error) => tracing::warn!(
            kind = error.kind().as_str(),
            error = %Escaped(&error.to_string()),
            fuel = report.fuel_used,
            elapsed_us,
            "plugin failed; answered the fallback"
        ),
    }
    trace_lines(&report.log);
}
