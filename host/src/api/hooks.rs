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

use super::AppState;
use super::passthru::{BRANCH_HEADER, OUTCOME_HEADER};
use crate::call::CallDetails;
use crate::flow::http::hook_http;
use crate::logsafe::{Escaped, cut};
use crate::records::{Answer, Subject, Usage};
use crate::registry::Flow;
use crate::sandbox::{Answered, Branch, HookAnswer, HookExport, HookReport, trace_lines};
use crate::store::DecisionRecord;

/// The most of a text answer kept in its decision record.
const RECORDED_TEXT_BYTES: usize = 256;

/// One request of a hook.
pub(super) struct HookCall {
    pub(super) export: HookExport,
    pub(super) call: CallDetails,
    pub(super) call_sid: Option<String>,
    /// The request's `Exotel-Version` header (Connect and Gather send it).
    pub(super) exotel_version: Option<String>,
    /// Whether the call leaves a decision record (not for `HEAD`).
    pub(super) record: bool,
}

/// Runs the flow's plugin for one hook request and answers what it said, or the fallback.
pub(super) async fn answer_hook(state: &AppState, flow: &Flow, hook: HookCall) -> Response {
    let report = state
        .registry
        .sandbox()
        .answer(
            &flow.plugin,
            &flow.share,
            hook.export,
            hook.call,
            &flow.limits,
            flow.env(),
        )
        .await;
    log_report(&report);
    let (answered, outcome) = match &report.outcome {
        Ok(answered) => (answered.answer.clone(), "decided"),
        Err(error) => (fallback(flow, hook.export), error.kind().as_str()),
    };
    let failure = report.outcome.as_ref().err().map(|e| e.kind());
    flow.metrics
        .answered(failure, report.elapsed, report.fuel_used);
    let response = render(flow, &answered, outcome, hook.exotel_version.as_deref());
    if hook.record {
        let failed = report.outcome.is_err();
        let kept = state.recorder.record(failed, || {
            record(flow, hook.call_sid, &answered, outcome, report)
        });
        if !kept {
            flow.metrics.records_dropped.inc();
        }
    }
    response
}

/// The flow's fallback for `export`, as checked when the flow was stored. A flow is only stored
/// with the fallback its hook needs; were it missing, the answer is the fallback branch alone
/// (`switch`) or an empty text, never a panic.
fn fallback(flow: &Flow, export: HookExport) -> HookAnswer {
    let fallbacks = &flow.fallbacks;
    match (export, &fallbacks.connect, &fallbacks.gather) {
        (HookExport::Select, _, _) => HookAnswer::Select {
            branch: flow.fallback,
            case: fallbacks.case.clone(),
        },
        (HookExport::Greeting | HookExport::Sms, _, _) => {
            HookAnswer::Text(fallbacks.text.clone().unwrap_or_default())
        }
        (HookExport::Connect, Some(plan), _) => HookAnswer::Connect(plan.clone()),
        (HookExport::Gather, _, Some(plan)) => HookAnswer::Gather(plan.clone()),
        (HookExport::Connect | HookExport::Gather, _, _) => HookAnswer::Text(String::new()),
    }
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

/// What the record keeps of an answer besides the branch.
fn summary(answer: &HookAnswer) -> (Branch, Option<String>) {
    match answer {
        HookAnswer::Select { branch, case } => (*branch, case.clone()),
        HookAnswer::Text(text) => (
            Branch::Success,
            Some(cut(text, RECORDED_TEXT_BYTES).to_owned()),
        ),
        HookAnswer::Connect(plan) => (Branch::Success, Some(plan.summary())),
        HookAnswer::Gather(plan) => (Branch::Success, Some(plan.summary())),
    }
}

fn record(
    flow: &Flow,
    call_sid: Option<String>,
    answered: &HookAnswer,
    outcome: &str,
    report: HookReport,
) -> DecisionRecord {
    let (result, usage) = Usage::of(report);
    let (mut branch, answer) = summary(answered);
    let (reason, error) = match result {
        Ok(Answered { reason, .. }) => (reason, None),
        Err(error) => {
            // A text or a plan has no branch of its own: its fallback is recorded as `failure`.
            if !matches!(answered, HookAnswer::Select { .. }) {
                branch = Branch::Failure;
            }
            (None, Some(error.to_string()))
        }
    };
    let subject = Subject {
        tenant: &flow.tenant,
        flow: &flow.name,
        plugin: &flow.plugin_name,
        version: flow.version,
    };
    let answer = Answer {
        branch,
        outcome: outcome.to_owned(),
        reason,
        error,
        answer,
    };
    DecisionRecord::new(subject, call_sid, answer, usage)
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
