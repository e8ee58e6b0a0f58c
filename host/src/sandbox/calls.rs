//! The calls: `decide` for sync flows and `record` for async ones. Each gets a fresh `Store` with
//! the flow's fuel, deadline and memory cap, an instance from the pool, and a [`Report`] of what
//! it produced and cost; the instance goes back to the pool after, or just after, the answer.

use crate::secrets::redact;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::runtime::RuntimeFlavor;
use wasmtime::Store;

use super::admission::{Slot, TenantShare};
use super::bindings::passthru::plugin::types as wit;
use super::engine::{DEFERRED_RESETS, Plugin, Sandbox};
use super::error::{SandboxError, host_setup, missing_export, settle};
use super::last_words::last_words;
use super::limits::Limits;
use super::meter::MAX_HOSTCALL_BYTES;
use super::outbound::OutboundRecord;
use super::output::{self, LogLine};
use super::seed::CallSeed;
use super::state::{CallState, Grants, MemoryUse};
use super::ticker::EPOCH_TICK;
use crate::call::{CallDetails, CallInput};

/// The longest a reason from a plugin is kept; longer ones are cut.
pub const MAX_REASON_BYTES: usize = 1024;

/// The longest wasmtime's description of a trap is kept (the plugin's last words come after it,
/// capped at [`MAX_LAST_WORDS_BYTES`](super::MAX_LAST_WORDS_BYTES)).
const MAX_TRAP_BYTES: usize = 512;

/// A guest yields to the executor after this much fuel (some tens of microseconds of its code),
/// so one call never holds a worker thread for long. Each yield costs about a microsecond: at
/// 20,000, a JavaScript decision (3.4 million fuel) spent 15% of its time yielding.
const FUEL_YIELD_INTERVAL: u64 = 100_000;
/// A plugin whose instance took at least this long to reset, last time, is reset after the answer.
/// A Rust or C plugin's reset takes a few microseconds, less than handing it to another task would
/// cost; a Python or JavaScript runtime's takes 50 to 150.
pub(super) const DEFER_RESET_FROM: Duration = Duration::from_micros(20);

/// The branch a call flow takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Branch {
    Success,
    Failure,
}

impl Branch {
    pub fn as_str(self) -> &'static str {
        match self {
            Branch::Success => "success",
            Branch::Failure => "failure",
        }
    }
}

/// What a plugin decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub branch: Branch,
    pub reason: Option<String>,
}

/// What a call's answer says in the plugin's own words: its reason, which the host writes to
/// records and its log, so a flow's secrets are blanked out of it.
pub trait Reasoned {
    fn reason_mut(&mut self) -> Option<&mut String>;
}

impl Reasoned for Decision {
    fn reason_mut(&mut self) -> Option<&mut String> {
        self.reason.as_mut()
    }
}

impl Reasoned for () {
    fn reason_mut(&mut self) -> Option<&mut String> {
        None
    }
}

/// Everything one call produced: its result or the failure, and what it cost.
#[derive(Debug)]
pub struct Report<T> {
    pub outcome: Result<T, SandboxError>,
    pub fuel_used: u64,
    pub elapsed: Duration,
    pub log: Vec<LogLine>,
    /// Log lines dropped past the caps.
    pub log_dropped: u32,
    /// The outbound requests the call sent (or was refused).
    pub outbound: Vec<OutboundRecord>,
    /// The call's linear memory: what it started with and what it grew by.
    pub memory: MemoryUse,
}

impl<T: Reasoned> Report<T> {
    /// Blanks `secrets` out of the log, the answer's reason and the failure's message (see
    /// `crate::secrets::redact`). The outbound requests' methods, hosts and errors were blanked
    /// when they were noted, before they were cut to their bounds (`outbound::send`).
    pub fn redact(&mut self, secrets: &[String]) {
        let blank = |text: &mut String| {
            if let Some(clean) = redact(text, secrets) {
                *text = clean;
            }
        };
        if let Ok(answer) = &mut self.outcome
            && let Some(reason) = answer.reason_mut()
        {
            blank(reason);
        }
        for line in &mut self.log {
            blank(&mut line.message);
        }
        if let Err(
            SandboxError::Trap { message }
            | SandboxError::PluginError { message }
            | SandboxError::InvalidComponent { message },
        ) = &mut self.outcome
        {
            blank(message);
        }
    }
}

/// What one `decide` call produced.
pub type CallReport = Report<Decision>;
/// What one `record` call produced: `Ok(())` when the plugin handled the event.
pub type RecordReport = Report<()>;

