//! `passthru run`: one call of a plugin, outside any server, for plugin authors.
//!
//! Prints what the plugin decided (or, for `record`, whether it handled the event), what it was
//! given, what it cost and what it logged, as one JSON object.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::call::{self, CallDetails};
use crate::config::StatusMap;
use crate::sandbox::{
    Branch, Event, FlowConfig, Limits, LogLine, Sandbox, SandboxError, SandboxOptions,
};
use crate::store::now_ms;

/// Exit status when the plugin decided.
pub const EXIT_DECIDED: i32 = 0;
/// Exit status when the plugin could not be loaded or failed.
pub const EXIT_FAILED: i32 = 2;

/// The JSON printed when the plugin decided.
#[derive(Debug, Serialize)]
pub struct RunDecided {
    pub decision: Branch,
    pub status: u16,
    pub reason: Option<String>,
    pub fuel_used: u64,
    pub elapsed_us: u64,
    pub log: Vec<LogLine>,
    pub log_dropped: u32,
    pub call: CallDetails,
}

/// The JSON printed when `record` handled the event.
#[derive(Debug, Serialize)]
pub struct RunRecorded {
    /// Always true: the plugin returned `ok`.
    pub recorded: bool,
    pub event: RunEvent,
    pub fuel_used: u64,
    pub elapsed_us: u64,
    pub log: Vec<LogLine>,
    pub log_dropped: u32,
    pub call: CallDetails,
}

/// The event `record` was given.
#[derive(Debug, Serialize)]
pub struct RunEvent {
    pub id: u64,
    pub attempt: u32,
    pub accepted_at_ms: i64,
}

/// The JSON printed when it did not.
#[derive(Debug, Serialize)]
pub struct RunFailed {
    pub error: RunError,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_us: Option<u64>,
    pub log: Vec<LogLine>,
    pub call: CallDetails,
}

#[derive(Debug, Serialize)]
pub struct RunError {
    /// `out_of_fuel`, `deadline`, `memory_limit`, `trap`, `invalid_component`, `overloaded`,
    /// `host` (the host or its engine failed), `plugin_error` (`record` returned an error), or
    /// `io` when the file cannot be read.
    pub kind: &'static str,
    pub message: String,
}

/// The result of `passthru run`: JSON to print and the exit status.
pub struct RunOutput {
    pub json: String,
    pub exit_code: i32,
}

/// Which export `passthru run` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// `decide` if the plugin has it, else `record` (attempt 1).
    Auto,
    /// `record`, as this attempt (1 for the first).
    Record { attempt: u32 },
}

/// Loads `plugin`, parses `query`, runs `decide` (or `record`, see [`Export`]) once under
/// `limits` with `config`.
pub async fn run(
    plugin: &Path,
    query: &str,
    config: FlowConfig,
    limits: Limits,
    export: Export,
) -> RunOutput {
    let call = call::parse(query);
    let failed = |kind: &'static str, message: String, call: CallDetails| RunFailed {
        error: RunError { kind, message },
        fuel_used: None,
        elapsed_us: None,
        log: Vec::new(),
        call,
    };
    if let Err(message) = limits.validate() {
        return output(&failed("invalid_limits", message, call), EXIT_FAILED);
    }
    let bytes = match std::fs::read(plugin) {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("cannot read {}: {e}", plugin.display());
            return output(&failed("io", message, call), EXIT_FAILED);
        }
    };
    let sandbox = match Sandbox::new(SandboxOptions {
        max_concurrent_calls: 1,
    }) {
        Ok(sandbox) => sandbox,
        Err(e) => return output(&failed(e.kind().as_str(), e.to_string(), call), EXIT_FAILED),
    };
    let compiled = tokio::task::block_in_place(|| sandbox.compile(&bytes));
    let compiled = match compiled {
        Ok(plugin) => plugin,
        Err(e) => return output(&failed(e.kind().as_str(), e.to_string(), call), EXIT_FAILED),
    };
    let attempt = match export {
        Export::Record { attempt } => Some(attempt),
        Export::Auto if !compiled.can_decide() => Some(1),
        Export::Auto => None,
    };
    if let Some(attempt) = attempt {
        return record(&sandbox, &compiled, call, config, limits, attempt).await;
    }
    let report = sandbox
        .decide(&compiled, call.clone(), &limits, Arc::new(config))
        .await;
    let elapsed_us = report.elapsed.as_micros() as u64;
    match report.outcome {
        Ok(decision) => output(
            &RunDecided {
                decision: decision.branch,
                status: StatusMap::default().for_branch(decision.branch),
                reason: decision.reason,
                fuel_used: report.fuel_used,
                elapsed_us,
                log: report.log,
                log_dropped: report.log_dropped,
                call,
            },
            EXIT_DECIDED,
        ),
        Err(error) => failed_call(&error, report.fuel_used, elapsed_us, report.log, call),
    }
}

async fn record(
    sandbox: &Sandbox,
    plugin: &crate::sandbox::Plugin,
    call: CallDetails,
    config: FlowConfig,
    limits: Limits,
    attempt: u32,
) -> RunOutput {
    let event = Event {
        id: 1,
        attempt,
        accepted_at_ms: now_ms(),
    };
    let report = sandbox
        .record(plugin, event, call.clone(), &limits, Arc::new(config))
        .await;
    let elapsed_us = report.elapsed.as_micros() as u64;
    match report.outcome {
        Ok(()) => output(
            &RunRecorded {
                recorded: true,
                event: RunEvent {
                    id: event.id,
                    attempt: event.attempt,
                    accepted_at_ms: event.accepted_at_ms,
                },
                fuel_used: report.fuel_used,
                elapsed_us,
                log: report.log,
                log_dropped: report.log_dropped,
                call,
            },
            EXIT_DECIDED,
        ),
        Err(error) => failed_call(&error, report.fuel_used, elapsed_us, report.log, call),
    }
}

/// The output of a call that ran and failed: exit 2, with what it cost and logged.
fn failed_call(
    error: &SandboxError,
    fuel_used: u64,
    elapsed_us: u64,
    log: Vec<LogLine>,
    call: CallDetails,
) -> RunOutput {
    let failed = RunFailed {
        error: run_error(error),
        fuel_used: Some(fuel_used),
        elapsed_us: Some(elapsed_us),
        log,
        call,
    };
    output(&failed, EXIT_FAILED)
}

fn run_error(error: &SandboxError) -> RunError {
    RunError {
        kind: error.kind().as_str(),
        message: error.to_string(),
    }
}

fn output(value: &impl Serialize, exit_code: i32) -> RunOutput {
    // These types hold only strings, numbers and lists: serialising them cannot fail.
    let json = serde_json::to_string_pretty(value).expect("run output serialises");
    RunOutput { json, exit_code }
}
