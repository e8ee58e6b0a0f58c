//! `passthru run --replay FILE` and `passthru run --backtest FILE`: recorded calls run again
//! outside any server.
//!
//! `--replay` takes one decision record as `GET /v1/decisions` answers it (the record itself, or
//! a page of them: its first item) and runs the plugin on the record's query with the record's
//! seed, clock and fuel, then says whether it answered the same and used the same fuel: on the
//! version that answered the call, it does (docs/rollouts.md says what else must match: the
//! flow's config, and the key-value data the plugin reads).
//!
//! `--backtest` takes a file of calls, one a line: a decision record as JSON (a line starting
//! with `{`), or a Passthru query string. Each is run on the plugin and compared with the
//! record's answer, or, with `--against OTHER`, with what OTHER answers to the same query, seed
//! and clock. The report is the server's backtest's (`decision_id` is the line number for a
//! query line).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::{EXIT_DECIDED, EXIT_FAILED, RunOptions, cache, output, run_grants};
use crate::call::CallDetails;
use crate::flow::{FlowMode, Hook};
use crate::registry::Fallbacks;
use crate::rollout::backtest::{BacktestReport, MAX_CALLS};
use crate::rollout::{FallbackOf, Rehearsal, Verdict, seed_of};
use crate::sandbox::outbound::OutboundOptions;
use crate::sandbox::{
    Branch, CallSeed, FlowConfig, HookExport, Limits, LogLine, Plugin, Sandbox, SandboxOptions,
    TenantShare,
};
use crate::store::DecisionRecord;

/// Exit status when a replayed or backtested call answered differently.
pub const EXIT_DIFFERS: i32 = 3;

/// What `--replay` prints.
#[derive(Debug, Serialize)]
pub struct Replayed {
    /// What the record says was answered.
    pub recorded: Verdict,
    /// What the plugin answered now.
    pub replayed: Verdict,
    /// The same branch, outcome and answer besides the branch.
    pub same_answer: bool,
    pub same_fuel: bool,
    pub elapsed_us: u64,
    pub log: Vec<LogLine>,
    pub call: CallDetails,
}

#[derive(Debug, Serialize)]
struct Failed {
    error: super::RunError,
}

fn fail(kind: &'static str, message: String) -> super::RunOutput {
    output(
        &Failed {
            error: super::RunError { kind, message },
        },
        EXIT_FAILED,
    )
}

/// A record from the text of a file: one record, or a page of them (its first).
fn parse_record(text: &str) -> Result<DecisionRecord, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON decision record: {e}"))?;
    let value = match value.get("items") {
        Some(serde_json::Value::Array(items)) => items
            .first()
            .cloned()
            .ok_or("the page of records is empty")?,
        _ => value,
    };
    serde_json::from_value(value).map_err(|e| format!("not a decision record: {e}"))
}

/// The hook and mode a recorded export is called as.
fn export_of(name: &str) -> Result<(FlowMode, Hook), String> {
    let hook = match name {
        "decide" => return Ok((FlowMode::Sync, Hook::Passthru)),
        "select" => Hook::Switch,
        "greeting" => Hook::Greeting,
        "sms" => Hook::Sms,
        "connect" => Hook::Connect,
        "gather" => Hook::Gather,
        other => return Err(format!("cannot replay a call of `{other}`")),
    };
    Ok((FlowMode::Sync, hook))
}

/// The hook a plugin is called through when the record does not say: `decide`, else its first
/// hook export.
fn default_export(plugin: &Plugin) -> (FlowMode, Hook) {
    if plugin.can_decide() {
        return (FlowMode::Sync, Hook::Passthru);
    }
    let hook = match plugin.hooks().first() {
        Some(HookExport::Select) => Hook::Switch,
        Some(HookExport::Greeting) => Hook::Greeting,
        Some(HookExport::Sms) => Hook::Sms,
        Some(HookExport::Connect) => Hook::Connect,
        Some(HookExport::Gather) => Hook::Gather,
        None => Hook::Passthru,
    };
    (FlowMode::Sync, hook)
}

