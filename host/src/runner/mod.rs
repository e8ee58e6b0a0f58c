//! `passthru run`: calls of a plugin, outside any server, for plugin authors.
//!
//! Prints what the plugin decided (or, for `record`, whether it handled the event; for a hook of
//! package 0.1.2, exactly the status, content type and body the server would answer), what it was
//! given, what it cost and what it logged, as one JSON object. The plugin is called `repeat`
//! times, each on a fresh instance as in the server; the first call is reported as it was (a cold
//! instance), and the median of the others is what a live server's calls cost. Compiled plugins
//! are kept in a cache ([`cache`]) so that a run after an edit compiles once.

pub mod cache;
pub mod rollout;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use ipnet::IpNet;

use crate::call::{self, CallDetails};
use crate::flow::StatusMap;
use crate::flow::http::hook_http;
use crate::kv::import::{self, ImportFormat};
use crate::kv::{KvGrants, KvSpace};
use crate::sandbox::outbound::{OutboundHosts, OutboundOptions, OutboundRecord};
use crate::sandbox::{
    Branch, Event, FailureKind, FlowConfig, Grants, HookExport, Limits, LogLine, MemoryUse, Plugin,
    Report, Sandbox, SandboxError, SandboxOptions, TenantShare,
};
use crate::store::now_ms;

/// Exit status when the plugin decided.
pub const EXIT_DECIDED: i32 = 0;
/// Exit status when the plugin could not be loaded or failed.
pub const EXIT_FAILED: i32 = 2;
/// The most calls one run makes.
pub const MAX_REPEAT: u32 = 10_000;

/// How `passthru run` runs the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Calls to make, each on a fresh instance (1 to [`MAX_REPEAT`]).
    pub repeat: u32,
    /// Where compiled plugins are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The `Exotel-Version` a hook's request carries (Connect's answer depends on it).
    pub exotel_version: Option<String>,
    /// The flow's `outbound_hosts`: where the plugin may send HTTP requests.
    pub outbound_hosts: Vec<String>,
    /// Address ranges its requests may reach although private or special (the server's
    /// `[outbound] allow_ranges`), e.g. `127.0.0.0/8` for a test server on loopback.
    pub outbound_allow_ranges: Vec<IpNet>,
    /// Key-value stores granted to the plugin, in memory: each named, and filled from a JSON
    /// Lines or CSV file (`.csv`) if one is given. Writes of one call are seen by the next.
    pub kv_stores: Vec<(String, Option<PathBuf>)>,
}

/// The grants of a `passthru run`: `config`, and the stores of `options`, filled from their files.
fn run_grants(config: FlowConfig, stores: &[(String, Option<PathBuf>)]) -> Result<Grants, String> {
    if stores.is_empty() {
        return Ok(Grants::config(config));
    }
    let space =
        KvSpace::in_memory().map_err(|e| format!("cannot start the key-value stores: {e}"))?;
    let mut buckets = Vec::new();
    for (name, file) in stores {
        crate::flow::validate_name("a key-value store", name)?;
        let bucket = space.bucket("run", name);
        if let Some(path) = file {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let format = match path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            {
                true => ImportFormat::Csv,
                false => ImportFormat::JsonLines,
            };
            let max_key = space.tenant("run").caps().max_key_bytes;
            let entries = import::parse(format, &bytes, max_key, crate::store::now_ms())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            bucket
                .import(entries)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        buckets.push(bucket);
    }
    Ok(Grants {
        config,
        kv: KvGrants::new(buckets),
        ..Grants::default()
    })
}

/// What the calls took.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Timing {
    /// Calls made, each on a fresh instance.
    pub calls: u32,
    /// The first call: a cold instance, slower than a live server's calls.
    pub first_us: u64,
    /// The median of the calls after the first: what a call costs in a running server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_median_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_min_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_max_us: Option<u64>,
    /// `cached` (loaded from the cache) or `compiled`.
    pub plugin: cache::Source,
    /// How long compiling took (0 when cached).
    pub compile_ms: u64,
    /// The plugin's linear memory: what an instance starts with, and the most any call grew it.
    pub memory: MemoryUse,
}