/// One request of an async flow, as `record` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The queue's id: the same on every attempt.
    pub id: u64,
    /// 1 on the first attempt.
    pub attempt: u32,
    pub accepted_at_ms: i64,
}

impl Sandbox {
    /// Runs one call: a fresh instance of `plugin`, `decide(call)` (or, when the plugin exports
    /// it, `decide-lean()` reading `call` through the `call` imports), under `limits`.
    ///
    /// Never panics and never returns early: every failure is in the report's `outcome`.
    pub async fn decide(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        call: impl Into<CallInput>,
        limits: &Limits,
        grants: Arc<Grants>,
    ) -> CallReport {
        self.decide_seeded(plugin, share, call, limits, grants, CallSeed::fresh())
            .await
    }

    /// [`decide`](Self::decide) with the call's clocks and randomness drawn from `seed` (a live
    /// call's fresh one, kept with its record, or a recorded one to replay the call).
    ///
    /// `call` may be typed or only its parameters ([`CallInput`]): a `decide-lean` plugin reads
    /// each field from the parameters when it asks, and the typed call is built only for a
    /// plugin whose `decide` takes it whole.
    pub async fn decide_seeded(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        call: impl Into<CallInput>,
        limits: &Limits,
        grants: Arc<Grants>,
        seed: CallSeed,
    ) -> CallReport {
        let call = call.into();
        if let Some(lean) = &plugin.lean_decider {
            // The call's parameters wait in the store, where the `call` imports read them field
            // by field.
            let call = call.into_params();
            let export = Export {
                name: "decide-lean",
                pre: Some(lean),
            };
            return self
                .call(
                    plugin,
                    share,
                    export,
                    limits,
                    grants,
                    &seed,
                    async move |pre, store| {
                        store.data_mut().call = Some(call);
                        let instance = pre.instantiate_async(&mut *store).await?;
                        store.data_mut().limiter.instantiated();
                        let decision = instance.call_decide_lean(&mut *store).await?;
                        Ok(Ok(Decision::from(decision)))
                    },
                )
                .await;
        }
        let export = Export {
            name: "decide",
            pre: plugin.decider.as_ref(),
        };
        self.call(
            plugin,
            share,
            export,
            limits,
            grants,
            &seed,
            async move |pre, store| {
                let call = wit::CallDetails::from(call.into_details());
                let instance = pre.instantiate_async(&mut *store).await?;
                store.data_mut().limiter.instantiated();
                let decision = instance.call_decide(&mut *store, &call).await?;
                Ok(Ok(Decision::from(decision)))
            },
        )
        .await
    }

    /// Runs one attempt of an async flow's event: a fresh instance of `plugin`,
    /// `record(event, call)`, under `limits`. An `err` from the plugin is
    /// [`SandboxError::PluginError`].
    ///
    /// Never panics and never returns early: every failure is in the report's `outcome`.
    pub async fn record(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        event: Event,
        call: CallDetails,
        limits: &Limits,
        grants: Arc<Grants>,
    ) -> RecordReport {
        let seed = CallSeed::fresh();
        self.record_seeded(plugin, share, event, call, limits, grants, seed)
            .await
    }