/// One sandbox for one call at a time, as `passthru run` makes them.
fn sandbox(options: &RunOptions) -> Result<Sandbox, String> {
    Sandbox::new(SandboxOptions {
        max_concurrent_calls: 1,
        ..SandboxOptions::default()
    })
    .map(|sandbox| {
        sandbox
            .without_deferred_resets()
            .with_outbound(OutboundOptions {
                allow_ranges: options.outbound_allow_ranges.clone(),
                ..OutboundOptions::default()
            })
    })
    .map_err(|e| e.to_string())
}

fn load(sandbox: &Sandbox, path: &Path, options: &RunOptions) -> Result<Plugin, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path.display().to_string();
    tokio::task::block_in_place(|| {
        cache::load_or_compile(sandbox, &bytes, options.cache_dir.as_deref(), &name)
    })
    .map(|(plugin, _, _)| plugin)
    .map_err(|e| format!("{name}: {e}"))
}

/// Calls of one loaded plugin, as a flow with the default fallback (`failure`) would make them.
struct Runner<'a> {
    sandbox: &'a Sandbox,
    share: TenantShare,
    grants: Arc<crate::sandbox::Grants>,
    limits: Limits,
}

impl Runner<'_> {
    async fn run(
        &self,
        plugin: &Plugin,
        version: u32,
        (mode, hook): (FlowMode, Hook),
        query: &str,
        seed: CallSeed,
        fuel: Option<u64>,
    ) -> crate::rollout::Rehearsed {
        let fallbacks = Fallbacks::default();
        Rehearsal {
            sandbox: self.sandbox,
            plugin,
            version,
            share: &self.share,
            mode,
            hook,
            fallback: FallbackOf {
                branch: Branch::Failure,
                answers: &fallbacks,
            },
            limits: Limits {
                fuel: fuel.unwrap_or(self.limits.fuel),
                ..self.limits
            },
            grants: self.grants.clone(),
        }
        .run(query, seed)
        .await
    }
}

/// `passthru run PLUGIN --replay FILE`.
pub async fn replay(
    plugin: &Path,
    record: &str,
    config: FlowConfig,
    limits: Limits,
    options: &RunOptions,
) -> super::RunOutput {
    let record = match parse_record(record) {
        Ok(record) => record,
        Err(message) => return fail("invalid_record", message),
    };
    let (Some(query), Some(replay)) = (&record.query, &record.replay) else {
        return fail(
            "invalid_record",
            "the record keeps no query or seed (it was written before they were kept, or by \
             an async flow): it cannot be replayed"
                .into(),
        );
    };
    let (seed, export) = match seed_of(replay).and_then(|s| Ok((s, export_of(&replay.export)?))) {
        Ok(found) => found,
        Err(message) => return fail("invalid_record", message),
    };
    let grants = match run_grants(config, &options.kv_stores) {
        Ok(grants) => Arc::new(grants),
        Err(message) => return fail("invalid_kv", message),
    };
    let sandbox = match sandbox(options) {
        Ok(sandbox) => sandbox,
        Err(message) => return fail("host", message),
    };
    let loaded = match load(&sandbox, plugin, options) {
        Ok(loaded) => loaded,
        Err(message) => return fail("invalid_component", message),
    };
    let runner = Runner {
        sandbox: &sandbox,
        share: TenantShare::unlimited(),
        grants,
        limits,
    };
    let done = runner
        .run(
            &loaded,
            record.version,
            export,
            query,
            seed,
            Some(replay.fuel),
        )
        .await;
    let recorded = Verdict::of_record(&record);
    let same_answer = recorded.agrees(&done.verdict) && recorded.branch == done.verdict.branch;
    let same_fuel = recorded.fuel_used == done.verdict.fuel_used;
    let exit = match same_answer && same_fuel {
        true => EXIT_DECIDED,
        false => EXIT_DIFFERS,
    };
    output(
        &Replayed {
            recorded,
            replayed: done.verdict,
            same_answer,
            same_fuel,
            elapsed_us: done.usage.elapsed_us,
            log: done.usage.log,
            call: done.call,
        },
        exit,
    )
}

/// One line of a backtest file.
enum Line {
    Record(Box<DecisionRecord>),
    Query(String),
}