/// The JSON printed when the plugin decided.
#[derive(Debug, Serialize)]
pub struct RunDecided {
    pub decision: Branch,
    pub status: u16,
    pub reason: Option<String>,
    pub fuel_used: u64,
    /// The first call's time (see `timing` for the warm calls).
    pub elapsed_us: u64,
    pub timing: Timing,
    pub log: Vec<LogLine>,
    pub log_dropped: u32,
    /// The outbound requests the calls sent (or were refused), when there were any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundRecord>,
    pub call: CallDetails,
}

/// The JSON printed when `record` handled the event.
#[derive(Debug, Serialize)]
pub struct RunRecorded {
    /// Always true: the plugin returned `ok`.
    pub recorded: bool,
    pub event: RunEvent,
    pub fuel_used: u64,
    /// The first call's time (see `timing` for the warm calls).
    pub elapsed_us: u64,
    pub timing: Timing,
    pub log: Vec<LogLine>,
    pub log_dropped: u32,
    /// The outbound requests the calls sent (or were refused), when there were any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundRecord>,
    pub call: CallDetails,
}

/// The JSON printed when a hook's export answered: what the server would answer, exactly.
#[derive(Debug, Serialize)]
pub struct RunAnswered {
    /// The export called: `select`, `greeting`, `sms`, `connect` or `gather`.
    pub hook: &'static str,
    /// The HTTP status, with the default branch statuses for `select`.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'static str>,
    /// The body, byte for byte (none: an empty answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub reason: Option<String>,
    pub fuel_used: u64,
    /// The first call's time (see `timing` for the warm calls).
    pub elapsed_us: u64,
    pub timing: Timing,
    pub log: Vec<LogLine>,
    pub log_dropped: u32,
    /// The outbound requests the calls sent (or were refused), when there were any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundRecord>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    pub log: Vec<LogLine>,
    /// The outbound requests the calls sent (or were refused), when there were any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundRecord>,
    pub call: CallDetails,
}

#[derive(Debug, Serialize)]
pub struct RunError {
    /// `out_of_fuel`, `deadline`, `memory_limit`, `trap`, `invalid_component`, `overloaded`,
    /// `host` (the host or its engine failed), `plugin_error` (`record` returned an error),
    /// `invalid_limits`, `invalid_repeat`, or `io` when the file cannot be read.
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
    /// `decide` if the plugin has it, else `record` (attempt 1), else the hook it exports.
    Auto,
    /// `record`, as this attempt (1 for the first).
    Record { attempt: u32 },
    /// A hook's export.
    Hook(HookExport),
}