    /// [`record`](Self::record) with the call's clocks and randomness drawn from `seed`.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_seeded(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        event: Event,
        call: CallDetails,
        limits: &Limits,
        grants: Arc<Grants>,
        seed: CallSeed,
    ) -> RecordReport {
        let export = Export {
            name: "record",
            pre: plugin.recorder.as_ref(),
        };
        self.call(
            plugin,
            share,
            export,
            limits,
            grants,
            &seed,
            async move |pre, store| {
                let call = wit::CallDetails::from(call);
                let event = wit::Event {
                    id: event.id,
                    attempt: event.attempt,
                    accepted_at_ms: event.accepted_at_ms,
                };
                let instance = pre.instantiate_async(&mut *store).await?;
                store.data_mut().limiter.instantiated();
                let said = instance.call_record(&mut *store, event, &call).await?;
                Ok(said.map_err(|mut message| {
                    message.truncate(output::truncate(&message, MAX_REASON_BYTES).len());
                    SandboxError::PluginError { message }
                }))
            },
        )
        .await
    }

    /// The one path of every call, whichever the export: a slot in the tenant's share, one in the
    /// pool and the call's memory cap within the budget for calls in flight (or `overloaded`,
    /// naming which was full), a store with the flow's fuel, deadline and memory cap, then `run` (which
    /// instantiates `export` and calls it) under the deadline, its failure classified, and the
    /// report of what it produced and cost.
    ///
    /// `run` answers the export's value, or the plugin's own error (`record`'s `err`); a failure
    /// wasmtime raises is its `Err`, classified here.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call<P, T: Reasoned>(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        export: Export<'_, P>,
        limits: &Limits,
        grants: Arc<Grants>,
        seed: &CallSeed,
        run: impl AsyncFnOnce(&P, &mut Store<CallState>) -> wasmtime::Result<Result<T, SandboxError>>,
    ) -> Report<T> {
        let weight = plugin.weight;
        let Some(_tenant) = share.enter(weight) else {
            return refused(format!(
                "this tenant's calls hold {} of the {} call slots one tenant may hold at once, \
                 and this one needs {weight}",
                share.calls_in_flight(),
                share.max()
            ));
        };
        let Some(_in_flight) = Slot::enter(&self.in_flight, self.max_calls, weight) else {
            return refused(format!(
                "the calls running hold {} of the {} call slots this server has, and this one \
                 needs {weight}",
                self.in_flight.load(Ordering::Relaxed),
                self.max_calls
            ));
        };
        // Counted in first, then the ticker woken if it sleeps: see `ticker` for the handshake.
        self.ticker.call_began();
        let Some(_memory) = self.memory.reserve(limits.memory_mb) else {
            return refused(format!(
                "the calls in flight may use {} MiB of the {} MiB this server lets calls use, \
                 and this one may use {} MiB",
                self.memory.reserved_mb(),
                self.memory.budget_mb(),
                limits.memory_mb
            ));
        };
        let (mut store, started) = self.new_store(limits, grants, seed);
        let outcome = match (export.pre, prepare_store(&mut store, limits)) {
            (_, Err(error)) => Err(error),
            (None, Ok(())) => Err(missing_export(export.name)),
            (Some(pre), Ok(())) => {
                let done = tokio::time::timeout(limits.deadline(), run(pre, &mut store)).await;
                settle(done, store.data(), limits).and_then(|answer| answer)
            }
        };
        self.finish(plugin, store, started, outcome, limits)
    }

    /// A store for one call, with its memory cap, what the flow grants and its outbound policy.
    fn new_store(
        &self,
        limits: &Limits,
        grants: Arc<Grants>,
        seed: &CallSeed,
    ) -> (Store<CallState>, Instant) {
        let started = Instant::now();
        let memory_bytes = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let deadline = started + limits.deadline();
        let outbound = grants
            .outbound_hosts
            .is_some()
            .then(|| self.outbound.clone());
        let state =
            CallState::with_outbound(memory_bytes, grants, outbound, limits.fuel, deadline, seed);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(MAX_HOSTCALL_BYTES);
        (store, started)
    }

    /// Ends a call: what it cost, its log, and a trap's message completed with the plugin's last
    /// words (what it wrote to stderr just before: a panic's message, a Python exception; or the
    /// Rust SDK's logged panic, see `last_words`).
    fn finish<T: Reasoned>(
        &self,
        plugin: &Plugin,
        store: Store<CallState>,
        started: Instant,
        outcome: Result<T, SandboxError>,
        limits: &Limits,
    ) -> Report<T> {
        let elapsed = started.elapsed();
        let wasm_fuel = limits.fuel - store.get_fuel().unwrap_or(0).min(limits.fuel);
        let log = store.data().log.clone();
        debug_assert!(
            outcome.is_err() || store.data().limiter.was_instantiated(),
            "a call answered without marking its instance made: its memory report would be wrong"
        );
        let memory = store.data().limiter.memory();
        // Only a flow with secrets keeps its grants past the store, to blank them out below.
        let secrets =
            (!store.data().grants().secrets.is_empty()).then(|| store.data().grants().clone());
        self.release(plugin, store);

        let mut log = log.lock();
        log.finish();
        // The plugin's own code and the work its imports did, on the same budget.
        let fuel_used = wasm_fuel
            .saturating_add(log.budget.fuel_used())
            .min(limits.fuel);
        let outcome = outcome.map_err(|error| match error {
            SandboxError::Trap { message } => {
                let message = output::truncate(&message, MAX_TRAP_BYTES);
                SandboxError::Trap {
                    message: match last_words(&log.lines) {
                        Some(said) => format!("{message}; the plugin said: {said}"),
                        None => message.to_owned(),
                    },
                }
            }
            other => other,
        });
        let mut report = Report {
            outcome,
            fuel_used,
            elapsed,
            log: std::mem::take(&mut log.lines),
            log_dropped: log.dropped,
            outbound: std::mem::take(&mut log.outbound),
            memory,
        };
        if let Some(grants) = secrets {
            report.redact(&grants.secrets);
        }
        report
    }

    /// Returns a finished call's instance to the pool, which resets its memory: a few
    /// microseconds for a Rust plugin, 50 to 150 for a Python or JavaScript one, whose runtimes
    /// dirty hundreds of pages.
    ///
    /// When this plugin's last reset took [`DEFER_RESET_FROM`] or more, and the runtime is
    /// multi-threaded (the server's), the reset is a task of its own and the call's answer does
    /// not wait for it: tokio runs the task a worker spawned last next on that worker, once the
    /// task that answered has written its response and yielded. At most [`DEFERRED_RESETS`] wait
    /// so at one moment, in pool slots of their own; past that, and elsewhere, it happens here.
    fn release(&self, plugin: &Plugin, store: Store<CallState>) {
        if self.defer_resets
            && plugin.slow_reset.load(Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && runtime.runtime_flavor() == RuntimeFlavor::MultiThread
            && let Some(claim) = PendingReset::claim(&self.resets_pending, plugin.weight)
        {
            self.resets_deferred.fetch_add(1, Ordering::Relaxed);
            let slow = plugin.slow_reset.clone();
            runtime.spawn(async move {
                reset(store, &slow);
                drop(claim);
            });
            return;
        }
        reset(store, &plugin.slow_reset);
    }
}

