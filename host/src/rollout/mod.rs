//! Rolling a new version out safely: a canary that answers a share of the calls ([`canary`](crate::flow::canary)),
//! dry runs of one query (`POST /v1/flows/{flow}/try`), backtests of a candidate against recorded
//! calls ([`backtest`]), and what a call came to, in the terms a decision record uses
//! ([`Verdict`]), so that a new answer and a recorded one compare field by field.
//!
//! Everything here runs off the request path: dry runs in the admin API's handler, backtests on
//! a thread of their own at low priority, paced (see [`backtest`]).

pub mod backtest;

use std::sync::Arc;

use serde::Serialize;

use crate::call::{self, CallDetails};
use crate::flow::{FlowMode, Hook};
use crate::logsafe::cut as cut_text;
use crate::records::Usage;
use crate::registry::{Fallbacks, Flow};
use crate::sandbox::{
    Answered, Branch, CallReport, CallSeed, Event, Grants, HookAnswer, HookExport, HookReport,
    Limits, Plugin, RecordReport, Sandbox, TenantShare,
};
use crate::store::{DecisionRecord, Replay};

/// The most of a text answer kept in a decision record (and compared).
pub const RECORDED_TEXT_BYTES: usize = 256;

/// What a call came to, as its decision record says it: the version that answered, the branch,
/// the outcome, what a hook answered besides the branch, the plugin's reason or the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub version: u32,
    pub branch: Branch,
    /// `decided` (`recorded` for async flows), or the failure kind when the fallback was
    /// answered.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub fuel_used: u64,
}

impl Verdict {
    /// What a decision record says was answered.
    pub fn of_record(record: &DecisionRecord) -> Self {
        Self {
            version: record.version,
            branch: record.branch,
            outcome: record.outcome.clone(),
            answer: record.answer.clone(),
            reason: record.reason.clone(),
            error: record.error.clone(),
            fuel_used: record.fuel_used,
        }
    }

    /// Whether the plugin failed (and the fallback was answered).
    pub fn failed(&self) -> bool {
        !matches!(self.outcome.as_str(), "decided" | "recorded")
    }

    /// Two answers agree when they have the same outcome and, when the plugin did not fail, the
    /// same branch and the same answer besides it. Reasons, errors' wording and fuel may differ.
    pub fn agrees(&self, other: &Verdict) -> bool {
        self.outcome == other.outcome
            && (self.failed() || (self.branch == other.branch && self.answer == other.answer))
    }
}

/// What a flow answers when its plugin fails: the branch, and for hooks the rest.
#[derive(Debug, Clone, Copy)]
pub struct FallbackOf<'a> {
    pub branch: Branch,
    pub answers: &'a Fallbacks,
}

impl<'a> FallbackOf<'a> {
    pub fn flow(flow: &'a Flow) -> Self {
        Self {
            branch: flow.fallback,
            answers: &flow.fallbacks,
        }
    }