/// Loads `plugin` (from the cache, or compiling it), parses `query`, and runs `decide` (or
/// `record`, see [`Export`]) `options.repeat` times under `limits` with `config`.
pub async fn run(
    plugin: &Path,
    query: &str,
    config: FlowConfig,
    limits: Limits,
    export: Export,
    options: &RunOptions,
) -> RunOutput {
    let call = call::parse(query);
    let failed = |kind: &'static str, message: String, call: CallDetails| RunFailed {
        error: RunError { kind, message },
        fuel_used: None,
        elapsed_us: None,
        timing: None,
        log: Vec::new(),
        outbound: Vec::new(),
        call,
    };
    if let Err(message) = limits.validate() {
        return output(&failed("invalid_limits", message, call), EXIT_FAILED);
    }
    let mut grants = match run_grants(config, &options.kv_stores) {
        Ok(grants) => grants,
        Err(message) => return output(&failed("invalid_kv", message, call), EXIT_FAILED),
    };
    if !options.outbound_hosts.is_empty() {
        match OutboundHosts::parse(&options.outbound_hosts) {
            Ok(hosts) => grants.outbound_hosts = Some(Arc::new(hosts)),
            Err(message) => {
                return output(&failed("invalid_outbound", message, call), EXIT_FAILED);
            }
        }
    }
    let grants = Arc::new(grants);
    if !(1..=MAX_REPEAT).contains(&options.repeat) {
        let message = format!(
            "repeat must be between 1 and {MAX_REPEAT}, not {}",
            options.repeat
        );
        return output(&failed("invalid_repeat", message, call), EXIT_FAILED);
    }
    let bytes = match std::fs::read(plugin) {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("cannot read {}: {e}", plugin.display());
            return output(&failed("io", message, call), EXIT_FAILED);
        }
    };
    // One call after another: each instance is reset before the next call starts.
    let sandbox = match Sandbox::new(SandboxOptions {
        max_concurrent_calls: 1,
        ..SandboxOptions::default()
    }) {
        Ok(sandbox) => sandbox
            .without_deferred_resets()
            .with_outbound(OutboundOptions {
                allow_ranges: options.outbound_allow_ranges.clone(),
                ..OutboundOptions::default()
            }),
        Err(e) => return output(&failed(e.kind().as_str(), e.to_string(), call), EXIT_FAILED),
    };
    let name = plugin.display().to_string();
    let loaded = tokio::task::block_in_place(|| {
        cache::load_or_compile(&sandbox, &bytes, options.cache_dir.as_deref(), &name)
    });
    let (compiled, source, compile_ms) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return output(&failed(e.kind().as_str(), e.to_string(), call), EXIT_FAILED),
    };
    let hook = match export {
        Export::Hook(hook) => Some(hook),
        Export::Auto if !compiled.can_decide() && !compiled.can_record() => {
            compiled.hooks().first().copied()
        }
        _ => None,
    };
    let attempt = match export {
        Export::Record { attempt } => Some(attempt),
        Export::Auto if !compiled.can_decide() && hook.is_none() => Some(1),
        Export::Auto | Export::Hook(_) => None,
    };
    let prepared = Prepared {
        sandbox: &sandbox,
        plugin: &compiled,
        call: &call,
        grants,
        share: TenantShare::unlimited(),
        limits: &limits,
        repeat: options.repeat,
        source,
        compile_ms,
    };
    if let Some(attempt) = attempt {
        return record(&prepared, attempt).await;
    }
    if let Some(hook) = hook {
        return answer(&prepared, hook, options.exotel_version.as_deref()).await;
    }
    let (report, timing) = prepared
        .calls(|| {
            let grants = prepared.grants.clone();
            sandbox.decide(&compiled, &prepared.share, call.clone(), &limits, grants)
        })
        .await;
    let elapsed_us = micros(report.elapsed);
    match report.outcome {
        Ok(decision) => output(
            &RunDecided {
                decision: decision.branch,
                status: StatusMap::default().for_branch(decision.branch),
                reason: decision.reason,
                fuel_used: report.fuel_used,
                elapsed_us,
                timing,
                log: report.log,
                log_dropped: report.log_dropped,
                outbound: report.outbound,
                call,
            },
            EXIT_DECIDED,
        ),
        Err(error) => failed_call(
            &error,
            report.fuel_used,
            report.elapsed,
            timing,
            report.log,
            report.outbound,
            call,
        ),
    }
}

/// A loaded plugin and what each call is given.
struct Prepared<'a> {
    sandbox: &'a Sandbox,
    plugin: &'a Plugin,
    call: &'a CallDetails,
    grants: Arc<Grants>,
    /// One tenant, whose share is the whole (one-call) pool.
    share: TenantShare,
    limits: &'a Limits,
    repeat: u32,
    source: cache::Source,
    compile_ms: u64,
}

impl Prepared<'_> {
    /// Makes up to `repeat` calls and returns the report to show with the timing of them all:
    /// the first call's report, unless a later call failed (then that one's, so a failure that
    /// only some calls hit is never hidden).
    async fn calls<T, F, Fut>(&self, mut call: F) -> (Report<T>, Timing)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Report<T>>,
    {
        let first = call().await;
        let mut memory = first.memory;
        let mut warm = Vec::new();
        if first.outcome.is_ok() {
            for _ in 1..self.repeat {
                let report = call().await;
                warm.push(micros(report.elapsed));
                memory.grown_bytes = memory.grown_bytes.max(report.memory.grown_bytes);
                if report.outcome.is_err() {
                    let first_us = micros(first.elapsed);
                    let timing = self.timing(first_us, warm, memory);
                    note_growth(&report, memory);
                    return (report, timing);
                }
            }
        }
        let timing = self.timing(micros(first.elapsed), warm, memory);
        note_growth(&first, memory);
        (first, timing)
    }

    fn timing(&self, first_us: u64, mut warm: Vec<u64>, memory: MemoryUse) -> Timing {
        warm.sort_unstable();
        Timing {
            calls: 1 + warm.len() as u32,
            first_us,
            warm_median_us: warm.get(warm.len() / 2).copied(),
            warm_min_us: warm.first().copied(),
            warm_max_us: warm.last().copied(),
            plugin: self.source.clone(),
            compile_ms: self.compile_ms,
            memory,
        }
    }
}

