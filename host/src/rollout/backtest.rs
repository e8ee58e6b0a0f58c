//! Backtests: a candidate version run again on a flow's recorded calls, each with its recorded
//! query and seed (so its clock and random bytes are what the recorded call saw), and its answers
//! compared with the recorded ones.
//!
//! A backtest takes at most a quarter of one core, at a lower priority than live calls: it runs
//! on a thread of its own at nice 19, one call at a time, and after every [`WORK_SLICE`] of work
//! it rests [`REST_FACTOR`] times as long ([`Pacer`]); with a tenant share of one call of its own
//! (so it never takes a slot of the tenant's live calls); and one backtest runs at a time in the
//! server ([`Backtests`]). It is bounded: at most [`MAX_CALLS`] calls, at most [`TIME_BUDGET`]
//! of running (the calls not run are counted as `unfinished`), and it stops when its client goes
//! away. Reading the records and writing the report's JSON happen on that thread too.
//!
//! Not Linux's `SCHED_IDLE` class, as the decision-record writer: a backtest's calls take the
//! same locks as live calls (the instance pool's), and an idle-class thread preempted while
//! holding one waits for a CPU no busy thread leaves it, while live calls wait for the lock.
//! Measured (BENCHMARKS.md): beside back-to-back backtests a live flow's p99 went from about
//! 0.6 ms to 12–48 ms in the idle class; at nice 19 and a quarter of a core, to 0.7–1.15 ms.
//!
//! Each call is a dry run: key-value writes stay in the call, outbound requests are refused,
//! nothing is recorded, the live flow's metrics are untouched. Its deadline is the longest a
//! flow may have ([`MAX_DEADLINE_MS`]), since at low priority a call may wait for the CPU longer
//! than the flow's deadline allows; fuel bounds it as it bounds the live call (the recorded
//! call's fuel).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};

use super::{FallbackOf, Rehearsal, Rehearsed, Verdict, seed_of};
use crate::flow::{FlowMode, Hook};
use crate::registry::Fallbacks;
use crate::sandbox::{Branch, Grants, Limits, MAX_DEADLINE_MS, Plugin, Sandbox, TenantShare};
use crate::store::{DecisionFilter, DecisionRecord, Store, StoreResult};

/// The most recorded calls one backtest runs.
pub const MAX_CALLS: u32 = 10_000;
/// The most differences a report lists (`differ_total` counts them all).
pub const MAX_DIFFER: usize = 1_000;
/// How long a backtest may run its calls; the rest are counted as `unfinished`.
pub const TIME_BUDGET: Duration = Duration::from_secs(20);
/// Records read per page from the store.
const PAGE: u32 = 1_000;
/// How long a backtest works before it rests (see [`Pacer`]).
pub const WORK_SLICE: Duration = Duration::from_millis(1);
/// How much longer than it worked a backtest rests: 3, so it takes a quarter of one core.
pub const REST_FACTOR: u32 = 3;
/// The nice value of a backtest's thread: below live calls' (0), above the idle class.
const NICE: i32 = 19;

/// Keeps a backtest to a quarter of one core: after every [`WORK_SLICE`] of work, a rest
/// [`REST_FACTOR`] times as long.
#[derive(Debug)]
pub struct Pacer {
    since: Instant,
}

impl Pacer {
    pub fn start() -> Self {
        Self {
            since: Instant::now(),
        }
    }

    /// Rests if the work since the last rest reached the slice.
    pub fn pace(&mut self) {
        let worked = self.since.elapsed();
        if worked >= WORK_SLICE {
            std::thread::sleep(worked * REST_FACTOR);
            self.since = Instant::now();
        }
    }
}

/// Lowers the calling thread's priority to [`NICE`] (Linux: per thread).
#[cfg(target_os = "linux")]
fn lower_priority() {
    #[allow(unsafe_code)]
    // SAFETY: `setpriority` with `who` 0 changes only the calling thread's nice value on Linux;
    // no memory is involved.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower a backtest's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Which recorded calls a backtest runs: the flow's last `n`, or those of a time range (at most
/// [`MAX_CALLS`], the newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Last(u32),
    Range {
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    },
}

/// One answer that differs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub decision_id: i64,
    pub call_sid: Option<String>,
    pub at_ms: i64,
    /// What the record says was answered.
    pub old: Verdict,
    /// What the candidate answered.
    pub new: Verdict,
}

/// The candidate's fuel over the calls run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FuelSummary {
    pub total: u64,
    pub median: u64,
    pub max: u64,
}