fn parse_lines(text: &str) -> Result<Vec<(usize, Line)>, String> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if lines.len() >= MAX_CALLS as usize {
            return Err(format!("a backtest runs at most {MAX_CALLS} calls"));
        }
        let parsed = match line.starts_with('{') {
            true => Line::Record(Box::new(
                parse_record(line).map_err(|e| format!("line {}: {e}", i + 1))?,
            )),
            false => Line::Query(line.trim_start_matches('?').to_owned()),
        };
        lines.push((i + 1, parsed));
    }
    Ok(lines)
}

/// `passthru run PLUGIN --backtest FILE [--against OTHER]`.
pub async fn backtest(
    plugin: &Path,
    calls: &str,
    against: Option<&Path>,
    config: FlowConfig,
    limits: Limits,
    options: &RunOptions,
) -> super::RunOutput {
    let lines = match parse_lines(calls) {
        Ok(lines) => lines,
        Err(message) => return fail("invalid_backtest", message),
    };
    if against.is_none() && lines.iter().any(|(_, l)| matches!(l, Line::Query(_))) {
        return fail(
            "invalid_backtest",
            "a query line has no recorded answer to compare with: give --against OTHER".into(),
        );
    }
    let grants = match run_grants(config, &options.kv_stores) {
        Ok(grants) => Arc::new(grants),
        Err(message) => return fail("invalid_kv", message),
    };
    let sandbox = match sandbox(options) {
        Ok(sandbox) => sandbox,
        Err(message) => return fail("host", message),
    };
    let candidate = match load(&sandbox, plugin, options) {
        Ok(loaded) => loaded,
        Err(message) => return fail("invalid_component", message),
    };
    let other = match against
        .map(|path| load(&sandbox, path, options))
        .transpose()
    {
        Ok(other) => other,
        Err(message) => return fail("invalid_component", message),
    };
    let runner = Runner {
        sandbox: &sandbox,
        share: TenantShare::unlimited(),
        grants,
        limits,
    };
    let started = std::time::Instant::now();
    let mut report = BacktestReport::default();
    let mut fuel = Vec::new();
    for (number, line) in lines {
        let (query, seed, export, fuel_given, mut record) = match line {
            Line::Query(query) => {
                let record = DecisionRecord {
                    id: number as i64,
                    call_sid: crate::call::call_sid(&query),
                    ..blank_record()
                };
                let export = default_export(&candidate);
                (query, CallSeed::fresh(), export, None, record)
            }
            Line::Record(record) => {
                let (Some(query), Some(replay)) = (record.query.clone(), record.replay.clone())
                else {
                    report.skipped += 1;
                    continue;
                };
                let Ok(seed) = seed_of(&replay) else {
                    report.skipped += 1;
                    continue;
                };
                let export = export_of(&replay.export).unwrap_or(default_export(&candidate));
                (query, seed, export, Some(replay.fuel), *record)
            }
        };
        if let Some(other) = &other {
            let old = runner
                .run(other, 0, export, &query, seed, fuel_given)
                .await
                .verdict;
            record.version = old.version;
            record.branch = old.branch;
            record.outcome = old.outcome;
            record.answer = old.answer;
            record.reason = old.reason;
            record.error = old.error;
            record.fuel_used = old.fuel_used;
        }
        let done = runner
            .run(&candidate, 0, export, &query, seed, fuel_given)
            .await;
        report.tally(&record, done, &mut fuel);
    }
    report.finish(fuel, started.elapsed());
    let exit = match report.differ_total {
        0 => EXIT_DECIDED,
        _ => EXIT_DIFFERS,
    };
    output(&report, exit)
}

/// A record with nothing in it, for a query line's comparison.
fn blank_record() -> DecisionRecord {
    DecisionRecord {
        id: 0,
        tenant: String::new(),
        flow: String::new(),
        plugin: String::new(),
        version: 0,
        call_sid: None,
        branch: Branch::Failure,
        outcome: String::new(),
        reason: None,
        error: None,
        answer: None,
        fuel_used: 0,
        elapsed_us: 0,
        log: Vec::new(),
        log_dropped: 0,
        outbound: Vec::new(),
        at_ms: 0,
        query: None,
        replay: None,
    }
}
