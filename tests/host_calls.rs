//! Every import a plugin can call is bounded and charged: the hostile fixture's host-call modes
//! (huge single writes, huge random requests, huge lifted strings, resource hoarding, and each in
//! a loop) end the call with a clear failure, and within the deadline.
//!
//! `cargo test --release --test host_calls -- --nocapture` prints how long past its deadline
//! each call answered (BENCHMARKS.md quotes it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use passthru::call;
use passthru::sandbox::{
    FailureKind, FlowConfig, Grants, Limits, Plugin, Report, Sandbox, SandboxOptions, TenantShare,
};

/// How late past its deadline a call may answer. The target is 5 ms on a release build
/// (BENCHMARKS.md); a debug build on a loaded 2-core machine gets more room, since one import's
/// work (64 KiB scanned or drawn) is several times slower unoptimised.
const LATE: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(25)
} else {
    Duration::from_millis(5)
};

/// The tests of this file run one at a time, so that one's calls do not take the CPU from
/// another's and blur how late an answer came.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxOptions {
        max_concurrent_calls: 4,
        ..SandboxOptions::default()
    })
    .expect("sandbox")
}

fn hostile(sandbox: &Sandbox) -> Plugin {
    sandbox
        .compile(&std::fs::read(common::HOSTILE).unwrap())
        .expect("the hostile fixture compiles")
}

async fn run(sandbox: &Sandbox, plugin: &Plugin, mode: &str, limits: &Limits) -> Report<()> {
    let config: Arc<Grants> = grants([("mode".to_owned(), mode.to_owned())].into());
    let report = sandbox
        .decide(
            plugin,
            &TenantShare::unlimited(),
            call::parse("CallSid=hostcalls"),
            limits,
            config,
        )
        .await;
    Report {
        outcome: report.outcome.map(|_| ()),
        fuel_used: report.fuel_used,
        elapsed: report.elapsed,
        log: report.log,
        log_dropped: report.log_dropped,
        outbound: report.outbound,
        memory: report.memory,
    }
}

fn kind(report: &Report<()>) -> Option<FailureKind> {
    report.outcome.as_ref().err().map(|e| e.kind())
}

fn message(report: &Report<()>) -> String {
    match &report.outcome {
        Err(e) => e.to_string(),
        Ok(()) => "no failure".to_owned(),
    }
}

/// One import called once with far more than the host allows: refused at once, as a trap that
/// names what was too much, long before the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_import_call_traps_at_once_naming_what_was_too_much() {
    let _alone = ALONE.lock().await;
    let sandbox = sandbox();
    let plugin = hostile(&sandbox);
    let limits = Limits {
        deadline_ms: 1_000,
        memory_mb: 128,
        ..Limits::default()
    };
    let cases = [
        ("big-write", "too much data"),
        ("over-permit", "check-write"),
        ("big-random", "random bytes at once"),
        ("big-log", "too much data"),
        ("big-poll", "too much data"),
        ("hoard", "resource table"),
    ];
    for (mode, says) in cases {
        let report = run(&sandbox, &plugin, mode, &limits).await;
        println!("{mode}: {:?} {}", report.elapsed, message(&report));
        assert_eq!(kind(&report), Some(FailureKind::Trap), "{mode}: {report:?}");
        assert!(
            message(&report).contains(says),
            "{mode}: the message names the bound: {}",
            message(&report)
        );
        assert!(
            report.elapsed < Duration::from_millis(limits.deadline_ms),
            "{mode}: took {:?}",
            report.elapsed
        );
    }
}

/// The same imports within their bounds, called in a loop: the host's work is charged to the
/// call's fuel, so a small budget runs out, where the guest's own code would have run for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_work_in_a_loop_is_charged_to_the_calls_fuel() {
    let _alone = ALONE.lock().await;
    let sandbox = sandbox();
    let plugin = hostile(&sandbox);
    let limits = Limits {
        fuel: 20_000_000,
        deadline_ms: 5_000,
        ..Limits::default()
    };
    for mode in ["write-loop", "random-loop", "log-loop"] {
        let report = run(&sandbox, &plugin, mode, &limits).await;
        println!("{mode}: {:?} {}", report.elapsed, message(&report));
        assert_eq!(
            kind(&report),
            Some(FailureKind::OutOfFuel),
            "{mode}: {report:?}"
        );
        assert_eq!(report.fuel_used, limits.fuel, "{mode}");
    }
}

/// With fuel to spare, the deadline ends each loop, and the answer comes within `LATE` of it:
/// no import runs long enough to hold the call (or its worker) past its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_work_in_a_loop_ends_at_the_deadline() {
    let _alone = ALONE.lock().await;
    let sandbox = sandbox();
    let plugin = hostile(&sandbox);
    let limits = Limits {
        fuel: 1_000_000_000_000,
        deadline_ms: 100,
        ..Limits::default()
    };
    let deadline = Duration::from_millis(limits.deadline_ms);
    for mode in ["write-loop", "random-loop", "log-loop", "poll-list"] {
        let mut latest = Duration::ZERO;
        for _ in 0..5 {
            let report = run(&sandbox, &plugin, mode, &limits).await;
            assert_eq!(
                kind(&report),
                Some(FailureKind::Deadline),
                "{mode}: {report:?}"
            );
            latest = latest.max(report.elapsed);
        }
        let late = latest.saturating_sub(deadline);
        println!("{mode}: at most {late:?} past the {deadline:?} deadline (5 calls)");
        assert!(
            late <= LATE,
            "{mode}: answered {late:?} past its deadline, more than {LATE:?}"
        );
    }
}

/// A flow that grants its plugin `config` and nothing else.
fn grants(config: FlowConfig) -> Arc<Grants> {
    Arc::new(Grants::config(config))
}