/// The linear memory the candidate's calls grew (see `MemoryUse` for what a grow costs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GrownSummary {
    /// Calls that grew it.
    pub calls: u64,
    /// The most one call grew it, in bytes.
    pub max_bytes: u64,
}

/// What a backtest found.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct BacktestReport {
    /// The candidate version.
    pub version: u32,
    /// Recorded calls run again.
    pub calls: u64,
    /// Calls whose answer agrees with the record: the same outcome, and unless the plugin
    /// failed, the same branch and answer besides it.
    pub agree: u64,
    /// The calls that differ, oldest first, at most 1,000.
    pub differ: Vec<Difference>,
    /// How many differ in all.
    pub differ_total: u64,
    /// The candidate's failures by kind (`trap`, `out_of_fuel`, ...).
    pub failures: BTreeMap<String, u64>,
    pub fuel: FuelSummary,
    /// The calls that grew the candidate's memory.
    pub memory_grown: GrownSummary,
    /// Records in the window that could not be run again: written before queries and seeds were
    /// kept, or by an async flow.
    pub skipped: u64,
    /// Records not run because the backtest reached its time budget (20 s).
    pub unfinished: u64,
    pub elapsed_ms: u64,
}

/// Reads the flow's records in `window`, newest first, at most [`MAX_CALLS`], without their
/// logs (a backtest needs the query, the seed and the answer).
///
/// # Errors
/// The store fails.
pub fn read_window(
    store: &dyn Store,
    tenant: &str,
    flow: &str,
    window: Window,
    pacer: &mut Pacer,
) -> StoreResult<Vec<DecisionRecord>> {
    let (want, since_ms, until_ms) = match window {
        Window::Last(n) => (n.min(MAX_CALLS), None, None),
        Window::Range { since_ms, until_ms } => (MAX_CALLS, since_ms, until_ms),
    };
    let mut records: Vec<DecisionRecord> = Vec::new();
    while (records.len() as u32) < want {
        let page = store.query_decisions(
            tenant,
            &DecisionFilter {
                flow: Some(flow.to_owned()),
                since_ms,
                until_ms,
                before_id: records.last().map(|r| r.id),
                limit: PAGE.min(want - records.len() as u32),
                ..DecisionFilter::default()
            },
        )?;
        let full = page.len() as u32 == PAGE.min(want - records.len() as u32);
        records.extend(page.into_iter().map(|mut r| {
            r.log = Vec::new();
            r.outbound = Vec::new();
            r
        }));
        if !full {
            break;
        }
        pacer.pace();
    }
    Ok(records)
}

/// The candidate and the flow's calling convention, owned, for the backtest's thread.
pub struct Candidate {
    pub sandbox: Arc<Sandbox>,
    pub plugin: Arc<Plugin>,
    pub version: u32,
    pub mode: FlowMode,
    pub hook: Hook,
    pub fallback: Branch,
    pub fallbacks: Arc<Fallbacks>,
    pub limits: Limits,
    /// The flow's grants as a dry run has them.
    pub grants: Arc<Grants>,
}

/// Allows one backtest at a time in the server. Cheap to clone: clones share the one slot.
#[derive(Debug, Clone)]
pub struct Backtests {
    running: Arc<Semaphore>,
}

impl Default for Backtests {
    fn default() -> Self {
        Self {
            running: Arc::new(Semaphore::new(1)),
        }
    }
}

/// Why a backtest did not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("another backtest is running on this server; try again when it is done")]
    Busy,
    #[error("cannot start the backtest's thread")]
    Thread(#[source] std::io::Error),
    #[error("the backtest's thread ended without a report")]
    Lost,
    #[error("cannot read the recorded calls")]
    Store(#[source] crate::store::StoreError),
}

impl Backtests {
    /// A claim on the server's one backtest, if none is running.
    ///
    /// # Errors
    /// [`BacktestError::Busy`].
    pub fn claim(&self) -> Result<tokio::sync::OwnedSemaphorePermit, BacktestError> {
        self.running
            .clone()
            .try_acquire_owned()
            .map_err(|_| BacktestError::Busy)
    }
}

/// The recorded calls a backtest runs: the flow's records in `window`, read from `store`.
pub struct Recorded {
    pub store: Arc<dyn Store>,
    pub tenant: String,
    pub flow: String,
    pub window: Window,
}

/// Reads the recorded calls, runs `candidate` on them and hands the report to `then` (the API
/// serialises it there: a thousand differences are a few hundred kilobytes of JSON), all on a
/// thread of its own at low priority, and waits for what `then` made. `claim` is held until the
/// thread is done, `reading` (the tenant's turn to read records) until the calls are read.
///
/// # Errors
/// The thread cannot start or dies, or the store fails.
pub async fn run<T: Send + 'static>(
    candidate: Candidate,
    recorded: Recorded,
    claim: tokio::sync::OwnedSemaphorePermit,
    reading: impl Send + 'static,
    then: impl FnOnce(BacktestReport) -> T + Send + 'static,
) -> Result<T, BacktestError> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("passthru-backtest".into())
        .spawn(move || {
            lower_priority();
            let mut pacer = Pacer::start();
            let records = read_window(
                recorded.store.as_ref(),
                &recorded.tenant,
                &recorded.flow,
                recorded.window,
                &mut pacer,
            );
            drop(reading);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            let report = match (records, runtime) {
                (Ok(records), Ok(runtime)) => Ok(then(
                    runtime.block_on(calls(&candidate, records, &tx, &mut pacer)),
                )),
                (Err(error), _) => Err(BacktestError::Store(error)),
                (_, Err(error)) => Err(BacktestError::Thread(error)),
            };
            // Free the slot before answering: a client's next backtest, sent as soon as this one
            // is answered, finds it free.
            drop(claim);
            let _ = tx.send(report);
        })
        .map_err(BacktestError::Thread)?;
    rx.await.map_err(|_| BacktestError::Lost)?
}

