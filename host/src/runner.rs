//! `passthru run`: one call of a plugin, outside any server, for plugin authors.
//!
//! Prints what the plugin decided, what it was given, what it cost and what it logged, as one
//! JSON object.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::call::{self, CallDetails};
use crate::config::StatusMap;
use crate::sandbox::{Branch, FlowConfig, Limits, LogLine, Sandbox, SandboxError, SandboxOptions};

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
    /// `out_of_fuel`, `deadline`, `memory_limit`, `trap`, `invalid_component`, `overloaded`, or
    /// `io` when the file cannot be read.
    pub kind: &'static str,
    pub message: String,
}

/// The result of `passthru run`: JSON to print and the exit status.
pub struct RunOutput {
    pub json: String,
    pub exit_code: i32,
}

/// Loads `plugin`, parses `query`, runs `decide` once under `limits` with `config`.
pub async fn run(plugin: &Path, query: &str, config: FlowConfig, limits: Limits) -> RunOutput {
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
        Err(error) => output(
            &RunFailed {
                error: run_error(&error),
                fuel_used: Some(report.fuel_used),
                elapsed_us: Some(elapsed_us),
                log: report.log,
                call,
            },
            EXIT_FAILED,
        ),
    }
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