/// Drops a finished call's store, which returns its instance to the pool, and notes in `slow`
/// whether that took [`DEFER_RESET_FROM`] or more.
fn reset(store: Store<CallState>, slow: &AtomicBool) {
    let started = Instant::now();
    drop(store);
    let verdict = started.elapsed() >= DEFER_RESET_FROM;
    // Written only when the verdict changes: calls on different cores would otherwise bounce the
    // flag's cache line between them on every call.
    if slow.load(Ordering::Relaxed) != verdict {
        slow.store(verdict, Ordering::Relaxed);
    }
}

/// The report of a call refused for want of a slot or of memory.
fn refused<T>(message: String) -> Report<T> {
    Report {
        outcome: Err(SandboxError::Overloaded { message }),
        fuel_used: 0,
        elapsed: Duration::ZERO,
        log: Vec::new(),
        log_dropped: 0,
        outbound: Vec::new(),
        memory: MemoryUse::default(),
    }
}

/// One export of a plugin: its name, and its prepared instance when the plugin has it.
pub(super) struct Export<'a, P> {
    pub(super) name: &'static str,
    pub(super) pre: Option<&'a P>,
}

/// A claim on the pool's slots kept for instances reset after their answer, at the instance's
/// weight; given back when dropped. An instance heavier than they all is reset before the answer.
struct PendingReset {
    pending: Arc<AtomicUsize>,
    weight: usize,
}

impl PendingReset {
    fn claim(pending: &Arc<AtomicUsize>, weight: u32) -> Option<Self> {
        let weight = weight.max(1) as usize;
        let before = pending.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > DEFERRED_RESETS as usize {
            pending.fetch_sub(weight, Ordering::Relaxed);
            return None;
        }
        Some(Self {
            pending: pending.clone(),
            weight,
        })
    }
}

impl Drop for PendingReset {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.weight, Ordering::Relaxed);
    }
}

fn prepare_store(store: &mut Store<CallState>, limits: &Limits) -> Result<(), SandboxError> {
    // Both fail only when fuel is off in the engine, which `engine_config` never does.
    let fuel = store
        .set_fuel(limits.fuel)
        .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)));
    fuel.map_err(host_setup)?;
    let ticks = limits.deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    Ok(())
}

impl From<wit::Decision> for Decision {
    fn from(d: wit::Decision) -> Self {
        use wit::Branch as WitBranch;
        Decision {
            branch: match d.branch {
                WitBranch::Success => Branch::Success,
                WitBranch::Failure => Branch::Failure,
            },
            reason: d.reason.map(|mut r| {
                let keep = output::truncate(&r, MAX_REASON_BYTES).len();
                r.truncate(keep);
                r
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::FailureKind;

    /// A store the host cannot set up (here fuel, on an engine built without it) fails the call
    /// as `host`: the operator's problem, never `overloaded`, which means "try again later".
    #[test]
    fn a_store_the_host_cannot_set_up_is_a_host_failure_not_overloaded() {
        let engine = wasmtime::Engine::new(&wasmtime::Config::new()).unwrap();
        let mut store = Store::new(
            &engine,
            CallState::new(64 << 20, Arc::default(), 1, Instant::now()),
        );
        let failure = prepare_store(&mut store, &Limits::default()).unwrap_err();
        assert_eq!(failure.kind(), FailureKind::Host, "{failure:?}");
        assert!(failure.to_string().contains("fuel"), "{failure}");
    }
}