/// The calls, one after another, oldest first; stops early when `client` is gone.
async fn calls<T>(
    candidate: &Candidate,
    mut records: Vec<DecisionRecord>,
    client: &oneshot::Sender<Result<T, BacktestError>>,
    pacer: &mut Pacer,
) -> BacktestReport {
    let started = Instant::now();
    records.reverse();
    let share = TenantShare::new(1);
    let mut report = BacktestReport {
        version: candidate.version,
        ..BacktestReport::default()
    };
    let mut fuel: Vec<u64> = Vec::with_capacity(records.len());
    let total = records.len() as u64;
    for (done, record) in records.into_iter().enumerate() {
        if client.is_closed() {
            break;
        }
        if started.elapsed() >= TIME_BUDGET {
            report.unfinished = total - done as u64;
            break;
        }
        let (Some(query), Some(replay)) = (&record.query, &record.replay) else {
            report.skipped += 1;
            continue;
        };
        let Ok(seed) = seed_of(replay) else {
            report.skipped += 1;
            continue;
        };
        let rehearsal = Rehearsal {
            sandbox: &candidate.sandbox,
            plugin: &candidate.plugin,
            version: candidate.version,
            share: &share,
            mode: candidate.mode,
            hook: candidate.hook,
            fallback: FallbackOf {
                branch: candidate.fallback,
                answers: &candidate.fallbacks,
            },
            limits: Limits {
                fuel: replay.fuel,
                deadline_ms: MAX_DEADLINE_MS,
                ..candidate.limits
            },
            grants: candidate.grants.clone(),
        };
        let done = rehearsal.run(query, seed).await;
        report.tally(&record, done, &mut fuel);
        pacer.pace();
    }
    report.finish(fuel, started.elapsed());
    report
}

impl BacktestReport {
    /// Sets the fuel's median and maximum from every call's `fuel`, and the time taken.
    pub fn finish(&mut self, mut fuel: Vec<u64>, elapsed: Duration) {
        fuel.sort_unstable();
        self.fuel.median = fuel.get(fuel.len() / 2).copied().unwrap_or(0);
        self.fuel.max = fuel.last().copied().unwrap_or(0);
        self.elapsed_ms = elapsed.as_millis() as u64;
    }

    /// Counts one call run again: `record` says what was answered, `done` what is now; `fuel`
    /// collects each call's fuel for [`finish`](Self::finish).
    pub fn tally(&mut self, record: &DecisionRecord, done: Rehearsed, fuel: &mut Vec<u64>) {
        let new = done.verdict;
        let grown = done.usage.memory.grown_bytes;
        if grown > 0 {
            self.memory_grown.calls += 1;
            self.memory_grown.max_bytes = self.memory_grown.max_bytes.max(grown);
        }
        self.calls += 1;
        self.fuel.total = self.fuel.total.saturating_add(new.fuel_used);
        fuel.push(new.fuel_used);
        if new.failed() {
            *self.failures.entry(new.outcome.clone()).or_default() += 1;
        }
        let old = Verdict::of_record(record);
        if old.agrees(&new) {
            self.agree += 1;
            return;
        }
        self.differ_total += 1;
        if self.differ.len() < MAX_DIFFER {
            self.differ.push(Difference {
                decision_id: record.id,
                call_sid: record.call_sid.clone(),
                at_ms: record.at_ms,
                old,
                new,
            });
        }
    }
}