/// A word on stderr when the calls grew the plugin's memory, which costs a server more than a run
/// here shows; not when the run ended at the memory cap, which says enough.
fn note_growth<T>(report: &Report<T>, memory: MemoryUse) {
    let capped = matches!(&report.outcome, Err(e) if e.kind() == FailureKind::MemoryLimit);
    if memory.grown_bytes > 0 && !capped {
        eprintln!(
            "passthru: the plugin's calls grew its memory by up to {} KiB, past the {} KiB it \
             starts with: in a server, each call that grows it costs tens of microseconds more \
             than its run here shows (see the plugin guide's \"Memory\")",
            memory.grown_bytes.div_ceil(1024),
            memory.initial_bytes / 1024
        );
    }
}

async fn record(prepared: &Prepared<'_>, attempt: u32) -> RunOutput {
    let event = Event {
        id: 1,
        attempt,
        accepted_at_ms: now_ms(),
    };
    let (report, timing) = prepared
        .calls(|| {
            prepared.sandbox.record(
                prepared.plugin,
                &prepared.share,
                event,
                prepared.call.clone(),
                prepared.limits,
                prepared.grants.clone(),
            )
        })
        .await;
    let call = prepared.call.clone();
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
                elapsed_us: timing.first_us,
                timing,
                log: report.log,
                log_dropped: report.log_dropped,
                outbound: report.outbound,
                call,
            },
            EXIT_DECIDED,
        ),
        Err(error) => failed_call(
            &error,
            report.fuel_used,
            report.elapsed,
            timing,
            report.log,
            report.outbound,
            call,
        ),
    }
}

async fn answer(prepared: &Prepared<'_>, hook: HookExport, version: Option<&str>) -> RunOutput {
    let (report, timing) = prepared
        .calls(|| {
            prepared.sandbox.answer(
                prepared.plugin,
                &prepared.share,
                hook,
                prepared.call.clone(),
                prepared.limits,
                prepared.grants.clone(),
            )
        })
        .await;
    let call = prepared.call.clone();
    match report.outcome {
        Ok(answered) => {
            let http = hook_http(&answered.answer, &StatusMap::default(), version);
            output(
                &RunAnswered {
                    hook: hook.name(),
                    status: http.status,
                    branch: http.branch,
                    content_type: http.content_type,
                    body: http.body,
                    reason: answered.reason,
                    fuel_used: report.fuel_used,
                    elapsed_us: timing.first_us,
                    timing,
                    log: report.log,
                    log_dropped: report.log_dropped,
                    outbound: report.outbound,
                    call,
                },
                EXIT_DECIDED,
            )
        }
        Err(error) => failed_call(
            &error,
            report.fuel_used,
            report.elapsed,
            timing,
            report.log,
            report.outbound,
            call,
        ),
    }
}

/// The output of a call that ran and failed: exit 2, with what it cost and logged.
fn failed_call(
    error: &SandboxError,
    fuel_used: u64,
    elapsed: Duration,
    timing: Timing,
    log: Vec<LogLine>,
    outbound: Vec<OutboundRecord>,
    call: CallDetails,
) -> RunOutput {
    let failed = RunFailed {
        error: run_error(error),
        fuel_used: Some(fuel_used),
        elapsed_us: Some(micros(elapsed)),
        timing: Some(timing),
        log,
        outbound,
        call,
    };
    output(&failed, EXIT_FAILED)
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
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