    /// The flow's fallback for `export`, as checked when the flow was stored. A flow is only
    /// stored with the fallback its hook needs; were it missing, the answer is the fallback
    /// branch alone (`switch`) or an empty text, never a panic.
    pub fn hook_answer(&self, export: HookExport) -> HookAnswer {
        let fallbacks = self.answers;
        match (export, &fallbacks.connect, &fallbacks.gather) {
            (HookExport::Select, _, _) => HookAnswer::Select {
                branch: self.branch,
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
}

/// What a record keeps of a hook's answer besides the branch.
pub fn hook_summary(answer: &HookAnswer) -> (Branch, Option<String>) {
    match answer {
        HookAnswer::Select { branch, case } => (*branch, case.clone()),
        HookAnswer::Text(text) => (
            Branch::Success,
            Some(cut_text(text, RECORDED_TEXT_BYTES).to_owned()),
        ),
        HookAnswer::Connect(plan) => (Branch::Success, Some(plan.summary())),
        HookAnswer::Gather(plan) => (Branch::Success, Some(plan.summary())),
    }
}

/// A `decide` call's verdict: the plugin's branch, or the fallback's.
pub fn decision_verdict(version: u32, fallback: Branch, report: CallReport) -> (Verdict, Usage) {
    let (result, usage) = Usage::of(report);
    let verdict = match result {
        Ok(decision) => Verdict {
            version,
            branch: decision.branch,
            outcome: "decided".to_owned(),
            answer: None,
            reason: decision.reason,
            error: None,
            fuel_used: usage.fuel_used,
        },
        Err(error) => failed(version, fallback, None, &error, &usage),
    };
    (verdict, usage)
}

/// A hook call's verdict and the answer to send: the plugin's, or the fallback's. A text or a
/// plan has no branch of its own: its fallback is recorded as `failure`.
pub fn hook_verdict(
    version: u32,
    fallback: FallbackOf<'_>,
    export: HookExport,
    report: HookReport,
) -> (Verdict, HookAnswer, Usage) {
    let (result, usage) = Usage::of(report);
    match result {
        Ok(Answered { answer, reason }) => {
            let (branch, summary) = hook_summary(&answer);
            let verdict = Verdict {
                version,
                branch,
                outcome: "decided".to_owned(),
                answer: summary,
                reason,
                error: None,
                fuel_used: usage.fuel_used,
            };
            (verdict, answer, usage)
        }
        Err(error) => {
            let answer = fallback.hook_answer(export);
            let (mut branch, summary) = hook_summary(&answer);
            if !matches!(answer, HookAnswer::Select { .. }) {
                branch = Branch::Failure;
            }
            let verdict = failed(version, branch, summary, &error, &usage);
            (verdict, answer, usage)
        }
    }
}

/// A `record` call's verdict: `success` and `recorded` when the plugin handled the event.
pub fn record_verdict(version: u32, report: RecordReport) -> (Verdict, Usage) {
    let (result, usage) = Usage::of(report);
    let verdict = match result {
        Ok(()) => Verdict {
            version,
            branch: Branch::Success,
            outcome: "recorded".to_owned(),
            answer: None,
            reason: None,
            error: None,
            fuel_used: usage.fuel_used,
        },
        Err(error) => failed(version, Branch::Failure, None, &error, &usage),
    };
    (verdict, usage)
}

fn failed(
    version: u32,
    branch: Branch,
    answer: Option<String>,
    error: &crate::sandbox::SandboxError,
    usage: &Usage,
) -> Verdict {
    Verdict {
        version,
        branch,
        outcome: error.kind().as_str().to_owned(),
        answer,
        reason: None,
        error: Some(error.to_string()),
        fuel_used: usage.fuel_used,
    }
}

/// The export a flow calls, by the name replays record.
pub fn export_name(mode: FlowMode, hook: Hook) -> &'static str {
    match hook.export() {
        Some(export) => export.name(),
        None => mode.export(),
    }
}

/// What a call of a flow's plugin outside the request path needs: a loaded version, what it is
/// granted, its limits, and the flow's calling convention and fallbacks.
pub struct Rehearsal<'a> {
    pub sandbox: &'a Sandbox,
    pub plugin: &'a Plugin,
    pub version: u32,
    pub share: &'a TenantShare,
    pub mode: FlowMode,
    pub hook: Hook,
    pub fallback: FallbackOf<'a>,
    pub limits: Limits,
    pub grants: Arc<Grants>,
}

/// What a rehearsed call came to.
pub struct Rehearsed {
    pub verdict: Verdict,
    pub usage: Usage,
    pub call: CallDetails,
}

impl Rehearsal<'_> {
    /// Runs the flow's export on `query` with `seed`: `decide`, a hook's export, or `record` as
    /// the first attempt of an event numbered 0 accepted at the seed's clock.
    pub async fn run(&self, query: &str, seed: CallSeed) -> Rehearsed {
        let details = call::parse(query);
        let call = details.clone();
        let grants = self.grants.clone();
        let (verdict, usage) = match (self.mode, self.hook.export()) {
            (_, Some(export)) => {
                let report = self
                    .sandbox
                    .answer_seeded(
                        self.plugin,
                        self.share,
                        export,
                        call,
                        &self.limits,
                        grants,
                        seed,
                    )
                    .await;
                let (verdict, _, usage) = hook_verdict(self.version, self.fallback, export, report);
                (verdict, usage)
            }
            (FlowMode::Sync, None) => {
                let report = self
                    .sandbox
                    .decide_seeded(self.plugin, self.share, call, &self.limits, grants, seed)
                    .await;
                decision_verdict(self.version, self.fallback.branch, report)
            }
            (FlowMode::Async, None) => {
                let event = Event {
                    id: 0,
                    attempt: 1,
                    accepted_at_ms: seed.clock_ms,
                };
                let report = self
                    .sandbox
                    .record_seeded(
                        self.plugin,
                        self.share,
                        event,
                        call,
                        &self.limits,
                        grants,
                        seed,
                    )
                    .await;
                record_verdict(self.version, report)
            }
        };
        Rehearsed {
            verdict,
            usage,
            call: details,
        }
    }
}

/// What a live call's record keeps to replay it.
pub fn replay_of(seed: &CallSeed, export: &str, fuel: u64) -> Replay {
    Replay {
        seed: seed.seed_hex(),
        clock_ms: seed.clock_ms,
        export: export.to_owned(),
        fuel,
    }
}

/// The seed a record was answered with, if it kept one.
///
/// # Errors
/// The record's replay holds a seed that is not 64 hex digits.
pub fn seed_of(replay: &Replay) -> Result<CallSeed, String> {
    CallSeed::from_hex(&replay.seed, replay.clock_ms)
}
